// legacy_reader: a program that reads through a legacy provided-buffer
// group (IORING_OP_PROVIDE_BUFFERS), whose buffers only the kernel keeps.
//
// It provides BUFFERS buffers of 64 bytes to group 7 of a ring (liburing,
// 8 entries) with two PROVIDE_BUFFERS: bids 0..H-1 at the start of an
// area and bids H..BUFFERS-1 one page further on (H = BUFFERS / 2), so the
// kernel's list is two runs. Then it takes TAKEN buffers: for each, it
// writes a 64-byte record numbered by its sequence into a pipe and reads
// it back through the ring with IOSQE_BUFFER_SELECT from group 7, and
// checks from the CQE that the kernel chose the next bid in its list
// (sequence = bid), and that the record landed in that bid's buffer.
//
// It prints {"pid": P, "taken": TAKEN, "buffers": BUFFERS} and waits for a
// line on stdin (a test takes its ring out and puts it back meanwhile),
// then takes every remaining buffer the same way, then checks that one
// more read finds the group empty (-ENOBUFS), prints
// {"done": BUFFERS, "ok": true} and exits 0. Anything wrong: named on
// stderr, exit 1.
//
// Usage: legacy_reader BUFFERS TAKEN
// Build: cc -O2 -Wall -o legacy_reader legacy_reader.c -luring -lpthread
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define GROUP 7
#define BUFFER 64
#define PAGE 4096

static struct io_uring ring;
static unsigned char *area;
static unsigned buffers, half;
static int pipe_fds[2];

static void fail(const char *what, int err)
{
	fprintf(stderr, "legacy_reader: %s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(1);
}

static unsigned char *buffer_of(unsigned bid)
{
	if (bid < half)
		return area + (size_t)bid * BUFFER;
	return area + (size_t)half * BUFFER + PAGE + (size_t)(bid - half) * BUFFER;
}

static void record(unsigned char *out, unsigned seq)
{
	for (unsigned i = 0; i < BUFFER; i++)
		out[i] = (unsigned char)(seq * 31 + i);
}

static struct io_uring_sqe *next_sqe(void)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
	if (!sqe)
		fail("io_uring_get_sqe", EBUSY);
	return sqe;
}

static int wait_one(struct io_uring_cqe *out)
{
	struct io_uring_cqe *cqe;
	int ret = io_uring_wait_cqe(&ring, &cqe);
	if (ret < 0)
		fail("io_uring_wait_cqe", ret);
	*out = *cqe;
	io_uring_cqe_seen(&ring, cqe);
	return 0;
}

static void provide(unsigned first_bid, unsigned count, unsigned char *addr)
{
	struct io_uring_sqe *sqe = next_sqe();
	io_uring_prep_provide_buffers(sqe, addr, BUFFER, count, GROUP, first_bid);
	io_uring_submit(&ring);
	struct io_uring_cqe cqe;
	wait_one(&cqe);
	if (cqe.res < 0)
		fail("IORING_OP_PROVIDE_BUFFERS", cqe.res);
}

// Submits a read of one record from the pipe through group 7; its CQE.
static struct io_uring_cqe read_selected(void)
{
	struct io_uring_sqe *sqe = next_sqe();
	io_uring_prep_read(sqe, pipe_fds[0], NULL, BUFFER, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = GROUP;
	int ret = io_uring_submit(&ring);
	if (ret != 1)
		fail("io_uring_submit", ret < 0 ? ret : EIO);
	struct io_uring_cqe cqe;
	wait_one(&cqe);
	return cqe;
}

static void take(unsigned seq)
{
	unsigned char expected[BUFFER];
	record(expected, seq);
	if (write(pipe_fds[1], expected, BUFFER) != BUFFER)
		fail("write (the pipe)", errno);
	struct io_uring_cqe cqe = read_selected();
	if (cqe.res != BUFFER) {
		fprintf(stderr, "legacy_reader: read %u: res %d\n", seq, cqe.res);
		exit(1);
	}
	if (!(cqe.flags & IORING_CQE_F_BUFFER)) {
		fprintf(stderr, "legacy_reader: read %u: no buffer selected\n", seq);
		exit(1);
	}
	unsigned bid = cqe.flags >> IORING_CQE_BUFFER_SHIFT;
	if (bid != seq) {
		fprintf(stderr, "legacy_reader: read %u: the kernel chose bid %u\n", seq, bid);
		exit(1);
	}
	if (memcmp(buffer_of(bid), expected, BUFFER) != 0) {
		fprintf(stderr, "legacy_reader: read %u: bid %u's buffer does not hold the record\n", seq, bid);
		exit(1);
	}
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: legacy_reader BUFFERS TAKEN\n");
		return 2;
	}
	buffers = (unsigned)strtoul(argv[1], NULL, 10);
	unsigned taken = (unsigned)strtoul(argv[2], NULL, 10);
	if (buffers < 2 || buffers > 4096 || taken > buffers)
		fail("BUFFERS must be 2 to 4096 and TAKEN at most BUFFERS", EINVAL);
	half = buffers / 2;
	if (pipe2(pipe_fds, O_CLOEXEC) != 0)
		fail("pipe2", errno);
	int ret = io_uring_queue_init(8, &ring, 0);
	if (ret < 0)
		fail("io_uring_queue_init", ret);
	area = mmap(NULL, (size_t)buffers * BUFFER + PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED)
		fail("mmap", errno);
	provide(0, half, buffer_of(0));
	provide(half, buffers - half, buffer_of(half));

	for (unsigned seq = 0; seq < taken; seq++)
		take(seq);
	printf("{\"pid\": %d, \"taken\": %u, \"buffers\": %u}\n", (int)getpid(), taken, buffers);
	fflush(stdout);
	char line[64];
	if (!fgets(line, sizeof(line), stdin))
		fail("reading stdin", EPIPE);

	for (unsigned seq = taken; seq < buffers; seq++)
		take(seq);
	// The group is empty now: one more read finds no buffer.
	unsigned char extra[BUFFER];
	record(extra, buffers);
	if (write(pipe_fds[1], extra, BUFFER) != BUFFER)
		fail("write (the pipe)", errno);
	struct io_uring_cqe cqe = read_selected();
	if (cqe.res != -ENOBUFS) {
		fprintf(stderr, "legacy_reader: a read past the last buffer got %d, not -ENOBUFS\n", cqe.res);
		exit(1);
	}
	printf("{\"done\": %u, \"ok\": true}\n", buffers);
	fflush(stdout);
	return 0;
}
