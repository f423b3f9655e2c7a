//! Running the steps: one syscall (or two) per step, a table from handle to
//! the fd it got, and a complete undo when a step fails.
//!
//! Everything the run creates is owned by a value of this module (an
//! `OwnedFd` in the handle table or the installed list, a mapping in the
//! memory hook, a ring region in a [`MappedRegion`]) from the moment it
//! exists, so undoing is dropping: a failed run closes every fd it created
//! (temporaries and installed targets, which preflight proved were free),
//! unmaps the ring regions it mapped, asks the hook to unmap what it
//! mapped, and puts the `RLIMIT_NOFILE` soft limit back.

use std::collections::BTreeMap;
use std::ffi::c_void;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

use ringplan_image::{FileType, ObjectId, RingMapping, SetupFlags};
use ringplan_plan::{Op, Plan, Step};
use rustix::event::{eventfd, EventfdFlags};
use rustix::fs::{Mode, OFlags, SeekFrom};
use rustix::io::{DupFlags, Errno};
use rustix::io_uring::{
    io_uring_params, io_uring_register, io_uring_setup, IoringRegisterOp, IoringSetupFlags,
};
use rustix::mm::{MapFlags, ProtFlags};
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

use crate::error::ExecError;
use crate::memory::MemoryHook;
use crate::{ExecOptions, Inputs, Restored, SkipReason, SkippedMapping, Substitution};

/// A ring region this run mapped; unmapped when dropped, so a failed run
/// gives it back. A successful run forgets it: the region is the restored
/// task's memory from then on.
struct MappedRegion {
    addr: usize,
    len: usize,
}

impl Drop for MappedRegion {
    fn drop(&mut self) {
        // SAFETY: this run mapped exactly this range (MAP_FIXED_NOREPLACE
        // replaced nothing) and nothing holds a reference into it.
        let _ = unsafe { rustix::mm::munmap(self.addr as *mut c_void, self.len) };
    }
}

/// `struct iovec` with a NULL base for an empty slot.
#[repr(C)]
struct RawIovec {
    base: *mut c_void,
    len: usize,
}

/// A step failure before it is tied to its step.
struct Failure {
    call: &'static str,
    errno: Errno,
}

fn fail(call: &'static str) -> impl FnOnce(Errno) -> Failure {
    move |errno| Failure { call, errno }
}

/// The run's state: what it owns so far.
struct Run<'a> {
    plan: &'a Plan,
    floor: RawFd,
    handles: Vec<Option<OwnedFd>>,
    installed: BTreeMap<ObjectId, Vec<OwnedFd>>,
    inputs: Inputs,
    substituted: Vec<Substitution>,
    /// Set when the memory hook failed at the barrier.
    memory_error: Option<crate::error::MemoryError>,
    /// Whether to map ring regions (`!ExecOptions::skip_ring_mappings`).
    map_rings: bool,
    /// Ring regions mapped so far; declared after the fds, so an undo closes
    /// the rings before it unmaps their regions (either order frees them).
    regions: Vec<MappedRegion>,
    mapped: Vec<(ObjectId, RingMapping)>,
    skipped: Vec<SkippedMapping>,
}

impl Run<'_> {
    /// Moves a new fd at or above the floor, closing the original.
    fn above_floor(&self, fd: OwnedFd) -> Result<OwnedFd, Failure> {
        if fd.as_raw_fd() >= self.floor {
            return Ok(fd);
        }
        rustix::io::fcntl_dupfd_cloexec(&fd, self.floor).map_err(fail("fcntl(F_DUPFD_CLOEXEC)"))
    }

    fn handle(
        &self,
        handle: ringplan_plan::Handle,
    ) -> Result<std::os::fd::BorrowedFd<'_>, Failure> {
        // A decoded plan was validated: every handle names an earlier,
        // unclosed fd-defining step. A plan built in memory may not be.
        usize::try_from(handle.0)
            .ok()
            .and_then(|index| self.handles.get(index))
            .and_then(Option::as_ref)
            .map(AsFd::as_fd)
            .ok_or(Failure {
                call: "handle lookup",
                errno: Errno::BADF,
            })
    }

    fn substitute(
        &mut self,
        object: ObjectId,
        input: &ringplan_plan::ExternalInput,
    ) -> Result<OwnedFd, Failure> {
        let access = input.flags.map_or(OFlags::RDWR, |flags| {
            OFlags::from_bits_retain(flags) & OFlags::RWMODE
        });
        let (fd, with) = if input.file_type == FileType::Pipe {
            let (reader, writer) =
                rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(fail("pipe2"))?;
            if access == OFlags::WRONLY {
                (writer, "a new pipe (write end)")
            } else {
                (reader, "a new pipe (read end)")
            }
        } else {
            let fd = rustix::fs::open(
                "/dev/null",
                access | OFlags::CLOEXEC | OFlags::NOCTTY,
                Mode::empty(),
            )
            .map_err(fail("open(/dev/null)"))?;
            (fd, "/dev/null")
        };
        self.substituted.push(Substitution {
            object,
            file_type: input.file_type,
            with,
        });
        Ok(fd)
    }

    /// Maps each of a new ring's recorded regions at its recorded address,
    /// never over anything: a taken range is skipped and reported.
    fn map_regions(
        &mut self,
        object: Option<ObjectId>,
        mappings: &[RingMapping],
        ring: &OwnedFd,
    ) -> Result<(), Failure> {
        const CALL: &str = "mmap(ring region)";
        for mapping in mappings {
            // Validation gives mappings only to rings of the image.
            let object = object.ok_or(Failure {
                call: CALL,
                errno: Errno::INVAL,
            })?;
            if !self.map_rings {
                self.skipped.push(SkippedMapping {
                    object,
                    mapping: *mapping,
                    reason: SkipReason::TurnedOff,
                });
                continue;
            }
            let (Ok(addr), Ok(len)) = (usize::try_from(mapping.addr), usize::try_from(mapping.len))
            else {
                return Err(Failure {
                    call: CALL,
                    errno: Errno::INVAL,
                });
            };
            // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing
            // mapping, so no memory anyone uses changes; the new mapping is
            // owned by a `MappedRegion` as soon as it exists.
            let result = unsafe {
                rustix::mm::mmap(
                    addr as *mut c_void,
                    len,
                    ProtFlags::READ | ProtFlags::WRITE,
                    MapFlags::SHARED | MapFlags::POPULATE | MapFlags::FIXED_NOREPLACE,
                    ring,
                    mapping.region.mmap_offset(),
                )
            };
            match result {
                Ok(got) => {
                    let region = MappedRegion {
                        addr: got as usize,
                        len,
                    };
                    if region.addr == addr {
                        self.regions.push(region);
                        self.mapped.push((object, *mapping));
                    } else {
                        // A kernel before 4.17 takes the address as a hint
                        // and maps elsewhere when it is taken: give it back.
                        drop(region);
                        self.skipped.push(SkippedMapping {
                            object,
                            mapping: *mapping,
                            reason: SkipReason::Taken,
                        });
                    }
                }
                Err(Errno::EXIST) => {
                    self.skipped.push(SkippedMapping {
                        object,
                        mapping: *mapping,
                        reason: SkipReason::Taken,
                    });
                }
                // Since Linux 6.4 io_uring refuses every caller-chosen
                // address (its get_unmapped_area returns EINVAL for any
                // address, before MAP_FIXED_NOREPLACE looks for a clash; so
                // does mremap), and a bad length is EINVAL too. Tell them
                // apart: a taken range is still "taken", and a region the
                // kernel maps where it likes is one it only refuses to place.
                Err(Errno::INVAL) => {
                    let reason = if range_is_taken(addr, len).map_err(fail(CALL))? {
                        SkipReason::Taken
                    } else if region_maps_anywhere(ring, len, mapping.region.mmap_offset()) {
                        SkipReason::AddressRefused
                    } else {
                        return Err(Failure {
                            call: CALL,
                            errno: Errno::INVAL,
                        });
                    };
                    self.skipped.push(SkippedMapping {
                        object,
                        mapping: *mapping,
                        reason,
                    });
                }
                Err(errno) => return Err(Failure { call: CALL, errno }),
            }
        }
        Ok(())
    }

    fn step(
        &mut self,
        index: usize,
        step: &Step,
        hook: &mut dyn MemoryHook,
    ) -> Result<(), Failure> {
        let created = match &step.op {
            Op::CreateEventfd(create) => {
                let mut flags = EventfdFlags::CLOEXEC;
                if create.semaphore {
                    flags |= EventfdFlags::SEMAPHORE;
                }
                if create.nonblock {
                    flags |= EventfdFlags::NONBLOCK;
                }
                let initial = u32::try_from(create.count).unwrap_or(0);
                let fd = eventfd(initial, flags).map_err(fail("eventfd2"))?;
                if u64::from(initial) != create.count {
                    let bytes = create.count.to_ne_bytes();
                    let written = rustix::io::write(&fd, &bytes).map_err(fail("write(eventfd)"))?;
                    if written != bytes.len() {
                        return Err(Failure {
                            call: "write(eventfd)",
                            errno: Errno::IO,
                        });
                    }
                }
                Some(fd)
            }
            Op::OpenFile(open) => {
                let fd = rustix::fs::open(
                    open.path.as_str(),
                    OFlags::from_bits_retain(open.flags),
                    Mode::empty(),
                )
                .map_err(fail("openat"))?;
                if open.pos != 0 {
                    let pos = u64::try_from(open.pos).map_err(|_| Failure {
                        call: "lseek",
                        errno: Errno::INVAL,
                    })?;
                    rustix::fs::seek(&fd, SeekFrom::Start(pos)).map_err(fail("lseek"))?;
                }
                Some(fd)
            }
            Op::ExternalInput(input) => {
                let object = step.object.ok_or(Failure {
                    call: "external input",
                    errno: Errno::INVAL,
                })?;
                match self.inputs.fds.remove(&object) {
                    Some(fd) => Some(fd),
                    None => Some(self.substitute(object, input)?),
                }
            }
            Op::SetupRing(setup) => {
                let mut params = io_uring_params::default();
                params.flags = IoringSetupFlags::from_bits_retain(setup.flags);
                if setup.flags & SetupFlags::CQSIZE.bits() != 0 {
                    params.cq_entries = setup.cq_entries;
                }
                params.sq_thread_cpu = setup.sq_thread_cpu.unwrap_or(0);
                params.sq_thread_idle = setup.sq_thread_idle_ms.unwrap_or(0);
                if let Some(wq) = setup.wq_handle {
                    params.wq_fd = self.handle(wq)?.as_raw_fd();
                }
                // SAFETY: `params` is initialized; `wq_fd`, when set, is an
                // open ring fd from the handle table, open during the call.
                let fd = unsafe { io_uring_setup(setup.sq_entries, &mut params) }
                    .map_err(fail("io_uring_setup"))?;
                // Mapped now, while this step owns the fd: a ring without
                // buffers is closed before the memory barrier. The mappings
                // keep their own reference to the ring.
                self.map_regions(step.object, &setup.mappings, &fd)?;
                Some(fd)
            }
            Op::RegisterEventfd(register) => {
                let (opcode, call) = if register.is_async {
                    (
                        IoringRegisterOp::RegisterEventfdAsync,
                        "IORING_REGISTER_EVENTFD_ASYNC",
                    )
                } else {
                    (IoringRegisterOp::RegisterEventfd, "IORING_REGISTER_EVENTFD")
                };
                let eventfd: RawFd = self.handle(register.eventfd_handle)?.as_raw_fd();
                let ring = self.handle(register.ring_handle)?;
                // SAFETY: one int holding an open eventfd, as the opcode
                // takes; read during the call only.
                unsafe { io_uring_register(ring, opcode, std::ptr::from_ref(&eventfd).cast(), 1) }
                    .map_err(fail(call))?;
                None
            }
            Op::RegisterFiles(register) => {
                let table = register
                    .slots
                    .iter()
                    .map(|slot| {
                        slot.map_or(Ok(-1), |handle| {
                            self.handle(handle).map(|fd| fd.as_raw_fd())
                        })
                    })
                    .collect::<Result<Vec<RawFd>, Failure>>()?;
                let count = u32::try_from(table.len()).map_err(|_| Failure {
                    call: "IORING_REGISTER_FILES",
                    errno: Errno::INVAL,
                })?;
                let ring = self.handle(register.ring_handle)?;
                // SAFETY: `count` ints, each an open fd or -1; the kernel
                // takes its own references during the call.
                unsafe {
                    io_uring_register(
                        ring,
                        IoringRegisterOp::RegisterFiles,
                        table.as_ptr().cast(),
                        count,
                    )
                }
                .map_err(fail("IORING_REGISTER_FILES"))?;
                None
            }
            Op::MemoryBarrier => {
                // Reported as a memory error by the caller of `step`.
                hook.restore(self.plan).map_err(|error| {
                    self.memory_error = Some(error);
                    Failure {
                        call: "memory hook",
                        errno: Errno::FAULT,
                    }
                })?;
                None
            }
            Op::RegisterBuffers(register) => {
                let iovecs = register
                    .iovecs
                    .iter()
                    .map(|iovec| RawIovec {
                        base: iovec.base as usize as *mut c_void,
                        len: iovec.len as usize,
                    })
                    .collect::<Vec<_>>();
                let count = u32::try_from(iovecs.len()).map_err(|_| Failure {
                    call: "IORING_REGISTER_BUFFERS",
                    errno: Errno::INVAL,
                })?;
                let ring = self.handle(register.ring_handle)?;
                // SAFETY: `count` iovecs; the kernel pins the pages they name
                // (the memory hook put them in place at the barrier) and
                // neither reads nor writes them until I/O is submitted.
                unsafe {
                    io_uring_register(
                        ring,
                        IoringRegisterOp::RegisterBuffers,
                        iovecs.as_ptr().cast(),
                        count,
                    )
                }
                .map_err(fail("IORING_REGISTER_BUFFERS"))?;
                None
            }
            Op::InstallFd(install) => {
                let object = step.object.ok_or(Failure {
                    call: "install_fd",
                    errno: Errno::INVAL,
                })?;
                let source = self.handle(install.source_handle)?;
                let flags = if install.cloexec {
                    DupFlags::CLOEXEC
                } else {
                    DupFlags::empty()
                };
                // SAFETY: preflight proved `fd` free; it is owned here only
                // once dup3 made it open (on failure it is forgotten, not
                // closed).
                let mut target = unsafe { OwnedFd::from_raw_fd(install.fd) };
                if let Err(errno) = rustix::io::dup3(source, &mut target, flags) {
                    std::mem::forget(target);
                    return Err(Failure {
                        call: "dup3",
                        errno,
                    });
                }
                self.installed.entry(object).or_default().push(target);
                None
            }
            Op::CloseFd(close) => {
                for handle in &close.handles {
                    let slot = usize::try_from(handle.0)
                        .ok()
                        .and_then(|index| self.handles.get_mut(index));
                    match slot.and_then(Option::take) {
                        Some(fd) => drop(fd),
                        None => {
                            return Err(Failure {
                                call: "close",
                                errno: Errno::BADF,
                            })
                        }
                    }
                }
                None
            }
        };
        if let Some(fd) = created {
            let fd = self.above_floor(fd)?;
            if let Some(slot) = self.handles.get_mut(index) {
                *slot = Some(fd);
            }
        }
        Ok(())
    }
}

/// Whether anything is mapped in `[addr, addr + len)`: a throwaway
/// `MAP_FIXED_NOREPLACE` placeholder there fails with `EEXIST` exactly then.
fn range_is_taken(addr: usize, len: usize) -> Result<bool, Errno> {
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping; the
    // placeholder is inaccessible and unmapped at once.
    let placeholder = unsafe {
        rustix::mm::mmap_anonymous(
            addr as *mut c_void,
            len,
            ProtFlags::empty(),
            MapFlags::PRIVATE | MapFlags::FIXED_NOREPLACE | MapFlags::NORESERVE,
        )
    };
    match placeholder {
        Ok(got) => {
            drop(MappedRegion {
                addr: got as usize,
                len,
            });
            // Before 4.17 the flag is a hint: landing elsewhere means taken.
            Ok(got as usize != addr)
        }
        Err(Errno::EXIST) => Ok(true),
        Err(errno) => Err(errno),
    }
}

/// Whether the kernel maps this region of `ring` with this length at an
/// address of its own choosing (the mapping is undone at once).
fn region_maps_anywhere(ring: &OwnedFd, len: usize, offset: u64) -> bool {
    // SAFETY: a fresh mapping where the kernel likes, unmapped at once.
    let probe = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            len,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::SHARED,
            ring,
            offset,
        )
    };
    match probe {
        Ok(got) => {
            drop(MappedRegion {
                addr: got as usize,
                len,
            });
            true
        }
        Err(_) => false,
    }
}

/// Runs every step. On failure, undoes everything and returns the error.
pub(crate) fn run(
    plan: &Plan,
    inputs: Inputs,
    hook: &mut dyn MemoryHook,
    options: &ExecOptions,
    raise_fd_limit_to: Option<u64>,
) -> Result<Restored, ExecError> {
    let old_nofile = getrlimit(Resource::Nofile);
    if let Some(needed) = raise_fd_limit_to {
        let raised = Rlimit {
            current: Some(needed),
            maximum: old_nofile.maximum,
        };
        setrlimit(Resource::Nofile, raised).map_err(|errno| ExecError::Step {
            index: 0,
            op: plan.steps.first().map_or("none", |step| step.op.name()),
            object: None,
            call: "setrlimit(RLIMIT_NOFILE)",
            errno,
        })?;
    }
    let mut state = Run {
        plan,
        floor: plan.temp_fd_floor,
        handles: std::iter::repeat_with(|| None)
            .take(plan.steps.len())
            .collect(),
        installed: BTreeMap::new(),
        inputs,
        substituted: Vec::new(),
        memory_error: None,
        map_rings: !options.skip_ring_mappings,
        regions: Vec::new(),
        mapped: Vec::new(),
        skipped: Vec::new(),
    };
    for (index, step) in plan.steps.iter().enumerate() {
        let result = if options.fail_at_step == Some(index) {
            Err(Failure {
                call: "injected failure",
                errno: Errno::from_raw_os_error(options.injected_errno),
            })
        } else {
            state.step(index, step, hook)
        };
        if let Err(failure) = result {
            let memory_error = state.memory_error.take();
            // Undo: fds first (rings release their buffers), then the ring
            // regions (dropped with `state`), then memory, then the fd limit.
            drop(state);
            // Before the barrier too: preflight may have reserved memory.
            hook.undo();
            if raise_fd_limit_to.is_some() {
                let _ = setrlimit(Resource::Nofile, old_nofile);
            }
            return Err(match memory_error {
                Some(source) => ExecError::Memory { index, source },
                None => ExecError::Step {
                    index,
                    op: step.op.name(),
                    object: step.object,
                    call: failure.call,
                    errno: failure.errno,
                },
            });
        }
    }
    // Success: the ring regions are the restored task's memory now.
    for region in std::mem::take(&mut state.regions) {
        std::mem::forget(region);
    }
    Ok(Restored {
        fds: state.installed,
        substituted: state.substituted,
        mapped: state.mapped,
        skipped_mappings: state.skipped,
    })
}
