//! The buffers of a ring's legacy provided-buffer groups
//! (`IORING_OP_PROVIDE_BUFFERS`) as `ringplan_walk_fds` answers them: each
//! group's list read in ranges of [`records::LEGACY_BUFFERS_PER_CHUNK`].
//! The first range's answer walks the whole list, for its length and hash,
//! and marks with a checkpoint (node, the node before it, the hash so far)
//! where each later range starts; the later ranges, asked together in the
//! next round, each walk only their own nodes from their checkpoint, so a
//! group costs two reads of each node however long its list. A later
//! range whose start no longer follows its checkpoint's node, or that does
//! not end at the next checkpoint (node and hash) or, the last, at the head
//! with the whole list's hash, means the list changed between the answers;
//! that, or a list that was not walked to its end, leaves the group's
//! buffers unknown rather than passing a part, or parts of different lists,
//! for the whole.

use std::collections::BTreeMap;

use ringplan_image::LegacyBuffer;

use super::super::error::{BpfError, Pass};
use super::super::layout;
use super::super::records::{
    self, ChunkStatus, LegacyBufferRecord, LegacyCheckpointRecord, LegacyListRecord,
    LegacyListState, LegacyStart,
};
use super::super::requests::{Planned, Request, Want};
use super::{Reading, RingFacts};

/// One legacy group's list as its answers fill it.
#[derive(Debug)]
pub(in crate::bpf) struct LegacyList {
    /// The whole list's length and hash, and its head (`&bl->buf_list`),
    /// from the first answer.
    length: u32,
    fingerprint: u64,
    head: u64,
    /// Where each later range starts, by its start position (from the
    /// first answer).
    checkpoints: BTreeMap<u32, LegacyCheckpointRecord>,
    /// By position from the head.
    buffers: Vec<Option<LegacyBuffer>>,
    /// Why the buffers are unknown, once they are.
    unknown: Option<String>,
}

impl LegacyList {
    /// Where a range that starts at `position` must end: the next
    /// checkpoint's node and hash, or, for the last range, the head and
    /// the whole list's hash.
    fn end_of_range_at(&self, position: u32) -> (u64, u64, LegacyListState) {
        match self.checkpoints.get(&position) {
            Some(point) => (point.node, point.fingerprint, LegacyListState::Part),
            None => (self.head, self.fingerprint, LegacyListState::Whole),
        }
    }
}

impl RingFacts {
    /// The bgids of the ring's legacy groups, ascending (as the group
    /// chunks found them).
    fn legacy_bgids(&self) -> impl Iterator<Item = u16> + '_ {
        self.pbuf_groups
            .iter()
            .flatten()
            .filter(|group| !group.is_ring)
            .map(|group| group.bgid)
    }

    /// The first range of every legacy group not yet asked: its answer
    /// gives the list's length, which sizes the rest.
    pub(in crate::bpf) fn legacy_first_ranges(&self) -> Vec<Planned> {
        self.legacy_bgids()
            .filter(|bgid| !self.legacy.contains_key(bgid))
            .map(|bgid| legacy_range(self.header.ctx, bgid, 0, LegacyStart::default()))
            .collect()
    }

    /// The ranges after the first of every legacy group whose first
    /// answer came back whole, not yet filled: one per checkpoint, each
    /// carrying it back to the walk.
    pub(in crate::bpf) fn legacy_rest_ranges(&self) -> Vec<Planned> {
        let mut ranges = Vec::new();
        for (&bgid, list) in &self.legacy {
            if list.unknown.is_some() {
                continue;
            }
            for (&start, point) in &list.checkpoints {
                if list
                    .buffers
                    .get(start as usize)
                    .is_some_and(Option::is_none)
                {
                    let from = LegacyStart {
                        head: list.head,
                        node: point.node,
                        prev: point.prev,
                        fingerprint: point.fingerprint,
                    };
                    ranges.push(legacy_range(self.header.ctx, bgid, start, from));
                }
            }
        }
        ranges
    }

    /// Group `bgid`'s buffers in list order, or why they are unknown.
    pub(in crate::bpf) fn legacy_buffers(&self, bgid: u16) -> Result<Vec<LegacyBuffer>, String> {
        let Some(list) = self.legacy.get(&bgid) else {
            return Err("no answer came back for its list".to_owned());
        };
        if let Some(why) = &list.unknown {
            return Err(why.clone());
        }
        let buffers = list
            .buffers
            .iter()
            .copied()
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| "not every range of its list came back".to_owned())?;
        // The kernel lets a program provide a bid twice; the image holds
        // each once (its validation refuses a repeat), so such a group is
        // not captured rather than failing the whole dump.
        let mut seen = vec![false; records::MAX_LEGACY_BUFFERS as usize];
        for buffer in &buffers {
            if let Some(slot) = seen.get_mut(usize::from(buffer.bid)) {
                if *slot {
                    return Err(format!(
                        "its list holds bid {} more than once, which the image cannot hold",
                        buffer.bid
                    ));
                }
                *slot = true;
            }
        }
        Ok(buffers)
    }
}

fn legacy_range(ring: u64, bgid: u16, start: u32, from: LegacyStart) -> Planned {
    Planned {
        ring,
        want: Want::LegacyBuffers {
            bgid,
            start,
            count: records::LEGACY_BUFFERS_PER_CHUNK,
            from,
        },
    }
}

impl Reading {
    /// One legacy-buffers answer: the list record and the buffer (and, for
    /// the first range, checkpoint) records that came before it. A
    /// re-shown answer finds its range filled and changes nothing (its
    /// hash is the same).
    pub(super) fn add_legacy_list(
        &mut self,
        pid: u32,
        list: &LegacyListRecord,
        request: Option<&Request>,
        buffers: &[LegacyBufferRecord],
        checkpoints: &[LegacyCheckpointRecord],
    ) -> Result<(), BpfError> {
        let Some((request, bgid, start, from)) = request.and_then(|request| match request.want {
            Want::LegacyBuffers {
                bgid, start, from, ..
            } => Some((request, bgid, start, from)),
            _ => None,
        }) else {
            // A request of an earlier, failed read that survived: ignore it.
            return Ok(());
        };
        match list.status {
            ChunkStatus::Ok => {}
            ChunkStatus::UnknownLayout => return Err(layout::not_recognised()),
            ChunkStatus::OtherRing | ChunkStatus::OtherProgram => {
                return Err(BpfError::TargetChanged {
                    pid,
                    what: format!(
                        "the fd copied for ring {:#x} now refers to something else",
                        request.expected_ctx
                    ),
                })
            }
        }
        let mismatch = |what: &str| BpfError::Inconsistent {
            pass: Pass::Chunks,
            reason: format!(
                "the buffers of legacy group {bgid} read for fd {}: {what}",
                list.fd
            ),
        };
        if list.ctx != request.expected_ctx || list.bgid != bgid || list.start != start {
            return Err(mismatch("the answer does not match its request"));
        }
        if list.written as usize != buffers.len() || buffers.iter().any(|b| b.bgid != bgid) {
            return Err(mismatch("its buffer records do not match its list record"));
        }
        if checkpoints.iter().any(|point| point.bgid != bgid) {
            return Err(mismatch("its checkpoints do not match its list record"));
        }
        self.legacy_nodes_visited += u64::from(list.visited);
        let facts = self.ring_of_chunk(list.ctx, "a legacy buffer list")?;
        let unknown = match list.state {
            LegacyListState::Whole if list.length > records::MAX_LEGACY_BUFFERS => {
                return Err(mismatch("a whole list longer than the walk's bound"))
            }
            LegacyListState::Part if start == 0 => {
                return Err(mismatch("the walk of the whole list stopped part way"))
            }
            LegacyListState::Whole | LegacyListState::Part => None,
            LegacyListState::TooLong => Some(format!(
                "its list is longer than {} buffers (a group holds at most that many distinct bids), \
                 the most the dump walks",
                records::MAX_LEGACY_BUFFERS
            )),
            LegacyListState::Broken => Some("its list changed while it was read".to_owned()),
            LegacyListState::Moved => {
                Some("its list changed between the reads of its parts".to_owned())
            }
            LegacyListState::NotLegacy => {
                Some("it was no longer a legacy group when its buffers were read".to_owned())
            }
        };
        let entry = if start == 0 {
            let first = facts.legacy.entry(bgid).or_insert_with(|| LegacyList {
                length: list.length,
                fingerprint: list.fingerprint,
                head: list.head,
                checkpoints: checkpoints
                    .iter()
                    .map(|point| (point.index, *point))
                    .collect(),
                buffers: vec![None; list.length as usize],
                unknown: None,
            });
            if first.unknown.is_none()
                && unknown.is_none()
                && (first.length != list.length || first.fingerprint != list.fingerprint)
            {
                first.unknown = Some("its list changed between the reads of its parts".to_owned());
            }
            first
        } else {
            match facts.legacy.get_mut(&bgid) {
                Some(entry) => entry,
                None => return Err(mismatch("a later range asked before the first")),
            }
        };
        if entry.unknown.is_some() {
            return Ok(());
        }
        if let Some(why) = unknown {
            entry.unknown = Some(why);
            return Ok(());
        }
        let range_end = start.saturating_add(records::LEGACY_BUFFERS_PER_CHUNK);
        if start == 0 {
            // The walk writes a checkpoint at every multiple of the range
            // size inside the list, and nothing else.
            let expected: Vec<u32> = (1..)
                .map(|k: u32| k.saturating_mul(records::LEGACY_BUFFERS_PER_CHUNK))
                .take_while(|&position| position < entry.length)
                .collect();
            if !entry.checkpoints.keys().copied().eq(expected) {
                return Err(mismatch(
                    "its checkpoints are not one per later range of the list",
                ));
            }
        } else {
            // The range must end where the first walk saw its end: the
            // next checkpoint, or the head with the whole list's hash.
            if entry
                .checkpoints
                .get(&start)
                .map(|point| (point.node, point.prev))
                != Some((from.node, from.prev))
            {
                return Err(mismatch(
                    "a later range asked from a point the first walk did not give",
                ));
            }
            let (node, fingerprint, state) = entry.end_of_range_at(range_end);
            let end = range_end.min(entry.length);
            if list.state != state
                || list.next != node
                || list.fingerprint != fingerprint
                || list.length != end
            {
                entry.unknown = Some("its list changed between the reads of its parts".to_owned());
                return Ok(());
            }
        }
        let expected = range_end.min(entry.length).saturating_sub(start);
        if list.written != expected {
            return Err(mismatch(&format!(
                "{} buffers written from position {start} of {}, {expected} expected",
                list.written, entry.length
            )));
        }
        for record in buffers {
            let in_range = record.index >= start && record.index - start < list.written;
            match entry.buffers.get_mut(record.index as usize) {
                Some(slot) if in_range => *slot = Some(record.buffer),
                _ => return Err(mismatch("a buffer outside the range asked")),
            }
        }
        Ok(())
    }
}

/// The legacy groups' lists of one ring, by bgid.
pub(in crate::bpf) type LegacyLists = BTreeMap<u16, LegacyList>;
