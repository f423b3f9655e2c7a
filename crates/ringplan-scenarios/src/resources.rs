//! The things a scenario registers on its rings, each owning what it
//! created: a temporary directory with files, open files, eventfds and
//! buffer memory.

use std::ffi::c_void;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use rustix::event::EventfdFlags;
use rustix::fs::{Mode, OFlags, SeekFrom};
use rustix::mm::{MapFlags, ProtFlags};
use rustix::process::{Resource, Rlimit};

use crate::ring::RegisterIovec;
use crate::{Scenario, ScenarioError};

/// A directory under the system temp dir holding a scenario's files,
/// removed with everything in it on drop.
#[derive(Debug)]
pub(crate) struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub(crate) fn create() -> Result<TempDir, ScenarioError> {
        // Several scenarios may be built by one process (tests): the counter
        // keeps their directories apart, the pid keeps processes apart.
        static NEXT_DIR: AtomicU32 = AtomicU32::new(0);
        let parent = std::env::temp_dir();
        remove_stale_dirs(&parent);
        let name = format!(
            "{DIR_PREFIX}{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        );
        let path = parent.join(name);
        std::fs::create_dir(&path).map_err(|source| ScenarioError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(TempDir { path })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// Every scenario directory is named `ringplan-scenario-PID-N`.
const DIR_PREFIX: &str = "ringplan-scenario-";

/// Removes the directories of scenario processes that are gone without
/// cleaning up (killed with SIGKILL, say), so that repeated test and
/// benchmark runs do not fill the temp dir. A directory whose pid is alive
/// (or was reused) is left alone. Best effort: errors are ignored.
fn remove_stale_dirs(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|name| name.strip_prefix(DIR_PREFIX))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Cleanup only: a failure cannot be reported from drop and leaves a
        // directory in the temp dir.
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A file the scenario opened.
#[derive(Debug)]
pub(crate) struct ScenarioFile {
    /// `None` once the scenario closed its fd (a ring may still hold it).
    pub fd: Option<OwnedFd>,
    pub fd_number: RawFd,
    pub path: PathBuf,
    pub cloexec: bool,
    /// The file position the scenario left it at.
    pub pos: u64,
}

impl ScenarioFile {
    /// Creates `path` (which must not exist) read-write, close-on-exec.
    pub(crate) fn create(path: PathBuf) -> Result<ScenarioFile, ScenarioError> {
        let flags = OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC;
        let fd = rustix::fs::open(&path, flags, Mode::from_raw_mode(0o600))
            .map_err(|errno| ScenarioError::syscall(format!("open {}", path.display()), errno))?;
        Ok(ScenarioFile {
            fd_number: fd.as_raw_fd(),
            fd: Some(fd),
            path,
            cloexec: true,
            pos: 0,
        })
    }

    /// Opens an existing `path` with `flags`.
    pub(crate) fn open(path: &str, flags: OFlags) -> Result<ScenarioFile, ScenarioError> {
        let fd = rustix::fs::open(path, flags, Mode::empty())
            .map_err(|errno| ScenarioError::syscall(format!("open {path}"), errno))?;
        Ok(ScenarioFile {
            fd_number: fd.as_raw_fd(),
            fd: Some(fd),
            path: PathBuf::from(path),
            cloexec: flags.contains(OFlags::CLOEXEC),
            pos: 0,
        })
    }

    /// Writes `contents` and leaves the position at `pos`.
    pub(crate) fn write_and_seek(
        &mut self,
        contents: &[u8],
        pos: u64,
    ) -> Result<(), ScenarioError> {
        let context = || format!("write to {}", self.path.display());
        let fd = self.fd()?;
        let written = rustix::io::write(fd, contents)
            .map_err(|errno| ScenarioError::syscall(context(), errno))?;
        if written != contents.len() {
            return Err(ScenarioError::ShortWrite {
                path: self.path.clone(),
                written,
                wanted: contents.len(),
            });
        }
        rustix::fs::seek(fd, SeekFrom::Start(pos))
            .map_err(|errno| ScenarioError::syscall(context(), errno))?;
        self.pos = pos;
        Ok(())
    }

    pub(crate) fn fd(&self) -> Result<BorrowedFd<'_>, ScenarioError> {
        self.fd
            .as_ref()
            .map(|fd| fd.as_fd())
            .ok_or(ScenarioError::FileAlreadyClosed { fd: self.fd_number })
    }
}

/// An eventfd the scenario created.
#[derive(Debug)]
pub(crate) struct ScenarioEventfd {
    /// `None` once the scenario closed its fd (a ring may still hold it).
    pub fd: Option<OwnedFd>,
    pub fd_number: RawFd,
    pub count: u32,
    pub flags: EventfdFlags,
}

impl ScenarioEventfd {
    pub(crate) fn create(
        count: u32,
        flags: EventfdFlags,
    ) -> Result<ScenarioEventfd, ScenarioError> {
        let fd = rustix::event::eventfd(count, flags).map_err(|errno| {
            ScenarioError::syscall(format!("eventfd({count}, {flags:?})"), errno)
        })?;
        Ok(ScenarioEventfd {
            fd_number: fd.as_raw_fd(),
            fd: Some(fd),
            count,
            flags,
        })
    }

    pub(crate) fn fd(&self) -> Result<BorrowedFd<'_>, ScenarioError> {
        self.fd
            .as_ref()
            .map(|fd| fd.as_fd())
            .ok_or(ScenarioError::FileAlreadyClosed { fd: self.fd_number })
    }
}

/// Memory handed to `IORING_REGISTER_BUFFERS`, filled with a recognizable
/// pattern so a restore test can compare contents.
#[derive(Debug)]
pub(crate) enum BufferMemory {
    /// A heap allocation, as most programs register.
    Heap(Box<[u8]>),
    /// A private anonymous mapping of whole pages, unmapped on drop.
    Pages { addr: usize, len: usize },
}

impl BufferMemory {
    pub(crate) fn heap(len: usize, pattern: &[u8]) -> BufferMemory {
        BufferMemory::Heap(pattern.iter().copied().cycle().take(len).collect())
    }

    pub(crate) fn pages(len: usize, pattern: &[u8]) -> Result<BufferMemory, ScenarioError> {
        // SAFETY: a fresh private anonymous mapping; nothing aliases it and
        // `Drop` unmaps it exactly once.
        let addr = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE,
            )
        }
        .map_err(|errno| ScenarioError::syscall(format!("mmap of {len} anonymous bytes"), errno))?;
        // SAFETY: the mapping is `len` writable bytes that only this value
        // refers to.
        let bytes = unsafe { std::slice::from_raw_parts_mut(addr.cast::<u8>(), len) };
        for (byte, value) in bytes.iter_mut().zip(pattern.iter().cycle()) {
            *byte = *value;
        }
        Ok(BufferMemory::Pages {
            addr: addr as usize,
            len,
        })
    }

    /// The iovec that registers this memory.
    pub(crate) fn iovec(&self) -> RegisterIovec {
        match self {
            BufferMemory::Heap(bytes) => RegisterIovec {
                base: bytes.as_ptr().cast_mut().cast(),
                len: bytes.len(),
            },
            BufferMemory::Pages { addr, len } => RegisterIovec {
                base: *addr as *mut c_void,
                len: *len,
            },
        }
    }
}

impl Drop for BufferMemory {
    fn drop(&mut self) {
        if let BufferMemory::Pages { addr, len } = *self {
            // SAFETY: the mapping `pages` created; unmapped only here. The
            // kernel keeps its own pin on pages still registered.
            let _ = unsafe { rustix::mm::munmap(addr as *mut c_void, len) };
        }
    }
}

/// Raises the RLIMIT_NOFILE soft limit to the hard limit so that `extra_fds`
/// more fds (and a registered table of that size, which the kernel also
/// checks against RLIMIT_NOFILE) fit; an error saying so when they cannot.
pub(crate) fn make_room_for_fds(
    extra_fds: usize,
    scenario: &Scenario,
) -> Result<(), ScenarioError> {
    let limit = rustix::process::getrlimit(Resource::Nofile);
    let hard_limit = limit.maximum.unwrap_or(u64::MAX);
    if limit.current != limit.maximum {
        rustix::process::setrlimit(
            Resource::Nofile,
            Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            },
        )
        .map_err(|errno| ScenarioError::syscall("setrlimit(RLIMIT_NOFILE)".to_owned(), errno))?;
    }
    let already_open = count_open_fds()?;
    if (already_open + extra_fds) as u64 > hard_limit {
        return Err(ScenarioError::TooManyFds {
            scenario: scenario.to_string(),
            fds_needed: extra_fds,
            hard_limit,
            already_open,
        });
    }
    Ok(())
}

fn count_open_fds() -> Result<usize, ScenarioError> {
    let dir = Path::new("/proc/self/fd");
    let entries = std::fs::read_dir(dir).map_err(|source| ScenarioError::Io {
        path: dir.into(),
        source,
    })?;
    // The directory handle itself is one of the entries, and is closed again
    // right after.
    Ok(entries.count().saturating_sub(1))
}
