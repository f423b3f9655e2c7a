//! One ringplan command at a time holds a process, `plan exec --pid`
//! included: against `tests/programs/restore_target.c` and the seed's
//! image (see `exec_pid`), an `exec --pid` waits while a `plan freeze`
//! holds the process and runs once it lets go (the process ends running,
//! as exec promised); one that a freeze holds out for longer than 10 s
//! refuses, naming the holder, with nothing done; one run *by* `plan
//! freeze` (which hands its lock down) finds the process stopped, leaves
//! it stopped, and the freeze resumes it; and an `exec --pid` and a
//! `plan dump --freeze` started at once take turns, the dump seeing
//! either none or all of the restored rings.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ringplan_exec::test_hooks::ProcessState;
use ringplan_image::ObjectKind;

use crate::exec_pid::{seed_image, Target};
use crate::support::{scratch_dir, PLAN};

/// Starts `plan ARGS` in the background, its output captured.
fn spawn_plan(args: &[&str]) -> std::process::Child {
    Command::new(PLAN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting plan")
}

/// `plan freeze --pid PID --method signal -- sleep SECONDS`, returned once
/// the target is stopped.
fn freeze_for(target: &Target, seconds: &str) -> std::process::Child {
    let pid = target.pid.to_string();
    let freeze = spawn_plan(&[
        "freeze", "--pid", &pid, "--method", "signal", "--", "sleep", seconds,
    ]);
    assert_eq!(target.wait_state(b'T'), b'T', "plan freeze stopped it");
    freeze
}

/// The ring fds of the seed image, and whether each is a ring in `pid`.
fn rings_present(image: &ringplan_image::Image, target: &Target) -> Vec<bool> {
    image
        .objects
        .iter()
        .filter(|object| matches!(object.kind, ObjectKind::Ring(_)))
        .map(|object| target.link(object.fds[0].fd).as_deref() == Some("anon_inode:[io_uring]"))
        .collect()
}

#[test]
fn exec_pid_waits_while_plan_freeze_holds_the_process() {
    let dir = scratch_dir("exec-pid-hold-wait");
    let (path, image) = seed_image(&dir, false);
    let mut target = Target::start();
    let pid = target.pid.to_string();
    let freeze = freeze_for(&target, "1.5");
    let started = Instant::now();
    let exec = spawn_plan(&["exec", &path, "--pid", &pid, "--substitute-external"]);
    let exec = exec.wait_with_output().expect("exec --pid");
    let waited = started.elapsed();
    let stdout = String::from_utf8_lossy(&exec.stdout);
    assert!(
        exec.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&exec.stderr)
    );
    assert!(
        waited >= Duration::from_millis(1000),
        "exec --pid ran after {waited:?}, while the freeze held the process"
    );
    // The freeze had let it go (resumed it): exec found it running and
    // resumed it too, as it says.
    assert!(stdout.contains("the process was resumed"), "{stdout}");
    let freeze = freeze.wait_with_output().expect("plan freeze");
    assert!(
        freeze.status.success(),
        "{}",
        String::from_utf8_lossy(&freeze.stderr)
    );
    assert!(rings_present(&image, &target)
        .iter()
        .all(|&present| present));
    assert_ne!(target.state(), b'T');
    assert!(target.answers());
}

#[test]
fn exec_pid_refuses_naming_a_freeze_that_holds_on_past_ten_seconds() {
    let dir = scratch_dir("exec-pid-hold-refused");
    let (path, image) = seed_image(&dir, false);
    let mut target = Target::start();
    let pid = target.pid.to_string();
    let freeze = freeze_for(&target, "13");
    let before = ProcessState::capture_of(target.pid);
    let exec = spawn_plan(&["exec", &path, "--pid", &pid, "--substitute-external"])
        .wait_with_output()
        .expect("exec --pid");
    let stderr = String::from_utf8_lossy(&exec.stderr);
    assert_eq!(exec.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "pid {pid} is held by another ringplan command (pid "
        )) && stderr.contains("plan freeze --pid")
            && stderr.contains("it did not let go within 10 s"),
        "{stderr}"
    );
    // Nothing done, and the process still stopped by the freeze.
    assert_eq!(
        before.changes_to(&ProcessState::capture_of(target.pid)),
        Vec::<String>::new()
    );
    assert_eq!(target.state(), b'T');
    let freeze = freeze.wait_with_output().expect("plan freeze");
    assert!(freeze.status.success());
    assert!(rings_present(&image, &target)
        .iter()
        .all(|&present| !present));
    assert_ne!(target.wait_state(b'S'), b'T');
    assert!(target.answers());
}

#[test]
fn exec_pid_run_by_plan_freeze_leaves_the_process_stopped_for_the_freeze_to_resume() {
    let dir = scratch_dir("exec-pid-hold-inside");
    let (path, image) = seed_image(&dir, false);
    let mut target = Target::start();
    let pid = target.pid.to_string();
    let output = spawn_plan(&[
        "freeze",
        "--pid",
        &pid,
        "--method",
        "signal",
        "--",
        PLAN,
        "exec",
        &path,
        "--pid",
        &pid,
        "--substitute-external",
    ])
    .wait_with_output()
    .expect("plan freeze -- plan exec --pid");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}{stderr}");
    // The exec shared the freeze's hold (no wait), found the process
    // stopped and left it so; the freeze, which stopped it, resumed it.
    assert!(stdout.contains("the process was left stopped"), "{stdout}");
    assert!(
        stderr.contains(&format!("plan: pid {pid} let go after")),
        "{stderr}"
    );
    assert!(rings_present(&image, &target)
        .iter()
        .all(|&present| present));
    assert_ne!(target.wait_state(b'S'), b'T');
    assert!(target.answers());
}

#[test]
fn exec_pid_and_a_frozen_dump_at_once_take_turns() {
    let dir = scratch_dir("exec-pid-hold-race");
    let (path, image) = seed_image(&dir, false);
    let rings = image
        .objects
        .iter()
        .filter(|object| matches!(object.kind, ObjectKind::Ring(_)))
        .count();
    for round in 0..3 {
        let mut target = Target::start();
        let pid = target.pid.to_string();
        let dumped = dir.join(format!("race-{round}.img"));
        let dumped = dumped.to_str().expect("utf-8").to_owned();
        let exec = spawn_plan(&["exec", &path, "--pid", &pid, "--substitute-external"]);
        let dump = spawn_plan(&[
            "dump",
            "--pid",
            &pid,
            "--freeze=signal",
            "--backend",
            "bpf",
            "-o",
            &dumped,
        ]);
        let exec = exec.wait_with_output().expect("exec --pid");
        let dump = dump.wait_with_output().expect("dump --freeze");
        assert!(
            exec.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&exec.stderr)
        );
        let dump_stderr = String::from_utf8_lossy(&dump.stderr);
        assert!(dump.status.success(), "round {round}: {dump_stderr}");
        // Each held the process alone: the dump never found it stopped by
        // the exec (nor the reverse), and read none or all of the rings.
        assert!(
            !dump_stderr.contains("already stopped"),
            "round {round}: {dump_stderr}"
        );
        let exec_stdout = String::from_utf8_lossy(&exec.stdout);
        assert!(
            exec_stdout.contains("the process was resumed"),
            "round {round}: {exec_stdout}"
        );
        let read =
            ringplan_image::decode_slice(&std::fs::read(&dumped).expect("image")).expect("decodes");
        let seen = read
            .objects
            .iter()
            .filter(|object| matches!(object.kind, ObjectKind::Ring(_)))
            .count();
        assert!(
            seen == 0 || seen == rings,
            "round {round}: {seen} of {rings} rings"
        );
        assert!(rings_present(&image, &target)
            .iter()
            .all(|&present| present));
        assert_ne!(target.wait_state(b'S'), b'T', "round {round}");
        assert!(target.answers(), "round {round}");
    }
}
