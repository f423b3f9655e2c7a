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
        if bad_input {
            CliError::BadInput(error.to_string())
        } else {
            CliError::Failed(error.to_string())
        }
    }
}
