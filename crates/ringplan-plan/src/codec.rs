//! CBOR encoding and decoding of plans, and reading "an image or a plan".

use std::io::{Read, Write};

use ringplan_image::document::{
    decode_versions, encode_cbor, read_header, EncodeError, FramingError,
};

use crate::compile;
use crate::error::CompileError;
use crate::model::{Plan, FORMAT_NAME, OLDEST_FORMAT_VERSION, TREE_FORMAT_VERSION};
use crate::validate::{validate, PlanInvalid};

/// Why bytes could not be read as a plan.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanDecodeError {
    #[error("input is empty")]
    Empty,
    #[error("not a ringplan plan: {0}")]
    NotCbor(String),
    #[error("not a ringplan plan: format is {found:?}, expected {FORMAT_NAME:?}")]
    WrongFormat { found: String },
    #[error(
        "unsupported plan version {found} (this build reads versions {OLDEST_FORMAT_VERSION} to {TREE_FORMAT_VERSION})"
    )]
    UnsupportedVersion { found: u32 },
    #[error("malformed plan: {0}")]
    Malformed(String),
    // The cause is in the message (what the CLI prints) and in the field
    // (for matching), so it is not also a `source`: a chain would print it
    // twice.
    #[error("invalid plan: {0}")]
    Invalid(PlanInvalid),
    #[error("reading plan: {0}")]
    Io(std::io::Error),
}

impl From<PlanInvalid> for PlanDecodeError {
    fn from(error: PlanInvalid) -> Self {
        PlanDecodeError::Invalid(error)
    }
}

impl From<std::io::Error> for PlanDecodeError {
    fn from(error: std::io::Error) -> Self {
        PlanDecodeError::Io(error)
    }
}

impl From<FramingError> for PlanDecodeError {
    fn from(error: FramingError) -> Self {
        match error {
            FramingError::Empty => PlanDecodeError::Empty,
            FramingError::NotCbor(message) => PlanDecodeError::NotCbor(message),
            FramingError::WrongFormat { found } => PlanDecodeError::WrongFormat { found },
            FramingError::UnsupportedVersion { found } => {
                PlanDecodeError::UnsupportedVersion { found }
            }
            FramingError::Malformed(message) => PlanDecodeError::Malformed(message),
        }
    }
}

/// Why a plan could not be written.
pub type PlanEncodeError = EncodeError;

/// Writes `plan` as CBOR.
pub fn encode<W: Write>(plan: &Plan, writer: W) -> Result<(), PlanEncodeError> {
    encode_cbor(plan, writer)
}

/// Encodes `plan` as CBOR into a new buffer.
pub fn encode_to_vec(plan: &Plan) -> Result<Vec<u8>, PlanEncodeError> {
    let mut bytes = Vec::new();
    encode(plan, &mut bytes)?;
    Ok(bytes)
}

/// Reads a whole plan from `reader`, then decodes and validates it.
pub fn decode<R: Read>(mut reader: R) -> Result<Plan, PlanDecodeError> {
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes)?;
    decode_slice(&bytes)
}

/// Decodes and validates a plan held in memory.
pub fn decode_slice(bytes: &[u8]) -> Result<Plan, PlanDecodeError> {
    let plan: Plan = decode_versions(
        bytes,
        FORMAT_NAME,
        OLDEST_FORMAT_VERSION..=TREE_FORMAT_VERSION,
    )?;
    validate(&plan)?;
    Ok(plan)
}

/// Why [`plan_from_image_or_plan`] found no plan.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    #[error("input is empty")]
    Empty,
    #[error("neither a ringplan image nor a plan: {0}")]
    NotCbor(String),
    #[error("neither a ringplan image nor a plan: format is {found:?}")]
    UnknownFormat { found: String },
    #[error(transparent)]
    Image(#[from] ringplan_image::DecodeError),
    /// The cause is in the message, so it is not also a `source`.
    #[error("cannot plan this image: {0}")]
    Compile(CompileError),
    #[error(transparent)]
    Plan(#[from] PlanDecodeError),
}

impl From<CompileError> for LoadError {
    fn from(error: CompileError) -> Self {
        LoadError::Compile(error)
    }
}

/// Reads CBOR that is either an image (compiled on the spot) or a plan
/// (decoded and validated), telling them apart by their format name: what
/// `plan show IMAGE|PLAN` takes.
pub fn plan_from_image_or_plan(bytes: &[u8]) -> Result<Plan, LoadError> {
    let header = read_header(bytes).map_err(|error| match error {
        FramingError::Empty => LoadError::Empty,
        FramingError::NotCbor(message) | FramingError::Malformed(message) => {
            LoadError::NotCbor(message)
        }
        FramingError::WrongFormat { found } => LoadError::UnknownFormat { found },
        FramingError::UnsupportedVersion { found } => {
            LoadError::NotCbor(format!("version {found}"))
        }
    })?;
    match header.format.as_deref() {
        Some(ringplan_image::FORMAT_NAME) => {
            let image = ringplan_image::decode_slice(bytes)?;
            Ok(compile(&image)?)
        }
        Some(FORMAT_NAME) => Ok(decode_slice(bytes)?),
        Some(other) => Err(LoadError::UnknownFormat {
            found: other.to_owned(),
        }),
        None => Err(LoadError::NotCbor("no \"format\" field".to_owned())),
    }
}
