//! Preflight of a plan's continuity steps: whether this kernel can place a
//! ring's memory at chosen addresses (`IORING_SETUP_NO_MMAP`, Linux 6.5),
//! whether every address range is free in this process, and whether each
//! range is long enough for a ring of the recorded sizes on this kernel
//! (asked of throwaway rings, closed at once).

use ringplan_kernel::procfs::maps::{self, MapsQuery};
use ringplan_kernel::procfs::Process;
use ringplan_plan::{Op, Plan, SetupRing};

use ringplan_image::SetupFlags;

use crate::continuity::{
    kernel_supports_no_mmap, memory_sizes, page_round, placement_of, ring_setup_of, ContinuityError,
};
use crate::error::ExecError;
use crate::memory::overlapping_mapping;
use crate::ExecOptions;

/// Whether the run places ring memory: `true` when the plan has no
/// continuity steps or the kernel can; `false` when it cannot and moved
/// rings are allowed. Refuses otherwise, and refuses taken or short ranges.
pub(super) fn check_continuity(plan: &Plan, options: &ExecOptions) -> Result<bool, ExecError> {
    let Some(first) = plan
        .steps
        .iter()
        .find(|step| matches!(step.op, Op::PlaceRingMemory(_)))
    else {
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
            match program_memory {
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
    let mut free = FreeRanges::new();
    for (index, step) in plan.steps.iter().enumerate() {
        let Op::PlaceRingMemory(memory) = &step.op else {
            continue;
        };
        let ring = step.object.unwrap_or(ringplan_image::ObjectId(0));
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
                return Err(ExecError::RingMemoryTaken {
                    step: index,
                    ring,
                    what,
                    addr: range.addr,
                    len: range.len,
                    by,
                });
            }
        }
        if let Some(setup) = setup_on(plan, index) {
            check_lengths(index, ring, setup, memory)?;
        }
    }
    Ok(true)
}

/// Whether ranges of this process are free: one `PROCMAP_QUERY` ioctl per
/// range (Linux 6.11+), or one read of `/proc/self/maps` for all of them on
/// an older kernel; the maps text names what took a range.
struct FreeRanges {
    query: Option<MapsQuery>,
    text: Option<String>,
}

impl FreeRanges {
    fn new() -> FreeRanges {
        FreeRanges {
            query: MapsQuery::open(Process::Current).ok(),
            text: None,
        }
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
        if self.text.is_none() {
            self.text =
                Some(
                    maps::read(Process::Current).map_err(|_| ExecError::CheckSyscallFailed {
                        what: "reading /proc/self/maps",
                        errno: rustix::io::Errno::IO,
                    })?,
                );
        }
        Ok(self
            .text
            .as_deref()
            .and_then(|text| overlapping_mapping(text, start, end)))
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
