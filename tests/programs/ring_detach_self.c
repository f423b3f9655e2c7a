// ring_detach_self: a liburing program whose rings are taken out of it and
// put back where it left them (`plan exec IMAGE --pid PID`), while it keeps
// its own view of them (liburing's struct io_uring: pointers into the ring
// memory, its own sqe_head/sqe_tail).
//
// Rings (each a key of "rings" in the first JSON line, with its "fd"):
//   queued:   8 entries; ADVANCE NOPs submitted and consumed (positions
//             past several wraps), then 2 NOPs completed and not consumed
//             (user_data 0xc1, 0xc2), then 3 NOPs queued without
//             io_uring_enter (0xa1..0xa3).
//   overflow: 4 SQ / 8 CQ entries; 12 NOPs completed, none consumed: 8 in
//             the CQ ring, 4 on the kernel's overflow list (0x100..0x10b).
//   twice:    4 entries, its CQ ring mapped a second time at another
//             address; 1 unconsumed CQE (0xe1).
//   sqpoll:   SQPOLL (idle 10 ms), 8 entries; ADVANCE NOPs, then 2
//             unconsumed CQEs (0x51, 0x52).
//   owned:    with the argument "owned": SINGLE_ISSUER | DEFER_TASKRUN,
//             created by a second thread ("owner_tid"), 3 NOPs consumed,
//             1 unconsumed CQE (0x71); that thread does everything on it.
//   (pbuf)    with the argument "pbuf": the queued ring also has a buffer
//             ring (bgid 3, 8 buffers of 32 bytes, on the program's own
//             memory, "pbuf" in the first line with its addresses) of
//             which 5 buffers were consumed by reads from a pipe (they
//             hold "early-0".."early-4"): the kernel's head is 5; and the
//             sqpoll ring one (bgid 4, "pbuf_sqpoll") at head 3.
//   no_mmap:  with the argument "no_mmap" (where the kernel has NO_MMAP):
//             NO_MMAP | NO_SQARRAY on the program's own memory (anonymous,
//             private), 1 unconsumed CQE (0xd1), 1 queued NOP (0xd2).
//
// Then it reads commands, one a line, on stdin, and answers each with one
// line on stdout:
//   detach  closes every ring fd and unmaps every ring mapping (the
//           no_mmap ring's memory is the program's own: kept), as a
//           detach would; answers "detached".
//   use     on every ring (the owned one in its owner thread): consumes
//           and checks the unconsumed CQEs (the overflowed ones follow in
//           order), submits the queued SQEs and checks their CQEs, then
//           submits one more NOP and checks it; with "pbuf", reads twice
//           from the pipe on each buffer ring's ring, selecting buffers,
//           and checks that the buffers after the consumed ones are taken
//           and hold the data, and the consumed ones are untouched
//           ("pbuf", "pbuf_sqpoll"); answers one JSON line,
//           {"NAME": "ok" or "what went wrong", ...}.
//
// Build: cc -O2 -Wall -o ring_detach_self ring_detach_self.c -luring -lpthread
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

#ifndef IORING_SETUP_NO_MMAP
#define IORING_SETUP_NO_MMAP (1U << 14)
#endif
#ifndef IORING_SETUP_NO_SQARRAY
#define IORING_SETUP_NO_SQARRAY (1U << 16)
#endif

#define ADVANCE 5000

static void die(const char *what, int err)
{
	fprintf(stderr, "ring_detach_self: %s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(1);
}

static void nops(struct io_uring *ring, int count, uint64_t first_user_data)
{
	for (int i = 0; i < count; i++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
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

static void advance(struct io_uring *ring, const char *what)
{
	struct io_uring_cqe *cqe;
	for (int done = 0; done < ADVANCE; done += 8) {
		nops(ring, 8, 1);
		int ret = io_uring_wait_cqe_nr(ring, &cqe, 8);
		if (ret < 0)
			die(what, ret);
		consume_all(ring);
	}
}

static void init(struct io_uring *ring, unsigned entries, struct io_uring_params *params,
		 const char *what)
{
	int ret = io_uring_queue_init_params(entries, ring, params);
	if (ret < 0)
		die(what, ret);
}

// Publishes `count` NOPs without entering the kernel (liburing 2.3 fills
// the SQ array only on submit; do what submit would, without the enter).
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

// Takes a liburing ring out: its mappings unmapped, its fd closed; the
// struct keeps its pointers and positions for when the ring comes back.
static void take_out(struct io_uring *ring)
{
	munmap(ring->sq.sqes, *ring->sq.kring_entries * sizeof(struct io_uring_sqe) *
				      ((ring->flags & IORING_SETUP_SQE128) ? 2 : 1));
	if (ring->cq.ring_ptr && ring->cq.ring_ptr != ring->sq.ring_ptr)
		munmap(ring->cq.ring_ptr, ring->cq.ring_sz);
	munmap(ring->sq.ring_ptr, ring->sq.ring_sz);
	close(ring->ring_fd);
}

// Checks and consumes the CQEs from first .. first + count - 1, in order
// (waiting for each). Writes what went wrong into `out`; 0 when all right.
static int expect_cqes(struct io_uring *ring, uint64_t first, int count, char *out, size_t len)
{
	for (int i = 0; i < count; i++) {
		struct io_uring_cqe *cqe;
		int ret = io_uring_wait_cqe(ring, &cqe);
		if (ret < 0) {
			snprintf(out, len, "waiting for CQE 0x%llx: %s", (unsigned long long)(first + i),
				 strerror(-ret));
			return -1;
		}
		if (cqe->user_data != first + i || cqe->res != 0) {
			snprintf(out, len, "CQE %d: user_data 0x%llx res %d, expected 0x%llx res 0", i,
				 (unsigned long long)cqe->user_data, cqe->res,
				 (unsigned long long)(first + i));
			io_uring_cqe_seen(ring, cqe);
			return -1;
		}
		io_uring_cqe_seen(ring, cqe);
	}
	return 0;
}

// Submits what is queued (expecting `queued` SQEs whose CQEs are
// first_queued..) and one more NOP, and checks every CQE.
static int submit_and_check(struct io_uring *ring, int queued, uint64_t first_queued, char *out,
			    size_t len)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
	if (!sqe) {
		snprintf(out, len, "no free SQE");
		return -1;
	}
	io_uring_prep_nop(sqe);
	sqe->user_data = 0xf0;
	int ret = io_uring_submit(ring);
	// What the kernel consumes now: the SQEs queued at the detach (their
	// tail was published then) and the new NOP.
	if (ret < 0) {
		snprintf(out, len, "submit: %s", strerror(-ret));
		return -1;
	}
	if (queued && expect_cqes(ring, first_queued, queued, out, len))
		return -1;
	return expect_cqes(ring, 0xf0, 1, out, len);
}

struct named_ring {
	const char *name;
	struct io_uring ring;
	int present;
	// The unconsumed CQEs at the detach (overflowed ones included), and the
	// queued SQEs, each a run of consecutive user_data.
	uint64_t first_cqe;
	int cqes;
	uint64_t first_queued;
	int queued;
};

enum { QUEUED, OVERFLOW, TWICE, SQPOLL, OWNED, NRINGS };
static struct named_ring rings[NRINGS] = {
	[QUEUED] = {"queued"}, [OVERFLOW] = {"overflow"}, [TWICE] = {"twice"},
	[SQPOLL] = {"sqpoll"}, [OWNED] = {"owned"},
};
static void *twice_cq_again;
static size_t twice_cq_len;

#define PBUF_ENTRIES 8
#define PBUF_LEN 32
// A buffer ring on the program's memory, `consumed` of its buffers taken
// by reads before the dump.
struct pbuf {
	const char *name;
	struct io_uring *ring;
	int bgid;
	int consumed;
	struct io_uring_buf_ring *br;
	char *bufs;
};
static struct pbuf pbufs_of[2] = {
	{"pbuf", NULL, 3, 5},        // on the queued ring
	{"pbuf_sqpoll", NULL, 4, 3}, // on the SQPOLL ring
};
static int pbuf_pipe[2] = {-1, -1};

// One read from the pipe of `data`, selecting a buffer of `pb`'s group;
// the buffer id taken, or -1 with `out` saying why.
static int pbuf_read(struct pbuf *pb, const char *data, char *out, size_t len)
{
	if (write(pbuf_pipe[1], data, strlen(data)) != (ssize_t)strlen(data)) {
		snprintf(out, len, "write(pipe): %s", strerror(errno));
		return -1;
	}
	struct io_uring_sqe *sqe = io_uring_get_sqe(pb->ring);
	if (!sqe) {
		snprintf(out, len, "no free SQE");
		return -1;
	}
	io_uring_prep_read(sqe, pbuf_pipe[0], NULL, PBUF_LEN, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = pb->bgid;
	sqe->user_data = 0xb0;
	struct io_uring_cqe *cqe;
	int ret = io_uring_submit_and_wait(pb->ring, 1);
	if (ret < 0 || io_uring_peek_cqe(pb->ring, &cqe) != 0) {
		snprintf(out, len, "read with a selected buffer: submit %d", ret);
		return -1;
	}
	int res = cqe->res, flags = cqe->flags;
	io_uring_cqe_seen(pb->ring, cqe);
	if (res != (int)strlen(data) || !(flags & IORING_CQE_F_BUFFER)) {
		snprintf(out, len, "read with a selected buffer: res %d flags 0x%x", res, flags);
		return -1;
	}
	return flags >> IORING_CQE_BUFFER_SHIFT;
}

static void set_up_pbuf(struct pbuf *pb, struct io_uring *ring)
{
	pb->ring = ring;
	pb->br = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	pb->bufs = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (pb->br == MAP_FAILED || pb->bufs == MAP_FAILED)
		die("mmap(pbuf)", errno);
	struct io_uring_buf_reg reg = {
		.ring_addr = (unsigned long)pb->br,
		.ring_entries = PBUF_ENTRIES,
		.bgid = pb->bgid,
	};
	int ret = io_uring_register_buf_ring(ring, &reg, 0);
	if (ret < 0)
		die("io_uring_register_buf_ring", ret);
	io_uring_buf_ring_init(pb->br);
	for (int i = 0; i < PBUF_ENTRIES; i++)
		io_uring_buf_ring_add(pb->br, pb->bufs + i * PBUF_LEN, PBUF_LEN, i,
				      io_uring_buf_ring_mask(PBUF_ENTRIES), i);
	io_uring_buf_ring_advance(pb->br, PBUF_ENTRIES);
	if (pbuf_pipe[0] < 0 && pipe(pbuf_pipe) != 0)
		die("pipe", errno);
	char data[24], why[128];
	for (int i = 0; i < pb->consumed; i++) {
		snprintf(data, sizeof(data), "early-%d", i);
		if (pbuf_read(pb, data, why, sizeof(why)) != i) {
			fprintf(stderr, "ring_detach_self: %s: consuming buffer %d: %s\n", pb->name, i,
				why);
			exit(1);
		}
	}
}

// After the restore: the next two reads take the buffers after the
// consumed ones (the kernel's head came back), their data lands there,
// and the consumed buffers still hold what was read into them before.
static void use_pbuf(struct pbuf *pb, char *out, size_t len)
{
	char expected[24];
	for (int i = 0; i < pb->consumed; i++) {
		snprintf(expected, sizeof(expected), "early-%d", i);
		if (memcmp(pb->bufs + i * PBUF_LEN, expected, strlen(expected)) != 0) {
			snprintf(out, len, "buffer %d changed: %.8s", i, pb->bufs + i * PBUF_LEN);
			return;
		}
	}
	for (int i = pb->consumed; i < pb->consumed + 2; i++) {
		snprintf(expected, sizeof(expected), "late-%d", i);
		int bid = pbuf_read(pb, expected, out, len);
		if (bid < 0)
			return;
		if (bid != i) {
			snprintf(out, len, "the read took buffer %d where %d was next", bid, i);
			return;
		}
		if (memcmp(pb->bufs + i * PBUF_LEN, expected, strlen(expected)) != 0) {
			snprintf(out, len, "buffer %d holds %.8s, not %s", i, pb->bufs + i * PBUF_LEN,
				 expected);
			return;
		}
	}
	snprintf(out, len, "ok");
}

// The no_mmap ring, by raw syscalls on memory of its own.
static struct {
	int fd;
	void *rings, *sqes;
	struct io_uring_params p;
} nm = {.fd = -1};

static void use_ring(struct named_ring *r, char *out, size_t len)
{
	if (expect_cqes(&r->ring, r->first_cqe, r->cqes, out, len) == 0 &&
	    submit_and_check(&r->ring, r->queued, r->first_queued, out, len) == 0)
		snprintf(out, len, "ok");
}

// The no_mmap ring by hand: 1 unconsumed CQE (0xd1), 1 queued NOP (0xd2).
static void use_no_mmap(char *out, size_t len)
{
	char *rings = nm.rings;
	uint32_t *sq_tail = (uint32_t *)(rings + nm.p.sq_off.tail);
	uint32_t *cq_head = (uint32_t *)(rings + nm.p.cq_off.head);
	uint32_t *cq_tail = (uint32_t *)(rings + nm.p.cq_off.tail);
	uint32_t cq_mask = *(uint32_t *)(rings + nm.p.cq_off.ring_mask);
	struct io_uring_cqe *cqes = (struct io_uring_cqe *)(rings + nm.p.cq_off.cqes);
	uint32_t head = *cq_head;
	if (__atomic_load_n(cq_tail, __ATOMIC_ACQUIRE) != head + 1 ||
	    cqes[head & cq_mask].user_data != 0xd1) {
		snprintf(out, len, "unconsumed CQE: head %u tail %u user_data 0x%llx", head, *cq_tail,
			 (unsigned long long)cqes[head & cq_mask].user_data);
		return;
	}
	__atomic_store_n(cq_head, head + 1, __ATOMIC_RELEASE);
	int ret = syscall(__NR_io_uring_enter, nm.fd, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0);
	if (ret != 1) {
		snprintf(out, len, "io_uring_enter: %d (%s)", ret, strerror(errno));
		return;
	}
	head++;
	if (__atomic_load_n(cq_tail, __ATOMIC_ACQUIRE) != head + 1 ||
	    cqes[head & cq_mask].user_data != 0xd2) {
		snprintf(out, len, "queued NOP's CQE: tail %u user_data 0x%llx (SQ tail %u)", *cq_tail,
			 (unsigned long long)cqes[head & cq_mask].user_data, *sq_tail);
		return;
	}
	__atomic_store_n(cq_head, head + 1, __ATOMIC_RELEASE);
	snprintf(out, len, "ok");
}

static int set_up_no_mmap(void)
{
	nm.rings = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	nm.sqes = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (nm.rings == MAP_FAILED || nm.sqes == MAP_FAILED)
		die("mmap", errno);
	memset(&nm.p, 0, sizeof(nm.p));
	nm.p.flags = IORING_SETUP_NO_MMAP | IORING_SETUP_NO_SQARRAY;
	nm.p.cq_off.resv2 = (uint64_t)(uintptr_t)nm.rings;
	nm.p.sq_off.resv2 = (uint64_t)(uintptr_t)nm.sqes;
	nm.fd = syscall(__NR_io_uring_setup, 4, &nm.p);
	if (nm.fd < 0)
		return -1;
	char *rings = nm.rings;
	uint32_t *ktail = (uint32_t *)(rings + nm.p.sq_off.tail);
	uint32_t mask = *(uint32_t *)(rings + nm.p.sq_off.ring_mask);
	for (int i = 0; i < 2; i++) {
		uint32_t tail = *ktail;
		struct io_uring_sqe *sqe = (struct io_uring_sqe *)nm.sqes + (tail & mask);
		memset(sqe, 0, sizeof(*sqe));
		sqe->opcode = IORING_OP_NOP;
		sqe->user_data = 0xd1 + i;
		__atomic_store_n(ktail, tail + 1, __ATOMIC_RELEASE);
		// The first is submitted (and completes), the second stays queued.
		if (i == 0 && syscall(__NR_io_uring_enter, nm.fd, 1, 1, IORING_ENTER_GETEVENTS,
				      NULL, 0) != 1)
			die("io_uring_enter(no_mmap)", errno);
	}
	return 0;
}

// The owner thread: sets up the owned ring, then runs what the main thread
// asks of it (one command at a time).
static pid_t owner_tid;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static enum { IDLE, READY, DO_DETACH, DO_USE, DONE } owner_state = IDLE;
static char owner_answer[256];

static void *owner_thread(void *arg)
{
	(void)arg;
	struct named_ring *r = &rings[OWNED];
	struct io_uring_params p;
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
	init(&r->ring, 4, &p, "owned ring");
	nops(&r->ring, 3, 1);
	struct io_uring_cqe *cqe;
	if (io_uring_wait_cqe_nr(&r->ring, &cqe, 3) < 0)
		die("wait owned", EIO);
	consume_all(&r->ring);
	nops(&r->ring, 1, 0x71);
	// DEFER_TASKRUN: the NOP's CQE is posted when this thread waits.
	if (io_uring_wait_cqe(&r->ring, &cqe) < 0)
		die("wait owned", EIO);
	r->first_cqe = 0x71;
	r->cqes = 1;
	r->present = 1;
	pthread_mutex_lock(&lock);
	owner_tid = syscall(SYS_gettid);
	owner_state = READY;
	pthread_cond_broadcast(&changed);
	for (;;) {
		while (owner_state != DO_DETACH && owner_state != DO_USE)
			pthread_cond_wait(&changed, &lock);
		if (owner_state == DO_DETACH)
			take_out(&r->ring);
		else
			use_ring(r, owner_answer, sizeof(owner_answer));
		owner_state = DONE;
		pthread_cond_broadcast(&changed);
	}
	return NULL;
}

static void ask_owner(int what)
{
	pthread_mutex_lock(&lock);
	owner_state = what;
	pthread_cond_broadcast(&changed);
	while (owner_state != DONE)
		pthread_cond_wait(&changed, &lock);
	owner_state = READY;
	pthread_mutex_unlock(&lock);
}

int main(int argc, char **argv)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	int want_owned = 0, want_no_mmap = 0, want_pbuf = 0;
	for (int i = 1; i < argc; i++) {
		want_owned |= strcmp(argv[i], "owned") == 0;
		want_no_mmap |= strcmp(argv[i], "no_mmap") == 0;
		want_pbuf |= strcmp(argv[i], "pbuf") == 0;
	}
	struct io_uring_params p;
	struct io_uring_cqe *cqe;

	struct named_ring *r = &rings[QUEUED];
	memset(&p, 0, sizeof(p));
	init(&r->ring, 8, &p, "queued ring");
	advance(&r->ring, "queued");
	if (want_pbuf)
		set_up_pbuf(&pbufs_of[0], &r->ring);
	nops(&r->ring, 2, 0xc1);
	if (io_uring_wait_cqe_nr(&r->ring, &cqe, 2) < 0)
		die("wait queued", EIO);
	queue_without_submit(&r->ring, 3, 0xa1);
	*r = (struct named_ring){"queued", r->ring, 1, 0xc1, 2, 0xa1, 3};

	r = &rings[OVERFLOW];
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_CQSIZE;
	p.cq_entries = 8;
	init(&r->ring, 4, &p, "overflow ring");
	for (int batch = 0; batch < 3; batch++)
		nops(&r->ring, 4, 0x100 + 4 * batch);
	r->present = 1;
	r->first_cqe = 0x100;
	r->cqes = 12;

	r = &rings[TWICE];
	memset(&p, 0, sizeof(p));
	init(&r->ring, 4, &p, "twice ring");
	twice_cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
	twice_cq_again = mmap(NULL, twice_cq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
			      r->ring.ring_fd, IORING_OFF_CQ_RING);
	if (twice_cq_again == MAP_FAILED)
		die("mmap CQ ring again", errno);
	nops(&r->ring, 1, 0xe1);
	if (io_uring_wait_cqe(&r->ring, &cqe) < 0)
		die("wait twice", EIO);
	r->present = 1;
	r->first_cqe = 0xe1;
	r->cqes = 1;

	r = &rings[SQPOLL];
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SQPOLL;
	p.sq_thread_idle = 10;
	init(&r->ring, 8, &p, "sqpoll ring");
	advance(&r->ring, "sqpoll");
	if (want_pbuf)
		set_up_pbuf(&pbufs_of[1], &r->ring);
	nops(&r->ring, 2, 0x51);
	if (io_uring_wait_cqe_nr(&r->ring, &cqe, 2) < 0)
		die("wait sqpoll", EIO);
	r->present = 1;
	r->first_cqe = 0x51;
	r->cqes = 2;

	if (want_no_mmap && set_up_no_mmap() != 0)
		nm.fd = -1;

	if (want_owned) {
		pthread_t thread;
		if (pthread_create(&thread, NULL, owner_thread, NULL) != 0)
			die("pthread_create", errno);
		pthread_mutex_lock(&lock);
		while (owner_state != READY)
			pthread_cond_wait(&changed, &lock);
		pthread_mutex_unlock(&lock);
	}

	printf("{\"pid\":%d,\"owner_tid\":%d,\"rings\":{", getpid(), owner_tid);
	const char *sep = "";
	for (int i = 0; i < NRINGS; i++) {
		if (!rings[i].present)
			continue;
		printf("%s\"%s\":{\"fd\":%d}", sep, rings[i].name, rings[i].ring.ring_fd);
		sep = ",";
	}
	if (nm.fd >= 0)
		printf("%s\"no_mmap\":{\"fd\":%d,\"rings\":%lu,\"sqes\":%lu}", sep, nm.fd,
		       (unsigned long)nm.rings, (unsigned long)nm.sqes);
	printf("}");
	for (int i = 0; want_pbuf && i < 2; i++)
		printf(",\"%s\":{\"ring\":%lu,\"buffers\":%lu}", pbufs_of[i].name,
		       (unsigned long)pbufs_of[i].br, (unsigned long)pbufs_of[i].bufs);
	printf("}\n");
	fflush(stdout);

	char line[64];
	while (fgets(line, sizeof(line), stdin)) {
		if (strncmp(line, "detach", 6) == 0) {
			for (int i = 0; i < NRINGS; i++) {
				if (!rings[i].present || i == OWNED)
					continue;
				if (i == TWICE)
					munmap(twice_cq_again, twice_cq_len);
				take_out(&rings[i].ring);
			}
			if (rings[OWNED].present)
				ask_owner(DO_DETACH);
			if (nm.fd >= 0)
				close(nm.fd);
			printf("detached\n");
		} else if (strncmp(line, "use", 3) == 0) {
			char answer[256];
			printf("{");
			sep = "";
			for (int i = 0; i < NRINGS; i++) {
				if (!rings[i].present)
					continue;
				if (i == OWNED) {
					ask_owner(DO_USE);
					snprintf(answer, sizeof(answer), "%s", owner_answer);
				} else {
					snprintf(answer, sizeof(answer), "not run");
					use_ring(&rings[i], answer, sizeof(answer));
				}
				printf("%s\"%s\":\"%s\"", sep, rings[i].name, answer);
				sep = ",";
			}
			if (nm.fd >= 0) {
				snprintf(answer, sizeof(answer), "not run");
				use_no_mmap(answer, sizeof(answer));
				printf("%s\"no_mmap\":\"%s\"", sep, answer);
			}
			for (int i = 0; want_pbuf && i < 2; i++) {
				snprintf(answer, sizeof(answer), "not run");
				use_pbuf(&pbufs_of[i], answer, sizeof(answer));
				printf("%s\"%s\":\"%s\"", sep, pbufs_of[i].name, answer);
			}
			printf("}\n");
		} else {
			printf("unknown command\n");
		}
		fflush(stdout);
	}
	return 0;
}
