//! The executor against a minimal replay of the same plan: the same restore
//! syscalls in the same order (io_uring_setup, eventfd2, openat with
//! `O_NONBLOCK` + fstat + `fcntl(F_SETFL)` + lseek,
//! pipe2 for a substituted pipe, io_uring_register, `fcntl(F_DUPFD_CLOEXEC)`
//! and close to move each new fd above the plan's floor, dup3, close, mmap for
//! the buffers), straight from the plan's steps, with nothing else: no
//! preflight, no undo bookkeeping, no validation.
//!
//! Lines starting `TABLE|` are the summary that `scripts/bench` collects.
//!
//! Run: `cargo bench -p ringplan-exec --bench exec` (as root: the images are
//! dumped with the BPF backend). Environment: `EXEC_BENCH_ROUNDS` (default
//! 200), `EXEC_BENCH_SETTLE_US` (pause after each teardown, default 2000),
//! `EXEC_BENCH_ONLY` (one workload name).
//!
//! Workloads: for each scenario a child process (this binary again, with
//! `RINGPLAN_EXEC_BENCH_HOLD=<scenario>`) builds and holds it; it is dumped
//! once (`Dumper::new(BackendChoice::Bpf)`), and the image is edited before
//! compiling so the plan cannot collide with this process:
//! - every `FdEntry.fd` is shifted up by [`FD_SHIFT`] (the seed installs onto
//!   0-2, our own stdio);
//! - registered buffers are moved, keeping their relative layout, to
//!   [`BUFFER_BASE`], far from anything this process maps (the child's heap
//!   addresses could fall on ours).
//! - every ring's continuity state (`Ring::state`) is removed: the minimal
//!   replay restores kernel objects only, so the executor does too (a
//!   restore with continuity against one without is
//!   `benches/continuity_restore.rs`; with the state, each run would also
//!   leave the rings' placed memory mapped for the next to find taken).
//!
//! External inputs (the seed's fd 1, a pipe to us) are substituted
//! (`substitute_external`): the executor makes a pipe and keeps the matching
//! end; the baseline does the same (pipe2, close the other end).
//!
//! Each round times three things, in an order that rotates every round:
//! - `whole`: `execute` (preflight + run);
//! - `run`: the run phase alone (`preflight` untimed, then the run);
//! - `base`: the minimal replay.
//!
//! Each is torn down outside the timed region (every installed fd closed,
//! buffers unmapped), then the bench pauses `EXEC_BENCH_SETTLE_US` so the
//! kernel's deferred ring teardown does not land in the next measurement.
//! The soft RLIMIT_NOFILE is raised to the hard limit once at start, so
//! neither side needs setrlimit.

use std::ffi::c_void;
use std::io::BufRead;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ringplan_dump::{BackendChoice, Dumper, Selection};
use ringplan_exec::{AnonymousBuffers, ExecOptions, Inputs, Restored};
use ringplan_image::{FileType, Image, ObjectKind, SetupFlags};
use ringplan_kernel::abi::reopen::SETFL_FLAGS;
use ringplan_plan::{Op, Plan};
use rustix::event::{eventfd, EventfdFlags};
use rustix::fs::{Mode, OFlags, SeekFrom};
use rustix::io::DupFlags;
use rustix::io_uring::{
    io_uring_params, io_uring_register, io_uring_setup, IoringRegisterOp, IoringSetupFlags,
};
use rustix::mm::{MapFlags, ProtFlags};

const HOLD_ENV: &str = "RINGPLAN_EXEC_BENCH_HOLD";
/// Added to every fd number of every image.
const FD_SHIFT: i32 = 1000;
/// Where the images' buffers are moved to (32 TiB: between the program's
/// heap and the mmap area on x86-64, where nothing maps by itself).
const BUFFER_BASE: u64 = 0x2000_0000_0000;
const WORKLOADS: &[&str] = &["seed", "rings:64", "files:1000", "fanout:8"];

fn main() {
    if let Ok(scenario) = std::env::var(HOLD_ENV) {
        let scenario = scenario.parse().expect("scenario");
        ringplan_scenarios::hold(&scenario, &mut std::io::stdout().lock()).expect("hold");
        return;
    }
    let rounds: usize = std::env::var("EXEC_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let settle = Duration::from_micros(
        std::env::var("EXEC_BENCH_SETTLE_US")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2000),
    );
    let only = std::env::var("EXEC_BENCH_ONLY").ok();

    let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let raised = rustix::process::Rlimit {
        current: nofile.maximum,
        maximum: nofile.maximum,
    };
    rustix::process::setrlimit(rustix::process::Resource::Nofile, raised)
        .expect("raise RLIMIT_NOFILE");

    // Build and hold every scenario in a child, dump each once.
    let workloads: Vec<&str> = WORKLOADS
        .iter()
        .copied()
        .filter(|w| only.as_deref().is_none_or(|o| o == *w))
        .collect();
    let mut children = Vec::new();
    let mut plans = Vec::new();
    {
        let mut dumper = Dumper::new(BackendChoice::Bpf).expect("BPF dumper (run as root)");
        for &name in &workloads {
            let child = Held::spawn(name);
            let mut image = dumper
                .dump(child.0.id(), Selection::All)
                .expect("dump")
                .image;
            relocate(&mut image);
            let plan = ringplan_plan::compile(&image).expect("compile");
            plans.push((name, plan));
            children.push(child);
        }
    }

    let machine = machine();
    println!("ringplan-exec bench: {rounds} rounds per workload, settle {settle:?}, {machine}");
    println!(
        "{:<11} {:>6} {:>11} {:>11} {:>11} {:>11} {:>11} {:>11}",
        "workload", "steps", "whole", "run", "baseline", "whole/base", "run/base", "preflight"
    );
    let mut summary = Vec::new();
    for (name, plan) in &plans {
        check_same_fds(plan);
        let mut times = [Vec::new(), Vec::new(), Vec::new()];
        for round in 0..rounds + 5 {
            for k in 0..3 {
                let which = (round + k) % 3;
                let elapsed = match which {
                    0 => ours_whole(plan),
                    1 => ours_run(plan, settle),
                    _ => baseline(plan),
                };
                std::thread::sleep(settle);
                if round >= 5 {
                    times[which].push(elapsed);
                }
            }
        }
        let [whole, run, base] = times.map(median);
        let preflight = median(PREFLIGHT.with(|times| std::mem::take(&mut *times.borrow_mut())));
        println!(
            "{:<11} {:>6} {:>11} {:>11} {:>11} {:>10.3}x {:>10.3}x {:>11}",
            name,
            plan.steps.len(),
            format!("{:.1} us", micros(whole)),
            format!("{:.1} us", micros(run)),
            format!("{:.1} us", micros(base)),
            micros(whole) / micros(base),
            micros(run) / micros(base),
            format!("{:.1} us", micros(preflight)),
        );
        summary.push((*name, plan.steps.len(), whole, run, base, preflight));
    }
    // The summary `scripts/bench` collects.
    for (name, steps, whole, run, base, preflight) in summary {
        let ratio = micros(whole) / micros(base);
        println!(
            "TABLE|exec, {name} ({steps} steps), whole `execute` vs minimal raw-syscall replay|{:.1} us|{:.1} us|{ratio:.2}x|<= 1.1x|{}",
            micros(whole),
            micros(base),
            if ratio <= 1.1 { "met" } else { "missed" }
        );
        println!(
            "TABLE|exec, {name}, run phase alone (preflight {:.1} us untimed)|{:.1} us|{:.1} us|{:.2}x||",
            micros(preflight),
            micros(run),
            micros(base),
            micros(run) / micros(base)
        );
    }
    drop(children);
}

struct Held(Child);

impl Held {
    fn spawn(scenario: &str) -> Held {
        let exe = std::env::current_exe().expect("current_exe");
        let mut child = Command::new(exe)
            .env(HOLD_ENV, scenario)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn holder");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read description");
        assert!(line.starts_with('{'), "{scenario}: holder printed {line:?}");
        Held(child)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // SIGTERM: the holder tears its scenario down (and its temp dir).
        let pid = rustix::process::Pid::from_raw(self.0.id() as i32).expect("pid");
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let _ = self.0.wait();
    }
}

/// Shifts every fd number by [`FD_SHIFT`], moves the buffers to
/// [`BUFFER_BASE`], keeping their relative layout, and removes every ring's
/// continuity state.
fn relocate(image: &mut Image) {
    let lowest = image
        .objects
        .iter()
        .filter_map(|object| match &object.kind {
            ObjectKind::Ring(ring) => ring
                .buffers
                .iter()
                .flatten()
                .map(|buffer| buffer.addr & !0xfff)
                .min(),
            _ => None,
        })
        .min();
    for object in &mut image.objects {
        for entry in &mut object.fds {
            entry.fd += FD_SHIFT;
        }
        if let ObjectKind::Ring(ring) = &mut object.kind {
            ring.state = None;
        }
        if let (ObjectKind::Ring(ring), Some(lowest)) = (&mut object.kind, lowest) {
            for buffer in ring.buffers.iter_mut().flatten() {
                assert!(
                    buffer.addr - lowest < 1 << 30,
                    "buffers spread over more than 1 GiB"
                );
                buffer.addr = buffer.addr - lowest + BUFFER_BASE;
            }
        }
    }
}

fn options() -> ExecOptions {
    // Ring regions are left unmapped: the minimal replay maps none, and a
    // mapping that outlives its run would keep the ring alive across runs.
    ExecOptions {
        substitute_external: true,
        raise_fd_limit: false,
        skip_ring_mappings: true,
        allow_moved_rings: false,
        accept_restorer_credentials: false,
    }
}

fn unmap(ranges: &[(u64, u64)]) {
    for &(start, end) in ranges {
        // SAFETY: a range this bench's restore mapped; nothing uses it after
        // the restored rings are closed.
        unsafe { rustix::mm::munmap(start as *mut c_void, (end - start) as usize) }
            .expect("munmap");
    }
}

fn teardown_ours(restored: Restored, memory: AnonymousBuffers) {
    drop(restored);
    unmap(memory.mapped());
}

fn ours_whole(plan: &Plan) -> Duration {
    let mut memory = AnonymousBuffers::new();
    let options = options();
    let start = Instant::now();
    let restored = ringplan_exec::execute(plan, Inputs::new(), &mut memory, &options);
    let elapsed = start.elapsed();
    teardown_ours(restored.expect("execute"), memory);
    elapsed
}

thread_local! {
    static PREFLIGHT: std::cell::RefCell<Vec<Duration>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn ours_run(plan: &Plan, settle: Duration) -> Duration {
    let mut memory = AnonymousBuffers::new();
    let options = options();
    let inputs = Inputs::new();
    let start = Instant::now();
    let report = ringplan_exec::preflight(plan, &inputs, &mut memory, &options).expect("preflight");
    PREFLIGHT.with(|times| times.borrow_mut().push(start.elapsed()));
    // Let the preflight's throwaway rings go away first.
    std::thread::sleep(settle);
    let start = Instant::now();
    let restored =
        ringplan_exec::test_hooks::run_preflighted(plan, inputs, &mut memory, &options, &report);
    let elapsed = start.elapsed();
    teardown_ours(restored.expect("run"), memory);
    elapsed
}

/// What the minimal replay leaves behind.
struct BaseRestored {
    installed: Vec<RawFd>,
    mapped: Vec<(u64, u64)>,
}

fn baseline(plan: &Plan) -> Duration {
    let start = Instant::now();
    let restored = replay(plan);
    let elapsed = start.elapsed();
    for fd in restored.installed {
        // SAFETY: an fd the replay installed and nothing else holds.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    unmap(&restored.mapped);
    elapsed
}

fn borrow(fd: RawFd) -> BorrowedFd<'static> {
    // SAFETY: the replay only borrows fds it holds open in its table.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

/// The minimal replay: one syscall per step (two for a file with a position
/// or a new fd below the floor), panicking on any error.
fn replay(plan: &Plan) -> BaseRestored {
    let floor = plan.temp_fd_floor;
    let mut handles: Vec<RawFd> = vec![-1; plan.steps.len()];
    let mut installed = Vec::new();
    let mut mapped = Vec::new();
    for (index, step) in plan.steps.iter().enumerate() {
        let created: Option<OwnedFd> = match &step.op {
            // The baseline restores kernel objects only (`relocate` removes
            // the ring state, so the plans have none of these steps).
            Op::PlaceRingMemory(_) | Op::RestoreCompletions(_) | Op::QueueSqes(_) => None,
            // The bench's scenarios have no personalities, buffer rings
            // nor registered settings or wait regions, nor registered ring
            // fds.
            Op::RegisterPersonalities(_)
            | Op::RegisterRestrictions(_)
            | Op::EnableRings(_)
            | Op::RegisterPbufRing(_)
            | Op::ProvideBuffers(_)
            | Op::RegisterSettings(_)
            | Op::RegisterWaitRegion(_) => None,
            Op::RegisterRingFd(_) => None,
            // Nor are they tree plans.
            Op::ReceiveFd(_) => None,
            Op::CreateEventfd(create) => {
                let mut flags = EventfdFlags::CLOEXEC;
                if create.semaphore {
                    flags |= EventfdFlags::SEMAPHORE;
                }
                if create.nonblock {
                    flags |= EventfdFlags::NONBLOCK;
                }
                let initial = u32::try_from(create.count).unwrap_or(0);
                let fd = eventfd(initial, flags).expect("eventfd2");
                if u64::from(initial) != create.count {
                    rustix::io::write(&fd, &create.count.to_ne_bytes()).expect("write");
                }
                Some(fd)
            }
            Op::OpenFile(open) => {
                // Opened without blocking, its type checked, its status
                // flags set: what the executor does.
                let fd = rustix::fs::open(
                    open.path.as_str(),
                    OFlags::from_bits_retain(open.flags) | OFlags::NONBLOCK,
                    Mode::empty(),
                )
                .expect("openat");
                let stat = rustix::fs::fstat(&fd).expect("fstat");
                assert!(open.admits(FileType::from_mode(stat.st_mode)));
                rustix::fs::fcntl_setfl(&fd, OFlags::from_bits_retain(open.flags & SETFL_FLAGS))
                    .expect("fcntl(F_SETFL)");
                if open.pos != 0 {
                    rustix::fs::seek(&fd, SeekFrom::Start(open.pos as u64)).expect("lseek");
                }
                Some(fd)
            }
            Op::ExternalInput(input) => {
                let access = input.flags.map_or(OFlags::RDWR, |flags| {
                    OFlags::from_bits_retain(flags) & OFlags::RWMODE
                });
                if input.file_type == FileType::Pipe {
                    let (reader, writer) =
                        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).expect("pipe2");
                    Some(if access == OFlags::WRONLY {
                        writer
                    } else {
                        reader
                    })
                } else {
                    Some(
                        rustix::fs::open(
                            "/dev/null",
                            access | OFlags::CLOEXEC | OFlags::NOCTTY,
                            Mode::empty(),
                        )
                        .expect("open"),
                    )
                }
            }
            Op::SetupRing(setup) => {
                let mut params = io_uring_params::default();
                params.flags = IoringSetupFlags::from_bits_retain(setup.flags);
                if setup.flags & SetupFlags::CQSIZE.bits() != 0 {
                    params.cq_entries = setup.cq_entries;
                }
                params.sq_thread_cpu = setup.sq_thread_cpu.unwrap_or(0);
                params.sq_thread_idle = setup.sq_thread_idle_ms.unwrap_or(0);
                if let Some(wq) = setup.wq_handle {
                    params.wq_fd = handles[wq.0 as usize];
                }
                // SAFETY: `params` is initialized; `wq_fd` is an open ring.
                Some(
                    unsafe { io_uring_setup(setup.sq_entries, &mut params) }
                        .expect("io_uring_setup"),
                )
            }
            Op::RegisterEventfd(register) => {
                let opcode = if register.is_async {
                    IoringRegisterOp::RegisterEventfdAsync
                } else {
                    IoringRegisterOp::RegisterEventfd
                };
                let eventfd = handles[register.eventfd_handle.0 as usize];
                let ring = borrow(handles[register.ring_handle.0 as usize]);
                // SAFETY: one int, an open eventfd.
                unsafe { io_uring_register(ring, opcode, std::ptr::from_ref(&eventfd).cast(), 1) }
                    .expect("register eventfd");
                None
            }
            Op::RegisterFiles(register) => {
                let table: Vec<RawFd> = register
                    .slots
                    .iter()
                    .map(|slot| slot.map_or(-1, |handle| handles[handle.0 as usize]))
                    .collect();
                let ring = borrow(handles[register.ring_handle.0 as usize]);
                // SAFETY: `len` ints, each an open fd or -1.
                unsafe {
                    io_uring_register(
                        ring,
                        IoringRegisterOp::RegisterFiles,
                        table.as_ptr().cast(),
                        table.len() as u32,
                    )
                }
                .expect("register files");
                None
            }
            Op::MemoryBarrier => {
                for (start, end) in ringplan_exec::buffer_ranges(plan).expect("ranges") {
                    // SAFETY: MAP_FIXED_NOREPLACE never replaces a mapping.
                    unsafe {
                        rustix::mm::mmap_anonymous(
                            start as *mut c_void,
                            (end - start) as usize,
                            ProtFlags::READ | ProtFlags::WRITE,
                            MapFlags::PRIVATE | MapFlags::FIXED_NOREPLACE,
                        )
                    }
                    .expect("mmap");
                    mapped.push((start, end));
                }
                None
            }
            Op::RegisterBuffers(register) => {
                let iovecs: Vec<[usize; 2]> = register
                    .iovecs
                    .iter()
                    .map(|iovec| [iovec.base as usize, iovec.len as usize])
                    .collect();
                let ring = borrow(handles[register.ring_handle.0 as usize]);
                // SAFETY: `len` iovecs naming memory mapped at the barrier.
                unsafe {
                    io_uring_register(
                        ring,
                        IoringRegisterOp::RegisterBuffers,
                        iovecs.as_ptr().cast(),
                        iovecs.len() as u32,
                    )
                }
                .expect("register buffers");
                None
            }
            Op::InstallFd(install) => {
                let flags = if install.cloexec {
                    DupFlags::CLOEXEC
                } else {
                    DupFlags::empty()
                };
                // SAFETY: the target is free (the plan's targets are above
                // anything this process holds); it is kept as a raw number.
                let mut target = unsafe { OwnedFd::from_raw_fd(install.fd) };
                rustix::io::dup3(
                    borrow(handles[install.source_handle.0 as usize]),
                    &mut target,
                    flags,
                )
                .expect("dup3");
                installed.push(target.as_raw_fd());
                std::mem::forget(target);
                None
            }
            Op::CloseFd(close) => {
                for handle in &close.handles {
                    let fd = std::mem::replace(&mut handles[handle.0 as usize], -1);
                    // SAFETY: a temporary the replay created and closes once.
                    drop(unsafe { OwnedFd::from_raw_fd(fd) });
                }
                None
            }
        };
        if let Some(fd) = created {
            let fd = if fd.as_raw_fd() >= floor {
                fd
            } else {
                rustix::io::fcntl_dupfd_cloexec(&fd, floor).expect("fcntl(F_DUPFD_CLOEXEC)")
            };
            handles[index] = fd.as_raw_fd();
            std::mem::forget(fd);
        }
    }
    BaseRestored { installed, mapped }
}

fn open_fds() -> Vec<String> {
    let mut fds: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let target = std::fs::read_link(entry.path()).ok()?;
            Some(format!(
                "{} {}",
                entry.file_name().to_string_lossy(),
                target.to_string_lossy()
            ))
        })
        .collect();
    fds.sort();
    fds
}

/// Once per workload, untimed: both sides leave the same fd numbers open
/// and their teardown leaves nothing behind.
fn check_same_fds(plan: &Plan) {
    let numbers = |fds: Vec<String>| {
        fds.into_iter()
            .map(|fd| fd.split(' ').next().unwrap_or("").to_owned())
            .collect::<Vec<_>>()
    };
    let before = open_fds();
    let mut memory = AnonymousBuffers::new();
    let restored =
        ringplan_exec::execute(plan, Inputs::new(), &mut memory, &options()).expect("execute");
    let ours = numbers(open_fds());
    teardown_ours(restored, memory);
    assert_eq!(
        numbers(open_fds()),
        numbers(before.clone()),
        "the executor's teardown left fds"
    );
    let base = replay(plan);
    let theirs = numbers(open_fds());
    for fd in base.installed {
        // SAFETY: installed by the replay.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    unmap(&base.mapped);
    assert_eq!(
        numbers(open_fds()),
        numbers(before),
        "the baseline's teardown left fds"
    );
    assert_eq!(
        ours, theirs,
        "the executor and the baseline leave different fds open"
    );
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort_unstable();
    times[times.len() / 2]
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

fn machine() -> String {
    let release = rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("Linux {release}, {cpus} CPUs, {cpu}")
}
