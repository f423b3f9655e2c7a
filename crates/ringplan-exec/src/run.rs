//! Running the steps: one syscall (or two) per step, a table from handle to
//! the fd it got, and a complete undo when a step fails.
//!
//! Everything the run creates is owned by a value of this module (an
//! `OwnedFd` in the handle table or the installed list, a mapping in the
//! memory hook, a ring region in a `MappedRegion`) from the moment it
//! exists, so undoing is dropping: a failed run closes every fd it created
//! (temporaries and installed targets, which preflight proved were free),
//! unmaps the ring regions it mapped, asks the hook to unmap what it
//! mapped, and puts the `RLIMIT_NOFILE` soft limit back.
//!
//! This file holds the run and its undo; `run/ops.rs` the syscalls of each
//! op; `run/ring_regions.rs` the mapping of a new ring's regions.

mod ops;
mod ring_regions;

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use ringplan_image::{ObjectId, RingMapping};
use ringplan_plan::{Op, Plan, Step};
use rustix::io::Errno;
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

use crate::error::{ExecError, MemoryError};
use crate::memory::MemoryHook;
use crate::owned_mapping::OwnedMapping;
use crate::{ExecOptions, Inputs, PreflightReport, Restored, SkippedMapping, Substitution};

/// A failure to inject, for tests of the undo: step `step` fails with
/// `errno` before its syscall. Public only through `test_hooks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
pub struct InjectedFailure {
    pub step: usize,
    pub errno: Errno,
}

/// A step failure before it is tied to its step.
struct Failure {
    call: &'static str,
    errno: Errno,
}

fn fail(call: &'static str) -> impl FnOnce(Errno) -> Failure {
    move |errno| Failure { call, errno }
}

/// The run's state: what it owns so far.
struct Run<'a> {
    plan: &'a Plan,
    floor: RawFd,
    handles: Vec<Option<OwnedFd>>,
    installed: BTreeMap<ObjectId, Vec<OwnedFd>>,
    inputs: Inputs,
    substituted: Vec<Substitution>,
    /// Set when the memory hook failed at the barrier.
    memory_error: Option<MemoryError>,
    /// Whether to map ring regions (`!ExecOptions::skip_ring_mappings`).
    map_rings: bool,
    /// Ring regions mapped so far; declared after the fds, so an undo closes
    /// the rings before it unmaps their regions (either order frees them).
    regions: Vec<OwnedMapping>,
    mapped: Vec<(ObjectId, RingMapping)>,
    skipped: Vec<SkippedMapping>,
}

/// Runs every step, after [`crate::preflight`] passed with `report`. On
/// failure, undoes everything and returns the error.
pub(crate) fn run(
    plan: &Plan,
    inputs: Inputs,
    hook: &mut dyn MemoryHook,
    options: &ExecOptions,
    report: &PreflightReport,
    injected: Option<InjectedFailure>,
) -> Result<Restored, ExecError> {
    let fd_limit = FdLimitRaise::apply(plan, report)?;
    let mut state = Run {
        plan,
        floor: plan.temp_fd_floor,
        handles: std::iter::repeat_with(|| None)
            .take(plan.steps.len())
            .collect(),
        installed: BTreeMap::new(),
        inputs,
        substituted: Vec::new(),
        memory_error: None,
        map_rings: !options.skip_ring_mappings,
        regions: Vec::new(),
        mapped: Vec::new(),
        skipped: Vec::new(),
    };
    for (index, step) in plan.steps.iter().enumerate() {
        let result = match injected {
            Some(injected) if injected.step == index => Err(Failure {
                call: "injected failure",
                errno: injected.errno,
            }),
            _ => state.step(index, step, hook),
        };
        if let Err(failure) = result {
            return Err(undo(state, hook, fd_limit, index, step, failure));
        }
    }
    // Success: the ring regions are the restored task's memory now.
    for region in std::mem::take(&mut state.regions) {
        region.keep();
    }
    Ok(Restored {
        fds: state.installed,
        substituted: state.substituted,
        mapped: state.mapped,
        skipped_mappings: state.skipped,
    })
}

/// Undoes a failed run and names its failing step: fds first (rings
/// release their buffers), then the ring regions (dropped with `state`),
/// then memory, then the fd limit.
fn undo(
    mut state: Run<'_>,
    hook: &mut dyn MemoryHook,
    fd_limit: FdLimitRaise,
    index: usize,
    step: &Step,
    failure: Failure,
) -> ExecError {
    let memory_error = state.memory_error.take();
    drop(state);
    // Before the barrier too: preflight may have reserved memory.
    hook.undo();
    fd_limit.put_back();
    match memory_error {
        Some(cause) => ExecError::MemoryRestoreFailed { index, cause },
        None => ExecError::StepFailed {
            index,
            op: step.op.name(),
            object: step.object,
            call: failure.call,
            errno: failure.errno,
        },
    }
}

/// The `RLIMIT_NOFILE` soft limit as the run found it, when the run raised
/// it (as preflight said it must).
struct FdLimitRaise {
    old: Option<Rlimit>,
}

impl FdLimitRaise {
    fn apply(plan: &Plan, report: &PreflightReport) -> Result<FdLimitRaise, ExecError> {
        if !report.raises_fd_limit {
            return Ok(FdLimitRaise { old: None });
        }
        let old = getrlimit(Resource::Nofile);
        let raised = Rlimit {
            current: Some(report.fd_limit_needed),
            maximum: old.maximum,
        };
        setrlimit(Resource::Nofile, raised).map_err(|errno| ExecError::StepFailed {
            index: 0,
            op: plan.steps.first().map_or("none", |step| step.op.name()),
            object: None,
            call: "setrlimit(RLIMIT_NOFILE)",
            errno,
        })?;
        Ok(FdLimitRaise { old: Some(old) })
    }

    fn put_back(self) {
        if let Some(old) = self.old {
            let _ = setrlimit(Resource::Nofile, old);
        }
    }
}

impl Run<'_> {
    /// Runs one step; an fd it creates goes into the handle table at the
    /// step's index, at or above the floor.
    fn step(
        &mut self,
        index: usize,
        step: &Step,
        hook: &mut dyn MemoryHook,
    ) -> Result<(), Failure> {
        let created = match &step.op {
            Op::CreateEventfd(create) => Some(ops::create_eventfd(create)?),
            Op::OpenFile(open) => Some(ops::open_file(open)?),
            Op::ExternalInput(input) => Some(self.external_input(step.object, input)?),
            Op::SetupRing(setup) => Some(self.setup_ring(step.object, setup)?),
            Op::RegisterEventfd(register) => {
                self.register_eventfd(register)?;
                None
            }
            Op::RegisterFiles(register) => {
                self.register_files(register)?;
                None
            }
            Op::MemoryBarrier => {
                self.memory_barrier(hook)?;
                None
            }
            Op::RegisterBuffers(register) => {
                self.register_buffers(register)?;
                None
            }
            Op::InstallFd(install) => {
                self.install_fd(step.object, install)?;
                None
            }
            Op::CloseFd(close) => {
                self.close_fds(close)?;
                None
            }
        };
        if let Some(fd) = created {
            let fd = self.above_floor(fd)?;
            if let Some(slot) = self.handles.get_mut(index) {
                *slot = Some(fd);
            }
        }
        Ok(())
    }

    /// Moves a new fd at or above the floor, closing the original.
    fn above_floor(&self, fd: OwnedFd) -> Result<OwnedFd, Failure> {
        if fd.as_raw_fd() >= self.floor {
            return Ok(fd);
        }
        rustix::io::fcntl_dupfd_cloexec(&fd, self.floor).map_err(fail("fcntl(F_DUPFD_CLOEXEC)"))
    }

    /// The fd a handle names.
    fn handle(&self, handle: ringplan_plan::Handle) -> Result<BorrowedFd<'_>, Failure> {
        // A decoded plan was validated: every handle names an earlier,
        // unclosed fd-defining step. A plan built in memory may not be.
        usize::try_from(handle.0)
            .ok()
            .and_then(|index| self.handles.get(index))
            .and_then(Option::as_ref)
            .map(AsFd::as_fd)
            .ok_or(Failure {
                call: "handle lookup",
                errno: Errno::BADF,
            })
    }
}
