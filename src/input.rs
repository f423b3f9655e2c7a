//! Reading the documents the CLI takes: images and plans, from a file or `-`
//! for stdin, told apart by their format name.

use std::io::Read;

use ringplan_image::{DecodeError, Image};
use ringplan_plan::Plan;

use crate::error::CliError;

/// A decoded input document.
pub enum Document {
    Image(Image),
    Plan(Plan),
}

/// Reads `path` (`-` for stdin) whole.
pub fn read_bytes(path: &str) -> Result<Vec<u8>, CliError> {
    if path == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .map_err(|error| CliError::failed(format!("reading stdin: {error}")))?;
        Ok(bytes)
    } else {
        std::fs::read(path)
            .map_err(|error| CliError::bad_input(format!("cannot read {path}: {error}")))
    }
}

/// Reads and decodes an image or a plan; anything else is bad input.
pub fn read_document(path: &str) -> Result<Document, CliError> {
    let bytes = read_bytes(path)?;
    match ringplan_image::decode_slice(&bytes) {
        Ok(image) => Ok(Document::Image(image)),
        Err(DecodeError::WrongFormat { found }) if found == ringplan_plan::FORMAT_NAME => {
            ringplan_plan::decode_slice(&bytes)
                .map(Document::Plan)
                .map_err(|error| CliError::bad_input(format!("{path}: {error}")))
        }
        Err(error) => Err(CliError::bad_input(format!("{path}: {error}"))),
    }
}

/// Reads and decodes an image; a plan or anything else is bad input.
pub fn read_image(path: &str) -> Result<Image, CliError> {
    match read_document(path)? {
        Document::Image(image) => Ok(image),
        Document::Plan(_) => Err(CliError::bad_input(format!(
            "{path} is a plan; this needs an image"
        ))),
    }
}
