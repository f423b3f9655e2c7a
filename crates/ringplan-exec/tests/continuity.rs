//! The continuity primitives against the real kernel (Linux 6.5+; on an
//! older kernel each test checks the refusal instead): rings on memory
//! placed at chosen addresses, positions brought to given values, pending
//! entries put back, each compared with the kernel's own fdinfo (SqHead ..
//! CachedCqTail, the SQE and CQE rows, CqOverflowList) and /proc/self/maps.
//!
//! Tests run in parallel threads of one process: each uses its own
//! addresses (`base(n)`).

use std::os::fd::{AsRawFd, BorrowedFd};

use ringplan_exec::continuity::{
    advance_positions, kernel_supports_no_mmap, restore_entries, ring_layout, Backing,
    ContinuityError, ContinuousRing, OverflowCqe, PositionTargets, QueuedSqe, RecordedEntries,
    RegionPlacement, RingPlacement, RingSetup,
};
use ringplan_kernel::abi::continuity::{cqe_offset, sqe_offset, CQE32_SIZE, CQE_SIZE, SQE_SIZE};
use ringplan_kernel::abi::SetupFlags;
use ringplan_kernel::procfs::fdinfo::queues::RingQueues;
use ringplan_kernel::procfs::{fdinfo, Process, ProcfsError};

const MIB: u64 = 1 << 20;

/// A 256 MiB window of its own for test `n`, far from anything the process
/// maps by itself.
fn base(n: u64) -> u64 {
    0x3000_0000_0000 + n * 256 * MIB
}

/// Whether this kernel has NO_MMAP; when it has not, checks the refusal.
fn no_mmap_here() -> bool {
    match kernel_supports_no_mmap() {
        Ok(()) => true,
        Err(error) => {
            assert!(
                error
                    .to_string()
                    .contains("IORING_SETUP_NO_MMAP needs Linux 6.5"),
                "{error}"
            );
            eprintln!("skipped on this kernel: {error}");
            false
        }
    }
}

fn placement(n: u64, layout_rings: u64, layout_sqes: u64, backing: Backing) -> RingPlacement {
    RingPlacement {
        rings: vec![RegionPlacement {
            addr: base(n),
            len: layout_rings,
        }],
        sqes: RegionPlacement {
            addr: base(n) + 128 * MIB,
            len: layout_sqes,
        },
        backing,
    }
}

fn create(n: u64, setup: &RingSetup, backing: Backing) -> ContinuousRing {
    let layout = ring_layout(setup).expect("layout probe");
    ContinuousRing::create(
        setup,
        &placement(n, layout.rings_len, layout.sqes_len, backing),
    )
    .expect("ring on placed memory")
}

/// The ring's fdinfo queues, read again while the kernel skips the ring's
/// part (its lock was taken).
fn queues(fd: BorrowedFd<'_>) -> RingQueues {
    for _ in 0..100 {
        let text = fdinfo::read(Process::Current, fd.as_raw_fd()).expect("fdinfo");
        match RingQueues::parse(std::path::Path::new("fdinfo"), &text) {
            Ok(queues) => return queues,
            Err(ProcfsError::NoRingState { .. }) => {
                std::thread::sleep(std::time::Duration::from_millis(5))
            }
            Err(error) => panic!("{error}"),
        }
    }
    panic!("the ring's fdinfo never showed its state")
}

fn mapping_at(addr: u64) -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
    let prefix = format!("{addr:x}-");
    maps.lines()
        .find(|line| line.starts_with(&prefix))
        .map(str::to_owned)
}

fn nop(user_data: u64) -> Vec<u8> {
    let mut sqe = vec![0u8; SQE_SIZE];
    sqe[sqe_offset::USER_DATA..sqe_offset::USER_DATA + 8].copy_from_slice(&user_data.to_le_bytes());
    sqe
}

fn cqe(size: usize, user_data: u64, res: i32, flags: u32) -> Vec<u8> {
    let mut cqe = vec![0u8; size];
    cqe[cqe_offset::USER_DATA..cqe_offset::USER_DATA + 8].copy_from_slice(&user_data.to_le_bytes());
    cqe[cqe_offset::RES..cqe_offset::RES + 4].copy_from_slice(&res.to_le_bytes());
    cqe[cqe_offset::FLAGS..cqe_offset::FLAGS + 4].copy_from_slice(&flags.to_le_bytes());
    cqe
}

fn positions(queues: &RingQueues) -> [u32; 6] {
    [
        queues.sq_head,
        queues.sq_tail,
        queues.cached_sq_head,
        queues.cq_head,
        queues.cq_tail,
        queues.cached_cq_tail,
    ]
}

#[test]
fn no_mmap_layout_is_the_layout_of_an_mmapped_ring() {
    if !no_mmap_here() {
        return;
    }
    let cases = [
        (16, SetupFlags::empty(), 0),
        (32768, SetupFlags::empty(), 0),
        (8, SetupFlags::NO_SQARRAY, 0),
        (64, SetupFlags::SQE128 | SetupFlags::CQE32, 0),
        (16, SetupFlags::CQSIZE, 1024),
        (4, SetupFlags::SINGLE_ISSUER | SetupFlags::DEFER_TASKRUN, 0),
    ];
    for (index, (entries, flags, cq_entries)) in cases.into_iter().enumerate() {
        let mut setup = RingSetup::new(entries, flags);
        setup.cq_entries = cq_entries;
        let mmapped = ring_layout(&setup).expect("layout probe");
        // Preflight's sizes, from a 1-entry probe and the kernel's formula,
        // are those of a full-size probe.
        let cq = if cq_entries == 0 {
            2 * entries
        } else {
            cq_entries
        };
        let sizes =
            ringplan_kernel::probe::ring_memory_sizes(entries, cq, flags).expect("a 1-entry probe");
        assert_eq!(
            sizes,
            (mmapped.rings_len, mmapped.sqes_len),
            "{entries} entries, {flags:?}"
        );
        let ring = create(index as u64, &setup, Backing::Memfd);
        assert_eq!(*ring.layout(), mmapped, "{entries} entries, {flags:?}");
        assert!(ring.flags().contains(SetupFlags::NO_MMAP));
        // The program's pointers stay valid: the rings are at the address
        // given, and the kernel wrote the ring's sizes there.
        assert_eq!(ring.rings_addr(), base(index as u64));
        let fdinfo = queues(ring.fd());
        assert_eq!(positions(&fdinfo), [0; 6]);
    }
}

#[test]
fn rings_at_two_addresses_show_the_same_memory() {
    if !no_mmap_here() {
        return;
    }
    let setup = RingSetup::new(32, SetupFlags::empty());
    let layout = ring_layout(&setup).expect("layout");
    let (first, second) = (base(10), base(10) + 64 * MIB);
    let placement = RingPlacement {
        // The program mapped the SQ ring (to the SQ array's end) and the CQ
        // ring (to the CQEs' end) separately, as fio does.
        rings: vec![
            RegionPlacement {
                addr: first,
                len: layout.rings_len,
            },
            RegionPlacement {
                addr: second,
                len: u64::from(layout.cq_off[5]) + 64 * CQE_SIZE as u64,
            },
        ],
        sqes: RegionPlacement {
            addr: base(10) + 128 * MIB,
            len: layout.sqes_len,
        },
        backing: Backing::Memfd,
    };
    let mut ring = ContinuousRing::create(&setup, &placement).expect("ring");
    assert_eq!(ring.rings_addr(), first);
    for addr in [first, second, base(10) + 128 * MIB] {
        let line = mapping_at(addr).unwrap_or_else(|| panic!("nothing mapped at {addr:#x}"));
        assert!(line.contains("memfd:ringplan-ring"), "{line}");
    }
    let targets = PositionTargets {
        sq_head: 100,
        cq_tail: 100,
        cq_head: 90,
    };
    advance_positions(&mut ring, &targets, &mut |_, _| {}).expect("advance");
    // The CQ tail the kernel writes through the first address shows at the
    // second.
    let cq_tail_offset = layout.cq_off[1] as u64;
    // SAFETY: both ranges are mapped (checked above) and hold the rings.
    let (seen_first, seen_second) = unsafe {
        (
            std::ptr::read_volatile((first + cq_tail_offset) as *const u32),
            std::ptr::read_volatile((second + cq_tail_offset) as *const u32),
        )
    };
    assert_eq!((seen_first, seen_second), (100, 100));
}

#[test]
fn anonymous_memory_of_many_pages_is_accepted() {
    if !no_mmap_here() {
        return;
    }
    // 32768 entries: rings of about 1.1 MiB and 2 MiB of SQEs, many pages
    // that need not be one folio (6.18 vmaps them).
    let mut ring = create(
        11,
        &RingSetup::new(32768, SetupFlags::empty()),
        Backing::Anonymous,
    );
    assert!(ring.layout().rings_len > 4096 * 2);
    let targets = PositionTargets {
        sq_head: 70000,
        cq_tail: 70000,
        cq_head: 70000,
    };
    advance_positions(&mut ring, &targets, &mut |_, _| {}).expect("advance");
    assert_eq!(positions(&queues(ring.fd())), [70000; 6]);
    let line = mapping_at(base(11)).expect("mapped");
    assert!(!line.contains("memfd"), "{line}");
}

#[test]
fn positions_reach_their_targets_with_each_kind_of_batch() {
    if !no_mmap_here() {
        return;
    }
    let cases = [
        // both equal: plain NOPs only
        (
            16,
            SetupFlags::empty(),
            PositionTargets {
                sq_head: 1000,
                cq_tail: 1000,
                cq_head: 1000,
            },
        ),
        // SQ head ahead: then skipping NOPs
        (
            16,
            SetupFlags::empty(),
            PositionTargets {
                sq_head: 5000,
                cq_tail: 700,
                cq_head: 690,
            },
        ),
        // CQ tail ahead: then MSG_RING from a helper ring
        (
            16,
            SetupFlags::empty(),
            PositionTargets {
                sq_head: 3,
                cq_tail: 4000,
                cq_head: 3990,
            },
        ),
        (
            8,
            SetupFlags::NO_SQARRAY,
            PositionTargets {
                sq_head: 77,
                cq_tail: 300,
                cq_head: 290,
            },
        ),
        (
            8,
            SetupFlags::SINGLE_ISSUER | SetupFlags::DEFER_TASKRUN,
            PositionTargets {
                sq_head: 50,
                cq_tail: 333,
                cq_head: 320,
            },
        ),
        (
            8,
            SetupFlags::SQPOLL,
            PositionTargets {
                sq_head: 200,
                cq_tail: 150,
                cq_head: 150,
            },
        ),
        (
            64,
            SetupFlags::SQE128 | SetupFlags::CQE32,
            PositionTargets {
                sq_head: 9,
                cq_tail: 129,
                cq_head: 1,
            },
        ),
        // a CQ head behind 0 (wrapped): the ring is full from the start
        (
            4,
            SetupFlags::empty(),
            PositionTargets {
                sq_head: 0,
                cq_tail: 3,
                cq_head: u32::MAX - 4,
            },
        ),
    ];
    for (index, (entries, flags, targets)) in cases.into_iter().enumerate() {
        let mut ring = create(
            20 + index as u64,
            &RingSetup::new(entries, flags),
            Backing::Memfd,
        );
        let mut calls = Vec::new();
        let advanced = advance_positions(&mut ring, &targets, &mut |done, total| {
            calls.push((done, total))
        })
        .unwrap_or_else(|error| panic!("case {index}: {error}"));
        let fdinfo = queues(ring.fd());
        assert_eq!(
            positions(&fdinfo),
            [
                targets.sq_head,
                targets.sq_head,
                targets.sq_head,
                targets.cq_head,
                targets.cq_tail,
                targets.cq_tail
            ],
            "case {index} ({flags:?}): {advanced:?}"
        );
        let total = u64::from(targets.sq_head.max(targets.cq_tail));
        assert_eq!(advanced.total(), total, "case {index}");
        assert_eq!(calls.first(), Some(&(0, total)), "case {index}");
        assert_eq!(calls.last(), Some(&(total, total)), "case {index}");
        assert!(
            fdinfo.overflow.is_empty(),
            "case {index}: {:?}",
            fdinfo.overflow
        );
    }
}

#[test]
fn positions_that_do_not_fit_the_ring_are_refused_before_anything() {
    if !no_mmap_here() {
        return;
    }
    let mut ring = create(40, &RingSetup::new(4, SetupFlags::empty()), Backing::Memfd);
    let targets = PositionTargets {
        sq_head: 10,
        cq_tail: 100,
        cq_head: 10,
    };
    let error = advance_positions(&mut ring, &targets, &mut |_, _| {}).unwrap_err();
    assert!(matches!(error, ContinuityError::BadRequest(_)), "{error}");
    assert_eq!(positions(&queues(ring.fd())), [0; 6]);
}

#[test]
fn entries_come_back_in_their_slots_and_the_overflow_list() {
    if !no_mmap_here() {
        return;
    }
    for (index, flags) in [
        SetupFlags::empty(),
        SetupFlags::NO_SQARRAY,
        SetupFlags::SINGLE_ISSUER | SetupFlags::DEFER_TASKRUN,
    ]
    .into_iter()
    .enumerate()
    {
        let mut ring = create(50 + index as u64, &RingSetup::new(8, flags), Backing::Memfd);
        let (sq_head, cq_head, cq_tail) = (1003u32, 2000u32, 2005u32);
        let with_array = !flags.contains(SetupFlags::NO_SQARRAY);
        let queued: Vec<QueuedSqe> = (0..3u32)
            .map(|i| QueuedSqe {
                // Through the SQ array the SQEs may sit anywhere.
                index: if with_array { 7 - i } else { (sq_head + i) & 7 },
                bytes: nop(500 + u64::from(i)),
            })
            .collect();
        let unconsumed: Vec<Vec<u8>> = (0..5)
            .map(|i| cqe(CQE_SIZE, 900 + i, -(i as i32), 0))
            .collect();
        let overflow = [
            OverflowCqe {
                user_data: 71,
                res: 1,
                flags: 0,
                extra: [0, 0],
            },
            OverflowCqe {
                user_data: 72,
                res: -11,
                flags: 0x2,
                extra: [0, 0],
            },
            OverflowCqe {
                user_data: 73,
                res: 3,
                flags: 0,
                extra: [0, 0],
            },
        ];
        let recorded = RecordedEntries {
            sq_head,
            sq_tail: sq_head + 3,
            cq_head,
            cq_tail,
            queued: &queued,
            unconsumed: &unconsumed,
            overflow: &overflow,
        };
        restore_entries(&mut ring, &recorded, &mut |_, _| {})
            .unwrap_or_else(|e| panic!("{flags:?}: {e}"));
        let fdinfo = queues(ring.fd());
        assert_eq!(
            positions(&fdinfo),
            [sq_head, sq_head + 3, sq_head, cq_head, cq_tail, cq_tail],
            "{flags:?}"
        );
        let wanted: Vec<(u32, &str, u64)> = queued
            .iter()
            .zip(500..)
            .map(|(q, u)| (q.index, "NOP", u))
            .collect();
        if with_array {
            let sqes: Vec<(u32, &str, u64)> = fdinfo
                .sqes
                .iter()
                .map(|row| (row.index, row.opcode.as_str(), row.user_data))
                .collect();
            assert_eq!(sqes, wanted, "{flags:?}");
        } else {
            // 6.18's fdinfo lists no SQE rows for a NO_SQARRAY ring (it
            // prints their count only): read the slots themselves.
            assert!(
                fdinfo.sqes.is_empty(),
                "6.18 learnt to list them: compare the rows"
            );
            for (slot, _, user_data) in wanted {
                let sqe = read_memory(
                    ring.sqes_addr() + u64::from(slot) * SQE_SIZE as u64,
                    SQE_SIZE,
                );
                assert_eq!(sqe, nop(user_data), "{flags:?} slot {slot}");
            }
        }
        let cqes: Vec<(Option<u32>, u64, i32)> = fdinfo
            .cqes
            .iter()
            .map(|row| (row.slot, row.user_data, row.res))
            .collect();
        let wanted: Vec<(Option<u32>, u64, i32)> = (0..5u32)
            .map(|i| (Some((cq_head + i) & 15), 900 + u64::from(i), -(i as i32)))
            .collect();
        assert_eq!(cqes, wanted, "{flags:?}");
        let overflowed: Vec<(u64, i32, u32)> = fdinfo
            .overflow
            .iter()
            .map(|row| (row.user_data, row.res, row.flags))
            .collect();
        assert_eq!(
            overflowed,
            vec![(71, 1, 0), (72, -11, 2), (73, 3, 0)],
            "{flags:?}"
        );
    }
}

#[test]
fn cqe32_extra_words_are_kept_in_the_ring_and_refused_in_the_overflow_list() {
    if !no_mmap_here() {
        return;
    }
    let mut ring = create(60, &RingSetup::new(4, SetupFlags::CQE32), Backing::Memfd);
    let mut big = cqe(CQE32_SIZE, 5, 0, 0);
    big[cqe_offset::EXTRA..cqe_offset::EXTRA + 8].copy_from_slice(&11u64.to_le_bytes());
    big[cqe_offset::EXTRA + 8..cqe_offset::EXTRA + 16].copy_from_slice(&12u64.to_le_bytes());
    let unconsumed = [big];
    let overflow = [OverflowCqe {
        user_data: 6,
        res: 0,
        flags: 0,
        extra: [1, 2],
    }];
    let mut recorded = RecordedEntries {
        sq_head: 0,
        sq_tail: 0,
        cq_head: 9,
        cq_tail: 10,
        queued: &[],
        unconsumed: &unconsumed,
        overflow: &overflow,
    };
    let error = restore_entries(&mut ring, &recorded, &mut |_, _| {}).unwrap_err();
    assert!(
        matches!(error, ContinuityError::CannotReproduce(_)),
        "{error}"
    );
    assert!(error.to_string().contains("extra words"), "{error}");
    assert_eq!(
        positions(&queues(ring.fd())),
        [0; 6],
        "refused before anything"
    );
    recorded.overflow = &[];
    restore_entries(&mut ring, &recorded, &mut |_, _| {}).expect("without the overflow");
    let fdinfo = queues(ring.fd());
    assert_eq!(positions(&fdinfo), [0, 0, 0, 9, 10, 10]);
    // 6.18's fdinfo reads a CQE32 ring's CQEs at 16-byte strides (it shows
    // this one's user_data as extra1): read the slot itself.
    let slot = 9 & (ring.layout().cq_entries - 1);
    let addr = ring.rings_addr()
        + u64::from(ring.layout().cq_off[5])
        + u64::from(slot) * CQE32_SIZE as u64;
    assert_eq!(read_memory(addr, CQE32_SIZE), unconsumed[0]);
}

/// `len` bytes of this process's memory at `addr`, through /proc/self/mem
/// (so a bad address is an error, not a fault).
fn read_memory(addr: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let mem = std::fs::File::open("/proc/self/mem").expect("/proc/self/mem");
    let mut bytes = vec![0; len];
    mem.read_exact_at(&mut bytes, addr)
        .expect("reading ring memory");
    bytes
}

#[test]
fn a_taken_range_is_refused() {
    if !no_mmap_here() {
        return;
    }
    let setup = RingSetup::new(8, SetupFlags::empty());
    let layout = ring_layout(&setup).expect("layout");
    let placement = placement(70, layout.rings_len, layout.sqes_len, Backing::Memfd);
    let first = ContinuousRing::create(&setup, &placement).expect("first ring");
    let Err(error) = ContinuousRing::create(&setup, &placement) else {
        panic!("a second ring at the same addresses");
    };
    assert!(
        matches!(error, ContinuityError::RangeTaken { .. }),
        "{error}"
    );
    drop(first);
    assert_eq!(
        mapping_at(base(70)),
        None,
        "dropping the ring unmaps its memory"
    );
}

#[test]
fn create_says_when_the_kernel_has_no_no_mmap() {
    let setup = RingSetup::new(8, SetupFlags::empty());
    let placement = placement(80, 64 << 10, 64 << 10, Backing::Memfd);
    match (
        kernel_supports_no_mmap(),
        ContinuousRing::create(&setup, &placement),
    ) {
        (Ok(()), Ok(ring)) => assert!(ring.flags().contains(SetupFlags::NO_MMAP)),
        (Err(_), Err(error)) => {
            assert!(
                matches!(error, ContinuityError::NoMmapUnsupported { .. }),
                "{error}"
            );
            assert!(
                error
                    .to_string()
                    .ends_with("IORING_SETUP_NO_MMAP needs Linux 6.5"),
                "{error}"
            );
            assert_eq!(
                mapping_at(base(80)),
                None,
                "refused before mapping anything"
            );
        }
        (supported, created) => panic!(
            "kernel check {supported:?} but create gave {:?}",
            created.err()
        ),
    }
}

/// A ring past 2^32 (its SQ head and CQ tail wrapped): about 2^32 NOPs,
/// minutes on these machines, so run on demand:
/// `cargo test --release -p ringplan-exec --test continuity -- --ignored`.
#[test]
#[ignore = "takes minutes: 2^32 NOPs"]
fn positions_wrap_past_2_pow_32() {
    if !no_mmap_here() {
        return;
    }
    let mut ring = create(
        81,
        &RingSetup::new(32768, SetupFlags::empty()),
        Backing::Memfd,
    );
    // 2^32 + 7 for the SQ head; the CQ tail 2^32 + 12 (its last 5 by
    // MSG_RING); the CQ head 10 behind it, across the wrap.
    let targets = PositionTargets {
        sq_head: 7,
        cq_tail: 12,
        cq_head: 2,
    };
    // Counting forward from 0 to 7 is 7 positions: start the wrap by hand
    // with a first leg to 2^32 - 3, then continue across it.
    let first = PositionTargets {
        sq_head: u32::MAX - 2,
        cq_tail: u32::MAX - 2,
        cq_head: u32::MAX - 2,
    };
    advance_positions(&mut ring, &first, &mut |_, _| {}).expect("to 2^32 - 3");
    assert_eq!(positions(&queues(ring.fd())), [u32::MAX - 2; 6]);
    let advanced = advance_positions(&mut ring, &targets, &mut |_, _| {}).expect("across the wrap");
    assert_eq!((advanced.nops, advanced.messages), (10, 5));
    assert_eq!(positions(&queues(ring.fd())), [7, 7, 7, 2, 12, 12]);
}

#[test]
fn placements_the_kernel_cannot_take_are_refused_before_mapping() {
    if !no_mmap_here() {
        return;
    }
    let setup = RingSetup::new(8, SetupFlags::empty());
    let layout = ring_layout(&setup).expect("layout");
    let good = placement(82, layout.rings_len, layout.sqes_len, Backing::Anonymous);
    let mut cases = Vec::new();
    // Anonymous memory cannot show at two addresses.
    let mut two = good.clone();
    two.rings.push(RegionPlacement {
        addr: base(82) + 64 * MIB,
        len: 4096,
    });
    cases.push(("two anonymous addresses", two));
    let mut unaligned = good.clone();
    unaligned.rings[0].addr += 64;
    cases.push(("unaligned rings", unaligned));
    let mut short = good.clone();
    short.rings[0].len = layout.rings_len - 1;
    cases.push(("rings too short", short));
    let mut short_sqes = good.clone();
    short_sqes.sqes.len = layout.sqes_len - 1;
    cases.push(("SQEs too short", short_sqes));
    for (what, placement) in cases {
        let error = ContinuousRing::create(&setup, &placement)
            .err()
            .expect(what);
        assert!(
            matches!(error, ContinuityError::BadRequest(_)),
            "{what}: {error}"
        );
        assert_eq!(mapping_at(base(82)), None, "{what}: nothing mapped");
        assert_eq!(
            mapping_at(base(82) + 128 * MIB),
            None,
            "{what}: nothing mapped"
        );
    }
}
