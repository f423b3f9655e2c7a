//! The fdinfo backend: a process's io_uring state from `/proc/PID/fd` and
//! `/proc/PID/fdinfo/FD`, for kernels where the BPF backend cannot load.
//!
//! For every fd, [`read`] takes the link target of `/proc/PID/fd/FD` (a path,
//! `anon_inode:[io_uring]`, `anon_inode:[eventfd]`, `pipe:[...]`...) and the
//! fdinfo text; for plain files also the inode mode (`stat` through the
//! link). Reading and parsing those files is
//! [`ringplan_kernel::procfs::fd`] and [`ringplan_kernel::procfs::fdinfo`]
//! (whose doc shows the format); this module decides what to read again,
//! and `raw_state.rs` turns what was read into a [`RawState`]:
//! - `flags` is the file's `f_flags` with `O_CLOEXEC` added when the fd is
//!   close-on-exec: the bit becomes [`RawFdEntry::cloexec`] and is taken out of
//!   [`RawFile::flags`].
//! - Ring identity is the ring's anonymous inode number (`ino:`): each ring
//!   has its own, so dup'd fds of one ring are one ring and one file.
//!   Eventfds share one anonymous inode; their identity is `eventfd-id`.
//!   Every other fd is its own file: fdinfo cannot tell a dup from a second
//!   open of the same path.
//! - `SqThread` is the SQ thread's thread id, the same for every ring
//!   sharing the thread, and none without one (no SQPOLL, or an SQPOLL ring
//!   whose thread is gone, e.g. after `execve`). Until a new SQ thread first
//!   runs it shows its creator's id instead; such a read is repeated (see
//!   [`sq_thread_has_run`]). `SqThreadCpu` is passed on as read.
//! - Each occupied registered-file slot becomes a file of its own with only
//!   a path: which open file it is, its flags, position and mode are not
//!   shown.
//! - An eventfd's [`RawEventfd::flags`] are `EFD_SEMAPHORE` from
//!   `eventfd-semaphore` and `O_NONBLOCK` from the file's flags; whether it
//!   was created close-on-exec is not shown (the fd's flag is).
//!
//! Not shown at all, so marked unknown ([`RawRing::flags`] `None`,
//! [`RawRing::idle_known`] false, [`RawRing::eventfd`] [`Known::Unknown`]):
//! the setup flags, the SQ idle time and the registered eventfd. An eventfd
//! registered with a ring whose fd the process closed is invisible.
//!
//! This is 6.18's format. Linux 6.1 prints registered files by name, hides
//! `SqThread` while the SQ thread polls and has no `eventfd-semaphore`, so
//! [`read`] first checks the kernel's format
//! ([`crate::fdinfo_format::check`]) and refuses one it cannot read with
//! [`FdinfoError::KernelFormat`] rather than return wrong paths or SQ groups.
//!
//! The kernel prints a ring's part of fdinfo only when it can take the
//! ring's lock without waiting; a ring that is busy submitting shows only the
//! common lines. Such a read is retried for up to about 100 ms, then
//! reported as [`FdinfoError::RingBusy`].
//!
//! [`RawState`]: crate::raw::RawState
//! [`RawFdEntry::cloexec`]: crate::raw::RawFdEntry::cloexec
//! [`RawFile::flags`]: crate::raw::RawFile::flags
//! [`RawEventfd::flags`]: crate::raw::RawEventfd::flags
//! [`RawRing::flags`]: crate::raw::RawRing::flags
//! [`RawRing::idle_known`]: crate::raw::RawRing::idle_known
//! [`RawRing::eventfd`]: crate::raw::RawRing::eventfd
//! [`Known::Unknown`]: crate::raw::Known::Unknown

mod raw_state;

use std::path::PathBuf;
use std::time::Duration;

use ringplan_kernel::procfs::fd::{FdKind, ProcessFds};
use ringplan_kernel::procfs::fdinfo::Fdinfo;
use ringplan_kernel::procfs::{stat, task, Process, ProcfsError};

use crate::raw::RawState;
use raw_state::StateBuilder;

/// Reads of a ring's fdinfo before giving up on a ring whose lock stays
/// taken, and the pause between them.
const RING_READ_ATTEMPTS: u32 = 50;
const RING_READ_PAUSE: Duration = Duration::from_millis(2);

/// Why the fdinfo backend could not read a process.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FdinfoError {
    #[error("process {pid} does not exist")]
    NoSuchProcess { pid: u32 },
    #[error("process {pid} exited while it was read")]
    ExitedWhileRead { pid: u32 },
    #[error("permission denied reading {}: reading another process's fds needs the rights ptrace needs", path.display())]
    AccessDenied { path: PathBuf },
    /// A file could not be read or parsed (the error names it).
    #[error(transparent)]
    Procfs(ProcfsError),
    #[error(
        "{}: no ring state in {attempts} reads: the kernel prints it only when it can take the ring's lock at once, \
         and the ring stayed busy",
        path.display()
    )]
    RingBusy { path: PathBuf, attempts: u32 },
    #[error(transparent)]
    KernelFormat(#[from] crate::fdinfo_format::FdinfoFormatError),
}

impl From<ProcfsError> for FdinfoError {
    fn from(error: ProcfsError) -> FdinfoError {
        if error.is_permission_denied() {
            FdinfoError::AccessDenied {
                path: error.path().to_owned(),
            }
        } else {
            FdinfoError::Procfs(error)
        }
    }
}

/// Reads every fd of process `pid` and the io_uring state behind them.
pub fn read(pid: u32) -> Result<RawState, FdinfoError> {
    let mut process = ProcessFds::open(Process::Pid(pid)).map_err(|error| match error {
        ProcfsError::NoSuchProcess { .. } => FdinfoError::NoSuchProcess { pid },
        other => other.into(),
    })?;
    crate::fdinfo_format::check()?;
    let mut builder = StateBuilder::default();
    for fd in process.fd_numbers()? {
        builder.add_fd(&mut process, fd)?;
    }
    // An fd that vanished while being read is skipped; a process that
    // exited meanwhile would look like one with fewer fds, so say so.
    if !process_is_alive(pid) {
        return Err(FdinfoError::ExitedWhileRead { pid });
    }
    Ok(builder.into_state())
}

/// Whether `pid` is a live process: `/proc/PID/stat` exists and its state
/// is not zombie or dead.
fn process_is_alive(pid: u32) -> bool {
    stat::read(Process::Pid(pid)).is_ok_and(|stat| !stat.has_exited())
}

/// Reads and parses the fdinfo of `fd`, of `kind`; `None` when the fd
/// closed meanwhile. A ring is read again while its state is missing (its
/// lock was taken) or while its SQ thread has not run yet (see
/// [`sq_thread_has_run`]).
fn read_settled_fdinfo(
    process: &mut ProcessFds,
    fd: i32,
    kind: FdKind,
) -> Result<Option<Fdinfo>, FdinfoError> {
    let path = process.fdinfo_path(fd);
    let mut attempt = 1;
    loop {
        let Some(text) = process.read_fdinfo(fd)? else {
            return Ok(None);
        };
        let outcome = Fdinfo::parse(&path, text, kind);
        let settled = match &outcome {
            Err(ProcfsError::NoRingState { .. }) => false,
            Ok(Fdinfo {
                ring: Some(ring), ..
            }) => ring
                .sq_thread
                .is_none_or(|thread| sq_thread_has_run(process.process(), thread)),
            _ => true,
        };
        if settled {
            return Ok(Some(outcome?));
        }
        if attempt == RING_READ_ATTEMPTS {
            return match outcome {
                Err(ProcfsError::NoRingState { path }) => Err(FdinfoError::RingBusy {
                    path,
                    attempts: attempt,
                }),
                // An SQ thread id that never settled is believed (see below).
                other => Ok(Some(other?)),
            };
        }
        attempt += 1;
        std::thread::sleep(RING_READ_PAUSE);
    }
}

/// Whether the thread `SqThread:` names is the SQ thread itself. A new SQ
/// thread starts with its creator's name and, until it first runs, fdinfo
/// shows the creator's thread id instead of its own (6.18 resets it when
/// the thread names itself `iou-sqp-...`). Rings of one group read on both
/// sides of that moment would seem to have two SQ threads, so such a read is
/// repeated. A kernel that never switches is believed after the last
/// attempt: its value is the same for the whole group anyway.
fn sq_thread_has_run(process: Process, sq_thread: u32) -> bool {
    task::is_running_sq_thread(process, sq_thread)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_missing_one_is_not() {
        assert!(process_is_alive(std::process::id()));
        assert!(!process_is_alive((1 << 22) + 1));
    }
}
