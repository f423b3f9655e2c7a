//! The checks and facts the planner needs before it builds any step: is
//! every object plannable, who uses each eventfd and file, where each ring
//! attaching to another gets its `wq_fd`, and which temporary rings exist.
//!
//! Everything here is one pass over the objects, then passes over the rings
//! and the SQ thread groups only, so it stays linear in the image.

use std::collections::BTreeMap;

use ringplan_image::{
    validate, Image, NapiTracking, Object, ObjectId, ObjectKind, Ring, RingField, SetupFlags,
};

use ringplan_kernel::abi::limits::{KERNEL_FD_LIMIT, MAX_EVENTFD_COUNT};

use crate::continuity::{ring_continuity, RingContinuity};
use crate::error::CompileError;
use crate::model::{MemoryOrigin, SetupRing, TemporaryRing};
use crate::rules::{self, CqEntriesProblem, SetupFlagProblem};

/// Where a ring set up with `IORING_SETUP_ATTACH_WQ` gets its `wq_fd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WqSource {
    /// The ring is not set up attached.
    None,
    /// Another image ring, by object index.
    Object(u32),
    /// A temporary ring, by index into [`Analysis::temporaries`].
    Temporary(u32),
}

/// A ring the plan sets up that is in no image.
#[derive(Debug, Clone)]
pub(crate) struct TemporaryRingPlan {
    pub setup: SetupRing,
    /// The object indices of the first and last ring attached to it; the
    /// planner orders the temporary's setup with the first and its close
    /// with the last.
    pub first_user: u32,
    pub last_user: u32,
}

/// Finds an object's index from its id, and its id from its index, without
/// touching the objects themselves (at a million objects, reading an object
/// to learn its id is a cache miss). Ids are sorted and unique (validated);
/// when they are also dense, both directions are arithmetic, otherwise a
/// compact copy of the ids is searched.
#[derive(Debug, Clone)]
pub(crate) struct ObjectLookup {
    first_id: u32,
    /// Empty when ids are dense (`first_id`, `first_id + 1`, ...).
    sparse_ids: Vec<u32>,
    len: usize,
}

impl ObjectLookup {
    pub fn new(objects: &[Object]) -> Self {
        let first_id = objects.first().map_or(0, |object| object.id.0);
        let last_id = objects.last().map_or(0, |object| object.id.0);
        // Sorted unique ids spanning exactly `len` values are dense.
        let dense = objects.is_empty() || (last_id - first_id) as usize == objects.len() - 1;
        let sparse_ids = if dense {
            Vec::new()
        } else {
            objects.iter().map(|object| object.id.0).collect()
        };
        ObjectLookup {
            first_id,
            sparse_ids,
            len: objects.len(),
        }
    }

    pub fn index_of(&self, id: ObjectId) -> Option<usize> {
        if self.sparse_ids.is_empty() {
            let index = id.0.checked_sub(self.first_id)? as usize;
            (index < self.len).then_some(index)
        } else {
            self.sparse_ids.binary_search(&id.0).ok()
        }
    }

    /// The id of the object at `index` (which must be in range).
    pub fn id_at(&self, index: usize) -> ObjectId {
        if self.sparse_ids.is_empty() {
            ObjectId(self.first_id + index as u32)
        } else {
            ObjectId(self.sparse_ids[index])
        }
    }
}

/// What the planner knows about an image once every check passed.
pub(crate) struct Analysis<'a> {
    pub image: &'a Image,
    pub lookup: ObjectLookup,
    /// Per object index: the object indices of the first and last ring
    /// that registers it (as their eventfd or in their file table).
    pub users: Vec<Option<(u32, u32)>>,
    /// Per object index: where the ring's `wq_fd` comes from (`None` for
    /// everything else).
    pub wq_sources: Vec<WqSource>,
    pub temporaries: Vec<TemporaryRingPlan>,
    /// Every target fd number, ascending.
    pub needed_fds: Vec<i32>,
    /// The object indices of the rings, ascending.
    pub rings: Vec<u32>,
    /// How many file slots all rings' tables have together.
    pub file_slot_count: usize,
    /// How many registered ring-fd slots all rings have together.
    pub ring_fd_slot_count: usize,
    /// Per object index: the ring's continuity steps (`None` for rings
    /// restored without, and for everything else).
    pub continuity: Vec<Option<RingContinuity>>,
}

/// What the planner learns about one SQ thread group.
#[derive(Default)]
struct SqGroupFacts {
    /// The ring without `IORING_SETUP_ATTACH_WQ`: the one that created the
    /// thread (index and id).
    creator: Option<(usize, ObjectId)>,
    /// The CPU the thread is pinned to, and the first ring that said so.
    pinned_cpu: Option<(ObjectId, u32)>,
    /// The largest idle time of any ring in the group: what the kernel's
    /// shared thread uses.
    max_idle_ms: u32,
    /// Rings attached to the thread that name no ring to attach to.
    orphans: Vec<usize>,
}

/// Checks that the image can be planned and gathers what the graph builder
/// needs. Returns the first problem found.
pub(crate) fn analyze(image: &Image) -> Result<Analysis<'_>, CompileError> {
    check_document(image)?;
    let objects = &image.objects;
    let lookup = ObjectLookup::new(objects);
    let scan = scan_objects(image)?;

    // With every ring known, their tables: whether a slot holds a ring is
    // then a bit, not a read of the object (a cache miss per slot at scale).
    // Object indices fit in u32: ids are unique u32 values.
    let mut users: Vec<Option<(u32, u32)>> = vec![None; objects.len()];
    let mut is_ring = vec![false; objects.len()];
    for &ring_index in &scan.rings {
        is_ring[ring_index as usize] = true;
    }
    for &ring_index in &scan.rings {
        let object = &objects[ring_index as usize];
        if let ObjectKind::Ring(ring) = &object.kind {
            record_ring_users(&is_ring, &lookup, ring_index, object.id, ring, &mut users)?;
        }
    }

    let mut wq_sources = vec![WqSource::None; objects.len()];
    let mut temporaries: Vec<TemporaryRingPlan> = Vec::new();
    assign_sq_thread_attachments(&scan.groups, &mut wq_sources, &mut temporaries);
    assign_plain_attachments(
        image,
        &lookup,
        &scan.rings,
        scan.first_unattached_ring,
        &mut wq_sources,
        &mut temporaries,
    );
    check_mapping_overlaps(scan.mapped_ranges)?;

    Ok(Analysis {
        image,
        lookup,
        users,
        wq_sources,
        temporaries,
        needed_fds: scan.needed_fds,
        rings: scan.rings,
        file_slot_count: scan.file_slot_count,
        ring_fd_slot_count: scan.ring_fd_slot_count,
        continuity: scan.continuity,
    })
}

/// Whether this is an image this planner reads, and a valid one.
pub(crate) fn check_document(image: &Image) -> Result<(), CompileError> {
    if image.format != ringplan_image::FORMAT_NAME {
        return Err(CompileError::WrongImageFormat {
            found: image.format.clone(),
            expected: ringplan_image::FORMAT_NAME,
        });
    }
    if !ringplan_image::READABLE_VERSIONS.contains(&image.version) {
        return Err(CompileError::UnsupportedImageVersion {
            found: image.version,
            supported: ringplan_image::FORMAT_VERSION,
        });
    }
    // The planner relies on everything validation guarantees (sorted unique
    // ids, resolving references of the right kind, distinct fds, acyclic
    // wq_parent chains), so it checks rather than trusting its caller.
    validate(image)?;
    Ok(())
}

/// What one pass over the objects learns.
#[derive(Default)]
struct ObjectScan {
    /// Every target fd number, ascending.
    needed_fds: Vec<i32>,
    /// The object indices of the rings, ascending.
    rings: Vec<u32>,
    groups: BTreeMap<u32, SqGroupFacts>,
    /// The lowest-index ring set up without `IORING_SETUP_ATTACH_WQ`.
    first_unattached_ring: Option<usize>,
    file_slot_count: usize,
    ring_fd_slot_count: usize,
    /// Every ring mapping, and the program's memory of every `NO_MMAP`
    /// ring: `(addr, len, ring)`.
    mapped_ranges: Vec<(u64, u64, ObjectId)>,
    /// Per object index, see [`Analysis::continuity`].
    continuity: Vec<Option<RingContinuity>>,
}

/// Checks every object on its own (fds, eventfd counts, ring setups and
/// mappings, SQ thread groups) and gathers what later passes need.
fn scan_objects(image: &Image) -> Result<ObjectScan, CompileError> {
    let mut scan = ObjectScan {
        continuity: vec![None; image.objects.len()],
        ..ObjectScan::default()
    };
    for (index, object) in image.objects.iter().enumerate() {
        for entry in &object.fds {
            if entry.fd >= KERNEL_FD_LIMIT {
                return Err(CompileError::FdTooLarge {
                    object: object.id,
                    fd: entry.fd,
                    max: KERNEL_FD_LIMIT - 1,
                });
            }
            scan.needed_fds.push(entry.fd);
        }
        match &object.kind {
            ObjectKind::Eventfd(eventfd) => {
                if eventfd.count > MAX_EVENTFD_COUNT {
                    return Err(CompileError::EventfdCountTooLarge {
                        eventfd: object.id,
                        count: eventfd.count,
                    });
                }
            }
            ObjectKind::File(_) => {}
            ObjectKind::Ring(ring) => scan_ring(image, &mut scan, index, object.id, ring)?,
        }
    }
    // Validation checked that no fd belongs to two objects, so sorting
    // leaves them distinct.
    scan.needed_fds.sort_unstable();
    Ok(scan)
}

/// One ring's part of [`scan_objects`].
fn scan_ring(
    image: &Image,
    scan: &mut ObjectScan,
    index: usize,
    id: ObjectId,
    ring: &Ring,
) -> Result<(), CompileError> {
    let flags = check_ring(image, id, ring)?;
    for mapping in &ring.mappings {
        rules::check_ring_mapping(mapping)
            .map_err(|problem| CompileError::BadRingMapping { ring: id, problem })?;
        scan.mapped_ranges.push((mapping.addr, mapping.len, id));
    }
    let continuity = ring_continuity(id, ring)?;
    if ring.restrictions.is_some()
        && continuity
            .as_ref()
            .is_some_and(|continuity| continuity.completions.is_some())
    {
        return Err(CompileError::CannotRestore {
            ring: id,
            what: "restrictions",
            reason: "its positions are brought back by NOPs and MSG_RING submitted to it, which a \
                     ring must be enabled for, and restrictions can only be registered before"
                .to_owned(),
        });
    }
    check_moved_heads(id, ring, continuity.is_some())?;
    check_legacy_provides(id, ring, continuity.is_some())?;
    if let Some(continuity) = &continuity {
        if continuity.memory.origin == MemoryOrigin::Program {
            for range in continuity.memory.ranges() {
                scan.mapped_ranges.push((range.addr, range.len, id));
            }
        }
    }
    scan.continuity[index] = continuity;
    scan.rings.push(index as u32);
    scan.file_slot_count += ring.files.len();
    scan.ring_fd_slot_count += ring.registered_ring_fds.len();
    if flags & SetupFlags::ATTACH_WQ.bits() == 0 && scan.first_unattached_ring.is_none() {
        scan.first_unattached_ring = Some(index);
    }
    if let Some(sq_group) = ring.sq_group {
        record_sq_group_member(
            scan.groups.entry(sq_group).or_default(),
            sq_group,
            index,
            id,
            ring,
            flags,
        )?;
    }
    Ok(())
}

/// One address range holds one mapping: a dump never shows two there, and a
/// plan that maps both could only ever map the first.
fn check_mapping_overlaps(
    mut mapped_ranges: Vec<(u64, u64, ObjectId)>,
) -> Result<(), CompileError> {
    mapped_ranges.sort_unstable();
    for pair in mapped_ranges.windows(2) {
        let ((first_addr, first_len, first), (second_addr, second_len, second)) =
            (pair[0], pair[1]);
        if first_addr + first_len > second_addr {
            return Err(CompileError::BadRingMapping {
                ring: second,
                problem: format!(
                    "{second_addr:#x}+{second_len} overlaps ring {first}'s mapping {first_addr:#x}+{first_len}"
                ),
            });
        }
    }
    Ok(())
}

/// Checks one ring's setup; returns its (known) flags.
fn check_ring(image: &Image, id: ObjectId, ring: &Ring) -> Result<u32, CompileError> {
    let backend = image.source.backend.name();
    let unknown = |field: RingField| CompileError::UnknownRingField {
        ring: id,
        field: field.name(),
        backend,
    };
    let Some(flags) = ring.setup.flags else {
        return Err(unknown(RingField::Flags));
    };
    if ring.unknown.contains(&RingField::Eventfd) {
        return Err(unknown(RingField::Eventfd));
    }
    for field in [
        RingField::Personalities,
        RingField::Restrictions,
        RingField::PbufRings,
        RingField::Settings,
        RingField::RegisteredRingFds,
    ] {
        if ring.unknown.contains(&field) {
            return Err(unknown(field));
        }
    }
    check_personalities(id, ring)?;
    check_buffer_groups(id, ring)?;
    check_settings(id, ring)?;
    // Without SQPOLL the idle time means nothing, so not knowing it is fine.
    if flags & SetupFlags::SQPOLL.bits() != 0 && ring.unknown.contains(&RingField::SqThreadIdle) {
        return Err(unknown(RingField::SqThreadIdle));
    }

    let memory_described = ring
        .state
        .as_deref()
        .is_some_and(|state| state.memory.rings.is_some() && state.memory.sqes.is_some());
    match rules::setup_flag_problem(flags, memory_described) {
        Some(SetupFlagProblem::Unknown { bits }) => {
            return Err(CompileError::UnknownSetupFlags { ring: id, bits });
        }
        Some(SetupFlagProblem::Unsupported { flag, reason }) => {
            return Err(CompileError::UnsupportedSetupFlag {
                ring: id,
                flag,
                reason,
            });
        }
        None => {}
    }

    let cq_entries = ring.setup.cq_entries;
    match rules::cq_entries_problem(flags, ring.setup.sq_entries, cq_entries) {
        Some(CqEntriesProblem::NotPowerOfTwo { rounded }) => {
            return Err(CompileError::CqEntriesNotPowerOfTwo {
                ring: id,
                cq_entries,
                rounded,
            });
        }
        Some(CqEntriesProblem::WithoutCqsize { expected }) => {
            return Err(CompileError::CqEntriesWithoutCqsize {
                ring: id,
                cq_entries,
                expected,
            });
        }
        None => {}
    }
    Ok(flags)
}

/// Notes `ring` as a user of its eventfd and of every object in its file
/// table, and refuses rings in a file table.
fn record_ring_users(
    is_ring: &[bool],
    lookup: &ObjectLookup,
    ring_index: u32,
    ring_id: ObjectId,
    ring: &Ring,
    users: &mut [Option<(u32, u32)>],
) -> Result<(), CompileError> {
    let mut note_user = |target_index: usize| {
        let entry = &mut users[target_index];
        *entry = Some(match *entry {
            None => (ring_index, ring_index),
            // Rings are visited in ascending order, so the first user stays
            // the lowest.
            Some((first, _)) => (first, ring_index),
        });
    };
    if let Some(eventfd) = ring.eventfd {
        if let Some(index) = lookup.index_of(eventfd.object) {
            note_user(index);
        }
    }
    for (slot, target) in ring.files.iter().enumerate() {
        let Some(target) = target else { continue };
        // Validation guarantees every slot resolves.
        let Some(index) = lookup.index_of(*target) else {
            continue;
        };
        if is_ring[index] {
            return Err(CompileError::RingInFileTable {
                ring: ring_id,
                slot,
                target: *target,
            });
        }
        note_user(index);
    }
    Ok(())
}

fn record_sq_group_member(
    facts: &mut SqGroupFacts,
    sq_group: u32,
    index: usize,
    id: ObjectId,
    ring: &Ring,
    flags: u32,
) -> Result<(), CompileError> {
    if flags & SetupFlags::ATTACH_WQ.bits() == 0 {
        if let Some((_, first)) = facts.creator {
            return Err(CompileError::TwoSqThreadCreators {
                sq_group,
                first,
                second: id,
            });
        }
        facts.creator = Some((index, id));
    } else if ring.wq_parent.is_none() {
        facts.orphans.push(index);
    }
    if flags & SetupFlags::SQ_AFF.bits() != 0 {
        if let Some(cpu) = ring.setup.sq_thread_cpu {
            match facts.pinned_cpu {
                None => facts.pinned_cpu = Some((id, cpu)),
                Some((first, first_cpu)) if first_cpu != cpu => {
                    return Err(CompileError::SqThreadCpuMismatch {
                        sq_group,
                        first,
                        first_cpu,
                        second: id,
                        second_cpu: cpu,
                    });
                }
                Some(_) => {}
            }
        }
    }
    facts.max_idle_ms = facts
        .max_idle_ms
        .max(ring.setup.sq_thread_idle_ms.unwrap_or(0));
    Ok(())
}

/// Gives every SQPOLL ring that attaches without a named parent a ring to
/// attach to: its group's creator when the image has it, else a temporary
/// host ring created with the group's thread parameters.
fn assign_sq_thread_attachments(
    groups: &BTreeMap<u32, SqGroupFacts>,
    wq_sources: &mut [WqSource],
    temporaries: &mut Vec<TemporaryRingPlan>,
) {
    for (&sq_group, facts) in groups {
        if facts.orphans.is_empty() {
            continue;
        }
        let source = match facts.creator {
            Some((creator, _)) => WqSource::Object(creator as u32),
            None => {
                let mut flags = SetupFlags::SQPOLL.bits();
                if facts.pinned_cpu.is_some() {
                    flags |= SetupFlags::SQ_AFF.bits();
                }
                // The orphans are in ascending index (and id) order.
                let first_user = facts.orphans[0] as u32;
                let last_user = facts.orphans[facts.orphans.len() - 1] as u32;
                temporaries.push(TemporaryRingPlan {
                    setup: SetupRing {
                        flags,
                        // The smallest ring the kernel makes; it only hosts
                        // the thread and never carries I/O.
                        sq_entries: 1,
                        cq_entries: 2,
                        sq_thread_cpu: facts.pinned_cpu.map(|(_, cpu)| cpu),
                        // The thread's idle time is the largest over its
                        // rings; giving the host the group's largest means
                        // closing it changes nothing.
                        sq_thread_idle_ms: Some(facts.max_idle_ms),
                        wq_handle: None,
                        temporary: Some(TemporaryRing::SqThreadHost { sq_group }),
                        mappings: Vec::new(),
                        memory: None,
                        owner_tid: None,
                    },
                    first_user,
                    last_user,
                });
                WqSource::Temporary(temporaries.len() as u32 - 1)
            }
        };
        for &orphan in &facts.orphans {
            wq_sources[orphan] = source;
        }
    }
}

/// Gives every ring its named wq_parent, and every ring set up with
/// `IORING_SETUP_ATTACH_WQ` but not SQPOLL and without a named parent some
/// io_uring fd: the kernel only checks that `wq_fd` is one. The lowest-id
/// ring without `ATTACH_WQ` lends it (its setup waits for nothing, so no
/// cycle can form); without one, a temporary plain ring does.
fn assign_plain_attachments(
    image: &Image,
    lookup: &ObjectLookup,
    rings: &[u32],
    first_unattached_ring: Option<usize>,
    wq_sources: &mut [WqSource],
    temporaries: &mut Vec<TemporaryRingPlan>,
) {
    let mut shared_target: Option<WqSource> =
        first_unattached_ring.map(|index| WqSource::Object(index as u32));
    let mut attach_target_index: Option<usize> = None;
    for &index in rings {
        let index = index as usize;
        let ObjectKind::Ring(ring) = &image.objects[index].kind else {
            continue;
        };
        if let Some(parent) = ring.wq_parent {
            // Validation guarantees the parent resolves.
            if let Some(parent_index) = lookup.index_of(parent) {
                wq_sources[index] = WqSource::Object(parent_index as u32);
            }
            continue;
        }
        if !ring.setup.has(SetupFlags::ATTACH_WQ) || ring.setup.has(SetupFlags::SQPOLL) {
            continue;
        }
        let source = *shared_target.get_or_insert_with(|| {
            temporaries.push(TemporaryRingPlan {
                setup: SetupRing {
                    flags: 0,
                    sq_entries: 1,
                    cq_entries: 2,
                    sq_thread_cpu: None,
                    sq_thread_idle_ms: None,
                    wq_handle: None,
                    temporary: Some(TemporaryRing::AttachTarget),
                    mappings: Vec::new(),
                    memory: None,
                    owner_tid: None,
                },
                first_user: index as u32,
                last_user: index as u32,
            });
            attach_target_index = Some(temporaries.len() - 1);
            WqSource::Temporary(temporaries.len() as u32 - 1)
        });
        if let Some(temporary) = attach_target_index {
            temporaries[temporary].last_user = index as u32;
        }
        wq_sources[index] = source;
    }
}

/// Provided buffers a restore cannot bring back, refused rather than
/// restored without them (a program whose reads select buffers from a
/// group would get -ENOBUFS, or other buffers than it provided): legacy
/// groups (their buffers are only in the kernel, not in the image), a
/// buffer ring in kernel memory (`IOU_PBUF_RING_MMAP`) that the program
/// has not mapped or whose bytes the image lacks, and one whose memory the
/// dump did not find. (A
/// moved head is `check_moved_heads`'.)
fn check_buffer_groups(id: ObjectId, ring: &Ring) -> Result<(), CompileError> {
    // A group whose buffers were all taken is left out: for the kernel an
    // empty legacy list is as no group (a read selecting from it gets
    // -ENOBUFS either way, and IORING_REGISTER_PBUF_RING replaces it),
    // and `--verify` compares only groups that hold buffers.
    // A captured group with buffers is provided again (see
    // `check_legacy_provides`).
    if let Some(group) = ring
        .legacy_buffer_groups
        .iter()
        .find(|group| group.buffers.is_none())
    {
        return Err(CompileError::CannotRestore {
            ring: id,
            what: "provided buffers",
            reason: format!(
                "legacy group {} (IORING_OP_PROVIDE_BUFFERS) keeps its buffers in the kernel, \
                 which the image does not capture",
                group.bgid
            ),
        });
    }
    for entry in &ring.pbuf_rings {
        let bgid = entry.bgid;
        // Kernel memory the program mapped comes back as user memory at
        // the same address holding the captured bytes (the kernel would
        // map a new kernel-allocated ring only where it chooses).
        let reason = if entry.mmap && entry.addr.is_none() {
            format!(
                "buffer ring {bgid} is in kernel memory (IOU_PBUF_RING_MMAP) the program has not \
                 mapped: its entries and tail are only in the kernel, which the dump does not read"
            )
        } else if entry.mmap && entry.contents.is_none() {
            format!(
                "buffer ring {bgid} is in kernel memory (IOU_PBUF_RING_MMAP) whose entries and tail \
                 the image does not hold (the dump said why)"
            )
        } else if entry.addr.is_none() {
            format!("buffer ring {bgid}: where the program has its memory is unknown")
        } else {
            continue;
        };
        return Err(CompileError::CannotRestore {
            ring: id,
            what: "provided buffers",
            reason,
        });
    }
    Ok(())
}

/// A legacy group's buffers are provided again by `IORING_OP_PROVIDE_BUFFERS`
/// SQEs the ring runs, each moving its SQ head: only on a ring restored
/// with its positions and enabled when they run (`PROVIDE_BUFFERS` is
/// allowed on an IOPOLL ring).
fn check_legacy_provides(id: ObjectId, ring: &Ring, continuous: bool) -> Result<(), CompileError> {
    let Some(group) = ring
        .legacy_buffer_groups
        .iter()
        .find(|group| group.buffer_count() > 0)
    else {
        return Ok(());
    };
    let Some(why) = why_no_sqes(ring, continuous, "SQEs") else {
        return Ok(());
    };
    Err(CompileError::CannotRestore {
        ring: id,
        what: "provided buffers",
        reason: format!(
            "legacy group {}: its {} buffers are provided again by IORING_OP_PROVIDE_BUFFERS SQEs, {why}",
            group.bgid,
            group.buffer_count()
        ),
    })
}

/// Why a ring cannot run the `what` (SQEs, reads) a restore submits to it
/// to bring state back, if it cannot: they move its positions, so it must
/// be restored with them, and it must be enabled when they run.
fn why_no_sqes(ring: &Ring, continuous: bool, what: &str) -> Option<String> {
    let flags = ring.setup.flags.unwrap_or(0);
    if !continuous {
        Some(
            "which needs the ring restored with its positions (the image has no state of it, or the program \
             had none of its memory mapped)"
                .to_owned(),
        )
    } else if ring.restrictions.is_some() || flags & SetupFlags::R_DISABLED.bits() != 0 {
        Some(format!(
            "which needs {what} on the ring, and it is set up disabled (IORING_SETUP_R_DISABLED)"
        ))
    } else {
        None
    }
}

/// A buffer ring whose head moved is brought back by reads the ring runs
/// (see `RegisterPbufRing`), each moving its SQ head: only on a ring
/// restored with its positions, enabled when the reads run, and not
/// polled (`IOPOLL` reads only files that support polling).
fn check_moved_heads(id: ObjectId, ring: &Ring, continuous: bool) -> Result<(), CompileError> {
    let Some(entry) = ring.pbuf_rings.iter().find(|entry| entry.head != 0) else {
        return Ok(());
    };
    let polled = ring.setup.flags.unwrap_or(0) & SetupFlags::IOPOLL.bits() != 0;
    let why = match why_no_sqes(ring, continuous, "reads") {
        Some(why) => why,
        None if polled => {
            "which needs reads on the ring, and an IOPOLL ring reads only files that support polling"
                .to_owned()
        }
        None => return Ok(()),
    };
    Err(CompileError::CannotRestore {
        ring: id,
        what: "provided buffers",
        reason: format!(
            "buffer ring {}: the kernel's head is {}, and a new buffer ring starts at 0: only consuming \
             buffers moves it, {why}",
            entry.bgid, entry.head
        ),
    })
}

/// Registered settings a restore cannot bring back: a registered wait
/// region (`IORING_REGISTER_MEM_REGION`, 6.13+) in kernel memory (a new
/// ring's would be mapped where the kernel chooses) or whose memory the
/// image does not place, NAPI with static tracking and listed ids the
/// image does not have.
fn check_settings(id: ObjectId, ring: &Ring) -> Result<(), CompileError> {
    let settings = &ring.settings;
    let refuse = |what: &'static str, reason: String| CompileError::CannotRestore {
        ring: id,
        what,
        reason,
    };
    if let Some(len) = settings.wait_region_len {
        let why = if settings.wait_region_kernel_memory && settings.wait_region_contents.is_none() {
            Some(
                "is in kernel memory whose bytes the image does not have (the program had it \
                 unmapped, or the dump could not read it), which a new ring's region would place \
                 where the kernel chooses, not where the program had it",
            )
        } else if settings.wait_region_addr.is_none() {
            Some(
                "is in memory of the program the image does not place (an image before version 5, \
                 or memory the dump did not find)",
            )
        } else {
            None
        };
        if let Some(why) = why {
            return Err(refuse(
                "registered wait region",
                format!(
                    "a wait region of {len} bytes (IORING_REGISTER_MEM_REGION with \
                     IORING_MEM_REGION_REG_WAIT_ARG) {why}"
                ),
            ));
        }
    }
    if let Some(napi) = settings.napi {
        if napi.tracking == NapiTracking::Static
            && napi.ids_listed
            && settings.napi_static_ids.is_none()
        {
            return Err(refuse(
                "NAPI settings",
                "static NAPI tracking with NAPI ids the program added (IO_URING_NAPI_STATIC_ADD_ID), \
                 which the image does not capture (an image before version 5, or a list the dump could not read)"
                    .to_owned(),
            ));
        }
    }
    Ok(())
}

/// The personalities' ids can be brought back by registering in order
/// (see `RegisterPersonalities`).
fn check_personalities(id: ObjectId, ring: &Ring) -> Result<(), CompileError> {
    if ring.personalities.is_empty() && ring.personality_next <= 1 {
        // Nothing registered ever, or (next 0/1) nothing to bring back.
    } else {
        let register = crate::model::RegisterPersonalities {
            ring_handle: crate::model::Handle(0),
            personalities: ring.personalities.clone(),
            next: ring.personality_next,
        };
        if let Some(reason) = crate::validate::personalities_problem(&register) {
            return Err(CompileError::CannotRestore {
                ring: id,
                what: "personalities",
                reason,
            });
        }
    }
    Ok(())
}
