//! Whether every path the plan reopens still names the type of file the
//! image recorded, asked with `stat` (never `open`: opening a FIFO, or a
//! terminal without carrier, would block).

use ringplan_plan::{Op, Plan};
use rustix::fs::{statat, CWD};

use crate::error::ExecError;
use crate::reopen::{file_type_of, lookup_flags};

/// Refuses the first `open_file` step whose path cannot be looked up or
/// names another type of file than the step's (a FIFO, a directory, a
/// device where a regular file was).
pub(super) fn check_paths(plan: &Plan) -> Result<(), ExecError> {
    check_paths_but(plan, &[])
}

/// [`check_paths`] without the `open_file` steps in `adopted` (step
/// indices): the process holds those files already, and the run opens
/// nothing there (a held file's path may be gone: it may have been
/// deleted while open).
pub(super) fn check_paths_but(plan: &Plan, adopted: &[usize]) -> Result<(), ExecError> {
    for (step, entry) in plan.steps.iter().enumerate() {
        let Op::OpenFile(open) = &entry.op else {
            continue;
        };
        if adopted.contains(&step) {
            continue;
        }
        let stat = statat(CWD, open.path.as_str(), lookup_flags(open)).map_err(|errno| {
            ExecError::PathUnavailable {
                step,
                object: entry.object,
                path: open.path.clone(),
                errno,
            }
        })?;
        let found = file_type_of(&stat);
        if !open.admits(found) {
            return Err(ExecError::PathTypeChanged {
                step,
                object: entry.object,
                path: open.path.clone(),
                recorded: open.file_type,
                found,
            });
        }
    }
    Ok(())
}
