//! One io_uring instance set up and mapped the way a real program does it,
//! and the registrations the scenarios make on it.
//!
//! Everything here is a thin, typed layer over `io_uring_setup`,
//! `io_uring_register` and `mmap` (through rustix); it remembers what it did
//! so that [`crate::Built::description`] can say exactly what the kernel
//! holds.

use std::ffi::c_void;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::ptr;
use std::time::{Duration, Instant};

use rustix::io_uring::{
    io_uring_cqe, io_uring_params, io_uring_register, io_uring_setup, io_uring_sqe,
    IoringFeatureFlags, IoringRegisterOp, IoringSetupFlags,
};
use rustix::mm::{MapFlags, ProtFlags};

use ringplan_image::RingRegion;
use ringplan_kernel::procfs::{self, Process};

use crate::ScenarioError;

/// How long a new SQ thread may take to run for the first time.
const SQ_THREAD_START_TIMEOUT: Duration = Duration::from_secs(5);

/// What to pass to `io_uring_setup`. The flags are given in full; the
/// optional fields only fill the matching `io_uring_params` members.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RingRequest<'fd> {
    pub sq_entries: u32,
    pub flags: IoringSetupFlags,
    /// `params.cq_entries`, read by the kernel only with `CQSIZE`.
    pub cq_entries: u32,
    /// `params.sq_thread_cpu`, read only with `SQ_AFF`.
    pub sq_thread_cpu: u32,
    /// `params.sq_thread_idle` in milliseconds, read only with `SQPOLL`.
    pub sq_thread_idle_ms: u32,
    /// `params.wq_fd`, read only with `ATTACH_WQ`.
    pub attach_to: Option<BorrowedFd<'fd>>,
}

impl RingRequest<'_> {
    /// A ring with no setup flags.
    pub(crate) fn plain(sq_entries: u32) -> Self {
        RingRequest {
            sq_entries,
            flags: IoringSetupFlags::empty(),
            cq_entries: 0,
            sq_thread_cpu: 0,
            sq_thread_idle_ms: 0,
            attach_to: None,
        }
    }

    /// A ring with its own SQ thread, idling after `sq_thread_idle_ms`.
    pub(crate) fn sqpoll(sq_entries: u32, sq_thread_idle_ms: u32) -> Self {
        RingRequest {
            flags: IoringSetupFlags::SQPOLL,
            sq_thread_idle_ms,
            ..RingRequest::plain(sq_entries)
        }
    }
}

impl<'fd> RingRequest<'fd> {
    /// The same ring, attached (`IORING_SETUP_ATTACH_WQ`) to `parent`.
    pub(crate) fn attached_to(self, parent: BorrowedFd<'fd>) -> Self {
        RingRequest {
            flags: self.flags | IoringSetupFlags::ATTACH_WQ,
            attach_to: Some(parent),
            ..self
        }
    }
}

/// A shared mapping of one ring region, unmapped on drop. The address is kept
/// as an integer so that a [`crate::Built`] can move between threads.
#[derive(Debug)]
pub(crate) struct RegionMapping {
    pub region: RingRegion,
    pub addr: usize,
    pub len: usize,
}

impl Drop for RegionMapping {
    fn drop(&mut self) {
        // SAFETY: `addr`/`len` is a mapping this struct created and nothing
        // else refers to it (the scenarios never read or write ring memory).
        // A failure cannot be reported from drop and leaves only a mapping.
        let _ = unsafe { rustix::mm::munmap(self.addr as *mut c_void, self.len) };
    }
}

/// One registered-file slot as the scenario filled it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileSlot {
    /// The fd number passed to `IORING_REGISTER_FILES`.
    pub fd: RawFd,
    /// `readlink /proc/self/fd/FD` at registration time.
    pub path: String,
}

/// The registered eventfd of a ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EventfdRegistration {
    pub fd: RawFd,
    pub is_async: bool,
}

/// A ring the scenario created, with what it registered on it.
#[derive(Debug)]
pub(crate) struct ScenarioRing {
    /// Unmapped before the fd closes (field order is drop order).
    pub mappings: Vec<RegionMapping>,
    /// `None` once the scenario closed the ring's fd.
    pub fd: Option<OwnedFd>,
    /// Extra fds from `dup` (not close-on-exec, as `dup` makes them).
    pub dup_fds: Vec<OwnedFd>,
    /// The fd number `io_uring_setup` returned (kept after a close).
    pub fd_number: RawFd,
    /// The flags as passed (the kernel keeps them as given).
    pub flags: IoringSetupFlags,
    /// Sizes as the kernel returned them in `io_uring_params`.
    pub sq_entries: u32,
    pub cq_entries: u32,
    pub features: IoringFeatureFlags,
    pub sq_thread_cpu: Option<u32>,
    pub sq_thread_idle_ms: Option<u32>,
    pub wq_fd: Option<RawFd>,
    /// The fd number of the ring whose setup created the SQ thread this ring
    /// uses; `None` without SQPOLL.
    pub sq_group: Option<RawFd>,
    pub eventfd: Option<EventfdRegistration>,
    /// The registered file table, one entry per slot.
    pub files: Vec<Option<FileSlot>>,
    /// The registered buffer table as `(addr, len)`, one entry per slot.
    pub buffers: Vec<Option<(u64, u64)>>,
    /// The ids of the personalities registered and not unregistered, in
    /// ascending order, and the id the kernel tries next.
    pub personalities: Vec<u32>,
    pub personality_next: u32,
    /// What `IORING_REGISTER_RESTRICTIONS` registered, if anything.
    pub restrictions: Option<ScenarioRestrictions>,
    /// Where the SQ and CQ heads, tails, masks, the SQ array and the CQEs
    /// are in the ring's memory (from `io_uring_params`).
    pub queue_offsets: QueueOffsets,
    /// The buffer rings registered, ascending bgid, with their memory.
    pub pbuf_rings: Vec<ScenarioPbufRing>,
    /// Legacy buffer groups (`IORING_OP_PROVIDE_BUFFERS`), in the order
    /// first provided.
    pub legacy_groups: Vec<ScenarioLegacyGroup>,
    /// The registered ring-fd slots that hold this ring: (tid, offset).
    pub registered_ring_fds: Vec<(u32, u32)>,
    /// What the scenario registered beyond the tables (`settings`).
    pub settings: ScenarioSettings,
}

/// A legacy buffer group the scenario provided to.
#[derive(Debug)]
pub struct ScenarioLegacyGroup {
    pub bgid: u16,
    /// What the kernel holds: (addr, len, bid) in its list order.
    pub buffers: Vec<(u64, u32, u16)>,
    /// The buffers' memory, one mapping per provide.
    pub memory: Vec<AnonymousMapping>,
}

/// What a scenario registered beyond the tables, as the image's
/// `settings` records it.
#[derive(Debug, Default)]
pub(crate) struct ScenarioSettings {
    pub file_alloc_range: Option<(u32, u32)>,
    pub iowq_max_workers: Option<(u32, u32)>,
    /// busy_poll_us, prefer_busy_poll; `None` also where the kernel has no
    /// NAPI (`napi_missing` then says why).
    pub napi: Option<(u32, bool)>,
    pub napi_missing: Option<String>,
    /// With static NAPI tracking: the ids added, in order.
    pub napi_static_ids: Option<Vec<u32>>,
    /// Non-zero tags by slot.
    pub file_tags: Vec<(u32, u64)>,
    pub buffer_tags: Vec<(u32, u64)>,
    /// The memory of a registered wait region (kept until the ring goes),
    /// or why the kernel has none (before 6.13).
    pub wait_region: Option<AnonymousMapping>,
    pub wait_region_missing: Option<String>,
    /// The io-wq CPUs registered (`IORING_REGISTER_IOWQ_AFF`) and whose
    /// io-wq they went to (a tid; `None`: the SQ thread's), or why not.
    pub iowq_affinity: Option<(Vec<u32>, Option<u32>)>,
    pub iowq_affinity_missing: Option<String>,
}

/// Offsets in a ring's mapped memory (`sq_off`, `cq_off`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueueOffsets {
    sq_tail: u32,
    sq_mask: u32,
    sq_array: u32,
    cq_head: u32,
    cq_tail: u32,
    cq_mask: u32,
    cqes: u32,
}

/// A buffer ring the scenario registered on anonymous memory of its own,
/// with the buffers it provided through it (both unmapped when dropped:
/// the kernel keeps the ring's pages pinned until the ring goes).
#[derive(Debug)]
pub(crate) struct ScenarioPbufRing {
    pub bgid: u16,
    pub entries: u32,
    /// The kernel's head: buffers consumed.
    pub head: u16,
    pub memory: AnonymousMapping,
    pub buffers: Option<AnonymousMapping>,
    /// The kernel allocated the memory (`IOU_PBUF_RING_MMAP`); `memory`
    /// is then the program's mapping of it.
    pub kernel_memory: bool,
}

/// Private anonymous memory, unmapped when dropped.
#[derive(Debug)]
pub(crate) struct AnonymousMapping {
    pub addr: usize,
    pub len: usize,
}

impl AnonymousMapping {
    pub(crate) fn new(len: usize, context: &str) -> Result<AnonymousMapping, ScenarioError> {
        // SAFETY: a new private anonymous mapping that only this struct
        // refers to.
        let addr = unsafe {
            rustix::mm::mmap_anonymous(
                ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE | MapFlags::POPULATE,
            )
        }
        .map_err(|errno| ScenarioError::syscall(format!("mmap ({context})"), errno))?;
        Ok(AnonymousMapping {
            addr: addr as usize,
            len,
        })
    }
}

impl Drop for AnonymousMapping {
    fn drop(&mut self) {
        // SAFETY: `addr`/`len` is a mapping this struct created; what the
        // kernel pinned of it stays pinned until released there.
        let _ = unsafe { rustix::mm::munmap(self.addr as *mut c_void, self.len) };
    }
}

/// Restrictions as a scenario registers them: allowed register opcodes,
/// allowed SQE opcodes, SQE flags allowed and required.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScenarioRestrictions {
    pub register_ops: Vec<u8>,
    pub sqe_ops: Vec<u8>,
    pub sqe_flags_allowed: u8,
    pub sqe_flags_required: u8,
}

/// `struct iovec` for `IORING_REGISTER_BUFFERS`. `std::io::IoSlice` has the
/// same layout but cannot hold the NULL base an empty slot needs (the kernel
/// accepts `{NULL, 0}` and refuses any other zero-length iovec).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct RegisterIovec {
    pub base: *mut c_void,
    pub len: usize,
}

impl RegisterIovec {
    pub(crate) const EMPTY: RegisterIovec = RegisterIovec {
        base: ptr::null_mut(),
        len: 0,
    };
}

impl ScenarioRing {
    /// Sets up a ring as `request` says and maps its regions.
    pub(crate) fn set_up(
        request: &RingRequest<'_>,
        context: &str,
    ) -> Result<ScenarioRing, ScenarioError> {
        let mut params = io_uring_params::default();
        params.flags = request.flags;
        params.cq_entries = request.cq_entries;
        params.sq_thread_cpu = request.sq_thread_cpu;
        params.sq_thread_idle = request.sq_thread_idle_ms;
        params.wq_fd = request.attach_to.map_or(0, |parent| parent.as_raw_fd());
        // SAFETY: `params` is fully initialized, and when ATTACH_WQ is set,
        // `wq_fd` is an open ring fd borrowed for the duration of the call.
        let fd = unsafe { io_uring_setup(request.sq_entries, &mut params) }.map_err(|errno| {
            ScenarioError::syscall(format!("io_uring_setup ({context})"), errno)
        })?;
        let mappings = map_regions(&fd, &params, context)?;
        let queue_offsets = QueueOffsets {
            sq_tail: params.sq_off.tail,
            sq_mask: params.sq_off.ring_mask,
            sq_array: params.sq_off.array,
            cq_head: params.cq_off.head,
            cq_tail: params.cq_off.tail,
            cq_mask: params.cq_off.ring_mask,
            cqes: params.cq_off.cqes,
        };
        let sqpoll = request.flags.contains(IoringSetupFlags::SQPOLL);
        Ok(ScenarioRing {
            mappings,
            fd_number: fd.as_raw_fd(),
            fd: Some(fd),
            dup_fds: Vec::new(),
            flags: request.flags,
            sq_entries: params.sq_entries,
            cq_entries: params.cq_entries,
            features: params.features,
            sq_thread_cpu: request
                .flags
                .contains(IoringSetupFlags::SQ_AFF)
                .then_some(request.sq_thread_cpu),
            sq_thread_idle_ms: sqpoll.then_some(request.sq_thread_idle_ms),
            wq_fd: request.attach_to.map(|parent| parent.as_raw_fd()),
            sq_group: None,
            eventfd: None,
            files: Vec::new(),
            buffers: Vec::new(),
            personalities: Vec::new(),
            personality_next: 0,
            queue_offsets,
            pbuf_rings: Vec::new(),
            legacy_groups: Vec::new(),
            restrictions: None,
            settings: Default::default(),
            registered_ring_fds: Vec::new(),
        })
    }

    /// `IORING_REGISTER_RESTRICTIONS` on an `R_DISABLED` ring: one
    /// `struct io_uring_restriction` (16 bytes: `u16 opcode`, the `u8`
    /// operand, padding) per allowed opcode and per flag set.
    pub(crate) fn register_restrictions(
        &mut self,
        restrictions: ScenarioRestrictions,
    ) -> Result<(), ScenarioError> {
        let (bytes, entries) = ringplan_kernel::abi::restriction::encode(
            &restrictions.register_ops,
            &restrictions.sqe_ops,
            restrictions.sqe_flags_allowed,
            restrictions.sqe_flags_required,
        );
        let count = u32::try_from(entries).unwrap_or(u32::MAX);
        // SAFETY: `count` restriction entries laid out as the uapi's
        // struct, read by the kernel during the call only.
        unsafe {
            io_uring_register(
                self.fd()?,
                IoringRegisterOp::RegisterRestrictions,
                bytes.as_ptr().cast(),
                count,
            )
        }
        .map_err(|errno| self.register_error("IORING_REGISTER_RESTRICTIONS", errno))?;
        self.restrictions = Some(restrictions);
        Ok(())
    }

    /// `IORING_REGISTER_ENABLE_RINGS`: the kernel clears `R_DISABLED`.
    pub(crate) fn enable(&mut self) -> Result<(), ScenarioError> {
        // SAFETY: the opcode takes no argument (NULL, 0).
        unsafe {
            io_uring_register(
                self.fd()?,
                IoringRegisterOp::RegisterEnableRings,
                ptr::null(),
                0,
            )
        }
        .map_err(|errno| self.register_error("IORING_REGISTER_ENABLE_RINGS", errno))?;
        self.flags.remove(IoringSetupFlags::R_DISABLED);
        Ok(())
    }

    /// `IORING_REGISTER_PERSONALITY`: the calling thread's credentials
    /// under the id the kernel gives, which is returned.
    pub(crate) fn register_personality(&mut self) -> Result<u32, ScenarioError> {
        // SAFETY: the opcode takes no argument (NULL, 0).
        let id = unsafe {
            io_uring_register(
                self.fd()?,
                IoringRegisterOp::RegisterPersonality,
                ptr::null(),
                0,
            )
        }
        .map_err(|errno| self.register_error("IORING_REGISTER_PERSONALITY", errno))?;
        self.personalities.push(id);
        self.personalities.sort_unstable();
        self.personality_next = id + 1;
        Ok(id)
    }

    /// `IORING_UNREGISTER_PERSONALITY` of `id`.
    pub(crate) fn unregister_personality(&mut self, id: u32) -> Result<(), ScenarioError> {
        // SAFETY: the opcode takes no pointer; nr_args is the id.
        unsafe {
            io_uring_register(
                self.fd()?,
                IoringRegisterOp::UnregisterPersonality,
                ptr::null(),
                id,
            )
        }
        .map_err(|errno| self.register_error("IORING_UNREGISTER_PERSONALITY", errno))?;
        self.personalities.retain(|kept| *kept != id);
        Ok(())
    }

    /// `IORING_REGISTER_PBUF_RING` of `reg` (`call` names it in errors),
    /// whose memory (when it names the program's) the caller keeps mapped
    /// while the ring can see it.
    fn register_buf_reg(
        &self,
        reg: &ringplan_kernel::abi::pbuf::BufReg,
        call: &str,
    ) -> Result<(), ScenarioError> {
        // SAFETY: `reg` is a `struct io_uring_buf_reg` (nr_args 1), read
        // during the call; the memory it names is the caller's to keep.
        unsafe {
            io_uring_register(
                self.fd()?,
                IoringRegisterOp::RegisterPbufRing,
                ptr::from_ref(reg).cast(),
                1,
            )
        }
        .map(drop)
        .map_err(|errno| self.register_error(call, errno))
    }

    /// `IORING_REGISTER_PBUF_RING`: a buffer ring of `entries` for group
    /// `bgid` on fresh anonymous memory.
    pub(crate) fn register_pbuf_ring(
        &mut self,
        bgid: u16,
        entries: u32,
    ) -> Result<(), ScenarioError> {
        use ringplan_kernel::abi::{linux::PAGE_SIZE, pbuf};
        let len = (u64::from(entries) * pbuf::ENTRY_SIZE).next_multiple_of(PAGE_SIZE) as usize;
        let memory = AnonymousMapping::new(len, "buffer ring")?;
        let reg = pbuf::BufReg {
            ring_addr: memory.addr as u64,
            ring_entries: entries,
            bgid,
            ..pbuf::BufReg::default()
        };
        // `memory` stays mapped while the ring can see it (kept below).
        self.register_buf_reg(&reg, "IORING_REGISTER_PBUF_RING")?;
        self.pbuf_rings.push(ScenarioPbufRing {
            bgid,
            entries,
            head: 0,
            memory,
            buffers: None,
            kernel_memory: false,
        });
        self.pbuf_rings.sort_by_key(|ring| ring.bgid);
        Ok(())
    }

    /// `IORING_REGISTER_PBUF_RING` with `IOU_PBUF_RING_MMAP` (6.4+): the
    /// kernel allocates the ring's memory, which the scenario then maps
    /// (shared, at the kernel's mmap offset for `bgid`).
    pub(crate) fn register_kernel_pbuf_ring(
        &mut self,
        bgid: u16,
        entries: u32,
    ) -> Result<(), ScenarioError> {
        use ringplan_kernel::abi::{linux::PAGE_SIZE, pbuf};
        let reg = pbuf::BufReg {
            ring_entries: entries,
            bgid,
            flags: pbuf::IOU_PBUF_RING_MMAP,
            ..pbuf::BufReg::default()
        };
        // The kernel allocates the memory.
        self.register_buf_reg(&reg, "IORING_REGISTER_PBUF_RING (IOU_PBUF_RING_MMAP)")?;
        let len = (u64::from(entries) * pbuf::ENTRY_SIZE).next_multiple_of(PAGE_SIZE) as usize;
        // SAFETY: a new shared mapping of the ring's buffer ring memory,
        // which only the returned AnonymousMapping unmaps.
        let addr = unsafe {
            rustix::mm::mmap(
                ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED | MapFlags::POPULATE,
                self.fd()?,
                pbuf::mmap_offset(bgid),
            )
        }
        .map_err(|errno| ScenarioError::syscall(format!("mmap of buffer ring {bgid}"), errno))?;
        self.pbuf_rings.push(ScenarioPbufRing {
            bgid,
            entries,
            head: 0,
            memory: AnonymousMapping {
                addr: addr as usize,
                len,
            },
            buffers: None,
            kernel_memory: true,
        });
        self.pbuf_rings.sort_by_key(|ring| ring.bgid);
        Ok(())
    }

    /// Provides `provided` buffers of `BUFFER_LEN` bytes through buffer
    /// ring `bgid` (entries written, then the tail), and has the kernel
    /// consume `consumed` of them with reads of `/dev/zero` that select a
    /// buffer from the group: its head moves to `consumed`.
    pub(crate) fn provide_and_consume(
        &mut self,
        bgid: u16,
        provided: u16,
        consumed: u16,
    ) -> Result<(), ScenarioError> {
        use ringplan_kernel::abi::pbuf;
        use std::sync::atomic::{AtomicU16, Ordering};
        const BUFFER_LEN: u32 = 64;
        let context = format!("buffer ring {bgid}");
        let Some(ring) = self.pbuf_rings.iter().find(|ring| ring.bgid == bgid) else {
            return Err(ScenarioError::syscall(context, rustix::io::Errno::NOENT));
        };
        if u32::from(provided) > ring.entries || consumed > provided {
            return Err(ScenarioError::syscall(context, rustix::io::Errno::INVAL));
        }
        let buffers = AnonymousMapping::new(
            (usize::from(provided) * BUFFER_LEN as usize).max(1),
            &context,
        )?;
        let base = ring.memory.addr;
        // SAFETY: the buffer ring's entries lie in `memory` (`entries` * 16
        // bytes, at most `provided` written); the tail is naturally aligned.
        unsafe {
            for index in 0..usize::from(provided) {
                let entry = (base + index * pbuf::ENTRY_SIZE as usize) as *mut u8;
                entry
                    .cast::<u64>()
                    .write((buffers.addr + index * BUFFER_LEN as usize) as u64);
                entry.add(8).cast::<u32>().write(BUFFER_LEN);
                entry.add(12).cast::<u16>().write(index as u16);
            }
            // The tail is entry 0's last u16 (`struct io_uring_buf_ring`).
            (*((base + 14) as *const AtomicU16)).store(provided, Ordering::Release);
        }
        for res in self.read_zero_selecting(bgid, consumed, BUFFER_LEN, &context)? {
            if res != BUFFER_LEN as i32 {
                return Err(ScenarioError::syscall(
                    format!("a read selecting a buffer from group {bgid} ({context})"),
                    rustix::io::Errno::from_raw_os_error(-res.min(0)),
                ));
            }
        }
        let ring = self
            .pbuf_rings
            .iter_mut()
            .find(|ring| ring.bgid == bgid)
            .ok_or_else(|| ScenarioError::syscall(context.clone(), rustix::io::Errno::NOENT))?;
        ring.head = ring.head.wrapping_add(consumed);
        ring.buffers = Some(buffers);
        Ok(())
    }

    /// Adds `count` buffers of `len` bytes, bids from `first_bid`, to
    /// legacy group `bgid` with one `IORING_OP_PROVIDE_BUFFERS` (the kernel
    /// alone keeps them, at its list's tail).
    pub(crate) fn provide_legacy_buffers(
        &mut self,
        bgid: u16,
        first_bid: u16,
        count: u16,
        len: u32,
    ) -> Result<(), ScenarioError> {
        use ringplan_kernel::abi::continuity::sqe_offset;
        use ringplan_kernel::abi::legacy_pbuf::IORING_OP_PROVIDE_BUFFERS;
        use ringplan_kernel::abi::pbuf;
        let context = format!("legacy buffer group {bgid}");
        let buffers = AnonymousMapping::new(usize::from(count) * len as usize, &context)?;
        let mut sqe = [0u8; 64];
        sqe[sqe_offset::OPCODE] = IORING_OP_PROVIDE_BUFFERS;
        // fd: the number of buffers; addr: the first; len: each one's
        // length; off: the first buffer id.
        sqe[sqe_offset::FD..sqe_offset::FD + 4].copy_from_slice(&i32::from(count).to_ne_bytes());
        sqe[sqe_offset::ADDR..sqe_offset::ADDR + 8]
            .copy_from_slice(&(buffers.addr as u64).to_ne_bytes());
        sqe[sqe_offset::LEN..sqe_offset::LEN + 4].copy_from_slice(&len.to_ne_bytes());
        sqe[sqe_offset::OFF..sqe_offset::OFF + 8]
            .copy_from_slice(&u64::from(first_bid).to_ne_bytes());
        sqe[pbuf::SQE_BUF_GROUP_OFFSET..pbuf::SQE_BUF_GROUP_OFFSET + 2]
            .copy_from_slice(&bgid.to_ne_bytes());
        for res in self.submit_and_reap(&[sqe], &context)? {
            if res < 0 {
                return Err(ScenarioError::syscall(
                    format!("IORING_OP_PROVIDE_BUFFERS ({context})"),
                    rustix::io::Errno::from_raw_os_error(-res),
                ));
            }
        }
        let provided = (0..count).map(|i| {
            (
                (buffers.addr + usize::from(i) * len as usize) as u64,
                len,
                first_bid + i,
            )
        });
        match self
            .legacy_groups
            .iter_mut()
            .find(|group| group.bgid == bgid)
        {
            Some(group) => {
                group.buffers.extend(provided);
                group.memory.push(buffers);
            }
            None => self.legacy_groups.push(ScenarioLegacyGroup {
                bgid,
                buffers: provided.collect(),
                memory: vec![buffers],
            }),
        }
        Ok(())
    }

    /// Has the kernel take `count` buffers from legacy group `bgid` with
    /// reads of `/dev/zero` that select one each: it takes them from its
    /// list's head, in the order provided.
    pub(crate) fn consume_legacy_buffers(
        &mut self,
        bgid: u16,
        count: u16,
    ) -> Result<(), ScenarioError> {
        let context = format!("legacy buffer group {bgid}");
        let Some(group) = self.legacy_groups.iter().find(|group| group.bgid == bgid) else {
            return Err(ScenarioError::syscall(context, rustix::io::Errno::NOENT));
        };
        if usize::from(count) > group.buffers.len() {
            return Err(ScenarioError::syscall(context, rustix::io::Errno::INVAL));
        }
        for res in self.read_zero_selecting(bgid, count, 16, &context)? {
            if res < 0 {
                return Err(ScenarioError::syscall(
                    format!("a read selecting a buffer from legacy group {bgid}"),
                    rustix::io::Errno::from_raw_os_error(-res),
                ));
            }
        }
        if let Some(group) = self
            .legacy_groups
            .iter_mut()
            .find(|group| group.bgid == bgid)
        {
            group.buffers.drain(..usize::from(count));
        }
        Ok(())
    }

    /// Has the ring run `count` reads of `len` bytes from `/dev/zero`, each
    /// selecting a buffer from group `bgid` (`IOSQE_BUFFER_SELECT`), and
    /// reaps them: their `res`, in order.
    fn read_zero_selecting(
        &mut self,
        bgid: u16,
        count: u16,
        len: u32,
        context: &str,
    ) -> Result<Vec<i32>, ScenarioError> {
        use ringplan_kernel::abi::continuity::{sqe_offset, OP_READ};
        use ringplan_kernel::abi::pbuf;
        // Closed on return: the reads complete before.
        let zero = rustix::fs::open(
            "/dev/zero",
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|errno| ScenarioError::syscall(format!("open /dev/zero ({context})"), errno))?;
        let reads: Vec<[u8; 64]> = (0..count)
            .map(|read| {
                let mut sqe = [0u8; 64];
                sqe[sqe_offset::OPCODE] = OP_READ;
                sqe[sqe_offset::FLAGS] = pbuf::IOSQE_BUFFER_SELECT;
                sqe[sqe_offset::FD..sqe_offset::FD + 4]
                    .copy_from_slice(&zero.as_raw_fd().to_ne_bytes());
                sqe[sqe_offset::LEN..sqe_offset::LEN + 4].copy_from_slice(&len.to_ne_bytes());
                sqe[sqe_offset::USER_DATA..sqe_offset::USER_DATA + 8]
                    .copy_from_slice(&u64::from(read).to_ne_bytes());
                sqe[pbuf::SQE_BUF_GROUP_OFFSET..pbuf::SQE_BUF_GROUP_OFFSET + 2]
                    .copy_from_slice(&bgid.to_ne_bytes());
                sqe
            })
            .collect();
        self.submit_and_reap(&reads, context)
    }

    /// Submits one `IOSQE_ASYNC` NOP and reaps it: the kernel runs it on
    /// the submitting thread's io-wq (an SQPOLL ring's: the SQ thread's),
    /// whose new worker idles a few seconds (`IO_WORKER_IDLE_TIMEOUT`, 5 s)
    /// before it exits, on the io-wq's CPUs.
    pub(crate) fn punt_nop(&mut self, context: &str) -> Result<(), ScenarioError> {
        use ringplan_kernel::abi::{continuity::sqe_offset, iowq_affinity};
        let mut sqe = [0u8; 64];
        sqe[sqe_offset::OPCODE] = iowq_affinity::OP_NOP;
        sqe[sqe_offset::FLAGS] = iowq_affinity::IOSQE_ASYNC;
        self.submit_and_reap(&[sqe], context).map(drop)
    }

    /// Queues `sqes` (at most the SQ's size), submits them and waits for
    /// their completions, consumes those and returns their `res`.
    fn submit_and_reap(
        &mut self,
        sqes: &[[u8; 64]],
        context: &str,
    ) -> Result<Vec<i32>, ScenarioError> {
        use std::sync::atomic::{AtomicU32, Ordering};
        let offsets = self.queue_offsets;
        let sq_ring = self.region_addr(RingRegion::SqRing)?;
        let cq_ring = self.region_addr(RingRegion::CqRing).unwrap_or(sq_ring);
        let sqe_array = self.region_addr(RingRegion::Sqes)?;
        let fd = self.fd()?.as_raw_fd();
        if sqes.is_empty() {
            return Ok(Vec::new());
        }
        if sqes.len() > self.sq_entries as usize {
            return Err(ScenarioError::syscall(
                context.to_owned(),
                rustix::io::Errno::INVAL,
            ));
        }
        // SAFETY: the SQ tail, mask and array at the kernel's offsets in
        // the SQ mapping, and SQE slots below `sq_entries` in the SQE
        // mapping; the atomics are naturally aligned (the kernel's layout).
        unsafe {
            let sq_tail = &*((sq_ring + offsets.sq_tail as usize) as *const AtomicU32);
            let sq_mask = *((sq_ring + offsets.sq_mask as usize) as *const u32);
            let array = (sq_ring + offsets.sq_array as usize) as *mut u32;
            let mut tail = sq_tail.load(Ordering::Relaxed);
            for bytes in sqes {
                let slot = tail & sq_mask;
                std::ptr::copy_nonoverlapping(
                    bytes.as_ptr(),
                    (sqe_array + slot as usize * 64) as *mut u8,
                    64,
                );
                array.add(slot as usize).write(slot);
                tail = tail.wrapping_add(1);
            }
            sq_tail.store(tail, Ordering::Release);
        }
        let count = sqes.len() as u32;
        // SAFETY: no EXT_ARG: the kernel reads no argument.
        unsafe {
            rustix::io_uring::io_uring_enter(
                BorrowedFd::borrow_raw(fd),
                count,
                count,
                rustix::io_uring::IoringEnterFlags::GETEVENTS,
            )
        }
        .map_err(|errno| ScenarioError::syscall(format!("io_uring_enter ({context})"), errno))?;
        let mut results = Vec::with_capacity(sqes.len());
        // SAFETY: the CQ head/tail/mask and CQEs at the kernel's offsets in
        // the CQ mapping.
        unsafe {
            let cq_head = &*((cq_ring + offsets.cq_head as usize) as *const AtomicU32);
            let cq_tail = &*((cq_ring + offsets.cq_tail as usize) as *const AtomicU32);
            let cq_mask = *((cq_ring + offsets.cq_mask as usize) as *const u32);
            let tail = cq_tail.load(Ordering::Acquire);
            let mut head = cq_head.load(Ordering::Relaxed);
            while head != tail {
                let cqe =
                    (cq_ring + offsets.cqes as usize + (head & cq_mask) as usize * 16) as *const u8;
                results.push(cqe.add(8).cast::<i32>().read());
                head = head.wrapping_add(1);
            }
            cq_head.store(head, Ordering::Release);
        }
        Ok(results)
    }

    /// The address of the ring's mapping of `region`.
    fn region_addr(&self, region: RingRegion) -> Result<usize, ScenarioError> {
        self.mappings
            .iter()
            .find(|mapping| mapping.region == region)
            .map(|mapping| mapping.addr)
            .ok_or_else(|| {
                ScenarioError::syscall(
                    format!("no {} mapping", region.name()),
                    rustix::io::Errno::NOENT,
                )
            })
    }

    /// The ring's open fd; an error if the scenario already closed it.
    pub(crate) fn fd(&self) -> Result<BorrowedFd<'_>, ScenarioError> {
        self.fd
            .as_ref()
            .map(|fd| fd.as_fd())
            .ok_or(ScenarioError::RingAlreadyClosed { fd: self.fd_number })
    }

    /// `IORING_REGISTER_EVENTFD` or `IORING_REGISTER_EVENTFD_ASYNC`.
    pub(crate) fn register_eventfd(
        &mut self,
        eventfd: BorrowedFd<'_>,
        is_async: bool,
    ) -> Result<(), ScenarioError> {
        let (opcode, name) = if is_async {
            (
                IoringRegisterOp::RegisterEventfdAsync,
                "IORING_REGISTER_EVENTFD_ASYNC",
            )
        } else {
            (IoringRegisterOp::RegisterEventfd, "IORING_REGISTER_EVENTFD")
        };
        let eventfd_number: RawFd = eventfd.as_raw_fd();
        // SAFETY: the argument is one `int` holding an open eventfd, as the
        // opcode requires; the kernel only reads it during the call.
        unsafe { io_uring_register(self.fd()?, opcode, ptr::from_ref(&eventfd_number).cast(), 1) }
            .map_err(|errno| self.register_error(name, errno))?;
        self.eventfd = Some(EventfdRegistration {
            fd: eventfd_number,
            is_async,
        });
        Ok(())
    }

    /// `IORING_REGISTER_FILES` with `slots` (`None` = empty slot, passed as
    /// -1). Each occupied slot's path is read from `/proc/self/fd` first.
    pub(crate) fn register_files(
        &mut self,
        slots: &[Option<BorrowedFd<'_>>],
    ) -> Result<(), ScenarioError> {
        let table: Vec<RawFd> = slots
            .iter()
            .map(|slot| slot.map_or(-1, |fd| fd.as_raw_fd()))
            .collect();
        let described = slots
            .iter()
            .map(|slot| {
                slot.map(|fd| {
                    Ok(FileSlot {
                        fd: fd.as_raw_fd(),
                        path: fd_path(fd.as_raw_fd())?,
                    })
                })
                .transpose()
            })
            .collect::<Result<Vec<_>, ScenarioError>>()?;
        let count = table_len(table.len(), "file table")?;
        // SAFETY: `table` holds `count` ints, each an open fd or -1; the
        // kernel takes its own references during the call.
        unsafe {
            io_uring_register(
                self.fd()?,
                IoringRegisterOp::RegisterFiles,
                table.as_ptr().cast(),
                count,
            )
        }
        .map_err(|errno| self.register_error("IORING_REGISTER_FILES", errno))?;
        self.files = described;
        Ok(())
    }

    /// `IORING_REGISTER_BUFFERS` with `iovecs`.
    ///
    /// # Safety
    /// Each non-empty iovec must describe memory of this process that stays
    /// mapped for as long as anything may read or write through the ring
    /// (the scenarios never submit I/O, so: while the ring lives).
    pub(crate) unsafe fn register_buffers(
        &mut self,
        iovecs: &[RegisterIovec],
    ) -> Result<(), ScenarioError> {
        let count = table_len(iovecs.len(), "buffer table")?;
        // SAFETY: `iovecs` holds `count` iovecs; the caller vouches for the
        // memory they describe. The kernel pins the pages during the call.
        unsafe {
            io_uring_register(
                self.fd()?,
                IoringRegisterOp::RegisterBuffers,
                iovecs.as_ptr().cast(),
                count,
            )
        }
        .map_err(|errno| self.register_error("IORING_REGISTER_BUFFERS", errno))?;
        self.buffers = iovecs
            .iter()
            .map(|iovec| (!iovec.base.is_null()).then_some((iovec.base as u64, iovec.len as u64)))
            .collect();
        Ok(())
    }

    /// Waits until the SQ thread this ring created has run once. Until then
    /// it carries its creator's name and fdinfo shows the creator's thread
    /// id in `SqThread:`; both change when the thread first runs (it names
    /// itself `iou-sqp-...`). Waiting makes the announced state settled.
    pub(crate) fn wait_for_sq_thread(&self) -> Result<(), ScenarioError> {
        let deadline = Instant::now() + SQ_THREAD_START_TIMEOUT;
        loop {
            let text = procfs::fdinfo::read(Process::Current, self.fd_number).map_err(|error| {
                ScenarioError::Io {
                    path: error.path().to_owned(),
                    source: error.into_io_error(),
                }
            })?;
            // No `SqThread:` line means the ring's lock was taken: try again.
            let sq_thread = procfs::fdinfo::field(&text, "SqThread")
                .and_then(|value| std::str::from_utf8(value).ok()?.parse::<u32>().ok());
            let has_run = sq_thread
                .is_some_and(|thread| procfs::task::is_running_sq_thread(Process::Current, thread));
            if has_run {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(ScenarioError::SqThreadDidNotStart { fd: self.fd_number });
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Closes the ring's fd and unmaps its regions, so that nothing of the
    /// process holds the ring any more and the kernel tears it down.
    pub(crate) fn close_and_unmap(&mut self) {
        self.mappings.clear();
        self.dup_fds.clear();
        self.fd = None;
    }

    fn register_error(&self, opcode: &str, errno: rustix::io::Errno) -> ScenarioError {
        ScenarioError::syscall(
            format!("io_uring_register({}, {opcode})", self.fd_number),
            errno,
        )
    }
}

/// Maps the SQ ring, the CQ ring (unless the kernel has
/// `IORING_FEAT_SINGLE_MMAP`, where one mapping shows both) and the SQE
/// array, with the sizes liburing computes from the returned offsets.
fn map_regions(
    fd: &OwnedFd,
    params: &io_uring_params,
    context: &str,
) -> Result<Vec<RegionMapping>, ScenarioError> {
    let sq_ring_len = params.sq_off.array as usize + params.sq_entries as usize * size_of::<u32>();
    let cq_ring_len =
        params.cq_off.cqes as usize + params.cq_entries as usize * size_of::<io_uring_cqe>();
    let sqes_len = params.sq_entries as usize * size_of::<io_uring_sqe>();
    let mut mappings = Vec::with_capacity(3);
    if params.features.contains(IoringFeatureFlags::SINGLE_MMAP) {
        mappings.push(map_region(
            fd,
            RingRegion::SqRing,
            sq_ring_len.max(cq_ring_len),
            context,
        )?);
    } else {
        mappings.push(map_region(fd, RingRegion::SqRing, sq_ring_len, context)?);
        mappings.push(map_region(fd, RingRegion::CqRing, cq_ring_len, context)?);
    }
    mappings.push(map_region(fd, RingRegion::Sqes, sqes_len, context)?);
    Ok(mappings)
}

fn map_region(
    fd: &OwnedFd,
    region: RingRegion,
    len: usize,
    context: &str,
) -> Result<RegionMapping, ScenarioError> {
    let offset = region.mmap_offset();
    // SAFETY: a fresh shared mapping at an address the kernel picks; it
    // aliases no Rust object, and `RegionMapping` unmaps it exactly once.
    let addr = unsafe {
        rustix::mm::mmap(
            ptr::null_mut(),
            len,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::SHARED | MapFlags::POPULATE,
            fd,
            offset,
        )
    }
    .map_err(|errno| {
        ScenarioError::syscall(format!("mmap of {} ({context})", region.name()), errno)
    })?;
    Ok(RegionMapping {
        region,
        addr: addr as usize,
        len,
    })
}

/// What `/proc/self/fd/FD` links to, as the kernel prints it.
pub(crate) fn fd_path(fd: RawFd) -> Result<String, ScenarioError> {
    let link = format!("/proc/self/fd/{fd}");
    let target = std::fs::read_link(&link).map_err(|source| ScenarioError::Io {
        path: link.into(),
        source,
    })?;
    Ok(target.to_string_lossy().into_owned())
}

fn table_len(len: usize, what: &'static str) -> Result<u32, ScenarioError> {
    u32::try_from(len).map_err(|_| ScenarioError::TableTooLarge { what, len })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `RegisterIovec` must be laid out like the kernel's `struct iovec`,
    /// which `std::io::IoSlice` is documented to match on Unix.
    #[test]
    fn register_iovec_has_the_layout_of_struct_iovec() {
        assert_eq!(
            size_of::<RegisterIovec>(),
            size_of::<std::io::IoSlice<'_>>()
        );
        assert_eq!(
            std::mem::align_of::<RegisterIovec>(),
            std::mem::align_of::<std::io::IoSlice<'_>>()
        );
        assert_eq!(
            std::mem::offset_of!(RegisterIovec, len),
            size_of::<*mut c_void>()
        );
    }
}
