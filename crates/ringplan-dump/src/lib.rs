//! The dumper: reads a live process's io_uring state into a ringplan
//! [`Image`].
//!
//! Two backends read the kernel's state into a backend-neutral
//! [`raw::RawState`]:
//! - [`bpf`]: a BPF `task_file` iterator with CO-RE reads of `io_ring_ctx`,
//!   complete (setup flags, SQ idle, eventfd, registered files and buffers).
//! - [`fdinfo`]: `/proc/PID/fdinfo`, for kernels where BPF cannot load; it
//!   cannot see setup flags, SQ idle or the registered eventfd, and marks
//!   them unknown rather than guessing. It reads 6.18's fdinfo format and
//!   refuses a kernel whose format hides what it needs (6.1:
//!   [`fdinfo_format`]).
//!
//! [`assemble`] then turns the raw state and the ring mappings from
//! `/proc/PID/maps` ([`maps`]) into an image with deterministic ids, and
//! [`ring_memory`] fills in each ring state's SQ array, queued SQEs and
//! unconsumed CQEs from the target's memory. The
//! target is reached through a pidfd ([`target`]), which needs the same
//! rights as ptrace. Every `/proc` file is read and parsed by
//! [`ringplan_kernel::procfs`]; this crate decides what to read and what
//! it means for the image.
//!
//! Reading changes nothing in the target: the only state this crate creates
//! is the dumper's own (BPF links, duplicated fds), all released on return.
//!
//! A target that keeps running may change while it is read. A dump is only
//! returned when its read was consistent: the target did not exit during it
//! (its pid could otherwise have been reused), and with BPF its fd table
//! was the same before and after the rings were read (a second look at it,
//! about 0.6 us per fd), and every table matched its header; otherwise the
//! read is retried, [`READ_ATTEMPTS`] times in all. [`freeze`] holds the
//! target still for the read instead (cgroup freezer or SIGSTOP), and
//! always lets it go; a read of a target ringplan holds still skips the
//! second look (another process sharing its fd table, `CLONE_FILES`
//! without `CLONE_THREAD`, is not held).

pub mod assemble;
pub mod bpf;
pub mod caveats;
pub mod fdinfo;
pub mod fdinfo_format;
pub mod file_identity;
pub mod freeze;
/// The lock lives in `ringplan-kernel`, which `ringplan-exec` shares.
pub use ringplan_kernel::hold_lock;
pub mod in_flight;
pub mod maps;
pub mod raw;
pub mod ring_memory;
pub mod target;
pub mod tree;

use ringplan_image::{Backend, Image, Source};

pub use assemble::{AssembleError, Selection};
pub use bpf::{BpfDumper, BpfError};
pub use fdinfo::FdinfoError;
pub use freeze::{FreezeError, FreezeMethod, Frozen, HeldBy};
pub use in_flight::{RingInFlight, TreeRingInFlight};
pub use maps::MapsError;
pub use target::{Target, TargetError};
pub use tree::{dump_tree, dump_tree_with, hold_tree, HeldTree, TreeOptions};

/// Which backend to read the kernel's state with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// BPF when it loads, else fdinfo (with a warning).
    #[default]
    Auto,
    Bpf,
    Fdinfo,
}

/// Why a dump failed.
///
/// A backend's error is the [`source`](std::error::Error::source) of
/// [`DumpError::Bpf`] and [`DumpError::Fdinfo`], whose own message only
/// names the backend: print the chain of sources to see the cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DumpError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("BPF backend")]
    Bpf(#[from] BpfError),
    #[error("fdinfo backend")]
    Fdinfo(#[from] FdinfoError),
    #[error(transparent)]
    Maps(#[from] MapsError),
    #[error(transparent)]
    Assemble(#[from] AssembleError),
    #[error("pid {pid} exited during the dump; no image was made")]
    ExitedDuringDump { pid: u32 },
    #[error(
        "pid {pid} changed its fds or io_uring tables during each of {attempts} reads (last: {last_change}); \
         hold it still with --freeze and dump again"
    )]
    KeptChanging {
        pid: u32,
        attempts: u32,
        last_change: String,
    },
    #[error(transparent)]
    Freeze(#[from] FreezeError),
    #[error("listing the descendants of pid {pid}")]
    TreeListing {
        pid: u32,
        #[source]
        cause: ringplan_kernel::procfs::ProcfsError,
    },
    #[error("reading the inodes of pid {pid}'s files")]
    FileIdentity {
        pid: u32,
        #[source]
        cause: ringplan_kernel::procfs::ProcfsError,
    },
}

/// A finished dump: the image and what the caller should be told about it.
#[derive(Debug)]
pub struct Dump {
    pub image: Image,
    /// Things the image cannot say for itself, one line each.
    pub warnings: Vec<String>,
    /// How the target was held still, when it was ([`dump_with`]).
    pub held: Option<Held>,
}

/// A dumper with its backend ready; reuse it to dump several times without
/// loading the BPF program again.
pub struct Dumper {
    bpf: Option<BpfDumper>,
    pub(crate) warnings: Vec<String>,
}

impl Dumper {
    /// Prepares `choice`. `Auto` loads BPF and falls back to fdinfo when BPF
    /// is unavailable; `Bpf` fails instead.
    pub fn new(choice: BackendChoice) -> Result<Dumper, DumpError> {
        match choice {
            BackendChoice::Fdinfo => Ok(Dumper {
                bpf: None,
                warnings: Vec::new(),
            }),
            BackendChoice::Bpf => Ok(Dumper {
                bpf: Some(BpfDumper::load()?),
                warnings: Vec::new(),
            }),
            BackendChoice::Auto => match BpfDumper::load() {
                Ok(bpf) => Ok(Dumper {
                    bpf: Some(bpf),
                    warnings: Vec::new(),
                }),
                Err(error) if error.is_unavailable() => Ok(Dumper {
                    bpf: None,
                    warnings: vec![format!(
                        "BPF is unavailable ({}); using the fdinfo backend",
                        with_sources(&error)
                    )],
                }),
                Err(error) => Err(error.into()),
            },
        }
    }

    /// Loads the BPF backend's personality and buffer-group walks now
    /// rather than at the first ring that has some (nothing with the
    /// fdinfo backend): for a caller about to stop a process for its dump,
    /// so that their load does not lengthen the stop. Loaded once either
    /// way.
    pub fn load_walks(&mut self) -> Result<(), DumpError> {
        match &mut self.bpf {
            Some(bpf) => Ok(bpf.load_walks()?),
            None => Ok(()),
        }
    }

    /// The backend this dumper reads with.
    pub fn backend(&self) -> Backend {
        if self.bpf.is_some() {
            Backend::Bpf
        } else {
            Backend::Fdinfo
        }
    }

    /// Dumps the selected rings of `pid` and everything they depend on.
    pub fn dump(&mut self, pid: u32, selection: Selection<'_>) -> Result<Dump, DumpError> {
        self.dump_target(&Target::open(pid)?, selection)
    }

    /// Dumps the selected rings of an already opened target and everything
    /// they depend on.
    pub fn dump_target(
        &mut self,
        target: &Target,
        selection: Selection<'_>,
    ) -> Result<Dump, DumpError> {
        let read = self.read_consistent(target, Recheck::FdTable)?;
        self.finish(target, read, selection, None)
    }

    /// Reads the target until one read is consistent: the target did not
    /// exit during it, and (BPF) its fd table was the same before and after
    /// the rings were read. A read that saw the target change is retried,
    /// up to [`READ_ATTEMPTS`] reads in all.
    pub(crate) fn read_consistent(
        &mut self,
        target: &Target,
        recheck: Recheck,
    ) -> Result<Read, DumpError> {
        let pid = target.pid();
        let mut last_change = String::new();
        for _ in 0..READ_ATTEMPTS {
            if target.has_exited() {
                return Err(DumpError::ExitedDuringDump { pid });
            }
            let read = self.read_once(target, recheck);
            // Whatever the read says (an fd gone, a table shorter than its
            // header, or success), a target that exited meanwhile may have
            // been read half alive, or its pid reused: say that.
            if target.has_exited() {
                return Err(DumpError::ExitedDuringDump { pid });
            }
            match read {
                Ok(read) => return Ok(read),
                Err(DumpError::Bpf(BpfError::TargetChanged { what, .. })) => last_change = what,
                Err(error) => return Err(error),
            }
        }
        Err(DumpError::KeptChanging {
            pid,
            attempts: READ_ATTEMPTS,
            last_change,
        })
    }

    fn read_once(&mut self, target: &Target, recheck: Recheck) -> Result<Read, DumpError> {
        let pid = target.pid();
        let raw = match &mut self.bpf {
            Some(bpf) => {
                let mut raw = bpf.read(pid, target.pidfd())?;
                file_identity::read(pid, &mut raw)
                    .map_err(|cause| DumpError::FileIdentity { pid, cause })?;
                // A process dumping itself (`plan exec --verify`) changes
                // its own fd table by reading: each pass's iterator link
                // and the copied ring fds come and go. Its rings change
                // only through its own calls, so there is nothing to check.
                if recheck == Recheck::FdTable && pid != std::process::id() {
                    let fds_after = bpf.fd_table(pid, target.pidfd())?;
                    if let Some(what) = fd_table_change(&raw.fds, &fds_after) {
                        return Err(BpfError::TargetChanged { pid, what }.into());
                    }
                }
                raw
            }
            None => {
                let mut raw = fdinfo::read(pid)?;
                file_identity::read(pid, &mut raw)
                    .map_err(|cause| DumpError::FileIdentity { pid, cause })?;
                raw
            }
        };
        let mut raw = raw;
        ring_memory::locate_user_memory(pid, &mut raw);
        let mappings = maps::ring_mappings(pid)?;
        Ok(Read { raw, mappings })
    }

    fn finish(
        &self,
        target: &Target,
        read: Read,
        selection: Selection<'_>,
        held: Option<Held>,
    ) -> Result<Dump, DumpError> {
        let pid = target.pid();
        let source = Source {
            pid,
            backend: self.backend(),
            kernel_release: kernel_release(),
        };
        let mut image = assemble::assemble(&read.raw, &read.mappings, source, selection)?;
        let mut warnings = self.warnings.clone();
        warnings.extend(read.raw.notes.iter().cloned());
        warnings.extend(ring_memory::complete(pid, &mut image));
        // What the program's memory held must agree with the positions the
        // kernel gave (it does unless the target moved in between).
        ringplan_image::validate(&image).map_err(assemble::AssembleError::from)?;
        if self.bpf.is_none() && !image.objects.is_empty() {
            warnings.push(
                "fdinfo backend: setup flags, SQ idle, SQ thread affinity, the registered eventfd and the \
                 identity of registered files are unknown; the image marks them so and cannot be restored exactly"
                    .to_owned(),
            );
        }
        if image.objects.is_empty() {
            warnings.push(format!("pid {pid} holds no io_uring instance"));
        }
        warnings.extend(caveats::ring_caveats(&image));
        Ok(Dump {
            image,
            warnings,
            held,
        })
    }
}

/// How many times a dump reads a target that keeps changing under it
/// before it gives up and suggests `--freeze`.
pub const READ_ATTEMPTS: u32 = 3;

/// Whether a read looks at the target's fd table a second time, after the
/// rings, to see that it did not change meanwhile (about 0.6 us per fd).
/// A frozen target cannot change, so a frozen read does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recheck {
    FdTable,
    None,
}

/// One read of the kernel's state, before it is assembled into an image.
pub(crate) struct Read {
    pub(crate) raw: raw::RawState,
    pub(crate) mappings: std::collections::HashMap<u64, Vec<ringplan_image::RingMapping>>,
}

/// The first difference between the fd table read before the rings and the
/// one read after, as "fd N ...", or `None` when they are equal.
fn fd_table_change(before: &[raw::RawFdEntry], after: &[raw::RawFdEntry]) -> Option<String> {
    let describe = |fd: i32| {
        let was = before.iter().find(|entry| entry.fd == fd);
        let now = after.iter().find(|entry| entry.fd == fd);
        match (was, now) {
            (Some(_), None) => format!("fd {fd} was closed while the rings were read"),
            (None, Some(_)) => format!("fd {fd} was opened while the rings were read"),
            _ => format!("fd {fd} was replaced while the rings were read"),
        }
    };
    if before == after {
        return None;
    }
    let first = before
        .iter()
        .zip(after)
        .find(|(was, now)| was != now)
        .map(|(was, _)| was.fd);
    let fd = first.or_else(|| {
        let longer = if before.len() > after.len() {
            before
        } else {
            after
        };
        longer
            .get(before.len().min(after.len()))
            .map(|entry| entry.fd)
    })?;
    Some(describe(fd))
}

/// How a dump should be made.
#[derive(Debug, Clone, Copy, Default)]
pub struct DumpOptions<'a> {
    pub selection: Selection<'a>,
    pub backend: BackendChoice,
    /// Hold the target still while it is read (see [`freeze`]).
    pub freeze: Option<FreezeMethod>,
}

/// How the target was held still during a dump, and for how long.
#[derive(Debug, Clone)]
pub struct Held {
    pub by: HeldBy,
    /// From the freeze to the release: how long the target stood still.
    pub duration: std::time::Duration,
}

/// Dumps `pid` once with `choice`. The target is opened (and its access
/// checked) before the backend is prepared, so a caller without ptrace
/// rights over it, or a pid that is no process, gets that error rather than
/// whatever loading BPF would say.
pub fn dump(pid: u32, selection: Selection<'_>, choice: BackendChoice) -> Result<Dump, DumpError> {
    dump_with(
        pid,
        DumpOptions {
            selection,
            backend: choice,
            freeze: None,
        },
    )
}

/// Dumps `pid` once as `options` say. With `freeze`, the target is held
/// still only while the kernel's state and the rings' memory are read:
/// after the backend is ready until the image is assembled; it is let go
/// on every path out
/// (errors, panics, and the death of this process, through a watchdog).
pub fn dump_with(pid: u32, options: DumpOptions<'_>) -> Result<Dump, DumpError> {
    let target = Target::open(pid)?;
    let mut dumper = Dumper::new(options.backend)?;
    let Some(method) = options.freeze else {
        return dumper.dump_target(&target, options.selection);
    };
    let frozen = Frozen::hold(&target, method).map_err(|error| {
        if target.has_exited() {
            DumpError::ExitedDuringDump { pid }
        } else {
            DumpError::Freeze(error)
        }
    })?;
    let by = frozen.held_by().clone();
    let recheck = match frozen.held_by() {
        // Held by ringplan: nothing in the target runs. Stopped or frozen
        // by someone else: it may be let go at any moment, so look again.
        HeldBy::CgroupV2(_) | HeldBy::CgroupV1(_) | HeldBy::Signal => Recheck::None,
        HeldBy::AlreadyStopped | HeldBy::AlreadyFrozen(_) => Recheck::FdTable,
    };
    let read = dumper.read_consistent(&target, recheck);
    // Assembling reads the rings' entries from the target's memory
    // (`ring_memory`), so it happens while the target is still held.
    let dump = read.and_then(|read| dumper.finish(&target, read, options.selection, None));
    let duration = frozen.release()?;
    let mut dump = dump?;
    dump.held = Some(Held { by, duration });
    Ok(dump)
}

/// `error`'s message followed by its sources' messages, `: ` between them.
fn with_sources(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line
}

pub(crate) fn kernel_release() -> String {
    rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned()
}
