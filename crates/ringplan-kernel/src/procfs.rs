//! Reading and parsing the `/proc` files ringplan uses, each format parsed
//! in one place:
//!
//! - [`stat`]: `/proc/PID/stat` and `/proc/PID/task/TID/stat` (state letter,
//!   `task_struct.flags`);
//! - [`task`]: `/proc/PID/task` (thread ids, `comm`, whether a thread is an
//!   io_uring SQ thread);
//! - [`fd`]: `/proc/PID/fd` and `/proc/PID/fdinfo` read fd by fd (link
//!   targets, the inode mode behind an fd, the fdinfo text);
//! - [`fdinfo`]: the text of `/proc/PID/fdinfo/FD`: its lines, the typed
//!   fields of a ring, an eventfd or any other fd, and the `UserFiles:` rows;
//! - [`limits`]: `RLIMIT_NOFILE` and `RLIMIT_MEMLOCK` in `/proc/PID/limits`;
//! - [`maps`]: the lines of `/proc/PID/maps`;
//! - [`mem`]: reads and writes of a process's memory through `/proc/PID/mem`;
//! - [`status`]: the state, tracer, owner and seccomp mode in `/proc/PID/status`
//!   and Yama's `ptrace_scope`;
//! - [`mountinfo`]: the lines of `/proc/self/mountinfo`;
//! - [`credentials`]: a thread's credentials (`Uid:`, `Gid:`, `Groups:`,
//!   `Cap*:` of its status) and a ring's `Personalities:` in its fdinfo;
//! - [`escape`]: the `\ooo` escapes the kernel writes into paths in all of
//!   these.
//!
//! Each parser works on text it is handed, so it can be tested on samples;
//! each reader names the file it reads in its doc and in its errors.

pub mod cpus;
pub mod credentials;
pub mod escape;
pub mod fd;
pub mod fdinfo;
pub mod limits;
pub mod maps;
pub mod mem;
pub mod mountinfo;
pub mod pagemap;
pub mod stat;
pub mod status;
pub mod task;

use std::path::{Path, PathBuf};

/// The process whose `/proc` directory is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    /// `/proc/self`: the calling process.
    Current,
    /// `/proc/PID`.
    Pid(u32),
}

impl Process {
    /// `/proc/self` or `/proc/PID`.
    pub fn dir(self) -> PathBuf {
        match self {
            Process::Current => PathBuf::from("/proc/self"),
            Process::Pid(pid) => PathBuf::from(format!("/proc/{pid}")),
        }
    }

    /// A file under the process's directory, e.g. `maps` or `fdinfo/3`.
    pub fn path(self, file: &str) -> PathBuf {
        self.dir().join(file)
    }
}

impl From<u32> for Process {
    fn from(pid: u32) -> Process {
        Process::Pid(pid)
    }
}

/// Why a `/proc` file could not be read or parsed. Every variant names the
/// file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcfsError {
    /// `/proc/PID` (or the directory asked for) does not exist or names no
    /// process any more (`ENOENT`, `ESRCH`).
    #[error("{} does not exist", path.display())]
    NoSuchProcess { path: PathBuf },
    /// Any other failure to open or read the file. A caller tells
    /// permission problems apart by `source.kind()`.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A line the parser cannot read.
    #[error("{}:{line}: {problem}", path.display())]
    Malformed {
        path: PathBuf,
        line: usize,
        problem: String,
    },
    /// A line the file must have is not there.
    #[error("{}: no {key:?} line", path.display())]
    MissingKey { path: PathBuf, key: &'static str },
    /// A ring's fdinfo without the ring's part: the kernel prints it only
    /// when it can take the ring's lock at once, so another read may show
    /// it.
    #[error(
        "{}: no ring state: the kernel prints it only when it can take the ring's lock at once",
        path.display()
    )]
    NoRingState { path: PathBuf },
}

impl ProcfsError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            ProcfsError::NoSuchProcess { path }
            | ProcfsError::Read { path, .. }
            | ProcfsError::Malformed { path, .. }
            | ProcfsError::MissingKey { path, .. }
            | ProcfsError::NoRingState { path } => path,
        }
    }

    /// Whether the read failed because the caller lacks the rights
    /// (`EACCES`, `EPERM`): reading another process's fds, maps or memory
    /// needs the rights ptrace needs.
    pub fn is_permission_denied(&self) -> bool {
        matches!(self, ProcfsError::Read { source, .. }
            if source.kind() == std::io::ErrorKind::PermissionDenied)
    }

    /// Whether the file does not exist (`ENOENT`), or its task died
    /// between the open and the read (`ESRCH`): the process, thread or fd
    /// is gone.
    pub fn is_not_found(&self) -> bool {
        match self {
            ProcfsError::NoSuchProcess { .. } => true,
            ProcfsError::Read { source, .. } => {
                source.kind() == std::io::ErrorKind::NotFound
                    || source.raw_os_error() == Some(rustix::io::Errno::SRCH.raw_os_error())
            }
            _ => false,
        }
    }

    /// The I/O error behind a failed read, for callers whose own errors
    /// hold one and name the file themselves; other errors become
    /// `ErrorKind::NotFound` (no such process) or `ErrorKind::InvalidData`
    /// (a file that does not parse), carrying their message.
    pub fn into_io_error(self) -> std::io::Error {
        match self {
            ProcfsError::Read { source, .. } => source,
            ProcfsError::NoSuchProcess { .. } => {
                std::io::Error::new(std::io::ErrorKind::NotFound, self)
            }
            other => std::io::Error::new(std::io::ErrorKind::InvalidData, other),
        }
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> ProcfsError {
        ProcfsError::Read {
            path: path.to_owned(),
            source,
        }
    }

    pub(crate) fn errno(path: &Path, errno: rustix::io::Errno) -> ProcfsError {
        ProcfsError::io(path, errno.into())
    }

    pub(crate) fn malformed(path: &Path, line: usize, problem: String) -> ProcfsError {
        ProcfsError::Malformed {
            path: path.to_owned(),
            line,
            problem,
        }
    }
}

/// Reads a whole `/proc` file as bytes.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, ProcfsError> {
    std::fs::read(path).map_err(|source| ProcfsError::io(path, source))
}

/// Reads a whole `/proc` file as text.
pub(crate) fn read_text(path: &Path) -> Result<String, ProcfsError> {
    std::fs::read_to_string(path).map_err(|source| ProcfsError::io(path, source))
}
