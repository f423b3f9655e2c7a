//! The C programs under `tests/programs/` that the tests and benchmarks run
//! as real io_uring processes (liburing), built with the system's `cc`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Why a program under `tests/programs/` could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The cause is in the message, so it is not also a `source`.
    #[error("running cc for {program}: {cause} (scripts/deps installs cc)")]
    Spawn {
        program: String,
        cause: std::io::Error,
    },
    #[error("building {program} failed (needs cc and liburing-dev):\n{stderr}")]
    Compile { program: String, stderr: String },
}

/// Builds `tests/programs/NAME.c` into `out_dir/NAME` (`cc -O2 -Wall`,
/// linked with liburing and pthreads) and returns the binary's path.
pub fn build(name: &str, out_dir: &Path) -> Result<PathBuf, BuildError> {
    let source_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/programs")
        .join(format!("{name}.c"));
    let binary = out_dir.join(name);
    let program = source_path.display().to_string();
    let output = Command::new("cc")
        .args(["-O2", "-Wall", "-o"])
        .arg(&binary)
        .arg(&source_path)
        .args(["-luring", "-lpthread"])
        .output()
        .map_err(|cause| BuildError::Spawn {
            program: program.clone(),
            cause,
        })?;
    if !output.status.success() {
        return Err(BuildError::Compile {
            program,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(binary)
}
