//! [`Reading`]: what pass A and pass B found, accumulated and checked
//! record by record (duplicates dropped, slots resolved to the chunk they
//! follow, every header and chunk accounted for), before it becomes a
//! [`RawState`].

mod legacy;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::fd::{AsRawFd, BorrowedFd};

use ringplan_image::{
    Buffer, Cqe, FileAllocRange, IowqAffinity, IowqMaxWorkers, Napi, NapiTracking, Personality,
    Restrictions, RingPositions, RingSettings, SlotTag,
};
use ringplan_kernel::abi::limits::{MAX_BUFFER_SLOTS, MAX_FILE_SLOTS};
use ringplan_kernel::abi::SetupFlags;

use super::error::{malformed, BpfError, Pass};
use super::hz::jiffies_to_ms;
use super::layout;
use super::local_fds::{copy_target_fd, fd_number};
use super::page_frames::PageFrames;
use super::records::{
    self, BufferSlotRecord, ChunkRecord, ChunkStatus, EventfdRecord, FdRecord, FileSlotRecord,
    InFlightCounters, Layout, NapiIdRecord, NapiListRecord, OverflowCqeRecord, PbufRingRecord,
    PendingListRecord, PendingRequestRecord, Record, Records, RestrictionWords, RingRecord, Role,
    Table, ThreadStatus, WalkCountsRecord,
};
use super::requests::{Planned, Request, Want};
use crate::raw::{
    Known, PbufMemory, PendingRequest, RawBufferGroups, RawEventfd, RawFdEntry, RawFile,
    RawFileRole, RawInFlight, RawLegacyGroup, RawPbufRing, RawRing, RawRingEventfd, RawRingState,
    RawState, RawWaitRegion, UserMemory,
};

/// The `f_op` of io_uring and eventfd files.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Fops {
    pub(super) ring: u64,
    pub(super) eventfd: u64,
}

/// What pass A and pass B found, before it becomes a [`RawState`].
#[derive(Debug, Default)]
pub(super) struct Reading {
    pub(super) fds: BTreeMap<i32, RawFdEntry>,
    files: HashMap<u64, RawFile>,
    /// Files that only pass B saw (no fd of the target holds them): their
    /// path must come from fdinfo. Ring → (slot index, file).
    slot_only_files: BTreeMap<u64, Vec<(u32, u64)>>,
    /// The rings pass A found, each with the lowest fd of the target that
    /// holds it.
    pub(super) ring_fds: BTreeMap<u64, i32>,
    /// The `f_op` of io_uring and eventfd files, which tell registered
    /// files apart.
    fops: Fops,
    /// The rings whose header pass B returned.
    pub(super) rings: BTreeMap<u64, RingFacts>,
    eventfds: HashMap<u64, RawEventfd>,
    /// Every thread's registered ring-fd slots (pass T): ring → (tid,
    /// offset) ascending; `None` when a thread's could not be read.
    ring_fd_slots: Option<BTreeMap<u64, Vec<(u32, u32)>>>,
    /// Rings that only a registered ring-fd slot holds (no fd of the
    /// target), by ctx: their `struct file` and its inode number.
    pub(super) slot_only_rings: BTreeMap<u64, (u64, u64)>,
    /// List nodes the legacy groups' walks read, over every answer (what
    /// [`super::BpfDumper::legacy_nodes_visited`] reports).
    pub(super) legacy_nodes_visited: u64,
}

/// One ring's header and its tables as the chunks fill them.
#[derive(Debug)]
pub(super) struct RingFacts {
    pub(super) header: RingRecord,
    /// The lowest fd of the target that holds this ring.
    target_fd: i32,
    files: Vec<Option<u64>>,
    buffers: Vec<Option<Buffer>>,
    /// The overflow list as its records came, in list order.
    overflow: Vec<OverflowCqeRecord>,
    /// The pending requests as their records came.
    pending: Vec<PendingRequestRecord>,
    /// How many pending requests the ring has, when all are listed: 0
    /// from its header when it has no request in flight, else from
    /// `ringplan_walk_fds`'s answer ([`RingFacts::needs_pending_walk`]).
    pending_listed: Option<u32>,
    /// The NAPI ids as their records came, in list order.
    napi_ids: Vec<NapiIdRecord>,
    /// How many NAPI ids the ring lists, when its answer came whole.
    napi_listed: Option<u32>,
    /// The personalities by ordinal, as their chunks fill them.
    personalities: Vec<Option<Personality>>,
    /// The provided-buffer groups by ordinal, as their chunks fill them.
    pbuf_groups: Vec<Option<PbufRingRecord>>,
    /// The legacy groups' buffer lists, by bgid, as their answers fill them.
    legacy: legacy::LegacyLists,
    /// Non-zero tags of file and buffer slots, by slot.
    file_tags: BTreeMap<u32, u64>,
    buffer_tags: BTreeMap<u32, u64>,
    /// Chunks answered, by (table, start): a re-shown chunk is applied once.
    pub(super) answered: HashSet<(Table, u32)>,
}

impl RingFacts {
    /// Whether the ring's requests waiting on their own must be asked of
    /// `ringplan_walk_fds`: its header's counters do not say that no
    /// request is in flight (a ring with none, the seed's, costs no walk
    /// and no load of that program).
    pub(super) fn needs_pending_walk(&self) -> bool {
        self.pending_listed.is_none()
    }

    /// Whether the ring's NAPI ids must be asked of `ringplan_walk_fds`:
    /// it tracks NAPI statically and lists some (dynamic tracking's ids
    /// the kernel finds again by itself).
    pub(super) fn needs_napi_walk(&self) -> bool {
        use super::records::settings_bits as bits;
        self.header.settings.is_some_and(|words| {
            words.bits & bits::NAPI_IDS != 0
                && words.bits & bits::NAPI_TRACK_MODE != 0
                && words.napi_track_mode
                    == u32::from(ringplan_kernel::abi::settings::NAPI_TRACKING_STATIC)
        })
    }

    /// The NAPI ids of a statically tracking ring, when its answer came
    /// whole and every id with it.
    fn napi_static_ids(&self) -> Option<Vec<u32>> {
        let listed = self.napi_listed?;
        (self.napi_ids.len() == listed as usize)
            .then(|| self.napi_ids.iter().map(|record| record.napi_id).collect())
    }

    /// The chunks that read this ring's tables whole.
    pub(super) fn planned_chunks(&self) -> Vec<Planned> {
        let mut chunks = Vec::new();
        for (table, size, per_chunk) in [
            (
                Table::Files,
                self.header.file_slots,
                records::FILE_SLOTS_PER_CHUNK,
            ),
            (
                Table::Buffers,
                self.header.buffer_slots,
                records::BUFFER_SLOTS_PER_CHUNK,
            ),
            (
                Table::Personalities,
                self.header.personalities.map_or(0, |(count, _)| count),
                records::PERSONALITIES_PER_CHUNK,
            ),
            (
                Table::PbufRings,
                self.header.pbuf_count.unwrap_or(0),
                records::PBUF_RINGS_PER_CHUNK,
            ),
        ] {
            let mut start = 0;
            while start < size {
                let count = per_chunk.min(size - start);
                chunks.push(Planned::chunk(self.header.ctx, table, start, count));
                start += count;
            }
        }
        chunks
    }
}

impl Reading {
    /// Pass A's records, deduplicated.
    pub(super) fn from_target_records(bytes: &[u8], fops: Fops) -> Result<Reading, BpfError> {
        let mut reading = Reading {
            fops,
            ..Reading::default()
        };
        for record in Records::new(bytes) {
            match record.map_err(|error| malformed(Pass::TargetFds, error))? {
                Record::Fd(fd) => reading.add_fd(&fd)?,
                Record::Eventfd(EventfdRecord {
                    ctx, count, flags, ..
                }) => {
                    reading
                        .eventfds
                        .entry(ctx)
                        .or_insert(RawEventfd { count, flags });
                }
                other => {
                    return Err(BpfError::Inconsistent {
                        pass: Pass::TargetFds,
                        reason: format!("unexpected record in pass A: {other:?}"),
                    })
                }
            }
        }
        Ok(reading)
    }

    /// Pass T's records: each thread's registered ring-fd slots. Rings
    /// found there that no fd holds are kept in `slot_only_rings`.
    pub(super) fn add_thread_records(&mut self, bytes: &[u8]) -> Result<(), BpfError> {
        let mut slots: BTreeMap<u64, Vec<(u32, u32)>> = BTreeMap::new();
        let mut known = true;
        for record in Records::new(bytes) {
            match record.map_err(|error| malformed(Pass::Threads, error))? {
                Record::Thread(thread) => known &= thread.status == ThreadStatus::Ok,
                Record::RingFd(slot) => {
                    if slot.f_op != self.fops.ring {
                        return Err(BpfError::Inconsistent {
                            pass: Pass::Threads,
                            reason: format!(
                                "thread {}'s registered ring fd {} is not an io_uring file",
                                slot.tid, slot.offset
                            ),
                        });
                    }
                    slots
                        .entry(slot.ctx)
                        .or_default()
                        .push((slot.tid, slot.offset));
                    if !self.ring_fds.contains_key(&slot.ctx) {
                        self.slot_only_rings
                            .insert(slot.ctx, (slot.file, slot.inode_number));
                    }
                }
                other => {
                    return Err(BpfError::Inconsistent {
                        pass: Pass::Threads,
                        reason: format!("unexpected record in pass T: {other:?}"),
                    })
                }
            }
        }
        for list in slots.values_mut() {
            // A re-shown thread repeats its slots.
            list.sort_unstable();
            list.dedup();
        }
        self.ring_fd_slots = known.then_some(slots);
        Ok(())
    }

    /// After pass B: pass T's second look (`after`) shows the same
    /// occupied slots as its first (`before`): each (thread, offset) holds
    /// the same file. So no slot changed while the rings were read, and
    /// every ring read by pointer was kept alive by its slot throughout.
    pub(super) fn check_slots_unchanged(
        &self,
        pid: u32,
        before: &[u8],
        after: &[u8],
    ) -> Result<(), BpfError> {
        let slots = |bytes: &[u8]| -> Result<BTreeMap<(u32, u32), u64>, BpfError> {
            let mut slots = BTreeMap::new();
            for record in Records::new(bytes) {
                if let Record::RingFd(slot) =
                    record.map_err(|error| malformed(Pass::Threads, error))?
                {
                    slots.insert((slot.tid, slot.offset), slot.file);
                }
            }
            Ok(slots)
        };
        let (before, after) = (slots(before)?, slots(after)?);
        if before == after {
            return Ok(());
        }
        let (tid, offset) = before
            .iter()
            .chain(&after)
            .map(|(slot, _)| *slot)
            .find(|slot| before.get(slot) != after.get(slot))
            .unwrap_or_default();
        Err(BpfError::TargetChanged {
            pid,
            what: format!(
                "thread {tid}'s registered ring fd at offset {offset} changed while the rings were read"
            ),
        })
    }

    fn add_fd(&mut self, record: &FdRecord<'_>) -> Result<(), BpfError> {
        let fd = i32::try_from(record.fd).map_err(|_| BpfError::Inconsistent {
            pass: Pass::TargetFds,
            reason: format!("fd {} out of range", record.fd),
        })?;
        // The first record for an fd wins: the group leader's table comes
        // first, and a re-shown object repeats the same facts.
        self.fds.entry(fd).or_insert(RawFdEntry {
            fd,
            cloexec: record.cloexec,
            file: record.file,
        });
        if record.role == Role::Ring {
            let lowest = self.ring_fds.entry(record.private_data).or_insert(fd);
            *lowest = (*lowest).min(fd);
        }
        self.files.entry(record.file).or_insert_with(|| RawFile {
            role: role_of(record.role, record.private_data),
            path: record.path.and_then(path_text),
            flags: Some(record.flags),
            pos: Some(record.pos),
            mode: Some(record.mode),
        });
        Ok(())
    }

    /// A ring's header, answering `request`.
    fn add_ring(
        &mut self,
        pid: u32,
        header: RingRecord,
        request: &Request,
    ) -> Result<(), BpfError> {
        if header.status != ChunkStatus::Ok || header.ctx != request.expected_ctx {
            return Err(BpfError::TargetChanged {
                pid,
                what: format!(
                    "the fd copied for ring {:#x} now refers to something else",
                    request.expected_ctx
                ),
            });
        }
        if header.layout == Layout::Unknown {
            return Err(layout::not_recognised());
        }
        if header.file_slots > MAX_FILE_SLOTS || header.buffer_slots > MAX_BUFFER_SLOTS {
            return Err(BpfError::Inconsistent {
                pass: Pass::Chunks,
                reason: format!(
                    "ring {:#x} reports {} file and {} buffer slots, beyond the kernel's limits",
                    header.ctx, header.file_slots, header.buffer_slots
                ),
            });
        }
        if header.eventfd_ctx != 0 {
            self.eventfds
                .entry(header.eventfd_ctx)
                .or_insert(RawEventfd {
                    count: header.eventfd_count,
                    flags: header.eventfd_flags,
                });
        }
        let target_fd = self.ring_fds.get(&header.ctx).copied().unwrap_or(i32::MAX);
        self.rings.entry(header.ctx).or_insert_with(|| RingFacts {
            header,
            target_fd,
            files: vec![None; header.file_slots as usize],
            buffers: vec![None; header.buffer_slots as usize],
            overflow: Vec::new(),
            pending: Vec::new(),
            pending_listed: (in_flight_count(&header) == Ok(0)).then_some(0),
            napi_ids: Vec::new(),
            napi_listed: None,
            personalities: vec![None; header.personalities.map_or(0, |(count, _)| count) as usize],
            pbuf_groups: vec![None; header.pbuf_count.unwrap_or(0) as usize],
            legacy: BTreeMap::new(),
            file_tags: BTreeMap::new(),
            buffer_tags: BTreeMap::new(),
            answered: HashSet::new(),
        });
        Ok(())
    }

    /// Applies one pass-B round's records (that every request was
    /// answered is checked once all rounds are done).
    pub(super) fn apply_round_records(
        &mut self,
        pid: u32,
        bytes: &[u8],
        requests: &[Request],
    ) -> Result<(), BpfError> {
        let by_local_fd: HashMap<u32, &Request> = requests
            .iter()
            .map(|request| (fd_number(&request.local_fd), request))
            .collect();
        let records: Vec<Record<'_>> = Records::new(bytes)
            .collect::<Result<_, _>>()
            .map_err(|error| malformed(Pass::Chunks, error))?;
        // Headers first: a chunk is checked against its ring's header,
        // which may come after it (records come in local fd order).
        for record in &records {
            if let Record::Ring(header) = record {
                if let Some(request) = by_local_fd.get(&header.fd).filter(|r| r.want == Want::Ring)
                {
                    self.add_ring(pid, **header, request)?;
                }
            }
        }
        // Then the walk counts, which size the personalities and buffer
        // groups of the chunks that come with them.
        for record in &records {
            if let Record::WalkCounts(counts) = record {
                if let Some(request) = by_local_fd
                    .get(&counts.fd)
                    .filter(|r| r.want == Want::WalkCounts)
                {
                    self.add_walk_counts(pid, counts, request)?;
                }
            }
        }
        // The chunk whose slot records follow, with its slot range.
        let mut current: Option<(u64, Table, std::ops::Range<u32>)> = None;
        // The legacy buffers and checkpoints that come before their list
        // record.
        let mut legacy_buffers = Vec::new();
        let mut legacy_checkpoints = Vec::new();
        for record in records {
            match record {
                Record::Ring(_) | Record::WalkCounts(_) => current = None,
                Record::LegacyBuffer(buffer) => {
                    current = None;
                    legacy_buffers.push(buffer);
                }
                Record::LegacyCheckpoint(point) => {
                    current = None;
                    legacy_checkpoints.push(point);
                }
                Record::LegacyList(list) => {
                    current = None;
                    let request = by_local_fd.get(&list.fd).copied();
                    self.add_legacy_list(
                        pid,
                        &list,
                        request,
                        &legacy_buffers,
                        &legacy_checkpoints,
                    )?;
                    legacy_buffers.clear();
                    legacy_checkpoints.clear();
                }
                Record::Chunk(chunk) => {
                    let request = by_local_fd.get(&chunk.fd).copied();
                    current = self.accept_chunk(pid, &chunk, request)?;
                }
                Record::FileSlot(slot) => {
                    let ring = slot_target(&current, Table::Files, slot.index)?;
                    self.add_file_slot(ring, &slot);
                }
                Record::BufferSlot(slot) => {
                    let ring = slot_target(&current, Table::Buffers, slot.index)?;
                    self.add_buffer_slot(ring, &slot)?;
                }
                Record::Personality(personality) => {
                    let ring = slot_target(&current, Table::Personalities, personality.index)?;
                    if let Some(entry) = self
                        .rings
                        .get_mut(&ring)
                        .and_then(|facts| facts.personalities.get_mut(personality.index as usize))
                    {
                        *entry = Some(personality.personality);
                    }
                }
                Record::PbufRing(group) => {
                    let ring = slot_target(&current, Table::PbufRings, group.index)?;
                    if let Some(entry) = self
                        .rings
                        .get_mut(&ring)
                        .and_then(|facts| facts.pbuf_groups.get_mut(group.index as usize))
                    {
                        *entry = Some(group);
                    }
                }
                Record::OverflowCqe(cqe) => self.add_overflow_cqe(&cqe)?,
                Record::PendingList(list) => {
                    current = None;
                    if let Some(request) = by_local_fd
                        .get(&list.fd)
                        .filter(|r| r.want == Want::Pending)
                    {
                        self.add_pending_list(pid, &list, request)?;
                    }
                }
                Record::PendingRequest(request) => self.add_pending_request(&request)?,
                Record::NapiId(id) => {
                    let facts = self.ring_of_chunk(id.ctx, "a NAPI id")?;
                    append_in_order(&mut facts.napi_ids, id, id.index, id.ctx, "NAPI id")?;
                }
                Record::NapiList(list) => {
                    current = None;
                    if let Some(request) = by_local_fd
                        .get(&list.fd)
                        .filter(|r| r.want == Want::NapiIds)
                    {
                        self.add_napi_list(pid, &list, request)?;
                    }
                }
                other => {
                    return Err(BpfError::Inconsistent {
                        pass: Pass::Chunks,
                        reason: format!("unexpected record in pass B: {other:?}"),
                    })
                }
            }
        }
        Ok(())
    }

    /// A ring's personalities and buffer groups, counted by
    /// `ringplan_walk_fds` for a header that left them to it: they fill in
    /// the header's counts, as if it had walked them itself. A re-shown
    /// record finds them filled in and changes nothing.
    fn add_walk_counts(
        &mut self,
        pid: u32,
        counts: &WalkCountsRecord,
        request: &Request,
    ) -> Result<(), BpfError> {
        if counts.status != ChunkStatus::Ok || counts.ctx != request.expected_ctx {
            return Err(BpfError::TargetChanged {
                pid,
                what: format!(
                    "the fd copied for ring {:#x} now refers to something else",
                    request.expected_ctx
                ),
            });
        }
        let facts = self.ring_of_chunk(counts.ctx, "a walk count")?;
        let header = &mut facts.header;
        if header.to_walk.personalities {
            header.to_walk.personalities = false;
            header.personalities = counts
                .personality_count
                .map(|count| (count, header.personality_next));
            facts.personalities = vec![None; counts.personality_count.unwrap_or(0) as usize];
        }
        if header.to_walk.pbuf_rings {
            header.to_walk.pbuf_rings = false;
            header.pbuf_count = counts.pbuf_count;
            facts.pbuf_groups = vec![None; counts.pbuf_count.unwrap_or(0) as usize];
        }
        Ok(())
    }

    /// The end of a ring's pending-requests answer: how many came, when
    /// they are all.
    fn add_pending_list(
        &mut self,
        pid: u32,
        list: &PendingListRecord,
        request: &Request,
    ) -> Result<(), BpfError> {
        if list.status != ChunkStatus::Ok || list.ctx != request.expected_ctx {
            return Err(BpfError::TargetChanged {
                pid,
                what: format!(
                    "the fd copied for ring {:#x} now refers to something else",
                    request.expected_ctx
                ),
            });
        }
        self.ring_of_chunk(list.ctx, "a pending-requests answer")?
            .pending_listed = list.listed;
        Ok(())
    }

    /// The end of a ring's NAPI-ids answer: how many came, when they are
    /// the whole list.
    fn add_napi_list(
        &mut self,
        pid: u32,
        list: &NapiListRecord,
        request: &Request,
    ) -> Result<(), BpfError> {
        if list.status != ChunkStatus::Ok || list.ctx != request.expected_ctx {
            return Err(BpfError::TargetChanged {
                pid,
                what: format!(
                    "the fd copied for ring {:#x} now refers to something else",
                    request.expected_ctx
                ),
            });
        }
        self.ring_of_chunk(list.ctx, "a NAPI-ids answer")?
            .napi_listed = list.listed;
        Ok(())
    }

    /// Every ring whose header left counts to `ringplan_walk_fds` must
    /// have had them answered.
    pub(super) fn check_walk_counts_complete(&self) -> Result<(), BpfError> {
        match self.rings.values().find(|facts| facts.header.to_walk.any()) {
            Some(facts) => Err(BpfError::Inconsistent {
                pass: Pass::Chunks,
                reason: format!(
                    "no personality and buffer-group counts came back for ring {:#x}",
                    facts.header.ctx
                ),
            }),
            None => Ok(()),
        }
    }

    /// One CQE of a ring's overflow list. Records of a re-shown object come
    /// again with the same indices and are dropped.
    fn add_overflow_cqe(&mut self, cqe: &OverflowCqeRecord) -> Result<(), BpfError> {
        let facts = self.ring_of_chunk(cqe.ctx, "an overflow CQE")?;
        append_in_order(
            &mut facts.overflow,
            *cqe,
            cqe.index,
            cqe.ctx,
            "overflow CQE",
        )
    }

    /// One pending request of a ring. Records of a re-shown object come
    /// again with the same indices and are dropped.
    fn add_pending_request(&mut self, request: &PendingRequestRecord) -> Result<(), BpfError> {
        let facts = self.ring_of_chunk(request.ctx, "a pending request")?;
        append_in_order(
            &mut facts.pending,
            *request,
            request.index,
            request.ctx,
            "pending request",
        )
    }

    /// The ring a chunk record of pass B names, whose header must have come
    /// first.
    fn ring_of_chunk(&mut self, ctx: u64, what: &str) -> Result<&mut RingFacts, BpfError> {
        self.rings
            .get_mut(&ctx)
            .ok_or_else(|| BpfError::Inconsistent {
                pass: Pass::Chunks,
                reason: format!("{what} came for ring {ctx:#x}, whose header did not"),
            })
    }

    /// Every ring pass A found must have had its header answered.
    pub(super) fn check_headers_complete(&self) -> Result<(), BpfError> {
        match self
            .ring_fds
            .keys()
            .find(|ring| !self.rings.contains_key(ring))
        {
            Some(ring) => Err(BpfError::Inconsistent {
                pass: Pass::Chunks,
                reason: format!("no header came back for ring {ring:#x}"),
            }),
            None => Ok(()),
        }
    }

    /// Checks a chunk record against its request and marks it answered;
    /// returns where its slot records go.
    fn accept_chunk(
        &mut self,
        pid: u32,
        chunk: &ChunkRecord,
        request: Option<&Request>,
    ) -> Result<Option<(u64, Table, std::ops::Range<u32>)>, BpfError> {
        let Some((request, table, start, count)) = request.and_then(|request| match request.want {
            Want::Chunk {
                table,
                start,
                count,
            } => Some((request, table, start, count)),
            Want::Ring
            | Want::Probe
            | Want::WalkCounts
            | Want::Pending
            | Want::NapiIds
            | Want::LegacyBuffers { .. } => None,
        }) else {
            // A request of an earlier, failed read that survived: ignore it.
            return Ok(None);
        };
        match chunk.status {
            ChunkStatus::Ok => {}
            ChunkStatus::UnknownLayout => return Err(layout::not_recognised()),
            ChunkStatus::OtherProgram => {
                return Err(BpfError::Inconsistent {
                    pass: Pass::Chunks,
                    reason: format!(
                        "the {} table's chunk of ring {:#x} was asked of a program that does not read it",
                        table, request.expected_ctx
                    ),
                })
            }
            ChunkStatus::OtherRing => {
                return Err(BpfError::TargetChanged {
                    pid,
                    what: format!(
                        "the fd copied for ring {:#x} now refers to something else",
                        request.expected_ctx
                    ),
                })
            }
        }
        let Some(ring) = self.rings.get_mut(&request.expected_ctx) else {
            return Ok(None);
        };
        let expected_size = match table {
            Table::Files => ring.header.file_slots,
            Table::Buffers => ring.header.buffer_slots,
            Table::Personalities => ring.header.personalities.map_or(0, |(count, _)| count),
            Table::PbufRings => ring.header.pbuf_count.unwrap_or(0),
        };
        // A speculative first chunk asks for more than the table may hold.
        let expected_scanned = count.min(expected_size.saturating_sub(start));
        if chunk.table != table || chunk.start != start {
            return Err(BpfError::Inconsistent {
                pass: Pass::Chunks,
                reason: format!(
                    "chunk record for fd {} does not match its request",
                    chunk.fd
                ),
            });
        }
        if chunk.table_size != expected_size || chunk.scanned != expected_scanned {
            return Err(BpfError::TargetChanged {
                pid,
                what: format!(
                    "ring {:#x}'s {} table has {} slots now ({} read from {}), {} when its header was read",
                    chunk.ctx, chunk.table, chunk.table_size, chunk.scanned, chunk.start, expected_size
                ),
            });
        }
        ring.answered.insert((chunk.table, chunk.start));
        let end = chunk.start.saturating_add(chunk.scanned);
        Ok(Some((chunk.ctx, chunk.table, chunk.start..end)))
    }

    fn add_file_slot(&mut self, ring: u64, slot: &FileSlotRecord) {
        let Some(facts) = self.rings.get_mut(&ring) else {
            return;
        };
        let Some(entry) = facts.files.get_mut(slot.index as usize) else {
            return;
        };
        *entry = Some(slot.file);
        if slot.tag != 0 {
            facts.file_tags.insert(slot.index, slot.tag);
        }
        let role = self.role_of_fop(slot.f_op, slot.private_data);
        if matches!(role, RawFileRole::Eventfd(_)) && slot.private_data != 0 {
            self.eventfds
                .entry(slot.private_data)
                .or_insert(RawEventfd {
                    count: slot.eventfd_count,
                    flags: slot.eventfd_flags,
                });
        }
        if let std::collections::hash_map::Entry::Vacant(entry) = self.files.entry(slot.file) {
            entry.insert(RawFile {
                role,
                path: None,
                flags: Some(slot.flags),
                pos: Some(slot.pos),
                mode: Some(slot.mode),
            });
            self.slot_only_files
                .entry(ring)
                .or_default()
                .push((slot.index, slot.file));
        }
    }

    fn add_buffer_slot(&mut self, ring: u64, slot: &BufferSlotRecord) -> Result<(), BpfError> {
        if slot.kernel_buffer {
            return Err(BpfError::KernelBuffer {
                ring,
                index: slot.index,
            });
        }
        let Some(facts) = self.rings.get_mut(&ring) else {
            return Ok(());
        };
        if let Some(entry) = facts.buffers.get_mut(slot.index as usize) {
            *entry = Some(Buffer {
                addr: slot.addr,
                len: slot.len,
            });
            if slot.tag != 0 {
                facts.buffer_tags.insert(slot.index, slot.tag);
            }
        }
        Ok(())
    }

    /// What a registered file is, told by its `f_op`.
    fn role_of_fop(&self, f_op: u64, private_data: u64) -> RawFileRole {
        if f_op == self.fops.ring {
            RawFileRole::Ring(private_data)
        } else if f_op == self.fops.eventfd {
            RawFileRole::Eventfd(private_data)
        } else {
            RawFileRole::Plain
        }
    }

    /// Every planned chunk of every ring must have been answered.
    pub(super) fn check_tables_complete(&self) -> Result<(), BpfError> {
        for facts in self.rings.values() {
            for chunk in facts.planned_chunks() {
                let Want::Chunk {
                    table,
                    start,
                    count,
                } = chunk.want
                else {
                    continue;
                };
                if !facts.answered.contains(&(table, start)) {
                    return Err(BpfError::IncompleteTable {
                        ring: chunk.ring,
                        table: table.to_string(),
                        start,
                        end: start + count,
                    });
                }
            }
        }
        Ok(())
    }

    /// Paths of files only a ring's table holds, from that ring's fdinfo.
    pub(super) fn fill_slot_only_paths(
        &mut self,
        pid: u32,
        pidfd: BorrowedFd<'_>,
    ) -> Result<(), BpfError> {
        for (ring, slots) in &self.slot_only_files {
            // A ring no fd holds has no fdinfo to read: those paths stay
            // unknown (a restore substitutes the files).
            let Some(&target_fd) = self.ring_fds.get(ring) else {
                continue;
            };
            let local = copy_target_fd(pid, pidfd, target_fd)?;
            let fdinfo_path = format!("/proc/self/fdinfo/{}", local.as_raw_fd());
            let text = std::fs::read(&fdinfo_path).map_err(|source| BpfError::Io {
                what: format!("reading {fdinfo_path}"),
                source,
            })?;
            let rows = ringplan_kernel::procfs::fdinfo::user_file_rows(&text);
            for (index, file) in slots {
                let path = rows.get(index).and_then(|bytes| path_text(bytes));
                if let Some(raw_file) = self.files.get_mut(file) {
                    raw_file.path = path;
                }
            }
        }
        Ok(())
    }

    /// Whether a ring is set up with `IORING_SETUP_NO_MMAP` (its memory is
    /// then looked for by page frame number).
    pub(super) fn has_no_mmap_ring(&self) -> bool {
        self.rings
            .values()
            .any(|ring| ring.header.flags & SetupFlags::NO_MMAP.bits() != 0)
    }

    /// Whether a ring has a buffer ring or a registered wait region (their
    /// memory is then looked for by page frame number too).
    pub(super) fn has_pbuf_ring(&self) -> bool {
        self.rings.values().any(|ring| {
            ring.pbuf_groups
                .iter()
                .any(|group| group.is_some_and(|group| group.is_ring))
                || ring
                    .header
                    .settings
                    .is_some_and(|words| words.wait_region_size > 0)
        })
    }

    /// The final state. `hz` converts SQ idle from jiffies; `None` leaves the
    /// SQPOLL rings' idle unknown. `frames` turns NO_MMAP rings' pages into
    /// frame numbers.
    pub(super) fn into_raw_state(
        self,
        hz: Option<u32>,
        frames: Option<Result<PageFrames, String>>,
    ) -> RawState {
        let mut notes = Vec::new();
        let slot_only_inodes = self.slot_only_rings.clone();
        let in_flight = self
            .rings
            .iter()
            .map(|(ctx, facts)| (*ctx, in_flight(&facts.header, facts)))
            .collect();
        let rings = self
            .rings
            .into_iter()
            .map(|(ctx, facts)| {
                let header = facts.header;
                let sqpoll = header.flags & SetupFlags::SQPOLL.bits() != 0;
                let has_sq_thread = sqpoll && header.sq_data != 0;
                let eventfd = if header.eventfd_ctx != 0 {
                    Some(RawRingEventfd {
                        eventfd: header.eventfd_ctx,
                        is_async: header.eventfd_async,
                    })
                } else {
                    None
                };
                let settings = settings_of(&header, &facts);
                let wait_region = wait_region_of(&header, frames.as_ref());
                let buffer_groups = buffer_groups_of(&header, &facts, frames.as_ref());
                let personalities = personalities_of(&header, facts.personalities);
                if let Known::Known(groups) = &buffer_groups {
                    for group in &groups.legacy {
                        if let Err(why) = &group.buffers {
                            notes.push(format!(
                                "legacy buffer group {} of the ring at fd {}: its buffers are not \
                                 captured: {why}",
                                group.bgid, facts.target_fd
                            ));
                        }
                    }
                }
                let restrictions = match header.restrictions {
                    Some(words) => Known::Known(restrictions_of(words)),
                    None => Known::Unknown,
                };
                let registered_ring_fds = match &self.ring_fd_slots {
                    Some(slots) => Known::Known(slots.get(&ctx).cloned().unwrap_or_default()),
                    None => Known::Unknown,
                };
                let ring = RawRing {
                    settings,
                    wait_region,
                    registered_ring_fds,
                    buffer_groups,
                    personalities,
                    restrictions,
                    // A ring read by pointer: its inode is pass T's.
                    inode: Some(match slot_only_inodes.get(&ctx) {
                        Some(&(_, inode)) => inode,
                        None => header.inode_number,
                    }),
                    flags: Some(header.flags),
                    sq_entries: header.sq_entries,
                    cq_entries: header.cq_entries,
                    sq_thread: has_sq_thread.then_some(header.sq_data),
                    sq_thread_cpu: if has_sq_thread {
                        u32::try_from(header.sq_cpu).ok()
                    } else {
                        None
                    },
                    sq_thread_idle_ms: hz
                        .filter(|_| sqpoll)
                        .map(|hz| jiffies_to_ms(header.sq_thread_idle_jiffies, hz)),
                    idle_known: !sqpoll || hz.is_some(),
                    eventfd: Known::Known(eventfd),
                    files: facts.files,
                    buffers: facts.buffers,
                    state: header
                        .positions
                        .filter(|positions| match torn_positions(&header, positions) {
                            Some(why) => {
                                notes.push(format!(
                                    "the ring at fd {} moved while its positions were read ({why}): the \
                                     image has no state for it; dump with --freeze for one",
                                    facts.target_fd
                                ));
                                false
                            }
                            None => true,
                        })
                        .map(|positions| RawRingState {
                        positions,
                        owner_tid: header.owner_tid,
                        overflow: overflow_cqes(&header, &facts.overflow),
                        user_memory: user_memory(&header, frames.as_ref()),
                    }),
                };
                (ctx, ring)
            })
            .collect();
        notes.sort();
        RawState {
            fds: self.fds.into_values().collect(),
            files: self.files,
            rings,
            eventfds: self.eventfds,
            notes,
            file_identities: std::collections::HashMap::new(),
            in_flight,
        }
    }
}

/// The settings the program registered on a ring, as the image holds
/// them: each only when set (the file allocation range only when it is
/// not the whole table, which registering a table sets); unknown when the
/// kernel's fields were not read.
fn settings_of(header: &RingRecord, facts: &RingFacts) -> Known<RingSettings> {
    use super::records::settings_bits as bits;
    let Some(words) = header.settings else {
        return Known::Unknown;
    };
    let has = |bit: u32| words.bits & bit != 0;
    let slots = facts.files.len() as u64;
    let (start, end) = (
        u64::from(words.file_alloc_start),
        u64::from(words.file_alloc_end),
    );
    let file_alloc_range =
        (slots > 0 && (start, end) != (0, slots) && start <= end).then(|| FileAllocRange {
            start: words.file_alloc_start,
            len: words.file_alloc_end - words.file_alloc_start,
        });
    let [bounded, unbounded] = words.iowq_limits;
    let iowq_max_workers = (has(bits::IOWQ_LIMITS_SET) && (bounded, unbounded) != (0, 0))
        .then_some(IowqMaxWorkers { bounded, unbounded });
    let napi = (has(bits::NAPI_KNOWN) && has(bits::NAPI_ENABLED)).then(|| Napi {
        busy_poll_us: u32::try_from(words.napi_busy_poll_dt / 1000).unwrap_or(u32::MAX),
        prefer_busy_poll: has(bits::NAPI_PREFER_BUSY_POLL),
        tracking: if has(bits::NAPI_TRACK_MODE)
            && words.napi_track_mode
                == u32::from(ringplan_kernel::abi::settings::NAPI_TRACKING_STATIC)
        {
            NapiTracking::Static
        } else {
            NapiTracking::Dynamic
        },
        ids_listed: has(bits::NAPI_IDS),
    });
    let tags = |tags: &BTreeMap<u32, u64>| -> Vec<SlotTag> {
        if has(bits::TAGS_KNOWN) {
            tags.iter()
                .map(|(slot, tag)| SlotTag {
                    slot: *slot,
                    tag: *tag,
                })
                .collect()
        } else {
            Vec::new()
        }
    };
    Known::Known(RingSettings {
        file_alloc_range,
        iowq_max_workers,
        napi,
        // With static tracking, the ids the walk of the ring's list gave.
        napi_static_ids: napi
            .filter(|napi| napi.tracking == NapiTracking::Static && napi.ids_listed)
            .and_then(|_| facts.napi_static_ids()),
        file_tags: tags(&facts.file_tags),
        buffer_tags: tags(&facts.buffer_tags),
        wait_region_len: (has(bits::WAIT_REGION_KNOWN) && words.wait_region_size > 0)
            .then_some(words.wait_region_size),
        // Where its memory is comes from the page lookup (`RawRing::wait_region`).
        wait_region_addr: None,
        wait_region_kernel_memory: false,
        // Read from the program's mapping once found (`ring_memory`).
        wait_region_contents: None,
        iowq_affinity: (has(bits::IOWQ_AFFINITY_KNOWN) && words.iowq_tid != 0)
            .then(|| iowq_affinity_of(&words.iowq_cpus, words.iowq_tid, has(bits::IOWQ_SQ_THREAD)))
            .flatten(),
    })
}

/// Where a registered wait region's memory is, as a page frame number to
/// look up (the kernel keeps the pinned pages, not the address the
/// program gave); `None` without one.
fn wait_region_of(
    header: &RingRecord,
    frames: Option<&Result<PageFrames, String>>,
) -> Option<RawWaitRegion> {
    let words = header.settings?;
    if words.wait_region_size == 0 {
        return None;
    }
    let memory = match (frames, words.wait_region_page) {
        (_, 0) => PbufMemory::Unknown("the kernel did not show the region's pages".to_owned()),
        (Some(Ok(frames)), page) => match frames.frame_of(page) {
            Some(frame) => PbufMemory::Frame(frame),
            None => PbufMemory::Unknown(
                "the kernel did not show the region's pages where the dumper looks".to_owned(),
            ),
        },
        (Some(Err(why)), _) => PbufMemory::Unknown(why.clone()),
        (None, _) => PbufMemory::Unknown("not looked for".to_owned()),
    };
    Some(RawWaitRegion {
        memory,
        kernel_memory: words.bits & super::records::settings_bits::WAIT_REGION_USER == 0,
    })
}

/// The io-wq affinity the program set, from the io-wq's mask: `None` when
/// it is the kernel's own choice. The kernel starts an io-wq on every
/// possible CPU (6.3+: the thread's cpuset, all possible CPUs outside one)
/// or, on 6.1, every CPU of each NUMA node (the online ones), and
/// `IORING_UNREGISTER_IOWQ_AFF` goes back to that: a mask equal to either
/// list is not recorded. A cpuset narrower than the system is recorded,
/// and registering it again gives the same mask.
fn iowq_affinity_of(words: &[u64; 4], tid: u32, sq_thread: bool) -> Option<IowqAffinity> {
    use ringplan_kernel::procfs::cpus;
    let possible = cpus::possible().ok()?;
    let online = cpus::online().ok()?;
    // Bits past the possible CPUs are padding of the kernel's mask.
    let cpus: Vec<u32> = ringplan_kernel::abi::iowq_affinity::cpus_of_words(words)
        .into_iter()
        .filter(|cpu| possible.contains(cpu))
        .collect();
    if cpus.is_empty() || cpus == possible || cpus == online {
        return None;
    }
    Some(IowqAffinity {
        cpus,
        tid: (!sq_thread).then_some(tid),
    })
}

/// A ring's personalities in id order and its next id, when the walk
/// reached the end and every chunk filled its ordinals with ascending ids
/// (else unknown: the xarray changed between chunks).
fn personalities_of(
    header: &RingRecord,
    by_ordinal: Vec<Option<Personality>>,
) -> Known<(Vec<Personality>, u32)> {
    let Some((_, next)) = header.personalities else {
        return Known::Unknown;
    };
    let Some(personalities) = by_ordinal.into_iter().collect::<Option<Vec<_>>>() else {
        return Known::Unknown;
    };
    if personalities
        .windows(2)
        .any(|pair| pair[0].id >= pair[1].id)
    {
        return Known::Unknown;
    }
    Known::Known((personalities, next))
}

/// A ring's provided-buffer groups, when the walk reached the end and
/// every chunk filled its ordinals with ascending bgids (else unknown: the
/// groups changed between chunks). A buffer ring's memory is given by the
/// frame number of its first page, looked up in the program later.
fn buffer_groups_of(
    header: &RingRecord,
    facts: &RingFacts,
    frames: Option<&Result<PageFrames, String>>,
) -> Known<RawBufferGroups> {
    let by_ordinal = &facts.pbuf_groups;
    if header.pbuf_count.is_none() {
        return Known::Unknown;
    }
    let Some(groups) = by_ordinal.iter().copied().collect::<Option<Vec<_>>>() else {
        return Known::Unknown;
    };
    if groups.windows(2).any(|pair| pair[0].bgid >= pair[1].bgid) {
        return Known::Unknown;
    }
    let mut found = RawBufferGroups::default();
    for group in groups {
        if !group.is_ring {
            found.legacy.push(RawLegacyGroup {
                bgid: group.bgid,
                buffers: facts.legacy_buffers(group.bgid),
            });
            continue;
        }
        let memory = match frames {
            Some(Ok(frames)) => match frames.frame_of(group.first_page) {
                Some(frame) => PbufMemory::Frame(frame),
                None => PbufMemory::Unknown(
                    "the kernel did not show the ring's pages where the dumper looks".to_owned(),
                ),
            },
            Some(Err(why)) => PbufMemory::Unknown(why.clone()),
            None => PbufMemory::Unknown("not looked for".to_owned()),
        };
        found.rings.push(RawPbufRing {
            bgid: group.bgid,
            entries: group.entries,
            head: group.head,
            kernel_memory: group.kernel_memory,
            incremental: group.incremental,
            memory,
        });
    }
    Known::Known(found)
}

/// `ctx->restrictions` as the image holds them: `None` when none were
/// registered.
fn restrictions_of(words: RestrictionWords) -> Option<Restrictions> {
    let bits = |word: u64| -> Vec<u8> { (0..64u8).filter(|bit| word >> bit & 1 != 0).collect() };
    words.registered.then(|| Restrictions {
        register_ops: bits(words.register_op),
        sqe_ops: bits(words.sqe_op),
        sqe_flags_allowed: words.sqe_flags_allowed,
        sqe_flags_required: words.sqe_flags_required,
    })
}

/// A ring's requests in flight, from the counters its kernel has.
fn in_flight(header: &RingRecord, facts: &RingFacts) -> RawInFlight {
    let pending = match facts.pending_listed {
        Some(listed) if listed as usize == facts.pending.len() => Known::Known(
            facts
                .pending
                .iter()
                .map(|record| PendingRequest {
                    opcode: record.opcode,
                    user_data: record.user_data,
                    waits_in: record.waits_in,
                })
                .collect(),
        ),
        _ => Known::Unknown,
    };
    RawInFlight {
        count: in_flight_count(header),
        pending,
    }
}

/// How many requests of the ring are in flight, or why it cannot be told.
///
/// 6.16+ counts every request it allocated (`nr_req_allocated`), its free
/// cache included: in flight are the allocated ones less the cache. Older
/// kernels count nothing directly; their drain arithmetic (`IOSQE_IO_DRAIN`,
/// `req_need_defer`/`io_drain_defer_seq`) says that every request consumed
/// from the SQ (`cached_sq_head`) has completed when `cached_sq_head +
/// cq_extra` equals `cached_cq_tail`: `cq_extra` counts the CQEs beyond one
/// per SQE (multishot, up), dropped SQEs and lost CQEs (down). A CQE on
/// the overflow list is not in `cached_cq_tail` yet, so it is taken off.
/// After a request with `IOSQE_CQE_SKIP_SUCCESS` the kernel sets
/// `drain_disabled` and the arithmetic no longer holds.
fn in_flight_count(header: &RingRecord) -> Result<u32, String> {
    match header.in_flight {
        InFlightCounters::Allocated {
            allocated,
            free_cached,
        } => allocated.checked_sub(free_cached).ok_or_else(|| {
            format!("the ring moved while read ({free_cached} cached of {allocated} requests)")
        }),
        InFlightCounters::DrainSequence {
            drain_disabled: true,
            ..
        } => Err(
            "the ring used IOSQE_CQE_SKIP_SUCCESS, after which this kernel (before 6.16) keeps \
             no count of its requests"
                .to_owned(),
        ),
        InFlightCounters::DrainSequence { cq_extra, .. } => {
            let positions = header
                .positions
                .ok_or("this kernel's ring positions were not read")?;
            let overflow = header
                .overflow_listed
                .ok_or("the ring's overflow list was too long to walk")?;
            let count = positions
                .cached_sq_head
                .wrapping_add(cq_extra)
                .wrapping_sub(positions.cached_cq_tail)
                .wrapping_sub(overflow);
            // Negative (as the kernel's u32 arithmetic wraps): a read across
            // a move.
            if count > i32::MAX as u32 {
                return Err(format!(
                    "the ring moved while read (SQ head {}, CQ tail {}, extra {cq_extra})",
                    positions.cached_sq_head, positions.cached_cq_tail
                ));
            }
            Ok(count)
        }
        InFlightCounters::Unknown => {
            Err("this kernel has neither nr_req_allocated nor cq_extra".to_owned())
        }
    }
}

/// Why positions read from a running ring cannot all be true at once, if
/// they cannot: more entries between a head and its tail than the ring
/// holds (each pair is read head first, so a count past the ring means the
/// kernel and the program moved on between the reads).
fn torn_positions(header: &RingRecord, positions: &RingPositions) -> Option<String> {
    let pairs = [
        (
            "SQ",
            positions.cached_sq_head,
            positions.sq_tail,
            header.sq_entries,
        ),
        (
            "SQ",
            positions.sq_head,
            positions.cached_sq_head,
            header.sq_entries,
        ),
        (
            "CQ",
            positions.cq_head,
            positions.cq_tail,
            header.cq_entries,
        ),
        (
            "CQ",
            positions.cq_tail,
            positions.cached_cq_tail,
            header.cq_entries,
        ),
    ];
    let apart = pairs.into_iter().find_map(|(ring, head, tail, entries)| {
        (tail.wrapping_sub(head) > entries)
            .then(|| format!("{ring} head {head} and tail {tail} are more than {entries} apart"))
    });
    // At rest the kernel has published every CQE it posted; a CQ tail of
    // its own ahead of the published one is a completion being posted, and
    // the CQE between them is not in the ring's memory for the reader yet.
    apart.or_else(|| {
        (positions.cached_cq_tail != positions.cq_tail).then(|| {
            format!(
                "completions were being posted: the kernel's CQ tail {} is ahead of the published {}",
                positions.cached_cq_tail, positions.cq_tail
            )
        })
    })
}

/// For a NO_MMAP ring, the frame numbers of its memory's first pages.
fn user_memory(
    header: &RingRecord,
    frames: Option<&Result<PageFrames, String>>,
) -> Option<UserMemory> {
    if header.flags & SetupFlags::NO_MMAP.bits() == 0 {
        return None;
    }
    let frames = match frames {
        Some(Ok(frames)) => frames,
        Some(Err(why)) => return Some(UserMemory::Unknown(why.clone())),
        None => return Some(UserMemory::Unknown("not looked for".to_owned())),
    };
    Some(
        match (
            frames.frame_of(header.rings_page),
            frames.frame_of(header.sqes_page),
        ) {
            (Some(rings), Some(sqes)) => UserMemory::Frames { rings, sqes },
            _ => UserMemory::Unknown(
                "the kernel did not show the ring's pages (this kernel keeps them where the dumper does not look)"
                    .to_owned(),
            ),
        },
    )
}

/// The ring's overflow list, when the program walked all of it and every
/// record of it came.
fn overflow_cqes(header: &RingRecord, records: &[OverflowCqeRecord]) -> Known<Vec<Cqe>> {
    let cqe32 = header.flags & SetupFlags::CQE32.bits() != 0;
    match header.overflow_listed {
        Some(listed) if listed as usize == records.len() => Known::Known(
            records
                .iter()
                .map(|record| Cqe {
                    user_data: record.user_data,
                    res: record.res,
                    flags: record.flags,
                    extra: cqe32.then_some(record.extra),
                })
                .collect(),
        ),
        _ => Known::Unknown,
    }
}

/// Where a slot record of `table` at `index` goes: the current chunk's
/// ring, when the slot lies in that chunk.
fn slot_target(
    current: &Option<(u64, Table, std::ops::Range<u32>)>,
    table: Table,
    index: u32,
) -> Result<u64, BpfError> {
    match current {
        Some((ring, current_table, range)) if *current_table == table && range.contains(&index) => {
            Ok(*ring)
        }
        _ => Err(BpfError::Inconsistent {
            pass: Pass::Chunks,
            reason: format!("{table} slot {index} outside the chunk it follows"),
        }),
    }
}

fn role_of(role: Role, private_data: u64) -> RawFileRole {
    match role {
        Role::Ring => RawFileRole::Ring(private_data),
        Role::Eventfd => RawFileRole::Eventfd(private_data),
        Role::Plain => RawFileRole::Plain,
    }
}

/// d_path text as a path: only absolute paths are paths; `pipe:[…]`,
/// `socket:[…]`, `anon_inode:[…]` and the like are not.
fn path_text(bytes: &[u8]) -> Option<String> {
    // Non-UTF-8 bytes in a file name are replaced (U+FFFD): RawFile holds
    // text.
    bytes
        .starts_with(b"/")
        .then(|| String::from_utf8_lossy(bytes).into_owned())
}

/// Appends the record numbered `index` of a ring's list (`what`, of ring
/// `ctx`): the next one is pushed, one already there (an object shown
/// again) is dropped, and one past the next is a gap.
fn append_in_order<T>(
    list: &mut Vec<T>,
    record: T,
    index: u32,
    ctx: u64,
    what: &str,
) -> Result<(), BpfError> {
    let next = list.len();
    match (index as usize).cmp(&next) {
        std::cmp::Ordering::Less => Ok(()),
        std::cmp::Ordering::Equal => {
            list.push(record);
            Ok(())
        }
        std::cmp::Ordering::Greater => Err(BpfError::Inconsistent {
            pass: Pass::Chunks,
            reason: format!("ring {ctx:#x}: {what} {index} came before {what} {next}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_absolute_paths_are_paths() {
        assert_eq!(path_text(b"/dev/null").as_deref(), Some("/dev/null"));
        assert_eq!(path_text(b"pipe:[1234]"), None);
        assert_eq!(path_text(b"anon_inode:[io_uring]"), None);
    }

    #[test]
    fn positions_read_across_a_move_are_torn() {
        // Seen on 6.1 with fio running: the kernel consumed two SQEs the
        // program wrote between the read of the tail and of the head.
        let header = RingRecord {
            ctx: 1,
            sq_data: 0,
            eventfd_ctx: 0,
            eventfd_count: 0,
            inode_number: 0,
            fd: 3,
            flags: 0,
            sq_entries: 8,
            cq_entries: 16,
            sq_thread_idle_jiffies: 0,
            sq_cpu: 0,
            eventfd_async: false,
            eventfd_flags: 0,
            file_slots: 0,
            buffer_slots: 0,
            layout: Layout::RsrcNodes,
            status: ChunkStatus::Ok,
            positions: None,
            owner_tid: Known::Unknown,
            overflow_listed: None,
            rings_page: 0,
            sqes_page: 0,
            page_struct_size: 0,
            in_flight: InFlightCounters::Unknown,
            personalities: None,
            personality_next: 0,
            to_walk: records::ToWalk::default(),
            restrictions: None,
            pbuf_count: None,
            settings: None,
        };
        let at_rest = RingPositions {
            sq_head: u32::MAX,
            cached_sq_head: u32::MAX,
            sq_tail: 7,
            cq_head: 5,
            cq_tail: 21,
            cached_cq_tail: 21,
            ..RingPositions::default()
        };
        assert_eq!(torn_positions(&header, &at_rest), None);
        let torn = RingPositions {
            sq_head: 12945,
            cached_sq_head: 12947,
            sq_tail: 12945,
            ..RingPositions::default()
        };
        assert_eq!(
            torn_positions(&header, &torn).as_deref(),
            Some("SQ head 12947 and tail 12945 are more than 8 apart")
        );
    }

    #[test]
    fn requests_in_flight_follow_the_kernels_counters() {
        let header = |in_flight, positions, overflow_listed| RingRecord {
            ctx: 1,
            sq_data: 0,
            eventfd_ctx: 0,
            eventfd_count: 0,
            inode_number: 0,
            fd: 3,
            flags: 0,
            sq_entries: 8,
            cq_entries: 16,
            sq_thread_idle_jiffies: 0,
            sq_cpu: 0,
            eventfd_async: false,
            eventfd_flags: 0,
            file_slots: 0,
            buffer_slots: 0,
            layout: Layout::FixedFiles,
            status: ChunkStatus::Ok,
            positions,
            owner_tid: Known::Unknown,
            overflow_listed,
            rings_page: 0,
            sqes_page: 0,
            page_struct_size: 0,
            in_flight,
            personalities: None,
            personality_next: 0,
            to_walk: records::ToWalk::default(),
            restrictions: None,
            pbuf_count: None,
            settings: None,
        };
        // 6.16+: allocated less the free cache.
        let allocated = InFlightCounters::Allocated {
            allocated: 16,
            free_cached: 13,
        };
        assert_eq!(in_flight_count(&header(allocated, None, None)), Ok(3));
        let moved = InFlightCounters::Allocated {
            allocated: 8,
            free_cached: 9,
        };
        assert!(in_flight_count(&header(moved, None, None)).is_err());
        // Before: 10 consumed from the SQ, one extra CQE (multishot), 6
        // CQEs posted and 2 on the overflow list: 10 + 1 - 6 - 2 = 3,
        // across the u32 wrap as well.
        let drain = |cq_extra, drain_disabled| InFlightCounters::DrainSequence {
            cq_extra,
            drain_disabled,
        };
        for base in [0u32, u32::MAX - 4] {
            let positions = RingPositions {
                cached_sq_head: base.wrapping_add(10),
                cached_cq_tail: base.wrapping_add(6),
                ..RingPositions::default()
            };
            assert_eq!(
                in_flight_count(&header(drain(1, false), Some(positions), Some(2))),
                Ok(3)
            );
            // A dropped SQE takes one off cq_extra: 10 - 1 - 6 - 2 = 1.
            assert_eq!(
                in_flight_count(&header(drain(u32::MAX, false), Some(positions), Some(2))),
                Ok(1)
            );
            // After IOSQE_CQE_SKIP_SUCCESS the kernel counts nothing.
            assert!(in_flight_count(&header(drain(1, true), Some(positions), Some(2))).is_err());
            // An overflow list too long to walk leaves it unknown.
            assert!(in_flight_count(&header(drain(1, false), Some(positions), None)).is_err());
        }
        assert!(in_flight_count(&header(InFlightCounters::Unknown, None, None)).is_err());
    }

    #[test]
    fn chunks_cover_tables_exactly() {
        let header = RingRecord {
            ctx: 1,
            sq_data: 0,
            eventfd_ctx: 0,
            eventfd_count: 0,
            inode_number: 0,
            fd: 3,
            flags: 0,
            sq_entries: 1,
            cq_entries: 2,
            sq_thread_idle_jiffies: 0,
            sq_cpu: 0,
            eventfd_async: false,
            eventfd_flags: 0,
            file_slots: 19_000,
            buffer_slots: 641,
            layout: Layout::RsrcNodes,
            status: ChunkStatus::Ok,
            positions: None,
            owner_tid: Known::Unknown,
            overflow_listed: None,
            rings_page: 0,
            sqes_page: 0,
            page_struct_size: 0,
            in_flight: InFlightCounters::Unknown,
            personalities: None,
            personality_next: 0,
            to_walk: records::ToWalk::default(),
            restrictions: None,
            pbuf_count: None,
            settings: None,
        };
        let facts = RingFacts {
            header,
            target_fd: 3,
            files: Vec::new(),
            buffers: Vec::new(),
            overflow: Vec::new(),
            pending: Vec::new(),
            pending_listed: None,
            napi_ids: Vec::new(),
            napi_listed: None,
            personalities: vec![None; header.personalities.map_or(0, |(count, _)| count) as usize],
            pbuf_groups: vec![None; header.pbuf_count.unwrap_or(0) as usize],
            legacy: BTreeMap::new(),
            file_tags: BTreeMap::new(),
            buffer_tags: BTreeMap::new(),
            answered: HashSet::new(),
        };
        let chunks: Vec<(Table, u32, u32)> = facts
            .planned_chunks()
            .iter()
            .filter_map(|c| match c.want {
                Want::Chunk {
                    table,
                    start,
                    count,
                } => Some((table, start, count)),
                Want::Ring
                | Want::Probe
                | Want::WalkCounts
                | Want::Pending
                | Want::NapiIds
                | Want::LegacyBuffers { .. } => None,
            })
            .collect();
        let files: u32 = chunks
            .iter()
            .filter(|c| c.0 == Table::Files)
            .map(|c| c.2)
            .sum();
        let buffers: Vec<_> = chunks
            .iter()
            .filter(|c| c.0 == Table::Buffers)
            .map(|c| (c.1, c.2))
            .collect();
        assert_eq!(files, 19_000);
        assert_eq!(buffers, vec![(0, 600), (600, 41)]);
        assert!(chunks.iter().all(|c| c.2 > 0));
    }

    /// A legacy group of 1,300 buffers read in three ranges (the first
    /// answer walks it all and gives checkpoints at 600 and 1,200): the
    /// buffers when every later range ends where the next checkpoint (or
    /// the head, with the whole list's hash) says, and unknown, not
    /// spliced, when one does not.
    mod legacy_ranges {
        use super::*;
        use crate::bpf::records::{
            LegacyBufferRecord, LegacyCheckpointRecord, LegacyListRecord, LegacyListState,
            LegacyStart, LEGACY_BUFFERS_PER_CHUNK,
        };

        const RING: u64 = 0x1000;
        const HEAD: u64 = 0x2000;
        const LENGTH: u32 = 1300;

        fn node(position: u32) -> u64 {
            0x10_0000 + u64::from(position) * 64
        }

        /// The list's hash up to `position`, as opaque to the dumper as
        /// the walk's.
        fn hash(position: u32) -> u64 {
            u64::from(position) * 7919 + 1
        }

        fn reading() -> Reading {
            let mut reading = Reading::default();
            let header = RingRecord {
                ctx: RING,
                sq_data: 0,
                eventfd_ctx: 0,
                eventfd_count: 0,
                inode_number: 0,
                fd: 3,
                flags: 0,
                sq_entries: 1,
                cq_entries: 2,
                sq_thread_idle_jiffies: 0,
                sq_cpu: 0,
                eventfd_async: false,
                eventfd_flags: 0,
                file_slots: 0,
                buffer_slots: 0,
                layout: Layout::RsrcNodes,
                status: ChunkStatus::Ok,
                positions: None,
                owner_tid: Known::Unknown,
                overflow_listed: None,
                rings_page: 0,
                sqes_page: 0,
                page_struct_size: 0,
                in_flight: InFlightCounters::Unknown,
                personalities: None,
                personality_next: 0,
                to_walk: records::ToWalk::default(),
                restrictions: None,
                pbuf_count: None,
                settings: None,
            };
            reading.rings.insert(
                RING,
                RingFacts {
                    header,
                    target_fd: 3,
                    files: Vec::new(),
                    buffers: Vec::new(),
                    overflow: Vec::new(),
                    pending: Vec::new(),
                    pending_listed: None,
                    napi_ids: Vec::new(),
                    napi_listed: None,
                    personalities: Vec::new(),
                    pbuf_groups: Vec::new(),
                    legacy: BTreeMap::new(),
                    file_tags: BTreeMap::new(),
                    buffer_tags: BTreeMap::new(),
                    answered: HashSet::new(),
                },
            );
            reading
        }

        fn request(start: u32, from: LegacyStart) -> Request {
            let null = std::fs::File::open("/dev/null").expect("/dev/null");
            Request {
                local_fd: null.into(),
                expected_ctx: RING,
                by_pointer: false,
                want: Want::LegacyBuffers {
                    bgid: 7,
                    start,
                    count: LEGACY_BUFFERS_PER_CHUNK,
                    from,
                },
            }
        }

        fn buffers(range: std::ops::Range<u32>) -> Vec<LegacyBufferRecord> {
            range
                .map(|position| LegacyBufferRecord {
                    bgid: 7,
                    index: position,
                    buffer: ringplan_image::LegacyBuffer {
                        addr: 0x7000_0000 + u64::from(position) * 64,
                        len: 64,
                        bid: u16::try_from(position).unwrap_or(u16::MAX),
                    },
                })
                .collect()
        }

        /// The answer for `request`: its range, stopped at `end` (the head
        /// when `end` is the list's length).
        fn answer(
            request: &Request,
            start: u32,
            end: u32,
            state: LegacyListState,
        ) -> LegacyListRecord {
            LegacyListRecord {
                ctx: RING,
                fd: fd_number(&request.local_fd),
                status: ChunkStatus::Ok,
                bgid: 7,
                start,
                written: end.min(start + LEGACY_BUFFERS_PER_CHUNK) - start,
                length: end,
                fingerprint: hash(end),
                head: HEAD,
                next: if end == LENGTH { HEAD } else { node(end) },
                visited: end - start,
                state,
            }
        }

        /// The first answer applied; the later ranges it plans.
        fn first(reading: &mut Reading) -> Vec<(u32, LegacyStart)> {
            let first = request(0, LegacyStart::default());
            let checkpoints: Vec<LegacyCheckpointRecord> = [600, 1200]
                .into_iter()
                .map(|index| LegacyCheckpointRecord {
                    bgid: 7,
                    index,
                    node: node(index),
                    prev: node(index - 1),
                    fingerprint: hash(index),
                })
                .collect();
            let list = answer(&first, 0, LENGTH, LegacyListState::Whole);
            reading
                .add_legacy_list(1, &list, Some(&first), &buffers(0..600), &checkpoints)
                .expect("the first answer");
            reading.rings[&RING]
                .legacy_rest_ranges()
                .iter()
                .filter_map(|planned| match planned.want {
                    Want::LegacyBuffers { start, from, .. } => Some((start, from)),
                    _ => None,
                })
                .collect()
        }

        /// Applies the later ranges' answers, `change` altering each.
        fn read_with(
            change: impl Fn(u32, &mut LegacyListRecord),
        ) -> Result<Vec<ringplan_image::LegacyBuffer>, String> {
            let mut reading = reading();
            let ranges = first(&mut reading);
            assert_eq!(
                ranges,
                [600, 1200].map(|start| (
                    start,
                    LegacyStart {
                        head: HEAD,
                        node: node(start),
                        prev: node(start - 1),
                        fingerprint: hash(start),
                    }
                )),
            );
            for (start, from) in ranges {
                let asked = request(start, from);
                let end = (start + LEGACY_BUFFERS_PER_CHUNK).min(LENGTH);
                let state = if end == LENGTH {
                    LegacyListState::Whole
                } else {
                    LegacyListState::Part
                };
                let mut list = answer(&asked, start, end, state);
                change(start, &mut list);
                let written = buffers(start..start + list.written);
                reading
                    .add_legacy_list(1, &list, Some(&asked), &written, &[])
                    .expect("a later answer");
            }
            assert_eq!(reading.legacy_nodes_visited, u64::from(LENGTH) + 700);
            reading.rings[&RING].legacy_buffers(7)
        }

        #[test]
        fn ranges_that_end_at_the_next_checkpoint_make_the_whole_list() {
            let list = read_with(|_, _| {}).expect("the buffers");
            let bids: Vec<u16> = list.iter().map(|buffer| buffer.bid).collect();
            assert_eq!(bids, (0..1300).collect::<Vec<u16>>());
        }

        #[test]
        fn a_range_that_ends_elsewhere_leaves_the_list_unknown() {
            let changed = "its list changed between the reads of its parts";
            // Its hash differs from the next checkpoint's.
            let why = read_with(|start, list| {
                if start == 600 {
                    list.fingerprint ^= 1;
                }
            });
            assert_eq!(why.err().as_deref(), Some(changed));
            // It stops at another node.
            let why = read_with(|start, list| {
                if start == 600 {
                    list.next = node(1199);
                }
            });
            assert_eq!(why.err().as_deref(), Some(changed));
            // The last range does not reach the head: the list grew.
            let why = read_with(|start, list| {
                if start == 1200 {
                    list.state = LegacyListState::Part;
                    list.length = 1800;
                    list.written = 600;
                    list.next = node(1800);
                }
            });
            assert_eq!(why.err().as_deref(), Some(changed));
            // Its start no longer follows its checkpoint's node.
            let why = read_with(|start, list| {
                if start == 1200 {
                    list.state = LegacyListState::Moved;
                    list.written = 0;
                }
            });
            assert_eq!(why.err().as_deref(), Some(changed));
        }
    }
}
