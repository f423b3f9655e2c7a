//! Snapshots of each scenario's plan. The text view is what a person reads;
//! review a changed snapshot as you would review a changed restore order.

use insta::assert_snapshot;
use ringplan_image::Image;
use ringplan_plan::compile;

use crate::scenarios;

fn text(image: &Image) -> String {
    match compile(image) {
        Ok(plan) => plan.to_text(),
        Err(error) => format!("error: {error}"),
    }
}

/// The plan of `image`, which must plan, as Graphviz dot.
fn dot(image: &Image) -> String {
    compile(image).expect("the scenario plans").to_dot()
}

/// The plan of `image`, which must plan, in its pretty JSON view; the
/// streamed view checked to say what the value view says.
fn json(image: &Image) -> String {
    let plan = compile(image).expect("the scenario plans");
    let mut json = Vec::new();
    plan.write_json(&mut json, true)
        .expect("writing to memory cannot fail");
    let reparsed: serde_json::Value = serde_json::from_slice(&json).expect("the JSON view parses");
    assert_eq!(reparsed, plan.to_json());
    String::from_utf8(json).expect("JSON is UTF-8")
}

#[test]
fn seed_text() {
    assert_snapshot!(text(&scenarios::seed()));
}

#[test]
fn seed_dot() {
    assert_snapshot!(dot(&scenarios::seed()));
}

#[test]
fn seed_json() {
    assert_snapshot!(json(&scenarios::seed()));
}

#[test]
fn chain_of_64_text() {
    assert_snapshot!(text(&scenarios::chain(64)));
}

#[test]
fn fanout_of_64_text() {
    assert_snapshot!(text(&scenarios::fanout(64)));
}

#[test]
fn creator_closed_sq_thread_text() {
    assert_snapshot!(text(&scenarios::creator_closed()));
}

#[test]
fn sparse_and_closed_files_text() {
    assert_snapshot!(text(&scenarios::sparse_and_closed_files()));
}

#[test]
fn closed_eventfds_text() {
    assert_snapshot!(text(&scenarios::closed_eventfds()));
}

#[test]
fn mix_text() {
    assert_snapshot!(text(&scenarios::mix()));
}

#[test]
fn mix_dot() {
    assert_snapshot!(dot(&scenarios::mix()));
}

#[test]
fn attach_without_donor_text() {
    assert_snapshot!(text(&scenarios::attach_without_donor()));
}

/// Graphviz accepts the DOT views (when it is installed; the snapshots
/// above pin the text either way).
#[test]
fn dot_renders_with_graphviz() {
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    for image in [
        scenarios::seed(),
        scenarios::mix(),
        scenarios::creator_closed(),
        scenarios::chain(64),
        scenarios::tree(),
    ] {
        let dot = compile(&image).expect("scenarios plan").to_dot();
        let child = Command::new("dot")
            .arg("-Tsvg")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                eprintln!("graphviz's dot is not installed; not rendering");
                return;
            }
            Err(error) => panic!("running dot: {error}"),
        };
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(dot.as_bytes())
            .expect("dot reads its input");
        let output = child.wait_with_output().expect("dot runs");
        assert!(
            output.status.success(),
            "dot failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(String::from_utf8_lossy(&output.stdout).contains("<svg"));
    }
}

#[test]
fn continuity_text() {
    assert_snapshot!(text(&scenarios::continuity()));
}

#[test]
fn continuity_dot() {
    assert_snapshot!(dot(&scenarios::continuity()));
}

#[test]
fn continuity_json() {
    assert_snapshot!(json(&scenarios::continuity()));
}

#[test]
fn personalities_text() {
    assert_snapshot!(text(&scenarios::personalities()));
}

#[test]
fn personalities_dot() {
    assert_snapshot!(dot(&scenarios::personalities()));
}

#[test]
fn personalities_json() {
    assert_snapshot!(json(&scenarios::personalities()));
}

#[test]
fn pbuf_text() {
    assert_snapshot!(text(&scenarios::pbuf()));
}

#[test]
fn pbuf_dot() {
    assert_snapshot!(dot(&scenarios::pbuf()));
}

#[test]
fn pbuf_json() {
    assert_snapshot!(json(&scenarios::pbuf()));
}

#[test]
fn pbuf_mmap_text() {
    assert_snapshot!(text(&scenarios::pbuf_mmap()));
}

#[test]
fn pbuf_mmap_dot() {
    assert_snapshot!(dot(&scenarios::pbuf_mmap()));
}

#[test]
fn pbuf_mmap_json() {
    assert_snapshot!(json(&scenarios::pbuf_mmap()));
}

#[test]
fn buffer_rings_are_registered_after_the_barrier_and_before_the_queued_sqes() {
    let plan = compile(&scenarios::pbuf()).expect("the pbuf scenario plans");
    let position = |name: &str| {
        plan.steps
            .iter()
            .position(|step| {
                step.op.name() == name && step.object == Some(ringplan_image::ObjectId(1))
            })
            .unwrap_or_else(|| panic!("no {name} step"))
    };
    let barrier = plan
        .steps
        .iter()
        .position(|step| step.op.name() == "memory_barrier")
        .expect("a barrier");
    let register = position("register_pbuf_ring");
    let queue = position("queue_sqes");
    assert!(barrier < register && register < queue);
    assert!(plan.steps[queue].after.contains(&(register as u32)));
    assert!(plan.steps[register].after.contains(&(barrier as u32)));
    let registered = plan
        .steps
        .iter()
        .filter(|step| step.op.name() == "register_pbuf_ring")
        .count();
    assert_eq!(registered, 2, "one step per buffer ring");
    // The legacy group with buffers is provided again (its two runs, two
    // SQEs) after the barrier and before the queued SQEs; the emptied one
    // is left out; the completions stop 3 + 2 positions short.
    let provide = position("provide_buffers");
    assert!(barrier < provide && provide < queue);
    assert!(plan.steps[queue].after.contains(&(provide as u32)));
    let provides: Vec<_> = plan
        .steps
        .iter()
        .filter_map(|step| match &step.op {
            ringplan_plan::Op::ProvideBuffers(provide) => Some(provide),
            _ => None,
        })
        .collect();
    assert_eq!(provides.len(), 1);
    assert_eq!((provides[0].bgid, provides[0].sqes.len()), (7, 2));
    let completions = plan
        .steps
        .iter()
        .find_map(|step| match &step.op {
            ringplan_plan::Op::RestoreCompletions(restore) => Some(restore.sq_head),
            _ => None,
        })
        .expect("restore_completions");
    assert_eq!(completions, 5000 - 3 - 2);
}

#[test]
fn personalities_are_registered_before_the_queued_sqes_that_may_name_them() {
    let plan = compile(&scenarios::personalities()).expect("the personalities scenario plans");
    let position = |name: &str| {
        plan.steps
            .iter()
            .position(|step| {
                step.op.name() == name && step.object == Some(ringplan_image::ObjectId(1))
            })
            .unwrap_or_else(|| panic!("no {name} step"))
    };
    let register = position("register_personalities");
    let queue = position("queue_sqes");
    assert!(register < queue);
    assert!(plan.steps[queue].after.contains(&(register as u32)));
}

#[test]
fn restricted_text() {
    assert_snapshot!(text(&scenarios::restricted()));
}

#[test]
fn restricted_json() {
    assert_snapshot!(json(&scenarios::restricted()));
}

#[test]
fn restrictions_come_while_disabled_and_enabling_after_every_registration() {
    let plan = compile(&scenarios::restricted()).expect("the restricted scenario plans");
    let position = |name: &str, ring: u32| {
        plan.steps
            .iter()
            .position(|step| {
                step.op.name() == name && step.object == Some(ringplan_image::ObjectId(ring))
            })
            .unwrap_or_else(|| panic!("no {name} step for #{ring}"))
    };
    for ring in [1, 2] {
        let ringplan_plan::Op::SetupRing(setup) = &plan.steps[position("setup_ring", ring)].op
        else {
            panic!("setup_ring");
        };
        assert_ne!(
            setup.flags & ringplan_image::SetupFlags::R_DISABLED.bits(),
            0,
            "#{ring} is set up disabled"
        );
        assert!(position("register_restrictions", ring) > position("setup_ring", ring));
    }
    // Ring #1 was recorded disabled: it stays so.
    assert!(!plan
        .steps
        .iter()
        .any(|step| step.op.name() == "enable_rings"
            && step.object == Some(ringplan_image::ObjectId(1))));
    let enable = position("enable_rings", 2);
    for before in [
        "register_files",
        "register_personalities",
        "register_restrictions",
    ] {
        let before = position(before, 2);
        assert!(before < enable);
        assert!(plan.steps[enable].after.contains(&(before as u32)));
    }
}

#[test]
fn wait_regions_text() {
    assert_snapshot!(text(&scenarios::wait_regions()));
}

/// A wait region is registered right after its ring's setup, which is
/// disabled for it; a ring disabled for it alone is enabled at once, in
/// its owner thread, before its positions move and before anything else
/// is registered; one with restrictions is enabled after every
/// registration; one recorded disabled stays so.
#[test]
fn wait_regions_come_while_disabled() {
    use ringplan_plan::Op;
    let plan = compile(&scenarios::wait_regions()).expect("the wait region scenario plans");
    let position = |name: &str, ring: u32| {
        plan.steps.iter().position(|step| {
            step.op.name() == name && step.object == Some(ringplan_image::ObjectId(ring))
        })
    };
    let at = |name: &str, ring: u32| {
        position(name, ring).unwrap_or_else(|| panic!("no {name} step for #{ring}"))
    };
    for ring in [1, 2, 3] {
        let Op::SetupRing(setup) = &plan.steps[at("setup_ring", ring)].op else {
            panic!("setup_ring");
        };
        assert_ne!(
            setup.flags & ringplan_image::SetupFlags::R_DISABLED.bits(),
            0,
            "#{ring} is set up disabled"
        );
        let register = at("register_wait_region", ring);
        assert!(plan.steps[register]
            .after
            .contains(&(at("setup_ring", ring) as u32)));
        if let Some(enable) = position("enable_rings", ring) {
            assert!(plan.steps[enable].after.contains(&(register as u32)));
        }
    }
    let enable = at("enable_rings", 1);
    for after in ["restore_completions", "register_eventfd", "register_files"] {
        let after = at(after, 1);
        assert!(enable < after);
        assert!(plan.steps[after].after.contains(&(enable as u32)));
    }
    let enable = at("enable_rings", 2);
    assert!(at("register_restrictions", 2) < enable);
    assert_eq!(position("enable_rings", 3), None);
}

#[test]
fn settings_text() {
    assert_snapshot!(text(&scenarios::settings()));
}

#[test]
fn settings_json() {
    assert_snapshot!(json(&scenarios::settings()));
}

#[test]
fn settings_come_after_the_file_table_and_tags_with_their_tables() {
    use ringplan_plan::Op;
    let plan = compile(&scenarios::settings()).expect("the settings scenario plans");
    let position = |name: &str| {
        plan.steps
            .iter()
            .position(|step| step.op.name() == name)
            .unwrap_or_else(|| panic!("no {name} step"))
    };
    let files = position("register_files");
    let settings = position("register_settings");
    assert!(files < settings);
    assert!(plan.steps[settings].after.contains(&(files as u32)));
    let Op::RegisterFiles(register) = &plan.steps[files].op else {
        panic!("register_files");
    };
    assert_eq!(register.tags.len(), 2);
    let Op::RegisterBuffers(register) = &plan.steps[position("register_buffers")].op else {
        panic!("register_buffers");
    };
    assert_eq!(register.tags.len(), 1);
    let Op::RegisterSettings(register) = &plan.steps[settings].op else {
        panic!("register_settings");
    };
    assert!(register.file_alloc_range.is_some());
    assert!(register.iowq_max_workers.is_some());
    assert!(register.napi.is_some());
    // A ring without settings has no register_settings step.
    let plain = compile(&scenarios::seed()).expect("the seed plans");
    assert!(plain
        .steps
        .iter()
        .all(|step| step.op.name() != "register_settings"));
}

#[test]
fn tree_text() {
    assert_snapshot!(text(&scenarios::tree()));
}

#[test]
fn tree_dot() {
    assert_snapshot!(dot(&scenarios::tree()));
}

#[test]
fn tree_json() {
    assert_snapshot!(json(&scenarios::tree()));
}
