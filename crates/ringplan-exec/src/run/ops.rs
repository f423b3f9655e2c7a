//! The syscalls of each op: what one step of each kind does to the process
//! the backend acts in (the table in docs/ARCHITECTURE.md, "Ops"). Every fd
//! a step creates and then gives up on (a later call of the same step
//! failed) is closed through the backend before the step returns.

use std::os::fd::RawFd;

use ringplan_image::{FileType, ObjectId, SetupFlags};
use ringplan_plan::{
    CloseFd, CreateEventfd, EnableRings, ExternalInput, InstallFd, OpenFile, RegisterBuffers,
    RegisterEventfd, RegisterFiles, RegisterPbufRing, RegisterPersonalities, RegisterRestrictions,
    RegisterRingFd, RegisterSettings, RegisterWaitRegion, SetupRing,
};
use rustix::event::EventfdFlags;
use rustix::fs::{Mode, OFlags};
use rustix::io::{DupFlags, Errno};
use rustix::io_uring::{io_uring_params, IoringRegisterOp, IoringSetupFlags};

use super::{fail, Failure, Run, TypeChanged};
use crate::backend::Backend;
use crate::memory::{program_memory_at, BarrierMemory};
use crate::reopen;
use crate::Substitution;

impl<B: Backend> Run<'_, B> {
    /// `create_eventfd`: `eventfd2`, then a `write` for a count above 32
    /// bits.
    pub(super) fn create_eventfd(&mut self, create: &CreateEventfd) -> Result<B::Fd, Failure> {
        let mut flags = EventfdFlags::CLOEXEC;
        if create.semaphore {
            flags |= EventfdFlags::SEMAPHORE;
        }
        if create.nonblock {
            flags |= EventfdFlags::NONBLOCK;
        }
        let initial = u32::try_from(create.count).unwrap_or(0);
        let fd = self
            .backend
            .eventfd(initial, flags)
            .map_err(fail("eventfd2"))?;
        if u64::from(initial) != create.count {
            let bytes = create.count.to_ne_bytes();
            let written = match self.backend.write(B::number(&fd), &bytes) {
                Ok(written) if written == bytes.len() => Ok(()),
                Ok(_) => Err(Failure {
                    call: "write(eventfd)",
                    errno: Errno::IO,
                }),
                Err(errno) => Err(Failure {
                    call: "write(eventfd)",
                    errno,
                }),
            };
            if let Err(failure) = written {
                self.backend.close(fd);
                return Err(failure);
            }
        }
        Ok(fd)
    }

    /// `open_file`: `openat` with `O_NONBLOCK` added (an open never waits:
    /// not for a FIFO's other end, a terminal's carrier, a lease), `fstat`
    /// to refuse a file of another type than the image's (the path changed
    /// since preflight looked), `fcntl(F_SETFL)` to the recorded status
    /// flags, then `lseek` unless the position is 0.
    pub(super) fn open_file(&mut self, open: &OpenFile) -> Result<B::Fd, Failure> {
        let fd = match self.backend.open(
            open.path.as_str(),
            OFlags::from_bits_retain(reopen::nonblocking_open_flags(open)),
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(errno) => {
                // A FIFO opened for writing without a reader fails with
                // ENXIO, a socket always: say what is there, if it is the
                // wrong type, rather than the errno.
                if let Ok(mode) = self
                    .backend
                    .stat_path_mode(open.path.as_str(), reopen::lookup_flags(open))
                {
                    self.check_opened_type(open, mode)?;
                }
                return Err(Failure {
                    call: "openat",
                    errno,
                });
            }
        };
        match self.finish_open(open, B::number(&fd)) {
            Ok(()) => Ok(fd),
            Err(failure) => {
                self.backend.close(fd);
                Err(failure)
            }
        }
    }

    /// The calls of `open_file` after the open: type check, status flags,
    /// position.
    fn finish_open(&mut self, open: &OpenFile, fd: RawFd) -> Result<(), Failure> {
        let mode = self.backend.fstat_mode(fd).map_err(fail("fstat"))?;
        self.check_opened_type(open, mode)?;
        if let Some(status) = reopen::status_flags(open) {
            self.backend
                .fcntl_setfl(fd, OFlags::from_bits_retain(status))
                .map_err(fail("fcntl(F_SETFL)"))?;
        }
        if open.pos != 0 {
            let pos = u64::try_from(open.pos).map_err(|_| Failure {
                call: "lseek",
                errno: Errno::INVAL,
            })?;
            self.backend.lseek(fd, pos).map_err(fail("lseek"))?;
        }
        Ok(())
    }

    /// Refuses a file whose type is not the step's, keeping what was found
    /// for the run's error.
    fn check_opened_type(&mut self, open: &OpenFile, mode: u32) -> Result<(), Failure> {
        let found = FileType::from_mode(mode);
        if open.admits(found) {
            return Ok(());
        }
        self.type_changed = Some(TypeChanged {
            path: open.path.clone(),
            recorded: open.file_type,
            found,
        });
        // The run reports `type_changed`, not this failure's errno.
        Err(Failure {
            call: "fstat",
            errno: Errno::NOENT,
        })
    }

    /// `external_input`: the caller's fd for the object, or a stand-in.
    pub(super) fn external_input(
        &mut self,
        object: Option<ObjectId>,
        input: &ExternalInput,
    ) -> Result<B::Fd, Failure> {
        let object = object.ok_or(Failure {
            call: "external input",
            errno: Errno::INVAL,
        })?;
        match self.inputs.fds.remove(&object) {
            Some(fd) => self.backend.adopt(fd).map_err(fail("external input")),
            None => self.substitute(object, input),
        }
    }

    /// A stand-in for an input the caller did not supply: a new pipe's end
    /// matching the recorded access mode for a pipe, else `/dev/null`;
    /// non-blocking if the image says so.
    fn substitute(&mut self, object: ObjectId, input: &ExternalInput) -> Result<B::Fd, Failure> {
        let access = input.flags.map_or(OFlags::RDWR, |flags| {
            OFlags::from_bits_retain(flags) & OFlags::RWMODE
        });
        let (fd, with) = if input.file_type == FileType::Pipe {
            let (reader, writer) = self.backend.pipe().map_err(fail("pipe2"))?;
            if access == OFlags::WRONLY {
                self.backend.close(reader);
                (writer, "a new pipe (write end)")
            } else {
                self.backend.close(writer);
                (reader, "a new pipe (read end)")
            }
        } else {
            let fd = self
                .backend
                .open(
                    "/dev/null",
                    access | OFlags::CLOEXEC | OFlags::NOCTTY,
                    Mode::empty(),
                )
                .map_err(fail("open(/dev/null)"))?;
            (fd, "/dev/null")
        };
        // A program's pipe or socket may have been non-blocking.
        if let Err(errno) = self.set_input_status_flags(B::number(&fd), input.flags) {
            self.backend.close(fd);
            return Err(Failure {
                call: "fcntl(F_SETFL)",
                errno,
            });
        }
        self.substituted.push(Substitution {
            object,
            file_type: input.file_type,
            with,
        });
        Ok(fd)
    }

    /// [`reopen::set_input_status_flags`] through the backend: `F_GETFL`,
    /// then `F_SETFL` if `O_NONBLOCK` changes.
    fn set_input_status_flags(&mut self, fd: RawFd, recorded: Option<u32>) -> Result<(), Errno> {
        let current = self.backend.fcntl_getfl(fd)?.bits();
        let wanted = reopen::input_status_flags(current, recorded);
        if wanted != current {
            self.backend
                .fcntl_setfl(fd, OFlags::from_bits_retain(wanted))?;
        }
        Ok(())
    }

    /// `setup_ring`: `io_uring_setup`, then the ring's recorded regions.
    pub(super) fn setup_ring(
        &mut self,
        object: Option<ObjectId>,
        setup: &SetupRing,
    ) -> Result<B::Fd, Failure> {
        let mut params = io_uring_params::default();
        params.flags = IoringSetupFlags::from_bits_retain(setup.flags);
        if setup.flags & SetupFlags::CQSIZE.bits() != 0 {
            params.cq_entries = setup.cq_entries;
        }
        params.sq_thread_cpu = setup.sq_thread_cpu.unwrap_or(0);
        params.sq_thread_idle = setup.sq_thread_idle_ms.unwrap_or(0);
        if let Some(wq) = setup.wq_handle {
            params.wq_fd = self.handle(wq)?;
        }
        let fd = self
            .backend
            .io_uring_setup(setup.sq_entries, &mut params)
            .map_err(fail("io_uring_setup"))?;
        // Mapped now, while this step owns the fd: a ring without buffers
        // is closed before the memory barrier. The mappings keep their own
        // reference to the ring.
        if let Err(failure) = self.map_regions(object, &setup.mappings, B::number(&fd)) {
            self.backend.close(fd);
            return Err(failure);
        }
        Ok(fd)
    }

    /// `receive_fd`: the object from the process whose part created it;
    /// then a ring's mappings in this process (of the memory that process
    /// placed and lent, or of the ring fd's regions).
    pub(super) fn receive_fd(
        &mut self,
        object: Option<ObjectId>,
        receive: &ringplan_plan::ReceiveFd,
    ) -> Result<B::Fd, Failure> {
        let fd = self
            .backend
            .receive_fd(receive.from_pid, receive.from_fd)
            .map_err(fail("pidfd_getfd"))?;
        let mapped = if receive.placed_memory && self.continuous {
            self.map_lent_memory(object, receive)
        } else {
            if receive.placed_memory {
                // Preflight allowed moved rings (no `NO_MMAP`): the
                // creating part placed nothing, and the ring is where the
                // kernel put it; its regions are tried as the creating
                // part tried them (and skipped where the kernel refuses).
                if let Some(object) = object {
                    self.moved_rings.push(object);
                }
            }
            self.map_regions(object, &receive.mappings, B::number(&fd))
        };
        if let Err(failure) = mapped {
            self.backend.close(fd);
            return Err(failure);
        }
        Ok(fd)
    }

    /// `register_eventfd`: `IORING_REGISTER_EVENTFD[_ASYNC]`.
    pub(super) fn register_eventfd(&mut self, register: &RegisterEventfd) -> Result<(), Failure> {
        let (opcode, call) = if register.is_async {
            (
                IoringRegisterOp::RegisterEventfdAsync,
                "IORING_REGISTER_EVENTFD_ASYNC",
            )
        } else {
            (IoringRegisterOp::RegisterEventfd, "IORING_REGISTER_EVENTFD")
        };
        let eventfd: RawFd = self.handle(register.eventfd_handle)?;
        let ring = self.handle(register.ring_handle)?;
        // One int holding an open eventfd, as the opcode takes.
        self.backend
            .io_uring_register(ring, opcode, &eventfd.to_ne_bytes(), 1)
            .map(drop)
            .map_err(fail(call))
    }

    /// `register_files`: one `IORING_REGISTER_FILES` call, the whole table.
    pub(super) fn register_files(&mut self, register: &RegisterFiles) -> Result<(), Failure> {
        let mut table = Vec::with_capacity(register.slots.len() * 4);
        for slot in &register.slots {
            let fd = match slot {
                Some(handle) => self.handle(*handle)?,
                None => -1,
            };
            table.extend_from_slice(&fd.to_ne_bytes());
        }
        let count = u32::try_from(register.slots.len()).map_err(|_| Failure {
            call: "IORING_REGISTER_FILES",
            errno: Errno::INVAL,
        })?;
        let ring = self.handle(register.ring_handle)?;
        if !register.tags.is_empty() {
            let tags = slot_tags(&register.tags, register.slots.len());
            // The same ints, and one tag per slot (0 for none, as an empty
            // slot must have).
            return self
                .backend
                .io_uring_register_tagged(
                    ring,
                    IoringRegisterOp::RegisterFiles2,
                    &table,
                    &tags,
                    count,
                )
                .map(drop)
                .map_err(fail("IORING_REGISTER_FILES2"));
        }
        // `count` ints, each an open fd or -1; the kernel takes its own
        // references during the call.
        self.backend
            .io_uring_register(ring, IoringRegisterOp::RegisterFiles, &table, count)
            .map(drop)
            .map_err(fail("IORING_REGISTER_FILES"))
    }

    /// `register_personalities`: `IORING_REGISTER_PERSONALITY` for every id
    /// from 1 to the last one on the new ring (the kernel gives them in
    /// order there: each must come back as expected), then
    /// `IORING_UNREGISTER_PERSONALITY` of the fillers. The personalities
    /// live in the ring, so an undo that closes the ring undoes them.
    pub(super) fn register_personalities(
        &mut self,
        register: &RegisterPersonalities,
    ) -> Result<(), Failure> {
        let ring = self.handle(register.ring_handle)?;
        for expected in 1..=register.last_id() {
            let id = self
                .backend
                .io_uring_register(ring, IoringRegisterOp::RegisterPersonality, &[], 0)
                .map_err(fail("IORING_REGISTER_PERSONALITY"))?;
            if id != expected {
                // The ring had personalities already: not a new ring.
                return Err(Failure {
                    call: "IORING_REGISTER_PERSONALITY (the kernel gave another id)",
                    errno: Errno::EXIST,
                });
            }
        }
        for filler in (1..=register.last_id()).filter(|id| !register.is_recorded(*id)) {
            self.backend
                .io_uring_register(ring, IoringRegisterOp::UnregisterPersonality, &[], filler)
                .map_err(fail("IORING_UNREGISTER_PERSONALITY"))?;
        }
        Ok(())
    }

    /// `register_pbuf_ring`: one `IORING_REGISTER_PBUF_RING` on the
    /// program's memory at the recorded address (in place since the
    /// barrier: mapped by the memory hook here, the target's own with
    /// `execute_in`), then its head brought to the recorded one. The
    /// buffer ring lives in the ring, so an undo that closes the ring
    /// unregisters it.
    ///
    /// A ring that was in kernel memory carries its bytes: they are
    /// written at `addr` first (memory the barrier placed, since the
    /// program's mapping of the kernel's went with the detach), and the
    /// ring is registered as user memory; the kernel cannot map a new
    /// kernel-allocated ring at a chosen address. Why here and not at the
    /// barrier: the barrier places memory for every restorer (a caller's
    /// [`crate::MemoryHook`] among them) and knows nothing of contents; the
    /// bytes belong to this step, which must write them before the kernel
    /// reads the ring (registration, then the head's reads). If the
    /// registration fails, the bytes found there are written back; the
    /// barrier's undo unmaps memory it placed.
    pub(super) fn register_pbuf_ring(
        &mut self,
        register: &RegisterPbufRing,
    ) -> Result<(), Failure> {
        use ringplan_kernel::abi::pbuf;
        let ring = self.handle(register.ring_handle)?;
        let reg = pbuf::BufReg {
            ring_addr: register.addr,
            ring_entries: register.entries,
            bgid: register.bgid,
            flags: if register.incremental {
                pbuf::IOU_PBUF_RING_INC
            } else {
                0
            },
            resv: [0; 3],
        };
        let found = match &register.contents {
            Some(contents) => Some(self.replace_memory(register.addr, &contents.0)?),
            None => None,
        };
        let mut bytes = Vec::with_capacity(size_of::<pbuf::BufReg>());
        bytes.extend_from_slice(&reg.ring_addr.to_ne_bytes());
        bytes.extend_from_slice(&reg.ring_entries.to_ne_bytes());
        bytes.extend_from_slice(&reg.bgid.to_ne_bytes());
        bytes.extend_from_slice(&reg.flags.to_ne_bytes());
        for word in reg.resv {
            bytes.extend_from_slice(&word.to_ne_bytes());
        }
        let registered =
            self.backend
                .io_uring_register(ring, IoringRegisterOp::RegisterPbufRing, &bytes, 1);
        if let Err(errno) = registered {
            if let Some(found) = found {
                // Best effort: the failure reported is the registration's.
                let _ = self.replace_memory(register.addr, &found);
            }
            return Err(fail("IORING_REGISTER_PBUF_RING")(errno));
        }
        if register.head != 0 {
            self.bring_pbuf_head(register)?;
        }
        Ok(())
    }

    /// Writes `bytes` at `addr` in the process the backend acts in, through
    /// its `/proc/PID/mem` (this process's too: memory a caller's hook
    /// failed to place is then an error, not a fault), and returns the
    /// bytes that were there.
    fn replace_memory(&mut self, addr: u64, bytes: &[u8]) -> Result<Vec<u8>, Failure> {
        use crate::backend::TargetMemory;
        use ringplan_kernel::procfs::{mem::ProcessMemory, Process};
        let call = "writing captured kernel-memory bytes";
        let memory = match self.backend.memory().map_err(fail(call))? {
            TargetMemory::Process(memory) => memory,
            TargetMemory::Local => ProcessMemory::open_for_writing(Process::Current)
                .map_err(|_| fail(call)(Errno::ACCESS))?,
        };
        let mut found = vec![0u8; bytes.len()];
        memory
            .read_exact_at(addr, &mut found)
            .map_err(|_| fail(call)(Errno::FAULT))?;
        memory
            .write_all_at(addr, bytes)
            .map_err(|_| fail(call)(Errno::FAULT))?;
        Ok(found)
    }

    /// `register_ring_fd`: one `IORING_REGISTER_RING_FDS` of the ring at
    /// its recorded offset, in the thread the step runs in (the recorded
    /// one in another process; in this one the calling thread, where a
    /// slot an earlier step filled is left as it is and reported).
    pub(super) fn register_ring_fd(
        &mut self,
        object: Option<ObjectId>,
        register: &RegisterRingFd,
    ) -> Result<(), Failure> {
        use ringplan_kernel::abi::ring_fd;
        let ring = self.handle(register.ring_handle)?;
        let tid = self.backend.current_thread();
        let mut report = crate::RestoredRingFd {
            ring: object.unwrap_or(ObjectId(0)),
            offset: register.offset,
            tid,
            recorded_tid: register.tid,
            registered: true,
        };
        if self
            .ring_fd_slots
            .iter()
            .any(|&(filled_tid, offset, _)| filled_tid == tid && offset == register.offset)
        {
            report.registered = false;
            self.ring_fds.push(report);
            return Ok(());
        }
        let updates = ring_fd::updates(&[(register.offset, ring)]);
        let registered = self
            .backend
            .io_uring_register(ring, IoringRegisterOp::RegisterRingFds, &updates, 1)
            .map_err(fail("IORING_REGISTER_RING_FDS"))?;
        if registered != 1 {
            return Err(Failure {
                call: "IORING_REGISTER_RING_FDS (registered none)",
                errno: Errno::INVAL,
            });
        }
        self.ring_fd_slots
            .push((tid, register.offset, register.ring_handle));
        self.ring_fds.push(report);
        Ok(())
    }

    /// Undoes a `register_ring_fd`: `IORING_UNREGISTER_RING_FDS` of the
    /// slot in its thread. The kernel acts on the calling thread's slots
    /// whatever ring it is called on: the ring's own handle while it is
    /// open, else (a failure after the ring's temporary closed) a
    /// throwaway ring set up for the call. Best effort: an undo goes on.
    pub(super) fn unregister_ring_fd(
        &mut self,
        tid: u32,
        offset: u32,
        ring: ringplan_plan::Handle,
    ) {
        use ringplan_kernel::abi::ring_fd;
        if self.backend.use_thread(Some(tid)).is_err() {
            return;
        }
        // The kernel refuses an unregistering entry whose data is not 0.
        let updates = ring_fd::updates(&[(offset, 0)]);
        if let Ok(ring) = self.handle(ring) {
            let _ = self.backend.io_uring_register(
                ring,
                IoringRegisterOp::UnregisterRingFds,
                &updates,
                1,
            );
            return;
        }
        let mut params = io_uring_params::default();
        if let Ok(throwaway) = self.backend.io_uring_setup(1, &mut params) {
            let _ = self.backend.io_uring_register(
                B::number(&throwaway),
                IoringRegisterOp::UnregisterRingFds,
                &updates,
                1,
            );
            self.backend.close(throwaway);
        }
    }

    /// `register_restrictions`: one `IORING_REGISTER_RESTRICTIONS` call
    /// with one `struct io_uring_restriction` per allowed opcode and one
    /// per flag set, on a ring set up `R_DISABLED`.
    pub(super) fn register_restrictions(
        &mut self,
        register: &RegisterRestrictions,
    ) -> Result<(), Failure> {
        let restrictions = &register.restrictions;
        let (bytes, entries) = ringplan_kernel::abi::restriction::encode(
            &restrictions.register_ops,
            &restrictions.sqe_ops,
            restrictions.sqe_flags_allowed,
            restrictions.sqe_flags_required,
        );
        let count = u32::try_from(entries).map_err(|_| Failure {
            call: "IORING_REGISTER_RESTRICTIONS",
            errno: Errno::INVAL,
        })?;
        let ring = self.handle(register.ring_handle)?;
        self.backend
            .io_uring_register(ring, IoringRegisterOp::RegisterRestrictions, &bytes, count)
            .map(drop)
            .map_err(fail("IORING_REGISTER_RESTRICTIONS"))
    }

    /// `register_settings`: `IORING_REGISTER_FILE_ALLOC_RANGE`,
    /// `IORING_REGISTER_IOWQ_MAX_WORKERS`, `IORING_REGISTER_NAPI`,
    /// `IORING_REGISTER_IOWQ_AFF` (the mask's bytes, whole words), each
    /// when recorded. They live in the ring (the io-wq limits also in the
    /// registering thread's io-wq, which outlives the ring: an undo that
    /// closes the ring leaves that thread's workers capped, see the README),
    /// so closing the ring undoes the rest.
    pub(super) fn register_settings(&mut self, register: &RegisterSettings) -> Result<(), Failure> {
        use ringplan_kernel::abi::settings;
        let ring = self.handle(register.ring_handle)?;
        if let Some(range) = register.file_alloc_range {
            let arg = settings::file_index_range(range.start, range.len);
            self.backend
                .io_uring_register(ring, IoringRegisterOp::RegisterFileAllocRange, &arg, 0)
                .map_err(fail("IORING_REGISTER_FILE_ALLOC_RANGE"))?;
        }
        if let Some(limits) = register.iowq_max_workers {
            let arg = settings::iowq_max_workers(limits.bounded, limits.unbounded);
            self.backend
                .io_uring_register(ring, IoringRegisterOp::RegisterIowqMaxWorkers, &arg, 2)
                .map_err(fail("IORING_REGISTER_IOWQ_MAX_WORKERS"))?;
        }
        if let Some(napi) = register.napi {
            let tracking = match napi.tracking {
                ringplan_image::NapiTracking::Dynamic => settings::NAPI_TRACKING_DYNAMIC,
                ringplan_image::NapiTracking::Static => settings::NAPI_TRACKING_STATIC,
            };
            let arg = settings::napi(napi.busy_poll_us, napi.prefer_busy_poll, tracking);
            self.backend
                .io_uring_register(ring, IoringRegisterOp::RegisterNapi, &arg, 1)
                .map_err(fail("IORING_REGISTER_NAPI"))?;
        }
        for &id in &register.napi_static_ids {
            let arg = settings::napi_static_add(id);
            self.backend
                .io_uring_register(ring, IoringRegisterOp::RegisterNapi, &arg, 1)
                .map_err(fail("IORING_REGISTER_NAPI (IO_URING_NAPI_STATIC_ADD_ID)"))?;
        }
        if let Some(affinity) = &register.iowq_affinity {
            let mask = ringplan_kernel::abi::iowq_affinity::mask_bytes(&affinity.cpus);
            let len = u32::try_from(mask.len()).map_err(|_| Failure {
                call: "IORING_REGISTER_IOWQ_AFF",
                errno: Errno::INVAL,
            })?;
            self.backend
                .io_uring_register(ring, IoringRegisterOp::RegisterIowqAff, &mask, len)
                .map_err(fail("IORING_REGISTER_IOWQ_AFF"))?;
            // An SQ thread's io-wq goes with the ring's close; a thread's
            // stays, so an undo puts it back.
            if affinity.tid.is_some() {
                let tid = self.backend.current_thread();
                self.iowq_affinities.push((tid, register.ring_handle));
            }
        }
        Ok(())
    }

    /// Undoes a thread's `IORING_REGISTER_IOWQ_AFF`:
    /// `IORING_UNREGISTER_IOWQ_AFF` in that thread, on the ring while it is
    /// open (the kernel acts on the calling thread's io-wq), which puts the
    /// kernel's default back. Best effort: an undo goes on.
    pub(super) fn unregister_iowq_affinity(&mut self, tid: u32, ring: ringplan_plan::Handle) {
        if self.backend.use_thread(Some(tid)).is_err() {
            return;
        }
        if let Ok(ring) = self.handle(ring) {
            let _ =
                self.backend
                    .io_uring_register(ring, IoringRegisterOp::UnregisterIowqAff, &[], 0);
        }
    }

    /// `enable_rings`: `IORING_REGISTER_ENABLE_RINGS` (in the ring's
    /// recorded owner thread for `SINGLE_ISSUER`: enabling binds it, and
    /// the ring's later steps run there). A continuous ring may then have
    /// its positions moved; its report names its owner now.
    pub(super) fn enable_rings(
        &mut self,
        object: Option<ObjectId>,
        enable: &EnableRings,
    ) -> Result<(), Failure> {
        let ring = self.handle(enable.ring_handle)?;
        self.backend
            .io_uring_register(ring, IoringRegisterOp::RegisterEnableRings, &[], 0)
            .map_err(fail("IORING_REGISTER_ENABLE_RINGS"))?;
        let index = enable.ring_handle.0 as usize;
        let owned = self.plan.steps.get(index).and_then(|step| match &step.op {
            ringplan_plan::Op::SetupRing(setup)
                if setup.flags & SetupFlags::SINGLE_ISSUER.bits() != 0 =>
            {
                Some(setup.owner_tid)
            }
            _ => None,
        });
        if let Some(recorded_tid) = owned {
            let tid = self.backend.current_thread();
            self.owners.insert(index, tid);
            if let Some(report) = self
                .continuous_rings
                .iter_mut()
                .find(|report| Some(report.ring) == object)
            {
                report.owner = Some(crate::RingOwner { tid, recorded_tid });
            }
        }
        if let Some(ring) = self.rings.get_mut(&index) {
            ring.mark_enabled();
        }
        Ok(())
    }

    /// `register_wait_region`: the program's memory at the region's range
    /// (see [`program_memory_at`]: a range the step maps goes with the ring
    /// regions, unmapped by an undo after the ring is closed), then
    /// `IORING_REGISTER_MEM_REGION` with `IORING_MEM_REGION_REG_WAIT_ARG`
    /// on the ring, still disabled.
    pub(super) fn register_wait_region(
        &mut self,
        register: &RegisterWaitRegion,
    ) -> Result<(), Failure> {
        let ring = self.handle(register.ring_handle)?;
        let bad = || Failure {
            call: "register_wait_region",
            errno: Errno::INVAL,
        };
        let end = register.addr.checked_add(register.len).ok_or_else(bad)?;
        let range = (
            usize::try_from(register.addr).map_err(|_| bad())?,
            usize::try_from(register.len).map_err(|_| bad())?,
        );
        let mapped = match program_memory_at(self.backend, register.addr, end) {
            Ok(mapped) => mapped,
            Err(error) => {
                self.memory_error = Some(error);
                return Err(Failure {
                    call: "the wait region's memory",
                    errno: Errno::FAULT,
                });
            }
        };
        if mapped {
            self.ring_regions.push(range);
        }
        // A region that was kernel memory: its captured bytes, into memory
        // this step mapped (never over the process's own, which an undo
        // could not give back: `plan dump --detach` leaves the range free).
        if let Some(contents) = &register.contents {
            if !mapped {
                return Err(Failure {
                    call:
                        "placing a kernel-memory wait region's bytes over the process's own memory",
                    errno: Errno::EXIST,
                });
            }
            self.replace_memory(register.addr, &contents.0)?;
        }
        self.backend
            .io_uring_register_wait_region(ring, register.addr, register.len)
            .map_err(fail("IORING_REGISTER_MEM_REGION"))
    }

    /// `memory_barrier`: the task's memory is put in place. Its error is
    /// kept for the run to report as a memory error.
    pub(super) fn memory_barrier(
        &mut self,
        memory: &mut dyn BarrierMemory<B>,
    ) -> Result<(), Failure> {
        memory.restore(self.plan, self.backend).map_err(|error| {
            self.memory_error = Some(error);
            Failure {
                call: "memory hook",
                errno: Errno::FAULT,
            }
        })
    }

    /// `register_buffers`: one `IORING_REGISTER_BUFFERS` call.
    pub(super) fn register_buffers(&mut self, register: &RegisterBuffers) -> Result<(), Failure> {
        // `struct iovec` as the kernel reads it: base, then length, each a
        // word; a NULL base for an empty slot.
        let mut iovecs = Vec::with_capacity(register.iovecs.len() * 16);
        for iovec in &register.iovecs {
            iovecs.extend_from_slice(&(iovec.base as usize).to_ne_bytes());
            iovecs.extend_from_slice(&(iovec.len as usize).to_ne_bytes());
        }
        let count = u32::try_from(register.iovecs.len()).map_err(|_| Failure {
            call: "IORING_REGISTER_BUFFERS",
            errno: Errno::INVAL,
        })?;
        let ring = self.handle(register.ring_handle)?;
        if !register.tags.is_empty() {
            let tags = slot_tags(&register.tags, register.iovecs.len());
            return self
                .backend
                .io_uring_register_tagged(
                    ring,
                    IoringRegisterOp::RegisterBuffers2,
                    &iovecs,
                    &tags,
                    count,
                )
                .map(drop)
                .map_err(fail("IORING_REGISTER_BUFFERS2"));
        }
        // The kernel pins the pages the iovecs name (the barrier put them
        // in place) and neither reads nor writes them until I/O is
        // submitted.
        self.backend
            .io_uring_register(ring, IoringRegisterOp::RegisterBuffers, &iovecs, count)
            .map(drop)
            .map_err(fail("IORING_REGISTER_BUFFERS"))
    }

    /// `install_fd`: `dup3` onto a target number preflight proved free.
    pub(super) fn install_fd(
        &mut self,
        object: Option<ObjectId>,
        install: &InstallFd,
    ) -> Result<(), Failure> {
        let object = object.ok_or(Failure {
            call: "install_fd",
            errno: Errno::INVAL,
        })?;
        if self.adopted_fds.contains(&install.fd) {
            // The process holds the object at this fd already.
            return Ok(());
        }
        let source = self.handle(install.source_handle)?;
        let flags = if install.cloexec {
            DupFlags::CLOEXEC
        } else {
            DupFlags::empty()
        };
        let target = self
            .backend
            .dup3(source, install.fd, flags)
            .map_err(fail("dup3"))?;
        self.installed.entry(object).or_default().push(target);
        Ok(())
    }

    /// `close_fd`: closes each handle's fd.
    pub(super) fn close_fds(&mut self, close: &CloseFd) -> Result<(), Failure> {
        for handle in &close.handles {
            let slot = usize::try_from(handle.0)
                .ok()
                .and_then(|index| self.handles.get_mut(index));
            match slot.and_then(Option::take) {
                Some(fd) => self.backend.close(fd),
                None if self.close_continuous_ring(*handle) => {}
                // An adopted fd is the process's own: never closed.
                None if usize::try_from(handle.0)
                    .is_ok_and(|index| self.adopted.remove(&index).is_some()) => {}
                None => {
                    return Err(Failure {
                        call: "close",
                        errno: Errno::BADF,
                    })
                }
            }
        }
        Ok(())
    }
}

/// The `u64` tag array of a `*2` registration: one per slot, the recorded
/// tags at their slots and 0 elsewhere. A tag makes the kernel post a CQE
/// when its slot is replaced or unregistered: an undo that closes the
/// ring posts them into a ring that is going away, which nobody reads.
fn slot_tags(tags: &[ringplan_image::SlotTag], slots: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; slots * 8];
    for tag in tags {
        let at = tag.slot as usize * 8;
        if let Some(entry) = bytes.get_mut(at..at + 8) {
            entry.copy_from_slice(&tag.tag.to_ne_bytes());
        }
    }
    bytes
}
