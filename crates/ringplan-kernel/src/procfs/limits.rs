//! `/proc/PID/limits`: another process's resource limits (its
//! `RLIMIT_NOFILE` and `RLIMIT_MEMLOCK`, which a restore into it must fit),
//! read without touching it.
//!
//! The file is a table: a header line, then one line per limit, the name
//! left-aligned in a column of its own (names hold spaces), then the soft
//! limit, the hard limit and, for most, the units. `unlimited` stands for
//! `RLIM_INFINITY`.

use super::{read_text, Process, ProcfsError};

/// One limit: soft and hard, `None` for unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

/// The limits ringplan reads of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `Max open files` (`RLIMIT_NOFILE`).
    pub open_files: Limit,
    /// `Max locked memory` (`RLIMIT_MEMLOCK`), in bytes.
    pub locked_memory: Limit,
}

/// The row names, as the kernel prints them (`fs/proc/base.c`, `lnames`).
const OPEN_FILES: &str = "Max open files";
const LOCKED_MEMORY: &str = "Max locked memory";

impl Limits {
    /// Parses the text of a limits file; `path` names it in errors.
    pub fn parse(text: &str, path: &std::path::Path) -> Result<Limits, ProcfsError> {
        let mut open_files = None;
        let mut locked_memory = None;
        for (index, line) in text.lines().enumerate() {
            let (slot, rest) = if let Some(rest) = line.strip_prefix(OPEN_FILES) {
                (&mut open_files, rest)
            } else if let Some(rest) = line.strip_prefix(LOCKED_MEMORY) {
                (&mut locked_memory, rest)
            } else {
                continue;
            };
            let mut values = rest.split_whitespace().map(parse_value);
            match (values.next(), values.next()) {
                (Some(Some(soft)), Some(Some(hard))) => *slot = Some(Limit { soft, hard }),
                _ => {
                    return Err(ProcfsError::malformed(
                        path,
                        index + 1,
                        format!("bad limit line: {line:?}"),
                    ))
                }
            }
        }
        let missing = |key| ProcfsError::MissingKey {
            path: path.to_owned(),
            key,
        };
        Ok(Limits {
            open_files: open_files.ok_or_else(|| missing(OPEN_FILES))?,
            locked_memory: locked_memory.ok_or_else(|| missing(LOCKED_MEMORY))?,
        })
    }
}

/// A value column: `Some(None)` for `unlimited`, `None` if it is neither
/// that nor a number.
fn parse_value(word: &str) -> Option<Option<u64>> {
    if word == "unlimited" {
        Some(None)
    } else {
        word.parse().ok().map(Some)
    }
}

/// Reads and parses `/proc/PID/limits`.
pub fn read(process: Process) -> Result<Limits, ProcfsError> {
    let path = process.path("limits");
    Limits::parse(&read_text(&path)?, &path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
Limit                     Soft Limit           Hard Limit           Units     
Max cpu time              unlimited            unlimited            seconds   
Max file size             unlimited            unlimited            bytes     
Max open files            1024                 524288               files     
Max locked memory         8388608              unlimited            bytes     
Max address space         unlimited            unlimited            bytes     
";

    #[test]
    fn open_files_and_locked_memory_are_read_with_unlimited_as_none() {
        let limits = Limits::parse(SAMPLE, std::path::Path::new("limits")).expect("parses");
        assert_eq!(
            limits.open_files,
            Limit {
                soft: Some(1024),
                hard: Some(524_288)
            }
        );
        assert_eq!(
            limits.locked_memory,
            Limit {
                soft: Some(8_388_608),
                hard: None
            }
        );
    }

    #[test]
    fn a_missing_or_garbled_row_is_an_error_naming_it() {
        let without = SAMPLE.replace("Max locked memory", "Max lost memory");
        let error = Limits::parse(&without, std::path::Path::new("limits")).expect_err("missing");
        assert!(error.to_string().contains(LOCKED_MEMORY), "{error}");
        let garbled = SAMPLE.replace("1024 ", "many ");
        assert!(Limits::parse(&garbled, std::path::Path::new("limits")).is_err());
    }

    #[test]
    fn this_process_has_both_limits() {
        let limits = read(Process::Current).expect("/proc/self/limits");
        let own = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        assert_eq!(limits.open_files.soft, own.current);
        assert_eq!(limits.open_files.hard, own.maximum);
    }
}
