//! From a `struct page` address (what the BPF program reports for the
//! first page of a ring's memory) to its page frame number, which
//! `/proc/PID/pagemap` shows: that is how the dumper finds where a
//! NO_MMAP ring's memory lies in the program (the kernel keeps the pinned
//! pages, not the address it was given).
//!
//! With `CONFIG_SPARSEMEM_VMEMMAP` (x86-64) the `struct page`s form one
//! array, so `page = base + frame * sizeof(struct page)`. The base moves
//! with KASLR and is not a symbol the dumper can read, so it is measured
//! (`BpfDumper::page_frames`): a NO_MMAP probe ring of the dumper's own
//! ([`ProbeRing`]) on a page whose frame number its own pagemap shows, or
//! where the kernel has no NO_MMAP (before 6.5), a plain probe ring with a
//! buffer ring on such a page ([`ProbeRing::with_buffer_ring`]).

use std::ffi::c_void;
use std::os::fd::OwnedFd;

use ringplan_kernel::abi::linux::PAGE_SIZE;
use ringplan_kernel::procfs::{pagemap, Process};
use rustix::io_uring::{io_uring_params, io_uring_ptr, io_uring_setup, IoringSetupFlags};
use rustix::mm::{MapFlags, ProtFlags};

/// The `struct page` array's base and element size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PageFrames {
    base: u64,
    size: u64,
}

impl PageFrames {
    /// From the probe's page: its `struct page` address, the size of a
    /// `struct page`, and its frame number.
    pub(super) fn measured(page: u64, size: u64, frame: u64) -> Option<PageFrames> {
        if page == 0 || size == 0 {
            return None;
        }
        let base = page.checked_sub(frame.checked_mul(size)?)?;
        Some(PageFrames { base, size })
    }

    /// The frame number of the `struct page` at `page`, if it is one.
    pub(crate) fn frame_of(&self, page: u64) -> Option<u64> {
        let offset = page.checked_sub(self.base)?;
        (offset % self.size == 0).then_some(offset / self.size)
    }
}

/// A NO_MMAP ring of the dumper's own on two anonymous pages (rings, then
/// SQEs), and the frame number of the first. The ring closes before the
/// pages are unmapped (field order is drop order).
pub(super) struct ProbeRing {
    pub(super) ring: OwnedFd,
    pub(super) frame: u64,
    /// The memory the ring lives in, kept until after the ring closes.
    _pages: ProbePages,
}

struct ProbePages {
    addr: *mut c_void,
    len: usize,
}

impl ProbePages {
    /// `len` bytes of new private anonymous memory, populated, and the
    /// frame number of its first page (`what` names it in errors).
    fn map(len: usize, what: &str) -> Result<(ProbePages, u64), String> {
        // SAFETY: a new private anonymous mapping, used only by the probe.
        let addr = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE | MapFlags::POPULATE,
            )
        }
        .map_err(|errno| format!("mapping {what}: {errno}"))?;
        let pages = ProbePages { addr, len };
        let frame = pagemap::frame_of(Process::Current, pages.addr as u64)
            .map_err(|error| error.to_string())?
            .filter(|&frame| frame != 0)
            .ok_or("this process's pagemap shows no frame numbers (needs CAP_SYS_ADMIN)")?;
        Ok((pages, frame))
    }
}

impl Drop for ProbePages {
    fn drop(&mut self) {
        // SAFETY: `addr`/`len` is a mapping this struct made; the probe
        // ring that pinned it has been closed (ProbeRing's field order).
        let _ = unsafe { rustix::mm::munmap(self.addr, self.len) };
    }
}

impl ProbeRing {
    /// A plain ring with a one-entry buffer ring (bgid 0) on a page of
    /// its own, whose frame number is `frame`: for kernels without
    /// NO_MMAP (6.1), whose buffer rings are pinned pages all the same.
    pub(super) fn with_buffer_ring() -> Result<ProbeRing, String> {
        use ringplan_kernel::abi::pbuf::BufReg;
        use rustix::io_uring::{io_uring_register, IoringRegisterOp};
        let (pages, frame) = ProbePages::map(PAGE_SIZE as usize, "a probe page")?;
        let mut params = io_uring_params::default();
        // SAFETY: `params` is initialized; the ring is never submitted to.
        let ring = unsafe { io_uring_setup(1, &mut params) }
            .map_err(|errno| format!("a probe ring: {errno}"))?;
        let reg = BufReg {
            ring_addr: pages.addr as u64,
            ring_entries: 1,
            ..BufReg::default()
        };
        // SAFETY: `reg` is a `struct io_uring_buf_reg` (nr_args 1) naming
        // `pages`, which outlive the ring (dropped after it).
        unsafe {
            io_uring_register(
                &ring,
                IoringRegisterOp::RegisterPbufRing,
                std::ptr::from_ref(&reg).cast(),
                1,
            )
        }
        .map_err(|errno| format!("a probe buffer ring: {errno}"))?;
        Ok(ProbeRing {
            ring,
            frame,
            _pages: pages,
        })
    }

    /// `Err` says why not: a kernel without NO_MMAP, no `CAP_SYS_ADMIN`
    /// (frame numbers then read 0).
    pub(super) fn new() -> Result<ProbeRing, String> {
        let (pages, frame) = ProbePages::map(2 * PAGE_SIZE as usize, "probe pages")?;
        let mut params = io_uring_params::default();
        params.flags = IoringSetupFlags::NO_MMAP;
        params.cq_off.user_addr = io_uring_ptr::new(pages.addr);
        params.sq_off.user_addr =
            io_uring_ptr::new(pages.addr.wrapping_byte_add(PAGE_SIZE as usize));
        // SAFETY: the ring lives in `pages`, which outlive it (dropped after
        // it); it is never submitted to.
        let ring = unsafe { io_uring_setup(1, &mut params) }
            .map_err(|errno| format!("a NO_MMAP probe ring: {errno}"))?;
        Ok(ProbeRing {
            ring,
            frame,
            _pages: pages,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_come_back_from_page_addresses() {
        let frames = PageFrames::measured(0xffff_ea00_0000_0000 + 64 * 1000, 64, 1000)
            .expect("a measurement");
        assert_eq!(frames.frame_of(0xffff_ea00_0000_0000 + 64 * 77), Some(77));
        assert_eq!(frames.frame_of(0xffff_ea00_0000_0000 + 64 * 77 + 8), None);
        assert_eq!(frames.frame_of(0x1000), None);
        assert_eq!(PageFrames::measured(0, 64, 1), None);
    }
}
