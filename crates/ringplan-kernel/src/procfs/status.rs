//! `/proc/PID/status` and `/proc/PID/task/TID/status`: what decides whether
//! a thread may be ptraced and have syscalls run in it (its state, its
//! tracer, its owner, its seccomp mode), and `/proc/sys/kernel/yama/ptrace_scope`,
//! the system-wide rule on who may ptrace whom.

use super::{read_text, Process, ProcfsError};

/// What ringplan reads of a status file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// The state letter of `State:` (`R`, `S`, `T`, `t`, `Z`, ...).
    pub state: u8,
    /// `TracerPid:`: the pid tracing the thread, 0 for none.
    pub tracer_pid: u32,
    /// `Uid:` real and effective.
    pub uid: (u32, u32),
    /// `Seccomp:` (`SECCOMP_MODE_*`); `None` on a kernel built without
    /// seccomp, which has no such line.
    pub seccomp: Option<u32>,
}

impl Status {
    /// Parses the text of a status file; `path` names it in errors.
    pub fn parse(text: &str, path: &std::path::Path) -> Result<Status, ProcfsError> {
        let mut state = None;
        let mut tracer_pid = None;
        let mut uid = None;
        let mut seccomp = None;
        for (index, line) in text.lines().enumerate() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            let bad = |what: &str| {
                ProcfsError::malformed(path, index + 1, format!("bad {what}: {line:?}"))
            };
            match key {
                "State" => state = Some(*value.as_bytes().first().ok_or_else(|| bad("state"))?),
                "TracerPid" => tracer_pid = Some(value.parse().map_err(|_| bad("TracerPid"))?),
                "Uid" => {
                    let mut ids = value.split_whitespace().map(str::parse::<u32>);
                    match (ids.next(), ids.next()) {
                        (Some(Ok(real)), Some(Ok(effective))) => uid = Some((real, effective)),
                        _ => return Err(bad("Uid")),
                    }
                }
                "Seccomp" => seccomp = Some(value.parse().map_err(|_| bad("Seccomp"))?),
                _ => {}
            }
        }
        let missing = |key| ProcfsError::MissingKey {
            path: path.to_owned(),
            key,
        };
        Ok(Status {
            state: state.ok_or_else(|| missing("State"))?,
            tracer_pid: tracer_pid.ok_or_else(|| missing("TracerPid"))?,
            uid: uid.ok_or_else(|| missing("Uid"))?,
            seccomp,
        })
    }
}

/// Reads and parses `/proc/PID/status` (the process's leader thread).
pub fn read(process: Process) -> Result<Status, ProcfsError> {
    let path = process.path("status");
    Status::parse(&read_text(&path)?, &path)
}

/// Reads and parses `/proc/PID/task/TID/status` (one thread).
pub fn read_task(process: Process, tid: u32) -> Result<Status, ProcfsError> {
    let path = process.path(&format!("task/{tid}/status"));
    Status::parse(&read_text(&path)?, &path)
}

/// Whether `process` is in the initial pid namespace: its
/// `/proc/PID/ns/pid` is the initial namespace's fixed inode. (`NSpid:`
/// cannot tell where `/proc` is a child namespace's own mount.)
pub fn in_initial_pid_namespace(process: Process) -> Result<bool, ProcfsError> {
    use std::os::unix::fs::MetadataExt;
    let path = process.path("ns/pid");
    let metadata = std::fs::metadata(&path).map_err(|source| ProcfsError::io(&path, source))?;
    Ok(metadata.ino() == crate::abi::linux::PROC_PID_INIT_INO)
}

/// The Yama LSM's `ptrace_scope` (0 classic, 1 restricted to descendants,
/// 2 admin only, 3 no attach); `None` when Yama is not built in (no file).
pub fn yama_ptrace_scope() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The effective capability set (`CapEff:`, a hex mask of `CAP_*` bits) of
/// process `process`'s leader thread.
pub fn effective_capabilities(process: Process) -> Result<u64, ProcfsError> {
    let path = process.path("status");
    let text = read_text(&path)?;
    for (index, line) in text.lines().enumerate() {
        if let Some(value) = line.strip_prefix("CapEff:") {
            return u64::from_str_radix(value.trim(), 16).map_err(|_| {
                ProcfsError::malformed(&path, index + 1, format!("bad CapEff: {line:?}"))
            });
        }
    }
    Err(ProcfsError::MissingKey {
        path,
        key: "CapEff",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tests_run_in_the_initial_pid_namespace() {
        assert_eq!(in_initial_pid_namespace(Process::Current).ok(), Some(true));
    }

    #[test]
    fn status_lines_give_state_tracer_uid_and_seccomp() {
        let text = "Name:\tcat\nState:\tS (sleeping)\nTgid:\t7\nTracerPid:\t42\nUid:\t1000\t1001\t1002\t1003\nSeccomp:\t2\n";
        let status = Status::parse(text, std::path::Path::new("status")).expect("parses");
        assert_eq!(
            status,
            Status {
                state: b'S',
                tracer_pid: 42,
                uid: (1000, 1001),
                seccomp: Some(2)
            }
        );
        let without = Status::parse(
            "State:\tR\nTracerPid:\t0\nUid:\t0 0 0 0\n",
            std::path::Path::new("s"),
        );
        assert_eq!(without.expect("parses").seccomp, None);
        assert!(Status::parse("State:\tR\n", std::path::Path::new("s")).is_err());
        assert!(Status::parse(
            "State:\tR\nTracerPid:\tx\nUid:\t0 0\n",
            std::path::Path::new("s")
        )
        .is_err());
    }

    #[test]
    fn this_thread_is_untraced_and_ours() {
        let status = read(Process::Current).expect("own status");
        assert_eq!(status.tracer_pid, 0);
        assert_eq!(status.uid.0, rustix::process::getuid().as_raw());
        let task = read_task(Process::Current, std::process::id()).expect("own task status");
        assert_eq!(task.uid, status.uid);
    }
}
