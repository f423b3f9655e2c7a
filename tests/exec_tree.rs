//! `plan exec --pid ROOT` of a tree image against the real kernel: the
//! `shared` scenario's tree (a ring with an eventfd and a file, kept by
//! the parent and two children; a SINGLE_ISSUER ring all four keep; a
//! child's own ring registering the shared file) dumped with `--tree`,
//! then restored into a fresh tree of the same shape (`children:3`,
//! other pids), and the restored tree dumped again and compared with the
//! image, and with the kernel's view from outside: which fds of which
//! processes are one open file, and that each process maps the very
//! memory the ring lives in. Every step of every part failing leaves
//! every process as it was.

use std::collections::BTreeMap;

use ringplan_exec::test_hooks::ProcessState;
use ringplan_kernel::procfs::{maps, Process};
use serde_json::Value;

use crate::support::{
    kernel_has_no_mmap, moved_rings_where_needed, plan, plan_ok, scratch_dir, Scenario,
};

/// The pids of a scenario's tree: its process, then its children in the
/// order the JSON line lists them (fork order, so ascending pids).
fn tree_pids(scenario: &Scenario) -> Vec<u32> {
    let mut pids = vec![scenario.pid()];
    pids.extend(
        scenario.description["children"]
            .as_array()
            .expect("children")
            .iter()
            .map(|child| child["pid"].as_u64().expect("pid") as u32),
    );
    pids
}

fn json_view(image: &str) -> Value {
    serde_json::from_slice(&plan_ok(&["show", image, "--objects", "--format", "json"]))
        .expect("JSON view")
}

/// `(pid, fds)` of every holder of `object`, pids mapped through `map`.
fn holders(object: &Value, map: &BTreeMap<u64, u64>) -> Vec<(u64, Value)> {
    object["holders"]
        .as_array()
        .map(|holders| {
            holders
                .iter()
                .map(|holder| {
                    let pid = holder["pid"].as_u64().expect("pid");
                    (*map.get(&pid).unwrap_or(&pid), holder["fds"].clone())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Where `pid` maps `addr`: the mapping's inode and path.
fn mapping_at(pid: u32, addr: u64) -> Option<(u64, String)> {
    let text = maps::read(Process::Pid(pid)).expect("maps");
    text.lines()
        .filter_map(maps::MapsEntry::parse)
        .find(|entry| entry.start == addr)
        .map(|entry| (entry.inode, entry.path.to_owned()))
}

/// Dumps the `shared` scenario's tree, starts `children:3`, and returns
/// both with the image's path.
fn shared_tree_and_fresh_tree(test: &str) -> (Scenario, Scenario, String) {
    scenario_tree_and_fresh_tree("shared", test)
}

/// Dumps scenario `name`'s tree (three children), starts `children:3`,
/// and returns both with the image's path.
fn scenario_tree_and_fresh_tree(name: &str, test: &str) -> (Scenario, Scenario, String) {
    let original = Scenario::start(name);
    let dir = scratch_dir(test);
    let image = dir.join("tree.img").to_str().expect("utf-8").to_owned();
    let root = original.pid().to_string();
    plan_ok(&[
        "dump",
        "--pid",
        &root,
        "--tree",
        "--backend",
        "bpf",
        "-o",
        &image,
    ]);
    let fresh = Scenario::start("children:3");
    (original, fresh, image)
}

#[test]
fn a_tree_image_is_restored_into_a_fresh_tree_of_the_same_shape() {
    restore_into_a_fresh_tree("shared");
}

/// The same with the shared ring's own SQ thread: created in the first
/// process, as the original's was, and taken by the children.
#[test]
fn a_tree_with_a_shared_sqpoll_ring_is_restored_into_a_fresh_tree() {
    restore_into_a_fresh_tree("shared-sqpoll");
}

fn restore_into_a_fresh_tree(name: &str) {
    let (_original, fresh, image) =
        scenario_tree_and_fresh_tree(name, &format!("exec-tree-fresh-{name}"));
    let fresh_root = fresh.pid().to_string();
    let mut exec = vec!["exec", image.as_str(), "--pid", &fresh_root, "--verify"];
    exec.extend_from_slice(moved_rings_where_needed());
    let output = plan(&exec);
    let out = String::from_utf8_lossy(&output.stdout).into_owned();
    // The differences --verify finds are on stdout, the verdict on stderr.
    assert!(
        output.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Each process compared with its part of the image.
    assert!(out.starts_with("verified: process "), "{out}");
    for pid in tree_pids(&fresh) {
        assert!(out.contains(&format!("process {pid}: ")), "{out}");
    }

    // Each SQ thread in the process that had it (the one that set the
    // ring up), none elsewhere.
    let sq_threads = |pid: u32| {
        ringplan_kernel::procfs::task::io_threads(Process::Pid(pid))
            .expect("threads")
            .iter()
            .filter(|name| name.contains("(iou-sqp"))
            .count()
    };
    let restored = format!("{image}.restored");
    plan_ok(&[
        "dump",
        "--pid",
        &fresh_root,
        "--tree",
        "--backend",
        "bpf",
        "-o",
        &restored,
    ]);
    let before = json_view(&image);
    let after = json_view(&restored);
    // The recorded processes matched to the fresh ones as `plan exec`
    // matches them: in tree order, siblings by pid (which after a pid
    // wrap-around is not their fork order).
    let map: BTreeMap<u64, u64> = crate::support::tree_pids(&before)
        .into_iter()
        .zip(crate::support::tree_pids(&after))
        .collect();
    assert_eq!(map.len(), 4, "{map:?}");
    for (&recorded, &live) in &map {
        assert_eq!(
            sq_threads(recorded as u32),
            sq_threads(live as u32),
            "SQ threads of process {live} (the original's {recorded})"
        );
    }
    let objects = |view: &Value| view["objects"].as_array().expect("objects").clone();
    let (before_objects, after_objects) = (objects(&before), objects(&after));
    assert_eq!(before_objects.len(), after_objects.len());
    for (recorded, got) in before_objects.iter().zip(&after_objects) {
        let id = &recorded["id"];
        assert_eq!(recorded["kind"], got["kind"], "object {id}");
        assert_eq!(
            holders(recorded, &map),
            holders(got, &BTreeMap::new()),
            "object {id}: the same processes hold it at the same fds"
        );
        match recorded["kind"].as_str() {
            Some("ring") => check_ring(recorded, got, &map),
            Some("eventfd") => assert_eq!(recorded["count"], got["count"], "object {id}"),
            _ => assert_eq!(recorded["path"], got["path"], "object {id}"),
        }
    }
}

/// A restored ring: the same setup (created on placed memory, so
/// `NO_MMAP` added), tables and owner; its memory where every holder
/// mapped the original, and in every holder the same memory (one memfd
/// inode) as in the process that created it. On a kernel without
/// `NO_MMAP` (6.1) the rings are restored as kernel objects where the
/// kernel puts them (`--allow-moved-rings`): setup, tables and holders.
fn check_ring(recorded: &Value, got: &Value, map: &BTreeMap<u64, u64>) {
    const NO_MMAP: u64 = 1 << 14;
    let id = &recorded["id"];
    let flags = |ring: &Value| ring["setup"]["flags"].as_u64().expect("flags");
    for field in ["files", "eventfd", "file_slots"] {
        assert_eq!(recorded[field], got[field], "ring {id}: {field}");
    }
    if !kernel_has_no_mmap() {
        assert_eq!(flags(recorded), flags(got), "ring {id}");
        return;
    }
    assert_eq!(flags(recorded) | NO_MMAP, flags(got), "ring {id}");
    let owner = |ring: &Value| ring["state"]["owner_tid"].as_u64();
    assert_eq!(
        owner(recorded).map(|tid| *map.get(&tid).unwrap_or(&tid)),
        owner(got),
        "ring {id}: owner"
    );
    let memory = &got["state"]["memory"];
    let mut inodes = BTreeMap::new();
    for holder in recorded["holders"].as_array().expect("holders") {
        let pid = holder["pid"].as_u64().expect("pid");
        let live = *map.get(&pid).unwrap_or(&pid) as u32;
        for mapping in holder["mappings"].as_array().expect("mappings") {
            let addr = mapping["addr"].as_u64().expect("addr");
            let region = if mapping["region"] == "sqes" {
                "sqes"
            } else {
                "rings"
            };
            assert_eq!(
                memory[region]["addr"].as_u64(),
                Some(addr),
                "ring {id}: its {region} where process {pid} mapped them"
            );
            let (inode, path) = mapping_at(live, addr)
                .unwrap_or_else(|| panic!("ring {id}: process {live} maps nothing at {addr:#x}"));
            assert!(path.contains("ringplan-ring"), "ring {id}: {path}");
            let first = *inodes.entry(region).or_insert(inode);
            assert_eq!(
                first, inode,
                "ring {id}: process {live} maps other memory at {addr:#x}"
            );
        }
    }
}

/// `--dry-run` holds and checks every process, changes none, and says
/// what each part would do.
#[test]
fn a_tree_dry_run_checks_every_process_and_changes_none() {
    let (_original, fresh, image) = shared_tree_and_fresh_tree("exec-tree-dry-run");
    let pids = tree_pids(&fresh);
    let before: Vec<ProcessState> = pids
        .iter()
        .map(|&pid| ProcessState::capture_of(pid))
        .collect();
    let root = fresh.pid().to_string();
    let mut args = vec!["exec", image.as_str(), "--pid", &root, "--dry-run"];
    args.extend_from_slice(moved_rings_where_needed());
    let out = String::from_utf8(plan_ok(&args)).expect("utf-8");
    for pid in &pids {
        assert!(
            out.contains(&format!("process {pid} (the plan's process")),
            "{out}"
        );
    }
    for (pid, state) in pids.iter().zip(&before) {
        assert_eq!(
            state.changes_to(&ProcessState::capture_of(*pid)),
            Vec::<String>::new(),
            "process {pid} changed"
        );
    }
}

/// Every step of every part failing undoes everything in every process
/// (the fds and maps of all four as they were), and the tree restores
/// after all of them.
#[test]
fn a_failure_in_any_part_undoes_every_part() {
    let (_original, fresh, image) = shared_tree_and_fresh_tree("exec-tree-fail");
    let pids = tree_pids(&fresh);
    let before: Vec<ProcessState> = pids
        .iter()
        .map(|&pid| ProcessState::capture_of(pid))
        .collect();
    let decoded =
        ringplan_image::decode_slice(&std::fs::read(&image).expect("image")).expect("decodes");
    let compiled = ringplan_plan::compile(&decoded).expect("the tree plans");
    let step_counts: Vec<usize> = std::iter::once(compiled.steps.len())
        .chain(compiled.processes.iter().map(|part| part.plan.steps.len()))
        .collect();
    assert_eq!(step_counts.len(), 4);
    let root = fresh.pid().to_string();
    for (part, &steps) in step_counts.iter().enumerate() {
        let part_text = part.to_string();
        for step in 0..steps {
            let step_text = step.to_string();
            let mut args = vec![
                "exec",
                image.as_str(),
                "--pid",
                &root,
                "--fail-part",
                &part_text,
                "--fail-at",
                &step_text,
            ];
            args.extend_from_slice(moved_rings_where_needed());
            let output = plan(&args);
            let stderr = String::from_utf8_lossy(&output.stderr);
            let at = format!("part {part} step {step}");
            assert_eq!(output.status.code(), Some(1), "{at}: {stderr}");
            assert!(stderr.contains("injected failure"), "{at}: {stderr}");
            assert!(!stderr.contains("left changes"), "{at}: {stderr}");
            for (pid, state) in pids.iter().zip(&before) {
                assert_eq!(
                    state.changes_to(&ProcessState::capture_of(*pid)),
                    Vec::<String>::new(),
                    "{at}: process {pid} changed"
                );
            }
        }
    }
    let mut exec = vec!["exec", image.as_str(), "--pid", &root];
    exec.extend_from_slice(moved_rings_where_needed());
    plan_ok(&exec);
}

/// A tree of another shape, a tree plan run in one process, and what
/// tree restores do not do yet: refused in one line, exit 2, nothing
/// done.
#[test]
fn tree_plan_refusals() {
    let (_original, _fresh, image) = shared_tree_and_fresh_tree("exec-tree-refusals");
    let smaller = Scenario::start("children:2");
    let smaller_root = smaller.pid().to_string();
    let refused = |args: &[&str], wanted: &str| {
        let output = plan(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(wanted), "{args:?}: {stderr}");
    };
    let before = ProcessState::capture_of(smaller.pid());
    refused(
        &["exec", &image, "--pid", &smaller_root],
        "has 2 children, but the plan's process",
    );
    assert!(before
        .changes_to(&ProcessState::capture_of(smaller.pid()))
        .is_empty());
    refused(&["exec", &image], "restores a tree of 4 processes");
    // The caller's fds cannot go into a tree any more than into a process.
    refused(
        &[
            "exec",
            &image,
            "--pid",
            &smaller_root,
            "--input",
            "5=/dev/null",
        ],
        "input",
    );
}
