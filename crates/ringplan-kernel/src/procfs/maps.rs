//! `/proc/PID/maps`: one line per mapping,
//! `START-END PERMS OFFSET MAJOR:MINOR INODE [PATH]`, addresses and offset
//! in hex. An io_uring region's path is [`crate::abi::RING_FILE_PATH`] and its
//! offset the region's mmap offset.

use std::os::fd::OwnedFd;

use rustix::io::Errno;

use super::{read_text, Process, ProcfsError};

/// One line of the maps file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapsEntry<'a> {
    /// The first address of the mapping.
    pub start: u64,
    /// The address after its last byte.
    pub end: u64,
    /// `rwxp`/`rwxs` with `-` for what is not allowed.
    pub perms: &'a str,
    /// The offset into the mapped file (for io_uring, the mmap offset that
    /// selects the region).
    pub offset: u64,
    /// `MAJOR:MINOR` of the device the file lives on.
    pub device: &'a str,
    /// The mapped file's inode number, 0 for anonymous memory.
    pub inode: u64,
    /// The file's path or name (`[heap]`, `anon_inode:[io_uring]`), empty
    /// for anonymous memory.
    pub path: &'a str,
}

impl MapsEntry<'_> {
    /// Parses one line; `None` when it is not a maps line.
    pub fn parse(line: &str) -> Option<MapsEntry<'_>> {
        let mut rest = line;
        let mut field = || {
            let trimmed = rest.trim_start();
            let end = trimmed
                .find(|c: char| c.is_ascii_whitespace())
                .unwrap_or(trimmed.len());
            let (field, after) = trimmed.split_at(end);
            rest = after;
            (!field.is_empty()).then_some(field)
        };
        let (start, end) = field()?.split_once('-')?;
        let perms = field()?;
        let offset = u64::from_str_radix(field()?, 16).ok()?;
        let device = field()?;
        let inode = field()?.parse().ok()?;
        Some(MapsEntry {
            start: u64::from_str_radix(start, 16).ok()?,
            end: u64::from_str_radix(end, 16).ok()?,
            perms,
            offset,
            device,
            inode,
            path: rest.trim_start(),
        })
    }

    /// Whether the mapping overlaps `[start, end)`.
    pub fn overlaps(&self, start: u64, end: u64) -> bool {
        self.start < end && start < self.end
    }
}

/// Reads `/proc/PID/maps` (its text; parse each line with
/// [`MapsEntry::parse`]).
pub fn read(process: Process) -> Result<String, ProcfsError> {
    read_text(&process.path("maps"))
}

/// `struct procmap_query` (include/uapi/linux/fs.h, Linux 6.11): one
/// mapping of a process asked for by address with an ioctl on its maps
/// file, instead of the whole text.
#[repr(C)]
#[derive(Debug, Default)]
struct ProcmapQuery {
    size: u64,
    query_flags: u64,
    query_addr: u64,
    vma_start: u64,
    vma_end: u64,
    vma_flags: u64,
    vma_page_size: u64,
    vma_offset: u64,
    inode: u64,
    dev_major: u32,
    dev_minor: u32,
    vma_name_size: u32,
    build_id_size: u32,
    vma_name_addr: u64,
    build_id_addr: u64,
}

/// `PROCMAP_QUERY_COVERING_OR_NEXT_VMA`: the mapping at the address, or
/// the first one after it.
const PROCMAP_QUERY_COVERING_OR_NEXT_VMA: u64 = 0x10;
/// `PROCMAP_QUERY_VMA_*`: a mapping's protections and sharing in
/// `vma_flags`.
const PROCMAP_QUERY_VMA_READABLE: u64 = 0x01;
const PROCMAP_QUERY_VMA_WRITABLE: u64 = 0x02;
const PROCMAP_QUERY_VMA_EXECUTABLE: u64 = 0x04;
const PROCMAP_QUERY_VMA_SHARED: u64 = 0x08;
/// `PROCMAP_QUERY`: `_IOWR('f', 17, struct procmap_query)`.
const PROCMAP_QUERY: rustix::ioctl::Opcode =
    rustix::ioctl::opcode::read_write::<ProcmapQuery>(b'f', 17);

/// A process's maps file held open for `PROCMAP_QUERY` (Linux 6.11+):
/// asking whether a range is free costs one ioctl, not the text of every
/// mapping.
#[derive(Debug)]
pub struct MapsQuery {
    file: OwnedFd,
}

impl MapsQuery {
    /// Opens `process`'s maps file.
    pub fn open(process: Process) -> Result<MapsQuery, ProcfsError> {
        let path = process.path("maps");
        let file = rustix::fs::open(
            &path,
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|errno| ProcfsError::io(&path, std::io::Error::from(errno)))?;
        Ok(MapsQuery { file })
    }

    /// The first mapping (`start`, `end`) that covers `addr` or starts
    /// after it; `None` when there is none. `Err(ENOTTY)` (or `EINVAL`) on
    /// a kernel before 6.11, which has no such ioctl.
    pub fn covering_or_next(&self, addr: u64) -> Result<Option<(u64, u64)>, Errno> {
        let mut query = ProcmapQuery {
            size: std::mem::size_of::<ProcmapQuery>() as u64,
            query_flags: PROCMAP_QUERY_COVERING_OR_NEXT_VMA,
            query_addr: addr,
            ..ProcmapQuery::default()
        };
        // SAFETY: `query` is a `struct procmap_query` of the size it states,
        // with no name or build-id buffer (sizes 0), which the kernel reads
        // and fills in during the call only.
        let asked = unsafe {
            rustix::ioctl::ioctl(
                &self.file,
                rustix::ioctl::Updater::<PROCMAP_QUERY, ProcmapQuery>::new(&mut query),
            )
        };
        match asked {
            Ok(()) => Ok(Some((query.vma_start, query.vma_end))),
            Err(Errno::NOENT) => Ok(None),
            Err(errno) => Err(errno),
        }
    }

    /// The lines of the maps file for the mappings that overlap
    /// `[start, end)`, in its own format (`start-end perms offset
    /// major:minor inode name`, which [`MapsEntry::parse`] reads), asked
    /// one mapping at a time: what a check of a few ranges needs, without
    /// the text of every mapping (hundreds of lines for a program linked
    /// with many libraries). `Err` as [`MapsQuery::covering_or_next`].
    pub fn lines_overlapping(&self, start: u64, end: u64) -> Result<String, Errno> {
        let mut text = String::new();
        let mut addr = start;
        while addr < end {
            let mut name = [0u8; 4096];
            let mut query = ProcmapQuery {
                size: std::mem::size_of::<ProcmapQuery>() as u64,
                query_flags: PROCMAP_QUERY_COVERING_OR_NEXT_VMA,
                query_addr: addr,
                vma_name_size: name.len() as u32,
                vma_name_addr: name.as_mut_ptr() as u64,
                ..ProcmapQuery::default()
            };
            // SAFETY: `query` is a `struct procmap_query` of the size it
            // states; its name buffer is `name`, of the size it states, which
            // the kernel fills in during the call only; no build-id buffer.
            let asked = unsafe {
                rustix::ioctl::ioctl(
                    &self.file,
                    rustix::ioctl::Updater::<PROCMAP_QUERY, ProcmapQuery>::new(&mut query),
                )
            };
            match asked {
                Ok(()) => {}
                Err(Errno::NOENT) => break,
                Err(errno) => return Err(errno),
            }
            if query.vma_start >= end {
                break;
            }
            let flag = |bit: u64, letter: char| {
                if query.vma_flags & bit != 0 {
                    letter
                } else {
                    '-'
                }
            };
            let used = (query.vma_name_size as usize).min(name.len());
            let name = std::ffi::CStr::from_bytes_until_nul(&name[..used])
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default();
            text.push_str(&format!(
                "{:x}-{:x} {}{}{}{} {:08x} {:02x}:{:02x} {} {name}\n",
                query.vma_start,
                query.vma_end,
                flag(PROCMAP_QUERY_VMA_READABLE, 'r'),
                flag(PROCMAP_QUERY_VMA_WRITABLE, 'w'),
                flag(PROCMAP_QUERY_VMA_EXECUTABLE, 'x'),
                if query.vma_flags & PROCMAP_QUERY_VMA_SHARED != 0 {
                    's'
                } else {
                    'p'
                },
                query.vma_offset,
                query.dev_major,
                query.dev_minor,
                query.inode,
            ));
            addr = query.vma_end;
        }
        Ok(text)
    }

    /// Whether `[start, end)` overlaps no mapping: `Err` as
    /// [`MapsQuery::covering_or_next`].
    pub fn is_free(&self, start: u64, end: u64) -> Result<bool, Errno> {
        Ok(self
            .covering_or_next(start)?
            .is_none_or(|(mapping_start, _)| mapping_start >= end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_field_by_field() {
        let ring = MapsEntry::parse(
            "7f1c2e3fe000-7f1c2e3ff000 rw-s 10000000 00:10 4242                       anon_inode:[io_uring]",
        )
        .expect("a ring line");
        assert_eq!(
            ring,
            MapsEntry {
                start: 0x7f1c2e3fe000,
                end: 0x7f1c2e3ff000,
                perms: "rw-s",
                offset: 0x1000_0000,
                device: "00:10",
                inode: 4242,
                path: "anon_inode:[io_uring]",
            }
        );
        let anonymous =
            MapsEntry::parse("7f0000000000-7f0000001000 rw-p 00000000 00:00 0 ").expect("a line");
        assert_eq!((anonymous.inode, anonymous.path), (0, ""));
        let spaced = MapsEntry::parse("1000-2000 r--p 00000000 08:01 7   /tmp/a b (deleted)")
            .expect("a line");
        assert_eq!(spaced.path, "/tmp/a b (deleted)");
        assert_eq!(MapsEntry::parse("garbage anon_inode:[io_uring]"), None);
        assert_eq!(MapsEntry::parse("1000-2000 rw-p 0"), None);
    }

    #[test]
    fn queried_lines_read_as_the_maps_file_says() {
        use rustix::mm::{mmap_anonymous, mprotect, munmap, MapFlags, MprotectFlags, ProtFlags};
        let page = crate::abi::linux::PAGE_SIZE as usize;
        // SAFETY: a fresh private anonymous mapping of three pages, used
        // only through its address here and unmapped at the end.
        let base = unsafe {
            mmap_anonymous(
                std::ptr::null_mut(),
                3 * page,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE,
            )
        }
        .expect("mmap");
        // SAFETY: the middle page of the mapping above, made read-only:
        // three mappings in a row.
        unsafe {
            mprotect(
                base.cast::<u8>().add(page).cast(),
                page,
                MprotectFlags::READ,
            )
        }
        .expect("mprotect");
        let start = base as u64;
        let end = start + 3 * page as u64;
        let query = MapsQuery::open(Process::Current).expect("maps");
        let queried = query.lines_overlapping(start + 1, end - 1);
        let text = read(Process::Current).expect("maps text");
        // SAFETY: the mapping made above, no longer used.
        unsafe { munmap(base, 3 * page) }.expect("munmap");
        let queried = match queried {
            Ok(lines) => lines,
            // Before Linux 6.11: no PROCMAP_QUERY, nothing to compare.
            Err(Errno::NOTTY | Errno::INVAL) => return,
            Err(errno) => panic!("PROCMAP_QUERY: {errno}"),
        };
        let from_text: Vec<String> = text
            .lines()
            .filter(|line| MapsEntry::parse(line).is_some_and(|entry| entry.overlaps(start, end)))
            .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        let from_query: Vec<String> = queried
            .lines()
            .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        assert_eq!(from_query.len(), 3, "{queried}");
        assert_eq!(from_query, from_text);
        assert!(from_query[1].contains(" r--p "), "{queried}");
    }

    #[test]
    fn overlap_is_of_half_open_ranges() {
        let entry = MapsEntry::parse("1000-3000 rw-p 00000000 00:00 0").expect("a line");
        assert!(entry.overlaps(0x2000, 0x4000));
        assert!(entry.overlaps(0, 0x1001));
        assert!(!entry.overlaps(0x3000, 0x4000));
        assert!(!entry.overlaps(0, 0x1000));
    }

    #[test]
    fn this_process_maps_parse() {
        let text = read(Process::Current).expect("own maps");
        assert!(text.lines().all(|line| MapsEntry::parse(line).is_some()));
    }

    #[test]
    fn a_query_agrees_with_the_text() {
        let Ok(query) = MapsQuery::open(Process::Current) else {
            return;
        };
        let text = read(Process::Current).expect("our maps");
        let first = text.lines().find_map(MapsEntry::parse).expect("a mapping");
        match query.covering_or_next(first.start) {
            Ok(found) => {
                assert_eq!(found, Some((first.start, first.end)));
                assert!(!query.is_free(first.start, first.end).expect("asked"));
                // Below every mapping: free up to the first one.
                if first.start > 0x1000 {
                    assert!(query.is_free(0x1000, first.start).expect("asked"));
                }
            }
            // Before Linux 6.11: no such ioctl.
            Err(errno) => assert!(matches!(errno, Errno::NOTTY | Errno::INVAL), "{errno}"),
        }
    }
}
