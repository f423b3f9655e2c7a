//! Advancing a new ring's positions (`ringplan_exec::continuity::advance_positions`)
//! against the floor of the same NOPs submitted by a minimal C liburing loop
//! (`tests/programs/nop_floor.c`, compiled here with cc), alternately in the
//! same run, on a fresh 16-entry and a fresh 32768-entry ring:
//!
//! - `SQ head`: `N` NOPs with `IOSQE_CQE_SKIP_SUCCESS` (the SQ head alone
//!   moves);
//! - `both`: `N` plain NOPs, their CQEs consumed after each batch (both
//!   positions move);
//! - `CQ tail` (no C floor): `N` CQEs posted with `MSG_RING` from a helper
//!   ring (the CQ tail alone moves).
//!
//! Each side's time covers the submission loop only: ringplan's ring is
//! created (memory placed, `io_uring_setup`) before the clock starts, as
//! the C program's `io_uring_queue_init` is. Medians of the rounds are
//! compared. The time to bring a ring to position 2^31 is extrapolated
//! from ns per position, and measured for the 32768-entry ring when the
//! extrapolation is under `CONTINUITY_BENCH_FULL_LIMIT_S` (120 s).
//!
//! Lines starting `TABLE|` are the summary that `scripts/bench` collects.
//!
//! Run: `cargo bench -p ringplan-exec --bench continuity` (needs Linux 6.5+
//! for NO_MMAP; no root). Environment: `CONTINUITY_BENCH_ROUNDS` (5),
//! `CONTINUITY_BENCH_POSITIONS` (4194304 per round),
//! `CONTINUITY_BENCH_FULL_LIMIT_S` (120; 0 never measures 2^31).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use ringplan_exec::continuity::{
    advance_positions, ring_layout, Backing, ContinuousRing, PositionTargets, RegionPlacement,
    RingPlacement, RingSetup,
};
use ringplan_kernel::abi::SetupFlags;
use ringplan_scenarios::c_programs;

/// Where the bench places its rings (nothing maps there by itself).
const BASE: u64 = 0x3c00_0000_0000;
const TWO_POW_31: u64 = 1 << 31;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn compile_floor() -> PathBuf {
    let out_dir = std::env::temp_dir().join(format!("ringplan-nop-floor-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir).expect("a temporary directory");
    c_programs::build("nop_floor", &out_dir).unwrap_or_else(|error| panic!("{error}"))
}

/// The C loop's own time for `count` NOPs on a fresh ring of `entries`.
fn floor(binary: &PathBuf, entries: u32, count: u64, mode: &str) -> Duration {
    let output = Command::new(binary)
        .args([entries.to_string(), count.to_string(), mode.to_owned()])
        .output()
        .expect("running nop_floor");
    assert!(
        output.status.success(),
        "nop_floor failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let nanos: u64 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("nop_floor prints nanoseconds");
    Duration::from_nanos(nanos)
}

fn new_ring(entries: u32) -> ContinuousRing {
    let setup = RingSetup::new(entries, SetupFlags::empty());
    let layout = ring_layout(&setup).expect("layout probe");
    let placement = RingPlacement {
        rings: vec![RegionPlacement {
            addr: BASE,
            len: layout.rings_len,
        }],
        sqes: RegionPlacement {
            addr: BASE + (1 << 30),
            len: layout.sqes_len,
        },
        backing: Backing::Memfd,
    };
    ContinuousRing::create(&setup, &placement).expect("ring on placed memory")
}

/// ringplan's time to advance a fresh ring of `entries` to `targets`.
fn ours(entries: u32, targets: PositionTargets) -> Duration {
    let mut ring = new_ring(entries);
    let started = Instant::now();
    advance_positions(&mut ring, &targets, &mut |_, _| {}).expect("advance");
    let elapsed = started.elapsed();
    drop(ring);
    elapsed
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn ns_per(time: Duration, positions: u64) -> f64 {
    time.as_nanos() as f64 / positions as f64
}

fn main() {
    if let Err(error) = ringplan_exec::continuity::kernel_supports_no_mmap() {
        eprintln!("continuity bench skipped: {error}");
        return;
    }
    let rounds: usize = env_or("CONTINUITY_BENCH_ROUNDS", 5);
    let count: u64 = env_or("CONTINUITY_BENCH_POSITIONS", 1 << 22);
    let full_limit: f64 = env_or("CONTINUITY_BENCH_FULL_LIMIT_S", 120.0);
    let binary = compile_floor();
    let count32 = count.min(u64::from(u32::MAX)) as u32;
    for entries in [16u32, 32768] {
        let kinds = [
            (
                "SQ head (skipping NOPs)",
                Some("skip"),
                PositionTargets {
                    sq_head: count32,
                    cq_tail: 0,
                    cq_head: 0,
                },
            ),
            (
                "both (plain NOPs)",
                Some("plain"),
                PositionTargets {
                    sq_head: count32,
                    cq_tail: count32,
                    cq_head: count32,
                },
            ),
            (
                "CQ tail (MSG_RING from a helper ring)",
                None,
                PositionTargets {
                    sq_head: 0,
                    cq_tail: count32,
                    cq_head: count32,
                },
            ),
        ];
        for (kind, mode, targets) in kinds {
            let (mut mine, mut base) = (Vec::new(), Vec::new());
            for round in 0..rounds {
                // Alternate which side goes first.
                if round % 2 == 0 {
                    mine.push(ours(entries, targets));
                }
                if let Some(mode) = mode {
                    base.push(floor(&binary, entries, count, mode));
                }
                if round % 2 == 1 {
                    mine.push(ours(entries, targets));
                }
            }
            let mine = median(mine);
            let per = ns_per(mine, count);
            eprintln!(
                "{entries} entries, {kind}: {count} positions in {mine:?} ({per:.1} ns each)"
            );
            if let Some(mode) = mode {
                let base = median(base);
                let base_per = ns_per(base, count);
                let ratio = per / base_per;
                eprintln!("  C liburing floor ({mode}): {base:?} ({base_per:.1} ns each)");
                println!(
                    "TABLE|position advance, {entries}-entry ring, {kind}, ns per position (median of {rounds} x {count})|{per:.1} ns|{base_per:.1} ns (C liburing loop)|{ratio:.2}x|<= 1.1x|{}",
                    if ratio <= 1.1 { "met" } else { "missed" }
                );
                println!(
                    "TABLE|  {entries}-entry ring to position 2^31, {kind}, extrapolated|{:.0} s|{:.0} s|{ratio:.2}x||",
                    per * TWO_POW_31 as f64 / 1e9,
                    base_per * TWO_POW_31 as f64 / 1e9,
                );
            } else {
                println!(
                    "TABLE|position advance, {entries}-entry ring, {kind}, ns per position|{per:.1} ns||||"
                );
            }
        }
        // The 2^31 restore measured whole where it is short enough.
        let estimate = {
            let sample = ours(
                entries,
                PositionTargets {
                    sq_head: count32,
                    cq_tail: 0,
                    cq_head: 0,
                },
            );
            ns_per(sample, count) * TWO_POW_31 as f64 / 1e9
        };
        if entries == 32768 && estimate <= full_limit {
            let target = TWO_POW_31 as u32;
            let whole = ours(
                entries,
                PositionTargets {
                    sq_head: target,
                    cq_tail: 0,
                    cq_head: 0,
                },
            );
            println!(
                "TABLE|  {entries}-entry ring to SQ head 2^31, measured (estimate {estimate:.0} s)|{:.1} s||||",
                whole.as_secs_f64()
            );
        } else if entries == 32768 {
            eprintln!("2^31 on a {entries}-entry ring not measured: estimated {estimate:.0} s > {full_limit} s");
        }
    }
    if let Some(out_dir) = binary.parent() {
        let _ = std::fs::remove_dir_all(out_dir);
    }
}
