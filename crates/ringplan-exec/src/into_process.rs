//! A restore into another process ([`execute_in`], `plan exec --pid`):
//! hold the process, preflight against it, run the plan's steps as
//! syscalls inside it ([`crate::RemoteBackend`]), undo inside it on any
//! failure, and let it go with its registers as found.
//!
//! The syscalls run in the process's main thread (its pid), except those
//! of a `SINGLE_ISSUER` ring with a recorded owner thread: it is created,
//! registered with and fed its NOPs in that thread, which must exist in
//! the process (refused before anything is done otherwise). Continuity
//! steps (a ring restored where the program left it) run as in this
//! process: memory placed in the target (a memfd mapped at the recorded
//! addresses, or the program's own memory used as it is), the ring's
//! header and entries written through `/proc/PID/mem`, `io_uring_enter`
//! injected, `MSG_RING` from a helper ring here to a copy of the ring's
//! fd.

//!
//! Like `--freeze` and `plan freeze`, it first takes the process's hold
//! lock (`ringplan_kernel::hold_lock`): another ringplan command holding
//! the process is waited for (10 s), then refused naming it, so no two
//! commands stop and resume one process at once.

use std::time::{Duration, Instant};

use ringplan_kernel::hold_lock::{HoldLock, HOLD_WAIT};
use ringplan_plan::Plan;

use crate::backend::{RemoteBackend, RemoteFd};
use crate::error::ExecError;
use crate::memory::BackendBuffers;
use crate::preflight::{check_owner_threads, owner_threads, preflight_in, refuse_before_attach};
use crate::remote::RemoteProcess;
use crate::run::{run_with, InjectedFailure, Target};
use crate::{ExecOptions, Inputs, PreflightReport, Restored};

/// How to treat the process restored into.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessOptions {
    /// Leave the process stopped (group-stop, as by `SIGSTOP`) after the
    /// restore, instead of resuming it. A process found stopped (by `plan
    /// dump --detach`, a `SIGSTOP`) is resumed too, unless the `plan
    /// freeze` that stopped it runs this restore (its hold handed down):
    /// then it is left for that freeze to resume.
    pub leave_stopped: bool,
}

/// How long the process was held, in parts.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoppedTimings {
    /// Attaching: stopping and recording every thread, mapping the scratch
    /// pages.
    pub attach: Duration,
    /// Preflight against the held process.
    pub preflight: Duration,
    /// The run: injected syscalls and ring memory reads and writes.
    pub run: Duration,
    /// Of the run, the continuity steps (`place_ring_memory`,
    /// `setup_ring` on placed memory, `restore_completions`,
    /// `queue_sqes`): placing memory, ring headers and entries written
    /// through `/proc/PID/mem`, NOPs and `MSG_RING`s.
    pub continuity: Duration,
    /// Detaching: scratch pages unmapped, registers and masks put back.
    pub detach: Duration,
}

impl StoppedTimings {
    /// The whole time the process was held.
    pub fn total(&self) -> Duration {
        self.attach + self.preflight + self.run + self.detach
    }
}

/// What a restore into another process leaves behind.
#[derive(Debug)]
pub struct RestoredIn {
    /// The process.
    pub pid: u32,
    /// The thread the syscalls ran in, but for those of `SINGLE_ISSUER`
    /// rings (the main thread; each such ring's owner is in
    /// `restored.continuous_rings`).
    pub thread: u32,
    /// The installed fds (numbers in the process) and what was mapped,
    /// substituted or skipped.
    pub restored: Restored<RemoteFd>,
    /// The buffer ranges mapped in the process, `[start, end)`.
    pub buffers: Vec<(u64, u64)>,
    /// What preflight found.
    pub report: PreflightReport,
    /// Whether the process was left stopped.
    pub left_stopped: bool,
    /// How long it was held.
    pub timings: StoppedTimings,
}

/// Every range the plan maps at a fixed address (ring memory placed where
/// the program saw it, buffers, ring regions, a received ring's
/// mappings), `[start, end)`: where the scratch pages must not go.
pub(crate) fn placed_ranges(plan: &Plan) -> Vec<(u64, u64)> {
    let mut ranges: Vec<(u64, u64)> = crate::memory::buffer_ranges(plan).unwrap_or_default();
    for step in &plan.steps {
        match &step.op {
            ringplan_plan::Op::PlaceRingMemory(memory) => {
                ranges.extend(memory.ranges().map(|range| {
                    let len = crate::continuity::page_round(range.len).unwrap_or(range.len);
                    (range.addr, range.addr.saturating_add(len))
                }));
            }
            ringplan_plan::Op::SetupRing(ringplan_plan::SetupRing { mappings, .. })
            | ringplan_plan::Op::ReceiveFd(ringplan_plan::ReceiveFd { mappings, .. }) => {
                ranges.extend(
                    mappings
                        .iter()
                        .map(|mapping| (mapping.addr, mapping.addr.saturating_add(mapping.len))),
                );
            }
            _ => {}
        }
    }
    ranges
}

/// Every thread the plan's syscalls must run in: the main thread, each
/// `SINGLE_ISSUER` ring's owner and each thread that registered a ring fd.
/// Refuses, before anything is done, a plan whose owner or ring-fd thread
/// the process does not have.
pub(crate) fn needed_threads(pid: u32, plan: &Plan) -> Result<Vec<u32>, ExecError> {
    check_owner_threads(plan, pid)?;
    let mut threads = vec![pid];
    let ring_fd_threads = plan.steps.iter().filter_map(|step| match &step.op {
        ringplan_plan::Op::RegisterRingFd(register) => Some(register.tid),
        _ => None,
    });
    for tid in owner_threads(plan)
        .into_iter()
        .map(|(_, _, tid)| tid)
        .chain(ring_fd_threads)
    {
        if !threads.contains(&tid) {
            threads.push(tid);
        }
    }
    Ok(threads)
}

/// Restores `plan` into process `pid`: refuses supplied `inputs` (only
/// stand-ins opened inside the process,
/// [`ExecOptions::substitute_external`], can serve external inputs) and a
/// `SINGLE_ISSUER` ring whose owner thread the process lacks, holds every
/// thread of the process, preflights against it, runs the steps in its
/// main thread (a `SINGLE_ISSUER` ring's in its owner thread), and lets it
/// go (resumed unless `process` says to leave
/// it stopped, or it was stopped when found). On any failure after
/// attaching, everything done inside the process is undone (fds closed,
/// memory unmapped, its fd limit put back) before it is let go.
pub fn execute_in(
    pid: u32,
    plan: &Plan,
    inputs: Inputs,
    options: &ExecOptions,
    process: &ProcessOptions,
) -> Result<RestoredIn, ExecError> {
    execute_in_inner(pid, plan, inputs, options, process, None)
}

/// The preflight of [`execute_in`] alone (`plan exec --pid --dry-run`):
/// holds the process, checks the plan against it, and lets it go as found.
pub fn preflight_in_process(
    pid: u32,
    plan: &Plan,
    inputs: &Inputs,
    options: &ExecOptions,
) -> Result<PreflightReport, ExecError> {
    refuse_before_attach(plan, inputs, options)?;
    let threads = needed_threads(pid, plan)?;
    let _lock = HoldLock::acquire(pid, HOLD_WAIT).map_err(ExecError::Held)?;
    let held = RemoteProcess::attach_avoiding(pid, &threads, &placed_ranges(plan))
        .map_err(ExecError::Attach)?;
    let report = preflight_in(pid, plan, inputs, options);
    held.detach(true).map_err(ExecError::Detach)?;
    report
}

/// [`execute_in`] with a failure injected (test hooks).
pub(crate) fn execute_in_inner(
    pid: u32,
    plan: &Plan,
    inputs: Inputs,
    options: &ExecOptions,
    process: &ProcessOptions,
    injected: Option<InjectedFailure>,
) -> Result<RestoredIn, ExecError> {
    refuse_before_attach(plan, &inputs, options)?;
    let threads = needed_threads(pid, plan)?;
    // Held from before the attach to after the detach (dropped last).
    let lock = HoldLock::acquire(pid, HOLD_WAIT).map_err(ExecError::Held)?;
    let started = Instant::now();
    let mut held = RemoteProcess::attach_avoiding(pid, &threads, &placed_ranges(plan))
        .map_err(ExecError::Attach)?;
    let mut timings = StoppedTimings {
        attach: started.elapsed(),
        ..StoppedTimings::default()
    };
    let started = Instant::now();
    let report = match preflight_in(pid, plan, &inputs, options) {
        Ok(report) => report,
        Err(error) => {
            // Nothing was done: let it go as found.
            let _ = held.detach(true);
            return Err(error);
        }
    };
    timings.preflight = started.elapsed();
    // A stopped process's io threads take part in its group stop: an SQ
    // thread the restore creates would stop at once and never consume
    // the NOPs the restore waits for. Its own threads are held by ptrace,
    // so SIGCONT lets only the io threads run; a SIGSTOP queued before the
    // detach stops it again wherever it must end stopped.
    let found_stopped = held.was_stopped();
    if found_stopped {
        signal_process(pid, rustix::process::Signal::CONT);
    }
    let started = Instant::now();
    let mut continuity = Duration::ZERO;
    let mut backend = RemoteBackend::new(&mut held, pid);
    let mut buffers = BackendBuffers {
        process: ringplan_kernel::procfs::Process::Pid(pid),
        mapped: Vec::new(),
        own: Vec::new(),
    };
    let target = Target {
        backend: &mut backend,
        memory: &mut buffers,
        limits_of: rustix::process::Pid::from_raw(pid as i32),
        lent_elsewhere: None,
    };
    let result = run_with(
        plan,
        inputs,
        target,
        options,
        &report,
        injected,
        &mut |_| {},
        Some(&mut continuity),
    );
    timings.run = started.elapsed();
    timings.continuity = continuity;
    let lost = backend.take_broken();
    drop(backend);
    let resume = !process.leave_stopped;
    // A process found stopped (by `plan dump --detach`, a SIGSTOP) is
    // resumed after a restore unless asked otherwise; but one stopped by
    // the `plan freeze` that runs this command (its hold handed down) is
    // that command's to resume, and a failed restore leaves it as found.
    let continue_after = resume && found_stopped && !lock.is_delegated();
    let left_stopped = !resume || (found_stopped && !continue_after);
    let stop_again = |stay_stopped: bool| {
        if found_stopped && stay_stopped {
            signal_process(pid, rustix::process::Signal::STOP);
        }
    };
    // The queued SIGSTOP is taken once the threads are let go: wait for it,
    // so that "left stopped" is true when this returns.
    let stopped_again = |stay_stopped: bool| {
        if found_stopped && stay_stopped {
            wait_until_stopped(pid);
        }
    };
    if let Some(cause) = lost {
        let index = result.as_ref().err().and_then(ExecError::step).unwrap_or(0);
        stop_again(true);
        let _ = held.detach(resume);
        stopped_again(true);
        return Err(ExecError::ProcessLost {
            index,
            op: plan.steps.get(index).map_or("none", |step| step.op.name()),
            cause,
        });
    }
    match result {
        Ok(restored) => {
            let started = Instant::now();
            stop_again(left_stopped);
            held.detach(resume).map_err(ExecError::Detach)?;
            stopped_again(left_stopped);
            timings.detach = started.elapsed();
            Ok(RestoredIn {
                pid,
                thread: pid,
                restored,
                buffers: buffers.mapped,
                report,
                left_stopped,
                timings,
            })
        }
        Err(error) => {
            // Undone inside the process already.
            stop_again(true);
            let _ = held.detach(resume);
            stopped_again(true);
            Err(error)
        }
    }
}

/// Sends `signal` to the process. It cannot be refused: this process
/// traces the target; a target gone since is gone, which the detach
/// reports.
pub(crate) fn signal_process(pid: u32, signal: rustix::process::Signal) {
    if let Some(target) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(target, signal);
    }
}

/// Waits (up to 2 s) until every thread of `pid` is stopped. A process
/// that does not stop by then is left to the caller's next look.
pub(crate) fn wait_until_stopped(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut pause = Duration::from_micros(50);
    while Instant::now() < deadline {
        match ringplan_kernel::procfs::task::first_not_stopped(pid) {
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return,
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}
