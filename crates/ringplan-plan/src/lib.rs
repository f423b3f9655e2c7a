//! The ringplan planner: compiles an image into an explicit, ordered,
//! deterministic restore plan.
//!
//! [`compile`] is a pure function of the [`Image`](ringplan_image::Image):
//! no I/O, no syscalls. It checks the image (the image crate's validation,
//! then everything the planner cannot restore, each refusal a typed
//! [`CompileError`] naming the object), builds a dependency graph of restore
//! actions with petgraph, and orders it topologically with a fixed
//! tie-break, so the same image always gives a byte-identical [`Plan`].
//!
//! A plan is self-contained: each [`Step`] carries every parameter its
//! [`Op`] needs, and steps name the fds earlier steps created by
//! [`Handle`] (the creating step's index). The executor maps handles to real
//! fds at run time. Three invariants shape every plan:
//!
//! - **No fd is clobbered.** Every fd a step creates lives at or above
//!   [`Plan::temp_fd_floor`]; target fd numbers ([`Plan::needed_fds`], which
//!   the executor checks are free) are written only by `install_fd` steps,
//!   which come after every step that creates or registers anything before
//!   the memory barrier. Every temporary is closed by a `close_fd` step.
//! - **Memory comes last.** Steps that need the task's memory (buffer
//!   registration) wait for the single `memory_barrier` step; every other
//!   step runs before it unless it must follow such a step.
//! - **Order is explicit.** `after` lists every step whose handle a step
//!   uses and, for a close, every step that used the handle.
//!
//! Plans travel as CBOR ([`encode`], [`decode`]); decoding checks the format
//! name and version and then [`validate`]s the whole plan.
//! [`plan_from_image_or_plan`] takes either document (what `plan show`
//! reads). The text, DOT and JSON views are [`Plan::to_text`],
//! [`Plan::to_dot`] and [`Plan::to_json`] (or [`Plan::write_json`], which
//! streams). "The planner and its step graph" in `docs/ARCHITECTURE.md`
//! explains the step graph, its invariants and the rejections.

mod analyze;
mod codec;
mod compile;
mod continuity;
mod error;
mod model;
mod render;
mod rules;
mod tree;
mod validate;

pub use codec::{
    decode, decode_slice, encode, encode_to_vec, plan_from_image_or_plan, LoadError,
    PlanDecodeError, PlanEncodeError,
};
use ringplan_image::Image;

pub use error::CompileError;
pub use model::*;
pub use validate::{validate, PlanInvalid};

/// Compiles `image` into a plan: a pure function of the image.
///
/// Checks everything first (image validation, then what the planner cannot
/// restore) and returns the first problem as a [`CompileError`] naming the
/// object; only then builds steps.
///
/// A tree image (`plan dump --tree`) gives a tree plan: a part per
/// process (see `tree.rs`).
pub fn compile(image: &Image) -> Result<Plan, CompileError> {
    if image.is_tree() {
        analyze::check_document(image)?;
        return tree::compile_tree(image);
    }
    compile::compile_one(image)
}
