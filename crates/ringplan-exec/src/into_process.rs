//! A restore into another process ([`execute_in`], `plan exec --pid`):
//! hold the process, preflight against it, run the plan's steps as
//! syscalls inside it ([`crate::RemoteBackend`]), undo inside it on any
//! failure, and let it go with its registers as found.
//!
//! The syscalls run in one thread: the process's main thread (its pid).
//! A ring with `IORING_SETUP_SINGLE_ISSUER` is therefore owned by the main
//! thread after the restore. Plans with continuity steps (a ring restored
//! where the program left it) are refused before anything is done: those
//! steps run only in this process so far.
//!
//! Like `--freeze` and `plan freeze`, it first takes the process's hold
//! lock (`ringplan_kernel::hold_lock`): another ringplan command holding
//! the process is waited for (10 s), then refused naming it, so no two
//! commands stop and resume one process at once. A process found stopped
//! (by `plan freeze`, say) is left stopped.

use ringplan_kernel::hold_lock::{HoldLock, HOLD_WAIT};
use ringplan_plan::Plan;

use crate::backend::{RemoteBackend, RemoteFd};
use crate::error::ExecError;
use crate::memory::BackendBuffers;
use crate::preflight::{preflight_in, refuse_before_attach};
use crate::remote::RemoteProcess;
use crate::run::{run_with, InjectedFailure, Target};
use crate::{ExecOptions, Inputs, PreflightReport, Restored};

/// How to treat the process restored into.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessOptions {
    /// Leave the process stopped (group-stop, as by `SIGSTOP`) after the
    /// restore, instead of resuming it (a process found stopped is always
    /// left stopped).
    pub leave_stopped: bool,
}

/// What a restore into another process leaves behind.
#[derive(Debug)]
pub struct RestoredIn {
    /// The process.
    pub pid: u32,
    /// The thread the syscalls ran in (the main thread).
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
}

/// Restores `plan` into process `pid`: refuses a plan with continuity
/// steps and supplied `inputs` (only stand-ins opened inside the process,
/// [`ExecOptions::substitute_external`], can serve external inputs), holds
/// every thread of the process, preflights against it, runs the steps in
/// its main thread, and lets it go (resumed unless `process` says to leave
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
    let _lock = HoldLock::acquire(pid, HOLD_WAIT).map_err(ExecError::Held)?;
    let held = RemoteProcess::attach(pid, &[pid]).map_err(ExecError::Attach)?;
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
    // Held from before the attach to after the detach (dropped last).
    let _lock = HoldLock::acquire(pid, HOLD_WAIT).map_err(ExecError::Held)?;
    let mut held = RemoteProcess::attach(pid, &[pid]).map_err(ExecError::Attach)?;
    let report = match preflight_in(pid, plan, &inputs, options) {
        Ok(report) => report,
        Err(error) => {
            // Nothing was done: let it go as found.
            let _ = held.detach(true);
            return Err(error);
        }
    };
    let mut backend = RemoteBackend::new(&mut held, pid);
    let mut buffers = BackendBuffers {
        process: ringplan_kernel::procfs::Process::Pid(pid),
        mapped: Vec::new(),
    };
    let target = Target {
        backend: &mut backend,
        memory: &mut buffers,
        limits_of: rustix::process::Pid::from_raw(pid as i32),
    };
    let result = run_with(
        plan,
        inputs,
        target,
        options,
        &report,
        injected,
        &mut |_| {},
    );
    let lost = backend.take_broken();
    drop(backend);
    let resume = !process.leave_stopped;
    // A process found stopped (by `plan freeze`, a SIGSTOP) is left so.
    let left_stopped = !resume || held.was_stopped();
    if let Some(cause) = lost {
        let index = result.as_ref().err().and_then(ExecError::step).unwrap_or(0);
        let _ = held.detach(resume);
        return Err(ExecError::ProcessLost {
            index,
            op: plan.steps.get(index).map_or("none", |step| step.op.name()),
            cause,
        });
    }
    match result {
        Ok(restored) => {
            held.detach(resume).map_err(ExecError::Detach)?;
            Ok(RestoredIn {
                pid,
                thread: pid,
                restored,
                buffers: buffers.mapped,
                report,
                left_stopped,
            })
        }
        Err(error) => {
            // Undone inside the process already.
            let _ = held.detach(resume);
            Err(error)
        }
    }
}
