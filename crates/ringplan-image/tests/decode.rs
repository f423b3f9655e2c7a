//! Decoding and validation: every way an image can be wrong gets its own
//! error, naming the object; a good image survives the round trip.

use ringplan_image::*;

fn seed_like() -> Image {
    let ring =
        |flags: u32, wq_parent: Option<u32>, eventfd: Option<RingEventfd>, files, buffers| Ring {
            setup: RingSetup {
                flags: Some(flags),
                sq_entries: 2,
                cq_entries: 4,
                sq_thread_cpu: Some(0),
                sq_thread_idle_ms: Some(1500),
            },
            wq_parent: wq_parent.map(ObjectId),
            sq_group: Some(0),
            eventfd,
            files,
            buffers,
            mappings: vec![RingMapping {
                region: RingRegion::SqRing,
                addr: 0x7f00_0000_0000,
                len: 4096,
            }],
            unknown: vec![],
            state: None,
            personalities: Vec::new(),
            personality_next: 0,
            pbuf_rings: Vec::new(),
            legacy_buffer_groups: Vec::new(),
            settings: Default::default(),
            registered_ring_fds: Vec::new(),
            restrictions: None,
        };
    let parent_flags =
        SetupFlags::SQPOLL.bits() | SetupFlags::SQ_AFF.bits() | SetupFlags::CQSIZE.bits();
    Image::new(
        Source {
            pid: 42,
            backend: Backend::Bpf,
            kernel_release: "6.18.0".into(),
        },
        vec![
            Object {
                id: ObjectId(1),
                fds: vec![FdEntry {
                    fd: 3,
                    cloexec: true,
                }],
                kind: ObjectKind::Ring(ring(parent_flags, None, None, vec![], vec![])),
            },
            Object {
                id: ObjectId(2),
                fds: vec![FdEntry {
                    fd: 4,
                    cloexec: true,
                }],
                kind: ObjectKind::Ring(ring(
                    parent_flags | SetupFlags::ATTACH_WQ.bits(),
                    Some(1),
                    Some(RingEventfd {
                        object: ObjectId(3),
                        is_async: true,
                    }),
                    vec![
                        Some(ObjectId(4)),
                        None,
                        Some(ObjectId(4)),
                        None,
                        Some(ObjectId(4)),
                    ],
                    vec![
                        None,
                        Some(Buffer {
                            addr: 0x7ffd_0000_0000,
                            len: 120,
                        }),
                    ],
                )),
            },
            Object {
                id: ObjectId(3),
                fds: vec![FdEntry {
                    fd: 5,
                    cloexec: false,
                }],
                kind: ObjectKind::Eventfd(Eventfd {
                    count: 42,
                    semaphore: false,
                    nonblock: false,
                }),
            },
            Object {
                id: ObjectId(4),
                fds: vec![
                    FdEntry {
                        fd: 0,
                        cloexec: false,
                    },
                    FdEntry {
                        fd: 1,
                        cloexec: false,
                    },
                ],
                kind: ObjectKind::File(File {
                    path: Some("/dev/null".into()),
                    flags: Some(0o100002),
                    pos: Some(0),
                    file_type: FileType::CharDevice,
                    identity: None,
                }),
            },
        ],
    )
}

/// A change to a ring of the test image, and the message it must cause.
type RingCase = (fn(&mut Ring), &'static str);

fn ring_mut(image: &mut Image, id: u32) -> &mut Ring {
    match &mut image.objects[id as usize - 1].kind {
        ObjectKind::Ring(ring) => ring,
        _ => panic!("object {id} of the test image is not a ring"),
    }
}

fn decode_error(image: &Image) -> String {
    let bytes = encode_to_vec(image).expect("encoding a test image");
    decode_slice(&bytes)
        .expect_err("the image must be refused")
        .to_string()
}

#[test]
fn round_trip_keeps_every_field() {
    let image = seed_like();
    let bytes = encode_to_vec(&image).expect("encoding");
    assert_eq!(decode_slice(&bytes).expect("decoding"), image);
}

/// A file's inode (`identity`) round-trips; an image without it (written
/// before it existed) decodes as `None` and re-encodes byte for byte, and
/// the JSON view shows it or `null`.
#[test]
fn a_file_identity_is_optional_on_the_wire() {
    let without = seed_like();
    let bytes = encode_to_vec(&without).expect("encoding");
    let decoded = decode_slice(&bytes).expect("decodes");
    assert_eq!(decoded, without);
    assert_eq!(encode_to_vec(&decoded).expect("encoding"), bytes);
    let json = ringplan_image::view::to_json(&decoded);
    assert!(json["objects"][3]["identity"].is_null(), "{json}");

    let mut with = seed_like();
    let ObjectKind::File(file) = &mut with.objects[3].kind else {
        panic!("object 4 is the file");
    };
    file.identity = Some(FileIdentity {
        dev: (8 << 8) | 1,
        ino: 1234,
    });
    let bytes = encode_to_vec(&with).expect("encoding");
    assert_eq!(decode_slice(&bytes).expect("decodes"), with);
    let json = ringplan_image::view::to_json(&with);
    assert_eq!(json["objects"][3]["identity"]["ino"], 1234, "{json}");
    assert_eq!(json["objects"][3]["identity"]["dev"], 2049, "{json}");
    assert!(
        ringplan_image::view::to_text(&with).contains("dev 8:1 ino 1234"),
        "{}",
        ringplan_image::view::to_text(&with)
    );
}

#[test]
fn empty_random_and_foreign_inputs_are_refused() {
    assert_eq!(decode_slice(&[]).unwrap_err().to_string(), "input is empty");
    assert!(decode_slice(&[0xff, 0x00, 0x13])
        .unwrap_err()
        .to_string()
        .starts_with("not a ringplan image"));
    let mut other = Vec::new();
    ciborium::into_writer(
        &serde_json::json!({"format": "something-else", "version": 1}),
        &mut other,
    )
    .unwrap();
    assert_eq!(
        decode_slice(&other).unwrap_err().to_string(),
        "not a ringplan image: format is \"something-else\", expected \"ringplan-image\""
    );
    let mut list = Vec::new();
    ciborium::into_writer(&vec![1, 2, 3], &mut list).unwrap();
    assert!(decode_slice(&list)
        .unwrap_err()
        .to_string()
        .starts_with("not a ringplan image"));
}

#[test]
fn another_version_is_refused_before_its_fields_are_read() {
    let mut future = Vec::new();
    ciborium::into_writer(
        &serde_json::json!({"format": "ringplan-image", "version": 6, "objects": "new shape"}),
        &mut future,
    )
    .unwrap();
    assert_eq!(
        decode_slice(&future).unwrap_err().to_string(),
        "unsupported image version 6 (this build reads versions 1 to 5)"
    );
}

#[test]
fn truncated_and_trailing_bytes_are_refused() {
    let bytes = encode_to_vec(&seed_like()).unwrap();
    for cut in [1, bytes.len() / 2, bytes.len() - 1] {
        assert!(
            decode_slice(&bytes[..cut]).is_err(),
            "a cut at {cut} bytes must be refused"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(
        decode_slice(&longer).unwrap_err().to_string(),
        "malformed image: 1 bytes after the end of the document"
    );
}

#[test]
fn duplicate_and_unordered_ids() {
    let mut image = seed_like();
    image.objects[1].id = ObjectId(1);
    assert_eq!(
        decode_error(&image),
        "invalid image: duplicate object id #1"
    );
    let mut image = seed_like();
    image.objects.swap(2, 3);
    assert_eq!(
        decode_error(&image),
        "invalid image: objects are not in ascending id order: #3 follows #4"
    );
}

#[test]
fn dangling_and_wrongly_typed_references() {
    let mut image = seed_like();
    ring_mut(&mut image, 2).files[2] = Some(ObjectId(9));
    assert_eq!(
        decode_error(&image),
        "invalid image: ring #2: file slot 2 refers to #9, which does not exist"
    );
    let mut image = seed_like();
    ring_mut(&mut image, 2).eventfd = Some(RingEventfd {
        object: ObjectId(4),
        is_async: false,
    });
    assert_eq!(
        decode_error(&image),
        "invalid image: ring #2: eventfd refers to #4, which is a file, not an eventfd"
    );
    let mut image = seed_like();
    ring_mut(&mut image, 2).wq_parent = Some(ObjectId(3));
    assert_eq!(
        decode_error(&image),
        "invalid image: ring #2: wq_parent refers to #3, which is an eventfd, not a ring"
    );
}

#[test]
fn wq_parent_cycles() {
    let mut image = seed_like();
    ring_mut(&mut image, 2).wq_parent = Some(ObjectId(2));
    assert_eq!(
        decode_error(&image),
        "invalid image: ring #2: wq_parent chain loops back to it"
    );
    let mut image = seed_like();
    let ring = ring_mut(&mut image, 1);
    ring.wq_parent = Some(ObjectId(2));
    ring.setup.flags = ring
        .setup
        .flags
        .map(|flags| flags | SetupFlags::ATTACH_WQ.bits());
    assert!(decode_error(&image).contains("wq_parent chain loops back to it"));
}

#[test]
fn fds_negative_colliding_or_repeated() {
    let mut image = seed_like();
    image.objects[2].fds[0].fd = -1;
    assert_eq!(
        decode_error(&image),
        "invalid image: object #3: fd -1 is negative"
    );
    let mut image = seed_like();
    image.objects[2].fds[0].fd = 3;
    assert_eq!(
        decode_error(&image),
        "invalid image: objects #1 and #3 both claim fd 3"
    );
    let mut image = seed_like();
    image.objects[3].fds[1].fd = 0;
    assert_eq!(
        decode_error(&image),
        "invalid image: object #4: fd 0 is listed twice or not in ascending order"
    );
}

#[test]
fn sizes_the_kernel_refuses() {
    let cases: [RingCase; 6] = [
        (
            |ring| ring.setup.sq_entries = 0,
            "sq_entries 0 is outside 1..=32768",
        ),
        (
            |ring| ring.setup.sq_entries = 65536,
            "sq_entries 65536 is outside 1..=32768",
        ),
        (
            |ring| ring.setup.sq_entries = 3,
            "sq_entries 3 is not a power of two",
        ),
        (
            |ring| ring.setup.cq_entries = 1,
            "cq_entries 1 is outside 2..=65536",
        ),
        (
            |ring| ring.buffers = vec![None; 16385],
            "16385 buffer slots exceed the kernel's 16384",
        ),
        (
            |ring| ring.files = vec![None; (1 << 20) + 1],
            "1048577 file slots exceed the kernel's 1048576",
        ),
    ];
    for (change, message) in cases {
        let mut image = seed_like();
        change(ring_mut(&mut image, 2));
        assert_eq!(
            decode_error(&image),
            format!("invalid image: ring #2: {message}")
        );
    }
}

#[test]
fn buffers_outside_user_space_or_absurd() {
    let cases = [
        (
            Buffer {
                addr: 0x1000,
                len: 0,
            },
            "length is 0 (an empty slot is null)",
        ),
        (
            Buffer {
                addr: 0x1000,
                len: (1 << 30) + 1,
            },
            "length 1073741825 exceeds the kernel's 1 GiB",
        ),
        (Buffer { addr: 0, len: 4096 }, "address is 0"),
        (
            Buffer {
                addr: 0xffff_8880_0000_0000,
                len: 4096,
            },
            "0xffff888000000000+4096 is not a user address range",
        ),
        (
            Buffer {
                addr: u64::MAX - 10,
                len: 4096,
            },
            "0xfffffffffffffff5+4096 is not a user address range",
        ),
    ];
    for (buffer, message) in cases {
        let mut image = seed_like();
        ring_mut(&mut image, 2).buffers[1] = Some(buffer);
        assert_eq!(
            decode_error(&image),
            format!("invalid image: ring #2: buffer slot 1: {message}")
        );
    }
}

#[test]
fn flags_must_agree_with_the_fields_they_govern() {
    let cases: [RingCase; 5] = [
        (
            |ring| ring.setup.sq_thread_cpu = None,
            "sq_thread_cpu must be set exactly when IORING_SETUP_SQ_AFF is",
        ),
        (
            |ring| ring.setup.sq_thread_idle_ms = None,
            "IORING_SETUP_SQPOLL is set but sq_thread_idle_ms is missing",
        ),
        (
            |ring| ring.sq_group = None,
            "sq_group must be set exactly when IORING_SETUP_SQPOLL is",
        ),
        (
            |ring| ring.setup.flags = Some(SetupFlags::SQPOLL.bits() | SetupFlags::SQ_AFF.bits()),
            "has a wq_parent but IORING_SETUP_ATTACH_WQ is not set",
        ),
        (
            |ring| ring.setup.flags = None,
            "flags must be null exactly when listed as unknown",
        ),
    ];
    for (change, message) in cases {
        let mut image = seed_like();
        change(ring_mut(&mut image, 2));
        assert_eq!(
            decode_error(&image),
            format!("invalid image: ring #2: {message}")
        );
    }
}

#[test]
fn relative_paths_are_refused() {
    let mut image = seed_like();
    if let ObjectKind::File(file) = &mut image.objects[3].kind {
        file.path = Some("dev/null".into());
    }
    assert_eq!(
        decode_error(&image),
        "invalid image: file #4: path \"dev/null\" is not absolute"
    );
}

#[test]
fn json_view_carries_the_contract_names() {
    let view = view::to_json(&seed_like());
    let ring = &view["objects"][1];
    assert_eq!(ring["kind"], "ring");
    assert_eq!(ring["fds"], serde_json::json!([4]));
    assert_eq!(ring["setup"]["flags"], 46);
    assert_eq!(ring["wq_parent"], 1);
    assert_eq!(
        ring["eventfd"],
        serde_json::json!({"object": 3, "async": true})
    );
    assert_eq!(ring["file_slots"], 5);
    assert_eq!(
        ring["files"],
        serde_json::json!([{"index": 0, "object": 4}, {"index": 2, "object": 4}, {"index": 4, "object": 4}])
    );
    assert_eq!(ring["buffer_slots"], 2);
    assert_eq!(
        ring["buffers"],
        serde_json::json!([{"index": 1, "addr": 0x7ffd_0000_0000u64, "len": 120}])
    );
    assert_eq!(view["objects"][2]["count"], 42);
    assert_eq!(view["objects"][3]["path"], "/dev/null");
}

fn personality(id: u32) -> Personality {
    Personality {
        id,
        uid: 1000,
        euid: 1000,
        suid: 1000,
        fsuid: 1000,
        gid: 100,
        egid: 100,
        sgid: 100,
        fsgid: 100,
        groups: Some(vec![27, 100]),
        cap_inheritable: 0,
        cap_permitted: 0,
        cap_effective: 0,
        cap_bounding: 0x1ff_ffff_ffff,
        cap_ambient: 0,
    }
}

#[test]
fn personalities_and_restrictions_round_trip_in_version_3() {
    let mut image = seed_like();
    image.version = 3;
    let ring = ring_mut(&mut image, 1);
    ring.personalities = vec![personality(1), personality(3)];
    ring.personality_next = 4;
    ring.restrictions = Some(Restrictions {
        register_ops: vec![9, 12],
        sqe_ops: vec![0, 22],
        sqe_flags_allowed: 0x1,
        sqe_flags_required: 0,
    });
    let bytes = encode_to_vec(&image).unwrap();
    let decoded = decode_slice(&bytes).unwrap();
    assert_eq!(decoded, image);
    assert_eq!(decoded.version, 3);
    let view = ringplan_image::view::to_json(&decoded);
    let ring_view = &view["objects"][0];
    assert_eq!(ring_view["personalities"][1]["id"], 3);
    assert_eq!(ring_view["personalities"][1]["groups"][0], 27);
    assert_eq!(ring_view["personality_next"], 4);
    assert_eq!(ring_view["restrictions"]["sqe_ops"][1], 22);
    let plain = seed_like();
    assert!(ringplan_image::view::to_json(&plain)["objects"][0]["restrictions"].is_null());
}

/// A change to the test image's ring, and the message it must cause.
type BoxedCase = (Box<dyn Fn(&mut Ring)>, &'static str);

#[test]
fn bad_personalities_and_restrictions_are_refused() {
    let cases: Vec<BoxedCase> = vec![
        (
            Box::new(|ring| ring.personalities = vec![personality(0)]),
            "personality id 0 is outside 1..=65535",
        ),
        (
            Box::new(|ring| ring.personalities = vec![personality(70000)]),
            "personality id 70000 is outside 1..=65535",
        ),
        (
            Box::new(|ring| ring.personalities = vec![personality(2), personality(2)]),
            "personality id 2 is repeated or out of order",
        ),
        (
            Box::new(|ring| ring.personality_next = 65537),
            "personality_next 65537 is beyond 65536",
        ),
        (
            Box::new(|ring| {
                ring.personalities = vec![personality(1)];
                ring.personalities[0].groups = Some(vec![1; 33]);
            }),
            "personality 1 lists 33 groups, more than 32",
        ),
        (
            Box::new(|ring| {
                ring.restrictions = Some(Restrictions {
                    register_ops: vec![3, 3],
                    sqe_ops: vec![],
                    sqe_flags_allowed: 0,
                    sqe_flags_required: 0,
                })
            }),
            "restrictions: register opcodes are repeated or out of order",
        ),
        (
            Box::new(|ring| {
                ring.restrictions = Some(Restrictions {
                    register_ops: vec![],
                    sqe_ops: vec![64],
                    sqe_flags_allowed: 0,
                    sqe_flags_required: 0,
                })
            }),
            "restrictions: SQE opcode 64 is beyond the kernel's 64 bits",
        ),
        (
            Box::new(|ring| {
                ring.restrictions = Some(Restrictions {
                    register_ops: vec![],
                    sqe_ops: vec![],
                    sqe_flags_allowed: 0x80,
                    sqe_flags_required: 0,
                })
            }),
            "restrictions: SQE flags 0x80 are not IOSQE_* flags",
        ),
        (
            Box::new(|ring| {
                ring.unknown.push(RingField::Personalities);
                ring.personality_next = 2;
            }),
            "personalities are listed as unknown but have values",
        ),
    ];
    for (change, expected) in cases {
        let mut image = seed_like();
        change(ring_mut(&mut image, 1));
        let bytes = encode_to_vec(&image).unwrap();
        assert_eq!(
            decode_slice(&bytes).unwrap_err().to_string(),
            format!("invalid image: ring #1: {expected}")
        );
    }
    // A version 2 image cannot carry them.
    let mut image = seed_like();
    image.version = 2;
    ring_mut(&mut image, 1).personalities = vec![personality(1)];
    let bytes = encode_to_vec(&image).unwrap();
    assert_eq!(
        decode_slice(&bytes).unwrap_err().to_string(),
        "invalid image: ring #1: has personalities or restrictions, which version 2 images do not have"
    );
}

#[test]
fn a_version_2_image_reads_without_personalities_and_keeps_its_bytes() {
    let mut image = seed_like();
    image.version = 2;
    let bytes = encode_to_vec(&image).unwrap();
    let decoded = decode_slice(&bytes).unwrap();
    assert_eq!(decoded.version, 2);
    let ring = ring_mut(&mut image, 1);
    assert!(ring.personalities.is_empty() && ring.restrictions.is_none());
    assert_eq!(encode_to_vec(&decoded).unwrap(), bytes);
}

/// A tree image (version 4) round trips, and its JSON view gives each
/// object its holders; an image of one process leaves `processes` out.
#[test]
fn a_tree_round_trips_and_its_view_names_the_holders() {
    let mut image = seed_like();
    let plain = encode_to_vec(&image).unwrap();
    let root = image.source.pid;
    let holds: Vec<ringplan_image::Held> = image
        .objects
        .iter()
        .filter_map(|object| {
            let mappings = match &object.kind {
                ringplan_image::ObjectKind::Ring(ring) => ring.mappings.clone(),
                _ => Vec::new(),
            };
            (!object.fds.is_empty() || !mappings.is_empty()).then(|| ringplan_image::Held {
                object: object.id,
                fds: object.fds.clone(),
                mappings,
                owner: false,
                registered_ring_fds: Vec::new(),
            })
        })
        .collect();
    let child_holds = vec![holds[0].clone()];
    image.processes = vec![
        ringplan_image::TreeProcess {
            pid: root,
            parent: None,
            holds,
        },
        ringplan_image::TreeProcess {
            pid: root + 1,
            parent: Some(root),
            holds: child_holds,
        },
    ];
    let decoded = decode_slice(&encode_to_vec(&image).unwrap()).unwrap();
    assert_eq!(decoded, image);
    let view = ringplan_image::view::to_json(&decoded);
    assert_eq!(view["processes"][1]["parent"], root);
    let holders = view["objects"][0]["holders"].as_array().unwrap();
    assert_eq!(holders.len(), 2);
    assert_eq!(holders[1]["pid"], root + 1);
    assert_eq!(holders[1]["fds"], view["objects"][0]["fds"]);
    let text = ringplan_image::view::to_text(&decoded);
    assert!(
        text.contains(&format!("{} (child of {root})", root + 1)),
        "{text}"
    );
    assert!(!String::from_utf8_lossy(&plain).contains("processes"));
    assert!(ringplan_image::view::to_json(&seed_like())
        .get("processes")
        .is_none());
}
