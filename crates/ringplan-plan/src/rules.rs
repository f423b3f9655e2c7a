//! The rules a plan must keep, written once: what setup a ring may have,
//! what a ring mapping may be, which flags a reopen may use, and how many
//! temporaries a step sequence keeps open.
//!
//! The compiler (`analyze`, `compile`) keeps them while it builds a plan and
//! `validate` checks them in a decoded plan, so both depend on this module
//! and it depends on neither. Each rule says what is wrong; each caller
//! words it in its own error type.

use ringplan_image::{RingMapping, SetupFlags, UserRegion, USER_ADDRESS_LIMIT};
use ringplan_kernel::abi::linux::{O_CLOEXEC, O_CREAT, O_EXCL, O_NOCTTY, O_TRUNC, PAGE_SIZE};

use crate::model::{Op, Step};

/// Why a ring's setup flags cannot be in a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SetupFlagProblem {
    /// Bits this planner does not know.
    Unknown { bits: u32 },
    /// A known flag a restore cannot honour: its kernel name without the
    /// `IORING_SETUP_` prefix, and why.
    Unsupported {
        flag: &'static str,
        reason: &'static str,
    },
}

/// The first reason `flags` cannot be restored, if any: unknown bits, then
/// `NO_MMAP` on memory the plan does not place (`memory_placed`), then
/// `REGISTERED_FD_ONLY`.
pub(crate) fn setup_flag_problem(flags: u32, memory_placed: bool) -> Option<SetupFlagProblem> {
    let unknown_bits = flags & !SetupFlags::KNOWN.bits();
    if unknown_bits != 0 {
        return Some(SetupFlagProblem::Unknown { bits: unknown_bits });
    }
    if flags & SetupFlags::NO_MMAP.bits() != 0 && !memory_placed {
        return Some(SetupFlagProblem::Unsupported {
            flag: "NO_MMAP",
            reason: "its rings live in memory the task provided, which the image does not describe",
        });
    }
    if flags & SetupFlags::REGISTERED_FD_ONLY.bits() != 0 {
        return Some(SetupFlagProblem::Unsupported {
            flag: "REGISTERED_FD_ONLY",
            reason: "the ring has no fd to install, only a registered ring index the image does not record",
        });
    }
    None
}

/// Why a ring's `cq_entries` is not one the kernel would hold unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CqEntriesProblem {
    /// With `IORING_SETUP_CQSIZE` the kernel rounds up to this power of two.
    NotPowerOfTwo { rounded: u64 },
    /// Without `IORING_SETUP_CQSIZE` the kernel makes it 2 x sq_entries.
    WithoutCqsize { expected: u64 },
}

/// Whether the kernel, given `flags` and `sq_entries`, would make a CQ of
/// exactly `cq_entries`.
pub(crate) fn cq_entries_problem(
    flags: u32,
    sq_entries: u32,
    cq_entries: u32,
) -> Option<CqEntriesProblem> {
    if flags & SetupFlags::CQSIZE.bits() != 0 {
        (!cq_entries.is_power_of_two()).then(|| CqEntriesProblem::NotPowerOfTwo {
            rounded: u64::from(cq_entries).next_power_of_two(),
        })
    } else {
        let expected = 2 * u64::from(sq_entries);
        (u64::from(cq_entries) != expected).then_some(CqEntriesProblem::WithoutCqsize { expected })
    }
}

/// A ring mapping `mmap` can make at its address: page-aligned, not empty,
/// not at 0, wholly in user space. (The region itself is a closed enum, so
/// decoding already refused unknown ones.) The error completes "mapping ...".
pub(crate) fn check_ring_mapping(mapping: &RingMapping) -> Result<(), String> {
    let (addr, len) = (mapping.addr, mapping.len);
    let what = || format!("of {} at {addr:#x}+{len}", mapping.region.name());
    if addr == 0 || len == 0 {
        return Err(format!("{} is empty or at address 0", what()));
    }
    if addr % PAGE_SIZE != 0 || len % PAGE_SIZE != 0 {
        return Err(format!("{} is not page-aligned", what()));
    }
    if addr
        .checked_add(len)
        .is_none_or(|end| end > USER_ADDRESS_LIMIT)
    {
        return Err(format!("{} is not a user address range", what()));
    }
    Ok(())
}

/// A range `place_ring_memory` can map at its address: page-aligned, not
/// empty, not at 0, wholly in user space once rounded up to pages. Returns
/// the rounded length; the error completes "memory ...".
pub(crate) fn check_memory_range(what: &str, range: &UserRegion) -> Result<u64, String> {
    let (addr, len) = (range.addr, range.len);
    let bad = |problem: &str| Err(format!("of the {what} at {addr:#x}+{len} {problem}"));
    if addr == 0 || len == 0 {
        return bad("is empty or at address 0");
    }
    if addr % PAGE_SIZE != 0 {
        return bad("is not page-aligned");
    }
    let Some(rounded) = len
        .checked_add(PAGE_SIZE - 1)
        .map(|end| end & !(PAGE_SIZE - 1))
    else {
        return bad("is not a user address range");
    };
    if addr
        .checked_add(rounded)
        .is_none_or(|end| end > USER_ADDRESS_LIMIT)
    {
        return bad("is not a user address range");
    }
    Ok(rounded)
}

/// The flags `open_file` passes, from the flags the kernel held: never
/// creating or truncating, never taking a controlling terminal, and
/// close-on-exec until installed.
pub(crate) fn reopen_flags(recorded: u32) -> u32 {
    (recorded & !(O_CREAT | O_EXCL | O_TRUNC)) | O_NOCTTY | O_CLOEXEC
}

/// Whether `flags` would create or truncate a file: `open_file` never may.
pub(crate) fn creates_or_truncates(flags: u32) -> bool {
    flags & (O_CREAT | O_EXCL | O_TRUNC) != 0
}

/// Counts the temporaries a run of steps keeps open at once.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct TemporaryCount {
    open: u32,
    peak: u32,
}

impl TemporaryCount {
    /// Takes one more step into account.
    pub(crate) fn step(&mut self, op: &Op) {
        if op.defines_handle() {
            self.open += 1;
            self.peak = self.peak.max(self.open);
        } else if let Op::CloseFd(close) = op {
            self.open = self.open.saturating_sub(close.handles.len() as u32);
        }
    }

    /// The most temporaries open at once so far.
    pub(crate) fn peak(self) -> u32 {
        self.peak
    }
}

/// The most handles open at once when the steps run in order.
pub(crate) fn peak_temporaries(steps: &[Step]) -> u32 {
    let mut count = TemporaryCount::default();
    for step in steps {
        count.step(&step.op);
    }
    count.peak()
}
