//! Where the run's state-changing syscalls happen: one small trait,
//! [`Backend`], with two implementations: [`InProcess`] (this process,
//! through rustix: the fast path `execute` uses) and `RemoteBackend`
//! (`backend/remote.rs`: inside another process, through ptrace; what
//! `execute_in` uses).
//!
//! Every method takes and returns fd *numbers* of the process the backend
//! acts in; a created fd comes back as the backend's own [`Backend::Fd`]
//! (an `OwnedFd` in this process, so dropping it closes it exactly as
//! before there was a trait; a bare number in another process, closed
//! only by [`Backend::close`]). The run therefore closes through the
//! backend on every path that gives an fd up.

mod remote;

use std::ffi::c_void;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

use ringplan_kernel::procfs::mem::ProcessMemory;

use rustix::fs::{AtFlags, Mode, OFlags, SeekFrom};
use rustix::io::{DupFlags, Errno};
use rustix::io_uring::{io_uring_params, IoringRegisterOp};
use rustix::mm::{MapFlags, ProtFlags};

pub use remote::{RemoteBackend, RemoteFd};

use crate::remote::{EnterLoop, EnterLoopDone};

/// How this process reaches the memory of the process a backend acts in,
/// at that process's addresses: a ring's header, SQEs and CQEs are read
/// and written through it.
#[derive(Debug)]
pub enum TargetMemory {
    /// This process: plain loads and stores.
    Local,
    /// Another process: `/proc/PID/mem`, open for writing (its threads are
    /// held, so nothing of theirs races the writes; the kernel's own
    /// writes, an SQ thread's, are word-sized and seen as such).
    Process(ProcessMemory),
}

/// The state-changing syscalls of a run, in the process the backend acts
/// in. Fd arguments are numbers in that process.
pub trait Backend {
    /// An fd the run created and owns in the target process.
    type Fd;

    /// Whether the backend acts in this process (ring memory is then
    /// placed with this process's own mappings, owned as values).
    const IN_THIS_PROCESS: bool;

    /// The number of `fd` in the target process.
    fn number(fd: &Self::Fd) -> RawFd;

    /// The process the backend acts in, as `/proc` names it.
    fn process(&self) -> ringplan_kernel::procfs::Process;

    /// Takes over an fd of this process that the caller supplied for an
    /// external input, as an fd of the target.
    fn adopt(&mut self, fd: OwnedFd) -> Result<Self::Fd, Errno>;

    /// `eventfd2(initval, flags)`.
    fn eventfd(
        &mut self,
        initval: u32,
        flags: rustix::event::EventfdFlags,
    ) -> Result<Self::Fd, Errno>;

    /// `write(fd, bytes)`: the bytes written.
    fn write(&mut self, fd: RawFd, bytes: &[u8]) -> Result<usize, Errno>;

    /// `openat(AT_FDCWD, path, flags, mode)`.
    fn open(&mut self, path: &str, flags: OFlags, mode: Mode) -> Result<Self::Fd, Errno>;

    /// `newfstatat(AT_FDCWD, path, flags)`: the `st_mode` of what an open
    /// met.
    fn stat_path_mode(&mut self, path: &str, flags: AtFlags) -> Result<u32, Errno>;

    /// `fstat(fd)`: its `st_mode`.
    fn fstat_mode(&mut self, fd: RawFd) -> Result<u32, Errno>;

    /// `fcntl(fd, F_GETFL)`.
    fn fcntl_getfl(&mut self, fd: RawFd) -> Result<OFlags, Errno>;

    /// `fcntl(fd, F_SETFL, flags)`.
    fn fcntl_setfl(&mut self, fd: RawFd, flags: OFlags) -> Result<(), Errno>;

    /// `lseek(fd, pos, SEEK_SET)`.
    fn lseek(&mut self, fd: RawFd, pos: u64) -> Result<(), Errno>;

    /// `pipe2(O_CLOEXEC)`: the read end, then the write end.
    fn pipe(&mut self) -> Result<(Self::Fd, Self::Fd), Errno>;

    /// `io_uring_setup(entries, params)`; `params` is updated as the kernel
    /// fills it in. `params.wq_fd`, when set, is a number in the target.
    fn io_uring_setup(
        &mut self,
        entries: u32,
        params: &mut io_uring_params,
    ) -> Result<Self::Fd, Errno>;

    /// `io_uring_register(ring, opcode, arg, count)`, `arg` the bytes the
    /// opcode reads (ints, iovecs) as they are laid out in memory, passed
    /// as NULL when empty (personalities take no argument and refuse any
    /// pointer). Returns what the call returns (a personality's id).
    fn io_uring_register(
        &mut self,
        ring: RawFd,
        opcode: IoringRegisterOp,
        arg: &[u8],
        count: u32,
    ) -> Result<u32, Errno>;

    /// `io_uring_register(ring, opcode, &rsrc, sizeof(rsrc))` with a
    /// `struct io_uring_rsrc_register` (`IORING_REGISTER_FILES2`,
    /// `IORING_REGISTER_BUFFERS2`) whose `data` points at `table` (`nr`
    /// fds or iovecs as laid out in memory) and `tags` at `tags` (`nr`
    /// u64s), both placed in the process's memory for the call.
    fn io_uring_register_tagged(
        &mut self,
        ring: RawFd,
        opcode: IoringRegisterOp,
        table: &[u8],
        tags: &[u8],
        nr: u32,
    ) -> Result<u32, Errno>;

    /// `io_uring_register(ring, IORING_REGISTER_MEM_REGION, &reg, 1)` with
    /// `IORING_MEM_REGION_REG_WAIT_ARG`: a `struct io_uring_mem_region_reg`
    /// whose `region_uptr` points at a `struct io_uring_region_desc` of
    /// `len` bytes of the process's memory at `addr`, both placed in the
    /// process's memory for the call (rustix has no opcode for it).
    fn io_uring_register_wait_region(
        &mut self,
        ring: RawFd,
        addr: u64,
        len: u64,
    ) -> Result<(), Errno>;

    /// `fcntl(fd, F_DUPFD_CLOEXEC, floor)`.
    fn fcntl_dupfd_cloexec(&mut self, fd: RawFd, floor: RawFd) -> Result<Self::Fd, Errno>;

    /// `dup3(source, target, flags)` onto a number known to be free.
    fn dup3(&mut self, source: RawFd, target: RawFd, flags: DupFlags) -> Result<Self::Fd, Errno>;

    /// Closes an fd the run created.
    fn close(&mut self, fd: Self::Fd);

    /// A copy of process `from_pid`'s fd `fd` in the process this backend
    /// acts in, made there: `pidfd_open(from_pid)`, `pidfd_getfd`, the
    /// pidfd closed (a tree plan's `receive_fd`).
    fn receive_fd(&mut self, from_pid: u32, fd: RawFd) -> Result<Self::Fd, Errno>;

    /// `mmap(addr, len, prot, flags, fd or -1, offset)`: the address mapped.
    fn mmap(
        &mut self,
        addr: usize,
        len: usize,
        prot: ProtFlags,
        flags: MapFlags,
        fd: Option<RawFd>,
        offset: u64,
    ) -> Result<usize, Errno>;

    /// `munmap(addr, len)` of a range the run mapped.
    fn munmap(&mut self, addr: usize, len: usize) -> Result<(), Errno>;

    /// `io_uring_enter(ring, to_submit, min_complete, flags)` without an
    /// argument: the SQEs the kernel consumed. Must not block for long
    /// (another process's thread waits with no timeout).
    fn io_uring_enter(
        &mut self,
        ring: RawFd,
        to_submit: u32,
        min_complete: u32,
        flags: u32,
    ) -> Result<u32, Errno>;

    /// Runs `enter_loop` (batches of `io_uring_enter`, the loop moving the
    /// ring's SQ tail and CQ head itself) in the thread the next syscalls
    /// run in, in one go, where that saves a round trip per batch: `None`
    /// when the backend has no such loop (this process: its own loop of
    /// calls costs the same), else what ran, or `EIO` when the process
    /// could not be driven.
    fn io_uring_enter_loop(
        &mut self,
        _enter_loop: &EnterLoop,
    ) -> Option<Result<EnterLoopDone, Errno>> {
        None
    }

    /// `memfd_create(name, MFD_CLOEXEC)`.
    fn memfd_create(&mut self, name: &str) -> Result<Self::Fd, Errno>;

    /// `ftruncate(fd, len)`.
    fn ftruncate(&mut self, fd: RawFd, len: u64) -> Result<(), Errno>;

    /// Makes the next syscalls in thread `tid` of the process (`None`: the
    /// backend's own thread), as a `SINGLE_ISSUER` ring needs its owner to
    /// create it and submit to it. In this process every syscall runs in
    /// the calling thread whatever `tid` says (a ring restored here belongs
    /// to the thread that runs the plan).
    fn use_thread(&mut self, tid: Option<u32>) -> Result<(), Errno>;

    /// The thread the next syscalls run in (a tid of the target process).
    fn current_thread(&self) -> u32;

    /// How this process reaches the target's memory.
    fn memory(&self) -> Result<TargetMemory, Errno>;

    /// A copy in this process of the target's fd `fd` (`pidfd_getfd`), or
    /// `None` when the target is this process and `fd` serves as it is.
    fn copy_here(&mut self, fd: RawFd) -> Result<Option<OwnedFd>, Errno>;

    /// Lets every thread of the target run the kernel's work queued for it
    /// (task work: what a closed ring's teardown waits for), by a syscall
    /// that changes nothing. In this process, nothing to do: the calling
    /// thread runs its task work on its way back from every syscall.
    fn run_pending_task_work(&mut self);
}

/// The calling process: rustix syscalls, fds owned as `OwnedFd`.
#[derive(Debug, Default, Clone, Copy)]
pub struct InProcess;

/// Borrows fd number `fd` of this process for one call.
fn borrow(fd: RawFd) -> BorrowedFd<'static> {
    // SAFETY: the run passes only numbers of fds it owns (its handle table,
    // the fds it just created), open for the whole call; and the kernel
    // answers EBADF for a number that is not open, nothing worse.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

impl Backend for InProcess {
    type Fd = OwnedFd;
    const IN_THIS_PROCESS: bool = true;

    #[inline]
    fn number(fd: &OwnedFd) -> RawFd {
        fd.as_raw_fd()
    }

    fn process(&self) -> ringplan_kernel::procfs::Process {
        ringplan_kernel::procfs::Process::Current
    }

    #[inline]
    fn adopt(&mut self, fd: OwnedFd) -> Result<OwnedFd, Errno> {
        Ok(fd)
    }

    fn eventfd(
        &mut self,
        initval: u32,
        flags: rustix::event::EventfdFlags,
    ) -> Result<OwnedFd, Errno> {
        rustix::event::eventfd(initval, flags)
    }

    fn write(&mut self, fd: RawFd, bytes: &[u8]) -> Result<usize, Errno> {
        rustix::io::write(borrow(fd), bytes)
    }

    fn open(&mut self, path: &str, flags: OFlags, mode: Mode) -> Result<OwnedFd, Errno> {
        rustix::fs::open(path, flags, mode)
    }

    fn stat_path_mode(&mut self, path: &str, flags: AtFlags) -> Result<u32, Errno> {
        rustix::fs::statat(rustix::fs::CWD, path, flags).map(|stat| stat.st_mode)
    }

    fn fstat_mode(&mut self, fd: RawFd) -> Result<u32, Errno> {
        rustix::fs::fstat(borrow(fd)).map(|stat| stat.st_mode)
    }

    fn fcntl_getfl(&mut self, fd: RawFd) -> Result<OFlags, Errno> {
        rustix::fs::fcntl_getfl(borrow(fd))
    }

    fn fcntl_setfl(&mut self, fd: RawFd, flags: OFlags) -> Result<(), Errno> {
        rustix::fs::fcntl_setfl(borrow(fd), flags)
    }

    fn lseek(&mut self, fd: RawFd, pos: u64) -> Result<(), Errno> {
        rustix::fs::seek(borrow(fd), SeekFrom::Start(pos)).map(drop)
    }

    fn pipe(&mut self) -> Result<(OwnedFd, OwnedFd), Errno> {
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
    }

    fn io_uring_setup(
        &mut self,
        entries: u32,
        params: &mut io_uring_params,
    ) -> Result<OwnedFd, Errno> {
        // SAFETY: `params` is initialized; `wq_fd`, when set, is an open
        // ring fd from the run's handle table, open during the call.
        unsafe { rustix::io_uring::io_uring_setup(entries, params) }
    }

    fn io_uring_register(
        &mut self,
        ring: RawFd,
        opcode: IoringRegisterOp,
        arg: &[u8],
        count: u32,
    ) -> Result<u32, Errno> {
        let pointer = if arg.is_empty() {
            std::ptr::null()
        } else {
            arg.as_ptr().cast::<c_void>()
        };
        // SAFETY: `arg` holds `count` of what the opcode reads (ints that
        // are open fds or -1, iovecs naming memory the barrier put in
        // place), read during the call only (buffers are pinned, not read);
        // NULL for the opcodes that read nothing.
        unsafe { rustix::io_uring::io_uring_register(borrow(ring), opcode, pointer, count) }
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
        let rsrc = rsrc_register(nr, table.as_ptr() as u64, tags.as_ptr() as u64);
        // SAFETY: `rsrc` is a `struct io_uring_rsrc_register` whose `data`
        // and `tags` point at `table` and `tags`, which hold `nr` entries
        // each and outlive the call; the kernel reads them during the call
        // only (buffers are pinned, not read).
        unsafe {
            rustix::io_uring::io_uring_register(
                borrow(ring),
                opcode,
                rsrc.as_ptr().cast::<c_void>(),
                RSRC_REGISTER_SIZE as u32,
            )
        }
    }

    fn io_uring_register_wait_region(
        &mut self,
        ring: RawFd,
        addr: u64,
        len: u64,
    ) -> Result<(), Errno> {
        use ringplan_kernel::abi::settings::{
            mem_region_reg, user_region_desc, IORING_MEM_REGION_REG_WAIT_ARG,
            IORING_REGISTER_MEM_REGION,
        };
        let desc = user_region_desc(addr, len);
        let reg = mem_region_reg(
            desc.as_ptr() as u64,
            u64::from(IORING_MEM_REGION_REG_WAIT_ARG),
        );
        // SAFETY: `reg` points at `desc`, both alive for the call; the
        // kernel reads them (and writes `desc` back) during the call and
        // pins the memory `desc` names, which it never frees.
        let result = unsafe {
            libc::syscall(
                libc::SYS_io_uring_register,
                ring,
                IORING_REGISTER_MEM_REGION,
                reg.as_ptr(),
                1,
            )
        };
        if result < 0 {
            return Err(Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::IO));
        }
        Ok(())
    }

    fn fcntl_dupfd_cloexec(&mut self, fd: RawFd, floor: RawFd) -> Result<OwnedFd, Errno> {
        rustix::io::fcntl_dupfd_cloexec(borrow(fd), floor)
    }

    fn dup3(&mut self, source: RawFd, target: RawFd, flags: DupFlags) -> Result<OwnedFd, Errno> {
        // SAFETY: the caller proved `target` free; it is owned here only
        // once dup3 made it open (on failure it is forgotten, not closed).
        let mut owned = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(target) };
        match rustix::io::dup3(borrow(source), &mut owned, flags) {
            Ok(()) => Ok(owned),
            Err(errno) => {
                std::mem::forget(owned);
                Err(errno)
            }
        }
    }

    #[inline]
    fn close(&mut self, fd: OwnedFd) {
        drop(fd);
    }

    fn receive_fd(&mut self, from_pid: u32, fd: RawFd) -> Result<OwnedFd, Errno> {
        let pid = rustix::process::Pid::from_raw(from_pid as i32).ok_or(Errno::SRCH)?;
        let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())?;
        rustix::process::pidfd_getfd(&pidfd, fd, rustix::process::PidfdGetfdFlags::empty())
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
        // SAFETY: the run maps only with MAP_FIXED_NOREPLACE or at an
        // address the kernel chooses, so no existing mapping is replaced;
        // the caller owns the new mapping.
        let got = unsafe {
            match fd {
                Some(fd) => {
                    rustix::mm::mmap(addr as *mut c_void, len, prot, flags, borrow(fd), offset)
                }
                None => rustix::mm::mmap_anonymous(addr as *mut c_void, len, prot, flags),
            }
        }?;
        Ok(got as usize)
    }

    fn munmap(&mut self, addr: usize, len: usize) -> Result<(), Errno> {
        // SAFETY: a range the run mapped, that nothing outside the run
        // refers to (a ring using it is closed first).
        unsafe { rustix::mm::munmap(addr as *mut c_void, len) }
    }

    fn io_uring_enter(
        &mut self,
        ring: RawFd,
        to_submit: u32,
        min_complete: u32,
        flags: u32,
    ) -> Result<u32, Errno> {
        let flags = rustix::io_uring::IoringEnterFlags::from_bits_retain(flags);
        // SAFETY: no EXT_ARG flag is passed by the run, so the kernel reads
        // no argument pointer.
        unsafe { rustix::io_uring::io_uring_enter(borrow(ring), to_submit, min_complete, flags) }
    }

    fn memfd_create(&mut self, name: &str) -> Result<OwnedFd, Errno> {
        rustix::fs::memfd_create(name, rustix::fs::MemfdFlags::CLOEXEC)
    }

    fn ftruncate(&mut self, fd: RawFd, len: u64) -> Result<(), Errno> {
        rustix::fs::ftruncate(borrow(fd), len)
    }

    #[inline]
    fn use_thread(&mut self, _tid: Option<u32>) -> Result<(), Errno> {
        Ok(())
    }

    fn current_thread(&self) -> u32 {
        rustix::thread::gettid().as_raw_nonzero().get() as u32
    }

    #[inline]
    fn memory(&self) -> Result<TargetMemory, Errno> {
        Ok(TargetMemory::Local)
    }

    #[inline]
    fn copy_here(&mut self, _fd: RawFd) -> Result<Option<OwnedFd>, Errno> {
        Ok(None)
    }

    #[inline]
    fn run_pending_task_work(&mut self) {}
}
