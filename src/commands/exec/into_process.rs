//! `plan exec --pid PID`: restore into another running process
//! (`ringplan_exec::execute_in`), then say what was restored, or with
//! `--verify` dump that process with the BPF backend and compare it with
//! the image (as the in-process `--verify` does with this process).

use ringplan_dump::{BackendChoice, Dumper, Selection};
use ringplan_exec::{ExecOptions, Inputs, ProcessOptions, RestoredIn};
use ringplan_image::{Image, ObjectId};
use ringplan_plan::Plan;

use super::{adopted_text, dry_run_text, exec_error, test_hooks, ExecArgs};
use crate::error::CliError;

/// Restores `plan` into process `pid` and reports.
pub(super) fn run(
    args: &ExecArgs,
    pid: u32,
    image: Option<&Image>,
    plan: &Plan,
    inputs: Inputs,
    options: &ExecOptions,
) -> Result<(), CliError> {
    if args.dry_run {
        let report =
            ringplan_exec::preflight_in_process(pid, plan, &inputs, options).map_err(exec_error)?;
        return crate::commands::print_text(&dry_run_text(plan, &report));
    }
    let process = ProcessOptions {
        leave_stopped: args.leave_stopped,
    };
    let restored = test_hooks::execute_in(&args.test_hooks, pid, plan, inputs, options, &process)?;
    let substituted: Vec<ObjectId> = restored
        .restored
        .substituted
        .iter()
        .map(|substitution| substitution.object)
        .collect();
    if let Some(image) = image.filter(|_| args.verify) {
        return verify(&args.input, pid, image, &restored, &substituted);
    }
    let mut text = restored_text(&restored, substituted.len());
    text.push_str(&adopted_text(&restored.report.adopted));
    crate::commands::print_text(&text)
}

/// What a run into another process says it restored.
fn restored_text(restored: &RestoredIn, substituted: usize) -> String {
    let fds = &restored.restored.fds;
    format!(
        "restored into process {} (syscalls in thread {}): {} objects at {} fds ({} substituted, {} adopted), \
         {} buffer range(s) mapped, {} ring regions mapped ({} skipped); the process was {}\n",
        restored.pid,
        restored.thread,
        fds.len(),
        fds.values().map(Vec::len).sum::<usize>(),
        substituted,
        restored.report.adopted.len(),
        restored.buffers.len(),
        restored.restored.mapped.len(),
        restored.restored.skipped_mappings.len(),
        if restored.left_stopped {
            "left stopped"
        } else {
            "resumed"
        },
    )
}

/// `--verify` with `--pid`: dumps the process restored into and compares.
fn verify(
    input: &str,
    pid: u32,
    image: &Image,
    restored: &RestoredIn,
    substituted: &[ObjectId],
) -> Result<(), CliError> {
    let dump = Dumper::new(BackendChoice::Bpf)?.dump(pid, Selection::All)?;
    let adopted: Vec<ObjectId> = restored
        .report
        .adopted
        .iter()
        .map(|adopted| adopted.object)
        .collect();
    let facts = ringplan_exec::verify::RunFacts {
        substituted,
        skipped_mappings: &restored.restored.skipped_mappings,
        moved_rings: &restored.restored.moved_rings,
        adopted: &adopted,
    };
    let comparison = ringplan_exec::verify::compare_run(image, &dump.image, &facts);
    if !comparison.is_faithful() {
        let mut text = String::new();
        for difference in &comparison.differences {
            text.push_str(difference);
            text.push('\n');
        }
        crate::commands::print_text(&text)?;
        return Err(CliError::failed(format!(
            "verification of process {pid} found {} difference(s) from {input}",
            comparison.differences.len(),
        )));
    }
    crate::commands::print_text(&format!("verified: {}\n", comparison.summary()))
}
