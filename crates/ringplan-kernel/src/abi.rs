//! The io_uring ABI ringplan uses, and the Linux constants beside it.
//!
//! Values and names are the kernel's (`include/uapi/linux/io_uring.h`,
//! `fcntl.h`, `eventfd.h`, `include/linux/sched.h`), without their common
//! prefix where a type carries it (`SetupFlags::SQPOLL` is
//! `IORING_SETUP_SQPOLL`). Every crate of the workspace takes them from here.

use bitflags::bitflags;

bitflags! {
    /// `IORING_SETUP_*`: how a ring was set up (`io_uring_params.flags`).
    ///
    /// An image stores the raw `u32` the kernel holds, so a flag this type
    /// has no name for survives a round trip ([`SetupFlags::from_bits_retain`]);
    /// [`SetupFlags::KNOWN`] says which bits the project knows the meaning of.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub struct SetupFlags: u32 {
        /// `IORING_SETUP_IOPOLL`: completions are polled, not interrupt-driven.
        const IOPOLL = 1 << 0;
        /// `IORING_SETUP_SQPOLL`: the ring has a kernel SQ thread.
        const SQPOLL = 1 << 1;
        /// `IORING_SETUP_SQ_AFF`: the SQ thread is pinned to `sq_thread_cpu`.
        const SQ_AFF = 1 << 2;
        /// `IORING_SETUP_CQSIZE`: `cq_entries` was chosen by the caller.
        const CQSIZE = 1 << 3;
        /// `IORING_SETUP_CLAMP`: sizes above the maximum are clamped.
        const CLAMP = 1 << 4;
        /// `IORING_SETUP_ATTACH_WQ`: the ring was set up attached to another.
        const ATTACH_WQ = 1 << 5;
        /// `IORING_SETUP_R_DISABLED`: the ring starts disabled until
        /// `IORING_REGISTER_ENABLE_RINGS`.
        const R_DISABLED = 1 << 6;
        /// `IORING_SETUP_SUBMIT_ALL`: submission goes on past an error.
        const SUBMIT_ALL = 1 << 7;
        /// `IORING_SETUP_COOP_TASKRUN`
        const COOP_TASKRUN = 1 << 8;
        /// `IORING_SETUP_TASKRUN_FLAG`
        const TASKRUN_FLAG = 1 << 9;
        /// `IORING_SETUP_SQE128`: 128-byte SQEs.
        const SQE128 = 1 << 10;
        /// `IORING_SETUP_CQE32`: 32-byte CQEs.
        const CQE32 = 1 << 11;
        /// `IORING_SETUP_SINGLE_ISSUER`: one task (the creator, or the task
        /// that enables an `R_DISABLED` ring) may submit.
        const SINGLE_ISSUER = 1 << 12;
        /// `IORING_SETUP_DEFER_TASKRUN` (requires `SINGLE_ISSUER`).
        const DEFER_TASKRUN = 1 << 13;
        /// `IORING_SETUP_NO_MMAP` (6.5): the rings live in memory the task
        /// provided.
        const NO_MMAP = 1 << 14;
        /// `IORING_SETUP_REGISTERED_FD_ONLY`: the ring has no fd, only a
        /// registered ring index.
        const REGISTERED_FD_ONLY = 1 << 15;
        /// `IORING_SETUP_NO_SQARRAY` (6.6): no SQ index array.
        const NO_SQARRAY = 1 << 16;
        /// `IORING_SETUP_HYBRID_IOPOLL` (6.13)
        const HYBRID_IOPOLL = 1 << 17;
        /// `IORING_SETUP_CQE_MIXED` (6.18): 16- and 32-byte CQEs mixed.
        const CQE_MIXED = 1 << 18;
    }
}

impl SetupFlags {
    /// Every flag up to `IORING_SETUP_CQE_MIXED`, the last one this project
    /// knows the meaning of.
    pub const KNOWN: SetupFlags = SetupFlags::all();

    /// The flags set in `bits` as the kernel names them without
    /// `IORING_SETUP_`, `|`-joined, with bits that have no name in hex;
    /// `0` when none is set.
    pub fn names(bits: u32) -> String {
        let flags = SetupFlags::from_bits_retain(bits);
        let mut names: Vec<String> = flags
            .iter_names()
            .map(|(name, _)| name.to_owned())
            .collect();
        let rest = bits & !SetupFlags::KNOWN.bits();
        if rest != 0 {
            names.push(format!("{rest:#x}"));
        }
        if names.is_empty() {
            "0".to_owned()
        } else {
            names.join("|")
        }
    }
}

/// The path the kernel gives a ring's file (the anonymous inode
/// `[io_uring]`): what `/proc/PID/fd/N` links to for a ring fd, and the
/// path `/proc/PID/maps` shows for a mapping of a ring's regions.
pub const RING_FILE_PATH: &str = "anon_inode:[io_uring]";

/// The path the kernel gives an eventfd's file (the anonymous inode
/// `[eventfd]`, which every eventfd shares).
pub const EVENTFD_FILE_PATH: &str = "anon_inode:[eventfd]";

/// The mmap offsets that select a ring's regions (`IORING_OFF_*`).
pub mod mmap_offset {
    /// `IORING_OFF_SQ_RING`: the SQ ring (with `IORING_FEAT_SINGLE_MMAP`,
    /// also the CQ ring).
    pub const SQ_RING: u64 = 0;
    /// `IORING_OFF_CQ_RING`
    pub const CQ_RING: u64 = 0x800_0000;
    /// `IORING_OFF_SQES`: the SQE array.
    pub const SQES: u64 = 0x1000_0000;
}

/// The largest sizes the kernel accepts.
pub mod limits {
    /// Largest SQ size (`IORING_MAX_ENTRIES`).
    pub const MAX_SQ_ENTRIES: u32 = 32768;
    /// Largest CQ size (`IORING_MAX_CQ_ENTRIES`).
    pub const MAX_CQ_ENTRIES: u32 = 2 * MAX_SQ_ENTRIES;
    /// Largest registered file table (`IORING_MAX_FIXED_FILES`).
    pub const MAX_FILE_SLOTS: u32 = 1 << 20;
    /// Largest registered buffer table (`IORING_MAX_REG_BUFFERS`).
    pub const MAX_BUFFER_SLOTS: u32 = 1 << 14;
    /// Largest single registered buffer (the kernel refuses more than 1 GiB).
    pub const MAX_BUFFER_LEN: u64 = 1 << 30;
    /// The largest count an eventfd holds (`ULLONG_MAX - 1`).
    pub const MAX_EVENTFD_COUNT: u64 = u64::MAX - 1;
    /// One past the largest fd number Linux can ever hand out
    /// (`sysctl_nr_open_max` on 64-bit: `INT_MAX` rounded down to a
    /// multiple of 64).
    pub const KERNEL_FD_LIMIT: i32 = 0x7fff_ffc0;
}

/// Linux constants beside io_uring: file status flags, eventfd flags, the
/// page size, task flags (x86-64 values).
pub mod linux {
    /// `O_CREAT`
    pub const O_CREAT: u32 = 0o100;
    /// `O_EXCL`
    pub const O_EXCL: u32 = 0o200;
    /// `O_NOCTTY`
    pub const O_NOCTTY: u32 = 0o400;
    /// `O_TRUNC`
    pub const O_TRUNC: u32 = 0o1000;
    /// `O_NONBLOCK`
    pub const O_NONBLOCK: u32 = 0o4000;
    /// `O_CLOEXEC`
    pub const O_CLOEXEC: u32 = 0o2_000_000;
    /// `EFD_SEMAPHORE`: each read takes 1 from the count.
    pub const EFD_SEMAPHORE: u32 = 1;
    /// The page size of x86-64 (and of every mapping ringplan checks).
    pub const PAGE_SIZE: u64 = 4096;
    /// First address above user space on x86-64 with 4-level page tables;
    /// a registered buffer or a ring mapping must lie below it.
    pub const USER_ADDRESS_LIMIT: u64 = 0x0000_8000_0000_0000;
    /// `PF_EXITING` (`include/linux/sched.h`): the task is exiting; the
    /// ninth field of `/proc/PID/stat`.
    pub const PF_EXITING: u64 = 0x4;
    /// `PROC_PID_INIT_INO` (`include/linux/proc_ns.h`): the inode number
    /// of the initial pid namespace (`/proc/PID/ns/pid`), fixed.
    pub const PROC_PID_INIT_INO: u64 = 0xEFFF_FFFC;
}

/// What lives in a ring's memory and what moves it
/// (`include/uapi/linux/io_uring.h`): entry sizes and the flags that change
/// them, the byte layout of the SQE and CQE fields, the opcodes and flags of
/// the NOPs and `MSG_RING`s that move a ring's positions, and the ring flags
/// a restore watches. The dumper reads a ring's continuity state with these;
/// the executor puts it back with them.
pub mod continuity {
    use super::SetupFlags;

    /// Bytes of an SQE (`struct io_uring_sqe`).
    pub const SQE_SIZE: usize = 64;
    /// Bytes of an SQE with `IORING_SETUP_SQE128`.
    pub const SQE128_SIZE: usize = 128;
    /// Bytes of a CQE (`struct io_uring_cqe`).
    pub const CQE_SIZE: usize = 16;
    /// Bytes of a CQE with `IORING_SETUP_CQE32` (two extra `u64`s).
    pub const CQE32_SIZE: usize = 32;
    /// Bytes of an SQ array entry (a `u32` SQE index).
    pub const SQ_ARRAY_ENTRY_SIZE: usize = 4;

    /// The size of this ring's SQEs.
    pub fn sqe_size(flags: u32) -> usize {
        if flags & SetupFlags::SQE128.bits() != 0 {
            SQE128_SIZE
        } else {
            SQE_SIZE
        }
    }

    /// The size of this ring's CQEs; `None` for `IORING_SETUP_CQE_MIXED`,
    /// whose CQEs are 16 or 32 bytes each (`IORING_CQE_F_32`).
    pub fn cqe_size(flags: u32) -> Option<usize> {
        if flags & SetupFlags::CQE_MIXED.bits() != 0 {
            None
        } else if flags & SetupFlags::CQE32.bits() != 0 {
            Some(CQE32_SIZE)
        } else {
            Some(CQE_SIZE)
        }
    }

    /// The flags that decide where things lie in a ring's memory (the CQE
    /// size, whether there is an SQ array): a ring set up with these and
    /// the same sizes has the same `sq_off` and `cq_off`.
    pub const LAYOUT_FLAGS: SetupFlags = SetupFlags::CQE32
        .union(SetupFlags::CQE_MIXED)
        .union(SetupFlags::NO_SQARRAY);

    /// Byte offsets of the fields of `struct io_uring_sqe` the executor
    /// writes (little-endian x86-64).
    pub mod sqe_offset {
        /// `__u8 opcode`
        pub const OPCODE: usize = 0;
        /// `__u8 flags` (`IOSQE_*`)
        pub const FLAGS: usize = 1;
        /// `__s32 fd`
        pub const FD: usize = 4;
        /// `__u64 off` (for `MSG_RING`: the user_data of the posted CQE)
        pub const OFF: usize = 8;
        /// `__u64 addr` (for `MSG_RING`: the command, `IORING_MSG_DATA`)
        pub const ADDR: usize = 16;
        /// `__u32 len` (for `MSG_RING`: the res of the posted CQE)
        pub const LEN: usize = 24;
        /// The op flags union (`msg_ring_flags` for `MSG_RING`).
        pub const OP_FLAGS: usize = 28;
        /// `__u64 user_data`
        pub const USER_DATA: usize = 32;
        /// `file_index` (for `MSG_RING` with `IORING_MSG_RING_FLAGS_PASS`:
        /// the flags of the posted CQE)
        pub const FILE_INDEX: usize = 44;
    }

    /// Byte offsets of the fields of `struct io_uring_cqe`.
    pub mod cqe_offset {
        /// `__u64 user_data`
        pub const USER_DATA: usize = 0;
        /// `__s32 res`
        pub const RES: usize = 8;
        /// `__u32 flags`
        pub const FLAGS: usize = 12;
        /// `__u64 big_cqe[2]`, only with `IORING_SETUP_CQE32`.
        pub const EXTRA: usize = 16;
    }

    /// `IORING_OP_NOP`
    pub const OP_NOP: u8 = 0;
    /// `IORING_OP_MSG_RING`
    pub const OP_MSG_RING: u8 = 40;
    /// `IORING_OP_READ`
    pub const OP_READ: u8 = 22;
    /// `IOSQE_CQE_SKIP_SUCCESS`: no CQE when the request succeeds.
    pub const IOSQE_CQE_SKIP_SUCCESS: u8 = 1 << 6;
    /// `IORING_MSG_DATA`: `MSG_RING` posts a CQE with user_data = `off`,
    /// res = `len`.
    pub const IORING_MSG_DATA: u64 = 0;
    /// `IORING_MSG_RING_FLAGS_PASS` (after 6.1; EINVAL where missing): the
    /// posted CQE's flags are the SQE's `file_index`.
    pub const IORING_MSG_RING_FLAGS_PASS: u32 = 1 << 1;

    /// `IORING_SQ_NEED_WAKEUP` in the SQ ring's flags: the SQ thread sleeps.
    pub const IORING_SQ_NEED_WAKEUP: u32 = 1 << 0;
    /// `IORING_SQ_CQ_OVERFLOW` in the SQ ring's flags: CQEs wait in the
    /// kernel's overflow list.
    pub const IORING_SQ_CQ_OVERFLOW: u32 = 1 << 1;

    /// `IORING_ENTER_GETEVENTS`
    pub const IORING_ENTER_GETEVENTS: u32 = 1 << 0;
    /// `IORING_ENTER_SQ_WAKEUP`: wake a sleeping SQ thread.
    pub const IORING_ENTER_SQ_WAKEUP: u32 = 1 << 1;
}

/// Reopening a file by path without blocking (`include/uapi/asm-generic/fcntl.h`,
/// x86-64 values; `fs/fcntl.c`): the open flags a restore adds or looks
/// at, and the file status flags `fcntl(F_SETFL)` can change afterwards.
pub mod reopen {
    use super::linux::O_NONBLOCK;

    /// `O_APPEND`
    pub const O_APPEND: u32 = 0o2000;
    /// `O_ASYNC` (`FASYNC`): `open` ignores it; only `F_SETFL` sets it.
    pub const O_ASYNC: u32 = 0o20000;
    /// `O_DIRECT`
    pub const O_DIRECT: u32 = 0o40000;
    /// `O_LARGEFILE`: the kernel sets it in `f_flags` of every file a
    /// 64-bit process opens.
    pub const O_LARGEFILE: u32 = 0o100000;
    /// `O_NOFOLLOW`: a symlink as the last component fails the open.
    pub const O_NOFOLLOW: u32 = 0o400000;
    /// `O_NOATIME`
    pub const O_NOATIME: u32 = 0o1000000;
    /// `O_PATH`: an fd that only names the file; `fcntl(F_SETFL)` on it
    /// fails with `EBADF`.
    pub const O_PATH: u32 = 0o10000000;
    /// The flags `fcntl(F_SETFL)` sets (`SETFL_MASK` in `fs/fcntl.c`:
    /// `O_NDELAY` is `O_NONBLOCK` here); the access mode and the others
    /// are fixed at open.
    pub const SETFL_FLAGS: u32 = O_APPEND | O_NONBLOCK | O_ASYNC | O_DIRECT | O_NOATIME;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_spell_the_kernels_flags_and_keep_unknown_bits() {
        assert_eq!(SetupFlags::names(0), "0");
        assert_eq!(SetupFlags::names(0b10_0010), "SQPOLL|ATTACH_WQ");
        assert_eq!(SetupFlags::names(1 << 18), "CQE_MIXED");
        assert_eq!(
            SetupFlags::names((1 << 12) | (1 << 30)),
            "SINGLE_ISSUER|0x40000000"
        );
    }

    #[test]
    fn known_flags_are_the_nineteen_bits_up_to_cqe_mixed() {
        assert_eq!(SetupFlags::KNOWN.bits(), (1 << 19) - 1);
    }
}

/// What running syscalls inside another process (ptrace) meets: the
/// restart codes a syscall interrupted by the attach leaves in its return
/// register (`include/linux/errno.h`, never seen by user space), the task
/// flag of io threads, the seccomp modes of `/proc/PID/status`, and the rseq
/// structures read to tell whether a thread is inside a critical section
/// (`include/uapi/linux/rseq.h`, `include/uapi/linux/ptrace.h`).
pub mod ptrace {
    /// `ERESTARTSYS`: restart the syscall unless a handler without
    /// `SA_RESTART` runs.
    pub const ERESTARTSYS: i64 = 512;
    /// `ERESTARTNOINTR`: always restart.
    pub const ERESTARTNOINTR: i64 = 513;
    /// `ERESTARTNOHAND`: restart when no handler runs.
    pub const ERESTARTNOHAND: i64 = 514;
    /// `ERESTART_RESTARTBLOCK`: restart through `restart_syscall` and the
    /// task's `restart_block` (`nanosleep`, `poll`, `futex` with a timeout).
    pub const ERESTART_RESTARTBLOCK: i64 = 516;

    /// Whether a syscall's raw return value is one of the restart codes
    /// above: the syscall was interrupted and the kernel restarts it when
    /// the thread resumes without running a signal handler.
    pub fn is_restart_code(raw_result: i64) -> bool {
        matches!(
            -raw_result,
            ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND | ERESTART_RESTARTBLOCK
        )
    }

    /// `PF_IO_WORKER` (`include/linux/sched.h`): an io_uring SQ thread or
    /// io-wq worker; it runs no user code and cannot be ptraced.
    pub const PF_IO_WORKER: u64 = 0x10;

    /// `SECCOMP_MODE_DISABLED`: the `Seccomp:` field of a thread without
    /// seccomp.
    pub const SECCOMP_MODE_DISABLED: u32 = 0;
    /// `SECCOMP_MODE_STRICT`: only `read`, `write`, `exit` and `sigreturn`.
    pub const SECCOMP_MODE_STRICT: u32 = 1;
    /// `SECCOMP_MODE_FILTER`: BPF filters decide each syscall.
    pub const SECCOMP_MODE_FILTER: u32 = 2;

    /// `PTRACE_GET_RSEQ_CONFIGURATION` (Linux 5.13): where a thread's
    /// `struct rseq` is and its abort signature.
    pub const PTRACE_GET_RSEQ_CONFIGURATION: u32 = 0x420f;

    /// `struct ptrace_rseq_configuration`.
    #[repr(C)]
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct RseqConfiguration {
        /// Address of the thread's `struct rseq`; 0 when it registered none.
        pub rseq_abi_pointer: u64,
        /// Size registered.
        pub rseq_abi_size: u32,
        /// The signature the 4 bytes before every abort handler must hold.
        pub signature: u32,
        /// Registration flags.
        pub flags: u32,
        /// Padding.
        pub pad: u32,
    }

    /// Offset of `rseq_cs` (a `u64` pointer to the current critical
    /// section's `struct rseq_cs`, 0 outside one) in `struct rseq`.
    pub const RSEQ_CS_FIELD_OFFSET: u64 = 8;
    /// Bytes of `struct rseq_cs`: `version: u32`, `flags: u32`,
    /// `start_ip: u64`, `post_commit_offset: u64`, `abort_ip: u64`.
    pub const RSEQ_CS_SIZE: usize = 32;
    /// Offset of `start_ip` in `struct rseq_cs`.
    pub const RSEQ_CS_START_IP_OFFSET: usize = 8;
    /// Offset of `post_commit_offset` in `struct rseq_cs`.
    pub const RSEQ_CS_POST_COMMIT_OFFSET_OFFSET: usize = 16;
    /// Offset of `abort_ip` in `struct rseq_cs`.
    pub const RSEQ_CS_ABORT_IP_OFFSET: usize = 24;
}

/// What tells one open file from another when a restore meets a process
/// that already holds files at the recorded fds (`plan exec --pid`
/// adopting them).
pub mod identity {
    /// `O_ACCMODE`: the access mode bits of `f_flags` (`O_RDONLY`,
    /// `O_WRONLY`, `O_RDWR`); an fd opened for reading cannot stand in for
    /// one opened for writing.
    pub const O_ACCMODE: u32 = 0o3;

    /// The major and minor numbers of an `st_dev` as `stat` reports it to
    /// userspace (glibc's `major()`/`minor()` encoding).
    pub fn major_minor(dev: u64) -> (u32, u32) {
        (rustix::fs::major(dev), rustix::fs::minor(dev))
    }
}

/// What `plan dump --detach` needs: draining a ring, naming the requests
/// still in flight, and taking the rings out of a process.
pub mod detach {
    /// `IORING_UNREGISTER_RING_FDS` (`io_uring_register` opcode 21, 5.18):
    /// drops the calling task's registered ring fds at the given offsets.
    pub const IORING_UNREGISTER_RING_FDS: u32 = 21;
    /// `IO_RINGFD_REG_MAX`: a task's registered ring fd slots.
    pub const REGISTERED_RING_FD_SLOTS: u32 = 16;
    /// `sizeof(struct io_uring_rsrc_update)`: `{ u32 offset; u32 resv;
    /// u64 data; }`, the argument array of `IORING_UNREGISTER_RING_FDS`.
    pub const RSRC_UPDATE_SIZE: usize = 16;
    /// `MEMBARRIER_CMD_GLOBAL` (`membarrier(2)`, 4.3; once
    /// `MEMBARRIER_CMD_SHARED`): returns after an RCU grace period
    /// (`synchronize_rcu()` in the kernel, when more than one CPU is
    /// online; `EINVAL` under `nohz_full`). A closed ring's teardown waits
    /// for grace periods, which is how a detach knows it has passed them.
    pub const MEMBARRIER_CMD_GLOBAL: i32 = 1;

    /// The uapi's name of an `IORING_OP_*` opcode (`enum io_uring_op`,
    /// in order), without its prefix; `None` past the last one known.
    pub fn opcode_name(opcode: u8) -> Option<&'static str> {
        const NAMES: [&str; 59] = [
            "NOP",
            "READV",
            "WRITEV",
            "FSYNC",
            "READ_FIXED",
            "WRITE_FIXED",
            "POLL_ADD",
            "POLL_REMOVE",
            "SYNC_FILE_RANGE",
            "SENDMSG",
            "RECVMSG",
            "TIMEOUT",
            "TIMEOUT_REMOVE",
            "ACCEPT",
            "ASYNC_CANCEL",
            "LINK_TIMEOUT",
            "CONNECT",
            "FALLOCATE",
            "OPENAT",
            "CLOSE",
            "FILES_UPDATE",
            "STATX",
            "READ",
            "WRITE",
            "FADVISE",
            "MADVISE",
            "SEND",
            "RECV",
            "OPENAT2",
            "EPOLL_CTL",
            "SPLICE",
            "PROVIDE_BUFFERS",
            "REMOVE_BUFFERS",
            "TEE",
            "SHUTDOWN",
            "RENAMEAT",
            "UNLINKAT",
            "MKDIRAT",
            "SYMLINKAT",
            "LINKAT",
            "MSG_RING",
            "FSETXATTR",
            "SETXATTR",
            "FGETXATTR",
            "GETXATTR",
            "SOCKET",
            "URING_CMD",
            "SEND_ZC",
            "SENDMSG_ZC",
            "READ_MULTISHOT",
            "WAITID",
            "FUTEX_WAIT",
            "FUTEX_WAKE",
            "FUTEX_WAITV",
            "FIXED_FD_INSTALL",
            "FTRUNCATE",
            "BIND",
            "LISTEN",
            "RECV_ZC",
        ];
        NAMES.get(usize::from(opcode)).copied()
    }

    #[cfg(test)]
    mod tests {
        use super::opcode_name;

        #[test]
        fn opcode_names_follow_the_uapi_order() {
            assert_eq!(opcode_name(0), Some("NOP"));
            assert_eq!(opcode_name(6), Some("POLL_ADD"));
            assert_eq!(opcode_name(11), Some("TIMEOUT"));
            assert_eq!(opcode_name(22), Some("READ"));
            assert_eq!(opcode_name(27), Some("RECV"));
            assert_eq!(opcode_name(40), Some("MSG_RING"));
            assert_eq!(opcode_name(58), Some("RECV_ZC"));
            assert_eq!(opcode_name(200), None);
        }
    }
}

/// Personalities: credentials a ring keeps under an id that SQEs name
/// (`IORING_REGISTER_PERSONALITY`; io_uring/register.c). The kernel takes
/// the registering thread's credentials and allocates the id with
/// `xa_alloc_cyclic(&ctx->personalities, ..., XA_LIMIT(0, USHRT_MAX),
/// &ctx->pers_next)` on an `XA_FLAGS_ALLOC1` xarray: the first free id at
/// or after `pers_next`, wrapping to 1, and `pers_next` becomes id + 1.
pub mod personality {
    /// `IORING_REGISTER_PERSONALITY`: no argument; returns the new id.
    pub const IORING_REGISTER_PERSONALITY: u32 = 9;
    /// `IORING_UNREGISTER_PERSONALITY`: `nr_args` is the id.
    pub const IORING_UNREGISTER_PERSONALITY: u32 = 10;
    /// The lowest id the kernel gives (`XA_FLAGS_ALLOC1`: 0 is never free).
    pub const FIRST_ID: u32 = 1;
    /// The highest id (`USHRT_MAX`): an SQE names one in a `u16`.
    pub const MAX_ID: u32 = 0xffff;
    /// Byte offset of `__u16 personality` in `struct io_uring_sqe`.
    pub const SQE_PERSONALITY_OFFSET: usize = 42;
    /// The most supplementary groups the dumper records per personality;
    /// a credential with more has its groups unknown.
    pub const MAX_RECORDED_GROUPS: u32 = 32;
}

/// Restrictions: what an `R_DISABLED` ring may be asked once it is enabled
/// (`IORING_REGISTER_RESTRICTIONS`, then `IORING_REGISTER_ENABLE_RINGS`).
pub mod restriction {
    /// `IORING_REGISTER_RESTRICTIONS`: an array of `struct
    /// io_uring_restriction`, only while the ring is `R_DISABLED`, once.
    pub const IORING_REGISTER_RESTRICTIONS: u32 = 11;
    /// `IORING_REGISTER_ENABLE_RINGS`: clears `R_DISABLED`.
    pub const IORING_REGISTER_ENABLE_RINGS: u32 = 12;
    /// `IORING_RESTRICTION_REGISTER_OP`: allow one `io_uring_register` opcode.
    pub const RESTRICTION_REGISTER_OP: u16 = 0;
    /// `IORING_RESTRICTION_SQE_OP`: allow one SQE opcode.
    pub const RESTRICTION_SQE_OP: u16 = 1;
    /// `IORING_RESTRICTION_SQE_FLAGS_ALLOWED`: SQE flags allowed.
    pub const RESTRICTION_SQE_FLAGS_ALLOWED: u16 = 2;
    /// `IORING_RESTRICTION_SQE_FLAGS_REQUIRED`: SQE flags required.
    pub const RESTRICTION_SQE_FLAGS_REQUIRED: u16 = 3;
    /// `sizeof(struct io_uring_restriction)`: `{u16 opcode; u8 op; u8
    /// resv; u32 resv2[3]}`.
    pub const RESTRICTION_SIZE: usize = 16;
    /// Bits of `io_restriction.register_op` and `.sqe_op`
    /// (`DECLARE_BITMAP(..., IORING_REGISTER_LAST)` and `IORING_OP_LAST`:
    /// both fit one 64-bit word on 6.1 and 6.18, and the dumper reads one
    /// word each).
    pub const BITMAP_BITS: u32 = 64;
    /// The SQE flags a restriction may name (`IOSQE_*`, bits 0..6).
    pub const SQE_FLAGS_MASK: u8 = 0x7f;

    /// The argument of `IORING_REGISTER_RESTRICTIONS` that allows
    /// `register_ops` and `sqe_ops` and sets the SQE flags allowed and
    /// required: the array of `struct io_uring_restriction`, and its
    /// length.
    pub fn encode(
        register_ops: &[u8],
        sqe_ops: &[u8],
        sqe_flags_allowed: u8,
        sqe_flags_required: u8,
    ) -> (Vec<u8>, usize) {
        let entries: Vec<(u16, u8)> = register_ops
            .iter()
            .map(|op| (RESTRICTION_REGISTER_OP, *op))
            .chain(sqe_ops.iter().map(|op| (RESTRICTION_SQE_OP, *op)))
            .chain([
                (RESTRICTION_SQE_FLAGS_ALLOWED, sqe_flags_allowed),
                (RESTRICTION_SQE_FLAGS_REQUIRED, sqe_flags_required),
            ])
            .collect();
        let mut bytes = Vec::with_capacity(entries.len() * RESTRICTION_SIZE);
        for (opcode, operand) in &entries {
            let mut entry = [0u8; RESTRICTION_SIZE];
            entry[..2].copy_from_slice(&opcode.to_ne_bytes());
            entry[2] = *operand;
            bytes.extend_from_slice(&entry);
        }
        (bytes, entries.len())
    }
}

/// Provided buffers: buffer rings (`IORING_REGISTER_PBUF_RING`, liburing's
/// `io_uring_setup_buf_ring`) and the legacy groups of
/// `IORING_OP_PROVIDE_BUFFERS`.
pub mod pbuf {
    /// `IORING_REGISTER_PBUF_RING`: a `struct io_uring_buf_reg`, `nr_args` 1.
    pub const IORING_REGISTER_PBUF_RING: u32 = 22;
    /// `IORING_UNREGISTER_PBUF_RING`: a `struct io_uring_buf_reg` naming the bgid.
    pub const IORING_UNREGISTER_PBUF_RING: u32 = 23;
    /// `IORING_REGISTER_PBUF_STATUS` (6.8+): a `struct io_uring_buf_status`
    /// in which the kernel writes the group's head.
    pub const IORING_REGISTER_PBUF_STATUS: u32 = 26;
    /// `IOU_PBUF_RING_MMAP` (6.4+): the kernel allocates the ring's memory,
    /// which the program maps at [`mmap_offset`].
    pub const IOU_PBUF_RING_MMAP: u16 = 1;
    /// `IOU_PBUF_RING_INC` (6.12+): buffers consumed incrementally.
    pub const IOU_PBUF_RING_INC: u16 = 2;
    /// `IORING_OFF_PBUF_RING`: the mmap offset of a kernel-allocated ring...
    pub const IORING_OFF_PBUF_RING: u64 = 0x8000_0000;
    /// ...with the bgid shifted by `IORING_OFF_PBUF_SHIFT`.
    pub const IORING_OFF_PBUF_SHIFT: u32 = 16;
    /// `sizeof(struct io_uring_buf)`: one entry of a buffer ring.
    pub const ENTRY_SIZE: u64 = 16;
    /// Byte offset of `struct io_uring_buf_ring`'s `__u16 tail`, which
    /// overlays the first entry's `resv`.
    pub const TAIL_OFFSET: usize = 14;
    /// The most entries a buffer ring has: a power of two below 65536.
    pub const MAX_ENTRIES: u32 = 1 << 15;
    /// Byte offset of `__u16 buf_group` in `struct io_uring_sqe`.
    pub const SQE_BUF_GROUP_OFFSET: usize = 40;
    /// `IOSQE_BUFFER_SELECT`: the SQE takes a buffer from `buf_group`.
    pub const IOSQE_BUFFER_SELECT: u8 = 1 << 5;

    /// The mmap offset of the kernel-allocated ring of group `bgid`.
    pub fn mmap_offset(bgid: u16) -> u64 {
        IORING_OFF_PBUF_RING | (u64::from(bgid) << IORING_OFF_PBUF_SHIFT)
    }

    /// `struct io_uring_buf_reg`.
    #[repr(C)]
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct BufReg {
        pub ring_addr: u64,
        pub ring_entries: u32,
        pub bgid: u16,
        pub flags: u16,
        pub resv: [u64; 3],
    }

    /// `struct io_uring_buf_status`.
    #[repr(C)]
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct BufStatus {
        pub buf_group: u32,
        pub head: u32,
        pub resv: [u32; 8],
    }
}

/// `kcmp(2)`: whether two processes' fds refer to one open file (how the
/// tests check, from outside, which processes of a tree share a ring).
pub mod kcmp {
    /// `KCMP_FILE`: compare the `struct file` behind two fds.
    pub const KCMP_FILE: i32 = 0;
}

/// Per-ring settings registered with `io_uring_register` beyond the tables
/// (io_uring/register.c, filetable.c, napi.c, rsrc.c): the file
/// allocation range, io-wq worker limits, NAPI busy polling, slot tags
/// and the registered wait region.
pub mod settings {
    /// `IORING_REGISTER_FILES2` (5.13): a `struct io_uring_rsrc_register`.
    pub const IORING_REGISTER_FILES2: u32 = 13;
    /// `IORING_REGISTER_BUFFERS2` (5.13): a `struct io_uring_rsrc_register`.
    pub const IORING_REGISTER_BUFFERS2: u32 = 15;
    /// `IORING_REGISTER_IOWQ_AFF` (5.14): a CPU mask, per task (or the SQ
    /// thread's), not per ring.
    pub const IORING_REGISTER_IOWQ_AFF: u32 = 17;
    /// `IORING_REGISTER_IOWQ_MAX_WORKERS` (5.15): `u32[2]`, bounded then
    /// unbounded; 0 keeps a class as it is; the old values come back.
    pub const IORING_REGISTER_IOWQ_MAX_WORKERS: u32 = 19;
    /// `IORING_REGISTER_FILE_ALLOC_RANGE` (6.0): a
    /// `struct io_uring_file_index_range`.
    pub const IORING_REGISTER_FILE_ALLOC_RANGE: u32 = 25;
    /// `IORING_REGISTER_NAPI` (6.9): a `struct io_uring_napi`; the old
    /// settings come back in it.
    pub const IORING_REGISTER_NAPI: u32 = 27;
    /// `IORING_REGISTER_MEM_REGION` (6.13).
    pub const IORING_REGISTER_MEM_REGION: u32 = 34;
    /// `IORING_MEM_REGION_REG_WAIT_ARG`: the region holds wait arguments.
    pub const IORING_MEM_REGION_REG_WAIT_ARG: u32 = 1;
    /// `IORING_MEM_REGION_TYPE_USER`: the region is the program's memory
    /// at `user_addr`.
    pub const IORING_MEM_REGION_TYPE_USER: u32 = 1;
    /// `sizeof(struct io_uring_region_desc)`.
    pub const REGION_DESC_SIZE: usize = 64;
    /// `sizeof(struct io_uring_mem_region_reg)`.
    pub const MEM_REGION_REG_SIZE: usize = 32;

    /// `struct io_uring_region_desc { u64 user_addr; u64 size; u32 flags;
    /// u32 id; u64 mmap_offset; u64 resv[4]; }` for the program's memory.
    pub fn user_region_desc(user_addr: u64, size: u64) -> [u8; REGION_DESC_SIZE] {
        let mut bytes = [0u8; REGION_DESC_SIZE];
        bytes[0..8].copy_from_slice(&user_addr.to_ne_bytes());
        bytes[8..16].copy_from_slice(&size.to_ne_bytes());
        bytes[16..20].copy_from_slice(&IORING_MEM_REGION_TYPE_USER.to_ne_bytes());
        bytes
    }

    /// `struct io_uring_mem_region_reg { u64 region_uptr; u64 flags; u64
    /// resv[2]; }`.
    pub fn mem_region_reg(region_uptr: u64, flags: u64) -> [u8; MEM_REGION_REG_SIZE] {
        let mut bytes = [0u8; MEM_REGION_REG_SIZE];
        bytes[0..8].copy_from_slice(&region_uptr.to_ne_bytes());
        bytes[8..16].copy_from_slice(&flags.to_ne_bytes());
        bytes
    }
    /// `IORING_RSRC_REGISTER_SPARSE`: `nr` empty slots, no data.
    pub const IORING_RSRC_REGISTER_SPARSE: u32 = 1;
    /// `IO_URING_NAPI_REGISTER_OP` (6.13; 0, so a 6.9-6.12 kernel, which
    /// wants the byte zero, takes it too).
    pub const NAPI_REGISTER_OP: u8 = 0;
    /// `IO_URING_NAPI_TRACKING_DYNAMIC`: the default, and the only mode
    /// before 6.13.
    pub const NAPI_TRACKING_DYNAMIC: u8 = 0;
    /// `IO_URING_NAPI_TRACKING_STATIC` (6.13).
    pub const NAPI_TRACKING_STATIC: u8 = 1;
    /// `IO_URING_NAPI_TRACKING_INACTIVE` (6.13): NAPI not registered.
    pub const NAPI_TRACKING_INACTIVE: u8 = 255;

    /// `struct io_uring_file_index_range { u32 off; u32 len; u64 resv; }`.
    pub fn file_index_range(start: u32, len: u32) -> [u8; 16] {
        let mut bytes = [0u8; 16];
        bytes[0..4].copy_from_slice(&start.to_ne_bytes());
        bytes[4..8].copy_from_slice(&len.to_ne_bytes());
        bytes
    }

    /// The `u32[2]` of `IORING_REGISTER_IOWQ_MAX_WORKERS`.
    pub fn iowq_max_workers(bounded: u32, unbounded: u32) -> [u8; 8] {
        let mut bytes = [0u8; 8];
        bytes[0..4].copy_from_slice(&bounded.to_ne_bytes());
        bytes[4..8].copy_from_slice(&unbounded.to_ne_bytes());
        bytes
    }

    /// Reads back the `u32[2]` the kernel wrote into
    /// [`iowq_max_workers`]'s bytes.
    pub fn iowq_max_workers_of(bytes: &[u8; 8]) -> (u32, u32) {
        let word = |at: usize| {
            u32::from_ne_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        (word(0), word(4))
    }

    /// `struct io_uring_napi { u32 busy_poll_to; u8 prefer_busy_poll;
    /// u8 opcode; u8 pad[2]; u32 op_param; u32 resv; }` (6.13; on 6.9-6.12
    /// opcode and op_param are padding that must be 0: dynamic tracking).
    pub fn napi(busy_poll_us: u32, prefer_busy_poll: bool, tracking: u8) -> [u8; 16] {
        let mut bytes = [0u8; 16];
        bytes[0..4].copy_from_slice(&busy_poll_us.to_ne_bytes());
        bytes[4] = u8::from(prefer_busy_poll);
        bytes[5] = NAPI_REGISTER_OP;
        bytes[8..12].copy_from_slice(&u32::from(tracking).to_ne_bytes());
        bytes
    }

    /// `IO_URING_NAPI_STATIC_ADD_ID` (6.13): the `opcode` that adds the
    /// NAPI id in `op_param` to a ring with static tracking. The kernel
    /// refuses ids below `MIN_NAPI_ID` (`NR_CPUS + 1`) and ids it lists
    /// already; it does not ask whether a device has the id.
    pub const NAPI_STATIC_ADD_ID: u8 = 1;

    /// The `struct io_uring_napi` that adds NAPI id `id`
    /// ([`NAPI_STATIC_ADD_ID`]).
    pub fn napi_static_add(id: u32) -> [u8; 16] {
        let mut bytes = [0u8; 16];
        bytes[5] = NAPI_STATIC_ADD_ID;
        bytes[8..12].copy_from_slice(&id.to_ne_bytes());
        bytes
    }

    /// `sizeof(struct io_uring_rsrc_register)`: `u32 nr; u32 flags; u64
    /// resv2; u64 data; u64 tags;`.
    pub const RSRC_REGISTER_SIZE: usize = 32;

    /// `struct io_uring_rsrc_register` pointing at `data` and `tags`.
    pub fn rsrc_register(nr: u32, data: u64, tags: u64) -> [u8; RSRC_REGISTER_SIZE] {
        let mut bytes = [0u8; RSRC_REGISTER_SIZE];
        bytes[0..4].copy_from_slice(&nr.to_ne_bytes());
        bytes[16..24].copy_from_slice(&data.to_ne_bytes());
        bytes[24..32].copy_from_slice(&tags.to_ne_bytes());
        bytes
    }
}

/// Registered ring fds (`IORING_REGISTER_RING_FDS`, 5.18): a thread
/// registers a ring in a slot of its own (`task->io_uring->
/// registered_rings`), which holds a reference to the ring's file, and
/// then names the ring by the slot's offset with
/// `IORING_ENTER_REGISTERED_RING` instead of an fd. The slot count and the
/// unregistering opcode are in [`detach`], which clears them.
pub mod ring_fd {
    pub use super::detach::{
        IORING_UNREGISTER_RING_FDS, REGISTERED_RING_FD_SLOTS, RSRC_UPDATE_SIZE,
    };

    /// `IORING_REGISTER_RING_FDS` (`io_uring_register` opcode 20): for each
    /// `struct io_uring_rsrc_update` `{offset, resv, data = fd}`, registers
    /// ring fd `data` in the calling thread at `offset` (`-1`: the first
    /// free slot, written back); the kernel answers how many it registered.
    pub const IORING_REGISTER_RING_FDS: u32 = 20;
    /// `IORING_ENTER_REGISTERED_RING` (`io_uring_enter` flag): `fd` is a
    /// registered ring fd's offset.
    pub const IORING_ENTER_REGISTERED_RING: u32 = 1 << 4;
    /// `IORING_REGISTER_USE_REGISTERED_RING` (opcode flag, 6.3): the
    /// `io_uring_register` fd is the offset of a registered ring fd.
    pub const IORING_REGISTER_USE_REGISTERED_RING: u32 = 1 << 31;

    /// The `struct io_uring_rsrc_update` array for `(offset, fd)` pairs
    /// (unregistering, `fd` must be 0: the kernel answers `EINVAL` to any
    /// other `data`).
    pub fn updates(slots: &[(u32, i32)]) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(slots.len() * RSRC_UPDATE_SIZE);
        for &(offset, fd) in slots {
            bytes.extend_from_slice(&offset.to_ne_bytes());
            bytes.extend_from_slice(&0u32.to_ne_bytes());
            bytes.extend_from_slice(&i64::from(fd).to_ne_bytes());
        }
        bytes
    }
}

/// The legacy provided-buffer groups of `IORING_OP_PROVIDE_BUFFERS`
/// (every kernel since 5.7): lists of `struct io_buffer` the kernel keeps
/// per bgid, taken from the head, provided at the tail.
pub mod legacy_pbuf {
    /// `IORING_OP_PROVIDE_BUFFERS`: `fd` = buffer count, `addr` = the
    /// first buffer, `len` = each buffer's length, `off` = the first
    /// bid, `buf_group` = the bgid; buffer i is at `addr + i * len` with
    /// bid `off + i`.
    pub const IORING_OP_PROVIDE_BUFFERS: u8 = 31;
    /// The most buffers one `IORING_OP_PROVIDE_BUFFERS` provides (`fd`
    /// above `USHRT_MAX` is `-E2BIG`).
    pub const MAX_BUFFERS_PER_SQE: u32 = u16::MAX as u32;
    /// How many distinct bids a group can hold (bids are `__u16`): a
    /// list longer than this repeats a bid.
    pub const MAX_BIDS_PER_BGID: u32 = 1 << 16;
    /// 6.1 refuses `off + fd >= USHRT_MAX` (`-EINVAL`); later kernels
    /// `off + fd > MAX_BIDS_PER_BGID`. A run whose last bid is below
    /// this end is accepted by both.
    pub const BID_END_EVERY_KERNEL: u32 = u16::MAX as u32 - 1;
}

/// io-wq CPU affinity (`IORING_REGISTER_IOWQ_AFF`, io_uring/register.c):
/// the argument is a `cpu_set_t`-style bitmap, CPU `n` at bit `n % 64` of
/// native-endian word `n / 64`, and `nr_args` its length in bytes (the
/// kernel reads at most its own `cpumask_size()` of it).
/// `IORING_UNREGISTER_IOWQ_AFF` (rustix's `UnregisterIowqAff`) goes back to
/// the kernel's default (6.1: each NUMA node's CPUs; 6.3+: the thread's
/// cpuset).
pub mod iowq_affinity {
    /// `IOSQE_ASYNC`: the request goes to the submitting thread's io-wq
    /// at once, which starts a worker (`iou-wrk-TID`) on the io-wq's CPUs.
    pub const IOSQE_ASYNC: u8 = 1 << 4;
    /// `IORING_OP_NOP`.
    pub const OP_NOP: u8 = 0;

    /// The bitmap of `cpus`, whole 64-bit words (at least one).
    pub fn mask_bytes(cpus: &[u32]) -> Vec<u8> {
        let words = cpus
            .iter()
            .map(|&cpu| cpu as usize / 64 + 1)
            .max()
            .unwrap_or(1);
        let mut mask = vec![0u64; words];
        for &cpu in cpus {
            if let Some(word) = mask.get_mut(cpu as usize / 64) {
                *word |= 1 << (cpu % 64);
            }
        }
        mask.iter().flat_map(|word| word.to_ne_bytes()).collect()
    }

    /// The CPUs set in a bitmap of 64-bit words, ascending.
    pub fn cpus_of_words(words: &[u64]) -> Vec<u32> {
        let mut cpus = Vec::new();
        for (index, word) in words.iter().enumerate() {
            for bit in 0..64u32 {
                if word & (1 << bit) != 0 {
                    cpus.push(index as u32 * 64 + bit);
                }
            }
        }
        cpus
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn masks_and_cpu_lists_round_trip() {
            assert_eq!(mask_bytes(&[]), vec![0u8; 8]);
            assert_eq!(mask_bytes(&[0, 3]), 9u64.to_ne_bytes().to_vec());
            let bytes = mask_bytes(&[1, 64, 130]);
            assert_eq!(bytes.len(), 24);
            let words: Vec<u64> = bytes
                .chunks_exact(8)
                .map(|chunk| u64::from_ne_bytes(chunk.try_into().unwrap_or([0; 8])))
                .collect();
            assert_eq!(cpus_of_words(&words), vec![1, 64, 130]);
        }
    }
}
