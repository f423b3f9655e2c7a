//! Checks of a tree image's processes (version 4; registered ring-fd
//! slots per process, version 5): who holds what must be
//! something a set of processes could hold. Each problem is one line
//! naming the process.

use std::collections::{HashMap, HashSet};

use crate::model::*;

use super::ImageError;

fn bad_process(pid: u32, problem: impl Into<String>) -> ImageError {
    ImageError::BadProcess {
        pid,
        problem: problem.into(),
    }
}

/// The processes' pids unique, each one's parent listed before it, the
/// first the dumped process; each process's objects existing, ascending,
/// each held at an fd, by a mapping or by a registered ring-fd slot, fds
/// valid and claimed by one object each within the process, slots valid
/// and each (thread, offset) held by one ring in the whole tree, a thread
/// in one process; the dumped process's fds, mappings and slots those of
/// the objects; an owner only of a ring with an owner, and one.
pub(super) fn check_processes(image: &Image) -> Result<(), ImageError> {
    let Some(first) = image.processes.first() else {
        return Ok(());
    };
    if image.version < 4 {
        return Err(bad_process(
            first.pid,
            format!(
                "a process tree is listed, which version {} images do not have",
                image.version
            ),
        ));
    }
    if first.pid != image.source.pid || first.parent.is_some() {
        return Err(bad_process(
            first.pid,
            format!(
                "is listed first, so it must be the dumped process {} without a parent",
                image.source.pid
            ),
        ));
    }
    let mut listed: HashSet<u32> = HashSet::new();
    let mut owners: HashMap<ObjectId, u32> = HashMap::new();
    let mut slots = SlotHolders::default();
    for process in &image.processes {
        let pid = process.pid;
        if let Some(parent) = process.parent {
            if !listed.contains(&parent) {
                return Err(bad_process(
                    pid,
                    format!("its parent {parent} is not listed before it in the tree"),
                ));
            }
        } else if pid != first.pid {
            return Err(bad_process(
                pid,
                "has no parent but is not the dumped process",
            ));
        }
        if !listed.insert(pid) {
            return Err(bad_process(pid, "is listed twice in the tree"));
        }
        check_holds(image, process, &mut owners)?;
        for held in &process.holds {
            slots.check(image, pid, held)?;
        }
    }
    check_dumped_process(image, first)
}

/// Who holds each registered ring-fd slot, and which process each
/// thread is in, across the tree.
#[derive(Default)]
struct SlotHolders {
    rings: HashMap<RegisteredRingFd, ObjectId>,
    processes: HashMap<u32, u32>,
}

impl SlotHolders {
    /// `held`'s slots (version 5, rings only, the ring's slots known):
    /// ascending, valid, and neither a slot another ring holds nor a
    /// thread another process has.
    fn check(&mut self, image: &Image, pid: u32, held: &Held) -> Result<(), ImageError> {
        use ringplan_kernel::abi::detach::REGISTERED_RING_FD_SLOTS;
        let id = held.object;
        if held.registered_ring_fds.is_empty() {
            return Ok(());
        }
        let problem = |problem: String| Err(bad_process(pid, format!("ring {id}: {problem}")));
        if image.version < 5 {
            return problem(format!(
                "registered ring fds per process, which version {} images do not have",
                image.version
            ));
        }
        let known = match image.object(id).map(|object| &object.kind) {
            Some(ObjectKind::Ring(ring)) => !ring.unknown.contains(&RingField::RegisteredRingFds),
            _ => return problem("registered ring fds of an object that is not a ring".to_owned()),
        };
        if !known {
            return problem("registered ring fds listed as unknown but held".to_owned());
        }
        if held
            .registered_ring_fds
            .windows(2)
            .any(|pair| pair[0] >= pair[1])
        {
            return problem("registered ring fds repeated or out of order".to_owned());
        }
        for slot in &held.registered_ring_fds {
            if slot.tid == 0 || slot.offset >= REGISTERED_RING_FD_SLOTS {
                return problem(format!(
                    "registered ring fd of thread {} at offset {}: tid 0, or not one of the kernel's \
                     {REGISTERED_RING_FD_SLOTS} slots",
                    slot.tid, slot.offset
                ));
            }
            if let Some(other) = self.rings.insert(*slot, id) {
                return problem(format!(
                    "slot {} of thread {} is also held by ring {other}",
                    slot.offset, slot.tid
                ));
            }
            if let Some(other) = self.processes.insert(slot.tid, pid) {
                if other != pid {
                    return problem(format!("thread {} is in process {other} too", slot.tid));
                }
            }
        }
        Ok(())
    }
}

fn check_holds(
    image: &Image,
    process: &TreeProcess,
    owners: &mut HashMap<ObjectId, u32>,
) -> Result<(), ImageError> {
    let pid = process.pid;
    let mut fd_owner: HashMap<i32, ObjectId> = HashMap::new();
    let mut previous: Option<ObjectId> = None;
    for held in &process.holds {
        let id = held.object;
        if previous.is_some_and(|previous| previous >= id) {
            return Err(bad_process(
                pid,
                format!("holds object {id} twice or out of ascending order"),
            ));
        }
        previous = Some(id);
        let Some(object) = image.object(id) else {
            return Err(bad_process(
                pid,
                format!("holds object {id}, which does not exist"),
            ));
        };
        if held.fds.is_empty() && held.mappings.is_empty() && held.registered_ring_fds.is_empty() {
            return Err(bad_process(
                pid,
                format!("holds object {id} with neither an fd, a mapping nor a registered slot"),
            ));
        }
        let mut previous_fd: Option<i32> = None;
        for entry in &held.fds {
            if entry.fd < 0 || previous_fd.is_some_and(|previous| previous >= entry.fd) {
                return Err(bad_process(
                    pid,
                    format!(
                        "object {id}: fd {} is negative, listed twice or not in ascending order",
                        entry.fd
                    ),
                ));
            }
            previous_fd = Some(entry.fd);
            if let Some(first) = fd_owner.insert(entry.fd, id) {
                return Err(bad_process(
                    pid,
                    format!("objects {first} and {id} both claim fd {}", entry.fd),
                ));
            }
        }
        let ring = match &object.kind {
            ObjectKind::Ring(ring) => Some(ring),
            _ => None,
        };
        if ring.is_none() && (!held.mappings.is_empty() || held.owner) {
            return Err(bad_process(
                pid,
                format!(
                    "object {id} is {} but has ring mappings or an owner",
                    object.kind.name()
                ),
            ));
        }
        if held.owner {
            let has_owner = ring
                .and_then(|ring| ring.state.as_ref())
                .is_some_and(|state| state.owner_tid.is_some());
            if !has_owner {
                return Err(bad_process(
                    pid,
                    format!("owns ring {id}, which records no owner thread"),
                ));
            }
            if let Some(other) = owners.insert(id, pid) {
                return Err(bad_process(
                    pid,
                    format!("owns ring {id}, which process {other} owns too"),
                ));
            }
        }
    }
    Ok(())
}

/// The dumped process's part of the tree says what the objects' own fds
/// and ring mappings (and, from version 5, registered ring-fd slots) say
/// (the image of one process, which a reader of the objects alone sees).
fn check_dumped_process(image: &Image, first: &TreeProcess) -> Result<(), ImageError> {
    let pid = first.pid;
    for object in &image.objects {
        let held = first
            .holds
            .binary_search_by_key(&object.id, |held| held.object)
            .ok()
            .map(|position| &first.holds[position]);
        let (fds, mappings, slots): (&[FdEntry], &[RingMapping], &[RegisteredRingFd]) = held
            .map_or((&[], &[], &[]), |held| {
                (&held.fds, &held.mappings, &held.registered_ring_fds)
            });
        let (ring_mappings, ring_slots): (&[RingMapping], &[RegisteredRingFd]) = match &object.kind
        {
            ObjectKind::Ring(ring) => (&ring.mappings, &ring.registered_ring_fds),
            _ => (&[], &[]),
        };
        // Version 4 trees kept the first holder's slots in the ring.
        let slots_differ = image.version >= 5 && slots != ring_slots;
        if fds != object.fds.as_slice() || mappings != ring_mappings || slots_differ {
            return Err(bad_process(
                pid,
                format!(
                    "the dumped process's fds, mappings or registered ring fds of object {} differ from the object's own",
                    object.id
                ),
            ));
        }
    }
    Ok(())
}
