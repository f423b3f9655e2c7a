//! The `settings` scenario's registrations: files and buffers registered
//! with tags (`IORING_REGISTER_FILES2`, `IORING_REGISTER_BUFFERS2`), a file
//! allocation range, io-wq worker limits and NAPI busy polling where the
//! kernel has it (6.9+), and how a scenario describes them.

use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

use ringplan_kernel::abi::settings as abi;
use rustix::io::Errno;
use rustix::io_uring::{io_uring_register, IoringRegisterOp};
use serde_json::{json, Value};

use crate::ring::{
    fd_path, AnonymousMapping, FileSlot, RegisterIovec, ScenarioRing, ScenarioSettings,
};
use crate::ScenarioError;

/// A scenario ring's settings under the keys the image's JSON view has
/// for them.
pub(crate) fn describe(settings: &ScenarioSettings) -> Value {
    let tags = |tags: &[(u32, u64)]| {
        tags.iter()
            .map(|(slot, tag)| json!({"index": slot, "tag": tag}))
            .collect::<Vec<_>>()
    };
    json!({
        "file_alloc_range": settings.file_alloc_range.map(|(start, len)| json!({"start": start, "len": len})),
        "iowq_max_workers": settings.iowq_max_workers.map(|(bounded, unbounded)| json!({"bounded": bounded, "unbounded": unbounded})),
        "napi": settings.napi.map(|(busy_poll_us, prefer)| match &settings.napi_static_ids {
            Some(ids) => json!({"busy_poll_us": busy_poll_us, "prefer_busy_poll": prefer, "tracking": "static", "static_ids": ids}),
            None => json!({"busy_poll_us": busy_poll_us, "prefer_busy_poll": prefer, "tracking": "dynamic"}),
        }),
        "napi_missing": settings.napi_missing,
        "file_tags": tags(&settings.file_tags),
        "buffer_tags": tags(&settings.buffer_tags),
        "wait_region": settings.wait_region.as_ref().map(|memory| json!({
            "len": memory.len,
            "addr": memory.addr,
            "kernel_memory": false,
        })),
        "wait_region_missing": settings.wait_region_missing,
        "iowq_affinity": settings.iowq_affinity.as_ref().map(|(cpus, tid)| json!({"cpus": cpus, "tid": tid})),
        "iowq_affinity_missing": settings.iowq_affinity_missing,
    })
}

impl ScenarioRing {
    /// `io_uring_register` of `opcode` with `arg`'s bytes and `count`.
    fn register_bytes(
        &self,
        opcode: IoringRegisterOp,
        arg: &mut [u8],
        count: u32,
    ) -> Result<u32, Errno> {
        // SAFETY: `arg` is the opcode's argument as the uapi lays it out,
        // read (and for some opcodes written back) during the call only;
        // any pointers inside it point at memory the caller keeps alive
        // across the call.
        unsafe {
            io_uring_register(
                self.fd().map_err(|_| Errno::BADF)?,
                opcode,
                arg.as_mut_ptr().cast(),
                count,
            )
        }
    }

    /// `IORING_REGISTER_FILES2`: `slots` (`None` = empty) with one tag per
    /// slot (0 = none; the kernel refuses a tag on an empty slot).
    pub(crate) fn register_files_tagged(
        &mut self,
        slots: &[(Option<BorrowedFd<'_>>, u64)],
    ) -> Result<(), ScenarioError> {
        let fds: Vec<RawFd> = slots
            .iter()
            .map(|(slot, _)| slot.map_or(-1, |fd| fd.as_raw_fd()))
            .collect();
        let tags: Vec<u64> = slots.iter().map(|(_, tag)| *tag).collect();
        let described = slots
            .iter()
            .map(|(slot, _)| {
                slot.map(|fd| {
                    Ok(FileSlot {
                        fd: fd.as_raw_fd(),
                        path: fd_path(fd.as_raw_fd())?,
                    })
                })
                .transpose()
            })
            .collect::<Result<Vec<_>, ScenarioError>>()?;
        let nr = u32::try_from(fds.len()).unwrap_or(u32::MAX);
        let mut arg = abi::rsrc_register(nr, fds.as_ptr() as u64, tags.as_ptr() as u64);
        self.register_bytes(
            IoringRegisterOp::RegisterFiles2,
            &mut arg,
            abi::RSRC_REGISTER_SIZE as u32,
        )
        .map_err(|errno| self.settings_error("IORING_REGISTER_FILES2", errno))?;
        self.files = described;
        self.settings.file_tags = tagged(&tags);
        Ok(())
    }

    /// `IORING_REGISTER_BUFFERS2`: `iovecs` with one tag per slot.
    ///
    /// # Safety
    /// As [`ScenarioRing::register_buffers`]: each non-empty iovec's memory
    /// stays mapped while the ring lives.
    pub(crate) unsafe fn register_buffers_tagged(
        &mut self,
        iovecs: &[RegisterIovec],
        tags: &[u64],
    ) -> Result<(), ScenarioError> {
        let nr = u32::try_from(iovecs.len()).unwrap_or(u32::MAX);
        let mut arg = abi::rsrc_register(nr, iovecs.as_ptr() as u64, tags.as_ptr() as u64);
        self.register_bytes(
            IoringRegisterOp::RegisterBuffers2,
            &mut arg,
            abi::RSRC_REGISTER_SIZE as u32,
        )
        .map_err(|errno| self.settings_error("IORING_REGISTER_BUFFERS2", errno))?;
        self.buffers = iovecs
            .iter()
            .map(|iovec| (!iovec.base.is_null()).then_some((iovec.base as u64, iovec.len as u64)))
            .collect();
        self.settings.buffer_tags = tagged(tags);
        Ok(())
    }

    /// `IORING_REGISTER_FILE_ALLOC_RANGE`.
    pub(crate) fn set_file_alloc_range(
        &mut self,
        start: u32,
        len: u32,
    ) -> Result<(), ScenarioError> {
        let mut arg = abi::file_index_range(start, len);
        self.register_bytes(IoringRegisterOp::RegisterFileAllocRange, &mut arg, 0)
            .map_err(|errno| self.settings_error("IORING_REGISTER_FILE_ALLOC_RANGE", errno))?;
        self.settings.file_alloc_range = Some((start, len));
        Ok(())
    }

    /// `IORING_REGISTER_IOWQ_MAX_WORKERS`.
    pub(crate) fn set_iowq_max_workers(
        &mut self,
        bounded: u32,
        unbounded: u32,
    ) -> Result<(), ScenarioError> {
        let mut arg = abi::iowq_max_workers(bounded, unbounded);
        self.register_bytes(IoringRegisterOp::RegisterIowqMaxWorkers, &mut arg, 2)
            .map_err(|errno| self.settings_error("IORING_REGISTER_IOWQ_MAX_WORKERS", errno))?;
        self.settings.iowq_max_workers = Some((bounded, unbounded));
        Ok(())
    }

    /// `IORING_REGISTER_NAPI` with dynamic tracking. A kernel without
    /// NAPI (before 6.9: EINVAL, an opcode it does not know; without
    /// `CONFIG_NET_RX_BUSY_POLL`: EOPNOTSUPP) is noted, not an error.
    pub(crate) fn register_napi(
        &mut self,
        busy_poll_us: u32,
        prefer: bool,
    ) -> Result<(), ScenarioError> {
        let mut arg = abi::napi(busy_poll_us, prefer, abi::NAPI_TRACKING_DYNAMIC);
        match self.register_bytes(IoringRegisterOp::RegisterNapi, &mut arg, 1) {
            Ok(_) => {
                self.settings.napi = Some((busy_poll_us, prefer));
                Ok(())
            }
            Err(errno) if errno == Errno::INVAL || errno == Errno::OPNOTSUPP => {
                self.settings.napi_missing = Some(format!(
                    "IORING_REGISTER_NAPI: {errno} (the kernel has no NAPI busy polling for io_uring: 6.9+ with CONFIG_NET_RX_BUSY_POLL)"
                ));
                Ok(())
            }
            Err(errno) => Err(self.settings_error("IORING_REGISTER_NAPI", errno)),
        }
    }

    /// `IORING_REGISTER_NAPI` with static tracking, then each of `ids`
    /// added (`IO_URING_NAPI_STATIC_ADD_ID`), in order. A kernel without
    /// static tracking (before 6.13: EINVAL; without NAPI: EOPNOTSUPP) is
    /// noted, not an error.
    pub(crate) fn register_napi_static(
        &mut self,
        busy_poll_us: u32,
        ids: &[u32],
    ) -> Result<(), ScenarioError> {
        let mut arg = abi::napi(busy_poll_us, false, abi::NAPI_TRACKING_STATIC);
        match self.register_bytes(IoringRegisterOp::RegisterNapi, &mut arg, 1) {
            Ok(_) => {}
            Err(errno) if errno == Errno::INVAL || errno == Errno::OPNOTSUPP => {
                self.settings.napi_missing = Some(format!(
                    "IORING_REGISTER_NAPI with static tracking: {errno} (6.13+ with CONFIG_NET_RX_BUSY_POLL)"
                ));
                return Ok(());
            }
            Err(errno) => return Err(self.settings_error("IORING_REGISTER_NAPI", errno)),
        }
        for &id in ids {
            let mut arg = abi::napi_static_add(id);
            self.register_bytes(IoringRegisterOp::RegisterNapi, &mut arg, 1)
                .map_err(|errno| {
                    self.settings_error("IORING_REGISTER_NAPI (IO_URING_NAPI_STATIC_ADD_ID)", errno)
                })?;
        }
        self.settings.napi = Some((busy_poll_us, false));
        self.settings.napi_static_ids = Some(ids.to_vec());
        Ok(())
    }

    /// `IORING_REGISTER_MEM_REGION` with `IORING_MEM_REGION_REG_WAIT_ARG`
    /// on `len` bytes of new memory of the program's (the ring must be
    /// `R_DISABLED`). A kernel without it (before 6.13: `EINVAL`, an opcode
    /// it does not know) is noted, not an error.
    pub(crate) fn register_wait_region(&mut self, len: usize) -> Result<(), ScenarioError> {
        let memory = AnonymousMapping::new(len, "wait region")?;
        let desc = abi::user_region_desc(memory.addr as u64, len as u64);
        let reg = abi::mem_region_reg(
            desc.as_ptr() as u64,
            u64::from(abi::IORING_MEM_REGION_REG_WAIT_ARG),
        );
        let ring = self.fd()?.as_raw_fd();
        // SAFETY: io_uring_register(ring, IORING_REGISTER_MEM_REGION, reg,
        // 1): `reg` points at `desc`, which names `memory`; the kernel reads
        // both (and writes `desc` back) during the call and pins the memory,
        // which stays mapped while the ring lives (kept in `self.settings`,
        // dropped after the ring's fd).
        let result = unsafe {
            libc::syscall(
                libc::SYS_io_uring_register,
                ring,
                abi::IORING_REGISTER_MEM_REGION,
                reg.as_ptr(),
                1,
            )
        };
        if result < 0 {
            let errno = Errno::from_raw_os_error(
                std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
            );
            if errno == Errno::INVAL {
                self.settings.wait_region_missing = Some(format!(
                    "IORING_REGISTER_MEM_REGION: {errno} (registered wait regions are Linux 6.13+)"
                ));
                return Ok(());
            }
            return Err(self.settings_error("IORING_REGISTER_MEM_REGION", errno));
        }
        self.settings.wait_region = Some(memory);
        Ok(())
    }

    /// `IORING_REGISTER_IOWQ_AFF` of `cpus`, which go to the calling
    /// thread's io-wq, or with `SQPOLL` to the SQ thread's where the kernel
    /// sends them there (6.6+, `io_sqpoll_wq_cpu_affinity`). An SQPOLL ring
    /// on an older kernel is noted, not registered: the mask would land on
    /// the caller's io-wq, not the one the ring's work goes to.
    pub(crate) fn set_iowq_affinity(&mut self, cpus: &[u32]) -> Result<(), ScenarioError> {
        let sqpoll = self
            .flags
            .contains(rustix::io_uring::IoringSetupFlags::SQPOLL);
        if sqpoll && !ringplan_kernel::probe::sqpoll_iowq_affinity() {
            self.settings.iowq_affinity_missing = Some(
                "this kernel registers an SQPOLL ring's io-wq affinity on the caller's io-wq, not the SQ thread's (before 6.6)"
                    .to_owned(),
            );
            return Ok(());
        }
        let mut arg = ringplan_kernel::abi::iowq_affinity::mask_bytes(cpus);
        let len = u32::try_from(arg.len()).unwrap_or(u32::MAX);
        self.register_bytes(IoringRegisterOp::RegisterIowqAff, &mut arg, len)
            .map_err(|errno| self.settings_error("IORING_REGISTER_IOWQ_AFF", errno))?;
        let tid = (!sqpoll).then(|| rustix::thread::gettid().as_raw_nonzero().get() as u32);
        self.settings.iowq_affinity = Some((cpus.to_vec(), tid));
        Ok(())
    }

    fn settings_error(&self, opcode: &str, errno: Errno) -> ScenarioError {
        ScenarioError::syscall(
            format!("io_uring_register({}, {opcode})", self.fd_number),
            errno,
        )
    }
}

/// The non-zero tags of a per-slot tag array, by slot.
fn tagged(tags: &[u64]) -> Vec<(u32, u64)> {
    tags.iter()
        .enumerate()
        .filter(|(_, tag)| **tag != 0)
        .map(|(slot, tag)| (u32::try_from(slot).unwrap_or(u32::MAX), *tag))
        .collect()
}
