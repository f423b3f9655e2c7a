//! How long `plan exec IMAGE --pid PID` holds a process whose rings it
//! restores where the program left them, against the same plan run in
//! this process (issue 13's figure, goal within 5x of in-process).
//!
//! `tests/programs/ring_detach_self.c` with `owned no_mmap` (six rings:
//! two past 5000 positions, one of them SQPOLL, an overflow list, a CQ ring
//! mapped twice, a `SINGLE_ISSUER|DEFER_TASKRUN` ring owned by a second
//! thread, a `NO_MMAP` ring on its own memory) is dumped once. Each round
//! then, alternately:
//!
//! - (pid) the program takes its rings out itself (a `detach` line on its
//!   stdin: closes and unmaps them, untimed; then 0.6 s for the kernel to
//!   let them go), and `execute_in` restores
//!   them into it: `StoppedTimings` (attach, preflight, run and its
//!   continuity steps, detach; their sum is the time the process was
//!   held);
//! - (local) `execute` of the same image into this process (preflight +
//!   run), with every fd number + 100 (the program's numbers are this
//!   process's stdio and more) and the ring memory moved when a recorded
//!   range is taken here; torn down outside the timing (rings closed, the
//!   memory the restore leaves mapped unmapped).
//!
//! Medians. Lines starting `TABLE|` are the summary `scripts/bench`
//! collects. Run: `cargo bench -p ringplan-exec --bench exec_pid_continuity`
//! (as root). Before Linux 6.5 (no `IORING_SETUP_NO_MMAP`) it says so and
//! stops. Environment: `EXEC_PID_ROUNDS` (default 30).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ringplan_dump::{BackendChoice, Dumper, Selection};
use ringplan_exec::test_hooks::room;
use ringplan_exec::{AnonymousBuffers, ExecOptions, Inputs, ProcessOptions, StoppedTimings};
use ringplan_plan::Op;

const FD_SHIFT: i32 = 100;
/// Where ring memory goes in this process when a recorded range is taken.
const RING_BASE: u64 = 0x3400_0000_0000;
const GOAL: f64 = 5.0;
/// How long after its rings are taken out the program is restored into.
const TEARDOWN_MS: u64 = 600;

fn main() {
    let rounds: usize = std::env::var("EXEC_PID_ROUNDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(30);
    if let Err(error) = ringplan_exec::continuity::kernel_supports_no_mmap() {
        println!("exec_pid_continuity: nothing to time on this kernel: {error}");
        return;
    }
    let binary = ringplan_scenarios::c_programs::build(
        "ring_detach_self",
        Path::new(env!("CARGO_TARGET_TMPDIR")),
    )
    .expect("building ring_detach_self");
    let mut child = Command::new(binary)
        .args(["owned", "no_mmap"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting ring_detach_self");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("its line");
    let pid = child.id();

    let image = Dumper::new(BackendChoice::Bpf)
        .expect("the BPF dumper")
        .dump(pid, Selection::All)
        .expect("dumping ring_detach_self")
        .image;
    let remote_plan = ringplan_plan::compile(&image).expect("compiling");
    let mut local_image = image.clone();
    room::shift_fds(&mut local_image, FD_SHIFT);
    let moved = match room::move_ring_memory_if_taken(&mut local_image, RING_BASE) {
        None => "ring memory at the recorded addresses in both".to_owned(),
        Some(_) => format!("ring memory moved to {RING_BASE:#x} in this process (taken here)"),
    };
    let local_plan = ringplan_plan::compile(&local_image).expect("compiling (local)");
    let options = ExecOptions {
        substitute_external: true,
        ..ExecOptions::default()
    };

    let mut held: Vec<StoppedTimings> = Vec::new();
    let mut local: Vec<Duration> = Vec::new();
    for _ in 0..rounds {
        writeln!(stdin, "detach").expect("detach");
        let mut answer = String::new();
        stdout.read_line(&mut answer).expect("detached");
        assert_eq!(answer, "detached\n");
        // The kernel tears the closed rings down in a worker that still
        // writes their CQ tail into the program's own ring memory for a
        // while (crates/ringplan-exec/README.md): a restore is for a
        // process whose rings are gone, as after a real detach.
        std::thread::sleep(Duration::from_millis(TEARDOWN_MS));
        let restored = ringplan_exec::execute_in(
            pid,
            &remote_plan,
            Inputs::new(),
            &options,
            &ProcessOptions::default(),
        )
        .expect("execute_in");
        held.push(restored.timings);

        let mut buffers = AnonymousBuffers::new();
        let started = Instant::now();
        let restored = ringplan_exec::execute(&local_plan, Inputs::new(), &mut buffers, &options)
            .expect("execute");
        local.push(started.elapsed());
        drop(restored);
        // SAFETY: what this restore placed; its rings are closed.
        unsafe { room::unmap(&room::placed_ranges(&local_plan)) };
        // The closed rings' SQ threads and teardown stay out of the next
        // measurement.
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();

    let part =
        |pick: fn(&StoppedTimings) -> Duration| median(held.iter().map(pick).collect::<Vec<_>>());
    let total = part(StoppedTimings::total);
    let local_total = median(local);
    let steps = remote_plan.steps.len();
    let continuity_steps = remote_plan
        .steps
        .iter()
        .filter(|step| {
            matches!(
                step.op,
                Op::PlaceRingMemory(_) | Op::RestoreCompletions(_) | Op::QueueSqes(_)
            )
        })
        .count();
    println!(
        "ring_detach_self (owned no_mmap): {steps} steps ({continuity_steps} continuity steps \
         besides the setups), {rounds} rounds, {moved}"
    );
    println!(
        "TABLE|exec --pid, process held|{:.2} ms|attach {:.3} ms, preflight {:.3} ms, run {:.2} ms \
         (continuity steps {:.2} ms), detach {:.3} ms",
        ms(total),
        ms(part(|t| t.attach)),
        ms(part(|t| t.preflight)),
        ms(part(|t| t.run)),
        ms(part(|t| t.continuity)),
        ms(part(|t| t.detach)),
    );
    println!(
        "TABLE|the same plan in this process (preflight + run)|{:.2} ms|",
        ms(local_total)
    );
    let ratio = total.as_secs_f64() / local_total.as_secs_f64();
    println!(
        "TABLE|exec --pid / in-process|{ratio:.2}x|goal within {GOAL}x: {}",
        if ratio <= GOAL { "met" } else { "not met" }
    );
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
