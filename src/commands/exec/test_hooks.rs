//! `plan exec`'s hidden test flags, present only when `ringplan-exec` is
//! built with its `test-hooks` feature (the tests' builds: `cargo test`
//! turns it on through the root package's dev-dependency). In a normal
//! build there is no `--fail-at`, and [`execute`] is plain execution.
//!
//! `--fail-at N`: step N fails with `ECANCELED` before its syscall; then
//! this process's fd table and memory map are compared with what they were
//! before the run, and the error says "but the undo left changes: ..." if
//! anything differs (tests/exec.rs runs it at every step). With `--pid`,
//! the same for the process restored into, read from outside.

ringplan_exec::cfg_test_hooks! {
    use ringplan_exec::test_hooks::{
        execute_in_with_injected_failure, execute_tree_in_with_injected_failure,
        execute_with_injected_failure, InjectedFailure, ProcessState,
    };
    use ringplan_exec::{AnonymousBuffers, ExecOptions, Inputs, ProcessOptions, Restored, RestoredIn};
    use ringplan_plan::Plan;

    use crate::error::CliError;

    #[derive(clap::Args)]
    pub struct TestHookArgs {
        /// Test hook: make step N fail, then check that the undo left the fd
        /// table and the memory map exactly as they were.
        #[arg(long, hide = true, value_name = "N")]
        fail_at: Option<usize>,
        /// Test hook, with a tree plan: the step of --fail-at is that of
        /// the part at position K (0: the tree's first process).
        #[arg(long, hide = true, value_name = "K", requires = "fail_at")]
        fail_part: Option<usize>,
    }

    /// Executes `plan`; with `--fail-at N`, with step N failing, and checks
    /// the undo.
    pub fn execute(
        hooks: &TestHookArgs,
        plan: &Plan,
        inputs: Inputs,
        memory: &mut AnonymousBuffers,
        options: &ExecOptions,
        progress: &mut dyn FnMut(ringplan_exec::Progress),
    ) -> Result<Restored, CliError> {
        let Some(step) = hooks.fail_at else {
            return super::execute(plan, inputs, memory, options, progress);
        };
        let before = ProcessState::capture();
        let failure = InjectedFailure {
            step,
            errno: rustix::io::Errno::CANCELED,
        };
        execute_with_injected_failure(plan, inputs, memory, options, failure).map_err(|error| {
            let changes = before.changes_to(&ProcessState::capture());
            if changes.is_empty() {
                super::exec_error(error)
            } else {
                CliError::failed(format!(
                    "{error}; but the undo left changes: {}",
                    changes.join("; ")
                ))
            }
        })
    }

    /// Restores `plan` into process `pid`; with `--fail-at N`, with step N
    /// failing, and checks that the undo left the process's fd table and
    /// memory map as they were.
    pub fn execute_in(
        hooks: &TestHookArgs,
        pid: u32,
        plan: &Plan,
        inputs: Inputs,
        options: &ExecOptions,
        process: &ProcessOptions,
    ) -> Result<RestoredIn, CliError> {
        let Some(step) = hooks.fail_at else {
            return ringplan_exec::execute_in(pid, plan, inputs, options, process)
                .map_err(super::exec_error);
        };
        let before = ProcessState::capture_of(pid);
        let failure = InjectedFailure {
            step,
            errno: rustix::io::Errno::CANCELED,
        };
        execute_in_with_injected_failure(pid, plan, inputs, options, process, failure).map_err(
            |error| {
                let changes = before.changes_to(&ProcessState::capture_of(pid));
                if changes.is_empty() {
                    super::exec_error(error)
                } else {
                    CliError::failed(format!(
                        "{error}; but the undo left changes in process {pid}: {}",
                        changes.join("; ")
                    ))
                }
            },
        )
    }

    /// Restores tree plan `plan` into the tree of `root`; with `--fail-part
    /// K --fail-at N`, with that step failing, and checks that the undo
    /// left every process's fd table and memory map as they were.
    pub fn execute_tree_in(
        hooks: &TestHookArgs,
        root: u32,
        plan: &Plan,
        options: &ExecOptions,
        process: &ProcessOptions,
    ) -> Result<Vec<RestoredIn>, CliError> {
        let Some(step) = hooks.fail_at else {
            return ringplan_exec::execute_tree_in(root, plan, options, process)
                .map_err(super::exec_error);
        };
        let pids = ringplan_exec::test_hooks::tree_of(root);
        let before: Vec<(u32, ProcessState)> = pids
            .iter()
            .map(|&pid| (pid, ProcessState::capture_of(pid)))
            .collect();
        let failure = InjectedFailure {
            step,
            errno: rustix::io::Errno::CANCELED,
        };
        let part = hooks.fail_part.unwrap_or(0);
        execute_tree_in_with_injected_failure(root, plan, options, process, part, failure).map_err(
            |error| {
                let changes: Vec<String> = before
                    .iter()
                    .flat_map(|(pid, state)| {
                        state
                            .changes_to(&ProcessState::capture_of(*pid))
                            .into_iter()
                            .map(move |change| format!("process {pid}: {change}"))
                    })
                    .collect();
                if changes.is_empty() {
                    super::exec_error(error)
                } else {
                    CliError::failed(format!(
                        "{error}; but the undo left changes: {}",
                        changes.join("; ")
                    ))
                }
            },
        )
    }
}

ringplan_exec::cfg_no_test_hooks! {
    use ringplan_exec::{AnonymousBuffers, ExecOptions, Inputs, ProcessOptions, Restored, RestoredIn};
    use ringplan_plan::Plan;

    use crate::error::CliError;

    /// No test flags in a normal build.
    #[derive(clap::Args)]
    pub struct TestHookArgs {}

    /// Executes `plan`.
    pub fn execute(
        _hooks: &TestHookArgs,
        plan: &Plan,
        inputs: Inputs,
        memory: &mut AnonymousBuffers,
        options: &ExecOptions,
        progress: &mut dyn FnMut(ringplan_exec::Progress),
    ) -> Result<Restored, CliError> {
        super::execute(plan, inputs, memory, options, progress)
    }

    /// Restores `plan` into process `pid`.
    pub fn execute_in(
        _hooks: &TestHookArgs,
        pid: u32,
        plan: &Plan,
        inputs: Inputs,
        options: &ExecOptions,
        process: &ProcessOptions,
    ) -> Result<RestoredIn, CliError> {
        ringplan_exec::execute_in(pid, plan, inputs, options, process).map_err(super::exec_error)
    }

    /// Restores tree plan `plan` into the tree of `root`.
    pub fn execute_tree_in(
        _hooks: &TestHookArgs,
        root: u32,
        plan: &Plan,
        options: &ExecOptions,
        process: &ProcessOptions,
    ) -> Result<Vec<RestoredIn>, CliError> {
        ringplan_exec::execute_tree_in(root, plan, options, process).map_err(super::exec_error)
    }
}
