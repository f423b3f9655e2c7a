//! `plan dump`: read a live process's io_uring state into an image.

use std::path::PathBuf;

use ringplan_dump::{BackendChoice, DumpOptions, FreezeMethod, Selection};

use crate::commands::{refuse_binary_to_terminal, write_output};
use crate::error::CliError;

#[derive(clap::Args)]
pub struct DumpArgs {
    /// The process to dump.
    #[arg(long)]
    pid: u32,
    /// Dump only the ring at this fd (repeatable), plus what it depends on.
    #[arg(long = "fd", value_name = "FD")]
    fds: Vec<i32>,
    /// How to read the kernel's state.
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    backend: BackendArg,
    /// Hold the target still while it is read: `cgroup` (its cgroup's
    /// freezer; only when it is alone there), `signal` (SIGSTOP/SIGCONT),
    /// or `auto` (cgroup when it can, else signal; the default with a bare
    /// --freeze). It is let go before the image is written, also when the
    /// dump fails or ringplan is killed.
    #[arg(long, value_enum, value_name = "METHOD", num_args = 0..=1, default_missing_value = "auto")]
    freeze: Option<FreezeArg>,
    /// Dump PID and every process descended from it into one image, in
    /// which a ring, eventfd or file several processes hold is one object
    /// (its `holders` say who holds it at which fds). With --freeze every
    /// process is held before the first read and let go after the last.
    #[arg(long, conflicts_with = "fds")]
    tree: bool,
    /// Write the image here instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Take every io_uring instance out of the process after dumping it,
    /// and leave it stopped (SIGSTOP): requests in flight are drained
    /// first (a dump with requests that do not complete is refused, naming
    /// them, and the process resumed untouched); the image is written and
    /// fsynced before anything is closed. Needs -o and the BPF backend.
    /// With --tree: every process of the tree is stopped before anything is
    /// read, the rings of all of them drained (a shared ring once), one
    /// tree image written, then every ring taken out of every process,
    /// and every process left stopped; a refusal leaves the whole tree as
    /// found.
    #[arg(long, requires = "output", conflicts_with_all = ["freeze", "fds"])]
    detach: bool,
    /// With --detach: how long to wait for requests in flight to complete.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 5.0,
        requires = "detach"
    )]
    drain_timeout: f64,
    /// Hidden flags of test builds only (`--fail-take-out-in`).
    #[command(flatten)]
    test_hooks: crate::commands::dump_test_hooks::TestHookArgs,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum BackendArg {
    /// BPF, or fdinfo (with a warning) when BPF cannot load.
    Auto,
    /// BPF only: fail if it cannot load.
    Bpf,
    /// /proc/PID/fdinfo: setup flags, SQ idle and the eventfd are unknown.
    Fdinfo,
}

/// How `--freeze` holds the target (see [`FreezeMethod`]).
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum FreezeArg {
    Auto,
    Cgroup,
    Signal,
}

impl From<FreezeArg> for FreezeMethod {
    fn from(arg: FreezeArg) -> FreezeMethod {
        match arg {
            FreezeArg::Auto => FreezeMethod::Auto,
            FreezeArg::Cgroup => FreezeMethod::Cgroup,
            FreezeArg::Signal => FreezeMethod::Signal,
        }
    }
}

pub fn run(args: DumpArgs) -> Result<(), CliError> {
    refuse_binary_to_terminal(args.output.as_deref(), "image")?;
    let choice = match args.backend {
        BackendArg::Auto => BackendChoice::Auto,
        BackendArg::Bpf => BackendChoice::Bpf,
        BackendArg::Fdinfo => BackendChoice::Fdinfo,
    };
    if args.detach {
        let timeout = std::time::Duration::try_from_secs_f64(args.drain_timeout).map_err(|_| {
            CliError::bad_input(format!(
                "--drain-timeout {} is not a number of seconds",
                args.drain_timeout
            ))
        })?;
        let Some(output) = args.output.as_deref() else {
            return Err(CliError::bad_input("--detach needs -o IMAGE"));
        };
        // No such process, or no rights over it: said before BPF loads.
        ringplan_dump::Target::open(args.pid).map_err(ringplan_dump::DumpError::from)?;
        let mut dumper = ringplan_dump::Dumper::new(choice)?;
        if args.tree {
            return crate::commands::dump_detach_tree::run(
                crate::commands::dump_detach_tree::TreeDetachRequest {
                    pid: args.pid,
                    dumper: &mut dumper,
                    output,
                    drain_timeout: timeout,
                    test_hooks: args.test_hooks,
                },
            )
            .map(drop);
        }
        return crate::commands::dump_detach::run(crate::commands::dump_detach::DetachRequest {
            pid: args.pid,
            dumper: &mut dumper,
            output,
            drain_timeout: timeout,
        })
        .map(|_stopped_at| ());
    }
    let selection = if args.fds.is_empty() {
        Selection::All
    } else {
        Selection::RingFds(&args.fds)
    };
    // ringplan_dump::dump opens the target before loading BPF: a caller
    // without ptrace rights over it (or a pid that is no process) is told so
    // on one line, before libbpf, refused, prints lines of its own.
    let options = DumpOptions {
        selection,
        backend: choice,
        freeze: args.freeze.map(FreezeMethod::from),
    };
    let dump = if args.tree {
        ringplan_dump::dump_tree(
            args.pid,
            ringplan_dump::TreeOptions {
                backend: choice,
                freeze: options.freeze,
            },
        )?
    } else {
        ringplan_dump::dump_with(args.pid, options)?
    };
    for warning in &dump.warnings {
        eprintln!("plan: warning: {warning}");
    }
    if let Some(held) = &dump.held {
        eprintln!(
            "plan: pid {}{} held still for {:.1} ms by {}",
            args.pid,
            if args.tree {
                " and its descendants were"
            } else {
                " was"
            },
            held.duration.as_secs_f64() * 1e3,
            held.by
        );
    }
    // A plan compiles only for a notice here: an image that does not
    // compile is still written, and `plan show` says why.
    if let Some(notice) = ringplan_plan::compile(&dump.image)
        .ok()
        .and_then(|plan| crate::commands::slow_restore_notice(&plan))
    {
        eprintln!("{notice}");
    }
    let bytes = ringplan_image::encode_to_vec(&dump.image).map_err(CliError::failed)?;
    write_output(args.output.as_deref(), &bytes, "image")
}
