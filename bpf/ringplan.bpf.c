// SPDX-License-Identifier: GPL-2.0-only OR MIT
/*
 * ringplan's BPF reader of io_uring state: three iter/task_file programs
 * and an iter/task program in one object, of which the dumper loads three
 * on every dump and the fourth, ringplan_walk_fds (the personality,
 * buffer-group and pending-request walks), only for a ring that has some
 * personalities or groups, or requests in flight (see that program).
 * Most of a load is libbpf's CO-RE candidate search, one scan of the
 * kernel's whole BTF per relocated root type (about 0.7 ms each on 6.18),
 * and the verifier's walk of ringplan_chunk_fds. So the object relocates
 * only task_struct, files_struct, fdtable, file, inode, eventfd_ctx,
 * io_ring_ctx, io_sq_data, io_ev_fd, io_rsrc_node, io_rsrc_data,
 * io_mapped_ubuf, io_rings, io_overflow_cqe, page, io_uring_task, and for
 * the requests in flight io_kiocb, io_timeout, io_hash_table and
 * io_hash_bucket (generic list nodes are read by their first word, see
 * read_next); the walks add xa_node, cred, group_info, io_buffer_list and
 * io_buffer, which libbpf relocates in every load of the object (their
 * callbacks are subprograms, relocated whether their program loads or
 * not). (Two
 * objects loaded on two threads were measured slower: the second repeats
 * the BTF parse and the types both read, and wins only with an idle
 * second core, which a target's spinning SQPOLL thread may hold.)
 *
 * ringplan_target_fds (pass A) runs over the target process's fds (the link
 * is limited to the target's pidfd) and writes, for each, an rp_fd_record
 * (file identity, f_op, flags, position, mode, cloexec, role, d_path text);
 * for an eventfd fd also an rp_eventfd_record. The role (ring, eventfd) is
 * told by f_op, compared with ring_fops and eventfd_fops.
 *
 * ringplan_chunk_fds (pass B) runs over the dumper's *own* fds (the link is
 * limited to the dumper's process). The dumper has copied a ring fd of the
 * target into itself (pidfd_getfd) and duplicated it once per request; the
 * chunk_requests map says, per local fd, what to write:
 *
 * - RP_REQUEST_RING: the ring's header, an rp_ring_record (setup
 *   parameters, SQ thread, eventfd, table sizes, layout, inode number,
 *   positions, the SINGLE_ISSUER owner and the counters of requests in
 *   flight; whether it has personalities and buffer groups, which
 *   ringplan_walk_fds then counts), after one rp_overflow_cqe_record per
 *   CQE of its overflow list (the requests waiting on their own, for a
 *   ring with requests in flight, are ringplan_walk_fds's);
 * - RP_REQUEST_CHUNK: an rp_chunk_record and one slot record per occupied
 *   slot of a range of a registered table (files, buffers; the
 *   personalities and buffer groups are ringplan_walk_fds's). Chunking
 *   exists because one
 *   iterator object (one fd visit) can write at most 32 KiB: a table of
 *   19,000 files cannot be written by one visit, but 60 visits of 320 slots
 *   each fit;
 * - RP_REQUEST_PROBE: an rp_probe_record with the file's f_op. At load the
 *   dumper asks this of a ring and an eventfd of its own, and writes the
 *   answers into ring_fops and eventfd_fops.
 *
 * Ring and chunk requests name the io_ring_ctx the fd must refer to
 * (expected_ctx; file->private_data is compared before anything is read
 * through it); 0 accepts any file and is used only for the dumper's own
 * probe files. A registered file is reported with its f_op, which userspace
 * classifies; its eventfd_ctx is read only when f_op is eventfd_fops.
 *
 * Both programs only read kernel memory and write to the seq_file: an
 * object shown twice (the kernel re-shows an object that overflowed the
 * buffer) writes the same records twice, which userspace drops. The
 * per-CPU path scratch map is the only map written, and only as a buffer.
 *
 * The iterator's task and file are pointers the verifier knows (BTF-typed):
 * they and what they point to are read with direct loads, which are cheap,
 * and &file->f_path is what bpf_d_path needs. Everything reached through
 * file->private_data (a void *) or a registered slot (an unsigned long) is
 * an integer to the verifier and is read with BPF_CORE_READ (probe reads
 * with CO-RE relocations).
 */
#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "ringplan_records.h"

char LICENSE[] SEC("license") = "GPL";

/* The file_operations of io_uring and eventfd files, as userspace learnt
 * them at load (0: unknown, nothing matches). Written through the
 * skeleton's .bss. */
__u64 ring_fops = 0;
__u64 eventfd_fops = 0;
/* Always 0. A .bss value is unknown to the verifier, unlike a literal: see
 * walk_hash_table. */
__u32 opaque_zero = 0;
/* Set by the dumper for its second look at the target's fd table, which
 * only compares each fd's file: pass A then skips d_path and eventfds. */
__u32 identities_only = 0;
/* Never used by the programs: it is here so that the skeleton generator
 * emits the record types and constants for userspace (ringplan_records.h). */
struct rp_shared_types rp_shared_types = {};

/* count and flags of an eventfd_ctx (probe reads). */
static __always_inline void read_eventfd(struct eventfd_ctx *eventfd, __u64 *count, __u32 *flags)
{
	*count = BPF_CORE_READ(eventfd, count);
	*flags = BPF_CORE_READ(eventfd, flags);
}

#define BITS_PER_LONG (sizeof(unsigned long) * 8)

struct path_scratch {
	char path[RP_PATH_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct path_scratch);
} path_scratch SEC(".maps");

/* The role of a file, told by its file_operations: io_uring_fops and
 * eventfd_fops are data symbols that kallsyms lacks without
 * CONFIG_KALLSYMS_ALL, so userspace learns them from files of its own (a
 * probe ring and eventfd, see ringplan_chunk_fds) and writes them into
 * ring_fops and eventfd_fops at load. (Telling them by their anon-inode
 * dentry name instead would relocate struct dentry too.) */
static __always_inline __u32 role_of_fops(__u64 f_op)
{
	if (f_op && f_op == ring_fops)
		return RP_ROLE_RING;
	if (f_op && f_op == eventfd_fops)
		return RP_ROLE_EVENTFD;
	return RP_ROLE_PLAIN;
}

static __always_inline __u32 fd_cloexec(struct task_struct *task, __u32 fd)
{
	struct files_struct *files = task->files;
	if (!files)
		return 0;
	unsigned long *bits = files->fdt->close_on_exec;
	unsigned long word = 0;
	if (!bits || bpf_probe_read_kernel(&word, sizeof(word), bits + fd / BITS_PER_LONG) < 0)
		return 0;
	return (word >> (fd % BITS_PER_LONG)) & 1;
}

static __always_inline void write_eventfd_record(struct seq_file *seq, struct eventfd_ctx *eventfd,
						 __u32 fd)
{
	struct rp_eventfd_record rec = {};

	rec.header.kind = RP_RECORD_EVENTFD;
	rec.header.size = sizeof(rec);
	rec.ctx = (__u64)eventfd;
	read_eventfd(eventfd, &rec.count, &rec.flags);
	rec.fd = fd;
	bpf_seq_write(seq, &rec, sizeof(rec));
}

SEC("iter/task_file")
int ringplan_target_fds(struct bpf_iter__task_file *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;
	struct file *file = ctx->file;
	__u32 zero = 0;

	/* The link is limited to the target (its pidfd); kernels without
	 * task iterator parameters (before 6.1) refuse such a link. */
	if (!task || !file)
		return 0;
	struct path_scratch *scratch = bpf_map_lookup_elem(&path_scratch, &zero);
	if (!scratch)
		return 0;

	/* task and file are pointers the verifier trusts: read them (and what
	 * they point to) with direct loads rather than probe reads. */
	struct rp_fd_record rec = {};
	rec.header.kind = RP_RECORD_FD;
	rec.file = (__u64)file;
	rec.f_op = (__u64)file->f_op;
	rec.private_data = (__u64)file->private_data;
	rec.pos = file->f_pos;
	struct inode *inode = file->f_inode;
	rec.inode_number = inode->i_ino;
	rec.fd = ctx->fd;
	rec.flags = file->f_flags;
	rec.mode = inode->i_mode;
	rec.role = role_of_fops(rec.f_op);
	rec.cloexec = fd_cloexec(task, ctx->fd);

	if (identities_only) {
		rec.header.size = sizeof(rec);
		bpf_seq_write(seq, &rec, sizeof(rec));
		return 0;
	}

	/* bpf_d_path returns the length including the NUL; keep the text only. */
	long path_len = bpf_d_path(&file->f_path, scratch->path, sizeof(scratch->path));
	if (path_len > 1 && path_len <= RP_PATH_MAX)
		path_len -= 1;
	else if (path_len >= 0)
		path_len = 0;
	rec.path_len = path_len;
	rec.header.size = sizeof(rec) + (path_len > 0 ? path_len : 0);
	bpf_seq_write(seq, &rec, sizeof(rec));
	if (path_len > 0 && path_len < RP_PATH_MAX) {
		/* The 6.1 verifier does not carry the range check above over
		 * to path_len (clang tests path_len - 1, a copy): bound it with
		 * a mask clang cannot drop, behind barrier_var. */
		__u32 text_len = path_len;
		barrier_var(text_len);
		text_len &= RP_PATH_MAX - 1;
		bpf_seq_write(seq, scratch->path, text_len);
	}

	if (rec.role == RP_ROLE_EVENTFD)
		write_eventfd_record(seq, (struct eventfd_ctx *)rec.private_data, rec.fd);
	return 0;
}

/* Low bits of a registered file pointer are flags (FFS_NOWAIT, FFS_ISREG,
 * and FFS_SCM on 6.1); struct file is at least 8-byte aligned. */
#define REGISTERED_FILE_FLAG_BITS 7UL

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RP_MAX_CHUNK_REQUESTS);
	__type(key, __u32);
	__type(value, struct rp_chunk_request);
} chunk_requests SEC(".maps");

/* The io_ring_ctx layout of the running kernel. Each test is a CO-RE
 * constant, so the verifier sees the branches for other layouts as dead. */
static __always_inline bool layout_is_rsrc_nodes(void)
{
	return bpf_core_field_exists(struct io_ring_ctx, file_table.data) &&
	       bpf_core_field_exists(struct io_ring_ctx, buf_table);
}

static __always_inline bool layout_is_fixed_files(void)
{
	return bpf_core_field_exists(struct io_ring_ctx, nr_user_files) &&
	       bpf_core_field_exists(struct io_ring_ctx, nr_user_bufs) &&
	       bpf_core_field_exists(struct io_ring_ctx, user_bufs) &&
	       bpf_core_field_exists(struct io_ring_ctx, file_table.files);
}

static __always_inline __u32 detect_layout(void)
{
	if (layout_is_rsrc_nodes())
		return RP_LAYOUT_RSRC_NODES;
	if (layout_is_fixed_files())
		return RP_LAYOUT_FIXED_FILES;
	return RP_LAYOUT_UNKNOWN;
}

static __always_inline void read_table_sizes(struct io_ring_ctx *ring, __u32 *file_slots,
					     __u32 *buffer_slots)
{
	if (layout_is_rsrc_nodes()) {
		*file_slots = BPF_CORE_READ(ring, file_table.data.nr);
		*buffer_slots = BPF_CORE_READ(ring, buf_table.nr);
	} else if (layout_is_fixed_files()) {
		*file_slots = BPF_CORE_READ(ring, nr_user_files);
		*buffer_slots = BPF_CORE_READ(ring, nr_user_bufs);
	} else {
		*file_slots = 0;
		*buffer_slots = 0;
	}
}

/* The ring's continuity state: positions and flags from the memory it
 * shares with the program (ctx->rings, a kernel mapping of it), the
 * kernel's own head and tail, and the SINGLE_ISSUER owner. The SQ array,
 * SQEs and CQEs are read by userspace from the program's memory. */
static __always_inline void read_ring_state(struct io_ring_ctx *ring, struct rp_ring_record *rec)
{
	struct io_rings *rings = BPF_CORE_READ(ring, rings);

	if (rings && bpf_core_field_exists(ring->cached_sq_head) &&
	    bpf_core_field_exists(ring->cached_cq_tail)) {
		/* A running target moves while this reads. Each pair is read
		 * lower bound first (published head, then the kernel's head,
		 * then the program's tail; the program's CQ head, then the
		 * published tail, then the kernel's), so that every read keeps
		 * head <= tail; a count between them may still exceed the ring,
		 * which userspace treats as a torn read. */
		rec->sq_head = BPF_CORE_READ(rings, sq.head);
		rec->cached_sq_head = BPF_CORE_READ(ring, cached_sq_head);
		rec->sq_tail = BPF_CORE_READ(rings, sq.tail);
		rec->cq_head = BPF_CORE_READ(rings, cq.head);
		rec->cq_tail = BPF_CORE_READ(rings, cq.tail);
		rec->cached_cq_tail = BPF_CORE_READ(ring, cached_cq_tail);
		rec->sq_dropped = BPF_CORE_READ(rings, sq_dropped);
		rec->cq_overflow = BPF_CORE_READ(rings, cq_overflow);
		rec->sq_flags = BPF_CORE_READ(rings, sq_flags.counter);
		rec->cq_flags = BPF_CORE_READ(rings, cq_flags);
		rec->state_known |= RP_STATE_POSITIONS;
	}
	/* The first page of the ring's memory and of its SQEs, whichever way
	 * this kernel keeps them. */
	struct page **rings_pages = NULL, **sqes_pages = NULL;
	if (bpf_core_field_exists(ring->ring_region) && bpf_core_field_exists(ring->sq_region)) {
		rings_pages = BPF_CORE_READ(ring, ring_region.pages);
		sqes_pages = BPF_CORE_READ(ring, sq_region.pages);
	} else if (bpf_core_field_exists(ring->ring_pages) &&
		   bpf_core_field_exists(ring->sqe_pages)) {
		rings_pages = BPF_CORE_READ(ring, ring_pages);
		sqes_pages = BPF_CORE_READ(ring, sqe_pages);
	}
	if (rings_pages)
		bpf_probe_read_kernel(&rec->rings_page, sizeof(rec->rings_page), rings_pages);
	if (sqes_pages)
		bpf_probe_read_kernel(&rec->sqes_page, sizeof(rec->sqes_page), sqes_pages);
	rec->page_struct_size = bpf_core_type_size(struct page);

	if (bpf_core_field_exists(ring->submitter_task)) {
		struct task_struct *owner = BPF_CORE_READ(ring, submitter_task);
		if (owner)
			rec->owner_tid = BPF_CORE_READ(owner, pid);
		rec->state_known |= RP_STATE_OWNER;
	}
}

/* The first word of a generic list node: list_head.next, hlist_head.first,
 * hlist_node.next and io_wq_work_node.next are each the first member of
 * their struct, by the definition of these types, on every kernel. Read
 * without CO-RE: libbpf's candidate search costs about 0.7 ms per
 * relocated type at every load, and these four types are read for nothing
 * else. 0 when unreadable (the helper zeroes the word). */
static __always_inline __u64 read_next(__u64 node)
{
	__u64 next = 0;
	bpf_probe_read_kernel(&next, sizeof(next), (void *)node);
	return next;
}

/* State of the overflow list walk's bpf_loop, on the program's stack. */
struct overflow_loop {
	struct seq_file *seq;
	__u64 ctx;
	/* &ctx->cq_overflow_list: the list ends when a next pointer comes back
	 * to it. */
	__u64 head;
	/* The next node (&ocqe->list) to write. */
	__u64 node;
	__u32 cqe_bytes;
	__u32 index;
	bool ended;
};

/* Writes the CQE at loop->node and steps to the next node. The list is
 * read without the kernel's lock, so a running target's flush may change
 * it under the walk: every read is a probe read, the walk is bounded, and
 * only a frozen read is exact (as for everything else). */
static long write_overflow_cqe(__u32 step, void *data)
{
	struct overflow_loop *loop = data;
	struct rp_overflow_cqe_record rec = {};
	__u64 words[4] = {};

	if (!loop->node || loop->node == loop->head) {
		loop->ended = loop->node == loop->head;
		return 1;
	}
	if (loop->index >= RP_MAX_OVERFLOW_CQES)
		return 1;
	__u64 ocqe = loop->node - bpf_core_field_offset(struct io_overflow_cqe, list);
	__u64 cqe = ocqe + bpf_core_field_offset(struct io_overflow_cqe, cqe);
	__u32 size = loop->cqe_bytes == 32 ? 32 : 16;
	if (bpf_probe_read_kernel(words, size, (void *)cqe) < 0)
		return 1;
	rec.header.kind = RP_RECORD_OVERFLOW_CQE;
	rec.header.size = sizeof(rec);
	rec.ctx = loop->ctx;
	rec.user_data = words[0];
	rec.res = (__s32)(words[1] & 0xffffffff);
	rec.flags = (__u32)(words[1] >> 32);
	rec.extra[0] = words[2];
	rec.extra[1] = words[3];
	rec.index = loop->index;
	bpf_seq_write(loop->seq, &rec, sizeof(rec));
	loop->index++;
	loop->node = read_next(loop->node);
	return 0;
}

/* Writes the ring's overflow list, before its ring record, which then
 * says how many records came (userspace files them by ctx). */
static __always_inline void write_overflow_list(struct seq_file *seq, struct io_ring_ctx *ring,
						struct rp_ring_record *rec)
{
	struct overflow_loop loop = {
		.seq = seq,
		.ctx = (__u64)ring,
		.head = (__u64)ring + bpf_core_field_offset(struct io_ring_ctx, cq_overflow_list),
		.node = (__u64)BPF_CORE_READ(ring, cq_overflow_list.next),
		.cqe_bytes = rec->flags & RP_IORING_SETUP_CQE32 ? 32 : 16,
	};

	bpf_loop(RP_MAX_OVERFLOW_CQES + 1, write_overflow_cqe, &loop, 0);
	rec->overflow_listed = loop.index;
	if (loop.ended)
		rec->state_known |= RP_STATE_OVERFLOW;
}

/* Counts the ctx's free request cache (a NULL-terminated singly linked
 * list), so that the requests in flight are the allocated ones less it. */
struct free_loop {
	__u64 node;
	__u32 count;
	bool ended;
};

static long count_free_request(__u32 step, void *data)
{
	struct free_loop *loop = data;

	if (!loop->node) {
		loop->ended = true;
		return 1;
	}
	loop->count++;
	loop->node = read_next(loop->node);
	return 0;
}

/* The counters from which userspace tells how many requests are in
 * flight: on 6.16+ the allocated requests and the free cache; before, the
 * inputs of the kernel's drain arithmetic (cq_extra; the positions are
 * read by read_ring_state). */
static __always_inline void read_in_flight(struct io_ring_ctx *ring, struct rp_ring_record *rec)
{
	if (bpf_core_field_exists(ring->nr_req_allocated) &&
	    bpf_core_field_exists(ring->submit_state.free_list)) {
		struct free_loop loop = {
			.node = (__u64)BPF_CORE_READ(ring, submit_state.free_list.next),
		};
		rec->nr_req_allocated = BPF_CORE_READ(ring, nr_req_allocated);
		bpf_loop(RP_MAX_FREE_CACHED + 1, count_free_request, &loop, 0);
		rec->free_cached = loop.count;
		if (loop.ended)
			rec->state_known |= RP_STATE_ALLOCATED;
	} else if (bpf_core_field_exists(ring->cq_extra) &&
		   bpf_core_field_exists(ring->drain_disabled)) {
		rec->cq_extra = BPF_CORE_READ(ring, cq_extra);
		rec->drain_disabled = BPF_CORE_READ_BITFIELD_PROBED(ring, drain_disabled);
		rec->state_known |= RP_STATE_DRAIN_SEQUENCE;
	}
}

/* State of the pending-request walks' bpf_loops, on the program's stack:
 * one index across the tables and lists of a ring. */
struct pending_loop {
	struct seq_file *seq;
	__u64 ctx;
	/* Hash table walk: the bucket array, its size, the next bucket. */
	__u64 buckets;
	__u32 bucket_size;
	__u32 bucket_count;
	__u32 bucket;
	/* The next node to write (hlist_node or list_head), 0: none. */
	__u64 node;
	/* List walk: the list head, where the walk ends. */
	__u64 head;
	__u32 where;
	__u32 index;
	bool ended;
};

static __always_inline void write_pending_request(struct pending_loop *loop, __u64 request)
{
	struct rp_pending_request_record rec = {};
	struct io_kiocb *req = (void *)request;

	rec.header.kind = RP_RECORD_PENDING_REQUEST;
	rec.header.size = sizeof(rec);
	rec.ctx = loop->ctx;
	rec.user_data = BPF_CORE_READ(req, cqe.user_data);
	rec.opcode = BPF_CORE_READ(req, opcode);
	rec.where = loop->where;
	rec.index = loop->index;
	bpf_seq_write(loop->seq, &rec, sizeof(rec));
	loop->index++;
}

/* One step over a cancel hash table: the next request of the current
 * bucket, or the next bucket's first. Read without the kernel's locks:
 * only a stopped target's tables hold still. */
static __always_inline long hashed_request_step(struct pending_loop *loop)
{
	if (loop->index >= RP_MAX_PENDING_REQUESTS)
		return 1;
	if (!loop->node) {
		if (loop->bucket >= loop->bucket_count) {
			loop->ended = true;
			return 1;
		}
		loop->node = read_next(loop->buckets + (__u64)loop->bucket * loop->bucket_size +
				       bpf_core_field_offset(struct io_hash_bucket, list));
		loop->bucket++;
		return 0;
	}
	write_pending_request(loop, loop->node - bpf_core_field_offset(struct io_kiocb, hash_node));
	loop->node = read_next(loop->node);
	return 0;
}

/* One step over a timeout list: a struct io_timeout's list member, the
 * io_timeout at the start of its io_kiocb (where file is). */
static __always_inline long listed_timeout_step(struct pending_loop *loop)
{
	if (!loop->node || loop->node == loop->head) {
		loop->ended = loop->node == loop->head;
		return 1;
	}
	if (loop->index >= RP_MAX_PENDING_REQUESTS)
		return 1;
	write_pending_request(loop, loop->node - bpf_core_field_offset(struct io_timeout, list) -
					    bpf_core_field_offset(struct io_kiocb, file));
	loop->node = read_next(loop->node);
	return 0;
}

/* One callback per bpf_loop call site, each verified with the state of
 * its own first call (see walk_hash_table). */
static long write_hashed_request(__u32 step, void *data)
{
	return hashed_request_step(data);
}

static long write_locked_hashed_request(__u32 step, void *data)
{
	return hashed_request_step(data);
}

static long write_listed_timeout(__u32 step, void *data)
{
	return listed_timeout_step(data);
}

static long write_listed_linked_timeout(__u32 step, void *data)
{
	return listed_timeout_step(data);
}

static __always_inline bool walk_hash_table(struct pending_loop *loop, struct io_hash_table *table,
					    long (*step)(__u32, void *))
{
	__u32 bits = BPF_CORE_READ(table, hash_bits);
	loop->buckets = (__u64)BPF_CORE_READ(table, hbs);
	loop->bucket_size = bpf_core_type_size(struct io_hash_bucket);
	loop->bucket_count = bits < 9 ? 1U << bits : RP_MAX_HASH_BUCKETS;
	loop->where = RP_PENDING_POLL;
	loop->ended = false;
	if (!loop->buckets)
		return true;
	/* Start at the first bucket's first request, read here rather than
	 * found by the callback: a verifier that checks a bpf_loop callback
	 * once, with the state of the first call (before 6.8; measured on
	 * 6.1), would see a constant 0 in loop->node, take the branch that
	 * writes a request for dead code and drop it (nothing was listed). */
	loop->node = read_next(loop->buckets + bpf_core_field_offset(struct io_hash_bucket, list));
	loop->bucket = 1;
	bpf_loop(RP_MAX_HASH_BUCKETS + RP_MAX_PENDING_REQUESTS + 1, step, loop, 0);
	return loop->ended;
}

static __always_inline bool walk_timeout_list(struct pending_loop *loop, struct list_head *list,
					      __u32 where, long (*step)(__u32, void *))
{
	loop->head = (__u64)list;
	loop->node = read_next((__u64)list);
	loop->where = where;
	loop->ended = false;
	bpf_loop(RP_MAX_PENDING_REQUESTS + 1, step, loop, 0);
	return loop->ended;
}

/* Writes the requests the kernel keeps waiting on their own (they never
 * complete without an event: poll-armed, timeouts), before the list
 * record, which then says how many came. Requests in io-wq workers, futex
 * and waitid waits are not listed (they count as in flight all the same).
 * ringplan_walk_fds's (RP_REQUEST_PENDING): these walks are most of what
 * the verifier would check of ringplan_chunk_fds, and only a ring with
 * requests in flight needs them. */
static __always_inline void write_pending_requests(struct seq_file *seq, struct io_ring_ctx *ring,
						   struct rp_pending_list_record *rec)
{
	struct pending_loop loop = {
		.seq = seq,
		.ctx = (__u64)ring,
		/* Not a constant 0 to the verifier (see walk_hash_table), so
		 * that the callbacks' limit check is not dropped as dead. */
		.index = opaque_zero,
	};
	bool whole = true;

	if (!bpf_core_field_exists(ring->cancel_table) || !bpf_core_field_exists(ring->timeout_list) ||
	    !bpf_core_field_exists(ring->ltimeout_list))
		return;
	whole &= walk_hash_table(&loop, &ring->cancel_table, write_hashed_request);
	if (bpf_core_field_exists(ring->cancel_table_locked))
		whole &= walk_hash_table(&loop, &ring->cancel_table_locked,
					 write_locked_hashed_request);
	whole &= walk_timeout_list(&loop, &ring->timeout_list, RP_PENDING_TIMEOUT,
				   write_listed_timeout);
	whole &= walk_timeout_list(&loop, &ring->ltimeout_list, RP_PENDING_LINKED_TIMEOUT,
				   write_listed_linked_timeout);
	rec->listed = loop.index;
	if (whole)
		rec->state_known |= RP_STATE_PENDING;
}


/* Walking the personalities xarray (ctx->personalities: struct cred
 * pointers at ids 1..65535). An entry is a node when its low bits are 10
 * and it is above 4096 (xa_is_node); other internal entries (retry, zero,
 * sibling) and NULL are empty slots here. The walk keeps a cursor index,
 * and each bpf_loop step descends from the root to the cursor's slot:
 * an entry is visited and the cursor moves one on; an empty slot at level
 * `shift` moves the cursor past the subtree it would hold. Read without
 * the kernel's lock (xa_lock): only a frozen target's xarray holds still. */
#define XA_CHUNK_MASK 63UL
#define XA_NODE_TAG 2UL

/* What an xarray walk visits: personalities (struct cred) or
 * provided-buffer groups (struct io_buffer_list). */
#define XA_WALK_PERSONALITIES 0
#define XA_WALK_PBUF 1

struct xa_walk {
	struct seq_file *seq;   /* NULL: count only */
	__u64 head;             /* the xarray's xa_head */
	__u64 index;            /* the next id to look at */
	__u64 array;            /* 6.1's ctx->io_bl (buffer groups only), 0: none */
	__u32 seen;             /* entries met so far */
	__u32 start;            /* the first ordinal to write */
	__u32 end;              /* past the last ordinal to write */
	__u32 what;             /* XA_WALK_* */
	bool ended;             /* the walk reached the xarray's end */
};

static __always_inline bool xa_entry_is_node(__u64 entry)
{
	return (entry & 3) == XA_NODE_TAG && entry > 4096;
}

static __always_inline __u32 read_id(void *field)
{
	__u32 value = 0;
	bpf_probe_read_kernel(&value, sizeof(value), field);
	return value;
}

static __always_inline __u64 read_caps(void *field)
{
	__u64 value = 0;
	bpf_probe_read_kernel(&value, sizeof(value), field);
	return value;
}

/* A personality record is built here rather than on the stack: the
 * callback's frame and the ring record's share the 512-byte limit. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rp_personality_record);
} personality_scratch SEC(".maps");

static __always_inline void write_personality(struct xa_walk *walk, __u64 id, __u64 entry)
{
	__u32 zero = 0;
	struct rp_personality_record *scratch = bpf_map_lookup_elem(&personality_scratch, &zero);
	struct cred *cred = (void *)entry;

	if (!scratch)
		return;
	__builtin_memset(scratch, 0, sizeof(*scratch));
#define rec (*scratch)

	rec.header.kind = RP_RECORD_PERSONALITY;
	rec.header.size = sizeof(rec);
	rec.index = walk->seen;
	rec.id = id;
	rec.uid = read_id(&cred->uid);
	rec.euid = read_id(&cred->euid);
	rec.suid = read_id(&cred->suid);
	rec.fsuid = read_id(&cred->fsuid);
	rec.gid = read_id(&cred->gid);
	rec.egid = read_id(&cred->egid);
	rec.sgid = read_id(&cred->sgid);
	rec.fsgid = read_id(&cred->fsgid);
	rec.cap_inheritable = read_caps(&cred->cap_inheritable);
	rec.cap_permitted = read_caps(&cred->cap_permitted);
	rec.cap_effective = read_caps(&cred->cap_effective);
	rec.cap_bounding = read_caps(&cred->cap_bset);
	rec.cap_ambient = read_caps(&cred->cap_ambient);
	struct group_info *groups = BPF_CORE_READ(cred, group_info);
	if (groups) {
		rec.ngroups = BPF_CORE_READ(groups, ngroups);
		__u64 first = (__u64)groups + bpf_core_field_offset(struct group_info, gid);
		for (__u32 i = 0; i < RP_MAX_GROUPS; i++) {
			if ((__s32)i >= rec.ngroups)
				break;
			bpf_probe_read_kernel(&rec.groups[i], sizeof(__u32), (void *)(first + i * 4));
		}
	}
	bpf_seq_write(walk->seq, scratch, sizeof(*scratch));
#undef rec
}

static __always_inline void write_pbuf_ring(struct xa_walk *walk, __u64 entry);

/* Counts the entry at the walk's cursor and writes it when its ordinal is
 * asked for. */
static __always_inline void visit_entry(struct xa_walk *walk, __u64 entry)
{
	if (walk->seq && walk->seen >= walk->start && walk->seen < walk->end) {
		if (walk->what == XA_WALK_PBUF)
			write_pbuf_ring(walk, entry);
		else
			write_personality(walk, walk->index, entry);
	}
	walk->seen++;
	walk->index++;
}

static __always_inline long xa_walk_step(struct xa_walk *walk)
{
	__u64 entry = walk->head;

	/* An empty xarray, or a lone entry at index 0 (never in an ALLOC1
	 * xarray such as the personalities; a buffer group with bgid 0). */
	if (!xa_entry_is_node(entry)) {
		if (entry && (entry & 3) == 0 && walk->index == 0) {
			visit_entry(walk, entry);
			return 0;
		}
		walk->ended = true;
		return 1;
	}
	__u64 node = entry - XA_NODE_TAG;
	__u64 slots_offset = bpf_core_field_offset(struct xa_node, slots);
	for (__u32 level = 0; level < RP_MAX_XA_DEPTH; level++) {
		struct xa_node *xa = (void *)node;
		__u32 shift = BPF_CORE_READ(xa, shift);
		if (shift > 48)
			return 1;
		if (level == 0 && (walk->index >> shift) > XA_CHUNK_MASK) {
			walk->ended = true;
			return 1;
		}
		__u64 offset = (walk->index >> shift) & XA_CHUNK_MASK;
		__u64 slot = 0;
		if (bpf_probe_read_kernel(&slot, sizeof(slot), (void *)(node + slots_offset + offset * 8)) < 0)
			return 1;
		if (xa_entry_is_node(slot)) {
			if (shift == 0)
				return 1;
			node = slot - XA_NODE_TAG;
			continue;
		}
		if (!slot || (slot & 3) != 0 || shift != 0) {
			walk->index = ((walk->index >> shift) + 1) << shift;
			return 0;
		}
		visit_entry(walk, slot);
		return 0;
	}
	/* Deeper than ids go: not walked to the end. */
	return 1;
}

/* One callback per bpf_loop call site (see walk_hash_table): the header's
 * count, a chunk's count, a chunk's writes. */
static long count_personalities_in_header(__u32 step, void *data)
{
	return xa_walk_step(data);
}

static long count_personalities_in_chunk(__u32 step, void *data)
{
	return xa_walk_step(data);
}

static long write_personalities(__u32 step, void *data)
{
	return xa_walk_step(data);
}

/* Walks ring's personalities with `step`: counts them, and writes those
 * whose ordinal is in [start, end) when seq is set. Returns whether the
 * walk reached the end; *count is the entries met. */
static __always_inline bool walk_personalities(struct io_ring_ctx *ring, struct seq_file *seq,
					       __u32 start, __u32 end, __u32 *count,
					       long (*step)(__u32, void *))
{
	/* The fields the callback changes start as values the verifier does
	 * not know (opaque_zero): a verifier that checks a callback once with
	 * the state of its first call (before 6.8; seen on 6.1) would
	 * otherwise take their starting constants for their values after
	 * bpf_loop returns and drop the code that reads them as dead. */
	struct xa_walk walk = {
		.seq = seq,
		.head = (__u64)BPF_CORE_READ(ring, personalities.xa_head),
		.start = start,
		.end = end,
		.index = opaque_zero,
		.seen = opaque_zero,
		.ended = opaque_zero != 0,
	};
	bpf_loop(RP_MAX_XA_STEPS, step, &walk, 0);
	*count = walk.seen;
	return walk.ended;
}

/* Provided-buffer groups. The group's kind and memory: 6.13+ keep the
 * ring's pages in bl->region (user memory when IO_REGION_F_USER_PROVIDED),
 * its flags IOBL_BUF_RING 1 and IOBL_INC 2; 6.12 keeps buf_pages with
 * flags IOBL_BUF_RING 1, IOBL_MMAP 2, IOBL_INC 4; 6.1 has no flags: a ring
 * has buf_nr_pages, and never kernel memory (IOU_PBUF_RING_MMAP is 6.4+). */
#define IOBL_BUF_RING 1U
#define IOBL_612_MMAP 2U
#define IOBL_612_INC 4U
#define IOBL_REGION_INC 2U
#define IO_REGION_F_USER_PROVIDED 2U
/* Offset of the tail in struct io_uring_buf_ring (uapi: resv1 u64, resv2
 * u32, resv3 u16, tail u16). */
#define PBUF_RING_TAIL_OFFSET 14

/* Whether a 6.1 io_bl[] entry holds a group: a ring has pages; a legacy
 * group has buffers on its list (an empty list points at itself). */
static __always_inline bool pbuf_array_entry_in_use(__u64 entry)
{
	struct io_buffer_list *bl = (void *)entry;
	if (BPF_CORE_READ(bl, buf_nr_pages))
		return true;
	__u64 next = (__u64)BPF_CORE_READ(bl, buf_list.next);
	return next && next != entry + bpf_core_field_offset(struct io_buffer_list, buf_list);
}

/* A buffer-group record is built here rather than on the stack (the
 * callback's frame shares the 512-byte limit). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rp_pbuf_ring_record);
} pbuf_scratch SEC(".maps");

static __always_inline void write_pbuf_ring(struct xa_walk *walk, __u64 entry)
{
	__u32 zero = 0;
	struct rp_pbuf_ring_record *rec = bpf_map_lookup_elem(&pbuf_scratch, &zero);
	struct io_buffer_list *bl = (void *)entry;
	struct page **pages = NULL;
	__u64 ring_memory = 0;

	if (!rec)
		return;
	__builtin_memset(rec, 0, sizeof(*rec));
	rec->header.kind = RP_RECORD_PBUF_RING;
	rec->header.size = sizeof(*rec);
	rec->index = walk->seen;
	rec->bgid = BPF_CORE_READ(bl, bgid);
	rec->entries = BPF_CORE_READ(bl, nr_entries);
	rec->head = BPF_CORE_READ(bl, head);
	rec->mask = BPF_CORE_READ(bl, mask);
	if (bpf_core_field_exists(bl->region)) {
		__u32 flags = BPF_CORE_READ(bl, flags);
		if (flags & IOBL_BUF_RING) {
			rec->kind |= RP_PBUF_RING;
			if (flags & IOBL_REGION_INC)
				rec->kind |= RP_PBUF_INCREMENTAL;
			if (!(BPF_CORE_READ(bl, region.flags) & IO_REGION_F_USER_PROVIDED))
				rec->kind |= RP_PBUF_KERNEL_MEMORY;
			pages = BPF_CORE_READ(bl, region.pages);
			rec->nr_pages = BPF_CORE_READ(bl, region.nr_pages);
			ring_memory = (__u64)BPF_CORE_READ(bl, region.ptr);
		}
	} else if (bpf_core_field_exists(bl->buf_pages)) {
		bool is_ring;
		if (bpf_core_field_exists(bl->flags)) {
			__u32 flags = BPF_CORE_READ(bl, flags);
			is_ring = flags & IOBL_BUF_RING;
			if (is_ring && (flags & IOBL_612_MMAP))
				rec->kind |= RP_PBUF_KERNEL_MEMORY;
			if (is_ring && (flags & IOBL_612_INC))
				rec->kind |= RP_PBUF_INCREMENTAL;
		} else {
			is_ring = BPF_CORE_READ(bl, buf_nr_pages) != 0;
		}
		if (is_ring) {
			rec->kind |= RP_PBUF_RING;
			pages = BPF_CORE_READ(bl, buf_pages);
			rec->nr_pages = BPF_CORE_READ(bl, buf_nr_pages);
			ring_memory = (__u64)BPF_CORE_READ(bl, buf_ring);
		}
	}
	if (pages)
		bpf_probe_read_kernel(&rec->first_page, sizeof(rec->first_page), pages);
	if (ring_memory) {
		__u16 tail = 0;
		if (bpf_probe_read_kernel(&tail, sizeof(tail),
					  (void *)(ring_memory + PBUF_RING_TAIL_OFFSET)) == 0) {
			rec->tail = tail;
			rec->kind |= RP_PBUF_TAIL;
		}
	}
	bpf_seq_write(walk->seq, rec, sizeof(*rec));
}

/* One step of a buffer-group walk: on 6.1, io_bl[0..63] first (one entry
 * per step, those in use counted), then the xarray from bgid 64. */
static __always_inline long pbuf_walk_step(struct xa_walk *walk)
{
	if (walk->array && walk->index < RP_BGID_ARRAY) {
		__u64 entry = walk->array + walk->index * bpf_core_type_size(struct io_buffer_list);
		if (pbuf_array_entry_in_use(entry)) {
			if (walk->seq && walk->seen >= walk->start && walk->seen < walk->end)
				write_pbuf_ring(walk, entry);
			walk->seen++;
		}
		walk->index++;
		return 0;
	}
	return xa_walk_step(walk);
}

/* One callback per bpf_loop call site (see walk_hash_table). */
static long count_pbuf_rings_in_header(__u32 step, void *data)
{
	return pbuf_walk_step(data);
}

static long count_pbuf_rings_in_chunk(__u32 step, void *data)
{
	return pbuf_walk_step(data);
}

static long write_pbuf_rings(__u32 step, void *data)
{
	return pbuf_walk_step(data);
}

/* Walks ring's provided-buffer groups as walk_personalities does. */
static __always_inline bool walk_pbuf_rings(struct io_ring_ctx *ring, struct seq_file *seq,
					    __u32 start, __u32 end, __u32 *count,
					    long (*step)(__u32, void *))
{
	struct xa_walk walk = {
		.seq = seq,
		.head = (__u64)BPF_CORE_READ(ring, io_bl_xa.xa_head),
		.start = start,
		.end = end,
		.what = XA_WALK_PBUF,
		.index = opaque_zero,
		.seen = opaque_zero,
		.ended = opaque_zero != 0,
	};
	if (bpf_core_field_exists(ring->io_bl))
		walk.array = (__u64)BPF_CORE_READ(ring, io_bl);
	bpf_loop(RP_MAX_XA_STEPS, step, &walk, 0);
	*count = walk.seen;
	return walk.ended;
}

/* The header's part of personalities (none, or some to count; the next
 * id), the restrictions, and whether there may be buffer groups. The
 * walks that count personalities and groups are ringplan_walk_fds's: an
 * empty xarray has a NULL head, so a ring without any costs this program
 * no walk, and a dump of such rings never loads that program. */
static __always_inline void read_credentials(struct io_ring_ctx *ring, struct rp_ring_record *rec)
{
	if (bpf_core_field_exists(ring->personalities) && bpf_core_field_exists(ring->pers_next)) {
		rec->personality_next = BPF_CORE_READ(ring, pers_next);
		if (BPF_CORE_READ(ring, personalities.xa_head))
			rec->state_known |= RP_STATE_PERSONALITIES_TO_WALK;
		else
			rec->state_known |= RP_STATE_PERSONALITIES;
	}
	if (bpf_core_field_exists(ring->restrictions)) {
		rec->restriction_register_op = BPF_CORE_READ(ring, restrictions.register_op[0]);
		rec->restriction_sqe_op = BPF_CORE_READ(ring, restrictions.sqe_op[0]);
		__u32 allowed = BPF_CORE_READ(ring, restrictions.sqe_flags_allowed);
		__u32 required = BPF_CORE_READ(ring, restrictions.sqe_flags_required);
		__u32 registered = BPF_CORE_READ(ring, restrictions.registered);
		rec->restriction_flags = allowed | required << 8 | (registered & 1) << 16;
		rec->state_known |= RP_STATE_RESTRICTIONS;
	}
	if (bpf_core_field_exists(ring->io_bl_xa)) {
		/* 6.1 allocates its low-bgid array at the first group below
		 * 64 and keeps it. */
		bool maybe = BPF_CORE_READ(ring, io_bl_xa.xa_head) != NULL;
		if (bpf_core_field_exists(ring->io_bl))
			maybe |= BPF_CORE_READ(ring, io_bl) != NULL;
		rec->state_known |= maybe ? RP_STATE_PBUF_RINGS_TO_WALK : RP_STATE_PBUF_RINGS;
	}
}

/* Tags of 6.1 and 6.12 (rsrc_data->tags: tables of 512 u64s,
 * IO_RSRC_TAG_TABLE_SHIFT = PAGE_SHIFT - 3). */
#define RSRC_TAG_TABLE_SHIFT 9
#define RSRC_TAG_TABLE_MASK ((1U << RSRC_TAG_TABLE_SHIFT) - 1)

static __always_inline bool tags_in_nodes(void)
{
	return bpf_core_field_exists(struct io_rsrc_node, tag);
}

static __always_inline bool tags_in_rsrc_data(void)
{
	return bpf_core_field_exists(struct io_ring_ctx, file_data) &&
	       bpf_core_field_exists(struct io_ring_ctx, buf_data) &&
	       bpf_core_field_exists(struct io_rsrc_data, tags);
}

/* The tag of slot `index` of a 6.1/6.12 table (0: none, or unreadable). */
static __always_inline __u64 rsrc_data_tag(struct io_rsrc_data *data, __u32 index)
{
	__u64 **tables, *table, tag = 0;

	if (!data)
		return 0;
	tables = BPF_CORE_READ(data, tags);
	if (!tables)
		return 0;
	if (bpf_probe_read_kernel(&table, sizeof(table), tables + (index >> RSRC_TAG_TABLE_SHIFT)) < 0 ||
	    !table)
		return 0;
	if (bpf_probe_read_kernel(&tag, sizeof(tag), table + (index & RSRC_TAG_TABLE_MASK)) < 0)
		return 0;
	return tag;
}

/* The CPU mask (first 256 CPUs) of a thread's io-wq into out: false when
 * the thread has none or this kernel's layout is not one of the four known
 * (6.3+ io_wq.cpu_mask, 6.1 io_wqe.cpu_mask; each a pointer or inline). */
static __always_inline bool read_iowq_mask(struct task_struct *task, __u64 out[4])
{
	struct io_uring_task *tctx;
	void *wq;
	void *holder;
	bool pointer;
	__u32 offset;
	__u32 size;

	if (!task)
		return false;
	tctx = BPF_CORE_READ(task, io_uring);
	if (!tctx || !bpf_core_field_exists(tctx->io_wq))
		return false;
	wq = BPF_CORE_READ(tctx, io_wq);
	if (!wq)
		return false;
	if (bpf_core_field_exists(((struct io_wq___mask_pointer *)0)->cpu_mask)) {
		holder = wq;
		pointer = true;
		offset = bpf_core_field_offset(struct io_wq___mask_pointer, cpu_mask);
		size = sizeof(struct cpumask);
	} else if (bpf_core_field_exists(((struct io_wq___mask_inline *)0)->cpu_mask)) {
		holder = wq;
		pointer = false;
		offset = bpf_core_field_offset(struct io_wq___mask_inline, cpu_mask);
		size = bpf_core_field_size(struct io_wq___mask_inline, cpu_mask);
	} else if (bpf_core_field_exists(((struct io_wq___per_node *)0)->wqes)) {
		/* 6.1: node 0's io_wqe; the registration sets every node's. */
		if (bpf_probe_read_kernel(&holder, sizeof(holder),
					  wq + bpf_core_field_offset(struct io_wq___per_node, wqes)) < 0 ||
		    !holder)
			return false;
		if (bpf_core_field_exists(((struct io_wqe___mask_pointer *)0)->cpu_mask)) {
			pointer = true;
			offset = bpf_core_field_offset(struct io_wqe___mask_pointer, cpu_mask);
			size = sizeof(struct cpumask);
		} else if (bpf_core_field_exists(((struct io_wqe___mask_inline *)0)->cpu_mask)) {
			pointer = false;
			offset = bpf_core_field_offset(struct io_wqe___mask_inline, cpu_mask);
			size = bpf_core_field_size(struct io_wqe___mask_inline, cpu_mask);
		} else {
			return false;
		}
	} else {
		return false;
	}
	void *mask = holder + offset;
	if (pointer && (bpf_probe_read_kernel(&mask, sizeof(mask), mask) < 0 || !mask))
		return false;
	/* A kernel built for fewer than 256 CPUs has a shorter inline mask:
	 * only its own words are read, the rest stay 0. */
	if (bpf_probe_read_kernel(&out[0], sizeof(__u64), mask) < 0)
		return false;
	for (int word = 1; word < 4; word++) {
		if ((word + 1) * sizeof(__u64) > size)
			break;
		if (bpf_probe_read_kernel(&out[word], sizeof(__u64), mask + word * sizeof(__u64)) < 0)
			return false;
	}
	return true;
}

/* The io-wq affinity of the thread whose io-wq this ring's work goes to:
 * the SQ thread with SQPOLL, else the SINGLE_ISSUER owner, else the thread
 * that last began using the ring. */
static __always_inline void read_iowq_affinity(struct io_ring_ctx *ring, struct rp_ring_record *rec,
					       __u32 *settings)
{
	struct task_struct *task = NULL;
	struct io_sq_data *sq_data = BPF_CORE_READ(ring, sq_data);

	if (sq_data) {
		if (!bpf_core_field_exists(sq_data->thread))
			return;
		task = BPF_CORE_READ(sq_data, thread);
		*settings |= RP_SETTINGS_IOWQ_SQ_THREAD;
	} else {
		if (bpf_core_field_exists(ring->submitter_task))
			task = BPF_CORE_READ(ring, submitter_task);
		if (!task) {
			if (!bpf_core_field_exists(ring->tctx_list))
				return;
			struct list_head *head = &ring->tctx_list;
			struct list_head *first = BPF_CORE_READ(ring, tctx_list.next);
			if (first && first != head)
				task = BPF_CORE_READ((struct io_tctx_node *)((void *)first -
						     bpf_core_field_offset(struct io_tctx_node, ctx_node)),
						     task);
		}
	}
	if (task && read_iowq_mask(task, rec->iowq_cpus))
		rec->iowq_tid = BPF_CORE_READ(task, pid);
	*settings |= RP_SETTINGS_IOWQ_AFFINITY_KNOWN;
}

/* The registered settings: the file allocation range, io-wq limits, NAPI
 * (6.9+) and the registered wait region (6.13+). What a kernel lacks is
 * left out of `settings` and said by userspace. */
static __always_inline void read_settings(struct io_ring_ctx *ring, struct rp_ring_record *rec)
{
	__u32 settings = 0;

	if (!bpf_core_field_exists(ring->file_alloc_start) ||
	    !bpf_core_field_exists(ring->file_alloc_end) ||
	    !bpf_core_field_exists(ring->iowq_limits) ||
	    !bpf_core_field_exists(ring->iowq_limits_set))
		return;
	rec->file_alloc_start = BPF_CORE_READ(ring, file_alloc_start);
	rec->file_alloc_end = BPF_CORE_READ(ring, file_alloc_end);
	rec->iowq_limits[0] = BPF_CORE_READ(ring, iowq_limits[0]);
	rec->iowq_limits[1] = BPF_CORE_READ(ring, iowq_limits[1]);
	if (BPF_CORE_READ_BITFIELD_PROBED(ring, iowq_limits_set))
		settings |= RP_SETTINGS_IOWQ_LIMITS_SET;

	if (bpf_core_field_exists(ring->napi_busy_poll_dt) &&
	    bpf_core_field_exists(ring->napi_prefer_busy_poll) &&
	    bpf_core_field_exists(ring->napi_list)) {
		bool enabled = false;
		if (bpf_core_field_exists(ring->napi_track_mode)) {
			__u8 mode = BPF_CORE_READ(ring, napi_track_mode);
			rec->napi_track_mode = mode;
			settings |= RP_SETTINGS_NAPI_TRACK_MODE | RP_SETTINGS_NAPI_KNOWN;
			/* IO_URING_NAPI_TRACKING_INACTIVE */
			enabled = mode != 255;
		} else if (bpf_core_field_exists(ring->napi_enabled)) {
			enabled = BPF_CORE_READ(ring, napi_enabled);
			settings |= RP_SETTINGS_NAPI_KNOWN;
		}
		if (enabled)
			settings |= RP_SETTINGS_NAPI_ENABLED;
		rec->napi_busy_poll_dt = BPF_CORE_READ(ring, napi_busy_poll_dt);
		if (BPF_CORE_READ(ring, napi_prefer_busy_poll))
			settings |= RP_SETTINGS_NAPI_PREFER_BUSY_POLL;
		struct list_head *head = &ring->napi_list;
		if ((__u64)BPF_CORE_READ(ring, napi_list.next) != (__u64)head)
			settings |= RP_SETTINGS_NAPI_IDS;
	}
	if (bpf_core_field_exists(ring->cq_wait_arg) && bpf_core_field_exists(ring->cq_wait_size)) {
		if (BPF_CORE_READ(ring, cq_wait_arg))
			rec->wait_region_size = BPF_CORE_READ(ring, cq_wait_size);
		settings |= RP_SETTINGS_WAIT_REGION_KNOWN;
		/* The wait arguments are the region's start (cq_wait_arg is
		 * its mapping): its first page tells where the program has it. */
		/* Read straight into the record: this function's stack is at
		 * the verifier's limit. */
		if (rec->wait_region_size && bpf_core_field_exists(ring->param_region)) {
			bpf_core_read(&rec->wait_region_page, sizeof(rec->wait_region_page),
				      &ring->param_region.pages);
			if (rec->wait_region_page)
				bpf_probe_read_kernel(&rec->wait_region_page,
						      sizeof(rec->wait_region_page),
						      (void *)rec->wait_region_page);
			if (BPF_CORE_READ(ring, param_region.flags) & IO_REGION_F_USER_PROVIDED)
				settings |= RP_SETTINGS_WAIT_REGION_USER;
		}
	}
	if ((layout_is_rsrc_nodes() && tags_in_nodes()) ||
	    (layout_is_fixed_files() && tags_in_rsrc_data()))
		settings |= RP_SETTINGS_TAGS_KNOWN;
	read_iowq_affinity(ring, rec, &settings);
	rec->settings = settings;
	rec->state_known |= RP_STATE_SETTINGS;
}

/* All ones when the request reads its ring by pointer, else 0: computed
 * without a branch, so that the verifier walks what follows once, not once
 * per kind of request (a branch here more than doubled the load of
 * ringplan_chunk_fds, measured). */
static __always_inline __u64 by_pointer_mask(struct rp_chunk_request *request)
{
	return 0 - (__u64)(request->by_pointer & 1);
}

/* The ring a request names: the local fd's (a copy of the target's ring
 * fd), or for a ring no fd holds the ctx at expected_ctx itself, which a
 * thread's registered ring-fd slot keeps alive (pass T saw it; the dumper
 * checks after pass B that the slot still holds it, so a ring freed
 * meanwhile is a changed target, not a read of freed memory's values).
 * Either is only ever read with probe reads. */
static __always_inline struct io_ring_ctx *ring_of_request(struct file *file,
							   struct rp_chunk_request *request)
{
	__u64 mask = by_pointer_mask(request);
	return (void *)((request->expected_ctx & mask) | ((__u64)file->private_data & ~mask));
}

static __always_inline void write_ring_record(struct seq_file *seq, struct file *file,
					      struct rp_chunk_request *request, __u32 fd)
{
	struct rp_ring_record rec = {};
	struct io_ring_ctx *ring = ring_of_request(file, request);

	rec.header.kind = RP_RECORD_RING;
	rec.header.size = sizeof(rec);
	rec.ctx = (__u64)ring;
	rec.fd = fd;
	if (request->expected_ctx && rec.ctx != request->expected_ctx) {
		rec.status = RP_CHUNK_OTHER_RING;
		bpf_seq_write(seq, &rec, sizeof(rec));
		return;
	}
	/* A ring read by pointer: its inode comes from pass T (0 here). */
	rec.inode_number = file->f_inode->i_ino & ~by_pointer_mask(request);
	rec.flags = BPF_CORE_READ(ring, flags);
	rec.sq_entries = BPF_CORE_READ(ring, sq_entries);
	rec.cq_entries = BPF_CORE_READ(ring, cq_entries);
	rec.sq_thread_idle = BPF_CORE_READ(ring, sq_thread_idle);

	struct io_sq_data *sq_data = BPF_CORE_READ(ring, sq_data);
	rec.sq_data = (__u64)sq_data;
	if (sq_data)
		rec.sq_cpu = BPF_CORE_READ(sq_data, sq_cpu);

	struct io_ev_fd *ev_fd = BPF_CORE_READ(ring, io_ev_fd);
	if (ev_fd) {
		struct eventfd_ctx *eventfd = BPF_CORE_READ(ev_fd, cq_ev_fd);
		rec.eventfd_ctx = (__u64)eventfd;
		rec.eventfd_async = BPF_CORE_READ_BITFIELD_PROBED(ev_fd, eventfd_async);
		if (eventfd)
			read_eventfd(eventfd, &rec.eventfd_count, &rec.eventfd_flags);
	}

	rec.layout = detect_layout();
	read_table_sizes(ring, &rec.file_slots, &rec.buffer_slots);
	read_ring_state(ring, &rec);
	read_in_flight(ring, &rec);
	read_credentials(ring, &rec);
	read_settings(ring, &rec);
	write_overflow_list(seq, ring, &rec);
	rec.status = RP_CHUNK_OK;
	bpf_seq_write(seq, &rec, sizeof(rec));
}

static __always_inline void write_probe_record(struct seq_file *seq, struct file *file, __u32 fd)
{
	struct rp_probe_record rec = {};

	rec.header.kind = RP_RECORD_PROBE;
	rec.header.size = sizeof(rec);
	rec.f_op = (__u64)file->f_op;
	rec.fd = fd;
	bpf_seq_write(seq, &rec, sizeof(rec));
}

/* State of one chunk's bpf_loop, on the program's stack. */
struct slot_loop {
	struct seq_file *seq;
	/* The table's slot array, read once per chunk: 6.18: io_rsrc_node *[];
	 * 6.1: io_fixed_file[] (files) or io_mapped_ubuf *[] (buffers). */
	void *slots;
	/* 6.1 and 6.12: the table's rsrc_data, for its tags (NULL otherwise). */
	struct io_rsrc_data *tags;
	__u32 start;
	__u32 end;
};

/* The slot array of `table`, or NULL. */
static __always_inline void *table_slots(struct io_ring_ctx *ring, __u32 table)
{
	if (layout_is_rsrc_nodes()) {
		if (table == RP_TABLE_FILES)
			return BPF_CORE_READ(ring, file_table.data.nodes);
		return BPF_CORE_READ(ring, buf_table.nodes);
	}
	if (layout_is_fixed_files()) {
		if (table == RP_TABLE_FILES)
			return BPF_CORE_READ(ring, file_table.files);
		return BPF_CORE_READ(ring, user_bufs);
	}
	return NULL;
}

/* The pointer at `slots[index]` (a node, io_fixed_file.file_ptr, or an
 * io_mapped_ubuf: all one unsigned long wide), or 0. */
static __always_inline unsigned long slot_word(void *slots, __u32 index)
{
	unsigned long word = 0;
	if (bpf_probe_read_kernel(&word, sizeof(word), (unsigned long *)slots + index) < 0)
		return 0;
	return word;
}

static long write_file_slot(__u32 step, void *data)
{
	struct slot_loop *loop = data;
	__u32 index = loop->start + step;

	if (index >= loop->end)
		return 1;
	unsigned long file_ptr = slot_word(loop->slots, index);
	__u64 tag = 0;
	if (layout_is_rsrc_nodes() && file_ptr) {
		struct io_rsrc_node *node = (void *)file_ptr;
		file_ptr = BPF_CORE_READ(node, file_ptr);
		if (tags_in_nodes())
			tag = BPF_CORE_READ(node, tag);
	}
	struct file *file = (void *)(file_ptr & ~REGISTERED_FILE_FLAG_BITS);
	if (!file)
		return 0;
	if (layout_is_fixed_files() && tags_in_rsrc_data())
		tag = rsrc_data_tag(loop->tags, index);

	struct rp_file_slot_record rec = {};
	rec.tag = tag;
	rec.header.kind = RP_RECORD_FILE_SLOT;
	rec.header.size = sizeof(rec);
	rec.index = index;
	rec.file = (__u64)file;
	rec.private_data = (__u64)BPF_CORE_READ(file, private_data);
	rec.pos = BPF_CORE_READ(file, f_pos);
	rec.flags = BPF_CORE_READ(file, f_flags);
	rec.mode = BPF_CORE_READ(file, f_inode, i_mode);
	rec.f_op = (__u64)BPF_CORE_READ(file, f_op);
	/* Userspace tells rings and eventfds apart by f_op. */
	if (eventfd_fops && rec.f_op == eventfd_fops && rec.private_data)
		read_eventfd((void *)rec.private_data, &rec.eventfd_count, &rec.eventfd_flags);
	bpf_seq_write(loop->seq, &rec, sizeof(rec));
	return 0;
}

static long write_buffer_slot(__u32 step, void *data)
{
	struct slot_loop *loop = data;
	__u32 index = loop->start + step;
	struct rp_buffer_slot_record rec = {};

	if (index >= loop->end)
		return 1;
	unsigned long word = slot_word(loop->slots, index);
	if (!word)
		return 0;
	rec.header.kind = RP_RECORD_BUFFER_SLOT;
	rec.header.size = sizeof(rec);
	rec.index = index;

	if (layout_is_rsrc_nodes()) {
		struct io_rsrc_node *node = (void *)word;
		struct io_mapped_ubuf *buf = BPF_CORE_READ(node, buf);
		if (!buf)
			return 0;
		rec.addr = BPF_CORE_READ(buf, ubuf);
		rec.len = BPF_CORE_READ(buf, len);
		if (bpf_core_field_exists(buf->is_kbuf))
			rec.kernel_buffer = BPF_CORE_READ(buf, is_kbuf);
		if (tags_in_nodes())
			rec.tag = BPF_CORE_READ(node, tag);
	} else if (layout_is_fixed_files()) {
		struct io_mapped_ubuf *buf = (void *)word;
		__u64 start = BPF_CORE_READ(buf, ubuf);
		/* An empty slot points at a dummy buffer whose ubuf is -1 (6.1:
		 * ctx->dummy_ubuf, end 0; 6.12: a static one, len UINT_MAX). */
		if (start == ~0ULL)
			return 0;
		rec.addr = start;
		/* 6.1 keeps the end address; 6.12 (same tables) the length. */
		if (bpf_core_field_exists(buf->ubuf_end)) {
			__u64 end = BPF_CORE_READ(buf, ubuf_end);
			if (end < start)
				return 0;
			rec.len = end - start;
		} else {
			rec.len = BPF_CORE_READ(buf, len);
		}
		if (tags_in_rsrc_data())
			rec.tag = rsrc_data_tag(loop->tags, index);
	} else {
		return 1;
	}
	bpf_seq_write(loop->seq, &rec, sizeof(rec));
	return 0;
}

/* A personalities chunk: the chunk record (table_size is the count now,
 * scanned the personalities written), then one record per personality of
 * ordinals [start, start + count). */
static __always_inline void write_personalities_chunk(struct seq_file *seq, struct io_ring_ctx *ring,
						      struct rp_chunk_request *request,
						      struct rp_chunk_record *rec)
{
	__u32 total = 0, written = 0;
	if (!bpf_core_field_exists(ring->personalities) ||
	    !walk_personalities(ring, NULL, 0, 0, &total, count_personalities_in_chunk)) {
		rec->status = RP_CHUNK_UNKNOWN_LAYOUT;
		bpf_seq_write(seq, rec, sizeof(*rec));
		return;
	}
	__u32 count = request->count < RP_PERSONALITIES_PER_CHUNK ? request->count
								 : RP_PERSONALITIES_PER_CHUNK;
	if (rec->start >= total)
		count = 0;
	else if (count > total - rec->start)
		count = total - rec->start;
	rec->table_size = total;
	rec->scanned = count;
	rec->status = RP_CHUNK_OK;
	bpf_seq_write(seq, rec, sizeof(*rec));
	if (count)
		walk_personalities(ring, seq, rec->start, rec->start + count, &written,
				   write_personalities);
}

/* A buffer-groups chunk, as a personalities chunk: groups of ordinals
 * [start, start + count). */
static __always_inline void write_pbuf_rings_chunk(struct seq_file *seq, struct io_ring_ctx *ring,
						   struct rp_chunk_request *request,
						   struct rp_chunk_record *rec)
{
	__u32 total = 0, written = 0;
	if (!bpf_core_field_exists(ring->io_bl_xa) ||
	    !walk_pbuf_rings(ring, NULL, 0, 0, &total, count_pbuf_rings_in_chunk)) {
		rec->status = RP_CHUNK_UNKNOWN_LAYOUT;
		bpf_seq_write(seq, rec, sizeof(*rec));
		return;
	}
	__u32 count = request->count < RP_PBUF_RINGS_PER_CHUNK ? request->count
							       : RP_PBUF_RINGS_PER_CHUNK;
	if (rec->start >= total)
		count = 0;
	else if (count > total - rec->start)
		count = total - rec->start;
	rec->table_size = total;
	rec->scanned = count;
	rec->status = RP_CHUNK_OK;
	bpf_seq_write(seq, rec, sizeof(*rec));
	if (count)
		walk_pbuf_rings(ring, seq, rec->start, rec->start + count, &written,
				write_pbuf_rings);
}

/* Fills the common part of a chunk record and finds its ring; false when
 * the fd now refers to another ring (the record, written, says so). */
static __always_inline bool begin_chunk(struct seq_file *seq, struct file *file,
					struct rp_chunk_request *request, __u32 fd,
					struct rp_chunk_record *rec, struct io_ring_ctx **ring)
{
	rec->header.kind = RP_RECORD_CHUNK;
	rec->header.size = sizeof(*rec);
	rec->fd = fd;
	rec->table = request->table;
	rec->start = request->start;
	rec->layout = detect_layout();

	*ring = ring_of_request(file, request);
	rec->ctx = (__u64)*ring;
	if (request->expected_ctx && rec->ctx != request->expected_ctx) {
		rec->status = RP_CHUNK_OTHER_RING;
		bpf_seq_write(seq, rec, sizeof(*rec));
		return false;
	}
	rec->sq_thread_idle = BPF_CORE_READ(*ring, sq_thread_idle);
	return true;
}

static __always_inline void write_chunk(struct seq_file *seq, struct file *file,
					struct rp_chunk_request *request, __u32 fd)
{
	struct rp_chunk_record rec = {};
	struct io_ring_ctx *ring;

	if (!begin_chunk(seq, file, request, fd, &rec, &ring))
		return;
	if (request->table == RP_TABLE_PERSONALITIES || request->table == RP_TABLE_PBUF_RINGS) {
		rec.status = RP_CHUNK_OTHER_PROGRAM;
		bpf_seq_write(seq, &rec, sizeof(rec));
		return;
	}
	if (rec.layout == RP_LAYOUT_UNKNOWN) {
		rec.status = RP_CHUNK_UNKNOWN_LAYOUT;
		bpf_seq_write(seq, &rec, sizeof(rec));
		return;
	}

	__u32 file_slots = 0, buffer_slots = 0;
	read_table_sizes(ring, &file_slots, &buffer_slots);
	__u32 limit = request->table == RP_TABLE_FILES ? RP_FILE_SLOTS_PER_CHUNK
						       : RP_BUFFER_SLOTS_PER_CHUNK;
	rec.table_size = request->table == RP_TABLE_FILES ? file_slots : buffer_slots;
	__u32 count = request->count < limit ? request->count : limit;
	if (rec.start >= rec.table_size)
		count = 0;
	else if (count > rec.table_size - rec.start)
		count = rec.table_size - rec.start;
	void *slots = table_slots(ring, request->table);
	/* No slot array: answer "nothing scanned", which userspace reports. */
	if (!slots)
		count = 0;
	rec.scanned = count;
	rec.status = RP_CHUNK_OK;
	bpf_seq_write(seq, &rec, sizeof(rec));

	struct slot_loop loop = {
		.seq = seq,
		.slots = slots,
		.start = rec.start,
		.end = rec.start + count,
	};
	if (layout_is_fixed_files() && tags_in_rsrc_data())
		loop.tags = request->table == RP_TABLE_FILES ? BPF_CORE_READ(ring, file_data)
							     : BPF_CORE_READ(ring, buf_data);
	if (request->table == RP_TABLE_FILES)
		bpf_loop(count, write_file_slot, &loop, 0);
	else if (request->table == RP_TABLE_BUFFERS)
		bpf_loop(count, write_buffer_slot, &loop, 0);
}

SEC("iter/task_file")
int ringplan_chunk_fds(struct bpf_iter__task_file *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct file *file = ctx->file;
	__u32 fd = ctx->fd;

	/* The link is limited to the dumper's own process (kernels before
	 * 6.1 refuse such a link), so every fd seen is the dumper's; only
	 * those with a request are answered. */
	if (!ctx->task || !file)
		return 0;
	struct rp_chunk_request *request = bpf_map_lookup_elem(&chunk_requests, &fd);
	if (!request)
		return 0;

	if (request->kind == RP_REQUEST_RING)
		write_ring_record(seq, file, request, fd);
	else if (request->kind == RP_REQUEST_CHUNK)
		write_chunk(seq, file, request, fd);
	else if (request->kind == RP_REQUEST_PROBE)
		write_probe_record(seq, file, fd);
	return 0;
}

/* How many personalities and buffer groups a ring has: the walks that
 * read_credentials left to this program. */
static __always_inline void write_walk_counts(struct seq_file *seq, struct file *file,
					      struct rp_chunk_request *request, __u32 fd)
{
	struct rp_walk_counts_record rec = {};
	struct io_ring_ctx *ring = ring_of_request(file, request);

	rec.header.kind = RP_RECORD_WALK_COUNTS;
	rec.header.size = sizeof(rec);
	rec.ctx = (__u64)ring;
	rec.fd = fd;
	if (request->expected_ctx && rec.ctx != request->expected_ctx) {
		rec.status = RP_CHUNK_OTHER_RING;
		bpf_seq_write(seq, &rec, sizeof(rec));
		return;
	}
	if (bpf_core_field_exists(ring->personalities) && bpf_core_field_exists(ring->pers_next) &&
	    walk_personalities(ring, NULL, 0, 0, &rec.personality_count,
			       count_personalities_in_header))
		rec.state_known |= RP_STATE_PERSONALITIES;
	if (bpf_core_field_exists(ring->io_bl_xa) &&
	    walk_pbuf_rings(ring, NULL, 0, 0, &rec.pbuf_count, count_pbuf_rings_in_header))
		rec.state_known |= RP_STATE_PBUF_RINGS;
	rec.status = RP_CHUNK_OK;
	bpf_seq_write(seq, &rec, sizeof(rec));
}

static __always_inline void write_walk_chunk(struct seq_file *seq, struct file *file,
					     struct rp_chunk_request *request, __u32 fd)
{
	struct rp_chunk_record rec = {};
	struct io_ring_ctx *ring;

	if (!begin_chunk(seq, file, request, fd, &rec, &ring))
		return;
	if (request->table == RP_TABLE_PERSONALITIES) {
		write_personalities_chunk(seq, ring, request, &rec);
	} else if (request->table == RP_TABLE_PBUF_RINGS) {
		write_pbuf_rings_chunk(seq, ring, request, &rec);
	} else {
		rec.status = RP_CHUNK_OTHER_PROGRAM;
		bpf_seq_write(seq, &rec, sizeof(rec));
	}
}

/* Legacy provided-buffer groups (IORING_OP_PROVIDE_BUFFERS): the group's
 * bl->buf_list is a list of struct io_buffer, taken by the kernel from
 * the head and provided at the tail, so the walk writes it in list order. */

/* The io_buffer_list of group bgid, as the kernel finds it
 * (io_buffer_get_list): on 6.1 the low-bgid array when allocated, else
 * the xarray, looked up by index one level per step. 0: none. */
static __always_inline __u64 find_buffer_group(struct io_ring_ctx *ring, __u32 bgid)
{
	if (bpf_core_field_exists(ring->io_bl) && bgid < RP_BGID_ARRAY) {
		__u64 array = (__u64)BPF_CORE_READ(ring, io_bl);
		if (array)
			return array + bgid * bpf_core_type_size(struct io_buffer_list);
	}
	__u64 entry = (__u64)BPF_CORE_READ(ring, io_bl_xa.xa_head);
	if (!xa_entry_is_node(entry))
		return bgid == 0 && entry && (entry & 3) == 0 ? entry : 0;
	__u64 slots_offset = bpf_core_field_offset(struct xa_node, slots);
	for (__u32 level = 0; level < RP_MAX_XA_DEPTH; level++) {
		__u64 node = entry - XA_NODE_TAG;
		struct xa_node *xa = (void *)node;
		__u32 shift = BPF_CORE_READ(xa, shift);
		if (shift > 48)
			return 0;
		if (level == 0 && ((__u64)bgid >> shift) > XA_CHUNK_MASK)
			return 0;
		__u64 offset = ((__u64)bgid >> shift) & XA_CHUNK_MASK;
		__u64 slot = 0;
		if (bpf_probe_read_kernel(&slot, sizeof(slot), (void *)(node + slots_offset + offset * 8)) < 0)
			return 0;
		if (xa_entry_is_node(slot)) {
			if (shift == 0)
				return 0;
			entry = slot;
			continue;
		}
		if (!slot || (slot & 3) != 0 || shift != 0)
			return 0;
		return slot;
	}
	return 0;
}

/* Whether a group is a buffer ring (as write_pbuf_ring tells them). */
static __always_inline bool buffer_group_is_ring(struct io_buffer_list *bl)
{
	if (bpf_core_field_exists(bl->flags))
		return BPF_CORE_READ(bl, flags) & IOBL_BUF_RING;
	return BPF_CORE_READ(bl, buf_nr_pages) != 0;
}

/* The second word of a list_head (prev), read as read_next reads the
 * first: a list_head is { next, prev } on every kernel. 0 when unreadable. */
static __always_inline __u64 read_prev(__u64 node)
{
	__u64 prev = 0;
	bpf_probe_read_kernel(&prev, sizeof(prev), (void *)(node + sizeof(__u64)));
	return prev;
}

/* State of a legacy list walk's bpf_loop, on the program's stack. */
struct legacy_walk {
	struct seq_file *seq;
	__u64 head;             /* &bl->buf_list: the walk ends back here */
	__u64 node;             /* the next node */
	__u64 prev;             /* the node walked last (a checkpoint's prev) */
	__u64 fingerprint;
	__u32 seen;             /* the next node's position in the list */
	__u32 end;              /* past the last position to write */
	__u32 limit;            /* the position the walk stops at */
	__u32 written;
	__u32 visited;
	__u32 bgid;
	__u32 state;            /* enum rp_legacy_list_state, once ended */
	bool first;             /* the first range: writes checkpoints */
	bool ended;
};

#define FINGERPRINT_PRIME 0x100000001b3ULL

/* One step of a legacy list walk: the buffer at position walk->seen. The
 * first range (start 0) walks the whole list, for its length and hash,
 * and writes a checkpoint where each later range starts; a later range
 * walks only its own positions, from its checkpoint's node. So each node
 * is read twice in all, whatever the list's length. */
static long write_legacy_buffer(__u32 step, void *data)
{
	struct legacy_walk *walk = data;
	struct rp_legacy_buffer_record rec = {};

	if (walk->node == walk->head) {
		walk->state = RP_LEGACY_LIST_WHOLE;
		walk->ended = true;
		return 1;
	}
	if (walk->seen >= RP_MAX_LEGACY_BUFFERS) {
		walk->state = RP_LEGACY_LIST_TOO_LONG;
		walk->ended = true;
		return 1;
	}
	if (walk->seen >= walk->limit) {
		walk->state = RP_LEGACY_LIST_PART;
		walk->ended = true;
		return 1;
	}
	if (walk->first && walk->seen && walk->seen % RP_LEGACY_BUFFERS_PER_CHUNK == 0) {
		struct rp_legacy_checkpoint_record point = {
			.header.kind = RP_RECORD_LEGACY_CHECKPOINT,
			.header.size = sizeof(point),
			.node = walk->node,
			.prev = walk->prev,
			.fingerprint = walk->fingerprint,
			.bgid = walk->bgid,
			.index = walk->seen,
		};
		bpf_seq_write(walk->seq, &point, sizeof(point));
	}
	__u64 next = read_next(walk->node);
	walk->visited++;
	if (!next) {
		walk->state = RP_LEGACY_LIST_BROKEN;
		walk->ended = true;
		return 1;
	}
	struct io_buffer *buf = (void *)(walk->node - bpf_core_field_offset(struct io_buffer, list));
	rec.addr = BPF_CORE_READ(buf, addr);
	rec.len = BPF_CORE_READ(buf, len);
	rec.bid = BPF_CORE_READ(buf, bid);
	__u64 h = walk->fingerprint;
	h = (h ^ walk->node) * FINGERPRINT_PRIME;
	h = (h ^ rec.addr) * FINGERPRINT_PRIME;
	h = (h ^ ((__u64)rec.len << 16 | rec.bid)) * FINGERPRINT_PRIME;
	walk->fingerprint = h;
	if (walk->seen < walk->end) {
		rec.header.kind = RP_RECORD_LEGACY_BUFFER;
		rec.header.size = sizeof(rec);
		rec.bgid = walk->bgid;
		rec.index = walk->seen;
		bpf_seq_write(walk->seq, &rec, sizeof(rec));
		walk->written++;
	}
	walk->seen++;
	walk->prev = walk->node;
	walk->node = next;
	return 0;
}

/* A legacy-buffers request: the buffers of group request->bgid at list
 * positions [start, start + count), then the list record. Start 0 walks
 * the whole list from its head: the list record says whether it reached
 * the end and hashes all of it, and a checkpoint record before it marks
 * each later range's start. A later start walks only its range, from the
 * checkpoint's node its request carries, after checking that the group's
 * list head is the same and that the node still follows the checkpoint's
 * prev; userspace checks that the range ends at the next checkpoint (node
 * and hash) or, for the last, at the head with the whole list's hash. So
 * a list that changed between the answers is never assembled from parts
 * of different lists. Read without the ring's lock: only a frozen
 * target's list holds still. */
static __always_inline void write_legacy_buffers(struct seq_file *seq, struct file *file,
						 struct rp_chunk_request *request, __u32 fd)
{
	struct rp_legacy_list_record rec = {};
	struct io_ring_ctx *ring = ring_of_request(file, request);

	rec.header.kind = RP_RECORD_LEGACY_LIST;
	rec.header.size = sizeof(rec);
	rec.ctx = (__u64)ring;
	rec.fd = fd;
	rec.bgid = request->bgid;
	rec.start = request->start;
	if (request->expected_ctx && rec.ctx != request->expected_ctx) {
		rec.status = RP_CHUNK_OTHER_RING;
		bpf_seq_write(seq, &rec, sizeof(rec));
		return;
	}
	if (!bpf_core_field_exists(ring->io_bl_xa)) {
		rec.status = RP_CHUNK_UNKNOWN_LAYOUT;
		bpf_seq_write(seq, &rec, sizeof(rec));
		return;
	}
	__u64 group = find_buffer_group(ring, request->bgid);
	struct io_buffer_list *bl = (void *)group;
	if (!group || BPF_CORE_READ(bl, bgid) != request->bgid || buffer_group_is_ring(bl)) {
		rec.state = RP_LEGACY_LIST_NOT_LEGACY;
		bpf_seq_write(seq, &rec, sizeof(rec));
		return;
	}
	__u32 count = request->count < RP_LEGACY_BUFFERS_PER_CHUNK ? request->count
								  : RP_LEGACY_BUFFERS_PER_CHUNK;
	__u64 head = group + bpf_core_field_offset(struct io_buffer_list, buf_list);
	bool first = request->start == 0;
	rec.head = head;
	if (!first && (request->legacy_head != head || request->legacy_node == head ||
		       read_prev(request->legacy_node) != request->legacy_prev)) {
		rec.state = RP_LEGACY_LIST_MOVED;
		bpf_seq_write(seq, &rec, sizeof(rec));
		return;
	}
	/* The fields the callback changes start as values the verifier does
	 * not know (see walk_personalities). */
	struct legacy_walk walk = {
		.seq = seq,
		.head = head,
		.node = first ? read_next(head) : request->legacy_node,
		.prev = first ? head : request->legacy_prev,
		.fingerprint = first ? opaque_zero : request->legacy_fingerprint,
		.seen = request->start,
		.end = request->start + count,
		.limit = first ? RP_MAX_LEGACY_BUFFERS : request->start + count,
		.written = opaque_zero,
		.visited = opaque_zero,
		.bgid = request->bgid,
		.state = RP_LEGACY_LIST_BROKEN + opaque_zero,
		.first = first,
		.ended = opaque_zero != 0,
	};
	bpf_loop((first ? RP_MAX_LEGACY_BUFFERS : count) + 1, write_legacy_buffer, &walk, 0);
	rec.fingerprint = walk.fingerprint;
	rec.next = walk.node;
	rec.written = walk.written;
	rec.visited = walk.visited;
	rec.length = walk.seen;
	rec.state = walk.ended ? walk.state : RP_LEGACY_LIST_TOO_LONG;
	bpf_seq_write(seq, &rec, sizeof(rec));
}

/* A pending-requests request: the ring's pending request records, then
 * the list record. */
static __always_inline void write_pending_answer(struct seq_file *seq, struct file *file,
						 struct rp_chunk_request *request, __u32 fd)
{
	struct rp_pending_list_record rec = {};
	struct io_ring_ctx *ring = ring_of_request(file, request);

	rec.header.kind = RP_RECORD_PENDING_LIST;
	rec.header.size = sizeof(rec);
	rec.ctx = (__u64)ring;
	rec.fd = fd;
	if (request->expected_ctx && rec.ctx != request->expected_ctx) {
		rec.status = RP_CHUNK_OTHER_RING;
		bpf_seq_write(seq, &rec, sizeof(rec));
		return;
	}
	write_pending_requests(seq, ring, &rec);
	rec.status = RP_CHUNK_OK;
	bpf_seq_write(seq, &rec, sizeof(rec));
}

/* State of a NAPI list walk (bpf_loop), on the program's stack. */
struct napi_loop {
	struct seq_file *seq;
	__u64 ctx;
	__u64 head;
	__u64 node;
	__u32 index;
	bool ended;
};

/* Writes the NAPI id of the current entry and steps to the next; stops
 * at the list's head. */
static long write_napi_id(__u32 step, void *data)
{
	struct napi_loop *loop = data;
	struct rp_napi_id_record rec = {};

	if (!loop->node || loop->node == loop->head) {
		loop->ended = true;
		return 1;
	}
	if (loop->index >= RP_MAX_NAPI_IDS)
		return 1;
	struct io_napi_entry *entry =
		(void *)(loop->node - bpf_core_field_offset(struct io_napi_entry, list));
	rec.header.kind = RP_RECORD_NAPI_ID;
	rec.header.size = sizeof(rec);
	rec.ctx = loop->ctx;
	rec.napi_id = BPF_CORE_READ(entry, napi_id);
	rec.index = loop->index;
	bpf_seq_write(loop->seq, &rec, sizeof(rec));
	loop->index++;
	/* Through a local: BPF_CORE_READ relocates every access in its
	 * argument, and the loop's own struct is not the kernel's. */
	struct list_head *node = (void *)loop->node;
	loop->node = (__u64)BPF_CORE_READ(node, next);
	return 0;
}

/* A NAPI-ids request: the ring's NAPI ids in list order, then the list
 * record, which says how many came and whether they are all. */
static __always_inline void write_napi_answer(struct seq_file *seq, struct file *file,
					      struct rp_chunk_request *request, __u32 fd)
{
	struct rp_napi_list_record rec = {};
	struct io_ring_ctx *ring = ring_of_request(file, request);

	rec.header.kind = RP_RECORD_NAPI_LIST;
	rec.header.size = sizeof(rec);
	rec.ctx = (__u64)ring;
	rec.fd = fd;
	if (request->expected_ctx && rec.ctx != request->expected_ctx) {
		rec.status = RP_CHUNK_OTHER_RING;
		bpf_seq_write(seq, &rec, sizeof(rec));
		return;
	}
	if (bpf_core_field_exists(ring->napi_list)) {
		struct napi_loop loop = {
			.seq = seq,
			.ctx = (__u64)ring,
			.head = (__u64)&ring->napi_list,
			/* Not a constant 0 to the verifier (see
			 * walk_hash_table). */
			.index = opaque_zero,
		};

		loop.node = (__u64)BPF_CORE_READ(ring, napi_list.next);
		bpf_loop(RP_MAX_NAPI_IDS + 1, write_napi_id, &loop, 0);
		rec.whole = loop.ended;
		rec.listed = loop.index;
	}
	rec.status = RP_CHUNK_OK;
	bpf_seq_write(seq, &rec, sizeof(rec));
}

/*
 * ringplan_walk_fds (pass B's walks) answers, like ringplan_chunk_fds and
 * over the same chunk_requests map, the requests that walk a ring's
 * personalities xarray and its provided-buffer groups (walk counts, the
 * chunks of those two tables, and the buffers of legacy groups) and its
 * requests waiting on their own (cancel hash tables, timeout lists). It
 * is its own program because the verifier checks each bpf_loop callback
 * at each call site (6.1's cannot share one): these walks cost several
 * times the rest of pass B to verify. Its autoload is off: the dumper
 * loads it (a second instance of this object, only this program) the
 * first time a ring record says RP_STATE_*_TO_WALK or its counters say
 * requests are in flight, and keeps it.
 */
SEC("iter/task_file")
int ringplan_walk_fds(struct bpf_iter__task_file *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct file *file = ctx->file;
	__u32 fd = ctx->fd;

	if (!ctx->task || !file)
		return 0;
	struct rp_chunk_request *request = bpf_map_lookup_elem(&chunk_requests, &fd);
	if (!request)
		return 0;

	if (request->kind == RP_REQUEST_WALK_COUNTS)
		write_walk_counts(seq, file, request, fd);
	else if (request->kind == RP_REQUEST_CHUNK)
		write_walk_chunk(seq, file, request, fd);
	else if (request->kind == RP_REQUEST_LEGACY_BUFFERS)
		write_legacy_buffers(seq, file, request, fd);
	else if (request->kind == RP_REQUEST_PENDING)
		write_pending_answer(seq, file, request, fd);
	else if (request->kind == RP_REQUEST_NAPI_IDS)
		write_napi_answer(seq, file, request, fd);
	return 0;
}

/*
 * ringplan_target_threads (pass T) runs over every thread of the target
 * (an iter/task link limited to the target's pidfd visits each thread;
 * the task_file iterator of pass A visits one task per fd table, so it
 * cannot see per-thread state). For each thread it writes an
 * rp_thread_record and one rp_ring_fd_record per occupied slot of the
 * thread's registered ring fds (task->io_uring->registered_rings,
 * IORING_REGISTER_RING_FDS): the ring's file, its ctx, its inode. A ring
 * held only by such a slot is found here and nowhere else.
 */
/* State of a thread's slot walk (bpf_loop), on the program's stack. */
struct ring_fd_loop {
	struct seq_file *seq;
	__u64 slots[RP_RING_FD_SLOTS];
	__u32 tid;
	__u32 occupied;
};

/* Writes slot `offset`'s record when it holds a ring. One callback that
 * the verifier checks once: an unrolled loop over 16 slots that may each
 * be empty or not multiplied the states it walked (it tripled a whole
 * dump's time, measured). */
static long write_ring_fd_slot(__u32 offset, void *data)
{
	struct ring_fd_loop *loop = data;
	struct rp_ring_fd_record rec = {};

	if (offset >= RP_RING_FD_SLOTS)
		return 1;
	struct file *file = (void *)loop->slots[offset];
	if (!file)
		return 0;
	rec.header.kind = RP_RECORD_RING_FD;
	rec.header.size = sizeof(rec);
	rec.file = (__u64)file;
	rec.f_op = (__u64)BPF_CORE_READ(file, f_op);
	rec.ctx = (__u64)BPF_CORE_READ(file, private_data);
	rec.inode_number = BPF_CORE_READ(file, f_inode, i_ino);
	rec.tid = loop->tid;
	rec.offset = offset;
	bpf_seq_write(loop->seq, &rec, sizeof(rec));
	loop->occupied++;
	return 0;
}

SEC("iter/task")
int ringplan_target_threads(struct bpf_iter__task *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;
	struct rp_thread_record thread = {};
	struct ring_fd_loop loop = {};

	if (!task)
		return 0;
	thread.header.kind = RP_RECORD_THREAD;
	thread.header.size = sizeof(thread);
	thread.tid = task->pid;
	thread.slots = bpf_core_field_size(struct io_uring_task, registered_rings) / sizeof(__u64);
	if (!bpf_core_field_exists(task->io_uring) || thread.slots != RP_RING_FD_SLOTS) {
		thread.status = RP_THREAD_UNKNOWN_LAYOUT;
		bpf_seq_write(seq, &thread, sizeof(thread));
		return 0;
	}
	struct io_uring_task *tctx = BPF_CORE_READ(task, io_uring);
	if (tctx && bpf_probe_read_kernel(loop.slots, sizeof(loop.slots),
					  (void *)tctx + bpf_core_field_offset(struct io_uring_task,
									       registered_rings)) < 0) {
		thread.status = RP_THREAD_UNREADABLE;
		bpf_seq_write(seq, &thread, sizeof(thread));
		return 0;
	}
	loop.seq = seq;
	loop.tid = thread.tid;
	loop.occupied = opaque_zero;
	if (tctx)
		bpf_loop(RP_RING_FD_SLOTS, write_ring_fd_slot, &loop, 0);
	/* After its slots: userspace files records by tid, not by order. */
	thread.occupied = loop.occupied;
	bpf_seq_write(seq, &thread, sizeof(thread));
	return 0;
}
