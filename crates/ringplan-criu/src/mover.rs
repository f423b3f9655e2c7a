//! What the checkpoint and restore need from the rest of ringplan, as a
//! trait: take a process's rings out (`plan dump --detach`) and put them
//! back (`plan exec --pid`). The CLI implements it with ringplan-dump and
//! ringplan-exec; the CRIU orchestration stays independent of both.

use std::path::{Path, PathBuf};
use std::time::Instant;

/// A mover's failure, as it words it (it may come from another thread).
pub type MoverError = Box<dyn std::error::Error + Send + Sync>;

/// Moves a process's rings out of it and back.
pub trait RingMover {
    /// Whether this kernel can put rings back where their programs had
    /// them; checked before a checkpoint or restore changes anything (a
    /// checkpoint that could not be restored here is refused).
    fn check_kernel(&self) -> Result<(), MoverError>;

    /// Takes every ring out of `pid`: drained, dumped into `image`
    /// (written and synced before anything is closed), then closed and
    /// unmapped; the process is left stopped. Returns when it was stopped
    /// (what comes before, such as loading BPF, does not stop it).
    fn take_out(&mut self, pid: u32, image: &Path) -> Result<Instant, MoverError>;

    /// Takes the rings out of every process of `processes` (pid, image),
    /// one result each, in order. A mover may do them at once: each
    /// process is stopped only for its own take-out, and their waits for
    /// the kernel's ring teardown overlap. By default one after another,
    /// stopping at the first failure (the rest are not tried: an empty
    /// list past it).
    fn take_out_all(&mut self, processes: &[(u32, PathBuf)]) -> Vec<Result<Instant, MoverError>> {
        let mut results = Vec::new();
        for (pid, image) in processes {
            let result = self.take_out(*pid, image);
            let failed = result.is_err();
            results.push(result);
            if failed {
                break;
            }
        }
        results
    }

    /// Recreates the rings of `image` inside `pid`, where the program left
    /// them, and leaves the process stopped (the caller resumes it).
    fn put_back(&mut self, pid: u32, image: &Path) -> Result<(), MoverError>;

    /// Takes every ring out of every process of the tree of `root` at
    /// once, into one tree image (`plan dump --tree --detach`): for a tree
    /// whose processes share rings, which no process's own image could
    /// hold. Every process of the tree is left stopped; a refusal leaves
    /// the tree as found. Returns when the first process was stopped.
    fn take_out_tree(&mut self, root: u32, image: &Path) -> Result<Instant, MoverError>;

    /// Recreates the rings of tree image `image` in the tree of `root`
    /// (`plan exec --pid` of a tree plan), each process's where its
    /// program left them, and leaves every process stopped.
    fn put_back_tree(&mut self, root: u32, image: &Path) -> Result<(), MoverError>;
}

/// Resumes a stopped process (`SIGCONT`).
pub fn resume(pid: u32) -> Result<(), rustix::io::Errno> {
    let pid = rustix::process::Pid::from_raw(pid as i32).ok_or(rustix::io::Errno::SRCH)?;
    rustix::process::kill_process(pid, rustix::process::Signal::CONT)
}

/// Kills a process (`SIGKILL`).
pub fn kill(pid: u32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}
