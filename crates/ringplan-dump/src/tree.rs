//! Dumping a process and its descendants into one image (`plan dump
//! --tree`). A ring created before `fork()` is one ring that parent and
//! child both hold; so is an eventfd or a file. Each process is read as a
//! single dump reads it, then the reads are merged into one state in which
//! every kernel object appears once, and [`crate::assemble::assemble_tree`]
//! records what each process holds of it (its fds, a ring's mappings).
//!
//! Identity across processes: the BPF backend keys rings, eventfds and
//! files by kernel address (`io_ring_ctx`, `eventfd_ctx`, `struct file`),
//! which is the same in every process that holds the object. The fdinfo
//! backend keys a ring by its anonymous inode's number (`ino:`, one inode
//! per ring) and an eventfd by `eventfd-id` (a system-wide ida), both the
//! same in every process; its other files are stand-ins numbered per read,
//! renumbered here so that two processes' stand-ins never collide (fdinfo
//! cannot tell which `struct file` a registered slot holds in any case).
//! An object read by several processes keeps the first read, in tree
//! order: the dumped process's when it holds it.
//!
//! With `--freeze` every process of the tree is held before the first read
//! and let go after the last, also on every error (each hold lets go when
//! dropped); the tree is listed again once all are held, and a tree that
//! changed meanwhile (a fork, an exit) is let go and read again. A child
//! that has exited and waits to be reaped (a zombie) holds nothing and is
//! left out.

use std::collections::HashMap;

use ringplan_image::{Backend, RingMapping, Source};
use ringplan_kernel::procfs::{stat, task, Process, ProcfsError};

use crate::assemble::{assemble_tree, TreePart};
use crate::freeze::{FreezeMethod, Frozen, HeldBy};
use crate::raw::{FileKey, RawFdEntry, RawFileRole, RawState};
use crate::target::{Target, TargetError};
use crate::{
    caveats, kernel_release, ring_memory, BackendChoice, Dump, DumpError, Dumper, Held, Read,
    Recheck, READ_ATTEMPTS,
};

/// One process of the tree and its parent (`None` for the dumped one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub pid: u32,
    pub parent: Option<u32>,
}

/// `pid` and every process descended from it, parents before their
/// children, each with its parent (`/proc/PID/task/TID/children`).
pub fn list(pid: u32) -> Result<Vec<Member>, ProcfsError> {
    let mut tree = vec![Member { pid, parent: None }];
    let mut next = 0;
    while let Some(&Member { pid: parent, .. }) = tree.get(next) {
        next += 1;
        match task::children(Process::Pid(parent)) {
            Ok(children) => {
                for child in children {
                    if !tree.iter().any(|member| member.pid == child) {
                        tree.push(Member {
                            pid: child,
                            parent: Some(parent),
                        });
                    }
                }
            }
            // A descendant that ended meanwhile has no children to list.
            Err(error) if parent != pid && error.is_not_found() => {}
            Err(error) => return Err(error),
        }
    }
    Ok(tree)
}

/// How a tree dump should be made.
#[derive(Debug, Clone, Copy, Default)]
pub struct TreeOptions {
    pub backend: BackendChoice,
    /// Hold every process of the tree still while they are read.
    pub freeze: Option<FreezeMethod>,
}

/// Dumps `pid` and its descendants into one image (see the module doc).
pub fn dump_tree(pid: u32, options: TreeOptions) -> Result<Dump, DumpError> {
    // The dumped process first: no rights over it, or no such process, is
    // said before BPF is loaded.
    Target::open(pid)?;
    let mut dumper = Dumper::new(options.backend)?;
    dump_tree_with(&mut dumper, pid, options.freeze)
}

/// [`dump_tree`] with a dumper already prepared (the BPF program loaded
/// once for several dumps).
pub fn dump_tree_with(
    dumper: &mut Dumper,
    pid: u32,
    freeze: Option<FreezeMethod>,
) -> Result<Dump, DumpError> {
    let root = Target::open(pid)?;
    with_attempts(pid, || dump_once(dumper, &root, freeze))
}

/// Runs `attempt` until it succeeds or fails for good, at most
/// [`READ_ATTEMPTS`] times while the tree keeps changing under it.
fn with_attempts<T>(
    pid: u32,
    mut attempt: impl FnMut() -> Result<T, Attempt>,
) -> Result<T, DumpError> {
    let mut last_change = String::new();
    for _ in 0..READ_ATTEMPTS {
        match attempt() {
            Ok(done) => return Ok(done),
            Err(Attempt::Changed(what)) => last_change = what,
            Err(Attempt::Failed(error)) => return Err(error),
        }
    }
    Err(DumpError::KeptChanging {
        pid,
        attempts: READ_ATTEMPTS,
        last_change,
    })
}

/// Why one attempt at a tree did not give an image.
enum Attempt {
    /// The tree changed (a process forked, exited or changed its fds):
    /// read again.
    Changed(String),
    Failed(DumpError),
}

impl From<DumpError> for Attempt {
    fn from(error: DumpError) -> Attempt {
        Attempt::Failed(error)
    }
}

/// The tree of `pid` without the descendants that have exited (a zombie
/// its parent has not reaped holds no files; its own children were given
/// to another parent).
fn listed(pid: u32) -> Result<Vec<Member>, Attempt> {
    let mut members =
        list(pid).map_err(|cause| Attempt::Failed(DumpError::TreeListing { pid, cause }))?;
    // Parents come before their children, so a child listed under a
    // parent that was left out (caught mid-exit) is left out too.
    let mut kept: Vec<u32> = Vec::with_capacity(members.len());
    members.retain(|member| {
        let keep = member.parent.is_none_or(|parent| kept.contains(&parent))
            && (member.pid == pid
                || stat::read(Process::Pid(member.pid)).is_ok_and(|stat| !stat.is_exiting()));
        if keep {
            kept.push(member.pid);
        }
        keep
    });
    Ok(members)
}

/// The tree of `pid`, listed, and each process opened; a descendant that
/// exited meanwhile is a change of the tree.
fn opened(pid: u32) -> Result<(Vec<Member>, Vec<Target>), Attempt> {
    let members = listed(pid)?;
    let mut targets = Vec::with_capacity(members.len());
    for member in &members {
        match Target::open(member.pid) {
            Ok(target) => targets.push(target),
            Err(TargetError::NoSuchProcess { .. } | TargetError::Exited { .. })
                if member.pid != pid =>
            {
                return Err(Attempt::Changed(format!(
                    "process {} exited while the tree was listed",
                    member.pid
                )))
            }
            Err(error) => return Err(DumpError::from(error).into()),
        }
    }
    Ok((members, targets))
}

/// Holds every process of `targets` (the tree of `pid`, `members`) with
/// `method`, in tree order, then lists the tree again: a process forked
/// before its parent stopped is not held, which is a change of the tree.
/// Every hold is let go on every way out but success.
fn hold_all(
    pid: u32,
    members: &[Member],
    targets: &[Target],
    method: FreezeMethod,
) -> Result<Vec<Frozen>, Attempt> {
    let mut holds = Vec::with_capacity(targets.len());
    for target in targets {
        match Frozen::hold(target, method) {
            Ok(frozen) => holds.push(frozen),
            Err(_) if target.has_exited() && target.pid() != pid => {
                return Err(Attempt::Changed(format!(
                    "process {} exited while the tree was being held",
                    target.pid()
                )))
            }
            Err(_) if target.has_exited() => return Err(DumpError::ExitedDuringDump { pid }.into()),
            Err(error) => return Err(DumpError::Freeze(error).into()),
        }
    }
    if listed(pid)? != members {
        return Err(Attempt::Changed(
            "a process of the tree forked or exited while the tree was being held".to_owned(),
        ));
    }
    Ok(holds)
}

/// A process tree every process of which is held still (`plan dump --tree
/// --detach`): listed, each process opened and held, in tree order, and
/// listed again after the last hold to see that no process was forked
/// meanwhile. Dropping it lets every process go ([`Frozen`]).
#[derive(Debug)]
pub struct HeldTree {
    /// The processes, parents before their children.
    pub members: Vec<Member>,
    /// Each member opened, in the same order.
    pub targets: Vec<Target>,
    /// Each member's hold, in the same order.
    pub holds: Vec<Frozen>,
}

/// Holds `pid` and its descendants with `method`, every process before
/// anything is read (see [`HeldTree`]); a tree that changed while it was
/// being held (a fork, an exit) is let go and held again, up to
/// [`READ_ATTEMPTS`] times.
pub fn hold_tree(pid: u32, method: FreezeMethod) -> Result<HeldTree, DumpError> {
    let root = Target::open(pid)?;
    with_attempts(pid, || {
        if root.has_exited() {
            return Err(Attempt::Failed(DumpError::ExitedDuringDump { pid }));
        }
        opened(pid).and_then(|(members, targets)| {
            let holds = hold_all(pid, &members, &targets, method)?;
            Ok(HeldTree {
                members,
                targets,
                holds,
            })
        })
    })
}

impl Dumper {
    /// Dumps a held tree into one image, as [`dump_tree`] does, each
    /// process read as a single dump reads it (the fd table looked at
    /// again after the rings: a process sharing a held one's fd table
    /// without being a thread of it is not held). The holds are the
    /// caller's: nothing is let go here.
    pub fn dump_held_tree(&mut self, tree: &HeldTree) -> Result<Dump, DumpError> {
        let mut reads = Vec::with_capacity(tree.targets.len());
        for target in &tree.targets {
            reads.push(self.read_consistent(target, Recheck::FdTable)?);
        }
        let pids: Vec<u32> = tree.members.iter().map(|member| member.pid).collect();
        finish(self, &tree.members, reads, &pids)
    }
}

fn dump_once(
    dumper: &mut Dumper,
    root: &Target,
    freeze: Option<FreezeMethod>,
) -> Result<Dump, Attempt> {
    let pid = root.pid();
    if root.has_exited() {
        return Err(DumpError::ExitedDuringDump { pid }.into());
    }
    let (members, targets) = opened(pid)?;
    // Every process held before the first read; dropped (let go) on every
    // way out of this function.
    let start = std::time::Instant::now();
    let holds: Vec<Frozen> = match freeze {
        Some(method) => hold_all(pid, &members, &targets, method)?,
        None => Vec::new(),
    };
    let mut reads = Vec::with_capacity(targets.len());
    for (position, target) in targets.iter().enumerate() {
        let recheck = match holds.get(position).map(Frozen::held_by) {
            Some(HeldBy::CgroupV2(_) | HeldBy::CgroupV1(_) | HeldBy::Signal) => Recheck::None,
            _ => Recheck::FdTable,
        };
        match dumper.read_consistent(target, recheck) {
            Ok(read) => reads.push(read),
            Err(DumpError::ExitedDuringDump { pid: exited }) if exited != pid => {
                return Err(Attempt::Changed(format!(
                    "process {exited} exited while the tree was read"
                )))
            }
            Err(error) => return Err(error.into()),
        }
    }
    if freeze.is_none() && listed(pid)? != members {
        return Err(Attempt::Changed(
            "a process of the tree forked or exited while the tree was read".to_owned(),
        ));
    }
    let pids: Vec<u32> = members.iter().map(|member| member.pid).collect();
    // Assembled while the tree is still held: the rings' entries are read
    // from the processes' memory.
    let dump = finish(dumper, &members, reads, &pids);
    let held = match holds.first().map(|frozen| frozen.held_by().clone()) {
        Some(by) => {
            for frozen in holds {
                frozen.release().map_err(DumpError::Freeze)?;
            }
            Some(Held {
                by,
                duration: start.elapsed(),
            })
        }
        None => None,
    };
    let mut dump = dump?;
    dump.held = held;
    Ok(dump)
}

fn finish(
    dumper: &Dumper,
    members: &[Member],
    reads: Vec<Read>,
    pids: &[u32],
) -> Result<Dump, DumpError> {
    let pid = pids.first().copied().unwrap_or_default();
    let backend = dumper.backend();
    let mut warnings = dumper.warnings.clone();
    let (merged, fds) = merge(reads.iter().map(|read| &read.raw), backend);
    let parts: Vec<TreePart<'_>> = members
        .iter()
        .zip(&reads)
        .zip(&fds)
        .map(|((member, read), fds)| TreePart {
            pid: member.pid,
            parent: member.parent,
            fds,
            mappings: &read.mappings,
            rings: &read.raw.rings,
        })
        .collect();
    let source = Source {
        pid,
        backend,
        kernel_release: kernel_release(),
    };
    let mut image = assemble_tree(&merged, &parts, source).map_err(DumpError::Assemble)?;
    for note in &merged.notes {
        if !warnings.contains(note) {
            warnings.push(note.clone());
        }
    }
    // A ring's entries are read from the first process, in tree order,
    // that maps it (for a NO_MMAP ring: the first that holds it, whose
    // memory its read located).
    let readers: HashMap<ringplan_image::ObjectId, (u32, Vec<RingMapping>)> = image
        .objects
        .iter()
        .filter_map(|object| {
            let no_mmap = match &object.kind {
                ringplan_image::ObjectKind::Ring(ring) => ring
                    .state
                    .as_ref()
                    .is_some_and(|state| state.memory.no_mmap),
                _ => return None,
            };
            image
                .holders(object.id)
                .find(|(_, held)| no_mmap || !held.mappings.is_empty())
                .map(|(pid, held)| (object.id, (pid, held.mappings.clone())))
        })
        .collect();
    let completed = ring_memory::complete_in(&mut image, pids, &|id, _| readers.get(&id).cloned());
    warnings.extend(completed.warnings);
    for process in &mut image.processes {
        for held in &mut process.holds {
            held.owner = completed.owners.get(&held.object) == Some(&process.pid);
        }
    }
    for (id, owner) in &completed.owners {
        let marked = image
            .holders(*id)
            .any(|(pid, held)| pid == *owner && held.owner);
        if !marked {
            warnings.push(format!(
                "ring {id}: its SINGLE_ISSUER owner is a thread of pid {owner}, which holds the ring by \
                 neither an fd nor a mapping; the image records the owner thread but no owning process"
            ));
        }
    }
    ringplan_image::validate(&image).map_err(crate::assemble::AssembleError::from)?;
    if backend == Backend::Fdinfo && !image.objects.is_empty() {
        warnings.push(
            "fdinfo backend: setup flags, SQ idle, SQ thread affinity, the registered eventfd and the \
             identity of registered files are unknown; the image marks them so and cannot be restored exactly"
                .to_owned(),
        );
    }
    if image.objects.is_empty() {
        warnings.push(format!(
            "no process of the tree of pid {pid} holds an io_uring instance"
        ));
    }
    warnings.extend(caveats::ring_caveats(&image));
    Ok(Dump {
        image,
        warnings,
        held: None,
    })
}

/// Merges the reads of a tree's processes, in tree order, into one state
/// holding each kernel object once (the first read of it), whose `fds`
/// are the first process's; returns it with each process's fds, their
/// files keyed as in the merged state.
pub fn merge<'a>(
    reads: impl IntoIterator<Item = &'a RawState>,
    backend: Backend,
) -> (RawState, Vec<Vec<RawFdEntry>>) {
    let mut merged = RawState::default();
    let mut fds = Vec::new();
    // fdinfo's stand-in file keys are numbered per read; new ones are
    // given from here on. BPF's are kernel addresses, kept as they are.
    let renumber = backend == Backend::Fdinfo;
    let mut next_key: FileKey = 1;
    for (position, raw) in reads.into_iter().enumerate() {
        let mut keys: HashMap<FileKey, FileKey> = HashMap::new();
        if renumber && position > 0 {
            let ring_files: HashMap<u64, FileKey> = merged
                .files
                .iter()
                .filter_map(|(key, file)| match file.role {
                    RawFileRole::Ring(ring) => Some((ring, *key)),
                    _ => None,
                })
                .collect();
            let eventfd_files: HashMap<u64, FileKey> = merged
                .files
                .iter()
                .filter_map(|(key, file)| match file.role {
                    RawFileRole::Eventfd(eventfd) => Some((eventfd, *key)),
                    _ => None,
                })
                .collect();
            let mut own: Vec<(&FileKey, &crate::raw::RawFile)> = raw.files.iter().collect();
            own.sort_by_key(|(key, _)| **key);
            for (key, file) in own {
                let known = match file.role {
                    RawFileRole::Ring(ring) => ring_files.get(&ring).copied(),
                    RawFileRole::Eventfd(eventfd) => eventfd_files.get(&eventfd).copied(),
                    RawFileRole::Plain => None,
                };
                let new = known.unwrap_or_else(|| {
                    let new = next_key;
                    next_key += 1;
                    new
                });
                keys.insert(*key, new);
            }
        } else if renumber {
            next_key = raw.files.keys().max().map_or(1, |max| max + 1);
        }
        let key = |key: FileKey| keys.get(&key).copied().unwrap_or(key);
        for (file_key, file) in &raw.files {
            merged
                .files
                .entry(key(*file_key))
                .or_insert_with(|| file.clone());
        }
        for (ring_key, ring) in &raw.rings {
            merged.rings.entry(*ring_key).or_insert_with(|| {
                let mut ring = ring.clone();
                for slot in ring.files.iter_mut().flatten() {
                    *slot = key(*slot);
                }
                ring
            });
        }
        for (eventfd_key, eventfd) in &raw.eventfds {
            merged.eventfds.entry(*eventfd_key).or_insert(*eventfd);
        }
        for (file_key, identity) in &raw.file_identities {
            merged
                .file_identities
                .entry(key(*file_key))
                .or_insert(*identity);
        }
        for (ring_key, in_flight) in &raw.in_flight {
            merged
                .in_flight
                .entry(*ring_key)
                .or_insert_with(|| in_flight.clone());
        }
        for note in &raw.notes {
            if !merged.notes.contains(note) {
                merged.notes.push(note.clone());
            }
        }
        let own_fds: Vec<RawFdEntry> = raw
            .fds
            .iter()
            .map(|entry| RawFdEntry {
                file: key(entry.file),
                ..*entry
            })
            .collect();
        if position == 0 {
            merged.fds = own_fds.clone();
        }
        fds.push(own_fds);
    }
    (merged, fds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::{Known, RawFile, RawRing};

    fn ring(table: Vec<Option<FileKey>>) -> RawRing {
        RawRing {
            inode: None,
            flags: None,
            sq_entries: 8,
            cq_entries: 16,
            sq_thread: None,
            sq_thread_cpu: None,
            sq_thread_idle_ms: None,
            idle_known: false,
            eventfd: Known::Unknown,
            files: table,
            buffers: Vec::new(),
            state: None,
            personalities: Known::Unknown,
            restrictions: Known::Unknown,
            buffer_groups: Known::Unknown,
            settings: Known::Unknown,
            registered_ring_fds: Known::Unknown,
            wait_region: None,
        }
    }

    fn file(role: RawFileRole) -> RawFile {
        RawFile {
            role,
            path: None,
            flags: None,
            pos: None,
            mode: None,
        }
    }

    fn fd(fd: i32, file: FileKey) -> RawFdEntry {
        RawFdEntry {
            fd,
            cloexec: false,
            file,
        }
    }

    /// Two fdinfo reads whose stand-in keys overlap: the ring both hold
    /// (inode 100) is one, keyed as in the first read; the second's own
    /// ring and its table's file get keys of their own.
    #[test]
    fn fdinfo_reads_merge_by_inode_with_their_own_stand_ins_renumbered() {
        let mut first = RawState::default();
        first.files.insert(1, file(RawFileRole::Ring(100)));
        first.files.insert(2, file(RawFileRole::Plain));
        first.rings.insert(100, ring(vec![Some(2)]));
        first.fds = vec![fd(5, 1)];
        let mut second = RawState::default();
        second.files.insert(1, file(RawFileRole::Plain));
        second.files.insert(2, file(RawFileRole::Ring(200)));
        second.files.insert(3, file(RawFileRole::Plain));
        second.files.insert(4, file(RawFileRole::Ring(100)));
        second.rings.insert(100, ring(vec![Some(1)]));
        second.rings.insert(200, ring(vec![Some(3)]));
        second.fds = vec![fd(5, 4), fd(9, 2)];

        let (merged, fds) = merge([&first, &second], Backend::Fdinfo);
        assert_eq!(merged.fds, first.fds);
        assert_eq!(fds[0], first.fds);
        // fd 5 of the second process is the first's ring file.
        assert_eq!(fds[1][0], fd(5, 1));
        let own_ring_file = fds[1][1].file;
        assert_eq!(
            merged.files.get(&own_ring_file).map(|file| file.role),
            Some(RawFileRole::Ring(200))
        );
        assert!(own_ring_file > 2, "a new key, not one of the first read's");
        // The shared ring keeps the first read's table; the second ring's
        // table names a renumbered file that exists.
        assert_eq!(merged.rings[&100].files, vec![Some(2)]);
        let slot = merged.rings[&200].files[0].expect("slot 0");
        assert!(slot > 2 && slot != own_ring_file);
        assert_eq!(
            merged.files.get(&slot).map(|file| file.role),
            Some(RawFileRole::Plain)
        );
    }

    /// BPF keys are kernel addresses, the same in every process: kept.
    #[test]
    fn bpf_reads_merge_by_kernel_address() {
        let mut first = RawState::default();
        first.files.insert(0xa0, file(RawFileRole::Ring(0xc0)));
        first.rings.insert(0xc0, ring(Vec::new()));
        first.fds = vec![fd(3, 0xa0)];
        let mut second = first.clone();
        second.fds = vec![fd(7, 0xa0)];
        let (merged, fds) = merge([&first, &second], Backend::Bpf);
        assert_eq!(merged.files.len(), 1);
        assert_eq!(merged.rings.len(), 1);
        assert_eq!(fds[1], vec![fd(7, 0xa0)]);
    }
}
