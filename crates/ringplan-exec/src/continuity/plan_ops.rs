//! The continuity mechanics' inputs made from a plan's ops: where a
//! `place_ring_memory` puts memory, and what `io_uring_setup` is given for
//! a `setup_ring`. Shared by the executor's run and by anyone who drives
//! the mechanics from a plan (the continuity restore bench).

use ringplan_image::SetupFlags;
use ringplan_plan::{MemoryOrigin, PlaceRingMemory, SetupRing};

use super::memory::{Backing, RegionPlacement, RingPlacement};
use super::ring::RingSetup;

/// The placement a `place_ring_memory` step asks for.
pub fn placement_of(memory: &PlaceRingMemory) -> RingPlacement {
    let range = |region: &ringplan_image::UserRegion| RegionPlacement {
        addr: region.addr,
        len: region.len,
    };
    RingPlacement {
        rings: memory.rings.iter().map(range).collect(),
        sqes: range(&memory.sqes),
        // Kernel memory the program mapped was shared (a fork shares it),
        // and may show at two addresses; a program's own memory is taken
        // to be private.
        backing: match memory.origin {
            MemoryOrigin::Program => Backing::Anonymous,
            _ => Backing::Memfd,
        },
    }
}

/// What `io_uring_setup` is given for a plan's ring, `wq_fd` aside.
pub fn ring_setup_of(setup: &SetupRing) -> RingSetup {
    RingSetup {
        sq_entries: setup.sq_entries,
        cq_entries: if setup.flags & SetupFlags::CQSIZE.bits() != 0 {
            setup.cq_entries
        } else {
            0
        },
        flags: setup.flags,
        sq_thread_cpu: setup.sq_thread_cpu.unwrap_or(0),
        sq_thread_idle_ms: setup.sq_thread_idle_ms.unwrap_or(0),
        wq_fd: None,
    }
}
