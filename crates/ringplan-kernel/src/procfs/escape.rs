//! The escapes the kernel writes into paths in `/proc` files.
//!
//! `seq_file_path` and `seq_escape` (used for registered files in an io_uring
//! fdinfo, for mount points in mountinfo, for file names in maps) replace
//! each byte of a chosen set (space, tab, newline and backslash at most) by
//! `\ooo`, three octal digits. A backslash not followed by three octal
//! digits is not an escape, and neither is one whose value exceeds a byte
//! (`\777`): the kernel never writes either, so such text is kept as it is.

/// Undoes the `\ooo` escapes of `text`.
pub fn unescape_octal(text: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut index = 0;
    while index < text.len() {
        if let Some(byte) = escaped_byte(text, index) {
            bytes.push(byte);
            index += 4;
        } else {
            bytes.push(text[index]);
            index += 1;
        }
    }
    bytes
}

/// Undoes the `\ooo` escapes of `text`; `None` when the result is not UTF-8.
pub fn unescape_octal_utf8(text: &[u8]) -> Option<String> {
    String::from_utf8(unescape_octal(text)).ok()
}

/// The byte an escape at `index` stands for, if one starts there.
fn escaped_byte(text: &[u8], index: usize) -> Option<u8> {
    if text.get(index) != Some(&b'\\') {
        return None;
    }
    let digits = text
        .get(index + 1..index + 4)
        .filter(|digits| digits.iter().all(|digit| matches!(digit, b'0'..=b'7')))?;
    let value = digits
        .iter()
        .fold(0u32, |value, digit| value * 8 + u32::from(digit - b'0'));
    u8::try_from(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_and_non_utf8_paths() {
        assert_eq!(
            unescape_octal_utf8(b"/a\\040b\\011c\\012d\\134e").as_deref(),
            Some("/a b\tc\nd\\e")
        );
        assert_eq!(
            unescape_octal_utf8(b"/not\\8escape\\0").as_deref(),
            Some("/not\\8escape\\0")
        );
        assert_eq!(unescape_octal_utf8(b"/x\\777").as_deref(), Some("/x\\777"));
        assert_eq!(unescape_octal_utf8(b"/latin1-\xe9"), None);
    }

    #[test]
    fn a_backslash_that_starts_no_escape_stays() {
        assert_eq!(unescape_octal(b"\\\\134\\9"), b"\\\\\\9");
        assert_eq!(
            unescape_octal(b"/tmp/d/registered\\040then\\040closed"),
            b"/tmp/d/registered then closed"
        );
        assert_eq!(unescape_octal(b"/my\\040unified"), b"/my unified");
        assert_eq!(unescape_octal(b""), b"");
    }
}
