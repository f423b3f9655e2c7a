//! What can go wrong around CRIU, each with what a user needs to act on it.

use std::path::PathBuf;

/// A failed checkpoint or restore, or a `criu` that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CriuError {
    #[error("criu was not found on PATH, in /usr/local/sbin or /usr/sbin (scripts/criu builds a tested one; --criu PATH names another)")]
    NotFound,
    #[error("cannot run {path}")]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} --version printed no \"Version:\" line ({output:?})")]
    VersionUnknown { path: PathBuf, output: String },
    #[error("{path} is CRIU {version}, which ringplan was not tested with (tested: {tested})")]
    UntestedVersion {
        path: PathBuf,
        version: String,
        tested: String,
    },
    #[error("criu {action} failed ({status}): {last_error} (log: {})", log.display())]
    Failed {
        action: &'static str,
        status: String,
        log: PathBuf,
        last_error: String,
    },
    #[error("criu restore left no readable pid in {}", path.display())]
    Pidfile {
        path: PathBuf,
        #[source]
        source: Option<std::io::Error>,
    },
    #[error("thread id {id}, which criu restores a checkpointed thread with, is held by {holder}; criu restores ids as they were (end that task, or checkpoint the program in a pid namespace of its own)")]
    ThreadIdTaken { id: u32, holder: String },
    #[error("{}: {what}", dir.display())]
    Directory { dir: PathBuf, what: String },
    #[error("reading process {pid}'s tree")]
    Tree {
        pid: u32,
        #[source]
        source: ringplan_kernel::procfs::ProcfsError,
    },
    #[error("{cause}; nothing was done")]
    KernelCannot { cause: String },
    #[error("taking the rings out of process {pid} failed (nothing was checkpointed; every process is running as before): {cause}")]
    TakeOut { pid: u32, cause: String },
    #[error("process {pid} keeps io threads after its rings are gone: {threads}; this kernel keeps a thread's last io-wq worker until the thread exits, and criu cannot dump io threads (Linux 6.18 ends them with the last ring). Nothing was checkpointed; every process runs on as before")]
    IoThreadsLeft { pid: u32, threads: String },
    #[error("{during}; putting the rings back into process {pid} failed too: {cause} (its image is {}; `plan exec IMAGE --pid {pid}` retries)", image.display())]
    PutBackAfter {
        during: String,
        pid: u32,
        image: PathBuf,
        cause: String,
    },
    #[error("restore: putting the rings back into restored process {pid} failed: {cause} (the restored processes were killed)")]
    RestoreRings { pid: u32, cause: String },
    #[error("restore: {cause} (the restored processes were killed)")]
    RestoreResume { cause: String },
    #[error("writing {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
