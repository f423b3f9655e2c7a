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
//! op; `run/ring_regions.rs` the mapping of a new ring's regions;
//! `run/continuity_ops.rs` the continuity ops (memory placed at the
//! program's addresses, rings set up on it, positions, entries).

mod continuity_ops;
mod ops;
mod ring_regions;

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use ringplan_image::{FileType, ObjectId, RingMapping};
use ringplan_plan::{Op, Plan, Step};
use rustix::io::Errno;
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

use crate::continuity::{ContinuityError, ContinuousRing, PlacedMemory};
use crate::error::{ExecError, MemoryError};
use crate::memory::MemoryHook;
use crate::owned_mapping::OwnedMapping;
use crate::{
    ContinuousRingReport, ExecOptions, Inputs, PreflightReport, Progress, Restored, SkippedMapping,
    Substitution,
};

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

/// A file an `open_file` step met that is not the type the image recorded.
struct TypeChanged {
    path: String,
    recorded: Option<FileType>,
    found: FileType,
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
    /// Set when an `open_file` step met a file of another type.
    type_changed: Option<TypeChanged>,
    /// Whether to map ring regions (`!ExecOptions::skip_ring_mappings`).
    map_rings: bool,
    /// Ring regions mapped so far; declared after the fds, so an undo closes
    /// the rings before it unmaps their regions (either order frees them).
    regions: Vec<OwnedMapping>,
    mapped: Vec<(ObjectId, RingMapping)>,
    skipped: Vec<SkippedMapping>,
    /// Whether continuity steps run (the kernel can place ring memory);
    /// otherwise preflight allowed moved rings and they are skipped.
    continuous: bool,
    /// Memory placed by `place_ring_memory` steps, by step index, until a
    /// ring is set up on it.
    placed: BTreeMap<usize, PlacedMemory>,
    /// Rings set up on placed memory, by step index (their handle) until
    /// their handle is closed; their fd is not in `handles`.
    rings: BTreeMap<usize, ContinuousRing>,
    /// Set when a continuity op failed.
    continuity_error: Option<ContinuityError>,
    continuous_rings: Vec<ContinuousRingReport>,
    moved_rings: Vec<ObjectId>,
    progress: &'a mut dyn FnMut(Progress),
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
    progress: &mut dyn FnMut(Progress),
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
        type_changed: None,
        map_rings: !options.skip_ring_mappings,
        regions: Vec::new(),
        mapped: Vec::new(),
        skipped: Vec::new(),
        continuous: report.places_ring_memory,
        placed: BTreeMap::new(),
        rings: BTreeMap::new(),
        continuity_error: None,
        continuous_rings: Vec::new(),
        moved_rings: Vec::new(),
        progress,
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
    // Success: the ring regions are the restored task's memory now. A
    // validated plan closes every ring's handle; one built in memory may
    // not: its temporaries are closed (as `handles` are) and the memory
    // kept all the same.
    for (_, ring) in std::mem::take(&mut state.rings) {
        let (fd, regions) = ring.into_parts();
        drop(fd);
        state.regions.extend(regions);
    }
    for region in std::mem::take(&mut state.regions) {
        region.keep();
    }
    Ok(Restored {
        fds: state.installed,
        substituted: state.substituted,
        mapped: state.mapped,
        skipped_mappings: state.skipped,
        continuous_rings: state.continuous_rings,
        moved_rings: state.moved_rings,
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
    let continuity_error = state.continuity_error.take();
    if let Some(changed) = state.type_changed.take() {
        undo_all(state, hook, fd_limit);
        return ExecError::OpenedTypeChanged {
            index,
            object: step.object,
            path: changed.path,
            recorded: changed.recorded,
            found: changed.found,
        };
    }
    undo_all(state, hook, fd_limit);
    match (memory_error, continuity_error) {
        (Some(cause), _) => ExecError::MemoryRestoreFailed { index, cause },
        (None, Some(cause)) => ExecError::ContinuityFailed {
            index,
            op: step.op.name(),
            object: step.object,
            cause,
        },
        (None, None) => ExecError::StepFailed {
            index,
            op: step.op.name(),
            object: step.object,
            call: failure.call,
            errno: failure.errno,
        },
    }
}

/// Releases everything a failed run made: its fds and ring regions
/// (dropped with `state`), the hook's memory (before the barrier too:
/// preflight may have reserved some), the raised fd limit.
fn undo_all(state: Run<'_>, hook: &mut dyn MemoryHook, fd_limit: FdLimitRaise) {
    drop(state);
    hook.undo();
    fd_limit.put_back();
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
            Op::OpenFile(open) => Some(self.open_file(open)?),
            Op::ExternalInput(input) => Some(self.external_input(step.object, input)?),
            Op::SetupRing(setup) => match setup.memory {
                Some(memory) if self.continuous => {
                    self.setup_continuous_ring(index, step.object, setup, memory)?;
                    None
                }
                _ => Some(self.setup_ring(step.object, setup)?),
            },
            Op::PlaceRingMemory(memory) => {
                self.place_ring_memory(index, step.object, memory)?;
                None
            }
            Op::RestoreCompletions(restore) => {
                self.restore_completions(index, step.object, restore)?;
                None
            }
            Op::QueueSqes(queue) => {
                self.queue_sqes(queue)?;
                None
            }
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
        let index = usize::try_from(handle.0).ok();
        index
            .and_then(|index| self.handles.get(index))
            .and_then(Option::as_ref)
            .map(AsFd::as_fd)
            .or_else(|| {
                index
                    .and_then(|index| self.rings.get(&index))
                    .map(ContinuousRing::fd)
            })
            .ok_or(Failure {
                call: "handle lookup",
                errno: Errno::BADF,
            })
    }
}
