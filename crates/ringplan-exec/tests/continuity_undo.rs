//! A failed continuity step leaves the process as it found it: no fd, no
//! mapping, no ring left behind. One test in its own binary, so no other
//! test changes the process's fds or mappings meanwhile.

use ringplan_exec::continuity::{
    kernel_supports_no_mmap, restore_entries, ring_layout, Backing, ContinuityError,
    ContinuousRing, OverflowCqe, RecordedEntries, RegionPlacement, RingPlacement, RingSetup,
};
use ringplan_exec::test_hooks::ProcessState;
use ringplan_kernel::abi::SetupFlags;
use rustix::mm::{MapFlags, ProtFlags};

const BASE: u64 = 0x3800_0000_0000;

#[test]
fn failures_release_everything_they_created() {
    if let Err(error) = kernel_supports_no_mmap() {
        eprintln!("skipped on this kernel: {error}");
        return;
    }
    let setup = RingSetup::new(8, SetupFlags::empty());
    let layout = ring_layout(&setup).expect("layout");
    let sqes = RegionPlacement {
        addr: BASE + (1 << 24),
        len: layout.sqes_len,
    };
    let before = ProcessState::capture();

    // The second rings address is taken: the first mapping and the memfd
    // are released.
    let taken = BASE + (1 << 25);
    // SAFETY: a fresh anonymous mapping at a free address of this test's own.
    let blocker = unsafe {
        rustix::mm::mmap_anonymous(
            taken as *mut std::ffi::c_void,
            4096,
            ProtFlags::READ,
            MapFlags::PRIVATE | MapFlags::FIXED_NOREPLACE,
        )
    }
    .expect("blocker");
    let with_blocker = ProcessState::capture();
    let placement = RingPlacement {
        rings: vec![
            RegionPlacement {
                addr: BASE,
                len: layout.rings_len,
            },
            RegionPlacement {
                addr: taken,
                len: 4096,
            },
        ],
        sqes,
        backing: Backing::Memfd,
    };
    let error = ContinuousRing::create(&setup, &placement)
        .err()
        .expect("refused");
    assert!(
        matches!(error, ContinuityError::RangeTaken { .. }),
        "{error}"
    );
    assert_eq!(
        with_blocker.changes_to(&ProcessState::capture()),
        Vec::<String>::new()
    );
    // SAFETY: the blocker mapped above, used by nothing.
    unsafe { rustix::mm::munmap(blocker, 4096) }.expect("munmap");

    // The kernel refuses the ring after its memory is mapped (attached to
    // a wq fd that is no ring, which the layout probe does not try): the
    // memory is released.
    let mut placement = placement.clone();
    placement.rings.truncate(1);
    let mut attached = RingSetup::new(8, SetupFlags::ATTACH_WQ);
    attached.wq_fd = Some(0);
    let error = ContinuousRing::create(&attached, &placement)
        .err()
        .expect("refused");
    assert!(matches!(error, ContinuityError::Syscall { .. }), "{error}");
    assert_eq!(
        before.changes_to(&ProcessState::capture()),
        Vec::<String>::new()
    );

    // A restore refused part-way is dropped with its ring: the ring, its
    // memory and the helper rings are gone.
    let mut ring = ContinuousRing::create(&setup, &placement).expect("ring");
    let overflow = [OverflowCqe {
        user_data: 1,
        res: 0,
        flags: 0,
        extra: [1, 0],
    }];
    let recorded = RecordedEntries {
        sq_head: 5,
        sq_tail: 5,
        cq_head: 5,
        cq_tail: 5,
        queued: &[],
        unconsumed: &[],
        overflow: &overflow,
    };
    assert!(restore_entries(&mut ring, &recorded, &mut |_, _| {}).is_err());
    let positions_moved = ringplan_exec::continuity::PositionTargets {
        sq_head: 3,
        cq_tail: 900,
        cq_head: 890,
    };
    ringplan_exec::continuity::advance_positions(&mut ring, &positions_moved, &mut |_, _| {})
        .expect("advance, with a helper ring");
    drop(ring);
    assert_eq!(
        before.changes_to(&ProcessState::capture()),
        Vec::<String>::new()
    );
}
