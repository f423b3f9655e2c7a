/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * The few kernel types ringplan's BPF programs read, instead of a generated
 * multi-megabyte vmlinux.h.
 *
 * Every kernel struct below except the iterator's context is marked
 * preserve_access_index: clang records each member
 * access as a CO-RE relocation, and libbpf rewrites it against the running
 * kernel's BTF at load time. So only the members we read are listed, in any
 * order, and their offsets here mean nothing. A member the running kernel
 * lacks either fails the load (if the access is reachable) or is skipped
 * behind bpf_core_field_exists().
 *
 * The layout written for is 6.18 (compared with 6.1 in the team's
 * kernel-6.1-vs-6.18 notes);
 * members that only 6.1 has are declared next to their 6.18 counterparts
 * (see io_ring_ctx below) and only read behind bpf_core_field_exists().
 */
#ifndef RINGPLAN_KERNEL_TYPES_H
#define RINGPLAN_KERNEL_TYPES_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef signed char __s8;
typedef short __s16;
typedef int __s32;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef _Bool bool;
#define true 1
#define false 0

/* The map types the program defines (values from uapi/linux/bpf.h). */
enum bpf_map_type { BPF_MAP_TYPE_HASH = 1, BPF_MAP_TYPE_PERCPU_ARRAY = 6 };

/* The iterator's context and its meta are ABI the kernel keeps stable (the
 * verifier checks context accesses by offset), so they are plain structs:
 * not relocating them saves two CO-RE candidate searches at load. */
struct seq_file;

struct bpf_iter_meta {
	struct seq_file *seq;
	__u64 session_id;
	__u64 seq_num;
};

struct task_struct;
struct file;

/* The context of an iter/task_file program. */
struct bpf_iter__task_file {
	struct bpf_iter_meta *meta;
	struct task_struct *task;
	__u32 fd;
	struct file *file;
};

/* The context of an iter/task program (one visit per thread). */
struct bpf_iter__task {
	struct bpf_iter_meta *meta;
	struct task_struct *task;
};

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct fdtable {
	unsigned long *close_on_exec;
};

struct files_struct {
	struct fdtable *fdt;
};

struct io_uring_task;

struct task_struct {
	struct files_struct *files;
	int pid;
	/* The thread's io_uring context (NULL until it first uses io_uring). */
	struct io_uring_task *io_uring;
};

/* Per thread: the rings it registered with IORING_REGISTER_RING_FDS, by
 * offset (IO_RINGFD_REG_MAX = 16 slots on 6.1 and 6.18). */
struct io_uring_task {
	struct file *registered_rings[16];
	/* The thread's io-wq (NULL until it first punts work or registers). */
	struct io_wq *io_wq;
};

struct inode {
	unsigned short i_mode;
	unsigned long i_ino;
};

struct vfsmount;
/* Only passed on (&file->f_path to bpf_d_path): never relocated. */
struct dentry;
/* Only its address is used (file->f_op): never relocated. */
struct file_operations;

struct path {
	struct vfsmount *mnt;
	struct dentry *dentry;
};

struct file {
	const struct file_operations *f_op;
	struct path f_path;
	struct inode *f_inode;
	unsigned int f_flags;
	long long f_pos;
	void *private_data;
};

struct eventfd_ctx {
	__u64 count;
	unsigned int flags;
};

/* eventfd_async is a plain unsigned int on 6.18 and a 1-bit bitfield on
 * 6.1: read it with BPF_CORE_READ_BITFIELD_PROBED, which handles both. */
struct io_ev_fd {
	struct eventfd_ctx *cq_ev_fd;
	unsigned int eventfd_async;
};

struct io_sq_data {
	int sq_cpu;
	/* The SQ thread (NULL while it is being set up or after it exited). */
	struct task_struct *thread;
};

/* io-wq CPU affinity (IORING_REGISTER_IOWQ_AFF, issue 15). cpumask_var_t
 * is a pointer with CONFIG_CPUMASK_OFFSTACK (Debian's 6.1 and 6.12), an
 * inline `struct cpumask[1]` without (this machine's 6.18): CO-RE matches
 * a field only to one of the same kind, so each flavour below exists on
 * exactly the kernels of its kind. 6.3+ keeps the mask in io_wq itself;
 * 6.1 in one io_wqe per NUMA node (wqes[node]), all set alike by the
 * registration. Only the first 256 CPUs are read. */
struct cpumask {
	unsigned long bits[4];
};

struct io_wq___mask_pointer {
	struct cpumask *cpu_mask;
};

struct io_wq___mask_inline {
	struct cpumask cpu_mask[1];
};

struct io_wqe;

struct io_wq___per_node {
	struct io_wqe *wqes[1];
};

struct io_wqe___mask_pointer {
	struct cpumask *cpu_mask;
};

struct io_wqe___mask_inline {
	struct cpumask cpu_mask[1];
};

struct io_wq;


/* 6.18 has len (and is_kbuf); 6.12 has len; 6.1 has ubuf_end instead. */
struct io_mapped_ubuf {
	__u64 ubuf;
	unsigned int len;
	bool is_kbuf;
	__u64 ubuf_end;
};

/* 6.18 layout (6.1 and 6.12 have another struct of this name, without
 * these members). tag: the slot's tag (IORING_REGISTER_FILES2/BUFFERS2),
 * 6.13+. */
struct io_rsrc_node {
	unsigned long file_ptr;
	struct io_mapped_ubuf *buf;
	__u64 tag;
};

/* 6.18: {nr, nodes}, inside ctx. 6.1 and 6.12: ctx->file_data and
 * ctx->buf_data point to one holding tags, the slots' tags in tables of
 * 512 (PAGE_SIZE / 8) u64s. */
struct io_rsrc_data {
	unsigned int nr;
	struct io_rsrc_node **nodes;
	__u64 **tags;
};

/* 6.18 has data; 6.1 has files, an array of struct io_fixed_file, which
 * is { unsigned long file_ptr; } (read as plain unsigned longs). */
struct io_file_table {
	struct io_rsrc_data data;
	unsigned long *files;
};

struct list_head {
	struct list_head *next;
	struct list_head *prev;
};

/* One thread's use of a ring: ctx->tctx_list links them, newest first. */
struct io_tctx_node {
	struct list_head ctx_node;
	struct task_struct *task;
};

/* The uapi CQE: its layout is ABI (user_data, res, flags, then big_cqe
 * with CQE32), so it is read as bytes, never through its fields. */
struct io_uring_cqe {
	__u64 user_data;
	__s32 res;
	__u32 flags;
};

/* A CQE that did not fit the CQ ring, on ctx->cq_overflow_list; only the
 * offsets of list and cqe are relocated. */
struct io_overflow_cqe {
	struct list_head list;
	struct io_uring_cqe cqe;
};

/* Only its size is relocated (bpf_core_type_size). */
struct page {
	unsigned long flags;
};

/* 6.13+: a ring's memory (kernel-allocated or the program's); flags has
 * IO_REGION_F_USER_PROVIDED when the program gave it. */
struct io_mapped_region {
	struct page **pages;
	void *ptr;
	unsigned int nr_pages;
	unsigned int flags;
};

/* The kernel's atomic_t, a struct around one int. */
typedef struct {
	int counter;
} atomic_t;

/* One ring's head and tail in struct io_rings. */
struct io_uring {
	__u32 head;
	__u32 tail;
};

/* The memory the program shares with the kernel: positions and flags (the
 * CQEs follow; the SQ array and SQEs lie elsewhere). Same names on 6.1 and
 * 6.18. */
struct io_rings {
	struct io_uring sq;
	struct io_uring cq;
	__u32 sq_dropped;
	atomic_t sq_flags;
	__u32 cq_flags;
	__u32 cq_overflow;
};

struct hlist_node {
	struct hlist_node *next;
};

struct hlist_head {
	struct hlist_node *first;
};

/* One bucket of a cancel hash table (6.1 has a spinlock before list):
 * its size is relocated too (bpf_core_type_size). */
struct io_hash_bucket {
	struct hlist_head list;
};

struct io_hash_table {
	struct io_hash_bucket *hbs;
	unsigned int hash_bits;
};

/* The completion a request will post. */
struct io_cqe {
	__u64 user_data;
};

/* A request: only the offsets of file (where its per-opcode data such as
 * struct io_timeout begins), hash_node and the fields read are relocated. */
struct io_kiocb {
	struct file *file;
	__u8 opcode;
	struct io_cqe cqe;
	struct hlist_node hash_node;
};

/* A timeout request's data, at the start of its io_kiocb; list links it
 * into ctx->timeout_list or ctx->ltimeout_list. */
struct io_timeout {
	struct list_head list;
};

struct io_wq_work_node {
	struct io_wq_work_node *next;
};

/* 6.16+: free_list is the ctx's cache of free requests. */
struct io_submit_state {
	struct io_wq_work_node free_list;
};

/* Members of both layouts side by side: buf_table is 6.18's, nr_user_files,
 * nr_user_bufs and user_bufs are 6.1. A member the running kernel lacks
 * makes bpf_core_field_exists() false, and the code reading it dead. (One
 * merged struct instead of ___v61 flavours: every distinct relocated type
 * costs libbpf a scan of all vmlinux BTF types at load, about 0.7 ms each.) */
/* Personalities: an xarray of struct cred pointers (io_uring/register.c).
 * Only the root pointer and the node's shift and slots are read; the rest
 * of struct xa_node is found by CO-RE. */
struct xarray {
	void *xa_head;
};

struct xa_node {
	unsigned char shift;
	void *slots[64];
};

typedef struct {
	unsigned int val;
} kuid_t;

typedef struct {
	unsigned int val;
} kgid_t;

/* 6.3+: struct { u64 val; }; 6.1: struct kernel_cap_struct { u32 cap[2]; }.
 * Both are 8 bytes, low word first, and are read whole (a field-offset
 * relocation of the cred member, never of a member inside it). */
typedef struct {
	__u64 val;
} kernel_cap_t;

struct group_info {
	int ngroups;
	kgid_t gid[0];
};

struct cred {
	kuid_t uid;
	kgid_t gid;
	kuid_t suid;
	kgid_t sgid;
	kuid_t euid;
	kgid_t egid;
	kuid_t fsuid;
	kgid_t fsgid;
	kernel_cap_t cap_inheritable;
	kernel_cap_t cap_permitted;
	kernel_cap_t cap_effective;
	kernel_cap_t cap_bset;
	kernel_cap_t cap_ambient;
	struct group_info *group_info;
};

/* The same on 6.1 and 6.18: one word per bitmap there (the dumper reads
 * the first word of each). */
struct io_restriction {
	unsigned long register_op[1];
	unsigned long sqe_op[1];
	__u8 sqe_flags_allowed;
	__u8 sqe_flags_required;
	bool registered;
};

/* A provided-buffer group (io_uring/kbuf.h), keyed by bgid in
 * ctx->io_bl_xa (and, on 6.1, ctx->io_bl[bgid] for bgid < 64). A buffer
 * ring (IORING_REGISTER_PBUF_RING) keeps its pages: buf_pages and
 * buf_nr_pages before 6.13, region after; a legacy group
 * (IORING_OP_PROVIDE_BUFFERS) keeps buf_list. flags: 6.12 IOBL_BUF_RING 1,
 * IOBL_MMAP 2, IOBL_INC 4; with region (6.13+) IOBL_BUF_RING 1, IOBL_INC 2;
 * 6.1 has no flags (a ring is told by buf_nr_pages). */
struct io_buffer_list {
	union {
		struct list_head buf_list;
		struct {
			struct page **buf_pages;
			void *buf_ring;
		};
	};
	__u16 bgid;
	__u16 buf_nr_pages;
	__u16 nr_entries;
	__u16 head;
	__u16 mask;
	__u16 flags;
	struct io_mapped_region region;
};

/* One buffer of a legacy group's buf_list (io_uring/kbuf.h; the same on
 * 6.1 and 6.18): list is its node in the group's list. */
struct io_buffer {
	struct list_head list;
	__u64 addr;
	__u32 len;
	__u16 bid;
	__u16 bgid;
};

/* 6.9+: one NAPI instance a ring busy-polls, on ctx->napi_list. */
struct io_napi_entry {
	unsigned int napi_id;
	struct list_head list;
};

struct io_ring_ctx {
	unsigned int flags;
	unsigned int sq_thread_idle;
	unsigned int sq_entries;
	unsigned int cq_entries;
	struct io_sq_data *sq_data;
	struct io_ev_fd *io_ev_fd;
	struct io_file_table file_table;
	struct io_rsrc_data buf_table;
	unsigned int nr_user_files;
	unsigned int nr_user_bufs;
	struct io_mapped_ubuf **user_bufs;
	/* Continuity state, on 6.1 and 6.18 alike. */
	struct io_rings *rings;
	unsigned int cached_sq_head;
	unsigned int cached_cq_tail;
	struct task_struct *submitter_task;
	/* The threads that used the ring (struct io_tctx_node), newest first. */
	struct list_head tctx_list;
	struct list_head cq_overflow_list;
	/* The pages of the ring's memory and SQEs: 6.18 */
	struct io_mapped_region ring_region;
	struct io_mapped_region sq_region;
	/* ... and 6.5-6.12 (6.1 has neither: no NO_MMAP) */
	struct page **ring_pages;
	struct page **sqe_pages;
	/* Requests in flight: 6.16+ counts allocated ones (free cache
	 * included); before, the drain arithmetic uses cq_extra (a bitfield
	 * drain_disabled says when it cannot). */
	unsigned int nr_req_allocated;
	struct io_submit_state submit_state;
	unsigned int cq_extra;
	unsigned int drain_disabled : 1;
	/* Requests that wait on their own: poll-armed ones (6.1 has a
	 * second table for those armed under the ring lock), timeouts. */
	struct io_hash_table cancel_table;
	struct io_hash_table cancel_table_locked;
	struct list_head timeout_list;
	struct list_head ltimeout_list;
	/* Personalities and restrictions, on 6.1 and 6.18 alike. */
	struct xarray personalities;
	__u32 pers_next;
	struct io_restriction restrictions;
	/* Provided-buffer groups: an xarray by bgid on 6.1 and 6.18; 6.1 also
	 * an array of 64 for the low bgids (NULL until the first group). */
	struct xarray io_bl_xa;
	struct io_buffer_list *io_bl;
	/* Registered settings (issue 15). file_alloc_*: 6.1 and 6.18 alike.
	 * iowq_limits_set: a bool on 6.1, a bitfield since. NAPI (6.9+):
	 * napi_enabled until 6.12, napi_track_mode (255: inactive) since
	 * 6.13. The registered wait region (6.13+): cq_wait_arg, cq_wait_size,
	 * and its memory in param_region.
	 * Tags on 6.1 and 6.12: file_data and buf_data. */
	unsigned int file_alloc_start;
	unsigned int file_alloc_end;
	__u32 iowq_limits[2];
	bool iowq_limits_set;
	__s64 napi_busy_poll_dt;
	bool napi_prefer_busy_poll;
	bool napi_enabled;
	__u8 napi_track_mode;
	struct list_head napi_list;
	void *cq_wait_arg;
	unsigned long cq_wait_size;
	struct io_mapped_region param_region;
	struct io_rsrc_data *file_data;
	struct io_rsrc_data *buf_data;
};

#pragma clang attribute pop

#endif
