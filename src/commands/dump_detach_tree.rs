//! `plan dump --pid PID --tree --detach -o IMAGE`: `--detach` for a
//! process and its descendants at once. A ring created before `fork()` is
//! held by several processes and freed by the kernel only when the last
//! one lets go, so the tree is handled as one: every process stopped
//! (SIGSTOP, under its hold lock) and held by ptrace before anything is
//! read; the requests in flight of every ring drained (a shared ring
//! once); the tree image written and fsynced; every process's rings taken
//! out (`detach::let_go`, in tree order); one wait until the kernel has
//! freed them all (`detach::wait_until_freed`); every process left
//! stopped.
//!
//! Failure policy, per process, as `--detach`'s for one: until the image
//! is on disk, any refusal or failure leaves every process as found
//! (running, or stopped if it was found stopped; rings in place). After
//! it, the first failure stops the take-out: nothing more is changed,
//! every process is left stopped, and the error says what each process
//! still holds (its rings taken out, partly taken out and how far, or in
//! place) and where the image is.

use std::path::Path;
use std::time::{Duration, Instant};

use ringplan_dump::{Dumper, FreezeMethod, HeldBy, HeldTree, Target, TreeRingInFlight};
use ringplan_exec::detach::{self, TakenOut};
use ringplan_exec::remote::RemoteProcess;

use super::dump_detach::{listed, teardown_of, write_image, DRAIN_PAUSE};
use crate::error::{with_sources, CliError};

/// What `--tree --detach` was asked.
pub struct TreeDetachRequest<'a> {
    pub pid: u32,
    pub dumper: &'a mut Dumper,
    pub output: &'a Path,
    pub drain_timeout: Duration,
    /// Hidden flags of test builds (`--fail-take-out-in`).
    pub test_hooks: super::dump_test_hooks::TestHookArgs,
}

/// One process of the tree, held by ptrace.
struct HeldProcess {
    pid: u32,
    /// Stopped by someone else when the tree was held: put back so on a
    /// refusal (waking its io threads sent it SIGCONT).
    found_stopped: bool,
    remote: RemoteProcess,
}

/// How long each part took (every process is stopped from the hold on).
#[derive(Debug, Default)]
struct Timings {
    hold: Duration,
    attach: Duration,
    drain: Duration,
    dump: Duration,
    write: Duration,
    take_out: Duration,
    freed: Duration,
    detach: Duration,
}

/// Detaches the tree of `request.pid`; returns when its processes began to
/// be held (what `plan checkpoint` counts their downtime from).
pub fn run(request: TreeDetachRequest<'_>) -> Result<Instant, CliError> {
    let root = request.pid;
    // No such process, or no rights over it: said before anything is held.
    Target::open(root).map_err(ringplan_dump::DumpError::from)?;
    let dumper = request.dumper;
    let mut timings = Timings::default();

    let started = Instant::now();
    let tree = ringplan_dump::hold_tree(root, FreezeMethod::Signal)?;
    timings.hold = started.elapsed();

    // Until the image is on disk, any failure leaves every process as
    // found: running again (the holds' SIGCONT when dropped), or stopped
    // if it was found stopped.
    let untouched = |held: Vec<HeldProcess>, tree: HeldTree, message: String| {
        for process in held {
            if process.found_stopped {
                let _ = detach::stop_when_released(process.pid);
            }
            drop(process.remote);
        }
        drop(tree);
        CliError::failed(format!(
            "{message}; every process of the tree of pid {root} was left as found"
        ))
    };

    let attaching = Instant::now();
    let found: Vec<(u32, bool)> = tree
        .members
        .iter()
        .zip(&tree.holds)
        .map(|(member, hold)| {
            let found_stopped = matches!(hold.held_by(), HeldBy::AlreadyStopped);
            (member.pid, found_stopped)
        })
        .collect();
    let mut held: Vec<HeldProcess> = Vec::with_capacity(found.len());
    for (pid, found_stopped) in found {
        match RemoteProcess::attach(pid, &[]) {
            Ok(remote) => held.push(HeldProcess {
                pid,
                found_stopped,
                remote,
            }),
            Err(error) => {
                let message = format!(
                    "not detaching the tree of pid {root}: pid {pid}: {}",
                    with_sources(&error)
                );
                return Err(untouched(held, tree, message));
            }
        }
    }
    timings.attach = attaching.elapsed();
    // The processes' own threads are held by ptrace from here on; their io
    // threads must run for io-wq requests to finish and SQ threads to exit.
    for process in &held {
        if let Err(error) = detach::wake_io_threads(process.pid) {
            return Err(untouched(held, tree, with_sources(&error)));
        }
    }

    let draining = Instant::now();
    let rings = match drain(dumper, &tree, &mut held, request.drain_timeout) {
        Ok(rings) => rings,
        Err(message) => return Err(untouched(held, tree, message)),
    };
    timings.drain = draining.elapsed();
    if let Some(refusal) = refusal(&rings, timings.drain) {
        let message = format!("not detaching the tree of pid {root}: {refusal}");
        return Err(untouched(held, tree, message));
    }

    let dumping = Instant::now();
    let dump = match dumper.dump_held_tree(&tree) {
        Ok(dump) => dump,
        Err(error) => return Err(untouched(held, tree, with_sources(&error))),
    };
    timings.dump = dumping.elapsed();
    for warning in &dump.warnings {
        eprintln!("plan: warning: {warning}");
    }
    let writing = Instant::now();
    if let Err(message) = write_image(&dump.image, request.output) {
        return Err(untouched(held, tree, message));
    }
    timings.write = writing.elapsed();

    // From here on the image is on disk: the first failure stops the
    // take-out, every process is left stopped, and the error says what
    // each still holds.
    let mut teardown = teardown_of(&dump.image);
    super::dump_test_hooks::apply(request.test_hooks, &mut teardown);
    let taking = Instant::now();
    let mut taken: Vec<TakenOut> = held.iter().map(|_| TakenOut::default()).collect();
    let mut failure: Option<(usize, String)> = None;
    for (position, (process, taken)) in held.iter_mut().zip(&mut taken).enumerate() {
        if let Err(error) = detach::let_go(&mut process.remote, &teardown, taken) {
            failure = Some((position, with_sources(&error)));
            break;
        }
    }
    timings.take_out = taking.elapsed();
    let closed_any = taken.iter().any(TakenOut::closed_any);
    let freed = match failure {
        Some(_) => None,
        None => {
            let mut remotes: Vec<&mut RemoteProcess> =
                held.iter_mut().map(|process| &mut process.remote).collect();
            match detach::wait_until_freed(&mut remotes, closed_any, teardown.defer_taskrun_rings) {
                Ok(freed) => Some(freed),
                Err(error) => {
                    failure = Some((held.len(), with_sources(&error)));
                    None
                }
            }
        }
    };
    if let Some(freed) = &freed {
        timings.freed = freed.waited;
    }

    // Every process is left stopped, whatever happened above.
    let detaching = Instant::now();
    let mut let_go_errors: Vec<String> = Vec::new();
    let pids: Vec<u32> = held.iter().map(|process| process.pid).collect();
    for process in held {
        if let Err(error) = detach::stop_when_released(process.pid) {
            let_go_errors.push(format!("pid {}: {}", process.pid, with_sources(&error)));
        }
        if let Err(error) = process.remote.detach(false) {
            let_go_errors.push(format!("pid {}: {}", process.pid, with_sources(&error)));
        }
    }
    let mut stopped_for = Duration::ZERO;
    for (pid, hold) in pids.iter().zip(tree.holds) {
        match hold.leave_stopped() {
            Ok(duration) => stopped_for = stopped_for.max(duration),
            Err(error) => let_go_errors.push(format!("pid {pid}: {}", with_sources(&error))),
        }
    }
    timings.detach = detaching.elapsed();

    let image = request.output.display();
    if failure.is_some() || !let_go_errors.is_empty() {
        let what = match &failure {
            Some((position, error)) if *position < pids.len() => {
                format!("taking the rings out of pid {}: {error}", pids[*position])
            }
            Some((_, error)) => {
                format!("every process let its rings go, but the kernel did not free them: {error}")
            }
            None => String::new(),
        };
        let what = [what, let_go_errors.join("; ")]
            .into_iter()
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        let states = pids
            .iter()
            .zip(&taken)
            .enumerate()
            .map(|(position, (pid, taken))| {
                format!("pid {pid}: {}", state_of(position, taken, failure.as_ref()))
            })
            .collect::<Vec<_>>()
            .join("; ");
        return Err(CliError::failed(format!(
            "{what}; the image is in {image} and every process of the tree of pid {root} is left stopped \
             ({states}): put the rings back with `plan exec {image} --pid {root}` (and SIGCONT the \
             processes), or kill them"
        )));
    }

    let freed = freed.unwrap_or_default();
    for (pid, workers) in &freed.io_workers_left {
        eprintln!(
            "plan: warning: pid {pid} keeps io-wq workers after its rings are gone: {}; this kernel keeps a \
             thread's last worker until the thread exits, and a process dumper that cannot handle io threads \
             (CRIU) cannot dump it",
            workers.join(", ")
        );
    }
    let described = pids
        .iter()
        .zip(&taken)
        .map(|(pid, taken)| {
            format!(
                "pid {pid}: closed ring fds {:?}, unmapped {} ring region(s), cleared the registered ring fd \
                 slots of {} thread(s), io threads before: {}",
                taken.closed_fds,
                taken.unmapped.len(),
                taken.threads_unregistered,
                listed(&taken.io_threads_before),
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    eprintln!(
        "plan: tree of pid {root} ({} process(es)) detached: {described}; every process left stopped (SIGSTOP)",
        pids.len()
    );
    let ms = |duration: Duration| duration.as_secs_f64() * 1e3;
    eprintln!(
        "plan: the tree of pid {root} stopped for {:.1} ms: hold {:.1}, attach {:.1}, drain {:.1}, dump {:.1}, \
         write {:.1}, take out {:.1} (io threads gone and rings freed after {:.1} more), detach {:.1}",
        ms(stopped_for),
        ms(timings.hold),
        ms(timings.attach),
        ms(timings.drain),
        ms(timings.dump),
        ms(timings.write),
        ms(timings.take_out),
        ms(timings.freed),
        ms(timings.detach),
    );
    Ok(started)
}

/// What process `position` of the tree holds after a failed take-out.
fn state_of(position: usize, taken: &TakenOut, failure: Option<&(usize, String)>) -> String {
    let failed_at = failure.map(|(failed, _)| *failed);
    if taken.is_untouched() {
        return "rings in place".to_owned();
    }
    let done = format!(
        "cleared the ring fd slots of {} thread(s), closed ring fds {:?}, unmapped {} ring region(s)",
        taken.threads_unregistered,
        taken.closed_fds,
        taken.unmapped.len()
    );
    if failed_at == Some(position) {
        format!("partly taken out ({done}) before it failed")
    } else {
        format!("rings taken out ({done})")
    }
}

/// Measures the requests in flight of the tree's rings until none is, or
/// `timeout` passes; between measures runs the task work the stopped
/// threads cannot run: `io_uring_enter(GETEVENTS)` in each
/// `DEFER_TASKRUN` ring's owner thread (in whichever process it is), and
/// a harmless syscall in every other thread. Returns the last measure.
fn drain(
    dumper: &mut Dumper,
    tree: &HeldTree,
    held: &mut [HeldProcess],
    timeout: Duration,
) -> Result<Vec<TreeRingInFlight>, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let rings = dumper
            .tree_in_flight(&tree.targets)
            .map_err(|error| with_sources(&error))?;
        let busy = rings.iter().any(|ring| !ring.ring.is_quiescent());
        // A count this kernel cannot give does not come later.
        let countable = rings.iter().all(|ring| ring.ring.count.is_ok());
        if !busy || !countable || Instant::now() >= deadline {
            return Ok(rings);
        }
        for ring in &rings {
            let Some(owner) = ring.ring.task_work_owner else {
                continue;
            };
            // The owner thread enters the ring through its own process's
            // fd of it; a process that holds it by no fd cannot.
            let Some(process) = held
                .iter_mut()
                .find(|process| process.remote.threads().contains(&owner))
            else {
                continue;
            };
            let Some(&(_, fd)) = ring.fds.iter().find(|(pid, _)| *pid == process.pid) else {
                continue;
            };
            detach::run_task_work(&mut process.remote, fd, owner)
                .map_err(|error| with_sources(&error))?;
        }
        for process in held.iter_mut() {
            detach::run_threads_task_work(&mut process.remote)
                .map_err(|error| with_sources(&error))?;
        }
        std::thread::sleep(DRAIN_PAUSE);
    }
}

/// Why the tree's rings cannot be taken out after the drain, naming what
/// is in flight and in which process; `None` when nothing is.
fn refusal(rings: &[TreeRingInFlight], drained_for: Duration) -> Option<String> {
    let busy: Vec<&TreeRingInFlight> = rings
        .iter()
        .filter(|ring| !ring.ring.is_quiescent())
        .collect();
    if busy.is_empty() {
        return None;
    }
    let described = busy
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    Some(if busy.iter().all(|ring| ring.ring.count.is_err()) {
        format!(
            "it cannot be told whether requests are in flight, and taking the rings out would drop any: \
             {described}"
        )
    } else {
        format!(
            "requests still in flight after draining for {:.1} s, which taking the rings out would drop: \
             {described}",
            drained_for.as_secs_f64()
        )
    })
}
