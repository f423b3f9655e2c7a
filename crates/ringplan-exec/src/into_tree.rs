//! A restore of a tree plan into a tree of processes ([`execute_tree_in`],
//! `plan exec --pid ROOT` of a `plan dump --tree` image): every process's
//! part run inside that process, as [`crate::execute_in`] runs a plan of
//! one process, with what the parts share passed between them.
//!
//! - **Which process is which.** The plan's processes are matched to ROOT
//!   and its descendants by the tree's shape: a recorded process's
//!   children are the live process's children with the same pids (a tree
//!   CRIU restored, or one whose rings `plan dump --detach` took out), or
//!   else, as many of them, in pid order. A thread id the plan names
//!   (a `SINGLE_ISSUER` owner, a registered ring fd's thread) that is a
//!   recorded process's main thread becomes the live process's.
//! - **All held, all checked first.** Every process with steps is locked
//!   (its hold lock), attached and preflighted before the first syscall
//!   that changes anything; a refusal lets them all go as found.
//! - **Parts in order, undone together.** Each part runs in its process
//!   in the plan's order and stays pending (`run::PendingRun`): a later
//!   part takes objects from an earlier one's fds (`receive_fd`: the
//!   receiving process itself calls `pidfd_open` and `pidfd_getfd`), and
//!   maps ring memory the earlier one placed and keeps open for it
//!   (`lend`). A failure in any part undoes that part and then every
//!   earlier one, last first; success makes them final, closing the lent
//!   memory's fds.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ringplan_kernel::hold_lock::{HoldLock, HOLD_WAIT};
use ringplan_kernel::procfs::{task, Process};
use ringplan_plan::{Op, Plan};

use crate::backend::RemoteBackend;
use crate::error::ExecError;
use crate::into_process::{
    needed_threads, placed_ranges, signal_process, wait_until_stopped, ProcessOptions, RestoredIn,
    StoppedTimings,
};
use crate::memory::BackendBuffers;
use crate::preflight::{preflight_in, refuse_before_attach};
use crate::remote::RemoteProcess;
use crate::run::{run_steps, InjectedFailure, LentMemory, Target};
use crate::{ExecOptions, Inputs, PreflightReport};

/// One process's part, as it runs: its live pid and its plan with the
/// live pids and thread ids.
struct LivePart {
    pid: u32,
    plan: Plan,
    /// Live pid → recorded pid, for every process matched.
    recorded_of: BTreeMap<u32, u32>,
}

/// A part being run: its process held, preflighted.
struct HeldPart {
    pid: u32,
    plan: Plan,
    recorded_of: BTreeMap<u32, u32>,
    lock: HoldLock,
    held: RemoteProcess,
    report: PreflightReport,
    found_stopped: bool,
    timings: StoppedTimings,
}

/// Restores tree plan `plan` into the process tree of `root`: every
/// process matched to the plan's (see the module doc), every part
/// preflighted, then run in order inside its process; any failure undoes
/// every part. Returns what each process with steps got, in the plan's
/// order. Supplied inputs are refused as [`crate::execute_in`] refuses
/// them (a part's external input comes from an earlier part, or is
/// substituted with [`ExecOptions::substitute_external`]).
pub fn execute_tree_in(
    root: u32,
    plan: &Plan,
    options: &ExecOptions,
    process: &ProcessOptions,
) -> Result<Vec<RestoredIn>, ExecError> {
    execute_tree_in_inner(root, plan, options, process, None)
}

/// The preflight of [`execute_tree_in`] alone (`plan exec --pid ROOT
/// --dry-run` of a tree plan): holds every process of the tree with steps,
/// checks its part against it, and lets them all go as found. Each
/// process's report, in the plan's order; the first refusal otherwise.
pub fn preflight_tree_in(
    root: u32,
    plan: &Plan,
    options: &ExecOptions,
) -> Result<Vec<(u32, PreflightReport)>, ExecError> {
    let held = hold_parts(live_parts(root, plan)?, options)?;
    let reports = held
        .iter()
        .map(|part| (part.pid, part.report.clone()))
        .collect();
    let_go(held, true);
    Ok(reports)
}

/// [`execute_tree_in`] with a failure injected at step `.1.step` of the
/// part at position `.0` (0 is the tree's first process) (test hooks).
pub(crate) fn execute_tree_in_inner(
    root: u32,
    plan: &Plan,
    options: &ExecOptions,
    process: &ProcessOptions,
    injected: Option<(usize, InjectedFailure)>,
) -> Result<Vec<RestoredIn>, ExecError> {
    let parts = live_parts(root, plan)?;
    // Only the parts with steps are held; their positions in the plan
    // stay the test hooks' way to name them.
    let positions: Vec<usize> = (0..parts.len())
        .filter(|&position| !parts[position].plan.steps.is_empty())
        .collect();
    let mut held = hold_parts(parts, options)?;
    let injected = injected.and_then(|(position, failure)| {
        positions
            .iter()
            .position(|&held_position| held_position == position)
            .map(|index| (index, failure))
    });
    // A stopped process's io threads take part in its group stop (see
    // `execute_in`): let them run while the user threads are held.
    for part in &held {
        if part.found_stopped {
            signal_process(part.pid, rustix::process::Signal::CONT);
        }
    }
    let mut lent = LentMemory::new();
    let result = run_parts(&mut held, 0, &mut lent, options, injected);
    let resume = !process.leave_stopped;
    match result {
        Ok(restored) => {
            let mut out = Vec::with_capacity(held.len());
            let mut detach_error = None;
            for (part, (restored, buffers)) in held.into_iter().zip(restored) {
                let continue_after = resume && part.found_stopped && !part.lock.is_delegated();
                let left_stopped = !resume || (part.found_stopped && !continue_after);
                let started = Instant::now();
                if part.found_stopped && left_stopped {
                    signal_process(part.pid, rustix::process::Signal::STOP);
                }
                let mut timings = part.timings;
                let pid = part.pid;
                if let Err(error) = part.held.detach(resume) {
                    detach_error.get_or_insert(ExecError::Detach(error));
                }
                if part.found_stopped && left_stopped {
                    wait_until_stopped(pid);
                }
                timings.detach = started.elapsed();
                drop(part.lock);
                let mut restored = restored;
                // The run saw the live thread ids its plan was given; a
                // comparison with the image wants the recorded ones.
                for slot in &mut restored.ring_fds {
                    if let Some(&recorded) = part.recorded_of.get(&slot.recorded_tid) {
                        slot.recorded_tid = recorded;
                    }
                }
                out.push(RestoredIn {
                    pid,
                    thread: pid,
                    restored,
                    buffers,
                    report: part.report,
                    left_stopped,
                    timings,
                });
            }
            match detach_error {
                Some(error) => Err(error),
                None => Ok(out),
            }
        }
        Err(error) => {
            let_go(held, resume);
            Err(error)
        }
    }
}

/// Holds and preflights the process of every part with steps, in order;
/// on the first refusal lets go of those held so far, as found.
fn hold_parts(parts: Vec<LivePart>, options: &ExecOptions) -> Result<Vec<HeldPart>, ExecError> {
    let mut held = Vec::with_capacity(parts.len());
    for live in parts.into_iter().filter(|part| !part.plan.steps.is_empty()) {
        match hold_part(live, options) {
            Ok(part) => held.push(part),
            Err(error) => {
                let_go(held, true);
                return Err(error);
            }
        }
    }
    Ok(held)
}

/// Locks, attaches and preflights one part's process; lets it go as
/// found when preflight refuses.
fn hold_part(part: LivePart, options: &ExecOptions) -> Result<HeldPart, ExecError> {
    let in_process = |pid: u32| move |error: ExecError| ExecError::in_tree_process(pid, error);
    let pid = part.pid;
    let inputs = Inputs::default();
    refuse_before_attach(&part.plan, &inputs, options).map_err(in_process(pid))?;
    let threads = needed_threads(pid, &part.plan).map_err(in_process(pid))?;
    let lock = HoldLock::acquire(pid, HOLD_WAIT)
        .map_err(ExecError::Held)
        .map_err(in_process(pid))?;
    let started = Instant::now();
    let held = RemoteProcess::attach_avoiding(pid, &threads, &placed_ranges(&part.plan))
        .map_err(ExecError::Attach)
        .map_err(in_process(pid))?;
    let attach = started.elapsed();
    let started = Instant::now();
    let report = match preflight_in(pid, &part.plan, &inputs, options) {
        Ok(report) => report,
        Err(error) => {
            let _ = held.detach(true);
            return Err(in_process(pid)(error));
        }
    };
    Ok(HeldPart {
        pid,
        plan: part.plan,
        recorded_of: part.recorded_of,
        lock,
        found_stopped: held.was_stopped(),
        held,
        report,
        timings: StoppedTimings {
            attach,
            preflight: started.elapsed(),
            ..StoppedTimings::default()
        },
    })
}

/// Lets every held process go after a failure (everything undone), each
/// stopped again if it was found stopped.
fn let_go(held: Vec<HeldPart>, resume: bool) {
    for part in held {
        if part.found_stopped {
            signal_process(part.pid, rustix::process::Signal::STOP);
        }
        let _ = part.held.detach(resume);
        if part.found_stopped {
            wait_until_stopped(part.pid);
        }
    }
}

/// What one part's run left: its restored objects and its buffer ranges.
type PartResult = (crate::Restored<crate::RemoteFd>, Vec<(u64, u64)>);

/// Runs `parts[0]`, then (recursively) the rest, keeping each pending
/// until all ran: a later failure aborts the earlier runs on the way
/// back, last first.
fn run_parts(
    parts: &mut [HeldPart],
    index: usize,
    lent: &mut LentMemory,
    options: &ExecOptions,
    injected: Option<(usize, InjectedFailure)>,
) -> Result<Vec<PartResult>, ExecError> {
    let Some((part, rest)) = parts.split_first_mut() else {
        return Ok(Vec::new());
    };
    let pid = part.pid;
    let started = Instant::now();
    let mut continuity = Duration::ZERO;
    let lent_before = lent.clone();
    let mut backend = RemoteBackend::new(&mut part.held, pid);
    let mut buffers = BackendBuffers {
        process: Process::Pid(pid),
        mapped: Vec::new(),
        own: Vec::new(),
    };
    let mut no_progress = |_| {};
    let target = Target {
        backend: &mut backend,
        memory: &mut buffers,
        limits_of: rustix::process::Pid::from_raw(pid as i32),
        lent_elsewhere: Some(&lent_before),
    };
    let here = injected.and_then(|(at, failure)| (at == index).then_some(failure));
    let pending = run_steps(
        &part.plan,
        Inputs::default(),
        target,
        options,
        &part.report,
        here,
        &mut no_progress,
        Some(&mut continuity),
    );
    let pending = match pending {
        Ok(pending) => pending,
        Err(error) => {
            let error = match backend.take_broken() {
                Some(cause) => ExecError::ProcessLost {
                    index: error.step().unwrap_or(0),
                    op: error
                        .step()
                        .and_then(|step| part.plan.steps.get(step))
                        .map_or("none", |step| step.op.name()),
                    cause,
                },
                None => error,
            };
            return Err(ExecError::in_tree_process(pid, error));
        }
    };
    part.timings.run = started.elapsed();
    part.timings.continuity = continuity;
    for (object, memfds) in pending.lent() {
        lent.insert((pid, object), memfds);
    }
    match run_parts(rest, index + 1, lent, options, injected) {
        Ok(mut later) => {
            let restored = pending.commit();
            drop(backend);
            later.insert(0, (restored, buffers.mapped));
            Ok(later)
        }
        Err(error) => {
            pending.abort();
            Err(error)
        }
    }
}

/// The plan's processes matched to `root`'s live tree, each part's plan
/// with live pids and main-thread ids; refuses a tree of another shape
/// or a plan that is not a tree plan.
fn live_parts(root: u32, plan: &Plan) -> Result<Vec<LivePart>, ExecError> {
    if plan.processes.is_empty() {
        return Err(ExecError::TreeMismatch(
            "the plan is not a tree plan (plan dump --tree)".to_owned(),
        ));
    }
    let mut live_of: BTreeMap<u32, u32> = BTreeMap::new();
    live_of.insert(plan.source.pid, root);
    // Children of each recorded parent, in the plan's order.
    let mut children: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for part in &plan.processes {
        children.entry(part.parent).or_default().push(part.pid);
    }
    let mut queue = vec![plan.source.pid];
    while let Some(recorded_parent) = queue.pop() {
        let Some(recorded) = children.get(&recorded_parent) else {
            continue;
        };
        let live_parent = live_of.get(&recorded_parent).copied().unwrap_or(root);
        let live = task::children(Process::Pid(live_parent)).map_err(|error| {
            ExecError::ProcessUnavailable {
                pid: live_parent,
                cause: error.to_string(),
            }
        })?;
        let same_pids = recorded.iter().all(|pid| live.contains(pid));
        if !same_pids && live.len() != recorded.len() {
            return Err(ExecError::TreeMismatch(format!(
                "process {live_parent} has {} children, but the plan's process {recorded_parent} had {}",
                live.len(),
                recorded.len()
            )));
        }
        for (position, &pid) in recorded.iter().enumerate() {
            let matched = if same_pids { pid } else { live[position] };
            live_of.insert(pid, matched);
            queue.push(pid);
        }
    }
    let recorded_of: BTreeMap<u32, u32> = live_of
        .iter()
        .map(|(&recorded, &live)| (live, recorded))
        .collect();
    let parts = std::iter::once(plan).chain(plan.processes.iter().map(|part| &part.plan));
    Ok(parts
        .map(|part| LivePart {
            recorded_of: recorded_of.clone(),
            pid: live_of
                .get(&part.source.pid)
                .copied()
                .unwrap_or(part.source.pid),
            plan: with_live_ids(part, &live_of),
        })
        .collect())
}

/// `plan` with every recorded pid it names replaced by the live one: the
/// process a `receive_fd` takes from, and a thread id that was a recorded
/// process's main thread.
fn with_live_ids(plan: &Plan, live_of: &BTreeMap<u32, u32>) -> Plan {
    let live = |id: u32| live_of.get(&id).copied().unwrap_or(id);
    let mut plan = plan.clone();
    plan.processes.clear();
    plan.source.pid = live(plan.source.pid);
    for step in &mut plan.steps {
        match &mut step.op {
            Op::ReceiveFd(receive) => receive.from_pid = live(receive.from_pid),
            Op::SetupRing(setup) => setup.owner_tid = setup.owner_tid.map(live),
            Op::RegisterRingFd(register) => register.tid = live(register.tid),
            _ => {}
        }
    }
    plan
}
