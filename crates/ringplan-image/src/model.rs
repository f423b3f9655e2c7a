//! The types of the image. Field order here is the field order on the wire.

use ringplan_kernel::abi::mmap_offset;
use serde::{Deserialize, Serialize};

/// The format name every image carries; a reader refuses any other.
pub const FORMAT_NAME: &str = "ringplan-image";
/// The format version this crate writes.
pub const FORMAT_VERSION: u32 = 5;
/// The versions this crate reads: version 1 has no ring state (every
/// ring's [`Ring::state`] is `None`), version 2 adds it, version 3 adds
/// each ring's personalities and restrictions (none in older images,
/// which did not record them), version 4 adds the processes of a tree
/// image ([`Image::processes`]; none in older images), version 5 adds the
/// ring state a version 4 reader would drop without a word (among it a
/// kernel-memory buffer ring's [`PbufRing::contents`]; see
/// docs/image-format.md).
pub const READABLE_VERSIONS: std::ops::RangeInclusive<u32> = 1..=FORMAT_VERSION;

pub use ringplan_kernel::abi::limits::{
    MAX_BUFFER_LEN, MAX_BUFFER_SLOTS, MAX_CQ_ENTRIES, MAX_FILE_SLOTS, MAX_SQ_ENTRIES,
};
pub use ringplan_kernel::abi::linux::USER_ADDRESS_LIMIT;
pub use ringplan_kernel::abi::SetupFlags;

/// A dumped process's io_uring state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// Always [`FORMAT_NAME`].
    pub format: String,
    /// One of [`READABLE_VERSIONS`] for images this crate accepts (as read:
    /// a version 1 image stays version 1).
    pub version: u32,
    /// Where and how the image was taken.
    pub source: Source,
    /// Every object, in id order.
    pub objects: Vec<Object>,
    /// A tree image (`plan dump --tree`, version 4): the dumped process
    /// ([`Source::pid`]) first, then its descendants, parents before their
    /// children, each with what it holds. Empty for an image of one
    /// process (left out on the wire).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub processes: Vec<TreeProcess>,
}

impl Image {
    /// An image with the current format name and version.
    pub fn new(source: Source, objects: Vec<Object>) -> Self {
        Image {
            format: FORMAT_NAME.to_owned(),
            version: FORMAT_VERSION,
            source,
            objects,
            processes: Vec::new(),
        }
    }

    /// Whether this is an image of a process tree (`plan dump --tree`).
    pub fn is_tree(&self) -> bool {
        !self.processes.is_empty()
    }

    /// Every process of a tree image that holds object `id`, in tree
    /// order, with what it holds of it.
    pub fn holders(&self, id: ObjectId) -> impl Iterator<Item = (u32, &Held)> + '_ {
        self.processes.iter().filter_map(move |process| {
            process
                .holds
                .binary_search_by_key(&id, |held| held.object)
                .ok()
                .map(|position| (process.pid, &process.holds[position]))
        })
    }

    /// The object with this id, if any. Objects are kept sorted by id; the
    /// dumper numbers them 1, 2, 3, ..., so the object is usually at
    /// position id - 1, and otherwise a binary search away.
    pub fn object(&self, id: ObjectId) -> Option<&Object> {
        let dense_position = (id.0 as usize).checked_sub(1);
        if let Some(object) = dense_position.and_then(|position| self.objects.get(position)) {
            if object.id == id {
                return Some(object);
            }
        }
        self.objects
            .binary_search_by_key(&id, |object| object.id)
            .ok()
            .map(|i| &self.objects[i])
    }
}

/// One process of a tree image and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeProcess {
    pub pid: u32,
    /// Its parent's pid: `None` for the dumped process, else a process
    /// listed before it.
    pub parent: Option<u32>,
    /// Every object it holds at an fd or by a mapping, ascending ids.
    pub holds: Vec<Held>,
}

/// What one process of a tree holds of one object: its own fds, and for
/// a ring its own mappings (a child inherits its parent's at the same
/// addresses, and may unmap them) and whether the ring's SINGLE_ISSUER
/// owner is one of its threads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub object: ObjectId,
    /// Ascending fd numbers, as [`Object::fds`].
    pub fds: Vec<FdEntry>,
    /// Rings only: where this process has the ring's regions mapped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mappings: Vec<RingMapping>,
    /// Rings only: the ring's [`RingState::owner_tid`] is a thread of this
    /// process.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub owner: bool,
    /// Rings only (version 5): the slots at which this process's threads
    /// registered the ring (`IORING_REGISTER_RING_FDS`), ascending by
    /// (tid, offset). Slots are kept per thread, so every holder has its
    /// own; the ring's own [`Ring::registered_ring_fds`] are the dumped
    /// process's. A process may hold a ring by a slot alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub registered_ring_fds: Vec<RegisteredRingFd>,
}

/// Where and how an image was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// The dumped process.
    pub pid: u32,
    /// How the state was read.
    pub backend: Backend,
    /// `uname -r` of the kernel the state was read from.
    pub kernel_release: String,
}

/// How the dumper read the kernel's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Backend {
    /// A BPF `task_file` iterator reading `io_ring_ctx` directly: complete.
    Bpf,
    /// `/proc/PID/fdinfo`: no setup flags, SQ idle or eventfd (see
    /// [`Ring::unknown`]).
    Fdinfo,
}

impl Backend {
    /// The backend's name in the JSON views and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Bpf => "bpf",
            Backend::Fdinfo => "fdinfo",
        }
    }
}

/// An object's id, unique within one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ObjectId(pub u32);

impl std::fmt::Display for ObjectId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// One kernel object the process holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Object {
    pub id: ObjectId,
    /// Every fd number at which the process holds this object, in ascending
    /// order; empty when it closed them all (the object lives on through a
    /// ring's reference).
    pub fds: Vec<FdEntry>,
    pub kind: ObjectKind,
}

/// One fd number of an object. On the wire: `[fd, cloexec]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "(i32, bool)", into = "(i32, bool)")]
pub struct FdEntry {
    pub fd: i32,
    /// The fd's close-on-exec flag.
    pub cloexec: bool,
}

impl From<(i32, bool)> for FdEntry {
    fn from((fd, cloexec): (i32, bool)) -> Self {
        FdEntry { fd, cloexec }
    }
}

impl From<FdEntry> for (i32, bool) {
    fn from(entry: FdEntry) -> Self {
        (entry.fd, entry.cloexec)
    }
}

/// What an object is.
// Rings are most of an image's objects and are read everywhere by
// pattern: boxing them would cost every reader for a few hundred bytes.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    Ring(Ring),
    Eventfd(Eventfd),
    File(File),
}

impl ObjectKind {
    /// The kind's name as the JSON view and error messages spell it.
    pub fn name(&self) -> &'static str {
        match self {
            ObjectKind::Ring(_) => "ring",
            ObjectKind::Eventfd(_) => "eventfd",
            ObjectKind::File(_) => "file",
        }
    }
}

/// One io_uring instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ring {
    pub setup: RingSetup,
    /// The ring whose SQ thread this ring shares (set up with
    /// `IORING_SETUP_ATTACH_WQ` and that ring's fd). The kernel does not
    /// remember which fd was passed; the dumper names the ring that created
    /// the shared SQ thread, or none when that ring is gone.
    pub wq_parent: Option<ObjectId>,
    /// Rings with the same value share one SQ thread; `None` without SQPOLL.
    pub sq_group: Option<u32>,
    /// The registered eventfd.
    pub eventfd: Option<RingEventfd>,
    /// The registered file table: one entry per slot, `None` for an empty
    /// slot. Its length is the table's size.
    pub files: Vec<Option<ObjectId>>,
    /// The registered buffer table: one entry per slot, `None` for an empty
    /// slot. Its length is the table's size.
    pub buffers: Vec<Option<Buffer>>,
    /// Where the process has this ring's regions mapped.
    pub mappings: Vec<RingMapping>,
    /// Fields the backend could not read. Their values are `None` and mean
    /// nothing; a restore must not guess them.
    pub unknown: Vec<RingField>,
    /// The ring's continuity state (positions, queued and unconsumed
    /// entries, memory, owner); `None` in version 1 images and when the
    /// backend cannot read it. Absent on the wire reads as `None`. Boxed:
    /// it is large and most readers skip it.
    #[serde(default)]
    pub state: Option<Box<RingState>>,
    /// The ring's personalities (version 3), in ascending id order. Empty
    /// in older images (not recorded) and when unknown
    /// ([`RingField::Personalities`]); absent on the wire reads as empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub personalities: Vec<Personality>,
    /// The id the kernel's cyclic allocator tries first for the next
    /// personality (`ctx->pers_next`: the last id given + 1; 0 on a ring
    /// that never had one). Version 3; absent reads as 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub personality_next: u32,
    /// What the ring allows once enabled (`IORING_REGISTER_RESTRICTIONS`),
    /// `None` when none were registered (or unknown:
    /// [`RingField::Restrictions`]). Version 3; absent reads as `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restrictions: Option<Restrictions>,
    /// The ring's buffer rings (`IORING_REGISTER_PBUF_RING`), ascending
    /// bgid. Version 3; empty in older images and when unknown
    /// ([`RingField::PbufRings`]); absent on the wire reads as empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pbuf_rings: Vec<PbufRing>,
    /// The ring's legacy buffer groups (`IORING_OP_PROVIDE_BUFFERS`),
    /// ascending bgid. Version 3 lists bare bgids; version 5 adds each
    /// group's buffers in the kernel's order (a group whose buffers were
    /// not captured stays a bare bgid, which a restore refuses). Absent
    /// reads as empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub legacy_buffer_groups: Vec<crate::legacy_pbuf::LegacyBufferGroup>,
    /// The slots at which threads of the process registered this ring
    /// (`IORING_REGISTER_RING_FDS`, kept per thread by the kernel),
    /// ascending by (tid, offset). Version 3; empty in older images and
    /// when unknown ([`RingField::RegisteredRingFds`]); absent on the wire
    /// reads as empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub registered_ring_fds: Vec<RegisteredRingFd>,
    /// What the program registered on the ring beyond its tables: the
    /// file allocation range, io-wq limits, NAPI, slot tags, a wait region.
    /// Version 3; each part absent when the program did not set it (and
    /// all of it when unknown: [`RingField::Settings`]); absent on the
    /// wire reads as none set.
    #[serde(default, skip_serializing_if = "RingSettings::is_empty")]
    pub settings: RingSettings,
}

/// Settings registered on a ring with `io_uring_register`, each `None` (or
/// empty) when the program did not set it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingSettings {
    /// `IORING_REGISTER_FILE_ALLOC_RANGE`: where the kernel allocates
    /// file slots for `IORING_FILE_INDEX_ALLOC`. Registering a file table
    /// sets it to the whole table, so only another range is recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_alloc_range: Option<FileAllocRange>,
    /// `IORING_REGISTER_IOWQ_MAX_WORKERS`, when the program called it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iowq_max_workers: Option<IowqMaxWorkers>,
    /// `IORING_REGISTER_NAPI` (6.9+), when registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub napi: Option<Napi>,
    /// With static NAPI tracking (version 5): the NAPI ids the ring lists
    /// (`ctx->napi_list`, in the kernel's order), which the program added
    /// with `IO_URING_NAPI_STATIC_ADD_ID`. `None`: not captured (dynamic
    /// tracking, whose ids the kernel finds again from the sockets used;
    /// an image before version 5; a list the dump could not read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub napi_static_ids: Option<Vec<u32>>,
    /// Non-zero tags of registered file slots (`IORING_REGISTER_FILES2`,
    /// `IORING_REGISTER_FILES_UPDATE2`), ascending slot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub file_tags: Vec<SlotTag>,
    /// Non-zero tags of registered buffer slots (`IORING_REGISTER_BUFFERS2`,
    /// `IORING_REGISTER_BUFFERS_UPDATE`), ascending slot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buffer_tags: Vec<SlotTag>,
    /// Bytes of a registered wait region (`IORING_REGISTER_MEM_REGION`
    /// with `IORING_MEM_REGION_REG_WAIT_ARG`, 6.13+). The wait arguments
    /// in it are the program's and come back with its memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_region_len: Option<u64>,
    /// Where the program has the wait region's memory (version 5): the
    /// address it registered, or for kernel memory where it mapped it.
    /// `None` with a length: kernel memory the program has not mapped, a
    /// version 3/4 image, or memory the dump did not find (it said why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_region_addr: Option<u64>,
    /// The kernel allocated the wait region's memory (version 5; the
    /// program maps it from the ring fd).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub wait_region_kernel_memory: bool,
    /// A wait region in kernel memory the program mapped: its bytes, read
    /// from that mapping (version 5; exactly `wait_region_len` of them). A
    /// restore registers them as user memory at `wait_region_addr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_region_contents: Option<KernelMemoryBytes>,
    /// `IORING_REGISTER_IOWQ_AFF` (version 5): the CPUs the io-wq this
    /// ring's work goes to may use, when they are not the kernel's own
    /// choice (all possible or all online CPUs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iowq_affinity: Option<IowqAffinity>,
}

/// An io-wq's CPU affinity. The kernel keeps it per thread (the io-wq of
/// the thread's io_uring context), not per ring: the ring records the one
/// its work goes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IowqAffinity {
    /// Ascending, at least one.
    pub cpus: Vec<u32>,
    /// Whose io-wq: a thread of the process (the `SINGLE_ISSUER` owner, or
    /// else the thread that last began using the ring), as the dumped
    /// process's pid namespace numbers it; `None` for an `SQPOLL` ring,
    /// whose work goes to its SQ thread's io-wq (6.6+ registers there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tid: Option<u32>,
}

impl IowqAffinity {
    /// The CPUs as `0,2,3`, for the text views.
    pub fn cpu_list(&self) -> String {
        self.cpus
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl RingSettings {
    /// Nothing set (the wire leaves the field out).
    pub fn is_empty(&self) -> bool {
        *self == RingSettings::default()
    }
}

/// A file allocation range: slots `start .. start + len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileAllocRange {
    pub start: u32,
    pub len: u32,
}

/// io-wq worker limits (`ctx->iowq_limits`); 0 for a class the program
/// left at the kernel's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IowqMaxWorkers {
    /// Workers for bounded work (regular files, block devices).
    pub bounded: u32,
    /// Workers for unbounded work (sockets, pipes).
    pub unbounded: u32,
}

/// NAPI busy-poll settings of a ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Napi {
    /// `busy_poll_to`, in microseconds (the kernel keeps nanoseconds).
    pub busy_poll_us: u32,
    pub prefer_busy_poll: bool,
    /// How the ring learns which NAPI instances to poll.
    pub tracking: NapiTracking,
    /// The ring listed NAPI instances at the dump (`ctx->napi_list`): with
    /// dynamic tracking the kernel finds them again from the sockets used;
    /// static ones were added by id, and version 5 records them
    /// ([`RingSettings::napi_static_ids`]).
    pub ids_listed: bool,
}

/// `IO_URING_NAPI_TRACKING_*` (6.13+; before, always dynamic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NapiTracking {
    /// From the sockets the ring's requests use.
    Dynamic,
    /// Only the NAPI ids the program added (`IO_URING_NAPI_STATIC_ADD_ID`).
    Static,
}

impl NapiTracking {
    /// The mode's name in the views.
    pub fn name(self) -> &'static str {
        match self {
            NapiTracking::Dynamic => "dynamic",
            NapiTracking::Static => "static",
        }
    }
}

/// One slot's tag. On the wire: `[slot, tag]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "(u32, u64)", into = "(u32, u64)")]
pub struct SlotTag {
    pub slot: u32,
    pub tag: u64,
}

impl From<(u32, u64)> for SlotTag {
    fn from((slot, tag): (u32, u64)) -> Self {
        SlotTag { slot, tag }
    }
}

impl From<SlotTag> for (u32, u64) {
    fn from(tag: SlotTag) -> Self {
        (tag.slot, tag.tag)
    }
}

/// One registered ring-fd slot: thread `tid` registered the ring at
/// `offset`, which `io_uring_enter` with `IORING_ENTER_REGISTERED_RING`
/// names instead of an fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RegisteredRingFd {
    /// The thread, as the dumped process's pid namespace numbers it.
    pub tid: u32,
    /// The slot, below `abi::detach::REGISTERED_RING_FD_SLOTS`.
    pub offset: u32,
}

/// One buffer ring: what the kernel holds of it. Its entries (buffer
/// addresses, lengths, ids) and its tail are in its memory, which is the
/// program's and comes back with the program's memory, except for kernel
/// memory (`mmap`), whose bytes the image carries in `contents`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PbufRing {
    /// The buffer group id SQEs name (`buf_group`).
    pub bgid: u16,
    /// `ring_entries`: a power of two, at most
    /// `abi::pbuf::MAX_ENTRIES`.
    pub entries: u32,
    /// The kernel's head: how many buffers it has taken (mod 2^16).
    pub head: u16,
    /// Where the program has the ring's memory: the `ring_addr` it
    /// registered, or for kernel-allocated memory where it mapped it.
    /// `None`: kernel memory the program has not mapped, or memory the
    /// dumper did not find (it then says why).
    pub addr: Option<u64>,
    /// The kernel allocated the memory (`IOU_PBUF_RING_MMAP`).
    pub mmap: bool,
    /// Buffers are consumed incrementally (`IOU_PBUF_RING_INC`).
    pub incremental: bool,
    /// Kernel memory the program mapped (`mmap` with an `addr`): its
    /// `entries * 16` bytes (the entries, and the tail in the first
    /// entry's last two bytes) as the program's mapping showed them at the
    /// dump (version 5). A detach unmaps that memory and the kernel cannot
    /// map a new ring's where the program had it, so a restore puts these
    /// bytes in user memory at `addr`. `None`: user memory (the program's
    /// own, restored with it), or not captured (the dump said why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contents: Option<KernelMemoryBytes>,
}

/// The bytes of kernel memory the program had mapped (a buffer ring's, a
/// wait region's), which a restore gives back as user memory: a CBOR byte
/// string on the wire (hex in a human-readable format, as [`SqeBytes`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "SqeBytes", into = "SqeBytes")]
pub struct KernelMemoryBytes(pub Vec<u8>);

impl From<SqeBytes> for KernelMemoryBytes {
    fn from(bytes: SqeBytes) -> Self {
        KernelMemoryBytes(bytes.0)
    }
}

impl From<KernelMemoryBytes> for SqeBytes {
    fn from(contents: KernelMemoryBytes) -> Self {
        SqeBytes(contents.0)
    }
}

impl KernelMemoryBytes {
    /// The ring's tail (`struct io_uring_buf_ring`'s `tail`, which
    /// overlays the first entry's `resv`): how many buffers the program
    /// has provided (mod 2^16). `None` for fewer than 16 bytes.
    pub fn tail(&self) -> Option<u16> {
        let offset = ringplan_kernel::abi::pbuf::TAIL_OFFSET;
        let bytes = self.0.get(offset..offset + 2)?;
        Some(u16::from_ne_bytes([bytes[0], bytes[1]]))
    }

    /// A 64-bit FNV-1a hash of the bytes: what the views show instead of
    /// them (enough to tell two captures apart, not a digest to trust).
    pub fn fnv1a64(&self) -> u64 {
        self.0.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    }
}

impl PbufRing {
    /// Bytes of the ring's memory (`entries` entries of 16 bytes).
    pub fn memory_len(&self) -> u64 {
        u64::from(self.entries) * ringplan_kernel::abi::pbuf::ENTRY_SIZE
    }
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}

/// One personality: credentials registered with
/// `IORING_REGISTER_PERSONALITY`, which an SQE names by id to run as them.
/// Ids are the kernel's as it maps them in the initial user namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Personality {
    /// 1..=65535, given by the kernel.
    pub id: u32,
    /// Real, effective, saved and filesystem user ids.
    pub uid: u32,
    pub euid: u32,
    pub suid: u32,
    pub fsuid: u32,
    /// Real, effective, saved and filesystem group ids.
    pub gid: u32,
    pub egid: u32,
    pub sgid: u32,
    pub fsgid: u32,
    /// Supplementary groups in the kernel's (ascending) order; `None` when
    /// there were more than the dumper records
    /// (`abi::personality::MAX_RECORDED_GROUPS`).
    pub groups: Option<Vec<u32>>,
    /// Capability sets, as masks of `CAP_*` bits.
    pub cap_inheritable: u64,
    pub cap_permitted: u64,
    pub cap_effective: u64,
    pub cap_bounding: u64,
    pub cap_ambient: u64,
}

/// A ring's restrictions (`struct io_restriction`): which
/// `io_uring_register` opcodes and SQE opcodes it allows, and which SQE
/// flags. Registered once, while the ring is `R_DISABLED`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restrictions {
    /// Allowed `IORING_REGISTER_*` opcodes, ascending.
    pub register_ops: Vec<u8>,
    /// Allowed `IORING_OP_*` opcodes, ascending.
    pub sqe_ops: Vec<u8>,
    /// `IOSQE_*` flags an SQE may carry.
    pub sqe_flags_allowed: u8,
    /// `IOSQE_*` flags every SQE must carry.
    pub sqe_flags_required: u8,
}

impl Ring {
    /// Whether the program saw this ring's memory: it gave the kernel its
    /// own (`IORING_SETUP_NO_MMAP`) or mapped the ring's SQEs. Only then can
    /// a restore that puts the ring's state back matter to the program.
    pub fn program_saw_memory(&self) -> bool {
        self.state
            .as_deref()
            .is_some_and(|state| state.memory.no_mmap)
            || self
                .mappings
                .iter()
                .any(|mapping| mapping.region == RingRegion::Sqes)
    }
}

/// Where a ring is, what it holds, and whose it is: what a program using
/// it relies on besides its kernel objects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingState {
    pub positions: RingPositions,
    /// The whole SQ index array as the program's view of the ring holds it
    /// (`sq_entries` values); `None` with `IORING_SETUP_NO_SQARRAY` or when
    /// unknown ([`StateField::Entries`]).
    pub sq_array: Option<Vec<u32>>,
    /// Every SQE from the kernel's SQ head (`cached_sq_head`) to the SQ
    /// tail, in order: queued, not yet submitted. `None` when unknown.
    pub sqes: Option<Vec<QueuedSqe>>,
    /// Every other SQE slot whose bytes are not all zero, by slot: SQEs the
    /// program prepared and has not published (liburing's `io_uring_get_sqe`
    /// before `io_uring_submit` writes only the slot and its own tail), and
    /// old ones. They live only in the ring's memory. Empty when the
    /// program has no view of the SQEs or the entries are unknown; absent
    /// on the wire reads as empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unqueued_sqes: Vec<SlotSqe>,
    /// Every CQE from the CQ head to the CQ tail, in order: posted, not yet
    /// consumed. `None` when unknown.
    pub cqes: Option<Vec<Cqe>>,
    /// The kernel's CQ overflow list, in order: completions that did not
    /// fit the CQ ring. `None` when unknown.
    pub overflow: Option<Vec<Cqe>>,
    pub memory: RingMemory,
    /// With `IORING_SETUP_SINGLE_ISSUER`, the thread that may submit
    /// (`ctx->submitter_task`) as a tid in the dumper's pid namespace;
    /// `None` when no thread is bound yet (an `R_DISABLED` ring), without
    /// `SINGLE_ISSUER`, or when unknown.
    pub owner_tid: Option<u32>,
    /// Fields the backend could not read: their `None` means "unknown",
    /// not "none".
    pub unknown: Vec<StateField>,
}

/// A ring's positions, as u32 values the way the ring counts them (they
/// wrap at 2^32; only their difference is taken modulo the ring size).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RingPositions {
    /// The SQ head the kernel last published (`rings->sq.head`).
    pub sq_head: u32,
    /// The SQ tail the program wrote (`rings->sq.tail`).
    pub sq_tail: u32,
    /// The kernel's own SQ head (`ctx->cached_sq_head`): the next SQE it
    /// will consume. Equals `sq_head` except during a submission.
    pub cached_sq_head: u32,
    /// The CQ head the program wrote (`rings->cq.head`).
    pub cq_head: u32,
    /// The CQ tail the kernel last published (`rings->cq.tail`).
    pub cq_tail: u32,
    /// The kernel's own CQ tail (`ctx->cached_cq_tail`); ahead of `cq_tail`
    /// only while CQEs are posted and not yet committed.
    pub cached_cq_tail: u32,
    /// `rings->sq_dropped`: SQEs the kernel dropped as invalid.
    pub sq_dropped: u32,
    /// `rings->cq_overflow`: CQEs lost to overflow.
    pub cq_overflow: u32,
    /// `rings->sq_flags` (`IORING_SQ_NEED_WAKEUP`, `IORING_SQ_CQ_OVERFLOW`,
    /// `IORING_SQ_TASKRUN`).
    pub sq_flags: u32,
    /// `rings->cq_flags` (`IORING_CQ_EVENTFD_DISABLED`).
    pub cq_flags: u32,
}

/// One queued SQE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedSqe {
    /// Its position (between the kernel's SQ head and the SQ tail).
    pub position: u32,
    /// The SQE array slot it is in: the SQ array's entry at
    /// `position & (sq_entries - 1)`, or that index itself without an SQ
    /// array.
    pub slot: u32,
    /// Its bytes: 64, or 128 with `IORING_SETUP_SQE128`. A CBOR byte string.
    pub bytes: SqeBytes,
}

/// An SQE slot's bytes outside the queued positions
/// ([`RingState::unqueued_sqes`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotSqe {
    /// The SQE array slot.
    pub slot: u32,
    /// Its bytes: 64, or 128 with `IORING_SETUP_SQE128`.
    pub bytes: SqeBytes,
}

/// The bytes of one SQE, a CBOR byte string on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqeBytes(pub Vec<u8>);

impl Serialize for SqeBytes {
    /// A byte string in CBOR; lowercase hex in a human-readable format
    /// (JSON), as the image's JSON view writes it.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            let hex: String = self.0.iter().map(|byte| format!("{byte:02x}")).collect();
            serializer.serialize_str(&hex)
        } else {
            serializer.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for SqeBytes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = SqeBytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<SqeBytes, E> {
                Ok(SqeBytes(bytes.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, bytes: Vec<u8>) -> Result<SqeBytes, E> {
                Ok(SqeBytes(bytes))
            }
            fn visit_str<E: serde::de::Error>(self, hex: &str) -> Result<SqeBytes, E> {
                let digits = hex.as_bytes();
                if digits.len() % 2 != 0 {
                    return Err(E::custom("an odd number of hex digits"));
                }
                digits
                    .chunks(2)
                    .map(|pair| {
                        std::str::from_utf8(pair)
                            .ok()
                            .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                            .ok_or_else(|| E::custom("not a hex string"))
                    })
                    .collect::<Result<Vec<u8>, E>>()
                    .map(SqeBytes)
            }
        }
        // byte_buf, not bytes: ciborium reads a byte string longer than its
        // 4 KiB scratch buffer only so (a kernel-memory buffer ring's bytes
        // reach 512 KiB).
        deserializer.deserialize_byte_buf(Visitor)
    }
}

/// One completion (`struct io_uring_cqe`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cqe {
    pub user_data: u64,
    pub res: i32,
    pub flags: u32,
    /// The two extra words of a 32-byte CQE (`IORING_SETUP_CQE32`); `None`
    /// otherwise.
    pub extra: Option<[u64; 2]>,
}

/// Whose memory a ring lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingMemory {
    /// `IORING_SETUP_NO_MMAP`: the program gave the kernel its own memory
    /// for the rings and the SQEs. Otherwise the kernel allocated them and
    /// the program's views of them are [`Ring::mappings`].
    pub no_mmap: bool,
    /// With `no_mmap`, the address and size of the memory the kernel was
    /// given for the rings (`cq_off.user_addr`); `None` otherwise or when
    /// unknown ([`StateField::Memory`]).
    pub rings: Option<UserRegion>,
    /// With `no_mmap`, the memory given for the SQEs (`sq_off.user_addr`).
    pub sqes: Option<UserRegion>,
}

/// A range of the program's memory the kernel was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRegion {
    pub addr: u64,
    pub len: u64,
}

/// A ring state field a backend may be unable to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StateField {
    /// `sq_array`, `sqes` and `cqes` (read together from the ring's memory).
    Entries,
    Overflow,
    /// `memory.rings` and `memory.sqes`.
    Memory,
    OwnerTid,
}

impl StateField {
    /// The field's name in the JSON view.
    pub fn name(self) -> &'static str {
        match self {
            StateField::Entries => "entries",
            StateField::Overflow => "overflow",
            StateField::Memory => "memory",
            StateField::OwnerTid => "owner_tid",
        }
    }
}

/// The parameters `io_uring_setup` was called with, as the kernel holds them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingSetup {
    /// `IORING_SETUP_*` flags exactly as the kernel holds them; `None` when
    /// unknown.
    pub flags: Option<u32>,
    pub sq_entries: u32,
    pub cq_entries: u32,
    /// The CPU the SQ thread is pinned to; only with `IORING_SETUP_SQ_AFF`.
    pub sq_thread_cpu: Option<u32>,
    /// This ring's own SQ idle time in milliseconds (the kernel keeps
    /// jiffies, so this is a multiple of 1000/HZ); only with SQPOLL.
    pub sq_thread_idle_ms: Option<u32>,
}

impl RingSetup {
    /// Whether `flag` is set; `false` when the flags are unknown.
    pub fn has(&self, flag: SetupFlags) -> bool {
        self.flags.is_some_and(|flags| flags & flag.bits() != 0)
    }
}

/// A ring's registered eventfd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingEventfd {
    /// The eventfd object.
    pub object: ObjectId,
    /// Registered with `IORING_REGISTER_EVENTFD_ASYNC`.
    #[serde(rename = "async")]
    pub is_async: bool,
}

/// One occupied registered-buffer slot. On the wire: `[addr, len]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "(u64, u64)", into = "(u64, u64)")]
pub struct Buffer {
    pub addr: u64,
    pub len: u64,
}

impl From<(u64, u64)> for Buffer {
    fn from((addr, len): (u64, u64)) -> Self {
        Buffer { addr, len }
    }
}

impl From<Buffer> for (u64, u64) {
    fn from(buffer: Buffer) -> Self {
        (buffer.addr, buffer.len)
    }
}

/// A mapping of one of a ring's regions in the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingMapping {
    pub region: RingRegion,
    pub addr: u64,
    pub len: u64,
}

impl std::fmt::Display for RingMapping {
    /// `sq_ring 0x7f0000000000+4096`: how the views write a mapping.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:#x}+{}", self.region.name(), self.addr, self.len)
    }
}

/// Which region of a ring a mapping shows, by its mmap offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RingRegion {
    /// `IORING_OFF_SQ_RING` (with `IORING_FEAT_SINGLE_MMAP`, also the CQ ring).
    SqRing,
    /// `IORING_OFF_CQ_RING`
    CqRing,
    /// `IORING_OFF_SQES`
    Sqes,
}

impl RingRegion {
    /// The mmap offset that selects this region.
    pub fn mmap_offset(self) -> u64 {
        match self {
            RingRegion::SqRing => mmap_offset::SQ_RING,
            RingRegion::CqRing => mmap_offset::CQ_RING,
            RingRegion::Sqes => mmap_offset::SQES,
        }
    }

    /// The region's name as the image's and the plan's views spell it.
    pub fn name(self) -> &'static str {
        match self {
            RingRegion::SqRing => "sq_ring",
            RingRegion::CqRing => "cq_ring",
            RingRegion::Sqes => "sqes",
        }
    }

    /// The region an mmap offset selects, if any.
    pub fn from_mmap_offset(offset: u64) -> Option<Self> {
        [RingRegion::SqRing, RingRegion::CqRing, RingRegion::Sqes]
            .into_iter()
            .find(|region| region.mmap_offset() == offset)
    }
}

/// A ring field a backend may be unable to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RingField {
    Flags,
    /// Without the flags, whether the SQ thread is pinned is unknown too.
    SqThreadCpu,
    #[serde(rename = "sq_thread_idle_ms")]
    SqThreadIdle,
    Eventfd,
    /// `personalities` (and `personality_next`).
    Personalities,
    Restrictions,
    /// `pbuf_rings` (and `legacy_buffer_groups`).
    PbufRings,
    /// `settings`: the file allocation range, io-wq limits, NAPI, tags, a
    /// wait region.
    Settings,
    RegisteredRingFds,
}

impl RingField {
    /// The field's name in the JSON view.
    pub fn name(self) -> &'static str {
        match self {
            RingField::Flags => "flags",
            RingField::SqThreadCpu => "sq_thread_cpu",
            RingField::SqThreadIdle => "sq_thread_idle_ms",
            RingField::Eventfd => "eventfd",
            RingField::Personalities => "personalities",
            RingField::Restrictions => "restrictions",
            RingField::PbufRings => "pbuf_rings",
            RingField::Settings => "settings",
            RingField::RegisteredRingFds => "registered_ring_fds",
        }
    }
}

/// An eventfd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Eventfd {
    /// The counter.
    pub count: u64,
    /// Created with `EFD_SEMAPHORE`.
    pub semaphore: bool,
    /// Its file is `O_NONBLOCK`.
    pub nonblock: bool,
}

/// An open file (one `struct file`, however many fds or slots hold it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct File {
    /// The path it was opened at, as the kernel prints it; `None` for files
    /// without one (pipes, sockets, anonymous inodes).
    pub path: Option<String>,
    /// Open flags (`O_*`) as the kernel holds them in `f_flags`; `None`
    /// when the backend could not read them.
    pub flags: Option<u32>,
    /// The file position; `None` when the backend could not read it.
    pub pos: Option<i64>,
    #[serde(rename = "type")]
    pub file_type: FileType,
    /// The inode behind it, as `stat` of the process's fd showed it at the
    /// dump, so that a restore into a process that already holds a file at
    /// a recorded fd can tell whether it is this one. `None` for a file no
    /// fd held (only a ring's table did), and in images written before it
    /// existed (absent on the wire; left out when `None`, so such images
    /// re-encode byte for byte).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<FileIdentity>,
}

/// Which inode a file is: `st_dev` and `st_ino` as `stat` reports them
/// (the device in the encoding `stat` gives userspace, not the kernel's
/// internal `dev_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileIdentity {
    pub dev: u64,
    pub ino: u64,
}

impl std::fmt::Display for FileIdentity {
    /// `dev MAJOR:MINOR ino N`, as `stat` prints them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (major, minor) = ringplan_kernel::abi::identity::major_minor(self.dev);
        write!(f, "dev {major}:{minor} ino {}", self.ino)
    }
}

/// What kind of file an object is, from its inode's mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileType {
    Regular,
    Directory,
    CharDevice,
    BlockDevice,
    Pipe,
    Socket,
    Symlink,
    /// Anything else, including anonymous inodes.
    Other,
    /// The backend could not tell.
    Unknown,
}

impl FileType {
    /// The type an inode mode (`st_mode`, `i_mode`) names.
    pub fn from_mode(mode: u32) -> Self {
        match mode & 0o170000 {
            0o100000 => FileType::Regular,
            0o040000 => FileType::Directory,
            0o020000 => FileType::CharDevice,
            0o060000 => FileType::BlockDevice,
            0o010000 => FileType::Pipe,
            0o140000 => FileType::Socket,
            0o120000 => FileType::Symlink,
            _ => FileType::Other,
        }
    }

    /// The type's name in the JSON view.
    pub fn name(self) -> &'static str {
        match self {
            FileType::Regular => "regular",
            FileType::Directory => "directory",
            FileType::CharDevice => "char_device",
            FileType::BlockDevice => "block_device",
            FileType::Pipe => "pipe",
            FileType::Socket => "socket",
            FileType::Symlink => "symlink",
            FileType::Other => "other",
            FileType::Unknown => "unknown",
        }
    }
}
