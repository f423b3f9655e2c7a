//! What the dump benches share: a `plan app` scenario held by its own
//! process until dropped (SIGTERM, so that it cleans up after itself),
//! with its pid and the JSON line it describes itself with; the median of
//! timed rounds; and the per-item slope between two workloads.
#![allow(dead_code, reason = "each bench uses a part of it")]

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// Rounds run before the timed ones, to warm caches up.
const WARM_UP_ROUNDS: usize = 3;

/// The median time of `rounds` calls of `round` (after the warm-up
/// rounds), and what the last call returned.
pub fn median_of_rounds<T>(rounds: usize, mut round: impl FnMut() -> T) -> (Duration, T) {
    let mut times = Vec::with_capacity(rounds);
    let mut last = None;
    for index in 0..rounds + WARM_UP_ROUNDS {
        let start = Instant::now();
        let value = round();
        let elapsed = start.elapsed();
        if index >= WARM_UP_ROUNDS {
            times.push(elapsed);
        }
        last = Some(value);
    }
    times.sort_unstable();
    (
        times[times.len() / 2],
        last.expect("at least the warm-up rounds ran"),
    )
}

pub fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

/// Microseconds and bytes per item between two workloads of
/// `(items, time, image bytes)`.
pub fn slope(small: (usize, Duration, usize), large: (usize, Duration, usize)) -> (f64, f64) {
    let span = (large.0 - small.0) as f64;
    (
        (micros(large.1) - micros(small.1)) / span,
        (large.2 as f64 - small.2 as f64) / span,
    )
}
