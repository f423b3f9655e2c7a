//! The machinery shared by the per-item dump benches of issue 15
//! (`dump_personalities`, `dump_pbuf_rings`): hold a `plan app` scenario
//! with N items (1, 100, 1000, and any longer ones a series names) and one
//! without, time `Dumper::dump` + CBOR encoding with the BPF program
//! loaded once (median of the rounds, after 3 warm-up rounds), and print
//! the slope between N = 100 and N = 1000 per item, the time per item of
//! the longer ones, and the image's bytes per item, as `TABLE|` lines.

use std::time::Duration;

use ringplan_dump::{BackendChoice, Dumper, Selection};
use ringplan_image::{encode_to_vec, ObjectKind};

use crate::held::{median_of_rounds, micros, slope, Held};

const COUNTS: [usize; 3] = [1, 100, 1000];

/// What a bench measures per item.
pub struct Series {
    /// The `plan app` scenario with N items is `{scenario}:N`.
    pub scenario: &'static str,
    /// One item and several, as the figures name them.
    pub item: &'static str,
    pub items: &'static str,
    /// The environment variable that sets the rounds.
    pub rounds_variable: &'static str,
    /// How many items a dumped ring holds.
    pub count: fn(&ringplan_image::Ring) -> usize,
    /// Larger N measured after the slope's, for the time alone: one line
    /// each, with the time per item over the whole N (for a cost that must
    /// stay linear far beyond 1000).
    pub longer: &'static [usize],
}

/// Median time of `Dumper::dump` + encoding, the image's size, and the
/// items found.
fn measure(
    dumper: &mut Dumper,
    pid: u32,
    rounds: usize,
    series: &Series,
) -> (Duration, usize, usize) {
    let (time, (dump, bytes)) = median_of_rounds(rounds, || {
        let dump = dumper.dump(pid, Selection::All).expect("dump");
        let bytes = encode_to_vec(&dump.image).expect("encode").len();
        (dump, bytes)
    });
    let found = dump
        .image
        .objects
        .iter()
        .map(|object| match &object.kind {
            ObjectKind::Ring(ring) => (series.count)(ring),
            _ => 0,
        })
        .sum();
    (time, bytes, found)
}

/// Measures `series` and prints its figures.
pub fn run(series: &Series) {
    // `cargo bench` passes --bench; `cargo test --benches` does not: run
    // only when asked to measure.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let Series {
        scenario,
        item,
        items,
        ..
    } = series;
    let rounds: usize = std::env::var(series.rounds_variable)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(31);
    let mut dumper = Dumper::new(BackendChoice::Bpf).expect("BPF dumper (root)");

    let baseline = Held::start("rings:1");
    let (base_time, base_bytes, _) = measure(&mut dumper, baseline.pid, rounds, series);
    drop(baseline);
    println!(
        "  rings:1 (no {items}): Dumper::dump + encode {:.0} us, image {base_bytes} B",
        micros(base_time)
    );
    let mut results = Vec::new();
    for count in COUNTS {
        let held = Held::start(&format!("{scenario}:{count}"));
        let (time, bytes, found) = measure(&mut dumper, held.pid, rounds, series);
        assert_eq!(found, count, "{scenario}:{count} dumps {count} {items}");
        println!(
            "  {scenario}:{count}: Dumper::dump + encode {:.0} us, image {bytes} B",
            micros(time)
        );
        results.push((count, time, bytes));
    }
    let (time_slope, byte_slope) = slope(results[1], results[2]);
    let (_, large_time, large_bytes) = results[2];
    let (_, one_time, one_bytes) = results[0];
    println!("  slope 100 -> 1000: {time_slope:.3} us and {byte_slope:.1} B per {item}");
    println!(
        "TABLE|dump time per {item} (Dumper::dump + encode, slope 100 -> 1000; {scenario}:1 {:.0} us, :1000 {:.0} us)|{time_slope:.3} us|ring without {items} {:.0} us|-|linear|-",
        micros(one_time),
        micros(large_time),
        micros(base_time)
    );
    println!(
        "TABLE|image bytes per {item} (slope 100 -> 1000; {scenario}:1 {one_bytes} B, :1000 {large_bytes} B)|{byte_slope:.1} B|ring without {items} {base_bytes} B|-|linear|-"
    );
    for &count in series.longer {
        let held = Held::start(&format!("{scenario}:{count}"));
        let (time, _, found) = measure(&mut dumper, held.pid, rounds, series);
        assert_eq!(found, count, "{scenario}:{count} dumps {count} {items}");
        let per_item = (micros(time) - micros(base_time)) / count as f64;
        println!(
            "  {scenario}:{count}: Dumper::dump + encode {:.0} us, {per_item:.3} us per {item} over the ring without",
            micros(time)
        );
        println!(
            "TABLE|dump time, {scenario}:{count} (Dumper::dump + encode; per {item}: (time - ring without) / {count})|{:.0} us ({per_item:.3} us per {item})|ring without {items} {:.0} us|-|linear|-",
            micros(time),
            micros(base_time)
        );
    }
}
