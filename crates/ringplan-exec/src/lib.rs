//! The ringplan executor: runs a restore [`Plan`] with real syscalls in the
//! calling process.
//!
//! [`execute`] first runs [`preflight`] (every target fd free, every
//! external input supplied, the fd and memlock limits, the kernel's
//! acceptance of the plan's setup flags, the memory hook's own check); a
//! preflight failure means nothing was done. Then it runs the steps in
//! order, keeping a table from handle (the creating step's index) to the
//! fd it got, always at or above [`Plan::temp_fd_floor`]. If a step fails,
//! everything done so far is undone (every fd created is closed, the memory
//! hook unmaps what it mapped) and the error names the step, its op and the
//! errno.
//!
//! The restore happens **in the calling process**, which must be the
//! process that keeps the rings: io_uring fds are close-on-exec, and
//! `execve` kills a ring's SQ thread even when the fd survives.
//!
//! At the plan's `memory_barrier` step the executor calls a [`MemoryHook`]:
//! a restorer that restores memory itself passes its own (a closure works);
//! [`AnonymousBuffers`] maps fresh anonymous memory at each recorded buffer
//! range (never over an existing mapping), which is what `plan exec` does.
//!
//! Ring regions are the executor's own business, not the hook's: right
//! after a `setup_ring` step creates a ring, the executor maps each region
//! the plan recorded for it (`SetupRing::mappings`) at its recorded address
//! with `MAP_SHARED | MAP_POPULATE | MAP_FIXED_NOREPLACE`, because only it
//! holds the ring's fd (a ring without buffers is closed before the
//! barrier). A range that is taken is skipped, not an error, and listed in
//! [`Restored::skipped_mappings`]; so is a free one when the kernel refuses
//! to place io_uring regions at chosen addresses (Linux 6.4 and later
//! refuse every address: [`SkipReason::AddressRefused`]); [`ExecOptions::skip_ring_mappings`]
//! turns the mapping off. Regions mapped by a run that later fails are
//! unmapped by the undo; after success they stay mapped for good (they are
//! the restored task's memory, like the fds in [`Restored::fds`] they are
//! not unmapped when [`Restored`] is dropped).
//!
//! Files a plan cannot reopen by path (`external_input` steps: pipes,
//! sockets, ...) come from the caller as [`Inputs`], keyed by image object
//! id; with [`ExecOptions::substitute_external`] a missing one is replaced
//! by a fresh pipe end (for a pipe) or `/dev/null`, and listed in
//! [`Restored::substituted`].
//!
//! [`verify::compare`] compares a dump of the restored process with the
//! original image by structure.
//!
//! # Example
//!
//! ```no_run
//! use ringplan_exec::{execute, load_plan, AnonymousBuffers, ExecOptions, Inputs};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let bytes = std::fs::read("seed.img")?;
//! let plan = load_plan(&bytes)?;
//! let mut inputs = Inputs::new();
//! // Object #7 is a pipe in the image: hand over our own read end.
//! let (reader, _writer) = rustix::pipe::pipe()?;
//! inputs.insert(ringplan_image::ObjectId(7), reader);
//! let mut memory = AnonymousBuffers::new();
//! let restored = execute(&plan, inputs, &mut memory, &ExecOptions::default())?;
//! for (object, fds) in &restored.fds {
//!     println!("{object}: {fds:?}");
//! }
//! // Keep `restored` (and the process) alive for as long as the rings are used.
//! # Ok(())
//! # }
//! ```

mod error;
mod memory;
mod preflight;
mod run;
pub mod verify;

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;

use ringplan_image::{FileType, ObjectId, RingMapping};
use ringplan_plan::Plan;

pub use error::{ExecError, MemoryError};
pub use memory::{buffer_ranges, AnonymousBuffers, MemoryHook, NoMemory};
pub use preflight::{preflight, PreflightReport};

/// Fds the caller supplies for a plan's `external_input` steps, by the
/// image object each stands for. The executor consumes them: each is
/// duplicated above the plan's fd floor and the original closed.
#[derive(Debug, Default)]
pub struct Inputs {
    pub(crate) fds: BTreeMap<ObjectId, OwnedFd>,
}

impl Inputs {
    pub fn new() -> Self {
        Inputs::default()
    }

    /// Supplies `fd` for `object`; a second fd for the same object replaces
    /// the first.
    pub fn insert(&mut self, object: ObjectId, fd: OwnedFd) {
        self.fds.insert(object, fd);
    }

    /// The objects supplied so far.
    pub fn objects(&self) -> impl Iterator<Item = ObjectId> + '_ {
        self.fds.keys().copied()
    }
}

/// How to run a plan.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// Replace an external input the caller did not supply with a stand-in
    /// (a new pipe's matching end for a pipe, `/dev/null` otherwise)
    /// instead of refusing in preflight.
    pub substitute_external: bool,
    /// Raise the `RLIMIT_NOFILE` soft limit (up to the hard limit) when the
    /// plan needs more; put back if the run fails. Without it, a too-small
    /// soft limit is a preflight error.
    pub raise_fd_limit: bool,
    /// Do not map ring regions at their recorded addresses; every recorded
    /// mapping is then listed in [`Restored::skipped_mappings`] with
    /// [`SkipReason::TurnedOff`]. For a restorer that maps them itself (or
    /// wants no ring memory at fixed addresses).
    pub skip_ring_mappings: bool,
    /// Test hook: make step N fail (before its syscall) with
    /// `injected_errno`.
    #[doc(hidden)]
    pub fail_at_step: Option<usize>,
    #[doc(hidden)]
    pub injected_errno: i32,
}

/// A stand-in the executor made for an external input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Substitution {
    pub object: ObjectId,
    /// What the image says the original was.
    pub file_type: FileType,
    /// What stands in for it.
    pub with: &'static str,
}

/// Why a recorded ring mapping was not recreated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// Something already occupies (part of) the range in this process
    /// (`EEXIST`, or a kernel before 4.17 that took the address as a hint).
    Taken,
    /// The range is free but the kernel refuses to place io_uring regions
    /// at any address the caller chooses: Linux 6.4 and later (their
    /// `get_unmapped_area` answers `EINVAL` to every address, for `mmap`
    /// and `mremap` alike), so on those kernels no ring region can be put
    /// back where it was.
    AddressRefused,
    /// [`ExecOptions::skip_ring_mappings`] was set.
    TurnedOff,
}

/// A ring region the executor did not map at its recorded address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SkippedMapping {
    /// The ring, by its id in the image.
    pub object: ObjectId,
    pub mapping: RingMapping,
    pub reason: SkipReason,
}

impl std::fmt::Display for SkippedMapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let region = self.mapping.region.name();
        let why = match self.reason {
            SkipReason::Taken => "the range is taken",
            SkipReason::AddressRefused => {
                "the kernel places io_uring regions only where it chooses"
            }
            SkipReason::TurnedOff => "ring mapping is turned off",
        };
        write!(
            f,
            "ring {} {region} at {:#x}+{} ({why})",
            self.object, self.mapping.addr, self.mapping.len
        )
    }
}

/// What a successful run leaves behind.
#[derive(Debug)]
pub struct Restored {
    /// The installed fds of every object the process holds at an fd, in the
    /// plan's install order. Dropping this closes them (and so tears down
    /// rings no other fd holds): keep it for as long as the rings are used,
    /// or take the fds out.
    pub fds: BTreeMap<ObjectId, Vec<OwnedFd>>,
    /// External inputs the executor substituted.
    pub substituted: Vec<Substitution>,
    /// Ring regions mapped at their recorded addresses, by ring, in plan
    /// order. They stay mapped: dropping this does not unmap them.
    pub mapped: Vec<(ObjectId, RingMapping)>,
    /// Recorded ring regions that were not mapped, and why.
    pub skipped_mappings: Vec<SkippedMapping>,
}

/// Reads an image (compiled here) or a plan.
pub fn load_plan(bytes: &[u8]) -> Result<Plan, ringplan_plan::LoadError> {
    ringplan_plan::plan_from_image_or_plan(bytes)
}

/// Preflights `plan`, then runs it in this process. On any failure after
/// preflight, everything done is undone before the error returns.
pub fn execute(
    plan: &Plan,
    inputs: Inputs,
    hook: &mut dyn MemoryHook,
    options: &ExecOptions,
) -> Result<Restored, ExecError> {
    let report = preflight(plan, &inputs, hook, options)?;
    run_preflighted(plan, inputs, hook, options, &report)
}

/// The run phase of [`execute`] alone, after [`preflight`] passed with the
/// same plan, inputs, hook and options and nothing changed since. For the
/// executor's benchmark (run phase vs. a minimal replay); use [`execute`].
#[doc(hidden)]
pub fn run_preflighted(
    plan: &Plan,
    inputs: Inputs,
    hook: &mut dyn MemoryHook,
    options: &ExecOptions,
    report: &PreflightReport,
) -> Result<Restored, ExecError> {
    let raise = report.raises_fd_limit.then_some(report.fd_limit_needed);
    run::run(plan, inputs, hook, options, raise)
}
