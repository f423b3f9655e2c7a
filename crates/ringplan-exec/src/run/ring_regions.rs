//! Mapping a new ring's recorded regions at their recorded addresses,
//! never over anything: a taken range, or one the kernel will not place
//! there (Linux 6.4+), is skipped and reported, not an error.

use std::os::fd::RawFd;

use ringplan_image::{ObjectId, RingMapping, RingRegion};
use rustix::io::Errno;
use rustix::mm::{MapFlags, ProtFlags};

use super::{fail, Failure, Run};
use crate::backend::Backend;
use crate::{SkipReason, SkippedMapping};

const CALL: &str = "mmap(ring region)";

impl<B: Backend> Run<'_, B> {
    /// A received ring's mappings of memory its creating process placed
    /// and lent (a tree plan): each lent memfd taken into this process,
    /// mapped shared at every mapping of its region (the rings' memfd for
    /// the SQ and CQ rings, the SQEs' for the SQEs), never over anything,
    /// and closed.
    pub(super) fn map_lent_memory(
        &mut self,
        object: Option<ObjectId>,
        receive: &ringplan_plan::ReceiveFd,
    ) -> Result<(), Failure> {
        const LENT: &str = "mmap(lent ring memory)";
        let lent = object
            .and_then(|object| self.lent_elsewhere.get(&(receive.from_pid, object)))
            .filter(|memfds| memfds.len() == 2)
            .cloned()
            .ok_or(Failure {
                call: "lent ring memory lookup",
                errno: Errno::NOENT,
            })?;
        let object = object.ok_or(Failure {
            call: LENT,
            errno: Errno::INVAL,
        })?;
        for (memfd, sqes) in [(lent[0], false), (lent[1], true)] {
            let copy = self
                .backend
                .receive_fd(receive.from_pid, memfd)
                .map_err(fail("pidfd_getfd(lent ring memory)"))?;
            let number = B::number(&copy);
            let mut result = Ok(());
            for mapping in receive
                .mappings
                .iter()
                .filter(|mapping| (mapping.region == RingRegion::Sqes) == sqes)
            {
                let (Ok(addr), Ok(len)) =
                    (usize::try_from(mapping.addr), usize::try_from(mapping.len))
                else {
                    result = Err(Failure {
                        call: LENT,
                        errno: Errno::INVAL,
                    });
                    break;
                };
                match self.backend.mmap(
                    addr,
                    len,
                    ProtFlags::READ | ProtFlags::WRITE,
                    MapFlags::SHARED | MapFlags::FIXED_NOREPLACE,
                    Some(number),
                    0,
                ) {
                    Ok(got) if got == addr => {
                        self.ring_regions.push((got, len));
                        self.mapped.push((object, *mapping));
                    }
                    Ok(got) => {
                        let _ = self.backend.munmap(got, len);
                        result = Err(Failure {
                            call: LENT,
                            errno: Errno::EXIST,
                        });
                    }
                    Err(errno) => result = Err(Failure { call: LENT, errno }),
                }
                if result.is_err() {
                    break;
                }
            }
            self.backend.close(copy);
            result?;
        }
        Ok(())
    }

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
