//! Thin wrappers of the ptrace requests, `waitpid` and `tgkill` the remote
//! module uses, architecture-neutral, each returning the errno. A stop is
//! read into [`Stop`].

use ringplan_kernel::abi::ptrace::{RseqConfiguration, PTRACE_GET_RSEQ_CONFIGURATION};
use rustix::io::Errno;

/// The errno of the libc call that just failed.
pub(crate) fn last_errno() -> Errno {
    Errno::from_raw_os_error(
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO),
    )
}

fn request(
    request: libc::c_uint,
    tid: u32,
    addr: usize,
    data: usize,
) -> Result<libc::c_long, Errno> {
    // SAFETY: every request passed here takes integers in `addr` and `data`
    // or points `data` at a buffer the caller sized for the request (see
    // each caller); none keeps the pointer past the call.
    let result = unsafe {
        libc::ptrace(
            request,
            tid as libc::pid_t,
            addr as *mut libc::c_void,
            data as *mut libc::c_void,
        )
    };
    if result == -1 {
        return Err(last_errno());
    }
    Ok(result)
}

/// `PTRACE_SEIZE` with `PTRACE_O_TRACESYSGOOD` (syscall stops report
/// `SIGTRAP | 0x80`): traces `tid` without stopping it.
pub(crate) fn seize(tid: u32) -> Result<(), Errno> {
    request(
        libc::PTRACE_SEIZE,
        tid,
        0,
        libc::PTRACE_O_TRACESYSGOOD as usize,
    )
    .map(drop)
}

/// `PTRACE_INTERRUPT`: makes a seized thread stop (`PTRACE_EVENT_STOP`).
pub(crate) fn interrupt(tid: u32) -> Result<(), Errno> {
    request(libc::PTRACE_INTERRUPT, tid, 0, 0).map(drop)
}

/// `PTRACE_SYSCALL`: resumes until the next syscall entry or exit.
pub(crate) fn resume_to_syscall(tid: u32) -> Result<(), Errno> {
    request(libc::PTRACE_SYSCALL, tid, 0, 0).map(drop)
}

/// `PTRACE_CONT` without a signal.
pub(crate) fn resume(tid: u32) -> Result<(), Errno> {
    request(libc::PTRACE_CONT, tid, 0, 0).map(drop)
}

/// `PTRACE_DETACH` without a signal.
pub(crate) fn detach(tid: u32) -> Result<(), Errno> {
    request(libc::PTRACE_DETACH, tid, 0, 0).map(drop)
}

/// `PTRACE_GETSIGMASK`: the thread's blocked signals (the mask a
/// `ppoll`/`pselect`/`sigsuspend` in progress saved, when there is one).
pub(crate) fn signal_mask(tid: u32) -> Result<u64, Errno> {
    let mut mask: u64 = 0;
    request(
        libc::PTRACE_GETSIGMASK,
        tid,
        std::mem::size_of::<u64>(),
        std::ptr::addr_of_mut!(mask) as usize,
    )?;
    Ok(mask)
}

/// `PTRACE_SETSIGMASK` (the kernel never blocks `SIGKILL` and `SIGSTOP`).
pub(crate) fn set_signal_mask(tid: u32, mask: u64) -> Result<(), Errno> {
    request(
        libc::PTRACE_SETSIGMASK,
        tid,
        std::mem::size_of::<u64>(),
        std::ptr::addr_of!(mask) as usize,
    )
    .map(drop)
}

/// `PTRACE_GET_RSEQ_CONFIGURATION` (Linux 5.13): where the thread's
/// `struct rseq` is and its signature; `rseq_abi_pointer` 0 when it
/// registered none.
pub(crate) fn rseq_configuration(tid: u32) -> Result<RseqConfiguration, Errno> {
    let mut configuration = RseqConfiguration::default();
    request(
        PTRACE_GET_RSEQ_CONFIGURATION,
        tid,
        std::mem::size_of::<RseqConfiguration>(),
        std::ptr::addr_of_mut!(configuration) as usize,
    )?;
    Ok(configuration)
}

/// `PTRACE_GETSIGINFO` of a thread in a signal-delivery stop: the
/// signal's `si_code` and `si_pid` (who sent it, for `SI_TKILL` and
/// `SI_USER`).
pub(crate) fn signal_sender(tid: u32) -> Result<(i32, i32), Errno> {
    // SAFETY: siginfo_t is plain data, all-zero is valid.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    request(
        libc::PTRACE_GETSIGINFO,
        tid,
        0,
        std::ptr::addr_of_mut!(info) as usize,
    )?;
    // SAFETY: si_pid is read from the union as the kernel filled it in;
    // for a signal without a sender it holds whatever the kernel put
    // there (an integer, never read as anything else).
    let sender = unsafe { info.si_pid() };
    Ok((info.si_code, sender))
}

/// `tgkill(pid, tid, signal)`.
pub(crate) fn tgkill(pid: u32, tid: u32, signal: i32) -> Result<(), Errno> {
    // SAFETY: tgkill takes three integers.
    let result = unsafe {
        libc::syscall(
            libc::SYS_tgkill,
            pid as libc::c_long,
            tid as libc::c_long,
            signal as libc::c_long,
        )
    };
    if result == -1 {
        return Err(last_errno());
    }
    Ok(())
}

/// How a traced thread was found by `waitpid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stop {
    /// `PTRACE_EVENT_STOP`: a `PTRACE_INTERRUPT` or a group-stop, inside
    /// the kernel's signal handling (where it decides whether to restart an
    /// interrupted syscall once the thread goes on); the signal is
    /// `SIGTRAP` for an interrupt, the stop signal for a group-stop.
    Event(i32),
    /// A syscall entry or exit stop (`PTRACE_SYSCALL`).
    Syscall,
    /// A signal is about to be delivered; resuming without it suppresses it.
    Signal(i32),
    /// Another ptrace event (none is asked for).
    OtherEvent(i32),
    /// The thread exited (status) or was killed (signal).
    Gone(String),
}

/// Waits for thread `tid` (`__WALL`: threads are not children) to stop or
/// end.
pub(crate) fn wait(tid: u32) -> Result<Stop, Errno> {
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: waitpid writes one int at the pointer given.
        let result = unsafe { libc::waitpid(tid as libc::pid_t, &mut status, libc::__WALL) };
        if result == -1 {
            let errno = last_errno();
            if errno == Errno::INTR {
                continue;
            }
            return Err(errno);
        }
        break;
    }
    if libc::WIFEXITED(status) {
        return Ok(Stop::Gone(format!(
            "exited with status {}",
            libc::WEXITSTATUS(status)
        )));
    }
    if libc::WIFSIGNALED(status) {
        return Ok(Stop::Gone(format!(
            "killed by signal {}",
            libc::WTERMSIG(status)
        )));
    }
    let signal = libc::WSTOPSIG(status);
    let event = (status >> 16) & 0xff;
    Ok(match event {
        0 if signal == libc::SIGTRAP | 0x80 => Stop::Syscall,
        0 => Stop::Signal(signal),
        libc::PTRACE_EVENT_STOP => Stop::Event(signal),
        other => Stop::OtherEvent(other),
    })
}
