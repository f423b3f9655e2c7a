//! Targets that vanish or change while they are dumped, and `--freeze`.
//!
//! Each test makes the race real: a target killed at spread-out moments of
//! the read, a pid handed to a new process, a C program (tests/programs/
//! churn.c) that never stops registering and closing files. The dump must
//! give a clear error or an image of a state that existed; `--freeze` must
//! hold the target still and let it go on every path out, also when `plan`
//! is killed.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ringplan_dump::{BackendChoice, DumpError, Dumper, Selection, Target};
use ringplan_image::{Image, ObjectKind};
use ringplan_kernel::procfs::{stat, Process};

use crate::support::{plan, plan_ok, scratch_dir, write_file, Scenario, TestCgroup, PLAN};

/// The state letter of `pid` (`/proc/PID/stat`), `None` once it is gone.
fn state_of(pid: u32) -> Option<char> {
    let stat = stat::read(Process::Pid(pid)).ok()?;
    Some(char::from(stat.state))
}

/// Waits up to five seconds for `condition`; false if it never held. The
/// bound is generous: these are liveness checks, not timings.
fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    condition()
}

fn kill(pid: u32, signal: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(pid as i32).expect("a pid");
    let _ = rustix::process::kill_process(pid, signal);
}

#[test]
fn a_zombie_is_refused_with_exit_2() {
    let mut child = Command::new("true").spawn().expect("running true");
    let pid = child.id();
    assert!(
        eventually(|| state_of(pid) == Some('Z')),
        "true did not become a zombie"
    );
    let output = plan(&["dump", "--pid", &pid.to_string(), "-o", "/dev/null"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("pid {pid} has exited")),
        "{stderr}"
    );
    child.wait().expect("reaping true");
}

/// The number of registered file slots of every ring, in id order.
fn slot_counts(image: &Image) -> Vec<usize> {
    image
        .objects
        .iter()
        .filter_map(|object| match &object.kind {
            ObjectKind::Ring(ring) => Some(ring.files.iter().filter(|slot| slot.is_some()).count()),
            _ => None,
        })
        .collect()
}

/// A target SIGKILLed at moments spread over a dump: every dump is either
/// the whole state (one ring, all 1,000 files) or "exited during the dump".
#[test]
fn a_target_killed_while_it_is_read_gives_a_whole_image_or_a_clear_error() {
    const FILES: usize = 1000;
    let scenario_name = format!("files:{FILES}");
    let mut dumper = Dumper::new(BackendChoice::Bpf).expect("loading the BPF dumper");
    // How long one undisturbed read takes, to spread the kills over it.
    // The second read of a target: the first also warms caches.
    let calm = Scenario::start(&scenario_name);
    let mut read_time = Duration::ZERO;
    for _ in 0..2 {
        let start = Instant::now();
        let dump = dumper
            .dump(calm.pid(), Selection::All)
            .expect("dumping an undisturbed target");
        read_time = start.elapsed();
        assert_eq!(slot_counts(&dump.image), vec![FILES]);
    }
    drop(calm);

    let rounds = 12u32;
    let (mut whole, mut exited) = (0, 0);
    for round in 0..rounds {
        let scenario = Scenario::start(&scenario_name);
        let pid = scenario.pid();
        let target = Target::open(pid).expect("opening the target");
        // Round 0 kills before the read; the others at 1/8 .. 11/8 of it.
        let delay = read_time * round / 8;
        let killer = std::thread::spawn(move || {
            std::thread::sleep(delay);
            kill(pid, rustix::process::Signal::KILL);
        });
        if round == 0 {
            killer.join().expect("the killer thread");
            assert!(
                eventually(|| target.has_exited()),
                "pid {pid} did not exit after SIGKILL"
            );
            let result = dumper.dump_target(&target, Selection::All);
            assert!(
                matches!(result, Err(DumpError::ExitedDuringDump { .. })),
                "{result:?}"
            );
            exited += 1;
            continue;
        }
        let result = dumper.dump_target(&target, Selection::All);
        killer.join().expect("the killer thread");
        match result {
            Ok(dump) => {
                assert_eq!(
                    slot_counts(&dump.image),
                    vec![FILES],
                    "round {round}: a partial image"
                );
                ringplan_image::validate(&dump.image).expect("the image validates");
                whole += 1;
            }
            Err(DumpError::ExitedDuringDump { pid: reported }) => {
                assert_eq!(reported, pid);
                exited += 1;
            }
            Err(other) => {
                panic!("round {round} (kill after {delay:?} of a {read_time:?} read): {other}")
            }
        }
    }
    println!("{rounds} rounds, read {read_time:?}: {whole} whole images, {exited} 'exited during the dump'");
}

/// The pid of a target whose pid is then handed to a new process: the old
/// target is killed and reaped, `ns_last_pid` is set so the next fork gets
/// its pid, and a new scenario is started. Retries when another fork of
/// the machine took the pid first.
#[test]
fn a_reused_pid_is_not_read_through_an_old_handle() {
    let mut dumper = Dumper::new(BackendChoice::Bpf).expect("loading the BPF dumper");
    let last_pid = Path::new("/proc/sys/kernel/ns_last_pid");
    for attempt in 0..20 {
        let old = Scenario::start("seed");
        let pid = old.pid();
        let handle = Target::open(pid).expect("opening the first target");
        drop(old); // SIGTERM and reaped: the pid is free.
        write_file(last_pid, &(pid - 1).to_string());
        let new = Scenario::start("rings:3");
        if new.pid() != pid {
            println!("attempt {attempt}: another process took pid {pid}; again");
            continue;
        }
        let through_old = dumper.dump_target(&handle, Selection::All);
        assert!(
            matches!(through_old, Err(DumpError::ExitedDuringDump { .. })),
            "the old handle read pid {pid}'s new process: {through_old:?}"
        );
        // A fresh handle on the pid reads the new process.
        let fresh = dumper
            .dump(pid, Selection::All)
            .expect("dumping the new process");
        assert_eq!(
            slot_counts(&fresh.image).len(),
            3,
            "the new process has three rings"
        );
        return;
    }
    panic!("pid reuse could not be staged in 20 attempts");
}

/// Builds tests/programs/churn.c once.
fn churn_binary() -> &'static Path {
    crate::support::c_program("churn")
}

/// A running churn program, killed on drop.
struct Churn {
    child: Child,
    pid: u32,
}

impl Churn {
    fn start(dir: &Path, pause_us: u32) -> Churn {
        let mut child = Command::new(churn_binary())
            .arg(dir)
            .arg(pause_us.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting churn");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .expect("reading churn");
        let pid = line
            .strip_prefix("ready ")
            .and_then(|pid| pid.trim().parse().ok());
        let pid = pid.unwrap_or_else(|| {
            let _ = child.kill();
            panic!("churn printed {line:?}")
        });
        Churn { child, pid }
    }
}

impl Drop for Churn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether an image breaks what holds in every state of churn: all its
/// files (under `dir`) have one name, and every registered one is held by
/// an fd. Such an image mixes two moments.
fn mixes_two_moments(image: &Image, dir: &Path) -> bool {
    let held = |id| {
        image
            .objects
            .iter()
            .any(|object| object.id == id && !object.fds.is_empty())
    };
    let unheld_slot = image.objects.iter().any(|object| match &object.kind {
        ObjectKind::Ring(ring) => ring.files.iter().flatten().any(|id| !held(*id)),
        _ => false,
    });
    let names: std::collections::BTreeSet<&str> = image
        .objects
        .iter()
        .filter_map(|object| match &object.kind {
            ObjectKind::File(file) => file.path.as_deref()?.strip_prefix(dir.to_str()?),
            _ => None,
        })
        .collect();
    unheld_slot || names.len() > 1
}

fn dump_churn(
    pid: u32,
    dir: &Path,
    round: usize,
    extra: &[&str],
) -> (std::process::Output, Option<Image>) {
    let path = dir.join(format!("churn-{round}.img"));
    let _ = std::fs::remove_file(&path);
    let pid = pid.to_string();
    let mut args = vec![
        "dump",
        "--pid",
        &pid,
        "--backend",
        "bpf",
        "-o",
        path.to_str().expect("utf-8"),
    ];
    args.extend_from_slice(extra);
    let output = plan(&args);
    let image = output.status.success().then(|| {
        ringplan_image::decode_slice(&std::fs::read(&path).expect("reading the image"))
            .expect("decoding the image")
    });
    (output, image)
}

/// Without --freeze a target that never stops changing gets either an
/// image or "changed during each of 3 reads"; with --freeze every dump
/// succeeds, every image is a state churn was really in, and churn runs on.
#[test]
fn a_target_that_keeps_changing_is_dumped_whole_only_when_frozen() {
    let dir = scratch_dir("vanishing-churn");
    let files = dir.join("files");
    std::fs::create_dir_all(&files).expect("creating churn's directory");
    let churn = Churn::start(&files, 0);
    let rounds = 12;
    let (mut images, mut refused, mut mixed) = (0, 0, 0);
    for round in 0..rounds {
        let (output, image) = dump_churn(churn.pid, &dir, round, &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        match image {
            Some(image) => {
                images += 1;
                mixed += usize::from(mixes_two_moments(&image, &files));
            }
            None => {
                assert_eq!(output.status.code(), Some(1), "{stderr}");
                assert_eq!(stderr.lines().count(), 1, "{stderr}");
                assert!(
                    stderr.contains("during each of 3 reads") && stderr.contains("--freeze"),
                    "{stderr}"
                );
                refused += 1;
            }
        }
    }
    println!("without --freeze: {images} images ({mixed} mixing two moments), {refused} refused");

    for round in 0..rounds {
        let (output, image) = dump_churn(churn.pid, &dir, round, &["--freeze"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let image = image.unwrap_or_else(|| panic!("--freeze round {round}: {stderr}"));
        assert!(
            !mixes_two_moments(&image, &files),
            "--freeze round {round}: an image mixing two moments: {image:?}"
        );
        assert!(
            stderr.contains("held still for") && stderr.contains("SIGSTOP/SIGCONT"),
            "{stderr}"
        );
        assert!(
            eventually(|| state_of(churn.pid) != Some('T')),
            "churn was left stopped after round {round}"
        );
    }
}

/// Runs `plan freeze --pid PID -- cat` (cat ends when the test closes its
/// stdin), waits until `held` says the target is held, SIGKILLs `plan`
/// alone, and checks the watchdog lets the target go.
fn killed_plan_lets_go(pid: u32, held: impl Fn() -> bool, method: &str) {
    let mut freezer = Command::new(PLAN)
        .args([
            "freeze",
            "--pid",
            &pid.to_string(),
            "--method",
            method,
            "--",
            "cat",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting plan freeze");
    assert!(
        eventually(&held),
        "{method}: plan freeze did not hold pid {pid}"
    );
    freezer.kill().expect("SIGKILL to plan freeze");
    freezer.wait().expect("reaping plan freeze");
    drop(freezer.stdin.take()); // cat, now orphaned, ends.
    assert!(
        eventually(|| !held()),
        "{method}: pid {pid} was still held after plan was killed"
    );
}

#[test]
fn signal_freeze_lets_go_on_every_path() {
    let scenario = Scenario::start("seed");
    let pid = scenario.pid();
    let stopped = || state_of(pid) == Some('T');

    // Success: held, then running again; the SQ thread stopped with it.
    let output = plan(&[
        "freeze",
        "--pid",
        &pid.to_string(),
        "--",
        "sh",
        "-c",
        "cat /proc/$0/task/*/stat",
        &pid.to_string(),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let states: Vec<&str> = stdout
        .lines()
        .filter_map(|line| line.rsplit_once(')')?.1.split_whitespace().next())
        .collect();
    assert!(
        states.len() >= 2 && states.iter().all(|state| *state == "T"),
        "threads while held: {stdout}"
    );
    assert!(!stopped());

    // A command that cannot run is bad input, refused before the target
    // is touched.
    let output = plan(&[
        "freeze",
        "--pid",
        &pid.to_string(),
        "--",
        "/nonexistent/command",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("no such executable") && !stderr.contains("held still"),
        "{stderr}"
    );

    // The command's failure is plan's exit status; the target is let go.
    let output = plan(&[
        "freeze",
        "--pid",
        &pid.to_string(),
        "--",
        "sh",
        "-c",
        "exit 7",
    ]);
    assert_eq!(output.status.code(), Some(7));
    assert!(!stopped());

    // A dump that fails after the freeze (no ring at fd 999) lets go too.
    let output = plan(&[
        "dump",
        "--pid",
        &pid.to_string(),
        "--freeze",
        "--fd",
        "999",
        "-o",
        "/dev/null",
    ]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!stopped());

    // plan killed while holding: the watchdog sends SIGCONT.
    killed_plan_lets_go(pid, stopped, "signal");

    // A target already stopped is left stopped.
    kill(pid, rustix::process::Signal::STOP);
    assert!(eventually(stopped));
    let output = plan(&[
        "dump",
        "--pid",
        &pid.to_string(),
        "--freeze",
        "-o",
        "/dev/null",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("already stopped"), "{stderr}");
    assert!(
        stopped(),
        "a target stopped before the dump was continued by it"
    );
    kill(pid, rustix::process::Signal::CONT);
}

#[test]
fn cgroup_freeze_is_refused_for_a_shared_cgroup() {
    // Scenarios run in the test's own cgroup (shared, or the root).
    let scenario = Scenario::start("seed");
    let output = plan(&[
        "dump",
        "--pid",
        &scenario.pid().to_string(),
        "--freeze=cgroup",
        "-o",
        "/dev/null",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("cannot freeze pid") && stderr.contains("cgroup"),
        "{stderr}"
    );
    assert_ne!(state_of(scenario.pid()), Some('T'));
}

/// The cgroup freezer (v2, and v1 where mounted): a target alone in its
/// cgroup is frozen for the dump and thawed after, also when plan is killed.
#[test]
fn cgroup_freeze_holds_and_lets_go() {
    let mut tried = 0;
    for (version, controller, control, frozen, thawed) in [
        (2, "", "cgroup.events", "frozen 1", "frozen 0"),
        (1, "freezer", "freezer.state", "FROZEN", "THAWED"),
    ] {
        let Some(cgroup) = TestCgroup::create(version, controller, "freeze") else {
            continue;
        };
        tried += 1;
        let scenario = Scenario::start("seed");
        let pid = scenario.pid();
        cgroup.add(pid);
        let state = || std::fs::read_to_string(cgroup.dir.join(control)).unwrap_or_default();
        let is_frozen = || state().lines().any(|line| line.trim() == frozen);

        let output = plan(&[
            "dump",
            "--pid",
            &pid.to_string(),
            "--freeze",
            "-o",
            "/dev/null",
        ]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "v{version}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "cgroup v{version} freezer of {}",
                cgroup.dir.display()
            )),
            "{stderr}"
        );
        assert!(
            state().lines().any(|line| line.trim() == thawed),
            "v{version} after the dump: {}",
            state()
        );

        killed_plan_lets_go(pid, is_frozen, "cgroup");
        drop(scenario);
    }
    assert!(
        tried > 0,
        "no cgroup hierarchy with a freezer is mounted on this machine"
    );
}

/// `plan dump --freeze` against the scenario files:1000 reads the same
/// image as without it (the freeze changes nothing it reads).
#[test]
fn a_frozen_dump_equals_an_unfrozen_one_of_a_quiet_target() {
    let scenario = Scenario::start("files:1000");
    let pid = scenario.pid().to_string();
    let plain = plan_ok(&["dump", "--pid", &pid, "--backend", "bpf"]);
    let frozen = plan_ok(&["dump", "--pid", &pid, "--backend", "bpf", "--freeze"]);
    assert_eq!(plain, frozen);
}

/// One ringplan command at a time holds a process (issue 13): six frozen
/// dumps of one process at once each hold it alone (none finds it stopped
/// by another and reads while that one resumes it), and a dump started
/// while `plan freeze` holds it waits for the freeze to let go.
#[test]
fn holders_of_one_process_take_turns() {
    let scenario = Scenario::start("seed");
    let pid = scenario.pid().to_string();
    let dir = scratch_dir("hold-turns");
    let dumps: Vec<Child> = (0..6)
        .map(|index| {
            let image = dir.join(format!("{index}.img"));
            Command::new(PLAN)
                .args(["dump", "--pid", &pid, "--freeze", "-o"])
                .arg(&image)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("starting plan dump")
        })
        .collect();
    for (index, dump) in dumps.into_iter().enumerate() {
        let output = dump.wait_with_output().expect("waiting for plan dump");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "dump {index}: {stderr}");
        assert!(
            !stderr.contains("already stopped"),
            "dump {index} found the process stopped by another dump: {stderr}"
        );
    }
    assert!(eventually(|| state_of(scenario.pid()) != Some('T')));

    // A freeze holds it for 2 s; a dump started meanwhile waits for it.
    let freeze = Command::new(PLAN)
        .args(["freeze", "--pid", &pid, "--", "sleep", "2"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting plan freeze");
    assert!(eventually(|| state_of(scenario.pid()) == Some('T')));
    let started = Instant::now();
    let output = plan(&["dump", "--pid", &pid, "--freeze", "-o", "/dev/null"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains("already stopped"), "{stderr}");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "the dump did not wait for the freeze ({:?}): {stderr}",
        started.elapsed()
    );
    let freeze = freeze.wait_with_output().expect("waiting for plan freeze");
    assert!(
        freeze.status.success(),
        "{}",
        String::from_utf8_lossy(&freeze.stderr)
    );
    assert!(eventually(|| state_of(scenario.pid()) != Some('T')));
}
