//! The planner's integration tests, one binary:
//!
//! - `scenarios`: synthetic images (also used by the bench)
//! - `snapshots`: text, DOT and JSON views of each scenario's plan
//! - `rejections`: every image the planner refuses, with its message
//! - `invariants`: properties every compiled plan has (validation passes,
//!   determinism, phase order, chain and fan-out ordering)
//! - `codec`: CBOR round trips and refusals of tampered plans
//! - `fuzz_corpus`: replays `fuzz/regressions/` and `fuzz/corpus/` (no
//!   input may panic; see docs/fuzzing.md)

mod codec;
mod fuzz_corpus;
mod invariants;
mod rejections;
mod scenarios;
mod snapshots;
