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
    setup_flags, validate, Eventfd, FdEntry, File, FileType, Image, ImageError, Object, ObjectId, ObjectKind, Ring,
    RingEventfd, RingField, RingMapping, RingSetup, Source,
};

use crate::raw::{EventfdKey, FileKey, Known, RawFileRole, RawRing, RawState, RingKey};

/// `EFD_SEMAPHORE`
const EFD_SEMAPHORE: u32 = 1;
/// `O_NONBLOCK` (also `EFD_NONBLOCK`)
const O_NONBLOCK: u32 = 0o4000;

/// Why read state could not become an image.
#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    #[error("fd {fd} is not open in the target")]
    NoSuchFd { fd: i32 },
    #[error("fd {fd} is not an io_uring instance")]
    NotARing { fd: i32 },
    #[error("inconsistent dump: {0} (the target changed while it was read?)")]
    Inconsistent(String),
    #[error("the dump does not form a valid image: {0}")]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Ring(RingKey),
    Eventfd(EventfdKey),
    File(FileKey),
}

/// Builds the image of `raw`. `mappings` maps a ring file's inode number to
/// where the process has that ring mapped.
pub fn assemble(
    raw: &RawState,
    mappings: &HashMap<u64, Vec<RingMapping>>,
    source: Source,
    selection: Selection<'_>,
) -> Result<Image, AssembleError> {
    let index = Index::new(raw);
    let reached = walk(raw, roots(raw, &index, selection)?)?;
    let ids = assign_ids(&index, &reached);
    let sq_groups = number_sq_groups(raw, &reached);

    let mut objects = Vec::with_capacity(reached.len());
    for key in &reached {
        let id = ids[key];
        let fds = index.fds_of(*key).to_vec();
        let kind = match *key {
            Key::Ring(ring_key) => ObjectKind::Ring(build_ring(raw, &ids, &sq_groups, mappings, ring_key)?),
            Key::Eventfd(eventfd_key) => ObjectKind::Eventfd(build_eventfd(raw, &index, eventfd_key)?),
            Key::File(file_key) => ObjectKind::File(build_file(raw, file_key)?),
        };
        objects.push(Object { id, fds, kind });
    }
    objects.sort_by_key(|object| object.id);
    let image = Image::new(source, objects);
    validate(&image)?;
    Ok(image)
}

/// Lookups derived once from the raw state.
struct Index {
    fds_by_file: HashMap<FileKey, Vec<FdEntry>>,
    file_of: HashMap<Key, FileKey>,
    no_fds: Vec<FdEntry>,
}

impl Index {
    fn new(raw: &RawState) -> Index {
        let mut fds_by_file: HashMap<FileKey, Vec<FdEntry>> = HashMap::new();
        for fd in &raw.fds {
            fds_by_file.entry(fd.file).or_default().push(FdEntry { fd: fd.fd, cloexec: fd.cloexec });
        }
        for entries in fds_by_file.values_mut() {
            entries.sort_by_key(|entry| entry.fd);
            entries.dedup_by_key(|entry| entry.fd);
        }
        let file_of = raw
            .files
            .iter()
            .map(|(file_key, file)| {
                let key = match file.role {
                    RawFileRole::Ring(ring) => Key::Ring(ring),
                    RawFileRole::Eventfd(eventfd) => Key::Eventfd(eventfd),
                    RawFileRole::Plain => Key::File(*file_key),
                };
                (key, *file_key)
            })
            .collect();
        Index { fds_by_file, file_of, no_fds: Vec::new() }
    }

    fn fds_of(&self, key: Key) -> &[FdEntry] {
        self.file_of.get(&key).and_then(|file| self.fds_by_file.get(file)).unwrap_or(&self.no_fds)
    }

    fn lowest_fd(&self, key: Key) -> Option<i32> {
        self.fds_of(key).first().map(|entry| entry.fd)
    }
}

fn key_of_file(raw: &RawState, file: FileKey) -> Result<Key, AssembleError> {
    let raw_file = raw
        .files
        .get(&file)
        .ok_or_else(|| AssembleError::Inconsistent(format!("a registered file was not read (file {file:#x})")))?;
    Ok(match raw_file.role {
        RawFileRole::Ring(ring) => Key::Ring(ring),
        RawFileRole::Eventfd(eventfd) => Key::Eventfd(eventfd),
        RawFileRole::Plain => Key::File(file),
    })
}

fn roots(raw: &RawState, index: &Index, selection: Selection<'_>) -> Result<Vec<Key>, AssembleError> {
    match selection {
        Selection::All => {
            let mut rings: Vec<Key> = raw.rings.keys().map(|ring| Key::Ring(*ring)).collect();
            // Rings held at an fd by that fd; any other by identity, which is
            // stable for as long as the process keeps the ring.
            rings.sort_by_cached_key(|key| (index.lowest_fd(*key).unwrap_or(i32::MAX), ring_key(*key)));
            Ok(rings)
        }
        Selection::RingFds(fds) => {
            let mut roots = Vec::new();
            for &fd in fds {
                let raw_fd =
                    raw.fds.iter().find(|raw_fd| raw_fd.fd == fd).ok_or(AssembleError::NoSuchFd { fd })?;
                match key_of_file(raw, raw_fd.file)? {
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
    if flags & setup_flags::ATTACH_WQ == 0 || flags & setup_flags::SQPOLL == 0 {
        return None;
    }
    let thread = ring.sq_thread?;
    let mut creators = raw.rings.iter().filter(|(_, other)| {
        other.sq_thread == Some(thread) && other.flags.is_some_and(|flags| flags & setup_flags::ATTACH_WQ == 0)
    });
    // Each ring without ATTACH_WQ makes its own SQ thread, so at most one
    // ring can be the creator.
    creators.next().map(|(key, _)| *key)
}

/// Every object reachable from `roots`, in the order first reached.
fn walk(raw: &RawState, roots: Vec<Key>) -> Result<Vec<Key>, AssembleError> {
    let mut seen: HashSet<Key> = HashSet::new();
    let mut order = Vec::new();
    let mut queue: VecDeque<Key> = roots.into_iter().collect();
    while let Some(key) = queue.pop_front() {
        if !seen.insert(key) {
            continue;
        }
        order.push(key);
        let Key::Ring(ring_key) = key else { continue };
        let ring = raw
            .rings
            .get(&ring_key)
            .ok_or_else(|| AssembleError::Inconsistent(format!("ring {ring_key:#x} is referenced but was not read")))?;
        if let Some(creator) = sq_thread_creator(raw, ring) {
            queue.push_back(Key::Ring(creator));
        }
        if let Known::Known(Some(eventfd)) = ring.eventfd {
            queue.push_back(Key::Eventfd(eventfd.eventfd));
        }
        for file in ring.files.iter().flatten() {
            queue.push_back(key_of_file(raw, *file)?);
        }
    }
    Ok(order)
}

fn kind_rank(key: Key) -> u8 {
    match key {
        Key::Ring(_) => 0,
        Key::Eventfd(_) => 1,
        Key::File(_) => 2,
    }
}

fn assign_ids(index: &Index, reached: &[Key]) -> HashMap<Key, ObjectId> {
    let mut ordered: Vec<(usize, Key)> = reached.iter().copied().enumerate().collect();
    ordered.sort_by_cached_key(|(reached_at, key)| {
        (kind_rank(*key), index.lowest_fd(*key).map_or((1, 0, *reached_at), |fd| (0, fd, 0)))
    });
    ordered.into_iter().enumerate().map(|(position, (_, key))| (key, ObjectId(position as u32 + 1))).collect()
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
    ids: &HashMap<Key, ObjectId>,
    sq_groups: &HashMap<u64, u32>,
    mappings: &HashMap<u64, Vec<RingMapping>>,
    ring_key: RingKey,
) -> Result<Ring, AssembleError> {
    let raw_ring = raw
        .rings
        .get(&ring_key)
        .ok_or_else(|| AssembleError::Inconsistent(format!("ring {ring_key:#x} was not read")))?;
    let id_of = |key: Key| {
        ids.get(&key).copied().ok_or_else(|| AssembleError::Inconsistent(format!("{key:?} has no id")))
    };
    let mut unknown = Vec::new();
    let flags = raw_ring.flags;
    let sqpoll = flags.map(|flags| flags & setup_flags::SQPOLL != 0);
    let sq_thread_cpu = match flags {
        Some(flags) if flags & setup_flags::SQ_AFF != 0 => raw_ring.sq_thread_cpu,
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
        Known::Known(Some(eventfd)) => {
            Some(RingEventfd { object: id_of(Key::Eventfd(eventfd.eventfd))?, is_async: eventfd.is_async })
        }
        Known::Known(None) => None,
        Known::Unknown => {
            unknown.push(RingField::Eventfd);
            None
        }
    };
    unknown.sort();
    let files = raw_ring
        .files
        .iter()
        .map(|slot| slot.map(|file| key_of_file(raw, file).and_then(id_of)).transpose())
        .collect::<Result<Vec<_>, _>>()?;
    let ring_mappings = raw_ring.inode.and_then(|inode| mappings.get(&inode)).cloned().unwrap_or_default();
    Ok(Ring {
        setup: RingSetup {
            flags,
            sq_entries: raw_ring.sq_entries,
            cq_entries: raw_ring.cq_entries,
            sq_thread_cpu,
            sq_thread_idle_ms,
        },
        wq_parent: sq_thread_creator(raw, raw_ring).map(|creator| id_of(Key::Ring(creator))).transpose()?,
        sq_group: raw_ring.sq_thread.and_then(|thread| sq_groups.get(&thread).copied()),
        eventfd,
        files,
        buffers: raw_ring.buffers.clone(),
        mappings: ring_mappings,
        unknown,
    })
}

fn build_eventfd(raw: &RawState, index: &Index, eventfd_key: EventfdKey) -> Result<Eventfd, AssembleError> {
    let raw_eventfd = raw
        .eventfds
        .get(&eventfd_key)
        .ok_or_else(|| AssembleError::Inconsistent(format!("eventfd {eventfd_key:#x} was not read")))?;
    // The file's flags say whether it is non-blocking now (fcntl can change
    // it); the context's flags only say how it was created.
    let file_flags = index
        .file_of
        .get(&Key::Eventfd(eventfd_key))
        .and_then(|file| raw.files.get(file))
        .and_then(|file| file.flags);
    let nonblock = file_flags.unwrap_or(raw_eventfd.flags) & O_NONBLOCK != 0;
    Ok(Eventfd { count: raw_eventfd.count, semaphore: raw_eventfd.flags & EFD_SEMAPHORE != 0, nonblock })
}

fn build_file(raw: &RawState, file_key: FileKey) -> Result<File, AssembleError> {
    let raw_file = raw
        .files
        .get(&file_key)
        .ok_or_else(|| AssembleError::Inconsistent(format!("file {file_key:#x} was not read")))?;
    Ok(File {
        path: raw_file.path.clone().filter(|path| path.starts_with('/')),
        flags: raw_file.flags,
        pos: raw_file.pos,
        file_type: raw_file.mode.map_or(FileType::Unknown, FileType::from_mode),
    })
}
