//! Turns what a backend read ([`RawState`]) into an [`Image`]: picks the
//! objects to keep, gives them small deterministic ids, and resolves kernel
//! identities into id references.
//!
//! Ids: rings first, then eventfds, then files; within a kind, objects the
//! process holds at an fd come first by their lowest fd, then the others in
//! the order a walk from the rings reaches them. The same process state
//! therefore always gives the same image.

use std::collections::{HashMap, HashSet, VecDeque};

use ringplan_image::{
    validate, Eventfd, FdEntry, File, FileIdentity, FileType, Held, Image, ImageError,
    LegacyBufferGroup, Object, ObjectId, ObjectKind, PbufRing, RegisteredRingFd, Ring, RingEventfd,
    RingField, RingMapping, RingMemory, RingSettings, RingSetup, RingState, SetupFlags, Source,
    StateField, TreeProcess,
};

use crate::raw::{
    EventfdKey, FileKey, Known, PbufMemory, RawFdEntry, RawFile, RawFileRole, RawPbufRing, RawRing,
    RawState, RawWaitRegion, RingKey, UserMemory,
};

// `O_NONBLOCK` is also `EFD_NONBLOCK`.
use ringplan_kernel::abi::linux::{EFD_SEMAPHORE, O_NONBLOCK};

/// Why read state could not become an image.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AssembleError {
    #[error("fd {fd} is not open in the target")]
    NoSuchFd { fd: i32 },
    #[error("fd {fd} is not an io_uring instance")]
    NotARing { fd: i32 },
    #[error("inconsistent dump: {0} (the target changed while it was read?)")]
    Inconsistent(String),
    /// The image's rule it breaks is the source.
    #[error("the dump does not form a valid image")]
    Invalid(#[from] ImageError),
}

/// Which rings to dump.
#[derive(Debug, Clone, Copy, Default)]
pub enum Selection<'a> {
    /// Every ring the process holds.
    #[default]
    All,
    /// The rings at these fds, plus everything they depend on.
    RingFds(&'a [i32]),
}

/// One object of the image to be. Plain files, the bulk of a large dump,
/// are named by their position in [`Index::files`], so that the per-entry
/// work is indexing rather than hashing; rings and eventfds (few) by their
/// kernel identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Ring(RingKey),
    Eventfd(EventfdKey),
    File(usize),
}

/// Builds the image of `raw`. `mappings` maps a ring file's inode number to
/// where the process has that ring mapped.
pub fn assemble(
    raw: &RawState,
    mappings: &HashMap<u64, Vec<RingMapping>>,
    source: Source,
    selection: Selection<'_>,
) -> Result<Image, AssembleError> {
    let mut index = Index::new(raw);
    let (image, _, _) = assemble_objects(raw, &mut index, mappings, source, selection)?;
    validate(&image)?;
    Ok(image)
}

/// One process of a tree, as [`assemble_tree`] needs it: its fds (their
/// files keyed as in the merged state), its ring mappings by inode, and
/// the rings as it read them (for its threads' registered ring-fd slots,
/// which each process has its own of).
pub struct TreePart<'a> {
    pub pid: u32,
    pub parent: Option<u32>,
    pub fds: &'a [RawFdEntry],
    pub mappings: &'a HashMap<u64, Vec<RingMapping>>,
    pub rings: &'a HashMap<RingKey, RawRing>,
}

/// Builds the image of a process tree: `raw` is what every process read,
/// merged (one entry per kernel object; its `fds` are the first part's,
/// the dumped process's), and `parts` the processes in tree order. The
/// objects are those of every ring any process holds, with the dumped
/// process's fds, mappings and registered ring-fd slots;
/// [`Image::processes`] says what each process holds. A ring whose slots
/// any process could not read has them unknown in every process. Not
/// validated: the caller completes the rings' entries and owners first.
pub fn assemble_tree(
    raw: &RawState,
    parts: &[TreePart<'_>],
    source: Source,
) -> Result<Image, AssembleError> {
    let first = parts.first().ok_or_else(|| {
        AssembleError::Inconsistent("a tree without its dumped process".to_owned())
    })?;
    let mut index = Index::new(raw);
    let (mut image, ids, walked) =
        assemble_objects(raw, &mut index, first.mappings, source, Selection::All)?;
    let mut slots_unknown: Vec<ObjectId> = Vec::new();
    for part in parts {
        let mut holds: std::collections::BTreeMap<ObjectId, Held> = Default::default();

        for entry in part.fds {
            let Ok(key) = index.key_of_file(entry.file) else {
                continue;
            };
            let Some(id) = ids.lookup(key) else { continue };
            held_entry(&mut holds, id).fds.push(FdEntry {
                fd: entry.fd,
                cloexec: entry.cloexec,
            });
        }
        for key in &walked.order {
            let Key::Ring(ring_key) = *key else { continue };
            let mapped = raw
                .rings
                .get(&ring_key)
                .and_then(|ring| ring.inode)
                .and_then(|inode| part.mappings.get(&inode));
            let Some(id) = ids.lookup(*key) else { continue };
            if let Some(mapped) = mapped {
                held_entry(&mut holds, id).mappings = mapped.clone();
            }
            match part
                .rings
                .get(&ring_key)
                .map(|ring| &ring.registered_ring_fds)
            {
                Some(Known::Known(slots)) if !slots.is_empty() => {
                    held_entry(&mut holds, id).registered_ring_fds = slots
                        .iter()
                        .map(|&(tid, offset)| RegisteredRingFd { tid, offset })
                        .collect();
                }
                Some(Known::Unknown) => slots_unknown.push(id),
                _ => {}
            }
        }
        let holds = holds
            .into_values()
            .map(|mut held| {
                held.fds.sort_by_key(|entry| entry.fd);
                held.fds.dedup_by_key(|entry| entry.fd);
                held
            })
            .collect();
        image.processes.push(TreeProcess {
            pid: part.pid,
            parent: part.parent,
            holds,
        });
    }
    set_ring_fd_slots(&mut image, &slots_unknown);
    Ok(image)
}

/// What process `holds` holds of object `id`, made empty when new.
fn held_entry(holds: &mut std::collections::BTreeMap<ObjectId, Held>, id: ObjectId) -> &mut Held {
    holds.entry(id).or_insert_with(|| Held {
        object: id,
        fds: Vec::new(),
        mappings: Vec::new(),
        owner: false,
        registered_ring_fds: Vec::new(),
    })
}

/// A tree's rings' own registered ring-fd slots become the dumped
/// process's (the merged read kept the first holder's); a ring whose
/// slots some process could not read has them unknown everywhere, rather
/// than some processes' slots passed for all.
fn set_ring_fd_slots(image: &mut Image, slots_unknown: &[ObjectId]) {
    let dumped: HashMap<ObjectId, Vec<RegisteredRingFd>> = image
        .processes
        .first()
        .map(|process| {
            process
                .holds
                .iter()
                .map(|held| (held.object, held.registered_ring_fds.clone()))
                .collect()
        })
        .unwrap_or_default();
    for process in &mut image.processes {
        for held in &mut process.holds {
            if slots_unknown.contains(&held.object) {
                held.registered_ring_fds.clear();
            }
        }
        process.holds.retain(|held| {
            !held.fds.is_empty()
                || !held.mappings.is_empty()
                || !held.registered_ring_fds.is_empty()
        });
    }
    for object in &mut image.objects {
        let ObjectKind::Ring(ring) = &mut object.kind else {
            continue;
        };
        if slots_unknown.contains(&object.id) {
            ring.registered_ring_fds.clear();
            if !ring.unknown.contains(&RingField::RegisteredRingFds) {
                ring.unknown.push(RingField::RegisteredRingFds);
                ring.unknown.sort();
            }
        } else {
            ring.registered_ring_fds = dumped.get(&object.id).cloned().unwrap_or_default();
        }
    }
}

/// The objects reachable from the selected rings, with ids; the image
/// without [`Image::processes`], not yet validated.
fn assemble_objects(
    raw: &RawState,
    index: &mut Index<'_>,
    mappings: &HashMap<u64, Vec<RingMapping>>,
    source: Source,
    selection: Selection<'_>,
) -> Result<(Image, Ids, Walked), AssembleError> {
    let walked = walk(raw, index, roots(raw, index, selection)?)?;
    let (ids, by_id) = assign_ids(index, &walked.order);
    let sq_groups = number_sq_groups(raw, &walked.order);

    let mut objects = Vec::with_capacity(by_id.len());
    for (position, key) in by_id.into_iter().enumerate() {
        let id = ObjectId(position as u32 + 1);
        let fds = index.take_fds(key);
        let kind = match key {
            Key::Ring(ring_key) => ObjectKind::Ring(build_ring(
                raw, &walked, &ids, &sq_groups, mappings, ring_key,
            )?),
            Key::Eventfd(eventfd_key) => {
                ObjectKind::Eventfd(build_eventfd(raw, index, eventfd_key)?)
            }
            Key::File(file) => {
                let (key, raw_file) = index.files[file];
                ObjectKind::File(build_file(raw_file, raw.file_identities.get(&key).copied()))
            }
        };
        objects.push(Object { id, fds, kind });
    }
    Ok((Image::new(source, objects), ids, walked))
}

/// Lookups derived once from the raw state.
struct Index<'a> {
    /// Every file read, in the raw state's order; a plain file's
    /// [`Key::File`] is its position here.
    files: Vec<(FileKey, &'a RawFile)>,
    position: HashMap<FileKey, usize>,
    /// The fds of each file, by position, ascending and without repeats.
    fds: Vec<Vec<FdEntry>>,
    /// The file of each ring and eventfd, by position.
    file_of: HashMap<Key, usize>,
}

impl<'a> Index<'a> {
    fn new(raw: &'a RawState) -> Index<'a> {
        let files: Vec<(FileKey, &RawFile)> =
            raw.files.iter().map(|(key, file)| (*key, file)).collect();
        let position: HashMap<FileKey, usize> = files
            .iter()
            .enumerate()
            .map(|(position, (key, _))| (*key, position))
            .collect();
        let mut fds: Vec<Vec<FdEntry>> = vec![Vec::new(); files.len()];
        for fd in &raw.fds {
            if let Some(&file) = position.get(&fd.file) {
                fds[file].push(FdEntry {
                    fd: fd.fd,
                    cloexec: fd.cloexec,
                });
            }
        }
        for entries in &mut fds {
            if entries.len() > 1 {
                entries.sort_by_key(|entry| entry.fd);
                entries.dedup_by_key(|entry| entry.fd);
            }
        }
        let file_of = files
            .iter()
            .enumerate()
            .filter_map(|(position, (_, file))| match file.role {
                RawFileRole::Ring(ring) => Some((Key::Ring(ring), position)),
                RawFileRole::Eventfd(eventfd) => Some((Key::Eventfd(eventfd), position)),
                RawFileRole::Plain => None,
            })
            .collect();
        Index {
            files,
            position,
            fds,
            file_of,
        }
    }

    /// The position of `key`'s file, when it has one.
    fn file_position(&self, key: Key) -> Option<usize> {
        match key {
            Key::File(file) => Some(file),
            _ => self.file_of.get(&key).copied(),
        }
    }

    fn fds_of(&self, key: Key) -> &[FdEntry] {
        self.file_position(key)
            .and_then(|file| self.fds.get(file))
            .map_or(&[], Vec::as_slice)
    }

    /// The fds of `key`, moved out: each object is built once.
    fn take_fds(&mut self, key: Key) -> Vec<FdEntry> {
        let file = self.file_position(key);
        file.and_then(|file| self.fds.get_mut(file))
            .map(std::mem::take)
            .unwrap_or_default()
    }

    fn lowest_fd(&self, key: Key) -> Option<i32> {
        self.fds_of(key).first().map(|entry| entry.fd)
    }

    /// The object a file (an fd's or a registered slot's) stands for.
    fn key_of_file(&self, file: FileKey) -> Result<Key, AssembleError> {
        let position = *self.position.get(&file).ok_or_else(|| {
            AssembleError::Inconsistent(format!("a registered file was not read (file {file:#x})"))
        })?;
        Ok(match self.files[position].1.role {
            RawFileRole::Ring(ring) => Key::Ring(ring),
            RawFileRole::Eventfd(eventfd) => Key::Eventfd(eventfd),
            RawFileRole::Plain => Key::File(position),
        })
    }
}

fn roots(
    raw: &RawState,
    index: &Index<'_>,
    selection: Selection<'_>,
) -> Result<Vec<Key>, AssembleError> {
    match selection {
        Selection::All => {
            let mut rings: Vec<Key> = raw.rings.keys().map(|ring| Key::Ring(*ring)).collect();
            // Rings held at an fd by that fd; any other by identity, which is
            // stable for as long as the process keeps the ring.
            rings.sort_by_cached_key(|key| {
                (index.lowest_fd(*key).unwrap_or(i32::MAX), ring_key(*key))
            });
            Ok(rings)
        }
        Selection::RingFds(fds) => {
            let mut roots = Vec::new();
            for &fd in fds {
                let raw_fd = raw
                    .fds
                    .iter()
                    .find(|raw_fd| raw_fd.fd == fd)
                    .ok_or(AssembleError::NoSuchFd { fd })?;
                match index.key_of_file(raw_fd.file)? {
                    Key::Ring(ring) if raw.rings.contains_key(&ring) => roots.push(Key::Ring(ring)),
                    _ => return Err(AssembleError::NotARing { fd }),
                }
            }
            Ok(roots)
        }
    }
}

fn ring_key(key: Key) -> u64 {
    match key {
        Key::Ring(ring) => ring,
        _ => 0,
    }
}

/// The ring that created `ring`'s SQ thread, when `ring` was attached to it
/// and the creator is still there.
fn sq_thread_creator(raw: &RawState, ring: &RawRing) -> Option<RingKey> {
    let flags = ring.flags?;
    if flags & SetupFlags::ATTACH_WQ.bits() == 0 || flags & SetupFlags::SQPOLL.bits() == 0 {
        return None;
    }
    let thread = ring.sq_thread?;
    let mut creators = raw.rings.iter().filter(|(_, other)| {
        other.sq_thread == Some(thread)
            && other
                .flags
                .is_some_and(|flags| flags & SetupFlags::ATTACH_WQ.bits() == 0)
    });
    // Each ring without ATTACH_WQ makes its own SQ thread, so at most one
    // ring can be the creator.
    creators.next().map(|(key, _)| *key)
}

/// What a walk from the roots reached.
struct Walked {
    /// Every object reachable from the roots, in the order first reached.
    order: Vec<Key>,
    /// Each reached ring's registered file table, resolved to objects.
    slots: HashMap<RingKey, Vec<Option<Key>>>,
}

fn walk(raw: &RawState, index: &Index<'_>, roots: Vec<Key>) -> Result<Walked, AssembleError> {
    let mut seen: HashSet<Key> = HashSet::new();
    let mut seen_files = vec![false; index.files.len()];
    let mut order = Vec::new();
    let mut slots = HashMap::new();
    let mut queue: VecDeque<Key> = roots.into_iter().collect();
    while let Some(key) = queue.pop_front() {
        let new = match key {
            Key::File(file) => !std::mem::replace(&mut seen_files[file], true),
            _ => seen.insert(key),
        };
        if !new {
            continue;
        }
        order.push(key);
        let Key::Ring(ring_key) = key else { continue };
        let ring = raw.rings.get(&ring_key).ok_or_else(|| {
            AssembleError::Inconsistent(format!(
                "ring {ring_key:#x} is referenced but was not read"
            ))
        })?;
        if let Some(creator) = sq_thread_creator(raw, ring) {
            queue.push_back(Key::Ring(creator));
        }
        if let Known::Known(Some(eventfd)) = ring.eventfd {
            queue.push_back(Key::Eventfd(eventfd.eventfd));
        }
        let table = ring
            .files
            .iter()
            .map(|slot| slot.map(|file| index.key_of_file(file)).transpose())
            .collect::<Result<Vec<_>, _>>()?;
        queue.extend(table.iter().flatten());
        slots.insert(ring_key, table);
    }
    Ok(Walked { order, slots })
}

fn kind_rank(key: Key) -> u8 {
    match key {
        Key::Ring(_) => 0,
        Key::Eventfd(_) => 1,
        Key::File(_) => 2,
    }
}

/// The id of each reached object: plain files by position, the rest by key.
struct Ids {
    files: Vec<Option<ObjectId>>,
    others: HashMap<Key, ObjectId>,
}

impl Ids {
    fn get(&self, key: Key) -> Result<ObjectId, AssembleError> {
        self.lookup(key)
            .ok_or_else(|| AssembleError::Inconsistent(format!("{key:?} has no id")))
    }

    /// The id of `key`, `None` when it is not in the image.
    fn lookup(&self, key: Key) -> Option<ObjectId> {
        match key {
            Key::File(file) => self.files.get(file).copied().flatten(),
            _ => self.others.get(&key).copied(),
        }
    }
}

/// Ids in image order: kind, then objects held at an fd by their lowest
/// fd, then the others in the order reached. Returns the ids and the keys
/// in id order.
fn assign_ids(index: &Index<'_>, reached: &[Key]) -> (Ids, Vec<Key>) {
    let mut ordered: Vec<(usize, Key)> = reached.iter().copied().enumerate().collect();
    ordered.sort_by_cached_key(|(reached_at, key)| {
        (
            kind_rank(*key),
            index
                .lowest_fd(*key)
                .map_or((1, 0, *reached_at), |fd| (0, fd, 0)),
        )
    });
    let mut ids = Ids {
        files: vec![None; index.files.len()],
        others: HashMap::new(),
    };
    for (position, (_, key)) in ordered.iter().enumerate() {
        let id = ObjectId(position as u32 + 1);
        match *key {
            Key::File(file) => ids.files[file] = Some(id),
            _ => {
                ids.others.insert(*key, id);
            }
        }
    }
    (ids, ordered.into_iter().map(|(_, key)| key).collect())
}

/// Numbers SQ threads 0, 1, ... in the order their first ring is reached.
fn number_sq_groups(raw: &RawState, reached: &[Key]) -> HashMap<u64, u32> {
    let mut groups = HashMap::new();
    for key in reached {
        if let Key::Ring(ring) = key {
            if let Some(thread) = raw.rings.get(ring).and_then(|ring| ring.sq_thread) {
                let next = groups.len() as u32;
                groups.entry(thread).or_insert(next);
            }
        }
    }
    groups
}

fn build_ring(
    raw: &RawState,
    walked: &Walked,
    ids: &Ids,
    sq_groups: &HashMap<u64, u32>,
    mappings: &HashMap<u64, Vec<RingMapping>>,
    ring_key: RingKey,
) -> Result<Ring, AssembleError> {
    let raw_ring = raw
        .rings
        .get(&ring_key)
        .ok_or_else(|| AssembleError::Inconsistent(format!("ring {ring_key:#x} was not read")))?;
    let id_of = |key: Key| ids.get(key);
    let mut unknown = Vec::new();
    let flags = raw_ring.flags;
    let sqpoll = flags.map(|flags| flags & SetupFlags::SQPOLL.bits() != 0);
    let sq_thread_cpu = match flags {
        Some(flags) if flags & SetupFlags::SQ_AFF.bits() != 0 => raw_ring.sq_thread_cpu,
        Some(_) => None,
        None => {
            unknown.extend([RingField::Flags, RingField::SqThreadCpu]);
            None
        }
    };
    let sq_thread_idle_ms = if !raw_ring.idle_known {
        unknown.push(RingField::SqThreadIdle);
        None
    } else if sqpoll == Some(true) {
        raw_ring.sq_thread_idle_ms
    } else {
        None
    };
    let eventfd = match raw_ring.eventfd {
        Known::Known(Some(eventfd)) => Some(RingEventfd {
            object: id_of(Key::Eventfd(eventfd.eventfd))?,
            is_async: eventfd.is_async,
        }),
        Known::Known(None) => None,
        Known::Unknown => {
            unknown.push(RingField::Eventfd);
            None
        }
    };
    let (personalities, personality_next) = match &raw_ring.personalities {
        Known::Known((personalities, next)) => (personalities.clone(), *next),
        Known::Unknown => {
            unknown.push(RingField::Personalities);
            (Vec::new(), 0)
        }
    };
    let restrictions = match &raw_ring.restrictions {
        Known::Known(restrictions) => restrictions.clone(),
        Known::Unknown => {
            unknown.push(RingField::Restrictions);
            None
        }
    };
    let (pbuf_rings, legacy_buffer_groups) = match &raw_ring.buffer_groups {
        Known::Known(groups) => (
            groups.rings.iter().map(pbuf_ring).collect(),
            groups
                .legacy
                .iter()
                .map(|group| match &group.buffers {
                    Ok(buffers) => {
                        LegacyBufferGroup::from_buffers(group.bgid, buffers.iter().copied())
                    }
                    Err(_) => LegacyBufferGroup::not_captured(group.bgid),
                })
                .collect(),
        ),
        Known::Unknown => {
            unknown.push(RingField::PbufRings);
            (Vec::new(), Vec::new())
        }
    };
    let settings = match &raw_ring.settings {
        Known::Known(settings) => with_wait_region_memory(settings, raw_ring.wait_region.as_ref()),
        Known::Unknown => {
            unknown.push(RingField::Settings);
            RingSettings::default()
        }
    };
    let registered_ring_fds = match &raw_ring.registered_ring_fds {
        Known::Known(slots) => slots
            .iter()
            .map(|&(tid, offset)| RegisteredRingFd { tid, offset })
            .collect(),
        Known::Unknown => {
            unknown.push(RingField::RegisteredRingFds);
            Vec::new()
        }
    };
    unknown.sort();
    let table = walked
        .slots
        .get(&ring_key)
        .ok_or_else(|| AssembleError::Inconsistent(format!("ring {ring_key:#x} was not walked")))?;
    let files = table
        .iter()
        .map(|slot| slot.map(id_of).transpose())
        .collect::<Result<Vec<_>, _>>()?;
    let ring_mappings = raw_ring
        .inode
        .and_then(|inode| mappings.get(&inode))
        .cloned()
        .unwrap_or_default();
    Ok(Ring {
        setup: RingSetup {
            flags,
            sq_entries: raw_ring.sq_entries,
            cq_entries: raw_ring.cq_entries,
            sq_thread_cpu,
            sq_thread_idle_ms,
        },
        wq_parent: sq_thread_creator(raw, raw_ring)
            .map(|creator| id_of(Key::Ring(creator)))
            .transpose()?,
        sq_group: raw_ring
            .sq_thread
            .and_then(|thread| sq_groups.get(&thread).copied()),
        eventfd,
        files,
        buffers: raw_ring.buffers.clone(),
        mappings: ring_mappings,
        unknown,
        state: build_state(raw_ring),
        personalities,
        personality_next,
        restrictions,
        pbuf_rings,
        legacy_buffer_groups,
        settings,
        registered_ring_fds,
    })
}

/// The settings with where the wait region's memory was found.
fn with_wait_region_memory(
    settings: &RingSettings,
    region: Option<&RawWaitRegion>,
) -> RingSettings {
    let mut settings = settings.clone();
    if let (Some(_), Some(region)) = (settings.wait_region_len, region) {
        settings.wait_region_addr = match region.memory {
            PbufMemory::Found(addr) => Some(addr),
            PbufMemory::Frame(_) | PbufMemory::NotMapped | PbufMemory::Unknown(_) => None,
        };
        settings.wait_region_kernel_memory = region.kernel_memory;
    }
    settings
}

/// A buffer ring as the image holds it: its memory's address where it was
/// found in the program.
fn pbuf_ring(raw: &RawPbufRing) -> PbufRing {
    PbufRing {
        bgid: raw.bgid,
        entries: raw.entries,
        head: raw.head,
        addr: match raw.memory {
            PbufMemory::Found(addr) => Some(addr),
            PbufMemory::Frame(_) | PbufMemory::NotMapped | PbufMemory::Unknown(_) => None,
        },
        mmap: raw.kernel_memory,
        incremental: raw.incremental,
        // Read from the program's memory by `ring_memory::complete`.
        contents: None,
    }
}

/// The ring's continuity state as far as the kernel told it: positions and
/// owner, the overflow list, where a NO_MMAP ring's memory is (as
/// [`crate::ring_memory::locate_user_memory`] found it). The entries in the
/// ring's memory are unknown here; [`crate::ring_memory::complete`] reads
/// them from the program's memory and fills them in.
fn build_state(raw_ring: &RawRing) -> Option<Box<RingState>> {
    let flags = raw_ring.flags?;
    let raw_state = raw_ring.state.as_ref()?;
    let single_issuer = flags & SetupFlags::SINGLE_ISSUER.bits() != 0;
    let no_mmap = flags & SetupFlags::NO_MMAP.bits() != 0;
    let mut unknown = vec![StateField::Entries];
    let overflow = match &raw_state.overflow {
        Known::Known(cqes) => Some(cqes.clone()),
        Known::Unknown => {
            unknown.push(StateField::Overflow);
            None
        }
    };
    let owner_tid = match raw_state.owner_tid {
        Known::Known(tid) => tid.filter(|_| single_issuer),
        Known::Unknown => {
            unknown.push(StateField::OwnerTid);
            None
        }
    };
    let (rings, sqes) = match &raw_state.user_memory {
        Some(UserMemory::Found { rings, sqes }) if no_mmap => (Some(*rings), Some(*sqes)),
        _ => {
            if no_mmap {
                unknown.push(StateField::Memory);
            }
            (None, None)
        }
    };
    unknown.sort();
    Some(Box::new(RingState {
        positions: raw_state.positions,
        sq_array: None,
        sqes: None,
        unqueued_sqes: Vec::new(),
        cqes: None,
        overflow,
        memory: RingMemory {
            no_mmap,
            rings,
            sqes,
        },
        owner_tid,
        unknown,
    }))
}

fn build_eventfd(
    raw: &RawState,
    index: &Index<'_>,
    eventfd_key: EventfdKey,
) -> Result<Eventfd, AssembleError> {
    let raw_eventfd = raw.eventfds.get(&eventfd_key).ok_or_else(|| {
        AssembleError::Inconsistent(format!("eventfd {eventfd_key:#x} was not read"))
    })?;
    // The file's flags say whether it is non-blocking now (fcntl can change
    // it); the context's flags only say how it was created.
    let file_flags = index
        .file_of
        .get(&Key::Eventfd(eventfd_key))
        .and_then(|&file| index.files[file].1.flags);
    let nonblock = file_flags.unwrap_or(raw_eventfd.flags) & O_NONBLOCK != 0;
    Ok(Eventfd {
        count: raw_eventfd.count,
        semaphore: raw_eventfd.flags & EFD_SEMAPHORE != 0,
        nonblock,
    })
}

fn build_file(raw_file: &RawFile, identity: Option<FileIdentity>) -> File {
    File {
        identity,
        path: raw_file.path.clone().filter(|path| path.starts_with('/')),
        flags: raw_file.flags,
        pos: raw_file.pos,
        file_type: raw_file.mode.map_or(FileType::Unknown, FileType::from_mode),
    }
}
