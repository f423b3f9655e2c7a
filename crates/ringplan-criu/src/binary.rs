//! The `criu` binary: where it is, which version it is (a version ringplan
//! was not tested with is refused), and running `criu dump` and `criu
//! restore` with their logs in the images directory.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::CriuError;

/// The CRIU versions the checkpoint and restore tests ran with.
pub const TESTED_VERSIONS: &[&str] = &["4.1.1"];

/// The log `criu dump` writes into the images directory.
pub const DUMP_LOG: &str = "criu-dump.log";
/// The log `criu restore` writes into the images directory.
pub const RESTORE_LOG: &str = "criu-restore.log";
/// Where `criu restore` writes the pid of the restored tree's root.
pub const RESTORE_PIDFILE: &str = "criu-restore.pid";

/// A `criu` binary of a tested version.
#[derive(Debug, Clone)]
pub struct Criu {
    path: PathBuf,
    version: String,
}

impl Criu {
    /// `explicit`, or `criu` on `PATH` (and in `/usr/local/sbin` and
    /// `/usr/sbin`, where it is installed but a user's `PATH` may not
    /// look); refuses one whose version is not in [`TESTED_VERSIONS`].
    pub fn find(explicit: Option<&Path>) -> Result<Criu, CriuError> {
        let path = match explicit {
            Some(path) => path.to_path_buf(),
            None => search_path().ok_or(CriuError::NotFound)?,
        };
        let output = Command::new(&path)
            .arg("--version")
            .output()
            .map_err(|source| CriuError::Spawn {
                path: path.clone(),
                source,
            })?;
        let text = String::from_utf8_lossy(&output.stdout);
        let version = text
            .lines()
            .find_map(|line| line.strip_prefix("Version:"))
            .map(|version| version.trim().to_owned())
            .filter(|version| !version.is_empty())
            .ok_or_else(|| CriuError::VersionUnknown {
                path: path.clone(),
                output: text.trim().to_owned(),
            })?;
        if !TESTED_VERSIONS.contains(&version.as_str()) {
            return Err(CriuError::UntestedVersion {
                path,
                version,
                tested: TESTED_VERSIONS.join(", "),
            });
        }
        Ok(Criu { path, version })
    }

    /// The binary.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its version (`criu --version`).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// `criu dump -t PID -D DIR -o criu-dump.log [--leave-running] ARGS`.
    pub fn dump(
        &self,
        pid: u32,
        dir: &Path,
        leave_running: bool,
        args: &[String],
    ) -> Result<(), CriuError> {
        let mut command = Command::new(&self.path);
        command
            .arg("dump")
            .arg("-t")
            .arg(pid.to_string())
            .arg("-D")
            .arg(dir)
            .arg("-o")
            .arg(DUMP_LOG);
        if leave_running {
            command.arg("--leave-running");
        }
        self.run(command.args(args), "dump", &dir.join(DUMP_LOG))
    }

    /// `criu restore -D DIR -o criu-restore.log --leave-stopped
    /// --restore-detached --pidfile criu-restore.pid ARGS`: the restored
    /// tree's root pid. The tree is left stopped.
    pub fn restore(&self, dir: &Path, args: &[String]) -> Result<u32, CriuError> {
        let pidfile = dir.join(RESTORE_PIDFILE);
        let _ = std::fs::remove_file(&pidfile);
        let mut command = Command::new(&self.path);
        command
            .arg("restore")
            .arg("-D")
            .arg(dir)
            .arg("-o")
            .arg(RESTORE_LOG)
            .arg("--leave-stopped")
            .arg("--restore-detached")
            .arg("--pidfile")
            .arg(&pidfile)
            .args(args);
        self.run(&mut command, "restore", &dir.join(RESTORE_LOG))?;
        let text = std::fs::read_to_string(&pidfile).map_err(|source| CriuError::Pidfile {
            path: pidfile.clone(),
            source: Some(source),
        })?;
        text.trim().parse().map_err(|_| CriuError::Pidfile {
            path: pidfile,
            source: None,
        })
    }

    fn run(
        &self,
        command: &mut Command,
        action: &'static str,
        log: &Path,
    ) -> Result<(), CriuError> {
        let output = command.output().map_err(|source| CriuError::Spawn {
            path: self.path.clone(),
            source,
        })?;
        if output.status.success() {
            return Ok(());
        }
        Err(CriuError::Failed {
            action,
            status: output.status.to_string(),
            log: log.to_path_buf(),
            last_error: error_line(log, &output.stderr),
        })
    }
}

/// The first place `criu` is found.
fn search_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin"].map(PathBuf::from))
        .map(|dir| dir.join("criu"))
        .find(|candidate| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(candidate)
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
}

/// The first `Error` line of criu's log (or of its stderr) that says what
/// failed: what a user reads first. CRIU ends every failure with a generic
/// "Restoring FAILED." / "Dumping FAILED.", and prints an RLIMIT_NOFILE
/// error on every run here (it may not raise its own fd limit), failing or
/// not: neither says why.
fn error_line(log: &Path, stderr: &[u8]) -> String {
    let log_text = std::fs::read_to_string(log).unwrap_or_default();
    let stderr = String::from_utf8_lossy(stderr);
    let errors: Vec<&str> = log_text
        .lines()
        .chain(stderr.lines())
        .map(str::trim)
        .filter(|line| line.contains("Error (") || line.starts_with("Error"))
        .filter(|line| !line.contains("Can't setup RLIMIT_NOFILE for self"))
        .collect();
    errors
        .iter()
        .find(|line| !line.contains("FAILED."))
        .or_else(|| errors.last())
        .copied()
        .unwrap_or("no error line in the log")
        .to_owned()
}
