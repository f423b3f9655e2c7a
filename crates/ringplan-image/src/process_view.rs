//! One process's part of a tree image, as an image of that process alone
//! would be: what `plan exec --pid --verify` of a tree compares process by
//! process, with the comparison of a one-process restore.

use std::collections::BTreeSet;

use crate::model::*;

impl Image {
    /// The image of process `pid` of this tree image alone: the objects it
    /// holds, with its own fds and, for a ring, its own mappings and
    /// registered ring-fd slots (version 5), and the
    /// objects those reference (a ring's eventfd, registered files and
    /// `wq_fd` parent), at its fds if it holds them, else at none. `None`
    /// when `pid` is not a process of the tree.
    pub fn process_view(&self, pid: u32) -> Option<Image> {
        let process = self.processes.iter().find(|process| process.pid == pid)?;
        let held = |id: ObjectId| {
            process
                .holds
                .binary_search_by_key(&id, |held| held.object)
                .ok()
                .map(|position| &process.holds[position])
        };
        let mut wanted: BTreeSet<ObjectId> = process.holds.iter().map(|held| held.object).collect();
        let mut unvisited: Vec<ObjectId> = wanted.iter().copied().collect();
        while let Some(id) = unvisited.pop() {
            let Some(ObjectKind::Ring(ring)) = self.object(id).map(|object| &object.kind) else {
                continue;
            };
            let referenced = ring
                .files
                .iter()
                .flatten()
                .copied()
                .chain(ring.eventfd.as_ref().map(|eventfd| eventfd.object))
                .chain(ring.wq_parent);
            for reference in referenced {
                if wanted.insert(reference) {
                    unvisited.push(reference);
                }
            }
        }
        let objects = self
            .objects
            .iter()
            .filter(|object| wanted.contains(&object.id))
            .map(|object| {
                let mut object = object.clone();
                let held = held(object.id);
                object.fds = held.map(|held| held.fds.clone()).unwrap_or_default();
                if let ObjectKind::Ring(ring) = &mut object.kind {
                    ring.mappings = held.map(|held| held.mappings.clone()).unwrap_or_default();
                    // Version 4 trees kept only the first holder's slots,
                    // in the ring.
                    if self.version >= 5 {
                        ring.registered_ring_fds = held
                            .map(|held| held.registered_ring_fds.clone())
                            .unwrap_or_default();
                    }
                }
                object
            })
            .collect();
        let mut source = self.source.clone();
        source.pid = pid;
        let mut view = Image::new(source, objects);
        view.version = self.version;
        Some(view)
    }
}
