// pbuf_mmap_reader: a program that reads through a buffer ring the kernel
// allocated (IOU_PBUF_RING_MMAP, Linux 6.4+) and that it mapped from its
// ring fd, as liburing's io_uring_setup_buf_ring does.
//
// It registers group 5 (16 entries) in kernel memory on a ring (liburing,
// 8 entries), maps it at IORING_OFF_PBUF_RING | 5 << IORING_OFF_PBUF_SHIFT,
// and provides BUFFERS buffers of 64 bytes through it (bids 100 + i, each
// at its own place in an area; entries written, then the tail). Then it
// takes TAKEN buffers: for each, it writes a 64-byte record numbered by its
// sequence into a pipe and reads it back through the ring with
// IOSQE_BUFFER_SELECT from group 5, and checks from the CQE that the kernel
// chose the next buffer (bid 100 + sequence) and that the record landed in
// that buffer.
//
// It prints {"pid": P, "taken": TAKEN, "buffers": BUFFERS, "ring": ADDR,
// "area": ADDR} and waits for a line on stdin (a test takes its ring out and
// puts it back meanwhile; a line "squat" has it map memory of its own where
// the buffer ring was, filled with 0xab, and print {"squatted": ADDR}),
// then takes every remaining buffer the same way,
// provides 2 more through the ring's tail (bids 200, 201: the ring must
// still be where the program has it) and takes them, checks that one more
// read finds the group empty (-ENOBUFS), unregisters the buffer ring and
// unmaps it (liburing's io_uring_free_buf_ring), and prints {"done": N,
// "bids": [...], "addrs": [...]} with the bid and buffer address of every
// read after the wait, from its CQEs, and exits 0. Anything wrong: named on
// stderr, exit 1. A kernel without IOU_PBUF_RING_MMAP: {"unsupported":
// ERRNO} on stdout, exit 3.
//
// Usage: pbuf_mmap_reader BUFFERS TAKEN
// Build: cc -O2 -Wall -o pbuf_mmap_reader pbuf_mmap_reader.c -luring -lpthread
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

// Not in the 6.1 uapi headers Debian 12's liburing ships.
#define PBUF_RING_MMAP 1
#define OFF_PBUF_RING 0x80000000ULL
#define OFF_PBUF_SHIFT 16

#define GROUP 5
#ifndef ENTRIES
#define ENTRIES 16
#endif
#define BUFFER 64
#define FIRST_BID 100
#define MORE_BID 200
#define MORE 2

static struct io_uring ring;
static unsigned char *area;
static struct io_uring_buf_ring *br;
static size_t br_len;
static int pipe_fds[2];
static uint16_t tail;

static void fail(const char *what, int err)
{
	fprintf(stderr, "pbuf_mmap_reader: %s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(1);
}

static unsigned char *buffer_of(unsigned bid)
{
	return area + (size_t)(bid - FIRST_BID) * BUFFER;
}

static void record(unsigned char *out, unsigned seq)
{
	for (unsigned i = 0; i < BUFFER; i++)
		out[i] = (unsigned char)(seq * 37 + i);
}

// Adds one buffer at the tail's entry; the tail is published by publish().
static void add(unsigned bid)
{
	struct io_uring_buf *entry = &br->bufs[tail & (ENTRIES - 1)];
	entry->addr = (uint64_t)(uintptr_t)buffer_of(bid);
	entry->len = BUFFER;
	entry->bid = (uint16_t)bid;
	tail++;
}

static void publish(void)
{
	atomic_store_explicit((_Atomic uint16_t *)&br->tail, tail, memory_order_release);
}

// Submits a read of one record from the pipe through group 5; its CQE.
static struct io_uring_cqe read_selected(void)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
	if (!sqe)
		fail("io_uring_get_sqe", EBUSY);
	io_uring_prep_read(sqe, pipe_fds[0], NULL, BUFFER, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = GROUP;
	int ret = io_uring_submit(&ring);
	if (ret != 1)
		fail("io_uring_submit", ret < 0 ? ret : EIO);
	struct io_uring_cqe *cqe;
	ret = io_uring_wait_cqe(&ring, &cqe);
	if (ret < 0)
		fail("io_uring_wait_cqe", ret);
	struct io_uring_cqe copy = *cqe;
	io_uring_cqe_seen(&ring, cqe);
	return copy;
}

// Takes the next buffer with record `seq`, expecting bid `want`; returns
// the bid the CQE named.
static unsigned take(unsigned seq, unsigned want)
{
	unsigned char expected[BUFFER];
	record(expected, seq);
	if (write(pipe_fds[1], expected, BUFFER) != BUFFER)
		fail("write (the pipe)", errno);
	struct io_uring_cqe cqe = read_selected();
	if (cqe.res != BUFFER) {
		fprintf(stderr, "pbuf_mmap_reader: read %u: res %d\n", seq, cqe.res);
		exit(1);
	}
	if (!(cqe.flags & IORING_CQE_F_BUFFER)) {
		fprintf(stderr, "pbuf_mmap_reader: read %u: no buffer selected\n", seq);
		exit(1);
	}
	unsigned bid = cqe.flags >> IORING_CQE_BUFFER_SHIFT;
	if (bid != want) {
		fprintf(stderr, "pbuf_mmap_reader: read %u: the kernel chose bid %u, not %u\n", seq, bid, want);
		exit(1);
	}
	if (memcmp(buffer_of(bid), expected, BUFFER) != 0) {
		fprintf(stderr, "pbuf_mmap_reader: read %u: bid %u's buffer does not hold the record\n", seq, bid);
		exit(1);
	}
	return bid;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: pbuf_mmap_reader BUFFERS TAKEN\n");
		return 2;
	}
	unsigned buffers = (unsigned)strtoul(argv[1], NULL, 10);
	unsigned taken = (unsigned)strtoul(argv[2], NULL, 10);
	if (buffers < 1 || buffers + MORE > ENTRIES || taken > buffers)
		fail("BUFFERS must be 1 to 14 and TAKEN at most BUFFERS", EINVAL);
	if (pipe2(pipe_fds, O_CLOEXEC) != 0)
		fail("pipe2", errno);
	int ret = io_uring_queue_init(8, &ring, 0);
	if (ret < 0)
		fail("io_uring_queue_init", ret);
	struct io_uring_buf_reg reg;
	memset(&reg, 0, sizeof(reg));
	reg.ring_entries = ENTRIES;
	reg.bgid = GROUP;
	reg.pad = PBUF_RING_MMAP; // `flags` in newer headers
	ret = io_uring_register_buf_ring(&ring, &reg, 0);
	if (ret == -EINVAL) {
		printf("{\"unsupported\": %d}\n", -ret);
		return 3;
	}
	if (ret < 0)
		fail("IORING_REGISTER_PBUF_RING (IOU_PBUF_RING_MMAP)", ret);
	br_len = ((size_t)ENTRIES * sizeof(struct io_uring_buf) + 4095) & ~(size_t)4095;
	br = mmap(NULL, br_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring.ring_fd,
		  OFF_PBUF_RING | ((unsigned long long)GROUP << OFF_PBUF_SHIFT));
	if (br == MAP_FAILED)
		fail("mmap of the buffer ring", errno);
	// Room for the first buffers and the later ones, one page apart.
	area = mmap(NULL, (size_t)(MORE_BID + MORE - FIRST_BID) * BUFFER, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED)
		fail("mmap", errno);
	for (unsigned i = 0; i < buffers; i++)
		add(FIRST_BID + i);
	publish();

	for (unsigned seq = 0; seq < taken; seq++)
		take(seq, FIRST_BID + seq);
	printf("{\"pid\": %d, \"taken\": %u, \"buffers\": %u, \"ring\": %llu, \"area\": %llu}\n", (int)getpid(),
	       taken, buffers, (unsigned long long)(uintptr_t)br, (unsigned long long)(uintptr_t)area);
	fflush(stdout);
	char line[64];
	for (;;) {
		if (!fgets(line, sizeof(line), stdin))
			fail("reading stdin", EPIPE);
		if (strcmp(line, "squat\n") != 0)
			break;
		// Its own memory where the buffer ring was (after a take-out
		// unmapped it): what a restore must not write over.
		void *squat = mmap(br, br_len, PROT_READ | PROT_WRITE,
				   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		if (squat != (void *)br)
			fail("mmap where the buffer ring was", errno);
		memset(squat, 0xab, br_len);
		printf("{\"squatted\": %llu}\n", (unsigned long long)(uintptr_t)squat);
		fflush(stdout);
	}

	unsigned got_bids[ENTRIES];
	unsigned long long got_addrs[ENTRIES];
	unsigned got = 0;
	unsigned seq = taken;
	for (; seq < buffers; seq++) {
		unsigned bid = take(seq, FIRST_BID + seq);
		got_bids[got] = bid;
		got_addrs[got++] = (unsigned long long)(uintptr_t)buffer_of(bid);
	}
	// More buffers through the tail, where the program has the ring.
	for (unsigned i = 0; i < MORE; i++)
		add(MORE_BID + i);
	publish();
	for (unsigned i = 0; i < MORE; i++, seq++) {
		unsigned bid = take(seq, MORE_BID + i);
		got_bids[got] = bid;
		got_addrs[got++] = (unsigned long long)(uintptr_t)buffer_of(bid);
	}
	// The group is empty now: one more read finds no buffer.
	unsigned char extra[BUFFER];
	record(extra, seq);
	if (write(pipe_fds[1], extra, BUFFER) != BUFFER)
		fail("write (the pipe)", errno);
	struct io_uring_cqe cqe = read_selected();
	if (cqe.res != -ENOBUFS) {
		fprintf(stderr, "pbuf_mmap_reader: a read past the last buffer got %d, not -ENOBUFS\n", cqe.res);
		exit(1);
	}
	// What liburing's io_uring_free_buf_ring does.
	if (munmap(br, br_len) != 0)
		fail("munmap of the buffer ring", errno);
	ret = io_uring_unregister_buf_ring(&ring, GROUP);
	if (ret < 0)
		fail("IORING_UNREGISTER_PBUF_RING", ret);

	printf("{\"done\": %u, \"bids\": [", got);
	for (unsigned i = 0; i < got; i++)
		printf("%s%u", i ? ", " : "", got_bids[i]);
	printf("], \"addrs\": [");
	for (unsigned i = 0; i < got; i++)
		printf("%s%llu", i ? ", " : "", got_addrs[i]);
	printf("]}\n");
	fflush(stdout);
	return 0;
}
