//! The memory barrier: who puts the task's memory in place before
//! `register_buffers` runs.
//!
//! A restorer that restores memory itself implements [`MemoryHook`] (or
//! passes a closure). [`NoMemory`] does nothing (for plans whose buffers
//! already lie in mapped memory, or that have none). [`AnonymousBuffers`] is
//! what `plan exec` uses: it maps fresh anonymous memory at every recorded
//! buffer range with `MAP_FIXED_NOREPLACE`, refusing to touch anything
//! already mapped, so `IORING_REGISTER_BUFFERS` registers the same
//! addresses and lengths as the image recorded (the contents are zeros: the
//! image does not hold memory).

use std::ffi::c_void;

use ringplan_plan::{Op, Plan};
use rustix::mm::{MapFlags, ProtFlags};

use crate::error::MemoryError;

/// Called at the plan's `memory_barrier` step.
pub trait MemoryHook {
    /// Before anything is done: can the memory be put in place? The default
    /// says yes.
    fn preflight(&mut self, _plan: &Plan) -> Result<(), MemoryError> {
        Ok(())
    }

    /// At the barrier: put the memory in place.
    fn restore(&mut self, plan: &Plan) -> Result<(), MemoryError>;

    /// A later step failed: undo what [`MemoryHook::restore`] did. Also
    /// called when `restore` itself failed, to undo its partial work.
    fn undo(&mut self) {}
}

impl<F: FnMut(&Plan) -> Result<(), MemoryError>> MemoryHook for F {
    fn restore(&mut self, plan: &Plan) -> Result<(), MemoryError> {
        self(plan)
    }
}

/// A hook that does nothing at the barrier.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoMemory;

impl MemoryHook for NoMemory {
    fn restore(&mut self, _plan: &Plan) -> Result<(), MemoryError> {
        Ok(())
    }
}

const PAGE: u64 = 4096;

/// The page ranges `[start, end)` every registered buffer of `plan` covers,
/// merged and sorted. A buffer shared by several slots or rings, or several
/// buffers on one page, give one range.
pub fn buffer_ranges(plan: &Plan) -> Result<Vec<(u64, u64)>, MemoryError> {
    let mut ranges = Vec::new();
    for step in &plan.steps {
        if let Op::RegisterBuffers(register) = &step.op {
            for iovec in register.iovecs.iter().filter(|iovec| !iovec.is_empty()) {
                let bad = || MemoryError::BadRange { start: iovec.base, len: iovec.len };
                let end = iovec.base.checked_add(iovec.len).ok_or_else(bad)?;
                let start = iovec.base & !(PAGE - 1);
                let end = end.checked_add(PAGE - 1).ok_or_else(bad)? & !(PAGE - 1);
                if start == 0 || end > ringplan_image::USER_ADDRESS_LIMIT {
                    return Err(bad());
                }
                ranges.push((start, end));
            }
        }
    }
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    Ok(merged)
}

/// The bytes the kernel pins for `plan`'s buffers, counted per ring as it
/// accounts them (whole pages).
pub fn pinned_bytes(plan: &Plan) -> u64 {
    let mut total = 0u64;
    for step in &plan.steps {
        if let Op::RegisterBuffers(register) = &step.op {
            for iovec in register.iovecs.iter().filter(|iovec| !iovec.is_empty()) {
                let start = iovec.base & !(PAGE - 1);
                let end = iovec.base.saturating_add(iovec.len).saturating_add(PAGE - 1) & !(PAGE - 1);
                total = total.saturating_add(end.saturating_sub(start));
            }
        }
    }
    total
}

/// Maps anonymous read-write memory at every buffer range of the plan
/// (`MAP_FIXED_NOREPLACE`); never replaces an existing mapping.
///
/// After a successful run the mappings belong to the process (dropping this
/// value keeps them): the restored rings refer to them. [`MemoryHook::undo`]
/// unmaps what it mapped.
#[derive(Debug, Default)]
pub struct AnonymousBuffers {
    mapped: Vec<(u64, u64)>,
}

impl AnonymousBuffers {
    pub fn new() -> Self {
        AnonymousBuffers::default()
    }

    /// The ranges mapped so far, `[start, end)`.
    pub fn mapped(&self) -> &[(u64, u64)] {
        &self.mapped
    }
}

/// The first mapping of this process that overlaps `[start, end)`, as its
/// `/proc/self/maps` line.
fn overlapping_mapping(maps: &str, start: u64, end: u64) -> Option<String> {
    maps.lines().find_map(|line| {
        let range = line.split_whitespace().next()?;
        let (low, high) = range.split_once('-')?;
        let low = u64::from_str_radix(low, 16).ok()?;
        let high = u64::from_str_radix(high, 16).ok()?;
        (low < end && start < high).then(|| line.split_whitespace().collect::<Vec<_>>().join(" "))
    })
}

/// Whether `[start, end)` (page-aligned) is certainly free: a
/// `MAP_FIXED_NOREPLACE` mapping of it succeeds at `start` (it is unmapped
/// at once, untouched, so nothing else changes). `false` also when the
/// kernel cannot say (an older kernel that treats the flag as a hint, or
/// any other error): the caller then reads `/proc/self/maps`.
fn range_is_free(start: u64, end: u64) -> bool {
    let Ok(len) = usize::try_from(end - start) else { return false };
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping; the
    // new one is unmapped right away and nothing refers to it.
    let result = unsafe {
        rustix::mm::mmap_anonymous(start as *mut c_void, len, ProtFlags::empty(), MapFlags::PRIVATE | MapFlags::FIXED_NOREPLACE | MapFlags::NORESERVE)
    };
    match result {
        Ok(addr) => {
            // SAFETY: `addr`/`len` is the mapping just made.
            let _ = unsafe { rustix::mm::munmap(addr, len) };
            addr as u64 == start
        }
        Err(_) => false,
    }
}

impl MemoryHook for AnonymousBuffers {
    fn preflight(&mut self, plan: &Plan) -> Result<(), MemoryError> {
        let ranges = buffer_ranges(plan)?;
        if ranges.is_empty() {
            return Ok(());
        }
        // Ask the kernel first: a MAP_FIXED_NOREPLACE mapping of each range,
        // unmapped at once, is refused (EEXIST) exactly when the range
        // overlaps a mapping. Only a refusal, or a kernel that cannot answer
        // this way, needs /proc/self/maps (which also names the mapping).
        if ranges.iter().all(|&(start, end)| range_is_free(start, end)) {
            return Ok(());
        }
        let maps = std::fs::read_to_string("/proc/self/maps").map_err(MemoryError::Maps)?;
        for (start, end) in ranges {
            if let Some(by) = overlapping_mapping(&maps, start, end) {
                return Err(MemoryError::RangeTaken { start, end, by });
            }
        }
        Ok(())
    }

    fn restore(&mut self, plan: &Plan) -> Result<(), MemoryError> {
        for (start, end) in buffer_ranges(plan)? {
            let len = usize::try_from(end - start).map_err(|_| MemoryError::BadRange { start, len: end - start })?;
            // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping:
            // the kernel refuses with EEXIST instead, so no memory anyone
            // uses is touched. The new mapping is owned by this hook.
            let result = unsafe {
                rustix::mm::mmap_anonymous(
                    start as *mut c_void,
                    len,
                    ProtFlags::READ | ProtFlags::WRITE,
                    MapFlags::PRIVATE | MapFlags::FIXED_NOREPLACE,
                )
            };
            match result {
                Ok(addr) if addr as u64 == start => self.mapped.push((start, end)),
                Ok(addr) => {
                    // Kernels before 4.17 treat the flag as a hint: undo.
                    // SAFETY: `addr`/`len` is the mapping just made.
                    let _ = unsafe { rustix::mm::munmap(addr, len) };
                    return Err(MemoryError::Map { start, end, errno: rustix::io::Errno::EXIST });
                }
                Err(rustix::io::Errno::EXIST) => {
                    let by = std::fs::read_to_string("/proc/self/maps")
                        .ok()
                        .and_then(|maps| overlapping_mapping(&maps, start, end))
                        .unwrap_or_else(|| "a mapping".to_owned());
                    return Err(MemoryError::RangeTaken { start, end, by });
                }
                Err(errno) => return Err(MemoryError::Map { start, end, errno }),
            }
        }
        Ok(())
    }

    fn undo(&mut self) {
        for (start, end) in self.mapped.drain(..) {
            // SAFETY: each range is a mapping this hook made and nothing
            // outside the failed run refers to it.
            let _ = unsafe { rustix::mm::munmap(start as *mut c_void, (end - start) as usize) };
        }
    }
}
