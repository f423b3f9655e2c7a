//! `plan exec`: restore an image or plan into this very process.
//!
//! The restore happens in the `plan` process itself, which must then keep
//! the rings (`--hold`): io_uring fds are close-on-exec and `execve` kills
//! SQ threads, so a restorer cannot hand the rings to a program it starts.
//!
//! Buffers are restored as fresh anonymous memory mapped at each recorded
//! range (never over an existing mapping: a taken range is a preflight
//! error naming it). Ring regions are mapped at their recorded addresses by
//! the executor when the range is free and the kernel lets it (Linux 6.4+
//! never does); skipped ones are listed by `--verify` (and not compared)
//! and in `--hold`'s `skipped_mappings`.
//!
//! External inputs (pipes, sockets, anything the plan
//! cannot reopen by path) are supplied with `--input ID=PATH`; one not
//! supplied is a preflight error unless `--substitute-external` is given,
//! which stands in a new pipe end (for a pipe) or `/dev/null`; `--verify`
//! then reports those objects as substituted, not as matches.
//!
//! Standard streams: a dumped process usually holds fds 0, 1 and 2 too, and
//! the plan installs its objects there. When it does, `plan exec` first
//! moves its own stdin/stdout/stderr above the plan's fds (close-on-exec
//! copies), prints through the moved copies, and moves them back after the
//! restored fds are closed (at exit, or when a run fails).
//!
//! This file parses, calls `ringplan_exec` and prints: the moving of the
//! streams is `ringplan_exec::stdio`, the comparison `ringplan_exec::verify`,
//! which fds are rings and the wait for a signal `ringplan_exec::hold`.
//! `exec/test_hooks.rs` is the hidden `--fail-at` of test builds.
//!
//! `--pid PID` restores into another running process instead
//! (`exec/into_process.rs`, `ringplan_exec::execute_in`): its syscalls run
//! in that process's main thread, which is let go afterwards (resumed, or
//! left stopped with `--leave-stopped`).

mod into_process;
mod progress;
mod test_hooks;

use std::os::fd::{AsRawFd, BorrowedFd};

use ringplan_dump::{BackendChoice, Dumper, Selection};
use ringplan_exec::stdio::MovedStdio;
use ringplan_exec::{
    hold, AnonymousBuffers, ExecError, ExecOptions, InputError, Inputs, PreflightReport, Restored,
};
use ringplan_image::{Image, ObjectId};
use ringplan_plan::Plan;

use crate::error::CliError;
use crate::input::{read_document, Document};

#[derive(clap::Args)]
pub struct ExecArgs {
    /// An image or a plan; `-` reads stdin.
    #[arg(value_name = "IMAGE|PLAN|-")]
    input: String,
    /// Print the plan and run the preflight checks; change nothing.
    #[arg(long, conflicts_with_all = ["verify", "hold"])]
    dry_run: bool,
    /// After restoring, dump this process with the BPF backend and compare
    /// with the image: `verified ...`, or one difference per line and exit 1.
    #[arg(long)]
    verify: bool,
    /// After restoring, print one JSON line (`pid`, ring fds, substitutions,
    /// ring regions mapped and skipped)
    /// and keep the rings until SIGTERM or SIGINT.
    #[arg(long)]
    hold: bool,
    /// Supply the file at PATH for the external input of object ID
    /// (repeatable).
    #[arg(long = "input", value_name = "ID=PATH")]
    inputs: Vec<String>,
    /// Stand in a new pipe (for a pipe) or /dev/null for each external input
    /// not supplied with --input, instead of refusing.
    #[arg(long)]
    substitute_external: bool,
    /// On a kernel that cannot place a ring's memory at the program's
    /// addresses (before Linux 6.5), restore rings as kernel objects only
    /// (new memory, positions at 0, no pending entries) instead of refusing.
    #[arg(long)]
    allow_moved_rings: bool,
    /// Register personalities with the credentials of the thread that
    /// registers them even where they differ from the recorded ones (the
    /// kernel takes that thread's), instead of refusing.
    #[arg(long)]
    accept_restorer_creds: bool,
    /// Restore into the running process PID instead of this one (its main
    /// thread runs the syscalls); plans that restore rings where the
    /// program left them are refused, and only stand-ins
    /// (--substitute-external) serve external inputs.
    #[arg(long, value_name = "PID")]
    pid: Option<u32>,
    /// With --pid: leave the process stopped (as by SIGSTOP) after the
    /// restore.
    #[arg(long, requires = "pid")]
    leave_stopped: bool,
    /// Hidden flags of test builds only (`--fail-at`).
    #[command(flatten)]
    test_hooks: test_hooks::TestHookArgs,
}

pub fn run(args: ExecArgs) -> Result<(), CliError> {
    let (image, plan): (Option<Image>, Plan) = match read_document(&args.input)? {
        Document::Plan(plan) => (None, plan),
        Document::Image(image) => {
            let plan = ringplan_plan::compile(&image)
                .map_err(|error| CliError::bad_input(format!("{}: {error}", args.input)))?;
            (Some(image), plan)
        }
    };
    if args.verify && image.is_none() {
        return Err(CliError::bad_input(format!(
            "{} is a plan; --verify needs the image to compare with",
            args.input
        )));
    }
    if args.pid.is_some() && args.hold {
        return Err(CliError::bad_input(
            "--hold keeps rings in this process; with --pid they are the target's: drop --hold",
        ));
    }
    let options = ExecOptions {
        substitute_external: args.substitute_external,
        raise_fd_limit: true,
        skip_ring_mappings: false,
        allow_moved_rings: args.allow_moved_rings,
        accept_restorer_credentials: args.accept_restorer_creds,
    };
    let inputs = open_inputs(&args, &plan)?;
    if let Some(pid) = args.pid {
        return into_process::run(&args, pid, image.as_ref(), &plan, inputs, &options);
    }
    let stdio = MovedStdio::make_room(&plan).map_err(CliError::failed)?;
    let result = run_with(&args, image.as_ref(), &plan, inputs, &stdio, &options);
    stdio.restore();
    result
}

fn run_with(
    args: &ExecArgs,
    image: Option<&Image>,
    plan: &Plan,
    inputs: Inputs,
    stdio: &MovedStdio,
    options: &ExecOptions,
) -> Result<(), CliError> {
    let mut memory = AnonymousBuffers::new();
    if args.dry_run {
        let report =
            ringplan_exec::preflight(plan, &inputs, &mut memory, options).map_err(exec_error)?;
        return print(stdio, &dry_run_text(plan, &report));
    }
    let mut progress = progress::RestoreProgress::on_terminal(plan, stdio.is_moved(2));
    let restored = test_hooks::execute(
        &args.test_hooks,
        plan,
        inputs,
        &mut memory,
        options,
        &mut |report| progress.report(report),
    )?;
    let substituted: Vec<ObjectId> = restored
        .substituted
        .iter()
        .map(|substitution| substitution.object)
        .collect();
    if let Some(image) = image.filter(|_| args.verify) {
        verify(&args.input, image, &restored, &substituted, stdio)?;
    }
    if args.hold {
        let stop = hold::StopWatch::start().map_err(CliError::failed)?;
        let line = hold_line(plan, &restored, &substituted);
        print(stdio, &format!("{line}\n"))?;
        stop.wait();
    } else if !args.verify {
        print(stdio, &restored_text(&restored, substituted.len()))?;
    }
    drop(restored);
    Ok(())
}

fn exec_error(error: ExecError) -> CliError {
    if error.is_preflight() {
        CliError::bad_input(error)
    } else {
        CliError::failed(error)
    }
}

/// `ringplan_exec::execute_with_progress`, its errors as the CLI reports
/// them.
fn execute(
    plan: &Plan,
    inputs: Inputs,
    memory: &mut AnonymousBuffers,
    options: &ExecOptions,
    progress: &mut dyn FnMut(ringplan_exec::Progress),
) -> Result<Restored, CliError> {
    ringplan_exec::execute_with_progress(plan, inputs, memory, options, progress)
        .map_err(exec_error)
}

/// Opens each `--input ID=PATH` (above the plan's fd floor, so it never
/// takes a target fd number).
fn open_inputs(args: &ExecArgs, plan: &Plan) -> Result<Inputs, CliError> {
    let mut inputs = Inputs::new();
    for given in &args.inputs {
        let (id, path) = given
            .split_once('=')
            .ok_or_else(|| CliError::bad_input(format!("--input {given:?}: expected ID=PATH")))?;
        let id: u32 = id.trim_start_matches('#').parse().map_err(|_| {
            CliError::bad_input(format!("--input {given:?}: {id:?} is not an object id"))
        })?;
        inputs
            .open(plan, ObjectId(id), path)
            .map_err(|error| match error {
                InputError::Open { .. } => CliError::bad_input(format!("--input {given}: {error}")),
                _ => CliError::failed(format!("--input {given}: {error}")),
            })?;
    }
    Ok(inputs)
}

/// The dry run's plan and preflight report.
fn dry_run_text(plan: &Plan, report: &PreflightReport) -> String {
    let mut text = plan.to_text();
    let external_inputs = if report.external_inputs.is_empty() {
        "none".to_owned()
    } else {
        report
            .external_inputs
            .iter()
            .map(|(object, supplied)| {
                let how = if *supplied { "supplied" } else { "substituted" };
                format!("{object} {how}")
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    text.push_str(&format!(
        "preflight: ok: fds {:?} free; RLIMIT_NOFILE {} needed (soft {}, hard {}{}); {} bytes of buffers pinned; \
         kernel accepts setup flags {:?} (features {:#x}); external inputs: {}\n",
        report.needed_fds,
        report.fd_limit_needed,
        report.fd_limit_soft,
        report.fd_limit_hard,
        if report.raises_fd_limit { ", would raise the soft limit" } else { "" },
        report.pinned_bytes,
        report.setup_flag_sets.iter().map(|flags| format!("{flags:#x}")).collect::<Vec<_>>(),
        report.features,
        external_inputs,
    ));
    text.push_str(&adopted_text(&report.adopted));
    text
}

/// One line per fd the process restored into already holds and the run
/// uses as it is (`--pid`), with what was left as the process has it.
fn adopted_text(adopted: &[ringplan_exec::AdoptedFd]) -> String {
    let mut text = String::new();
    for fd in adopted {
        text.push_str(&format!(
            "adopted fd {} ({}, {}): the process holds it already\n",
            fd.fd, fd.object, fd.what
        ));
        for note in &fd.notes {
            text.push_str(&format!("  fd {}: {note}\n", fd.fd));
        }
    }
    text
}

/// `--verify`: dumps this process and compares it with `image`; prints the
/// summary, or each difference (then fails).
fn verify(
    input: &str,
    image: &Image,
    restored: &Restored,
    substituted: &[ObjectId],
    stdio: &MovedStdio,
) -> Result<(), CliError> {
    let dump = Dumper::new(BackendChoice::Bpf)?.dump(std::process::id(), Selection::All)?;
    let facts = ringplan_exec::verify::RunFacts {
        substituted,
        skipped_mappings: &restored.skipped_mappings,
        moved_rings: &restored.moved_rings,
        adopted: &[],
        ring_fds: &restored.ring_fds,
    };
    let mut comparison = ringplan_exec::verify::compare_run(image, &dump.image, &facts);
    comparison
        .differences
        .extend(ringplan_exec::verify::compare_pbuf_contents(
            image,
            std::process::id(),
        ));
    if !comparison.is_faithful() {
        let mut text = String::new();
        for difference in &comparison.differences {
            text.push_str(difference);
            text.push('\n');
        }
        print(stdio, &text)?;
        return Err(CliError::failed(format!(
            "verification found {} difference(s) from {input}",
            comparison.differences.len(),
        )));
    }
    print(stdio, &format!("verified: {}\n", comparison.summary()))
}

/// `--hold`'s one JSON line: the pid, the ring fds, every restored object's
/// fds, the substitutions and the ring regions mapped and skipped.
fn hold_line(plan: &Plan, restored: &Restored, substituted: &[ObjectId]) -> serde_json::Value {
    let fds: serde_json::Map<String, serde_json::Value> = restored
        .fds
        .iter()
        .map(|(object, fds)| {
            let fds: Vec<i32> = fds.iter().map(AsRawFd::as_raw_fd).collect();
            (object.0.to_string(), serde_json::Value::from(fds))
        })
        .collect();
    let skipped: Vec<serde_json::Value> = restored
        .skipped_mappings
        .iter()
        .map(|skip| {
            serde_json::json!({
                "object": skip.object.0,
                "region": serde_json::to_value(skip.mapping.region).unwrap_or_default(),
                "addr": skip.mapping.addr,
                "len": skip.mapping.len,
                "why": skip.to_string(),
            })
        })
        .collect();
    let continuous: Vec<serde_json::Value> = restored
        .continuous_rings
        .iter()
        .map(|ring| {
            serde_json::json!({
                "object": ring.ring.0,
                "rings_addr": ring.rings_addr,
                "sqes_addr": ring.sqes_addr,
                "nops": ring.advanced.nops,
                "skipping_nops": ring.advanced.skipping_nops,
                "messages": ring.advanced.messages,
                "owner_tid": ring.owner.map(|owner| owner.tid),
                "recorded_owner_tid": ring.owner.and_then(|owner| owner.recorded_tid),
            })
        })
        .collect();
    serde_json::json!({
        "pid": std::process::id(),
        "ring_fds": hold::ring_fds(plan, restored),
        "fds": fds,
        "substituted": substituted.iter().map(|object| object.0).collect::<Vec<_>>(),
        "mapped": restored.mapped.len(),
        "skipped_mappings": skipped,
        "continuous_rings": continuous,
        "moved_rings": restored.moved_rings.iter().map(|object| object.0).collect::<Vec<_>>(),
        "registered_ring_fds": ring_fds_json(&restored.ring_fds),
    })
}

/// Where each recorded registered ring-fd slot went: `--hold`'s
/// `registered_ring_fds`, for a caller's own comparison.
pub(crate) fn ring_fds_json(ring_fds: &[ringplan_exec::RestoredRingFd]) -> serde_json::Value {
    ring_fds
        .iter()
        .map(|slot| {
            serde_json::json!({
                "object": slot.ring.0,
                "offset": slot.offset,
                "tid": slot.tid,
                "recorded_tid": slot.recorded_tid,
                "registered": slot.registered,
            })
        })
        .collect()
}

/// What a plain run (neither `--verify` nor `--hold`) says it restored.
fn restored_text(restored: &Restored, substituted: usize) -> String {
    let mut text = format!(
        "restored: {} objects at {} fds ({} substituted), {} ring regions mapped ({} skipped), {} ring(s) \
         where the program left them ({} moved); exiting closes them (use --hold to keep them)\n",
        restored.fds.len(),
        restored.fds.values().map(Vec::len).sum::<usize>(),
        substituted,
        restored.mapped.len(),
        restored.skipped_mappings.len(),
        restored.continuous_rings.len(),
        restored.moved_rings.len(),
    );
    text.push_str(&owner_text(restored));
    text.push_str(&ring_fds_text(&restored.ring_fds));
    text
}

/// One line per registered ring-fd slot put elsewhere than recorded (in
/// this process, the thread that ran the plan) or not registered.
pub(crate) fn ring_fds_text(ring_fds: &[ringplan_exec::RestoredRingFd]) -> String {
    let mut text = String::new();
    for slot in ring_fds {
        if !slot.registered || slot.tid != slot.recorded_tid {
            text.push_str(&format!("{slot}\n"));
        }
    }
    text
}

/// One line per `SINGLE_ISSUER` ring: it belongs to the thread that ran
/// the plan, in this process.
fn owner_text(restored: &Restored) -> String {
    let mut text = String::new();
    for ring in &restored.continuous_rings {
        if let Some(owner) = ring.owner {
            let recorded = owner.recorded_tid.map_or_else(String::new, |tid| {
                format!(" (the image's owner was thread {tid})")
            });
            text.push_str(&format!(
                "ring {}: IORING_SETUP_SINGLE_ISSUER, owned by thread {}, which ran the plan{recorded}\n",
                ring.ring, owner.tid
            ));
        }
    }
    text
}

/// Writes `text` to our stdout, wherever it is now.
fn print(stdio: &MovedStdio, text: &str) -> Result<(), CliError> {
    match stdio.stdout() {
        Some(stdout) => write_all(stdout, text),
        None => crate::commands::print_text(text),
    }
}

/// Writes all of `text` to `fd`; a reader gone away is a broken pipe.
fn write_all(fd: BorrowedFd<'_>, text: &str) -> Result<(), CliError> {
    let mut bytes = text.as_bytes();
    while !bytes.is_empty() {
        match rustix::io::write(fd, bytes) {
            Ok(written) => bytes = &bytes[written..],
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::PIPE) => return Err(CliError::BrokenPipe),
            Err(errno) => return Err(CliError::failed(format!("writing output: {errno}"))),
        }
    }
    Ok(())
}
