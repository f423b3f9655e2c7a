//! What a successful run leaves behind: the installed fds, the stand-ins
//! made for external inputs, and which ring regions were mapped or skipped.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;

use ringplan_image::{FileType, ObjectId, RingMapping};

use crate::continuity::Advanced;

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

/// What a successful run leaves behind. `Fd` is how the backend that ran
/// it names an fd: an `OwnedFd` of this process for [`crate::execute`], a
/// [`crate::RemoteFd`] (a number in the target) for [`crate::execute_in`].
#[derive(Debug)]
pub struct Restored<Fd = OwnedFd> {
    /// The installed fds of every object the process holds at an fd, in the
    /// plan's install order. In this process, dropping this closes them (and
    /// so tears down rings no other fd holds): keep it for as long as the
    /// rings are used, or take the fds out. In another process they are
    /// that process's: nothing here closes them.
    pub fds: BTreeMap<ObjectId, Vec<Fd>>,
    /// External inputs the executor substituted.
    pub substituted: Vec<Substitution>,
    /// Ring regions mapped at their recorded addresses, by ring, in plan
    /// order. They stay mapped: dropping this does not unmap them.
    pub mapped: Vec<(ObjectId, RingMapping)>,
    /// Recorded ring regions that were not mapped, and why.
    pub skipped_mappings: Vec<SkippedMapping>,
    /// The rings restored where the program left them, in plan order.
    pub continuous_rings: Vec<ContinuousRingReport>,
    /// Rings the plan restores continuously that were restored as kernel
    /// objects only ([`crate::ExecOptions::allow_moved_rings`] on a kernel
    /// without `IORING_SETUP_NO_MMAP`).
    pub moved_rings: Vec<ObjectId>,
    /// The registered ring-fd slots of the plan, in plan order: where
    /// each went.
    pub ring_fds: Vec<RestoredRingFd>,
}

/// Where a recorded registered ring-fd slot went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoredRingFd {
    pub ring: ObjectId,
    /// The slot, as recorded.
    pub offset: u32,
    /// The thread whose slot holds the ring now: in another process
    /// (`execute_in`) the recorded thread; in this one, which has no such
    /// thread, the thread that ran the plan.
    pub tid: u32,
    /// The thread the image recorded.
    pub recorded_tid: u32,
    /// `false` when not registered: in this process every slot goes to the
    /// one thread that ran the plan, where an earlier slot of the plan
    /// (another recorded thread's) had taken this offset.
    pub registered: bool,
}

impl std::fmt::Display for RestoredRingFd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.registered {
            return write!(
                f,
                "ring {}: thread {}'s registered ring fd at offset {} not registered (this process \
                 registers every slot in its one thread, where another thread's slot took that offset)",
                self.ring, self.recorded_tid, self.offset
            );
        }
        write!(
            f,
            "ring {}: registered ring fd at offset {} in thread {}",
            self.ring, self.offset, self.tid
        )?;
        if self.tid != self.recorded_tid {
            write!(f, " (recorded in thread {})", self.recorded_tid)?;
        }
        Ok(())
    }
}

/// One ring restored where the program left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContinuousRingReport {
    pub ring: ObjectId,
    /// Where its rings and SQEs are (the kernel was given the first rings
    /// address).
    pub rings_addr: u64,
    pub sqes_addr: u64,
    /// What moving its positions took.
    pub advanced: Advanced,
    /// With `IORING_SETUP_SINGLE_ISSUER`: the thread that owns it now (in
    /// this process the one that ran the plan; in another, its recorded
    /// owner), and the owner the image recorded.
    pub owner: Option<RingOwner>,
}

/// Who owns a `SINGLE_ISSUER` ring after the restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingOwner {
    /// The thread that created the ring: the one that ran the plan, or in
    /// another process (`execute_in`) the recorded owner thread.
    pub tid: u32,
    /// The owner recorded in the image, in the dumped process.
    pub recorded_tid: Option<u32>,
}
