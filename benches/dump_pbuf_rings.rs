//! What a dump costs per buffer ring, and what the image costs: issue 15's
//! "dump time and image size as buffer rings grow (linear, per item)".
//!
//! Workloads, each held by a `plan app pbuf-fresh:N` process (one plain
//! ring with N buffer rings of 8 entries, each on a page of its own, bgids
//! 0, 65, 130, ...): N = 1, 100, 1000. Baseline: the same ring without
//! buffer rings (`rings:1`), so the figure is what the buffer rings add
//! (the BPF walk of `ctx->io_bl_xa`, and the pagemap search for each
//! ring's memory).
//!
//! Figures (all from this run):
//! - `Dumper::dump` + CBOR encoding with the BPF program loaded once, the
//!   median of the rounds, per N; the slope between N = 100 and N = 1000
//!   is the cost per buffer ring (each BPF walk of the xarray costs
//!   O(highest bgid), one slot per step, and a dump walks it once for the
//!   count and twice per chunk of 500);
//! - the image's bytes per N, and per buffer ring (slope).
//!
//! Lines starting `TABLE|` are the summary that `scripts/bench` collects.
//!
//! Run: `cargo bench --bench dump_pbuf_rings` (root: BPF).
//! `DUMP_PBUF_RINGS_ROUNDS` sets the rounds (default 31, after 3 warm-up
//! rounds).

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ringplan_dump::{BackendChoice, Dumper, Selection};
use ringplan_image::{encode_to_vec, ObjectKind};

const PLAN: &str = env!("CARGO_BIN_EXE_plan");
const COUNTS: [usize; 3] = [1, 100, 1000];

/// A `plan app` process holding a scenario until dropped.
struct Held {
    child: Child,
    pid: u32,
}

impl Held {
    fn start(scenario: &str) -> Held {
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
        Held { child, pid }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// Median time of `Dumper::dump` + encoding, and the image's size.
fn measure(dumper: &mut Dumper, pid: u32, rounds: usize) -> (Duration, usize, usize) {
    let mut times = Vec::with_capacity(rounds);
    let mut bytes = 0;
    let mut found = 0;
    for round in 0..rounds + 3 {
        let start = Instant::now();
        let dump = dumper.dump(pid, Selection::All).expect("dump");
        let encoded = encode_to_vec(&dump.image).expect("encode");
        let elapsed = start.elapsed();
        if round >= 3 {
            times.push(elapsed);
        }
        bytes = encoded.len();
        found = dump
            .image
            .objects
            .iter()
            .map(|object| match &object.kind {
                ObjectKind::Ring(ring) => ring.pbuf_rings.len(),
                _ => 0,
            })
            .sum();
    }
    times.sort_unstable();
    (times[times.len() / 2], bytes, found)
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` does not: run
    // only when asked to measure.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let rounds: usize = std::env::var("DUMP_PBUF_RINGS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(31);
    let mut dumper = Dumper::new(BackendChoice::Bpf).expect("BPF dumper (root)");

    let baseline = Held::start("rings:1");
    let (base_time, base_bytes, _) = measure(&mut dumper, baseline.pid, rounds);
    drop(baseline);
    println!(
        "  rings:1 (no buffer rings): Dumper::dump + encode {:.0} us, image {base_bytes} B",
        micros(base_time)
    );
    let mut results = Vec::new();
    for count in COUNTS {
        let held = Held::start(&format!("pbuf-fresh:{count}"));
        let (time, bytes, found) = measure(&mut dumper, held.pid, rounds);
        assert_eq!(
            found, count,
            "pbuf-fresh:{count} dumps {count} buffer rings"
        );
        println!(
            "  pbuf-fresh:{count}: Dumper::dump + encode {:.0} us, image {bytes} B",
            micros(time)
        );
        results.push((count, time, bytes));
    }
    let (small_count, small_time, small_bytes) = results[1];
    let (large_count, large_time, large_bytes) = results[2];
    let span = (large_count - small_count) as f64;
    let time_slope = (micros(large_time) - micros(small_time)) / span;
    let byte_slope = (large_bytes as f64 - small_bytes as f64) / span;
    let (_, one_time, one_bytes) = results[0];
    println!("  slope 100 -> 1000: {time_slope:.3} us and {byte_slope:.1} B per buffer ring");
    println!(
        "TABLE|dump time per buffer ring (Dumper::dump + encode, slope 100 -> 1000; pbuf-fresh:1 {:.0} us, :1000 {:.0} us)|{time_slope:.3} us|ring without buffer rings {:.0} us|-|linear|-",
        micros(one_time),
        micros(large_time),
        micros(base_time)
    );
    println!(
        "TABLE|image bytes per buffer ring (slope 100 -> 1000; pbuf-fresh:1 {one_bytes} B, :1000 {large_bytes} B)|{byte_slope:.1} B|ring without buffer rings {base_bytes} B|-|linear|-"
    );
}
