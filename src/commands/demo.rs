//! `plan demo`: the whole pipeline on the seed scenario, for a first look.
//! Starts `plan app seed` as a child, dumps it, shows the objects and the
//! restore plan, and stops the child.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use ringplan_dump::{BackendChoice, Dumper, Selection};

use crate::commands::print_text;
use crate::error::CliError;

/// Stops the scenario process however the demo ends.
struct ScenarioProcess(Child);

impl Drop for ScenarioProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn run() -> Result<(), CliError> {
    let exe = std::env::current_exe().map_err(|error| CliError::failed(format!("finding this program: {error}")))?;
    let child = Command::new(exe)
        .args(["app", "seed"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|error| CliError::failed(format!("starting `plan app seed`: {error}")))?;
    let mut scenario = ScenarioProcess(child);
    let stdout = scenario.0.stdout.take().ok_or_else(|| CliError::failed("the scenario's stdout is missing"))?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|error| CliError::failed(format!("reading the scenario's description: {error}")))?;
    let description: serde_json::Value = serde_json::from_str(&line)
        .map_err(|error| CliError::failed(format!("the scenario's description is not JSON ({error}): {line:?}")))?;
    let pid = description["pid"]
        .as_u64()
        .and_then(|pid| u32::try_from(pid).ok())
        .ok_or_else(|| CliError::failed(format!("the scenario's description has no pid: {line:?}")))?;

    print_text(&format!("== plan app seed: {}\n", line.trim_end()))?;
    let mut dumper = Dumper::new(BackendChoice::Auto)?;
    let dump = dumper.dump(pid, Selection::All)?;
    for warning in &dump.warnings {
        eprintln!("plan: warning: {warning}");
    }
    let bytes = ringplan_image::encode_to_vec(&dump.image).map_err(CliError::failed)?;
    print_text(&format!("\n== plan dump --pid {pid}: {} bytes of CBOR\n", bytes.len()))?;
    print_text(&format!("\n== plan show --objects\n{}", ringplan_image::view::to_text(&dump.image)))?;
    let plan = ringplan_plan::compile(&dump.image).map_err(CliError::failed)?;
    print_text(&format!("\n== plan show\n{}", plan.to_text()))?;
    Ok(())
}
