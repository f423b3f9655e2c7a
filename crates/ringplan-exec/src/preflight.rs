//! Checks made before the first step: after [`preflight`] passes, every
//! reason the executor can foresee for a failure has been ruled out.
//!
//! The only state changes here are in this process: throwaway rings (and
//! their fds) to ask the kernel whether it accepts the plan's setup flags,
//! closed before it returns (`preflight/kernel.rs`), and whatever the memory
//! hook's own check keeps for the run ([`crate::AnonymousBuffers`] maps each
//! buffer range with `MAP_FIXED_NOREPLACE` to prove it free and keeps the
//! mapping for the barrier; the run releases it on failure, the hook when
//! dropped unused). `preflight/open_fds.rs` tells which target fds are open;
//! `preflight/paths.rs` `stat`s every path the plan reopens (never opens
//! it: an open may block) and refuses one that names another type of file
//! than the image recorded.

mod adopt;
mod continuity;
mod kernel;
mod open_fds;
mod paths;
mod personalities;
mod process;

pub(crate) use continuity::{check_owner_threads, owner_threads};
pub(crate) use process::{preflight_in, refuse_before_attach};

use std::collections::BTreeSet;

use ringplan_image::{ObjectId, SetupFlags};
use ringplan_plan::{Op, Plan};
use rustix::process::{getrlimit, Resource};

use crate::error::ExecError;
use crate::memory::{pinned_bytes, MemoryHook};
use crate::{ExecOptions, Inputs};

pub(crate) use adopt::adoptable_fds;
pub use adopt::AdoptedFd;

/// What preflight learned, for a dry run to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreflightReport {
    /// The target fd numbers, all free.
    pub needed_fds: Vec<i32>,
    /// `Plan::fd_limit_needed`, and the soft and hard `RLIMIT_NOFILE`.
    pub fd_limit_needed: u64,
    pub fd_limit_soft: u64,
    pub fd_limit_hard: u64,
    /// The soft limit must be raised to run (and `raise_fd_limit` allows it).
    pub raises_fd_limit: bool,
    /// The distinct setup flag sets the kernel was asked about.
    pub setup_flag_sets: Vec<u32>,
    /// The kernel's `IORING_FEAT_*` bits from a throwaway ring.
    pub features: u32,
    /// Bytes the registered buffers pin.
    pub pinned_bytes: u64,
    /// External inputs: the object and whether the caller supplied it
    /// (`false`: a substitute will be made).
    pub external_inputs: Vec<(ObjectId, bool)>,
    /// The run places ring memory at the program's addresses (or the plan
    /// has no continuity steps); `false` when the kernel cannot and
    /// [`ExecOptions::allow_moved_rings`] allowed restoring the rings as
    /// kernel objects only.
    pub places_ring_memory: bool,
    /// Fds the process restored into already holds and the run uses as
    /// they are, instead of creating their objects (`execute_in` only; a
    /// restore into this process adopts nothing).
    pub adopted: Vec<AdoptedFd>,
}

/// Checks `plan` against this process and kernel; does nothing the run
/// could notice.
pub fn preflight(
    plan: &Plan,
    inputs: &Inputs,
    hook: &mut dyn MemoryHook,
    options: &ExecOptions,
) -> Result<PreflightReport, ExecError> {
    process::refuse_tree_plan(plan)?;
    if let Some(fd) = open_fds::first_open_fd(&plan.needed_fds)? {
        return Err(ExecError::FdTaken { fd });
    }
    let needs = PlanNeeds::of(plan, inputs, options)?;
    paths::check_paths(plan)?;
    let fd_limit = check_fd_limit(plan, inputs, options)?;
    let pinned = check_memlock(plan)?;
    check_cpus(&needs.cpus)?;
    let places_ring_memory = continuity::check_continuity(plan, options)?;
    // Every step runs in the calling thread here.
    personalities::check_personalities(plan, options, |_| {
        ringplan_kernel::procfs::credentials::read_current_thread().map_err(|error| {
            ExecError::ProcessUnavailable {
                pid: std::process::id(),
                cause: error.to_string(),
            }
        })
    })?;
    let features = kernel::ask_kernel(&needs.flag_sets, needs.uses_async_eventfd)?;
    kernel::ask_napi(needs.napi_tracking)?;
    kernel::ask_sq_iowq_affinity(needs.sq_iowq_affinity)?;
    kernel::ask_wait_regions(needs.wait_region)?;
    hook.preflight(plan).map_err(ExecError::MemoryUnavailable)?;

    Ok(PreflightReport {
        needed_fds: plan.needed_fds.clone(),
        fd_limit_needed: fd_limit.needed,
        fd_limit_soft: fd_limit.soft,
        fd_limit_hard: fd_limit.hard,
        raises_fd_limit: fd_limit.raise,
        setup_flag_sets: needs.flag_sets.into_iter().collect(),
        features: features.bits(),
        pinned_bytes: pinned,
        external_inputs: needs.external_inputs,
        places_ring_memory,
        adopted: Vec::new(),
    })
}

/// What the plan's steps ask of this process and kernel, gathered in one
/// pass.
struct PlanNeeds {
    /// Each external input, and whether the caller supplied it.
    external_inputs: Vec<(ObjectId, bool)>,
    /// The distinct setup flag sets, without SQPOLL and SQ_AFF (asking
    /// about those would start a thread).
    flag_sets: BTreeSet<u32>,
    uses_async_eventfd: bool,
    /// The NAPI tracking mode a `register_settings` registers (static
    /// when any does), if any.
    napi_tracking: Option<u8>,
    /// A `register_settings` sets an SQ thread's io-wq affinity.
    sq_iowq_affinity: bool,
    /// A `register_wait_region` registers a wait region.
    wait_region: bool,
    /// `(step, cpu)` of every SQ thread pinned to a CPU.
    cpus: Vec<(usize, u32)>,
}

impl PlanNeeds {
    /// Gathers the needs of `plan`, refusing an external input that is
    /// neither supplied nor to be substituted, and a supplied input the
    /// plan does not take.
    fn of(plan: &Plan, inputs: &Inputs, options: &ExecOptions) -> Result<PlanNeeds, ExecError> {
        let mut needs = PlanNeeds {
            external_inputs: Vec::new(),
            flag_sets: BTreeSet::new(),
            uses_async_eventfd: false,
            napi_tracking: None,
            sq_iowq_affinity: false,
            wait_region: false,
            cpus: Vec::new(),
        };
        let mut external_objects = BTreeSet::new();
        for (index, step) in plan.steps.iter().enumerate() {
            match &step.op {
                Op::ExternalInput(input) => {
                    let Some(object) = step.object else { continue };
                    external_objects.insert(object);
                    let supplied = inputs.fds.contains_key(&object);
                    if !supplied && !options.substitute_external {
                        return Err(ExecError::MissingInput {
                            step: index,
                            object,
                            file_type: input.file_type,
                            reason: input.reason,
                        });
                    }
                    needs.external_inputs.push((object, supplied));
                }
                Op::SetupRing(setup) => {
                    let thread_flags = SetupFlags::SQPOLL.bits() | SetupFlags::SQ_AFF.bits();
                    // NO_MMAP needs memory a throwaway ring does not have;
                    // whether the kernel has it is the continuity check's.
                    let placed = if setup.memory.is_some() {
                        SetupFlags::NO_MMAP.bits()
                    } else {
                        0
                    };
                    needs
                        .flag_sets
                        .insert(setup.flags & !thread_flags & !placed);
                    if let Some(cpu) = setup.sq_thread_cpu {
                        needs.cpus.push((index, cpu));
                    }
                }
                Op::RegisterEventfd(register) => needs.uses_async_eventfd |= register.is_async,
                Op::RegisterWaitRegion(_) => needs.wait_region = true,
                Op::RegisterSettings(register) => {
                    use ringplan_kernel::abi::settings::{
                        NAPI_TRACKING_DYNAMIC, NAPI_TRACKING_STATIC,
                    };
                    if let Some(napi) = register.napi {
                        let tracking = match napi.tracking {
                            ringplan_image::NapiTracking::Dynamic => NAPI_TRACKING_DYNAMIC,
                            ringplan_image::NapiTracking::Static => NAPI_TRACKING_STATIC,
                        };
                        needs.napi_tracking = needs.napi_tracking.max(Some(tracking));
                    }
                    needs.sq_iowq_affinity |= register
                        .iowq_affinity
                        .as_ref()
                        .is_some_and(|affinity| affinity.tid.is_none());
                }
                _ => {}
            }
        }
        if let Some(&object) = inputs
            .fds
            .keys()
            .find(|object| !external_objects.contains(object))
        {
            return Err(ExecError::UnexpectedInput { object });
        }
        Ok(needs)
    }
}

/// `RLIMIT_NOFILE` against what the run needs.
struct FdLimit {
    needed: u64,
    soft: u64,
    hard: u64,
    /// The soft limit must be raised.
    raise: bool,
}

fn limit_value(value: Option<u64>) -> u64 {
    value.unwrap_or(u64::MAX)
}

/// Refuses a plan whose fds the hard `RLIMIT_NOFILE` cannot hold (or the
/// soft one, unless it may be raised).
fn check_fd_limit(
    plan: &Plan,
    inputs: &Inputs,
    options: &ExecOptions,
) -> Result<FdLimit, ExecError> {
    let nofile = getrlimit(Resource::Nofile);
    let (soft, hard) = (limit_value(nofile.current), limit_value(nofile.maximum));
    // The executor's own fds (inputs it holds, a throwaway ring) sit above
    // the temporaries, a few at a time.
    let needed = plan
        .fd_limit_needed()
        .saturating_add(u64::try_from(inputs.fds.len()).unwrap_or(u64::MAX))
        .saturating_add(4);
    let raise = soft < needed;
    if needed > hard || (raise && !options.raise_fd_limit) {
        return Err(ExecError::FdLimit { needed, soft, hard });
    }
    Ok(FdLimit {
        needed,
        soft,
        hard,
        raise,
    })
}

/// Refuses buffers that would pin more than `RLIMIT_MEMLOCK` allows, unless
/// this process has `CAP_IPC_LOCK`; returns the bytes pinned.
fn check_memlock(plan: &Plan) -> Result<u64, ExecError> {
    let pinned = pinned_bytes(plan);
    if pinned > 0 && !has_ipc_lock() {
        let limit = limit_value(getrlimit(Resource::Memlock).current);
        if pinned > limit {
            return Err(ExecError::MemlockLimit {
                needed: pinned,
                limit,
            });
        }
    }
    Ok(pinned)
}

/// Whether this process has `CAP_IPC_LOCK` in its effective set.
fn has_ipc_lock() -> bool {
    rustix::thread::capabilities(None).is_ok_and(|caps| {
        caps.effective
            .contains(rustix::thread::CapabilitySet::IPC_LOCK)
    })
}

/// Refuses an SQ thread pinned to a CPU this process may not run on.
fn check_cpus(cpus: &[(usize, u32)]) -> Result<(), ExecError> {
    if cpus.is_empty() {
        return Ok(());
    }
    let allowed =
        rustix::thread::sched_getaffinity(None).map_err(|errno| ExecError::CheckSyscallFailed {
            what: "sched_getaffinity",
            errno,
        })?;
    for &(step, cpu) in cpus {
        let usable = usize::try_from(cpu)
            .is_ok_and(|cpu| cpu < rustix::thread::CpuSet::MAX_CPU && allowed.is_set(cpu));
        if !usable {
            return Err(ExecError::CpuUnavailable { step, cpu });
        }
    }
    Ok(())
}
