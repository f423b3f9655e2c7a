//! Pass B's requests: what the dumper asks of a ring ([`Want`]), planned per
//! ring ([`Planned`]), then carried by a local fd ([`Request`]) into the
//! `chunk_requests` map, which [`RequestMapGuard`] empties again.

use std::os::fd::OwnedFd;

use libbpf_rs::MapCore;

use super::loaded_skeleton::Programs;
use super::records::{self, LegacyStart, RequestKind, Table};

/// What a pass-B request asks of a ring (or, for a probe, of any fd).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Want {
    /// The ring's header.
    Ring,
    /// A range of one of its tables.
    Chunk {
        table: Table,
        start: u32,
        count: u32,
    },
    /// The file's f_op.
    Probe,
    /// How many personalities and buffer groups the ring has (asked of
    /// `ringplan_walk_fds` when the header leaves them to it).
    WalkCounts,
    /// The buffers of legacy group `bgid` at list positions
    /// `start..start + count` (`ringplan_walk_fds`): from the head when
    /// `start` is 0 (a walk of the whole list), else from `from`, the
    /// first range's checkpoint at `start`.
    LegacyBuffers {
        bgid: u16,
        start: u32,
        count: u32,
        from: LegacyStart,
    },
    /// The requests the ring's kernel keeps waiting on their own
    /// (`ringplan_walk_fds`), asked only of a ring with requests in flight.
    Pending,
    /// The NAPI ids the ring lists (`ringplan_walk_fds`), asked only of a
    /// ring with static tracking that lists some.
    NapiIds,
}

impl Want {
    /// The program that answers this request: the personality,
    /// buffer-group and pending-request walks are `ringplan_walk_fds`'s,
    /// the rest `ringplan_chunk_fds`'s.
    pub(super) fn program(self) -> Programs {
        match self {
            Want::WalkCounts
            | Want::Pending
            | Want::NapiIds
            | Want::LegacyBuffers { .. }
            | Want::Chunk {
                table: Table::Personalities | Table::PbufRings,
                ..
            } => Programs::Walks,
            Want::Ring | Want::Probe | Want::Chunk { .. } => Programs::Passes,
        }
    }
}

/// One request of pass B, before it has a local fd.
#[derive(Debug, Clone, Copy)]
pub(super) struct Planned {
    pub(super) ring: u64,
    pub(super) want: Want,
}

impl Planned {
    pub(super) fn chunk(ring: u64, table: Table, start: u32, count: u32) -> Planned {
        Planned {
            ring,
            want: Want::Chunk {
                table,
                start,
                count,
            },
        }
    }
}

/// A request with the dumper's local fd that carries it.
pub(super) struct Request {
    pub(super) local_fd: OwnedFd,
    /// The ring the local fd must refer to; 0 accepts any file (only the
    /// dumper's own probe ring and eventfd).
    pub(super) expected_ctx: u64,
    /// Read the ring at `expected_ctx` itself: a ring no fd of the target
    /// holds (only a registered ring-fd slot), which the local fd (not a
    /// copy of it) only carries.
    pub(super) by_pointer: bool,
    pub(super) want: Want,
}

impl Request {
    /// The chunk_requests map value.
    pub(super) fn value(&self) -> [u8; records::CHUNK_REQUEST_LEN] {
        match self.want {
            Want::Ring => records::chunk_request_bytes(
                self.expected_ctx,
                self.by_pointer,
                RequestKind::Ring,
                Table::Files,
                0,
                0,
                (0, LegacyStart::default()),
            ),
            Want::Probe => records::chunk_request_bytes(
                self.expected_ctx,
                self.by_pointer,
                RequestKind::Probe,
                Table::Files,
                0,
                0,
                (0, LegacyStart::default()),
            ),
            Want::WalkCounts => records::chunk_request_bytes(
                self.expected_ctx,
                self.by_pointer,
                RequestKind::WalkCounts,
                Table::Files,
                0,
                0,
                (0, LegacyStart::default()),
            ),
            Want::Pending => records::chunk_request_bytes(
                self.expected_ctx,
                self.by_pointer,
                RequestKind::Pending,
                Table::Files,
                0,
                0,
                (0, LegacyStart::default()),
            ),
            Want::NapiIds => records::chunk_request_bytes(
                self.expected_ctx,
                self.by_pointer,
                RequestKind::NapiIds,
                Table::Files,
                0,
                0,
                (0, LegacyStart::default()),
            ),
            Want::Chunk {
                table,
                start,
                count,
            } => records::chunk_request_bytes(
                self.expected_ctx,
                self.by_pointer,
                RequestKind::Chunk,
                table,
                start,
                count,
                (0, LegacyStart::default()),
            ),
            Want::LegacyBuffers {
                bgid,
                start,
                count,
                from,
            } => records::chunk_request_bytes(
                self.expected_ctx,
                self.by_pointer,
                RequestKind::LegacyBuffers,
                Table::PbufRings,
                start,
                count,
                (bgid, from),
            ),
        }
    }
}

/// Deletes a round's requests from the map however the round ends.
pub(super) struct RequestMapGuard<'a, M: MapCore> {
    pub(super) map: &'a M,
    pub(super) keys: Vec<u32>,
}

impl<M: MapCore> Drop for RequestMapGuard<'_, M> {
    fn drop(&mut self) {
        for key in &self.keys {
            // Best effort: the next round purges anything left.
            let _ = self.map.delete(&key.to_ne_bytes());
        }
    }
}
