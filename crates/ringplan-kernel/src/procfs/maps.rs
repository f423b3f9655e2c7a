//! `/proc/PID/maps`: one line per mapping,
//! `START-END PERMS OFFSET MAJOR:MINOR INODE [PATH]`, addresses and offset
//! in hex. An io_uring region's path is [`crate::abi::RING_FILE_PATH`] and its
//! offset the region's mmap offset.

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
}
