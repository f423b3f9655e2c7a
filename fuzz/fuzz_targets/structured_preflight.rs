//! Structure-aware: the fuzzer's bytes are read (with `arbitrary`) as a
//! sketch of an image (rings with setup flags, sizes, SQ thread sharing,
//! eventfds, file and buffer tables; files; fds), which is built into an
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
    Backend, Buffer, Eventfd, FdEntry, File, FileType, Image, Object, ObjectId, ObjectKind, Ring,
    RingEventfd, RingField, RingMapping, RingRegion, RingSetup, Source,
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
