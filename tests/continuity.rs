//! Round trips of ring continuity through `plan exec --hold`:
//! `tests/programs/ring_continuity.c` brings rings into known states with
//! real syscalls (positions past several wraps with queued SQEs and
//! unconsumed CQEs, an overflow list, SQE128|CQE32, NO_MMAP|NO_SQARRAY on
//! its own memory, DEFER_TASKRUN owned by a second thread, R_DISABLED rings
//! disabled and enabled, a CQ ring mapped at a second address, SQPOLL
//! past several wraps with unconsumed CQEs); it is
//! dumped frozen, restored by a holder, and the kernel's own view of each
//! restored ring (`/proc/HOLDER/fdinfo`: SqHead, SqTail, CachedSqHead,
//! CqHead, CqTail, CachedCqTail, the listed SQEs and CQEs, CqOverflowList)
//! must equal its view of the original, and the holder must have memory at
//! every address where the program saw the ring.
//!
//! On a kernel without `IORING_SETUP_NO_MMAP` (6.1), the same image is
//! refused before anything is done, naming a ring and why.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use ringplan_image::{Image, ObjectKind, RingRegion};
use ringplan_kernel::procfs::fdinfo::queues::RingQueues;
use ringplan_kernel::procfs::{fdinfo, Process};
use serde_json::Value;

use crate::support::{kernel_has_no_mmap, plan, scratch_dir, PLAN};

fn program() -> &'static Path {
    crate::support::c_program("ring_continuity")
}

/// A process that prints one JSON line and waits; killed on drop.
struct Running {
    child: Child,
    line: Value,
}

impl Running {
    fn start(command: &mut Command, what: &str) -> Running {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("starting {what}: {error}"));
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        let read = BufReader::new(stdout).read_line(&mut line);
        let parsed = serde_json::from_str(&line);
        match (read, parsed) {
            (Ok(_), Ok(line)) => Running { child, line },
            _ => {
                let _ = child.kill();
                let output = child.wait_with_output().expect("waiting");
                panic!(
                    "{what} printed {line:?}; stderr: {}",
                    String::from_utf8_lossy(&output.stderr)
                )
            }
        }
    }

    fn pid(&self) -> u32 {
        self.line["pid"]
            .as_u64()
            .map_or_else(|| self.child.id(), |pid| pid as u32)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn queues(pid: u32, fd: i32) -> RingQueues {
    let text = fdinfo::read(Process::Pid(pid), fd).expect("reading fdinfo");
    RingQueues::parse(Path::new("fdinfo"), &text)
        .unwrap_or_else(|error| panic!("fd {fd} of {pid}: {error}"))
}

/// Every address where the program saw a ring's memory: its mappings of
/// the ring fd, or the memory it gave the kernel.
pub(crate) fn seen_addresses(image: &Image, fd: i32) -> Vec<u64> {
    let ring = image
        .objects
        .iter()
        .find_map(|object| match &object.kind {
            ObjectKind::Ring(ring) if object.fds.iter().any(|entry| entry.fd == fd) => Some(ring),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no ring at fd {fd}"));
    let state = ring
        .state
        .as_deref()
        .expect("a frozen BPF dump has a state");
    if state.memory.no_mmap {
        [state.memory.rings, state.memory.sqes]
            .into_iter()
            .flatten()
            .map(|region| region.addr)
            .collect()
    } else {
        ring.mappings.iter().map(|mapping| mapping.addr).collect()
    }
}

#[test]
fn every_ring_state_comes_back_as_the_kernel_held_it() {
    let dir = scratch_dir("continuity-round-trip");
    let original = Running::start(&mut Command::new(program()), "ring_continuity");
    let image_path = dir.join("ring_continuity.img");
    let image_arg = image_path.to_str().expect("utf-8 path");
    let pid = original.pid().to_string();
    let dumped = plan(&["dump", "--pid", &pid, "--freeze", "-o", image_arg]);
    assert!(
        dumped.status.success(),
        "dump: {}",
        String::from_utf8_lossy(&dumped.stderr)
    );

    if !kernel_has_no_mmap() {
        let refused = plan(&["exec", image_arg, "--substitute-external"]);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("cannot place io_uring memory at the program's addresses: IORING_SETUP_NO_MMAP needs Linux 6.5"),
            "{stderr}"
        );
        return;
    }

    let image = ringplan_image::decode_slice(&std::fs::read(&image_path).expect("the image"))
        .expect("decoding the image");
    let holder = Running::start(
        Command::new(PLAN).args(["exec", image_arg, "--hold", "--substitute-external"]),
        "plan exec --hold",
    );
    let holder_maps =
        std::fs::read_to_string(format!("/proc/{}/maps", holder.pid())).expect("holder maps");
    let rings = original.line["rings"]
        .as_object()
        .expect("rings in the program's line");
    let mut compared = 0;
    for (name, ring) in rings {
        let Some(fd) = ring["fd"].as_i64() else {
            continue; // not set up on this kernel (null)
        };
        let fd = i32::try_from(fd).expect("an fd");
        let want = queues(original.pid(), fd);
        let got = queues(holder.pid(), fd);
        assert_eq!(got, want, "{name} (fd {fd}): the holder's fdinfo");
        for addr in seen_addresses(&image, fd) {
            let start = format!("{addr:x}-");
            assert!(
                holder_maps.lines().any(|line| line.starts_with(&start)),
                "{name}: nothing at {addr:#x} in the holder:\n{holder_maps}"
            );
        }
        compared += 1;
    }
    assert!(compared >= 9, "only {compared} rings compared");
    // The advanced ring really is past several wraps.
    let queued_fd = rings["queued"]["fd"].as_i64().expect("queued ring") as i32;
    let advanced = queues(holder.pid(), queued_fd);
    assert!(advanced.cached_sq_head >= 5000, "{advanced:?}");
    // Its SQE array, prepared-but-unpublished SQE included, is the
    // original's byte for byte, at the same address.
    let sqes_addr = image
        .objects
        .iter()
        .find_map(|object| match &object.kind {
            ObjectKind::Ring(ring) if object.fds.iter().any(|entry| entry.fd == queued_fd) => ring
                .mappings
                .iter()
                .find(|mapping| mapping.region == RingRegion::Sqes)
                .map(|mapping| mapping.addr),
            _ => None,
        })
        .expect("the queued ring's SQE mapping");
    let sqe_bytes = |pid: u32| {
        let mut bytes = vec![0u8; 8 * 64];
        let mem = std::fs::File::open(format!("/proc/{pid}/mem")).expect("mem");
        std::os::unix::fs::FileExt::read_exact_at(&mem, &mut bytes, sqes_addr).expect("SQEs");
        bytes
    };
    let original_sqes = sqe_bytes(original.pid());
    assert_eq!(sqe_bytes(holder.pid()), original_sqes);
    assert!(
        original_sqes
            .chunks_exact(64)
            .any(|sqe| sqe[32..40] == 0xa9u64.to_ne_bytes()),
        "the prepared SQE is in the original's array"
    );
    let continuous = holder.line["continuous_rings"]
        .as_array()
        .expect("continuous_rings");
    assert_eq!(continuous.len(), compared, "{}", holder.line);
    drop(holder);

    // The same image verifies in a fresh process: every ring's state.
    let verified = plan(&["exec", image_arg, "--substitute-external", "--verify"]);
    let stdout = String::from_utf8_lossy(&verified.stdout);
    assert!(
        verified.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    assert!(
        stdout.contains(&format!("{compared} ring states match")),
        "{stdout}"
    );
    // Two addresses of one ring show the same memory.
    let twice = rings["twice"]["fd"].as_i64().expect("twice ring") as i32;
    let twice_addresses = seen_addresses(&image, twice);
    let regions: Vec<RingRegion> = image
        .objects
        .iter()
        .filter_map(|object| match &object.kind {
            ObjectKind::Ring(ring) if object.fds.iter().any(|entry| entry.fd == twice) => {
                Some(ring.mappings.iter().map(|mapping| mapping.region))
            }
            _ => None,
        })
        .flatten()
        .collect();
    assert!(
        regions.contains(&RingRegion::CqRing) && twice_addresses.len() == 3,
        "{regions:?}"
    );
}
