//! The libbpf-rs skeleton that build.rs generates from `bpf/ringplan.bpf.c`.
//! Its `types` module holds the record structs and constants of
//! `bpf/ringplan_records.h`, generated from the object's BTF, which
//! `records.rs` parses with.
#![allow(
    clippy::all,
    clippy::pedantic,
    clippy::restriction,
    missing_docs,
    non_camel_case_types,
    non_snake_case,
    dead_code,
    unused_imports
)]

include!(concat!(env!("OUT_DIR"), "/ringplan.skel.rs"));
