//! `plan dump --pid PID --tree --detach -o IMAGE` against the real kernel:
//! `tests/programs/tree_worker.c` (a parent that sets up a plain ring and
//! an SQPOLL ring, each with a registered file, and forks two children
//! that work through them, one ring each, the PostgreSQL 18 pattern)
//! caught mid-work, and the `shared` and `shared-sqpoll` scenarios (a ring
//! shared by a parent and three children, one of which closed its copy
//! and one of which has a ring of its own). Checked from outside: after a
//! detach no process of the tree has an io_uring fd (`/proc/PID/fd`), a
//! ring mapping (`/proc/PID/maps`) or an SQ thread (`/proc/PID/task`),
//! every process is stopped, and the image equals (structure) what `plan
//! dump --tree` read just before; a refusal (a request in one child that
//! never completes; an image that cannot be written) leaves every process
//! running with its rings, and the tree_worker then finishes its work
//! correctly.
//!
//! Its own test binary (`RINGPLAN_VM_BINARIES="detach_tree"
//! ./scripts/test-vm`).

#[path = "support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use ringplan_kernel::abi::SetupFlags;
use ringplan_kernel::procfs::task::SQ_THREAD_NAME_PREFIX;
use ringplan_kernel::procfs::{stat, Process};
use serde_json::{json, Value};

use support::{
    io_threads, kernel_at_least, plan, plan_ok, ring_fds, ring_mappings, scratch_dir, Scenario,
};

/// The tree_worker, killed (with its children, through their
/// PR_SET_PDEATHSIG) when dropped.
struct TreeWorker {
    child: Child,
    /// Created to end a long run (`END_FILE=`).
    end_file: PathBuf,
    stdout: BufReader<ChildStdout>,
    pid: u32,
    children: Vec<u32>,
}

impl TreeWorker {
    /// A run that goes on until [`TreeWorker::finish`] asks it to end (a
    /// record every 5 ms per child): long enough for the slowest VM to
    /// catch it mid-work.
    fn start_long(dir: &Path, options: &[&str]) -> TreeWorker {
        TreeWorker::start(dir, 1_000_000, 5, options)
    }

    fn start(dir: &Path, records: u32, delay_ms: u32, options: &[&str]) -> TreeWorker {
        let end_file = dir.join("end");
        let _ = std::fs::remove_file(&end_file);
        let end_option = format!("END_FILE={}", end_file.display());
        let binary = support::c_program("tree_worker");
        let mut child = Command::new(binary)
            .arg(dir)
            .arg(records.to_string())
            .arg(delay_ms.to_string())
            .args(options)
            .arg(&end_option)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting tree_worker");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .expect("tree_worker's first line");
        let ready: Value = serde_json::from_str(&line)
            .unwrap_or_else(|error| panic!("tree_worker printed {line:?}: {error}"));
        let children = ready["children"]
            .as_array()
            .expect("children")
            .iter()
            .map(|pid| pid.as_u64().expect("a pid") as u32)
            .collect();
        TreeWorker {
            pid: child.id(),
            children,
            child,
            stdout,
            end_file,
        }
    }

    fn pids(&self) -> Vec<u32> {
        std::iter::once(self.pid)
            .chain(self.children.iter().copied())
            .collect()
    }

    /// Asks it to end (each child checks what it wrote) and waits; its
    /// exit code and what it printed.
    fn finish(mut self) -> (Option<i32>, String, String) {
        std::fs::write(&self.end_file, b"").expect("creating the end file");
        let mut stdout = String::new();
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut self.stdout, &mut stdout).expect("stdout");
        if let Some(mut pipe) = self.child.stderr.take() {
            std::io::Read::read_to_string(&mut pipe, &mut stderr).expect("stderr");
        }
        let status = self.child.wait().expect("waiting for tree_worker");
        (status.code(), stdout, stderr)
    }
}

impl Drop for TreeWorker {
    fn drop(&mut self) {
        for pid in self.pids() {
            signal(pid, rustix::process::Signal::KILL);
        }
        let _ = self.child.wait();
    }
}

fn signal(pid: u32, signal: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

/// The pids of a `shared` scenario's tree: the scenario, then its children.
fn scenario_pids(scenario: &Scenario) -> Vec<u32> {
    std::iter::once(scenario.pid())
        .chain(
            scenario.description["children"]
                .as_array()
                .expect("children")
                .iter()
                .map(|child| child["pid"].as_u64().expect("pid") as u32),
        )
        .collect()
}

fn state(pid: u32) -> u8 {
    stat::read(Process::Pid(pid)).expect("stat").state
}

/// The JSON object view of an image.
fn view(image: &Path) -> Value {
    let image = image.to_str().expect("utf-8 path");
    serde_json::from_slice(&plan_ok(&["show", image, "--objects", "--format", "json"]))
        .expect("JSON view")
}

/// `view` without what a running program changes between two reads: each
/// ring's continuity state (positions and entries), kept only as present
/// or not.
fn structure(mut view: Value) -> Value {
    for object in view["objects"].as_array_mut().expect("objects") {
        if let Some(state) = object.get_mut("state") {
            *state = Value::Bool(!state.is_null());
        }
    }
    view
}

/// `plan dump --tree --freeze` of `root`, then `plan dump --tree --detach`
/// of it; checks that the detach succeeded, that every process of `pids`
/// is stopped with no ring fd, ring mapping or SQ thread left, and that
/// the two images are equal (in structure only when `running`: the
/// program worked on between them). Returns the detached image's view and
/// the detach's stderr.
fn detach_and_check(root: u32, pids: &[u32], dir: &Path, running: bool) -> (Value, String) {
    // The `shared` scenarios' closer holds no ring (in `shared-sqpoll`)
    // or only the SINGLE_ISSUER one: at least the root and one more do.
    let holding = pids
        .iter()
        .filter(|&&pid| !ring_fds(pid).is_empty() || !ring_mappings(pid).is_empty())
        .count();
    assert!(
        holding >= 2 && !ring_fds(root).is_empty(),
        "rings before the detach"
    );
    let before = dir.join("before.img");
    let after = dir.join("after.img");
    let root_text = root.to_string();
    plan_ok(&[
        "dump",
        "--pid",
        &root_text,
        "--tree",
        "--freeze",
        "--backend",
        "bpf",
        "-o",
        before.to_str().expect("utf-8 path"),
    ]);
    let output = plan(&[
        "dump",
        "--pid",
        &root_text,
        "--tree",
        "--detach",
        "-o",
        after.to_str().expect("utf-8 path"),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "tree of pid {root} ({} process(es)) detached",
            pids.len()
        )),
        "{stderr}"
    );

    for &pid in pids {
        assert_eq!(state(pid), b'T', "pid {pid} left stopped: {stderr}");
        assert_eq!(ring_fds(pid), Vec::<String>::new(), "pid {pid}: no ring fd");
        assert_eq!(
            ring_mappings(pid),
            Vec::<String>::new(),
            "pid {pid}: no ring mapping"
        );
        let left = io_threads(pid);
        assert!(
            !left
                .iter()
                .any(|thread| thread.as_bytes().starts_with(SQ_THREAD_NAME_PREFIX)),
            "pid {pid}: no SQ thread left: {left:?}"
        );
        if kernel_at_least(6, 18) {
            assert_eq!(left, Vec::<String>::new(), "pid {pid}: no io thread left");
        } else {
            // Before 6.18 the kernel may keep a thread's last io-wq worker
            // until the thread exits (seen on 6.1 and 6.12): said, not
            // hidden.
            for worker in &left {
                assert!(stderr.contains(worker.as_str()), "{worker} named: {stderr}");
                assert!(stderr.contains("keeps io-wq workers"), "{stderr}");
            }
        }
    }

    let before = view(&before);
    let after = view(&after);
    assert_eq!(after["version"], ringplan_image::FORMAT_VERSION);
    let pids_listed = support::tree_pids(&after);
    assert_eq!(
        pids_listed,
        pids.iter().map(|&pid| u64::from(pid)).collect::<Vec<_>>()
    );
    if running {
        assert_eq!(structure(after.clone()), structure(before));
    } else {
        assert_eq!(after, before);
    }
    (after, stderr)
}

/// The `shared` scenarios: every process stopped, every ring (the shared
/// one, the SINGLE_ISSUER one all four keep, the child's own) out of every
/// process, the image as `plan dump --tree` reads it.
fn detach_scenario(name: &str) {
    let scenario = Scenario::start(name);
    let pids = scenario_pids(&scenario);
    let dir = scratch_dir(&format!("detach-tree-{name}"));
    let (view, _) = detach_and_check(scenario.pid(), &pids, &dir, false);
    let rings = support::objects_of_kind(&view, "ring");
    assert_eq!(
        rings.len(),
        if name == "shared" { 3 } else { 2 },
        "{view:#}"
    );
    // Let the processes run again so that the scenario tears down.
    for pid in pids {
        signal(pid, rustix::process::Signal::CONT);
    }
}

#[test]
fn the_shared_scenario_is_detached_from_every_process() {
    detach_scenario("shared");
}

#[test]
fn the_shared_sqpoll_scenario_is_detached_from_every_process() {
    detach_scenario("shared-sqpoll");
}

/// tree_worker mid-work: both rings (plain and SQPOLL, held by all three
/// processes) out of every process, the positions in the image those of
/// work in progress.
#[test]
fn a_tree_that_works_on_shared_rings_is_detached_mid_work() {
    let dir = scratch_dir("detach-tree-worker");
    let records = 2000;
    let worker = TreeWorker::start(&dir, records, 5, &[]);
    std::thread::sleep(Duration::from_millis(200));
    let pids = worker.pids();
    let (view, stderr) = detach_and_check(worker.pid, &pids, &dir, true);
    assert!(stderr.contains("stopped for"), "{stderr}");
    let rings = support::objects_of_kind(&view, "ring");
    assert_eq!(rings.len(), 2, "{view:#}");
    for ring in &rings {
        let holders: Vec<u64> = ring["holders"]
            .as_array()
            .expect("holders")
            .iter()
            .map(|holder| holder["pid"].as_u64().expect("pid"))
            .collect();
        assert_eq!(
            holders,
            pids.iter().map(|&pid| u64::from(pid)).collect::<Vec<_>>()
        );
        // Mid-work: each child writes and reads back a record (two
        // requests) per step; caught after some and before the end.
        let head = ring["state"]["positions"]["sq_head"]
            .as_u64()
            .unwrap_or_else(|| panic!("positions: {ring:#}"));
        assert!(
            head > 0 && head < u64::from(records) * 4,
            "sq head {head}: {ring:#}"
        );
        // An SQE published but not yet submitted (a child caught between
        // liburing's tail store and its io_uring_enter) is queued state
        // the image keeps, not a request in flight.
        let tail = ring["state"]["positions"]["sq_tail"]
            .as_u64()
            .unwrap_or_else(|| panic!("positions: {ring:#}"));
        assert!(tail >= head && tail - head <= 1, "{ring:#}");
    }
    let sqpoll = rings
        .iter()
        .filter(|ring| {
            ring["setup"]["flags"]
                .as_u64()
                .is_some_and(|flags| flags & u64::from(SetupFlags::SQPOLL.bits()) != 0)
        })
        .count();
    assert_eq!(sqpoll, 1, "{view:#}");
}

/// A request in one child that never completes: refused in one line that
/// names the child, the ring and the request, within --drain-timeout;
/// every process runs on with its rings, and the work ends correctly.
#[test]
fn a_request_that_never_completes_in_one_child_leaves_the_tree_running() {
    let dir = scratch_dir("detach-tree-refused");
    let worker = TreeWorker::start_long(&dir, &["STUCK_READ"]);
    let pids = worker.pids();
    let fds_before: Vec<Vec<String>> = pids.iter().map(|&pid| ring_fds(pid)).collect();
    let image = dir.join("refused.img");
    let started = Instant::now();
    let output = plan(&[
        "dump",
        "--pid",
        &worker.pid.to_string(),
        "--tree",
        "--detach",
        "-o",
        image.to_str().expect("utf-8 path"),
        "--drain-timeout",
        "0.3",
    ]);
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains(&format!("not detaching the tree of pid {}", worker.pid)),
        "{stderr}"
    );
    // The ring is the parent's first (shared by all three): named once,
    // with every process that holds it.
    assert!(stderr.contains("request(s) in flight"), "{stderr}");
    assert!(stderr.contains("the ring is shared: also"), "{stderr}");
    assert!(stderr.contains("READ user_data 0xdead"), "{stderr}");
    assert!(stderr.contains("was left as found"), "{stderr}");
    // --drain-timeout honoured: the drain's own length is in the line
    // (the whole command's wall time includes loading BPF, seconds in a
    // loaded VM).
    assert!(took >= Duration::from_millis(300), "{took:?}");
    let drained: f64 = stderr
        .split("after draining for ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|seconds| seconds.parse().ok())
        .unwrap_or_else(|| panic!("the drain's length: {stderr}"));
    assert!((0.3..2.0).contains(&drained), "{drained} s: {stderr}");
    assert!(!image.exists(), "no image written");
    for (pid, fds) in pids.iter().zip(&fds_before) {
        assert_ne!(state(*pid), b'T', "pid {pid} runs on");
        assert_eq!(&ring_fds(*pid), fds, "pid {pid} keeps its rings");
    }
    let (code, stdout, stderr) = worker.finish();
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert_eq!(stdout.matches("\"ok\": true").count(), 2, "{stdout}");
}

/// A failure before the image is on disk (its directory does not exist)
/// leaves every process running with its rings; the work ends correctly.
#[test]
fn an_image_that_cannot_be_written_leaves_the_tree_running() {
    let dir = scratch_dir("detach-tree-unwritable");
    let worker = TreeWorker::start_long(&dir, &[]);
    let pids = worker.pids();
    let output = plan(&[
        "dump",
        "--pid",
        &worker.pid.to_string(),
        "--tree",
        "--detach",
        "-o",
        "/nonexistent-ringplan-dir/tree.img",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains("writing the image to /nonexistent-ringplan-dir/tree.img"),
        "{stderr}"
    );
    assert!(stderr.contains("was left as found"), "{stderr}");
    for pid in &pids {
        assert_ne!(state(*pid), b'T', "pid {pid} runs on");
        assert_eq!(ring_fds(*pid).len(), 2, "pid {pid} keeps both rings");
    }
    let (code, stdout, stderr) = worker.finish();
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert_eq!(stdout.matches("\"ok\": true").count(), 2, "{stdout}");
}

/// A process of the tree found stopped (by someone else) is left stopped
/// by a refusal, the others running.
#[test]
fn a_refusal_leaves_a_process_found_stopped_stopped() {
    let dir = scratch_dir("detach-tree-found-stopped");
    let worker = TreeWorker::start_long(&dir, &["STUCK_READ"]);
    let stopped = worker.children[1];
    signal(stopped, rustix::process::Signal::STOP);
    let deadline = Instant::now() + Duration::from_secs(5);
    while state(stopped) != b'T' && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let output = plan(&[
        "dump",
        "--pid",
        &worker.pid.to_string(),
        "--tree",
        "--detach",
        "-o",
        dir.join("refused.img").to_str().expect("utf-8 path"),
        "--drain-timeout",
        "0.1",
    ]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(state(stopped), b'T', "found stopped, left stopped");
    assert_ne!(state(worker.pid), b'T');
    assert_ne!(state(worker.children[0]), b'T');
    signal(stopped, rustix::process::Signal::CONT);
    let (code, stdout, stderr) = worker.finish();
    assert_eq!(code, Some(0), "{stdout}{stderr}");
}

/// The fdinfo backend cannot count requests in flight: refused at once,
/// every ring named once, the tree left running (on a kernel whose fdinfo
/// it cannot read, 6.1 and 6.12, refused for that, likewise).
#[test]
fn the_fdinfo_backend_is_refused_and_the_tree_left_running() {
    let dir = scratch_dir("detach-tree-fdinfo");
    let worker = TreeWorker::start_long(&dir, &[]);
    let pids = worker.pids();
    let image = dir.join("refused.img");
    let output = plan(&[
        "dump",
        "--pid",
        &worker.pid.to_string(),
        "--tree",
        "--detach",
        "--backend",
        "fdinfo",
        "-o",
        image.to_str().expect("utf-8 path"),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("was left as found"), "{stderr}");
    if support::fdinfo_backend_refusal().is_none() {
        assert!(
            stderr.contains("it cannot be told whether requests are in flight"),
            "{stderr}"
        );
        assert_eq!(stderr.matches("the ring is shared").count(), 2, "{stderr}");
    }
    assert!(!image.exists(), "no image written");
    for pid in &pids {
        assert_ne!(state(*pid), b'T', "pid {pid} runs on");
        assert_eq!(ring_fds(*pid).len(), 2, "pid {pid} keeps both rings");
    }
    let (code, stdout, stderr) = worker.finish();
    assert_eq!(code, Some(0), "{stdout}{stderr}");
}

/// A take-out that fails after the image is on disk (a test build's
/// `--fail-take-out-in PID`: the first child's take-out fails after its
/// ring fds are closed, before its ring regions are unmapped) stops there:
/// every process is left stopped, the parent without its rings, the first
/// child with its mappings only, the second child with everything, and
/// the one line says so, process by process, with where the image is.
#[test]
fn a_take_out_that_fails_half_way_says_what_each_process_holds() {
    let dir = scratch_dir("detach-tree-half-way");
    let worker = TreeWorker::start_long(&dir, &[]);
    let (parent, first, second) = (worker.pid, worker.children[0], worker.children[1]);
    let image = dir.join("tree.img");
    let image_text = image.to_str().expect("utf-8 path");
    let output = plan(&[
        "dump",
        "--pid",
        &parent.to_string(),
        "--tree",
        "--detach",
        "-o",
        image_text,
        "--fail-take-out-in",
        &first.to_string(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let line = stderr
        .lines()
        .last()
        .unwrap_or_else(|| panic!("an error line: {stderr}"));
    for expected in [
        format!("taking the rings out of pid {first}: "),
        "munmap (an injected failure)".to_owned(),
        format!("the image is in {image_text} and every process of the tree of pid {parent} is left stopped"),
        format!("pid {parent}: rings taken out ("),
        format!("pid {first}: partly taken out ("),
        format!("pid {second}: rings in place"),
        format!("`plan exec {image_text} --pid {parent}`"),
    ] {
        assert!(line.contains(&expected), "{expected:?} not in: {stderr}");
    }
    let decoded = ringplan_image::decode_slice(&std::fs::read(&image).expect("the image"))
        .expect("a valid image");
    assert_eq!(decoded.processes.len(), 3);

    for pid in [parent, first, second] {
        assert_eq!(state(pid), b'T', "pid {pid} left stopped");
    }
    assert_eq!(ring_fds(parent), Vec::<String>::new());
    assert_eq!(ring_mappings(parent), Vec::<String>::new());
    assert_eq!(ring_fds(first), Vec::<String>::new(), "its fds closed");
    assert_eq!(ring_mappings(first).len(), 4, "its mappings kept");
    assert_eq!(ring_fds(second).len(), 2, "untouched");
    assert_eq!(ring_mappings(second).len(), 4, "untouched");
}

/// Each child's `{"child": I, "done": N, "ok": true}` line in `stdout`:
/// the records it wrote, by child.
fn done_lines(stdout: &str) -> Vec<(u64, u64)> {
    let mut done: Vec<(u64, u64)> = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["ok"] == true && line.get("child").is_some())
        .map(|line| {
            (
                line["child"].as_u64().expect("child"),
                line["done"].as_u64().expect("done"),
            )
        })
        .collect();
    done.sort_unstable();
    done
}

/// Checks child `child`'s file in `dir` from outside: exactly `records`
/// records of 512 bytes, each with its number and the bytes tree_worker
/// fills it with.
fn check_worker_file(dir: &Path, child: u64, records: u64) {
    const RECORD: usize = 512;
    let path = dir.join(format!("tree-worker-{child}.dat"));
    let bytes = std::fs::read(&path).expect("the child's file");
    assert_eq!(
        bytes.len() as u64,
        records * RECORD as u64,
        "{}",
        path.display()
    );
    for (seq, record) in bytes.chunks(RECORD).enumerate() {
        let seq = seq as u32;
        assert_eq!(
            record[..4],
            seq.to_ne_bytes(),
            "record {seq} of child {child}"
        );
        for (index, &byte) in record.iter().enumerate().skip(4) {
            let expected = (seq as usize * 31 + index * 7 + child as usize * 101) as u8;
            assert_eq!(
                byte, expected,
                "record {seq} of child {child}, byte {index}"
            );
        }
    }
}

/// The SQ heads of the rings of a tree image, in object order.
fn sq_heads(image: &Path) -> Vec<u64> {
    support::objects_of_kind(&view(image), "ring")
        .iter()
        .map(|ring| {
            ring["state"]["positions"]["sq_head"]
                .as_u64()
                .expect("positions")
        })
        .collect()
}

/// The round trip: tree_worker taken out mid-work (`--tree --detach`),
/// put back (`plan exec --pid` of the tree image), and each child goes on
/// through its ring (the SQ heads move past the detach's) and finishes:
/// every completion and byte right by its own checks, and every record of
/// its file right when read from outside.
#[test]
fn a_tree_taken_out_mid_work_is_put_back_and_finishes_its_work() {
    round_trip("detach-tree-round-trip", &[]);
}

/// The same with child 0 holding its ring by its registered slot and its
/// mappings, its fd closed: its part receives the ring at no fd of its
/// own, maps it and registers the slot again.
#[test]
fn a_child_that_holds_a_shared_ring_only_by_its_slot_and_mappings_carries_on() {
    round_trip("detach-tree-slot-holder", &["CLOSE_RING_FD"]);
}

fn round_trip(name: &str, options: &[&str]) {
    let dir = scratch_dir(name);
    let worker = TreeWorker::start_long(&dir, options);
    std::thread::sleep(Duration::from_millis(300));
    let root = worker.pid.to_string();
    let image = dir.join("tree.img");
    let image_text = image.to_str().expect("utf-8 path");
    plan_ok(&[
        "dump", "--pid", &root, "--tree", "--detach", "-o", image_text,
    ]);
    // Child 0's hold of ring 0: its slot, and its fd unless it closed it.
    let child = worker.children[0];
    let slot_holds: Vec<Value> = support::objects_of_kind(&view(&image), "ring")
        .iter()
        .flat_map(|ring| ring["holders"].as_array().cloned().unwrap_or_default())
        .filter(|holder| holder["pid"] == child && holder["registered_ring_fds"] != json!([]))
        .collect();
    assert_eq!(slot_holds.len(), 1, "{slot_holds:?}");
    assert_eq!(
        slot_holds[0]["registered_ring_fds"],
        json!([{"tid": child, "offset": 0}])
    );
    assert_eq!(
        slot_holds[0]["fds"] == json!([]),
        options.contains(&"CLOSE_RING_FD"),
        "{slot_holds:?}"
    );
    if !support::kernel_has_no_mmap() {
        // 6.1: the rings cannot go back where the children had them.
        let refused = plan(&["exec", image_text, "--pid", &root]);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("IORING_SETUP_NO_MMAP needs Linux 6.5"),
            "{stderr}"
        );
        return;
    }
    let out = String::from_utf8(plan_ok(&["exec", image_text, "--pid", &root])).expect("utf-8");
    assert!(out.starts_with("restored a tree of 3 processes"), "{out}");
    std::thread::sleep(Duration::from_millis(300));
    let later = dir.join("later.img");
    plan_ok(&[
        "dump",
        "--pid",
        &root,
        "--tree",
        "-o",
        later.to_str().expect("utf-8 path"),
    ]);
    let (detached, going_on) = (sq_heads(&image), sq_heads(&later));
    assert_eq!(detached.len(), 2);
    for (at_detach, now) in detached.iter().zip(&going_on) {
        assert!(now > at_detach, "SQ heads {detached:?} then {going_on:?}");
    }
    let (code, stdout, stderr) = worker.finish();
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let done = done_lines(&stdout);
    assert_eq!(done.len(), 2, "{stdout}");
    for (child, records) in done {
        check_worker_file(&dir, child, records);
    }
}

/// Through CRIU: tree_worker (in a session of its own, its output in a
/// file) checkpointed mid-work with `plan checkpoint` (its rings shared
/// by the three processes: one tree image), restored with `plan restore`,
/// and each child finishes its work correctly, checked as above.
#[test]
fn a_tree_sharing_rings_is_checkpointed_restored_and_finishes() {
    if !support::criu_works() || !support::kernel_has_no_mmap() || !kernel_at_least(6, 18) {
        // Before 6.18 a thread keeps its last io-wq worker after its rings
        // are gone, which criu cannot dump (`tests/criu.rs` checks the
        // refusal).
        return;
    }
    let dir = scratch_dir("criu-tree-worker");
    let images = dir.join("images");
    std::fs::create_dir_all(&images).expect("images dir");
    let out = dir.join("out");
    let end = dir.join("end");
    let binary = support::c_program("tree_worker");
    let output = std::fs::File::create(&out).expect("out");
    let mut child = Command::new("setsid")
        .arg(binary)
        .arg(&dir)
        .arg("1000000")
        .arg("5")
        .arg("NO_PDEATHSIG")
        .arg(format!("END_FILE={}", end.display()))
        .stdin(Stdio::null())
        .stdout(output.try_clone().expect("out"))
        .stderr(output)
        .spawn()
        .expect("setsid tree_worker");
    let ready = support::wait_for_line(&out, "\"children\"", Duration::from_secs(30));
    let ready: Value = serde_json::from_str(&ready).expect("the ready line");
    let pids: Vec<u32> = std::iter::once(child.id())
        .chain(
            ready["children"]
                .as_array()
                .expect("children")
                .iter()
                .map(|pid| pid.as_u64().expect("pid") as u32),
        )
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let checkpointed = plan(&[
        "checkpoint",
        "--pid",
        &child.id().to_string(),
        "-D",
        images.to_str().expect("utf-8"),
    ]);
    let stderr = String::from_utf8_lossy(&checkpointed.stderr);
    if !checkpointed.status.success() {
        for pid in &pids {
            signal(*pid, rustix::process::Signal::KILL);
        }
        let _ = child.wait();
        panic!("plan checkpoint: {stderr}");
    }
    assert!(images.join("ringplan-tree.img").is_file(), "{stderr}");
    // criu dump killed it; reap it so that its pid is free for the restore.
    let _ = child.wait();
    let restored = plan(&["restore", "-D", images.to_str().expect("utf-8")]);
    assert!(
        restored.status.success(),
        "plan restore: {}",
        String::from_utf8_lossy(&restored.stderr)
    );
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(&end, b"").expect("the end file");
    let deadline = Instant::now() + Duration::from_secs(60);
    let done = loop {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        let done = done_lines(&text);
        if done.len() == 2 {
            break done;
        }
        assert!(
            !text.contains("tree_worker (") && Instant::now() < deadline,
            "the restored tree did not finish: {text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    for (child, records) in done {
        check_worker_file(&dir, child, records);
    }
}
