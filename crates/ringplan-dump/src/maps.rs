//! Where the target has io_uring regions mapped, from `/proc/PID/maps`
//! (read and parsed by [`ringplan_kernel::procfs::maps`]): each ring's
//! mappings, matched to the ring by the inode number of its anonymous
//! inode, the region told by the mapping's offset.

use std::collections::HashMap;

use ringplan_image::{RingMapping, RingRegion};
use ringplan_kernel::abi::RING_FILE_PATH;
use ringplan_kernel::procfs::maps::{self, MapsEntry};
use ringplan_kernel::procfs::Process;

/// Why the maps could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MapsError {
    /// The cause is in the message, so it is not also a `source`.
    #[error("reading /proc/{pid}/maps: {cause}")]
    Read { pid: u32, cause: std::io::Error },
    #[error("/proc/{pid}/maps line {line}: cannot parse {text:?}")]
    Parse { pid: u32, line: usize, text: String },
}

/// Ring mappings of `pid`, keyed by the inode number of the ring's file.
pub fn ring_mappings(pid: u32) -> Result<HashMap<u64, Vec<RingMapping>>, MapsError> {
    let text = maps::read(Process::Pid(pid)).map_err(|error| MapsError::Read {
        pid,
        cause: error.into_io_error(),
    })?;
    parse_ring_mappings(&text).map_err(|(line, text)| MapsError::Parse { pid, line, text })
}

/// Parses maps text; on failure returns the 1-based line number and line.
fn parse_ring_mappings(text: &str) -> Result<HashMap<u64, Vec<RingMapping>>, (usize, String)> {
    let mut by_inode: HashMap<u64, Vec<RingMapping>> = HashMap::new();
    for (number, line) in text.lines().enumerate() {
        // Only lines naming an io_uring fd matter; skip the rest unparsed so
        // an odd line elsewhere cannot fail the dump.
        if !line.trim_end().ends_with(RING_FILE_PATH) {
            continue;
        }
        let parsed = ring_mapping(line).ok_or_else(|| (number + 1, line.to_owned()))?;
        if let Some((inode, mapping)) = parsed {
            by_inode.entry(inode).or_default().push(mapping);
        }
    }
    for mappings in by_inode.values_mut() {
        mappings.sort_by_key(|mapping| (mapping.region, mapping.addr));
    }
    Ok(by_inode)
}

/// The ring's inode and the mapping of an io_uring maps line; `Some(None)`
/// for a mapping at an offset that selects no ring region.
fn ring_mapping(line: &str) -> Option<Option<(u64, RingMapping)>> {
    let entry = MapsEntry::parse(line)?;
    let len = entry.end.checked_sub(entry.start)?;
    Some(RingRegion::from_mmap_offset(entry.offset).map(|region| {
        (
            entry.inode,
            RingMapping {
                region,
                addr: entry.start,
                len,
            },
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ring_regions_and_skips_other_lines() {
        let text = "\
55d0c0a00000-55d0c0a21000 rw-p 00000000 00:00 0                          [heap]
7f1c2e3fe000-7f1c2e3ff000 rw-s 10000000 00:10 4242                       anon_inode:[io_uring]
7f1c2e3ff000-7f1c2e400000 rw-s 00000000 00:10 4242                       anon_inode:[io_uring]
7f1c2e400000-7f1c2e401000 rw-s 00000000 00:10 4243                       anon_inode:[io_uring]
7ffd1c000000-7ffd1c021000 rw-p 00000000 00:00 0                          [stack]
";
        let maps = parse_ring_mappings(text).expect("valid maps text");
        assert_eq!(
            maps[&4242],
            vec![
                RingMapping {
                    region: RingRegion::SqRing,
                    addr: 0x7f1c2e3ff000,
                    len: 4096
                },
                RingMapping {
                    region: RingRegion::Sqes,
                    addr: 0x7f1c2e3fe000,
                    len: 4096
                },
            ]
        );
        assert_eq!(maps[&4243].len(), 1);
        assert_eq!(maps.len(), 2);
    }

    #[test]
    fn names_a_malformed_io_uring_line() {
        let text = "garbage anon_inode:[io_uring]\n";
        assert_eq!(
            parse_ring_mappings(text),
            Err((1, "garbage anon_inode:[io_uring]".to_owned()))
        );
    }
}
