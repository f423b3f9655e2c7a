//! Comparing a ring restored where the program left it: its memory's
//! addresses, positions, queued SQEs, unconsumed CQEs, overflow list,
//! counters and flags, against the original's recorded state.
//!
//! What must differ is said, not counted as a difference: the restored ring
//! has `IORING_SETUP_NO_MMAP` where the original did not (its memory is
//! placed, not the kernel's), its memory is not a mapping of the ring fd,
//! and a `SINGLE_ISSUER` ring belongs to the thread that ran the plan. A
//! ring with an SQ thread and queued SQEs cannot be compared past its SQ
//! head: a new SQ thread is awake and consumes them at once, as the
//! original's would have once woken.

use ringplan_image::{Ring, RingRegion, RingState, SetupFlags};
use ringplan_kernel::abi::continuity::IORING_SQ_CQ_OVERFLOW;

use super::differ::Differ;

/// Whether the planner restores `ring` where the program left it: it has a
/// state and the program saw its memory (the rule of
/// `ringplan_plan`'s continuity analysis).
pub(super) fn restored_continuously(ring: &Ring) -> bool {
    ring.state.is_some() && ring.program_saw_memory()
}

/// The setup flags a continuous restore gives `ring`.
pub(super) fn continuous_flags(ring: &Ring) -> Option<u32> {
    ring.setup
        .flags
        .map(|flags| flags | SetupFlags::NO_MMAP.bits())
}

/// Compares the state of a continuously restored ring; returns notes.
pub(super) fn compare_state(ring: &Ring, got: &Ring, differ: &mut Differ<'_>) -> Vec<String> {
    let mut notes = Vec::new();
    let Some(want) = ring.state.as_deref() else {
        return notes;
    };
    let Some(have) = got.state.as_deref() else {
        differ.differ("ring state", "recorded".to_owned(), "absent".to_owned());
        return notes;
    };
    compare_memory(ring, want, have, differ);
    let sqpoll = ring
        .setup
        .flags
        .is_some_and(|flags| flags & SetupFlags::SQPOLL.bits() != 0);
    let queued = want.positions.sq_tail != want.positions.cached_sq_head;
    let (w, h) = (&want.positions, &have.positions);
    let mut fields = vec![
        ("CQ head", w.cq_head, h.cq_head),
        ("sq_dropped", w.sq_dropped, h.sq_dropped),
        ("cq_overflow", w.cq_overflow, h.cq_overflow),
        ("cq_flags", w.cq_flags, h.cq_flags),
    ];
    if sqpoll && queued {
        notes.push(format!(
            "{} queued SQE(s) consumed by the new SQ thread, so its SQ and CQ are not compared past the SQ head",
            w.sq_tail.wrapping_sub(w.cached_sq_head)
        ));
        fields.push(("SQ tail", w.sq_tail, h.sq_tail));
    } else {
        fields.extend([
            ("SQ head", w.cached_sq_head, h.cached_sq_head),
            ("SQ tail", w.sq_tail, h.sq_tail),
            ("CQ tail", w.cached_cq_tail, h.cached_cq_tail),
            (
                "the CQ overflow flag",
                w.sq_flags & IORING_SQ_CQ_OVERFLOW,
                h.sq_flags & IORING_SQ_CQ_OVERFLOW,
            ),
        ]);
        compare_list("queued SQEs", &want.sqes, &have.sqes, differ);
        if want.unqueued_sqes != have.unqueued_sqes {
            let slots = |sqes: &[ringplan_image::SlotSqe]| {
                format!(
                    "{} slot(s) {:?}",
                    sqes.len(),
                    sqes.iter().map(|sqe| sqe.slot).collect::<Vec<_>>()
                )
            };
            differ.differ(
                "unqueued SQE slots (slots, or bytes)",
                slots(&want.unqueued_sqes),
                slots(&have.unqueued_sqes),
            );
        }
        compare_list("unconsumed CQEs", &want.cqes, &have.cqes, differ);
        compare_list("CQ overflow list", &want.overflow, &have.overflow, differ);
    }
    for (what, want, have) in fields {
        if want != have {
            differ.differ(what, want.to_string(), have.to_string());
        }
    }
    if want.sq_array.is_some() && have.sq_array.is_some() {
        compare_list("SQ array", &want.sq_array, &have.sq_array, differ);
    }
    if let (Some(recorded), Some(now)) = (want.owner_tid, have.owner_tid) {
        if recorded != now {
            notes.push(format!(
                "owned by thread {now}, which ran the plan (the original's owner was {recorded})"
            ));
        }
    }
    notes
}

fn compare_list<T: std::fmt::Debug + PartialEq>(
    what: &str,
    want: &Option<T>,
    have: &Option<T>,
    differ: &mut Differ<'_>,
) {
    if want != have {
        differ.differ(what, format!("{want:?}"), format!("{have:?}"));
    }
}

/// The memory the kernel was given is where the program saw the ring: the
/// original's own memory, or its mappings of the ring fd.
fn compare_memory(ring: &Ring, want: &RingState, have: &RingState, differ: &mut Differ<'_>) {
    let addr_of = |region: Option<ringplan_image::UserRegion>| region.map(|region| region.addr);
    let (rings, sqes) = (addr_of(have.memory.rings), addr_of(have.memory.sqes));
    let (want_rings, want_sqes): (Vec<u64>, Option<u64>) = if want.memory.no_mmap {
        (
            addr_of(want.memory.rings).into_iter().collect(),
            addr_of(want.memory.sqes),
        )
    } else {
        let at = |region: RingRegion| {
            ring.mappings
                .iter()
                .filter(move |mapping| mapping.region == region)
                .map(|mapping| mapping.addr)
        };
        (
            at(RingRegion::SqRing)
                .chain(at(RingRegion::CqRing))
                .collect(),
            at(RingRegion::Sqes).next(),
        )
    };
    if !rings.is_some_and(|addr| want_rings.contains(&addr)) {
        differ.differ(
            "ring memory address",
            format!("one of {want_rings:#x?}"),
            format!("{rings:#x?}"),
        );
    }
    if sqes != want_sqes {
        differ.differ(
            "SQE memory address",
            format!("{want_sqes:#x?}"),
            format!("{sqes:#x?}"),
        );
    }
}
