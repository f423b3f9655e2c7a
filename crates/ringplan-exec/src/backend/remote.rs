//! The run's syscalls inside another process: [`RemoteBackend`] runs each
//! one in one chosen thread of a [`RemoteProcess`] (for `execute_in`, the
//! target's main thread), with its pointer arguments in the scratch data
//! page (or, for arguments larger than a page, in a mapping made for the
//! call and unmapped after it).
//!
//! A syscall that fails answers its errno, as in this process. A failure
//! to drive the process at all (a ptrace error, the thread gone) is kept
//! ([`RemoteBackend::take_broken`]) and the call answers `EIO`, so the run
//! stops and undoes what it can; the caller reports the ptrace error.

use std::os::fd::{OwnedFd, RawFd};

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::{DupFlags, Errno};
use rustix::io_uring::{io_uring_params, IoringRegisterOp};
use rustix::mm::{MapFlags, ProtFlags};

use ringplan_kernel::procfs::mem::ProcessMemory;
use ringplan_kernel::procfs::Process;

use super::{Backend, TargetMemory};
use crate::remote::{EnterLoop, EnterLoopDone, RemoteError, RemoteProcess, SCRATCH_DATA_CAPACITY};

/// An fd the run created in the target process: its number there. It is
/// the target's: dropping this value closes nothing.
#[derive(Debug, PartialEq, Eq)]
pub struct RemoteFd(pub RawFd);

/// Syscalls in thread `tid` of a held process.
#[derive(Debug)]
pub struct RemoteBackend<'p> {
    process: &'p mut RemoteProcess,
    /// The thread syscalls run in unless `use_thread` chose another.
    main: u32,
    tid: u32,
    broken: Option<RemoteError>,
    /// A pidfd of the process, for `pidfd_getfd`, opened when first needed.
    pidfd: Option<OwnedFd>,
}

impl<'p> RemoteBackend<'p> {
    /// Runs syscalls in thread `tid` of `process` (a thread it holds).
    pub fn new(process: &'p mut RemoteProcess, tid: u32) -> RemoteBackend<'p> {
        RemoteBackend {
            process,
            main: tid,
            tid,
            broken: None,
            pidfd: None,
        }
    }

    /// The thread the syscalls run in.
    pub fn thread(&self) -> u32 {
        self.tid
    }

    /// The failure to drive the process that stopped the run, if one did.
    pub fn take_broken(&mut self) -> Option<RemoteError> {
        self.broken.take()
    }

    /// Runs syscall `nr`: its result, or its errno.
    fn call(&mut self, nr: i64, args: [u64; 6]) -> Result<u64, Errno> {
        if self.broken.is_some() {
            return Err(Errno::IO);
        }
        let nr = u64::try_from(nr).map_err(|_| Errno::NOSYS)?;
        match self.process.syscall(self.tid, nr, args) {
            // The kernel's -4095..-1 are errnos.
            Ok(result) if (-4095..0).contains(&result) => Err(Errno::from_raw_os_error(
                i32::try_from(-result).unwrap_or(5),
            )),
            Ok(result) => Ok(result as u64),
            Err(error) => {
                self.broken = Some(error);
                Err(Errno::IO)
            }
        }
    }

    /// Keeps a driving failure for the caller, answering `EIO`.
    fn broke(&mut self, error: RemoteError) -> Errno {
        self.broken = Some(error);
        Errno::IO
    }

    /// Puts `input` in the target's memory followed by `output_len` zero
    /// bytes, runs `call` with the address, and returns the call's result
    /// and the output bytes. The scratch page holds them when they fit;
    /// otherwise a mapping is made for the call and unmapped after it.
    fn with_memory(
        &mut self,
        input: &[u8],
        output_len: usize,
        call: impl FnOnce(&mut Self, u64) -> Result<u64, Errno>,
    ) -> Result<(u64, Vec<u8>), Errno> {
        let total = input.len() + output_len;
        let mut bytes = Vec::with_capacity(total);
        bytes.extend_from_slice(input);
        bytes.resize(total, 0);
        let temporary = if total <= SCRATCH_DATA_CAPACITY {
            None
        } else {
            Some(self.mmap(
                0,
                total,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE,
                None,
                0,
            )?)
        };
        let addr = match temporary {
            None => self.process.write_scratch(&bytes),
            Some(addr) => self
                .process
                .write_memory(addr as u64, &bytes)
                .map(|()| addr as u64),
        };
        let result = match addr {
            Ok(addr) => call(self, addr).and_then(|result| {
                let output = if output_len == 0 {
                    Vec::new()
                } else {
                    self.process
                        .read_memory(addr + input.len() as u64, output_len)
                        .map_err(|error| self.broke(error))?
                };
                Ok((result, output))
            }),
            Err(error) => Err(self.broke(error)),
        };
        if let Some(addr) = temporary {
            let _ = self.munmap(addr, total);
        }
        result
    }

    /// A path as the kernel reads it: its bytes and a NUL.
    fn c_path(path: &str) -> Result<Vec<u8>, Errno> {
        if path.as_bytes().contains(&0) {
            return Err(Errno::INVAL);
        }
        let mut bytes = path.as_bytes().to_vec();
        bytes.push(0);
        Ok(bytes)
    }

    /// `st_mode` out of a `struct stat` the kernel wrote.
    fn mode_of(stat: &[u8]) -> Result<u32, Errno> {
        let offset = std::mem::offset_of!(libc::stat, st_mode);
        stat.get(offset..offset + 4)
            .and_then(|bytes| bytes.try_into().ok())
            .map(u32::from_ne_bytes)
            .ok_or(Errno::IO)
    }

    fn number(result: u64) -> Result<RemoteFd, Errno> {
        RawFd::try_from(result).map(RemoteFd).map_err(|_| Errno::IO)
    }
}

/// The bytes of an `io_uring_params`, as the kernel reads them.
fn params_bytes(params: &io_uring_params) -> Vec<u8> {
    let len = std::mem::size_of::<io_uring_params>();
    // SAFETY: `io_uring_params` is a `repr(C)` struct of integers with no
    // padding the kernel does not also see; read as bytes for `len` bytes
    // while `params` is borrowed.
    unsafe { std::slice::from_raw_parts(std::ptr::from_ref(params).cast::<u8>(), len) }.to_vec()
}

impl Backend for RemoteBackend<'_> {
    type Fd = RemoteFd;
    const IN_THIS_PROCESS: bool = false;

    #[inline]
    fn number(fd: &RemoteFd) -> RawFd {
        fd.0
    }

    fn process(&self) -> Process {
        Process::Pid(self.process.pid())
    }

    fn adopt(&mut self, _fd: OwnedFd) -> Result<RemoteFd, Errno> {
        // Passing an fd of this process into another needs a unix socket
        // inside the target; preflight refuses supplied inputs until then.
        Err(Errno::NOTSUP)
    }

    fn eventfd(
        &mut self,
        initval: u32,
        flags: rustix::event::EventfdFlags,
    ) -> Result<RemoteFd, Errno> {
        let fd = self.call(
            libc::SYS_eventfd2,
            [u64::from(initval), u64::from(flags.bits()), 0, 0, 0, 0],
        )?;
        Self::number(fd)
    }

    fn write(&mut self, fd: RawFd, bytes: &[u8]) -> Result<usize, Errno> {
        let len = bytes.len() as u64;
        let (written, _) = self.with_memory(bytes, 0, |this, addr| {
            this.call(libc::SYS_write, [fd as u64, addr, len, 0, 0, 0])
        })?;
        usize::try_from(written).map_err(|_| Errno::IO)
    }

    fn open(&mut self, path: &str, flags: OFlags, mode: Mode) -> Result<RemoteFd, Errno> {
        let path = Self::c_path(path)?;
        let (fd, _) = self.with_memory(&path, 0, |this, addr| {
            this.call(
                libc::SYS_openat,
                [
                    libc::AT_FDCWD as u64,
                    addr,
                    u64::from(flags.bits()),
                    u64::from(mode.bits()),
                    0,
                    0,
                ],
            )
        })?;
        Self::number(fd)
    }

    fn stat_path_mode(&mut self, path: &str, flags: AtFlags) -> Result<u32, Errno> {
        let path = Self::c_path(path)?;
        let path_len = path.len() as u64;
        let (_, stat) =
            self.with_memory(&path, std::mem::size_of::<libc::stat>(), |this, addr| {
                this.call(
                    libc::SYS_newfstatat,
                    [
                        libc::AT_FDCWD as u64,
                        addr,
                        addr + path_len,
                        u64::from(flags.bits()),
                        0,
                        0,
                    ],
                )
            })?;
        Self::mode_of(&stat)
    }

    fn fstat_mode(&mut self, fd: RawFd) -> Result<u32, Errno> {
        let (_, stat) =
            self.with_memory(&[], std::mem::size_of::<libc::stat>(), |this, addr| {
                this.call(libc::SYS_fstat, [fd as u64, addr, 0, 0, 0, 0])
            })?;
        Self::mode_of(&stat)
    }

    fn fcntl_getfl(&mut self, fd: RawFd) -> Result<OFlags, Errno> {
        let flags = self.call(
            libc::SYS_fcntl,
            [fd as u64, libc::F_GETFL as u64, 0, 0, 0, 0],
        )?;
        Ok(OFlags::from_bits_retain(flags as u32))
    }

    fn fcntl_setfl(&mut self, fd: RawFd, flags: OFlags) -> Result<(), Errno> {
        self.call(
            libc::SYS_fcntl,
            [
                fd as u64,
                libc::F_SETFL as u64,
                u64::from(flags.bits()),
                0,
                0,
                0,
            ],
        )
        .map(drop)
    }

    fn lseek(&mut self, fd: RawFd, pos: u64) -> Result<(), Errno> {
        self.call(
            libc::SYS_lseek,
            [fd as u64, pos, libc::SEEK_SET as u64, 0, 0, 0],
        )
        .map(drop)
    }

    fn pipe(&mut self) -> Result<(RemoteFd, RemoteFd), Errno> {
        let (_, ends) = self.with_memory(&[], 8, |this, addr| {
            this.call(libc::SYS_pipe2, [addr, libc::O_CLOEXEC as u64, 0, 0, 0, 0])
        })?;
        let end = |range: std::ops::Range<usize>| {
            ends.get(range)
                .and_then(|bytes| bytes.try_into().ok())
                .map(i32::from_ne_bytes)
                .ok_or(Errno::IO)
        };
        Ok((RemoteFd(end(0..4)?), RemoteFd(end(4..8)?)))
    }

    fn io_uring_setup(
        &mut self,
        entries: u32,
        params: &mut io_uring_params,
    ) -> Result<RemoteFd, Errno> {
        let input = params_bytes(params);
        let mut written = Vec::new();
        let (fd, _) = self.with_memory(&input, 0, |this, addr| {
            let fd = this.call(
                libc::SYS_io_uring_setup,
                [u64::from(entries), addr, 0, 0, 0, 0],
            )?;
            written = this
                .process
                .read_memory(addr, input.len())
                .map_err(|error| this.broke(error))?;
            Ok(fd)
        })?;
        let fd = Self::number(fd)?;
        if written.len() == std::mem::size_of::<io_uring_params>() {
            // SAFETY: `written` holds exactly one `io_uring_params` as the
            // kernel filled it in; every bit pattern is valid for its
            // integer fields.
            *params = unsafe { std::ptr::read_unaligned(written.as_ptr().cast()) };
        }
        Ok(fd)
    }

    fn io_uring_register(
        &mut self,
        ring: RawFd,
        opcode: IoringRegisterOp,
        arg: &[u8],
        count: u32,
    ) -> Result<u32, Errno> {
        let call = |this: &mut Self, addr: u64| {
            this.call(
                libc::SYS_io_uring_register,
                [ring as u64, opcode as u64, addr, u64::from(count), 0, 0],
            )
        };
        // No argument: NULL, as the personality opcodes require.
        let returned = if arg.is_empty() {
            call(self, 0)?
        } else {
            self.with_memory(arg, 0, call)?.0
        };
        u32::try_from(returned).map_err(|_| Errno::RANGE)
    }

    fn io_uring_register_tagged(
        &mut self,
        ring: RawFd,
        opcode: IoringRegisterOp,
        table: &[u8],
        tags: &[u8],
        nr: u32,
    ) -> Result<u32, Errno> {
        use ringplan_kernel::abi::settings::{rsrc_register, RSRC_REGISTER_SIZE};
        // The struct, then the table, then the tags, in one placement; the
        // struct's pointers are written once the placement's address is
        // known.
        let mut bytes = vec![0u8; RSRC_REGISTER_SIZE];
        bytes.extend_from_slice(table);
        bytes.extend_from_slice(tags);
        let table_len = table.len() as u64;
        let (returned, _) = self.with_memory(&bytes, 0, |this, addr| {
            let data = addr + RSRC_REGISTER_SIZE as u64;
            let rsrc = rsrc_register(nr, data, data + table_len);
            this.process
                .write_memory(addr, &rsrc)
                .map_err(|error| this.broke(error))?;
            this.call(
                libc::SYS_io_uring_register,
                [
                    ring as u64,
                    opcode as u64,
                    addr,
                    RSRC_REGISTER_SIZE as u64,
                    0,
                    0,
                ],
            )
        })?;
        u32::try_from(returned).map_err(|_| Errno::RANGE)
    }

    fn io_uring_register_wait_region(
        &mut self,
        ring: RawFd,
        addr: u64,
        len: u64,
    ) -> Result<(), Errno> {
        use ringplan_kernel::abi::settings::{
            mem_region_reg, user_region_desc, IORING_MEM_REGION_REG_WAIT_ARG,
            IORING_REGISTER_MEM_REGION, MEM_REGION_REG_SIZE,
        };
        // The reg, then the desc, in one placement; the reg's pointer is
        // written once the placement's address is known.
        let mut bytes = vec![0u8; MEM_REGION_REG_SIZE];
        bytes.extend_from_slice(&user_region_desc(addr, len));
        self.with_memory(&bytes, 0, |this, placed| {
            let reg = mem_region_reg(
                placed + MEM_REGION_REG_SIZE as u64,
                u64::from(IORING_MEM_REGION_REG_WAIT_ARG),
            );
            this.process
                .write_memory(placed, &reg)
                .map_err(|error| this.broke(error))?;
            this.call(
                libc::SYS_io_uring_register,
                [
                    ring as u64,
                    u64::from(IORING_REGISTER_MEM_REGION),
                    placed,
                    1,
                    0,
                    0,
                ],
            )
        })?;
        Ok(())
    }

    fn fcntl_dupfd_cloexec(&mut self, fd: RawFd, floor: RawFd) -> Result<RemoteFd, Errno> {
        let fd = self.call(
            libc::SYS_fcntl,
            [
                fd as u64,
                libc::F_DUPFD_CLOEXEC as u64,
                floor as u64,
                0,
                0,
                0,
            ],
        )?;
        Self::number(fd)
    }

    fn dup3(&mut self, source: RawFd, target: RawFd, flags: DupFlags) -> Result<RemoteFd, Errno> {
        let fd = self.call(
            libc::SYS_dup3,
            [
                source as u64,
                target as u64,
                u64::from(flags.bits()),
                0,
                0,
                0,
            ],
        )?;
        Self::number(fd)
    }

    fn close(&mut self, fd: RemoteFd) {
        let _ = self.call(libc::SYS_close, [fd.0 as u64, 0, 0, 0, 0, 0]);
    }

    fn receive_fd(&mut self, from_pid: u32, fd: RawFd) -> Result<RemoteFd, Errno> {
        let pidfd = self.call(libc::SYS_pidfd_open, [u64::from(from_pid), 0, 0, 0, 0, 0])?;
        let got = self.call(libc::SYS_pidfd_getfd, [pidfd, fd as u64, 0, 0, 0, 0]);
        let _ = self.call(libc::SYS_close, [pidfd, 0, 0, 0, 0, 0]);
        Self::number(got?)
    }

    fn mmap(
        &mut self,
        addr: usize,
        len: usize,
        prot: ProtFlags,
        flags: MapFlags,
        fd: Option<RawFd>,
        offset: u64,
    ) -> Result<usize, Errno> {
        let (flags, fd) = match fd {
            Some(fd) => (u64::from(flags.bits()), fd as u64),
            None => (
                u64::from(flags.bits()) | libc::MAP_ANONYMOUS as u64,
                u64::MAX,
            ),
        };
        let got = self.call(
            libc::SYS_mmap,
            [
                addr as u64,
                len as u64,
                u64::from(prot.bits()),
                flags,
                fd,
                offset,
            ],
        )?;
        usize::try_from(got).map_err(|_| Errno::IO)
    }

    fn munmap(&mut self, addr: usize, len: usize) -> Result<(), Errno> {
        self.call(libc::SYS_munmap, [addr as u64, len as u64, 0, 0, 0, 0])
            .map(drop)
    }

    fn io_uring_enter(
        &mut self,
        ring: RawFd,
        to_submit: u32,
        min_complete: u32,
        flags: u32,
    ) -> Result<u32, Errno> {
        let consumed = self.call(
            libc::SYS_io_uring_enter,
            [
                ring as u64,
                u64::from(to_submit),
                u64::from(min_complete),
                u64::from(flags),
                0,
                0,
            ],
        )?;
        u32::try_from(consumed).map_err(|_| Errno::IO)
    }

    fn io_uring_enter_loop(
        &mut self,
        enter_loop: &EnterLoop,
    ) -> Option<Result<EnterLoopDone, Errno>> {
        if self.broken.is_some() {
            return Some(Err(Errno::IO));
        }
        Some(
            self.process
                .run_enter_loop(self.tid, enter_loop)
                .map_err(|error| self.broke(error)),
        )
    }

    fn memfd_create(&mut self, name: &str) -> Result<RemoteFd, Errno> {
        let name = Self::c_path(name)?;
        let (fd, _) = self.with_memory(&name, 0, |this, addr| {
            this.call(
                libc::SYS_memfd_create,
                [addr, libc::MFD_CLOEXEC as u64, 0, 0, 0, 0],
            )
        })?;
        Self::number(fd)
    }

    fn ftruncate(&mut self, fd: RawFd, len: u64) -> Result<(), Errno> {
        self.call(libc::SYS_ftruncate, [fd as u64, len, 0, 0, 0, 0])
            .map(drop)
    }

    fn use_thread(&mut self, tid: Option<u32>) -> Result<(), Errno> {
        let tid = tid.unwrap_or(self.main);
        // Only a thread the process was attached with can run syscalls.
        if !self.process.threads().contains(&tid) {
            return Err(Errno::SRCH);
        }
        self.tid = tid;
        Ok(())
    }

    fn current_thread(&self) -> u32 {
        self.tid
    }

    fn memory(&self) -> Result<TargetMemory, Errno> {
        ProcessMemory::open_for_writing(Process::Pid(self.process.pid()))
            .map(TargetMemory::Process)
            .map_err(|_| Errno::IO)
    }

    fn copy_here(&mut self, fd: RawFd) -> Result<Option<OwnedFd>, Errno> {
        if self.pidfd.is_none() {
            let pid =
                rustix::process::Pid::from_raw(self.process.pid() as i32).ok_or(Errno::SRCH)?;
            self.pidfd = Some(rustix::process::pidfd_open(
                pid,
                rustix::process::PidfdFlags::empty(),
            )?);
        }
        let pidfd = self.pidfd.as_ref().ok_or(Errno::SRCH)?;
        rustix::process::pidfd_getfd(pidfd, fd, rustix::process::PidfdGetfdFlags::empty()).map(Some)
    }

    fn run_pending_task_work(&mut self) {
        let current = self.tid;
        for tid in self.process.threads() {
            // Each injected syscall returns through the kernel's exit path,
            // which runs the thread's pending task work first.
            self.tid = tid;
            let _ = self.call(libc::SYS_getpid, [0; 6]);
        }
        self.tid = current;
    }
}
