//! The ringplan image: what a dump of a process's io_uring state holds.
//!
//! An [`Image`] is a versioned object graph. Each [`Object`] is one kernel
//! object the process holds (a ring, an eventfd, a file), has an
//! [`ObjectId`], and lists the fd numbers at which the process holds it.
//! Objects refer to each other by id only: a ring names its eventfd, the
//! files in its registered file table and the ring it attaches its SQ thread
//! to.
//!
//! The image travels as CBOR ([`encode`], [`decode`]). Decoding checks the
//! format name and version first, then [`validate`]s the whole graph, so a
//! reader never sees a dangling or duplicate id or a value the kernel could
//! not hold. The JSON view of `plan show --objects --format json` is built by
//! [`view::to_json`]; its contract and the CBOR schema are in
//! `docs/image-format.md`.
//!
//! This crate does no I/O beyond the reader and writer it is handed.

mod codec;
pub mod document;
mod legacy_pbuf;
mod model;
mod process_view;
mod validate;
pub mod view;

pub use codec::{decode, decode_slice, encode, encode_to_vec, DecodeError, EncodeError};
pub use legacy_pbuf::{LegacyBuffer, LegacyBufferGroup, LegacyBufferRun};
pub use model::*;
pub use validate::{validate, ImageError};
