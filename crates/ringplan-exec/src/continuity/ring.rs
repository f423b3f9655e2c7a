//! [`ContinuousRing`]: a ring created with `IORING_SETUP_NO_MMAP` on memory
//! placed at given addresses, and [`ring_layout`], the layout the kernel
//! gives a ring of given sizes and flags.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use ringplan_kernel::abi::continuity::{
    CQE32_SIZE, CQE_SIZE, SQE128_SIZE, SQE_SIZE, SQ_ARRAY_ENTRY_SIZE,
};
use ringplan_kernel::abi::SetupFlags;
use rustix::io_uring::{io_uring_params, IoringSetupFlags};

use super::error::{syscall, ContinuityError};
use super::memory::{release_all, PlacedMemory, PlacedRegion, RingPlacement};
use super::rings_view::RingsView;
use crate::backend::{Backend, InProcess, TargetMemory};

/// How the ring is set up: what `io_uring_setup` is given, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingSetup {
    pub sq_entries: u32,
    /// Used when `flags` has `IORING_SETUP_CQSIZE`.
    pub cq_entries: u32,
    /// The recorded `IORING_SETUP_*` bits; `NO_MMAP` is added.
    pub flags: u32,
    pub sq_thread_cpu: u32,
    pub sq_thread_idle_ms: u32,
    /// The ring to attach to, with `IORING_SETUP_ATTACH_WQ`.
    pub wq_fd: Option<i32>,
}

impl RingSetup {
    /// A ring of `sq_entries` with `flags` and nothing else.
    pub fn new(sq_entries: u32, flags: SetupFlags) -> RingSetup {
        RingSetup {
            sq_entries,
            cq_entries: 0,
            flags: flags.bits(),
            sq_thread_cpu: 0,
            sq_thread_idle_ms: 0,
            wq_fd: None,
        }
    }

    fn setup_flags(&self) -> SetupFlags {
        SetupFlags::from_bits_retain(self.flags)
    }

    fn params(&self, flags: SetupFlags) -> io_uring_params {
        let mut params = io_uring_params::default();
        params.flags = IoringSetupFlags::from_bits_retain(flags.bits());
        params.cq_entries = self.cq_entries;
        params.sq_thread_cpu = self.sq_thread_cpu;
        params.sq_thread_idle = self.sq_thread_idle_ms;
        if let Some(fd) = self.wq_fd {
            params.wq_fd = fd;
        }
        params
    }
}

/// Where the kernel puts things in a ring's memory, and how much memory the
/// rings and the SQEs take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingLayout {
    pub sq_entries: u32,
    pub cq_entries: u32,
    /// `io_uring_params.sq_off` (without `user_addr`): head, tail,
    /// ring_mask, ring_entries, flags, dropped, array.
    pub sq_off: [u32; 7],
    /// `io_uring_params.cq_off` (without `user_addr`): head, tail,
    /// ring_mask, ring_entries, overflow, cqes, flags.
    pub cq_off: [u32; 7],
    /// Bytes of the rings: up to the end of the SQ array, or of the CQEs
    /// without one.
    pub rings_len: u64,
    /// Bytes of the SQE array.
    pub sqes_len: u64,
    pub sqe_size: usize,
    pub cqe_size: usize,
}

impl RingLayout {
    fn from_params(params: &io_uring_params, flags: SetupFlags) -> RingLayout {
        let sqe_size = if flags.contains(SetupFlags::SQE128) {
            SQE128_SIZE
        } else {
            SQE_SIZE
        };
        let cqe_size = if flags.contains(SetupFlags::CQE32) {
            CQE32_SIZE
        } else {
            CQE_SIZE
        };
        let (sq, cq) = (&params.sq_off, &params.cq_off);
        let cqes_end = u64::from(cq.cqes) + u64::from(params.cq_entries) * cqe_size as u64;
        let array_end = if flags.contains(SetupFlags::NO_SQARRAY) {
            0
        } else {
            u64::from(sq.array) + u64::from(params.sq_entries) * SQ_ARRAY_ENTRY_SIZE as u64
        };
        RingLayout {
            sq_entries: params.sq_entries,
            cq_entries: params.cq_entries,
            sq_off: [
                sq.head,
                sq.tail,
                sq.ring_mask,
                sq.ring_entries,
                sq.flags,
                sq.dropped,
                sq.array,
            ],
            cq_off: [
                cq.head,
                cq.tail,
                cq.ring_mask,
                cq.ring_entries,
                cq.overflow,
                cq.cqes,
                cq.flags,
            ],
            rings_len: cqes_end.max(array_end),
            sqes_len: u64::from(params.sq_entries) * sqe_size as u64,
            sqe_size,
            cqe_size,
        }
    }
}

/// The layout the kernel gives an mmap'd ring of `setup`'s sizes and flags,
/// read from a throwaway ring ([`ringplan_kernel::probe::ring_params`]).
pub fn ring_layout(setup: &RingSetup) -> Result<RingLayout, ContinuityError> {
    let flags = setup.setup_flags();
    let params = ringplan_kernel::probe::ring_params(setup.sq_entries, setup.cq_entries, flags)
        .map_err(syscall("io_uring_setup(layout probe)"))?;
    Ok(RingLayout::from_params(&params, flags))
}

/// The bytes of ring memory and of SQE memory a ring of `setup` takes on
/// this kernel ([`ringplan_kernel::probe::ring_memory_sizes`]: no ring of
/// that size is set up, and the probe behind it is asked once per layout).
pub fn memory_sizes(setup: &RingSetup) -> Result<(u64, u64), ContinuityError> {
    let cq_entries = if setup.cq_entries == 0 || !setup.setup_flags().contains(SetupFlags::CQSIZE) {
        2 * setup.sq_entries.max(1).next_power_of_two()
    } else {
        setup.cq_entries.next_power_of_two()
    };
    ringplan_kernel::probe::ring_memory_sizes(
        setup.sq_entries.max(1).next_power_of_two(),
        cq_entries,
        setup.setup_flags(),
    )
    .map_err(syscall("io_uring_setup(layout probe)"))
}

/// Whether this kernel has `IORING_SETUP_NO_MMAP` (Linux 6.5): `Err` with
/// [`ContinuityError::NoMmapUnsupported`] when it does not. Asked of the
/// kernel ([`ringplan_kernel::probe::has_no_mmap`]), not read from its
/// version.
pub fn kernel_supports_no_mmap() -> Result<(), ContinuityError> {
    if ringplan_kernel::probe::has_no_mmap().map_err(syscall("io_uring_setup(NO_MMAP probe)"))? {
        Ok(())
    } else {
        let release = rustix::system::uname()
            .release()
            .to_string_lossy()
            .into_owned();
        Err(ContinuityError::NoMmapUnsupported { release })
    }
}

/// A ring whose rings and SQEs live in memory placed at chosen addresses,
/// in this process (`B = InProcess`, the default) or in the process a
/// backend acts in. In this process, dropping it closes the ring, then
/// unmaps the memory, and [`ContinuousRing::keep`] keeps both; in another,
/// [`ContinuousRing::release_in`] does what dropping does here.
pub struct ContinuousRing<B: Backend = InProcess> {
    // Field order is drop order: the ring goes before its memory.
    fd: B::Fd,
    /// A copy of the ring's fd in this process, for a helper ring's
    /// `MSG_RING` (made when first needed, and only for another process).
    local: Option<OwnedFd>,
    pub(super) view: RingsView,
    regions: Vec<PlacedRegion>,
    pub(super) layout: RingLayout,
    pub(super) flags: SetupFlags,
    params: io_uring_params,
    rings_addr: u64,
    sqes_addr: u64,
}

impl ContinuousRing {
    /// Places the ring's memory as `placement` says (never over a mapping)
    /// and creates the ring on it with `IORING_SETUP_NO_MMAP`: the kernel is
    /// given the first rings range long enough for the rings, and the SQE
    /// range. On any error everything made so far is released.
    pub fn create(
        setup: &RingSetup,
        placement: &RingPlacement,
    ) -> Result<ContinuousRing, ContinuityError> {
        kernel_supports_no_mmap()?;
        // Sized before anything is mapped, so a bad size maps nothing.
        memory_sizes(setup)?;
        ContinuousRing::create_on(setup, PlacedMemory::place(placement)?)
    }

    /// Creates the ring with `IORING_SETUP_NO_MMAP` on memory already
    /// placed; the memory is the ring's from here on (released with it on
    /// any error).
    pub fn create_on(
        setup: &RingSetup,
        memory: PlacedMemory,
    ) -> Result<ContinuousRing, ContinuityError> {
        ContinuousRing::create_in(&mut InProcess, setup, memory)
    }

    /// The ring's fd.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Keeps the ring and its memory for good: the memory stays mapped at
    /// its addresses, the fd is the caller's.
    pub fn keep(self) -> OwnedFd {
        let (fd, regions) = self.into_parts();
        regions.into_iter().for_each(PlacedRegion::keep);
        fd
    }
}

impl<B: Backend> ContinuousRing<B> {
    /// [`ContinuousRing::create_on`] in the process `backend` acts in (in
    /// the thread it runs syscalls in: the owner of a `SINGLE_ISSUER`
    /// ring): `io_uring_setup` runs there, and the ring's memory is reached
    /// there ([`crate::backend::TargetMemory`]). On any error the memory is
    /// released through `backend`.
    pub(crate) fn create_in(
        backend: &mut B,
        setup: &RingSetup,
        memory: PlacedMemory,
    ) -> Result<ContinuousRing<B>, ContinuityError> {
        match Self::try_create_in(backend, setup, &memory) {
            Ok((fd, view, layout, params, rings_addr)) => Ok(ContinuousRing {
                // An SQPOLL ring is woken and waited on from here.
                local: if setup.setup_flags().contains(SetupFlags::SQPOLL) {
                    backend.copy_here(B::number(&fd)).ok().flatten()
                } else {
                    None
                },
                fd,
                view,
                sqes_addr: memory.placement.sqes.addr,
                regions: memory.into_regions(),
                layout,
                flags: setup.setup_flags() | SetupFlags::NO_MMAP,
                params,
                rings_addr,
            }),
            Err(error) => {
                memory.release_in(backend);
                Err(error)
            }
        }
    }

    #[allow(clippy::type_complexity)]
    fn try_create_in(
        backend: &mut B,
        setup: &RingSetup,
        memory: &PlacedMemory,
    ) -> Result<(B::Fd, RingsView, RingLayout, io_uring_params, u64), ContinuityError> {
        let (rings_len, sqes_len) = memory_sizes(setup)?;
        let placement = &memory.placement;
        let rings_addr = placement
            .rings
            .iter()
            .find(|range| range.len >= rings_len)
            .map(|range| range.addr)
            .ok_or_else(|| {
                ContinuityError::BadRequest(format!(
                    "no rings range is {rings_len:#x} bytes long, which a ring of {} SQ entries needs",
                    setup.sq_entries
                ))
            })?;
        if placement.sqes.len < sqes_len {
            return Err(ContinuityError::BadRequest(format!(
                "SQE memory {:#x}+{:#x}: the ring needs {sqes_len:#x} bytes there",
                placement.sqes.addr, placement.sqes.len
            )));
        }
        // This process reaches the memory at its own addresses (in this
        // process, or a mapping here of memory placed in another: every
        // rings range maps the memfd from offset 0), or at the target's
        // through /proc/PID/mem.
        let (access, view_addresses) = match memory.aliases {
            Some(here) => (TargetMemory::Local, here),
            None => (
                backend.memory().map_err(syscall("open(/proc/PID/mem)"))?,
                (rings_addr, placement.sqes.addr),
            ),
        };
        let flags = setup.setup_flags() | SetupFlags::NO_MMAP;
        let mut params = setup.params(flags);
        params.sq_off.user_addr = (placement.sqes.addr as *mut std::ffi::c_void).into();
        params.cq_off.user_addr = (rings_addr as *mut std::ffi::c_void).into();
        // The user addresses in `params` are the regions just placed, each
        // long enough for what the kernel puts there (checked against
        // `memory_sizes`), and the ring's from here on.
        let fd = backend
            .io_uring_setup(setup.sq_entries, &mut params)
            .map_err(syscall("io_uring_setup(NO_MMAP)"))?;
        let sqpoll = flags.contains(SetupFlags::SQPOLL);
        let layout = RingLayout::from_params(&params, flags);
        // SAFETY: with local access the addresses are of mappings in this
        // process (the regions just placed, or their aliases here) that
        // live in the ring's `regions` as long as the view does (same
        // owner); otherwise the view reads and writes at the target's
        // addresses through `/proc/PID/mem`.
        let view = unsafe {
            RingsView::new(
                access,
                view_addresses,
                &params,
                !flags.contains(SetupFlags::NO_SQARRAY),
                layout.sqe_size,
                layout.cqe_size,
                sqpoll,
            )
        };
        Ok((fd, view, layout, params, rings_addr))
    }

    /// The ring was enabled (`IORING_REGISTER_ENABLE_RINGS`): NOPs and
    /// messages may now move its positions.
    pub(crate) fn mark_enabled(&mut self) {
        self.flags.remove(SetupFlags::R_DISABLED);
    }

    /// The ring's fd number, in the process that keeps it.
    pub(crate) fn fd_number(&self) -> RawFd {
        B::number(&self.fd)
    }

    /// Replaces the ring's fd with `fd`, a duplicate of it (moved to
    /// another number); the old one is closed through `backend`.
    pub(crate) fn replace_fd(&mut self, backend: &mut B, fd: B::Fd) {
        // A copy here is of the ring's file, whatever its number there.
        let old = std::mem::replace(&mut self.fd, fd);
        backend.close(old);
    }

    /// The ring's fd as this process reaches it: the fd itself in this
    /// process, else a copy of it here (`pidfd_getfd`, made once).
    pub(super) fn fd_here(&mut self, backend: &mut B) -> Result<RawFd, ContinuityError> {
        if let Some(local) = &self.local {
            return Ok(local.as_raw_fd());
        }
        match backend
            .copy_here(self.fd_number())
            .map_err(syscall("pidfd_getfd(ring)"))?
        {
            None => Ok(self.fd_number()),
            Some(copy) => {
                let number = copy.as_raw_fd();
                self.local = Some(copy);
                Ok(number)
            }
        }
    }

    /// Calls `io_uring_enter` on this ring through `backend` (in the
    /// thread it runs syscalls in). An SQPOLL ring's calls submit nothing
    /// (its SQ thread does): they wake the thread and wait for completions,
    /// which any task holding the ring may do without binding itself to
    /// it, so in another process they are made here, on the copy of the
    /// ring's fd ([`Self::fd_here`]), sparing an injected syscall per
    /// batch.
    pub(super) fn enter(
        &self,
        backend: &mut B,
        to_submit: u32,
        min_complete: u32,
        flags: u32,
    ) -> Result<u32, rustix::io::Errno> {
        match &self.local {
            Some(local) if self.flags.contains(SetupFlags::SQPOLL) && to_submit == 0 => {
                InProcess.io_uring_enter(local.as_raw_fd(), 0, min_complete, flags)
            }
            _ => backend.io_uring_enter(self.fd_number(), to_submit, min_complete, flags),
        }
    }

    /// The layout `io_uring_setup` returned for this ring.
    pub fn layout(&self) -> &RingLayout {
        &self.layout
    }

    /// The flags the ring was created with (the recorded ones and `NO_MMAP`).
    pub fn flags(&self) -> SetupFlags {
        self.flags
    }

    /// What `io_uring_setup` returned.
    pub fn params(&self) -> &io_uring_params {
        &self.params
    }

    /// The address the kernel was given for the rings.
    pub fn rings_addr(&self) -> u64 {
        self.rings_addr
    }

    /// The address of the SQEs.
    pub fn sqes_addr(&self) -> u64 {
        self.sqes_addr
    }

    /// (SQ head, SQ tail, CQ head, CQ tail) as the ring's memory holds them.
    pub fn positions_in_memory(&self) -> (u32, u32, u32, u32) {
        let view = &self.view;
        (
            view.sq_head(),
            view.sq_tail(),
            view.cq_head(),
            view.cq_tail(),
        )
    }

    /// The ring's fd and its memory, each owned by the caller (who must
    /// close the fd before releasing the memory, or keep both).
    pub(crate) fn into_parts(self) -> (B::Fd, Vec<PlacedRegion>) {
        let ContinuousRing { fd, regions, .. } = self;
        (fd, regions)
    }

    /// Closes the ring and gives its memory back, through `backend`.
    pub(crate) fn release_in(self, backend: &mut B) {
        let (fd, regions) = self.into_parts();
        backend.close(fd);
        release_all(regions, backend);
    }
}
