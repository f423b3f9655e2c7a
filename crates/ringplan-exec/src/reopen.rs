//! Reopening a file by path without ever blocking: what an `open_file` step
//! passes to `openat`, what it looks at before and after, and which flags
//! it sets once the file is open.
//!
//! An `open` can block: a FIFO waits for its other end, a terminal for
//! carrier, a file under another process's lease until the lease breaks.
//! A restore must never wait on a path, so the file is opened with
//! `O_NONBLOCK` added, its type checked against the image's (`fstat` of
//! the new fd; preflight `stat`s the path first, without opening), and
//! only then are its recorded status flags set with `fcntl(F_SETFL)`
//! (which clears `O_NONBLOCK` again when the image did not have it). The
//! functions here decide; the syscalls are the run's (`run/ops.rs`) and
//! preflight's (`preflight.rs`), so another backend can make the same
//! calls elsewhere.

use ringplan_image::FileType;
use ringplan_kernel::abi::linux::O_NONBLOCK;
use ringplan_kernel::abi::reopen::{O_NOFOLLOW, O_PATH, SETFL_FLAGS};
use ringplan_plan::OpenFile;
use rustix::fs::AtFlags;

/// The flags to open with: the step's, plus `O_NONBLOCK`, so that the
/// open itself never waits.
pub(crate) fn nonblocking_open_flags(open: &OpenFile) -> u32 {
    open.flags | O_NONBLOCK
}

/// The status flags to set with `fcntl(F_SETFL)` once the file is open
/// (those of [`SETFL_FLAGS`] the image recorded, so `O_NONBLOCK` only if
/// it was there), or `None` for an `O_PATH` fd, which has no status flags
/// to set (`F_SETFL` fails on it with `EBADF`).
pub(crate) fn status_flags(open: &OpenFile) -> Option<u32> {
    (open.flags & O_PATH == 0).then_some(open.flags & SETFL_FLAGS)
}

/// The status flags for an external input's fd (opened by path without
/// blocking, or a stand-in) with `current` ones (`F_GETFL`): `O_NONBLOCK`
/// as the step records it (a program's reads and writes depend on it; off
/// when the step records no flags, as after a plain `open`), the others
/// as they are. Only `O_NONBLOCK`: the file is another one than the
/// recorded (a stand-in, or whatever the caller named), on which the
/// recorded `O_DIRECT` or `O_NOATIME` may not be allowed.
pub(crate) fn input_status_flags(current: u32, recorded: Option<u32>) -> u32 {
    (current & !O_NONBLOCK) | (recorded.unwrap_or(0) & O_NONBLOCK)
}

/// Sets `O_NONBLOCK` of an external input's fd as the step records it
/// ([`input_status_flags`]): `F_GETFL`, then `F_SETFL` if it changes.
pub(crate) fn set_input_status_flags(
    fd: &impl std::os::fd::AsFd,
    recorded: Option<u32>,
) -> Result<(), rustix::io::Errno> {
    let current = rustix::fs::fcntl_getfl(fd)?.bits();
    let wanted = input_status_flags(current, recorded);
    if wanted != current {
        rustix::fs::fcntl_setfl(fd, rustix::fs::OFlags::from_bits_retain(wanted))?;
    }
    Ok(())
}

/// The `statat` flags that look at what the open meets: the file a
/// symlink at the path's end leads to (as `stat`), or under `O_NOFOLLOW`
/// the link itself (as `lstat`; the open fails on it).
pub(crate) fn lookup_flags(open: &OpenFile) -> AtFlags {
    if open.flags & O_NOFOLLOW == 0 {
        AtFlags::empty()
    } else {
        AtFlags::SYMLINK_NOFOLLOW
    }
}

/// The type `stat` reports for a file, in the image's terms.
pub(crate) fn file_type_of(stat: &rustix::fs::Stat) -> FileType {
    FileType::from_mode(stat.st_mode)
}

/// A file's type as the end of a sentence: "a FIFO", "a directory".
pub(crate) fn type_phrase(file_type: FileType) -> &'static str {
    match file_type {
        FileType::Regular => "a regular file",
        FileType::Directory => "a directory",
        FileType::CharDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Pipe => "a FIFO",
        FileType::Socket => "a socket",
        FileType::Symlink => "a symlink",
        FileType::Other => "a file of an unusual type",
        FileType::Unknown => "a file of unknown type",
    }
}

/// What the image says a reopened file is: its recorded type, or, for a
/// plan written before types were recorded, any type a plan reopens.
pub(crate) fn recorded_phrase(recorded: Option<FileType>) -> &'static str {
    recorded.map_or(
        "a file that can be reopened (a regular file, directory or device)",
        type_phrase,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringplan_kernel::abi::reopen::{O_APPEND, O_ASYNC, O_DIRECT, O_LARGEFILE};

    fn open(flags: u32) -> OpenFile {
        OpenFile {
            path: "/dev/null".to_owned(),
            flags,
            pos: 0,
            file_type: Some(FileType::CharDevice),
            identity: None,
        }
    }

    #[test]
    fn the_open_never_waits_and_the_recorded_status_flags_come_back() {
        let append = open(O_APPEND | O_LARGEFILE | 1);
        assert_eq!(nonblocking_open_flags(&append) & O_NONBLOCK, O_NONBLOCK);
        // O_NONBLOCK is cleared again; O_LARGEFILE and the access mode are
        // not F_SETFL's to change.
        assert_eq!(status_flags(&append), Some(O_APPEND));
        let every = open(O_APPEND | O_NONBLOCK | O_ASYNC | O_DIRECT);
        assert_eq!(
            status_flags(&every),
            Some(O_APPEND | O_NONBLOCK | O_ASYNC | O_DIRECT)
        );
        assert_eq!(status_flags(&open(O_PATH)), None);
        assert_eq!(
            input_status_flags(O_NONBLOCK | O_APPEND, Some(O_DIRECT | 1)),
            O_APPEND
        );
        assert_eq!(input_status_flags(0, Some(O_NONBLOCK | 1)), O_NONBLOCK);
        assert_eq!(input_status_flags(O_NONBLOCK, None), 0);
    }

    #[test]
    fn o_nofollow_looks_at_the_link_itself() {
        assert_eq!(lookup_flags(&open(0)), AtFlags::empty());
        assert_eq!(lookup_flags(&open(O_NOFOLLOW)), AtFlags::SYMLINK_NOFOLLOW);
    }

    #[test]
    fn a_plan_without_types_admits_what_a_plan_reopens() {
        let mut untyped = open(0);
        untyped.file_type = None;
        assert!(untyped.admits(FileType::Regular));
        assert!(untyped.admits(FileType::BlockDevice));
        assert!(!untyped.admits(FileType::Pipe));
        assert!(!untyped.admits(FileType::Socket));
        assert!(open(0).admits(FileType::CharDevice));
        assert!(!open(0).admits(FileType::Regular));
    }
}
