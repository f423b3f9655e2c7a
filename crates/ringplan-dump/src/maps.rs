//! Where the target has io_uring regions mapped, from `/proc/PID/maps`.

use std::collections::HashMap;

use ringplan_image::{RingMapping, RingRegion};

/// The name `/proc/PID/maps` shows for a mapping of an io_uring fd.
const IO_URING_MAPPING_NAME: &str = "anon_inode:[io_uring]";

/// Why the maps could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MapsError {
    #[error("reading /proc/{pid}/maps: {source}")]
    Read { pid: u32, source: std::io::Error },
    #[error("/proc/{pid}/maps line {line}: cannot parse {text:?}")]
    Parse { pid: u32, line: usize, text: String },
}

/// Ring mappings of `pid`, keyed by the inode number of the ring's file.
pub fn ring_mappings(pid: u32) -> Result<HashMap<u64, Vec<RingMapping>>, MapsError> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .map_err(|source| MapsError::Read { pid, source })?;
    parse_ring_mappings(&text).map_err(|(line, text)| MapsError::Parse { pid, line, text })
}

/// Parses maps text; on failure returns the 1-based line number and line.
fn parse_ring_mappings(text: &str) -> Result<HashMap<u64, Vec<RingMapping>>, (usize, String)> {
    let mut by_inode: HashMap<u64, Vec<RingMapping>> = HashMap::new();
    for (number, line) in text.lines().enumerate() {
        // Only lines naming an io_uring fd matter; skip the rest unparsed so
        // an odd line elsewhere cannot fail the dump.
        if !line.trim_end().ends_with(IO_URING_MAPPING_NAME) {
            continue;
        }
        let parsed = parse_line(line).ok_or_else(|| (number + 1, line.to_owned()))?;
        if let Some((inode, mapping)) = parsed {
            by_inode.entry(inode).or_default().push(mapping);
        }
    }
    for mappings in by_inode.values_mut() {
        mappings.sort_by_key(|mapping| (mapping.region, mapping.addr));
    }
    Ok(by_inode)
}

/// `start-end perms offset dev inode name`; `Some(None)` for a mapping at an
/// offset that selects no ring region.
fn parse_line(line: &str) -> Option<Option<(u64, RingMapping)>> {
    let mut fields = line.split_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let _perms = fields.next()?;
    let offset = u64::from_str_radix(fields.next()?, 16).ok()?;
    let _device = fields.next()?;
    let inode: u64 = fields.next()?.parse().ok()?;
    let start = u64::from_str_radix(start, 16).ok()?;
    let end = u64::from_str_radix(end, 16).ok()?;
    let len = end.checked_sub(start)?;
    Some(RingRegion::from_mmap_offset(offset).map(|region| {
        (
            inode,
            RingMapping {
                region,
                addr: start,
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
