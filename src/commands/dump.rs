//! `plan dump`: read a live process's io_uring state into an image.

use std::path::PathBuf;

use ringplan_dump::{BackendChoice, Selection};

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
    /// Write the image here instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
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

pub fn run(args: DumpArgs) -> Result<(), CliError> {
    refuse_binary_to_terminal(args.output.as_deref(), "image")?;
    let choice = match args.backend {
        BackendArg::Auto => BackendChoice::Auto,
        BackendArg::Bpf => BackendChoice::Bpf,
        BackendArg::Fdinfo => BackendChoice::Fdinfo,
    };
    let selection = if args.fds.is_empty() { Selection::All } else { Selection::RingFds(&args.fds) };
    // ringplan_dump::dump opens the target before loading BPF: a caller
    // without ptrace rights over it (or a pid that is no process) is told so
    // on one line, before libbpf, refused, prints lines of its own.
    let dump = ringplan_dump::dump(args.pid, selection, choice)?;
    for warning in &dump.warnings {
        eprintln!("plan: warning: {warning}");
    }
    let bytes = ringplan_image::encode_to_vec(&dump.image).map_err(CliError::failed)?;
    write_output(args.output.as_deref(), &bytes, "image")
}
