//! Bad input: a clear one-line error naming the problem, exit status 2.

use crate::support::{plan, scratch_dir, Scenario};

fn assert_bad_input(args: &[&str], expected: &str) {
    let output = plan(args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(2),
        "plan {args:?} should exit 2; stderr: {stderr}"
    );
    assert_eq!(
        stderr.lines().count(),
        1,
        "plan {args:?} should print one line, printed: {stderr}"
    );
    assert!(
        stderr.contains(expected),
        "plan {args:?}: {stderr:?} should mention {expected:?}"
    );
    assert!(
        output.stdout.is_empty(),
        "plan {args:?} printed to stdout on error"
    );
}

#[test]
fn unreadable_empty_and_foreign_documents() {
    let dir = scratch_dir("cli-documents");
    assert_bad_input(
        &["show", "/nonexistent/image"],
        "cannot read /nonexistent/image",
    );
    let empty = dir.join("empty");
    std::fs::write(&empty, b"").unwrap();
    assert_bad_input(&["show", empty.to_str().unwrap()], "input is empty");
    let junk = dir.join("junk");
    std::fs::write(&junk, b"\xff\x00 definitely not cbor").unwrap();
    assert_bad_input(
        &["show", junk.to_str().unwrap(), "--objects"],
        "not a ringplan image",
    );
}

#[test]
fn missing_process_and_non_ring_fd() {
    // Above the kernel's PID_MAX_LIMIT (2^22), so never a process.
    assert_bad_input(
        &["dump", "--pid", "99999999", "-o", "/dev/null"],
        "no process with pid 99999999",
    );
    let scenario = Scenario::start("seed");
    let pid = scenario.pid().to_string();
    assert_bad_input(
        &["dump", "--pid", &pid, "--fd", "0", "-o", "/dev/null"],
        "fd 0 is not an io_uring instance",
    );
    assert_bad_input(
        &["dump", "--pid", &pid, "--fd", "999", "-o", "/dev/null"],
        "fd 999 is not open in the target",
    );
}

#[test]
fn unknown_scenario() {
    assert_bad_input(&["app", "no-such-scenario"], "no-such-scenario");
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let output = plan(&["dump", "--no-such-flag"]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn refuses_to_write_binary_to_a_terminal() {
    // `script` runs the command with a pseudo-terminal as its stdout.
    let scenario = Scenario::start("seed");
    let command = format!("{} dump --pid {}", crate::support::PLAN, scenario.pid());
    let output = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running script(1) from bsdutils");
    let transcript = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(2), "transcript: {transcript}");
    assert!(
        transcript.contains("refusing to write a binary image to a terminal"),
        "transcript: {transcript}"
    );
}

/// The README's main job: the whole pipeline on the seed scenario.
#[test]
fn demo_dumps_plans_restores_and_verifies_the_seed() {
    let output = plan(&["demo"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "plan demo failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for expected in [
        "== plan show --objects",
        "setup_ring #1",
        "register_buffers #2",
        "memory_barrier",
    ] {
        assert!(
            stdout.contains(expected),
            "plan demo printed no {expected:?}:\n{stdout}"
        );
    }
    let verified = stdout
        .lines()
        .find(|line| line.starts_with("verified"))
        .unwrap_or_default();
    assert!(
        verified.contains("2 rings"),
        "verification line: {verified:?}\n{stdout}"
    );
    // Where the kernel can, the rings come back where the seed left them.
    if crate::support::kernel_has_no_mmap() {
        assert!(
            verified.contains("2 ring states match"),
            "verification line: {verified:?}\n{stdout}"
        );
    }
}

/// `plan show` says when restoring will take more than a second (moving a
/// ring's positions with NOPs), and says nothing when it will not.
#[test]
fn show_says_when_a_restore_will_be_slow() {
    let dir = scratch_dir("cli-slow-restore");
    let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/plans/seed.img"))
        .expect("plans/seed.img");
    let seed = ringplan_image::decode_slice(&bytes).expect("the seed decodes");
    let quick = dir.join("quick.img");
    std::fs::write(&quick, &bytes).expect("writing");
    let output = plan(&["show", quick.to_str().expect("utf-8")]);
    assert!(output.status.success());
    assert!(
        !String::from_utf8_lossy(&output.stderr).contains("notice"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // Ring #1 at position 100,000,000, nothing pending: 100M NOPs.
    let mut far = seed;
    let ring = far
        .objects
        .iter_mut()
        .find_map(|object| match &mut object.kind {
            ringplan_image::ObjectKind::Ring(ring) => Some(ring),
            _ => None,
        })
        .expect("a ring");
    let positions = &mut ring
        .state
        .as_deref_mut()
        .expect("a BPF dump has a state")
        .positions;
    let at = 100_000_000;
    (
        positions.sq_head,
        positions.sq_tail,
        positions.cached_sq_head,
        positions.cq_head,
        positions.cq_tail,
        positions.cached_cq_tail,
    ) = (at, at, at, at, at, at);
    let slow = dir.join("slow.img");
    std::fs::write(
        &slow,
        ringplan_image::encode_to_vec(&far).expect("encoding"),
    )
    .expect("writing");
    let output = plan(&["show", slow.to_str().expect("utf-8")]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    // 100M NOPs that move both positions, at 126 ns each (12.6 s), in
    // batches of the ring's 2 SQ entries handed to its SQ thread, at about
    // 10 us each (500 s).
    assert_eq!(
        stderr.trim_end(),
        "plan: notice: restoring this will take about 513 s: 100000000 ring positions are moved with NOPs \
         (the kernel has no call that sets them)"
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("restore_completions #1 on h1: SQ head 100000000, CQ head 100000000, CQ tail 100000000: 100000000 positions by NOPs"),
        "{text}"
    );
}

/// Run in a child pid namespace (where `/proc` is the namespace's own, as
/// `unshare --mount-proc` or a container has it), the BPF backend is
/// refused in one line (it would report the initial namespace's ids), and
/// `--backend auto` falls back to fdinfo, saying why (where the fdinfo
/// backend reads this kernel).
#[test]
fn bpf_is_refused_in_a_child_pid_namespace() {
    let in_namespace = |backend: &str| {
        std::process::Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc", crate::support::PLAN])
            .args([
                "dump",
                "--pid",
                "1",
                "-o",
                "/dev/null",
                "--backend",
                backend,
            ])
            .output()
            .expect("running unshare (util-linux)")
    };
    let bpf = in_namespace("bpf");
    let stderr = String::from_utf8_lossy(&bpf.stderr);
    assert_eq!(bpf.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("child pid namespace"), "{stderr}");
    if !crate::support::kernel_shows_registered_file_paths() {
        // 6.1 and 6.12: the fdinfo backend refuses these kernels, so
        // `auto` has nothing to fall back to.
        return;
    }
    let auto = in_namespace("auto");
    let stderr = String::from_utf8_lossy(&auto.stderr);
    assert!(auto.status.success(), "{stderr}");
    assert!(
        stderr.contains("child pid namespace") && stderr.contains("using the fdinfo backend"),
        "{stderr}"
    );
}
