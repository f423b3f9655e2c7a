//! A registered wait region carried through a take-out:
//! `tests/programs/wait_waiter.c` keeps the arguments of its waits in one
//! page of its own memory, registered on its ring
//! (`IORING_REGISTER_MEM_REGION` with `IORING_MEM_REGION_REG_WAIT_ARG`),
//! and is taken out with `plan dump --pid P --detach` and put back with
//! `plan exec IMAGE --pid P`; it then waits through entries it wrote
//! before and after, and the kernel answers each as the entry says.
//! Needs Linux 6.13 (wait regions; before, the program says so and the
//! test stops there).

use std::path::Path;

use serde_json::{json, Value};

use ringplan_exec::test_hooks::ProcessState;

use crate::support::line_program::LineProgram;
use crate::support::{fail_at_every_step, objects_of_kind, plan_ok, scratch_dir};

/// A wait_waiter that has registered its region and waits for a line.
struct Waiter(LineProgram);

impl Waiter {
    /// Started and ready, or `None` (said why) where the kernel has no
    /// wait regions.
    fn start(kernel_memory: bool) -> Option<Waiter> {
        let args = if kernel_memory {
            vec!["kernel".to_owned()]
        } else {
            Vec::new()
        };
        let (program, first) = LineProgram::start("wait_waiter", &args);
        if let Some(why) = first["unsupported"].as_str() {
            eprintln!("skipped: {why} (wait regions are Linux 6.13+)");
            return None;
        }
        assert_eq!(first["ready"], true, "{first}");
        Some(Waiter(program))
    }

    fn pid(&self) -> u32 {
        self.0.pid()
    }

    /// Lets it wait again; its done line and exit status.
    fn finish(self) -> (Value, Option<i32>) {
        self.0.finish()
    }
}

/// The one ring's wait region as the image at `image` holds it.
fn wait_region_of(image: &Path) -> Value {
    let view: Value = serde_json::from_slice(&plan_ok(&[
        "show",
        image.to_str().expect("utf-8 path"),
        "--objects",
        "--format",
        "json",
    ]))
    .expect("JSON view");
    let rings = objects_of_kind(&view, "ring");
    assert_eq!(rings.len(), 1, "{view:#}");
    rings[0]["wait_region"].clone()
}

/// The image holds the region's page where the program has it; a
/// put-back failed at each of its steps in turn changes nothing; after
/// the put-back the kernel reads the program's wait arguments from the
/// same page: the timeouts written before the take-out and after it, and
/// the region's length.
#[test]
fn a_program_waiting_through_a_wait_region_is_taken_out_put_back_and_finishes() {
    round_trip(false);
}

/// The same with the region in kernel memory the program mapped from its
/// ring fd: the image holds its bytes, and the put-back registers them as
/// the program's memory at the same address (the detach unmapped the
/// kernel's), where the program's waits find the entries it wrote.
#[test]
fn a_wait_region_in_kernel_memory_comes_back_as_the_programs() {
    round_trip(true);
}

fn round_trip(kernel_memory: bool) {
    let Some(waiter) = Waiter::start(kernel_memory) else {
        return;
    };
    let dir = scratch_dir(if kernel_memory {
        "wait-region-kernel-round-trip"
    } else {
        "wait-region-round-trip"
    });
    let image = dir.join("waiter.img");
    let pid = waiter.pid().to_string();
    // The region's address starts a mapping of the program before the
    // take-out (which unmaps a kernel region with the ring).
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    plan_ok(&[
        "dump",
        "--pid",
        &pid,
        "--detach",
        "-o",
        image.to_str().expect("utf-8 path"),
    ]);
    let region = wait_region_of(&image);
    assert_eq!(region["len"], 4096, "{region}");
    assert_eq!(region["kernel_memory"], kernel_memory, "{region}");
    let addr = region["addr"].as_u64().expect("the region's address");
    assert!(
        maps.lines().any(|line| line
            .split(['-', ' '])
            .next()
            .and_then(|start| u64::from_str_radix(start, 16).ok())
            == Some(addr)),
        "the region's address {addr:#x} starts a mapping of the program:\n{maps}"
    );
    let image = image.to_str().expect("utf-8 path");
    let before = ProcessState::capture_of(waiter.pid());
    fail_at_every_step(image, waiter.pid(), &[], &before, |_| {});
    plan_ok(&["exec", image, "--pid", &pid]);
    let (done, code) = waiter.finish();
    assert_eq!(done, json!({"done": true, "ok": true}));
    assert_eq!(code, Some(0));
}
