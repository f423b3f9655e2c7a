//! Both backends against a program nobody here wrote the io_uring code of:
//! a C program on liburing (`tests/programs/ring_holder.c`, built here with
//! `cc -luring`) sets up a known io_uring state, and the BPF backend's dump
//! of it is compared field by field; the fdinfo backend's must agree on
//! everything fdinfo shows and mark the rest unknown.
//!
//! Needs: root (or CAP_BPF + CAP_PERFMON + ptrace rights), a kernel with BTF
//! and io_uring, a C compiler and liburing's headers and library. A missing
//! prerequisite fails the test with a message saying which.

use std::io::{BufRead, BufReader};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ringplan_dump::bpf::BpfDumper;
use ringplan_dump::raw::{Known, RawFileRole, RawRingEventfd, RawState};
use ringplan_image::Buffer;
use serde_json::Value;

use ringplan_kernel::abi::linux::{EFD_SEMAPHORE, O_NONBLOCK as EFD_NONBLOCK};
use ringplan_kernel::abi::SetupFlags;
use ringplan_scenarios::c_programs;

const SQPOLL: u32 = SetupFlags::SQPOLL.bits();
const SQ_AFF: u32 = SetupFlags::SQ_AFF.bits();
const CQSIZE: u32 = SetupFlags::CQSIZE.bits();
const ATTACH_WQ: u32 = SetupFlags::ATTACH_WQ.bits();
const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;

/// Whether this kernel's fdinfo prints registered files' paths (6.18), not
/// only their names (6.1).
fn shows_registered_file_paths() -> bool {
    ringplan_dump::fdinfo_format::shows_registered_file_paths()
        .expect("probing the kernel's fdinfo format")
}

/// Builds ring_holder once per test binary.
fn ring_holder_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        c_programs::build("ring_holder", Path::new(env!("CARGO_TARGET_TMPDIR")))
            .unwrap_or_else(|error| panic!("{error}"))
    })
}

/// A running ring_holder and what it printed; killed on drop.
struct Holder {
    child: Child,
    facts: Value,
}

impl Holder {
    fn start(args: &[&str]) -> Holder {
        let mut child = Command::new(ring_holder_binary())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting ring_holder");
        let stdout = child.stdout.take().expect("ring_holder's stdout is piped");
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line);
        // Construct the guard before asserting, so a failure still kills it.
        let mut holder = Holder {
            child,
            facts: Value::Null,
        };
        assert!(
            read.is_ok_and(|n| n > 0),
            "ring_holder printed nothing (see its stderr above)"
        );
        holder.facts = serde_json::from_str(&line)
            .unwrap_or_else(|error| panic!("ring_holder printed {line:?}: {error}"));
        holder
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn int(&self, key: &str) -> i64 {
        self.facts[key]
            .as_i64()
            .unwrap_or_else(|| panic!("ring_holder's {key} is not a number: {}", self.facts))
    }

    fn fd(&self, key: &str) -> i32 {
        i32::try_from(self.int(key)).expect("an fd fits i32")
    }

    fn text(&self, key: &str) -> String {
        self.facts[key]
            .as_str()
            .unwrap_or_else(|| panic!("ring_holder's {key} is not a string"))
            .to_owned()
    }

    fn inode_of_fd(&self, fd: i32) -> u64 {
        std::fs::metadata(format!("/proc/{}/fd/{fd}", self.pid()))
            .expect("stat of the holder's fd")
            .ino()
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        // SIGTERM lets it remove its temp files; SIGKILL if it lingers.
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn load() -> BpfDumper {
    BpfDumper::load().unwrap_or_else(|error| {
        panic!("loading the BPF program (needs root and a BTF kernel): {error}")
    })
}

fn dump(dumper: &mut BpfDumper, holder: &Holder) -> RawState {
    let pid = rustix::process::Pid::from_raw(i32::try_from(holder.pid()).expect("pid fits i32"))
        .expect("pid > 0");
    let pidfd =
        rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).expect("pidfd_open");
    dumper
        .read(holder.pid(), pidfd.as_fd())
        .unwrap_or_else(|error| panic!("reading pid {}: {error}", holder.pid()))
}

/// The file key and ring key behind a target fd.
fn file_of(state: &RawState, fd: i32) -> u64 {
    state
        .fds
        .iter()
        .find(|entry| entry.fd == fd)
        .unwrap_or_else(|| panic!("fd {fd} missing from {:?}", state.fds))
        .file
}

fn ring_of(state: &RawState, fd: i32) -> u64 {
    match state.files[&file_of(state, fd)].role {
        RawFileRole::Ring(ring) => ring,
        other => panic!("fd {fd} is not a ring: {other:?}"),
    }
}

fn eventfd_of(state: &RawState, fd: i32) -> u64 {
    match state.files[&file_of(state, fd)].role {
        RawFileRole::Eventfd(eventfd) => eventfd,
        other => panic!("fd {fd} is not an eventfd: {other:?}"),
    }
}

#[test]
fn reads_the_seed_like_state_field_by_field() {
    let holder = Holder::start(&[]);
    let mut dumper = load();
    let state = dump(&mut dumper, &holder);

    // fds: ascending, unique, each with a file.
    let numbers: Vec<i32> = state.fds.iter().map(|fd| fd.fd).collect();
    assert!(
        numbers.windows(2).all(|pair| pair[0] < pair[1]),
        "fds not ascending: {numbers:?}"
    );
    for fd in &state.fds {
        assert!(
            state.files.contains_key(&fd.file),
            "fd {} has no file entry",
            fd.fd
        );
    }
    let cloexec = |fd: i32| {
        state
            .fds
            .iter()
            .find(|entry| entry.fd == fd)
            .map(|entry| entry.cloexec)
    };
    assert_eq!(
        cloexec(holder.fd("ring_a")),
        Some(true),
        "io_uring fds are O_CLOEXEC"
    );
    assert_eq!(cloexec(holder.fd("tmp_fd")), Some(true));
    assert_eq!(cloexec(holder.fd("devnull")), Some(false));
    assert_eq!(cloexec(holder.fd("devnull_dup")), Some(false));
    assert_eq!(cloexec(holder.fd("eventfd")), Some(false));

    // Two dup'd fds, one file.
    let devnull = file_of(&state, holder.fd("devnull"));
    assert_eq!(devnull, file_of(&state, holder.fd("devnull_dup")));
    let devnull_file = &state.files[&devnull];
    assert_eq!(devnull_file.role, RawFileRole::Plain);
    assert_eq!(devnull_file.path.as_deref(), Some("/dev/null"));
    assert_eq!(devnull_file.mode.map(|mode| mode & S_IFMT), Some(S_IFCHR));
    assert_eq!(devnull_file.flags.map(|flags| flags & 3), Some(2), "O_RDWR");

    let tmp = file_of(&state, holder.fd("tmp_fd"));
    let tmp_file = &state.files[&tmp];
    assert_eq!(
        tmp_file.path.as_deref(),
        Some(holder.text("tmp_path").as_str())
    );
    assert_eq!(tmp_file.pos, Some(17));
    assert_eq!(tmp_file.mode.map(|mode| mode & S_IFMT), Some(S_IFREG));

    // Anonymous files have no path.
    assert_eq!(
        state.files[&file_of(&state, holder.fd("eventfd"))].path,
        None
    );
    assert_eq!(
        state.files[&file_of(&state, holder.fd("ring_a"))].path,
        None
    );

    // Eventfds: count and flags, the registered one and the other.
    let eventfd = eventfd_of(&state, holder.fd("eventfd"));
    assert_eq!(state.eventfds[&eventfd].count, 42);
    assert_eq!(state.eventfds[&eventfd].flags, 0);
    let sem_eventfd = eventfd_of(&state, holder.fd("sem_eventfd"));
    assert_eq!(state.eventfds[&sem_eventfd].count, 7);
    assert_eq!(
        state.eventfds[&sem_eventfd].flags,
        EFD_SEMAPHORE | EFD_NONBLOCK
    );

    // ring_a: SQPOLL parent, sparse file table with slot 3.
    assert_eq!(state.rings.len(), 2);
    let ring_a = &state.rings[&ring_of(&state, holder.fd("ring_a"))];
    assert_eq!(ring_a.flags, Some(SQPOLL | SQ_AFF | CQSIZE));
    assert_eq!((ring_a.sq_entries, ring_a.cq_entries), (2, 4));
    assert!(ring_a.sq_thread.is_some());
    assert_eq!(ring_a.sq_thread_cpu, Some(0));
    assert_eq!(ring_a.sq_thread_idle_ms, Some(1500));
    assert!(ring_a.idle_known);
    assert_eq!(ring_a.eventfd, Known::Known(None));
    let mut expected_a = vec![None; 8];
    expected_a[3] = Some(tmp);
    assert_eq!(ring_a.files, expected_a);
    assert!(ring_a.buffers.is_empty());
    assert_eq!(ring_a.inode, Some(holder.inode_of_fd(holder.fd("ring_a"))));

    // ring_b: attached to ring_a's SQ thread, own idle, eventfd, tables.
    let ring_b = &state.rings[&ring_of(&state, holder.fd("ring_b"))];
    assert_eq!(ring_b.flags, Some(SQPOLL | SQ_AFF | CQSIZE | ATTACH_WQ));
    assert_eq!((ring_b.sq_entries, ring_b.cq_entries), (2, 4));
    assert_eq!(
        ring_b.sq_thread, ring_a.sq_thread,
        "attached rings share sq_data"
    );
    assert_eq!(
        ring_b.sq_thread_idle_ms,
        Some(1000),
        "per-ring idle, not the shared maximum"
    );
    assert_eq!(
        ring_b.eventfd,
        Known::Known(Some(RawRingEventfd {
            eventfd,
            is_async: true
        }))
    );
    assert_eq!(ring_b.inode, Some(holder.inode_of_fd(holder.fd("ring_b"))));
    assert_ne!(
        ring_a.inode, ring_b.inode,
        "each ring has its own anon inode"
    );
    assert_eq!(ring_b.files.len(), 5);
    assert_eq!(ring_b.files[0], Some(devnull));
    assert_eq!(ring_b.files[1], None);
    assert_eq!(ring_b.files[2], Some(tmp));
    assert_eq!(ring_b.files[3], None);
    let closed = ring_b.files[4].expect("slot 4 holds the registered-then-closed file");
    assert!(
        !state.fds.iter().any(|fd| fd.file == closed),
        "no fd holds the closed file"
    );
    let closed_file = &state.files[&closed];
    // Its path comes from the ring's fdinfo, which on 6.1 shows the name
    // only: then it must be unknown, not that name.
    let closed_path = holder.text("closed_path");
    let want = shows_registered_file_paths().then_some(closed_path.as_str());
    assert_eq!(closed_file.path.as_deref(), want, "path from fdinfo");
    assert_eq!(closed_file.mode.map(|mode| mode & S_IFMT), Some(S_IFREG));
    assert_eq!(
        closed_file.flags.map(|flags| flags & 0o2003),
        Some(0o2001),
        "O_WRONLY | O_APPEND"
    );
    let buffer_addr = u64::try_from(holder.int("buffer_addr")).expect("address");
    assert_eq!(
        ring_b.buffers,
        vec![
            None,
            Some(Buffer {
                addr: buffer_addr,
                len: 120
            })
        ]
    );

    // A second read with the same dumper gives the same state.
    let again = dump(&mut dumper, &holder);
    assert_eq!(again.fds, state.fds);
    assert_eq!(again.rings, state.rings);
    assert_eq!(again.files, state.files);
}

fn check_big_table(state: &RawState, holder: &Holder, expect_paths_from: &str) {
    let big = &state.rings[&ring_of(state, holder.fd("big_ring"))];
    assert_eq!(big.files.len(), 19_000);
    let keys: std::collections::HashSet<u64> = big
        .files
        .iter()
        .map(|slot| slot.expect("every slot is occupied"))
        .collect();
    assert_eq!(keys.len(), 19_000, "19,000 distinct files");
    // Paths from fdinfo are names only on 6.1: unknown, not "null".
    let want_path = (expect_paths_from != "fdinfo fallback" || shows_registered_file_paths())
        .then_some("/dev/null");
    for key in &keys {
        let file = &state.files[key];
        assert_eq!(
            file.path.as_deref(),
            want_path,
            "path ({expect_paths_from})"
        );
        assert_eq!(file.mode.map(|mode| mode & S_IFMT), Some(S_IFCHR));
    }
}

#[test]
fn reads_19000_registered_files_held_by_fds() {
    let holder = Holder::start(&["--files", "19000"]);
    let mut dumper = load();
    let started = Instant::now();
    let state = dump(&mut dumper, &holder);
    eprintln!(
        "read() of 19,000 registered files held by fds: {:?}",
        started.elapsed()
    );
    check_big_table(&state, &holder, "pass A d_path");
    assert!(state.fds.len() > 19_000);
}

#[test]
fn reads_19000_registered_files_after_their_fds_closed() {
    let holder = Holder::start(&["--files", "19000", "--close-files"]);
    let mut dumper = load();
    let started = Instant::now();
    let state = dump(&mut dumper, &holder);
    eprintln!(
        "read() of 19,000 registered files, fds closed: {:?}",
        started.elapsed()
    );
    check_big_table(&state, &holder, "fdinfo fallback");
    assert!(state.fds.len() < 100);
}

#[test]
fn reads_250_rings() {
    let holder = Holder::start(&["--rings", "250"]);
    let mut dumper = load();
    let started = Instant::now();
    let state = dump(&mut dumper, &holder);
    eprintln!("read() of 252 rings: {:?}", started.elapsed());
    assert_eq!(state.rings.len(), 252);
    let extra: Vec<i32> = holder.facts["extra_rings"]
        .as_array()
        .expect("extra_rings array")
        .iter()
        .map(|fd| i32::try_from(fd.as_i64().expect("fd")).expect("fd"))
        .collect();
    assert_eq!(extra.len(), 250);
    let mut inodes = std::collections::HashSet::new();
    for fd in extra {
        let ring = &state.rings[&ring_of(&state, fd)];
        assert_eq!(ring.flags, Some(0));
        assert_eq!((ring.sq_entries, ring.cq_entries), (4, 8));
        assert_eq!(ring.sq_thread, None);
        assert_eq!(ring.sq_thread_idle_ms, None);
        assert!(ring.files.is_empty() && ring.buffers.is_empty());
        assert_eq!(ring.inode, Some(holder.inode_of_fd(fd)));
        assert!(inodes.insert(ring.inode), "ring inodes are distinct");
    }
}

#[test]
fn measured_hz_matches_the_kernel_config() {
    let mut dumper = load();
    let measured = dumper
        .measure_hz()
        .unwrap_or_else(|error| panic!("measuring HZ: {error}"));
    // The kernel's own config, when it ships one, must agree.
    let config = Command::new("sh")
        .args(["-c", "zcat /proc/config.gz | grep '^CONFIG_HZ='"])
        .output();
    match config.ok().filter(|output| output.status.success()) {
        Some(output) => {
            let line = String::from_utf8_lossy(&output.stdout);
            let configured: u32 = line
                .trim()
                .trim_start_matches("CONFIG_HZ=")
                .parse()
                .expect("CONFIG_HZ value");
            assert_eq!(measured, configured);
        }
        None => assert!(
            [100, 250, 300, 1000].contains(&measured),
            "measured HZ {measured}"
        ),
    }
}

#[test]
fn timings() {
    let holder = Holder::start(&[]);
    let mut loads = Vec::new();
    let mut reads = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let mut dumper = load();
        loads.push(started.elapsed());
        let started = Instant::now();
        let _ = dump(&mut dumper, &holder);
        reads.push(started.elapsed());
    }
    loads.sort();
    reads.sort();
    eprintln!(
        "BpfDumper::load(): min {:?}, median {:?}",
        loads[0], loads[2]
    );
    eprintln!(
        "read() of the seed-like state: min {:?}, median {:?}",
        reads[0], reads[2]
    );
}

/// The fdinfo backend on the same program: ring sizes, SQ thread sharing,
/// registered files by slot and path and buffers by slot, address and length
/// agree with the BPF backend; flags, idle and the eventfd are unknown.
#[test]
fn fdinfo_backend_agrees_where_fdinfo_can_see() {
    let holder = Holder::start(&[]);
    let exact = dump(&mut load(), &holder);
    if let Err(reason) = ringplan_dump::fdinfo_format::check() {
        match ringplan_dump::fdinfo::read(holder.pid()) {
            Err(ringplan_dump::FdinfoError::KernelFormat(error)) => {
                assert_eq!(error.to_string(), reason.to_string())
            }
            other => {
                panic!("the fdinfo backend should refuse this kernel ({reason}), got {other:?}")
            }
        }
        eprintln!("fdinfo backend refused on this kernel, as it must be: {reason}");
        return;
    }
    let seen = ringplan_dump::fdinfo::read(holder.pid())
        .unwrap_or_else(|error| panic!("fdinfo read of pid {}: {error}", holder.pid()));
    let path_of =
        |state: &RawState, file: Option<u64>| file.and_then(|file| state.files[&file].path.clone());
    let mut threads = Vec::new();
    for name in ["ring_a", "ring_b"] {
        let fd = holder.fd(name);
        let (exact_ring, seen_ring) = (
            &exact.rings[&ring_of(&exact, fd)],
            &seen.rings[&ring_of(&seen, fd)],
        );
        assert_eq!(seen_ring.flags, None, "{name}: fdinfo cannot show flags");
        assert!(!seen_ring.idle_known, "{name}: fdinfo cannot show the idle");
        assert_eq!(
            seen_ring.eventfd,
            Known::Unknown,
            "{name}: fdinfo cannot show the eventfd"
        );
        assert_eq!(
            (seen_ring.sq_entries, seen_ring.cq_entries),
            (exact_ring.sq_entries, exact_ring.cq_entries)
        );
        assert_eq!(seen_ring.inode, exact_ring.inode, "{name}: inode");
        assert_eq!(
            seen_ring.files.len(),
            exact_ring.files.len(),
            "{name}: file slots"
        );
        for (index, (seen_slot, exact_slot)) in
            seen_ring.files.iter().zip(&exact_ring.files).enumerate()
        {
            assert_eq!(
                seen_slot.is_some(),
                exact_slot.is_some(),
                "{name}: slot {index} occupancy"
            );
            assert_eq!(
                path_of(&seen, *seen_slot),
                path_of(&exact, *exact_slot),
                "{name}: slot {index} path"
            );
        }
        assert_eq!(seen_ring.buffers, exact_ring.buffers, "{name}: buffers");
        threads.push(seen_ring.sq_thread.expect("both rings have an SQ thread"));
    }
    assert_eq!(threads[0], threads[1], "ring_b shares ring_a's SQ thread");
    let eventfd = &seen.eventfds[&eventfd_of(&seen, holder.fd("eventfd"))];
    assert_eq!(eventfd.count, 42, "fdinfo shows an eventfd's own count");
}
