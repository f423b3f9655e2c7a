//! Paths of registered files that no fd of the target holds, from the
//! ring's fdinfo.
//!
//! `bpf_d_path` only accepts a pointer the verifier trusts, and a file
//! reached through a ring's table (`node->file_ptr`, an integer) is not one.
//! So for a file that lives only in a registered slot (its fd was closed
//! after registration), the path comes from the kernel's own `d_path` as
//! `/proc/self/fdinfo/N` prints it for our copy of the ring fd:
//!
//! ```text
//! UserFiles:<TAB>5
//!     0: /dev/null
//!     4: /tmp/registered\040then\040closed
//! UserBufs:<TAB>2
//! ```
//!
//! Each row is `index: path` (the index right-aligned in 5 columns, so not
//! indented from 10000 on), with space, tab, newline and backslash escaped
//! as `\ooo` (seq_file_path's escape set). The kernel prints the rows only
//! when it gets the ring's lock without waiting; when it does not, rows are
//! missing and those paths stay unknown (`None`).

use std::collections::HashMap;

/// The `UserFiles:` rows of an io_uring fdinfo text: slot index → path bytes.
pub(crate) fn parse_user_files(fdinfo: &[u8]) -> HashMap<u32, Vec<u8>> {
    let mut rows = HashMap::new();
    let mut in_user_files = false;
    for line in fdinfo.split(|&byte| byte == b'\n') {
        if line.starts_with(b"UserFiles:") {
            in_user_files = true;
            continue;
        }
        if !in_user_files {
            continue;
        }
        // Rows are `%5u: path` (indented only below index 10000); the next
        // section header starts with a letter.
        if line.first().is_some_and(|byte| byte.is_ascii_alphabetic()) {
            break;
        }
        let trimmed = trim_leading_whitespace(line);
        let Some(colon) = trimmed.iter().position(|&byte| byte == b':') else {
            continue;
        };
        let (index, rest) = trimmed.split_at(colon);
        let Some(index) = std::str::from_utf8(index)
            .ok()
            .and_then(|text| text.parse::<u32>().ok())
        else {
            continue;
        };
        // After the colon comes one space, then the escaped path.
        let path = rest
            .get(1..)
            .map(|after_colon| after_colon.strip_prefix(b" ").unwrap_or(after_colon));
        if let Some(path) = path {
            rows.insert(index, unescape_octal(path));
        }
    }
    rows
}

fn trim_leading_whitespace(line: &[u8]) -> &[u8] {
    let start = line
        .iter()
        .position(|byte| !byte.is_ascii_whitespace())
        .unwrap_or(line.len());
    &line[start..]
}

/// Undoes seq_file's `\ooo` escapes; a backslash not followed by three octal
/// digits stays as it is.
fn unescape_octal(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i] == b'\\' {
            if let Some(digits) = text.get(i + 1..i + 4) {
                if digits.iter().all(|digit| (b'0'..=b'7').contains(digit)) {
                    let value = digits
                        .iter()
                        .fold(0u32, |value, digit| value * 8 + u32::from(digit - b'0'));
                    if let Ok(byte) = u8::try_from(value) {
                        out.push(byte);
                        i += 4;
                        continue;
                    }
                }
            }
        }
        out.push(text[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &[u8] = b"pos:\t0\nflags:\t02000002\nSqThreadCpu:\t0\nUserFiles:\t5\n    0: /dev/null\n    2: /tmp/d/position-17\n    4: /tmp/d/registered\\040then\\040closed\nUserBufs:\t2\n    0: <none>\n    1: 0x561fdd894180/120\nPollList:\n";

    #[test]
    fn reads_rows_and_unescapes() {
        let rows = parse_user_files(SAMPLE);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[&0], b"/dev/null");
        assert_eq!(rows[&2], b"/tmp/d/position-17");
        assert_eq!(rows[&4], b"/tmp/d/registered then closed");
    }

    #[test]
    fn stops_at_the_next_section_and_survives_junk() {
        assert!(parse_user_files(b"UserFiles:\t0\nUserBufs:\t1\n    0: 0x1/2\n").is_empty());
        assert!(parse_user_files(b"").is_empty());
        let rows =
            parse_user_files(b"UserFiles:\t9\n    x: /a\n    7:\n    8: \\\\134\\9\n12345: /b\n");
        assert_eq!(rows.get(&7), Some(&Vec::new()));
        assert_eq!(rows.get(&8), Some(&b"\\\\\\9".to_vec()));
        assert_eq!(
            rows.get(&12345),
            Some(&b"/b".to_vec()),
            "wide indices are not indented"
        );
    }
}
