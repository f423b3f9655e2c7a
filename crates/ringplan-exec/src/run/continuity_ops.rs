//! The continuity ops: memory placed at the program's addresses, a ring
//! set up on it (`IORING_SETUP_NO_MMAP`), its positions and completions
//! restored, its SQEs queued; each through [`crate::continuity`]. When the
//! run is not continuous (preflight allowed moved rings on a kernel without
//! `NO_MMAP`), the ring is set up the old way and these steps do nothing
//! but note the ring as moved.

use ringplan_image::{Cqe, ObjectId, SetupFlags};
use ringplan_kernel::abi::continuity::CQE_SIZE;
use ringplan_plan::{
    Handle, PlaceRingMemory, ProvideBuffers, QueueSqes, RegisterPbufRing, RestoreCompletions,
    SetupRing,
};
use rustix::io::Errno;

use super::{Failure, Run};
use crate::backend::Backend;
use crate::continuity::{
    advance_pbuf_head_in, placement_of, provide_buffers_in, queue_sqes, restore_completions_in,
    ring_setup_of, ContinuityError, ContinuousRing, OverflowCqe, PbufHeadTarget, PlacedMemory,
    QueuedSqe, RecordedCompletions, RecordedSubmissions, RingCounters,
};
use crate::{ContinuousRingReport, Progress, RingOwner};

/// The bytes of a CQE as the ring holds it: user_data, res, flags, and the
/// extra words of a 32-byte CQE.
fn cqe_bytes(cqe: &Cqe) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(CQE_SIZE * 2);
    bytes.extend_from_slice(&cqe.user_data.to_ne_bytes());
    bytes.extend_from_slice(&cqe.res.to_ne_bytes());
    bytes.extend_from_slice(&cqe.flags.to_ne_bytes());
    if let Some(extra) = cqe.extra {
        bytes.extend_from_slice(&extra[0].to_ne_bytes());
        bytes.extend_from_slice(&extra[1].to_ne_bytes());
    }
    bytes
}

impl<B: Backend> Run<'_, B> {
    /// Notes a continuity failure for the undo to report, as a `Failure`.
    fn continuity_failed(&mut self, error: ContinuityError) -> Failure {
        let errno = match &error {
            ContinuityError::Syscall { errno, .. } => *errno,
            ContinuityError::RangeTaken { .. } => Errno::EXIST,
            _ => Errno::INVAL,
        };
        self.continuity_error = Some(error);
        Failure {
            call: "continuity",
            errno,
        }
    }

    /// `place_ring_memory`: maps the memory, kept by step index for the
    /// ring's setup.
    pub(super) fn place_ring_memory(
        &mut self,
        index: usize,
        object: Option<ObjectId>,
        memory: &PlaceRingMemory,
    ) -> Result<(), Failure> {
        if !self.continuous {
            if let Some(object) = object {
                self.moved_rings.push(object);
            }
            return Ok(());
        }
        let (placed, lent) = PlacedMemory::place_in(
            self.backend,
            &placement_of(memory),
            memory.lend.then_some(self.floor),
        )
        .map_err(|error| self.continuity_failed(error))?;
        self.placed.insert(index, placed);
        if let (Some(object), false) = (object, lent.is_empty()) {
            self.lent.push((object, lent));
        }
        Ok(())
    }

    /// `setup_ring` on placed memory: the ring is kept by step index (its
    /// handle), its fd moved above the floor.
    pub(super) fn setup_continuous_ring(
        &mut self,
        index: usize,
        object: Option<ObjectId>,
        setup: &SetupRing,
        memory: u32,
    ) -> Result<(), Failure> {
        let Some(placed) = self.placed.remove(&(memory as usize)) else {
            return Err(Failure {
                call: "setup_ring on placed memory",
                errno: Errno::INVAL,
            });
        };
        let mut ring_setup = ring_setup_of(setup);
        if let Some(wq) = setup.wq_handle {
            ring_setup.wq_fd = Some(self.handle(wq)?);
        }
        let mut ring = ContinuousRing::create_in(self.backend, &ring_setup, placed)
            .map_err(|error| self.continuity_failed(error))?;
        if ring.fd_number() < self.floor {
            match self
                .backend
                .fcntl_dupfd_cloexec(ring.fd_number(), self.floor)
            {
                Ok(moved) => ring.replace_fd(self.backend, moved),
                Err(errno) => {
                    ring.release_in(self.backend);
                    return Err(super::fail("fcntl(F_DUPFD_CLOEXEC)")(errno));
                }
            }
        }
        // A disabled ring gets its owner when it is enabled, not here.
        let owned = setup.flags & SetupFlags::SINGLE_ISSUER.bits() != 0
            && setup.flags & SetupFlags::R_DISABLED.bits() == 0;
        let owner = owned.then(|| RingOwner {
            tid: self.backend.current_thread(),
            recorded_tid: setup.owner_tid,
        });
        if let Some(ring_id) = object {
            self.continuous_rings.push(ContinuousRingReport {
                ring: ring_id,
                rings_addr: ring.rings_addr(),
                sqes_addr: ring.sqes_addr(),
                advanced: Default::default(),
                owner,
            });
        }
        self.rings.insert(index, ring);
        Ok(())
    }

    /// The continuous ring a handle names; `None` when the run is not
    /// continuous (the step is skipped).
    fn continuous_ring(
        &mut self,
        handle: Handle,
    ) -> Result<Option<&mut ContinuousRing<B>>, Failure> {
        if !self.continuous {
            return Ok(None);
        }
        match self.rings.get_mut(&(handle.0 as usize)) {
            Some(ring) => Ok(Some(ring)),
            None => Err(Failure {
                call: "continuous ring lookup",
                errno: Errno::BADF,
            }),
        }
    }

    /// `restore_completions`.
    pub(super) fn restore_completions(
        &mut self,
        index: usize,
        object: Option<ObjectId>,
        restore: &RestoreCompletions,
    ) -> Result<(), Failure> {
        let unconsumed: Vec<Vec<u8>> = restore.cqes.iter().map(cqe_bytes).collect();
        let overflow: Vec<OverflowCqe> = restore
            .overflow
            .iter()
            .map(|cqe| OverflowCqe {
                user_data: cqe.user_data,
                res: cqe.res,
                flags: cqe.flags,
                extra: cqe.extra.unwrap_or([0, 0]),
            })
            .collect();
        let recorded = RecordedCompletions {
            sq_head: restore.sq_head,
            cq_head: restore.cq_head,
            cq_tail: restore.cq_tail,
            unconsumed: &unconsumed,
            overflow: &overflow,
            counters: Some(RingCounters {
                sq_dropped: restore.sq_dropped,
                cq_overflow: restore.cq_overflow,
                cq_flags: restore.cq_flags,
            }),
        };
        if self.continuous_ring(restore.ring_handle)?.is_none() {
            return Ok(());
        }
        let progress = &mut *self.progress;
        let mut report = |done: u64, total: u64| {
            progress(Progress {
                step: index,
                ring: object,
                done,
                total,
            });
        };
        let result = match self.rings.get_mut(&(restore.ring_handle.0 as usize)) {
            Some(ring) => restore_completions_in(ring, self.backend, &recorded, &mut report),
            None => {
                return Err(Failure {
                    call: "continuous ring lookup",
                    errno: Errno::BADF,
                })
            }
        };
        let advanced = result.map_err(|error| self.continuity_failed(error))?;
        if let Some(entry) = self
            .continuous_rings
            .iter_mut()
            .rev()
            .find(|entry| Some(entry.ring) == object)
        {
            entry.advanced = advanced;
        }
        Ok(())
    }

    /// `queue_sqes`.
    pub(super) fn queue_sqes(&mut self, queue: &QueueSqes) -> Result<(), Failure> {
        let queued: Vec<QueuedSqe> = queue
            .sqes
            .iter()
            .map(|sqe| QueuedSqe {
                index: sqe.slot,
                bytes: sqe.bytes.0.clone(),
            })
            .collect();
        let unqueued: Vec<QueuedSqe> = queue
            .unqueued_sqes
            .iter()
            .map(|sqe| QueuedSqe {
                index: sqe.slot,
                bytes: sqe.bytes.0.clone(),
            })
            .collect();
        let recorded = RecordedSubmissions {
            sq_head: queue.sq_head,
            sq_tail: queue.sq_tail,
            sq_array: queue.sq_array.as_deref(),
            queued: &queued,
            unqueued: &unqueued,
        };
        let Some(ring) = self.continuous_ring(queue.ring_handle)? else {
            return Ok(());
        };
        queue_sqes(ring, &recorded).map_err(|error| self.continuity_failed(error))
    }

    /// The second half of `register_pbuf_ring` for a head above 0: the
    /// buffer ring just registered consumes `head` buffers
    /// (`continuity/pbuf_head.rs`). Only on a continuous ring (preflight
    /// refuses a moved head otherwise).
    pub(super) fn bring_pbuf_head(&mut self, register: &RegisterPbufRing) -> Result<(), Failure> {
        let target = PbufHeadTarget {
            bgid: register.bgid,
            entries: register.entries,
            addr: register.addr,
            head: register.head,
        };
        let backend = &mut self.backend;
        let Some(ring) = (match self.rings.get_mut(&(register.ring_handle.0 as usize)) {
            Some(ring) if self.continuous => Some(ring),
            _ => None,
        }) else {
            return Err(Failure {
                call: "moving a buffer ring's head (needs the ring restored with its positions)",
                errno: Errno::INVAL,
            });
        };
        // SAFETY: the buffer ring's memory is in place since the memory
        // barrier (mapped by the memory hook in this process, the target's
        // own otherwise), and the kernel just pinned it at registration.
        let result = unsafe { advance_pbuf_head_in(ring, backend, &target) };
        result.map_err(|error| self.continuity_failed(error))
    }

    /// `provide_buffers`: a legacy group's buffers given again by
    /// `IORING_OP_PROVIDE_BUFFERS` SQEs the ring runs
    /// (`continuity/legacy_buffers.rs`). Only on a continuous ring
    /// (preflight refuses it otherwise). An undo closes the ring, and the
    /// group with it.
    pub(super) fn provide_buffers(&mut self, provide: &ProvideBuffers) -> Result<(), Failure> {
        let backend = &mut self.backend;
        let Some(ring) = (match self.rings.get_mut(&(provide.ring_handle.0 as usize)) {
            Some(ring) if self.continuous => Some(ring),
            _ => None,
        }) else {
            return Err(Failure {
                call: "providing a legacy group's buffers (needs the ring restored with its positions)",
                errno: Errno::INVAL,
            });
        };
        let result = provide_buffers_in(ring, backend, provide);
        result.map_err(|error| self.continuity_failed(error))
    }

    /// Closes a continuous ring's handle: the fd is closed, its memory kept
    /// with the run's regions (kept on success, unmapped by an undo).
    /// `false` when `handle` names no continuous ring.
    pub(super) fn close_continuous_ring(&mut self, handle: Handle) -> bool {
        match self.rings.remove(&(handle.0 as usize)) {
            Some(ring) => {
                let (fd, regions) = ring.into_parts();
                self.backend.close(fd);
                self.regions.extend(regions);
                true
            }
            None => false,
        }
    }
}
