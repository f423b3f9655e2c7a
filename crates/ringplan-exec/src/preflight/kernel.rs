//! Asking the kernel whether it accepts a plan's rings: its feature bits
//! prove most setup flags accepted, and a throwaway ring asks about the
//! rest. The throwaway rings are closed before preflight returns.

use std::collections::BTreeSet;
use std::os::fd::{AsFd, BorrowedFd};

use ringplan_image::SetupFlags;
use rustix::io::Errno;
use rustix::io_uring::{io_uring_params, io_uring_setup, IoringFeatureFlags, IoringSetupFlags};

use crate::error::ExecError;

/// Asks the kernel about every distinct setup flag set of the plan
/// (SQPOLL and SQ_AFF already left out: they start a thread) and about
/// `IORING_REGISTER_EVENTFD_ASYNC` when the plan uses it; returns the
/// kernel's `IORING_FEAT_*` bits.
///
/// A throwaway base ring gives the features, then one more ring per other
/// distinct flag set that the features do not prove accepted (ATTACH_WQ
/// attached to the base, which is all a non-SQPOLL attach checks). The base
/// is plain, or has the smallest flag set when that set does not attach
/// (the features do not depend on the flags): one throwaway ring fewer.
pub(super) fn ask_kernel(
    flag_sets: &BTreeSet<u32>,
    uses_async_eventfd: bool,
) -> Result<IoringFeatureFlags, ExecError> {
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
    let (base, features) = base_ring(base_flags)?;
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
    Ok(features)
}

/// Asks the kernel whether it takes `IORING_REGISTER_NAPI` with
/// `tracking` (`None`: the plan registers no NAPI): registered with a
/// 0 us timeout on a throwaway plain ring, closed before this returns.
/// Before 6.9 the opcode is unknown (`EINVAL`), without
/// `CONFIG_NET_RX_BUSY_POLL` it is `EOPNOTSUPP`, and before 6.13 static
/// tracking is `EINVAL`.
pub(super) fn ask_napi(tracking: Option<u8>) -> Result<(), ExecError> {
    use ringplan_kernel::abi::settings;
    let Some(tracking) = tracking else {
        return Ok(());
    };
    let (ring, _) = base_ring(0)?;
    let register = |tracking: u8| {
        let mut arg = settings::napi(0, false, tracking);
        // SAFETY: `arg` is a `struct io_uring_napi`, read and written back
        // by the kernel during the call only.
        unsafe {
            rustix::io_uring::io_uring_register(
                ring.as_fd(),
                rustix::io_uring::IoringRegisterOp::RegisterNapi,
                arg.as_mut_ptr().cast(),
                1,
            )
        }
        .map(drop)
    };
    let no_napi = |errno| ExecError::KernelUnsupported {
        what: "IORING_REGISTER_NAPI (Linux 6.9+ with CONFIG_NET_RX_BUSY_POLL)".to_owned(),
        errno,
    };
    match register(tracking) {
        Ok(()) => Ok(()),
        // Static tracking refused: say whether NAPI itself is missing.
        Err(errno) if tracking == settings::NAPI_TRACKING_STATIC => {
            register(settings::NAPI_TRACKING_DYNAMIC).map_err(no_napi)?;
            Err(ExecError::KernelUnsupported {
                what: "IORING_REGISTER_NAPI with static tracking (Linux 6.13+)".to_owned(),
                errno,
            })
        }
        Err(errno) => Err(no_napi(errno)),
    }
}

/// Refuses a plan that sets an SQ thread's io-wq affinity on a kernel
/// that would set the registering thread's instead (before 6.6, without
/// `io_sqpoll_wq_cpu_affinity`): the restored ring's work would not run
/// where it ran.
pub(super) fn ask_sq_iowq_affinity(needed: bool) -> Result<(), ExecError> {
    if needed && !ringplan_kernel::probe::sqpoll_iowq_affinity() {
        return Err(ExecError::KernelUnsupported {
            what: "IORING_REGISTER_IOWQ_AFF on an SQPOLL ring's SQ thread (Linux 6.6+: \
                   io_sqpoll_wq_cpu_affinity; this kernel sets the caller's io-wq)"
                .to_owned(),
            errno: Errno::OPNOTSUPP,
        });
    }
    Ok(())
}

/// Refuses a plan that registers a wait region on a kernel without them
/// (before 6.13: `IORING_REGISTER_MEM_REGION` is unknown).
pub(super) fn ask_wait_regions(needed: bool) -> Result<(), ExecError> {
    if !needed {
        return Ok(());
    }
    let unsupported = |errno| ExecError::KernelUnsupported {
        what: "IORING_REGISTER_MEM_REGION with IORING_MEM_REGION_REG_WAIT_ARG (Linux 6.13+)"
            .to_owned(),
        errno,
    };
    match ringplan_kernel::probe::has_wait_regions() {
        Ok(true) => Ok(()),
        Ok(false) => Err(unsupported(Errno::INVAL)),
        Err(errno) => Err(unsupported(errno)),
    }
}

/// The throwaway base ring, set up with `base_flags` (never SQPOLL or
/// ATTACH_WQ), and the kernel's features it reports.
fn base_ring(base_flags: u32) -> Result<(std::os::fd::OwnedFd, IoringFeatureFlags), ExecError> {
    let mut params = io_uring_params::default();
    params.flags = IoringSetupFlags::from_bits_retain(base_flags);
    if base_flags & SetupFlags::CQSIZE.bits() != 0 {
        params.cq_entries = 2;
    }
    // SAFETY: `params` is initialized and asks for a ring without SQPOLL
    // or ATTACH_WQ.
    match unsafe { io_uring_setup(1, &mut params) } {
        Ok(base) => Ok((base, params.features)),
        Err(errno) => {
            let no_io_uring = |errno| ExecError::KernelUnsupported {
                what: "io_uring_setup".to_owned(),
                errno,
            };
            // Tell "no io_uring" from "not these flags", as a plain base
            // ring would have.
            if base_flags != 0 {
                probe_ring(0, None).map_err(no_io_uring)?;
                return Err(ExecError::KernelUnsupported {
                    what: format!("io_uring setup flags {base_flags:#x}"),
                    errno,
                });
            }
            Err(no_io_uring(errno))
        }
    }
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
