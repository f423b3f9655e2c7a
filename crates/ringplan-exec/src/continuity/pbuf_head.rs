//! Bringing a new buffer ring's head (the kernel's private count of the
//! buffers it consumed, which `IORING_REGISTER_PBUF_RING` starts at 0) to a
//! recorded value. Nothing sets it: the kernel moves it only when a request
//! consumes a buffer. So the ring consumes `head` buffers with reads of one
//! byte from a pipe that selects them (`IOSQE_BUFFER_SELECT`), skipping
//! their CQEs (`IOSQE_CQE_SKIP_SUCCESS`): each moves the ring's SQ head by
//! one and leaves its CQ alone, which the planner counts in
//! `restore_completions` (it stops the SQ head that many positions short).
//!
//! The buffer ring's memory is the program's: its entries are replaced for
//! the while by entries of one byte each that point at the entries' own
//! `bid` fields (so the reads write into memory that is put back anyway,
//! never into the program's buffers), its tail is moved as the batches
//! need, and afterwards every byte of it is written back as it was, as are
//! the SQE slots and the SQ array the reads used.

use ringplan_kernel::abi::continuity::{sqe_offset, IOSQE_CQE_SKIP_SUCCESS, OP_READ, SQE128_SIZE};
use ringplan_kernel::abi::pbuf;
use ringplan_kernel::abi::pbuf::TAIL_OFFSET;
use ringplan_kernel::abi::SetupFlags;

use super::error::{syscall, ContinuityError};
use super::ring::ContinuousRing;
use crate::backend::{Backend, InProcess, TargetMemory};

/// A buffer ring registered (at head 0) on the ring, and the head to bring
/// it to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PbufHeadTarget {
    pub bgid: u16,
    pub entries: u32,
    /// The ring's memory in the program (`entries` * 16 bytes).
    pub addr: u64,
    pub head: u16,
}

/// Byte offset of `bid` in `struct io_uring_buf`, where each temporary
/// entry's read writes its byte.
const ENTRY_BID_OFFSET: u64 = 12;

/// [`advance_pbuf_head_in`] for a ring of this process: consumes
/// `target.head` buffers of the buffer ring just registered on `ring` (head
/// 0), moving the ring's SQ head by as many; the buffer ring's memory, the
/// SQE slots and the SQ array are put back after.
///
/// # Safety
/// The buffer ring's memory (`target.addr`, `entries` * 16 bytes) must be
/// mapped and writable in this process, as registering it required.
pub unsafe fn advance_pbuf_head(
    ring: &mut ContinuousRing,
    target: &PbufHeadTarget,
) -> Result<(), ContinuityError> {
    // SAFETY: the caller's contract, which is the callee's.
    unsafe { advance_pbuf_head_in(ring, &mut InProcess, target) }
}

/// Consumes `target.head` buffers of the freshly registered buffer ring
/// `target.bgid` (whose head is 0), so the kernel's head is `target.head`;
/// the ring's SQ head moves by as much, its CQ not at all. The buffer
/// ring's memory, the SQE slots and the SQ array are as they were after.
///
/// # Safety
/// In this process, the buffer ring's memory (`target.addr`, `entries` *
/// 16 bytes) must be mapped and writable (the kernel pinned it at
/// registration, which succeeded).
pub(crate) unsafe fn advance_pbuf_head_in<B: Backend>(
    ring: &mut ContinuousRing<B>,
    backend: &mut B,
    target: &PbufHeadTarget,
) -> Result<(), ContinuityError> {
    if target.head == 0 {
        return Ok(());
    }
    check_can_consume(ring, target)?;
    // The buffer ring is the program's memory, reached as the backend
    // reaches the target (the ring's own memory may be a mapping here).
    let memory = ProgramMemory {
        access: backend
            .memory()
            .map_err(syscall("opening the target's memory"))?,
        addr: target.addr,
        len: target.entries as usize * pbuf::ENTRY_SIZE as usize,
    };
    let view = &ring.view;
    let saved_entries = memory.read()?;
    let saved_sqes = view.read_sqes();
    let saved_array = view.read_array();
    view.check()?;
    let (read_end, write_end) = backend.pipe().map_err(syscall("pipe"))?;
    let consumed = consume(
        ring,
        backend,
        &memory,
        target,
        B::number(&read_end),
        B::number(&write_end),
    );
    backend.close(read_end);
    backend.close(write_end);
    let view = &ring.view;
    let put_back = memory.write(&saved_entries);
    view.write_sqes(&saved_sqes);
    if let Some(array) = saved_array {
        view.set_array(&array);
    }
    consumed?;
    put_back?;
    view.check()?;
    check_head(ring, backend, target)
}

/// The buffer ring's memory in the program.
struct ProgramMemory {
    access: TargetMemory,
    addr: u64,
    len: usize,
}

impl ProgramMemory {
    fn missing(&self) -> ContinuityError {
        ContinuityError::ProgramMemoryMissing {
            what: "the buffer ring's memory",
            addr: self.addr,
            len: self.len as u64,
        }
    }

    fn read(&self) -> Result<Vec<u8>, ContinuityError> {
        let mut bytes = vec![0u8; self.len];
        match &self.access {
            TargetMemory::Local => {
                // SAFETY: the contract of `advance_pbuf_head_in`: the range
                // is mapped here.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        self.addr as *const u8,
                        bytes.as_mut_ptr(),
                        self.len,
                    );
                }
            }
            TargetMemory::Process(memory) => memory
                .read_exact_at(self.addr, &mut bytes)
                .map_err(|_| self.missing())?,
        }
        Ok(bytes)
    }

    fn write(&self, bytes: &[u8]) -> Result<(), ContinuityError> {
        let len = bytes.len().min(self.len);
        match &self.access {
            TargetMemory::Local => {
                // SAFETY: as in `read`, and writable; the kernel reads the
                // entries only while a batch is submitted, never during
                // this copy.
                unsafe {
                    std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.addr as *mut u8, len);
                }
                Ok(())
            }
            TargetMemory::Process(memory) => memory
                .write_all_at(self.addr, &bytes[..len])
                .map_err(|_| self.missing()),
        }
    }
}

/// Refusals before anything is touched.
fn check_can_consume<B: Backend>(
    ring: &ContinuousRing<B>,
    target: &PbufHeadTarget,
) -> Result<(), ContinuityError> {
    let flags = ring.flags();
    if flags.intersects(SetupFlags::R_DISABLED | SetupFlags::IOPOLL) {
        return Err(ContinuityError::BadRequest(format!(
            "buffer ring {}: its head moves only by reads the ring runs, which a disabled or IOPOLL ring does not",
            target.bgid
        )));
    }
    if !target.entries.is_power_of_two() || target.entries > pbuf::MAX_ENTRIES {
        return Err(ContinuityError::BadRequest(format!(
            "buffer ring {}: {} entries is not a power of two up to {}",
            target.bgid,
            target.entries,
            pbuf::MAX_ENTRIES
        )));
    }
    let (sq_head, sq_tail, _, _) = ring.positions_in_memory();
    if sq_head != sq_tail {
        return Err(ContinuityError::BadRequest(format!(
            "buffer ring {}: the ring holds SQEs ({sq_head}..{sq_tail}): buffers are consumed only on an empty SQ",
            target.bgid
        )));
    }
    Ok(())
}

/// The temporary entries: each one byte, at its own `bid` field.
fn temporary_entries(target: &PbufHeadTarget) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(target.entries as usize * pbuf::ENTRY_SIZE as usize);
    for index in 0..target.entries {
        let entry = target.addr + u64::from(index) * pbuf::ENTRY_SIZE;
        bytes.extend_from_slice(&(entry + ENTRY_BID_OFFSET).to_ne_bytes());
        bytes.extend_from_slice(&1u32.to_ne_bytes());
        bytes.extend_from_slice(&(index as u16).to_ne_bytes());
        bytes.extend_from_slice(&0u16.to_ne_bytes());
    }
    bytes
}

/// The reads, in batches of at most the SQ size and the buffer ring's
/// entries: per batch, that many bytes into the pipe, the tail that many
/// entries on, the batch submitted.
fn consume<B: Backend>(
    ring: &mut ContinuousRing<B>,
    backend: &mut B,
    memory: &ProgramMemory,
    target: &PbufHeadTarget,
    read_fd: i32,
    write_fd: i32,
) -> Result<(), ContinuityError> {
    let view = &ring.view;
    let mut entries = temporary_entries(target);
    let mut read = [0u8; SQE128_SIZE];
    read[sqe_offset::OPCODE] = OP_READ;
    read[sqe_offset::FLAGS] = pbuf::IOSQE_BUFFER_SELECT | IOSQE_CQE_SKIP_SUCCESS;
    read[sqe_offset::FD..sqe_offset::FD + 4].copy_from_slice(&read_fd.to_ne_bytes());
    read[sqe_offset::LEN..sqe_offset::LEN + 4].copy_from_slice(&1u32.to_ne_bytes());
    read[pbuf::SQE_BUF_GROUP_OFFSET..pbuf::SQE_BUF_GROUP_OFFSET + 2]
        .copy_from_slice(&target.bgid.to_ne_bytes());
    if view.has_sq_array() {
        view.set_array(&vec![0; view.sq_entries as usize]);
        view.write_sqe(0, &read);
    } else {
        view.fill_sqes(&read);
    }
    let cq_tail = view.cq_tail();
    let batch_limit = view.sq_entries.min(target.entries).min(1024);
    let mut consumed: u16 = 0;
    while consumed < target.head {
        let batch = u32::from(target.head - consumed).min(batch_limit);
        let bytes = vec![0u8; batch as usize];
        let mut written = 0;
        while written < bytes.len() {
            written += backend
                .write(write_fd, &bytes[written..])
                .map_err(syscall("write(pipe)"))?;
        }
        let tail = consumed.wrapping_add(batch as u16);
        entries[TAIL_OFFSET..TAIL_OFFSET + 2].copy_from_slice(&tail.to_ne_bytes());
        // Every entry again, not the tail alone: an incremental ring
        // (IOU_PBUF_RING_INC) writes a consumed entry's shortened address
        // and length back, and a later batch takes that slot again.
        memory.write(&entries)?;
        let (ring_ref, backend_ref) = (&*ring, &mut *backend);
        ring_ref.view.submit(
            &mut |to_submit, min_complete, flags| {
                ring_ref.enter(backend_ref, to_submit, min_complete, flags)
            },
            batch,
            0,
        )?;
        if view.cq_tail() != cq_tail {
            // A read that failed posted its CQE (a success posts none).
            let res = view.read_cqe(cq_tail);
            let res = i32::from_ne_bytes([res[8], res[9], res[10], res[11]]);
            return Err(ContinuityError::Diverged(format!(
                "buffer ring {}: a read that consumes a buffer failed ({})",
                target.bgid,
                rustix::io::Errno::from_raw_os_error(-res)
            )));
        }
        consumed = tail;
    }
    Ok(())
}

/// Where the kernel says so (`IORING_REGISTER_PBUF_STATUS`, 6.8+), the
/// head is the recorded one: a read that went to an io-wq worker instead
/// of completing at once would leave it behind.
fn check_head<B: Backend>(
    ring: &mut ContinuousRing<B>,
    backend: &mut B,
    target: &PbufHeadTarget,
) -> Result<(), ContinuityError> {
    let fd = ring.fd_here(backend)?;
    // SAFETY: `fd` is the ring's fd here (its own, or the copy the ring
    // keeps), open for the call.
    let ring_fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    match ringplan_kernel::probe::pbuf_head(ring_fd, target.bgid)
        .map_err(syscall("IORING_REGISTER_PBUF_STATUS"))?
    {
        Some(head) if head != target.head => Err(ContinuityError::Diverged(format!(
            "buffer ring {}: the kernel's head is {head} where {} was brought",
            target.bgid, target.head
        ))),
        _ => Ok(()),
    }
}
