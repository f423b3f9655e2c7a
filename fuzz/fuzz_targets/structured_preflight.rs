//! Structure-aware: the fuzzer's bytes are read (with `arbitrary`) as a
//! sketch of an image (rings with setup flags, sizes, SQ thread sharing,
//! eventfds, file and buffer tables, continuity state; files; fds), which is built into an
//! `Image` mostly shaped like a dump and sent through what `plan exec
//! --dry-run` does: encode -> decode (framing, serde, full validation) ->
//! compile -> the executor's preflight, with its real syscalls (fd checks,
//! rlimits, CPU affinity, feature-probe rings, `MAP_FIXED_NOREPLACE`
//! probes of buffer ranges). Byte-level mutation (decode_compile) rarely
//! gets past validation; this target mostly does, and reaches the planner
//! and preflight with images no scenario builds.
//!
//! Checked beyond "no panic": every error is one line (the CLI prints it as
//! is), and preflight leaves this process's fd table as it found it.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ringplan_image::{
    Backend, Buffer, Cqe, Eventfd, FdEntry, File, FileType, Image, Object, ObjectId, ObjectKind,
    QueuedSqe, Ring, RingEventfd, RingField, RingMapping, RingMemory, RingPositions, RingRegion,
    RingSetup, RingState, Source, SqeBytes, StateField, UserRegion,
};

#[derive(Arbitrary, Debug)]
struct Sketch {
    rings: Vec<RingSketch>,
    eventfds: Vec<EventfdSketch>,
    files: Vec<FileSketch>,
}

#[derive(Arbitrary, Debug)]
struct RingSketch {
    /// Mostly the flags a dump sees; any bit now and then.
    flags: u16,
    any_flags: Option<u32>,
    /// log2 of sq_entries (0..=15 stays in range), and cq's on top.
    sq_log: u8,
    cq_extra_log: u8,
    cpu: Option<u8>,
    idle_ms: Option<u16>,
    /// Index into the rings, for ATTACH_WQ.
    wq_parent: Option<u8>,
    sq_group: Option<u8>,
    eventfd: Option<(u8, bool)>,
    files: Vec<Option<u8>>,
    buffers: Vec<Option<(u16, u16, u16)>>,
    mappings: Vec<(u8, u16, u8)>,
    unknown: Vec<u8>,
    fds: Vec<(u8, bool)>,
    /// The continuity state (image version 2).
    state: Option<StateSketch>,
}

/// A ring state, built mostly consistent with its ring (positions from one
/// head, entries counted from them, slots through the SQ array) and
/// sometimes not (the raw fields override), so that validation is both
/// passed and exercised.
/// user_data, res, flags, the CQE32 words.
type CqeSketch = (u64, i32, u32, Option<(u64, u64)>);

#[derive(Arbitrary, Debug)]
struct StateSketch {
    sq_head: u32,
    queued: u8,
    cq_head: u32,
    unconsumed: u8,
    /// cached_sq_head - sq_head and cached_cq_tail - cq_tail.
    lags: (u8, u8),
    counters: (u32, u32, u32, u32),
    identity_array: bool,
    array: Vec<u16>,
    slots: Vec<Option<u16>>,
    sqe_fill: u8,
    cqes: Vec<CqeSketch>,
    overflow: Option<Vec<(u64, i32, u32)>>,
    owner_tid: Option<u32>,
    regions: Option<((u16, u8), (u16, u8))>,
    unknown: Vec<u8>,
    /// Raw positions instead of the derived ones, now and then.
    raw_tails: Option<(u32, u32)>,
}

fn build_state(sketch: &StateSketch, flags: u32, sq_entries: u32, cq_entries: u32) -> RingState {
    let mask = sq_entries.max(1) - 1;
    let queued = u32::from(sketch.queued) % (sq_entries + 1);
    let unconsumed = u32::from(sketch.unconsumed) % (cq_entries + 1);
    let cached_sq_head = sketch.sq_head.wrapping_add(u32::from(sketch.lags.0 % 2));
    let (sq_tail, cq_tail) = sketch.raw_tails.unwrap_or((
        cached_sq_head.wrapping_add(queued),
        sketch.cq_head.wrapping_add(unconsumed),
    ));
    let sq_array: Option<Vec<u32>> = (flags & (1 << 16) == 0).then(|| {
        (0..sq_entries.min(4096))
            .map(|index| {
                if sketch.identity_array {
                    index
                } else {
                    sketch
                        .array
                        .get(index as usize)
                        .map_or(index, |slot| u32::from(*slot) % sq_entries.max(1))
                }
            })
            .collect()
    });
    let sqe_size = if flags & (1 << 10) != 0 { 128 } else { 64 };
    let sqes = (0..queued.min(64))
        .map(|offset| {
            let position = cached_sq_head.wrapping_add(offset);
            let derived = match &sq_array {
                Some(array) => array.get((position & mask) as usize).copied().unwrap_or(0),
                None => position & mask,
            };
            let slot = sketch
                .slots
                .get(offset as usize)
                .copied()
                .flatten()
                .map_or(derived, u32::from);
            QueuedSqe {
                position,
                slot,
                bytes: SqeBytes(vec![sketch.sqe_fill; sqe_size]),
            }
        })
        .collect();
    let cqe32 = flags & (1 << 11) != 0;
    let cqe = |&(user_data, res, flags, extra): &CqeSketch| Cqe {
        user_data,
        res,
        flags,
        extra: extra.filter(|_| cqe32).map(|(a, b)| [a, b]),
    };
    let cqes = (0..unconsumed.min(64) as usize)
        .map(|index| {
            sketch.cqes.get(index).map_or(
                Cqe {
                    user_data: 0,
                    res: 0,
                    flags: 0,
                    extra: cqe32.then_some([0, 0]),
                },
                cqe,
            )
        })
        .collect();
    let no_mmap = flags & (1 << 14) != 0;
    let region = |(page, pages): (u16, u8)| UserRegion {
        addr: 0x4000_0000_0000 + u64::from(page) * 4096,
        len: u64::from(pages) * 4096,
    };
    let mut unknown: Vec<StateField> = sketch
        .unknown
        .iter()
        .take(4)
        .map(|field| {
            [
                StateField::Entries,
                StateField::Overflow,
                StateField::Memory,
                StateField::OwnerTid,
            ][usize::from(field % 4)]
        })
        .collect();
    unknown.sort();
    unknown.dedup();
    let has = |field| unknown.contains(&field);
    RingState {
        positions: RingPositions {
            sq_head: sketch.sq_head,
            sq_tail,
            cached_sq_head,
            cq_head: sketch.cq_head,
            cq_tail,
            cached_cq_tail: cq_tail.wrapping_add(u32::from(sketch.lags.1 % 2)),
            sq_dropped: sketch.counters.0,
            cq_overflow: sketch.counters.1,
            sq_flags: sketch.counters.2,
            cq_flags: sketch.counters.3,
        },
        sq_array: sq_array.filter(|_| !has(StateField::Entries)),
        sqes: (!has(StateField::Entries)).then_some(sqes),
        unqueued_sqes: Vec::new(),
        cqes: (!has(StateField::Entries)).then_some(cqes),
        overflow: sketch
            .overflow
            .as_ref()
            .filter(|_| !has(StateField::Overflow))
            .map(|list| {
                list.iter()
                    .take(64)
                    .map(|&(user_data, res, flags)| Cqe {
                        user_data,
                        res,
                        flags,
                        extra: cqe32.then_some([0, 0]),
                    })
                    .collect()
            }),
        memory: RingMemory {
            no_mmap,
            rings: sketch
                .regions
                .filter(|_| !has(StateField::Memory))
                .map(|r| region(r.0)),
            sqes: sketch
                .regions
                .filter(|_| !has(StateField::Memory))
                .map(|r| region(r.1)),
        },
        owner_tid: sketch.owner_tid.filter(|_| !has(StateField::OwnerTid)),
        unknown,
    }
}

#[derive(Arbitrary, Debug)]
struct EventfdSketch {
    count: u64,
    semaphore: bool,
    nonblock: bool,
    fds: Vec<(u8, bool)>,
}

#[derive(Arbitrary, Debug)]
struct FileSketch {
    path: Option<String>,
    flags: Option<u32>,
    pos: Option<i64>,
    file_type: u8,
    fds: Vec<(u8, bool)>,
}

const FILE_TYPES: [FileType; 9] = [
    FileType::Regular,
    FileType::Directory,
    FileType::CharDevice,
    FileType::BlockDevice,
    FileType::Pipe,
    FileType::Socket,
    FileType::Symlink,
    FileType::Other,
    FileType::Unknown,
];

/// Fds well above what a fuzzing process holds, so that preflight's
/// "already open" check is reached only by collisions the sketch makes.
fn fds(sketch: &[(u8, bool)]) -> Vec<FdEntry> {
    sketch
        .iter()
        .map(|&(fd, cloexec)| FdEntry {
            fd: 200 + i32::from(fd),
            cloexec,
        })
        .collect()
}

fn build(sketch: &Sketch) -> Image {
    let rings = sketch.rings.len().min(16);
    let eventfds = sketch.eventfds.len().min(8);
    let files = sketch.files.len().min(32);
    let ring_id = |index: u8| ObjectId(1 + u32::from(index) % rings.max(1) as u32);
    let eventfd_id =
        |index: u8| ObjectId(1 + rings as u32 + u32::from(index) % eventfds.max(1) as u32);
    let file_id = |index: u8| {
        ObjectId(1 + (rings + eventfds) as u32 + u32::from(index) % files.max(1) as u32)
    };
    let mut objects = Vec::new();
    for (index, ring) in sketch.rings.iter().take(rings).enumerate() {
        let sq_entries = 1u32.checked_shl(u32::from(ring.sq_log % 17)).unwrap_or(1);
        let cq_entries = sq_entries.saturating_mul(1 << (ring.cq_extra_log % 4));
        let flags = ring.any_flags.unwrap_or(u32::from(ring.flags) & 0x3fff);
        objects.push(Object {
            id: ObjectId(1 + index as u32),
            fds: fds(&ring.fds),
            kind: ObjectKind::Ring(Ring {
                setup: RingSetup {
                    flags: Some(flags),
                    sq_entries,
                    cq_entries,
                    sq_thread_cpu: ring.cpu.map(u32::from),
                    sq_thread_idle_ms: ring.idle_ms.map(u32::from),
                },
                wq_parent: ring.wq_parent.map(ring_id),
                sq_group: ring.sq_group.map(u32::from),
                eventfd: if eventfds > 0 {
                    ring.eventfd.map(|(index, is_async)| RingEventfd {
                        object: eventfd_id(index),
                        is_async,
                    })
                } else {
                    None
                },
                files: ring
                    .files
                    .iter()
                    .take(64)
                    .map(|slot| slot.filter(|_| files > 0).map(file_id))
                    .collect(),
                buffers: ring
                    .buffers
                    .iter()
                    .take(32)
                    .map(|slot| {
                        slot.map(|(page, offset, len)| Buffer {
                            addr: 0x2000_0000_0000
                                + u64::from(page) * 4096
                                + u64::from(offset % 4096),
                            len: u64::from(len),
                        })
                    })
                    .collect(),
                mappings: ring
                    .mappings
                    .iter()
                    .take(3)
                    .map(|&(region, page, pages)| RingMapping {
                        region: [RingRegion::SqRing, RingRegion::CqRing, RingRegion::Sqes]
                            [usize::from(region % 3)],
                        addr: 0x3000_0000_0000 + u64::from(page) * 4096,
                        len: u64::from(pages) * 4096,
                    })
                    .collect(),
                unknown: ring
                    .unknown
                    .iter()
                    .take(4)
                    .map(|field| {
                        [
                            RingField::Flags,
                            RingField::SqThreadCpu,
                            RingField::SqThreadIdle,
                            RingField::Eventfd,
                        ][usize::from(field % 4)]
                    })
                    .collect(),
                state: ring
                    .state
                    .as_ref()
                    .map(|state| Box::new(build_state(state, flags, sq_entries, cq_entries))),
                personalities: Vec::new(),
                personality_next: 0,
                pbuf_rings: Vec::new(),
                legacy_buffer_groups: Vec::new(),
                settings: Default::default(),
                registered_ring_fds: Vec::new(),
                restrictions: None,
            }),
        });
    }
    for (index, eventfd) in sketch.eventfds.iter().take(eventfds).enumerate() {
        objects.push(Object {
            id: ObjectId(1 + (rings + index) as u32),
            fds: fds(&eventfd.fds),
            kind: ObjectKind::Eventfd(Eventfd {
                count: eventfd.count,
                semaphore: eventfd.semaphore,
                nonblock: eventfd.nonblock,
            }),
        });
    }
    for (index, file) in sketch.files.iter().take(files).enumerate() {
        objects.push(Object {
            id: ObjectId(1 + (rings + eventfds + index) as u32),
            fds: fds(&file.fds),
            kind: ObjectKind::File(File {
                path: file.path.clone(),
                flags: file.flags,
                pos: file.pos,
                file_type: FILE_TYPES[usize::from(file.file_type) % FILE_TYPES.len()],
                identity: None,
            }),
        });
    }
    let source = Source {
        pid: 1,
        backend: Backend::Bpf,
        kernel_release: "fuzz".into(),
    };
    Image::new(source, objects)
}

fn one_line(what: &str, error: &dyn std::fmt::Display) {
    let text = error.to_string();
    assert!(
        !text.contains('\n'),
        "{what} error is not one line: {text:?}"
    );
}

fn open_fds() -> Vec<std::ffi::OsString> {
    let mut fds: Vec<_> = std::fs::read_dir("/proc/self/fd")
        .map(|dir| {
            dir.filter_map(Result::ok)
                .map(|entry| entry.file_name())
                .collect()
        })
        .unwrap_or_default();
    fds.sort();
    fds
}

fuzz_target!(|sketch: Sketch| {
    let image = build(&sketch);
    let bytes = match ringplan_image::encode_to_vec(&image) {
        Ok(bytes) => bytes,
        Err(error) => return one_line("encode", &error),
    };
    let image = match ringplan_image::decode_slice(&bytes) {
        Ok(image) => image,
        Err(error) => return one_line("decode", &error),
    };
    let plan = match ringplan_plan::compile(&image) {
        Ok(plan) => plan,
        Err(error) => return one_line("compile", &error),
    };
    let options = ringplan_exec::ExecOptions {
        substitute_external: true,
        ..Default::default()
    };
    let before = open_fds();
    let result = ringplan_exec::preflight(
        &plan,
        &ringplan_exec::Inputs::new(),
        &mut ringplan_exec::AnonymousBuffers::new(),
        &options,
    );
    // The read_dir of /proc/self/fd is itself an fd while it runs, so both
    // listings include one; anything else left open is a leak.
    assert_eq!(open_fds(), before, "preflight left fds behind");
    if let Err(error) = result {
        one_line("preflight", &error);
    }
});
