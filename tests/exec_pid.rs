//! `plan exec IMAGE --pid PID` (and `ringplan_exec::execute_in`): the seed
//! scenario, dumped live, its fds moved to numbers free in the target and
//! its rings' continuity state removed, restored into
//! `tests/programs/restore_target.c` (a process that holds no ring), and
//! checked from outside: `/proc/TARGET/fd` and `fdinfo`, its state, and
//! whether it still answers. A failure injected at every step leaves the
//! target's fds and mappings as they were and the target running. Rings
//! restored where the program left them: `exec_pid_continuity.rs`.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use ringplan_exec::test_hooks::ProcessState;
use ringplan_image::{Image, ObjectKind};
use ringplan_kernel::procfs::fd::FdKind;
use ringplan_kernel::procfs::{fdinfo, stat, Process};

use crate::support::{fail_at_every_step, plan, plan_ok, scratch_dir, Scenario};

/// Added to every fd number of the image: the target holds 0-2 (and the
/// seed installs there).
pub(crate) const FD_SHIFT: i32 = 100;

/// Where the image's buffers are moved (32 TiB: between the heap and the
/// mmap area on x86-64).
const BUFFER_BASE: u64 = 0x2000_0000_0000;

/// The target program, killed when dropped.
pub(crate) struct Target {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pub(crate) pid: u32,
}

/// `tests/programs/restore_target.c`, built once for every test of this
/// binary that runs it: a rebuild while another test runs it would show
/// the binary deleted in that one's maps.
pub(crate) fn restore_target() -> &'static Path {
    crate::support::c_program("restore_target")
}

impl Target {
    pub(crate) fn start() -> Target {
        Target::start_with(&[])
    }

    /// Starts the target with arguments (`eventfd FD COUNT FLAGS`,
    /// `open FD PATH OFFSET`: what it holds before the restore).
    pub(crate) fn start_with(args: &[&str]) -> Target {
        let mut child = Command::new(restore_target())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting restore_target");
        let stdin = child.stdin.take().expect("piped stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .expect("the target's first line");
        let first: serde_json::Value = serde_json::from_str(&line).expect("JSON");
        let pid = first["pid"].as_u64().expect("pid") as u32;
        assert_eq!(pid, child.id());
        Target {
            child,
            stdin,
            stdout,
            pid,
        }
    }

    /// Whether it answers a line (it runs, and its read survived).
    pub(crate) fn answers(&mut self) -> bool {
        if self.stdin.write_all(b"ping\n").is_err() {
            return false;
        }
        let mut line = String::new();
        self.stdout.read_line(&mut line).is_ok() && line == "alive\n"
    }

    /// Its state letter in `/proc/PID/stat`.
    pub(crate) fn state(&self) -> u8 {
        stat::read(Process::Pid(self.pid))
            .expect("target stat")
            .state
    }

    /// Waits up to five seconds for state letter `state` (a stop requested
    /// at detach takes effect when the thread next runs).
    pub(crate) fn wait_state(&self, state: u8) -> u8 {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let now = self.state();
            if now == state || std::time::Instant::now() > deadline {
                return now;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// `/proc/PID/fd/FD`'s link, if open.
    pub(crate) fn link(&self, fd: i32) -> Option<String> {
        std::fs::read_link(format!("/proc/{}/fd/{fd}", self.pid))
            .ok()
            .map(|target| target.to_string_lossy().into_owned())
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The seed dumped live, fds moved up by [`FD_SHIFT`], continuity state
/// removed (as `benches/continuity_restore.rs` does for its baseline):
/// `(path, image)`.
pub(crate) fn seed_image(dir: &Path, keep_state: bool) -> (String, Image) {
    let (path, image, _) = scenario_image("seed", dir, keep_state);
    (path, image)
}

/// [`seed_image`] of any `plan app` scenario, and the scenario, running
/// (its temporary files exist while it runs).
fn scenario_image(name: &str, dir: &Path, keep_state: bool) -> (String, Image, Scenario) {
    let scenario = Scenario::start(name);
    let file = name.replace(':', "-");
    let path = dir.join(if keep_state {
        format!("{file}-state.img")
    } else {
        format!("{file}.img")
    });
    let path = path.to_str().expect("utf-8").to_owned();
    plan_ok(&[
        "dump",
        "--pid",
        &scenario.pid().to_string(),
        "--backend",
        "bpf",
        "-o",
        &path,
    ]);
    let mut image =
        ringplan_image::decode_slice(&std::fs::read(&path).expect("image")).expect("decodes");
    for object in &mut image.objects {
        for entry in &mut object.fds {
            entry.fd += FD_SHIFT;
        }
        if let ObjectKind::Ring(ring) = &mut object.kind {
            if !keep_state {
                ring.state = None;
            }
            // Buffers move, keeping their offsets within a page, to where
            // nothing maps by itself (the seed's heap could be anywhere).
            for (slot, buffer) in ring.buffers.iter_mut().enumerate() {
                if let Some(buffer) = buffer {
                    buffer.addr = BUFFER_BASE + (slot as u64) * 0x10_0000 + (buffer.addr & 0xfff);
                }
            }
        }
    }
    std::fs::write(
        &path,
        ringplan_image::encode_to_vec(&image).expect("encoding"),
    )
    .expect("writing the image");
    (path, image, scenario)
}

/// The image's first ring.
fn first_ring(image: &Image) -> &ringplan_image::Ring {
    image
        .objects
        .iter()
        .find_map(|object| match &object.kind {
            ObjectKind::Ring(ring) => Some(ring),
            _ => None,
        })
        .expect("a ring")
}

/// `plan exec IMAGE --pid` with `--verify` into a new target, which must
/// report the restore verified and answer after it; the target, still
/// running.
fn verified_in_a_new_target(path: &str) -> Target {
    let mut target = Target::start();
    let pid = target.pid.to_string();
    let output = plan(&[
        "exec",
        path,
        "--pid",
        &pid,
        "--substitute-external",
        "--verify",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "exec --pid --verify: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.starts_with("verified: "), "{stdout}");
    assert!(target.answers());
    target
}

/// A failure injected at every step of the restore of `path` into a new
/// target leaves it as it was, and running.
fn every_step_undone_in_a_new_target(path: &str) {
    let mut target = Target::start();
    let before = ProcessState::capture_of(target.pid);
    let pid = target.pid;
    fail_at_every_step(path, pid, &["--substitute-external"], &before, |step| {
        assert!(target.answers(), "step {step}: the target runs on");
    });
}

/// The installed fd numbers of every object of `kind` in `image`.
fn fds_of(image: &Image, kind: &str) -> Vec<i32> {
    image
        .objects
        .iter()
        .filter(|object| object.kind.name() == kind)
        .flat_map(|object| object.fds.iter().map(|entry| entry.fd))
        .collect()
}

#[test]
fn the_seed_restored_into_a_running_process_is_seen_there() {
    let dir = scratch_dir("exec-pid");
    let (path, image) = seed_image(&dir, false);
    let mut target = Target::start();
    let pid = target.pid.to_string();
    let output = plan(&["exec", &path, "--pid", &pid, "--substitute-external"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "exec --pid failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("the process was resumed"), "{stdout}");
    let rings = fds_of(&image, "ring");
    assert!(!rings.is_empty());
    for &fd in &rings {
        assert_eq!(
            target.link(fd).as_deref(),
            Some("anon_inode:[io_uring]"),
            "ring fd {fd}"
        );
    }
    for fd in fds_of(&image, "eventfd") {
        assert_eq!(
            target.link(fd).as_deref(),
            Some("anon_inode:[eventfd]"),
            "fd {fd}"
        );
    }
    for object in &image.objects {
        if let ObjectKind::File(file) = &object.kind {
            for entry in &object.fds {
                if let Some(path) = &file.path {
                    if file.file_type == ringplan_image::FileType::Regular {
                        assert_eq!(target.link(entry.fd).as_deref(), Some(path.as_str()));
                    }
                }
            }
        }
    }
    // Each ring's fdinfo shows as many registered files and buffers as the
    // image recorded.
    for object in &image.objects {
        let ObjectKind::Ring(ring) = &object.kind else {
            continue;
        };
        let Some(fd) = object.fds.first().map(|entry| entry.fd) else {
            continue;
        };
        let path = format!("/proc/{pid}/fdinfo/{fd}");
        let text = fdinfo::read(Process::Pid(target.pid), fd).expect("fdinfo");
        let info = fdinfo::Fdinfo::parse(Path::new(&path), &text, FdKind::Ring)
            .expect("ring fdinfo")
            .ring
            .expect("ring part");
        assert_eq!(
            info.user_files as usize,
            ring.files.len(),
            "ring at {fd}: the image's table {:?}; the target's fdinfo:\n{}",
            ring.files,
            String::from_utf8_lossy(&text)
        );
        // 6.1 lists empty slots too, as "<none>".
        let occupied = info
            .files
            .iter()
            .filter(|(_, name)| name.as_deref() != Some("<none>"))
            .count();
        assert_eq!(
            occupied,
            ring.files.iter().flatten().count(),
            "ring at {fd}: the image's table {:?}; the target's fdinfo:\n{}",
            ring.files,
            String::from_utf8_lossy(&text)
        );
        assert_eq!(info.buffers.len(), ring.buffers.len(), "ring at {fd}");
        for (restored, recorded) in info.buffers.iter().zip(&ring.buffers) {
            // 6.1 and 6.12 show an empty slot as their dummy buffer:
            // address -1 (length 1 on 6.1, 2^32 - 1 on 6.12).
            let restored = restored.filter(|buffer| buffer.addr != u64::MAX);
            assert_eq!(
                restored.map(|buffer| (buffer.addr, buffer.len)),
                recorded.as_ref().map(|buffer| (buffer.addr, buffer.len)),
                "ring at {fd}"
            );
        }
    }
    assert_ne!(target.state(), b'T');
    assert!(target.answers(), "the target runs on after the restore");
    // Again: the fds are taken now, in the target.
    let before = ProcessState::capture_of(target.pid);
    let taken = refused(&["exec", &path, "--pid", &pid, "--substitute-external"]);
    assert!(
        taken.contains(&format!("is already open in process {pid}")),
        "{taken}"
    );
    assert_eq!(
        before.changes_to(&ProcessState::capture_of(target.pid)),
        Vec::<String>::new()
    );
    assert!(target.answers());
}

#[test]
fn leave_stopped_leaves_it_stopped_and_verify_compares_the_target() {
    let dir = scratch_dir("exec-pid-verify");
    let (path, _) = seed_image(&dir, false);
    let target = Target::start();
    let pid = target.pid.to_string();
    let output = plan(&[
        "exec",
        &path,
        "--pid",
        &pid,
        "--substitute-external",
        "--leave-stopped",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("left stopped"));
    assert_eq!(target.wait_state(b'T'), b'T', "left stopped");
    drop(target);

    drop(verified_in_a_new_target(&path));
}

/// `plan ARGS` fails with exit status 2 and exactly one stderr line, which
/// is returned.
pub(crate) fn refused(args: &[&str]) -> String {
    let output = plan(args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    assert!(output.stdout.is_empty(), "{args:?}");
    stderr
}

#[test]
fn a_dry_run_hold_and_inputs_change_nothing_in_the_target() {
    let dir = scratch_dir("exec-pid-refused");
    let (path, _) = seed_image(&dir, false);
    let mut target = Target::start();
    let pid = target.pid.to_string();
    let before = ProcessState::capture_of(target.pid);
    let hold = refused(&["exec", &path, "--pid", &pid, "--hold"]);
    assert!(hold.contains("--hold"), "{hold}");
    let dry = plan(&[
        "exec",
        &path,
        "--pid",
        &pid,
        "--substitute-external",
        "--dry-run",
    ]);
    let dry_text = String::from_utf8_lossy(&dry.stdout);
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert!(dry_text.contains("preflight: ok: fds [100, "), "{dry_text}");
    let inputs = refused(&["exec", &path, "--pid", &pid]);
    assert!(
        inputs.contains("plan exec --pid cannot take the caller's fds yet"),
        "{inputs}"
    );
    assert_eq!(
        before.changes_to(&ProcessState::capture_of(target.pid)),
        Vec::<String>::new()
    );
    assert!(target.answers());
}

#[test]
fn an_injected_failure_at_any_step_leaves_the_target_as_it_was() {
    let dir = scratch_dir("exec-pid-fail");
    let (path, _) = seed_image(&dir, false);
    let mut target = Target::start();
    let before = ProcessState::capture_of(target.pid);
    let pid = target.pid;
    fail_at_every_step(&path, pid, &["--substitute-external"], &before, |step| {
        assert_ne!(target.state(), b'T', "step {step}");
        assert!(target.answers(), "step {step}: the target runs on");
    });
}

#[test]
fn execute_in_returns_the_fd_numbers_it_installed_in_the_target() {
    let dir = scratch_dir("exec-pid-library");
    let (_, image) = seed_image(&dir, false);
    let plan = ringplan_plan::compile(&image).expect("compiles");
    let mut target = Target::start();
    let fd_numbers = |pid: u32| -> Vec<i32> {
        let mut fds: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("fd dir")
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        fds.sort_unstable();
        fds
    };
    let before = fd_numbers(target.pid);
    let options = ringplan_exec::ExecOptions {
        substitute_external: true,
        ..Default::default()
    };
    let restored = ringplan_exec::execute_in(
        target.pid,
        &plan,
        ringplan_exec::Inputs::new(),
        &options,
        &ringplan_exec::ProcessOptions::default(),
    )
    .expect("execute_in");
    assert_eq!(
        restored.thread, target.pid,
        "syscalls ran in the main thread"
    );
    let installed: Vec<i32> = restored
        .restored
        .fds
        .values()
        .flatten()
        .map(|fd| fd.0)
        .collect();
    let mut expected = plan.needed_fds.clone();
    let mut got = installed.clone();
    expected.sort_unstable();
    got.sort_unstable();
    assert_eq!(got, expected);
    for fd in installed {
        assert!(target.link(fd).is_some(), "fd {fd} open in the target");
    }
    // No temporary is left open: the target holds its own fds and the
    // plan's, nothing else.
    let mut expected_open = before;
    expected_open.extend(&plan.needed_fds);
    expected_open.sort_unstable();
    assert_eq!(fd_numbers(target.pid), expected_open);
    for &(start, end) in &restored.buffers {
        let maps = std::fs::read_to_string(format!("/proc/{}/maps", target.pid)).expect("maps");
        assert!(
            maps.lines()
                .any(|line| line.starts_with(&format!("{start:x}-{end:x}"))),
            "buffer {start:#x}-{end:#x} mapped in the target"
        );
    }
    assert!(target.answers());
}

#[test]
fn a_files_table_larger_than_the_scratch_page_and_a_raised_fd_limit() {
    // 1500 registered files: a 6000-byte table, passed in a mapping made
    // for the call; fds up to ~1600, above the target's soft limit (set
    // low here), which the run raises with prlimit.
    let dir = scratch_dir("exec-pid-files");
    let (path, image, _scenario) = scenario_image("files:1500", &dir, false);
    let mut target = Target::start();
    let hard = ringplan_kernel::procfs::limits::read(Process::Pid(target.pid))
        .expect("/proc/PID/limits")
        .open_files
        .hard;
    assert!(hard.is_none_or(|hard| hard > 2000), "hard limit {hard:?}");
    let limit = rustix::process::Rlimit {
        current: Some(1024),
        maximum: hard,
    };
    rustix::process::prlimit(
        rustix::process::Pid::from_raw(target.pid as i32),
        rustix::process::Resource::Nofile,
        limit,
    )
    .expect("prlimit");
    let maps_before = std::fs::read_to_string(format!("/proc/{}/maps", target.pid)).expect("maps");
    let pid = target.pid.to_string();
    let output = plan(&["exec", &path, "--pid", &pid, "--substitute-external"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let ring = image
        .objects
        .iter()
        .find_map(|object| match &object.kind {
            ObjectKind::Ring(ring) if ring.files.len() >= 1500 => {
                Some((object.fds[0].fd, ring.files.len()))
            }
            _ => None,
        })
        .expect("a ring with the files registered");
    let text = fdinfo::read(Process::Pid(target.pid), ring.0).expect("fdinfo");
    let info = fdinfo::Fdinfo::parse(Path::new("fdinfo"), &text, FdKind::Ring)
        .expect("ring fdinfo")
        .ring
        .expect("ring part");
    assert_eq!(info.user_files as usize, ring.1);
    assert_eq!(info.files.len(), ring.1, "every slot holds its file");
    // The call's mapping is gone: only the ring regions the kernel placed
    // (none on 6.4+) or recorded ranges are new.
    let maps_after = std::fs::read_to_string(format!("/proc/{}/maps", target.pid)).expect("maps");
    let new: Vec<&str> = maps_after
        .lines()
        .filter(|line| !maps_before.lines().any(|old| old == *line))
        .filter(|line| !line.contains("anon_inode:[io_uring]"))
        .collect();
    assert!(new.is_empty(), "left in the target: {new:?}");
    assert!(target.answers());
    let after = ringplan_kernel::procfs::limits::read(Process::Pid(target.pid))
        .expect("/proc/PID/limits")
        .open_files;
    assert!(after.soft > Some(1600), "raised: {after:?}");
}

/// Personalities restored into a running process: registered by its main
/// thread (whose credentials are root's, as the scenario's were), with
/// the recorded ids and next id (`--verify` dumps the target and compares
/// them), and a failure at any step, `register_personalities` included,
/// leaves the target as it was.
#[test]
fn personalities_restored_into_a_running_process_keep_their_ids() {
    let dir = scratch_dir("exec-pid-personalities");
    let (path, image, scenario) = scenario_image("personalities:3", &dir, false);
    drop(scenario);
    let ring = first_ring(&image);
    let ids: Vec<u32> = ring.personalities.iter().map(|p| p.id).collect();
    assert_eq!((ids, ring.personality_next), (vec![1, 3, 4], 5));

    drop(verified_in_a_new_target(&path));

    every_step_undone_in_a_new_target(&path);
}

/// Restrictions restored into a running process: its ring set up
/// disabled, restricted, then enabled in it, as recorded (`--verify`
/// compares the restrictions and the flags), and undone at any step.
#[test]
fn restrictions_restored_into_a_running_process_are_enabled_as_recorded() {
    let dir = scratch_dir("exec-pid-restricted");
    let (path, image, scenario) = scenario_image("restricted-enabled", &dir, false);
    drop(scenario);
    assert!(image.objects.iter().any(|object| matches!(
        &object.kind,
        ObjectKind::Ring(ring) if ring.restrictions.is_some()
    )));
    drop(verified_in_a_new_target(&path));

    every_step_undone_in_a_new_target(&path);
}

/// Buffer rings restored into a running process: registered on memory at
/// their recorded addresses (mapped there, the target holding none), with
/// their bgids, entries and heads (`--verify` dumps the target and
/// compares them), and a failure at any step, `register_pbuf_ring`
/// included, leaves the target as it was.
#[test]
fn buffer_rings_restored_into_a_running_process() {
    let dir = scratch_dir("exec-pid-pbuf");
    let (path, image, scenario) = scenario_image("pbuf-fresh:2", &dir, false);
    drop(scenario);
    let ring = first_ring(&image);
    let bgids: Vec<u16> = ring.pbuf_rings.iter().map(|entry| entry.bgid).collect();
    assert_eq!(bgids, vec![0, 65]);

    drop(verified_in_a_new_target(&path));

    every_step_undone_in_a_new_target(&path);
}

/// Registered settings restored into a running process: files and
/// buffers registered with their tags (`IORING_REGISTER_FILES2`,
/// `BUFFERS2`), the file allocation range after the table, io-wq limits
/// and NAPI (`--verify` dumps the target and compares them; NAPI also as
/// the target's fdinfo shows it against the scenario's), and a failure at
/// any step, `register_settings` included, leaves the target as it was.
#[test]
fn settings_restored_into_a_running_process() {
    use ringplan_kernel::procfs::{fdinfo, Process};
    let dir = scratch_dir("exec-pid-settings");
    // The scenario stays: its files are reopened by path.
    let (path, image, scenario) = scenario_image("settings", &dir, false);
    let (ring_fd, settings) = image
        .objects
        .iter()
        .find_map(|object| match &object.kind {
            ObjectKind::Ring(ring) => Some((object.fds[0].fd, ring.settings.clone())),
            _ => None,
        })
        .expect("a ring");
    assert_eq!(settings.file_tags.len(), 3);
    assert_eq!(settings.buffer_tags.len(), 1);
    assert!(settings.file_alloc_range.is_some());
    assert!(settings.iowq_max_workers.is_some());

    let mut target = verified_in_a_new_target(&path);
    let napi =
        |pid: u32, fd: i32| fdinfo::napi(&fdinfo::read(Process::Pid(pid), fd).expect("fdinfo"));
    assert_eq!(
        napi(target.pid, ring_fd),
        napi(scenario.pid(), ring_fd - FD_SHIFT),
        "fdinfo NAPI of the restored ring"
    );
    assert!(target.answers());
    drop(target);

    every_step_undone_in_a_new_target(&path);
    drop(scenario);
}

/// io-wq affinity restored into a running process: `--verify` dumps the
/// target and compares the CPUs (a new target has not the recorded
/// thread: the main thread takes it, a note), and a failure at any step,
/// `register_settings` included, leaves the target as it was.
#[test]
fn iowq_affinity_restored_into_a_running_process() {
    let dir = scratch_dir("exec-pid-iowq-affinity");
    let (path, image, scenario) = scenario_image("iowq-affinity", &dir, false);
    let ring = first_ring(&image);
    if ring.settings.iowq_affinity.is_none() {
        eprintln!(
            "skipped: {}",
            scenario.description["rings"][0]["settings"]["iowq_affinity_missing"]
        );
        return;
    }
    drop(scenario);
    drop(verified_in_a_new_target(&path));
    every_step_undone_in_a_new_target(&path);
}
