//! Legacy provided-buffer groups (`IORING_OP_PROVIDE_BUFFERS`) carried
//! through a take-out: `tests/programs/legacy_reader.c` provides a group
//! of buffers in two runs, reads through part of it, and is taken out
//! with `plan dump --pid P --detach` and put back with `plan exec IMAGE
//! --pid P`; it then reads through the rest and checks, from each CQE,
//! that the kernel gave it every remaining buffer in order and then none.
//! Needs `IORING_SETUP_NO_MMAP` (Linux 6.5): before, `exec --pid` refuses.

use std::path::Path;

use serde_json::{json, Value};

use ringplan_exec::test_hooks::ProcessState;

use crate::support::line_program::LineProgram;
use crate::support::{
    fail_at_every_step, kernel_has_no_mmap, objects_of_kind, plan, plan_ok, scratch_dir,
};

/// A legacy_reader that has taken its first buffers and waits.
struct Reader(LineProgram);

impl Reader {
    fn start(buffers: u32, taken: u32) -> Reader {
        let (program, waiting) =
            LineProgram::start("legacy_reader", &[buffers.to_string(), taken.to_string()]);
        assert_eq!(waiting["taken"], taken, "{waiting}");
        Reader(program)
    }

    fn pid(&self) -> u32 {
        self.0.pid()
    }

    /// Lets it read the rest; its done line and exit status.
    fn finish(self) -> (Value, Option<i32>) {
        self.0.finish()
    }
}

/// Takes the reader's ring out into `image`; the group as the image has
/// it (bgid 7: its buffers as runs).
fn detach(reader: &Reader, image: &Path) -> Value {
    let pid = reader.pid().to_string();
    plan_ok(&[
        "dump",
        "--pid",
        &pid,
        "--detach",
        "-o",
        image.to_str().expect("utf-8 path"),
    ]);
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
    rings[0]["legacy_buffer_groups"].clone()
}

/// 40 buffers in two runs of 20, 15 taken before the take-out: the image
/// holds the 25 left as two runs (the rest of the first, all of the
/// second); a put-back failed at each of its steps in turn changes
/// nothing; after the put-back the kernel hands the reader bids 15 to 39,
/// in order, each into its own buffer, and then none.
#[test]
fn a_program_reading_through_a_legacy_group_is_taken_out_put_back_and_finishes() {
    let dir = scratch_dir("legacy-reader-round-trip");
    let reader = Reader::start(40, 15);
    let image = dir.join("legacy.img");
    let groups = detach(&reader, &image);
    assert_eq!(groups.as_array().map(Vec::len), Some(1), "{groups}");
    let runs = groups[0]["buffers"].as_array().expect("captured buffers");
    assert_eq!(groups[0]["bgid"], 7);
    let bids: Vec<(Value, Value)> = runs
        .iter()
        .map(|run| (run["bid"].clone(), run["count"].clone()))
        .collect();
    assert_eq!(
        bids,
        [(json!(15), json!(5)), (json!(20), json!(20))],
        "{groups}"
    );
    let pid = reader.pid().to_string();
    let image = image.to_str().expect("utf-8 path");
    if !kernel_has_no_mmap() {
        let refused = plan(&["exec", image, "--pid", &pid]);
        assert_eq!(
            refused.status.code(),
            Some(2),
            "{}",
            String::from_utf8_lossy(&refused.stderr)
        );
        return;
    }
    // A failure at any step of the put-back (the group's PROVIDE_BUFFERS
    // among them) leaves the reader as the detach left it.
    let before = ProcessState::capture_of(reader.pid());
    fail_at_every_step(image, reader.pid(), &[], &before, |_| {});
    plan_ok(&["exec", image, "--pid", &pid]);
    let (done, code) = reader.finish();
    assert_eq!(done, json!({"done": 40, "ok": true}));
    assert_eq!(code, Some(0));
}
