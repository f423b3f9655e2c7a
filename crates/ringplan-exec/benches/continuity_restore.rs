//! A whole in-process restore of the seed image with continuity against the
//! same image without it (issue 12: "a seed restore with continuity against
//! one without", goal within 1.2x), alternately in the same run:
//!
//! - (a) `plans/seed.img` as it is: its rings come back where the program
//!   left them (`place_ring_memory`, `setup_ring` on that memory with
//!   `IORING_SETUP_NO_MMAP`, `restore_completions` where positions moved,
//!   `queue_sqes`);
//! - (b) the baseline: the same image with every ring's `state` removed,
//!   which plans as before (kernel objects only; the recorded ring regions
//!   are tried at their addresses, which Linux 6.4+ refuses).
//!
//! Each round times, in an order that rotates every round, `execute`
//! (preflight + run) of (a) and (b), and the run phase alone
//! (`test_hooks::run_preflighted`, preflight untimed) of each. Each restore
//! is torn down outside the timed region: `Restored` dropped (closing the
//! rings), then everything it left mapped is unmapped (buffers, ring
//! regions mapped in (b), and the continuity memory of (a), which stays
//! mapped on success by design), then the bench pauses so the kernel's
//! deferred ring teardown (and the seed's SQ thread exit) stays out of the
//! next measurement. Medians.
//!
//! Then it times the pieces that only (a) pays, and their counterparts in
//! (b), one at a time on the seed's first ring (the `breakdown` rows): the
//! preflight's NO_MMAP probe (the first in the process, and then answered
//! from the process's cache, as every later restore in one process is),
//! its free-range check (`PROCMAP_QUERY`) and its ring memory sizes; the
//! run's `place_ring_memory` (memfd + mappings), `io_uring_setup` on the
//! placed memory, `queue_sqes`; for (b) the plain `io_uring_setup` and the
//! attempt to map each recorded ring region. The whole-restore rows are of
//! restores after the first in one process: kernel facts asked once are
//! not asked again (a one-shot `plan exec` pays the first-probe rows once).
//!
//! The image is edited the same way for (a) and (b) before compiling, so
//! the plan cannot collide with this process: every `FdEntry.fd` + [`FD_SHIFT`]
//! (the seed installs onto 0-2, our stdio); registered buffers moved, their
//! layout kept, to [`BUFFER_BASE`] (they pointed at the seed's heap); ring
//! memory (mappings, and `state.memory` of NO_MMAP rings) moved, its layout
//! kept, to [`RING_BASE`] only when a recorded range is taken here (ASLR
//! usually leaves the seed's addresses free). External inputs are
//! substituted.
//!
//! Lines starting `TABLE|` are the summary that `scripts/bench` collects.
//!
//! Run: `cargo bench -p ringplan-exec --bench continuity_restore` (as root,
//! as `scripts/bench` runs everything; the seed's two rings share an SQPOLL
//! thread pinned to CPU 0, so every restore starts one). On a kernel without
//! `IORING_SETUP_NO_MMAP` (before 6.5) (a) cannot run: it says so and times
//! (b) alone. Environment: `CONTINUITY_RESTORE_ROUNDS` (default 200),
//! `CONTINUITY_RESTORE_SETTLE_US` (pause after each teardown, default 2000).

use std::ffi::c_void;
use std::time::{Duration, Instant};

use ringplan_exec::continuity::{
    placement_of, queue_sqes, ring_setup_of, ContinuousRing, PlacedMemory, QueuedSqe,
    RecordedSubmissions,
};
use ringplan_exec::test_hooks::room;
use ringplan_exec::{AnonymousBuffers, ExecOptions, Inputs, Restored};
use ringplan_image::{ObjectKind, RingMapping, SetupFlags};
use ringplan_kernel::procfs::maps::MapsQuery;
use ringplan_kernel::procfs::Process;
use ringplan_plan::{Op, Plan, SetupRing};
use rustix::io_uring::{io_uring_params, io_uring_setup, IoringSetupFlags};
use rustix::mm::{MapFlags, ProtFlags};

/// Added to every fd number of the image.
const FD_SHIFT: i32 = 100;
/// Where the image's buffers are moved to (as in `benches/exec.rs`: between
/// the heap and the mmap area on x86-64, where nothing maps by itself).
const BUFFER_BASE: u64 = 0x2000_0000_0000;
/// Where ring memory is moved to when a recorded range is taken here.
const RING_BASE: u64 = 0x3400_0000_0000;
const SEED_IMAGE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../plans/seed.img");
const GOAL: f64 = 1.2;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let rounds: usize = env_or("CONTINUITY_RESTORE_ROUNDS", 200);
    let settle = Duration::from_micros(env_or("CONTINUITY_RESTORE_SETTLE_US", 2000));

    let bytes = std::fs::read(SEED_IMAGE).expect("reading plans/seed.img");
    let mut image = ringplan_image::decode_slice(&bytes).expect("decoding plans/seed.img");
    room::shift_fds(&mut image, FD_SHIFT);
    room::move_buffers(&mut image, BUFFER_BASE);
    let ring_memory = match room::move_ring_memory_if_taken(&mut image, RING_BASE) {
        None => "ring memory at the recorded addresses (free here)".to_owned(),
        Some(taken) => format!("ring memory moved to {RING_BASE:#x} ({taken} was taken here)"),
    };
    let mut baseline_image = image.clone();
    for object in &mut baseline_image.objects {
        if let ObjectKind::Ring(ring) = &mut object.kind {
            ring.state = None;
        }
    }
    let continuous = ringplan_plan::compile(&image).expect("compiling (a)");
    let baseline = ringplan_plan::compile(&baseline_image).expect("compiling (b)");
    assert!(
        continuous
            .steps
            .iter()
            .any(|step| matches!(step.op, Op::PlaceRingMemory(_))),
        "(a) has no continuity steps: is plans/seed.img a BPF dump (image version 2)?"
    );
    assert!(
        !baseline.steps.iter().any(|step| matches!(
            step.op,
            Op::PlaceRingMemory(_) | Op::RestoreCompletions(_) | Op::QueueSqes(_)
        )),
        "(b) still has continuity steps"
    );
    // The first question in this process: the probe runs (later ones are
    // answered from the process's cache).
    let started = Instant::now();
    let no_mmap = ringplan_exec::continuity::kernel_supports_no_mmap();
    let first_no_mmap_probe = ns(started.elapsed());
    let can_restore_continuously = match no_mmap {
        Ok(()) => true,
        Err(error) => {
            println!("(a) cannot run on this kernel, timing (b) alone: {error}");
            false
        }
    };

    println!(
        "ringplan-exec continuity restore bench: seed image, {rounds} rounds, settle {settle:?}, {}",
        machine()
    );
    println!(
        "(a) with continuity: {} steps ({}); (b) without: {} steps; {ring_memory}",
        continuous.steps.len(),
        op_counts(&continuous),
        baseline.steps.len()
    );
    sanity_check(&baseline, false);
    if can_restore_continuously {
        sanity_check(&continuous, true);
    }

    let sides: Vec<(&str, &Plan)> = if can_restore_continuously {
        vec![("a", &continuous), ("b", &baseline)]
    } else {
        vec![("b", &baseline)]
    };
    // Per side: whole, run phase, preflight.
    let mut times: Vec<[Vec<Duration>; 3]> = sides.iter().map(|_| Default::default()).collect();
    let measurements = sides.len() * 2;
    for round in 0..rounds + 5 {
        for k in 0..measurements {
            let which = (round + k) % measurements;
            let (side, phase) = (which / 2, which % 2);
            let plan = sides[side].1;
            let (elapsed, preflight) = if phase == 0 {
                (restore_whole(plan), None)
            } else {
                let (run, preflight) = restore_run_phase(plan, settle);
                (run, Some(preflight))
            };
            std::thread::sleep(settle);
            if round >= 5 {
                times[side][phase].push(elapsed);
                if let Some(preflight) = preflight {
                    times[side][2].push(preflight);
                }
            }
        }
    }
    let medians: Vec<[Duration; 3]> = times.into_iter().map(|t| t.map(median)).collect();
    println!(
        "{:<28} {:>6} {:>13} {:>13} {:>13}",
        "restore", "steps", "whole", "run phase", "preflight"
    );
    for ((side, plan), [whole, run, preflight]) in sides.iter().zip(&medians) {
        println!(
            "{:<28} {:>6} {:>10} ns {:>10} ns {:>10} ns",
            if *side == "a" {
                "(a) with continuity"
            } else {
                "(b) without (state removed)"
            },
            plan.steps.len(),
            whole.as_nanos(),
            run.as_nanos(),
            preflight.as_nanos()
        );
    }

    let breakdown = if can_restore_continuously {
        Some(breakdown(
            &continuous,
            &baseline,
            (rounds, settle),
            first_no_mmap_probe,
            &medians,
        ))
    } else {
        None
    };

    // The summary `scripts/bench` collects.
    let steps = |plan: &Plan| plan.steps.len();
    if let [[a_whole, a_run, a_preflight], [b_whole, b_run, b_preflight]] = medians[..] {
        let ratio = ns(a_whole) / ns(b_whole);
        println!(
            "TABLE|continuity restore, seed ({} steps vs {}), whole `execute` with continuity vs the same image without ring state, ns per restore|{:.0} ns|{:.0} ns|{ratio:.2}x|<= {GOAL}x|{}",
            steps(&continuous),
            steps(&baseline),
            ns(a_whole),
            ns(b_whole),
            if ratio <= GOAL { "met" } else { "missed" }
        );
        println!(
            "TABLE|continuity restore, seed, run phase alone (preflight {:.0} ns vs {:.0} ns, untimed)|{:.0} ns|{:.0} ns|{:.2}x||",
            ns(a_preflight),
            ns(b_preflight),
            ns(a_run),
            ns(b_run),
            ns(a_run) / ns(b_run)
        );
        if let Some(rows) = breakdown {
            for (what, ours, theirs) in rows {
                // A ratio of a negative estimate (the pieces timed alone
                // under load can add up below zero) means nothing.
                let (theirs, ratio) = theirs.map_or((String::new(), String::new()), |t| {
                    let ratio = if ours > 0.0 && t > 0.0 {
                        format!("{:.2}x", ours / t)
                    } else {
                        String::new()
                    };
                    (format!("{t:.0} ns"), ratio)
                });
                println!(
                    "TABLE|  continuity restore breakdown: {what}|{ours:.0} ns|{theirs}|{ratio}||"
                );
            }
        }
    } else if let [[b_whole, ..]] = medians[..] {
        println!(
            "TABLE|continuity restore, seed, (a) not run: no IORING_SETUP_NO_MMAP on this kernel||{:.0} ns||<= {GOAL}x|skipped",
            ns(b_whole)
        );
    }
}

fn options() -> ExecOptions {
    ExecOptions {
        substitute_external: true,
        raise_fd_limit: false,
        // (b) tries the recorded ring regions, as `plan exec` does.
        skip_ring_mappings: false,
        allow_moved_rings: false,
        accept_restorer_credentials: false,
    }
}

/// Closes the rings, then unmaps all the restore left mapped.
fn teardown(plan: &Plan, restored: Restored, buffers: AnonymousBuffers) {
    let regions: Vec<(u64, u64)> = restored
        .mapped
        .iter()
        .map(|(_, mapping)| (mapping.addr, mapping.addr + room::page_rounded(mapping.len)))
        .collect();
    drop(restored);
    // SAFETY: what this restore mapped; its rings are closed (`restored`
    // was dropped).
    unsafe {
        room::unmap(buffers.mapped());
        room::unmap(&regions);
        room::unmap(&room::placed_ranges(plan));
    }
}

fn restore_whole(plan: &Plan) -> Duration {
    let mut buffers = AnonymousBuffers::new();
    let options = options();
    let start = Instant::now();
    let restored = ringplan_exec::execute(plan, Inputs::new(), &mut buffers, &options);
    let elapsed = start.elapsed();
    teardown(plan, restored.expect("execute"), buffers);
    elapsed
}

/// The run phase's time and the preflight's.
fn restore_run_phase(plan: &Plan, settle: Duration) -> (Duration, Duration) {
    let mut buffers = AnonymousBuffers::new();
    let options = options();
    let inputs = Inputs::new();
    let start = Instant::now();
    let report =
        ringplan_exec::preflight(plan, &inputs, &mut buffers, &options).expect("preflight");
    let preflight = start.elapsed();
    // Let the preflight's throwaway rings go away first.
    std::thread::sleep(settle);
    let start = Instant::now();
    let restored =
        ringplan_exec::test_hooks::run_preflighted(plan, inputs, &mut buffers, &options, &report);
    let elapsed = start.elapsed();
    teardown(plan, restored.expect("run"), buffers);
    (elapsed, preflight)
}

/// Once per plan, untimed: the restore is what it should be, and its
/// teardown leaves no fd and no mapping behind.
fn sanity_check(plan: &Plan, continuous: bool) {
    let before = ringplan_exec::test_hooks::ProcessState::capture();
    let mut buffers = AnonymousBuffers::new();
    let restored =
        ringplan_exec::execute(plan, Inputs::new(), &mut buffers, &options()).expect("execute");
    if continuous {
        assert!(
            !restored.continuous_rings.is_empty(),
            "(a) restored no ring continuously"
        );
    } else {
        assert!(restored.continuous_rings.is_empty());
        let mut reasons: Vec<String> = restored
            .skipped_mappings
            .iter()
            .map(|skipped| format!("{:?}", skipped.reason))
            .collect();
        reasons.dedup();
        println!(
            "(b): {} ring regions mapped at their addresses, {} skipped ({})",
            restored.mapped.len(),
            restored.skipped_mappings.len(),
            reasons.join(", ")
        );
    }
    teardown(plan, restored, buffers);
    std::thread::sleep(Duration::from_millis(20));
    let after = ringplan_exec::test_hooks::ProcessState::capture();
    assert_eq!(before, after, "a restore's teardown left fds or mappings");
}

/// `name: count` of each op kind in plan order.
fn op_counts(plan: &Plan) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for step in &plan.steps {
        let name = step.op.name();
        match counts.iter_mut().find(|(seen, _)| *seen == name) {
            Some((_, count)) => *count += 1,
            None => counts.push((name, 1)),
        }
    }
    counts
        .iter()
        .map(|(name, count)| format!("{count} {name}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Median time of `rounds` calls of `timed`, each followed by `settle`.
fn time_each(rounds: usize, settle: Duration, mut timed: impl FnMut() -> Duration) -> f64 {
    let times = (0..rounds)
        .map(|_| {
            let elapsed = timed();
            std::thread::sleep(settle);
            elapsed
        })
        .collect();
    ns(median(times))
}

/// The pieces only (a) pays and their counterparts in (b), each timed
/// alone on the seed's first ring: `(what, ns, counterpart ns)`, with the
/// extra preflight and run time they add up to against the measured
/// differences (`measured`: whole, run phase and preflight medians of (a)
/// and (b)) last.
fn breakdown(
    continuous: &Plan,
    baseline: &Plan,
    (rounds, settle): (usize, Duration),
    first_no_mmap_probe: f64,
    measured: &[[Duration; 3]],
) -> Vec<(String, f64, Option<f64>)> {
    let (place_index, memory) = continuous
        .steps
        .iter()
        .enumerate()
        .find_map(|(index, step)| match &step.op {
            Op::PlaceRingMemory(memory) => Some((index, memory)),
            _ => None,
        })
        .expect("a place_ring_memory step");
    let setup = continuous
        .steps
        .iter()
        .find_map(|step| match &step.op {
            Op::SetupRing(setup) if setup.memory == Some(place_index as u32) => Some(setup),
            _ => None,
        })
        .expect("the ring set up on it");
    let queue = continuous.steps.iter().find_map(|step| match &step.op {
        Op::QueueSqes(queue) if step.object == continuous.steps[place_index].object => Some(queue),
        _ => None,
    });
    let plain_setup = baseline
        .steps
        .iter()
        .find_map(|step| match &step.op {
            Op::SetupRing(plain) if step.object == continuous.steps[place_index].object => {
                Some(plain)
            }
            _ => None,
        })
        .expect("the same ring in (b)");
    let rings = continuous
        .steps
        .iter()
        .filter(|step| matches!(step.op, Op::PlaceRingMemory(_)))
        .count() as f64;
    let placement = placement_of(memory);
    let ring_setup = ring_setup_of(setup);

    println!("breakdown, each piece alone on the seed's first ring ({rounds} rounds, medians):");
    let no_mmap_probe = time_each(rounds, settle, || {
        let start = Instant::now();
        let answer = ringplan_kernel::probe::has_no_mmap();
        let elapsed = start.elapsed();
        assert_eq!(answer, Ok(true));
        elapsed
    });
    // Preflight's free-range check of one ring's ranges: the maps file
    // opened once, one PROCMAP_QUERY per range (Linux 6.11+).
    let free_check = time_each(rounds, Duration::ZERO, || {
        let start = Instant::now();
        let query = MapsQuery::open(Process::Current).expect("/proc/self/maps");
        for range in memory.rings.iter().chain(std::iter::once(&memory.sqes)) {
            let free = query.is_free(range.addr, range.addr + range.len);
            assert_eq!(free, Ok(true), "{range:?}");
        }
        start.elapsed()
    });
    let cq_entries = if ring_setup.cq_entries == 0 {
        2 * setup.sq_entries
    } else {
        ring_setup.cq_entries
    };
    let size_probe = time_each(rounds, settle, || {
        let start = Instant::now();
        let sizes = ringplan_kernel::probe::ring_memory_sizes(
            setup.sq_entries,
            cq_entries,
            SetupFlags::from_bits_retain(setup.flags),
        );
        let elapsed = start.elapsed();
        assert!(sizes.is_ok());
        elapsed
    });
    let place = time_each(rounds, Duration::ZERO, || {
        let start = Instant::now();
        let placed = PlacedMemory::place(&placement).expect("place");
        let elapsed = start.elapsed();
        drop(placed);
        elapsed
    });
    let create_on = time_each(rounds, settle, || {
        let placed = PlacedMemory::place(&placement).expect("place");
        let start = Instant::now();
        let ring = ContinuousRing::create_on(&ring_setup, placed).expect("create_on");
        let elapsed = start.elapsed();
        drop(ring);
        elapsed
    });
    let queue_time = queue.map(|queue| {
        let queued: Vec<QueuedSqe> = queue
            .sqes
            .iter()
            .map(|sqe| QueuedSqe {
                index: sqe.slot,
                bytes: sqe.bytes.0.clone(),
            })
            .collect();
        let unqueued: Vec<QueuedSqe> = queue
            .unqueued_sqes
            .iter()
            .map(|sqe| QueuedSqe {
                index: sqe.slot,
                bytes: sqe.bytes.0.clone(),
            })
            .collect();
        time_each(rounds, settle, || {
            let mut ring = ContinuousRing::create(&ring_setup, &placement).expect("create");
            let recorded = RecordedSubmissions {
                sq_head: queue.sq_head,
                sq_tail: queue.sq_tail,
                sq_array: queue.sq_array.as_deref(),
                queued: &queued,
                unqueued: &unqueued,
            };
            let start = Instant::now();
            queue_sqes(&mut ring, &recorded).expect("queue_sqes");
            let elapsed = start.elapsed();
            drop(ring);
            elapsed
        })
    });
    let plain = time_each(rounds, settle, || {
        let mut params = plain_params(plain_setup);
        let start = Instant::now();
        // SAFETY: `params` is initialized and names no user memory or fd.
        let ring = unsafe { io_uring_setup(plain_setup.sq_entries, &mut params) };
        let elapsed = start.elapsed();
        drop(ring.expect("io_uring_setup"));
        elapsed
    });
    let region_attempts = time_each(rounds, settle, || {
        let mut params = plain_params(plain_setup);
        // SAFETY: as above.
        let ring =
            unsafe { io_uring_setup(plain_setup.sq_entries, &mut params) }.expect("io_uring_setup");
        let start = Instant::now();
        for mapping in &plain_setup.mappings {
            try_region_like_the_executor(&ring, mapping);
        }
        let elapsed = start.elapsed();
        drop(ring);
        elapsed
    });

    let queue_ns = queue_time.unwrap_or(0.0);
    let preflight_extra = no_mmap_probe + rings * (free_check + size_probe);
    let run_extra = rings * (place + (create_on - plain) + queue_ns) - rings * region_attempts;
    let difference = |phase: usize| ns(measured[0][phase]) - ns(measured[1][phase]);
    let mut rows = vec![
        (
            "(a) preflight: NO_MMAP probe (1-entry ring on 2 pages), the first in a process".to_owned(),
            first_no_mmap_probe,
            None,
        ),
        (
            "(a) preflight: NO_MMAP probe, answered from the process's cache after the first".to_owned(),
            no_mmap_probe,
            None,
        ),
        (
            "(a) preflight: free-range check (PROCMAP_QUERY per range), per ring".to_owned(),
            free_check,
            None,
        ),
        (
            "(a) preflight: ring memory sizes (a 1-entry probe, the first per layout in a process; cached after), per ring".to_owned(),
            size_probe,
            None,
        ),
        (
            "(a) place_ring_memory (memfd + mappings), per ring".to_owned(),
            place,
            None,
        ),
        (
            "(a) setup_ring: ContinuousRing::create_on (io_uring_setup(NO_MMAP) on the placed memory) vs (b) plain io_uring_setup, per ring"
                .to_owned(),
            create_on,
            Some(plain),
        ),
        (
            "(b) only: setup_ring trying each recorded ring region at its address (refused), per ring"
                .to_owned(),
            region_attempts,
            None,
        ),
    ];
    if queue_time.is_some() {
        rows.push(("(a) queue_sqes, per ring".to_owned(), queue_ns, None));
    }
    rows.push((
        format!(
            "preflight (a) - (b): the preflight pieces above ({rings} rings) vs the measured difference"
        ),
        preflight_extra,
        Some(difference(2)),
    ));
    rows.push((
        format!(
            "run phase (a) - (b): the run pieces above ({rings} rings, less (b)'s region attempts) vs the measured difference"
        ),
        run_extra,
        Some(difference(1)),
    ));
    for (what, ours, theirs) in &rows {
        match theirs {
            Some(theirs) => println!("  {what}: {ours:.0} ns vs {theirs:.0} ns"),
            None => println!("  {what}: {ours:.0} ns"),
        }
    }
    rows
}

/// What the executor does with a recorded ring region of a new ring
/// (`run/ring_regions.rs`): `MAP_FIXED_NOREPLACE` at the address; on
/// `EINVAL`, a placeholder to see whether the range is taken, then the
/// region mapped where the kernel chooses to see whether it maps at all.
fn try_region_like_the_executor(ring: &std::os::fd::OwnedFd, mapping: &RingMapping) {
    let len = mapping.len as usize;
    let shared = ProtFlags::READ | ProtFlags::WRITE;
    // SAFETY: MAP_FIXED_NOREPLACE never replaces a mapping; what is mapped
    // is unmapped at once.
    unsafe {
        match rustix::mm::mmap(
            mapping.addr as *mut c_void,
            len,
            shared,
            MapFlags::SHARED | MapFlags::POPULATE | MapFlags::FIXED_NOREPLACE,
            ring,
            mapping.region.mmap_offset(),
        ) {
            Ok(got) => rustix::mm::munmap(got, len).expect("munmap"),
            Err(_) => {
                let placeholder = rustix::mm::mmap_anonymous(
                    mapping.addr as *mut c_void,
                    len,
                    ProtFlags::empty(),
                    MapFlags::PRIVATE | MapFlags::FIXED_NOREPLACE | MapFlags::NORESERVE,
                )
                .expect("placeholder");
                rustix::mm::munmap(placeholder, len).expect("munmap");
                let anywhere = rustix::mm::mmap(
                    std::ptr::null_mut(),
                    len,
                    shared,
                    MapFlags::SHARED | MapFlags::POPULATE,
                    ring,
                    mapping.region.mmap_offset(),
                )
                .expect("mapping the region anywhere");
                rustix::mm::munmap(anywhere, len).expect("munmap");
            }
        }
    }
}

/// The parameters (b)'s `setup_ring` gives `io_uring_setup` (no wq_fd: the
/// breakdown uses a ring that attaches to none).
fn plain_params(setup: &SetupRing) -> io_uring_params {
    let mut params = io_uring_params::default();
    params.flags = IoringSetupFlags::from_bits_retain(setup.flags);
    if setup.flags & SetupFlags::CQSIZE.bits() != 0 {
        params.cq_entries = setup.cq_entries;
    }
    params.sq_thread_cpu = setup.sq_thread_cpu.unwrap_or(0);
    params.sq_thread_idle = setup.sq_thread_idle_ms.unwrap_or(0);
    params
}
fn median(mut times: Vec<Duration>) -> Duration {
    times.sort_unstable();
    times[times.len() / 2]
}

fn ns(duration: Duration) -> f64 {
    duration.as_nanos() as f64
}

fn machine() -> String {
    let release = rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|text| text.split(' ').take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    format!("Linux {release}, {cpus} CPUs, load {load}")
}
