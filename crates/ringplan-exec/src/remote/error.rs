//! [`RemoteError`]: why syscalls could not be run in another process, or
//! why it could not be left as it was found. Each names the pid, the
//! thread, the call and the errno it is about.

use ringplan_kernel::procfs::ProcfsError;
use rustix::io::Errno;

/// Why a process may not be ptraced, where it can be told.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PtraceDenial {
    /// Another tracer holds the thread (`TracerPid` of `/proc/PID/status`:
    /// the tracing thread's id).
    AlreadyTraced { tracer: u32 },
    /// The process belongs to another user and we lack `CAP_SYS_PTRACE`.
    NotOurUser { target_uid: u32, our_uid: u32 },
    /// Yama's `ptrace_scope` forbids it (1: only descendants, 2: only
    /// `CAP_SYS_PTRACE`, 3: nobody).
    Yama { scope: u32 },
    /// None of the above explains it (an LSM, a non-dumpable process, ...).
    Unknown,
}

impl std::fmt::Display for PtraceDenial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PtraceDenial::AlreadyTraced { tracer } => {
                write!(f, "it is already traced by thread {tracer}")
            }
            PtraceDenial::NotOurUser {
                target_uid,
                our_uid,
            } => write!(
                f,
                "it belongs to uid {target_uid}, we are uid {our_uid} without CAP_SYS_PTRACE"
            ),
            PtraceDenial::Yama { scope } => write!(
                f,
                "Yama's /proc/sys/kernel/yama/ptrace_scope is {scope} ({})",
                match scope {
                    1 => "only a process's ancestors may ptrace it",
                    2 => "only CAP_SYS_PTRACE may ptrace",
                    _ => "no process may ptrace",
                }
            ),
            PtraceDenial::Unknown => f.write_str(
                "the kernel does not say why (an LSM, or a process that is not dumpable)",
            ),
        }
    }
}

/// Why syscalls could not be run in a process, or it could not be put back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// No such process.
    #[error("process {pid} does not exist")]
    NoSuchProcess { pid: u32 },
    /// The process is a zombie or dead.
    #[error("process {pid} has exited")]
    Exited { pid: u32 },
    /// The process is exiting (`PF_EXITING`).
    #[error("process {pid} is exiting")]
    Exiting { pid: u32 },
    /// A thread runs under seccomp: a filter may forbid the syscalls we
    /// would inject (and strict mode forbids all but four). Refused before
    /// anything changed.
    #[error(
        "thread {tid} of process {pid} runs under seccomp {}: {}; refused before attaching",
        if *.mode == 1 { "strict mode" } else { "filters" },
        if *.mode == 1 { "it may only read, write, exit and sigreturn" } else { "a filter may forbid (or kill the process for) the syscalls we would run in it" }
    )]
    Seccomp { pid: u32, tid: u32, mode: u32 },
    /// The kernel refused `PTRACE_SEIZE` (or it would: another tracer).
    #[error("cannot ptrace thread {tid} of process {pid} ({errno}): {denial}")]
    PtraceDenied {
        pid: u32,
        tid: u32,
        errno: Errno,
        denial: PtraceDenial,
    },
    /// A thread the caller needs is not in the process.
    #[error("thread {tid} is not a thread of process {pid}")]
    NoSuchThread { pid: u32, tid: u32 },
    /// A thread the caller needs is an io thread (SQ thread, io-wq worker).
    #[error("thread {tid} of process {pid} is an io_uring io thread: it runs no user code and cannot be ptraced")]
    IoThread { pid: u32, tid: u32 },
    /// A syscall was asked of a thread we do not hold.
    #[error("thread {tid} of process {pid} is not held (attach did not ask for it)")]
    NotHeld { pid: u32, tid: u32 },
    /// A ptrace request or wait failed.
    #[error("{call} on thread {tid} of process {pid}: {errno}")]
    Ptrace {
        pid: u32,
        tid: u32,
        call: &'static str,
        errno: Errno,
    },
    /// A thread ended while we held the process.
    #[error("thread {tid} of process {pid} {how} while held")]
    Gone { pid: u32, tid: u32, how: String },
    /// An injected syscall did not stop where it should have.
    #[error("syscall {nr} injected in thread {tid} of process {pid}: {problem}")]
    Injection {
        pid: u32,
        tid: u32,
        nr: u64,
        problem: String,
    },
    /// Setting up or removing the scratch pages failed.
    #[error("{what} in process {pid} (thread {tid}): syscall {nr} returned {errno}")]
    Scratch {
        pid: u32,
        tid: u32,
        what: &'static str,
        nr: u64,
        errno: Errno,
    },
    /// Data for a syscall does not fit in the scratch data page.
    #[error("{len} bytes do not fit in the scratch data page ({capacity} bytes)")]
    ScratchTooSmall { len: usize, capacity: usize },
    /// Reading or writing the process's memory failed.
    #[error("{} {len} bytes at {addr:#x} in process {pid}", if *.write { "writing" } else { "reading" })]
    Memory {
        pid: u32,
        addr: u64,
        len: usize,
        write: bool,
        source: ProcfsError,
    },
    /// A `/proc` file of the process could not be read.
    #[error("reading /proc of process {pid}")]
    Procfs { pid: u32, source: ProcfsError },
    /// The thread is inside an rseq critical section whose abort handler
    /// does not carry the registered signature: the kernel would kill it
    /// when it resumes, and we cannot move it to its abort handler.
    #[error("thread {tid} of process {pid} is inside an rseq critical section (ip {ip:#x}) whose abort handler at {abort_ip:#x} lacks the registered signature")]
    RseqSignature {
        pid: u32,
        tid: u32,
        ip: u64,
        abort_ip: u64,
    },
    /// Registers read back after being put back differ from the recorded
    /// ones.
    #[error("registers of thread {tid} of process {pid} differ after being put back: {fields}")]
    RegistersNotRestored { pid: u32, tid: u32, fields: String },
    /// An operation failed, and so did putting the process back.
    #[error("{error}; putting process {pid} back failed too: {undo}")]
    UndoFailed {
        pid: u32,
        error: Box<RemoteError>,
        undo: Box<RemoteError>,
    },
}
