//! Every image the planner refuses, each with the exact message a person
//! sees. Each message names the object it is about.

use ringplan_image::*;
use ringplan_plan::{compile, CompileError};

use crate::scenarios::*;

/// The error `compile` gives for `image`; a test fails if it plans.
fn refusal(image: &Image) -> CompileError {
    match compile(image) {
        Ok(plan) => panic!(
            "expected a refusal, got a plan of {} steps",
            plan.steps.len()
        ),
        Err(error) => error,
    }
}

fn message(image: &Image) -> String {
    refusal(image).to_string()
}

fn one_ring(ring: Ring) -> Image {
    image(vec![ring_object(1, cloexec_fds(&[3]), ring)])
}

#[test]
fn wrong_image_format() {
    let mut image = one_ring(plain_ring(4));
    image.format = "something-else".to_owned();
    assert_eq!(
        message(&image),
        "not a ringplan image: format is \"something-else\", expected \"ringplan-image\""
    );
}

#[test]
fn unsupported_image_version() {
    let mut image = one_ring(plain_ring(4));
    image.version = 6;
    assert_eq!(
        message(&image),
        "unsupported image version 6 (this planner reads versions 1 to 5)"
    );
}

fn personality(id: u32) -> ringplan_image::Personality {
    ringplan_image::Personality {
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
        cap_permitted: 0,
        cap_effective: 0,
        cap_bounding: 0,
        cap_ambient: 0,
    }
}

/// A buffer ring at head `head`, its memory at 0x7f00_0000_0000.
fn pbuf_ring(bgid: u16, head: u16) -> PbufRing {
    PbufRing {
        bgid,
        entries: 8,
        head,
        addr: Some(0x7f00_0000_0000),
        mmap: false,
        incremental: false,
        contents: None,
    }
}

#[test]
fn buffer_rings_a_restore_cannot_bring_back_are_refused() {
    let refused = |entry: PbufRing| {
        let mut ring = plain_ring(4);
        ring.pbuf_rings = vec![entry];
        message(&one_ring(ring))
    };
    assert_eq!(
        refused(pbuf_ring(3, 5)),
        "ring #1: its provided buffers cannot be restored: buffer ring 3: the kernel's head is 5, and \
         a new buffer ring starts at 0: only consuming buffers moves it, which needs the ring restored \
         with its positions (the image has no state of it, or the program had none of its memory mapped)"
    );
    // On a ring with its state: the reads move its SQ head one each, so
    // the heads may not add up to more than it; and they need the ring
    // enabled (restrictions set it up disabled) and not IOPOLL.
    let with_state = |position: u32, flags: u32, restricted: bool| {
        let mut ring = plain_ring(4);
        ring.setup.flags = Some(flags);
        ring.mappings = [
            (RingRegion::SqRing, 0x7e00_0000_0000),
            (RingRegion::Sqes, 0x7e00_0001_0000),
        ]
        .into_iter()
        .map(|(region, addr)| RingMapping {
            region,
            addr,
            len: 0x1000,
        })
        .collect();
        ring.state = Some(Box::new(ring_state(flags, 4, position)));
        ring.pbuf_rings = vec![pbuf_ring(3, 5)];
        if restricted {
            ring.restrictions = Some(ringplan_image::Restrictions {
                register_ops: vec![],
                sqe_ops: vec![22],
                sqe_flags_allowed: 0,
                sqe_flags_required: 0,
            });
        }
        message(&one_ring(ring))
    };
    assert_eq!(
        with_state(4, 0, false),
        "ring #1: cannot be restored where the program left it: its buffer rings' heads add up to 5 \
         consumed buffers, more than the 4 SQEs its SQ head counts (it wrapped, or a request consumed \
         several): reads that consume them one each cannot bring both back"
    );
    assert!(
        with_state(5, SetupFlags::IOPOLL.bits(), false).contains("an IOPOLL ring reads only files"),
        "{}",
        with_state(5, SetupFlags::IOPOLL.bits(), false)
    );
    let restricted = with_state(5, 0, true);
    assert!(
        restricted.contains("buffer ring 3") || restricted.contains("restrictions"),
        "{restricted}"
    );
    // Kernel memory: refused when the program has not mapped it, or when
    // the image lacks its bytes; planned with them.
    let mut kernel_memory = pbuf_ring(3, 0);
    kernel_memory.mmap = true;
    assert_eq!(
        refused(kernel_memory.clone()),
        "ring #1: its provided buffers cannot be restored: buffer ring 3 is in kernel memory \
         (IOU_PBUF_RING_MMAP) whose entries and tail the image does not hold (the dump said why)"
    );
    let mut unmapped = kernel_memory.clone();
    unmapped.addr = None;
    assert!(refused(unmapped).contains("the program has not mapped"));
    kernel_memory.contents = Some(ringplan_image::KernelMemoryBytes(vec![0; 8 * 16]));
    let mut planned = plain_ring(4);
    planned.pbuf_rings = vec![kernel_memory];
    assert!(ringplan_plan::compile(&one_ring(planned)).is_ok());
    let mut not_found = pbuf_ring(3, 0);
    not_found.addr = None;
    assert_eq!(
        refused(not_found),
        "ring #1: its provided buffers cannot be restored: buffer ring 3: where the program has its \
         memory is unknown"
    );
    let mut legacy = plain_ring(4);
    legacy.legacy_buffer_groups = vec![LegacyBufferGroup::not_captured(9)];
    assert!(message(&one_ring(legacy.clone())).contains(
        "legacy group 9 (IORING_OP_PROVIDE_BUFFERS) keeps its buffers in the kernel, which the image \
         does not capture"
    ));
    legacy.legacy_buffer_groups = vec![LegacyBufferGroup::from_buffers(
        9,
        [LegacyBuffer {
            addr: 0x10000,
            len: 64,
            bid: 1,
        }],
    )];
    // Captured buffers are provided again by SQEs, which move the ring's
    // positions: a ring without its state (plain_ring) cannot take them.
    assert!(message(&one_ring(legacy.clone())).contains(
        "legacy group 9: its 1 buffers are provided again by IORING_OP_PROVIDE_BUFFERS SQEs, which \
         needs the ring restored with its positions"
    ));
    // A group the program emptied is left out (the kernel treats an empty
    // legacy list as no group): the image compiles.
    legacy.legacy_buffer_groups = vec![LegacyBufferGroup {
        bgid: 9,
        buffers: Some(Vec::new()),
    }];
    assert!(compile(&one_ring(legacy)).is_ok());
}

#[test]
fn personalities_whose_ids_wrapped_are_refused() {
    let mut ring = plain_ring(4);
    ring.personalities = vec![personality(3), personality(65535)];
    ring.personality_next = 4;
    assert_eq!(
        message(&one_ring(ring)),
        "ring #1: its personalities cannot be restored: next id 4 is not above id 65535: the \
         kernel's ids wrapped past 65535, which registering in order cannot bring back"
    );
}

#[test]
fn unknown_personalities_and_restrictions_on_moved_positions_are_refused() {
    let mut ring = plain_ring(4);
    ring.unknown.push(ringplan_image::RingField::Personalities);
    assert_eq!(
        message(&one_ring(ring)),
        "ring #1: personalities unknown (the image was dumped with the bpf backend), so the ring \
         cannot be restored exactly"
    );
    // Restrictions on a ring whose positions NOPs must move.
    let mut image = continuity();
    if let ObjectKind::Ring(ring) = &mut image.objects[0].kind {
        ring.restrictions = Some(ringplan_image::Restrictions {
            register_ops: vec![],
            sqe_ops: vec![0],
            sqe_flags_allowed: 0,
            sqe_flags_required: 0,
        });
    }
    assert_eq!(
        message(&image),
        "ring #1: its restrictions cannot be restored: its positions are brought back by NOPs and \
         MSG_RING submitted to it, which a ring must be enabled for, and restrictions can only be \
         registered before"
    );
}

#[test]
fn personalities_are_registered_up_to_the_next_id_and_fillers_dropped() {
    let mut ring = plain_ring(4);
    ring.personalities = vec![personality(1), personality(3)];
    ring.personality_next = 6;
    let plan = ringplan_plan::compile(&one_ring(ring)).expect("compiles");
    let register = plan
        .steps
        .iter()
        .find_map(|step| match &step.op {
            ringplan_plan::Op::RegisterPersonalities(register) => Some(register),
            _ => None,
        })
        .expect("a register_personalities step");
    assert_eq!(register.last_id(), 5);
    let fillers: Vec<u32> = (1..=register.last_id())
        .filter(|id| !register.is_recorded(*id))
        .collect();
    assert_eq!(fillers, vec![2, 4, 5]);
    assert_eq!(register.next, 6);
}

#[test]
fn wq_parent_cycle() {
    let image = image(vec![
        ring_object(
            1,
            cloexec_fds(&[3]),
            attached(sqpoll_ring(1, None, 1000), Some(2)),
        ),
        ring_object(
            2,
            cloexec_fds(&[4]),
            attached(sqpoll_ring(1, None, 1000), Some(1)),
        ),
    ]);
    let error = refusal(&image);
    assert!(
        matches!(
            error,
            CompileError::InvalidImage(ImageError::WqCycle { .. })
        ),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "invalid image: ring #1: wq_parent chain loops back to it"
    );
}

#[test]
fn reference_to_nothing() {
    let mut ring = plain_ring(4);
    ring.files = slots(&[None, Some(9)]);
    assert_eq!(
        message(&one_ring(ring)),
        "invalid image: ring #1: file slot 1 refers to #9, which does not exist"
    );
}

#[test]
fn size_the_kernel_refuses() {
    let mut ring = plain_ring(4);
    ring.setup.sq_entries = 65536;
    ring.setup.cq_entries = 131072;
    assert_eq!(
        message(&one_ring(ring)),
        "invalid image: ring #1: sq_entries 65536 is outside 1..=32768"
    );
}

#[test]
fn flags_unknown_from_the_fdinfo_backend() {
    let mut ring = plain_ring(4);
    ring.setup.flags = None;
    ring.unknown = vec![
        RingField::Flags,
        RingField::SqThreadIdle,
        RingField::Eventfd,
    ];
    let mut image = one_ring(ring);
    image.source.backend = Backend::Fdinfo;
    let error = refusal(&image);
    assert_eq!(
        error,
        CompileError::UnknownRingField {
            ring: ObjectId(1),
            field: "flags",
            backend: "fdinfo"
        }
    );
    assert_eq!(
        error.to_string(),
        "ring #1: flags unknown (the image was dumped with the fdinfo backend), so the ring cannot be \
         restored exactly"
    );
}

#[test]
fn eventfd_unknown() {
    let mut ring = plain_ring(4);
    ring.unknown = vec![RingField::Eventfd];
    assert_eq!(
        message(&one_ring(ring)),
        "ring #1: eventfd unknown (the image was dumped with the bpf backend), so the ring cannot be \
         restored exactly"
    );
}

#[test]
fn sq_thread_idle_unknown() {
    let mut ring = sqpoll_ring(1, None, 0);
    ring.setup.sq_thread_idle_ms = None;
    ring.unknown = vec![RingField::SqThreadIdle];
    assert_eq!(
        message(&one_ring(ring)),
        "ring #1: sq_thread_idle_ms unknown (the image was dumped with the bpf backend), so the ring \
         cannot be restored exactly"
    );
}

#[test]
fn idle_unknown_without_sqpoll_is_fine() {
    let mut ring = plain_ring(4);
    ring.unknown = vec![RingField::SqThreadIdle];
    assert!(compile(&one_ring(ring)).is_ok());
}

#[test]
fn unknown_setup_flag_bits() {
    let mut ring = plain_ring(4);
    ring.setup.flags = Some(1 << 19 | 1 << 30);
    assert_eq!(
        message(&one_ring(ring)),
        "ring #1: setup flags 0x40080000 are unknown to this planner"
    );
}

#[test]
fn no_mmap_ring() {
    let mut ring = plain_ring(4);
    ring.setup.flags = Some(1 << 14);
    assert_eq!(
        message(&one_ring(ring)),
        "ring #1: IORING_SETUP_NO_MMAP cannot be restored: its rings live in memory the task provided, which the \
         image does not describe"
    );
}

#[test]
fn registered_fd_only_ring() {
    let mut ring = plain_ring(4);
    ring.setup.flags = Some(1 << 15);
    assert_eq!(
        message(&one_ring(ring)),
        "ring #1: IORING_SETUP_REGISTERED_FD_ONLY cannot be restored: the ring has no fd to install, only a \
         registered ring index the image does not record"
    );
}

#[test]
fn cq_entries_without_cqsize() {
    let mut ring = plain_ring(4);
    ring.setup.cq_entries = 16;
    assert_eq!(
        message(&one_ring(ring)),
        "ring #1: cq_entries 16 without IORING_SETUP_CQSIZE; the kernel always makes it 2 x sq_entries = 8"
    );
}

#[test]
fn cq_entries_not_a_power_of_two() {
    let mut ring = plain_ring(4);
    ring.setup.flags = Some(CQSIZE);
    ring.setup.cq_entries = 12;
    assert_eq!(
        message(&one_ring(ring)),
        "ring #1: cq_entries 12 is not a power of two; the kernel would round it up to 16"
    );
}

#[test]
fn ring_in_a_file_table() {
    let mut ring = plain_ring(4);
    ring.files = slots(&[Some(2), None]);
    let image = image(vec![
        ring_object(1, cloexec_fds(&[3]), ring),
        ring_object(2, cloexec_fds(&[4]), plain_ring(4)),
    ]);
    assert_eq!(
        message(&image),
        "ring #1: file slot 0 holds ring #2; the kernel refuses to register an io_uring fd in a file table"
    );
}

#[test]
fn two_creators_of_one_sq_thread() {
    let image = image(vec![
        ring_object(1, cloexec_fds(&[3]), sqpoll_ring(5, None, 1000)),
        ring_object(2, cloexec_fds(&[4]), sqpoll_ring(5, None, 1000)),
    ]);
    assert_eq!(
        message(&image),
        "rings #1 and #2 both created the SQ thread of group 5; one thread has one creator"
    );
}

#[test]
fn one_sq_thread_pinned_to_two_cpus() {
    let image = image(vec![
        ring_object(
            1,
            cloexec_fds(&[3]),
            attached(sqpoll_ring(5, Some(0), 1000), None),
        ),
        ring_object(
            2,
            cloexec_fds(&[4]),
            attached(sqpoll_ring(5, Some(3), 1000), None),
        ),
    ]);
    assert_eq!(
        message(&image),
        "rings #1 and #2 share the SQ thread of group 5 but pin it to different CPUs (0 and 3)"
    );
}

#[test]
fn eventfd_count_beyond_the_kernel() {
    let mut ring = plain_ring(4);
    ring.eventfd = Some(RingEventfd {
        object: ObjectId(2),
        is_async: false,
    });
    let image = image(vec![
        ring_object(1, cloexec_fds(&[3]), ring),
        eventfd_object(2, Vec::new(), u64::MAX, false, false),
    ]);
    assert_eq!(
        message(&image),
        "eventfd #2: count 0xffffffffffffffff is more than an eventfd holds (at most 0xfffffffffffffffe)"
    );
}

#[test]
fn fd_beyond_the_kernel() {
    let image = image(vec![ring_object(
        1,
        cloexec_fds(&[i32::MAX]),
        plain_ring(4),
    )]);
    assert_eq!(
        message(&image),
        "object #1: fd 2147483647 is beyond the largest fd number the kernel allows (2147483583)"
    );
}

#[test]
fn cycle_message_names_the_object() {
    // Image validation rules out every cycle the planner can meet, so this
    // error only checks its wording.
    assert_eq!(
        CompileError::Cycle {
            object: Some(ObjectId(4))
        }
        .to_string(),
        "the restore steps depend on each other in a cycle (through object #4)"
    );
    assert_eq!(
        CompileError::Cycle { object: None }.to_string(),
        "the restore steps depend on each other in a cycle (through a temporary ring)"
    );
}

#[test]
fn refuses_before_any_step() {
    // The first problem wins, whatever comes later in the image: the
    // planner checks everything before it builds the graph.
    let mut bad = plain_ring(4);
    bad.setup.cq_entries = 16;
    let image = image(vec![
        ring_object(1, cloexec_fds(&[3]), plain_ring(4)),
        ring_object(2, cloexec_fds(&[4]), bad),
        eventfd_object(3, Vec::new(), u64::MAX, false, false),
    ]);
    assert!(matches!(
        refusal(&image),
        CompileError::CqEntriesWithoutCqsize {
            ring: ObjectId(2),
            ..
        }
    ));
}

#[test]
fn ring_mappings_mmap_cannot_make() {
    let mapped = |mappings: Vec<RingMapping>| {
        let mut ring = plain_ring(8);
        ring.mappings = mappings;
        ring
    };
    let sq = RingMapping {
        region: RingRegion::SqRing,
        addr: 0x7f00_0000_0000,
        len: 4096,
    };
    let unaligned = RingMapping {
        addr: 0x7f00_0000_0010,
        ..sq
    };
    assert_eq!(
        message(&one_ring(mapped(vec![unaligned]))),
        "ring #1: mapping of sq_ring at 0x7f0000000010+4096 is not page-aligned"
    );
    let image = image(vec![
        ring_object(1, cloexec_fds(&[3]), mapped(vec![sq])),
        ring_object(
            2,
            cloexec_fds(&[4]),
            mapped(vec![RingMapping {
                region: RingRegion::Sqes,
                ..sq
            }]),
        ),
    ]);
    assert_eq!(
        message(&image),
        "ring #2: mapping 0x7f0000000000+4096 overlaps ring #1's mapping 0x7f0000000000+4096"
    );
}

#[test]
fn settings_a_restore_cannot_bring_back_are_refused() {
    let mut ring = plain_ring(4);
    ring.settings.wait_region_len = Some(4096);
    assert_eq!(
        message(&one_ring(ring.clone())),
        "ring #1: its registered wait region cannot be restored: a wait region of 4096 bytes \
         (IORING_REGISTER_MEM_REGION with IORING_MEM_REGION_REG_WAIT_ARG) is in memory of the program \
         the image does not place (an image before version 5, or memory the dump did not find)"
    );
    ring.settings.wait_region_addr = Some(0x7f00_0000_0000);
    ring.settings.wait_region_kernel_memory = true;
    assert_eq!(
        message(&one_ring(ring)),
        "ring #1: its registered wait region cannot be restored: a wait region of 4096 bytes \
         (IORING_REGISTER_MEM_REGION with IORING_MEM_REGION_REG_WAIT_ARG) is in kernel memory whose \
         bytes the image does not have (the program had it unmapped, or the dump could not read it), \
         which a new ring's region would place where the kernel chooses, not where the program had it"
    );
    let napi = |tracking, ids_listed| {
        let mut ring = plain_ring(4);
        ring.settings.napi = Some(Napi {
            busy_poll_us: 10,
            prefer_busy_poll: false,
            tracking,
            ids_listed,
        });
        one_ring(ring)
    };
    assert!(message(&napi(NapiTracking::Static, true)).contains("IO_URING_NAPI_STATIC_ADD_ID"));
    // Static without ids, and dynamic with the ids the kernel tracks by
    // itself, are restored.
    assert!(compile(&napi(NapiTracking::Static, false)).is_ok());
    assert!(compile(&napi(NapiTracking::Dynamic, true)).is_ok());
    // Static with the ids captured (version 5): added again, in order.
    let mut image = napi(NapiTracking::Static, true);
    if let ringplan_image::ObjectKind::Ring(ring) = &mut image.objects[0].kind {
        ring.settings.napi_static_ids = Some(vec![100_002, 100_000]);
    }
    let plan = compile(&image).expect("static NAPI ids the image has are restored");
    let added: Vec<Vec<u32>> = plan
        .steps
        .iter()
        .filter_map(|step| match &step.op {
            ringplan_plan::Op::RegisterSettings(register) => Some(register.napi_static_ids.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(added, [vec![100_002, 100_000]]);
    let mut unknown = plain_ring(4);
    unknown.unknown = vec![RingField::Settings];
    assert!(message(&one_ring(unknown)).contains("settings"));
}

/// The tree's SINGLE_ISSUER ring owned by a thread of the child 1001: the
/// ring must be created there (the kernel ties it to the creating
/// thread), after the first process, which takes it from the child.
#[test]
fn a_tree_ring_owned_by_a_later_process_than_a_holder() {
    let mut tree = tree();
    tree.processes[0].holds[1].owner = false;
    tree.processes[1].holds[1].owner = true;
    if let ObjectKind::Ring(ring) = &mut tree.objects[1].kind {
        if let Some(state) = ring.state.as_deref_mut() {
            state.owner_tid = Some(1001);
        }
    }
    assert_eq!(
        message(&tree),
        "tree image, process 1000: it takes ring #2 from process 1001, which creates it (its owner \
         thread's or SQ thread's process) but is restored after it"
    );
}

/// A tree plan's parts, rendered and round-tripped: the parts keep their
/// order, and the whole is version 3.
#[test]
fn a_tree_plans_into_one_part_per_process() {
    let plan = compile(&tree()).expect("the tree plans");
    assert_eq!(plan.version, ringplan_plan::TREE_FORMAT_VERSION);
    let pids: Vec<u32> = plan.processes.iter().map(|part| part.pid).collect();
    assert_eq!(pids, [1001, 1002]);
    let bytes = ringplan_plan::encode_to_vec(&plan).expect("plans encode");
    assert_eq!(ringplan_plan::decode_slice(&bytes).expect("decodes"), plan);
}
