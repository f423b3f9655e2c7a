//! The continuity part of a ring's fdinfo on Linux 6.18: its positions,
//! the SQEs and CQEs the kernel lists between them, and the CQ overflow
//! list. For tests and tools that compare a dump with the kernel's own
//! view:
//!
//! ```text
//! SqHead: 5002
//! SqTail: 5005
//! CachedSqHead: 5002
//! CqHead: 5000
//! CqTail: 5002
//! CachedCqTail: 5002
//! SQEs: 3
//!     2: opcode:NOP, fd:-1, flags:0, off:0, addr:0x0, rw_flags:0x0, buf_index:0 user_data:161
//! CQEs: 2
//!     8: user_data:193, res:0, flag:0
//! CqOverflowList:
//!   user_data=264, res=0, flags=0
//! ```
//!
//! A ring without an SQ array (`IORING_SETUP_NO_SQARRAY`) gets the `SQEs:`
//! count without rows. 6.1's fdinfo has the same rows under other names
//! (`SqHead` but no `CachedSqHead`): [`RingContinuity::parse`] reads
//! 6.18's only and says which line it missed.

use super::{lines, Line};

/// What a ring's fdinfo says of its positions and pending entries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RingContinuity {
    pub sq_head: u32,
    pub sq_tail: u32,
    pub cached_sq_head: u32,
    pub cq_head: u32,
    pub cq_tail: u32,
    pub cached_cq_tail: u32,
    /// The `SQEs:` count (rows may be missing: see the module doc).
    pub sqe_count: u32,
    /// `SQEs:` rows: (SQ index, user_data).
    pub sqes: Vec<(u32, u64)>,
    /// `CQEs:` rows.
    pub cqes: Vec<FdinfoCqe>,
    /// `CqOverflowList:` rows, in order (index 0, 1, ...).
    pub overflow: Vec<FdinfoCqe>,
}

/// One CQE row: `index: user_data:U, res:R, flag:F` (overflow rows:
/// `user_data=U, res=R, flags=F`, indexed by their place in the list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdinfoCqe {
    pub index: u32,
    pub user_data: u64,
    pub res: i32,
    pub flags: u32,
}

impl RingContinuity {
    /// Parses `text`, a ring's whole fdinfo; `Err` names the first field
    /// or row it could not read.
    pub fn parse(text: &[u8]) -> Result<RingContinuity, String> {
        let mut parsed = RingContinuity::default();
        let mut seen = 0u32;
        for (number, line) in lines(text) {
            match line {
                Line::Field { key, value } => {
                    let slot = match key {
                        b"SqHead" => &mut parsed.sq_head,
                        b"SqTail" => &mut parsed.sq_tail,
                        b"CachedSqHead" => &mut parsed.cached_sq_head,
                        b"CqHead" => &mut parsed.cq_head,
                        b"CqTail" => &mut parsed.cq_tail,
                        b"CachedCqTail" => &mut parsed.cached_cq_tail,
                        b"SQEs" => &mut parsed.sqe_count,
                        _ => continue,
                    };
                    *slot = number_of(value).ok_or_else(|| {
                        format!("line {number}: {}", String::from_utf8_lossy(key))
                    })?;
                    seen += 1;
                }
                Line::Row {
                    table: b"SQEs",
                    slot,
                    value,
                } => {
                    let index = number_of(slot).ok_or(format!("line {number}: SQE index"))?;
                    let user_data = value_after(value, "user_data:")
                        .ok_or(format!("line {number}: SQE user_data"))?;
                    parsed.sqes.push((index, user_data));
                }
                Line::Row {
                    table: b"CQEs",
                    slot,
                    value,
                } => {
                    let index = number_of(slot).ok_or(format!("line {number}: CQE index"))?;
                    let cqe = cqe_of(index, value, "user_data:", "res:", "flag:")
                        .ok_or(format!("line {number}: CQE"))?;
                    parsed.cqes.push(cqe);
                }
                _ => {}
            }
        }
        if seen != 7 {
            return Err("not 6.18's fdinfo of a ring (a position field is missing)".to_owned());
        }
        // Overflow rows have no colon: read them as text after their field.
        let text = String::from_utf8_lossy(text);
        let mut in_overflow = false;
        for line in text.lines() {
            if line.starts_with("CqOverflowList:") {
                in_overflow = true;
                continue;
            }
            if !in_overflow {
                continue;
            }
            if !line.starts_with(char::is_whitespace) {
                break;
            }
            let index = u32::try_from(parsed.overflow.len()).unwrap_or(u32::MAX);
            let cqe = cqe_of(
                index,
                line.trim().as_bytes(),
                "user_data=",
                "res=",
                "flags=",
            )
            .ok_or(format!("overflow row {line:?}"))?;
            parsed.overflow.push(cqe);
        }
        Ok(parsed)
    }
}

fn number_of<T: std::str::FromStr>(bytes: &[u8]) -> Option<T> {
    std::str::from_utf8(bytes).ok()?.trim().parse().ok()
}

/// The number after `key` in a `, `-separated row (also after a space).
fn value_after<T: std::str::FromStr>(row: &[u8], key: &str) -> Option<T> {
    let row = std::str::from_utf8(row).ok()?;
    let start = row.find(key)? + key.len();
    let rest = &row[start..];
    let end = rest.find([',', ' ']).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn cqe_of(index: u32, row: &[u8], user_data: &str, res: &str, flags: &str) -> Option<FdinfoCqe> {
    Some(FdinfoCqe {
        index,
        user_data: value_after(row, user_data)?,
        res: value_after(row, res)?,
        flags: value_after(row, flags)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "pos:\t0\nflags:\t02000002\nSqMask:\t0x7\nSqHead:\t5002\nSqTail:\t5005\nCachedSqHead:\t5002\n\
CqMask:\t0xf\nCqHead:\t5000\nCqTail:\t5002\nCachedCqTail:\t5002\nSQEs:\t1\n\
    2: opcode:NOP, fd:-1, flags:0, off:0, addr:0x0, rw_flags:0x0, buf_index:0 user_data:161\n\
CQEs:\t1\n    8: user_data:193, res:-11, flag:2, extra1:0, extra2:0\n\nSqThread:\t-1\n\
CqOverflowList:\n  user_data=264, res=0, flags=0\n  user_data=265, res=1, flags=4\nNAPI:\tdisabled\n";

    #[test]
    fn reads_positions_entries_and_the_overflow_list() {
        let parsed = RingContinuity::parse(TEXT.as_bytes()).expect("parses");
        assert_eq!(
            (parsed.sq_head, parsed.sq_tail, parsed.cached_sq_head),
            (5002, 5005, 5002)
        );
        assert_eq!(
            (parsed.cq_head, parsed.cq_tail, parsed.cached_cq_tail),
            (5000, 5002, 5002)
        );
        assert_eq!(parsed.sqe_count, 1);
        assert_eq!(parsed.sqes, vec![(2, 161)]);
        assert_eq!(
            parsed.cqes,
            vec![FdinfoCqe {
                index: 8,
                user_data: 193,
                res: -11,
                flags: 2
            }]
        );
        assert_eq!(parsed.overflow.len(), 2);
        assert_eq!(parsed.overflow[1].flags, 4);
    }

    #[test]
    fn a_missing_field_is_an_error() {
        let text = TEXT.replace("CachedSqHead:\t5002\n", "");
        assert!(RingContinuity::parse(text.as_bytes()).is_err());
    }
}
