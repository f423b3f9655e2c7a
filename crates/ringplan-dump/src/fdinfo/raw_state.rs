//! Parsed fdinfo → [`RawState`]: one fd at a time, with stand-in identities
//! (file keys, eventfd keys) kept consistent across the fds of one read.
//! What each fdinfo line becomes is said in the [module doc](super).

use std::collections::HashMap;

use ringplan_image::Buffer;
use ringplan_kernel::procfs::fd::{FdKind, ProcessFds};
use ringplan_kernel::procfs::fdinfo::RingFdinfo;
use ringplan_kernel::procfs::ProcfsError;

// fdinfo's `flags:` carries `O_CLOEXEC` for a close-on-exec fd;
// `O_NONBLOCK` equals `EFD_NONBLOCK`.
use ringplan_kernel::abi::linux::{EFD_SEMAPHORE, O_CLOEXEC, O_NONBLOCK};

use super::{read_settled_fdinfo, FdinfoError};
use crate::raw::{
    EventfdKey, FileKey, Known, RawEventfd, RawFdEntry, RawFile, RawFileRole, RawRing, RawState,
    RingKey,
};

/// Eventfd keys made up for eventfds whose fdinfo has no `eventfd-id` (old
/// kernels) start here, far above any id the kernel hands out.
const FIRST_ANONYMOUS_EVENTFD_KEY: EventfdKey = 1 << 63;

/// Builds a [`RawState`] one fd at a time, keeping the stand-in identities
/// consistent across fds.
#[derive(Debug)]
pub(super) struct StateBuilder {
    state: RawState,
    next_file_key: FileKey,
    next_anonymous_eventfd_key: EventfdKey,
    /// The file of each ring and each eventfd already seen at another fd.
    ring_files: HashMap<RingKey, FileKey>,
    eventfd_files: HashMap<EventfdKey, FileKey>,
}

impl Default for StateBuilder {
    fn default() -> Self {
        StateBuilder {
            state: RawState::default(),
            next_file_key: 1,
            next_anonymous_eventfd_key: FIRST_ANONYMOUS_EVENTFD_KEY,
            ring_files: HashMap::new(),
            eventfd_files: HashMap::new(),
        }
    }
}

impl StateBuilder {
    /// The state of every fd added.
    pub(super) fn into_state(self) -> RawState {
        self.state
    }

    fn new_file(&mut self, file: RawFile) -> FileKey {
        let key = self.next_file_key;
        self.next_file_key += 1;
        self.state.files.insert(key, file);
        key
    }

    /// Reads one fd. An fd closed in the meantime is skipped.
    pub(super) fn add_fd(&mut self, process: &mut ProcessFds, fd: i32) -> Result<(), FdinfoError> {
        let Some(link) = process.read_link(fd)? else {
            return Ok(());
        };
        let kind = FdKind::of_link(link);
        // A path that is not UTF-8 cannot be carried; `None` says unknown.
        let path = std::str::from_utf8(link).ok().map(str::to_owned);
        let Some(fdinfo) = read_settled_fdinfo(process, fd, kind)? else {
            return Ok(());
        };
        let cloexec = fdinfo.flags & O_CLOEXEC != 0;
        let file_flags = fdinfo.flags & !O_CLOEXEC;

        let file = match (kind, fdinfo.ring, fdinfo.eventfd) {
            (FdKind::Ring, Some(ring), _) => {
                let ring_key: RingKey = fdinfo.ino.ok_or_else(|| ProcfsError::MissingKey {
                    path: process.fdinfo_path(fd),
                    key: "ino",
                })?;
                match self.ring_files.get(&ring_key) {
                    Some(file) => *file,
                    None => {
                        let raw_file = RawFile {
                            role: RawFileRole::Ring(ring_key),
                            path,
                            flags: Some(file_flags),
                            pos: Some(fdinfo.pos),
                            mode: None,
                        };
                        let file = self.new_file(raw_file);
                        self.ring_files.insert(ring_key, file);
                        let ring = self.ring_from_fdinfo(ring_key, ring);
                        self.state.rings.insert(ring_key, ring);
                        file
                    }
                }
            }
            (FdKind::Eventfd, _, Some(eventfd_fdinfo)) => {
                let eventfd_key = eventfd_fdinfo.id.unwrap_or_else(|| {
                    let key = self.next_anonymous_eventfd_key;
                    self.next_anonymous_eventfd_key += 1;
                    key
                });
                match self.eventfd_files.get(&eventfd_key) {
                    Some(file) => *file,
                    None => {
                        let raw_file = RawFile {
                            role: RawFileRole::Eventfd(eventfd_key),
                            path,
                            flags: Some(file_flags),
                            pos: Some(fdinfo.pos),
                            mode: None,
                        };
                        let file = self.new_file(raw_file);
                        self.eventfd_files.insert(eventfd_key, file);
                        // fdinfo shows the semaphore flag; whether it was
                        // created non-blocking is read off the file's flags,
                        // which is what fcntl left there.
                        let semaphore = if eventfd_fdinfo.semaphore {
                            EFD_SEMAPHORE
                        } else {
                            0
                        };
                        let eventfd = RawEventfd {
                            count: eventfd_fdinfo.count,
                            flags: semaphore | (file_flags & O_NONBLOCK),
                        };
                        self.state.eventfds.insert(eventfd_key, eventfd);
                        file
                    }
                }
            }
            // Plain files (`Fdinfo::parse` gives the ring and eventfd parts
            // for every ring and eventfd).
            _ => {
                let Some(mode) = process.mode(fd)? else {
                    return Ok(());
                };
                let raw_file = RawFile {
                    role: RawFileRole::Plain,
                    path,
                    flags: Some(file_flags),
                    pos: Some(fdinfo.pos),
                    mode: Some(mode),
                };
                self.new_file(raw_file)
            }
        };
        self.state.fds.push(RawFdEntry { fd, cloexec, file });
        Ok(())
    }

    fn ring_from_fdinfo(&mut self, ring_key: RingKey, ring: RingFdinfo) -> RawRing {
        let mut files = vec![None; ring.user_files as usize];
        for (slot, file_path) in ring.files {
            let file = RawFile {
                role: RawFileRole::Plain,
                path: file_path,
                flags: None,
                pos: None,
                mode: None,
            };
            files[slot as usize] = Some(self.new_file(file));
        }
        RawRing {
            inode: Some(ring_key),
            flags: None,
            sq_entries: ring.sq_entries,
            cq_entries: ring.cq_entries,
            sq_thread: ring.sq_thread.map(u64::from),
            sq_thread_cpu: ring.sq_thread_cpu,
            sq_thread_idle_ms: None,
            idle_known: false,
            eventfd: Known::Unknown,
            files,
            buffers: ring
                .buffers
                .into_iter()
                .map(|buffer| {
                    buffer.map(|buffer| Buffer {
                        addr: buffer.addr,
                        len: buffer.len,
                    })
                })
                .collect(),
            // fdinfo shows the positions and the entries, but not the
            // setup flags that say how to read the entries (SQE128,
            // CQE32, NO_SQARRAY), the SQ flags or the owner: the state is
            // unknown rather than half read.
            state: None,
            // fdinfo lists personalities with CapEff only, and no
            // restrictions.
            personalities: Known::Unknown,
            restrictions: Known::Unknown,
            // fdinfo does not list buffer groups.
            buffer_groups: Known::Unknown,
            settings: Known::Unknown,
            registered_ring_fds: Known::Unknown,
            wait_region: None,
        }
    }
}
