//! A buffer ring in kernel memory (`IOU_PBUF_RING_MMAP`) carried through a
//! take-out: `tests/programs/pbuf_mmap_reader.c` registers one, maps it
//! from its ring fd, provides buffers through it and reads through part of
//! them, and is taken out with `plan dump --pid P --detach` (which unmaps
//! the kernel's memory with the ring) and put back with `plan exec IMAGE
//! --pid P` (which puts the captured entries and tail back as user memory
//! where the program had the ring). It then reads through the rest,
//! provides more through the ring's tail, reads those, unregisters the
//! ring and unmaps it, and reports from its CQEs which buffers it got,
//! which the test checks. Needs `IORING_SETUP_NO_MMAP` (Linux 6.5) for
//! `exec --pid` to put the ring back where the program had it; the buffer
//! ring itself needs 6.4.

use serde_json::{json, Value};

use ringplan_exec::test_hooks::ProcessState;

use crate::support::line_program::LineProgram;
use crate::support::{
    fail_at_every_step, kernel_has_no_mmap, objects_of_kind, plan, plan_ok, scratch_dir,
};

/// A pbuf_mmap_reader that has taken its first buffers and waits.
struct Reader {
    program: LineProgram,
    /// Its first line: pid, taken, buffers, ring (where it mapped the
    /// buffer ring), area (its buffers').
    started: Value,
}

impl Reader {
    /// `None` (after saying why) on a kernel without kernel-memory buffer
    /// rings.
    fn start(buffers: u32, taken: u32) -> Option<Reader> {
        let (program, started) = LineProgram::start(
            "pbuf_mmap_reader",
            &[buffers.to_string(), taken.to_string()],
        );
        if let Some(errno) = started.get("unsupported") {
            eprintln!(
                "skipped: this kernel refuses IOU_PBUF_RING_MMAP (errno {errno}; Linux 6.4+)"
            );
            return None;
        }
        assert_eq!(started["taken"], taken, "{started}");
        Some(Reader { program, started })
    }

    fn pid(&self) -> u32 {
        self.program.pid()
    }

    /// Lets it read the rest; its done line and exit status.
    fn finish(self) -> (Value, Option<i32>) {
        self.program.finish()
    }
}

/// The mappings of `pid` that cover `addr`, as /proc/PID/maps lines.
fn mappings_at(pid: u32, addr: u64) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .expect("maps")
        .lines()
        .filter(|line| {
            let range = line.split_whitespace().next().unwrap_or_default();
            let (start, end) = range.split_once('-').unwrap_or_default();
            let start = u64::from_str_radix(start, 16).unwrap_or(u64::MAX);
            let end = u64::from_str_radix(end, 16).unwrap_or(0);
            start <= addr && addr < end
        })
        .map(str::to_owned)
        .collect()
}

/// 12 buffers (bids 100 to 111) through a 16-entry kernel-memory ring, 5
/// taken before the take-out: the image holds the ring at the program's
/// address with its 256 bytes (tail 12) and head 5; a put-back failed at
/// each of its steps in turn changes nothing; after the put-back the ring
/// is private memory where the program mapped it, and the kernel hands
/// the reader bids 105 to 111 in order, each into its own buffer, then
/// the two it provided after (200, 201), then none; its unregister and
/// munmap of the ring succeed.
#[test]
fn a_program_reading_through_a_kernel_memory_buffer_ring_is_taken_out_put_back_and_finishes() {
    let dir = scratch_dir("pbuf-mmap-round-trip");
    let Some(reader) = Reader::start(12, 5) else {
        return;
    };
    let ring_addr = reader.started["ring"].as_u64().expect("ring address");
    let area = reader.started["area"].as_u64().expect("area address");
    let pid = reader.pid();
    assert!(
        mappings_at(pid, ring_addr)
            .iter()
            .any(|line| line.contains("io_uring")),
        "the program maps the kernel's memory: {:?}",
        mappings_at(pid, ring_addr)
    );
    let image = dir.join("pbuf-mmap.img");
    let image_text = image.to_str().expect("utf-8 path");
    let pid_text = pid.to_string();
    plan_ok(&["dump", "--pid", &pid_text, "--detach", "-o", image_text]);
    // The detach unmapped the kernel's memory with the ring's.
    assert_eq!(mappings_at(pid, ring_addr), Vec::<String>::new());
    let view: Value = serde_json::from_slice(&plan_ok(&[
        "show",
        image_text,
        "--objects",
        "--format",
        "json",
    ]))
    .expect("JSON view");
    let rings = objects_of_kind(&view, "ring");
    assert_eq!(rings.len(), 1, "{view:#}");
    let pbuf = &rings[0]["pbuf_rings"];
    assert_eq!(pbuf.as_array().map(Vec::len), Some(1), "{pbuf}");
    assert_eq!(pbuf[0]["bgid"], 5);
    assert_eq!(pbuf[0]["mmap"], true);
    assert_eq!(pbuf[0]["addr"], ring_addr);
    assert_eq!(pbuf[0]["head"], 5);
    assert_eq!(pbuf[0]["contents"]["len"], 256);
    assert_eq!(pbuf[0]["contents"]["tail"], 12);
    if !kernel_has_no_mmap() {
        let refused = plan(&["exec", image_text, "--pid", &pid_text]);
        assert_eq!(
            refused.status.code(),
            Some(2),
            "{}",
            String::from_utf8_lossy(&refused.stderr)
        );
        return;
    }
    // A failure at any step of the put-back (the buffer ring's among them:
    // its bytes written, registered, its head brought back) leaves the
    // reader as the detach left it.
    let before = ProcessState::capture_of(pid);
    fail_at_every_step(image_text, pid, &[], &before, |_| {});
    assert_eq!(mappings_at(pid, ring_addr), Vec::<String>::new());
    plan_ok(&["exec", image_text, "--pid", &pid_text]);
    let now = mappings_at(pid, ring_addr);
    assert!(
        now.len() == 1 && now[0].contains(" rw-p ") && !now[0].contains("io_uring"),
        "private memory where the ring was: {now:?}"
    );
    let (done, code) = reader.finish();
    let bids: Vec<u64> = (105..112).chain([200, 201]).collect();
    let addrs: Vec<u64> = bids.iter().map(|bid| area + (bid - 100) * 64).collect();
    assert_eq!(done, json!({"done": 9, "bids": bids, "addrs": addrs}));
    assert_eq!(code, Some(0));
}

/// After the take-out the program maps memory of its own where the buffer
/// ring was: the put-back refuses in preflight (the ring's bytes would
/// overwrite it) and leaves that memory as it was.
#[test]
fn a_kernel_memory_buffer_ring_is_not_written_over_the_programs_own_memory() {
    if !kernel_has_no_mmap() {
        eprintln!("skipped: exec --pid needs IORING_SETUP_NO_MMAP (Linux 6.5)");
        return;
    }
    let dir = scratch_dir("pbuf-mmap-squat");
    let Some(mut reader) = Reader::start(4, 1) else {
        return;
    };
    let ring_addr = reader.started["ring"].as_u64().expect("ring address");
    let image = dir.join("pbuf-mmap.img");
    let image_text = image.to_str().expect("utf-8 path");
    let pid = reader.pid();
    let pid_text = pid.to_string();
    plan_ok(&["dump", "--pid", &pid_text, "--detach", "-o", image_text]);
    // SIGCONT: the detach left it stopped, and it must answer.
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).expect("a pid"),
        rustix::process::Signal::CONT,
    )
    .expect("SIGCONT");
    reader.program.send("squat");
    assert_eq!(reader.program.line()["squatted"], ring_addr);
    let before = ProcessState::capture_of(pid);
    let refused = plan(&["exec", image_text, "--pid", &pid_text]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("a buffer ring that was in kernel memory is placed there anew"),
        "{stderr}"
    );
    assert_eq!(
        before.changes_to(&ProcessState::capture_of(pid)),
        Vec::<String>::new()
    );
    let mut found = [0u8; 256];
    ringplan_kernel::procfs::mem::ProcessMemory::open(ringplan_kernel::procfs::Process::Pid(pid))
        .expect("its memory")
        .read_exact_at(ring_addr, &mut found)
        .expect("reading it");
    assert!(found.iter().all(|&byte| byte == 0xab), "{found:?}");
}

/// The same program restored with `--verify` after the put-back: the
/// comparison says the ring is user memory now and finds no difference.
#[test]
fn verify_explains_a_kernel_memory_buffer_ring_restored_as_user_memory() {
    if !kernel_has_no_mmap() {
        eprintln!("skipped: exec --pid needs IORING_SETUP_NO_MMAP (Linux 6.5)");
        return;
    }
    let dir = scratch_dir("pbuf-mmap-verify");
    let Some(reader) = Reader::start(8, 3) else {
        return;
    };
    let image = dir.join("pbuf-mmap.img");
    let image_text = image.to_str().expect("utf-8 path");
    let pid_text = reader.pid().to_string();
    plan_ok(&["dump", "--pid", &pid_text, "--detach", "-o", image_text]);
    let exec = plan(&["exec", image_text, "--pid", &pid_text, "--verify"]);
    let stderr = String::from_utf8_lossy(&exec.stderr);
    assert_eq!(exec.status.code(), Some(0), "{stderr}");
    let stdout = String::from_utf8_lossy(&exec.stdout);
    assert!(
        stdout.contains(
            "buffer ring 5 was in kernel memory (IOU_PBUF_RING_MMAP) and is user memory now"
        ),
        "{stdout}"
    );
    let (done, code) = reader.finish();
    assert_eq!(done["done"], 7, "{done}");
    assert_eq!(code, Some(0));
}
