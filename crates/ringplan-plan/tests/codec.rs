//! CBOR round trips, and the refusals a decoder gives for plans an executor
//! must not run.

use ringplan_plan::*;

use crate::scenarios;

fn seed_plan() -> Plan {
    compile(&scenarios::seed()).expect("the seed scenario plans")
}

fn index_of(plan: &Plan, wanted: impl Fn(&Step) -> bool) -> usize {
    plan.steps
        .iter()
        .position(wanted)
        .expect("the plan has such a step")
}

/// The message `decode_slice` gives for `plan` after encoding it.
fn decode_message(plan: &Plan) -> String {
    let bytes = encode_to_vec(plan).expect("plans encode");
    match decode_slice(&bytes) {
        Ok(_) => panic!("expected a refusal"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn plans_round_trip_through_cbor() {
    for image in [
        scenarios::seed(),
        scenarios::mix(),
        scenarios::sparse_and_closed_files(),
        scenarios::chain(64),
    ] {
        let plan = compile(&image).expect("scenarios plan");
        let bytes = encode_to_vec(&plan).expect("plans encode");
        let decoded = decode_slice(&bytes).expect("compiled plans decode");
        assert_eq!(decoded, plan);
        assert_eq!(encode_to_vec(&decoded).expect("plans encode"), bytes);
        let read = decode(bytes.as_slice()).expect("compiled plans decode from a reader");
        assert_eq!(read, plan);
    }
}

#[test]
fn show_takes_an_image_or_a_plan() {
    let image_bytes = ringplan_image::encode_to_vec(&scenarios::seed()).expect("images encode");
    let plan_bytes = encode_to_vec(&seed_plan()).expect("plans encode");
    let from_image = plan_from_image_or_plan(&image_bytes).expect("an image compiles");
    let from_plan = plan_from_image_or_plan(&plan_bytes).expect("a plan decodes");
    assert_eq!(from_image, from_plan);
    assert_eq!(from_image.to_text(), from_plan.to_text());
}

#[test]
fn neither_image_nor_plan() {
    assert_eq!(
        plan_from_image_or_plan(&[])
            .map(|_| ())
            .unwrap_err()
            .to_string(),
        "input is empty"
    );
    let mut other = Vec::new();
    ciborium::into_writer(
        &serde_json::json!({"format": "zip", "version": 1}),
        &mut other,
    )
    .expect("encodes");
    assert_eq!(
        plan_from_image_or_plan(&other)
            .map(|_| ())
            .unwrap_err()
            .to_string(),
        "neither a ringplan image nor a plan: format is \"zip\""
    );
}

#[test]
fn decode_refuses_other_documents() {
    assert_eq!(decode_slice(&[]).unwrap_err().to_string(), "input is empty");
    let image_bytes = ringplan_image::encode_to_vec(&scenarios::seed()).expect("images encode");
    assert_eq!(
        decode_slice(&image_bytes).unwrap_err().to_string(),
        "not a ringplan plan: format is \"ringplan-image\", expected \"ringplan-plan\""
    );
    let mut plan = seed_plan();
    plan.version = 9;
    assert_eq!(
        decode_message(&plan),
        "unsupported plan version 9 (this build reads versions 1 to 3)"
    );
    let mut bytes = encode_to_vec(&seed_plan()).expect("plans encode");
    bytes.push(0);
    assert_eq!(
        decode_slice(&bytes).unwrap_err().to_string(),
        "malformed plan: 1 bytes after the end of the document"
    );
    let bytes = encode_to_vec(&seed_plan()).expect("plans encode");
    assert_eq!(
        decode_slice(&bytes[..bytes.len() / 2])
            .unwrap_err()
            .to_string(),
        "malformed plan: truncated (the CBOR data ends early)"
    );
}

#[test]
fn waiting_for_a_later_step() {
    let mut plan = seed_plan();
    plan.steps[0].after = vec![3];
    assert_eq!(
        decode_message(&plan),
        "invalid plan: step 0 (setup_ring): waits for step 3, which does not come before it"
    );
}

#[test]
fn using_a_handle_without_waiting_for_it() {
    let mut plan = seed_plan();
    let register = index_of(&plan, |step| matches!(step.op, Op::RegisterEventfd(_)));
    let Op::RegisterEventfd(op) = plan.steps[register].op else {
        unreachable!()
    };
    plan.steps[register]
        .after
        .retain(|&after| after != op.eventfd_handle.0);
    assert_eq!(
        decode_message(&plan),
        format!(
            "invalid plan: step {register} (register_eventfd): uses handle {} without waiting for step {}",
            op.eventfd_handle, op.eventfd_handle.0
        )
    );
}

#[test]
fn a_handle_of_the_wrong_kind() {
    let mut plan = seed_plan();
    let register = index_of(&plan, |step| matches!(step.op, Op::RegisterEventfd(_)));
    let Op::RegisterEventfd(op) = &mut plan.steps[register].op else {
        unreachable!()
    };
    // Swap the ring and the eventfd.
    std::mem::swap(&mut op.ring_handle, &mut op.eventfd_handle);
    let message = decode_message(&plan);
    assert!(
        message.contains("is the fd of a create_eventfd step, not of a ring"),
        "{message}"
    );
}

#[test]
fn a_handle_that_names_no_fd() {
    let mut plan = seed_plan();
    let barrier = index_of(&plan, |step| matches!(step.op, Op::MemoryBarrier));
    let close = index_of(&plan, |step| {
        matches!(step.op, Op::CloseFd(_)) && step.after.iter().all(|&a| (a as usize) < barrier)
    });
    let Op::CloseFd(op) = &mut plan.steps[close].op else {
        unreachable!()
    };
    let original = op.handles[0];
    op.handles = vec![Handle(barrier as u32)];
    let message = decode_message(&plan);
    assert!(
        message.contains(&format!("handle h{barrier} names no earlier step"))
            || message.contains(&format!("handle h{barrier} names a memory_barrier step")),
        "{message} (was {original})"
    );
}

#[test]
fn a_leaked_temporary() {
    let mut plan = seed_plan();
    let close = plan
        .steps
        .iter()
        .rposition(|step| matches!(step.op, Op::CloseFd(_)))
        .expect("closes exist");
    let Op::CloseFd(op) = plan.steps.remove(close).op else {
        unreachable!()
    };
    plan.peak_temporaries = 0;
    let message = decode_message(&plan);
    let handle = op.handles[0].0;
    assert_eq!(
        message,
        format!(
            "invalid plan: step {handle} ({}): the fd it creates (h{handle}) is never closed",
            plan.steps[handle as usize].op.name()
        )
    );
}

#[test]
fn buffers_registered_without_the_barrier() {
    let mut plan = seed_plan();
    let barrier = index_of(&plan, |step| matches!(step.op, Op::MemoryBarrier)) as u32;
    let register = index_of(&plan, |step| matches!(step.op, Op::RegisterBuffers(_)));
    plan.steps[register].after.retain(|&after| after != barrier);
    assert_eq!(
        decode_message(&plan),
        format!("invalid plan: step {register} (register_buffers): does not wait for the memory barrier")
    );
}

#[test]
fn an_install_onto_an_fd_not_declared_needed() {
    let mut plan = seed_plan();
    plan.needed_fds.retain(|&fd| fd != 5);
    let install = index_of(
        &plan,
        |step| matches!(&step.op, Op::InstallFd(install) if install.fd == 5),
    );
    assert_eq!(
        decode_message(&plan),
        format!("invalid plan: step {install} (install_fd): fd 5 is not in needed_fds")
    );
}

#[test]
fn a_floor_below_a_target() {
    let mut plan = seed_plan();
    plan.temp_fd_floor = 5;
    assert_eq!(
        decode_message(&plan),
        "invalid plan: temp_fd_floor 5 is not above every needed fd (the largest is 5)"
    );
}

#[test]
fn creating_after_the_installs_began() {
    let mut plan = seed_plan();
    let first_install = index_of(&plan, |step| matches!(step.op, Op::InstallFd(_)));
    let step = plan.steps.remove(0);
    plan.steps.insert(first_install, step);
    let message = decode_message(&plan);
    // Moving step 0 breaks its handles first or its phase; either way the
    // plan is refused with a typed reason.
    assert!(message.starts_with("invalid plan: step"), "{message}");
}

#[test]
fn an_open_that_would_truncate() {
    let mut plan = seed_plan();
    let open = index_of(&plan, |step| matches!(step.op, Op::OpenFile(_)));
    let Op::OpenFile(op) = &mut plan.steps[open].op else {
        unreachable!()
    };
    op.flags |= 0o1000;
    let message = decode_message(&plan);
    assert!(
        message.ends_with("would create or truncate the file"),
        "{message}"
    );
}

#[test]
fn an_open_of_a_pipe() {
    let mut plan = seed_plan();
    let open = index_of(&plan, |step| matches!(step.op, Op::OpenFile(_)));
    let Op::OpenFile(op) = &mut plan.steps[open].op else {
        unreachable!()
    };
    assert_eq!(op.file_type, Some(ringplan_image::FileType::CharDevice));
    op.file_type = Some(ringplan_image::FileType::Pipe);
    assert_eq!(
        decode_message(&plan),
        format!(
            "invalid plan: step {open} (open_file): a pipe cannot be reopened by path (it is an external input)"
        )
    );
}

/// An `open_file` with the recorded inode round-trips and shows it in
/// the text view; without it the plan is as before.
#[test]
fn an_open_with_an_identity_round_trips() {
    let mut plan = seed_plan();
    let identity = ringplan_image::FileIdentity {
        dev: (8 << 8) | 1,
        ino: 99,
    };
    let mut opens = 0;
    for step in &mut plan.steps {
        if let Op::OpenFile(open) = &mut step.op {
            open.identity = Some(identity);
            opens += 1;
        }
    }
    assert!(opens > 0);
    let bytes = ringplan_plan::encode_to_vec(&plan).expect("encoding");
    let decoded = ringplan_plan::decode_slice(&bytes).expect("decodes");
    assert_eq!(decoded, plan);
    assert!(
        plan.to_text().contains("[dev 8:1 ino 99]"),
        "{}",
        plan.to_text()
    );
}

/// A version 2 plan written before `open_file` carried the file's type
/// decodes, and re-encodes without it.
#[test]
fn an_open_without_a_type_still_decodes() {
    let mut plan = seed_plan();
    for step in &mut plan.steps {
        if let Op::OpenFile(open) = &mut step.op {
            open.file_type = None;
        }
    }
    let bytes = ringplan_plan::encode_to_vec(&plan).expect("encoding");
    let decoded = ringplan_plan::decode_slice(&bytes).expect("a plan without types decodes");
    assert_eq!(decoded, plan);
    assert_eq!(
        ringplan_plan::encode_to_vec(&decoded).expect("encoding"),
        bytes
    );
}

#[test]
fn a_setup_the_kernel_would_change() {
    let mut plan = seed_plan();
    let Op::SetupRing(setup) = &mut plan.steps[0].op else {
        panic!("step 0 sets up a ring")
    };
    setup.cq_entries = 6;
    assert_eq!(
        decode_message(&plan),
        "invalid plan: step 0 (setup_ring): cq_entries 6 is not a power of two"
    );
}

#[test]
fn a_wrong_peak() {
    let mut plan = seed_plan();
    plan.peak_temporaries += 1;
    let message = decode_message(&plan);
    assert!(
        message.starts_with("invalid plan: peak_temporaries is"),
        "{message}"
    );
}

/// The seed with both rings' regions mapped, as a dump records them.
fn mapped_seed() -> ringplan_image::Image {
    use ringplan_image::{ObjectKind, RingMapping, RingRegion};
    let mut image = scenarios::seed();
    let mut next = 0x7f00_0000_0000u64;
    for object in &mut image.objects {
        if let ObjectKind::Ring(ring) = &mut object.kind {
            for region in [RingRegion::SqRing, RingRegion::Sqes] {
                ring.mappings.push(RingMapping {
                    region,
                    addr: next,
                    len: 4096,
                });
                next += 0x2000;
            }
        }
    }
    image
}

#[test]
fn ring_mappings_travel_with_their_setup() {
    let image = mapped_seed();
    let plan = compile(&image).expect("the mapped seed plans");
    let setups: Vec<&SetupRing> = plan
        .steps
        .iter()
        .filter_map(|step| match &step.op {
            Op::SetupRing(setup) => Some(setup),
            _ => None,
        })
        .collect();
    assert!(
        setups.iter().all(|setup| setup.mappings.len() == 2),
        "{setups:?}"
    );
    let bytes = encode_to_vec(&plan).expect("plans encode");
    assert_eq!(decode_slice(&bytes).expect("decodes"), plan);
    let text = plan.to_text();
    assert!(
        text.contains("; mmap sq_ring 0x7f0000000000+4096, sqes 0x7f0000002000+4096"),
        "{text}"
    );
    assert!(plan.to_dot().contains("maps sq_ring, sqes"));
    let json = plan.to_json();
    assert_eq!(json["steps"][0]["mappings"][1]["region"], "sqes", "{json}");
    // Without mappings the field is left off the wire and the views.
    let plain = seed_plan();
    assert!(plain.to_json()["steps"][0].get("mappings").is_none());
}

#[test]
fn ring_mappings_mmap_cannot_make() {
    let plan = compile(&mapped_seed()).expect("the mapped seed plans");
    let with = |change: &dyn Fn(&mut Vec<ringplan_image::RingMapping>)| {
        let mut plan = plan.clone();
        let Op::SetupRing(setup) = &mut plan.steps[1].op else {
            panic!("step 1 sets up a ring")
        };
        change(&mut setup.mappings);
        decode_message(&plan)
    };
    let message = with(&|mappings| mappings[0].addr += 1);
    assert!(message.ends_with("is not page-aligned"), "{message}");
    let message = with(&|mappings| mappings[0].len = 0);
    assert!(message.ends_with("is empty or at address 0"), "{message}");
    let message = with(&|mappings| mappings[0].addr = u64::MAX - 4095);
    assert!(
        message.ends_with("is not a user address range"),
        "{message}"
    );
    // Onto ring #1's sq_ring (step 0).
    let message = with(&|mappings| mappings[0].addr = 0x7f00_0000_0000);
    assert!(
        message.contains("which overlaps the mapping step 0 makes"),
        "{message}"
    );
}

#[test]
fn a_mapped_temporary_ring() {
    let mut plan = compile(&scenarios::attach_without_donor()).expect("plans");
    let temporary = index_of(
        &plan,
        |step| matches!(&step.op, Op::SetupRing(setup) if setup.temporary.is_some()),
    );
    let Op::SetupRing(setup) = &mut plan.steps[temporary].op else {
        unreachable!()
    };
    setup.mappings.push(ringplan_image::RingMapping {
        region: ringplan_image::RingRegion::SqRing,
        addr: 0x7f00_0000_0000,
        len: 4096,
    });
    let message = decode_message(&plan);
    assert!(
        message.ends_with("a temporary ring was never mapped by the task"),
        "{message}"
    );
}

fn tree_plan() -> Plan {
    compile(&scenarios::tree()).expect("the tree plans")
}

/// A `receive_fd` names an fd a part before it installs: one from a later
/// part, or of an fd nobody installs, is refused naming the process.
#[test]
fn a_receive_from_a_later_part_or_an_uninstalled_fd() {
    fn receive(plan: &mut Plan) -> &mut ReceiveFd {
        plan.processes[0]
            .plan
            .steps
            .iter_mut()
            .find_map(|step| match &mut step.op {
                Op::ReceiveFd(receive) => Some(receive),
                _ => None,
            })
            .expect("process 1001 receives")
    }
    let mut plan = tree_plan();
    receive(&mut plan).from_pid = 1002;
    assert_eq!(
        decode_message(&plan),
        "invalid plan: process 1001's part: step 0 receive_fd: fd 5 of process 1002 is installed by no earlier part"
    );
    let mut plan = tree_plan();
    receive(&mut plan).from_fd = 99;
    assert_eq!(
        decode_message(&plan),
        "invalid plan: process 1001's part: step 0 receive_fd: fd 99 of process 1000 is installed by no earlier part"
    );
}

/// Parts fit together: a version 3 plan, a parent listed before, one part
/// per process, no `receive_fd` in a plan of one process.
#[test]
fn tree_parts_that_do_not_fit() {
    let mut plan = tree_plan();
    plan.version = 2;
    assert_eq!(
        decode_message(&plan),
        "invalid plan: process 1000's part: a plan of version 2 has no process parts (version 3 has)"
    );
    let mut plan = tree_plan();
    plan.processes[0].parent = 77;
    assert_eq!(
        decode_message(&plan),
        "invalid plan: process 1001's part: its parent 77 has no part before it"
    );
    let mut plan = tree_plan();
    plan.processes[1].pid = 1001;
    plan.processes[1].plan.source.pid = 1001;
    assert_eq!(
        decode_message(&plan),
        "invalid plan: process 1001's part: the process has two parts"
    );
    let mut plan = tree_plan();
    let part = plan.processes.remove(0).plan;
    let mut lone = part.clone();
    lone.processes.clear();
    lone.version = FORMAT_VERSION;
    assert_eq!(
        decode_message(&lone),
        "invalid plan: process 1001's part: step 0 receive_fd: fd 5 of process 1000 is installed by no earlier part"
    );
}
