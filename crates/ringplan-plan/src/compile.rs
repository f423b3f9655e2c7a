//! From an analyzed image to a plan, in three stages with a module each:
//!
//! - `graph`: the step graph, a petgraph `Graph` whose nodes are compact
//!   descriptions of steps (the image holds their parameters until
//!   emission) and whose edges are "must run before", each node with its
//!   sort key;
//! - `order`: Kahn's algorithm that always takes the ready step with the
//!   smallest sort key, so ties break the same way every time; linear at a
//!   million objects because it walks the steps in key order (found by
//!   counting sorts) and keeps only the steps it had to pass over in a heap;
//! - `emit`: the ordered nodes become steps, with handles resolved to step
//!   indices.
//!
//! `adjacency` holds the graph's edges as compressed arrays for the last two.

mod adjacency;
mod emit;
mod graph;
mod order;

use ringplan_image::Image;

use crate::analyze::analyze;
use crate::error::CompileError;
use crate::model::Plan;
use adjacency::Adjacency;
use graph::GraphBuilder;

/// Compiles the image of one process (see [`crate::compile`]).
pub(crate) fn compile_one(image: &Image) -> Result<Plan, CompileError> {
    let analysis = analyze(image)?;
    let mut builder = GraphBuilder::new(&analysis)?;
    builder.add_nodes();
    builder.add_ring_edges();
    let adjacency = Adjacency::of(&builder.graph);
    let order = builder.order(&adjacency)?;
    Ok(builder.emit(&order, &adjacency))
}
