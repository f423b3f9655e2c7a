//! The BPF backend: reads a live process's io_uring state with mainline BPF
//! `iter/task_file` iterators and CO-RE reads of `io_ring_ctx`.
//!
//! The BPF side is `bpf/ringplan.bpf.c` (built by build.rs into a libbpf-rs
//! skeleton); it writes binary records (`bpf/ringplan_records.h`, parsed by
//! `bpf/records.rs`). Most of [`BpfDumper::load`] is the kernel verifying
//! pass B's program and libbpf's CO-RE candidate search, one scan of the
//! kernel's whole BTF per relocated kernel type, so the programs relocate
//! as few types as they can.
//!
//! At load the dumper also learns the kernel's io_uring and eventfd
//! `file_operations` addresses (data symbols kallsyms lacks without
//! `CONFIG_KALLSYMS_ALL`): it asks pass B's program for the `f_op` of a ring
//! and an eventfd of its own, and writes both into the program's `.bss`.
//! Files are told apart by `f_op` from then on, with no read of dentry
//! names. This run over its own fds is also the check that the kernel
//! accepts a task iterator limited to one process (6.1+).
//!
//! A read takes two passes:
//!
//! - **Pass A** iterates the *target's* fds (the link is parameterised with
//!   the target's pidfd). For every fd: the file's identity (`struct file`
//!   address), `f_op`, flags, position, mode, the fd's close-on-exec bit,
//!   the `d_path` text, and its role (ring or eventfd, by `f_op`); for an
//!   eventfd its count and flags.
//! - **Pass B** iterates the dumper's *own* fds. The dumper copies one fd of
//!   each ring into itself (`pidfd_getfd`, which also keeps the ring alive),
//!   duplicates it once per request, writes one request per local fd into a
//!   BPF hash map, and iterates its own fds: each duplicate's visit writes
//!   its answer. The first rounds ask for every ring's header (setup
//!   parameters, SQ thread, per-ring SQ idle, eventfd, table sizes) and,
//!   speculatively, the first chunk of each table; later rounds ask for the
//!   rest of the tables. A ring's personalities and provided-buffer groups
//!   are walked by a program of their own, `ringplan_walk_fds` (same
//!   object, autoload off), whose `bpf_loop` walks cost the verifier about
//!   four times the rest of pass B: the header says only whether the
//!   ring has any (an empty xarray's head is NULL), and the dumper loads
//!   the walks (a second instance of the object with only that program)
//!   the first time a header says so, keeps them for later dumps, and asks
//!   them for the counts, then for the chunks. A dump of rings without
//!   personalities or buffer groups never loads them.
//!   Tables come in chunks of at most a few hundred
//!   slots because one iterator object (one fd visit) can write at most
//!   32 KiB (the bpf_iter seq buffer), far less than a table of 19,000 files
//!   needs. A registered file comes with its `f_op`, which says whether it
//!   is a ring or an eventfd (the program reads an eventfd's count itself).
//!
//! Reads are sized so the kernel never has to show an object twice (see
//! ringplan_records.h), and the programs have no side effects that a
//! re-show could repeat; this side still drops duplicate records (fds by
//! number, rings by address, slots by table and index) and checks that every
//! header and chunk it asked for was answered.
//!
//! A registered file that no fd of the target holds has no trusted pointer
//! for `bpf_d_path`, so its path comes from the ring's fdinfo
//! (`ringplan_kernel::procfs::fdinfo::user_file_rows`), read only when such
//! a file exists.
//!
//! SQ idle is kept in jiffies; it is converted with HZ, which is the
//! inverse of the coarse clocks' resolution (`clock_getres` of
//! `CLOCK_MONOTONIC_COARSE` is one tick, `TICK_NSEC`; this spares libbpf
//! parsing the kernel config for `CONFIG_HZ` at load). Should that give an
//! implausible value, the dumper measures HZ: it sets up its own SQPOLL
//! ring with a 1000 ms idle and reads back that ring's `sq_thread_idle`,
//! which is then HZ. If that fails too, SQPOLL rings come back with
//! `idle_known: false`.
//!
//! The target must be quiescent for the result to be consistent (the
//! tables are read without the ring's lock); a table whose size changed
//! between the header and its chunks is reported as
//! [`BpfError::TargetChanged`].
//!
//! The files: `dumper.rs` loads the program and runs the passes, with
//! `requests.rs` (pass B's requests and which program answers each),
//! `iterator.rs` (attaching and reading an iterator) and `local_fds.rs`
//! (copying the target's fds); `reading.rs`
//! accumulates and checks what the passes write, which `records.rs` parses
//! with the types the skeleton generates from `ringplan_records.h`
//! (`skeleton.rs`); `loaded_skeleton.rs` keeps a loaded skeleton (the
//! passes', or the walks');
//! `layout.rs` explains a load that fails on the kernel's io_uring layout;
//! `hz.rs` converts SQ idle from jiffies; `error.rs` holds [`BpfError`].

mod dumper;
mod error;
mod hz;
mod iterator;
mod layout;
mod loaded_skeleton;
mod local_fds;
mod page_frames;
mod reading;
mod records;
mod requests;
mod skeleton;

pub use dumper::BpfDumper;
pub use error::{BpfError, Pass};
