// ring_holder: builds a known io_uring state, prints it as one JSON line on
// stdout, then waits to be killed. The dumper's integration tests read this
// process and compare what they read with what it printed.
//
// Usage: ring_holder [--files N] [--close-files] [--rings M]
//   --files N      one more plain ring with N registered files, each its own
//                  open of /dev/null (so N distinct struct files)
//   --close-files  close those N fds after registering them (the files then
//                  live only in the ring's table)
//   --rings M      M more plain rings (4 entries, nothing registered)
//
// The base state (always built):
//   ring_a: SQPOLL | SQ_AFF | CQSIZE, cpu 0, idle 1500 ms, 2 SQ / 4 CQ
//           entries; sparse file table of 8 slots, slot 3 = tmp_fd
//   ring_b: SQPOLL | SQ_AFF | CQSIZE | ATTACH_WQ (wq_fd = ring_a), idle
//           1000 ms; eventfd (count 42) registered async; files
//           [devnull, -1, tmp, -1, closed]; buffers [{NULL,0}, {buf,120}]
//   devnull_dup: dup() of devnull (same struct file), without O_CLOEXEC
//   sem_eventfd: an unregistered eventfd, EFD_SEMAPHORE | EFD_NONBLOCK, count 7
//   tmp_fd: a temp file at position 17, opened O_CLOEXEC
//   "closed": a temp file registered in ring_b's slot 4, then closed
//
// Build: cc -O2 -Wall -o ring_holder ring_holder.c -luring
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <unistd.h>

static void die(const char *what, int err)
{
	fprintf(stderr, "ring_holder: %s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(1);
}

static void setup_ring(struct io_uring *ring, unsigned entries, struct io_uring_params *params,
		       const char *what)
{
	int ret = io_uring_queue_init_params(entries, ring, params);
	if (ret < 0)
		die(what, ret);
}

// The buffer registered in ring_b's slot 1; static so its address is stable
// and printable.
static char registered_buffer[120];

int main(int argc, char **argv)
{
	long extra_files = 0;
	long extra_rings = 0;
	int close_extra_files = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--files") && i + 1 < argc)
			extra_files = strtol(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--rings") && i + 1 < argc)
			extra_rings = strtol(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--close-files"))
			close_extra_files = 1;
		else {
			fprintf(stderr, "ring_holder: unknown argument %s\n", argv[i]);
			return 2;
		}
	}

	// Die with the test that started us, even if it could not kill us.
	prctl(PR_SET_PDEATHSIG, SIGKILL);

	// Many registered files need many fds at registration time.
	struct rlimit limit;
	if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
		limit.rlim_cur = limit.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &limit) != 0)
			die("setrlimit", errno);
	}

	char dir_template[] = "/tmp/ring_holder.XXXXXX";
	char *dir = mkdtemp(dir_template);
	if (!dir)
		die("mkdtemp", errno);
	char tmp_path[256], closed_path[256];
	snprintf(tmp_path, sizeof tmp_path, "%s/position-17", dir);
	snprintf(closed_path, sizeof closed_path, "%s/registered then closed", dir);

	int tmp_fd = open(tmp_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (tmp_fd < 0)
		die("open tmp", errno);
	if (write(tmp_fd, "0123456789abcdefghijklmnop", 26) != 26)
		die("write tmp", errno);
	if (lseek(tmp_fd, 17, SEEK_SET) != 17)
		die("lseek tmp", errno);
	int devnull = open("/dev/null", O_RDWR);
	if (devnull < 0)
		die("open /dev/null", errno);
	int devnull_dup = dup(devnull);
	if (devnull_dup < 0)
		die("dup", errno);
	int closed_fd = open(closed_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
	if (closed_fd < 0)
		die("open closed", errno);

	struct io_uring ring_a, ring_b;
	struct io_uring_params params_a = {
		.flags = IORING_SETUP_SQPOLL | IORING_SETUP_SQ_AFF | IORING_SETUP_CQSIZE,
		.sq_thread_cpu = 0,
		.sq_thread_idle = 1500,
		.cq_entries = 4,
	};
	setup_ring(&ring_a, 2, &params_a, "setup ring_a");
	struct io_uring_params params_b = {
		.flags = IORING_SETUP_SQPOLL | IORING_SETUP_SQ_AFF | IORING_SETUP_CQSIZE |
			 IORING_SETUP_ATTACH_WQ,
		.sq_thread_cpu = 0,
		.sq_thread_idle = 1000,
		.cq_entries = 4,
		.wq_fd = (unsigned)ring_a.ring_fd,
	};
	setup_ring(&ring_b, 2, &params_b, "setup ring_b");

	int ret = io_uring_register_files_sparse(&ring_a, 8);
	if (ret < 0)
		die("register_files_sparse ring_a", ret);
	ret = io_uring_register_files_update(&ring_a, 3, &tmp_fd, 1);
	if (ret < 0)
		die("register_files_update ring_a", ret);

	int event_fd = eventfd(42, 0);
	if (event_fd < 0)
		die("eventfd", errno);
	ret = io_uring_register_eventfd_async(&ring_b, event_fd);
	if (ret < 0)
		die("register_eventfd_async", ret);
	int sem_eventfd = eventfd(7, EFD_SEMAPHORE | EFD_NONBLOCK);
	if (sem_eventfd < 0)
		die("eventfd sem", errno);

	int files_b[5] = { devnull, -1, tmp_fd, -1, closed_fd };
	ret = io_uring_register_files(&ring_b, files_b, 5);
	if (ret < 0)
		die("register_files ring_b", ret);
	close(closed_fd);

	struct iovec buffers_b[2] = {
		{ .iov_base = NULL, .iov_len = 0 },
		{ .iov_base = registered_buffer, .iov_len = sizeof registered_buffer },
	};
	ret = io_uring_register_buffers(&ring_b, buffers_b, 2);
	if (ret < 0)
		die("register_buffers ring_b", ret);

	// The big ring: extra_files distinct opens of /dev/null.
	int big_ring_fd = -1;
	struct io_uring big_ring;
	if (extra_files > 0) {
		int *fds = calloc((size_t)extra_files, sizeof *fds);
		if (!fds)
			die("calloc", ENOMEM);
		for (long i = 0; i < extra_files; i++) {
			fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
			if (fds[i] < 0)
				die("open /dev/null (many)", errno);
		}
		setup_ring(&big_ring, 4, &(struct io_uring_params){ 0 }, "setup big ring");
		ret = io_uring_register_files(&big_ring, fds, (unsigned)extra_files);
		if (ret < 0)
			die("register_files big ring", ret);
		if (close_extra_files)
			for (long i = 0; i < extra_files; i++)
				close(fds[i]);
		free(fds);
		big_ring_fd = big_ring.ring_fd;
	}

	// The many rings.
	int *extra_ring_fds = calloc((size_t)extra_rings + 1, sizeof *extra_ring_fds);
	if (!extra_ring_fds)
		die("calloc", ENOMEM);
	for (long i = 0; i < extra_rings; i++) {
		struct io_uring *ring = malloc(sizeof *ring);
		if (!ring)
			die("malloc", ENOMEM);
		setup_ring(ring, 4, &(struct io_uring_params){ 0 }, "setup extra ring");
		extra_ring_fds[i] = ring->ring_fd;
	}

	printf("{\"pid\":%d,\"ring_a\":%d,\"ring_b\":%d,\"eventfd\":%d,\"sem_eventfd\":%d,"
	       "\"devnull\":%d,\"devnull_dup\":%d,\"tmp_fd\":%d,\"tmp_path\":\"%s\","
	       "\"closed_path\":\"%s\",\"buffer_addr\":%lu,\"buffer_len\":%zu,"
	       "\"big_ring\":%d,\"big_files\":%ld,\"dir\":\"%s\",\"extra_rings\":[",
	       getpid(), ring_a.ring_fd, ring_b.ring_fd, event_fd, sem_eventfd, devnull, devnull_dup,
	       tmp_fd, tmp_path, closed_path, (unsigned long)registered_buffer,
	       sizeof registered_buffer, big_ring_fd, extra_files, dir);
	for (long i = 0; i < extra_rings; i++)
		printf("%s%d", i ? "," : "", extra_ring_fds[i]);
	printf("]}\n");
	fflush(stdout);

	// Remove the temp files on SIGTERM; the open/registered files live on
	// until exit regardless.
	sigset_t wait_set;
	sigemptyset(&wait_set);
	sigaddset(&wait_set, SIGTERM);
	sigprocmask(SIG_BLOCK, &wait_set, NULL);
	int signal_number;
	sigwait(&wait_set, &signal_number);
	unlink(tmp_path);
	unlink(closed_path);
	rmdir(dir);
	return 0;
}
