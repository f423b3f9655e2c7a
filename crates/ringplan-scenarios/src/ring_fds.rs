//! Registered ring fds for the scenarios (`IORING_REGISTER_RING_FDS`): a
//! ring registered in a slot of the calling thread ([`OwnSlots`], released
//! when dropped) or of a helper thread kept alive for the scenario's life
//! ([`SlotThread`]), since the kernel keeps the slots per thread and
//! drops a thread's when it exits.

use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::mpsc;
use std::thread::JoinHandle;

use ringplan_kernel::abi::ring_fd;
use rustix::io_uring::{io_uring_register, IoringRegisterOp};

use crate::ScenarioError;

/// The calling thread's id.
pub(crate) fn current_tid() -> u32 {
    rustix::thread::gettid()
        .as_raw_nonzero()
        .get()
        .unsigned_abs()
}

/// Registers ring `fd` at `offset` in the calling thread.
pub(crate) fn register(fd: BorrowedFd<'_>, offset: u32) -> Result<(), ScenarioError> {
    let updates = ring_fd::updates(&[(offset, fd.as_raw_fd())]);
    // SAFETY: `updates` is one io_uring_rsrc_update, alive for the call;
    // the kernel reads it and writes back only its offset field.
    let registered = unsafe {
        io_uring_register(
            fd,
            IoringRegisterOp::RegisterRingFds,
            updates.as_ptr().cast(),
            1,
        )
    }
    .map_err(|errno| {
        ScenarioError::syscall(
            format!(
                "io_uring_register({}, REGISTER_RING_FDS at {offset})",
                fd.as_raw_fd()
            ),
            errno,
        )
    })?;
    if registered != 1 {
        return Err(ScenarioError::syscall(
            format!(
                "io_uring_register({}, REGISTER_RING_FDS at {offset}) registered none",
                fd.as_raw_fd()
            ),
            rustix::io::Errno::INVAL,
        ));
    }
    Ok(())
}

/// Unregisters the calling thread's slots at `offsets`; `fd` is any ring
/// the kernel lets this thread call `io_uring_register` on.
fn unregister(fd: RawFd, offsets: &[u32]) {
    let slots: Vec<(u32, i32)> = offsets.iter().map(|&offset| (offset, 0)).collect();
    let updates = ring_fd::updates(&slots);
    // SAFETY: `fd` is open (the caller keeps it); `updates` holds
    // offsets.len() io_uring_rsrc_update entries, alive for the call.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    // SAFETY: as above; the kernel only reads the array.
    let _ = unsafe {
        io_uring_register(
            fd,
            IoringRegisterOp::UnregisterRingFds,
            updates.as_ptr().cast(),
            offsets.len() as u32,
        )
    };
}

/// Slots the calling thread registered: unregistered when dropped (a
/// ring held in a slot outlives its fds, and the thread that built a
/// scenario, a test's, may live on). Must be dropped in the thread that
/// registered them, while the rings' fds it names are open (`Built` drops
/// it before its rings).
#[derive(Debug, Default)]
pub(crate) struct OwnSlots {
    /// (ring fd to call `io_uring_register` on, or `None` when the
    /// scenario closed it; offset).
    slots: Vec<(Option<RawFd>, u32)>,
}

impl OwnSlots {
    pub(crate) fn register(
        &mut self,
        fd: BorrowedFd<'_>,
        offset: u32,
    ) -> Result<(), ScenarioError> {
        register(fd, offset)?;
        self.slots.push((Some(fd.as_raw_fd()), offset));
        Ok(())
    }

    /// Registers ring `fd` at `offset`; the caller is about to close `fd`
    /// (liburing's `io_uring_close_ring_fd`), so the slot is later
    /// unregistered through a throwaway ring.
    pub(crate) fn register_before_close(
        &mut self,
        fd: BorrowedFd<'_>,
        offset: u32,
    ) -> Result<(), ScenarioError> {
        register(fd, offset)?;
        self.slots.push((None, offset));
        Ok(())
    }
}

impl Drop for OwnSlots {
    fn drop(&mut self) {
        // The kernel unregisters from the calling thread's slots whatever
        // ring it is called on: a throwaway one serves the closed rings.
        let mut throwaway = None;
        for &(fd, offset) in &self.slots {
            let fd = match fd {
                Some(fd) => fd,
                None => {
                    if throwaway.is_none() {
                        let mut params = rustix::io_uring::io_uring_params::default();
                        // SAFETY: io_uring_setup only fills `params`; the
                        // ring is never mapped or submitted to.
                        throwaway =
                            unsafe { rustix::io_uring::io_uring_setup(1, &mut params) }.ok();
                    }
                    match &throwaway {
                        Some(ring) => ring.as_raw_fd(),
                        None => continue,
                    }
                }
            };
            unregister(fd, &[offset]);
        }
    }
}

/// A helper thread that registers rings at chosen offsets in its own
/// slots and waits until dropped; then it unregisters them and exits.
#[derive(Debug)]
pub(crate) struct SlotThread {
    pub(crate) tid: u32,
    stop: Option<mpsc::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl SlotThread {
    /// Starts the thread and registers `slots` ((ring fd, offset)) there.
    /// The fds must stay open while the thread lives.
    pub(crate) fn start(slots: Vec<(RawFd, u32)>) -> Result<SlotThread, ScenarioError> {
        let (ready_tx, ready_rx) = mpsc::channel::<Result<u32, ScenarioError>>();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let handle = std::thread::Builder::new()
            .name("ring-fd slots".into())
            .spawn(move || {
                for &(fd, offset) in &slots {
                    // SAFETY: the scenario keeps `fd` open while this
                    // thread lives (it joins it before closing its rings).
                    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
                    if let Err(error) = register(borrowed, offset) {
                        let _ = ready_tx.send(Err(error));
                        return;
                    }
                }
                let _ = ready_tx.send(Ok(current_tid()));
                let _ = stop_rx.recv();
                for &(fd, offset) in &slots {
                    unregister(fd, &[offset]);
                }
            })
            .map_err(|error| {
                ScenarioError::syscall(
                    format!("starting a thread ({error})"),
                    rustix::io::Errno::AGAIN,
                )
            })?;
        let mut thread = SlotThread {
            tid: 0,
            stop: Some(stop_tx),
            handle: Some(handle),
        };
        match ready_rx.recv() {
            Ok(Ok(tid)) => thread.tid = tid,
            Ok(Err(error)) => return Err(error),
            Err(_) => {
                return Err(ScenarioError::syscall(
                    "the ring-fd thread ended before registering".into(),
                    rustix::io::Errno::CHILD,
                ))
            }
        }
        Ok(thread)
    }
}

impl Drop for SlotThread {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}
