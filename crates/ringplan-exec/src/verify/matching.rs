//! Pairing the objects of the original image with those of a dump of the
//! restored process: ids may differ, so objects are matched by what the
//! process can see (fds, and the rings that registered them).

use std::collections::BTreeMap;

use ringplan_image::{Image, Object, ObjectId, ObjectKind};

/// The pairs found, both ways, and what could not be paired.
pub(super) struct Matches {
    /// Original id -> restored id.
    pub(super) forward: BTreeMap<ObjectId, ObjectId>,
    /// Restored id -> original id.
    pub(super) backward: BTreeMap<ObjectId, ObjectId>,
    /// One line per problem, in the order found.
    pub(super) differences: Vec<String>,
}

impl Matches {
    /// Matches every object of `original` it can to one of `restored`:
    /// first by fd (every object the process holds at one), then a ring no
    /// fd holds by its registered ring-fd slots (where `ring_fds`, the
    /// run's report, says each went), then through the matched rings
    /// (their eventfds and table slots).
    pub(super) fn find(
        original: &Image,
        restored: &Image,
        ring_fds: &[crate::RestoredRingFd],
    ) -> Matches {
        let mut matches = Matches {
            forward: BTreeMap::new(),
            backward: BTreeMap::new(),
            differences: Vec::new(),
        };
        matches.by_fd(original, restored);
        matches.by_ring_fd_slot(original, restored, ring_fds);
        matches.through_rings(original, restored);
        matches
    }

    /// A ring no fd holds, by a thread's registered ring-fd slot: a slot
    /// holds one ring, so one shared slot pairs them.
    fn by_ring_fd_slot(
        &mut self,
        original: &Image,
        restored: &Image,
        ring_fds: &[crate::RestoredRingFd],
    ) {
        let by_slot: BTreeMap<(u32, u32), ObjectId> = restored
            .objects
            .iter()
            .filter(|object| object.fds.is_empty())
            .filter_map(|object| match &object.kind {
                ObjectKind::Ring(ring) => Some((object.id, ring)),
                _ => None,
            })
            .flat_map(|(id, ring)| {
                ring.registered_ring_fds
                    .iter()
                    .map(move |slot| ((slot.tid, slot.offset), id))
            })
            .collect();
        for object in original
            .objects
            .iter()
            .filter(|object| object.fds.is_empty())
        {
            let ObjectKind::Ring(ring) = &object.kind else {
                continue;
            };
            let found = ring.registered_ring_fds.iter().find_map(|slot| {
                let went = ring_fds.iter().find(|went| {
                    went.ring == object.id
                        && went.offset == slot.offset
                        && went.recorded_tid == slot.tid
                });
                let tid = match went {
                    Some(went) if !went.registered => return None,
                    Some(went) => went.tid,
                    None => slot.tid,
                };
                by_slot.get(&(tid, slot.offset)).copied()
            });
            if let Some(restored_id) = found {
                self.pair(object.id, restored_id);
            }
        }
    }

    /// Every object the process holds at an fd, by its first fd.
    fn by_fd(&mut self, original: &Image, restored: &Image) {
        let by_fd: BTreeMap<i32, ObjectId> = restored
            .objects
            .iter()
            .flat_map(|object| object.fds.iter().map(move |entry| (entry.fd, object.id)))
            .collect();
        for object in &original.objects {
            if let Some(first) = object.fds.first() {
                match by_fd.get(&first.fd) {
                    Some(&restored_id) => self.pair(object.id, restored_id),
                    None => self.differences.push(format!(
                        "{}: nothing restored at fd {}",
                        describe(object),
                        first.fd
                    )),
                }
            }
        }
    }

    /// Eventfds and table slots, through the rings already matched.
    fn through_rings(&mut self, original: &Image, restored: &Image) {
        for object in &original.objects {
            let ObjectKind::Ring(ring) = &object.kind else {
                continue;
            };
            let Some(restored_ring) = self
                .forward
                .get(&object.id)
                .and_then(|id| restored.object(*id))
            else {
                continue;
            };
            let ObjectKind::Ring(restored_ring) = &restored_ring.kind else {
                continue;
            };
            if let (Some(eventfd), Some(restored_eventfd)) = (ring.eventfd, restored_ring.eventfd) {
                self.pair(eventfd.object, restored_eventfd.object);
            }
            for (original_slot, restored_slot) in ring.files.iter().zip(&restored_ring.files) {
                if let (Some(file), Some(restored_file)) = (original_slot, restored_slot) {
                    self.pair(*file, *restored_file);
                }
            }
        }
    }

    /// Records that `original` is `restored`, unless either is already
    /// paired with another object (a difference).
    fn pair(&mut self, original: ObjectId, restored: ObjectId) {
        match (self.forward.get(&original), self.backward.get(&restored)) {
            (Some(&existing), _) if existing != restored => self.differences.push(format!(
                "{original} matches two restored objects, {existing} and {restored}"
            )),
            (_, Some(&existing)) if existing != original => self.differences.push(format!(
                "restored {restored} matches two original objects, {existing} and {original}"
            )),
            _ => {
                self.forward.insert(original, restored);
                self.backward.insert(restored, original);
            }
        }
    }
}

/// An object as differences name it: kind, id and fds.
pub(super) fn describe(object: &Object) -> String {
    let fds = if object.fds.is_empty() {
        "no fd".to_owned()
    } else {
        format!(
            "fd {}",
            object
                .fds
                .iter()
                .map(|entry| entry.fd.to_string())
                .collect::<Vec<_>>()
                .join(",")
        )
    };
    format!("{} {} ({fds})", object.kind.name(), object.id)
}
