//! The planner's integration tests, one binary:
//!
//! - `scenarios`: synthetic images (also used by the bench)
//! - `snapshots`: text, DOT and JSON views of each scenario's plan
//! - `rejections`: every image the planner refuses, with its message
//! - `invariants`: properties every compiled plan has (validation passes,
//!   determinism, phase order, chain and fan-out ordering)
//! - `codec`: CBOR round trips and refusals of tampered plans

mod codec;
mod invariants;
mod rejections;
mod scenarios;
mod snapshots;
