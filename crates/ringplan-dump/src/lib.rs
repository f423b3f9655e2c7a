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
//! `/proc/PID/maps` ([`maps`]) into an image with deterministic ids. The
//! target is reached through a pidfd ([`target`]), which needs the same
//! rights as ptrace.
//!
//! Reading changes nothing in the target: the only state this crate creates
//! is the dumper's own (BPF links, duplicated fds), all released on return.

pub mod assemble;
pub mod bpf;
pub mod fdinfo;
pub mod fdinfo_format;
pub mod maps;
pub mod raw;
pub mod target;

use ringplan_image::{Backend, Image, Source};

pub use assemble::{AssembleError, Selection};
pub use bpf::{BpfDumper, BpfError};
pub use fdinfo::FdinfoError;
pub use maps::MapsError;
pub use target::{Target, TargetError};

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
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("BPF backend: {0}")]
    Bpf(#[from] BpfError),
    #[error("fdinfo backend: {0}")]
    Fdinfo(#[from] FdinfoError),
    #[error(transparent)]
    Maps(#[from] MapsError),
    #[error(transparent)]
    Assemble(#[from] AssembleError),
}

/// A finished dump: the image and what the caller should be told about it.
#[derive(Debug)]
pub struct Dump {
    pub image: Image,
    /// Things the image cannot say for itself, one line each.
    pub warnings: Vec<String>,
}

/// A dumper with its backend ready; reuse it to dump several times without
/// loading the BPF program again.
pub struct Dumper {
    bpf: Option<BpfDumper>,
    warnings: Vec<String>,
}

impl Dumper {
    /// Prepares `choice`. `Auto` loads BPF and falls back to fdinfo when BPF
    /// is unavailable; `Bpf` fails instead.
    pub fn new(choice: BackendChoice) -> Result<Dumper, DumpError> {
        match choice {
            BackendChoice::Fdinfo => Ok(Dumper { bpf: None, warnings: Vec::new() }),
            BackendChoice::Bpf => Ok(Dumper { bpf: Some(BpfDumper::load()?), warnings: Vec::new() }),
            BackendChoice::Auto => match BpfDumper::load() {
                Ok(bpf) => Ok(Dumper { bpf: Some(bpf), warnings: Vec::new() }),
                Err(error) if error.is_unavailable() => Ok(Dumper {
                    bpf: None,
                    warnings: vec![format!("BPF is unavailable ({error}); using the fdinfo backend")],
                }),
                Err(error) => Err(error.into()),
            },
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
    pub fn dump_target(&mut self, target: &Target, selection: Selection<'_>) -> Result<Dump, DumpError> {
        let pid = target.pid();
        let raw = match &mut self.bpf {
            Some(bpf) => bpf.read(pid, target.pidfd())?,
            None => fdinfo::read(pid)?,
        };
        let mappings = maps::ring_mappings(pid)?;
        let source = Source { pid, backend: self.backend(), kernel_release: kernel_release() };
        let image = assemble::assemble(&raw, &mappings, source, selection)?;
        let mut warnings = self.warnings.clone();
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
        Ok(Dump { image, warnings })
    }
}

/// Dumps `pid` once with `choice`. The target is opened (and its access
/// checked) before the backend is prepared, so a caller without ptrace
/// rights over it, or a pid that is no process, gets that error rather than
/// whatever loading BPF would say.
pub fn dump(pid: u32, selection: Selection<'_>, choice: BackendChoice) -> Result<Dump, DumpError> {
    let target = Target::open(pid)?;
    Dumper::new(choice)?.dump_target(&target, selection)
}

fn kernel_release() -> String {
    rustix::system::uname().release().to_string_lossy().into_owned()
}
