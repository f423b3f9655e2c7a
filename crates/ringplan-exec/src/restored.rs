//! What a successful run leaves behind: the installed fds, the stand-ins
//! made for external inputs, and which ring regions were mapped or skipped.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;

use ringplan_image::{FileType, ObjectId, RingMapping};

/// A stand-in the executor made for an external input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Substitution {
    pub object: ObjectId,
    /// What the image says the original was.
    pub file_type: FileType,
    /// What stands in for it.
    pub with: &'static str,
}

/// Why a recorded ring mapping was not recreated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SkipReason {
    /// Something already occupies (part of) the range in this process
    /// (`EEXIST`, or a kernel before 4.17 that took the address as a hint).
    Taken,
    /// The range is free but the kernel refuses to place io_uring regions
    /// at any address the caller chooses: Linux 6.4 and later (their
    /// `get_unmapped_area` answers `EINVAL` to every address, for `mmap`
    /// and `mremap` alike), so on those kernels no ring region can be put
    /// back where it was.
    AddressRefused,
    /// [`crate::ExecOptions::skip_ring_mappings`] was set.
    TurnedOff,
}

/// A ring region the executor did not map at its recorded address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SkippedMapping {
    /// The ring, by its id in the image.
    pub object: ObjectId,
    pub mapping: RingMapping,
    pub reason: SkipReason,
}

impl std::fmt::Display for SkippedMapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let region = self.mapping.region.name();
        let why = match self.reason {
            SkipReason::Taken => "the range is taken",
            SkipReason::AddressRefused => {
                "the kernel places io_uring regions only where it chooses"
            }
            SkipReason::TurnedOff => "ring mapping is turned off",
        };
        write!(
            f,
            "ring {} {region} at {:#x}+{} ({why})",
            self.object, self.mapping.addr, self.mapping.len
        )
    }
}

/// What a successful run leaves behind.
#[derive(Debug)]
pub struct Restored {
    /// The installed fds of every object the process holds at an fd, in the
    /// plan's install order. Dropping this closes them (and so tears down
    /// rings no other fd holds): keep it for as long as the rings are used,
    /// or take the fds out.
    pub fds: BTreeMap<ObjectId, Vec<OwnedFd>>,
    /// External inputs the executor substituted.
    pub substituted: Vec<Substitution>,
    /// Ring regions mapped at their recorded addresses, by ring, in plan
    /// order. They stay mapped: dropping this does not unmap them.
    pub mapped: Vec<(ObjectId, RingMapping)>,
    /// Recorded ring regions that were not mapped, and why.
    pub skipped_mappings: Vec<SkippedMapping>,
}
