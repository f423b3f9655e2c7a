//! `/proc/PID/fd` and `/proc/PID/fdinfo`, read fd by fd: the fd numbers, what
//! each fd links to, the inode mode behind it, and its fdinfo text (parsed
//! by [`super::fdinfo`]).

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use rustix::buffer::spare_capacity;
use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use super::{Process, ProcfsError};
use crate::abi::{EVENTFD_FILE_PATH, RING_FILE_PATH};

/// What an fd is, from its link target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdKind {
    /// An io_uring instance ([`RING_FILE_PATH`]).
    Ring,
    /// An eventfd ([`EVENTFD_FILE_PATH`]).
    Eventfd,
    /// Anything else: a path, a pipe, a socket, another anonymous inode.
    Other,
}

impl FdKind {
    /// The kind of an fd whose `/proc/PID/fd/FD` link target is `link`.
    pub fn of_link(link: &[u8]) -> FdKind {
        if link == RING_FILE_PATH.as_bytes() {
            FdKind::Ring
        } else if link == EVENTFD_FILE_PATH.as_bytes() {
            FdKind::Eventfd
        } else {
            FdKind::Other
        }
    }
}

/// Handles on a process's `/proc/PID/fd` and `/proc/PID/fdinfo`. Every
/// per-fd read is relative to them, so the path to the process is walked
/// once, not three times per fd (which matters with ~20000 fds).
#[derive(Debug)]
pub struct ProcessFds {
    process: Process,
    fd_dir: OwnedFd,
    fdinfo_dir: OwnedFd,
    /// Reused between fds: the link target and the fdinfo text.
    link: Vec<u8>,
    text: Vec<u8>,
}

impl ProcessFds {
    /// Opens `/proc/PID/fd` and `/proc/PID/fdinfo`.
    /// [`ProcfsError::NoSuchProcess`] when the process does not exist.
    pub fn open(process: Process) -> Result<ProcessFds, ProcfsError> {
        let open_dir = |name: &str| {
            let path = process.path(name);
            rustix::fs::open(
                &path,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|errno| match errno {
                Errno::NOENT | Errno::SRCH => ProcfsError::NoSuchProcess { path },
                _ => ProcfsError::errno(&path, errno),
            })
        };
        Ok(ProcessFds {
            process,
            fd_dir: open_dir("fd")?,
            fdinfo_dir: open_dir("fdinfo")?,
            link: Vec::with_capacity(256),
            text: Vec::with_capacity(4096),
        })
    }

    /// The process these handles read.
    pub fn process(&self) -> Process {
        self.process
    }

    /// `/proc/PID/fd/FD`.
    pub fn fd_path(&self, fd: i32) -> PathBuf {
        self.process.path(&format!("fd/{fd}"))
    }

    /// `/proc/PID/fdinfo/FD`.
    pub fn fdinfo_path(&self, fd: i32) -> PathBuf {
        self.process.path(&format!("fdinfo/{fd}"))
    }

    /// The process's fd numbers (the entries of `/proc/PID/fd`), ascending.
    pub fn fd_numbers(&self) -> Result<Vec<i32>, ProcfsError> {
        let path = self.process.path("fd");
        let mut fds = Vec::new();
        let mut dir = rustix::fs::Dir::read_from(&self.fd_dir)
            .map_err(|errno| ProcfsError::errno(&path, errno))?;
        while let Some(entry) = dir.read() {
            let entry = entry.map_err(|errno| ProcfsError::errno(&path, errno))?;
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

    /// The link target of `/proc/PID/fd/FD`; `None` when the fd is gone.
    pub fn read_link(&mut self, fd: i32) -> Result<Option<&[u8]>, ProcfsError> {
        match rustix::fs::readlinkat(&self.fd_dir, fd.to_string(), std::mem::take(&mut self.link)) {
            Ok(target) => {
                self.link = target.into_bytes();
                Ok(Some(&self.link))
            }
            Err(Errno::NOENT) => Ok(None),
            Err(errno) => Err(ProcfsError::errno(&self.fd_path(fd), errno)),
        }
    }

    /// The fds that hold an io_uring instance, ascending (an fd gone
    /// meanwhile is left out).
    pub fn ring_fds(&mut self) -> Result<Vec<i32>, ProcfsError> {
        let mut rings = Vec::new();
        for fd in self.fd_numbers()? {
            if let Some(link) = self.read_link(fd)? {
                if FdKind::of_link(link) == FdKind::Ring {
                    rings.push(fd);
                }
            }
        }
        Ok(rings)
    }

    /// The text of `/proc/PID/fdinfo/FD`; `None` when the fd is gone.
    pub fn read_fdinfo(&mut self, fd: i32) -> Result<Option<&[u8]>, ProcfsError> {
        let flags = OFlags::RDONLY | OFlags::CLOEXEC;
        let file = match rustix::fs::openat(&self.fdinfo_dir, fd.to_string(), flags, Mode::empty())
        {
            Ok(file) => file,
            Err(Errno::NOENT) => return Ok(None),
            Err(errno) => return Err(ProcfsError::errno(&self.fdinfo_path(fd), errno)),
        };
        self.text.clear();
        loop {
            if self.text.capacity() - self.text.len() < 4096 {
                self.text.reserve(self.text.capacity().max(4096));
            }
            match rustix::io::read(&file, spare_capacity(&mut self.text)) {
                Ok(0) => return Ok(Some(&self.text)),
                Ok(_) | Err(Errno::INTR) => {}
                Err(errno) => return Err(ProcfsError::errno(&self.fdinfo_path(fd), errno)),
            }
        }
    }

    /// The inode mode behind fd `fd` (`stat` of `/proc/PID/fd/FD`, which
    /// follows the link); `None` when the fd is gone.
    pub fn mode(&self, fd: i32) -> Result<Option<u32>, ProcfsError> {
        Ok(self.inode(fd)?.map(|inode| inode.mode))
    }

    /// The inode behind fd `fd` (`stat` of `/proc/PID/fd/FD`, which
    /// follows the link to the open file's inode, whatever its path now
    /// names); `None` when the fd is gone.
    pub fn inode(&self, fd: i32) -> Result<Option<FdInode>, ProcfsError> {
        match rustix::fs::statat(&self.fd_dir, fd.to_string(), AtFlags::empty()) {
            Ok(stat) => Ok(Some(FdInode {
                mode: stat.st_mode,
                dev: stat.st_dev,
                ino: stat.st_ino,
            })),
            Err(Errno::NOENT) => Ok(None),
            Err(errno) => Err(ProcfsError::errno(&self.fd_path(fd), errno)),
        }
    }
}

/// What `stat` says of the inode behind an fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdInode {
    /// `st_mode`.
    pub mode: u32,
    /// `st_dev`, in the encoding `stat` gives userspace.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_tell_rings_and_eventfds() {
        assert_eq!(FdKind::of_link(b"anon_inode:[io_uring]"), FdKind::Ring);
        assert_eq!(FdKind::of_link(b"anon_inode:[eventfd]"), FdKind::Eventfd);
        assert_eq!(FdKind::of_link(b"/dev/null"), FdKind::Other);
        assert_eq!(FdKind::of_link(b"pipe:[1234]"), FdKind::Other);
    }

    #[test]
    fn this_process_fds_read_and_a_missing_process_is_no_such_process() {
        let eventfd =
            rustix::event::eventfd(3, rustix::event::EventfdFlags::CLOEXEC).expect("an eventfd");
        let number = std::os::fd::AsRawFd::as_raw_fd(&eventfd);
        let mut fds = ProcessFds::open(Process::Current).expect("own fds");
        assert!(fds.fd_numbers().expect("fd numbers").contains(&number));
        assert_eq!(
            fds.read_link(number).expect("link").map(FdKind::of_link),
            Some(FdKind::Eventfd)
        );
        let text = fds.read_fdinfo(number).expect("fdinfo").expect("open fd");
        assert!(text.starts_with(b"pos:"));
        assert!(fds.mode(number).expect("mode").is_some());
        assert_eq!(fds.read_link(-1).expect("no such fd"), None);
        assert!(matches!(
            ProcessFds::open(Process::Pid((1 << 22) + 1)),
            Err(ProcfsError::NoSuchProcess { .. })
        ));
    }
}
