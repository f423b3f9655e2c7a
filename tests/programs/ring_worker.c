// ring_worker: a liburing program that does real work through one ring and
// keeps its own positions (liburing's get_sqe / submit / wait_cqe, which
// cache the ring's head and tail in the program's memory), so that it can
// only finish correctly if the ring comes back exactly where it left it:
// its memory at the same addresses, its positions, its unconsumed CQEs, its
// queued and prepared SQEs, its registered file, buffers and eventfd.
//
// Usage: ring_worker MODE OUTPUT RECORDS [ADVANCE [GO_FILE]]
//   MODE     plain | sqpoll | defer (SINGLE_ISSUER | DEFER_TASKRUN, the ring
//            created and used by a second thread, not the main one) |
//            pbuf (plain, and every read back selects its buffer from a
//            buffer ring of 8 (bgid 1) on the program's memory, each
//            buffer given back after; before the pause RECORDS/2 - 5
//            records are read back so, so the kernel's head is far from 0
//            and not a multiple of 8; every read checks it got the buffer
//            that was next)
//   OUTPUT   a file it creates; RECORDS records of 512 bytes are written to
//            it with IORING_OP_WRITE_FIXED through registered file 0 (the
//            file's own fd is closed once registered) from registered
//            buffers, QD at a time, then read back with READ_FIXED and
//            checked
//   ADVANCE  NOPs submitted first, so the positions are far from 0
//            (default 5000)
//   GO_FILE  at the pause, wait for this file to exist instead of a line
//            on stdin (a process restored by CRIU has no pipe to its
//            starter)
//
// It prints one JSON line when set up: {"pid", "worker_tid", "ring_fd",
// "eventfd"}. At record RECORDS/2 it stops in a known state and prints
// {"paused": ...}: 2 writes completed and not consumed, and (except with
// sqpoll) 1 write queued (the ring's tail advanced, no io_uring_enter)
// and 1 prepared with io_uring_get_sqe only (its slot and liburing's tail,
// not the ring's). It then waits for a line on stdin, consumes, submits,
// and writes the rest. At the end it prints {"done": RECORDS, "ok": true}
// and exits 0, or names what went wrong on stderr and exits 1.
//
// Build: cc -O2 -Wall -o ring_worker ring_worker.c -luring -lpthread
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define QD 4
#define RECORD 512

static const char *mode;
static const char *output;
static unsigned records;
static unsigned advance = 5000;
static const char *go_file;

static void fail(const char *what, int err)
{
	fprintf(stderr, "ring_worker: %s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(1);
}

static void wrong(const char *what, unsigned long long a, unsigned long long b)
{
	fprintf(stderr, "ring_worker: %s: %llu, expected %llu\n", what, a, b);
	exit(1);
}

// Record `seq`: its number, then bytes that depend on it.
static void fill(unsigned char *buf, unsigned seq)
{
	memcpy(buf, &seq, sizeof(seq));
	for (unsigned i = sizeof(seq); i < RECORD; i++)
		buf[i] = (unsigned char)(seq * 31 + i * 7);
}

static struct io_uring ring;
static unsigned char *buffers; // QD slots of RECORD bytes, registered
static int efd;

#define PBUF_BGID 1
#define PBUF_ENTRIES 8
static struct io_uring_buf_ring *pbuf_ring; // the program's memory
static unsigned char *pbufs;                // PBUF_ENTRIES buffers of RECORD bytes
static unsigned pbuf_taken;                 // buffers the kernel handed out: its head

static struct io_uring_sqe *sqe_or_die(void)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
	// An SQ thread may post a batch's CQEs before it publishes its SQ
	// head: wait for the slots, as liburing offers.
	while (!sqe && (ring.flags & IORING_SETUP_SQPOLL)) {
		int ret = io_uring_sqring_wait(&ring);
		if (ret < 0)
			fail("io_uring_sqring_wait", ret);
		sqe = io_uring_get_sqe(&ring);
	}
	if (!sqe)
		fail("io_uring_get_sqe", ENOSPC);
	return sqe;
}

// Prepares the write of record `seq` from buffer slot seq % QD.
static void prep_write(unsigned seq)
{
	unsigned slot = seq % QD;
	fill(buffers + slot * RECORD, seq);
	struct io_uring_sqe *sqe = sqe_or_die();
	io_uring_prep_write_fixed(sqe, 0, buffers + slot * RECORD, RECORD, (off_t)seq * RECORD, slot);
	sqe->flags |= IOSQE_FIXED_FILE;
	sqe->user_data = seq;
}

// Waits for the completion of write `seq` (completions come in order
// here: one file, writes of whole records) and consumes it.
static void reap(unsigned seq)
{
	struct io_uring_cqe *cqe;
	int ret = io_uring_wait_cqe(&ring, &cqe);
	if (ret < 0)
		fail("io_uring_wait_cqe", ret);
	if (cqe->user_data != seq)
		wrong("completion user_data", cqe->user_data, seq);
	if (cqe->res != RECORD)
		wrong("write result", (unsigned long long)(long long)cqe->res, RECORD);
	io_uring_cqe_seen(&ring, cqe);
}

// Publishes the prepared SQEs (the ring's tail) without io_uring_enter, as
// liburing does internally before entering.
static void publish_only(void)
{
	unsigned tail = *ring.sq.ktail;
	unsigned mask = *ring.sq.kring_mask;
	while (tail != ring.sq.sqe_tail) {
		ring.sq.array[tail & mask] = ring.sq.sqe_head & mask;
		ring.sq.sqe_head++;
		tail++;
	}
	__atomic_store_n(ring.sq.ktail, tail, __ATOMIC_RELEASE);
}

static void wait_for_line(void)
{
	char c;
	if (go_file) {
		while (access(go_file, F_OK) != 0) {
			struct timespec tick = {0, 10 * 1000 * 1000};
			nanosleep(&tick, NULL);
		}
		return;
	}
	for (;;) {
		ssize_t got = read(0, &c, 1);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			fail("stdin closed before the go line", EPIPE);
		if (c == '\n')
			return;
	}
}

// Writes records [from, to) keeping QD writes in flight.
static void write_records(unsigned from, unsigned to)
{
	unsigned next = from, done = from;
	while (done < to) {
		while (next < to && next - done < QD)
			prep_write(next++);
		int ret = io_uring_submit(&ring);
		if (ret < 0)
			fail("io_uring_submit", ret);
		reap(done++);
	}
}

static void set_up_pbuf(void)
{
	pbuf_ring = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (pbuf_ring == MAP_FAILED)
		fail("mmap (buffer ring)", errno);
	if (posix_memalign((void **)&pbufs, 4096, PBUF_ENTRIES * RECORD) != 0)
		fail("posix_memalign (buffer ring)", ENOMEM);
	struct io_uring_buf_reg reg = {
		.ring_addr = (unsigned long)pbuf_ring,
		.ring_entries = PBUF_ENTRIES,
		.bgid = PBUF_BGID,
	};
	int ret = io_uring_register_buf_ring(&ring, &reg, 0);
	if (ret < 0)
		fail("io_uring_register_buf_ring", ret);
	io_uring_buf_ring_init(pbuf_ring);
	for (int i = 0; i < PBUF_ENTRIES; i++)
		io_uring_buf_ring_add(pbuf_ring, pbufs + i * RECORD, RECORD, i,
				      io_uring_buf_ring_mask(PBUF_ENTRIES), i);
	io_uring_buf_ring_advance(pbuf_ring, PBUF_ENTRIES);
}

// Reads record `seq` back into a buffer the kernel selects: the one after
// the last it handed out (each is given back at the ring's tail, so slot
// and buffer id are the same: the head modulo 8); checks it and gives it
// back.
static void read_selected(unsigned seq)
{
	unsigned char want[RECORD];
	struct io_uring_sqe *sqe = sqe_or_die();
	io_uring_prep_read(sqe, 0, NULL, RECORD, (off_t)seq * RECORD);
	sqe->flags |= IOSQE_FIXED_FILE | IOSQE_BUFFER_SELECT;
	sqe->buf_group = PBUF_BGID;
	sqe->user_data = seq;
	int ret = io_uring_submit(&ring);
	if (ret < 0)
		fail("io_uring_submit (selected read)", ret);
	struct io_uring_cqe *cqe;
	ret = io_uring_wait_cqe(&ring, &cqe);
	if (ret < 0)
		fail("io_uring_wait_cqe (selected read)", ret);
	if (cqe->user_data != seq || cqe->res != RECORD || !(cqe->flags & IORING_CQE_F_BUFFER))
		wrong("selected read of record", seq, (unsigned long long)(long long)cqe->res);
	unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
	io_uring_cqe_seen(&ring, cqe);
	if (bid != pbuf_taken % PBUF_ENTRIES)
		wrong("buffer the kernel selected", bid, pbuf_taken % PBUF_ENTRIES);
	fill(want, seq);
	if (memcmp(want, pbufs + bid * RECORD, RECORD) != 0)
		wrong("content of record (selected buffer)", seq, seq);
	io_uring_buf_ring_add(pbuf_ring, pbufs + bid * RECORD, RECORD, bid,
			      io_uring_buf_ring_mask(PBUF_ENTRIES), 0);
	io_uring_buf_ring_advance(pbuf_ring, 1);
	pbuf_taken++;
}

static void verify_output(void)
{
	unsigned char want[RECORD];
	for (unsigned seq = 0; seq < records; seq++) {
		if (pbuf_ring) {
			read_selected(seq);
			continue;
		}
		struct io_uring_sqe *sqe = sqe_or_die();
		io_uring_prep_read_fixed(sqe, 0, buffers, RECORD, (off_t)seq * RECORD, 0);
		sqe->flags |= IOSQE_FIXED_FILE;
		sqe->user_data = seq;
		int ret = io_uring_submit(&ring);
		if (ret < 0)
			fail("io_uring_submit (read)", ret);
		struct io_uring_cqe *cqe;
		ret = io_uring_wait_cqe(&ring, &cqe);
		if (ret < 0)
			fail("io_uring_wait_cqe (read)", ret);
		if (cqe->user_data != seq || cqe->res != RECORD)
			wrong("read back record", seq, (unsigned long long)(long long)cqe->res);
		io_uring_cqe_seen(&ring, cqe);
		fill(want, seq);
		if (memcmp(want, buffers, RECORD) != 0)
			wrong("content of record", seq, seq);
	}
}

static void *work(void *unused)
{
	(void)unused;
	struct io_uring_params p;
	memset(&p, 0, sizeof(p));
	if (strcmp(mode, "sqpoll") == 0) {
		p.flags = IORING_SETUP_SQPOLL;
		p.sq_thread_idle = 50;
	} else if (strcmp(mode, "defer") == 0) {
		p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
	} else if (strcmp(mode, "plain") != 0 && strcmp(mode, "pbuf") != 0) {
		fail("MODE must be plain, sqpoll, defer or pbuf", EINVAL);
	}
	int ret = io_uring_queue_init_params(8, &ring, &p);
	if (ret < 0)
		fail("io_uring_queue_init_params", ret);

	// Positions far from 0: NOPs, 8 at a time.
	for (unsigned done = 0; done < advance; done += 8) {
		for (int i = 0; i < 8; i++) {
			struct io_uring_sqe *sqe = sqe_or_die();
			io_uring_prep_nop(sqe);
			sqe->user_data = 1;
		}
		ret = io_uring_submit_and_wait(&ring, 8);
		if (ret < 0)
			fail("io_uring_submit_and_wait (nops)", ret);
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;
		io_uring_for_each_cqe(&ring, head, cqe) seen++;
		io_uring_cq_advance(&ring, seen);
		if (seen != 8)
			wrong("NOP completions", seen, 8);
	}

	int fd = open(output, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		fail(output, errno);
	ret = io_uring_register_files(&ring, &fd, 1);
	if (ret < 0)
		fail("io_uring_register_files", ret);
	close(fd); // the ring alone holds the file now
	if (posix_memalign((void **)&buffers, 4096, QD * RECORD) != 0)
		fail("posix_memalign", ENOMEM);
	memset(buffers, 0, QD * RECORD);
	struct iovec iov[QD];
	for (int i = 0; i < QD; i++) {
		iov[i].iov_base = buffers + i * RECORD;
		iov[i].iov_len = RECORD;
	}
	ret = io_uring_register_buffers(&ring, iov, QD);
	if (ret < 0)
		fail("io_uring_register_buffers", ret);
	efd = eventfd(0, EFD_CLOEXEC);
	if (efd < 0)
		fail("eventfd", errno);
	ret = io_uring_register_eventfd(&ring, efd);
	if (ret < 0)
		fail("io_uring_register_eventfd", ret);
	if (strcmp(mode, "pbuf") == 0)
		set_up_pbuf();

	printf("{\"pid\": %d, \"worker_tid\": %d, \"ring_fd\": %d, \"eventfd\": %d}\n", (int)getpid(),
	       (int)syscall(SYS_gettid), ring.ring_fd, efd);
	fflush(stdout);

	unsigned half = records / 2;
	write_records(0, half);
	if (pbuf_ring)
		for (unsigned seq = 0; seq + 5 < half; seq++)
			read_selected(seq);

	// The known state: writes half and half+1 completed, not consumed.
	prep_write(half);
	prep_write(half + 1);
	ret = io_uring_submit_and_wait(&ring, 2);
	if (ret < 0)
		fail("io_uring_submit_and_wait (pause)", ret);
	unsigned queued = 0, prepared = 0;
	if (strcmp(mode, "sqpoll") != 0) {
		// An SQ thread would consume a published SQE at once.
		prep_write(half + 2);
		publish_only();
		queued = 1;
	}
	prep_write(half + 2 + queued);
	prepared = 1;
	printf("{\"paused\": {\"at\": %u, \"unconsumed\": 2, \"queued\": %u, \"prepared\": %u}}\n", half,
	       queued, prepared);
	fflush(stdout);
	wait_for_line();

	reap(half);
	reap(half + 1);
	unsigned next = half + 2, done = half + 2;
	next += queued + prepared;
	ret = io_uring_submit(&ring);
	if (ret < 0)
		fail("io_uring_submit (after the pause)", ret);
	while (done < next)
		reap(done++);
	write_records(next, records);

	verify_output();
	uint64_t signalled = 0;
	if (read(efd, &signalled, sizeof(signalled)) != sizeof(signalled))
		fail("reading the eventfd", errno);
	if (signalled == 0)
		wrong("eventfd count", 0, 1);
	printf("{\"done\": %u, \"ok\": true, \"eventfd_count\": %llu}\n", records,
	       (unsigned long long)signalled);
	fflush(stdout);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: ring_worker plain|sqpoll|defer|pbuf OUTPUT RECORDS [ADVANCE [GO_FILE]]\n");
		return 2;
	}
	mode = argv[1];
	output = argv[2];
	records = (unsigned)strtoul(argv[3], NULL, 10);
	if (argc > 4)
		advance = (unsigned)strtoul(argv[4], NULL, 10);
	if (argc > 5)
		go_file = argv[5];
	// Dies with its starter (a test), except when it is to be checkpointed
	// (GO_FILE): CRIU would deliver the signal right after a restore, when
	// the restoring criu exits.
	if (!go_file)
		prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (records < 8)
		fail("RECORDS must be at least 8", EINVAL);
	if (strcmp(mode, "defer") == 0) {
		pthread_t worker;
		if (pthread_create(&worker, NULL, work, NULL) != 0)
			fail("pthread_create", errno);
		pthread_join(worker, NULL);
	} else {
		work(NULL);
	}
	return 0;
}
