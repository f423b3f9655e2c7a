//! Why the BPF backend could not read a process ([`BpfError`]), and which of
//! its two iterator passes an error came from ([`Pass`]).

use std::io;

use super::records;

/// Why the BPF backend could not read a process.
///
/// A variant that wraps a system or libbpf error keeps it as its
/// [`source`](std::error::Error::source), not in its own message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BpfError {
    /// BPF cannot be used here (no BPF, no BTF, not privileged, or the
    /// program does not verify on this kernel). A caller should fall back
    /// to another backend.
    #[error("BPF is unavailable: {stage}")]
    Unavailable {
        stage: &'static str,
        #[source]
        source: libbpf_rs::Error,
    },
    /// This process is in a child pid namespace: the BPF program sees the
    /// initial namespace's task ids, which neither `getpid` nor `/proc`
    /// here show.
    #[error("BPF is unavailable: plan runs in a child pid namespace, and BPF reports the initial namespace's task ids, which this namespace's getpid and /proc do not show; run plan in the initial pid namespace")]
    ChildPidNamespace,
    /// The kernel's io_uring structures lack a field the program reads.
    #[error("kernel layout not recognised: missing field {field}")]
    LayoutNotRecognised { field: String },
    /// `pidfd_getfd` was refused.
    #[error(
        "permission denied copying fd {fd} of pid {pid} (pidfd_getfd): reading registered files and buffers \
         needs ptrace rights over the target (same user with ptrace allowed by Yama, or CAP_SYS_PTRACE)"
    )]
    PermissionDenied { pid: u32, fd: i32 },
    /// Attaching an iterator link failed.
    #[error("attaching the {pass} iterator to pid {pid}")]
    Attach {
        pass: Pass,
        pid: u32,
        #[source]
        source: io::Error,
    },
    /// Creating or reading an iterator failed.
    #[error("reading the {pass} iterator")]
    IterRead {
        pass: Pass,
        #[source]
        source: io::Error,
    },
    /// The BPF program wrote something this side cannot parse.
    #[error("malformed record from the {pass} iterator at byte {offset}: {reason}")]
    MalformedRecord {
        pass: Pass,
        offset: usize,
        reason: String,
    },
    /// The records parse but do not fit together (a bug on one side).
    #[error("inconsistent records from the {pass} iterator: {reason}")]
    Inconsistent { pass: Pass, reason: String },
    /// The target changed between the two passes (an fd closed, a table
    /// resized, the process exited).
    #[error("pid {pid} changed while it was read: {what}")]
    TargetChanged { pid: u32, what: String },
    /// A chunk of a registered table was asked for and not answered.
    #[error(
        "the {table} table of ring {ring:#x} came back incomplete: slots {start}..{end} missing"
    )]
    IncompleteTable {
        ring: u64,
        table: String,
        start: u32,
        end: u32,
    },
    /// A registered buffer slot holds a kernel-owned buffer (e.g. ublk's),
    /// which an image cannot describe.
    #[error("ring {ring:#x} buffer slot {index} holds a kernel-owned buffer, which cannot be checkpointed")]
    KernelBuffer { ring: u64, index: u32 },
    /// A system call of the dumper's own failed.
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    /// The chunk request map could not be written.
    #[error("writing the chunk request map")]
    RequestMap {
        #[source]
        source: libbpf_rs::Error,
    },
    /// HZ could not be told from the clock and measuring it failed.
    #[error("CONFIG_HZ is unknown and measuring it failed: {reason}")]
    MeasureHz { reason: String },
}

impl BpfError {
    /// Whether BPF cannot read this kernel at all (the program does not
    /// load, or the io_uring layout is unknown), so that falling back to
    /// another backend is the right response.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            BpfError::Unavailable { .. }
                | BpfError::LayoutNotRecognised { .. }
                | BpfError::ChildPidNamespace
        )
    }
}

/// Which iterator an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Pass A: the target's fds.
    TargetFds,
    /// Pass B: the dumper's own fds, answering ring, chunk and probe
    /// requests.
    Chunks,
    /// Pass T: the target's threads (their registered ring fds).
    Threads,
}

impl std::fmt::Display for Pass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Pass::TargetFds => "target-fd (pass A)",
            Pass::Chunks => "chunk (pass B)",
            Pass::Threads => "thread (pass T)",
        })
    }
}

/// A record that does not parse, as the error of `pass`.
pub(super) fn malformed(pass: Pass, error: records::MalformedRecord) -> BpfError {
    BpfError::MalformedRecord {
        pass,
        offset: error.offset,
        reason: error.reason,
    }
}
