//! What a dump knows a restore of its image leaves out, said per ring so a
//! user can judge whether the restore will do for their program. Found on
//! real programs (fio, qemu-img):
//!
//! - **A ring whose memory the program did not map** (nor give the kernel)
//!   is restored as kernel objects only: its positions and pending entries
//!   are in the image, but no program could see them.
//! - **`IORING_SETUP_SINGLE_ISSUER`** ties a ring to one task (the creator,
//!   or the task that enabled it); the image records its tid, and
//!   `plan exec` creates every ring in the thread that runs the plan.
//!
//! Positions, queued SQEs, unconsumed and overflowed CQEs of a ring whose
//! memory the program saw are restored (Linux 6.5+, `IORING_SETUP_NO_MMAP`),
//! so they are no caveat.

use ringplan_image::{Image, ObjectKind, RingPositions, SetupFlags};

/// One line per thing a restore of `image` leaves out that matters for its
/// rings.
pub fn ring_caveats(image: &Image) -> Vec<String> {
    let mut caveats = Vec::new();
    for object in &image.objects {
        let ObjectKind::Ring(ring) = &object.kind else {
            continue;
        };
        let Some(fd) = object.fds.first().map(|entry| entry.fd) else {
            continue;
        };
        if let Some(state) = &ring.state {
            let positions = &state.positions;
            let pending = state.sqes.as_ref().map_or(0, Vec::len)
                + state.cqes.as_ref().map_or(0, Vec::len)
                + state.overflow.as_ref().map_or(0, Vec::len);
            if !ring.program_saw_memory() && (*positions != RingPositions::default() || pending > 0)
            {
                caveats.push(format!(
                    "ring {} (fd {fd}): its SQ head/tail are at {}/{} and its CQ head/tail at {}/{}, but the \
                     program has none of its memory mapped, so plan exec restores it as kernel objects only \
                     (a restored ring starts at 0)",
                    object.id,
                    positions.cached_sq_head,
                    positions.sq_tail,
                    positions.cq_head,
                    positions.cq_tail
                ));
            }
        }
        // Captured groups are provided again by a restore (emptied ones
        // left out, as the kernel treats an empty one as none).
        let uncaptured: Vec<_> = ring
            .legacy_buffer_groups
            .iter()
            .filter(|group| group.buffers.is_none())
            .collect();
        if !uncaptured.is_empty() {
            let groups: Vec<String> = uncaptured
                .iter()
                .map(|group| group.bgid.to_string())
                .collect();
            caveats.push(format!(
                "ring {} (fd {fd}): the buffers of legacy provided-buffer groups {} (IORING_OP_PROVIDE_BUFFERS) \
                 were not captured (the dump says why above); plan exec refuses this image",
                object.id,
                groups.join(", ")
            ));
        }
        for entry in ring.pbuf_rings.iter().filter(|entry| entry.mmap) {
            let caveat = match (entry.addr, &entry.contents) {
                // Restorable: say what changes for the program.
                (Some(addr), Some(_)) => format!(
                    "buffer ring {} has kernel-allocated memory (IOU_PBUF_RING_MMAP), mapped by the program \
                     at {addr:#x}; its entries and tail are captured, and a restore puts them back as user \
                     memory there (the kernel maps a new ring's memory only where it chooses): a program \
                     that maps it again from the ring fd then gets an error",
                    entry.bgid
                ),
                (Some(addr), None) => format!(
                    "buffer ring {} has kernel-allocated memory (IOU_PBUF_RING_MMAP), mapped by the program \
                     at {addr:#x}, whose entries and tail were not captured (the dump says why above); \
                     plan exec refuses it",
                    entry.bgid
                ),
                (None, _) => format!(
                    "buffer ring {} has kernel-allocated memory (IOU_PBUF_RING_MMAP), which the program has \
                     not mapped; plan exec refuses it (its entries and tail are only in the kernel)",
                    entry.bgid
                ),
            };
            caveats.push(format!("ring {} (fd {fd}): {caveat}", object.id));
        }
        if ring.setup.has(SetupFlags::SINGLE_ISSUER) {
            let owner = match ring.state.as_ref().and_then(|state| state.owner_tid) {
                Some(tid) => format!("thread {tid}, which the image records"),
                // The kernel binds the owner when the ring is enabled.
                None if ring.setup.has(SetupFlags::R_DISABLED) => {
                    "the thread that will enable it (it is still IORING_SETUP_R_DISABLED)"
                        .to_owned()
                }
                None => "one thread, which the image does not record".to_owned(),
            };
            caveats.push(format!(
                "ring {} (fd {fd}): IORING_SETUP_SINGLE_ISSUER ties it to {owner}; plan exec creates it in the \
                 thread that runs the plan",
                object.id
            ));
        }
    }
    caveats
}
