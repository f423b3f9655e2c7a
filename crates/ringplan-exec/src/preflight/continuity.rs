//! Preflight of a plan's continuity steps: whether this kernel can place a
//! ring's memory at chosen addresses (`IORING_SETUP_NO_MMAP`, Linux 6.5),
//! whether every address range is free in the process restored into (this
//! one, or the target of `plan exec --pid`, whose maps are read from
//! outside), and whether each range is long enough for a ring of the
//! recorded sizes on this kernel (asked of throwaway rings, closed at
//! once). In a target process, a ring that lived in the program's own
//! memory needs that memory there instead (writable anonymous memory
//! covering the range), each `SINGLE_ISSUER` ring its owner thread, and
//! the ring memory fits its `RLIMIT_MEMLOCK`.

use ringplan_kernel::procfs::maps::{self, MapsQuery};
use ringplan_kernel::procfs::{limits, status, task, Process};
use ringplan_plan::{MemoryOrigin, Op, Plan, SetupRing};
use rustix::thread::CapabilitySet;

use ringplan_image::SetupFlags;

use crate::continuity::{
    kernel_supports_no_mmap, memory_sizes, page_round, placement_of, ring_setup_of,
    ContinuityError, RING_MEMFD_NAME,
};
use crate::error::ExecError;
use crate::memory::{overlapping_mapping, pinned_bytes};
use crate::ExecOptions;

/// Whether the run places ring memory: `true` when the plan has no
/// continuity steps or the kernel can; `false` when it cannot and moved
/// rings are allowed. Refuses otherwise, and refuses taken or short ranges.
pub(super) fn check_continuity(plan: &Plan, options: &ExecOptions) -> Result<bool, ExecError> {
    check_continuity_within(plan, options, None)
}

/// [`check_continuity`] for a restore into process `pid` (held).
pub(super) fn check_continuity_in(
    plan: &Plan,
    options: &ExecOptions,
    pid: u32,
) -> Result<bool, ExecError> {
    check_owner_threads(plan, pid)?;
    check_continuity_within(plan, options, Some(pid))
}

/// The recorded owner thread of every `SINGLE_ISSUER` ring the plan sets
/// up enabled: `(step, ring, tid)`. A ring set up `R_DISABLED` gets its
/// owner when it is enabled, not at setup.
pub(crate) fn owner_threads(plan: &Plan) -> Vec<(usize, ringplan_image::ObjectId, u32)> {
    plan.steps
        .iter()
        .enumerate()
        .filter_map(|(index, step)| match &step.op {
            Op::SetupRing(setup)
                if setup.flags & SetupFlags::SINGLE_ISSUER.bits() != 0
                    && setup.flags & SetupFlags::R_DISABLED.bits() == 0 =>
            {
                setup.owner_tid.map(|tid| {
                    (
                        index,
                        step.object.unwrap_or(ringplan_image::ObjectId(0)),
                        tid,
                    )
                })
            }
            _ => None,
        })
        .collect()
}

/// Refuses a plan whose `SINGLE_ISSUER` ring is owned by a thread that
/// process `pid` does not have (or has as an io thread, which runs no
/// user code).
pub(crate) fn check_owner_threads(plan: &Plan, pid: u32) -> Result<(), ExecError> {
    let owners = owner_threads(plan);
    let ring_fd_slots = ring_fd_threads(plan);
    if owners.is_empty() && ring_fd_slots.is_empty() {
        return Ok(());
    }
    let threads = task::ids(Process::Pid(pid)).map_err(|error| ExecError::ProcessUnavailable {
        pid,
        cause: error.to_string(),
    })?;
    let missing = |tid: u32| !threads.contains(&tid) || crate::remote::is_io_thread(pid, tid);
    for (step, ring, tid) in owners {
        if missing(tid) {
            return Err(ExecError::OwnerThreadMissing {
                pid,
                step,
                ring,
                tid,
            });
        }
    }
    for (step, ring, tid, offset) in ring_fd_slots {
        if missing(tid) {
            return Err(ExecError::RingFdThreadMissing {
                pid,
                step,
                ring,
                tid,
                offset,
            });
        }
    }
    Ok(())
}

/// The recorded thread of every registered ring-fd slot the plan fills:
/// `(step, ring, tid, offset)`.
fn ring_fd_threads(plan: &Plan) -> Vec<(usize, ringplan_image::ObjectId, u32, u32)> {
    plan.steps
        .iter()
        .enumerate()
        .filter_map(|(index, step)| match &step.op {
            Op::RegisterRingFd(register) => Some((
                index,
                step.object.unwrap_or(ringplan_image::ObjectId(0)),
                register.tid,
                register.offset,
            )),
            _ => None,
        })
        .collect()
}

fn check_continuity_within(
    plan: &Plan,
    options: &ExecOptions,
    target: Option<u32>,
) -> Result<bool, ExecError> {
    // A part of a tree plan that maps memory another part places needs
    // the same kernel as the part that places it.
    let Some(first) = plan.steps.iter().find(|step| {
        matches!(
            step.op,
            Op::PlaceRingMemory(_)
                | Op::ReceiveFd(ringplan_plan::ReceiveFd {
                    placed_memory: true,
                    ..
                })
        )
    }) else {
        return Ok(true);
    };
    match kernel_supports_no_mmap() {
        Ok(()) => {}
        Err(ContinuityError::NoMmapUnsupported { release }) => {
            // A ring on the program's own memory was NO_MMAP already: it
            // cannot even be moved to memory of the kernel's choosing here.
            let program_memory = plan.steps.iter().find(|step| {
                matches!(&step.op, Op::SetupRing(setup)
                    if setup.memory.is_some() && setup.flags & SetupFlags::NO_MMAP.bits() != 0)
            });
            // A buffer ring's moved head is brought back by reads, and a
            // legacy group's buffers by PROVIDE_BUFFERS SQEs, that move the
            // positions of a continuous ring: not on a moved one.
            let moved_head = plan.steps.iter().find(|step| {
                matches!(&step.op, Op::RegisterPbufRing(register) if register.head != 0)
                    || matches!(&step.op, Op::ProvideBuffers(_))
            });
            match program_memory.or(moved_head) {
                None if options.allow_moved_rings => return Ok(false),
                Some(step) => {
                    return Err(ExecError::ContinuityUnsupported {
                        ring: step.object.unwrap_or(ringplan_image::ObjectId(0)),
                        release,
                    })
                }
                None => {
                    return Err(ExecError::ContinuityUnsupported {
                        ring: first.object.unwrap_or(ringplan_image::ObjectId(0)),
                        release,
                    })
                }
            }
        }
        Err(_) => {
            return Err(ExecError::CheckSyscallFailed {
                what: "io_uring_setup(NO_MMAP probe)",
                errno: rustix::io::Errno::INVAL,
            })
        }
    }
    let process = target.map_or(Process::Current, Process::Pid);
    let mut free = FreeRanges::new(process);
    let mut ring_bytes = 0u64;
    for (index, step) in plan.steps.iter().enumerate() {
        let Op::PlaceRingMemory(memory) = &step.op else {
            continue;
        };
        let ring = step.object.unwrap_or(ringplan_image::ObjectId(0));
        ring_bytes = memory.ranges().fold(ring_bytes, |sum, range| {
            sum.saturating_add(page_round(range.len).unwrap_or(u64::MAX))
        });
        if let (Some(pid), MemoryOrigin::Program) = (target, memory.origin) {
            check_program_memory(&mut free, pid, index, ring, memory)?;
            if let Some(setup) = setup_on(plan, index) {
                check_lengths(index, ring, setup, memory)?;
            }
            continue;
        }
        let ranges = memory
            .rings
            .iter()
            .map(|range| ("rings", range))
            .chain(std::iter::once(("SQEs", &memory.sqes)));
        for (what, range) in ranges {
            let end = range
                .addr
                .saturating_add(page_round(range.len).unwrap_or(u64::MAX));
            if let Some(by) = free.taken_by(range.addr, end)? {
                return Err(ring_memory_taken(
                    target, index, ring, what, range.addr, range.len, by,
                ));
            }
        }
        if let Some(setup) = setup_on(plan, index) {
            check_lengths(index, ring, setup, memory)?;
        }
    }
    // A received ring's mappings of memory another part placed: as free
    // in this process as the placed memory must be in that one.
    for (index, step) in plan.steps.iter().enumerate() {
        let Op::ReceiveFd(receive) = &step.op else {
            continue;
        };
        if !receive.placed_memory {
            continue;
        }
        let ring = step.object.unwrap_or(ringplan_image::ObjectId(0));
        for mapping in &receive.mappings {
            let end = mapping
                .addr
                .saturating_add(page_round(mapping.len).unwrap_or(u64::MAX));
            if let Some(by) = free.taken_by(mapping.addr, end)? {
                let what = mapping.region.name();
                return Err(ring_memory_taken(
                    target,
                    index,
                    ring,
                    what,
                    mapping.addr,
                    mapping.len,
                    by,
                ));
            }
        }
    }
    if let Some(pid) = target {
        check_ring_memlock(plan, pid, ring_bytes)?;
    }
    Ok(true)
}

/// The refusal of ring memory at `addr+len` that `by` already holds, in
/// this process (`target` `None`) or in process `target`.
fn ring_memory_taken(
    target: Option<u32>,
    step: usize,
    ring: ringplan_image::ObjectId,
    what: &'static str,
    addr: u64,
    len: u64,
    by: String,
) -> ExecError {
    match target {
        None => ExecError::RingMemoryTaken {
            step,
            ring,
            what,
            addr,
            len,
            by,
        },
        Some(pid) => ExecError::RingMemoryTakenIn {
            pid,
            step,
            ring,
            what,
            addr,
            len,
            by,
        },
    }
}

/// Refuses ring memory the target's `RLIMIT_MEMLOCK` cannot take: the
/// kernel charges a ring's memory (the rings and SQEs it pins, its own or
/// the program's) with the registered buffers to the user's locked memory
/// when the creating task lacks `CAP_IPC_LOCK` (`io_create_region` ->
/// `__io_account_mem` on 6.18). Only this plan's own need is compared:
/// what the user has locked already is not visible from `/proc`.
fn check_ring_memlock(plan: &Plan, pid: u32, ring_bytes: u64) -> Result<(), ExecError> {
    let process = Process::Pid(pid);
    let unavailable = |cause: String| ExecError::ProcessUnavailable { pid, cause };
    let capabilities =
        status::effective_capabilities(process).map_err(|error| unavailable(error.to_string()))?;
    if capabilities & CapabilitySet::IPC_LOCK.bits() != 0 {
        return Ok(());
    }
    let limit = limits::read(process)
        .map_err(|error| unavailable(error.to_string()))?
        .locked_memory
        .soft
        .unwrap_or(u64::MAX);
    let needed = ring_bytes.saturating_add(pinned_bytes(plan));
    if needed > limit {
        return Err(ExecError::MemlockLimitIn { pid, needed, limit });
    }
    Ok(())
}

/// Whether a maps line is memory a program can have given the kernel as
/// its own ring memory: anonymous, private (no file) or shared (`/dev/zero
/// (deleted)`, what `MAP_SHARED | MAP_ANONYMOUS` shows), or the memfd an
/// earlier restore placed ring memory on (a program restored into and
/// detached again keeps it as its rings' memory), and writable.
fn is_writable_anonymous(entry: &maps::MapsEntry<'_>) -> bool {
    let anonymous = (entry.inode == 0
        && (entry.path.is_empty() || entry.path.starts_with("[anon")))
        || entry.path.starts_with("/dev/zero")
        || entry
            .path
            .strip_prefix("/memfd:")
            .and_then(|name| name.strip_prefix(RING_MEMFD_NAME))
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(" (deleted)"));
    anonymous && entry.perms.starts_with("rw")
}

/// Refuses a ring on the program's own memory when process `pid` does not
/// have writable anonymous memory over each of its ranges (the memory a
/// detach kept or a restorer brought back).
fn check_program_memory(
    free: &mut FreeRanges,
    pid: u32,
    step: usize,
    ring: ringplan_image::ObjectId,
    memory: &ringplan_plan::PlaceRingMemory,
) -> Result<(), ExecError> {
    let text = free.text()?.to_owned();
    let ranges = memory
        .rings
        .iter()
        .map(|range| ("rings", range))
        .chain(std::iter::once(("SQEs", &memory.sqes)));
    for (what, range) in ranges {
        let end = range
            .addr
            .saturating_add(page_round(range.len).unwrap_or(u64::MAX));
        let mut covered = range.addr;
        let mut found = Vec::new();
        for entry in text.lines().filter_map(maps::MapsEntry::parse) {
            if !entry.overlaps(range.addr, end) {
                continue;
            }
            found.push(format!(
                "{:x}-{:x} {} {}",
                entry.start, entry.end, entry.perms, entry.path
            ));
            if entry.start <= covered && is_writable_anonymous(&entry) {
                covered = covered.max(entry.end);
            }
        }
        if covered < end {
            return Err(ExecError::ProgramMemoryMissingIn {
                pid,
                step,
                ring,
                what,
                addr: range.addr,
                len: range.len,
                found: if found.is_empty() {
                    "nothing is mapped there".to_owned()
                } else {
                    found.join(", ").trim_end().to_owned()
                },
            });
        }
    }
    Ok(())
}

/// Whether ranges of a process (this one or a held target) are free: one
/// `PROCMAP_QUERY` ioctl per range (Linux 6.11+), or one read of
/// `/proc/PID/maps` for all of them on an older kernel; the maps text
/// names what took a range.
struct FreeRanges {
    query: Option<MapsQuery>,
    text: Option<String>,
    process: Process,
}

impl FreeRanges {
    fn new(process: Process) -> FreeRanges {
        FreeRanges {
            query: MapsQuery::open(process).ok(),
            text: None,
            process,
        }
    }

    /// The maps text, read once.
    fn text(&mut self) -> Result<&str, ExecError> {
        if self.text.is_none() {
            self.text =
                Some(
                    maps::read(self.process).map_err(|_| ExecError::CheckSyscallFailed {
                        what: "reading /proc/PID/maps",
                        errno: rustix::io::Errno::IO,
                    })?,
                );
        }
        Ok(self.text.as_deref().unwrap_or_default())
    }

    /// `None` when `[start, end)` is free; else the maps line in the way.
    fn taken_by(&mut self, start: u64, end: u64) -> Result<Option<String>, ExecError> {
        if let Some(query) = &self.query {
            match query.is_free(start, end) {
                Ok(true) => return Ok(None),
                Ok(false) => {}
                // Before 6.11: read the text from now on.
                Err(_) => self.query = None,
            }
        }
        Ok(overlapping_mapping(self.text()?, start, end))
    }
}

/// The ring set up on the memory of step `place`.
fn setup_on(plan: &Plan, place: usize) -> Option<&SetupRing> {
    plan.steps.iter().find_map(|step| match &step.op {
        Op::SetupRing(setup) if setup.memory == Some(place as u32) => Some(setup),
        _ => None,
    })
}

/// The rings and SQEs of a ring of `setup`'s sizes fit the placed ranges.
fn check_lengths(
    step: usize,
    ring: ringplan_image::ObjectId,
    setup: &SetupRing,
    memory: &ringplan_plan::PlaceRingMemory,
) -> Result<(), ExecError> {
    // Sizes from a 1-entry probe and the kernel's formula: preflight's
    // throwaway rings are all of one entry, never of a size the plan sets up.
    let (rings_len, sqes_len) =
        memory_sizes(&ring_setup_of(setup)).map_err(|error| match error {
            ContinuityError::Syscall { call, errno } => {
                ExecError::CheckSyscallFailed { what: call, errno }
            }
            other => ExecError::RingMemoryTooSmall {
                step,
                ring,
                problem: other.to_string(),
            },
        })?;
    let placement = placement_of(memory);
    if !placement.rings.iter().any(|range| range.len >= rings_len) {
        return Err(ExecError::RingMemoryTooSmall {
            step,
            ring,
            problem: format!(
                "a ring of {} SQ entries needs {rings_len:#x} bytes of ring memory on this kernel; the \
                 placed rings hold {:#x}",
                setup.sq_entries,
                placement.rings.iter().map(|range| range.len).max().unwrap_or(0)
            ),
        });
    }
    if placement.sqes.len < sqes_len {
        return Err(ExecError::RingMemoryTooSmall {
            step,
            ring,
            problem: format!(
                "its {} SQEs need {sqes_len:#x} bytes; the placed SQE memory holds {:#x}",
                setup.sq_entries, placement.sqes.len
            ),
        });
    }
    Ok(())
}
