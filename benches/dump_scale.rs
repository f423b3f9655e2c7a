//! What a dump costs per registered entry and per ring, against the kernel's
//! own printing of the same rings (`/proc/PID/fdinfo/RING_FD`), and what
//! the image and the dumper's memory cost per entry.
//!
//! Workloads, each held by a `plan app` process for the whole run:
//! `files:1000` and `files:19000` (one plain ring with N registered files,
//! all also held at fds) and `rings:512` (512 plain rings).
//!
//! Figures (all from this run; ours and the baseline measured alternately):
//! - dump cost per registered entry: the slope between the two table sizes,
//!   (t(19000) - t(1000)) / 18000, of
//!   - ours, whole processes: `plan dump --pid PID --backend bpf -o FILE`;
//!   - ours, in process: `Dumper::dump` + CBOR encoding, with the BPF
//!     program loaded once (a restorer that keeps a `Dumper`);
//!   - the baseline: reading the ring's `/proc/PID/fdinfo` file, which
//!     prints every registered slot's path (`UserFiles:`).
//! - 512 rings: `Dumper::dump` + encoding vs reading the 512 rings' fdinfo
//!   files, in process; the whole `plan dump` process too.
//! - where the per-entry time goes: the slope of each phase (BPF read,
//!   `/proc/PID/maps`, assembling, encoding).
//! - image bytes per registered slot for the dense 19,000-slot table: the
//!   whole image divided by the slots, the slope between the two sizes, and
//!   the slot table's own cost (the image encoded with and without the
//!   ring's slot array).
//! - the dumper's peak RSS (`wait4`'s `ru_maxrss`) per entry: its slope.
//!
//! Lines starting `TABLE|` are the summary that `scripts/bench` collects.
//!
//! Run: `cargo bench --bench dump_scale` (root: BPF). `DUMP_SCALE_ROUNDS`
//! sets the rounds per figure (default 15, after 2 warm-up rounds).

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ringplan_dump::{BackendChoice, Dumper, Selection};
use ringplan_image::{encode_to_vec, Image, ObjectKind, Source};

mod held;
use held::Held;

const PLAN: &str = env!("CARGO_BIN_EXE_plan");
const SMALL: usize = 1_000;
const LARGE: usize = 19_000;
const RINGS: usize = 512;

/// Set in the child that starts the whole `plan dump` processes.
const SPAWNER_ENV: &str = "RINGPLAN_DUMP_SCALE_SPAWNER";

/// Starts the whole `plan dump` processes and reports each one's wall time
/// and peak RSS. A child's `ru_maxrss` counts the memory of the process it
/// was forked from (Linux keeps the old mm's high-water mark across exec),
/// so the dumps are started from this small process, itself started before
/// the bench loaded anything, rather than from the bench.
struct Spawner {
    child: Child,
    requests: std::process::ChildStdin,
    replies: std::io::BufReader<std::process::ChildStdout>,
}

impl Spawner {
    fn start() -> Spawner {
        let exe = std::env::current_exe().expect("current_exe");
        let mut child = Command::new(exe)
            .env(SPAWNER_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawner");
        let requests = child.stdin.take().expect("piped");
        let replies = std::io::BufReader::new(child.stdout.take().expect("piped"));
        Spawner {
            child,
            requests,
            replies,
        }
    }

    /// One whole `plan dump` of `pid`: its wall time and peak RSS in bytes.
    fn whole_dump(&mut self, pid: u32, output: &Path) -> (Duration, u64) {
        use std::io::Write;
        writeln!(self.requests, "{pid} {}", output.display()).expect("request");
        let mut line = String::new();
        self.replies.read_line(&mut line).expect("reply");
        let mut fields = line
            .split_whitespace()
            .map(|field| field.parse::<u64>().expect("number"));
        let (nanos, peak) = (
            fields.next().expect("time"),
            fields.next().expect("peak RSS"),
        );
        (Duration::from_nanos(nanos), peak)
    }
}

impl Drop for Spawner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The spawner's loop: for each `PID OUTPUT` line, one `plan dump`,
/// answered with `NANOSECONDS PEAK_RSS_BYTES`.
fn spawner_loop() {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("request");
        let (pid, output) = line.split_once(' ').expect("PID OUTPUT");
        let start = Instant::now();
        // Reaped below by wait4, which std's Child cannot do with rusage.
        #[allow(clippy::zombie_processes)]
        let child = Command::new(PLAN)
            .args(["dump", "--pid", pid, "--backend", "bpf", "-o", output])
            .stdout(Stdio::null())
            .spawn()
            .expect("plan dump");
        let mut status = 0;
        // SAFETY: an all-zero rusage is valid; wait4 fills it.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: waits for our own child, which std's Child then never
        // waits for (dropping it neither kills nor reaps).
        let waited = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
        let elapsed = start.elapsed();
        assert!(
            waited > 0 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "plan dump failed: {status}"
        );
        writeln!(
            out,
            "{} {}",
            elapsed.as_nanos(),
            usage.ru_maxrss as u64 * 1024
        )
        .expect("reply");
        out.flush().expect("reply");
    }
}

/// The library dump of `pid` and its encoding, phase by phase.
struct Phases {
    read: Duration,
    maps: Duration,
    assemble: Duration,
    /// Of `assemble`: `validate` alone, timed again on the result.
    validate: Duration,
    encode: Duration,
    image: Image,
    bytes: usize,
}

impl Phases {
    fn total(&self) -> Duration {
        self.read + self.maps + self.assemble + self.encode
    }
}

/// What `Dumper::dump` does, with each phase timed (`ringplan_dump`'s
/// public parts, in its order), then the encoding `plan dump` does.
fn phased_dump(bpf: &mut ringplan_dump::BpfDumper, pid: u32) -> Phases {
    let start = Instant::now();
    let target = ringplan_dump::Target::open(pid).expect("target");
    let raw = bpf.read(pid, target.pidfd()).expect("BPF read");
    let read = start.elapsed();
    let start = Instant::now();
    let mappings = ringplan_dump::maps::ring_mappings(pid).expect("maps");
    let maps = start.elapsed();
    let start = Instant::now();
    let source = Source {
        pid,
        backend: ringplan_image::Backend::Bpf,
        kernel_release: String::new(),
    };
    let image = ringplan_dump::assemble::assemble(&raw, &mappings, source, Selection::All)
        .expect("assemble");
    let assemble = start.elapsed();
    let start = Instant::now();
    ringplan_image::validate(&image).expect("valid");
    let validate = start.elapsed();
    let start = Instant::now();
    let bytes = encode_to_vec(&image).expect("encode").len();
    let encode = start.elapsed();
    Phases {
        read,
        maps,
        assemble,
        validate,
        encode,
        image,
        bytes,
    }
}

/// The same through the public entry point, as a restorer would call it.
fn library_dump(dumper: &mut Dumper, pid: u32) -> Duration {
    let start = Instant::now();
    let dump = dumper.dump(pid, Selection::All).expect("dump");
    std::hint::black_box(encode_to_vec(&dump.image).expect("encode"));
    start.elapsed()
}

/// Reads every ring's fdinfo file of `held` once.
fn read_fdinfo(held: &Held) -> Duration {
    let start = Instant::now();
    let ring_fds = held.description["rings"]
        .as_array()
        .expect("rings")
        .iter()
        .map(|ring| ring["fd"].as_i64().expect("ring fd") as i32);
    for fd in ring_fds {
        let text = std::fs::read(format!("/proc/{}/fdinfo/{fd}", held.pid)).expect("fdinfo");
        std::hint::black_box(text);
    }
    start.elapsed()
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort_unstable();
    values[values.len() / 2]
}

fn median_u64(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values[values.len() / 2]
}

/// Alternates `measures` for `rounds` rounds (after 2 warm-up rounds),
/// rotating which goes first, and returns each one's median.
fn alternate<const N: usize>(
    rounds: usize,
    measures: [&mut dyn FnMut() -> Duration; N],
) -> [Duration; N] {
    let mut times: [Vec<Duration>; N] = std::array::from_fn(|_| Vec::new());
    for round in 0..rounds + 2 {
        for k in 0..N {
            let which = (round + k) % N;
            let elapsed = (measures[which])();
            if round >= 2 {
                times[which].push(elapsed);
            }
        }
    }
    times.map(median)
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

/// Microseconds per entry between the small and the large table.
fn slope(small: Duration, large: Duration) -> f64 {
    (micros(large) - micros(small)) / (LARGE - SMALL) as f64
}

fn table(figure: &str, ours: &str, baseline: &str, ratio: &str, target: &str, verdict: &str) {
    println!("TABLE|{figure}|{ours}|{baseline}|{ratio}|{target}|{verdict}");
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "missed"
    }
}

/// The image with every ring's slot array emptied: what the slots alone
/// cost is the difference in encoded size.
fn without_slots(image: &Image) -> Image {
    let mut image = image.clone();
    for object in &mut image.objects {
        if let ObjectKind::Ring(ring) = &mut object.kind {
            ring.files.clear();
        }
    }
    image
}

fn main() {
    if std::env::var_os(SPAWNER_ENV).is_some() {
        spawner_loop();
        return;
    }
    // `cargo bench` passes --bench; `cargo test --benches` does not: run
    // only when asked to measure.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let spawner = std::cell::RefCell::new(Spawner::start());
    let rounds: usize = std::env::var("DUMP_SCALE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    let scratch = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dump-scale");
    std::fs::create_dir_all(&scratch).expect("scratch dir");
    let output = scratch.join("image");

    let small = Held::start(&format!("files:{SMALL}"));
    let large = Held::start(&format!("files:{LARGE}"));
    let rings = Held::start(&format!("rings:{RINGS}"));
    let dumper =
        std::cell::RefCell::new(Dumper::new(BackendChoice::Bpf).expect("BPF dumper (run as root)"));
    let mut bpf = ringplan_dump::BpfDumper::load().expect("BPF dumper (run as root)");

    // Per entry: whole processes, library dumps and fdinfo, alternating.
    let (mut rss_small, mut rss_large) = (Vec::new(), Vec::new());
    let [whole_small, whole_large, lib_small, lib_large, fdinfo_small, fdinfo_large] = alternate(
        rounds,
        [
            &mut || {
                let (time, peak) = spawner.borrow_mut().whole_dump(small.pid, &output);
                rss_small.push(peak);
                time
            },
            &mut || {
                let (time, peak) = spawner.borrow_mut().whole_dump(large.pid, &output);
                rss_large.push(peak);
                time
            },
            &mut || library_dump(&mut dumper.borrow_mut(), small.pid),
            &mut || library_dump(&mut dumper.borrow_mut(), large.pid),
            &mut || read_fdinfo(&small),
            &mut || read_fdinfo(&large),
        ],
    );
    let (rss_small, rss_large) = (median_u64(rss_small), median_u64(rss_large));

    // Where the per-entry time goes.
    let mut phases: [Vec<Phases>; 2] = [Vec::new(), Vec::new()];
    for round in 0..rounds + 2 {
        for (which, held) in [(0, &small), (1, &large)] {
            let measured = phased_dump(&mut bpf, held.pid);
            if round >= 2 {
                phases[which].push(measured);
            }
        }
    }
    let phase_slope = |pick: fn(&Phases) -> Duration| {
        let [a, b] = [0, 1].map(|which| median(phases[which].iter().map(pick).collect()));
        slope(a, b)
    };
    let per_phase = [
        (
            "BPF read (both passes, pidfd_getfd, parsing)",
            phase_slope(|p| p.read),
        ),
        ("/proc/PID/maps", phase_slope(|p| p.maps)),
        (
            "assemble (ids, objects, validation)",
            phase_slope(|p| p.assemble),
        ),
        ("  of which validation", phase_slope(|p| p.validate)),
        ("CBOR encoding", phase_slope(|p| p.encode)),
        ("sum", phase_slope(Phases::total)),
    ];

    // 512 rings.
    let mut whole_rings = Vec::new();
    let [lib_rings, fdinfo_rings] = alternate(
        rounds,
        [
            &mut || {
                let (time, _) = spawner.borrow_mut().whole_dump(rings.pid, &output);
                whole_rings.push(time);
                library_dump(&mut dumper.borrow_mut(), rings.pid)
            },
            &mut || read_fdinfo(&rings),
        ],
    );
    let whole_rings = median(whole_rings);

    // Image size.
    let large_image = &phases[1][0].image;
    let (small_bytes, large_bytes) = (phases[0][0].bytes, phases[1][0].bytes);
    let slots: usize = large_image
        .objects
        .iter()
        .map(|object| match &object.kind {
            ObjectKind::Ring(ring) => ring.files.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(slots, LARGE, "files:{LARGE} registers {LARGE} slots");
    let bare = encode_to_vec(&without_slots(large_image))
        .expect("encode")
        .len();
    let slot_table = (large_bytes - bare) as f64 / slots as f64;
    let whole_per_slot = large_bytes as f64 / slots as f64;
    let image_slope = (large_bytes - small_bytes) as f64 / (LARGE - SMALL) as f64;
    let rss_slope = (rss_large as f64 - rss_small as f64) / (LARGE - SMALL) as f64;

    let (ours_slope, lib_slope, fdinfo_slope) = (
        slope(whole_small, whole_large),
        slope(lib_small, lib_large),
        slope(fdinfo_small, fdinfo_large),
    );
    println!("dump scale: medians of {rounds} alternating rounds");
    println!("  whole plan dump          files:{SMALL} {:>9.0} us   files:{LARGE} {:>9.0} us   slope {ours_slope:.3} us/entry",
        micros(whole_small), micros(whole_large));
    println!("  Dumper::dump + encode    files:{SMALL} {:>9.0} us   files:{LARGE} {:>9.0} us   slope {lib_slope:.3} us/entry",
        micros(lib_small), micros(lib_large));
    println!("  ring fdinfo read         files:{SMALL} {:>9.0} us   files:{LARGE} {:>9.0} us   slope {fdinfo_slope:.3} us/entry",
        micros(fdinfo_small), micros(fdinfo_large));
    println!("  per phase (slope, us/entry):");
    for (phase, value) in per_phase {
        println!("    {phase:<48} {value:.3}");
    }
    println!("  rings:{RINGS}: Dumper::dump + encode {:.0} us, whole plan dump {:.0} us, fdinfo of the {RINGS} rings {:.0} us",
        micros(lib_rings), micros(whole_rings), micros(fdinfo_rings));
    println!("  image: files:{SMALL} {small_bytes} B, files:{LARGE} {large_bytes} B ({slots} slots), without the slot array {bare} B");
    println!("  peak RSS of plan dump: files:{SMALL} {rss_small} B, files:{LARGE} {rss_large} B");

    let ratio = ours_slope / fdinfo_slope;
    table(
        "dump cost per registered entry, whole `plan dump` (slope 1,000 -> 19,000)",
        &format!("{ours_slope:.3} us"),
        &format!("{fdinfo_slope:.3} us (ring fdinfo)"),
        &format!("{ratio:.2}x"),
        "<= 0.5x",
        verdict(ratio <= 0.5),
    );
    let ratio = lib_slope / fdinfo_slope;
    table(
        "dump cost per registered entry, `Dumper::dump` + encode (BPF loaded once)",
        &format!("{lib_slope:.3} us"),
        &format!("{fdinfo_slope:.3} us (ring fdinfo)"),
        &format!("{ratio:.2}x"),
        "<= 0.5x",
        verdict(ratio <= 0.5),
    );
    let ratio = micros(lib_rings) / micros(fdinfo_rings);
    table(
        &format!("{RINGS} rings in one process, `Dumper::dump` + encode"),
        &format!("{:.2} ms", micros(lib_rings) / 1e3),
        &format!(
            "{:.2} ms ({RINGS} ring fdinfo files)",
            micros(fdinfo_rings) / 1e3
        ),
        &format!("{ratio:.2}x"),
        "",
        "",
    );
    table(
        &format!("{RINGS} rings, whole `plan dump` (includes the BPF load)"),
        &format!("{:.2} ms", micros(whole_rings) / 1e3),
        "",
        "",
        "",
        "",
    );
    table(
        &format!("image bytes per registered slot, dense {LARGE}-slot table: the slot array"),
        &format!("{slot_table:.2} B"),
        "40 B (seed record)",
        &format!("{:.2}x", slot_table / 40.0),
        "<= 8 B",
        verdict(slot_table <= 8.0),
    );
    table(
        &format!("image bytes per registered slot, whole image / {LARGE} slots"),
        &format!("{whole_per_slot:.1} B ({large_bytes} B)"),
        "40 B (seed record)",
        &format!("{:.2}x", whole_per_slot / 40.0),
        "<= 8 B",
        verdict(whole_per_slot <= 8.0),
    );
    table(
        "image bytes per registered slot, slope 1,000 -> 19,000 (slot + its file object)",
        &format!("{image_slope:.1} B"),
        "",
        "",
        "",
        "",
    );
    table(
        "dumper peak RSS per entry (slope 1,000 -> 19,000)",
        &format!(
            "{rss_slope:.0} B ({:.1} -> {:.1} MB)",
            rss_small as f64 / 1e6,
            rss_large as f64 / 1e6
        ),
        "",
        "",
        "",
        "",
    );
    for (phase, value) in per_phase {
        table(
            &format!("  per-entry phase: {phase}"),
            &format!("{value:.3} us"),
            "",
            "",
            "",
            "",
        );
    }
    drop((small, large, rings));
}
