//! The progress bar of a long restore: moving a ring's positions far from
//! 0 takes NOPs by the million. Shown only when stderr is a terminal that
//! the plan leaves alone (a plan that installs onto fd 2 owns that number
//! during the run) and a step is expected to take a second or more
//! (`Plan::estimated_step_time`); nothing otherwise.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ringplan_exec::Progress;
use ringplan_plan::Plan;

/// How long a step must be expected to take before it gets a bar
/// (`Plan::estimated_step_time`).
const BAR_THRESHOLD: Duration = Duration::from_secs(1);

/// The bar of the step in progress, if it has one.
pub struct RestoreProgress {
    enabled: bool,
    /// The steps expected to take a second or more.
    long_steps: BTreeSet<usize>,
    bar: Option<(usize, ProgressBar)>,
}

impl RestoreProgress {
    /// Draws on stderr, for the long steps of `plan`, when stderr is a
    /// terminal and `stderr_moved` is false.
    pub fn on_terminal(plan: &Plan, stderr_moved: bool) -> RestoreProgress {
        let long_steps = (0..plan.steps.len())
            .filter(|&index| {
                plan.estimated_step_time(index)
                    .is_some_and(|estimate| estimate >= BAR_THRESHOLD)
            })
            .collect();
        RestoreProgress {
            enabled: !stderr_moved && std::io::stderr().is_terminal(),
            long_steps,
            bar: None,
        }
    }

    /// Takes one report of [`ringplan_exec::execute_with_progress`].
    pub fn report(&mut self, progress: Progress) {
        if !self.enabled || !self.long_steps.contains(&progress.step) {
            return;
        }
        if self
            .bar
            .as_ref()
            .is_none_or(|(step, _)| *step != progress.step)
        {
            let bar =
                ProgressBar::with_draw_target(Some(progress.total), ProgressDrawTarget::stderr());
            if let Ok(style) =
                ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} positions, {eta} left")
            {
                bar.set_style(style.progress_chars("=> "));
            }
            let ring = progress
                .ring
                .map_or_else(String::new, |ring| format!(" {ring}"));
            bar.set_message(format!("step {}: ring{ring}", progress.step));
            self.bar = Some((progress.step, bar));
        }
        if let Some((_, bar)) = &self.bar {
            bar.set_position(progress.done);
            if progress.done >= progress.total {
                bar.finish_and_clear();
            }
        }
    }
}
