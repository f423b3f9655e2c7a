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

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::RawFd;

use ringplan_image::{FileType, ObjectId, RingMapping};
use ringplan_plan::{Op, Plan, Step};
use rustix::io::Errno;
use rustix::process::{getrlimit, prlimit, setrlimit, Resource, Rlimit};

use crate::backend::{Backend, InProcess};
use crate::continuity::{release_all, ContinuityError, ContinuousRing, PlacedMemory, PlacedRegion};
use crate::error::{ExecError, MemoryError};
use crate::memory::MemoryHook;
use crate::memory::{BarrierMemory, HookMemory};
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

/// The run's state: what it owns so far. Its fds, and the continuity
/// state (placed memory, rings set up on it), are the backend's, in the
/// process the backend acts in.
struct Run<'a, B: Backend> {
    plan: &'a Plan,
    backend: &'a mut B,
    floor: RawFd,
    handles: Vec<Option<B::Fd>>,
    installed: BTreeMap<ObjectId, Vec<B::Fd>>,
    inputs: Inputs,
    substituted: Vec<Substitution>,
    /// Set when the memory hook failed at the barrier.
    memory_error: Option<MemoryError>,
    /// Set when an `open_file` step met a file of another type.
    type_changed: Option<TypeChanged>,
    /// Whether to map ring regions (`!ExecOptions::skip_ring_mappings`).
    map_rings: bool,
    /// Ring regions mapped through the backend so far, `(addr, len)`; an
    /// undo closes the fds first, then unmaps them (either order frees
    /// them).
    ring_regions: Vec<(usize, usize)>,
    /// Memory of continuous rings whose fd is closed; an undo closes the
    /// rings before it releases their regions.
    regions: Vec<PlacedRegion>,
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
    rings: BTreeMap<usize, ContinuousRing<B>>,
    /// The owner thread of each `SINGLE_ISSUER` ring set up so far, by
    /// handle: the thread its syscalls run in.
    owners: BTreeMap<usize, u32>,
    /// Set when a continuity op failed.
    continuity_error: Option<ContinuityError>,
    continuous_rings: Vec<ContinuousRingReport>,
    moved_rings: Vec<ObjectId>,
    progress: &'a mut dyn FnMut(Progress),
    /// Objects the process already holds (preflight adopted them): the
    /// creating step's index → the fd its handle names. The run neither
    /// creates nor closes them, on success or undo.
    adopted: BTreeMap<usize, RawFd>,
    /// Every adopted fd number: an `install_fd` onto one is already done.
    adopted_fds: BTreeSet<RawFd>,
    /// Registered ring-fd slots filled so far: (thread, offset, the ring's
    /// handle), unregistered by an undo.
    ring_fd_slots: Vec<(u32, u32, ringplan_plan::Handle)>,
    /// Threads whose io-wq affinity a `register_settings` set: (thread,
    /// the ring's handle), put back to the kernel's default by an undo.
    iowq_affinities: Vec<(u32, ringplan_plan::Handle)>,
    ring_fds: Vec<crate::RestoredRingFd>,
    /// Memfds of placed ring memory kept open for other processes of a
    /// tree to map (`place_ring_memory` with `lend`), by ring.
    lent: Vec<(ObjectId, Vec<B::Fd>)>,
    /// What earlier parts of a tree plan lent: (their pid, ring) → their
    /// memfds' numbers there, rings' first.
    lent_elsewhere: &'a LentMemory,
}

/// Ring memory earlier parts of a tree plan lent: (process, ring) → the
/// numbers of its memfds in that process, the rings' memfd first, the
/// SQEs' second.
pub(crate) type LentMemory = BTreeMap<(u32, ObjectId), Vec<RawFd>>;

static NOTHING_LENT: LentMemory = BTreeMap::new();

/// Runs every step in this process, after [`crate::preflight`] passed
/// with `report`. On failure, undoes everything and returns the error.
pub(crate) fn run(
    plan: &Plan,
    inputs: Inputs,
    hook: &mut dyn MemoryHook,
    options: &ExecOptions,
    report: &PreflightReport,
    injected: Option<InjectedFailure>,
    progress: &mut dyn FnMut(Progress),
) -> Result<Restored, ExecError> {
    let target = Target {
        backend: &mut InProcess,
        memory: &mut HookMemory(hook),
        limits_of: None,
        lent_elsewhere: None,
    };
    run_with(
        plan, inputs, target, options, report, injected, progress, None,
    )
}

/// Whether `op` is a continuity step: one that restores a ring where the
/// program left it (its memory placed at the program's addresses, its
/// positions and entries).
fn is_continuity_step(op: &Op) -> bool {
    match op {
        Op::PlaceRingMemory(_) | Op::RestoreCompletions(_) | Op::QueueSqes(_) => true,
        Op::SetupRing(setup) => setup.memory.is_some(),
        _ => false,
    }
}

/// Where a run acts: the backend its syscalls go through, what puts the
/// buffer memory in place at the barrier, the process whose
/// `RLIMIT_NOFILE` it raises (`None`: this one), and for a part of a tree
/// plan the ring memory earlier parts lent.
pub(crate) struct Target<'t, B: Backend> {
    pub(crate) backend: &'t mut B,
    pub(crate) memory: &'t mut dyn BarrierMemory<B>,
    pub(crate) limits_of: Option<rustix::process::Pid>,
    pub(crate) lent_elsewhere: Option<&'t LentMemory>,
}

/// Runs every step through `target`'s backend, after preflight passed
/// with `report`. On failure, undoes everything (through the backend) and
/// returns the error. `continuity_time`, when given, gets the time the
/// continuity steps took added to it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_with<'a, B: Backend>(
    plan: &'a Plan,
    inputs: Inputs,
    target: Target<'a, B>,
    options: &ExecOptions,
    report: &PreflightReport,
    injected: Option<InjectedFailure>,
    progress: &'a mut dyn FnMut(Progress),
    continuity_time: Option<&mut std::time::Duration>,
) -> Result<Restored<B::Fd>, ExecError> {
    run_steps(
        plan,
        inputs,
        target,
        options,
        report,
        injected,
        progress,
        continuity_time,
    )
    .map(PendingRun::commit)
}

/// A run whose every step succeeded, not yet final: a tree plan keeps
/// each process's run pending until every part has run, so that a later
/// part's failure undoes the earlier ones too ([`PendingRun::abort`]).
pub(crate) struct PendingRun<'a, B: Backend> {
    state: Run<'a, B>,
    memory: &'a mut dyn BarrierMemory<B>,
    fd_limit: FdLimitRaise,
}

impl<'a, B: Backend> PendingRun<'a, B> {
    /// The ring memory this run lends: ring → its memfds' numbers in the
    /// process, the rings' first.
    pub(crate) fn lent(&self) -> impl Iterator<Item = (ObjectId, Vec<RawFd>)> + '_ {
        self.state
            .lent
            .iter()
            .map(|(object, fds)| (*object, fds.iter().map(B::number).collect()))
    }

    /// Makes the run final: the memory it placed is the restored
    /// program's, its temporaries and lent memfds are closed.
    pub(crate) fn commit(self) -> Restored<B::Fd> {
        let mut state = self.state;
        // Success: the ring regions are the restored task's memory now. A
        // validated plan closes every ring's handle; one built in memory may
        // not: its temporaries are closed (as `handles` are) and the memory
        // kept all the same.
        for (_, ring) in std::mem::take(&mut state.rings) {
            let (fd, regions) = ring.into_parts();
            state.backend.close(fd);
            state.regions.extend(regions);
        }
        for region in std::mem::take(&mut state.regions) {
            region.keep();
        }
        // Later syscalls (the caller's) run in the backend's own thread.
        let _ = state.backend.use_thread(None);
        state.ring_regions.clear();
        let handles = std::mem::take(&mut state.handles);
        for fd in handles.into_iter().flatten() {
            state.backend.close(fd);
        }
        state.close_lent_memory();
        Restored {
            fds: std::mem::take(&mut state.installed),
            substituted: std::mem::take(&mut state.substituted),
            mapped: std::mem::take(&mut state.mapped),
            skipped_mappings: std::mem::take(&mut state.skipped),
            continuous_rings: std::mem::take(&mut state.continuous_rings),
            moved_rings: std::mem::take(&mut state.moved_rings),
            ring_fds: std::mem::take(&mut state.ring_fds),
        }
    }

    /// Undoes the whole run, as a failed step would have.
    pub(crate) fn abort(self) {
        undo_all(self.state, self.memory, self.fd_limit);
    }
}

/// Runs every step through `target`'s backend, after preflight passed
/// with `report`, and leaves the run pending ([`PendingRun`]). On failure,
/// undoes everything (through the backend) and returns the error.
/// `continuity_time`, when given, gets the time the continuity steps took
/// added to it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_steps<'a, B: Backend>(
    plan: &'a Plan,
    inputs: Inputs,
    target: Target<'a, B>,
    options: &ExecOptions,
    report: &PreflightReport,
    injected: Option<InjectedFailure>,
    progress: &'a mut dyn FnMut(Progress),
    mut continuity_time: Option<&mut std::time::Duration>,
) -> Result<PendingRun<'a, B>, ExecError> {
    let Target {
        backend,
        memory,
        limits_of,
        lent_elsewhere,
    } = target;
    let fd_limit = FdLimitRaise::apply(plan, report, limits_of)?;
    let mut state = Run {
        plan,
        backend,
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
        ring_regions: Vec::new(),
        regions: Vec::new(),
        mapped: Vec::new(),
        skipped: Vec::new(),
        continuous: report.places_ring_memory,
        placed: BTreeMap::new(),
        rings: BTreeMap::new(),
        owners: BTreeMap::new(),
        continuity_error: None,
        continuous_rings: Vec::new(),
        moved_rings: Vec::new(),
        progress,
        adopted: BTreeMap::new(),
        adopted_fds: BTreeSet::new(),
        ring_fd_slots: Vec::new(),
        iowq_affinities: Vec::new(),
        ring_fds: Vec::new(),
        lent: Vec::new(),
        lent_elsewhere: lent_elsewhere.unwrap_or(&NOTHING_LENT),
    };
    for adopted in &report.adopted {
        state.adopted.entry(adopted.step).or_insert(adopted.fd);
        state.adopted_fds.insert(adopted.fd);
    }
    for (index, step) in plan.steps.iter().enumerate() {
        let started = std::time::Instant::now();
        let result = match injected {
            Some(injected) if injected.step == index => Err(Failure {
                call: "injected failure",
                errno: injected.errno,
            }),
            _ => state.step(index, step, memory),
        };
        if let Some(total) = continuity_time.as_deref_mut() {
            if is_continuity_step(&step.op) {
                *total += started.elapsed();
            }
        }
        if let Err(failure) = result {
            return Err(undo(state, memory, fd_limit, index, step, failure));
        }
    }
    Ok(PendingRun {
        state,
        memory,
        fd_limit,
    })
}

/// Undoes a failed run and names its failing step: fds first (rings
/// release their buffers), then the ring regions, then memory, then the fd
/// limit.
fn undo<B: Backend>(
    mut state: Run<'_, B>,
    memory: &mut dyn BarrierMemory<B>,
    fd_limit: FdLimitRaise,
    index: usize,
    step: &Step,
    failure: Failure,
) -> ExecError {
    let memory_error = state.memory_error.take();
    let continuity_error = state.continuity_error.take();
    if let Some(changed) = state.type_changed.take() {
        undo_all(state, memory, fd_limit);
        return ExecError::OpenedTypeChanged {
            index,
            object: step.object,
            path: changed.path,
            recorded: changed.recorded,
            found: changed.found,
        };
    }
    undo_all(state, memory, fd_limit);
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

/// Releases everything a failed run made: its fds (closed through the
/// backend: in this process that is dropping them, as before), the ring
/// regions it mapped, the continuity memory (dropped with `state`), the
/// barrier's memory (before the barrier too: preflight may have reserved
/// some), the raised fd limit.
fn undo_all<B: Backend>(
    mut state: Run<'_, B>,
    memory: &mut dyn BarrierMemory<B>,
    fd_limit: FdLimitRaise,
) {
    // Registered ring fds hold their rings on their own: given back
    // first, each in its thread, while the rings' handles are open.
    for (tid, offset, ring) in std::mem::take(&mut state.ring_fd_slots).into_iter().rev() {
        state.unregister_ring_fd(tid, offset, ring);
    }
    // io-wq affinities live in threads, which outlive the rings.
    for (tid, ring) in std::mem::take(&mut state.iowq_affinities).into_iter().rev() {
        state.unregister_iowq_affinity(tid, ring);
    }
    let handles = std::mem::take(&mut state.handles);
    for fd in handles.into_iter().flatten() {
        state.backend.close(fd);
    }
    let installed = std::mem::take(&mut state.installed);
    for fd in installed.into_values().flatten() {
        state.backend.close(fd);
    }
    state.close_lent_memory();
    for (addr, len) in std::mem::take(&mut state.ring_regions) {
        let _ = state.backend.munmap(addr, len);
    }
    // What else the run holds, in the order it was always released in:
    // the caller's unused inputs, then the continuity state (rings closed
    // before their memory goes; the program's own memory gets its bytes
    // back, never unmapped).
    drop(std::mem::take(&mut state.inputs));
    let _ = state.backend.use_thread(None);
    release_all(std::mem::take(&mut state.regions), state.backend);
    for (_, placed) in std::mem::take(&mut state.placed) {
        placed.release_in(state.backend);
    }
    for (_, ring) in std::mem::take(&mut state.rings) {
        ring.release_in(state.backend);
    }
    memory.undo(state.backend);
    fd_limit.put_back();
}

/// The `RLIMIT_NOFILE` soft limit as the run found it, when the run raised
/// it (as preflight said it must), and whose it is (`None`: this process).
struct FdLimitRaise {
    old: Option<Rlimit>,
    of: Option<rustix::process::Pid>,
}

impl FdLimitRaise {
    fn apply(
        plan: &Plan,
        report: &PreflightReport,
        of: Option<rustix::process::Pid>,
    ) -> Result<FdLimitRaise, ExecError> {
        if !report.raises_fd_limit {
            return Ok(FdLimitRaise { old: None, of });
        }
        let failed = |errno| ExecError::StepFailed {
            index: 0,
            op: plan.steps.first().map_or("none", |step| step.op.name()),
            object: None,
            call: "setrlimit(RLIMIT_NOFILE)",
            errno,
        };
        let old = match of {
            None => {
                let old = getrlimit(Resource::Nofile);
                let raised = Rlimit {
                    current: Some(report.fd_limit_needed),
                    maximum: old.maximum,
                };
                setrlimit(Resource::Nofile, raised).map_err(failed)?;
                old
            }
            // prlimit sets and answers the old value in one call.
            Some(pid) => {
                let raised = Rlimit {
                    current: Some(report.fd_limit_needed),
                    maximum: (report.fd_limit_hard != u64::MAX).then_some(report.fd_limit_hard),
                };
                prlimit(Some(pid), Resource::Nofile, raised).map_err(failed)?
            }
        };
        Ok(FdLimitRaise { old: Some(old), of })
    }

    fn put_back(self) {
        if let Some(old) = self.old {
            match self.of {
                None => drop(setrlimit(Resource::Nofile, old)),
                Some(pid) => drop(prlimit(Some(pid), Resource::Nofile, old)),
            }
        }
    }
}

impl<B: Backend> Run<'_, B> {
    /// Closes the memfds kept open for other parts of a tree plan (once
    /// they mapped them, or when the run is undone).
    fn close_lent_memory(&mut self) {
        for (_, memfds) in std::mem::take(&mut self.lent) {
            for memfd in memfds {
                self.backend.close(memfd);
            }
        }
    }

    /// Runs one step; an fd it creates goes into the handle table at the
    /// step's index, at or above the floor.
    fn step(
        &mut self,
        index: usize,
        step: &Step,
        memory: &mut dyn BarrierMemory<B>,
    ) -> Result<(), Failure> {
        self.choose_thread(index, &step.op)?;
        if self.adopted.contains_key(&index) {
            // The process holds the object already (preflight checked it
            // is the recorded one): its fd serves as the step's handle.
            return Ok(());
        }
        let created = match &step.op {
            Op::CreateEventfd(create) => Some(self.create_eventfd(create)?),
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
            Op::RegisterPersonalities(register) => {
                self.register_personalities(register)?;
                None
            }
            Op::RegisterPbufRing(register) => {
                self.register_pbuf_ring(register)?;
                None
            }
            Op::ProvideBuffers(provide) => {
                self.provide_buffers(provide)?;
                None
            }
            Op::RegisterRestrictions(register) => {
                self.register_restrictions(register)?;
                None
            }
            Op::RegisterSettings(register) => {
                self.register_settings(register)?;
                None
            }
            Op::RegisterRingFd(register) => {
                self.register_ring_fd(step.object, register)?;
                None
            }
            Op::RegisterWaitRegion(register) => {
                self.register_wait_region(register)?;
                None
            }
            Op::EnableRings(enable) => {
                self.enable_rings(step.object, enable)?;
                None
            }
            Op::MemoryBarrier => {
                self.memory_barrier(memory)?;
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
            Op::ReceiveFd(receive) => Some(self.receive_fd(step.object, receive)?),
        };
        if let Some(fd) = created {
            let fd = self.above_floor(fd)?;
            if let Some(slot) = self.handles.get_mut(index) {
                *slot = Some(fd);
            }
        }
        Ok(())
    }

    /// Makes the step's syscalls run in the thread that must make them: a
    /// `SINGLE_ISSUER` ring is created, registered with and fed by its
    /// recorded owner thread (another thread gets `EEXIST`); everything
    /// else runs in the backend's own thread. In this process every step
    /// runs in the calling thread (`Backend::use_thread`).
    fn choose_thread(&mut self, index: usize, op: &Op) -> Result<(), Failure> {
        let owner_of = |handle: ringplan_plan::Handle| {
            usize::try_from(handle.0)
                .ok()
                .and_then(|handle| self.owners.get(&handle).copied())
        };
        let tid = match op {
            Op::SetupRing(setup) => {
                let owned = setup.flags & ringplan_image::SetupFlags::SINGLE_ISSUER.bits() != 0
                    && setup.flags & ringplan_image::SetupFlags::R_DISABLED.bits() == 0;
                let owner = if owned { setup.owner_tid } else { None };
                if let Some(owner) = owner {
                    self.owners.insert(index, owner);
                }
                owner
            }
            Op::RestoreCompletions(restore) => owner_of(restore.ring_handle),
            Op::QueueSqes(queue) => owner_of(queue.ring_handle),
            Op::RegisterEventfd(register) => owner_of(register.ring_handle),
            Op::RegisterFiles(register) => owner_of(register.ring_handle),
            Op::RegisterPersonalities(register) => owner_of(register.ring_handle),
            Op::RegisterPbufRing(register) => owner_of(register.ring_handle),
            Op::ProvideBuffers(provide) => owner_of(provide.ring_handle),
            Op::RegisterRestrictions(register) => owner_of(register.ring_handle),
            // The io-wq limits and affinity are the thread's: the owner's,
            // else the one whose io-wq the affinity was recorded of where
            // the process has it (a process restored into that is not the
            // dumped one has other threads: then the backend's own, which
            // --verify notes).
            Op::RegisterSettings(register) => match owner_of(register.ring_handle) {
                Some(owner) => Some(owner),
                None => {
                    let recorded = register
                        .iowq_affinity
                        .as_ref()
                        .and_then(|affinity| affinity.tid);
                    if recorded.is_some() && self.backend.use_thread(recorded).is_ok() {
                        return Ok(());
                    }
                    None
                }
            },
            // The kernel keeps registered ring fds per thread: the
            // recorded one (in this process, the calling thread).
            Op::RegisterRingFd(register) => Some(register.tid),
            // A SINGLE_ISSUER ring set up R_DISABLED belongs to the thread
            // that enables it: its recorded owner.
            Op::EnableRings(enable) => usize::try_from(enable.ring_handle.0)
                .ok()
                .and_then(|index| self.plan.steps.get(index))
                .and_then(|step| match &step.op {
                    Op::SetupRing(setup)
                        if setup.flags & ringplan_image::SetupFlags::SINGLE_ISSUER.bits() != 0 =>
                    {
                        setup.owner_tid
                    }
                    _ => None,
                }),
            Op::RegisterBuffers(register) => owner_of(register.ring_handle),
            _ => None,
        };
        self.backend
            .use_thread(tid)
            .map_err(fail("choosing the ring's owner thread"))
    }

    /// Moves a new fd at or above the floor, closing the original.
    fn above_floor(&mut self, fd: B::Fd) -> Result<B::Fd, Failure> {
        let number = B::number(&fd);
        if number >= self.floor {
            return Ok(fd);
        }
        let moved = self.backend.fcntl_dupfd_cloexec(number, self.floor);
        self.backend.close(fd);
        moved.map_err(fail("fcntl(F_DUPFD_CLOEXEC)"))
    }

    /// The fd number a handle names.
    fn handle(&self, handle: ringplan_plan::Handle) -> Result<RawFd, Failure> {
        // A decoded plan was validated: every handle names an earlier,
        // unclosed fd-defining step. A plan built in memory may not be.
        let index = usize::try_from(handle.0).ok();
        index
            .and_then(|index| self.handles.get(index))
            .and_then(Option::as_ref)
            .map(B::number)
            .or_else(|| {
                index
                    .and_then(|index| self.rings.get(&index))
                    .map(ContinuousRing::fd_number)
            })
            .or_else(|| index.and_then(|index| self.adopted.get(&index).copied()))
            .ok_or(Failure {
                call: "handle lookup",
                errno: Errno::BADF,
            })
    }
}
