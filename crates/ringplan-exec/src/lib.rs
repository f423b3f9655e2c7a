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
//! `execve` kills a ring's SQ thread even when the fd survives. Or, with
//! [`execute_in`], inside another running process: the same run, its
//! syscalls made there through ptrace ([`RemoteBackend`]), for plans
//! without continuity steps.
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
//! original image by structure; [`hold`] keeps the restored rings in this
//! process until SIGTERM or SIGINT (what `plan exec --hold` does).
//!
//! # Where things are
//!
//! - `options.rs`: what the caller hands in ([`ExecOptions`], [`Inputs`]);
//!   `restored.rs`: what a run leaves behind ([`Restored`] and its parts);
//!   `error.rs`: [`ExecError`], [`MemoryError`], [`InputError`].
//! - `preflight.rs`: the checks before the first step; `preflight/kernel.rs`
//!   asks the kernel about the plan's setup flags, `preflight/open_fds.rs`
//!   which target fds are open, `preflight/paths.rs` whether each path the
//!   plan reopens still names the type of file the image recorded.
//! - `reopen.rs`: reopening a file by path without ever blocking (the
//!   flags of the open and of the `fcntl(F_SETFL)` after it, the type
//!   check).
//! - `run.rs`: the run and its undo; `run/ops.rs` the syscalls of each op,
//!   `run/ring_regions.rs` the mapping of a new ring's regions.
//! - `backend.rs`: [`Backend`], where the run's syscalls happen:
//!   [`InProcess`] (rustix, this process) and [`RemoteBackend`]
//!   (`backend/remote.rs`: another process, through [`remote`]).
//! - `into_process.rs`: [`execute_in`], a restore into another process;
//!   `preflight/process.rs` its preflight against that process.
//! - `memory.rs`: the memory barrier's hook.
//! - [`continuity`]: the mechanics of a continuous restore (issue 12), not
//!   yet called by any op: a ring on memory placed at given addresses
//!   (`IORING_SETUP_NO_MMAP`), its kernel positions advanced to given
//!   values, its pending entries and overflow list put back.
//! - [`remote`]: syscalls run inside another process through ptrace (the
//!   base of `plan exec --pid`, driven by [`RemoteBackend`]): hold every
//!   thread, run syscalls in chosen ones, leave the process as it was found.
//! - [`stdio`]: a restorer's own standard streams, moved out of the plan's
//!   way while it restores into itself.
//! - [`verify`] (`verify/matching.rs` pairs objects, `verify/fields.rs`
//!   compares a pair), [`hold`]: after a run.
//! - `test_hooks.rs`: hooks for tests and benchmarks, only with the
//!   `test-hooks` feature (an injected step failure, the run phase alone, a
//!   snapshot of this process's fds and mappings).
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

mod backend;
pub mod continuity;
pub mod detach;
mod error;
pub mod hold;
mod into_process;
mod into_tree;
mod memory;
mod options;
mod owned_mapping;
mod preflight;
pub mod remote;
mod reopen;
mod restored;
mod run;
pub mod stdio;
#[cfg(feature = "test-hooks")]
pub mod test_hooks;
pub mod verify;

use ringplan_plan::Plan;

pub use backend::{Backend, InProcess, RemoteBackend, RemoteFd};
pub use error::{ExecError, InputError, MemoryError};
pub use into_process::{
    execute_in, preflight_in_process, ProcessOptions, RestoredIn, StoppedTimings,
};
pub use into_tree::{execute_tree_in, preflight_tree_in};
pub use memory::{buffer_ranges, AnonymousBuffers, MemoryHook, NoMemory};
pub use options::{ExecOptions, Inputs};
pub use preflight::{preflight, AdoptedFd, PreflightReport};
pub use restored::{
    ContinuousRingReport, Restored, RestoredRingFd, RingOwner, SkipReason, SkippedMapping,
    Substitution,
};

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
    execute_with_progress(plan, inputs, hook, options, &mut |_| {})
}

/// [`execute`], reporting the progress of long steps (moving a ring's
/// positions) to `progress`: at a step's start, every 65,536 positions and
/// at its end.
pub fn execute_with_progress(
    plan: &Plan,
    inputs: Inputs,
    hook: &mut dyn MemoryHook,
    options: &ExecOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<Restored, ExecError> {
    let report = preflight(plan, &inputs, hook, options)?;
    run::run(plan, inputs, hook, options, &report, None, progress)
}

/// How far a long step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The step's index in the plan.
    pub step: usize,
    /// The ring it acts on.
    pub ring: Option<ringplan_image::ObjectId>,
    /// Positions moved so far, and in all.
    pub done: u64,
    pub total: u64,
}

/// Expands the items it is given only when this crate is built with the
/// `test-hooks` feature, so that a binary can compile a hidden test flag
/// (`plan exec --fail-at`) exactly when the hooks exist: a `cfg` of its own
/// cannot see a dependency's features. See [`cfg_no_test_hooks!`] for the
/// other branch.
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
#[macro_export]
macro_rules! cfg_test_hooks {
    ($($item:item)*) => { $($item)* };
}

/// Expands the items it is given only when this crate is built with the
/// `test-hooks` feature; see [`cfg_no_test_hooks!`].
#[cfg(not(feature = "test-hooks"))]
#[doc(hidden)]
#[macro_export]
macro_rules! cfg_test_hooks {
    ($($item:item)*) => {};
}

/// Expands the items it is given only when this crate is built without the
/// `test-hooks` feature: the other branch of [`cfg_test_hooks!`].
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
#[macro_export]
macro_rules! cfg_no_test_hooks {
    ($($item:item)*) => {};
}

/// Expands the items it is given only when this crate is built without the
/// `test-hooks` feature: the other branch of [`cfg_test_hooks!`].
#[cfg(not(feature = "test-hooks"))]
#[doc(hidden)]
#[macro_export]
macro_rules! cfg_no_test_hooks {
    ($($item:item)*) => { $($item)* };
}
