//! The part of a ring's continuity state that lives in the program's
//! memory: the SQ array, the queued SQEs and the unconsumed CQEs. The BPF
//! program reads the positions and the owner from the kernel; this module
//! reads the entries between them from the target's view of the ring
//! (`/proc/PID/mem` at the ring's mappings, or for a NO_MMAP ring at the
//! memory the program gave, which [`locate_user_memory`] finds by page
//! frame number), at the offsets the kernel
//! gives a ring of the same sizes and layout flags (learned from a
//! throwaway ring of the dumper's own, so they are the running kernel's).
//!
//! Why the program's memory and not BPF: the entries are up to 4 MiB of
//! SQEs and 2 MiB of CQEs per ring, far beyond one iterator object (32
//! KiB), while one read of the mapping takes them whole; and what the
//! program sees is what a restore must put back. A ring with no mapping in
//! the target (or a NO_MMAP ring whose memory was not found) has its
//! entries marked unknown, with a warning.
//! The bytes of a buffer ring in kernel memory (`IOU_PBUF_RING_MMAP`) that
//! the program mapped are read here too, from that mapping: a detach
//! unmaps it, and a restore puts them back as user memory.
//! A running target may move between the BPF read and this one: only a
//! frozen read (`--freeze`) is exact.

use std::collections::{BTreeSet, HashMap};

use ringplan_image::{
    Cqe, Image, ObjectId, ObjectKind, QueuedSqe, Ring, RingMapping, RingRegion, RingState,
    SetupFlags, SlotSqe, SqeBytes, StateField, UserRegion,
};
use ringplan_kernel::abi::continuity::{cqe_size, sqe_size, CQE32_SIZE, CQE_SIZE, LAYOUT_FLAGS};
use ringplan_kernel::abi::linux::PAGE_SIZE;
use ringplan_kernel::procfs::mem::ProcessMemory;
use ringplan_kernel::procfs::{pagemap, task, Process};

use crate::raw::{Known, PbufMemory, RawRing, RawRingState, RawState, RawWaitRegion, UserMemory};

/// Fills in the entries of every ring of `image` that has a state, from
/// `pid`'s memory, and checks each SINGLE_ISSUER owner is a thread of
/// `pid`. Returns one warning per ring whose entries or owner stay
/// unknown. The image must be validated again afterwards.
pub fn complete(pid: u32, image: &mut Image) -> Vec<String> {
    complete_in(image, &[pid], &|_, ring| Some((pid, ring.mappings.clone()))).warnings
}

/// Which process's memory shows a ring, and its mappings there.
pub(crate) type RingReader<'a> = dyn Fn(ObjectId, &Ring) -> Option<(u32, Vec<RingMapping>)> + 'a;

/// What [`complete_in`] did.
pub(crate) struct Completed {
    pub warnings: Vec<String>,
    /// The process of `processes` whose thread owns each SINGLE_ISSUER
    /// ring with an owner.
    pub owners: HashMap<ObjectId, u32>,
}

/// [`complete`] for rings that several processes may hold: `reader` names
/// the process whose memory shows each ring and its mappings there (`None`:
/// no process maps it), and an owner must be a thread of one of
/// `processes`.
pub(crate) fn complete_in(
    image: &mut Image,
    processes: &[u32],
    reader: &RingReader<'_>,
) -> Completed {
    let mut warnings = Vec::new();
    let mut owners = HashMap::new();
    let mut memories: HashMap<u32, Result<ProcessMemory, String>> = HashMap::new();
    let threads: Vec<(u32, Option<Vec<u32>>)> = processes
        .iter()
        .map(|&pid| (pid, task::ids(Process::Pid(pid)).ok()))
        .collect();
    let whose = match processes {
        [pid] => format!("pid {pid}"),
        _ => format!(
            "the tree of pid {}",
            processes.first().copied().unwrap_or_default()
        ),
    };
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
        let reading = reader(id, ring);
        if let Some((pid, _)) = &reading {
            let memory = memories.entry(*pid).or_insert_with(|| {
                ProcessMemory::open(Process::Pid(*pid)).map_err(|error| error.to_string())
            });
            warnings.extend(capture_kernel_pbuf_rings(memory, ring, id, &fd));
            warnings.extend(capture_kernel_wait_region(memory, ring, id, &fd));
        }
        let Some(mut state) = ring.state.take() else {
            continue;
        };
        let read = match reading {
            None => Err("no process of the dump maps the ring's memory".to_owned()),
            Some((pid, mappings)) => {
                let memory = memories.entry(pid).or_insert_with(|| {
                    ProcessMemory::open(Process::Pid(pid)).map_err(|error| error.to_string())
                });
                match memory {
                    Ok(memory) => read_entries(memory, ring, &mappings, &state, &mut offsets),
                    Err(error) => Err(format!("cannot open the target's memory: {error}")),
                }
            }
        };
        match read {
            Ok(entries) => {
                state.sq_array = entries.sq_array;
                state.sqes = Some(entries.sqes);
                state.unqueued_sqes = entries.unqueued_sqes;
                state.cqes = Some(entries.cqes);
                state.unknown.retain(|field| *field != StateField::Entries);
            }
            Err(why) => warnings.push(format!(
                "ring {id} ({fd}): its queued SQEs and unconsumed CQEs are unknown: {why}"
            )),
        }
        if let Some(tid) = state.owner_tid {
            let owner = threads
                .iter()
                .find(|(_, tids)| tids.as_ref().is_some_and(|tids| tids.contains(&tid)));
            match owner {
                Some((pid, _)) => {
                    owners.insert(id, *pid);
                }
                None => {
                    warnings.push(format!(
                        "ring {id} ({fd}): its SINGLE_ISSUER owner, task {tid}, is not a thread of {whose} \
                         as this pid namespace numbers them; the image records the owner as unknown"
                    ));
                    state.owner_tid = None;
                    state.unknown.push(StateField::OwnerTid);
                    state.unknown.sort();
                }
            }
        }
        ring.state = Some(state);
    }
    Completed { warnings, owners }
}

/// `len` bytes of the target's memory at `addr`, or why not.
fn read_mapped(
    memory: &Result<ProcessMemory, String>,
    addr: u64,
    len: u64,
) -> Result<Vec<u8>, String> {
    let memory = memory
        .as_ref()
        .map_err(|error| format!("cannot open the target's memory: {error}"))?;
    let len = usize::try_from(len).map_err(|_| "too large".to_owned())?;
    let mut bytes = vec![0u8; len];
    memory
        .read_exact_at(addr, &mut bytes)
        .map_err(|error| error.to_string())?;
    Ok(bytes)
}

/// Reads the bytes of a wait region in kernel memory that the program
/// mapped, from its mapping, into `wait_region_contents`, as for buffer
/// rings ([`capture_kernel_pbuf_rings`]); a warning when it cannot.
fn capture_kernel_wait_region(
    memory: &Result<ProcessMemory, String>,
    ring: &mut Ring,
    id: ObjectId,
    fd: &str,
) -> Option<String> {
    let settings = &mut ring.settings;
    let (Some(len), Some(addr), true) = (
        settings.wait_region_len,
        settings.wait_region_addr,
        settings.wait_region_kernel_memory,
    ) else {
        return None;
    };
    match read_mapped(memory, addr, len) {
        Ok(bytes) => {
            settings.wait_region_contents = Some(ringplan_image::KernelMemoryBytes(bytes));
            None
        }
        Err(why) => Some(format!(
            "ring {id} ({fd}): the wait region in kernel memory at {addr:#x}: its bytes are not \
             captured ({why}); it cannot be restored"
        )),
    }
}

/// Reads the bytes of every buffer ring of `ring` in kernel memory that the
/// program mapped (`IOU_PBUF_RING_MMAP`), from the program's mapping, into
/// its `contents`: a detach unmaps that memory, and a restore puts these
/// bytes back as user memory. Returns one warning per ring left without
/// them (the planner refuses such a ring).
fn capture_kernel_pbuf_rings(
    memory: &Result<ProcessMemory, String>,
    ring: &mut Ring,
    id: ObjectId,
    fd: &str,
) -> Vec<String> {
    let mut warnings = Vec::new();
    for entry in ring.pbuf_rings.iter_mut().filter(|entry| entry.mmap) {
        let Some(addr) = entry.addr else {
            continue;
        };
        match read_mapped(memory, addr, entry.memory_len()) {
            Ok(bytes) => entry.contents = Some(ringplan_image::KernelMemoryBytes(bytes)),
            Err(why) => warnings.push(format!(
                "ring {id} ({fd}): buffer ring {} in kernel memory at {addr:#x}: its entries and \
                 tail are not captured ({why}); it cannot be restored",
                entry.bgid
            )),
        }
    }
    warnings
}

/// Pages found by frame number (`/proc/PID/pagemap`), or why not.
type FoundFrames =
    Result<std::collections::BTreeMap<u64, u64>, ringplan_kernel::procfs::ProcfsError>;

/// Where memory looked for by frame lies: the lowest address of the
/// program that maps its first page. Kernel memory no mapping shows is
/// not mapped; the program's own memory must be mapped somewhere. Memory
/// not looked for by frame is left as it is. `what` names it.
fn located(
    memory: &PbufMemory,
    kernel_memory: bool,
    found: &FoundFrames,
    what: &str,
) -> PbufMemory {
    let PbufMemory::Frame(frame) = memory else {
        return memory.clone();
    };
    match found {
        Err(error) => PbufMemory::Unknown(format!("reading the target's pagemap: {error}")),
        Ok(found) => match found.get(frame) {
            Some(&addr) => PbufMemory::Found(addr),
            None if kernel_memory => PbufMemory::NotMapped,
            None => PbufMemory::Unknown(format!("no mapping of the target shows {what}'s pages")),
        },
    }
}

/// Every buffer ring's memory ([`located`]).
fn locate_buffer_rings(ring: &mut RawRing, found: &FoundFrames) {
    let Known::Known(groups) = &mut ring.buffer_groups else {
        return;
    };
    for entry in &mut groups.rings {
        entry.memory = located(&entry.memory, entry.kernel_memory, found, "the buffer ring");
    }
}

/// A registered wait region's memory ([`located`]): its own, or its
/// mapping of the kernel's.
fn locate_wait_region(ring: &mut RawRing, found: &FoundFrames) {
    if let Some(region) = &mut ring.wait_region {
        region.memory = located(
            &region.memory,
            region.kernel_memory,
            found,
            "the wait region",
        );
    }
}

/// Finds, for every NO_MMAP ring of `raw` whose pages the backend gave as
/// frame numbers, where the program has that memory: the lowest address in
/// `pid` that maps each frame (`/proc/PID/pagemap`, one pass over the
/// process's mappings for all rings), with the sizes the kernel pinned for
/// a ring of its sizes and flags (page-aligned, as the kernel requires).
pub fn locate_user_memory(pid: u32, raw: &mut RawState) {
    locate_by_frames(pid, raw);
    for ring in raw.rings.values() {
        let Known::Known(groups) = &ring.buffer_groups else {
            continue;
        };
        for entry in &groups.rings {
            if let PbufMemory::Unknown(why) = &entry.memory {
                raw.notes.push(format!(
                    "buffer ring {} ({} entries): where the program has its memory is unknown ({why}); \
                     the image has no address for it and a restore refuses it",
                    entry.bgid, entry.entries
                ));
            }
        }
    }
    for ring in raw.rings.values() {
        if let Some(RawWaitRegion {
            memory: PbufMemory::Unknown(why),
            ..
        }) = &ring.wait_region
        {
            raw.notes.push(format!(
                "the registered wait region: where the program has its memory is unknown ({why}); \
                 the image has no address for it and a restore refuses it"
            ));
        }
    }
    raw.notes.sort();
}

/// [`locate_user_memory`]'s lookups: one pass over the target's pagemap
/// for every frame wanted.
fn locate_by_frames(pid: u32, raw: &mut RawState) {
    let mut wanted = BTreeSet::new();
    for ring in raw.rings.values() {
        if let Some(RawRingState {
            user_memory: Some(UserMemory::Frames { rings, sqes }),
            ..
        }) = &ring.state
        {
            wanted.extend([*rings, *sqes]);
        }
        if let Known::Known(groups) = &ring.buffer_groups {
            wanted.extend(groups.rings.iter().filter_map(|entry| match entry.memory {
                PbufMemory::Frame(frame) => Some(frame),
                _ => None,
            }));
        }
        if let Some(RawWaitRegion {
            memory: PbufMemory::Frame(frame),
            ..
        }) = ring.wait_region
        {
            wanted.insert(frame);
        }
    }
    if wanted.is_empty() {
        return;
    }
    let found = pagemap::find_frames(Process::Pid(pid), &wanted);
    let mut offsets = OffsetCache::default();
    for ring in raw.rings.values_mut() {
        locate_buffer_rings(ring, &found);
        locate_wait_region(ring, &found);
        let (sq_entries, cq_entries, flags) = (ring.sq_entries, ring.cq_entries, ring.flags);
        let Some(state) = &mut ring.state else {
            continue;
        };
        let Some(UserMemory::Frames { rings, sqes }) = state.user_memory else {
            continue;
        };
        let located = match &found {
            Err(error) => Err(format!("reading the target's pagemap: {error}")),
            Ok(found) => match (found.get(&rings), found.get(&sqes), flags) {
                (Some(&rings_addr), Some(&sqes_addr), Some(flags)) => {
                    user_region_sizes(&mut offsets, sq_entries, cq_entries, flags).map(
                        |(rings_len, sqes_len)| UserMemory::Found {
                            rings: UserRegion {
                                addr: rings_addr,
                                len: rings_len,
                            },
                            sqes: UserRegion {
                                addr: sqes_addr,
                                len: sqes_len,
                            },
                        },
                    )
                }
                _ => Err("no mapping of the target shows the ring's pages".to_owned()),
            },
        };
        state.user_memory = Some(located.unwrap_or_else(UserMemory::Unknown));
    }
}

/// The sizes the kernel pins for a NO_MMAP ring's rings and SQEs: the
/// rings up to the end of the SQ array (or of the CQEs without one), the
/// SQE array, each rounded up to whole pages.
fn user_region_sizes(
    offsets: &mut OffsetCache,
    sq_entries: u32,
    cq_entries: u32,
    flags: u32,
) -> Result<(u64, u64), String> {
    let found = offsets.get(sq_entries, cq_entries, flags)?;
    let cqe = cqe_size(flags).unwrap_or(CQE_SIZE) as u64;
    let rings_end = match found.sq_array {
        Some(array) => u64::from(array) + 4 * u64::from(sq_entries),
        None => u64::from(found.cqes) + cqe * u64::from(cq_entries),
    };
    let sqes_end = sqe_size(flags) as u64 * u64::from(sq_entries);
    Ok((
        rings_end.div_ceil(PAGE_SIZE) * PAGE_SIZE,
        sqes_end.div_ceil(PAGE_SIZE) * PAGE_SIZE,
    ))
}

/// The entries read from one ring's memory.
struct Entries {
    sq_array: Option<Vec<u32>>,
    sqes: Vec<QueuedSqe>,
    unqueued_sqes: Vec<SlotSqe>,
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
    let flags = SetupFlags::from_bits_retain(layout);
    let params =
        ringplan_kernel::probe::ring_params(sq_entries, cq_entries, flags).map_err(|errno| {
            format!(
                "a probe ring of {sq_entries}/{cq_entries} entries with flags {} failed: {errno}",
                SetupFlags::names(layout | SetupFlags::CQSIZE.bits())
            )
        })?;
    let has_array = layout & SetupFlags::NO_SQARRAY.bits() == 0;
    Ok(Offsets {
        sq_array: has_array.then_some(params.sq_off.array),
        cqes: params.cq_off.cqes,
    })
}

fn read_entries(
    memory: &ProcessMemory,
    ring: &Ring,
    mappings: &[RingMapping],
    state: &RingState,
    offsets: &mut OffsetCache,
) -> Result<Entries, String> {
    let setup = &ring.setup;
    let flags = setup.flags.ok_or("the ring's setup flags are unknown")?;
    let cqe_size = cqe_size(flags).ok_or(
        "its CQEs are of mixed sizes (IORING_SETUP_CQE_MIXED), which this dumper does not read",
    )?;
    // Where the program sees the rings and the SQEs: the memory it gave
    // (NO_MMAP), else its mappings of the kernel's; both ring mappings show
    // the same `struct io_rings` (every kernel ringplan runs on has
    // IORING_FEAT_SINGLE_MMAP).
    let (rings, sqe_region) = if state.memory.no_mmap {
        match (state.memory.rings, state.memory.sqes) {
            (Some(rings), Some(sqes)) => (rings, Some(sqes)),
            _ => {
                return Err(
                    "the ring lives in the program's own memory (IORING_SETUP_NO_MMAP), and the dumper did not \
                     find where (it looks the kernel's pinned pages up in /proc/PID/pagemap, which needs \
                     CAP_SYS_ADMIN)"
                        .to_owned(),
                )
            }
        }
    } else {
        let rings = mappings
            .iter()
            .find(|mapping| matches!(mapping.region, RingRegion::SqRing | RingRegion::CqRing))
            .ok_or("the target has no mapping of the ring's memory")?;
        let sqes = mappings
            .iter()
            .find(|mapping| mapping.region == RingRegion::Sqes);
        (
            UserRegion {
                addr: rings.addr,
                len: rings.len,
            },
            sqes.map(|mapping| UserRegion {
                addr: mapping.addr,
                len: mapping.len,
            }),
        )
    };
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
    let mut unqueued_sqes = Vec::new();
    // The whole SQE array, when the program sees it: besides the queued
    // SQEs, a program may have prepared SQEs it has not published yet
    // (liburing writes the slot and its own tail; the ring's tail only at
    // submit), which exist nowhere else.
    let size = sqe_size(flags);
    let all = match sqe_region {
        Some(sqe_mapping) => Some(read(
            sqe_mapping.addr,
            0,
            sq_entries as usize * size,
            sqe_mapping.len,
            "SQE array",
        )?),
        None if queued > 0 => {
            return Err("SQEs are queued but the target has no mapping of the SQE array".to_owned())
        }
        None => None,
    };
    if let Some(all) = &all {
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
        let mut queued_slots = vec![false; sq_entries as usize];
        for sqe in &sqes {
            queued_slots[sqe.slot as usize] = true;
        }
        for ((slot, bytes), queued_here) in (0u32..).zip(all.chunks_exact(size)).zip(queued_slots) {
            if !queued_here && bytes.iter().any(|byte| *byte != 0) {
                unqueued_sqes.push(SlotSqe {
                    slot,
                    bytes: SqeBytes(bytes.to_vec()),
                });
            }
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
        unqueued_sqes,
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
