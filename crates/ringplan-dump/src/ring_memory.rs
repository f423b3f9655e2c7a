//! The part of a ring's continuity state that lives in the program's
//! memory: the SQ array, the queued SQEs and the unconsumed CQEs. The BPF
//! program reads the positions and the owner from the kernel; this module
//! reads the entries between them from the target's view of the ring
//! (`/proc/PID/mem` at the ring's mappings), at the offsets the kernel
//! gives a ring of the same sizes and layout flags (learned from a
//! throwaway ring of the dumper's own, so they are the running kernel's).
//!
//! Why the program's memory and not BPF: the entries are up to 4 MiB of
//! SQEs and 2 MiB of CQEs per ring, far beyond one iterator object (32
//! KiB), while one read of the mapping takes them whole; and what the
//! program sees is what a restore must put back. A ring with no mapping in
//! the target (or with `IORING_SETUP_NO_MMAP`, whose user address the
//! kernel does not keep) has its entries marked unknown, with a warning.
//! A running target may move between the BPF read and this one: only a
//! frozen read (`--freeze`) is exact.

use std::collections::HashMap;

use ringplan_image::{
    Cqe, Image, ObjectKind, QueuedSqe, Ring, RingRegion, RingState, SetupFlags, SqeBytes,
    StateField,
};
use ringplan_kernel::abi::ring_state::{cqe_size, sqe_size, CQE32_SIZE, LAYOUT_FLAGS};
use ringplan_kernel::procfs::mem::ProcessMemory;
use ringplan_kernel::procfs::{task, Process};

/// Fills in the entries of every ring of `image` that has a state, from
/// `pid`'s memory, and checks each SINGLE_ISSUER owner is a thread of
/// `pid`. Returns one warning per ring whose entries or owner stay
/// unknown, and per ring with entries queued or unconsumed (a restore does
/// not put them back yet). The image must be validated again afterwards.
pub fn complete(pid: u32, image: &mut Image) -> Vec<String> {
    let mut warnings = Vec::new();
    let memory = ProcessMemory::open(Process::Pid(pid));
    let threads = task::ids(Process::Pid(pid)).ok();
    let mut offsets = OffsetCache::default();
    for object in &mut image.objects {
        let id = object.id;
        let fd = object
            .fds
            .first()
            .map_or_else(|| "no fd".to_owned(), |entry| format!("fd {}", entry.fd));
        let ObjectKind::Ring(ring) = &mut object.kind else {
            continue;
        };
        let Some(mut state) = ring.state.take() else {
            continue;
        };
        let read = match &memory {
            Ok(memory) => read_entries(memory, ring, &state, &mut offsets),
            Err(error) => Err(format!("cannot open the target's memory: {error}")),
        };
        match read {
            Ok(entries) => {
                state.sq_array = entries.sq_array;
                state.sqes = Some(entries.sqes);
                state.cqes = Some(entries.cqes);
                state.unknown.retain(|field| *field != StateField::Entries);
            }
            Err(why) => warnings.push(format!(
                "ring {id} ({fd}): its queued SQEs and unconsumed CQEs are unknown: {why}"
            )),
        }
        if let Some(tid) = state.owner_tid {
            if !threads
                .as_ref()
                .is_some_and(|threads| threads.contains(&tid))
            {
                warnings.push(format!(
                    "ring {id} ({fd}): its SINGLE_ISSUER owner, task {tid}, is not a thread of pid {pid} \
                     as this pid namespace numbers them; the image records the owner as unknown"
                ));
                state.owner_tid = None;
                state.unknown.push(StateField::OwnerTid);
                state.unknown.sort();
            }
        }
        ring.state = Some(state);
    }
    warnings
}

/// The entries read from one ring's memory.
struct Entries {
    sq_array: Option<Vec<u32>>,
    sqes: Vec<QueuedSqe>,
    cqes: Vec<Cqe>,
}

/// Where things lie in a ring's memory: from `io_uring_params` of a ring
/// set up with the same sizes and layout flags.
#[derive(Debug, Clone, Copy)]
struct Offsets {
    /// `sq_off.array`; `None` with `IORING_SETUP_NO_SQARRAY`.
    sq_array: Option<u32>,
    /// `cq_off.cqes`.
    cqes: u32,
}

/// Offsets learned so far in one dump, by (sq_entries, cq_entries, layout
/// flags).
#[derive(Default)]
struct OffsetCache(HashMap<(u32, u32, u32), Result<Offsets, String>>);

impl OffsetCache {
    fn get(&mut self, sq_entries: u32, cq_entries: u32, flags: u32) -> Result<Offsets, String> {
        let layout = flags & LAYOUT_FLAGS.bits();
        self.0
            .entry((sq_entries, cq_entries, layout))
            .or_insert_with(|| probe_offsets(sq_entries, cq_entries, layout))
            .clone()
    }
}

fn probe_offsets(sq_entries: u32, cq_entries: u32, layout: u32) -> Result<Offsets, String> {
    use rustix::io_uring::{io_uring_params, io_uring_setup, IoringSetupFlags};
    let mut params = io_uring_params::default();
    params.flags = IoringSetupFlags::from_bits_retain(layout | SetupFlags::CQSIZE.bits());
    params.cq_entries = cq_entries;
    // SAFETY: io_uring_setup only fills `params`; the ring is closed
    // unmapped and unused when `ring` drops.
    let ring = unsafe { io_uring_setup(sq_entries, &mut params) }.map_err(|errno| {
        format!(
            "a probe ring of {sq_entries}/{cq_entries} entries with flags {} failed: {errno}",
            SetupFlags::names(layout | SetupFlags::CQSIZE.bits())
        )
    })?;
    drop(ring);
    let has_array = layout & SetupFlags::NO_SQARRAY.bits() == 0;
    Ok(Offsets {
        sq_array: has_array.then_some(params.sq_off.array),
        cqes: params.cq_off.cqes,
    })
}

fn read_entries(
    memory: &ProcessMemory,
    ring: &Ring,
    state: &RingState,
    offsets: &mut OffsetCache,
) -> Result<Entries, String> {
    let setup = &ring.setup;
    let flags = setup.flags.ok_or("the ring's setup flags are unknown")?;
    if flags & SetupFlags::NO_MMAP.bits() != 0 {
        return Err(
            "the ring lives in the program's own memory (IORING_SETUP_NO_MMAP), whose address the kernel does \
             not keep"
                .to_owned(),
        );
    }
    let cqe_size = cqe_size(flags).ok_or(
        "its CQEs are of mixed sizes (IORING_SETUP_CQE_MIXED), which this dumper does not read",
    )?;
    // Both ring mappings show the same `struct io_rings` (every kernel
    // ringplan runs on has IORING_FEAT_SINGLE_MMAP).
    let rings = ring
        .mappings
        .iter()
        .find(|mapping| matches!(mapping.region, RingRegion::SqRing | RingRegion::CqRing))
        .ok_or("the target has no mapping of the ring's memory")?;
    let offsets = offsets.get(setup.sq_entries, setup.cq_entries, flags)?;
    let read = |addr: u64, offset: u64, len: usize, limit: u64, what: &str| {
        if offset.saturating_add(len as u64) > limit {
            return Err(format!(
                "the {what} end past the mapping at {addr:#x} ({limit} bytes)"
            ));
        }
        let mut bytes = vec![0u8; len];
        memory
            .read_exact_at(addr + offset, &mut bytes)
            .map_err(|error| format!("reading the {what}: {error}"))?;
        Ok(bytes)
    };
    let positions = &state.positions;
    let sq_entries = setup.sq_entries;
    let sq_mask = sq_entries - 1;

    let sq_array = match offsets.sq_array {
        Some(offset) => {
            let bytes = read(
                rings.addr,
                u64::from(offset),
                sq_entries as usize * 4,
                rings.len,
                "SQ array",
            )?;
            Some(words(&bytes))
        }
        None => None,
    };

    let queued = positions.sq_tail.wrapping_sub(positions.cached_sq_head);
    if queued > sq_entries {
        return Err(format!(
            "its SQ tail {} is {queued} past the kernel's head {}, more than the ring's {sq_entries} entries \
             (the kernel would submit only {sq_entries})",
            positions.sq_tail, positions.cached_sq_head
        ));
    }
    let mut sqes = Vec::with_capacity(queued as usize);
    if queued > 0 {
        let sqe_mapping = ring
            .mappings
            .iter()
            .find(|mapping| mapping.region == RingRegion::Sqes)
            .ok_or("SQEs are queued but the target has no mapping of the SQE array")?;
        let size = sqe_size(flags);
        let all = read(
            sqe_mapping.addr,
            0,
            sq_entries as usize * size,
            sqe_mapping.len,
            "SQE array",
        )?;
        for offset in 0..queued {
            let position = positions.cached_sq_head.wrapping_add(offset);
            let index = position & sq_mask;
            let slot = match &sq_array {
                Some(array) => array[index as usize],
                None => index,
            };
            if slot >= sq_entries {
                return Err(format!(
                    "the SQ array sends position {position} to slot {slot}, outside the ring's {sq_entries} \
                     (the kernel would drop it)"
                ));
            }
            let start = slot as usize * size;
            sqes.push(QueuedSqe {
                position,
                slot,
                bytes: SqeBytes(all[start..start + size].to_vec()),
            });
        }
    }

    let unconsumed = positions.cq_tail.wrapping_sub(positions.cq_head);
    if unconsumed > setup.cq_entries {
        return Err(format!(
            "its CQ head {} is {unconsumed} behind the tail {}, more than the ring's {} entries",
            positions.cq_head, positions.cq_tail, setup.cq_entries
        ));
    }
    let mut cqes = Vec::with_capacity(unconsumed as usize);
    if unconsumed > 0 {
        let all = read(
            rings.addr,
            u64::from(offsets.cqes),
            setup.cq_entries as usize * cqe_size,
            rings.len,
            "CQE array",
        )?;
        let cq_mask = setup.cq_entries - 1;
        for offset in 0..unconsumed {
            let index = (positions.cq_head.wrapping_add(offset) & cq_mask) as usize;
            cqes.push(parse_cqe(&all[index * cqe_size..(index + 1) * cqe_size]));
        }
    }
    Ok(Entries {
        sq_array,
        sqes,
        cqes,
    })
}

/// Native-endian u32 words.
fn words(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|word| u32::from_ne_bytes([word[0], word[1], word[2], word[3]]))
        .collect()
}

/// A `struct io_uring_cqe` of 16 or 32 bytes (`bytes` is one or the other).
fn parse_cqe(bytes: &[u8]) -> Cqe {
    let u64_at = |at: usize| {
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[at..at + 8]);
        u64::from_ne_bytes(word)
    };
    let u32_at = |at: usize| {
        let mut word = [0u8; 4];
        word.copy_from_slice(&bytes[at..at + 4]);
        u32::from_ne_bytes(word)
    };
    Cqe {
        user_data: u64_at(0),
        res: u32_at(8) as i32,
        flags: u32_at(12),
        extra: (bytes.len() == CQE32_SIZE).then(|| [u64_at(16), u64_at(24)]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cqes_parse_with_and_without_extra_words() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&0x1122_3344_5566_7788u64.to_ne_bytes());
        bytes.extend_from_slice(&(-11i32).to_ne_bytes());
        bytes.extend_from_slice(&2u32.to_ne_bytes());
        assert_eq!(
            parse_cqe(&bytes),
            Cqe {
                user_data: 0x1122_3344_5566_7788,
                res: -11,
                flags: 2,
                extra: None
            }
        );
        bytes.extend_from_slice(&7u64.to_ne_bytes());
        bytes.extend_from_slice(&9u64.to_ne_bytes());
        assert_eq!(parse_cqe(&bytes).extra, Some([7, 9]));
    }

    #[test]
    fn probe_offsets_put_the_sq_array_after_the_cqes() {
        let offsets = probe_offsets(8, 16, 0).expect("probe ring");
        let array = offsets.sq_array.expect("an SQ array");
        assert!(array >= offsets.cqes + 16 * 16, "{offsets:?}");
        let cqe32 = probe_offsets(8, 16, SetupFlags::CQE32.bits()).expect("probe ring");
        assert!(cqe32.sq_array.expect("an SQ array") >= cqe32.cqes + 16 * 32);
    }
}
