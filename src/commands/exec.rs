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

use std::os::fd::{AsRawFd, OwnedFd};

use ringplan_dump::{BackendChoice, Dumper, Selection};
use ringplan_exec::{AnonymousBuffers, ExecError, ExecOptions, Inputs};
use ringplan_image::{Image, ObjectId};
use ringplan_plan::{Op, Plan};
use rustix::fs::{Mode, OFlags};

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
    /// Test hook: make step N fail, then check that the undo left the fd
    /// table and the memory map exactly as they were.
    #[arg(long, hide = true, value_name = "N")]
    fail_at: Option<usize>,
}

/// This process's own standard streams, moved out of the plan's way.
struct Stdio {
    /// `(original number, moved copy)` for each stream the plan needs.
    moved: Vec<(i32, OwnedFd)>,
}

impl Stdio {
    /// Moves each of fds 0-2 that the plan installs onto to a copy at or
    /// above the plan's fd floor, and closes the original number.
    fn make_room(plan: &Plan) -> Result<Stdio, CliError> {
        let mut stdio = Stdio { moved: Vec::new() };
        for fd in [0, 1, 2] {
            if !plan.needed_fds.contains(&fd) {
                continue;
            }
            // SAFETY: fcntl on a number that may be closed only fails.
            let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            if rustix::io::fcntl_getfd(borrowed).is_err() {
                continue;
            }
            let copy = match rustix::io::fcntl_dupfd_cloexec(borrowed, plan.temp_fd_floor.max(3)) {
                Ok(copy) => copy,
                Err(errno) => {
                    stdio.restore();
                    return Err(CliError::failed(format!(
                        "moving fd {fd} out of the plan's way: {errno}"
                    )));
                }
            };
            // SAFETY: fd `fd` is open (checked above) and is ours to close:
            // the standard streams are not read or written while moved.
            drop(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
            stdio.moved.push((fd, copy));
        }
        Ok(stdio)
    }

    /// Writes `text` to our stdout, wherever it is now.
    fn print(&self, text: &str) -> Result<(), CliError> {
        match self.moved.iter().find(|(fd, _)| *fd == 1) {
            Some((_, copy)) => {
                let mut bytes = text.as_bytes();
                while !bytes.is_empty() {
                    match rustix::io::write(copy, bytes) {
                        Ok(written) => bytes = &bytes[written..],
                        Err(rustix::io::Errno::INTR) => continue,
                        Err(rustix::io::Errno::PIPE) => return Err(CliError::BrokenPipe),
                        Err(errno) => {
                            return Err(CliError::failed(format!("writing output: {errno}")))
                        }
                    }
                }
                Ok(())
            }
            None => crate::commands::print_text(text),
        }
    }

    /// Puts the streams back at their numbers (replacing whatever is there).
    fn restore(self) {
        for (fd, copy) in self.moved {
            // SAFETY: `fd` is 0, 1 or 2; dup3 replaces it atomically, and the
            // new fd is owned by the process's standard streams from now on.
            let mut target = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
            let _ = rustix::io::dup3(&copy, &mut target, rustix::io::DupFlags::empty());
            std::mem::forget(target);
        }
    }
}

fn exec_error(error: ExecError) -> CliError {
    if error.is_preflight() {
        CliError::bad_input(error)
    } else {
        CliError::failed(error)
    }
}

/// Opens each `--input ID=PATH` above the plan's fd floor, so it never
/// takes a target fd number.
fn open_inputs(args: &ExecArgs, plan: &Plan) -> Result<Inputs, CliError> {
    let mut inputs = Inputs::new();
    for given in &args.inputs {
        let (id, path) = given
            .split_once('=')
            .ok_or_else(|| CliError::bad_input(format!("--input {given:?}: expected ID=PATH")))?;
        let id: u32 = id.trim_start_matches('#').parse().map_err(|_| {
            CliError::bad_input(format!("--input {given:?}: {id:?} is not an object id"))
        })?;
        let access = plan
            .steps
            .iter()
            .find_map(|step| match &step.op {
                Op::ExternalInput(input) if step.object == Some(ObjectId(id)) => input.flags,
                _ => None,
            })
            .map_or(OFlags::RDONLY, |flags| {
                OFlags::from_bits_retain(flags) & OFlags::RWMODE
            });
        let fd = rustix::fs::open(
            path,
            access | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
            Mode::empty(),
        )
        .map_err(|errno| {
            CliError::bad_input(format!("--input {given}: cannot open {path}: {errno}"))
        })?;
        let fd: OwnedFd =
            rustix::io::fcntl_dupfd_cloexec(&fd, plan.temp_fd_floor).map_err(|errno| {
                CliError::failed(format!("--input {given}: fcntl(F_DUPFD_CLOEXEC): {errno}"))
            })?;
        inputs.insert(ObjectId(id), fd);
    }
    Ok(inputs)
}

/// This process's fd table (number → target) and memory map, to check an
/// undo. The directory fd used to list the table is left out.
fn process_state() -> (Vec<(String, String)>, Vec<String>) {
    let mut fds: Vec<(String, String)> = std::fs::read_dir("/proc/self/fd")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|entry| {
                    let target = std::fs::read_link(entry.path()).ok()?;
                    Some((
                        entry.file_name().to_string_lossy().into_owned(),
                        target.to_string_lossy().into_owned(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    fds.sort();
    let maps = std::fs::read_to_string("/proc/self/maps")
        .map(|text| {
            text.lines()
                .filter(|line| !line.ends_with("[heap]"))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    (fds, maps)
}

fn describe_state_change(
    before: &(Vec<(String, String)>, Vec<String>),
    after: &(Vec<(String, String)>, Vec<String>),
) -> Vec<String> {
    let mut changes = Vec::new();
    for fd in after.0.iter().filter(|fd| !before.0.contains(fd)) {
        changes.push(format!("fd {} -> {} left open", fd.0, fd.1));
    }
    for fd in before.0.iter().filter(|fd| !after.0.contains(fd)) {
        changes.push(format!("fd {} -> {} was closed", fd.0, fd.1));
    }
    for line in after.1.iter().filter(|line| !before.1.contains(line)) {
        changes.push(format!("mapping {line} left"));
    }
    for line in before.1.iter().filter(|line| !after.1.contains(line)) {
        changes.push(format!("mapping {line} removed"));
    }
    changes
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
    let options = ExecOptions {
        substitute_external: args.substitute_external,
        raise_fd_limit: true,
        skip_ring_mappings: false,
        fail_at_step: args.fail_at,
        injected_errno: rustix::io::Errno::CANCELED.raw_os_error(),
    };
    let inputs = open_inputs(&args, &plan)?;
    let stdio = Stdio::make_room(&plan)?;
    let result = run_with(&args, image.as_ref(), &plan, inputs, &stdio, &options);
    stdio.restore();
    result
}

fn run_with(
    args: &ExecArgs,
    image: Option<&Image>,
    plan: &Plan,
    inputs: Inputs,
    stdio: &Stdio,
    options: &ExecOptions,
) -> Result<(), CliError> {
    let mut memory = AnonymousBuffers::new();

    if args.dry_run {
        let mut text = plan.to_text();
        let report =
            ringplan_exec::preflight(plan, &inputs, &mut memory, options).map_err(exec_error)?;
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
            if report.external_inputs.is_empty() {
                "none".to_owned()
            } else {
                report
                    .external_inputs
                    .iter()
                    .map(|(object, supplied)| format!("{object} {}", if *supplied { "supplied" } else { "substituted" }))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        ));
        return stdio.print(&text);
    }

    let before = args.fail_at.map(|_| process_state());
    let restored = match ringplan_exec::execute(plan, inputs, &mut memory, options) {
        Ok(restored) => restored,
        Err(error) => {
            if let Some(before) = before {
                let changes = describe_state_change(&before, &process_state());
                if !changes.is_empty() {
                    return Err(CliError::failed(format!(
                        "{error}; but the undo left changes: {}",
                        changes.join("; ")
                    )));
                }
            }
            return Err(exec_error(error));
        }
    };
    let substituted: Vec<ObjectId> = restored
        .substituted
        .iter()
        .map(|substitution| substitution.object)
        .collect();

    if let Some(image) = image.filter(|_| args.verify) {
        let dump = Dumper::new(BackendChoice::Bpf)?.dump(std::process::id(), Selection::All)?;
        let comparison = ringplan_exec::verify::compare(
            image,
            &dump.image,
            &substituted,
            &restored.skipped_mappings,
        );
        if !comparison.is_faithful() {
            let mut text = String::new();
            for difference in &comparison.differences {
                text.push_str(difference);
                text.push('\n');
            }
            stdio.print(&text)?;
            return Err(CliError::failed(format!(
                "verification found {} difference(s) from {}",
                comparison.differences.len(),
                args.input
            )));
        }
        stdio.print(&format!("verified: {}\n", comparison.summary()))?;
    }

    if args.hold {
        let mut signals = ringplan_scenarios::StopSignals::watch().map_err(CliError::failed)?;
        let rings: Vec<i32> = plan
            .steps
            .iter()
            .filter_map(|step| match &step.op {
                Op::InstallFd(install) => Some(install.fd),
                _ => None,
            })
            .filter(|fd| {
                restored
                    .fds
                    .values()
                    .flatten()
                    .any(|owned| owned.as_raw_fd() == *fd)
                    && std::fs::read_link(format!("/proc/self/fd/{fd}"))
                        .is_ok_and(|target| target.to_string_lossy() == "anon_inode:[io_uring]")
            })
            .collect();
        let line = serde_json::json!({
            "pid": std::process::id(),
            "ring_fds": rings,
            "fds": restored.fds.iter().map(|(object, fds)| (object.0.to_string(), serde_json::Value::from(fds.iter().map(AsRawFd::as_raw_fd).collect::<Vec<_>>()))).collect::<serde_json::Map<String, serde_json::Value>>(),
            "substituted": substituted.iter().map(|object| object.0).collect::<Vec<_>>(),
            "mapped": restored.mapped.len(),
            "skipped_mappings": restored.skipped_mappings.iter().map(|skip| serde_json::json!({
                "object": skip.object.0,
                "region": serde_json::to_value(skip.mapping.region).unwrap_or_default(),
                "addr": skip.mapping.addr,
                "len": skip.mapping.len,
                "why": skip.to_string(),
            })).collect::<Vec<_>>(),
        });
        stdio.print(&format!("{line}\n"))?;
        signals.wait();
    } else if !args.verify {
        stdio.print(&format!(
            "restored: {} objects at {} fds ({} substituted), {} ring regions mapped ({} skipped); exiting closes \
             them (use --hold to keep them)\n",
            restored.fds.len(),
            restored.fds.values().map(Vec::len).sum::<usize>(),
            substituted.len(),
            restored.mapped.len(),
            restored.skipped_mappings.len(),
        ))?;
    }
    drop(restored);
    Ok(())
}
