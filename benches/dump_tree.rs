//! What a tree dump costs per process, and what the image costs: issue
//! 15's "dump time and image size as processes in a tree grow (linear, per
//! item)".
//!
//! Workloads, each held by a `plan app tree:N` process (one plain ring
//! with a registered eventfd and file, kept by N forked children: N + 1
//! processes hold it): N = 1, 10, 100. Baseline: the same ring in one
//! process (`plan dump` without `--tree` of `tree:1`'s parent).
//!
//! Figures (all from this run):
//! - `dump_tree_with` + CBOR encoding with the BPF program loaded once,
//!   the median of the rounds, per N; the slope between N = 10 and
//!   N = 100 is the cost per process (each is read as a single dump reads
//!   it: two BPF passes, its maps and fd table);
//! - the image's bytes per N, and per process (slope).
//!
//! Lines starting `TABLE|` are the summary that `scripts/bench` collects.
//!
//! Run: `cargo bench --bench dump_tree` (root: BPF). `DUMP_TREE_ROUNDS`
//! sets the rounds (default 15, after 3 warm-up rounds).

use std::time::Duration;

use ringplan_dump::{dump_tree_with, BackendChoice, Dumper, Selection};
use ringplan_image::encode_to_vec;

mod held;
use held::{median_of_rounds, micros, slope, Held};

const CHILDREN: [usize; 3] = [1, 10, 100];

/// Median time of one dump + encoding (`tree`: of the tree), the image's
/// size, and the processes it lists.
fn measure(dumper: &mut Dumper, pid: u32, rounds: usize, tree: bool) -> (Duration, usize, usize) {
    let (time, (dump, bytes)) = median_of_rounds(rounds, || {
        let dump = if tree {
            dump_tree_with(dumper, pid, None).expect("tree dump")
        } else {
            dumper.dump(pid, Selection::All).expect("dump")
        };
        let bytes = encode_to_vec(&dump.image).expect("encode").len();
        (dump, bytes)
    });
    (time, bytes, dump.image.processes.len())
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` does not: run
    // only when asked to measure.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let rounds: usize = std::env::var("DUMP_TREE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    let mut dumper = Dumper::new(BackendChoice::Bpf).expect("BPF dumper (root)");

    let baseline = Held::start("tree:1");
    let (base_time, base_bytes, _) = measure(&mut dumper, baseline.pid, rounds, false);
    drop(baseline);
    println!(
        "  tree:1's parent alone (no --tree): dump + encode {:.0} us, image {base_bytes} B",
        micros(base_time)
    );
    let mut results = Vec::new();
    for children in CHILDREN {
        let held = Held::start(&format!("tree:{children}"));
        let (time, bytes, processes) = measure(&mut dumper, held.pid, rounds, true);
        assert_eq!(
            processes,
            children + 1,
            "tree:{children} lists every process"
        );
        println!(
            "  tree:{children} ({processes} processes): dump_tree + encode {:.0} us, image {bytes} B",
            micros(time)
        );
        results.push((processes, time, bytes));
    }
    let (time_slope, byte_slope) = slope(results[1], results[2]);
    let (_, large_time, large_bytes) = results[2];
    let (_, one_time, one_bytes) = results[0];
    println!("  slope 11 -> 101 processes: {time_slope:.1} us and {byte_slope:.1} B per process");
    println!(
        "TABLE|tree dump time per process (dump_tree_with + encode, slope 11 -> 101 processes; 2 processes {:.0} us, 101 {:.0} us)|{time_slope:.1} us|one process, no --tree {:.0} us|-|linear|-",
        micros(one_time),
        micros(large_time),
        micros(base_time)
    );
    println!(
        "TABLE|tree image bytes per process (slope 11 -> 101; 2 processes {one_bytes} B, 101 {large_bytes} B)|{byte_slope:.1} B|one process {base_bytes} B|-|linear|-"
    );
}
