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
    if !plan.processes.is_empty() {
        // As into one process: the caller's fds cannot be passed in.
        if let Some(object) = inputs.objects().next() {
            return Err(exec_error(ringplan_exec::ExecError::InputsInProcess {
                object,
            }));
        }
        return run_tree(args, pid, image, plan, options);
    }
    if args.dry_run {
        let report =
            ringplan_exec::preflight_in_process(pid, plan, &inputs, options).map_err(exec_error)?;
        return crate::commands::print_text(&dry_run_text(plan, &report));
    }
    let process = ProcessOptions {
        leave_stopped: args.leave_stopped,
    };
    let restored = test_hooks::execute_in(&args.test_hooks, pid, plan, inputs, options, &process)?;
    if let Some(image) = image.filter(|_| args.verify) {
        return verify(&args.input, pid, image, &restored);
    }
    let mut text = restored_text(&restored);
    text.push_str(&adopted_text(&restored.report.adopted));
    crate::commands::print_text(&text)
}

/// What a run into another process says it restored: a summary line, then
/// one line per `SINGLE_ISSUER` ring naming the thread that owns it.
fn restored_text(restored: &RestoredIn) -> String {
    let fds = &restored.restored.fds;
    let mut text = format!(
        "restored into process {} (syscalls in thread {}): {} objects at {} fds ({} substituted, \
         {} adopted), {} buffer range(s) mapped, {} ring regions mapped ({} skipped), {} ring(s) \
         where the program left them; the process was {}\n",
        restored.pid,
        restored.thread,
        fds.len(),
        fds.values().map(Vec::len).sum::<usize>(),
        restored.restored.substituted.len(),
        restored.report.adopted.len(),
        restored.buffers.len(),
        restored.restored.mapped.len(),
        restored.restored.skipped_mappings.len(),
        restored.restored.continuous_rings.len(),
        if restored.left_stopped {
            "left stopped"
        } else {
            "resumed"
        },
    );
    for ring in &restored.restored.continuous_rings {
        if let Some(owner) = ring.owner {
            let recorded = match owner.recorded_tid {
                Some(tid) if tid == owner.tid => " (its recorded owner)".to_owned(),
                Some(tid) => format!(" (the image's owner was thread {tid})"),
                None => String::new(),
            };
            text.push_str(&format!(
                "ring {}: IORING_SETUP_SINGLE_ISSUER, owned by thread {} of process {}{recorded}\n",
                ring.ring, owner.tid, restored.pid
            ));
        }
    }
    text.push_str(&super::ring_fds_text(&restored.restored.ring_fds));
    let timings = restored.timings;
    text.push_str(&format!(
        "process {} held {:.3} ms: attach {:.3}, preflight {:.3}, run {:.3} (continuity steps \
         {:.3}), detach {:.3}\n",
        restored.pid,
        ms(timings.total()),
        ms(timings.attach),
        ms(timings.preflight),
        ms(timings.run),
        ms(timings.continuity),
        ms(timings.detach),
    ));
    text
}

/// Restores tree plan `plan` into the tree of process `root` and reports
/// each process's part; with `--verify` (and the image), compares each.
fn run_tree(
    args: &ExecArgs,
    root: u32,
    image: Option<&Image>,
    plan: &Plan,
    options: &ExecOptions,
) -> Result<(), CliError> {
    if args.dry_run {
        let reports = ringplan_exec::preflight_tree_in(root, plan, options).map_err(exec_error)?;
        let parts = std::iter::once(plan).chain(plan.processes.iter().map(|part| &part.plan));
        let mut text = String::new();
        for ((pid, report), part) in reports
            .iter()
            .zip(parts.filter(|part| !part.steps.is_empty()))
        {
            text.push_str(&format!(
                "process {pid} (the plan's process {}):\n",
                part.source.pid
            ));
            text.push_str(&dry_run_text(part, report));
        }
        return crate::commands::print_text(&text);
    }
    let process = ProcessOptions {
        leave_stopped: args.leave_stopped,
    };
    let restored = test_hooks::execute_tree_in(&args.test_hooks, root, plan, options, &process)?;
    if let Some(image) = image.filter(|_| args.verify) {
        return verify_tree(&args.input, root, image, plan, &restored);
    }
    let mut text = format!(
        "restored a tree of {} processes into process {root} and its descendants ({} with a part to run)\n",
        plan.processes.len() + 1,
        restored.len()
    );
    for part in &restored {
        text.push_str(&restored_text(part));
        text.push_str(&adopted_text(&part.report.adopted));
    }
    crate::commands::print_text(&text)
}

/// `--verify` of a tree: dumps the restored tree and compares each
/// process that ran a part with its part of the image, as a one-process
/// `--verify` compares (matched by the order of the parts).
fn verify_tree(
    input: &str,
    root: u32,
    image: &Image,
    plan: &Plan,
    restored: &[RestoredIn],
) -> Result<(), CliError> {
    let dump = ringplan_dump::dump_tree(
        root,
        ringplan_dump::TreeOptions {
            backend: BackendChoice::Bpf,
            freeze: None,
        },
    )?;
    let parts = std::iter::once(plan)
        .chain(plan.processes.iter().map(|part| &part.plan))
        .filter(|part| !part.steps.is_empty());
    let mut differences = Vec::new();
    let mut summaries = Vec::new();
    for (part, restored) in parts.zip(restored) {
        let recorded = part.source.pid;
        let (Some(original), Some(now)) = (
            image.process_view(recorded),
            dump.image.process_view(restored.pid),
        ) else {
            differences.push(format!(
                "process {}: not in the dumped tree (the plan's process {recorded})",
                restored.pid
            ));
            continue;
        };
        let comparison = compare_part(&original, &now, restored);
        differences.extend(
            comparison
                .differences
                .iter()
                .map(|difference| format!("process {}: {difference}", restored.pid)),
        );
        summaries.push(format!(
            "process {}: {}",
            restored.pid,
            comparison.summary()
        ));
    }
    if !differences.is_empty() {
        let mut text = differences.join("\n");
        text.push('\n');
        crate::commands::print_text(&text)?;
        return Err(CliError::failed(format!(
            "verification of the tree of process {root} found {} difference(s) from {input}",
            differences.len(),
        )));
    }
    crate::commands::print_text(&format!("verified: {}\n", summaries.join("; ")))
}

/// Compares `original` with `now`, a dump of the process `restored` went
/// into, knowing what the run substituted, adopted, skipped and moved.
fn compare_part(
    original: &Image,
    now: &Image,
    restored: &RestoredIn,
) -> ringplan_exec::verify::Comparison {
    let substituted: Vec<ObjectId> = restored
        .restored
        .substituted
        .iter()
        .map(|substitution| substitution.object)
        .collect();
    let adopted: Vec<ObjectId> = restored
        .report
        .adopted
        .iter()
        .map(|adopted| adopted.object)
        .collect();
    let facts = ringplan_exec::verify::RunFacts {
        substituted: &substituted,
        skipped_mappings: &restored.restored.skipped_mappings,
        moved_rings: &restored.restored.moved_rings,
        adopted: &adopted,
        ring_fds: &restored.restored.ring_fds,
    };
    ringplan_exec::verify::compare_run(original, now, &facts)
}

fn ms(duration: std::time::Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// `--verify` with `--pid`: dumps the process restored into and compares.
fn verify(input: &str, pid: u32, image: &Image, restored: &RestoredIn) -> Result<(), CliError> {
    let dump = Dumper::new(BackendChoice::Bpf)?.dump(pid, Selection::All)?;
    let mut comparison = compare_part(image, &dump.image, restored);
    comparison
        .differences
        .extend(ringplan_exec::verify::compare_pbuf_contents(image, pid));
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
