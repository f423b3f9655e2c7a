//! criu restores every thread with the id it had at the checkpoint; an id
//! another task holds makes it fail deep in its log ("Can't fork for PID:
//! File exists"). `plan restore` checks the ids first. A checkpointed
//! process that criu dump killed keeps its id until its parent reaps it
//! (an orphan's new parent may take its time), so exiting holders are
//! waited for, and only a live one is refused at once.

use std::time::{Duration, Instant};

use ringplan_kernel::procfs::{stat, task, Process};

use crate::error::CriuError;

/// How often the ids are looked at while an exiting task holds one.
const POLL: Duration = Duration::from_millis(10);

/// Returns once no task holds any of `ids`; waits up to `limit` for
/// exiting tasks to be reaped, and refuses a live holder (or one still
/// there at `limit`), naming it.
pub fn wait_until_free(ids: &[u32], limit: Duration) -> Result<(), CriuError> {
    let deadline = Instant::now() + limit;
    loop {
        let mut exiting = None;
        for &id in ids {
            let Ok(holder) = stat::read(Process::Pid(id)) else {
                continue;
            };
            if !holder.is_exiting() {
                return Err(taken(id, "a running task"));
            }
            exiting.get_or_insert(id);
        }
        let Some(id) = exiting else {
            return Ok(());
        };
        if Instant::now() >= deadline {
            return Err(taken(
                id,
                &format!("a task that exited and was not reaped within {limit:?}"),
            ));
        }
        std::thread::sleep(POLL);
    }
}

fn taken(id: u32, what: &str) -> CriuError {
    let comm = task::comm(Process::Pid(id), id)
        .map(|comm| String::from_utf8_lossy(&comm).trim_end().to_owned())
        .unwrap_or_default();
    CriuError::ThreadIdTaken {
        id,
        holder: format!("{what} ({comm})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_free_id_passes_and_a_live_one_is_refused_at_once() {
        // An id above the kernel's pid_max is never held.
        assert!(wait_until_free(&[u32::MAX], Duration::ZERO).is_ok());
        let started = Instant::now();
        let error = wait_until_free(&[std::process::id()], Duration::from_secs(5))
            .expect_err("this process holds its own id");
        assert!(started.elapsed() < Duration::from_secs(1), "not waited for");
        assert!(
            error
                .to_string()
                .contains(&format!("thread id {}", std::process::id())),
            "{error}"
        );
    }

    #[test]
    fn a_zombie_is_waited_for_until_it_is_reaped() {
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("running true");
        let id = child.id();
        // A zombie once it exits, as nobody reaps it until the thread
        // below does.
        while !stat::read(Process::Pid(id)).is_ok_and(|stat| stat.has_exited()) {
            std::thread::sleep(POLL);
        }
        let reaper = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            child.wait().expect("reaping true")
        });
        wait_until_free(&[id], Duration::from_secs(10)).expect("free once reaped");
        assert!(reaper.join().expect("the reaper").success());
    }
}
