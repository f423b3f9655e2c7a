// detach_target: a program mid-I/O for `plan dump --detach`, driven line by
// line on stdin; it answers each command with one line on stdout. It
// prints one JSON line first, with its rings' fds and its owner thread.
//
// Rings:
//   plain:  8 entries; a registered eventfd, registered files (a temporary
//           file whose fd is then closed, and the read end of pipe A),
//           2 registered buffers; its fd is also registered as a ring fd
//           (io_uring_register_ring_fd) by the main thread.
//   sqpoll: SQPOLL (idle 50 ms), 8 entries; one NOP done through it.
//   owned:  SINGLE_ISSUER | DEFER_TASKRUN, created by a second thread
//           ("owner_tid"), which submits on it when asked and otherwise
//           waits in read() on its own command pipe (never in
//           io_uring_enter, so its task work runs only when someone makes
//           it enter the ring).
//
// Commands:
//   ping            -> "pong"
//   reads N         N reads of 1 byte on empty pipe A (plain ring,
//                   user_data 0x100+i), submitted; -> "ok"
//   timeout         a 1-hour timeout on the plain ring (user_data 0x200)
//   poll            a poll for POLLIN on pipe A (user_data 0x300)
//   feed N          writes N bytes into pipe A (the reads and the poll
//                   complete); -> "ok"
//   cancel_timeout  removes the timeout (user_data 0x201); -> "ok"
//   reap            consumes every CQE of the plain ring; -> "reaped N"
//   owned N         the owner thread submits N reads on empty pipe B
//                   (user_data 0x400+i), then the main thread writes N
//                   bytes into pipe B: they complete, and their CQEs wait
//                   for the owner's task work; -> "ok"
//   owned_reap      the owner enters its ring and reaps; -> "reaped N"
#define _GNU_SOURCE
#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static void die(const char *what, int err)
{
	fprintf(stderr, "detach_target: %s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(1);
}

static struct io_uring plain, sqpoll, owned;
static int pipe_a[2], pipe_b[2], owner_cmd[2], owner_done[2];
static pid_t owner_tid;
static char read_bytes[64];

static void submit_or_die(struct io_uring *ring)
{
	int ret = io_uring_submit(ring);
	if (ret < 0)
		die("io_uring_submit", ret);
}

static int reap(struct io_uring *ring)
{
	struct io_uring_cqe *cqe;
	int reaped = 0;
	while (io_uring_peek_cqe(ring, &cqe) == 0) {
		io_uring_cqe_seen(ring, cqe);
		reaped++;
	}
	return reaped;
}

static void *owner_thread(void *arg)
{
	(void)arg;
	owner_tid = syscall(SYS_gettid);
	int ret = io_uring_queue_init(8, &owned, IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN);
	if (ret < 0)
		die("owned ring", ret);
	char n = 0;
	if (write(owner_done[1], &n, 1) != 1)
		die("owner ready", errno);
	for (;;) {
		char command[2];
		if (read(owner_cmd[0], command, 2) != 2)
			die("owner command", errno);
		int reply = 0;
		if (command[0] == 's') {
			for (int i = 0; i < command[1]; i++) {
				struct io_uring_sqe *sqe = io_uring_get_sqe(&owned);
				io_uring_prep_read(sqe, pipe_b[0], read_bytes + i, 1, 0);
				sqe->user_data = 0x400 + i;
			}
			submit_or_die(&owned);
		} else if (command[0] == 'r') {
			io_uring_get_events(&owned);
			reply = reap(&owned);
		}
		char answer = reply;
		if (write(owner_done[1], &answer, 1) != 1)
			die("owner answer", errno);
	}
	return NULL;
}

static int owner_do(char what, char n)
{
	char command[2] = {what, n}, answer;
	if (write(owner_cmd[1], command, 2) != 2)
		die("owner command", errno);
	if (read(owner_done[0], &answer, 1) != 1)
		die("owner answer", errno);
	return answer;
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (pipe(pipe_a) || pipe(pipe_b) || pipe(owner_cmd) || pipe(owner_done))
		die("pipe", errno);
	int ret = io_uring_queue_init(8, &plain, 0);
	if (ret < 0)
		die("plain ring", ret);
	int efd = eventfd(0, 0);
	if (efd < 0 || (ret = io_uring_register_eventfd(&plain, efd)) < 0)
		die("eventfd", efd < 0 ? errno : ret);
	char path[] = "/tmp/detach_target.XXXXXX";
	int tmp = mkstemp(path);
	if (tmp < 0)
		die("mkstemp", errno);
	unlink(path);
	int files[2] = {tmp, pipe_a[0]};
	if ((ret = io_uring_register_files(&plain, files, 2)) < 0)
		die("register files", ret);
	close(tmp);
	// Anonymous memory: 6.1 refuses buffers in file-backed mappings, and
	// a static array may share a page with the binary's .data.
	char *buffers = mmap(NULL, 2 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buffers == MAP_FAILED)
		die("mmap buffers", errno);
	struct iovec iov[2] = {{buffers, 4096}, {buffers + 4096, 4096}};
	if ((ret = io_uring_register_buffers(&plain, iov, 2)) < 0)
		die("register buffers", ret);
	if ((ret = io_uring_register_ring_fd(&plain)) < 0)
		die("register ring fd", ret);

	struct io_uring_params params = {.flags = IORING_SETUP_SQPOLL, .sq_thread_idle = 50};
	if ((ret = io_uring_queue_init_params(8, &sqpoll, &params)) < 0)
		die("sqpoll ring", ret);
	io_uring_prep_nop(io_uring_get_sqe(&sqpoll));
	submit_or_die(&sqpoll);
	struct io_uring_cqe *cqe;
	if ((ret = io_uring_wait_cqe(&sqpoll, &cqe)) < 0)
		die("sqpoll nop", ret);
	io_uring_cqe_seen(&sqpoll, cqe);

	pthread_t thread;
	if (pthread_create(&thread, NULL, owner_thread, NULL))
		die("pthread_create", errno);
	char ready;
	if (read(owner_done[0], &ready, 1) != 1)
		die("owner ready", errno);

	printf("{\"pid\": %d, \"owner_tid\": %d, \"plain\": %d, \"sqpoll\": %d, \"owned\": %d, "
	       "\"eventfd\": %d}\n",
	       getpid(), owner_tid, plain.ring_fd, sqpoll.ring_fd, owned.ring_fd, efd);

	char line[128];
	struct __kernel_timespec hour = {.tv_sec = 3600};
	while (fgets(line, sizeof(line), stdin)) {
		int n = 0;
		if (!strcmp(line, "ping\n")) {
			printf("pong\n");
		} else if (sscanf(line, "reads %d", &n) == 1) {
			for (int i = 0; i < n; i++) {
				struct io_uring_sqe *sqe = io_uring_get_sqe(&plain);
				io_uring_prep_read(sqe, pipe_a[0], read_bytes + i, 1, 0);
				sqe->user_data = 0x100 + i;
			}
			submit_or_die(&plain);
			printf("ok\n");
		} else if (!strcmp(line, "timeout\n")) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&plain);
			io_uring_prep_timeout(sqe, &hour, 0, 0);
			sqe->user_data = 0x200;
			submit_or_die(&plain);
			printf("ok\n");
		} else if (!strcmp(line, "cancel_timeout\n")) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&plain);
			io_uring_prep_timeout_remove(sqe, 0x200, 0);
			sqe->user_data = 0x201;
			submit_or_die(&plain);
			printf("ok\n");
		} else if (!strcmp(line, "poll\n")) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&plain);
			io_uring_prep_poll_add(sqe, pipe_a[0], POLLIN);
			sqe->user_data = 0x300;
			submit_or_die(&plain);
			printf("ok\n");
		} else if (sscanf(line, "feed %d", &n) == 1) {
			char bytes[64] = {0};
			if (write(pipe_a[1], bytes, n) != n)
				die("feed", errno);
			printf("ok\n");
		} else if (!strcmp(line, "reap\n")) {
			printf("reaped %d\n", reap(&plain));
		} else if (sscanf(line, "owned %d", &n) == 1) {
			owner_do('s', n);
			char bytes[64] = {0};
			if (write(pipe_b[1], bytes, n) != n)
				die("feed owned", errno);
			printf("ok\n");
		} else if (!strcmp(line, "owned_reap\n")) {
			printf("reaped %d\n", owner_do('r', 0));
		} else {
			printf("unknown\n");
		}
	}
	return 0;
}
