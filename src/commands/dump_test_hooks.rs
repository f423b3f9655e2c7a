//! `plan dump`'s hidden test flags, present only when `ringplan-exec` is
//! built with its `test-hooks` feature (the tests' builds, as `plan exec
//! --fail-at`). In a normal build there is none, and [`apply`] changes
//! nothing.
//!
//! `--fail-take-out-in PID` (with `--tree --detach`): taking the rings out
//! of process PID fails after its ring fds are closed and before its ring
//! regions are unmapped (`detach::Teardown::fail_before_unmapping_in`), so
//! that the report of a take-out that failed half-way, and the state each
//! process is left in, are tested against real processes
//! (`tests/detach_tree.rs`).

ringplan_exec::cfg_test_hooks! {
    use ringplan_exec::detach::Teardown;

    #[derive(clap::Args, Clone, Copy, Default)]
    pub struct TestHookArgs {
        /// Test hook: make the take-out fail in this process after its
        /// ring fds are closed, before its ring regions are unmapped.
        #[arg(long, hide = true, value_name = "PID", requires_all = ["detach", "tree"])]
        fail_take_out_in: Option<u32>,
    }

    /// Puts the hooks asked for into `teardown`.
    pub fn apply(hooks: TestHookArgs, teardown: &mut Teardown) {
        teardown.fail_before_unmapping_in = hooks.fail_take_out_in;
    }
}

ringplan_exec::cfg_no_test_hooks! {
    use ringplan_exec::detach::Teardown;

    /// No test flags in a normal build.
    #[derive(clap::Args, Clone, Copy, Default)]
    pub struct TestHookArgs {}

    /// Changes nothing.
    pub fn apply(_hooks: TestHookArgs, _teardown: &mut Teardown) {}
}
