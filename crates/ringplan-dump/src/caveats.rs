//! What a dump knows a restore of its image leaves out, said per ring so a
//! user can judge whether the restore will do for their program. Found on
//! real programs (fio, qemu-img):
//!
//! - **SQ/CQ positions.** The image keeps a ring's heads and tails (its
//!   continuity state, read by the BPF backend), but `plan exec` does not
//!   restore them yet: a restored ring starts at 0. A program that has done
//!   I/O and resumes with its own cached positions will not find its
//!   completions.
//! - **Queued SQEs and unconsumed CQEs** are in the image and not put back
//!   by a restore yet either.
//! - **`IORING_SETUP_SINGLE_ISSUER`** ties a ring to one task (the creator,
//!   or the task that enabled it); the image records its tid, and
//!   `plan exec` still creates every ring in the thread that runs the plan.

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
            if *positions != RingPositions::default() {
                caveats.push(format!(
                    "ring {} (fd {fd}): its SQ head/tail are at {}/{} and its CQ head/tail at {}/{}; the image \
                     keeps these positions but plan exec does not restore them yet (a restored ring starts at 0), \
                     so a program resuming with its own cached positions will not find its completions",
                    object.id,
                    positions.cached_sq_head,
                    positions.sq_tail,
                    positions.cq_head,
                    positions.cq_tail
                ));
            }
            let queued = state.sqes.as_ref().map_or(0, Vec::len);
            let unconsumed = state.cqes.as_ref().map_or(0, Vec::len);
            if queued > 0 || unconsumed > 0 {
                caveats.push(format!(
                    "ring {} (fd {fd}): {queued} queued SQE(s) and {unconsumed} unconsumed CQE(s) are in the \
                     image; plan exec does not put them back yet",
                    object.id
                ));
            }
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
