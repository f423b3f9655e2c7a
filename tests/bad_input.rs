//! Every row of `docs/bad-input.md`: a bad document built from
//! `plans/seed.img` (decoded, mutated, encoded) or written as bytes, given to
//! `plan show`, `plan compile` and `plan exec` (dry run and real). Each must
//! exit 2 with exactly one stderr line naming the problem and print nothing
//! on stdout; `plan exec` runs under strace, which must show no syscall that
//! changes state (see `assert_no_state_change`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use ringplan_image::{
    Buffer, Cqe, FileType, Image, ObjectId, ObjectKind, QueuedSqe, RegisteredRingFd, Ring,
    RingState, SqeBytes, StateField,
};
use ringplan_kernel::abi::reopen::O_LARGEFILE;

use crate::support::{scratch_dir, PLAN};

/// The seed image with its files moved from fds 0-2 to 20-22, so that
/// `plan exec` has no reason to move its own standard streams (which would
/// be a `dup3` back at exit) and every state change strace sees is the
/// restore's.
pub(crate) fn base() -> Image {
    let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/plans/seed.img"))
        .expect("reading plans/seed.img");
    let mut image = ringplan_image::decode_slice(&bytes).expect("plans/seed.img decodes");
    for object in &mut image.objects {
        for entry in &mut object.fds {
            if entry.fd <= 2 {
                entry.fd += 20;
            }
        }
    }
    image
}

fn ring_mut(image: &mut Image, id: u32) -> &mut Ring {
    let object = image
        .objects
        .iter_mut()
        .find(|object| object.id == ObjectId(id))
        .expect("object in the seed");
    match &mut object.kind {
        ObjectKind::Ring(ring) => ring,
        _ => panic!("#{id} is not a ring"),
    }
}

pub(crate) fn encode(image: &Image) -> Vec<u8> {
    ringplan_image::encode_to_vec(image).expect("encoding a mutated image")
}

/// Static NAPI tracking that lists ids.
fn static_napi() -> ringplan_image::Napi {
    ringplan_image::Napi {
        busy_poll_us: 10,
        prefer_busy_poll: false,
        tracking: ringplan_image::NapiTracking::Static,
        ids_listed: true,
    }
}

fn mutated(change: impl FnOnce(&mut Image)) -> Vec<u8> {
    let mut image = base();
    change(&mut image);
    encode(&image)
}

/// One row of docs/bad-input.md: its name, the document, the words the one
/// error line must contain.
struct Row {
    name: &'static str,
    bytes: Vec<u8>,
    expected: &'static str,
    /// Refused by the planner, not by image validation: the image is one a
    /// kernel could hold, so `show --objects` (a viewer) prints it.
    planner: bool,
}

/// The rows that every command refuses while reading the document.
fn document_rows() -> Vec<Row> {
    let seed = encode(&base());
    let mut random = vec![0u8; 4096];
    // A fixed xorshift: "random" bytes, the same on every run.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for byte in &mut random {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *byte = state as u8;
    }
    // {"hello": "world"} and [1, 2], in CBOR.
    let other_cbor = b"\xa1\x65hello\x65world".to_vec();
    let cbor_array = b"\x82\x01\x02".to_vec();
    let high = ringplan_image::USER_ADDRESS_LIMIT;
    vec![
        Row {
            name: "empty",
            bytes: Vec::new(),
            expected: "input is empty",
            planner: false,
        },
        Row {
            name: "truncated",
            bytes: seed[..seed.len() / 2].to_vec(),
            expected: "malformed image",
            planner: false,
        },
        Row {
            name: "truncated-1-byte",
            bytes: seed[..seed.len() - 1].to_vec(),
            expected: "malformed image",
            planner: false,
        },
        Row {
            name: "random-bytes",
            bytes: random,
            expected: "not a ringplan image",
            planner: false,
        },
        Row {
            name: "other-cbor-map",
            bytes: other_cbor,
            expected: "not a ringplan image",
            planner: false,
        },
        Row {
            name: "other-cbor-array",
            bytes: cbor_array,
            expected: "not a ringplan image",
            planner: false,
        },
        Row {
            name: "other-format",
            bytes: mutated(|image| image.format = "some-other-tool".to_owned()),
            expected: "format is \"some-other-tool\", expected \"ringplan-image\"",
            planner: false,
        },
        Row {
            name: "other-version",
            bytes: mutated(|image| image.version = 6),
            expected: "unsupported image version 6",
            planner: false,
        },
        Row {
            name: "dangling-id",
            bytes: mutated(|image| {
                ring_mut(image, 2)
                    .eventfd
                    .as_mut()
                    .expect("the seed's ring #2 has an eventfd")
                    .object = ObjectId(99)
            }),
            expected: "ring #2: eventfd refers to #99, which does not exist",
            planner: false,
        },
        Row {
            name: "dangling-file-slot",
            bytes: mutated(|image| ring_mut(image, 2).files[0] = Some(ObjectId(77))),
            expected: "ring #2: file slot 0 refers to #77, which does not exist",
            planner: false,
        },
        Row {
            name: "duplicate-id",
            bytes: mutated(|image| image.objects[3].id = ObjectId(3)),
            expected: "duplicate object id #3",
            planner: false,
        },
        Row {
            name: "cycle",
            bytes: mutated(|image| {
                let ring = ring_mut(image, 1);
                ring.wq_parent = Some(ObjectId(2));
                *ring
                    .setup
                    .flags
                    .as_mut()
                    .expect("the BPF dump records flags") |=
                    ringplan_image::SetupFlags::ATTACH_WQ.bits();
            }),
            expected: "wq_parent chain loops back to it",
            planner: false,
        },
        Row {
            name: "sq-entries-0",
            bytes: mutated(|image| ring_mut(image, 1).setup.sq_entries = 0),
            expected: "ring #1: sq_entries 0 is outside 1..=32768",
            planner: false,
        },
        Row {
            name: "sq-entries-65536",
            bytes: mutated(|image| {
                let setup = &mut ring_mut(image, 1).setup;
                setup.sq_entries = 65536;
                setup.cq_entries = 131072;
            }),
            expected: "ring #1: sq_entries 65536 is outside 1..=32768",
            planner: false,
        },
        Row {
            name: "cq-smaller-than-sq",
            bytes: mutated(|image| ring_mut(image, 1).setup.cq_entries = 1),
            expected: "ring #1: cq_entries 1 is outside 2..=65536",
            planner: false,
        },
        Row {
            name: "negative-fd",
            bytes: mutated(|image| image.objects[2].fds[0].fd = -1),
            expected: "object #3: fd -1 is negative",
            planner: false,
        },
        Row {
            name: "fd-collision",
            bytes: mutated(|image| image.objects[2].fds[0].fd = 5),
            expected: "objects #1 and #3 both claim fd 5",
            planner: false,
        },
        Row {
            name: "fd-above-kernel-limit",
            bytes: mutated(|image| image.objects[2].fds[0].fd = i32::MAX),
            expected: "object #3: fd 2147483647 is beyond the largest fd number the kernel allows",
            planner: true,
        },
        Row {
            name: "buffer-kernel-address",
            bytes: mutated(|image| {
                ring_mut(image, 2).buffers[1] = Some(Buffer {
                    addr: 0xffff_8880_0000_0000,
                    len: 4096,
                })
            }),
            expected: "ring #2: buffer slot 1: 0xffff888000000000+4096 is not a user address range",
            planner: false,
        },
        Row {
            name: "buffer-crosses-user-limit",
            bytes: mutated(|image| {
                ring_mut(image, 2).buffers[1] = Some(Buffer {
                    addr: high - 4096,
                    len: 8192,
                })
            }),
            expected: "is not a user address range",
            planner: false,
        },
        Row {
            name: "buffer-address-0",
            bytes: mutated(|image| {
                ring_mut(image, 2).buffers[1] = Some(Buffer { addr: 0, len: 4096 })
            }),
            expected: "ring #2: buffer slot 1: address is 0",
            planner: false,
        },
        Row {
            name: "buffer-length-0",
            bytes: mutated(|image| {
                ring_mut(image, 2).buffers[1] = Some(Buffer {
                    addr: 0x1000_0000,
                    len: 0,
                })
            }),
            expected: "ring #2: buffer slot 1: length is 0",
            planner: false,
        },
        Row {
            name: "buffer-length-over-1-gib",
            bytes: mutated(|image| {
                ring_mut(image, 2).buffers[1] = Some(Buffer {
                    addr: 0x1000_0000,
                    len: (1 << 30) + 1,
                })
            }),
            expected: "ring #2: buffer slot 1: length 1073741825 exceeds the kernel's 1 GiB",
            planner: false,
        },
        Row {
            name: "unknown-setup-flag",
            bytes: mutated(|image| {
                *ring_mut(image, 1)
                    .setup
                    .flags
                    .as_mut()
                    .expect("the BPF dump records flags") |= 1 << 30
            }),
            expected: "ring #1: ",
            planner: true,
        },
        Row {
            name: "personality-id-0",
            bytes: mutated(|image| ring_v3(image).personalities = vec![personality(0)]),
            expected: "ring #1: personality id 0 is outside 1..=65535",
            planner: false,
        },
        Row {
            name: "personality-id-repeated",
            bytes: mutated(|image| {
                ring_v3(image).personalities = vec![personality(3), personality(3)];
                ring_v3(image).personality_next = 4;
            }),
            expected: "ring #1: personality id 3 is repeated or out of order",
            planner: false,
        },
        Row {
            name: "personality-next-beyond",
            bytes: mutated(|image| ring_v3(image).personality_next = 65537),
            expected: "ring #1: personality_next 65537 is beyond 65536",
            planner: false,
        },
        Row {
            name: "pbuf-entries-not-power-of-two",
            bytes: mutated(|image| ring_v3(image).pbuf_rings = vec![pbuf_ring(0, 12)]),
            expected: "ring #1: buffer ring 0: 12 entries is not a power of two up to 32768",
            planner: false,
        },
        Row {
            name: "pbuf-bgid-repeated",
            bytes: mutated(|image| ring_v3(image).pbuf_rings = vec![pbuf_ring(7, 8), pbuf_ring(7, 8)]),
            expected: "ring #1: pbuf_rings: bgids repeated or out of order",
            planner: false,
        },
        Row {
            name: "pbuf-addr-unaligned",
            bytes: mutated(|image| {
                let mut entry = pbuf_ring(0, 8);
                entry.addr = Some(0x7000_0000_0010);
                ring_v3(image).pbuf_rings = vec![entry];
            }),
            expected: "ring #1: buffer ring 0: address 0x700000000010 is not page-aligned",
            planner: false,
        },
        Row {
            name: "pbuf-contents-user-memory",
            bytes: mutated(|image| {
                let mut entry = pbuf_ring(0, 8);
                entry.contents = Some(ringplan_image::KernelMemoryBytes(vec![0; 128]));
                ring_v5(image).pbuf_rings = vec![entry];
            }),
            expected: "ring #1: buffer ring 0 has contents but is not kernel memory the program mapped (contents need mmap and an addr)",
            planner: false,
        },
        Row {
            name: "pbuf-contents-length",
            bytes: mutated(|image| ring_v5(image).pbuf_rings = vec![kernel_pbuf_ring(Some(100))]),
            expected: "ring #1: buffer ring 0: 100 bytes of contents for 8 entries (want 128)",
            planner: false,
        },
        Row {
            name: "pbuf-contents-in-version-4",
            bytes: mutated(|image| {
                ring_v5(image).pbuf_rings = vec![kernel_pbuf_ring(Some(128))];
                image.version = 4;
            }),
            expected: "ring #1: buffer ring 0 has contents, which version 4 images do not have",
            planner: false,
        },
        Row {
            name: "file-alloc-range-outside",
            bytes: mutated(|image| {
                ring_v3(image).settings.file_alloc_range =
                    Some(ringplan_image::FileAllocRange { start: 0, len: 1 })
            }),
            expected: "ring #1: file_alloc_range 0..1 is outside the file table of 0 slots",
            planner: false,
        },
        Row {
            name: "iowq-max-workers-none",
            bytes: mutated(|image| {
                ring_v3(image).settings.iowq_max_workers = Some(ringplan_image::IowqMaxWorkers {
                    bounded: 0,
                    unbounded: 0,
                })
            }),
            expected: "ring #1: iowq_max_workers sets neither class",
            planner: false,
        },
        Row {
            name: "napi-ids-in-version-4",
            bytes: mutated(|image| {
                let settings = &mut ring_v3(image).settings;
                settings.napi = Some(static_napi());
                settings.napi_static_ids = Some(vec![100_000]);
                image.version = 4;
            }),
            expected: "ring #1: has napi_static_ids, which version 4 images do not have",
            planner: false,
        },
        Row {
            name: "napi-ids-without-static-tracking",
            bytes: mutated(|image| {
                ring_v5(image).settings.napi_static_ids = Some(vec![100_000])
            }),
            expected: "ring #1: napi_static_ids without static NAPI tracking that lists them",
            planner: false,
        },
        Row {
            name: "napi-ids-repeated",
            bytes: mutated(|image| {
                let settings = &mut ring_v5(image).settings;
                settings.napi = Some(static_napi());
                settings.napi_static_ids = Some(vec![100_000, 100_000]);
            }),
            expected: "ring #1: napi_static_ids lists NAPI id 100000 twice",
            planner: false,
        },
        Row {
            name: "iowq-affinity-in-version-4",
            bytes: mutated(|image| {
                let ring = ring_v3(image);
                ring.settings.iowq_affinity = Some(iowq_affinity(vec![0]));
                image.version = 4;
            }),
            expected: "ring #1: has iowq_affinity, which version 4 images do not have",
            planner: false,
        },
        Row {
            name: "wait-region-memory-in-version-4",
            bytes: mutated(|image| {
                let settings = &mut ring_v3(image).settings;
                settings.wait_region_len = Some(4096);
                settings.wait_region_addr = Some(0x7f00_0000_0000);
                image.version = 4;
            }),
            expected: "ring #1: has the wait region's memory, which version 4 images do not have",
            planner: false,
        },
        Row {
            name: "wait-region-memory-without-length",
            bytes: mutated(|image| {
                ring_v5(image).settings.wait_region_addr = Some(0x7f00_0000_0000)
            }),
            expected: "ring #1: has the memory of a wait region but no wait_region_len",
            planner: false,
        },
        Row {
            name: "wait-region-contents-wrong-length",
            bytes: mutated(|image| {
                let settings = &mut ring_v5(image).settings;
                settings.wait_region_len = Some(4096);
                settings.wait_region_addr = Some(0x7f00_0000_0000);
                settings.wait_region_kernel_memory = true;
                settings.wait_region_contents = Some(ringplan_image::KernelMemoryBytes(vec![0; 10]));
            }),
            expected: "ring #1: wait region contents of 10 bytes, not its 4096",
            planner: false,
        },
        Row {
            name: "wait-region-not-whole-pages",
            bytes: mutated(|image| {
                let settings = &mut ring_v5(image).settings;
                settings.wait_region_len = Some(100);
                settings.wait_region_addr = Some(0x7f00_0000_0000);
            }),
            expected: "ring #1: wait region of 100 bytes at 0x7f0000000000 is not whole pages, which the kernel requires",
            planner: false,
        },
        Row {
            name: "wait-region-beyond-user-space",
            bytes: mutated(|image| {
                let settings = &mut ring_v5(image).settings;
                settings.wait_region_len = Some(8192);
                settings.wait_region_addr = Some(0x7fff_ffff_f000);
            }),
            expected: "ring #1: wait region at 0x7ffffffff000 leaves user space",
            planner: false,
        },
        Row {
            name: "iowq-affinity-no-cpu",
            bytes: mutated(|image| {
                ring_v5(image).settings.iowq_affinity = Some(iowq_affinity(vec![]))
            }),
            expected: "ring #1: iowq_affinity lists no CPU",
            planner: false,
        },
        Row {
            name: "iowq-affinity-unordered",
            bytes: mutated(|image| {
                ring_v5(image).settings.iowq_affinity = Some(iowq_affinity(vec![1, 0]))
            }),
            expected: "ring #1: iowq_affinity CPUs repeated or out of order",
            planner: false,
        },
        Row {
            name: "iowq-affinity-cpu-beyond",
            bytes: mutated(|image| {
                ring_v5(image).settings.iowq_affinity = Some(iowq_affinity(vec![8192]))
            }),
            expected: "ring #1: iowq_affinity names a CPU above 8191",
            planner: false,
        },
        Row {
            name: "file-tag-on-empty-slot",
            bytes: mutated(|image| {
                ring_v3(image).settings.file_tags =
                    vec![ringplan_image::SlotTag { slot: 0, tag: 7 }]
            }),
            expected: "ring #1: file_tags: slot 0 is empty or outside the table",
            planner: false,
        },
        Row {
            name: "pbuf-in-version-2",
            bytes: mutated(|image| {
                ring_mut(image, 1).pbuf_rings = vec![pbuf_ring(0, 8)];
                image.version = 2;
            }),
            expected: "ring #1: has buffer groups, which version 2 images do not have",
            planner: false,
        },
        Row {
            name: "ring-fd-offset-beyond",
            bytes: mutated(|image| {
                ring_v3(image).registered_ring_fds = vec![ringplan_image::RegisteredRingFd {
                    tid: 100,
                    offset: 16,
                }]
            }),
            expected: "ring #1: registered ring fd of thread 100 at offset 16: the kernel has 16 slots",
            planner: false,
        },
        Row {
            name: "ring-fd-slot-repeated",
            bytes: mutated(|image| {
                let slot = ringplan_image::RegisteredRingFd {
                    tid: 100,
                    offset: 2,
                };
                ring_v3(image).registered_ring_fds = vec![slot];
                ring_mut(image, 2).registered_ring_fds = vec![slot];
            }),
            expected: "ring #2: registered ring fd of thread 100 at offset 2 is also ring #1's",
            planner: false,
        },
        Row {
            name: "ring-fds-in-version-2",
            bytes: mutated(|image| {
                ring_mut(image, 1).registered_ring_fds = vec![ringplan_image::RegisteredRingFd {
                    tid: 100,
                    offset: 0,
                }];
                image.version = 2;
            }),
            expected: "ring #1: has registered ring fds, which version 2 images do not have",
            planner: false,
        },
        Row {
            name: "personalities-in-version-2",
            bytes: mutated(|image| {
                ring_mut(image, 1).personalities = vec![personality(1)];
                ring_mut(image, 1).personality_next = 2;
                image.version = 2;
            }),
            expected: "ring #1: has personalities or restrictions, which version 2 images do not have",
            planner: false,
        },
        Row {
            name: "restriction-opcode-beyond",
            bytes: mutated(|image| {
                ring_v3(image).restrictions = Some(ringplan_image::Restrictions {
                    register_ops: vec![],
                    sqe_ops: vec![64],
                    sqe_flags_allowed: 0,
                    sqe_flags_required: 0,
                })
            }),
            expected: "ring #1: restrictions: SQE opcode 64 is beyond the kernel's 64 bits",
            planner: false,
        },
        Row {
            name: "legacy-buffer-group",
            bytes: mutated(|image| {
                ring_v3(image).legacy_buffer_groups =
                    vec![ringplan_image::LegacyBufferGroup::not_captured(5)]
            }),
            expected: "ring #1: its provided buffers cannot be restored: legacy group 5 (IORING_OP_PROVIDE_BUFFERS) keeps its buffers in the kernel, which the image does not capture",
            planner: true,
        },
        Row {
            name: "legacy-buffers-without-state",
            bytes: mutated(|image| {
                let ring = ring_v5(image);
                ring.state = None;
                ring.legacy_buffer_groups = vec![legacy_group(5, &[(0x10000, 64, 3, 2)])]
            }),
            expected: "ring #1: its provided buffers cannot be restored: legacy group 5: its 2 buffers are provided again by IORING_OP_PROVIDE_BUFFERS SQEs, which needs the ring restored with its positions (the image has no state of it, or the program had none of its memory mapped)",
            planner: true,
        },
        Row {
            name: "legacy-bid-repeated",
            bytes: mutated(|image| {
                ring_v5(image).legacy_buffer_groups = vec![legacy_group(
                    5,
                    &[(0x10000, 64, 3, 2), (0x20000, 64, 4, 1)],
                )]
            }),
            expected: "ring #1: legacy group 5: bid 4 is provided twice",
            planner: false,
        },
        Row {
            name: "legacy-bids-past-65535",
            bytes: mutated(|image| {
                ring_v5(image).legacy_buffer_groups =
                    vec![legacy_group(5, &[(0x10000, 64, 65535, 2)])]
            }),
            expected: "ring #1: legacy group 5: 2 buffers from bid 65535 run past bid 65535",
            planner: false,
        },
        Row {
            name: "legacy-buffers-wrap",
            bytes: mutated(|image| {
                ring_v5(image).legacy_buffer_groups =
                    vec![legacy_group(5, &[(u64::MAX - 64, 64, 0, 2)])]
            }),
            expected: "ring #1: legacy group 5: buffers from bid 0 at 0xffffffffffffffbf leave user space",
            planner: false,
        },
        Row {
            name: "legacy-run-empty",
            bytes: mutated(|image| {
                ring_v5(image).legacy_buffer_groups = vec![legacy_group(5, &[(0x10000, 64, 0, 0)])]
            }),
            expected: "ring #1: legacy group 5: the run at bid 0 has no buffers",
            planner: false,
        },
        Row {
            name: "legacy-buffers-in-version-4",
            bytes: mutated(|image| {
                ring_v5(image).legacy_buffer_groups = vec![legacy_group(5, &[(0x10000, 64, 0, 1)])];
                image.version = 4;
            }),
            expected: "ring #1: legacy group 5 has buffers, which version 4 images do not have",
            planner: false,
        },
        Row {
            name: "pbuf-head-beyond-sq-head",
            bytes: mutated(|image| {
                let mut entry = pbuf_ring(0, 8);
                entry.head = 3;
                ring_v3(image).pbuf_rings = vec![entry];
            }),
            expected: "ring #1: cannot be restored where the program left it: its buffer rings' heads add up to 3 consumed buffers, more than the 0 SQEs its SQ head counts",
            planner: true,
        },
        Row {
            name: "pbuf-head-moved-without-state",
            bytes: mutated(|image| {
                let mut entry = pbuf_ring(0, 8);
                entry.head = 3;
                let ring = ring_v3(image);
                ring.pbuf_rings = vec![entry];
                ring.state = None;
            }),
            expected: "ring #1: its provided buffers cannot be restored: buffer ring 0: the kernel's head is 3, and a new buffer ring starts at 0: only consuming buffers moves it, which needs the ring restored with its positions (the image has no state of it, or the program had none of its memory mapped)",
            planner: true,
        },
        Row {
            name: "pbuf-mmap-not-captured",
            bytes: mutated(|image| ring_v5(image).pbuf_rings = vec![kernel_pbuf_ring(None)]),
            expected: "ring #1: its provided buffers cannot be restored: buffer ring 0 is in kernel memory (IOU_PBUF_RING_MMAP) whose entries and tail the image does not hold (the dump said why)",
            planner: true,
        },
        Row {
            name: "pbuf-mmap-not-mapped",
            bytes: mutated(|image| {
                let mut entry = kernel_pbuf_ring(None);
                entry.addr = None;
                ring_v5(image).pbuf_rings = vec![entry];
            }),
            expected: "ring #1: its provided buffers cannot be restored: buffer ring 0 is in kernel memory (IOU_PBUF_RING_MMAP) the program has not mapped: its entries and tail are only in the kernel, which the dump does not read",
            planner: true,
        },
        Row {
            name: "wait-region-without-memory",
            bytes: mutated(|image| ring_v3(image).settings.wait_region_len = Some(4096)),
            expected: "ring #1: its registered wait region cannot be restored: a wait region of 4096 bytes (IORING_REGISTER_MEM_REGION with IORING_MEM_REGION_REG_WAIT_ARG) is in memory of the program the image does not place (an image before version 5, or memory the dump did not find)",
            planner: true,
        },
        Row {
            name: "wait-region-in-kernel-memory",
            bytes: mutated(|image| {
                let settings = &mut ring_v5(image).settings;
                settings.wait_region_len = Some(4096);
                settings.wait_region_addr = Some(0x7f00_0000_0000);
                settings.wait_region_kernel_memory = true;
            }),
            expected: "ring #1: its registered wait region cannot be restored: a wait region of 4096 bytes (IORING_REGISTER_MEM_REGION with IORING_MEM_REGION_REG_WAIT_ARG) is in kernel memory whose bytes the image does not have (the program had it unmapped, or the dump could not read it), which a new ring's region would place where the kernel chooses, not where the program had it",
            planner: true,
        },
        Row {
            name: "pbuf-rings-unknown",
            bytes: mutated(|image| ring_v3(image).unknown.push(ringplan_image::RingField::PbufRings)),
            expected: "ring #1: pbuf_rings unknown",
            planner: true,
        },
        Row {
            name: "ring-fds-unknown",
            bytes: mutated(|image| {
                ring_v3(image)
                    .unknown
                    .push(ringplan_image::RingField::RegisteredRingFds)
            }),
            expected: "ring #1: registered_ring_fds unknown",
            planner: true,
        },
        Row {
            name: "personality-ids-wrapped",
            bytes: mutated(|image| {
                ring_v3(image).personalities = vec![personality(2), personality(65535)];
                ring_v3(image).personality_next = 3;
            }),
            expected: "ring #1: its personalities cannot be restored: next id 3 is not above id 65535",
            planner: true,
        },
        Row {
            name: "personalities-unknown",
            bytes: mutated(|image| ring_v3(image).unknown.push(ringplan_image::RingField::Personalities)),
            expected: "ring #1: personalities unknown",
            planner: true,
        },
        Row {
            name: "tree-in-version-3",
            bytes: mutated(|image| {
                with_tree(image);
                image.version = 3;
            }),
            expected: "process 1000 of the tree: a process tree is listed, which version 3 images do not have",
            planner: false,
        },
        Row {
            name: "tree-pid-repeated",
            bytes: mutated(|image| {
                with_tree(image);
                image.processes[1].pid = 1000;
            }),
            expected: "process 1000 of the tree: is listed twice in the tree",
            planner: false,
        },
        Row {
            name: "tree-parent-not-listed",
            bytes: mutated(|image| {
                with_tree(image);
                image.processes[1].parent = Some(77);
            }),
            expected: "process 1001 of the tree: its parent 77 is not listed before it in the tree",
            planner: false,
        },
        Row {
            name: "tree-fd-claimed-twice",
            bytes: mutated(|image| {
                with_tree(image);
                let fds = image.processes[1].holds[0].fds.clone();
                image.processes[1].holds.push(ringplan_image::Held {
                    object: ObjectId(2),
                    fds,
                    mappings: Vec::new(),
                    owner: false,
                    registered_ring_fds: Vec::new(),
                });
            }),
            expected: "process 1001 of the tree: objects #1 and #2 both claim fd 5",
            planner: false,
        },
        Row {
            name: "tree-held-without-fd",
            bytes: mutated(|image| {
                with_tree(image);
                image.processes[1].holds[0].fds.clear();
                image.processes[1].holds[0].mappings.clear();
            }),
            expected:
                "process 1001 of the tree: holds object #1 with neither an fd, a mapping nor a registered slot",
            planner: false,
        },
        Row {
            name: "tree-slot-in-version-4",
            bytes: mutated(|image| {
                with_tree(image);
                image.version = 4;
                image.processes[1].holds[0].registered_ring_fds = vec![RegisteredRingFd {
                    tid: 1001,
                    offset: 0,
                }];
            }),
            expected: "process 1001 of the tree: ring #1: registered ring fds per process, which version 4 images do not have",
            planner: false,
        },
        Row {
            name: "tree-slot-offset-out-of-range",
            bytes: mutated(|image| {
                with_tree(image);
                image.processes[1].holds[0].fds.clear();
                image.processes[1].holds[0].mappings.clear();
                image.processes[1].holds[0].registered_ring_fds = vec![RegisteredRingFd {
                    tid: 1001,
                    offset: 20,
                }];
            }),
            expected: "process 1001 of the tree: ring #1: registered ring fd of thread 1001 at offset 20: tid 0, or not one of the kernel's 16 slots",
            planner: false,
        },
        Row {
            name: "tree-slot-held-twice",
            bytes: mutated(|image| {
                with_tree(image);
                let slot = RegisteredRingFd {
                    tid: 1001,
                    offset: 0,
                };
                image.processes[1].holds[0].registered_ring_fds = vec![slot];
                image.processes[1].holds.push(ringplan_image::Held {
                    object: ObjectId(2),
                    fds: Vec::new(),
                    mappings: Vec::new(),
                    owner: false,
                    registered_ring_fds: vec![slot],
                });
            }),
            expected: "process 1001 of the tree: ring #2: slot 0 of thread 1001 is also held by ring #1",
            planner: false,
        },
        Row {
            name: "tree-slot-thread-in-two-processes",
            bytes: mutated(|image| {
                with_tree(image);
                image.processes[0].holds[1].registered_ring_fds = vec![RegisteredRingFd {
                    tid: 1001,
                    offset: 1,
                }];
                image.processes[1].holds[0].registered_ring_fds = vec![RegisteredRingFd {
                    tid: 1001,
                    offset: 0,
                }];
            }),
            expected: "process 1001 of the tree: ring #1: thread 1001 is in process 1000 too",
            planner: false,
        },
        Row {
            name: "tree-dumped-process-fds-differ",
            bytes: mutated(|image| {
                with_tree(image);
                image.processes[0].holds[0].fds[0].fd += 100;
            }),
            expected: "process 1000 of the tree: the dumped process's fds, mappings or registered ring fds of object #1 differ from the object's own",
            planner: false,
        },
        Row {
            name: "tree-temporary-shared",
            bytes: mutated(|image| {
                with_tree(image);
                eventfd_only_in_the_child(image);
            }),
            expected: "tree image, process 1001: it needs eventfd #3, which process 1000 creates but holds at no fd to pass on",
            planner: true,
        },
        Row {
            name: "ring-mappings-overlap",
            bytes: mutated(|image| {
                let first = ring_mut(image, 1).mappings[0];
                ring_mut(image, 2).mappings[0].addr = first.addr;
            }),
            expected: "ring #2: mapping ",
            planner: true,
        },
        Row {
            name: "state-entries-unknown",
            bytes: mutated(|image| {
                let state = ring_mut(image, 1)
                    .state
                    .as_deref_mut()
                    .expect("the BPF dump records a state");
                state.sq_array = None;
                state.sqes = None;
                state.cqes = None;
                state.unknown = vec![StateField::Entries];
            }),
            expected: "ring #1: cannot be restored where the program left it: its queued SQEs and unconsumed CQEs are unknown",
            planner: true,
        },
        Row {
            name: "eventfd-count-max",
            bytes: mutated(|image| match &mut image.objects[2].kind {
                ObjectKind::Eventfd(eventfd) => eventfd.count = u64::MAX,
                _ => panic!("#3 is the seed's eventfd"),
            }),
            expected: "eventfd #3: count 0xffffffffffffffff is more than an eventfd holds",
            planner: true,
        },
        Row {
            name: "file-table-2^20+1",
            bytes: mutated(|image| ring_mut(image, 2).files.resize((1 << 20) + 1, None)),
            expected: "ring #2: 1048577 file slots exceed the kernel's 1048576",
            planner: false,
        },
        Row {
            name: "buffer-table-2^14+1",
            bytes: mutated(|image| ring_mut(image, 2).buffers.resize((1 << 14) + 1, None)),
            expected: "ring #2: 16385 buffer slots exceed the kernel's 16384",
            planner: false,
        },
        Row {
            name: "state-more-queued-than-entries",
            bytes: mutated(|image| state_mut(image, 1).positions.sq_tail = 3),
            expected: "ring #1: 3 SQEs queued (SQ tail 3 - head 0), more than sq_entries 2",
            planner: false,
        },
        Row {
            name: "state-sqes-not-tail-minus-head",
            bytes: mutated(|image| state_mut(image, 1).positions.sq_tail = 1),
            expected: "ring #1: 0 SQEs recorded, but SQ tail 1 - head 0 = 1",
            planner: false,
        },
        Row {
            name: "state-sqe-slot-out-of-range",
            bytes: mutated(|image| {
                let state = state_mut(image, 1);
                state.positions.sq_tail = 1;
                state.sqes = Some(vec![QueuedSqe {
                    position: 0,
                    slot: 2,
                    bytes: SqeBytes(vec![0; 64]),
                }]);
            }),
            expected: "ring #1: SQE at position 0: slot 2 is outside 0..2",
            planner: false,
        },
        Row {
            name: "state-cqe-extra-without-cqe32",
            bytes: mutated(|image| {
                let state = state_mut(image, 1);
                state.positions.cq_tail = 1;
                state.positions.cached_cq_tail = 1;
                state.cqes = Some(vec![Cqe {
                    user_data: 1,
                    res: 0,
                    flags: 0,
                    extra: Some([0, 0]),
                }]);
            }),
            expected: "ring #1: CQE 0 has extra words but IORING_SETUP_CQE32 is not set",
            planner: false,
        },
        Row {
            name: "state-owner-without-single-issuer",
            bytes: mutated(|image| state_mut(image, 1).owner_tid = Some(1)),
            expected: "ring #1: has an owner thread 1 but IORING_SETUP_SINGLE_ISSUER is not set",
            planner: false,
        },
    ]
}

fn state_mut(image: &mut Image, id: u32) -> &mut RingState {
    ring_mut(image, id)
        .state
        .as_deref_mut()
        .expect("plans/seed.img is a version 2 image with ring states")
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(format!("{name}.img"));
    std::fs::write(&path, bytes).expect("writing a bad document");
    path
}

fn assert_one_line(what: &str, output: &Output, expected: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(2),
        "{what} should exit 2; stderr: {stderr}"
    );
    assert_eq!(
        stderr.lines().count(),
        1,
        "{what} should print one line, printed: {stderr}"
    );
    assert!(stderr.starts_with("plan: error: "), "{what}: {stderr:?}");
    assert!(
        stderr.contains(expected),
        "{what}: {stderr:?} should mention {expected:?}"
    );
    assert!(
        output.stdout.is_empty(),
        "{what} printed to stdout on error: {}",
        String::from_utf8_lossy(&output.stdout)
    );
}

fn run(prefix: &[&str], args: &[&str]) -> Output {
    let mut command = Command::new(prefix.first().copied().unwrap_or(PLAN));
    if prefix.is_empty() {
        command.args(args);
    } else {
        command.args(&prefix[1..]).arg(PLAN).args(args);
    }
    command.stdin(Stdio::null()).output().expect("running plan")
}

/// The state-changing syscalls a restore makes, traced: `io_uring_setup`,
/// `io_uring_register`, `eventfd2`, `dup3` (installing an fd at its number),
/// and `mmap`/`munmap` (buffers and ring regions at recorded addresses).
const TRACED: &str =
    "trace=io_uring_setup,io_uring_register,eventfd2,dup2,dup3,mmap,munmap,close_range";

/// Runs `plan ARGS` under strace (after `prefix`, e.g. prlimit) and checks
/// the trace: no `io_uring_register`, `eventfd2`, `dup3`; no `mmap` at any
/// page of a buffer or ring region the image records; and `io_uring_setup`
/// only as preflight's throwaway probes (`entries` 1, which no image ring
/// of these rows has: the seed's rings have 2) when `probes_allowed`.
fn exec_traced(
    dir: &Path,
    name: &str,
    prefix: &[&str],
    args: &[&str],
    addresses: &[u64],
    probes_allowed: bool,
) -> Output {
    let trace = dir.join(format!("{name}.strace"));
    let mut full = vec![
        "strace",
        "-f",
        "-qq",
        "-e",
        TRACED,
        "-o",
        trace.to_str().expect("a temporary path is UTF-8"),
    ];
    full.extend_from_slice(prefix);
    let output = run(&full, args);
    let text = std::fs::read_to_string(&trace).expect("reading the strace output");
    for line in text.lines() {
        let call = line
            .split_once(' ')
            .map_or(line, |(_, rest)| rest.trim_start());
        let failed = line.contains(" = -1 ");
        let forbidden = ["io_uring_register(", "eventfd2(", "dup3(", "dup2("]
            .iter()
            .any(|name| call.starts_with(name))
            || (call.starts_with("io_uring_setup(")
                && !(probes_allowed && call.starts_with("io_uring_setup(1,")))
            || (call.starts_with("mmap(")
                && !failed
                && addresses
                    .iter()
                    .any(|addr| call.starts_with(&format!("mmap({:#x},", addr & !0xfff)))
                || call.starts_with("munmap(")
                    && addresses
                        .iter()
                        .any(|addr| call.starts_with(&format!("munmap({:#x},", addr & !0xfff))));
        assert!(
            !forbidden,
            "plan {args:?} ({name}) changed state before refusing: {line}\nfull trace:\n{text}"
        );
    }
    output
}

/// Every page address the base image records (buffers, ring regions).
fn recorded_addresses(image: &Image) -> Vec<u64> {
    let mut addresses = Vec::new();
    for object in &image.objects {
        if let ObjectKind::Ring(ring) = &object.kind {
            addresses.extend(ring.buffers.iter().flatten().map(|buffer| buffer.addr));
            addresses.extend(ring.mappings.iter().map(|mapping| mapping.addr));
        }
    }
    addresses
}

fn check_all_commands(dir: &Path, row: &Row, addresses: &[u64]) {
    let path = write(dir, row.name, &row.bytes);
    let path = path.to_str().expect("a temporary path is UTF-8");
    let what = |command: &str| format!("plan {command} on {}", row.name);
    assert_one_line(&what("show"), &run(&[], &["show", path]), row.expected);
    let objects = run(&[], &["show", path, "--objects"]);
    if row.planner {
        assert!(
            objects.status.success(),
            "{}: {}",
            what("show --objects"),
            String::from_utf8_lossy(&objects.stderr)
        );
    } else {
        assert_one_line(&what("show --objects"), &objects, row.expected);
    }
    assert_one_line(
        &what("compile"),
        &run(&[], &["compile", path, "-o", "/dev/null"]),
        row.expected,
    );
    let dry = exec_traced(
        dir,
        &format!("{}-dry", row.name),
        &[],
        &["exec", path, "--dry-run", "--substitute-external"],
        addresses,
        false,
    );
    assert_one_line(&what("exec --dry-run"), &dry, row.expected);
    let real = exec_traced(
        dir,
        row.name,
        &[],
        &["exec", path, "--substitute-external"],
        addresses,
        false,
    );
    assert_one_line(&what("exec"), &real, row.expected);
}

#[test]
fn every_bad_document_is_one_line_and_exit_2_everywhere() {
    let dir = scratch_dir("bad-input-documents");
    let mut addresses = recorded_addresses(&base());
    addresses.extend([0x1000_0000, ringplan_image::USER_ADDRESS_LIMIT - 4096]);
    // Every row runs, and the failures are reported together.
    let failures: Vec<String> = document_rows()
        .iter()
        .filter_map(|row| {
            std::panic::catch_unwind(|| check_all_commands(&dir, row, &addresses))
                .err()
                .map(|panic| {
                    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
                    format!("{}: {message}", row.name)
                })
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} row(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The trace check catches a restore: the base image, restored for real,
/// shows the syscalls that the refusals above must not.
#[test]
fn the_strace_check_sees_a_restore() {
    let dir = scratch_dir("bad-input-strace-check");
    let path = write(&dir, "base", &encode(&base()));
    let addresses = recorded_addresses(&base());
    let path = path.to_str().unwrap().to_owned();
    let mut args = vec!["exec", path.as_str(), "--substitute-external"];
    args.extend_from_slice(crate::support::moved_rings_where_needed());
    let result = std::panic::catch_unwind(|| {
        exec_traced(&dir, "base", &[], &args, &addresses, true);
    });
    assert!(
        result.is_err(),
        "a real restore passed the no-state-change check: the check sees nothing"
    );
}

/// A plan is not an image: `compile` refuses it; a plan with more fds than
/// RLIMIT_NOFILE allows is refused by `exec`'s preflight.
#[test]
fn a_plan_where_an_image_is_needed() {
    let dir = scratch_dir("bad-input-plan");
    let image = write(&dir, "base", &encode(&base()));
    let plan_path = dir.join("base.plan");
    crate::support::plan_ok(&[
        "compile",
        image.to_str().unwrap(),
        "-o",
        plan_path.to_str().unwrap(),
    ]);
    let plan_path = plan_path.to_str().unwrap();
    assert_one_line(
        "compile PLAN",
        &run(&[], &["compile", plan_path, "-o", "/dev/null"]),
        "is a plan; this needs an image",
    );
    assert_one_line(
        "show --objects PLAN",
        &run(&[], &["show", plan_path, "--objects"]),
        "is a plan; --objects needs an image",
    );
    let truncated = write(
        &dir,
        "truncated-plan",
        &std::fs::read(plan_path).unwrap()[..40],
    );
    assert_one_line(
        "show truncated plan",
        &run(&[], &["show", truncated.to_str().unwrap()]),
        "plan",
    );
}

/// Preflight refusals of `plan exec`: the document is well formed, but this
/// process or kernel cannot take it.
#[test]
fn preflight_refusals_change_nothing() {
    let dir = scratch_dir("bad-input-preflight");
    let mut addresses = recorded_addresses(&base());

    // More files than RLIMIT_NOFILE: fd 100 under a hard limit of 64.
    let bytes = mutated(|image| image.objects[3].fds[0].fd = 100);
    let path = write(&dir, "rlimit-nofile", &bytes);
    let path = path.to_str().expect("a temporary path is UTF-8");
    let prlimit = ["prlimit", "--nofile=64:64", "--"];
    for (name, args) in [
        (
            "rlimit-dry",
            vec!["exec", path, "--dry-run", "--substitute-external"],
        ),
        ("rlimit", vec!["exec", path, "--substitute-external"]),
    ] {
        let output = exec_traced(&dir, name, &prlimit, &args, &addresses, false);
        assert_one_line(name, &output, "RLIMIT_NOFILE");
    }

    // Registered buffers above RLIMIT_MEMLOCK, without CAP_IPC_LOCK (root
    // drops it from its bounding set; the kernel would charge the pinned
    // pages to the limit).
    let path = write(&dir, "memlock", &encode(&base()));
    let path = path.to_str().expect("a temporary path is UTF-8");
    let no_ipc_lock = [
        "setpriv",
        "--inh-caps=-ipc_lock",
        "--bounding-set=-ipc_lock",
        "prlimit",
        "--memlock=0:0",
        "--",
    ];
    for (name, args) in [
        (
            "memlock-dry",
            vec!["exec", path, "--dry-run", "--substitute-external"],
        ),
        ("memlock", vec!["exec", path, "--substitute-external"]),
    ] {
        let output = exec_traced(&dir, name, &no_ipc_lock, &args, &addresses, false);
        assert_one_line(name, &output, "RLIMIT_MEMLOCK");
    }

    // A buffer over memory this process already maps: with ASLR off
    // (`setarch -R`), the plan binary's first page is at 0x555555554000.
    let taken = 0x5555_5555_4000u64;
    let bytes = mutated(|image| {
        ring_mut(image, 2).buffers[1] = Some(Buffer {
            addr: taken,
            len: 4096,
        })
    });
    let path = write(&dir, "buffer-over-mapping", &bytes);
    let path = path.to_str().expect("a temporary path is UTF-8");
    addresses.push(taken);
    let setarch = ["setarch", "-R", "--"];
    let mut taken_dry = vec!["exec", path, "--dry-run", "--substitute-external"];
    let mut taken_run = vec!["exec", path, "--substitute-external"];
    taken_dry.extend_from_slice(crate::support::moved_rings_where_needed());
    taken_run.extend_from_slice(crate::support::moved_rings_where_needed());
    for (name, args) in [("taken-dry", taken_dry), ("taken", taken_run)] {
        let output = exec_traced(&dir, name, &setarch, &args, &addresses, true);
        assert_one_line(name, &output, "0x555555554000");
    }

    // Ring memory over memory this process already maps (ring #1's SQ
    // ring at the plan binary's first page, ASLR off). Where the kernel
    // cannot place ring memory at all (before 6.5), the refusal is that,
    // before any address is looked at.
    let bytes = mutated(|image| ring_mut(image, 1).mappings[0].addr = taken);
    let path = write(&dir, "ring-memory-over-mapping", &bytes);
    let path = path.to_str().expect("a temporary path is UTF-8");
    let expected = if crate::support::kernel_has_no_mmap() {
        "which is already mapped in this process (555555554000-"
    } else {
        "cannot place io_uring memory at the program's addresses: IORING_SETUP_NO_MMAP needs Linux 6.5"
    };
    for (name, args) in [
        (
            "ring-taken-dry",
            vec!["exec", path, "--dry-run", "--substitute-external"],
        ),
        ("ring-taken", vec!["exec", path, "--substitute-external"]),
    ] {
        let output = exec_traced(&dir, name, &setarch, &args, &addresses, true);
        assert_one_line(name, &output, expected);
    }

    // An external input not supplied and no --substitute-external.
    let path = write(&dir, "base", &encode(&base()));
    let output = exec_traced(
        &dir,
        "missing-input",
        &[],
        &["exec", path.to_str().unwrap()],
        &addresses,
        false,
    );
    assert_one_line("missing input", &output, "external input");
}

/// File #4 of the base image (the seed's `/dev/null` at fd 20) made a
/// regular file at `path`, opened read-only at position 0.
fn regular_file_at(image: &mut Image, path: &Path) {
    let object = image
        .objects
        .iter_mut()
        .find(|object| object.id == ObjectId(4))
        .expect("the seed has file #4");
    let ObjectKind::File(file) = &mut object.kind else {
        panic!("#4 is not a file")
    };
    file.path = Some(path.to_str().expect("a temporary path is UTF-8").to_owned());
    file.file_type = FileType::Regular;
    file.flags = Some(O_LARGEFILE);
    file.pos = Some(0);
}

/// Runs `plan ARGS` under `strace -e trace=open,openat` and checks that
/// nothing opened `path`: preflight looks at it with `stat` only.
fn assert_never_opened(dir: &Path, name: &str, args: &[&str], path: &str) {
    let trace = dir.join(format!("{name}.opens"));
    let full = [
        "strace",
        "-f",
        "-qq",
        "-e",
        "trace=open,openat",
        "-o",
        trace.to_str().expect("a temporary path is UTF-8"),
        "timeout",
        "10",
    ];
    let output = run(&full, args);
    assert_eq!(output.status.code(), Some(2), "{name}: {output:?}");
    let text = std::fs::read_to_string(&trace).expect("reading the strace output");
    assert!(
        !text.contains(&format!("{path:?}")),
        "{name}: plan opened {path}:\n{text}"
    );
}

/// A path where the image recorded a regular file that names another kind
/// of file now (a FIFO, a directory, a symlink to a character device) is
/// refused by preflight in one line, exit 2, with nothing done and without
/// opening it: an `open` of a FIFO blocks until a writer comes, so `plan
/// exec` once hung there until killed. Run under `timeout 10`, so that a
/// hang fails the test (exit 124) instead of hanging it.
#[test]
fn a_path_that_names_another_kind_of_file_now_is_refused() {
    let dir = scratch_dir("bad-input-path-kind");
    let addresses = recorded_addresses(&base());
    let fifo = dir.join("was-regular-now-fifo");
    let status = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("running mkfifo (coreutils)");
    assert!(status.success(), "mkfifo {}: {status}", fifo.display());
    let directory = dir.join("was-regular-now-directory");
    std::fs::create_dir(&directory).expect("creating a directory");
    let symlink = dir.join("was-regular-now-dev-null");
    std::os::unix::fs::symlink("/dev/null", &symlink).expect("symlink to /dev/null");
    for (name, path, found) in [
        ("fifo", &fifo, "a FIFO"),
        ("directory", &directory, "a directory"),
        ("symlink-to-dev-null", &symlink, "a character device"),
    ] {
        let path_text = path.to_str().expect("a temporary path is UTF-8");
        let expected =
            format!("#4 at {path_text:?}: the image says a regular file, but it is {found} now");
        let document = write(&dir, name, &mutated(|image| regular_file_at(image, path)));
        let document = document.to_str().expect("a temporary path is UTF-8");
        for dry in [true, false] {
            let mut args = vec!["exec", document, "--substitute-external"];
            if dry {
                args.push("--dry-run");
            }
            args.extend_from_slice(crate::support::moved_rings_where_needed());
            let what = format!("{name}{}", if dry { "-dry" } else { "" });
            let output = exec_traced(&dir, &what, &["timeout", "10"], &args, &addresses, false);
            assert_one_line(&what, &output, &expected);
            assert_never_opened(&dir, &what, &args, path_text);
        }
    }
    // A path that is gone: its open would fail, so preflight says so.
    let gone = dir.join("gone");
    let document = write(
        &dir,
        "gone",
        &mutated(|image| regular_file_at(image, &gone)),
    );
    let document = document.to_str().expect("a temporary path is UTF-8");
    let mut args = vec!["exec", document, "--substitute-external"];
    args.extend_from_slice(crate::support::moved_rings_where_needed());
    let output = exec_traced(&dir, "gone", &["timeout", "10"], &args, &addresses, false);
    assert_one_line(
        "gone",
        &output,
        &format!(
            "step 5 opens #4 at {:?}, which cannot be looked up: No such file or directory",
            gone.to_str().expect("a temporary path is UTF-8")
        ),
    );
}

/// Buffers that overlap each other (two slots of one ring, or across rings)
/// are not bad input: the kernel accepts such registrations and the
/// executor maps the union of the ranges once.
#[test]
fn overlapping_buffers_are_accepted() {
    let dir = scratch_dir("bad-input-overlap");
    let bytes = mutated(|image| {
        let ring = ring_mut(image, 2);
        ring.buffers[0] = Some(Buffer {
            addr: 0x2000_0000,
            len: 8192,
        });
        ring.buffers[1] = Some(Buffer {
            addr: 0x2000_1000,
            len: 8192,
        });
        ring_mut(image, 1).buffers = vec![Some(Buffer {
            addr: 0x2000_0800,
            len: 100,
        })];
    });
    let path = write(&dir, "overlap", &bytes);
    let mut args = vec![
        "exec",
        path.to_str().unwrap(),
        "--dry-run",
        "--substitute-external",
    ];
    args.extend_from_slice(crate::support::moved_rings_where_needed());
    let stdout = crate::support::plan_ok(&args);
    let stdout = String::from_utf8(stdout).unwrap();
    assert!(
        stdout
            .lines()
            .last()
            .is_some_and(|line| line.starts_with("preflight: ok")),
        "{stdout}"
    );
}

/// `plan` copied where `nobody` can run it (every directory on the way
/// 0755), with the path returned.
///
/// The copy is written by `install`, not by this process: a test thread
/// that forks while this process holds the copy open for writing hands
/// the child that fd until it execs, and an exec of the copy meanwhile
/// fails with ETXTBSY ("Text file busy"), as it once did in a full run.
fn plan_for_nobody(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ringplan-nobody-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("creating a temp dir");
    let copy = dir.join("plan");
    let status = Command::new("install")
        .args(["-m", "0755", PLAN])
        .arg(&copy)
        .status()
        .expect("running install (coreutils)");
    assert!(
        status.success(),
        "install {PLAN} {}: {status}",
        copy.display()
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
        .expect("chmod the copy's directory");
    copy
}

/// Runs `plan ARGS` as `nobody` with no capabilities.
fn as_nobody(plan: &Path, args: &[&str]) -> Output {
    Command::new("setpriv")
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "--inh-caps=-all",
            "--",
        ])
        .arg(plan)
        .args(args)
        .current_dir("/")
        .stdin(Stdio::null())
        .output()
        .expect("running setpriv (util-linux)")
}

/// Dumping a root process as an unprivileged user is refused, with every
/// backend, on one line that says ptrace rights are missing: exit status 1,
/// a failure of the system (permissions), as the README says, not bad input.
/// `show` and `exec --dry-run` need nothing but the file.
#[test]
fn an_unprivileged_user_cannot_dump_a_root_process() {
    assert!(
        rustix::process::getuid().is_root(),
        "this test starts a root process and drops to nobody: run as root"
    );
    let plan = plan_for_nobody("dump");
    let scenario = crate::support::Scenario::start("seed");
    let pid = scenario.pid().to_string();
    for backend in ["auto", "bpf", "fdinfo"] {
        let output = as_nobody(
            &plan,
            &[
                "dump",
                "--pid",
                &pid,
                "--backend",
                backend,
                "-o",
                "/dev/null",
            ],
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(1),
            "--backend {backend}: {stderr}"
        );
        assert_eq!(
            stderr.lines().count(),
            1,
            "--backend {backend} should print one line: {stderr}"
        );
        assert!(
            stderr.contains(&format!(
                "permission denied reading pid {pid}'s fds: dumping needs ptrace rights"
            )),
            "--backend {backend}: {stderr}"
        );
        assert!(output.stdout.is_empty());
    }

    // Reading an image (world-readable) needs no privilege.
    let dir = plan.parent().unwrap();
    let image = dir.join("seed.img");
    std::fs::write(&image, encode(&base())).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&image, std::fs::Permissions::from_mode(0o644)).unwrap();
    let image = image.to_str().unwrap();
    for args in [
        vec!["show", image, "--objects"],
        vec!["show", image],
        [
            &["exec", image, "--dry-run", "--substitute-external"][..],
            crate::support::moved_rings_where_needed(),
        ]
        .concat(),
    ] {
        let output = as_nobody(&plan, &args);
        assert!(
            output.status.success(),
            "plan {args:?} as nobody: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    drop(scenario);
    let _ = std::fs::remove_dir_all(dir);
}

/// Personalities are registered with the registering thread's credentials:
/// a restore by a thread with others (here `nobody` restoring root's) is
/// refused in preflight, one line naming the step, ring, id and what
/// differs (exit 2, nothing done), unless `--accept-restorer-creds`.
#[test]
fn personalities_of_other_credentials_are_refused_unless_accepted() {
    let plan = plan_for_nobody("personalities");
    let dir = plan.parent().expect("the copy's directory");
    let scenario = crate::support::Scenario::start("personalities:3");
    let image = dir.join("personalities.img");
    let image = image.to_str().expect("utf-8 path");
    crate::support::plan_ok(&["dump", "--pid", &scenario.pid().to_string(), "-o", image]);
    drop(scenario);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(image, std::fs::Permissions::from_mode(0o644)).unwrap();

    let refused = as_nobody(
        &plan,
        &[
            &["exec", image][..],
            crate::support::moved_rings_where_needed(),
        ]
        .concat(),
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("(ring #1): personality 1 has other credentials than the thread that would register it (uid 0 (now 65534)"),
        "{stderr}"
    );
    assert!(stderr.contains("--accept-restorer-creds"), "{stderr}");

    let accepted = as_nobody(
        &plan,
        &[
            &["exec", image, "--accept-restorer-creds"][..],
            crate::support::moved_rings_where_needed(),
        ]
        .concat(),
    );
    assert!(
        accepted.status.success(),
        "{}",
        String::from_utf8_lossy(&accepted.stderr)
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A personality of root's credentials with `id`, for the document rows.
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

/// Ring #1 of an image made version 3 (the seed image is version 2, which
/// cannot hold personalities or restrictions).
fn pbuf_ring(bgid: u16, entries: u32) -> ringplan_image::PbufRing {
    ringplan_image::PbufRing {
        bgid,
        entries,
        head: 0,
        addr: Some(0x7000_0000_0000),
        mmap: false,
        incremental: false,
        contents: None,
    }
}

/// A buffer ring of 8 entries in kernel memory the program mapped, with
/// `len` bytes of contents when `Some`.
fn kernel_pbuf_ring(contents: Option<usize>) -> ringplan_image::PbufRing {
    let mut entry = pbuf_ring(0, 8);
    entry.mmap = true;
    entry.contents = contents.map(|len| ringplan_image::KernelMemoryBytes(vec![0; len]));
    entry
}

/// Makes the seed a valid tree image (version 4) of its process (as pid
/// 1000) and a child 1001 that holds ring #1 at the same fds.
fn with_tree(image: &mut Image) {
    image.version = ringplan_image::FORMAT_VERSION;
    image.source.pid = 1000;
    let root_holds = image
        .objects
        .iter()
        .filter_map(|object| {
            let mappings = match &object.kind {
                ObjectKind::Ring(ring) => ring.mappings.clone(),
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
        .collect::<Vec<_>>();
    let child_holds = vec![root_holds[0].clone()];
    image.processes = vec![
        ringplan_image::TreeProcess {
            pid: 1000,
            parent: None,
            holds: root_holds,
        },
        ringplan_image::TreeProcess {
            pid: 1001,
            parent: Some(1000),
            holds: child_holds,
        },
    ];
}

/// The seed's eventfd (registered by a ring of the tree's first process)
/// held at an fd by the child only: the first process would create it as
/// a temporary, which no part can pass on.
fn eventfd_only_in_the_child(image: &mut Image) {
    let Some(eventfd) = image
        .objects
        .iter_mut()
        .find(|object| matches!(object.kind, ObjectKind::Eventfd(_)))
    else {
        panic!("the seed has an eventfd");
    };
    eventfd.fds.clear();
    let id = eventfd.id;
    image.processes[0].holds.retain(|held| held.object != id);
    let child = &mut image.processes[1].holds;
    child.push(ringplan_image::Held {
        object: id,
        fds: vec![ringplan_image::FdEntry {
            fd: 50,
            cloexec: false,
        }],
        mappings: Vec::new(),
        owner: false,
        registered_ring_fds: Vec::new(),
    });
    child.sort_by_key(|held| held.object);
}

fn ring_v3(image: &mut Image) -> &mut Ring {
    image.version = 3;
    ring_mut(image, 1)
}

/// Ring #1 of a version 5 image.
fn ring_v5(image: &mut Image) -> &mut Ring {
    image.version = 5;
    ring_mut(image, 1)
}

/// A captured legacy group of runs (addr, len, first bid, count).
fn legacy_group(bgid: u16, runs: &[(u64, u32, u16, u32)]) -> ringplan_image::LegacyBufferGroup {
    ringplan_image::LegacyBufferGroup {
        bgid,
        buffers: Some(
            runs.iter()
                .map(|&(addr, len, bid, count)| ringplan_image::LegacyBufferRun {
                    addr,
                    len,
                    bid,
                    count,
                })
                .collect(),
        ),
    }
}

/// An io-wq affinity of `cpus` in the thread the ring's setup flags call
/// for (the SQ thread's with SQPOLL).
fn iowq_affinity(cpus: Vec<u32>) -> ringplan_image::IowqAffinity {
    ringplan_image::IowqAffinity { cpus, tid: None }
}
