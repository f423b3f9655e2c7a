//! Shared test plumbing: run the `plan` binary, start `plan app` scenarios as
//! real processes, and clean them up whatever happens.

#![allow(dead_code)]

pub mod line_program;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ringplan_kernel::abi::RING_FILE_PATH;
use ringplan_kernel::procfs::mountinfo::{self, MountinfoEntry};
use ringplan_kernel::procfs::task::{self, IO_WORKER_NAME_PREFIX, SQ_THREAD_NAME_PREFIX};
use ringplan_kernel::procfs::{maps, Process};

pub const PLAN: &str = env!("CARGO_BIN_EXE_plan");

/// A `plan app SCENARIO` process, killed when dropped.
pub struct Scenario {
    child: Child,
    /// The JSON line it printed.
    pub description: serde_json::Value,
}

impl Scenario {
    pub fn start(name: &str) -> Scenario {
        let mut child = Command::new(PLAN)
            .args(["app", name])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            // A pipe, not the test's own stderr, so that fds 0-2 (which the
            // seed scenario registers) are the same on every machine.
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting `plan app`");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("reading the scenario's line");
        let description = serde_json::from_str(&line).unwrap_or_else(|error| {
            let _ = child.kill();
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
            }
            panic!("`plan app {name}` printed {line:?}, not JSON ({error}); stderr: {stderr}")
        });
        Scenario { child, description }
    }

    pub fn pid(&self) -> u32 {
        self.description["pid"]
            .as_u64()
            .expect("pid in the description") as u32
    }
}

impl Drop for Scenario {
    /// SIGTERM, so the scenario tears down (and removes its temp files);
    /// SIGKILL only if it has not gone within five seconds.
    fn drop(&mut self) {
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        for _ in 0..500 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `plan ARGS...`.
pub fn plan(args: &[&str]) -> Output {
    Command::new(PLAN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running plan")
}

/// Runs `plan ARGS...` and returns stdout, failing the test on a non-zero
/// exit with plan's stderr.
pub fn plan_ok(args: &[&str]) -> Vec<u8> {
    let output = plan(args);
    assert!(
        output.status.success(),
        "plan {args:?} failed with {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// A fresh directory under the target dir for one test's files.
pub fn scratch_dir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating a scratch dir");
    dir
}

/// Dumps `pid` with `backend` into a file and returns the JSON object view.
pub fn dump_json(pid: u32, backend: &str, dir: &Path, extra: &[&str]) -> serde_json::Value {
    let image = dir.join(format!("{pid}-{backend}.img"));
    let image = image.to_str().expect("utf-8 path");
    let pid = pid.to_string();
    let mut args = vec!["dump", "--pid", &pid, "--backend", backend, "-o", image];
    args.extend_from_slice(extra);
    plan_ok(&args);
    let json = plan_ok(&["show", image, "--objects", "--format", "json"]);
    serde_json::from_slice(&json).expect("show --format json prints JSON")
}

/// `tests/programs/NAME.c`, built once per test binary and shared by
/// every test that runs it: a rebuild while another test runs it would
/// show the binary deleted in that one's maps.
pub fn c_program(name: &'static str) -> &'static Path {
    static BUILT: std::sync::Mutex<std::collections::BTreeMap<&'static str, &'static Path>> =
        std::sync::Mutex::new(std::collections::BTreeMap::new());
    let mut built = BUILT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    built.entry(name).or_insert_with(|| {
        let path =
            ringplan_scenarios::c_programs::build(name, Path::new(env!("CARGO_TARGET_TMPDIR")))
                .unwrap_or_else(|error| panic!("{error}"));
        Box::leak(path.into_boxed_path())
    })
}

/// The pids a tree image's JSON view lists in `processes`, in tree order.
pub fn tree_pids(view: &serde_json::Value) -> Vec<u64> {
    view["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .map(|process| process["pid"].as_u64().expect("pid"))
        .collect()
}

/// The objects of a JSON view of one kind, in id order.
pub fn objects_of_kind<'a>(view: &'a serde_json::Value, kind: &str) -> Vec<&'a serde_json::Value> {
    view["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .filter(|object| object["kind"] == kind)
        .collect()
}

/// Writes `value` to a procfs or cgroupfs file.
pub fn write_file(path: &Path, value: &str) {
    std::fs::write(path, value)
        .unwrap_or_else(|error| panic!("writing {value:?} to {}: {error}", path.display()));
}

/// A cgroup made for one test (v2, or a v1 hierarchy with `controller`),
/// removed on drop after its processes are moved back to the root.
pub struct TestCgroup {
    pub dir: PathBuf,
    root: PathBuf,
}

impl TestCgroup {
    /// `None` when this machine mounts no such hierarchy (said on stdout).
    pub fn create(version: u32, controller: &str, name: &str) -> Option<TestCgroup> {
        let mountinfo = mountinfo::read(Process::Current).expect("reading mountinfo");
        let root = mountinfo
            .lines()
            .filter_map(MountinfoEntry::parse)
            .find(|mount| match version {
                2 => mount.fs_type == "cgroup2",
                _ => mount.fs_type == "cgroup" && mount.has_super_option(controller),
            })
            .map(|mount| mount.mount_point);
        let Some(root) = root else {
            println!("no cgroup v{version} {controller} hierarchy is mounted here");
            return None;
        };
        let dir = root.join(format!("ringplan-test-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|error| panic!("creating {}: {error}", dir.display()));
        Some(TestCgroup { dir, root })
    }

    pub fn add(&self, pid: u32) {
        write_file(&self.dir.join("cgroup.procs"), &pid.to_string());
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        if let Ok(procs) = std::fs::read_to_string(self.dir.join("cgroup.procs")) {
            for pid in procs.lines() {
                let _ = std::fs::write(self.root.join("cgroup.procs"), pid);
            }
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Why this kernel's fdinfo cannot serve the fdinfo backend (Linux 6.1:
/// registered files by name, SqThread hidden, no eventfd-semaphore), or
/// `None` when it can. Printed by the tests that then expect the refusal.
pub fn fdinfo_backend_refusal() -> Option<String> {
    ringplan_dump::fdinfo_format::check()
        .err()
        .map(|error| error.to_string())
}

/// Whether the kernel's fdinfo prints a registered file's path (6.18) and
/// not only its name (6.1). Where it does not, a registered file whose fd
/// was closed has no trusted pointer for bpf_d_path and no path in fdinfo,
/// so its path is unknown in a dump.
pub fn kernel_shows_registered_file_paths() -> bool {
    ringplan_dump::fdinfo_format::shows_registered_file_paths()
        .expect("probing the kernel's fdinfo format")
}

/// Dumps `pid` with the fdinfo backend on a kernel whose format it cannot
/// read, and checks that it is refused with `refusal` and writes nothing.
pub fn expect_fdinfo_refusal(pid: u32, dir: &Path, refusal: &str) {
    let image = dir.join(format!("{pid}-refused.img"));
    let image_text = image.to_str().expect("utf-8 path");
    let output = plan(&[
        "dump",
        "--pid",
        &pid.to_string(),
        "--backend",
        "fdinfo",
        "-o",
        image_text,
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "the fdinfo dump should be refused on this kernel: {refusal}"
    );
    assert!(
        stderr.contains(refusal),
        "refusal {refusal:?} not in: {stderr}"
    );
    assert!(!image.exists(), "a refused dump wrote {}", image.display());
    eprintln!("fdinfo backend refused on this kernel, as it must be: {refusal}");
}

/// Whether this kernel can place a ring's memory at chosen addresses
/// (`IORING_SETUP_NO_MMAP`, Linux 6.5): where it cannot, `plan exec` of a
/// dumped image refuses unless asked for moved rings.
pub fn kernel_has_no_mmap() -> bool {
    ringplan_kernel::probe::has_no_mmap().expect("probing IORING_SETUP_NO_MMAP")
}

/// `plan exec`'s flag for kernels without `IORING_SETUP_NO_MMAP` (6.1):
/// there the tests restore dumped rings as kernel objects, as before
/// continuity; where the kernel has it, nothing (the flag would change
/// nothing either), so the restore is continuous.
pub fn moved_rings_where_needed() -> &'static [&'static str] {
    if kernel_has_no_mmap() {
        &[]
    } else {
        &["--allow-moved-rings"]
    }
}

/// Whether this kernel is at least `major.minor`.
pub fn kernel_at_least(major: u32, minor: u32) -> bool {
    let uname = rustix::system::uname();
    let release = uname.release().to_string_lossy();
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|part| part.parse::<u32>().ok());
    let found = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    found >= (major, minor)
}

/// `plan exec IMAGE --pid PID ARGS... --fail-at N` for every step N of
/// IMAGE's plan: each run fails at its step with the injected failure
/// (exit 1), its undo complete (no "left changes"), and the process `pid`
/// is exactly as `before`; `after(step)` then checks what else the caller
/// needs.
pub fn fail_at_every_step(
    image: &str,
    pid: u32,
    args: &[&str],
    before: &ringplan_exec::test_hooks::ProcessState,
    mut after: impl FnMut(usize),
) {
    let decoded =
        ringplan_image::decode_slice(&std::fs::read(image).expect("the image")).expect("decoding");
    let steps = ringplan_plan::compile(&decoded)
        .expect("compiles")
        .steps
        .len();
    let pid_text = pid.to_string();
    for step in 0..steps {
        let step_text = step.to_string();
        let mut command = vec!["exec", image, "--pid", &pid_text];
        command.extend_from_slice(args);
        command.extend(["--fail-at", &step_text]);
        let output = plan(&command);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "step {step}: {stderr}");
        assert!(stderr.contains("injected failure"), "step {step}: {stderr}");
        assert!(!stderr.contains("left changes"), "step {step}: {stderr}");
        assert_eq!(
            before.changes_to(&ringplan_exec::test_hooks::ProcessState::capture_of(pid)),
            Vec::<String>::new(),
            "step {step}: process {pid} changed"
        );
        after(step);
    }
}

/// A 64 MiB raw disk image `disk.raw` in `dir`, made by `qemu-img create`
/// (package qemu-utils), for `qemu-img bench`.
pub fn qemu_raw_image(dir: &Path) -> PathBuf {
    let raw = dir.join("disk.raw");
    let created = Command::new("qemu-img")
        .args(["create", "-f", "raw"])
        .arg(&raw)
        .arg("64M")
        .output()
        .expect("running qemu-img create (package qemu-utils)");
    assert!(
        created.status.success(),
        "qemu-img create: {}",
        String::from_utf8_lossy(&created.stderr)
    );
    raw
}

/// Whether CRIU runs here; says so when it does not.
pub fn criu_works() -> bool {
    match Command::new("criu").arg("check").output() {
        Ok(output) if output.status.success() => true,
        Ok(output) => {
            let said = String::from_utf8_lossy(&output.stderr);
            eprintln!(
                "`criu check` fails on this kernel: not tried ({})",
                said.lines()
                    .filter(|line| line.contains("Error"))
                    .collect::<Vec<_>>()
                    .join("; ")
            );
            false
        }
        Err(_) => {
            eprintln!("criu is not installed here: not tried");
            false
        }
    }
}

/// Polls `path` until a line of it contains `needle`; that line.
pub fn wait_for_line(path: &Path, needle: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(line) = text.lines().find(|line| line.contains(needle)) {
            return line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in {} within {limit:?}: {text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The fds of `pid` that hold a ring.
pub fn ring_fds(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let link = std::fs::read_link(entry.path()).ok()?;
            (link.as_os_str() == RING_FILE_PATH)
                .then(|| entry.file_name().to_string_lossy().into_owned())
        })
        .collect()
}

/// The lines of `/proc/PID/maps` that map a ring.
pub fn ring_mappings(pid: u32) -> Vec<String> {
    maps::read(Process::Pid(pid))
        .expect("maps")
        .lines()
        .filter(|line| line.ends_with(RING_FILE_PATH))
        .map(str::to_owned)
        .collect()
}

/// The io threads of `pid`, by comm.
pub fn io_threads(pid: u32) -> Vec<String> {
    let process = Process::Pid(pid);
    task::ids(process)
        .expect("threads")
        .into_iter()
        .filter_map(|tid| task::comm(process, tid).ok())
        .filter(|comm| {
            comm.starts_with(SQ_THREAD_NAME_PREFIX) || comm.starts_with(IO_WORKER_NAME_PREFIX)
        })
        .map(|comm| String::from_utf8_lossy(&comm).trim_end().to_owned())
        .collect()
}
