//! Comparing one matched pair of objects field by field.

use std::collections::{BTreeMap, BTreeSet};

use ringplan_image::{Object, ObjectId, ObjectKind, Ring, RingMapping};

use super::differ::Differ;
use super::state;

/// What comparing an object gave, besides its differences.
pub(super) enum Outcome {
    /// Compared (matching or not): counts as a match of its kind.
    Compared,
    /// A file the executor substituted: reported as such, not compared.
    Substituted(String),
}

/// The field comparison of a whole image: what it needs from the matching
/// and the run, and what it carries from one object to the next.
pub(super) struct FieldComparison<'a> {
    /// Original id -> restored id, from the matching.
    pub(super) forward: &'a BTreeMap<ObjectId, ObjectId>,
    /// Original objects the executor substituted.
    pub(super) substituted: BTreeSet<ObjectId>,
    /// `(ring, addr, len)` of the ring mappings the executor skipped.
    pub(super) skipped: BTreeSet<(ObjectId, u64, u64)>,
    /// Ring mappings compared equal so far.
    pub(super) mappings_compared: usize,
    /// Rings the executor restored as kernel objects only, though the plan
    /// restores them where the program left them.
    pub(super) moved: BTreeSet<ObjectId>,
    /// Objects the run adopted from the process: their offset and
    /// close-on-exec flags are the process's.
    pub(super) adopted: BTreeSet<ObjectId>,
    /// Where the run put each recorded registered ring-fd slot.
    pub(super) ring_fds: Vec<crate::RestoredRingFd>,
    /// Rings whose state (positions, entries, memory) was compared.
    pub(super) states_compared: usize,
    /// What differs by design, one line each, naming the ring.
    pub(super) notes: Vec<String>,
    /// SQ group ids seen, original -> restored and back: the sharing
    /// pattern must be a one-to-one map.
    groups: BTreeMap<u32, Option<u32>>,
    groups_back: BTreeMap<u32, Option<u32>>,
}

impl<'a> FieldComparison<'a> {
    pub(super) fn new(
        forward: &'a BTreeMap<ObjectId, ObjectId>,
        substituted: BTreeSet<ObjectId>,
        skipped: BTreeSet<(ObjectId, u64, u64)>,
    ) -> Self {
        FieldComparison {
            forward,
            substituted,
            skipped,
            mappings_compared: 0,
            moved: BTreeSet::new(),
            adopted: BTreeSet::new(),
            ring_fds: Vec::new(),
            states_compared: 0,
            notes: Vec::new(),
            groups: BTreeMap::new(),
            groups_back: BTreeMap::new(),
        }
    }

    /// Compares `object` (named `name` in differences) with the restored
    /// object it was matched to.
    pub(super) fn object(
        &mut self,
        name: &str,
        object: &Object,
        restored: &Object,
        differences: &mut Vec<String>,
    ) -> Outcome {
        let adopted = self.adopted.contains(&object.id);
        let numbers =
            |fds: &[ringplan_image::FdEntry]| fds.iter().map(|entry| entry.fd).collect::<Vec<_>>();
        if adopted && object.fds != restored.fds && numbers(&object.fds) == numbers(&restored.fds) {
            self.notes.push(format!(
                "{name}: adopted from the process, its close-on-exec flags kept: {:?} (image {:?})",
                restored.fds, object.fds
            ));
        }
        let mut differ = Differ { name, differences };
        let same_fds = if adopted {
            numbers(&object.fds) == numbers(&restored.fds)
        } else {
            object.fds == restored.fds
        };
        if !same_fds {
            differ.differ(
                "fds",
                format!("{:?}", object.fds),
                format!("{:?}", restored.fds),
            );
        }
        match (&object.kind, &restored.kind) {
            (ObjectKind::Ring(ring), ObjectKind::Ring(got)) => {
                self.ring(object.id, ring, got, &mut differ);
            }
            (ObjectKind::Eventfd(eventfd), ObjectKind::Eventfd(got)) => {
                if eventfd != got {
                    differ.differ("eventfd", format!("{eventfd:?}"), format!("{got:?}"));
                }
            }
            (ObjectKind::File(file), ObjectKind::File(got)) => {
                if self.substituted.contains(&object.id) {
                    return Outcome::Substituted(format!(
                        "{} {}",
                        object.id,
                        file.file_type.name()
                    ));
                }
                // An image from before files had an identity says
                // nothing about it: compare the rest.
                let mut got = got.clone();
                if file.identity.is_none() {
                    got.identity = None;
                }
                if adopted && got.pos != file.pos {
                    self.notes.push(format!(
                        "{name}: adopted from the process, its offset kept: {} (image {})",
                        got.pos
                            .map_or_else(|| "unknown".to_owned(), |pos| pos.to_string()),
                        file.pos
                            .map_or_else(|| "unknown".to_owned(), |pos| pos.to_string())
                    ));
                    got.pos = file.pos;
                }
                if *file != got {
                    differ.differ("file", format!("{file:?}"), format!("{got:?}"));
                }
            }
            (_, other) => differ.differ(
                "kind",
                object.kind.name().to_owned(),
                other.name().to_owned(),
            ),
        }
        Outcome::Compared
    }

    fn ring(&mut self, id: ObjectId, ring: &Ring, got: &Ring, differ: &mut Differ<'_>) {
        let continuous = state::restored_continuously(ring) && !self.moved.contains(&id);
        let mut setup = ring.setup.clone();
        if continuous {
            setup.flags = state::continuous_flags(ring);
        }
        if setup != got.setup {
            differ.differ("setup", format!("{setup:?}"), format!("{:?}", got.setup));
        }
        let wq_parent = ring.wq_parent.and_then(|id| self.forward.get(&id).copied());
        if ring.wq_parent.is_some() != got.wq_parent.is_some() || wq_parent != got.wq_parent {
            differ.differ(
                "wq_parent",
                format!("{:?}", ring.wq_parent),
                format!("{:?}", got.wq_parent),
            );
        }
        if !self.same_sq_group(ring.sq_group, got.sq_group) {
            differ.differ(
                "SQ thread sharing",
                format!("group {:?}", ring.sq_group),
                format!("group {:?}", got.sq_group),
            );
        }
        if ring.eventfd.map(|e| e.is_async) != got.eventfd.map(|e| e.is_async) {
            differ.differ(
                "eventfd registration",
                format!("{:?}", ring.eventfd),
                format!("{:?}", got.eventfd),
            );
        }
        let slots =
            |files: &[Option<ObjectId>]| files.iter().map(Option::is_some).collect::<Vec<_>>();
        if slots(&ring.files) != slots(&got.files) {
            differ.differ(
                "file table occupancy",
                format!("{} slots {:?}", ring.files.len(), slots(&ring.files)),
                format!("{} slots {:?}", got.files.len(), slots(&got.files)),
            );
        }
        differ.differ_if_not_equal("buffer table", &ring.buffers, &got.buffers);
        if ring.personalities != got.personalities || ring.personality_next != got.personality_next
        {
            let ids = |ring: &Ring| {
                let ids: Vec<u32> = ring.personalities.iter().map(|p| p.id).collect();
                format!("ids {ids:?}, next id {}", ring.personality_next)
            };
            if ids(ring) != ids(got) {
                differ.differ("personalities", ids(ring), ids(got));
            } else {
                // Same ids: say which credentials differ.
                for (want, have) in ring.personalities.iter().zip(&got.personalities) {
                    if want != have {
                        differ.differ(
                            &format!("personality {}", want.id),
                            format!("{want:?}"),
                            format!("{have:?}"),
                        );
                    }
                }
            }
        }
        // Buffer rings: bgid, entries, head (buffers taken), where the
        // memory is and whose it is, one line per group that differs.
        let bgids = |ring: &Ring| -> Vec<u16> { ring.pbuf_rings.iter().map(|b| b.bgid).collect() };
        if bgids(ring) != bgids(got) {
            differ.differ(
                "buffer rings",
                format!("bgids {:?}", bgids(ring)),
                format!("bgids {:?}", bgids(got)),
            );
        } else {
            for (want, have) in ring.pbuf_rings.iter().zip(&got.pbuf_rings) {
                // A ring in kernel memory comes back as user memory at the
                // same address holding its captured bytes: compared as
                // such (the bytes by `compare_pbuf_contents`, which reads
                // the process's memory).
                let mut want = want.clone();
                if want.mmap && want.contents.is_some() && !have.mmap {
                    want.mmap = false;
                    want.contents = None;
                    self.notes.push(format!(
                        "{}: buffer ring {} was in kernel memory (IOU_PBUF_RING_MMAP) and is user \
                         memory now, at the same address; a program that maps it again from the \
                         ring fd gets an error",
                        differ.name(),
                        want.bgid
                    ));
                }
                let want = &want;
                if want != have {
                    differ.differ(
                        &format!("buffer ring {}", want.bgid),
                        format!("{want:?}"),
                        format!("{have:?}"),
                    );
                }
            }
        }
        // Groups emptied by the program are not restored (the planner
        // leaves them out: an empty legacy list is as no group).
        let holding = |groups: &[ringplan_image::LegacyBufferGroup]| -> Vec<ringplan_image::LegacyBufferGroup> {
            groups
                .iter()
                .filter(|group| group.buffers.as_ref().is_none_or(|runs| !runs.is_empty()))
                .cloned()
                .collect()
        };
        differ.differ_if_not_equal(
            "legacy buffer groups",
            &holding(&ring.legacy_buffer_groups),
            &holding(&got.legacy_buffer_groups),
        );
        differ.differ_if_not_equal("restrictions", &ring.restrictions, &got.restrictions);
        // Registered settings, one line per setting that differs.
        let (want, have) = (&ring.settings, &got.settings);
        differ.differ_if_not_equal(
            "file allocation range",
            &want.file_alloc_range,
            &have.file_alloc_range,
        );
        differ.differ_if_not_equal(
            "io-wq max workers",
            &want.iowq_max_workers,
            &have.iowq_max_workers,
        );
        // Which NAPI instances a dynamically tracking ring lists is the
        // kernel's own, found again from the sockets the ring's requests
        // use: a new ring lists none until then.
        let napi_of = |napi: Option<ringplan_image::Napi>| {
            napi.map(|napi| ringplan_image::Napi {
                ids_listed: napi.ids_listed
                    && napi.tracking != ringplan_image::NapiTracking::Dynamic,
                ..napi
            })
        };
        if napi_of(want.napi) != napi_of(have.napi) {
            differ.differ(
                "NAPI",
                format!("{:?}", want.napi),
                format!("{:?}", have.napi),
            );
        }
        // Static NAPI ids, in the kernel's list order.
        differ.differ_if_not_equal("NAPI ids", &want.napi_static_ids, &have.napi_static_ids);
        differ.differ_if_not_equal("file tags", &want.file_tags, &have.file_tags);
        differ.differ_if_not_equal("buffer tags", &want.buffer_tags, &have.buffer_tags);
        // The wait region: its length, and where the program has it. One
        // that was kernel memory comes back as the program's (a new ring's
        // kernel region would be mapped where the kernel chooses): a note.
        let wait_region_of = |settings: &ringplan_image::RingSettings| {
            settings
                .wait_region_len
                .map(|len| (len, settings.wait_region_addr))
        };
        differ.differ_if_not_equal("wait region", &wait_region_of(want), &wait_region_of(have));
        if want.wait_region_kernel_memory && !have.wait_region_kernel_memory {
            self.notes.push(format!(
                "{}: its wait region was kernel memory and is the program's memory now, at the \
                 same address (mapping it again from the ring fd fails)",
                differ.name()
            ));
        } else if !want.wait_region_kernel_memory && have.wait_region_kernel_memory {
            differ.differ(
                "wait region memory",
                "the program's".to_owned(),
                "the kernel's".to_owned(),
            );
        }
        // The io-wq affinity: its CPUs and whether it is the SQ thread's.
        // Restored in this process it is the calling thread's, not the
        // recorded one: a note, as for registered ring fds.
        let affinity_of = |affinity: &Option<ringplan_image::IowqAffinity>| {
            affinity
                .as_ref()
                .map(|affinity| (affinity.cpus.clone(), affinity.tid.is_none()))
        };
        differ.differ_if_not_equal(
            "io-wq affinity",
            &affinity_of(&want.iowq_affinity),
            &affinity_of(&have.iowq_affinity),
        );
        if let (Some(want), Some(have)) = (&want.iowq_affinity, &have.iowq_affinity) {
            if let (Some(recorded), Some(restored)) = (want.tid, have.tid) {
                if recorded != restored {
                    self.notes.push(format!(
                        "{}: io-wq affinity recorded for thread {recorded}, restored on thread {restored}",
                        differ.name()
                    ));
                }
            }
        }
        self.ring_fd_slots(id, ring, got, differ);
        if continuous {
            // Its memory is placed, not a mapping of the ring fd: the
            // state comparison checks its addresses.
            let notes = state::compare_state(ring, got, differ);
            self.notes.extend(
                notes
                    .into_iter()
                    .map(|note| format!("{}: {note}", differ.name())),
            );
            self.states_compared += 1;
        } else {
            self.ring_mappings(id, ring, got, differ);
        }
        if self.moved.contains(&id) {
            self.notes.push(format!(
                "{}: restored as kernel objects only (new memory, positions at 0), as --allow-moved-rings asked",
                differ.name()
            ));
        }
        differ.differ_if_not_equal("unknown fields", &ring.unknown, &got.unknown);
    }

    /// Registered ring fds: each recorded slot where the run says it went
    /// (in this process, the thread that ran the plan: a note, not a
    /// difference; a slot it could not fill there is a note too), or as
    /// recorded when the run says nothing of it.
    fn ring_fd_slots(&mut self, id: ObjectId, ring: &Ring, got: &Ring, differ: &mut Differ<'_>) {
        let mut expected = BTreeSet::new();
        for slot in &ring.registered_ring_fds {
            let went = self.ring_fds.iter().find(|went| {
                went.ring == id && went.offset == slot.offset && went.recorded_tid == slot.tid
            });
            match went {
                Some(went) if !went.registered => {
                    self.notes.push(format!("{}: {went}", differ.name()))
                }
                Some(went) => {
                    if went.tid != slot.tid {
                        self.notes.push(format!(
                            "{}: registered ring fd at offset {} in thread {} (recorded in thread {}, which this process does not have)",
                            differ.name(),
                            went.offset,
                            went.tid,
                            slot.tid
                        ));
                    }
                    expected.insert((went.tid, went.offset));
                }
                None => {
                    expected.insert((slot.tid, slot.offset));
                }
            }
        }
        let restored: BTreeSet<(u32, u32)> = got
            .registered_ring_fds
            .iter()
            .map(|slot| (slot.tid, slot.offset))
            .collect();
        if expected != restored {
            differ.differ(
                "registered ring fds (thread, offset)",
                format!("{expected:?}"),
                format!("{restored:?}"),
            );
        }
    }

    /// Same sharing pattern: a one-to-one map between group ids.
    fn same_sq_group(&mut self, original: Option<u32>, restored: Option<u32>) -> bool {
        match original {
            Some(group) => {
                let seen = *self.groups.entry(group).or_insert(restored);
                let back = restored
                    .map(|restored| *self.groups_back.entry(restored).or_insert(Some(group)));
                seen == restored && back.is_some_and(|back| back == Some(group))
            }
            None => restored.is_none(),
        }
    }

    /// The ring's mappings as a set (the dump lists them in address
    /// order), without those the executor skipped.
    fn ring_mappings(&mut self, id: ObjectId, ring: &Ring, got: &Ring, differ: &mut Differ<'_>) {
        let sorted =
            |mappings: &mut Vec<RingMapping>| mappings.sort_by_key(|m| (m.addr, m.len, m.region));
        let mut want: Vec<RingMapping> = ring
            .mappings
            .iter()
            .filter(|mapping| !self.skipped.contains(&(id, mapping.addr, mapping.len)))
            .copied()
            .collect();
        let mut have = got.mappings.clone();
        sorted(&mut want);
        sorted(&mut have);
        if want != have {
            differ.differ("ring mappings", format!("{want:?}"), format!("{have:?}"));
        } else {
            self.mappings_compared += want.len();
        }
    }
}
