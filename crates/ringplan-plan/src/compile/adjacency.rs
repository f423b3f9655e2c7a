//! The step graph's edges as compressed adjacency arrays, which ordering
//! and emission walk instead of petgraph's per-node edge lists.

use super::graph::StepGraph;

/// The graph's edges as two compressed adjacency arrays (successors and
/// predecessors of each node, contiguous), built in passes over petgraph's
/// edge list. Walking petgraph's per-node edge lists jumps around memory;
/// at a million objects these arrays are what keeps ordering and emission
/// linear in practice.
pub(super) struct Adjacency {
    successor_starts: Vec<u32>,
    successors: Vec<u32>,
    predecessor_starts: Vec<u32>,
    predecessors: Vec<u32>,
}

impl Adjacency {
    pub(super) fn of(graph: &StepGraph) -> Self {
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

    pub(super) fn successors(&self, node: u32) -> &[u32] {
        let node = node as usize;
        &self.successors
            [self.successor_starts[node] as usize..self.successor_starts[node + 1] as usize]
    }

    pub(super) fn predecessors(&self, node: u32) -> &[u32] {
        let node = node as usize;
        &self.predecessors
            [self.predecessor_starts[node] as usize..self.predecessor_starts[node + 1] as usize]
    }

    pub(super) fn in_degree(&self, node: u32) -> u32 {
        let node = node as usize;
        self.predecessor_starts[node + 1] - self.predecessor_starts[node]
    }
}

/// `[0, c0, c0+c1, ...]` from counts whose last entry is a spare 0.
pub(super) fn prefix_sums(counts: &[u32]) -> Vec<u32> {
    let mut starts = Vec::with_capacity(counts.len());
    let mut total = 0u32;
    for &count in counts {
        starts.push(total);
        total += count;
    }
    starts
}
