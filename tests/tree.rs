//! `plan dump --tree` against the real kernel: the `shared` and
//! `shared-sqpoll` scenarios (a ring with a registered eventfd and file,
//! shared by the scenario's process and three forked children: one that
//! keeps it, one that closed and unmapped its copy, one with a ring of its
//! own beside it; in `shared`, a SINGLE_ISSUER ring all four keep, owned
//! by the parent's thread) dumped with each backend, and the image's objects and
//! holders compared with the kernel's own sharing, seen from outside:
//! `kcmp(KCMP_FILE)` tells which fds of which processes are one open file,
//! `/proc/PID/maps` where each process maps each ring.
//!
//! `exec_tree.rs` restores such an image into another tree.
//!
//! Its own test binary (`RINGPLAN_VM_BINARIES="tree" ./scripts/test-vm`).

#[path = "support/mod.rs"]
mod support;

mod exec_tree;

use std::collections::{BTreeMap, BTreeSet};

use ringplan_kernel::procfs::fd::{FdKind, ProcessFds};
use ringplan_kernel::procfs::{maps, Process};
use serde_json::Value;

use support::{fdinfo_backend_refusal, plan, plan_ok, scratch_dir, Scenario};

/// A set of (pid, fd): who holds one open file.
type Holders = BTreeSet<(u32, i32)>;

/// Whether fd `fd1` of `pid1` and fd `fd2` of `pid2` are one open file.
fn same_file(pid1: u32, fd1: i32, pid2: u32, fd2: i32) -> bool {
    ringplan_kernel::kcmp::same_file(pid1, fd1, pid2, fd2)
        .unwrap_or_else(|errno| panic!("kcmp({pid1}, {pid2}, KCMP_FILE, {fd1}, {fd2}): {errno}"))
}

/// The kernel's view of a tree: every open file that is a ring or an
/// eventfd, or the fd `data_fd` (the scenario's registered file), as the
/// set of (pid, fd) that hold it; each ring's inode with them.
struct KernelView {
    rings: Vec<(u64, Holders)>,
    others: Vec<Holders>,
}

fn kernel_view(pids: &[u32], data_fd: i32) -> KernelView {
    let mut classes: Vec<(FdKind, Option<u64>, Holders)> = Vec::new();
    for &pid in pids {
        let mut fds = ProcessFds::open(Process::Pid(pid)).expect("reading /proc/PID/fd");
        for fd in fds.fd_numbers().expect("listing fds") {
            let link = fds.read_link(fd).expect("readlink").map(<[u8]>::to_vec);
            let Some(link) = link else { continue };
            let kind = FdKind::of_link(&link);
            if !matches!(kind, FdKind::Ring | FdKind::Eventfd) && fd != data_fd {
                continue;
            }
            let inode = fds.inode(fd).expect("stat").map(|inode| inode.ino);
            let class = classes.iter_mut().find(|(class_kind, _, holders)| {
                *class_kind == kind
                    && holders.iter().next().is_some_and(|&(other_pid, other_fd)| {
                        same_file(pid, fd, other_pid, other_fd)
                    })
            });
            match class {
                Some((_, _, holders)) => {
                    holders.insert((pid, fd));
                }
                None => classes.push((kind, inode, BTreeSet::from([(pid, fd)]))),
            }
        }
    }
    let mut view = KernelView {
        rings: Vec::new(),
        others: Vec::new(),
    };
    for (kind, inode, holders) in classes {
        match kind {
            FdKind::Ring => view.rings.push((inode.expect("a ring's inode"), holders)),
            _ => view.others.push(holders),
        }
    }
    view
}

/// The (pid, fd) pairs an object's `holders` list.
fn holders_of(object: &Value) -> Holders {
    object["holders"]
        .as_array()
        .expect("a tree image's objects have holders")
        .iter()
        .flat_map(|holder| {
            let pid = holder["pid"].as_u64().expect("pid") as u32;
            holder["fds"]
                .as_array()
                .expect("fds")
                .iter()
                .map(move |fd| (pid, fd.as_i64().expect("fd") as i32))
        })
        .collect()
}

/// Where each process maps the ring whose anonymous inode is `inode`:
/// pid -> start addresses (`/proc/PID/maps`).
fn kernel_mappings(pids: &[u32], inode: u64) -> BTreeMap<u32, BTreeSet<u64>> {
    let mut found = BTreeMap::new();
    for &pid in pids {
        let text = maps::read(Process::Pid(pid)).expect("reading maps");
        let starts: BTreeSet<u64> = text
            .lines()
            .filter_map(maps::MapsEntry::parse)
            .filter(|entry| entry.inode == inode && entry.path.contains("io_uring"))
            .map(|entry| entry.start)
            .collect();
        if !starts.is_empty() {
            found.insert(pid, starts);
        }
    }
    found
}

fn image_mappings(object: &Value) -> BTreeMap<u32, BTreeSet<u64>> {
    object["holders"]
        .as_array()
        .expect("holders")
        .iter()
        .filter_map(|holder| {
            let starts: BTreeSet<u64> = holder["mappings"]
                .as_array()
                .expect("mappings")
                .iter()
                .map(|mapping| mapping["addr"].as_u64().expect("addr"))
                .collect();
            (!starts.is_empty()).then(|| (holder["pid"].as_u64().expect("pid") as u32, starts))
        })
        .collect()
}

fn child_pid(scenario: &Scenario, role: &str) -> u32 {
    scenario.description["children"]
        .as_array()
        .expect("children")
        .iter()
        .find(|child| child["role"] == role)
        .and_then(|child| child["pid"].as_u64())
        .unwrap_or_else(|| panic!("no {role} child")) as u32
}

/// Dumps the tree of `scenario` and checks the image against the kernel.
fn check_tree(scenario_name: &str, backend: &str, extra: &[&str]) {
    let scenario = Scenario::start(scenario_name);
    let root = scenario.pid();
    let keeper = child_pid(&scenario, "keeper");
    let closer = child_pid(&scenario, "closer");
    let own = child_pid(&scenario, "own-ring");
    let pids = [root, keeper, closer, own];
    let dir = scratch_dir(&format!("tree-{scenario_name}-{backend}"));
    let image = dir.join("tree.img");
    let image = image.to_str().expect("utf-8 path");
    let root_text = root.to_string();
    let mut args = vec![
        "dump",
        "--pid",
        &root_text,
        "--tree",
        "--backend",
        backend,
        "-o",
        image,
    ];
    args.extend_from_slice(extra);
    plan_ok(&args);
    let view: Value =
        serde_json::from_slice(&plan_ok(&["show", image, "--objects", "--format", "json"]))
            .expect("JSON view");
    assert_eq!(view["version"], ringplan_image::FORMAT_VERSION);
    let listed = support::tree_pids(&view);
    assert_eq!(
        listed.iter().copied().collect::<BTreeSet<_>>(),
        pids.iter()
            .map(|&pid| u64::from(pid))
            .collect::<BTreeSet<_>>()
    );
    assert_eq!(listed[0], u64::from(root));

    let data_fd = scenario.description["files"][0]["fd"]
        .as_i64()
        .expect("the data file's fd") as i32;
    let kernel = kernel_view(&pids, data_fd);
    let objects = view["objects"].as_array().expect("objects");
    let rings: Vec<&Value> = objects.iter().filter(|o| o["kind"] == "ring").collect();

    // Rings: exactly the kernel's, each held by exactly the processes and
    // fds that kcmp says hold it, mapped where /proc/PID/maps says.
    assert_eq!(rings.len(), kernel.rings.len(), "{view:#}");
    for (inode, holders) in &kernel.rings {
        let ring = rings
            .iter()
            .find(|ring| holders_of(ring) == *holders)
            .unwrap_or_else(|| panic!("no ring of the image is held by {holders:?}: {view:#}"));
        assert_eq!(
            image_mappings(ring),
            kernel_mappings(&pids, *inode),
            "ring {} mappings",
            ring["id"]
        );
        // The object's own fds are the dumped process's.
        let root_fds: Vec<i64> = holders
            .iter()
            .filter(|(pid, _)| *pid == root)
            .map(|(_, fd)| i64::from(*fd))
            .collect();
        let fds: Vec<i64> = ring["fds"]
            .as_array()
            .expect("fds")
            .iter()
            .map(|fd| fd.as_i64().expect("fd"))
            .collect();
        assert_eq!(fds, root_fds);
    }
    // The shared ring: root, keeper, own-ring; not the closer, which holds
    // no fd and no mapping of it (the kernel agrees: checked above).
    let pids_of =
        |ring: &Value| -> BTreeSet<u32> { holders_of(ring).iter().map(|(pid, _)| *pid).collect() };
    let shared = rings
        .iter()
        .find(|ring| pids_of(ring) == BTreeSet::from([root, keeper, own]))
        .expect("the shared ring, held by all but the closer");
    let own_ring = rings
        .iter()
        .find(|ring| pids_of(ring) == BTreeSet::from([own]))
        .expect("the child's own ring");
    // `shared`: a SINGLE_ISSUER ring every process keeps, owned by the
    // scenario's main thread, so by the dumped process.
    let owned = rings
        .iter()
        .find(|ring| pids_of(ring) == BTreeSet::from(pids));
    assert_eq!(owned.is_some(), scenario_name == "shared", "{view:#}");
    assert_eq!(rings.len(), if owned.is_some() { 3 } else { 2 });
    if let (Some(owned), "bpf") = (owned, backend) {
        assert_eq!(owned["state"]["owner_tid"], root, "{owned:#}");
        for holder in owned["holders"].as_array().expect("holders") {
            assert_eq!(holder["owner"], holder["pid"] == root, "{holder:#}");
        }
        for holder in shared["holders"].as_array().expect("holders") {
            assert_eq!(holder["owner"], false, "{holder:#}");
        }
    }
    if scenario_name == "shared-sqpoll" && backend == "bpf" {
        assert_ne!(shared["sq_group"], Value::Null);
    }
    if backend == "bpf" {
        // The keeper's thread registered the shared ring's fd in a slot of
        // its own: its holder says so, no other, and the ring's own list
        // is the dumped process's (none).
        let slot = scenario.description["children"]
            .as_array()
            .expect("children")
            .iter()
            .find(|child| child["role"] == "keeper")
            .map(|child| child["ring_fd_slot"].clone())
            .expect("the keeper");
        assert_eq!(slot, 2, "{}", scenario.description);
        for holder in shared["holders"].as_array().expect("holders") {
            let expected = if holder["pid"] == keeper {
                serde_json::json!([{"tid": keeper, "offset": slot}])
            } else {
                serde_json::json!([])
            };
            assert_eq!(holder["registered_ring_fds"], expected, "{holder:#}");
        }
        assert_eq!(
            shared["registered_ring_fds"],
            serde_json::json!([]),
            "{shared:#}"
        );
    }

    match backend {
        "bpf" => {
            // The eventfd and the file: one object each, held as kcmp says.
            for holders in &kernel.others {
                let object = objects
                    .iter()
                    .find(|object| object["kind"] != "ring" && holders_of(object) == *holders)
                    .unwrap_or_else(|| panic!("no object is held by {holders:?}: {view:#}"));
                assert_eq!(object["fds"].as_array().map(Vec::len), Some(1));
            }
            assert_eq!(objects.len(), rings.len() + kernel.others.len(), "{view:#}");
            // Both rings register the one data file: one object.
            assert_eq!(shared["files"][0]["object"], own_ring["files"][0]["object"]);
            // The registered eventfd is the one the processes hold.
            let eventfd = objects
                .iter()
                .find(|object| object["kind"] == "eventfd")
                .expect("the eventfd");
            assert_eq!(shared["eventfd"]["object"], eventfd["id"]);
            assert_eq!(holders_of(eventfd).len(), pids.len());
        }
        _ => {
            // fdinfo cannot tell which open file a registered slot holds:
            // each slot is a file of its own, held by no process.
            for object in objects.iter().filter(|object| object["kind"] == "file") {
                assert_eq!(holders_of(object), Holders::new());
            }
        }
    }

    // The text view names the processes.
    let text = String::from_utf8(plan_ok(&["show", image, "--objects"])).expect("utf-8");
    for pid in pids {
        assert!(text.contains(&pid.to_string()), "{text}");
    }
    assert!(
        text.contains(&format!("{closer} (child of {root})")),
        "{text}"
    );
    // Every process runs on after the dump (a --freeze let them all go).
    for pid in pids {
        let stat = ringplan_kernel::procfs::stat::read(Process::Pid(pid)).expect("stat");
        assert!(!stat.is_stopped(), "process {pid} was left stopped");
    }
}

/// Whether the fdinfo backend reads this kernel; where it does not (6.1,
/// 6.12), a tree dump with it must be refused as a single dump is, with
/// nothing written; asked with `--freeze`, the refusal comes after every
/// process is held (the backend checks the format as it reads), and every
/// process must be let go.
fn fdinfo_usable(scenario_name: &str) -> bool {
    let Some(refusal) = fdinfo_backend_refusal() else {
        return true;
    };
    let scenario = Scenario::start(scenario_name);
    let dir = scratch_dir(&format!("tree-{scenario_name}-fdinfo-refused"));
    let image = dir.join("tree.img");
    let output = plan(&[
        "dump",
        "--pid",
        &scenario.pid().to_string(),
        "--tree",
        "--backend",
        "fdinfo",
        "--freeze=signal",
        "-o",
        image.to_str().expect("utf-8 path"),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "fdinfo must be refused here: {refusal}"
    );
    assert!(stderr.contains(&refusal), "{refusal:?} not in: {stderr}");
    assert!(!image.exists());
    let children = scenario.description["children"]
        .as_array()
        .expect("children");
    let pids = children
        .iter()
        .map(|child| child["pid"].as_u64().expect("pid") as u32)
        .chain([scenario.pid()]);
    for pid in pids {
        let stat = ringplan_kernel::procfs::stat::read(Process::Pid(pid)).expect("stat");
        assert!(
            !stat.is_stopped(),
            "process {pid} was left stopped after the refusal"
        );
    }
    eprintln!("fdinfo backend refused for a tree on this kernel, as it must be: {refusal}");
    false
}

#[test]
fn a_shared_ring_is_one_object_held_by_each_process_bpf() {
    check_tree("shared", "bpf", &[]);
}

#[test]
fn a_shared_sqpoll_ring_is_one_object_held_by_each_process_bpf_frozen() {
    check_tree("shared-sqpoll", "bpf", &["--freeze"]);
}

#[test]
fn a_shared_ring_is_one_object_held_by_each_process_fdinfo() {
    if fdinfo_usable("shared") {
        check_tree("shared", "fdinfo", &["--freeze=signal"]);
    }
}

#[test]
fn a_shared_sqpoll_ring_is_one_object_held_by_each_process_fdinfo() {
    if fdinfo_usable("shared-sqpoll") {
        check_tree("shared-sqpoll", "fdinfo", &[]);
    }
}

/// What is not done for trees is refused in one line, exit 2, with
/// nothing written and the processes left running.
#[test]
fn tree_refusals() {
    let scenario = Scenario::start("shared");
    let root = scenario.pid().to_string();
    let dir = scratch_dir("tree-refusals");
    let image = dir.join("tree.img");
    let image_text = image.to_str().expect("utf-8 path");

    // `--tree --detach` (tests/detach_tree.rs) needs -o, as `--detach`.
    let detach = plan(&["dump", "--pid", &root, "--tree", "--detach"]);
    assert_eq!(detach.status.code(), Some(2));

    // The tree shares a cgroup, so its cgroup freezer would hold others.
    let cgroup = plan(&[
        "dump",
        "--pid",
        &root,
        "--tree",
        "--freeze=cgroup",
        "-o",
        image_text,
    ]);
    assert_eq!(
        cgroup.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&cgroup.stderr)
    );
    assert!(!image.exists());
    for child in scenario.description["children"]
        .as_array()
        .expect("children")
    {
        let pid = child["pid"].as_u64().expect("pid") as u32;
        let stat = ringplan_kernel::procfs::stat::read(Process::Pid(pid)).expect("stat");
        assert!(!stat.is_stopped(), "process {pid} was left stopped");
    }

    plan_ok(&[
        "dump",
        "--pid",
        &root,
        "--tree",
        "--backend",
        "bpf",
        "-o",
        image_text,
    ]);
    // A tree image plans (tests/exec_tree.rs restores it): one part per
    // process, a tree plan of version 3.
    let plan_path = dir.join("tree.plan");
    plan_ok(&[
        "compile",
        image_text,
        "-o",
        plan_path.to_str().expect("utf-8"),
    ]);
    let compiled: Value = serde_json::from_slice(&plan_ok(&[
        "show",
        plan_path.to_str().expect("utf-8"),
        "--format",
        "json",
    ]))
    .expect("JSON view");
    assert_eq!(compiled["version"], 3);
    assert_eq!(compiled["processes"].as_array().map(Vec::len), Some(3));
}

/// A child that has exited and waits to be reaped (a zombie) holds
/// nothing: the tree is dumped without it.
#[test]
fn a_zombie_child_is_left_out_of_the_tree() {
    let scenario = Scenario::start("shared");
    let root = scenario.pid();
    let keeper = child_pid(&scenario, "keeper");
    // The scenario reaps its children only when it ends.
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(keeper as i32).expect("a pid"),
        rustix::process::Signal::KILL,
    )
    .expect("SIGKILL the keeper");
    for _ in 0..500 {
        let stat = ringplan_kernel::procfs::stat::read(Process::Pid(keeper)).expect("stat");
        if stat.has_exited() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let dir = scratch_dir("tree-zombie");
    let image = dir.join("tree.img");
    let image = image.to_str().expect("utf-8 path");
    plan_ok(&[
        "dump",
        "--pid",
        &root.to_string(),
        "--tree",
        "--backend",
        "bpf",
        "-o",
        image,
    ]);
    let view: Value =
        serde_json::from_slice(&plan_ok(&["show", image, "--objects", "--format", "json"]))
            .expect("JSON view");
    let listed = support::tree_pids(&view);
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(!listed.contains(&u64::from(keeper)));
}
