//! The `shared` scenarios: rings held by several processes. The scenario's
//! process sets up a ring (plain, or with its own SQ thread), registers an
//! eventfd and files with it, and then forks children that inherit it, as
//! a server that creates its rings before it forks its workers does
//! (PostgreSQL 18 with `io_method=io_uring`):
//! - `keeper`: keeps everything it inherited; in `shared` and
//!   `shared-sqpoll` it also registers the shared ring's fd in a slot of
//!   its thread (offset [`KEEPER_RING_FD_SLOT`], as liburing's
//!   `io_uring_register_ring_fd` does), which the kernel keeps per thread;
//! - `closer`: closes its copy of the ring's fd and unmaps its copy of the
//!   ring's regions, so it holds nothing of the ring (it keeps the
//!   inherited eventfd and file fds);
//! - `own-ring`: keeps everything and sets up a ring of its own beside the
//!   shared one (4 entries, the shared file registered at slot 0).
//!
//! `shared` (not `shared-sqpoll`) also sets up, before the fork, a second
//! ring (4 entries, `IORING_SETUP_SINGLE_ISSUER`, so owned by the
//! scenario's main thread) that every child keeps, the closer too.
//!
//! Each child reports ready on a pipe (with the fd of its own ring, or -1)
//! and then blocks reading a second pipe whose only writer is the
//! scenario's process: when that process ends or tears the scenario down,
//! the children read end-of-file and exit. They also get SIGKILL should the
//! scenario's process die (`PR_SET_PDEATHSIG`). Children exit with
//! `_exit`, so nothing of the parent's scenario (its temp dir) is torn
//! down twice.
//!
//! The scenario must be built in a process with one thread (`plan app`):
//! the children allocate after `fork`.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use rustix::event::EventfdFlags;
use rustix::io_uring::IoringSetupFlags;
use rustix::pipe::PipeFlags;
use serde_json::{json, Value};

use crate::resources::{ScenarioEventfd, ScenarioFile, TempDir};
use crate::ring::{RingRequest, ScenarioRing};
use crate::{Built, ScenarioError};

/// What a child of a `shared` scenario does with what it inherited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChildRole {
    Keeper,
    /// A keeper that registers the shared ring's fd at
    /// [`KEEPER_RING_FD_SLOT`] in its thread.
    SlotKeeper,
    Closer,
    OwnRing,
    /// A child of `children:N`: holds nothing of io_uring.
    Bare,
}

impl ChildRole {
    fn name(self) -> &'static str {
        match self {
            ChildRole::Keeper | ChildRole::SlotKeeper => "keeper",
            ChildRole::Closer => "closer",
            ChildRole::OwnRing => "own-ring",
            ChildRole::Bare => "bare",
        }
    }
}

/// A child of the scenario's process.
#[derive(Debug)]
pub(crate) struct ScenarioChild {
    pub pid: i32,
    pub role: ChildRole,
    /// The fd of the ring the child set up for itself (`own-ring`).
    pub own_ring_fd: Option<RawFd>,
}

/// The children and the pipe that keeps them alive: dropping it closes the
/// pipe (the children read end-of-file and exit) and reaps them.
#[derive(Debug, Default)]
pub(crate) struct Children {
    pub children: Vec<ScenarioChild>,
    hold: Option<OwnedFd>,
}

impl Drop for Children {
    fn drop(&mut self) {
        self.hold = None;
        for child in &self.children {
            let mut status = 0;
            // SAFETY: waitpid on a child of ours, with a valid status pointer.
            unsafe { libc::waitpid(child.pid, &mut status, 0) };
        }
    }
}

impl Children {
    /// The children, described for the scenario's JSON line.
    pub(crate) fn description(&self) -> Value {
        self.children
            .iter()
            .map(|child| {
                json!({
                    "pid": child.pid,
                    "role": child.role.name(),
                    "own_ring_fd": child.own_ring_fd,
                    "ring_fd_slot": (child.role == ChildRole::SlotKeeper).then_some(KEEPER_RING_FD_SLOT),
                })
            })
            .collect()
    }
}

/// The registered ring-fd slot at which the `shared` scenarios' keeper
/// registers the shared ring.
pub(crate) const KEEPER_RING_FD_SLOT: u32 = 2;

/// Where `children:N` keeps its pipes: above any fd a restore of the
/// `shared` or `tree:N` images installs.
pub(crate) const CHILDREN_PIPE_FLOOR: RawFd = 900;

fn syscall_error(call: &str) -> impl Fn(rustix::io::Errno) -> ScenarioError + '_ {
    move |errno| ScenarioError::syscall(call.to_owned(), errno)
}

impl Built {
    /// `shared` (`sqpoll` false) or `shared-sqpoll`: see the module doc.
    pub(crate) fn build_shared(&mut self, sqpoll: bool) -> Result<(), ScenarioError> {
        self.build_shared_with(
            sqpoll,
            !sqpoll,
            &[ChildRole::SlotKeeper, ChildRole::Closer, ChildRole::OwnRing],
        )
    }

    /// `tree:N`: the plain shared ring and `count` children that keep it.
    pub(crate) fn build_tree(&mut self, count: usize) -> Result<(), ScenarioError> {
        if !(1..=1000).contains(&count) {
            return Err(ScenarioError::BadCount {
                name: "tree",
                given: count.to_string(),
            });
        }
        self.build_shared_with(false, false, &vec![ChildRole::Keeper; count])
    }

    /// `children:N`: no ring, and `count` children that hold nothing: a
    /// tree of the shape of `tree:N` (or, with 3, `shared`) to restore a
    /// tree image into. The pipes to the children are moved to fd
    /// [`CHILDREN_PIPE_FLOOR`] and up, out of the way of the fds a
    /// restore installs.
    pub(crate) fn build_children(&mut self, count: usize) -> Result<(), ScenarioError> {
        if !(1..=1000).contains(&count) {
            return Err(ScenarioError::BadCount {
                name: "children",
                given: count.to_string(),
            });
        }
        self.fork_children(&vec![ChildRole::Bare; count], CHILDREN_PIPE_FLOOR)
    }

    fn build_shared_with(
        &mut self,
        sqpoll: bool,
        with_owned_ring: bool,
        roles: &[ChildRole],
    ) -> Result<(), ScenarioError> {
        let request = if sqpoll {
            RingRequest::sqpoll(8, 1000)
        } else {
            RingRequest::plain(8)
        };
        let mut ring = ScenarioRing::set_up(&request, "shared ring")?;
        if sqpoll {
            ring.wait_for_sq_thread()?;
            ring.sq_group = Some(ring.fd_number);
        }
        let eventfd = ScenarioEventfd::create(3, EventfdFlags::empty())?;
        ring.register_eventfd(eventfd.fd()?, false)?;
        let temp_dir = self.temp_dir.insert(TempDir::create()?);
        let mut data = ScenarioFile::create(temp_dir.path().join("shared-data"))?;
        data.write_and_seek(b"ringplan shared data\n", 0)?;
        ring.register_files(&[Some(data.fd()?), None])?;
        self.eventfds.push(eventfd);
        self.files.push(data);
        self.rings.push(ring);
        if with_owned_ring {
            // Owned by this process's thread: a child holds it, but only
            // the owner may submit.
            let owned = RingRequest {
                flags: IoringSetupFlags::SINGLE_ISSUER,
                ..RingRequest::plain(4)
            };
            self.rings
                .push(ScenarioRing::set_up(&owned, "shared SINGLE_ISSUER ring")?);
        }

        self.fork_children(roles, 0)
    }

    /// Forks a child per role, each reporting ready before the next: the
    /// pipes between them at fd `pipe_floor` or up.
    fn fork_children(
        &mut self,
        roles: &[ChildRole],
        pipe_floor: RawFd,
    ) -> Result<(), ScenarioError> {
        let above = |fd: OwnedFd| -> Result<OwnedFd, ScenarioError> {
            if pipe_floor == 0 {
                return Ok(fd);
            }
            rustix::io::fcntl_dupfd_cloexec(&fd, pipe_floor)
                .map_err(syscall_error("fcntl(F_DUPFD_CLOEXEC)"))
        };
        let (ready_read, ready_write) =
            rustix::pipe::pipe_with(PipeFlags::CLOEXEC).map_err(syscall_error("pipe"))?;
        let (hold_read, hold_write) =
            rustix::pipe::pipe_with(PipeFlags::CLOEXEC).map_err(syscall_error("pipe"))?;
        let (ready_read, ready_write) = (above(ready_read)?, above(ready_write)?);
        let (hold_read, hold_write) = (above(hold_read)?, above(hold_write)?);
        self.children.hold = Some(hold_write);
        for &role in roles {
            // SAFETY: fork in a process with one thread (see the module
            // doc); the child only makes syscalls and ends with _exit.
            let pid = unsafe { libc::fork() };
            if pid < 0 {
                return Err(ScenarioError::syscall(
                    "fork".to_owned(),
                    rustix::io::Errno::from_raw_os_error(
                        std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
                    ),
                ));
            }
            if pid == 0 {
                self.run_child(role, &ready_write, &hold_read);
            }
            let mut report = [0u8; 4];
            let read = rustix::io::read(&ready_read, &mut report)
                .map_err(syscall_error("read (a child's ready report)"))?;
            let own_ring_fd = i32::from_ne_bytes(report);
            self.children.children.push(ScenarioChild {
                pid,
                role,
                own_ring_fd: (read == 4 && own_ring_fd >= 0).then_some(own_ring_fd),
            });
            if read != 4 || own_ring_fd < -1 {
                return Err(ScenarioError::ChildFailed {
                    role: role.name(),
                    pid,
                });
            }
        }
        Ok(())
    }

    /// The child's side: does what `role` says, reports ready, and waits
    /// for the scenario's process to let it go. Never returns.
    fn run_child(&mut self, role: ChildRole, ready: &OwnedFd, hold: &OwnedFd) -> ! {
        // The write end of the hold pipe stays only in the scenario's
        // process, so that its end is every child's end-of-file.
        self.children.hold = None;
        // SAFETY: prctl with an integer argument.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
        let report: i32 = match role {
            ChildRole::Keeper => -1,
            // -2 tells the parent that the registration failed.
            ChildRole::SlotKeeper => match self.register_shared_ring() {
                Ok(()) => -1,
                Err(_) => -2,
            },
            ChildRole::Closer => {
                if let Some(ring) = self.rings.first_mut() {
                    ring.close_and_unmap();
                }
                -1
            }
            // -2 tells the parent that the child's ring failed.
            ChildRole::OwnRing => self.set_up_own_ring().unwrap_or(-2),
            ChildRole::Bare => -1,
        };
        let _ = rustix::io::write(ready, &report.to_ne_bytes());
        let mut byte = [0u8; 1];
        while matches!(
            rustix::io::read(hold, &mut byte),
            Ok(1) | Err(rustix::io::Errno::INTR)
        ) {}
        // SAFETY: ends this child without running the parent's destructors.
        unsafe { libc::_exit(0) }
    }

    /// Registers the shared ring's fd at [`KEEPER_RING_FD_SLOT`] in the
    /// calling thread, for the child's life (the kernel drops a thread's
    /// slots when it exits).
    fn register_shared_ring(&self) -> Result<(), ScenarioError> {
        let ring = self
            .rings
            .first()
            .ok_or(ScenarioError::RingAlreadyClosed { fd: -1 })?;
        let fd = ring
            .fd
            .as_ref()
            .ok_or(ScenarioError::RingAlreadyClosed { fd: ring.fd_number })?;
        crate::ring_fds::register(fd.as_fd(), KEEPER_RING_FD_SLOT)
    }

    fn set_up_own_ring(&mut self) -> Result<RawFd, ScenarioError> {
        let mut own = ScenarioRing::set_up(&RingRequest::plain(4), "the child's own ring")?;
        let data = self
            .files
            .first()
            .ok_or(ScenarioError::FileAlreadyClosed { fd: -1 })?;
        own.register_files(&[Some(data.fd()?.as_fd())])?;
        let fd = own
            .fd
            .as_ref()
            .map(AsRawFd::as_raw_fd)
            .ok_or(ScenarioError::RingAlreadyClosed { fd: own.fd_number })?;
        // Kept for the child's life, which ends in _exit.
        std::mem::forget(own);
        Ok(fd)
    }
}
