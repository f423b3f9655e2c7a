//! Typed access to a ring's shared memory (heads, tails, flags, the SQ
//! array, SQE and CQE slots) at the offsets the kernel returned, and the
//! submission of a batch of SQEs already in their slots.

use std::os::fd::BorrowedFd;
use std::sync::atomic::{fence, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ringplan_kernel::abi::continuity::{
    IORING_ENTER_GETEVENTS, IORING_ENTER_SQ_WAKEUP, IORING_SQ_NEED_WAKEUP,
};
use rustix::io_uring::{io_uring_enter, io_uring_params, IoringEnterFlags};

use super::error::{syscall, ContinuityError};

/// How long an SQ thread may take to consume a batch before the step gives
/// up (it normally takes microseconds).
const SQ_THREAD_PATIENCE: Duration = Duration::from_secs(10);

/// Pointers into one ring's memory. Whoever holds a `RingsView` also owns
/// the memory it points into (and keeps it mapped while the view exists).
pub(super) struct RingsView {
    rings: *mut u8,
    sqes: *mut u8,
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
    /// A view of the rings at `rings` and the SQEs at `sqes`, laid out as
    /// `params` (what `io_uring_setup` returned) says.
    ///
    /// # Safety
    /// `rings` and `sqes` must point to the ring's mapped memory for as long
    /// as the view is used.
    pub(super) unsafe fn new(
        rings: *mut u8,
        sqes: *mut u8,
        params: &io_uring_params,
        has_sq_array: bool,
        sqe_size: usize,
        cqe_size: usize,
        sqpoll: bool,
    ) -> RingsView {
        RingsView {
            rings,
            sqes,
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

    fn word(&self, offset: usize) -> &AtomicU32 {
        // SAFETY: `offset` is one of the kernel's u32 offsets into the
        // mapped rings (aligned by the kernel), valid while the view is
        // (the contract of `new`); the kernel writes it concurrently, hence
        // an atomic.
        unsafe { &*self.rings.add(offset).cast::<AtomicU32>() }
    }

    pub(super) fn sq_head(&self) -> u32 {
        self.word(self.sq_head).load(Ordering::Acquire)
    }
    pub(super) fn sq_tail(&self) -> u32 {
        self.word(self.sq_tail).load(Ordering::Acquire)
    }
    pub(super) fn set_sq_tail(&self, tail: u32) {
        self.word(self.sq_tail).store(tail, Ordering::Release);
    }
    pub(super) fn sq_flags(&self) -> u32 {
        self.word(self.sq_flags).load(Ordering::Acquire)
    }
    pub(super) fn cq_head(&self) -> u32 {
        self.word(self.cq_head).load(Ordering::Acquire)
    }
    pub(super) fn set_cq_head(&self, head: u32) {
        self.word(self.cq_head).store(head, Ordering::Release);
    }
    pub(super) fn cq_tail(&self) -> u32 {
        self.word(self.cq_tail).load(Ordering::Acquire)
    }
    /// Writes the counters the kernel increments from memory
    /// (`sq_dropped`, `cq_overflow`) and the program's `cq_flags`.
    pub(super) fn set_counters(&self, sq_dropped: u32, cq_overflow: u32, cq_flags: u32) {
        self.word(self.sq_dropped)
            .store(sq_dropped, Ordering::Release);
        self.word(self.cq_overflow)
            .store(cq_overflow, Ordering::Release);
        self.word(self.cq_flags).store(cq_flags, Ordering::Release);
    }
    pub(super) fn has_sq_array(&self) -> bool {
        self.sq_array.is_some()
    }

    /// Writes entry `index` of the SQ array (ignored without one).
    pub(super) fn set_array_entry(&self, index: u32, value: u32) {
        if let Some(array) = self.sq_array {
            let offset = array + (index & (self.sq_entries - 1)) as usize * 4;
            self.word(offset).store(value, Ordering::Relaxed);
        }
    }

    /// Writes `bytes` (at most one SQE) into SQE slot `slot`.
    pub(super) fn write_sqe(&self, slot: u32, bytes: &[u8]) {
        let slot = (slot & (self.sq_entries - 1)) as usize;
        let len = bytes.len().min(self.sqe_size);
        // SAFETY: the slot is below sq_entries, so the write stays inside
        // the mapped SQE array (contract of `new`); the kernel reads SQEs
        // only after the tail is released past them.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.sqes.add(slot * self.sqe_size), len);
        }
    }

    /// Zeroes every SQE slot: the NOPs that moved the positions leave
    /// their bytes behind, where the program's ring may have had zeros.
    pub(super) fn clear_sqes(&self) {
        // SAFETY: the whole mapped SQE array (contract of `new`); called
        // only when the kernel has consumed every SQE (SQ head == tail).
        unsafe {
            std::ptr::write_bytes(self.sqes, 0, self.sq_entries as usize * self.sqe_size);
        }
    }

    /// Writes `bytes` (at most one CQE) into CQ slot `slot`.
    pub(super) fn write_cqe(&self, slot: u32, bytes: &[u8]) {
        let slot = (slot & (self.cq_entries - 1)) as usize;
        let len = bytes.len().min(self.cqe_size);
        // SAFETY: the slot is below cq_entries, inside the mapped CQE array;
        // the kernel does not write slots between the head and its tail.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.rings.add(self.cqes + slot * self.cqe_size),
                len,
            );
        }
    }

    /// Reads CQ slot `slot` (one CQE's bytes).
    pub(super) fn read_cqe(&self, slot: u32) -> Vec<u8> {
        let slot = (slot & (self.cq_entries - 1)) as usize;
        let mut bytes = vec![0; self.cqe_size];
        // SAFETY: inside the mapped CQE array, as in `write_cqe`.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.rings.add(self.cqes + slot * self.cqe_size),
                bytes.as_mut_ptr(),
                self.cqe_size,
            );
        }
        bytes
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
        fd: BorrowedFd<'_>,
        count: u32,
        cqes: u32,
    ) -> Result<(), ContinuityError> {
        // Where the CQ tail gets once the batch is done, taken before the
        // batch is released: an SQ thread may post its CQEs at once.
        let cq_target = self.cq_tail().wrapping_add(cqes);
        let tail = self.sq_tail().wrapping_add(count);
        self.set_sq_tail(tail);
        if !self.sqpoll {
            // SAFETY: no EXT_ARG flag, so no argument pointer is passed.
            let submitted = unsafe { io_uring_enter(fd, count, 0, IoringEnterFlags::empty()) }
                .map_err(syscall("io_uring_enter"))?;
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
                let flags = IoringEnterFlags::from_bits_retain(flags);
                // SAFETY: no EXT_ARG flag.
                match unsafe { io_uring_enter(fd, 0, min_complete, flags) } {
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
    pub(super) fn run_task_work(&self, fd: BorrowedFd<'_>) -> Result<(), ContinuityError> {
        let flags = IoringEnterFlags::from_bits_retain(IORING_ENTER_GETEVENTS);
        // SAFETY: no EXT_ARG flag.
        unsafe { io_uring_enter(fd, 0, 0, flags) }.map_err(syscall("io_uring_enter(GETEVENTS)"))?;
        Ok(())
    }

    /// Waits (with an SQ thread, which posts CQEs after it moves the head)
    /// until the CQ tail is `tail`; at once otherwise.
    pub(super) fn wait_cq_tail(&self, tail: u32) -> Result<(), ContinuityError> {
        let started = Instant::now();
        while self.cq_tail() != tail {
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
