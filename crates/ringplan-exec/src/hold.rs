//! Holding restored rings in this process until asked to stop (what `plan
//! exec --hold` does): io_uring fds are close-on-exec and `execve` kills a
//! ring's SQ thread, so the process that restored the rings is the one
//! that must keep them.
//!
//! [`ring_fds`] says which of the restored fds are rings, for the holder to
//! report; [`StopWatch`] waits for SIGTERM or SIGINT, after which the
//! holder drops [`crate::Restored`] and so closes the rings.

use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;

use ringplan_kernel::procfs::fd::FdKind;
use ringplan_plan::{Op, Plan};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::Restored;

/// Why a hold could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HoldError {
    /// The signal handlers could not be installed.
    #[error("cannot watch for SIGTERM and SIGINT: {0}")]
    WatchSignals(std::io::Error),
}

/// A watch on SIGTERM and SIGINT. While it lives, those signals no longer
/// kill the process; they are queued for [`StopWatch::wait`] instead, so
/// the holder can close its rings cleanly.
pub struct StopWatch {
    signals: Signals,
}

impl StopWatch {
    /// Starts watching. Call it before announcing anything a controller may
    /// answer with a signal.
    pub fn start() -> Result<StopWatch, HoldError> {
        let signals = Signals::new([SIGTERM, SIGINT]).map_err(HoldError::WatchSignals)?;
        Ok(StopWatch { signals })
    }

    /// Blocks until SIGTERM or SIGINT arrives (or arrived since
    /// [`StopWatch::start`]).
    pub fn wait(mut self) {
        // `forever` ends only when the watch's handle is closed, which no
        // one else holds; either way, stopping is the answer.
        let _ = self
            .signals
            .forever()
            .find(|signal| [SIGTERM, SIGINT].contains(signal));
    }
}

/// The fds `restored` installed that are io_uring instances, in the plan's
/// install order.
pub fn ring_fds(plan: &Plan, restored: &Restored) -> Vec<i32> {
    plan.steps
        .iter()
        .filter_map(|step| match &step.op {
            Op::InstallFd(install) => Some(install.fd),
            _ => None,
        })
        .filter(|fd| {
            restored
                .fds
                .values()
                .flatten()
                .any(|owned| owned.as_raw_fd() == *fd)
                && is_ring_fd(*fd)
        })
        .collect()
}

/// Whether fd `fd` of this process is an io_uring instance: its
/// `/proc/self/fd` link names the ring's anonymous inode.
pub fn is_ring_fd(fd: i32) -> bool {
    std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .is_ok_and(|target| FdKind::of_link(target.as_os_str().as_bytes()) == FdKind::Ring)
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use rustix::io_uring::{io_uring_params, io_uring_setup};

    use super::is_ring_fd;

    #[test]
    fn a_ring_is_a_ring_and_a_pipe_is_not() {
        let mut params = io_uring_params::default();
        // SAFETY: `params` is initialized and asks for a plain ring.
        let ring = unsafe { io_uring_setup(1, &mut params) }.expect("io_uring_setup");
        assert!(is_ring_fd(ring.as_raw_fd()));
        let (reader, _writer) = rustix::pipe::pipe().expect("pipe");
        assert!(!is_ring_fd(reader.as_raw_fd()));
        drop(ring);
        assert!(!is_ring_fd(-1));
    }
}
