//! Dump latency of the seed scenario against two floors, both a minimal C
//! program that loads a CO-RE task_file iterator with libbpf and reads it
//! once (`benches/baseline/task_file_min.c`):
//! - with the smallest such iterator (`task_file_min.bpf.c`: four relocated
//!   kernel types), the cost of BPF at all;
//! - with ringplan's own BPF object and its first pass (`bpf/ringplan.bpf.c`,
//!   the same CO-RE reads of io_ring_ctx), the cost of reading what ringplan
//!   reads, so the ratio shows what ringplan adds around it. It loads the
//!   programs a dump of the seed loads: not `ringplan_walk_fds` (the
//!   personality and buffer-group walks), which the dumper loads only for
//!   a ring that has some.
//!
//! All are whole processes, run alternately against the same `plan app seed`
//! process in one run; the ratio of medians is the figure (target: at most
//! 1.25).
//!
//! Lines starting `TABLE|` are the summary that `scripts/bench` collects.
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
    let status = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .status();
    match status {
        Ok(status) if status.success() => {}
        other => panic!("{program} {args:?} failed: {other:?}"),
    }
}

fn compile_bpf(source: &Path, object: &Path) {
    let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("bpf");
    run(
        "clang",
        &[
            "-O2",
            "-g",
            "-target",
            "bpf",
            "-D__TARGET_ARCH_x86",
            "-I",
            include.to_str().expect("utf-8"),
            "-I/usr/include/x86_64-linux-gnu",
            "-c",
            source.to_str().expect("utf-8"),
            "-o",
            object.to_str().expect("utf-8"),
        ],
    );
}

/// Builds the C loader and both BPF objects: (loader, minimal object, ringplan's object).
fn build_baselines(out: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let source = root.join("benches/baseline");
    std::fs::create_dir_all(out).expect("creating the baseline's build dir");
    let minimal = out.join("task_file_min.bpf.o");
    let ringplan = out.join("ringplan.bpf.o");
    let loader = out.join("task_file_min");
    compile_bpf(&source.join("task_file_min.bpf.c"), &minimal);
    compile_bpf(&root.join("bpf/ringplan.bpf.c"), &ringplan);
    let c_source = source.join("task_file_min.c");
    run(
        "cc",
        &[
            "-O2",
            c_source.to_str().expect("utf-8"),
            "-o",
            loader.to_str().expect("utf-8"),
            "-lbpf",
        ],
    );
    (loader, minimal, ringplan)
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
    let (loader, minimal, ringplan) = build_baselines(&out);
    let loader = loader.to_str().expect("utf-8");
    let (minimal, ringplan) = (
        minimal.to_str().expect("utf-8"),
        ringplan.to_str().expect("utf-8"),
    );

    let mut child = Command::new(PLAN)
        .args(["app", "seed"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("plan app seed");
    let stdout = child.stdout.take().expect("piped");
    let held = Held(child);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
        .expect("description");
    let description: serde_json::Value = serde_json::from_str(&line).expect("JSON description");
    let pid = description["pid"].as_u64().expect("pid").to_string();

    let ours_args = ["dump", "--pid", &pid, "--backend", "bpf", "-o", "/dev/null"];
    let minimal_args = [pid.as_str(), minimal];
    let same_reads_args = [
        pid.as_str(),
        ringplan,
        "ringplan_target_fds",
        "ringplan_walk_fds",
    ];
    for _ in 0..3 {
        time(PLAN, &ours_args);
        time(loader, &minimal_args);
        time(loader, &same_reads_args);
    }
    let (mut ours, mut floor, mut same_reads) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        ours.push(time(PLAN, &ours_args));
        floor.push(time(loader, &minimal_args));
        same_reads.push(time(loader, &same_reads_args));
    }
    let (ours, floor, same_reads) = (
        median(&mut ours),
        median(&mut floor),
        median(&mut same_reads),
    );
    let ms = |duration: Duration| duration.as_secs_f64() * 1e3;
    println!("dump latency, seed scenario, median of {ROUNDS} alternating runs (whole processes):");
    println!(
        "  plan dump --backend bpf                        {:8.2} ms",
        ms(ours)
    );
    println!(
        "  C loader, minimal task_file iterator           {:8.2} ms",
        ms(floor)
    );
    println!(
        "  C loader, ringplan's BPF object, first pass    {:8.2} ms",
        ms(same_reads)
    );
    println!(
        "  ratio to the minimal iterator                  {:8.2}x (target <= 1.25x)",
        ms(ours) / ms(floor)
    );
    println!(
        "  ratio to the same CO-RE reads                  {:8.2}x",
        ms(ours) / ms(same_reads)
    );
    // The summary `scripts/bench` collects.
    let ratio = ms(ours) / ms(floor);
    println!(
        "TABLE|dump latency, seed scenario (whole `plan dump` vs C loader + minimal task_file iterator)|{:.2} ms|{:.2} ms|{ratio:.2}x|<= 1.25x|{}",
        ms(ours),
        ms(floor),
        if ratio <= 1.25 { "met" } else { "missed" }
    );
    println!(
        "TABLE|dump latency, seed scenario (vs C loader + ringplan's own BPF object, first pass)|{:.2} ms|{:.2} ms|{:.2}x||",
        ms(ours),
        ms(same_reads),
        ms(ours) / ms(same_reads)
    );
    drop(held);
}
