//! The requests in flight of a process's rings, for `plan dump --detach`:
//! a ring can only be taken out of a process once none is in flight (a
//! request dropped with its ring is lost), and those that never complete
//! on their own must be named. The image does not hold them: this is a
//! report beside the dump, read by the BPF backend (`read_in_flight` and
//! `write_pending_requests` in `bpf/ringplan.bpf.c`).

use ringplan_kernel::abi::detach::opcode_name;
use ringplan_kernel::abi::SetupFlags;

use crate::raw::{Known, PendingKind, PendingRequest, RawFileRole, RawState};
use crate::{DumpError, Dumper, Recheck, Target};

/// One ring's requests in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingInFlight {
    /// The lowest fd of the target that holds the ring; `None` for a ring
    /// the process holds only as a registered file of another ring.
    pub fd: Option<i32>,
    /// How many requests are in flight, or why the kernel does not say.
    pub count: Result<u32, String>,
    /// The requests that wait on their own (poll-armed, timeouts), when
    /// all of them could be listed.
    pub pending: Known<Vec<PendingRequest>>,
    /// For a `DEFER_TASKRUN` ring, the thread that owns it: its
    /// completions are posted only when that thread runs its task work.
    pub task_work_owner: Option<u32>,
}

impl RingInFlight {
    /// Whether the ring is known to have nothing in flight.
    pub fn is_quiescent(&self) -> bool {
        self.count == Ok(0)
    }

    /// The ring's pending requests as "OPCODE user_data N", joined by ", ".
    pub fn named_requests(&self) -> String {
        match &self.pending {
            Known::Known(pending) => pending
                .iter()
                .map(describe_request)
                .collect::<Vec<_>>()
                .join(", "),
            Known::Unknown => "not listed".to_owned(),
        }
    }
}

impl std::fmt::Display for RingInFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.fd {
            Some(fd) => write!(f, "ring fd {fd}: ")?,
            None => f.write_str("a ring held only as a registered file: ")?,
        }
        match &self.count {
            Ok(count) => write!(f, "{count} request(s) in flight")?,
            Err(why) => write!(f, "requests in flight cannot be counted ({why})")?,
        }
        match &self.pending {
            Known::Known(pending) if !pending.is_empty() => {
                write!(f, "; waiting on their own: {}", self.named_requests())?;
            }
            Known::Known(_) => {}
            Known::Unknown => f.write_str("; the requests waiting on their own were not listed")?,
        }
        if let (Ok(count), Known::Known(pending)) = (&self.count, &self.pending) {
            let unnamed = (*count as usize).saturating_sub(pending.len());
            if unnamed > 0 {
                write!(
                    f,
                    "; {unnamed} not named (in neither the poll nor the timeout tables: running in io-wq \
                     workers, or a wait the dumper does not list)"
                )?;
            }
        }
        Ok(())
    }
}

/// "READ user_data 0x2a (poll-armed)".
pub fn describe_request(request: &PendingRequest) -> String {
    let opcode = match opcode_name(request.opcode) {
        Some(name) => name.to_owned(),
        None => format!("opcode {}", request.opcode),
    };
    let waits = match request.waits_in {
        PendingKind::Poll => "poll-armed",
        PendingKind::Timeout => "timeout",
        PendingKind::LinkedTimeout => "linked timeout",
    };
    format!("{opcode} user_data {:#x} ({waits})", request.user_data)
}

/// The in-flight reports of every ring of `raw`, in fd order.
pub fn rings_in_flight(raw: &RawState) -> Vec<RingInFlight> {
    keyed_rings_in_flight(raw)
        .into_iter()
        .map(|(_, ring)| ring)
        .collect()
}

/// [`rings_in_flight`], each with the ring's key in `raw` (its identity
/// inside the dumper: the same in every process that holds the ring).
fn keyed_rings_in_flight(raw: &RawState) -> Vec<(u64, RingInFlight)> {
    let mut rings: Vec<(u64, RingInFlight)> = raw
        .rings
        .keys()
        .map(|ring| {
            let fd = raw
                .fds
                .iter()
                .filter(|entry| {
                    raw.files
                        .get(&entry.file)
                        .is_some_and(|file| file.role == RawFileRole::Ring(*ring))
                })
                .map(|entry| entry.fd)
                .min();
            let task_work_owner = raw.rings.get(ring).and_then(|ring| {
                let defer = ring.flags? & SetupFlags::DEFER_TASKRUN.bits() != 0;
                match ring.state.as_ref()?.owner_tid {
                    Known::Known(owner) if defer => owner,
                    _ => None,
                }
            });
            let report = match raw.in_flight.get(ring) {
                Some(in_flight) => RingInFlight {
                    fd,
                    count: in_flight.count.clone(),
                    pending: in_flight.pending.clone(),
                    task_work_owner,
                },
                None => RingInFlight {
                    fd,
                    count: Err("the fdinfo backend cannot see requests in flight".to_owned()),
                    pending: Known::Unknown,
                    task_work_owner,
                },
            };
            (*ring, report)
        })
        .collect();
    rings.sort_by_key(|(_, ring)| ring.fd.unwrap_or(i32::MAX));
    rings
}

/// One ring of a process tree and its requests in flight, reported once
/// however many processes hold it (a ring created before `fork()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeRingInFlight {
    /// The first process, in tree order, that holds the ring (by an fd, a
    /// mapping, a registered slot or a table); `ring.fd` is its lowest fd
    /// of the ring.
    pub pid: u32,
    /// Every process that holds the ring by an fd, with its lowest fd of
    /// it, in tree order.
    pub fds: Vec<(u32, i32)>,
    pub ring: RingInFlight,
}

impl std::fmt::Display for TreeRingInFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {}'s {}", self.pid, self.ring)?;
        let others: Vec<String> = self
            .fds
            .iter()
            .filter(|(pid, _)| *pid != self.pid)
            .map(|(pid, fd)| format!("pid {pid} fd {fd}"))
            .collect();
        if !others.is_empty() {
            write!(f, " (the ring is shared: also {})", others.join(", "))?;
        }
        Ok(())
    }
}

/// Merges the in-flight reports of a tree's processes (`reads`: pid and
/// keyed reports, in tree order): each ring once, as its first holder
/// read it.
fn merge_tree_in_flight(reads: Vec<(u32, Vec<(u64, RingInFlight)>)>) -> Vec<TreeRingInFlight> {
    let mut merged: Vec<(u64, TreeRingInFlight)> = Vec::new();
    for (pid, rings) in reads {
        for (key, ring) in rings {
            let fd = ring.fd;
            let index = match merged.iter().position(|(known, _)| *known == key) {
                Some(index) => index,
                None => {
                    merged.push((
                        key,
                        TreeRingInFlight {
                            pid,
                            fds: Vec::new(),
                            ring,
                        },
                    ));
                    merged.len() - 1
                }
            };
            if let (Some(fd), Some((_, entry))) = (fd, merged.get_mut(index)) {
                entry.fds.push((pid, fd));
            }
        }
    }
    merged.into_iter().map(|(_, ring)| ring).collect()
}

impl Dumper {
    /// Reads the requests in flight of every ring of a target that is held
    /// still (nothing else of the dump is kept).
    pub fn in_flight(&mut self, target: &Target) -> Result<Vec<RingInFlight>, DumpError> {
        let read = self.read_consistent(target, Recheck::None)?;
        Ok(rings_in_flight(&read.raw))
    }

    /// Reads the requests in flight of every ring of a held tree
    /// ([`crate::tree::HeldTree`]): each process is read, and a ring
    /// several processes hold is reported once (by the kernel's identity
    /// of the ring, which the dumper keeps to itself).
    pub fn tree_in_flight(
        &mut self,
        targets: &[Target],
    ) -> Result<Vec<TreeRingInFlight>, DumpError> {
        let mut reads = Vec::with_capacity(targets.len());
        for target in targets {
            let read = self.read_consistent(target, Recheck::None)?;
            reads.push((target.pid(), keyed_rings_in_flight(&read.raw)));
        }
        Ok(merge_tree_in_flight(reads))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(fd: Option<i32>, count: u32) -> RingInFlight {
        RingInFlight {
            fd,
            count: Ok(count),
            pending: Known::Known(Vec::new()),
            task_work_owner: None,
        }
    }

    /// A ring two processes hold is reported once, as the first read it,
    /// with both processes' fds; a process's own ring stays its own.
    #[test]
    fn a_shared_ring_is_reported_once_with_every_holder() {
        let merged = merge_tree_in_flight(vec![
            (100, vec![(0xa, ring(Some(3), 1))]),
            (101, vec![(0xa, ring(Some(5), 1)), (0xb, ring(Some(7), 0))]),
            (102, vec![(0xa, ring(None, 1))]),
        ]);
        assert_eq!(merged.len(), 2, "{merged:?}");
        assert_eq!(merged[0].pid, 100);
        assert_eq!(merged[0].fds, vec![(100, 3), (101, 5)]);
        assert_eq!(merged[0].ring.fd, Some(3));
        assert_eq!(merged[1].pid, 101);
        assert_eq!(merged[1].fds, vec![(101, 7)]);
        assert_eq!(
            merged[0].to_string(),
            "pid 100's ring fd 3: 1 request(s) in flight; 1 not named (in neither the poll nor the timeout \
             tables: running in io-wq workers, or a wait the dumper does not list) (the ring is shared: also \
             pid 101 fd 5)"
        );
    }
}
