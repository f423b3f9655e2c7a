//! Turning the ordered step graph into the plan's steps: each node becomes
//! a [`Step`] whose op carries every parameter, read from the image, with
//! node references resolved to the step indices (handles) they got.

use petgraph::graph::NodeIndex;
use ringplan_image::{File, Image, ObjectId, ObjectKind, Ring};

use super::adjacency::Adjacency;
use super::graph::{GraphBuilder, NodeKind};
use crate::analyze::WqSource;
use crate::continuity::RingContinuity;
use crate::model::*;
use crate::rules::{self, TemporaryCount};

impl GraphBuilder<'_> {
    /// Turns the ordered nodes into steps, resolving every node reference to
    /// the step index it got.
    pub(super) fn emit(&self, order: &[u32], adjacency: &Adjacency) -> Plan {
        let graph = &self.graph;
        let mut positions: Vec<u32> = vec![0; graph.node_count()];
        for (position, &node) in order.iter().enumerate() {
            positions[node as usize] = position as u32;
        }
        let handle_of = |node: u32| Handle(positions[node as usize]);

        let mut steps = Vec::with_capacity(order.len());
        // Counted here rather than by a later pass over a million steps.
        let mut temporaries = TemporaryCount::default();
        for &node in order {
            let mut after: Vec<StepIndex> = adjacency
                .predecessors(node)
                .iter()
                .map(|&previous| positions[previous as usize])
                .collect();
            after.sort_unstable();
            after.dedup();
            let kind = graph[NodeIndex::new(node as usize)].kind;
            let (op, object) = match kind {
                NodeKind::CloseBatch => self.batch_close(&after, order),
                _ => (self.op_of(kind, &handle_of), self.object_of(kind)),
            };
            temporaries.step(&op);
            steps.push(Step { object, after, op });
        }

        let analysis = self.analysis;
        let needed_fds = analysis.needed_fds.clone();
        let temp_fd_floor = needed_fds.last().map_or(0, |largest| largest + 1);
        let peak_temporaries = temporaries.peak();
        debug_assert_eq!(peak_temporaries, rules::peak_temporaries(&steps));
        Plan {
            format: FORMAT_NAME.to_owned(),
            version: FORMAT_VERSION,
            source: analysis.image.source.clone(),
            needed_fds,
            temp_fd_floor,
            peak_temporaries,
            steps,
            processes: Vec::new(),
        }
    }

    /// A batch close closes the fd of every object it waits for the
    /// creation of (its other waits are registrations); it names the object
    /// when it closes one.
    fn batch_close(&self, after: &[StepIndex], order: &[u32]) -> (Op, Option<ObjectId>) {
        let graph = &self.graph;
        let mut handles = Vec::new();
        let mut object = None;
        for &position in after {
            let kind = graph[NodeIndex::new(order[position as usize] as usize)].kind;
            if let NodeKind::CreateObject(_) = kind {
                handles.push(Handle(position));
                object = self.object_of(kind);
            }
        }
        if handles.len() != 1 {
            object = None;
        }
        (Op::CloseFd(CloseFd { handles }), object)
    }

    /// The op of a node, with every node reference resolved by `handle_of`.
    fn op_of(&self, kind: NodeKind, handle_of: &impl Fn(u32) -> Handle) -> Op {
        let analysis = self.analysis;
        let ring_handle = |index: u32| handle_of(self.create_nodes[index as usize]);
        match kind {
            NodeKind::CreateObject(index) => self.create_op(index as usize, handle_of),
            NodeKind::SetupTemporary(index) => {
                Op::SetupRing(analysis.temporaries[index as usize].setup.clone())
            }
            NodeKind::RegisterEventfd { ring, eventfd } => Op::RegisterEventfd(RegisterEventfd {
                ring_handle: ring_handle(ring),
                eventfd_handle: handle_of(self.create_nodes[eventfd as usize]),
                is_async: ring_at(analysis.image, ring)
                    .and_then(|ring| ring.eventfd)
                    .is_some_and(|eventfd| eventfd.is_async),
            }),
            NodeKind::RegisterFiles(index) => Op::RegisterFiles(RegisterFiles {
                ring_handle: ring_handle(index),
                slots: self.file_slots(index, handle_of),
                tags: ring_at(analysis.image, index)
                    .map(|ring| ring.settings.file_tags.clone())
                    .unwrap_or_default(),
            }),
            NodeKind::RegisterPersonalities(index) => {
                let (personalities, next) = ring_at(analysis.image, index)
                    .map(|ring| (ring.personalities.clone(), ring.personality_next))
                    .unwrap_or_default();
                Op::RegisterPersonalities(RegisterPersonalities {
                    ring_handle: ring_handle(index),
                    personalities,
                    next,
                })
            }
            NodeKind::RegisterPbufRing { ring, group } => {
                let entry = ring_at(analysis.image, ring)
                    .and_then(|recorded| recorded.pbuf_rings.get(group as usize));
                Op::RegisterPbufRing(RegisterPbufRing {
                    ring_handle: ring_handle(ring),
                    bgid: entry.map_or(0, |entry| entry.bgid),
                    entries: entry.map_or(0, |entry| entry.entries),
                    // The analysis refused a group without an address.
                    addr: entry.and_then(|entry| entry.addr).unwrap_or(0),
                    incremental: entry.is_some_and(|entry| entry.incremental),
                    head: entry.map_or(0, |entry| entry.head),
                    // Kernel memory (the analysis refused one without its
                    // bytes); `None` for the program's own.
                    contents: entry
                        .filter(|entry| entry.mmap)
                        .and_then(|entry| entry.contents.clone()),
                })
            }
            NodeKind::ProvideBuffers { ring, group } => {
                let group = ring_at(analysis.image, ring)
                    .and_then(|recorded| recorded.legacy_buffer_groups.get(group as usize));
                Op::ProvideBuffers(ProvideBuffers {
                    ring_handle: ring_handle(ring),
                    bgid: group.map_or(0, |group| group.bgid),
                    sqes: group.map(ProvideBuffersSqe::for_group).unwrap_or_default(),
                })
            }
            NodeKind::RegisterRingFd { ring, slot } => {
                let entry = ring_at(analysis.image, ring)
                    .and_then(|recorded| recorded.registered_ring_fds.get(slot as usize).copied());
                Op::RegisterRingFd(RegisterRingFd {
                    ring_handle: ring_handle(ring),
                    offset: entry.map_or(0, |entry| entry.offset),
                    tid: entry.map_or(0, |entry| entry.tid),
                })
            }
            NodeKind::RegisterRestrictions(index) => {
                Op::RegisterRestrictions(RegisterRestrictions {
                    ring_handle: ring_handle(index),
                    restrictions: ring_at(analysis.image, index)
                        .and_then(|ring| ring.restrictions.clone())
                        .unwrap_or(ringplan_image::Restrictions {
                            register_ops: Vec::new(),
                            sqe_ops: Vec::new(),
                            sqe_flags_allowed: 0,
                            sqe_flags_required: 0,
                        }),
                })
            }
            NodeKind::RegisterSettings(index) => {
                let settings = ring_at(analysis.image, index)
                    .map(|ring| ring.settings.clone())
                    .unwrap_or_default();
                Op::RegisterSettings(RegisterSettings {
                    ring_handle: ring_handle(index),
                    file_alloc_range: settings.file_alloc_range,
                    iowq_max_workers: settings.iowq_max_workers,
                    napi: settings.napi,
                    napi_static_ids: settings.napi_static_ids.unwrap_or_default(),
                    iowq_affinity: settings.iowq_affinity,
                })
            }
            NodeKind::RegisterWaitRegion(index) => {
                let settings = ring_at(analysis.image, index).map(|ring| &ring.settings);
                Op::RegisterWaitRegion(RegisterWaitRegion {
                    ring_handle: ring_handle(index),
                    // The analysis refused a region without an address.
                    addr: settings
                        .and_then(|settings| settings.wait_region_addr)
                        .unwrap_or(0),
                    len: settings
                        .and_then(|settings| settings.wait_region_len)
                        .unwrap_or(0),
                    contents: settings.and_then(|settings| settings.wait_region_contents.clone()),
                })
            }
            NodeKind::EnableRings(index) => Op::EnableRings(EnableRings {
                ring_handle: ring_handle(index),
            }),
            NodeKind::PlaceMemory(index) => match self.continuity_of(index) {
                Some(continuity) => Op::PlaceRingMemory(continuity.memory.clone()),
                None => Op::MemoryBarrier,
            },
            NodeKind::RestoreCompletions(index) => {
                match self
                    .continuity_of(index)
                    .and_then(|continuity| continuity.completions_op(ring_handle(index)))
                {
                    Some(op) => Op::RestoreCompletions(op),
                    None => Op::MemoryBarrier,
                }
            }
            NodeKind::QueueSqes(index) => match self
                .continuity_of(index)
                .and_then(|continuity| continuity.queue_op(ring_handle(index)))
            {
                Some(op) => Op::QueueSqes(op),
                None => Op::MemoryBarrier,
            },
            NodeKind::MemoryBarrier => Op::MemoryBarrier,
            NodeKind::RegisterBuffers(index) => Op::RegisterBuffers(RegisterBuffers {
                ring_handle: ring_handle(index),
                iovecs: buffer_iovecs(analysis.image, index),
                tags: ring_at(analysis.image, index)
                    .map(|ring| ring.settings.buffer_tags.clone())
                    .unwrap_or_default(),
            }),
            NodeKind::InstallFd { object, entry } => {
                let fd_entry = analysis.image.objects[object as usize].fds[entry as usize];
                Op::InstallFd(InstallFd {
                    source_handle: handle_of(self.create_nodes[object as usize]),
                    fd: fd_entry.fd,
                    cloexec: fd_entry.cloexec,
                })
            }
            NodeKind::CloseObject(index) => Op::CloseFd(CloseFd {
                handles: vec![handle_of(self.create_nodes[index as usize])],
            }),
            NodeKind::CloseTemporary(index) => Op::CloseFd(CloseFd {
                handles: vec![handle_of(self.temporary_setup_nodes[index as usize])],
            }),
            // Emitted by `batch_close`, which needs the step's after list.
            NodeKind::CloseBatch => Op::CloseFd(CloseFd {
                handles: Vec::new(),
            }),
        }
    }

    /// The op creating the object at `index`: an eventfd, a file reopened
    /// or supplied, or a ring set up with its `wq_fd` resolved.
    fn create_op(&self, index: usize, handle_of: &impl Fn(u32) -> Handle) -> Op {
        let analysis = self.analysis;
        match &analysis.image.objects[index].kind {
            ObjectKind::Eventfd(eventfd) => Op::CreateEventfd(CreateEventfd {
                count: eventfd.count,
                semaphore: eventfd.semaphore,
                nonblock: eventfd.nonblock,
            }),
            ObjectKind::File(file) => file_op(file),
            ObjectKind::Ring(ring) => {
                let wq_handle = match analysis.wq_sources[index] {
                    WqSource::None => None,
                    WqSource::Object(parent) => Some(handle_of(self.create_nodes[parent as usize])),
                    WqSource::Temporary(temporary) => {
                        Some(handle_of(self.temporary_setup_nodes[temporary as usize]))
                    }
                };
                let setup = &ring.setup;
                let continuity = analysis.continuity[index].as_ref();
                let memory = continuity.and_then(|_| {
                    let place = self.place_memory_nodes[index];
                    (place != u32::MAX).then(|| handle_of(place).0)
                });
                // Restrictions and a wait region are registered only
                // while a ring is R_DISABLED: one recorded enabled is set
                // up disabled and enabled by its `enable_rings` step.
                let disabled =
                    if ring.restrictions.is_some() || ring.settings.wait_region_len.is_some() {
                        ringplan_image::SetupFlags::R_DISABLED.bits()
                    } else {
                        0
                    };
                Op::SetupRing(SetupRing {
                    // Analysis refused rings with unknown flags.
                    flags: setup.flags.unwrap_or(0) | disabled,
                    sq_entries: setup.sq_entries,
                    cq_entries: setup.cq_entries,
                    sq_thread_cpu: setup.sq_thread_cpu,
                    sq_thread_idle_ms: setup.sq_thread_idle_ms,
                    wq_handle,
                    temporary: None,
                    mappings: ring.mappings.clone(),
                    memory,
                    owner_tid: continuity.and_then(|continuity| continuity.owner_tid),
                })
            }
        }
    }

    /// The continuity steps of the ring at object index `index`. Nodes of
    /// those steps exist only for rings that have them, so the fallback
    /// (an inert barrier) in `op_of` is never emitted.
    fn continuity_of(&self, index: u32) -> Option<&RingContinuity> {
        self.analysis.continuity.get(index as usize)?.as_ref()
    }

    /// The handles of a ring's file table, slot by slot (`None` empty).
    fn file_slots(
        &self,
        ring_index: u32,
        handle_of: &impl Fn(u32) -> Handle,
    ) -> Vec<Option<Handle>> {
        let lookup = &self.analysis.lookup;
        // Every reference was resolved during analysis, so `index_of`
        // cannot miss here; a miss would leave a slot empty rather than
        // panic.
        let handle_of_id = |id: ObjectId| {
            lookup
                .index_of(id)
                .map(|index| handle_of(self.create_nodes[index]))
        };
        ring_at(self.analysis.image, ring_index)
            .map(|ring| {
                ring.files
                    .iter()
                    .map(|slot| slot.and_then(handle_of_id))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A ring's buffer table as iovecs, slot by slot (`[0, 0]` empty).
fn buffer_iovecs(image: &Image, ring_index: u32) -> Vec<Iovec> {
    ring_at(image, ring_index)
        .map(|ring| {
            ring.buffers
                .iter()
                .map(|slot| {
                    slot.map_or(Iovec::EMPTY, |buffer| Iovec {
                        base: buffer.addr,
                        len: buffer.len,
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

fn ring_at(image: &Image, index: u32) -> Option<&Ring> {
    match &image.objects.get(index as usize)?.kind {
        ObjectKind::Ring(ring) => Some(ring),
        _ => None,
    }
}

/// How a file is brought back: reopened by path when the image has
/// everything that takes, otherwise supplied by the restorer.
fn file_op(file: &File) -> Op {
    let reopenable = OpenFile::REOPENABLE.contains(&file.file_type);
    let reason = match (&file.path, reopenable, file.flags, file.pos) {
        (Some(path), true, Some(flags), Some(pos)) => {
            return Op::OpenFile(OpenFile {
                path: path.clone(),
                flags: rules::reopen_flags(flags),
                pos,
                file_type: Some(file.file_type),
                identity: file.identity,
            });
        }
        (None, _, _, _) => ExternalReason::NoPath,
        (Some(_), false, _, _) => ExternalReason::NotReopenable,
        (Some(_), true, None, _) => ExternalReason::FlagsUnknown,
        (Some(_), true, Some(_), None) => ExternalReason::PositionUnknown,
    };
    Op::ExternalInput(ExternalInput {
        reason,
        file_type: file.file_type,
        path: file.path.clone(),
        flags: file.flags,
        pos: file.pos,
    })
}
