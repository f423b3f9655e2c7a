//! Mapping a new ring's recorded regions at their recorded addresses,
//! never over anything: a taken range, or one the kernel will not place
//! there (Linux 6.4+), is skipped and reported, not an error.

use std::os::fd::RawFd;

use ringplan_image::{ObjectId, RingMapping};
use rustix::io::Errno;
use rustix::mm::{MapFlags, ProtFlags};

use super::{fail, Failure, Run};
use crate::backend::Backend;
use crate::{SkipReason, SkippedMapping};

const CALL: &str = "mmap(ring region)";

impl<B: Backend> Run<'_, B> {
    /// Maps each of a new ring's recorded regions at its recorded address,
    /// never over anything: a taken range is skipped and reported.
    pub(super) fn map_regions(
        &mut self,
        object: Option<ObjectId>,
        mappings: &[RingMapping],
        ring: RawFd,
    ) -> Result<(), Failure> {
        for mapping in mappings {
            // Validation gives mappings only to rings of the image.
            let object = object.ok_or(Failure {
                call: CALL,
                errno: Errno::INVAL,
            })?;
            let reason = if self.map_rings {
                self.map_region(object, mapping, ring)?
            } else {
                Some(SkipReason::TurnedOff)
            };
            if let Some(reason) = reason {
                self.skipped.push(SkippedMapping {
                    object,
                    mapping: *mapping,
                    reason,
                });
            }
        }
        Ok(())
    }

    /// Maps one region; `Some(reason)` when it was skipped.
    fn map_region(
        &mut self,
        object: ObjectId,
        mapping: &RingMapping,
        ring: RawFd,
    ) -> Result<Option<SkipReason>, Failure> {
        let (Ok(addr), Ok(len)) = (usize::try_from(mapping.addr), usize::try_from(mapping.len))
        else {
            return Err(Failure {
                call: CALL,
                errno: Errno::INVAL,
            });
        };
        // MAP_FIXED_NOREPLACE never replaces an existing mapping; the new
        // one is the run's (unmapped by an undo) as soon as it exists.
        let result = self.backend.mmap(
            addr,
            len,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::SHARED | MapFlags::POPULATE | MapFlags::FIXED_NOREPLACE,
            Some(ring),
            mapping.region.mmap_offset(),
        );
        match result {
            Ok(got) => {
                if got == addr {
                    self.ring_regions.push((got, len));
                    self.mapped.push((object, *mapping));
                    Ok(None)
                } else {
                    // A kernel before 4.17 takes the address as a hint and
                    // maps elsewhere when it is taken: give it back.
                    let _ = self.backend.munmap(got, len);
                    Ok(Some(SkipReason::Taken))
                }
            }
            Err(Errno::EXIST) => Ok(Some(SkipReason::Taken)),
            // Since Linux 6.4 io_uring refuses every caller-chosen address
            // (its get_unmapped_area returns EINVAL for any address, before
            // MAP_FIXED_NOREPLACE looks for a clash; so does mremap), and a
            // bad length is EINVAL too. Tell them apart: a taken range is
            // still "taken", and a region the kernel maps where it likes is
            // one it only refuses to place.
            Err(Errno::INVAL) => {
                if range_is_taken(self.backend, addr, len).map_err(fail(CALL))? {
                    Ok(Some(SkipReason::Taken))
                } else if region_maps_anywhere(
                    self.backend,
                    ring,
                    len,
                    mapping.region.mmap_offset(),
                ) {
                    Ok(Some(SkipReason::AddressRefused))
                } else {
                    Err(Failure {
                        call: CALL,
                        errno: Errno::INVAL,
                    })
                }
            }
            Err(errno) => Err(Failure { call: CALL, errno }),
        }
    }
}

/// Whether anything is mapped in `[addr, addr + len)`: a throwaway
/// `MAP_FIXED_NOREPLACE` placeholder there fails with `EEXIST` exactly then.
fn range_is_taken<B: Backend>(backend: &mut B, addr: usize, len: usize) -> Result<bool, Errno> {
    // MAP_FIXED_NOREPLACE never replaces an existing mapping; the
    // placeholder is inaccessible and unmapped at once.
    let placeholder = backend.mmap(
        addr,
        len,
        ProtFlags::empty(),
        MapFlags::PRIVATE | MapFlags::FIXED_NOREPLACE | MapFlags::NORESERVE,
        None,
        0,
    );
    match placeholder {
        Ok(got) => {
            let _ = backend.munmap(got, len);
            // Before 4.17 the flag is a hint: landing elsewhere means taken.
            Ok(got != addr)
        }
        Err(Errno::EXIST) => Ok(true),
        Err(errno) => Err(errno),
    }
}

/// Whether the kernel maps this region of `ring` with this length at an
/// address of its own choosing (the mapping is undone at once).
fn region_maps_anywhere<B: Backend>(backend: &mut B, ring: RawFd, len: usize, offset: u64) -> bool {
    let probe = backend.mmap(
        0,
        len,
        ProtFlags::READ | ProtFlags::WRITE,
        MapFlags::SHARED,
        Some(ring),
        offset,
    );
    match probe {
        Ok(got) => {
            let _ = backend.munmap(got, len);
            true
        }
        Err(_) => false,
    }
}
