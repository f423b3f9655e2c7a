//! Downtime of a whole program checkpointed and restored with CRIU through
//! ringplan (`plan checkpoint`, `plan restore`), against CRIU alone on the
//! same workload without io_uring, in the same run (issue 14's figures;
//! goal: io_uring adds at most 10% to CRIU's own downtime).
//!
//! Downtime has two parts: the time the program is stopped at the
//! checkpoint (from its stop to the end of `criu dump`), and the time from
//! the restore's start to the program running again. Each round starts a
//! fresh program, lets it run into its I/O, checkpoints it (criu dump kills
//! it), restores it, then kills the restored copy:
//! - **fio, io_uring**: two jobs (io_uring engine, registered files and
//!   buffers, one with an SQ thread), writing 16 MiB each at 8 MiB/s,
//!   through `plan checkpoint` and `plan restore` (each prints its parts);
//! - **fio, psync**: the same jobs with the psync engine (no io_uring),
//!   through `criu dump` and `criu restore` alone (the same criu, with the
//!   options `plan` gives it: `ringplan_criu::Criu`), the baseline;
//! - **ring_worker** (`tests/programs/ring_worker.c`, the liburing program
//!   of the tests, paused past 300,000 positions with unconsumed CQEs and
//!   queued SQEs): through `plan checkpoint`/`plan restore`; its baseline is
//!   CRIU's own share of the same checkpoint and restore (`criu dump` +
//!   `criu restore`), as it has no io_uring-less twin;
//! - **tree_worker** (`tests/programs/tree_worker.c`: a parent and two
//!   children sharing a plain and an SQPOLL ring set up before the fork,
//!   PostgreSQL 18's pattern), mid-work: through `plan checkpoint`/`plan
//!   restore`, its rings taken out and put back as one tree; its baseline
//!   is likewise CRIU's own share.
//!
//! fio runs in an IPC namespace of its own (criu dumps its SysV shared
//! memory with it). Medians with the spread (min-max); `TABLE|` lines are
//! the summary `scripts/bench` collects. Run as root, with criu (scripts/
//! criu) and fio: `cargo bench --bench criu_downtime`. Where `criu check`
//! fails, or before Linux 6.5, it says so and measures nothing.
//! Environment: `CRIU_DOWNTIME_ROUNDS` (default 5).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ringplan_criu::Criu;
use ringplan_kernel::procfs::{task, Process};

const PLAN: &str = env!("CARGO_BIN_EXE_plan");
/// The goal: ringplan's downtime within 1.1x of CRIU's own.
const GOAL: f64 = 1.1;

/// One checkpoint and restore, in milliseconds.
#[derive(Debug, Clone, Copy, Default)]
struct Round {
    /// From the program's stop to the end of `criu dump`.
    stopped: f64,
    /// Of which: taking the rings out (0 for criu alone).
    rings_out: f64,
    /// Of which: `criu dump`.
    criu_dump: f64,
    /// From the restore's start to the program running.
    restore: f64,
    /// Of which: `criu restore`.
    criu_restore: f64,
    /// Of which: putting the rings back (0 for criu alone).
    rings_back: f64,
}

impl Round {
    fn downtime(&self) -> f64 {
        self.stopped + self.restore
    }
}

fn main() {
    let rounds: usize = std::env::var("CRIU_DOWNTIME_ROUNDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(5);
    let works = Command::new("criu")
        .arg("check")
        .output()
        .is_ok_and(|output| output.status.success());
    if !works {
        println!("criu is not installed, or `criu check` fails on this kernel: nothing measured");
        return;
    }
    if ringplan_exec::continuity::kernel_supports_no_mmap().is_err() {
        println!("this kernel has no IORING_SETUP_NO_MMAP (Linux 6.5+): rings cannot go back where programs had them; nothing measured");
        return;
    }
    let criu = Criu::find(None).unwrap_or_else(|error| panic!("{error}"));
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("criu_downtime");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("the bench's directory");
    let worker = ringplan_scenarios::c_programs::build("ring_worker", &work)
        .unwrap_or_else(|error| panic!("{error}"));
    let tree_worker = ringplan_scenarios::c_programs::build("tree_worker", &work)
        .unwrap_or_else(|error| panic!("{error}"));

    let mut uring = Vec::new();
    let mut psync = Vec::new();
    let mut liburing = Vec::new();
    let mut tree = Vec::new();
    for round in 0..rounds {
        // Interleaved, so that a change of load falls on all three alike.
        uring.push(fio_through_plan(&work.join(format!("uring-{round}"))));
        psync.push(fio_through_criu_alone(
            &criu,
            &work.join(format!("psync-{round}")),
        ));
        liburing.push(worker_through_plan(
            &worker,
            &work.join(format!("worker-{round}")),
        ));
        tree.push(tree_worker_through_plan(
            &tree_worker,
            &work.join(format!("tree-{round}")),
        ));
        eprintln!(
            "round {round}: fio io_uring {:.1} ms, fio psync (criu alone) {:.1} ms, ring_worker {:.1} ms, tree_worker {:.1} ms",
            uring[round].downtime(),
            psync[round].downtime(),
            liburing[round].downtime(),
            tree[round].downtime()
        );
    }
    let _ = std::fs::remove_dir_all(&work);

    let fio_ratio = median(&uring, Round::downtime) / median(&psync, Round::downtime);
    println!(
        "TABLE|fio io_uring through `plan checkpoint`/`plan restore`, downtime ({})|{}|fio psync through criu alone {}|{fio_ratio:.2}x|<= {GOAL}x|{}",
        parts(&uring),
        spread(&uring, Round::downtime),
        spread(&psync, Round::downtime),
        verdict(fio_ratio)
    );
    let stopped_ratio =
        median(&uring, |round| round.stopped) / median(&psync, |round| round.stopped);
    println!(
        "TABLE|fio: stopped at the checkpoint|{}|criu dump alone {}|{stopped_ratio:.2}x||",
        spread(&uring, |round| round.stopped),
        spread(&psync, |round| round.stopped),
    );
    let restore_ratio =
        median(&uring, |round| round.restore) / median(&psync, |round| round.restore);
    println!(
        "TABLE|fio: restore until running|{}|criu restore alone {}|{restore_ratio:.2}x||",
        spread(&uring, |round| round.restore),
        spread(&psync, |round| round.restore),
    );
    let criu_share = |round: &Round| round.criu_dump + round.criu_restore;
    let worker_ratio = median(&liburing, Round::downtime) / median(&liburing, criu_share);
    println!(
        "TABLE|ring_worker (liburing, 300,000 positions) through `plan checkpoint`/`plan restore`, downtime ({})|{}|its criu dump + criu restore {}|{worker_ratio:.2}x|<= {GOAL}x|{}",
        parts(&liburing),
        spread(&liburing, Round::downtime),
        spread(&liburing, criu_share),
        verdict(worker_ratio)
    );
    let tree_ratio = median(&tree, Round::downtime) / median(&tree, criu_share);
    println!(
        "TABLE|tree_worker (3 processes sharing a plain and an SQPOLL ring) through `plan checkpoint`/`plan restore`, downtime ({})|{}|its criu dump + criu restore {}|{tree_ratio:.2}x|<= {GOAL}x|{}",
        parts(&tree),
        spread(&tree, Round::downtime),
        spread(&tree, criu_share),
        verdict(tree_ratio)
    );
}

fn verdict(ratio: f64) -> &'static str {
    if ratio <= GOAL {
        "met"
    } else {
        "missed"
    }
}

/// The median parts of `rounds`, as the table shows them.
fn parts(rounds: &[Round]) -> String {
    format!(
        "stopped {:.1}: rings out {:.1}, criu dump {:.1}; restore {:.1}: criu restore {:.1}, rings back {:.1}",
        median(rounds, |round| round.stopped),
        median(rounds, |round| round.rings_out),
        median(rounds, |round| round.criu_dump),
        median(rounds, |round| round.restore),
        median(rounds, |round| round.criu_restore),
        median(rounds, |round| round.rings_back),
    )
}

fn median(rounds: &[Round], value: impl Fn(&Round) -> f64) -> f64 {
    let mut values: Vec<f64> = rounds.iter().map(value).collect();
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn spread(rounds: &[Round], value: impl Fn(&Round) -> f64 + Copy) -> String {
    let values: Vec<f64> = rounds.iter().map(value).collect();
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{:.1} ms ({min:.1}-{max:.1})", median(rounds, value))
}

/// A fio job file in `dir` for `engine`: two jobs, the second with an SQ
/// thread where the engine is io_uring.
fn fio_job(dir: &Path, engine: &str) -> PathBuf {
    let uring = engine == "io_uring";
    let extra = if uring {
        "registerfiles=1\nfixedbufs=1\n"
    } else {
        ""
    };
    let sqpoll = if uring { "sqthread_poll=1\n" } else { "" };
    let job = dir.join("job.fio");
    std::fs::write(
        &job,
        format!(
            "[global]\nioengine={engine}\nrw=write\nbs=4k\niodepth=8\nsize=16M\nrate=8m\n\
             verify=crc32c\ndo_verify=1\n{extra}directory={}\n\n\
             [first]\nfilename=first.data\n\n[second]\nfilename=second.data\n{sqpoll}",
            dir.display()
        ),
    )
    .expect("writing the job file");
    job
}

/// Starts fio on `job` in an IPC namespace of its own and waits until both
/// job processes have written (SQ heads moved for io_uring; the data files
/// laid out and 300 ms of writing for psync).
fn start_fio(job: &Path) -> std::process::Child {
    let mut fio = Command::new("unshare")
        .args([
            "--ipc",
            "setsid",
            "fio",
            "--eta=never",
            "--output=/dev/null",
        ])
        .arg(job)
        .current_dir(job.parent().unwrap_or(Path::new("/tmp")))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting fio in an IPC namespace of its own");
    let root = fio.id();
    let deadline = Instant::now() + Duration::from_secs(20);
    while task::tree(root).map_or(0, |tree| tree.len()) < 3 {
        assert!(
            fio.try_wait().expect("fio's status").is_none(),
            "fio ended early"
        );
        assert!(Instant::now() < deadline, "fio started no jobs");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Laying out 2 x 16 MiB, then 300 ms into the rate-limited writes.
    std::thread::sleep(Duration::from_millis(600));
    fio
}

fn fio_through_plan(dir: &Path) -> Round {
    std::fs::create_dir_all(dir).expect("round dir");
    let mut fio = start_fio(&fio_job(dir, "io_uring"));
    let root = fio.id();
    let round = through_plan(&mut fio, &dir.join("images"));
    kill_tree(root);
    round
}

fn fio_through_criu_alone(criu: &Criu, dir: &Path) -> Round {
    std::fs::create_dir_all(dir).expect("round dir");
    let mut fio = start_fio(&fio_job(dir, "psync"));
    let root = fio.id();
    let images = dir.join("images");
    std::fs::create_dir_all(&images).expect("images dir");
    let ids = thread_ids(root);
    let dumping = Instant::now();
    criu.dump(root, &images, false, &[])
        .unwrap_or_else(|error| panic!("criu dump of fio psync: {error}"));
    let stopped = ms(dumping.elapsed());
    let _ = fio.wait();
    wait_until_free(&ids);
    let restoring = Instant::now();
    let restored = criu
        .restore(&images, &[])
        .unwrap_or_else(|error| panic!("criu restore of fio psync: {error}"));
    // `Criu::restore` leaves the tree stopped, as `plan restore` has it
    // before its rings go back: resuming it ends the restore.
    for pid in task::tree(restored).unwrap_or_default() {
        let _ = ringplan_criu::mover::resume(pid);
    }
    let restore = ms(restoring.elapsed());
    kill_tree(restored);
    Round {
        stopped,
        criu_dump: stopped,
        restore,
        criu_restore: restore,
        ..Round::default()
    }
}

fn worker_through_plan(worker: &Path, dir: &Path) -> Round {
    std::fs::create_dir_all(dir).expect("round dir");
    let out = dir.join("out");
    let mut child = Command::new("setsid")
        .arg(worker)
        .arg("plain")
        .arg(dir.join("records"))
        .arg("2000")
        .arg("300000")
        .arg(dir.join("go"))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("out"))
        .stderr(Stdio::null())
        .spawn()
        .expect("starting ring_worker");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&out).is_ok_and(|text| text.contains("paused")) {
        assert!(Instant::now() < deadline, "ring_worker did not pause");
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = child.id();
    let round = through_plan(&mut child, &dir.join("images"));
    kill_tree(pid);
    round
}

/// tree_worker mid-work (300 ms into a long run, in a session of its own,
/// its children surviving their parent's death for criu to restore them):
/// checkpointed and restored, then killed.
fn tree_worker_through_plan(tree_worker: &Path, dir: &Path) -> Round {
    std::fs::create_dir_all(dir).expect("round dir");
    let out = dir.join("out");
    let mut child = Command::new("setsid")
        .arg(tree_worker)
        .arg(dir)
        .arg("1000000")
        .arg("5")
        .arg("NO_PDEATHSIG")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("out"))
        .stderr(Stdio::null())
        .spawn()
        .expect("starting tree_worker");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&out).is_ok_and(|text| text.contains("\"children\"")) {
        assert!(Instant::now() < deadline, "tree_worker did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(300));
    let pid = child.id();
    let round = through_plan(&mut child, &dir.join("images"));
    kill_tree(pid);
    round
}

/// `plan checkpoint` of `root`'s tree (criu dump kills it; this process
/// reaps the root), then `plan restore`; the parts as the two commands
/// print them.
fn through_plan(root: &mut Child, images: &Path) -> Round {
    let images_dir = images.to_str().expect("utf-8 path");
    let ids = thread_ids(root.id());
    let checkpoint = run_plan(&[
        "checkpoint",
        "--pid",
        &root.id().to_string(),
        "-D",
        images_dir,
    ]);
    let _ = root.wait();
    wait_until_free(&ids);
    let restore = run_plan(&["restore", "-D", images_dir]);
    // "stopped for X ms: rings out A, criu dump B, rings back C"
    let stopped = number_after(&checkpoint, "stopped for ");
    let criu_dump = number_after(&checkpoint, "criu dump ");
    // "in X ms: criu restore A, rings back B"
    Round {
        stopped,
        rings_out: stopped - criu_dump,
        criu_dump,
        restore: number_after(&restore, ") in "),
        criu_restore: number_after(&restore, "criu restore "),
        rings_back: number_after(&restore, "rings back "),
    }
}

fn run_plan(args: &[&str]) -> String {
    let output = Command::new(PLAN)
        .args(args)
        .output()
        .expect("running plan");
    assert!(
        output.status.success(),
        "plan {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The number right after `label` in `text`.
fn number_after(text: &str, label: &str) -> f64 {
    let rest = text
        .split(label)
        .nth(1)
        .unwrap_or_else(|| panic!("no {label:?} in {text:?}"));
    let number: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    number
        .parse()
        .unwrap_or_else(|_| panic!("no number after {label:?} in {text:?}"))
}

/// Every thread id of `root`'s tree now.
fn thread_ids(root: u32) -> Vec<u32> {
    task::tree(root)
        .unwrap_or_else(|_| vec![root])
        .into_iter()
        .flat_map(|pid| task::ids(Process::Pid(pid)).unwrap_or_default())
        .collect()
}

/// Waits until `ids` are free (the killed tree's orphans reaped), so that
/// the restore measured is not a wait for the reaper.
fn wait_until_free(ids: &[u32]) {
    ringplan_criu::thread_ids::wait_until_free(ids, Duration::from_secs(20))
        .unwrap_or_else(|error| panic!("{error}"));
}

/// Kills every process of `root`'s tree.
fn kill_tree(root: u32) {
    for pid in task::tree(root).unwrap_or_else(|_| vec![root]).iter().rev() {
        ringplan_criu::mover::kill(*pid);
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}
