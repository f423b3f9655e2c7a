//! A ring's continuity state (image version 2) against the kernel's own
//! view: `tests/programs/ring_continuity.c` (built here with `cc -luring`)
//! brings rings into known states with real syscalls (positions past
//! several wraps, queued SQEs, unconsumed CQEs, an overflow list, SQE128 and
//! CQE32, NO_MMAP|NO_SQARRAY on its own memory (found again at its
//! addresses), a DEFER_TASKRUN ring owned
//! by a second thread, R_DISABLED rings, a CQ ring mapped twice, SQPOLL).
//! The BPF
//! dump of it (frozen, so nothing moves) is compared with what the program
//! printed and with `/proc/PID/fdinfo` of each ring (6.18's format: on a
//! kernel whose fdinfo lacks `CachedSqHead` the fdinfo comparison says so
//! and compares with the program only).
//!
//! Needs: root, a kernel with BTF and io_uring, cc and liburing-dev.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use ringplan_dump::{dump_with, BackendChoice, DumpOptions, FreezeMethod, Selection};
use ringplan_image::{Image, ObjectKind, Ring, RingRegion, RingState, SetupFlags, StateField};
use ringplan_kernel::procfs::fdinfo::queues::RingQueues;
use ringplan_kernel::procfs::{fdinfo, Process};
use ringplan_scenarios::c_programs;
use serde_json::Value;

fn program() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        c_programs::build("ring_continuity", Path::new(env!("CARGO_TARGET_TMPDIR")))
            .unwrap_or_else(|error| panic!("{error}"))
    })
}

/// The running program and its JSON line; killed on drop.
struct Program {
    child: Child,
    facts: Value,
}

impl Program {
    fn start() -> Program {
        let mut child = Command::new(program())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting ring_continuity");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line);
        let mut program = Program {
            child,
            facts: Value::Null,
        };
        assert!(
            read.is_ok_and(|n| n > 0),
            "ring_continuity printed nothing (see its stderr above)"
        );
        program.facts = serde_json::from_str(&line).expect("one JSON line");
        program
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn ring_fd(&self, name: &str) -> Option<i32> {
        self.facts["rings"][name]["fd"]
            .as_i64()
            .map(|fd| i32::try_from(fd).expect("fd"))
    }

    fn number(&self, path: &[&str]) -> u64 {
        let mut value = &self.facts;
        for key in path {
            value = &value[key];
        }
        value
            .as_u64()
            .unwrap_or_else(|| panic!("{path:?} is not a number in {}", self.facts))
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dump(program: &Program) -> (Image, Vec<String>) {
    let dump = dump_with(
        program.pid(),
        DumpOptions {
            selection: Selection::All,
            backend: BackendChoice::Bpf,
            freeze: Some(FreezeMethod::Auto),
        },
    )
    .expect("BPF dump (needs root and BTF)");
    (dump.image, dump.warnings)
}

fn ring_at(image: &Image, fd: i32) -> &Ring {
    image
        .objects
        .iter()
        .find_map(|object| match &object.kind {
            ObjectKind::Ring(ring) if object.fds.iter().any(|entry| entry.fd == fd) => Some(ring),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no ring at fd {fd}"))
}

fn state(ring: &Ring) -> &RingState {
    ring.state.as_deref().expect("a BPF dump has a state")
}

fn user_data(state: &RingState) -> (Vec<u64>, Vec<u64>, Vec<u64>) {
    let sqe_user_data = |bytes: &[u8]| u64::from_ne_bytes(bytes[32..40].try_into().expect("8"));
    (
        state
            .sqes
            .as_ref()
            .expect("SQEs known")
            .iter()
            .map(|sqe| sqe_user_data(&sqe.bytes.0))
            .collect(),
        state
            .cqes
            .as_ref()
            .expect("CQEs known")
            .iter()
            .map(|cqe| cqe.user_data)
            .collect(),
        state
            .overflow
            .as_ref()
            .expect("overflow known")
            .iter()
            .map(|cqe| cqe.user_data)
            .collect(),
    )
}

/// The ring's fdinfo, when the kernel prints 6.18's continuity fields.
fn kernel_view(pid: u32, fd: i32) -> Option<RingQueues> {
    let text = fdinfo::read(Process::Pid(pid), fd).expect("reading fdinfo");
    match RingQueues::parse(std::path::Path::new("fdinfo"), &text) {
        Ok(view) => Some(view),
        Err(why) => {
            eprintln!("fd {fd}: this kernel's fdinfo is not 6.18's ({why}): compared with the program only");
            None
        }
    }
}

/// Positions, SQEs (by index and user_data), CQEs and the overflow list as
/// the image holds them equal what the kernel's fdinfo lists.
fn assert_matches_fdinfo(pid: u32, fd: i32, ring: &Ring) {
    let Some(view) = kernel_view(pid, fd) else {
        return;
    };
    let state = state(ring);
    let p = &state.positions;
    assert_eq!(
        (
            p.sq_head,
            p.sq_tail,
            p.cached_sq_head,
            p.cq_head,
            p.cq_tail,
            p.cached_cq_tail
        ),
        (
            view.sq_head,
            view.sq_tail,
            view.cached_sq_head,
            view.cq_head,
            view.cq_tail,
            view.cached_cq_tail
        ),
        "fd {fd}: positions"
    );
    let (sqes, cqes, overflow) = user_data(state);
    // fdinfo lists SQEs from its SqHead, which equals CachedSqHead at rest.
    if !view.sqes.is_empty() || view.sqe_count == 0 {
        let mask = ring.setup.sq_entries - 1;
        let indices: Vec<(u32, u64)> = state
            .sqes
            .as_ref()
            .expect("SQEs")
            .iter()
            .zip(&sqes)
            .map(|(sqe, user_data)| (sqe.position & mask, *user_data))
            .collect();
        let listed: Vec<(u32, u64)> = view
            .sqes
            .iter()
            .map(|sqe| (sqe.index, sqe.user_data))
            .collect();
        assert_eq!(indices, listed, "fd {fd}: queued SQEs");
    }
    let cq_mask = ring.setup.cq_entries - 1;
    let listed: Vec<(Option<u32>, u64, i32, u32)> = view
        .cqes
        .iter()
        .map(|cqe| (cqe.slot, cqe.user_data, cqe.res, cqe.flags))
        .collect();
    let ours: Vec<(Option<u32>, u64, i32, u32)> = state
        .cqes
        .as_ref()
        .expect("CQEs")
        .iter()
        .enumerate()
        .map(|(offset, cqe)| {
            let index = p.cq_head.wrapping_add(offset as u32) & cq_mask;
            (Some(index), cqe.user_data, cqe.res, cqe.flags)
        })
        .collect();
    assert_eq!(ours, listed, "fd {fd}: unconsumed CQEs");
    assert_eq!(cqes.len(), view.cqes.len());
    let kernel_overflow: Vec<u64> = view.overflow.iter().map(|cqe| cqe.user_data).collect();
    assert_eq!(overflow, kernel_overflow, "fd {fd}: overflow list");
}

#[test]
fn every_state_the_program_made_is_in_the_image_as_the_kernel_shows_it() {
    let program = Program::start();
    let pid = program.pid();
    let (image, warnings) = dump(&program);
    let advance = u32::try_from(program.number(&["advance"])).expect("u32");

    // queued: past several wraps of an 8-entry ring, 2 unconsumed CQEs,
    // 3 SQEs queued without io_uring_enter.
    let fd = program.ring_fd("queued").expect("queued ring");
    let ring = ring_at(&image, fd);
    let positions = state(ring).positions;
    assert_eq!(positions.cached_sq_head, advance + 2);
    assert_eq!(positions.sq_tail, advance + 5);
    assert_eq!(
        (positions.cq_head, positions.cq_tail),
        (advance, advance + 2)
    );
    let (sqes, cqes, overflow) = user_data(state(ring));
    assert_eq!(sqes, [0xa1, 0xa2, 0xa3]);
    assert_eq!(cqes, [0xc1, 0xc2]);
    assert!(overflow.is_empty());
    assert_eq!(state(ring).sq_array.as_ref().map(Vec::len), Some(8));
    assert_matches_fdinfo(pid, fd, ring);

    // overflow: 8 CQEs in the ring, 4 on the overflow list, in order.
    let fd = program.ring_fd("overflow").expect("overflow ring");
    let ring = ring_at(&image, fd);
    let (_, cqes, overflow) = user_data(state(ring));
    assert_eq!(cqes, (0x100..0x108).collect::<Vec<u64>>());
    assert_eq!(overflow, (0x108..0x10c).collect::<Vec<u64>>());
    assert_matches_fdinfo(pid, fd, ring);

    // big: SQE128 and CQE32.
    let fd = program.ring_fd("big").expect("big ring");
    let ring = ring_at(&image, fd);
    let big = state(ring);
    let sqe = &big.sqes.as_ref().expect("SQEs")[0];
    assert_eq!(sqe.bytes.0.len(), 128);
    assert!(sqe.bytes.0[64..].iter().all(|byte| *byte == 0x5a));
    let cqe = big.cqes.as_ref().expect("CQEs")[0];
    assert_eq!((cqe.user_data, cqe.extra), (0xb0, Some([0, 0])));
    assert_matches_fdinfo(pid, fd, ring);

    // no_mmap: the program's own memory, found at the addresses it gave
    // (the kernel keeps the pinned pages; the dumper looks their frames
    // up in the program's pagemap), and the queued SQE read from it.
    if let Some(fd) = program.ring_fd("no_mmap") {
        let ring = ring_at(&image, fd);
        let no_mmap = state(ring);
        assert!(no_mmap.memory.no_mmap);
        assert!(no_mmap.unknown.is_empty(), "{no_mmap:?} {warnings:?}");
        let rings = no_mmap.memory.rings.expect("the rings' memory");
        let sqes = no_mmap.memory.sqes.expect("the SQEs' memory");
        assert_eq!(rings.addr, program.number(&["rings", "no_mmap", "rings"]));
        assert_eq!(sqes.addr, program.number(&["rings", "no_mmap", "sqes"]));
        assert_eq!(
            (rings.len, sqes.len),
            (4096, 4096),
            "4 entries fit a page each"
        );
        assert_eq!(no_mmap.sq_array, None, "NO_SQARRAY");
        let (sqe_user_data, cqes, _) = user_data(no_mmap);
        assert_eq!((sqe_user_data, cqes), (vec![0xd1], vec![]));
        assert_eq!(no_mmap.sqes.as_ref().expect("SQEs")[0].slot, 0);
        assert_matches_fdinfo(pid, fd, ring);
    } else {
        eprintln!("this kernel refuses IORING_SETUP_NO_MMAP: no_mmap ring not checked");
    }

    // owned: DEFER_TASKRUN created by the second thread: its tid.
    let fd = program.ring_fd("owned").expect("owned ring");
    let owner = u32::try_from(program.number(&["owner_tid"])).expect("tid");
    assert_ne!(owner, pid);
    assert_eq!(state(ring_at(&image, fd)).owner_tid, Some(owner));

    // disabled: no owner yet, still R_DISABLED; enabled: the main thread,
    // and the kernel cleared R_DISABLED.
    let disabled = ring_at(&image, program.ring_fd("disabled").expect("ring"));
    assert!(disabled.setup.has(SetupFlags::R_DISABLED));
    assert_eq!(state(disabled).owner_tid, None);
    assert!(!state(disabled).unknown.contains(&StateField::OwnerTid));
    let enabled = ring_at(&image, program.ring_fd("enabled").expect("ring"));
    assert!(!enabled.setup.has(SetupFlags::R_DISABLED));
    assert_eq!(state(enabled).owner_tid, Some(pid));

    // twice: both ring mappings recorded, the entries read.
    let fd = program.ring_fd("twice").expect("twice ring");
    let ring = ring_at(&image, fd);
    let cq_again = program.number(&["rings", "twice", "cq_again"]);
    assert!(ring
        .mappings
        .iter()
        .any(|mapping| mapping.region == RingRegion::CqRing && mapping.addr == cq_again));
    assert_eq!(user_data(state(ring)).1, [0xe1]);
    assert_matches_fdinfo(pid, fd, ring);

    // The image round-trips and its views carry the state.
    let bytes = ringplan_image::encode_to_vec(&image).expect("encodes");
    assert_eq!(
        ringplan_image::decode_slice(&bytes).expect("decodes"),
        image
    );
    let json = ringplan_image::view::to_json(&image);
    let queued_fd = program.ring_fd("queued").expect("fd");
    let queued = json["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .find(|object| object["fds"][0] == queued_fd)
        .expect("queued ring in JSON");
    assert_eq!(queued["state"]["positions"]["sq_tail"], advance + 5);
    assert_eq!(
        queued["state"]["sqes"][0]["bytes"].as_str().map(str::len),
        Some(128),
        "64 bytes as hex"
    );
}
