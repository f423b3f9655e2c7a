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

//!
//! `verify/matching.rs` pairs the objects; `verify/fields.rs` compares a
//! pair.

mod differ;
mod fields;
mod matching;
mod state;

use std::collections::BTreeMap;

use ringplan_image::{Image, ObjectId};

use crate::SkippedMapping;
use fields::{FieldComparison, Outcome};
use matching::{describe, Matches};

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
    /// What differs by design (a ring's owner thread, queued SQEs an SQ
    /// thread consumed, rings restored as kernel objects only), one line
    /// each: not differences.
    pub notes: Vec<String>,
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
        if !self.notes.is_empty() {
            text.push_str(&format!("; {}", self.notes.join("; ")));
        }
        text
    }
}

/// What the run reported that the comparison must take into account.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunFacts<'a> {
    /// Original objects the executor replaced with stand-ins.
    pub substituted: &'a [ObjectId],
    /// Ring mappings it did not recreate ([`crate::Restored::skipped_mappings`]).
    pub skipped_mappings: &'a [SkippedMapping],
    /// Rings restored as kernel objects only ([`crate::Restored::moved_rings`]).
    pub moved_rings: &'a [ObjectId],
    /// Objects the run adopted from the process restored into
    /// ([`crate::AdoptedFd`]): a file's offset and the fds' close-on-exec
    /// flags are the process's, kept on purpose, so a difference there is
    /// a note, not a difference.
    pub adopted: &'a [ObjectId],
    /// Where the run put each registered ring-fd slot
    /// ([`crate::Restored::ring_fds`]): in this process every slot is the
    /// calling thread's, a note rather than a difference.
    pub ring_fds: &'a [crate::RestoredRingFd],
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
    compare_run(
        original,
        restored,
        &RunFacts {
            substituted,
            skipped_mappings,
            moved_rings: &[],
            adopted: &[],
            ring_fds: &[],
        },
    )
}

/// The bytes of every buffer ring of `original` that was in kernel memory
/// (`IOU_PBUF_RING_MMAP`, its bytes in the image) against process `pid`'s
/// memory at its address, where the restore put them as user memory: one
/// difference per ring whose memory is not the captured bytes, or cannot be
/// read. Rings of an object `restored` lacks are the matching's to report.
/// Meant right after the restore: a program that ran since may have
/// provided buffers (its entries and tail are its own to change).
pub fn compare_pbuf_contents(original: &Image, pid: u32) -> Vec<String> {
    use ringplan_image::ObjectKind;
    use ringplan_kernel::procfs::{mem::ProcessMemory, Process};
    let mut differences = Vec::new();
    let mut memory = None;
    for object in &original.objects {
        let ObjectKind::Ring(ring) = &object.kind else {
            continue;
        };
        for entry in &ring.pbuf_rings {
            let (Some(addr), Some(contents), true) = (entry.addr, &entry.contents, entry.mmap)
            else {
                continue;
            };
            let name = describe(object);
            let memory = memory.get_or_insert_with(|| ProcessMemory::open(Process::Pid(pid)));
            let mut found = vec![0u8; contents.0.len()];
            let read = match memory {
                Ok(memory) => memory
                    .read_exact_at(addr, &mut found)
                    .map_err(|error| error.to_string()),
                Err(error) => Err(error.to_string()),
            };
            match read {
                Err(why) => differences.push(format!(
                    "{name}: buffer ring {}: its memory at {addr:#x} cannot be read ({why})",
                    entry.bgid
                )),
                Ok(()) => {
                    if let Some(at) = found.iter().zip(&contents.0).position(|(a, b)| a != b) {
                        differences.push(format!(
                            "{name}: buffer ring {}: its memory at {addr:#x} differs from the \
                             captured bytes from byte {at} (entry {}) on",
                            entry.bgid,
                            at / 16
                        ));
                    }
                }
            }
        }
    }
    differences
}

/// [`compare`], with everything the run reported. Rings restored where the
/// program left them are compared by their state (memory addresses,
/// positions, entries, counters, flags), not by their mappings.
pub fn compare_run(original: &Image, restored: &Image, facts: &RunFacts<'_>) -> Comparison {
    let RunFacts {
        substituted,
        skipped_mappings,
        moved_rings,
        adopted,
        ring_fds,
    } = *facts;
    let Matches {
        forward,
        backward,
        mut differences,
    } = Matches::find(original, restored, ring_fds);
    let mut comparison = Comparison {
        skipped_mappings: skipped_mappings.iter().map(ToString::to_string).collect(),
        ..Comparison::default()
    };
    let mut fields = FieldComparison::new(
        &forward,
        substituted.iter().copied().collect(),
        skipped_mappings
            .iter()
            .map(|skip| (skip.object, skip.mapping.addr, skip.mapping.len))
            .collect(),
    );
    fields.moved = moved_rings.iter().copied().collect();
    fields.adopted = adopted.iter().copied().collect();
    fields.ring_fds = ring_fds.to_vec();
    for object in &original.objects {
        let name = describe(object);
        let Some(restored) = forward.get(&object.id).and_then(|id| restored.object(*id)) else {
            if object.fds.is_empty() {
                // One with an fd was reported by the matching.
                differences.push(format!("{name}: not restored"));
            }
            continue;
        };
        match fields.object(&name, object, restored, &mut differences) {
            Outcome::Compared => *comparison.matched.entry(object.kind.name()).or_default() += 1,
            Outcome::Substituted(description) => comparison.substituted.push(description),
        }
    }
    // Anything restored that matches nothing of the original.
    for object in &restored.objects {
        if !backward.contains_key(&object.id) {
            differences.push(format!(
                "restored {}: not in the original",
                describe(object)
            ));
        }
    }
    if fields.mappings_compared > 0 {
        comparison
            .matched
            .insert("ring mapping", fields.mappings_compared);
    }
    if fields.states_compared > 0 {
        comparison
            .matched
            .insert("ring state", fields.states_compared);
    }
    comparison.notes = std::mem::take(&mut fields.notes);
    // A matched object that differs counts as a difference, not a match.
    comparison.differences = differences;
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
                state: None,
                personalities: Vec::new(),
                personality_next: 0,
                pbuf_rings: Vec::new(),
                legacy_buffer_groups: Vec::new(),
                settings: Default::default(),
                registered_ring_fds: Vec::new(),
                restrictions: None,
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
                identity: None,
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
    fn registered_settings_are_compared_one_line_each() {
        use ringplan_image::{FileAllocRange, IowqMaxWorkers, Napi, NapiTracking, SlotTag};
        let original = image(vec![
            ring(3, vec![Some(ObjectId(1)), None, Some(ObjectId(2))]),
            file(1, "/a"),
            file(2, "/b"),
        ]);
        let mut with_settings = original.clone();
        if let ObjectKind::Ring(ring) = &mut with_settings.objects[0].kind {
            ring.settings.file_alloc_range = Some(FileAllocRange { start: 1, len: 2 });
            ring.settings.iowq_max_workers = Some(IowqMaxWorkers {
                bounded: 3,
                unbounded: 5,
            });
            ring.settings.napi = Some(Napi {
                busy_poll_us: 50,
                prefer_busy_poll: true,
                tracking: NapiTracking::Dynamic,
                ids_listed: false,
            });
            ring.settings.file_tags = vec![SlotTag { slot: 0, tag: 7 }];
        }
        assert!(compare(&with_settings, &with_settings, &[], &[]).is_faithful());
        // A dynamically tracking ring's listed NAPI ids are the kernel's.
        let mut listed = with_settings.clone();
        if let ObjectKind::Ring(ring) = &mut listed.objects[0].kind {
            if let Some(napi) = &mut ring.settings.napi {
                napi.ids_listed = true;
            }
        }
        assert!(compare(&listed, &with_settings, &[], &[]).is_faithful());
        let differences = compare(&with_settings, &original, &[], &[]).differences;
        assert_eq!(differences.len(), 4, "{differences:?}");
        for (difference, what) in differences.iter().zip([
            "file allocation range",
            "io-wq max workers",
            "NAPI",
            "file tags",
        ]) {
            assert!(difference.contains(what), "{difference}");
        }
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

    #[test]
    fn a_continuous_ring_is_compared_by_its_state() {
        use ringplan_image::{
            Cqe, RingMapping, RingMemory, RingPositions, RingRegion, RingState, SetupFlags,
        };

        use super::{compare_run, RunFacts};

        let mut original = image(vec![ring(3, Vec::new())]);
        if let ObjectKind::Ring(ring) = &mut original.objects[0].kind {
            ring.setup.flags = Some(SetupFlags::SINGLE_ISSUER.bits());
            ring.mappings = vec![
                RingMapping {
                    region: RingRegion::SqRing,
                    addr: 0x7f00_0000_0000,
                    len: 4096,
                },
                RingMapping {
                    region: RingRegion::Sqes,
                    addr: 0x7f00_0000_2000,
                    len: 4096,
                },
            ];
            let at = 5000;
            ring.state = Some(Box::new(RingState {
                positions: RingPositions {
                    sq_head: at,
                    sq_tail: at,
                    cached_sq_head: at,
                    cq_head: at - 1,
                    cq_tail: at,
                    cached_cq_tail: at,
                    ..RingPositions::default()
                },
                sq_array: Some(vec![0, 1]),
                sqes: Some(Vec::new()),
                unqueued_sqes: Vec::new(),
                cqes: Some(vec![Cqe {
                    user_data: 7,
                    res: 0,
                    flags: 0,
                    extra: None,
                }]),
                overflow: Some(Vec::new()),
                memory: RingMemory {
                    no_mmap: false,
                    rings: None,
                    sqes: None,
                },
                owner_tid: Some(100),
                unknown: Vec::new(),
            }));
        }
        // What a dump of a faithful restore shows: NO_MMAP added, the
        // memory given at the program's addresses, no ring fd mapping, the
        // plan's thread as owner.
        let mut restored = original.clone();
        if let ObjectKind::Ring(ring) = &mut restored.objects[0].kind {
            ring.setup.flags = Some(SetupFlags::SINGLE_ISSUER.bits() | SetupFlags::NO_MMAP.bits());
            ring.mappings = Vec::new();
            if let Some(state) = ring.state.as_deref_mut() {
                state.memory = RingMemory {
                    no_mmap: true,
                    rings: Some(ringplan_image::UserRegion {
                        addr: 0x7f00_0000_0000,
                        len: 4096,
                    }),
                    sqes: Some(ringplan_image::UserRegion {
                        addr: 0x7f00_0000_2000,
                        len: 4096,
                    }),
                };
                state.owner_tid = Some(200);
            }
        }
        let facts = RunFacts::default();
        let comparison = compare_run(&original, &restored, &facts);
        assert!(comparison.is_faithful(), "{:?}", comparison.differences);
        assert!(
            comparison
                .summary()
                .starts_with("1 ring, 1 ring state match"),
            "{}",
            comparison.summary()
        );
        assert!(
            comparison.notes[0].contains("owned by thread 200"),
            "{:?}",
            comparison.notes
        );

        // A position, an entry or an address that differs is a difference.
        let mut moved = restored.clone();
        if let ObjectKind::Ring(ring) = &mut moved.objects[0].kind {
            if let Some(state) = ring.state.as_deref_mut() {
                state.positions.cached_cq_tail += 1;
                state.cqes = Some(Vec::new());
                if let Some(rings) = &mut state.memory.rings {
                    rings.addr += 0x1000;
                }
            }
        }
        let differences = compare_run(&original, &moved, &facts).differences;
        assert_eq!(differences.len(), 3, "{differences:?}");
        for what in ["CQ tail", "unconsumed CQEs", "ring memory address"] {
            assert!(
                differences.iter().any(|line| line.contains(what)),
                "{what}: {differences:?}"
            );
        }

        // Restored as kernel objects only (--allow-moved-rings): a note,
        // and its mappings compared as without continuity.
        let moved_rings = [ObjectId(0)];
        let facts = RunFacts {
            moved_rings: &moved_rings,
            ..RunFacts::default()
        };
        let comparison = compare_run(&original, &original, &facts);
        assert!(comparison.is_faithful(), "{:?}", comparison.differences);
        assert!(
            comparison.notes[0].contains("restored as kernel objects only"),
            "{:?}",
            comparison.notes
        );
    }
}
