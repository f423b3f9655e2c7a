//! What a dump knows its image leaves out, said per ring so a user can
//! judge whether the restore will do for their program. Found on real
//! programs (fio, qemu-img):
//!
//! - **SQ/CQ positions.** The image records no ring heads and tails (nor
//!   in-flight requests): a restored ring starts at 0. A program that has
//!   done I/O and resumes with its own cached positions will not find its
//!   completions. The positions come from the kernel's fdinfo of the ring
//!   (`SqHead`, `SqTail`, `CqHead`, `CqTail`), read after the dump.
//! - **`IORING_SETUP_SINGLE_ISSUER`** ties a ring to one task (the creator,
//!   or the first submitter); the image does not record which, and
//!   `plan exec` creates every ring in the thread that runs the plan.

use ringplan_image::{Image, ObjectKind};

/// `IORING_SETUP_SINGLE_ISSUER`.
const SINGLE_ISSUER: u32 = 1 << 12;

/// One line per thing the image leaves out that matters for `image`'s
/// rings in `pid` now.
pub fn ring_caveats(pid: u32, image: &Image) -> Vec<String> {
    let mut caveats = Vec::new();
    for object in &image.objects {
        let ObjectKind::Ring(ring) = &object.kind else { continue };
        let Some(fd) = object.fds.first().map(|entry| entry.fd) else { continue };
        let fdinfo = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap_or_default();
        if let Some(positions) = Positions::parse(&fdinfo).filter(Positions::moved) {
            caveats.push(format!(
                "ring {} (fd {fd}): its SQ head/tail are at {}/{} and its CQ head/tail at {}/{}; the image keeps no \
                 positions (a restored ring starts at 0), so a program resuming with its own cached positions \
                 will not find its completions",
                object.id, positions.sq_head, positions.sq_tail, positions.cq_head, positions.cq_tail
            ));
        }
        if ring.setup.has(SINGLE_ISSUER) {
            caveats.push(format!(
                "ring {} (fd {fd}): IORING_SETUP_SINGLE_ISSUER ties it to one thread, which the image does not \
                 record; plan exec creates it in the thread that runs the plan",
                object.id
            ));
        }
    }
    caveats
}

/// A ring's positions as fdinfo prints them.
#[derive(Debug, Default, PartialEq, Eq)]
struct Positions {
    sq_head: u32,
    sq_tail: u32,
    cq_head: u32,
    cq_tail: u32,
}

impl Positions {
    /// `None` unless all four are there.
    fn parse(fdinfo: &str) -> Option<Positions> {
        let value = |key: &str| {
            fdinfo.lines().find_map(|line| line.strip_prefix(key)?.strip_prefix(':')?.trim().parse::<u32>().ok())
        };
        Some(Positions {
            sq_head: value("SqHead")?,
            sq_tail: value("SqTail")?,
            cq_head: value("CqHead")?,
            cq_tail: value("CqTail")?,
        })
    }

    fn moved(&self) -> bool {
        *self != Positions::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_come_from_the_four_fdinfo_lines() {
        let text = "pos:\t0\nSqMask:\t0xf\nSqHead:\t204000\nSqTail:\t204012\nCachedSqHead:\t204000\n\
                    CqMask:\t0xf\nCqHead:\t203990\nCqTail:\t204000\nCachedCqTail:\t204000\n";
        let positions = Positions::parse(text).expect("all four");
        assert_eq!(positions, Positions { sq_head: 204000, sq_tail: 204012, cq_head: 203990, cq_tail: 204000 });
        assert!(positions.moved());
        assert_eq!(Positions::parse("SqHead:\t1\n"), None);
        assert!(!Positions::parse("SqHead:\t0\nSqTail:\t0\nCqHead:\t0\nCqTail:\t0\n").expect("parsed").moved());
    }
}
