//! What a caller hands the executor besides the plan: the fds of external
//! inputs ([`Inputs`]) and how to run ([`ExecOptions`]).

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;

use ringplan_image::ObjectId;
use ringplan_plan::{Op, Plan};
use rustix::fs::{Mode, OFlags};

use crate::error::InputError;
use crate::reopen;

/// Fds the caller supplies for a plan's `external_input` steps, by the
/// image object each stands for. The executor consumes them: each is
/// duplicated above the plan's fd floor and the original closed.
#[derive(Debug, Default)]
pub struct Inputs {
    pub(crate) fds: BTreeMap<ObjectId, OwnedFd>,
}

impl Inputs {
    pub fn new() -> Self {
        Inputs::default()
    }

    /// Supplies `fd` for `object`; a second fd for the same object replaces
    /// the first.
    pub fn insert(&mut self, object: ObjectId, fd: OwnedFd) {
        self.fds.insert(object, fd);
    }

    /// Opens `path` and supplies it for `object` (what `plan exec --input
    /// ID=PATH` does): with the access mode the plan's `external_input`
    /// step for `object` records (read-only when it records none, or when
    /// `object` is no external input: preflight then refuses it by name),
    /// opened without blocking (a FIFO would wait for its other end), never
    /// as a controlling terminal, then given `O_NONBLOCK` only if the step
    /// records it, and moved at or above the plan's fd floor so that it never
    /// takes a target fd number.
    pub fn open(&mut self, plan: &Plan, object: ObjectId, path: &str) -> Result<(), InputError> {
        let recorded = plan.steps.iter().find_map(|step| match &step.op {
            Op::ExternalInput(input) if step.object == Some(object) => input.flags,
            _ => None,
        });
        let access = recorded.map_or(OFlags::RDONLY, |flags| {
            OFlags::from_bits_retain(flags) & OFlags::RWMODE
        });
        let fd = rustix::fs::open(
            path,
            access | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
            Mode::empty(),
        )
        .map_err(|errno| InputError::Open {
            path: path.to_owned(),
            errno,
        })?;
        reopen::set_input_status_flags(&fd, recorded).map_err(|errno| InputError::StatusFlags {
            path: path.to_owned(),
            errno,
        })?;
        let fd = rustix::io::fcntl_dupfd_cloexec(&fd, plan.temp_fd_floor)
            .map_err(|errno| InputError::MoveAboveFloor { errno })?;
        self.insert(object, fd);
        Ok(())
    }

    /// The objects supplied so far.
    pub fn objects(&self) -> impl Iterator<Item = ObjectId> + '_ {
        self.fds.keys().copied()
    }
}

/// How to run a plan.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// Replace an external input the caller did not supply with a stand-in
    /// (a new pipe's matching end for a pipe, `/dev/null` otherwise)
    /// instead of refusing in preflight.
    pub substitute_external: bool,
    /// Raise the `RLIMIT_NOFILE` soft limit (up to the hard limit) when the
    /// plan needs more; put back if the run fails. Without it, a too-small
    /// soft limit is a preflight error.
    pub raise_fd_limit: bool,
    /// Do not map ring regions at their recorded addresses; every recorded
    /// mapping is then listed in [`crate::Restored::skipped_mappings`] with
    /// [`crate::SkipReason::TurnedOff`]. For a restorer that maps them
    /// itself (or wants no ring memory at fixed addresses).
    pub skip_ring_mappings: bool,
    /// On a kernel that cannot place a ring's memory at chosen addresses
    /// (before Linux 6.5, no `IORING_SETUP_NO_MMAP`), restore the rings a
    /// plan restores continuously as their kernel objects only: set up
    /// where the kernel chooses, at position 0, without their pending
    /// entries (listed in [`crate::Restored::moved_rings`]). Without it,
    /// preflight refuses such a plan on such a kernel. No effect where the
    /// kernel can.
    pub allow_moved_rings: bool,
    /// Register personalities with the restoring thread's credentials even
    /// where they differ from the recorded ones (the kernel takes the
    /// registering thread's). Without it, preflight refuses such a plan.
    pub accept_restorer_credentials: bool,
}
