//! CBOR encoding and decoding of images.

use std::io::{Read, Write};

use crate::document::{decode_versions, encode_cbor, FramingError};
use crate::model::{Image, FORMAT_NAME, FORMAT_VERSION, READABLE_VERSIONS};
use crate::validate::{validate, ImageError};

pub use crate::document::EncodeError;

/// Why bytes could not be read as an image.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("input is empty")]
    Empty,
    #[error("not a ringplan image: {0}")]
    NotCbor(String),
    #[error("not a ringplan image: format is {found:?}, expected {FORMAT_NAME:?}")]
    WrongFormat { found: String },
    #[error("unsupported image version {found} (this build reads versions 1 to {FORMAT_VERSION})")]
    UnsupportedVersion { found: u32 },
    #[error("malformed image: {0}")]
    Malformed(String),
    // The cause is in the message (what the CLI prints) and in the field
    // (for matching), so it is not also a `source`: a chain would print it
    // twice.
    #[error("invalid image: {0}")]
    Invalid(ImageError),
    #[error("reading image: {0}")]
    Io(std::io::Error),
}

impl From<ImageError> for DecodeError {
    fn from(error: ImageError) -> Self {
        DecodeError::Invalid(error)
    }
}

impl From<std::io::Error> for DecodeError {
    fn from(error: std::io::Error) -> Self {
        DecodeError::Io(error)
    }
}

impl From<FramingError> for DecodeError {
    fn from(error: FramingError) -> Self {
        match error {
            FramingError::Empty => DecodeError::Empty,
            FramingError::NotCbor(message) => DecodeError::NotCbor(message),
            FramingError::WrongFormat { found } => DecodeError::WrongFormat { found },
            FramingError::UnsupportedVersion { found } => DecodeError::UnsupportedVersion { found },
            FramingError::Malformed(message) => DecodeError::Malformed(message),
        }
    }
}

/// Writes `image` as CBOR.
pub fn encode<W: Write>(image: &Image, writer: W) -> Result<(), EncodeError> {
    encode_cbor(image, writer)
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

/// Decodes and validates an image held in memory.
pub fn decode_slice(bytes: &[u8]) -> Result<Image, DecodeError> {
    let image: Image = decode_versions(bytes, FORMAT_NAME, READABLE_VERSIONS)?;
    validate(&image)?;
    Ok(image)
}
