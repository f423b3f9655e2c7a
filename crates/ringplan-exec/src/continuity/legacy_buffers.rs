//! Giving a new ring's legacy provided-buffer group its recorded buffers
//! again. The kernel keeps them only in its own list (`struct io_buffer`),
//! which nothing but `IORING_OP_PROVIDE_BUFFERS` fills: so the ring runs
//! one such SQE per recorded run, in the recorded order (the kernel adds
//! at the list's tail and takes from its head), each with
//! `IOSQE_CQE_SKIP_SUCCESS`: each moves the ring's SQ head by one and
//! leaves its CQ alone, which the planner counts in `restore_completions`
//! (it stops the SQ head that many positions short).
//!
//! The buffers' memory is the program's and is not touched (the kernel
//! only checks that it is in user space). The SQE slots and the SQ array
//! the SQEs use are written back as they were afterwards.

use ringplan_kernel::abi::continuity::{sqe_offset, IOSQE_CQE_SKIP_SUCCESS, SQE128_SIZE};
use ringplan_kernel::abi::legacy_pbuf::IORING_OP_PROVIDE_BUFFERS;
use ringplan_kernel::abi::pbuf::SQE_BUF_GROUP_OFFSET;
use ringplan_kernel::abi::SetupFlags;
use ringplan_plan::{ProvideBuffers, ProvideBuffersSqe};

use super::error::ContinuityError;
use super::ring::ContinuousRing;
use crate::backend::Backend;

/// Submits `provide`'s SQEs on `ring`, in order, in batches of at most the
/// SQ's size; the ring's SQ head moves by as many, its CQ not at all. The
/// SQE slots and the SQ array are as they were after, whatever happened.
pub(crate) fn provide_buffers_in<B: Backend>(
    ring: &mut ContinuousRing<B>,
    backend: &mut B,
    provide: &ProvideBuffers,
) -> Result<(), ContinuityError> {
    check_can_submit(ring, provide)?;
    let view = &ring.view;
    let saved_sqes = view.read_sqes();
    let saved_array = view.read_array();
    view.check()?;
    let submitted = submit_all(ring, backend, provide);
    let view = &ring.view;
    view.write_sqes(&saved_sqes);
    if let Some(array) = saved_array {
        view.set_array(&array);
    }
    submitted?;
    view.check()
}

/// Refusals before anything is touched.
fn check_can_submit<B: Backend>(
    ring: &ContinuousRing<B>,
    provide: &ProvideBuffers,
) -> Result<(), ContinuityError> {
    if ring.flags().contains(SetupFlags::R_DISABLED) {
        return Err(ContinuityError::BadRequest(format!(
            "legacy group {}: its buffers are provided by SQEs, which a disabled ring does not run",
            provide.bgid
        )));
    }
    let (sq_head, sq_tail, _, _) = ring.positions_in_memory();
    if sq_head != sq_tail {
        return Err(ContinuityError::BadRequest(format!(
            "legacy group {}: the ring holds SQEs ({sq_head}..{sq_tail}): buffers are provided only on an empty SQ",
            provide.bgid
        )));
    }
    Ok(())
}

/// One `IORING_OP_PROVIDE_BUFFERS` SQE.
fn provide_sqe(bgid: u16, sqe: &ProvideBuffersSqe) -> [u8; SQE128_SIZE] {
    let mut bytes = [0u8; SQE128_SIZE];
    bytes[sqe_offset::OPCODE] = IORING_OP_PROVIDE_BUFFERS;
    bytes[sqe_offset::FLAGS] = IOSQE_CQE_SKIP_SUCCESS;
    // `fd` holds the buffer count, `off` the first bid.
    bytes[sqe_offset::FD..sqe_offset::FD + 4].copy_from_slice(&sqe.count.to_ne_bytes());
    bytes[sqe_offset::OFF..sqe_offset::OFF + 8].copy_from_slice(&u64::from(sqe.bid).to_ne_bytes());
    bytes[sqe_offset::ADDR..sqe_offset::ADDR + 8].copy_from_slice(&sqe.addr.to_ne_bytes());
    bytes[sqe_offset::LEN..sqe_offset::LEN + 4].copy_from_slice(&sqe.len.to_ne_bytes());
    bytes[SQE_BUF_GROUP_OFFSET..SQE_BUF_GROUP_OFFSET + 2].copy_from_slice(&bgid.to_ne_bytes());
    bytes
}

/// The SQEs in batches: each batch written at the slots the kernel reads
/// next (through the SQ array where the ring has one), submitted, and
/// checked to have posted no CQE (a failed one posts its error).
fn submit_all<B: Backend>(
    ring: &mut ContinuousRing<B>,
    backend: &mut B,
    provide: &ProvideBuffers,
) -> Result<(), ContinuityError> {
    let sq_entries = ring.view.sq_entries;
    let cq_tail = ring.view.cq_tail();
    for batch in provide.sqes.chunks(sq_entries as usize) {
        let view = &ring.view;
        let head = view.sq_tail();
        for (offset, sqe) in batch.iter().enumerate() {
            let position = head.wrapping_add(offset as u32);
            // With an SQ array the kernel reads array[position] for the
            // slot, here the slot of the same number; without one, that
            // slot directly.
            view.set_array_entry(position, position & (sq_entries - 1));
            view.write_sqe(position, &provide_sqe(provide.bgid, sqe));
        }
        let (ring_ref, backend_ref) = (&*ring, &mut *backend);
        ring_ref.view.submit(
            &mut |to_submit, min_complete, flags| {
                ring_ref.enter(backend_ref, to_submit, min_complete, flags)
            },
            batch.len() as u32,
            0,
        )?;
        let view = &ring.view;
        if view.cq_tail() != cq_tail {
            let cqe = view.read_cqe(cq_tail);
            let res = i32::from_ne_bytes([cqe[8], cqe[9], cqe[10], cqe[11]]);
            return Err(ContinuityError::Diverged(format!(
                "legacy group {}: IORING_OP_PROVIDE_BUFFERS failed ({})",
                provide.bgid,
                rustix::io::Errno::from_raw_os_error(-res)
            )));
        }
    }
    Ok(())
}
