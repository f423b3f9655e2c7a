//! Which rings a plan restores continuously (their memory at the program's
//! addresses, their positions, their pending entries), and the parameters
//! of their continuity steps, read from each ring's recorded state. No I/O.
//!
//! A ring is restored continuously when the image has its state (a BPF
//! dump of image version 2) and the program saw its memory somewhere: at
//! its mappings of the ring fd, or at the memory it gave the kernel
//! (`IORING_SETUP_NO_MMAP`). A ring without state (image version 1, the
//! fdinfo backend) is restored as before, its kernel objects only.

use ringplan_image::{Ring, RingRegion, RingState, StateField, UserRegion};
use ringplan_kernel::abi::SetupFlags;

use crate::error::CompileError;
use crate::model::{Handle, MemoryOrigin, PlaceRingMemory, QueueSqes, RestoreCompletions};

/// The handle a continuity op carries until emission gives it the ring's.
const UNRESOLVED: Handle = Handle(u32::MAX);

/// A ring's continuity steps, their ring handles not yet resolved.
#[derive(Debug, Clone)]
pub(crate) struct RingContinuity {
    pub memory: PlaceRingMemory,
    /// `None` when a new ring already is where the recorded one was (all
    /// positions 0, nothing pending, counters 0).
    pub completions: Option<RestoreCompletions>,
    /// `None` without an SQ array and without queued SQEs.
    pub queue: Option<QueueSqes>,
    pub owner_tid: Option<u32>,
}

impl RingContinuity {
    /// The `restore_completions` op for the ring at `ring_handle`.
    pub fn completions_op(&self, ring_handle: Handle) -> Option<RestoreCompletions> {
        self.completions.clone().map(|mut op| {
            op.ring_handle = ring_handle;
            op
        })
    }

    /// The `queue_sqes` op for the ring at `ring_handle`.
    pub fn queue_op(&self, ring_handle: Handle) -> Option<QueueSqes> {
        self.queue.clone().map(|mut op| {
            op.ring_handle = ring_handle;
            op
        })
    }
}

/// The continuity of ring `ring` (object `id`): `None` when it is restored
/// without (no state, or no memory the program saw), an error when its
/// state is too incomplete to restore it faithfully.
pub(crate) fn ring_continuity(
    id: ringplan_image::ObjectId,
    ring: &Ring,
) -> Result<Option<RingContinuity>, CompileError> {
    let Some(state) = ring.state.as_deref() else {
        return Ok(None);
    };
    let impossible = |reason: String| CompileError::ContinuityImpossible { ring: id, reason };
    for (field, what) in [
        (StateField::Entries, "its queued SQEs and unconsumed CQEs"),
        (StateField::Overflow, "its CQ overflow list"),
    ] {
        if state.unknown.contains(&field) {
            return Err(impossible(format!(
                "{what} are unknown (the dump could not read them)"
            )));
        }
    }
    let flags = ring.setup.flags.unwrap_or(0);
    if flags & SetupFlags::CQE_MIXED.bits() != 0 {
        return Err(impossible(
            "the completions of an IORING_SETUP_CQE_MIXED ring are not restored yet".to_owned(),
        ));
    }
    if let Some(position) = state
        .overflow
        .iter()
        .flatten()
        .position(|cqe| cqe.extra.is_some_and(|extra| extra != [0, 0]))
    {
        return Err(impossible(format!(
            "overflowed CQE {position} has extra words, which IORING_OP_MSG_RING cannot post"
        )));
    }
    let positions = &state.positions;
    if positions.cached_cq_tail != positions.cq_tail {
        return Err(impossible(format!(
            "the kernel's CQ tail {} is ahead of the published tail {}: the dump caught completions being posted",
            positions.cached_cq_tail, positions.cq_tail
        )));
    }
    let Some(memory) = placed_memory(ring, state).map_err(impossible)? else {
        return Ok(None);
    };
    // `register_pbuf_ring` moves the SQ head once per buffer it consumes
    // to bring a buffer ring's head back, `provide_buffers` once per SQE:
    // the completions stop that short.
    let consumed: u32 = ring
        .pbuf_rings
        .iter()
        .map(|entry| u32::from(entry.head))
        .sum();
    let provides: u32 = ring
        .legacy_buffer_groups
        .iter()
        .map(|group| crate::model::ProvideBuffersSqe::for_group(group).len() as u32)
        .sum();
    if consumed.saturating_add(provides) > positions.cached_sq_head {
        let head = positions.cached_sq_head;
        return Err(impossible(if provides == 0 {
            format!(
                "its buffer rings' heads add up to {consumed} consumed buffers, more than the {head} SQEs its SQ head \
                 counts (it wrapped, or a request consumed several): reads that consume them one each cannot bring \
                 both back"
            )
        } else {
            format!(
                "its buffer rings' heads add up to {consumed} consumed buffers and its legacy groups need {provides} \
                 PROVIDE_BUFFERS SQEs, more than the {head} SQEs its SQ head counts (it wrapped): SQEs that move it \
                 one each cannot bring both back"
            )
        }));
    }
    let consumed = consumed + provides;
    Ok(Some(RingContinuity {
        memory,
        completions: completions(state, consumed),
        queue: queue(ring, state),
        owner_tid: state.owner_tid,
    }))
}

/// Where the program saw the ring's memory: the memory it gave the kernel,
/// or its mappings of the ring fd. `None` when it mapped none of it.
fn placed_memory(ring: &Ring, state: &RingState) -> Result<Option<PlaceRingMemory>, String> {
    if state.memory.no_mmap {
        let (Some(rings), Some(sqes)) = (state.memory.rings, state.memory.sqes) else {
            return Err(
                "its rings live in memory the task provided, and the dump could not read where"
                    .to_owned(),
            );
        };
        return Ok(Some(PlaceRingMemory {
            rings: vec![rings],
            sqes,
            origin: MemoryOrigin::Program,
            lend: false,
        }));
    }
    let region = |wanted: RingRegion| {
        ring.mappings
            .iter()
            .filter(move |mapping| mapping.region == wanted)
            .map(|mapping| UserRegion {
                addr: mapping.addr,
                len: mapping.len,
            })
    };
    let rings: Vec<UserRegion> = region(RingRegion::SqRing)
        .chain(region(RingRegion::CqRing))
        .collect();
    let sqes: Vec<UserRegion> = region(RingRegion::Sqes).collect();
    match (rings.len(), sqes.as_slice()) {
        (0, []) => Ok(None),
        (1 | 2, [sqes]) => Ok(Some(PlaceRingMemory {
            rings,
            sqes: *sqes,
            origin: MemoryOrigin::Kernel,
            lend: false,
        })),
        (0, _) => Err("its SQEs are mapped but its rings are not".to_owned()),
        (_, []) => Err("its rings are mapped but its SQEs are not".to_owned()),
        (rings, sqes) => Err(format!(
            "the program mapped its rings {rings} times and its SQEs {} times; one memory shows at most at two addresses",
            sqes.len()
        )),
    }
}

/// The `restore_completions` op, its SQ head `consumed` short of the
/// recorded one (the reads that bring buffer rings' heads back move it).
fn completions(state: &RingState, consumed: u32) -> Option<RestoreCompletions> {
    let positions = &state.positions;
    let cqes = state.cqes.clone().unwrap_or_default();
    let overflow = state.overflow.clone().unwrap_or_default();
    let op = RestoreCompletions {
        ring_handle: UNRESOLVED,
        sq_head: positions.cached_sq_head - consumed,
        cq_head: positions.cq_head,
        cq_tail: positions.cq_tail,
        cqes,
        overflow,
        sq_dropped: positions.sq_dropped,
        cq_overflow: positions.cq_overflow,
        cq_flags: positions.cq_flags,
    };
    let at_start = (op.sq_head, op.cq_head, op.cq_tail) == (0, 0, 0)
        && op.cqes.is_empty()
        && op.overflow.is_empty()
        && (op.sq_dropped, op.cq_overflow, op.cq_flags) == (0, 0, 0);
    (!at_start).then_some(op)
}

fn queue(ring: &Ring, state: &RingState) -> Option<QueueSqes> {
    let sqes = state.sqes.clone().unwrap_or_default();
    let has_array = ring
        .setup
        .flags
        .is_some_and(|flags| flags & SetupFlags::NO_SQARRAY.bits() == 0);
    let sq_array = if has_array {
        state.sq_array.clone()
    } else {
        None
    };
    if sq_array.is_none() && sqes.is_empty() && state.unqueued_sqes.is_empty() {
        return None;
    }
    Some(QueueSqes {
        ring_handle: UNRESOLVED,
        sq_head: state.positions.cached_sq_head,
        sq_tail: state.positions.sq_tail,
        sq_array,
        sqes,
        unqueued_sqes: state.unqueued_sqes.clone(),
    })
}
