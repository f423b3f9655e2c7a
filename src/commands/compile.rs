//! `plan compile`: turn an image into a CBOR restore plan that a restorer can
//! run without the planner.

use std::path::PathBuf;

use crate::commands::{refuse_binary_to_terminal, write_output};
use crate::error::CliError;
use crate::input::read_image;

#[derive(clap::Args)]
pub struct CompileArgs {
    /// The image; `-` reads stdin.
    #[arg(value_name = "IMAGE|-")]
    input: String,
    /// Write the plan here instead of stdout.
    #[arg(short, long, value_name = "PLAN")]
    output: Option<PathBuf>,
}

pub fn run(args: CompileArgs) -> Result<(), CliError> {
    refuse_binary_to_terminal(args.output.as_deref(), "plan")?;
    let image = read_image(&args.input)?;
    let plan = ringplan_plan::compile(&image)
        .map_err(|error| CliError::bad_input(format!("{}: {error}", args.input)))?;
    let bytes = ringplan_plan::encode_to_vec(&plan).map_err(CliError::failed)?;
    write_output(args.output.as_deref(), &bytes, "plan")
}
