//! The framing every ringplan CBOR document shares: one CBOR map whose
//! `"format"` and `"version"` say what it is. Images use it, and so do plans
//! (`ringplan-plan`), so that a reader can tell them apart and refuse a
//! version it does not know before it reads any other field.

use std::io::Write;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Why bytes are not the expected document. The crate that owns the
/// document turns this into its own error, with its own words. Not
/// `#[non_exhaustive]` on purpose: it is the contract between the document
/// crates, and each must map every case into its own error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FramingError {
    Empty,
    /// Not a CBOR map with a `"format"` field.
    NotCbor(String),
    WrongFormat {
        found: String,
    },
    UnsupportedVersion {
        found: u32,
    },
    /// The right format and version, but not the right shape.
    Malformed(String),
}

/// The fields that say what a document is.
#[derive(Debug, Deserialize)]
pub struct Header {
    pub format: Option<String>,
    pub version: Option<u32>,
}

/// Reads only the header of a document (other fields are skipped).
pub fn read_header(bytes: &[u8]) -> Result<Header, FramingError> {
    if bytes.is_empty() {
        return Err(FramingError::Empty);
    }
    ciborium::from_reader(bytes).map_err(|error| match error {
        // A CBOR map (major type 5) that ends early: a cut-off document,
        // not a foreign one.
        ciborium::de::Error::Io(_) if bytes[0] >> 5 == 5 => {
            FramingError::Malformed(TRUNCATED.to_owned())
        }
        error => FramingError::NotCbor(describe(error)),
    })
}

const TRUNCATED: &str = "truncated (the CBOR data ends early)";

/// Decodes a whole document of `format` and `version`: the header first,
/// then the document, then a check that nothing follows it.
pub fn decode_versioned<T: DeserializeOwned>(
    bytes: &[u8],
    format: &str,
    version: u32,
) -> Result<T, FramingError> {
    decode_versions(bytes, format, version..=version)
}

/// [`decode_versioned`] for a reader of several versions: the document's
/// version must be one of `versions`, and `T` must read them all.
pub fn decode_versions<T: DeserializeOwned>(
    bytes: &[u8],
    format: &str,
    versions: std::ops::RangeInclusive<u32>,
) -> Result<T, FramingError> {
    let header = read_header(bytes)?;
    match header.format {
        Some(found) if found == format => {}
        Some(found) => return Err(FramingError::WrongFormat { found }),
        None => return Err(FramingError::NotCbor("no \"format\" field".to_owned())),
    }
    match header.version {
        Some(found) if versions.contains(&found) => {}
        Some(found) => return Err(FramingError::UnsupportedVersion { found }),
        None => return Err(FramingError::Malformed("no \"version\" field".to_owned())),
    }
    let mut cursor = std::io::Cursor::new(bytes);
    let document: T = ciborium::from_reader(&mut cursor)
        .map_err(|error| FramingError::Malformed(describe(error)))?;
    // The cursor's position is within `bytes`.
    let consumed = usize::try_from(cursor.position())
        .unwrap_or(bytes.len())
        .min(bytes.len());
    if consumed < bytes.len() {
        return Err(FramingError::Malformed(format!(
            "{} bytes after the end of the document",
            bytes.len() - consumed
        )));
    }
    Ok(document)
}

/// Why a document could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    // The cause is in the message, so it is not also a `source` (a chain
    // would print it twice).
    #[error("writing: {0}")]
    Io(std::io::Error),
    #[error("encoding: {0}")]
    Cbor(String),
}

impl From<std::io::Error> for EncodeError {
    fn from(error: std::io::Error) -> Self {
        EncodeError::Io(error)
    }
}

/// Writes `document` as CBOR.
pub fn encode_cbor<T: Serialize, W: Write>(document: &T, writer: W) -> Result<(), EncodeError> {
    ciborium::into_writer(document, writer).map_err(|error| match error {
        ciborium::ser::Error::Io(io) => EncodeError::Io(io),
        ciborium::ser::Error::Value(message) => EncodeError::Cbor(message),
    })
}

fn describe<E: std::fmt::Debug>(error: ciborium::de::Error<E>) -> String {
    match error {
        // Decoding from a slice: the only I/O error is running out of bytes.
        ciborium::de::Error::Io(_) => TRUNCATED.to_owned(),
        ciborium::de::Error::Syntax(offset) => format!("CBOR syntax error at byte {offset}"),
        ciborium::de::Error::Semantic(Some(offset), message) => {
            format!("{message} (at byte {offset})")
        }
        ciborium::de::Error::Semantic(None, message) => message,
        ciborium::de::Error::RecursionLimitExceeded => "nested too deeply".to_owned(),
    }
}
