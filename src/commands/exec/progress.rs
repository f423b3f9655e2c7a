//! The progress bar of a long restore: moving a ring's positions far from
//! 0 takes NOPs by the million. Shown only when stderr is a terminal that
//! the plan leaves alone (a plan that installs onto fd 2 owns that number
//! during the run) and a step moves enough positions to take about a
//! second; nothing otherwise.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ringplan_exec::Progress;

/// Positions a step must move before it gets a bar: about a second of NOPs
/// (docs/performance.md: 70-126 ns per position).
const BAR_THRESHOLD: u64 = 8_000_000;

/// The bar of the step in progress, if it has one.
pub struct RestoreProgress {
    enabled: bool,
    bar: Option<(usize, ProgressBar)>,
}

impl RestoreProgress {
    /// Draws on stderr when it is a terminal and `stderr_moved` is false.
    pub fn on_terminal(stderr_moved: bool) -> RestoreProgress {
        RestoreProgress {
            enabled: !stderr_moved && std::io::stderr().is_terminal(),
            bar: None,
        }
    }

    /// Takes one report of [`ringplan_exec::execute_with_progress`].
    pub fn report(&mut self, progress: Progress) {
        if !self.enabled || progress.total < BAR_THRESHOLD {
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
