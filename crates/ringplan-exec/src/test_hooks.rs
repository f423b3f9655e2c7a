//! Hooks for tests and benchmarks, compiled only with the `test-hooks`
//! feature: never part of a normal build's API.
//!
//! - [`execute_with_injected_failure`]: [`crate::execute`] with one step
//!   made to fail before its syscall, to test the undo (`plan exec
//!   --fail-at N` in a test build of `plan`);
//!   [`execute_in_with_injected_failure`] the same for [`crate::execute_in`].
//! - [`ProcessState`]: this process's fd table and memory map, to check
//!   that an undo left them as they were.
//! - [`run_preflighted`]: the run phase alone, for the executor's
//!   benchmark.
//! - [`room`]: moving an image's fds, buffers and ring memory out of this
//!   process's way, and unmapping what a continuous restore left mapped,
//!   for benches that restore a dumped program into themselves.
//!
//! This crate's own tests and benches get the feature through its
//! dev-dependency on itself; the `plan` binary's tests through the root
//! package's dev-dependency on this crate.

pub mod room;

use ringplan_plan::Plan;

use crate::{ExecError, ExecOptions, Inputs, MemoryHook, PreflightReport, Restored};

pub use crate::run::InjectedFailure;

/// [`crate::execute`], with step `failure.step` failing with
/// `failure.errno` before its syscall (call `"injected failure"`), so that
/// everything done before it is undone.
pub fn execute_with_injected_failure(
    plan: &Plan,
    inputs: Inputs,
    hook: &mut dyn MemoryHook,
    options: &ExecOptions,
    failure: InjectedFailure,
) -> Result<Restored, ExecError> {
    let report = crate::preflight(plan, &inputs, hook, options)?;
    crate::run::run(
        plan,
        inputs,
        hook,
        options,
        &report,
        Some(failure),
        &mut |_| {},
    )
}

/// [`crate::execute_in`], with step `failure.step` failing as in
/// [`execute_with_injected_failure`], so that everything done inside the
/// process before it is undone (`plan exec --pid PID --fail-at N`).
pub fn execute_in_with_injected_failure(
    pid: u32,
    plan: &Plan,
    inputs: Inputs,
    options: &ExecOptions,
    process: &crate::ProcessOptions,
    failure: InjectedFailure,
) -> Result<crate::RestoredIn, ExecError> {
    crate::into_process::execute_in_inner(pid, plan, inputs, options, process, Some(failure))
}

/// [`crate::execute_tree_in`], with step `failure.step` of the part at
/// position `part` (0: the tree's first process) failing, so that every
/// part run before it, in every process, is undone (`plan exec --pid ROOT
/// --fail-part K --fail-at N`).
pub fn execute_tree_in_with_injected_failure(
    root: u32,
    plan: &Plan,
    options: &ExecOptions,
    process: &crate::ProcessOptions,
    part: usize,
    failure: InjectedFailure,
) -> Result<Vec<crate::RestoredIn>, ExecError> {
    crate::into_tree::execute_tree_in_inner(root, plan, options, process, Some((part, failure)))
}

/// `root` and its descendants, parents first (for capturing a tree's
/// [`ProcessState`]s); just `root` when its children cannot be read.
pub fn tree_of(root: u32) -> Vec<u32> {
    ringplan_kernel::procfs::task::tree(root).unwrap_or_else(|_| vec![root])
}

/// The run phase of [`crate::execute`] alone, after [`crate::preflight`]
/// passed with the same plan, inputs, hook and options and nothing changed
/// since. For the executor's benchmark (run phase vs. a minimal replay).
pub fn run_preflighted(
    plan: &Plan,
    inputs: Inputs,
    hook: &mut dyn MemoryHook,
    options: &ExecOptions,
    report: &PreflightReport,
) -> Result<Restored, ExecError> {
    crate::run::run(plan, inputs, hook, options, report, None, &mut |_| {})
}

/// This process's fd table (number and link target, from `/proc/self/fd`)
/// and memory map (`/proc/self/maps` without `[heap]`, which allocations
/// move), to check an undo. The directory fd used to list the table is
/// left out; what cannot be read is left empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessState {
    fds: Vec<(String, String)>,
    maps: Vec<String>,
}

impl ProcessState {
    /// Reads this process's state now.
    pub fn capture() -> ProcessState {
        ProcessState::capture_in("/proc/self", std::process::id())
    }

    /// Reads process `pid`'s state now, from outside (what a restore into
    /// it with `execute_in` must leave as it was when it fails).
    pub fn capture_of(pid: u32) -> ProcessState {
        ProcessState::capture_in(&format!("/proc/{pid}"), pid)
    }

    fn capture_in(dir: &str, pid: u32) -> ProcessState {
        // The listing's own directory fd links to the directory it lists.
        let listing = format!("/proc/{pid}/fd");
        let mut fds: Vec<(String, String)> = std::fs::read_dir(format!("{dir}/fd"))
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|entry| {
                        let target = std::fs::read_link(entry.path()).ok()?;
                        Some((
                            entry.file_name().to_string_lossy().into_owned(),
                            target.to_string_lossy().into_owned(),
                        ))
                    })
                    .filter(|(_, target)| *target != listing)
                    .collect()
            })
            .unwrap_or_default();
        fds.sort();
        let maps = std::fs::read_to_string(format!("{dir}/maps"))
            .map(|text| {
                text.lines()
                    .filter(|line| !line.ends_with("[heap]"))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        ProcessState { fds, maps }
    }

    /// What differs in `after` from `self`, one description each: fds left
    /// open or closed, mappings left or removed. Empty when nothing does.
    pub fn changes_to(&self, after: &ProcessState) -> Vec<String> {
        let mut changes = Vec::new();
        for fd in after.fds.iter().filter(|fd| !self.fds.contains(fd)) {
            changes.push(format!("fd {} -> {} left open", fd.0, fd.1));
        }
        for fd in self.fds.iter().filter(|fd| !after.fds.contains(fd)) {
            changes.push(format!("fd {} -> {} was closed", fd.0, fd.1));
        }
        for line in after.maps.iter().filter(|line| !self.maps.contains(line)) {
            changes.push(format!("mapping {line} left"));
        }
        for line in self.maps.iter().filter(|line| !after.maps.contains(line)) {
            changes.push(format!("mapping {line} removed"));
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::ProcessState;

    #[test]
    fn a_new_fd_is_a_change_and_closing_it_undoes_it() {
        // Other tests of this binary open fds in parallel: look only at ours.
        let before = ProcessState::capture();
        let (reader, writer) = rustix::pipe::pipe().expect("pipe");
        let ours = [reader.as_raw_fd(), writer.as_raw_fd()];
        let about_ours = |changes: Vec<String>| -> Vec<String> {
            changes
                .into_iter()
                .filter(|change| {
                    ours.iter()
                        .any(|fd| change.starts_with(&format!("fd {fd} ")))
                })
                .collect()
        };
        let changes = about_ours(before.changes_to(&ProcessState::capture()));
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert!(
            changes
                .iter()
                .all(|change| change.contains("-> pipe:[") && change.ends_with("left open")),
            "{changes:?}"
        );
        drop((reader, writer));
        let changes = about_ours(before.changes_to(&ProcessState::capture()));
        assert_eq!(changes, Vec::<String>::new());
    }
}
