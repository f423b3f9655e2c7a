//! Which fd numbers are open in this process: the target fds a plan
//! installs onto must all be free before its first step.

use std::os::fd::BorrowedFd;

use rustix::event::{PollFd, PollFlags};
use rustix::io::Errno;

use crate::error::ExecError;

/// Whether `fd` is open in this process.
fn fd_is_open(fd: i32) -> Result<bool, ExecError> {
    if fd < 0 {
        return Ok(false);
    }
    // SAFETY: `fcntl(F_GETFD)` on a number that may not be open only reads
    // its flags or fails with EBADF; the borrow ends with the call.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    match rustix::io::fcntl_getfd(borrowed) {
        Ok(_) => Ok(true),
        Err(Errno::BADF) => Ok(false),
        Err(errno) => Err(ExecError::CheckSyscallFailed {
            what: "fcntl(F_GETFD)",
            errno,
        }),
    }
}

/// The first of `fds` (ascending) that is open in this process. One
/// `poll` with a zero timeout answers for all of them (`POLLNVAL`: not
/// open); if poll cannot take them all, one `fcntl(F_GETFD)` each.
pub(super) fn first_open_fd(fds: &[i32]) -> Result<Option<i32>, ExecError> {
    let candidates: Vec<i32> = fds.iter().copied().filter(|&fd| fd >= 0).collect();
    if candidates.is_empty() {
        return Ok(None);
    }
    let mut poll_fds: Vec<PollFd<'_>> = candidates
        .iter()
        .map(|&fd| {
            // SAFETY: the borrows live only during the `poll` call below,
            // which on a number that is not open reports POLLNVAL and nothing
            // else; with a zero timeout it registers no wait on an open one.
            let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
            PollFd::from_borrowed_fd(borrowed, PollFlags::empty())
        })
        .collect();
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    if rustix::event::poll(&mut poll_fds, Some(&zero)).is_ok() {
        let open = poll_fds
            .iter()
            .position(|poll_fd| !poll_fd.revents().contains(PollFlags::NVAL));
        return Ok(open.map(|index| candidates[index]));
    }
    for fd in candidates {
        if fd_is_open(fd)? {
            return Ok(Some(fd));
        }
    }
    Ok(None)
}
