//! A helper ring that posts CQEs into another ring with
//! `IORING_OP_MSG_RING` (`IORING_MSG_DATA`): how a ring's CQ tail moves
//! without consuming its own SQEs, and how CQEs reach its overflow list.
//! The helper is an ordinary kernel-mapped ring of this process, closed
//! and unmapped when dropped; a ring in another process is reached through
//! a copy of its fd (`pidfd_getfd`).

use std::ffi::c_void;
use std::os::fd::{AsRawFd, OwnedFd};

use ringplan_kernel::abi::continuity::{
    cqe_offset, sqe_offset, CQE_SIZE, IORING_MSG_DATA, IORING_MSG_RING_FLAGS_PASS,
    IOSQE_CQE_SKIP_SUCCESS, OP_MSG_RING, SQE_SIZE, SQ_ARRAY_ENTRY_SIZE,
};
use ringplan_kernel::abi::mmap_offset;
use rustix::io::Errno;
use rustix::io_uring::{io_uring_params, io_uring_setup};
use rustix::mm::{MapFlags, ProtFlags};

use super::error::{syscall, ContinuityError};
use super::rings_view::RingsView;
use crate::backend::{Backend, InProcess, TargetMemory};
use crate::owned_mapping::OwnedMapping;

/// One CQE to post: user_data, res, and flags (sent with
/// `IORING_MSG_RING_FLAGS_PASS` when not zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Message {
    pub(super) user_data: u64,
    pub(super) res: i32,
    pub(super) flags: u32,
}

/// The SQE that posts `message` into the ring at `target`, with no CQE of
/// its own on success.
pub(super) fn msg_ring_sqe(target: i32, message: Message) -> [u8; SQE_SIZE] {
    let mut sqe = [0u8; SQE_SIZE];
    sqe[sqe_offset::OPCODE] = OP_MSG_RING;
    sqe[sqe_offset::FLAGS] = IOSQE_CQE_SKIP_SUCCESS;
    sqe[sqe_offset::FD..sqe_offset::FD + 4].copy_from_slice(&target.to_le_bytes());
    sqe[sqe_offset::OFF..sqe_offset::OFF + 8].copy_from_slice(&message.user_data.to_le_bytes());
    sqe[sqe_offset::ADDR..sqe_offset::ADDR + 8].copy_from_slice(&IORING_MSG_DATA.to_le_bytes());
    sqe[sqe_offset::LEN..sqe_offset::LEN + 4].copy_from_slice(&message.res.to_le_bytes());
    if message.flags != 0 {
        sqe[sqe_offset::OP_FLAGS..sqe_offset::OP_FLAGS + 4]
            .copy_from_slice(&IORING_MSG_RING_FLAGS_PASS.to_le_bytes());
        sqe[sqe_offset::FILE_INDEX..sqe_offset::FILE_INDEX + 4]
            .copy_from_slice(&message.flags.to_le_bytes());
    }
    sqe
}

/// A kernel-mapped ring used only to send `MSG_RING`s.
pub(super) struct HelperRing {
    // Drop order: the ring before its memory.
    fd: OwnedFd,
    view: RingsView,
    _rings: OwnedMapping,
    _sqes: OwnedMapping,
}

impl HelperRing {
    /// A plain ring of `entries` SQEs.
    pub(super) fn new(entries: u32) -> Result<HelperRing, ContinuityError> {
        let mut params = io_uring_params::default();
        // SAFETY: no NO_MMAP flag: the kernel reads no user address.
        let fd = unsafe { io_uring_setup(entries, &mut params) }
            .map_err(syscall("io_uring_setup(helper)"))?;
        let array_end =
            params.sq_off.array as usize + params.sq_entries as usize * SQ_ARRAY_ENTRY_SIZE;
        let cqes_end = params.cq_off.cqes as usize + params.cq_entries as usize * CQE_SIZE;
        let rings = map_region(&fd, array_end.max(cqes_end), mmap_offset::SQ_RING)?;
        let sqes = map_region(
            &fd,
            params.sq_entries as usize * SQE_SIZE,
            mmap_offset::SQES,
        )?;
        // SAFETY: both regions are mapped and owned by the HelperRing, which
        // also owns the view.
        let view = unsafe {
            RingsView::new(
                TargetMemory::Local,
                (rings.addr as u64, sqes.addr as u64),
                &params,
                true,
                SQE_SIZE,
                CQE_SIZE,
                false,
            )
        };
        for index in 0..params.sq_entries {
            view.set_array_entry(index, index);
        }
        Ok(HelperRing {
            fd,
            view,
            _rings: rings,
            _sqes: sqes,
        })
    }

    /// How many SQEs one batch can take.
    pub(super) fn entries(&self) -> u32 {
        self.view.sq_entries
    }

    /// Writes `sqe` into every SQE slot, for batches of identical messages.
    pub(super) fn fill_all(&self, sqe: &[u8]) {
        for slot in 0..self.view.sq_entries {
            self.view.write_sqe(slot, sqe);
        }
    }

    /// Writes one SQE into the slot of the `index`th SQE of the next batch.
    pub(super) fn write_next(&self, index: u32, sqe: &[u8]) {
        self.view
            .write_sqe(self.view.sq_tail().wrapping_add(index), sqe);
    }

    /// Submits the next `count` SQEs (at most [`Self::entries`]) and fails
    /// with the first failure any of them posted.
    pub(super) fn submit(&self, count: u32) -> Result<(), ContinuityError> {
        // Its SQEs skip their CQEs on success.
        let fd = self.fd.as_raw_fd();
        self.view.submit(
            &mut |to_submit, min_complete, flags| {
                InProcess.io_uring_enter(fd, to_submit, min_complete, flags)
            },
            count,
            0,
        )?;
        let (head, tail) = (self.view.cq_head(), self.view.cq_tail());
        if head != tail {
            // Only failures post a CQE (IOSQE_CQE_SKIP_SUCCESS).
            let cqe = self.view.read_cqe(head);
            let res = i32::from_le_bytes(
                cqe[cqe_offset::RES..cqe_offset::RES + 4]
                    .try_into()
                    .unwrap_or_default(),
            );
            self.view.set_cq_head(tail);
            return Err(ContinuityError::Syscall {
                call: "IORING_OP_MSG_RING",
                errno: Errno::from_raw_os_error(res.saturating_neg()),
            });
        }
        Ok(())
    }
}

/// Maps one region of a ring where the kernel chooses.
fn map_region(fd: &OwnedFd, len: usize, offset: u64) -> Result<OwnedMapping, ContinuityError> {
    // SAFETY: a new shared mapping where the kernel chooses; owned at once.
    let addr = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut::<c_void>(),
            len,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::SHARED | MapFlags::POPULATE,
            fd,
            offset,
        )
    }
    .map_err(syscall("mmap(helper ring)"))?;
    Ok(OwnedMapping {
        addr: addr as usize,
        len,
    })
}
