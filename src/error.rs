//! The CLI's one error type: what to print and which exit status to give.

/// An error the CLI reports on one line.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The input is wrong: exit status 2.
    #[error("{0}")]
    BadInput(String),
    /// The system failed: exit status 1.
    #[error("{0}")]
    Failed(String),
    /// The reader of our stdout went away: not an error for a CLI.
    #[error("broken pipe")]
    BrokenPipe,
    /// A command `plan` ran for the user ended with this status, which
    /// becomes `plan`'s own (nothing more to print).
    #[error("the command exited with status {0}")]
    CommandStatus(u8),
}

impl CliError {
    pub fn exit_status(&self) -> u8 {
        match self {
            CliError::BadInput(_) => 2,
            CliError::Failed(_) => 1,
            CliError::BrokenPipe => 0,
            CliError::CommandStatus(status) => *status,
        }
    }

    pub fn bad_input(message: impl std::fmt::Display) -> CliError {
        CliError::BadInput(message.to_string())
    }

    pub fn failed(message: impl std::fmt::Display) -> CliError {
        CliError::Failed(message.to_string())
    }

    /// An error writing output: a closed pipe is not worth a message.
    pub fn output(what: &str, error: std::io::Error) -> CliError {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            CliError::BrokenPipe
        } else {
            CliError::Failed(format!("writing {what}: {error}"))
        }
    }
}

impl From<ringplan_dump::DumpError> for CliError {
    fn from(error: ringplan_dump::DumpError) -> Self {
        use ringplan_dump::{AssembleError, DumpError, FreezeError, TargetError};
        let bad_input = matches!(
            error,
            DumpError::Target(
                TargetError::InvalidPid { .. }
                    | TargetError::NoSuchProcess { .. }
                    | TargetError::Exited { .. }
            ) | DumpError::Assemble(
                AssembleError::NoSuchFd { .. } | AssembleError::NotARing { .. }
            ) | DumpError::Freeze(FreezeError::CgroupUnusable { .. })
        );
        let message = with_sources(&error);
        if bad_input {
            CliError::BadInput(message)
        } else {
            CliError::Failed(message)
        }
    }
}

/// `error`'s message followed by each of its sources' messages, `: `
/// between them: the one line the CLI prints for a library error that keeps
/// its cause as its source. A source whose message already ends the line
/// (from an error that prints its cause itself) is not repeated.
pub(crate) fn with_sources(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringplan_dump::{BpfError, DumpError, TargetError};

    fn enoent() -> std::io::Error {
        std::io::Error::from_raw_os_error(libc::ENOENT)
    }

    /// The line a dump error prints has each cause once, whether the error
    /// keeps its cause as its source only (BpfError) or prints it too
    /// (TargetError::Open).
    #[test]
    fn dump_errors_print_each_cause_once() {
        let bpf = DumpError::from(BpfError::Io {
            what: "reading /proc/self/fdinfo/7".into(),
            source: enoent(),
        });
        assert_eq!(
            CliError::from(bpf).to_string(),
            "BPF backend: reading /proc/self/fdinfo/7: No such file or directory (os error 2)"
        );
        let target = DumpError::from(TargetError::Open {
            pid: 7,
            cause: enoent(),
        });
        assert_eq!(
            CliError::from(target).to_string(),
            "opening pid 7: No such file or directory (os error 2)"
        );
    }
}
