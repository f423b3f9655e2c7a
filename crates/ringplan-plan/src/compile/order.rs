//! Ordering the step graph: Kahn's algorithm taking the ready step with the
//! smallest sort key, walking the nodes in key order (found by counting
//! sorts) so that only the steps it passes over wait in a heap.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use petgraph::graph::NodeIndex;

use super::adjacency::{prefix_sums, Adjacency};
use super::graph::{phase, rank, GraphBuilder, SortKey};
use crate::error::CompileError;

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

impl GraphBuilder<'_> {
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
    pub(super) fn order(&self, adjacency: &Adjacency) -> Result<Vec<u32>, CompileError> {
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
            return Err(CompileError::Cycle { object });
        }
        Ok(order)
    }
}
