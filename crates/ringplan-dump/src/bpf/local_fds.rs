//! The dumper's local fds: copying one of the target's into the dumper
//! (`pidfd_getfd`), and the number pass B knows a local fd by.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use super::error::BpfError;

/// The number of a local fd.
pub(super) fn fd_number(fd: &impl AsFd) -> u32 {
    // fds are never negative.
    fd.as_fd().as_raw_fd().unsigned_abs()
}

/// Copies fd `target_fd` of the target into the dumper (`pidfd_getfd`).
pub(super) fn copy_target_fd(
    pid: u32,
    pidfd: BorrowedFd<'_>,
    target_fd: i32,
) -> Result<OwnedFd, BpfError> {
    rustix::process::pidfd_getfd(pidfd, target_fd, rustix::process::PidfdGetfdFlags::empty())
        .map_err(|errno| match errno {
            rustix::io::Errno::PERM | rustix::io::Errno::ACCESS => {
                BpfError::PermissionDenied { pid, fd: target_fd }
            }
            rustix::io::Errno::BADF => BpfError::TargetChanged {
                pid,
                what: format!("fd {target_fd} was closed after it was listed"),
            },
            rustix::io::Errno::SRCH => BpfError::TargetChanged {
                pid,
                what: "the process exited".into(),
            },
            other => BpfError::Io {
                what: format!("copying fd {target_fd} of pid {pid} (pidfd_getfd)"),
                source: other.into(),
            },
        })
}
