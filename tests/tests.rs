//! Integration tests of the `plan` binary against the real kernel. Every
//! test that dumps starts a real process with real rings; BPF tests need
//! root, which every machine of this project has.
//!
//! Modules:
//! - `architecture`: no module of any crate imports one that imports it
//!   back (reads every crate's `src/`; see its doc for the rule).
//! - `bad_input`: every row of `docs/bad-input.md` (bad documents, preflight
//!   refusals) gets one line and exit status 2 from show, compile and exec,
//!   and strace shows exec changed nothing; dump refused without ptrace rights.
//! - `cli`: bad input gets one line and exit status 2, with nothing done.
//! - `continuity`: every ring state of `tests/programs/ring_continuity.c`
//!   (positions past wraps, queued SQEs, unconsumed and overflowed CQEs,
//!   SQE128|CQE32, NO_MMAP on its own memory, DEFER_TASKRUN owned by a
//!   second thread, R_DISABLED, a CQ ring mapped twice, SQPOLL) restored by
//!   `plan exec --hold` and compared with the original through the
//!   kernel's fdinfo; refused before anything on kernels without NO_MMAP.
//! - `detach`: `plan dump --detach` of `tests/programs/detach_target.c`
//!   mid-I/O (a plain ring with registered eventfd, files, buffers and ring
//!   fd; SQPOLL; DEFER_TASKRUN owned by a second thread): the requests in
//!   flight counted and named by BPF, every ring taken out (no ring fd,
//!   mapping or io thread left, stopped), the drained image; requests that
//!   never complete named, the process left running (or stopped, as found)
//!   within `--drain-timeout`; CRIU dumps the detached process (where
//!   `criu check` passes); a detach waits for `plan freeze` holding the
//!   process.
//! - `dump_scenarios`: `plan app` scenarios dumped with each backend and
//!   checked field by field; the seed image pinned as a snapshot.
//! - `exec`: `plan exec` round trips (verify, hold + dump + fdinfo),
//!   injected failures at every step, bad input.
//! - `exec_pid`: `plan exec --pid` restoring the seed (without its rings'
//!   continuity state) into a running C program that holds no ring, seen
//!   from outside (`/proc/PID/fd`, `fdinfo`); `--leave-stopped`,
//!   `--verify`, `--dry-run`, `--hold` refused, an injected failure at every step leaving
//!   the target as it was and running.
//! - `exec_pid_continuity`: `plan exec --pid` restoring rings where the
//!   program left them, inside a liburing program that took them out
//!   itself (positions past wraps, unconsumed and overflowed CQEs, queued
//!   SQEs, SQPOLL, a CQ ring mapped twice, a SINGLE_ISSUER|DEFER_TASKRUN
//!   ring in its owner thread, a NO_MMAP ring on its own memory): fdinfo
//!   as the original's, the program uses every ring afterwards; a missing
//!   owner thread refused; an injected failure at every step leaves the
//!   target as found.
//! - `exec_pid_adopt`: `plan exec --pid` into a process that already holds
//!   the seed's eventfd and a file at their recorded fds: only the rings are
//!   created, registered with the process's own fds (same inodes, count and
//!   offset after the run, and after a failure injected at every step); a
//!   different file, or an eventfd with another count or flags, refused in
//!   one line with nothing changed; a held file whose path was deleted
//!   adopted by its inode; `--verify` noting the kept offset; the dump
//!   records each file's inode.
//! - `exec_pid_hold`: one ringplan command at a time holds a process:
//!   `exec --pid` waits while `plan freeze` holds it, refuses (naming the
//!   holder) past 10 s, shares the hold when `plan freeze` runs it (the
//!   process left stopped, then resumed by the freeze), and takes turns with
//!   a `plan dump --freeze` started at the same moment.
//! - `legacy_buffers`: `tests/programs/legacy_reader.c`, which reads
//!   through a legacy provided-buffer group, taken out mid-work with
//!   `plan dump --detach` and put back with `plan exec --pid`: the kernel
//!   then hands it every remaining buffer, in order, and no more; every
//!   step of the put-back failed in turn leaves it as the detach left it.
//! - `pbuf_mmap`: `tests/programs/pbuf_mmap_reader.c`, which reads
//!   through a buffer ring in kernel memory (`IOU_PBUF_RING_MMAP`), taken
//!   out mid-work with `plan dump --detach` and put back with `plan exec
//!   --pid` as user memory holding the captured entries and tail: the
//!   kernel then hands it the remaining buffers and the ones it provides
//!   after, in order; every step of the put-back failed in turn leaves it
//!   as the detach left it; `--verify` explains the change.
//! - `plans`: the checked-in example plans under `plans/` still match.
//! - `real_programs`: fio (io_uring engine, with and without registered
//!   files, fixed buffers, SQPOLL) and `qemu-img bench`, dumped while they do
//!   I/O, checked against their job and fdinfo, restored with `--verify`.
//! - `ring_fds`: registered ring fds (`plan app ring-fds`: two rings at
//!   chosen offsets in two threads) dumped per thread; restored in-process
//!   at their offsets in the thread that ran the plan (a colliding offset
//!   reported, not registered), and with `exec --pid` into their recorded
//!   threads after `plan dump --detach`, compared by a dump; a failure at
//!   every step leaves no ring and no slot.
//! - `reopen`: files reopened by path (always without blocking) keep the
//!   status flags the image recorded (`O_APPEND`; `O_NONBLOCK` only when
//!   recorded), seen in `/proc/HOLDER/fdinfo` of `plan exec --hold`.
//! - `wait_regions`: `tests/programs/wait_waiter.c`, whose waits read
//!   their arguments from a registered wait region of its own memory,
//!   taken out with `plan dump --detach` and put back with `plan exec
//!   --pid`: the kernel then reads the same page (entries written before
//!   and after); every step of the put-back failed in turn leaves it as
//!   the detach left it (Linux 6.13+).
//! - `vanishing`: targets killed mid-dump, a reused pid, a target that never
//!   stops changing, `--freeze` and `plan freeze` (cgroup and signal) letting
//!   go on every path, also when `plan` is SIGKILLed.

mod support;

mod architecture;
mod bad_input;
mod cli;
mod continuity;
mod criu;
mod detach;
mod dump_scenarios;
mod exec;
mod exec_pid;
mod exec_pid_adopt;
mod exec_pid_continuity;
mod exec_pid_hold;
mod in_place;
mod legacy_buffers;
mod pbuf_mmap;
mod plans;
mod real_programs;
mod reopen;
mod ring_fds;
mod vanishing;
mod wait_regions;
