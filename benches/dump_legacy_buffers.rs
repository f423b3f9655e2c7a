//! What a dump costs per buffer of a legacy provided-buffer group
//! (`IORING_OP_PROVIDE_BUFFERS`), and what the image costs: issue 15's
//! "dump time and image size" per item, for the contents of legacy groups.
//!
//! Workloads, each held by a `plan app legacy-buffers:N` process (one
//! plain ring, legacy group 7 holding N buffers of 64 bytes: N + 1
//! provided by one SQE, the first taken by a read): N = 1, 100, 1000, and
//! 10,000 and 60,000 for the time alone. Baseline: the same ring without a
//! group (`rings:1`), so the figure is what the group adds (the walks'
//! program's group walk, then one answer per 600 buffers: the first walks
//! the whole list, each later one only its own 600 nodes).
//!
//! Figures (all from this run): `Dumper::dump` + CBOR encoding with the
//! BPF program loaded once, the median of the rounds, per N, and the slope
//! between N = 100 and N = 1000 per buffer, and per buffer at 60,000 (the
//! time over N, which stays near the slope when the walk is linear); the
//! image's bytes per N (the buffers of one SQE are one run: constant).
//!
//! Lines starting `TABLE|` are the summary that `scripts/bench` collects.
//!
//! Run: `cargo bench --bench dump_legacy_buffers` (root: BPF).
//! `DUMP_LEGACY_BUFFERS_ROUNDS` sets the rounds (default 31, after 3
//! warm-up rounds).

mod held;
mod per_item;

fn main() {
    per_item::run(&per_item::Series {
        scenario: "legacy-buffers",
        item: "legacy buffer",
        items: "legacy buffers",
        rounds_variable: "DUMP_LEGACY_BUFFERS_ROUNDS",
        count: |ring| {
            ring.legacy_buffer_groups
                .iter()
                .map(|group| group.buffer_count() as usize)
                .sum()
        },
        // Where a walk of the whole list per range of 600 (before
        // 2026-11-30) made the dump quadratic: 60,000 buffers took 0.7 s.
        longer: &[10_000, 60_000],
    });
}
