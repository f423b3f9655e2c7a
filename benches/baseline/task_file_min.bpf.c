// SPDX-License-Identifier: MIT
/*
 * The dump-latency baseline's BPF side: the least a task_file iterator can
 * do and still read something per fd through CO-RE (the fd's file flags and
 * position). ringplan's dump is measured against loading this and reading
 * it once.
 */
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

struct seq_file;
struct bpf_iter_meta {
	struct seq_file *seq;
} __attribute__((preserve_access_index));
struct task_struct {
	int tgid;
} __attribute__((preserve_access_index));
struct file {
	unsigned int f_flags;
	long long f_pos;
} __attribute__((preserve_access_index));
struct bpf_iter__task_file {
	struct bpf_iter_meta *meta;
	struct task_struct *task;
	__u32 fd;
	struct file *file;
} __attribute__((preserve_access_index));

char LICENSE[] SEC("license") = "GPL";

struct fd_record {
	__u32 fd;
	__u32 flags;
	__s64 pos;
};

SEC("iter/task_file")
int read_fds(struct bpf_iter__task_file *ctx)
{
	struct file *file = ctx->file;
	struct fd_record record;

	if (!file || !ctx->task)
		return 0;
	record.fd = ctx->fd;
	record.flags = file->f_flags;
	record.pos = file->f_pos;
	bpf_seq_write(ctx->meta->seq, &record, sizeof(record));
	return 0;
}
