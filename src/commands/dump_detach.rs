//! `plan dump --pid PID --detach -o IMAGE`: stop a process, drain its
//! rings, dump them, write the image safely, take every ring out of the
//! process and leave it stopped (for a process dumper, or for
//! `plan exec IMAGE --pid PID`).
//!
//! The glue only: the hold is `ringplan_dump::Frozen` (SIGSTOP, under the
//! hold lock for the whole command), the requests in flight are measured
//! by the dumper (`Dumper::in_flight`, BPF), and every syscall made inside
//! the process (running task work, closing, unmapping) is
//! `ringplan_exec::detach`'s, through `RemoteProcess`.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use ringplan_dump::{Dumper, FreezeMethod, Frozen, HeldBy, RingInFlight, Selection, Target};
use ringplan_exec::detach;
use ringplan_exec::remote::RemoteProcess;
use ringplan_image::ObjectKind;
use ringplan_image::SetupFlags;

use crate::error::{with_sources, CliError};

/// How often the requests in flight are measured again while draining.
pub(crate) const DRAIN_PAUSE: Duration = Duration::from_millis(2);

/// What `--detach` was asked. The dumper is loaded by the caller, before
/// anything is stopped (`plan checkpoint` loads it once for a whole tree).
pub struct DetachRequest<'a> {
    pub pid: u32,
    pub dumper: &'a mut Dumper,
    pub output: &'a Path,
    pub drain_timeout: Duration,
}

/// How long each part of a detach took (the process is stopped from the
/// hold on).
#[derive(Debug, Default)]
struct Timings {
    hold: Duration,
    attach: Duration,
    drain: Duration,
    dump: Duration,
    write: Duration,
    take_out: Duration,
    io_threads: Duration,
    detach: Duration,
}

/// Detaches; returns when the process was stopped (the hold's start:
/// opening the target and loading BPF come before it).
pub fn run(request: DetachRequest<'_>) -> Result<Instant, CliError> {
    let pid = request.pid;
    let target = Target::open(pid).map_err(ringplan_dump::DumpError::from)?;
    let dumper = request.dumper;
    let mut timings = Timings::default();

    let started = Instant::now();
    let frozen =
        Frozen::hold(&target, FreezeMethod::Signal).map_err(ringplan_dump::DumpError::from)?;
    timings.hold = started.elapsed();
    let found_stopped = matches!(frozen.held_by(), HeldBy::AlreadyStopped);

    let attaching = Instant::now();
    let mut remote = RemoteProcess::attach(pid, &[]).map_err(|error| {
        CliError::failed(format!(
            "{}; pid {pid} was left as found",
            with_sources(&error)
        ))
    })?;
    timings.attach = attaching.elapsed();

    // Until the image is on disk, any failure leaves the process as found
    // (`untouched`): running again, or stopped if it was found stopped.
    let untouched = |remote: RemoteProcess, frozen: Frozen, message: String| {
        if found_stopped {
            // SIGCONT woke it (below): stop it again as it was.
            let _ = detach::stop_when_released(pid);
        }
        drop(remote);
        drop(frozen);
        CliError::failed(format!("{message}; pid {pid} was left as found"))
    };
    // The process's own threads are held by ptrace from here on; its io
    // threads must run for io-wq requests to finish and SQ threads to exit.
    if let Err(error) = detach::wake_io_threads(pid) {
        return Err(untouched(remote, frozen, with_sources(&error)));
    }

    let draining = Instant::now();
    let rings = match drain(dumper, &target, &mut remote, request.drain_timeout) {
        Ok(rings) => rings,
        Err(message) => return Err(untouched(remote, frozen, message)),
    };
    timings.drain = draining.elapsed();
    if let Some(refusal) = refusal(&rings, timings.drain) {
        return Err(untouched(
            remote,
            frozen,
            format!("not detaching pid {pid}: {refusal}"),
        ));
    }

    let dumping = Instant::now();
    let dump = match dumper.dump_target(&target, Selection::All) {
        Ok(dump) => dump,
        Err(error) => return Err(untouched(remote, frozen, with_sources(&error))),
    };
    timings.dump = dumping.elapsed();
    for warning in &dump.warnings {
        eprintln!("plan: warning: {warning}");
    }
    let writing = Instant::now();
    if let Err(message) = write_image(&dump.image, request.output) {
        return Err(untouched(remote, frozen, message));
    }
    timings.write = writing.elapsed();

    // From here on the image is on disk: a failure leaves the process
    // stopped with it, and says how to put the rings back.
    let after_image = |what: String| {
        CliError::failed(format!(
            "{what}; the image is in {image} and pid {pid} is left stopped: put its rings back with \
             `plan exec {image} --pid {pid}` (and SIGCONT it), or kill it",
            image = request.output.display()
        ))
    };
    let teardown = teardown_of(&dump.image);
    let taken = detach::take_rings_out(&mut remote, teardown);
    let stopping = detach::stop_when_released(pid);
    let detaching = Instant::now();
    let detached = remote.detach(false);
    timings.detach = detaching.elapsed();
    let left = frozen.leave_stopped();
    let taken = taken.map_err(|error| after_image(with_sources(&error)))?;
    stopping.map_err(|error| after_image(with_sources(&error)))?;
    timings.take_out = taken.syscalls;
    timings.io_threads = taken.io_threads_gone_after;
    detached.map_err(|error| after_image(with_sources(&error)))?;
    let stopped_for = left.map_err(|error| after_image(with_sources(&error)))?;

    if !taken.io_workers_left.is_empty() {
        eprintln!(
            "plan: warning: pid {pid} keeps io-wq workers after its rings are gone: {}; this kernel keeps a \
             thread's last worker until the thread exits, and a process dumper that cannot handle io threads \
             (CRIU) cannot dump it",
            taken.io_workers_left.join(", ")
        );
    }
    eprintln!(
        "plan: pid {pid} detached: closed ring fds {:?}, unmapped {} ring region(s), cleared the registered \
         ring fd slots of {} thread(s); io threads before: {}, after: {}; left stopped (SIGSTOP)",
        taken.closed_fds,
        taken.unmapped.len(),
        taken.threads_unregistered,
        listed(&taken.io_threads_before),
        listed(&taken.io_workers_left),
    );
    let ms = |duration: Duration| duration.as_secs_f64() * 1e3;
    eprintln!(
        "plan: pid {pid} stopped for {:.1} ms: hold {:.1}, attach {:.1}, drain {:.1}, dump {:.1}, write {:.1}, \
         take out {:.1} (io threads gone and rings freed after {:.1} more), detach {:.1}",
        ms(stopped_for),
        ms(timings.hold),
        ms(timings.attach),
        ms(timings.drain),
        ms(timings.dump),
        ms(timings.write),
        ms(timings.take_out),
        ms(timings.io_threads),
        ms(timings.detach),
    );
    Ok(started)
}

/// What the kernel's teardown of the rings of `image` needs to know
/// (shared with `--tree --detach`).
pub(crate) fn teardown_of(image: &ringplan_image::Image) -> detach::Teardown {
    detach::Teardown {
        defer_taskrun_rings: image.objects.iter().any(|object| match &object.kind {
            ObjectKind::Ring(ring) => {
                ring.setup.flags.is_none() || ring.setup.has(SetupFlags::DEFER_TASKRUN)
            }
            _ => false,
        }),
        ring_fd_threads: image
            .objects
            .iter()
            .flat_map(|object| match &object.kind {
                ObjectKind::Ring(ring) => ring.registered_ring_fds.as_slice(),
                _ => &[],
            })
            .map(|slot| slot.tid)
            .collect(),
        ..detach::Teardown::default()
    }
}

/// Encodes `image` and writes it durably to `output` (see
/// [`write_durably`]); the error as the detach's line says it.
pub(crate) fn write_image(image: &ringplan_image::Image, output: &Path) -> Result<(), String> {
    let bytes = ringplan_image::encode_to_vec(image).map_err(|error| error.to_string())?;
    write_durably(output, &bytes)
        .map_err(|error| format!("writing the image to {}: {error}", output.display()))
}

/// "a, b", or "none".
pub(crate) fn listed(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

/// Measures the requests in flight until none is, or `timeout` passes;
/// between measures runs the task work the stopped threads cannot run:
/// `io_uring_enter(GETEVENTS)` in each `DEFER_TASKRUN` ring's owner, and
/// a harmless syscall in every other thread (a syscall's return runs the
/// thread's pending task work, which posts its rings' completions).
/// Returns the last measure.
fn drain(
    dumper: &mut Dumper,
    target: &Target,
    remote: &mut RemoteProcess,
    timeout: Duration,
) -> Result<Vec<RingInFlight>, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let rings = dumper
            .in_flight(target)
            .map_err(|error| with_sources(&error))?;
        let busy = rings.iter().any(|ring| !ring.is_quiescent());
        // A count this kernel cannot give does not come later.
        let countable = rings.iter().all(|ring| ring.count.is_ok());
        if !busy || !countable || Instant::now() >= deadline {
            return Ok(rings);
        }
        for ring in &rings {
            if let (Some(fd), Some(owner)) = (ring.fd, ring.task_work_owner) {
                detach::run_task_work(remote, fd, owner).map_err(|error| with_sources(&error))?;
            }
        }
        detach::run_threads_task_work(remote).map_err(|error| with_sources(&error))?;
        std::thread::sleep(DRAIN_PAUSE);
    }
}

/// Why the rings cannot be taken out after the drain, naming what is in
/// flight; `None` when nothing is.
fn refusal(rings: &[RingInFlight], drained_for: Duration) -> Option<String> {
    let busy: Vec<&RingInFlight> = rings.iter().filter(|ring| !ring.is_quiescent()).collect();
    if busy.is_empty() {
        return None;
    }
    let described = busy
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    Some(if busy.iter().all(|ring| ring.count.is_err()) {
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

/// Writes `bytes` to `path` and makes them durable: written to a
/// temporary file beside it and fsynced, renamed over `path`, then the
/// directory fsynced (so that the name survives too). A failure leaves no
/// partial image at `path`.
fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("the image path names no file"))?;
    let mut temporary_name = std::ffi::OsString::from(".");
    temporary_name.push(name);
    temporary_name.push(format!(".{}.partial", std::process::id()));
    let temporary = dir.join(temporary_name);
    let written = (|| {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written?;
    std::fs::File::open(dir)?.sync_all()
}
