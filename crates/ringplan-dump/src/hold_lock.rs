//! One ringplan command at a time holds a process still.
//!
//! `--freeze`, `plan freeze` (and the commands that stop a process to take
//! its rings out or put them back) stop and resume their target. Two of
//! them at once on one process would each believe it held the process:
//! the second finds it stopped, reads it as "already stopped", and the
//! first resumes it while the second reads. So a holder first takes an
//! exclusive lock named after the process (its pid and start time, so a
//! reused pid is another process): `flock(LOCK_EX)` on a file in
//! `/run/ringplan/holds` (or, where `/run` is not writable,
//! `$TMPDIR/ringplan-holds`), made writable by everyone so that holders of
//! any user exclude each other. The file says who holds it (pid and
//! command), for the one who has to wait. The kernel drops the lock when
//! the holder's last fd to it closes, so a holder that dies (SIGKILL
//! included) lets the next one in; the freeze watchdog inherits the fd
//! and keeps the lock until it has let the process go.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ringplan_kernel::procfs::{stat, Process};
use rustix::fs::FlockOperation;
use rustix::io::Errno;

/// How long a second holder waits for the first before it refuses.
pub const HOLD_WAIT: Duration = Duration::from_secs(10);

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HoldLockError {
    /// Another ringplan command holds the process and did not let it go in
    /// time.
    #[error(
        "pid {pid} is held by another ringplan command ({holder}); it did not let go within {} s",
        waited.as_secs()
    )]
    HeldByAnother {
        pid: u32,
        holder: String,
        waited: Duration,
    },
    /// The target is gone.
    #[error("pid {pid} does not exist")]
    NoSuchProcess { pid: u32 },
    /// The lock file could not be made or locked. The cause is in the
    /// message, so it is not also a `source`.
    #[error("locking pid {pid} for this command ({}): {cause}", path.display())]
    Io {
        pid: u32,
        path: PathBuf,
        cause: std::io::Error,
    },
}

/// The exclusive right to stop and resume one process; dropped, it lets
/// the next holder in.
#[derive(Debug)]
pub struct HoldLock {
    file: File,
}

impl HoldLock {
    /// Takes the lock of `pid`, waiting up to `wait` for another holder to
    /// let go.
    pub fn acquire(pid: u32, wait: Duration) -> Result<HoldLock, HoldLockError> {
        let start_time = stat::read(Process::Pid(pid))
            .ok()
            .and_then(|line| line.start_time)
            .ok_or(HoldLockError::NoSuchProcess { pid })?;
        let dir = lock_dir();
        let path = dir.join(format!("{pid}.{start_time}"));
        let io = |cause: std::io::Error| HoldLockError::Io {
            pid,
            path: path.clone(),
            cause,
        };
        make_shared_dir(&dir).map_err(io)?;
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o666)
            // std opens with O_CLOEXEC: no command a holder starts inherits
            // the lock (`fork`, as the watchdog does, keeps it).
            .open(&path)
            .map_err(io)?;
        // Others' umask may have narrowed the mode; everyone must open it.
        let _ = file.set_permissions(std::fs::Permissions::from_mode(0o666));
        let started = Instant::now();
        let mut pause = Duration::from_millis(5);
        loop {
            match rustix::fs::flock(file.as_fd(), FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => break,
                Err(Errno::WOULDBLOCK) | Err(Errno::INTR) => {}
                Err(errno) => return Err(io(errno.into())),
            }
            if started.elapsed() >= wait {
                return Err(HoldLockError::HeldByAnother {
                    pid,
                    holder: holder_of(&mut file),
                    waited: wait,
                });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(100));
        }
        // Say who holds it, for whoever waits next.
        let me = format!(
            "pid {}: {}",
            std::process::id(),
            std::env::args().collect::<Vec<_>>().join(" ")
        );
        let said = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(me.as_bytes()));
        said.map_err(io)?;
        Ok(HoldLock { file })
    }

    /// The lock's file, for a process that must keep holding it (the
    /// freeze watchdog inherits it across `fork`).
    pub fn file(&self) -> &File {
        &self.file
    }
}

/// What the lock file says about its holder.
fn holder_of(file: &mut File) -> String {
    let mut text = String::new();
    let read = file
        .rewind()
        .and_then(|()| file.take(4096).read_to_string(&mut text));
    match read {
        Ok(_) if !text.trim().is_empty() => text.trim().to_owned(),
        _ => "a command that did not say who it is".to_owned(),
    }
}

/// `/run/ringplan/holds`, or `$TMPDIR/ringplan-holds` where `/run` is not
/// writable.
fn lock_dir() -> PathBuf {
    let run = Path::new("/run");
    if rustix::fs::access(run, rustix::fs::Access::WRITE_OK).is_ok() {
        run.join("ringplan").join("holds")
    } else {
        std::env::temp_dir().join("ringplan-holds")
    }
}

/// Creates `dir` (and its parent) writable by everyone, sticky like /tmp.
fn make_shared_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let sticky = std::fs::Permissions::from_mode(0o1777);
    // Only the owner can change the mode; another user's dir stays as made.
    let _ = std::fs::set_permissions(dir, sticky);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_waits_then_refuses_naming_the_first() {
        let pid = std::process::id();
        let first = HoldLock::acquire(pid, Duration::ZERO).expect("the first holder");
        let second = HoldLock::acquire(pid, Duration::from_millis(50));
        match second {
            Err(HoldLockError::HeldByAnother { holder, .. }) => {
                assert!(holder.starts_with(&format!("pid {pid}: ")), "{holder}")
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        drop(first);
        HoldLock::acquire(pid, Duration::ZERO).expect("free again once the first let go");
    }
}
