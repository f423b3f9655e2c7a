//! Registered ring fds (`IORING_REGISTER_RING_FDS`, kept per thread by the
//! kernel): `plan app ring-fds` (two rings registered at chosen offsets in
//! two threads) dumped per thread by BPF and compared with what the
//! scenario registered; restored in-process (`--hold`, every slot in the
//! thread that ran the plan, at its recorded offset; a slot whose offset
//! another thread's slot took there is reported, not registered) and
//! compared by a dump of the holder; restored into the recorded threads
//! with `exec --pid` after `plan dump --detach` took the rings out, and
//! with a failure injected at every step leaving no ring and no slot
//! behind.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use ringplan_exec::RestoredRingFd;
use ringplan_image::{Image, ObjectId, ObjectKind, RegisteredRingFd};

use crate::support::{
    fail_at_every_step, moved_rings_where_needed, plan, plan_ok, scratch_dir, Scenario, PLAN,
};

fn dump_to(pid: u32, dir: &Path, name: &str) -> (String, Image) {
    let path = dir.join(format!("{name}.img"));
    let path = path.to_str().expect("utf-8 path").to_owned();
    let pid = pid.to_string();
    plan_ok(&["dump", "--pid", &pid, "--backend", "bpf", "-o", &path]);
    let image = read_image(&path);
    (path, image)
}

fn read_image(path: &str) -> Image {
    ringplan_image::decode_slice(&std::fs::read(path).expect("reading an image"))
        .expect("decoding an image")
}

/// Every ring's registered ring fds, by the ring's lowest fd (`None` for a
/// ring no fd holds).
fn slots_by_fd(image: &Image) -> Vec<(Option<i32>, Vec<RegisteredRingFd>)> {
    image
        .objects
        .iter()
        .filter_map(|object| match &object.kind {
            ObjectKind::Ring(ring) => Some((
                object.fds.first().map(|entry| entry.fd),
                ring.registered_ring_fds.clone(),
            )),
            _ => None,
        })
        .collect()
}

/// What the scenario says it registered, by ring fd.
fn described_slots(description: &serde_json::Value) -> Vec<(Option<i32>, Vec<RegisteredRingFd>)> {
    description["rings"]
        .as_array()
        .expect("rings")
        .iter()
        .map(|ring| {
            let mut slots: Vec<RegisteredRingFd> = ring["registered_ring_fds"]
                .as_array()
                .expect("registered_ring_fds")
                .iter()
                .map(|slot| RegisteredRingFd {
                    tid: slot["tid"].as_u64().expect("tid") as u32,
                    offset: slot["offset"].as_u64().expect("offset") as u32,
                })
                .collect();
            slots.sort_unstable();
            (ring["fd"].as_i64().map(|fd| fd as i32), slots)
        })
        .collect()
}

#[test]
fn ring_fds_are_dumped_per_thread() {
    let dir = scratch_dir("ring-fds-dump");
    let scenario = Scenario::start("ring-fds");
    let pid = scenario.pid();
    let (path, image) = dump_to(pid, &dir, "ring-fds");
    assert_eq!(slots_by_fd(&image), described_slots(&scenario.description));
    // Two threads of the target, at offsets 3 and 7 of the first ring and
    // 0 of the second.
    let threads: BTreeSet<u32> = slots_by_fd(&image)
        .iter()
        .flat_map(|(_, slots)| slots.iter().map(|slot| slot.tid))
        .collect();
    assert_eq!(threads.len(), 2, "{threads:?}");
    for tid in &threads {
        assert!(
            Path::new(&format!("/proc/{pid}/task/{tid}")).exists(),
            "thread {tid} of {pid}"
        );
    }
    let json = plan_ok(&["show", &path, "--objects", "--format", "json"]);
    let view: serde_json::Value = serde_json::from_slice(&json).expect("JSON");
    let first = &view["objects"][0]["registered_ring_fds"];
    assert_eq!(first.as_array().map(Vec::len), Some(2), "{first}");
    assert!(
        first[0]["tid"].is_u64() && first[0]["offset"].is_u64(),
        "{first}"
    );
}

/// `plan exec --hold`, killed when dropped.
struct Holder {
    child: Child,
    line: serde_json::Value,
}

impl Holder {
    fn start(image: &str) -> Holder {
        let mut child = Command::new(PLAN)
            .args(["exec", image, "--hold"])
            .args(moved_rings_where_needed())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting plan exec --hold");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("the holder's line");
        let line = serde_json::from_str(&line).unwrap_or_else(|error| {
            let _ = child.kill();
            panic!("plan exec --hold printed {line:?} ({error})")
        });
        Holder { child, line }
    }

    fn pid(&self) -> u32 {
        self.line["pid"].as_u64().expect("pid") as u32
    }

    /// The ring regions the holder did not map where they were (a kernel
    /// without NO_MMAP, with --allow-moved-rings), as it reported them.
    fn skipped_mappings(&self) -> Vec<ringplan_exec::SkippedMapping> {
        self.line["skipped_mappings"]
            .as_array()
            .unwrap_or_else(|| panic!("skipped_mappings in {}", self.line))
            .iter()
            .map(|skip| ringplan_exec::SkippedMapping {
                object: ObjectId(skip["object"].as_u64().expect("object") as u32),
                mapping: ringplan_image::RingMapping {
                    region: serde_json::from_value(skip["region"].clone()).expect("a region"),
                    addr: skip["addr"].as_u64().expect("addr"),
                    len: skip["len"].as_u64().expect("len"),
                },
                // The comparison needs only which mappings.
                reason: ringplan_exec::SkipReason::AddressRefused,
            })
            .collect()
    }

    /// Where the holder put each slot, as it reported it.
    fn ring_fds(&self) -> Vec<RestoredRingFd> {
        self.line["registered_ring_fds"]
            .as_array()
            .unwrap_or_else(|| panic!("registered_ring_fds in {}", self.line))
            .iter()
            .map(|slot| RestoredRingFd {
                ring: ObjectId(slot["object"].as_u64().expect("object") as u32),
                offset: slot["offset"].as_u64().expect("offset") as u32,
                tid: slot["tid"].as_u64().expect("tid") as u32,
                recorded_tid: slot["recorded_tid"].as_u64().expect("recorded_tid") as u32,
                registered: slot["registered"].as_bool().expect("registered"),
            })
            .collect()
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_child(&self.child),
            rustix::process::Signal::TERM,
        );
        let _ = self.child.wait();
    }
}

/// Holds `image` in-process, dumps the holder and compares it with the
/// image, taking the holder's report of its slots into account.
fn hold_and_compare(dir: &Path, path: &str, image: &Image, name: &str) -> Vec<RestoredRingFd> {
    let holder = Holder::start(path);
    let (_, held) = dump_to(holder.pid(), dir, &format!("{name}-held"));
    let ring_fds = holder.ring_fds();
    let skipped = holder.skipped_mappings();
    let facts = ringplan_exec::verify::RunFacts {
        ring_fds: &ring_fds,
        skipped_mappings: &skipped,
        moved_rings: &holder.line["moved_rings"]
            .as_array()
            .expect("moved_rings")
            .iter()
            .map(|id| ObjectId(id.as_u64().expect("an id") as u32))
            .collect::<Vec<_>>(),
        ..ringplan_exec::verify::RunFacts::default()
    };
    let comparison = ringplan_exec::verify::compare_run(image, &held, &facts);
    assert!(
        comparison.is_faithful(),
        "{name}: {}",
        comparison.differences.join("\n")
    );
    // Every slot the holder registered is in the thread that ran the plan.
    for slot in ring_fds.iter().filter(|slot| slot.registered) {
        assert_eq!(slot.tid, holder.pid(), "{slot}");
    }
    ring_fds
}

#[test]
fn ring_fds_are_restored_in_process_at_their_offsets() {
    let dir = scratch_dir("ring-fds-hold");
    let scenario = Scenario::start("ring-fds");
    let (path, image) = dump_to(scenario.pid(), &dir, "ring-fds");
    drop(scenario);
    let ring_fds = hold_and_compare(&dir, &path, &image, "ring-fds");
    let offsets: Vec<(u32, u32, bool)> = ring_fds
        .iter()
        .map(|slot| (slot.ring.0, slot.offset, slot.registered))
        .collect();
    assert_eq!(offsets, vec![(1, 3, true), (1, 7, true), (2, 0, true)]);

    // The second ring's slot moved to offset 3 of the second thread: in
    // one thread it collides with the first ring's offset 3 (the first
    // thread's), so it is reported and not registered.
    let mut colliding = image.clone();
    let second_thread = ring_fds[1].recorded_tid;
    if let Some(ObjectKind::Ring(ring)) =
        colliding.objects.get_mut(1).map(|object| &mut object.kind)
    {
        ring.registered_ring_fds = vec![RegisteredRingFd {
            tid: second_thread,
            offset: 3,
        }];
    }
    let colliding_path = dir.join("colliding.img");
    std::fs::write(
        &colliding_path,
        ringplan_image::encode_to_vec(&colliding).expect("encoding"),
    )
    .expect("writing the image");
    let colliding_path = colliding_path.to_str().expect("utf-8").to_owned();
    let ring_fds = hold_and_compare(&dir, &colliding_path, &colliding, "colliding");
    assert_eq!(
        ring_fds
            .iter()
            .map(|slot| slot.registered)
            .collect::<Vec<_>>(),
        vec![true, true, false]
    );
    let mut args = vec!["exec", colliding_path.as_str(), "--verify"];
    args.extend_from_slice(moved_rings_where_needed());
    let stdout = String::from_utf8_lossy(&plan_ok(&args)).into_owned();
    assert!(stdout.contains("not registered"), "{stdout}");
}

#[test]
fn ring_fds_are_restored_into_their_threads_with_exec_pid() {
    detach_and_put_back("ring-fds");
}

#[test]
fn a_ring_held_only_by_a_ring_fd_is_put_back_with_exec_pid() {
    detach_and_put_back("ring-fd-only");
}

/// `plan dump --detach` of scenario `name` (every ring fd closed, every
/// thread's slots cleared, the process stopped), then `exec --pid` of the
/// image into it with a failure injected at every step, each leaving no
/// ring and no slot behind, then without: each slot back in its recorded
/// thread (`--verify`, and a dump compared).
fn detach_and_put_back(name: &str) {
    let dir = scratch_dir(&format!("{name}-pid"));
    let scenario = Scenario::start(name);
    let pid = scenario.pid();
    let pid_text = pid.to_string();
    let path = dir.join("detached.img");
    let path = path.to_str().expect("utf-8").to_owned();
    plan_ok(&["dump", "--pid", &pid_text, "--detach", "-o", &path]);
    let image = read_image(&path);
    assert_eq!(slots_by_fd(&image), described_slots(&scenario.description));
    let holds_nothing = |when: &str| {
        let output = plan(&["dump", "--pid", &pid_text, "-o", "/dev/null"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("holds no io_uring instance"),
            "{when}: {stderr}"
        );
    };
    holds_nothing("after the detach");

    // A ring a slot still held would show in a dump.
    let before = ringplan_exec::test_hooks::ProcessState::capture_of(pid);
    let mut fail_args = vec![];
    fail_args.extend_from_slice(moved_rings_where_needed());
    fail_at_every_step(&path, pid, &fail_args, &before, |step| {
        holds_nothing(&format!("step {step}"));
    });

    let mut args = vec!["exec", path.as_str(), "--pid", &pid_text, "--verify"];
    args.extend_from_slice(moved_rings_where_needed());
    let stdout = String::from_utf8_lossy(&plan_ok(&args)).into_owned();
    assert!(stdout.starts_with("verified: "), "{stdout}");
    let (_, restored) = dump_to(pid, &dir, "restored");
    assert_eq!(slots_by_fd(&restored), slots_by_fd(&image));
}

#[test]
fn a_ring_held_only_by_a_ring_fd_is_dumped_and_restored_in_process() {
    let dir = scratch_dir("ring-fd-only");
    let scenario = Scenario::start("ring-fd-only");
    let pid = scenario.pid();
    let (path, image) = dump_to(pid, &dir, "ring-fd-only");
    // One ring, at no fd, held by the building thread's offset 5, with
    // its mappings (the program kept them).
    let slots = slots_by_fd(&image);
    assert_eq!(
        slots,
        vec![(
            None,
            vec![RegisteredRingFd {
                tid: pid,
                offset: 5
            }]
        )]
    );
    assert_eq!(described_slots(&scenario.description), slots);
    let Some(ObjectKind::Ring(ring)) = image.objects.first().map(|object| &object.kind) else {
        panic!("a ring: {image:?}");
    };
    assert_eq!(ring.mappings.len(), 2, "{:?}", ring.mappings);
    drop(scenario);

    let ring_fds = hold_and_compare(&dir, &path, &image, "ring-fd-only");
    assert_eq!(ring_fds.len(), 1);
    assert!(ring_fds[0].registered && ring_fds[0].offset == 5);
    let mut args = vec!["exec", path.as_str(), "--verify"];
    args.extend_from_slice(moved_rings_where_needed());
    let stdout = String::from_utf8_lossy(&plan_ok(&args)).into_owned();
    assert!(stdout.starts_with("verified: 1 ring"), "{stdout}");
}

/// A ring-fd slot of a thread the target does not have is refused before
/// anything is done (the kernel keeps the slots per thread).
#[test]
fn a_ring_fd_thread_the_target_lacks_is_refused() {
    let dir = scratch_dir("ring-fds-missing-thread");
    let scenario = Scenario::start("ring-fds");
    let (path, _) = dump_to(scenario.pid(), &dir, "ring-fds");
    drop(scenario);
    let mut target = crate::exec_pid::Target::start();
    let before = ringplan_exec::test_hooks::ProcessState::capture_of(target.pid);
    let pid = target.pid.to_string();
    let mut args = vec!["exec", path.as_str(), "--pid", &pid];
    args.extend_from_slice(moved_rings_where_needed());
    let output = plan(&args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("is registered at ring-fd offset 3 of thread")
            && stderr.contains(&format!("which process {pid} does not have")),
        "{stderr}"
    );
    assert_eq!(
        before.changes_to(&ringplan_exec::test_hooks::ProcessState::capture_of(
            target.pid
        )),
        Vec::<String>::new()
    );
    assert!(target.answers());
}

/// No way in puts a ring into another ring's registered file table (so a
/// ring reachable only through one cannot exist, and the image has no
/// such case): `tests/programs/ring_in_file_table.c` tries each, and a
/// later kernel that accepts one fails this test, to be noticed.
#[test]
fn the_kernel_refuses_a_ring_in_a_file_table() {
    let binary = crate::support::c_program("ring_in_file_table");
    let output = Command::new(binary).output().expect("running it");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answers: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let ebadf = -rustix::io::Errno::BADF.raw_os_error();
    // io_sqe_files_register and __io_sqe_files_update: io_is_uring_fops.
    for call in ["register_files", "register_files2", "files_update"] {
        assert_eq!(
            answers[call].as_i64(),
            Some(i64::from(ebadf)),
            "{call}: {answers}"
        );
    }
    // A direct open goes through io_install_fixed_file, which refuses a
    // ring with EBADF too; reopening a ring's anon inode by its /proc path
    // fails before that (ENXIO). MSG_RING's IORING_MSG_SEND_FD (6.2+)
    // sends a file from the source ring's table, which cannot hold a ring:
    // refused (EBADF for the empty source slot; EINVAL before 6.2).
    for call in ["openat_direct", "msg_ring_send_fd"] {
        assert!(
            answers[call].as_i64().is_some_and(|answer| answer < 0),
            "{call}: {answers}"
        );
    }
}
