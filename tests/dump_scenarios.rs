//! `plan app` scenarios, dumped with each backend, checked against what the
//! scenario says it built: every ring's setup, SQ thread sharing, wq parent,
//! eventfd, registered files by slot and path, buffers by slot, address and
//! length, mappings, personalities (ids, the next id, and the credentials
//! of the thread that registered them), restrictions and buffer rings
//! (bgid, entries, memory address, head: compared with the kernel's
//! `IORING_REGISTER_PBUF_STATUS` where it has it).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::support::{
    dump_json, expect_fdinfo_refusal, fdinfo_backend_refusal, kernel_shows_registered_file_paths,
    objects_of_kind, scratch_dir, Scenario,
};

const SQPOLL: u64 = 1 << 1;
const SQ_AFF: u64 = 1 << 2;
const ATTACH_WQ: u64 = 1 << 5;

fn object_by_id(view: &Value, id: &Value) -> Value {
    view["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .find(|object| object["id"] == *id)
        .unwrap_or_else(|| panic!("no object with id {id}"))
        .clone()
}

fn holds_fd(object: &Value, fd: &Value) -> bool {
    object["fds"].as_array().expect("fds").contains(fd)
}

/// Checks a JSON object view against a scenario description.
fn check_dump(view: &Value, description: &Value, backend: &str) {
    let exact = backend == "bpf";
    let rings = objects_of_kind(view, "ring");
    let described: Vec<&Value> = description["rings"]
        .as_array()
        .expect("rings")
        .iter()
        .filter(|ring| !ring["fd"].is_null())
        .collect();
    assert_eq!(rings.len(), described.len(), "number of rings");
    let closed: BTreeSet<i64> = description["closed_fds"]
        .as_array()
        .expect("closed_fds")
        .iter()
        .filter_map(Value::as_i64)
        .collect();
    let ring_at = |fd: &Value| {
        rings
            .iter()
            .copied()
            .find(|ring| holds_fd(ring, fd))
            .unwrap_or_else(|| panic!("no ring holds fd {fd}"))
    };
    let mut group_map: BTreeMap<String, String> = BTreeMap::new();
    for want in &described {
        let got = ring_at(&want["fd"]);
        let context = format!("ring at fd {}", want["fd"]);
        for dup in want["dup_fds"].as_array().expect("dup_fds") {
            assert!(holds_fd(got, dup), "{context}: dup fd {dup} missing");
        }
        let flags = want["setup"]["flags"].as_u64().expect("flags");
        let setup = &got["setup"];
        assert_eq!(
            setup["sq_entries"], want["setup"]["sq_entries"],
            "{context}: sq_entries"
        );
        assert_eq!(
            setup["cq_entries"], want["setup"]["cq_entries"],
            "{context}: cq_entries"
        );
        if exact {
            assert_eq!(setup["flags"], flags, "{context}: flags");
            let cpu = if flags & SQ_AFF != 0 {
                want["setup"]["sq_thread_cpu"].clone()
            } else {
                Value::Null
            };
            assert_eq!(setup["sq_thread_cpu"], cpu, "{context}: sq_thread_cpu");
            let idle = if flags & SQPOLL != 0 {
                want["setup"]["sq_thread_idle_ms"].clone()
            } else {
                Value::Null
            };
            assert_eq!(
                setup["sq_thread_idle_ms"], idle,
                "{context}: sq_thread_idle_ms"
            );
            assert_eq!(got["unknown"], serde_json::json!([]), "{context}: unknown");
        } else {
            assert_eq!(
                setup["flags"],
                Value::Null,
                "{context}: fdinfo cannot know flags"
            );
            let unknown = got["unknown"].as_array().expect("unknown");
            for field in ["flags", "sq_thread_idle_ms", "eventfd"] {
                assert!(
                    unknown.contains(&Value::from(field)),
                    "{context}: {field} should be unknown"
                );
            }
        }

        // SQ thread sharing: the same partition of rings into groups.
        match (want["sq_group"].is_null(), got["sq_group"].is_null()) {
            (true, true) => {}
            (false, false) => {
                let (want_group, got_group) =
                    (want["sq_group"].to_string(), got["sq_group"].to_string());
                let previous = group_map.insert(want_group.clone(), got_group.clone());
                assert!(
                    previous.is_none_or(|previous| previous == got_group),
                    "{context}: sq_group split"
                );
            }
            _ => panic!(
                "{context}: sq_group {} vs described {}",
                got["sq_group"], want["sq_group"]
            ),
        }
        if exact {
            let creator_alive = described.iter().find(|ring| ring["fd"] == want["sq_group"]);
            let expected_parent = match creator_alive {
                Some(creator) if flags & ATTACH_WQ != 0 && flags & SQPOLL != 0 => {
                    ring_at(&creator["fd"])["id"].clone()
                }
                _ => Value::Null,
            };
            assert_eq!(got["wq_parent"], expected_parent, "{context}: wq_parent");
        }

        // The registered eventfd, its counter and its fd if still open.
        match (&want["eventfd"], exact) {
            (Value::Null, true) => assert_eq!(got["eventfd"], Value::Null, "{context}: eventfd"),
            (registered, true) => {
                let eventfd = object_by_id(view, &got["eventfd"]["object"]);
                assert_eq!(
                    got["eventfd"]["async"], registered["async"],
                    "{context}: eventfd async"
                );
                let known = description["eventfds"]
                    .as_array()
                    .expect("eventfds")
                    .iter()
                    .find(|candidate| candidate["fd"] == registered["fd"])
                    .expect("the registered eventfd is described");
                assert_eq!(eventfd["count"], known["count"], "{context}: eventfd count");
                assert_eq!(
                    eventfd["semaphore"], known["semaphore"],
                    "{context}: eventfd semaphore"
                );
                assert_eq!(
                    holds_fd(&eventfd, &registered["fd"]),
                    known["open"] == true,
                    "{context}: eventfd fd"
                );
            }
            (_, false) => assert_eq!(got["eventfd"], Value::Null, "{context}: fdinfo eventfd"),
        }

        // Registered files: same size, same occupied slots, same paths; the
        // file is held at its fd unless the scenario closed it.
        let want_files = want["files"].as_array().expect("files");
        assert_eq!(got["file_slots"], want_files.len(), "{context}: file_slots");
        let got_files: BTreeMap<u64, Value> = got["files"]
            .as_array()
            .expect("files")
            .iter()
            .map(|slot| {
                (
                    slot["index"].as_u64().expect("index"),
                    slot["object"].clone(),
                )
            })
            .collect();
        let occupied: Vec<u64> = want_files
            .iter()
            .enumerate()
            .filter(|(_, slot)| !slot.is_null())
            .map(|(index, _)| index as u64)
            .collect();
        assert_eq!(
            got_files.keys().copied().collect::<Vec<_>>(),
            occupied,
            "{context}: occupied file slots"
        );
        for (index, slot) in want_files
            .iter()
            .enumerate()
            .filter(|(_, slot)| !slot.is_null())
        {
            let object = object_by_id(view, &got_files[&(index as u64)]);
            // Pipes and sockets have no path; readlink names them "pipe:[N]".
            let mut path = slot["path"]
                .as_str()
                .filter(|path| path.starts_with('/'))
                .map_or(Value::Null, Value::from);
            // A file only the ring holds: its path comes from fdinfo, which
            // on 6.1 shows only its name, so it must be unknown there.
            if closed.contains(&slot["fd"].as_i64().expect("fd"))
                && !kernel_shows_registered_file_paths()
            {
                path = Value::Null;
            }
            assert_eq!(object["path"], path, "{context}: path of file slot {index}");
            if exact {
                let open = !closed.contains(&slot["fd"].as_i64().expect("fd"));
                assert_eq!(
                    holds_fd(&object, &slot["fd"]),
                    open,
                    "{context}: file slot {index} held at fd {}",
                    slot["fd"]
                );
            }
        }

        // Buffers: exact slots, addresses and lengths.
        let want_buffers: Vec<Value> = want["buffers"]
            .as_array()
            .expect("buffers")
            .iter()
            .enumerate()
            .filter(|(_, slot)| !slot.is_null())
            .map(|(index, slot)| serde_json::json!({"index": index, "addr": slot["addr"], "len": slot["len"]}))
            .collect();
        assert_eq!(
            got["buffer_slots"],
            want["buffers"].as_array().expect("buffers").len(),
            "{context}: buffer_slots"
        );
        assert_eq!(
            got["buffers"].as_array().expect("buffers"),
            &want_buffers,
            "{context}: buffers"
        );

        check_personalities(view, got, want, exact, &context);
        check_pbuf_rings(view, got, want, exact, &context);
        check_settings(view, got, want, exact, &context);
        if exact {
            // The description's restrictions are what was registered
            // (null when none); the ring's R_DISABLED is in its flags.
            assert_eq!(
                got["restrictions"], want["restrictions"],
                "{context}: restrictions"
            );
        } else {
            let unknown = got["unknown"].as_array().expect("unknown");
            assert!(
                unknown.iter().any(|field| field == "restrictions"),
                "{context}: the fdinfo backend cannot read restrictions"
            );
        }

        // The scenario says how many bytes it asked mmap for; the maps show
        // whole pages.
        let sorted = |mappings: &Value| {
            let mut list: Vec<(String, u64, u64)> = mappings
                .as_array()
                .expect("mappings")
                .iter()
                .map(|mapping| {
                    let len = mapping["len"].as_u64().expect("len");
                    (
                        mapping["region"].to_string(),
                        mapping["addr"].as_u64().expect("addr"),
                        len.div_ceil(4096) * 4096,
                    )
                })
                .collect();
            list.sort();
            list
        };
        assert_eq!(
            sorted(&got["mappings"]),
            sorted(&want["mappings"]),
            "{context}: mappings"
        );
    }
}

/// The fdinfo backend cannot read `field` (`what`): the ring lists it as
/// unknown.
fn assert_left_unknown(got: &Value, field: &str, what: &str, context: &str) {
    let unknown = got["unknown"].as_array().expect("unknown");
    assert!(
        unknown.iter().any(|listed| listed == field),
        "{context}: the fdinfo backend cannot read {what}"
    );
}

/// A ring's personalities: the scenario's ids and next id, each with the
/// credentials of the scenario's main thread (which registered them), and
/// where the kernel's fdinfo lists them (6.1; 6.18 does not), the same
/// ids, uids, gids, groups and CapEff. The fdinfo backend leaves them
/// unknown.
fn check_personalities(view: &Value, got: &Value, want: &Value, exact: bool, context: &str) {
    use ringplan_kernel::procfs::{credentials, Process};
    if !exact {
        assert_left_unknown(got, "personalities", "personalities", context);
        return;
    }
    let ids: Vec<u64> = got["personalities"]
        .as_array()
        .expect("personalities")
        .iter()
        .map(|personality| personality["id"].as_u64().expect("id"))
        .collect();
    let want_ids: Vec<u64> = want["personalities"]
        .as_array()
        .expect("personalities")
        .iter()
        .map(|id| id.as_u64().expect("id"))
        .collect();
    assert_eq!(ids, want_ids, "{context}: personality ids");
    assert_eq!(
        got["personality_next"], want["personality_next"],
        "{context}: personality_next"
    );
    if ids.is_empty() {
        return;
    }
    let pid = u32::try_from(view["source"]["pid"].as_u64().expect("pid")).expect("pid");
    let thread = credentials::read_thread(Process::Pid(pid), pid).expect("the scenario's creds");
    for personality in got["personalities"].as_array().expect("personalities") {
        let id = &personality["id"];
        let uids = ["uid", "euid", "suid", "fsuid"].map(|key| personality[key].as_u64());
        let gids = ["gid", "egid", "sgid", "fsgid"].map(|key| personality[key].as_u64());
        assert_eq!(
            uids,
            thread.uids.map(|id| Some(u64::from(id))),
            "{context}: personality {id} uids"
        );
        assert_eq!(
            gids,
            thread.gids.map(|id| Some(u64::from(id))),
            "{context}: personality {id} gids"
        );
        assert_eq!(
            personality["groups"],
            serde_json::json!(thread.groups),
            "{context}: personality {id} groups"
        );
        for (key, value) in [
            ("cap_effective", thread.cap_effective),
            ("cap_permitted", thread.cap_permitted),
            ("cap_inheritable", thread.cap_inheritable),
            ("cap_bounding", thread.cap_bounding),
            ("cap_ambient", thread.cap_ambient),
        ] {
            assert_eq!(personality[key], value, "{context}: personality {id} {key}");
        }
    }
    let fd = got["fds"][0].as_i64().expect("fd");
    let path = std::path::PathBuf::from(format!("/proc/{pid}/fdinfo/{fd}"));
    let text = std::fs::read_to_string(&path).expect("fdinfo");
    let listed = credentials::fdinfo_personalities(&text, &path).expect("fdinfo personalities");
    if !listed.is_empty() {
        let listed_ids: Vec<u64> = listed.iter().map(|p| u64::from(p.id)).collect();
        assert_eq!(listed_ids, ids, "{context}: fdinfo's personality ids");
        for entry in &listed {
            assert_eq!(
                entry.uids, thread.uids,
                "{context}: fdinfo personality {} uids",
                entry.id
            );
            assert_eq!(
                entry.gids, thread.gids,
                "{context}: fdinfo personality {} gids",
                entry.id
            );
            assert_eq!(
                entry.groups, thread.groups,
                "{context}: fdinfo personality {} groups",
                entry.id
            );
            assert_eq!(
                entry.cap_effective, thread.cap_effective,
                "{context}: fdinfo CapEff"
            );
        }
    }
}

/// A ring's buffer rings: the scenario's bgids, entries, memory addresses
/// and heads, no legacy groups; where the kernel answers
/// `IORING_REGISTER_PBUF_STATUS` (6.8+), its head of each, asked through a
/// copy of the scenario's ring fd. The fdinfo backend leaves them unknown.
fn check_pbuf_rings(view: &Value, got: &Value, want: &Value, exact: bool, context: &str) {
    if !exact {
        assert_left_unknown(got, "pbuf_rings", "buffer rings", context);
        return;
    }
    let listed: Vec<Value> = got["pbuf_rings"]
        .as_array()
        .expect("pbuf_rings")
        .iter()
        .map(|entry| {
            serde_json::json!({"bgid": entry["bgid"], "entries": entry["entries"], "addr": entry["addr"], "head": entry["head"], "mmap": entry["mmap"]})
        })
        .collect();
    let wanted = want["pbuf_rings"].as_array().cloned().unwrap_or_default();
    assert_eq!(listed, wanted, "{context}: buffer rings");
    // Legacy groups (IORING_OP_PROVIDE_BUFFERS): every buffer the kernel
    // holds, in its list order (the image's runs unfolded).
    let legacy = want
        .get("legacy_buffer_groups")
        .cloned()
        .unwrap_or(serde_json::json!([]));
    let dumped: Vec<Value> = got["legacy_buffer_groups"]
        .as_array()
        .expect("legacy_buffer_groups")
        .iter()
        .map(|group| {
            let buffers: Vec<Value> = group["buffers"]
                .as_array()
                .expect("legacy buffers captured")
                .iter()
                .flat_map(|run| {
                    let (addr, len, bid, count) = (
                        run["addr"].as_u64().expect("addr"),
                        run["len"].as_u64().expect("len"),
                        run["bid"].as_u64().expect("bid"),
                        run["count"].as_u64().expect("count"),
                    );
                    (0..count).map(move |i| {
                        serde_json::json!({"addr": addr + i * len, "len": len, "bid": bid + i})
                    })
                })
                .collect();
            serde_json::json!({"bgid": group["bgid"], "buffers": buffers})
        })
        .collect();
    assert_eq!(Value::Array(dumped), legacy, "{context}: legacy groups");
    if wanted.is_empty() {
        return;
    }
    let pid = view["source"]["pid"].as_i64().expect("pid") as i32;
    let fd = want["fd"].as_i64().expect("fd") as i32;
    let pidfd = rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(pid).expect("pid"),
        rustix::process::PidfdFlags::empty(),
    )
    .expect("pidfd_open");
    let ring = rustix::process::pidfd_getfd(&pidfd, fd, rustix::process::PidfdGetfdFlags::empty())
        .expect("pidfd_getfd of the scenario's ring");
    for entry in &wanted {
        let bgid = entry["bgid"].as_u64().expect("bgid") as u16;
        match ringplan_kernel::probe::pbuf_head(std::os::fd::AsFd::as_fd(&ring), bgid)
            .expect("IORING_REGISTER_PBUF_STATUS")
        {
            Some(head) => assert_eq!(
                u64::from(head),
                entry["head"].as_u64().expect("head"),
                "{context}: the kernel's head of buffer ring {bgid}"
            ),
            None => eprintln!("{context}: this kernel has no IORING_REGISTER_PBUF_STATUS (6.8+)"),
        }
    }
}

/// A ring's registered settings: the scenario's file allocation range,
/// io-wq limits, NAPI and slot tags (each key absent from the image when
/// the scenario set none); NAPI also against the kernel's own fdinfo where
/// it shows it (6.9+). The fdinfo backend leaves them unknown.
fn check_settings(view: &Value, got: &Value, want: &Value, exact: bool, context: &str) {
    if !exact {
        assert_left_unknown(got, "settings", "settings", context);
        return;
    }
    let want = &want["settings"];
    let got_or = |key: &str, absent: Value| got.get(key).cloned().unwrap_or(absent);
    for key in ["file_alloc_range", "iowq_max_workers"] {
        assert_eq!(got_or(key, Value::Null), want[key], "{context}: {key}");
    }
    for key in ["file_tags", "buffer_tags"] {
        assert_eq!(
            got_or(key, serde_json::json!([])),
            want[key],
            "{context}: {key}"
        );
    }
    assert_eq!(
        got_or("wait_region", Value::Null),
        want["wait_region"],
        "{context}: wait region"
    );
    assert_eq!(
        got_or("iowq_affinity", Value::Null),
        want["iowq_affinity"],
        "{context}: io-wq affinity"
    );
    if let Some(missing) = want["iowq_affinity_missing"].as_str() {
        eprintln!("{context}: {missing}");
    }
    let napi = got_or("napi", Value::Null);
    if want["napi"].is_null() {
        assert!(napi.is_null(), "{context}: no NAPI");
        if let Some(missing) = want["napi_missing"].as_str() {
            eprintln!("{context}: {missing}");
        }
        return;
    }
    for key in ["busy_poll_us", "prefer_busy_poll", "tracking"] {
        assert_eq!(napi[key], want["napi"][key], "{context}: NAPI {key}");
    }
    // Static tracking: the ids the scenario added, in its order.
    if let Some(ids) = want["napi"].get("static_ids") {
        assert_eq!(&napi["static_ids"], ids, "{context}: NAPI ids");
        assert_eq!(napi["ids_listed"], true, "{context}: NAPI ids listed");
    }
    // The kernel's own view of the scenario's ring.
    use ringplan_kernel::procfs::{fdinfo, Process};
    let pid = view["source"]["pid"].as_u64().expect("pid") as u32;
    let fd = want_fd(got);
    let text = fdinfo::read(Process::Pid(pid), fd).expect("the ring's fdinfo");
    let shown =
        fdinfo::napi(&text).expect("a kernel with IORING_REGISTER_NAPI shows NAPI in fdinfo");
    assert!(shown.enabled, "{context}: fdinfo NAPI enabled");
    assert_eq!(
        shown.busy_poll_dt_ns,
        napi["busy_poll_us"].as_u64().map(|us| us * 1000),
        "{context}: fdinfo napi_busy_poll_dt"
    );
    assert_eq!(
        shown.prefer_busy_poll,
        napi["prefer_busy_poll"].as_bool(),
        "{context}: fdinfo napi_prefer_busy_poll"
    );
    if let Some(tracking) = shown.tracking {
        assert_eq!(
            Some(tracking.as_str()),
            napi["tracking"].as_str(),
            "{context}: fdinfo napi tracking"
        );
    }
}

/// The lowest fd at which the image's ring is held.
fn want_fd(ring: &Value) -> i32 {
    ring["fds"][0].as_i64().expect("the ring's fd") as i32
}

fn round(scenario: &str, backend: &str) {
    let process = Scenario::start(scenario);
    let dir = scratch_dir(&format!("dump-{}-{backend}", scenario.replace(':', "-")));
    if backend == "fdinfo" {
        if let Some(refusal) = fdinfo_backend_refusal() {
            return expect_fdinfo_refusal(process.pid(), &dir, &refusal);
        }
    }
    let view = dump_json(process.pid(), backend, &dir, &[]);
    assert_eq!(view["source"]["pid"], process.pid());
    assert_eq!(view["source"]["backend"], backend);
    check_dump(&view, &process.description, backend);
}

macro_rules! scenario_tests {
    ($($name:ident: $scenario:expr,)*) => {
        mod bpf {
            $(#[test] fn $name() { super::round($scenario, "bpf"); })*
        }
        mod fdinfo {
            $(#[test] fn $name() { super::round($scenario, "fdinfo"); })*
        }
    };
}

scenario_tests! {
    seed: "seed",
    chain_8: "chain:8",
    fanout_8: "fanout:8",
    files_1000: "files:1000",
    closed: "closed",
    creator_closed_3: "creator-closed:3",
    rings_64: "rings:64",
    mix: "mix",
    personalities_3: "personalities:3",
    restricted: "restricted",
    restricted_enabled: "restricted-enabled",
    pbuf: "pbuf",
    pbuf_legacy: "pbuf-legacy",
    // Three answers of the group walk (700 buffers each), compared whole.
    legacy_buffers_2000: "legacy-buffers:2000",
    legacy_empty: "legacy-empty",
    settings: "settings",
    iowq_affinity: "iowq-affinity",
    napi_static: "napi-static",
}

/// The io-wq affinity the `iowq-affinity` scenario registered is the one
/// the kernel applies, seen from outside: the worker its `IOSQE_ASYNC` NOP
/// started (`iou-wrk-PID`) may run only on the registered CPUs, while the
/// process's own threads and its SQ thread keep all of theirs (the
/// scenario round `bpf::iowq_affinity` compares the image with the
/// scenario; it is not run here, where it would share its scratch dir).
#[test]
fn iowq_affinity_is_where_the_workers_run() {
    let process = Scenario::start("iowq-affinity");
    let settings = &process.description["rings"][0]["settings"];
    let Some(cpus) = settings["iowq_affinity"]["cpus"].as_array() else {
        eprintln!("skipped: {}", settings["iowq_affinity_missing"]);
        return;
    };
    let cpus: Vec<u32> = cpus
        .iter()
        .filter_map(|cpu| cpu.as_u64())
        .map(|cpu| cpu as u32)
        .collect();
    use ringplan_kernel::procfs::cpus;
    let pid = process.pid();
    let mut workers = 0;
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks") {
        let tid: u32 = entry
            .expect("task")
            .file_name()
            .to_str()
            .and_then(|name| name.parse().ok())
            .expect("a tid");
        let comm =
            std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm")).unwrap_or_default();
        let allowed = cpus::allowed(pid, tid).expect("Cpus_allowed_list");
        if comm.starts_with("iou-wrk-") {
            workers += 1;
            assert_eq!(allowed, cpus, "{comm}: the io-wq worker's CPUs");
        } else {
            assert_eq!(allowed, cpus::online().expect("online CPUs"), "{comm}");
        }
    }
    assert!(workers >= 1, "the NOP started an io-wq worker");
}

#[test]
fn bpf_dumps_1000_buffer_rings_whole() {
    round("pbuf:1000", "bpf");
}

#[test]
fn bpf_dumps_1000_personalities_whole() {
    round("personalities:1000", "bpf");
}

#[test]
fn bpf_dumps_19000_registered_files_whole() {
    round("files:19000", "bpf");
}

#[test]
fn bpf_dumps_512_rings_whole() {
    round("rings:512", "bpf");
}

/// The seed scenario's image, pinned. Addresses, the pid and the kernel
/// release differ between runs and are redacted; everything else is exact.
#[test]
fn seed_image_snapshot() {
    let process = Scenario::start("seed");
    let dir = scratch_dir("seed-snapshot");
    let view = dump_json(process.pid(), "bpf", &dir, &[]);
    insta::assert_json_snapshot!("seed_image", view, {
        ".source.pid" => "[pid]",
        ".source.kernel_release" => "[kernel]",
        ".objects[].mappings[].addr" => "[addr]",
        ".objects[].buffers[].addr" => "[addr]",
        // IORING_SQ_NEED_WAKEUP comes and goes as the SQ thread sleeps
        // after its idle time and wakes.
        ".objects[].state.positions.sq_flags" => "[sq_flags]",
        // Each file's device and inode numbers are this run's.
        ".objects[].identity" => "[identity]",
    });
}

#[test]
fn selecting_a_ring_fd_brings_its_dependencies() {
    let process = Scenario::start("seed");
    let dir = scratch_dir("seed-select");
    let rings = process.description["rings"].as_array().expect("rings");
    let (parent_fd, child_fd) = (rings[0]["fd"].to_string(), rings[1]["fd"].to_string());

    let parent_only = dump_json(process.pid(), "bpf", &dir, &["--fd", &parent_fd]);
    assert_eq!(
        objects_of_kind(&parent_only, "ring").len(),
        1,
        "the parent depends on nothing"
    );
    assert_eq!(parent_only["objects"].as_array().expect("objects").len(), 1);

    let child = dump_json(process.pid(), "bpf", &dir, &["--fd", &child_fd]);
    assert_eq!(
        objects_of_kind(&child, "ring").len(),
        2,
        "the child brings the ring whose SQ thread it shares"
    );
    assert_eq!(
        objects_of_kind(&child, "eventfd").len(),
        1,
        "and its eventfd"
    );
    assert!(
        !objects_of_kind(&child, "file").is_empty(),
        "and its registered files"
    );
}

/// A buffer ring in kernel memory (`IOU_PBUF_RING_MMAP`, 6.4+) beside one
/// on the program's memory: both dumped (the kernel's one at the address
/// where the program mapped it, `mmap` true, with its bytes: the 12
/// entries the scenario wrote, bids 0 to 11 of 64 bytes each, and tail
/// 12), and restored in-process with `--verify`, which says the ring is
/// user memory now. Skipped, saying so, before NO_MMAP (6.5; 6.1 has
/// neither).
#[test]
fn kernel_allocated_buffer_rings_are_dumped_with_their_bytes_and_restored() {
    if !ringplan_kernel::probe::has_no_mmap().unwrap_or(false) {
        eprintln!("skipped: this kernel predates IOU_PBUF_RING_MMAP (6.4)");
        return;
    }
    round("pbuf-mmap", "bpf");
    let process = Scenario::start("pbuf-mmap");
    let dir = scratch_dir("dump-pbuf-mmap");
    let view = dump_json(process.pid(), "bpf", &dir, &[]);
    let ring = view["objects"]
        .as_array()
        .and_then(|objects| objects.iter().find(|object| object["kind"] == "ring"))
        .expect("a ring");
    let kernel_ring = &ring["pbuf_rings"][1];
    assert_eq!(kernel_ring["mmap"], true, "{ring}");
    assert_eq!(kernel_ring["head"], 5, "{ring}");
    assert_eq!(kernel_ring["contents"]["len"], 16 * 16, "{ring}");
    assert_eq!(kernel_ring["contents"]["tail"], 12, "{ring}");
    assert!(ring["pbuf_rings"][0].get("contents").is_none(), "{ring}");
    let image = dir.join("mmap.img");
    let image = image.to_str().expect("utf-8 path");
    let pid = process.pid().to_string();
    let dump = crate::support::plan(&["dump", "--pid", &pid, "--backend", "bpf", "-o", image]);
    assert!(dump.status.success());
    let decoded =
        ringplan_image::decode_slice(&std::fs::read(image).expect("the image")).expect("decoding");
    let ringplan_image::ObjectKind::Ring(decoded_ring) = &decoded.objects[0].kind else {
        panic!("not a ring: {:?}", decoded.objects[0]);
    };
    let contents = &decoded_ring.pbuf_rings[1]
        .contents
        .as_ref()
        .expect("captured")
        .0;
    let buffers = kernel_ring["addr"].as_u64().expect("addr");
    for (index, entry) in contents.chunks(16).take(12).enumerate() {
        let len = u32::from_ne_bytes(entry[8..12].try_into().expect("4 bytes"));
        let bid = u16::from_ne_bytes(entry[12..14].try_into().expect("2 bytes"));
        assert_eq!((len, usize::from(bid)), (64, index), "entry {index}");
        assert_ne!(
            u64::from_ne_bytes(entry[..8].try_into().expect("8 bytes")),
            buffers,
            "entry {index} points at a buffer, not at the ring"
        );
    }
    let exec = crate::support::plan(&["exec", image, "--verify"]);
    let stderr = String::from_utf8_lossy(&exec.stderr);
    assert_eq!(exec.status.code(), Some(0), "{stderr}");
    let stdout = String::from_utf8_lossy(&exec.stdout);
    assert!(
        stdout.contains(
            "buffer ring 9 was in kernel memory (IOU_PBUF_RING_MMAP) and is user memory now"
        ),
        "{stdout}"
    );
}

/// A registered wait region (6.13+) is dumped with its length and where
/// the program has it (the scenario round compares both), and `plan exec
/// --verify` registers it again: the restored ring, dumped, has the same
/// region at the same address. Before 6.13 the scenario says the kernel
/// has none and the dump records none.
#[test]
fn wait_regions_are_dumped_and_restored() {
    round("wait-region", "bpf");
    let process = Scenario::start("wait-region");
    if let Some(missing) =
        process.description["rings"][0]["settings"]["wait_region_missing"].as_str()
    {
        eprintln!("skipped the restore: {missing}");
        return;
    }
    let dir = scratch_dir("dump-wait-region-restored");
    let image = dir.join("wait-region.img");
    let image = image.to_str().expect("utf-8 path");
    let pid = process.pid().to_string();
    let dump = crate::support::plan(&["dump", "--pid", &pid, "--backend", "bpf", "-o", image]);
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let text = crate::support::plan(&["show", image]);
    let shown = String::from_utf8_lossy(&text.stdout);
    assert!(
        shown.contains("IORING_REGISTER_MEM_REGION (IORING_MEM_REGION_REG_WAIT_ARG)"),
        "{shown}"
    );
    let output = crate::support::plan(&["exec", image, "--verify"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(stdout.starts_with("verified:"), "{stdout}");
}

/// Legacy buffer groups (`IORING_OP_PROVIDE_BUFFERS`): the dump captures
/// their buffers (the scenario round compares them with what the scenario
/// provided less what its reads took) without a warning, and `plan exec
/// --verify` provides them again: the restored ring's groups, dumped, are
/// the recorded ones (the emptied group left out).
#[test]
fn legacy_buffer_groups_are_captured_and_provided_again() {
    let process = Scenario::start("pbuf-legacy");
    let dir = scratch_dir("dump-pbuf-legacy");
    let image = dir.join("legacy.img");
    let image = image.to_str().expect("utf-8 path");
    let pid = process.pid().to_string();
    let dump = crate::support::plan(&["dump", "--pid", &pid, "--backend", "bpf", "-o", image]);
    let stderr = String::from_utf8_lossy(&dump.stderr);
    assert!(dump.status.success(), "dump: {stderr}");
    assert!(!stderr.contains("legacy provided-buffer"), "{stderr}");
    let mut exec = vec!["exec", image, "--verify"];
    exec.extend_from_slice(crate::support::moved_rings_where_needed());
    let output = crate::support::plan(&exec);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !crate::support::kernel_has_no_mmap() {
        // Without NO_MMAP the ring is restored without its positions,
        // which the PROVIDE_BUFFERS SQEs move: refused before anything.
        assert_eq!(output.status.code(), Some(2), "{stdout}{stderr}");
        assert!(stderr.contains("IORING_SETUP_NO_MMAP"), "{stderr}");
        return;
    }
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(stdout.starts_with("verified:"), "{stdout}");
}

/// A legacy group whose list repeats bids and is longer than the dump
/// walks (65536 buffers, the most distinct bids a group holds) is not
/// passed off in part: the group is dumped without its buffers (`buffers`
/// null), the dump says why, and a restore refuses it. 6.1 and 6.12 take
/// all 70001 buffers (the list is too long); later kernels stop a group at
/// 65535 (`bl->nbufs`), within the walk, whose bids then repeat.
#[test]
fn a_legacy_list_longer_than_the_walk_is_left_uncaptured() {
    let process = Scenario::start("legacy-buffers:70000");
    let dir = scratch_dir("dump-legacy-too-long");
    let image = dir.join("long.img");
    let image = image.to_str().expect("utf-8 path");
    let pid = process.pid().to_string();
    let dump = crate::support::plan(&["dump", "--pid", &pid, "--backend", "bpf", "-o", image]);
    let stderr = String::from_utf8_lossy(&dump.stderr);
    assert!(dump.status.success(), "dump: {stderr}");
    assert!(
        stderr.contains("legacy buffer group 7 of the ring at fd")
            && (stderr.contains("its list is longer than 65536 buffers")
                || stderr.contains("more than once, which the image cannot hold")),
        "the dump says why: {stderr}"
    );
    let view = dump_json(process.pid(), "bpf", &dir, &[]);
    let ring = view["objects"]
        .as_array()
        .and_then(|objects| objects.iter().find(|object| object["kind"] == "ring"))
        .expect("a ring");
    assert_eq!(
        ring["legacy_buffer_groups"],
        serde_json::json!([{"bgid": 7, "buffers": null}]),
        "{ring}"
    );
    let exec = crate::support::plan(&["exec", image, "--dry-run"]);
    let stderr = String::from_utf8_lossy(&exec.stderr);
    assert_eq!(exec.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("legacy group 7 (IORING_OP_PROVIDE_BUFFERS) keeps its buffers in the kernel, which the image does not capture"),
        "{stderr}"
    );
}

/// A legacy group's list is read in ranges, and each node at most twice
/// in all (the first range's answer walks the whole list for its length
/// and hash, each later one only its own range, from a checkpoint the
/// first gave), not once per range: 6,000 buffers (ten ranges) cost
/// between 6,000 and 12,000 node reads (11,400), where a walk of the whole
/// list per range reads 60,000. Counted, not timed: the walks report the
/// nodes they read.
#[test]
fn a_legacy_list_is_read_in_ranges_at_a_cost_linear_in_its_length() {
    use ringplan_dump::raw::Known;
    use ringplan_dump::{BpfDumper, Target};

    const BUFFERS: u64 = 6000;
    let process = Scenario::start(&format!("legacy-buffers:{BUFFERS}"));
    let mut dumper = BpfDumper::load().expect("loading the BPF dumper (root)");
    let target = Target::open(process.pid()).expect("opening the scenario's process");
    let state = dumper
        .read(process.pid(), target.pidfd())
        .expect("reading the scenario");
    let groups: Vec<_> = state
        .rings
        .values()
        .filter_map(|ring| match &ring.buffer_groups {
            Known::Known(groups) => Some(groups.legacy.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(groups.len(), 1, "{groups:?}");
    let buffers = groups[0].buffers.as_ref().expect("the group's buffers");
    assert_eq!(buffers.len() as u64, BUFFERS);
    let bids: Vec<u16> = buffers.iter().map(|buffer| buffer.bid).collect();
    let expected: Vec<u16> = (1..=BUFFERS as u16).collect();
    assert_eq!(bids, expected, "every buffer once, in list order");
    let visited = dumper.legacy_nodes_visited();
    assert!(
        (BUFFERS..=2 * BUFFERS).contains(&visited),
        "{visited} list nodes read for {BUFFERS} buffers"
    );
}

/// The personality and buffer-group walks are a BPF program of their own,
/// which a kept dumper (`Dumper`, `plan checkpoint`) loads only when a
/// ring has personalities or buffer groups, and then once: rings without
/// them (the seed) never pay for its verification, and later reads reuse
/// it (the same kernel program id).
#[test]
fn a_kept_dumper_loads_the_walks_only_for_rings_with_some_and_once() {
    use ringplan_dump::raw::{Known, RawState};
    use ringplan_dump::{BpfDumper, Target};

    fn read(dumper: &mut BpfDumper, process: &Scenario) -> RawState {
        let target = Target::open(process.pid()).expect("opening the scenario's process");
        dumper
            .read(process.pid(), target.pidfd())
            .expect("reading the scenario")
    }
    let seed = Scenario::start("seed");
    let personalities = Scenario::start("personalities:3");
    let pbuf = Scenario::start("pbuf");
    let mut dumper = BpfDumper::load().expect("loading the BPF dumper (root)");

    let state = read(&mut dumper, &seed);
    assert!(
        state
            .rings
            .values()
            .all(|ring| matches!(&ring.personalities, Known::Known((list, _)) if list.is_empty())),
        "the seed's rings have no personalities: {:?}",
        state
            .rings
            .values()
            .map(|ring| &ring.personalities)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        dumper.walks_program_id(),
        None,
        "rings without personalities or buffer groups loaded the walks"
    );

    let state = read(&mut dumper, &personalities);
    assert!(
        state
            .rings
            .values()
            .any(|ring| matches!(&ring.personalities, Known::Known((list, _)) if list.len() == 3)),
        "the three personalities did not come: {:?}",
        state
            .rings
            .values()
            .map(|ring| &ring.personalities)
            .collect::<Vec<_>>()
    );
    let walks = dumper
        .walks_program_id()
        .expect("a ring with personalities loads the walks");

    let state = read(&mut dumper, &pbuf);
    assert!(
        state.rings.values().any(
            |ring| matches!(&ring.buffer_groups, Known::Known(groups) if !groups.rings.is_empty())
        ),
        "the buffer ring did not come: {:?}",
        state
            .rings
            .values()
            .map(|ring| &ring.buffer_groups)
            .collect::<Vec<_>>()
    );
    read(&mut dumper, &personalities);
    dumper
        .load_walks()
        .expect("asking a dumper for walks it has");
    assert_eq!(
        dumper.walks_program_id(),
        Some(walks),
        "a kept dumper loaded the walks again"
    );
}
