//! `plan show`: print an image's objects, or a restore plan, for a person
//! (text, DOT) or a program (JSON).

use std::io::Write;

use crate::commands::print_text;
use crate::error::CliError;
use crate::input::{read_document, Document};

#[derive(clap::Args)]
pub struct ShowArgs {
    /// An image or a plan; `-` reads stdin.
    #[arg(value_name = "IMAGE|PLAN|-")]
    input: String,
    /// Print the image's object graph instead of the restore plan.
    #[arg(long)]
    objects: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Print the plan as Graphviz DOT (render with `dot -Tsvg`).
    #[arg(long, conflicts_with_all = ["objects", "format"])]
    dot: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Text,
    Json,
}

fn json_text(value: &serde_json::Value) -> Result<String, CliError> {
    let mut text = serde_json::to_string_pretty(value).map_err(CliError::failed)?;
    text.push('\n');
    Ok(text)
}

pub fn run(args: ShowArgs) -> Result<(), CliError> {
    let document = read_document(&args.input)?;
    if args.objects {
        let Document::Image(image) = document else {
            return Err(CliError::bad_input(format!(
                "{} is a plan; --objects needs an image",
                args.input
            )));
        };
        let text = match args.format {
            Format::Text => ringplan_image::view::to_text(&image),
            Format::Json => json_text(&ringplan_image::view::to_json(&image))?,
        };
        return print_text(&text);
    }
    let plan = match document {
        Document::Plan(plan) => plan,
        Document::Image(image) => ringplan_plan::compile(&image)
            .map_err(|error| CliError::bad_input(format!("{}: {error}", args.input)))?,
    };
    if let Some(notice) = crate::commands::slow_restore_notice(&plan) {
        eprintln!("{notice}");
    }
    match (args.dot, args.format) {
        (true, _) => print_text(&plan.to_dot()),
        (false, Format::Text) => print_text(&plan.to_text()),
        (false, Format::Json) => {
            // Streamed: a plan of a million steps is too big to build as a
            // JSON value first.
            let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
            plan.write_json(&mut stdout, true)
                .map_err(std::io::Error::from)
                .and_then(|()| writeln!(stdout))
                .and_then(|()| stdout.flush())
                .map_err(|error| CliError::output("plan", error))
        }
    }
}
