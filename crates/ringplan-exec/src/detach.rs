//! Taking every io_uring instance out of a process (`plan dump --detach`):
//! the state-changing half of a detach, which the architecture keeps in the
//! executor. The dumper measures the requests in flight and writes the
//! image; this module runs, inside the held process (through
//! [`RemoteProcess`]), the syscalls that drain and remove its rings:
//!
//! - [`run_task_work`]: `io_uring_enter(fd, 0, 0, IORING_ENTER_GETEVENTS)`
//!   in the thread that owns a `DEFER_TASKRUN` ring: its completions are
//!   posted only when that thread runs its task work, which a stopped
//!   thread never does.
//! - [`take_rings_out`]: in every thread, `IORING_UNREGISTER_RING_FDS` of
//!   all 16 slots (the kernel skips empty ones); `close` of every fd that
//!   holds a ring; `munmap` of every ring region (`anon_inode:[io_uring]`
//!   in `/proc/PID/maps`; a `NO_MMAP` ring's memory is the program's own
//!   and stays); then a wait until the kernel has let the rings go: no SQ
//!   thread (`iou-sqp-*`) and no io-wq worker (`iou-wrk-*`) left in
//!   `/proc/PID/task`, since a process dumper cannot handle io threads.
//!   (6.1 keeps a thread's last io-wq worker until the thread exits: those
//!   are reported in [`TakenOut::io_workers_left`], not waited for.)
//!   The wait makes every held thread run its task work every
//!   millisecond (the last `close` of a file is finished as task work of
//!   the closing thread, and the kernel's ring teardown waits for a task
//!   work item in every thread that used the ring), waits for the RCU
//!   grace periods the teardown waits for (`membarrier`), so that the
//!   rings are freed, not only their io threads gone, when it returns
//!   (a ring put back on the same memory right after would otherwise get
//!   the old ring's last header write), and needs the io threads running
//!   ([`wake_io_threads`]). Most of the wait is the kernel's: one grace
//!   period, two for `DEFER_TASKRUN` rings (10-20 ms each at HZ=250:
//!   `docs/performance.md`).
//! - A tree (`plan dump --tree --detach`): a ring created before `fork()`
//!   is held by several processes and freed by the kernel only when its
//!   last holder lets go, so [`take_rings_out`]'s two halves run apart:
//!   [`let_go`] in every process of the tree first, then one
//!   [`wait_until_freed`] over all of them (the teardown of a shared ring
//!   waits for the task work of every thread, in any process, that used
//!   it). [`take_rings_out`] is the two for one process.

use std::time::{Duration, Instant};

use ringplan_kernel::abi::continuity::IORING_ENTER_GETEVENTS;
use ringplan_kernel::abi::detach::{
    IORING_UNREGISTER_RING_FDS, MEMBARRIER_CMD_GLOBAL, REGISTERED_RING_FD_SLOTS, RSRC_UPDATE_SIZE,
};
use ringplan_kernel::abi::RING_FILE_PATH;
use ringplan_kernel::procfs::fd::ProcessFds;
use ringplan_kernel::procfs::maps::{self, MapsEntry};
use ringplan_kernel::procfs::task::SQ_THREAD_NAME_PREFIX;
use ringplan_kernel::procfs::{task, Process, ProcfsError};
use rustix::io::Errno;

use crate::remote::{RemoteError, RemoteProcess};

/// How long [`take_rings_out`] waits for the kernel to end a process's SQ
/// threads once its rings are gone.
pub const IO_THREADS_WAIT: Duration = Duration::from_secs(10);

/// How often [`take_rings_out`] lets the held threads run their task work
/// (and looks at the io threads) while the kernel tears the rings down:
/// the teardown waits for each thread's task work, so this bounds what
/// the detach adds to the kernel's own time.
pub const TASK_WORK_POLL: Duration = Duration::from_millis(1);

/// How long it waits for io-wq workers. They belong to a thread's io_uring
/// context, not to a ring: 6.12 and 6.18 end them with the thread's last
/// ring (measured: within the SQ thread's ~50 ms), but 6.1 keeps each
/// thread's last worker until the thread exits (`io_wq_worker` exits on
/// idle only when it is not the last). Past this wait they are reported,
/// not waited for. 3 s: on 2 loaded cores 6.18's workers took over 1 s.
pub const IO_WORKERS_WAIT: Duration = Duration::from_secs(3);

/// Why the rings could not be drained or taken out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DetachError {
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error("reading pid {pid}'s {what}")]
    Procfs {
        pid: u32,
        what: &'static str,
        #[source]
        source: ProcfsError,
    },
    /// A syscall run inside the process failed.
    #[error("{call} in pid {pid} (thread {tid}) failed: {errno}")]
    Syscall {
        pid: u32,
        tid: u32,
        call: String,
        errno: Errno,
    },
    /// The kernel kept SQ threads after the rings were gone.
    #[error(
        "pid {pid} still has io threads {} s after its rings were taken out: {threads}",
        waited.as_secs()
    )]
    IoThreadsRemain {
        pid: u32,
        threads: String,
        waited: Duration,
    },
}

/// What [`take_rings_out`] did, and how long each part took.
#[derive(Debug, Clone, Default)]
pub struct TakenOut {
    /// The fds closed (each held a ring).
    pub closed_fds: Vec<i32>,
    /// The ring regions unmapped, as (start, end).
    pub unmapped: Vec<(u64, u64)>,
    /// Threads whose registered ring fd slots were cleared (the kernel
    /// says how many slots it went through, not how many held a ring).
    pub threads_unregistered: u32,
    /// The io threads seen before the rings were taken out, by name.
    pub io_threads_before: Vec<String>,
    /// Running the syscalls.
    pub syscalls: Duration,
    /// io-wq workers still there when the wait ended (a kernel that keeps
    /// them until their thread exits: 6.1), as "TID (comm)".
    pub io_workers_left: Vec<String>,
    /// Waiting for the io threads to end and the rings to be freed.
    pub io_threads_gone_after: Duration,
    /// RCU grace periods waited for (`membarrier`).
    pub grace_periods: u32,
}

/// Runs the task work of a `DEFER_TASKRUN` ring at `ring_fd` in its owner
/// thread `owner_tid`: `io_uring_enter(ring_fd, 0, 0, GETEVENTS)` with no
/// minimum, which posts what completed and returns at once.
pub fn run_task_work(
    remote: &mut RemoteProcess,
    ring_fd: i32,
    owner_tid: u32,
) -> Result<(), DetachError> {
    let result = remote.syscall(
        owner_tid,
        libc::SYS_io_uring_enter as u64,
        [
            ring_fd as u64,
            0,
            0,
            u64::from(IORING_ENTER_GETEVENTS),
            0,
            0,
        ],
    )?;
    check(remote.pid(), owner_tid, "io_uring_enter(GETEVENTS)", result).map(drop)
}

/// Lets the io threads of a process that is stopped (SIGSTOP) and held by
/// ptrace run again, by sending it SIGCONT: its own threads stay in their
/// ptrace stops, but its SQ threads and io-wq workers, which take part in
/// the group stop and cannot be traced, run on. Without this, requests
/// running in io-wq workers never complete, and a ring's SQ thread cannot
/// exit when the ring goes (the kernel's exit work waits for it). Measured
/// on 6.18: a stopped SQPOLL ring's closed ring kept its `iou-sqp-*`
/// thread in state T until SIGCONT, after which it left at once.
pub fn wake_io_threads(pid: u32) -> Result<(), DetachError> {
    send_signal(pid, rustix::process::Signal::CONT)
}

/// Queues SIGSTOP for a process whose threads are all held by ptrace: the
/// first thread let go takes it and stops the whole process (group stop),
/// which is how [`RemoteProcess::detach`] leaves a process stopped.
pub fn stop_when_released(pid: u32) -> Result<(), DetachError> {
    send_signal(pid, rustix::process::Signal::STOP)
}

fn send_signal(pid: u32, signal: rustix::process::Signal) -> Result<(), DetachError> {
    let process = rustix::process::Pid::from_raw(pid as i32).ok_or(DetachError::Syscall {
        pid,
        tid: pid,
        call: format!("kill({signal:?})"),
        errno: Errno::SRCH,
    })?;
    rustix::process::kill_process(process, signal).map_err(|errno| DetachError::Syscall {
        pid,
        tid: pid,
        call: format!("kill({signal:?})"),
        errno,
    })
}

/// Runs `getpid` in every held thread: the return from a syscall runs the
/// thread's pending task work, which is where the completions of its
/// ordinary (not `DEFER_TASKRUN`) rings are posted when a request finished
/// asynchronously; a stopped thread does not run it.
pub fn run_threads_task_work(remote: &mut RemoteProcess) -> Result<(), DetachError> {
    for tid in remote.threads() {
        let result = remote.syscall(tid, libc::SYS_getpid as u64, [0; 6])?;
        check(remote.pid(), tid, "getpid", result)?;
    }
    Ok(())
}

/// What the rings taken out are, as far as their teardown goes.
#[derive(Debug, Clone, Default)]
pub struct Teardown {
    /// Whether a ring is (or may be) `DEFER_TASKRUN`: the kernel waits one
    /// more RCU grace period before freeing such a ring, and the detach
    /// waits for it too.
    pub defer_taskrun_rings: bool,
    /// The threads that registered ring fds (the image's
    /// `registered_ring_fds`): one that no ring fd of the process lets in
    /// unregisters them through a throwaway ring.
    pub ring_fd_threads: Vec<u32>,
    /// Test hook (`test-hooks` feature): [`let_go`] in this process fails
    /// (`ECANCELED`, as a failed `munmap`) after its ring fds are closed
    /// and before its ring regions are unmapped, so that a caller's report
    /// of a half-done take-out can be tested against a real process.
    #[cfg(feature = "test-hooks")]
    pub fail_before_unmapping_in: Option<u32>,
}

/// `IORING_UNREGISTER_RING_FDS` of all of thread `tid`'s slots, called on a
/// ring set up in it for that and closed after.
fn unregister_through_throwaway_ring(
    remote: &mut RemoteProcess,
    tid: u32,
    updates: &[u8],
) -> Result<(), DetachError> {
    let pid = remote.pid();
    let params = [0u8; std::mem::size_of::<rustix::io_uring::io_uring_params>()];
    let params_addr = remote.write_scratch(&params)?;
    let ring = remote.syscall(
        tid,
        libc::SYS_io_uring_setup as u64,
        [1, params_addr, 0, 0, 0, 0],
    )?;
    check(pid, tid, "io_uring_setup (a throwaway ring)", ring)?;
    let updates_addr = remote.write_scratch(updates)?;
    let result = remote.syscall(
        tid,
        libc::SYS_io_uring_register as u64,
        [
            ring as u64,
            u64::from(IORING_UNREGISTER_RING_FDS),
            updates_addr,
            u64::from(REGISTERED_RING_FD_SLOTS),
            0,
            0,
        ],
    )?;
    let closed = remote.syscall(tid, libc::SYS_close as u64, [ring as u64, 0, 0, 0, 0, 0])?;
    check(pid, tid, "io_uring_register(UNREGISTER_RING_FDS)", result)?;
    check(pid, tid, "close (the throwaway ring)", closed)?;
    Ok(())
}

/// Runs `membarrier(MEMBARRIER_CMD_GLOBAL)`, which returns after an RCU
/// grace period; whether it did (`EINVAL` under `nohz_full`: then the
/// caller's polling alone has to do).
fn wait_for_grace_period() -> bool {
    // SAFETY: membarrier takes three integers and touches no memory of
    // ours.
    let result = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) };
    result == 0
}

/// Takes every ring out of the held process (see the module's doc) and
/// waits up to [`IO_THREADS_WAIT`] for its io threads to end and the
/// kernel to free the rings (as far as that can be seen: see the wait). The process
/// stays held; the caller detaches it. [`let_go`] then [`wait_until_freed`]
/// of this one process.
pub fn take_rings_out(
    remote: &mut RemoteProcess,
    teardown: Teardown,
) -> Result<TakenOut, DetachError> {
    let mut taken = TakenOut::default();
    let_go(remote, &teardown, &mut taken)?;
    let closed_any = taken.closed_any();
    let freed = wait_until_freed(&mut [remote], closed_any, teardown.defer_taskrun_rings)?;
    taken.io_workers_left = freed
        .io_workers_left
        .into_iter()
        .flat_map(|(_, left)| left)
        .collect();
    taken.io_threads_gone_after = freed.waited;
    taken.grace_periods = freed.grace_periods;
    Ok(taken)
}

impl TakenOut {
    /// Whether anything that holds a ring was closed or unmapped (a ring
    /// may then be torn down by the kernel).
    pub fn closed_any(&self) -> bool {
        !self.closed_fds.is_empty() || !self.unmapped.is_empty()
    }

    /// Whether nothing was changed in the process yet.
    pub fn is_untouched(&self) -> bool {
        !self.closed_any() && self.threads_unregistered == 0
    }
}

/// The first half of a take-out, in one held process: every thread's
/// registered ring-fd slots cleared, every fd that holds a ring closed,
/// every ring region unmapped (see the module's doc). What was done is
/// recorded in `taken` as it is done, so that a caller told of a failure
/// knows what the process still holds. A ring another process still holds
/// lives on: the kernel frees a shared ring when its last holder lets go,
/// which [`wait_until_freed`] waits for once every holder has.
pub fn let_go(
    remote: &mut RemoteProcess,
    teardown: &Teardown,
    taken: &mut TakenOut,
) -> Result<(), DetachError> {
    let pid = remote.pid();
    let process = Process::Pid(pid);
    let started = Instant::now();
    taken.io_threads_before = io_threads(pid)?;
    // Every thread may have registered ring fds of its own.
    let mut updates = Vec::with_capacity(REGISTERED_RING_FD_SLOTS as usize * RSRC_UPDATE_SIZE);
    for offset in 0..REGISTERED_RING_FD_SLOTS {
        updates.extend_from_slice(&offset.to_ne_bytes());
        updates.extend_from_slice(&[0u8; RSRC_UPDATE_SIZE - 4]);
    }
    // The kernel acts on the calling task's table only, but wants a ring
    // fd to be called on, and a SINGLE_ISSUER ring answers EEXIST to any
    // thread but its owner: each thread tries the rings in turn. A thread
    // that registered ring fds no ring fd lets in (a ring held only by its
    // slots, its fd closed: liburing's io_uring_close_ring_fd) calls on a
    // throwaway ring set up in it for that.
    let rings = ring_fds(pid)?;
    for tid in remote.threads() {
        let unregistered = taken.threads_unregistered;
        for &fd in &rings {
            let updates_addr = remote.write_scratch(&updates)?;
            let result = remote.syscall(
                tid,
                libc::SYS_io_uring_register as u64,
                [
                    fd as u64,
                    u64::from(IORING_UNREGISTER_RING_FDS),
                    updates_addr,
                    u64::from(REGISTERED_RING_FD_SLOTS),
                    0,
                    0,
                ],
            )?;
            if result == -i64::from(Errno::EXIST.raw_os_error()) {
                continue; // another thread's SINGLE_ISSUER ring
            }
            check(pid, tid, "io_uring_register(UNREGISTER_RING_FDS)", result)?;
            taken.threads_unregistered += 1;
            break;
        }
        if taken.threads_unregistered == unregistered && teardown.ring_fd_threads.contains(&tid) {
            unregister_through_throwaway_ring(remote, tid, &updates)?;
            taken.threads_unregistered += 1;
        }
    }
    let closer = remote.threads().first().copied().unwrap_or(pid);
    for fd in ring_fds(pid)? {
        let result = remote.syscall(closer, libc::SYS_close as u64, [fd as u64, 0, 0, 0, 0, 0])?;
        check(pid, closer, &format!("close({fd})"), result)?;
        taken.closed_fds.push(fd);
    }
    #[cfg(feature = "test-hooks")]
    if teardown.fail_before_unmapping_in == Some(pid) {
        return Err(DetachError::Syscall {
            pid,
            tid: closer,
            call: "munmap (an injected failure)".to_owned(),
            errno: Errno::CANCELED,
        });
    }
    let text = maps::read(process).map_err(|source| DetachError::Procfs {
        pid,
        what: "maps",
        source,
    })?;
    let regions: Vec<(u64, u64)> = text
        .lines()
        .filter_map(MapsEntry::parse)
        .filter(|entry| entry.path == RING_FILE_PATH)
        .map(|entry| (entry.start, entry.end))
        .collect();
    for (start, end) in regions {
        let result = remote.syscall(
            closer,
            libc::SYS_munmap as u64,
            [start, end - start, 0, 0, 0, 0],
        )?;
        check(
            pid,
            closer,
            &format!("munmap({start:#x}, {})", end - start),
            result,
        )?;
        taken.unmapped.push((start, end));
    }
    taken.syscalls = started.elapsed();
    Ok(())
}

/// What [`wait_until_freed`] saw.
#[derive(Debug, Clone, Default)]
pub struct Freed {
    /// io-wq workers still there when the wait ended (a kernel that keeps
    /// them until their thread exits: 6.1), per process, as "TID (comm)";
    /// processes without any are left out.
    pub io_workers_left: Vec<(u32, Vec<String>)>,
    /// How long the wait took.
    pub waited: Duration,
    /// RCU grace periods waited for (`membarrier`).
    pub grace_periods: u32,
}

/// The second half of a take-out, once every process that held the rings
/// has let them go ([`let_go`]): waits up to [`IO_THREADS_WAIT`] until
/// the kernel has ended the io threads of every held process in `remotes`
/// and freed the rings, running every held thread's task work meanwhile
/// (a ring shared by several processes waits for the task work of each
/// thread, in any of them, that used it). `closed_any`: whether any
/// process closed or unmapped something (else there is no teardown to
/// wait for, only io threads to look at); `defer_taskrun_rings`: whether a
/// ring taken out is (or may be) `DEFER_TASKRUN`.
pub fn wait_until_freed(
    remotes: &mut [&mut RemoteProcess],
    closed_any: bool,
    defer_taskrun_rings: bool,
) -> Result<Freed, DetachError> {
    let waiting = Instant::now();
    let mut freed = Freed::default();
    // The kernel lets each closed ring go in a worker (io_ring_exit_work):
    // killing the ring's reference count takes an RCU grace period; then
    // the worker queues a task work item in every thread that used the
    // ring and waits for each to run it, which a held thread does only
    // on the way out of a syscall; a DEFER_TASKRUN ring then waits one
    // more grace period (synchronize_rcu) before it is freed, and the
    // free stops the ring's SQ thread and writes the ring's header a last
    // time. So: one grace period, then the threads' task work run every
    // TASK_WORK_POLL until the io threads are gone (and for at least as
    // long as that grace period took: a ring with no io thread shows
    // nothing when it is gone), then, with DEFER_TASKRUN rings, one more
    // grace period.
    for remote in remotes.iter_mut() {
        run_threads_task_work(remote)?;
    }
    let grace_period = Instant::now();
    if closed_any {
        freed.grace_periods += u32::from(wait_for_grace_period());
    }
    // The callback that ends the first wait runs after a grace period,
    // possibly the one after ours (measured: up to 4 ms after ours
    // returned): poll at least as long again.
    let polled = Instant::now();
    let at_least = grace_period.elapsed();
    loop {
        let mut left = Vec::with_capacity(remotes.len());
        for remote in remotes.iter_mut() {
            run_threads_task_work(remote)?;
            left.push((remote.pid(), io_threads(remote.pid())?));
        }
        let sq_threads_left = left
            .iter()
            .any(|(_, threads)| threads.iter().any(|thread| is_sq_thread(thread)));
        let any_left = left.iter().any(|(_, threads)| !threads.is_empty());
        let workers_waited = waiting.elapsed() >= IO_WORKERS_WAIT;
        let threads_done = !any_left || (!sq_threads_left && workers_waited);
        if threads_done && polled.elapsed() >= at_least {
            freed.io_workers_left = left
                .into_iter()
                .filter(|(_, threads)| !threads.is_empty())
                .collect();
            break;
        }
        if waiting.elapsed() >= IO_THREADS_WAIT {
            let (pid, threads) = left
                .into_iter()
                .find(|(_, threads)| !threads.is_empty())
                .unwrap_or_default();
            return Err(DetachError::IoThreadsRemain {
                pid,
                threads: threads.join(", "),
                waited: waiting.elapsed(),
            });
        }
        std::thread::sleep(TASK_WORK_POLL);
    }
    if closed_any && defer_taskrun_rings {
        freed.grace_periods += u32::from(wait_for_grace_period());
        // The worker frees the ring right after its grace period.
        std::thread::sleep(TASK_WORK_POLL);
        for remote in remotes.iter_mut() {
            run_threads_task_work(remote)?;
        }
    }
    freed.waited = waiting.elapsed();
    Ok(freed)
}

/// Whether an entry of [`io_threads`] is an SQ thread.
fn is_sq_thread(entry: &str) -> bool {
    entry.contains(&format!(
        "({}",
        String::from_utf8_lossy(SQ_THREAD_NAME_PREFIX)
    ))
}

/// The fds of `pid` that hold a ring, ascending.
pub fn ring_fds(pid: u32) -> Result<Vec<i32>, DetachError> {
    let procfs = |source| DetachError::Procfs {
        pid,
        what: "fds",
        source,
    };
    ProcessFds::open(Process::Pid(pid))
        .and_then(|mut fds| fds.ring_fds())
        .map_err(procfs)
}

/// The io threads of `pid` (SQ threads and io-wq workers: `PF_IO_WORKER`
/// in their stat flags; a name is taken only once the thread first runs),
/// as "TID (comm)".
pub fn io_threads(pid: u32) -> Result<Vec<String>, DetachError> {
    task::io_threads(Process::Pid(pid)).map_err(|source| DetachError::Procfs {
        pid,
        what: "threads",
        source,
    })
}

/// A raw syscall result: the value, or the errno it failed with.
fn check(pid: u32, tid: u32, call: &str, result: i64) -> Result<i64, DetachError> {
    if result < 0 {
        Err(DetachError::Syscall {
            pid,
            tid,
            call: call.to_owned(),
            errno: Errno::from_raw_os_error(-result as i32),
        })
    } else {
        Ok(result)
    }
}
