//! `plan exec`'s hidden test flags, present only when `ringplan-exec` is
//! built with its `test-hooks` feature (the tests' builds: `cargo test`
//! turns it on through the root package's dev-dependency). In a normal
//! build there is no `--fail-at`, and [`execute`] is plain execution.
//!
//! `--fail-at N`: step N fails with `ECANCELED` before its syscall; then
//! this process's fd table and memory map are compared with what they were
//! before the run, and the error says "but the undo left changes: ..." if
//! anything differs (tests/exec.rs runs it at every step).

ringplan_exec::cfg_test_hooks! {
    use ringplan_exec::test_hooks::{execute_with_injected_failure, InjectedFailure, ProcessState};
    use ringplan_exec::{AnonymousBuffers, ExecOptions, Inputs, Restored};
    use ringplan_plan::Plan;

    use crate::error::CliError;

    #[derive(clap::Args)]
    pub struct TestHookArgs {
        /// Test hook: make step N fail, then check that the undo left the fd
        /// table and the memory map exactly as they were.
        #[arg(long, hide = true, value_name = "N")]
        fail_at: Option<usize>,
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
}

ringplan_exec::cfg_no_test_hooks! {
    use ringplan_exec::{AnonymousBuffers, ExecOptions, Inputs, Restored};
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
}
