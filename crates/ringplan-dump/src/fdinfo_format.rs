//! Whether this kernel's io_uring fdinfo is in the format the fdinfo
//! backend reads, found by asking the kernel rather than by version number.
//!
//! Linux 6.1's `/proc/PID/fdinfo` of a ring differs from 6.18's in ways that
//! make it unreadable as 6.18's (see docs/kernels.md):
//! - a registered file's row is its dentry's own name (`null`), not its
//!   path (`/dev/null`), and empty slots print `<none>`;
//! - `SqThread` is -1 whenever the SQ thread holds its lock, i.e. whenever
//!   it is polling, so a ring sharing an SQ thread looks like one without;
//! - an eventfd's fdinfo has no `eventfd-semaphore` line.
//!
//! The probe sets up a ring of its own, registers `/dev/null` in it and reads
//! `/proc/self/fdinfo` of that ring: a kernel that prints the path prints the
//! 6.18 format. It also makes an eventfd and looks for `eventfd-semaphore`.

use std::os::fd::{AsFd, AsRawFd};

use ringplan_kernel::procfs::{fdinfo, Process, ProcfsError};
use rustix::io_uring::{io_uring_params, io_uring_register, io_uring_setup, IoringRegisterOp};

/// What the probe found missing, or why it could not look.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FdinfoFormatError {
    #[error(
        "this kernel's io_uring fdinfo shows a registered file by its name ({shown:?}), not its path \
         (\"/dev/null\"), as Linux 6.1 and 6.12 do: the fdinfo backend cannot read this kernel; use the \
         BPF backend"
    )]
    NamesNotPaths { shown: String },
    #[error(
        "this kernel's eventfd fdinfo has no \"eventfd-semaphore\" line (Linux 6.1 lacks it): the fdinfo \
         backend cannot tell a semaphore eventfd from a counter; use the BPF backend"
    )]
    NoEventfdSemaphore,
    /// The cause is in the message, so it is not also a `source`.
    #[error("probing this kernel's fdinfo format: {what}: {cause}")]
    Probe {
        what: &'static str,
        cause: std::io::Error,
    },
}

/// Checks that this kernel's fdinfo is the format the fdinfo backend reads.
pub fn check() -> Result<(), FdinfoFormatError> {
    let shown = registered_file_row()?;
    if shown != "/dev/null" {
        return Err(FdinfoFormatError::NamesNotPaths { shown });
    }
    if !shows_eventfd_semaphore()? {
        return Err(FdinfoFormatError::NoEventfdSemaphore);
    }
    Ok(())
}

/// Whether the kernel prints registered files by path (6.18) rather than by
/// name (6.1). Tests use it to say which behaviour a kernel must show.
pub fn shows_registered_file_paths() -> Result<bool, FdinfoFormatError> {
    Ok(registered_file_row()? == "/dev/null")
}

/// The fdinfo row of `/dev/null` registered in slot 0 of a probe ring.
fn registered_file_row() -> Result<String, FdinfoFormatError> {
    let probe = |what| {
        move |errno: rustix::io::Errno| FdinfoFormatError::Probe {
            what,
            cause: errno.into(),
        }
    };
    let mut params = io_uring_params::default();
    // SAFETY: io_uring_setup only fills `params`; the ring is never mapped
    // or submitted to.
    let ring = unsafe { io_uring_setup(1, &mut params) }.map_err(probe("setting up a ring"))?;
    let read_only = rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC;
    let null = rustix::fs::open("/dev/null", read_only, rustix::fs::Mode::empty())
        .map_err(probe("opening /dev/null"))?;
    let fds = [null.as_raw_fd()];
    // SAFETY: the argument is an array of one fd, as REGISTER_FILES with
    // nr_args 1 expects; the kernel only reads it.
    unsafe {
        io_uring_register(
            ring.as_fd(),
            IoringRegisterOp::RegisterFiles,
            fds.as_ptr().cast(),
            1,
        )
    }
    .map_err(probe("registering /dev/null"))?;
    let text = fdinfo::read(Process::Current, ring.as_raw_fd()).map_err(read_error)?;
    let rows = fdinfo::user_file_rows(&text);
    Ok(rows
        .get(&0)
        .map(|row| String::from_utf8_lossy(row).into_owned())
        .unwrap_or_default())
}

fn shows_eventfd_semaphore() -> Result<bool, FdinfoFormatError> {
    let eventfd =
        rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).map_err(|errno| {
            FdinfoFormatError::Probe {
                what: "creating an eventfd",
                cause: errno.into(),
            }
        })?;
    let text = fdinfo::read(Process::Current, eventfd.as_raw_fd()).map_err(read_error)?;
    Ok(fdinfo::field(&text, "eventfd-semaphore").is_some())
}

fn read_error(error: ProcfsError) -> FdinfoFormatError {
    FdinfoFormatError::Probe {
        what: "reading fdinfo",
        cause: error.into_io_error(),
    }
}

#[cfg(test)]
mod tests {
    /// Whichever kernel this is, the probe answers, and the two questions
    /// agree with `check`.
    #[test]
    fn the_probe_answers_on_this_kernel() {
        let paths = super::shows_registered_file_paths().expect("probing fdinfo");
        match super::check() {
            Ok(()) => assert!(paths),
            Err(super::FdinfoFormatError::NamesNotPaths { shown }) => {
                assert!(!paths);
                assert_eq!(shown, "null", "6.1 prints the dentry name");
            }
            Err(super::FdinfoFormatError::NoEventfdSemaphore) => assert!(paths),
            Err(error) => panic!("{error}"),
        }
    }
}
