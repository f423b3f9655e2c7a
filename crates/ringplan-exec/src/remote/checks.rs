//! What is checked before a process is touched: it exists and is not
//! exiting, no thread is traced by someone else or runs under seccomp; and,
//! when the kernel refuses `PTRACE_SEIZE`, why.

use ringplan_kernel::abi::linux::PF_EXITING;
use ringplan_kernel::abi::ptrace::{PF_IO_WORKER, SECCOMP_MODE_DISABLED};
use ringplan_kernel::procfs::{stat, status, task, Process, ProcfsError};
use rustix::io::Errno;

use crate::remote::error::{PtraceDenial, RemoteError};

/// What the checks learnt: whether the process was stopped (group-stop)
/// when we came.
pub(crate) struct Found {
    pub(crate) was_stopped: bool,
}

fn procfs_error(pid: u32, source: ProcfsError) -> RemoteError {
    if source.is_not_found() {
        RemoteError::NoSuchProcess { pid }
    } else {
        RemoteError::Procfs { pid, source }
    }
}

/// Refuses, before anything changes, a process that is gone, exiting, has
/// a thread traced by another tracer or under seccomp, or lacks one of
/// `needed` (or has it as an io thread).
pub(crate) fn before_attach(pid: u32, needed: &[u32]) -> Result<Found, RemoteError> {
    let process = Process::Pid(pid);
    let leader = stat::read(process).map_err(|source| procfs_error(pid, source))?;
    if leader.has_exited() {
        return Err(RemoteError::Exited { pid });
    }
    if leader.flags.is_some_and(|flags| flags & PF_EXITING != 0) {
        return Err(RemoteError::Exiting { pid });
    }
    let tids = task::ids(process).map_err(|source| procfs_error(pid, source))?;
    for &tid in needed {
        if !tids.contains(&tid) {
            return Err(RemoteError::NoSuchThread { pid, tid });
        }
        if is_io_thread(pid, tid) {
            return Err(RemoteError::IoThread { pid, tid });
        }
    }
    for tid in tids {
        let thread = match status::read_task(process, tid) {
            Ok(thread) => thread,
            // A thread that ended since the listing.
            Err(error) if error.is_not_found() => continue,
            Err(source) => return Err(RemoteError::Procfs { pid, source }),
        };
        if thread.tracer_pid != 0 {
            return Err(RemoteError::PtraceDenied {
                pid,
                tid,
                errno: Errno::PERM,
                denial: PtraceDenial::AlreadyTraced {
                    tracer: thread.tracer_pid,
                },
            });
        }
        if let Some(mode) = thread.seccomp.filter(|mode| *mode != SECCOMP_MODE_DISABLED) {
            return Err(RemoteError::Seccomp { pid, tid, mode });
        }
    }
    Ok(Found {
        was_stopped: leader.state == b'T',
    })
}

/// Whether `tid` is an io_uring io thread (`PF_IO_WORKER`), which cannot be
/// ptraced and runs no user code; false when its stat cannot be read.
pub(crate) fn is_io_thread(pid: u32, tid: u32) -> bool {
    stat::read_task(Process::Pid(pid), tid)
        .ok()
        .and_then(|stat| stat.flags)
        .is_some_and(|flags| flags & PF_IO_WORKER != 0)
}

/// Why the kernel refused to let us ptrace `tid`, as far as can be told.
pub(crate) fn denial(pid: u32, tid: u32) -> PtraceDenial {
    let process = Process::Pid(pid);
    let thread = status::read_task(process, tid).ok();
    if let Some(tracer) = thread
        .map(|thread| thread.tracer_pid)
        .filter(|tracer| *tracer != 0)
    {
        return PtraceDenial::AlreadyTraced { tracer };
    }
    let our_uid = rustix::process::getuid().as_raw();
    let capable = rustix::thread::capabilities(None).is_ok_and(|caps| {
        caps.effective
            .contains(rustix::thread::CapabilitySet::SYS_PTRACE)
    });
    if let Some((real, effective)) = thread.map(|thread| thread.uid) {
        let ours = real == our_uid && effective == our_uid;
        if !ours && !capable {
            return PtraceDenial::NotOurUser {
                target_uid: effective,
                our_uid,
            };
        }
    }
    match status::yama_ptrace_scope() {
        Some(scope) if scope >= 3 || (scope >= 1 && !capable) => PtraceDenial::Yama { scope },
        _ => PtraceDenial::Unknown,
    }
}
