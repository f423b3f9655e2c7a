//! CBOR encoding and decoding of plans, and reading "an image or a plan".

use std::io::{Read, Write};

use serde::Deserialize;

use crate::compile::compile;
use crate::error::PlanError;
use crate::model::{Plan, FORMAT_NAME, FORMAT_VERSION};
use crate::validate::{validate, PlanInvalid};

/// Why bytes could not be read as a plan.
#[derive(Debug, thiserror::Error)]
pub enum PlanDecodeError {
    #[error("input is empty")]
    Empty,
    #[error("not a ringplan plan: {0}")]
    NotCbor(String),
    #[error("not a ringplan plan: format is {found:?}, expected {FORMAT_NAME:?}")]
    WrongFormat { found: String },
    #[error("unsupported plan version {found} (this build reads version {FORMAT_VERSION})")]
    UnsupportedVersion { found: u32 },
    #[error("malformed plan: {0}")]
    Malformed(String),
    #[error("invalid plan: {0}")]
    Invalid(#[from] PlanInvalid),
    #[error("reading plan: {0}")]
    Io(#[from] std::io::Error),
}

/// Why a plan could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PlanEncodeError {
    #[error("writing plan: {0}")]
    Io(#[from] std::io::Error),
    #[error("encoding plan: {0}")]
    Cbor(String),
}

/// Writes `plan` as CBOR.
pub fn encode<W: Write>(plan: &Plan, writer: W) -> Result<(), PlanEncodeError> {
    ciborium::into_writer(plan, writer).map_err(|error| match error {
        ciborium::ser::Error::Io(io) => PlanEncodeError::Io(io),
        ciborium::ser::Error::Value(message) => PlanEncodeError::Cbor(message),
    })
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

/// Just the fields that say what a document is, read first so that a
/// document of another format or version gets that error rather than
/// whatever its first unexpected field would cause.
#[derive(Deserialize)]
struct Header {
    format: Option<String>,
    version: Option<u32>,
}

fn read_header(bytes: &[u8]) -> Result<Header, String> {
    ciborium::from_reader(bytes).map_err(describe)
}

/// Decodes and validates a plan held in memory.
pub fn decode_slice(bytes: &[u8]) -> Result<Plan, PlanDecodeError> {
    if bytes.is_empty() {
        return Err(PlanDecodeError::Empty);
    }
    let header = read_header(bytes).map_err(PlanDecodeError::NotCbor)?;
    match header.format {
        Some(format) if format == FORMAT_NAME => {}
        Some(format) => return Err(PlanDecodeError::WrongFormat { found: format }),
        None => return Err(PlanDecodeError::NotCbor("no \"format\" field".to_owned())),
    }
    match header.version {
        Some(FORMAT_VERSION) => {}
        Some(found) => return Err(PlanDecodeError::UnsupportedVersion { found }),
        None => return Err(PlanDecodeError::Malformed("no \"version\" field".to_owned())),
    }
    let mut cursor = std::io::Cursor::new(bytes);
    let plan: Plan = ciborium::from_reader(&mut cursor).map_err(|error| PlanDecodeError::Malformed(describe(error)))?;
    // The cursor's position is within `bytes`.
    let consumed = usize::try_from(cursor.position()).unwrap_or(bytes.len()).min(bytes.len());
    if consumed < bytes.len() {
        return Err(PlanDecodeError::Malformed(format!("{} bytes after the end of the plan", bytes.len() - consumed)));
    }
    validate(&plan)?;
    Ok(plan)
}

fn describe<E: std::fmt::Debug>(error: ciborium::de::Error<E>) -> String {
    match error {
        ciborium::de::Error::Io(io) => format!("truncated or unreadable ({io:?})"),
        ciborium::de::Error::Syntax(offset) => format!("CBOR syntax error at byte {offset}"),
        ciborium::de::Error::Semantic(Some(offset), message) => format!("{message} (at byte {offset})"),
        ciborium::de::Error::Semantic(None, message) => message,
        ciborium::de::Error::RecursionLimitExceeded => "nested too deeply".to_owned(),
    }
}

/// Why [`plan_from_image_or_plan`] found no plan.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("input is empty")]
    Empty,
    #[error("neither a ringplan image nor a plan: {0}")]
    NotCbor(String),
    #[error("neither a ringplan image nor a plan: format is {found:?}")]
    UnknownFormat { found: String },
    #[error(transparent)]
    Image(#[from] ringplan_image::DecodeError),
    #[error("cannot plan this image: {0}")]
    Compile(#[from] PlanError),
    #[error(transparent)]
    Plan(#[from] PlanDecodeError),
}

/// Reads CBOR that is either an image (compiled on the spot) or a plan
/// (decoded and validated), telling them apart by their format name: what
/// `plan show IMAGE|PLAN` takes.
pub fn plan_from_image_or_plan(bytes: &[u8]) -> Result<Plan, LoadError> {
    if bytes.is_empty() {
        return Err(LoadError::Empty);
    }
    let header = read_header(bytes).map_err(LoadError::NotCbor)?;
    match header.format.as_deref() {
        Some(ringplan_image::FORMAT_NAME) => {
            let image = ringplan_image::decode_slice(bytes)?;
            Ok(compile(&image)?)
        }
        Some(FORMAT_NAME) => Ok(decode_slice(bytes)?),
        Some(other) => Err(LoadError::UnknownFormat { found: other.to_owned() }),
        None => Err(LoadError::NotCbor("no \"format\" field".to_owned())),
    }
}
