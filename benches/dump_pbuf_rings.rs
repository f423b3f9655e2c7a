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

mod held;
mod per_item;

fn main() {
    per_item::run(&per_item::Series {
        scenario: "pbuf-fresh",
        item: "buffer ring",
        items: "buffer rings",
        rounds_variable: "DUMP_PBUF_RINGS_ROUNDS",
        count: |ring| ring.pbuf_rings.len(),
        longer: &[],
    });
}
