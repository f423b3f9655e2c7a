//! The contents of a ring's legacy provided-buffer groups
//! (`IORING_OP_PROVIDE_BUFFERS`) in the image: each group's buffers in the
//! kernel's order, kept as runs of consecutive buffers so that a group of
//! thousands provided by a few SQEs stays a few entries.

use serde::{Deserialize, Serialize};

/// A legacy provided-buffer group: its bgid and, when the dump captured
/// them (version 5), its buffers in the kernel's list order (the kernel
/// takes from the front). On the wire a group whose buffers were not
/// captured is its bare bgid, as every group was before version 5.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "LegacyGroupWire", into = "LegacyGroupWire")]
pub struct LegacyBufferGroup {
    /// The buffer group id SQEs name (`buf_group`).
    pub bgid: u16,
    /// The group's buffers as runs, in list order; `None` when not
    /// captured (images before version 5, a list longer than the dump's
    /// bound, or one that changed while it was read). `Some(empty)`: a
    /// group whose buffers were all taken, which the kernel keeps.
    pub buffers: Option<Vec<LegacyBufferRun>>,
}

/// `count` buffers of `len` bytes at consecutive addresses from `addr`
/// with consecutive bids from `bid`: what one `IORING_OP_PROVIDE_BUFFERS`
/// adds, and what is left of it after the kernel took some from its front.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegacyBufferRun {
    /// The first buffer's address.
    pub addr: u64,
    /// Every buffer's length in bytes.
    pub len: u32,
    /// The first buffer's bid.
    pub bid: u16,
    /// How many buffers: at least 1.
    pub count: u32,
}

/// One buffer of a legacy group, as the kernel holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegacyBuffer {
    pub addr: u64,
    pub len: u32,
    pub bid: u16,
}

impl LegacyBufferRun {
    /// The run's buffers in order. A run the validation would refuse
    /// (addresses or bids past their ends) yields what fits.
    pub fn buffers(&self) -> impl Iterator<Item = LegacyBuffer> + '_ {
        (0..self.count).map_while(move |i| {
            let bid = u16::try_from(u32::from(self.bid).checked_add(i)?).ok()?;
            let addr = self
                .addr
                .checked_add(u64::from(i).checked_mul(u64::from(self.len))?)?;
            Some(LegacyBuffer {
                addr,
                len: self.len,
                bid,
            })
        })
    }

    /// Whether `buffer` continues this run.
    fn continues_with(&self, buffer: &LegacyBuffer) -> bool {
        buffer.len == self.len
            && u32::from(self.bid).checked_add(self.count) == Some(u32::from(buffer.bid))
            && u64::from(self.count)
                .checked_mul(u64::from(self.len))
                .and_then(|offset| self.addr.checked_add(offset))
                == Some(buffer.addr)
    }
}

impl LegacyBufferGroup {
    /// A captured group from its buffers in list order, folded into runs.
    pub fn from_buffers(bgid: u16, buffers: impl IntoIterator<Item = LegacyBuffer>) -> Self {
        let mut runs: Vec<LegacyBufferRun> = Vec::new();
        for buffer in buffers {
            match runs.last_mut() {
                Some(run) if run.continues_with(&buffer) => run.count += 1,
                _ => runs.push(LegacyBufferRun {
                    addr: buffer.addr,
                    len: buffer.len,
                    bid: buffer.bid,
                    count: 1,
                }),
            }
        }
        LegacyBufferGroup {
            bgid,
            buffers: Some(runs),
        }
    }

    /// A group whose buffers were not captured.
    pub fn not_captured(bgid: u16) -> Self {
        LegacyBufferGroup {
            bgid,
            buffers: None,
        }
    }

    /// The group's buffers in list order (none when not captured).
    pub fn buffers(&self) -> impl Iterator<Item = LegacyBuffer> + '_ {
        self.buffers
            .iter()
            .flatten()
            .flat_map(LegacyBufferRun::buffers)
    }

    /// How many buffers the group holds (0 when not captured).
    pub fn buffer_count(&self) -> u64 {
        self.buffers
            .iter()
            .flatten()
            .map(|run| u64::from(run.count))
            .sum()
    }
}

/// A group on the wire: a bare bgid (not captured) or a map.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum LegacyGroupWire {
    NotCaptured(u16),
    Captured {
        bgid: u16,
        buffers: Vec<LegacyBufferRun>,
    },
}

impl From<LegacyGroupWire> for LegacyBufferGroup {
    fn from(wire: LegacyGroupWire) -> Self {
        match wire {
            LegacyGroupWire::NotCaptured(bgid) => LegacyBufferGroup::not_captured(bgid),
            LegacyGroupWire::Captured { bgid, buffers } => LegacyBufferGroup {
                bgid,
                buffers: Some(buffers),
            },
        }
    }
}

impl From<LegacyBufferGroup> for LegacyGroupWire {
    fn from(group: LegacyBufferGroup) -> Self {
        match group.buffers {
            None => LegacyGroupWire::NotCaptured(group.bgid),
            Some(buffers) => LegacyGroupWire::Captured {
                bgid: group.bgid,
                buffers,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buffer(addr: u64, len: u32, bid: u16) -> LegacyBuffer {
        LegacyBuffer { addr, len, bid }
    }

    #[test]
    fn consecutive_buffers_fold_into_runs_and_unfold_in_order() {
        let list = vec![
            buffer(0x1040, 64, 1),
            buffer(0x1080, 64, 2),
            buffer(0x10c0, 64, 3),
            // A second provide: another length.
            buffer(0x9000, 128, 4),
            // Back to the first run's addresses but not its bids.
            buffer(0x1000, 64, 0),
        ];
        let group = LegacyBufferGroup::from_buffers(7, list.clone());
        let runs = group.buffers.clone().unwrap_or_default();
        assert_eq!(runs.len(), 3);
        assert_eq!(runs[0].count, 3);
        assert_eq!(group.buffers().collect::<Vec<_>>(), list);
        assert_eq!(group.buffer_count(), 5);
    }

    #[test]
    fn a_bare_bgid_reads_as_not_captured_and_writes_back_bare() {
        let bytes = serde_json::to_vec(&serde_json::json!([5, {"bgid": 6, "buffers": []}]))
            .unwrap_or_default();
        let groups: Vec<LegacyBufferGroup> = serde_json::from_slice(&bytes).unwrap_or_default();
        assert_eq!(
            groups,
            vec![
                LegacyBufferGroup::not_captured(5),
                LegacyBufferGroup {
                    bgid: 6,
                    buffers: Some(Vec::new())
                }
            ]
        );
        assert_eq!(
            serde_json::to_value(&groups).ok(),
            Some(serde_json::json!([5, {"bgid": 6, "buffers": []}]))
        );
        // And on the image's own wire, CBOR.
        let mut cbor = Vec::new();
        assert!(ciborium::into_writer(&groups, &mut cbor).is_ok());
        let back: Vec<LegacyBufferGroup> = ciborium::from_reader(&cbor[..]).unwrap_or_default();
        assert_eq!(back, groups);
    }
}
