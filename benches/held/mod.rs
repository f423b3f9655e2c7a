//! A `plan app` scenario held by its own process for a bench, until
//! dropped (SIGTERM, so that it cleans up after itself): its pid and the
//! JSON line it describes itself with. Shared by the dump benches.
#![allow(dead_code, reason = "each bench uses a part of it")]

use std::io::BufRead;
use std::process::{Child, Command, Stdio};

const PLAN: &str = env!("CARGO_BIN_EXE_plan");

/// A `plan app` process holding a scenario until dropped.
pub struct Held {
    child: Child,
    pub pid: u32,
    /// Its first line: what it holds where (`plan app`'s JSON).
    pub description: serde_json::Value,
}

impl Held {
    pub fn start(scenario: &str) -> Held {
        let mut child = Command::new(PLAN)
            .args(["app", scenario])
            .stdout(Stdio::piped())
            .spawn()
            .expect("plan app");
        let stdout = child.stdout.take().expect("piped");
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("description");
        let description: serde_json::Value = serde_json::from_str(&line).expect("JSON description");
        let pid = description["pid"].as_u64().expect("pid") as u32;
        Held {
            child,
            pid,
            description,
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid, not yet waited for.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}
