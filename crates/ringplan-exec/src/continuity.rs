//! The mechanics a continuous restore needs (issue 12), as plain functions
//! over addresses, sizes, flags, positions and entry bytes, each making real
//! syscalls. Plan ops that call them come later.
//!
//! - [`ContinuousRing::create`] (`ring.rs`, `memory.rs`): a ring whose rings
//!   and SQEs live in memory placed at given addresses with
//!   `MAP_FIXED_NOREPLACE` (`IORING_SETUP_NO_MMAP`, Linux 6.5+), the rings
//!   shown at one address or at two (one memfd mapped twice), laid out as
//!   the kernel lays out an mmap'd ring of the same sizes and flags
//!   ([`ring_layout`]).
//! - [`advance_positions`] (`positions.rs`): the kernel's private
//!   `cached_sq_head` and `cached_cq_tail` brought to given `u32` values with
//!   NOPs (`IOSQE_CQE_SKIP_SUCCESS` where only the SQ head moves) and, for a
//!   CQ tail ahead of the SQ head, `IORING_OP_MSG_RING` from a helper ring
//!   (`helper.rs`); progress reported through a callback.
//! - [`advance_pbuf_head`] (`pbuf_head.rs`): a new buffer ring's head
//!   brought to a recorded value by reads that consume its buffers, the
//!   program's memory put back after.
//! - `provide_buffers_in` (`legacy_buffers.rs`): a legacy buffer group's
//!   recorded buffers given again by `IORING_OP_PROVIDE_BUFFERS` SQEs that
//!   skip their CQEs, the SQE slots and SQ array put back after.
//! - [`restore_entries`] (`contents.rs`): queued SQEs, unconsumed CQEs and
//!   the kernel's CQ overflow list put back, after checking that they fit the
//!   ring and the positions, and that the kernel can reproduce them.
//!
//! Ownership: everything these functions create (memfds, mappings, the
//! ring, helper rings) is owned by a value that releases it when dropped, so
//! an error leaves the process as it found it; [`ContinuousRing::keep`]
//! hands the ring over for good (its memory stays mapped).
//!
//! The same mechanics run inside another process (`plan exec --pid`):
//! generic over the executor's `Backend`, with `io_uring_setup` and
//! `io_uring_enter` made there (in a `SINGLE_ISSUER` ring's owner thread),
//! the ring's memory read and written at the target's addresses
//! (`/proc/PID/mem`), the helper ring here sending `MSG_RING` to a copy of
//! the ring's fd (`pidfd_getfd`), and whatever the run made there released
//! through the backend (`release_in`) instead of by dropping.

mod contents;
mod error;
mod helper;
mod legacy_buffers;
mod memory;
mod pbuf_head;
mod plan_ops;
mod positions;
mod ring;
mod rings_view;

pub(crate) use contents::restore_completions_in;
pub use contents::{
    queue_sqes, restore_completions, restore_entries, OverflowCqe, QueuedSqe, RecordedCompletions,
    RecordedEntries, RecordedSubmissions, RingCounters,
};
pub use error::ContinuityError;
pub(crate) use legacy_buffers::provide_buffers_in;
pub(crate) use memory::{page_round, release_all, PlacedRegion, RING_MEMFD_NAME};
pub use memory::{Backing, PlacedMemory, RegionPlacement, RingPlacement};
pub(crate) use pbuf_head::advance_pbuf_head_in;
pub use pbuf_head::{advance_pbuf_head, PbufHeadTarget};
pub use plan_ops::{placement_of, ring_setup_of};
pub use positions::{advance_positions, Advanced, PositionTargets};
pub use ring::{
    kernel_supports_no_mmap, memory_sizes, ring_layout, ContinuousRing, RingLayout, RingSetup,
};
