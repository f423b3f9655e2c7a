//! The example images under `plans/` (the `plan app` scenarios, dumped by
//! `scripts/regen-plans`) and their checked-in plans: the planner must still
//! produce exactly those plans, so a change in ordering shows up as a failing
//! test and a reviewed diff, never silently.

use std::path::Path;

use crate::support::plan_ok;

const EXAMPLES: [&str; 18] = [
    "seed",
    "chain-64",
    "fanout-64",
    "creator-closed-3",
    "closed",
    "mix",
    "files-16",
    "personalities-3",
    "restricted-enabled",
    "pbuf-fresh-2",
    "pbuf-mmap",
    "pbuf-legacy",
    "settings",
    "iowq-affinity",
    "wait-region",
    "ring-fds",
    "ring-fd-only",
    "shared",
];

#[test]
fn checked_in_plans_match_the_planner() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans");
    for name in EXAMPLES {
        let image = dir.join(format!("{name}.img"));
        let image = image.to_str().expect("utf-8 path");
        for (suffix, extra) in [("plan.txt", None), ("plan.dot", Some("--dot"))] {
            let checked_in = std::fs::read_to_string(dir.join(format!("{name}.{suffix}")))
                .unwrap_or_else(|error| {
                    panic!("plans/{name}.{suffix}: {error} (run scripts/regen-plans)")
                });
            let mut args = vec!["show", image];
            args.extend(extra);
            let produced = String::from_utf8(plan_ok(&args)).expect("utf-8 output");
            assert!(
                produced == checked_in,
                "plans/{name}.{suffix} drifted from what the planner produces now; \
                 run scripts/regen-plans, review the diff and commit it"
            );
        }
    }
}

#[test]
fn checked_in_plans_render_with_graphviz() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans");
    let dot = dir.join("seed.plan.dot");
    let output = std::process::Command::new("dot")
        .args(["-Tsvg", dot.to_str().expect("utf-8 path")])
        .output()
        .expect("running dot (graphviz; scripts/deps installs it)");
    assert!(
        output.status.success(),
        "dot -Tsvg failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("<svg"));
}

/// `plan compile` writes a plan a restorer can take without the planner;
/// `plan show` of that plan prints exactly what `plan show` of the image does.
#[test]
fn a_compiled_plan_shows_like_its_image() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans");
    let scratch = crate::support::scratch_dir("compiled-plan");
    for name in ["seed", "mix"] {
        let image = dir.join(format!("{name}.img"));
        let image = image.to_str().expect("utf-8 path");
        let compiled = scratch.join(format!("{name}.plan"));
        let compiled = compiled.to_str().expect("utf-8 path");
        plan_ok(&["compile", image, "-o", compiled]);
        for extra in [None, Some("--dot"), Some("--format=json")] {
            let (mut from_image, mut from_plan) = (vec!["show", image], vec!["show", compiled]);
            from_image.extend(extra);
            from_plan.extend(extra);
            assert_eq!(
                plan_ok(&from_plan),
                plan_ok(&from_image),
                "plan show {name} {extra:?}"
            );
        }
        let objects = crate::support::plan(&["show", compiled, "--objects"]);
        assert_eq!(objects.status.code(), Some(2), "--objects needs an image");
    }
}
