//! The buffers of a ring's legacy provided-buffer groups
//! (`IORING_OP_PROVIDE_BUFFERS`) as `ringplan_walk_fds` answers them: each
//! group's list read in ranges of [`records::LEGACY_BUFFERS_PER_CHUNK`],
//! every answer walking the whole list to its end and hashing it, so that
//! answers which disagree (the list changed between them) or a list that
//! was not walked to its end leave the group's buffers unknown rather than
//! passing a part for the whole.

use std::collections::BTreeMap;

use ringplan_image::LegacyBuffer;

use super::super::error::{BpfError, Pass};
use super::super::layout;
use super::super::records::{
    self, ChunkStatus, LegacyBufferRecord, LegacyListRecord, LegacyListState,
};
use super::super::requests::{Planned, Request, Want};
use super::{Reading, RingFacts};

/// One legacy group's list as its answers fill it.
#[derive(Debug)]
pub(in crate::bpf) struct LegacyList {
    /// The whole list's length and hash, from the first answer.
    length: u32,
    fingerprint: u64,
    /// By position from the head.
    buffers: Vec<Option<LegacyBuffer>>,
    /// Why the buffers are unknown, once they are.
    unknown: Option<String>,
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
            .map(|bgid| legacy_range(self.header.ctx, bgid, 0))
            .collect()
    }

    /// The ranges after the first of every legacy group whose first
    /// answer came back whole, not yet filled.
    pub(in crate::bpf) fn legacy_rest_ranges(&self) -> Vec<Planned> {
        let mut ranges = Vec::new();
        for (&bgid, list) in &self.legacy {
            if list.unknown.is_some() {
                continue;
            }
            let mut start = records::LEGACY_BUFFERS_PER_CHUNK;
            while start < list.length {
                if list
                    .buffers
                    .get(start as usize)
                    .is_some_and(Option::is_none)
                {
                    ranges.push(legacy_range(self.header.ctx, bgid, start));
                }
                start += records::LEGACY_BUFFERS_PER_CHUNK;
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

fn legacy_range(ring: u64, bgid: u16, start: u32) -> Planned {
    Planned {
        ring,
        want: Want::LegacyBuffers {
            bgid,
            start,
            count: records::LEGACY_BUFFERS_PER_CHUNK,
        },
    }
}

impl Reading {
    /// One legacy-buffers answer: the list record and the buffer records
    /// that came before it. A re-shown answer finds its range filled and
    /// changes nothing (its hash is the same).
    pub(super) fn add_legacy_list(
        &mut self,
        pid: u32,
        list: &LegacyListRecord,
        request: Option<&Request>,
        buffers: &[LegacyBufferRecord],
    ) -> Result<(), BpfError> {
        let Some((request, bgid, start, count)) = request.and_then(|request| match request.want {
            Want::LegacyBuffers { bgid, start, count } => Some((request, bgid, start, count)),
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
        let facts = self.ring_of_chunk(list.ctx, "a legacy buffer list")?;
        let unknown = match list.state {
            LegacyListState::Whole if list.length > records::MAX_LEGACY_BUFFERS => {
                return Err(mismatch("a whole list longer than the walk's bound"))
            }
            LegacyListState::Whole => None,
            LegacyListState::TooLong => Some(format!(
                "its list is longer than {} buffers (a group holds at most that many distinct bids), \
                 the most the dump walks",
                records::MAX_LEGACY_BUFFERS
            )),
            LegacyListState::Broken => Some("its list changed while it was read".to_owned()),
            LegacyListState::NotLegacy => {
                Some("it was no longer a legacy group when its buffers were read".to_owned())
            }
        };
        let entry = facts.legacy.entry(bgid).or_insert_with(|| LegacyList {
            length: list.length,
            fingerprint: list.fingerprint,
            buffers: vec![None; list.length as usize],
            unknown: None,
        });
        if entry.unknown.is_some() {
            return Ok(());
        }
        if let Some(why) = unknown {
            entry.unknown = Some(why);
            return Ok(());
        }
        if entry.length != list.length || entry.fingerprint != list.fingerprint {
            entry.unknown = Some("its list changed between the reads of its parts".to_owned());
            return Ok(());
        }
        let expected = count
            .min(records::LEGACY_BUFFERS_PER_CHUNK)
            .min(list.length.saturating_sub(start));
        if list.written != expected {
            return Err(mismatch(&format!(
                "{} buffers written from position {start} of {}, {expected} expected",
                list.written, list.length
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
