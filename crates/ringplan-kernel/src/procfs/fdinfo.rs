//! The text of `/proc/PID/fdinfo/FD`: its lines ([`lines`]), the typed
//! fields of a ring, an eventfd or any other fd ([`Fdinfo::parse`]), and the
//! `UserFiles:` rows of a ring ([`user_file_rows`]).
//!
//! On Linux 6.18 a ring's fdinfo looks like this (`SQEs:`/`CQEs:` rows,
//! `PollList:` and `CqOverflowList:` rows, `Personalities:` and `NAPI` lines
//! appear as the ring's state has them):
//!
//! ```text
//! pos:    0
//! flags:  02000002
//! mnt_id: 17
//! ino:    17070
//! SqMask: 0x1
//! SqHead: 0
//! SqTail: 0
//! CachedSqHead:   0
//! CqMask: 0x3
//! CqHead: 0
//! CqTail: 0
//! CachedCqTail:   0
//! SQEs:   0
//! CQEs:   0
//! SqThread:       11206
//! SqThreadCpu:    0
//! SqTotalTime:    0
//! SqWorkTime:     0
//! UserFiles:      5
//!     0: /dev/null
//!     2: /tmp/hold-seed.out
//!     4: /tmp/jobs/stderr\040(deleted)
//! UserBufs:       2
//!     0: <none>
//!     1: 0x562b97df8480/120
//! PollList:
//! CqOverflowList:
//! NAPI:   disabled
//! ```
//!
//! and an eventfd's like this (`eventfd-count` is hex):
//!
//! ```text
//! pos:    0
//! flags:  02
//! mnt_id: 17
//! ino:    26
//! eventfd-count:               2a
//! eventfd-id: 1
//! eventfd-semaphore: 0
//! ```
//!
//! - A field is an unindented `Key:<TAB>value` line; a table's rows follow
//!   its field as `%5u: value` (indented only below slot 10000).
//! - `flags` (octal) is the file's `f_flags` with `O_CLOEXEC` added when the
//!   fd is close-on-exec. `SqMask`/`CqMask` are entries - 1. `SqThread` and
//!   `SqThreadCpu` are -1 without an SQ thread.
//! - `UserFiles:` is the table size; the kernel prints a row (the path,
//!   escaped like `/proc/PID/mountinfo`: [`super::escape`]) only for
//!   occupied slots. `UserBufs:` is the table size with one row per slot,
//!   `<none>` when empty.
//! - The kernel prints a ring's part only when it can take the ring's lock
//!   without waiting; a ring that is busy shows only the common lines
//!   ([`ProcfsError::NoRingState`]).
//!
//! This is 6.18's format. Linux 6.1 prints registered files by name, a
//! `<none>` row for each empty file slot, the counts without rows while the
//! ring's lock is taken, hides `SqThread` while the SQ thread polls and has
//! no `eventfd-semaphore`: [`lines`] and [`user_file_rows`] read both,
//! [`Fdinfo::parse`] reads 6.18's (its caller checks the kernel's format).

use std::collections::BTreeMap;
use std::path::Path;

use super::escape::{unescape_octal, unescape_octal_utf8};
use super::fd::FdKind;
use super::{read_file, Process, ProcfsError};

/// One line of an fdinfo text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    /// An unindented `key: value` line. It is also the header of the rows
    /// that follow it.
    Field { key: &'a [u8], value: &'a [u8] },
    /// A `slot: value` row (the slot all digits) of the table whose field
    /// came last (`table` is empty when none did).
    Row {
        table: &'a [u8],
        slot: &'a [u8],
        value: &'a [u8],
    },
    /// Anything else: an indented line of another shape (`  op=...` under
    /// `PollList:`, personality ids), a line without a colon, a blank line.
    Other,
}

/// The lines of an fdinfo text with their 1-based numbers. Keys and values
/// come without surrounding whitespace. An unindented line that is neither
/// a field nor a row ends the table above it.
pub fn lines(text: &[u8]) -> impl Iterator<Item = (usize, Line<'_>)> {
    let mut table: &[u8] = b"";
    text.split(|byte| *byte == b'\n')
        .enumerate()
        .map(move |(index, line)| {
            let indented = line.first().is_some_and(u8::is_ascii_whitespace);
            let Some(colon) = line.iter().position(|byte| *byte == b':') else {
                if !indented {
                    table = b"";
                }
                return (index + 1, Line::Other);
            };
            let (key, value) = (line[..colon].trim_ascii(), line[colon + 1..].trim_ascii());
            let parsed = if !key.is_empty() && key.iter().all(u8::is_ascii_digit) {
                Line::Row {
                    table,
                    slot: key,
                    value,
                }
            } else if indented {
                Line::Other
            } else {
                table = key;
                Line::Field { key, value }
            };
            (index + 1, parsed)
        })
}

/// Reads `/proc/PID/fdinfo/FD` whole. (To read many fds of one process,
/// [`super::fd::ProcessFds`] is cheaper.)
pub fn read(process: Process, fd: i32) -> Result<Vec<u8>, ProcfsError> {
    read_file(&process.path(&format!("fdinfo/{fd}")))
}

/// The value of the first field `key` in `text`.
pub fn field<'a>(text: &'a [u8], key: &str) -> Option<&'a [u8]> {
    lines(text).find_map(|(_, line)| match line {
        Line::Field { key: found, value } if found == key.as_bytes() => Some(value),
        _ => None,
    })
}

/// A ring's NAPI busy-poll settings as its fdinfo shows them (6.9+ with
/// `CONFIG_NET_RX_BUSY_POLL`): `NAPI:` `enabled` or `disabled`; when
/// enabled, `napi tracking:` (6.13+: `dynamic`, `static`),
/// `napi_busy_poll_dt:` in nanoseconds and `napi_prefer_busy_poll:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NapiFdinfo {
    pub enabled: bool,
    /// `None` before 6.13 (dynamic tracking only) or when disabled.
    pub tracking: Option<String>,
    pub busy_poll_dt_ns: Option<u64>,
    pub prefer_busy_poll: Option<bool>,
}

/// The NAPI lines of a ring's fdinfo text; `None` when it has none (a
/// kernel before 6.9 or without `CONFIG_NET_RX_BUSY_POLL`, or a ring whose
/// lock was taken, which shows only the common lines).
pub fn napi(text: &[u8]) -> Option<NapiFdinfo> {
    let enabled = field(text, "NAPI")? == b"enabled";
    let text_of =
        |key: &str| field(text, key).map(|value| String::from_utf8_lossy(value).into_owned());
    Some(NapiFdinfo {
        enabled,
        tracking: text_of("napi tracking"),
        busy_poll_dt_ns: text_of("napi_busy_poll_dt").and_then(|value| value.parse().ok()),
        prefer_busy_poll: text_of("napi_prefer_busy_poll").map(|value| value == "true"),
    })
}

/// What the fdinfo of an fd says on every tested kernel (6.1 to 6.18),
/// for comparing an fd a process holds with a recorded one: the common
/// `pos` and `flags`, and an eventfd's `eventfd-count` and
/// `eventfd-semaphore`, which 6.1 does not print (then `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommonFdinfo {
    /// `pos`: the file position.
    pub pos: i64,
    /// `flags`: `f_flags`, plus `O_CLOEXEC` for a close-on-exec fd.
    pub flags: u32,
    /// `eventfd-count`, for an eventfd.
    pub eventfd_count: Option<u64>,
    /// `eventfd-semaphore`, for an eventfd on a kernel that prints it.
    pub eventfd_semaphore: Option<bool>,
}

impl CommonFdinfo {
    /// Reads the first of each key in `text` (read from `path`, which
    /// errors name); other keys are ignored. A missing `pos` or `flags`,
    /// or a bad value, is an error.
    pub fn parse(path: &Path, text: &[u8]) -> Result<CommonFdinfo, ProcfsError> {
        let mut pos = None;
        let mut flags = None;
        let mut eventfd_count = None;
        let mut eventfd_semaphore = None;
        for (line, entry) in lines(text) {
            let Line::Field { key, value } = entry else {
                continue;
            };
            match key {
                b"pos" if pos.is_none() => pos = Some(parse_number(path, line, "pos", value, 10)?),
                b"flags" if flags.is_none() => {
                    flags = Some(parse_number(path, line, "flags", value, 8)?);
                }
                b"eventfd-count" if eventfd_count.is_none() => {
                    eventfd_count = Some(parse_number(path, line, "eventfd-count", value, 16)?);
                }
                b"eventfd-semaphore" if eventfd_semaphore.is_none() => {
                    eventfd_semaphore = Some(match value {
                        b"0" => false,
                        b"1" => true,
                        _ => return Err(bad_value(path, line, "eventfd-semaphore", value)),
                    });
                }
                _ => {}
            }
        }
        Ok(CommonFdinfo {
            pos: pos.ok_or_else(|| missing(path, "pos"))?,
            flags: flags.ok_or_else(|| missing(path, "flags"))?,
            eventfd_count,
            eventfd_semaphore,
        })
    }
}

/// The `UserFiles:` rows of a ring's fdinfo: slot → path, unescaped. Rows
/// whose slot is not a number are skipped; the kernel prints rows only
/// when it gets the ring's lock at once, so a slot without a row may be
/// empty or unknown. On 6.1 a row holds the file's name, and `<none>` for
/// an empty slot.
pub fn user_file_rows(text: &[u8]) -> BTreeMap<u32, Vec<u8>> {
    lines(text)
        .filter_map(|(_, line)| match line {
            Line::Row {
                table: b"UserFiles",
                slot,
                value,
            } => {
                let slot = std::str::from_utf8(slot).ok()?.parse().ok()?;
                Some((slot, unescape_octal(value)))
            }
            _ => None,
        })
        .collect()
}

/// One fdinfo file, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fdinfo {
    /// `pos`: the file position.
    pub pos: i64,
    /// `flags`: `f_flags`, plus `O_CLOEXEC` for a close-on-exec fd.
    pub flags: u32,
    /// `ino`: the inode number (each ring has an anonymous inode of its
    /// own; eventfds share one).
    pub ino: Option<u64>,
    /// Only for a ring fd.
    pub ring: Option<RingFdinfo>,
    /// Only for an eventfd.
    pub eventfd: Option<EventfdFdinfo>,
}

/// The ring part of a ring's fdinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingFdinfo {
    /// `SqMask` + 1.
    pub sq_entries: u32,
    /// `CqMask` + 1.
    pub cq_entries: u32,
    /// `SqThread`: the SQ thread's thread id, `None` for -1. The same for
    /// every ring sharing the thread; until a new SQ thread first runs it
    /// is its creator's id.
    pub sq_thread: Option<u32>,
    /// `SqThreadCpu`, `None` for -1.
    pub sq_thread_cpu: Option<u32>,
    /// `UserFiles`: the registered file table's size.
    pub user_files: u32,
    /// The occupied slots in ascending order, with the path when it is
    /// UTF-8.
    pub files: Vec<(u32, Option<String>)>,
    /// `UserBufs` rows: every slot of the buffer table.
    pub buffers: Vec<Option<UserBuf>>,
}

/// A registered buffer, `0xADDR/LEN` in a `UserBufs:` row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserBuf {
    pub addr: u64,
    pub len: u64,
}

/// The eventfd part of an eventfd's fdinfo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventfdFdinfo {
    /// `eventfd-count` (hex in the file).
    pub count: u64,
    /// `eventfd-id`, which old kernels do not print.
    pub id: Option<u64>,
    /// `eventfd-semaphore`.
    pub semaphore: bool,
}

impl Fdinfo {
    /// Parses the fdinfo `text` of an fd of `kind`, read from `path` (which
    /// errors name). Unknown keys and rows of tables not read here are
    /// ignored; a known key with a bad value, a repeated known key, or a
    /// table whose rows do not fit its size is [`ProcfsError::Malformed`]
    /// naming the line; a ring without its part is
    /// [`ProcfsError::NoRingState`].
    pub fn parse(path: &Path, text: &[u8], kind: FdKind) -> Result<Fdinfo, ProcfsError> {
        let mut fields = Fields::default();
        for (number, line) in lines(text) {
            match line {
                Line::Row { table, slot, value } => {
                    let slot = parse_number::<u32>(path, number, "slot", slot, 10)?;
                    match (kind, table) {
                        (FdKind::Ring, b"UserFiles") => {
                            fields.file_rows.push((slot, unescape_octal_utf8(value)));
                        }
                        (FdKind::Ring, b"UserBufs") => fields
                            .buffer_rows
                            .push((slot, parse_buffer_row(path, number, value)?)),
                        _ => {}
                    }
                }
                Line::Field { key, value } => fields.read(path, number, kind, key, value)?,
                Line::Other => {}
            }
        }
        fields.finish(path, kind)
    }
}

/// The values of the keys this parser reads, as found, with the line of
/// those whose errors are found later.
#[derive(Debug, Default)]
struct Fields {
    pos: Option<i64>,
    flags: Option<u32>,
    ino: Option<u64>,
    sq_mask: Option<(u32, usize)>,
    cq_mask: Option<(u32, usize)>,
    sq_thread: Option<i32>,
    sq_thread_cpu: Option<i32>,
    user_files: Option<(u32, usize)>,
    user_bufs: Option<(u32, usize)>,
    file_rows: Vec<(u32, Option<String>)>,
    buffer_rows: Vec<(u32, Option<UserBuf>)>,
    eventfd_count: Option<u64>,
    eventfd_id: Option<u64>,
    eventfd_semaphore: Option<bool>,
}

impl Fields {
    /// Reads one field line.
    fn read(
        &mut self,
        path: &Path,
        line: usize,
        kind: FdKind,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), ProcfsError> {
        let at_line = |field| (field, line);
        match (kind, key) {
            (_, b"pos") => set(
                &mut self.pos,
                path,
                line,
                "pos",
                parse_number(path, line, "pos", value, 10)?,
            ),
            (_, b"flags") => set(
                &mut self.flags,
                path,
                line,
                "flags",
                parse_number(path, line, "flags", value, 8)?,
            ),
            (_, b"ino") => set(
                &mut self.ino,
                path,
                line,
                "ino",
                parse_number(path, line, "ino", value, 10)?,
            ),
            (FdKind::Ring, b"SqMask") => {
                let mask = parse_hex_with_prefix(path, line, "SqMask", value)?;
                set(&mut self.sq_mask, path, line, "SqMask", at_line(mask))
            }
            (FdKind::Ring, b"CqMask") => {
                let mask = parse_hex_with_prefix(path, line, "CqMask", value)?;
                set(&mut self.cq_mask, path, line, "CqMask", at_line(mask))
            }
            (FdKind::Ring, b"SqThread") => {
                let thread = parse_number(path, line, "SqThread", value, 10)?;
                set(&mut self.sq_thread, path, line, "SqThread", thread)
            }
            (FdKind::Ring, b"SqThreadCpu") => {
                let cpu = parse_number(path, line, "SqThreadCpu", value, 10)?;
                set(&mut self.sq_thread_cpu, path, line, "SqThreadCpu", cpu)
            }
            (FdKind::Ring, b"UserFiles") => {
                let count = parse_number(path, line, "UserFiles", value, 10)?;
                set(
                    &mut self.user_files,
                    path,
                    line,
                    "UserFiles",
                    at_line(count),
                )
            }
            (FdKind::Ring, b"UserBufs") => {
                let count = parse_number(path, line, "UserBufs", value, 10)?;
                set(&mut self.user_bufs, path, line, "UserBufs", at_line(count))
            }
            (FdKind::Eventfd, b"eventfd-count") => {
                let count = parse_number(path, line, "eventfd-count", value, 16)?;
                set(&mut self.eventfd_count, path, line, "eventfd-count", count)
            }
            (FdKind::Eventfd, b"eventfd-id") => {
                let id = parse_number(path, line, "eventfd-id", value, 10)?;
                set(&mut self.eventfd_id, path, line, "eventfd-id", id)
            }
            (FdKind::Eventfd, b"eventfd-semaphore") => {
                let semaphore = match value {
                    b"0" => false,
                    b"1" => true,
                    _ => return Err(bad_value(path, line, "eventfd-semaphore", value)),
                };
                set(
                    &mut self.eventfd_semaphore,
                    path,
                    line,
                    "eventfd-semaphore",
                    semaphore,
                )
            }
            _ => Ok(()),
        }
    }

    /// Checks that the fields an fd of `kind` must have are there and that
    /// the tables fit their sizes.
    fn finish(mut self, path: &Path, kind: FdKind) -> Result<Fdinfo, ProcfsError> {
        let pos = self.pos.ok_or_else(|| missing(path, "pos"))?;
        let flags = self.flags.ok_or_else(|| missing(path, "flags"))?;
        let ring = match kind {
            FdKind::Ring => Some(self.finish_ring(path)?),
            _ => None,
        };
        let eventfd = match kind {
            FdKind::Eventfd => Some(EventfdFdinfo {
                count: self
                    .eventfd_count
                    .ok_or_else(|| missing(path, "eventfd-count"))?,
                id: self.eventfd_id,
                semaphore: self
                    .eventfd_semaphore
                    .ok_or_else(|| missing(path, "eventfd-semaphore"))?,
            }),
            _ => None,
        };
        Ok(Fdinfo {
            pos,
            flags,
            ino: self.ino,
            ring,
            eventfd,
        })
    }

    fn finish_ring(&mut self, path: &Path) -> Result<RingFdinfo, ProcfsError> {
        // The kernel prints all of the ring's lines or none of them (none
        // when it could not take the ring's lock at once).
        let Some((sq_mask, sq_mask_line)) = self.sq_mask else {
            return Err(ProcfsError::NoRingState {
                path: path.to_owned(),
            });
        };
        let (cq_mask, cq_mask_line) = self.cq_mask.ok_or_else(|| missing(path, "CqMask"))?;
        let (user_files, user_files_line) =
            self.user_files.ok_or_else(|| missing(path, "UserFiles"))?;
        let (user_bufs, user_bufs_line) =
            self.user_bufs.ok_or_else(|| missing(path, "UserBufs"))?;

        // File rows: occupied slots only, ascending, each below the table size.
        let mut previous_slot = None;
        for (slot, _) in &self.file_rows {
            if *slot >= user_files || previous_slot.is_some_and(|previous| previous >= *slot) {
                let problem = format!(
                    "UserFiles rows are not ascending slots below {user_files} (slot {slot})"
                );
                return Err(ProcfsError::malformed(path, user_files_line, problem));
            }
            previous_slot = Some(*slot);
        }
        // Buffer rows: exactly one per slot, in order.
        let slots_in_order = self
            .buffer_rows
            .iter()
            .enumerate()
            .all(|(index, (slot, _))| *slot as usize == index);
        if self.buffer_rows.len() != user_bufs as usize || !slots_in_order {
            let problem =
                format!("UserBufs is {user_bufs} but the rows are not slots 0..{user_bufs}");
            return Err(ProcfsError::malformed(path, user_bufs_line, problem));
        }
        let entries = |mask: u32, line: usize, key: &str| {
            mask.checked_add(1).ok_or_else(|| {
                ProcfsError::malformed(path, line, format!("{key} {mask:#x} is not a size - 1"))
            })
        };
        Ok(RingFdinfo {
            sq_entries: entries(sq_mask, sq_mask_line, "SqMask")?,
            cq_entries: entries(cq_mask, cq_mask_line, "CqMask")?,
            sq_thread: self
                .sq_thread
                .map(|thread| u32::try_from(thread).ok())
                .ok_or_else(|| missing(path, "SqThread"))?,
            sq_thread_cpu: self
                .sq_thread_cpu
                .map(|cpu| u32::try_from(cpu).ok())
                .ok_or_else(|| missing(path, "SqThreadCpu"))?,
            user_files,
            files: std::mem::take(&mut self.file_rows),
            buffers: self.buffer_rows.iter().map(|(_, buffer)| *buffer).collect(),
        })
    }
}

/// Stores a key's value, refusing a second one.
fn set<T>(
    field: &mut Option<T>,
    path: &Path,
    line: usize,
    key: &str,
    value: T,
) -> Result<(), ProcfsError> {
    if field.is_some() {
        return Err(ProcfsError::malformed(
            path,
            line,
            format!("{key} appears twice"),
        ));
    }
    *field = Some(value);
    Ok(())
}

/// A `0xADDR/LEN` or `<none>` buffer row value.
fn parse_buffer_row(
    path: &Path,
    line: usize,
    value: &[u8],
) -> Result<Option<UserBuf>, ProcfsError> {
    if value == b"<none>" {
        return Ok(None);
    }
    let Some(slash) = value.iter().position(|byte| *byte == b'/') else {
        return Err(bad_value(path, line, "UserBufs row", value));
    };
    let addr = parse_hex_with_prefix(path, line, "buffer address", &value[..slash])?;
    let len = parse_number(path, line, "buffer length", &value[slash + 1..], 10)?;
    Ok(Some(UserBuf { addr, len }))
}

/// A hex number written with a `0x` prefix.
fn parse_hex_with_prefix<T: ParseRadix>(
    path: &Path,
    line: usize,
    what: &str,
    text: &[u8],
) -> Result<T, ProcfsError> {
    match text.strip_prefix(b"0x") {
        Some(digits) => parse_number(path, line, what, digits, 16),
        None => Err(bad_value(path, line, what, text)),
    }
}

/// The integer types fdinfo values are parsed into.
trait ParseRadix: Sized {
    fn parse_radix(text: &str, radix: u32) -> Option<Self>;
}

macro_rules! impl_parse_radix {
    ($($type:ty),*) => {$(
        impl ParseRadix for $type {
            fn parse_radix(text: &str, radix: u32) -> Option<Self> {
                <$type>::from_str_radix(text, radix).ok()
            }
        }
    )*};
}
impl_parse_radix!(u32, i32, u64, i64);

fn parse_number<T: ParseRadix>(
    path: &Path,
    line: usize,
    what: &str,
    text: &[u8],
    radix: u32,
) -> Result<T, ProcfsError> {
    std::str::from_utf8(text)
        .ok()
        .filter(|text| !text.starts_with('+'))
        .and_then(|text| T::parse_radix(text, radix))
        .ok_or_else(|| bad_value(path, line, what, text))
}

fn bad_value(path: &Path, line: usize, what: &str, text: &[u8]) -> ProcfsError {
    ProcfsError::malformed(
        path,
        line,
        format!("bad {what} {:?}", String::from_utf8_lossy(text)),
    )
}

fn missing(path: &Path, key: &'static str) -> ProcfsError {
    ProcfsError::MissingKey {
        path: path.to_owned(),
        key,
    }
}

/// The positions and pending entries of a ring's fdinfo (`SqHead` ..
/// `CachedCqTail`, `SQEs:`, `CQEs:`, `CqOverflowList:` rows).
pub mod queues;

#[cfg(test)]
mod tests;
