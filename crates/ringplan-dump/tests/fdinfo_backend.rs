//! The fdinfo backend against live processes holding known io_uring states.
//!
//! Each test runs a `ringplan-scenarios` scenario in a child process and
//! compares what [`fdinfo::read`] returns with the scenario's description,
//! field by field, and with facts read independently (`/proc/PID/task` for
//! the SQ thread, `stat` for inodes).
//!
//! The child is this test binary itself, run again as
//! `<test binary> <test name> --exact --nocapture` with
//! `RINGPLAN_FDINFO_TEST_CHILD` set: the helper each test calls first sees
//! the variable and plays the child (builds and holds the scenario until
//! SIGTERM, or reads a pid unprivileged) instead of returning, so the child
//! never reaches the test's assertions. Plain `cargo test` (or nextest)
//! builds and runs it; nothing else needs building first.

use std::collections::{BTreeSet, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ringplan_dump::fdinfo::{self, FdinfoError};
use ringplan_dump::raw::{
    FileKey, Known, RawEventfd, RawFdEntry, RawFile, RawFileRole, RawRing, RawState, RingKey,
};
use ringplan_image::Buffer;
use ringplan_kernel::procfs::{stat, task, Process};
use serde_json::Value;

/// Tells a re-run test binary which child to play: `hold:SCENARIO` or
/// `read:PID`.
const CHILD_ROLE_VARIABLE: &str = "RINGPLAN_FDINFO_TEST_CHILD";
/// Marks the child's one line of answer among the test harness's output.
const ANSWER_MARKER: &str = "ringplan-fdinfo-test-answer: ";

use ringplan_kernel::abi::linux::{EFD_SEMAPHORE, O_NONBLOCK};

const O_ACCMODE: u32 = 0o3;
const O_RDWR: u32 = 0o2;
const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;

/// In a child, plays the role its environment names and exits; in a test,
/// returns at once.
fn play_child_role_if_asked() {
    let Ok(role) = std::env::var(CHILD_ROLE_VARIABLE) else {
        return;
    };
    let mut stdout = std::io::stdout().lock();
    let exit_code = match role.split_once(':') {
        Some(("hold", scenario)) => {
            // Should the test die without stopping us, stop with it.
            let _ = rustix::process::set_parent_process_death_signal(Some(
                rustix::process::Signal::TERM,
            ));
            match hold_scenario(scenario, &mut stdout) {
                Ok(()) => 0,
                Err(error) => {
                    let _ = writeln!(stdout, "{ANSWER_MARKER}child error: {error}");
                    1
                }
            }
        }
        Some(("read", pid)) => {
            let answer = match pid.parse::<u32>() {
                Ok(pid) => match fdinfo::read(pid) {
                    Ok(state) => format!("read {} fds", state.fds.len()),
                    Err(error) => error.to_string(),
                },
                Err(_) => format!("bad pid {pid:?}"),
            };
            let _ = writeln!(stdout, "{ANSWER_MARKER}{answer}");
            0
        }
        _ => {
            let _ = writeln!(stdout, "{ANSWER_MARKER}unknown child role {role:?}");
            1
        }
    };
    let _ = stdout.flush();
    std::process::exit(exit_code);
}

/// `plan app` in the child: the description goes out on the answer line.
fn hold_scenario(
    scenario: &str,
    stdout: &mut impl Write,
) -> Result<(), ringplan_scenarios::ScenarioError> {
    let scenario: ringplan_scenarios::Scenario = scenario.parse()?;
    let mut stop_signals = ringplan_scenarios::StopSignals::watch()?;
    let built = ringplan_scenarios::build(&scenario)?;
    writeln!(stdout, "{ANSWER_MARKER}{}", built.description())
        .and_then(|()| stdout.flush())
        .map_err(ringplan_scenarios::ScenarioError::WriteDescription)?;
    stop_signals.wait();
    drop(built);
    Ok(())
}

/// Runs this test binary again as a child playing `role` in test `test_name`
/// and returns it with the text after the marker on its answer line.
fn start_child(test_name: &str, role: &str, binary: &Path, uid: Option<u32>) -> (Child, String) {
    let mut command = Command::new(binary);
    command
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ROLE_VARIABLE, role)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(uid) = uid {
        std::os::unix::process::CommandExt::uid(&mut command, uid);
        std::os::unix::process::CommandExt::gid(&mut command, uid);
    }
    let mut child = command
        .spawn()
        .unwrap_or_else(|error| panic!("starting {}: {error}", binary.display()));
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let answer = loop {
        match lines.next() {
            Some(Ok(line)) => {
                // libtest may have started the line with `test NAME ... `.
                if let Some((_, answer)) = line.split_once(ANSWER_MARKER) {
                    break answer.to_owned();
                }
            }
            Some(Err(error)) => panic!("reading the child's output: {error}"),
            None => panic!("the child for {test_name} ({role}) ended without answering"),
        }
    };
    (child, answer)
}

/// A child process holding a scenario; stopped with SIGTERM (so it removes
/// its temp files) when dropped.
struct ScenarioChild {
    child: Child,
    description: Value,
}

impl ScenarioChild {
    /// Call first thing in a test: in the child, this never returns.
    fn start(test_name: &str, scenario: &str) -> ScenarioChild {
        play_child_role_if_asked();
        let binary = std::env::current_exe().expect("the test binary's path");
        let (child, answer) = start_child(test_name, &format!("hold:{scenario}"), &binary, None);
        let description: Value = serde_json::from_str(&answer)
            .unwrap_or_else(|error| panic!("the child printed {answer:?}: {error}"));
        ScenarioChild { child, description }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn read(&self) -> RawState {
        fdinfo::read(self.pid())
            .unwrap_or_else(|error| panic!("reading pid {}: {error}", self.pid()))
    }

    /// The pid of the child's SQ thread, which names itself `iou-sqp-PID`
    /// once it first runs (until then it carries its creator's name, so
    /// this waits a little for it); `None` when there is none.
    fn sq_thread(&self) -> Option<u64> {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let child = Process::Pid(self.pid());
            let sq_threads: Vec<u64> = task::ids(child)
                .expect("listing the child's threads")
                .into_iter()
                .filter(|tid| task::is_running_sq_thread(child, *tid))
                .map(u64::from)
                .collect();
            assert!(
                sq_threads.len() <= 1,
                "at most one SQ thread expected: {sq_threads:?}"
            );
            if !sq_threads.is_empty() || Instant::now() > deadline {
                return sq_threads.first().copied();
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The inode of the child's fd, by `stat` through `/proc`.
    fn inode_of(&self, fd: i64) -> u64 {
        let path = format!("/proc/{}/fd/{fd}", self.pid());
        std::os::unix::fs::MetadataExt::ino(
            &std::fs::metadata(&path).expect("stat of the child's fd"),
        )
    }

    /// The child's fd numbers, listed after a read to check the read saw all.
    fn fd_numbers(&self) -> BTreeSet<i32> {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("listing the child's fds")
            .map(|entry| {
                entry
                    .expect("an fd entry")
                    .file_name()
                    .to_str()
                    .expect("utf-8")
                    .parse()
                    .expect("fd number")
            })
            .collect()
    }
}

impl Drop for ScenarioChild {
    fn drop(&mut self) {
        let pid = i32::try_from(self.child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw);
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// On a kernel whose fdinfo format the backend cannot read (Linux 6.1, see
/// `ringplan_dump::fdinfo_format`), checks that the read is refused with
/// the probe's reason, prints it, and returns true: the test has nothing
/// else to check there.
fn refused_on_this_kernel(child: &ScenarioChild) -> bool {
    refused_reading(child.pid())
}

/// `refused_on_this_kernel` for any process.
fn refused_reading(pid: u32) -> bool {
    let Err(reason) = ringplan_dump::fdinfo_format::check() else {
        return false;
    };
    match fdinfo::read(pid) {
        Err(FdinfoError::KernelFormat(error)) => assert_eq!(error.to_string(), reason.to_string()),
        other => panic!("the fdinfo backend should refuse this kernel ({reason}), got {other:?}"),
    }
    eprintln!("fdinfo backend refused on this kernel, as it must be: {reason}");
    true
}

fn fd_entry(state: &RawState, fd: i64) -> RawFdEntry {
    *state
        .fds
        .iter()
        .find(|entry| i64::from(entry.fd) == fd)
        .unwrap_or_else(|| panic!("fd {fd} was not read"))
}

fn file_of(state: &RawState, fd: i64) -> &RawFile {
    &state.files[&fd_entry(state, fd).file]
}

fn ring_key_at(state: &RawState, fd: i64) -> RingKey {
    match file_of(state, fd).role {
        RawFileRole::Ring(key) => key,
        role => panic!("fd {fd} is {role:?}, not a ring"),
    }
}

fn ring_at(state: &RawState, fd: i64) -> &RawRing {
    &state.rings[&ring_key_at(state, fd)]
}

fn number(value: &Value) -> i64 {
    value
        .as_i64()
        .unwrap_or_else(|| panic!("{value} is not a number"))
}

/// A ring's file as this backend must see it: `anon_inode:[io_uring]`,
/// read-write, position 0, mode not read.
fn ring_file(key: RingKey) -> RawFile {
    RawFile {
        role: RawFileRole::Ring(key),
        path: Some("anon_inode:[io_uring]".to_owned()),
        flags: Some(O_RDWR),
        pos: Some(0),
        mode: None,
    }
}

/// A registered slot's file: only a path; which open file it is stays
/// unknown, so it is never one of the process's fd files.
fn assert_registered_file(state: &RawState, key: FileKey, path: &str) {
    assert_eq!(
        state.files[&key],
        RawFile {
            role: RawFileRole::Plain,
            path: Some(path.to_owned()),
            flags: None,
            pos: None,
            mode: None
        }
    );
    assert!(
        state.fds.iter().all(|entry| entry.file != key),
        "slot file {key} must not be claimed as an fd's file"
    );
}

/// The ring fields this backend cannot know.
fn assert_unknowns(ring: &RawRing) {
    assert_eq!(
        (ring.flags, ring.sq_thread_idle_ms, ring.idle_known),
        (None, None, false)
    );
    assert_eq!(ring.eventfd, Known::Unknown);
}

fn assert_every_fd_read(child: &ScenarioChild, state: &RawState) {
    let read: Vec<i32> = state.fds.iter().map(|entry| entry.fd).collect();
    let mut sorted = read.clone();
    sorted.sort_unstable();
    assert_eq!(read, sorted, "fds in ascending order");
    assert_eq!(
        read.into_iter().collect::<BTreeSet<_>>(),
        child.fd_numbers()
    );
    for entry in &state.fds {
        assert!(
            state.files.contains_key(&entry.file),
            "fd {} has its file",
            entry.fd
        );
    }
}

#[test]
fn seed_reads_back_field_by_field() {
    let child = ScenarioChild::start("seed_reads_back_field_by_field", "seed");
    if refused_on_this_kernel(&child) {
        return;
    }
    let state = child.read();
    let description = &child.description;
    assert_every_fd_read(&child, &state);
    let parent_fd = number(&description["rings"][0]["fd"]);
    let attached_fd = number(&description["rings"][1]["fd"]);
    let eventfd_fd = number(&description["eventfds"][0]["fd"]);
    assert_eq!(state.rings.len(), 2);
    assert_eq!(state.eventfds.len(), 1);

    let sq_thread = child.sq_thread();
    assert!(sq_thread.is_some(), "the seed has an SQ thread");
    for ring_fd in [parent_fd, attached_fd] {
        let key = ring_key_at(&state, ring_fd);
        assert_eq!(key, child.inode_of(ring_fd), "ring identity is the inode");
        assert!(
            fd_entry(&state, ring_fd).cloexec,
            "io_uring fds are created close-on-exec"
        );
        assert_eq!(file_of(&state, ring_fd), &ring_file(key));
    }
    assert_eq!(
        ring_at(&state, parent_fd),
        &RawRing {
            inode: Some(child.inode_of(parent_fd)),
            flags: None,
            sq_entries: 2,
            cq_entries: 4,
            sq_thread,
            sq_thread_cpu: Some(0),
            sq_thread_idle_ms: None,
            idle_known: false,
            eventfd: Known::Unknown,
            files: vec![],
            buffers: vec![],
            state: None,
            personalities: Known::Unknown,
            restrictions: Known::Unknown,
            buffer_groups: Known::Unknown,
            settings: Known::Unknown,
            registered_ring_fds: Known::Unknown,
            wait_region: None,
        }
    );

    let attached = ring_at(&state, attached_fd);
    assert_eq!(
        (attached.inode, attached.sq_entries, attached.cq_entries),
        (Some(child.inode_of(attached_fd)), 2, 4)
    );
    assert_eq!(
        (attached.sq_thread, attached.sq_thread_cpu),
        (sq_thread, Some(0))
    );
    assert_unknowns(attached);
    let slots = &description["rings"][1]["files"];
    assert_eq!(attached.files.len(), 5);
    for (slot, key) in attached.files.iter().enumerate() {
        match (slot % 2, key) {
            (0, Some(key)) => {
                assert_registered_file(&state, *key, slots[slot]["path"].as_str().expect("path"))
            }
            (1, None) => {}
            other => panic!("slot {slot}: {other:?}"),
        }
    }
    let buffer = &description["rings"][1]["buffers"][1];
    let buffer = Buffer {
        addr: buffer["addr"].as_u64().expect("addr"),
        len: 120,
    };
    assert_eq!(attached.buffers, [None, Some(buffer)]);

    // eventfd(42, 0): not close-on-exec, blocking, no semaphore.
    let eventfd_entry = fd_entry(&state, eventfd_fd);
    assert!(!eventfd_entry.cloexec);
    let eventfd_file = &state.files[&eventfd_entry.file];
    let RawFileRole::Eventfd(eventfd_key) = eventfd_file.role else {
        panic!("{eventfd_file:?} is not an eventfd")
    };
    assert_eq!(
        eventfd_file,
        &RawFile {
            role: RawFileRole::Eventfd(eventfd_key),
            path: Some("anon_inode:[eventfd]".to_owned()),
            flags: Some(O_RDWR),
            pos: Some(0),
            mode: None,
        }
    );
    assert_eq!(
        state.eventfds[&eventfd_key],
        RawEventfd {
            count: 42,
            flags: 0
        }
    );

    // stdin is /dev/null (see `start_child`): a plain file with its mode.
    let stdin = file_of(&state, 0);
    assert_eq!(
        (stdin.role, stdin.path.as_deref(), stdin.pos),
        (RawFileRole::Plain, Some("/dev/null"), Some(0))
    );
    assert_eq!(stdin.mode.map(|mode| mode & S_IFMT), Some(S_IFCHR));
    assert_eq!(
        stdin.flags.map(|flags| flags & O_ACCMODE),
        Some(0),
        "read-only"
    );
}

#[test]
fn closed_objects_survive_only_in_the_ring() {
    let child = ScenarioChild::start("closed_objects_survive_only_in_the_ring", "closed");
    if refused_on_this_kernel(&child) {
        return;
    }
    let state = child.read();
    let description = &child.description;
    assert_every_fd_read(&child, &state);
    let ring_fd = number(&description["rings"][0]["fd"]);
    let ring_key = ring_key_at(&state, ring_fd);
    assert_eq!(state.rings.len(), 1);
    let ring = &state.rings[&ring_key];
    assert_eq!(
        (ring.inode, ring.sq_entries, ring.cq_entries),
        (Some(child.inode_of(ring_fd)), 8, 16)
    );
    assert_eq!(
        (ring.sq_thread, ring.sq_thread_cpu),
        (None, None),
        "no SQPOLL"
    );
    assert_unknowns(ring);
    assert_eq!(ring.buffers, []);

    // The closed eventfd is registered but has no fd: fdinfo cannot see it.
    assert!(state.eventfds.is_empty());
    let read_fds: HashSet<i64> = state.fds.iter().map(|entry| i64::from(entry.fd)).collect();
    for closed in description["closed_fds"].as_array().expect("closed fds") {
        assert!(
            !read_fds.contains(&number(closed)),
            "closed fd {closed} was read"
        );
    }

    let files = description["files"].as_array().expect("files");
    let path = |index: usize| files[index]["path"].as_str().expect("path");
    let slot_paths = [
        Some(path(0)),
        Some(path(1)),
        None,
        Some(path(2)),
        Some(path(3)),
    ];
    assert_eq!(ring.files.len(), slot_paths.len());
    for (slot, (key, expected_path)) in ring.files.iter().zip(slot_paths).enumerate() {
        match (key, expected_path) {
            (Some(key), Some(expected_path)) => assert_registered_file(&state, *key, expected_path),
            (None, None) => {}
            other => panic!("slot {slot}: {other:?}"),
        }
    }
    // The files still open are fds of their own, with what fdinfo shows.
    for index in [1, 3] {
        let entry = fd_entry(&state, number(&files[index]["fd"]));
        assert!(entry.cloexec);
        let file = &state.files[&entry.file];
        assert_eq!(
            (file.role, file.path.as_deref(), file.pos),
            (RawFileRole::Plain, Some(path(index)), Some(0))
        );
        assert_eq!(file.flags.map(|flags| flags & O_ACCMODE), Some(O_RDWR));
        assert_eq!(file.mode.map(|mode| mode & S_IFMT), Some(S_IFREG));
    }
}

#[test]
fn a_thousand_registered_files_each_get_a_slot_file() {
    let child = ScenarioChild::start(
        "a_thousand_registered_files_each_get_a_slot_file",
        "files:1000",
    );
    if refused_on_this_kernel(&child) {
        return;
    }
    let state = child.read();
    let description = &child.description;
    assert_every_fd_read(&child, &state);
    let ring = ring_at(&state, number(&description["rings"][0]["fd"]));
    assert_eq!(
        (ring.sq_entries, ring.cq_entries, ring.sq_thread),
        (8, 16, None)
    );
    assert_unknowns(ring);
    let files = description["files"].as_array().expect("files");
    assert_eq!((ring.files.len(), files.len()), (1000, 1000));
    let mut slot_keys = HashSet::new();
    for (slot, (key, file)) in ring.files.iter().zip(files).enumerate() {
        let key = key.unwrap_or_else(|| panic!("slot {slot} is empty"));
        let path = file["path"].as_str().expect("path");
        assert!(path.ends_with(&format!("/file-{slot:05}")), "{path}");
        assert_registered_file(&state, key, path);
        assert!(slot_keys.insert(key), "slot {slot} shares a file key");

        let entry = fd_entry(&state, number(&file["fd"]));
        assert!(entry.cloexec);
        let fd_file = &state.files[&entry.file];
        assert_eq!(
            (fd_file.role, fd_file.path.as_deref(), fd_file.pos),
            (RawFileRole::Plain, Some(path), Some(0))
        );
        assert_eq!(fd_file.mode.map(|mode| mode & S_IFMT), Some(S_IFREG));
    }
}

#[test]
fn mix_merges_a_dup_and_shares_one_sq_thread() {
    let child = ScenarioChild::start("mix_merges_a_dup_and_shares_one_sq_thread", "mix");
    if refused_on_this_kernel(&child) {
        return;
    }
    let state = child.read();
    let rings = &child.description["rings"];
    assert_every_fd_read(&child, &state);
    let (fd_a, fd_b, fd_c) = (
        number(&rings[0]["fd"]),
        number(&rings[1]["fd"]),
        number(&rings[2]["fd"]),
    );
    let dup_fd = number(&rings[0]["dup_fds"][0]);
    assert_eq!(state.rings.len(), 3);

    // The dup is the same ring and the same file, at a non-close-on-exec fd.
    assert_eq!(fd_entry(&state, dup_fd).file, fd_entry(&state, fd_a).file);
    assert!(!fd_entry(&state, dup_fd).cloexec && fd_entry(&state, fd_a).cloexec);

    let sq_thread = child.sq_thread();
    assert!(sq_thread.is_some());
    assert_eq!(ring_at(&state, fd_a).sq_thread, sq_thread);
    assert_eq!(ring_at(&state, fd_b).sq_thread, sq_thread);
    assert_eq!(ring_at(&state, fd_c).sq_thread, None);
    assert_eq!(
        (
            ring_at(&state, fd_c).sq_entries,
            ring_at(&state, fd_c).cq_entries
        ),
        (16, 64)
    );

    let buffers = &rings[1]["buffers"];
    let buffer = |slot: usize| Buffer {
        addr: buffers[slot]["addr"].as_u64().expect("addr"),
        len: buffers[slot]["len"].as_u64().expect("len"),
    };
    assert_eq!(
        ring_at(&state, fd_b).buffers,
        [Some(buffer(0)), None, Some(buffer(2))]
    );

    // One file at two slots: fdinfo cannot prove it is one, so two keys.
    let slots = &ring_at(&state, fd_c).files;
    let data_path = child.description["files"][0]["path"]
        .as_str()
        .expect("path");
    match slots.as_slice() {
        [Some(first), None, Some(null), Some(second), None, None] => {
            assert_registered_file(&state, *first, data_path);
            assert_registered_file(&state, *second, data_path);
            assert_registered_file(&state, *null, "/dev/null");
            assert_ne!(first, second);
        }
        other => panic!("slots {other:?}"),
    }
    let data = file_of(&state, number(&child.description["files"][0]["fd"]));
    assert_eq!(data.pos, Some(5));

    let eventfd_fd = number(&child.description["eventfds"][0]["fd"]);
    let RawFileRole::Eventfd(eventfd_key) = file_of(&state, eventfd_fd).role else {
        panic!("not an eventfd")
    };
    assert_eq!(
        state.eventfds[&eventfd_key],
        RawEventfd {
            count: 7,
            flags: EFD_SEMAPHORE | O_NONBLOCK
        }
    );
}

#[test]
fn rings_left_by_a_closed_creator_still_share_its_sq_thread() {
    let child = ScenarioChild::start(
        "rings_left_by_a_closed_creator_still_share_its_sq_thread",
        "creator-closed:2",
    );
    if refused_on_this_kernel(&child) {
        return;
    }
    let state = child.read();
    assert_eq!(state.rings.len(), 2, "the creator ring is gone");
    let sq_thread = child.sq_thread();
    assert!(sq_thread.is_some());
    for ring in state.rings.values() {
        assert_eq!(ring.sq_thread, sq_thread);
    }
}

#[test]
fn a_missing_process_is_named() {
    play_child_role_if_asked();
    // Above the largest pid_max Linux allows (2^22).
    let missing_pid = (1 << 22) + 1;
    match fdinfo::read(missing_pid) {
        Err(error @ FdinfoError::NoSuchProcess { .. }) => {
            assert_eq!(
                error.to_string(),
                format!("process {missing_pid} does not exist")
            );
        }
        other => panic!("expected NoSuchProcess, got {other:?}"),
    }
}

/// A zombie still has its `/proc/PID` but no fds: reading it must not pass
/// for a process without rings.
#[test]
fn an_exited_process_is_not_read_as_one_without_fds() {
    play_child_role_if_asked();
    let mut exited = Command::new("true")
        .stdin(Stdio::null())
        .spawn()
        .expect("starting true");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !stat::read(Process::Pid(exited.id())).is_ok_and(|stat| stat.state == b'Z') {
        assert!(Instant::now() < deadline, "true did not exit");
        std::thread::sleep(Duration::from_millis(2));
    }
    // The kernel's format is checked first: on 6.1 that refusal is all.
    if refused_reading(exited.id()) {
        let _ = exited.wait();
        return;
    }
    let outcome = fdinfo::read(exited.id());
    let _ = exited.wait();
    match outcome {
        Err(FdinfoError::ExitedWhileRead { pid }) => assert_eq!(pid, exited.id()),
        other => panic!("expected ExitedWhileRead, got {other:?}"),
    }
}

/// An unprivileged reader is refused another user's process. The child runs
/// as `nobody` from a copy of this binary in a fresh temp dir, so that the
/// build directory's permissions do not matter.
#[test]
fn an_unprivileged_reader_is_told_access_is_denied() {
    const NOBODY: u32 = 65534;
    play_child_role_if_asked();
    let binary = std::env::current_exe().expect("the test binary's path");
    let copy_dir = TempCopyDir::new();
    let copy = copy_dir.0.join("fdinfo_backend");
    std::fs::copy(&binary, &copy).expect("copying the test binary");
    std::fs::set_permissions(
        &copy_dir.0,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let (mut child, answer) = start_child(
        "an_unprivileged_reader_is_told_access_is_denied",
        "read:1",
        &copy,
        Some(NOBODY),
    );
    let _ = child.wait();
    assert_eq!(
        answer,
        "permission denied reading /proc/1/fd: reading another process's fds needs the rights ptrace needs"
    );
}

/// A temp dir removed on drop.
struct TempCopyDir(PathBuf);

impl TempCopyDir {
    fn new() -> TempCopyDir {
        let path =
            std::env::temp_dir().join(format!("ringplan-fdinfo-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir(&path).expect("creating a temp dir");
        TempCopyDir(path)
    }
}

impl Drop for TempCopyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
