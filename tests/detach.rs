//! `plan dump --pid PID --detach -o IMAGE` against `tests/programs/
//! detach_target.c` (a plain ring with a registered eventfd, files, buffers
//! and ring fd; an SQPOLL ring; a DEFER_TASKRUN ring owned by a second
//! thread), driven mid-I/O, and checked from outside: the requests in
//! flight the dumper counts and names, the process without any ring fd,
//! ring mapping or io thread and stopped after a detach, the image's ring
//! state, and a refusal (requests that never complete) that names them
//! and leaves the process running (or stopped, as found), within
//! `--drain-timeout`; CRIU dumps a detached process; a detach waits for
//! another holder of the process.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use ringplan_dump::raw::{Known, PendingKind};
use ringplan_dump::{BackendChoice, Dumper, RingInFlight, Target};
use ringplan_image::ObjectKind;
use ringplan_kernel::procfs::{stat, Process};

use crate::support::{io_threads, kernel_at_least, plan, ring_fds, ring_mappings, scratch_dir};

/// The program, killed when dropped.
struct Program {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pid: u32,
    owner_tid: u32,
    plain_fd: i32,
    owned_fd: i32,
}

impl Program {
    fn start() -> Program {
        Program::launch(Command::new(Program::binary()))
    }

    /// In a session of its own (setsid execs it in place, same pid): CRIU
    /// refuses a process whose session leader it cannot see, which is the
    /// case where the tests run under a leader in another pid namespace.
    fn start_in_own_session() -> Program {
        let mut setsid = Command::new("setsid");
        setsid.arg(Program::binary());
        Program::launch(setsid)
    }

    fn binary() -> &'static Path {
        crate::support::c_program("detach_target")
    }

    fn launch(mut command: Command) -> Program {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting detach_target");
        let stdin = child.stdin.take().expect("piped stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .expect("the program's first line");
        let first: serde_json::Value = serde_json::from_str(&line).expect("JSON");
        let number = |key: &str| first[key].as_i64().expect(key);
        assert_eq!(number("pid") as u32, child.id());
        Program {
            pid: child.id(),
            owner_tid: number("owner_tid") as u32,
            plain_fd: number("plain") as i32,
            owned_fd: number("owned") as i32,
            child,
            stdin,
            stdout,
        }
    }

    /// Sends one command and returns its answer line.
    fn ask(&mut self, command: &str) -> String {
        writeln!(self.stdin, "{command}").expect("writing a command");
        self.stdin.flush().expect("flushing");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("reading an answer");
        line.trim_end().to_owned()
    }

    fn state(&self) -> u8 {
        stat::read(Process::Pid(self.pid)).expect("stat").state
    }

    fn in_flight(&self, dumper: &mut Dumper) -> Vec<RingInFlight> {
        let target = Target::open(self.pid).expect("target");
        dumper.in_flight(&target).expect("in flight")
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ring_at(rings: &[RingInFlight], fd: i32) -> &RingInFlight {
    rings
        .iter()
        .find(|ring| ring.fd == Some(fd))
        .unwrap_or_else(|| panic!("no ring at fd {fd} in {rings:?}"))
}

/// (opcode, user_data, where) of a ring's named requests, sorted.
fn named(ring: &RingInFlight) -> Vec<(u8, u64, PendingKind)> {
    let Known::Known(pending) = &ring.pending else {
        panic!("pending requests not all listed: {ring:?}");
    };
    let mut named: Vec<_> = pending
        .iter()
        .map(|request| (request.opcode, request.user_data, request.waits_in))
        .collect();
    named.sort_by_key(|(_, user_data, _)| *user_data);
    named
}

/// Polls until `rings` at `fd` reach `count` (a completion posted by an
/// io-wq worker or a wakeup takes a moment), for at most a second.
fn wait_for_count(
    program: &Program,
    dumper: &mut Dumper,
    fd: i32,
    count: u32,
) -> Vec<RingInFlight> {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let rings = program.in_flight(dumper);
        if ring_at(&rings, fd).count == Ok(count) || Instant::now() >= deadline {
            return rings;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The reads on a pipe of `ring` are named, as armed for poll.
fn expect_reads_named(ring: &RingInFlight, poll_armed: Vec<(u8, u64, PendingKind)>) {
    assert_eq!(
        named(ring),
        poll_armed,
        "reads on an empty pipe wait poll-armed"
    );
    assert!(ring.to_string().contains("(poll-armed)"), "{ring}");
}

const READ: u8 = 22;
const TIMEOUT: u8 = 11;
const POLL_ADD: u8 = 6;

#[test]
fn requests_in_flight_are_counted_and_named() {
    let mut program = Program::start();
    let mut dumper = Dumper::new(BackendChoice::Bpf).expect("BPF");
    let plain = program.plain_fd;
    let rings = program.in_flight(&mut dumper);
    assert_eq!(rings.len(), 3, "{rings:?}");
    for ring in &rings {
        assert_eq!(ring.count, Ok(0), "at rest: {ring}");
    }

    assert_eq!(program.ask("reads 3"), "ok");
    let rings = wait_for_count(&program, &mut dumper, plain, 3);
    let ring = ring_at(&rings, plain);
    assert_eq!(ring.count, Ok(3), "{ring}");
    expect_reads_named(
        ring,
        (0..3)
            .map(|i| (READ, 0x100 + i, PendingKind::Poll))
            .collect(),
    );

    assert_eq!(program.ask("timeout"), "ok");
    assert_eq!(program.ask("poll"), "ok");
    let rings = wait_for_count(&program, &mut dumper, plain, 5);
    let ring = ring_at(&rings, plain);
    assert_eq!(ring.count, Ok(5), "{ring}");
    let listed = named(ring);
    assert!(
        listed.contains(&(TIMEOUT, 0x200, PendingKind::Timeout)),
        "{listed:?}"
    );
    assert!(
        listed.contains(&(POLL_ADD, 0x300, PendingKind::Poll)),
        "{listed:?}"
    );

    // The reads and the poll complete; the timeout is removed.
    assert_eq!(program.ask("feed 4"), "ok");
    assert_eq!(program.ask("cancel_timeout"), "ok");
    let rings = wait_for_count(&program, &mut dumper, plain, 0);
    assert_eq!(ring_at(&rings, plain).count, Ok(0), "{rings:?}");
    assert_eq!(program.ask("reap"), "reaped 6");

    // Completed (pipe B was fed), but on a DEFER_TASKRUN ring the rest of
    // their completion is task work of the owner thread, which waits in
    // read(): still in flight, and still in the poll table (a request
    // leaves it in that task work).
    assert_eq!(program.ask("owned 2"), "ok");
    let rings = wait_for_count(&program, &mut dumper, program.owned_fd, 2);
    let owned = ring_at(&rings, program.owned_fd);
    assert_eq!(owned.count, Ok(2), "{owned}");
    expect_reads_named(
        owned,
        vec![
            (READ, 0x400, PendingKind::Poll),
            (READ, 0x401, PendingKind::Poll),
        ],
    );
    assert_eq!(owned.task_work_owner, Some(program.owner_tid));
    // The owner runs its task work. On 6.1 a pipe read that the poll woke
    // is issued again, goes to io-wq (6.1's pipes do not read without
    // blocking), and completes through the owner's task work once more:
    // it takes more than one entry there.
    let mut reaped = 0;
    for _ in 0..100 {
        let answer = program.ask("owned_reap");
        reaped += answer
            .strip_prefix("reaped ")
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or_else(|| panic!("{answer}"));
        if reaped >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(reaped, 2);
    let rings = wait_for_count(&program, &mut dumper, program.owned_fd, 0);
    assert_eq!(ring_at(&rings, program.owned_fd).count, Ok(0), "{rings:?}");
}

#[test]
fn detach_takes_every_ring_out_and_leaves_the_process_stopped() {
    let dir = scratch_dir("detach_takes_every_ring_out");
    let image_path = dir.join("detached.img");
    let mut program = Program::start();
    // Positions past zero on the plain ring, and two completions waiting
    // for the owner's task work, which the drain must run.
    assert_eq!(program.ask("reads 2"), "ok");
    assert_eq!(program.ask("feed 2"), "ok");
    assert_eq!(program.ask("owned 2"), "ok");
    assert!(
        !io_threads(program.pid).is_empty(),
        "the SQPOLL ring has its thread"
    );
    assert_eq!(ring_fds(program.pid).len(), 3);

    let image = image_path.to_str().expect("utf-8 path");
    let pid = program.pid.to_string();
    let output = plan(&["dump", "--pid", &pid, "--detach", "-o", image]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("stopped for"), "{stderr}");

    assert_eq!(program.state(), b'T', "left stopped");
    assert_eq!(
        ring_fds(program.pid),
        Vec::<String>::new(),
        "no ring fd left"
    );
    assert_eq!(
        ring_mappings(program.pid),
        Vec::<String>::new(),
        "no ring mapping left"
    );
    let left = io_threads(program.pid);
    assert!(
        !left.iter().any(|thread| thread.starts_with("iou-sqp-")),
        "no SQ thread left: {left:?}"
    );
    if kernel_at_least(6, 12) {
        assert_eq!(left, Vec::<String>::new(), "no io thread left");
    } else {
        // 6.1 keeps a thread's last io-wq worker until the thread exits:
        // said, not hidden.
        for worker in &left {
            assert!(stderr.contains(worker.as_str()), "{worker} named: {stderr}");
        }
        if !left.is_empty() {
            assert!(stderr.contains("keeps io-wq workers"), "{stderr}");
        }
    }

    let bytes = std::fs::read(&image_path).expect("the image");
    let image = ringplan_image::decode_slice(&bytes).expect("a valid image");
    let ring_state = |fd: i32| {
        image
            .objects
            .iter()
            .find(|object| object.fds.iter().any(|entry| entry.fd == fd))
            .and_then(|object| match &object.kind {
                ObjectKind::Ring(ring) => ring.state.clone(),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no ring state at fd {fd}"))
    };
    let plain = ring_state(program.plain_fd);
    assert_eq!(plain.positions.sq_head, 2);
    assert_eq!(plain.positions.cq_tail, 2);
    let owned = ring_state(program.owned_fd);
    assert_eq!(owned.owner_tid, Some(program.owner_tid));
    // The drain ran the owner's task work: both completions are posted
    // (in the order the kernel ran its task work list).
    let mut cqes: Vec<u64> = owned
        .cqes
        .expect("the owned ring's CQEs")
        .iter()
        .map(|cqe| cqe.user_data)
        .collect();
    cqes.sort_unstable();
    assert_eq!(cqes, vec![0x400, 0x401]);
}

#[test]
fn requests_that_never_complete_are_named_and_the_process_keeps_running() {
    let dir = scratch_dir("detach_refused");
    let image_path = dir.join("refused.img");
    let mut program = Program::start();
    assert_eq!(program.ask("reads 1"), "ok");
    assert_eq!(program.ask("timeout"), "ok");

    let image = image_path.to_str().expect("utf-8 path");
    let pid = program.pid.to_string();
    let started = Instant::now();
    let output = plan(&[
        "dump",
        "--pid",
        &pid,
        "--detach",
        "-o",
        image,
        "--drain-timeout",
        "0.3",
    ]);
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains(&format!(
            "ring fd {}: 2 request(s) in flight",
            program.plain_fd
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("READ user_data 0x100 (poll-armed)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("TIMEOUT user_data 0x200 (timeout)"),
        "{stderr}"
    );
    assert!(stderr.contains("left as found"), "{stderr}");
    assert!(
        took >= Duration::from_millis(300),
        "--drain-timeout honoured: {took:?}"
    );
    assert!(
        took < Duration::from_secs(3),
        "--drain-timeout honoured: {took:?}"
    );
    assert!(!image_path.exists(), "no image written");

    // It runs as before: it answers, its rings are there and still work.
    assert_ne!(program.state(), b'T');
    assert_eq!(program.ask("ping"), "pong");
    assert_eq!(ring_fds(program.pid).len(), 3);
    assert_eq!(program.ask("feed 1"), "ok");
    assert_eq!(program.ask("cancel_timeout"), "ok");
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(program.ask("reap"), "reaped 3");

    // Found stopped, it stays stopped.
    assert_eq!(program.ask("reads 1"), "ok");
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(program.pid as i32).expect("pid"),
        rustix::process::Signal::STOP,
    )
    .expect("SIGSTOP");
    let output = plan(&[
        "dump",
        "--pid",
        &pid,
        "--detach",
        "-o",
        image,
        "--drain-timeout",
        "0.1",
    ]);
    assert_eq!(output.status.code(), Some(1));
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(program.state(), b'T', "found stopped, left stopped");
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(program.pid as i32).expect("pid"),
        rustix::process::Signal::CONT,
    )
    .expect("SIGCONT");
    assert_eq!(program.ask("ping"), "pong");
}

#[test]
fn detach_needs_an_output_file() {
    let output = plan(&["dump", "--pid", "1", "--detach"]);
    assert_eq!(output.status.code(), Some(2));
}

/// A process dumper can take the process after a detach: CRIU (where
/// installed and `criu check` passes on this kernel) dumps it, which it
/// refuses while a ring is mapped ("Unknown shit 600 (anon_inode:[io_uring])").
#[test]
fn a_detached_process_is_dumpable_by_criu() {
    if !crate::support::criu_works() {
        return;
    }
    let dir = scratch_dir("detach_then_criu");
    let images = dir.join("criu");
    let _ = std::fs::remove_dir_all(&images);
    std::fs::create_dir_all(&images).expect("criu image dir");
    let mut program = Program::start_in_own_session();
    assert_eq!(program.ask("owned 2"), "ok");
    let pid = program.pid.to_string();
    let image = dir.join("detached.img");
    let output = plan(&[
        "dump",
        "--pid",
        &pid,
        "--detach",
        "-o",
        image.to_str().expect("utf-8 path"),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stderr.contains("keeps io-wq workers") {
        // Before 6.18 a thread's last io-wq worker can outlive the rings,
        // and criu cannot dump io threads (6.1 hangs in it).
        eprintln!("the detach left io-wq workers, which criu cannot dump: not tried ({stderr})");
        return;
    }
    // CRIU kills the process once dumped (no --leave-stopped).
    let criu = Command::new("criu")
        .args(["dump", "-t", &pid, "-D"])
        .arg(&images)
        .args(["-o", "dump.log"])
        .output()
        .expect("running criu");
    let log = std::fs::read_to_string(images.join("dump.log")).unwrap_or_default();
    assert!(
        criu.status.success(),
        "criu dump failed: {}",
        log.lines()
            .filter(|line| line.contains("Error"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(images.join(format!("core-{pid}.img")).exists());
}

/// The detach holds the process under the same lock as `--freeze` and
/// `plan freeze`: started while `plan freeze` holds the process, it waits
/// for it to let go, then detaches (and the freeze's SIGCONT does not undo
/// the detach's stop).
#[test]
fn a_detach_waits_for_another_holder() {
    let dir = scratch_dir("detach_waits_for_holder");
    let mut program = Program::start();
    assert_eq!(program.ask("ping"), "pong");
    let pid = program.pid.to_string();
    let mut freeze = Command::new(crate::support::PLAN)
        .args([
            "freeze", "--pid", &pid, "--method", "signal", "--", "sleep", "1",
        ])
        .stderr(Stdio::null())
        .spawn()
        .expect("plan freeze");
    let deadline = Instant::now() + Duration::from_secs(5);
    while program.state() != b'T' && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(program.state(), b'T', "plan freeze holds it");
    let started = Instant::now();
    let image = dir.join("detached.img");
    let output = plan(&[
        "dump",
        "--pid",
        &pid,
        "--detach",
        "-o",
        image.to_str().expect("utf-8 path"),
    ]);
    let took = started.elapsed();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(freeze.wait().expect("plan freeze").success());
    assert!(
        took >= Duration::from_millis(500),
        "it waited for the freeze: {took:?}"
    );
    assert_eq!(program.state(), b'T', "left stopped by the detach");
    assert_eq!(ring_fds(program.pid), Vec::<String>::new());
}

/// A failure before the image is on disk (here: its directory does not
/// exist) leaves the process as it was: running, its rings in place.
#[test]
fn an_image_that_cannot_be_written_leaves_the_process_running() {
    let mut program = Program::start();
    let pid = program.pid.to_string();
    let output = plan(&[
        "dump",
        "--pid",
        &pid,
        "--detach",
        "-o",
        "/nonexistent-ringplan-dir/detached.img",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("writing the image to /nonexistent-ringplan-dir/detached.img"),
        "{stderr}"
    );
    assert!(stderr.contains("left as found"), "{stderr}");
    assert_ne!(program.state(), b'T');
    assert_eq!(program.ask("ping"), "pong");
    assert_eq!(ring_fds(program.pid).len(), 3);
    assert!(
        !io_threads(program.pid).is_empty(),
        "the SQ thread is still there"
    );
}
