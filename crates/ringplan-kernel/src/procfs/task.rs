//! `/proc/PID/task`: a process's threads, their names, whether one is an
//! io_uring SQ thread, its io threads, and the processes a process's threads created
//! (`children`, for walking a process tree).

use super::{read_file, Process, ProcfsError};

/// The thread ids of `process`, from the entries of `/proc/PID/task`, in
/// directory order.
pub fn ids(process: Process) -> Result<Vec<u32>, ProcfsError> {
    let path = process.path("task");
    let entries = std::fs::read_dir(&path).map_err(|source| ProcfsError::io(&path, source))?;
    let mut ids = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| ProcfsError::io(&path, source))?;
        // Every entry is a thread id.
        if let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse().ok())
        {
            ids.push(tid);
        }
    }
    Ok(ids)
}

/// `/proc/PID/task/TID/comm`: the thread's name, with its newline.
pub fn comm(process: Process, tid: u32) -> Result<Vec<u8>, ProcfsError> {
    read_file(&process.path(&format!("task/{tid}/comm")))
}

/// The name an io_uring SQ thread gives itself when it first runs
/// (`iou-sqp-PID`); until then it carries its creator's name.
pub const SQ_THREAD_NAME_PREFIX: &[u8] = b"iou-sqp";

/// The name an io-wq worker gives itself when it first runs
/// (`iou-wrk-TID`, after the thread it works for); until then it carries
/// its creator's name.
pub const IO_WORKER_NAME_PREFIX: &[u8] = b"iou-wrk";

/// Whether thread `tid` of `process` is an io_uring SQ thread that has run
/// (its `comm` starts with [`SQ_THREAD_NAME_PREFIX`]); false when it cannot
/// be read.
pub fn is_running_sq_thread(process: Process, tid: u32) -> bool {
    comm(process, tid).is_ok_and(|comm| comm.starts_with(SQ_THREAD_NAME_PREFIX))
}

/// The io threads of `process` (SQ threads and io-wq workers: tasks
/// flagged `PF_IO_WORKER`), as "TID (comm)"; threads that end meanwhile
/// are left out.
pub fn io_threads(process: Process) -> Result<Vec<String>, ProcfsError> {
    Ok(ids(process)?
        .into_iter()
        .filter(|&tid| {
            super::stat::read_task(process, tid).is_ok_and(|stat| {
                stat.flags
                    .is_some_and(|flags| flags & crate::abi::ptrace::PF_IO_WORKER != 0)
            })
        })
        .map(|tid| {
            let comm = comm(process, tid).unwrap_or_default();
            format!("{tid} ({})", String::from_utf8_lossy(&comm).trim_end())
        })
        .collect())
}

/// The child processes of `process`: `/proc/PID/task/TID/children` of
/// every thread (Linux's `CONFIG_PROC_CHILDREN`), ascending. A thread that
/// ended between the listing and the read is skipped.
pub fn children(process: Process) -> Result<Vec<u32>, ProcfsError> {
    let mut children = Vec::new();
    for tid in ids(process)? {
        let Ok(list) = read_file(&process.path(&format!("task/{tid}/children"))) else {
            continue;
        };
        children.extend(
            String::from_utf8_lossy(&list)
                .split_whitespace()
                .filter_map(|pid| pid.parse::<u32>().ok()),
        );
    }
    children.sort_unstable();
    children.dedup();
    Ok(children)
}

/// `pid` and every process descended from it, parents before their
/// children.
pub fn tree(pid: u32) -> Result<Vec<u32>, ProcfsError> {
    let mut tree = vec![pid];
    let mut next = 0;
    while let Some(&parent) = tree.get(next) {
        next += 1;
        match children(Process::Pid(parent)) {
            Ok(found) => {
                for child in found {
                    if !tree.contains(&child) {
                        tree.push(child);
                    }
                }
            }
            // A descendant that ended meanwhile has no children to list.
            Err(error) if parent != pid && error.is_not_found() => {}
            Err(error) => return Err(error),
        }
    }
    Ok(tree)
}

/// The first thread of `pid` not stopped (by a signal or a tracer), as
/// "thread TID (comm) in state S"; `None` when all are stopped or gone
/// (a thread exiting, Z/X, is not running either).
pub fn first_not_stopped(pid: u32) -> Result<Option<String>, ProcfsError> {
    let process = Process::Pid(pid);
    let tids = match ids(process) {
        Ok(tids) => tids,
        Err(error) if error.is_not_found() => return Ok(None),
        Err(error) => return Err(error),
    };
    for tid in tids {
        let Ok(stat) = super::stat::read_task(process, tid) else {
            continue;
        };
        if stat.is_stopped() || stat.has_exited() {
            continue;
        }
        let comm = comm(process, tid).unwrap_or_default();
        return Ok(Some(format!(
            "thread {tid} ({}) is in state {}",
            String::from_utf8_lossy(&comm).trim_end(),
            char::from(stat.state)
        )));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_lists_its_own_thread_which_is_no_sq_thread() {
        let pid = std::process::id();
        let ids = ids(Process::Current).expect("own threads");
        assert!(ids.contains(&pid), "{ids:?}");
        assert!(!comm(Process::Current, pid).expect("own comm").is_empty());
        assert!(!is_running_sq_thread(Process::Current, pid));
        assert!(!is_running_sq_thread(Process::Current, u32::MAX));
    }

    #[test]
    fn a_child_is_in_its_parents_tree() {
        let mut child = std::process::Command::new("sleep")
            .arg("10")
            .spawn()
            .expect("sleep");
        let pid = std::process::id();
        let tree = tree(pid).expect("own tree");
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(tree[0], pid);
        assert!(tree.contains(&child.id()), "{tree:?}");
    }
}
