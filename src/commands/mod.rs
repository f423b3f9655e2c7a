//! One module per subcommand.

pub mod app;
pub mod compile;
pub mod demo;
pub mod dump;
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
