//! What the checkpoint and restore need from the rest of ringplan, as a
//! trait: take a process's rings out (`plan dump --detach`) and put them
//! back (`plan exec --pid`). The CLI implements it with ringplan-dump and
//! ringplan-exec; the CRIU orchestration stays independent of both.

use std::path::Path;
use std::time::Instant;

/// Moves a process's rings out of it and back.
pub trait RingMover {
    /// Whether this kernel can put rings back where their programs had
    /// them; checked before a checkpoint or restore changes anything (a
    /// checkpoint that could not be restored here is refused).
    fn check_kernel(&self) -> Result<(), Box<dyn std::error::Error>>;

    /// Takes every ring out of `pid`: drained, dumped into `image`
    /// (written and synced before anything is closed), then closed and
    /// unmapped; the process is left stopped. Returns when it was stopped
    /// (what comes before, such as loading BPF, does not stop it).
    fn take_out(&mut self, pid: u32, image: &Path) -> Result<Instant, Box<dyn std::error::Error>>;

    /// Recreates the rings of `image` inside `pid`, where the program left
    /// them, and leaves the process stopped (the caller resumes it).
    fn put_back(&mut self, pid: u32, image: &Path) -> Result<(), Box<dyn std::error::Error>>;
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
