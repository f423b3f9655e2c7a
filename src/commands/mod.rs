//! One module per subcommand.

pub mod app;
pub mod checkpoint;
pub mod compile;
pub mod demo;
pub mod dump;
pub mod dump_detach;
pub mod dump_detach_tree;
pub mod dump_test_hooks;
pub mod exec;
pub mod freeze;
pub mod show;

use std::io::{IsTerminal, Write};
use std::path::Path;

use crate::error::CliError;

/// Writes binary `bytes` to `output`, or to stdout when there is none;
/// refuses a terminal before anything was done.
pub fn refuse_binary_to_terminal(output: Option<&Path>, what: &str) -> Result<(), CliError> {
    if output.is_none() && std::io::stdout().is_terminal() {
        return Err(CliError::bad_input(format!(
            "refusing to write a binary {what} to a terminal; use -o FILE or redirect stdout"
        )));
    }
    Ok(())
}

/// Writes `bytes` to `output` (a file), or to stdout.
pub fn write_output(output: Option<&Path>, bytes: &[u8], what: &str) -> Result<(), CliError> {
    match output {
        Some(path) => std::fs::write(path, bytes).map_err(|error| {
            CliError::failed(format!("writing {what} to {}: {error}", path.display()))
        }),
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(bytes)
                .and_then(|()| stdout.flush())
                .map_err(|error| CliError::output(what, error))
        }
    }
}

/// Writes text to stdout.
pub fn print_text(text: &str) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|error| CliError::output("output", error))
}

/// The one-line notice `plan dump` and `plan show` print (on stderr) when
/// restoring `plan` will take more than a second, most of it moving ring
/// positions with NOPs; `None` otherwise.
pub fn slow_restore_notice(plan: &ringplan_plan::Plan) -> Option<String> {
    let estimate = plan.estimated_position_time();
    if estimate <= std::time::Duration::from_secs(1) {
        return None;
    }
    let positions: u64 = plan
        .steps
        .iter()
        .filter_map(|step| match &step.op {
            ringplan_plan::Op::RestoreCompletions(restore) => Some(restore.positions_to_move()),
            _ => None,
        })
        .sum();
    Some(format!(
        "plan: notice: restoring this will take about {:.0} s: {positions} ring positions are moved with NOPs \
         (the kernel has no call that sets them)",
        estimate.as_secs_f64().ceil()
    ))
}
