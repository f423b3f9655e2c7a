//! What a dump costs per personality, and what the image costs: issue 15's
//! "dump time and image size as personalities grow (linear, per item)".
//!
//! Workloads, each held by a `plan app personalities:N` process (one plain
//! ring with N personalities of root's credentials, one gap): N = 1, 100,
//! 1000. Baseline: the same ring without personalities (`rings:1`), so
//! the figure is what the personalities add.
//!
//! Figures (all from this run):
//! - `Dumper::dump` + CBOR encoding with the BPF program loaded once, the
//!   median of the rounds, per N; the slope between N = 100 and N = 1000
//!   is the cost per personality (the BPF walk is O(n) per chunk of 100, so
//!   the whole read is O(n^2 / 100): the slope between 100 and 1000 shows
//!   whether that term matters at these sizes);
//! - the image's bytes per N, and per personality (slope).
//!
//! Lines starting `TABLE|` are the summary that `scripts/bench` collects.
//!
//! Run: `cargo bench --bench dump_personalities` (root: BPF).
//! `DUMP_PERSONALITIES_ROUNDS` sets the rounds (default 31, after 3
//! warm-up rounds).

mod held;
mod per_item;

fn main() {
    per_item::run(&per_item::Series {
        scenario: "personalities",
        item: "personality",
        items: "personalities",
        rounds_variable: "DUMP_PERSONALITIES_ROUNDS",
        count: |ring| ring.personalities.len(),
        longer: &[],
    });
}
