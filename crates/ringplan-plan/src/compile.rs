//! From an analyzed image to a plan: build the step graph, order it, emit
//! the steps with handles resolved to step indices.
//!
//! The graph is a petgraph [`Graph`] whose nodes are compact descriptions
//! of steps (the image holds their parameters until emission) and whose
//! edges are data dependencies. Ordering is Kahn's algorithm that always
//! takes the ready step with the smallest [`SortKey`], so ties break the
//! same way every time. To stay linear at a million objects it does not
//! keep every ready step in a heap: it walks the steps in key order (found
//! by counting sorts) and keeps only the steps it had to pass over, while
//! they waited, in a heap; see [`GraphBuilder::order`].

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use petgraph::graph::{Graph, NodeIndex};
use petgraph::Directed;
use ringplan_image::{File, FileType, Image, ObjectId, ObjectKind, Ring};

use crate::analyze::{analyze, Analysis, WqSource};
use crate::error::PlanError;
use crate::model::*;

/// Phases: the first component of every step's sort key. Every edge goes
/// from a phase to the same or a later one, so the plan's steps are sorted
/// by phase (see "The planner and its step graph" in `docs/ARCHITECTURE.md`).
mod phase {
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
    /// Close the temporaries of rings that registered buffers.
    pub const RELEASE_BUFFER_RINGS: u8 = 5;
    pub const COUNT: usize = 6;
}

/// Within a build-phase unit (one ring and what it uses first), the order of
/// op kinds.
mod rank {
    pub const TEMPORARY_RING: u8 = 0;
    pub const SETUP_RING: u8 = 1;
    pub const CREATE_EVENTFD: u8 = 2;
    pub const OPEN_FILE: u8 = 3;
    pub const REGISTER_EVENTFD: u8 = 4;
    pub const REGISTER_FILES: u8 = 5;
    pub const CLOSE_TEMPORARY_RING: u8 = 6;
    pub const CLOSE: u8 = 7;
    pub const COUNT: usize = 8;
}

/// `(phase, unit, rank, sub, node)` packed into one integer, smallest
/// first: `phase` 8 bits, `unit` 32 (an object index, so id order), `rank`
/// 8, `sub` 32 (an object index, a temporary ring's index or an fd number),
/// `node` 32 (the node index: creation order, unique, so keys never tie).
type SortKey = u128;

/// One step before it has a position. Indices are object indices in the
/// image (or temporary ring indices); parameters are read at emission.
#[derive(Debug, Clone, Copy)]
enum NodeKind {
    CreateObject(u32),
    SetupTemporary(u32),
    RegisterEventfd {
        ring: u32,
        eventfd: u32,
    },
    RegisterFiles(u32),
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
struct Node {
    kind: NodeKind,
    phase: u8,
    rank: u8,
    unit: u32,
    sub: u32,
}

type StepGraph = Graph<Node, (), Directed, u32>;

/// Marks a per-object node that does not exist (a ring without an eventfd
/// has no register_eventfd node).
const NO_NODE: u32 = u32::MAX;

/// Compiles `image` into a plan: a pure function of the image.
///
/// Checks everything first (image validation, then what the planner cannot
/// restore) and returns the first problem as a [`PlanError`] naming the
/// object; only then builds steps.
pub fn compile(image: &Image) -> Result<Plan, PlanError> {
    let analysis = analyze(image)?;
    let mut builder = GraphBuilder::new(&analysis)?;
    builder.add_nodes();
    builder.add_ring_edges();
    let adjacency = Adjacency::of(&builder.graph);
    let order = builder.order(&adjacency)?;
    Ok(builder.emit(&order, &adjacency))
}

/// How many nodes and edges the graph gets, at most: to size it up front.
fn estimate_sizes(analysis: &Analysis<'_>) -> (usize, usize) {
    let objects = analysis.image.objects.len();
    let fds = analysis.needed_fds.len();
    let rings = analysis.rings.len();
    let temporaries = analysis.temporaries.len();
    let nodes = 1 + 2 * objects + fds + 3 * rings + 2 * temporaries;
    let edges = objects + 2 * fds + 10 * rings + 2 * analysis.file_slot_count + temporaries;
    (nodes, edges)
}

/// The graph's edges as two compressed adjacency arrays (successors and
/// predecessors of each node, contiguous), built in passes over petgraph's
/// edge list. Walking petgraph's per-node edge lists jumps around memory;
/// at a million objects these arrays are what keeps ordering and emission
/// linear in practice.
struct Adjacency {
    successor_starts: Vec<u32>,
    successors: Vec<u32>,
    predecessor_starts: Vec<u32>,
    predecessors: Vec<u32>,
}

impl Adjacency {
    fn of(graph: &StepGraph) -> Self {
        let node_count = graph.node_count();
        let edges = graph.raw_edges();
        let mut out_degree = vec![0u32; node_count + 1];
        let mut in_degree = vec![0u32; node_count + 1];
        for edge in edges {
            out_degree[edge.source().index()] += 1;
            in_degree[edge.target().index()] += 1;
        }
        let successor_starts = prefix_sums(&out_degree);
        let predecessor_starts = prefix_sums(&in_degree);
        let mut successors = vec![0u32; edges.len()];
        let mut predecessors = vec![0u32; edges.len()];
        // Reuse the degree arrays as fill cursors.
        let mut next_successor = successor_starts.clone();
        let mut next_predecessor = predecessor_starts.clone();
        for edge in edges {
            let (source, target) = (edge.source().index(), edge.target().index());
            successors[next_successor[source] as usize] = target as u32;
            next_successor[source] += 1;
            predecessors[next_predecessor[target] as usize] = source as u32;
            next_predecessor[target] += 1;
        }
        Adjacency {
            successor_starts,
            successors,
            predecessor_starts,
            predecessors,
        }
    }

    fn successors(&self, node: u32) -> &[u32] {
        let node = node as usize;
        &self.successors
            [self.successor_starts[node] as usize..self.successor_starts[node + 1] as usize]
    }

    fn predecessors(&self, node: u32) -> &[u32] {
        let node = node as usize;
        &self.predecessors
            [self.predecessor_starts[node] as usize..self.predecessor_starts[node + 1] as usize]
    }

    fn in_degree(&self, node: u32) -> u32 {
        let node = node as usize;
        self.predecessor_starts[node + 1] - self.predecessor_starts[node]
    }
}

/// `[0, c0, c0+c1, ...]` from counts whose last entry is a spare 0.
fn prefix_sums(counts: &[u32]) -> Vec<u32> {
    let mut starts = Vec::with_capacity(counts.len());
    let mut total = 0u32;
    for &count in counts {
        starts.push(total);
        total += count;
    }
    starts
}

/// Stable counting sort of `nodes` by `bucket_of` (each below `buckets`).
fn counting_sort(nodes: &[u32], buckets: usize, bucket_of: impl Fn(u32) -> usize) -> Vec<u32> {
    let mut counts = vec![0u32; buckets + 1];
    for &node in nodes {
        counts[bucket_of(node)] += 1;
    }
    let mut next = prefix_sums(&counts);
    let mut sorted = vec![0u32; nodes.len()];
    for &node in nodes {
        let slot = &mut next[bucket_of(node)];
        sorted[*slot as usize] = node;
        *slot += 1;
    }
    sorted
}

struct GraphBuilder<'a> {
    analysis: &'a Analysis<'a>,
    graph: StepGraph,
    /// Per object index: the node creating it, the node closing its
    /// temporary, and for rings their register nodes (or [`NO_NODE`]).
    create_nodes: Vec<u32>,
    close_nodes: Vec<u32>,
    register_eventfd_nodes: Vec<u32>,
    register_files_nodes: Vec<u32>,
    register_buffers_nodes: Vec<u32>,
    /// Per object index used as a unit: the batch close of the fd-less
    /// eventfds and files last registered there.
    batch_close_nodes: Vec<u32>,
    /// Per temporary ring: its setup and close nodes.
    temporary_setup_nodes: Vec<u32>,
    temporary_close_nodes: Vec<u32>,
    barrier_node: u32,
}

impl<'a> GraphBuilder<'a> {
    fn new(analysis: &'a Analysis<'a>) -> Result<Self, PlanError> {
        let (nodes, edges) = estimate_sizes(analysis);
        // Node indices, handles and step indices are all u32.
        if nodes >= u32::MAX as usize {
            return Err(PlanError::TooManySteps { steps: nodes });
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

    fn key(&self, node: u32) -> SortKey {
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
    fn add_nodes(&mut self) {
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
        self.barrier_node = self.add_node(phase::BARRIER, 0, 0, 0, NodeKind::MemoryBarrier);

        for (index, object) in analysis.image.objects.iter().enumerate() {
            let object_index = index as u32;
            // Eventfds and files are created with the first ring that uses
            // them and, when no fd holds them, closed with the last.
            let (first_user, last_user) =
                analysis.users[index].unwrap_or((object_index, object_index));
            let (create_unit, create_rank) = match &object.kind {
                ObjectKind::Ring(_) => (object_index, rank::SETUP_RING),
                ObjectKind::Eventfd(_) => (first_user, rank::CREATE_EVENTFD),
                ObjectKind::File(_) => (first_user, rank::OPEN_FILE),
            };
            self.create_nodes[index] = self.add_node(
                phase::BUILD,
                create_unit,
                create_rank,
                object_index,
                NodeKind::CreateObject(object_index),
            );

            let close_node = match &object.kind {
                ObjectKind::Ring(ring) => {
                    // Validation guarantees the eventfd resolves.
                    let eventfd_index = ring
                        .eventfd
                        .and_then(|eventfd| analysis.lookup.index_of(eventfd.object));
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
                    if ring.buffers.is_empty() {
                        self.add_node(
                            phase::RELEASE,
                            object_index,
                            0,
                            object_index,
                            NodeKind::CloseObject(object_index),
                        )
                    } else {
                        self.register_buffers_nodes[index] = self.add_node(
                            phase::BUFFERS,
                            object_index,
                            0,
                            object_index,
                            NodeKind::RegisterBuffers(object_index),
                        );
                        self.add_node(
                            phase::RELEASE_BUFFER_RINGS,
                            object_index,
                            0,
                            object_index,
                            NodeKind::CloseObject(object_index),
                        )
                    }
                }
                // An installed object's temporary lives until its installs,
                // which come after every build step.
                _ if !object.fds.is_empty() => self.add_node(
                    phase::RELEASE,
                    object_index,
                    0,
                    object_index,
                    NodeKind::CloseObject(object_index),
                ),
                _ => {
                    let unit = last_user as usize;
                    if self.batch_close_nodes[unit] == NO_NODE {
                        self.batch_close_nodes[unit] = self.add_node(
                            phase::BUILD,
                            last_user,
                            rank::CLOSE,
                            last_user,
                            NodeKind::CloseBatch,
                        );
                    }
                    self.batch_close_nodes[unit]
                }
            };
            self.close_nodes[index] = close_node;

            // The object's own edges, now that both ends exist; ring edges
            // reach objects not created yet and wait for `add_ring_edges`.
            let create = self.create_nodes[index];
            self.add_edge(create, close_node);
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
                self.add_edge(install, close_node);
            }
        }
    }

    /// Adds the edges of every ring and temporary ring: one pass over the
    /// rings only. Each (producer, consumer) pair is added once: a file in
    /// many slots of one table is one dependency.
    fn add_ring_edges(&mut self) {
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

        if !ring.buffers.is_empty() {
            let register = self.register_buffers_nodes[index];
            self.add_edge(self.barrier_node, register);
            self.add_edge(create, register);
            self.add_edge(register, close);
        }
    }

    /// Every node in key order, by counting sorts: build-phase nodes by
    /// rank, then by unit (stable, so creation order, which is `sub` then
    /// node order, survives within each `(unit, rank)`); the other phases
    /// are created in key order already. Checked, and sorted outright if
    /// not.
    fn nodes_in_key_order(&self) -> Vec<u32> {
        let graph = &self.graph;
        let node_count = graph.node_count() as u32;
        let weight = |node: u32| &graph[NodeIndex::new(node as usize)];
        let all: Vec<u32> = (0..node_count).collect();
        let by_phase = counting_sort(&all, phase::COUNT, |node| usize::from(weight(node).phase));
        let build_count = by_phase
            .iter()
            .take_while(|&&node| weight(node).phase == phase::BUILD)
            .count();
        let (build, later) = by_phase.split_at(build_count);
        let by_rank = counting_sort(build, rank::COUNT, |node| usize::from(weight(node).rank));
        let unit_count = self.analysis.image.objects.len();
        let mut sorted = counting_sort(&by_rank, unit_count, |node| weight(node).unit as usize);
        sorted.extend_from_slice(later);
        // Should a change break those creation invariants, the documented
        // tie-break still holds, at the price of a sort (and debug builds,
        // which the tests use, say so).
        let in_key_order = sorted
            .windows(2)
            .all(|pair| self.key(pair[0]) < self.key(pair[1]));
        debug_assert!(
            in_key_order,
            "node creation order no longer follows the sort keys"
        );
        if !in_key_order {
            sorted.sort_unstable_by_key(|&node| self.key(node));
        }
        sorted
    }

    /// Kahn's algorithm, always taking the ready node with the smallest key.
    ///
    /// Rather than a heap of every ready node, it walks the nodes in key
    /// order: the next node in that order, when ready, is the smallest ready
    /// node not yet passed over. A node that is not ready when the walk
    /// reaches it is passed over and goes to a heap once its last
    /// predecessor is taken. Each step takes the smaller of the walk's node
    /// and the heap's top. In a typical image almost nothing waits, so the
    /// heap stays small and ordering is linear.
    fn order(&self, adjacency: &Adjacency) -> Result<Vec<u32>, PlanError> {
        let node_count = self.graph.node_count();
        let walk = self.nodes_in_key_order();
        let mut waiting_on: Vec<u32> = (0..node_count as u32)
            .map(|node| adjacency.in_degree(node))
            .collect();
        let mut passed_over = vec![false; node_count];
        let mut waited: BinaryHeap<Reverse<SortKey>> = BinaryHeap::new();
        let mut order = Vec::with_capacity(node_count);
        let mut cursor = 0;
        loop {
            while cursor < walk.len() && waiting_on[walk[cursor] as usize] > 0 {
                passed_over[walk[cursor] as usize] = true;
                cursor += 1;
            }
            let take_from_walk = match (walk.get(cursor), waited.peek()) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(&node), Some(Reverse(heap_key))) => self.key(node) < *heap_key,
            };
            let node = if take_from_walk {
                cursor += 1;
                walk[cursor - 1]
            } else {
                match waited.pop() {
                    // The low 32 bits of a key are its node.
                    Some(Reverse(key)) => (key & u128::from(u32::MAX)) as u32,
                    None => break,
                }
            };
            order.push(node);
            for &next in adjacency.successors(node) {
                let count = &mut waiting_on[next as usize];
                *count -= 1;
                if *count == 0 && passed_over[next as usize] {
                    waited.push(Reverse(self.key(next)));
                }
            }
        }
        if order.len() < node_count {
            let stuck = (0..node_count).find(|&node| waiting_on[node] > 0);
            let object =
                stuck.and_then(|node| self.object_of(self.graph[NodeIndex::new(node)].kind));
            return Err(PlanError::Cycle { object });
        }
        Ok(order)
    }

    fn object_of(&self, kind: NodeKind) -> Option<ObjectId> {
        let id_at = |index: u32| Some(self.analysis.lookup.id_at(index as usize));
        match kind {
            NodeKind::CreateObject(index)
            | NodeKind::RegisterEventfd { ring: index, .. }
            | NodeKind::RegisterFiles(index)
            | NodeKind::RegisterBuffers(index)
            | NodeKind::CloseObject(index)
            | NodeKind::InstallFd { object: index, .. } => id_at(index),
            NodeKind::SetupTemporary(_)
            | NodeKind::CloseTemporary(_)
            | NodeKind::CloseBatch
            | NodeKind::MemoryBarrier => None,
        }
    }

    /// Turns the ordered nodes into steps, resolving every node reference to
    /// the step index it got.
    fn emit(&self, order: &[u32], adjacency: &Adjacency) -> Plan {
        let graph = &self.graph;
        let mut positions: Vec<u32> = vec![0; graph.node_count()];
        for (position, &node) in order.iter().enumerate() {
            positions[node as usize] = position as u32;
        }
        let handle_of = |node: u32| Handle(positions[node as usize]);

        let mut steps = Vec::with_capacity(order.len());
        // Counted here rather than by a later pass over a million steps.
        let mut open_temporaries: u32 = 0;
        let mut peak_temporaries: u32 = 0;
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
            if op.defines_handle() {
                open_temporaries += 1;
                peak_temporaries = peak_temporaries.max(open_temporaries);
            } else if let Op::CloseFd(close) = &op {
                open_temporaries = open_temporaries.saturating_sub(close.handles.len() as u32);
            }
            steps.push(Step { object, after, op });
        }

        let analysis = self.analysis;
        let needed_fds = analysis.needed_fds.clone();
        let temp_fd_floor = needed_fds.last().map_or(0, |largest| largest + 1);
        debug_assert_eq!(peak_temporaries, self::peak_temporaries(&steps));
        Plan {
            format: FORMAT_NAME.to_owned(),
            version: FORMAT_VERSION,
            source: analysis.image.source.clone(),
            needed_fds,
            temp_fd_floor,
            peak_temporaries,
            steps,
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

    fn op_of(&self, kind: NodeKind, handle_of: &impl Fn(u32) -> Handle) -> Op {
        let analysis = self.analysis;
        let objects = &analysis.image.objects;
        let lookup = &analysis.lookup;
        // Every reference was resolved during analysis, so `index_of`
        // cannot miss here; a miss would leave a slot empty rather than
        // panic.
        let handle_of_id = |id: ObjectId| {
            lookup
                .index_of(id)
                .map(|index| handle_of(self.create_nodes[index]))
        };
        match kind {
            NodeKind::CreateObject(index) => {
                let index = index as usize;
                match &objects[index].kind {
                    ObjectKind::Eventfd(eventfd) => Op::CreateEventfd(CreateEventfd {
                        count: eventfd.count,
                        semaphore: eventfd.semaphore,
                        nonblock: eventfd.nonblock,
                    }),
                    ObjectKind::File(file) => file_op(file),
                    ObjectKind::Ring(ring) => {
                        let wq_handle = match analysis.wq_sources[index] {
                            WqSource::None => None,
                            WqSource::Object(parent) => {
                                Some(handle_of(self.create_nodes[parent as usize]))
                            }
                            WqSource::Temporary(temporary) => {
                                Some(handle_of(self.temporary_setup_nodes[temporary as usize]))
                            }
                        };
                        let setup = &ring.setup;
                        Op::SetupRing(SetupRing {
                            // Analysis refused rings with unknown flags.
                            flags: setup.flags.unwrap_or(0),
                            sq_entries: setup.sq_entries,
                            cq_entries: setup.cq_entries,
                            sq_thread_cpu: setup.sq_thread_cpu,
                            sq_thread_idle_ms: setup.sq_thread_idle_ms,
                            wq_handle,
                            temporary: None,
                            mappings: ring.mappings.clone(),
                        })
                    }
                }
            }
            NodeKind::SetupTemporary(index) => {
                Op::SetupRing(analysis.temporaries[index as usize].setup.clone())
            }
            NodeKind::RegisterEventfd { ring, eventfd } => Op::RegisterEventfd(RegisterEventfd {
                ring_handle: handle_of(self.create_nodes[ring as usize]),
                eventfd_handle: handle_of(self.create_nodes[eventfd as usize]),
                is_async: ring_at(analysis.image, ring)
                    .and_then(|ring| ring.eventfd)
                    .is_some_and(|eventfd| eventfd.is_async),
            }),
            NodeKind::RegisterFiles(index) => {
                let slots = ring_at(analysis.image, index)
                    .map(|ring| {
                        ring.files
                            .iter()
                            .map(|slot| slot.and_then(handle_of_id))
                            .collect()
                    })
                    .unwrap_or_default();
                Op::RegisterFiles(RegisterFiles {
                    ring_handle: handle_of(self.create_nodes[index as usize]),
                    slots,
                })
            }
            NodeKind::MemoryBarrier => Op::MemoryBarrier,
            NodeKind::RegisterBuffers(index) => {
                let iovecs = ring_at(analysis.image, index)
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
                    .unwrap_or_default();
                Op::RegisterBuffers(RegisterBuffers {
                    ring_handle: handle_of(self.create_nodes[index as usize]),
                    iovecs,
                })
            }
            NodeKind::InstallFd { object, entry } => {
                let fd_entry = objects[object as usize].fds[entry as usize];
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
}

fn ring_at(image: &Image, index: u32) -> Option<&Ring> {
    match &image.objects.get(index as usize)?.kind {
        ObjectKind::Ring(ring) => Some(ring),
        _ => None,
    }
}

/// The most handles open at once when the steps run in order.
pub(crate) fn peak_temporaries(steps: &[Step]) -> u32 {
    let mut open: u32 = 0;
    let mut peak: u32 = 0;
    for step in steps {
        if step.op.defines_handle() {
            open += 1;
            peak = peak.max(open);
        } else if let Op::CloseFd(close) = &step.op {
            open = open.saturating_sub(close.handles.len() as u32);
        }
    }
    peak
}

/// The flags `open_file` passes, from the flags the kernel held.
pub(crate) fn reopen_flags(recorded: u32) -> u32 {
    use ringplan_kernel::abi::linux::{O_CLOEXEC, O_CREAT, O_EXCL, O_NOCTTY, O_TRUNC};
    (recorded & !(O_CREAT | O_EXCL | O_TRUNC)) | O_NOCTTY | O_CLOEXEC
}

/// Whether `flags` would create or truncate a file: `open_file` never may.
pub(crate) fn creates_or_truncates(flags: u32) -> bool {
    use ringplan_kernel::abi::linux::{O_CREAT, O_EXCL, O_TRUNC};
    flags & (O_CREAT | O_EXCL | O_TRUNC) != 0
}

/// How a file is brought back: reopened by path when the image has
/// everything that takes, otherwise supplied by the restorer.
fn file_op(file: &File) -> Op {
    let reopenable = matches!(
        file.file_type,
        FileType::Regular | FileType::Directory | FileType::CharDevice | FileType::BlockDevice
    );
    let reason = match (&file.path, reopenable, file.flags, file.pos) {
        (Some(path), true, Some(flags), Some(pos)) => {
            return Op::OpenFile(OpenFile {
                path: path.clone(),
                flags: reopen_flags(flags),
                pos,
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
