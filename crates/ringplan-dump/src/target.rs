//! Reaching the process to dump: a pidfd, and the access check that tells a
//! caller without ptrace rights why it is refused before anything is read.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::process::{pidfd_open, Pid, PidfdFlags};

/// Why the target process cannot be reached.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("pid {pid} is not a valid process id")]
    InvalidPid { pid: u32 },
    #[error("no process with pid {pid}")]
    NoSuchProcess { pid: u32 },
    #[error(
        "permission denied reading pid {pid}'s fds: dumping needs ptrace rights over the target \
         (run as its user with ptrace allowed, or with CAP_SYS_PTRACE)"
    )]
    PermissionDenied { pid: u32 },
    #[error("opening pid {pid}: {source}")]
    Open { pid: u32, source: std::io::Error },
}

/// An open handle on the process to dump. The pidfd keeps referring to this
/// process even if its pid is reused.
#[derive(Debug)]
pub struct Target {
    pid: u32,
    pidfd: OwnedFd,
}

impl Target {
    /// Opens `pid` and checks that its fd table can be read, which needs the
    /// same rights as ptrace (`PTRACE_MODE_READ`); `pidfd_getfd` later needs
    /// `PTRACE_MODE_ATTACH`, which the kernel grants under the same rules.
    pub fn open(pid: u32) -> Result<Target, TargetError> {
        let raw = i32::try_from(pid).ok().and_then(Pid::from_raw).ok_or(TargetError::InvalidPid { pid })?;
        let pidfd = pidfd_open(raw, PidfdFlags::empty()).map_err(|errno| match errno {
            rustix::io::Errno::SRCH => TargetError::NoSuchProcess { pid },
            other => TargetError::Open { pid, source: other.into() },
        })?;
        match std::fs::read_dir(format!("/proc/{pid}/fd")) {
            Ok(_) => Ok(Target { pid, pidfd }),
            Err(error) => Err(match error.kind() {
                std::io::ErrorKind::PermissionDenied => TargetError::PermissionDenied { pid },
                std::io::ErrorKind::NotFound => TargetError::NoSuchProcess { pid },
                _ => TargetError::Open { pid, source: error },
            }),
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }
}
