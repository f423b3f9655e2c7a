//! Rings taken out of a running program and put back into it: `plan dump
//! --pid P --detach` (the program stopped, drained, dumped, every ring fd
//! closed and ring mapping unmapped, left stopped), checked from `/proc`
//! (no io_uring fd, mapping or io thread left), then `plan exec IMAGE --pid
//! P` (the rings recreated inside P where the program left them, the
//! program resumed), and the program finishes its work correctly, checked
//! from outside: `tests/programs/ring_worker.c` (liburing, its own cached
//! positions, unconsumed CQEs, a queued and a prepared SQE at the detach, a
//! registered file whose fd it closed, registered buffers, an eventfd;
//! plain, SQPOLL, and DEFER_TASKRUN owned by a second thread), fio with
//! `verify=crc32c`, and `qemu-img bench`. Putting rings back where the
//! program left them needs `IORING_SETUP_NO_MMAP` (Linux 6.5): on 6.1 the
//! tests check that `exec --pid` refuses and leaves the process as the
//! detach left it.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use ringplan_exec::test_hooks::ProcessState;
use serde_json::Value;

use crate::support::{
    fail_at_every_step, kernel_at_least, kernel_has_no_mmap, kernel_shows_registered_file_paths,
    plan, scratch_dir,
};

pub(crate) fn worker_binary() -> &'static Path {
    crate::support::c_program("ring_worker")
}

/// A child whose stdout is read line by line; killed on drop.
struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Worker {
    fn start(command: &mut Command) -> Worker {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting the program");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Worker {
            child,
            stdin,
            stdout,
        }
    }

    /// `ring_worker MODE OUTPUT RECORDS ADVANCE`, once it is paused: its
    /// first line (pid, worker tid, fds) and its pause line.
    fn paused(mode: &str, output: &Path, records: u32, advance: u32) -> (Worker, Value, Value) {
        let mut worker = Worker::start(
            Command::new(worker_binary())
                .arg(mode)
                .arg(output)
                .arg(records.to_string())
                .arg(advance.to_string()),
        );
        let started = worker.line();
        let paused = worker.line();
        (worker, started, paused)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn line(&mut self) -> Value {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("reading the program");
        serde_json::from_str(&line).unwrap_or_else(|error| {
            panic!("not a JSON line ({error}): {line:?}{}", self.stderr_now())
        })
    }

    fn stderr_now(&mut self) -> String {
        let _ = self.child.kill();
        let mut text = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut pipe, &mut text);
        }
        text
    }

    fn go(&mut self) {
        let stdin = self.stdin.as_mut().expect("stdin");
        stdin.write_all(b"go\n").expect("writing go");
        stdin.flush().expect("flushing");
    }

    /// Tells the paused program to go on, and checks that it finishes its
    /// work: its done line, exit 0, and its `records` in `output`.
    fn finish(mut self, output: &Path, records: u32) {
        self.go();
        let done = self.line();
        assert_eq!(done["ok"], true, "{done}");
        let (code, stderr) = self.wait(Duration::from_secs(60));
        assert_eq!(code, Some(0), "{stderr}");
        check_records(output, records);
    }

    /// Waits for the program to exit (within `limit`), returning its exit
    /// code and stderr.
    fn wait(mut self, limit: Duration) -> (Option<i32>, String) {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let mut text = String::new();
                if let Some(mut pipe) = self.child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut pipe, &mut text);
                }
                return (status.code(), text);
            }
            assert!(
                Instant::now() < deadline,
                "the program did not finish within {limit:?} (state {})",
                proc_state(self.pid())
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `State:` line of `/proc/PID/status`.
pub(crate) fn proc_state(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                line.strip_prefix("State:")
                    .map(|state| state.trim().to_owned())
            })
        })
        .unwrap_or_else(|| "gone".to_owned())
}

/// What of io_uring `/proc/PID` still shows: fds, mappings, io threads.
fn io_uring_left(pid: u32) -> Vec<String> {
    let mut left = Vec::new();
    if let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                if target.to_string_lossy().contains("io_uring") {
                    left.push(format!("fd {:?} -> {}", fd.file_name(), target.display()));
                }
            }
        }
    }
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    left.extend(
        maps.lines()
            .filter(|line| line.contains("io_uring"))
            .map(|line| format!("mapping {line}")),
    );
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if comm.starts_with("iou-") {
                left.push(format!("thread {:?} {}", task.file_name(), comm.trim()));
            }
        }
    }
    left
}

/// `plan dump --pid PID --detach -o DIR/NAME.img`, checked from /proc;
/// returns the image's path.
fn detach(pid: u32, dir: &Path, name: &str) -> String {
    let image = dir
        .join(format!("{name}.img"))
        .to_str()
        .expect("utf-8 path")
        .to_owned();
    let output = plan(&["dump", "--pid", &pid.to_string(), "--detach", "-o", &image]);
    assert!(
        output.status.success(),
        "{name}: plan dump --detach: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut left = io_uring_left(pid);
    if !kernel_at_least(6, 18) {
        // 6.1 and 6.12 keep a thread's last io-wq worker until the thread
        // exits (the detach names them in a warning; 6.18 ends them with
        // the last ring): only fds, mappings and SQ threads must go there.
        let stderr = String::from_utf8_lossy(&output.stderr);
        left.retain(|what| !(what.contains("iou-wrk") && stderr.contains("keeps io-wq workers")));
    }
    assert_eq!(
        left,
        Vec::<String>::new(),
        "{name}: io_uring left after --detach"
    );
    assert!(
        proc_state(pid).starts_with('T'),
        "{name}: after --detach the process is {}",
        proc_state(pid)
    );
    image
}

/// `plan exec IMAGE --pid PID`: its rings back, the process resumed.
fn put_back(pid: u32, image: &str, name: &str) {
    let output = plan(&["exec", image, "--pid", &pid.to_string()]);
    assert!(
        output.status.success(),
        "{name}: plan exec --pid: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !proc_state(pid).starts_with('T'),
        "{name}: after exec --pid the process is {}",
        proc_state(pid)
    );
}

/// Whether ring_worker's rings can come back here: where the program left
/// them (NO_MMAP, 6.5+), with its registered file whose fd it closed
/// reopened by path (a kernel that shows registered files' paths; 6.1 and
/// 6.12 show their names only, so such a file is an external input).
pub(crate) fn can_put_back_a_closed_registered_file() -> bool {
    kernel_has_no_mmap() && kernel_shows_registered_file_paths()
}

/// Where the rings cannot come back (no NO_MMAP, or a registered file
/// without a path): exec --pid refuses, the process stays as detached.
fn refused_without_no_mmap(pid: u32, image: &str, name: &str) {
    let output = plan(&["exec", image, "--pid", &pid.to_string()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{name}: {stderr}");
    // 6.1 also gives a registered file whose fd was closed no path: that
    // refusal may come first.
    assert!(
        stderr.contains("IORING_SETUP_NO_MMAP")
            || stderr.contains("external input because it has no path"),
        "{name}: {stderr}"
    );
    assert!(proc_state(pid).starts_with('T'), "{name}: left as found");
}

/// The records `ring_worker` wrote, checked from outside.
pub(crate) fn check_records(path: &Path, records: u32) {
    let bytes = std::fs::read(path).expect("the worker's output");
    assert_eq!(bytes.len(), records as usize * 512, "output size");
    for (seq, record) in (0u32..).zip(bytes.chunks_exact(512)) {
        assert_eq!(record[..4], seq.to_ne_bytes(), "record {seq}'s number");
        for (index, byte) in record.iter().enumerate().skip(4) {
            let want = (seq.wrapping_mul(31).wrapping_add(index as u32 * 7)) as u8;
            assert_eq!(*byte, want, "record {seq}, byte {index}");
        }
    }
}

fn ring_worker(mode: &str) {
    const RECORDS: u32 = 2000;
    let dir = scratch_dir(&format!("in-place-{mode}"));
    let output = dir.join("records");
    let (worker, started, paused) = Worker::paused(mode, &output, RECORDS, 5000);
    let pid = worker.pid();
    assert_eq!(paused["paused"]["unconsumed"], 2, "{paused}");
    let image = detach(pid, &dir, mode);
    let view: Value =
        serde_json::from_slice(&plan(&["show", &image, "--objects", "--format", "json"]).stdout)
            .expect("the image's JSON view");
    let ring = view["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .find(|object| object["kind"] == "ring")
        .expect("a ring in the image");
    let state = &ring["state"];
    assert_eq!(
        state["cqes"].as_array().map(Vec::len),
        Some(2),
        "{mode}: unconsumed CQEs in {state}"
    );
    if mode != "sqpoll" {
        assert_eq!(state["sqes"].as_array().map(Vec::len), Some(1), "{state}");
    }
    assert!(
        !state["unqueued_sqes"].as_array().expect("list").is_empty(),
        "{mode}: the prepared SQE is in the image"
    );
    if mode == "defer" {
        assert_eq!(state["owner_tid"], started["worker_tid"], "{state}");
    }

    if !can_put_back_a_closed_registered_file() {
        refused_without_no_mmap(pid, &image, mode);
        return;
    }
    put_back(pid, &image, mode);
    worker.finish(&output, RECORDS);
}

#[test]
fn a_plain_ring_is_taken_out_and_put_back_and_the_program_finishes() {
    ring_worker("plain");
}

#[test]
fn an_sqpoll_ring_is_taken_out_and_put_back_and_the_program_finishes() {
    ring_worker("sqpoll");
}

#[test]
fn a_defer_taskrun_ring_owned_by_a_second_thread_comes_back_to_it() {
    ring_worker("defer");
}

/// A program whose rings were put back is detached and put back again:
/// the first restore left its ring memory on ringplan's memfd, which the
/// second detach keeps as the program's and the second restore accepts.
#[test]
fn a_program_put_back_is_taken_out_and_put_back_again() {
    const RECORDS: u32 = 500;
    let dir = scratch_dir("in-place-twice");
    let output = dir.join("records");
    let (worker, _, _) = Worker::paused("plain", &output, RECORDS, 3000);
    let pid = worker.pid();
    let image = detach(pid, &dir, "twice-1");
    if !can_put_back_a_closed_registered_file() {
        refused_without_no_mmap(pid, &image, "twice");
        return;
    }
    put_back(pid, &image, "twice-1");
    let image = detach(pid, &dir, "twice-2");
    put_back_once_torn_down(pid, &image, "twice-2");
    worker.finish(&output, RECORDS);
}

/// `put_back` of a ring on memory that stays in the process (the second
/// put-back): the kernel's teardown of the ring the detach just closed may
/// still write its CQ tail there, and the restore then refuses cleanly,
/// leaving the process stopped (crates/ringplan-exec/README.md); it is
/// tried again until the teardown is over.
fn put_back_once_torn_down(pid: u32, image: &str, name: &str) {
    for _ in 0..20 {
        let output = plan(&["exec", image, "--pid", &pid.to_string()]);
        if output.status.success() {
            assert!(
                !proc_state(pid).starts_with('T'),
                "{name}: after exec --pid the process is {}",
                proc_state(pid)
            );
            return;
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("restore_completions") && stderr.contains("everything done was undone"),
            "{name}: plan exec --pid: {stderr}"
        );
        assert!(
            proc_state(pid).starts_with('T'),
            "{name}: a refused restore leaves the process stopped"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{name}: the restore was refused for 2 s");
}

/// Whether a ring of `pid` has moved its SQ head (`SqHead:` above 0 in
/// one of its fdinfo files): the program is doing io_uring I/O.
pub(crate) fn has_moved_a_ring(pid: u32) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
        .any(|info| {
            info.lines().any(|line| {
                line.strip_prefix("SqHead:")
                    .is_some_and(|head| head.trim().parse::<u64>().is_ok_and(|head| head > 0))
            })
        })
}

/// The single child of `main` that holds a ring whose SQ head has moved.
fn wait_for_ring_io(main: &mut Child, find: impl Fn() -> Option<u32>) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = main.try_wait() {
            panic!("the program exited ({status}) before doing io_uring I/O");
        }
        if let Some(pid) = find().filter(|&pid| has_moved_a_ring(pid)) {
            return pid;
        }
        assert!(Instant::now() < deadline, "no io_uring I/O within 20 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for `child` to exit within `limit`: its exit code, stdout and
/// stderr.
fn finish(mut child: Child, limit: Duration) -> (Option<i32>, String) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            let output = child.wait_with_output().expect("the program's output");
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            return (output.status.code(), text);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let output = child.wait_with_output().expect("the program's output");
    panic!(
        "the program did not finish within {limit:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn fio_verify(name: &str, sqthread_poll: bool) {
    let dir = scratch_dir(&format!("in-place-fio-{name}"));
    let job = dir.join("job.fio");
    // Rate-limited so that the write phase lasts about 2 s: the detach
    // lands mid-write; the verify phase then reads everything back.
    std::fs::write(
        &job,
        format!(
            "[global]\nioengine=io_uring\nrw=write\nbs=4k\niodepth=8\nsize=32M\nrate=16m\n\
             verify=crc32c\ndo_verify=1\nregisterfiles=1\nfixedbufs=1\nsqthread_poll={}\n\
             directory={}\n\n[{name}]\nfilename=data\n",
            u8::from(sqthread_poll),
            dir.display()
        ),
    )
    .expect("writing the job file");
    let mut fio = Command::new("fio")
        .arg("--eta=never")
        .arg(&job)
        // Where it leaves its verify state files.
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting fio (scripts/deps installs it)");
    let main = fio.id();
    let pid = wait_for_ring_io(&mut fio, || {
        ringplan_kernel::procfs::task::children(ringplan_kernel::procfs::Process::Pid(main))
            .unwrap_or_default()
            .into_iter()
            .find(|child| {
                std::fs::read_dir(format!("/proc/{child}/fd"))
                    .into_iter()
                    .flatten()
                    .flatten()
                    .any(|fd| {
                        std::fs::read_link(fd.path())
                            .is_ok_and(|target| target.to_string_lossy().contains("io_uring"))
                    })
            })
    });
    std::thread::sleep(Duration::from_millis(300));
    let image = detach(pid, &dir, name);
    if kernel_has_no_mmap() {
        put_back(pid, &image, name);
    } else {
        refused_without_no_mmap(pid, &image, name);
        let _ = fio.kill();
        return;
    }
    let (code, output) = finish(fio, Duration::from_secs(120));
    assert_eq!(code, Some(0), "fio {name}: {output}");
    assert!(output.contains("err= 0"), "fio {name}: {output}");
    assert!(!output.contains("verify:"), "fio {name}: {output}");
}

#[test]
fn fio_with_crc32c_verify_finishes_after_its_ring_went_out_and_back() {
    fio_verify("fixed", false);
}

#[test]
fn fio_with_sqpoll_and_crc32c_verify_finishes_after_its_ring_went_out_and_back() {
    fio_verify("sqpoll", true);
}

#[test]
fn qemu_img_bench_finishes_after_its_ring_went_out_and_back() {
    let dir = scratch_dir("in-place-qemu-img");
    let raw = crate::support::qemu_raw_image(&dir);
    let mut bench = Command::new("qemu-img")
        .args([
            "bench",
            "-i",
            "io_uring",
            "-t",
            "writeback",
            "-c",
            "600000",
            "-d",
            "32",
            "-f",
            "raw",
        ])
        .arg(&raw)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting qemu-img");
    let pid = bench.id();
    wait_for_ring_io(&mut bench, || Some(pid));
    let image = detach(pid, &dir, "qemu-img");
    if kernel_has_no_mmap() {
        put_back(pid, &image, "qemu-img");
    } else {
        refused_without_no_mmap(pid, &image, "qemu-img");
        let _ = bench.kill();
        return;
    }
    let (code, output) = finish(bench, Duration::from_secs(120));
    assert_eq!(code, Some(0), "qemu-img bench: {output}");
    assert!(output.contains("Run completed"), "qemu-img bench: {output}");
}

#[test]
fn a_failure_at_any_step_of_the_put_back_leaves_the_detached_program_as_it_was() {
    const RECORDS: u32 = 200;
    let dir = scratch_dir("in-place-fail");
    let output = dir.join("records");
    let (worker, _, _) = Worker::paused("plain", &output, RECORDS, 3000);
    let pid = worker.pid();
    let image = detach(pid, &dir, "fail");
    if !can_put_back_a_closed_registered_file() {
        refused_without_no_mmap(pid, &image, "fail");
        return;
    }
    let before = ProcessState::capture_of(pid);
    fail_at_every_step(&image, pid, &[], &before, |step| {
        assert!(
            proc_state(pid).starts_with('T'),
            "step {step}: a failed restore leaves the process stopped as found, not {}",
            proc_state(pid)
        );
    });
    put_back(pid, &image, "fail");
    worker.finish(&output, RECORDS);
}

/// Several `--freeze` dumps, a `--detach` and an `exec --pid` aimed at one
/// process at once: each holds it alone (waits) or refuses naming the
/// holder; every image a dump read has the ring whole or not at all; and
/// the process ends as the last command to finish promised.
#[test]
fn dumps_a_detach_and_an_exec_at_once_take_turns() {
    let dir = scratch_dir("in-place-concurrent");
    let output = dir.join("records");
    let (worker, _, _) = Worker::paused("plain", &output, 200, 3000); // paused: its ring's state does not change from here
    let pid = worker.pid().to_string();
    // The reference: a frozen dump before anything else runs.
    let reference = dir.join("reference.img");
    let reference = reference.to_str().expect("utf-8");
    let dumped = plan(&["dump", "--pid", &pid, "--freeze", "-o", reference]);
    assert!(
        dumped.status.success(),
        "{}",
        String::from_utf8_lossy(&dumped.stderr)
    );
    let ring_state = |path: &str| -> Option<Value> {
        let view: Value =
            serde_json::from_slice(&plan(&["show", path, "--objects", "--format", "json"]).stdout)
                .ok()?;
        view["objects"]
            .as_array()?
            .iter()
            .find(|object| object["kind"] == "ring")
            .map(|ring| ring["state"]["positions"].clone())
    };
    let want = ring_state(reference).expect("the reference has the ring");

    let detached = dir.join("detached.img");
    let detached = detached.to_str().expect("utf-8").to_owned();
    let mut commands: Vec<(String, std::process::Child)> = Vec::new();
    for index in 0..3 {
        let image = dir.join(format!("freeze{index}.img"));
        let child = Command::new(crate::support::PLAN)
            .args(["dump", "--pid", &pid, "--freeze", "-o"])
            .arg(&image)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("plan dump --freeze");
        commands.push((format!("freeze{index}"), child));
    }
    let child = Command::new(crate::support::PLAN)
        .args(["dump", "--pid", &pid, "--detach", "-o", &detached])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("plan dump --detach");
    commands.push(("detach".to_owned(), child));
    let mut finished = Vec::new();
    for (name, child) in commands {
        let output = child.wait_with_output().expect("waiting");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(
            output.status.success() || stderr.contains("is held by another ringplan command"),
            "{name}: neither held alone nor refused naming the holder: {stderr}"
        );
        finished.push((name, output.status.success()));
    }
    assert!(
        finished.iter().any(|(name, ok)| name == "detach" && *ok),
        "the detach waited its turn and ran: {finished:?}"
    );
    for (name, ok) in &finished {
        if name.starts_with("freeze") && *ok {
            let path = dir.join(format!("{name}.img"));
            // Read before the detach: the ring whole; after: no ring.
            if let Some(state) = ring_state(path.to_str().expect("utf-8")) {
                assert_eq!(state, want, "{name}: an image read under a hold is exact");
            }
        }
    }
    assert_eq!(
        ring_state(&detached).as_ref(),
        Some(&want),
        "the detached image"
    );
    assert!(
        proc_state(worker.pid()).starts_with('T'),
        "--detach promised a stopped process"
    );
    if kernel_at_least(6, 18) {
        assert_eq!(io_uring_left(worker.pid()), Vec::<String>::new());
    }
    if !can_put_back_a_closed_registered_file() {
        return;
    }
    // Now an exec --pid and two more dumps at once: the exec puts the ring
    // back and resumes the process; the dumps see it before or after.
    let exec = Command::new(crate::support::PLAN)
        .args(["exec", &detached, "--pid", &pid])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("plan exec --pid");
    let dumps: Vec<std::process::Child> = (0..2)
        .map(|index| {
            Command::new(crate::support::PLAN)
                .args(["dump", "--pid", &pid, "--freeze", "-o"])
                .arg(dir.join(format!("after{index}.img")))
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("plan dump --freeze")
        })
        .collect();
    let exec = exec.wait_with_output().expect("waiting for exec");
    assert!(
        exec.status.success(),
        "exec --pid: {}",
        String::from_utf8_lossy(&exec.stderr)
    );
    for dump in dumps {
        let output = dump.wait_with_output().expect("waiting for a dump");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success() || stderr.contains("is held by another ringplan command"),
            "{stderr}"
        );
    }
    for index in 0..2 {
        let path = dir.join(format!("after{index}.img"));
        if let Some(state) = path.to_str().and_then(&ring_state) {
            assert_eq!(state, want, "after{index}: the ring as put back");
        }
    }
    // The exec promised a running process with its ring: it finishes.
    assert!(
        !proc_state(worker.pid()).starts_with('T'),
        "{}",
        proc_state(worker.pid())
    );
    worker.finish(&output, 200);
}
