//! Running syscalls inside another process, and leaving it exactly as it
//! was found: the foundation of `plan exec --pid` (issue 13).
//!
//! [`RemoteProcess::attach`] seizes and interrupts every thread of a
//! process (a thread left running could race what is injected), records
//! each one's registers and signal mask, blocks every signal while it is
//! held (a signal that arrives stays pending and is delivered after
//! [`RemoteProcess::detach`]), and maps two scratch pages in the process:
//! one executable with `syscall; int3`, one read-write for syscall
//! arguments. [`RemoteProcess::syscall`] runs one syscall in a chosen
//! thread and returns the kernel's raw result; [`RemoteProcess::detach`]
//! unmaps the scratch pages, puts back every register and mask, detaches,
//! and resumes the process unless it was stopped when we came or the
//! caller asks to leave it stopped. An error anywhere, or dropping a
//! `RemoteProcess`, does the same undo (resuming as found).
//!
//! How a syscall is run: the thread's registers are set for the syscall at
//! the scratch code (`orig_rax` -1, so the kernel does not take it for an
//! interrupted syscall to restart), `PTRACE_SYSCALL` twice (entry, exit:
//! no signal is involved, unlike an `int3` trap, whose forced `SIGTRAP`
//! would reset a blocked or ignored `SIGTRAP`'s disposition for the whole
//! process), the result read, then `PTRACE_INTERRUPT` and `PTRACE_CONT`
//! bring the thread back into the kernel's signal handling before it
//! returns to user space, where the recorded registers are put back. So
//! each thread always waits in the same kind of stop it was attached in,
//! and when it finally resumes the kernel restarts the syscall it was
//! interrupted in (`-ERESTARTSYS` and family in its return register)
//! exactly as it would have without us. `docs/kernels.md` lists the traps.
//!
//! [`RemoteProcess::run_enter_loop`] runs many `io_uring_enter` batches
//! with one injection instead: a loop in the scratch code page that ends
//! with a `tgkill` of its own thread, whose signal-delivery stop the
//! tracer catches and suppresses (see its doc).
//!
//! The per-architecture part is `remote/arch/` (x86-64 only; other
//! architectures fail to compile with a message saying so).

mod arch;
mod checks;

pub(crate) use checks::is_io_thread;
mod error;
mod ptrace;

use std::time::Duration;

use ringplan_kernel::abi::linux::PAGE_SIZE;
use ringplan_kernel::abi::ptrace as abi;
use ringplan_kernel::procfs::mem::ProcessMemory;
use ringplan_kernel::procfs::{task, Process};
use rustix::io::Errno;

pub use error::{PtraceDenial, RemoteError};

use arch::{
    Registers, ENTER_LOOP_CODE, ENTER_LOOP_SIGNAL, ENTER_LOOP_STOP_OFFSET, SYSCALL_CODE,
    SYSCALL_INSTRUCTION_LEN,
};
use ptrace::Stop;

/// Every signal blocked while the process is held (`SIGKILL` and `SIGSTOP`
/// cannot be).
const ALL_SIGNALS: u64 = u64::MAX;

/// Bytes of the scratch data page that syscall arguments may use.
pub const SCRATCH_DATA_CAPACITY: usize = PAGE_SIZE as usize;

/// Where in the scratch code page the `io_uring_enter` loop is (after the
/// syscall code).
const ENTER_LOOP_OFFSET: u64 = 64;

/// Batches of `io_uring_enter` run inside a thread by one injection
/// ([`RemoteProcess::run_enter_loop`]): `batches` times, the CQ head set to
/// the CQ tail (when `cq_head` is given: the CQEs are NOPs' and nobody
/// reads them), the SQ tail moved by `batch`, then `io_uring_enter(ring_fd,
/// batch, min_complete, flags)`; the loop stops at the first call that
/// does not return `batch`. Addresses are the process's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnterLoop {
    pub ring_fd: i32,
    pub batch: u32,
    pub min_complete: u32,
    pub flags: u32,
    pub batches: u64,
    /// The SQ tail (`u32`) in the ring's memory.
    pub sq_tail: u64,
    /// The CQ head, moved to the CQ tail before each batch; `None` to leave
    /// it (no CQEs are posted).
    pub cq_head: Option<u64>,
    /// The CQ tail.
    pub cq_tail: u64,
}

/// What an [`EnterLoop`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnterLoopDone {
    /// The batches every SQE of which was consumed.
    pub batches: u64,
    /// The raw result of the last `io_uring_enter` (`batch` when all
    /// ran; a negative errno or a short count where the loop stopped; 0
    /// when no batch was asked).
    pub last_result: i64,
}

/// A thread of the held process.
#[derive(Debug)]
struct HeldThread {
    tid: u32,
    /// Whether it is in a ptrace stop (false between a resume and the
    /// wait that sees it stop again).
    stopped: bool,
    /// Its registers when attached (its instruction pointer moved to the
    /// abort handler when it was inside an rseq critical section).
    saved: Option<Registers>,
    /// Its signal mask when attached.
    mask: Option<u64>,
    /// Signals the kernel was about to deliver to it while held, which
    /// the waits suppressed; sent again before detaching.
    suppressed_signals: Vec<i32>,
    /// Whether its rseq state was checked (once, before the first
    /// injection in it).
    rseq_checked: bool,
}

/// The scratch pages mapped in the process.
#[derive(Debug, Clone, Copy)]
struct Scratch {
    /// The read-execute page holding [`SYSCALL_CODE`].
    code: u64,
    /// The read-write page for arguments (`code + PAGE_SIZE`).
    data: u64,
}

/// A thread that was inside an rseq critical section when held, and was
/// moved to its abort handler, as the kernel moves it whenever such a
/// thread is preempted, because syscalls are run in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RseqAbort {
    /// The thread.
    pub tid: u32,
    /// Where it was.
    pub ip: u64,
    /// Where it resumes.
    pub abort_ip: u64,
}

/// A syscall a held thread was inside when it stopped, which the kernel
/// restarts when the thread resumes (as it would without us).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterruptedSyscall {
    /// The thread.
    pub tid: u32,
    /// The syscall's number.
    pub nr: u64,
    /// Its raw return value: `-ERESTARTSYS` or one of its family
    /// (`ringplan_kernel::abi::ptrace`).
    pub restart_code: i64,
}

/// How long the steps of a hold took.
#[derive(Debug, Clone, Copy, Default)]
pub struct HoldTimings {
    /// Seizing and stopping every thread, recording them.
    pub stop_threads: Duration,
    /// Mapping the scratch pages (three syscalls through borrowed bytes).
    pub map_scratch: Duration,
}

/// A process whose threads are held (ptrace-stopped) so that syscalls can
/// run in them. Dropping it without [`RemoteProcess::detach`] puts
/// everything back and resumes the process as it was found (stopped or
/// not). The kernel answers ptrace requests only from the thread that
/// attached, so it is not `Send`.
#[derive(Debug)]
pub struct RemoteProcess {
    pid: u32,
    threads: Vec<HeldThread>,
    was_stopped: bool,
    memory: Option<ProcessMemory>,
    scratch: Option<Scratch>,
    /// The thread the scratch pages are mapped and unmapped through.
    scratch_thread: usize,
    rseq_aborts: Vec<RseqAbort>,
    timings: HoldTimings,
    released: bool,
    /// The address the scratch pages are asked for (0: the kernel's
    /// choice).
    scratch_hint: u64,
    /// ptrace answers only the thread that attached: a `RemoteProcess`
    /// stays on it (not `Send`).
    _attaching_thread: std::marker::PhantomData<*const ()>,
}

/// A hint for the scratch pages outside every range of `avoid`: 0 (the
/// kernel's choice) when there is none, else the first 1 GiB boundary from
/// 4 GiB up that no range touches (low memory that position-independent
/// programs and the top-down mmap area leave free on x86-64).
fn scratch_hint(avoid: &[(u64, u64)]) -> u64 {
    const GIB: u64 = 1 << 30;
    if avoid.is_empty() {
        return 0;
    }
    let length = 2 * PAGE_SIZE;
    (4..128)
        .map(|gib| gib * GIB)
        .find(|&hint| {
            avoid
                .iter()
                .all(|&(start, end)| hint + length <= start || end <= hint)
        })
        .unwrap_or(0)
}

impl RemoteProcess {
    /// Holds process `pid`: refuses first, changing nothing, a process that
    /// is gone or exiting, that has a thread traced by another tracer or
    /// under seccomp, or that lacks a thread of `needed_threads` (the
    /// threads syscalls will run in; any thread when empty). Then seizes
    /// and stops every thread (io threads excepted: they run no user code
    /// and cannot be traced), records their registers and signal masks,
    /// blocks their signals, and maps the scratch pages. On error the
    /// process is left as found.
    pub fn attach(pid: u32, needed_threads: &[u32]) -> Result<RemoteProcess, RemoteError> {
        RemoteProcess::attach_avoiding(pid, needed_threads, &[])
    }

    /// [`RemoteProcess::attach`], with the scratch pages kept out of the
    /// `[start, end)` ranges of `avoid` (where a restore will place memory
    /// at fixed addresses: a hole a detach left is where the kernel would
    /// put them otherwise). They are asked for at a hint address outside
    /// every range (the kernel chooses elsewhere when the hint is taken).
    pub fn attach_avoiding(
        pid: u32,
        needed_threads: &[u32],
        avoid: &[(u64, u64)],
    ) -> Result<RemoteProcess, RemoteError> {
        let started = std::time::Instant::now();
        let found = checks::before_attach(pid, needed_threads)?;
        let mut process = RemoteProcess {
            pid,
            threads: Vec::new(),
            was_stopped: found.was_stopped,
            memory: None,
            scratch: None,
            scratch_thread: 0,
            rseq_aborts: Vec::new(),
            timings: HoldTimings::default(),
            scratch_hint: scratch_hint(avoid),
            released: false,
            _attaching_thread: std::marker::PhantomData,
        };
        match process.hold(needed_threads) {
            Ok(()) => {}
            Err(error) => return Err(process.undo_after(error)),
        }
        process.timings.stop_threads = started.elapsed();
        let mapping = std::time::Instant::now();
        if let Err(error) = process.map_scratch() {
            return Err(process.undo_after(error));
        }
        process.timings.map_scratch = mapping.elapsed();
        Ok(process)
    }

    /// The held process.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The threads held, in the order they were seized.
    pub fn threads(&self) -> Vec<u32> {
        self.threads.iter().map(|thread| thread.tid).collect()
    }

    /// Whether the process was stopped (group-stop) when attached; it is
    /// left stopped by [`RemoteProcess::detach`].
    pub fn was_stopped(&self) -> bool {
        self.was_stopped
    }

    /// Threads moved out of an rseq critical section to its abort handler.
    pub fn rseq_aborts(&self) -> &[RseqAbort] {
        &self.rseq_aborts
    }

    /// The syscalls held threads were interrupted in, which the kernel
    /// restarts when they resume.
    pub fn interrupted_syscalls(&self) -> Vec<InterruptedSyscall> {
        self.threads
            .iter()
            .filter_map(|thread| {
                let (nr, restart_code) = thread.saved?.interrupted_syscall()?;
                Some(InterruptedSyscall {
                    tid: thread.tid,
                    nr,
                    restart_code,
                })
            })
            .collect()
    }

    /// How long attaching took.
    pub fn timings(&self) -> HoldTimings {
        self.timings
    }

    /// Where the scratch data page is: syscalls that take pointers get
    /// addresses in it ([`RemoteProcess::write_scratch`]).
    pub fn scratch_data_address(&self) -> Option<u64> {
        self.scratch.map(|scratch| scratch.data)
    }

    /// Runs syscall `nr` with `args` in thread `tid` and returns its raw
    /// result (a negative errno on failure, as the kernel gives it). The
    /// thread's registers are put back afterwards. The syscall must not
    /// block: the wait for its end has no timeout.
    ///
    /// An error (not a failed syscall: a ptrace failure, the thread gone)
    /// means the process could not be driven: detach (or drop) it.
    pub fn syscall(&mut self, tid: u32, nr: u64, args: [u64; 6]) -> Result<i64, RemoteError> {
        let (scratch, index) = self.scratch_and_thread(tid, nr)?;
        self.run_syscall(index, scratch.code, nr, args)
    }

    /// The scratch pages and the index of held thread `tid`, for
    /// injecting syscall `nr` there.
    fn scratch_and_thread(&self, tid: u32, nr: u64) -> Result<(Scratch, usize), RemoteError> {
        let pid = self.pid;
        let scratch = self.scratch.ok_or(RemoteError::Injection {
            pid,
            tid,
            nr,
            problem: "no scratch page is mapped".to_owned(),
        })?;
        let index = self
            .threads
            .iter()
            .position(|thread| thread.tid == tid)
            .ok_or(RemoteError::NotHeld { pid, tid })?;
        Ok((scratch, index))
    }

    /// Runs `enter_loop` in thread `tid` in one injection: the thread runs
    /// the loop of the scratch code page with `SIGTRAP` alone let through
    /// its signal mask, and ends it with a `tgkill` of itself (a
    /// signal-delivery stop, suppressed here; no forced signal, so no
    /// signal disposition is touched). Its registers and mask are put back
    /// afterwards, as after [`RemoteProcess::syscall`]. Another signal that
    /// arrives meanwhile is suppressed and sent again before detaching.
    /// The calls must not block for long: the wait has no timeout.
    pub fn run_enter_loop(
        &mut self,
        tid: u32,
        enter_loop: &EnterLoop,
    ) -> Result<EnterLoopDone, RemoteError> {
        let pid = self.pid;
        let nr = libc::SYS_io_uring_enter as u64;
        let (scratch, index) = self.scratch_and_thread(tid, nr)?;
        self.check_rseq(index)?;
        let saved = self.threads[index]
            .saved
            .ok_or(RemoteError::NotHeld { pid, tid })?;
        let code = scratch.code + ENTER_LOOP_OFFSET;
        let stop_at = code + ENTER_LOOP_STOP_OFFSET;
        let only_the_stop = ALL_SIGNALS & !(1u64 << (ENTER_LOOP_SIGNAL - 1));
        ptrace::set_signal_mask(tid, only_the_stop)
            .map_err(|errno| self.ptrace_error(tid, "PTRACE_SETSIGMASK", errno))?;
        let ran = self.run_enter_loop_at(index, &saved, code, stop_at, enter_loop);
        // Back into the signal-handling stop, the mask and registers as
        // they were while held, whatever happened.
        let put_back = ptrace::set_signal_mask(tid, ALL_SIGNALS)
            .map_err(|errno| self.ptrace_error(tid, "PTRACE_SETSIGMASK", errno))
            .and_then(|()| {
                saved
                    .write(tid)
                    .map_err(|errno| self.ptrace_error(tid, "PTRACE_SETREGS", errno))
            });
        let after = ran?;
        put_back?;
        let (left, last_result) = after.enter_loop_outcome();
        Ok(EnterLoopDone {
            batches: enter_loop.batches.saturating_sub(left),
            last_result,
        })
    }

    /// The loop's run proper: registers set, resumed until the stop at
    /// `stop_at`, registers read, then brought back into an event stop.
    fn run_enter_loop_at(
        &mut self,
        index: usize,
        saved: &Registers,
        code: u64,
        stop_at: u64,
        enter_loop: &EnterLoop,
    ) -> Result<Registers, RemoteError> {
        let tid = self.threads[index].tid;
        saved
            .for_enter_loop(code, enter_loop)
            .write(tid)
            .map_err(|errno| self.ptrace_error(tid, "PTRACE_SETREGS", errno))?;
        ptrace::resume(tid).map_err(|errno| self.ptrace_error(tid, "PTRACE_CONT", errno))?;
        self.threads[index].stopped = false;
        let after = loop {
            let stop =
                ptrace::wait(tid).map_err(|errno| self.ptrace_error(tid, "waitpid", errno))?;
            match stop {
                Stop::Signal(signal) => {
                    self.threads[index].stopped = true;
                    let regs = Registers::read(tid)
                        .map_err(|errno| self.ptrace_error(tid, "PTRACE_GETREGS", errno))?;
                    // Ours: SIGTRAP from tgkill by this process, stopped
                    // right after the loop's tgkill.
                    if signal == ENTER_LOOP_SIGNAL
                        && regs.instruction_pointer() == stop_at
                        && ptrace::signal_sender(tid)
                            .is_ok_and(|sender| sender == (libc::SI_TKILL, self.pid as i32))
                    {
                        break regs;
                    }
                    // Someone else's signal: suppressed now, sent again
                    // before detaching; the loop goes on.
                    self.threads[index].suppressed_signals.push(signal);
                    ptrace::resume(tid)
                        .map_err(|errno| self.ptrace_error(tid, "PTRACE_CONT", errno))?;
                    self.threads[index].stopped = false;
                }
                Stop::Gone(how) => {
                    return Err(RemoteError::Gone {
                        pid: self.pid,
                        tid,
                        how,
                    })
                }
                // A group-stop or another event: past it, as the waits do.
                Stop::Syscall | Stop::Event(_) | Stop::OtherEvent(_) => {
                    ptrace::resume(tid)
                        .map_err(|errno| self.ptrace_error(tid, "PTRACE_CONT", errno))?;
                }
            }
        };
        // Out of the signal-delivery stop without the signal, into the
        // event stop every held thread waits in.
        ptrace::interrupt(tid)
            .map_err(|errno| self.ptrace_error(tid, "PTRACE_INTERRUPT", errno))?;
        self.resume_thread(index, Expect::EventStop)?;
        self.wait_for(index, Expect::EventStop)?;
        Ok(after)
    }

    /// Writes `bytes` at the start of the scratch data page and returns
    /// their address in the process.
    pub fn write_scratch(&mut self, bytes: &[u8]) -> Result<u64, RemoteError> {
        if bytes.len() > SCRATCH_DATA_CAPACITY {
            return Err(RemoteError::ScratchTooSmall {
                len: bytes.len(),
                capacity: SCRATCH_DATA_CAPACITY,
            });
        }
        let data = self
            .scratch
            .map(|scratch| scratch.data)
            .ok_or(RemoteError::Injection {
                pid: self.pid,
                tid: 0,
                nr: 0,
                problem: "no scratch page is mapped".to_owned(),
            })?;
        self.write_memory(data, bytes)?;
        Ok(data)
    }

    /// Reads `len` bytes of the process's memory at `addr` (a syscall's
    /// results in the scratch page, or anything mapped).
    pub fn read_memory(&self, addr: u64, len: usize) -> Result<Vec<u8>, RemoteError> {
        let mut buffer = vec![0u8; len];
        let memory = self.memory()?;
        memory
            .read_exact_at(addr, &mut buffer)
            .map_err(|source| RemoteError::Memory {
                pid: self.pid,
                addr,
                len,
                write: false,
                source,
            })?;
        Ok(buffer)
    }

    /// Writes `bytes` into the process's memory at `addr` (through page
    /// protections, as a debugger does).
    pub fn write_memory(&self, addr: u64, bytes: &[u8]) -> Result<(), RemoteError> {
        let memory = self.memory()?;
        memory
            .write_all_at(addr, bytes)
            .map_err(|source| RemoteError::Memory {
                pid: self.pid,
                addr,
                len: bytes.len(),
                write: true,
                source,
            })
    }

    /// Unmaps the scratch pages, puts back every thread's registers and
    /// signal mask (checked by reading them back), sends again the signals
    /// suppressed while held, and detaches. The process resumes unless it
    /// was stopped when attached or `resume` is false: then it is left
    /// stopped (group-stop, as by `SIGSTOP`). On error everything else is
    /// still put back.
    pub fn detach(mut self, resume: bool) -> Result<(), RemoteError> {
        self.release(resume)
    }

    fn memory(&self) -> Result<&ProcessMemory, RemoteError> {
        self.memory
            .as_ref()
            .ok_or(RemoteError::NoSuchProcess { pid: self.pid })
    }

    fn ptrace_error(&self, tid: u32, call: &'static str, errno: Errno) -> RemoteError {
        RemoteError::Ptrace {
            pid: self.pid,
            tid,
            call,
            errno,
        }
    }

    /// Seizes and stops every thread, listing them again until no new one
    /// appears (a thread may create another before it stops), then records
    /// registers and masks and blocks signals.
    fn hold(&mut self, needed_threads: &[u32]) -> Result<(), RemoteError> {
        let pid = self.pid;
        let mut skipped_io_threads = Vec::new();
        loop {
            let tids = task::ids(Process::Pid(pid)).map_err(|source| {
                if source.is_not_found() {
                    RemoteError::NoSuchProcess { pid }
                } else {
                    RemoteError::Procfs { pid, source }
                }
            })?;
            let mut seized = Vec::new();
            for tid in tids {
                if self.threads.iter().any(|thread| thread.tid == tid)
                    || skipped_io_threads.contains(&tid)
                {
                    continue;
                }
                if checks::is_io_thread(pid, tid) {
                    skipped_io_threads.push(tid);
                    continue;
                }
                match ptrace::seize(tid) {
                    Ok(()) => {}
                    // It ended since the listing.
                    Err(Errno::SRCH) => continue,
                    Err(errno) => {
                        return Err(RemoteError::PtraceDenied {
                            pid,
                            tid,
                            errno,
                            denial: checks::denial(pid, tid),
                        })
                    }
                }
                self.threads.push(HeldThread {
                    tid,
                    stopped: false,
                    saved: None,
                    mask: None,
                    suppressed_signals: Vec::new(),
                    rseq_checked: false,
                });
                match ptrace::interrupt(tid) {
                    Ok(()) | Err(Errno::SRCH) => {}
                    Err(errno) => return Err(self.ptrace_error(tid, "PTRACE_INTERRUPT", errno)),
                }
                seized.push(self.threads.len() - 1);
            }
            if seized.is_empty() {
                break;
            }
            for index in seized {
                self.wait_for(index, Expect::EventStop)?;
            }
            // Threads that ended while being seized are not held.
            self.threads.retain(|thread| thread.stopped);
        }
        if self.threads.is_empty() {
            return Err(RemoteError::Exited { pid });
        }
        for index in 0..self.threads.len() {
            let tid = self.threads[index].tid;
            let registers = Registers::read(tid)
                .map_err(|errno| self.ptrace_error(tid, "PTRACE_GETREGS", errno))?;
            self.threads[index].saved = Some(registers);
            let mask = ptrace::signal_mask(tid)
                .map_err(|errno| self.ptrace_error(tid, "PTRACE_GETSIGMASK", errno))?;
            self.threads[index].mask = Some(mask);
            ptrace::set_signal_mask(tid, ALL_SIGNALS)
                .map_err(|errno| self.ptrace_error(tid, "PTRACE_SETSIGMASK", errno))?;
        }
        for &tid in needed_threads {
            if !self.threads.iter().any(|thread| thread.tid == tid) {
                return Err(RemoteError::NoSuchThread { pid, tid });
            }
        }
        self.scratch_thread = needed_threads
            .first()
            .and_then(|tid| self.threads.iter().position(|thread| thread.tid == *tid))
            .unwrap_or(0);
        self.memory = Some(
            ProcessMemory::open_for_writing(Process::Pid(pid))
                .map_err(|source| RemoteError::Procfs { pid, source })?,
        );
        Ok(())
    }

    /// Maps the scratch pages through bytes borrowed at the scratch
    /// thread's instruction pointer: `syscall; int3` written there, an
    /// `mmap` of two read-write pages run, the code written into the first
    /// and that page made read-execute with `mprotect`, the borrowed bytes
    /// put back.
    fn map_scratch(&mut self) -> Result<(), RemoteError> {
        let index = self.scratch_thread;
        self.check_rseq(index)?;
        let ip = self.threads[index]
            .saved
            .map(|registers| registers.instruction_pointer())
            .unwrap_or_default();
        let borrowed = self.read_memory(ip, SYSCALL_CODE.len())?;
        self.write_memory(ip, &SYSCALL_CODE)?;
        let mapped = self.map_scratch_at(index, ip);
        let put_back = self.write_memory(ip, &borrowed);
        let scratch = match (mapped, put_back) {
            (Ok(scratch), Ok(())) => scratch,
            (Err(error), _) => return Err(error),
            (Ok(scratch), Err(error)) => {
                // The pages exist: let release unmap them.
                self.scratch = Some(scratch);
                return Err(error);
            }
        };
        self.scratch = Some(scratch);
        Ok(())
    }

    fn map_scratch_at(&mut self, index: usize, ip: u64) -> Result<Scratch, RemoteError> {
        let pid = self.pid;
        let tid = self.threads[index].tid;
        let length = 2 * PAGE_SIZE;
        let nr = libc::SYS_mmap as u64;
        let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
        let protection = (libc::PROT_READ | libc::PROT_WRITE) as u64;
        let hint = self.scratch_hint;
        let result = self.run_syscall(
            index,
            ip,
            nr,
            [hint, length, protection, flags, u64::MAX, 0],
        )?;
        if (-4095..0).contains(&result) {
            return Err(RemoteError::Scratch {
                pid,
                tid,
                what: "mapping the scratch pages",
                nr,
                errno: Errno::from_raw_os_error(-result as i32),
            });
        }
        let scratch = Scratch {
            code: result as u64,
            data: result as u64 + PAGE_SIZE,
        };
        let protect = self
            .write_memory(scratch.code, &SYSCALL_CODE)
            .and_then(|()| self.write_memory(scratch.code + ENTER_LOOP_OFFSET, &ENTER_LOOP_CODE))
            .and_then(|()| {
                let nr = libc::SYS_mprotect as u64;
                let protection = (libc::PROT_READ | libc::PROT_EXEC) as u64;
                match self.run_syscall(
                    index,
                    ip,
                    nr,
                    [scratch.code, PAGE_SIZE, protection, 0, 0, 0],
                )? {
                    0 => Ok(()),
                    failed => Err(RemoteError::Scratch {
                        pid,
                        tid,
                        what: "making the scratch code page executable",
                        nr,
                        errno: Errno::from_raw_os_error(-failed as i32),
                    }),
                }
            });
        if let Err(error) = protect {
            let _ = self.run_syscall(
                index,
                ip,
                libc::SYS_munmap as u64,
                [scratch.code, length, 0, 0, 0, 0],
            );
            return Err(error);
        }
        Ok(scratch)
    }

    /// Once per thread, before the first syscall in it: when it is inside
    /// an rseq critical section, moves its recorded instruction pointer to
    /// the section's abort handler. The kernel does the same whenever such
    /// a thread is preempted or stopped; here it must be done by hand,
    /// because running a syscall in the thread makes the kernel see it
    /// outside the section and forget the section (it clears `rseq_cs`),
    /// so putting the old instruction pointer back would let the section
    /// go on after it lost its CPU.
    fn check_rseq(&mut self, index: usize) -> Result<(), RemoteError> {
        if self.threads[index].rseq_checked {
            return Ok(());
        }
        let pid = self.pid;
        let tid = self.threads[index].tid;
        let Some(mut saved) = self.threads[index].saved else {
            return Ok(());
        };
        let configuration = match ptrace::rseq_configuration(tid) {
            Ok(configuration) => configuration,
            // Before Linux 5.13 the kernel cannot say; nothing to check.
            Err(Errno::IO | Errno::INVAL) => {
                self.threads[index].rseq_checked = true;
                return Ok(());
            }
            Err(errno) => {
                return Err(self.ptrace_error(tid, "PTRACE_GET_RSEQ_CONFIGURATION", errno))
            }
        };
        self.threads[index].rseq_checked = true;
        if configuration.rseq_abi_pointer == 0 {
            return Ok(());
        }
        let cs_pointer =
            self.read_u64(configuration.rseq_abi_pointer + abi::RSEQ_CS_FIELD_OFFSET)?;
        if cs_pointer == 0 {
            return Ok(());
        }
        let cs = self.read_memory(cs_pointer, abi::RSEQ_CS_SIZE)?;
        let field = |offset: usize| {
            cs.get(offset..offset + 8)
                .and_then(|bytes| bytes.try_into().ok())
                .map(u64::from_ne_bytes)
                .unwrap_or_default()
        };
        let start_ip = field(abi::RSEQ_CS_START_IP_OFFSET);
        let post_commit_offset = field(abi::RSEQ_CS_POST_COMMIT_OFFSET_OFFSET);
        let abort_ip = field(abi::RSEQ_CS_ABORT_IP_OFFSET);
        let ip = saved.instruction_pointer();
        if ip < start_ip || ip - start_ip >= post_commit_offset {
            return Ok(());
        }
        let signature = self.read_memory(abort_ip.wrapping_sub(4), 4)?;
        if signature != configuration.signature.to_ne_bytes() {
            return Err(RemoteError::RseqSignature {
                pid,
                tid,
                ip,
                abort_ip,
            });
        }
        saved.set_instruction_pointer(abort_ip);
        self.threads[index].saved = Some(saved);
        self.rseq_aborts.push(RseqAbort { tid, ip, abort_ip });
        Ok(())
    }

    fn read_u64(&self, addr: u64) -> Result<u64, RemoteError> {
        let bytes = self.read_memory(addr, 8)?;
        Ok(bytes.try_into().map(u64::from_ne_bytes).unwrap_or_default())
    }

    /// Runs one syscall at `code` in thread `index` (see the module doc)
    /// and puts its recorded registers back.
    fn run_syscall(
        &mut self,
        index: usize,
        code: u64,
        nr: u64,
        args: [u64; 6],
    ) -> Result<i64, RemoteError> {
        self.check_rseq(index)?;
        let pid = self.pid;
        let tid = self.threads[index].tid;
        let saved = self.threads[index]
            .saved
            .ok_or(RemoteError::NotHeld { pid, tid })?;
        saved
            .for_syscall(code, nr, args)
            .write(tid)
            .map_err(|errno| self.ptrace_error(tid, "PTRACE_SETREGS", errno))?;
        // Entry, then exit.
        for _ in 0..2 {
            self.resume_thread(index, Expect::SyscallStop)?;
            self.wait_for(index, Expect::SyscallStop)?;
        }
        let after = Registers::read(tid)
            .map_err(|errno| self.ptrace_error(tid, "PTRACE_GETREGS", errno))?;
        let result = after.syscall_result();
        // Back into the signal-handling stop before user space runs.
        ptrace::interrupt(tid)
            .map_err(|errno| self.ptrace_error(tid, "PTRACE_INTERRUPT", errno))?;
        self.resume_thread(index, Expect::EventStop)?;
        self.wait_for(index, Expect::EventStop)?;
        saved
            .write(tid)
            .map_err(|errno| self.ptrace_error(tid, "PTRACE_SETREGS", errno))?;
        if after.instruction_pointer() != code + SYSCALL_INSTRUCTION_LEN {
            return Err(RemoteError::Injection {
                pid,
                tid,
                nr,
                problem: format!(
                    "the thread stopped at {:#x}, not after the syscall instruction at {code:#x}",
                    after.instruction_pointer()
                ),
            });
        }
        Ok(result)
    }

    fn resume_thread(&mut self, index: usize, until: Expect) -> Result<(), RemoteError> {
        let tid = self.threads[index].tid;
        let (call, result) = match until {
            Expect::SyscallStop => ("PTRACE_SYSCALL", ptrace::resume_to_syscall(tid)),
            Expect::EventStop => ("PTRACE_CONT", ptrace::resume(tid)),
        };
        result.map_err(|errno| self.ptrace_error(tid, call, errno))?;
        self.threads[index].stopped = false;
        Ok(())
    }

    /// Waits until thread `index` reaches the stop expected. A signal the
    /// kernel was about to deliver is suppressed and remembered (sent
    /// again before detaching); any other stop is resumed past. A thread
    /// that ended while being seized is left unstopped (and dropped from
    /// the held threads by the caller); one that ended later is an error.
    fn wait_for(&mut self, index: usize, expect: Expect) -> Result<(), RemoteError> {
        let pid = self.pid;
        let tid = self.threads[index].tid;
        loop {
            let stop =
                ptrace::wait(tid).map_err(|errno| self.ptrace_error(tid, "waitpid", errno))?;
            match (stop, expect) {
                (Stop::Syscall, Expect::SyscallStop) | (Stop::Event(_), Expect::EventStop) => {
                    self.threads[index].stopped = true;
                    return Ok(());
                }
                (Stop::Gone(how), _) => {
                    if self.threads[index].saved.is_none() {
                        return Ok(());
                    }
                    return Err(RemoteError::Gone { pid, tid, how });
                }
                (Stop::Signal(signal), _) => {
                    self.threads[index].suppressed_signals.push(signal);
                    self.resume_thread(index, expect)?;
                }
                (Stop::Syscall | Stop::Event(_) | Stop::OtherEvent(_), _) => {
                    self.resume_thread(index, expect)?;
                }
            }
        }
    }

    /// Puts an error's process back (as found) and returns the error, or
    /// both errors when that failed too.
    fn undo_after(&mut self, error: RemoteError) -> RemoteError {
        match self.release(true) {
            Ok(()) => error,
            Err(undo) => RemoteError::UndoFailed {
                pid: self.pid,
                error: Box::new(error),
                undo: Box::new(undo),
            },
        }
    }

    /// Everything `detach` does, tolerant of a half-made hold; the first
    /// error is returned after everything else was tried.
    fn release(&mut self, resume: bool) -> Result<(), RemoteError> {
        if self.released {
            return Ok(());
        }
        self.released = true;
        let pid = self.pid;
        let mut first_error: Option<RemoteError> = None;
        let mut note = |result: Result<(), RemoteError>| {
            if let Err(error) = result {
                first_error.get_or_insert(error);
            }
        };
        // Threads caught between a resume and their stop are stopped first.
        for index in 0..self.threads.len() {
            if !self.threads[index].stopped {
                let tid = self.threads[index].tid;
                if ptrace::interrupt(tid).is_ok() {
                    note(self.wait_for(index, Expect::EventStop));
                }
            }
        }
        if let Some(scratch) = self.scratch.take() {
            let index = self.scratch_thread;
            let tid = self
                .threads
                .get(index)
                .map(|thread| thread.tid)
                .unwrap_or_default();
            let nr = libc::SYS_munmap as u64;
            note(
                self.run_syscall(
                    index,
                    scratch.code,
                    nr,
                    [scratch.code, 2 * PAGE_SIZE, 0, 0, 0, 0],
                )
                .and_then(|result| match result {
                    0 => Ok(()),
                    failed => Err(RemoteError::Scratch {
                        pid,
                        tid,
                        what: "unmapping the scratch pages",
                        nr,
                        errno: Errno::from_raw_os_error(-failed as i32),
                    }),
                }),
            );
        }
        for index in 0..self.threads.len() {
            let thread = &self.threads[index];
            let tid = thread.tid;
            if !thread.stopped {
                continue;
            }
            if let Some(saved) = thread.saved {
                note(self.put_back_registers(tid, &saved));
            }
            for &signal in &self.threads[index].suppressed_signals {
                note(
                    ptrace::tgkill(pid, tid, signal)
                        .map_err(|errno| self.ptrace_error(tid, "tgkill", errno)),
                );
            }
            if let Some(mask) = self.threads[index].mask {
                note(
                    ptrace::set_signal_mask(tid, mask)
                        .map_err(|errno| self.ptrace_error(tid, "PTRACE_SETSIGMASK", errno)),
                );
            }
        }
        if !resume && !self.was_stopped {
            // Queued while every thread is held: the first thread detached
            // takes it and stops the whole process.
            if let Some(process) = rustix::process::Pid::from_raw(pid as i32) {
                note(
                    rustix::process::kill_process(process, rustix::process::Signal::STOP)
                        .map_err(|errno| self.ptrace_error(pid, "kill(SIGSTOP)", errno)),
                );
            }
        }
        for thread in &self.threads {
            match ptrace::detach(thread.tid) {
                Ok(()) | Err(Errno::SRCH) if !thread.stopped => {}
                Ok(()) => {}
                Err(errno) => note(Err(self.ptrace_error(thread.tid, "PTRACE_DETACH", errno))),
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    fn put_back_registers(&self, tid: u32, saved: &Registers) -> Result<(), RemoteError> {
        saved
            .write(tid)
            .map_err(|errno| self.ptrace_error(tid, "PTRACE_SETREGS", errno))?;
        let now = Registers::read(tid)
            .map_err(|errno| self.ptrace_error(tid, "PTRACE_GETREGS", errno))?;
        let differing: Vec<String> = saved
            .named()
            .iter()
            .zip(now.named())
            .filter(|(before, after)| before.1 != after.1)
            .map(|(before, after)| format!("{} {:#x} is {:#x}", before.0, before.1, after.1))
            .collect();
        if differing.is_empty() {
            Ok(())
        } else {
            Err(RemoteError::RegistersNotRestored {
                pid: self.pid,
                tid,
                fields: differing.join(", "),
            })
        }
    }
}

/// The stop a wait is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A syscall entry or exit stop.
    SyscallStop,
    /// `PTRACE_EVENT_STOP` (interrupt or group-stop).
    EventStop,
}

impl Drop for RemoteProcess {
    fn drop(&mut self) {
        let _ = self.release(true);
    }
}
