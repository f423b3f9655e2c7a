//! Preflight of a restore into another process ([`crate::execute_in`]):
//! the same checks as for this process, made against the target from
//! outside while it is held (so nothing in it can change between the check
//! and the run): its open fds (`/proc/PID/fd`), its `RLIMIT_NOFILE` and
//! `RLIMIT_MEMLOCK` (`/proc/PID/limits`) and `CAP_IPC_LOCK`
//! (`/proc/PID/status`), the CPUs it may run on, and whether every buffer
//! range is free in its address space or wholly its own writable memory
//! (`/proc/PID/maps`). What is the
//! kernel's (the setup flags it accepts) is asked in this process: it is
//! the same kernel. Paths are looked up from this process (the open
//! inside the target checks the type again). An fd the plan installs an
//! eventfd or a reopened file onto that the target already holds is
//! adopted when it is the recorded object, and refused otherwise
//! (`adopt.rs`).

use ringplan_kernel::procfs::fd::ProcessFds;
use ringplan_kernel::procfs::maps::MapsQuery;
use ringplan_kernel::procfs::{limits, maps, status, Process};
use ringplan_plan::{Op, Plan};
use rustix::process::Pid;
use rustix::thread::CapabilitySet;

use super::{adoptable_fds, continuity, kernel, paths, PlanNeeds, PreflightReport};
use crate::error::ExecError;
use crate::memory::{buffer_ranges, overlapping_mapping, own_memory_covers, pinned_bytes};
use crate::{ExecOptions, Inputs};

/// What needs no look at the target: refuses supplied inputs (this
/// process's fds cannot be passed in yet), and external inputs unless
/// stand-ins are allowed.
pub(crate) fn refuse_before_attach(
    plan: &Plan,
    inputs: &Inputs,
    options: &ExecOptions,
) -> Result<(), ExecError> {
    if let Some(object) = inputs.objects().next() {
        return Err(ExecError::InputsInProcess { object });
    }
    refuse_tree_plan(plan)?;
    if options.substitute_external {
        return Ok(());
    }
    for (step, external) in plan.steps.iter().enumerate() {
        if let (Op::ExternalInput(input), Some(object)) = (&external.op, external.object) {
            return Err(ExecError::MissingInputIn {
                step,
                object,
                file_type: input.file_type,
                reason: input.reason,
            });
        }
    }
    Ok(())
}

/// Refuses a tree plan given as the plan of one process: its parts run
/// in their own processes ([`crate::execute_tree_in`]).
pub(crate) fn refuse_tree_plan(plan: &Plan) -> Result<(), ExecError> {
    if plan.processes.is_empty() {
        return Ok(());
    }
    Err(ExecError::TreeMismatch(format!(
        "the plan restores a tree of {} processes (plan dump --tree): it restores into those \
         processes, with plan exec --pid and the tree's first process",
        plan.processes.len() + 1
    )))
}

/// Checks `plan` against process `pid` (held) and this kernel.
pub(crate) fn preflight_in(
    pid: u32,
    plan: &Plan,
    inputs: &Inputs,
    options: &ExecOptions,
) -> Result<PreflightReport, ExecError> {
    refuse_before_attach(plan, inputs, options)?;
    let unavailable = |cause: &dyn std::fmt::Display| ExecError::ProcessUnavailable {
        pid,
        cause: cause.to_string(),
    };
    let process = Process::Pid(pid);
    let open = ProcessFds::open(process)
        .and_then(|fds| fds.fd_numbers())
        .map_err(|error| unavailable(&error))?;
    let adopted = adoptable_fds(pid, plan, &open)?;
    if let Some(&fd) = plan.needed_fds.iter().find(|fd| {
        open.binary_search(fd).is_ok() && !adopted.iter().any(|adopted| adopted.fd == **fd)
    }) {
        return Err(ExecError::FdTakenIn { pid, fd });
    }
    let needs = PlanNeeds::of(plan, inputs, options)?;
    let adopted_steps: Vec<usize> = adopted.iter().map(|adopted| adopted.step).collect();
    paths::check_paths_but(plan, &adopted_steps)?;
    let limits = limits::read(process).map_err(|error| unavailable(&error))?;
    let soft = limits.open_files.soft.unwrap_or(u64::MAX);
    let hard = limits.open_files.hard.unwrap_or(u64::MAX);
    let needed = plan.fd_limit_needed().saturating_add(4);
    let raise = soft < needed;
    if needed > hard || (raise && !options.raise_fd_limit) {
        return Err(ExecError::FdLimit { needed, soft, hard });
    }
    let pinned = pinned_bytes(plan);
    if pinned > 0 {
        let capabilities =
            status::effective_capabilities(process).map_err(|error| unavailable(&error))?;
        let ipc_lock = capabilities & CapabilitySet::IPC_LOCK.bits() != 0;
        let limit = limits.locked_memory.soft.unwrap_or(u64::MAX);
        if !ipc_lock && pinned > limit {
            return Err(ExecError::MemlockLimitIn {
                pid,
                needed: pinned,
                limit,
            });
        }
    }
    if !needs.cpus.is_empty() {
        let allowed =
            rustix::thread::sched_getaffinity(Pid::from_raw(pid as i32)).map_err(|errno| {
                ExecError::CheckSyscallFailed {
                    what: "sched_getaffinity",
                    errno,
                }
            })?;
        for &(step, cpu) in &needs.cpus {
            let usable = usize::try_from(cpu)
                .is_ok_and(|cpu| cpu < rustix::thread::CpuSet::MAX_CPU && allowed.is_set(cpu));
            if !usable {
                return Err(ExecError::CpuUnavailable { step, cpu });
            }
        }
    }
    let ranges = buffer_ranges(plan).map_err(ExecError::MemoryUnavailable)?;
    if !ranges.is_empty() {
        // The mappings over the ranges alone (one ioctl each, Linux
        // 6.11+), else the whole text.
        let query = MapsQuery::open(process).map_err(|error| unavailable(&error))?;
        let queried: Result<String, _> = ranges
            .iter()
            .map(|&(start, end)| query.lines_overlapping(start, end))
            .collect();
        let maps = match queried {
            Ok(lines) => lines,
            Err(_) => maps::read(process).map_err(|error| unavailable(&error))?,
        };
        // A buffer ring that was in kernel memory gets its captured bytes
        // written at its range: it must be free (the detach unmapped the
        // kernel's memory there), never the process's own, which the step
        // would overwrite and an undo could not put back.
        let rewritten: Vec<(u64, u64)> = plan
            .steps
            .iter()
            .filter_map(|step| match &step.op {
                Op::RegisterPbufRing(register) if register.contents.is_some() => Some((
                    register.addr,
                    register.addr.saturating_add(register.memory_len()),
                )),
                _ => None,
            })
            .collect();
        for (start, end) in ranges {
            let rewrites = rewritten.iter().any(|&(from, to)| from < end && start < to);
            if !rewrites && own_memory_covers(&maps, start, end) == Some(true) {
                continue; // the process's own memory, registered as it is
            }
            if let Some(by) = overlapping_mapping(&maps, start, end) {
                let by = if rewrites {
                    format!(
                        "{by}; a buffer ring that was in kernel memory is placed there anew, \
                         so the range must be free: take the process out with plan dump --detach"
                    )
                } else {
                    by
                };
                return Err(ExecError::BufferTakenIn {
                    pid,
                    start,
                    end,
                    by,
                });
            }
        }
    }
    // Ring memory placed at the program's addresses, in the target.
    let places_ring_memory = continuity::check_continuity_in(plan, options, pid)?;
    super::personalities::check_personalities(plan, options, |owner| {
        ringplan_kernel::procfs::credentials::read_thread(process, owner.unwrap_or(pid))
            .map_err(|error| unavailable(&error))
    })?;
    let features = kernel::ask_kernel(&needs.flag_sets, needs.uses_async_eventfd)?;
    kernel::ask_napi(needs.napi_tracking)?;
    kernel::ask_sq_iowq_affinity(needs.sq_iowq_affinity)?;
    kernel::ask_wait_regions(needs.wait_region)?;
    Ok(PreflightReport {
        needed_fds: plan.needed_fds.clone(),
        fd_limit_needed: needed,
        fd_limit_soft: soft,
        fd_limit_hard: hard,
        raises_fd_limit: raise,
        setup_flag_sets: needs.flag_sets.into_iter().collect(),
        features: features.bits(),
        pinned_bytes: pinned,
        external_inputs: needs.external_inputs,
        places_ring_memory,
        adopted,
    })
}
