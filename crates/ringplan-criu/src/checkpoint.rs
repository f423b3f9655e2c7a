//! `plan checkpoint`: take the rings out of every process of the tree that
//! has some (each left stopped, its image written and synced; when two
//! processes share a ring, at an fd or by a mapping, all of them at once
//! into one tree image), write the manifest, then `criu dump` the tree, which now has no
//! io_uring. If criu
//! fails, or with `leave_running`, every process gets its rings back and
//! runs on.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ringplan_kernel::abi::RING_FILE_PATH;
use ringplan_kernel::procfs::fd::ProcessFds;
use ringplan_kernel::procfs::maps::{self, MapsEntry};
use ringplan_kernel::procfs::{task, Process};

use crate::binary::Criu;
use crate::error::CriuError;
use crate::manifest::{image_name, Manifest, ProcessRings, FORMAT, TREE_IMAGE, VERSION};
use crate::mover::{resume, RingMover};

/// How to checkpoint.
#[derive(Debug, Clone, Default)]
pub struct CheckpointOptions {
    /// Leave the tree running after the dump, its rings given back.
    pub leave_running: bool,
    /// Passed to `criu dump` after ringplan's own arguments.
    pub criu_args: Vec<String>,
}

/// What a checkpoint did and how long each part took.
#[derive(Debug, Clone)]
pub struct Checkpointed {
    pub manifest: Manifest,
    /// Taking the rings out, all processes, from the first one's command
    /// (loading BPF included) to the manifest on disk.
    pub take_out: Duration,
    /// How long the processes with rings were stopped: from the first
    /// one's stop to the end of the dump (and of the put-back when they
    /// run on).
    pub stopped: Duration,
    /// `criu dump`.
    pub criu_dump: Duration,
    /// Giving the rings back (`leave_running` only).
    pub put_back: Duration,
}

/// Checkpoints the tree rooted at `pid` into `dir` (which must exist).
pub fn checkpoint(
    criu: &Criu,
    pid: u32,
    dir: &Path,
    options: &CheckpointOptions,
    mover: &mut dyn RingMover,
) -> Result<Checkpointed, CriuError> {
    if !dir.is_dir() {
        return Err(CriuError::Directory {
            dir: dir.to_path_buf(),
            what: "is not a directory".to_owned(),
        });
    }
    let tree = task::tree(pid).map_err(|source| CriuError::Tree { pid, source })?;
    let with_rings: Vec<u32> = tree.into_iter().filter(|&pid| holds_rings(pid)).collect();
    if !with_rings.is_empty() {
        mover
            .check_kernel()
            .map_err(|cause| CriuError::KernelCannot {
                cause: cause.to_string(),
            })?;
    }

    let started = Instant::now();
    let (taken, first_stop) = if rings_shared_between(&with_rings) {
        take_out_tree(mover, pid, dir, &with_rings)?
    } else {
        take_out_each(mover, dir, &with_rings)?
    };
    let first_stop = first_stop.unwrap_or_else(Instant::now);
    // criu dump fails on an io thread ("Can't block signals"): say why
    // instead, and give the rings back.
    for process in taken.processes() {
        let threads = task::io_threads(Process::Pid(process)).unwrap_or_default();
        if !threads.is_empty() {
            let error = CriuError::IoThreadsLeft {
                pid: process,
                threads: threads.join(", "),
            };
            give_back(mover, &taken, &error.to_string())?;
            return Err(error);
        }
    }
    let manifest = Manifest {
        format: FORMAT.to_owned(),
        version: VERSION,
        root_pid: pid,
        criu_version: criu.version().to_owned(),
        processes: taken.manifest_entries(),
        thread_ids: thread_ids(pid),
        tree_image: match &taken {
            Taken::Tree { .. } => Some(TREE_IMAGE.to_owned()),
            Taken::Each(_) => None,
        },
    };
    if let Err(error) = manifest.write(dir) {
        give_back(mover, &taken, &error.to_string())?;
        return Err(error);
    }
    let take_out = started.elapsed();

    let dumping = Instant::now();
    let dumped = criu.dump(pid, dir, options.leave_running, &options.criu_args);
    let criu_dump = dumping.elapsed();
    if let Err(error) = dumped {
        // No checkpoint to restore: without its manifest, `plan restore`
        // says so instead of feeding criu a half-written directory.
        let _ = std::fs::remove_file(dir.join(crate::manifest::MANIFEST));
        give_back(mover, &taken, &error.to_string())?;
        return Err(error);
    }
    let giving = Instant::now();
    if options.leave_running {
        give_back(mover, &taken, "criu dump --leave-running succeeded")?;
    }
    let put_back = giving.elapsed();
    Ok(Checkpointed {
        manifest,
        take_out,
        stopped: first_stop.elapsed(),
        criu_dump,
        put_back,
    })
}

/// Every thread id of the tree rooted at `pid`, as far as /proc shows it
/// now (the tree's rings are out, so no io thread is among them); what
/// ends meanwhile is left out.
fn thread_ids(pid: u32) -> Vec<u32> {
    let mut ids = Vec::new();
    for process in task::tree(pid).unwrap_or_else(|_| vec![pid]) {
        ids.extend(task::ids(Process::Pid(process)).unwrap_or_default());
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Whether `pid` holds a ring: an io_uring fd, or a mapping of one (a
/// ring whose fd was closed lives on in its mapping).
fn holds_rings(pid: u32) -> bool {
    !ring_inodes(pid).is_empty()
}

/// The inodes of the rings `pid` holds at an fd or maps (every ring has an
/// anonymous inode of its own, so two processes share a ring when they
/// name one inode). A process that is gone or unreadable holds none here:
/// the take-out that follows reads it again and says why.
fn ring_inodes(pid: u32) -> BTreeSet<u64> {
    let process = Process::Pid(pid);
    let mut inodes = BTreeSet::new();
    if let Ok(mut fds) = ProcessFds::open(process) {
        for fd in fds.ring_fds().unwrap_or_default() {
            if let Ok(Some(inode)) = fds.inode(fd) {
                inodes.insert(inode.ino);
            }
        }
    }
    if let Ok(maps) = maps::read(process) {
        inodes.extend(
            maps.lines()
                .filter_map(MapsEntry::parse)
                .filter(|entry| entry.path == RING_FILE_PATH)
                .map(|entry| entry.inode),
        );
    }
    inodes
}

/// What a checkpoint took out: each process's rings into an image of its
/// own, or a whole tree's into one.
enum Taken {
    Each(Vec<(u32, PathBuf)>),
    Tree {
        root: u32,
        image: PathBuf,
        processes: Vec<u32>,
    },
}

impl Taken {
    /// The processes whose rings were taken out.
    fn processes(&self) -> Vec<u32> {
        match self {
            Taken::Each(taken) => taken.iter().map(|(pid, _)| *pid).collect(),
            Taken::Tree { processes, .. } => processes.clone(),
        }
    }

    fn manifest_entries(&self) -> Vec<ProcessRings> {
        self.processes()
            .into_iter()
            .map(|pid| ProcessRings {
                pid,
                image: match self {
                    Taken::Each(_) => image_name(pid),
                    Taken::Tree { .. } => TREE_IMAGE.to_owned(),
                },
            })
            .collect()
    }
}

/// Takes each process's rings out into its own image (the mover may do
/// them at once); on a failure, gives back what it took.
fn take_out_each(
    mover: &mut dyn RingMover,
    dir: &Path,
    with_rings: &[u32],
) -> Result<(Taken, Option<Instant>), CriuError> {
    let requests: Vec<(u32, PathBuf)> = with_rings
        .iter()
        .map(|&process| (process, dir.join(image_name(process))))
        .collect();
    let mut results = mover.take_out_all(&requests).into_iter();
    let mut taken: Vec<(u32, PathBuf)> = Vec::new();
    let mut first_stop: Option<Instant> = None;
    let mut first_failure = None;
    for (process, image) in requests {
        // A list cut short after a failure: the rest were not tried.
        let Some(result) = results.next() else {
            if first_failure.is_none() {
                first_failure = Some((process, "the mover did not try it".to_owned()));
            }
            break;
        };
        match result {
            Ok(stopped_at) => {
                first_stop = Some(first_stop.map_or(stopped_at, |first| first.min(stopped_at)));
                taken.push((process, image));
            }
            // A process that ended since the tree was read has no rings
            // to take out, and criu will not dump it.
            Err(_) if !Path::new(&format!("/proc/{process}")).exists() => {}
            Err(cause) => {
                first_failure.get_or_insert((process, cause.to_string()));
            }
        }
    }
    let taken = Taken::Each(taken);
    if let Some((process, cause)) = first_failure {
        let during = format!("taking the rings out of process {process} failed: {cause}");
        give_back(mover, &taken, &during)?;
        return Err(CriuError::TakeOut {
            pid: process,
            cause,
        });
    }
    Ok((taken, first_stop))
}

/// Takes the rings of the whole tree of `root` out into one tree image:
/// its processes share rings. A refusal leaves the tree as found.
fn take_out_tree(
    mover: &mut dyn RingMover,
    root: u32,
    dir: &Path,
    with_rings: &[u32],
) -> Result<(Taken, Option<Instant>), CriuError> {
    let image = dir.join(TREE_IMAGE);
    let stopped_at = mover
        .take_out_tree(root, &image)
        .map_err(|cause| CriuError::TakeOut {
            pid: root,
            cause: cause.to_string(),
        })?;
    Ok((
        Taken::Tree {
            root,
            image,
            processes: with_rings.to_vec(),
        },
        Some(stopped_at),
    ))
}

/// Whether two processes of `pids` hold one ring, at an fd or by a
/// mapping (a ring set up before `fork()`, which a child may keep only
/// mapped): only a tree image holds it as one object, and a take-out per
/// process would leave the ring alive in the other.
fn rings_shared_between(pids: &[u32]) -> bool {
    let mut seen = BTreeSet::new();
    pids.iter().any(|&pid| {
        ring_inodes(pid)
            .into_iter()
            .any(|inode| !seen.insert(inode))
    })
}

/// Puts every taken ring back and resumes the processes; the first
/// failure is reported with `during` (what went wrong before).
fn give_back(mover: &mut dyn RingMover, taken: &Taken, during: &str) -> Result<(), CriuError> {
    let taken = match taken {
        Taken::Each(taken) => taken,
        Taken::Tree {
            root,
            image,
            processes,
        } => {
            // `--tree --detach` stopped every process of the tree.
            let tree = task::tree(*root).unwrap_or_else(|_| processes.clone());
            let result = mover.put_back_tree(*root, image);
            for &pid in &tree {
                let _ = resume(pid);
            }
            return result.map_err(|cause| CriuError::PutBackAfter {
                during: during.to_owned(),
                pid: *root,
                image: image.clone(),
                cause: cause.to_string(),
            });
        }
    };
    let mut first_failure = None;
    for (pid, image) in taken {
        match mover.put_back(*pid, image) {
            Ok(()) => {
                let _ = resume(*pid);
            }
            Err(cause) => {
                first_failure.get_or_insert(CriuError::PutBackAfter {
                    during: during.to_owned(),
                    pid: *pid,
                    image: image.clone(),
                    cause: cause.to_string(),
                });
            }
        }
    }
    first_failure.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsRawFd, OwnedFd};

    use rustix::io_uring::{io_uring_params, io_uring_setup};
    use rustix::mm::{mmap, munmap, MapFlags, ProtFlags};

    use super::*;

    /// A ring of this process with its SQ ring mapped.
    struct MappedRing {
        fd: OwnedFd,
        addr: *mut std::ffi::c_void,
        len: usize,
    }

    impl MappedRing {
        fn set_up() -> MappedRing {
            let mut params = io_uring_params::default();
            // SAFETY: `params` is a zeroed io_uring_params the kernel
            // fills in.
            let fd = unsafe { io_uring_setup(4, &mut params) }.expect("io_uring_setup");
            let len = params.sq_off.array as usize + 4 * params.sq_entries as usize;
            // SAFETY: a new shared mapping of the ring's SQ ring, at an
            // address the kernel picks; unmapped on drop.
            let addr = unsafe {
                mmap(
                    std::ptr::null_mut(),
                    len,
                    ProtFlags::READ | ProtFlags::WRITE,
                    MapFlags::SHARED | MapFlags::POPULATE,
                    &fd,
                    0,
                )
            }
            .expect("mmap of the SQ ring");
            MappedRing { fd, addr, len }
        }
    }

    impl Drop for MappedRing {
        fn drop(&mut self) {
            // SAFETY: the mapping `set_up` made, used by no one else.
            let _ = unsafe { munmap(self.addr, self.len) };
        }
    }

    /// What a forked child does with the ring it inherited.
    #[derive(Clone, Copy)]
    enum Child {
        /// Closes its fd and keeps the mapping.
        KeepsTheMapping,
        /// Closes its fd, unmaps, and sets up a ring of its own.
        HasItsOwn,
    }

    /// Forks a child that does what `child` says with `ring` and then
    /// waits to be killed; returns its pid once it has done it.
    fn fork_child(ring: &MappedRing, child: Child) -> u32 {
        let (ready_read, ready_write) =
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).expect("pipe");
        // SAFETY: the child makes only raw syscalls (the test harness has
        // other threads: no allocation, no locks) and never returns.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork");
        if pid == 0 {
            // SAFETY: raw syscalls on fds and memory this child owns.
            unsafe {
                libc::close(ring.fd.as_raw_fd());
                if let Child::HasItsOwn = child {
                    libc::munmap(ring.addr, ring.len);
                    let mut params = [0u8; 120];
                    libc::syscall(libc::SYS_io_uring_setup, 4u32, params.as_mut_ptr());
                }
                libc::write(ready_write.as_raw_fd(), b"r".as_ptr().cast(), 1);
                loop {
                    libc::pause();
                }
            }
        }
        drop(ready_write);
        let mut byte = [0u8; 1];
        assert_eq!(rustix::io::read(&ready_read, &mut byte).expect("ready"), 1);
        pid as u32
    }

    fn kill(pid: u32) {
        // SAFETY: kill and waitpid of this test's own child.
        unsafe {
            libc::kill(pid as i32, libc::SIGKILL);
            libc::waitpid(pid as i32, std::ptr::null_mut(), 0);
        }
    }

    #[test]
    fn a_ring_a_child_keeps_only_mapped_is_shared_and_a_ring_of_its_own_is_not() {
        let ring = MappedRing::set_up();
        let me = std::process::id();
        let mapping_only = fork_child(&ring, Child::KeepsTheMapping);
        let own_ring = fork_child(&ring, Child::HasItsOwn);
        let outcome = (
            holds_rings(mapping_only),
            rings_shared_between(&[me, mapping_only]),
            holds_rings(own_ring),
            rings_shared_between(&[me, own_ring]),
        );
        kill(mapping_only);
        kill(own_ring);
        assert_eq!(outcome, (true, true, true, false));
    }
}
