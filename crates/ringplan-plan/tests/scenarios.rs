//! Synthetic images for the planner's tests and bench, built in Rust so each
//! one says exactly what it holds. Shared with `benches/compile.rs`.

#![allow(dead_code)]

use ringplan_image::*;

pub const SQPOLL: u32 = SetupFlags::SQPOLL.bits();
pub const SQ_AFF: u32 = SetupFlags::SQ_AFF.bits();
pub const CQSIZE: u32 = SetupFlags::CQSIZE.bits();
pub const ATTACH_WQ: u32 = SetupFlags::ATTACH_WQ.bits();

pub fn source() -> Source {
    Source {
        pid: 318,
        backend: Backend::Bpf,
        kernel_release: "6.18.0".to_owned(),
    }
}

/// An image of `objects`, sorted by id as the format requires.
pub fn image(mut objects: Vec<Object>) -> Image {
    objects.sort_by_key(|object| object.id);
    Image::new(source(), objects)
}

/// fds without close-on-exec.
pub fn fds(numbers: &[i32]) -> Vec<FdEntry> {
    numbers
        .iter()
        .map(|&fd| FdEntry { fd, cloexec: false })
        .collect()
}

/// fds with close-on-exec (how io_uring_setup creates ring fds).
pub fn cloexec_fds(numbers: &[i32]) -> Vec<FdEntry> {
    numbers
        .iter()
        .map(|&fd| FdEntry { fd, cloexec: true })
        .collect()
}

/// A ring with no SQ thread, no eventfd and empty tables.
pub fn plain_ring(sq_entries: u32) -> Ring {
    Ring {
        setup: RingSetup {
            flags: Some(0),
            sq_entries,
            cq_entries: 2 * sq_entries,
            sq_thread_cpu: None,
            sq_thread_idle_ms: None,
        },
        wq_parent: None,
        sq_group: None,
        eventfd: None,
        files: Vec::new(),
        buffers: Vec::new(),
        mappings: Vec::new(),
        unknown: Vec::new(),
        state: None,
        personalities: Vec::new(),
        personality_next: 0,
        pbuf_rings: Vec::new(),
        legacy_buffer_groups: Vec::new(),
        settings: Default::default(),
        registered_ring_fds: Vec::new(),
        restrictions: None,
    }
}

/// A SQPOLL ring of `sq_group`; `cpu` pins the thread (SQ_AFF).
pub fn sqpoll_ring(sq_group: u32, cpu: Option<u32>, idle_ms: u32) -> Ring {
    let mut ring = plain_ring(8);
    ring.setup.flags = Some(SQPOLL | if cpu.is_some() { SQ_AFF } else { 0 });
    ring.setup.sq_thread_cpu = cpu;
    ring.setup.sq_thread_idle_ms = Some(idle_ms);
    ring.sq_group = Some(sq_group);
    ring
}

/// `ring` set up with ATTACH_WQ to `parent` (or to nothing the image has).
pub fn attached(mut ring: Ring, parent: Option<u32>) -> Ring {
    ring.setup.flags = Some(ring.setup.flags.unwrap_or(0) | ATTACH_WQ);
    ring.wq_parent = parent.map(ObjectId);
    ring
}

pub fn ring_object(id: u32, fds: Vec<FdEntry>, ring: Ring) -> Object {
    Object {
        id: ObjectId(id),
        fds,
        kind: ObjectKind::Ring(ring),
    }
}

pub fn eventfd_object(
    id: u32,
    fds: Vec<FdEntry>,
    count: u64,
    semaphore: bool,
    nonblock: bool,
) -> Object {
    Object {
        id: ObjectId(id),
        fds,
        kind: ObjectKind::Eventfd(Eventfd {
            count,
            semaphore,
            nonblock,
        }),
    }
}

pub fn file_object(id: u32, fds: Vec<FdEntry>, file: File) -> Object {
    Object {
        id: ObjectId(id),
        fds,
        kind: ObjectKind::File(file),
    }
}

pub fn path_file(path: &str, file_type: FileType, flags: u32, pos: i64) -> File {
    File {
        path: Some(path.to_owned()),
        flags: Some(flags),
        pos: Some(pos),
        file_type,
        identity: None,
    }
}

pub fn pathless_file(file_type: FileType) -> File {
    File {
        path: None,
        flags: Some(0o2),
        pos: Some(0),
        identity: None,
        file_type,
    }
}

pub fn slots(entries: &[Option<u32>]) -> Vec<Option<ObjectId>> {
    entries.iter().map(|entry| entry.map(ObjectId)).collect()
}

/// The seed's scenario (bpf_cr RFC v2): a SQPOLL|SQ_AFF|CQSIZE parent with
/// sq 2, cq 4, cpu 0, idle 1500 ms; an ATTACH_WQ child with an async eventfd
/// of count 42, files at slots 0, 2, 4 of 5 that are all the terminal held
/// at fds 0, 1 and 2, and buffers [empty, 120 bytes at 0x7ffd0000].
pub fn seed() -> Image {
    let mut parent = sqpoll_ring(1, Some(0), 1500);
    parent.setup.flags = Some(SQPOLL | SQ_AFF | CQSIZE);
    parent.setup.sq_entries = 2;
    parent.setup.cq_entries = 4;
    let mut child = attached(parent.clone(), Some(1));
    child.eventfd = Some(RingEventfd {
        object: ObjectId(3),
        is_async: true,
    });
    child.files = slots(&[Some(4), None, Some(4), None, Some(4)]);
    child.buffers = vec![
        None,
        Some(Buffer {
            addr: 0x7ffd_0000,
            len: 120,
        }),
    ];
    image(vec![
        ring_object(1, cloexec_fds(&[3]), parent),
        ring_object(2, cloexec_fds(&[4]), child),
        eventfd_object(3, fds(&[5]), 42, false, false),
        file_object(
            4,
            fds(&[0, 1, 2]),
            path_file("/dev/pts/0", FileType::CharDevice, 0o2, 0),
        ),
    ])
}

/// A root SQPOLL ring and `depth` rings each attached to the one before:
/// a wq_parent chain `depth` links long, all on one SQ thread.
pub fn chain(depth: u32) -> Image {
    let mut objects = vec![ring_object(
        1,
        cloexec_fds(&[3]),
        sqpoll_ring(1, Some(2), 1000),
    )];
    for link in 1..=depth {
        let id = link + 1;
        objects.push(ring_object(
            id,
            cloexec_fds(&[id as i32 + 2]),
            attached(sqpoll_ring(1, Some(2), 1000), Some(id - 1)),
        ));
    }
    image(objects)
}

/// Like [`chain`], but ids run against the chain: the deepest ring has the
/// lowest id, so the planner cannot follow id order.
pub fn reversed_chain(depth: u32) -> Image {
    let root = depth + 1;
    let mut objects = vec![ring_object(
        root,
        cloexec_fds(&[3]),
        sqpoll_ring(1, None, 1000),
    )];
    for id in 1..=depth {
        objects.push(ring_object(
            id,
            cloexec_fds(&[id as i32 + 3]),
            attached(sqpoll_ring(1, None, 1000), Some(id + 1)),
        ));
    }
    image(objects)
}

/// A root SQPOLL ring and `width` rings attached to it: `width + 1` rings
/// on one SQ thread.
pub fn fanout(width: u32) -> Image {
    let mut objects = vec![ring_object(
        1,
        cloexec_fds(&[3]),
        sqpoll_ring(1, None, 1000),
    )];
    for id in 2..=width + 1 {
        objects.push(ring_object(
            id,
            cloexec_fds(&[id as i32 + 2]),
            attached(sqpoll_ring(1, None, 1000), Some(1)),
        ));
    }
    image(objects)
}

/// Three rings on SQ thread group 7 whose creator is gone: all ATTACH_WQ,
/// none names a parent, idle times 1000, 2000 and 500 ms, pinned to CPU 1.
pub fn creator_closed() -> Image {
    image(vec![
        ring_object(
            1,
            cloexec_fds(&[3]),
            attached(sqpoll_ring(7, Some(1), 1000), None),
        ),
        ring_object(
            2,
            cloexec_fds(&[4]),
            attached(sqpoll_ring(7, Some(1), 2000), None),
        ),
        ring_object(
            3,
            cloexec_fds(&[5]),
            attached(sqpoll_ring(7, Some(1), 500), None),
        ),
    ])
}

/// One ring with a sparse table of 8 slots: a regular file the task closed
/// (twice in the table), a pipe and a socket without paths (the socket
/// still held at fd 7), a directory held at fd 9, a file whose flags the
/// dump could not read.
pub fn sparse_and_closed_files() -> Image {
    let mut ring = plain_ring(16);
    ring.files = slots(&[
        None,
        Some(2),
        None,
        Some(3),
        Some(4),
        None,
        Some(5),
        Some(2),
        Some(6),
    ]);
    let unknown_flags = File {
        path: Some("/var/log/app.log".to_owned()),
        flags: None,
        identity: None,
        pos: Some(10),
        file_type: FileType::Regular,
    };
    image(vec![
        ring_object(1, cloexec_fds(&[5]), ring),
        file_object(
            2,
            Vec::new(),
            path_file("/data/a", FileType::Regular, 0o100002, 4096),
        ),
        file_object(3, Vec::new(), pathless_file(FileType::Pipe)),
        file_object(4, cloexec_fds(&[7]), pathless_file(FileType::Socket)),
        file_object(
            5,
            fds(&[9]),
            path_file("/data", FileType::Directory, 0o200000, 0),
        ),
        file_object(6, Vec::new(), unknown_flags),
    ])
}

/// Two rings whose eventfds the task closed: one plain (async), one
/// semaphore and non-blocking.
pub fn closed_eventfds() -> Image {
    let mut first = plain_ring(4);
    first.eventfd = Some(RingEventfd {
        object: ObjectId(3),
        is_async: true,
    });
    let mut second = plain_ring(4);
    second.eventfd = Some(RingEventfd {
        object: ObjectId(4),
        is_async: false,
    });
    image(vec![
        ring_object(1, cloexec_fds(&[3]), first),
        ring_object(2, cloexec_fds(&[4]), second),
        eventfd_object(3, Vec::new(), 0, false, false),
        eventfd_object(4, Vec::new(), 7, true, true),
    ])
}

/// Everything at once: a SQ thread group with its creator and an orphan
/// that names no parent, a group whose creator is gone, rings attached
/// without SQPOLL and without a parent, a ring the task holds at no fd, an
/// eventfd two rings register (also in a file table), files shared between
/// tables, closed and held, pathless and not, and buffers on two rings.
pub fn mix() -> Image {
    // Group 1: creator #1 (eventfd #20, buffers), child #2 (files), orphan #3.
    let mut creator = sqpoll_ring(1, Some(0), 1000);
    creator.eventfd = Some(RingEventfd {
        object: ObjectId(20),
        is_async: false,
    });
    creator.buffers = vec![
        Some(Buffer {
            addr: 0x10_0000,
            len: 4096,
        }),
        None,
        Some(Buffer {
            addr: 0x20_0000,
            len: 8192,
        }),
    ];
    let mut child = attached(sqpoll_ring(1, Some(0), 1500), Some(1));
    child.files = slots(&[Some(30), Some(31), None, Some(20)]);
    let orphan = attached(sqpoll_ring(1, Some(0), 500), None);
    // Group 2: creator gone; #4 held at no fd, #5 with the same eventfd.
    let mut held_nowhere = attached(sqpoll_ring(2, None, 2000), None);
    held_nowhere.files = slots(&[Some(31), Some(32)]);
    let mut second_orphan = attached(sqpoll_ring(2, None, 1000), None);
    second_orphan.eventfd = Some(RingEventfd {
        object: ObjectId(20),
        is_async: true,
    });
    second_orphan.buffers = vec![Some(Buffer {
        addr: 0x30_0000,
        len: 64,
    })];
    // #6: attached without SQPOLL and without a parent; #7 the same, plus files.
    let loose = attached(plain_ring(4), None);
    let mut loose_with_files = attached(plain_ring(4), None);
    loose_with_files.files = slots(&[None, None, Some(33)]);
    image(vec![
        ring_object(1, cloexec_fds(&[10]), creator),
        ring_object(2, cloexec_fds(&[11]), child),
        ring_object(3, cloexec_fds(&[12]), orphan),
        ring_object(4, Vec::new(), held_nowhere),
        ring_object(5, cloexec_fds(&[13]), second_orphan),
        ring_object(6, cloexec_fds(&[14]), loose),
        ring_object(7, cloexec_fds(&[15, 16]), loose_with_files),
        eventfd_object(20, fds(&[4]), 3, false, true),
        file_object(
            30,
            fds(&[0, 1, 2]),
            path_file("/dev/pts/3", FileType::CharDevice, 0o2, 0),
        ),
        file_object(
            31,
            Vec::new(),
            path_file("/srv/data.bin", FileType::Regular, 0o40000, 1 << 20),
        ),
        file_object(32, fds(&[3]), pathless_file(FileType::Pipe)),
        file_object(
            33,
            Vec::new(),
            path_file("/dev/sdb", FileType::BlockDevice, 0o40002, 512),
        ),
    ])
}

/// Rings attached without SQPOLL and without a parent, and no ring without
/// ATTACH_WQ to lend its fd: the plan needs a temporary plain ring.
pub fn attach_without_donor() -> Image {
    image(vec![
        ring_object(1, cloexec_fds(&[3]), attached(plain_ring(4), None)),
        ring_object(2, cloexec_fds(&[4]), attached(plain_ring(4), None)),
    ])
}

/// `rings` rings, each with its own table of `files_per_ring` distinct
/// regular files (one in 16 still held at an fd), an eventfd and 4
/// buffers; the rings share one SQ thread (a root and the rest attached to
/// it). About `rings * files_per_ring` objects.
pub fn wide(rings: u32, files_per_ring: u32) -> Image {
    let mut objects = Vec::with_capacity((rings * (files_per_ring + 2)) as usize);
    let mut next_fd: i32 = 3;
    let mut take_fd = |cloexec: bool| {
        let entry = FdEntry {
            fd: next_fd,
            cloexec,
        };
        next_fd += 1;
        vec![entry]
    };
    let mut next_id: u32 = 1;
    let root_id = 1;
    for ring_number in 0..rings {
        let ring_id = next_id;
        let eventfd_id = ring_id + 1;
        let first_file = ring_id + 2;
        next_id = first_file + files_per_ring;
        let mut ring = sqpoll_ring(1, Some(0), 1000);
        if ring_number > 0 {
            ring = attached(ring, Some(root_id));
        }
        ring.eventfd = Some(RingEventfd {
            object: ObjectId(eventfd_id),
            is_async: false,
        });
        ring.files = (first_file..first_file + files_per_ring)
            .map(|id| Some(ObjectId(id)))
            .collect();
        ring.buffers = (0..4u64)
            .map(|slot| {
                Some(Buffer {
                    addr: 0x1000_0000 + slot * 0x1_0000,
                    len: 4096,
                })
            })
            .collect();
        objects.push(ring_object(ring_id, take_fd(true), ring));
        objects.push(eventfd_object(eventfd_id, take_fd(false), 0, false, false));
        for id in first_file..first_file + files_per_ring {
            let held = if id % 16 == 0 {
                take_fd(false)
            } else {
                Vec::new()
            };
            objects.push(file_object(
                id,
                held,
                path_file(
                    &format!("/data/ring{ring_number}/file{id}"),
                    FileType::Regular,
                    0o2,
                    0,
                ),
            ));
        }
    }
    image(objects)
}

/// One page mapped per region, at the given addresses.
pub fn page_mappings(regions: &[(RingRegion, u64)]) -> Vec<RingMapping> {
    regions
        .iter()
        .map(|&(region, addr)| RingMapping {
            region,
            addr,
            len: 0x1000,
        })
        .collect()
}

/// A ring state at `sq_head`/`cq_tail` with nothing pending, for a ring of
/// `flags`; its memory is the kernel's unless `flags` has NO_MMAP.
pub fn ring_state(flags: u32, sq_entries: u32, position: u32) -> RingState {
    let has_array = flags & SetupFlags::NO_SQARRAY.bits() == 0;
    RingState {
        positions: RingPositions {
            sq_head: position,
            sq_tail: position,
            cached_sq_head: position,
            cq_head: position,
            cq_tail: position,
            cached_cq_tail: position,
            ..RingPositions::default()
        },
        sq_array: has_array.then(|| (0..sq_entries).collect()),
        sqes: Some(Vec::new()),
        unqueued_sqes: Vec::new(),
        cqes: Some(Vec::new()),
        overflow: Some(Vec::new()),
        memory: RingMemory {
            no_mmap: flags & SetupFlags::NO_MMAP.bits() != 0,
            rings: None,
            sqes: None,
        },
        owner_tid: None,
        unknown: Vec::new(),
    }
}

fn nop_sqe(position: u32, slot: u32, user_data: u64) -> QueuedSqe {
    let mut bytes = vec![0u8; 64];
    bytes[32..40].copy_from_slice(&user_data.to_ne_bytes());
    QueuedSqe {
        position,
        slot,
        bytes: SqeBytes(bytes),
    }
}

fn cqe(user_data: u64) -> Cqe {
    Cqe {
        user_data,
        res: 0,
        flags: 0,
        extra: None,
    }
}

/// Rings restored where the program left them (image version 2 state):
/// ring 1 mapped once, past position 5000 with 2 queued SQEs, 2 unconsumed
/// CQEs and 1 overflowed, an eventfd, a file and a buffer; ring 2 on the
/// program's own memory (NO_MMAP|NO_SQARRAY, SINGLE_ISSUER|DEFER_TASKRUN,
/// owned by thread 1234) with 1 queued SQE; ring 5 with its SQ and CQ rings
/// mapped at two addresses, at position 300 with nothing pending; ring 6
/// with a state but no mapping (restored without continuity).
pub fn continuity() -> Image {
    let mut queued = plain_ring(8);
    queued.mappings = vec![
        RingMapping {
            region: RingRegion::SqRing,
            addr: 0x7f00_0000_0000,
            len: 0x1000,
        },
        RingMapping {
            region: RingRegion::Sqes,
            addr: 0x7f00_0001_0000,
            len: 0x1000,
        },
    ];
    let mut state = ring_state(0, 8, 5000);
    state.positions.sq_tail = 5002;
    state.positions.cq_head = 4998;
    state.sqes = Some(vec![nop_sqe(5000, 0, 0xa1), nop_sqe(5001, 1, 0xa2)]);
    state.cqes = Some(vec![cqe(0xc1), cqe(0xc2)]);
    state.overflow = Some(vec![cqe(0xf1)]);
    queued.state = Some(Box::new(state));
    queued.eventfd = Some(RingEventfd {
        object: ObjectId(3),
        is_async: false,
    });
    queued.files = slots(&[Some(4)]);
    queued.buffers = vec![Some(Buffer {
        addr: 0x7ffd_0000,
        len: 4096,
    })];

    let own_flags = SetupFlags::NO_MMAP.bits()
        | SetupFlags::NO_SQARRAY.bits()
        | SetupFlags::SINGLE_ISSUER.bits()
        | SetupFlags::DEFER_TASKRUN.bits();
    let mut own = plain_ring(4);
    own.setup.flags = Some(own_flags);
    let mut state = ring_state(own_flags, 4, 0);
    state.positions.sq_tail = 1;
    state.sqes = Some(vec![nop_sqe(0, 0, 0xd1)]);
    state.memory.rings = Some(UserRegion {
        addr: 0x7f00_0010_0000,
        len: 0x1000,
    });
    state.memory.sqes = Some(UserRegion {
        addr: 0x7f00_0010_1000,
        len: 0x1000,
    });
    state.owner_tid = Some(1234);
    own.state = Some(Box::new(state));

    let mut twice = plain_ring(4);
    twice.mappings = page_mappings(&[
        (RingRegion::SqRing, 0x7f00_0020_0000),
        (RingRegion::CqRing, 0x7f00_0030_0000),
        (RingRegion::Sqes, 0x7f00_0040_0000),
    ]);
    twice.state = Some(Box::new(ring_state(0, 4, 300)));

    let mut unmapped = plain_ring(4);
    unmapped.state = Some(Box::new(ring_state(0, 4, 7)));

    image(vec![
        ring_object(1, cloexec_fds(&[5]), queued),
        ring_object(2, cloexec_fds(&[6]), own),
        eventfd_object(3, Vec::new(), 0, false, false),
        file_object(
            4,
            fds(&[0]),
            path_file("/tmp/data", FileType::Regular, 0o2, 0),
        ),
        ring_object(5, cloexec_fds(&[7]), twice),
        ring_object(6, cloexec_fds(&[8]), unmapped),
    ])
}

/// A personality of root's credentials with `id`.
pub fn root_personality(id: u32) -> Personality {
    Personality {
        id,
        uid: 0,
        euid: 0,
        suid: 0,
        fsuid: 0,
        gid: 0,
        egid: 0,
        sgid: 0,
        fsgid: 0,
        groups: Some(vec![]),
        cap_inheritable: 0,
        cap_permitted: 0x1ff_ffff_ffff,
        cap_effective: 0x1ff_ffff_ffff,
        cap_bounding: 0x1ff_ffff_ffff,
        cap_ambient: 0,
    }
}

/// The continuity scenario with personalities on its first ring (which
/// queues SQEs: they may name them): ids 1 and 3, next id 5.
pub fn personalities() -> Image {
    let mut image = continuity();
    if let ObjectKind::Ring(ring) = &mut image.objects[0].kind {
        ring.personalities = vec![root_personality(1), root_personality(3)];
        ring.personality_next = 5;
    }
    image
}

/// The continuity scenario with two buffer rings on its first ring
/// (which queues SQEs: they may select buffers from them), both at head 0.
pub fn pbuf() -> Image {
    let mut image = continuity();
    if let ObjectKind::Ring(ring) = &mut image.objects[0].kind {
        ring.pbuf_rings = [(0, 0x7f10_0000_0000), (65, 0x7f10_0000_1000)]
            .into_iter()
            .map(|(bgid, addr)| PbufRing {
                bgid,
                entries: 8,
                // bgid 0's head moved: its reads take 3 of the SQ head's
                // 5000 positions from restore_completions.
                head: if bgid == 0 { 3 } else { 0 },
                addr: Some(addr),
                mmap: false,
                incremental: bgid == 65,
                contents: None,
            })
            .collect();
        // Legacy group 7 holds buffers in two runs (two PROVIDE_BUFFERS
        // SQEs, which take 2 more positions); group 9 was emptied (left
        // out).
        ring.legacy_buffer_groups = vec![
            ringplan_image::LegacyBufferGroup {
                bgid: 7,
                buffers: Some(vec![
                    ringplan_image::LegacyBufferRun {
                        addr: 0x7f20_0000_0080,
                        len: 64,
                        bid: 2,
                        count: 2,
                    },
                    ringplan_image::LegacyBufferRun {
                        addr: 0x7f20_0001_0000,
                        len: 128,
                        bid: 10,
                        count: 3,
                    },
                ]),
            },
            ringplan_image::LegacyBufferGroup {
                bgid: 9,
                buffers: Some(Vec::new()),
            },
        ];
    }
    image
}

/// The continuity scenario with a buffer ring the program had in kernel
/// memory (`IOU_PBUF_RING_MMAP`), bgid 9, 2 entries at head 1, mapped at
/// 0x7f30_0000_0000: its 32 captured bytes (2 buffers of 64 bytes, bids 4
/// and 5, tail 2) go into the plan.
pub fn pbuf_mmap() -> Image {
    let mut image = continuity();
    let mut contents = Vec::new();
    for (index, bid) in [4u16, 5].into_iter().enumerate() {
        contents.extend_from_slice(&(0x7f40_0000_0000u64 + 64 * index as u64).to_ne_bytes());
        contents.extend_from_slice(&64u32.to_ne_bytes());
        contents.extend_from_slice(&bid.to_ne_bytes());
        // The tail overlays the first entry's last two bytes.
        contents.extend_from_slice(&(if index == 0 { 2u16 } else { 0 }).to_ne_bytes());
    }
    if let ObjectKind::Ring(ring) = &mut image.objects[0].kind {
        ring.pbuf_rings = vec![PbufRing {
            bgid: 9,
            entries: 2,
            head: 1,
            addr: Some(0x7f30_0000_0000),
            mmap: true,
            incremental: false,
            contents: Some(ringplan_image::KernelMemoryBytes(contents)),
        }];
    }
    image
}

/// Restrictions on two rings: one recorded still `R_DISABLED` (registered,
/// left disabled) and one recorded enabled (set up disabled, enabled
/// after its registrations); neither moves its positions.
pub fn restricted() -> Image {
    let restrictions = Restrictions {
        register_ops: vec![2, 9, 12],
        sqe_ops: vec![0, 22],
        sqe_flags_allowed: 0x41,
        sqe_flags_required: 0,
    };
    let mut disabled = plain_ring(4);
    disabled.setup.flags = Some(SetupFlags::R_DISABLED.bits());
    disabled.restrictions = Some(restrictions.clone());
    let mut enabled = plain_ring(4);
    enabled.restrictions = Some(restrictions);
    enabled.files = slots(&[Some(3)]);
    enabled.personalities = vec![root_personality(1)];
    enabled.personality_next = 2;
    image(vec![
        ring_object(1, cloexec_fds(&[5]), disabled),
        ring_object(2, cloexec_fds(&[6]), enabled),
        file_object(
            3,
            fds(&[7]),
            path_file("/tmp/data", FileType::Regular, 0o2, 0),
        ),
    ])
}

/// Registered wait regions (`IORING_REGISTER_MEM_REGION`) on three rings:
/// a `SINGLE_ISSUER` ring restored where the program left it, with an
/// eventfd and a file table (set up disabled, its region registered and
/// the ring enabled at once, before its positions move and anything else
/// is registered); one with restrictions too (enabled after every
/// registration, as restrictions want); one recorded still disabled
/// (never enabled).
pub fn wait_regions() -> Image {
    let region = |addr: u64| RingSettings {
        wait_region_len: Some(0x1000),
        wait_region_addr: Some(addr),
        ..RingSettings::default()
    };
    let flags = SetupFlags::SINGLE_ISSUER.bits();
    let mut moving = plain_ring(8);
    moving.setup.flags = Some(flags);
    moving.mappings = page_mappings(&[
        (RingRegion::SqRing, 0x7f00_0000_0000),
        (RingRegion::Sqes, 0x7f00_0001_0000),
    ]);
    let mut state = ring_state(flags, 8, 40);
    state.owner_tid = Some(4321);
    moving.state = Some(Box::new(state));
    moving.eventfd = Some(RingEventfd {
        object: ObjectId(4),
        is_async: false,
    });
    moving.files = slots(&[Some(5)]);
    moving.settings = region(0x7f00_0002_0000);

    let mut restricted = plain_ring(4);
    restricted.restrictions = Some(Restrictions {
        register_ops: vec![2],
        sqe_ops: vec![0],
        sqe_flags_allowed: 0,
        sqe_flags_required: 0,
    });
    restricted.settings = region(0x7f00_0003_0000);

    let mut disabled = plain_ring(4);
    disabled.setup.flags = Some(SetupFlags::R_DISABLED.bits());
    disabled.settings = region(0x7f00_0004_0000);
    image(vec![
        ring_object(1, cloexec_fds(&[6]), moving),
        ring_object(2, cloexec_fds(&[7]), restricted),
        ring_object(3, cloexec_fds(&[8]), disabled),
        eventfd_object(4, Vec::new(), 0, false, false),
        file_object(
            5,
            fds(&[9]),
            path_file("/tmp/data", FileType::Regular, 0o2, 0),
        ),
    ])
}

/// The registered settings of the `settings` scenario (`plan app
/// settings`): a plain ring with a sparse file table registered with
/// tags, a file allocation range, io-wq limits, NAPI, and buffers with a
/// tag.
pub fn settings() -> Image {
    let mut ring = plain_ring(8);
    ring.files = slots(&[Some(2), Some(3), None, Some(2), None, None, None, None]);
    ring.buffers = vec![
        Some(Buffer {
            addr: 0x5500_0000_0730,
            len: 64,
        }),
        None,
        Some(Buffer {
            addr: 0x5500_0000_22e0,
            len: 32,
        }),
    ];
    ring.settings = RingSettings {
        file_alloc_range: Some(FileAllocRange { start: 5, len: 3 }),
        iowq_max_workers: Some(IowqMaxWorkers {
            bounded: 3,
            unbounded: 5,
        }),
        napi: Some(Napi {
            busy_poll_us: 50,
            prefer_busy_poll: true,
            tracking: NapiTracking::Dynamic,
            ids_listed: false,
        }),
        napi_static_ids: None,
        file_tags: vec![
            SlotTag {
                slot: 0,
                tag: 0x1001,
            },
            SlotTag {
                slot: 3,
                tag: 0x1003,
            },
        ],
        buffer_tags: vec![SlotTag {
            slot: 0,
            tag: 0x2001,
        }],
        wait_region_len: None,
        wait_region_addr: None,
        wait_region_kernel_memory: false,
        wait_region_contents: None,
        iowq_affinity: None,
    };
    image(vec![
        ring_object(1, cloexec_fds(&[9]), ring),
        file_object(
            2,
            cloexec_fds(&[5]),
            path_file("/tmp/tagged-0", FileType::Regular, 0o2, 0),
        ),
        file_object(
            3,
            cloexec_fds(&[6]),
            path_file("/tmp/tagged-1", FileType::Regular, 0o2, 0),
        ),
    ])
}

/// Registered ring fds: a ring with restrictions recorded enabled, held at
/// fd 5 and registered at offsets 3 (thread 318) and 7 (thread 319), and a
/// ring no fd holds, only thread 319's slot 0 (liburing's
/// `io_uring_close_ring_fd`).
pub fn ring_fds() -> Image {
    let mut restricted = plain_ring(4);
    restricted.restrictions = Some(Restrictions {
        register_ops: vec![20],
        sqe_ops: vec![0],
        sqe_flags_allowed: 0,
        sqe_flags_required: 0,
    });
    restricted.registered_ring_fds = vec![
        RegisteredRingFd {
            tid: 318,
            offset: 3,
        },
        RegisteredRingFd {
            tid: 319,
            offset: 7,
        },
    ];
    let mut slot_only = plain_ring(4);
    slot_only.registered_ring_fds = vec![RegisteredRingFd {
        tid: 319,
        offset: 0,
    }];
    image(vec![
        ring_object(1, cloexec_fds(&[5]), restricted),
        ring_object(2, Vec::new(), slot_only),
    ])
}

/// What one process of a tree holds of one object.
pub fn held(object: u32, fds: Vec<FdEntry>, mappings: Vec<RingMapping>, owner: bool) -> Held {
    Held {
        object: ObjectId(object),
        fds,
        mappings,
        owner,
        registered_ring_fds: Vec::new(),
    }
}

/// A tree image of three processes, as `plan dump --tree` records the
/// `shared` scenario: process 1000 and its children 1001 and 1002.
/// - ring #1 (restored where the program left it) with eventfd #3 and
///   file #4 registered, set up by 1000 before it forked: 1000 and 1001
///   hold it at fd 5, mapped at the same addresses, and 1001 registered
///   it at slot 2 of its thread; 1002 unmapped it and
///   closed its fd;
/// - ring #2, `SINGLE_ISSUER`, owned by 1000's main thread: all three
///   hold it at fd 8, 1001 without mapping it;
/// - eventfd #3 at fd 6 and file #4 at fd 7 in all three;
/// - ring #5, 1002's own (fd 13), registering file #4.
pub fn tree() -> Image {
    let shared_mappings = page_mappings(&[
        (RingRegion::SqRing, 0x7f00_0000_0000),
        (RingRegion::Sqes, 0x7f00_0001_0000),
    ]);
    let owned_mappings = page_mappings(&[
        (RingRegion::SqRing, 0x7f00_0002_0000),
        (RingRegion::Sqes, 0x7f00_0003_0000),
    ]);
    let own_mappings = page_mappings(&[
        (RingRegion::SqRing, 0x7f00_0004_0000),
        (RingRegion::Sqes, 0x7f00_0005_0000),
    ]);
    let mut shared = plain_ring(8);
    shared.mappings = shared_mappings.clone();
    shared.state = Some(Box::new(ring_state(0, 8, 0)));
    shared.eventfd = Some(RingEventfd {
        object: ObjectId(3),
        is_async: false,
    });
    shared.files = slots(&[Some(4), None]);
    let single_issuer = SetupFlags::SINGLE_ISSUER.bits();
    let mut owned = plain_ring(4);
    owned.setup.flags = Some(single_issuer);
    owned.mappings = owned_mappings.clone();
    let mut owned_state = ring_state(single_issuer, 4, 0);
    owned_state.owner_tid = Some(1000);
    owned.state = Some(Box::new(owned_state));
    let mut own = plain_ring(4);
    own.state = Some(Box::new(ring_state(0, 4, 0)));
    own.files = slots(&[Some(4)]);

    let mut tree = image(vec![
        ring_object(1, cloexec_fds(&[5]), shared),
        ring_object(2, cloexec_fds(&[8]), owned),
        eventfd_object(3, fds(&[6]), 3, false, false),
        file_object(
            4,
            cloexec_fds(&[7]),
            path_file("/tmp/shared-data", FileType::Regular, 0o2, 0),
        ),
        ring_object(5, Vec::new(), own),
    ]);
    tree.source.pid = 1000;
    let everything_inherited = |shared_mapped: bool, owned_mapped: bool| {
        vec![
            held(
                1,
                cloexec_fds(&[5]),
                if shared_mapped {
                    shared_mappings.clone()
                } else {
                    Vec::new()
                },
                false,
            ),
            held(
                2,
                cloexec_fds(&[8]),
                if owned_mapped {
                    owned_mappings.clone()
                } else {
                    Vec::new()
                },
                false,
            ),
            held(3, fds(&[6]), Vec::new(), false),
            held(4, cloexec_fds(&[7]), Vec::new(), false),
        ]
    };
    let mut root = everything_inherited(true, true);
    root[1].owner = true;
    let mut own_ring_child = everything_inherited(false, true);
    own_ring_child.remove(0);
    own_ring_child.push(held(5, cloexec_fds(&[13]), own_mappings, false));
    // The first child registered the shared ring in a slot of its thread.
    let mut slot_child = everything_inherited(true, false);
    slot_child[0].registered_ring_fds = vec![ringplan_image::RegisteredRingFd {
        tid: 1001,
        offset: 2,
    }];
    tree.processes = vec![
        TreeProcess {
            pid: 1000,
            parent: None,
            holds: root,
        },
        TreeProcess {
            pid: 1001,
            parent: Some(1000),
            holds: slot_child,
        },
        TreeProcess {
            pid: 1002,
            parent: Some(1000),
            holds: own_ring_child,
        },
    ];
    tree
}
