//! Whole-graph checks: everything a reader may rely on once an image decodes.

use std::collections::HashMap;

use crate::model::*;

mod state;
mod tree;

/// Why a decoded image cannot be what a kernel held. Every variant names the
/// object it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    #[error("objects are not in ascending id order: {id} follows {previous}")]
    UnorderedIds { previous: ObjectId, id: ObjectId },
    #[error("duplicate object id {id}")]
    DuplicateId { id: ObjectId },
    #[error("object {id}: fd {fd} is negative")]
    NegativeFd { id: ObjectId, fd: i32 },
    #[error("object {id}: fd {fd} is listed twice or not in ascending order")]
    UnorderedFds { id: ObjectId, fd: i32 },
    #[error("objects {first} and {second} both claim fd {fd}")]
    FdCollision {
        first: ObjectId,
        second: ObjectId,
        fd: i32,
    },
    #[error("ring {ring}: {field} refers to {target}, which does not exist")]
    Dangling {
        ring: ObjectId,
        field: String,
        target: ObjectId,
    },
    #[error(
        "ring {ring}: {field} refers to {target}, which is {}, not {}",
        with_article(found),
        with_article(expected)
    )]
    WrongKind {
        ring: ObjectId,
        field: String,
        target: ObjectId,
        found: &'static str,
        expected: &'static str,
    },
    #[error("ring {ring}: {problem}")]
    BadRing { ring: ObjectId, problem: String },
    #[error("ring {ring}: buffer slot {index}: {problem}")]
    BadBuffer {
        ring: ObjectId,
        index: usize,
        problem: String,
    },
    #[error("ring {ring}: wq_parent chain loops back to it")]
    WqCycle { ring: ObjectId },
    #[error("file {id}: path {path:?} is not absolute")]
    RelativePath { id: ObjectId, path: String },
    #[error("file {id}: path {path:?} contains a NUL byte")]
    PathHasNul { id: ObjectId, path: String },
    #[error("process {pid} of the tree: {problem}")]
    BadProcess { pid: u32, problem: String },
}

fn with_article(kind: &str) -> String {
    let article = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {kind}")
}

fn bad_ring(ring: ObjectId, problem: impl Into<String>) -> ImageError {
    ImageError::BadRing {
        ring,
        problem: problem.into(),
    }
}

/// Checks everything a reader of an image relies on: ids unique and sorted,
/// references resolve to objects of the right kind, fd numbers valid and
/// owned by one object each, ring sizes and flags the kernel would accept,
/// buffers in user space, no wq_parent cycle; in a tree image, each
/// process's holdings ([`tree`]).
pub fn validate(image: &Image) -> Result<(), ImageError> {
    check_ids(image)?;
    check_fds(image)?;
    tree::check_processes(image)?;
    for object in &image.objects {
        match &object.kind {
            ObjectKind::Ring(ring) => check_ring(image, object.id, ring)?,
            ObjectKind::File(file) => check_file(object.id, file)?,
            ObjectKind::Eventfd(_) => {}
        }
    }
    check_ring_fd_slots(image)?;
    check_wq_cycles(image)
}

/// Registered ring fds (version 3): within a ring ascending by (tid,
/// offset), each offset below the kernel's slot count, tid not 0, and no
/// slot of a thread held by two rings (a slot holds one ring).
fn check_ring_fd_slots(image: &Image) -> Result<(), ImageError> {
    use ringplan_kernel::abi::detach::REGISTERED_RING_FD_SLOTS;
    let mut holders: HashMap<RegisteredRingFd, ObjectId> = HashMap::new();
    for object in &image.objects {
        let ObjectKind::Ring(ring) = &object.kind else {
            continue;
        };
        let id = object.id;
        let slots = &ring.registered_ring_fds;
        if slots.is_empty() {
            continue;
        }
        if image.version < 3 {
            return Err(bad_ring(
                id,
                format!(
                    "has registered ring fds, which version {} images do not have",
                    image.version
                ),
            ));
        }
        if ring.unknown.contains(&RingField::RegisteredRingFds) {
            return Err(bad_ring(
                id,
                "registered_ring_fds are listed as unknown but have values",
            ));
        }
        if slots.windows(2).any(|pair| pair[0] >= pair[1]) {
            return Err(bad_ring(
                id,
                "registered_ring_fds: slots repeated or out of order",
            ));
        }
        for slot in slots {
            if slot.tid == 0 {
                return Err(bad_ring(id, "registered_ring_fds: tid 0"));
            }
            if slot.offset >= REGISTERED_RING_FD_SLOTS {
                return Err(bad_ring(
                    id,
                    format!(
                        "registered ring fd of thread {} at offset {}: the kernel has {REGISTERED_RING_FD_SLOTS} slots",
                        slot.tid, slot.offset
                    ),
                ));
            }
            if let Some(other) = holders.insert(*slot, id) {
                return Err(bad_ring(
                    id,
                    format!(
                        "registered ring fd of thread {} at offset {} is also ring {other}'s",
                        slot.tid, slot.offset
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn check_ids(image: &Image) -> Result<(), ImageError> {
    for pair in image.objects.windows(2) {
        let (previous, id) = (pair[0].id, pair[1].id);
        if previous == id {
            return Err(ImageError::DuplicateId { id });
        }
        if previous > id {
            return Err(ImageError::UnorderedIds { previous, id });
        }
    }
    Ok(())
}

fn check_fds(image: &Image) -> Result<(), ImageError> {
    let mut owners: HashMap<i32, ObjectId> = HashMap::new();
    for object in &image.objects {
        let mut previous: Option<i32> = None;
        for entry in &object.fds {
            if entry.fd < 0 {
                return Err(ImageError::NegativeFd {
                    id: object.id,
                    fd: entry.fd,
                });
            }
            if previous.is_some_and(|previous| previous >= entry.fd) {
                return Err(ImageError::UnorderedFds {
                    id: object.id,
                    fd: entry.fd,
                });
            }
            previous = Some(entry.fd);
            if let Some(first) = owners.insert(entry.fd, object.id) {
                return Err(ImageError::FdCollision {
                    first,
                    second: object.id,
                    fd: entry.fd,
                });
            }
        }
    }
    Ok(())
}

fn resolve(
    image: &Image,
    ring: ObjectId,
    field: impl Fn() -> String,
    target: ObjectId,
) -> Result<&Object, ImageError> {
    image.object(target).ok_or_else(|| ImageError::Dangling {
        ring,
        field: field(),
        target,
    })
}

fn expect_kind(
    ring: ObjectId,
    field: impl Fn() -> String,
    target: &Object,
    expected: &'static str,
) -> Result<(), ImageError> {
    if target.kind.name() == expected {
        Ok(())
    } else {
        Err(ImageError::WrongKind {
            ring,
            field: field(),
            target: target.id,
            found: target.kind.name(),
            expected,
        })
    }
}

fn check_ring(image: &Image, id: ObjectId, ring: &Ring) -> Result<(), ImageError> {
    let setup = &ring.setup;
    if setup.sq_entries == 0 || setup.sq_entries > MAX_SQ_ENTRIES {
        return Err(bad_ring(
            id,
            format!(
                "sq_entries {} is outside 1..={MAX_SQ_ENTRIES}",
                setup.sq_entries
            ),
        ));
    }
    if !setup.sq_entries.is_power_of_two() {
        return Err(bad_ring(
            id,
            format!("sq_entries {} is not a power of two", setup.sq_entries),
        ));
    }
    if setup.cq_entries < setup.sq_entries || setup.cq_entries > MAX_CQ_ENTRIES {
        return Err(bad_ring(
            id,
            format!(
                "cq_entries {} is outside {}..={MAX_CQ_ENTRIES}",
                setup.cq_entries, setup.sq_entries
            ),
        ));
    }
    check_unknowns(id, ring)?;
    if let Some(flags) = setup.flags {
        check_flags(id, ring, flags)?;
    }

    if let Some(parent) = ring.wq_parent {
        if parent == id {
            return Err(ImageError::WqCycle { ring: id });
        }
        let target = resolve(image, id, || "wq_parent".to_owned(), parent)?;
        expect_kind(id, || "wq_parent".to_owned(), target, "ring")?;
        if let ObjectKind::Ring(parent_ring) = &target.kind {
            if ring.sq_group.is_some() && parent_ring.sq_group != ring.sq_group {
                return Err(bad_ring(
                    id,
                    format!("shares no SQ thread with its wq_parent {parent}"),
                ));
            }
        }
    }
    if let Some(eventfd) = ring.eventfd {
        let target = resolve(image, id, || "eventfd".to_owned(), eventfd.object)?;
        expect_kind(id, || "eventfd".to_owned(), target, "eventfd")?;
    }

    if ring.files.len() > MAX_FILE_SLOTS as usize {
        return Err(bad_ring(
            id,
            format!(
                "{} file slots exceed the kernel's {MAX_FILE_SLOTS}",
                ring.files.len()
            ),
        ));
    }
    for (index, slot) in ring.files.iter().enumerate() {
        if let Some(target) = slot {
            resolve(image, id, || format!("file slot {index}"), *target)?;
        }
    }
    check_buffers(id, ring)?;
    if let Some(state) = &ring.state {
        if image.version < 2 {
            return Err(bad_ring(
                id,
                format!(
                    "has a state, which version {} images do not have",
                    image.version
                ),
            ));
        }
        if let Some(problem) = state::state_problem(setup, state) {
            return Err(bad_ring(id, problem));
        }
    }
    check_credentials(image.version, id, ring)?;
    check_pbuf_rings(image.version, id, ring)?;
    check_settings(image.version, id, ring)
}

/// Registered settings (version 3): a file allocation range inside the
/// file table and not the whole table (the kernel's own after a
/// registration, never recorded), io-wq limits the kernel accepts, tags on
/// occupied slots in ascending slot order, a wait region of some bytes.
fn check_settings(version: u32, id: ObjectId, ring: &Ring) -> Result<(), ImageError> {
    let settings = &ring.settings;
    if settings.is_empty() {
        return Ok(());
    }
    if version < 3 {
        return Err(bad_ring(
            id,
            format!("has settings, which version {version} images do not have"),
        ));
    }
    if ring.unknown.contains(&RingField::Settings) {
        return Err(bad_ring(
            id,
            "settings are listed as unknown but have values",
        ));
    }
    if let Some(range) = settings.file_alloc_range {
        let end = u64::from(range.start) + u64::from(range.len);
        if end > ring.files.len() as u64 {
            return Err(bad_ring(
                id,
                format!(
                    "file_alloc_range {}..{end} is outside the file table of {} slots",
                    range.start,
                    ring.files.len()
                ),
            ));
        }
        if range.start == 0 && end == ring.files.len() as u64 {
            return Err(bad_ring(
                id,
                "file_alloc_range is the whole file table, which is the kernel's default and is not recorded",
            ));
        }
    }
    if let Some(limits) = settings.iowq_max_workers {
        let most = i32::MAX as u32;
        if limits.bounded > most || limits.unbounded > most {
            return Err(bad_ring(
                id,
                format!("iowq_max_workers above {most}, which the kernel refuses"),
            ));
        }
        if limits.bounded == 0 && limits.unbounded == 0 {
            return Err(bad_ring(id, "iowq_max_workers sets neither class"));
        }
    }
    check_tags(id, "file_tags", &settings.file_tags, |slot| {
        ring.files.get(slot).is_some_and(Option::is_some)
    })?;
    check_tags(id, "buffer_tags", &settings.buffer_tags, |slot| {
        ring.buffers.get(slot).is_some_and(Option::is_some)
    })?;
    if settings.wait_region_len == Some(0) {
        return Err(bad_ring(id, "wait_region of 0 bytes"));
    }
    check_wait_region_memory(version, id, settings)?;
    check_napi_static_ids(version, id, settings)?;
    if let Some(affinity) = &settings.iowq_affinity {
        check_iowq_affinity(version, id, ring, affinity)?;
    }
    Ok(())
}

/// NAPI ids (version 5): only with static tracking, exactly when it lists
/// some, each once.
fn check_napi_static_ids(
    version: u32,
    id: ObjectId,
    settings: &RingSettings,
) -> Result<(), ImageError> {
    let Some(ids) = &settings.napi_static_ids else {
        return Ok(());
    };
    if version < 5 {
        return Err(bad_ring(
            id,
            format!("has napi_static_ids, which version {version} images do not have"),
        ));
    }
    let listed = settings
        .napi
        .filter(|napi| napi.tracking == NapiTracking::Static)
        .map(|napi| napi.ids_listed);
    if listed != Some(!ids.is_empty()) {
        return Err(bad_ring(
            id,
            "napi_static_ids without static NAPI tracking that lists them",
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    if let Some(repeated) = ids.iter().find(|napi_id| !seen.insert(**napi_id)) {
        return Err(bad_ring(
            id,
            format!("napi_static_ids lists NAPI id {repeated} twice"),
        ));
    }
    Ok(())
}

/// Where a wait region's memory is (version 5): only with a length;
/// page-aligned in user space, whole pages, as the kernel registers it.
fn check_wait_region_memory(
    version: u32,
    id: ObjectId,
    settings: &RingSettings,
) -> Result<(), ImageError> {
    use ringplan_kernel::abi::linux::PAGE_SIZE;
    if settings.wait_region_addr.is_none()
        && !settings.wait_region_kernel_memory
        && settings.wait_region_contents.is_none()
    {
        return Ok(());
    }
    if version < 5 {
        return Err(bad_ring(
            id,
            format!("has the wait region's memory, which version {version} images do not have"),
        ));
    }
    let Some(len) = settings.wait_region_len else {
        return Err(bad_ring(
            id,
            "has the memory of a wait region but no wait_region_len",
        ));
    };
    if let Some(contents) = &settings.wait_region_contents {
        if !settings.wait_region_kernel_memory || settings.wait_region_addr.is_none() {
            return Err(bad_ring(
                id,
                "has wait region contents but no kernel memory mapped at an address",
            ));
        }
        if contents.0.len() as u64 != len {
            return Err(bad_ring(
                id,
                format!(
                    "wait region contents of {} bytes, not its {len}",
                    contents.0.len()
                ),
            ));
        }
    }
    let Some(addr) = settings.wait_region_addr else {
        return Ok(());
    };
    if addr == 0 || addr % PAGE_SIZE != 0 || len % PAGE_SIZE != 0 {
        return Err(bad_ring(
            id,
            format!(
                "wait region of {len} bytes at {addr:#x} is not whole pages, which the kernel requires"
            ),
        ));
    }
    if addr
        .checked_add(len)
        .is_none_or(|end| end > USER_ADDRESS_LIMIT)
    {
        return Err(bad_ring(
            id,
            format!("wait region at {addr:#x} leaves user space"),
        ));
    }
    Ok(())
}

/// The most CPUs a kernel has (`NR_CPUS` of 8192, x86-64's largest).
const MOST_CPUS: u32 = 8192;

/// io-wq affinity (version 5): some CPUs, ascending, below 8192; a
/// thread's only without SQPOLL, the SQ thread's only with it.
fn check_iowq_affinity(
    version: u32,
    id: ObjectId,
    ring: &Ring,
    affinity: &IowqAffinity,
) -> Result<(), ImageError> {
    if version < 5 {
        return Err(bad_ring(
            id,
            format!("has iowq_affinity, which version {version} images do not have"),
        ));
    }
    if affinity.cpus.is_empty() {
        return Err(bad_ring(id, "iowq_affinity lists no CPU"));
    }
    if !affinity.cpus.windows(2).all(|pair| pair[0] < pair[1]) {
        return Err(bad_ring(id, "iowq_affinity CPUs repeated or out of order"));
    }
    if affinity.cpus.iter().any(|&cpu| cpu >= MOST_CPUS) {
        return Err(bad_ring(
            id,
            format!("iowq_affinity names a CPU above {}", MOST_CPUS - 1),
        ));
    }
    let Some(flags) = ring.setup.flags else {
        return Ok(());
    };
    let sqpoll = flags & SetupFlags::SQPOLL.bits() != 0;
    match (sqpoll, affinity.tid) {
        (true, Some(_)) => Err(bad_ring(
            id,
            "iowq_affinity of an SQPOLL ring names a thread (its work goes to the SQ thread's io-wq)",
        )),
        (false, None) => Err(bad_ring(
            id,
            "iowq_affinity names no thread on a ring without SQPOLL",
        )),
        _ => Ok(()),
    }
}

/// Tags: ascending slots, each occupied, each tag non-zero (0 is no tag).
fn check_tags(
    id: ObjectId,
    name: &str,
    tags: &[SlotTag],
    occupied: impl Fn(usize) -> bool,
) -> Result<(), ImageError> {
    if tags.windows(2).any(|pair| pair[0].slot >= pair[1].slot) {
        return Err(bad_ring(
            id,
            format!("{name}: slots repeated or out of order"),
        ));
    }
    for tag in tags {
        if tag.tag == 0 {
            return Err(bad_ring(id, format!("{name}: slot {} has tag 0", tag.slot)));
        }
        if !occupied(tag.slot as usize) {
            return Err(bad_ring(
                id,
                format!("{name}: slot {} is empty or outside the table", tag.slot),
            ));
        }
    }
    Ok(())
}

/// Buffer rings and legacy groups (version 3): bgids ascending (so
/// unique), entries a power of two within the kernel's limit, memory
/// page-aligned (the kernel requires it of a program's `ring_addr`) inside
/// user space.
fn check_pbuf_rings(version: u32, id: ObjectId, ring: &Ring) -> Result<(), ImageError> {
    use ringplan_kernel::abi::linux::PAGE_SIZE;
    use ringplan_kernel::abi::pbuf;
    if (!ring.pbuf_rings.is_empty() || !ring.legacy_buffer_groups.is_empty()) && version < 3 {
        return Err(bad_ring(
            id,
            format!("has buffer groups, which version {version} images do not have"),
        ));
    }
    if ring.unknown.contains(&RingField::PbufRings)
        && (!ring.pbuf_rings.is_empty() || !ring.legacy_buffer_groups.is_empty())
    {
        return Err(bad_ring(
            id,
            "pbuf_rings are listed as unknown but have values",
        ));
    }
    if ring
        .pbuf_rings
        .windows(2)
        .any(|pair| pair[0].bgid >= pair[1].bgid)
    {
        return Err(bad_ring(id, "pbuf_rings: bgids repeated or out of order"));
    }
    if ring
        .legacy_buffer_groups
        .windows(2)
        .any(|pair| pair[0].bgid >= pair[1].bgid)
    {
        return Err(bad_ring(
            id,
            "legacy_buffer_groups: bgids repeated or out of order",
        ));
    }
    if let Some(bgid) = ring
        .legacy_buffer_groups
        .iter()
        .map(|group| group.bgid)
        .find(|bgid| ring.pbuf_rings.iter().any(|entry| entry.bgid == *bgid))
    {
        return Err(bad_ring(
            id,
            format!("buffer group {bgid} is both a buffer ring and a legacy group"),
        ));
    }
    for entry in &ring.pbuf_rings {
        let bgid = entry.bgid;
        if !entry.entries.is_power_of_two() || entry.entries > pbuf::MAX_ENTRIES {
            return Err(bad_ring(
                id,
                format!(
                    "buffer ring {bgid}: {} entries is not a power of two up to {}",
                    entry.entries,
                    pbuf::MAX_ENTRIES
                ),
            ));
        }
        // No address: kernel memory the program has not mapped, or the
        // program's memory not found (the dump said why; a restore
        // refuses it).
        if let Some(addr) = entry.addr {
            if addr == 0 || addr % PAGE_SIZE != 0 {
                return Err(bad_ring(
                    id,
                    format!("buffer ring {bgid}: address {addr:#x} is not page-aligned"),
                ));
            }
            if addr
                .checked_add(entry.memory_len())
                .is_none_or(|end| end > USER_ADDRESS_LIMIT)
            {
                return Err(bad_ring(
                    id,
                    format!("buffer ring {bgid}: its memory at {addr:#x} leaves user space"),
                ));
            }
        }
        check_pbuf_contents(version, id, entry)?;
    }
    for group in &ring.legacy_buffer_groups {
        check_legacy_group(version, id, group)?;
    }
    Ok(())
}

/// A buffer ring's captured bytes (version 5): only for kernel memory the
/// program mapped (`mmap` with an `addr`: other memory is the program's),
/// and exactly `entries * 16` of them.
fn check_pbuf_contents(
    version: u32,
    id: ObjectId,
    entry: &crate::PbufRing,
) -> Result<(), ImageError> {
    let Some(contents) = &entry.contents else {
        return Ok(());
    };
    let bgid = entry.bgid;
    if version < 5 {
        return Err(bad_ring(
            id,
            format!("buffer ring {bgid} has contents, which version {version} images do not have"),
        ));
    }
    if !entry.mmap || entry.addr.is_none() {
        return Err(bad_ring(
            id,
            format!(
                "buffer ring {bgid} has contents but is not kernel memory the program mapped \
                 (contents need mmap and an addr)"
            ),
        ));
    }
    if contents.0.len() as u64 != entry.memory_len() {
        return Err(bad_ring(
            id,
            format!(
                "buffer ring {bgid}: {} bytes of contents for {} entries (want {})",
                contents.0.len(),
                entry.entries,
                entry.memory_len()
            ),
        ));
    }
    Ok(())
}

/// A legacy group's buffers (version 5): runs of at least one buffer,
/// bids unique in the group and within `__u16`, every buffer inside user
/// space without its end wrapping (the kernel checks `addr + len * count`
/// for overflow and access_ok on provide).
fn check_legacy_group(
    version: u32,
    id: ObjectId,
    group: &crate::LegacyBufferGroup,
) -> Result<(), ImageError> {
    use ringplan_kernel::abi::legacy_pbuf::MAX_BIDS_PER_BGID;
    let bgid = group.bgid;
    let Some(runs) = &group.buffers else {
        return Ok(());
    };
    if version < 5 {
        return Err(bad_ring(
            id,
            format!("legacy group {bgid} has buffers, which version {version} images do not have"),
        ));
    }
    let mut seen = vec![false; MAX_BIDS_PER_BGID as usize];
    for run in runs {
        let bid = run.bid;
        if run.count == 0 {
            return Err(bad_ring(
                id,
                format!("legacy group {bgid}: the run at bid {bid} has no buffers"),
            ));
        }
        if u32::from(bid)
            .checked_add(run.count)
            .is_none_or(|end| end > MAX_BIDS_PER_BGID)
        {
            return Err(bad_ring(
                id,
                format!(
                    "legacy group {bgid}: {} buffers from bid {bid} run past bid 65535",
                    run.count
                ),
            ));
        }
        if u64::from(run.len)
            .checked_mul(u64::from(run.count))
            .and_then(|size| run.addr.checked_add(size))
            .is_none_or(|end| end > USER_ADDRESS_LIMIT)
        {
            return Err(bad_ring(
                id,
                format!(
                    "legacy group {bgid}: buffers from bid {bid} at {:#x} leave user space",
                    run.addr
                ),
            ));
        }
        for bid in u32::from(bid)..u32::from(bid) + run.count {
            let slot = &mut seen[bid as usize];
            if *slot {
                return Err(bad_ring(
                    id,
                    format!("legacy group {bgid}: bid {bid} is provided twice"),
                ));
            }
            *slot = true;
        }
    }
    Ok(())
}

/// Personalities and restrictions (version 3): ids in the kernel's range
/// and ascending (so unique), the allocator's next id in its range, and
/// restrictions naming opcodes and flags the kernel's bitmaps can hold.
fn check_credentials(version: u32, id: ObjectId, ring: &Ring) -> Result<(), ImageError> {
    use ringplan_kernel::abi::{personality, restriction};
    let recorded =
        !ring.personalities.is_empty() || ring.personality_next != 0 || ring.restrictions.is_some();
    if recorded && version < 3 {
        return Err(bad_ring(
            id,
            format!(
                "has personalities or restrictions, which version {version} images do not have"
            ),
        ));
    }
    let mut previous = 0;
    for entry in &ring.personalities {
        if !(personality::FIRST_ID..=personality::MAX_ID).contains(&entry.id) {
            return Err(bad_ring(
                id,
                format!(
                    "personality id {} is outside {}..={}",
                    entry.id,
                    personality::FIRST_ID,
                    personality::MAX_ID
                ),
            ));
        }
        if entry.id <= previous {
            return Err(bad_ring(
                id,
                format!("personality id {} is repeated or out of order", entry.id),
            ));
        }
        previous = entry.id;
        if let Some(groups) = &entry.groups {
            if groups.len() > personality::MAX_RECORDED_GROUPS as usize {
                return Err(bad_ring(
                    id,
                    format!(
                        "personality {} lists {} groups, more than {}",
                        entry.id,
                        groups.len(),
                        personality::MAX_RECORDED_GROUPS
                    ),
                ));
            }
        }
    }
    if ring.personality_next > personality::MAX_ID + 1 {
        return Err(bad_ring(
            id,
            format!(
                "personality_next {} is beyond {}",
                ring.personality_next,
                personality::MAX_ID + 1
            ),
        ));
    }
    let unknown = |field| ring.unknown.contains(&field);
    if unknown(RingField::Personalities)
        && (!ring.personalities.is_empty() || ring.personality_next != 0)
    {
        return Err(bad_ring(
            id,
            "personalities are listed as unknown but have values",
        ));
    }
    if unknown(RingField::Restrictions) && ring.restrictions.is_some() {
        return Err(bad_ring(
            id,
            "restrictions are listed as unknown but have a value",
        ));
    }
    if let Some(restrictions) = &ring.restrictions {
        for (what, ops) in [
            ("register", &restrictions.register_ops),
            ("SQE", &restrictions.sqe_ops),
        ] {
            if ops.windows(2).any(|pair| pair[0] >= pair[1]) {
                return Err(bad_ring(
                    id,
                    format!("restrictions: {what} opcodes are repeated or out of order"),
                ));
            }
            if let Some(op) = ops
                .iter()
                .find(|op| u32::from(**op) >= restriction::BITMAP_BITS)
            {
                return Err(bad_ring(
                    id,
                    format!(
                        "restrictions: {what} opcode {op} is beyond the kernel's {} bits",
                        restriction::BITMAP_BITS
                    ),
                ));
            }
        }
        let flags = restrictions.sqe_flags_allowed | restrictions.sqe_flags_required;
        if flags & !restriction::SQE_FLAGS_MASK != 0 {
            return Err(bad_ring(
                id,
                format!("restrictions: SQE flags {flags:#x} are not IOSQE_* flags"),
            ));
        }
        if ring.setup.flags.is_none() {
            return Err(bad_ring(id, "restrictions without known setup flags"));
        }
    }
    Ok(())
}

fn check_unknowns(id: ObjectId, ring: &Ring) -> Result<(), ImageError> {
    let unknown = |field| ring.unknown.contains(&field);
    if ring.setup.flags.is_none() != unknown(RingField::Flags) {
        return Err(bad_ring(
            id,
            "flags must be null exactly when listed as unknown",
        ));
    }
    if unknown(RingField::SqThreadCpu) && ring.setup.sq_thread_cpu.is_some() {
        return Err(bad_ring(
            id,
            "sq_thread_cpu is listed as unknown but has a value",
        ));
    }
    if unknown(RingField::SqThreadIdle) && ring.setup.sq_thread_idle_ms.is_some() {
        return Err(bad_ring(
            id,
            "sq_thread_idle_ms is listed as unknown but has a value",
        ));
    }
    if unknown(RingField::Eventfd) && ring.eventfd.is_some() {
        return Err(bad_ring(id, "eventfd is listed as unknown but has a value"));
    }
    Ok(())
}

fn check_flags(id: ObjectId, ring: &Ring, flags: u32) -> Result<(), ImageError> {
    let setup = &ring.setup;
    let sqpoll = flags & SetupFlags::SQPOLL.bits() != 0;
    if flags & SetupFlags::SQ_AFF.bits() != 0 && !sqpoll {
        return Err(bad_ring(
            id,
            "IORING_SETUP_SQ_AFF is set without IORING_SETUP_SQPOLL",
        ));
    }
    if setup.sq_thread_cpu.is_some() != (flags & SetupFlags::SQ_AFF.bits() != 0) {
        return Err(bad_ring(
            id,
            "sq_thread_cpu must be set exactly when IORING_SETUP_SQ_AFF is",
        ));
    }
    if !sqpoll && setup.sq_thread_idle_ms.is_some() {
        return Err(bad_ring(
            id,
            "sq_thread_idle_ms is set without IORING_SETUP_SQPOLL",
        ));
    }
    if sqpoll
        && setup.sq_thread_idle_ms.is_none()
        && !ring.unknown.contains(&RingField::SqThreadIdle)
    {
        return Err(bad_ring(
            id,
            "IORING_SETUP_SQPOLL is set but sq_thread_idle_ms is missing",
        ));
    }
    if ring.sq_group.is_some() != sqpoll {
        return Err(bad_ring(
            id,
            "sq_group must be set exactly when IORING_SETUP_SQPOLL is",
        ));
    }
    if ring.wq_parent.is_some() && flags & SetupFlags::ATTACH_WQ.bits() == 0 {
        return Err(bad_ring(
            id,
            "has a wq_parent but IORING_SETUP_ATTACH_WQ is not set",
        ));
    }
    Ok(())
}

fn check_buffers(id: ObjectId, ring: &Ring) -> Result<(), ImageError> {
    if ring.buffers.len() > MAX_BUFFER_SLOTS as usize {
        return Err(bad_ring(
            id,
            format!(
                "{} buffer slots exceed the kernel's {MAX_BUFFER_SLOTS}",
                ring.buffers.len()
            ),
        ));
    }
    for (index, slot) in ring.buffers.iter().enumerate() {
        let Some(buffer) = slot else { continue };
        let problem = if buffer.len == 0 {
            Some("length is 0 (an empty slot is null)".to_owned())
        } else if buffer.len > MAX_BUFFER_LEN {
            Some(format!("length {} exceeds the kernel's 1 GiB", buffer.len))
        } else if buffer.addr == 0 {
            Some("address is 0".to_owned())
        } else if buffer
            .addr
            .checked_add(buffer.len)
            .is_none_or(|end| end > USER_ADDRESS_LIMIT)
        {
            Some(format!(
                "{:#x}+{} is not a user address range",
                buffer.addr, buffer.len
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(ImageError::BadBuffer {
                ring: id,
                index,
                problem,
            });
        }
    }
    Ok(())
}

fn check_file(id: ObjectId, file: &File) -> Result<(), ImageError> {
    match &file.path {
        Some(path) if !path.starts_with('/') => Err(ImageError::RelativePath {
            id,
            path: path.clone(),
        }),
        // No path with a NUL can be opened (and a plan refuses one).
        Some(path) if path.contains('\0') => Err(ImageError::PathHasNul {
            id,
            path: path.clone(),
        }),
        _ => Ok(()),
    }
}

/// Follows each ring's wq_parent chain; references are already known to
/// resolve to rings. Each ring is walked at most once overall, and only rings
/// are indexed: in a large image almost every object is a file.
fn check_wq_cycles(image: &Image) -> Result<(), ImageError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Unseen,
        OnPath,
        Done,
    }
    let rings: Vec<(ObjectId, Option<ObjectId>)> = image
        .objects
        .iter()
        .filter_map(|object| match &object.kind {
            ObjectKind::Ring(ring) => Some((object.id, ring.wq_parent)),
            _ => None,
        })
        .collect();
    // Ids are sorted, so a ring's position is a binary search away.
    let position = |id: ObjectId| rings.binary_search_by_key(&id, |(ring, _)| *ring).ok();
    let mut marks = vec![Mark::Unseen; rings.len()];
    for start in 0..rings.len() {
        let mut path = Vec::new();
        let mut current = Some(start);
        while let Some(index) = current {
            match marks[index] {
                Mark::Done => break,
                Mark::OnPath => {
                    return Err(ImageError::WqCycle {
                        ring: rings[index].0,
                    })
                }
                Mark::Unseen => {
                    marks[index] = Mark::OnPath;
                    path.push(index);
                    current = rings[index].1.and_then(position);
                }
            }
        }
        for index in path {
            marks[index] = Mark::Done;
        }
    }
    Ok(())
}
