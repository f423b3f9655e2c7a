//! Parsing the byte stream the BPF programs write (`bpf/ringplan_records.h`),
//! and the request values pass B reads.
//!
//! The stream comes from the kernel and is treated as untrusted input: every
//! length is checked, and anything that does not parse is a
//! [`MalformedRecord`], never a panic. Sizes and field order mirror the C
//! structs exactly; the C side pins them with `_Static_assert`, and the
//! constants here repeat those sizes. Change both together.

use std::fmt;

/// `struct rp_header`: kind and total size.
const HEADER_LEN: usize = 8;
const FD_RECORD_LEN: usize = 72;
const RING_RECORD_LEN: usize = 96;
const EVENTFD_RECORD_LEN: usize = 32;
const CHUNK_RECORD_LEN: usize = 48;
const FILE_SLOT_RECORD_LEN: usize = 64;
const BUFFER_SLOT_RECORD_LEN: usize = 32;
const PROBE_RECORD_LEN: usize = 24;
/// `RP_PATH_MAX`: the longest path the program writes.
const PATH_MAX: usize = 4096;

const KIND_FD: u32 = 1;
const KIND_RING: u32 = 2;
const KIND_EVENTFD: u32 = 3;
const KIND_CHUNK: u32 = 4;
const KIND_FILE_SLOT: u32 = 5;
const KIND_BUFFER_SLOT: u32 = 6;
const KIND_PROBE: u32 = 7;

/// `RP_READ_BUFFER_SIZE`: the read() size that keeps the kernel from
/// re-showing an object (see the sizing note in ringplan_records.h).
pub(crate) const READ_BUFFER_SIZE: usize = 8192;
/// `RP_FILE_SLOTS_PER_CHUNK`: the most file slots one chunk request reads.
pub(crate) const FILE_SLOTS_PER_CHUNK: u32 = 320;
/// `RP_BUFFER_SLOTS_PER_CHUNK`: the most buffer slots one chunk request reads.
pub(crate) const BUFFER_SLOTS_PER_CHUNK: u32 = 640;
/// `MAX_CHUNK_REQUESTS`: capacity of the chunk_requests map.
pub(crate) const MAX_CHUNK_REQUESTS: usize = 1024;

/// `enum rp_file_role`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Plain,
    Ring,
    Eventfd,
}

impl Role {
    fn from_raw(raw: u32) -> Result<Role, &'static str> {
        match raw {
            0 => Ok(Role::Plain),
            1 => Ok(Role::Ring),
            2 => Ok(Role::Eventfd),
            _ => Err("unknown file role"),
        }
    }
}

/// `enum rp_layout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    Unknown,
    RsrcNodes,
    FixedFiles,
}

impl Layout {
    fn from_raw(raw: u32) -> Result<Layout, &'static str> {
        match raw {
            0 => Ok(Layout::Unknown),
            1 => Ok(Layout::RsrcNodes),
            2 => Ok(Layout::FixedFiles),
            _ => Err("unknown layout"),
        }
    }
}

/// `enum rp_table`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Table {
    Files,
    Buffers,
}

impl Table {
    pub(crate) fn to_raw(self) -> u32 {
        match self {
            Table::Files => 1,
            Table::Buffers => 2,
        }
    }

    fn from_raw(raw: u32) -> Result<Table, &'static str> {
        match raw {
            1 => Ok(Table::Files),
            2 => Ok(Table::Buffers),
            _ => Err("unknown table"),
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Table::Files => "file",
            Table::Buffers => "buffer",
        })
    }
}

/// `enum rp_request_kind`: what a pass-B request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestKind {
    /// A range of a registered table.
    Chunk,
    /// The ring's header.
    Ring,
    /// The file's f_op.
    Probe,
}

impl RequestKind {
    fn to_raw(self) -> u32 {
        match self {
            RequestKind::Chunk => 0,
            RequestKind::Ring => 1,
            RequestKind::Probe => 2,
        }
    }
}

/// `enum rp_chunk_status`, of chunk and ring records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChunkStatus {
    Ok,
    OtherRing,
    UnknownLayout,
}

impl ChunkStatus {
    fn from_raw(raw: u32) -> Result<ChunkStatus, &'static str> {
        match raw {
            0 => Ok(ChunkStatus::Ok),
            2 => Ok(ChunkStatus::OtherRing),
            3 => Ok(ChunkStatus::UnknownLayout),
            _ => Err("unknown chunk status"),
        }
    }
}

/// `struct rp_fd_record` and the path after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FdRecord<'a> {
    pub file: u64,
    pub f_op: u64,
    pub private_data: u64,
    pub pos: i64,
    pub inode_number: u64,
    pub fd: u32,
    pub flags: u32,
    pub mode: u32,
    pub role: Role,
    pub cloexec: bool,
    /// The d_path text, when d_path gave one.
    pub path: Option<&'a [u8]>,
}

/// `struct rp_ring_record` (pass B; `fd` is the dumper's local fd).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RingRecord {
    pub ctx: u64,
    pub sq_data: u64,
    pub eventfd_ctx: u64,
    pub eventfd_count: u64,
    pub inode_number: u64,
    pub fd: u32,
    pub flags: u32,
    pub sq_entries: u32,
    pub cq_entries: u32,
    pub sq_thread_idle_jiffies: u32,
    pub sq_cpu: i32,
    pub eventfd_async: bool,
    pub eventfd_flags: u32,
    pub file_slots: u32,
    pub buffer_slots: u32,
    pub layout: Layout,
    pub status: ChunkStatus,
}

/// `struct rp_eventfd_record`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EventfdRecord {
    pub ctx: u64,
    pub count: u64,
    pub flags: u32,
    pub fd: u32,
}

/// `struct rp_chunk_record`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkRecord {
    pub ctx: u64,
    pub fd: u32,
    pub table: Table,
    pub start: u32,
    pub scanned: u32,
    pub table_size: u32,
    pub status: ChunkStatus,
    pub sq_thread_idle_jiffies: u32,
    pub layout: Layout,
}

/// `struct rp_file_slot_record`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileSlotRecord {
    pub file: u64,
    pub f_op: u64,
    pub private_data: u64,
    pub pos: i64,
    pub eventfd_count: u64,
    pub index: u32,
    pub flags: u32,
    pub mode: u32,
    pub eventfd_flags: u32,
}

/// `struct rp_buffer_slot_record`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BufferSlotRecord {
    pub addr: u64,
    pub len: u64,
    pub index: u32,
    pub kernel_buffer: bool,
}

/// `struct rp_probe_record`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProbeRecord {
    pub f_op: u64,
    pub fd: u32,
}

/// One record of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record<'a> {
    Fd(FdRecord<'a>),
    Ring(RingRecord),
    Eventfd(EventfdRecord),
    Chunk(ChunkRecord),
    FileSlot(FileSlotRecord),
    BufferSlot(BufferSlotRecord),
    Probe(ProbeRecord),
}

/// A record that does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MalformedRecord {
    /// Byte offset of the record's header in the stream.
    pub offset: usize,
    pub reason: String,
}

/// The records of one iterator's output, in order.
pub(crate) struct Records<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Records<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Records { bytes, offset: 0 }
    }

    fn malformed(&mut self, offset: usize, reason: impl Into<String>) -> MalformedRecord {
        // Stop after the first error: what follows cannot be framed.
        self.offset = self.bytes.len();
        MalformedRecord {
            offset,
            reason: reason.into(),
        }
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>, MalformedRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        let offset = self.offset;
        let rest = self.bytes.get(offset..)?;
        if rest.is_empty() {
            return None;
        }
        let mut header = Cursor::new(rest);
        let (kind, size) = match (header.u32(), header.u32()) {
            (Ok(kind), Ok(size)) => (kind, size as usize),
            _ => {
                return Some(Err(self.malformed(
                    offset,
                    format!("truncated header ({} bytes left)", rest.len()),
                )))
            }
        };
        let Some(record) = rest.get(..size).filter(|_| size >= HEADER_LEN) else {
            return Some(Err(self.malformed(
                offset,
                format!("size {size} does not fit ({} bytes left)", rest.len()),
            )));
        };
        self.offset = offset + size;
        match parse_record(kind, record) {
            Ok(parsed) => Some(Ok(parsed)),
            Err(reason) => Some(Err(
                self.malformed(offset, format!("kind {kind}, size {size}: {reason}"))
            )),
        }
    }
}

/// Parses one whole record (header included) of `kind`.
fn parse_record(kind: u32, record: &[u8]) -> Result<Record<'_>, &'static str> {
    let expect_len = |len: usize| {
        if record.len() == len {
            Ok(())
        } else {
            Err("wrong size for its kind")
        }
    };
    let mut c = Cursor::new(record.get(HEADER_LEN..).ok_or("shorter than a header")?);
    match kind {
        KIND_FD => {
            if record.len() < FD_RECORD_LEN {
                return Err("shorter than an fd record");
            }
            let file = c.u64()?;
            let f_op = c.u64()?;
            let private_data = c.u64()?;
            let pos = c.i64()?;
            let inode_number = c.u64()?;
            let fd = c.u32()?;
            let flags = c.u32()?;
            let mode = c.u32()?;
            let role = Role::from_raw(c.u32()?)?;
            let cloexec = c.u32()? != 0;
            let path_len = c.i32()?;
            // A negative length is d_path's error: no path, nothing follows.
            let path_len = usize::try_from(path_len).unwrap_or(0);
            if path_len > PATH_MAX {
                return Err("path longer than PATH_MAX");
            }
            expect_len(FD_RECORD_LEN + path_len)?;
            let path = if path_len == 0 {
                None
            } else {
                Some(c.bytes(path_len)?)
            };
            Ok(Record::Fd(FdRecord {
                file,
                f_op,
                private_data,
                pos,
                inode_number,
                fd,
                flags,
                mode,
                role,
                cloexec,
                path,
            }))
        }
        KIND_RING => {
            expect_len(RING_RECORD_LEN)?;
            Ok(Record::Ring(RingRecord {
                ctx: c.u64()?,
                sq_data: c.u64()?,
                eventfd_ctx: c.u64()?,
                eventfd_count: c.u64()?,
                inode_number: c.u64()?,
                fd: c.u32()?,
                flags: c.u32()?,
                sq_entries: c.u32()?,
                cq_entries: c.u32()?,
                sq_thread_idle_jiffies: c.u32()?,
                sq_cpu: c.i32()?,
                eventfd_async: c.u32()? != 0,
                eventfd_flags: c.u32()?,
                file_slots: c.u32()?,
                buffer_slots: c.u32()?,
                layout: Layout::from_raw(c.u32()?)?,
                status: ChunkStatus::from_raw(c.u32()?)?,
            }))
        }
        KIND_EVENTFD => {
            expect_len(EVENTFD_RECORD_LEN)?;
            Ok(Record::Eventfd(EventfdRecord {
                ctx: c.u64()?,
                count: c.u64()?,
                flags: c.u32()?,
                fd: c.u32()?,
            }))
        }
        KIND_CHUNK => {
            expect_len(CHUNK_RECORD_LEN)?;
            Ok(Record::Chunk(ChunkRecord {
                ctx: c.u64()?,
                fd: c.u32()?,
                table: Table::from_raw(c.u32()?)?,
                start: c.u32()?,
                scanned: c.u32()?,
                table_size: c.u32()?,
                status: ChunkStatus::from_raw(c.u32()?)?,
                sq_thread_idle_jiffies: c.u32()?,
                layout: Layout::from_raw(c.u32()?)?,
            }))
        }
        KIND_FILE_SLOT => {
            expect_len(FILE_SLOT_RECORD_LEN)?;
            Ok(Record::FileSlot(FileSlotRecord {
                file: c.u64()?,
                f_op: c.u64()?,
                private_data: c.u64()?,
                pos: c.i64()?,
                eventfd_count: c.u64()?,
                index: c.u32()?,
                flags: c.u32()?,
                mode: c.u32()?,
                eventfd_flags: c.u32()?,
            }))
        }
        KIND_BUFFER_SLOT => {
            expect_len(BUFFER_SLOT_RECORD_LEN)?;
            Ok(Record::BufferSlot(BufferSlotRecord {
                addr: c.u64()?,
                len: c.u64()?,
                index: c.u32()?,
                kernel_buffer: c.u32()? != 0,
            }))
        }
        KIND_PROBE => {
            expect_len(PROBE_RECORD_LEN)?;
            Ok(Record::Probe(ProbeRecord {
                f_op: c.u64()?,
                fd: c.u32()?,
            }))
        }
        _ => Err("unknown kind"),
    }
}

/// Reads native-endian fields in order; running off the end is an error.
struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Cursor { bytes }
    }

    fn bytes(&mut self, len: usize) -> Result<&'a [u8], &'static str> {
        if self.bytes.len() < len {
            return Err("truncated");
        }
        let (head, tail) = self.bytes.split_at(len);
        self.bytes = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], &'static str> {
        self.bytes(N)?.try_into().map_err(|_| "truncated")
    }

    fn u32(&mut self) -> Result<u32, &'static str> {
        self.array().map(u32::from_ne_bytes)
    }

    fn i32(&mut self) -> Result<i32, &'static str> {
        self.array().map(i32::from_ne_bytes)
    }

    fn u64(&mut self) -> Result<u64, &'static str> {
        self.array().map(u64::from_ne_bytes)
    }

    fn i64(&mut self) -> Result<i64, &'static str> {
        self.array().map(i64::from_ne_bytes)
    }
}

/// The value bytes of `struct rp_chunk_request` for the chunk_requests map
/// (`table`, `start` and `count` matter only to chunk requests).
pub(crate) fn chunk_request_bytes(
    expected_ctx: u64,
    kind: RequestKind,
    table: Table,
    start: u32,
    count: u32,
) -> [u8; 24] {
    let mut value = [0u8; 24];
    value[0..8].copy_from_slice(&expected_ctx.to_ne_bytes());
    value[8..12].copy_from_slice(&table.to_raw().to_ne_bytes());
    value[12..16].copy_from_slice(&start.to_ne_bytes());
    value[16..20].copy_from_slice(&count.to_ne_bytes());
    value[20..24].copy_from_slice(&kind.to_raw().to_ne_bytes());
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: u32, size: usize) -> Vec<u8> {
        let mut bytes = kind.to_ne_bytes().to_vec();
        bytes.extend_from_slice(&u32::try_from(size).unwrap_or(u32::MAX).to_ne_bytes());
        bytes
    }

    fn fd_record(path: &[u8]) -> Vec<u8> {
        let mut bytes = header(KIND_FD, FD_RECORD_LEN + path.len());
        for value in [0xffff_8880_0000_1000u64, 0xffff_ffff_8200_0000, 0, 17, 42] {
            bytes.extend_from_slice(&value.to_ne_bytes());
        }
        for value in [3u32, 0o2, 0o100644, 0, 1] {
            bytes.extend_from_slice(&value.to_ne_bytes());
        }
        bytes.extend_from_slice(&i32::try_from(path.len()).unwrap_or(i32::MAX).to_ne_bytes());
        bytes.extend_from_slice(path);
        bytes
    }

    #[test]
    fn parses_an_fd_record_with_its_path() {
        let bytes = fd_record(b"/tmp/x");
        let records: Vec<_> = Records::new(&bytes).collect();
        assert_eq!(records.len(), 1);
        let Ok(Record::Fd(fd)) = &records[0] else {
            panic!("not an fd record: {records:?}")
        };
        assert_eq!(fd.fd, 3);
        assert_eq!(fd.f_op, 0xffff_ffff_8200_0000);
        assert_eq!(fd.pos, 17);
        assert_eq!(fd.inode_number, 42);
        assert!(fd.cloexec);
        assert_eq!(fd.path, Some(&b"/tmp/x"[..]));
    }

    #[test]
    fn truncated_and_oversized_records_are_errors_not_panics() {
        let bytes = fd_record(b"/tmp/x");
        for cut in 0..bytes.len() {
            let results: Vec<_> = Records::new(&bytes[..cut]).collect();
            if cut == 0 {
                assert!(results.is_empty());
            } else {
                assert!(
                    results.iter().any(Result::is_err),
                    "cut at {cut} parsed: {results:?}"
                );
            }
        }
        let mut lying = header(KIND_RING, 4);
        lying.extend_from_slice(&[0; 8]);
        assert!(Records::new(&lying).next().is_some_and(|r| r.is_err()));
        let unknown = header(99, 8);
        assert!(Records::new(&unknown).next().is_some_and(|r| r.is_err()));
    }

    #[test]
    fn errors_stop_the_stream() {
        let mut bytes = header(99, 8);
        bytes.extend(fd_record(b"/a"));
        let results: Vec<_> = Records::new(&bytes).collect();
        assert_eq!(results.len(), 1);
        assert!(results[0].is_err());
    }
}
