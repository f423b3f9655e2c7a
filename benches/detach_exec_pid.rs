//! How long `plan dump --pid PID --detach` and `plan exec IMAGE --pid PID`
//! keep a live process stopped, against the same work done without
//! ringplan reaching into the process (issue 13's figures; goal: within 5x).
//!
//! Two programs, each started once and taken out and put back N times:
//! - the seed (`plan app seed` as a process: its rings have positions,
//!   completions and queued SQEs);
//! - fio (io_uring engine, `registerfiles`, `fixedbufs`, iodepth 8, a
//!   rate-limited write job, so it is mid-I/O at each detach); its job
//!   child process owns the ring.
//!
//! Each round, against the running program, in this order:
//! 1. `plan dump --pid P --freeze signal`: how long an ordinary dump holds
//!    it (its `was held still for` line), the baseline of the detach;
//! 2. `plan dump --pid P --detach -o IMAGE`: the time it is stopped, split
//!    as the command reports it (hold, attach, drain, dump, write, take
//!    out, io threads gone, detach);
//! 3. `plan exec IMAGE --pid P`: the time it is held, split as the command
//!    reports it (attach, preflight, run with its continuity steps,
//!    detach); the process runs again after it;
//! 4. the same image's plan run in this process (`ringplan_exec::execute`:
//!    preflight + run), the baseline of exec --pid: every fd number + 100
//!    (the program's numbers are taken here), registered buffers moved to
//!    0x2000_0000_0000 and the ring memory to 0x3400_0000_0000 when a
//!    recorded range is taken here; torn down outside the timing.
//!
//! The program then runs 200 ms before the next round. At the end the
//! bench checks that the program is still alive and (fio) still doing
//! io_uring I/O, so the figures are of restores that worked.
//!
//! Medians, with the spread (min-max). Lines starting `TABLE|` are the
//! summary `scripts/bench` collects. Run (as root; needs fio):
//! `cargo bench --bench detach_exec_pid`. Before Linux 6.5 (no
//! `IORING_SETUP_NO_MMAP`) rings cannot go back where the program had
//! them: it says so and stops. Environment: `DETACH_EXEC_ROUNDS`
//! (default 7).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ringplan_exec::test_hooks::room;
use ringplan_exec::{AnonymousBuffers, ExecOptions, Inputs};
use ringplan_image::Image;

const PLAN: &str = env!("CARGO_BIN_EXE_plan");
const GOAL: f64 = 5.0;
const FD_SHIFT: i32 = 100;
/// Where ring memory goes in this process when a recorded range is taken.
const RING_BASE: u64 = 0x3400_0000_0000;
/// Where registered buffers go in this process.
const BUFFER_BASE: u64 = 0x2000_0000_0000;
/// How long the program runs between a put-back and the next round.
const RUN_BETWEEN: Duration = Duration::from_millis(200);

/// A child killed when the bench ends, however it ends.
struct Held(Child);

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A process killed when the bench ends, however it ends.
struct KilledWhenDropped(u32);

impl Drop for KilledWhenDropped {
    fn drop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.0 as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

/// One round's figures, in milliseconds.
#[derive(Default)]
struct Round {
    /// `--freeze signal`'s held time.
    freeze_held: f64,
    /// `--detach`: total, hold, attach, drain, dump, write, take out, io
    /// threads gone, detach.
    detach: [f64; 9],
    /// `exec --pid`: held, attach, preflight, run, continuity, detach.
    exec_pid: [f64; 6],
    /// The same plan in this process: preflight + run.
    in_process: f64,
    /// Positions the restore advanced (NOPs, skipping NOPs and messages
    /// over all rings) and the `io_uring_enter` batches that took: the same
    /// plan, so the same in both restores.
    positions: u64,
    batches: u64,
}

const DETACH_PARTS: [&str; 8] = [
    "hold",
    "attach",
    "drain",
    "dump",
    "write",
    "take out",
    "io threads gone",
    "detach",
];

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` would pass
    // nothing: run only when asked to measure.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let rounds: usize = std::env::var("DETACH_EXEC_ROUNDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(7);
    match ringplan_kernel::probe::has_no_mmap() {
        Ok(true) => {}
        Ok(false) => {
            println!(
                "detach_exec_pid: this kernel has no IORING_SETUP_NO_MMAP (Linux 6.5): exec --pid \
                 cannot put rings back where a program had them; nothing to time"
            );
            return;
        }
        Err(error) => panic!("probing IORING_SETUP_NO_MMAP: {error}"),
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("detach-exec-pid");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating the bench's directory");

    let (seed, seed_pid) = start_seed(&dir);
    let seed_rounds = measure("seed", seed_pid, rounds, &dir);
    assert!(
        alive(seed_pid),
        "the seed did not survive its rounds: {}",
        proc_state(seed_pid)
    );
    drop(seed);

    let (fio, fio_pid) = start_fio(&dir);
    // fio's job runs in a child of its own, which killing fio leaves
    // running (its job lasts 300 s and would load the next runs).
    let _job = KilledWhenDropped(fio_pid);
    let fio_rounds = measure("fio", fio_pid, rounds, &dir);
    let head = sq_head(fio_pid);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        sq_head(fio_pid) != head,
        "fio's ring does not move after its last put-back"
    );
    drop(fio);

    report("seed (`plan app seed`)", &seed_rounds);
    report(
        "fio (io_uring, registerfiles, fixedbufs, iodepth 8, rate-limited write)",
        &fio_rounds,
    );
}

/// `plan app seed`: the process and its pid. Its stdio are regular files
/// and /dev/null (a pipe has no path, so exec --pid could only register a
/// stand-in for one, not the process's own).
fn start_seed(dir: &Path) -> (Held, u32) {
    let description_path = dir.join("seed.out");
    let file = |path: &Path| std::fs::File::create(path).expect("the seed's output file");
    let held = Held(
        Command::new(PLAN)
            .args(["app", "seed"])
            .stdin(Stdio::null())
            .stdout(file(&description_path))
            .stderr(file(&dir.join("seed.err")))
            .spawn()
            .expect("plan app seed"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(&description_path).unwrap_or_default();
        if let Some(line) = text.lines().next().filter(|_| text.contains('\n')) {
            let description: serde_json::Value =
                serde_json::from_str(line).expect("the seed's JSON description");
            let pid = description["pid"].as_u64().expect("pid") as u32;
            return (held, pid);
        }
        assert!(Instant::now() < deadline, "the seed said nothing in 20 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// fio writing at 16 MiB/s for long enough: the fio process and the pid of
/// its job child (the ring's owner), once its ring has done I/O.
fn start_fio(dir: &Path) -> (Held, u32) {
    let job = dir.join("job.fio");
    std::fs::write(
        &job,
        format!(
            "[global]\nioengine=io_uring\nrw=write\nbs=4k\niodepth=8\nsize=32M\nrate=16m\n\
             time_based=1\nruntime=300\nregisterfiles=1\nfixedbufs=1\ndirectory={}\n\n\
             [bench]\nfilename=data\n",
            dir.display()
        ),
    )
    .expect("writing the job file");
    let fio = Held(
        Command::new("fio")
            .arg("--eta=never")
            .arg(&job)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting fio (scripts/deps installs it)"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let owner = children(fio.0.id())
            .into_iter()
            .find(|child| sq_head(*child).is_some_and(|head| head > 0));
        if let Some(pid) = owner {
            return (fio, pid);
        }
        assert!(Instant::now() < deadline, "fio did no io_uring I/O in 20 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The rounds against `pid` (see the header).
fn measure(name: &str, pid: u32, rounds: usize, dir: &Path) -> Vec<Round> {
    let image_path = dir.join(format!("{name}.img"));
    let image_arg = image_path.to_str().expect("utf-8 path");
    let pid_arg = pid.to_string();
    let options = ExecOptions {
        substitute_external: true,
        ..ExecOptions::default()
    };
    let mut measured = Vec::new();
    let mut refused = 0;
    for round in 0..rounds {
        std::thread::sleep(RUN_BETWEEN);
        let freeze = plan(&[
            "dump",
            "--pid",
            &pid_arg,
            "--backend",
            "bpf",
            "--freeze",
            "signal",
            "-o",
            "/dev/null",
        ]);
        let freeze_held = numbers_after(&freeze.stderr, "was held still for ")[0];
        std::thread::sleep(Duration::from_millis(50));

        let detach = plan(&["dump", "--pid", &pid_arg, "--detach", "-o", image_arg]);
        let detach: [f64; 9] = numbers_after(&detach.stderr, &format!("pid {pid} stopped for "))
            .try_into()
            .unwrap_or_else(|numbers| panic!("{name}: the --detach figures: {numbers:?}"));
        assert!(
            proc_state(pid).starts_with('T'),
            "{name}: not stopped after --detach"
        );

        let exec = exec_pid(name, image_arg, &pid_arg, &mut refused);
        let exec_pid: [f64; 6] = numbers_after(&exec.stdout, &format!("process {pid} held "))
            .try_into()
            .unwrap_or_else(|numbers| panic!("{name}: the exec --pid figures: {numbers:?}"));
        assert!(
            !proc_state(pid).starts_with('T'),
            "{name}: still stopped after exec --pid"
        );

        let image = ringplan_image::decode_slice(&std::fs::read(&image_path).expect("the image"))
            .expect("decoding the image");
        let (in_process, positions, batches) = in_process(image, &options);
        println!(
            "{name} (pid {pid}) round {round}: --detach {:.1} ms, exec --pid {:.2} ms (continuity {:.2} ms), \
             in-process {in_process:.2} ms; {positions} positions advanced in {batches} batches",
            detach[0], exec_pid[0], exec_pid[4]
        );
        measured.push(Round {
            freeze_held,
            detach,
            exec_pid,
            in_process,
            positions,
            batches,
        });
    }
    if refused > 0 {
        println!(
            "{name}: exec --pid refused {refused} time(s) in {rounds} rounds while the ring the detach \
             closed was still being torn down (tried again after 100 ms; the figures are the attempts \
             that restored)"
        );
    }
    measured
}

/// `plan exec IMAGE --pid P`, tried again while it refuses because the
/// kernel's teardown of the ring the detach just closed still writes its
/// CQ tail into memory that stays in the process (crates/ringplan-exec/
/// README.md; from the second round on the ring memory is the memfd the
/// previous restore placed). The refusal undoes everything and leaves the
/// process stopped; `refused` counts them.
fn exec_pid(name: &str, image: &str, pid: &str, refused: &mut usize) -> std::process::Output {
    for _ in 0..20 {
        let output = Command::new(PLAN)
            .args(["exec", image, "--pid", pid])
            .output()
            .expect("running plan");
        if output.status.success() {
            return output;
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("restore_completions") && stderr.contains("everything done was undone"),
            "{name}: plan exec --pid: {stderr}"
        );
        *refused += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{name}: exec --pid refused for 2 s");
}

/// Runs `image`'s plan in this process (fds shifted, buffers moved, ring
/// memory moved when taken here): preflight + run in milliseconds, the
/// positions advanced and the batches that took; the teardown is not
/// timed.
fn in_process(mut image: Image, options: &ExecOptions) -> (f64, u64, u64) {
    room::shift_fds(&mut image, FD_SHIFT);
    room::move_buffers(&mut image, BUFFER_BASE);
    room::move_ring_memory_if_taken(&mut image, RING_BASE);
    let plan = ringplan_plan::compile(&image).expect("compiling the image (in this process)");
    let mut buffers = AnonymousBuffers::new();
    let started = Instant::now();
    let restored = ringplan_exec::execute(&plan, Inputs::new(), &mut buffers, options)
        .expect("the plan in this process");
    let took = ms(started.elapsed());
    let advanced = restored.continuous_rings.iter().map(|ring| ring.advanced);
    let positions = advanced
        .clone()
        .map(|a| a.nops + a.skipping_nops + a.messages)
        .sum();
    let batches = advanced.map(|a| a.batches).sum();
    // Everything the restore left mapped goes, so that the next round's
    // ranges are free again.
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
        room::unmap(&room::placed_ranges(&plan));
    }
    // The closed rings' teardown stays out of the next measurement.
    std::thread::sleep(Duration::from_millis(20));
    (took, positions, batches)
}

fn plan(args: &[&str]) -> std::process::Output {
    let output = Command::new(PLAN)
        .args(args)
        .output()
        .expect("running plan");
    assert!(
        output.status.success(),
        "plan {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The numbers on the line of `text` containing `marker`, after it.
fn numbers_after(text: &[u8], marker: &str) -> Vec<f64> {
    let text = String::from_utf8_lossy(text);
    let Some(rest) = text
        .lines()
        .find_map(|line| line.split_once(marker).map(|(_, rest)| rest.to_owned()))
    else {
        panic!("no `{marker}` in: {text}");
    };
    rest.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter_map(|token| token.parse().ok())
        .collect()
}

fn report(name: &str, rounds: &[Round]) {
    let n = rounds.len();
    let stat = |pick: &dyn Fn(&Round) -> f64| Stat::of(rounds.iter().map(pick).collect());
    let stopped = stat(&|r| r.detach[0]);
    let freeze = stat(&|r| r.freeze_held);
    let held = stat(&|r| r.exec_pid[0]);
    let local = stat(&|r| r.in_process);
    println!();
    println!("{name}, {n} rounds (median, min-max, ms):");
    println!("  --detach, stopped            {stopped}");
    for (index, part) in DETACH_PARTS.iter().enumerate() {
        println!("    {part:<26} {}", stat(&|r| r.detach[index + 1]));
    }
    println!("  --freeze signal dump, held   {freeze}");
    println!("  exec --pid, held             {held}");
    println!(
        "    attach                     {}",
        stat(&|r| r.exec_pid[1])
    );
    println!(
        "    preflight                  {}",
        stat(&|r| r.exec_pid[2])
    );
    println!(
        "    syscalls (run - continuity) {}",
        stat(&|r| r.exec_pid[3] - r.exec_pid[4])
    );
    println!(
        "    memory (continuity steps)  {}",
        stat(&|r| r.exec_pid[4])
    );
    println!(
        "    detach                     {}",
        stat(&|r| r.exec_pid[5])
    );
    println!("  in this process (preflight + run) {local}");
    println!(
        "  positions advanced           {}",
        stat(&|r| r.positions as f64)
    );
    println!(
        "  io_uring_enter batches       {}",
        stat(&|r| r.batches as f64)
    );
    if rounds.iter().all(|r| r.batches > 0) {
        let remote = stat(&|r| r.exec_pid[4] * 1e3 / r.batches as f64);
        println!("  continuity per batch, exec --pid (us)   {remote}");
    }

    let parts = |figures: &[(&str, f64)]| {
        figures
            .iter()
            .map(|(part, value)| format!("{part} {value:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let detach_parts: Vec<(&str, f64)> = DETACH_PARTS
        .iter()
        .enumerate()
        .map(|(index, part)| (*part, stat(&|r| r.detach[index + 1]).median))
        .collect();
    let ratio = stopped.median / freeze.median;
    println!(
        "TABLE|{name}: `--detach`, process stopped ({})|{:.1} ms ({:.1}-{:.1})|`--freeze signal` dump held {:.1} ms ({:.1}-{:.1})|{ratio:.1}x|<= {GOAL}x|{}",
        parts(&detach_parts),
        stopped.median,
        stopped.min,
        stopped.max,
        freeze.median,
        freeze.min,
        freeze.max,
        verdict(ratio),
    );
    // What ringplan does itself: the stopped time less the wait for the
    // kernel to end the io threads (`io threads gone`, the 7th part).
    let own = stat(&|r| r.detach[0] - r.detach[7]);
    let ratio = own.median / freeze.median;
    println!(
        "TABLE|{name}: `--detach` less the wait for the io threads to end|{:.1} ms ({:.1}-{:.1})|`--freeze signal` dump held {:.1} ms|{ratio:.1}x||",
        own.median, own.min, own.max, freeze.median,
    );
    let exec_parts = [
        ("attach", stat(&|r| r.exec_pid[1]).median),
        ("preflight", stat(&|r| r.exec_pid[2]).median),
        ("syscalls", stat(&|r| r.exec_pid[3] - r.exec_pid[4]).median),
        ("memory/continuity", stat(&|r| r.exec_pid[4]).median),
        ("detach", stat(&|r| r.exec_pid[5]).median),
    ];
    let ratio = held.median / local.median;
    println!(
        "TABLE|{name}: `exec --pid`, process held ({})|{:.2} ms ({:.2}-{:.2})|same plan in-process {:.2} ms ({:.2}-{:.2})|{ratio:.1}x|<= {GOAL}x|{}",
        parts(&exec_parts),
        held.median,
        held.min,
        held.max,
        local.median,
        local.min,
        local.max,
        verdict(ratio),
    );
}

fn verdict(ratio: f64) -> &'static str {
    if ratio <= GOAL {
        "met"
    } else {
        "missed"
    }
}

/// Median and spread of a figure.
struct Stat {
    median: f64,
    min: f64,
    max: f64,
}

impl Stat {
    fn of(mut values: Vec<f64>) -> Stat {
        values.sort_by(f64::total_cmp);
        Stat {
            median: values.get(values.len() / 2).copied().unwrap_or(f64::NAN),
            min: values.first().copied().unwrap_or(f64::NAN),
            max: values.last().copied().unwrap_or(f64::NAN),
        }
    }
}

impl std::fmt::Display for Stat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:8.2}  ({:.2}-{:.2})", self.median, self.min, self.max)
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn proc_state(pid: u32) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(") ")
        .map(|(_, rest)| rest.chars().take(1).collect())
        .unwrap_or_else(|| "gone".to_owned())
}

fn alive(pid: u32) -> bool {
    let state = proc_state(pid);
    state != "gone" && state != "Z" && state != "X"
}

/// The highest SQ head among `pid`'s io_uring fds (fdinfo), if it has any.
fn sq_head(pid: u32) -> Option<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .ok()?
        .flatten()
        .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
        .filter_map(|info| {
            info.lines().find_map(|line| {
                line.strip_prefix("SqHead:")
                    .and_then(|head| head.trim().parse::<u64>().ok())
            })
        })
        .max()
}

/// The child processes of `pid` (all its threads').
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|pid| pid.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}
