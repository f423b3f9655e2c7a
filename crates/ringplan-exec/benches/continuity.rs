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
//! A buffer ring's head brought back (`advance_pbuf_head`: one-byte pipe
//! reads that select a buffer and skip their CQEs, the buffer ring's
//! memory put back after) is timed against the same number of
//! SQ-head-only NOPs (`advance_positions`), on a 16-entry ring with an
//! 8-entry buffer ring and a 32768-entry ring with a 4096-entry one, to
//! head 65535 (the most a head counts before it wraps).
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
    advance_pbuf_head, advance_positions, ring_layout, Backing, ContinuousRing, PbufHeadTarget,
    PositionTargets, RegionPlacement, RingPlacement, RingSetup,
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

/// Where the bench's buffer rings are (nothing maps there by itself).
const PBUF_BASE: u64 = 0x3d00_0000_0000;

/// ringplan's time to bring a buffer ring of `pbuf_entries` on a fresh
/// ring of `entries` from head 0 to `head`; registration before the clock.
fn pbuf_head(entries: u32, pbuf_entries: u32, head: u16) -> Duration {
    use ringplan_kernel::abi::pbuf;
    use rustix::mm::{mmap_anonymous, munmap, MapFlags, ProtFlags};
    let mut ring = new_ring(entries);
    let len = (u64::from(pbuf_entries) * pbuf::ENTRY_SIZE).next_multiple_of(4096) as usize;
    // SAFETY: a fresh anonymous mapping where nothing else maps (the
    // bench's own address range), unmapped below.
    let memory = unsafe {
        mmap_anonymous(
            PBUF_BASE as *mut std::ffi::c_void,
            len,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::PRIVATE | MapFlags::FIXED_NOREPLACE,
        )
    }
    .expect("buffer ring memory");
    let reg = pbuf::BufReg {
        ring_addr: memory as u64,
        ring_entries: pbuf_entries,
        bgid: 0,
        ..pbuf::BufReg::default()
    };
    // SAFETY: `reg` is one `struct io_uring_buf_reg` naming memory mapped
    // until the end of this function, after the ring is gone.
    unsafe {
        rustix::io_uring::io_uring_register(
            ring.fd(),
            rustix::io_uring::IoringRegisterOp::RegisterPbufRing,
            std::ptr::from_ref(&reg).cast(),
            1,
        )
    }
    .expect("IORING_REGISTER_PBUF_RING");
    let target = PbufHeadTarget {
        bgid: 0,
        entries: pbuf_entries,
        addr: memory as u64,
        head,
    };
    let started = Instant::now();
    // SAFETY: the buffer ring's memory is mapped here, above.
    unsafe { advance_pbuf_head(&mut ring, &target) }.expect("buffer ring head");
    let elapsed = started.elapsed();
    drop(ring);
    // SAFETY: the mapping made above, no longer used (the ring is closed).
    unsafe { munmap(memory, len) }.expect("munmap");
    elapsed
}

/// Buffer-ring heads against SQ-head-only NOPs of the same count.
fn pbuf_heads(rounds: usize) {
    const HEAD: u16 = u16::MAX;
    for (entries, pbuf_entries) in [(16u32, 8u32), (32768, 4096)] {
        let nops = PositionTargets {
            sq_head: u32::from(HEAD),
            cq_tail: 0,
            cq_head: 0,
        };
        let (mut mine, mut base) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            if round % 2 == 0 {
                mine.push(pbuf_head(entries, pbuf_entries, HEAD));
            }
            base.push(ours(entries, nops));
            if round % 2 == 1 {
                mine.push(pbuf_head(entries, pbuf_entries, HEAD));
            }
        }
        let (mine, base) = (median(mine), median(base));
        let (per, base_per) = (ns_per(mine, u64::from(HEAD)), ns_per(base, u64::from(HEAD)));
        eprintln!(
            "{entries} entries, buffer ring of {pbuf_entries}: head {HEAD} in {mine:?} ({per:.1} ns per buffer); {HEAD} skipping NOPs in {base:?}"
        );
        println!(
            "TABLE|buffer-ring head to {HEAD}, {entries}-entry ring, {pbuf_entries}-entry buffer ring, ns per buffer (median of {rounds})|{per:.1} ns ({:.1} ms in all)|{base_per:.1} ns (an SQ-head NOP)|{:.2}x||",
            mine.as_secs_f64() * 1e3,
            per / base_per
        );
    }
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
    pbuf_heads(rounds);
    if let Some(out_dir) = binary.parent() {
        let _ = std::fs::remove_dir_all(out_dir);
    }
}
