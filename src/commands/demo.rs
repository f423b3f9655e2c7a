//! `plan demo`: the whole pipeline on the seed scenario, for a first look.
//! Starts `plan app seed` as a child, dumps it, shows the objects and the
//! restore plan, stops the child, then restores the image in a fresh
//! `plan exec --verify` process and prints what matched.
//!
//! The restore runs in a process of its own because it installs objects at
//! the fds the seed process held (0, 1 and 2 among them); the seed's stdout
//! pipe is an external input, stood in for by a new pipe
//! (`--substitute-external`), which the verification reports as such.

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
    let exe = std::env::current_exe()
        .map_err(|error| CliError::failed(format!("finding this program: {error}")))?;
    let child = Command::new(&exe)
        .args(["app", "seed"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|error| CliError::failed(format!("starting `plan app seed`: {error}")))?;
    let mut scenario = ScenarioProcess(child);
    let stdout = scenario
        .0
        .stdout
        .take()
        .ok_or_else(|| CliError::failed("the scenario's stdout is missing"))?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|error| {
            CliError::failed(format!("reading the scenario's description: {error}"))
        })?;
    let description: serde_json::Value = serde_json::from_str(&line).map_err(|error| {
        CliError::failed(format!(
            "the scenario's description is not JSON ({error}): {line:?}"
        ))
    })?;
    let pid = description["pid"]
        .as_u64()
        .and_then(|pid| u32::try_from(pid).ok())
        .ok_or_else(|| {
            CliError::failed(format!("the scenario's description has no pid: {line:?}"))
        })?;

    print_text(&format!("== plan app seed: {}\n", line.trim_end()))?;
    let mut dumper = Dumper::new(BackendChoice::Auto)?;
    let dump = dumper.dump(pid, Selection::All)?;
    for warning in &dump.warnings {
        eprintln!("plan: warning: {warning}");
    }
    let bytes = ringplan_image::encode_to_vec(&dump.image).map_err(CliError::failed)?;
    print_text(&format!(
        "\n== plan dump --pid {pid}: {} bytes of CBOR\n",
        bytes.len()
    ))?;
    print_text(&format!(
        "\n== plan show --objects\n{}",
        ringplan_image::view::to_text(&dump.image)
    ))?;
    let plan = ringplan_plan::compile(&dump.image).map_err(CliError::failed)?;
    print_text(&format!("\n== plan show\n{}", plan.to_text()))?;
    drop(scenario);

    let image_path = std::env::temp_dir().join(format!("ringplan-demo-{}.img", std::process::id()));
    std::fs::write(&image_path, &bytes)
        .map_err(|error| CliError::failed(format!("writing {}: {error}", image_path.display())))?;
    // Where the kernel cannot place ring memory (before Linux 6.5), the
    // demo restores the rings as kernel objects and says so.
    let moved: &[&str] = match ringplan_exec::continuity::kernel_supports_no_mmap() {
        Ok(()) => &[],
        Err(_) => &["--allow-moved-rings"],
    };
    print_text(&format!(
        "\n== plan exec IMAGE --substitute-external --verify{}\n",
        moved
            .iter()
            .map(|flag| format!(" {flag}"))
            .collect::<String>()
    ))?;
    let restore = Command::new(&exe)
        .arg("exec")
        .arg(&image_path)
        .args(["--substitute-external", "--verify"])
        .args(moved)
        .stdin(Stdio::null())
        .output();
    let _ = std::fs::remove_file(&image_path);
    let restore =
        restore.map_err(|error| CliError::failed(format!("starting `plan exec`: {error}")))?;
    print_text(&String::from_utf8_lossy(&restore.stdout))?;
    eprint!("{}", String::from_utf8_lossy(&restore.stderr));
    if !restore.status.success() {
        return Err(CliError::failed(format!(
            "the restore did not verify ({})",
            restore.status
        )));
    }
    Ok(())
}
