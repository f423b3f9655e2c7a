//! Comparing a restored process's image with the original, by structure.
//!
//! Object ids may differ between the two (fd-less objects can be numbered
//! in another order), so objects are matched by what the process can see:
//! rings by their fds; eventfds and files by their fds, or through the ring
//! that registered them (its eventfd, its file table slot by slot). Then
//! every matched pair is compared field by field. Ignored, because they
//! must differ: the pid and kernel of the source, and the numbering of SQ
//! thread groups (only the sharing pattern is compared). Buffer addresses
//! and lengths are compared exactly: they are restored at the same
//! addresses. So are ring mappings (region, address, length, as a set per
//! ring), except those the executor skipped (their range was taken, or
//! mapping was turned off): those are reported, not compared. Files the
//! executor substituted are reported as such, neither as matches nor as
//! differences.

use std::collections::{BTreeMap, BTreeSet};

use ringplan_image::{Image, Object, ObjectId, ObjectKind, RingMapping};

use crate::SkippedMapping;

/// The outcome of [`compare`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Comparison {
    /// One line per difference; empty when the restore is faithful.
    pub differences: Vec<String>,
    /// Matched objects by kind name.
    pub matched: BTreeMap<&'static str, usize>,
    /// Objects of the original that were substituted, one description each.
    pub substituted: Vec<String>,
    /// Ring mappings of the original the executor skipped, one description
    /// each: not compared.
    pub skipped_mappings: Vec<String>,
}

impl Comparison {
    /// Whether nothing differs.
    pub fn is_faithful(&self) -> bool {
        self.differences.is_empty()
    }

    /// A one-line summary of the matches.
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = self
            .matched
            .iter()
            .map(|(kind, count)| format!("{count} {kind}{}", if *count == 1 { "" } else { "s" }))
            .collect();
        if parts.is_empty() {
            parts.push("nothing".to_owned());
        }
        let mut text = format!("{} match", parts.join(", "));
        if !self.substituted.is_empty() {
            text.push_str(&format!(
                "; {} substituted ({})",
                self.substituted.len(),
                self.substituted.join(", ")
            ));
        }
        if !self.skipped_mappings.is_empty() {
            text.push_str(&format!(
                "; {} ring mapping(s) not restored, not compared ({})",
                self.skipped_mappings.len(),
                self.skipped_mappings.join(", ")
            ));
        }
        text
    }
}

struct Matcher<'a> {
    original: &'a Image,
    restored: &'a Image,
    forward: BTreeMap<ObjectId, ObjectId>,
    backward: BTreeMap<ObjectId, ObjectId>,
    differences: Vec<String>,
}

impl Matcher<'_> {
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

fn describe(object: &Object) -> String {
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

/// Compares `restored` (a dump of the restored process) with `original`
/// (the image the plan came from). `substituted` lists the original
/// objects the executor replaced with stand-ins, `skipped_mappings` the
/// ring mappings it did not recreate ([`crate::Restored::skipped_mappings`]).
pub fn compare(
    original: &Image,
    restored: &Image,
    substituted: &[ObjectId],
    skipped_mappings: &[SkippedMapping],
) -> Comparison {
    let substituted: BTreeSet<ObjectId> = substituted.iter().copied().collect();
    let by_fd: BTreeMap<i32, ObjectId> = restored
        .objects
        .iter()
        .flat_map(|object| object.fds.iter().map(move |entry| (entry.fd, object.id)))
        .collect();
    let mut matcher = Matcher {
        original,
        restored,
        forward: BTreeMap::new(),
        backward: BTreeMap::new(),
        differences: Vec::new(),
    };

    // By fd: every object the process holds at an fd.
    for object in &original.objects {
        if let Some(first) = object.fds.first() {
            match by_fd.get(&first.fd) {
                Some(&restored_id) => matcher.pair(object.id, restored_id),
                None => matcher.differences.push(format!(
                    "{}: nothing restored at fd {}",
                    describe(object),
                    first.fd
                )),
            }
        }
    }
    // Through rings: eventfds and table slots.
    for object in &original.objects {
        let ObjectKind::Ring(ring) = &object.kind else {
            continue;
        };
        let Some(restored_ring) = matcher
            .forward
            .get(&object.id)
            .and_then(|id| matcher.restored.object(*id))
        else {
            continue;
        };
        let ObjectKind::Ring(restored_ring) = &restored_ring.kind else {
            continue;
        };
        if let (Some(eventfd), Some(restored_eventfd)) = (ring.eventfd, restored_ring.eventfd) {
            matcher.pair(eventfd.object, restored_eventfd.object);
        }
        for (original_slot, restored_slot) in ring.files.iter().zip(&restored_ring.files) {
            if let (Some(file), Some(restored_file)) = (original_slot, restored_slot) {
                matcher.pair(*file, *restored_file);
            }
        }
    }

    let mut comparison = Comparison {
        skipped_mappings: skipped_mappings.iter().map(ToString::to_string).collect(),
        ..Comparison::default()
    };
    let skipped: BTreeSet<(ObjectId, u64, u64)> = skipped_mappings
        .iter()
        .map(|skip| (skip.object, skip.mapping.addr, skip.mapping.len))
        .collect();
    let mut mappings_compared = 0;
    let mut groups: BTreeMap<u32, Option<u32>> = BTreeMap::new();
    let mut groups_back: BTreeMap<u32, Option<u32>> = BTreeMap::new();
    for object in &original.objects {
        let name = describe(object);
        let Some(restored) = matcher
            .forward
            .get(&object.id)
            .and_then(|id| matcher.restored.object(*id))
        else {
            if !object.fds.is_empty() {
                continue; // reported above
            }
            matcher.differences.push(format!("{name}: not restored"));
            continue;
        };
        let mut differ = |what: &str, want: String, got: String| {
            matcher
                .differences
                .push(format!("{name}: {what} is {got}, expected {want}"));
        };
        if object.fds != restored.fds {
            differ(
                "fds",
                format!("{:?}", object.fds),
                format!("{:?}", restored.fds),
            );
        }
        match (&object.kind, &restored.kind) {
            (ObjectKind::Ring(ring), ObjectKind::Ring(got)) => {
                if ring.setup != got.setup {
                    differ(
                        "setup",
                        format!("{:?}", ring.setup),
                        format!("{:?}", got.setup),
                    );
                }
                let wq_parent = ring
                    .wq_parent
                    .and_then(|id| matcher.forward.get(&id).copied());
                if ring.wq_parent.is_some() != got.wq_parent.is_some() || wq_parent != got.wq_parent
                {
                    differ(
                        "wq_parent",
                        format!("{:?}", ring.wq_parent),
                        format!("{:?}", got.wq_parent),
                    );
                }
                // Same sharing pattern: a one-to-one map between group ids.
                let same_group = match ring.sq_group {
                    Some(group) => {
                        let seen = *groups.entry(group).or_insert(got.sq_group);
                        let back = got
                            .sq_group
                            .map(|restored| *groups_back.entry(restored).or_insert(Some(group)));
                        seen == got.sq_group && back.is_some_and(|back| back == Some(group))
                    }
                    None => got.sq_group.is_none(),
                };
                if !same_group {
                    differ(
                        "SQ thread sharing",
                        format!("group {:?}", ring.sq_group),
                        format!("group {:?}", got.sq_group),
                    );
                }
                if ring.eventfd.map(|e| e.is_async) != got.eventfd.map(|e| e.is_async) {
                    differ(
                        "eventfd registration",
                        format!("{:?}", ring.eventfd),
                        format!("{:?}", got.eventfd),
                    );
                }
                let slots = |files: &[Option<ObjectId>]| {
                    files.iter().map(Option::is_some).collect::<Vec<_>>()
                };
                if slots(&ring.files) != slots(&got.files) {
                    differ(
                        "file table occupancy",
                        format!("{} slots {:?}", ring.files.len(), slots(&ring.files)),
                        format!("{} slots {:?}", got.files.len(), slots(&got.files)),
                    );
                }
                if ring.buffers != got.buffers {
                    differ(
                        "buffer table",
                        format!("{:?}", ring.buffers),
                        format!("{:?}", got.buffers),
                    );
                }
                // A set per ring: the dump lists mappings in address order.
                let sorted = |mappings: &mut Vec<RingMapping>| {
                    mappings.sort_by_key(|m| (m.addr, m.len, m.region))
                };
                let mut want: Vec<RingMapping> = ring
                    .mappings
                    .iter()
                    .filter(|mapping| !skipped.contains(&(object.id, mapping.addr, mapping.len)))
                    .copied()
                    .collect();
                let mut have = got.mappings.clone();
                sorted(&mut want);
                sorted(&mut have);
                if want != have {
                    differ("ring mappings", format!("{want:?}"), format!("{have:?}"));
                } else {
                    mappings_compared += want.len();
                }
                if ring.unknown != got.unknown {
                    differ(
                        "unknown fields",
                        format!("{:?}", ring.unknown),
                        format!("{:?}", got.unknown),
                    );
                }
            }
            (ObjectKind::Eventfd(eventfd), ObjectKind::Eventfd(got)) => {
                if eventfd != got {
                    differ("eventfd", format!("{eventfd:?}"), format!("{got:?}"));
                }
            }
            (ObjectKind::File(file), ObjectKind::File(got)) => {
                if substituted.contains(&object.id) {
                    comparison
                        .substituted
                        .push(format!("{} {}", object.id, file.file_type.name()));
                    continue;
                }
                if file != got {
                    differ("file", format!("{file:?}"), format!("{got:?}"));
                }
            }
            (_, other) => differ(
                "kind",
                object.kind.name().to_owned(),
                other.name().to_owned(),
            ),
        }
        *comparison.matched.entry(object.kind.name()).or_default() += 1;
    }
    // Anything restored that matches nothing of the original.
    for object in &restored.objects {
        if !matcher.backward.contains_key(&object.id) {
            matcher.differences.push(format!(
                "restored {}: not in the original",
                describe(object)
            ));
        }
    }
    if mappings_compared > 0 {
        comparison.matched.insert("ring mapping", mappings_compared);
    }
    // A matched object that differs counts as a difference, not a match.
    comparison.differences = matcher.differences;
    let _ = matcher.original;
    comparison
}

#[cfg(test)]
mod tests {
    use ringplan_image::{
        Backend, Buffer, Eventfd, FdEntry, File, FileType, Image, Object, ObjectId, ObjectKind,
        Ring, RingSetup, Source,
    };

    use super::compare;

    fn ring(fd: i32, files: Vec<Option<ObjectId>>) -> Object {
        Object {
            id: ObjectId(0),
            fds: vec![FdEntry { fd, cloexec: true }],
            kind: ObjectKind::Ring(Ring {
                setup: RingSetup {
                    flags: Some(0),
                    sq_entries: 8,
                    cq_entries: 16,
                    sq_thread_cpu: None,
                    sq_thread_idle_ms: None,
                },
                wq_parent: None,
                sq_group: None,
                eventfd: None,
                files,
                buffers: vec![
                    None,
                    Some(Buffer {
                        addr: 0x1000,
                        len: 10,
                    }),
                ],
                mappings: Vec::new(),
                unknown: Vec::new(),
            }),
        }
    }

    fn file(id: u32, path: &str) -> Object {
        Object {
            id: ObjectId(id),
            fds: Vec::new(),
            kind: ObjectKind::File(File {
                path: Some(path.to_owned()),
                flags: Some(0),
                pos: Some(0),
                file_type: FileType::Regular,
            }),
        }
    }

    fn image(objects: Vec<Object>) -> Image {
        Image::new(
            Source {
                pid: 1,
                backend: Backend::Bpf,
                kernel_release: "test".to_owned(),
            },
            objects,
        )
    }

    #[test]
    fn ids_may_differ_structure_may_not() {
        let original = image(vec![
            ring(3, vec![Some(ObjectId(1)), None, Some(ObjectId(2))]),
            file(1, "/a"),
            file(2, "/b"),
        ]);
        // The same state with the fd-less files numbered the other way.
        let renumbered = image(vec![
            ring(3, vec![Some(ObjectId(2)), None, Some(ObjectId(1))]),
            file(1, "/b"),
            file(2, "/a"),
        ]);
        let comparison = compare(&original, &renumbered, &[], &[]);
        assert!(comparison.is_faithful(), "{:?}", comparison.differences);
        assert_eq!(comparison.summary(), "2 files, 1 ring match");

        let swapped = image(vec![
            ring(3, vec![Some(ObjectId(1)), None, Some(ObjectId(2))]),
            file(1, "/b"),
            file(2, "/a"),
        ]);
        assert_eq!(compare(&original, &swapped, &[], &[]).differences.len(), 2);
        // A substituted file is reported as such, not as a difference.
        let comparison = compare(&original, &swapped, &[ObjectId(1), ObjectId(2)], &[]);
        assert!(comparison.is_faithful());
        assert_eq!(comparison.substituted.len(), 2);

        let mut moved = original.clone();
        if let ObjectKind::Ring(ring) = &mut moved.objects[0].kind {
            ring.buffers[1] = Some(Buffer {
                addr: 0x2000,
                len: 10,
            });
        }
        let differences = compare(&original, &moved, &[], &[]).differences;
        assert_eq!(differences.len(), 1);
        assert!(differences[0].contains("buffer table"), "{differences:?}");

        let mut extra = original.clone();
        extra.objects.push(Object {
            id: ObjectId(3),
            fds: vec![FdEntry {
                fd: 9,
                cloexec: false,
            }],
            kind: ObjectKind::Eventfd(Eventfd {
                count: 0,
                semaphore: false,
                nonblock: false,
            }),
        });
        let differences = compare(&original, &extra, &[], &[]).differences;
        assert_eq!(
            differences,
            vec!["restored eventfd #3 (fd 9): not in the original".to_owned()]
        );
    }

    #[test]
    fn ring_mappings_compare_unless_skipped() {
        use ringplan_image::{RingMapping, RingRegion};

        use crate::{SkipReason, SkippedMapping};

        let sq = RingMapping {
            region: RingRegion::SqRing,
            addr: 0x7f00_0000_0000,
            len: 4096,
        };
        let sqes = RingMapping {
            region: RingRegion::Sqes,
            addr: 0x7f00_0000_2000,
            len: 4096,
        };
        let mut original = image(vec![ring(3, Vec::new())]);
        if let ObjectKind::Ring(ring) = &mut original.objects[0].kind {
            ring.mappings = vec![sqes, sq];
        }
        // The dump lists them in another order: a set, not a list.
        let mut restored = original.clone();
        if let ObjectKind::Ring(ring) = &mut restored.objects[0].kind {
            ring.mappings = vec![sq, sqes];
        }
        let comparison = compare(&original, &restored, &[], &[]);
        assert!(comparison.is_faithful(), "{:?}", comparison.differences);
        assert_eq!(comparison.summary(), "1 ring, 2 ring mappings match");

        // One missing: a difference, unless the executor reported it skipped.
        if let ObjectKind::Ring(ring) = &mut restored.objects[0].kind {
            ring.mappings = vec![sq];
        }
        let differences = compare(&original, &restored, &[], &[]).differences;
        assert_eq!(differences.len(), 1);
        assert!(differences[0].contains("ring mappings"), "{differences:?}");
        let skipped = [SkippedMapping {
            object: ObjectId(0),
            mapping: sqes,
            reason: SkipReason::Taken,
        }];
        let comparison = compare(&original, &restored, &[], &skipped);
        assert!(comparison.is_faithful(), "{:?}", comparison.differences);
        assert!(
            comparison
                .summary()
                .contains("1 ring mapping(s) not restored"),
            "{}",
            comparison.summary()
        );
        assert!(
            comparison
                .summary()
                .contains("sqes at 0x7f0000002000+4096 (the range is taken)"),
            "{}",
            comparison.summary()
        );
    }
}
