//! The BPF backend: reads a live process's io_uring state with mainline BPF
//! `iter/task_file` iterators and CO-RE reads of `io_ring_ctx`.
//!
//! The BPF side is `bpf/ringplan.bpf.c` (built by build.rs into a libbpf-rs
//! skeleton); it writes binary records (`bpf/ringplan_records.h`, parsed by
//! `bpf/records.rs`). Most of [`BpfDumper::load`] is libbpf's CO-RE
//! candidate search, one scan of the kernel's whole BTF per relocated kernel
//! type, so the program relocates as few types as it can (11).
//!
//! At load the dumper also learns the kernel's io_uring and eventfd
//! `file_operations` addresses (data symbols kallsyms lacks without
//! `CONFIG_KALLSYMS_ALL`): it asks pass B's program for the `f_op` of a ring
//! and an eventfd of its own, and writes both into the program's `.bss`.
//! Files are told apart by `f_op` from then on, with no read of dentry
//! names. This run over its own fds is also the check that the kernel
//! accepts a task iterator limited to one process (6.1+).
//!
//! A read takes two passes:
//!
//! - **Pass A** iterates the *target's* fds (the link is parameterised with
//!   the target's pidfd). For every fd: the file's identity (`struct file`
//!   address), `f_op`, flags, position, mode, the fd's close-on-exec bit,
//!   the `d_path` text, and its role (ring or eventfd, by `f_op`); for an
//!   eventfd its count and flags.
//! - **Pass B** iterates the dumper's *own* fds. The dumper copies one fd of
//!   each ring into itself (`pidfd_getfd`, which also keeps the ring alive),
//!   duplicates it once per request, writes one request per local fd into a
//!   BPF hash map, and iterates its own fds: each duplicate's visit writes
//!   its answer. The first rounds ask for every ring's header (setup
//!   parameters, SQ thread, per-ring SQ idle, eventfd, table sizes) and,
//!   speculatively, the first chunk of each table; later rounds ask for the
//!   rest of the tables. Tables come in chunks of at most a few hundred
//!   slots because one iterator object (one fd visit) can write at most
//!   32 KiB (the bpf_iter seq buffer), far less than a table of 19,000 files
//!   needs. A registered file comes with its `f_op`, which says whether it
//!   is a ring or an eventfd (the program reads an eventfd's count itself).
//!
//! Reads are sized so the kernel never has to show an object twice (see
//! ringplan_records.h), and the programs have no side effects that a
//! re-show could repeat; this side still drops duplicate records (fds by
//! number, rings by address, slots by table and index) and checks that every
//! header and chunk it asked for was answered.
//!
//! A registered file that no fd of the target holds has no trusted pointer
//! for `bpf_d_path`, so its path comes from the ring's fdinfo
//! (`bpf/user_files.rs`), read only when such a file exists.
//!
//! SQ idle is kept in jiffies; it is converted with HZ, which is the
//! inverse of the coarse clocks' resolution (`clock_getres` of
//! `CLOCK_MONOTONIC_COARSE` is one tick, `TICK_NSEC`; this spares libbpf
//! parsing the kernel config for `CONFIG_HZ` at load). Should that give an
//! implausible value, the dumper measures HZ: it sets up its own SQPOLL
//! ring with a 1000 ms idle and reads back that ring's `sq_thread_idle`,
//! which is then HZ. If that fails too, SQPOLL rings come back with
//! `idle_known: false`.
//!
//! The target must be quiescent for the result to be consistent (the
//! tables are read without the ring's lock); a table whose size changed
//! between the header and its chunks is reported as
//! [`BpfError::TargetChanged`].

mod records;
mod skeleton;
pub(crate) mod user_files;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, Read};
use std::mem::{ManuallyDrop, MaybeUninit};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;

use libbpf_rs::libbpf_sys;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{AsRawLibbpf, Iter, Link, MapCore, MapFlags, OpenObject};
use ringplan_image::{Buffer, SetupFlags, MAX_BUFFER_SLOTS, MAX_FILE_SLOTS};

use crate::raw::{
    Known, RawEventfd, RawFdEntry, RawFile, RawFileRole, RawRing, RawRingEventfd, RawState,
};
use records::{
    BufferSlotRecord, ChunkRecord, ChunkStatus, EventfdRecord, FdRecord, FileSlotRecord, Layout,
    Record, Records, RequestKind, RingRecord, Role, Table,
};
use skeleton::{RingplanSkel, RingplanSkelBuilder};

/// Requests per pass-B iterator run. Each costs the dumper one fd for
/// the duration of the run, so this also bounds the fds the dumper opens.
const CHUNKS_PER_ROUND: usize = 256;
const _: () = assert!(CHUNKS_PER_ROUND <= records::MAX_CHUNK_REQUESTS);
/// The SQ idle, in ms, of the ring the dumper sets up to measure HZ.
const HZ_PROBE_IDLE_MS: u32 = 1000;
/// HZ values taken from the coarse clock's resolution; anything else is
/// measured instead.
const PLAUSIBLE_HZ: std::ops::RangeInclusive<u32> = 24..=10_000;

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
    MalformedRecord {
        pass: Pass,
        offset: usize,
        reason: String,
    },
    /// The records parse but do not fit together (a bug on one side).
    #[error("inconsistent records from the {pass} iterator: {reason}")]
    Inconsistent { pass: Pass, reason: String },
    /// The target changed between the two passes (an fd closed, a table
    /// resized, the process exited).
    #[error("pid {pid} changed while it was read: {what}")]
    TargetChanged { pid: u32, what: String },
    /// A chunk of a registered table was asked for and not answered.
    #[error(
        "the {table} table of ring {ring:#x} came back incomplete: slots {start}..{end} missing"
    )]
    IncompleteTable {
        ring: u64,
        table: String,
        start: u32,
        end: u32,
    },
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
    /// HZ could not be told from the clock and measuring it failed.
    #[error("CONFIG_HZ is unknown and measuring it failed: {reason}")]
    MeasureHz { reason: String },
}

impl BpfError {
    /// Whether BPF cannot read this kernel at all (the program does not
    /// load, or the io_uring layout is unknown), so that falling back to
    /// another backend is the right response.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            BpfError::Unavailable { .. } | BpfError::LayoutNotRecognised { .. }
        )
    }
}

/// Which iterator an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Pass A: the target's fds.
    TargetFds,
    /// Pass B: the dumper's own fds, answering ring, chunk and probe
    /// requests.
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
    /// The kernel's io_uring and eventfd `file_operations` addresses,
    /// learnt at load from files of the dumper's own.
    fops: Fops,
    /// The dumper's pid as its own pid namespace numbers it (what a task
    /// iterator link's `pid` means).
    self_pid: u32,
    /// HZ measured once, when the clock's resolution does not say.
    measured_hz: Option<u32>,
}

impl BpfDumper {
    /// Loads and verifies the BPF programs, and learns the io_uring and
    /// eventfd `file_operations` from a ring and an eventfd of the dumper's
    /// own. Fails with [`BpfError::Unavailable`] when BPF cannot be used, or
    /// [`BpfError::LayoutNotRecognised`] when the kernel's io_uring
    /// structures lack a field the program reads.
    pub fn load() -> Result<BpfDumper, BpfError> {
        let self_pid = rustix::process::getpid()
            .as_raw_nonzero()
            .get()
            .unsigned_abs();
        let mut dumper = BpfDumper {
            skeleton: LoadedSkeleton::load()?,
            fops: Fops::default(),
            self_pid,
            measured_hz: None,
        };
        dumper.fops = dumper.probe_fops()?;
        if let Some(bss) = dumper.skeleton.skeleton.maps.bss_data.as_deref_mut() {
            bss.ring_fops = dumper.fops.ring;
            bss.eventfd_fops = dumper.fops.eventfd;
        }
        Ok(dumper)
    }

    /// The `f_op` of a fresh ring and eventfd of the dumper's own, read by
    /// pass B's program over the dumper's own fds. Kernels before 6.1 load
    /// the program but refuse a task iterator limited to one process; this
    /// finds out too, while a caller can still choose another backend.
    fn probe_fops(&mut self) -> Result<Fops, BpfError> {
        let unavailable = |stage: &'static str, error: io::Error| BpfError::Unavailable {
            stage,
            source: libbpf_rs::Error::from(error),
        };
        let mut params = rustix::io_uring::io_uring_params::default();
        // SAFETY: io_uring_setup only fills `params`; the ring is never
        // mapped or submitted to, so the kernel never writes our memory.
        let ring = unsafe { rustix::io_uring::io_uring_setup(1, &mut params) }
            .map_err(|errno| unavailable("setting up a probe io_uring", errno.into()))?;
        let eventfd = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC)
            .map_err(|errno| unavailable("creating a probe eventfd", errno.into()))?;
        let requests = [
            Request {
                local_fd: ring,
                expected_ctx: 0,
                want: Want::Probe,
            },
            Request {
                local_fd: eventfd,
                expected_ctx: 0,
                want: Want::Probe,
            },
        ];
        let bytes = match self.run_chunk_round(&requests) {
            Err(BpfError::Attach { source, .. }) => {
                return Err(unavailable(
                    "attaching a task iterator limited to one process (needs Linux 6.1)",
                    source,
                ))
            }
            other => other?,
        };
        let mut answers = HashMap::new();
        for record in Records::new(&bytes) {
            if let Record::Probe(probe) = record.map_err(|error| malformed(Pass::Chunks, error))? {
                answers.insert(probe.fd, probe.f_op);
            }
        }
        let answer = |request: &Request| {
            answers
                .get(&fd_number(&request.local_fd))
                .copied()
                .filter(|&f_op| f_op != 0)
        };
        match (answer(&requests[0]), answer(&requests[1])) {
            (Some(ring), Some(eventfd)) if ring != eventfd => Ok(Fops { ring, eventfd }),
            _ => Err(BpfError::Inconsistent {
                pass: Pass::Chunks,
                reason: "the probe ring's and eventfd's file operations did not come back".into(),
            }),
        }
    }

    /// Reads the io_uring state of `pid`. `pidfd` is an open pidfd of the
    /// same process (`pidfd_open`): it picks the process for the iterator
    /// and is the handle `pidfd_getfd` copies ring fds through.
    pub fn read(
        &mut self,
        pid: u32,
        pidfd: BorrowedFd<'_>,
    ) -> Result<crate::raw::RawState, BpfError> {
        let target_bytes = self.run_target_pass(pid, pidfd)?;
        let mut reading = Reading::from_target_records(&target_bytes, self.fops)?;
        self.read_rings(pid, pidfd, &mut reading)?;
        let hz = self.hz_for(&reading);
        reading.fill_slot_only_paths(pid, pidfd)?;
        Ok(reading.into_raw_state(hz))
    }

    /// The target's fd table as pass A sees it now (fd, close-on-exec,
    /// file identity), in fd order: read again after [`BpfDumper::read`],
    /// it tells whether the fds changed while the rings were being read.
    /// Paths and eventfds are not read this time (`identities_only`),
    /// which takes the second look from 0.8 to 0.6 us per fd.
    pub fn fd_table(
        &mut self,
        pid: u32,
        pidfd: BorrowedFd<'_>,
    ) -> Result<Vec<crate::raw::RawFdEntry>, BpfError> {
        self.set_identities_only(true);
        let bytes = self.run_target_pass(pid, pidfd);
        self.set_identities_only(false);
        Ok(Reading::from_target_records(&bytes?, self.fops)?
            .fds
            .into_values()
            .collect())
    }

    fn set_identities_only(&mut self, on: bool) {
        if let Some(bss) = self.skeleton.skeleton.maps.bss_data.as_deref_mut() {
            bss.identities_only = u32::from(on);
        }
    }

    /// HZ as the kernel was built with it, measured with an SQPOLL ring of
    /// the dumper's own (the fallback when the clock's resolution does not
    /// tell). Exposed for tests and diagnostics.
    pub fn measure_hz(&mut self) -> Result<u32, BpfError> {
        if let Some(hz) = self.measured_hz {
            return Ok(hz);
        }
        let mut params = rustix::io_uring::io_uring_params::default();
        params.flags = rustix::io_uring::IoringSetupFlags::SQPOLL;
        params.sq_thread_idle = HZ_PROBE_IDLE_MS;
        // SAFETY: io_uring_setup only fills `params`; the ring is never
        // mapped or submitted to, so the kernel never writes our memory.
        let probe_ring =
            unsafe { rustix::io_uring::io_uring_setup(1, &mut params) }.map_err(|errno| {
                BpfError::MeasureHz {
                    reason: format!("setting up an SQPOLL ring: {errno}"),
                }
            })?;
        // Its header; expected_ctx 0 accepts the (own) ring as it is.
        let request = Request {
            local_fd: probe_ring,
            expected_ctx: 0,
            want: Want::Ring,
        };
        let bytes = self.run_chunk_round(std::slice::from_ref(&request))?;
        let mut idle_jiffies = None;
        for record in Records::new(&bytes) {
            let record = record.map_err(|error| malformed(Pass::Chunks, error))?;
            if let Record::Ring(ring) = record {
                if ring.fd == fd_number(&request.local_fd) && ring.status == ChunkStatus::Ok {
                    idle_jiffies = Some(ring.sq_thread_idle_jiffies);
                }
            }
        }
        // ctx->sq_thread_idle = msecs_to_jiffies(1000) = HZ.
        let hz =
            idle_jiffies
                .filter(|&jiffies| jiffies > 0)
                .ok_or_else(|| BpfError::MeasureHz {
                    reason: "the probe ring's header did not come back".into(),
                })?;
        self.measured_hz = Some(hz);
        Ok(hz)
    }

    /// HZ for converting the SQ idle of this reading's rings: from the
    /// coarse clock's resolution, else measured. `None` when neither works
    /// (the rings' idle is then reported unknown rather than failing the
    /// dump), or when no ring has SQPOLL and nothing needs converting.
    fn hz_for(&mut self, reading: &Reading) -> Option<u32> {
        let needs_hz = reading
            .rings
            .values()
            .any(|ring| ring.header.flags & SetupFlags::SQPOLL.bits() != 0);
        match tick_hz() {
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
        let link = attach_task_iterator(&skeleton.progs.ringplan_target_fds, link_info).map_err(
            |source| BpfError::Attach {
                pass: Pass::TargetFds,
                pid,
                source,
            },
        )?;
        drain_iterator(&link).map_err(|source| BpfError::IterRead {
            pass: Pass::TargetFds,
            source,
        })
    }

    /// Pass B, one round: asks for `requests` (keyed by their local fds),
    /// iterates the dumper's own fds, and returns what the program wrote.
    fn run_chunk_round(&mut self, requests: &[Request]) -> Result<Vec<u8>, BpfError> {
        let self_pid = self.self_pid;
        let skeleton = &*self.skeleton.skeleton;
        let map = &skeleton.maps.chunk_requests;
        // Requests a failed earlier read left behind would be answered again.
        let stale: Vec<Vec<u8>> = map.keys().collect();
        for key in stale {
            map.delete(&key)
                .map_err(|source| BpfError::RequestMap { source })?;
        }
        let _clear_on_exit = RequestMapGuard {
            map,
            keys: requests.iter().map(|r| fd_number(&r.local_fd)).collect(),
        };
        for request in requests {
            let key = fd_number(&request.local_fd).to_ne_bytes();
            let value = request.value();
            map.update(&key, &value, MapFlags::ANY)
                .map_err(|source| BpfError::RequestMap { source })?;
        }
        let mut link_info = libbpf_sys::bpf_iter_link_info::default();
        link_info.task.pid = self_pid;
        let link = attach_task_iterator(&skeleton.progs.ringplan_chunk_fds, link_info).map_err(
            |source| BpfError::Attach {
                pass: Pass::Chunks,
                pid: self_pid,
                source,
            },
        )?;
        drain_iterator(&link).map_err(|source| BpfError::IterRead {
            pass: Pass::Chunks,
            source,
        })
    }

    /// Pass B: every ring's header, then its file and buffer tables.
    fn read_rings(
        &mut self,
        pid: u32,
        pidfd: BorrowedFd<'_>,
        reading: &mut Reading,
    ) -> Result<(), BpfError> {
        if reading.ring_fds.is_empty() {
            return Ok(());
        }
        let mut first: Vec<Planned> = Vec::new();
        for &ring in reading.ring_fds.keys() {
            first.push(Planned {
                ring,
                want: Want::Ring,
            });
            // The first chunk of each table, before the header says whether
            // there is one: most tables fit, and the rounds after the
            // headers are then not needed. The program clamps the count to
            // the table.
            first.push(Planned::chunk(
                ring,
                Table::Files,
                0,
                records::FILE_SLOTS_PER_CHUNK,
            ));
            first.push(Planned::chunk(
                ring,
                Table::Buffers,
                0,
                records::BUFFER_SLOTS_PER_CHUNK,
            ));
        }
        self.run_rounds(pid, pidfd, reading, &first)?;
        reading.check_headers_complete()?;
        let rest: Vec<Planned> = reading
            .rings
            .values()
            .flat_map(|facts| {
                facts
                    .planned_chunks()
                    .into_iter()
                    .filter(|chunk| match chunk.want {
                        Want::Chunk { table, start, .. } => {
                            !facts.answered.contains(&(table, start))
                        }
                        Want::Ring | Want::Probe => true,
                    })
            })
            .collect();
        self.run_rounds(pid, pidfd, reading, &rest)?;
        reading.check_tables_complete()
    }

    /// Asks for `planned` in rounds of at most [`CHUNKS_PER_ROUND`] and
    /// applies the answers.
    fn run_rounds(
        &mut self,
        pid: u32,
        pidfd: BorrowedFd<'_>,
        reading: &mut Reading,
        planned: &[Planned],
    ) -> Result<(), BpfError> {
        for round in planned.chunks(CHUNKS_PER_ROUND) {
            // One pidfd_getfd per ring per round (its first request's fd);
            // duplicates of it for the others.
            let mut copied: HashMap<u64, usize> = HashMap::new();
            let mut requests: Vec<Request> = Vec::with_capacity(round.len());
            for wanted in round {
                let local_fd = match copied.get(&wanted.ring) {
                    Some(&index) => rustix::io::fcntl_dupfd_cloexec(&requests[index].local_fd, 0)
                        .map_err(|errno| BpfError::Io {
                        what: "duplicating a copied ring fd".into(),
                        source: errno.into(),
                    })?,
                    None => {
                        copied.insert(wanted.ring, requests.len());
                        let target_fd = reading.ring_fds.get(&wanted.ring).copied().unwrap_or(-1);
                        copy_target_fd(pid, pidfd, target_fd)?
                    }
                };
                requests.push(Request {
                    local_fd,
                    expected_ctx: wanted.ring,
                    want: wanted.want,
                });
            }
            let bytes = self.run_chunk_round(&requests)?;
            reading.apply_round_records(pid, &bytes, &requests)?;
        }
        Ok(())
    }
}

/// The `f_op` of io_uring and eventfd files.
#[derive(Debug, Clone, Copy, Default)]
struct Fops {
    ring: u64,
    eventfd: u64,
}

/// What a pass-B request asks of a ring (or, for a probe, of any fd).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
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
}

/// One request of pass B, before it has a local fd.
#[derive(Debug, Clone, Copy)]
struct Planned {
    ring: u64,
    want: Want,
}

impl Planned {
    fn chunk(ring: u64, table: Table, start: u32, count: u32) -> Planned {
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
struct Request {
    local_fd: OwnedFd,
    /// The ring the local fd must refer to; 0 accepts any file (only the
    /// dumper's own probe ring and eventfd).
    expected_ctx: u64,
    want: Want,
}

impl Request {
    /// The chunk_requests map value.
    fn value(&self) -> [u8; 24] {
        match self.want {
            Want::Ring => records::chunk_request_bytes(
                self.expected_ctx,
                RequestKind::Ring,
                Table::Files,
                0,
                0,
            ),
            Want::Probe => records::chunk_request_bytes(
                self.expected_ctx,
                RequestKind::Probe,
                Table::Files,
                0,
                0,
            ),
            Want::Chunk {
                table,
                start,
                count,
            } => records::chunk_request_bytes(
                self.expected_ctx,
                RequestKind::Chunk,
                table,
                start,
                count,
            ),
        }
    }
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
    fds: BTreeMap<i32, RawFdEntry>,
    files: HashMap<u64, RawFile>,
    /// Files that only pass B saw (no fd of the target holds them): their
    /// path must come from fdinfo. Ring → (slot index, file).
    slot_only_files: BTreeMap<u64, Vec<(u32, u64)>>,
    /// The rings pass A found, each with the lowest fd of the target that
    /// holds it.
    ring_fds: BTreeMap<u64, i32>,
    /// The `f_op` of io_uring and eventfd files, which tell registered
    /// files apart.
    fops: Fops,
    /// The rings whose header pass B returned.
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
    fn planned_chunks(&self) -> Vec<Planned> {
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
    fn from_target_records(bytes: &[u8], fops: Fops) -> Result<Reading, BpfError> {
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
            return Err(unknown_layout());
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
            answered: HashSet::new(),
        });
        Ok(())
    }

    /// Applies one pass-B round's records (that every request was
    /// answered is checked once all rounds are done).
    fn apply_round_records(
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
                    self.add_ring(pid, *header, request)?;
                }
            }
        }
        // The chunk whose slot records follow, with its slot range.
        let mut current: Option<(u64, Table, std::ops::Range<u32>)> = None;
        for record in records {
            match record {
                Record::Ring(_) => current = None,
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

    /// Every ring pass A found must have had its header answered.
    fn check_headers_complete(&self) -> Result<(), BpfError> {
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
            Want::Ring | Want::Probe => None,
        }) else {
            // A request of an earlier, failed read that survived: ignore it.
            return Ok(None);
        };
        match chunk.status {
            ChunkStatus::Ok => {}
            ChunkStatus::UnknownLayout => return Err(unknown_layout()),
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
                    "ring {:#x}'s {} table has {} slots now, {} when its header was read",
                    chunk.ctx, chunk.table, chunk.table_size, expected_size
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
        if let Some(entry) = self
            .rings
            .get_mut(&ring)
            .and_then(|facts| facts.buffers.get_mut(slot.index as usize))
        {
            *entry = Some(Buffer {
                addr: slot.addr,
                len: slot.len,
            });
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
    fn check_tables_complete(&self) -> Result<(), BpfError> {
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
    fn fill_slot_only_paths(&mut self, pid: u32, pidfd: BorrowedFd<'_>) -> Result<(), BpfError> {
        for (ring, slots) in &self.slot_only_files {
            let Some(target_fd) = self.rings.get(ring).map(|facts| facts.target_fd) else {
                continue;
            };
            let local = copy_target_fd(pid, pidfd, target_fd)?;
            let fdinfo_path = format!("/proc/self/fdinfo/{}", local.as_raw_fd());
            let text = std::fs::read(&fdinfo_path).map_err(|source| BpfError::Io {
                what: format!("reading {fdinfo_path}"),
                source,
            })?;
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
                let ring = RawRing {
                    inode: Some(header.inode_number),
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
                };
                (ctx, ring)
            })
            .collect();
        RawState {
            fds: self.fds.into_values().collect(),
            files: self.files,
            rings,
            eventfds: self.eventfds,
        }
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

/// HZ from the coarse clocks' resolution, which is one tick (TICK_NSEC =
/// 1e9 / HZ, rounded); `None` when that is not a plausible HZ.
fn tick_hz() -> Option<u32> {
    let resolution = rustix::time::clock_getres(rustix::time::ClockId::MonotonicCoarse);
    let nanos = i128::from(resolution.tv_sec) * 1_000_000_000 + i128::from(resolution.tv_nsec);
    hz_from_tick_nanos(nanos)
}

fn hz_from_tick_nanos(nanos: i128) -> Option<u32> {
    if nanos <= 0 {
        return None;
    }
    let hz = (1_000_000_000 + nanos / 2) / nanos;
    u32::try_from(hz)
        .ok()
        .filter(|hz| PLAUSIBLE_HZ.contains(hz))
}

/// `jiffies * 1000 / HZ`, saturating: the kernel got jiffies from a u32 of
/// milliseconds (rounded up), so this fits except at the very top. `hz` is
/// never 0 here.
fn jiffies_to_ms(jiffies: u32, hz: u32) -> u32 {
    let ms = u64::from(jiffies) * 1000 / u64::from(hz.max(1));
    u32::try_from(ms).unwrap_or(u32::MAX)
}

fn malformed(pass: Pass, error: records::MalformedRecord) -> BpfError {
    BpfError::MalformedRecord {
        pass,
        offset: error.offset,
        reason: error.reason,
    }
}

fn fd_number(fd: &impl AsFd) -> u32 {
    // fds are never negative.
    fd.as_fd().as_raw_fd().unsigned_abs()
}

/// Copies fd `target_fd` of the target into the dumper (`pidfd_getfd`).
fn copy_target_fd(pid: u32, pidfd: BorrowedFd<'_>, target_fd: i32) -> Result<OwnedFd, BpfError> {
    rustix::process::pidfd_getfd(pidfd, target_fd, rustix::process::PidfdGetfdFlags::empty())
        .map_err(|errno| match errno {
            rustix::io::Errno::PERM | rustix::io::Errno::ACCESS => {
                BpfError::PermissionDenied { pid, fd: target_fd }
            }
            rustix::io::Errno::BADF => BpfError::TargetChanged {
                pid,
                what: format!("fd {target_fd} was closed after it was listed"),
            },
            rustix::io::Errno::SRCH => BpfError::TargetChanged {
                pid,
                what: "the process exited".into(),
            },
            other => BpfError::Io {
                what: format!("copying fd {target_fd} of pid {pid} (pidfd_getfd)"),
                source: other.into(),
            },
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
    let link = unsafe {
        libbpf_sys::bpf_program__attach_iter(program.as_libbpf_object().as_ptr(), &options)
    };
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
            Ok(skeleton) => Ok(LoadedSkeleton {
                skeleton: ManuallyDrop::new(skeleton),
                object_slot,
            }),
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

/// The program found neither table layout it knows: name the fields this
/// kernel's BTF lacks, or both layouts' key fields when BTF cannot say.
fn unknown_layout() -> BpfError {
    let field = layout::missing_field().unwrap_or_else(|| {
        "io_file_table.data (6.18 layout) or io_ring_ctx.nr_user_files (6.1 layout)".to_owned()
    });
    BpfError::LayoutNotRecognised { field }
}

fn open_and_load(
    slot: &'static mut MaybeUninit<OpenObject>,
) -> Result<RingplanSkel<'static>, BpfError> {
    let open = RingplanSkelBuilder::default()
        .open(slot)
        .map_err(|source| BpfError::Unavailable {
            stage: "opening the BPF object",
            source,
        })?;
    open.load().map_err(|source| match layout::missing_field() {
        Some(field) => BpfError::LayoutNotRecognised { field },
        None => BpfError::Unavailable {
            stage: "loading and verifying the BPF program",
            source,
        },
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
        ("file", "f_op"),
        ("file", "f_path"),
        ("file", "f_inode"),
        ("file", "f_flags"),
        ("file", "f_pos"),
        ("file", "private_data"),
        ("inode", "i_mode"),
        ("inode", "i_ino"),
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
    fn composite_has_member(
        btf: &Btf<'_>,
        composite: &Composite<'_>,
        member: &str,
        depth: u32,
    ) -> bool {
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
        let neither: &[(&str, &[(&str, &str)])] = &[
            ("imaginary", &[("io_ring_ctx", "no_such_member")]),
            ("other", &[("no_such_struct", "x")]),
        ];
        assert_eq!(
            layout::missing_field_in(&btf, layout::ALWAYS, neither).as_deref(),
            Some(
                "io_ring_ctx.no_such_member (imaginary layout) or no_such_struct.x (other layout)"
            )
        );
        assert_eq!(
            layout::missing_field_in(
                &btf,
                &[("io_sq_data", "sq_cpu"), ("io_sq_data", "gone")],
                &[]
            )
            .as_deref(),
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
    fn hz_comes_from_the_tick() {
        assert_eq!(hz_from_tick_nanos(4_000_000), Some(250));
        assert_eq!(hz_from_tick_nanos(1_000_000), Some(1000));
        assert_eq!(hz_from_tick_nanos(3_333_334), Some(300));
        assert_eq!(hz_from_tick_nanos(10_000_000), Some(100));
        // A high-resolution clock is no tick.
        assert_eq!(hz_from_tick_nanos(1), None);
        assert_eq!(hz_from_tick_nanos(0), None);
        assert_eq!(hz_from_tick_nanos(1_000_000_000), None);
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
            status: ChunkStatus::Ok,
        };
        let facts = RingFacts {
            header,
            target_fd: 3,
            files: Vec::new(),
            buffers: Vec::new(),
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
                Want::Ring | Want::Probe => None,
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
        assert_eq!(buffers, vec![(0, 640), (640, 1)]);
        assert!(chunks.iter().all(|c| c.2 > 0));
    }
}
