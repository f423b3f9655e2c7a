//! Inputs the `decode_compile` fuzz target (fuzz/, docs/fuzzing.md) found,
//! each decoded here so the fix stays: a typed error, never a panic.

use std::path::PathBuf;

use ringplan_image::{decode_slice, DecodeError, ImageError};

fn regression(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/regressions/decode_compile")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// A file path with NUL bytes in it passed image validation, so the planner
/// compiled an `open_file` step that plan validation then refused: the
/// plan's own CBOR round trip failed. The image is refused now.
#[test]
fn file_path_with_nul_is_refused() {
    let error = decode_slice(&regression("file-path-with-nul.img")).unwrap_err();
    assert!(
        matches!(error, DecodeError::Invalid(ImageError::PathHasNul { .. })),
        "unexpected error: {error:?}"
    );
}

/// A CBOR map with the image's header, then `key` and `tail`.
fn image_with(key: &str, tail: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0xa3]; // map of 3 pairs
    let (name, value) = ("format", "ringplan-image");
    bytes.push(0x60 + name.len() as u8);
    bytes.extend_from_slice(name.as_bytes());
    bytes.push(0x60 + value.len() as u8);
    bytes.extend_from_slice(value.as_bytes());
    bytes.push(0x67);
    bytes.extend_from_slice(b"version");
    bytes.push(0x01);
    bytes.push(0x60 + key.len() as u8);
    bytes.extend_from_slice(key.as_bytes());
    bytes.extend_from_slice(tail);
    bytes
}

/// Length prefixes claiming 2^64 - 1 elements or bytes, in a few bytes of
/// input: ciborium reads strings in fixed-size chunks and serde caps the
/// capacity it reserves for a sequence, so nothing is allocated up front
/// and each is refused as truncated (this test would abort on OOM if not).
#[test]
fn huge_length_prefixes_are_refused_without_allocating() {
    let huge = [0xff; 8];
    for (what, major) in [
        ("array", 0x9b_u8),
        ("text", 0x7b),
        ("bytes", 0x5b),
        ("map", 0xbb),
    ] {
        let mut tail = vec![major];
        tail.extend_from_slice(&huge);
        tail.push(0x00);
        for key in ["objects", "source"] {
            let error = decode_slice(&image_with(key, &tail)).unwrap_err();
            assert!(
                matches!(error, DecodeError::Malformed(_) | DecodeError::NotCbor(_)),
                "{what} under {key:?}: unexpected error {error:?}"
            );
        }
    }
}
