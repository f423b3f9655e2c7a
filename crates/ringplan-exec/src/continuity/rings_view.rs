//! Typed access to a ring's shared memory (heads, tails, flags, the SQ
//! array, SQE and CQE slots) at the offsets the kernel returned, and the
//! submission of a batch of SQEs already in their slots. The memory is
//! this process's (pointers), or another process's reached at its
//! addresses through `/proc/PID/mem` while that process is held
//! (`plan exec --pid`); the submission goes through a caller-given
//! `io_uring_enter` that runs in the process keeping the ring.

use std::cell::Cell;
use std::sync::atomic::{fence, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ringplan_kernel::abi::continuity::{
    IORING_ENTER_GETEVENTS, IORING_ENTER_SQ_WAKEUP, IORING_SQ_NEED_WAKEUP,
};
use rustix::io::Errno;
use rustix::io_uring::io_uring_params;

use super::error::{syscall, ContinuityError};
use crate::backend::TargetMemory;

/// How long an SQ thread may take to consume a batch before the step gives
/// up (it normally takes microseconds).
const SQ_THREAD_PATIENCE: Duration = Duration::from_secs(10);

/// A call of `io_uring_enter(ring, to_submit, min_complete, flags)` in
/// the process that keeps the ring (and, for a `SINGLE_ISSUER` ring, in
/// its owner thread): the SQEs consumed.
pub(super) type Enter<'e> = dyn FnMut(u32, u32, u32) -> Result<u32, Errno> + 'e;

/// Where the ring's memory is and how it is reached: through pointers in
/// this process, or at the target's addresses through `/proc/PID/mem`.
pub(super) struct RingMemory {
    access: TargetMemory,
    rings: u64,
    sqes: u64,
    /// The first failed access of another process's memory: answered as
    /// zeros, reported by [`RingsView::check`].
    failed: Cell<Option<u64>>,
}

/// One ring's memory at the kernel's offsets. Whoever holds a `RingsView`
/// of local memory also owns that memory (and keeps it mapped while the
/// view exists); a view of another process's memory reads and writes it
/// at its addresses while the process is held.
pub(super) struct RingsView {
    memory: RingMemory,
    sq_head: usize,
    sq_tail: usize,
    sq_flags: usize,
    sq_dropped: usize,
    sq_array: Option<usize>,
    cq_head: usize,
    cq_tail: usize,
    cqes: usize,
    cq_overflow: usize,
    cq_flags: usize,
    pub(super) sq_entries: u32,
    pub(super) cq_entries: u32,
    pub(super) sqe_size: usize,
    pub(super) cqe_size: usize,
    sqpoll: bool,
}

impl RingsView {
    /// A view of the rings and the SQEs at `(rings, sqes)`, laid out as
    /// `params` (what `io_uring_setup` returned) says, reached through
    /// `access`.
    ///
    /// # Safety
    /// With [`TargetMemory::Local`], `rings` and `sqes` must be addresses
    /// of the ring's mapped memory in this process for as long as the view
    /// is used.
    pub(super) unsafe fn new(
        access: TargetMemory,
        (rings, sqes): (u64, u64),
        params: &io_uring_params,
        has_sq_array: bool,
        sqe_size: usize,
        cqe_size: usize,
        sqpoll: bool,
    ) -> RingsView {
        RingsView {
            memory: RingMemory {
                access,
                rings,
                sqes,
                failed: Cell::new(None),
            },
            sq_head: params.sq_off.head as usize,
            sq_tail: params.sq_off.tail as usize,
            sq_flags: params.sq_off.flags as usize,
            sq_dropped: params.sq_off.dropped as usize,
            sq_array: has_sq_array.then_some(params.sq_off.array as usize),
            cq_head: params.cq_off.head as usize,
            cq_tail: params.cq_off.tail as usize,
            cqes: params.cq_off.cqes as usize,
            cq_overflow: params.cq_off.overflow as usize,
            cq_flags: params.cq_off.flags as usize,
            sq_entries: params.sq_entries,
            cq_entries: params.cq_entries,
            sqe_size,
            cqe_size,
            sqpoll,
        }
    }

    /// `Err` when an access of another process's ring memory failed since
    /// the view was made (the process lost the mapping: nothing the run
    /// did can be trusted to have happened).
    pub(super) fn check(&self) -> Result<(), ContinuityError> {
        match self.memory.failed.get() {
            None => Ok(()),
            Some(addr) => Err(ContinuityError::Diverged(format!(
                "the ring's memory at {addr:#x} could not be reached in the target process"
            ))),
        }
    }

    fn failed(&self, addr: u64) {
        if self.memory.failed.get().is_none() {
            self.memory.failed.set(Some(addr));
        }
    }

    fn load(&self, offset: usize) -> u32 {
        let addr = self.memory.rings + offset as u64;
        match &self.memory.access {
            TargetMemory::Local => {
                // SAFETY: `offset` is one of the kernel's u32 offsets into
                // the mapped rings (aligned by the kernel), valid while the
                // view is (the contract of `new`); the kernel writes it
                // concurrently, hence an atomic.
                let word = unsafe { &*(addr as *const AtomicU32) };
                word.load(Ordering::Acquire)
            }
            TargetMemory::Process(memory) => {
                let mut bytes = [0u8; 4];
                if memory.read_exact_at(addr, &mut bytes).is_err() {
                    self.failed(addr);
                }
                u32::from_ne_bytes(bytes)
            }
        }
    }

    fn store(&self, offset: usize, value: u32) {
        let addr = self.memory.rings + offset as u64;
        match &self.memory.access {
            TargetMemory::Local => {
                // SAFETY: as in `load`.
                let word = unsafe { &*(addr as *const AtomicU32) };
                word.store(value, Ordering::Release);
            }
            TargetMemory::Process(memory) => {
                if memory.write_all_at(addr, &value.to_ne_bytes()).is_err() {
                    self.failed(addr);
                }
            }
        }
    }

    /// Writes `bytes` at `addr`, inside the ring's memory.
    fn write_at(&self, addr: u64, bytes: &[u8]) {
        match &self.memory.access {
            TargetMemory::Local => {
                // SAFETY: callers pass a range inside the mapped rings or
                // SQEs (contract of `new`) that the kernel does not write
                // at the same time (SQE slots past the tail, CQE slots
                // between the head and the kernel's tail).
                unsafe {
                    std::ptr::copy_nonoverlapping(bytes.as_ptr(), addr as *mut u8, bytes.len());
                }
            }
            TargetMemory::Process(memory) => {
                if memory.write_all_at(addr, bytes).is_err() {
                    self.failed(addr);
                }
            }
        }
    }

    /// Reads `len` bytes at `addr`, inside the ring's memory.
    fn read_at(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut bytes = vec![0; len];
        match &self.memory.access {
            TargetMemory::Local => {
                // SAFETY: as in `write_at`, for reading.
                unsafe {
                    std::ptr::copy_nonoverlapping(addr as *const u8, bytes.as_mut_ptr(), len);
                }
            }
            TargetMemory::Process(memory) => {
                if memory.read_exact_at(addr, &mut bytes).is_err() {
                    self.failed(addr);
                }
            }
        }
        bytes
    }

    /// Every SQE slot's bytes, in one read.
    pub(super) fn read_sqes(&self) -> Vec<u8> {
        self.read_at(self.memory.sqes, self.sq_entries as usize * self.sqe_size)
    }

    /// Writes every SQE slot back from what [`Self::read_sqes`] returned.
    pub(super) fn write_sqes(&self, bytes: &[u8]) {
        self.write_at(self.memory.sqes, bytes);
    }

    /// The whole SQ array, or `None` without one.
    pub(super) fn read_array(&self) -> Option<Vec<u32>> {
        let array = self.sq_array?;
        let bytes = self.read_at(
            self.memory.rings + array as u64,
            self.sq_entries as usize * 4,
        );
        Some(
            bytes
                .chunks_exact(4)
                .map(|word| u32::from_ne_bytes([word[0], word[1], word[2], word[3]]))
                .collect(),
        )
    }

    pub(super) fn sq_head(&self) -> u32 {
        self.load(self.sq_head)
    }
    pub(super) fn sq_tail(&self) -> u32 {
        self.load(self.sq_tail)
    }
    pub(super) fn set_sq_tail(&self, tail: u32) {
        self.store(self.sq_tail, tail);
    }
    pub(super) fn sq_flags(&self) -> u32 {
        self.load(self.sq_flags)
    }
    pub(super) fn cq_head(&self) -> u32 {
        self.load(self.cq_head)
    }
    pub(super) fn set_cq_head(&self, head: u32) {
        self.store(self.cq_head, head);
    }
    pub(super) fn cq_tail(&self) -> u32 {
        self.load(self.cq_tail)
    }
    /// Writes the counters the kernel increments from memory
    /// (`sq_dropped`, `cq_overflow`) and the program's `cq_flags`.
    pub(super) fn set_counters(&self, sq_dropped: u32, cq_overflow: u32, cq_flags: u32) {
        self.store(self.sq_dropped, sq_dropped);
        self.store(self.cq_overflow, cq_overflow);
        self.store(self.cq_flags, cq_flags);
    }
    pub(super) fn has_sq_array(&self) -> bool {
        self.sq_array.is_some()
    }

    /// Writes entry `index` of the SQ array (ignored without one).
    pub(super) fn set_array_entry(&self, index: u32, value: u32) {
        if let Some(array) = self.sq_array {
            self.store(array + (index & (self.sq_entries - 1)) as usize * 4, value);
        }
    }

    /// Writes the whole SQ array (`sq_entries` values, fewer leave the
    /// rest alone; ignored without one), in one write.
    pub(super) fn set_array(&self, values: &[u32]) {
        if let Some(array) = self.sq_array {
            let count = values.len().min(self.sq_entries as usize);
            let bytes: Vec<u8> = values[..count]
                .iter()
                .flat_map(|value| value.to_ne_bytes())
                .collect();
            self.write_at(self.memory.rings + array as u64, &bytes);
        }
    }

    /// Writes `bytes` (at most one SQE) into SQE slot `slot`.
    pub(super) fn write_sqe(&self, slot: u32, bytes: &[u8]) {
        let slot = u64::from(slot & (self.sq_entries - 1));
        let len = bytes.len().min(self.sqe_size);
        self.write_at(
            self.memory.sqes + slot * self.sqe_size as u64,
            &bytes[..len],
        );
    }

    /// Writes `bytes` (at most one SQE, the rest of each slot zeroed) into
    /// every SQE slot, in one write.
    pub(super) fn fill_sqes(&self, bytes: &[u8]) {
        let mut all = vec![0u8; self.sq_entries as usize * self.sqe_size];
        let len = bytes.len().min(self.sqe_size);
        for slot in all.chunks_exact_mut(self.sqe_size) {
            slot[..len].copy_from_slice(&bytes[..len]);
        }
        self.write_at(self.memory.sqes, &all);
    }

    /// Zeroes every SQE slot: the NOPs that moved the positions leave
    /// their bytes behind, where the program's ring may have had zeros.
    /// Called only when the kernel has consumed every SQE (SQ head ==
    /// tail).
    pub(super) fn clear_sqes(&self) {
        self.fill_sqes(&[]);
    }

    /// Writes `bytes` (at most one CQE) into CQ slot `slot`.
    pub(super) fn write_cqe(&self, slot: u32, bytes: &[u8]) {
        let slot = u64::from(slot & (self.cq_entries - 1));
        let len = bytes.len().min(self.cqe_size);
        self.write_at(
            self.memory.rings + self.cqes as u64 + slot * self.cqe_size as u64,
            &bytes[..len],
        );
    }

    /// Reads CQ slot `slot` (one CQE's bytes).
    pub(super) fn read_cqe(&self, slot: u32) -> Vec<u8> {
        let slot = u64::from(slot & (self.cq_entries - 1));
        self.read_at(
            self.memory.rings + self.cqes as u64 + slot * self.cqe_size as u64,
            self.cqe_size,
        )
    }

    /// Releases `count` more SQEs (already in their slots) to the kernel
    /// and has them consumed: `io_uring_enter`, or with an SQ thread a
    /// wakeup if it sleeps and a wait until its head reaches the tail.
    /// `cqes` is how many CQEs the batch posts (NOPs that do not skip
    /// theirs): with an SQ thread, the wait for them sleeps in the kernel
    /// (`IORING_ENTER_GETEVENTS`) rather than spinning beside the thread
    /// that does the work.
    pub(super) fn submit(
        &self,
        enter: &mut Enter<'_>,
        count: u32,
        cqes: u32,
    ) -> Result<(), ContinuityError> {
        // Where the CQ tail gets once the batch is done, taken before the
        // batch is released: an SQ thread may post its CQEs at once.
        let cq_target = self.cq_tail().wrapping_add(cqes);
        let tail = self.sq_tail().wrapping_add(count);
        self.set_sq_tail(tail);
        if !self.sqpoll {
            let submitted = enter(count, 0, 0).map_err(syscall("io_uring_enter"))?;
            self.check()?;
            if submitted != count {
                return Err(ContinuityError::Diverged(format!(
                    "io_uring_enter consumed {submitted} of {count} SQEs"
                )));
            }
            return Ok(());
        }
        let started = Instant::now();
        let mut waited_for_cqes = cqes == 0;
        loop {
            // Order the tail store before reading the thread's flag, as the
            // SQ thread orders its flag store before rechecking the tail.
            fence(Ordering::SeqCst);
            self.check()?;
            if self.sq_head() == tail {
                return Ok(());
            }
            let mut flags = 0;
            if self.sq_flags() & IORING_SQ_NEED_WAKEUP != 0 {
                flags |= IORING_ENTER_SQ_WAKEUP;
            }
            let mut min_complete = 0;
            if !waited_for_cqes {
                if self.cq_tail() == cq_target {
                    waited_for_cqes = true;
                } else {
                    // Counted from the CQ head, as the kernel counts.
                    min_complete = cq_target.wrapping_sub(self.cq_head());
                    flags |= IORING_ENTER_GETEVENTS;
                }
            }
            if flags != 0 {
                match enter(0, min_complete, flags) {
                    Ok(_) => waited_for_cqes = true,
                    Err(rustix::io::Errno::INTR) => {}
                    Err(errno) => {
                        return Err(ContinuityError::Syscall {
                            call: "io_uring_enter(SQ_WAKEUP|GETEVENTS)",
                            errno,
                        })
                    }
                }
                continue;
            }
            if started.elapsed() > SQ_THREAD_PATIENCE {
                return Err(ContinuityError::Diverged(format!(
                    "the SQ thread did not consume {count} SQEs within {SQ_THREAD_PATIENCE:?}"
                )));
            }
            std::thread::yield_now();
        }
    }

    /// Runs the ring's pending task work (`IORING_ENTER_GETEVENTS` with no
    /// wait): what posts CQEs another ring sent to a `DEFER_TASKRUN` ring.
    pub(super) fn run_task_work(&self, enter: &mut Enter<'_>) -> Result<(), ContinuityError> {
        enter(0, 0, IORING_ENTER_GETEVENTS).map_err(syscall("io_uring_enter(GETEVENTS)"))?;
        Ok(())
    }

    /// Waits (with an SQ thread, which posts CQEs after it moves the head)
    /// until the CQ tail is `tail`; at once otherwise.
    pub(super) fn wait_cq_tail(&self, tail: u32) -> Result<(), ContinuityError> {
        let started = Instant::now();
        while self.cq_tail() != tail {
            self.check()?;
            if !self.sqpoll || started.elapsed() > SQ_THREAD_PATIENCE {
                return Err(ContinuityError::Diverged(format!(
                    "the CQ tail is {} where {tail} was expected",
                    self.cq_tail()
                )));
            }
            std::thread::yield_now();
        }
        Ok(())
    }
}
