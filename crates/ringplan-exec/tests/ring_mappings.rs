//! Ring regions against the real kernel: the executor maps a ring's
//! recorded regions where they are free, skips and reports the ones whose
//! range is taken, unmaps what it mapped when a later step fails, and
//! leaves them mapped after success. Linux 6.4 and later refuse every
//! caller-chosen address for io_uring regions: there a free range is
//! reported as refused instead, and nothing is mapped.

use std::ffi::c_void;

use ringplan_exec::test_hooks::{execute_with_injected_failure, InjectedFailure};
use ringplan_exec::{execute, ExecOptions, Inputs, NoMemory, SkipReason};
use ringplan_image::{
    Backend, FdEntry, Image, Object, ObjectId, ObjectKind, Ring, RingMapping, RingRegion,
    RingSetup, Source,
};
use rustix::mm::{MapFlags, ProtFlags};

const PAGE: usize = ringplan_kernel::abi::linux::PAGE_SIZE as usize;

/// Whether /proc/self/maps has a mapping starting at `addr`, and its line.
fn mapping_at(addr: usize) -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("reading /proc/self/maps");
    let prefix = format!("{addr:x}-");
    maps.lines()
        .find(|line| line.starts_with(&prefix))
        .map(str::to_owned)
}

/// One plain 8-entry ring at `fd`: both its regions (SQ ring with the CQ
/// ring in it, and the SQEs) fit in one page each.
fn image(fd: i32, mappings: Vec<RingMapping>) -> Image {
    let ring = Ring {
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
        files: Vec::new(),
        buffers: Vec::new(),
        mappings,
        unknown: Vec::new(),
        state: None,
        personalities: Vec::new(),
        personality_next: 0,
        pbuf_rings: Vec::new(),
        legacy_buffer_groups: Vec::new(),
        settings: Default::default(),
        registered_ring_fds: Vec::new(),
        restrictions: None,
    };
    let object = Object {
        id: ObjectId(1),
        fds: vec![FdEntry { fd, cloexec: true }],
        kind: ObjectKind::Ring(ring),
    };
    Image::new(
        Source {
            pid: 1,
            backend: Backend::Bpf,
            kernel_release: "test".to_owned(),
        },
        vec![object],
    )
}

/// A free fd number well above anything this test process holds.
fn free_fd() -> i32 {
    (600..900)
        .find(|fd| {
            // SAFETY: only asks for the fd's flags; EBADF when it is not open.
            let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(*fd) };
            rustix::io::fcntl_getfd(borrowed).is_err()
        })
        .expect("a free fd")
}

#[test]
fn free_ranges_are_mapped_taken_ones_skipped_and_a_failure_unmaps() {
    // Two pages: the first stays mapped (taken), the second is given back
    // (free), so both addresses are in user space and known.
    // SAFETY: a fresh mapping at an address the kernel picks.
    let base = unsafe {
        rustix::mm::mmap_anonymous(
            std::ptr::null_mut(),
            2 * PAGE,
            ProtFlags::empty(),
            MapFlags::PRIVATE,
        )
    }
    .expect("mmap") as usize;
    // SAFETY: the second page of the mapping just made; nothing uses it.
    unsafe { rustix::mm::munmap((base + PAGE) as *mut c_void, PAGE) }.expect("munmap");
    let free = RingMapping {
        region: RingRegion::SqRing,
        addr: (base + PAGE) as u64,
        len: PAGE as u64,
    };
    let taken = RingMapping {
        region: RingRegion::Sqes,
        addr: base as u64,
        len: PAGE as u64,
    };
    let fd = free_fd();
    let plan = ringplan_plan::compile(&image(fd, vec![free, taken])).expect("compiling");
    let options = ExecOptions {
        raise_fd_limit: true,
        ..ExecOptions::default()
    };

    // A failure at the last step (after the setup mapped the region) undoes
    // the mapping.
    let last = plan.steps.len() - 1;
    let failing = InjectedFailure {
        step: last,
        errno: rustix::io::Errno::from_raw_os_error(125),
    };
    let error =
        execute_with_injected_failure(&plan, Inputs::new(), &mut NoMemory, &options, failing)
            .expect_err("the injected failure");
    assert!(error.to_string().contains("injected"), "{error}");
    assert_eq!(
        mapping_at(base + PAGE),
        None,
        "the undo left the ring region mapped"
    );

    let restored = execute(&plan, Inputs::new(), &mut NoMemory, &options).expect("executing");
    let taken_skip = restored
        .skipped_mappings
        .iter()
        .find(|skip| skip.mapping == taken)
        .expect("taken is skipped");
    assert_eq!(
        (taken_skip.object, taken_skip.reason),
        (ObjectId(1), SkipReason::Taken)
    );
    assert!(
        taken_skip.to_string().contains("the range is taken"),
        "{taken_skip}"
    );
    // The taken page is still ours, untouched.
    let ours = mapping_at(base).expect("the taken page is still mapped");
    assert!(ours.contains(" ---p "), "{ours}");
    let refused = restored
        .skipped_mappings
        .iter()
        .any(|skip| skip.mapping == free);
    if refused {
        // Linux 6.4+: the free range stays free, and says why.
        assert_eq!(restored.skipped_mappings.len(), 2);
        assert!(restored.mapped.is_empty());
        assert!(restored
            .skipped_mappings
            .iter()
            .any(|skip| skip.reason == SkipReason::AddressRefused));
        assert_eq!(
            mapping_at(base + PAGE),
            None,
            "a refused region left a mapping"
        );
        drop(restored);
    } else {
        assert_eq!(restored.mapped, vec![(ObjectId(1), free)]);
        let line = mapping_at(base + PAGE).expect("the free range is mapped");
        assert!(
            line.contains(" rw-s "),
            "not a shared read-write mapping: {line}"
        );
        // After success the region outlives the fds: it is the task's memory.
        drop(restored);
        assert!(
            mapping_at(base + PAGE).is_some(),
            "the region went away with the fds"
        );
        // SAFETY: the ring region the executor left mapped; nothing refers
        // to it.
        unsafe { rustix::mm::munmap((base + PAGE) as *mut c_void, PAGE) }
            .expect("munmap the ring region");
    }
    // SAFETY: our own page; nothing refers to it.
    unsafe { rustix::mm::munmap(base as *mut c_void, PAGE) }.expect("munmap our page");

    // Turned off: nothing mapped, everything reported.
    let off = ExecOptions {
        skip_ring_mappings: true,
        ..options
    };
    let restored = execute(&plan, Inputs::new(), &mut NoMemory, &off).expect("executing");
    assert!(restored.mapped.is_empty());
    assert_eq!(restored.skipped_mappings.len(), 2);
    assert!(restored
        .skipped_mappings
        .iter()
        .all(|skip| skip.reason == SkipReason::TurnedOff));
    assert_eq!(mapping_at(base + PAGE), None);
}
