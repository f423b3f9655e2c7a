//! Image version 2: a ring's continuity state. Version 1 images still
//! decode (without state); a state survives the round trip and shows in
//! both views; every contradiction between a state and its ring's sizes
//! and flags is refused with one line naming the ring.

use ringplan_image::*;

/// One plain ring (8 SQ / 16 CQ entries) with a state: positions past a
/// wrap of the ring, 2 queued SQEs, 1 unconsumed CQE, 1 overflowed CQE.
fn image_with_state() -> Image {
    let sqe = |position: u32, slot: u32| QueuedSqe {
        position,
        slot,
        bytes: SqeBytes(vec![position as u8; 64]),
    };
    let state = RingState {
        positions: RingPositions {
            sq_head: 4_000_000_001,
            sq_tail: 4_000_000_003,
            cached_sq_head: 4_000_000_001,
            cq_head: 7,
            cq_tail: 8,
            cached_cq_tail: 8,
            sq_dropped: 0,
            cq_overflow: 0,
            sq_flags: 2,
            cq_flags: 0,
        },
        sq_array: Some((0..8).collect()),
        sqes: Some(vec![sqe(4_000_000_001, 1), sqe(4_000_000_002, 2)]),
        unqueued_sqes: Vec::new(),
        cqes: Some(vec![Cqe {
            user_data: 0xc1,
            res: -11,
            flags: 0,
            extra: None,
        }]),
        overflow: Some(vec![Cqe {
            user_data: 0xc2,
            res: 0,
            flags: 0,
            extra: None,
        }]),
        memory: RingMemory {
            no_mmap: false,
            rings: None,
            sqes: None,
        },
        owner_tid: None,
        unknown: vec![],
    };
    Image::new(
        Source {
            pid: 42,
            backend: Backend::Bpf,
            kernel_release: "6.18.0".into(),
        },
        vec![Object {
            id: ObjectId(1),
            fds: vec![FdEntry {
                fd: 3,
                cloexec: true,
            }],
            kind: ObjectKind::Ring(Ring {
                setup: RingSetup {
                    flags: Some(0),
                    sq_entries: 8,
                    cq_entries: 16,
                    sq_thread_cpu: None,
                    sq_thread_idle_ms: None,
                },
                wq_parent: None,
                sq_group: None,
                eventfd: None,
                files: vec![],
                buffers: vec![],
                mappings: vec![],
                unknown: vec![],
                state: Some(Box::new(state)),
                personalities: Vec::new(),
                personality_next: 0,
                pbuf_rings: Vec::new(),
                legacy_buffer_groups: Vec::new(),
                settings: Default::default(),
                registered_ring_fds: Vec::new(),
                restrictions: None,
            }),
        }],
    )
}

fn ring(image: &mut Image) -> &mut Ring {
    match &mut image.objects[0].kind {
        ObjectKind::Ring(ring) => ring,
        _ => unreachable!("the test image's object 1 is a ring"),
    }
}

fn state(image: &mut Image) -> &mut RingState {
    ring(image).state.as_deref_mut().expect("a state")
}

fn decode_error(image: &Image) -> String {
    let bytes = encode_to_vec(image).expect("encoding a test image");
    decode_slice(&bytes)
        .expect_err("the image must be refused")
        .to_string()
}

#[test]
fn a_state_round_trips_and_sqe_bytes_are_a_byte_string() {
    let image = image_with_state();
    assert_eq!(image.version, FORMAT_VERSION);
    let bytes = encode_to_vec(&image).expect("encoding");
    assert_eq!(decode_slice(&bytes).expect("decoding"), image);
    // 64 bytes of 0x01 as one CBOR byte string (0x58 0x40, then the
    // bytes), not an array of 64 integers.
    let mut byte_string = vec![0x58, 0x40];
    byte_string.extend([1u8; 64]);
    assert!(bytes
        .windows(byte_string.len())
        .any(|window| window == byte_string));
}

#[test]
fn version_1_images_decode_without_state() {
    // A version 1 image as a version 1 writer made it: no "state" key.
    let mut image = image_with_state();
    image.version = 1;
    ring(&mut image).state = None;
    let mut value: serde_json::Value = serde_json::to_value(&image).expect("the image as a value");
    let ring_value = &mut value["objects"][0]["kind"]["ring"];
    ring_value
        .as_object_mut()
        .expect("a map")
        .remove("state")
        .expect("the key was there");
    let mut bytes = Vec::new();
    ciborium::into_writer(&value, &mut bytes).expect("encoding");
    let decoded = decode_slice(&bytes).expect("a version 1 image decodes");
    assert_eq!(decoded.version, 1);
    assert_eq!(decoded, image);
    assert_eq!(
        view::to_json(&decoded)["objects"][0]["state"],
        serde_json::Value::Null
    );

    // ... and may not carry a state.
    let mut with_state = image_with_state();
    with_state.version = 1;
    assert_eq!(
        decode_error(&with_state),
        "invalid image: ring #1: has a state, which version 1 images do not have"
    );
}

#[test]
fn views_show_the_state() {
    let image = image_with_state();
    let json = view::to_json(&image);
    let state = &json["objects"][0]["state"];
    assert_eq!(state["positions"]["sq_tail"], 4_000_000_003u32);
    assert_eq!(state["positions"]["cached_cq_tail"], 8);
    assert_eq!(state["sqes"][1]["slot"], 2);
    assert_eq!(state["sqes"][0]["bytes"], "01".repeat(64));
    assert_eq!(state["cqes"][0]["res"], -11);
    assert_eq!(state["cqes"][0]["extra"], serde_json::Value::Null);
    assert_eq!(state["overflow"][0]["user_data"], 0xc2);
    assert_eq!(state["memory"]["no_mmap"], false);
    assert_eq!(state["owner_tid"], serde_json::Value::Null);
    assert_eq!(state["unknown"], serde_json::json!([]));
    let text = view::to_text(&image);
    assert!(
        text.contains("positions: sq head/tail 4000000001/4000000003 (kernel head 4000000001), cq head/tail 7/8"),
        "{text}"
    );
    assert!(
        text.contains("entries: 2 queued SQEs, 1 unconsumed CQEs, 1 overflowed CQEs; owner -"),
        "{text}"
    );
}

/// A change to the test image's state, and the problem it must cause.
type Case = (fn(&mut Image), &'static str);

#[test]
fn states_that_contradict_their_ring_are_refused() {
    let cases: &[Case] = &[
        (
            |image| state(image).positions.sq_tail = 4_000_000_010,
            "9 SQEs queued (SQ tail 4000000010 - head 4000000001), more than sq_entries 8",
        ),
        (
            |image| {
                state(image).sqes.as_mut().expect("sqes").pop();
            },
            "1 SQEs recorded, but SQ tail 4000000003 - head 4000000001 = 2",
        ),
        (
            |image| state(image).sqes.as_mut().expect("sqes")[1].slot = 8,
            "SQE at position 4000000002: slot 8 is outside 0..8",
        ),
        (
            |image| state(image).sqes.as_mut().expect("sqes")[1].slot = 5,
            "SQE at position 4000000002: slot 5 is not the one the SQ array names",
        ),
        (
            |image| state(image).sqes.as_mut().expect("sqes")[0].position = 3,
            "SQE 0 is at position 3, expected 4000000001",
        ),
        (
            |image| ring(image).setup.flags = Some(SetupFlags::SQE128.bits()),
            "SQE at position 4000000001 has 64 bytes, expected 128 (IORING_SETUP_SQE128)",
        ),
        (
            |image| state(image).sq_array = Some(vec![0; 4]),
            "sq_array has 4 entries, not sq_entries 8",
        ),
        (
            |image| ring(image).setup.flags = Some(SetupFlags::NO_SQARRAY.bits()),
            "has an sq_array but IORING_SETUP_NO_SQARRAY is set",
        ),
        (
            |image| state(image).positions.cq_tail = 30,
            "23 CQEs unconsumed (CQ tail 30 - head 7), more than cq_entries 16",
        ),
        (
            |image| state(image).cqes.as_mut().expect("cqes").clear(),
            "0 CQEs recorded, but CQ tail 8 - head 7 = 1",
        ),
        (
            |image| state(image).cqes.as_mut().expect("cqes")[0].extra = Some([1, 2]),
            "CQE 0 has extra words but IORING_SETUP_CQE32 is not set",
        ),
        (
            |image| ring(image).setup.flags = Some(SetupFlags::CQE32.bits()),
            "CQE 0 lacks the extra words of IORING_SETUP_CQE32",
        ),
        (
            |image| state(image).owner_tid = Some(77),
            "has an owner thread 77 but IORING_SETUP_SINGLE_ISSUER is not set",
        ),
        (
            |image| {
                ring(image).setup.flags = Some(SetupFlags::SINGLE_ISSUER.bits());
                state(image).owner_tid = Some(0);
            },
            "owner_tid is 0, which no thread has",
        ),
        (
            |image| state(image).memory.no_mmap = true,
            "memory.no_mmap is true but IORING_SETUP_NO_MMAP is not set",
        ),
        (
            |image| {
                state(image).memory.rings = Some(UserRegion {
                    addr: 0x1000,
                    len: 4096,
                })
            },
            "memory.rings has an address but the kernel allocated the ring's memory",
        ),
        (
            |image| {
                ring(image).setup.flags = Some(SetupFlags::NO_MMAP.bits());
                let state = state(image);
                state.memory.no_mmap = true;
                state.memory.rings = Some(UserRegion {
                    addr: 0x1001,
                    len: 4096,
                });
                state.memory.sqes = Some(UserRegion {
                    addr: 0x3000,
                    len: 4096,
                });
            },
            "memory.rings address 0x1001 is not page-aligned",
        ),
        (
            |image| {
                ring(image).setup.flags = Some(SetupFlags::NO_MMAP.bits());
                state(image).memory.no_mmap = true;
            },
            "memory.rings is null but IORING_SETUP_NO_MMAP is set",
        ),
        (
            |image| state(image).unknown = vec![StateField::Entries],
            "entries are listed as unknown but sq_array, sqes or cqes has a value",
        ),
        (
            |image| state(image).cqes = None,
            "sqes and cqes are null but entries are not listed as unknown",
        ),
        (
            |image| state(image).overflow = None,
            "overflow must be null exactly when listed as unknown",
        ),
        (
            |image| state(image).unknown = vec![StateField::OwnerTid, StateField::OwnerTid],
            "state.unknown is not sorted or lists a field twice",
        ),
        (
            |image| {
                let ring = ring(image);
                ring.setup.flags = None;
                ring.unknown = vec![RingField::Flags, RingField::SqThreadCpu];
            },
            "has a state but its setup flags are unknown",
        ),
    ];
    for (change, problem) in cases {
        let mut image = image_with_state();
        change(&mut image);
        assert_eq!(
            decode_error(&image),
            format!("invalid image: ring #1: {problem}"),
        );
    }
}

#[test]
fn unknown_entries_may_be_null() {
    let mut image = image_with_state();
    let state = state(&mut image);
    state.sq_array = None;
    state.sqes = None;
    state.cqes = None;
    state.overflow = None;
    state.unknown = vec![StateField::Entries, StateField::Overflow];
    let bytes = encode_to_vec(&image).expect("encoding");
    assert_eq!(decode_slice(&bytes).expect("decoding"), image);
    let text = view::to_text(&image);
    assert!(
        text.contains(
            "entries: unknown queued SQEs, unknown unconsumed CQEs, unknown overflowed CQEs"
        ),
        "{text}"
    );
}

#[test]
fn positions_that_wrapped_past_2_32_count_as_the_ring_does() {
    // Head just below 2^32, tail past it: 3 queued at positions
    // 2^32-2, 2^32-1, 0 (slots 6, 7, 0 of 8).
    let mut image = image_with_state();
    let state = state(&mut image);
    state.positions.sq_head = u32::MAX - 1;
    state.positions.cached_sq_head = u32::MAX - 1;
    state.positions.sq_tail = 1;
    state.sqes = Some(
        [(u32::MAX - 1, 6), (u32::MAX, 7), (0, 0)]
            .into_iter()
            .map(|(position, slot)| QueuedSqe {
                position,
                slot,
                bytes: SqeBytes(vec![0; 64]),
            })
            .collect(),
    );
    state.positions.cq_head = u32::MAX;
    state.positions.cq_tail = 0;
    state.positions.cached_cq_tail = 0;
    let bytes = encode_to_vec(&image).expect("encoding");
    assert_eq!(
        decode_slice(&bytes).expect("a wrapped ring is valid"),
        image
    );
}

#[test]
fn unqueued_sqe_slots_round_trip_and_are_checked() {
    let slot = |slot: u32, len: usize| SlotSqe {
        slot,
        bytes: SqeBytes(vec![0xa9; len]),
    };
    let mut image = image_with_state();
    state(&mut image).unqueued_sqes = vec![slot(3, 64), slot(7, 64)];
    let bytes = encode_to_vec(&image).expect("encoding");
    assert_eq!(decode_slice(&bytes).expect("decoding"), image);
    assert_eq!(
        view::to_json(&image)["objects"][0]["state"]["unqueued_sqes"][1]["slot"],
        7
    );

    for (slots, problem) in [
        (vec![slot(8, 64)], "unqueued SQE slot 8 is outside 0..8"),
        (vec![slot(2, 64)], "unqueued SQE slot 2 holds a queued SQE"),
        (
            vec![slot(5, 64), slot(4, 64)],
            "unqueued SQE slot 4 is not after slot 5",
        ),
        (
            vec![slot(4, 128)],
            "unqueued SQE slot 4 has 128 bytes, expected 64",
        ),
    ] {
        let mut bad = image_with_state();
        state(&mut bad).unqueued_sqes = slots;
        let error = decode_error(&bad);
        assert!(error.contains(problem), "{error}");
    }
}

/// A kernel-memory buffer ring's bytes round-trip at the largest size a
/// ring has (32768 entries, 512 KiB: far beyond the CBOR decoder's 4 KiB
/// scratch buffer) as one CBOR byte string, and the views show their
/// length, tail and hash, not the bytes.
#[test]
fn the_largest_kernel_memory_buffer_ring_round_trips_as_a_byte_string() {
    let mut image = image_with_state();
    let entries = ringplan_kernel::abi::pbuf::MAX_ENTRIES;
    let mut bytes: Vec<u8> = (0..entries as usize * 16)
        .map(|i| (i % 251) as u8)
        .collect();
    bytes[14..16].copy_from_slice(&7u16.to_ne_bytes());
    ring(&mut image).pbuf_rings = vec![PbufRing {
        bgid: 3,
        entries,
        head: 2,
        addr: Some(0x7f00_0010_0000),
        mmap: true,
        incremental: false,
        contents: Some(KernelMemoryBytes(bytes)),
    }];
    let encoded = encode_to_vec(&image).expect("encoding");
    assert_eq!(decode_slice(&encoded).expect("decoding"), image);
    // 0x5a: a byte string with a 4-byte length, 524288.
    let header = [0x5a, 0x00, 0x08, 0x00, 0x00];
    assert!(encoded.windows(header.len()).any(|window| window == header));
    let view = ringplan_image::view::to_json(&image);
    let contents = &view["objects"][0]["pbuf_rings"][0]["contents"];
    assert_eq!(contents["len"], 524_288, "{contents}");
    assert_eq!(contents["tail"], 7, "{contents}");
    assert_eq!(
        contents["fnv1a64"].as_str().map(str::len),
        Some(16),
        "{contents}"
    );
    assert!(ringplan_image::view::to_text(&image).contains("captured, tail 7"));
}
