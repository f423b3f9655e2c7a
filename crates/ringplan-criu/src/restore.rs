//! `plan restore`: `criu restore` the tree left stopped, put each
//! process's rings back from its image (or, for a tree whose processes
//! shared rings, the whole tree's from its one tree image), then resume
//! the tree. On any
//! failure the restored tree is killed: a half-restored program must not
//! run.

use std::path::Path;
use std::time::{Duration, Instant};

use ringplan_kernel::procfs::task;

use crate::binary::Criu;
use crate::error::CriuError;
use crate::manifest::Manifest;
use crate::mover::{kill, resume, RingMover};
use crate::thread_ids;

/// How long `plan restore` waits for exiting tasks that hold the
/// checkpoint's thread ids (the killed originals) to be reaped.
const ID_WAIT: Duration = Duration::from_secs(10);

/// What a restore did and how long each part took.
#[derive(Debug, Clone)]
pub struct Restored {
    /// The restored tree's root.
    pub root_pid: u32,
    /// Every restored process, the root first.
    pub processes: Vec<u32>,
    /// The processes that got rings back.
    pub with_rings: Vec<u32>,
    /// Waiting for the checkpoint's thread ids to be free (the killed
    /// originals reaped) before criu restore could start.
    pub waited_for_ids: Duration,
    /// `criu restore`.
    pub criu_restore: Duration,
    /// Putting the rings back, all processes.
    pub put_back: Duration,
    /// From the start to every process resumed.
    pub total: Duration,
}

/// Restores the checkpoint in `dir`; `criu_args` go to `criu restore`.
pub fn restore(
    criu: &Criu,
    dir: &Path,
    criu_args: &[String],
    mover: &mut dyn RingMover,
) -> Result<Restored, CriuError> {
    let started = Instant::now();
    let manifest = Manifest::read(dir)?;
    if !manifest.processes.is_empty() {
        mover
            .check_kernel()
            .map_err(|cause| CriuError::KernelCannot {
                cause: cause.to_string(),
            })?;
    }
    let waiting = Instant::now();
    thread_ids::wait_until_free(&manifest.thread_ids, ID_WAIT)?;
    let waited_for_ids = waiting.elapsed();
    let restoring = Instant::now();
    let root_pid = criu.restore(dir, criu_args)?;
    let criu_restore = restoring.elapsed();
    let processes = task::tree(root_pid).unwrap_or_else(|_| vec![root_pid]);
    let kill_all = |processes: &[u32]| {
        for &pid in processes.iter().rev() {
            kill(pid);
        }
    };
    let putting = Instant::now();
    if let Some(tree_image) = &manifest.tree_image {
        // The tree's processes shared rings: put back together, from the
        // one tree image, into the restored tree (the same pids).
        if let Err(cause) = mover.put_back_tree(root_pid, &dir.join(tree_image)) {
            kill_all(&processes);
            return Err(CriuError::RestoreRings {
                pid: root_pid,
                cause: cause.to_string(),
            });
        }
    }
    let each = if manifest.tree_image.is_some() {
        &[][..]
    } else {
        &manifest.processes[..]
    };
    for process in each {
        let image = manifest.image_path(dir, process);
        if let Err(cause) = mover.put_back(process.pid, &image) {
            kill_all(&processes);
            return Err(CriuError::RestoreRings {
                pid: process.pid,
                cause: cause.to_string(),
            });
        }
    }
    let put_back = putting.elapsed();
    for &pid in &processes {
        if let Err(errno) = resume(pid) {
            kill_all(&processes);
            return Err(CriuError::RestoreResume {
                cause: format!("resuming process {pid}: {errno}"),
            });
        }
    }
    Ok(Restored {
        root_pid,
        with_rings: manifest
            .processes
            .iter()
            .map(|process| process.pid)
            .collect(),
        processes,
        waited_for_ids,
        criu_restore,
        put_back,
        total: started.elapsed(),
    })
}
