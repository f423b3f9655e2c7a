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
//!
//! The mappings go through a [`crate::Backend`]: those of `AnonymousBuffers`
//! through [`crate::InProcess`]; for a restore into another process
//! (`execute_in`) the run maps the same ranges there (`BackendBuffers`),
//! except ranges the process already holds as its own writable memory
//! (the program's heap after `plan dump --detach`, or memory a restorer
//! brought back), which are registered as they are.
//! `BarrierMemory` is how the run calls either at the barrier.

use ringplan_kernel::procfs::maps::{self, MapsEntry};
use ringplan_kernel::procfs::Process;
use ringplan_plan::{Op, Plan};
use rustix::mm::{MapFlags, ProtFlags};

use crate::backend::{Backend, InProcess};
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

    /// The run failed: undo what [`MemoryHook::restore`] did, and release
    /// anything [`MemoryHook::preflight`] kept for the run. Called on every
    /// failure of the run (before the barrier too, and when `restore`
    /// itself failed, to undo its partial work).
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

use ringplan_kernel::abi::linux::PAGE_SIZE as PAGE;

/// The page ranges `[start, end)` every registered buffer of `plan` and
/// every buffer ring's memory cover, merged and sorted. A buffer shared by
/// several slots or rings, or several buffers on one page, give one range.
pub fn buffer_ranges(plan: &Plan) -> Result<Vec<(u64, u64)>, MemoryError> {
    let mut ranges = Vec::new();
    for step in &plan.steps {
        if let Op::RegisterPbufRing(register) = &step.op {
            // Page-aligned (the plan's validation checked it).
            let end = register
                .addr
                .checked_add(register.memory_len().next_multiple_of(PAGE))
                .ok_or(MemoryError::BadRange {
                    start: register.addr,
                    len: register.memory_len(),
                })?;
            ranges.push((register.addr, end));
        }
        if let Op::RegisterBuffers(register) = &step.op {
            for iovec in register.iovecs.iter().filter(|iovec| !iovec.is_empty()) {
                let bad = || MemoryError::BadRange {
                    start: iovec.base,
                    len: iovec.len,
                };
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
                let end = iovec
                    .base
                    .saturating_add(iovec.len)
                    .saturating_add(PAGE - 1)
                    & !(PAGE - 1);
                total = total.saturating_add(end.saturating_sub(start));
            }
        }
    }
    total
}

/// Maps anonymous read-write memory at every buffer range of the plan
/// (`MAP_FIXED_NOREPLACE`); never replaces an existing mapping.
///
/// Its preflight proves each range free by mapping it, exactly as the
/// barrier would, and keeps those mappings for the barrier to take over (a
/// reservation: nothing can take the range in between, and the run does not
/// map it a second time). The run releases them if it fails; dropping this
/// value releases any the run did not take (after a dry run, say).
///
/// After a successful run the mappings belong to the process (dropping this
/// value keeps them): the restored rings refer to them. [`MemoryHook::undo`]
/// unmaps what it mapped.
#[derive(Debug, Default)]
pub struct AnonymousBuffers {
    mapped: Vec<(u64, u64)>,
    /// Ranges preflight mapped, not yet taken over by `restore`.
    reserved: Vec<(u64, u64)>,
}

impl AnonymousBuffers {
    pub fn new() -> Self {
        AnonymousBuffers::default()
    }

    /// The ranges mapped so far, `[start, end)`.
    pub fn mapped(&self) -> &[(u64, u64)] {
        &self.mapped
    }

    fn release_reserved(&mut self) {
        for (start, end) in self.reserved.drain(..) {
            // A mapping preflight made; nothing refers to it yet.
            unmap_range(&mut InProcess, start, end);
        }
    }
}

impl Drop for AnonymousBuffers {
    fn drop(&mut self) {
        self.release_reserved();
    }
}

/// The first mapping of this process that overlaps `[start, end)`, as its
/// `/proc/self/maps` line.
pub(crate) fn overlapping_mapping(maps: &str, start: u64, end: u64) -> Option<String> {
    maps.lines().find_map(|line| {
        let entry = MapsEntry::parse(line)?;
        entry
            .overlaps(start, end)
            .then(|| line.split_whitespace().collect::<Vec<_>>().join(" "))
    })
}

/// Whether `[start, end)` lies wholly in writable memory of the process
/// whose `maps` these are, none of it io_uring's: memory the process
/// already has there (its own heap, kept by `plan dump --detach` or brought
/// back by a restorer), which a restore into it registers as it is. `None`
/// when no byte of the range is mapped.
pub(crate) fn own_memory_covers(maps: &str, start: u64, end: u64) -> Option<bool> {
    let mut covering: Vec<(u64, u64, bool)> = maps
        .lines()
        .filter_map(MapsEntry::parse)
        .filter(|entry| entry.overlaps(start, end))
        .map(|entry| {
            let usable = entry.perms.starts_with("rw") && !entry.path.contains("io_uring");
            (entry.start, entry.end, usable)
        })
        .collect();
    if covering.is_empty() {
        return None;
    }
    covering.sort_unstable();
    let mut reached = start;
    for (from, to, usable) in covering {
        if from > reached || !usable {
            return Some(false);
        }
        reached = reached.max(to);
    }
    Some(reached >= end)
}

/// Maps fresh anonymous read-write memory at exactly `[start, end)`
/// (page-aligned) with `MAP_FIXED_NOREPLACE`, which never replaces a mapping
/// (the kernel refuses with EEXIST instead), in the process `backend` acts
/// in; `process` names it, to say what is in the way.
fn map_range<B: Backend>(
    backend: &mut B,
    process: Process,
    start: u64,
    end: u64,
) -> Result<(), MemoryError> {
    let bad = || MemoryError::BadRange {
        start,
        len: end - start,
    };
    let addr = usize::try_from(start).map_err(|_| bad())?;
    let len = usize::try_from(end - start).map_err(|_| bad())?;
    // MAP_FIXED_NOREPLACE never replaces an existing mapping, so no memory
    // anyone uses is touched; the caller owns the new one.
    let result = backend.mmap(
        addr,
        len,
        ProtFlags::READ | ProtFlags::WRITE,
        MapFlags::PRIVATE | MapFlags::FIXED_NOREPLACE,
        None,
        0,
    );
    match result {
        Ok(got) if got == addr => Ok(()),
        Ok(got) => {
            // Kernels before 4.17 treat the flag as a hint: undo.
            let _ = backend.munmap(got, len);
            Err(MemoryError::Map {
                start,
                end,
                errno: rustix::io::Errno::EXIST,
            })
        }
        Err(rustix::io::Errno::EXIST) => {
            let by = maps::read(process)
                .ok()
                .and_then(|maps| overlapping_mapping(&maps, start, end))
                .unwrap_or_else(|| "a mapping".to_owned());
            Err(MemoryError::RangeTaken { start, end, by })
        }
        Err(errno) => Err(MemoryError::Map { start, end, errno }),
    }
}

/// The program's memory at `[start, end)` (page-aligned) in the process
/// `backend` acts in, for a registration that needs it there before the
/// barrier (a wait region): in another process, its own writable memory
/// there is used as it is (`Ok(false)`); where nothing is mapped, fresh
/// anonymous memory is mapped (`Ok(true)`: the caller unmaps it on undo).
/// In this process the range must be free: the executor's own memory is
/// never the program's.
pub(crate) fn program_memory_at<B: Backend>(
    backend: &mut B,
    start: u64,
    end: u64,
) -> Result<bool, MemoryError> {
    let process = backend.process();
    if !B::IN_THIS_PROCESS {
        let maps = maps::read(process).map_err(|error| MemoryError::Maps(error.into_io_error()))?;
        match own_memory_covers(&maps, start, end) {
            Some(true) => return Ok(false),
            Some(false) => {
                let by = overlapping_mapping(&maps, start, end)
                    .unwrap_or_else(|| "a mapping".to_owned());
                return Err(MemoryError::RangeTaken { start, end, by });
            }
            None => {}
        }
    }
    map_range(backend, process, start, end)?;
    Ok(true)
}

/// Unmaps `[start, end)`, a range [`map_range`] mapped, in the process
/// `backend` acts in.
fn unmap_range<B: Backend>(backend: &mut B, start: u64, end: u64) {
    if let (Ok(addr), Ok(len)) = (usize::try_from(start), usize::try_from(end - start)) {
        let _ = backend.munmap(addr, len);
    }
}

impl MemoryHook for AnonymousBuffers {
    fn preflight(&mut self, plan: &Plan) -> Result<(), MemoryError> {
        // A second preflight starts afresh.
        self.release_reserved();
        let ranges = buffer_ranges(plan)?;
        // Ask the kernel: a MAP_FIXED_NOREPLACE mapping of a range succeeds
        // exactly when nothing overlaps it. Kept, it is the barrier's.
        let mut kernel_answered = true;
        for &(start, end) in &ranges {
            match map_range(&mut InProcess, Process::Current, start, end) {
                Ok(()) => self.reserved.push((start, end)),
                Err(error @ MemoryError::RangeTaken { .. }) => {
                    self.release_reserved();
                    return Err(error);
                }
                Err(_) => {
                    // A kernel that cannot say this way: /proc/self/maps.
                    kernel_answered = false;
                    break;
                }
            }
        }
        if kernel_answered {
            return Ok(());
        }
        self.release_reserved();
        let maps = maps::read(Process::Current)
            .map_err(|error| MemoryError::Maps(error.into_io_error()))?;
        for (start, end) in ranges {
            if let Some(by) = overlapping_mapping(&maps, start, end) {
                return Err(MemoryError::RangeTaken { start, end, by });
            }
        }
        Ok(())
    }

    fn restore(&mut self, plan: &Plan) -> Result<(), MemoryError> {
        for (start, end) in buffer_ranges(plan)? {
            if let Some(position) = self
                .reserved
                .iter()
                .position(|&range| range == (start, end))
            {
                self.reserved.swap_remove(position);
            } else {
                map_range(&mut InProcess, Process::Current, start, end)?;
            }
            self.mapped.push((start, end));
        }
        // Reserved for a different plan: not this run's.
        self.release_reserved();
        Ok(())
    }

    fn undo(&mut self) {
        for (start, end) in self.mapped.drain(..) {
            // A mapping this hook made; nothing outside the failed run
            // refers to it.
            unmap_range(&mut InProcess, start, end);
        }
        self.release_reserved();
    }
}

/// What puts the task's memory in place at the barrier, in the process a
/// backend acts in.
pub(crate) trait BarrierMemory<B: Backend> {
    /// At the barrier.
    fn restore(&mut self, plan: &Plan, backend: &mut B) -> Result<(), MemoryError>;
    /// The run failed: unmap what `restore` mapped, release what preflight
    /// kept.
    fn undo(&mut self, backend: &mut B);
}

/// The caller's [`MemoryHook`], in this process.
pub(crate) struct HookMemory<'h>(pub(crate) &'h mut dyn MemoryHook);

impl BarrierMemory<InProcess> for HookMemory<'_> {
    fn restore(&mut self, plan: &Plan, _: &mut InProcess) -> Result<(), MemoryError> {
        self.0.restore(plan)
    }

    fn undo(&mut self, _: &mut InProcess) {
        self.0.undo();
    }
}

/// Fresh anonymous read-write memory at every buffer range of the plan, in
/// the process a backend acts in: what [`AnonymousBuffers`] does in this
/// process, without its reservation (that process is held while it is
/// checked and restored into, so nothing in it can take a range in
/// between). Its preflight proved the ranges free.
#[derive(Debug)]
pub(crate) struct BackendBuffers {
    /// The process the backend acts in (to name what is in the way).
    pub(crate) process: Process,
    /// `[start, end)` of each range mapped.
    pub(crate) mapped: Vec<(u64, u64)>,
    /// `[start, end)` of each range the process already had as its own
    /// writable memory (registered as it is).
    pub(crate) own: Vec<(u64, u64)>,
}

impl<B: Backend> BarrierMemory<B> for BackendBuffers {
    fn restore(&mut self, plan: &Plan, backend: &mut B) -> Result<(), MemoryError> {
        let ranges = buffer_ranges(plan)?;
        if ranges.is_empty() {
            return Ok(());
        }
        let maps =
            maps::read(self.process).map_err(|error| MemoryError::Maps(error.into_io_error()))?;
        for (start, end) in ranges {
            // The process's own memory (preflight refused a range only
            // partly its own): registered as it is, never unmapped.
            if own_memory_covers(&maps, start, end) == Some(true) {
                self.own.push((start, end));
                continue;
            }
            map_range(backend, self.process, start, end)?;
            self.mapped.push((start, end));
        }
        Ok(())
    }

    fn undo(&mut self, backend: &mut B) {
        for (start, end) in self.mapped.drain(..) {
            unmap_range(backend, start, end);
        }
    }
}

#[cfg(test)]
mod tests {
    use ringplan_image::{Backend, Source};
    use ringplan_plan::{Handle, Iovec, RegisterBuffers, Step, FORMAT_NAME, FORMAT_VERSION};

    use std::ffi::c_void;

    use super::*;

    /// A plan whose only step registers one buffer of two pages at `base`.
    fn plan_with_buffer(base: u64) -> Plan {
        let register = RegisterBuffers {
            tags: Vec::new(),
            ring_handle: Handle(0),
            iovecs: vec![Iovec {
                base,
                len: 2 * PAGE,
            }],
        };
        Plan {
            format: FORMAT_NAME.to_owned(),
            version: FORMAT_VERSION,
            source: Source {
                pid: 1,
                backend: Backend::Bpf,
                kernel_release: String::new(),
            },
            needed_fds: Vec::new(),
            temp_fd_floor: 0,
            peak_temporaries: 0,
            processes: Vec::new(),
            steps: vec![Step {
                object: None,
                after: Vec::new(),
                op: Op::RegisterBuffers(register),
            }],
        }
    }

    fn is_mapped(start: u64, end: u64) -> bool {
        let maps = maps::read(Process::Current).expect("/proc/self/maps");
        overlapping_mapping(&maps, start, end).is_some()
    }

    // Distinct ranges per test (the tests share one address space), far from
    // anything the test binary maps.
    const BASE_TAKEN_OVER: u64 = 0x2100_0000_0000;
    const BASE_DROPPED: u64 = 0x2100_0010_0000;
    const BASE_UNDONE: u64 = 0x2100_0020_0000;
    const BASE_TAKEN: u64 = 0x2100_0030_0000;

    #[test]
    fn preflight_reserves_and_the_barrier_takes_the_reservation_over() {
        let (start, end) = (BASE_TAKEN_OVER, BASE_TAKEN_OVER + 2 * PAGE);
        let plan = plan_with_buffer(start);
        let mut memory = AnonymousBuffers::new();
        memory.preflight(&plan).expect("preflight");
        assert!(
            is_mapped(start, end),
            "preflight keeps the range mapped for the barrier"
        );
        memory.restore(&plan).expect("restore");
        assert_eq!(memory.mapped(), &[(start, end)]);
        assert!(
            memory.reserved.is_empty(),
            "the barrier took the reservation over"
        );
        drop(memory);
        assert!(
            is_mapped(start, end),
            "after a successful run the mapping is the process's"
        );
        // SAFETY: the range this test mapped; nothing refers to it.
        unsafe { rustix::mm::munmap(start as *mut c_void, (end - start) as usize) }
            .expect("munmap");
    }

    #[test]
    fn a_reservation_the_run_never_took_is_released_on_drop() {
        let (start, end) = (BASE_DROPPED, BASE_DROPPED + 2 * PAGE);
        let mut memory = AnonymousBuffers::new();
        memory
            .preflight(&plan_with_buffer(start))
            .expect("preflight");
        assert!(is_mapped(start, end));
        drop(memory);
        assert!(!is_mapped(start, end), "a dry run leaves nothing mapped");
    }

    #[test]
    fn undo_releases_a_reservation_before_the_barrier() {
        let (start, end) = (BASE_UNDONE, BASE_UNDONE + 2 * PAGE);
        let mut memory = AnonymousBuffers::new();
        memory
            .preflight(&plan_with_buffer(start))
            .expect("preflight");
        memory.undo();
        assert!(
            !is_mapped(start, end),
            "a run failing before the barrier leaves nothing mapped"
        );
        assert!(memory.mapped().is_empty());
    }

    #[test]
    fn a_taken_range_is_refused_and_nothing_stays_reserved() {
        let (start, end) = (BASE_TAKEN, BASE_TAKEN + 2 * PAGE);
        // Someone else's mapping on the second page.
        map_range(&mut InProcess, Process::Current, start + PAGE, end)
            .expect("the test's own mapping");
        let mut memory = AnonymousBuffers::new();
        let error = memory
            .preflight(&plan_with_buffer(start))
            .expect_err("the range is taken");
        assert!(matches!(error, MemoryError::RangeTaken { .. }), "{error:?}");
        assert!(memory.reserved.is_empty());
        assert!(
            !is_mapped(start, start + PAGE),
            "the free first page was not left mapped"
        );
        // SAFETY: the test's own mapping.
        unsafe { rustix::mm::munmap((start + PAGE) as *mut c_void, PAGE as usize) }
            .expect("munmap");
    }

    #[test]
    fn only_wholly_own_writable_memory_is_the_processes_own() {
        let maps = "\
1000-3000 rw-p 00000000 00:00 0 \n\
3000-4000 rw-p 00000000 00:00 0                          [heap]\n\
5000-6000 r--p 00000000 08:01 42                         /usr/lib/libc.so\n\
7000-8000 rw-s 00000000 00:0f 9                          anon_inode:[io_uring]\n";
        assert_eq!(own_memory_covers(maps, 0x1000, 0x4000), Some(true));
        assert_eq!(own_memory_covers(maps, 0x2000, 0x3000), Some(true));
        assert_eq!(
            own_memory_covers(maps, 0x3000, 0x5000),
            Some(false),
            "a hole"
        );
        assert_eq!(
            own_memory_covers(maps, 0x5000, 0x6000),
            Some(false),
            "read-only"
        );
        assert_eq!(
            own_memory_covers(maps, 0x7000, 0x8000),
            Some(false),
            "io_uring"
        );
        assert_eq!(own_memory_covers(maps, 0x9000, 0xa000), None);
    }
}
