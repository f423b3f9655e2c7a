//! [`ContinuityError`]: why placing ring memory, advancing positions or
//! putting entries back did not happen (everything created was released).

use rustix::io::Errno;

/// Why a continuity step failed. Every variant says what was asked; the
/// process is as it was before the call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContinuityError {
    /// The kernel predates `IORING_SETUP_NO_MMAP`.
    #[error(
        "this kernel ({release}) cannot place io_uring memory at the program's addresses: \
         IORING_SETUP_NO_MMAP needs Linux 6.5"
    )]
    NoMmapUnsupported { release: String },
    /// A placement or parameter that cannot describe this ring.
    #[error("{0}")]
    BadRequest(String),
    /// A recorded range is already mapped in the process restored into.
    #[error("{what} {addr:#x}+{len:#x} is already mapped in the process restored into")]
    RangeTaken {
        what: &'static str,
        addr: u64,
        len: u64,
    },
    /// The program's own memory, where a ring restored into its process
    /// lived, is not there (or not writable).
    #[error(
        "{what} {addr:#x}+{len:#x} is not the program's writable memory in the target process"
    )]
    ProgramMemoryMissing {
        what: &'static str,
        addr: u64,
        len: u64,
    },
    /// A syscall failed.
    #[error("{call} failed: {errno}")]
    Syscall { call: &'static str, errno: Errno },
    /// An entry the kernel has no way to post as recorded.
    #[error("cannot reproduce {0}")]
    CannotReproduce(String),
    /// The kernel's positions are not where the steps should have put them.
    #[error("{0}")]
    Diverged(String),
}

/// Maps an errno to [`ContinuityError::Syscall`] naming `call`.
pub(super) fn syscall(call: &'static str) -> impl Fn(Errno) -> ContinuityError {
    move |errno| ContinuityError::Syscall { call, errno }
}
