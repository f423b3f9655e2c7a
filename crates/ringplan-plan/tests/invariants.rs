//! Properties every compiled plan has, checked over every scenario.

use std::collections::HashMap;

use ringplan_image::{Image, ObjectId, ObjectKind};
use ringplan_plan::{compile, encode_to_vec, validate, Handle, Op, Plan};

use crate::scenarios;

fn all_scenarios() -> Vec<(&'static str, Image)> {
    vec![
        ("seed", scenarios::seed()),
        ("chain", scenarios::chain(64)),
        ("reversed_chain", scenarios::reversed_chain(64)),
        ("fanout", scenarios::fanout(64)),
        ("creator_closed", scenarios::creator_closed()),
        (
            "sparse_and_closed_files",
            scenarios::sparse_and_closed_files(),
        ),
        ("closed_eventfds", scenarios::closed_eventfds()),
        ("mix", scenarios::mix()),
        ("attach_without_donor", scenarios::attach_without_donor()),
        ("wide", scenarios::wide(4, 100)),
        ("continuity", scenarios::continuity()),
        ("personalities", scenarios::personalities()),
        ("pbuf", scenarios::pbuf()),
        ("pbuf-mmap", scenarios::pbuf_mmap()),
        ("restricted", scenarios::restricted()),
        ("settings", scenarios::settings()),
        ("wait_regions", scenarios::wait_regions()),
        ("ring_fds", scenarios::ring_fds()),
    ]
}

/// Each registered ring-fd slot is registered once, in its thread, after
/// its ring's setup and before the ring is enabled and its temporary
/// closed (the ring no fd holds lives on in its slot).
#[test]
fn ring_fds_are_registered_before_enabling_and_closing() {
    let plan = plan_of("ring_fds", &scenarios::ring_fds());
    let registered: Vec<(usize, u32, u32, u32)> = plan
        .steps
        .iter()
        .enumerate()
        .filter_map(|(index, step)| match &step.op {
            Op::RegisterRingFd(register) => {
                Some((index, register.ring_handle.0, register.tid, register.offset))
            }
            _ => None,
        })
        .collect();
    let slots: Vec<(u32, u32)> = registered
        .iter()
        .map(|&(_, _, tid, offset)| (tid, offset))
        .collect();
    assert_eq!(slots, vec![(318, 3), (319, 7), (319, 0)]);
    for &(index, handle, _, _) in &registered {
        let setup = handle as usize;
        assert!(matches!(plan.steps[setup].op, Op::SetupRing(_)) && setup < index);
        assert!(plan.steps[index].after.contains(&(setup as u32)));
        for (later, step) in plan.steps.iter().enumerate() {
            let waits = match &step.op {
                Op::EnableRings(enable) => enable.ring_handle.0 == handle,
                Op::CloseFd(close) => close.handles.iter().any(|h| h.0 == handle),
                _ => false,
            };
            if waits {
                assert!(
                    later > index,
                    "step {later} comes before register_ring_fd {index}"
                );
                assert!(
                    step.after.contains(&(index as u32)),
                    "step {later}: {:?}",
                    step.after
                );
            }
        }
    }
    // The ring no fd holds is never installed.
    assert!(!plan
        .steps
        .iter()
        .any(|step| matches!(step.op, Op::InstallFd(_))
            && step.object == Some(ringplan_image::ObjectId(2))));
}

fn plan_of(name: &str, image: &Image) -> Plan {
    compile(image).unwrap_or_else(|error| panic!("{name}: {error}"))
}

#[test]
fn every_compiled_plan_validates() {
    for (name, image) in all_scenarios() {
        let plan = plan_of(name, &image);
        if let Err(error) = validate(&plan) {
            panic!("{name}: {error}\n{}", plan.to_text());
        }
    }
}

#[test]
fn compiling_twice_gives_the_same_bytes() {
    for (name, image) in all_scenarios() {
        let first = encode_to_vec(&plan_of(name, &image)).expect("plans encode");
        let second = encode_to_vec(&plan_of(name, &image)).expect("plans encode");
        assert!(first == second, "{name}: two compilations differ");
        // An image that went through its own CBOR encoding plans the same.
        let bytes = ringplan_image::encode_to_vec(&image).expect("images encode");
        let decoded = ringplan_image::decode_slice(&bytes).expect("images decode");
        let third = encode_to_vec(&plan_of(name, &decoded)).expect("plans encode");
        assert!(
            first == third,
            "{name}: the decoded image plans differently"
        );
    }
}

/// The image with every object id mapped by `rename`, references included.
fn rename_ids(image: &Image, rename: impl Fn(u32) -> u32) -> Image {
    let rename = |id: ObjectId| ObjectId(rename(id.0));
    let mut renamed = image.clone();
    for object in &mut renamed.objects {
        object.id = rename(object.id);
        if let ObjectKind::Ring(ring) = &mut object.kind {
            ring.wq_parent = ring.wq_parent.map(rename);
            if let Some(eventfd) = &mut ring.eventfd {
                eventfd.object = rename(eventfd.object);
            }
            for slot in ring.files.iter_mut().flatten() {
                *slot = rename(*slot);
            }
        }
    }
    renamed
}

#[test]
fn another_id_assignment_gives_the_same_plan() {
    // Ids are names, not meaning: the same image under other (order
    // preserving) ids, dense or sparse, gives the same steps naming the
    // other ids.
    for (name, image) in all_scenarios() {
        let plan = plan_of(name, &image);
        for (rename, restore) in [
            (
                Box::new(|id: u32| id + 1000) as Box<dyn Fn(u32) -> u32>,
                Box::new(|id: u32| id - 1000) as Box<dyn Fn(u32) -> u32>,
            ),
            (
                Box::new(|id: u32| id * 7 + 3),
                Box::new(|id: u32| (id - 3) / 7),
            ),
        ] {
            let mut renamed_plan = plan_of(name, &rename_ids(&image, &rename));
            for step in &mut renamed_plan.steps {
                step.object = step.object.map(|id| ObjectId(restore(id.0)));
            }
            assert!(
                plan == renamed_plan,
                "{name}: plans differ under renamed ids"
            );
        }
    }
}

#[test]
fn an_empty_image_plans_a_lone_barrier() {
    let plan = compile(&scenarios::image(Vec::new())).expect("an empty image plans");
    assert_eq!(plan.steps.len(), 1);
    assert!(matches!(plan.steps[0].op, Op::MemoryBarrier));
    assert_eq!(
        (plan.needed_fds(), plan.temp_fd_floor, plan.peak_temporaries),
        (&[][..], 0, 0)
    );
    validate(&plan).expect("the lone barrier validates");
}

#[test]
fn steps_run_in_phase_order() {
    // Build steps, then installs, then the barrier, then buffers, then
    // queued SQEs; closes anywhere after their users.
    for (name, image) in all_scenarios() {
        let plan = plan_of(name, &image);
        // A ring enabled for its restrictions is enabled last; one set up
        // disabled for its wait region alone, among the build steps.
        let restricted: Vec<_> = plan
            .steps
            .iter()
            .filter_map(|step| match &step.op {
                Op::RegisterRestrictions(register) => Some(register.ring_handle),
                _ => None,
            })
            .collect();
        let phase = |op: &Op| match op {
            Op::EnableRings(enable) if !restricted.contains(&enable.ring_handle) => Some(0),
            Op::CreateEventfd(_)
            | Op::OpenFile(_)
            | Op::ExternalInput(_)
            | Op::SetupRing(_)
            | Op::ReceiveFd(_)
            | Op::RegisterEventfd(_)
            | Op::RegisterFiles(_)
            | Op::RegisterPersonalities(_)
            | Op::RegisterRestrictions(_)
            | Op::RegisterSettings(_)
            | Op::RegisterWaitRegion(_)
            | Op::RegisterRingFd(_)
            | Op::PlaceRingMemory(_)
            | Op::RestoreCompletions(_) => Some(0),
            Op::InstallFd(_) => Some(1),
            Op::MemoryBarrier => Some(2),
            Op::RegisterBuffers(_) | Op::RegisterPbufRing(_) | Op::ProvideBuffers(_) => Some(3),
            Op::QueueSqes(_) => Some(4),
            Op::EnableRings(_) => Some(5),
            Op::CloseFd(_) => None,
        };
        let phases: Vec<u8> = plan
            .steps
            .iter()
            .filter_map(|step| phase(&step.op))
            .collect();
        assert!(
            phases.windows(2).all(|pair| pair[0] <= pair[1]),
            "{name}: phases out of order"
        );
        assert_eq!(
            plan.steps
                .iter()
                .filter(|step| matches!(step.op, Op::MemoryBarrier))
                .count(),
            1,
            "{name}"
        );
    }
}

#[test]
fn temporaries_live_above_every_target() {
    for (name, image) in all_scenarios() {
        let plan = plan_of(name, &image);
        let mut targets: Vec<i32> = image
            .objects
            .iter()
            .flat_map(|object| object.fds.iter().map(|entry| entry.fd))
            .collect();
        targets.sort_unstable();
        assert_eq!(plan.needed_fds(), targets.as_slice(), "{name}");
        assert_eq!(
            plan.temp_fd_floor,
            targets.last().map_or(0, |fd| fd + 1),
            "{name}"
        );
        let installs: Vec<i32> = plan
            .steps
            .iter()
            .filter_map(|step| match &step.op {
                Op::InstallFd(install) => Some(install.fd),
                _ => None,
            })
            .collect();
        let mut sorted_installs = installs.clone();
        sorted_installs.sort_unstable();
        assert_eq!(
            sorted_installs, targets,
            "{name}: every target installed exactly once"
        );
    }
}

/// The step index of each ring's setup_ring.
fn setup_positions(plan: &Plan) -> HashMap<ObjectId, usize> {
    plan.steps
        .iter()
        .enumerate()
        .filter_map(|(index, step)| match (&step.op, step.object) {
            (Op::SetupRing(_), Some(id)) => Some((id, index)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_chain_of_64_sets_up_parents_first_whatever_the_ids() {
    for image in [scenarios::chain(64), scenarios::reversed_chain(64)] {
        let plan = compile(&image).expect("chains plan");
        let setups = setup_positions(&plan);
        assert_eq!(setups.len(), 65);
        for object in &image.objects {
            let ObjectKind::Ring(ring) = &object.kind else {
                continue;
            };
            let Some(parent) = ring.wq_parent else {
                continue;
            };
            let (child_step, parent_step) = (setups[&object.id], setups[&parent]);
            assert!(
                parent_step < child_step,
                "ring {} set up before its parent {parent}",
                object.id
            );
            let Op::SetupRing(setup) = &plan.steps[child_step].op else {
                unreachable!()
            };
            assert_eq!(
                setup.wq_handle.map(|handle| handle.0 as usize),
                Some(parent_step)
            );
        }
    }
}

#[test]
fn a_fanout_of_64_attaches_every_ring_to_the_root() {
    let plan = compile(&scenarios::fanout(64)).expect("fan-outs plan");
    let setups = setup_positions(&plan);
    let root = setups[&ObjectId(1)];
    let attached = plan
        .steps
        .iter()
        .filter(|step| matches!(&step.op, Op::SetupRing(setup) if setup.wq_handle.map(|h| h.0 as usize) == Some(root)))
        .count();
    assert_eq!(attached, 64);
    // The root's temporary closes only after every ring attached to it.
    let root_close = plan
        .steps
        .iter()
        .position(
            |step| matches!(&step.op, Op::CloseFd(close) if close.handles == [Handle(root as u32)]),
        )
        .expect("the root's temporary is closed");
    assert!(setups.values().all(|&setup| setup < root_close));
}

#[test]
fn a_creator_closed_group_gets_a_host_ring() {
    let plan = compile(&scenarios::creator_closed()).expect("plans");
    let hosts: Vec<usize> = plan
        .steps
        .iter()
        .enumerate()
        .filter(|(_, step)| matches!(&step.op, Op::SetupRing(setup) if setup.temporary.is_some()))
        .map(|(index, _)| index)
        .collect();
    assert_eq!(hosts.len(), 1);
    let host = hosts[0];
    let Op::SetupRing(setup) = &plan.steps[host].op else {
        unreachable!()
    };
    // Pinned like the group, idle the group's largest.
    assert_eq!(
        (setup.sq_thread_cpu, setup.sq_thread_idle_ms),
        (Some(1), Some(2000))
    );
    for step in &plan.steps {
        if let (Op::SetupRing(setup), Some(_)) = (&step.op, step.object) {
            assert_eq!(setup.wq_handle.map(|h| h.0 as usize), Some(host));
        }
    }
}

#[test]
fn files_only_reopen_with_a_path_and_everything_known() {
    let plan = compile(&scenarios::sparse_and_closed_files()).expect("plans");
    let mut kinds: Vec<(u32, &str)> = plan
        .steps
        .iter()
        .filter(|step| matches!(step.op, Op::OpenFile(_) | Op::ExternalInput(_)))
        .map(|step| (step.object.map_or(0, |id| id.0), step.op.name()))
        .collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        vec![
            (2, "open_file"),
            (3, "external_input"),
            (4, "external_input"),
            (5, "open_file"),
            (6, "external_input")
        ]
    );
}

#[test]
fn a_large_plan_is_still_linear_in_shape() {
    // 64 rings x 100 files: one register_files step per ring, not per file.
    let plan = compile(&scenarios::wide(64, 100)).expect("plans");
    let registrations = plan
        .steps
        .iter()
        .filter(|step| matches!(step.op, Op::RegisterFiles(_)))
        .count();
    assert_eq!(registrations, 64);
}
