//! The executor's errors: what preflight refused (nothing was done), what
//! failed in the system while checking or running (everything done was
//! undone), and what went wrong opening an input.

use ringplan_image::{FileType, ObjectId};
use ringplan_plan::ExternalReason;
use rustix::io::Errno;

use crate::continuity::ContinuityError;
use crate::remote::RemoteError;
use crate::reopen::{recorded_phrase, type_phrase};

/// Why the memory hook could not put memory in place.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MemoryError {
    /// A range a buffer needs is already mapped in this process; mapping
    /// over it would destroy memory the process uses.
    #[error("buffer memory {start:#x}-{end:#x} is already mapped in this process ({by})")]
    RangeTaken { start: u64, end: u64, by: String },
    /// `mmap` refused a range.
    #[error("mmap of {start:#x}-{end:#x} failed: {errno}")]
    Map { start: u64, end: u64, errno: Errno },
    /// A range is not a valid user-space range.
    #[error("buffer range {start:#x}+{len:#x} is not a user-space range")]
    BadRange { start: u64, len: u64 },
    /// `/proc/self/maps` could not be read.
    #[error("reading /proc/self/maps: {0}")]
    Maps(std::io::Error),
    /// Whatever a caller's own hook reports.
    #[error("{0}")]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

/// Why a plan was not (or not completely) executed.
///
/// [`ExecError::is_preflight`] tells the two families apart: a preflight
/// refusal was found before anything was done, and is about the input or
/// the environment; the `...Failed` variants are failures of the system,
/// while checking ([`ExecError::CheckSyscallFailed`], nothing was done) or
/// during the run (everything done was undone).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    /// A target fd number is already open in this process.
    #[error(
        "preflight: fd {fd} is already open in this process; the plan installs an object there"
    )]
    FdTaken { fd: i32 },
    /// An external input was neither supplied nor allowed to be substituted.
    #[error(
        "preflight: step {step} needs an fd for {object} (a {}), which is an external input because {}; \
         supply it (--input {}=PATH) or allow a substitute (--substitute-external)",
        file_type.name(), reason.describe(), object.0
    )]
    MissingInput {
        step: usize,
        object: ObjectId,
        file_type: FileType,
        reason: ExternalReason,
    },
    /// An input was supplied for an object the plan does not take as an
    /// external input.
    #[error("preflight: an input was supplied for {object}, which is not an external input of this plan")]
    UnexpectedInput { object: ObjectId },
    /// `RLIMIT_NOFILE` is too small for the fds the plan uses.
    #[error(
        "preflight: the plan uses fd numbers up to {needed} (RLIMIT_NOFILE must be at least {needed}), \
         but the limit is {soft} (hard {hard})"
    )]
    FdLimit { needed: u64, soft: u64, hard: u64 },
    /// `RLIMIT_MEMLOCK` is too small for the registered buffers, and the
    /// process lacks `CAP_IPC_LOCK`.
    #[error(
        "preflight: registered buffers pin {needed} bytes, above RLIMIT_MEMLOCK ({limit} bytes), \
         and this process lacks CAP_IPC_LOCK"
    )]
    MemlockLimit { needed: u64, limit: u64 },
    /// The running kernel refuses something the plan uses.
    #[error("preflight: this kernel does not support {what}: {errno}")]
    KernelUnsupported { what: String, errno: Errno },
    /// A ring's SQ thread is pinned to a CPU this process may not use.
    #[error(
        "preflight: step {step} pins an SQ thread to CPU {cpu}, which this process may not run on"
    )]
    CpuUnavailable { step: usize, cpu: u32 },
    /// The memory hook says the memory cannot be put in place.
    #[error("preflight: {0}")]
    MemoryUnavailable(MemoryError),
    /// The plan restores a ring where the program left it, and this kernel
    /// cannot put a ring's memory at chosen addresses.
    #[error(
        "preflight: ring {ring}: this kernel ({release}) cannot place io_uring memory at the \
         program's addresses: IORING_SETUP_NO_MMAP needs Linux 6.5 (--allow-moved-rings restores \
         the rings' kernel objects only)"
    )]
    ContinuityUnsupported { ring: ObjectId, release: String },
    /// A range where a ring's memory goes is already mapped here.
    #[error(
        "preflight: step {step} places ring {ring}'s {what} at {addr:#x}+{len:#x}, which is already \
         mapped in this process ({by})"
    )]
    RingMemoryTaken {
        step: usize,
        ring: ObjectId,
        what: &'static str,
        addr: u64,
        len: u64,
        by: String,
    },
    /// The placed memory cannot hold a ring of the recorded sizes on this
    /// kernel.
    #[error("preflight: step {step} (ring {ring}): {problem}")]
    RingMemoryTooSmall {
        step: usize,
        ring: ObjectId,
        problem: String,
    },
    /// A path the plan reopens names another type of file now than the
    /// image recorded (a FIFO, whose open would block, a directory, a
    /// device where a regular file was). Found with `stat`, without
    /// opening anything.
    #[error(
        "preflight: step {step} opens {} at {path:?}: the image says {}, but it is {} now",
        object_label(*object), recorded_phrase(*recorded), type_phrase(*found)
    )]
    PathTypeChanged {
        step: usize,
        object: Option<ObjectId>,
        path: String,
        recorded: Option<FileType>,
        found: FileType,
    },
    /// A path the plan reopens cannot be looked up (it is gone, or this
    /// process may not search its directories): its open would fail.
    #[error("preflight: step {step} opens {} at {path:?}, which cannot be looked up: {errno}", object_label(*object))]
    PathUnavailable {
        step: usize,
        object: Option<ObjectId>,
        path: String,
        errno: Errno,
    },
    /// A range where a ring's memory goes is already mapped in the process
    /// restored into.
    #[error(
        "preflight: step {step} places ring {ring}'s {what} at {addr:#x}+{len:#x}, which is already \
         mapped in process {pid} ({by})"
    )]
    RingMemoryTakenIn {
        pid: u32,
        step: usize,
        ring: ObjectId,
        what: &'static str,
        addr: u64,
        len: u64,
        by: String,
    },
    /// A ring on the program's own memory (`IORING_SETUP_NO_MMAP`) is
    /// restored into a process that does not have that memory (mapped,
    /// writable, anonymous) at the recorded addresses.
    #[error(
        "preflight: step {step}: ring {ring} lived in the program's own memory at {addr:#x}+{len:#x} \
         ({what}), which process {pid} does not have as writable anonymous memory ({found}); \
         restore into the process whose memory that is"
    )]
    ProgramMemoryMissingIn {
        pid: u32,
        step: usize,
        ring: ObjectId,
        what: &'static str,
        addr: u64,
        len: u64,
        found: String,
    },
    /// A `SINGLE_ISSUER` ring's recorded owner thread is not a thread of
    /// the process restored into: no other thread may submit to it.
    #[error(
        "preflight: step {step}: ring {ring} (IORING_SETUP_SINGLE_ISSUER) is owned by thread {tid}, \
         which process {pid} does not have"
    )]
    OwnerThreadMissing {
        pid: u32,
        step: usize,
        ring: ObjectId,
        tid: u32,
    },
    /// A registered ring fd's recorded thread is not a thread of the
    /// process restored into: the kernel keeps the slots per thread.
    #[error(
        "preflight: step {step}: ring {ring} is registered at ring-fd offset {offset} of thread {tid}, \
         which process {pid} does not have"
    )]
    RingFdThreadMissing {
        pid: u32,
        step: usize,
        ring: ObjectId,
        tid: u32,
        offset: u32,
    },
    /// Inputs were supplied for a restore into another process, which
    /// cannot take this process's fds yet.
    #[error(
        "preflight: plan exec --pid cannot take the caller's fds yet (an input was supplied for \
         {object}); allow stand-ins opened inside the process (--substitute-external)"
    )]
    InputsInProcess { object: ObjectId },
    /// An external input of a restore into another process, without
    /// stand-ins allowed: this process's fds cannot be passed in yet.
    #[error(
        "preflight: step {step} needs an fd for {object} (a {}), which is an external input because {}; \
         plan exec --pid cannot take the caller's fds yet: allow stand-ins opened inside the process \
         (--substitute-external)",
        file_type.name(), reason.describe()
    )]
    MissingInputIn {
        step: usize,
        object: ObjectId,
        file_type: FileType,
        reason: ExternalReason,
    },
    /// A target fd number is already open in the process restored into.
    #[error(
        "preflight: fd {fd} is already open in process {pid}; the plan installs an object there"
    )]
    FdTakenIn { pid: u32, fd: i32 },
    /// A target fd is already open in the process restored into, and holds
    /// another object than the one the plan would create there.
    #[error(
        "preflight: fd {fd} of process {pid} holds {found}, but the image has {recorded} there: \
         another object, not adopted"
    )]
    NotTheRecordedObject {
        pid: u32,
        fd: i32,
        recorded: String,
        found: String,
    },
    /// A buffer range is partly mapped in the process restored into, or
    /// mapped there as something other than its own writable memory.
    #[error(
        "preflight: buffer memory {start:#x}-{end:#x} is mapped in process {pid}, but not wholly as its own writable memory ({by})"
    )]
    BufferTakenIn {
        pid: u32,
        start: u64,
        end: u64,
        by: String,
    },
    /// `RLIMIT_MEMLOCK` of the process restored into is too small for the
    /// registered buffers, and it lacks `CAP_IPC_LOCK`.
    #[error(
        "preflight: registered buffers pin {needed} bytes, above process {pid}'s RLIMIT_MEMLOCK \
         ({limit} bytes), and it lacks CAP_IPC_LOCK"
    )]
    MemlockLimitIn { pid: u32, needed: u64, limit: u64 },
    /// A personality's recorded credentials are not those of the thread
    /// that would register it (the kernel takes that thread's).
    #[error(
        "preflight: step {step} (ring {ring}): personality {id} has other credentials than the thread \
         that would register it ({difference}); the kernel registers the registering thread's \
         (--accept-restorer-creds registers them as they are)"
    )]
    PersonalityCredentials {
        step: usize,
        ring: ObjectId,
        id: u32,
        difference: String,
    },
    /// The process restored into could not be held, or a `/proc` file of it
    /// read, before anything was done.
    #[error("preflight: process {pid}: {cause}")]
    ProcessUnavailable { pid: u32, cause: String },
    /// Holding the process restored into failed (nothing was done).
    #[error("preflight: {0}")]
    Attach(#[source] RemoteError),
    /// Another ringplan command (a `--freeze`, `plan freeze`, another
    /// `exec --pid`) holds the process and did not let go in time, or its
    /// lock could not be taken; nothing was done. The cause is in the
    /// message.
    #[error("{0}")]
    Held(ringplan_kernel::hold_lock::HoldLockError),
    /// The process restored into could not be driven any more during the
    /// run; what could be undone in it was.
    #[error("step {index} ({op}): the process could not be driven: {cause}; everything done that could be reached was undone")]
    ProcessLost {
        index: usize,
        op: &'static str,
        cause: RemoteError,
    },
    /// Letting the process restored into go failed after the run (its
    /// restored fds stay).
    #[error("letting process go after the restore: {0}")]
    Detach(RemoteError),
    /// A check could not be made because a syscall failed: a failure of
    /// the system, not a refusal of the plan (nothing was done).
    #[error("preflight: {what} failed: {errno}")]
    CheckSyscallFailed { what: &'static str, errno: Errno },
    /// A step failed; everything done before it was undone.
    #[error("step {index} ({op}{}): {call} failed: {errno}; everything done was undone", object_suffix(*object))]
    StepFailed {
        index: usize,
        op: &'static str,
        object: Option<ObjectId>,
        call: &'static str,
        errno: Errno,
    },
    /// The memory hook failed at the barrier; everything done was undone.
    ///
    /// The hook's error is part of this one's message, in the middle of it,
    /// so it is a field and not a [`std::error::Error::source`]: a printer
    /// of error chains would otherwise print it twice.
    #[error("step {index} (memory_barrier): {cause}; everything done was undone")]
    MemoryRestoreFailed { index: usize, cause: MemoryError },
    /// The file an `open_file` step opened (without blocking) is another
    /// type than the image recorded: the path changed after preflight
    /// looked at it. Everything done was undone.
    #[error(
        "step {index} (open_file{}): {path:?} is {} now, but the image says {}; everything done was undone",
        object_suffix(*object), type_phrase(*found), recorded_phrase(*recorded)
    )]
    OpenedTypeChanged {
        index: usize,
        object: Option<ObjectId>,
        path: String,
        recorded: Option<FileType>,
        found: FileType,
    },
    /// A continuity step (placing ring memory, setting a ring up on it,
    /// restoring completions, queueing SQEs) failed; everything done was
    /// undone. The cause is in the message, so it is not also a `source`.
    #[error("step {index} ({op}{}): {cause}; everything done was undone", object_suffix(*object))]
    ContinuityFailed {
        index: usize,
        op: &'static str,
        object: Option<ObjectId>,
        cause: ContinuityError,
    },
    /// A tree plan and the processes it was given do not fit: not a tree
    /// plan, a tree of another shape, or a tree plan run in one process.
    #[error("preflight: {0}")]
    TreeMismatch(String),
    /// A tree plan: what refused or failed in one process's part. After a
    /// failure every part that ran, in every process, was undone.
    #[error("process {pid}: {cause}")]
    InTreeProcess { pid: u32, cause: Box<ExecError> },
}

fn object_suffix(object: Option<ObjectId>) -> String {
    object.map_or_else(String::new, |id| format!(" of {id}"))
}

fn object_label(object: Option<ObjectId>) -> String {
    object.map_or_else(|| "a file".to_owned(), |id| id.to_string())
}

impl ExecError {
    /// Whether preflight refused the plan (nothing was done); such errors
    /// are about the input or the environment, not a failing system.
    pub fn is_preflight(&self) -> bool {
        // Exhaustive, so that a new variant has to say which family it is.
        match self {
            ExecError::FdTaken { .. }
            | ExecError::MissingInput { .. }
            | ExecError::UnexpectedInput { .. }
            | ExecError::FdLimit { .. }
            | ExecError::MemlockLimit { .. }
            | ExecError::KernelUnsupported { .. }
            | ExecError::CpuUnavailable { .. }
            | ExecError::MemoryUnavailable(_)
            | ExecError::ContinuityUnsupported { .. }
            | ExecError::RingMemoryTaken { .. }
            | ExecError::RingMemoryTooSmall { .. }
            | ExecError::PathTypeChanged { .. }
            | ExecError::PathUnavailable { .. }
            | ExecError::RingMemoryTakenIn { .. }
            | ExecError::ProgramMemoryMissingIn { .. }
            | ExecError::OwnerThreadMissing { .. }
            | ExecError::RingFdThreadMissing { .. }
            | ExecError::InputsInProcess { .. }
            | ExecError::MissingInputIn { .. }
            | ExecError::FdTakenIn { .. }
            | ExecError::NotTheRecordedObject { .. }
            | ExecError::BufferTakenIn { .. }
            | ExecError::MemlockLimitIn { .. }
            | ExecError::ProcessUnavailable { .. }
            | ExecError::PersonalityCredentials { .. }
            | ExecError::TreeMismatch(_)
            | ExecError::Attach(_) => true,
            ExecError::InTreeProcess { cause, .. } => cause.is_preflight(),
            ExecError::CheckSyscallFailed { .. }
            | ExecError::Held(_)
            | ExecError::StepFailed { .. }
            | ExecError::OpenedTypeChanged { .. }
            | ExecError::MemoryRestoreFailed { .. }
            | ExecError::ContinuityFailed { .. }
            | ExecError::ProcessLost { .. }
            | ExecError::Detach(_) => false,
        }
    }

    /// The failing step's index, for run errors.
    pub fn step(&self) -> Option<usize> {
        match self {
            ExecError::StepFailed { index, .. }
            | ExecError::MemoryRestoreFailed { index, .. }
            | ExecError::OpenedTypeChanged { index, .. }
            | ExecError::ContinuityFailed { index, .. }
            | ExecError::ProcessLost { index, .. } => Some(*index),
            ExecError::InTreeProcess { cause, .. } => cause.step(),
            _ => None,
        }
    }

    /// `cause` in process `pid` of a tree.
    pub(crate) fn in_tree_process(pid: u32, cause: ExecError) -> ExecError {
        ExecError::InTreeProcess {
            pid,
            cause: Box::new(cause),
        }
    }
}

/// Why [`crate::Inputs::open`] could not supply a file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// The file could not be opened: the caller named a wrong path.
    #[error("cannot open {path}: {errno}")]
    Open { path: String, errno: Errno },
    /// The recorded status flags could not be set on the opened file: a
    /// failure of the system.
    #[error("cannot set the recorded status flags of {path}: fcntl(F_SETFL): {errno}")]
    StatusFlags { path: String, errno: Errno },
    /// The opened file could not be moved above the plan's fd floor: a
    /// failure of the system.
    #[error("fcntl(F_DUPFD_CLOEXEC): {errno}")]
    MoveAboveFloor { errno: Errno },
}
