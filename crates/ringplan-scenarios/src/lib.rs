//! Known io_uring states, built with real syscalls in the calling process.
//!
//! `plan app [SCENARIO]`, the dumper's tests and the benchmarks need a live
//! process whose io_uring state is known exactly. [`build`] creates one of a
//! fixed set of [`Scenario`]s in the calling process (rings set up with
//! `io_uring_setup` and mapped with `mmap` as a real program does, eventfds,
//! registered files and buffers) and returns a [`Built`] that keeps it all
//! alive. [`Built::description`] says what was built, as one JSON object a
//! test compares a dump against. [`hold`] is the whole `plan app` flow:
//! build, print the description, wait for SIGTERM or SIGINT, tear down.
//!
//! The description's shape (every number is a plain JSON number):
//!
//! ```text
//! { "pid": 1234, "scenario": "seed",
//!   "rings": [ { "fd": 3, "dup_fds": [], "sq_group": 3, "features": 16383,
//!                "setup": { "flags": 14, "flag_names": ["SQPOLL", ...], "sq_entries": 2,
//!                           "cq_entries": 4, "sq_thread_cpu": 0, "sq_thread_idle_ms": 1500,
//!                           "wq_fd": null },
//!                "eventfd": { "fd": 5, "async": true } | null,
//!                "files": [ { "fd": 0, "path": "/dev/null" } | null, ... ],
//!                "buffers": [ { "addr": 94..., "len": 120 } | null, ... ],
//!                "mappings": [ { "region": "sq_ring", "addr": ..., "len": ... }, ... ],
//!                "registered_ring_fds": [ { "tid": 1234, "offset": 3 }, ... ] } ],
//!   "gone_rings": [ { "former_fd": 3, "sq_group": 3 } ],
//!   "eventfds": [ { "fd": 5, "open": true, "count": 42, "semaphore": false,
//!                   "nonblock": false, "cloexec": false } ],
//!   "files": [ { "fd": 6, "open": true, "path": "/tmp/...", "cloexec": true, "pos": 0 } ],
//!   "closed_fds": [ 5 ],
//!   "temp_dir": "/tmp/ringplan-scenario-1234-0" | null,
//!   "children": [ { "pid": 1235, "role": "keeper" | "closer" | "own-ring",
//!                   "own_ring_fd": 7 | null } ] }
//! ```
//!
//! `rings` lists the rings the process still holds by an fd (or, with
//! `"fd": null`, only by registered ring fds: `ring-fd-only`); a ring whose fd
//! the scenario closed and unmapped is gone from the kernel and is listed in
//! `gone_rings`. Registrations name fds by the number they had when they were
//! registered; `closed_fds` lists those the scenario closed afterwards (every
//! close happens last, so no number is reused). `sq_group` is the fd number
//! of the ring whose setup created the SQ thread a ring shares.

pub mod c_programs;
mod resources;
mod ring;
mod ring_fds;
mod settings;
mod shared;
mod stop;

use std::fmt;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::path::PathBuf;
use std::str::FromStr;

use rustix::event::EventfdFlags;
use rustix::fs::OFlags;
use rustix::io_uring::IoringSetupFlags;
use serde_json::{json, Value};

use resources::{make_room_for_fds, BufferMemory, ScenarioEventfd, ScenarioFile, TempDir};
use ring::{RegisterIovec, RingRequest, ScenarioRing};
pub use stop::{StopSignal, StopSignals};

/// A known io_uring state. The text form (`FromStr`/`Display`) is what
/// `plan app` takes: `seed`, `chain:N`, `fanout:N`, `files:N`, `closed`,
/// `creator-closed:N`, `rings:N`, `mix`, `personalities:N`, `restricted`,
/// `restricted-enabled`, `pbuf` (`pbuf:N`), `pbuf-fresh:N`, `pbuf-legacy`,
/// `legacy-buffers:N`, `legacy-empty`,
/// `pbuf-mmap`, `settings`, `wait-region`, `napi-static`, `iowq-affinity`,
/// `shared`, `shared-sqpoll`,
/// `tree:N`, `children:N`, `ring-fds`, `ring-fd-only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scenario {
    /// The seed RFC's test program, rebuilt:
    /// - ring P: `SQPOLL|SQ_AFF|CQSIZE`, 2 SQ entries, 4 CQ entries, SQ
    ///   thread on CPU 0, idle 1500 ms;
    /// - ring A: the same plus `ATTACH_WQ` with `wq_fd` = P (so one SQ
    ///   thread); on A:
    ///   - an eventfd created with count 42 and no flags (so not
    ///     close-on-exec), registered with `IORING_REGISTER_EVENTFD_ASYNC`;
    ///   - files `[0, -1, 1, -1, 2]`: fds 0, 1, 2 at slots 0, 2, 4 of 5,
    ///     whatever they are (a terminal, `/dev/null`, a pipe);
    ///   - buffers `[{NULL, 0}, {heap, 120}]`: slot 0 empty, slot 1 a
    ///     120-byte heap buffer.
    #[default]
    Seed,
    /// N SQPOLL rings (4 entries each; ring k idles after 1000 + 4k ms), ring
    /// k+1 set up with `ATTACH_WQ` and ring k's fd. All share ring 0's SQ
    /// thread. N >= 1.
    Chain(usize),
    /// One SQPOLL ring (4 entries, idle 1000 ms) and N rings attached to it
    /// (attached ring k idles after 1004 + 4k ms). N >= 1.
    Fanout(usize),
    /// One plain ring (8 entries) with N registered files in slots 0..N: N
    /// new files `file-00000`... in a temp dir, opened read-write and
    /// close-on-exec. The process keeps every fd open, as programs usually
    /// do, so it needs N + (already open) fds: the RLIMIT_NOFILE soft limit
    /// is raised to the hard limit, and N that cannot fit is an error before
    /// anything is created. N >= 1.
    Files(usize),
    /// One plain ring (8 entries) whose process closed fds after registering
    /// them, so only the ring keeps those objects alive:
    /// - an eventfd (count 5, close-on-exec) registered with
    ///   `IORING_REGISTER_EVENTFD`, its fd then closed;
    /// - files `closed-0`..`closed-3` in a temp dir registered as
    ///   `[closed-0, closed-1, -1, closed-2, closed-3]`, then the fds of
    ///   `closed-0` and `closed-2` closed.
    Closed,
    /// One SQPOLL ring (the creator of the SQ thread; 4 entries, idle
    /// 1000 ms) and N rings attached to it (as in `fanout`), then the
    /// creator's fd closed and its regions unmapped, so the creator ring is
    /// gone and the N rings share an SQ thread no open ring created. N >= 1.
    CreatorClosed(usize),
    /// N independent plain rings of 8 entries. N >= 1.
    Rings(usize),
    /// One plain ring (8 entries) with N personalities of the calling
    /// thread's credentials and a gap: N + 1 registered (ids 1..=N+1),
    /// then id 2 unregistered, so the ids are 1, 3, 4, ..., N+1 and the
    /// next id is N+2. N >= 1.
    Personalities(usize),
    /// One plain ring (8 entries) with N buffer rings (bgids 0, 65, 130,
    /// ...: on 6.1 both its low-bgid array and its xarray), each of 8
    /// entries on memory of its own; the first has 8 buffers provided and
    /// 3 consumed by reads of `/dev/zero` that select a buffer (its head
    /// is 3), the others none. `pbuf` is `pbuf:2`. 1 <= N <= 1000.
    Pbuf(usize),
    /// As `pbuf:N`, but every buffer ring has 8 buffers provided and none
    /// consumed: every head is 0 (what a restore can bring back).
    PbufFresh(usize),
    /// One plain ring (8 entries) with a buffer ring (bgid 0, 8 entries,
    /// 8 buffers provided, none consumed) and legacy groups
    /// (`IORING_OP_PROVIDE_BUFFERS`): bgid 7 got 4 buffers of 64 bytes
    /// (bids 0-3), then 3 of 128 bytes (bids 10-12), and reads took 2 (bids
    /// 0 and 1): 5 left, in two runs; bgid 70 got 1 buffer, which a read
    /// took: an empty group the kernel keeps.
    PbufLegacy,
    /// One plain ring (8 entries) with legacy group 7 holding N buffers
    /// of 64 bytes: N + 1 provided with one `IORING_OP_PROVIDE_BUFFERS`
    /// (bids 0..=N), the first taken by a read. 1 <= N <= 240000; above
    /// 59999 the buffers are provided 60000 at a time (6.1 refuses bids
    /// past 65534), each batch's bids from 0 again: bids repeat, and a
    /// list longer than 65536 is more than the dump walks.
    LegacyBuffers(usize),
    /// One plain ring (8 entries) with legacy group 70 emptied: 1 buffer
    /// provided, then taken by a read. The kernel keeps the empty group;
    /// a restore leaves it out (an empty group is as none to the kernel).
    LegacyEmpty,
    /// One plain ring (8 entries) with a buffer ring on its own memory
    /// (bgid 0) and one in kernel memory (`IOU_PBUF_RING_MMAP`, 6.4+; bgid
    /// 9, 16 entries) that the scenario mapped, through which it provided
    /// 12 buffers and consumed 5 (head 5, tail 12).
    PbufMmap,
    /// One plain ring (8 entries) set up `R_DISABLED`, with restrictions:
    /// register opcodes `PERSONALITY` (9) and `ENABLE_RINGS` (12), SQE
    /// opcodes `NOP` (0) and `READ` (22), SQE flags allowed
    /// `IOSQE_FIXED_FILE|IOSQE_CQE_SKIP_SUCCESS` (0x41), none required;
    /// left disabled.
    Restricted,
    /// [`Scenario::Restricted`], then enabled (`IORING_REGISTER_ENABLE_RINGS`).
    RestrictedEnabled,
    /// One plain ring (8 entries) with registered settings:
    /// - files `[f0, f1, -1, f2, f3, -1, -1, -1]` (four files in a temp
    ///   dir) registered with `IORING_REGISTER_FILES2` and tags 0x1001 on
    ///   slot 0, 0x1003 on slot 3, 0x1004 on slot 4 (none on slot 1);
    /// - the file allocation range 5..8 (`IORING_REGISTER_FILE_ALLOC_RANGE`);
    /// - buffers `[{heap, 64}, {NULL, 0}, {heap, 32}]` registered with
    ///   `IORING_REGISTER_BUFFERS2`, tag 0x2001 on slot 0;
    /// - io-wq max workers 3 bounded, 5 unbounded;
    /// - NAPI busy polling 50 us, prefer busy poll, dynamic tracking, where
    ///   the kernel has it (6.9+; said in `napi_missing` otherwise).
    Settings,
    /// io-wq CPU affinity (`IORING_REGISTER_IOWQ_AFF`), on a machine of two
    /// CPUs or more (said in `iowq_affinity_missing` otherwise):
    /// - ring A: plain, 8 entries, the building thread's io-wq on the last
    ///   online CPU, then one `IOSQE_ASYNC` NOP on it (its io-wq worker,
    ///   `iou-wrk-TID`, idles 5 s on that CPU);
    /// - ring B: `SQPOLL`, 8 entries, idle 1000 ms, its SQ thread's io-wq
    ///   on the first online CPU where the kernel registers it there (6.6+;
    ///   said in `iowq_affinity_missing` otherwise).
    IowqAffinity,
    /// One plain ring (8 entries) set up `R_DISABLED`, a wait region of
    /// one page of its own memory registered
    /// (`IORING_REGISTER_MEM_REGION` with `IORING_MEM_REGION_REG_WAIT_ARG`,
    /// 6.13+; said in `wait_region_missing` otherwise), then enabled: a
    /// dump records its length and address, and a restore registers it
    /// again on the same memory.
    WaitRegion,
    /// One plain ring (8 entries) with NAPI busy polling (25 us) and
    /// static tracking, and NAPI ids 100002, 100000 and 100001 added in
    /// that order (`IO_URING_NAPI_STATIC_ADD_ID`, 6.13+; said in
    /// `napi_missing` otherwise): ids no device has, which the kernel
    /// takes all the same.
    NapiStatic,
    /// A bit of everything:
    /// - ring A: `SQPOLL` (no `SQ_AFF`), 8 entries, idle 2000 ms, and a
    ///   `dup` of its fd (not close-on-exec);
    /// - ring B: `SQPOLL|ATTACH_WQ` to A, 4 entries, idle 500 ms, buffers
    ///   `[{page, 4096}, {NULL, 0}, {heap, 100}]` (an anonymous page, an empty
    ///   slot, a heap buffer);
    /// - ring C: plain, `CQSIZE`, 16 SQ / 64 CQ entries, with an eventfd
    ///   (count 7, `EFD_SEMAPHORE|EFD_NONBLOCK|EFD_CLOEXEC`) registered with
    ///   `IORING_REGISTER_EVENTFD` (sync), and files
    ///   `[data, -1, /dev/null, data, -1, -1]`: one file `data` in a temp dir
    ///   (18 bytes written, position 5) at slots 0 and 3, `/dev/null` opened
    ///   write-only at slot 2.
    Mix,
    /// A ring shared with forked children (`crate::shared`): one plain
    /// ring (8 entries) with an eventfd (count 3) and a file (`shared-data`
    /// in a temp dir, at slot 0 of 2) registered, then three children: one
    /// that keeps it and registers its fd at slot 2 of its thread's
    /// registered ring fds, one that closed and unmapped its copy, one with a
    /// ring of its own beside it; and a second ring (4 entries,
    /// `SINGLE_ISSUER`, owned by the main thread) that all four keep. The
    /// description lists the children in `children`.
    Shared,
    /// [`Scenario::Shared`] with an SQPOLL ring (idle 1000 ms), without the
    /// `SINGLE_ISSUER` ring.
    SharedSqpoll,
    /// The ring of [`Scenario::Shared`] kept by N forked children (no
    /// closer, no ring of a child's own): a tree of N + 1 processes.
    /// 1 <= N <= 1000.
    Tree(usize),
    /// No ring, and N forked children that hold nothing: a tree of the
    /// shape of `tree:N` (with 3, of `shared`) for a tree image to be
    /// restored into. Its pipes to the children sit at fd 900 and up.
    /// 1 <= N <= 1000.
    Children(usize),
    /// Two plain rings registered as ring fds (`IORING_REGISTER_RING_FDS`)
    /// at chosen offsets: the first at offset 3 in the building thread and
    /// at 7 in a second thread, the second at 0 in that second thread.
    RingFds,
    /// A ring held only by a registered ring fd: registered at offset 5 in
    /// the building thread, its fd then closed and its mappings kept
    /// (liburing's `io_uring_close_ring_fd`).
    RingFdOnly,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Seed => "seed",
            Scenario::Chain(_) => "chain",
            Scenario::Fanout(_) => "fanout",
            Scenario::Files(_) => "files",
            Scenario::Closed => "closed",
            Scenario::CreatorClosed(_) => "creator-closed",
            Scenario::Rings(_) => "rings",
            Scenario::Personalities(_) => "personalities",
            Scenario::Pbuf(_) => "pbuf",
            Scenario::PbufFresh(_) => "pbuf-fresh",
            Scenario::PbufLegacy => "pbuf-legacy",
            Scenario::LegacyBuffers(_) => "legacy-buffers",
            Scenario::LegacyEmpty => "legacy-empty",
            Scenario::PbufMmap => "pbuf-mmap",
            Scenario::Restricted => "restricted",
            Scenario::RestrictedEnabled => "restricted-enabled",
            Scenario::Settings => "settings",
            Scenario::WaitRegion => "wait-region",
            Scenario::NapiStatic => "napi-static",
            Scenario::IowqAffinity => "iowq-affinity",
            Scenario::Mix => "mix",
            Scenario::Shared => "shared",
            Scenario::SharedSqpoll => "shared-sqpoll",
            Scenario::Tree(_) => "tree",
            Scenario::Children(_) => "children",
            Scenario::RingFds => "ring-fds",
            Scenario::RingFdOnly => "ring-fd-only",
        }
    }

    fn count(self) -> Option<usize> {
        match self {
            Scenario::Chain(count)
            | Scenario::Fanout(count)
            | Scenario::Files(count)
            | Scenario::CreatorClosed(count)
            | Scenario::Rings(count)
            | Scenario::Personalities(count)
            | Scenario::Pbuf(count)
            | Scenario::PbufFresh(count)
            | Scenario::LegacyBuffers(count)
            | Scenario::Tree(count)
            | Scenario::Children(count) => Some(count),
            Scenario::Seed
            | Scenario::Closed
            | Scenario::Mix
            | Scenario::Restricted
            | Scenario::RestrictedEnabled
            | Scenario::Settings
            | Scenario::WaitRegion
            | Scenario::NapiStatic
            | Scenario::IowqAffinity
            | Scenario::PbufLegacy
            | Scenario::LegacyEmpty
            | Scenario::PbufMmap
            | Scenario::Shared
            | Scenario::SharedSqpoll => None,
            Scenario::RingFds | Scenario::RingFdOnly => None,
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.count() {
            Some(count) => write!(f, "{}:{count}", self.name()),
            None => f.write_str(self.name()),
        }
    }
}

impl FromStr for Scenario {
    type Err = ScenarioError;

    fn from_str(text: &str) -> Result<Scenario, ScenarioError> {
        let (name, count_text) = match text.split_once(':') {
            Some((name, count)) => (name, Some(count)),
            None => (text, None),
        };
        let without_count = |scenario: Scenario| match count_text {
            None => Ok(scenario),
            Some(given) => Err(ScenarioError::UnexpectedCount {
                name: scenario.name(),
                given: given.to_owned(),
            }),
        };
        let with_count = |name: &'static str, make: fn(usize) -> Scenario| {
            let given = count_text.ok_or(ScenarioError::MissingCount { name })?;
            match given.parse::<usize>() {
                Ok(count) if count >= 1 => Ok(make(count)),
                _ => Err(ScenarioError::BadCount {
                    name,
                    given: given.to_owned(),
                }),
            }
        };
        match name {
            "seed" => without_count(Scenario::Seed),
            "closed" => without_count(Scenario::Closed),
            "mix" => without_count(Scenario::Mix),
            "restricted" => without_count(Scenario::Restricted),
            "restricted-enabled" => without_count(Scenario::RestrictedEnabled),
            "settings" => without_count(Scenario::Settings),
            "wait-region" => without_count(Scenario::WaitRegion),
            "napi-static" => without_count(Scenario::NapiStatic),
            "iowq-affinity" => without_count(Scenario::IowqAffinity),
            "chain" => with_count("chain", Scenario::Chain),
            "fanout" => with_count("fanout", Scenario::Fanout),
            "files" => with_count("files", Scenario::Files),
            "creator-closed" => with_count("creator-closed", Scenario::CreatorClosed),
            "rings" => with_count("rings", Scenario::Rings),
            "personalities" => with_count("personalities", Scenario::Personalities),
            "pbuf" if count_text.is_none() => Ok(Scenario::Pbuf(2)),
            "pbuf" => with_count("pbuf", Scenario::Pbuf),
            "pbuf-fresh" => with_count("pbuf-fresh", Scenario::PbufFresh),
            "pbuf-legacy" => without_count(Scenario::PbufLegacy),
            "legacy-buffers" => with_count("legacy-buffers", Scenario::LegacyBuffers),
            "legacy-empty" => without_count(Scenario::LegacyEmpty),
            "pbuf-mmap" => without_count(Scenario::PbufMmap),
            "shared" => without_count(Scenario::Shared),
            "shared-sqpoll" => without_count(Scenario::SharedSqpoll),
            "tree" => with_count("tree", Scenario::Tree),
            "children" => with_count("children", Scenario::Children),
            "ring-fds" => without_count(Scenario::RingFds),
            "ring-fd-only" => without_count(Scenario::RingFdOnly),
            _ => Err(ScenarioError::UnknownScenario {
                given: text.to_owned(),
            }),
        }
    }
}

/// Why a scenario could not be parsed, built or held.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScenarioError {
    #[error(
        "unknown scenario {given:?}: expected seed, chain:N, fanout:N, files:N, closed, creator-closed:N, rings:N, mix, personalities:N, restricted, restricted-enabled, pbuf[:N], pbuf-fresh:N, pbuf-legacy, legacy-buffers:N, legacy-empty, pbuf-mmap, settings, wait-region, shared, shared-sqpoll, tree:N, children:N, ring-fds or ring-fd-only"
    )]
    UnknownScenario { given: String },
    #[error("scenario {name} needs a count, as in {name}:N")]
    MissingCount { name: &'static str },
    #[error("scenario {name} takes no count (got {name}:{given})")]
    UnexpectedCount { name: &'static str, given: String },
    #[error("scenario {name}: count {given:?} is not a whole number of at least 1")]
    BadCount { name: &'static str, given: String },
    #[error("{call} failed: {errno}")]
    Syscall {
        call: String,
        errno: rustix::io::Errno,
    },
    #[error(
        "{scenario} needs {fds_needed} more fds, which do not fit: the RLIMIT_NOFILE hard limit is {hard_limit} \
         and {already_open} fds are already open"
    )]
    TooManyFds {
        scenario: String,
        fds_needed: usize,
        hard_limit: u64,
        already_open: usize,
    },
    #[error("a {what} of {len} entries is too large to register")]
    TableTooLarge { what: &'static str, len: usize },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: wrote {written} of {wanted} bytes", path.display())]
    ShortWrite {
        path: PathBuf,
        written: usize,
        wanted: usize,
    },
    #[error("ring fd {fd} is already closed")]
    RingAlreadyClosed { fd: RawFd },
    #[error("fd {fd} is already closed")]
    FileAlreadyClosed { fd: RawFd },
    #[error("the SQ thread of ring fd {fd} did not start")]
    SqThreadDidNotStart { fd: RawFd },
    #[error("the {role} child (pid {pid}) of the shared scenario did not report ready")]
    ChildFailed { role: &'static str, pid: i32 },
    #[error("cannot watch for SIGTERM and SIGINT: {0}")]
    SignalSetup(std::io::Error),
    #[error("cannot write the scenario description: {0}")]
    WriteDescription(std::io::Error),
}

impl ScenarioError {
    pub(crate) fn syscall(call: String, errno: rustix::io::Errno) -> ScenarioError {
        ScenarioError::Syscall { call, errno }
    }
}

/// A built scenario. It owns every fd, mapping, buffer and temp file it
/// created and keeps them alive while it lives; dropping it closes and
/// removes them all (the kernel then tears the rings down).
#[derive(Debug)]
pub struct Built {
    scenario: Scenario,
    /// Children of a `shared` scenario, let go and reaped first.
    children: shared::Children,
    // Field order is drop order: after the children, registered ring fds
    // are released first
    // (their threads need the rings' fds open), then rings (mappings,
    // then fds).
    own_slots: ring_fds::OwnSlots,
    slot_threads: Vec<ring_fds::SlotThread>,
    rings: Vec<ScenarioRing>,
    gone_rings: Vec<ScenarioRing>,
    files: Vec<ScenarioFile>,
    eventfds: Vec<ScenarioEventfd>,
    buffer_memory: Vec<BufferMemory>,
    closed_fds: Vec<RawFd>,
    temp_dir: Option<TempDir>,
}

/// Builds `scenario` in the calling process.
pub fn build(scenario: &Scenario) -> Result<Built, ScenarioError> {
    let mut built = Built {
        scenario: *scenario,
        children: shared::Children::default(),
        own_slots: ring_fds::OwnSlots::default(),
        slot_threads: Vec::new(),
        rings: Vec::new(),
        gone_rings: Vec::new(),
        files: Vec::new(),
        eventfds: Vec::new(),
        buffer_memory: Vec::new(),
        closed_fds: Vec::new(),
        temp_dir: None,
    };
    match *scenario {
        Scenario::Seed => built.build_seed()?,
        Scenario::Chain(count) => built.build_chain(count)?,
        Scenario::Fanout(count) => built.build_fanout(count)?,
        Scenario::Files(count) => built.build_files(count)?,
        Scenario::Closed => built.build_closed()?,
        Scenario::CreatorClosed(count) => built.build_creator_closed(count)?,
        Scenario::Rings(count) => built.build_rings(count)?,
        Scenario::Personalities(count) => built.build_personalities(count)?,
        Scenario::Pbuf(count) => built.build_pbuf(count, 3)?,
        Scenario::PbufFresh(count) => built.build_pbuf(count, 0)?,
        Scenario::PbufLegacy => {
            let mut ring = ScenarioRing::set_up(&RingRequest::plain(8), "pbuf-legacy")?;
            ring.register_pbuf_ring(0, 8)?;
            ring.provide_and_consume(0, 8, 0)?;
            ring.provide_legacy_buffers(7, 0, 4, 64)?;
            ring.provide_legacy_buffers(7, 10, 3, 128)?;
            ring.consume_legacy_buffers(7, 2)?;
            // Above 63: 6.1 keeps low bgids in an array where an empty
            // list is no group, higher ones in the xarray as later
            // kernels keep all.
            ring.provide_legacy_buffers(70, 0, 1, 64)?;
            ring.consume_legacy_buffers(70, 1)?;
            built.rings.push(ring);
        }
        Scenario::LegacyBuffers(count) => {
            // 6.1 refuses bids past 65534: more than 60000 buffers are
            // provided 60000 at a time, each batch's bids from 0 again.
            const BATCH: usize = 60_000;
            if count > 4 * BATCH {
                return Err(ScenarioError::BadCount {
                    name: "legacy-buffers",
                    given: count.to_string(),
                });
            }
            let mut ring = ScenarioRing::set_up(&RingRequest::plain(8), "legacy-buffers")?;
            let mut left = count + 1;
            while left > 0 {
                let batch = left.min(BATCH);
                ring.provide_legacy_buffers(7, 0, batch as u16, 64)?;
                left -= batch;
            }
            ring.consume_legacy_buffers(7, 1)?;
            built.rings.push(ring);
        }
        Scenario::LegacyEmpty => {
            let mut ring = ScenarioRing::set_up(&RingRequest::plain(8), "legacy-empty")?;
            ring.provide_legacy_buffers(70, 0, 1, 64)?;
            ring.consume_legacy_buffers(70, 1)?;
            built.rings.push(ring);
        }
        Scenario::PbufMmap => {
            let mut ring = ScenarioRing::set_up(&RingRequest::plain(8), "pbuf-mmap")?;
            ring.register_pbuf_ring(0, 8)?;
            ring.register_kernel_pbuf_ring(9, 16)?;
            // Buffers in the kernel's memory, some taken: the entries, the
            // tail and the head a restore must bring back.
            ring.provide_and_consume(9, 12, 5)?;
            built.rings.push(ring);
        }
        Scenario::Restricted => built.build_restricted(false)?,
        Scenario::RestrictedEnabled => built.build_restricted(true)?,
        Scenario::Settings => built.build_settings()?,
        Scenario::WaitRegion => {
            let request = RingRequest {
                flags: IoringSetupFlags::R_DISABLED,
                ..RingRequest::plain(8)
            };
            let mut ring = ScenarioRing::set_up(&request, "wait-region")?;
            ring.register_wait_region(4096)?;
            ring.enable()?;
            built.rings.push(ring);
        }
        Scenario::NapiStatic => {
            let mut ring = ScenarioRing::set_up(&RingRequest::plain(8), "napi-static")?;
            ring.register_napi_static(25, &[100_002, 100_000, 100_001])?;
            built.rings.push(ring);
        }
        Scenario::IowqAffinity => built.build_iowq_affinity()?,
        Scenario::Mix => built.build_mix()?,
        Scenario::Shared => built.build_shared(false)?,
        Scenario::SharedSqpoll => built.build_shared(true)?,
        Scenario::Tree(count) => built.build_tree(count)?,
        Scenario::Children(count) => built.build_children(count)?,
        Scenario::RingFds => built.build_ring_fds()?,
        Scenario::RingFdOnly => built.build_ring_fd_only()?,
    }
    built.closed_fds.sort_unstable();
    Ok(built)
}

/// `plan app`: watches for SIGTERM and SIGINT, builds `scenario`, writes its
/// description to `out` as one JSON line, waits for one of the signals and
/// tears the scenario down. The signals are watched before anything is
/// built, so a signal sent as soon as the line is read is never lost.
pub fn hold(scenario: &Scenario, out: &mut dyn Write) -> Result<StopSignal, ScenarioError> {
    let mut stop_signals = StopSignals::watch()?;
    let built = build(scenario)?;
    writeln!(out, "{}", built.description())
        .and_then(|()| out.flush())
        .map_err(ScenarioError::WriteDescription)?;
    let signal = stop_signals.wait();
    drop(built);
    Ok(signal)
}

/// Idle time of the k-th ring of a group: distinct per ring (so a dump that
/// reports the group's maximum instead of each ring's own is caught), and a
/// multiple of 4 ms, so exact in jiffies at HZ=250 and HZ=1000.
fn group_member_idle_ms(index: usize) -> u32 {
    let index = u32::try_from(index).unwrap_or(u32::MAX);
    1000u32.saturating_add(index.saturating_mul(4))
}

impl Built {
    fn build_iowq_affinity(&mut self) -> Result<(), ScenarioError> {
        let mut plain = ScenarioRing::set_up(&RingRequest::plain(8), "iowq-affinity, ring A")?;
        let mut sqpoll =
            ScenarioRing::set_up(&RingRequest::sqpoll(8, 1000), "iowq-affinity, ring B")?;
        sqpoll.sq_group = Some(sqpoll.fd_number);
        let online = ringplan_kernel::procfs::cpus::online().unwrap_or_default();
        match (online.first(), online.last()) {
            (Some(&first), Some(&last)) if first != last => {
                plain.set_iowq_affinity(&[last])?;
                sqpoll.set_iowq_affinity(&[first])?;
                // A worker of the building thread's io-wq, seen from
                // outside on the registered CPU.
                plain.punt_nop("iowq-affinity, ring A")?;
            }
            _ => {
                let missing = format!(
                    "this machine has {} online CPU(s): a one-CPU mask is every CPU, the kernel's default",
                    online.len()
                );
                plain.settings.iowq_affinity_missing = Some(missing.clone());
                sqpoll.settings.iowq_affinity_missing = Some(missing);
            }
        }
        self.rings.extend([plain, sqpoll]);
        Ok(())
    }

    fn build_ring_fds(&mut self) -> Result<(), ScenarioError> {
        let mut first = ScenarioRing::set_up(&RingRequest::plain(4), "ring-fds, first ring")?;
        let mut second = ScenarioRing::set_up(&RingRequest::plain(4), "ring-fds, second ring")?;
        self.own_slots.register(first.fd()?, 3)?;
        first.registered_ring_fds.push((ring_fds::current_tid(), 3));
        let thread =
            ring_fds::SlotThread::start(vec![(first.fd_number, 7), (second.fd_number, 0)])?;
        first.registered_ring_fds.push((thread.tid, 7));
        second.registered_ring_fds.push((thread.tid, 0));
        self.slot_threads.push(thread);
        for ring in [&mut first, &mut second] {
            ring.registered_ring_fds.sort_unstable();
        }
        self.rings.extend([first, second]);
        Ok(())
    }

    fn build_ring_fd_only(&mut self) -> Result<(), ScenarioError> {
        let mut ring = ScenarioRing::set_up(&RingRequest::plain(4), "ring-fd-only")?;
        self.own_slots.register_before_close(ring.fd()?, 5)?;
        ring.registered_ring_fds.push((ring_fds::current_tid(), 5));
        // The slot holds the ring now; its mappings stay.
        drop(ring.fd.take());
        self.closed_fds.push(ring.fd_number);
        self.rings.push(ring);
        Ok(())
    }

    fn build_seed(&mut self) -> Result<(), ScenarioError> {
        let parent_request = RingRequest {
            sq_entries: 2,
            flags: IoringSetupFlags::SQPOLL | IoringSetupFlags::SQ_AFF | IoringSetupFlags::CQSIZE,
            cq_entries: 4,
            sq_thread_cpu: 0,
            sq_thread_idle_ms: 1500,
            attach_to: None,
        };
        let mut parent = ScenarioRing::set_up(&parent_request, "seed parent ring")?;
        parent.wait_for_sq_thread()?;
        let mut attached = ScenarioRing::set_up(
            &parent_request.attached_to(parent.fd()?),
            "seed attached ring",
        )?;
        parent.sq_group = Some(parent.fd_number);
        attached.sq_group = Some(parent.fd_number);

        let eventfd = ScenarioEventfd::create(42, EventfdFlags::empty())?;
        attached.register_eventfd(eventfd.fd()?, true)?;
        let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
        attached.register_files(&[
            Some(stdin.as_fd()),
            None,
            Some(stdout.as_fd()),
            None,
            Some(stderr.as_fd()),
        ])?;
        let buffer = BufferMemory::heap(120, b"ringplan seed buffer ");
        // SAFETY: the buffer lives in `self.buffer_memory`, which drops after
        // the rings.
        unsafe { attached.register_buffers(&[RegisterIovec::EMPTY, buffer.iovec()]) }?;

        self.eventfds.push(eventfd);
        self.buffer_memory.push(buffer);
        self.rings.extend([parent, attached]);
        Ok(())
    }

    /// Sets up `count` SQPOLL rings attached to the first (`fanout`) or each
    /// to the one before (`chain`).
    fn build_sqpoll_group(
        &mut self,
        count: usize,
        chained: bool,
        context: &str,
    ) -> Result<(), ScenarioError> {
        let mut group: Vec<ScenarioRing> = Vec::with_capacity(count);
        for index in 0..count {
            let request = RingRequest::sqpoll(4, group_member_idle_ms(index));
            let ring_context = format!("{context}, ring {index}");
            let ring = match group.last() {
                None => {
                    let creator = ScenarioRing::set_up(&request, &ring_context)?;
                    creator.wait_for_sq_thread()?;
                    creator
                }
                Some(previous) => {
                    let parent = if chained { previous } else { &group[0] };
                    ScenarioRing::set_up(&request.attached_to(parent.fd()?), &ring_context)?
                }
            };
            group.push(ring);
        }
        let creator_fd = group.first().map(|ring| ring.fd_number);
        for ring in &mut group {
            ring.sq_group = creator_fd;
        }
        self.rings.extend(group);
        Ok(())
    }

    fn build_chain(&mut self, count: usize) -> Result<(), ScenarioError> {
        make_room_for_fds(count, &self.scenario)?;
        self.build_sqpoll_group(count, true, &format!("chain:{count}"))
    }

    fn build_fanout(&mut self, count: usize) -> Result<(), ScenarioError> {
        make_room_for_fds(count + 1, &self.scenario)?;
        self.build_sqpoll_group(count + 1, false, &format!("fanout:{count}"))
    }

    fn build_creator_closed(&mut self, count: usize) -> Result<(), ScenarioError> {
        make_room_for_fds(count + 1, &self.scenario)?;
        self.build_sqpoll_group(count + 1, false, &format!("creator-closed:{count}"))?;
        let mut creator = self.rings.remove(0);
        creator.close_and_unmap();
        self.closed_fds.push(creator.fd_number);
        self.gone_rings.push(creator);
        Ok(())
    }

    fn build_rings(&mut self, count: usize) -> Result<(), ScenarioError> {
        make_room_for_fds(count, &self.scenario)?;
        for index in 0..count {
            self.rings.push(ScenarioRing::set_up(
                &RingRequest::plain(8),
                &format!("rings:{count}, ring {index}"),
            )?);
        }
        Ok(())
    }

    /// `count` buffer rings; the first has `consumed` of its 8 buffers
    /// consumed, the others theirs provided only when nothing is consumed.
    fn build_pbuf(&mut self, count: usize, consumed: u16) -> Result<(), ScenarioError> {
        // bgid = 65 * i stays below 65536 for i < 1009.
        if !(1..=1000).contains(&count) {
            return Err(ScenarioError::BadCount {
                name: "pbuf",
                given: count.to_string(),
            });
        }
        let mut ring = ScenarioRing::set_up(&RingRequest::plain(8), &format!("pbuf:{count}"))?;
        for index in 0..count {
            ring.register_pbuf_ring((index * 65) as u16, 8)?;
        }
        if consumed > 0 {
            ring.provide_and_consume(0, 8, consumed)?;
        } else {
            for index in 0..count {
                ring.provide_and_consume((index * 65) as u16, 8, 0)?;
            }
        }
        self.rings.push(ring);
        Ok(())
    }

    fn build_personalities(&mut self, count: usize) -> Result<(), ScenarioError> {
        let limit = ringplan_kernel::abi::personality::MAX_ID as usize;
        if count >= limit {
            return Err(ScenarioError::BadCount {
                name: "personalities",
                given: count.to_string(),
            });
        }
        let mut ring =
            ScenarioRing::set_up(&RingRequest::plain(8), &format!("personalities:{count}"))?;
        for _ in 0..=count {
            ring.register_personality()?;
        }
        ring.unregister_personality(2)?;
        self.rings.push(ring);
        Ok(())
    }

    fn build_restricted(&mut self, enable: bool) -> Result<(), ScenarioError> {
        let request = RingRequest {
            flags: IoringSetupFlags::R_DISABLED,
            ..RingRequest::plain(8)
        };
        let mut ring = ScenarioRing::set_up(&request, "restricted")?;
        ring.register_restrictions(ring::ScenarioRestrictions {
            register_ops: vec![9, 12],
            sqe_ops: vec![0, 22],
            sqe_flags_allowed: 0x41,
            sqe_flags_required: 0,
        })?;
        if enable {
            ring.enable()?;
        }
        self.rings.push(ring);
        Ok(())
    }

    fn build_settings(&mut self) -> Result<(), ScenarioError> {
        let temp_dir = self.temp_dir.insert(TempDir::create()?);
        let mut files = Vec::with_capacity(4);
        for index in 0..4 {
            files.push(ScenarioFile::create(
                temp_dir.path().join(format!("tagged-{index}")),
            )?);
        }
        let mut ring = ScenarioRing::set_up(&RingRequest::plain(8), "settings")?;
        ring.register_files_tagged(&[
            (Some(files[0].fd()?), 0x1001),
            (Some(files[1].fd()?), 0),
            (None, 0),
            (Some(files[2].fd()?), 0x1003),
            (Some(files[3].fd()?), 0x1004),
            (None, 0),
            (None, 0),
            (None, 0),
        ])?;
        ring.set_file_alloc_range(5, 3)?;
        let first = BufferMemory::heap(64, b"ringplan tagged buffer ");
        let second = BufferMemory::heap(32, b"ringplan untagged buffer ");
        // SAFETY: both buffers live in `self.buffer_memory`, which drops
        // after the rings.
        unsafe {
            ring.register_buffers_tagged(
                &[first.iovec(), RegisterIovec::EMPTY, second.iovec()],
                &[0x2001, 0, 0],
            )
        }?;
        ring.set_iowq_max_workers(3, 5)?;
        ring.register_napi(50, true)?;
        self.buffer_memory.extend([first, second]);
        self.files = files;
        self.rings.push(ring);
        Ok(())
    }

    fn build_files(&mut self, count: usize) -> Result<(), ScenarioError> {
        // The files, and the ring's fd.
        make_room_for_fds(count + 1, &self.scenario)?;
        let temp_dir = self.temp_dir.insert(TempDir::create()?);
        let mut files = Vec::with_capacity(count);
        for index in 0..count {
            files.push(ScenarioFile::create(
                temp_dir.path().join(format!("file-{index:05}")),
            )?);
        }
        let mut ring = ScenarioRing::set_up(&RingRequest::plain(8), &format!("files:{count}"))?;
        let slots = files
            .iter()
            .map(|file| file.fd().map(Some))
            .collect::<Result<Vec<_>, _>>()?;
        ring.register_files(&slots)?;
        self.files = files;
        self.rings.push(ring);
        Ok(())
    }

    fn build_closed(&mut self) -> Result<(), ScenarioError> {
        let temp_dir = self.temp_dir.insert(TempDir::create()?);
        let mut files = Vec::with_capacity(4);
        for index in 0..4 {
            files.push(ScenarioFile::create(
                temp_dir.path().join(format!("closed-{index}")),
            )?);
        }
        let mut eventfd = ScenarioEventfd::create(5, EventfdFlags::CLOEXEC)?;
        let mut ring = ScenarioRing::set_up(&RingRequest::plain(8), "closed")?;
        ring.register_eventfd(eventfd.fd()?, false)?;
        ring.register_files(&[
            Some(files[0].fd()?),
            Some(files[1].fd()?),
            None,
            Some(files[2].fd()?),
            Some(files[3].fd()?),
        ])?;

        eventfd.fd = None;
        self.closed_fds.push(eventfd.fd_number);
        for index in [0, 2] {
            files[index].fd = None;
            self.closed_fds.push(files[index].fd_number);
        }
        self.eventfds.push(eventfd);
        self.files = files;
        self.rings.push(ring);
        Ok(())
    }

    fn build_mix(&mut self) -> Result<(), ScenarioError> {
        let mut ring_a = ScenarioRing::set_up(&RingRequest::sqpoll(8, 2000), "mix ring A")?;
        ring_a.wait_for_sq_thread()?;
        let mut ring_b = ScenarioRing::set_up(
            &RingRequest::sqpoll(4, 500).attached_to(ring_a.fd()?),
            "mix ring B",
        )?;
        ring_a.sq_group = Some(ring_a.fd_number);
        ring_b.sq_group = Some(ring_a.fd_number);
        let ring_a_dup = rustix::io::dup(ring_a.fd()?)
            .map_err(|errno| ScenarioError::syscall(format!("dup({})", ring_a.fd_number), errno))?;
        ring_a.dup_fds.push(ring_a_dup);

        let page = BufferMemory::pages(4096, b"ringplan mix page ")?;
        let heap = BufferMemory::heap(100, b"ringplan mix heap ");
        // SAFETY: both buffers live in `self.buffer_memory`, which drops
        // after the rings.
        unsafe { ring_b.register_buffers(&[page.iovec(), RegisterIovec::EMPTY, heap.iovec()]) }?;

        let cq_request = RingRequest {
            flags: IoringSetupFlags::CQSIZE,
            cq_entries: 64,
            ..RingRequest::plain(16)
        };
        let mut ring_c = ScenarioRing::set_up(&cq_request, "mix ring C")?;
        let eventfd = ScenarioEventfd::create(
            7,
            EventfdFlags::SEMAPHORE | EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC,
        )?;
        ring_c.register_eventfd(eventfd.fd()?, false)?;
        let temp_dir = self.temp_dir.insert(TempDir::create()?);
        let mut data = ScenarioFile::create(temp_dir.path().join("data"))?;
        data.write_and_seek(b"ringplan mix data\n", 5)?;
        let null = ScenarioFile::open("/dev/null", OFlags::WRONLY | OFlags::CLOEXEC)?;
        ring_c.register_files(&[
            Some(data.fd()?),
            None,
            Some(null.fd()?),
            Some(data.fd()?),
            None,
            None,
        ])?;

        self.buffer_memory.extend([page, heap]);
        self.eventfds.push(eventfd);
        self.files.extend([data, null]);
        self.rings.extend([ring_a, ring_b, ring_c]);
        Ok(())
    }

    /// The scenario this was built from.
    pub fn scenario(&self) -> Scenario {
        self.scenario
    }

    /// The fd numbers of the rings the process holds open, in setup order.
    pub fn ring_fds(&self) -> Vec<RawFd> {
        self.rings
            .iter()
            .filter_map(|ring| ring.fd.as_ref().map(AsRawFd::as_raw_fd))
            .collect()
    }

    /// An open ring fd, for callers that want to look at the kernel's view
    /// of it themselves.
    pub fn ring_fd(&self, index: usize) -> Option<BorrowedFd<'_>> {
        self.rings
            .get(index)
            .and_then(|ring| ring.fd.as_ref())
            .map(AsFd::as_fd)
    }

    /// What was built, as one JSON object (see the crate docs for its shape).
    pub fn description(&self) -> Value {
        json!({
            "pid": std::process::id(),
            "scenario": self.scenario.to_string(),
            "rings": self.rings.iter().map(describe_ring).collect::<Vec<_>>(),
            "gone_rings": self.gone_rings.iter()
                .map(|ring| json!({ "former_fd": ring.fd_number, "sq_group": ring.sq_group }))
                .collect::<Vec<_>>(),
            "eventfds": self.eventfds.iter().map(|eventfd| json!({
                "fd": eventfd.fd_number,
                "open": eventfd.fd.is_some(),
                "count": eventfd.count,
                "semaphore": eventfd.flags.contains(EventfdFlags::SEMAPHORE),
                "nonblock": eventfd.flags.contains(EventfdFlags::NONBLOCK),
                "cloexec": eventfd.flags.contains(EventfdFlags::CLOEXEC),
            })).collect::<Vec<_>>(),
            "files": self.files.iter().map(|file| json!({
                "fd": file.fd_number,
                "open": file.fd.is_some(),
                "path": file.path.to_string_lossy(),
                "cloexec": file.cloexec,
                "pos": file.pos,
            })).collect::<Vec<_>>(),
            "closed_fds": self.closed_fds,
            "temp_dir": self.temp_dir.as_ref().map(|dir| dir.path().to_string_lossy().into_owned()),
            "children": self.children.description(),
        })
    }
}

fn describe_ring(ring: &ScenarioRing) -> Value {
    json!({
        "fd": ring.fd.as_ref().map(AsRawFd::as_raw_fd),
        "dup_fds": ring.dup_fds.iter().map(AsRawFd::as_raw_fd).collect::<Vec<_>>(),
        "sq_group": ring.sq_group,
        "features": ring.features.bits(),
        "setup": {
            "flags": ring.flags.bits(),
            "flag_names": ring.flags.iter_names().map(|(name, _)| name).collect::<Vec<_>>(),
            "sq_entries": ring.sq_entries,
            "cq_entries": ring.cq_entries,
            "sq_thread_cpu": ring.sq_thread_cpu,
            "sq_thread_idle_ms": ring.sq_thread_idle_ms,
            "wq_fd": ring.wq_fd,
        },
        "eventfd": ring.eventfd.map(|eventfd| json!({ "fd": eventfd.fd, "async": eventfd.is_async })),
        "files": ring.files.iter()
            .map(|slot| slot.as_ref().map(|slot| json!({ "fd": slot.fd, "path": slot.path })))
            .collect::<Vec<_>>(),
        "buffers": ring.buffers.iter()
            .map(|slot| slot.map(|(addr, len)| json!({ "addr": addr, "len": len })))
            .collect::<Vec<_>>(),
        "mappings": ring.mappings.iter()
            .map(|mapping| json!({ "region": mapping.region.name(), "addr": mapping.addr, "len": mapping.len }))
            .collect::<Vec<_>>(),
        "personalities": ring.personalities,
        "pbuf_rings": ring.pbuf_rings.iter()
            .map(|pbuf| json!({ "bgid": pbuf.bgid, "entries": pbuf.entries, "addr": pbuf.memory.addr, "head": pbuf.head, "mmap": pbuf.kernel_memory }))
            .collect::<Vec<_>>(),
        "legacy_buffer_groups": ring.legacy_groups.iter()
            .map(|group| json!({
                "bgid": group.bgid,
                "buffers": group.buffers.iter()
                    .map(|(addr, len, bid)| json!({ "addr": addr, "len": len, "bid": bid }))
                    .collect::<Vec<_>>(),
            }))
            .collect::<Vec<_>>(),
        "personality_next": ring.personality_next,
        "registered_ring_fds": ring.registered_ring_fds.iter()
            .map(|(tid, offset)| json!({ "tid": tid, "offset": offset }))
            .collect::<Vec<_>>(),
        "restrictions": ring.restrictions.as_ref().map(|r| json!({
            "register_ops": r.register_ops,
            "sqe_ops": r.sqe_ops,
            "sqe_flags_allowed": r.sqe_flags_allowed,
            "sqe_flags_required": r.sqe_flags_required,
        })),
        "settings": settings::describe(&ring.settings),
    })
}

#[cfg(test)]
mod tests;
