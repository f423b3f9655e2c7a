//! CBOR encoding and decoding of images.

use std::io::{Read, Write};

use serde::Deserialize;

use crate::model::{Image, FORMAT_NAME, FORMAT_VERSION};
use crate::validate::{validate, ImageError};

/// Why bytes could not be read as an image.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("input is empty")]
    Empty,
    #[error("not a ringplan image: {0}")]
    NotCbor(String),
    #[error("not a ringplan image: format is {found:?}, expected {FORMAT_NAME:?}")]
    WrongFormat { found: String },
    #[error("unsupported image version {found} (this build reads version {FORMAT_VERSION})")]
    UnsupportedVersion { found: u32 },
    #[error("malformed image: {0}")]
    Malformed(String),
    #[error("invalid image: {0}")]
    Invalid(#[from] ImageError),
    #[error("reading image: {0}")]
    Io(#[from] std::io::Error),
}

/// Why an image could not be written.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("writing image: {0}")]
    Io(#[from] std::io::Error),
    #[error("encoding image: {0}")]
    Cbor(String),
}

/// Writes `image` as CBOR.
pub fn encode<W: Write>(image: &Image, writer: W) -> Result<(), EncodeError> {
    ciborium::into_writer(image, writer).map_err(|error| match error {
        ciborium::ser::Error::Io(io) => EncodeError::Io(io),
        ciborium::ser::Error::Value(message) => EncodeError::Cbor(message),
    })
}

/// Encodes `image` as CBOR into a new buffer.
pub fn encode_to_vec(image: &Image) -> Result<Vec<u8>, EncodeError> {
    let mut bytes = Vec::new();
    encode(image, &mut bytes)?;
    Ok(bytes)
}

/// Reads a whole image from `reader`, then decodes and validates it.
pub fn decode<R: Read>(mut reader: R) -> Result<Image, DecodeError> {
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes)?;
    decode_slice(&bytes)
}

/// Just the fields that say what a document is, read before anything else so
/// that a document of another format or version gets that error rather than
/// whatever its first unexpected field would cause.
#[derive(Deserialize)]
struct Header {
    format: Option<String>,
    version: Option<u32>,
}

/// Decodes and validates an image held in memory.
pub fn decode_slice(bytes: &[u8]) -> Result<Image, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    let header: Header = ciborium::from_reader(bytes).map_err(|error| DecodeError::NotCbor(describe(error)))?;
    match header.format {
        Some(format) if format == FORMAT_NAME => {}
        Some(format) => return Err(DecodeError::WrongFormat { found: format }),
        None => return Err(DecodeError::NotCbor("no \"format\" field".to_owned())),
    }
    match header.version {
        Some(FORMAT_VERSION) => {}
        Some(found) => return Err(DecodeError::UnsupportedVersion { found }),
        None => return Err(DecodeError::Malformed("no \"version\" field".to_owned())),
    }
    let (image, rest) = decode_prefix(bytes)?;
    if !rest.is_empty() {
        return Err(DecodeError::Malformed(format!("{} bytes after the end of the image", rest.len())));
    }
    validate(&image)?;
    Ok(image)
}

fn decode_prefix(bytes: &[u8]) -> Result<(Image, &[u8]), DecodeError> {
    let mut cursor = std::io::Cursor::new(bytes);
    let image: Image =
        ciborium::from_reader(&mut cursor).map_err(|error| DecodeError::Malformed(describe(error)))?;
    // The cursor's position is within `bytes`, so the conversion cannot fail
    // on any platform whose slices fit in memory.
    let consumed = usize::try_from(cursor.position()).unwrap_or(bytes.len());
    Ok((image, &bytes[consumed.min(bytes.len())..]))
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
