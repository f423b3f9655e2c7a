//! The plan's types. Field order here is the field order on the wire.
//!
//! A plan is a list of [`Step`]s in execution order. Each step carries one
//! [`Op`] with every parameter the executor needs, the image object it acts
//! on (if any), and the earlier steps it waits for. Steps that create an fd
//! define a [`Handle`]: the step's own index. Later steps name fds by handle
//! only; the executor keeps a table from handle to the real fd it got.

use ringplan_image::{
    Cqe, FileIdentity, FileType, ObjectId, Personality, QueuedSqe, Restrictions, RingMapping,
    SetupFlags, SlotSqe, Source, UserRegion,
};
use serde::{Deserialize, Serialize};

/// The format name every plan carries; a reader refuses any other.
pub const FORMAT_NAME: &str = "ringplan-plan";
/// The format version this crate writes for a plan of one process. Version
/// 2 added the continuity ops (`place_ring_memory`, `restore_completions`,
/// `queue_sqes`) and the `memory` and `owner_tid` of `setup_ring`.
pub const FORMAT_VERSION: u32 = 2;
/// The format version of a tree plan ([`Plan::processes`], the
/// `receive_fd` op, `lend` of `place_ring_memory`): a reader of version 2
/// would run only the first process's part, so such a plan says 3. A plan
/// of one process stays version 2.
pub const TREE_FORMAT_VERSION: u32 = 3;
/// The oldest format version this crate reads.
pub const OLDEST_FORMAT_VERSION: u32 = 1;

/// The index of a step in [`Plan::steps`].
pub type StepIndex = u32;

/// The fd an earlier step created, named by that step's index.
///
/// Only `create_eventfd`, `open_file`, `external_input` and `setup_ring`
/// define handles. The executor places each such fd at or above
/// [`Plan::temp_fd_floor`] and records it under the step's index; a
/// `close_fd` step ends the handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Handle(pub StepIndex);

impl std::fmt::Display for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "h{}", self.0)
    }
}

/// A compiled restore plan: everything a restorer needs, without the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Always [`FORMAT_NAME`].
    pub format: String,
    /// [`FORMAT_VERSION`], or [`TREE_FORMAT_VERSION`] for a tree plan
    /// (older versions as read).
    pub version: u32,
    /// Where the image this plan was compiled from was taken.
    pub source: Source,
    /// Every fd number some `install_fd` step writes, ascending. All must be
    /// free before the first step runs: the executor checks, and the plan
    /// never touches any other fd number below [`Plan::temp_fd_floor`].
    pub needed_fds: Vec<i32>,
    /// Every fd a step creates lives at or above this number until an
    /// `install_fd` step copies it onto its target: one more than the largest
    /// needed fd (0 when there is none).
    pub temp_fd_floor: i32,
    /// The most temporaries the steps keep open at once. With
    /// [`Plan::temp_fd_floor`] it bounds the fd numbers a run uses, so the
    /// executor can check `RLIMIT_NOFILE` before it starts.
    pub peak_temporaries: u32,
    /// The steps in execution order.
    pub steps: Vec<Step>,
    /// A tree plan (compiled from a `plan dump --tree` image): the part of
    /// every other process of the tree, in the order they run, each after
    /// this plan's own steps (the part of the tree's first process,
    /// [`Source::pid`]) and the parts before it. A part takes what an
    /// earlier part created with `receive_fd`. Empty (and left off the
    /// wire) for a plan of one process; parts have none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub processes: Vec<ProcessPart>,
}

/// One process's part of a tree plan: a plan of its own, run inside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessPart {
    /// The recorded process (its `plan.source.pid` too).
    pub pid: u32,
    /// Its recorded parent: the tree's first process or an earlier part's.
    pub parent: u32,
    pub plan: Plan,
}

impl Plan {
    /// The fd numbers that must be free before the plan runs (the same as
    /// the [`Plan::needed_fds`] field).
    pub fn needed_fds(&self) -> &[i32] {
        &self.needed_fds
    }

    /// About how long a run's `restore_completions` steps take together
    /// (see [`RestoreCompletions::estimated_time`]): most of a restore's
    /// time when a ring's positions are far from 0.
    pub fn estimated_position_time(&self) -> std::time::Duration {
        (0..self.steps.len())
            .filter_map(|index| self.estimated_step_time(index))
            .sum()
    }

    /// About how long step `index` takes, for a `restore_completions` whose
    /// ring's setup the plan has; `None` for every other step.
    pub fn estimated_step_time(&self, index: usize) -> Option<std::time::Duration> {
        let Op::RestoreCompletions(restore) = &self.steps.get(index)?.op else {
            return None;
        };
        match &self.steps.get(restore.ring_handle.0 as usize)?.op {
            Op::SetupRing(setup) => Some(restore.estimated_time(setup)),
            _ => None,
        }
    }

    /// The largest fd number a run of this plan may use, plus one: what
    /// `RLIMIT_NOFILE` must allow at least, ignoring fds the executor holds
    /// itself above the floor.
    pub fn fd_limit_needed(&self) -> u64 {
        // Both terms are non-negative and well below u64::MAX.
        u64::try_from(self.temp_fd_floor).unwrap_or(0) + u64::from(self.peak_temporaries)
    }
}

/// One restore action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// The image object this step acts on: the object it creates, installs,
    /// closes or registers into (for `register_*`, the ring). `None` for the
    /// memory barrier, for temporary rings that exist in no image, and for a
    /// `close_fd` of several objects' fds.
    pub object: Option<ObjectId>,
    /// The steps this one waits for, ascending, each earlier than this step:
    /// every step whose handle it uses, and every step that must have used a
    /// handle before this step closes it.
    pub after: Vec<StepIndex>,
    /// What to do.
    pub op: Op,
}

/// What a step does, with all its parameters. The variant names are the
/// `op` names of the JSON view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// `eventfd2` an eventfd; defines a handle.
    CreateEventfd(CreateEventfd),
    /// `openat` a file by path and seek it; defines a handle.
    OpenFile(OpenFile),
    /// Take an fd the restorer supplies (a pipe, a socket, anything that
    /// cannot be reopened by path); defines a handle.
    ExternalInput(ExternalInput),
    /// `io_uring_setup` a ring; defines a handle.
    SetupRing(SetupRing),
    /// `IORING_REGISTER_EVENTFD[_ASYNC]`.
    RegisterEventfd(RegisterEventfd),
    /// `IORING_REGISTER_FILES`, the whole table in one call.
    RegisterFiles(RegisterFiles),
    /// `IORING_REGISTER_PERSONALITY` once per id up to the recorded ones
    /// (and the allocator's next id), then `IORING_UNREGISTER_PERSONALITY`
    /// of the fillers, so the kernel's ids and its next id are the
    /// recorded ones.
    RegisterPersonalities(RegisterPersonalities),
    /// `IORING_REGISTER_PBUF_RING`: one buffer ring on the program's memory
    /// at its recorded address (after the memory barrier).
    RegisterPbufRing(RegisterPbufRing),
    /// `IORING_OP_PROVIDE_BUFFERS` SQEs that give a legacy buffer group
    /// its recorded buffers again, in the kernel's order (after the memory
    /// barrier, on a continuous ring set up enabled).
    ProvideBuffers(ProvideBuffers),
    /// `IORING_REGISTER_RING_FDS`: the ring in a registered ring-fd slot
    /// of thread `tid` at its recorded offset.
    RegisterRingFd(RegisterRingFd),
    /// `IORING_REGISTER_RESTRICTIONS` on a ring set up `R_DISABLED` (the
    /// planner adds the flag to a recorded ring that was enabled since).
    RegisterRestrictions(RegisterRestrictions),
    /// The ring's registered settings: `IORING_REGISTER_FILE_ALLOC_RANGE`
    /// (after its file table, which resets the range),
    /// `IORING_REGISTER_IOWQ_MAX_WORKERS`, `IORING_REGISTER_NAPI`.
    RegisterSettings(RegisterSettings),
    /// `IORING_REGISTER_MEM_REGION` with `IORING_MEM_REGION_REG_WAIT_ARG`:
    /// the ring's wait region on the program's memory at its recorded
    /// address, right after `setup_ring` (the kernel takes one only while
    /// the ring is `R_DISABLED`, which the planner adds).
    RegisterWaitRegion(RegisterWaitRegion),
    /// `IORING_REGISTER_ENABLE_RINGS`: only for a ring the image recorded
    /// enabled and the planner set up disabled. For restrictions, after
    /// every registration and queued SQE of the ring (once enabled, its
    /// restrictions apply to registrations too, and an SQ thread starts);
    /// for a wait region alone, right after it, before anything else is
    /// done to the ring.
    EnableRings(EnableRings),
    /// Map memory at a ring's recorded addresses (`MAP_FIXED_NOREPLACE`)
    /// for its `setup_ring` to be created on (`IORING_SETUP_NO_MMAP`).
    PlaceRingMemory(PlaceRingMemory),
    /// Bring a new ring's positions to the recorded ones (consumed NOPs),
    /// and put its overflowed and unconsumed CQEs back.
    RestoreCompletions(RestoreCompletions),
    /// Write a ring's queued SQEs and SQ array back and publish its tail:
    /// after every registration, installed fd and the memory barrier, as an
    /// SQ thread consumes them at once.
    QueueSqes(QueueSqes),
    /// From here on the task's memory must be in place: a restorer that
    /// restores memory itself does so when it reaches this step.
    MemoryBarrier,
    /// `IORING_REGISTER_BUFFERS`, the whole table in one call; always after
    /// the memory barrier.
    RegisterBuffers(RegisterBuffers),
    /// `dup3` a handle's fd onto its target fd number.
    InstallFd(InstallFd),
    /// `close` temporaries' fds (never a target).
    CloseFd(CloseFd),
    /// Take an object an earlier part of a tree plan created, from that
    /// process: `pidfd_open` + `pidfd_getfd` made inside the receiving
    /// process; defines a handle. A ring's mappings in this process come
    /// with it.
    ReceiveFd(ReceiveFd),
}

impl Op {
    /// The op's name in the JSON view, the text view and error messages.
    pub fn name(&self) -> &'static str {
        match self {
            Op::CreateEventfd(_) => "create_eventfd",
            Op::OpenFile(_) => "open_file",
            Op::ExternalInput(_) => "external_input",
            Op::SetupRing(_) => "setup_ring",
            Op::RegisterEventfd(_) => "register_eventfd",
            Op::RegisterFiles(_) => "register_files",
            Op::RegisterPersonalities(_) => "register_personalities",
            Op::RegisterPbufRing(_) => "register_pbuf_ring",
            Op::ProvideBuffers(_) => "provide_buffers",
            Op::RegisterRingFd(_) => "register_ring_fd",
            Op::RegisterRestrictions(_) => "register_restrictions",
            Op::RegisterSettings(_) => "register_settings",
            Op::RegisterWaitRegion(_) => "register_wait_region",
            Op::EnableRings(_) => "enable_rings",
            Op::PlaceRingMemory(_) => "place_ring_memory",
            Op::RestoreCompletions(_) => "restore_completions",
            Op::QueueSqes(_) => "queue_sqes",
            Op::MemoryBarrier => "memory_barrier",
            Op::RegisterBuffers(_) => "register_buffers",
            Op::InstallFd(_) => "install_fd",
            Op::CloseFd(_) => "close_fd",
            Op::ReceiveFd(_) => "receive_fd",
        }
    }

    /// Whether the step creates an fd that later steps name by its handle.
    pub fn defines_handle(&self) -> bool {
        matches!(
            self,
            Op::CreateEventfd(_)
                | Op::OpenFile(_)
                | Op::ExternalInput(_)
                | Op::SetupRing(_)
                | Op::ReceiveFd(_)
        )
    }
}

/// Parameters of `create_eventfd`: `eventfd2(count, flags)`.
///
/// `eventfd2` takes a 32-bit initial count; for a larger count the executor
/// creates the eventfd with 0 and `write`s the count (any count up to
/// `u64::MAX - 1` can be written to a fresh eventfd without blocking).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateEventfd {
    pub count: u64,
    /// `EFD_SEMAPHORE`
    pub semaphore: bool,
    /// `EFD_NONBLOCK`
    pub nonblock: bool,
}

/// Parameters of `open_file`: `openat(AT_FDCWD, path, flags)`, then
/// `lseek(fd, pos, SEEK_SET)` unless `pos` is 0 (character devices may
/// refuse to seek).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenFile {
    /// Absolute path.
    pub path: String,
    /// The flags to pass as they are: the recorded `f_flags` without
    /// `O_CREAT`, `O_EXCL` and `O_TRUNC` (a restore never creates or
    /// truncates; the kernel does not keep them in `f_flags` anyway), with
    /// `O_NOCTTY` (a reopened terminal must not become the restorer's
    /// controlling terminal) and `O_CLOEXEC` (every temporary is
    /// close-on-exec; `install_fd` sets each target's own flag).
    pub flags: u32,
    /// The file position to seek to.
    pub pos: i64,
    /// What the image says the file is (one of [`OpenFile::REOPENABLE`]):
    /// the executor refuses a path that names anything else now, such as
    /// a FIFO, whose open would block. Plans written before it existed
    /// lack it (`None`): then any reopenable type is taken.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub file_type: Option<FileType>,
    /// The recorded inode (the image's `identity`): a restore into a
    /// process that already holds a file at the step's recorded fd adopts
    /// that fd only if it is this inode. `None` for a file no fd held,
    /// and in plans from images without it (then the path is compared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<FileIdentity>,
}

impl OpenFile {
    /// The types of file a plan reopens by path: the others (pipes,
    /// sockets, symlinks opened with `O_PATH`, anonymous inodes) are
    /// external inputs.
    pub const REOPENABLE: [FileType; 4] = [
        FileType::Regular,
        FileType::Directory,
        FileType::CharDevice,
        FileType::BlockDevice,
    ];

    /// Whether a file of type `found` is what this step may open: the
    /// recorded type, or, in a plan without one, any reopenable type.
    pub fn admits(&self, found: FileType) -> bool {
        match self.file_type {
            Some(recorded) => recorded == found,
            None => Self::REOPENABLE.contains(&found),
        }
    }
}

/// Parameters of `external_input`: a file the planner cannot reopen. The
/// restorer supplies an fd for the step's object (for instance a pipe it
/// recreated, or a socket handed over); the executor dups it above the floor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalInput {
    /// Why the planner could not open it itself.
    pub reason: ExternalReason,
    /// What the image says about the file, for the restorer to match on.
    #[serde(rename = "type")]
    pub file_type: FileType,
    pub path: Option<String>,
    pub flags: Option<u32>,
    pub pos: Option<i64>,
}

/// Why a file is an external input rather than an `open_file`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ExternalReason {
    /// It has no path (pipes, sockets, anonymous inodes).
    NoPath,
    /// Its type cannot be reopened by path (a pipe, a socket, a symlink
    /// opened with `O_PATH`, an anonymous inode, or unknown).
    NotReopenable,
    /// The image does not know its open flags.
    FlagsUnknown,
    /// The image does not know its position.
    PositionUnknown,
}

impl ExternalReason {
    /// The reason as a phrase for the text view.
    pub fn describe(self) -> &'static str {
        match self {
            ExternalReason::NoPath => "it has no path",
            ExternalReason::NotReopenable => "its type cannot be reopened by path",
            ExternalReason::FlagsUnknown => "its open flags are unknown",
            ExternalReason::PositionUnknown => "its position is unknown",
        }
    }
}

/// Parameters of `setup_ring`: `io_uring_setup(sq_entries, &params)`, then
/// `mmap` of each recorded ring region at its recorded address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupRing {
    /// `params.flags`, exactly as the kernel held them.
    pub flags: u32,
    /// The `entries` argument.
    pub sq_entries: u32,
    /// `params.cq_entries`; passed only with `IORING_SETUP_CQSIZE`, otherwise
    /// it is what the kernel derives (2 x `sq_entries`).
    pub cq_entries: u32,
    /// `params.sq_thread_cpu`; set exactly with `IORING_SETUP_SQ_AFF`.
    pub sq_thread_cpu: Option<u32>,
    /// `params.sq_thread_idle` in milliseconds; set exactly with SQPOLL.
    pub sq_thread_idle_ms: Option<u32>,
    /// `params.wq_fd`: the ring to attach to; set exactly with
    /// `IORING_SETUP_ATTACH_WQ`.
    pub wq_handle: Option<Handle>,
    /// Set for a ring that is in no image and exists only during the
    /// restore; its step's `object` is `None`.
    pub temporary: Option<TemporaryRing>,
    /// Where the dumped task had this ring's regions mapped (the image's
    /// `Ring::mappings`, in image order): the executor maps each region of
    /// the new ring there (`MAP_FIXED_NOREPLACE`, offset
    /// [`ringplan_image::RingRegion::mmap_offset`]) when the range is free.
    /// Mapping needs the ring's fd, which only this step's handle gives
    /// (a ring without buffers is closed before the memory barrier), so the
    /// regions travel with the setup rather than with the barrier. Empty
    /// (and left off the wire) for temporary rings and unmapped rings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mappings: Vec<RingMapping>,
    /// The `place_ring_memory` step whose memory this ring is created on,
    /// with `IORING_SETUP_NO_MMAP` added to `flags`; its `mappings` are
    /// then not mapped (the placed memory is where they were). Left off the
    /// wire when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<StepIndex>,
    /// With `IORING_SETUP_SINGLE_ISSUER`, the thread of the dumped process
    /// that owned the ring: a restore into that process creates it there; a
    /// restore into the executor's own process, in the thread running the
    /// plan. Left off the wire when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_tid: Option<u32>,
}

/// Parameters of `place_ring_memory`: memory at the addresses where the
/// program saw the ring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaceRingMemory {
    /// The rings (`struct io_rings`, the CQEs, the SQ array): one range, or
    /// two showing the same memory (the program mapped the SQ and CQ rings
    /// apart). Page-aligned.
    pub rings: Vec<UserRegion>,
    /// The SQE array. Page-aligned.
    pub sqes: UserRegion,
    /// Whose memory it was.
    pub origin: MemoryOrigin,
    /// A tree plan: other processes' parts map this memory too
    /// (`receive_fd` with `placed_memory`), so the process keeps its
    /// memfds open until every part has run. Left off the wire when
    /// false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lend: bool,
}

impl PlaceRingMemory {
    /// Every range, rings first.
    pub fn ranges(&self) -> impl Iterator<Item = &UserRegion> {
        self.rings.iter().chain(std::iter::once(&self.sqes))
    }
}

/// Whose memory a ring lived in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MemoryOrigin {
    /// The kernel allocated it and the program mapped it (`mmap` of the
    /// ring fd): the restore maps shared memory there (one memfd, at both
    /// addresses when the rings were mapped twice).
    Kernel,
    /// The program gave the kernel its own memory (`IORING_SETUP_NO_MMAP`):
    /// a restore into its own process maps private memory there; a restore
    /// into a process whose memory is back uses that memory as it is.
    Program,
}

/// Parameters of `restore_completions`: the ring's kernel positions
/// brought from 0 to the recorded ones by consumed NOPs (and
/// `IORING_OP_MSG_RING` where the CQ tail runs ahead of the SQ head), the
/// overflow list posted into a full CQ ring, the unconsumed CQEs written
/// into their slots, and the counters and CQ flags written into the ring's
/// memory. Always before the ring's eventfd is registered: a NOP's
/// completion would count on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreCompletions {
    pub ring_handle: Handle,
    /// The kernel's SQ head (`cached_sq_head`).
    pub sq_head: u32,
    /// The CQ head the program wrote.
    pub cq_head: u32,
    /// The kernel's CQ tail (`cached_cq_tail`).
    pub cq_tail: u32,
    /// The unconsumed CQEs, from `cq_head` to `cq_tail`.
    pub cqes: Vec<Cqe>,
    /// The kernel's overflow list, oldest first.
    pub overflow: Vec<Cqe>,
    pub sq_dropped: u32,
    pub cq_overflow: u32,
    pub cq_flags: u32,
}

impl RestoreCompletions {
    /// How many positions the NOPs and messages move, counting from a new
    /// ring's 0: the step's cost.
    pub fn positions_to_move(&self) -> u64 {
        u64::from(self.sq_head).max(u64::from(self.cq_tail))
    }

    /// About how long moving the positions takes on the ring `setup` sets
    /// up, from what was measured here (docs/performance.md, "Position
    /// advance"): each move costs a NOP's worth (126 ns for one that moves
    /// both positions, 100 ns for the SQ head alone, 290 ns for a
    /// `MSG_RING` that moves the CQ tail alone), and every batch (at most
    /// the SQ size, 1024 at the most) a round trip to the kernel: about
    /// 1 us, or about 10 us with an SQ thread, which must pick the batch up
    /// (a 2-entry SQPOLL ring moved 20M positions in 99 s).
    pub fn estimated_time(&self, setup: &SetupRing) -> std::time::Duration {
        let (sq, cq) = (u64::from(self.sq_head), u64::from(self.cq_tail));
        let both = sq.min(cq);
        let batch = u64::from(setup.sq_entries.clamp(1, 1024));
        let per_batch_ns = if setup.flags & SetupFlags::SQPOLL.bits() != 0 {
            10_000
        } else {
            1_000
        };
        let nops = sq.max(cq);
        let nanos = both
            .saturating_mul(126)
            .saturating_add((sq - both).saturating_mul(100))
            .saturating_add((cq - both).saturating_mul(290))
            .saturating_add(nops.div_ceil(batch).saturating_mul(per_batch_ns));
        std::time::Duration::from_nanos(nanos)
    }
}

/// Parameters of `queue_sqes`: the whole SQ array (where the ring has one),
/// the SQEs the program prepared but did not publish, and the queued SQEs
/// written back, then the SQ tail published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSqes {
    pub ring_handle: Handle,
    /// The ring's SQ head (where `restore_completions` left it).
    pub sq_head: u32,
    /// The SQ tail the program wrote.
    pub sq_tail: u32,
    /// The SQ array as the program's memory held it; `None` with
    /// `IORING_SETUP_NO_SQARRAY`.
    pub sq_array: Option<Vec<u32>>,
    /// The queued SQEs, from `sq_head` to `sq_tail`.
    pub sqes: Vec<QueuedSqe>,
    /// The other SQE slots with content (`RingState::unqueued_sqes`),
    /// written before the queued ones. Absent on the wire reads as empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unqueued_sqes: Vec<SlotSqe>,
}

/// Why the plan sets up a ring that is in no image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TemporaryRing {
    /// The ring that created this SQ thread group's thread is gone: this one
    /// creates the thread, the group's rings attach to it, then it closes.
    SqThreadHost { sq_group: u32 },
    /// Rings set up with `IORING_SETUP_ATTACH_WQ` but without SQPOLL need
    /// some io_uring fd as `wq_fd` (the kernel checks no more), and the
    /// image has no ring without `ATTACH_WQ` to lend one.
    AttachTarget,
}

/// Parameters of `register_eventfd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterEventfd {
    pub ring_handle: Handle,
    pub eventfd_handle: Handle,
    /// `IORING_REGISTER_EVENTFD_ASYNC` rather than `IORING_REGISTER_EVENTFD`.
    #[serde(rename = "async")]
    pub is_async: bool,
}

/// Parameters of `register_personalities`. The kernel gives ids itself
/// (the first free one from its next id): on a new ring, registering
/// `1..=last` in order gets exactly those ids, and unregistering the ones
/// not recorded leaves the recorded ids and `next`. Each registration
/// takes the calling thread's credentials; the recorded ones are here so
/// that an executor can compare them before anything is done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterPersonalities {
    pub ring_handle: Handle,
    /// The recorded personalities, ascending ids.
    pub personalities: Vec<Personality>,
    /// The kernel's next id after the restore (`ctx->pers_next`).
    pub next: u32,
}

impl RegisterPersonalities {
    /// The last id registered: the highest recorded id or `next - 1`,
    /// whichever is larger (fillers up to it are unregistered again).
    pub fn last_id(&self) -> u32 {
        let highest = self
            .personalities
            .last()
            .map_or(0, |personality| personality.id);
        highest.max(self.next.saturating_sub(1))
    }

    /// Whether `id` is one of the recorded personalities.
    pub fn is_recorded(&self, id: u32) -> bool {
        self.personalities
            .binary_search_by_key(&id, |personality| personality.id)
            .is_ok()
    }
}

/// Parameters of `register_restrictions`: one `IORING_REGISTER_RESTRICTIONS`
/// call with one `struct io_uring_restriction` per allowed register op,
/// per allowed SQE op, and one each for the allowed and required SQE
/// flags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterRestrictions {
    pub ring_handle: Handle,
    pub restrictions: Restrictions,
}

/// Parameters of `register_settings`: each setting the image records, one
/// `io_uring_register` call each, in this order. The step runs in the
/// ring's `SINGLE_ISSUER` owner, else in the thread `iowq_affinity` names
/// (the io-wq limits and affinity are that thread's), else the executor's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterSettings {
    pub ring_handle: Handle,
    pub file_alloc_range: Option<ringplan_image::FileAllocRange>,
    pub iowq_max_workers: Option<ringplan_image::IowqMaxWorkers>,
    pub napi: Option<ringplan_image::Napi>,
    /// With static NAPI tracking: each id added
    /// (`IO_URING_NAPI_STATIC_ADD_ID`) after the NAPI registration, in
    /// order (added in image version 5; left out when empty: a reader that
    /// does not know the key ignores it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub napi_static_ids: Vec<u32>,
    /// `IORING_REGISTER_IOWQ_AFF`, last (added in image version 5; a
    /// reader that does not know the key ignores it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iowq_affinity: Option<ringplan_image::IowqAffinity>,
}

/// Parameters of `register_wait_region`: one
/// `IORING_REGISTER_MEM_REGION` of `len` bytes of the program's memory at
/// `addr` (`IORING_MEM_REGION_TYPE_USER`), with
/// `IORING_MEM_REGION_REG_WAIT_ARG`. The wait arguments in it are the
/// program's memory: a restore into the program uses that memory as it
/// is; where nothing is mapped there (a restore into the executor's own
/// process, or a process without it), the step maps fresh anonymous
/// memory first (`MAP_FIXED_NOREPLACE`), which an undo unmaps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterWaitRegion {
    pub ring_handle: Handle,
    /// Page-aligned, in user space.
    pub addr: u64,
    /// Whole pages.
    pub len: u64,
    /// A region that was in kernel memory: its bytes, which the step
    /// writes into fresh memory at `addr` before registering it as user
    /// memory (added in image version 5; left out when none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contents: Option<ringplan_image::KernelMemoryBytes>,
}

/// Parameters of `enable_rings`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnableRings {
    pub ring_handle: Handle,
}

/// Parameters of `register_pbuf_ring`: one `struct io_uring_buf_reg`.
/// The ring's memory (`entries` * 16 bytes at `addr`) is the program's:
/// in place from the memory barrier on (its contents, the entries and the
/// tail, are the program's and are not in the plan). The kernel starts a
/// new buffer ring at head 0, and only consuming buffers moves it: for a
/// recorded `head` above 0 the step then consumes that many with one-byte
/// reads that skip their CQEs (each moves the ring's SQ head by one, which
/// `restore_completions` leaves for it), the program's memory put back
/// after. Only on a continuous ring set up enabled.
///
/// A buffer ring the program had in kernel memory (`IOU_PBUF_RING_MMAP`)
/// carries its captured bytes in `contents`: the step writes them at `addr`
/// (fresh anonymous memory since the barrier: the program's mapping of the
/// kernel's memory went with the detach) before registering, so the ring
/// comes back as user memory holding the same entries and tail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterPbufRing {
    pub ring_handle: Handle,
    pub bgid: u16,
    pub entries: u32,
    /// Page-aligned, in user space.
    pub addr: u64,
    /// `IOU_PBUF_RING_INC` (6.12+).
    pub incremental: bool,
    /// The kernel's head to bring the new buffer ring to (0: none moved).
    #[serde(default, skip_serializing_if = "is_zero_u16")]
    pub head: u16,
    /// The ring's `entries * 16` bytes to write at `addr` before
    /// registering: a ring that was in kernel memory. Absent for the
    /// program's own memory, which is in place as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contents: Option<ringplan_image::KernelMemoryBytes>,
}

fn is_zero_u16(value: &u16) -> bool {
    *value == 0
}

impl RegisterPbufRing {
    /// Bytes of the ring's memory.
    pub fn memory_len(&self) -> u64 {
        u64::from(self.entries) * ringplan_kernel::abi::pbuf::ENTRY_SIZE
    }
}

/// Parameters of `provide_buffers`: a legacy group's buffers, one
/// `IORING_OP_PROVIDE_BUFFERS` SQE per entry of `sqes`, submitted in order
/// (the kernel adds each SQE's buffers at the group's tail, and takes
/// from its head) with `IOSQE_CQE_SKIP_SUCCESS`, so that they post no CQE
/// and each moves the ring's SQ head by one, which `restore_completions`
/// leaves for them. The buffers' memory is the program's and is not
/// touched. The SQE slots and SQ array they use are put back after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvideBuffers {
    pub ring_handle: Handle,
    pub bgid: u16,
    /// At least one; each within what every kernel takes in one SQE.
    pub sqes: Vec<ProvideBuffersSqe>,
}

/// One `IORING_OP_PROVIDE_BUFFERS`: `count` buffers of `len` bytes from
/// `addr` on, with bids from `bid` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvideBuffersSqe {
    pub addr: u64,
    pub len: u32,
    pub bid: u16,
    /// 1 to `abi::legacy_pbuf::MAX_BUFFERS_PER_SQE`.
    pub count: u32,
}

impl ProvideBuffers {
    /// How many buffers the SQEs provide.
    pub fn buffer_count(&self) -> u64 {
        self.sqes.iter().map(|sqe| u64::from(sqe.count)).sum()
    }
}

impl ProvideBuffersSqe {
    /// The SQEs that provide `group`'s buffers in its order: one per run,
    /// a run longer than one SQE takes split.
    pub fn for_group(group: &ringplan_image::LegacyBufferGroup) -> Vec<ProvideBuffersSqe> {
        use ringplan_kernel::abi::legacy_pbuf::MAX_BUFFERS_PER_SQE;
        let mut sqes = Vec::new();
        for run in group.buffers.iter().flatten() {
            let mut done = 0u32;
            while done < run.count {
                let count = (run.count - done).min(MAX_BUFFERS_PER_SQE);
                let addr = u64::from(done)
                    .checked_mul(u64::from(run.len))
                    .and_then(|offset| run.addr.checked_add(offset));
                let bid = u32::from(run.bid)
                    .checked_add(done)
                    .and_then(|bid| u16::try_from(bid).ok());
                // Validation keeps runs within user space and 16-bit bids.
                let (Some(addr), Some(bid)) = (addr, bid) else {
                    break;
                };
                sqes.push(ProvideBuffersSqe {
                    addr,
                    len: run.len,
                    bid,
                    count,
                });
                done += count;
            }
        }
        sqes
    }
}

/// Parameters of `register_ring_fd`: one `struct io_uring_rsrc_update`
/// `{offset, data = the ring's fd}`, registered by thread `tid` (the
/// kernel keeps the slots per thread). Restoring into another process
/// (`plan exec --pid`), the step runs in that thread; in the executor's
/// own process, which has no such thread, in the thread that runs the
/// plan (the executor says so).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterRingFd {
    pub ring_handle: Handle,
    /// Below `abi::ring_fd::REGISTERED_RING_FD_SLOTS`.
    pub offset: u32,
    /// The recorded thread.
    pub tid: u32,
}

/// Parameters of `register_files`: one `IORING_REGISTER_FILES` call whose fd
/// array has one entry per slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterFiles {
    pub ring_handle: Handle,
    /// One entry per slot: a handle, or `None` for an empty slot (-1 in the
    /// call, and -1 on the wire).
    #[serde(with = "sparse_slots")]
    pub slots: Vec<Option<Handle>>,
    /// Non-zero slot tags, ascending slot: with any, the call is
    /// `IORING_REGISTER_FILES2` with one tag per slot. Absent on the wire
    /// when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<ringplan_image::SlotTag>,
}

/// Parameters of `register_buffers`: one `IORING_REGISTER_BUFFERS` call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterBuffers {
    pub ring_handle: Handle,
    /// One iovec per slot; `{0, 0}` for an empty slot.
    pub iovecs: Vec<Iovec>,
    /// Non-zero slot tags, ascending slot: with any, the call is
    /// `IORING_REGISTER_BUFFERS2` with one tag per slot. Absent on the
    /// wire when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<ringplan_image::SlotTag>,
}

/// One `struct iovec`. On the wire: `[base, len]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "(u64, u64)", into = "(u64, u64)")]
pub struct Iovec {
    pub base: u64,
    pub len: u64,
}

impl Iovec {
    /// The iovec of an empty slot.
    pub const EMPTY: Iovec = Iovec { base: 0, len: 0 };

    /// Whether this is an empty slot.
    pub fn is_empty(&self) -> bool {
        *self == Iovec::EMPTY
    }
}

impl From<(u64, u64)> for Iovec {
    fn from((base, len): (u64, u64)) -> Self {
        Iovec { base, len }
    }
}

impl From<Iovec> for (u64, u64) {
    fn from(iovec: Iovec) -> Self {
        (iovec.base, iovec.len)
    }
}

/// Parameters of `install_fd`: `dup3(handle's fd, fd, cloexec ? O_CLOEXEC : 0)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallFd {
    pub source_handle: Handle,
    /// The target fd number, one of [`Plan::needed_fds`].
    pub fd: i32,
    /// The target fd's close-on-exec flag.
    pub cloexec: bool,
}

/// Parameters of `receive_fd`: in the receiving process, `pidfd_open(from_pid)`
/// and `pidfd_getfd(pidfd, from_fd)`, the copy moved to or above
/// [`Plan::temp_fd_floor`]; for a ring, then its `mappings` in this
/// process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiveFd {
    /// The process whose part created the object: the tree's first
    /// process or an earlier part's.
    pub from_pid: u32,
    /// The object's fd in that process: one its part installs.
    pub from_fd: i32,
    /// What the object is (what later steps may use the handle as).
    pub kind: ReceivedKind,
    /// Rings only: where this process had the ring's regions mapped, in
    /// image order. Left off the wire when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mappings: Vec<RingMapping>,
    /// Rings only: the ring's memory was placed by the creating part's
    /// `place_ring_memory` (restored where the program left it): the
    /// mappings map that memory (lent by the creating process), not the
    /// ring fd's regions. Left off the wire when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub placed_memory: bool,
}

/// What a `receive_fd` step receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceivedKind {
    Ring,
    Eventfd,
    File,
}

impl ReceivedKind {
    /// Its name in the views.
    pub fn name(self) -> &'static str {
        match self {
            ReceivedKind::Ring => "ring",
            ReceivedKind::Eventfd => "eventfd",
            ReceivedKind::File => "file",
        }
    }
}

/// Parameters of `close_fd`: `close` each handle's fd (temporaries, never
/// targets).
///
/// An installed object's temporary, and a ring's, is closed by a step of its
/// own. The temporaries of eventfds and files that no fd holds (they live
/// on in the rings that registered them) are closed together, one step per
/// ring, right after the last ring that registers them did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseFd {
    /// Ascending.
    pub handles: Vec<Handle>,
}

/// A file table as the kernel's call takes it: each slot an fd handle or -1.
mod sparse_slots {
    use serde::de::{Error as _, SeqAccess, Visitor};
    use serde::ser::SerializeSeq;
    use serde::{Deserializer, Serializer};

    use super::Handle;

    const EMPTY_SLOT: i64 = -1;

    pub fn serialize<S: Serializer>(
        slots: &[Option<Handle>],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(slots.len()))?;
        for slot in slots {
            seq.serialize_element(&slot.map_or(EMPTY_SLOT, |handle| i64::from(handle.0)))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<Option<Handle>>, D::Error> {
        struct SlotsVisitor;
        impl<'de> Visitor<'de> for SlotsVisitor {
            type Value = Vec<Option<Handle>>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of handles or -1")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                // Cap the preallocation: the length comes from the input.
                let mut slots = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
                while let Some(value) = seq.next_element::<i64>()? {
                    let slot = if value == EMPTY_SLOT {
                        None
                    } else {
                        let index = u32::try_from(value).map_err(|_| {
                            A::Error::custom(format!(
                                "file slot {value} is neither -1 nor a handle"
                            ))
                        })?;
                        Some(Handle(index))
                    };
                    slots.push(slot);
                }
                Ok(slots)
            }
        }
        deserializer.deserialize_seq(SlotsVisitor)
    }
}
