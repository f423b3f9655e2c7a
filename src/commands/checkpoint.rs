//! `plan checkpoint` and `plan restore`: a whole program that uses io_uring
//! checkpointed and restored with stock CRIU (`ringplan_criu`). The rings
//! are moved with the same code as `plan dump --detach` and `plan exec
//! --pid` ([`CliRings`], the crate's `RingMover`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ringplan_criu::mover::MoverError;
use ringplan_criu::{CheckpointOptions, Criu, CriuError, RingMover};
use ringplan_dump::{BackendChoice, Dumper};
use ringplan_exec::{ExecOptions, Inputs, ProcessOptions};

use super::dump_detach::{self, DetachRequest};
use super::dump_detach_tree::{self, TreeDetachRequest};
use crate::error::CliError;
use crate::input::read_image;

/// How long `plan checkpoint` lets requests in flight drain (as `plan dump
/// --detach`'s default).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(clap::Args)]
pub struct CheckpointArgs {
    /// The root of the process tree to checkpoint.
    #[arg(long)]
    pid: u32,
    /// The images directory (created if missing): CRIU's images, one
    /// ringplan image per process that had rings, and ringplan.json.
    #[arg(short = 'D', long = "images-dir", value_name = "DIR")]
    dir: PathBuf,
    /// Leave the tree running after the dump, its rings given back.
    #[arg(long)]
    leave_running: bool,
    /// The criu binary (default: criu on PATH, /usr/local/sbin, /usr/sbin).
    #[arg(long, value_name = "PATH")]
    criu: Option<PathBuf>,
    /// Arguments passed to `criu dump` (after `--`).
    #[arg(last = true, value_name = "CRIU_ARGS")]
    criu_args: Vec<String>,
}

#[derive(clap::Args)]
pub struct RestoreArgs {
    /// The images directory `plan checkpoint` wrote.
    #[arg(short = 'D', long = "images-dir", value_name = "DIR")]
    dir: PathBuf,
    /// The criu binary (default: criu on PATH, /usr/local/sbin, /usr/sbin).
    #[arg(long, value_name = "PATH")]
    criu: Option<PathBuf>,
    /// Arguments passed to `criu restore` (after `--`).
    #[arg(last = true, value_name = "CRIU_ARGS")]
    criu_args: Vec<String>,
}

pub fn run_checkpoint(args: CheckpointArgs) -> Result<(), CliError> {
    let criu = find_criu(args.criu.as_deref())?;
    std::fs::create_dir_all(&args.dir)
        .map_err(|error| CliError::failed(format!("creating {}: {error}", args.dir.display())))?;
    let options = CheckpointOptions {
        leave_running: args.leave_running,
        criu_args: args.criu_args,
    };
    let done = ringplan_criu::checkpoint(
        &criu,
        args.pid,
        &args.dir,
        &options,
        &mut CliRings::default(),
    )
    .map_err(criu_error)?;
    let ms = |duration: Duration| duration.as_secs_f64() * 1e3;
    println!(
        "checkpointed process tree {} into {} ({} process(es) with rings: {:?}); stopped for {:.1} ms: \
         rings out {:.1}, criu dump {:.1}, rings back {:.1}; {}",
        args.pid,
        args.dir.display(),
        done.manifest.processes.len(),
        done.manifest
            .processes
            .iter()
            .map(|process| process.pid)
            .collect::<Vec<_>>(),
        ms(done.stopped),
        ms(done.take_out),
        ms(done.criu_dump),
        ms(done.put_back),
        if args.leave_running {
            "left running"
        } else {
            "killed by criu dump"
        },
    );
    Ok(())
}

pub fn run_restore(args: RestoreArgs) -> Result<(), CliError> {
    let criu = find_criu(args.criu.as_deref())?;
    let done = ringplan_criu::restore(&criu, &args.dir, &args.criu_args, &mut CliRings::default())
        .map_err(criu_error)?;
    let ms = |duration: Duration| duration.as_secs_f64() * 1e3;
    println!(
        "restored process tree {} ({} process(es), rings put back into {:?}) in {:.1} ms: criu restore \
         {:.1}, rings back {:.1}; running{}",
        done.root_pid,
        done.processes.len(),
        done.with_rings,
        ms(done.total - done.waited_for_ids),
        ms(done.criu_restore),
        ms(done.put_back),
        if done.waited_for_ids >= Duration::from_millis(1) {
            format!(
                " (after waiting {:.1} ms for the checkpoint's thread ids to be free)",
                ms(done.waited_for_ids)
            )
        } else {
            String::new()
        },
    );
    Ok(())
}

/// Finds criu and says which it is.
fn find_criu(explicit: Option<&Path>) -> Result<Criu, CliError> {
    // A criu that cannot be found, run or trusted is the user's to fix.
    let criu = Criu::find(explicit)
        .map_err(|error| CliError::bad_input(crate::error::with_sources(&error)))?;
    eprintln!(
        "plan: using {} (CRIU {})",
        criu.path().display(),
        criu.version()
    );
    Ok(criu)
}

fn criu_error(error: CriuError) -> CliError {
    match error {
        CriuError::NotFound
        | CriuError::VersionUnknown { .. }
        | CriuError::UntestedVersion { .. }
        | CriuError::Directory { .. } => CliError::bad_input(error),
        other => CliError::failed(crate::error::with_sources(&other)),
    }
}

/// Rings moved as `plan dump --detach` and `plan exec --pid` move them.
/// Take-outs run at once (one thread each); put-backs one after another:
/// run at once from one process (`execute_in` in two threads), a restored
/// fio job ended early, its last writes lost, in 2 of about 10 runs (the
/// shared cause was not found; `docs/performance.md`, issue 14).
#[derive(Default)]
struct CliRings {
    /// Loaded at the first take-out, before its process is stopped, and
    /// kept for the others: loading BPF while a process of the tree is
    /// already stopped would lengthen its downtime.
    dumper: Option<Dumper>,
}

impl CliRings {
    fn dumper(&mut self) -> Result<&mut Dumper, MoverError> {
        Ok(match &mut self.dumper {
            Some(dumper) => dumper,
            empty => empty.insert(Dumper::new(BackendChoice::Bpf)?),
        })
    }
}

/// One process's take-out (`plan dump --detach`); returns when it was
/// stopped.
fn take_out_with(dumper: &mut Dumper, pid: u32, image: &Path) -> Result<Instant, MoverError> {
    Ok(dump_detach::run(DetachRequest {
        pid,
        dumper,
        output: image,
        drain_timeout: DRAIN_TIMEOUT,
    })?)
}

impl RingMover for CliRings {
    fn check_kernel(&self) -> Result<(), MoverError> {
        ringplan_exec::continuity::kernel_supports_no_mmap()?;
        Ok(())
    }

    fn take_out(&mut self, pid: u32, image: &Path) -> Result<Instant, MoverError> {
        take_out_with(self.dumper()?, pid, image)
    }

    /// Each process in a thread of its own, with a dumper of its own
    /// loaded before any is stopped: each is stopped only for its own
    /// take-out, and the kernel's ring teardowns, which the take-outs wait
    /// for, run side by side.
    fn take_out_all(&mut self, processes: &[(u32, PathBuf)]) -> Vec<Result<Instant, MoverError>> {
        if processes.len() < 2 {
            return processes
                .iter()
                .map(|(pid, image)| self.take_out(*pid, image))
                .collect();
        }
        let mut dumpers = Vec::with_capacity(processes.len());
        for _ in processes {
            match Dumper::new(BackendChoice::Bpf) {
                Ok(dumper) => dumpers.push(dumper),
                Err(error) => {
                    let cause = error.to_string();
                    return processes
                        .iter()
                        .map(|_| Err(cause.clone().into()))
                        .collect();
                }
            }
        }
        std::thread::scope(|scope| {
            let running: Vec<_> = processes
                .iter()
                .zip(&mut dumpers)
                .map(|((pid, image), dumper)| {
                    scope.spawn(move || take_out_with(dumper, *pid, image))
                })
                .collect();
            running
                .into_iter()
                .map(|thread| {
                    thread
                        .join()
                        .unwrap_or_else(|_| Err("the take-out's thread panicked".into()))
                })
                .collect()
        })
    }

    fn put_back(&mut self, pid: u32, image: &Path) -> Result<(), MoverError> {
        let plan = plan_of(image)?;
        ringplan_exec::execute_in(pid, &plan, Inputs::default(), &PUT_BACK, &LEAVE_STOPPED)
            .map_err(|error| crate::error::with_sources(&error))?;
        Ok(())
    }

    fn take_out_tree(&mut self, root: u32, image: &Path) -> Result<Instant, MoverError> {
        Ok(dump_detach_tree::run(TreeDetachRequest {
            pid: root,
            dumper: self.dumper()?,
            output: image,
            drain_timeout: DRAIN_TIMEOUT,
            test_hooks: Default::default(),
        })?)
    }

    fn put_back_tree(&mut self, root: u32, image: &Path) -> Result<(), MoverError> {
        let plan = plan_of(image)?;
        ringplan_exec::execute_tree_in(root, &plan, &PUT_BACK, &LEAVE_STOPPED)
            .map_err(|error| crate::error::with_sources(&error))?;
        Ok(())
    }
}

/// How rings are put back: where their programs left them, nothing
/// substituted or allowed to move.
const PUT_BACK: ExecOptions = ExecOptions {
    substitute_external: false,
    raise_fd_limit: true,
    skip_ring_mappings: false,
    allow_moved_rings: false,
    accept_restorer_credentials: false,
};

/// Put back into stopped processes, which the caller resumes.
const LEAVE_STOPPED: ProcessOptions = ProcessOptions {
    leave_stopped: true,
};

/// The plan of the image at `image`.
fn plan_of(image: &Path) -> Result<ringplan_plan::Plan, MoverError> {
    let path = image.to_str().ok_or("the image's path is not UTF-8")?;
    Ok(ringplan_plan::compile(&read_image(path)?)?)
}
