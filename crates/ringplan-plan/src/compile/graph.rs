//! The step graph: one node per restore step, one edge per "must run
//! before", and each node's sort key. [`GraphBuilder`] creates the nodes in
//! image order (which the ordering relies on) and adds the edges of every
//! object and ring; see "The step graph" in `docs/ARCHITECTURE.md` for the
//! edges and why each exists.

use petgraph::graph::{Graph, NodeIndex};
use petgraph::Directed;
use ringplan_image::{Object, ObjectId, ObjectKind, Ring};

use crate::analyze::{Analysis, WqSource};
use crate::error::CompileError;

/// Phases: the first component of every step's sort key. Every edge goes
/// from a phase to the same or a later one, so the plan's steps are sorted
/// by phase (see "The planner and its step graph" in `docs/ARCHITECTURE.md`).
pub(super) mod phase {
    /// Create objects, set up rings, register eventfds and file tables,
    /// close temporaries nothing installs.
    pub const BUILD: u8 = 0;
    /// Copy every object onto its target fds.
    pub const INSTALL: u8 = 1;
    /// Close the temporaries of installed objects and of rings without
    /// buffers.
    pub const RELEASE: u8 = 2;
    /// The memory barrier.
    pub const BARRIER: u8 = 3;
    /// Register buffer tables.
    pub const BUFFERS: u8 = 4;
    /// Queue SQEs: after every fd is installed, the memory is in place and
    /// buffers are registered, since an SQ thread consumes them at once.
    pub const QUEUE: u8 = 5;
    /// Enable rings set up `R_DISABLED` for their restrictions: after
    /// every registration and queued SQE (restrictions then apply).
    pub const ENABLE: u8 = 6;
    /// Close the temporaries of rings that registered buffers, queued
    /// SQEs or were enabled.
    pub const RELEASE_LATE_RINGS: u8 = 7;
    pub const COUNT: usize = 8;
}

/// Within a build-phase unit (one ring and what it uses first), the order of
/// op kinds.
pub(super) mod rank {
    pub const TEMPORARY_RING: u8 = 0;
    pub const PLACE_MEMORY: u8 = 1;
    pub const SETUP_RING: u8 = 2;
    /// While the ring is still disabled, as the kernel requires.
    pub const REGISTER_WAIT_REGION: u8 = 3;
    /// A ring set up disabled for its wait region alone is enabled at once:
    /// `restore_completions` needs it enabled.
    pub const ENABLE_AFTER_WAIT_REGION: u8 = 4;
    /// Before the eventfd is registered: a NOP's completion would count on
    /// it.
    pub const RESTORE_COMPLETIONS: u8 = 5;
    pub const CREATE_EVENTFD: u8 = 6;
    pub const OPEN_FILE: u8 = 7;
    pub const REGISTER_EVENTFD: u8 = 8;
    pub const REGISTER_FILES: u8 = 9;
    pub const REGISTER_PERSONALITIES: u8 = 10;
    pub const REGISTER_RESTRICTIONS: u8 = 11;
    /// After the file table: registering one resets the allocation range.
    pub const REGISTER_SETTINGS: u8 = 12;
    /// After the settings, in slot order.
    pub const REGISTER_RING_FDS: u8 = 13;
    pub const CLOSE_TEMPORARY_RING: u8 = 14;
    pub const CLOSE: u8 = 15;
    pub const COUNT: usize = 16;
}

/// `(phase, unit, rank, sub, node)` packed into one integer, smallest
/// first: `phase` 8 bits, `unit` 32 (an object index, so id order), `rank`
/// 8, `sub` 32 (an object index, a temporary ring's index or an fd number),
/// `node` 32 (the node index: creation order, unique, so keys never tie).
pub(super) type SortKey = u128;

/// One step before it has a position. Indices are object indices in the
/// image (or temporary ring indices); parameters are read at emission.
#[derive(Debug, Clone, Copy)]
pub(super) enum NodeKind {
    CreateObject(u32),
    SetupTemporary(u32),
    RegisterEventfd {
        ring: u32,
        eventfd: u32,
    },
    RegisterFiles(u32),
    RegisterPersonalities(u32),
    /// A ring's buffer ring: the ring's object index and the group's index
    /// in its `pbuf_rings`.
    RegisterPbufRing {
        ring: u32,
        group: u32,
    },
    /// A ring's legacy buffer group that holds buffers: the ring's object
    /// index and the group's index in its `legacy_buffer_groups`.
    ProvideBuffers {
        ring: u32,
        group: u32,
    },
    RegisterRestrictions(u32),
    RegisterSettings(u32),
    RegisterWaitRegion(u32),
    /// A ring's registered ring-fd slot: the ring's object index and the
    /// slot's index in its `registered_ring_fds`.
    RegisterRingFd {
        ring: u32,
        slot: u32,
    },
    EnableRings(u32),
    PlaceMemory(u32),
    RestoreCompletions(u32),
    QueueSqes(u32),
    MemoryBarrier,
    RegisterBuffers(u32),
    InstallFd {
        object: u32,
        entry: u32,
    },
    CloseObject(u32),
    /// Closes the temporaries of every fd-less eventfd and file whose unit
    /// (last registering ring, or itself) is this object index.
    CloseBatch,
    CloseTemporary(u32),
}

/// A node: what the step is, and the parts of its sort key.
#[derive(Debug, Clone, Copy)]
pub(super) struct Node {
    pub(super) kind: NodeKind,
    pub(super) phase: u8,
    pub(super) rank: u8,
    pub(super) unit: u32,
    sub: u32,
}

pub(super) type StepGraph = Graph<Node, (), Directed, u32>;

/// Marks a per-object node that does not exist (a ring without an eventfd
/// has no register_eventfd node).
const NO_NODE: u32 = u32::MAX;

/// How many nodes and edges the graph gets, at most: to size it up front.
fn estimate_sizes(analysis: &Analysis<'_>) -> (usize, usize) {
    let objects = analysis.image.objects.len();
    let fds = analysis.needed_fds.len();
    let rings = analysis.rings.len();
    let temporaries = analysis.temporaries.len();
    let nodes = 1 + 2 * objects + fds + 9 * rings + 2 * temporaries + analysis.ring_fd_slot_count;
    let edges = objects + 2 * fds + 20 * rings + 2 * analysis.file_slot_count + temporaries;
    (nodes, edges)
}

/// The step graph under construction, with the node of each role per
/// object. `order.rs` orders it and `emit.rs` turns it into steps.
pub(super) struct GraphBuilder<'a> {
    pub(super) analysis: &'a Analysis<'a>,
    pub(super) graph: StepGraph,
    /// Per object index: the node creating it, the node closing its
    /// temporary, and for rings their register nodes (or [`NO_NODE`]).
    pub(super) create_nodes: Vec<u32>,
    close_nodes: Vec<u32>,
    register_eventfd_nodes: Vec<u32>,
    register_files_nodes: Vec<u32>,
    register_buffers_nodes: Vec<u32>,
    register_personalities_nodes: Vec<u32>,
    /// Per ring, its register_pbuf_ring nodes (one per buffer ring).
    register_pbuf_nodes: Vec<Vec<u32>>,
    /// Per ring, its provide_buffers nodes (one per legacy group with
    /// buffers).
    provide_nodes: Vec<Vec<u32>>,
    register_restrictions_nodes: Vec<u32>,
    register_settings_nodes: Vec<u32>,
    /// Per ring, its register_ring_fd nodes (one per slot).
    register_ring_fd_nodes: Vec<Vec<u32>>,
    /// Per ring with a wait region: its register_wait_region node, and the
    /// enable_rings right after it when nothing else keeps the ring
    /// disabled (or [`NO_NODE`]).
    register_wait_region_nodes: Vec<u32>,
    early_enable_nodes: Vec<u32>,
    /// Per ring enabled after everything done to it (restrictions).
    enable_nodes: Vec<u32>,
    /// Per ring restored continuously: its place_ring_memory,
    /// restore_completions and queue_sqes nodes (or [`NO_NODE`]).
    pub(super) place_memory_nodes: Vec<u32>,
    restore_completions_nodes: Vec<u32>,
    queue_sqes_nodes: Vec<u32>,
    /// Per object index used as a unit: the batch close of the fd-less
    /// eventfds and files last registered there.
    batch_close_nodes: Vec<u32>,
    /// Per temporary ring: its setup and close nodes.
    pub(super) temporary_setup_nodes: Vec<u32>,
    temporary_close_nodes: Vec<u32>,
    barrier_node: u32,
}

impl<'a> GraphBuilder<'a> {
    pub(super) fn new(analysis: &'a Analysis<'a>) -> Result<Self, CompileError> {
        let (nodes, edges) = estimate_sizes(analysis);
        // Node indices, handles and step indices are all u32.
        if nodes >= u32::MAX as usize {
            return Err(CompileError::TooManySteps { steps: nodes });
        }
        let object_count = analysis.image.objects.len();
        Ok(GraphBuilder {
            analysis,
            graph: StepGraph::with_capacity(nodes, edges),
            create_nodes: vec![NO_NODE; object_count],
            close_nodes: vec![NO_NODE; object_count],
            register_eventfd_nodes: vec![NO_NODE; object_count],
            register_files_nodes: vec![NO_NODE; object_count],
            register_buffers_nodes: vec![NO_NODE; object_count],
            register_personalities_nodes: vec![NO_NODE; object_count],
            register_pbuf_nodes: vec![Vec::new(); object_count],
            provide_nodes: vec![Vec::new(); object_count],
            register_restrictions_nodes: vec![NO_NODE; object_count],
            register_settings_nodes: vec![NO_NODE; object_count],
            register_ring_fd_nodes: vec![Vec::new(); object_count],
            register_wait_region_nodes: vec![NO_NODE; object_count],
            early_enable_nodes: vec![NO_NODE; object_count],
            enable_nodes: vec![NO_NODE; object_count],
            place_memory_nodes: vec![NO_NODE; object_count],
            restore_completions_nodes: vec![NO_NODE; object_count],
            queue_sqes_nodes: vec![NO_NODE; object_count],
            batch_close_nodes: vec![NO_NODE; object_count],
            temporary_setup_nodes: Vec::new(),
            temporary_close_nodes: Vec::new(),
            barrier_node: NO_NODE,
        })
    }

    fn add_node(&mut self, phase: u8, unit: u32, rank: u8, sub: u32, kind: NodeKind) -> u32 {
        // `new` checked that every node index fits in u32.
        let index = self.graph.node_count() as u32;
        self.graph.add_node(Node {
            kind,
            phase,
            rank,
            unit,
            sub,
        });
        index
    }

    fn add_edge(&mut self, from: u32, to: u32) {
        debug_assert!(from != NO_NODE && to != NO_NODE);
        self.graph.add_edge(
            NodeIndex::new(from as usize),
            NodeIndex::new(to as usize),
            (),
        );
    }

    pub(super) fn key(&self, node: u32) -> SortKey {
        let weight = &self.graph[NodeIndex::new(node as usize)];
        (u128::from(weight.phase) << 104)
            | (u128::from(weight.unit) << 72)
            | (u128::from(weight.rank) << 64)
            | (u128::from(weight.sub) << 32)
            | u128::from(node)
    }

    /// Creates every node, and the edges within one object (create, installs,
    /// close). The creation order is the image's id order, so node indices (the
    /// last tie-break) are a function of the image; and within one
    /// `(phase, unit, rank)` it is already `sub` order, which
    /// [`GraphBuilder::order`] relies on for speed (and checks).
    pub(super) fn add_nodes(&mut self) {
        self.add_temporary_ring_nodes();
        self.barrier_node = self.add_node(phase::BARRIER, 0, 0, 0, NodeKind::MemoryBarrier);
        let analysis = self.analysis;
        for (index, object) in analysis.image.objects.iter().enumerate() {
            self.add_object_nodes(index, object);
        }
    }

    /// The setup and close of every temporary ring, with the units of the
    /// first and last ring attached to it.
    fn add_temporary_ring_nodes(&mut self) {
        let analysis = self.analysis;
        for (index, temporary) in analysis.temporaries.iter().enumerate() {
            let index = index as u32;
            let setup = self.add_node(
                phase::BUILD,
                temporary.first_user,
                rank::TEMPORARY_RING,
                index,
                NodeKind::SetupTemporary(index),
            );
            let close = self.add_node(
                phase::BUILD,
                temporary.last_user,
                rank::CLOSE_TEMPORARY_RING,
                index,
                NodeKind::CloseTemporary(index),
            );
            self.temporary_setup_nodes.push(setup);
            self.temporary_close_nodes.push(close);
        }
    }

    /// One object's nodes (create, a ring's registrations, installs, the
    /// close of its temporary) and the edges among them.
    fn add_object_nodes(&mut self, index: usize, object: &Object) {
        let object_index = index as u32;
        // Eventfds and files are created with the first ring that uses
        // them and, when no fd holds them, closed with the last.
        let (first_user, last_user) =
            self.analysis.users[index].unwrap_or((object_index, object_index));
        let (create_unit, create_rank) = match &object.kind {
            ObjectKind::Ring(_) => (object_index, rank::SETUP_RING),
            ObjectKind::Eventfd(_) => (first_user, rank::CREATE_EVENTFD),
            ObjectKind::File(_) => (first_user, rank::OPEN_FILE),
        };
        let continuity = self.analysis.continuity[index].as_ref();
        if continuity.is_some() {
            self.place_memory_nodes[index] = self.add_node(
                phase::BUILD,
                object_index,
                rank::PLACE_MEMORY,
                object_index,
                NodeKind::PlaceMemory(object_index),
            );
        }
        let create = self.add_node(
            phase::BUILD,
            create_unit,
            create_rank,
            object_index,
            NodeKind::CreateObject(object_index),
        );
        self.create_nodes[index] = create;

        let close = match &object.kind {
            ObjectKind::Ring(ring) => self.add_ring_nodes(index, ring),
            // An installed object's temporary lives until its installs,
            // which come after every build step.
            _ if !object.fds.is_empty() => self.add_node(
                phase::RELEASE,
                object_index,
                0,
                object_index,
                NodeKind::CloseObject(object_index),
            ),
            _ => self.batch_close_node(last_user),
        };
        self.close_nodes[index] = close;

        // The object's own edges, now that both ends exist; ring edges
        // reach objects not created yet and wait for `add_ring_edges`.
        self.add_edge(create, close);
        for (entry, fd_entry) in object.fds.iter().enumerate() {
            let install = self.add_node(
                phase::INSTALL,
                object_index,
                0,
                // Validation guarantees fds are non-negative.
                fd_entry.fd as u32,
                NodeKind::InstallFd {
                    object: object_index,
                    entry: entry as u32,
                },
            );
            self.add_edge(create, install);
            self.add_edge(install, close);
        }
    }

    /// A ring's register nodes; returns the node closing its temporary,
    /// after the barrier when the ring registers buffers.
    fn add_ring_nodes(&mut self, index: usize, ring: &Ring) -> u32 {
        let object_index = index as u32;
        let continuity = self.analysis.continuity[index].as_ref();
        if ring.settings.wait_region_len.is_some() {
            self.register_wait_region_nodes[index] = self.add_node(
                phase::BUILD,
                object_index,
                rank::REGISTER_WAIT_REGION,
                object_index,
                NodeKind::RegisterWaitRegion(object_index),
            );
            if !needs_enable(ring) && !ring.setup.has(ringplan_image::SetupFlags::R_DISABLED) {
                self.early_enable_nodes[index] = self.add_node(
                    phase::BUILD,
                    object_index,
                    rank::ENABLE_AFTER_WAIT_REGION,
                    object_index,
                    NodeKind::EnableRings(object_index),
                );
            }
        }
        if continuity.is_some_and(|continuity| continuity.completions.is_some()) {
            self.restore_completions_nodes[index] = self.add_node(
                phase::BUILD,
                object_index,
                rank::RESTORE_COMPLETIONS,
                object_index,
                NodeKind::RestoreCompletions(object_index),
            );
        }
        // Validation guarantees the eventfd resolves.
        let eventfd_index = ring
            .eventfd
            .and_then(|eventfd| self.analysis.lookup.index_of(eventfd.object));
        if let Some(eventfd_index) = eventfd_index {
            self.register_eventfd_nodes[index] = self.add_node(
                phase::BUILD,
                object_index,
                rank::REGISTER_EVENTFD,
                object_index,
                NodeKind::RegisterEventfd {
                    ring: object_index,
                    eventfd: eventfd_index as u32,
                },
            );
        }
        if !ring.files.is_empty() {
            self.register_files_nodes[index] = self.add_node(
                phase::BUILD,
                object_index,
                rank::REGISTER_FILES,
                object_index,
                NodeKind::RegisterFiles(object_index),
            );
        }
        if has_personalities(ring) {
            self.register_personalities_nodes[index] = self.add_node(
                phase::BUILD,
                object_index,
                rank::REGISTER_PERSONALITIES,
                object_index,
                NodeKind::RegisterPersonalities(object_index),
            );
        }
        if ring.restrictions.is_some() {
            self.register_restrictions_nodes[index] = self.add_node(
                phase::BUILD,
                object_index,
                rank::REGISTER_RESTRICTIONS,
                object_index,
                NodeKind::RegisterRestrictions(object_index),
            );
        }
        if has_settings(ring) {
            self.register_settings_nodes[index] = self.add_node(
                phase::BUILD,
                object_index,
                rank::REGISTER_SETTINGS,
                object_index,
                NodeKind::RegisterSettings(object_index),
            );
        }
        for slot in 0..ring.registered_ring_fds.len() as u32 {
            let node = self.add_node(
                phase::BUILD,
                object_index,
                rank::REGISTER_RING_FDS,
                slot,
                NodeKind::RegisterRingFd {
                    ring: object_index,
                    slot,
                },
            );
            self.register_ring_fd_nodes[index].push(node);
        }
        let mut close_phase = phase::RELEASE;
        if needs_enable(ring) {
            self.enable_nodes[index] = self.add_node(
                phase::ENABLE,
                object_index,
                0,
                object_index,
                NodeKind::EnableRings(object_index),
            );
            close_phase = phase::RELEASE_LATE_RINGS;
        }
        if !ring.buffers.is_empty() {
            self.register_buffers_nodes[index] = self.add_node(
                phase::BUFFERS,
                object_index,
                0,
                object_index,
                NodeKind::RegisterBuffers(object_index),
            );
            close_phase = phase::RELEASE_LATE_RINGS;
        }
        for group in 0..ring.pbuf_rings.len() as u32 {
            // After the barrier (the ring's memory is the program's), in
            // bgid order.
            let node = self.add_node(
                phase::BUFFERS,
                object_index,
                1,
                group,
                NodeKind::RegisterPbufRing {
                    ring: object_index,
                    group,
                },
            );
            self.register_pbuf_nodes[index].push(node);
            close_phase = phase::RELEASE_LATE_RINGS;
        }
        for (group, legacy) in ring.legacy_buffer_groups.iter().enumerate() {
            // A group whose buffers were all taken is left out (the
            // analysis says why); the others after the buffer rings.
            if legacy.buffer_count() == 0 {
                continue;
            }
            let node = self.add_node(
                phase::BUFFERS,
                object_index,
                2,
                group as u32,
                NodeKind::ProvideBuffers {
                    ring: object_index,
                    group: group as u32,
                },
            );
            self.provide_nodes[index].push(node);
            close_phase = phase::RELEASE_LATE_RINGS;
        }
        if continuity.is_some_and(|continuity| continuity.queue.is_some()) {
            self.queue_sqes_nodes[index] = self.add_node(
                phase::QUEUE,
                object_index,
                0,
                object_index,
                NodeKind::QueueSqes(object_index),
            );
            close_phase = phase::RELEASE_LATE_RINGS;
        }
        self.add_node(
            close_phase,
            object_index,
            0,
            object_index,
            NodeKind::CloseObject(object_index),
        )
    }

    /// The batch close of the fd-less eventfds and files whose last
    /// registering ring (or themselves) is `unit`, created on first use.
    fn batch_close_node(&mut self, unit: u32) -> u32 {
        let slot = unit as usize;
        if self.batch_close_nodes[slot] == NO_NODE {
            self.batch_close_nodes[slot] =
                self.add_node(phase::BUILD, unit, rank::CLOSE, unit, NodeKind::CloseBatch);
        }
        self.batch_close_nodes[slot]
    }

    /// Adds the edges of every ring and temporary ring: one pass over the
    /// rings only. Each (producer, consumer) pair is added once: a file in
    /// many slots of one table is one dependency.
    pub(super) fn add_ring_edges(&mut self) {
        let analysis = self.analysis;
        let objects = &analysis.image.objects;
        // Per object index: 1 + the index of the last ring whose file table
        // added edges for it, to skip repeated slots in O(1).
        let mut seen_in_table: Vec<u32> = vec![0; objects.len()];
        // Per close node: the last register node given an edge to it, so
        // the many files of one batch close add one edge per register step.
        let mut last_register_into: Vec<u32> = vec![NO_NODE; self.graph.node_count()];

        for index in 0..self.temporary_setup_nodes.len() {
            self.add_edge(
                self.temporary_setup_nodes[index],
                self.temporary_close_nodes[index],
            );
        }
        for &index in &analysis.rings {
            let index = index as usize;
            if let ObjectKind::Ring(ring) = &objects[index].kind {
                self.add_edges_of_ring(index, ring, &mut seen_in_table, &mut last_register_into);
            }
        }
    }

    /// Adds `register -> close` once per pair.
    fn add_release_edge(&mut self, register: u32, close: u32, last_register_into: &mut [u32]) {
        if last_register_into[close as usize] != register {
            last_register_into[close as usize] = register;
            self.add_edge(register, close);
        }
    }

    fn add_edges_of_ring(
        &mut self,
        index: usize,
        ring: &Ring,
        seen_in_table: &mut [u32],
        last_register_into: &mut [u32],
    ) {
        let lookup = &self.analysis.lookup;
        let create = self.create_nodes[index];
        let close = self.close_nodes[index];

        let (wq_setup, wq_close) = match self.analysis.wq_sources[index] {
            WqSource::None => (NO_NODE, NO_NODE),
            WqSource::Object(parent) => (
                self.create_nodes[parent as usize],
                self.close_nodes[parent as usize],
            ),
            WqSource::Temporary(temporary) => (
                self.temporary_setup_nodes[temporary as usize],
                self.temporary_close_nodes[temporary as usize],
            ),
        };
        self.add_continuity_edges(index, create, close);
        self.add_wait_region_edges(index, create, close);
        if wq_setup != NO_NODE {
            // The parent's fd must be open while this ring is set up.
            self.add_edge(wq_setup, create);
            self.add_edge(create, wq_close);
        }

        let register = self.register_eventfd_nodes[index];
        if register != NO_NODE {
            if let NodeKind::RegisterEventfd { eventfd, .. } =
                self.graph[NodeIndex::new(register as usize)].kind
            {
                let eventfd = eventfd as usize;
                self.add_edge(create, register);
                self.add_edge(self.create_nodes[eventfd], register);
                self.add_release_edge(register, self.close_nodes[eventfd], last_register_into);
                self.add_release_edge(register, close, last_register_into);
            }
        }

        if !ring.files.is_empty() {
            let register = self.register_files_nodes[index];
            let marker = index as u32 + 1;
            self.add_edge(create, register);
            for target in ring.files.iter().flatten() {
                let Some(target_index) = lookup.index_of(*target) else {
                    continue;
                };
                if seen_in_table[target_index] == marker {
                    continue;
                }
                seen_in_table[target_index] = marker;
                self.add_edge(self.create_nodes[target_index], register);
                self.add_release_edge(register, self.close_nodes[target_index], last_register_into);
            }
            self.add_release_edge(register, close, last_register_into);
        }

        let register = self.register_personalities_nodes[index];
        if register != NO_NODE {
            self.add_edge(create, register);
            self.add_release_edge(register, close, last_register_into);
        }
        let restrict = self.register_restrictions_nodes[index];
        if restrict != NO_NODE {
            self.add_edge(create, restrict);
            self.add_release_edge(restrict, close, last_register_into);
        }
        let settings = self.register_settings_nodes[index];
        if settings != NO_NODE {
            self.add_edge(create, settings);
            // The file table's registration sets the allocation range to
            // the whole table: the recorded range comes after it.
            let files = self.register_files_nodes[index];
            if files != NO_NODE {
                self.add_edge(files, settings);
            }
            self.add_release_edge(settings, close, last_register_into);
        }

        // A registered ring fd holds the ring on its own: registered
        // before the ring's temporary closes (a ring no fd holds lives on
        // in its slots) and before it is enabled (then its restrictions
        // apply to registrations, and a SINGLE_ISSUER ring lets only its
        // owner register).
        for register in self.register_ring_fd_nodes[index].clone() {
            self.add_edge(create, register);
            self.add_release_edge(register, close, last_register_into);
            let enable = self.enable_nodes[index];
            if enable != NO_NODE {
                self.add_edge(register, enable);
            }
        }

        if !ring.buffers.is_empty() {
            let register = self.register_buffers_nodes[index];
            self.add_edge(self.barrier_node, register);
            self.add_edge(create, register);
            self.add_edge(register, close);
        }

        let provides = self.provide_nodes[index].clone();
        for register in self.register_pbuf_nodes[index]
            .clone()
            .into_iter()
            .chain(provides)
        {
            self.add_edge(self.barrier_node, register);
            self.add_edge(create, register);
            self.add_edge(register, close);
            // Queued SQEs may select buffers from the group.
            let queue = self.queue_sqes_nodes[index];
            if queue != NO_NODE {
                self.add_edge(register, queue);
            }
            let enable = self.enable_nodes[index];
            if enable != NO_NODE {
                self.add_edge(register, enable);
            }
        }

        // Enabling comes after everything done to the ring: its
        // restrictions then apply to registrations, and an SQ thread
        // starts and consumes the queued SQEs.
        let enable = self.enable_nodes[index];
        if enable != NO_NODE {
            self.add_edge(create, enable);
            for before in [
                self.register_eventfd_nodes[index],
                self.register_files_nodes[index],
                self.register_personalities_nodes[index],
                self.register_restrictions_nodes[index],
                self.register_settings_nodes[index],
                self.register_buffers_nodes[index],
                self.queue_sqes_nodes[index],
            ] {
                if before != NO_NODE {
                    self.add_edge(before, enable);
                }
            }
            self.add_edge(enable, close);
        }
    }

    /// setup_ring -> register_wait_region -> its enable_rings (or the late
    /// one) -> everything else done to the ring.
    fn add_wait_region_edges(&mut self, index: usize, create: u32, close: u32) {
        let register = self.register_wait_region_nodes[index];
        if register == NO_NODE {
            return;
        }
        self.add_edge(create, register);
        self.add_edge(register, close);
        let early = self.early_enable_nodes[index];
        let late = self.enable_nodes[index];
        if late != NO_NODE {
            self.add_edge(register, late);
        }
        if early == NO_NODE {
            return;
        }
        self.add_edge(create, early);
        self.add_edge(register, early);
        self.add_edge(early, close);
        let after = [
            self.restore_completions_nodes[index],
            self.register_eventfd_nodes[index],
            self.register_files_nodes[index],
            self.register_personalities_nodes[index],
            self.register_settings_nodes[index],
        ];
        for node in after
            .into_iter()
            .chain(self.register_ring_fd_nodes[index].clone())
        {
            if node != NO_NODE {
                self.add_edge(early, node);
            }
        }
    }

    /// place_ring_memory -> setup_ring -> restore_completions -> the
    /// eventfd's registration; barrier, file and buffer registrations ->
    /// queue_sqes -> the ring's close.
    fn add_continuity_edges(&mut self, index: usize, create: u32, close: u32) {
        let place = self.place_memory_nodes[index];
        if place == NO_NODE {
            return;
        }
        self.add_edge(place, create);
        let restore = self.restore_completions_nodes[index];
        if restore != NO_NODE {
            self.add_edge(create, restore);
            self.add_edge(restore, close);
            let register = self.register_eventfd_nodes[index];
            if register != NO_NODE {
                self.add_edge(restore, register);
            }
        }
        let queue = self.queue_sqes_nodes[index];
        if queue != NO_NODE {
            self.add_edge(create, queue);
            self.add_edge(self.barrier_node, queue);
            // Queued SQEs may name personalities by id.
            for before in [
                restore,
                self.register_files_nodes[index],
                self.register_buffers_nodes[index],
                self.register_personalities_nodes[index],
            ] {
                if before != NO_NODE {
                    self.add_edge(before, queue);
                }
            }
            self.add_edge(queue, close);
        }
    }

    pub(super) fn object_of(&self, kind: NodeKind) -> Option<ObjectId> {
        let id_at = |index: u32| Some(self.analysis.lookup.id_at(index as usize));
        match kind {
            NodeKind::CreateObject(index)
            | NodeKind::RegisterEventfd { ring: index, .. }
            | NodeKind::RegisterFiles(index)
            | NodeKind::RegisterPersonalities(index)
            | NodeKind::RegisterPbufRing { ring: index, .. }
            | NodeKind::ProvideBuffers { ring: index, .. }
            | NodeKind::RegisterRestrictions(index)
            | NodeKind::RegisterSettings(index)
            | NodeKind::RegisterWaitRegion(index)
            | NodeKind::RegisterRingFd { ring: index, .. }
            | NodeKind::EnableRings(index)
            | NodeKind::RegisterBuffers(index)
            | NodeKind::PlaceMemory(index)
            | NodeKind::RestoreCompletions(index)
            | NodeKind::QueueSqes(index)
            | NodeKind::CloseObject(index)
            | NodeKind::InstallFd { object: index, .. } => id_at(index),
            NodeKind::SetupTemporary(_)
            | NodeKind::CloseTemporary(_)
            | NodeKind::CloseBatch
            | NodeKind::MemoryBarrier => None,
        }
    }
}

/// Whether a ring gets a `register_personalities` step: it has
/// personalities, or had some (the allocator's next id is past 1).
pub(super) fn has_personalities(ring: &Ring) -> bool {
    !ring.personalities.is_empty() || ring.personality_next > 1
}

/// Whether a ring gets an `enable_rings` step: it has restrictions, which
/// need it set up `R_DISABLED`, and the image recorded it enabled.
/// Whether the ring has a setting `register_settings` registers (tags go
/// with their tables' registrations; a wait region has a step of its
/// own).
pub(super) fn has_settings(ring: &Ring) -> bool {
    let settings = &ring.settings;
    settings.file_alloc_range.is_some()
        || settings.iowq_max_workers.is_some()
        || settings.napi.is_some()
        || settings.iowq_affinity.is_some()
}

pub(super) fn needs_enable(ring: &Ring) -> bool {
    ring.restrictions.is_some() && !ring.setup.has(ringplan_image::SetupFlags::R_DISABLED)
}
