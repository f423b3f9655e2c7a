//! Parsing the byte stream the BPF programs write (`bpf/ringplan_records.h`),
//! and the request values pass B reads.
//!
//! The stream comes from the kernel and is treated as untrusted input: every
//! length is checked, and anything that does not parse is a
//! [`MalformedRecord`], never a panic.
//!
//! Nothing of the layout is written here: the record structs, their sizes,
//! the kinds, tags and limits are the types and constants the skeleton
//! generator emits from the header (the skeleton's `types` module, imported
//! as `records_h`). A field the header renames, retypes or drops fails this
//! file's build; a size, an offset or a limit it changes is followed.

use std::fmt;
use std::mem::size_of;

use ringplan_image::RingPositions;

use super::skeleton::types as records_h;
use crate::raw::Known;

/// `struct rp_header`: kind and total size.
const HEADER_LEN: usize = size_of::<records_h::rp_header>();
const FD_RECORD_LEN: usize = size_of::<records_h::rp_fd_record>();
/// The size of a `struct rp_chunk_request`, the chunk_requests map's value.
pub(crate) const CHUNK_REQUEST_LEN: usize = size_of::<records_h::rp_chunk_request>();
/// `RP_PATH_MAX`: the longest path the program writes.
const PATH_MAX: usize = records_h::rp_limits::RP_PATH_MAX.0 as usize;

const KIND_FD: u32 = records_h::rp_record_kind::RP_RECORD_FD.0;
const KIND_RING: u32 = records_h::rp_record_kind::RP_RECORD_RING.0;
const KIND_EVENTFD: u32 = records_h::rp_record_kind::RP_RECORD_EVENTFD.0;
const KIND_CHUNK: u32 = records_h::rp_record_kind::RP_RECORD_CHUNK.0;
const KIND_FILE_SLOT: u32 = records_h::rp_record_kind::RP_RECORD_FILE_SLOT.0;
const KIND_BUFFER_SLOT: u32 = records_h::rp_record_kind::RP_RECORD_BUFFER_SLOT.0;
const KIND_PROBE: u32 = records_h::rp_record_kind::RP_RECORD_PROBE.0;
const STATE_POSITIONS: u32 = records_h::rp_state_known::RP_STATE_POSITIONS.0;
const STATE_OWNER: u32 = records_h::rp_state_known::RP_STATE_OWNER.0;
const STATE_OVERFLOW: u32 = records_h::rp_state_known::RP_STATE_OVERFLOW.0;
const KIND_OVERFLOW_CQE: u32 = records_h::rp_record_kind::RP_RECORD_OVERFLOW_CQE.0;
const KIND_PENDING_REQUEST: u32 = records_h::rp_record_kind::RP_RECORD_PENDING_REQUEST.0;
const STATE_ALLOCATED: u32 = records_h::rp_state_known::RP_STATE_ALLOCATED.0;
const STATE_DRAIN_SEQUENCE: u32 = records_h::rp_state_known::RP_STATE_DRAIN_SEQUENCE.0;
const STATE_PENDING: u32 = records_h::rp_state_known::RP_STATE_PENDING.0;
const STATE_PERSONALITIES: u32 = records_h::rp_state_known::RP_STATE_PERSONALITIES.0;
const STATE_RESTRICTIONS: u32 = records_h::rp_state_known::RP_STATE_RESTRICTIONS.0;
const KIND_PERSONALITY: u32 = records_h::rp_record_kind::RP_RECORD_PERSONALITY.0;
const KIND_PBUF_RING: u32 = records_h::rp_record_kind::RP_RECORD_PBUF_RING.0;
const STATE_PBUF_RINGS: u32 = records_h::rp_state_known::RP_STATE_PBUF_RINGS.0;
const STATE_SETTINGS: u32 = records_h::rp_state_known::RP_STATE_SETTINGS.0;
const STATE_PERSONALITIES_TO_WALK: u32 =
    records_h::rp_state_known::RP_STATE_PERSONALITIES_TO_WALK.0;
const STATE_PBUF_RINGS_TO_WALK: u32 = records_h::rp_state_known::RP_STATE_PBUF_RINGS_TO_WALK.0;
const KIND_WALK_COUNTS: u32 = records_h::rp_record_kind::RP_RECORD_WALK_COUNTS.0;
const KIND_LEGACY_BUFFER: u32 = records_h::rp_record_kind::RP_RECORD_LEGACY_BUFFER.0;
const KIND_LEGACY_LIST: u32 = records_h::rp_record_kind::RP_RECORD_LEGACY_LIST.0;
const KIND_LEGACY_CHECKPOINT: u32 = records_h::rp_record_kind::RP_RECORD_LEGACY_CHECKPOINT.0;
const KIND_PENDING_LIST: u32 = records_h::rp_record_kind::RP_RECORD_PENDING_LIST.0;
const KIND_NAPI_ID: u32 = records_h::rp_record_kind::RP_RECORD_NAPI_ID.0;
const KIND_NAPI_LIST: u32 = records_h::rp_record_kind::RP_RECORD_NAPI_LIST.0;
/// `RP_LEGACY_BUFFERS_PER_CHUNK`: the most buffers one legacy-buffers
/// request reads.
pub(crate) const LEGACY_BUFFERS_PER_CHUNK: u32 =
    records_h::rp_limits::RP_LEGACY_BUFFERS_PER_CHUNK.0;
/// `RP_MAX_LEGACY_BUFFERS`: the longest legacy group list walked.
pub(crate) const MAX_LEGACY_BUFFERS: u32 = records_h::rp_limits::RP_MAX_LEGACY_BUFFERS.0;
/// `enum rp_settings` bits of [`SettingsWords::bits`].
pub(crate) mod settings_bits {
    use super::records_h::rp_settings;
    pub(crate) const IOWQ_LIMITS_SET: u32 = rp_settings::RP_SETTINGS_IOWQ_LIMITS_SET.0;
    pub(crate) const NAPI_KNOWN: u32 = rp_settings::RP_SETTINGS_NAPI_KNOWN.0;
    pub(crate) const NAPI_ENABLED: u32 = rp_settings::RP_SETTINGS_NAPI_ENABLED.0;
    pub(crate) const NAPI_PREFER_BUSY_POLL: u32 = rp_settings::RP_SETTINGS_NAPI_PREFER_BUSY_POLL.0;
    pub(crate) const NAPI_TRACK_MODE: u32 = rp_settings::RP_SETTINGS_NAPI_TRACK_MODE.0;
    pub(crate) const NAPI_IDS: u32 = rp_settings::RP_SETTINGS_NAPI_IDS.0;
    pub(crate) const WAIT_REGION_KNOWN: u32 = rp_settings::RP_SETTINGS_WAIT_REGION_KNOWN.0;
    pub(crate) const TAGS_KNOWN: u32 = rp_settings::RP_SETTINGS_TAGS_KNOWN.0;
    pub(crate) const IOWQ_AFFINITY_KNOWN: u32 = rp_settings::RP_SETTINGS_IOWQ_AFFINITY_KNOWN.0;
    pub(crate) const IOWQ_SQ_THREAD: u32 = rp_settings::RP_SETTINGS_IOWQ_SQ_THREAD.0;
    pub(crate) const WAIT_REGION_USER: u32 = rp_settings::RP_SETTINGS_WAIT_REGION_USER.0;
}
const KIND_THREAD: u32 = records_h::rp_record_kind::RP_RECORD_THREAD.0;
const KIND_RING_FD: u32 = records_h::rp_record_kind::RP_RECORD_RING_FD.0;
/// `RP_RING_FD_SLOTS`: registered ring-fd slots per thread.
pub(crate) const RING_FD_SLOTS: u32 = records_h::rp_limits::RP_RING_FD_SLOTS.0;
/// `RP_PBUF_RINGS_PER_CHUNK`: the most buffer groups one chunk reads.
pub(crate) const PBUF_RINGS_PER_CHUNK: u32 = records_h::rp_limits::RP_PBUF_RINGS_PER_CHUNK.0;
const PBUF_RING: u32 = records_h::rp_pbuf_kind::RP_PBUF_RING.0;
const PBUF_KERNEL_MEMORY: u32 = records_h::rp_pbuf_kind::RP_PBUF_KERNEL_MEMORY.0;
const PBUF_INCREMENTAL: u32 = records_h::rp_pbuf_kind::RP_PBUF_INCREMENTAL.0;
const PBUF_TAIL: u32 = records_h::rp_pbuf_kind::RP_PBUF_TAIL.0;
/// `RP_PERSONALITIES_PER_CHUNK`: the most personalities one chunk reads.
pub(crate) const PERSONALITIES_PER_CHUNK: u32 = records_h::rp_limits::RP_PERSONALITIES_PER_CHUNK.0;
/// `RP_MAX_GROUPS`: the supplementary groups a personality record carries.
const MAX_GROUPS: u32 = records_h::rp_limits::RP_MAX_GROUPS.0;

/// `RP_READ_BUFFER_SIZE`: the read() size that keeps the kernel from
/// re-showing an object (see the sizing note in ringplan_records.h).
pub(crate) const READ_BUFFER_SIZE: usize = records_h::rp_limits::RP_READ_BUFFER_SIZE.0 as usize;
/// `RP_FILE_SLOTS_PER_CHUNK`: the most file slots one chunk request reads.
pub(crate) const FILE_SLOTS_PER_CHUNK: u32 = records_h::rp_limits::RP_FILE_SLOTS_PER_CHUNK.0;
/// `RP_BUFFER_SLOTS_PER_CHUNK`: the most buffer slots one chunk request reads.
pub(crate) const BUFFER_SLOTS_PER_CHUNK: u32 = records_h::rp_limits::RP_BUFFER_SLOTS_PER_CHUNK.0;
/// `RP_MAX_CHUNK_REQUESTS`: capacity of the chunk_requests map.
pub(crate) const MAX_CHUNK_REQUESTS: usize = records_h::rp_limits::RP_MAX_CHUNK_REQUESTS.0 as usize;

/// A struct of `ringplan_records.h` as the skeleton generator emits it.
///
/// # Safety
///
/// Only for generated `#[repr(C)]` structs made of integers (and structs of
/// integers): every bit pattern is a valid value, and there are no padding
/// bytes, since the generator writes every gap as a `__pad_N` byte array.
unsafe trait HeaderStruct: Copy {}

// SAFETY: generated from ringplan_records.h: integers, gaps as byte arrays.
unsafe impl HeaderStruct for records_h::rp_header {}
// SAFETY: generated from ringplan_records.h: integers, gaps as byte arrays.
unsafe impl HeaderStruct for records_h::rp_fd_record {}
// SAFETY: generated from ringplan_records.h: integers, gaps as byte arrays.
unsafe impl HeaderStruct for records_h::rp_ring_record {}
// SAFETY: generated from ringplan_records.h: integers, gaps as byte arrays.
unsafe impl HeaderStruct for records_h::rp_eventfd_record {}
// SAFETY: generated from ringplan_records.h: integers, gaps as byte arrays.
unsafe impl HeaderStruct for records_h::rp_chunk_request {}
// SAFETY: generated from ringplan_records.h: integers, gaps as byte arrays.
unsafe impl HeaderStruct for records_h::rp_chunk_record {}
// SAFETY: generated from ringplan_records.h: integers, gaps as byte arrays.
unsafe impl HeaderStruct for records_h::rp_file_slot_record {}
// SAFETY: generated from ringplan_records.h: integers, gaps as byte arrays.
unsafe impl HeaderStruct for records_h::rp_buffer_slot_record {}
// SAFETY: generated from ringplan_records.h: integers, gaps as byte arrays.
unsafe impl HeaderStruct for records_h::rp_probe_record {}
// SAFETY: generated from ringplan_records.h: integers, gaps as byte arrays.
unsafe impl HeaderStruct for records_h::rp_overflow_cqe_record {}
// SAFETY: generated from ringplan_records.h: integers, gaps as byte arrays.
unsafe impl HeaderStruct for records_h::rp_pending_request_record {}
// SAFETY: generated from ringplan_records.h: integers, gaps as byte arrays.
unsafe impl HeaderStruct for records_h::rp_personality_record {}
// SAFETY: generated from ringplan_records.h: integers, gaps as byte arrays.
unsafe impl HeaderStruct for records_h::rp_pbuf_ring_record {}
// SAFETY: generated from ringplan_records.h: integers, gaps as byte arrays.
unsafe impl HeaderStruct for records_h::rp_thread_record {}
// SAFETY: generated from ringplan_records.h: integers, gaps as byte arrays.
unsafe impl HeaderStruct for records_h::rp_legacy_buffer_record {}
// SAFETY: generated from ringplan_records.h: integers, gaps as byte arrays.
unsafe impl HeaderStruct for records_h::rp_legacy_list_record {}
// SAFETY: generated from ringplan_records.h: integers, gaps as byte arrays.
unsafe impl HeaderStruct for records_h::rp_legacy_checkpoint_record {}
// SAFETY: generated from ringplan_records.h: integers, gaps as byte arrays.
unsafe impl HeaderStruct for records_h::rp_pending_list_record {}
// SAFETY: generated from ringplan_records.h: integers, gaps as byte arrays.
unsafe impl HeaderStruct for records_h::rp_napi_id_record {}
// SAFETY: generated from ringplan_records.h: integers, gaps as byte arrays.
unsafe impl HeaderStruct for records_h::rp_napi_list_record {}
// SAFETY: generated from ringplan_records.h: integers, gaps as byte arrays.
unsafe impl HeaderStruct for records_h::rp_ring_fd_record {}
// SAFETY: generated from ringplan_records.h: integers, gaps as byte arrays.
unsafe impl HeaderStruct for records_h::rp_walk_counts_record {}

/// The `T` at the start of `bytes`, or an error when `bytes` is shorter.
fn read_struct<T: HeaderStruct>(bytes: &[u8]) -> Result<T, &'static str> {
    if bytes.len() < size_of::<T>() {
        return Err("truncated");
    }
    // SAFETY: `bytes` holds at least size_of::<T>() bytes; read_unaligned
    // needs no alignment; any bit pattern is a T (HeaderStruct).
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// The bytes of `value`, as the C side lays them out.
fn struct_bytes<T: HeaderStruct>(value: &T) -> &[u8] {
    // SAFETY: `value` is size_of::<T>() initialised bytes (HeaderStruct:
    // no padding), borrowed for as long as the slice.
    unsafe { std::slice::from_raw_parts(std::ptr::from_ref(value).cast::<u8>(), size_of::<T>()) }
}

/// `enum rp_file_role`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Plain,
    Ring,
    Eventfd,
}

impl Role {
    fn from_raw(raw: u32) -> Result<Role, &'static str> {
        match records_h::rp_file_role(raw) {
            records_h::rp_file_role::RP_ROLE_PLAIN => Ok(Role::Plain),
            records_h::rp_file_role::RP_ROLE_RING => Ok(Role::Ring),
            records_h::rp_file_role::RP_ROLE_EVENTFD => Ok(Role::Eventfd),
            _ => Err("unknown file role"),
        }
    }
}

/// `enum rp_layout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    Unknown,
    RsrcNodes,
    FixedFiles,
}

impl Layout {
    fn from_raw(raw: u32) -> Result<Layout, &'static str> {
        match records_h::rp_layout(raw) {
            records_h::rp_layout::RP_LAYOUT_UNKNOWN => Ok(Layout::Unknown),
            records_h::rp_layout::RP_LAYOUT_RSRC_NODES => Ok(Layout::RsrcNodes),
            records_h::rp_layout::RP_LAYOUT_FIXED_FILES => Ok(Layout::FixedFiles),
            _ => Err("unknown layout"),
        }
    }
}

/// `enum rp_table`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Table {
    Files,
    Buffers,
    /// By ordinal: the n-th personality in id order.
    Personalities,
    /// By ordinal: the n-th provided-buffer group.
    PbufRings,
}

impl Table {
    fn to_raw(self) -> u32 {
        match self {
            Table::Files => records_h::rp_table::RP_TABLE_FILES.0,
            Table::Buffers => records_h::rp_table::RP_TABLE_BUFFERS.0,
            Table::Personalities => records_h::rp_table::RP_TABLE_PERSONALITIES.0,
            Table::PbufRings => records_h::rp_table::RP_TABLE_PBUF_RINGS.0,
        }
    }

    fn from_raw(raw: u32) -> Result<Table, &'static str> {
        match records_h::rp_table(raw) {
            records_h::rp_table::RP_TABLE_FILES => Ok(Table::Files),
            records_h::rp_table::RP_TABLE_BUFFERS => Ok(Table::Buffers),
            records_h::rp_table::RP_TABLE_PERSONALITIES => Ok(Table::Personalities),
            records_h::rp_table::RP_TABLE_PBUF_RINGS => Ok(Table::PbufRings),
            _ => Err("unknown table"),
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Table::Files => "file",
            Table::Buffers => "buffer",
            Table::Personalities => "personality",
            Table::PbufRings => "buffer group",
        })
    }
}

/// `enum rp_request_kind`: what a pass-B request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestKind {
    /// A range of a registered table.
    Chunk,
    /// The ring's header.
    Ring,
    /// The file's f_op.
    Probe,
    /// How many personalities and buffer groups the ring has
    /// (`ringplan_walk_fds`).
    WalkCounts,
    /// A range of a legacy group's buffers (`ringplan_walk_fds`).
    LegacyBuffers,
    /// The requests the ring's kernel keeps waiting on their own
    /// (`ringplan_walk_fds`).
    Pending,
    /// The NAPI ids the ring lists (`ringplan_walk_fds`).
    NapiIds,
}

impl RequestKind {
    fn to_raw(self) -> u32 {
        match self {
            RequestKind::Chunk => records_h::rp_request_kind::RP_REQUEST_CHUNK.0,
            RequestKind::Ring => records_h::rp_request_kind::RP_REQUEST_RING.0,
            RequestKind::Probe => records_h::rp_request_kind::RP_REQUEST_PROBE.0,
            RequestKind::WalkCounts => records_h::rp_request_kind::RP_REQUEST_WALK_COUNTS.0,
            RequestKind::LegacyBuffers => records_h::rp_request_kind::RP_REQUEST_LEGACY_BUFFERS.0,
            RequestKind::Pending => records_h::rp_request_kind::RP_REQUEST_PENDING.0,
            RequestKind::NapiIds => records_h::rp_request_kind::RP_REQUEST_NAPI_IDS.0,
        }
    }
}

/// `enum rp_chunk_status`, of chunk and ring records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChunkStatus {
    Ok,
    OtherRing,
    UnknownLayout,
    /// The request went to the program that does not answer it.
    OtherProgram,
}

impl ChunkStatus {
    fn from_raw(raw: u32) -> Result<ChunkStatus, &'static str> {
        match records_h::rp_chunk_status(raw) {
            records_h::rp_chunk_status::RP_CHUNK_OK => Ok(ChunkStatus::Ok),
            records_h::rp_chunk_status::RP_CHUNK_OTHER_RING => Ok(ChunkStatus::OtherRing),
            records_h::rp_chunk_status::RP_CHUNK_UNKNOWN_LAYOUT => Ok(ChunkStatus::UnknownLayout),
            records_h::rp_chunk_status::RP_CHUNK_OTHER_PROGRAM => Ok(ChunkStatus::OtherProgram),
            _ => Err("unknown chunk status"),
        }
    }
}

/// `struct rp_fd_record` and the path after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FdRecord<'a> {
    pub file: u64,
    pub f_op: u64,
    pub private_data: u64,
    pub pos: i64,
    pub inode_number: u64,
    pub fd: u32,
    pub flags: u32,
    pub mode: u32,
    pub role: Role,
    pub cloexec: bool,
    /// The d_path text, when d_path gave one.
    pub path: Option<&'a [u8]>,
}

/// `struct rp_ring_record` (pass B; `fd` is the dumper's local fd).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RingRecord {
    pub ctx: u64,
    pub sq_data: u64,
    pub eventfd_ctx: u64,
    pub eventfd_count: u64,
    pub inode_number: u64,
    pub fd: u32,
    pub flags: u32,
    pub sq_entries: u32,
    pub cq_entries: u32,
    pub sq_thread_idle_jiffies: u32,
    pub sq_cpu: i32,
    pub eventfd_async: bool,
    pub eventfd_flags: u32,
    pub file_slots: u32,
    pub buffer_slots: u32,
    pub layout: Layout,
    pub status: ChunkStatus,
    /// The positions, when `RP_STATE_POSITIONS` says they were read.
    pub positions: Option<RingPositions>,
    /// `ctx->submitter_task`'s tid (`Known(None)`: no task bound), when
    /// `RP_STATE_OWNER` says the kernel has the field.
    pub owner_tid: Known<Option<u32>>,
    /// How many overflow CQE records came before this record, when
    /// `RP_STATE_OVERFLOW` says they are the whole list.
    pub overflow_listed: Option<u32>,
    /// The `struct page` addresses of the first page of the ring's memory
    /// and of its SQEs (0: unknown), and `sizeof(struct page)`.
    pub rings_page: u64,
    pub sqes_page: u64,
    pub page_struct_size: u32,
    /// The counters of the requests in flight this kernel has.
    pub in_flight: InFlightCounters,
    /// How many personalities the ring has and `ctx->pers_next`, when
    /// `RP_STATE_PERSONALITIES` says they are counted (none, in a ring
    /// record; a [`WalkCountsRecord`] fills in the others).
    pub personalities: Option<(u32, u32)>,
    /// `ctx->pers_next`, read whenever the kernel has personalities.
    pub personality_next: u32,
    /// Which counts the header left to `ringplan_walk_fds`.
    pub to_walk: ToWalk,
    /// `ctx->restrictions`, when `RP_STATE_RESTRICTIONS` says it was read.
    pub restrictions: Option<RestrictionWords>,
    /// How many provided-buffer groups the ring has, when
    /// `RP_STATE_PBUF_RINGS` says they are counted (as `personalities`).
    pub pbuf_count: Option<u32>,
    /// The registered settings, when `RP_STATE_SETTINGS` says they were read.
    pub settings: Option<SettingsWords>,
}

/// The counts a ring record leaves to `ringplan_walk_fds`
/// (`RP_STATE_*_TO_WALK`): its personalities xarray is not empty, it may
/// have buffer groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ToWalk {
    pub personalities: bool,
    pub pbuf_rings: bool,
}

impl ToWalk {
    pub(crate) fn any(self) -> bool {
        self.personalities || self.pbuf_rings
    }
}

/// `struct rp_walk_counts_record`: a ring's personalities and buffer
/// groups, counted by `ringplan_walk_fds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WalkCountsRecord {
    pub ctx: u64,
    pub fd: u32,
    pub status: ChunkStatus,
    /// When `RP_STATE_PERSONALITIES` says the walk reached the end.
    pub personality_count: Option<u32>,
    /// When `RP_STATE_PBUF_RINGS` says the walk reached the end.
    pub pbuf_count: Option<u32>,
}

/// The registered settings as the ring record carries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SettingsWords {
    pub file_alloc_start: u32,
    pub file_alloc_end: u32,
    /// `ctx->iowq_limits`: bounded, unbounded.
    pub iowq_limits: [u32; 2],
    /// `ctx->napi_busy_poll_dt`, nanoseconds.
    pub napi_busy_poll_dt: u64,
    /// `ctx->napi_track_mode` (with [`settings_bits::NAPI_TRACK_MODE`]).
    pub napi_track_mode: u32,
    /// `ctx->cq_wait_size` (with [`settings_bits::WAIT_REGION_KNOWN`]).
    pub wait_region_size: u64,
    /// The io-wq CPU mask (CPUs 0-255) of [`Self::iowq_tid`] (with
    /// [`settings_bits::IOWQ_AFFINITY_KNOWN`]).
    pub iowq_cpus: [u64; 4],
    /// The thread whose io-wq the ring's work goes to; 0: none has one.
    pub iowq_tid: u32,
    /// The `struct page` of the wait region's first page (0: not read).
    pub wait_region_page: u64,
    /// [`settings_bits`].
    pub bits: u32,
}

/// `struct rp_pbuf_ring_record`: one provided-buffer group, by its ordinal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PbufRingRecord {
    pub index: u32,
    pub bgid: u16,
    pub entries: u32,
    pub head: u16,
    /// A buffer ring; else a legacy group of `IORING_OP_PROVIDE_BUFFERS`.
    pub is_ring: bool,
    pub kernel_memory: bool,
    pub incremental: bool,
    /// The `struct page` of the ring memory's first page (0: none).
    pub first_page: u64,
    /// The program's tail, read from the ring's memory.
    pub tail: Option<u16>,
}

/// `ctx->restrictions` as the ring record carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RestrictionWords {
    pub register_op: u64,
    pub sqe_op: u64,
    pub sqe_flags_allowed: u8,
    pub sqe_flags_required: u8,
    pub registered: bool,
}

/// `struct rp_personality_record`: one personality, by its ordinal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PersonalityRecord {
    pub index: u32,
    pub personality: ringplan_image::Personality,
}

/// The counters from which the requests in flight are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InFlightCounters {
    /// 6.16+: allocated requests, and the free cache among them.
    Allocated { allocated: u32, free_cached: u32 },
    /// Before 6.16: `cq_extra` for the kernel's drain arithmetic, which
    /// it stops trusting once `drain_disabled` is set.
    DrainSequence { cq_extra: u32, drain_disabled: bool },
    /// Neither: this kernel's layout is not one the program knows.
    Unknown,
}

/// `struct rp_pending_request_record`: a request waiting on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PendingRequestRecord {
    pub ctx: u64,
    pub index: u32,
    pub user_data: u64,
    pub opcode: u8,
    pub waits_in: crate::raw::PendingKind,
}

/// `struct rp_overflow_cqe_record`: one CQE of a ring's overflow list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OverflowCqeRecord {
    pub ctx: u64,
    pub index: u32,
    /// The CQE; `extra` is filled in later, from the ring's CQE32 flag.
    pub user_data: u64,
    pub res: i32,
    pub flags: u32,
    pub extra: [u64; 2],
}

/// `struct rp_eventfd_record`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EventfdRecord {
    pub ctx: u64,
    pub count: u64,
    pub flags: u32,
    pub fd: u32,
}

/// `struct rp_chunk_record`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkRecord {
    pub ctx: u64,
    pub fd: u32,
    pub table: Table,
    pub start: u32,
    pub scanned: u32,
    pub table_size: u32,
    pub status: ChunkStatus,
    pub sq_thread_idle_jiffies: u32,
    pub layout: Layout,
}

/// `struct rp_file_slot_record`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileSlotRecord {
    pub file: u64,
    pub f_op: u64,
    pub private_data: u64,
    pub pos: i64,
    pub eventfd_count: u64,
    pub index: u32,
    pub flags: u32,
    pub mode: u32,
    pub eventfd_flags: u32,
    /// The slot's tag (0: none).
    pub tag: u64,
}

/// `struct rp_buffer_slot_record`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BufferSlotRecord {
    pub addr: u64,
    pub len: u64,
    pub index: u32,
    pub kernel_buffer: bool,
    /// The slot's tag (0: none).
    pub tag: u64,
}

/// `struct rp_probe_record`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProbeRecord {
    pub f_op: u64,
    pub fd: u32,
}

/// One record of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record<'a> {
    Fd(FdRecord<'a>),
    Ring(Box<RingRecord>),
    Eventfd(EventfdRecord),
    Chunk(ChunkRecord),
    FileSlot(FileSlotRecord),
    BufferSlot(BufferSlotRecord),
    Probe(ProbeRecord),
    OverflowCqe(OverflowCqeRecord),
    PendingRequest(PendingRequestRecord),
    Personality(PersonalityRecord),
    PbufRing(PbufRingRecord),
    Thread(ThreadRecord),
    RingFd(RingFdRecord),
    WalkCounts(WalkCountsRecord),
    LegacyBuffer(LegacyBufferRecord),
    LegacyList(LegacyListRecord),
    LegacyCheckpoint(LegacyCheckpointRecord),
    PendingList(PendingListRecord),
    NapiId(NapiIdRecord),
    NapiList(NapiListRecord),
}

/// `struct rp_napi_id_record`: one NAPI id of a ring's `napi_list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NapiIdRecord {
    pub ctx: u64,
    pub napi_id: u32,
    /// Its place in the list, from 0.
    pub index: u32,
}

/// `struct rp_napi_list_record`: the end of a NAPI-ids answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NapiListRecord {
    pub ctx: u64,
    pub fd: u32,
    pub status: ChunkStatus,
    /// How many id records came before it, when they are the whole list.
    pub listed: Option<u32>,
}

/// `struct rp_pending_list_record`: the end of a pending-requests answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PendingListRecord {
    pub ctx: u64,
    pub fd: u32,
    pub status: ChunkStatus,
    /// How many pending request records came before it, when they are all
    /// of the ring's (the tables and lists were walked to their ends).
    pub listed: Option<u32>,
}

/// `struct rp_legacy_buffer_record`: one buffer of a legacy group's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LegacyBufferRecord {
    pub bgid: u16,
    /// Its position in the list, from the head.
    pub index: u32,
    pub buffer: ringplan_image::LegacyBuffer,
}

/// `struct rp_legacy_list_record`: the end of a legacy-buffers answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LegacyListRecord {
    pub ctx: u64,
    pub fd: u32,
    pub status: ChunkStatus,
    pub bgid: u16,
    pub start: u32,
    pub written: u32,
    /// The position the walk stopped at (the whole list's length when
    /// [`LegacyListState::Whole`]).
    pub length: u32,
    /// The list's hash up to where the walk stopped.
    pub fingerprint: u64,
    /// The group's list head (`&bl->buf_list`).
    pub head: u64,
    /// The node after the last one walked (`head` at the end).
    pub next: u64,
    /// List nodes this answer's walk read.
    pub visited: u32,
    pub state: LegacyListState,
}

/// `struct rp_legacy_checkpoint_record`: where a later range of a legacy
/// group's list starts, as the first range's walk saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LegacyCheckpointRecord {
    pub bgid: u16,
    /// The position of `node` in the list.
    pub index: u32,
    pub node: u64,
    /// The node at `index - 1`.
    pub prev: u64,
    /// The list's hash over positions `0..index`.
    pub fingerprint: u64,
}

/// Where a later range of a legacy group's list starts: what its request
/// carries back to the walk (from a [`LegacyCheckpointRecord`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct LegacyStart {
    pub head: u64,
    pub node: u64,
    pub prev: u64,
    pub fingerprint: u64,
}

/// `enum rp_legacy_list_state`: how a legacy list walk ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LegacyListState {
    /// Walked to its end: `length` is the whole list's.
    Whole,
    /// Longer than [`MAX_LEGACY_BUFFERS`].
    TooLong,
    /// A node could not be read.
    Broken,
    /// No such group now, or a buffer ring.
    NotLegacy,
    /// A later range that stopped after its buffers, before the head.
    Part,
    /// A later range whose start no longer follows its checkpoint's
    /// node, or whose group's list head moved.
    Moved,
}

/// `struct rp_thread_record`: one thread of the target (pass T).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ThreadRecord {
    pub tid: u32,
    pub status: ThreadStatus,
    pub occupied: u32,
}

/// `enum rp_thread_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ThreadStatus {
    Ok,
    UnknownLayout,
    Unreadable,
}

/// `struct rp_ring_fd_record`: one occupied registered ring-fd slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RingFdRecord {
    pub file: u64,
    pub f_op: u64,
    pub ctx: u64,
    pub inode_number: u64,
    pub tid: u32,
    pub offset: u32,
}

/// A record that does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MalformedRecord {
    /// Byte offset of the record's header in the stream.
    pub offset: usize,
    pub reason: String,
}

/// The records of one iterator's output, in order.
pub(crate) struct Records<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Records<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Records { bytes, offset: 0 }
    }

    fn malformed(&mut self, offset: usize, reason: impl Into<String>) -> MalformedRecord {
        // Stop after the first error: what follows cannot be framed.
        self.offset = self.bytes.len();
        MalformedRecord {
            offset,
            reason: reason.into(),
        }
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>, MalformedRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        let offset = self.offset;
        let rest = self.bytes.get(offset..)?;
        if rest.is_empty() {
            return None;
        }
        let (kind, size) = match read_struct::<records_h::rp_header>(rest) {
            Ok(header) => (header.kind, header.size as usize),
            Err(_) => {
                return Some(Err(self.malformed(
                    offset,
                    format!("truncated header ({} bytes left)", rest.len()),
                )))
            }
        };
        let Some(record) = rest.get(..size).filter(|_| size >= HEADER_LEN) else {
            return Some(Err(self.malformed(
                offset,
                format!("size {size} does not fit ({} bytes left)", rest.len()),
            )));
        };
        self.offset = offset + size;
        match parse_record(kind, record) {
            Ok(parsed) => Some(Ok(parsed)),
            Err(reason) => Some(Err(
                self.malformed(offset, format!("kind {kind}, size {size}: {reason}"))
            )),
        }
    }
}

/// Parses one whole record (header included) of `kind`.
fn parse_record(kind: u32, record: &[u8]) -> Result<Record<'_>, &'static str> {
    match kind {
        KIND_FD => parse_fd_record(record).map(Record::Fd),
        KIND_RING => {
            RingRecord::from_c(read_exact(record)?).map(|ring| Record::Ring(Box::new(ring)))
        }
        KIND_EVENTFD => Ok(Record::Eventfd(EventfdRecord::from_c(read_exact(record)?))),
        KIND_CHUNK => ChunkRecord::from_c(read_exact(record)?).map(Record::Chunk),
        KIND_FILE_SLOT => Ok(Record::FileSlot(FileSlotRecord::from_c(read_exact(
            record,
        )?))),
        KIND_BUFFER_SLOT => Ok(Record::BufferSlot(BufferSlotRecord::from_c(read_exact(
            record,
        )?))),
        KIND_PROBE => Ok(Record::Probe(ProbeRecord::from_c(read_exact(record)?))),
        KIND_OVERFLOW_CQE => Ok(Record::OverflowCqe(OverflowCqeRecord::from_c(read_exact(
            record,
        )?))),
        KIND_PENDING_REQUEST => {
            PendingRequestRecord::from_c(read_exact(record)?).map(Record::PendingRequest)
        }
        KIND_PERSONALITY => Ok(Record::Personality(PersonalityRecord::from_c(read_exact(
            record,
        )?))),
        KIND_PBUF_RING => PbufRingRecord::from_c(read_exact(record)?).map(Record::PbufRing),
        KIND_THREAD => {
            let raw: records_h::rp_thread_record = read_exact(record)?;
            let status = match records_h::rp_thread_status(raw.status) {
                records_h::rp_thread_status::RP_THREAD_OK => ThreadStatus::Ok,
                records_h::rp_thread_status::RP_THREAD_UNKNOWN_LAYOUT => {
                    ThreadStatus::UnknownLayout
                }
                records_h::rp_thread_status::RP_THREAD_UNREADABLE => ThreadStatus::Unreadable,
                _ => return Err("unknown thread status"),
            };
            if raw.occupied > RING_FD_SLOTS {
                return Err("more occupied ring-fd slots than a thread has");
            }
            Ok(Record::Thread(ThreadRecord {
                tid: raw.tid,
                status,
                occupied: raw.occupied,
            }))
        }
        KIND_RING_FD => {
            let raw: records_h::rp_ring_fd_record = read_exact(record)?;
            if raw.offset >= RING_FD_SLOTS {
                return Err("ring-fd offset beyond the thread's slots");
            }
            Ok(Record::RingFd(RingFdRecord {
                file: raw.file,
                f_op: raw.f_op,
                ctx: raw.ctx,
                inode_number: raw.inode_number,
                tid: raw.tid,
                offset: raw.offset,
            }))
        }
        KIND_WALK_COUNTS => {
            let raw: records_h::rp_walk_counts_record = read_exact(record)?;
            Ok(Record::WalkCounts(WalkCountsRecord {
                ctx: raw.ctx,
                fd: raw.fd,
                status: ChunkStatus::from_raw(raw.status)?,
                personality_count: (raw.state_known & STATE_PERSONALITIES != 0)
                    .then_some(raw.personality_count),
                pbuf_count: (raw.state_known & STATE_PBUF_RINGS != 0).then_some(raw.pbuf_count),
            }))
        }
        KIND_LEGACY_BUFFER => {
            let raw: records_h::rp_legacy_buffer_record = read_exact(record)?;
            Ok(Record::LegacyBuffer(LegacyBufferRecord {
                bgid: u16::try_from(raw.bgid).map_err(|_| "buffer group id beyond 16 bits")?,
                index: raw.index,
                buffer: ringplan_image::LegacyBuffer {
                    addr: raw.addr,
                    len: raw.len,
                    bid: u16::try_from(raw.bid).map_err(|_| "bid beyond 16 bits")?,
                },
            }))
        }
        KIND_LEGACY_LIST => {
            let raw: records_h::rp_legacy_list_record = read_exact(record)?;
            let state = match records_h::rp_legacy_list_state(raw.state) {
                records_h::rp_legacy_list_state::RP_LEGACY_LIST_WHOLE => LegacyListState::Whole,
                records_h::rp_legacy_list_state::RP_LEGACY_LIST_TOO_LONG => {
                    LegacyListState::TooLong
                }
                records_h::rp_legacy_list_state::RP_LEGACY_LIST_BROKEN => LegacyListState::Broken,
                records_h::rp_legacy_list_state::RP_LEGACY_LIST_NOT_LEGACY => {
                    LegacyListState::NotLegacy
                }
                records_h::rp_legacy_list_state::RP_LEGACY_LIST_PART => LegacyListState::Part,
                records_h::rp_legacy_list_state::RP_LEGACY_LIST_MOVED => LegacyListState::Moved,
                _ => return Err("unknown legacy list state"),
            };
            if raw.written > LEGACY_BUFFERS_PER_CHUNK {
                return Err("more legacy buffers written than a request reads");
            }
            Ok(Record::LegacyList(LegacyListRecord {
                ctx: raw.ctx,
                fd: raw.fd,
                status: ChunkStatus::from_raw(raw.status)?,
                bgid: u16::try_from(raw.bgid).map_err(|_| "buffer group id beyond 16 bits")?,
                start: raw.start,
                written: raw.written,
                length: raw.length,
                fingerprint: raw.fingerprint,
                head: raw.head,
                next: raw.next,
                visited: raw.visited,
                state,
            }))
        }
        KIND_PENDING_LIST => {
            let raw: records_h::rp_pending_list_record = read_exact(record)?;
            Ok(Record::PendingList(PendingListRecord {
                ctx: raw.ctx,
                fd: raw.fd,
                status: ChunkStatus::from_raw(raw.status)?,
                listed: (raw.state_known & STATE_PENDING != 0).then_some(raw.listed),
            }))
        }
        KIND_NAPI_ID => {
            let raw: records_h::rp_napi_id_record = read_exact(record)?;
            Ok(Record::NapiId(NapiIdRecord {
                ctx: raw.ctx,
                napi_id: raw.napi_id,
                index: raw.index,
            }))
        }
        KIND_NAPI_LIST => {
            let raw: records_h::rp_napi_list_record = read_exact(record)?;
            Ok(Record::NapiList(NapiListRecord {
                ctx: raw.ctx,
                fd: raw.fd,
                status: ChunkStatus::from_raw(raw.status)?,
                listed: (raw.whole != 0).then_some(raw.listed),
            }))
        }
        KIND_LEGACY_CHECKPOINT => {
            let raw: records_h::rp_legacy_checkpoint_record = read_exact(record)?;
            Ok(Record::LegacyCheckpoint(LegacyCheckpointRecord {
                bgid: u16::try_from(raw.bgid).map_err(|_| "buffer group id beyond 16 bits")?,
                index: raw.index,
                node: raw.node,
                prev: raw.prev,
                fingerprint: raw.fingerprint,
            }))
        }
        _ => Err("unknown kind"),
    }
}

/// A record of a fixed-size kind, which must be exactly its struct.
fn read_exact<T: HeaderStruct>(record: &[u8]) -> Result<T, &'static str> {
    if record.len() != size_of::<T>() {
        return Err("wrong size for its kind");
    }
    read_struct(record)
}

/// An fd record and the path that follows it.
fn parse_fd_record(record: &[u8]) -> Result<FdRecord<'_>, &'static str> {
    if record.len() < FD_RECORD_LEN {
        return Err("shorter than an fd record");
    }
    let raw: records_h::rp_fd_record = read_struct(record)?;
    // A negative length is d_path's error: no path, nothing follows.
    let path_len = usize::try_from(raw.path_len).unwrap_or(0);
    if path_len > PATH_MAX {
        return Err("path longer than PATH_MAX");
    }
    if record.len() != FD_RECORD_LEN + path_len {
        return Err("wrong size for its kind");
    }
    let path = if path_len == 0 {
        None
    } else {
        Some(record.get(FD_RECORD_LEN..).ok_or("truncated")?)
    };
    Ok(FdRecord {
        file: raw.file,
        f_op: raw.f_op,
        private_data: raw.private_data,
        pos: raw.pos,
        inode_number: raw.inode_number,
        fd: raw.fd,
        flags: raw.flags,
        mode: raw.mode,
        role: Role::from_raw(raw.role)?,
        cloexec: raw.cloexec != 0,
        path,
    })
}

impl RingRecord {
    fn from_c(raw: records_h::rp_ring_record) -> Result<RingRecord, &'static str> {
        Ok(RingRecord {
            ctx: raw.ctx,
            sq_data: raw.sq_data,
            eventfd_ctx: raw.eventfd_ctx,
            eventfd_count: raw.eventfd_count,
            inode_number: raw.inode_number,
            fd: raw.fd,
            flags: raw.flags,
            sq_entries: raw.sq_entries,
            cq_entries: raw.cq_entries,
            sq_thread_idle_jiffies: raw.sq_thread_idle,
            sq_cpu: raw.sq_cpu,
            eventfd_async: raw.eventfd_async != 0,
            eventfd_flags: raw.eventfd_flags,
            file_slots: raw.file_slots,
            buffer_slots: raw.buffer_slots,
            layout: Layout::from_raw(raw.layout)?,
            status: ChunkStatus::from_raw(raw.status)?,
            positions: (raw.state_known & STATE_POSITIONS != 0).then_some(RingPositions {
                sq_head: raw.sq_head,
                sq_tail: raw.sq_tail,
                cached_sq_head: raw.cached_sq_head,
                cq_head: raw.cq_head,
                cq_tail: raw.cq_tail,
                cached_cq_tail: raw.cached_cq_tail,
                sq_dropped: raw.sq_dropped,
                cq_overflow: raw.cq_overflow,
                sq_flags: raw.sq_flags,
                cq_flags: raw.cq_flags,
            }),
            owner_tid: if raw.state_known & STATE_OWNER != 0 {
                Known::Known((raw.owner_tid != 0).then_some(raw.owner_tid))
            } else {
                Known::Unknown
            },
            overflow_listed: (raw.state_known & STATE_OVERFLOW != 0).then_some(raw.overflow_listed),
            rings_page: raw.rings_page,
            sqes_page: raw.sqes_page,
            page_struct_size: raw.page_struct_size,
            in_flight: if raw.state_known & STATE_ALLOCATED != 0 {
                InFlightCounters::Allocated {
                    allocated: raw.nr_req_allocated,
                    free_cached: raw.free_cached,
                }
            } else if raw.state_known & STATE_DRAIN_SEQUENCE != 0 {
                InFlightCounters::DrainSequence {
                    cq_extra: raw.cq_extra,
                    drain_disabled: raw.drain_disabled != 0,
                }
            } else {
                InFlightCounters::Unknown
            },
            personalities: (raw.state_known & STATE_PERSONALITIES != 0)
                .then_some((raw.personality_count, raw.personality_next)),
            personality_next: raw.personality_next,
            to_walk: ToWalk {
                personalities: raw.state_known & STATE_PERSONALITIES_TO_WALK != 0,
                pbuf_rings: raw.state_known & STATE_PBUF_RINGS_TO_WALK != 0,
            },
            restrictions: (raw.state_known & STATE_RESTRICTIONS != 0).then_some(RestrictionWords {
                register_op: raw.restriction_register_op,
                sqe_op: raw.restriction_sqe_op,
                sqe_flags_allowed: (raw.restriction_flags & 0xff) as u8,
                sqe_flags_required: ((raw.restriction_flags >> 8) & 0xff) as u8,
                registered: raw.restriction_flags & (1 << 16) != 0,
            }),
            pbuf_count: (raw.state_known & STATE_PBUF_RINGS != 0).then_some(raw.pbuf_count),
            settings: (raw.state_known & STATE_SETTINGS != 0).then_some(SettingsWords {
                file_alloc_start: raw.file_alloc_start,
                file_alloc_end: raw.file_alloc_end,
                iowq_limits: raw.iowq_limits,
                napi_busy_poll_dt: raw.napi_busy_poll_dt,
                napi_track_mode: raw.napi_track_mode,
                wait_region_size: raw.wait_region_size,
                iowq_cpus: raw.iowq_cpus,
                iowq_tid: raw.iowq_tid,
                wait_region_page: raw.wait_region_page,
                bits: raw.settings,
            }),
        })
    }
}

impl PendingRequestRecord {
    fn from_c(
        raw: records_h::rp_pending_request_record,
    ) -> Result<PendingRequestRecord, &'static str> {
        use crate::raw::PendingKind;
        use records_h::rp_pending_where as w;
        let waits_in = match w(raw.r#where) {
            w::RP_PENDING_POLL => PendingKind::Poll,
            w::RP_PENDING_TIMEOUT => PendingKind::Timeout,
            w::RP_PENDING_LINKED_TIMEOUT => PendingKind::LinkedTimeout,
            _ => return Err("unknown pending request place"),
        };
        Ok(PendingRequestRecord {
            ctx: raw.ctx,
            index: raw.index,
            user_data: raw.user_data,
            opcode: u8::try_from(raw.opcode).map_err(|_| "opcode past 255")?,
            waits_in,
        })
    }
}

impl PbufRingRecord {
    fn from_c(raw: records_h::rp_pbuf_ring_record) -> Result<PbufRingRecord, &'static str> {
        Ok(PbufRingRecord {
            index: raw.index,
            bgid: u16::try_from(raw.bgid).map_err(|_| "buffer group id beyond 16 bits")?,
            entries: raw.entries,
            head: u16::try_from(raw.head).map_err(|_| "buffer ring head beyond 16 bits")?,
            is_ring: raw.kind & PBUF_RING != 0,
            kernel_memory: raw.kind & PBUF_KERNEL_MEMORY != 0,
            incremental: raw.kind & PBUF_INCREMENTAL != 0,
            first_page: raw.first_page,
            tail: (raw.kind & PBUF_TAIL != 0)
                .then(|| u16::try_from(raw.tail).ok())
                .flatten(),
        })
    }
}

impl PersonalityRecord {
    fn from_c(raw: records_h::rp_personality_record) -> PersonalityRecord {
        // More groups than the record carries: the groups are unknown.
        let groups = u32::try_from(raw.ngroups)
            .ok()
            .filter(|count| *count <= MAX_GROUPS)
            .map(|count| raw.groups[..count as usize].to_vec());
        PersonalityRecord {
            index: raw.index,
            personality: ringplan_image::Personality {
                id: raw.id,
                uid: raw.uid,
                euid: raw.euid,
                suid: raw.suid,
                fsuid: raw.fsuid,
                gid: raw.gid,
                egid: raw.egid,
                sgid: raw.sgid,
                fsgid: raw.fsgid,
                groups,
                cap_inheritable: raw.cap_inheritable,
                cap_permitted: raw.cap_permitted,
                cap_effective: raw.cap_effective,
                cap_bounding: raw.cap_bounding,
                cap_ambient: raw.cap_ambient,
            },
        }
    }
}

impl OverflowCqeRecord {
    fn from_c(raw: records_h::rp_overflow_cqe_record) -> OverflowCqeRecord {
        OverflowCqeRecord {
            ctx: raw.ctx,
            index: raw.index,
            user_data: raw.user_data,
            res: raw.res,
            flags: raw.flags,
            extra: raw.extra,
        }
    }
}

impl EventfdRecord {
    fn from_c(raw: records_h::rp_eventfd_record) -> EventfdRecord {
        EventfdRecord {
            ctx: raw.ctx,
            count: raw.count,
            flags: raw.flags,
            fd: raw.fd,
        }
    }
}

impl ChunkRecord {
    fn from_c(raw: records_h::rp_chunk_record) -> Result<ChunkRecord, &'static str> {
        Ok(ChunkRecord {
            ctx: raw.ctx,
            fd: raw.fd,
            table: Table::from_raw(raw.table)?,
            start: raw.start,
            scanned: raw.scanned,
            table_size: raw.table_size,
            status: ChunkStatus::from_raw(raw.status)?,
            sq_thread_idle_jiffies: raw.sq_thread_idle,
            layout: Layout::from_raw(raw.layout)?,
        })
    }
}

impl FileSlotRecord {
    fn from_c(raw: records_h::rp_file_slot_record) -> FileSlotRecord {
        FileSlotRecord {
            file: raw.file,
            f_op: raw.f_op,
            private_data: raw.private_data,
            pos: raw.pos,
            eventfd_count: raw.eventfd_count,
            index: raw.index,
            flags: raw.flags,
            mode: raw.mode,
            eventfd_flags: raw.eventfd_flags,
            tag: raw.tag,
        }
    }
}

impl BufferSlotRecord {
    fn from_c(raw: records_h::rp_buffer_slot_record) -> BufferSlotRecord {
        BufferSlotRecord {
            addr: raw.addr,
            len: raw.len,
            index: raw.index,
            kernel_buffer: raw.kernel_buffer != 0,
            tag: raw.tag,
        }
    }
}

impl ProbeRecord {
    fn from_c(raw: records_h::rp_probe_record) -> ProbeRecord {
        ProbeRecord {
            f_op: raw.f_op,
            fd: raw.fd,
        }
    }
}

/// The value of the chunk_requests map for one request, a
/// `struct rp_chunk_request` (`table`, `start` and `count` matter only to
/// chunk and legacy-buffers requests, `legacy` (the group and where a
/// later range starts) only to the latter).
pub(crate) fn chunk_request_bytes(
    expected_ctx: u64,
    by_pointer: bool,
    kind: RequestKind,
    table: Table,
    start: u32,
    count: u32,
    (bgid, legacy): (u16, LegacyStart),
) -> [u8; CHUNK_REQUEST_LEN] {
    let request = records_h::rp_chunk_request {
        expected_ctx,
        table: table.to_raw(),
        start,
        count,
        kind: kind.to_raw(),
        by_pointer: u32::from(by_pointer),
        bgid: u32::from(bgid),
        legacy_head: legacy.head,
        legacy_node: legacy.node,
        legacy_prev: legacy.prev,
        legacy_fingerprint: legacy.fingerprint,
    };
    let mut value = [0u8; CHUNK_REQUEST_LEN];
    value.copy_from_slice(struct_bytes(&request));
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_programs_uapi_values_are_the_kernels() {
        assert_eq!(
            records_h::rp_uapi::RP_IORING_SETUP_CQE32.0,
            ringplan_kernel::abi::SetupFlags::CQE32.bits()
        );
    }

    fn header(kind: u32, size: usize) -> Vec<u8> {
        let header = records_h::rp_header {
            kind,
            size: u32::try_from(size).unwrap_or(u32::MAX),
        };
        struct_bytes(&header).to_vec()
    }

    fn fd_record(path: &[u8]) -> Vec<u8> {
        let record = records_h::rp_fd_record {
            header: records_h::rp_header {
                kind: KIND_FD,
                size: u32::try_from(FD_RECORD_LEN + path.len()).unwrap_or(u32::MAX),
            },
            file: 0xffff_8880_0000_1000,
            f_op: 0xffff_ffff_8200_0000,
            private_data: 0,
            pos: 17,
            inode_number: 42,
            fd: 3,
            flags: 0o2,
            mode: 0o100644,
            role: records_h::rp_file_role::RP_ROLE_PLAIN.0,
            cloexec: 1,
            path_len: i32::try_from(path.len()).unwrap_or(i32::MAX),
        };
        let mut bytes = struct_bytes(&record).to_vec();
        bytes.extend_from_slice(path);
        bytes
    }

    #[test]
    fn parses_an_fd_record_with_its_path() {
        let bytes = fd_record(b"/tmp/x");
        let records: Vec<_> = Records::new(&bytes).collect();
        assert_eq!(records.len(), 1);
        let Ok(Record::Fd(fd)) = &records[0] else {
            panic!("not an fd record: {records:?}")
        };
        assert_eq!(fd.fd, 3);
        assert_eq!(fd.f_op, 0xffff_ffff_8200_0000);
        assert_eq!(fd.pos, 17);
        assert_eq!(fd.inode_number, 42);
        assert!(fd.cloexec);
        assert_eq!(fd.path, Some(&b"/tmp/x"[..]));
    }

    #[test]
    fn truncated_and_oversized_records_are_errors_not_panics() {
        let bytes = fd_record(b"/tmp/x");
        for cut in 0..bytes.len() {
            let results: Vec<_> = Records::new(&bytes[..cut]).collect();
            if cut == 0 {
                assert!(results.is_empty());
            } else {
                assert!(
                    results.iter().any(Result::is_err),
                    "cut at {cut} parsed: {results:?}"
                );
            }
        }
        let mut lying = header(KIND_RING, 4);
        lying.extend_from_slice(&[0; 8]);
        assert!(Records::new(&lying).next().is_some_and(|r| r.is_err()));
        let unknown = header(99, 8);
        assert!(Records::new(&unknown).next().is_some_and(|r| r.is_err()));
    }

    #[test]
    fn errors_stop_the_stream() {
        let mut bytes = header(99, 8);
        bytes.extend(fd_record(b"/a"));
        let results: Vec<_> = Records::new(&bytes).collect();
        assert_eq!(results.len(), 1);
        assert!(results[0].is_err());
    }
}
