//! Compiles the BPF program in `bpf/` (at the workspace root) with clang and
//! generates its libbpf-rs skeleton into `OUT_DIR/ringplan.skel.rs`, which
//! `src/bpf/skeleton.rs` includes.
//!
//! Needs clang (any version with BPF CO-RE support, 12 or later); the libbpf
//! headers (`bpf/bpf_helpers.h`, ...) come from libbpf-sys through
//! libbpf-cargo. Set `BPF_CLANG` to use a clang other than the one on PATH.

use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let bpf_dir = manifest_dir.join("../../bpf");
    let source = bpf_dir.join("ringplan.bpf.c");

    // Rebuild when anything in bpf/ changes, including files added later.
    println!("cargo:rerun-if-changed={}", bpf_dir.display());
    println!("cargo:rerun-if-env-changed=BPF_CLANG");
    let entries = std::fs::read_dir(&bpf_dir).unwrap_or_else(|error| {
        panic!(
            "reading the BPF source directory {}: {error}",
            bpf_dir.display()
        )
    });
    for entry in entries.flatten() {
        println!("cargo:rerun-if-changed={}", entry.path().display());
    }

    let mut builder = SkeletonBuilder::new();
    builder
        .source(&source)
        .clang_args(["-Wall", "-Werror", "-I", &bpf_dir.to_string_lossy()]);
    if let Some(clang) = env::var_os("BPF_CLANG") {
        builder.clang(clang);
    }
    if let Err(error) = builder.build_and_generate(out_dir.join("ringplan.skel.rs")) {
        panic!(
            "building the BPF program {} (needs clang): {error:#}",
            source.display()
        );
    }
}
