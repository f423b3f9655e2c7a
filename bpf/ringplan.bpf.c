// SPDX-License-Identifier: GPL-2.0-only OR MIT
/*
 * ringplan's BPF reader of io_uring state: two iter/task_file programs.
 *
 * ringplan_target_fds (pass A) runs over the target process's fds and writes,
 * for each, an rp_fd_record (file identity, flags, position, mode, cloexec,
 * role, d_path text); for an io_uring fd also an rp_ring_record (setup
 * parameters, SQ thread, eventfd, table sizes), for an eventfd fd an
 * rp_eventfd_record.
 *
 * ringplan_chunk_fds (pass B) runs over the dumper's own fds. The dumper has
 * copied a ring fd of the target into itself (pidfd_getfd) and duplicated
 * it once per chunk of a registered table it wants read; the chunk_requests
 * map says, per local fd, which table and slot range. The program answers
 * each request with an rp_chunk_record and one slot record per occupied
 * slot. Chunking exists because one iterator object (one fd visit) can
 * write at most 32 KiB: a table of 19,000 files cannot be written by one
 * visit, but 60 visits of 320 slots each fit.
 *
 * Both programs only read kernel memory and write to the seq_file: an object
 * shown twice (the kernel re-shows an object that overflowed the buffer)
 * writes the same records twice, which userspace drops. The per-CPU path
 * scratch map is the only map written, and only as a buffer.
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

/* Low bits of a registered file pointer are flags (FFS_NOWAIT, FFS_ISREG,
 * and FFS_SCM on 6.1); struct file is at least 8-byte aligned. */
#define REGISTERED_FILE_FLAG_BITS 7UL
#define BITS_PER_LONG (sizeof(unsigned long) * 8)
#define MAX_CHUNK_REQUESTS 1024

/* 0 when libbpf found no kernel config (no /proc/config.gz or
 * /boot/config-$(uname -r)); userspace then measures HZ. */
extern unsigned int CONFIG_HZ __kconfig __weak;

struct path_scratch {
	char path[RP_PATH_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct path_scratch);
} path_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_CHUNK_REQUESTS);
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

static __always_inline bool name_is(const char *name, const char *expected, int expected_len)
{
	for (int i = 0; i < expected_len; i++)
		if (name[i] != expected[i])
			return false;
	return true;
}

/* The role of a file whose dentry is `dentry`, named `name`.
 *
 * io_uring and eventfd files are anon-inode files named "[io_uring]" and
 * "[eventfd]". Their file_operations would be a better test, but those are
 * data symbols that kallsyms lacks without CONFIG_KALLSYMS_ALL. Pseudo files
 * have a dentry that is its own parent, which keeps a regular file named
 * "[io_uring]" from matching (checked this way rather than through the
 * superblock's magic to spare one relocated type; see kernel_types.h). */
static __always_inline __u32 role_of_dentry(bool is_own_parent, const unsigned char *name_ptr)
{
	char name[16] = {};

	if (!is_own_parent || !name_ptr)
		return RP_ROLE_PLAIN;
	if (bpf_probe_read_kernel_str(name, sizeof(name), name_ptr) < 0)
		return RP_ROLE_PLAIN;
	/* Compare the terminating NUL too. */
	if (name_is(name, "[io_uring]", sizeof("[io_uring]")))
		return RP_ROLE_RING;
	if (name_is(name, "[eventfd]", sizeof("[eventfd]")))
		return RP_ROLE_EVENTFD;
	return RP_ROLE_PLAIN;
}

/* file_role for a file pointer the verifier knows (ctx->file): direct
 * loads, which cost far less than probe reads. */
static __always_inline __u32 trusted_file_role(struct file *file)
{
	struct dentry *dentry = file->f_path.dentry;
	if (!dentry || dentry->d_parent != dentry)
		return RP_ROLE_PLAIN;
	return role_of_dentry(true, dentry->d_name.name);
}

/* file_role for a file pointer read out of kernel memory: probe reads. */
static __always_inline __u32 file_role(struct file *file)
{
	struct dentry *dentry = BPF_CORE_READ(file, f_path.dentry);
	if (!dentry || BPF_CORE_READ(dentry, d_parent) != dentry)
		return RP_ROLE_PLAIN;
	return role_of_dentry(true, BPF_CORE_READ(dentry, d_name.name));
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

static __always_inline void write_ring_record(struct seq_file *seq, struct io_ring_ctx *ring,
					      __u32 fd, __u64 inode_number)
{
	struct rp_ring_record rec = {};

	rec.header.kind = RP_RECORD_RING;
	rec.header.size = sizeof(rec);
	rec.ctx = (__u64)ring;
	rec.fd = fd;
	rec.inode_number = inode_number;
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
		if (eventfd) {
			rec.eventfd_count = BPF_CORE_READ(eventfd, count);
			rec.eventfd_flags = BPF_CORE_READ(eventfd, flags);
		}
	}

	rec.layout = detect_layout();
	read_table_sizes(ring, &rec.file_slots, &rec.buffer_slots);
	rec.hz = CONFIG_HZ;
	bpf_seq_write(seq, &rec, sizeof(rec));
}

static __always_inline void write_eventfd_record(struct seq_file *seq, struct eventfd_ctx *eventfd,
						 __u32 fd)
{
	struct rp_eventfd_record rec = {};

	rec.header.kind = RP_RECORD_EVENTFD;
	rec.header.size = sizeof(rec);
	rec.ctx = (__u64)eventfd;
	rec.count = BPF_CORE_READ(eventfd, count);
	rec.flags = BPF_CORE_READ(eventfd, flags);
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
	rec.private_data = (__u64)file->private_data;
	rec.pos = file->f_pos;
	struct inode *inode = file->f_inode;
	rec.inode_number = inode->i_ino;
	rec.fd = ctx->fd;
	rec.flags = file->f_flags;
	rec.mode = inode->i_mode;
	rec.role = trusted_file_role(file);
	rec.cloexec = fd_cloexec(task, ctx->fd);

	/* bpf_d_path returns the length including the NUL; keep the text only. */
	long path_len = bpf_d_path(&file->f_path, scratch->path, sizeof(scratch->path));
	if (path_len > 1 && path_len <= RP_PATH_MAX)
		path_len -= 1;
	else if (path_len >= 0)
		path_len = 0;
	rec.path_len = path_len;
	rec.header.size = sizeof(rec) + (path_len > 0 ? path_len : 0);
	bpf_seq_write(seq, &rec, sizeof(rec));
	if (path_len > 0 && path_len < RP_PATH_MAX)
		bpf_seq_write(seq, scratch->path, path_len);

	if (rec.role == RP_ROLE_RING)
		write_ring_record(seq, (struct io_ring_ctx *)rec.private_data, rec.fd,
				  rec.inode_number);
	else if (rec.role == RP_ROLE_EVENTFD)
		write_eventfd_record(seq, (struct eventfd_ctx *)rec.private_data, rec.fd);
	return 0;
}

/* State of one chunk's bpf_loop, on the program's stack. */
struct slot_loop {
	struct seq_file *seq;
	/* The table's slot array, read once per chunk: 6.18: io_rsrc_node *[];
	 * 6.1: io_fixed_file[] (files) or io_mapped_ubuf *[] (buffers). */
	void *slots;
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
	if (layout_is_rsrc_nodes() && file_ptr) {
		struct io_rsrc_node *node = (void *)file_ptr;
		file_ptr = BPF_CORE_READ(node, file_ptr);
	}
	struct file *file = (void *)(file_ptr & ~REGISTERED_FILE_FLAG_BITS);
	if (!file)
		return 0;

	struct rp_file_slot_record rec = {};
	rec.header.kind = RP_RECORD_FILE_SLOT;
	rec.header.size = sizeof(rec);
	rec.index = index;
	rec.file = (__u64)file;
	rec.private_data = (__u64)BPF_CORE_READ(file, private_data);
	rec.pos = BPF_CORE_READ(file, f_pos);
	rec.flags = BPF_CORE_READ(file, f_flags);
	rec.mode = BPF_CORE_READ(file, f_inode, i_mode);
	rec.role = file_role(file);
	if (rec.role == RP_ROLE_EVENTFD && rec.private_data) {
		struct eventfd_ctx *eventfd = (void *)rec.private_data;
		rec.eventfd_count = BPF_CORE_READ(eventfd, count);
		rec.eventfd_flags = BPF_CORE_READ(eventfd, flags);
	}
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
	} else if (layout_is_fixed_files()) {
		struct io_mapped_ubuf *buf = (void *)word;
		__u64 start = BPF_CORE_READ(buf, ubuf);
		__u64 end = BPF_CORE_READ(buf, ubuf_end);
		/* An empty 6.1 slot points at ctx->dummy_ubuf: ubuf = -1, end = 0. */
		if (start == ~0ULL || end < start)
			return 0;
		rec.addr = start;
		rec.len = end - start;
	} else {
		return 1;
	}
	bpf_seq_write(loop->seq, &rec, sizeof(rec));
	return 0;
}

SEC("iter/task_file")
int ringplan_chunk_fds(struct bpf_iter__task_file *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;
	struct file *file = ctx->file;
	__u32 fd = ctx->fd;

	if (!task || !file)
		return 0;
	/* Only the dumper's own fds: the task that reads the iterator. The
	 * global tgid from the helper is right in any pid namespace, where
	 * getpid() in userspace would not match task->tgid. */
	if (task->tgid != (int)(bpf_get_current_pid_tgid() >> 32))
		return 0;
	struct rp_chunk_request *request = bpf_map_lookup_elem(&chunk_requests, &fd);
	if (!request)
		return 0;

	struct rp_chunk_record rec = {};
	rec.header.kind = RP_RECORD_CHUNK;
	rec.header.size = sizeof(rec);
	rec.fd = fd;
	rec.table = request->table;
	rec.start = request->start;
	rec.layout = detect_layout();

	if (trusted_file_role(file) != RP_ROLE_RING) {
		rec.status = RP_CHUNK_NOT_A_RING;
		bpf_seq_write(seq, &rec, sizeof(rec));
		return 0;
	}
	struct io_ring_ctx *ring = file->private_data;
	rec.ctx = (__u64)ring;
	rec.sq_thread_idle = BPF_CORE_READ(ring, sq_thread_idle);
	if (request->expected_ctx && rec.ctx != request->expected_ctx) {
		rec.status = RP_CHUNK_OTHER_RING;
		bpf_seq_write(seq, &rec, sizeof(rec));
		return 0;
	}
	if (rec.layout == RP_LAYOUT_UNKNOWN) {
		rec.status = RP_CHUNK_UNKNOWN_LAYOUT;
		bpf_seq_write(seq, &rec, sizeof(rec));
		return 0;
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
	if (request->table == RP_TABLE_FILES)
		bpf_loop(count, write_file_slot, &loop, 0);
	else if (request->table == RP_TABLE_BUFFERS)
		bpf_loop(count, write_buffer_slot, &loop, 0);
	return 0;
}
