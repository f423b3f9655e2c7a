//! Memory for a ring's rings and SQEs at chosen addresses, placed with
//! `MAP_FIXED_NOREPLACE` (never over an existing mapping) and owned until
//! the ring is kept: an `OwnedMapping` unmaps itself when dropped.

use std::ffi::c_void;
use std::os::fd::OwnedFd;

use ringplan_kernel::abi::linux::{PAGE_SIZE, USER_ADDRESS_LIMIT};
use rustix::fs::MemfdFlags;
use rustix::io::Errno;
use rustix::mm::{MapFlags, ProtFlags};

use super::error::{syscall, ContinuityError};
use crate::owned_mapping::OwnedMapping;

/// One range of the program's address space: where a region goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionPlacement {
    /// Page-aligned start address.
    pub addr: u64,
    /// Length in bytes (rounded up to pages when mapped).
    pub len: u64,
}

/// What backs the placed memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backing {
    /// A memfd per region (`MAP_SHARED`): the rings can be shown at two
    /// addresses, as a program that mapped the SQ and CQ rings separately
    /// sees them.
    Memfd,
    /// Private anonymous memory, as `io_uring_queue_init_mem` users give;
    /// the rings at one address only.
    Anonymous,
}

/// Where a ring's memory goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingPlacement {
    /// The rings (`struct io_rings`, the CQEs and the SQ array): one range,
    /// or two showing the same memory (the program mapped the SQ ring and
    /// the CQ ring separately). The kernel is given the first range long
    /// enough for the rings.
    pub rings: Vec<RegionPlacement>,
    /// The SQE array.
    pub sqes: RegionPlacement,
    pub backing: Backing,
}

/// Ring memory placed at its addresses and owned (unmapped when dropped),
/// not yet given to a ring: what a `place_ring_memory` step makes and the
/// ring's `setup_ring` step consumes.
#[derive(Debug)]
pub struct PlacedMemory {
    pub(super) regions: Vec<OwnedMapping>,
    pub(super) placement: RingPlacement,
}

impl PlacedMemory {
    /// Maps memory at every range of `placement` with `MAP_FIXED_NOREPLACE`
    /// (never over a mapping): the rings at one or two addresses showing
    /// the same memory, the SQEs at theirs. Checks alignment and user
    /// ranges only; whether the ranges are long enough for a ring is checked
    /// when a ring is created on them.
    pub fn place(placement: &RingPlacement) -> Result<PlacedMemory, ContinuityError> {
        if placement.rings.is_empty() || placement.rings.len() > 2 {
            return Err(ContinuityError::BadRequest(format!(
                "the rings are shown at one or two addresses, not {}",
                placement.rings.len()
            )));
        }
        let rings = placement
            .rings
            .iter()
            .map(|range| check_range("ring memory", *range, 1))
            .collect::<Result<Vec<_>, _>>()?;
        let sqes = check_range("SQE memory", placement.sqes, 1)?;
        let mut regions = place("ring memory", placement.backing, &rings)?;
        regions.extend(place("SQE memory", placement.backing, &[sqes])?);
        Ok(PlacedMemory {
            regions,
            placement: placement.clone(),
        })
    }

    /// Where the memory is.
    pub fn placement(&self) -> &RingPlacement {
        &self.placement
    }

    /// Hands the mappings over (to be kept or unmapped by their new owner).
    pub(crate) fn into_regions(self) -> Vec<OwnedMapping> {
        self.regions
    }
}

/// `len` rounded up to whole pages.
pub(crate) fn page_round(len: u64) -> Option<u64> {
    len.checked_add(PAGE_SIZE - 1)
        .map(|end| end & !(PAGE_SIZE - 1))
}

/// Checks that `placement` is a page-aligned user range of at least
/// `needed` bytes; returns its (address, page-rounded length).
pub(super) fn check_range(
    what: &'static str,
    placement: RegionPlacement,
    needed: u64,
) -> Result<(usize, usize), ContinuityError> {
    let bad = |problem: &str| {
        ContinuityError::BadRequest(format!(
            "{what} {:#x}+{:#x}: {problem}",
            placement.addr, placement.len
        ))
    };
    if placement.addr % PAGE_SIZE != 0 {
        return Err(bad("the address is not page-aligned"));
    }
    if placement.len < needed {
        return Err(bad(&format!("the ring needs {needed:#x} bytes there")));
    }
    let len = page_round(placement.len).ok_or_else(|| bad("too long"))?;
    let end = placement
        .addr
        .checked_add(len)
        .ok_or_else(|| bad("too long"))?;
    if placement.addr == 0 || end > USER_ADDRESS_LIMIT {
        return Err(bad("not a user-space range"));
    }
    let addr = usize::try_from(placement.addr).map_err(|_| bad("not an address"))?;
    let len = usize::try_from(len).map_err(|_| bad("too long"))?;
    Ok((addr, len))
}

/// Maps `len` bytes of `fd` (or private anonymous memory without one) at
/// exactly `addr`, never over anything.
fn map_at(
    what: &'static str,
    addr: usize,
    len: usize,
    fd: Option<&OwnedFd>,
) -> Result<OwnedMapping, ContinuityError> {
    let prot = ProtFlags::READ | ProtFlags::WRITE;
    let flags = MapFlags::FIXED_NOREPLACE | MapFlags::POPULATE;
    let result = match fd {
        // SAFETY: MAP_FIXED_NOREPLACE never replaces a mapping, so no memory
        // in use changes; the result is owned by an OwnedMapping at once.
        Some(fd) => unsafe {
            rustix::mm::mmap(
                addr as *mut c_void,
                len,
                prot,
                flags | MapFlags::SHARED,
                fd,
                0,
            )
        },
        // SAFETY: as above.
        None => unsafe {
            rustix::mm::mmap_anonymous(addr as *mut c_void, len, prot, flags | MapFlags::PRIVATE)
        },
    };
    let taken = || ContinuityError::RangeTaken {
        what,
        addr: addr as u64,
        len: len as u64,
    };
    match result {
        Ok(got) => {
            let region = OwnedMapping {
                addr: got as usize,
                len,
            };
            // Before Linux 4.17 the flag is a hint: elsewhere means taken.
            if region.addr == addr {
                Ok(region)
            } else {
                Err(taken())
            }
        }
        Err(Errno::EXIST) => Err(taken()),
        Err(errno) => Err(ContinuityError::Syscall {
            call: "mmap(MAP_FIXED_NOREPLACE)",
            errno,
        }),
    }
}

/// Places one memory object at every range of `ranges` (each `(addr,
/// len)`, page-rounded): a memfd as long as the longest, mapped shared at
/// each; or, for [`Backing::Anonymous`], private anonymous memory at the
/// one range. The memfd itself is closed once mapped.
pub(super) fn place(
    what: &'static str,
    backing: Backing,
    ranges: &[(usize, usize)],
) -> Result<Vec<OwnedMapping>, ContinuityError> {
    match backing {
        Backing::Anonymous => {
            let [(addr, len)] = ranges else {
                return Err(ContinuityError::BadRequest(format!(
                    "{what}: anonymous memory shows at one address only, {} were asked for",
                    ranges.len()
                )));
            };
            Ok(vec![map_at(what, *addr, *len, None)?])
        }
        Backing::Memfd => {
            let size = ranges.iter().map(|(_, len)| *len).max().unwrap_or(0);
            let memfd = rustix::fs::memfd_create("ringplan-ring", MemfdFlags::CLOEXEC)
                .map_err(syscall("memfd_create"))?;
            rustix::fs::ftruncate(&memfd, size as u64).map_err(syscall("ftruncate(memfd)"))?;
            let mut regions = Vec::with_capacity(ranges.len());
            for (addr, len) in ranges {
                // An error drops the regions mapped so far and the memfd.
                regions.push(map_at(what, *addr, *len, Some(&memfd))?);
            }
            Ok(regions)
        }
    }
}
