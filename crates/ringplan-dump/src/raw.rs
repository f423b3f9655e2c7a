//! What a backend reads, before it becomes an image.
//!
//! Each backend fills a [`RawState`] with facts keyed by kernel identities
//! (addresses of `io_ring_ctx`, `eventfd_ctx`, `struct file`, or stand-ins
//! for them); [`crate::assemble`] turns that into an image with small,
//! deterministic ids. Kernel addresses never reach the image.

use std::collections::HashMap;

use ringplan_image::{
    Buffer, Cqe, FileIdentity, Personality, Restrictions, RingPositions, RingSettings, UserRegion,
};

/// Identity of a `struct file`: its address (BPF) or a stand-in unique within
/// one dump (fdinfo).
pub type FileKey = u64;
/// Identity of an `io_ring_ctx`.
pub type RingKey = u64;
/// Identity of an `eventfd_ctx`.
pub type EventfdKey = u64;

/// Everything one backend read from one process.
#[derive(Debug, Default, Clone)]
pub struct RawState {
    /// Every fd of the process, in ascending fd order.
    pub fds: Vec<RawFdEntry>,
    /// Every file an fd or a registered slot refers to, by identity.
    pub files: HashMap<FileKey, RawFile>,
    /// Every ring, by identity.
    pub rings: HashMap<RingKey, RawRing>,
    /// Every eventfd held by an fd or registered with a ring, by identity.
    pub eventfds: HashMap<EventfdKey, RawEventfd>,
    /// What the backend read but could not use, said as warnings (e.g. a
    /// ring whose positions moved while they were read).
    pub notes: Vec<String>,
    /// The inode of each plain file an fd holds (`stat` of
    /// `/proc/PID/fd/N`, filled by [`crate::file_identity`] for either
    /// backend); files only a ring's table holds have none.
    pub file_identities: HashMap<FileKey, FileIdentity>,
    /// The requests in flight of each ring, where the backend can tell
    /// (BPF only; the image does not hold them).
    pub in_flight: HashMap<RingKey, RawInFlight>,
}

/// A ring's requests in flight: submitted (the kernel consumed their SQE)
/// and not yet completed (their CQE is neither in the CQ ring nor on its
/// overflow list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawInFlight {
    /// How many, or why this kernel does not say.
    pub count: Result<u32, String>,
    /// Those that wait on their own and complete only on an event
    /// (poll-armed, timeouts), or `Unknown` when there were more than the
    /// program lists. Requests in io-wq workers, futex and waitid waits are
    /// counted but not named.
    pub pending: Known<Vec<PendingRequest>>,
}

/// A request the kernel keeps waiting on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingRequest {
    /// Its `IORING_OP_*`.
    pub opcode: u8,
    pub user_data: u64,
    pub waits_in: PendingKind,
}

/// Where a pending request was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PendingKind {
    /// Armed for poll (the ring's cancel hash table): a poll, or a request
    /// waiting for its file to become ready (recv, accept, a read on an
    /// empty pipe).
    Poll,
    /// A timeout (`IORING_OP_TIMEOUT`).
    Timeout,
    /// An armed linked timeout.
    LinkedTimeout,
}

/// One entry of the process's fd table: the fd number, its close-on-exec
/// bit and the file it refers to (std's `RawFd` is the number alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawFdEntry {
    pub fd: i32,
    pub cloexec: bool,
    /// The `struct file` it refers to.
    pub file: FileKey,
}

/// What a file is, beyond being a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawFileRole {
    /// The file of an io_uring instance.
    Ring(RingKey),
    /// The file of an eventfd.
    Eventfd(EventfdKey),
    /// Anything else.
    Plain,
}

/// One `struct file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFile {
    pub role: RawFileRole,
    /// The path as the kernel prints it (`d_path`); `None` when it has none
    /// or the backend could not read it.
    pub path: Option<String>,
    /// `f_flags`, when known.
    pub flags: Option<u32>,
    /// `f_pos`, when known.
    pub pos: Option<i64>,
    /// The inode's `i_mode`, when known.
    pub mode: Option<u32>,
}

/// One io_uring instance as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRing {
    /// The inode number of the ring's anonymous inode, which
    /// `/proc/PID/maps` shows for the ring's mappings; `None` when unknown.
    pub inode: Option<u64>,
    /// `ctx->flags`; `None` when the backend cannot read it.
    pub flags: Option<u32>,
    pub sq_entries: u32,
    pub cq_entries: u32,
    /// Identity of the SQ thread (`ctx->sq_data`, or the thread's pid);
    /// rings with equal values share one. `None` without SQPOLL.
    pub sq_thread: Option<u64>,
    /// The SQ thread's CPU as the kernel reports it (meaningful only with
    /// `IORING_SETUP_SQ_AFF`; the assembler drops it otherwise).
    pub sq_thread_cpu: Option<u32>,
    /// This ring's own SQ idle in milliseconds (converted from jiffies).
    /// `None` without SQPOLL or when unknown (see `idle_known`).
    pub sq_thread_idle_ms: Option<u32>,
    pub idle_known: bool,
    /// The registered eventfd: `Known(None)` when there is none.
    pub eventfd: Known<Option<RawRingEventfd>>,
    /// The registered file table, one entry per slot.
    pub files: Vec<Option<FileKey>>,
    /// The registered buffer table, one entry per slot.
    pub buffers: Vec<Option<Buffer>>,
    /// The continuity state the kernel holds (the entries in the ring's
    /// memory are read later, by `ring_memory`); `None` when the backend
    /// cannot read the positions (the fdinfo backend, or a kernel without
    /// the fields).
    pub state: Option<RawRingState>,
    /// The personalities in id order and the allocator's next id
    /// (`ctx->pers_next`); unknown to the fdinfo backend (which shows only
    /// `CapEff` of each) and when the walk did not reach the end.
    pub personalities: Known<(Vec<Personality>, u32)>,
    /// `ctx->restrictions`: `Known(None)` when none were registered.
    pub restrictions: Known<Option<Restrictions>>,
    /// The provided-buffer groups; unknown to the fdinfo backend and when
    /// the walk did not reach the end.
    pub buffer_groups: Known<RawBufferGroups>,
    /// The registered settings (each only when set); unknown to the fdinfo
    /// backend.
    pub settings: Known<RingSettings>,
    /// The threads' registered ring-fd slots that hold this ring, as
    /// (tid, offset) ascending (tids as the initial pid namespace numbers
    /// them); unknown to the fdinfo backend and when a thread's slots
    /// could not be read.
    pub registered_ring_fds: Known<Vec<(u32, u32)>>,
    /// Where the memory of the registered wait region the settings record
    /// (`wait_region_len`) lies; `None` when there is none or the backend
    /// cannot say (fdinfo).
    pub wait_region: Option<RawWaitRegion>,
}

/// A registered wait region's memory as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawWaitRegion {
    pub memory: PbufMemory,
    /// The kernel allocated it (the program maps it from the ring fd);
    /// otherwise it is the program's own memory.
    pub kernel_memory: bool,
}

/// A ring's provided-buffer groups as read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawBufferGroups {
    /// Buffer rings, ascending bgid.
    pub rings: Vec<RawPbufRing>,
    /// Legacy groups (`IORING_OP_PROVIDE_BUFFERS`), ascending bgid.
    pub legacy: Vec<RawLegacyGroup>,
}

/// One legacy group as read: its buffers in the kernel's list order (the
/// kernel takes from the front), or why they are unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawLegacyGroup {
    pub bgid: u16,
    pub buffers: Result<Vec<ringplan_image::LegacyBuffer>, String>,
}

/// One buffer ring as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawPbufRing {
    pub bgid: u16,
    pub entries: u32,
    pub head: u16,
    pub kernel_memory: bool,
    pub incremental: bool,
    /// Where the program has the ring's memory.
    pub memory: PbufMemory,
}

/// Where a buffer ring's (or a registered wait region's) memory lies in
/// the program, as far as found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PbufMemory {
    /// The page frame number of its first page, not yet looked up.
    Frame(u64),
    /// The program's address.
    Found(u64),
    /// Kernel memory that no mapping of the program shows.
    NotMapped,
    /// Not found, and why.
    Unknown(String),
}

/// A ring's continuity state as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRingState {
    pub positions: RingPositions,
    /// The SINGLE_ISSUER owner's tid (as the kernel numbers it, in the
    /// initial pid namespace); `Known(None)` when no task is bound.
    pub owner_tid: Known<Option<u32>>,
    /// The kernel's CQ overflow list, in order.
    pub overflow: Known<Vec<Cqe>>,
    /// For an `IORING_SETUP_NO_MMAP` ring, where the program's memory for
    /// it is; `None` for a ring whose memory the kernel allocated.
    pub user_memory: Option<UserMemory>,
}

/// Where the memory a program gave a NO_MMAP ring lies, as far as found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserMemory {
    /// The page frame numbers of the first page of the rings and of the
    /// SQEs (from the BPF backend), not yet looked up in the program.
    Frames { rings: u64, sqes: u64 },
    /// The program's addresses and the sizes the kernel pinned.
    Found { rings: UserRegion, sqes: UserRegion },
    /// Not found, and why.
    Unknown(String),
}

/// A value a backend may be unable to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known<T> {
    Known(T),
    Unknown,
}

/// A ring's registered eventfd as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawRingEventfd {
    pub eventfd: EventfdKey,
    pub is_async: bool,
}

/// One eventfd as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawEventfd {
    pub count: u64,
    /// `eventfd_ctx->flags` (`EFD_SEMAPHORE`, and `EFD_NONBLOCK` as created).
    pub flags: u32,
}
