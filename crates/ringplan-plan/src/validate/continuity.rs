//! Checks of the continuity ops (`place_ring_memory`, `restore_completions`,
//! `queue_sqes`) and of a `setup_ring` on placed memory: each against the
//! ring it acts on, and their order around the ring's other steps.

use ringplan_image::{Cqe, SetupFlags};
use ringplan_kernel::abi::continuity::{cqe_size, sqe_size};

use super::{Checker, Expected, PlanInvalid};
use crate::model::*;
use crate::rules::check_memory_range;

/// Per-step marks (`Checker::marks`), set on the step that defines a ring
/// handle or places memory.
pub(super) mod mark {
    /// A ring set up on placed memory.
    pub const CONTINUOUS: u8 = 1;
    /// Its completions were restored.
    pub const COMPLETIONS: u8 = 1 << 1;
    /// Its eventfd was registered.
    pub const EVENTFD: u8 = 1 << 2;
    /// Its SQEs were queued.
    pub const QUEUED: u8 = 1 << 3;
    /// Placed memory that a ring was set up on.
    pub const MEMORY_USED: u8 = 1 << 4;
}

impl Checker<'_> {
    fn bad(index: usize, step: &Step, problem: String) -> PlanInvalid {
        PlanInvalid::BadOperands {
            step: index,
            op: step.op.name(),
            problem,
        }
    }

    pub(super) fn check_place_memory(
        &mut self,
        index: usize,
        step: &Step,
        memory: &PlaceRingMemory,
    ) -> Result<(), PlanInvalid> {
        super::require_object(index, step)?;
        if memory.rings.is_empty() || memory.rings.len() > 2 {
            return Err(Self::bad(
                index,
                step,
                format!(
                    "shows the rings at {} addresses; one memory shows at one or two",
                    memory.rings.len()
                ),
            ));
        }
        let ranges = memory
            .rings
            .iter()
            .map(|range| ("rings", ringplan_image::RingRegion::SqRing, range))
            .chain(std::iter::once((
                "SQEs",
                ringplan_image::RingRegion::Sqes,
                &memory.sqes,
            )));
        for (what, region, range) in ranges {
            let len = check_memory_range(what, range)
                .map_err(|problem| Self::bad(index, step, format!("memory {problem}")))?;
            self.mappings.push((range.addr, len, index, region));
        }
        Ok(())
    }

    /// A ring on placed memory: the memory is an earlier, unused
    /// `place_ring_memory` of the same object, waited for.
    pub(super) fn check_setup_memory(
        &mut self,
        index: usize,
        step: &Step,
        memory: StepIndex,
    ) -> Result<(), PlanInvalid> {
        let place = memory as usize;
        let placed = self.plan.steps.get(place).filter(|_| place < index);
        let Some(placed) = placed else {
            return Err(Self::bad(
                index,
                step,
                format!("its memory, step {memory}, does not come before it"),
            ));
        };
        if !matches!(placed.op, Op::PlaceRingMemory(_)) || placed.object != step.object {
            return Err(Self::bad(
                index,
                step,
                format!("step {memory} does not place memory for this ring"),
            ));
        }
        if step.after.binary_search(&memory).is_err() {
            return Err(Self::bad(
                index,
                step,
                format!("does not wait for its memory, step {memory}"),
            ));
        }
        if self.marks[place] & mark::MEMORY_USED != 0 {
            return Err(Self::bad(
                index,
                step,
                format!("the memory of step {memory} already holds another ring"),
            ));
        }
        self.marks[place] |= mark::MEMORY_USED;
        self.marks[index] |= mark::CONTINUOUS;
        Ok(())
    }

    /// The ring a continuity op acts on: a continuous ring, used as a
    /// handle; returns its setup.
    pub(super) fn continuous_ring(
        &mut self,
        index: usize,
        step: &Step,
        handle: Handle,
    ) -> Result<&SetupRing, PlanInvalid> {
        self.use_handle(index, step, handle, Expected::Ring)?;
        self.require_same_object(index, step, handle)?;
        let defining = &self.plan.steps[handle.0 as usize];
        match &defining.op {
            Op::SetupRing(setup) if self.marks[handle.0 as usize] & mark::CONTINUOUS != 0 => {
                Ok(setup)
            }
            _ => Err(Self::bad(
                index,
                step,
                format!("{handle} is not a ring set up on placed memory"),
            )),
        }
    }

    pub(super) fn check_restore_completions(
        &mut self,
        index: usize,
        step: &Step,
        restore: &RestoreCompletions,
    ) -> Result<(), PlanInvalid> {
        let ring = restore.ring_handle.0 as usize;
        let setup = self.continuous_ring(index, step, restore.ring_handle)?;
        let problem = completions_problem(setup, restore);
        if let Some(problem) = problem {
            return Err(Self::bad(index, step, problem));
        }
        let marks = self.marks[ring];
        let out_of_order = if marks & mark::COMPLETIONS != 0 {
            Some("restores the ring's completions a second time")
        } else if marks & mark::EVENTFD != 0 {
            Some("comes after the ring's eventfd is registered (its NOPs would count on it)")
        } else if marks & mark::QUEUED != 0 {
            Some("comes after the ring's SQEs are queued")
        } else {
            None
        };
        if let Some(problem) = out_of_order {
            return Err(Self::bad(index, step, problem.to_owned()));
        }
        self.marks[ring] |= mark::COMPLETIONS;
        Ok(())
    }

    pub(super) fn check_queue_sqes(
        &mut self,
        index: usize,
        step: &Step,
        queue: &QueueSqes,
    ) -> Result<(), PlanInvalid> {
        let ring = queue.ring_handle.0 as usize;
        let setup = self.continuous_ring(index, step, queue.ring_handle)?;
        if let Some(problem) = queue_problem(setup, queue) {
            return Err(Self::bad(index, step, problem));
        }
        if self.marks[ring] & mark::QUEUED != 0 {
            return Err(Self::bad(
                index,
                step,
                "queues the ring's SQEs a second time".to_owned(),
            ));
        }
        let expected_head = self.completions_sq_head.get(&queue.ring_handle.0).copied();
        if queue.sq_head != expected_head.unwrap_or(0) {
            return Err(Self::bad(
                index,
                step,
                format!(
                    "queues at SQ head {} but the ring's head is {}",
                    queue.sq_head,
                    expected_head.unwrap_or(0)
                ),
            ));
        }
        self.marks[ring] |= mark::QUEUED;
        Ok(())
    }

    /// A registration on a continuous ring after its SQEs were queued, or
    /// an eventfd registration (noted for `restore_completions`).
    pub(super) fn note_registration(
        &mut self,
        index: usize,
        step: &Step,
        ring_handle: Handle,
        is_eventfd: bool,
    ) -> Result<(), PlanInvalid> {
        let Some(marks) = self.marks.get_mut(ring_handle.0 as usize) else {
            return Ok(());
        };
        if *marks & mark::QUEUED != 0 {
            return Err(Self::bad(
                index,
                step,
                "comes after the ring's SQEs are queued (an SQ thread may have consumed them)"
                    .to_owned(),
            ));
        }
        if is_eventfd {
            *marks |= mark::EVENTFD;
        }
        Ok(())
    }
}

/// What a `restore_completions` cannot do to a ring of `setup`.
fn completions_problem(setup: &SetupRing, restore: &RestoreCompletions) -> Option<String> {
    let unconsumed = restore.cq_tail.wrapping_sub(restore.cq_head);
    if unconsumed > setup.cq_entries || unconsumed as usize != restore.cqes.len() {
        return Some(format!(
            "CQ head {} and tail {} need {unconsumed} unconsumed CQEs in a CQ of {}; {} are listed",
            restore.cq_head,
            restore.cq_tail,
            setup.cq_entries,
            restore.cqes.len()
        ));
    }
    let Some(size) = cqe_size(setup.flags) else {
        return Some("the CQEs of an IORING_SETUP_CQE_MIXED ring cannot be restored".to_owned());
    };
    let lists: [(&str, &[Cqe]); 2] = [
        ("CQE", &restore.cqes),
        ("overflowed CQE", &restore.overflow),
    ];
    for (what, list) in lists {
        for (position, cqe) in list.iter().enumerate() {
            if cqe.extra.is_some() != (size == 32) {
                return Some(format!(
                    "{what} {position} {} the extra words of IORING_SETUP_CQE32",
                    if cqe.extra.is_some() { "has" } else { "lacks" }
                ));
            }
        }
    }
    if let Some(position) = restore
        .overflow
        .iter()
        .position(|cqe| cqe.extra.is_some_and(|extra| extra != [0, 0]))
    {
        return Some(format!(
            "overflowed CQE {position} has extra words, which IORING_OP_MSG_RING cannot post"
        ));
    }
    None
}

/// What a `queue_sqes` cannot do to a ring of `setup`.
fn queue_problem(setup: &SetupRing, queue: &QueueSqes) -> Option<String> {
    let entries = setup.sq_entries;
    let queued = queue.sq_tail.wrapping_sub(queue.sq_head);
    if queued > entries || queued as usize != queue.sqes.len() {
        return Some(format!(
            "SQ head {} and tail {} need {queued} queued SQEs in an SQ of {entries}; {} are listed",
            queue.sq_head,
            queue.sq_tail,
            queue.sqes.len()
        ));
    }
    let has_array = setup.flags & SetupFlags::NO_SQARRAY.bits() == 0;
    match &queue.sq_array {
        Some(_) if !has_array => {
            return Some("has an SQ array but the ring has IORING_SETUP_NO_SQARRAY".to_owned())
        }
        Some(array) if array.len() != entries as usize => {
            return Some(format!(
                "its SQ array has {} entries, not {entries}",
                array.len()
            ));
        }
        None if has_array => return Some("lacks the ring's SQ array".to_owned()),
        _ => {}
    }
    // Entries of the SQ array outside the queued positions may name any
    // slot, even none (the kernel drops such an SQE when it meets it): a
    // restore writes them back as the program left them.
    let size = sqe_size(setup.flags);
    let mask = entries - 1;
    for (offset, sqe) in (0u32..).zip(&queue.sqes) {
        let position = queue.sq_head.wrapping_add(offset);
        let slot = match &queue.sq_array {
            Some(array) => array[(position & mask) as usize],
            None => position & mask,
        };
        if sqe.position != position || sqe.slot != slot {
            return Some(format!(
                "SQE {offset} is at position {} in slot {}, not at {position} in slot {slot}",
                sqe.position, sqe.slot
            ));
        }
        if sqe.bytes.0.len() != size {
            return Some(format!(
                "the SQE at position {position} has {} bytes, not {size}",
                sqe.bytes.0.len()
            ));
        }
    }
    unqueued_problem(entries, size, queue)
}

/// The unqueued SQE slots of a `queue_sqes`: ascending, inside the SQE
/// array, none a queued SQE's, each of the ring's SQE size.
fn unqueued_problem(entries: u32, size: usize, queue: &QueueSqes) -> Option<String> {
    let queued: std::collections::BTreeSet<u32> = queue.sqes.iter().map(|sqe| sqe.slot).collect();
    let mut previous: Option<u32> = None;
    for sqe in &queue.unqueued_sqes {
        if sqe.slot >= entries || previous.is_some_and(|previous| previous >= sqe.slot) {
            return Some(format!(
                "unqueued SQE slot {} is outside 0..{entries} or not after the previous one",
                sqe.slot
            ));
        }
        if queued.contains(&sqe.slot) {
            return Some(format!("unqueued SQE slot {} holds a queued SQE", sqe.slot));
        }
        if sqe.bytes.0.len() != size {
            return Some(format!(
                "unqueued SQE slot {} has {} bytes, not {size}",
                sqe.slot,
                sqe.bytes.0.len()
            ));
        }
        previous = Some(sqe.slot);
    }
    None
}
