//! Builds a scenario, prints its description as one JSON line on stdout and
//! holds it until SIGTERM or SIGINT: `cargo run --example hold -- mix`.
//! The same flow as `plan app`, without the rest of the CLI.

use std::process::ExitCode;

use ringplan_scenarios::Scenario;

fn main() -> ExitCode {
    let argument = std::env::args().nth(1);
    let scenario = match argument.as_deref().map(str::parse::<Scenario>).transpose() {
        Ok(scenario) => scenario.unwrap_or_default(),
        Err(error) => {
            eprintln!("hold: {error}");
            return ExitCode::from(2);
        }
    };
    match ringplan_scenarios::hold(&scenario, &mut std::io::stdout().lock()) {
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("hold: {error}");
            ExitCode::FAILURE
        }
    }
}
