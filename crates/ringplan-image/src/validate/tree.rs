//! Checks of a tree image's processes (version 4): who holds what must be
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
/// each held at an fd or by a mapping, fds valid and claimed by one
/// object each within the process; the dumped process's fds and mappings
/// those of the objects; an owner only of a ring with an owner, and one.
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
    }
    check_dumped_process(image, first)
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
        if held.fds.is_empty() && held.mappings.is_empty() {
            return Err(bad_process(
                pid,
                format!("holds object {id} with neither an fd nor a mapping"),
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
/// and ring mappings say (the image of one process, which a reader of the
/// objects alone sees).
fn check_dumped_process(image: &Image, first: &TreeProcess) -> Result<(), ImageError> {
    let pid = first.pid;
    for object in &image.objects {
        let held = first
            .holds
            .binary_search_by_key(&object.id, |held| held.object)
            .ok()
            .map(|position| &first.holds[position]);
        let (fds, mappings): (&[FdEntry], &[RingMapping]) =
            held.map_or((&[], &[]), |held| (&held.fds, &held.mappings));
        let ring_mappings: &[RingMapping] = match &object.kind {
            ObjectKind::Ring(ring) => &ring.mappings,
            _ => &[],
        };
        if fds != object.fds.as_slice() || mappings != ring_mappings {
            return Err(bad_process(
                pid,
                format!(
                    "the dumped process's fds or mappings of object {} differ from the object's own",
                    object.id
                ),
            ));
        }
    }
    Ok(())
}
