//! `plan`: the ringplan command line. It defines the interface and glues the
//! library crates together; every decision about io_uring lives in them.
//!
//! Exit status: 0 on success, 2 for bad input (arguments, images, plans,
//! fds or pids that are not what they must be), 1 when the system fails us
//! (BPF, permissions, I/O). Errors are one line on stderr.

mod commands;
mod error;
mod input;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::error::CliError;

#[derive(Parser)]
#[command(
    name = "plan",
    version,
    about = "Checkpoint and restore io_uring state: dump, plan, exec"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Dump a live process's io_uring state as a CBOR image.
    Dump(commands::dump::DumpArgs),
    /// Print an image's objects, or the restore plan of an image or plan.
    Show(commands::show::ShowArgs),
    /// Compile an image into a CBOR restore plan.
    Compile(commands::compile::CompileArgs),
    /// Restore an image or plan into this process (preflight, run, undo on
    /// failure); --verify, --hold, --dry-run.
    Exec(commands::exec::ExecArgs),
    /// Hold a process still (cgroup freezer or SIGSTOP) while a command
    /// runs, then let it go, also if plan is killed; exits with the
    /// command's status.
    Freeze(commands::freeze::FreezeArgs),
    /// Checkpoint a process tree that uses io_uring with CRIU: its rings
    /// taken out (as by dump --detach), then criu dump.
    Checkpoint(commands::checkpoint::CheckpointArgs),
    /// Restore what `plan checkpoint` wrote: criu restore, then the rings
    /// put back into each process (as by exec --pid), then resume.
    Restore(commands::checkpoint::RestoreArgs),
    /// Build a known io_uring state, print it as one JSON line, and wait for
    /// SIGTERM or SIGINT.
    App(commands::app::AppArgs),
    /// Start the seed scenario, dump it, show its objects and restore plan,
    /// restore it with --verify and print what matched.
    Demo,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // clap prints help and version to stdout with success; usage
            // errors are bad input.
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let result = match cli.command {
        Command::Dump(args) => commands::dump::run(args),
        Command::Show(args) => commands::show::run(args),
        Command::Compile(args) => commands::compile::run(args),
        Command::Exec(args) => commands::exec::run(args),
        Command::Freeze(args) => commands::freeze::run(args),
        Command::Checkpoint(args) => commands::checkpoint::run_checkpoint(args),
        Command::Restore(args) => commands::checkpoint::run_restore(args),
        Command::App(args) => commands::app::run(args),
        Command::Demo => commands::demo::run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::BrokenPipe) => ExitCode::SUCCESS,
        Err(CliError::CommandStatus(status)) => ExitCode::from(status),
        Err(error) => {
            eprintln!("plan: error: {error}");
            ExitCode::from(error.exit_status())
        }
    }
}
