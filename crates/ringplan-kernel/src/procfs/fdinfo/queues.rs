//! The positions and pending entries in a ring's fdinfo (Linux 6.18):
//! `SqHead` .. `CachedCqTail`, the `SQEs:` rows (queued, from the kernel's
//! head to the tail the program wrote), the `CQEs:` rows (from the CQ head
//! to the tail) and the `CqOverflowList:` rows. The continuity tests
//! compare a restored ring with these.
//!
//! ```text
//! SqHead: 6
//! SqTail: 7
//! CachedSqHead:   6
//! CqHead: 0
//! CqTail: 4
//! CachedCqTail:   4
//! SQEs:   1
//!     2: opcode:NOP, fd:-1, flags:0, off:0, addr:0x0, rw_flags:0x0, buf_index:0 user_data:777
//! CQEs:   4
//!     0: user_data:100, res:0, flag:0
//! ...
//! CqOverflowList:
//!   user_data=104, res=0, flags=0
//! ```
//!
//! An SQE row starts with the SQE's index (through the SQ array where the
//! ring has one); a CQE row with its slot. CQE32 rings add `extra1`,
//! `extra2` to CQE rows; `flag`/`flags` are hex.

use std::path::Path;

use super::ProcfsError;

/// A ring's positions and pending entries as its fdinfo shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RingQueues {
    /// `SqHead`: the SQ head in the ring's memory.
    pub sq_head: u32,
    /// `SqTail`: the SQ tail in the ring's memory.
    pub sq_tail: u32,
    /// `CachedSqHead`: the kernel's own `cached_sq_head`.
    pub cached_sq_head: u32,
    /// `CqHead`: the CQ head in the ring's memory.
    pub cq_head: u32,
    /// `CqTail`: the CQ tail in the ring's memory.
    pub cq_tail: u32,
    /// `CachedCqTail`: the kernel's own `cached_cq_tail`.
    pub cached_cq_tail: u32,
    /// The `SQEs:` count. The rows may be fewer: 6.18 prints none for a
    /// ring without an SQ array (`IORING_SETUP_NO_SQARRAY`).
    pub sqe_count: u32,
    /// The `SQEs:` rows, in order.
    pub sqes: Vec<SqeRow>,
    /// The `CQEs:` rows, in order.
    pub cqes: Vec<CqeRow>,
    /// The `CqOverflowList:` rows, in order.
    pub overflow: Vec<CqeRow>,
}

/// One `SQEs:` row: the SQE index and the fields the kernel prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqeRow {
    /// The SQE's index in the SQE array.
    pub index: u32,
    /// The opcode's name as the kernel prints it (`NOP`, `READ`, ...).
    pub opcode: String,
    pub fd: i32,
    pub flags: u32,
    pub off: u64,
    pub addr: u64,
    pub user_data: u64,
}

/// One `CQEs:` or `CqOverflowList:` row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CqeRow {
    /// The slot in the CQ ring (`None` for an overflow row).
    pub slot: Option<u32>,
    pub user_data: u64,
    pub res: i32,
    pub flags: u32,
    /// `extra1`, `extra2` of a CQE32 ring's CQE row.
    pub extra: Option<[u64; 2]>,
}

impl RingQueues {
    /// Parses the queue part of a ring's fdinfo `text` read from `path`.
    /// A ring whose part the kernel did not print (its lock was taken) is
    /// [`ProcfsError::NoRingState`].
    pub fn parse(path: &Path, text: &[u8]) -> Result<RingQueues, ProcfsError> {
        let text = String::from_utf8_lossy(text);
        let mut queues = RingQueues::default();
        let mut seen = 0u8;
        let mut table = "";
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let malformed = |problem: String| ProcfsError::malformed(path, number, problem);
            if !line.starts_with(char::is_whitespace) {
                let Some((key, value)) = line.split_once(':') else {
                    table = "";
                    continue;
                };
                table = key;
                let value = value.trim();
                if key == "SQEs" {
                    queues.sqe_count = value
                        .parse()
                        .map_err(|_| malformed(format!("bad SQEs count {value:?}")))?;
                    continue;
                }
                let position = |bit: u8| -> Result<(u32, u8), ProcfsError> {
                    let parsed = value
                        .parse()
                        .map_err(|_| malformed(format!("bad {key} {value:?}")))?;
                    Ok((parsed, bit))
                };
                let (value, bit) = match key {
                    "SqHead" => position(1)?,
                    "SqTail" => position(2)?,
                    "CachedSqHead" => position(4)?,
                    "CqHead" => position(8)?,
                    "CqTail" => position(16)?,
                    "CachedCqTail" => position(32)?,
                    _ => continue,
                };
                let field = match bit {
                    1 => &mut queues.sq_head,
                    2 => &mut queues.sq_tail,
                    4 => &mut queues.cached_sq_head,
                    8 => &mut queues.cq_head,
                    16 => &mut queues.cq_tail,
                    _ => &mut queues.cached_cq_tail,
                };
                *field = value;
                seen |= bit;
                continue;
            }
            let row = line.trim();
            match table {
                "SQEs" => queues.sqes.push(
                    parse_sqe_row(row).ok_or_else(|| malformed(format!("bad SQEs row {row:?}")))?,
                ),
                "CQEs" => queues.cqes.push(
                    parse_cqe_row(row, true)
                        .ok_or_else(|| malformed(format!("bad CQEs row {row:?}")))?,
                ),
                "CqOverflowList" => queues.overflow.push(
                    parse_cqe_row(row, false)
                        .ok_or_else(|| malformed(format!("bad CqOverflowList row {row:?}")))?,
                ),
                _ => {}
            }
        }
        if seen != 63 {
            return Err(ProcfsError::NoRingState {
                path: path.to_owned(),
            });
        }
        Ok(queues)
    }
}

/// `key:value` or `key=value` pairs separated by `,` or spaces.
fn pairs(text: &str, separator: char) -> impl Iterator<Item = (&str, &str)> {
    text.split([',', ' '])
        .filter(|part| !part.is_empty())
        .filter_map(move |part| part.split_once(separator))
}

fn parse_sqe_row(row: &str) -> Option<SqeRow> {
    let (index, rest) = row.split_once(':')?;
    let mut sqe = SqeRow {
        index: index.trim().parse().ok()?,
        opcode: String::new(),
        fd: 0,
        flags: 0,
        off: 0,
        addr: 0,
        user_data: 0,
    };
    for (key, value) in pairs(rest, ':') {
        match key {
            "opcode" => value.clone_into(&mut sqe.opcode),
            "fd" => sqe.fd = value.parse().ok()?,
            "flags" => sqe.flags = u32::from_str_radix(value, 16).ok()?,
            "off" => sqe.off = value.parse().ok()?,
            "addr" => sqe.addr = u64::from_str_radix(value.strip_prefix("0x")?, 16).ok()?,
            "user_data" => sqe.user_data = value.parse().ok()?,
            _ => {}
        }
    }
    Some(sqe)
}

/// A CQE row (`slot: user_data:U, res:R, flag:F[, extra1:A, extra2:B]`),
/// or with `in_ring == false` an overflow row (`user_data=U, res=R, flags=F`).
fn parse_cqe_row(row: &str, in_ring: bool) -> Option<CqeRow> {
    let (slot, rest, separator) = if in_ring {
        let (slot, rest) = row.split_once(':')?;
        (Some(slot.trim().parse().ok()?), rest, ':')
    } else {
        (None, row, '=')
    };
    let mut cqe = CqeRow {
        slot,
        user_data: 0,
        res: 0,
        flags: 0,
        extra: None,
    };
    let mut fields = 0;
    let mut extra = [None, None];
    for (key, value) in pairs(rest, separator) {
        match key {
            "user_data" => cqe.user_data = value.parse().ok()?,
            "res" => cqe.res = value.parse().ok()?,
            "flag" | "flags" => cqe.flags = u32::from_str_radix(value, 16).ok()?,
            "extra1" => extra[0] = Some(value.parse().ok()?),
            "extra2" => extra[1] = Some(value.parse().ok()?),
            _ => continue,
        }
        fields += 1;
    }
    if let [Some(first), Some(second)] = extra {
        cqe.extra = Some([first, second]);
    }
    (fields >= 3).then_some(cqe)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "pos:\t0\nSqMask:\t0x3\nSqHead:\t6\nSqTail:\t7\nCachedSqHead:\t6\nCqMask:\t0x3\n\
CqHead:\t0\nCqTail:\t4\nCachedCqTail:\t4\nSQEs:\t1\n    2: opcode:NOP, fd:-1, flags:40, off:0, addr:0x10, \
rw_flags:0x0, buf_index:0 user_data:777\nCQEs:\t2\n    0: user_data:100, res:-5, flag:2\n    1: user_data:101, \
res:0, flag:0, extra1:7, extra2:8\nSqThread:\t-1\nUserFiles:\t0\nPollList:\nCqOverflowList:\n  user_data=104, \
res=0, flags=10\nNAPI:\tdisabled\n";

    #[test]
    fn reads_positions_rows_and_overflow() {
        let queues = RingQueues::parse(Path::new("x"), SAMPLE.as_bytes()).expect("parses");
        assert_eq!(
            (queues.sq_head, queues.sq_tail, queues.cached_sq_head),
            (6, 7, 6)
        );
        assert_eq!(
            (queues.cq_head, queues.cq_tail, queues.cached_cq_tail),
            (0, 4, 4)
        );
        assert_eq!(queues.sqes.len(), 1);
        assert_eq!(
            (queues.sqes[0].index, queues.sqes[0].opcode.as_str()),
            (2, "NOP")
        );
        assert_eq!(
            (
                queues.sqes[0].flags,
                queues.sqes[0].addr,
                queues.sqes[0].user_data
            ),
            (0x40, 0x10, 777)
        );
        assert_eq!(queues.cqes[0].res, -5);
        assert_eq!(queues.cqes[0].flags, 2);
        assert_eq!(queues.cqes[1].extra, Some([7, 8]));
        assert_eq!(queues.overflow.len(), 1);
        assert_eq!(queues.overflow[0].flags, 0x10);
        assert_eq!(queues.overflow[0].slot, None);
    }

    #[test]
    fn a_ring_without_its_part_is_no_ring_state() {
        let error = RingQueues::parse(Path::new("x"), b"pos:\t0\nflags:\t02\n").unwrap_err();
        assert!(matches!(error, ProcfsError::NoRingState { .. }));
    }

    #[test]
    fn a_bad_row_names_its_line() {
        let text = SAMPLE.replace("res:-5", "res:x");
        let error = RingQueues::parse(Path::new("x"), text.as_bytes()).unwrap_err();
        assert!(error.to_string().contains(":13:"), "{error}");
    }
}
