//! The caller's standard streams, moved out of a plan's way.
//!
//! A dumped process usually holds fds 0, 1 and 2 too, and its plan installs
//! objects there. A restorer that restores into itself (as `plan exec`
//! does) first moves its own streams that the plan needs above the plan's
//! fds, writes through the moved copies meanwhile, and puts them back once
//! the restored fds are closed ([`MovedStdio::restore`]).

use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};

use ringplan_plan::Plan;
use rustix::io::Errno;

/// Why a standard stream could not be moved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StdioError {
    /// `F_DUPFD_CLOEXEC` of the stream failed.
    #[error("moving fd {fd} out of the plan's way: {errno}")]
    Move { fd: i32, errno: Errno },
}

/// This process's standard streams that a plan installs onto, moved out of
/// its way.
#[derive(Debug)]
pub struct MovedStdio {
    /// `(original number, moved copy)` for each stream the plan needs.
    moved: Vec<(i32, OwnedFd)>,
}

impl MovedStdio {
    /// Moves each of fds 0-2 that the plan installs onto (and that is open)
    /// to a close-on-exec copy at or above the plan's fd floor, and closes
    /// the original number. On failure, the streams moved so far are put
    /// back.
    pub fn make_room(plan: &Plan) -> Result<MovedStdio, StdioError> {
        let mut stdio = MovedStdio { moved: Vec::new() };
        for fd in [0, 1, 2] {
            if !plan.needed_fds.contains(&fd) {
                continue;
            }
            // SAFETY: fcntl on a number that may be closed only fails.
            let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
            if rustix::io::fcntl_getfd(borrowed).is_err() {
                continue;
            }
            let copy = match rustix::io::fcntl_dupfd_cloexec(borrowed, plan.temp_fd_floor.max(3)) {
                Ok(copy) => copy,
                Err(errno) => {
                    stdio.restore();
                    return Err(StdioError::Move { fd, errno });
                }
            };
            // SAFETY: fd `fd` is open (checked above) and is ours to close:
            // the standard streams are not read or written while moved.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
            stdio.moved.push((fd, copy));
        }
        Ok(stdio)
    }

    /// Whether standard stream `fd` (0, 1 or 2) was moved: its number then
    /// belongs to the plan, and nothing may write to it meanwhile.
    pub fn is_moved(&self, fd: i32) -> bool {
        self.moved.iter().any(|(number, _)| *number == fd)
    }

    /// Where this process's stdout is while moved; `None` when it was not
    /// moved (fd 1 is still stdout).
    pub fn stdout(&self) -> Option<BorrowedFd<'_>> {
        self.moved
            .iter()
            .find(|(fd, _)| *fd == 1)
            .map(|(_, copy)| copy.as_fd())
    }

    /// Puts the streams back at their numbers (replacing whatever is there).
    pub fn restore(self) {
        for (fd, copy) in self.moved {
            // SAFETY: `fd` is 0, 1 or 2; dup3 replaces it atomically, and the
            // new fd is owned by the process's standard streams from now on.
            let mut target = unsafe { OwnedFd::from_raw_fd(fd) };
            let _ = rustix::io::dup3(&copy, &mut target, rustix::io::DupFlags::empty());
            std::mem::forget(target);
        }
    }
}
