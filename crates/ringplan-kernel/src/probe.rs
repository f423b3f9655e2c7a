//! Asking the running kernel what it does, with throwaway rings of the
//! caller's own, rather than reading its version (a backport would fool
//! that): the layout it gives a ring of given sizes and flags, and whether
//! it takes ring memory from the program (`IORING_SETUP_NO_MMAP`).
//!
//! Each probe sets up one ring, never maps, submits to or keeps it, and
//! closes it before returning. The answers that depend on the kernel only
//! (whether it has `NO_MMAP`, the header length of a layout) are kept for
//! the life of the process: a restorer that restores many rings, or many
//! times, asks once.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Mutex, OnceLock};

use rustix::io::Errno;
use rustix::io_uring::{io_uring_params, io_uring_setup, IoringSetupFlags};

use crate::abi::linux::PAGE_SIZE;
use crate::abi::SetupFlags;

/// Flags that change no offset of a ring's memory but would start a thread,
/// need another ring or need memory of ours: left out of a layout probe.
const NOT_IN_LAYOUT_PROBE: SetupFlags = SetupFlags::SQPOLL
    .union(SetupFlags::SQ_AFF)
    .union(SetupFlags::ATTACH_WQ)
    .union(SetupFlags::R_DISABLED)
    .union(SetupFlags::NO_MMAP)
    .union(SetupFlags::REGISTERED_FD_ONLY);

/// The `io_uring_params` the kernel fills in (`sq_off`, `cq_off`, the
/// entries it settled on, `features`) for a ring of `sq_entries` and
/// `cq_entries` (passed with `IORING_SETUP_CQSIZE`; 0 for the kernel's
/// default, twice `sq_entries`) set up with `flags`, less the flags that
/// change no offset ([`NOT_IN_LAYOUT_PROBE`]). A ring
/// set up with the same sizes and flags, mmap'd or on the program's memory,
/// has its heads, tails, SQ array and CQEs at these offsets.
pub fn ring_params(
    sq_entries: u32,
    cq_entries: u32,
    flags: SetupFlags,
) -> Result<io_uring_params, Errno> {
    let mut flags = flags - NOT_IN_LAYOUT_PROBE - SetupFlags::CQSIZE;
    if cq_entries != 0 {
        flags |= SetupFlags::CQSIZE;
    }
    let mut params = io_uring_params::default();
    params.flags = IoringSetupFlags::from_bits_retain(flags.bits());
    params.cq_entries = cq_entries;
    // SAFETY: without NO_MMAP the kernel reads no user address from
    // `params` and only fills it in; the ring is closed when `ring` drops,
    // unmapped and unused.
    let ring = unsafe { io_uring_setup(sq_entries, &mut params) }?;
    drop(ring);
    Ok(params)
}

/// The alignment of the SQ array after the CQEs (`SMP_CACHE_BYTES`, the
/// L1 cache line of x86-64 and arm64).
const SQ_ARRAY_ALIGN: u64 = 64;

/// The bytes of ring memory (the `struct io_rings` header, the CQEs and the
/// SQ array) and of SQE memory that a ring of `sq_entries` and
/// `cq_entries` set up with `flags` takes, without a ring of that size:
/// the header's length comes from a 1-entry probe of the same layout flags
/// (its `cq_off.cqes`), the rest from the kernel's formula
/// (`rings_size()` in io_uring/io_uring.c: the CQEs follow the header, the
/// whole doubled with `IORING_SETUP_CQE32`; the SQ array, where there is
/// one, starts at the next cache line). Checked
/// against a probe of the full size by the executor's continuity tests.
pub fn ring_memory_sizes(
    sq_entries: u32,
    cq_entries: u32,
    flags: SetupFlags,
) -> Result<(u64, u64), Errno> {
    let layout_flags = flags & crate::abi::continuity::LAYOUT_FLAGS;
    let header = ring_header_len(layout_flags)?;
    let sqe_size = crate::abi::continuity::sqe_size(flags.bits()) as u64;
    // The kernel sizes the header and 16-byte CQEs, then doubles the whole
    // for 32-byte CQEs.
    let mut cqes_end =
        u64::from(header) + u64::from(cq_entries) * crate::abi::continuity::CQE_SIZE as u64;
    if layout_flags.contains(SetupFlags::CQE32) {
        cqes_end *= 2;
    }
    let rings = if layout_flags.contains(SetupFlags::NO_SQARRAY) {
        cqes_end
    } else {
        cqes_end.next_multiple_of(SQ_ARRAY_ALIGN)
            + u64::from(sq_entries) * crate::abi::continuity::SQ_ARRAY_ENTRY_SIZE as u64
    };
    Ok((rings, u64::from(sq_entries) * sqe_size))
}

/// `cq_off.cqes` (the length of the `struct io_rings` header) of a ring
/// with `layout_flags`, from a 1-entry probe the first time it is asked in
/// this process.
fn ring_header_len(layout_flags: SetupFlags) -> Result<u32, Errno> {
    static HEADERS: OnceLock<Mutex<HashMap<u32, u32>>> = OnceLock::new();
    let headers = HEADERS.get_or_init(Mutex::default);
    let known = headers
        .lock()
        .ok()
        .and_then(|headers| headers.get(&layout_flags.bits()).copied());
    if let Some(header) = known {
        return Ok(header);
    }
    let header = ring_params(1, 0, layout_flags)?.cq_off.cqes;
    if let Ok(mut headers) = headers.lock() {
        headers.insert(layout_flags.bits(), header);
    }
    Ok(header)
}

/// Whether this kernel has `IORING_SETUP_NO_MMAP` (Linux 6.5): a 1-entry
/// ring set up on two pages of our own, the first time it is asked in this
/// process; a kernel that does not know the flag refuses it with `EINVAL`
/// (`Ok(false)`). Another error is the system's, not an answer (and is
/// asked again next time).
pub fn has_no_mmap() -> Result<bool, Errno> {
    static ANSWER: OnceLock<bool> = OnceLock::new();
    if let Some(answer) = ANSWER.get() {
        return Ok(*answer);
    }
    let answer = probe_no_mmap()?;
    Ok(*ANSWER.get_or_init(|| answer))
}

fn probe_no_mmap() -> Result<bool, Errno> {
    let page = PAGE_SIZE as usize;
    // SAFETY: a fresh private mapping at an address the kernel picks; it
    // aliases nothing and is unmapped below, after the probe ring (which
    // pins it) is closed.
    let pages = unsafe {
        rustix::mm::mmap_anonymous(
            std::ptr::null_mut(),
            2 * page,
            rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
            rustix::mm::MapFlags::PRIVATE,
        )
    }?;
    let mut params = io_uring_params::default();
    params.flags = IoringSetupFlags::NO_MMAP;
    params.cq_off.user_addr = pages.into();
    // SAFETY: `pages` + one page is inside the two-page mapping made above.
    let sqes = unsafe { pages.cast::<u8>().add(page) }.cast::<c_void>();
    params.sq_off.user_addr = sqes.into();
    // SAFETY: the two user addresses are the pages mapped above, writable
    // and alive until after the probe ring is dropped.
    let answer = match unsafe { io_uring_setup(1, &mut params) } {
        Ok(ring) => {
            drop(ring);
            Ok(true)
        }
        Err(Errno::INVAL) => Ok(false),
        Err(errno) => Err(errno),
    };
    // SAFETY: the mapping made above, no longer pinned by any ring.
    unsafe { rustix::mm::munmap(pages, 2 * page) }?;
    answer
}

/// The kernel's head of buffer ring `bgid` of the ring at `ring`, asked
/// with `IORING_REGISTER_PBUF_STATUS` (6.8+). `Ok(None)`: this kernel has
/// no such call (`EINVAL` for the opcode; also what it answers for a group
/// that is no buffer ring, so callers ask only of groups they know).
pub fn pbuf_head(ring: std::os::fd::BorrowedFd<'_>, bgid: u16) -> Result<Option<u16>, Errno> {
    use crate::abi::pbuf::BufStatus;
    let mut status = BufStatus {
        buf_group: u32::from(bgid),
        ..BufStatus::default()
    };
    // SAFETY: `status` is a `struct io_uring_buf_status` (nr_args 1) that
    // the kernel fills; it outlives the call.
    let result = unsafe {
        rustix::io_uring::io_uring_register(
            ring,
            rustix::io_uring::IoringRegisterOp::RegisterPbufStatus,
            std::ptr::from_mut(&mut status)
                .cast::<c_void>()
                .cast_const(),
            1,
        )
    };
    match result {
        Ok(_) => Ok(Some(status.head as u16)),
        Err(Errno::INVAL) => Ok(None),
        Err(errno) => Err(errno),
    }
}

/// Whether this kernel registers wait regions (`IORING_REGISTER_MEM_REGION`
/// with `IORING_MEM_REGION_REG_WAIT_ARG`, Linux 6.13): one page of our own
/// registered on a 1-entry ring set up `R_DISABLED`, the first time it is
/// asked in this process; a kernel without the opcode refuses it with
/// `EINVAL` (`Ok(false)`). Another error is the system's, not an answer.
pub fn has_wait_regions() -> Result<bool, Errno> {
    static ANSWER: OnceLock<bool> = OnceLock::new();
    if let Some(answer) = ANSWER.get() {
        return Ok(*answer);
    }
    let answer = probe_wait_regions()?;
    Ok(*ANSWER.get_or_init(|| answer))
}

fn probe_wait_regions() -> Result<bool, Errno> {
    use crate::abi::settings::{
        mem_region_reg, user_region_desc, IORING_MEM_REGION_REG_WAIT_ARG,
        IORING_REGISTER_MEM_REGION,
    };
    let page = PAGE_SIZE as usize;
    // SAFETY: a fresh private mapping at an address the kernel picks; it
    // aliases nothing and is unmapped below, after the probe ring (which
    // pins it) is closed.
    let memory = unsafe {
        rustix::mm::mmap_anonymous(
            std::ptr::null_mut(),
            page,
            rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
            rustix::mm::MapFlags::PRIVATE,
        )
    }?;
    let mut params = io_uring_params::default();
    params.flags = IoringSetupFlags::R_DISABLED;
    // SAFETY: `params` is initialized and asks for a plain disabled ring.
    let answer = match unsafe { io_uring_setup(1, &mut params) } {
        Ok(ring) => {
            let desc = user_region_desc(memory as u64, PAGE_SIZE);
            let reg = mem_region_reg(
                desc.as_ptr() as u64,
                u64::from(IORING_MEM_REGION_REG_WAIT_ARG),
            );
            // SAFETY: `reg` points at `desc`, which names the page mapped
            // above; the kernel reads both during the call and pins the
            // page until the ring, dropped below, goes.
            let result = unsafe {
                libc::syscall(
                    libc::SYS_io_uring_register,
                    std::os::fd::AsRawFd::as_raw_fd(&ring),
                    IORING_REGISTER_MEM_REGION,
                    reg.as_ptr(),
                    1,
                )
            };
            let errno = std::io::Error::last_os_error();
            drop(ring);
            match result {
                0.. => Ok(true),
                _ => match Errno::from_io_error(&errno) {
                    Some(Errno::INVAL) => Ok(false),
                    Some(errno) => Err(errno),
                    None => Err(Errno::IO),
                },
            }
        }
        Err(errno) => Err(errno),
    };
    // SAFETY: the mapping made above, no longer pinned by any ring.
    unsafe { rustix::mm::munmap(memory, page) }?;
    answer
}

/// Whether `IORING_REGISTER_IOWQ_AFF` on an `SQPOLL` ring sets the SQ
/// thread's io-wq (`io_sqpoll_wq_cpu_affinity`, 6.6+) rather than the
/// caller's: the function is in `/proc/kallsyms` (named even where
/// addresses are hidden). False when kallsyms cannot be read.
pub fn sqpoll_iowq_affinity() -> bool {
    std::fs::read_to_string("/proc/kallsyms").is_ok_and(|symbols| {
        symbols
            .lines()
            .any(|line| line.split_whitespace().nth(2) == Some("io_sqpoll_wq_cpu_affinity"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layout_probe_reports_the_sizes_it_was_given() {
        let params = ring_params(8, 32, SetupFlags::SQPOLL | SetupFlags::CQE32)
            .expect("a plain 8/32 ring sets up");
        assert_eq!((params.sq_entries, params.cq_entries), (8, 32));
        assert!(params.cq_off.cqes > 0 && params.sq_off.array > params.cq_off.cqes);
    }

    #[test]
    fn the_no_mmap_probe_answers_without_failing() {
        // Either answer is this kernel's; the probe itself must not fail.
        has_no_mmap().expect("the probe runs");
    }
}
