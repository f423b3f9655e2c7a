//! What a dump knows its image leaves out, said per ring so a user can
//! judge whether the restore will do for their program. Found on real
//! programs (fio, qemu-img):
//!
//! - **SQ/CQ positions.** The image records no ring heads and tails (nor
//!   in-flight requests): a restored ring starts at 0. A program that has
//!   done I/O and resumes with its own cached positions will not find its
//!   completions. The positions are read from the target's memory, in the
//!   ring's SQ ring mapping (`/proc/PID/mem`, one read per ring), at the
//!   offsets this kernel gives every ring (`io_uring_params.sq_off` and
//!   `cq_off`, learned from a throwaway ring of the dumper's own). Not from
//!   fdinfo: the kernel prints a ring's whole fdinfo, every registered
//!   file's row included, for any read of it (about 1.75 us per entry).
//! - **`IORING_SETUP_SINGLE_ISSUER`** ties a ring to one task (the creator,
//!   or the first submitter); the image does not record which, and
//!   `plan exec` creates every ring in the thread that runs the plan.

use std::sync::OnceLock;

use ringplan_image::{Image, ObjectKind, RingRegion, SetupFlags};
use ringplan_kernel::procfs::mem::ProcessMemory;
use ringplan_kernel::procfs::Process;

/// One line per thing the image leaves out that matters for `image`'s
/// rings in `pid` now.
pub fn ring_caveats(pid: u32, image: &Image) -> Vec<String> {
    let mut caveats = Vec::new();
    // Without these (no ptrace rights, a ring not mapped), positions go
    // unsaid rather than guessed.
    let memory = ProcessMemory::open(Process::Pid(pid)).ok();
    let offsets = position_offsets();
    for object in &image.objects {
        let ObjectKind::Ring(ring) = &object.kind else {
            continue;
        };
        let Some(fd) = object.fds.first().map(|entry| entry.fd) else {
            continue;
        };
        let sq_ring = ring
            .mappings
            .iter()
            .find(|mapping| mapping.region == RingRegion::SqRing);
        let positions = match (&memory, offsets, sq_ring) {
            (Some(memory), Some(offsets), Some(mapping)) => {
                Positions::read(memory, mapping.addr, offsets)
            }
            _ => None,
        };
        if let Some(positions) = positions.filter(Positions::moved) {
            caveats.push(format!(
                "ring {} (fd {fd}): its SQ head/tail are at {}/{} and its CQ head/tail at {}/{}; the image keeps no \
                 positions (a restored ring starts at 0), so a program resuming with its own cached positions \
                 will not find its completions",
                object.id, positions.sq_head, positions.sq_tail, positions.cq_head, positions.cq_tail
            ));
        }
        if ring.setup.has(SetupFlags::SINGLE_ISSUER) {
            caveats.push(format!(
                "ring {} (fd {fd}): IORING_SETUP_SINGLE_ISSUER ties it to one thread, which the image does not \
                 record; plan exec creates it in the thread that runs the plan",
                object.id
            ));
        }
    }
    caveats
}

/// Where the four positions sit in a ring's SQ ring mapping on this
/// kernel: the same for every ring (offsets into `struct io_rings`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PositionOffsets {
    sq_head: u32,
    sq_tail: u32,
    cq_head: u32,
    cq_tail: u32,
}

/// The offsets, from a throwaway ring set up once per process.
fn position_offsets() -> Option<PositionOffsets> {
    static OFFSETS: OnceLock<Option<PositionOffsets>> = OnceLock::new();
    *OFFSETS.get_or_init(|| {
        let mut params = rustix::io_uring::io_uring_params::default();
        // SAFETY: io_uring_setup only fills `params`; the ring is closed
        // unmapped and unused.
        let ring = unsafe { rustix::io_uring::io_uring_setup(1, &mut params) }.ok()?;
        drop(ring);
        // With FEAT_SINGLE_MMAP the CQ shares the SQ ring's mapping, and the
        // offsets of both are into the same `struct io_rings`.
        let single_mmap = params
            .features
            .contains(rustix::io_uring::IoringFeatureFlags::SINGLE_MMAP);
        single_mmap.then_some(PositionOffsets {
            sq_head: params.sq_off.head,
            sq_tail: params.sq_off.tail,
            cq_head: params.cq_off.head,
            cq_tail: params.cq_off.tail,
        })
    })
}

/// A ring's positions.
#[derive(Debug, Default, PartialEq, Eq)]
struct Positions {
    sq_head: u32,
    sq_tail: u32,
    cq_head: u32,
    cq_tail: u32,
}

impl Positions {
    /// Reads the four from the target's memory, in one read of the span
    /// that holds them (a few cache lines); `None` if it fails.
    fn read(memory: &ProcessMemory, sq_ring: u64, offsets: PositionOffsets) -> Option<Positions> {
        let all = [
            offsets.sq_head,
            offsets.sq_tail,
            offsets.cq_head,
            offsets.cq_tail,
        ];
        let first = *all.iter().min()?;
        let end = *all.iter().max()? as usize + 4;
        let mut span = vec![0u8; end.checked_sub(first as usize)?];
        memory
            .read_exact_at(sq_ring.checked_add(u64::from(first))?, &mut span)
            .ok()?;
        let word = |offset: u32| {
            let at = (offset - first) as usize;
            Some(u32::from_ne_bytes(span.get(at..at + 4)?.try_into().ok()?))
        };
        Some(Positions {
            sq_head: word(offsets.sq_head)?,
            sq_tail: word(offsets.sq_tail)?,
            cq_head: word(offsets.cq_head)?,
            cq_tail: word(offsets.cq_tail)?,
        })
    }

    fn moved(&self) -> bool {
        *self != Positions::default()
    }
}
