//! The BPF backend: reads a live process's io_uring state with mainline BPF
//! `iter/task_file` iterators and CO-RE reads of `io_ring_ctx`.
//!
//! The BPF side is `bpf/ringplan.bpf.c` (built by build.rs into a libbpf-rs
//! skeleton); it writes binary records (`bpf/ringplan_records.h`, parsed by
//! `bpf/records.rs`). A read takes two passes:
//!
//! - **Pass A** iterates the *target's* fds (the link is parameterised with
//!   the target's pidfd, kernel 6.1+). For every fd: the file's identity
//!   (`struct file` address), flags, position, mode, the fd's close-on-exec
//!   bit, the `d_path` text, and its role (ring or eventfd, from its
//!   anon-inode name). For a ring fd also the ring's setup (`ctx->flags`,
//!   entries, SQ thread, per-ring SQ idle, eventfd, table sizes).
//! - **Pass B** reads the registered file and buffer tables. One iterator
//!   object (one fd visit) can write at most 32 KiB (the bpf_iter seq
//!   buffer), far less than a table of 19,000 files needs. So the dumper
//!   copies one fd of each ring into itself (`pidfd_getfd`, which also keeps
//!   the ring alive), duplicates it once per chunk of at most a few hundred
//!   slots, writes one request per local fd into a BPF hash map, and
//!   iterates *its own* fds: each duplicate's visit writes its chunk.
//!
//! Reads are sized so the kernel never has to show an object twice (see
//! ringplan_records.h), and the programs have no side effects that a
//! re-show could repeat; this side still drops duplicate records (fds by
//! number, rings by address, slots by table and index) and checks that every
//! chunk it asked for was answered.
//!
//! A registered file that no fd of the target holds has no trusted pointer
//! for `bpf_d_path`, so its path comes from the ring's fdinfo
//! (`bpf/user_files.rs`), read only when such a file exists.
//!
//! SQ idle is kept in jiffies; it is converted with `CONFIG_HZ` from the
//! kernel config (libbpf's `__kconfig`). Where no config is readable, the
//! dumper measures HZ: it sets up its own SQPOLL ring with a 1000 ms idle
//! and reads back that ring's `sq_thread_idle`, which is then HZ. If that
//! fails too, SQPOLL rings come back with `idle_known: false`.
//!
//! The target must be quiescent for the result to be consistent (the
//! tables are read without the ring's lock); a table whose size changed
//! between the passes is reported as [`BpfError::TargetChanged`].

mod records;
mod skeleton;
mod user_files;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, Read};
use std::mem::{ManuallyDrop, MaybeUninit};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;

use libbpf_rs::libbpf_sys;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{AsRawLibbpf, Iter, Link, MapCore, MapFlags, OpenObject};
use ringplan_image::{setup_flags, Buffer, MAX_BUFFER_SLOTS, MAX_FILE_SLOTS};

use crate::raw::{Known, RawEventfd, RawFd, RawFile, RawFileRole, RawRing, RawRingEventfd, RawState};
use records::{
    BufferSlotRecord, ChunkRecord, ChunkStatus, EventfdRecord, FdRecord, FileSlotRecord, Layout, Record, Records,
    RingRecord, Role, Table,
};
use skeleton::{RingplanSkel, RingplanSkelBuilder};

/// Chunk requests per pass-B iterator run. Each costs the dumper one fd for
/// the duration of the run, so this also bounds the fds the dumper opens.
const CHUNKS_PER_ROUND: usize = 256;
const _: () = assert!(CHUNKS_PER_ROUND <= records::MAX_CHUNK_REQUESTS);
/// The SQ idle, in ms, of the ring the dumper sets up to measure HZ.
const HZ_PROBE_IDLE_MS: u32 = 1000;

/// Why the BPF backend could not read a process.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    /// BPF cannot be used here (no BPF, no BTF, not privileged, or the
    /// program does not verify on this kernel). A caller should fall back
    /// to another backend.
    #[error("BPF is unavailable: {stage}: {source}")]
    Unavailable {
        stage: &'static str,
        #[source]
        source: libbpf_rs::Error,
    },
    /// The kernel's io_uring structures lack a field the program reads.
    #[error("kernel layout not recognised: missing field {field}")]
    LayoutNotRecognised { field: String },
    /// `pidfd_getfd` was refused.
    #[error(
        "permission denied copying fd {fd} of pid {pid} (pidfd_getfd): reading registered files and buffers \
         needs ptrace rights over the target (same user with ptrace allowed by Yama, or CAP_SYS_PTRACE)"
    )]
    PermissionDenied { pid: u32, fd: i32 },
    /// Attaching an iterator link failed.
    #[error("attaching the {pass} iterator to pid {pid}: {source}")]
    Attach {
        pass: Pass,
        pid: u32,
        #[source]
        source: io::Error,
    },
    /// Creating or reading an iterator failed.
    #[error("reading the {pass} iterator: {source}")]
    IterRead {
        pass: Pass,
        #[source]
        source: io::Error,
    },
    /// The BPF program wrote something this side cannot parse.
    #[error("malformed record from the {pass} iterator at byte {offset}: {reason}")]
    MalformedRecord { pass: Pass, offset: usize, reason: String },
    /// The records parse but do not fit together (a bug on one side).
    #[error("inconsistent records from the {pass} iterator: {reason}")]
    Inconsistent { pass: Pass, reason: String },
    /// The target changed between the two passes (an fd closed, a table
    /// resized, the process exited).
    #[error("pid {pid} changed while it was read: {what}")]
    TargetChanged { pid: u32, what: String },
    /// A chunk of a registered table was asked for and not answered.
    #[error("the {table} table of ring {ring:#x} came back incomplete: slots {start}..{end} missing")]
    IncompleteTable { ring: u64, table: String, start: u32, end: u32 },
    /// A registered buffer slot holds a kernel-owned buffer (e.g. ublk's),
    /// which an image cannot describe.
    #[error("ring {ring:#x} buffer slot {index} holds a kernel-owned buffer, which cannot be checkpointed")]
    KernelBuffer { ring: u64, index: u32 },
    /// A system call of the dumper's own failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    /// The chunk request map could not be written.
    #[error("writing the chunk request map: {source}")]
    RequestMap {
        #[source]
        source: libbpf_rs::Error,
    },
    /// HZ is not in the kernel config and measuring it failed.
    #[error("CONFIG_HZ is unknown and measuring it failed: {reason}")]
    MeasureHz { reason: String },
}

impl BpfError {
    /// Whether BPF cannot read this kernel at all (the program does not
    /// load, or the io_uring layout is unknown), so that falling back to
    /// another backend is the right response.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, BpfError::Unavailable { .. } | BpfError::LayoutNotRecognised { .. })
    }
}

/// Which iterator an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Pass A: the target's fds.
    TargetFds,
    /// Pass B: the dumper's own fds, answering chunk requests.
    Chunks,
}

impl std::fmt::Display for Pass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Pass::TargetFds => "target-fd (pass A)",
            Pass::Chunks => "chunk (pass B)",
        })
    }
}

/// A loaded BPF reader, reusable for several dumps.
pub struct BpfDumper {
    skeleton: LoadedSkeleton,
    /// The dumper's pid as its own pid namespace numbers it (what a task
    /// iterator link's `pid` means).
    self_pid: u32,
    /// HZ measured once, when the kernel config does not say.
    measured_hz: Option<u32>,
}

impl BpfDumper {
    /// Loads and verifies the BPF programs. Fails with
    /// [`BpfError::Unavailable`] when BPF cannot be used, or
    /// [`BpfError::LayoutNotRecognised`] when the kernel's io_uring
    /// structures lack a field the program reads.
    pub fn load() -> Result<BpfDumper, BpfError> {
        let self_pid = rustix::process::getpid().as_raw_nonzero().get().unsigned_abs();
        let dumper = BpfDumper { skeleton: LoadedSkeleton::load()?, self_pid, measured_hz: None };
        // Kernels before 6.1 load the program but refuse a task iterator
        // limited to one process; find out now, while a caller can still
        // choose another backend. The link is dropped unused.
        let mut link_info = libbpf_sys::bpf_iter_link_info::default();
        link_info.task.pid = self_pid;
        let probe_link =
            attach_task_iterator(&dumper.skeleton.skeleton.progs.ringplan_chunk_fds, link_info).map_err(|error| {
                BpfError::Unavailable {
                    stage: "attaching a task iterator limited to one process (needs Linux 6.1)",
                    source: libbpf_rs::Error::from(error),
                }
            })?;
        drop(probe_link);
        Ok(dumper)
    }

    /// Reads the io_uring state of `pid`. `pidfd` is an open pidfd of the
    /// same process (`pidfd_open`): it picks the process for the iterator
    /// and is the handle `pidfd_getfd` copies ring fds through.
    pub fn read(&mut self, pid: u32, pidfd: BorrowedFd<'_>) -> Result<crate::raw::RawState, BpfError> {
        let target_bytes = self.run_target_pass(pid, pidfd)?;
        let mut reading = Reading::from_target_records(&target_bytes)?;
        self.read_tables(pid, pidfd, &mut reading)?;
        let hz = self.hz_for(&reading);
        reading.fill_slot_only_paths(pid, pidfd)?;
        Ok(reading.into_raw_state(hz))
    }

    /// HZ as the kernel was built with it, measured when the kernel config
    /// is not readable. Exposed for tests and diagnostics.
    pub fn measure_hz(&mut self) -> Result<u32, BpfError> {
        if let Some(hz) = self.measured_hz {
            return Ok(hz);
        }
        let mut params = rustix::io_uring::io_uring_params::default();
        params.flags = rustix::io_uring::IoringSetupFlags::SQPOLL;
        params.sq_thread_idle = HZ_PROBE_IDLE_MS;
        // SAFETY: io_uring_setup only fills `params`; the ring is never
        // mapped or submitted to, so the kernel never writes our memory.
        let probe_ring = unsafe { rustix::io_uring::io_uring_setup(1, &mut params) }
            .map_err(|errno| BpfError::MeasureHz { reason: format!("setting up an SQPOLL ring: {errno}") })?;
        let request = ChunkRequest { local_fd: probe_ring, expected_ctx: 0, table: Table::Files, start: 0, count: 0 };
        let bytes = self.run_chunk_round(std::slice::from_ref(&request))?;
        let mut idle_jiffies = None;
        for record in Records::new(&bytes) {
            let record = record.map_err(|error| malformed(Pass::Chunks, error))?;
            if let Record::Chunk(chunk) = record {
                if chunk.fd == fd_number(&request.local_fd) && chunk.status == ChunkStatus::Ok {
                    idle_jiffies = Some(chunk.sq_thread_idle_jiffies);
                }
            }
        }
        // ctx->sq_thread_idle = msecs_to_jiffies(1000) = HZ.
        let hz = idle_jiffies
            .filter(|&jiffies| jiffies > 0)
            .ok_or_else(|| BpfError::MeasureHz { reason: "the probe ring's chunk record did not come back".into() })?;
        self.measured_hz = Some(hz);
        Ok(hz)
    }

    /// HZ for converting the SQ idle of this reading's rings: from the
    /// kernel config, else measured. `None` when neither works (the rings'
    /// idle is then reported unknown rather than failing the dump), or when
    /// no ring has SQPOLL and nothing needs converting.
    fn hz_for(&mut self, reading: &Reading) -> Option<u32> {
        let needs_hz = reading.rings.values().any(|ring| ring.header.flags & setup_flags::SQPOLL != 0);
        let configured = reading.rings.values().map(|ring| ring.header.hz).find(|&hz| hz > 0);
        match configured {
            Some(hz) => Some(hz),
            None if needs_hz => self.measure_hz().ok(),
            None => None,
        }
    }

    /// Pass A: the records of every fd of the target.
    fn run_target_pass(&mut self, pid: u32, pidfd: BorrowedFd<'_>) -> Result<Vec<u8>, BpfError> {
        let skeleton = &*self.skeleton.skeleton;
        // The pidfd, not the pid, picks the process: it cannot be reused.
        let mut link_info = libbpf_sys::bpf_iter_link_info::default();
        link_info.task.pid_fd = fd_number(&pidfd);
        let link = attach_task_iterator(&skeleton.progs.ringplan_target_fds, link_info)
            .map_err(|source| BpfError::Attach { pass: Pass::TargetFds, pid, source })?;
        drain_iterator(&link).map_err(|source| BpfError::IterRead { pass: Pass::TargetFds, source })
    }

    /// Pass B, one round: asks for `requests` (keyed by their local fds),
    /// iterates the dumper's own fds, and returns what the program wrote.
    fn run_chunk_round(&mut self, requests: &[ChunkRequest]) -> Result<Vec<u8>, BpfError> {
        let self_pid = self.self_pid;
        let skeleton = &*self.skeleton.skeleton;
        let map = &skeleton.maps.chunk_requests;
        // Requests a failed earlier read left behind would be answered again.
        let stale: Vec<Vec<u8>> = map.keys().collect();
        for key in stale {
            map.delete(&key).map_err(|source| BpfError::RequestMap { source })?;
        }
        let _clear_on_exit = RequestMapGuard { map, keys: requests.iter().map(|r| fd_number(&r.local_fd)).collect() };
        for request in requests {
            let key = fd_number(&request.local_fd).to_ne_bytes();
            let value = records::chunk_request_bytes(request.expected_ctx, request.table, request.start, request.count);
            map.update(&key, &value, MapFlags::ANY).map_err(|source| BpfError::RequestMap { source })?;
        }
        let mut link_info = libbpf_sys::bpf_iter_link_info::default();
        link_info.task.pid = self_pid;
        let link = attach_task_iterator(&skeleton.progs.ringplan_chunk_fds, link_info)
            .map_err(|source| BpfError::Attach { pass: Pass::Chunks, pid: self_pid, source })?;
        drain_iterator(&link).map_err(|source| BpfError::IterRead { pass: Pass::Chunks, source })
    }

    /// Pass B: fills every ring's file and buffer table.
    fn read_tables(&mut self, pid: u32, pidfd: BorrowedFd<'_>, reading: &mut Reading) -> Result<(), BpfError> {
        let plan: Vec<PlannedChunk> = reading.rings.values().flat_map(RingFacts::planned_chunks).collect();
        for round in plan.chunks(CHUNKS_PER_ROUND) {
            // One pidfd_getfd per ring per round; duplicates for its chunks.
            let mut copied: HashMap<u64, OwnedFd> = HashMap::new();
            let mut requests = Vec::with_capacity(round.len());
            for chunk in round {
                let base = match copied.entry(chunk.ring) {
                    std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
                    std::collections::hash_map::Entry::Vacant(entry) => {
                        let target_fd = reading.rings.get(&chunk.ring).map_or(-1, |ring| ring.target_fd);
                        entry.insert(copy_target_fd(pid, pidfd, target_fd)?)
                    }
                };
                let local_fd = rustix::io::fcntl_dupfd_cloexec(&*base, 0).map_err(|errno| BpfError::Io {
                    what: "duplicating a copied ring fd".into(),
                    source: errno.into(),
                })?;
                requests.push(ChunkRequest {
                    local_fd,
                    expected_ctx: chunk.ring,
                    table: chunk.table,
                    start: chunk.start,
                    count: chunk.count,
                });
            }
            let bytes = self.run_chunk_round(&requests)?;
            reading.apply_chunk_records(pid, &bytes, &requests)?;
        }
        reading.check_tables_complete()
    }
}

/// One chunk of a registered table to read in pass B.
#[derive(Debug, Clone, Copy)]
struct PlannedChunk {
    ring: u64,
    table: Table,
    start: u32,
    count: u32,
}

/// A planned chunk with the dumper's local fd that carries it.
struct ChunkRequest {
    local_fd: OwnedFd,
    /// The ring the local fd must refer to; 0 accepts any ring.
    expected_ctx: u64,
    table: Table,
    start: u32,
    count: u32,
}

/// Deletes a round's requests from the map however the round ends.
struct RequestMapGuard<'a, M: MapCore> {
    map: &'a M,
    keys: Vec<u32>,
}

impl<M: MapCore> Drop for RequestMapGuard<'_, M> {
    fn drop(&mut self) {
        for key in &self.keys {
            // Best effort: the next round purges anything left.
            let _ = self.map.delete(&key.to_ne_bytes());
        }
    }
}

/// What pass A and pass B found, before it becomes a [`RawState`].
#[derive(Debug, Default)]
struct Reading {
    fds: BTreeMap<i32, RawFd>,
    files: HashMap<u64, RawFile>,
    /// Files that only pass B saw (no fd of the target holds them): their
    /// path must come from fdinfo. Ring → (slot index, file).
    slot_only_files: BTreeMap<u64, Vec<(u32, u64)>>,
    rings: BTreeMap<u64, RingFacts>,
    eventfds: HashMap<u64, RawEventfd>,
}

#[derive(Debug)]
struct RingFacts {
    header: RingRecord,
    /// The lowest fd of the target that holds this ring.
    target_fd: i32,
    files: Vec<Option<u64>>,
    buffers: Vec<Option<Buffer>>,
    /// Chunks answered, by (table, start): a re-shown chunk is applied once.
    answered: HashSet<(Table, u32)>,
}

impl RingFacts {
    fn planned_chunks(&self) -> Vec<PlannedChunk> {
        let mut chunks = Vec::new();
        for (table, size, per_chunk) in [
            (Table::Files, self.header.file_slots, records::FILE_SLOTS_PER_CHUNK),
            (Table::Buffers, self.header.buffer_slots, records::BUFFER_SLOTS_PER_CHUNK),
        ] {
            let mut start = 0;
            while start < size {
                let count = per_chunk.min(size - start);
                chunks.push(PlannedChunk { ring: self.header.ctx, table, start, count });
                start += count;
            }
        }
        chunks
    }
}

impl Reading {
    /// Pass A's records, deduplicated.
    fn from_target_records(bytes: &[u8]) -> Result<Reading, BpfError> {
        let mut reading = Reading::default();
        for record in Records::new(bytes) {
            match record.map_err(|error| malformed(Pass::TargetFds, error))? {
                Record::Fd(fd) => reading.add_fd(&fd)?,
                Record::Ring(ring) => reading.add_ring(ring)?,
                Record::Eventfd(EventfdRecord { ctx, count, flags, .. }) => {
                    reading.eventfds.entry(ctx).or_insert(RawEventfd { count, flags });
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

    fn add_fd(&mut self, record: &FdRecord<'_>) -> Result<(), BpfError> {
        let fd = i32::try_from(record.fd).map_err(|_| BpfError::Inconsistent {
            pass: Pass::TargetFds,
            reason: format!("fd {} out of range", record.fd),
        })?;
        // The first record for an fd wins: the group leader's table comes
        // first, and a re-shown object repeats the same facts.
        self.fds.entry(fd).or_insert(RawFd { fd, cloexec: record.cloexec, file: record.file });
        self.files.entry(record.file).or_insert_with(|| RawFile {
            role: role_of(record.role, record.private_data),
            path: record.path.and_then(path_text),
            flags: Some(record.flags),
            pos: Some(record.pos),
            mode: Some(record.mode),
        });
        Ok(())
    }

    fn add_ring(&mut self, header: RingRecord) -> Result<(), BpfError> {
        if header.layout == Layout::Unknown {
            return Err(BpfError::LayoutNotRecognised {
                field: "io_ring_ctx.file_table.data (6.18 layout) or io_ring_ctx.nr_user_files (6.1 layout)".into(),
            });
        }
        if header.file_slots > MAX_FILE_SLOTS || header.buffer_slots > MAX_BUFFER_SLOTS {
            return Err(BpfError::Inconsistent {
                pass: Pass::TargetFds,
                reason: format!(
                    "ring {:#x} reports {} file and {} buffer slots, beyond the kernel's limits",
                    header.ctx, header.file_slots, header.buffer_slots
                ),
            });
        }
        if header.eventfd_ctx != 0 {
            self.eventfds
                .entry(header.eventfd_ctx)
                .or_insert(RawEventfd { count: header.eventfd_count, flags: header.eventfd_flags });
        }
        let target_fd = i32::try_from(header.fd).unwrap_or(i32::MAX);
        self.rings.entry(header.ctx).or_insert_with(|| RingFacts {
            header,
            target_fd,
            files: vec![None; header.file_slots as usize],
            buffers: vec![None; header.buffer_slots as usize],
            answered: HashSet::new(),
        });
        Ok(())
    }

    /// Applies one pass-B round's records; every request must be answered.
    fn apply_chunk_records(&mut self, pid: u32, bytes: &[u8], requests: &[ChunkRequest]) -> Result<(), BpfError> {
        let by_local_fd: HashMap<u32, &ChunkRequest> =
            requests.iter().map(|request| (fd_number(&request.local_fd), request)).collect();
        // The chunk whose slot records follow, with its slot range.
        let mut current: Option<(u64, Table, std::ops::Range<u32>)> = None;
        for record in Records::new(bytes) {
            match record.map_err(|error| malformed(Pass::Chunks, error))? {
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

    /// Checks a chunk record against its request and marks it answered;
    /// returns where its slot records go.
    fn accept_chunk(
        &mut self,
        pid: u32,
        chunk: &ChunkRecord,
        request: Option<&ChunkRequest>,
    ) -> Result<Option<(u64, Table, std::ops::Range<u32>)>, BpfError> {
        let Some(request) = request else {
            // A request of an earlier, failed read that survived: ignore it.
            return Ok(None);
        };
        match chunk.status {
            ChunkStatus::Ok => {}
            ChunkStatus::UnknownLayout => {
                return Err(BpfError::LayoutNotRecognised { field: "io_ring_ctx.file_table / buf_table".into() })
            }
            ChunkStatus::NotARing | ChunkStatus::OtherRing => {
                return Err(BpfError::TargetChanged {
                    pid,
                    what: format!("the fd copied for ring {:#x} now refers to something else", request.expected_ctx),
                })
            }
        }
        let Some(ring) = self.rings.get_mut(&request.expected_ctx) else {
            return Ok(None);
        };
        let expected_size = match request.table {
            Table::Files => ring.header.file_slots,
            Table::Buffers => ring.header.buffer_slots,
        };
        if chunk.table != request.table || chunk.start != request.start {
            return Err(BpfError::Inconsistent {
                pass: Pass::Chunks,
                reason: format!("chunk record for fd {} does not match its request", chunk.fd),
            });
        }
        if chunk.table_size != expected_size || chunk.scanned != request.count {
            return Err(BpfError::TargetChanged {
                pid,
                what: format!(
                    "ring {:#x}'s {} table has {} slots now, {} when its fds were read",
                    chunk.ctx, chunk.table, chunk.table_size, expected_size
                ),
            });
        }
        ring.answered.insert((chunk.table, chunk.start));
        let end = chunk.start.saturating_add(chunk.scanned);
        Ok(Some((chunk.ctx, chunk.table, chunk.start..end)))
    }

    fn add_file_slot(&mut self, ring: u64, slot: &FileSlotRecord) {
        let Some(facts) = self.rings.get_mut(&ring) else { return };
        let Some(entry) = facts.files.get_mut(slot.index as usize) else { return };
        *entry = Some(slot.file);
        if slot.role == Role::Eventfd && slot.private_data != 0 {
            self.eventfds
                .entry(slot.private_data)
                .or_insert(RawEventfd { count: slot.eventfd_count, flags: slot.eventfd_flags });
        }
        if let std::collections::hash_map::Entry::Vacant(entry) = self.files.entry(slot.file) {
            entry.insert(RawFile {
                role: role_of(slot.role, slot.private_data),
                path: None,
                flags: Some(slot.flags),
                pos: Some(slot.pos),
                mode: Some(slot.mode),
            });
            self.slot_only_files.entry(ring).or_default().push((slot.index, slot.file));
        }
    }

    fn add_buffer_slot(&mut self, ring: u64, slot: &BufferSlotRecord) -> Result<(), BpfError> {
        if slot.kernel_buffer {
            return Err(BpfError::KernelBuffer { ring, index: slot.index });
        }
        if let Some(entry) = self.rings.get_mut(&ring).and_then(|facts| facts.buffers.get_mut(slot.index as usize)) {
            *entry = Some(Buffer { addr: slot.addr, len: slot.len });
        }
        Ok(())
    }

    /// Every planned chunk of every ring must have been answered.
    fn check_tables_complete(&self) -> Result<(), BpfError> {
        for facts in self.rings.values() {
            for chunk in facts.planned_chunks() {
                if !facts.answered.contains(&(chunk.table, chunk.start)) {
                    return Err(BpfError::IncompleteTable {
                        ring: chunk.ring,
                        table: chunk.table.to_string(),
                        start: chunk.start,
                        end: chunk.start + chunk.count,
                    });
                }
            }
        }
        Ok(())
    }

    /// Paths of files only a ring's table holds, from that ring's fdinfo.
    fn fill_slot_only_paths(&mut self, pid: u32, pidfd: BorrowedFd<'_>) -> Result<(), BpfError> {
        for (ring, slots) in &self.slot_only_files {
            let Some(target_fd) = self.rings.get(ring).map(|facts| facts.target_fd) else { continue };
            let local = copy_target_fd(pid, pidfd, target_fd)?;
            let fdinfo_path = format!("/proc/self/fdinfo/{}", local.as_raw_fd());
            let text = std::fs::read(&fdinfo_path)
                .map_err(|source| BpfError::Io { what: format!("reading {fdinfo_path}"), source })?;
            let rows = user_files::parse_user_files(&text);
            for (index, file) in slots {
                let path = rows.get(index).and_then(|bytes| path_text(bytes));
                if let Some(raw_file) = self.files.get_mut(file) {
                    raw_file.path = path;
                }
            }
        }
        Ok(())
    }

    /// The final state. `hz` converts SQ idle from jiffies; `None` leaves the
    /// SQPOLL rings' idle unknown.
    fn into_raw_state(self, hz: Option<u32>) -> RawState {
        let rings = self
            .rings
            .into_iter()
            .map(|(ctx, facts)| {
                let header = facts.header;
                let sqpoll = header.flags & setup_flags::SQPOLL != 0;
                let has_sq_thread = sqpoll && header.sq_data != 0;
                let eventfd = if header.eventfd_ctx != 0 {
                    Some(RawRingEventfd { eventfd: header.eventfd_ctx, is_async: header.eventfd_async })
                } else {
                    None
                };
                let ring = RawRing {
                    inode: Some(header.inode_number),
                    flags: Some(header.flags),
                    sq_entries: header.sq_entries,
                    cq_entries: header.cq_entries,
                    sq_thread: has_sq_thread.then_some(header.sq_data),
                    sq_thread_cpu: if has_sq_thread { u32::try_from(header.sq_cpu).ok() } else { None },
                    sq_thread_idle_ms: hz.filter(|_| sqpoll).map(|hz| jiffies_to_ms(header.sq_thread_idle_jiffies, hz)),
                    idle_known: !sqpoll || hz.is_some(),
                    eventfd: Known::Known(eventfd),
                    files: facts.files,
                    buffers: facts.buffers,
                };
                (ctx, ring)
            })
            .collect();
        RawState { fds: self.fds.into_values().collect(), files: self.files, rings, eventfds: self.eventfds }
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
        Some((ring, current_table, range)) if *current_table == table && range.contains(&index) => Ok(*ring),
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
    bytes.starts_with(b"/").then(|| String::from_utf8_lossy(bytes).into_owned())
}

/// `jiffies * 1000 / HZ`, saturating: the kernel got jiffies from a u32 of
/// milliseconds (rounded up), so this fits except at the very top. `hz` is
/// never 0 here (a 0 from the config means "unknown" and is measured).
fn jiffies_to_ms(jiffies: u32, hz: u32) -> u32 {
    let ms = u64::from(jiffies) * 1000 / u64::from(hz.max(1));
    u32::try_from(ms).unwrap_or(u32::MAX)
}

fn malformed(pass: Pass, error: records::MalformedRecord) -> BpfError {
    BpfError::MalformedRecord { pass, offset: error.offset, reason: error.reason }
}

fn fd_number(fd: &impl AsFd) -> u32 {
    // fds are never negative.
    fd.as_fd().as_raw_fd().unsigned_abs()
}

/// Copies fd `target_fd` of the target into the dumper (`pidfd_getfd`).
fn copy_target_fd(pid: u32, pidfd: BorrowedFd<'_>, target_fd: i32) -> Result<OwnedFd, BpfError> {
    rustix::process::pidfd_getfd(pidfd, target_fd, rustix::process::PidfdGetfdFlags::empty()).map_err(|errno| {
        match errno {
            rustix::io::Errno::PERM | rustix::io::Errno::ACCESS => BpfError::PermissionDenied { pid, fd: target_fd },
            rustix::io::Errno::BADF => {
                BpfError::TargetChanged { pid, what: format!("fd {target_fd} was closed after it was listed") }
            }
            rustix::io::Errno::SRCH => BpfError::TargetChanged { pid, what: "the process exited".into() },
            other => BpfError::Io {
                what: format!("copying fd {target_fd} of pid {pid} (pidfd_getfd)"),
                source: other.into(),
            },
        }
    })
}

/// Attaches `program` as a task_file iterator limited by `link_info`
/// (libbpf-rs 0.27 has no safe wrapper for task iterator parameters).
fn attach_task_iterator(
    program: &libbpf_rs::ProgramMut<'_>,
    mut link_info: libbpf_sys::bpf_iter_link_info,
) -> io::Result<Link> {
    let options = libbpf_sys::bpf_iter_attach_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_iter_attach_opts>() as libbpf_sys::size_t,
        link_info: &mut link_info,
        link_info_len: std::mem::size_of::<libbpf_sys::bpf_iter_link_info>() as u32,
        ..Default::default()
    };
    // SAFETY: the program pointer comes from a loaded skeleton that outlives
    // this call; `options` and the `link_info` it points to live until the
    // call returns, and the kernel copies the link info.
    let link = unsafe { libbpf_sys::bpf_program__attach_iter(program.as_libbpf_object().as_ptr(), &options) };
    let link = NonNull::new(link).ok_or_else(io::Error::last_os_error)?;
    // SAFETY: libbpf just created this link and hands its ownership to us.
    Ok(unsafe { Link::from_ptr(link) })
}

/// Reads an iterator to its end, RP_READ_BUFFER_SIZE bytes at a time (the
/// size that keeps the kernel from re-showing objects).
fn drain_iterator(link: &Link) -> io::Result<Vec<u8>> {
    let mut iterator = Iter::new(link).map_err(|error| io::Error::other(error.to_string()))?;
    let mut bytes = Vec::new();
    let mut buffer = vec![0u8; records::READ_BUFFER_SIZE];
    loop {
        match iterator.read(&mut buffer) {
            Ok(0) => return Ok(bytes),
            Ok(read) => bytes.extend_from_slice(buffer.get(..read).unwrap_or(&buffer)),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        }
    }
}

/// The loaded skeleton and the heap slot its object lives in.
///
/// libbpf-rs skeletons borrow a caller-provided `MaybeUninit<OpenObject>`
/// for their whole life; to keep a loaded skeleton in a struct, the slot is
/// a heap allocation this struct owns and frees after the skeleton is gone.
struct LoadedSkeleton {
    skeleton: ManuallyDrop<RingplanSkel<'static>>,
    object_slot: NonNull<MaybeUninit<OpenObject>>,
}

// SAFETY: the skeleton is Send (libbpf-rs says so), and the slot is an
// allocation only this struct refers to.
unsafe impl Send for LoadedSkeleton {}

impl LoadedSkeleton {
    fn load() -> Result<LoadedSkeleton, BpfError> {
        let object_slot = NonNull::from(Box::leak(Box::new(MaybeUninit::<OpenObject>::uninit())));
        // SAFETY: the slot is a fresh allocation nothing else refers to. It is
        // freed only after the skeleton that borrows it is dropped (in Drop,
        // or below once open_and_load has returned), so the 'static borrow
        // never outlives it.
        let slot: &'static mut MaybeUninit<OpenObject> = unsafe { &mut *object_slot.as_ptr() };
        match open_and_load(slot) {
            Ok(skeleton) => Ok(LoadedSkeleton { skeleton: ManuallyDrop::new(skeleton), object_slot }),
            Err(error) => {
                // SAFETY: open_and_load returned, so its skeleton (and the
                // object it kept in the slot) is gone; only the allocation is
                // left, and MaybeUninit drops nothing.
                drop(unsafe { Box::from_raw(object_slot.as_ptr()) });
                Err(error)
            }
        }
    }
}

impl Drop for LoadedSkeleton {
    fn drop(&mut self) {
        // SAFETY: the skeleton goes first (it closes the BPF object kept in
        // the slot), then the slot, which nothing refers to any more.
        unsafe {
            ManuallyDrop::drop(&mut self.skeleton);
            drop(Box::from_raw(self.object_slot.as_ptr()));
        }
    }
}

fn open_and_load(slot: &'static mut MaybeUninit<OpenObject>) -> Result<RingplanSkel<'static>, BpfError> {
    let open = RingplanSkelBuilder::default()
        .open(slot)
        .map_err(|source| BpfError::Unavailable { stage: "opening the BPF object", source })?;
    open.load().map_err(|source| match layout::missing_field() {
        Some(field) => BpfError::LayoutNotRecognised { field },
        None => BpfError::Unavailable { stage: "loading and verifying the BPF program", source },
    })
}

/// Explains a failed load: which field the program reads is missing from
/// the kernel's BTF, if any.
mod layout {
    use libbpf_rs::btf::types::{Composite, Struct};
    use libbpf_rs::btf::BtfType;
    use libbpf_rs::Btf;

    /// Fields every kernel must have, as (struct, member).
    pub(super) const ALWAYS: &[(&str, &str)] = &[
        ("file", "f_path"),
        ("file", "f_inode"),
        ("file", "f_flags"),
        ("file", "f_pos"),
        ("file", "private_data"),
        ("inode", "i_mode"),
        ("inode", "i_ino"),
        ("dentry", "d_parent"),
        ("dentry", "d_name"),
        ("qstr", "name"),
        ("task_struct", "tgid"),
        ("task_struct", "files"),
        ("files_struct", "fdt"),
        ("fdtable", "close_on_exec"),
        ("io_ring_ctx", "flags"),
        ("io_ring_ctx", "sq_thread_idle"),
        ("io_ring_ctx", "sq_entries"),
        ("io_ring_ctx", "cq_entries"),
        ("io_ring_ctx", "sq_data"),
        ("io_ring_ctx", "io_ev_fd"),
        ("io_ring_ctx", "file_table"),
        ("io_sq_data", "sq_cpu"),
        ("io_ev_fd", "cq_ev_fd"),
        ("io_ev_fd", "eventfd_async"),
        ("eventfd_ctx", "count"),
        ("eventfd_ctx", "flags"),
        ("io_mapped_ubuf", "ubuf"),
    ];
    /// Table fields of the 6.18 (io_rsrc_node) layout.
    pub(super) const RSRC_NODES: &[(&str, &str)] = &[
        ("io_file_table", "data"),
        ("io_ring_ctx", "buf_table"),
        ("io_rsrc_data", "nr"),
        ("io_rsrc_data", "nodes"),
        ("io_rsrc_node", "file_ptr"),
        ("io_rsrc_node", "buf"),
        ("io_mapped_ubuf", "len"),
    ];
    /// Table fields of 6.1-era kernels.
    pub(super) const FIXED_FILES: &[(&str, &str)] = &[
        ("io_file_table", "files"),
        ("io_ring_ctx", "nr_user_files"),
        ("io_ring_ctx", "nr_user_bufs"),
        ("io_ring_ctx", "user_bufs"),
        ("io_mapped_ubuf", "ubuf_end"),
    ];

    /// The first field the program needs that the running kernel's BTF
    /// lacks, as `struct.member`; `None` when all are there (or BTF cannot
    /// be read, in which case the load error says enough).
    pub(super) fn missing_field() -> Option<String> {
        let btf = Btf::from_vmlinux().ok()?;
        missing_field_in(&btf, ALWAYS, &[("6.18", RSRC_NODES), ("6.1", FIXED_FILES)])
    }

    /// The first of `always` that `btf` lacks; else, when every one of the
    /// `alternatives` (named layouts) lacks a field, those fields.
    pub(super) fn missing_field_in(
        btf: &Btf<'_>,
        always: &[(&str, &str)],
        alternatives: &[(&str, &[(&str, &str)])],
    ) -> Option<String> {
        let missing = |fields: &[(&str, &str)]| -> Option<String> {
            fields
                .iter()
                .find(|(structure, member)| !has_member(btf, structure, member))
                .map(|(structure, member)| format!("{structure}.{member}"))
        };
        if let Some(field) = missing(always) {
            return Some(field);
        }
        let mut lacking = Vec::new();
        for (name, fields) in alternatives {
            match missing(fields) {
                Some(field) => lacking.push(format!("{field} ({name} layout)")),
                None => return None,
            }
        }
        (!lacking.is_empty()).then(|| lacking.join(" or "))
    }

    pub(super) fn has_member(btf: &Btf<'_>, structure: &str, member: &str) -> bool {
        btf.type_by_kind::<Struct<'_>>()
            .filter(|candidate| candidate.name().is_some_and(|name| name == structure))
            .any(|candidate| composite_has_member(btf, &Composite::from(candidate), member, 0))
    }

    /// Looks through anonymous struct and union members too, as CO-RE does.
    fn composite_has_member(btf: &Btf<'_>, composite: &Composite<'_>, member: &str, depth: u32) -> bool {
        if depth > 8 {
            return false;
        }
        composite.iter().any(|candidate| match candidate.name {
            Some(name) if !name.is_empty() => name == member,
            _ => btf
                .type_by_id::<BtfType<'_>>(candidate.ty)
                .map(|ty| ty.skip_mods_and_typedefs())
                .and_then(|ty| Composite::try_from(ty).ok())
                .is_some_and(|inner| composite_has_member(btf, &inner, member, depth + 1)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The load-failure diagnosis must find every field on a kernel where
    /// the program loads, or it would blame a field for an unrelated error.
    #[test]
    fn layout_diagnosis_finds_every_field_of_this_kernel() {
        let Ok(btf) = libbpf_rs::Btf::from_vmlinux() else {
            eprintln!("no vmlinux BTF here; skipping");
            return;
        };
        assert_eq!(layout::missing_field(), None);
        // Members inside anonymous structs and unions count.
        assert!(layout::has_member(&btf, "io_ring_ctx", "flags"));
        assert!(layout::has_member(&btf, "file", "f_path"));
        // A layout this kernel lacks is named, and so is a missing field.
        let neither: &[(&str, &[(&str, &str)])] =
            &[("imaginary", &[("io_ring_ctx", "no_such_member")]), ("other", &[("no_such_struct", "x")])];
        assert_eq!(
            layout::missing_field_in(&btf, layout::ALWAYS, neither).as_deref(),
            Some("io_ring_ctx.no_such_member (imaginary layout) or no_such_struct.x (other layout)")
        );
        assert_eq!(
            layout::missing_field_in(&btf, &[("io_sq_data", "sq_cpu"), ("io_sq_data", "gone")], &[]).as_deref(),
            Some("io_sq_data.gone")
        );
    }

    #[test]
    fn jiffies_convert_to_ms() {
        assert_eq!(jiffies_to_ms(375, 250), 1500);
        assert_eq!(jiffies_to_ms(250, 250), 1000);
        assert_eq!(jiffies_to_ms(1, 250), 4);
        assert_eq!(jiffies_to_ms(u32::MAX, 100), u32::MAX);
    }

    #[test]
    fn only_absolute_paths_are_paths() {
        assert_eq!(path_text(b"/dev/null").as_deref(), Some("/dev/null"));
        assert_eq!(path_text(b"pipe:[1234]"), None);
        assert_eq!(path_text(b"anon_inode:[io_uring]"), None);
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
            hz: 250,
        };
        let facts =
            RingFacts { header, target_fd: 3, files: Vec::new(), buffers: Vec::new(), answered: HashSet::new() };
        let chunks = facts.planned_chunks();
        let files: u32 = chunks.iter().filter(|c| c.table == Table::Files).map(|c| c.count).sum();
        let buffers: Vec<_> = chunks.iter().filter(|c| c.table == Table::Buffers).map(|c| (c.start, c.count)).collect();
        assert_eq!(files, 19_000);
        assert_eq!(buffers, vec![(0, 640), (640, 1)]);
        assert!(chunks.iter().all(|c| c.count > 0));
    }
}
