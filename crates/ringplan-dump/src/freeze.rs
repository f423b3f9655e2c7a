//! Holding a target still while it is read, and always letting it go.
//!
//! A dump reads the fd table and then each ring's tables; a target that
//! closes or registers files in between yields a mix of two states. Freezing
//! the target for the read removes that window:
//!
//! - **cgroup freezer** (v2 `cgroup.freeze`, else v1 `freezer.state`), used
//!   only when the target is the only process in its cgroup and the cgroup
//!   has no children: freezing a cgroup freezes everything in it, and
//!   ringplan must not freeze bystanders (or itself).
//! - **SIGSTOP/SIGCONT** otherwise, sent through the target's pidfd (no pid
//!   reuse race). It stops every thread of the group, the SQ thread too
//!   (measured on 6.18: `iou-sqp-PID` goes to state T with its creator).
//!   The target's parent sees the stop and the continue (`waitpid` with
//!   `WUNTRACED`), as with a shell's job control.
//!
//! A target that is already stopped or frozen is left exactly as found.
//!
//! One ringplan command at a time: before anything else, a holder takes the
//! target's [`HoldLock`], waiting up to [`HOLD_WAIT`] for another ringplan
//! command that holds it; so a target found stopped was stopped by someone
//! else, and nobody resumes what it did not stop.
//!
//! Letting go when ringplan itself dies: before freezing, a watchdog process
//! is forked. It holds only the read end of a pipe whose write end is
//! ringplan's (close-on-exec, so no command ringplan starts inherits it) and
//! a handle that thaws (the pidfd, or the open control file). When ringplan
//! releases the target it tells the watchdog so; when ringplan dies by any
//! means (SIGKILL included) the pipe reaches end-of-file and the watchdog
//! thaws the target. The watchdog runs in a session of its own and ignores
//! the terminal's signals, so Ctrl-C on ringplan's process group does not
//! take it down with ringplan.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ringplan_kernel::procfs::mountinfo::{self, MountinfoEntry};
use ringplan_kernel::procfs::{stat, task, Process, ProcfsError};

use crate::hold_lock::{HoldLock, HoldLockError, HOLD_WAIT};
use crate::target::Target;

/// How to hold the target still.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FreezeMethod {
    /// The cgroup freezer when the target is alone in its cgroup, else
    /// SIGSTOP/SIGCONT.
    #[default]
    Auto,
    /// The cgroup freezer only; fail when it cannot be used without
    /// freezing other processes.
    Cgroup,
    /// SIGSTOP/SIGCONT only.
    Signal,
}

/// How the target was held, for telling the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeldBy {
    /// cgroup v2 `cgroup.freeze` of this cgroup directory.
    CgroupV2(PathBuf),
    /// cgroup v1 `freezer.state` of this cgroup directory.
    CgroupV1(PathBuf),
    /// SIGSTOP, released with SIGCONT.
    Signal,
    /// The target was already stopped (state T); left so.
    AlreadyStopped,
    /// The target's cgroup was already frozen; left so.
    AlreadyFrozen(PathBuf),
}

impl std::fmt::Display for HeldBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeldBy::CgroupV2(dir) => write!(f, "cgroup v2 freezer of {}", dir.display()),
            HeldBy::CgroupV1(dir) => write!(f, "cgroup v1 freezer of {}", dir.display()),
            HeldBy::Signal => f.write_str("SIGSTOP/SIGCONT"),
            HeldBy::AlreadyStopped => {
                f.write_str("nothing: it was already stopped and is left stopped")
            }
            HeldBy::AlreadyFrozen(dir) => {
                write!(
                    f,
                    "nothing: its cgroup {} was already frozen and is left frozen",
                    dir.display()
                )
            }
        }
    }
}

/// Why the target could not be held still (or let go).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FreezeError {
    /// Another ringplan command holds the target (or the lock could not be
    /// taken).
    #[error(transparent)]
    Held(HoldLockError),
    #[error("cannot freeze pid {pid} with its cgroup: {reason}")]
    CgroupUnusable { pid: u32, reason: String },
    #[error("pid {pid} did not stop within {waited_ms} ms ({pending}); it was let go")]
    DidNotStop {
        pid: u32,
        waited_ms: u128,
        pending: String,
    },
    /// The cause is in the message, so it is not also a `source`.
    #[error("freezing pid {pid}: {what}: {cause}")]
    Io {
        pid: u32,
        what: String,
        cause: std::io::Error,
    },
    /// The cause is in the message, so it is not also a `source`.
    #[error("letting pid {pid} go: {what}: {cause}")]
    Release {
        pid: u32,
        what: String,
        cause: std::io::Error,
    },
}

/// How long to wait for a target to reach the stopped or frozen state
/// before giving up (and letting it go). A thread in uninterruptible sleep
/// (slow I/O) stops only when its syscall returns.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// The byte ringplan writes to its watchdog when it has let the target go
/// itself; end-of-file without it means ringplan died.
const RELEASED: u8 = b'r';

/// A target held still. Dropping it lets the target go; [`Frozen::release`]
/// does the same and reports errors and the time it was held.
#[derive(Debug)]
pub struct Frozen {
    pid: u32,
    held_by: HeldBy,
    /// `None` when the target was already stopped or frozen.
    thaw: Option<ThawHandle>,
    watchdog: Option<Watchdog>,
    since: Instant,
    /// Dropped after the target is let go (`Drop` releases first).
    _lock: HoldLock,
}

#[derive(Debug)]
enum ThawHandle {
    /// A duplicate of the target's pidfd, for SIGCONT.
    Signal(OwnedFd),
    /// The cgroup's control file opened for writing, and what thaws it.
    Cgroup {
        control: File,
        thawed: &'static [u8],
    },
}

impl ThawHandle {
    fn thaw(&self) -> std::io::Result<()> {
        match self {
            ThawHandle::Signal(pidfd) => {
                match rustix::process::pidfd_send_signal(pidfd, rustix::process::Signal::CONT) {
                    Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
                    Err(errno) => Err(errno.into()),
                }
            }
            // At offset 0: the watchdog shares this open file (and its offset).
            ThawHandle::Cgroup { control, thawed } => control.write_at(thawed, 0).map(drop),
        }
    }

    fn raw_fd(&self) -> i32 {
        match self {
            ThawHandle::Signal(pidfd) => pidfd.as_raw_fd(),
            ThawHandle::Cgroup { control, .. } => control.as_raw_fd(),
        }
    }
}

impl Frozen {
    /// Holds `target` still with `method`; returns once every thread of it
    /// is stopped (or its cgroup reports frozen).
    pub fn hold(target: &Target, method: FreezeMethod) -> Result<Frozen, FreezeError> {
        let pid = target.pid();
        let lock = HoldLock::acquire(pid, HOLD_WAIT).map_err(FreezeError::Held)?;
        let cgroup = match method {
            FreezeMethod::Signal => None,
            FreezeMethod::Auto => CgroupFreezer::find(pid).ok(),
            FreezeMethod::Cgroup => Some(CgroupFreezer::find(pid)?),
        };
        match cgroup {
            Some(cgroup) => Frozen::hold_cgroup(pid, cgroup, lock),
            None => Frozen::hold_signal(target, lock),
        }
    }

    fn hold_signal(target: &Target, lock: HoldLock) -> Result<Frozen, FreezeError> {
        let pid = target.pid();
        let io = |what: &str| {
            let what = what.to_owned();
            move |cause: std::io::Error| FreezeError::Io { pid, what, cause }
        };
        if process_state(pid).map_err(io("reading its state"))? == Some(b'T') {
            return Ok(Frozen::unchanged(pid, HeldBy::AlreadyStopped, lock));
        }
        let pidfd = target
            .pidfd()
            .try_clone_to_owned()
            .map_err(io("duplicating its pidfd"))?;
        let thaw = ThawHandle::Signal(pidfd);
        let watchdog = Watchdog::start(&thaw).map_err(io("starting the watchdog"))?;
        let frozen = Frozen {
            pid,
            held_by: HeldBy::Signal,
            thaw: Some(thaw),
            watchdog: Some(watchdog),
            since: Instant::now(),
            _lock: lock,
        };
        rustix::process::pidfd_send_signal(target.pidfd(), rustix::process::Signal::STOP)
            .map_err(|errno| io("sending SIGSTOP")(errno.into()))?;
        frozen.wait_until(|| threads_not_stopped(pid))?;
        Ok(frozen)
    }

    fn hold_cgroup(pid: u32, cgroup: CgroupFreezer, lock: HoldLock) -> Result<Frozen, FreezeError> {
        let io = |what: String| move |cause: std::io::Error| FreezeError::Io { pid, what, cause };
        let control_path = cgroup.control_path();
        if cgroup
            .is_frozen()
            .map_err(io(format!("reading {}", control_path.display())))?
        {
            return Ok(Frozen::unchanged(
                pid,
                HeldBy::AlreadyFrozen(cgroup.dir),
                lock,
            ));
        }
        let control = File::options()
            .write(true)
            .open(&control_path)
            .map_err(io(format!("opening {}", control_path.display())))?;
        let thaw = ThawHandle::Cgroup {
            control,
            thawed: cgroup.thawed_value(),
        };
        let watchdog = Watchdog::start(&thaw).map_err(io("starting the watchdog".into()))?;
        let held_by = cgroup.held_by();
        let frozen = Frozen {
            pid,
            held_by,
            thaw: Some(thaw),
            watchdog: Some(watchdog),
            since: Instant::now(),
            _lock: lock,
        };
        std::fs::write(&control_path, cgroup.frozen_value())
            .map_err(io(format!("writing {}", control_path.display())))?;
        frozen.wait_until(|| match cgroup.is_frozen() {
            Ok(true) => Ok(None),
            Ok(false) => Ok(Some(format!(
                "{} does not report frozen",
                cgroup.dir.display()
            ))),
            Err(error) => Err(error),
        })?;
        Ok(frozen)
    }

    fn unchanged(pid: u32, held_by: HeldBy, lock: HoldLock) -> Frozen {
        Frozen {
            pid,
            held_by,
            thaw: None,
            watchdog: None,
            since: Instant::now(),
            _lock: lock,
        }
    }

    /// Polls `pending` (what is not yet stopped, or `None`) until the
    /// target is held or the timeout passes; on timeout `self` is dropped,
    /// which lets the target go.
    fn wait_until(
        &self,
        mut pending: impl FnMut() -> std::io::Result<Option<String>>,
    ) -> Result<(), FreezeError> {
        let pid = self.pid;
        let start = Instant::now();
        let mut pause = Duration::from_micros(50);
        loop {
            let still = pending().map_err(|cause| FreezeError::Io {
                pid,
                what: "waiting for it to stop".into(),
                cause,
            })?;
            let Some(what) = still else { return Ok(()) };
            if start.elapsed() >= STOP_TIMEOUT {
                return Err(FreezeError::DidNotStop {
                    pid,
                    waited_ms: start.elapsed().as_millis(),
                    pending: what,
                });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(10));
        }
    }

    /// How the target is held.
    pub fn held_by(&self) -> &HeldBy {
        &self.held_by
    }

    /// The hold lock this holder keeps (to hand down to a command it runs:
    /// [`HoldLock::delegate`]).
    pub fn lock(&self) -> &HoldLock {
        &self._lock
    }

    /// Lets the target go and returns how long it was held.
    pub fn release(mut self) -> Result<Duration, FreezeError> {
        self.release_now()
    }

    /// Ends the hold without letting the target go: a target stopped with
    /// SIGSTOP stays stopped (`plan dump --detach`, after its rings were
    /// taken out), and the watchdog is told not to resume it. Returns how
    /// long it has been held. A cgroup freeze cannot be left in place this
    /// way (the freezer, not a stop, holds it): it is thawed, and the
    /// error says so.
    pub fn leave_stopped(mut self) -> Result<Duration, FreezeError> {
        let held_for = self.since.elapsed();
        match self.thaw.take() {
            Some(ThawHandle::Signal(_)) | None => {
                // A SIGSTOP queued while ptrace held every thread is taken
                // when the first one runs again: wait until the whole
                // process is stopped, so "left stopped" is true on return.
                let pid = self.pid;
                self.wait_until(|| threads_not_stopped(pid))?;
                if let Some(watchdog) = self.watchdog.take() {
                    watchdog.finish(true);
                }
                Ok(held_for)
            }
            Some(cgroup) => {
                self.thaw = Some(cgroup);
                self.release_now()?;
                Err(FreezeError::Release {
                    pid: self.pid,
                    what: "leaving it stopped".into(),
                    cause: std::io::Error::other(
                        "it was held with the cgroup freezer, which was thawed; hold it with SIGSTOP",
                    ),
                })
            }
        }
    }

    fn release_now(&mut self) -> Result<Duration, FreezeError> {
        let held_for = self.since.elapsed();
        let thawed = match self.thaw.take() {
            Some(thaw) => thaw.thaw(),
            None => Ok(()),
        };
        if let Some(watchdog) = self.watchdog.take() {
            // Thawing failed: leave it to the watchdog, which tries again.
            watchdog.finish(thawed.is_ok());
        }
        thawed.map_err(|cause| FreezeError::Release {
            pid: self.pid,
            what: "thawing".into(),
            cause,
        })?;
        Ok(held_for)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = self.release_now();
    }
}

/// The target's state letter from `/proc/PID/stat`, `None` when it is gone.
fn process_state(pid: u32) -> std::io::Result<Option<u8>> {
    match stat::read(Process::Pid(pid)) {
        Ok(stat) => Ok(Some(stat.state)),
        Err(error) if error.is_not_found() => Ok(None),
        // A line without a state says nothing of the process.
        Err(ProcfsError::Malformed { .. }) => Ok(None),
        Err(error) => Err(error.into_io_error()),
    }
}

/// The first thread of `pid` not yet stopped (`procfs::task`).
fn threads_not_stopped(pid: u32) -> std::io::Result<Option<String>> {
    task::first_not_stopped(pid).map_err(ringplan_kernel::procfs::ProcfsError::into_io_error)
}

/// The cgroup freezer a target can be held with.
struct CgroupFreezer {
    dir: PathBuf,
    version: CgroupVersion,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum CgroupVersion {
    V2,
    V1,
}

impl CgroupFreezer {
    /// The cgroup v2 freezer of `pid`'s cgroup, else its v1 freezer
    /// cgroup, provided `pid` is alone there; else why neither will do.
    fn find(pid: u32) -> Result<CgroupFreezer, FreezeError> {
        let unusable = |reason: String| FreezeError::CgroupUnusable { pid, reason };
        let membership = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .map_err(|error| unusable(format!("reading /proc/{pid}/cgroup: {error}")))?;
        let mountinfo = mountinfo::read(Process::Current).map_err(|error| {
            let error = error.into_io_error();
            unusable(format!("reading /proc/self/mountinfo: {error}"))
        })?;
        let mut reasons = Vec::new();
        for version in [CgroupVersion::V2, CgroupVersion::V1] {
            match CgroupFreezer::candidate(pid, version, &membership, &mountinfo) {
                Ok(freezer) => return Ok(freezer),
                Err(reason) => reasons.push(reason),
            }
        }
        Err(unusable(reasons.join("; ")))
    }

    fn candidate(
        pid: u32,
        version: CgroupVersion,
        membership: &str,
        mountinfo: &str,
    ) -> Result<CgroupFreezer, String> {
        let name = match version {
            CgroupVersion::V2 => "cgroup v2",
            CgroupVersion::V1 => "cgroup v1 freezer",
        };
        let path = membership
            .lines()
            .find_map(|line| {
                let mut fields = line.splitn(3, ':');
                let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
                let matches = match version {
                    CgroupVersion::V2 => controllers.is_empty(),
                    CgroupVersion::V1 => controllers
                        .split(',')
                        .any(|controller| controller == "freezer"),
                };
                matches.then_some(path)
            })
            .ok_or_else(|| format!("{name}: pid {pid} is in none"))?;
        if path == "/" {
            return Err(format!(
                "{name}: pid {pid} is in the root cgroup, which cannot be frozen"
            ));
        }
        let mount =
            cgroup_mount(mountinfo, version).ok_or_else(|| format!("{name}: not mounted"))?;
        let dir = mount.join(path.trim_start_matches('/'));
        let freezer = CgroupFreezer { dir, version };
        let procs = std::fs::read_to_string(freezer.dir.join("cgroup.procs")).map_err(|error| {
            format!(
                "{name}: reading {}/cgroup.procs: {error}",
                freezer.dir.display()
            )
        })?;
        let others = procs
            .lines()
            .filter(|line| line.trim() != pid.to_string())
            .count();
        if others > 0 {
            return Err(format!(
                "{name}: {} holds {others} other processes",
                freezer.dir.display()
            ));
        }
        let children = std::fs::read_dir(&freezer.dir)
            .map_err(|error| format!("{name}: listing {}: {error}", freezer.dir.display()))?
            .filter_map(Result::ok)
            .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
            .count();
        if children > 0 {
            return Err(format!(
                "{name}: {} has child cgroups, which would be frozen too",
                freezer.dir.display()
            ));
        }
        if !freezer.control_path().exists() {
            return Err(format!(
                "{name}: {} does not exist",
                freezer.control_path().display()
            ));
        }
        Ok(freezer)
    }

    fn control_path(&self) -> PathBuf {
        match self.version {
            CgroupVersion::V2 => self.dir.join("cgroup.freeze"),
            CgroupVersion::V1 => self.dir.join("freezer.state"),
        }
    }

    fn frozen_value(&self) -> &'static [u8] {
        match self.version {
            CgroupVersion::V2 => b"1",
            CgroupVersion::V1 => b"FROZEN",
        }
    }

    fn thawed_value(&self) -> &'static [u8] {
        match self.version {
            CgroupVersion::V2 => b"0",
            CgroupVersion::V1 => b"THAWED",
        }
    }

    fn held_by(&self) -> HeldBy {
        match self.version {
            CgroupVersion::V2 => HeldBy::CgroupV2(self.dir.clone()),
            CgroupVersion::V1 => HeldBy::CgroupV1(self.dir.clone()),
        }
    }

    /// Whether the cgroup has finished freezing: v2 `cgroup.events` says
    /// `frozen 1`; v1 `freezer.state` says `FROZEN` (not `FREEZING`).
    fn is_frozen(&self) -> std::io::Result<bool> {
        match self.version {
            CgroupVersion::V2 => {
                let events = std::fs::read_to_string(self.dir.join("cgroup.events"))?;
                Ok(events.lines().any(|line| line.trim() == "frozen 1"))
            }
            CgroupVersion::V1 => {
                Ok(std::fs::read_to_string(self.control_path())?.trim() == "FROZEN")
            }
        }
    }
}

/// Where the cgroup hierarchy of `version` is mounted, from mountinfo.
fn cgroup_mount(mountinfo: &str, version: CgroupVersion) -> Option<PathBuf> {
    mountinfo
        .lines()
        .filter_map(MountinfoEntry::parse)
        .find(|mount| match version {
            CgroupVersion::V2 => mount.fs_type == "cgroup2",
            CgroupVersion::V1 => mount.fs_type == "cgroup" && mount.has_super_option("freezer"),
        })
        .map(|mount| mount.mount_point)
}

/// The process that lets the target go if ringplan dies while holding it.
#[derive(Debug)]
struct Watchdog {
    pid: rustix::process::Pid,
    /// The write end of the pipe the watchdog reads; close-on-exec.
    tell: File,
}

impl Watchdog {
    fn start(thaw: &ThawHandle) -> std::io::Result<Watchdog> {
        let (listen, tell) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        let thaw_fd = thaw.raw_fd();
        let (thaw_value, signal_thaw): (&[u8], bool) = match thaw {
            ThawHandle::Signal(_) => (b"", true),
            ThawHandle::Cgroup { thawed, .. } => (thawed, false),
        };
        // SAFETY: the child runs only `watchdog_main`, which makes raw
        // system calls and never allocates, locks or unwinds, so it is
        // sound even when other threads of this process held locks at fork.
        match unsafe { libc::fork() } {
            -1 => Err(std::io::Error::last_os_error()),
            0 => watchdog_main(listen.as_raw_fd(), thaw_fd, signal_thaw, thaw_value),
            child => {
                drop(listen);
                let pid = rustix::process::Pid::from_raw(child)
                    .ok_or_else(|| std::io::Error::other("fork returned pid 0"))?;
                Ok(Watchdog {
                    pid,
                    tell: File::from(tell),
                })
            }
        }
    }

    /// Tells the watchdog whether ringplan let the target go itself (it
    /// thaws again if not) and reaps it.
    fn finish(mut self, released: bool) {
        if released {
            let _ = self.tell.write_all(&[RELEASED]);
        }
        drop(self.tell);
        let _ = rustix::process::waitpid(Some(self.pid), rustix::process::WaitOptions::empty());
    }
}

/// The watchdog: waits for ringplan's word or its death, then (on death)
/// thaws the target. Raw system calls only (see [`Watchdog::start`]).
fn watchdog_main(listen: i32, thaw: i32, signal_thaw: bool, thaw_value: &[u8]) -> ! {
    // SAFETY: plain system calls on fds this process owns after fork.
    unsafe {
        libc::setsid();
        for signal in [
            libc::SIGINT,
            libc::SIGTERM,
            libc::SIGHUP,
            libc::SIGQUIT,
            libc::SIGTSTP,
            libc::SIGPIPE,
        ] {
            libc::signal(signal, libc::SIG_IGN);
        }
        // Keep only what is needed, at known numbers: 0 listens, 3 thaws;
        // 1 and 2 go to /dev/null so the watchdog never keeps a caller's
        // output pipe open.
        let listen_high = libc::fcntl(listen, libc::F_DUPFD, 10);
        let thaw_high = libc::fcntl(thaw, libc::F_DUPFD, 10);
        libc::dup2(listen_high, 0);
        libc::dup2(thaw_high, 3);
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            libc::dup2(null, 1);
            libc::dup2(null, 2);
        }
        libc::syscall(libc::SYS_close_range, 4u32, u32::MAX, 0u32);
        let mut byte = 0u8;
        let word = loop {
            let read = libc::read(0, (&raw mut byte).cast(), 1);
            if read < 0 && *libc::__errno_location() == libc::EINTR {
                continue;
            }
            break if read == 1 { Some(byte) } else { None };
        };
        if word != Some(RELEASED) {
            if signal_thaw {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    3,
                    libc::SIGCONT,
                    std::ptr::null::<libc::siginfo_t>(),
                    0u32,
                );
            } else {
                libc::pwrite(3, thaw_value.as_ptr().cast(), thaw_value.len(), 0);
            }
        }
        libc::_exit(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_found_by_type_and_unescaped() {
        let mountinfo = "\
30 25 0:26 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
31 25 0:27 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
35 25 0:30 / /sys/fs/cgroup/my\\040unified rw,relatime - cgroup2 cgroup2 rw";
        assert_eq!(
            cgroup_mount(mountinfo, CgroupVersion::V1),
            Some(PathBuf::from("/sys/fs/cgroup/freezer"))
        );
        assert_eq!(
            cgroup_mount(mountinfo, CgroupVersion::V2),
            Some(PathBuf::from("/sys/fs/cgroup/my unified"))
        );
        assert_eq!(cgroup_mount("", CgroupVersion::V2), None);
    }
}
