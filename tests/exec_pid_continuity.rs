//! `plan exec IMAGE --pid PID` restoring rings *where the program left
//! them*, inside the program: `tests/programs/ring_detach_self.c` (liburing
//! rings past several wraps with unconsumed CQEs and queued SQEs, an
//! overflow list, a CQ ring mapped twice, SQPOLL; optionally a
//! `SINGLE_ISSUER|DEFER_TASKRUN` ring owned by a second thread, a
//! `NO_MMAP` ring on its own memory, and a buffer ring whose head moved) is
//! dumped, takes its rings out itself
//! (closes every ring fd, unmaps every ring mapping, keeps its own memory
//! and its liburing structs), and gets them back from outside. Checked from
//! outside: the kernel's fdinfo of every ring equals the original's, memory
//! is at every address where the program saw a ring, and the program then
//! uses every ring with liburing (the owned one from its owner thread)
//! and finds exactly the completions it left, and its next reads take the
//! buffers that were next. A ring whose owner thread
//! the target lacks is refused in one line; a failure injected at every
//! step leaves the target's fds, maps and own ring memory as found. On a
//! kernel without `IORING_SETUP_NO_MMAP` the restore is refused.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use ringplan_exec::test_hooks::ProcessState;
use ringplan_kernel::procfs::fd::{FdKind, ProcessFds};
use ringplan_kernel::procfs::fdinfo::queues::RingQueues;
use ringplan_kernel::procfs::mem::ProcessMemory;
use ringplan_kernel::procfs::{maps, Process};
use serde_json::Value;

use crate::continuity::{queues, seen_addresses};
use crate::support::{fail_at_every_step, kernel_has_no_mmap, plan, scratch_dir, PLAN};

fn program(name: &'static str) -> &'static Path {
    crate::support::c_program(name)
}

/// `ring_detach_self` running, driven through its stdin; killed on drop.
struct Program {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    line: Value,
    pid: u32,
}

impl Program {
    fn start(args: &[&str]) -> Program {
        let binary = program("ring_detach_self");
        let mut child = Command::new(binary)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting ring_detach_self");
        let stdin = child.stdin.take().expect("piped stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("its first line");
        let line: Value = serde_json::from_str(&line)
            .unwrap_or_else(|error| panic!("ring_detach_self printed {line:?}: {error}"));
        let pid = line["pid"].as_u64().expect("pid") as u32;
        Program {
            child,
            stdin,
            stdout,
            line,
            pid,
        }
    }

    /// Sends one command and returns its one-line answer.
    fn ask(&mut self, command: &str) -> String {
        writeln!(self.stdin, "{command}").expect("writing a command");
        self.stdin.flush().expect("flushing");
        let mut answer = String::new();
        self.stdout
            .read_line(&mut answer)
            .expect("reading an answer");
        answer.trim_end().to_owned()
    }

    /// `(name, fd)` of every ring it holds.
    fn rings(&self) -> Vec<(String, i32)> {
        self.line["rings"]
            .as_object()
            .expect("rings")
            .iter()
            .map(|(name, ring)| (name.clone(), ring["fd"].as_i64().expect("fd") as i32))
            .collect()
    }

    /// Every io_uring fd it holds now.
    fn ring_fds(&self) -> Vec<i32> {
        let mut fds = ProcessFds::open(Process::Pid(self.pid)).expect("its fds");
        let numbers = fds.fd_numbers().expect("fd numbers");
        numbers
            .into_iter()
            .filter(|&fd| {
                matches!(fds.read_link(fd), Ok(Some(link)) if FdKind::of_link(link) == FdKind::Ring)
            })
            .collect()
    }

    /// Its maps lines that are io_uring regions.
    fn ring_mappings(&self) -> Vec<String> {
        maps::read(Process::Pid(self.pid))
            .expect("its maps")
            .lines()
            .filter(|line| line.contains(ringplan_kernel::abi::RING_FILE_PATH))
            .map(str::to_owned)
            .collect()
    }

    /// Uses every ring; asserts each answers "ok".
    fn uses_every_ring(&mut self) {
        let answer = self.ask("use");
        let answers: Value = serde_json::from_str(&answer)
            .unwrap_or_else(|error| panic!("use answered {answer:?}: {error}"));
        let answers = answers.as_object().expect("an object");
        let pbufs = ["pbuf", "pbuf_sqpoll"]
            .into_iter()
            .filter(|key| self.line.get(key).is_some())
            .count();
        assert_eq!(answers.len(), self.rings().len() + pbufs, "{answer}");
        for (ring, said) in answers {
            assert_eq!(said, "ok", "{ring}: {answer}");
        }
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Dumps `program` frozen into `dir`: the image's path and the kernel's
/// view of every ring then.
fn dump(program: &Program, dir: &Path) -> (String, Vec<(String, i32, RingQueues)>) {
    let path = dir.join("image").to_str().expect("utf-8").to_owned();
    let pid = program.pid.to_string();
    let dumped = plan(&["dump", "--pid", &pid, "--freeze", "-o", &path]);
    assert!(
        dumped.status.success(),
        "dump: {}",
        String::from_utf8_lossy(&dumped.stderr)
    );
    let views = program
        .rings()
        .into_iter()
        .map(|(name, fd)| {
            let view = queues(program.pid, fd);
            (name, fd, view)
        })
        .collect();
    (path, views)
}

/// Takes the rings out (the program does it itself) and checks from
/// outside that none is left.
fn detach(program: &mut Program) {
    assert_eq!(program.ask("detach"), "detached");
    assert_eq!(program.ring_fds(), Vec::<i32>::new());
    assert_eq!(program.ring_mappings(), Vec::<String>::new());
}

/// Asserts every ring is back as the kernel held it, with memory at every
/// address where the program saw it.
fn assert_rings_back(program: &Program, image_path: &str, views: &[(String, i32, RingQueues)]) {
    let image = ringplan_image::decode_slice(&std::fs::read(image_path).expect("the image"))
        .expect("decoding the image");
    let maps = maps::read(Process::Pid(program.pid)).expect("its maps");
    for (name, fd, want) in views {
        assert_eq!(&queues(program.pid, *fd), want, "{name} (fd {fd})");
        for addr in seen_addresses(&image, *fd) {
            assert!(
                maps.lines()
                    .filter_map(maps::MapsEntry::parse)
                    .any(|entry| entry.start <= addr && addr < entry.end),
                "{name}: nothing at {addr:#x}:\n{maps}"
            );
        }
    }
}

#[test]
fn rings_come_back_where_the_program_left_them_in_its_own_process() {
    let dir = scratch_dir("exec-pid-continuity");
    // "pbuf": the queued ring's buffer ring, its head at 5, and the SQPOLL
    // ring's, at 3, come back there (the program's next reads take the
    // buffers after them).
    let mut program = Program::start(&["pbuf"]);
    let (image, views) = dump(&program, &dir);
    assert_eq!(views.len(), 4, "{}", program.line);
    detach(&mut program);
    let pid = program.pid.to_string();
    if !kernel_has_no_mmap() {
        let refused = plan(&["exec", &image, "--pid", &pid]);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("IORING_SETUP_NO_MMAP needs Linux 6.5"),
            "{stderr}"
        );
        assert_eq!(program.ring_fds(), Vec::<i32>::new());
        return;
    }
    let restored = plan(&["exec", &image, "--pid", &pid]);
    let stdout = String::from_utf8_lossy(&restored.stdout);
    assert!(
        restored.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    assert!(
        stdout.contains("4 ring(s) where the program left them; the process was resumed"),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("process {pid} held ")), "{stdout}");
    assert_rings_back(&program, &image, &views);
    // The queued ring really is past several wraps.
    let (_, _, queued) = views
        .iter()
        .find(|(name, _, _)| name == "queued")
        .expect("queued ring");
    assert!(queued.cached_sq_head >= 5000, "{queued:?}");
    program.uses_every_ring();
}

#[test]
fn an_owner_thread_and_the_programs_own_memory_verified() {
    if !kernel_has_no_mmap() {
        return; // the first test checks the refusal
    }
    let dir = scratch_dir("exec-pid-continuity-owner");
    let mut program = Program::start(&["owned", "no_mmap"]);
    let (image, views) = dump(&program, &dir);
    assert_eq!(views.len(), 6, "{}", program.line);
    detach(&mut program);
    let pid = program.pid.to_string();
    let restored = plan(&["exec", &image, "--pid", &pid, "--verify"]);
    let stdout = String::from_utf8_lossy(&restored.stdout);
    assert!(
        restored.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    assert!(stdout.contains("6 ring states match"), "{stdout}");
    assert!(!stdout.contains("which ran the plan"), "{stdout}");
    assert_rings_back(&program, &image, &views);
    // The owned ring takes submissions from its owner thread (liburing's
    // submit and wait there): a ring owned by any other thread answers
    // EEXIST, and its DEFER_TASKRUN completions would never be posted.
    program.uses_every_ring();
}

#[test]
fn the_owner_thread_is_named_and_shown() {
    if !kernel_has_no_mmap() {
        return;
    }
    let dir = scratch_dir("exec-pid-continuity-owner-line");
    let mut program = Program::start(&["owned"]);
    let owner = program.line["owner_tid"].as_u64().expect("owner_tid");
    let (image, _) = dump(&program, &dir);
    detach(&mut program);
    let pid = program.pid.to_string();
    let restored = plan(&["exec", &image, "--pid", &pid]);
    let stdout = String::from_utf8_lossy(&restored.stdout);
    assert!(restored.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "IORING_SETUP_SINGLE_ISSUER, owned by thread {owner} of process {pid} (its recorded owner)"
        )),
        "{stdout}"
    );
    program.uses_every_ring();
}

#[test]
fn a_ring_whose_owner_thread_is_not_in_the_target_is_refused() {
    let dir = scratch_dir("exec-pid-continuity-no-owner");
    // ring_continuity's image: a SINGLE_ISSUER ring owned by its second
    // thread, restored into a fresh process that has no such thread.
    let mut original = Command::new(program("ring_continuity"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting ring_continuity");
    let mut line = String::new();
    BufReader::new(original.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("its line");
    let description: Value = serde_json::from_str(&line).expect("JSON");
    let owner = description["owner_tid"].as_u64().expect("owner_tid");
    let image = dir.join("ring_continuity.img");
    let image = image.to_str().expect("utf-8");
    let original_pid = original.id().to_string();
    let dumped = plan(&["dump", "--pid", &original_pid, "--freeze", "-o", image]);
    let _ = original.kill();
    let _ = original.wait();
    assert!(dumped.status.success());
    let plan_of_image = ringplan_plan::compile(
        &ringplan_image::decode_slice(&std::fs::read(image).expect("image")).expect("decoding"),
    )
    .expect("compiles");
    let owner_recorded = plan_of_image.steps.iter().any(|step| {
        matches!(&step.op, ringplan_plan::Op::SetupRing(setup) if setup.owner_tid == Some(owner as u32))
    });
    if !owner_recorded {
        // A dump that could not read the owner (no ring state) has no
        // owner to refuse.
        eprintln!("the image records no owner thread: nothing to refuse");
        return;
    }

    let mut target = Command::new(crate::exec_pid::restore_target())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting restore_target");
    let mut first = String::new();
    let mut target_out = BufReader::new(target.stdout.take().expect("stdout"));
    target_out.read_line(&mut first).expect("its line");
    let pid = target.id();
    let before = ProcessState::capture_of(pid);
    let output = Command::new(PLAN)
        .args(["exec", image, "--pid", &pid.to_string()])
        .output()
        .expect("running plan");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "(IORING_SETUP_SINGLE_ISSUER) is owned by thread {owner}, which process {pid} does not have"
        )),
        "{stderr}"
    );
    assert_eq!(
        before.changes_to(&ProcessState::capture_of(pid)),
        Vec::<String>::new()
    );
    let mut stdin = target.stdin.take().expect("stdin");
    stdin.write_all(b"ping\n").expect("ping");
    let mut alive = String::new();
    target_out.read_line(&mut alive).expect("answer");
    assert_eq!(alive, "alive\n");
    let _ = target.kill();
    let _ = target.wait();
}

/// The bytes of the program's own ring memory (the no_mmap ring's rings
/// and SQEs, one page each).
/// The program's own memory that a restore uses and must leave as found:
/// the no_mmap ring's, and the buffer ring's entries and buffers.
fn own_ring_memory(program: &Program) -> Vec<u8> {
    let ring = &program.line["rings"]["no_mmap"];
    let (pbuf, pbuf_sqpoll) = (&program.line["pbuf"], &program.line["pbuf_sqpoll"]);
    let memory = ProcessMemory::open(Process::Pid(program.pid)).expect("its memory");
    let mut bytes = Vec::new();
    for value in [
        &ring["rings"],
        &ring["sqes"],
        &pbuf["ring"],
        &pbuf["buffers"],
        &pbuf_sqpoll["ring"],
        &pbuf_sqpoll["buffers"],
    ] {
        let addr = value.as_u64().expect("an address");
        let mut page = vec![0u8; 4096];
        memory.read_exact_at(addr, &mut page).expect("reading");
        bytes.extend(page);
    }
    bytes
}

#[test]
fn an_injected_failure_at_any_step_leaves_the_target_as_it_was() {
    if !kernel_has_no_mmap() {
        return;
    }
    let dir = scratch_dir("exec-pid-continuity-fail");
    let mut program = Program::start(&["owned", "no_mmap", "pbuf"]);
    let (image, views) = dump(&program, &dir);
    detach(&mut program);
    let pid = program.pid.to_string();
    let before = ProcessState::capture_of(program.pid);
    let own_memory = own_ring_memory(&program);
    fail_at_every_step(&image, program.pid, &[], &before, |step| {
        assert_eq!(program.ring_fds(), Vec::<i32>::new(), "step {step}");
        assert!(
            own_ring_memory(&program) == own_memory,
            "step {step}: the program's own ring memory changed"
        );
    });
    // And then the restore itself, and the program carries on.
    let restored = plan(&["exec", &image, "--pid", &pid]);
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    assert_rings_back(&program, &image, &views);
    program.uses_every_ring();
}
