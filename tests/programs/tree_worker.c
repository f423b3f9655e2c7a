// tree_worker: a process tree that keeps working on rings it shares, the
// PostgreSQL 18 pattern (io_method=io_uring: the postmaster creates every
// backend's ring before it forks them, and each backend then uses its own
// ring). The parent sets up two rings before it forks:
//   ring 0: plain, 8 entries, the file OUTPUT_DIR/tree-worker-0.dat
//           registered at slot 0;
//   ring 1: SQPOLL (idle 50 ms), 8 entries, OUTPUT_DIR/tree-worker-1.dat
//           registered at slot 0;
// then forks 2 children; child i uses ring i only. Both rings stay open
// in the parent (and in each child, which inherits both), as in
// PostgreSQL. Child 0 registers ring 0's fd in a slot of its thread
// (io_uring_register_ring_fd), so that its every io_uring_enter names
// the slot (IORING_ENTER_REGISTERED_RING), not the fd: a restore that
// loses the slot makes its next submission fail.
//
// Each child writes RECORDS numbered records of 512 bytes to its file
// through its ring (IORING_OP_WRITE on registered file 0), reading each
// one back (IORING_OP_READ) and checking it, one record every DELAY_MS
// milliseconds (default 5), so that a test can catch the tree mid-work;
// then it reads every record back once more and checks them all. It
// exits 0 only if every completion and every byte was right, else names
// what was wrong on stderr and exits 1.
//
// The data buffers are one MAP_SHARED area mapped before the fork: an SQ
// thread belongs to the process that created its ring (the parent) and
// reaches buffers through that process's memory, so a buffer of a
// child's own (copied on write at the fork) is not what it would see.
// For the same reason files are registered (an SQ thread looks fds up in
// the parent's table).
//
// The parent prints one JSON line once both children have started:
//   {"pid": P, "children": [C0, C1], "rings": [FD0, FD1], "records": N}
// then waits for them and exits 0 if both exited 0, else 1. Each child
// prints {"child": I, "done": N, "ok": true} at its end.
//
// Options, after DELAY_MS:
//   NO_PDEATHSIG  every process dies with its parent (PR_SET_PDEATHSIG)
//                 unless this is given (for a tree a process dumper
//                 restores);
//   STUCK_READ    child 0 first submits, on ring 0, a read of a pipe
//                 nobody writes to (user_data 0xdead): a request that
//                 never completes, which it leaves in flight while it
//                 works (its other completions are told apart by
//                 user_data) and at its exit;
//   CLOSE_RING_FD child 0 closes its fd of ring 0 once it registered it
//                 in its slot (as liburing's io_uring_close_ring_fd does):
//                 it then holds ring 0 by its slot and its mappings only;
//   END_FILE=PATH each child stops writing once PATH exists (looked at
//                 before each record), checks every record it wrote, and
//                 ends as above with the number it wrote: a test ends a
//                 long run when it has seen what it needed.
//
// Usage: tree_worker OUTPUT_DIR RECORDS [DELAY_MS [OPTION]...]
// Build: cc -O2 -Wall -o tree_worker tree_worker.c -luring -lpthread
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHILDREN 2
#define RECORD 512

static struct io_uring rings[CHILDREN];
static unsigned char *area; // CHILDREN x (write buffer, read buffer), shared
static unsigned records;
static unsigned delay_ms = 5;
static int me = -1; // the child's index, -1 in the parent
static int stuck_read;
static int stuck_pipe[2];
static char stuck_byte;
static const char *end_file;
static int close_ring_fd;

static void fail(const char *what, int err)
{
	fprintf(stderr, "tree_worker (%s %d): %s: %s\n", me < 0 ? "parent" : "child", me, what,
		strerror(err < 0 ? -err : err));
	exit(1);
}

static void wrong(const char *what, unsigned seq, long long got, long long want)
{
	fprintf(stderr, "tree_worker (child %d): record %u: %s: %lld, expected %lld\n", me, seq, what, got,
		want);
	exit(1);
}

// Record `seq` of child `child`: its number, then bytes that depend on both.
static void fill(unsigned char *buf, int child, unsigned seq)
{
	memcpy(buf, &seq, sizeof(seq));
	for (unsigned i = sizeof(seq); i < RECORD; i++)
		buf[i] = (unsigned char)(seq * 31 + i * 7 + child * 101);
}

static struct io_uring_sqe *next_sqe(struct io_uring *ring)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
	// An SQ thread may post CQEs before it publishes its SQ head.
	while (!sqe && (ring->flags & IORING_SETUP_SQPOLL)) {
		int ret = io_uring_sqring_wait(ring);
		if (ret < 0)
			fail("io_uring_sqring_wait", ret);
		sqe = io_uring_get_sqe(ring);
	}
	if (!sqe)
		fail("io_uring_get_sqe", ENOSPC);
	return sqe;
}

// Submits one prepared request and waits for its completion, which must
// carry `user_data` and `RECORD` as its result.
static void complete(struct io_uring *ring, unsigned seq, unsigned long long user_data)
{
	int ret = io_uring_submit(ring);
	if (ret < 0)
		fail("io_uring_submit", ret);
	struct io_uring_cqe *cqe;
	do
		ret = io_uring_wait_cqe(ring, &cqe);
	while (ret == -EINTR);
	if (ret < 0)
		fail("io_uring_wait_cqe", ret);
	if (cqe->user_data != user_data)
		wrong("completion user_data", seq, (long long)cqe->user_data, (long long)user_data);
	if (cqe->res != RECORD)
		wrong("result", seq, cqe->res, RECORD);
	io_uring_cqe_seen(ring, cqe);
}

static void write_record(struct io_uring *ring, unsigned char *buf, unsigned seq)
{
	fill(buf, me, seq);
	struct io_uring_sqe *sqe = next_sqe(ring);
	io_uring_prep_write(sqe, 0, buf, RECORD, (off_t)seq * RECORD);
	sqe->flags |= IOSQE_FIXED_FILE;
	sqe->user_data = (unsigned long long)seq << 1;
	complete(ring, seq, (unsigned long long)seq << 1);
}

static void check_record(struct io_uring *ring, unsigned char *buf, unsigned seq)
{
	unsigned char want[RECORD];
	memset(buf, 0, RECORD);
	struct io_uring_sqe *sqe = next_sqe(ring);
	io_uring_prep_read(sqe, 0, buf, RECORD, (off_t)seq * RECORD);
	sqe->flags |= IOSQE_FIXED_FILE;
	sqe->user_data = ((unsigned long long)seq << 1) | 1;
	complete(ring, seq, ((unsigned long long)seq << 1) | 1);
	fill(want, me, seq);
	if (memcmp(want, buf, RECORD) != 0) {
		unsigned got;
		memcpy(&got, buf, sizeof(got));
		wrong("content read back (its number)", seq, got, seq);
	}
}

static void pause_between_records(void)
{
	struct timespec tick = {delay_ms / 1000, (long)(delay_ms % 1000) * 1000 * 1000};
	while (nanosleep(&tick, &tick) != 0 && errno == EINTR)
		;
}

static void child(int index, int ready)
{
	me = index;
	struct io_uring *ring = &rings[index];
	if (index == 0) {
		int ret = io_uring_register_ring_fd(ring);
		if (ret != 1)
			fail("io_uring_register_ring_fd", ret < 0 ? ret : EIO);
		// liburing enters through the slot from here on.
		if (close_ring_fd && close(ring->ring_fd) != 0)
			fail("close (the ring's fd)", errno);
	}
	unsigned char *write_buf = area + index * 2 * RECORD;
	unsigned char *read_buf = write_buf + RECORD;
	if (stuck_read && index == 0) {
		struct io_uring_sqe *sqe = next_sqe(ring);
		io_uring_prep_read(sqe, stuck_pipe[0], &stuck_byte, 1, 0);
		sqe->user_data = 0xdead;
		int ret = io_uring_submit(ring);
		if (ret != 1)
			fail("io_uring_submit (the stuck read)", ret < 0 ? ret : EIO);
	}
	char started = 's';
	if (write(ready, &started, 1) != 1)
		fail("reporting ready", errno);
	close(ready);
	unsigned written = 0;
	while (written < records && !(end_file && access(end_file, F_OK) == 0)) {
		write_record(ring, write_buf, written);
		check_record(ring, read_buf, written);
		written++;
		pause_between_records();
	}
	for (unsigned seq = 0; seq < written; seq++)
		check_record(ring, read_buf, seq);
	printf("{\"child\": %d, \"done\": %u, \"ok\": true}\n", index, written);
	fflush(stdout);
	exit(0);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: tree_worker OUTPUT_DIR RECORDS [DELAY_MS [NO_PDEATHSIG|STUCK_READ|CLOSE_RING_FD|END_FILE=PATH]...]\n");
		return 2;
	}
	const char *dir = argv[1];
	records = (unsigned)strtoul(argv[2], NULL, 10);
	if (argc > 3)
		delay_ms = (unsigned)strtoul(argv[3], NULL, 10);
	int pdeathsig = 1;
	for (int i = 4; i < argc; i++) {
		if (strcmp(argv[i], "NO_PDEATHSIG") == 0)
			pdeathsig = 0;
		else if (strcmp(argv[i], "STUCK_READ") == 0)
			stuck_read = 1;
		else if (strcmp(argv[i], "CLOSE_RING_FD") == 0)
			close_ring_fd = 1;
		else if (strncmp(argv[i], "END_FILE=", 9) == 0)
			end_file = argv[i] + 9;
		else
			fail(argv[i], EINVAL);
	}
	// The write end stays open in every process: the read never ends.
	if (stuck_read && pipe2(stuck_pipe, O_CLOEXEC) != 0)
		fail("pipe2 (the stuck read's pipe)", errno);
	if (records < 1)
		fail("RECORDS must be at least 1", EINVAL);
	if (pdeathsig)
		prctl(PR_SET_PDEATHSIG, SIGKILL);

	area = mmap(NULL, CHILDREN * 2 * RECORD, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED)
		fail("mmap (the shared buffers)", errno);
	for (int i = 0; i < CHILDREN; i++) {
		struct io_uring_params p;
		memset(&p, 0, sizeof(p));
		if (i == 1) {
			p.flags = IORING_SETUP_SQPOLL;
			p.sq_thread_idle = 50;
		}
		int ret = io_uring_queue_init_params(8, &rings[i], &p);
		if (ret < 0)
			fail("io_uring_queue_init_params", ret);
		char path[4096];
		snprintf(path, sizeof(path), "%s/tree-worker-%d.dat", dir, i);
		int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0)
			fail(path, errno);
		ret = io_uring_register_files(&rings[i], &fd, 1);
		if (ret < 0)
			fail("io_uring_register_files", ret);
	}

	int ready[2];
	if (pipe2(ready, O_CLOEXEC) != 0)
		fail("pipe2", errno);
	pid_t children[CHILDREN];
	fflush(stdout);
	for (int i = 0; i < CHILDREN; i++) {
		children[i] = fork();
		if (children[i] < 0)
			fail("fork", errno);
		if (children[i] == 0) {
			if (pdeathsig)
				prctl(PR_SET_PDEATHSIG, SIGKILL);
			close(ready[0]);
			child(i, ready[1]);
		}
	}
	close(ready[1]);
	for (int i = 0; i < CHILDREN; i++) {
		char started;
		ssize_t got;
		do
			got = read(ready[0], &started, 1);
		while (got < 0 && errno == EINTR);
		if (got != 1)
			fail("a child did not start", EPIPE);
	}
	close(ready[0]);
	printf("{\"pid\": %d, \"children\": [%d, %d], \"rings\": [%d, %d], \"records\": %u}\n", (int)getpid(),
	       (int)children[0], (int)children[1], rings[0].ring_fd, rings[1].ring_fd, records);
	fflush(stdout);

	int status_all = 0;
	for (int i = 0; i < CHILDREN; i++) {
		int status;
		pid_t waited;
		do
			waited = waitpid(children[i], &status, 0);
		while (waited < 0 && errno == EINTR);
		if (waited < 0)
			fail("waitpid", errno);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			fprintf(stderr, "tree_worker (parent): child %d (pid %d) ended with status %#x\n", i,
				(int)children[i], status);
			status_all = 1;
		}
	}
	return status_all;
}
