//! Checks made before the first step: after [`preflight`] passes, every
//! reason the executor can foresee for a failure has been ruled out.
//!
//! The only state changes here are in this process: throwaway rings (and
//! their fds) to ask the kernel whether it accepts the plan's setup flags,
//! closed before it returns, and whatever the memory hook's own check keeps
//! for the run ([`crate::AnonymousBuffers`] maps each buffer range with
//! `MAP_FIXED_NOREPLACE` to prove it free and keeps the mapping for the
//! barrier; the run releases it on failure, the hook when dropped unused).

use std::collections::BTreeSet;
use std::os::fd::{AsFd, BorrowedFd};

use ringplan_image::{ObjectId, SetupFlags};
use ringplan_plan::{Op, Plan};
use rustix::event::{PollFd, PollFlags};
use rustix::io::Errno;
use rustix::io_uring::{io_uring_params, io_uring_setup, IoringFeatureFlags, IoringSetupFlags};
use rustix::process::{getrlimit, Resource};

use crate::error::ExecError;
use crate::memory::{pinned_bytes, MemoryHook};
use crate::{ExecOptions, Inputs};

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
}

fn limit_value(value: Option<u64>) -> u64 {
    value.unwrap_or(u64::MAX)
}

/// Whether `fd` is open in this process.
pub(crate) fn fd_is_open(fd: i32) -> Result<bool, ExecError> {
    if fd < 0 {
        return Ok(false);
    }
    // SAFETY: `fcntl(F_GETFD)` on a number that may not be open only reads
    // its flags or fails with EBADF; the borrow ends with the call.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    match rustix::io::fcntl_getfd(borrowed) {
        Ok(_) => Ok(true),
        Err(Errno::BADF) => Ok(false),
        Err(errno) => Err(ExecError::PreflightSyscall {
            what: "fcntl(F_GETFD)",
            errno,
        }),
    }
}

/// The first of `fds` (ascending) that is open in this process. One
/// `poll` with a zero timeout answers for all of them (`POLLNVAL`: not
/// open); if poll cannot take them all, one `fcntl(F_GETFD)` each.
fn first_open_fd(fds: &[i32]) -> Result<Option<i32>, ExecError> {
    let candidates: Vec<i32> = fds.iter().copied().filter(|&fd| fd >= 0).collect();
    if candidates.is_empty() {
        return Ok(None);
    }
    let mut poll_fds: Vec<PollFd<'_>> = candidates
        .iter()
        .map(|&fd| {
            // SAFETY: the borrows live only during the `poll` call below,
            // which on a number that is not open reports POLLNVAL and nothing
            // else; with a zero timeout it registers no wait on an open one.
            let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
            PollFd::from_borrowed_fd(borrowed, PollFlags::empty())
        })
        .collect();
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    if rustix::event::poll(&mut poll_fds, Some(&zero)).is_ok() {
        let open = poll_fds
            .iter()
            .position(|poll_fd| !poll_fd.revents().contains(PollFlags::NVAL));
        return Ok(open.map(|index| candidates[index]));
    }
    for fd in candidates {
        if fd_is_open(fd)? {
            return Ok(Some(fd));
        }
    }
    Ok(None)
}

/// Whether this process has `CAP_IPC_LOCK` in its effective set.
fn has_ipc_lock() -> bool {
    rustix::thread::capabilities(None).is_ok_and(|caps| {
        caps.effective
            .contains(rustix::thread::CapabilitySet::IPC_LOCK)
    })
}

/// Setup flags whose acceptance the kernel's feature bits prove, each with
/// a feature that came in the same release or later: a kernel reporting the
/// feature is new enough for the flag. The flags here combine freely with
/// each other (SQ_AFF needs SQPOLL, which image validation guarantees);
/// those with combination rules (COOP_TASKRUN, DEFER_TASKRUN, ...) and
/// newer ones are left to a throwaway ring, which asks the kernel itself.
const FLAGS_PROVEN_BY_FEATURES: [(u32, IoringFeatureFlags); 10] = [
    (SetupFlags::IOPOLL.bits(), IoringFeatureFlags::empty()),
    (SetupFlags::SQPOLL.bits(), IoringFeatureFlags::empty()),
    (SetupFlags::SQ_AFF.bits(), IoringFeatureFlags::empty()),
    // 5.5
    (SetupFlags::CQSIZE.bits(), IoringFeatureFlags::NODROP),
    // 5.6
    (SetupFlags::CLAMP.bits(), IoringFeatureFlags::RW_CUR_POS),
    (SetupFlags::ATTACH_WQ.bits(), IoringFeatureFlags::RW_CUR_POS),
    // IORING_SETUP_R_DISABLED (5.10), shown by SQPOLL_NONFIXED (5.11)
    (1 << 6, IoringFeatureFlags::SQPOLL_NONFIXED),
    // SUBMIT_ALL (5.18), SQE128 and CQE32 (5.19), shown by REG_REG_RING (6.3)
    (1 << 7, IoringFeatureFlags::REG_REG_RING),
    (1 << 10 | 1 << 11, IoringFeatureFlags::REG_REG_RING),
    // NO_SQARRAY (6.6), shown by RECVSEND_BUNDLE (6.10)
    (1 << 16, IoringFeatureFlags::RECVSEND_BUNDLE),
];

/// Whether `features` (from a ring this kernel set up) prove that it accepts
/// a ring with `flags`, so no throwaway ring needs to ask.
fn accepted_by_features(flags: u32, features: IoringFeatureFlags) -> bool {
    let mut unproven = flags;
    for (flag_bits, feature) in FLAGS_PROVEN_BY_FEATURES {
        if features.contains(feature) {
            unproven &= !flag_bits;
        }
    }
    unproven == 0
}

/// Sets up a throwaway ring with `flags` (never SQPOLL: no thread is
/// started), attached to `attach` when the flags say so.
fn probe_ring(flags: u32, attach: Option<BorrowedFd<'_>>) -> Result<io_uring_params, Errno> {
    let mut params = io_uring_params::default();
    params.flags = IoringSetupFlags::from_bits_retain(flags);
    if flags & SetupFlags::CQSIZE.bits() != 0 {
        params.cq_entries = 2;
    }
    if flags & SetupFlags::ATTACH_WQ.bits() != 0 {
        params.wq_fd = attach.map_or(-1, |fd| std::os::fd::AsRawFd::as_raw_fd(&fd));
    }
    // SAFETY: `params` is initialized; `wq_fd`, when read, is an open ring
    // fd borrowed for the call.
    let fd = unsafe { io_uring_setup(1, &mut params) }?;
    drop(fd);
    Ok(params)
}

/// Checks `plan` against this process and kernel; does nothing the run
/// could notice.
pub fn preflight(
    plan: &Plan,
    inputs: &Inputs,
    hook: &mut dyn MemoryHook,
    options: &ExecOptions,
) -> Result<PreflightReport, ExecError> {
    if let Some(fd) = first_open_fd(&plan.needed_fds)? {
        return Err(ExecError::FdTaken { fd });
    }

    let mut external_inputs = Vec::new();
    let mut external_objects = BTreeSet::new();
    let mut flag_sets = BTreeSet::new();
    let mut uses_async_eventfd = false;
    let mut cpus = Vec::new();
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
                external_inputs.push((object, supplied));
            }
            Op::SetupRing(setup) => {
                flag_sets
                    .insert(setup.flags & !(SetupFlags::SQPOLL.bits() | SetupFlags::SQ_AFF.bits()));
                if let Some(cpu) = setup.sq_thread_cpu {
                    cpus.push((index, cpu));
                }
            }
            Op::RegisterEventfd(register) => uses_async_eventfd |= register.is_async,
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

    let nofile = getrlimit(Resource::Nofile);
    let (soft, hard) = (limit_value(nofile.current), limit_value(nofile.maximum));
    let needed = plan.fd_limit_needed();
    // The executor's own fds (inputs it holds, a throwaway ring) sit above
    // the temporaries, a few at a time.
    let needed_with_slack = needed
        .saturating_add(u64::try_from(inputs.fds.len()).unwrap_or(u64::MAX))
        .saturating_add(4);
    let raises_fd_limit = soft < needed_with_slack;
    if needed_with_slack > hard || (raises_fd_limit && !options.raise_fd_limit) {
        return Err(ExecError::FdLimit {
            needed: needed_with_slack,
            soft,
            hard,
        });
    }

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

    if !cpus.is_empty() {
        let allowed = rustix::thread::sched_getaffinity(None).map_err(|errno| {
            ExecError::PreflightSyscall {
                what: "sched_getaffinity",
                errno,
            }
        })?;
        for (step, cpu) in cpus {
            let usable = usize::try_from(cpu)
                .is_ok_and(|cpu| cpu < rustix::thread::CpuSet::MAX_CPU && allowed.is_set(cpu));
            if !usable {
                return Err(ExecError::CpuUnavailable { step, cpu });
            }
        }
    }

    // Ask the kernel: a throwaway base ring for the features, then one per
    // other distinct flag set that the features do not prove accepted
    // (SQPOLL and SQ_AFF left out: they start a thread; ATTACH_WQ attached
    // to the base, which is all a non-SQPOLL attach checks). The base is plain, or has the smallest flag set when
    // that set does not attach (the features do not depend on the flags):
    // one throwaway ring fewer.
    let unsupported = |flags: u32| {
        move |errno| ExecError::KernelUnsupported {
            what: format!("io_uring setup flags {flags:#x}"),
            errno,
        }
    };
    // Only the first (smallest) set, so the sets are still tried in order.
    let base_flags = flag_sets
        .first()
        .copied()
        .filter(|flags| flags & SetupFlags::ATTACH_WQ.bits() == 0)
        .unwrap_or(0);
    let mut params = io_uring_params::default();
    params.flags = IoringSetupFlags::from_bits_retain(base_flags);
    if base_flags & SetupFlags::CQSIZE.bits() != 0 {
        params.cq_entries = 2;
    }
    // SAFETY: `params` is initialized and asks for a ring without SQPOLL
    // or ATTACH_WQ.
    let base = match unsafe { io_uring_setup(1, &mut params) } {
        Ok(base) => base,
        Err(errno) => {
            // Tell "no io_uring" from "not these flags", as a plain base
            // ring would have.
            if base_flags != 0 {
                probe_ring(0, None).map_err(|errno| ExecError::KernelUnsupported {
                    what: "io_uring_setup".to_owned(),
                    errno,
                })?;
                return Err(unsupported(base_flags)(errno));
            }
            return Err(ExecError::KernelUnsupported {
                what: "io_uring_setup".to_owned(),
                errno,
            });
        }
    };
    let features = params.features;
    for &flags in flag_sets.iter().filter(|&&flags| flags != base_flags) {
        if !accepted_by_features(flags, features) {
            probe_ring(flags, Some(base.as_fd())).map_err(unsupported(flags))?;
        }
    }
    drop(base);
    // IORING_REGISTER_EVENTFD_ASYNC came with 5.6, as did
    // IORING_FEAT_CUR_PERSONALITY; files, buffers and the plain eventfd
    // registration are as old as io_uring_setup itself (5.1/5.2).
    if uses_async_eventfd && !features.contains(IoringFeatureFlags::CUR_PERSONALITY) {
        return Err(ExecError::KernelUnsupported {
            what: "IORING_REGISTER_EVENTFD_ASYNC (Linux 5.6)".to_owned(),
            errno: Errno::INVAL,
        });
    }

    hook.preflight(plan).map_err(ExecError::MemoryUnavailable)?;

    Ok(PreflightReport {
        needed_fds: plan.needed_fds.clone(),
        fd_limit_needed: needed_with_slack,
        fd_limit_soft: soft,
        fd_limit_hard: hard,
        raises_fd_limit,
        setup_flag_sets: flag_sets.into_iter().collect(),
        features: features.bits(),
        pinned_bytes: pinned,
        external_inputs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_prove_only_flags_at_least_as_old_as_themselves() {
        let linux_5_5 = IoringFeatureFlags::SINGLE_MMAP
            | IoringFeatureFlags::NODROP
            | IoringFeatureFlags::SUBMIT_STABLE;
        let seed_child =
            SetupFlags::SQ_AFF.bits() | SetupFlags::CQSIZE.bits() | SetupFlags::ATTACH_WQ.bits();
        assert!(accepted_by_features(SetupFlags::CQSIZE.bits(), linux_5_5));
        assert!(
            !accepted_by_features(seed_child, linux_5_5),
            "ATTACH_WQ came with 5.6"
        );
        let linux_6_3 = linux_5_5
            | IoringFeatureFlags::RW_CUR_POS
            | IoringFeatureFlags::SQPOLL_NONFIXED
            | IoringFeatureFlags::REG_REG_RING;
        assert!(accepted_by_features(seed_child, linux_6_3));
        assert!(
            accepted_by_features(1 << 10 | 1 << 11, linux_6_3),
            "SQE128 and CQE32"
        );
        assert!(
            !accepted_by_features(1 << 16, linux_6_3),
            "NO_SQARRAY came with 6.6"
        );
        let coop_taskrun = 1 << 8;
        assert!(
            !accepted_by_features(coop_taskrun, IoringFeatureFlags::all()),
            "combination rules: ask the kernel"
        );
    }
}
