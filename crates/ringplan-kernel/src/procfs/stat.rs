//! `/proc/PID/stat` and `/proc/PID/task/TID/stat`: a task's state letter
//! and its `task_struct.flags`.
//!
//! The line is `PID (COMM) STATE PPID PGRP SESSION TTY_NR TPGID FLAGS ...`.
//! The command name may hold parentheses and spaces, so the fields are
//! found after the *last* `)`.

use super::{read_file, Process, ProcfsError};

/// What ringplan reads of a stat line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// The state letter (`R`, `S`, `D`, `T`, `t`, `Z`, `X`, ...).
    pub state: u8,
    /// `task_struct.flags` (`PF_*`, e.g. `PF_EXITING`), when the line has
    /// it.
    pub flags: Option<u64>,
    /// `starttime` (field 22): when the task started, in clock ticks after
    /// boot; with the pid, it names one process for good (a reused pid has
    /// another start time).
    pub start_time: Option<u64>,
}

impl Stat {
    /// Parses a stat line; `None` when it has no state after the command
    /// name.
    pub fn parse(line: &[u8]) -> Option<Stat> {
        let end = line.iter().rposition(|byte| *byte == b')')?;
        let state = *line.get(end + 2)?;
        // After the name: state, ppid, pgrp, session, tty_nr, tpgid, flags.
        let rest = std::str::from_utf8(line.get(end + 1..)?).ok();
        let field =
            |index: usize| rest.and_then(|rest| rest.split_whitespace().nth(index)?.parse().ok());
        // Counted from the state: flags is field 9 of the line, starttime 22.
        Some(Stat {
            state,
            flags: field(6),
            start_time: field(19),
        })
    }

    /// Zombie (`Z`) or dead (`X`, `x`): the task has exited.
    pub fn has_exited(&self) -> bool {
        matches!(self.state, b'Z' | b'X' | b'x')
    }

    /// Exited, or on its way out (`PF_EXITING`): its id will be free once
    /// its parent reaps it.
    pub fn is_exiting(&self) -> bool {
        self.has_exited()
            || self
                .flags
                .is_some_and(|flags| flags & crate::abi::linux::PF_EXITING != 0)
    }

    /// Stopped by a signal (`T`) or by a tracer (`t`).
    pub fn is_stopped(&self) -> bool {
        matches!(self.state, b'T' | b't')
    }
}

/// Reads and parses `/proc/PID/stat` (the process's leader thread).
pub fn read(process: Process) -> Result<Stat, ProcfsError> {
    parse_file(&process.path("stat"))
}

/// Reads and parses `/proc/PID/task/TID/stat` (one thread).
pub fn read_task(process: Process, tid: u32) -> Result<Stat, ProcfsError> {
    parse_file(&process.path(&format!("task/{tid}/stat")))
}

fn parse_file(path: &std::path::Path) -> Result<Stat, ProcfsError> {
    let text = read_file(path)?;
    Stat::parse(&text).ok_or_else(|| {
        let problem = format!(
            "no state after the command name in {:?}",
            String::from_utf8_lossy(&text)
        );
        ProcfsError::malformed(path, 1, problem)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_are_read_after_the_command_name() {
        let line = Stat::parse(b"42 (a) b) (c) T 1 2 3 4 5 4194564 0").expect("a line");
        assert_eq!((line.state, line.flags), (b'T', Some(4194564)));
        assert_eq!(line.start_time, None);
        let full = b"7 (x) S 1 7 7 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 98765 1000 100";
        assert_eq!(
            Stat::parse(full).and_then(|line| line.start_time),
            Some(98765)
        );
        assert_eq!(
            Stat::parse(b"42 (plan) S 1").map(|line| (line.state, line.flags)),
            Some((b'S', None))
        );
        assert!(Stat::parse(b"garbage").is_none());
    }

    #[test]
    fn states_say_stopped_and_exited() {
        let stat = |state| Stat {
            state,
            flags: None,
            start_time: None,
        };
        assert!(stat(b'T').is_stopped() && stat(b't').is_stopped());
        assert!(!stat(b'S').is_stopped() && !stat(b'S').has_exited());
        assert!(stat(b'Z').has_exited() && stat(b'X').has_exited() && stat(b'x').has_exited());
    }

    #[test]
    fn this_process_reads_as_running_and_a_missing_one_is_not_found() {
        let own = read(Process::Current).expect("own stat");
        assert!(!own.has_exited());
        let own_thread = read_task(Process::Pid(std::process::id()), std::process::id())
            .expect("own leader thread's stat");
        assert!(!own_thread.has_exited());
        let missing = read(Process::Pid((1 << 22) + 1)).expect_err("no such pid");
        assert!(missing.is_not_found(), "{missing}");
    }
}
