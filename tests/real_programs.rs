//! Programs nobody here wrote, dumped while they do io_uring I/O and
//! restored: fio's io_uring engine (plain; registered files and fixed
//! buffers; SQPOLL with both) and `qemu-img bench -i io_uring`. Each image is
//! checked against what the program was told to do (fio's job file, qemu's
//! ring size) and against the kernel's own `/proc/PID/fdinfo` at dump time;
//! then `plan exec --substitute-external --verify` restores it, reopening the
//! programs' files by path.
//!
//! What the programs do, as observed on the tested kernel (6.18, fio 3.33,
//! qemu-img 10.0):
//! - fio rounds `iodepth` up to a power of two itself and asks for
//!   `IORING_SETUP_CQSIZE` with `cq_entries` = that depth, so the CQ is the
//!   size of the SQ (not twice). Without SQPOLL it also asks for
//!   `COOP_TASKRUN | SINGLE_ISSUER | DEFER_TASKRUN`. It registers every file
//!   of the job (`registerfiles`) and one buffer of `bs` bytes per io_u, i.e.
//!   per slot of the rounded depth, carved in order from one allocation
//!   (`fixedbufs`). SQPOLL's idle is the kernel's default, one second.
//! - qemu-img (liburing, `io_uring_queue_init(128)`) has a plain ring of 128
//!   SQ / 256 CQ entries with nothing registered, and maps the CQ through the
//!   SQ ring's mapping (`IORING_FEAT_SINGLE_MMAP`).

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ringplan_kernel::procfs::fd::FdKind;
use ringplan_kernel::procfs::{fdinfo, Process};
use serde_json::Value;

use crate::support::{objects_of_kind, plan, plan_ok, scratch_dir};

const SQPOLL: u64 = 1 << 1;
const CQSIZE: u64 = 1 << 3;
const COOP_TASKRUN: u64 = 1 << 8;
const SINGLE_ISSUER: u64 = 1 << 12;
const DEFER_TASKRUN: u64 = 1 << 13;

/// How long a program may take to start doing io_uring I/O.
const READY_DEADLINE: Duration = Duration::from_secs(10);

/// A program under test, SIGTERMed (then SIGKILLed) when dropped.
struct Program {
    child: Child,
    name: &'static str,
}

impl Program {
    fn spawn(name: &'static str, command: &mut Command) -> Program {
        // Pipes for stdout and stderr: what a program under a supervisor has.
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("starting {name}: {error} (scripts/deps installs it)"));
        Program { child, name }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails the test with the program's output if it has exited.
    fn check_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            let mut output = String::new();
            if let Some(mut pipe) = self.child.stdout.take() {
                let _ = std::io::Read::read_to_string(&mut pipe, &mut output);
            }
            if let Some(mut pipe) = self.child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut pipe, &mut output);
            }
            panic!(
                "{} exited ({status}) before it was dumped: {output}",
                self.name
            );
        }
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The fds of `pid` that are io_uring instances.
fn ring_fds(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let mut fds: Vec<u32> = entries
        .flatten()
        .filter(|entry| {
            std::fs::read_link(entry.path())
                .is_ok_and(|target| FdKind::of_link(target.as_os_str().as_bytes()) == FdKind::Ring)
        })
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort_unstable();
    fds
}

/// The kernel's view of one ring: `/proc/PID/fdinfo/FD`.
#[derive(Debug, Default)]
struct Fdinfo {
    sq_head: u64,
    sq_entries: u64,
    cq_entries: u64,
    sq_thread: i64,
    /// The `UserFiles:` and `UserBufs:` counts.
    file_slots: usize,
    buffer_slots: usize,
    files: Vec<String>,
    buffers: Vec<(u64, u64)>,
}

fn fdinfo(pid: u32, fd: u32) -> Option<Fdinfo> {
    let text = fdinfo::read(Process::Pid(pid), i32::try_from(fd).ok()?).ok()?;
    let mut info = Fdinfo::default();
    let hex = |value: &str| u64::from_str_radix(value.trim_start_matches("0x"), 16).ok();
    for (_, line) in fdinfo::lines(&text) {
        match line {
            fdinfo::Line::Field { key, value } => {
                let value = std::str::from_utf8(value).ok()?;
                match key {
                    b"SqHead" => info.sq_head = value.parse().ok()?,
                    b"SqMask" => info.sq_entries = hex(value)? + 1,
                    b"CqMask" => info.cq_entries = hex(value)? + 1,
                    b"SqThread" => info.sq_thread = value.parse().ok()?,
                    b"UserFiles" => info.file_slots = value.parse().ok()?,
                    b"UserBufs" => info.buffer_slots = value.parse().ok()?,
                    _ => {}
                }
            }
            fdinfo::Line::Row {
                table: b"UserFiles",
                value,
                ..
            } => info.files.push(String::from_utf8_lossy(value).into_owned()),
            fdinfo::Line::Row {
                table: b"UserBufs",
                value,
                ..
            } => {
                let (addr, len) = std::str::from_utf8(value).ok()?.split_once('/')?;
                info.buffers.push((hex(addr)?, len.parse().ok()?));
            }
            _ => {}
        }
    }
    // 6.1 prints the counts but not the rows while the ring's lock is
    // held (6.18 prints nothing then): such a read is incomplete. (Every
    // slot of these programs' tables is occupied, so 6.18 shows a row for
    // each too.)
    (info.files.len() == info.file_slots && info.buffers.len() == info.buffer_slots).then_some(info)
}

/// Polls until `find()` names a process with exactly one io_uring fd whose
/// SQ head has moved (the program is doing I/O, so whatever it registers is
/// registered); returns that pid, fd and the fdinfo read then.
fn wait_for_io(program: &mut Program, find: impl Fn() -> Option<u32>) -> (u32, u32, Fdinfo) {
    let deadline = Instant::now() + READY_DEADLINE;
    loop {
        program.check_alive();
        if let Some(pid) = find() {
            if let [fd] = ring_fds(pid)[..] {
                if let Some(info) = fdinfo(pid, fd).filter(|info| info.sq_head > 0) {
                    return (pid, fd, info);
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} did no io_uring I/O within {READY_DEADLINE:?}",
            program.name
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Dumps `pid` with the BPF backend; returns the image's path, JSON view and
/// the dump's warnings (stderr).
fn dump(pid: u32, dir: &Path, name: &str) -> (String, Value, String) {
    let image = dir
        .join(format!("{name}.img"))
        .to_str()
        .expect("utf-8 path")
        .to_owned();
    let output = plan(&[
        "dump",
        "--pid",
        &pid.to_string(),
        "--backend",
        "bpf",
        "-o",
        &image,
    ]);
    let warnings = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "plan dump of pid {pid} failed: {warnings}"
    );
    let view = serde_json::from_slice(&plan_ok(&["show", &image, "--objects", "--format", "json"]))
        .expect("show --format json prints JSON");
    (image, view, warnings)
}

/// What the image leaves out is said, naming the ring: SINGLE_ISSUER's
/// thread when set. The positions are not a caveat: the program mapped its
/// ring, so a restore puts them back (`assert_positions_between` checks
/// them against fdinfo).
fn assert_caveats(warnings: &str, fd: u32, single_issuer: bool, context: &str) {
    assert_eq!(
        warnings.contains("IORING_SETUP_SINGLE_ISSUER"),
        single_issuer,
        "{context}: {warnings}"
    );
    assert!(
        !warnings.contains(&format!("(fd {fd}): its SQ head/tail are at ")),
        "{context}: a mapped ring is restored with its positions: {warnings}"
    );
}

/// Whether the dump said the ring moved while its positions were read (a
/// running program, dumped without --freeze): its image then has no state,
/// and only that is checked.
fn torn(warnings: &str, fd: u32, context: &str) -> bool {
    let torn = warnings.contains(&format!(
        "the ring at fd {fd} moved while its positions were read"
    ));
    if torn {
        eprintln!(
            "{context}: the dump caught the ring moving; its state is not checked: {warnings}"
        );
    }
    torn
}

/// The ring's positions in the image lie between what the kernel's fdinfo
/// showed before the dump (`before`: its SqHead) and after it (the program
/// kept doing I/O meanwhile; every counter only grows, as u32 differences).
/// On a kernel whose fdinfo lacks 6.18's `CachedSqHead`, only `before`.
fn assert_positions_between(
    ring: &Value,
    before: &Fdinfo,
    (pid, fd): (u32, u32),
    warnings: &str,
    context: &str,
) {
    if ring["state"].is_null() {
        assert!(
            torn(warnings, fd, context),
            "{context}: the image has no state and the dump did not say why: {warnings}"
        );
        return;
    }
    let positions = &ring["state"]["positions"];
    let get = |name: &str| {
        positions[name]
            .as_u64()
            .and_then(|value| u32::try_from(value).ok())
            .unwrap_or_else(|| panic!("{context}: state.positions.{name} in {ring}"))
    };
    let not_behind = |earlier: u32, later: u32| later.wrapping_sub(earlier) < 1 << 31;
    let sq_head = get("cached_sq_head");
    assert!(
        not_behind(u32::try_from(before.sq_head).unwrap_or(u32::MAX), sq_head),
        "{context}: the image's SQ head {sq_head} is behind fdinfo's {} before the dump",
        before.sq_head
    );
    assert!(
        get("sq_tail").wrapping_sub(sq_head) <= u32::try_from(before.sq_entries).unwrap_or(0),
        "{context}: more SQEs queued than the ring holds: {positions}"
    );
    assert!(
        get("cq_tail").wrapping_sub(get("cq_head"))
            <= u32::try_from(before.cq_entries).unwrap_or(0),
        "{context}: more CQEs unconsumed than the ring holds: {positions}"
    );
    let text = fdinfo::read(Process::Pid(pid), i32::try_from(fd).unwrap_or(-1))
        .expect("fdinfo after the dump");
    let after = match fdinfo::queues::RingQueues::parse(Path::new("fdinfo"), &text) {
        Ok(after) => after,
        Err(why) => {
            eprintln!("{context}: fdinfo without 6.18's positions ({why}): compared with the one before only");
            return;
        }
    };
    let pairs = [
        ("cached_sq_head", after.cached_sq_head),
        ("sq_tail", after.sq_tail),
        ("cq_head", after.cq_head),
        ("cq_tail", after.cq_tail),
        ("cached_cq_tail", after.cached_cq_tail),
    ];
    for (name, later) in pairs {
        assert!(
            not_behind(get(name), later),
            "{context}: the image's {name} {} is ahead of fdinfo's {later} after the dump",
            get(name)
        );
    }
}

fn object<'a>(view: &'a Value, id: &Value) -> &'a Value {
    view["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .find(|object| object["id"] == *id)
        .unwrap_or_else(|| panic!("no object {id}"))
}

/// The one ring of the image, checked against the kernel's fdinfo read at
/// dump time: sizes, fd, SQ thread, registered file paths and buffers.
fn the_ring<'a>(view: &'a Value, fd: u32, info: &Fdinfo, context: &str) -> &'a Value {
    let rings = objects_of_kind(view, "ring");
    assert_eq!(rings.len(), 1, "{context}: one ring");
    let ring = rings[0];
    assert_eq!(
        ring["fds"],
        serde_json::json!([fd]),
        "{context}: the ring's fd"
    );
    assert_eq!(
        ring["unknown"],
        serde_json::json!([]),
        "{context}: the BPF backend knows everything"
    );
    assert_eq!(
        ring["setup"]["sq_entries"], info.sq_entries,
        "{context}: sq_entries vs fdinfo SqMask"
    );
    assert_eq!(
        ring["setup"]["cq_entries"], info.cq_entries,
        "{context}: cq_entries vs fdinfo CqMask"
    );
    let paths_shown = crate::support::kernel_shows_registered_file_paths();
    if paths_shown || info.sq_thread >= 0 {
        assert_eq!(
            ring["sq_group"].is_null(),
            info.sq_thread < 0,
            "{context}: sq_group vs fdinfo SqThread"
        );
    } else {
        // 6.1 prints SqThread -1 whenever the SQ thread holds its lock,
        // i.e. while it polls: fdinfo cannot say, the setup flags can.
        const SQPOLL: u64 = 1 << 1;
        let sqpoll = ring["setup"]["flags"].as_u64().expect("setup flags") & SQPOLL != 0;
        assert_eq!(
            ring["sq_group"].is_null(),
            !sqpoll,
            "{context}: sq_group vs SQPOLL"
        );
        eprintln!("{context}: SqThread not compared: this kernel's fdinfo hides it while the SQ thread polls");
    }
    // 6.1's fdinfo shows a registered file's name, 6.18's its path.
    let shown = |path: &Value| match (paths_shown, path.as_str()) {
        (false, Some(path)) => Value::from(path.rsplit('/').next().unwrap_or(path)),
        _ => path.clone(),
    };
    let paths: Vec<Value> = ring["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|slot| shown(&object(view, &slot["object"])["path"]))
        .collect();
    let want: Vec<Value> = info
        .files
        .iter()
        .map(|path| Value::from(path.as_str()))
        .collect();
    assert_eq!(
        paths, want,
        "{context}: registered file paths vs fdinfo UserFiles"
    );
    assert_eq!(
        ring["file_slots"],
        info.files.len(),
        "{context}: file slots vs fdinfo"
    );
    let buffers: Vec<(u64, u64)> = ring["buffers"]
        .as_array()
        .expect("buffers")
        .iter()
        .map(|slot| {
            (
                slot["addr"].as_u64().expect("addr"),
                slot["len"].as_u64().expect("len"),
            )
        })
        .collect();
    assert_eq!(
        buffers, info.buffers,
        "{context}: registered buffers vs fdinfo UserBufs"
    );
    assert_eq!(
        ring["buffer_slots"],
        info.buffers.len(),
        "{context}: buffer slots vs fdinfo"
    );
    ring
}

/// `plan exec IMAGE --substitute-external --verify` passes, with `files`
/// registered files reopened by path and nothing substituted.
fn restore_and_verify(image: &str, files: usize, context: &str) {
    let mut args = vec!["exec", image, "--substitute-external", "--verify"];
    args.extend_from_slice(crate::support::moved_rings_where_needed());
    let output = plan(&args);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{context}: exec --verify failed ({}): {stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    // With continuity (Linux 6.5+) the ring's state is compared too, when
    // the image has one (a dump of a running program that caught the ring
    // moving leaves it out, and said so).
    let bytes = std::fs::read(image).expect("the image");
    let has_state = ringplan_image::decode_slice(&bytes)
        .expect("the image decodes")
        .objects
        .iter()
        .any(|object| {
            matches!(&object.kind, ringplan_image::ObjectKind::Ring(ring) if ring.state.is_some())
        });
    let ring = if crate::support::kernel_has_no_mmap() && has_state {
        "1 ring, 1 ring state"
    } else {
        "1 ring"
    };
    let head = match files {
        0 => format!("verified: {ring} match"),
        1 => format!("verified: 1 file, {ring} match"),
        n => format!("verified: {n} files, {ring} match"),
    };
    assert!(stdout.starts_with(&head), "{context}: {stdout}");
    assert!(
        !stdout.contains("substituted"),
        "{context}: a file was substituted, not reopened: {stdout}"
    );
}

/// The paths the plan reopens, in step order.
fn reopened_paths(image: &str) -> Vec<String> {
    let plan: Value =
        serde_json::from_slice(&plan_ok(&["show", image, "--format", "json"])).expect("plan JSON");
    plan["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|step| step["op"] == "open_file")
        .map(|step| step["path"].as_str().expect("path").to_owned())
        .collect()
}

struct FioJob {
    name: &'static str,
    files: usize,
    iodepth: u64,
    bs: u64,
    registerfiles: bool,
    fixedbufs: bool,
    sqthread_poll: bool,
}

fn fio(job: FioJob) {
    let dir = scratch_dir(&format!("real-fio-{}", job.name));
    let files: Vec<PathBuf> = (0..job.files)
        .map(|index| dir.join(format!("file{index}")))
        .collect();
    let names: Vec<String> = files
        .iter()
        .map(|path| {
            path.file_name()
                .expect("name")
                .to_str()
                .expect("utf-8")
                .to_owned()
        })
        .collect();
    let flag = |on: bool| u8::from(on);
    let job_file = dir.join("job.fio");
    std::fs::write(
        &job_file,
        format!(
            "[global]\nioengine=io_uring\nrw=randread\ndirect=0\nbs={bs}\niodepth={iodepth}\nsize=16M\n\
             time_based\nruntime=30\ndirectory={dir}\n\n[{name}]\nfilename={filenames}\n\
             registerfiles={registerfiles}\nfixedbufs={fixedbufs}\nsqthread_poll={sqthread_poll}\n",
            bs = job.bs,
            iodepth = job.iodepth,
            dir = dir.display(),
            name = job.name,
            filenames = names.join(":"),
            registerfiles = flag(job.registerfiles),
            fixedbufs = flag(job.fixedbufs),
            sqthread_poll = flag(job.sqthread_poll),
        ),
    )
    .expect("writing the job file");
    let mut program = Program::spawn("fio", Command::new("fio").arg("--eta=never").arg(&job_file));
    // fio forks one process per job; that child owns the ring.
    let main = program.pid();
    let (pid, fd, info) = wait_for_io(&mut program, || {
        ringplan_kernel::procfs::task::children(Process::Pid(main))
            .unwrap_or_default()
            .into_iter()
            .find(|child| !ring_fds(*child).is_empty())
    });
    let context = format!("fio {} (job pid {pid})", job.name);
    let (image, view, warnings) = dump(pid, &dir, job.name);
    assert_eq!(view["source"]["pid"], pid, "{context}: source pid");
    assert_caveats(&warnings, fd, !job.sqthread_poll, &context);
    let ring = the_ring(&view, fd, &info, &context);
    assert_positions_between(ring, &info, (pid, fd), &warnings, &context);
    if !job.sqthread_poll && !ring["state"].is_null() {
        // SINGLE_ISSUER: the owner is one of the job's threads.
        let owner = ring["state"]["owner_tid"]
            .as_u64()
            .unwrap_or_else(|| panic!("{context}: no owner_tid in {}", ring["state"]));
        assert!(
            Path::new(&format!("/proc/{pid}/task/{owner}")).exists(),
            "{context}: owner {owner} is not a thread of {pid}"
        );
    }

    // The ring agrees with the job file.
    let depth = job.iodepth.next_power_of_two();
    let setup = &ring["setup"];
    assert_eq!(
        setup["sq_entries"], depth,
        "{context}: sq_entries = iodepth rounded up"
    );
    assert_eq!(
        setup["cq_entries"], depth,
        "{context}: fio asks for CQSIZE = its depth"
    );
    let flags = if job.sqthread_poll {
        SQPOLL | CQSIZE
    } else {
        CQSIZE | COOP_TASKRUN | SINGLE_ISSUER | DEFER_TASKRUN
    };
    assert_eq!(setup["flags"], flags, "{context}: setup flags");
    if job.sqthread_poll {
        assert_eq!(
            setup["sq_thread_idle_ms"], 1000,
            "{context}: the kernel's default idle"
        );
        assert!(!ring["sq_group"].is_null(), "{context}: an SQ thread");
    } else {
        assert_eq!(
            setup["sq_thread_idle_ms"],
            Value::Null,
            "{context}: no SQ thread"
        );
        assert_eq!(ring["sq_group"], Value::Null, "{context}: no SQ thread");
    }
    assert_eq!(setup["sq_thread_cpu"], Value::Null, "{context}: no SQ_AFF");
    assert_eq!(
        ring["eventfd"],
        Value::Null,
        "{context}: fio registers no eventfd"
    );

    // Registered files: fio's files, in job-file order, each also open.
    let paths: Vec<Value> = files
        .iter()
        .map(|path| Value::from(path.to_str().expect("utf-8")))
        .collect();
    let want_files: &[Value] = if job.registerfiles { &paths } else { &[] };
    assert_eq!(
        ring["file_slots"],
        want_files.len(),
        "{context}: file slots = nrfiles"
    );
    let mut by_path = BTreeMap::new();
    for slot in ring["files"].as_array().expect("files") {
        let file = object(&view, &slot["object"]);
        assert_eq!(file["type"], "regular", "{context}: slot {}", slot["index"]);
        assert!(
            !file["fds"].as_array().expect("fds").is_empty(),
            "{context}: fio keeps slot {} open",
            slot["index"]
        );
        by_path.insert(slot["index"].as_u64().expect("index"), file["path"].clone());
    }
    assert_eq!(
        by_path.into_values().collect::<Vec<_>>(),
        want_files,
        "{context}: registered file paths"
    );

    // Fixed buffers: one of bs bytes per io_u, laid out back to back.
    let buffers = ring["buffers"].as_array().expect("buffers");
    let want_buffers = if job.fixedbufs { depth } else { 0 };
    assert_eq!(
        ring["buffer_slots"], want_buffers,
        "{context}: buffer slots = rounded iodepth"
    );
    assert_eq!(
        buffers.len() as u64,
        want_buffers,
        "{context}: every buffer slot used"
    );
    let base = buffers
        .first()
        .map_or(0, |slot| slot["addr"].as_u64().expect("addr"));
    for (index, slot) in buffers.iter().enumerate() {
        assert_eq!(slot["index"], index, "{context}: buffer slot order");
        assert_eq!(slot["len"], job.bs, "{context}: buffer {index} is bs long");
        assert_eq!(
            slot["addr"],
            base + index as u64 * job.bs,
            "{context}: buffer {index} follows the previous one"
        );
    }

    // The restore reopens fio's files by path (and only those).
    assert_eq!(
        reopened_paths(&image),
        want_files
            .iter()
            .map(|path| path.as_str().expect("str"))
            .collect::<Vec<_>>()
    );
    restore_and_verify(&image, want_files.len(), &context);
}

#[test]
fn fio_plain() {
    fio(FioJob {
        name: "plain",
        files: 1,
        iodepth: 8,
        bs: 4096,
        registerfiles: false,
        fixedbufs: false,
        sqthread_poll: false,
    });
}

#[test]
fn fio_registerfiles_fixedbufs() {
    fio(FioJob {
        name: "registered",
        files: 2,
        iodepth: 12,
        bs: 8192,
        registerfiles: true,
        fixedbufs: true,
        sqthread_poll: false,
    });
}

#[test]
fn fio_sqthread_poll_registerfiles_fixedbufs() {
    fio(FioJob {
        name: "sqpoll",
        files: 3,
        iodepth: 32,
        bs: 4096,
        registerfiles: true,
        fixedbufs: true,
        sqthread_poll: true,
    });
}

/// Whether the filesystem of `path` accepts O_DIRECT (`qemu-img -t none`).
fn accepts_o_direct(path: &Path) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32)
        .open(path)
        .is_ok()
}

#[test]
fn qemu_img_bench() {
    let dir = scratch_dir("real-qemu-img");
    let raw = crate::support::qemu_raw_image(&dir);
    let cache = if accepts_o_direct(&raw) {
        "none"
    } else {
        "writeback"
    };
    // 2M requests take about 5 s here; ten times that leaves room on a busy
    // machine, and the program is killed when the test ends.
    let mut program = Program::spawn(
        "qemu-img",
        Command::new("qemu-img")
            .args([
                "bench", "-i", "io_uring", "-t", cache, "-c", "20000000", "-d", "32", "-f", "raw",
            ])
            .arg(&raw),
    );
    let main = program.pid();
    let (pid, fd, info) = wait_for_io(&mut program, || Some(main));
    let context = format!("qemu-img bench -t {cache} (pid {pid})");
    let (image, view, warnings) = dump(pid, &dir, "qemu-img");
    assert_eq!(view["source"]["pid"], pid, "{context}: source pid");
    assert_caveats(&warnings, fd, false, &context);
    let ring = the_ring(&view, fd, &info, &context);
    assert_positions_between(ring, &info, (pid, fd), &warnings, &context);
    let setup = &ring["setup"];
    assert_eq!(setup["flags"], 0, "{context}: a plain ring");
    assert_eq!(setup["sq_entries"], 128, "{context}: sq_entries");
    assert_eq!(setup["cq_entries"], 256, "{context}: cq_entries");
    assert_eq!(ring["sq_group"], Value::Null, "{context}: no SQ thread");
    assert_eq!(
        ring["eventfd"],
        Value::Null,
        "{context}: no registered eventfd"
    );
    assert_eq!(ring["file_slots"], 0, "{context}: no registered files");
    assert_eq!(ring["buffer_slots"], 0, "{context}: no registered buffers");
    assert_eq!(
        view["objects"].as_array().expect("objects").len(),
        1,
        "{context}: the ring depends on nothing"
    );
    restore_and_verify(&image, 0, &context);
}
