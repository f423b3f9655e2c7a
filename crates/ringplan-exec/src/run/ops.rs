//! The syscalls of each op: what one step of each kind does to this
//! process (the table in docs/ARCHITECTURE.md, "Ops").

use std::ffi::c_void;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use ringplan_image::{FileType, ObjectId, SetupFlags};
use ringplan_plan::{
    CloseFd, CreateEventfd, ExternalInput, InstallFd, OpenFile, RegisterBuffers, RegisterEventfd,
    RegisterFiles, SetupRing,
};
use rustix::event::{eventfd, EventfdFlags};
use rustix::fs::{fcntl_setfl, fstat, statat, Mode, OFlags, SeekFrom, Stat, CWD};
use rustix::io::{DupFlags, Errno};
use rustix::io_uring::{
    io_uring_params, io_uring_register, io_uring_setup, IoringRegisterOp, IoringSetupFlags,
};

use super::{fail, Failure, Run, TypeChanged};
use crate::memory::MemoryHook;
use crate::reopen;
use crate::Substitution;

/// `struct iovec` with a NULL base for an empty slot.
#[repr(C)]
struct RawIovec {
    base: *mut c_void,
    len: usize,
}

/// `create_eventfd`: `eventfd2`, then a `write` for a count above 32 bits.
pub(super) fn create_eventfd(create: &CreateEventfd) -> Result<OwnedFd, Failure> {
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
    Ok(fd)
}

impl Run<'_> {
    /// `open_file`: `openat` with `O_NONBLOCK` added (an open never waits:
    /// not for a FIFO's other end, a terminal's carrier, a lease), `fstat`
    /// to refuse a file of another type than the image's (the path changed
    /// since preflight looked), `fcntl(F_SETFL)` to the recorded status
    /// flags, then `lseek` unless the position is 0.
    pub(super) fn open_file(&mut self, open: &OpenFile) -> Result<OwnedFd, Failure> {
        let fd = match rustix::fs::open(
            open.path.as_str(),
            OFlags::from_bits_retain(reopen::nonblocking_open_flags(open)),
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(errno) => {
                // A FIFO opened for writing without a reader fails with
                // ENXIO, a socket always: say what is there, if it is the
                // wrong type, rather than the errno.
                if let Ok(stat) = statat(CWD, open.path.as_str(), reopen::lookup_flags(open)) {
                    self.check_opened_type(open, &stat)?;
                }
                return Err(Failure {
                    call: "openat",
                    errno,
                });
            }
        };
        self.check_opened_type(open, &fstat(&fd).map_err(fail("fstat"))?)?;
        if let Some(status) = reopen::status_flags(open) {
            fcntl_setfl(&fd, OFlags::from_bits_retain(status)).map_err(fail("fcntl(F_SETFL)"))?;
        }
        if open.pos != 0 {
            let pos = u64::try_from(open.pos).map_err(|_| Failure {
                call: "lseek",
                errno: Errno::INVAL,
            })?;
            rustix::fs::seek(&fd, SeekFrom::Start(pos)).map_err(fail("lseek"))?;
        }
        Ok(fd)
    }

    /// Refuses a file whose type is not the step's, keeping what was found
    /// for the run's error.
    fn check_opened_type(&mut self, open: &OpenFile, stat: &Stat) -> Result<(), Failure> {
        let found = reopen::file_type_of(stat);
        if open.admits(found) {
            return Ok(());
        }
        self.type_changed = Some(TypeChanged {
            path: open.path.clone(),
            recorded: open.file_type,
            found,
        });
        // The run reports `type_changed`, not this failure's errno.
        Err(Failure {
            call: "fstat",
            errno: Errno::NOENT,
        })
    }

    /// `external_input`: the caller's fd for the object, or a stand-in.
    pub(super) fn external_input(
        &mut self,
        object: Option<ObjectId>,
        input: &ExternalInput,
    ) -> Result<OwnedFd, Failure> {
        let object = object.ok_or(Failure {
            call: "external input",
            errno: Errno::INVAL,
        })?;
        match self.inputs.fds.remove(&object) {
            Some(fd) => Ok(fd),
            None => self.substitute(object, input),
        }
    }

    /// A stand-in for an input the caller did not supply: a new pipe's end
    /// matching the recorded access mode for a pipe, else `/dev/null`;
    /// non-blocking if the image says so.
    fn substitute(&mut self, object: ObjectId, input: &ExternalInput) -> Result<OwnedFd, Failure> {
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
        // A program's pipe or socket may have been non-blocking.
        reopen::set_input_status_flags(&fd, input.flags).map_err(fail("fcntl(F_SETFL)"))?;
        self.substituted.push(Substitution {
            object,
            file_type: input.file_type,
            with,
        });
        Ok(fd)
    }

    /// `setup_ring`: `io_uring_setup`, then the ring's recorded regions.
    pub(super) fn setup_ring(
        &mut self,
        object: Option<ObjectId>,
        setup: &SetupRing,
    ) -> Result<OwnedFd, Failure> {
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
        // SAFETY: `params` is initialized; `wq_fd`, when set, is an open
        // ring fd from the handle table, open during the call.
        let fd = unsafe { io_uring_setup(setup.sq_entries, &mut params) }
            .map_err(fail("io_uring_setup"))?;
        // Mapped now, while this step owns the fd: a ring without buffers
        // is closed before the memory barrier. The mappings keep their own
        // reference to the ring.
        self.map_regions(object, &setup.mappings, &fd)?;
        Ok(fd)
    }

    /// `register_eventfd`: `IORING_REGISTER_EVENTFD[_ASYNC]`.
    pub(super) fn register_eventfd(&self, register: &RegisterEventfd) -> Result<(), Failure> {
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
        // SAFETY: one int holding an open eventfd, as the opcode takes; read
        // during the call only.
        unsafe { io_uring_register(ring, opcode, std::ptr::from_ref(&eventfd).cast(), 1) }
            .map_err(fail(call))?;
        Ok(())
    }

    /// `register_files`: one `IORING_REGISTER_FILES` call, the whole table.
    pub(super) fn register_files(&self, register: &RegisterFiles) -> Result<(), Failure> {
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
        // SAFETY: `count` ints, each an open fd or -1; the kernel takes its
        // own references during the call.
        unsafe {
            io_uring_register(
                ring,
                IoringRegisterOp::RegisterFiles,
                table.as_ptr().cast(),
                count,
            )
        }
        .map_err(fail("IORING_REGISTER_FILES"))?;
        Ok(())
    }

    /// `memory_barrier`: the memory hook puts the task's memory in place.
    /// Its error is kept for the run to report as a memory error.
    pub(super) fn memory_barrier(&mut self, hook: &mut dyn MemoryHook) -> Result<(), Failure> {
        hook.restore(self.plan).map_err(|error| {
            self.memory_error = Some(error);
            Failure {
                call: "memory hook",
                errno: Errno::FAULT,
            }
        })
    }

    /// `register_buffers`: one `IORING_REGISTER_BUFFERS` call.
    pub(super) fn register_buffers(&self, register: &RegisterBuffers) -> Result<(), Failure> {
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
        // SAFETY: `count` iovecs; the kernel pins the pages they name (the
        // memory hook put them in place at the barrier) and neither reads
        // nor writes them until I/O is submitted.
        unsafe {
            io_uring_register(
                ring,
                IoringRegisterOp::RegisterBuffers,
                iovecs.as_ptr().cast(),
                count,
            )
        }
        .map_err(fail("IORING_REGISTER_BUFFERS"))?;
        Ok(())
    }

    /// `install_fd`: `dup3` onto a target number preflight proved free.
    pub(super) fn install_fd(
        &mut self,
        object: Option<ObjectId>,
        install: &InstallFd,
    ) -> Result<(), Failure> {
        let object = object.ok_or(Failure {
            call: "install_fd",
            errno: Errno::INVAL,
        })?;
        let source = self.handle(install.source_handle)?;
        let flags = if install.cloexec {
            DupFlags::CLOEXEC
        } else {
            DupFlags::empty()
        };
        // SAFETY: preflight proved `fd` free; it is owned here only once
        // dup3 made it open (on failure it is forgotten, not closed).
        let mut target = unsafe { OwnedFd::from_raw_fd(install.fd) };
        if let Err(errno) = rustix::io::dup3(source, &mut target, flags) {
            std::mem::forget(target);
            return Err(Failure {
                call: "dup3",
                errno,
            });
        }
        self.installed.entry(object).or_default().push(target);
        Ok(())
    }

    /// `close_fd`: closes each handle's fd.
    pub(super) fn close_fds(&mut self, close: &CloseFd) -> Result<(), Failure> {
        for handle in &close.handles {
            let slot = usize::try_from(handle.0)
                .ok()
                .and_then(|index| self.handles.get_mut(index));
            match slot.and_then(Option::take) {
                Some(fd) => drop(fd),
                None if self.close_continuous_ring(*handle) => {}
                None => {
                    return Err(Failure {
                        call: "close",
                        errno: Errno::BADF,
                    })
                }
            }
        }
        Ok(())
    }
}
