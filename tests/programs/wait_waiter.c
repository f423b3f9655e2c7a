// wait_waiter: a program that waits for completions through a registered
// wait region (IORING_REGISTER_MEM_REGION with
// IORING_MEM_REGION_REG_WAIT_ARG, Linux 6.13+): the wait arguments live in
// one page of its own memory, which the kernel reads at each wait.
//
// It sets up a ring (liburing, 8 entries) disabled, registers one page as
// its wait region, fills entries 1 and 2 with timeouts of 20 and 30 ms
// (IORING_REG_WAIT_TS), enables the ring, and waits once through entry 1
// with nothing pending (the kernel must answer -ETIME) and once for a NOP
// through entry 2. It prints {"pid": P, "ready": true} and waits for a
// line on stdin (a test takes its ring out and puts it back meanwhile).
// Then it checks its page still holds the entries it wrote, writes entry
// 3 (40 ms), and waits: through entry 2 and entry 3 with nothing pending
// (-ETIME each: the kernel read the timeouts from the page), for a NOP
// through entry 3 (the NOP's CQE), and through an offset past the region
// (-EFAULT: the region has the length it had). It prints
// {"done": true, "ok": true} and exits 0. Anything wrong: named on stderr,
// exit 1. A kernel without wait regions: {"unsupported": "..."}, exit 3.
//
// With the argument "kernel", the region is the kernel's memory
// (IORING_MEM_REGION_TYPE_USER unset), which the program maps from its ring
// fd at the offset the kernel gave back, and fills there.
//
// Debian 12's headers predate wait regions: their structs and flags are
// spelled out here as the kernel's uapi has them.
//
// Usage: wait_waiter [kernel]
// Build: cc -O2 -Wall -o wait_waiter wait_waiter.c -luring -lpthread
#define _GNU_SOURCE
#include <errno.h>
#include <liburing.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PAGE 4096
#define REGISTER_MEM_REGION 34
#define MEM_REGION_TYPE_USER 1
#define MEM_REGION_REG_WAIT_ARG 1
#define ENTER_EXT_ARG_REG (1U << 6)
#define REG_WAIT_TS (1U << 0)

struct region_desc {
	uint64_t user_addr;
	uint64_t size;
	uint32_t flags;
	uint32_t id;
	uint64_t mmap_offset;
	uint64_t resv[4];
};

struct mem_region_reg {
	uint64_t region_uptr;
	uint64_t flags;
	uint64_t resv[2];
};

struct reg_wait {
	struct {
		int64_t tv_sec;
		long long tv_nsec;
	} ts;
	uint32_t min_wait_usec;
	uint32_t flags;
	uint64_t sigmask;
	uint32_t sigmask_sz;
	uint32_t pad[3];
	uint64_t pad2[2];
};

static struct io_uring ring;
static struct reg_wait *waits;

static void fail(const char *what, int err)
{
	fprintf(stderr, "wait_waiter: %s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(1);
}

static void set_wait(unsigned index, long ms)
{
	memset(&waits[index], 0, sizeof(waits[index]));
	waits[index].ts.tv_nsec = ms * 1000000LL;
	waits[index].flags = REG_WAIT_TS;
}

// io_uring_enter for one completion through wait entry `index` (its byte
// offset in the region); the kernel's result or -errno.
static int wait_through(unsigned index, unsigned to_submit)
{
	long ret = syscall(__NR_io_uring_enter, ring.ring_fd, to_submit, 1,
			   IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG | ENTER_EXT_ARG_REG,
			   (void *)(uintptr_t)(index * sizeof(struct reg_wait)), sizeof(struct reg_wait));
	return ret < 0 ? -errno : (int)ret;
}

static void expect_timeout(unsigned index)
{
	int ret = wait_through(index, 0);
	if (ret != -ETIME) {
		fprintf(stderr, "wait_waiter: a wait through entry %u with nothing pending got %d, not -ETIME\n",
			index, ret);
		exit(1);
	}
}

static void expect_nop(unsigned index)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
	if (!sqe)
		fail("io_uring_get_sqe", EBUSY);
	io_uring_prep_nop(sqe);
	sqe->user_data = 0x5eed0000 + index;
	io_uring_smp_store_release(ring.sq.ktail, ring.sq.sqe_tail);
	ring.sq.sqe_head = ring.sq.sqe_tail;
	int ret = wait_through(index, 1);
	if (ret != 1)
		fail("a NOP submitted and waited for through the region", ret < 0 ? ret : EIO);
	struct io_uring_cqe *cqe;
	ret = io_uring_peek_cqe(&ring, &cqe);
	if (ret < 0)
		fail("io_uring_peek_cqe after the wait", ret);
	if (cqe->user_data != 0x5eed0000ULL + index || cqe->res != 0) {
		fprintf(stderr, "wait_waiter: the NOP's CQE is %llx/%d\n",
			(unsigned long long)cqe->user_data, cqe->res);
		exit(1);
	}
	io_uring_cqe_seen(&ring, cqe);
}

int main(int argc, char **argv)
{
	int kernel_memory = argc > 1 && strcmp(argv[1], "kernel") == 0;
	struct io_uring_params params;
	memset(&params, 0, sizeof(params));
	params.flags = IORING_SETUP_R_DISABLED;
	int ret = io_uring_queue_init_params(8, &ring, &params);
	if (ret < 0)
		fail("io_uring_queue_init_params", ret);
	struct region_desc desc = { .size = PAGE };
	if (!kernel_memory) {
		waits = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (waits == MAP_FAILED)
			fail("mmap", errno);
		desc.user_addr = (uint64_t)(uintptr_t)waits;
		desc.flags = MEM_REGION_TYPE_USER;
	}
	struct mem_region_reg reg = {
		.region_uptr = (uint64_t)(uintptr_t)&desc,
		.flags = MEM_REGION_REG_WAIT_ARG,
	};
	if (syscall(__NR_io_uring_register, ring.ring_fd, REGISTER_MEM_REGION, &reg, 1) < 0) {
		if (errno == EINVAL) {
			printf("{\"unsupported\": \"IORING_REGISTER_MEM_REGION: %s\"}\n", strerror(errno));
			return 3;
		}
		fail("IORING_REGISTER_MEM_REGION", errno);
	}
	if (kernel_memory) {
		waits = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring.ring_fd,
			     desc.mmap_offset);
		if (waits == MAP_FAILED)
			fail("mmap of the region from the ring fd", errno);
	}
	set_wait(1, 20);
	set_wait(2, 30);
	// Debian 12's liburing declares io_uring_enable_rings but does not
	// export it: the call itself.
	if (syscall(__NR_io_uring_register, ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0) < 0)
		fail("IORING_REGISTER_ENABLE_RINGS", errno);
	expect_timeout(1);
	expect_nop(2);

	printf("{\"pid\": %d, \"ready\": true}\n", (int)getpid());
	fflush(stdout);
	char line[64];
	if (!fgets(line, sizeof(line), stdin))
		fail("reading stdin", EPIPE);

	// The entries written before the take-out: a wait reading zeros
	// instead would have no timeout and never return.
	struct reg_wait expected;
	for (unsigned index = 1; index <= 2; index++) {
		memset(&expected, 0, sizeof(expected));
		expected.ts.tv_nsec = (index == 1 ? 20 : 30) * 1000000LL;
		expected.flags = REG_WAIT_TS;
		if (memcmp(&waits[index], &expected, sizeof(expected)) != 0) {
			fprintf(stderr, "wait_waiter: wait entry %u changed across the take-out\n", index);
			exit(1);
		}
	}
	set_wait(3, 40);
	expect_timeout(2);
	expect_timeout(3);
	expect_nop(3);
	ret = wait_through(PAGE / sizeof(struct reg_wait), 0);
	if (ret != -EFAULT) {
		fprintf(stderr, "wait_waiter: a wait past the region got %d, not -EFAULT\n", ret);
		exit(1);
	}
	printf("{\"done\": true, \"ok\": true}\n");
	fflush(stdout);
	return 0;
}
