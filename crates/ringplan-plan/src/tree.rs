//! Planning a tree image (`plan dump --tree`): one part per process, each
//! compiled as the plan of one process, in tree order (the dumped process
//! first, parents before children). No I/O.
//!
//! An object several processes hold is created once, in its *creator*,
//! and the others take it with `receive_fd` (`pidfd_getfd` made inside
//! the receiving process) from the fd the creator's part installed:
//! - a ring's creator is the process of its `SINGLE_ISSUER` owner thread
//!   (the kernel ties the ring to it), else that of its `wq_fd` parent
//!   (the kernel attaches only rings of the SQ thread's own process),
//!   else the first process that holds it at an fd, else the first that
//!   maps it;
//! - an eventfd's or a file's creator is the first process that needs it:
//!   holds it at an fd, or created a ring that registers it.
//!
//! A receiving part sees the object bare: a received ring has no tables,
//! registrations or state of its own there (the creator's part restored
//! them; they are the ring's, not the process's), only this process's
//! fds and mappings. So each part is compiled by the one-process compiler
//! from a sub-image of what the process creates and receives, and the
//! step that would create a received object becomes its `receive_fd`.
//! A ring restored where the program left it (memory placed by
//! `place_ring_memory`) has its memory lent (`lend`): a receiving part
//! maps the creator's memory at its own mappings.
//!
//! Refused, naming the processes: a creator that would run after a
//! process that takes the object from it, an object another process needs
//! from a creator that holds it at no fd (a part cannot lend a temporary),
//! a ring attached to an SQ thread of another process than its owner's.

use std::collections::BTreeMap;

use ringplan_image::{
    FdEntry, Held, Image, Object, ObjectId, ObjectKind, RegisteredRingFd, Ring, RingSettings,
    SetupFlags,
};

use crate::error::CompileError;
use crate::model::*;

/// Compiles a tree image (validated by the caller) into a tree plan.
pub(crate) fn compile_tree(image: &Image) -> Result<Plan, CompileError> {
    let creators = Creators::of(image)?;
    let mut parts: Vec<(u32, Option<u32>, Plan)> = Vec::with_capacity(image.processes.len());
    for (index, process) in image.processes.iter().enumerate() {
        let sub_image = sub_image(image, &creators, index);
        let mut plan = crate::compile::compile_one(&sub_image)
            .map_err(|error| refused(process.pid, format!("its part: {error}")))?;
        plan.version = TREE_FORMAT_VERSION;
        parts.push((process.pid, process.parent, plan));
    }
    // Receives second: a receiving part needs to know whether the
    // creator's part placed the ring's memory, and that part lends it.
    for index in 0..parts.len() {
        let received = receptions(image, &creators, index);
        for step_index in 0..parts[index].2.steps.len() {
            let step = &parts[index].2.steps[step_index];
            let Some(id) = step.object.filter(|_| step.op.defines_handle()) else {
                continue;
            };
            let Some(&(creator, from_fd)) = received.get(&id) else {
                continue;
            };
            let (kind, mappings) = match &step.op {
                Op::SetupRing(setup) => (ReceivedKind::Ring, setup.mappings.clone()),
                Op::CreateEventfd(_) => (ReceivedKind::Eventfd, Vec::new()),
                _ => (ReceivedKind::File, Vec::new()),
            };
            let placed_memory = !mappings.is_empty() && lend_memory(&mut parts[creator].2, id);
            parts[index].2.steps[step_index].op = Op::ReceiveFd(ReceiveFd {
                from_pid: image.processes[creator].pid,
                from_fd,
                kind,
                mappings,
                placed_memory,
            });
        }
    }
    let mut parts = parts.into_iter();
    let Some((_, _, mut root)) = parts.next() else {
        return Err(refused(
            image.source.pid,
            "the tree has no process".to_owned(),
        ));
    };
    root.processes = parts
        .map(|(pid, parent, plan)| ProcessPart {
            pid,
            // Validation lists every parent before its child.
            parent: parent.unwrap_or(image.source.pid),
            plan,
        })
        .collect();
    Ok(root)
}

fn refused(pid: u32, reason: String) -> CompileError {
    CompileError::TreeNotPlannable { pid, reason }
}

/// Marks the creator's `place_ring_memory` of ring `id` as lent; whether
/// the ring's memory is placed memory the program mapped (the kernel's
/// memory it had mapped, now a memfd another process can map too).
fn lend_memory(creator: &mut Plan, id: ObjectId) -> bool {
    let placement = creator
        .steps
        .iter_mut()
        .find_map(|step| match &mut step.op {
            Op::PlaceRingMemory(memory) if step.object == Some(id) => Some(memory),
            _ => None,
        });
    match placement {
        Some(memory) if memory.origin == MemoryOrigin::Kernel => {
            memory.lend = true;
            true
        }
        _ => false,
    }
}

/// Each object's creating process (an index into `image.processes`).
struct Creators {
    of: BTreeMap<ObjectId, usize>,
    /// The rings that register each eventfd or file (in their file table
    /// or as their eventfd), found once.
    registered_by: BTreeMap<ObjectId, Vec<ObjectId>>,
}

impl Creators {
    fn of(image: &Image) -> Result<Creators, CompileError> {
        let mut registered_by: BTreeMap<ObjectId, Vec<ObjectId>> = BTreeMap::new();
        for object in &image.objects {
            let ObjectKind::Ring(ring) = &object.kind else {
                continue;
            };
            let registered = ring
                .files
                .iter()
                .flatten()
                .chain(ring.eventfd.as_ref().map(|eventfd| &eventfd.object));
            for &entry in registered {
                let rings = registered_by.entry(entry).or_default();
                // A file in several slots of one ring is one registrant.
                if rings.last() != Some(&object.id) {
                    rings.push(object.id);
                }
            }
        }
        let mut creators = Creators {
            of: BTreeMap::new(),
            registered_by,
        };
        for object in &image.objects {
            if let ObjectKind::Ring(_) = object.kind {
                creators.ring_creator(image, object.id, 0)?;
            }
        }
        for object in &image.objects {
            if !matches!(object.kind, ObjectKind::Ring(_)) {
                creators.table_entry_creator(image, object);
            }
        }
        for object in &image.objects {
            creators.check_receivers(image, object)?;
        }
        Ok(creators)
    }

    fn ring_creator(
        &mut self,
        image: &Image,
        id: ObjectId,
        depth: usize,
    ) -> Result<usize, CompileError> {
        if let Some(&creator) = self.of.get(&id) {
            return Ok(creator);
        }
        let Some(ObjectKind::Ring(ring)) = image.object(id).map(|object| &object.kind) else {
            return Ok(0);
        };
        let owner = position(image, id, |held| held.owner);
        // Validation refuses wq_parent cycles; the depth only bounds the
        // recursion should a caller skip it.
        let by_parent = match ring.wq_parent {
            Some(parent) if depth < image.objects.len() => {
                Some(self.ring_creator(image, parent, depth + 1)?)
            }
            _ => None,
        };
        if let (Some(owner), Some(parent)) = (owner, by_parent) {
            if owner != parent {
                return Err(refused(
                    image.processes[owner].pid,
                    format!(
                        "ring {id} is owned by a thread of this process but attached to the SQ thread of a ring \
                         process {} creates; the kernel attaches only rings of the SQ thread's own process",
                        image.processes[parent].pid
                    ),
                ));
            }
        }
        let creator = owner
            .or(by_parent)
            .or_else(|| position(image, id, |held| !held.fds.is_empty()))
            .or_else(|| position(image, id, |_| true))
            .unwrap_or(0);
        self.of.insert(id, creator);
        Ok(creator)
    }

    /// An eventfd's or a file's creator: the first process that holds it
    /// at an fd or creates a ring that registers it.
    fn table_entry_creator(&mut self, image: &Image, object: &Object) {
        let id = object.id;
        let holding = position(image, id, |held| !held.fds.is_empty());
        let creator = self
            .registrants(id)
            .filter_map(|ring| self.of.get(&ring).copied())
            .chain(holding)
            .min()
            .unwrap_or(0);
        self.of.insert(id, creator);
    }

    /// Every process that takes `object` from its creator comes after it,
    /// and the creator holds it at an fd to lend.
    fn check_receivers(&self, image: &Image, object: &Object) -> Result<(), CompileError> {
        let id = object.id;
        let Some(&creator) = self.of.get(&id) else {
            return Ok(());
        };
        let creator_pid = image.processes[creator].pid;
        let lends = held_by(image, creator, id).is_some_and(|held| !held.fds.is_empty());
        for index in (0..image.processes.len()).filter(|&index| index != creator) {
            if !self.needs(image, index, object) {
                continue;
            }
            let pid = image.processes[index].pid;
            if index < creator {
                return Err(refused(
                    pid,
                    format!(
                        "it takes {} {id} from process {creator_pid}, which creates it (its owner thread's \
                         or SQ thread's process) but is restored after it",
                        object.kind.name()
                    ),
                ));
            }
            if !lends {
                return Err(refused(
                    pid,
                    format!(
                        "it needs {} {id}, which process {creator_pid} creates but holds at no fd to pass on",
                        object.kind.name()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Whether process `index` needs `object` from its creator: holds it,
    /// or creates a ring that registers it.
    fn needs(&self, image: &Image, index: usize, object: &Object) -> bool {
        held_by(image, index, object.id).is_some()
            || self
                .registrants(object.id)
                .any(|ring| self.of.get(&ring) == Some(&index))
    }

    /// The rings that register object `id`.
    fn registrants(&self, id: ObjectId) -> impl Iterator<Item = ObjectId> + '_ {
        self.registered_by.get(&id).into_iter().flatten().copied()
    }
}

/// The first process (index) whose hold of object `id` matches `matches`.
fn position(image: &Image, id: ObjectId, matches: impl Fn(&Held) -> bool) -> Option<usize> {
    (0..image.processes.len()).find(|&index| held_by(image, index, id).is_some_and(&matches))
}

fn held_by(image: &Image, index: usize, id: ObjectId) -> Option<&Held> {
    let holds = &image.processes.get(index)?.holds;
    holds
        .binary_search_by_key(&id, |held| held.object)
        .ok()
        .map(|position| &holds[position])
}

/// What process `index` receives: object → (creating process, the fd
/// it installs there).
fn receptions(
    image: &Image,
    creators: &Creators,
    index: usize,
) -> BTreeMap<ObjectId, (usize, i32)> {
    image
        .objects
        .iter()
        .filter_map(|object| {
            let creator = *creators.of.get(&object.id)?;
            if creator == index || !creators.needs(image, index, object) {
                return None;
            }
            let from_fd = held_by(image, creator, object.id)?.fds.first()?.fd;
            Some((object.id, (creator, from_fd)))
        })
        .collect()
}

/// Process `index`'s image: the objects it creates, as recorded, and
/// those it receives, bare; each with this process's fds and mappings.
fn sub_image(image: &Image, creators: &Creators, index: usize) -> Image {
    let process = &image.processes[index];
    let mut objects = Vec::new();
    for object in &image.objects {
        let held = held_by(image, index, object.id);
        let fds: Vec<FdEntry> = held.map(|held| held.fds.clone()).unwrap_or_default();
        let creates = creators.of.get(&object.id) == Some(&index);
        if !creates && !creators.needs(image, index, object) {
            continue;
        }
        let kind = match &object.kind {
            ObjectKind::Ring(ring) if creates => {
                let mut ring = ring.clone();
                ring.mappings = held.map(|held| held.mappings.clone()).unwrap_or_default();
                let recorded = std::mem::take(&mut ring.registered_ring_fds);
                ring.registered_ring_fds = own_ring_fd_slots(image, recorded, held);
                ObjectKind::Ring(ring)
            }
            ObjectKind::Ring(ring) => {
                let mut bare = bare_ring(ring, held);
                bare.registered_ring_fds = own_ring_fd_slots(image, Vec::new(), held);
                ObjectKind::Ring(bare)
            }
            other => other.clone(),
        };
        objects.push(Object {
            id: object.id,
            fds,
            kind,
        });
    }
    let mut source = image.source.clone();
    source.pid = process.pid;
    let mut sub_image = Image::new(source, objects);
    sub_image.version = image.version;
    sub_image
}

/// The registered ring-fd slots a process's part registers of a ring: its
/// own threads' (version 5); a version 4 tree kept only the first
/// holder's, in the ring (`recorded`), which its creator registers.
fn own_ring_fd_slots(
    image: &Image,
    recorded: Vec<RegisteredRingFd>,
    held: Option<&Held>,
) -> Vec<RegisteredRingFd> {
    if image.version >= 5 {
        held.map(|held| held.registered_ring_fds.clone())
            .unwrap_or_default()
    } else {
        recorded
    }
}

/// A ring another process creates, as a receiving process sees it: its
/// sizes, this process's mappings, nothing registered. Its step becomes a
/// `receive_fd`, so nothing of its setup is made: the flags that would
/// ask the one-process compiler for more (an SQ thread and its group,
/// memory the image must describe, restrictions) are left out.
fn bare_ring(ring: &Ring, held: Option<&Held>) -> Ring {
    let mut setup = ring.setup.clone();
    let sizes = SetupFlags::CQSIZE | SetupFlags::SQE128 | SetupFlags::CQE32;
    setup.flags = setup.flags.map(|flags| flags & sizes.bits());
    setup.sq_thread_cpu = None;
    setup.sq_thread_idle_ms = None;
    Ring {
        setup,
        wq_parent: None,
        sq_group: None,
        eventfd: None,
        files: Vec::new(),
        buffers: Vec::new(),
        mappings: held.map(|held| held.mappings.clone()).unwrap_or_default(),
        unknown: ring.unknown.clone(),
        state: None,
        personalities: Vec::new(),
        personality_next: 0,
        restrictions: None,
        pbuf_rings: Vec::new(),
        legacy_buffer_groups: Vec::new(),
        registered_ring_fds: Vec::new(),
        settings: RingSettings::default(),
    }
}
