//! Bringing a new ring's kernel-private positions (`cached_sq_head`,
//! `cached_cq_tail`) to given `u32` values, as cheaply as the kernel allows:
//!
//! - plain NOPs move both (one SQE consumed, one CQE posted);
//! - NOPs with `IOSQE_CQE_SKIP_SUCCESS` move the SQ head alone;
//! - `IORING_OP_MSG_RING` from a helper ring moves the CQ tail alone.
//!
//! The NOPs are written once: with an SQ array every array entry points at
//! SQE 0, without one (`NO_SQARRAY`) every slot holds the NOP, so a batch
//! costs one tail store and one `io_uring_enter` (batches of at most 1024,
//! cheaper per NOP than larger ones). The CQ head is moved by
//! hand between batches (the ring's memory is ours), never backwards past
//! what the kernel last saw, since the kernel caches free CQ slots.

use ringplan_kernel::abi::continuity::{sqe_offset, IOSQE_CQE_SKIP_SUCCESS, OP_NOP, SQE128_SIZE};
use ringplan_kernel::abi::SetupFlags;

use super::error::{syscall, ContinuityError};
use super::helper::{msg_ring_sqe, HelperRing, Message};
use super::ring::ContinuousRing;
use super::rings_view::RingsView;
use crate::backend::{Backend, InProcess};
use crate::remote::EnterLoop;

/// How often (in positions) progress is reported, besides start and end.
const PROGRESS_EVERY: u64 = 1 << 16;
/// The largest NOP batch: on a 32768-entry ring, batches of 1024 cost about
/// 10% less per NOP than batches of the whole ring (measured 69-72 ns
/// against 77-80 ns), as fewer requests are in flight in the kernel at
/// once.
const MAX_NOP_BATCH: u32 = 1024;
/// The largest helper ring for `MSG_RING` batches.
const HELPER_ENTRIES: u32 = 4096;

/// Where the positions go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PositionTargets {
    /// The kernel's SQ head (`cached_sq_head`); the SQ tail in memory ends
    /// here too.
    pub sq_head: u32,
    /// The kernel's CQ tail (`cached_cq_tail`).
    pub cq_tail: u32,
    /// The CQ head in memory at the end; `cq_tail - cq_head` must not exceed
    /// the CQ size.
    pub cq_head: u32,
}

/// What [`advance_positions`] submitted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Advanced {
    /// NOPs that moved both positions.
    pub nops: u64,
    /// NOPs with `IOSQE_CQE_SKIP_SUCCESS` (SQ head only).
    pub skipping_nops: u64,
    /// `MSG_RING`s from the helper ring (CQ tail only).
    pub messages: u64,
    /// `io_uring_enter` batches.
    pub batches: u64,
}

impl Advanced {
    /// Positions moved in all (each SQE moved one or two).
    pub fn total(&self) -> u64 {
        self.nops + self.skipping_nops + self.messages
    }
}

/// Brings an empty ring's kernel positions to `targets`, counting forward
/// (wrapping at 2^32) from where they are. At the end the ring's memory
/// holds SQ head = SQ tail = `targets.sq_head`, CQ tail = `targets.cq_tail`,
/// CQ head = `targets.cq_head` (the CQEs between them are the NOPs'; fill
/// them with `restore_entries`). `progress(done, total)` is called at the
/// start, every 65536 positions and at the end.
pub fn advance_positions(
    ring: &mut ContinuousRing,
    targets: &PositionTargets,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Advanced, ContinuityError> {
    advance_positions_in(ring, &mut InProcess, targets, progress)
}

/// [`advance_positions`] of a ring in the process `backend` acts in: its
/// `io_uring_enter` calls run there, in the backend's thread (a
/// `SINGLE_ISSUER` ring's owner); the helper ring is this process's.
pub(crate) fn advance_positions_in<B: Backend>(
    ring: &mut ContinuousRing<B>,
    backend: &mut B,
    targets: &PositionTargets,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Advanced, ContinuityError> {
    check_can_advance(ring, targets)?;
    let view = &ring.view;
    let (sq_head, _, cq_head, cq_tail) = ring.positions_in_memory();
    let sq_moves = u64::from(targets.sq_head.wrapping_sub(sq_head));
    let cq_moves = u64::from(targets.cq_tail.wrapping_sub(cq_tail));
    // The final CQ head lies behind the start (a ring that must end full
    // before it ever wrapped): put it there before any CQE is posted, when
    // the kernel has no free slots cached.
    if u64::from(targets.cq_head.wrapping_sub(cq_head)) > cq_moves {
        if (sq_head, cq_head, cq_tail) != (0, 0, 0) {
            return Err(ContinuityError::BadRequest(format!(
                "a CQ head of {} behind a CQ tail of {} needs a new ring (its positions are {sq_head}, {cq_tail})",
                targets.cq_head, targets.cq_tail
            )));
        }
        view.set_cq_head(targets.cq_head);
    }
    let both = sq_moves.min(cq_moves);
    let mut run = Advance {
        ring,
        backend,
        targets: *targets,
        done: 0,
        total: sq_moves.max(cq_moves),
        reported: 0,
        progress,
        advanced: Advanced::default(),
    };
    (run.progress)(0, run.total);
    run.nops(both, false)?;
    run.nops(sq_moves - both, true)?;
    run.messages(cq_moves - both)?;
    run.finish()
}

/// Refusals before anything is submitted.
fn check_can_advance<B: Backend>(
    ring: &ContinuousRing<B>,
    targets: &PositionTargets,
) -> Result<(), ContinuityError> {
    if ring.flags.contains(SetupFlags::R_DISABLED) {
        return Err(ContinuityError::BadRequest(
            "the ring is disabled (IORING_SETUP_R_DISABLED): enable it before advancing its positions".into(),
        ));
    }
    let (sq_head, sq_tail, cq_head, cq_tail) = ring.positions_in_memory();
    if sq_head != sq_tail || cq_head != cq_tail {
        return Err(ContinuityError::BadRequest(format!(
            "the ring holds entries (SQ {sq_head}..{sq_tail}, CQ {cq_head}..{cq_tail}): positions move only on an empty ring"
        )));
    }
    let in_ring = targets.cq_tail.wrapping_sub(targets.cq_head);
    if in_ring > ring.view.cq_entries {
        return Err(ContinuityError::BadRequest(format!(
            "CQ head {} and tail {} are {in_ring} entries apart, more than the {} the CQ ring holds",
            targets.cq_head, targets.cq_tail, ring.view.cq_entries
        )));
    }
    Ok(())
}

struct Advance<'a, B: Backend> {
    ring: &'a mut ContinuousRing<B>,
    backend: &'a mut B,
    targets: PositionTargets,
    done: u64,
    total: u64,
    reported: u64,
    progress: &'a mut dyn FnMut(u64, u64),
    advanced: Advanced,
}

impl<B: Backend> Advance<'_, B> {
    fn view(&self) -> &RingsView {
        &self.ring.view
    }

    /// Moves the CQ head forward by hand, towards the tail but never past
    /// the final head; returns the free CQ slots.
    fn make_room(&self) -> u32 {
        let view = self.view();
        let (head, tail) = (view.cq_head(), view.cq_tail());
        let step = tail
            .wrapping_sub(head)
            .min(self.targets.cq_head.wrapping_sub(head));
        let head = head.wrapping_add(step);
        view.set_cq_head(head);
        view.cq_entries.saturating_sub(tail.wrapping_sub(head))
    }

    fn count(&mut self, moved: u64) {
        self.count_batches(moved, 1);
    }

    fn count_batches(&mut self, moved: u64, batches: u64) {
        self.done += moved;
        self.advanced.batches += batches;
        if self.done - self.reported >= PROGRESS_EVERY {
            self.reported = self.done;
            (self.progress)(self.done, self.total);
        }
    }

    /// `count` NOPs, skipping their CQEs or not, in batches of at most the
    /// SQ size (and the free CQ slots).
    fn nops(&mut self, count: u64, skip_cqe: bool) -> Result<(), ContinuityError> {
        if count == 0 {
            return Ok(());
        }
        let view = self.view();
        let mut nop = [0u8; SQE128_SIZE];
        nop[sqe_offset::OPCODE] = OP_NOP;
        nop[sqe_offset::FLAGS] = if skip_cqe { IOSQE_CQE_SKIP_SUCCESS } else { 0 };
        if view.has_sq_array() {
            view.set_array(&vec![0; view.sq_entries as usize]);
            view.write_sqe(0, &nop);
        } else {
            view.fill_sqes(&nop);
        }
        let mut left = count - self.nops_in_target(count, skip_cqe)?;
        while left > 0 {
            let mut batch = left
                .min(u64::from(self.view().sq_entries))
                .min(u64::from(MAX_NOP_BATCH)) as u32;
            if !skip_cqe {
                batch = batch.min(self.make_room());
                if batch == 0 {
                    return Err(no_room(self.view()));
                }
            }
            let expected_tail =
                self.view()
                    .cq_tail()
                    .wrapping_add(if skip_cqe { 0 } else { batch });
            let (ring, backend) = (&*self.ring, &mut *self.backend);
            ring.view.submit(
                &mut |to_submit, min_complete, flags| {
                    ring.enter(backend, to_submit, min_complete, flags)
                },
                batch,
                if skip_cqe { 0 } else { batch },
            )?;
            self.view().wait_cq_tail(expected_tail)?;
            if skip_cqe {
                self.advanced.skipping_nops += u64::from(batch);
            } else {
                self.advanced.nops += u64::from(batch);
            }
            left -= u64::from(batch);
            self.count(u64::from(batch));
        }
        Ok(())
    }

    /// As many whole batches of the `count` NOPs as the backend can run
    /// inside the target in one go ([`Backend::io_uring_enter_loop`]: a
    /// loop in the ring's own thread, one ptrace round trip for thousands
    /// of batches instead of one per batch); the NOPs it ran. None in this
    /// process, nor for an SQPOLL ring (its SQ thread consumes the SQEs,
    /// and its calls are made here already). The loop sets the CQ head to
    /// the CQ tail before each batch, so it stops early enough for the head
    /// never to pass where it must end; the rest is left to the caller.
    fn nops_in_target(&mut self, count: u64, skip_cqe: bool) -> Result<u64, ContinuityError> {
        if B::IN_THIS_PROCESS || self.ring.flags.contains(SetupFlags::SQPOLL) {
            return Ok(0);
        }
        let (sq_entries, cq_entries) = (self.view().sq_entries, self.view().cq_entries);
        let mut batch = sq_entries.min(MAX_NOP_BATCH);
        if !skip_cqe {
            batch = batch.min(cq_entries);
        }
        if batch == 0 {
            return Ok(0);
        }
        let mut batches = count / u64::from(batch);
        if !skip_cqe {
            self.make_room();
            let (head, tail) = (self.view().cq_head(), self.view().cq_tail());
            let to_final_head = u64::from(self.targets.cq_head.wrapping_sub(head));
            let pending = u64::from(tail.wrapping_sub(head));
            batches = batches.min(to_final_head.saturating_sub(pending) / u64::from(batch));
        }
        // Runs of at most PROGRESS_EVERY positions, so progress is still
        // reported (and one run never holds the thread for long).
        let per_run = (PROGRESS_EVERY / u64::from(batch)).max(1);
        let layout = &self.ring.layout;
        let rings = self.ring.rings_addr();
        let mut enter_loop = EnterLoop {
            ring_fd: self.ring.fd_number(),
            batch,
            min_complete: 0,
            flags: 0,
            batches: 0,
            sq_tail: rings + u64::from(layout.sq_off[1]),
            cq_head: (!skip_cqe).then_some(rings + u64::from(layout.cq_off[0])),
            cq_tail: rings + u64::from(layout.cq_off[1]),
        };
        let mut done = 0;
        while batches > 0 {
            enter_loop.batches = batches.min(per_run);
            let moved_tail = if skip_cqe { 0 } else { enter_loop.batches };
            let expected_tail = self
                .view()
                .cq_tail()
                .wrapping_add((moved_tail * u64::from(batch)) as u32);
            let Some(ran) = self.backend.io_uring_enter_loop(&enter_loop) else {
                return Ok(done);
            };
            let ran = ran.map_err(syscall("io_uring_enter"))?;
            let nops = ran.batches * u64::from(batch);
            if skip_cqe {
                self.advanced.skipping_nops += nops;
            } else {
                self.advanced.nops += nops;
            }
            self.count_batches(nops, ran.batches);
            done += nops;
            if ran.batches < enter_loop.batches {
                return Err(if ran.last_result < 0 {
                    syscall("io_uring_enter")(rustix::io::Errno::from_raw_os_error(
                        i32::try_from(-ran.last_result).unwrap_or(5),
                    ))
                } else {
                    ContinuityError::Diverged(format!(
                        "io_uring_enter consumed {} of {batch} SQEs",
                        ran.last_result
                    ))
                });
            }
            self.view().check()?;
            self.view().wait_cq_tail(expected_tail)?;
            batches -= enter_loop.batches;
        }
        Ok(done)
    }

    /// `count` CQEs posted by `MSG_RING`s from a helper ring.
    fn messages(&mut self, count: u64) -> Result<(), ContinuityError> {
        if count == 0 {
            return Ok(());
        }
        let entries = self.view().cq_entries.clamp(1, HELPER_ENTRIES);
        let helper = HelperRing::new(entries)?;
        let message = Message {
            user_data: 0,
            res: 0,
            flags: 0,
        };
        let target = self.ring.fd_here(self.backend)?;
        helper.fill_all(&msg_ring_sqe(target, message));
        let defer_taskrun = self.ring.flags.contains(SetupFlags::DEFER_TASKRUN);
        let mut left = count;
        while left > 0 {
            let room = self.make_room();
            let batch = left.min(u64::from(helper.entries())).min(u64::from(room)) as u32;
            if batch == 0 {
                return Err(no_room(self.view()));
            }
            let expected_tail = self.view().cq_tail().wrapping_add(batch);
            helper.submit(batch)?;
            if defer_taskrun {
                let (ring, backend) = (&*self.ring, &mut *self.backend);
                ring.view
                    .run_task_work(&mut |to_submit, min_complete, flags| {
                        ring.enter(backend, to_submit, min_complete, flags)
                    })?;
            }
            self.view().wait_cq_tail(expected_tail)?;
            self.advanced.messages += u64::from(batch);
            left -= u64::from(batch);
            self.count(u64::from(batch));
        }
        Ok(())
    }

    /// Clears the NOPs out of the SQ slots, puts the CQ head at its target
    /// and checks the memory holds the targets.
    fn finish(mut self) -> Result<Advanced, ContinuityError> {
        let view = self.view();
        view.fill_sqes(&[]);
        view.set_array(&vec![0; view.sq_entries as usize]);
        self.make_room();
        self.view().check()?;
        let reached = self.ring.positions_in_memory();
        let wanted = (
            self.targets.sq_head,
            self.targets.sq_head,
            self.targets.cq_head,
            self.targets.cq_tail,
        );
        if reached != wanted {
            return Err(ContinuityError::Diverged(format!(
                "the ring's memory holds SQ head/tail, CQ head/tail {reached:?}, not {wanted:?}"
            )));
        }
        if self.reported != self.done || self.done == 0 {
            self.reported = self.done;
            (self.progress)(self.done, self.total);
        }
        Ok(self.advanced)
    }
}

fn no_room(view: &RingsView) -> ContinuityError {
    ContinuityError::Diverged(format!(
        "no free CQ slot (CQ head {}, tail {})",
        view.cq_head(),
        view.cq_tail()
    ))
}
