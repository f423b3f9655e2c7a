//! Replays the fuzz inputs checked in under `fuzz/` (docs/fuzzing.md):
//! every file of `fuzz/regressions/*/` and `fuzz/corpus/*/` (but the
//! structure-aware target's sketches) goes through
//! what the fuzz targets do (image decode -> compile -> views -> plan CBOR
//! round trip; plan decode -> views; `plan_from_image_or_plan`), and none
//! may panic. So `cargo test --workspace` re-runs them every time without
//! cargo-fuzz or nightly.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// Every file directly under each subdirectory of `fuzz/<kind>/`.
fn inputs(kind: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(targets) = std::fs::read_dir(fuzz_dir().join(kind)) else {
        return files;
    };
    for target in targets {
        let target = target.expect("reading fuzz dir").path();
        // structured_preflight's inputs are `arbitrary` sketches, not
        // documents: only its own builder (in fuzz/) gives them meaning.
        if !target.is_dir() || target.ends_with("structured_preflight") {
            continue;
        }
        for entry in std::fs::read_dir(&target).expect("reading fuzz target dir") {
            let path = entry.expect("reading fuzz target dir").path();
            if path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// What the `decode_compile` and `decode_plan` targets do with one input.
fn exercise(bytes: &[u8]) {
    let _ = ringplan_plan::plan_from_image_or_plan(bytes);
    if let Ok(image) = ringplan_image::decode_slice(bytes) {
        if let Ok(plan) = ringplan_plan::compile(&image) {
            let _ = plan.to_text();
            let _ = plan.to_dot();
            let _ = plan.to_json();
            let _ = plan.fd_limit_needed();
            let encoded = ringplan_plan::encode_to_vec(&plan).expect("a compiled plan encodes");
            let decoded = ringplan_plan::decode_slice(&encoded)
                .expect("a compiled plan decodes and validates");
            assert_eq!(decoded, plan, "plan CBOR round trip changed the plan");
        }
    }
    if let Ok(plan) = ringplan_plan::decode_slice(bytes) {
        let _ = plan.to_text();
        let _ = plan.to_dot();
        let _ = plan.to_json();
        let encoded = ringplan_plan::encode_to_vec(&plan).expect("a valid plan encodes");
        let decoded = ringplan_plan::decode_slice(&encoded).expect("a re-encoded plan decodes");
        assert_eq!(decoded, plan, "plan CBOR round trip changed the plan");
    }
}

fn replay(files: &[PathBuf]) {
    let mut failures = Vec::new();
    for path in files {
        let bytes = std::fs::read(path).expect("reading fuzz input");
        if catch_unwind(AssertUnwindSafe(|| exercise(&bytes))).is_err() {
            failures.push(display(path));
        }
    }
    assert!(
        failures.is_empty(),
        "{} fuzz input(s) panicked: {failures:#?}",
        failures.len()
    );
}

fn display(path: &Path) -> String {
    path.strip_prefix(fuzz_dir())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Each input the fuzzer found a bug with (one per fix).
#[test]
fn regressions_do_not_panic() {
    let files = inputs("regressions");
    assert!(!files.is_empty(), "no files under fuzz/regressions");
    replay(&files);
}

/// The minimized corpus (seeded from `plans/`).
#[test]
fn corpus_does_not_panic() {
    let files = inputs("corpus");
    assert!(!files.is_empty(), "no files under fuzz/corpus");
    replay(&files);
}
