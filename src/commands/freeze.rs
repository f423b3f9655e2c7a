//! `plan freeze`: hold a process still while a command runs, then let it
//! go. For checkpoint pipelines that read a process with several tools
//! (ringplan for its rings, another for its memory) and need them all to
//! see one state. The command shares the hold lock (`RINGPLAN_HOLD_LOCK`,
//! `ringplan_kernel::hold_lock`), so a `plan exec --pid` or a `plan dump
//! --freeze` of the same process inside it runs at once, finds the process
//! stopped and leaves it stopped; `plan freeze` lets it go afterwards.

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};

use ringplan_dump::hold_lock::DELEGATE_ENV;
use ringplan_dump::{DumpError, Frozen, Target};

use crate::commands::dump::FreezeArg;
use crate::error::CliError;

#[derive(clap::Args)]
pub struct FreezeArgs {
    /// The process to hold still.
    #[arg(long)]
    pid: u32,
    /// `cgroup` (its cgroup's freezer; only when it is alone there),
    /// `signal` (SIGSTOP/SIGCONT), or `auto`: cgroup when it can, else
    /// signal.
    #[arg(long, value_enum, default_value_t = FreezeArg::Auto)]
    method: FreezeArg,
    /// The command to run while the process is held, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

pub fn run(args: FreezeArgs) -> Result<(), CliError> {
    let (program, arguments) = args
        .command
        .split_first()
        .ok_or_else(|| CliError::bad_input("no command given"))?;
    // A command that cannot run is bad input: say so before the target is
    // touched, not after holding it for nothing.
    let program = find_program(program).ok_or_else(|| {
        CliError::bad_input(format!(
            "cannot run {}: no such executable",
            program.to_string_lossy()
        ))
    })?;
    let target = Target::open(args.pid).map_err(|error| CliError::from(DumpError::from(error)))?;
    let frozen = Frozen::hold(&target, args.method.into())
        .map_err(|error| CliError::from(DumpError::from(error)))?;
    eprintln!(
        "plan: pid {} is held still by {}",
        args.pid,
        frozen.held_by()
    );
    // The command shares the hold (a `plan exec --pid` or `--freeze` of
    // the same process in it must not wait for us): it inherits an fd of
    // the lock, named in its environment, which we close once it started.
    let mut command = std::process::Command::new(&program);
    command.args(arguments);
    let handed = frozen.lock().delegate().ok();
    if let Some((_, value)) = &handed {
        command.env(DELEGATE_ENV, value);
    }
    let child = command.spawn();
    drop(handed);
    let status = child.and_then(|mut child| child.wait());
    let held_for = frozen
        .release()
        .map_err(|error| CliError::from(DumpError::from(error)))?;
    eprintln!(
        "plan: pid {} let go after {:.1} ms",
        args.pid,
        held_for.as_secs_f64() * 1e3
    );
    let status = status
        .map_err(|error| CliError::failed(format!("running {}: {error}", program.display())))?;
    // A command killed by a signal ends like a shell would say: 128 + signal.
    let code = status
        .code()
        .or_else(|| status.signal().map(|signal| 128 + signal))
        .unwrap_or(1);
    match u8::try_from(code) {
        Ok(0) => Ok(()),
        Ok(code) => Err(CliError::CommandStatus(code)),
        Err(_) => Err(CliError::CommandStatus(1)),
    }
}

/// The executable `program` names: itself when it has a `/`, else the first
/// match on `PATH`, as `execvp` would find it.
fn find_program(program: &OsStr) -> Option<PathBuf> {
    let is_executable = |path: &Path| {
        path.metadata()
            .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
    };
    if program.as_encoded_bytes().contains(&b'/') {
        let path = PathBuf::from(program);
        return is_executable(&path).then_some(path);
    }
    let search = std::env::var_os("PATH")?;
    std::env::split_paths(&search)
        .map(|dir| dir.join(program))
        .find(|path| is_executable(path))
}
