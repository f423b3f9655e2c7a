// ring_continuity: brings io_uring rings into the states a continuity dump
// must capture, with real syscalls, prints what it did as one JSON line on
// stdout, then waits to be killed. The dumper's tests compare the image
// with this line and with the kernel's /proc/PID/fdinfo.
//
// Rings (each a key of "rings" in the JSON line, with its "fd"):
//   queued:   8 entries; ADVANCE NOPs submitted and consumed (so its
//             positions are past several wraps), then 2 NOPs completed and
//             not consumed (user_data 0xc1, 0xc2), then 3 NOPs written and
//             the tail advanced without io_uring_enter (user_data 0xa1..),
//             then 1 prepared with io_uring_get_sqe and not published
//             (0xa9: only its slot holds it).
//   overflow: 4 SQ / 8 CQ entries; 12 NOPs completed, none consumed: 8 in
//             the CQ ring (0x100..0x107), 4 on the kernel's overflow list
//             (0x108..0x10b).
//   big:      SQE128 | CQE32; 1 NOP completed and not consumed (0xb0), 1
//             queued (0xb1, bytes 64..127 of its SQE set to 0x5a).
//   no_mmap:  NO_MMAP | NO_SQARRAY on the program's own memory (rings and
//             SQEs at the addresses printed); 1 queued NOP (0xd1). Set up
//             only where the kernel has NO_MMAP (6.5+); else null.
//   owned:    SINGLE_ISSUER | DEFER_TASKRUN, created by a second thread
//             (its tid is printed as "owner_tid"); the thread stays alive.
//   disabled: SINGLE_ISSUER | R_DISABLED, never enabled.
//   enabled:  SINGLE_ISSUER | R_DISABLED, enabled by the main thread
//             (IORING_REGISTER_ENABLE_RINGS).
//   twice:    4 entries, its CQ ring mapped a second time at another
//             address (IORING_OFF_CQ_RING), as programs without
//             FEAT_SINGLE_MMAP do; 1 unconsumed CQE (0xe1).
//   sqpoll:   SQPOLL (idle 10 ms), 8 entries; ADVANCE NOPs consumed by its
//             SQ thread, then 2 completed and not consumed (0x51, 0x52).
//
// Build: cc -O2 -Wall -o ring_continuity ring_continuity.c -luring -lpthread
#define _GNU_SOURCE
#include <errno.h>
#include <liburing.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

// Debian 12's uapi headers (6.1) lack these.
#ifndef IORING_SETUP_NO_MMAP
#define IORING_SETUP_NO_MMAP (1U << 14)
#endif
#ifndef IORING_SETUP_NO_SQARRAY
#define IORING_SETUP_NO_SQARRAY (1U << 16)
#endif

#define ADVANCE 5000

static void die(const char *what, int err)
{
	fprintf(stderr, "ring_continuity: %s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(1);
}

// Writes the SQE's slot into the SQ array (liburing 2.3 fills it only on
// submit) and publishes the tail, without entering the kernel.
static void queue_without_submit(struct io_uring *ring, int count, uint64_t first_user_data)
{
	for (int i = 0; i < count; i++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
		if (!sqe)
			die("get_sqe", ENOSPC);
		io_uring_prep_nop(sqe);
		sqe->user_data = first_user_data + i;
	}
	unsigned tail = *ring->sq.ktail;
	unsigned mask = *ring->sq.kring_mask;
	while (tail != ring->sq.sqe_tail) {
		ring->sq.array[tail & mask] = ring->sq.sqe_head & mask;
		ring->sq.sqe_head++;
		tail++;
	}
	__atomic_store_n(ring->sq.ktail, tail, __ATOMIC_RELEASE);
}

static void nops(struct io_uring *ring, int count, uint64_t first_user_data)
{
	for (int i = 0; i < count; i++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
		// An SQ thread may post a batch's CQEs before it publishes its SQ
		// head (6.1 does): wait for the slots, as liburing's API offers.
		if (!sqe && (ring->flags & IORING_SETUP_SQPOLL)) {
			int ret = io_uring_sqring_wait(ring);
			if (ret < 0)
				die("sqring_wait", ret);
			sqe = io_uring_get_sqe(ring);
		}
		if (!sqe)
			die("get_sqe", ENOSPC);
		io_uring_prep_nop(sqe);
		sqe->user_data = first_user_data + i;
	}
	int ret = io_uring_submit(ring);
	if (ret != count)
		die("submit", ret < 0 ? ret : EIO);
}

static void consume_all(struct io_uring *ring)
{
	struct io_uring_cqe *cqe;
	while (io_uring_peek_cqe(ring, &cqe) == 0)
		io_uring_cqe_seen(ring, cqe);
}

static void init(struct io_uring *ring, unsigned entries, struct io_uring_params *params,
		 const char *what)
{
	int ret = io_uring_queue_init_params(entries, ring, params);
	if (ret < 0)
		die(what, ret);
}

// The no_mmap ring, by raw syscalls: liburing 2.3 has no
// io_uring_queue_init_mem. Returns its fd, or -1 where NO_MMAP is refused.
static int no_mmap_ring(void **rings_out, void **sqes_out)
{
	size_t len = 1 << 20;
	void *rings = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	void *sqes = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (rings == MAP_FAILED || sqes == MAP_FAILED)
		die("mmap", errno);
	struct io_uring_params p;
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_NO_MMAP | IORING_SETUP_NO_SQARRAY;
	// user_addr is resv2 in 6.1's uapi header.
	p.cq_off.resv2 = (uint64_t)(uintptr_t)rings;
	p.sq_off.resv2 = (uint64_t)(uintptr_t)sqes;
	int fd = syscall(__NR_io_uring_setup, 4, &p);
	if (fd < 0)
		return -1;
	// Queue one NOP: SQE slot = position & mask (no SQ array).
	uint32_t *ktail = (uint32_t *)((char *)rings + p.sq_off.tail);
	uint32_t mask = *(uint32_t *)((char *)rings + p.sq_off.ring_mask);
	uint32_t tail = *ktail;
	struct io_uring_sqe *sqe = (struct io_uring_sqe *)sqes + (tail & mask);
	memset(sqe, 0, sizeof(*sqe));
	sqe->opcode = IORING_OP_NOP;
	sqe->user_data = 0xd1;
	__atomic_store_n(ktail, tail + 1, __ATOMIC_RELEASE);
	*rings_out = rings;
	*sqes_out = sqes;
	return fd;
}

static struct io_uring owned;
static pid_t owner_tid;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ready = PTHREAD_COND_INITIALIZER;
static int owned_done;

static void *owner_thread(void *arg)
{
	(void)arg;
	struct io_uring_params p;
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
	init(&owned, 4, &p, "owned ring");
	pthread_mutex_lock(&lock);
	owner_tid = syscall(SYS_gettid);
	owned_done = 1;
	pthread_cond_signal(&ready);
	pthread_mutex_unlock(&lock);
	for (;;)
		pause();
	return NULL;
}

int main(void)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	struct io_uring_params p;

	struct io_uring queued;
	memset(&p, 0, sizeof(p));
	init(&queued, 8, &p, "queued ring");
	for (int done = 0; done < ADVANCE; done += 8) {
		nops(&queued, 8, 1);
		struct io_uring_cqe *cqe;
		int ret = io_uring_wait_cqe_nr(&queued, &cqe, 8);
		if (ret < 0)
			die("wait", ret);
		consume_all(&queued);
	}
	nops(&queued, 2, 0xc1);
	struct io_uring_cqe *cqe;
	int ret = io_uring_wait_cqe_nr(&queued, &cqe, 2);
	if (ret < 0)
		die("wait", ret);
	queue_without_submit(&queued, 3, 0xa1);
	// One more prepared and not published: only the SQE slot and
	// liburing's own tail know of it.
	struct io_uring_sqe *prepared = io_uring_get_sqe(&queued);
	if (!prepared)
		die("get_sqe", ENOSPC);
	io_uring_prep_nop(prepared);
	prepared->user_data = 0xa9;

	struct io_uring overflow;
	memset(&p, 0, sizeof(p));
	init(&overflow, 4, &p, "overflow ring");
	for (int batch = 0; batch < 3; batch++)
		nops(&overflow, 4, 0x100 + 4 * batch);

	struct io_uring big;
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SQE128 | IORING_SETUP_CQE32;
	init(&big, 4, &p, "big ring");
	nops(&big, 1, 0xb0);
	ret = io_uring_wait_cqe(&big, &cqe);
	if (ret < 0)
		die("wait big", ret);
	{
		struct io_uring_sqe *sqe = io_uring_get_sqe(&big);
		io_uring_prep_nop(sqe);
		sqe->user_data = 0xb1;
		memset((char *)sqe + 64, 0x5a, 64);
		unsigned tail = *big.sq.ktail;
		big.sq.array[tail & *big.sq.kring_mask] = big.sq.sqe_head & *big.sq.kring_mask;
		big.sq.sqe_head++;
		__atomic_store_n(big.sq.ktail, tail + 1, __ATOMIC_RELEASE);
	}

	void *nm_rings = NULL, *nm_sqes = NULL;
	int nm_fd = no_mmap_ring(&nm_rings, &nm_sqes);

	pthread_t thread;
	if (pthread_create(&thread, NULL, owner_thread, NULL) != 0)
		die("pthread_create", errno);
	pthread_mutex_lock(&lock);
	while (!owned_done)
		pthread_cond_wait(&ready, &lock);
	pthread_mutex_unlock(&lock);

	struct io_uring disabled, enabled;
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_R_DISABLED;
	init(&disabled, 4, &p, "disabled ring");
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_R_DISABLED;
	init(&enabled, 4, &p, "enabled ring");
	// liburing 2.3 has no io_uring_enable_rings.
	ret = syscall(__NR_io_uring_register, enabled.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0);
	if (ret < 0)
		die("enable_rings", errno);

	struct io_uring twice;
	memset(&p, 0, sizeof(p));
	init(&twice, 4, &p, "twice ring");
	size_t cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
	void *cq_again = mmap(NULL, cq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
			      twice.ring_fd, IORING_OFF_CQ_RING);
	if (cq_again == MAP_FAILED)
		die("mmap CQ ring again", errno);
	nops(&twice, 1, 0xe1);
	ret = io_uring_wait_cqe(&twice, &cqe);
	if (ret < 0)
		die("wait twice", ret);

	struct io_uring sqpoll;
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SQPOLL;
	p.sq_thread_idle = 10;
	init(&sqpoll, 8, &p, "sqpoll ring");
	for (int done = 0; done < ADVANCE; done += 8) {
		nops(&sqpoll, 8, 1);
		ret = io_uring_wait_cqe_nr(&sqpoll, &cqe, 8);
		if (ret < 0)
			die("wait sqpoll", ret);
		consume_all(&sqpoll);
	}
	nops(&sqpoll, 2, 0x51);
	ret = io_uring_wait_cqe_nr(&sqpoll, &cqe, 2);
	if (ret < 0)
		die("wait sqpoll", ret);

	printf("{\"pid\":%d,\"owner_tid\":%d,\"advance\":%d,\"rings\":{"
	       "\"queued\":{\"fd\":%d},\"overflow\":{\"fd\":%d},\"big\":{\"fd\":%d},",
	       getpid(), owner_tid, ADVANCE, queued.ring_fd, overflow.ring_fd, big.ring_fd);
	if (nm_fd >= 0)
		printf("\"no_mmap\":{\"fd\":%d,\"rings\":%lu,\"sqes\":%lu},", nm_fd,
		       (unsigned long)nm_rings, (unsigned long)nm_sqes);
	else
		printf("\"no_mmap\":null,");
	printf("\"owned\":{\"fd\":%d},\"disabled\":{\"fd\":%d},\"enabled\":{\"fd\":%d},"
	       "\"twice\":{\"fd\":%d,\"cq_again\":%lu},\"sqpoll\":{\"fd\":%d}}}\n",
	       owned.ring_fd, disabled.ring_fd, enabled.ring_fd, twice.ring_fd,
	       (unsigned long)cq_again, sqpoll.ring_fd);
	fflush(stdout);
	for (;;)
		pause();
}
