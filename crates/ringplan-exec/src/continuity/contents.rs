//! Putting a ring's pending entries back: queued SQEs (and their SQ array
//! entries) and unconsumed CQEs into their slots with the recorded bytes,
//! overflowed CQEs into the kernel's overflow list in order, at the
//! recorded positions. Everything is checked before anything is done.
//!
//! The overflow list is reached the way the kernel fills it: a CQE posted
//! into a full CQ ring goes there. The positions are advanced with the CQ
//! head held `cq_entries` behind the tail, the overflowed CQEs are posted
//! with `MSG_RING` (`IORING_MSG_DATA`: user_data = `off`, res = `len`;
//! `IORING_MSG_RING_FLAGS_PASS`: flags), then the head moves to its
//! recorded place. What `MSG_RING` cannot post is refused up front: the
//! extra words of a `CQE32` ring's overflowed CQEs.

use ringplan_kernel::abi::continuity::IORING_SQ_CQ_OVERFLOW;
use ringplan_kernel::abi::SetupFlags;

use super::error::ContinuityError;
use super::helper::{msg_ring_sqe, HelperRing, Message};
use super::positions::{advance_positions_in, Advanced, PositionTargets};
use super::ring::ContinuousRing;
use crate::backend::{Backend, InProcess};

/// The largest helper ring for overflow batches.
const HELPER_ENTRIES: u32 = 4096;

/// A queued SQE: the SQE slot it is in (the SQ array's value at its
/// position where the ring has an array; without one it must be the
/// position's own slot) and its bytes (one SQE, 64 or 128 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedSqe {
    pub index: u32,
    pub bytes: Vec<u8>,
}

/// A CQE in the kernel's overflow list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverflowCqe {
    pub user_data: u64,
    pub res: i32,
    pub flags: u32,
    /// The extra words of a `CQE32` ring (zero otherwise).
    pub extra: [u64; 2],
}

/// A ring's recorded positions and pending entries.
#[derive(Debug, Clone, Copy)]
pub struct RecordedEntries<'a> {
    /// The kernel's SQ head (`cached_sq_head`).
    pub sq_head: u32,
    /// The SQ tail the program wrote: `sq_tail - sq_head` queued SQEs.
    pub sq_tail: u32,
    /// The CQ head the program wrote.
    pub cq_head: u32,
    /// The kernel's CQ tail (`cached_cq_tail`): `cq_tail - cq_head`
    /// unconsumed CQEs.
    pub cq_tail: u32,
    /// The queued SQEs, from the SQ head on.
    pub queued: &'a [QueuedSqe],
    /// The unconsumed CQEs' bytes (16 or 32 each), from the CQ head on.
    pub unconsumed: &'a [Vec<u8>],
    /// The overflow list, oldest first.
    pub overflow: &'a [OverflowCqe],
}

/// Brings a new, empty ring to `recorded`: positions (with
/// [`advance_positions`], reporting progress), the overflow list, the
/// unconsumed CQEs, then the queued SQEs ([`restore_completions`], then
/// [`queue_sqes`], both checked before either runs). With an SQ thread,
/// queued SQEs are consumed as soon as the tail is written, as they would
/// have been in the original.
pub fn restore_entries(
    ring: &mut ContinuousRing,
    recorded: &RecordedEntries<'_>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Advanced, ContinuityError> {
    let completions = RecordedCompletions {
        sq_head: recorded.sq_head,
        cq_head: recorded.cq_head,
        cq_tail: recorded.cq_tail,
        unconsumed: recorded.unconsumed,
        overflow: recorded.overflow,
        counters: None,
    };
    let submissions = RecordedSubmissions {
        sq_head: recorded.sq_head,
        sq_tail: recorded.sq_tail,
        sq_array: None,
        queued: recorded.queued,
        unqueued: &[],
    };
    check_completions(ring, &completions)?;
    check_submissions(ring, &submissions)?;
    let advanced = restore_completions_in(ring, &mut InProcess, &completions, progress)?;
    queue_sqes(ring, &submissions)?;
    Ok(advanced)
}

/// What the program's memory holds beside positions and entries: counters
/// the kernel increments from their value in memory, and the flags the
/// program sets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingCounters {
    /// `rings->sq_dropped`.
    pub sq_dropped: u32,
    /// `rings->cq_overflow`: CQEs the kernel dropped.
    pub cq_overflow: u32,
    /// `rings->cq_flags` (`IORING_CQ_EVENTFD_DISABLED`).
    pub cq_flags: u32,
}

/// A ring's positions and its completions: what [`restore_completions`]
/// brings a new ring to.
#[derive(Debug, Clone, Copy)]
pub struct RecordedCompletions<'a> {
    /// The kernel's SQ head (`cached_sq_head`); the SQ tail ends here too.
    pub sq_head: u32,
    /// The CQ head the program wrote.
    pub cq_head: u32,
    /// The kernel's CQ tail (`cached_cq_tail`).
    pub cq_tail: u32,
    /// The unconsumed CQEs' bytes (16 or 32 each), from the CQ head on.
    pub unconsumed: &'a [Vec<u8>],
    /// The overflow list, oldest first.
    pub overflow: &'a [OverflowCqe],
    /// Written into the ring's memory at the end; left alone when `None`.
    pub counters: Option<RingCounters>,
}

/// A ring's queued submissions: what [`queue_sqes`] writes.
#[derive(Debug, Clone, Copy)]
pub struct RecordedSubmissions<'a> {
    /// The kernel's SQ head, where the ring's positions already are.
    pub sq_head: u32,
    /// The SQ tail the program wrote: `sq_tail - sq_head` queued SQEs.
    pub sq_tail: u32,
    /// The whole SQ array as the program's memory held it (`sq_entries`
    /// values): a program may fill it once at setup and never again, so it
    /// is put back whole. `None` leaves the array as it is (only the
    /// queued positions' entries are written).
    pub sq_array: Option<&'a [u32]>,
    /// The queued SQEs, from the SQ head on.
    pub queued: &'a [QueuedSqe],
    /// The other SQE slots the program's memory held with content (SQEs
    /// prepared and not published), written first: only the ring's memory
    /// remembers them.
    pub unqueued: &'a [QueuedSqe],
}

/// Brings a new, empty ring's positions to `recorded` with
/// [`advance_positions`] (reporting progress), puts the overflow list and
/// the unconsumed CQEs back, and writes the counters. The SQ tail ends at
/// the SQ head: queued SQEs come later ([`queue_sqes`]), once everything
/// they may name is registered.
pub fn restore_completions(
    ring: &mut ContinuousRing,
    recorded: &RecordedCompletions<'_>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Advanced, ContinuityError> {
    restore_completions_in(ring, &mut InProcess, recorded, progress)
}

/// [`restore_completions`] of a ring in the process `backend` acts in
/// (its `io_uring_enter` calls in the backend's thread).
pub(crate) fn restore_completions_in<B: Backend>(
    ring: &mut ContinuousRing<B>,
    backend: &mut B,
    recorded: &RecordedCompletions<'_>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Advanced, ContinuityError> {
    check_completions(ring, recorded)?;
    let cq_entries = ring.view.cq_entries;
    let holding_full = !recorded.overflow.is_empty();
    let targets = PositionTargets {
        sq_head: recorded.sq_head,
        cq_tail: recorded.cq_tail,
        cq_head: if holding_full {
            recorded.cq_tail.wrapping_sub(cq_entries)
        } else {
            recorded.cq_head
        },
    };
    let nothing_to_move = ring.positions_in_memory() == (0, 0, 0, 0)
        && (targets.sq_head, targets.cq_tail, targets.cq_head) == (0, 0, 0);
    let advanced = if nothing_to_move {
        // Also the only case a disabled ring allows.
        Advanced::default()
    } else {
        let advanced = advance_positions_in(ring, backend, &targets, progress)?;
        ring.view.clear_sqes();
        advanced
    };
    if holding_full {
        post_overflow(ring, backend, recorded.overflow)?;
    }
    let view = &ring.view;
    for (index, bytes) in recorded.unconsumed.iter().enumerate() {
        view.write_cqe(recorded.cq_head.wrapping_add(index as u32), bytes);
    }
    view.set_cq_head(recorded.cq_head);
    if let Some(counters) = recorded.counters {
        view.set_counters(counters.sq_dropped, counters.cq_overflow, counters.cq_flags);
    }
    view.check()?;
    Ok(advanced)
}

/// Writes the queued SQEs into their slots (and the SQ array, whole when
/// given), then publishes the recorded SQ tail. The ring's SQ head must be
/// at `recorded.sq_head` already.
pub fn queue_sqes<B: Backend>(
    ring: &mut ContinuousRing<B>,
    recorded: &RecordedSubmissions<'_>,
) -> Result<(), ContinuityError> {
    check_submissions(ring, recorded)?;
    let view = &ring.view;
    if view.sq_head() != recorded.sq_head || view.sq_tail() != recorded.sq_head {
        return Err(ContinuityError::Diverged(format!(
            "SQEs queued at position {} on a ring whose SQ head and tail are {} and {}",
            recorded.sq_head,
            view.sq_head(),
            view.sq_tail()
        )));
    }
    if let Some(array) = recorded.sq_array {
        view.set_array(array);
    }
    for sqe in recorded.unqueued {
        view.write_sqe(sqe.index, &sqe.bytes);
    }
    for (index, sqe) in recorded.queued.iter().enumerate() {
        let position = recorded.sq_head.wrapping_add(index as u32);
        if view.has_sq_array() {
            view.set_array_entry(position, sqe.index);
        }
        view.write_sqe(sqe.index, &sqe.bytes);
    }
    view.check()?;
    view.set_sq_tail(recorded.sq_tail);
    view.check()
}

/// What [`queue_sqes`] refuses without touching the ring.
fn check_submissions<B: Backend>(
    ring: &ContinuousRing<B>,
    recorded: &RecordedSubmissions<'_>,
) -> Result<(), ContinuityError> {
    let view = &ring.view;
    let bad = |problem: String| Err(ContinuityError::BadRequest(problem));
    let queued = recorded.sq_tail.wrapping_sub(recorded.sq_head);
    if queued > view.sq_entries || queued as usize != recorded.queued.len() {
        return bad(format!(
            "SQ head {} and tail {} need {queued} queued SQEs in a ring of {}; {} were given",
            recorded.sq_head,
            recorded.sq_tail,
            view.sq_entries,
            recorded.queued.len()
        ));
    }
    if let Some(array) = recorded.sq_array {
        if !view.has_sq_array() || array.len() != view.sq_entries as usize {
            return bad(format!(
                "an SQ array of {} entries does not fit this ring ({} entries, {})",
                array.len(),
                view.sq_entries,
                if view.has_sq_array() {
                    "with an SQ array"
                } else {
                    "without an SQ array"
                }
            ));
        }
    }
    for (index, sqe) in recorded.queued.iter().enumerate() {
        let position = recorded.sq_head.wrapping_add(index as u32);
        if sqe.bytes.len() != view.sqe_size {
            return bad(format!(
                "queued SQE {index} has {} bytes, not {}",
                sqe.bytes.len(),
                view.sqe_size
            ));
        }
        if sqe.index >= view.sq_entries
            || (!view.has_sq_array() && sqe.index != position & (view.sq_entries - 1))
        {
            return bad(format!(
                "queued SQE {index} (position {position}) cannot be in slot {} of this ring",
                sqe.index
            ));
        }
    }
    if let Some(sqe) = recorded
        .unqueued
        .iter()
        .find(|sqe| sqe.index >= view.sq_entries || sqe.bytes.len() != view.sqe_size)
    {
        return bad(format!(
            "an unqueued SQE of {} bytes cannot be in slot {} of this ring",
            sqe.bytes.len(),
            sqe.index
        ));
    }
    Ok(())
}

/// What [`restore_completions`] refuses without touching the ring.
fn check_completions<B: Backend>(
    ring: &ContinuousRing<B>,
    recorded: &RecordedCompletions<'_>,
) -> Result<(), ContinuityError> {
    let view = &ring.view;
    let bad = |problem: String| Err(ContinuityError::BadRequest(problem));
    let unconsumed = recorded.cq_tail.wrapping_sub(recorded.cq_head);
    if unconsumed > view.cq_entries || unconsumed as usize != recorded.unconsumed.len() {
        return bad(format!(
            "CQ head {} and tail {} need {unconsumed} unconsumed CQEs in a ring of {}; {} were given",
            recorded.cq_head,
            recorded.cq_tail,
            view.cq_entries,
            recorded.unconsumed.len()
        ));
    }
    if let Some((index, cqe)) = recorded
        .unconsumed
        .iter()
        .enumerate()
        .find(|(_, cqe)| cqe.len() != view.cqe_size)
    {
        return bad(format!(
            "unconsumed CQE {index} has {} bytes, not {}",
            cqe.len(),
            view.cqe_size
        ));
    }
    if let Some((index, cqe)) = recorded
        .overflow
        .iter()
        .enumerate()
        .find(|(_, cqe)| cqe.extra != [0, 0])
    {
        let why = if ring.flags.contains(SetupFlags::CQE32) {
            "IORING_OP_MSG_RING posts them as zero"
        } else {
            "the ring has no CQE32"
        };
        return Err(ContinuityError::CannotReproduce(format!(
            "overflowed CQE {index} (user_data {}): its extra words {:?}: {why}",
            cqe.user_data, cqe.extra
        )));
    }
    Ok(())
}

/// Posts `overflow` in order into the ring, which is full, so that each
/// lands in the kernel's overflow list.
fn post_overflow<B: Backend>(
    ring: &mut ContinuousRing<B>,
    backend: &mut B,
    overflow: &[OverflowCqe],
) -> Result<(), ContinuityError> {
    let tail = ring.view.cq_tail();
    let entries = (overflow.len().min(HELPER_ENTRIES as usize) as u32).max(1);
    let helper = HelperRing::new(entries)?;
    let target = ring.fd_here(backend)?;
    let ring = &*ring;
    let view = &ring.view;
    for chunk in overflow.chunks(helper.entries() as usize) {
        for (index, cqe) in chunk.iter().enumerate() {
            let message = Message {
                user_data: cqe.user_data,
                res: cqe.res,
                flags: cqe.flags,
            };
            helper.write_next(index as u32, &msg_ring_sqe(target, message));
        }
        helper.submit(chunk.len() as u32)?;
        if ring.flags.contains(SetupFlags::DEFER_TASKRUN) {
            view.run_task_work(&mut |to_submit, min_complete, flags| {
                ring.enter(backend, to_submit, min_complete, flags)
            })?;
        }
    }
    if view.cq_tail() != tail || view.sq_flags() & IORING_SQ_CQ_OVERFLOW == 0 {
        return Err(ContinuityError::Diverged(format!(
            "the overflowed CQEs did not go to the overflow list (CQ tail {} -> {}, SQ flags {:#x})",
            tail,
            view.cq_tail(),
            view.sq_flags()
        )));
    }
    Ok(())
}
