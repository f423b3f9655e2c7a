//! Dump latency of the seed scenario against the floor: a minimal C program
//! that loads a CO-RE task_file iterator with libbpf and reads it once
//! (`benches/baseline/`). Both are whole processes, run alternately against
//! the same `plan app seed` process in one run; the ratio of medians is the
//! figure (target: at most 1.25).
//!
//! Run: `cargo bench --bench dump_latency` (root; needs clang, cc,
//! libbpf-dev — `scripts/deps` installs them).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PLAN: &str = env!("CARGO_BIN_EXE_plan");
const ROUNDS: usize = 40;

struct Held(Child);

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program).args(args).stdout(Stdio::null()).status();
    match status {
        Ok(status) if status.success() => {}
        other => panic!("{program} {args:?} failed: {other:?}"),
    }
}

fn build_baseline(out: &Path) -> (PathBuf, PathBuf) {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/baseline");
    std::fs::create_dir_all(out).expect("creating the baseline's build dir");
    let object = out.join("task_file_min.bpf.o");
    let program = out.join("task_file_min");
    let bpf_source = source.join("task_file_min.bpf.c");
    let c_source = source.join("task_file_min.c");
    run("clang", &[
        "-O2", "-g", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu", "-c",
        bpf_source.to_str().expect("utf-8"), "-o", object.to_str().expect("utf-8"),
    ]);
    run("cc", &["-O2", c_source.to_str().expect("utf-8"), "-o", program.to_str().expect("utf-8"), "-lbpf"]);
    (program, object)
}

fn time(program: &str, args: &[&str]) -> Duration {
    let start = Instant::now();
    run(program, args);
    start.elapsed()
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` would pass
    // nothing: run only when asked to measure.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dump-latency-baseline");
    let (baseline, object) = build_baseline(&out);
    let baseline = baseline.to_str().expect("utf-8");
    let object = object.to_str().expect("utf-8");

    let mut child = Command::new(PLAN).args(["app", "seed"]).stdout(Stdio::piped()).spawn().expect("plan app seed");
    let stdout = child.stdout.take().expect("piped");
    let held = Held(child);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).expect("description");
    let description: serde_json::Value = serde_json::from_str(&line).expect("JSON description");
    let pid = description["pid"].as_u64().expect("pid").to_string();

    let ours_args = ["dump", "--pid", &pid, "--backend", "bpf", "-o", "/dev/null"];
    let baseline_args = [pid.as_str(), object];
    for _ in 0..3 {
        time(PLAN, &ours_args);
        time(baseline, &baseline_args);
    }
    let (mut ours, mut floor) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        ours.push(time(PLAN, &ours_args));
        floor.push(time(baseline, &baseline_args));
    }
    let (ours, floor) = (median(&mut ours), median(&mut floor));
    println!("dump latency, seed scenario, median of {ROUNDS} alternating runs (whole processes):");
    println!("  plan dump --backend bpf     {:8.2} ms", ours.as_secs_f64() * 1e3);
    println!("  task_file_min (C, libbpf)   {:8.2} ms", floor.as_secs_f64() * 1e3);
    println!("  ratio                       {:8.2}x (target <= 1.25x)", ours.as_secs_f64() / floor.as_secs_f64());
    drop(held);
}
