/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * The byte stream ringplan's BPF iterator programs write and
 * crates/ringplan-dump/src/bpf/records.rs parses.
 *
 * Every record starts with a struct rp_header; `size` is the whole record's
 * length in bytes, header included, which frames the stream (an fd record
 * is followed by its path). Fields are in the host's byte order (BPF runs
 * on the host) and laid out without implicit padding: the _Static_asserts
 * below pin each size.
 *
 * This header is the only definition of the layout. The Rust side does not
 * repeat it: struct rp_shared_types (at the end) holds every struct and
 * enum userspace reads, ringplan.bpf.c has a variable of it, and the
 * libbpf-rs skeleton generator emits them all from the object's BTF into
 * the skeleton's `types` module, whose sizes, fields and constants
 * records.rs uses. Constants are enums, not #defines, because only enums
 * reach BTF.
 */
#ifndef RINGPLAN_RECORDS_H
#define RINGPLAN_RECORDS_H

enum rp_record_kind {
	/* Pass A, one per fd of the target: struct rp_fd_record, then
	 * path_len bytes of d_path text (no NUL) when path_len > 0. */
	RP_RECORD_FD = 1,
	/* Pass B, the answer to a ring request: the ring's header. */
	RP_RECORD_RING = 2,
	/* Pass A, after the fd record of every eventfd fd. */
	RP_RECORD_EVENTFD = 3,
	/* Pass B, first for every chunk request answered. */
	RP_RECORD_CHUNK = 4,
	/* Pass B, one per occupied registered-file slot in a chunk. */
	RP_RECORD_FILE_SLOT = 5,
	/* Pass B, one per occupied registered-buffer slot in a chunk. */
	RP_RECORD_BUFFER_SLOT = 6,
	/* Pass B, the answer to a probe request: the file's f_op. */
	RP_RECORD_PROBE = 7,
	/* Pass B, after a ring record: one per CQE of the ring's overflow
	 * list, in list order (overflow_listed of them). */
	RP_RECORD_OVERFLOW_CQE = 8,
	/* Pass B (ringplan_walk_fds), the answer to a pending-requests
	 * request: one per request the kernel keeps waiting on its own
	 * (poll-armed in the cancel hash tables, timeouts), then one struct
	 * rp_pending_list_record (RP_RECORD_PENDING_LIST). */
	RP_RECORD_PENDING_REQUEST = 9,
	/* Pass B, one per personality in a personalities chunk. */
	RP_RECORD_PERSONALITY = 10,
	/* Pass B, one per provided-buffer group in a buffer-groups chunk. */
	RP_RECORD_PBUF_RING = 11,
	/* Pass T (the target's threads), one per thread: one
	 * rp_ring_fd_record per occupied slot of its registered ring fds,
	 * then its struct rp_thread_record. */
	RP_RECORD_THREAD = 12,
	RP_RECORD_RING_FD = 13,
	/* Pass B (ringplan_walk_fds), the answer to a walk-counts request:
	 * struct rp_walk_counts_record. */
	RP_RECORD_WALK_COUNTS = 14,
	/* Pass B (ringplan_walk_fds), the answer to a legacy-buffers
	 * request: one struct rp_legacy_buffer_record per buffer of the
	 * asked range of the group's list, in list order (the first range's
	 * answer also one struct rp_legacy_checkpoint_record per later
	 * range), then one struct rp_legacy_list_record. */
	RP_RECORD_LEGACY_BUFFER = 15,
	RP_RECORD_LEGACY_LIST = 16,
	RP_RECORD_LEGACY_CHECKPOINT = 17,
	RP_RECORD_PENDING_LIST = 18,
	/* Pass B (ringplan_walk_fds), the answer to a NAPI-ids request: one
	 * struct rp_napi_id_record per entry of ctx->napi_list, in list
	 * order, then one struct rp_napi_list_record. */
	RP_RECORD_NAPI_ID = 19,
	RP_RECORD_NAPI_LIST = 20,
};

/* What a struct file is, as told by its f_op (pass A; pass B reports f_op
 * itself). */
enum rp_file_role {
	RP_ROLE_PLAIN = 0,
	RP_ROLE_RING = 1,
	RP_ROLE_EVENTFD = 2,
};

/* Which io_ring_ctx layout the program found (CO-RE field existence). */
enum rp_layout {
	/* No layout the program knows: the dump must fail. */
	RP_LAYOUT_UNKNOWN = 0,
	/* 6.18 (and whichever kernels since 6.1 share it; only 6.18 is
	 * verified): ctx->file_table.data / ctx->buf_table are io_rsrc_data
	 * {nr, nodes}; a node holds file_ptr or buf. */
	RP_LAYOUT_RSRC_NODES = 1,
	/* 6.1 and 6.12: ctx->file_table.files (io_fixed_file[]), nr_user_files,
	 * user_bufs (io_mapped_ubuf *[]), nr_user_bufs. */
	RP_LAYOUT_FIXED_FILES = 2,
};

/* Which table a chunk request reads. */
enum rp_table {
	RP_TABLE_FILES = 1,
	RP_TABLE_BUFFERS = 2,
	/* The personalities xarray, by ordinal (the n-th personality in id
	 * order), not by id: ids are sparse. */
	RP_TABLE_PERSONALITIES = 3,
	/* The provided-buffer groups, by ordinal (6.1: the low-bgid array's
	 * groups first, then the xarray's; both in bgid order). */
	RP_TABLE_PBUF_RINGS = 4,
};

/* What a pass-B request asks for, in struct rp_chunk_request. */
enum rp_request_kind {
	/* A range of a registered table: struct rp_chunk_record + slots. */
	RP_REQUEST_CHUNK = 0,
	/* The ring's header: struct rp_ring_record. */
	RP_REQUEST_RING = 1,
	/* The file's f_op: struct rp_probe_record. */
	RP_REQUEST_PROBE = 2,
	/* How many personalities and provided-buffer groups the ring has
	 * (ringplan_walk_fds only): struct rp_walk_counts_record. */
	RP_REQUEST_WALK_COUNTS = 3,
	/* The buffers of legacy group `bgid` (IORING_OP_PROVIDE_BUFFERS) at
	 * list positions [start, start + count) (ringplan_walk_fds only):
	 * start 0 walks the whole list from its head; a later start walks
	 * only its range, from the node a checkpoint named. */
	RP_REQUEST_LEGACY_BUFFERS = 4,
	/* The requests the ring's kernel keeps waiting on their own
	 * (ringplan_walk_fds only; asked only of a ring with requests in
	 * flight): rp_pending_request_records, then an
	 * rp_pending_list_record. */
	RP_REQUEST_PENDING = 5,
	/* The NAPI ids the ring lists (ringplan_walk_fds only; asked only of
	 * a ring with static tracking that lists some): rp_napi_id_records,
	 * then an rp_napi_list_record. */
	RP_REQUEST_NAPI_IDS = 6,
};

/* The most NAPI ids a NAPI-ids answer lists; a longer list is not
 * captured. */
#define RP_MAX_NAPI_IDS 1000

/* Status of a chunk or ring request, in struct rp_chunk_record and
 * struct rp_ring_record. */
enum rp_chunk_status {
	RP_CHUNK_OK = 0,
	/* 1 was "not an io_uring file" (a test no longer made: expected_ctx
	 * is what identifies the ring). */
	/* The fd's file->private_data is not the io_ring_ctx the request named
	 * (the fd the dumper copied is no longer that ring's). */
	RP_CHUNK_OTHER_RING = 2,
	/* The program does not know this kernel's io_ring_ctx layout. */
	RP_CHUNK_UNKNOWN_LAYOUT = 3,
	/* The request went to the program that does not answer it: the
	 * personalities and buffer-group tables are ringplan_walk_fds's, the
	 * others ringplan_chunk_fds's. */
	RP_CHUNK_OTHER_PROGRAM = 4,
};

/* Which parts of a ring's continuity state an rp_ring_record holds (bits
 * of state_known): a kernel without a field leaves its part unknown. */
enum rp_state_known {
	/* The ten positions: ctx->rings was set, its fields and the cached
	 * head and tail exist on this kernel. */
	RP_STATE_POSITIONS = 1,
	/* owner_tid: io_ring_ctx.submitter_task exists on this kernel (0 in
	 * owner_tid then means no task is bound). */
	RP_STATE_OWNER = 2,
	/* The overflow list was walked to its end within RP_MAX_OVERFLOW_CQES
	 * entries: the overflow_listed records that follow are all of it. */
	RP_STATE_OVERFLOW = 4,
	/* 6.16+: nr_req_allocated is the ctx's allocated requests, including
	 * its free cache (submit_state.free_list), which was walked to its end
	 * within RP_MAX_FREE_CACHED entries: free_cached is its length. */
	RP_STATE_ALLOCATED = 8,
	/* Before 6.16 (6.1, 6.12): cq_extra and drain_disabled were read, for
	 * the kernel's own drain arithmetic. */
	RP_STATE_DRAIN_SEQUENCE = 16,
	/* The cancel hash tables and timeout lists were walked to their ends
	 * within RP_MAX_PENDING_REQUESTS: the listed records before an
	 * rp_pending_list_record are all of them. */
	RP_STATE_PENDING = 32,
	/* The personalities are counted: personality_count is all of them
	 * (0 when the xarray is empty, in a ring record; else in a walk-counts
	 * record, the xarray walked to its end within RP_MAX_XA_STEPS), and
	 * personality_next was read. */
	RP_STATE_PERSONALITIES = 64,
	/* ctx->restrictions was read (restriction_* fields). */
	RP_STATE_RESTRICTIONS = 128,
	/* The provided-buffer groups are counted: pbuf_count is all of them
	 * (as RP_STATE_PERSONALITIES). */
	RP_STATE_PBUF_RINGS = 256,
	/* The registered settings were read (file_alloc_*, iowq_*,
	 * settings bits; NAPI and the wait region per their own bits). */
	RP_STATE_SETTINGS = 512,
	/* Ring records only: the personalities xarray is not empty, so they
	 * are counted by a walk-counts request to ringplan_walk_fds (a second
	 * program, loaded only for such rings: its xarray walks cost the
	 * verifier several times the rest of pass B); personality_next was
	 * read. */
	RP_STATE_PERSONALITIES_TO_WALK = 1024,
	/* Ring records only: the ring may have provided-buffer groups (the
	 * xarray is not empty, or 6.1's low-bgid array was allocated): they
	 * are counted by ringplan_walk_fds too. */
	RP_STATE_PBUF_RINGS_TO_WALK = 2048,
};

/* rp_ring_record.settings bits. */
enum rp_settings {
	/* ctx->iowq_limits_set: IORING_REGISTER_IOWQ_MAX_WORKERS was called. */
	RP_SETTINGS_IOWQ_LIMITS_SET = 1,
	/* The kernel has NAPI busy polling (6.9+, CONFIG_NET_RX_BUSY_POLL). */
	RP_SETTINGS_NAPI_KNOWN = 2,
	/* NAPI is registered (6.9-6.12: napi_enabled; 6.13+: a tracking mode
	 * other than inactive, in napi_track_mode). */
	RP_SETTINGS_NAPI_ENABLED = 4,
	RP_SETTINGS_NAPI_PREFER_BUSY_POLL = 8,
	/* napi_track_mode was read (6.13+). */
	RP_SETTINGS_NAPI_TRACK_MODE = 16,
	/* ctx->napi_list is not empty (NAPI ids tracked now). */
	RP_SETTINGS_NAPI_IDS = 32,
	/* The kernel has registered wait regions (6.13+): wait_region_size
	 * was read (0: none registered). */
	RP_SETTINGS_WAIT_REGION_KNOWN = 64,
	/* Slot tags can be read on this kernel (6.1-6.12: rsrc_data->tags;
	 * 6.13+: io_rsrc_node->tag). */
	RP_SETTINGS_TAGS_KNOWN = 128,
	/* The io-wq CPU mask of the ring's thread was read: iowq_cpus, and
	 * iowq_tid (0: no thread, or the thread has no io-wq yet). */
	RP_SETTINGS_IOWQ_AFFINITY_KNOWN = 256,
	/* iowq_tid is the ring's SQ thread (SQPOLL), not a submitter. */
	RP_SETTINGS_IOWQ_SQ_THREAD = 512,
	/* The wait region is the program's memory (its param_region has
	 * IO_REGION_F_USER_PROVIDED), not the kernel's. */
	RP_SETTINGS_WAIT_REGION_USER = 1024,
};

/* What a provided-buffer group is (rp_pbuf_ring_record.kind bits). */
enum rp_pbuf_kind {
	/* A buffer ring (IORING_REGISTER_PBUF_RING); without it, a legacy
	 * group of IORING_OP_PROVIDE_BUFFERS. */
	RP_PBUF_RING = 1,
	/* The kernel allocated the ring's memory (IOU_PBUF_RING_MMAP). */
	RP_PBUF_KERNEL_MEMORY = 2,
	/* Buffers consumed incrementally (IOU_PBUF_RING_INC, 6.12+). */
	RP_PBUF_INCREMENTAL = 4,
	/* tail was read from the ring's memory. */
	RP_PBUF_TAIL = 8,
};

/* Where a pending request was found. */
enum rp_pending_where {
	/* ctx->cancel_table (and 6.1's cancel_table_locked): poll-armed
	 * requests, IORING_OP_POLL_ADD and those waiting for readiness
	 * (a recv, an accept, a read on an empty pipe). */
	RP_PENDING_POLL = 1,
	/* ctx->timeout_list: IORING_OP_TIMEOUT. */
	RP_PENDING_TIMEOUT = 2,
	/* ctx->ltimeout_list: armed IORING_OP_LINK_TIMEOUT. */
	RP_PENDING_LINKED_TIMEOUT = 3,
};

/* Kernel uapi values the program needs. The C side cannot take them from
 * ringplan_kernel::abi, so records.rs tests that they equal it. */
enum rp_uapi {
	RP_IORING_SETUP_CQE32 = 1 << 11,
};

struct rp_header {
	__u32 kind;
	__u32 size;
};

struct rp_fd_record {
	struct rp_header header;
	__u64 file;           /* struct file address: the file's identity */
	__u64 f_op;           /* file->f_op */
	__u64 private_data;   /* io_ring_ctx or eventfd_ctx address by role */
	__s64 pos;            /* f_pos */
	__u64 inode_number;   /* f_inode->i_ino */
	__u32 fd;
	__u32 flags;          /* f_flags */
	__u32 mode;           /* f_inode->i_mode */
	__u32 role;           /* enum rp_file_role */
	__u32 cloexec;        /* 1 when set in the fdtable's close_on_exec */
	__s32 path_len;       /* bytes of path that follow; < 0: -errno of d_path */
};
_Static_assert(sizeof(struct rp_fd_record) == 72, "rp_fd_record");

struct rp_ring_record {
	struct rp_header header;
	__u64 ctx;            /* io_ring_ctx address: the ring's identity */
	__u64 sq_data;        /* ctx->sq_data (0 without SQPOLL) */
	__u64 eventfd_ctx;    /* ctx->io_ev_fd->cq_ev_fd (0: none registered) */
	__u64 eventfd_count;  /* that eventfd_ctx's count */
	__u64 inode_number;   /* the ring file's i_ino */
	__u32 fd;             /* the dumper's local fd */
	__u32 flags;          /* ctx->flags */
	__u32 sq_entries;
	__u32 cq_entries;
	__u32 sq_thread_idle; /* ctx->sq_thread_idle, jiffies */
	__s32 sq_cpu;         /* ctx->sq_data->sq_cpu (0 without sq_data) */
	__u32 eventfd_async;
	__u32 eventfd_flags;
	__u32 file_slots;     /* registered file table size */
	__u32 buffer_slots;   /* registered buffer table size */
	__u32 layout;         /* enum rp_layout */
	__u32 status;         /* enum rp_chunk_status; on error only ctx and fd are set */
	/* The continuity state (valid per state_known): what the program's
	 * view of the ring holds (ctx->rings) and the kernel's own positions. */
	__u32 sq_head;        /* rings->sq.head */
	__u32 sq_tail;        /* rings->sq.tail, written by the program */
	__u32 cached_sq_head; /* ctx->cached_sq_head */
	__u32 cq_head;        /* rings->cq.head, written by the program */
	__u32 cq_tail;        /* rings->cq.tail */
	__u32 cached_cq_tail; /* ctx->cached_cq_tail */
	__u32 sq_dropped;     /* rings->sq_dropped */
	__u32 cq_overflow;    /* rings->cq_overflow */
	__u32 sq_flags;       /* rings->sq_flags */
	__u32 cq_flags;       /* rings->cq_flags */
	__u32 owner_tid;      /* ctx->submitter_task->pid (initial pid namespace); 0: none */
	__u32 state_known;    /* enum rp_state_known bits */
	__u32 overflow_listed; /* rp_overflow_cqe_records that follow this record */
	__u32 page_struct_size; /* sizeof(struct page) on this kernel */
	/* The struct page of the first page of the ring's memory and of its
	 * SQE array (6.18: ring_region/sq_region.pages[0]; 6.5-6.12:
	 * ring_pages/sqe_pages[0]); 0 when unknown. For a NO_MMAP ring they are
	 * the program's pages, which userspace finds in /proc/PID/pagemap. */
	__u64 rings_page;
	__u64 sqes_page;
	/* Requests in flight (valid per state_known), see RP_STATE_ALLOCATED
	 * and RP_STATE_DRAIN_SEQUENCE. */
	__u32 nr_req_allocated; /* ctx->nr_req_allocated (6.16+) */
	__u32 free_cached;      /* entries of ctx->submit_state.free_list (6.16+) */
	__u32 cq_extra;         /* ctx->cq_extra (before 6.16) */
	__u32 drain_disabled;   /* ctx->drain_disabled (before 6.16) */
	/* Unused (0): the requests waiting on their own, once listed here,
	 * are ringplan_walk_fds's answer to RP_REQUEST_PENDING. */
	__u32 reserved_pending;
	/* Personalities and restrictions (valid per state_known). */
	__u32 personality_count; /* entries of ctx->personalities */
	__u32 personality_next;  /* ctx->pers_next */
	/* sqe_flags_allowed | sqe_flags_required << 8 | registered << 16 */
	__u32 restriction_flags;
	__u64 restriction_register_op; /* ctx->restrictions.register_op[0] */
	__u64 restriction_sqe_op;      /* ctx->restrictions.sqe_op[0] */
	__u32 pbuf_count;     /* provided-buffer groups (valid per state_known) */
	__u32 iowq_tid;       /* see iowq_cpus: that thread (task->pid); 0: none */
	/* Registered settings (valid per RP_STATE_SETTINGS). */
	__u32 file_alloc_start; /* ctx->file_alloc_start */
	__u32 file_alloc_end;   /* ctx->file_alloc_end */
	__u32 iowq_limits[2];   /* ctx->iowq_limits: bounded, unbounded */
	__u64 napi_busy_poll_dt; /* ctx->napi_busy_poll_dt, ns */
	__u32 settings;         /* enum rp_settings bits */
	__u32 napi_track_mode;  /* ctx->napi_track_mode (RP_SETTINGS_NAPI_TRACK_MODE) */
	__u64 wait_region_size; /* ctx->cq_wait_size (RP_SETTINGS_WAIT_REGION_KNOWN) */
	/* io-wq CPU affinity (RP_SETTINGS_IOWQ_AFFINITY_KNOWN): the cpu_mask
	 * (CPUs 0-255) of the io-wq this ring's work goes to: the SQ thread's
	 * with SQPOLL, else the SINGLE_ISSUER owner's, else that of the
	 * thread that last began using the ring (ctx->tctx_list's first). */
	__u64 iowq_cpus[4];
	/* The registered wait region's memory (with a wait_region_size): the
	 * struct page of its first page (ctx->param_region.pages[0]; 0: not
	 * read); RP_SETTINGS_WAIT_REGION_USER says whose memory it is. */
	__u64 wait_region_page;
};
/* The record is built on the stack of ringplan_chunk_fds, which is at the
 * verifier's 512 bytes: grow it only by taking space from elsewhere. */
_Static_assert(sizeof(struct rp_ring_record) == 304, "rp_ring_record");

struct rp_pending_request_record {
	struct rp_header header;
	__u64 ctx;            /* the ring's io_ring_ctx */
	__u64 user_data;      /* req->cqe.user_data */
	__u32 opcode;         /* req->opcode (IORING_OP_*) */
	__u32 where;          /* enum rp_pending_where */
	__u32 index;          /* its place among the ring's pending records, from 0 */
	__u32 reserved;
};
_Static_assert(sizeof(struct rp_pending_request_record) == 40, "rp_pending_request_record");

/* The end of a pending-requests answer (RP_REQUEST_PENDING), after its
 * rp_pending_request_records. */
struct rp_pending_list_record {
	struct rp_header header;
	__u64 ctx;            /* io_ring_ctx of the request */
	__u32 fd;             /* the dumper's local fd */
	__u32 status;         /* enum rp_chunk_status */
	__u32 state_known;    /* RP_STATE_PENDING: the records before are all of them */
	__u32 listed;         /* rp_pending_request_records before this one */
};
_Static_assert(sizeof(struct rp_pending_list_record) == 32, "rp_pending_list_record");

/* One NAPI id of a ring's napi_list (struct io_napi_entry's napi_id). */
struct rp_napi_id_record {
	struct rp_header header;
	__u64 ctx;            /* the ring's io_ring_ctx */
	__u32 napi_id;
	__u32 index;          /* its place in the list, from 0 */
};
_Static_assert(sizeof(struct rp_napi_id_record) == 24, "rp_napi_id_record");

/* The end of a NAPI-ids answer (RP_REQUEST_NAPI_IDS). */
struct rp_napi_list_record {
	struct rp_header header;
	__u64 ctx;            /* the ring's io_ring_ctx */
	__u32 fd;             /* the dumper's local fd */
	__u32 status;         /* enum rp_chunk_status */
	__u32 whole;          /* 1: the list was walked to its end */
	__u32 listed;         /* rp_napi_id_records before this one */
};
_Static_assert(sizeof(struct rp_napi_list_record) == 32, "rp_napi_list_record");

/* One CQE of a ring's overflow list (struct io_overflow_cqe's cqe). */
struct rp_overflow_cqe_record {
	struct rp_header header;
	__u64 ctx;            /* the ring's io_ring_ctx */
	__u64 user_data;
	__u64 extra[2];       /* big_cqe, with IORING_SETUP_CQE32; else 0 */
	__s32 res;
	__u32 flags;
	__u32 index;          /* its place in the list, from 0 */
	__u32 reserved;
};
_Static_assert(sizeof(struct rp_overflow_cqe_record) == 56, "rp_overflow_cqe_record");

struct rp_eventfd_record {
	struct rp_header header;
	__u64 ctx;            /* eventfd_ctx address */
	__u64 count;
	__u32 flags;
	__u32 fd;
};
_Static_assert(sizeof(struct rp_eventfd_record) == 32, "rp_eventfd_record");

/* One personality: its id and the credentials (struct cred) it holds,
 * ids as the kernel keeps them (the initial user namespace's). */
struct rp_personality_record {
	struct rp_header header;
	__u64 cap_inheritable;
	__u64 cap_permitted;
	__u64 cap_effective;
	__u64 cap_bounding;   /* cred->cap_bset */
	__u64 cap_ambient;
	__u32 index;          /* its ordinal among the ring's personalities */
	__u32 id;             /* its xarray index: the id SQEs name */
	__u32 uid;
	__u32 euid;
	__u32 suid;
	__u32 fsuid;
	__u32 gid;
	__u32 egid;
	__u32 sgid;
	__u32 fsgid;
	__s32 ngroups;        /* group_info->ngroups; the first RP_MAX_GROUPS follow */
	__u32 groups[32];     /* RP_MAX_GROUPS */
	__u32 reserved;
};
_Static_assert(sizeof(struct rp_personality_record) == 224, "rp_personality_record");

/* One provided-buffer group: what the kernel holds of it. A buffer ring's
 * entries (addresses, lengths, bids) are in its memory, which is the
 * program's: not read here. */
struct rp_pbuf_ring_record {
	struct rp_header header;
	__u64 first_page;     /* struct page * of the ring memory's first page (0: none) */
	__u32 index;          /* its ordinal among the ring's groups */
	__u32 bgid;
	__u32 entries;        /* nr_entries */
	__u32 head;           /* the kernel's head (buffers consumed) */
	__u32 mask;
	__u32 kind;           /* enum rp_pbuf_kind bits */
	__u32 nr_pages;       /* pages of the ring's memory */
	__u32 tail;           /* the program's tail, read from the ring memory (RP_PBUF_TAIL) */
};
_Static_assert(sizeof(struct rp_pbuf_ring_record) == 48, "rp_pbuf_ring_record");

/* One thread of the target (pass T): whether its registered ring fds
 * were read, and how many occupied slots follow. */
struct rp_thread_record {
	struct rp_header header;
	__u32 tid;            /* task->pid, as the initial pid namespace numbers it */
	__u32 status;         /* enum rp_thread_status */
	__u32 slots;          /* the kernel's slot count (registered_rings' length) */
	__u32 occupied;       /* rp_ring_fd_records that follow */
};
_Static_assert(sizeof(struct rp_thread_record) == 24, "rp_thread_record");

/* One occupied registered ring-fd slot of a thread (pass T). */
struct rp_ring_fd_record {
	struct rp_header header;
	__u64 file;           /* the ring's struct file */
	__u64 f_op;           /* file->f_op (ring_fops for a ring) */
	__u64 ctx;            /* file->private_data: the io_ring_ctx */
	__u64 inode_number;   /* file->f_inode->i_ino */
	__u32 tid;
	__u32 offset;         /* the slot: the offset IORING_ENTER_REGISTERED_RING names */
};
_Static_assert(sizeof(struct rp_ring_fd_record) == 48, "rp_ring_fd_record");

/* Status of a thread record. */
enum rp_thread_status {
	/* The slots were read (none when the thread never used io_uring). */
	RP_THREAD_OK = 0,
	/* This kernel's io_uring_task has no registered_rings of the length
	 * the program reads: the thread's ring fds are unknown. */
	RP_THREAD_UNKNOWN_LAYOUT = 1,
	/* The slots could not be read (a probe read failed). */
	RP_THREAD_UNREADABLE = 2,
};

/* How many personalities and provided-buffer groups a ring has
 * (ringplan_walk_fds's answer to RP_REQUEST_WALK_COUNTS), for a ring whose
 * ring record said RP_STATE_*_TO_WALK. */
struct rp_walk_counts_record {
	struct rp_header header;
	__u64 ctx;            /* io_ring_ctx of the request */
	__u32 fd;             /* the dumper's local fd */
	__u32 status;         /* enum rp_chunk_status; on error only ctx and fd are set */
	__u32 state_known;    /* RP_STATE_PERSONALITIES and RP_STATE_PBUF_RINGS bits */
	__u32 personality_count; /* valid per RP_STATE_PERSONALITIES */
	__u32 pbuf_count;     /* valid per RP_STATE_PBUF_RINGS */
	__u32 reserved;
};
_Static_assert(sizeof(struct rp_walk_counts_record) == 40, "rp_walk_counts_record");

/* Value of the chunk_requests map, keyed by the dumper's local fd (__u32). */
struct rp_chunk_request {
	__u64 expected_ctx;   /* the io_ring_ctx the local fd must refer to; 0: any
			       * (only the dumper's own probe files) */
	__u32 table;          /* enum rp_table (chunks) */
	__u32 start;          /* first slot (chunks) */
	__u32 count;          /* slots to read from start, clamped to the table (chunks) */
	__u32 kind;           /* enum rp_request_kind */
	/* 1: read the io_ring_ctx at expected_ctx itself, not the local fd's
	 * file (a ring no fd of the target holds, only a thread's registered
	 * ring-fd slot, which the dumper cannot copy: the local fd only
	 * carries the request). */
	__u32 by_pointer;
	__u32 bgid;           /* the group of a legacy-buffers request */
	/* A legacy-buffers request with start > 0, from the first range's
	 * checkpoint at start: the group's list head (&bl->buf_list), the
	 * node at position start, the node before it, and the list's hash
	 * over positions [0, start). */
	__u64 legacy_head;
	__u64 legacy_node;
	__u64 legacy_prev;
	__u64 legacy_fingerprint;
};
_Static_assert(sizeof(struct rp_chunk_request) == 64, "rp_chunk_request");

/* One buffer of a legacy group's list (struct io_buffer). */
struct rp_legacy_buffer_record {
	struct rp_header header;
	__u64 addr;
	__u32 len;
	__u32 bid;
	__u32 bgid;
	__u32 index;          /* its position in the list, from the head (taken first) */
};
_Static_assert(sizeof(struct rp_legacy_buffer_record) == 32, "rp_legacy_buffer_record");

/* How a legacy group's list walk ended (struct rp_legacy_list_record). */
enum rp_legacy_list_state {
	/* Back at the list's head within RP_MAX_LEGACY_BUFFERS buffers:
	 * length is the whole list's. */
	RP_LEGACY_LIST_WHOLE = 0,
	/* More than RP_MAX_LEGACY_BUFFERS buffers (a group holds at most that
	 * many distinct bids): not walked to its end. */
	RP_LEGACY_LIST_TOO_LONG = 1,
	/* A node could not be read: the list changed under the walk. */
	RP_LEGACY_LIST_BROKEN = 2,
	/* No group has this bgid now, or it is a buffer ring. */
	RP_LEGACY_LIST_NOT_LEGACY = 3,
	/* A later range: `count` buffers walked without reaching the head;
	 * `next` and `fingerprint` say where the walk stopped. */
	RP_LEGACY_LIST_PART = 4,
	/* A later range whose start no longer follows the node the first
	 * range's walk saw before it (its `prev`), or whose group's list
	 * head moved: the list changed between the answers. */
	RP_LEGACY_LIST_MOVED = 5,
};

/* A point of a legacy group's list where a later range starts, written by
 * the first range's walk (start 0, which walks the whole list) at every
 * position that is a multiple of RP_LEGACY_BUFFERS_PER_CHUNK: the later
 * range's request carries it back, and its answer must end where the next
 * checkpoint is (node and hash), or the list changed in between. */
struct rp_legacy_checkpoint_record {
	struct rp_header header;
	__u64 node;           /* the list node (&io_buffer->list) at `index` */
	__u64 prev;           /* the node at index - 1 */
	__u64 fingerprint;    /* the list's hash over positions [0, index) */
	__u32 bgid;
	__u32 index;
};
_Static_assert(sizeof(struct rp_legacy_checkpoint_record) == 40, "rp_legacy_checkpoint_record");

/* The end of a legacy-buffers answer, after its buffer records. */
struct rp_legacy_list_record {
	struct rp_header header;
	__u64 ctx;            /* io_ring_ctx of the request */
	/* The hash (FNV-1a over each node's address, addr, len and bid, in
	 * order, from the head) of the list up to where this walk stopped:
	 * the whole list's for RP_LEGACY_LIST_WHOLE, else the hash at `next`,
	 * which the next checkpoint must repeat. */
	__u64 fingerprint;
	__u64 head;           /* &bl->buf_list: the group's list head */
	__u64 next;           /* the node after the last one walked (head at the end) */
	__u32 fd;             /* the dumper's local fd */
	__u32 status;         /* enum rp_chunk_status */
	__u32 bgid;
	__u32 start;
	__u32 written;        /* rp_legacy_buffer_records before this one */
	/* The position the walk stopped at: for RP_LEGACY_LIST_WHOLE the
	 * whole list's length. */
	__u32 length;
	__u32 state;          /* enum rp_legacy_list_state */
	__u32 visited;        /* list nodes this answer's walk read */
};
_Static_assert(sizeof(struct rp_legacy_list_record) == 72, "rp_legacy_list_record");

struct rp_chunk_record {
	struct rp_header header;
	__u64 ctx;            /* io_ring_ctx of the local fd */
	__u32 fd;             /* the dumper's local fd */
	__u32 table;          /* enum rp_table */
	__u32 start;
	__u32 scanned;        /* slots examined: min(count, table_size - start) */
	__u32 table_size;     /* size of the table now */
	__u32 status;         /* enum rp_chunk_status */
	__u32 sq_thread_idle; /* ctx->sq_thread_idle (jiffies) */
	__u32 layout;         /* enum rp_layout */
};
_Static_assert(sizeof(struct rp_chunk_record) == 48, "rp_chunk_record");

struct rp_file_slot_record {
	struct rp_header header;
	__u64 file;           /* struct file address */
	__u64 f_op;           /* file->f_op: userspace tells rings and eventfds by it */
	__u64 private_data;
	__s64 pos;
	__u64 eventfd_count;  /* when f_op is eventfd_fops */
	__u32 index;
	__u32 flags;
	__u32 mode;
	__u32 eventfd_flags;  /* when f_op is eventfd_fops */
	__u64 tag;            /* the slot's tag (RP_SETTINGS_TAGS_KNOWN), 0: none */
};
_Static_assert(sizeof(struct rp_file_slot_record) == 72, "rp_file_slot_record");

struct rp_buffer_slot_record {
	struct rp_header header;
	__u64 addr;
	__u64 len;
	__u32 index;
	__u32 kernel_buffer;  /* 1: a kernel-owned (ublk) buffer, not user memory */
	__u64 tag;            /* the slot's tag (RP_SETTINGS_TAGS_KNOWN), 0: none */
};
_Static_assert(sizeof(struct rp_buffer_slot_record) == 40, "rp_buffer_slot_record");

struct rp_probe_record {
	struct rp_header header;
	__u64 f_op;           /* file->f_op of the local fd */
	__u32 fd;             /* the dumper's local fd */
	__u32 reserved;
};
_Static_assert(sizeof(struct rp_probe_record) == 24, "rp_probe_record");

/*
 * Sizing against the bpf_iter seq buffer (8 pages, 32 KiB on 4 KiB pages):
 * the kernel fills the buffer object by object while it holds less than
 * the read() size, and an object that overflows it is thrown away and shown
 * again by the next read. Userspace reads RP_READ_BUFFER_SIZE bytes at a
 * time and no object writes more than RP_MAX_OBJECT_BYTES, so the buffer
 * never overflows: RP_READ_BUFFER_SIZE + RP_MAX_OBJECT_BYTES <= 32 KiB.
 */
enum rp_limits {
	RP_READ_BUFFER_SIZE = 8192,
	RP_MAX_OBJECT_BYTES = 24576,
	/* The longest d_path text an fd record carries. */
	RP_PATH_MAX = 4096,
	/* A chunk's output: one chunk record and up to this many slot records. */
	RP_FILE_SLOTS_PER_CHUNK = 320,
	RP_BUFFER_SLOTS_PER_CHUNK = 600,
	/* Capacity of the chunk_requests map: requests in one pass-B round. */
	RP_MAX_CHUNK_REQUESTS = 1024,
	/* The longest overflow list a ring record carries; a longer one is
	 * reported as not walked (its state's overflow is unknown). */
	RP_MAX_OVERFLOW_CQES = 256,
	/* The most pending requests a ring record names; more are reported
	 * as not all listed. */
	RP_MAX_PENDING_REQUESTS = 128,
	/* The longest free request cache counted (6.16+). */
	RP_MAX_FREE_CACHED = 65536,
	/* The most cancel hash buckets walked (the kernel clamps to 2^8). */
	RP_MAX_HASH_BUCKETS = 256,
	/* A personalities chunk: one chunk record and up to this many. */
	RP_PERSONALITIES_PER_CHUNK = 100,
	/* Supplementary groups a personality record carries. */
	RP_MAX_GROUPS = 32,
	/* Steps of one walk of a personalities xarray (one per slot looked
	 * at): ids are at most 65535, so 3 levels of 64 slots; 2^18 covers
	 * every node of a full one. */
	RP_MAX_XA_STEPS = 1 << 18,
	/* Levels of xa_node followed (64^3 > 65535). */
	RP_MAX_XA_DEPTH = 4,
	/* A buffer-groups chunk: one chunk record and up to this many. */
	RP_PBUF_RINGS_PER_CHUNK = 500,
	/* 6.1's ctx->io_bl array: groups with bgid below this (BGID_ARRAY). */
	RP_BGID_ARRAY = 64,
	/* Registered ring-fd slots per thread (IO_RINGFD_REG_MAX). */
	RP_RING_FD_SLOTS = 16,
	/* A legacy-buffers answer: up to this many buffer records and its
	 * list record (the first range's also its checkpoints). */
	RP_LEGACY_BUFFERS_PER_CHUNK = 600,
	/* The longest legacy group list walked: a group holds at most 65536
	 * distinct bids, so a longer list repeats one. */
	RP_MAX_LEGACY_BUFFERS = 65536,
};
_Static_assert(sizeof(struct rp_ring_record) +
		       RP_MAX_OVERFLOW_CQES * sizeof(struct rp_overflow_cqe_record) <=
		       RP_MAX_OBJECT_BYTES,
	       "ring record and its overflow list fit one object");
_Static_assert(RP_MAX_PENDING_REQUESTS * sizeof(struct rp_pending_request_record) +
		       sizeof(struct rp_pending_list_record) <=
		       RP_MAX_OBJECT_BYTES,
	       "pending requests and their list record fit one object");
_Static_assert(RP_MAX_NAPI_IDS * sizeof(struct rp_napi_id_record) +
		       sizeof(struct rp_napi_list_record) <=
		       RP_MAX_OBJECT_BYTES,
	       "NAPI ids and their list record fit one object");
_Static_assert(sizeof(struct rp_chunk_record) +
		       RP_FILE_SLOTS_PER_CHUNK * sizeof(struct rp_file_slot_record) <=
		       RP_MAX_OBJECT_BYTES,
	       "file chunk fits one object");
_Static_assert(sizeof(struct rp_chunk_record) +
		       RP_BUFFER_SLOTS_PER_CHUNK * sizeof(struct rp_buffer_slot_record) <=
		       RP_MAX_OBJECT_BYTES,
	       "buffer chunk fits one object");
_Static_assert(sizeof(struct rp_chunk_record) +
		       RP_PERSONALITIES_PER_CHUNK * sizeof(struct rp_personality_record) <=
		       RP_MAX_OBJECT_BYTES,
	       "personalities chunk fits one object");
_Static_assert(sizeof(struct rp_chunk_record) +
		       RP_PBUF_RINGS_PER_CHUNK * sizeof(struct rp_pbuf_ring_record) <=
		       RP_MAX_OBJECT_BYTES,
	       "buffer-groups chunk fits one object");
_Static_assert(RP_LEGACY_BUFFERS_PER_CHUNK * sizeof(struct rp_legacy_buffer_record) +
		       RP_MAX_LEGACY_BUFFERS / RP_LEGACY_BUFFERS_PER_CHUNK *
			       sizeof(struct rp_legacy_checkpoint_record) +
		       sizeof(struct rp_legacy_list_record) <=
		       RP_MAX_OBJECT_BYTES,
	       "legacy-buffers answer with its checkpoints fits one object");
_Static_assert(sizeof(((struct rp_personality_record *)0)->groups) == RP_MAX_GROUPS * 4,
	       "personality groups");
_Static_assert(sizeof(struct rp_fd_record) + RP_PATH_MAX + sizeof(struct rp_eventfd_record) <=
		       RP_MAX_OBJECT_BYTES,
	       "fd visit fits one object");

/*
 * Every type userspace reads or writes, in one struct: ringplan.bpf.c
 * defines a variable of it (never used by the programs), which puts these
 * types in the object's BTF and so in the skeleton's generated Rust types.
 * A type or enum records.rs uses must be listed here.
 */
struct rp_shared_types {
	struct rp_header header;
	struct rp_fd_record fd_record;
	struct rp_ring_record ring_record;
	struct rp_eventfd_record eventfd_record;
	struct rp_chunk_request chunk_request;
	struct rp_chunk_record chunk_record;
	struct rp_file_slot_record file_slot_record;
	struct rp_buffer_slot_record buffer_slot_record;
	struct rp_probe_record probe_record;
	struct rp_overflow_cqe_record overflow_cqe_record;
	struct rp_pending_request_record pending_request_record;
	struct rp_personality_record personality_record;
	struct rp_pbuf_ring_record pbuf_ring_record;
	struct rp_thread_record thread_record;
	struct rp_ring_fd_record ring_fd_record;
	struct rp_walk_counts_record walk_counts_record;
	struct rp_legacy_buffer_record legacy_buffer_record;
	struct rp_legacy_list_record legacy_list_record;
	struct rp_legacy_checkpoint_record legacy_checkpoint_record;
	struct rp_pending_list_record pending_list_record;
	struct rp_napi_id_record napi_id_record;
	struct rp_napi_list_record napi_list_record;
	enum rp_legacy_list_state legacy_list_state;
	enum rp_thread_status thread_status;
	enum rp_record_kind record_kind;
	enum rp_file_role file_role;
	enum rp_layout layout;
	enum rp_table table;
	enum rp_request_kind request_kind;
	enum rp_chunk_status chunk_status;
	enum rp_state_known state_known;
	enum rp_pending_where pending_where;
	enum rp_pbuf_kind pbuf_kind;
	enum rp_settings settings;
	enum rp_uapi uapi;
	enum rp_limits limits;
};

#endif
