//! Running the steps: one syscall (or two) per step, a table from handle to
//! the fd it got, and a complete undo when a step fails.
//!
//! Everything the run creates is owned by a value of this module (an
//! `OwnedFd` in the handle table or the installed list, a mapping in the
//! memory hook) from the moment it exists, so undoing is dropping: a failed
//! run closes every fd it created (temporaries and installed targets, which
//! preflight proved were free), asks the hook to unmap what it mapped, and
//! puts the `RLIMIT_NOFILE` soft limit back.

use std::collections::BTreeMap;
use std::ffi::c_void;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

use ringplan_image::{setup_flags, FileType, ObjectId};
use ringplan_plan::{Op, Plan, Step};
use rustix::event::{eventfd, EventfdFlags};
use rustix::fs::{Mode, OFlags, SeekFrom};
use rustix::io::{DupFlags, Errno};
use rustix::io_uring::{io_uring_params, io_uring_register, io_uring_setup, IoringRegisterOp, IoringSetupFlags};
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

use crate::error::ExecError;
use crate::memory::MemoryHook;
use crate::{ExecOptions, Inputs, Restored, Substitution};

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
}

impl Run<'_> {
    /// Moves a new fd at or above the floor, closing the original.
    fn above_floor(&self, fd: OwnedFd) -> Result<OwnedFd, Failure> {
        if fd.as_raw_fd() >= self.floor {
            return Ok(fd);
        }
        rustix::io::fcntl_dupfd_cloexec(&fd, self.floor).map_err(fail("fcntl(F_DUPFD_CLOEXEC)"))
    }

    fn handle(&self, handle: ringplan_plan::Handle) -> Result<std::os::fd::BorrowedFd<'_>, Failure> {
        // A decoded plan was validated: every handle names an earlier,
        // unclosed fd-defining step. A plan built in memory may not be.
        usize::try_from(handle.0)
            .ok()
            .and_then(|index| self.handles.get(index))
            .and_then(Option::as_ref)
            .map(AsFd::as_fd)
            .ok_or(Failure { call: "handle lookup", errno: Errno::BADF })
    }

    fn substitute(&mut self, object: ObjectId, input: &ringplan_plan::ExternalInput) -> Result<OwnedFd, Failure> {
        let access = input.flags.map_or(OFlags::RDWR, |flags| OFlags::from_bits_retain(flags) & OFlags::RWMODE);
        let (fd, with) = if input.file_type == FileType::Pipe {
            let (reader, writer) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(fail("pipe2"))?;
            if access == OFlags::WRONLY {
                (writer, "a new pipe (write end)")
            } else {
                (reader, "a new pipe (read end)")
            }
        } else {
            let fd = rustix::fs::open("/dev/null", access | OFlags::CLOEXEC | OFlags::NOCTTY, Mode::empty())
                .map_err(fail("open(/dev/null)"))?;
            (fd, "/dev/null")
        };
        self.substituted.push(Substitution { object, file_type: input.file_type, with });
        Ok(fd)
    }

    fn step(&mut self, index: usize, step: &Step, hook: &mut dyn MemoryHook) -> Result<(), Failure> {
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
                        return Err(Failure { call: "write(eventfd)", errno: Errno::IO });
                    }
                }
                Some(fd)
            }
            Op::OpenFile(open) => {
                let fd = rustix::fs::open(open.path.as_str(), OFlags::from_bits_retain(open.flags), Mode::empty())
                    .map_err(fail("openat"))?;
                if open.pos != 0 {
                    let pos = u64::try_from(open.pos).map_err(|_| Failure { call: "lseek", errno: Errno::INVAL })?;
                    rustix::fs::seek(&fd, SeekFrom::Start(pos)).map_err(fail("lseek"))?;
                }
                Some(fd)
            }
            Op::ExternalInput(input) => {
                let object = step.object.ok_or(Failure { call: "external input", errno: Errno::INVAL })?;
                match self.inputs.fds.remove(&object) {
                    Some(fd) => Some(fd),
                    None => Some(self.substitute(object, input)?),
                }
            }
            Op::SetupRing(setup) => {
                let mut params = io_uring_params::default();
                params.flags = IoringSetupFlags::from_bits_retain(setup.flags);
                if setup.flags & setup_flags::CQSIZE != 0 {
                    params.cq_entries = setup.cq_entries;
                }
                params.sq_thread_cpu = setup.sq_thread_cpu.unwrap_or(0);
                params.sq_thread_idle = setup.sq_thread_idle_ms.unwrap_or(0);
                if let Some(wq) = setup.wq_handle {
                    params.wq_fd = self.handle(wq)?.as_raw_fd();
                }
                // SAFETY: `params` is initialized; `wq_fd`, when set, is an
                // open ring fd from the handle table, open during the call.
                let fd = unsafe { io_uring_setup(setup.sq_entries, &mut params) }.map_err(fail("io_uring_setup"))?;
                Some(fd)
            }
            Op::RegisterEventfd(register) => {
                let (opcode, call) = if register.is_async {
                    (IoringRegisterOp::RegisterEventfdAsync, "IORING_REGISTER_EVENTFD_ASYNC")
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
                    .map(|slot| slot.map_or(Ok(-1), |handle| self.handle(handle).map(|fd| fd.as_raw_fd())))
                    .collect::<Result<Vec<RawFd>, Failure>>()?;
                let count = u32::try_from(table.len()).map_err(|_| Failure { call: "IORING_REGISTER_FILES", errno: Errno::INVAL })?;
                let ring = self.handle(register.ring_handle)?;
                // SAFETY: `count` ints, each an open fd or -1; the kernel
                // takes its own references during the call.
                unsafe { io_uring_register(ring, IoringRegisterOp::RegisterFiles, table.as_ptr().cast(), count) }
                    .map_err(fail("IORING_REGISTER_FILES"))?;
                None
            }
            Op::MemoryBarrier => {
                // Reported as a memory error by the caller of `step`.
                hook.restore(self.plan).map_err(|error| {
                    self.memory_error = Some(error);
                    Failure { call: "memory hook", errno: Errno::FAULT }
                })?;
                None
            }
            Op::RegisterBuffers(register) => {
                let iovecs = register
                    .iovecs
                    .iter()
                    .map(|iovec| RawIovec { base: iovec.base as usize as *mut c_void, len: iovec.len as usize })
                    .collect::<Vec<_>>();
                let count = u32::try_from(iovecs.len()).map_err(|_| Failure { call: "IORING_REGISTER_BUFFERS", errno: Errno::INVAL })?;
                let ring = self.handle(register.ring_handle)?;
                // SAFETY: `count` iovecs; the kernel pins the pages they name
                // (the memory hook put them in place at the barrier) and
                // neither reads nor writes them until I/O is submitted.
                unsafe { io_uring_register(ring, IoringRegisterOp::RegisterBuffers, iovecs.as_ptr().cast(), count) }
                    .map_err(fail("IORING_REGISTER_BUFFERS"))?;
                None
            }
            Op::InstallFd(install) => {
                let object = step.object.ok_or(Failure { call: "install_fd", errno: Errno::INVAL })?;
                let source = self.handle(install.source_handle)?;
                let flags = if install.cloexec { DupFlags::CLOEXEC } else { DupFlags::empty() };
                // SAFETY: preflight proved `fd` free; it is owned here only
                // once dup3 made it open (on failure it is forgotten, not
                // closed).
                let mut target = unsafe { OwnedFd::from_raw_fd(install.fd) };
                if let Err(errno) = rustix::io::dup3(source, &mut target, flags) {
                    std::mem::forget(target);
                    return Err(Failure { call: "dup3", errno });
                }
                self.installed.entry(object).or_default().push(target);
                None
            }
            Op::CloseFd(close) => {
                for handle in &close.handles {
                    let slot = usize::try_from(handle.0).ok().and_then(|index| self.handles.get_mut(index));
                    match slot.and_then(Option::take) {
                        Some(fd) => drop(fd),
                        None => return Err(Failure { call: "close", errno: Errno::BADF }),
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
        let raised = Rlimit { current: Some(needed), maximum: old_nofile.maximum };
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
        handles: std::iter::repeat_with(|| None).take(plan.steps.len()).collect(),
        installed: BTreeMap::new(),
        inputs,
        substituted: Vec::new(),
        memory_error: None,
    };
    let mut barrier_reached = false;
    for (index, step) in plan.steps.iter().enumerate() {
        let result = if options.fail_at_step == Some(index) {
            Err(Failure { call: "injected failure", errno: Errno::from_raw_os_error(options.injected_errno) })
        } else {
            barrier_reached |= matches!(step.op, Op::MemoryBarrier);
            state.step(index, step, hook)
        };
        if let Err(failure) = result {
            let memory_error = state.memory_error.take();
            // Undo: fds first (rings release their buffers), then memory,
            // then the fd limit.
            drop(state);
            if barrier_reached {
                hook.undo();
            }
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
    Ok(Restored { fds: state.installed, substituted: state.substituted })
}
