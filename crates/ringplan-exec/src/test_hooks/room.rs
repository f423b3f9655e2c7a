//! Making room for an image in this process, for benchmarks that restore a
//! dumped program's image into the bench process itself: its fds, buffers
//! and ring memory may collide with the bench's own. Each function moves
//! one kind of thing out of the way, keeping its layout, and
//! [`placed_ranges`] and [`unmap`] undo what a continuous restore leaves
//! mapped.

use std::ffi::c_void;

use ringplan_image::{Image, ObjectKind, RingMapping, UserRegion};
use ringplan_kernel::procfs::{maps, Process};
use ringplan_plan::{Op, PlaceRingMemory, Plan};

use crate::continuity::page_round;

const PAGE: u64 = ringplan_kernel::abi::linux::PAGE_SIZE;

/// `len` rounded up to whole pages.
pub fn page_rounded(len: u64) -> u64 {
    page_round(len).expect("a length below u64::MAX")
}

/// Adds `by` to every fd number of the image.
pub fn shift_fds(image: &mut Image, by: i32) {
    for object in &mut image.objects {
        for entry in &mut object.fds {
            entry.fd += by;
        }
    }
}

/// Moves every registered buffer so that the lowest page starts at `base`,
/// keeping their layout (they point into the program's heap, which may be
/// this process's too).
pub fn move_buffers(image: &mut Image, base: u64) {
    let lowest = image
        .objects
        .iter()
        .filter_map(|object| match &object.kind {
            ObjectKind::Ring(ring) => ring
                .buffers
                .iter()
                .flatten()
                .map(|buffer| buffer.addr & !(PAGE - 1))
                .min(),
            _ => None,
        })
        .min();
    let Some(lowest) = lowest else {
        return;
    };
    for object in &mut image.objects {
        if let ObjectKind::Ring(ring) = &mut object.kind {
            for buffer in ring.buffers.iter_mut().flatten() {
                assert!(buffer.addr - lowest < 1 << 30, "buffers spread over 1 GiB");
                buffer.addr = buffer.addr - lowest + base;
            }
        }
    }
}

/// Every address of ring memory the image records: the ring regions the
/// program mapped, and the memory a NO_MMAP ring was given.
fn ring_regions(image: &mut Image) -> Vec<(&mut u64, u64)> {
    let mut regions = Vec::new();
    for object in &mut image.objects {
        let ObjectKind::Ring(ring) = &mut object.kind else {
            continue;
        };
        for RingMapping { addr, len, .. } in &mut ring.mappings {
            regions.push((addr, *len));
        }
        if let Some(state) = ring.state.as_deref_mut() {
            let memory = &mut state.memory;
            for UserRegion { addr, len } in memory.rings.iter_mut().chain(memory.sqes.iter_mut()) {
                regions.push((addr, *len));
            }
        }
    }
    regions
}

/// Moves all ring memory by one offset to `base` (layout kept) when any
/// recorded range overlaps a mapping of this process; the taken range when
/// it did.
pub fn move_ring_memory_if_taken(image: &mut Image, base: u64) -> Option<String> {
    let ours: Vec<(u64, u64)> = maps::read(Process::Current)
        .expect("/proc/self/maps")
        .lines()
        .filter_map(maps::MapsEntry::parse)
        .map(|entry| (entry.start, entry.end))
        .collect();
    let regions = ring_regions(image);
    let taken = regions.iter().find_map(|(addr, len)| {
        let (start, end) = (**addr, **addr + page_rounded(*len));
        ours.iter()
            .any(|&(from, to)| from < end && start < to)
            .then(|| format!("{start:#x}-{end:#x}"))
    })?;
    let lowest = regions.iter().map(|(addr, _)| **addr).min()?;
    for (addr, _) in regions {
        assert!(*addr - lowest < 1 << 30, "ring memory spread over 1 GiB");
        *addr = *addr - lowest + base;
    }
    Some(taken)
}

/// The continuity memory a plan leaves mapped on success: every range of
/// every `place_ring_memory` step, page-rounded, `[start, end)`.
pub fn placed_ranges(plan: &Plan) -> Vec<(u64, u64)> {
    plan.steps
        .iter()
        .filter_map(|step| match &step.op {
            Op::PlaceRingMemory(memory) => Some(memory),
            _ => None,
        })
        .flat_map(PlaceRingMemory::ranges)
        .map(|range| (range.addr, range.addr + page_rounded(range.len)))
        .collect()
}

/// Unmaps each `[start, end)` of this process.
///
/// # Safety
/// Nothing may use the ranges afterwards: they are what a restore in this
/// process mapped, and the rings using them are closed.
pub unsafe fn unmap(ranges: &[(u64, u64)]) {
    for &(start, end) in ranges {
        // SAFETY: the caller's contract.
        unsafe { rustix::mm::munmap(start as *mut c_void, (end - start) as usize) }
            .expect("munmap");
    }
}
