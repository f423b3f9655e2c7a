//! [`BpfDumper`]: loads the program and runs the two passes over a target,
//! pass A once over the target's fds and pass B in rounds of requests over
//! the dumper's own fds, feeding what they write into a [`Reading`].

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use libbpf_rs::libbpf_sys;
use libbpf_rs::{MapCore, MapFlags};
use ringplan_kernel::abi::SetupFlags;

use super::error::{malformed, BpfError, Pass};
use super::hz::{tick_hz, HZ_PROBE_IDLE_MS};
use super::iterator::{attach_task_iterator, drain_iterator};
use super::loaded_skeleton::{LoadedSkeleton, Programs};
use super::local_fds::{copy_target_fd, fd_number};
use super::page_frames::{PageFrames, ProbeRing};
use super::reading::{Fops, Reading};
use super::records::{self, ChunkStatus, Record, Records, Table};
use super::requests::{Planned, Request, RequestMapGuard, Want};
use crate::raw::{RawFdEntry, RawState};

/// Requests per pass-B iterator run. Each costs the dumper one fd for
/// the duration of the run, so this also bounds the fds the dumper opens.
const CHUNKS_PER_ROUND: usize = 256;
const _: () = assert!(CHUNKS_PER_ROUND <= records::MAX_CHUNK_REQUESTS);

/// A loaded BPF reader, reusable for several dumps.
pub struct BpfDumper {
    /// Passes A, T and B.
    skeleton: LoadedSkeleton,
    /// The personality, buffer-group and pending-request walks
    /// (`ringplan_walk_fds`), loaded the first time a ring has
    /// personalities or groups, or requests in flight, and kept for later
    /// dumps.
    walks: Option<LoadedSkeleton>,
    /// The kernel's io_uring and eventfd `file_operations` addresses,
    /// learnt at load from files of the dumper's own.
    fops: Fops,
    /// The dumper's pid as its own pid namespace numbers it (what a task
    /// iterator link's `pid` means).
    self_pid: u32,
    /// HZ measured once, when the clock's resolution does not say.
    pub(super) measured_hz: Option<u32>,
    /// The `struct page` array, measured once, when a NO_MMAP ring needs it.
    page_frames: Option<PageFrames>,
    /// List nodes the legacy groups' walks read in the last read.
    legacy_nodes_visited: u64,
}

impl BpfDumper {
    /// Loads and verifies the BPF programs, and learns the io_uring and
    /// eventfd `file_operations` from a ring and an eventfd of the dumper's
    /// own. Fails with [`BpfError::Unavailable`] when BPF cannot be used, or
    /// [`BpfError::LayoutNotRecognised`] when the kernel's io_uring
    /// structures lack a field the program reads.
    pub fn load() -> Result<BpfDumper, BpfError> {
        // An unreadable namespace link leaves the check to what follows.
        if ringplan_kernel::procfs::status::in_initial_pid_namespace(
            ringplan_kernel::procfs::Process::Current,
        )
        .ok()
            == Some(false)
        {
            return Err(BpfError::ChildPidNamespace);
        }
        let self_pid = rustix::process::getpid()
            .as_raw_nonzero()
            .get()
            .unsigned_abs();
        let mut dumper = BpfDumper {
            skeleton: LoadedSkeleton::load(Programs::Passes)?,
            walks: None,
            fops: Fops::default(),
            self_pid,
            measured_hz: None,
            page_frames: None,
            legacy_nodes_visited: 0,
        };
        dumper.fops = dumper.probe_fops()?;
        if let Some(bss) = dumper.skeleton.skeleton.maps.bss_data.as_deref_mut() {
            bss.ring_fops = dumper.fops.ring;
            bss.eventfd_fops = dumper.fops.eventfd;
        }
        Ok(dumper)
    }

    /// The `f_op` of a fresh ring and eventfd of the dumper's own, read by
    /// pass B's program over the dumper's own fds. Kernels before 6.1 load
    /// the program but refuse a task iterator limited to one process; this
    /// finds out too, while a caller can still choose another backend.
    fn probe_fops(&mut self) -> Result<Fops, BpfError> {
        let unavailable = |stage: &'static str, error: io::Error| BpfError::Unavailable {
            stage,
            source: libbpf_rs::Error::from(error),
        };
        let mut params = rustix::io_uring::io_uring_params::default();
        // SAFETY: io_uring_setup only fills `params`; the ring is never
        // mapped or submitted to, so the kernel never writes our memory.
        let ring = unsafe { rustix::io_uring::io_uring_setup(1, &mut params) }
            .map_err(|errno| unavailable("setting up a probe io_uring", errno.into()))?;
        let eventfd = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC)
            .map_err(|errno| unavailable("creating a probe eventfd", errno.into()))?;
        let requests = [
            Request {
                local_fd: ring,
                expected_ctx: 0,
                by_pointer: false,
                want: Want::Probe,
            },
            Request {
                local_fd: eventfd,
                expected_ctx: 0,
                by_pointer: false,
                want: Want::Probe,
            },
        ];
        let bytes = match self.run_chunk_round(Programs::Passes, &requests) {
            Err(BpfError::Attach { source, .. }) => {
                return Err(unavailable(
                    "attaching a task iterator limited to one process (needs Linux 6.1)",
                    source,
                ))
            }
            other => other?,
        };
        let mut answers = HashMap::new();
        for record in Records::new(&bytes) {
            if let Record::Probe(probe) = record.map_err(|error| malformed(Pass::Chunks, error))? {
                answers.insert(probe.fd, probe.f_op);
            }
        }
        let answer = |request: &Request| {
            answers
                .get(&fd_number(&request.local_fd))
                .copied()
                .filter(|&f_op| f_op != 0)
        };
        match (answer(&requests[0]), answer(&requests[1])) {
            (Some(ring), Some(eventfd)) if ring != eventfd => Ok(Fops { ring, eventfd }),
            _ => Err(BpfError::Inconsistent {
                pass: Pass::Chunks,
                reason: "the probe ring's and eventfd's file operations did not come back".into(),
            }),
        }
    }

    /// Reads the io_uring state of `pid`. `pidfd` is an open pidfd of the
    /// same process (`pidfd_open`): it picks the process for the iterator
    /// and is the handle `pidfd_getfd` copies ring fds through.
    pub fn read(&mut self, pid: u32, pidfd: BorrowedFd<'_>) -> Result<RawState, BpfError> {
        let target_bytes = self.run_target_pass(pid, pidfd)?;
        let mut reading = Reading::from_target_records(&target_bytes, self.fops)?;
        let thread_bytes = self.run_thread_pass(pid, pidfd)?;
        reading.add_thread_records(&thread_bytes)?;
        self.legacy_nodes_visited = 0;
        self.read_rings(pid, pidfd, &mut reading)?;
        self.legacy_nodes_visited = reading.legacy_nodes_visited;
        // The threads' slots again: a slot registered or unregistered
        // while the rings were read makes the read retry (as a changed fd
        // table does), and a ring read by pointer is known to have been
        // alive throughout only if its slot still holds the same file.
        let again = self.run_thread_pass(pid, pidfd)?;
        reading.check_slots_unchanged(pid, &thread_bytes, &again)?;
        let hz = self.hz_for(&reading);
        reading.fill_slot_only_paths(pid, pidfd)?;
        let frames = if reading.has_no_mmap_ring() || reading.has_pbuf_ring() {
            Some(self.page_frames())
        } else {
            None
        };
        Ok(reading.into_raw_state(hz, frames))
    }

    /// The `struct page` array (`page_frames`), measured with a NO_MMAP
    /// probe ring of the dumper's own the first time. `Err` says why not.
    fn page_frames(&mut self) -> Result<PageFrames, String> {
        if let Some(frames) = self.page_frames {
            return Ok(frames);
        }
        // A NO_MMAP probe ring (6.5+), else a buffer ring's (6.1).
        let (probe, on_buffer_ring) = match ProbeRing::new() {
            Ok(probe) => (probe, false),
            Err(no_mmap) => (
                ProbeRing::with_buffer_ring()
                    .map_err(|pbuf| format!("{no_mmap}; without NO_MMAP, {pbuf}"))?,
                true,
            ),
        };
        // Its header (the size of a struct page, the NO_MMAP ring's page)
        // and its buffer group; expected_ctx 0 accepts the (own) ring.
        let clone = || probe.ring.try_clone().map_err(|error| error.to_string());
        let requests = [
            Request {
                local_fd: clone()?,
                expected_ctx: 0,
                by_pointer: false,
                want: Want::Ring,
            },
            Request {
                local_fd: clone()?,
                expected_ctx: 0,
                by_pointer: false,
                want: Want::Chunk {
                    table: Table::PbufRings,
                    start: 0,
                    count: 1,
                },
            },
        ];
        let mut bytes = self
            .run_chunk_round(Programs::Passes, &requests[..1])
            .map_err(|error| error.to_string())?;
        if on_buffer_ring {
            // Records frame themselves: the two rounds' bytes concatenate.
            bytes.extend(
                self.run_chunk_round(Programs::Walks, &requests[1..])
                    .map_err(|error| error.to_string())?,
            );
        }
        let mut page_struct_size = None;
        let mut page = None;
        for record in Records::new(&bytes) {
            match record {
                Ok(Record::Ring(ring))
                    if ring.fd == fd_number(&requests[0].local_fd)
                        && ring.status == ChunkStatus::Ok =>
                {
                    page_struct_size = Some(u64::from(ring.page_struct_size));
                    if !on_buffer_ring {
                        page = Some(ring.rings_page);
                    }
                }
                Ok(Record::PbufRing(group)) if on_buffer_ring => page = Some(group.first_page),
                _ => {}
            }
        }
        let frames = page
            .zip(page_struct_size)
            .and_then(|(page, size)| PageFrames::measured(page, size, probe.frame))
            .ok_or("the probe ring's page did not come back")?;
        self.page_frames = Some(frames);
        Ok(frames)
    }

    /// The target's fd table as pass A sees it now (fd, close-on-exec,
    /// file identity), in fd order: read again after [`BpfDumper::read`],
    /// it tells whether the fds changed while the rings were being read.
    /// Paths and eventfds are not read this time (`identities_only`),
    /// which takes the second look from 0.8 to 0.6 us per fd.
    pub fn fd_table(
        &mut self,
        pid: u32,
        pidfd: BorrowedFd<'_>,
    ) -> Result<Vec<RawFdEntry>, BpfError> {
        self.set_identities_only(true);
        let bytes = self.run_target_pass(pid, pidfd);
        self.set_identities_only(false);
        Ok(Reading::from_target_records(&bytes?, self.fops)?
            .fds
            .into_values()
            .collect())
    }

    fn set_identities_only(&mut self, on: bool) {
        if let Some(bss) = self.skeleton.skeleton.maps.bss_data.as_deref_mut() {
            bss.identities_only = u32::from(on);
        }
    }

    /// Pass A: the records of every fd of the target.
    fn run_target_pass(&mut self, pid: u32, pidfd: BorrowedFd<'_>) -> Result<Vec<u8>, BpfError> {
        let skeleton = &*self.skeleton.skeleton;
        // The pidfd, not the pid, picks the process: it cannot be reused.
        let mut link_info = libbpf_sys::bpf_iter_link_info::default();
        link_info.task.pid_fd = fd_number(&pidfd);
        let link = attach_task_iterator(&skeleton.progs.ringplan_target_fds, link_info).map_err(
            |source| BpfError::Attach {
                pass: Pass::TargetFds,
                pid,
                source,
            },
        )?;
        drain_iterator(&link).map_err(|source| BpfError::IterRead {
            pass: Pass::TargetFds,
            source,
        })
    }

    /// Pass T: the records of every thread of the target (its registered
    /// ring fds). An `iter/task` link limited to a process's pidfd visits
    /// each of its threads (pass A's `task_file` link visits one task per
    /// fd table).
    fn run_thread_pass(&mut self, pid: u32, pidfd: BorrowedFd<'_>) -> Result<Vec<u8>, BpfError> {
        let skeleton = &*self.skeleton.skeleton;
        let mut link_info = libbpf_sys::bpf_iter_link_info::default();
        link_info.task.pid_fd = fd_number(&pidfd);
        let link = attach_task_iterator(&skeleton.progs.ringplan_target_threads, link_info)
            .map_err(|source| BpfError::Attach {
                pass: Pass::Threads,
                pid,
                source,
            })?;
        drain_iterator(&link).map_err(|source| BpfError::IterRead {
            pass: Pass::Threads,
            source,
        })
    }

    /// How many list nodes the walks of legacy buffer groups read in the
    /// last [`BpfDumper::read`] (every answer's, re-shown ones included):
    /// about twice the buffers, since the first range's answer walks the
    /// whole list and each later one only its own range. Exposed for
    /// tests, which check that a group costs a number of reads linear in
    /// its length.
    pub fn legacy_nodes_visited(&self) -> u64 {
        self.legacy_nodes_visited
    }

    /// The kernel's id of the walks' program (`ringplan_walk_fds`), once a
    /// ring has needed it; `None` before. A kept dumper loads it once, so
    /// the id stays the same over its later reads (tests check both).
    pub fn walks_program_id(&self) -> Option<u32> {
        let walks = self.walks.as_ref()?;
        libbpf_rs::Program::id_from_fd(walks.skeleton.progs.ringplan_walk_fds.as_fd()).ok()
    }

    /// Loads the personality, buffer-group and pending-request walks now,
    /// if not yet: a caller about to stop a process for its dump (`plan
    /// checkpoint`) loads them first, so that a ring with personalities,
    /// buffer groups or requests in flight does not lengthen the stop by
    /// their load.
    pub fn load_walks(&mut self) -> Result<(), BpfError> {
        self.walks().map(|_| ())
    }

    /// The walks' program, loaded the first time it is asked for.
    fn walks(&mut self) -> Result<&LoadedSkeleton, BpfError> {
        Ok(match self.walks.take() {
            Some(walks) => self.walks.insert(walks),
            None => self.walks.insert(LoadedSkeleton::load(Programs::Walks)?),
        })
    }

    /// Pass B, one round: asks `program` (`ringplan_chunk_fds`, or
    /// `ringplan_walk_fds` for the walks) for `requests` (keyed by their
    /// local fds), iterates the dumper's own fds, and returns what the
    /// program wrote.
    pub(super) fn run_chunk_round(
        &mut self,
        program: Programs,
        requests: &[Request],
    ) -> Result<Vec<u8>, BpfError> {
        let self_pid = self.self_pid;
        let skeleton = match program {
            Programs::Passes => &*self.skeleton.skeleton,
            Programs::Walks => &*self.walks()?.skeleton,
        };
        let map = &skeleton.maps.chunk_requests;
        // Requests a failed earlier read left behind would be answered again.
        let stale: Vec<Vec<u8>> = map.keys().collect();
        for key in stale {
            map.delete(&key)
                .map_err(|source| BpfError::RequestMap { source })?;
        }
        let _clear_on_exit = RequestMapGuard {
            map,
            keys: requests.iter().map(|r| fd_number(&r.local_fd)).collect(),
        };
        for request in requests {
            let key = fd_number(&request.local_fd).to_ne_bytes();
            let value = request.value();
            map.update(&key, &value, MapFlags::ANY)
                .map_err(|source| BpfError::RequestMap { source })?;
        }
        let mut link_info = libbpf_sys::bpf_iter_link_info::default();
        link_info.task.pid = self_pid;
        let chunk_program = match program {
            Programs::Passes => &skeleton.progs.ringplan_chunk_fds,
            Programs::Walks => &skeleton.progs.ringplan_walk_fds,
        };
        let link =
            attach_task_iterator(chunk_program, link_info).map_err(|source| BpfError::Attach {
                pass: Pass::Chunks,
                pid: self_pid,
                source,
            })?;
        drain_iterator(&link).map_err(|source| BpfError::IterRead {
            pass: Pass::Chunks,
            source,
        })
    }

    /// Pass B: every ring's header, then its file and buffer tables.
    fn read_rings(
        &mut self,
        pid: u32,
        pidfd: BorrowedFd<'_>,
        reading: &mut Reading,
    ) -> Result<(), BpfError> {
        if reading.ring_fds.is_empty() && reading.slot_only_rings.is_empty() {
            return Ok(());
        }
        let mut first: Vec<Planned> = Vec::new();
        let slot_only: Vec<u64> = reading.slot_only_rings.keys().copied().collect();
        for ring in reading.ring_fds.keys().copied().chain(slot_only) {
            first.push(Planned {
                ring,
                want: Want::Ring,
            });
            // The first chunk of each table, before the header says whether
            // there is one: most tables fit, and the rounds after the
            // headers are then not needed. The program clamps the count to
            // the table.
            first.push(Planned::chunk(
                ring,
                Table::Files,
                0,
                records::FILE_SLOTS_PER_CHUNK,
            ));
            first.push(Planned::chunk(
                ring,
                Table::Buffers,
                0,
                records::BUFFER_SLOTS_PER_CHUNK,
            ));
        }
        self.run_rounds(pid, pidfd, reading, &first)?;
        reading.check_headers_complete()?;
        // The personalities and buffer groups a header could not count
        // without walking them: counted by the walks' program, loaded only
        // now. (No speculative first chunk here: a count walk that does
        // not reach the end leaves the table unknown, which a chunk would
        // report as an unknown layout.)
        // With them, the requests waiting on their own of the rings whose
        // counters say requests are in flight (or cannot say none are).
        let walk_counts: Vec<Planned> = reading
            .rings
            .values()
            .flat_map(|facts| {
                let ring = facts.header.ctx;
                let counts = facts.header.to_walk.any().then_some(Planned {
                    ring,
                    want: Want::WalkCounts,
                });
                let pending = facts.needs_pending_walk().then_some(Planned {
                    ring,
                    want: Want::Pending,
                });
                let napi = facts.needs_napi_walk().then_some(Planned {
                    ring,
                    want: Want::NapiIds,
                });
                counts.into_iter().chain(pending).chain(napi)
            })
            .collect();
        self.run_rounds(pid, pidfd, reading, &walk_counts)?;
        reading.check_walk_counts_complete()?;
        let rest: Vec<Planned> = reading
            .rings
            .values()
            .flat_map(|facts| {
                facts
                    .planned_chunks()
                    .into_iter()
                    .filter(|chunk| match chunk.want {
                        Want::Chunk { table, start, .. } => {
                            !facts.answered.contains(&(table, start))
                        }
                        Want::Ring
                        | Want::Probe
                        | Want::WalkCounts
                        | Want::Pending
                        | Want::NapiIds
                        | Want::LegacyBuffers { .. } => true,
                    })
            })
            .collect();
        self.run_rounds(pid, pidfd, reading, &rest)?;
        reading.check_tables_complete()?;
        // The buffers of legacy groups, now that the group chunks named
        // them: a first range of each list, whose answer walks it all and
        // gives its length and where each later range starts, then all
        // the later ranges together, each walking only its own nodes.
        let first_ranges: Vec<Planned> = reading
            .rings
            .values()
            .flat_map(|facts| facts.legacy_first_ranges())
            .collect();
        self.run_rounds(pid, pidfd, reading, &first_ranges)?;
        let rest_ranges: Vec<Planned> = reading
            .rings
            .values()
            .flat_map(|facts| facts.legacy_rest_ranges())
            .collect();
        self.run_rounds(pid, pidfd, reading, &rest_ranges)
    }

    /// Asks for `planned` in rounds of at most [`CHUNKS_PER_ROUND`], each
    /// of the program that answers it, and applies the answers.
    fn run_rounds(
        &mut self,
        pid: u32,
        pidfd: BorrowedFd<'_>,
        reading: &mut Reading,
        planned: &[Planned],
    ) -> Result<(), BpfError> {
        for program in [Programs::Passes, Programs::Walks] {
            let planned: Vec<Planned> = planned
                .iter()
                .filter(|wanted| wanted.want.program() == program)
                .copied()
                .collect();
            self.run_program_rounds(program, pid, pidfd, reading, &planned)?;
        }
        Ok(())
    }

    /// [`BpfDumper::run_rounds`] for the requests of one program.
    fn run_program_rounds(
        &mut self,
        program: Programs,
        pid: u32,
        pidfd: BorrowedFd<'_>,
        reading: &mut Reading,
        planned: &[Planned],
    ) -> Result<(), BpfError> {
        for round in planned.chunks(CHUNKS_PER_ROUND) {
            // One pidfd_getfd per ring per round (its first request's fd);
            // duplicates of it for the others.
            let mut copied: HashMap<u64, usize> = HashMap::new();
            let mut requests: Vec<Request> = Vec::with_capacity(round.len());
            for wanted in round {
                let local_fd = match copied.get(&wanted.ring) {
                    Some(&index) => rustix::io::fcntl_dupfd_cloexec(&requests[index].local_fd, 0)
                        .map_err(|errno| BpfError::Io {
                        what: "duplicating a copied ring fd".into(),
                        source: errno.into(),
                    })?,
                    None => {
                        copied.insert(wanted.ring, requests.len());
                        match reading.ring_fds.get(&wanted.ring) {
                            Some(&target_fd) => copy_target_fd(pid, pidfd, target_fd)?,
                            // A ring only a registered ring-fd slot holds:
                            // nothing to copy; a local fd of the dumper's
                            // own carries the request.
                            None => carrier_fd()?,
                        }
                    }
                };
                let by_pointer = !reading.ring_fds.contains_key(&wanted.ring);
                requests.push(Request {
                    local_fd,
                    expected_ctx: wanted.ring,
                    by_pointer,
                    want: wanted.want,
                });
            }
            let bytes = self.run_chunk_round(program, &requests)?;
            reading.apply_round_records(pid, &bytes, &requests)?;
        }
        Ok(())
    }
}

/// A local fd that only carries a request about a ring read by pointer
/// (`/dev/null`, opened close-on-exec).
fn carrier_fd() -> Result<std::os::fd::OwnedFd, BpfError> {
    rustix::fs::open(
        "/dev/null",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|errno| BpfError::Io {
        what: "opening /dev/null to carry a request".into(),
        source: errno.into(),
    })
}

/// HZ: what the SQ idle of a reading's rings is converted with.
impl BpfDumper {
    /// HZ as the kernel was built with it, measured with an SQPOLL ring of
    /// the dumper's own (the fallback when the clock's resolution does not
    /// tell). Exposed for tests and diagnostics.
    pub fn measure_hz(&mut self) -> Result<u32, BpfError> {
        if let Some(hz) = self.measured_hz {
            return Ok(hz);
        }
        let mut params = rustix::io_uring::io_uring_params::default();
        params.flags = rustix::io_uring::IoringSetupFlags::SQPOLL;
        params.sq_thread_idle = HZ_PROBE_IDLE_MS;
        // SAFETY: io_uring_setup only fills `params`; the ring is never
        // mapped or submitted to, so the kernel never writes our memory.
        let probe_ring =
            unsafe { rustix::io_uring::io_uring_setup(1, &mut params) }.map_err(|errno| {
                BpfError::MeasureHz {
                    reason: format!("setting up an SQPOLL ring: {errno}"),
                }
            })?;
        // Its header; expected_ctx 0 accepts the (own) ring as it is.
        let request = Request {
            local_fd: probe_ring,
            expected_ctx: 0,
            by_pointer: false,
            want: Want::Ring,
        };
        let bytes = self.run_chunk_round(Programs::Passes, std::slice::from_ref(&request))?;
        let mut idle_jiffies = None;
        for record in Records::new(&bytes) {
            let record = record.map_err(|error| malformed(Pass::Chunks, error))?;
            if let Record::Ring(ring) = record {
                if ring.fd == fd_number(&request.local_fd) && ring.status == ChunkStatus::Ok {
                    idle_jiffies = Some(ring.sq_thread_idle_jiffies);
                }
            }
        }
        // ctx->sq_thread_idle = msecs_to_jiffies(1000) = HZ.
        let hz =
            idle_jiffies
                .filter(|&jiffies| jiffies > 0)
                .ok_or_else(|| BpfError::MeasureHz {
                    reason: "the probe ring's header did not come back".into(),
                })?;
        self.measured_hz = Some(hz);
        Ok(hz)
    }

    /// HZ for converting the SQ idle of this reading's rings: from the
    /// coarse clock's resolution, else measured. `None` when neither works
    /// (the rings' idle is then reported unknown rather than failing the
    /// dump), or when no ring has SQPOLL and nothing needs converting.
    pub(super) fn hz_for(&mut self, reading: &Reading) -> Option<u32> {
        let needs_hz = reading
            .rings
            .values()
            .any(|ring| ring.header.flags & SetupFlags::SQPOLL.bits() != 0);
        match tick_hz() {
            Some(hz) => Some(hz),
            None if needs_hz => self.measure_hz().ok(),
            None => None,
        }
    }
}
