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
//!
//! A holder may hand its lock to the command it runs (`plan freeze --pid P
//! -- plan exec IMAGE --pid P`): [`HoldLock::delegate`] gives an inheritable
//! fd of the lock's open file and an environment entry
//! ([`DELEGATE_ENV`]) naming it; a ringplan command started with both, for
//! the same process, shares the holder's lock instead of waiting for it
//! (an `flock` belongs to the open file, which both then hold). It finds
//! the process as the holder left it (stopped) and leaves it so.
//!
//! It lives here, below both `ringplan-dump` (`--freeze`, `plan freeze`)
//! and `ringplan-exec` (`plan exec --pid`), so that every command that
//! stops a process takes the same lock.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::procfs::{stat, Process};
use rustix::fs::FlockOperation;
use rustix::io::Errno;

/// How long a second holder waits for the first before it refuses.
pub const HOLD_WAIT: Duration = Duration::from_secs(10);

/// The environment variable through which a holder hands its lock to the
/// command it runs: `NAME:FD`, the lock file's name (`PID.START_TIME`) and
/// an fd of it the command inherited.
pub const DELEGATE_ENV: &str = "RINGPLAN_HOLD_LOCK";

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
    /// Handed down by the holder that started this command
    /// ([`DELEGATE_ENV`]): the holder's lock, shared.
    delegated: bool,
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
        if let Some(file) = handed_down(&path, std::env::var(DELEGATE_ENV).ok()) {
            return Ok(HoldLock {
                file,
                delegated: true,
            });
        }
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
        Ok(HoldLock {
            file,
            delegated: false,
        })
    }

    /// Whether this is a holder's lock handed down to this command
    /// ([`DELEGATE_ENV`]) rather than one it took.
    pub fn is_delegated(&self) -> bool {
        self.delegated
    }

    /// Hands the lock to a command about to be started: an fd of the
    /// lock's open file without close-on-exec, and the value of
    /// [`DELEGATE_ENV`] naming it. Start the command with both, then drop
    /// the fd (the command keeps its copy; the lock stays this holder's).
    pub fn delegate(&self) -> std::io::Result<(std::os::fd::OwnedFd, String)> {
        let inheritable = rustix::io::dup(self.file.as_fd())?;
        let name = self.path_name()?;
        let value = format!("{name}:{}", inheritable.as_raw_fd());
        Ok((inheritable, value))
    }

    /// The lock file's name (`PID.START_TIME`), from its fd.
    fn path_name(&self) -> std::io::Result<String> {
        let link = std::fs::read_link(format!("/proc/self/fd/{}", self.file.as_raw_fd()))?;
        link.file_name()
            .and_then(|name| name.to_str())
            .map(str::to_owned)
            .ok_or_else(|| std::io::Error::other("the lock file has no name"))
    }

    /// The lock's file, for a process that must keep holding it (the
    /// freeze watchdog inherits it across `fork`).
    pub fn file(&self) -> &File {
        &self.file
    }
}

/// The holder's lock of `path`, when this command was started with it
/// (`value`, that of [`DELEGATE_ENV`], naming `path`'s file and an inherited fd that is that
/// file, whose lock it then holds at once): a close-on-exec copy of that
/// fd. Anything else (no variable, another process's lock, an fd that is
/// not the lock file) is ignored, and the lock is taken as usual.
fn handed_down(path: &Path, value: Option<String>) -> Option<File> {
    let value = value?;
    let (name, fd) = value.rsplit_once(':')?;
    if path.file_name()?.to_str()? != name {
        return None;
    }
    let fd: std::os::fd::RawFd = fd.parse().ok()?;
    if fd < 0 {
        return None;
    }
    // SAFETY: the fd is only borrowed for the duration of the calls below,
    // and only if fcntl says it is open; it was inherited for this purpose
    // and stays open (this command never closes it).
    let inherited = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    rustix::io::fcntl_getfd(inherited).ok()?;
    let held = rustix::fs::fstat(inherited).ok()?;
    let named = rustix::fs::stat(path).ok()?;
    if (held.st_dev, held.st_ino) != (named.st_dev, named.st_ino) {
        return None;
    }
    // The same open file as the holder's: its lock is already held by it,
    // so this succeeds at once (and would fail if it were anyone else's).
    rustix::fs::flock(inherited, FlockOperation::NonBlockingLockExclusive).ok()?;
    let copy = rustix::io::fcntl_dupfd_cloexec(inherited, 0).ok()?;
    Some(File::from(copy))
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

    /// The tests take this process's own lock: one at a time.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn a_second_holder_waits_then_refuses_naming_the_first() {
        let _turn = ONE_AT_A_TIME.lock();
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
        // Not ZERO: a child another test forks in the meantime holds a copy
        // of the lock's fd until its exec closes it (seen in a VM under
        // emulation, where that window is long).
        HoldLock::acquire(pid, Duration::from_secs(5)).expect("free again once the first let go");
    }

    #[test]
    fn a_handed_down_lock_is_shared_and_a_stranger_fd_is_not_taken_for_it() {
        let _turn = ONE_AT_A_TIME.lock();
        let pid = std::process::id();
        let holder = HoldLock::acquire(pid, Duration::ZERO).expect("the holder");
        let (inheritable, value) = holder.delegate().expect("delegating");
        let start_time = stat::read(Process::Pid(pid))
            .ok()
            .and_then(|line| line.start_time)
            .expect("start time");
        let path = lock_dir().join(format!("{pid}.{start_time}"));
        assert!(
            value.starts_with(&format!("{pid}.{start_time}:")),
            "{value}"
        );
        // As the started command would see it.
        let shared = handed_down(&path, Some(value)).expect("the holder's lock, shared");
        drop(shared);
        // Another file at the fd the variable names is not the lock, nor
        // is the lock of another process.
        let stranger = File::open("/dev/null").expect("/dev/null");
        let wrong_fd = format!("{pid}.{start_time}:{}", stranger.as_raw_fd());
        assert!(handed_down(&path, Some(wrong_fd)).is_none());
        let wrong_name = format!("1.1:{}", inheritable.as_raw_fd());
        assert!(handed_down(&path, Some(wrong_name)).is_none());
        drop(inheritable);
        // The holder still holds it.
        assert!(matches!(
            HoldLock::acquire(pid, Duration::ZERO),
            Err(HoldLockError::HeldByAnother { .. })
        ));
        drop(holder);
    }
}
