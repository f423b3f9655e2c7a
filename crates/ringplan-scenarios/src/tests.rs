//! Each scenario is built in the test process and checked twice: its
//! description against itself (what the doc comment promises), and the rings
//! against the kernel's own view in `/proc/self/fdinfo/RING`.
//!
//! Tests run in parallel in one process, so they never assume which fd
//! numbers are free or closed; they look only at the fds their own `Built`
//! reports.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, RawFd};

use ringplan_kernel::procfs::escape::unescape_octal;
use ringplan_kernel::procfs::fdinfo;
use ringplan_kernel::procfs::maps::{self, MapsEntry};
use ringplan_kernel::procfs::Process;
use serde_json::Value;

use super::*;

/// The rows of `/proc/self/fdinfo/FD` this crate's tests look at.
#[derive(Debug)]
struct KernelRingView {
    /// `Key:\tvalue` lines, value trimmed.
    fields: BTreeMap<String, String>,
    /// `UserFiles:` rows: slot -> path (octal escapes decoded).
    files: BTreeMap<u32, String>,
    /// `UserBufs:` rows: slot -> `0xADDR/LEN` or `<none>`.
    buffers: BTreeMap<u32, String>,
}

/// Whether this kernel's fdinfo is 6.1's or 6.12's: a registered file's
/// row is its dentry's name (`null`, not `/dev/null`), every empty slot has
/// a `<none>` row, an empty buffer slot shows the dummy buffer (one of
/// [`DUMMY_BUFFER_ROWS`]), the counts are printed without rows while the
/// ring's lock is taken, and (6.1 only) `SqThread` is -1 while the SQ
/// thread polls.
/// Found by registering /dev/null in a probe ring.
fn kernel_prints_names() -> bool {
    static NAMES: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *NAMES.get_or_init(|| {
        let mut params = rustix::io_uring::io_uring_params::default();
        // SAFETY: io_uring_setup only fills `params`; the ring is never
        // mapped or submitted to.
        let ring = unsafe { rustix::io_uring::io_uring_setup(1, &mut params) }.expect("probe ring");
        let null = std::fs::File::open("/dev/null").expect("opening /dev/null");
        let fds = [null.as_raw_fd()];
        // SAFETY: an array of one fd, as REGISTER_FILES with nr_args 1
        // expects; the kernel only reads it.
        unsafe {
            rustix::io_uring::io_uring_register(
                &ring,
                rustix::io_uring::IoringRegisterOp::RegisterFiles,
                fds.as_ptr().cast(),
                1,
            )
        }
        .expect("registering /dev/null");
        // Parsed directly (not `read`, which asks this function): nothing
        // else holds the probe ring's lock.
        let text = fdinfo::read(Process::Current, ring.as_raw_fd()).expect("probe fdinfo");
        let view = KernelRingView::parse(&text);
        match view.files.get(&0).map(String::as_str) {
            Some("/dev/null") => false,
            Some("null") => true,
            other => panic!("the probe ring's slot 0 shows {other:?}"),
        }
    })
}

/// An empty buffer slot on kernels before 6.13: the dummy buffer, ubuf -1.
/// 6.1 prints its length as ubuf_end (0) - ubuf = 1; 6.12 keeps a length,
/// UINT_MAX. 6.18 prints `<none>`.
const DUMMY_BUFFER_ROWS: &[&str] = &["0xffffffffffffffff/1", "0xffffffffffffffff/4294967295"];

impl KernelRingView {
    /// Reads the ring's fdinfo. The kernel prints the ring part (6.18) or
    /// its rows (6.1) only when it gets the ring's lock at once; an SQ
    /// thread that is starting may hold it for a moment, so a few reads are
    /// allowed.
    fn read(fd: RawFd) -> KernelRingView {
        for _attempt in 0..100 {
            let text = fdinfo::read(Process::Current, fd).expect("reading fdinfo");
            let view = KernelRingView::parse(&text);
            if view.fields.contains_key("SqMask") && view.rows_complete() {
                return view;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        panic!("fdinfo of ring fd {fd} never showed the ring (its lock stayed taken)");
    }

    /// Reads an SQPOLL ring's fdinfo once it names the SQ thread: 6.1
    /// prints -1 while the thread holds its lock, which it does while it
    /// polls, so wait (up to 10 s) for it to idle and sleep.
    fn read_with_sq_thread(fd: RawFd) -> KernelRingView {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let view = KernelRingView::read(fd);
            if view.sq_thread() > 0 || std::time::Instant::now() > deadline {
                return view;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// 6.1 prints a row for every slot when it holds the ring's lock and
    /// none when it does not (6.18 prints no ring part then).
    fn rows_complete(&self) -> bool {
        let count = |key: &str| {
            self.fields
                .get(key)
                .and_then(|value| value.parse::<usize>().ok())
        };
        let files_complete = !kernel_prints_names()
            || count("UserFiles").is_none_or(|slots| self.files.len() == slots);
        let buffers_complete = count("UserBufs").is_none_or(|slots| self.buffers.len() == slots);
        files_complete && buffers_complete
    }

    /// The occupied file slots: 6.1's `<none>` rows dropped.
    fn occupied_files(&self) -> BTreeMap<u32, String> {
        self.files
            .iter()
            .filter(|(_, row)| *row != "<none>")
            .map(|(slot, row)| (*slot, row.clone()))
            .collect()
    }

    /// Buffer rows with the dummy buffer shown as `<none>`, as 6.18 shows it.
    fn buffer_rows(&self) -> BTreeMap<u32, String> {
        let normalize = |row: &String| {
            if DUMMY_BUFFER_ROWS.contains(&row.as_str()) {
                "<none>".to_owned()
            } else {
                row.clone()
            }
        };
        self.buffers
            .iter()
            .map(|(slot, row)| (*slot, normalize(row)))
            .collect()
    }

    fn parse(text: &[u8]) -> KernelRingView {
        let mut view = KernelRingView {
            fields: BTreeMap::new(),
            files: BTreeMap::new(),
            buffers: BTreeMap::new(),
        };
        let text_of = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        for (_, line) in fdinfo::lines(text) {
            match line {
                fdinfo::Line::Field { key, value } => {
                    view.fields.insert(text_of(key), text_of(value));
                }
                fdinfo::Line::Row { table, slot, value } => {
                    let Some(slot) = text_of(slot).parse::<u32>().ok() else {
                        continue;
                    };
                    match table {
                        b"UserFiles" => {
                            view.files.insert(slot, text_of(&unescape_octal(value)));
                        }
                        b"UserBufs" => {
                            view.buffers.insert(slot, text_of(value));
                        }
                        _ => {}
                    }
                }
                fdinfo::Line::Other => {}
            }
        }
        view
    }

    fn field(&self, key: &str) -> &str {
        self.fields
            .get(key)
            .map_or_else(|| panic!("no {key} in fdinfo: {self:?}"), String::as_str)
    }

    fn sq_thread(&self) -> i64 {
        self.field("SqThread")
            .parse()
            .expect("SqThread is a number")
    }
}

/// A registered file's row as this kernel prints it: its path (6.18), or
/// its dentry's name (6.1), which is empty for a pipe (`pipe:[N]`).
fn shown_path(path: &str) -> String {
    match (kernel_prints_names(), path.starts_with('/')) {
        (false, _) => path.to_owned(),
        (true, true) => path.rsplit('/').next().unwrap_or(path).to_owned(),
        (true, false) => String::new(),
    }
}

fn build_ok(text: &str) -> Built {
    let scenario: Scenario = text.parse().expect("a valid scenario name");
    build(&scenario).unwrap_or_else(|error| panic!("building {text}: {error}"))
}

fn as_fd(value: &Value) -> RawFd {
    value
        .as_i64()
        .and_then(|fd| RawFd::try_from(fd).ok())
        .unwrap_or_else(|| panic!("{value} is not an fd"))
}

fn ring_fds_of(description: &Value) -> Vec<RawFd> {
    description["rings"]
        .as_array()
        .expect("rings")
        .iter()
        .map(|ring| as_fd(&ring["fd"]))
        .collect()
}

fn fd_is_cloexec(fd: RawFd) -> bool {
    // SAFETY: the fd belongs to a `Built` that outlives this call.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    rustix::io::fcntl_getfd(fd)
        .expect("F_GETFD")
        .contains(rustix::io::FdFlags::CLOEXEC)
}

/// The kernel's view of a description's ring: sizes and registered tables.
fn assert_kernel_agrees(ring: &Value) {
    let view = KernelRingView::read(as_fd(&ring["fd"]));
    let setup = &ring["setup"];
    let mask = |entries: &Value| format!("{:#x}", entries.as_u64().expect("entries") - 1);
    assert_eq!(view.field("SqMask"), mask(&setup["sq_entries"]), "{ring}");
    assert_eq!(view.field("CqMask"), mask(&setup["cq_entries"]), "{ring}");

    let files = ring["files"].as_array().expect("files");
    assert_eq!(view.field("UserFiles"), files.len().to_string());
    let expected_files: BTreeMap<u32, String> = files
        .iter()
        .enumerate()
        .filter(|(_, slot)| !slot.is_null())
        .map(|(index, slot)| {
            (
                index as u32,
                shown_path(slot["path"].as_str().expect("path")),
            )
        })
        .collect();
    assert_eq!(view.occupied_files(), expected_files);

    let buffers = ring["buffers"].as_array().expect("buffers");
    assert_eq!(view.field("UserBufs"), buffers.len().to_string());
    let expected_buffers: BTreeMap<u32, String> = buffers
        .iter()
        .enumerate()
        .map(|(index, slot)| {
            let row = match slot.is_null() {
                true => "<none>".to_owned(),
                false => format!(
                    "{:#x}/{}",
                    slot["addr"].as_u64().expect("addr"),
                    slot["len"]
                ),
            };
            (index as u32, row)
        })
        .collect();
    assert_eq!(view.buffer_rows(), expected_buffers);

    let sqpoll = setup["flag_names"]
        .as_array()
        .expect("flag names")
        .contains(&Value::from("SQPOLL"));
    let view = if sqpoll {
        KernelRingView::read_with_sq_thread(as_fd(&ring["fd"]))
    } else {
        view
    };
    assert_eq!(view.sq_thread() > 0, sqpoll, "SqThread of {ring}");
    if let Some(cpu) = setup["sq_thread_cpu"].as_u64() {
        assert_eq!(view.field("SqThreadCpu"), cpu.to_string());
    }
}

/// Every ring of an SQPOLL group reports the same SQ thread, and it is a
/// thread of this process.
fn assert_one_sq_thread(ring_fds: &[RawFd]) {
    let threads: Vec<i64> = ring_fds
        .iter()
        .map(|fd| KernelRingView::read_with_sq_thread(*fd).sq_thread())
        .collect();
    assert!(
        threads
            .iter()
            .all(|thread| *thread == threads[0] && *thread > 0),
        "SQ threads {threads:?}"
    );
    assert!(std::path::Path::new(&format!("/proc/self/task/{}", threads[0])).exists());
}

#[test]
fn scenario_names_parse_and_print_back() {
    for text in [
        "seed",
        "chain:64",
        "fanout:64",
        "files:19000",
        "closed",
        "creator-closed:3",
        "rings:512",
        "mix",
        "ring-fds",
        "ring-fd-only",
    ] {
        let scenario: Scenario = text.parse().expect(text);
        assert_eq!(scenario.to_string(), text);
    }
    assert_eq!(Scenario::default(), Scenario::Seed);
    assert_eq!("chain:2".parse::<Scenario>().ok(), Some(Scenario::Chain(2)));
}

#[test]
fn bad_scenario_names_say_what_is_wrong() {
    let message = |text: &str| text.parse::<Scenario>().expect_err(text).to_string();
    assert!(
        message("chain").contains("needs a count, as in chain:N"),
        "{}",
        message("chain")
    );
    assert!(message("chain:0").contains("at least 1"));
    assert!(message("rings:many").contains("\"many\""));
    assert!(message("seed:2").contains("takes no count"));
    assert!(message("nope").contains("unknown scenario \"nope\""));
    assert!(message("").contains("unknown scenario"));
}

#[test]
fn seed_matches_the_rfc_program_and_the_kernel() {
    let built = build_ok("seed");
    let description = built.description();
    assert_eq!(description["pid"], std::process::id());
    assert_eq!(description["scenario"], "seed");
    let rings = description["rings"].as_array().expect("rings");
    assert_eq!(rings.len(), 2);
    let (parent, attached) = (&rings[0], &rings[1]);
    let parent_fd = as_fd(&parent["fd"]);
    for ring in rings {
        assert_eq!(
            ring["setup"]["flag_names"].as_array().map(Vec::len),
            Some(if ring == parent { 3 } else { 4 })
        );
        assert_eq!(ring["setup"]["sq_entries"], 2);
        assert_eq!(ring["setup"]["cq_entries"], 4);
        assert_eq!(ring["setup"]["sq_thread_cpu"], 0);
        assert_eq!(ring["setup"]["sq_thread_idle_ms"], 1500);
        assert_eq!(ring["sq_group"], parent_fd);
        assert_kernel_agrees(ring);
    }
    assert_eq!(parent["setup"]["flags"], 0b1110, "SQPOLL|SQ_AFF|CQSIZE");
    assert_eq!(
        attached["setup"]["flags"], 0b10_1110,
        "SQPOLL|SQ_AFF|CQSIZE|ATTACH_WQ"
    );
    assert_eq!(attached["setup"]["wq_fd"], parent_fd);
    assert_one_sq_thread(&ring_fds_of(&description));

    let eventfd = &description["eventfds"][0];
    assert_eq!(eventfd["count"], 42);
    assert_eq!(eventfd["cloexec"], false);
    assert!(
        !fd_is_cloexec(as_fd(&eventfd["fd"])),
        "eventfd(42, 0) is not close-on-exec"
    );
    assert_eq!(attached["eventfd"]["fd"], eventfd["fd"]);
    assert_eq!(attached["eventfd"]["async"], true);

    let file_fds: Vec<Value> = attached["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|slot| slot["fd"].clone())
        .collect();
    assert_eq!(
        file_fds,
        [
            Value::from(0),
            Value::Null,
            Value::from(1),
            Value::Null,
            Value::from(2)
        ]
    );
    assert!(attached["buffers"][0].is_null());
    assert_eq!(attached["buffers"][1]["len"], 120);
    assert!(parent["files"].as_array().is_some_and(Vec::is_empty));
}

#[test]
fn chain_attaches_each_ring_to_the_one_before() {
    let built = build_ok("chain:8");
    let description = built.description();
    let rings = description["rings"].as_array().expect("rings");
    assert_eq!(rings.len(), 8);
    for (index, ring) in rings.iter().enumerate() {
        assert_eq!(ring["sq_group"], rings[0]["fd"]);
        assert_eq!(ring["setup"]["sq_thread_idle_ms"], 1000 + 4 * index);
        let expected_wq_fd = if index == 0 {
            Value::Null
        } else {
            rings[index - 1]["fd"].clone()
        };
        assert_eq!(ring["setup"]["wq_fd"], expected_wq_fd);
        assert_kernel_agrees(ring);
    }
    assert_one_sq_thread(&built.ring_fds());
}

#[test]
fn fanout_attaches_every_ring_to_the_first() {
    let built = build_ok("fanout:5");
    let description = built.description();
    let rings = description["rings"].as_array().expect("rings");
    assert_eq!(rings.len(), 6);
    for ring in &rings[1..] {
        assert_eq!(ring["setup"]["wq_fd"], rings[0]["fd"]);
        assert_kernel_agrees(ring);
    }
    assert_one_sq_thread(&built.ring_fds());
}

#[test]
fn files_registers_one_distinct_file_per_slot_and_keeps_the_fds() {
    let built = build_ok("files:1000");
    let description = built.description();
    let temp_dir = description["temp_dir"]
        .as_str()
        .expect("temp dir")
        .to_owned();
    let ring = &description["rings"][0];
    let slots = ring["files"].as_array().expect("files");
    assert_eq!(slots.len(), 1000);
    for (index, slot) in slots.iter().enumerate() {
        assert_eq!(slot["path"], format!("{temp_dir}/file-{index:05}"));
        assert_eq!(description["files"][index]["fd"], slot["fd"]);
        assert_eq!(description["files"][index]["open"], true);
    }
    assert_kernel_agrees(ring);
    drop(built);
    assert!(
        !std::path::Path::new(&temp_dir).exists(),
        "dropping the scenario removes its files"
    );
}

#[test]
fn files_that_cannot_fit_are_refused_before_anything_is_created() {
    let hard_limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .maximum
        .expect("a hard limit");
    let too_many = usize::try_from(hard_limit).expect("limit fits usize") + 1;
    match build(&Scenario::Files(too_many)) {
        Err(error @ ScenarioError::TooManyFds { .. }) => {
            let message = error.to_string();
            assert!(
                message.starts_with(&format!("files:{too_many} needs {} more fds", too_many + 1)),
                "{message}"
            );
            assert!(
                message.contains(&format!("hard limit is {hard_limit}")),
                "{message}"
            );
        }
        other => panic!("expected TooManyFds, got {other:?}"),
    }
}

#[test]
fn closed_keeps_closed_objects_alive_through_the_ring() {
    let built = build_ok("closed");
    let description = built.description();
    let ring = &description["rings"][0];
    let eventfd = &description["eventfds"][0];
    assert_eq!(eventfd["open"], false);
    assert_eq!(
        ring["eventfd"],
        serde_json::json!({ "fd": eventfd["fd"], "async": false })
    );
    let open: Vec<bool> = description["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|file| file["open"] == true)
        .collect();
    assert_eq!(open, [false, true, false, true]);
    let closed_fds = description["closed_fds"].as_array().expect("closed fds");
    assert_eq!(closed_fds.len(), 3);
    for closed in [
        &eventfd["fd"],
        &description["files"][0]["fd"],
        &description["files"][2]["fd"],
    ] {
        assert!(closed_fds.contains(closed), "{closed} in {closed_fds:?}");
    }
    let slot_paths: Vec<Option<String>> = ring["files"]
        .as_array()
        .expect("slots")
        .iter()
        .map(|slot| {
            slot["path"]
                .as_str()
                .map(|path| path.rsplit('/').next().unwrap_or(path).to_owned())
        })
        .collect();
    let expected = [
        Some("closed-0"),
        Some("closed-1"),
        None,
        Some("closed-2"),
        Some("closed-3"),
    ];
    assert_eq!(slot_paths, expected.map(|name| name.map(str::to_owned)));
    // The kernel still shows every registered file, closed fds or not.
    assert_kernel_agrees(ring);
}

#[test]
fn creator_closed_leaves_attached_rings_sharing_a_live_sq_thread() {
    let built = build_ok("creator-closed:3");
    let description = built.description();
    let rings = description["rings"].as_array().expect("rings");
    assert_eq!(rings.len(), 3);
    let gone = &description["gone_rings"][0];
    for ring in rings {
        assert_eq!(ring["setup"]["wq_fd"], gone["former_fd"]);
        assert_eq!(ring["sq_group"], gone["former_fd"]);
        assert_kernel_agrees(ring);
    }
    assert_eq!(
        description["closed_fds"],
        serde_json::json!([gone["former_fd"]])
    );
    assert_one_sq_thread(&built.ring_fds());
}

#[test]
fn rings_makes_512_independent_plain_rings() {
    let built = build_ok("rings:512");
    let description = built.description();
    let rings = description["rings"].as_array().expect("rings");
    assert_eq!(rings.len(), 512);
    for ring in rings {
        assert_eq!(ring["setup"]["flags"], 0);
        assert_kernel_agrees(ring);
    }
    let inodes: std::collections::HashSet<u64> = built
        .ring_fds()
        .iter()
        .map(|fd| {
            KernelRingView::read(*fd)
                .field("ino")
                .parse::<u64>()
                .expect("ino")
        })
        .collect();
    assert_eq!(inodes.len(), 512, "each ring has its own anonymous inode");
}

#[test]
fn mix_has_a_group_a_plain_ring_sparse_files_buffers_and_a_dup() {
    let built = build_ok("mix");
    let description = built.description();
    let rings = description["rings"].as_array().expect("rings");
    let (ring_a, ring_b, ring_c) = (&rings[0], &rings[1], &rings[2]);
    for ring in rings {
        assert_kernel_agrees(ring);
    }
    assert_one_sq_thread(&[as_fd(&ring_a["fd"]), as_fd(&ring_b["fd"])]);
    assert_eq!(KernelRingView::read(as_fd(&ring_c["fd"])).sq_thread(), -1);

    let dup_fd = as_fd(&ring_a["dup_fds"][0]);
    assert!(!fd_is_cloexec(dup_fd) && fd_is_cloexec(as_fd(&ring_a["fd"])));
    let ino = |fd| KernelRingView::read(fd).field("ino").to_owned();
    assert_eq!(
        ino(dup_fd),
        ino(as_fd(&ring_a["fd"])),
        "a dup is the same ring"
    );

    let buffer_lens: Vec<Value> = ring_b["buffers"]
        .as_array()
        .expect("buffers")
        .iter()
        .map(|slot| slot["len"].clone())
        .collect();
    assert_eq!(
        buffer_lens,
        [Value::from(4096), Value::Null, Value::from(100)]
    );
    assert_eq!(
        ring_b["buffers"][0]["addr"]
            .as_u64()
            .map(|addr| addr % 4096),
        Some(0),
        "a whole page"
    );

    assert_eq!(ring_c["setup"]["cq_entries"], 64);
    assert_eq!(ring_c["eventfd"]["async"], false);
    let data_fd = &description["files"][0]["fd"];
    let null_fd = &description["files"][1]["fd"];
    let slot_fds: Vec<Value> = ring_c["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|slot| slot["fd"].clone())
        .collect();
    assert_eq!(
        slot_fds,
        [
            data_fd.clone(),
            Value::Null,
            null_fd.clone(),
            data_fd.clone(),
            Value::Null,
            Value::Null
        ]
    );
    assert_eq!(description["files"][0]["pos"], 5);
    assert_eq!(description["eventfds"][0]["semaphore"], true);
    assert_eq!(description["eventfds"][0]["nonblock"], true);
}

/// The mappings the description lists are the ring's, as `/proc/self/maps`
/// shows them: the ring's inode at the region's mmap offset.
#[test]
fn ring_regions_are_mapped_where_the_description_says() {
    let built = build_ok("mix");
    let maps = maps::read(Process::Current).expect("reading maps");
    for (index, ring) in built.description()["rings"]
        .as_array()
        .expect("rings")
        .iter()
        .enumerate()
    {
        let ring_fd = built.ring_fd(index).expect("open ring");
        let ino = rustix::fs::fstat(ring_fd).expect("fstat").st_ino;
        assert_eq!(ring_fd.as_raw_fd(), as_fd(&ring["fd"]));
        let mappings = ring["mappings"].as_array().expect("mappings");
        assert!(!mappings.is_empty());
        for mapping in mappings {
            let addr = mapping["addr"].as_u64().expect("addr");
            let offset = match mapping["region"].as_str() {
                Some("sq_ring") => 0,
                Some("cq_ring") => 0x800_0000,
                Some("sqes") => 0x1000_0000,
                other => panic!("unknown region {other:?}"),
            };
            let (line, entry) = maps
                .lines()
                .filter_map(|line| Some((line, MapsEntry::parse(line)?)))
                .find(|(_, entry)| entry.start == addr)
                .unwrap_or_else(|| panic!("no mapping at {addr:#x} in {maps}"));
            assert_eq!(entry.offset, offset, "{line}");
            assert_eq!(entry.inode, ino, "{line}");
            assert_eq!(entry.path, ringplan_kernel::abi::RING_FILE_PATH, "{line}");
        }
    }
}

#[test]
fn hold_prints_the_description_and_stops_on_sigterm() {
    let (reader, writer) = rustix::pipe::pipe().expect("a pipe");
    let (reader, mut writer) = (std::fs::File::from(reader), std::fs::File::from(writer));
    let holder = std::thread::spawn(move || hold(&Scenario::Rings(1), &mut writer));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(reader), &mut line)
        .expect("reading the line");
    let description: Value = serde_json::from_str(&line).expect("one JSON line");
    assert_eq!(description["scenario"], "rings:1");
    rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::TERM)
        .expect("kill");
    let stopped_by = holder.join().expect("the holder thread").expect("hold");
    assert_eq!(stopped_by, StopSignal::Terminate);
}

/// The ring-fd scenarios register slots in the building thread and give
/// them back when dropped: afterwards the same offsets are free again in
/// this thread (the kernel answers EBUSY for a taken offset).
#[test]
fn ring_fd_scenarios_give_their_slots_back() {
    for name in ["ring-fds", "ring-fd-only"] {
        let built = build_ok(name);
        let description = built.description();
        let tid = crate::ring_fds::current_tid();
        let offsets: Vec<u64> = description["rings"]
            .as_array()
            .expect("rings")
            .iter()
            .flat_map(|ring| {
                ring["registered_ring_fds"]
                    .as_array()
                    .expect("slots")
                    .clone()
            })
            .filter(|slot| slot["tid"].as_u64() == Some(u64::from(tid)))
            .map(|slot| slot["offset"].as_u64().expect("offset"))
            .collect();
        assert!(!offsets.is_empty(), "{name}: {description}");
        drop(built);
        let mut params = rustix::io_uring::io_uring_params::default();
        // SAFETY: io_uring_setup only fills `params`; the ring is never
        // mapped or submitted to.
        let ring = unsafe { rustix::io_uring::io_uring_setup(1, &mut params) }.expect("a ring");
        for offset in offsets {
            let offset = offset as u32;
            crate::ring_fds::register(ring.as_fd(), offset)
                .unwrap_or_else(|error| panic!("{name}: offset {offset} still taken: {error}"));
            let updates = ringplan_kernel::abi::ring_fd::updates(&[(offset, 0)]);
            // SAFETY: one io_uring_rsrc_update, alive for the call.
            unsafe {
                rustix::io_uring::io_uring_register(
                    ring.as_fd(),
                    rustix::io_uring::IoringRegisterOp::UnregisterRingFds,
                    updates.as_ptr().cast(),
                    1,
                )
            }
            .expect("unregistering");
        }
    }
}
