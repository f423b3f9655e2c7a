//! Checkpoint and restore of whole programs that use io_uring, around
//! stock, unmodified CRIU (which refuses a process with a ring): before
//! `criu dump`, every process of the tree that holds rings has them taken
//! out (`plan dump --detach`: drained, dumped into a ringplan image,
//! closed and unmapped, the process left stopped); after `criu restore
//! --leave-stopped`, each gets its rings back where the program left them
//! (`plan exec --pid`), and the tree is resumed.
//!
//! - `binary`: finding `criu`, its version (untested versions refused),
//!   running dump and restore with their logs in the images directory.
//! - `manifest`: `ringplan.json`, which processes had rings and where
//!   their images are.
//! - `checkpoint` and `restore`: the two sequences, with their undo (a
//!   failed checkpoint gives the rings back and lets the programs run on; a
//!   failed restore kills what it restored).
//! - `thread_ids`: criu restores threads with their ids; they must be
//!   free (exiting holders are waited for).
//! - `mover`: the [`RingMover`] trait through which both move rings (the
//!   CLI implements it with ringplan-dump and ringplan-exec).

pub mod binary;
pub mod checkpoint;
mod error;
pub mod manifest;
pub mod mover;
pub mod restore;
pub mod thread_ids;

pub use binary::{Criu, TESTED_VERSIONS};
pub use checkpoint::{checkpoint, CheckpointOptions, Checkpointed};
pub use error::CriuError;
pub use manifest::Manifest;
pub use mover::RingMover;
pub use restore::{restore, Restored};
