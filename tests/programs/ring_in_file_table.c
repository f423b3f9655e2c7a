// ring_in_file_table: tries every way a ring could get into another
// ring's registered file table (the usual target of IORING_OP_MSG_RING)
// and prints, as one JSON line, what the kernel answered to each (0 when
// it accepted, else -errno):
//   register_files    IORING_REGISTER_FILES of [ring_b]
//   register_files2   IORING_REGISTER_FILES2 (with a tag) of [ring_b]
//   files_update      a sparse table of 2, then IORING_REGISTER_FILES_UPDATE
//                     of slot 0 with ring_b
//   openat_direct     IORING_OP_OPENAT of /proc/self/fd/RING_B straight
//                     into slot 1 (file_index), the direct-open path
//   msg_ring_send_fd  IORING_OP_MSG_RING with IORING_MSG_SEND_FD from
//                     ring_a's slot 1 (whatever the open put there, or
//                     nothing) into ring_c's slot 0
// Then it exits. A later kernel that accepts one of them is noticed by
// tests/ring_fds.rs.
//
// Build: cc -O2 -Wall -o ring_in_file_table ring_in_file_table.c -luring
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void die(const char *what, int err)
{
	fprintf(stderr, "ring_in_file_table: %s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(1);
}

// One SQE on `ring`, submitted and waited for; the CQE's res.
static int submit_one(struct io_uring *ring)
{
	struct io_uring_cqe *cqe;
	int ret = io_uring_submit(ring);
	if (ret != 1)
		die("io_uring_submit", ret < 0 ? ret : EIO);
	ret = io_uring_wait_cqe(ring, &cqe);
	if (ret < 0)
		die("io_uring_wait_cqe", ret);
	int res = cqe->res;
	io_uring_cqe_seen(ring, cqe);
	return res;
}

int main(void)
{
	struct io_uring a, b, c, d;
	int ret;
	if ((ret = io_uring_queue_init(4, &a, 0)) < 0)
		die("ring a", ret);
	if ((ret = io_uring_queue_init(4, &b, 0)) < 0)
		die("ring b", ret);
	if ((ret = io_uring_queue_init(4, &c, 0)) < 0)
		die("ring c", ret);
	if ((ret = io_uring_queue_init(4, &d, 0)) < 0)
		die("ring d", ret);
	int ring_b = b.ring_fd;

	int register_files = io_uring_register_files(&a, &ring_b, 1);
	if (register_files == 0)
		io_uring_unregister_files(&a);

	__u64 tag = 1;
	int register_files2 = io_uring_register_files_tags(&d, &ring_b, &tag, 1);

	int sparse[2] = { -1, -1 };
	if ((ret = io_uring_register_files(&a, sparse, 2)) < 0)
		die("a sparse table", ret);
	int files_update = io_uring_register_files_update(&a, 0, &ring_b, 1);
	if (files_update == 1)
		files_update = 0;

	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", ring_b);
	struct io_uring_sqe *sqe = io_uring_get_sqe(&a);
	io_uring_prep_openat_direct(sqe, AT_FDCWD, path, O_RDWR, 0, 1);
	int openat_direct = submit_one(&a);

	int sparse_c[1] = { -1 };
	if ((ret = io_uring_register_files(&c, sparse_c, 1)) < 0)
		die("c sparse table", ret);
	sqe = io_uring_get_sqe(&a);
	io_uring_prep_rw(IORING_OP_MSG_RING, sqe, c.ring_fd, NULL, 0, 0);
	sqe->addr = 1; // IORING_MSG_SEND_FD
	sqe->addr3 = 1; // the source: ring a's fixed slot 1
	sqe->file_index = 1; // the target: ring c's slot 0, plus one
	int msg_ring_send_fd = submit_one(&a);

	printf("{\"register_files\": %d, \"register_files2\": %d, \"files_update\": %d, "
	       "\"openat_direct\": %d, \"msg_ring_send_fd\": %d}\n",
	       register_files, register_files2, files_update, openat_direct, msg_ring_send_fd);
	return 0;
}
