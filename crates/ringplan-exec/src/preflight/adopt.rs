//! Adopting what a process already holds (`plan exec --pid`): a process
//! whose ordinary fds a restorer brought back (or whose rings
//! `plan dump --detach` took out) holds the plan's eventfds and files at
//! their recorded numbers already. Each such fd is checked against what the
//! plan would create there (its `create_eventfd` or `open_file` step), from
//! outside, while the process is held: the same kind of object, for a file
//! the same inode (device and inode number, or the path when the plan
//! records no inode) and access mode, for an eventfd the same count and
//! flags. The same object is adopted: the run uses that fd where the step's
//! handle is named and never closes it. Anything else at a recorded fd is
//! refused in one line, before anything is done.
//!
//! A tree plan's `receive_fd` of an eventfd or a file is adopted when the
//! fd the process holds at the install target is the very file the
//! creating process holds at `from_fd` (`kcmp(KCMP_FILE)`): after
//! `plan dump --detach` every process of a tree keeps its eventfds and
//! files, one open file shared as before.
//!
//! An adopted file keeps its own offset (the process's, which is what its
//! program will read from next); an offset other than the image's is
//! reported, not changed.

use ringplan_image::{FileType, ObjectId};
use ringplan_kernel::abi::identity::O_ACCMODE;
use ringplan_kernel::abi::linux::{O_CLOEXEC, O_NONBLOCK};
use ringplan_kernel::procfs::fd::{FdKind, ProcessFds};
use ringplan_kernel::procfs::fdinfo::CommonFdinfo;
use ringplan_kernel::procfs::ProcfsError;
use ringplan_plan::{CreateEventfd, Op, OpenFile, Plan, ReceivedKind};

use crate::error::ExecError;

/// An fd of the process that the run uses instead of creating its object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdoptedFd {
    /// The step that would have created the object; the run's handle of
    /// that step names this fd.
    pub step: usize,
    /// The image object.
    pub object: ObjectId,
    /// The fd number in the process (one of the object's recorded fds).
    pub fd: i32,
    /// What it is, as the image says (`eventfd (count 3, ...)`, or the
    /// file's path and type).
    pub what: String,
    /// Differences that were left as the process has them (a file's
    /// offset, the close-on-exec flag), or a field this kernel does not
    /// show (an eventfd's `EFD_SEMAPHORE` on 6.1).
    pub notes: Vec<String>,
}

/// The fds of `open` (the process's open fd numbers, ascending) that the
/// plan installs an eventfd or a reopened file onto, checked against the
/// plan: the adopted ones, or the refusal of the first that is another
/// object. An open fd the plan installs anything else onto (a ring, an
/// external input) is left for the caller to refuse as taken.
pub(crate) fn adoptable_fds(
    pid: u32,
    plan: &Plan,
    open: &[i32],
) -> Result<Vec<AdoptedFd>, ExecError> {
    let unavailable = |error: ProcfsError| ExecError::ProcessUnavailable {
        pid,
        cause: error.to_string(),
    };
    let mut fds = None;
    let mut adopted = Vec::new();
    for step in &plan.steps {
        let Op::InstallFd(install) = &step.op else {
            continue;
        };
        if open.binary_search(&install.fd).is_err() {
            continue;
        }
        let Ok(source) = usize::try_from(install.source_handle.0) else {
            continue;
        };
        let Some(creating) = plan.steps.get(source) else {
            continue;
        };
        let recorded = match &creating.op {
            Op::CreateEventfd(create) => Recorded::Eventfd(create),
            Op::OpenFile(open) => Recorded::File(open),
            Op::ReceiveFd(receive) if receive.kind != ReceivedKind::Ring => {
                let Some(object) = creating.object else {
                    continue;
                };
                let what = format!(
                    "the {} at fd {} of process {}",
                    receive.kind.name(),
                    receive.from_fd,
                    receive.from_pid
                );
                match ringplan_kernel::kcmp::same_file(
                    pid,
                    install.fd,
                    receive.from_pid,
                    receive.from_fd,
                ) {
                    Ok(true) => adopted.push(AdoptedFd {
                        step: source,
                        object,
                        fd: install.fd,
                        what,
                        notes: Vec::new(),
                    }),
                    Ok(false) => {
                        return Err(ExecError::NotTheRecordedObject {
                            pid,
                            fd: install.fd,
                            recorded: what,
                            found: "another open file".to_owned(),
                        })
                    }
                    // Not open in the other process yet (its part creates
                    // it): the fd here is in the way, refused as taken.
                    Err(rustix::io::Errno::BADF) => {}
                    Err(errno) => {
                        return Err(ExecError::ProcessUnavailable {
                            pid,
                            cause: format!("kcmp(KCMP_FILE) of fd {}: {errno}", install.fd),
                        })
                    }
                }
                continue;
            }
            _ => continue,
        };
        let Some(object) = creating.object else {
            continue;
        };
        let fds = match &mut fds {
            Some(fds) => fds,
            None => fds.insert(ProcessFds::open(pid.into()).map_err(unavailable)?),
        };
        let held = Held::read(fds, install.fd).map_err(unavailable)?;
        let Some(held) = held else {
            // Closed since the listing: free, nothing to adopt.
            continue;
        };
        let mut notes =
            recorded
                .compare(&held)
                .map_err(|found| ExecError::NotTheRecordedObject {
                    pid,
                    fd: install.fd,
                    recorded: recorded.describe(),
                    found,
                })?;
        let held_cloexec = held.fdinfo.flags & O_CLOEXEC != 0;
        if held_cloexec != install.cloexec {
            notes.push(format!(
                "close-on-exec is {} in the process, {} in the image: left as it is",
                on_off(held_cloexec),
                on_off(install.cloexec)
            ));
        }
        adopted.push(AdoptedFd {
            step: source,
            object,
            fd: install.fd,
            what: recorded.describe(),
            notes,
        });
    }
    Ok(adopted)
}

fn on_off(value: bool) -> &'static str {
    if value {
        "set"
    } else {
        "clear"
    }
}

/// What the plan would create at an fd.
enum Recorded<'a> {
    Eventfd(&'a CreateEventfd),
    File(&'a OpenFile),
}

/// What the process holds at an fd, read from outside.
struct Held {
    link: String,
    kind: FdKind,
    inode: ringplan_kernel::procfs::fd::FdInode,
    fdinfo: CommonFdinfo,
}

impl Held {
    /// `None` when the fd was closed meanwhile.
    fn read(fds: &mut ProcessFds, fd: i32) -> Result<Option<Held>, ProcfsError> {
        let Some(link) = fds.read_link(fd)? else {
            return Ok(None);
        };
        let link_bytes = link.to_vec();
        let Some(inode) = fds.inode(fd)? else {
            return Ok(None);
        };
        let path = fds.fdinfo_path(fd);
        let Some(text) = fds.read_fdinfo(fd)? else {
            return Ok(None);
        };
        let fdinfo = CommonFdinfo::parse(&path, text)?;
        Ok(Some(Held {
            kind: FdKind::of_link(&link_bytes),
            link: String::from_utf8_lossy(&link_bytes).into_owned(),
            inode,
            fdinfo,
        }))
    }

    fn file_type(&self) -> FileType {
        FileType::from_mode(self.inode.mode)
    }

    /// As a refusal names it.
    fn describe(&self) -> String {
        match self.kind {
            FdKind::Eventfd => describe_eventfd(
                self.fdinfo.eventfd_count.unwrap_or(0),
                self.fdinfo.eventfd_semaphore,
                self.fdinfo.flags & O_NONBLOCK != 0,
            ),
            _ => format!(
                "{:?} ({}, {}, {})",
                self.link,
                self.file_type().name(),
                ringplan_image::FileIdentity {
                    dev: self.inode.dev,
                    ino: self.inode.ino,
                },
                access_mode(self.fdinfo.flags)
            ),
        }
    }
}

fn describe_eventfd(count: u64, semaphore: Option<bool>, nonblock: bool) -> String {
    let semaphore = match semaphore {
        Some(true) => ", semaphore",
        Some(false) => "",
        None => ", semaphore not shown",
    };
    let nonblock = if nonblock { ", non-blocking" } else { "" };
    format!("an eventfd (count {count}{semaphore}{nonblock})")
}

fn access_mode(flags: u32) -> &'static str {
    match flags & O_ACCMODE {
        0 => "read-only",
        1 => "write-only",
        _ => "read-write",
    }
}

impl Recorded<'_> {
    /// As a refusal names it.
    fn describe(&self) -> String {
        match self {
            Recorded::Eventfd(create) => {
                describe_eventfd(create.count, Some(create.semaphore), create.nonblock)
            }
            Recorded::File(open) => {
                let file_type = open.file_type.map_or("a file", FileType::name);
                let identity = open
                    .identity
                    .map_or_else(String::new, |identity| format!(", {identity}"));
                format!(
                    "{:?} ({file_type}{identity}, {})",
                    open.path,
                    access_mode(open.flags)
                )
            }
        }
    }

    /// `Ok(notes)` when `held` is the recorded object (the notes say what
    /// differs and is left as the process has it), `Err(what it is)` when
    /// it is another.
    fn compare(&self, held: &Held) -> Result<Vec<String>, String> {
        let mut notes = Vec::new();
        match self {
            Recorded::Eventfd(create) => {
                if held.kind != FdKind::Eventfd {
                    return Err(held.describe());
                }
                let nonblock = held.fdinfo.flags & O_NONBLOCK != 0;
                let same = held.fdinfo.eventfd_count == Some(create.count)
                    && nonblock == create.nonblock
                    && held
                        .fdinfo
                        .eventfd_semaphore
                        .is_none_or(|semaphore| semaphore == create.semaphore);
                if !same {
                    return Err(held.describe());
                }
                if held.fdinfo.eventfd_semaphore.is_none() {
                    notes.push(
                        "this kernel's fdinfo does not show EFD_SEMAPHORE (Linux 6.1 does not): not compared"
                            .to_owned(),
                    );
                }
            }
            Recorded::File(open) => {
                if held.kind != FdKind::Other || !open.admits(held.file_type()) {
                    return Err(held.describe());
                }
                let same_inode = match open.identity {
                    Some(identity) => {
                        identity.dev == held.inode.dev && identity.ino == held.inode.ino
                    }
                    // A plan without the inode: the path is all there is.
                    None => held.link == open.path,
                };
                if !same_inode || held.fdinfo.flags & O_ACCMODE != open.flags & O_ACCMODE {
                    return Err(held.describe());
                }
                if open.identity.is_some() && held.link != open.path {
                    notes.push(format!(
                        "the process's fd shows the path {:?}: the same inode, renamed or deleted since the dump",
                        held.link
                    ));
                }
                if held.fdinfo.pos != open.pos {
                    notes.push(format!(
                        "offset {} in the process, {} in the image: the process's is kept",
                        held.fdinfo.pos, open.pos
                    ));
                }
            }
        }
        Ok(notes)
    }
}
