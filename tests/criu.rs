//! Whole programs checkpointed and restored with stock CRIU (`plan
//! checkpoint`, `plan restore`): `tests/programs/ring_worker.c` past
//! 300,000 positions, paused with unconsumed CQEs, a queued and a prepared
//! SQE, a registered file whose fd it closed, registered buffers and an
//! eventfd (plain, SQPOLL, DEFER_TASKRUN in a second thread, and plain
//! reading back through a buffer ring whose head is at 995), is
//! checkpointed (killed by criu dump), restored, told to go on, and
//! finishes its records, checked from outside (with the buffer ring, each
//! read also checks it got the buffer that was next); so do fio (two io_uring
//! jobs, verified by a separate `fio --verify_only`) and `qemu-img bench`.
//! Refusals: a request that never completes (named; the program keeps
//! running), criu missing, a directory without a checkpoint. Runs where
//! `criu check` passes (the 6.18 host and the 6.1 and 6.12 test VMs, where
//! what the kernel lacks is refused before anything is done); elsewhere
//! the test says it did not try.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::in_place::{
    can_put_back_a_closed_registered_file, check_records, has_moved_a_ring, proc_state,
    worker_binary,
};
use crate::support::{
    criu_works, kernel_at_least, kernel_has_no_mmap, plan, scratch_dir, wait_for_line,
};

/// A ring_worker in its own session (setsid execs it in place: same pid,
/// so that CRIU dumps and restores it without --shell-job), its output in
/// DIR/out (CRIU restores a file with its offset), paused at its known
/// state; waits at GO_FILE (DIR/go) to go on.
struct PausedWorker {
    child: std::process::Child,
    records: std::path::PathBuf,
    out: std::path::PathBuf,
    go: std::path::PathBuf,
    images: std::path::PathBuf,
}

impl PausedWorker {
    fn start(dir: &Path, mode: &str, records: u32, advance: u32) -> PausedWorker {
        let out = dir.join("out");
        let worker = PausedWorker {
            child: Command::new("setsid")
                .arg(worker_binary())
                .arg(mode)
                .arg(dir.join("records"))
                .arg(records.to_string())
                .arg(advance.to_string())
                .arg(dir.join("go"))
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&out).expect("out"))
                .stderr(
                    std::fs::File::options()
                        .append(true)
                        .open(&out)
                        .expect("out"),
                )
                .spawn()
                .expect("setsid ring_worker"),
            records: dir.join("records"),
            out,
            go: dir.join("go"),
            images: dir.join("images"),
        };
        wait_for_line(&worker.out, "paused", Duration::from_secs(30));
        worker
    }
}

fn checkpoint_and_restore(mode: &str) {
    if !criu_works() || !can_put_back_a_closed_registered_file() {
        return;
    }
    const RECORDS: u32 = 2000;
    let dir = scratch_dir(&format!("criu-{mode}"));
    let PausedWorker {
        mut child,
        records,
        out,
        go,
        images,
    } = PausedWorker::start(&dir, mode, RECORDS, 300_000);
    let pid = child.id();
    let checkpointed = plan(&[
        "checkpoint",
        "--pid",
        &pid.to_string(),
        "-D",
        images.to_str().expect("utf-8"),
    ]);
    assert!(
        checkpointed.status.success(),
        "{mode}: plan checkpoint: {}",
        String::from_utf8_lossy(&checkpointed.stderr)
    );
    // criu dump killed it; reap it so that its pid is free for the restore.
    let status = child.wait().expect("reaping the dumped program");
    assert!(!status.success(), "{mode}: criu dump kills the program");

    restore(&images, &[], mode);
    let state = proc_state(pid);
    assert!(
        !state.starts_with('T') && !state.starts_with('Z'),
        "{mode}: restored and resumed, not {state}"
    );
    std::fs::write(&go, b"").expect("the go file");
    let done = wait_for_line(&out, "done", Duration::from_secs(60));
    assert!(done.contains("\"ok\": true"), "{mode}: {done}");
    check_records(&records, RECORDS);
}

#[test]
fn a_plain_ring_program_is_checkpointed_restored_and_finishes() {
    checkpoint_and_restore("plain");
}

#[test]
fn an_sqpoll_ring_program_is_checkpointed_restored_and_finishes() {
    checkpoint_and_restore("sqpoll");
}

#[test]
fn a_defer_taskrun_program_is_checkpointed_restored_and_finishes() {
    checkpoint_and_restore("defer");
}

#[test]
fn a_program_reading_through_a_buffer_ring_is_checkpointed_restored_and_finishes() {
    checkpoint_and_restore("pbuf");
}

#[test]
fn a_request_that_never_completes_is_named_and_the_program_runs_on() {
    if !criu_works() {
        return;
    }
    let binary = crate::support::c_program("detach_target");
    let mut child = Command::new(binary)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("detach_target");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("its first line");
    let mut ask = |command: &str| {
        writeln!(stdin, "{command}").expect("writing");
        stdin.flush().expect("flushing");
        let mut line = String::new();
        stdout.read_line(&mut line).expect("reading");
        line.trim_end().to_owned()
    };
    assert_eq!(ask("timeout"), "ok", "{first}");
    let dir = scratch_dir("criu-refused");
    let images = dir.join("images");
    let output = plan(&[
        "checkpoint",
        "--pid",
        &child.id().to_string(),
        "-D",
        images.to_str().expect("utf-8"),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !kernel_has_no_mmap() {
        // Refused before anything: rings could not go back here.
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("IORING_SETUP_NO_MMAP needs Linux 6.5"),
            "{stderr}"
        );
        assert_eq!(ask("ping"), "pong", "the program runs on");
        let _ = child.kill();
        let _ = child.wait();
        return;
    }
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("TIMEOUT"), "the request is named: {stderr}");
    assert!(
        stderr.contains("nothing was checkpointed"),
        "says what happened: {stderr}"
    );
    assert!(
        !images.join("ringplan.json").exists(),
        "no manifest for a checkpoint that did not happen"
    );
    assert_eq!(ask("ping"), "pong", "the program runs on");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn criu_missing_or_a_directory_without_a_checkpoint_is_refused() {
    let dir = scratch_dir("criu-refusals");
    let missing = plan(&[
        "checkpoint",
        "--pid",
        &std::process::id().to_string(),
        "-D",
        dir.join("images").to_str().expect("utf-8"),
        "--criu",
        "/nonexistent/criu",
    ]);
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(missing.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("/nonexistent/criu"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    if !criu_works() {
        return;
    }
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).expect("dir");
    let restore = plan(&["restore", "-D", empty.to_str().expect("utf-8")]);
    let stderr = String::from_utf8_lossy(&restore.stderr);
    assert_eq!(restore.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("holds no ringplan checkpoint (ringplan.json"),
        "{stderr}"
    );
}

#[test]
fn leave_running_lets_the_original_finish_and_a_copy_restored_later_finishes_too() {
    if !criu_works() || !can_put_back_a_closed_registered_file() {
        return;
    }
    const RECORDS: u32 = 400;
    let dir = scratch_dir("criu-leave-running");
    let PausedWorker {
        mut child,
        records,
        out,
        go,
        images,
    } = PausedWorker::start(&dir, "plain", RECORDS, 5000);
    let pid = child.id();
    let checkpointed = plan(&[
        "checkpoint",
        "--pid",
        &pid.to_string(),
        "-D",
        images.to_str().expect("utf-8"),
        "--leave-running",
    ]);
    // CRIU restores open files by path and checks their size, but keeps
    // no copy of them: what a copy restored later needs is the files as
    // they were at the checkpoint (a user snapshots them).
    let files_then = [&records, &out].map(|path| std::fs::read(path).expect("a file"));
    assert!(
        checkpointed.status.success(),
        "plan checkpoint --leave-running: {}",
        String::from_utf8_lossy(&checkpointed.stderr)
    );
    // The original has its ring back and runs on.
    let state = proc_state(pid);
    assert!(!state.starts_with('T'), "the original runs on, not {state}");
    std::fs::write(&go, b"").expect("the go file");
    let status = child.wait().expect("the original");
    assert!(status.success(), "the original finished: {status}");
    let done = wait_for_line(&out, "done", Duration::from_secs(5));
    assert!(done.contains("\"ok\": true"), "{done}");
    check_records(&records, RECORDS);

    // A copy restored after the original exited finishes the same work.
    for (path, bytes) in [&records, &out].into_iter().zip(&files_then) {
        std::fs::write(path, bytes).expect("the file as it was at the checkpoint");
    }
    restore(&images, &[], "the copy");
    wait_until_ended(pid, Duration::from_secs(60), "the copy");
    check_records(&records, RECORDS);
}

/// `plan restore -D images -- criu_args`, which must succeed (`what` names
/// the program in the failure).
fn restore(images: &Path, criu_args: &[&str], what: &str) {
    let mut args = vec!["restore", "-D", images.to_str().expect("utf-8")];
    if !criu_args.is_empty() {
        args.push("--");
        args.extend_from_slice(criu_args);
    }
    let restored = plan(&args);
    assert!(
        restored.status.success(),
        "{what}: plan restore: {}",
        String::from_utf8_lossy(&restored.stderr)
    );
}

/// Waits until the restored process `pid` has ended (a zombie its new
/// parent has not reaped yet, or gone) within `limit`.
fn wait_until_ended(pid: u32, limit: Duration, what: &str) {
    let deadline = Instant::now() + limit;
    while !matches!(proc_state(pid).chars().next(), Some('Z') | Some('g')) {
        assert!(Instant::now() < deadline, "{what} did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `plan checkpoint` refused for what this kernel lacks, exit 1,
/// saying so, nothing checkpointed: before 6.5, rings cannot go back where
/// the program had them (no `IORING_SETUP_NO_MMAP`: refused before
/// anything is done); before 6.18, a thread's last io-wq worker may stay
/// after the rings are gone, and criu cannot dump io threads. Fails on
/// 6.18, where neither holds.
fn refused_on_this_kernel(checkpointed: &std::process::Output) -> bool {
    let stderr = String::from_utf8_lossy(&checkpointed.stderr);
    if checkpointed.status.success() || kernel_at_least(6, 18) {
        return false;
    }
    assert_eq!(checkpointed.status.code(), Some(1), "{stderr}");
    if kernel_has_no_mmap() {
        assert!(
            stderr.contains("keeps io threads after its rings are gone")
                && stderr.contains("Nothing was checkpointed"),
            "{stderr}"
        );
    } else {
        assert!(
            stderr.contains("IORING_SETUP_NO_MMAP needs Linux 6.5")
                && stderr.contains("nothing was done"),
            "{stderr}"
        );
    }
    eprintln!("refused on this kernel, as it should be: {stderr}");
    true
}

/// Every process of `root`'s tree that holds an io_uring fd and has moved
/// its SQ head (so it is mid-I/O).
fn processes_doing_ring_io(root: u32) -> Vec<u32> {
    ringplan_kernel::procfs::task::tree(root)
        .unwrap_or_default()
        .into_iter()
        .filter(|&pid| has_moved_a_ring(pid))
        .collect()
}

/// fio with two io_uring jobs, each its own process with a ring
/// (registered files and buffers; one with an SQ thread), writing with
/// crc32c verify headers, checkpointed mid-write and restored: the
/// restored fio finishes its write and verify phases with no error, and a
/// separate `fio --verify_only` run then verifies every block from
/// outside. fio keeps its shared state in SysV shared memory, which criu
/// dumps only with its IPC namespace: fio runs in one of its own.
#[test]
fn fio_with_sqpoll_fixed_files_and_buffers_is_checkpointed_restored_and_verifies() {
    if !criu_works() {
        return;
    }
    let dir = scratch_dir("criu-fio");
    let images = dir.join("images");
    let job = dir.join("job.fio");
    let output = dir.join("fio.out");
    // Rate-limited so that the write phase lasts about 8 s: the checkpoint
    // lands mid-write even in a VM under emulation, where loading BPF and
    // taking the rings out takes seconds (with 2 s, a job had finished
    // before its take-out there).
    std::fs::write(
        &job,
        format!(
            "[global]\nioengine=io_uring\nrw=write\nbs=4k\niodepth=8\nsize=32M\nrate=4m\n\
             verify=crc32c\ndo_verify=1\nregisterfiles=1\nfixedbufs=1\ndirectory={}\n\n\
             [fixed]\nfilename=fixed.data\n\n[sqpoll]\nfilename=sqpoll.data\nsqthread_poll=1\n",
            dir.display()
        ),
    )
    .expect("writing the job file");
    let mut fio = Command::new("unshare")
        .args(["--ipc", "setsid", "fio", "--eta=never"])
        .arg(format!("--output={}", output.display()))
        .arg(&job)
        // Where it leaves its verify state files.
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting fio (scripts/deps installs it) in an IPC namespace of its own");
    let root = fio.id();
    let deadline = Instant::now() + Duration::from_secs(20);
    while processes_doing_ring_io(root).len() < 2 {
        assert!(
            fio.try_wait().expect("fio's status").is_none(),
            "fio ended early"
        );
        assert!(Instant::now() < deadline, "fio's jobs did no io_uring I/O");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let checkpointed = plan(&[
        "checkpoint",
        "--pid",
        &root.to_string(),
        "-D",
        images.to_str().expect("utf-8"),
    ]);
    let stdout = String::from_utf8_lossy(&checkpointed.stdout);
    if refused_on_this_kernel(&checkpointed) {
        let status = fio.wait().expect("fio");
        let report = std::fs::read_to_string(&output).expect("fio's output");
        assert!(status.success(), "fio runs on and finishes: {report}");
        assert_eq!(report.matches("err= 0").count(), 2, "{report}");
        return;
    }
    assert!(
        checkpointed.status.success(),
        "plan checkpoint: {}",
        String::from_utf8_lossy(&checkpointed.stderr)
    );
    assert!(stdout.contains("2 process(es) with rings"), "{stdout}");
    assert!(
        !fio.wait().expect("reaping fio").success(),
        "criu dump kills fio"
    );

    // The job processes were orphaned by the kill: `plan restore` waits
    // for their ids to be reaped.
    restore(&images, &[], "fio");
    wait_until_ended(root, Duration::from_secs(120), "the restored fio");
    let report = std::fs::read_to_string(&output).expect("fio's output");
    assert_eq!(report.matches("err= 0").count(), 2, "{report}");
    assert!(!report.contains("verify:"), "{report}");
    // Every block written, checked by a fio that was never checkpointed.
    let verified = Command::new("fio")
        .args(["--eta=never", "--verify_only"])
        .arg(&job)
        .current_dir(&dir)
        .output()
        .expect("running fio --verify_only");
    let text = String::from_utf8_lossy(&verified.stdout);
    assert!(verified.status.success(), "fio --verify_only: {text}");
    assert_eq!(text.matches("err= 0").count(), 2, "{text}");
}

/// `qemu-img bench -i io_uring` (one ring, 32 reads in flight) is
/// checkpointed mid-run and restored, and completes its 300,000 reads.
/// qemu-img holds an OFD lock on its image: criu dumps and restores it
/// with `--file-locks`, passed through after `--`.
#[test]
fn qemu_img_bench_is_checkpointed_restored_and_completes() {
    if !criu_works() {
        return;
    }
    let dir = scratch_dir("criu-qemu-img");
    let images = dir.join("images");
    let raw = crate::support::qemu_raw_image(&dir);
    let out = dir.join("out");
    let mut bench = Command::new("setsid")
        .args(["qemu-img", "bench", "-i", "io_uring", "-t", "writeback"])
        .args(["-c", "300000", "-d", "32", "-f", "raw"])
        .arg(&raw)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("out"))
        .stderr(Stdio::null())
        .spawn()
        .expect("starting qemu-img");
    let pid = bench.id();
    let deadline = Instant::now() + Duration::from_secs(20);
    while processes_doing_ring_io(pid).is_empty() {
        assert!(
            bench.try_wait().expect("its status").is_none(),
            "qemu-img ended early"
        );
        assert!(Instant::now() < deadline, "qemu-img did no io_uring I/O");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let images_dir = images.to_str().expect("utf-8");
    let checkpointed = plan(&[
        "checkpoint",
        "--pid",
        &pid.to_string(),
        "-D",
        images_dir,
        "--",
        "--file-locks",
    ]);
    if refused_on_this_kernel(&checkpointed) {
        assert!(bench.wait().expect("qemu-img").success(), "it runs on");
        wait_for_line(&out, "Run completed", Duration::from_secs(5));
        return;
    }
    assert!(
        checkpointed.status.success(),
        "plan checkpoint: {}",
        String::from_utf8_lossy(&checkpointed.stderr)
    );
    assert!(
        !bench.wait().expect("reaping it").success(),
        "criu dump kills it"
    );
    let report = std::fs::read_to_string(&out).expect("its output");
    assert!(
        !report.contains("Run completed"),
        "checkpointed mid-run: {report}"
    );

    restore(&images, &["--file-locks"], "qemu-img");
    let line = wait_for_line(&out, "Run completed", Duration::from_secs(120));
    assert!(line.starts_with("Run completed in"), "{line}");
}
