//! Checks of a ring's continuity state (image version 2) against the ring
//! it belongs to: every position, entry and owner must be one the kernel
//! could hold for a ring of these sizes and flags. Each check returns the
//! problem in words; `validate` names the ring.

use ringplan_kernel::abi::continuity::{cqe_size, sqe_size};

use crate::model::*;

/// The first contradiction between `state` and the ring `setup` it belongs
/// to, if any.
pub(super) fn state_problem(setup: &RingSetup, state: &RingState) -> Option<String> {
    let Some(flags) = setup.flags else {
        return Some("has a state but its setup flags are unknown".to_owned());
    };
    unknown_problem(state)
        .or_else(|| sq_problem(setup, flags, state))
        .or_else(|| unqueued_problem(setup, flags, state))
        .or_else(|| cq_problem(setup, flags, state))
        .or_else(|| memory_problem(flags, state))
        .or_else(|| owner_problem(flags, state))
}

/// The slots of `unqueued_sqes`: ascending, inside the SQE array, none
/// holding a queued SQE, each of the ring's SQE size.
fn unqueued_problem(setup: &RingSetup, flags: u32, state: &RingState) -> Option<String> {
    if state.unqueued_sqes.is_empty() {
        return None;
    }
    if state.unknown.contains(&StateField::Entries) {
        return Some("entries are listed as unknown but unqueued_sqes is not empty".to_owned());
    }
    let size = sqe_size(flags);
    let queued_slots: std::collections::BTreeSet<u32> =
        state.sqes.iter().flatten().map(|sqe| sqe.slot).collect();
    let mut previous: Option<u32> = None;
    for sqe in &state.unqueued_sqes {
        if sqe.slot >= setup.sq_entries {
            return Some(format!(
                "unqueued SQE slot {} is outside 0..{}",
                sqe.slot, setup.sq_entries
            ));
        }
        if previous.is_some_and(|previous| previous >= sqe.slot) {
            return Some(format!(
                "unqueued SQE slot {} is not after slot {} (slots ascend, each once)",
                sqe.slot,
                previous.unwrap_or_default()
            ));
        }
        if queued_slots.contains(&sqe.slot) {
            return Some(format!("unqueued SQE slot {} holds a queued SQE", sqe.slot));
        }
        if sqe.bytes.0.len() != size {
            return Some(format!(
                "unqueued SQE slot {} has {} bytes, expected {size}",
                sqe.slot,
                sqe.bytes.0.len()
            ));
        }
        previous = Some(sqe.slot);
    }
    None
}

fn unknown_problem(state: &RingState) -> Option<String> {
    let unknown = |field| state.unknown.contains(&field);
    let mut sorted = state.unknown.clone();
    sorted.sort();
    sorted.dedup();
    if sorted != state.unknown {
        return Some("state.unknown is not sorted or lists a field twice".to_owned());
    }
    let entries_present = state.sq_array.is_some() || state.sqes.is_some() || state.cqes.is_some();
    if unknown(StateField::Entries) && entries_present {
        return Some(
            "entries are listed as unknown but sq_array, sqes or cqes has a value".to_owned(),
        );
    }
    if !unknown(StateField::Entries) && (state.sqes.is_none() || state.cqes.is_none()) {
        return Some("sqes and cqes are null but entries are not listed as unknown".to_owned());
    }
    if unknown(StateField::Overflow) == state.overflow.is_some() {
        return Some("overflow must be null exactly when listed as unknown".to_owned());
    }
    let memory_present = state.memory.rings.is_some() || state.memory.sqes.is_some();
    if unknown(StateField::Memory) && memory_present {
        return Some("memory is listed as unknown but has addresses".to_owned());
    }
    if unknown(StateField::OwnerTid) && state.owner_tid.is_some() {
        return Some("owner_tid is listed as unknown but has a value".to_owned());
    }
    None
}

/// How many entries lie from `head` to `tail`, as the ring counts (u32,
/// wrapping).
fn between(head: u32, tail: u32) -> u32 {
    tail.wrapping_sub(head)
}

fn sq_problem(setup: &RingSetup, flags: u32, state: &RingState) -> Option<String> {
    let positions = &state.positions;
    let entries = setup.sq_entries;
    let mask = entries - 1;
    let queued = between(positions.cached_sq_head, positions.sq_tail);
    if queued > entries {
        return Some(format!(
            "{queued} SQEs queued (SQ tail {} - head {}), more than sq_entries {entries}",
            positions.sq_tail, positions.cached_sq_head
        ));
    }
    if between(positions.sq_head, positions.cached_sq_head) > entries {
        return Some(format!(
            "the kernel's SQ head {} is more than sq_entries {entries} past the published head {}",
            positions.cached_sq_head, positions.sq_head
        ));
    }
    let has_array = flags & SetupFlags::NO_SQARRAY.bits() == 0;
    if let Some(array) = &state.sq_array {
        if !has_array {
            return Some("has an sq_array but IORING_SETUP_NO_SQARRAY is set".to_owned());
        }
        if array.len() != entries as usize {
            return Some(format!(
                "sq_array has {} entries, not sq_entries {entries}",
                array.len()
            ));
        }
    } else if has_array && !state.unknown.contains(&StateField::Entries) {
        return Some("sq_array is null but the ring has an SQ array".to_owned());
    }
    let Some(sqes) = &state.sqes else {
        return None;
    };
    if sqes.len() != queued as usize {
        return Some(format!(
            "{} SQEs recorded, but SQ tail {} - head {} = {queued}",
            sqes.len(),
            positions.sq_tail,
            positions.cached_sq_head
        ));
    }
    let size = sqe_size(flags);
    for (offset, sqe) in (0u32..).zip(sqes) {
        let position = positions.cached_sq_head.wrapping_add(offset);
        if sqe.position != position {
            return Some(format!(
                "SQE {offset} is at position {}, expected {position}",
                sqe.position
            ));
        }
        if sqe.slot >= entries {
            return Some(format!(
                "SQE at position {position}: slot {} is outside 0..{entries}",
                sqe.slot
            ));
        }
        let expected_slot = match &state.sq_array {
            Some(array) => array.get((position & mask) as usize).copied(),
            None => Some(position & mask),
        };
        if expected_slot != Some(sqe.slot) {
            return Some(format!(
                "SQE at position {position}: slot {} is not the one the SQ array names",
                sqe.slot
            ));
        }
        if sqe.bytes.0.len() != size {
            return Some(format!(
                "SQE at position {position} has {} bytes, expected {size}{}",
                sqe.bytes.0.len(),
                if size == 128 {
                    " (IORING_SETUP_SQE128)"
                } else {
                    ""
                }
            ));
        }
    }
    None
}

fn cq_problem(setup: &RingSetup, flags: u32, state: &RingState) -> Option<String> {
    let positions = &state.positions;
    let entries = setup.cq_entries;
    let unconsumed = between(positions.cq_head, positions.cq_tail);
    if unconsumed > entries {
        return Some(format!(
            "{unconsumed} CQEs unconsumed (CQ tail {} - head {}), more than cq_entries {entries}",
            positions.cq_tail, positions.cq_head
        ));
    }
    if between(positions.cq_tail, positions.cached_cq_tail) > entries {
        return Some(format!(
            "the kernel's CQ tail {} is more than cq_entries {entries} past the published tail {}",
            positions.cached_cq_tail, positions.cq_tail
        ));
    }
    if let Some(cqes) = &state.cqes {
        if cqes.len() != unconsumed as usize {
            return Some(format!(
                "{} CQEs recorded, but CQ tail {} - head {} = {unconsumed}",
                cqes.len(),
                positions.cq_tail,
                positions.cq_head
            ));
        }
    }
    let lists = [("CQE", &state.cqes), ("overflowed CQE", &state.overflow)];
    for (what, list) in lists {
        let Some(list) = list else { continue };
        for (index, cqe) in list.iter().enumerate() {
            let problem = match (cqe_size(flags), cqe.extra.is_some()) {
                (Some(16), true) => "has extra words but IORING_SETUP_CQE32 is not set",
                (Some(32), false) => "lacks the extra words of IORING_SETUP_CQE32",
                _ => continue,
            };
            return Some(format!("{what} {index} {problem}"));
        }
    }
    None
}

fn memory_problem(flags: u32, state: &RingState) -> Option<String> {
    let memory = &state.memory;
    let no_mmap = flags & SetupFlags::NO_MMAP.bits() != 0;
    if memory.no_mmap != no_mmap {
        return Some(format!(
            "memory.no_mmap is {} but IORING_SETUP_NO_MMAP is {}",
            memory.no_mmap,
            if no_mmap { "set" } else { "not set" }
        ));
    }
    let regions = [("rings", memory.rings), ("sqes", memory.sqes)];
    for (name, region) in regions {
        match region {
            Some(_) if !no_mmap => {
                return Some(format!(
                    "memory.{name} has an address but the kernel allocated the ring's memory"
                ))
            }
            None if no_mmap && !state.unknown.contains(&StateField::Memory) => {
                return Some(format!(
                    "memory.{name} is null but IORING_SETUP_NO_MMAP is set"
                ))
            }
            Some(region) => {
                let problem = if region.len == 0 {
                    Some("is empty".to_owned())
                } else if region.addr % ringplan_kernel::abi::linux::PAGE_SIZE != 0 {
                    Some(format!("address {:#x} is not page-aligned", region.addr))
                } else if region
                    .addr
                    .checked_add(region.len)
                    .is_none_or(|end| end > USER_ADDRESS_LIMIT)
                {
                    Some(format!(
                        "{:#x}+{} is not a user address range",
                        region.addr, region.len
                    ))
                } else {
                    None
                };
                if let Some(problem) = problem {
                    return Some(format!("memory.{name} {problem}"));
                }
            }
            None => {}
        }
    }
    None
}

fn owner_problem(flags: u32, state: &RingState) -> Option<String> {
    let single_issuer = flags & SetupFlags::SINGLE_ISSUER.bits() != 0;
    match state.owner_tid {
        Some(0) => Some("owner_tid is 0, which no thread has".to_owned()),
        Some(tid) if !single_issuer => Some(format!(
            "has an owner thread {tid} but IORING_SETUP_SINGLE_ISSUER is not set"
        )),
        _ => None,
    }
}
