//! Memory for a ring's rings and SQEs at chosen addresses, placed with
//! `MAP_FIXED_NOREPLACE` (never over an existing mapping) and owned until
//! the ring is kept: an `OwnedMapping` unmaps itself when dropped.

use std::ffi::c_void;
use std::os::fd::{OwnedFd, RawFd};
use std::time::{Duration, Instant};

use ringplan_kernel::abi::linux::{PAGE_SIZE, USER_ADDRESS_LIMIT};
use ringplan_kernel::procfs::mem::ProcessMemory;
use rustix::fs::MemfdFlags;
use rustix::io::Errno;
use rustix::mm::{MapFlags, ProtFlags};

use super::error::{syscall, ContinuityError};
use crate::backend::{Backend, TargetMemory};
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
    /// the rings at one address only. In another process (`plan exec
    /// --pid`) this is the program's own memory, already there (kept by a
    /// detach, or brought back by a restorer): it is used as it is, never
    /// mapped or unmapped by the run.
    Anonymous,
}

/// One range of a ring's memory, and what gives it back when the run
/// fails.
#[derive(Debug)]
pub(crate) enum PlacedRegion {
    /// Mapped in this process (unmapped when dropped).
    Local(OwnedMapping),
    /// Mapped in the target process by the run: unmapped there through
    /// the backend ([`PlacedRegion::release_in`]).
    Mapped { addr: usize, len: usize },
    /// The program's own memory in the target process: never unmapped;
    /// its bytes as found are written back on release.
    Program { addr: u64, saved: Vec<u8> },
    /// A mapping in this process of memory placed in the target (the same
    /// memfd): how this process reads and writes it without a syscall.
    /// Unmapped when the ring is released or kept: it is this process's,
    /// not the restored program's.
    Alias(OwnedMapping),
}

impl PlacedRegion {
    /// Gives the range back in the process `backend` acts in, after the
    /// ring using it is closed: unmaps what the run mapped, puts the
    /// program's own bytes back.
    pub(crate) fn release_in<B: Backend>(self, backend: &mut B) {
        match self {
            PlacedRegion::Local(mapping) | PlacedRegion::Alias(mapping) => drop(mapping),
            PlacedRegion::Mapped { addr, len } => {
                let _ = backend.munmap(addr, len);
            }
            PlacedRegion::Program { addr, saved } => {
                if let Ok(TargetMemory::Process(memory)) = backend.memory() {
                    put_back_program_memory(backend, &memory, addr, &saved);
                }
            }
        }
    }

    /// Keeps the range for good: it is the restored program's memory.
    pub(crate) fn keep(self) {
        match self {
            PlacedRegion::Local(mapping) => mapping.keep(),
            PlacedRegion::Alias(alias) => drop(alias),
            PlacedRegion::Mapped { .. } | PlacedRegion::Program { .. } => {}
        }
    }
}

/// How long the program's own ring memory must keep the bytes put back
/// before the undo trusts them (more than two rounds of the kernel's exit
/// worker, which retries every `HZ/20`, 50 ms), and how long it waits at
/// most.
const SETTLE: Duration = Duration::from_millis(120);
const SETTLE_AT_MOST: Duration = Duration::from_secs(1);

/// Writes the program's own ring memory back as found, after the ring on
/// it was closed. The kernel lets a closed ring go later, in a worker
/// (`io_ring_exit_work`), which cancels what is left every 50 ms until the
/// ring's references are gone and writes the ring's header from its own
/// positions as it does (its CQ tail): seen here as the CQ tail of a
/// header put back set to the new ring's, 0, tens of milliseconds after
/// the close. The worker finishes only once every thread that used the
/// ring ran the task work it queues for them (`io_tctx_exit_cb`), which a
/// held process does not do on its own: each round lets the threads run it
/// ([`Backend::run_pending_task_work`]). Nothing tells from outside when
/// the worker is done, so the bytes are written again until they stay as
/// found for [`SETTLE`] (at most [`SETTLE_AT_MOST`]). Only an undo of a
/// ring on the program's own memory pays this.
fn put_back_program_memory<B: Backend>(
    backend: &mut B,
    memory: &ProcessMemory,
    addr: u64,
    saved: &[u8],
) {
    let started = Instant::now();
    let mut stable_since = Instant::now();
    let _ = memory.write_all_at(addr, saved);
    let mut now = vec![0u8; saved.len()];
    while started.elapsed() < SETTLE_AT_MOST {
        backend.run_pending_task_work();
        std::thread::sleep(Duration::from_millis(2));
        if memory.read_exact_at(addr, &mut now).is_err() {
            return;
        }
        if now != saved {
            let _ = memory.write_all_at(addr, saved);
            stable_since = Instant::now();
        } else if stable_since.elapsed() >= SETTLE {
            return;
        }
    }
}

/// Releases every region through `backend` (see
/// [`PlacedRegion::release_in`]).
pub(crate) fn release_all<B: Backend>(regions: Vec<PlacedRegion>, backend: &mut B) {
    for region in regions {
        region.release_in(backend);
    }
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
    pub(super) regions: Vec<PlacedRegion>,
    pub(super) placement: RingPlacement,
    /// Where this process sees the rings and the SQEs placed in another
    /// process, when it maps them too (memfd-backed memory).
    pub(super) aliases: Option<(u64, u64)>,
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
            regions: regions.into_iter().map(PlacedRegion::Local).collect(),
            placement: placement.clone(),
            aliases: None,
        })
    }

    /// [`PlacedMemory::place`] in the process `backend` acts in. In this
    /// process, exactly `place`. In another: a memfd made there
    /// (`memfd_create`, `ftruncate`) mapped `MAP_SHARED |
    /// MAP_FIXED_NOREPLACE` at each range, taken into this process
    /// (`pidfd_getfd`) and mapped here too where the kernel chooses (so the
    /// ring's memory is read and written without a syscall), and closed in
    /// both; or, for
    /// [`Backing::Anonymous`], the program's own memory at the ranges,
    /// which preflight found mapped and writable: its bytes are saved (put
    /// back on release) and zeroed, as fresh memory would be.
    ///
    /// With `lend_above` (a tree plan's other processes map the memory
    /// too), the memfds stay open in the target, moved to or above that
    /// fd number (out of the plan's target fds), and are returned, rings'
    /// first.
    pub(crate) fn place_in<B: Backend>(
        backend: &mut B,
        placement: &RingPlacement,
        lend_above: Option<RawFd>,
    ) -> Result<(PlacedMemory, Vec<B::Fd>), ContinuityError> {
        if B::IN_THIS_PROCESS {
            return PlacedMemory::place(placement).map(|placed| (placed, Vec::new()));
        }
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
        let mut regions = Vec::new();
        let mut lent = lend_above.map(|floor| (floor, Vec::new()));
        let placed = place_in_target(
            backend,
            RING_MEMORY,
            placement.backing,
            &rings,
            &mut regions,
            lent.as_mut(),
        )
        .and_then(|rings_alias| {
            place_in_target(
                backend,
                "SQE memory",
                placement.backing,
                &[sqes],
                &mut regions,
                lent.as_mut(),
            )
            .map(|sqes_alias| rings_alias.zip(sqes_alias))
        });
        let lent = lent.map(|(_, lent)| lent).unwrap_or_default();
        match placed {
            Ok(aliases) => Ok((
                PlacedMemory {
                    regions,
                    placement: placement.clone(),
                    aliases,
                },
                lent,
            )),
            Err(error) => {
                for memfd in lent {
                    backend.close(memfd);
                }
                release_all(regions, backend);
                Err(error)
            }
        }
    }

    /// Gives the memory back through `backend` (see
    /// [`PlacedRegion::release_in`]).
    pub(crate) fn release_in<B: Backend>(self, backend: &mut B) {
        release_all(self.regions, backend);
    }

    /// Where the memory is.
    pub fn placement(&self) -> &RingPlacement {
        &self.placement
    }

    /// Hands the mappings over (to be kept or released by their new
    /// owner).
    pub(crate) fn into_regions(self) -> Vec<PlacedRegion> {
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

/// The name of the memfd a restorer places ring memory on; `/proc/PID/maps`
/// shows it as `/memfd:ringplan-ring (deleted)`.
pub(crate) const RING_MEMFD_NAME: &str = "ringplan-ring";

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
            let memfd = rustix::fs::memfd_create(RING_MEMFD_NAME, MemfdFlags::CLOEXEC)
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

/// What the rings' range is called in errors; the range the kernel writes
/// a ring's header into.
const RING_MEMORY: &str = "ring memory";

/// Places one memory object at every range of `ranges` in the process
/// `backend` acts in (another one), appending what it placed to
/// `regions`: a memfd mapped shared at each range, or the program's own
/// memory (see [`PlacedMemory::place_in`]). Returns where this process
/// sees the memory too, when it does (the memfd mapped here). With
/// `lent` (a floor and a list), a memfd stays open, moved to or above the
/// floor, and goes in the list, once mapped.
fn place_in_target<B: Backend>(
    backend: &mut B,
    what: &'static str,
    backing: Backing,
    ranges: &[(usize, usize)],
    regions: &mut Vec<PlacedRegion>,
    lent: Option<&mut (RawFd, Vec<B::Fd>)>,
) -> Result<Option<u64>, ContinuityError> {
    match backing {
        Backing::Anonymous => {
            let [(addr, len)] = ranges else {
                return Err(ContinuityError::BadRequest(format!(
                    "{what}: the program's memory shows at one address only, {} were asked for",
                    ranges.len()
                )));
            };
            let memory = match backend.memory() {
                Ok(TargetMemory::Process(memory)) => memory,
                _ => {
                    return Err(ContinuityError::Syscall {
                        call: "open(/proc/PID/mem)",
                        errno: Errno::IO,
                    })
                }
            };
            let mut saved = vec![0u8; *len];
            memory
                .read_exact_at(*addr as u64, &mut saved)
                .map_err(|_| ContinuityError::ProgramMemoryMissing {
                    what,
                    addr: *addr as u64,
                    len: *len as u64,
                })?;
            let zeros = vec![0u8; *len];
            let zeroed = memory.write_all_at(*addr as u64, &zeros);
            // The ring a detach closed on this memory may still be on its
            // way out: the kernel's exit worker writes its header a last
            // time when it frees it, which under load came after a new
            // ring was set up here (its CQ tail then read 1). Zeroed until
            // it stays so, as an undo puts the program's bytes back.
            if zeroed.is_ok() && what == RING_MEMORY {
                put_back_program_memory(backend, &memory, *addr as u64, &zeros);
            }
            // Saved before any byte changed: a partial write is undone.
            regions.push(PlacedRegion::Program {
                addr: *addr as u64,
                saved,
            });
            zeroed
                .map(|()| None)
                .map_err(|_| ContinuityError::ProgramMemoryMissing {
                    what,
                    addr: *addr as u64,
                    len: *len as u64,
                })
        }
        Backing::Memfd => {
            let size = ranges.iter().map(|(_, len)| *len).max().unwrap_or(0);
            let memfd = backend
                .memfd_create(RING_MEMFD_NAME)
                .map_err(syscall("memfd_create"))?;
            let number = B::number(&memfd);
            let mut result = backend
                .ftruncate(number, size as u64)
                .map_err(syscall("ftruncate(memfd)"));
            for (addr, len) in ranges {
                if result.is_err() {
                    break;
                }
                let flags = MapFlags::SHARED | MapFlags::FIXED_NOREPLACE | MapFlags::POPULATE;
                let prot = ProtFlags::READ | ProtFlags::WRITE;
                result = match backend.mmap(*addr, *len, prot, flags, Some(number), 0) {
                    Ok(got) if got == *addr => {
                        regions.push(PlacedRegion::Mapped {
                            addr: got,
                            len: *len,
                        });
                        Ok(())
                    }
                    Ok(got) => {
                        // Before Linux 4.17 the flag is a hint.
                        let _ = backend.munmap(got, *len);
                        Err(ContinuityError::RangeTaken {
                            what,
                            addr: *addr as u64,
                            len: *len as u64,
                        })
                    }
                    Err(Errno::EXIST) => Err(ContinuityError::RangeTaken {
                        what,
                        addr: *addr as u64,
                        len: *len as u64,
                    }),
                    Err(errno) => Err(ContinuityError::Syscall {
                        call: "mmap(MAP_FIXED_NOREPLACE)",
                        errno,
                    }),
                };
            }
            // The same memory mapped here, through a copy of the memfd: a
            // ring's header is read and written many times per batch.
            let alias = match result {
                Ok(()) => alias_here(backend, number, size),
                Err(_) => None,
            };
            if let Some(alias) = &alias {
                regions.push(PlacedRegion::Alias(OwnedMapping {
                    addr: alias.addr,
                    len: alias.len,
                }));
            }
            // The mappings keep the memory; the memfd itself goes, unless
            // other processes map it too.
            match lent {
                Some((floor, lent)) if result.is_ok() => {
                    // Above the plan's target fds, which later steps fill.
                    let moved = backend.fcntl_dupfd_cloexec(number, *floor);
                    backend.close(memfd);
                    match moved {
                        Ok(moved) => lent.push(moved),
                        Err(errno) => {
                            result = Err(ContinuityError::Syscall {
                                call: "fcntl(F_DUPFD_CLOEXEC) of a lent memfd",
                                errno,
                            })
                        }
                    }
                }
                _ => backend.close(memfd),
            }
            result.map(|()| alias.map(|alias| alias.addr as u64))
        }
    }
}

/// Where this process mapped memory placed in another process.
struct Alias {
    addr: usize,
    len: usize,
}

/// Maps the target's memfd `memfd` (`size` bytes) here too, shared, where
/// the kernel chooses; `None` when it cannot (the ring's memory is then
/// reached through `/proc/PID/mem`).
fn alias_here<B: Backend>(backend: &mut B, memfd: i32, size: usize) -> Option<Alias> {
    let copy = backend.copy_here(memfd).ok().flatten()?;
    // SAFETY: a new shared mapping where the kernel chooses, replacing
    // nothing; it is owned at once by the caller's `PlacedRegion::Alias`.
    let addr = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            size,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::SHARED | MapFlags::POPULATE,
            &copy,
            0,
        )
    }
    .ok()?;
    Some(Alias {
        addr: addr as usize,
        len: size,
    })
}
