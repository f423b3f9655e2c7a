//! The fdinfo backend: a process's io_uring state from `/proc/PID/fd` and
//! `/proc/PID/fdinfo/FD`, for kernels where the BPF backend cannot load.
//!
//! For every fd, [`read`] takes the link target of `/proc/PID/fd/FD` (a path,
//! `anon_inode:[io_uring]`, `anon_inode:[eventfd]`, `pipe:[...]`...) and the
//! fdinfo text; for plain files also the inode mode (`stat` through the
//! link). On Linux 6.18 a ring's fdinfo looks like this (the seed's attached
//! ring; `SQEs:`/`CQEs:` rows, `PollList:` and `CqOverflowList:` rows,
//! `Personalities:` and `NAPI` lines appear as the ring's state has them):
//!
//! ```text
//! pos:    0
//! flags:  02000002
//! mnt_id: 17
//! ino:    17070
//! SqMask: 0x1
//! SqHead: 0
//! SqTail: 0
//! CachedSqHead:   0
//! CqMask: 0x3
//! CqHead: 0
//! CqTail: 0
//! CachedCqTail:   0
//! SQEs:   0
//! CQEs:   0
//! SqThread:       11206
//! SqThreadCpu:    0
//! SqTotalTime:    0
//! SqWorkTime:     0
//! UserFiles:      5
//!     0: /dev/null
//!     2: /tmp/hold-seed.out
//!     4: /tmp/jobs/stderr\040(deleted)
//! UserBufs:       2
//!     0: <none>
//!     1: 0x562b97df8480/120
//! PollList:
//! CqOverflowList:
//! NAPI:   disabled
//! ```
//!
//! and an eventfd's like this (`eventfd-count` is hex):
//!
//! ```text
//! pos:    0
//! flags:  02
//! mnt_id: 17
//! ino:    26
//! eventfd-count:               2a
//! eventfd-id: 1
//! eventfd-semaphore: 0
//! ```
//!
//! What the text gives, and how it becomes a [`RawState`]:
//! - `flags` is the file's `f_flags` with `O_CLOEXEC` added when the fd is
//!   close-on-exec: the bit becomes [`RawFdEntry::cloexec`] and is taken out of
//!   [`RawFile::flags`].
//! - Ring identity is the ring's anonymous inode number (`ino:`): each ring
//!   has its own, so dup'd fds of one ring are one ring and one file.
//!   Eventfds share one anonymous inode; their identity is `eventfd-id`.
//!   Every other fd is its own file: fdinfo cannot tell a dup from a second
//!   open of the same path.
//! - `SqMask`/`CqMask` are entries - 1. `SqThread` is the SQ thread's
//!   thread id, the same for every ring sharing the thread, and -1 without
//!   one (no SQPOLL, or an SQPOLL ring whose thread is gone, e.g. after
//!   `execve`). Until a new SQ thread first runs it shows its creator's id
//!   instead; such a read is repeated (see [`sq_thread_has_run`]).
//!   `SqThreadCpu` is passed on as read.
//! - `UserFiles:` is the table size; the kernel prints a row (the path,
//!   escaped like `/proc/PID/mountinfo`) only for occupied slots. Each
//!   occupied slot becomes a file of its own with only a path: which open
//!   file it is, its flags, position and mode are not shown.
//! - `UserBufs:` is the table size with one row per slot, `<none>` when empty.
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

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ringplan_image::Buffer;
use rustix::buffer::spare_capacity;
use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use crate::raw::{
    EventfdKey, FileKey, Known, RawEventfd, RawFdEntry, RawFile, RawFileRole, RawRing, RawState,
    RingKey,
};

// fdinfo's `flags:` carries `O_CLOEXEC` for a close-on-exec fd;
// `O_NONBLOCK` equals `EFD_NONBLOCK`.
use ringplan_kernel::abi::linux::{EFD_SEMAPHORE, O_CLOEXEC, O_NONBLOCK};

/// Reads of a ring's fdinfo before giving up on a ring whose lock stays
/// taken, and the pause between them.
const RING_READ_ATTEMPTS: u32 = 50;
const RING_READ_PAUSE: Duration = Duration::from_millis(2);

/// Eventfd keys made up for eventfds whose fdinfo has no `eventfd-id` (old
/// kernels) start here, far above any id the kernel hands out.
const FIRST_ANONYMOUS_EVENTFD_KEY: EventfdKey = 1 << 63;

/// Why the fdinfo backend could not read a process.
#[derive(Debug, thiserror::Error)]
pub enum FdinfoError {
    #[error("process {pid} does not exist")]
    NoSuchProcess { pid: u32 },
    #[error("process {pid} exited while it was read")]
    ExitedWhileRead { pid: u32 },
    #[error("permission denied reading {}: reading another process's fds needs the rights ptrace needs", path.display())]
    AccessDenied { path: PathBuf },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}: {problem}", path.display())]
    Malformed {
        path: PathBuf,
        line: usize,
        problem: String,
    },
    #[error("{}: no {key:?} line", path.display())]
    MissingKey { path: PathBuf, key: &'static str },
    #[error(
        "{}: no ring state in {attempts} reads: the kernel prints it only when it can take the ring's lock at once, \
         and the ring stayed busy",
        path.display()
    )]
    RingBusy { path: PathBuf, attempts: u32 },
    #[error(transparent)]
    KernelFormat(#[from] crate::fdinfo_format::FdinfoFormatError),
}

/// Reads every fd of process `pid` and the io_uring state behind them.
pub fn read(pid: u32) -> Result<RawState, FdinfoError> {
    let mut process = ProcessFds::open(pid)?;
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
    Ok(builder.state)
}

/// Whether `pid` is a live process: `/proc/PID/stat` exists and its state
/// (the field after the command name in parentheses) is not zombie or dead.
fn process_is_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = crate::target::StatLine::parse(&stat).map(|line| line.state);
    !matches!(state, None | Some(b'Z' | b'X' | b'x'))
}

/// Handles on a process's `/proc/PID/fd` and `/proc/PID/fdinfo`. Every
/// per-fd read is relative to them, so the path to the process is walked
/// once, not three times per fd (which matters with ~20000 fds).
struct ProcessFds {
    pid: u32,
    fd_dir: OwnedFd,
    fdinfo_dir: OwnedFd,
    /// Reused between fds: the link target and the fdinfo text.
    link: Vec<u8>,
    text: Vec<u8>,
}

impl ProcessFds {
    fn open(pid: u32) -> Result<ProcessFds, FdinfoError> {
        let open_dir = |name: &str| {
            let path = PathBuf::from(format!("/proc/{pid}/{name}"));
            rustix::fs::open(
                &path,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|errno| match errno {
                Errno::NOENT | Errno::SRCH => FdinfoError::NoSuchProcess { pid },
                _ => errno_error(&path, errno),
            })
        };
        Ok(ProcessFds {
            pid,
            fd_dir: open_dir("fd")?,
            fdinfo_dir: open_dir("fdinfo")?,
            link: Vec::with_capacity(256),
            text: Vec::with_capacity(4096),
        })
    }

    fn fd_path(&self, fd: i32) -> PathBuf {
        PathBuf::from(format!("/proc/{}/fd/{fd}", self.pid))
    }

    fn fdinfo_path(&self, fd: i32) -> PathBuf {
        PathBuf::from(format!("/proc/{}/fdinfo/{fd}", self.pid))
    }

    /// The process's fd numbers, ascending.
    fn fd_numbers(&self) -> Result<Vec<i32>, FdinfoError> {
        let path = PathBuf::from(format!("/proc/{}/fd", self.pid));
        let mut fds = Vec::new();
        let mut dir =
            rustix::fs::Dir::read_from(&self.fd_dir).map_err(|errno| errno_error(&path, errno))?;
        while let Some(entry) = dir.read() {
            let entry = entry.map_err(|errno| errno_error(&path, errno))?;
            // Every name but `.` and `..` is an fd number.
            if let Some(fd) = entry
                .file_name()
                .to_str()
                .ok()
                .and_then(|name| name.parse::<i32>().ok())
            {
                fds.push(fd);
            }
        }
        fds.sort_unstable();
        Ok(fds)
    }

    /// The target of `/proc/PID/fd/FD` into `self.link`; `false` when the fd
    /// is gone.
    fn read_link(&mut self, fd: i32) -> Result<bool, FdinfoError> {
        match rustix::fs::readlinkat(&self.fd_dir, fd.to_string(), std::mem::take(&mut self.link)) {
            Ok(target) => {
                self.link = target.into_bytes();
                Ok(true)
            }
            Err(Errno::NOENT) => Ok(false),
            Err(errno) => Err(errno_error(&self.fd_path(fd), errno)),
        }
    }

    /// `/proc/PID/fdinfo/FD` into `self.text`; `false` when the fd is gone.
    fn read_fdinfo_text(&mut self, fd: i32) -> Result<bool, FdinfoError> {
        let flags = OFlags::RDONLY | OFlags::CLOEXEC;
        let file = match rustix::fs::openat(&self.fdinfo_dir, fd.to_string(), flags, Mode::empty())
        {
            Ok(file) => file,
            Err(Errno::NOENT) => return Ok(false),
            Err(errno) => return Err(errno_error(&self.fdinfo_path(fd), errno)),
        };
        self.text.clear();
        loop {
            if self.text.capacity() - self.text.len() < 4096 {
                self.text.reserve(self.text.capacity().max(4096));
            }
            match rustix::io::read(&file, spare_capacity(&mut self.text)) {
                Ok(0) => return Ok(true),
                Ok(_) | Err(Errno::INTR) => {}
                Err(errno) => return Err(errno_error(&self.fdinfo_path(fd), errno)),
            }
        }
    }

    /// The inode mode behind fd `fd` (`stat` follows the link); `None` when
    /// the fd is gone.
    fn mode(&self, fd: i32) -> Result<Option<u32>, FdinfoError> {
        match rustix::fs::statat(&self.fd_dir, fd.to_string(), AtFlags::empty()) {
            Ok(stat) => Ok(Some(stat.st_mode)),
            Err(Errno::NOENT) => Ok(None),
            Err(errno) => Err(errno_error(&self.fd_path(fd), errno)),
        }
    }
}

fn errno_error(path: &Path, errno: Errno) -> FdinfoError {
    match errno {
        Errno::ACCESS | Errno::PERM => FdinfoError::AccessDenied {
            path: path.to_owned(),
        },
        _ => FdinfoError::Read {
            path: path.to_owned(),
            source: errno.into(),
        },
    }
}

/// What an fd is, from its link target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FdKind {
    Ring,
    Eventfd,
    Plain,
}

impl FdKind {
    fn of_link(link: &[u8]) -> FdKind {
        match link {
            b"anon_inode:[io_uring]" => FdKind::Ring,
            b"anon_inode:[eventfd]" => FdKind::Eventfd,
            _ => FdKind::Plain,
        }
    }
}

/// Builds a [`RawState`] one fd at a time, keeping the stand-in identities
/// consistent across fds.
#[derive(Debug)]
struct StateBuilder {
    state: RawState,
    next_file_key: FileKey,
    next_anonymous_eventfd_key: EventfdKey,
    /// The file of each ring and each eventfd already seen at another fd.
    ring_files: HashMap<RingKey, FileKey>,
    eventfd_files: HashMap<EventfdKey, FileKey>,
}

impl Default for StateBuilder {
    fn default() -> Self {
        StateBuilder {
            state: RawState::default(),
            next_file_key: 1,
            next_anonymous_eventfd_key: FIRST_ANONYMOUS_EVENTFD_KEY,
            ring_files: HashMap::new(),
            eventfd_files: HashMap::new(),
        }
    }
}

impl StateBuilder {
    fn new_file(&mut self, file: RawFile) -> FileKey {
        let key = self.next_file_key;
        self.next_file_key += 1;
        self.state.files.insert(key, file);
        key
    }

    /// Reads one fd. An fd closed in the meantime is skipped.
    fn add_fd(&mut self, process: &mut ProcessFds, fd: i32) -> Result<(), FdinfoError> {
        if !process.read_link(fd)? {
            return Ok(());
        }
        let kind = FdKind::of_link(&process.link);
        // A path that is not UTF-8 cannot be carried; `None` says unknown.
        let path = std::str::from_utf8(&process.link).ok().map(str::to_owned);
        let Some(fdinfo) = read_fdinfo(process, fd, kind)? else {
            return Ok(());
        };
        let fdinfo_path = process.fdinfo_path(fd);
        let cloexec = fdinfo.flags & O_CLOEXEC != 0;
        let file_flags = fdinfo.flags & !O_CLOEXEC;

        let file = match (kind, fdinfo.ring, fdinfo.eventfd) {
            (FdKind::Ring, Some(rows), _) => {
                let ring_key: RingKey = fdinfo.ino.ok_or_else(|| missing(&fdinfo_path, "ino"))?;
                match self.ring_files.get(&ring_key) {
                    Some(file) => *file,
                    None => {
                        let raw_file = RawFile {
                            role: RawFileRole::Ring(ring_key),
                            path,
                            flags: Some(file_flags),
                            pos: Some(fdinfo.pos),
                            mode: None,
                        };
                        let file = self.new_file(raw_file);
                        self.ring_files.insert(ring_key, file);
                        let ring = self.ring_from_rows(ring_key, rows, &fdinfo_path)?;
                        self.state.rings.insert(ring_key, ring);
                        file
                    }
                }
            }
            (FdKind::Eventfd, _, Some(rows)) => {
                let eventfd_key = rows.id.unwrap_or_else(|| {
                    let key = self.next_anonymous_eventfd_key;
                    self.next_anonymous_eventfd_key += 1;
                    key
                });
                match self.eventfd_files.get(&eventfd_key) {
                    Some(file) => *file,
                    None => {
                        let raw_file = RawFile {
                            role: RawFileRole::Eventfd(eventfd_key),
                            path,
                            flags: Some(file_flags),
                            pos: Some(fdinfo.pos),
                            mode: None,
                        };
                        let file = self.new_file(raw_file);
                        self.eventfd_files.insert(eventfd_key, file);
                        // fdinfo shows the semaphore flag; whether it was
                        // created non-blocking is read off the file's flags,
                        // which is what fcntl left there.
                        let semaphore = if rows.semaphore { EFD_SEMAPHORE } else { 0 };
                        let eventfd = RawEventfd {
                            count: rows.count,
                            flags: semaphore | (file_flags & O_NONBLOCK),
                        };
                        self.state.eventfds.insert(eventfd_key, eventfd);
                        file
                    }
                }
            }
            // Plain files (`parse_fdinfo` gives rows for every ring and
            // eventfd).
            _ => {
                let Some(mode) = process.mode(fd)? else {
                    return Ok(());
                };
                let mode = Some(mode);
                let raw_file = RawFile {
                    role: RawFileRole::Plain,
                    path,
                    flags: Some(file_flags),
                    pos: Some(fdinfo.pos),
                    mode,
                };
                self.new_file(raw_file)
            }
        };
        self.state.fds.push(RawFdEntry { fd, cloexec, file });
        Ok(())
    }

    fn ring_from_rows(
        &mut self,
        ring_key: RingKey,
        rows: RingRows,
        path: &Path,
    ) -> Result<RawRing, FdinfoError> {
        let entries = |mask: u32, line: usize, key: &str| {
            mask.checked_add(1)
                .ok_or_else(|| malformed(path, line, format!("{key} {mask:#x} is not a size - 1")))
        };
        let mut files = vec![None; rows.user_files as usize];
        for (slot, file_path) in rows.files {
            let file = RawFile {
                role: RawFileRole::Plain,
                path: file_path,
                flags: None,
                pos: None,
                mode: None,
            };
            files[slot as usize] = Some(self.new_file(file));
        }
        Ok(RawRing {
            inode: Some(ring_key),
            flags: None,
            sq_entries: entries(rows.sq_mask, rows.sq_mask_line, "SqMask")?,
            cq_entries: entries(rows.cq_mask, rows.cq_mask_line, "CqMask")?,
            sq_thread: u64::try_from(rows.sq_thread).ok(),
            sq_thread_cpu: u32::try_from(rows.sq_thread_cpu).ok(),
            sq_thread_idle_ms: None,
            idle_known: false,
            eventfd: Known::Unknown,
            files,
            buffers: rows.buffers,
        })
    }
}

/// Reads and parses the fdinfo of `fd`; `None` when the fd closed
/// meanwhile. A ring is read again while its state is missing (its lock was
/// taken) or while its SQ thread has not run yet (see [`sq_thread_has_run`]).
fn read_fdinfo(
    process: &mut ProcessFds,
    fd: i32,
    kind: FdKind,
) -> Result<Option<Fdinfo>, FdinfoError> {
    let path = process.fdinfo_path(fd);
    let mut attempt = 1;
    loop {
        if !process.read_fdinfo_text(fd)? {
            return Ok(None);
        }
        let outcome = parse_fdinfo(&path, &process.text, kind);
        let settled = match &outcome {
            Err(FdinfoError::RingBusy { .. }) => false,
            Ok(Fdinfo {
                ring: Some(ring), ..
            }) => ring.sq_thread < 0 || sq_thread_has_run(process.pid, ring.sq_thread),
            _ => true,
        };
        if settled {
            return outcome.map(Some);
        }
        if attempt == RING_READ_ATTEMPTS {
            return match outcome {
                Err(FdinfoError::RingBusy { path, .. }) => Err(FdinfoError::RingBusy {
                    path,
                    attempts: attempt,
                }),
                // An SQ thread id that never settled is believed (see below).
                other => other.map(Some),
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
fn sq_thread_has_run(pid: u32, sq_thread: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/task/{sq_thread}/comm"))
        .is_ok_and(|comm| comm.starts_with(b"iou-sqp"))
}

/// One fdinfo file, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fdinfo {
    pos: i64,
    /// `f_flags`, plus `O_CLOEXEC` for a close-on-exec fd.
    flags: u32,
    ino: Option<u64>,
    /// Only for a ring fd.
    ring: Option<RingRows>,
    /// Only for an eventfd.
    eventfd: Option<EventfdRows>,
}

/// The ring part of a ring's fdinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RingRows {
    sq_mask: u32,
    sq_mask_line: usize,
    cq_mask: u32,
    cq_mask_line: usize,
    sq_thread: i32,
    sq_thread_cpu: i32,
    user_files: u32,
    /// Occupied slots in ascending order, with the path when it is UTF-8.
    files: Vec<(u32, Option<String>)>,
    /// Every slot.
    buffers: Vec<Option<Buffer>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct EventfdRows {
    count: u64,
    id: Option<u64>,
    semaphore: bool,
}

/// Which table the rows under a header belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    UserFiles,
    UserBufs,
    /// Rows of anything else (`SQEs:`, `CQEs:`...) are not read.
    Other,
}

/// The values of the keys this backend reads, as found.
#[derive(Debug, Default)]
struct Fields {
    pos: Option<i64>,
    flags: Option<u32>,
    ino: Option<u64>,
    sq_mask: Option<(u32, usize)>,
    cq_mask: Option<(u32, usize)>,
    sq_thread: Option<i32>,
    sq_thread_cpu: Option<i32>,
    user_files: Option<(u32, usize)>,
    user_bufs: Option<(u32, usize)>,
    file_rows: Vec<(u32, Option<String>)>,
    buffer_rows: Vec<(u32, Option<Buffer>)>,
    eventfd_count: Option<u64>,
    eventfd_id: Option<u64>,
    eventfd_semaphore: Option<bool>,
}

/// Parses fdinfo `text` of an fd of `kind`. Unknown keys and rows of tables
/// this backend does not read are ignored; a known key with a bad value, a
/// repeated known key, or a table whose rows do not fit its size is an error
/// naming `path` and the line.
fn parse_fdinfo(path: &Path, text: &[u8], kind: FdKind) -> Result<Fdinfo, FdinfoError> {
    let mut fields = Fields::default();
    let mut section = Section::Other;
    for (index, line) in text.split(|byte| *byte == b'\n').enumerate() {
        let line_number = index + 1;
        let Some(colon) = line.iter().position(|byte| *byte == b':') else {
            // Lines without a key (`  op=...` under PollList, personality
            // ids) end any table.
            section = Section::Other;
            continue;
        };
        let (key, value) = (line[..colon].trim_ascii(), &line[colon + 1..]);
        if !key.is_empty() && key.iter().all(u8::is_ascii_digit) {
            let slot = parse_number::<u32>(path, line_number, "slot", key, 10)?;
            match section {
                Section::UserFiles => fields.file_rows.push((slot, unescape(value.trim_ascii()))),
                Section::UserBufs => fields
                    .buffer_rows
                    .push((slot, parse_buffer_row(path, line_number, value)?)),
                Section::Other => {}
            }
            continue;
        }
        section = Section::Other;
        let value_text = value.trim_ascii();
        let line_at = |field| (field, line_number);
        match (kind, key) {
            (_, b"pos") => set(
                &mut fields.pos,
                path,
                line_number,
                "pos",
                parse_number(path, line_number, "pos", value_text, 10)?,
            )?,
            (_, b"flags") => set(
                &mut fields.flags,
                path,
                line_number,
                "flags",
                parse_number(path, line_number, "flags", value_text, 8)?,
            )?,
            (_, b"ino") => set(
                &mut fields.ino,
                path,
                line_number,
                "ino",
                parse_number(path, line_number, "ino", value_text, 10)?,
            )?,
            (FdKind::Ring, b"SqMask") => {
                let mask = parse_hex_with_prefix(path, line_number, "SqMask", value_text)?;
                set(
                    &mut fields.sq_mask,
                    path,
                    line_number,
                    "SqMask",
                    line_at(mask),
                )?;
            }
            (FdKind::Ring, b"CqMask") => {
                let mask = parse_hex_with_prefix(path, line_number, "CqMask", value_text)?;
                set(
                    &mut fields.cq_mask,
                    path,
                    line_number,
                    "CqMask",
                    line_at(mask),
                )?;
            }
            (FdKind::Ring, b"SqThread") => {
                let thread = parse_number(path, line_number, "SqThread", value_text, 10)?;
                set(&mut fields.sq_thread, path, line_number, "SqThread", thread)?;
            }
            (FdKind::Ring, b"SqThreadCpu") => {
                let cpu = parse_number(path, line_number, "SqThreadCpu", value_text, 10)?;
                set(
                    &mut fields.sq_thread_cpu,
                    path,
                    line_number,
                    "SqThreadCpu",
                    cpu,
                )?;
            }
            (FdKind::Ring, b"UserFiles") => {
                let count = parse_number(path, line_number, "UserFiles", value_text, 10)?;
                set(
                    &mut fields.user_files,
                    path,
                    line_number,
                    "UserFiles",
                    line_at(count),
                )?;
                section = Section::UserFiles;
            }
            (FdKind::Ring, b"UserBufs") => {
                let count = parse_number(path, line_number, "UserBufs", value_text, 10)?;
                set(
                    &mut fields.user_bufs,
                    path,
                    line_number,
                    "UserBufs",
                    line_at(count),
                )?;
                section = Section::UserBufs;
            }
            (FdKind::Eventfd, b"eventfd-count") => {
                let count = parse_number(path, line_number, "eventfd-count", value_text, 16)?;
                set(
                    &mut fields.eventfd_count,
                    path,
                    line_number,
                    "eventfd-count",
                    count,
                )?;
            }
            (FdKind::Eventfd, b"eventfd-id") => {
                let id = parse_number(path, line_number, "eventfd-id", value_text, 10)?;
                set(&mut fields.eventfd_id, path, line_number, "eventfd-id", id)?;
            }
            (FdKind::Eventfd, b"eventfd-semaphore") => {
                let semaphore = match value_text {
                    b"0" => false,
                    b"1" => true,
                    _ => {
                        return Err(bad_value(
                            path,
                            line_number,
                            "eventfd-semaphore",
                            value_text,
                        ))
                    }
                };
                set(
                    &mut fields.eventfd_semaphore,
                    path,
                    line_number,
                    "eventfd-semaphore",
                    semaphore,
                )?;
            }
            _ => {}
        }
    }
    finish(path, kind, fields)
}

/// Checks that the fields an fd of `kind` must have are there and that the
/// tables fit their sizes.
fn finish(path: &Path, kind: FdKind, mut fields: Fields) -> Result<Fdinfo, FdinfoError> {
    let pos = fields.pos.ok_or_else(|| missing(path, "pos"))?;
    let flags = fields.flags.ok_or_else(|| missing(path, "flags"))?;
    let ring = match kind {
        FdKind::Ring => Some(finish_ring(path, &mut fields)?),
        _ => None,
    };
    let eventfd = match kind {
        FdKind::Eventfd => Some(EventfdRows {
            count: fields
                .eventfd_count
                .ok_or_else(|| missing(path, "eventfd-count"))?,
            id: fields.eventfd_id,
            semaphore: fields
                .eventfd_semaphore
                .ok_or_else(|| missing(path, "eventfd-semaphore"))?,
        }),
        _ => None,
    };
    Ok(Fdinfo {
        pos,
        flags,
        ino: fields.ino,
        ring,
        eventfd,
    })
}

fn finish_ring(path: &Path, fields: &mut Fields) -> Result<RingRows, FdinfoError> {
    // The kernel prints all of the ring's lines or none of them (none when
    // it could not take the ring's lock at once).
    let Some((sq_mask, sq_mask_line)) = fields.sq_mask else {
        return Err(FdinfoError::RingBusy {
            path: path.to_owned(),
            attempts: 1,
        });
    };
    let (cq_mask, cq_mask_line) = fields.cq_mask.ok_or_else(|| missing(path, "CqMask"))?;
    let (user_files, user_files_line) = fields
        .user_files
        .ok_or_else(|| missing(path, "UserFiles"))?;
    let (user_bufs, user_bufs_line) = fields.user_bufs.ok_or_else(|| missing(path, "UserBufs"))?;

    // File rows: occupied slots only, ascending, each below the table size.
    let mut previous_slot = None;
    for (slot, _) in &fields.file_rows {
        if *slot >= user_files || previous_slot.is_some_and(|previous| previous >= *slot) {
            let problem =
                format!("UserFiles rows are not ascending slots below {user_files} (slot {slot})");
            return Err(malformed(path, user_files_line, problem));
        }
        previous_slot = Some(*slot);
    }
    // Buffer rows: exactly one per slot, in order.
    let slots_in_order = fields
        .buffer_rows
        .iter()
        .enumerate()
        .all(|(index, (slot, _))| *slot as usize == index);
    if fields.buffer_rows.len() != user_bufs as usize || !slots_in_order {
        let problem = format!("UserBufs is {user_bufs} but the rows are not slots 0..{user_bufs}");
        return Err(malformed(path, user_bufs_line, problem));
    }
    Ok(RingRows {
        sq_mask,
        sq_mask_line,
        cq_mask,
        cq_mask_line,
        sq_thread: fields.sq_thread.ok_or_else(|| missing(path, "SqThread"))?,
        sq_thread_cpu: fields
            .sq_thread_cpu
            .ok_or_else(|| missing(path, "SqThreadCpu"))?,
        user_files,
        files: std::mem::take(&mut fields.file_rows),
        buffers: fields
            .buffer_rows
            .iter()
            .map(|(_, buffer)| *buffer)
            .collect(),
    })
}

/// Stores a key's value, refusing a second one.
fn set<T>(
    field: &mut Option<T>,
    path: &Path,
    line: usize,
    key: &str,
    value: T,
) -> Result<(), FdinfoError> {
    if field.is_some() {
        return Err(malformed(path, line, format!("{key} appears twice")));
    }
    *field = Some(value);
    Ok(())
}

/// A `0xADDR/LEN` or `<none>` buffer row value.
fn parse_buffer_row(path: &Path, line: usize, value: &[u8]) -> Result<Option<Buffer>, FdinfoError> {
    let value = value.trim_ascii();
    if value == b"<none>" {
        return Ok(None);
    }
    let Some(slash) = value.iter().position(|byte| *byte == b'/') else {
        return Err(bad_value(path, line, "UserBufs row", value));
    };
    let addr = parse_hex_with_prefix(path, line, "buffer address", &value[..slash])?;
    let len = parse_number(path, line, "buffer length", &value[slash + 1..], 10)?;
    Ok(Some(Buffer { addr, len }))
}

/// A hex number written with a `0x` prefix.
fn parse_hex_with_prefix<T: ParseRadix>(
    path: &Path,
    line: usize,
    what: &str,
    text: &[u8],
) -> Result<T, FdinfoError> {
    match text.strip_prefix(b"0x") {
        Some(digits) => parse_number(path, line, what, digits, 16),
        None => Err(bad_value(path, line, what, text)),
    }
}

/// The integer types fdinfo values are parsed into.
trait ParseRadix: Sized {
    fn parse_radix(text: &str, radix: u32) -> Option<Self>;
}

macro_rules! impl_parse_radix {
    ($($type:ty),*) => {$(
        impl ParseRadix for $type {
            fn parse_radix(text: &str, radix: u32) -> Option<Self> {
                <$type>::from_str_radix(text, radix).ok()
            }
        }
    )*};
}
impl_parse_radix!(u32, i32, u64, i64);

fn parse_number<T: ParseRadix>(
    path: &Path,
    line: usize,
    what: &str,
    text: &[u8],
    radix: u32,
) -> Result<T, FdinfoError> {
    std::str::from_utf8(text)
        .ok()
        .filter(|text| !text.starts_with('+'))
        .and_then(|text| T::parse_radix(text, radix))
        .ok_or_else(|| bad_value(path, line, what, text))
}

fn bad_value(path: &Path, line: usize, what: &str, text: &[u8]) -> FdinfoError {
    malformed(
        path,
        line,
        format!("bad {what} {:?}", String::from_utf8_lossy(text)),
    )
}

fn malformed(path: &Path, line: usize, problem: String) -> FdinfoError {
    FdinfoError::Malformed {
        path: path.to_owned(),
        line,
        problem,
    }
}

fn missing(path: &Path, key: &'static str) -> FdinfoError {
    FdinfoError::MissingKey {
        path: path.to_owned(),
        key,
    }
}

/// Undoes `seq_file_path`'s escapes (`\ooo` octal for space, tab, newline
/// and backslash); `None` when the path is not UTF-8.
fn unescape(text: &[u8]) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut index = 0;
    while index < text.len() {
        let octal = text
            .get(index + 1..index + 4)
            .filter(|digits| digits.iter().all(|digit| matches!(digit, b'0'..=b'7')));
        match (text[index], octal) {
            (b'\\', Some(digits)) => {
                let value = digits
                    .iter()
                    .fold(0u32, |value, digit| value * 8 + u32::from(digit - b'0'));
                // Three octal digits can exceed a byte (\777); the kernel
                // never writes such an escape, so keep the text as it is.
                match u8::try_from(value) {
                    Ok(byte) => {
                        bytes.push(byte);
                        index += 4;
                    }
                    Err(_) => {
                        bytes.push(b'\\');
                        index += 1;
                    }
                }
            }
            (byte, _) => {
                bytes.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED_ATTACHED_RING: &str = "pos:\t0
flags:\t02000002
mnt_id:\t17
ino:\t17070
SqMask:\t0x1
SqHead:\t0
SqTail:\t0
CachedSqHead:\t0
CqMask:\t0x3
CqHead:\t0
CqTail:\t0
CachedCqTail:\t0
SQEs:\t0
CQEs:\t0
SqThread:\t11206
SqThreadCpu:\t0
SqTotalTime:\t0
SqWorkTime:\t0
UserFiles:\t5
    0: /dev/null
    2: /tmp/hold-seed.out
    4: /tmp/jobs/stderr\\040(deleted)
UserBufs:\t2
    0: <none>
    1: 0x562b97df8480/120
PollList:
CqOverflowList:
NAPI:\tdisabled
";

    fn parse(text: &str, kind: FdKind) -> Result<Fdinfo, FdinfoError> {
        parse_fdinfo(Path::new("/proc/1/fdinfo/6"), text.as_bytes(), kind)
    }

    fn problem(text: &str, kind: FdKind) -> String {
        parse(text, kind)
            .expect_err("a malformed fdinfo")
            .to_string()
    }

    #[test]
    fn this_process_is_alive_and_a_missing_one_is_not() {
        assert!(process_is_alive(std::process::id()));
        assert!(!process_is_alive((1 << 22) + 1));
    }

    #[test]
    fn a_ring_with_files_and_buffers_parses_row_by_row() {
        let fdinfo = parse(SEED_ATTACHED_RING, FdKind::Ring).expect("parses");
        assert_eq!(
            (fdinfo.pos, fdinfo.flags, fdinfo.ino),
            (0, 0o2000002, Some(17070))
        );
        assert_eq!(fdinfo.eventfd, None);
        let ring = fdinfo.ring.expect("ring rows");
        assert_eq!(
            (
                ring.sq_mask,
                ring.cq_mask,
                ring.sq_thread,
                ring.sq_thread_cpu
            ),
            (1, 3, 11206, 0)
        );
        assert_eq!(ring.user_files, 5);
        let files: Vec<(u32, Option<&str>)> = ring
            .files
            .iter()
            .map(|(slot, path)| (*slot, path.as_deref()))
            .collect();
        assert_eq!(
            files,
            [
                (0, Some("/dev/null")),
                (2, Some("/tmp/hold-seed.out")),
                (4, Some("/tmp/jobs/stderr (deleted)"))
            ]
        );
        assert_eq!(
            ring.buffers,
            [
                None,
                Some(Buffer {
                    addr: 0x562b97df8480,
                    len: 120
                })
            ]
        );
    }

    #[test]
    fn rows_of_other_tables_and_unknown_lines_are_ignored() {
        let text = "pos:\t0\nflags:\t02\nino:\t9\nSqMask:\t0x7\nSQEs:\t1\n    3: opcode:READ, fd:3, flags:0, off:0, \
                    addr:0x0, rw_flags:0x0, buf_index:0 user_data:7\nCqMask:\t0xf\nCQEs:\t1\n    0: user_data:7, res:0, \
                    flag:0\nSqThread:\t-1\nSqThreadCpu:\t-1\nSomethingNew:\t0x12\nUserFiles:\t0\nUserBufs:\t0\n\
                    Personalities:\n    1\n\tUid:\t0\t0\t0\t0\n\tGroups:\t0\nPollList:\n  op=6 (POLL_ADD), task_works=0, \
                    events=EPOLLIN, path=/a:b\n  op=22, task_works=0\nCqOverflowList:\n  user_data=1, res=0, flags=0\n";
        let ring = parse(text, FdKind::Ring)
            .expect("parses")
            .ring
            .expect("ring rows");
        assert_eq!(
            (
                ring.sq_mask,
                ring.cq_mask,
                ring.sq_thread,
                ring.sq_thread_cpu
            ),
            (7, 15, -1, -1)
        );
        assert_eq!(
            (ring.user_files, ring.files.len(), ring.buffers.len()),
            (0, 0, 0)
        );
    }

    #[test]
    fn slots_of_six_or_more_digits_have_no_leading_space_and_still_count() {
        let text = "pos:\t0\nflags:\t02\nino:\t9\nSqMask:\t0x0\nCqMask:\t0x1\nSqThread:\t-1\nSqThreadCpu:\t-1\n\
                    UserFiles:\t100002\n    7: /a\n100001: /b\nUserBufs:\t0\n";
        let ring = parse(text, FdKind::Ring)
            .expect("parses")
            .ring
            .expect("ring rows");
        assert_eq!(
            ring.files,
            [(7, Some("/a".to_owned())), (100001, Some("/b".to_owned()))]
        );
    }

    #[test]
    fn escaped_and_non_utf8_paths() {
        assert_eq!(
            unescape(b"/a\\040b\\011c\\012d\\134e").as_deref(),
            Some("/a b\tc\nd\\e")
        );
        assert_eq!(
            unescape(b"/not\\8escape\\0").as_deref(),
            Some("/not\\8escape\\0")
        );
        assert_eq!(unescape(b"/x\\777").as_deref(), Some("/x\\777"));
        assert_eq!(unescape(b"/latin1-\xe9"), None);
        let text = b"pos:\t0\nflags:\t02\nino:\t9\nSqMask:\t0x0\nCqMask:\t0x1\nSqThread:\t-1\nSqThreadCpu:\t-1\n\
                     UserFiles:\t1\n    0: /\xff\nUserBufs:\t0\n";
        let fdinfo = parse_fdinfo(Path::new("f"), text, FdKind::Ring).expect("parses");
        assert_eq!(fdinfo.ring.expect("ring rows").files, [(0, None)]);
    }

    #[test]
    fn an_eventfd_reads_count_id_and_semaphore() {
        let text =
            "pos:\t0\nflags:\t02004002\nmnt_id:\t17\nino:\t26\neventfd-count:                7\n\
                    eventfd-id: 2\neventfd-semaphore: 1\n";
        let fdinfo = parse(text, FdKind::Eventfd).expect("parses");
        assert_eq!(
            fdinfo.eventfd,
            Some(EventfdRows {
                count: 7,
                id: Some(2),
                semaphore: true
            })
        );
        assert_eq!(fdinfo.ring, None);
        let without_semaphore = "pos:\t0\nflags:\t02\neventfd-count: 2a\neventfd-id: 1\n";
        assert!(
            problem(without_semaphore, FdKind::Eventfd).ends_with("no \"eventfd-semaphore\" line")
        );
    }

    #[test]
    fn ring_keys_on_a_plain_file_are_not_read() {
        let text = "pos:\t42\nflags:\t0100002\nmnt_id:\t3\nino:\t5\nSqMask:\tnot-a-number\n";
        let fdinfo = parse(text, FdKind::Plain).expect("parses");
        assert_eq!(
            (fdinfo.pos, fdinfo.flags, fdinfo.ring),
            (42, 0o100002, None)
        );
    }

    #[test]
    fn a_ring_without_its_rows_is_busy_not_empty() {
        let text = "pos:\t0\nflags:\t02000002\nmnt_id:\t17\nino:\t17070\n";
        assert!(matches!(
            parse(text, FdKind::Ring),
            Err(FdinfoError::RingBusy { .. })
        ));
    }

    #[test]
    fn malformed_values_name_the_file_and_line() {
        let bad_mask = SEED_ATTACHED_RING.replace("SqMask:\t0x1", "SqMask:\t1");
        assert_eq!(
            problem(&bad_mask, FdKind::Ring),
            "/proc/1/fdinfo/6:5: bad SqMask \"1\""
        );
        let bad_flags = SEED_ATTACHED_RING.replace("flags:\t02000002", "flags:\t09");
        assert_eq!(
            problem(&bad_flags, FdKind::Ring),
            "/proc/1/fdinfo/6:2: bad flags \"09\""
        );
        let bad_buffer = SEED_ATTACHED_RING.replace("0x562b97df8480/120", "0x562b97df8480-120");
        assert_eq!(
            problem(&bad_buffer, FdKind::Ring),
            "/proc/1/fdinfo/6:25: bad UserBufs row \"0x562b97df8480-120\""
        );
        let bad_count = "pos:\t0\nflags:\t02\neventfd-count: 0x2a\neventfd-semaphore: 0\n";
        assert_eq!(
            problem(bad_count, FdKind::Eventfd),
            "/proc/1/fdinfo/6:3: bad eventfd-count \"0x2a\""
        );
        let twice = SEED_ATTACHED_RING.replace("SqThreadCpu:\t0", "SqThreadCpu:\t0\nSqThread:\t1");
        assert_eq!(
            problem(&twice, FdKind::Ring),
            "/proc/1/fdinfo/6:17: SqThread appears twice"
        );
        let missing_pos = SEED_ATTACHED_RING.replace("pos:\t0\n", "");
        assert_eq!(
            problem(&missing_pos, FdKind::Ring),
            "/proc/1/fdinfo/6: no \"pos\" line"
        );
    }

    #[test]
    fn tables_must_fit_their_sizes() {
        let too_few_buffers = SEED_ATTACHED_RING.replace("UserBufs:\t2", "UserBufs:\t3");
        assert_eq!(
            problem(&too_few_buffers, FdKind::Ring),
            "/proc/1/fdinfo/6:23: UserBufs is 3 but the rows are not slots 0..3"
        );
        let slot_past_the_end = SEED_ATTACHED_RING.replace("    4: /tmp", "    5: /tmp");
        assert!(problem(&slot_past_the_end, FdKind::Ring)
            .contains("not ascending slots below 5 (slot 5)"));
        let repeated_slot = SEED_ATTACHED_RING.replace("    2: /tmp", "    0: /tmp");
        assert!(problem(&repeated_slot, FdKind::Ring).contains("(slot 0)"));
    }
}
