//! Reaching the process to dump: a pidfd, the access check that tells a
//! caller without ptrace rights why it is refused before anything is read,
//! and whether the process has exited since (which is how a dump knows that
//! its pid was not reused while it read `/proc/PID`).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::process::{pidfd_open, Pid, PidfdFlags};

/// Why the target process cannot be reached.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    #[error("pid {pid} has exited or is exiting; there is nothing left to dump")]
    Exited { pid: u32 },
    /// The cause is in the message, so it is not also a `source`.
    #[error("opening pid {pid}: {cause}")]
    Open { pid: u32, cause: std::io::Error },
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
        let raw = i32::try_from(pid)
            .ok()
            .and_then(Pid::from_raw)
            .ok_or(TargetError::InvalidPid { pid })?;
        let pidfd = pidfd_open(raw, PidfdFlags::empty()).map_err(|errno| match errno {
            rustix::io::Errno::SRCH => TargetError::NoSuchProcess { pid },
            other => TargetError::Open {
                pid,
                cause: other.into(),
            },
        })?;
        let target = Target { pid, pidfd };
        if target.has_exited() {
            return Err(TargetError::Exited { pid });
        }
        match std::fs::read_dir(format!("/proc/{pid}/fd")) {
            Ok(_) => Ok(target),
            Err(error) => Err(match error.kind() {
                std::io::ErrorKind::PermissionDenied => TargetError::PermissionDenied { pid },
                std::io::ErrorKind::NotFound => TargetError::NoSuchProcess { pid },
                _ => TargetError::Open { pid, cause: error },
            }),
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// Whether the process has exited or is exiting. Its pidfd polls
    /// readable once it has exited (zombie or reaped), and until then its pid
    /// cannot have been reused, so a read of `/proc/PID` that ends with this
    /// false read this process and no other. A process is also "exiting"
    /// from the moment its leader starts `do_exit` (`PF_EXITING`): it closes
    /// its whole fd table before the pidfd says anything, which a read in
    /// that window would take for a process without files.
    pub fn has_exited(&self) -> bool {
        let mut poll = [rustix::event::PollFd::new(
            &self.pidfd,
            rustix::event::PollFlags::IN,
        )];
        let now = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // A pidfd that cannot be polled says nothing; /proc then tells.
        let exited = rustix::event::poll(&mut poll, Some(&now)).is_ok_and(|ready| ready > 0);
        exited || leader_is_exiting(self.pid)
    }
}

/// `PF_EXITING` in `task_struct.flags`, which `/proc/PID/stat` shows.
use ringplan_kernel::abi::linux::PF_EXITING;
use ringplan_kernel::procfs::{stat, Process};

/// Whether `pid`'s leader thread has begun to exit (or `/proc` no longer
/// shows it).
fn leader_is_exiting(pid: u32) -> bool {
    stat::read(Process::Pid(pid))
        .ok()
        .and_then(|stat| stat.flags)
        .is_none_or(|flags| flags & PF_EXITING != 0)
}
