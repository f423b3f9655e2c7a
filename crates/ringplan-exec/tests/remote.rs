//! Syscalls run inside another process (`ringplan_exec::remote`), against
//! real processes: `tests/programs/remote_target.c` (a thread blocked in
//! `read` on a pipe, one in `nanosleep`, one spinning inside an rseq
//! critical section, a SIGUSR1 handler). Everything is checked from
//! outside: `/proc/PID/{maps,fd,status,task}` and what the program prints
//! after it is let go.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use ringplan_exec::remote::{EnterLoop, EnterLoopDone, RemoteError, RemoteProcess};
use ringplan_kernel::abi::ptrace::{ERESTARTSYS, ERESTART_RESTARTBLOCK};
use ringplan_kernel::procfs::{stat, status, Process};
use ringplan_scenarios::c_programs;

/// The target program, killed when dropped.
struct Target {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    pid: u32,
    main: u32,
    sleeper: u32,
    busy: u32,
    rseq: bool,
}

impl Target {
    fn start(mode: &str, sleep_ms: u32) -> Target {
        // Built once: a rebuild while another test runs the binary would
        // show it deleted in that one's maps (or fail with ETXTBSY).
        static BINARY: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
        let binary = BINARY.get_or_init(|| {
            c_programs::build("remote_target", Path::new(env!("CARGO_TARGET_TMPDIR")))
                .unwrap_or_else(|error| panic!("{error}"))
        });
        let mut child = Command::new(binary)
            .args([mode, &sleep_ms.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting remote_target");
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let first = read_json(&mut stdout);
        let id = |key: &str| {
            first[key]
                .as_u64()
                .unwrap_or_else(|| panic!("{key} in {first}")) as u32
        };
        let target = Target {
            pid: id("pid"),
            main: id("main"),
            sleeper: id("sleeper"),
            busy: id("busy"),
            rseq: first["rseq"].as_bool() == Some(true),
            child,
            stdin,
            stdout,
        };
        assert_eq!(target.pid, target.child.id());
        target
    }

    fn tids(&self) -> [u32; 3] {
        [self.main, self.sleeper, self.busy]
    }

    /// Waits until thread `tid` is inside syscall `nr`
    /// (`/proc/PID/task/TID/syscall`).
    fn wait_in_syscall(&self, tid: u32, nr: i64) {
        let path = format!("/proc/{}/task/{tid}/syscall", self.pid);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.split_whitespace().next() == Some(&nr.to_string()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "thread {tid} never entered syscall {nr}: {text:?}"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits until the main thread is in `read` and the sleeper in
    /// `clock_nanosleep`.
    fn wait_blocked(&self) {
        self.wait_in_syscall(self.main, libc::SYS_read);
        self.wait_in_syscall(self.sleeper, libc::SYS_clock_nanosleep);
    }

    fn write_stdin(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin
            .write_all(text.as_bytes())
            .expect("writing to the target's stdin");
        stdin.flush().expect("flushing the target's stdin");
    }

    /// The next JSON lines until one with `"event":"end"`, by event name.
    fn events_until_end(&mut self) -> std::collections::BTreeMap<String, serde_json::Value> {
        let mut events = std::collections::BTreeMap::new();
        loop {
            let event = read_json(&mut self.stdout);
            let name = event["event"]
                .as_str()
                .unwrap_or_else(|| panic!("event in {event}"))
                .to_owned();
            let end = name == "end";
            events.insert(name, event);
            if end {
                return events;
            }
        }
    }

    fn state(&self) -> u8 {
        stat::read(Process::Pid(self.pid))
            .expect("the target's stat")
            .state
    }

    fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.pid as i32).expect("a pid");
        rustix::process::kill_process(pid, signal).expect("kill");
    }

    /// Waits until the leader's state letter is `state`.
    fn wait_state(&self, state: u8) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.state() != state {
            assert!(
                Instant::now() < deadline,
                "state {} never became {}",
                self.state() as char,
                state as char
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_json(stdout: &mut BufReader<ChildStdout>) -> serde_json::Value {
    let mut line = String::new();
    stdout
        .read_line(&mut line)
        .expect("reading the target's stdout");
    serde_json::from_str(&line).unwrap_or_else(|error| panic!("{error}: {line:?}"))
}

/// What the process holds, seen from outside: its mappings and its fds
/// with their targets.
fn snapshot(pid: u32) -> (String, Vec<(String, String)>) {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    let mut fds: Vec<(String, String)> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .map(|entry| {
            let entry = entry.expect("fd entry");
            let target = std::fs::read_link(entry.path()).map(|path| path.display().to_string());
            (
                entry.file_name().to_string_lossy().into_owned(),
                target.unwrap_or_default(),
            )
        })
        .collect();
    fds.sort();
    (maps, fds)
}

fn fd_target(pid: u32, fd: i64) -> String {
    std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
        .map(|path| path.display().to_string())
        .unwrap_or_else(|error| format!("no fd {fd}: {error}"))
}

fn tracer_of_every_thread(pid: u32) -> Vec<u32> {
    ringplan_kernel::procfs::task::ids(Process::Pid(pid))
        .expect("threads")
        .into_iter()
        .map(|tid| {
            status::read_task(Process::Pid(pid), tid)
                .expect("status")
                .tracer_pid
        })
        .collect()
}

const CHOSEN_ADDRESS: u64 = 0x6000_0000_0000;

#[test]
fn syscalls_run_in_each_thread_and_the_process_carries_on_as_before() {
    let sleep_ms = 2000;
    let mut target = Target::start("plain", sleep_ms);
    target.wait_blocked();
    let pid = target.pid;
    let before = snapshot(pid);

    let attaching = Instant::now();
    let mut process = RemoteProcess::attach(pid, &target.tids()).expect("attach");
    let attach_time = attaching.elapsed();
    let split = process.timings();
    assert!(!process.was_stopped());
    let mut held = process.threads();
    held.sort();
    let mut expected = target.tids().to_vec();
    expected.sort();
    assert_eq!(held, expected);
    // The blocked syscalls, as the kernel left them for a restart.
    let interrupted = process.interrupted_syscalls();
    let of = |tid: u32| {
        interrupted
            .iter()
            .find(|syscall| syscall.tid == tid)
            .copied()
    };
    let read = of(target.main).expect("the main thread was interrupted in read");
    assert_eq!(
        (read.nr, read.restart_code),
        (libc::SYS_read as u64, -ERESTARTSYS)
    );
    let sleep = of(target.sleeper).expect("the sleeper was interrupted in its sleep");
    assert_eq!(
        (sleep.nr, sleep.restart_code),
        (libc::SYS_clock_nanosleep as u64, -ERESTART_RESTARTBLOCK)
    );
    assert!(of(target.busy).is_none());

    // A signal that arrives while held waits for the detach.
    target.signal(rustix::process::Signal::USR1);

    for tid in target.tids() {
        assert_eq!(
            process
                .syscall(tid, libc::SYS_getpid as u64, [0; 6])
                .expect("getpid"),
            i64::from(pid)
        );
        assert_eq!(
            process
                .syscall(tid, libc::SYS_gettid as u64, [0; 6])
                .expect("gettid"),
            i64::from(tid)
        );
    }
    if target.rseq {
        assert!(
            process
                .rseq_aborts()
                .iter()
                .any(|abort| abort.tid == target.busy),
            "the busy thread spins inside an rseq critical section: {:?}",
            process.rseq_aborts()
        );
    }
    let timing = Instant::now();
    let rounds = 200;
    for _ in 0..rounds {
        process
            .syscall(target.main, libc::SYS_getppid as u64, [0; 6])
            .expect("getppid");
    }
    let per_syscall = timing.elapsed() / rounds;

    let eventfd = process
        .syscall(
            target.sleeper,
            libc::SYS_eventfd2 as u64,
            [3, libc::EFD_CLOEXEC as u64, 0, 0, 0, 0],
        )
        .expect("eventfd2");
    assert!(eventfd >= 0, "eventfd2: {eventfd}");
    assert_eq!(fd_target(pid, eventfd), "anon_inode:[eventfd]");
    assert_eq!(
        process
            .syscall(
                target.sleeper,
                libc::SYS_close as u64,
                [eventfd as u64, 0, 0, 0, 0, 0]
            )
            .expect("close"),
        0
    );

    let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE) as u64;
    let protection = (libc::PROT_READ | libc::PROT_WRITE) as u64;
    let mapped = process
        .syscall(
            target.busy,
            libc::SYS_mmap as u64,
            [CHOSEN_ADDRESS, 4096, protection, flags, u64::MAX, 0],
        )
        .expect("mmap");
    assert_eq!(mapped as u64, CHOSEN_ADDRESS);
    let row = format!("{CHOSEN_ADDRESS:x}-{:x} rw-p", CHOSEN_ADDRESS + 4096);
    assert!(snapshot(pid).0.contains(&row), "no {row} in the maps");
    process
        .write_memory(CHOSEN_ADDRESS + 8, b"written")
        .expect("writing the new page");
    assert_eq!(
        process
            .read_memory(CHOSEN_ADDRESS + 8, 7)
            .expect("reading it back"),
        b"written"
    );
    assert_eq!(
        process
            .syscall(
                target.busy,
                libc::SYS_munmap as u64,
                [CHOSEN_ADDRESS, 4096, 0, 0, 0, 0]
            )
            .expect("munmap"),
        0
    );
    assert!(!snapshot(pid).0.contains(&row));

    // io_uring_setup's params through the scratch page, read back after.
    let params = process
        .write_scratch(&[0u8; 120])
        .expect("params in the scratch page");
    let ring = process
        .syscall(
            target.main,
            libc::SYS_io_uring_setup as u64,
            [4, params, 0, 0, 0, 0],
        )
        .expect("io_uring_setup");
    assert!(ring >= 0, "io_uring_setup: {ring}");
    assert_eq!(fd_target(pid, ring), "anon_inode:[io_uring]");
    let written = process.read_memory(params, 8).expect("params back");
    assert_eq!(&written[..4], &4u32.to_ne_bytes(), "sq_entries");
    assert_eq!(&written[4..8], &8u32.to_ne_bytes(), "cq_entries");
    assert_eq!(
        process
            .syscall(
                target.main,
                libc::SYS_close as u64,
                [ring as u64, 0, 0, 0, 0, 0]
            )
            .expect("close"),
        0
    );

    assert_eq!(
        process
            .syscall(target.main, libc::SYS_close as u64, [9999, 0, 0, 0, 0, 0])
            .expect("close(9999)"),
        -i64::from(libc::EBADF)
    );
    assert!(matches!(
        process.syscall(1, libc::SYS_getpid as u64, [0; 6]),
        Err(RemoteError::NotHeld { tid: 1, .. })
    ));

    let detaching = Instant::now();
    process.detach(true).expect("detach");
    let detach_time = detaching.elapsed();
    eprintln!(
        "remote: 3-thread target: attach {attach_time:?} (threads stopped and recorded {:?}, scratch pages mapped {:?}), {per_syscall:?} per injected syscall, detach {detach_time:?}",
        split.stop_threads, split.map_scratch
    );

    assert_eq!(snapshot(pid), before, "maps and fds after the detach");
    assert_eq!(tracer_of_every_thread(pid), vec![0; 3]);
    target.write_stdin("hello\n");
    let events = target.events_until_end();
    let read = &events["read"];
    assert_eq!(
        (read["result"].as_i64(), read["data"].as_str()),
        (Some(6), Some("hello")),
        "{read}"
    );
    let slept = &events["slept"];
    let ms = slept["ms"].as_i64().unwrap_or_default();
    assert_eq!(slept["result"].as_i64(), Some(0), "{slept}");
    assert!(
        ms >= i64::from(sleep_ms) && ms < i64::from(sleep_ms) + 900,
        "{slept}"
    );
    let end = &events["end"];
    assert!(
        end["spins_after"].as_u64() > end["spins_before"].as_u64(),
        "{end}"
    );
    assert_eq!(end["handler_ran"].as_i64(), Some(1), "{end}");
    if target.rseq {
        assert!(end["aborts"].as_u64() >= Some(1), "{end}");
    }
}

/// A thread's signal lines of `/proc/PID/task/TID/status` (pending,
/// blocked, ignored, caught).
fn signal_state(pid: u32, tid: u32) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status"))
        .expect("status")
        .lines()
        .filter(|line| {
            ["SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt"]
                .iter()
                .any(|key| line.starts_with(key))
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn an_io_uring_enter_loop_runs_in_one_injection_and_stops_at_a_failing_call() {
    let mut target = Target::start("plain", 300);
    target.wait_blocked();
    let pid = target.pid;
    let before = snapshot(pid);
    let signals_before = signal_state(pid, target.main);
    let mut process = RemoteProcess::attach(pid, &target.tids()).expect("attach");
    let tid = target.main;
    // A 4-entry ring made in the target: its memory is the kernel's,
    // zeroed, so every SQ array slot points at SQE 0, a NOP.
    let params = process.write_scratch(&[0u8; 120]).expect("params");
    let ring = process
        .syscall(
            tid,
            libc::SYS_io_uring_setup as u64,
            [4, params, 0, 0, 0, 0],
        )
        .expect("io_uring_setup");
    assert!(ring >= 0, "io_uring_setup: {ring}");
    let params = process.read_memory(params, 120).expect("params back");
    let word = |offset: usize| {
        u64::from(u32::from_ne_bytes(
            params[offset..offset + 4].try_into().unwrap(),
        ))
    };
    let (sq_entries, cq_entries) = (word(0), word(4));
    let (sq_head, sq_tail, sq_array) = (word(40), word(44), word(64));
    let (cq_head, cq_tail, cqes) = (word(80), word(84), word(100));
    let length = (sq_array + 4 * sq_entries).max(cqes + 16 * cq_entries);
    let rings = process
        .syscall(
            tid,
            libc::SYS_mmap as u64,
            [
                0,
                length,
                (libc::PROT_READ | libc::PROT_WRITE) as u64,
                (libc::MAP_SHARED | libc::MAP_POPULATE) as u64,
                ring as u64,
                0,
            ],
        )
        .expect("mmap of the rings");
    assert!(rings > 0, "mmap: {rings}");
    let rings = rings as u64;
    let read_word = |process: &RemoteProcess, offset: u64| {
        u32::from_ne_bytes(
            process
                .read_memory(rings + offset, 4)
                .expect("a ring word")
                .try_into()
                .unwrap(),
        )
    };
    let enter_loop = EnterLoop {
        ring_fd: ring as i32,
        batch: 4,
        min_complete: 0,
        flags: 0,
        batches: 1000,
        sq_tail: rings + sq_tail,
        cq_head: Some(rings + cq_head),
        cq_tail: rings + cq_tail,
    };
    let timing = Instant::now();
    let done = process.run_enter_loop(tid, &enter_loop).expect("the loop");
    let took = timing.elapsed();
    assert_eq!(
        done,
        EnterLoopDone {
            batches: 1000,
            last_result: 4
        }
    );
    assert_eq!(
        [sq_head, sq_tail, cq_tail].map(|offset| read_word(&process, offset)),
        [4000, 4000, 4000],
        "SQ head and tail, CQ tail after 1000 batches of 4 NOPs"
    );
    assert_eq!(
        read_word(&process, cq_head),
        3996,
        "the head set to the tail before the last batch"
    );
    eprintln!("remote: 1000 io_uring_enter batches in one injection: {took:?}");
    // A call that fails stops the loop with its result, the batches
    // before it counted.
    let failing = EnterLoop {
        ring_fd: 1000,
        batches: 5,
        ..enter_loop
    };
    let done = process
        .run_enter_loop(tid, &failing)
        .expect("the failing loop");
    assert_eq!(
        done,
        EnterLoopDone {
            batches: 0,
            last_result: -i64::from(libc::EBADF)
        }
    );
    assert_eq!(
        read_word(&process, sq_tail),
        4004,
        "the tail moved for the batch that failed"
    );
    // No batch at all: only the stop.
    let none = process
        .run_enter_loop(
            tid,
            &EnterLoop {
                batches: 0,
                ..enter_loop
            },
        )
        .expect("an empty loop");
    assert_eq!(
        none,
        EnterLoopDone {
            batches: 0,
            last_result: 0
        }
    );
    // The thread still runs injected syscalls as before.
    assert_eq!(
        process
            .syscall(tid, libc::SYS_gettid as u64, [0; 6])
            .expect("gettid"),
        i64::from(tid)
    );
    for (nr, args) in [
        (libc::SYS_munmap, [rings, length, 0, 0, 0, 0]),
        (libc::SYS_close, [ring as u64, 0, 0, 0, 0, 0]),
    ] {
        assert_eq!(process.syscall(tid, nr as u64, args).expect("clean up"), 0);
    }
    process.detach(true).expect("detach");
    assert_eq!(snapshot(pid), before, "maps and fds after the detach");
    assert_eq!(
        signal_state(pid, target.main),
        signals_before,
        "no SIGTRAP left pending, no disposition or mask changed"
    );
    target.write_stdin("hello\n");
    let events = target.events_until_end();
    assert_eq!(events["read"]["data"].as_str(), Some("hello"), "{events:?}");
    assert_eq!(events["slept"]["result"].as_i64(), Some(0), "{events:?}");
}

#[test]
fn a_process_stopped_when_attached_is_left_stopped_and_one_can_be_left_stopped() {
    let mut stopped = Target::start("plain", 1000);
    stopped.wait_blocked();
    stopped.signal(rustix::process::Signal::STOP);
    stopped.wait_state(b'T');
    let mut process = RemoteProcess::attach(stopped.pid, &[]).expect("attach");
    assert!(process.was_stopped());
    assert_eq!(
        process
            .syscall(stopped.sleeper, libc::SYS_getpid as u64, [0; 6])
            .expect("getpid"),
        i64::from(stopped.pid)
    );
    process.detach(true).expect("detach");
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(stopped.state(), b'T', "a stopped process stays stopped");
    stopped.signal(rustix::process::Signal::CONT);
    stopped.write_stdin("go\n");
    let events = stopped.events_until_end();
    assert_eq!(events["read"]["data"].as_str(), Some("go"));
    assert_eq!(events["slept"]["result"].as_i64(), Some(0));

    let mut running = Target::start("plain", 1000);
    running.wait_blocked();
    let before = snapshot(running.pid);
    let mut process = RemoteProcess::attach(running.pid, &[running.main]).expect("attach");
    assert!(!process.was_stopped());
    assert_eq!(
        process
            .syscall(running.main, libc::SYS_gettid as u64, [0; 6])
            .expect("gettid"),
        i64::from(running.main)
    );
    process.detach(false).expect("detach, leaving it stopped");
    running.wait_state(b'T');
    assert_eq!(snapshot(running.pid), before);
    running.signal(rustix::process::Signal::CONT);
    running.write_stdin("on\n");
    let events = running.events_until_end();
    assert_eq!(events["read"]["data"].as_str(), Some("on"));
    assert_eq!(events["slept"]["result"].as_i64(), Some(0));
}

/// Dropping a hold without detaching (what an error path does) puts the
/// process back as found.
#[test]
fn dropping_a_hold_puts_the_process_back() {
    let mut target = Target::start("plain", 1000);
    target.wait_blocked();
    let before = snapshot(target.pid);
    {
        let mut process = RemoteProcess::attach(target.pid, &[target.busy]).expect("attach");
        let fd = process
            .syscall(target.busy, libc::SYS_dup as u64, [0, 0, 0, 0, 0, 0])
            .expect("dup");
        assert!(fd > 2);
        process
            .syscall(
                target.busy,
                libc::SYS_close as u64,
                [fd as u64, 0, 0, 0, 0, 0],
            )
            .expect("close");
    }
    assert_eq!(snapshot(target.pid), before);
    assert_eq!(tracer_of_every_thread(target.pid), vec![0; 3]);
    target.write_stdin("back\n");
    let events = target.events_until_end();
    assert_eq!(events["read"]["data"].as_str(), Some("back"));
}

/// A failure inside the target (here the scratch pages' `mmap`, refused
/// by an address-space limit at the target's current size) puts back the
/// bytes borrowed at a thread's instruction pointer, its registers and
/// masks, and detaches: the process carries on as if never touched.
#[test]
fn a_failed_attach_leaves_the_process_as_found() {
    let mut target = Target::start("plain", 1000);
    target.wait_blocked();
    let pid = rustix::process::Pid::from_raw(target.pid as i32).expect("a pid");
    let size = std::fs::read_to_string(format!("/proc/{}/status", target.pid))
        .expect("status")
        .lines()
        .find_map(|line| line.strip_prefix("VmSize:"))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches(" kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .expect("VmSize");
    let limit = rustix::process::Rlimit {
        current: Some(size * 1024),
        maximum: None,
    };
    rustix::process::prlimit(Some(pid), rustix::process::Resource::As, limit).expect("prlimit");
    let before = snapshot(target.pid);
    let error = RemoteProcess::attach(target.pid, &[target.main])
        .expect_err("no room for the scratch pages");
    match &error {
        RemoteError::Scratch { tid, errno, .. } => {
            assert_eq!(
                (*tid, *errno),
                (target.main, rustix::io::Errno::NOMEM),
                "{error}"
            )
        }
        other => panic!("expected a scratch failure, got {other:?}"),
    }
    assert_eq!(snapshot(target.pid), before);
    assert_eq!(tracer_of_every_thread(target.pid), vec![0; 3]);
    // The main thread's next instructions were borrowed: it runs them.
    target.write_stdin("intact\n");
    let events = target.events_until_end();
    assert_eq!(events["read"]["data"].as_str(), Some("intact"));
    assert_eq!(events["slept"]["result"].as_i64(), Some(0));
    assert_eq!(events["end"]["handler_ran"].as_i64(), Some(0));
}

#[test]
fn seccomp_is_refused_before_anything_is_injected() {
    for (mode, seccomp) in [("filter", 2), ("strict", 1)] {
        let target = Target::start(mode, 5000);
        if mode == "strict" {
            // The main thread enters strict mode right before its read.
            target.wait_in_syscall(target.main, libc::SYS_read);
        }
        let error = RemoteProcess::attach(target.pid, &[]).expect_err("seccomp refused");
        match &error {
            RemoteError::Seccomp { pid, mode, tid } => {
                assert_eq!((*pid, *mode), (target.pid, seccomp));
                if seccomp == 1 {
                    assert_eq!(*tid, target.main);
                }
            }
            other => panic!("{mode}: expected a seccomp refusal, got {other:?}"),
        }
        assert!(
            error.to_string().contains("refused before attaching"),
            "{error}"
        );
        assert_eq!(tracer_of_every_thread(target.pid), vec![0; 3]);
        assert_ne!(target.state(), b't');
    }
}

#[test]
fn refusals_name_the_process_and_the_reason() {
    assert!(matches!(
        RemoteProcess::attach(u32::MAX >> 2, &[]),
        Err(RemoteError::NoSuchProcess { .. })
    ));
    let target = Target::start("plain", 5000);
    target.wait_blocked();
    let error = RemoteProcess::attach(target.pid, &[1]).expect_err("thread 1 is not the target's");
    assert!(
        matches!(error, RemoteError::NoSuchThread { tid: 1, .. }),
        "{error:?}"
    );
    // One holder at a time: a second attach finds the first tracer.
    let first = RemoteProcess::attach(target.pid, &[]).expect("attach");
    let error = RemoteProcess::attach(target.pid, &[]).expect_err("already traced");
    assert!(
        matches!(&error, RemoteError::PtraceDenied { denial: ringplan_exec::remote::PtraceDenial::AlreadyTraced { tracer }, .. } if *tracer == rustix::thread::gettid().as_raw_nonzero().get() as u32),
        "{error:?}"
    );
    first.detach(true).expect("detach");
}

/// io threads (an SQPOLL ring's SQ thread) are not held and cannot be
/// asked for; the rest of the process is.
#[test]
fn io_threads_are_left_alone() {
    let mut target = Target::start("plain", 1000);
    target.wait_blocked();
    let before = snapshot(target.pid);
    let mut process = RemoteProcess::attach(target.pid, &[]).expect("attach");
    let mut params = [0u8; 120];
    // io_uring_params.flags (offset 8): IORING_SETUP_SQPOLL.
    params[8..12].copy_from_slice(
        &ringplan_kernel::abi::SetupFlags::SQPOLL
            .bits()
            .to_ne_bytes(),
    );
    let params = process.write_scratch(&params).expect("params");
    let ring = process
        .syscall(
            target.main,
            libc::SYS_io_uring_setup as u64,
            [4, params, 0, 0, 0, 0],
        )
        .expect("io_uring_setup");
    assert!(ring >= 0, "io_uring_setup(SQPOLL): {ring}");
    process.detach(true).expect("detach");

    let pid = target.pid;
    let deadline = Instant::now() + Duration::from_secs(5);
    let sq_thread = loop {
        let tids = ringplan_kernel::procfs::task::ids(Process::Pid(pid)).expect("threads");
        if let Some(tid) = tids.into_iter().find(|tid| !target.tids().contains(tid)) {
            break tid;
        }
        assert!(Instant::now() < deadline, "no SQ thread appeared");
        std::thread::sleep(Duration::from_millis(5));
    };
    let error = RemoteProcess::attach(pid, &[sq_thread]).expect_err("an io thread cannot be held");
    assert!(
        matches!(error, RemoteError::IoThread { tid, .. } if tid == sq_thread),
        "{error:?}"
    );
    let mut process = RemoteProcess::attach(pid, &[]).expect("attach beside an SQ thread");
    assert!(!process.threads().contains(&sq_thread));
    assert_eq!(process.threads().len(), 3);
    let closed = process
        .syscall(
            target.main,
            libc::SYS_close as u64,
            [ring as u64, 0, 0, 0, 0, 0],
        )
        .expect("close");
    assert_eq!(closed, 0);
    process.detach(true).expect("detach");
    assert_eq!(snapshot(pid).1, before.1, "fds");
    target.write_stdin("io\n");
    assert_eq!(
        target.events_until_end()["read"]["data"].as_str(),
        Some("io")
    );
}

const NOBODY_CHILD_ENV: &str = "RINGPLAN_REMOTE_TEST_TARGET";

/// An unprivileged user may not hold a root process: the child, a copy of
/// this test binary run as `nobody`, tries and prints the refusal.
#[test]
fn an_unprivileged_user_cannot_hold_a_root_process() {
    if let Ok(pid) = std::env::var(NOBODY_CHILD_ENV) {
        let pid: u32 = pid.parse().expect("a pid");
        match RemoteProcess::attach(pid, &[]) {
            Ok(process) => {
                let _ = process.detach(true);
                println!("refusal: none");
            }
            Err(error) => println!("refusal: {error}"),
        }
        return;
    }
    assert!(
        rustix::process::getuid().is_root(),
        "this test drops from root to nobody: run as root"
    );
    let target = Target::start("plain", 10000);
    target.wait_blocked();
    let dir = std::env::temp_dir().join(format!("ringplan-remote-nobody-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let copy = dir.join("remote");
    // `install` writes the copy, so that no fd of ours open for writing
    // leaks into a concurrently forked child (ETXTBSY at exec).
    let status = Command::new("install")
        .args(["-m", "0755"])
        .arg(std::env::current_exe().expect("this binary"))
        .arg(&copy)
        .status()
        .expect("install");
    assert!(status.success());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let output = Command::new("setpriv")
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "--inh-caps=-all",
            "--",
        ])
        .arg(&copy)
        .args([
            "--exact",
            "an_unprivileged_user_cannot_hold_a_root_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(NOBODY_CHILD_ENV, target.pid.to_string())
        .current_dir("/")
        .output()
        .expect("setpriv (util-linux)");
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|line| line.find("refusal: ").map(|start| &line[start..]))
        .unwrap_or_else(|| {
            panic!(
                "no refusal line: {stdout}{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    assert_eq!(
        line,
        format!(
            "refusal: cannot ptrace thread {} of process {} (Operation not permitted (os error 1)): it belongs to uid 0, we are uid 65534 without CAP_SYS_PTRACE",
            target.pid, target.pid
        )
    );
    // Its threads are all there (the sleeper sleeps 10 s) and untraced.
    assert_eq!(tracer_of_every_thread(target.pid), vec![0; 3]);
}
