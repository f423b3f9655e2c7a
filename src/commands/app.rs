//! `plan app`: build a known io_uring state in this process, describe it on
//! one JSON line, and hold it until SIGTERM or SIGINT.

use crate::error::CliError;

#[derive(clap::Args)]
pub struct AppArgs {
    /// seed, chain:N, fanout:N, files:N, closed, creator-closed:N, rings:N, mix,
    /// personalities:N, restricted, restricted-enabled, pbuf[:N],
    /// pbuf-fresh:N, pbuf-legacy, legacy-buffers:N, legacy-empty, pbuf-mmap,
    /// settings, iowq-affinity, wait-region, napi-static, shared,
    /// shared-sqpoll (a ring shared with forked children, which the JSON
    /// line lists), tree:N (a ring kept by N forked children), children:N (no ring, N
    /// forked children: a tree to restore a tree image into), ring-fds or
    /// ring-fd-only.
    #[arg(default_value = "seed")]
    scenario: String,
}

pub fn run(args: AppArgs) -> Result<(), CliError> {
    let scenario: ringplan_scenarios::Scenario =
        args.scenario.parse().map_err(CliError::bad_input)?;
    ringplan_scenarios::hold(&scenario, &mut std::io::stdout().lock()).map_err(CliError::failed)?;
    Ok(())
}
