/*
 * The floor for advancing a ring's positions: a minimal liburing loop that
 * submits COUNT NOPs on a fresh ring of ENTRIES, in batches of the SQ size,
 * either with IOSQE_CQE_SKIP_SUCCESS ("skip": the SQ head alone moves) or
 * without ("plain": both positions move; the CQEs are consumed after each
 * batch). Prints the loop's time in nanoseconds (setup excluded).
 * Used by crates/ringplan-exec/benches/continuity.rs.
 *
 *   nop_floor ENTRIES COUNT skip|plain
 */
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int main(int argc, char **argv)
{
	struct io_uring ring;
	struct timespec start, end;
	unsigned long long left, count;
	unsigned int entries;
	int skip, ret;

	if (argc != 4)
		return 2;
	entries = strtoul(argv[1], NULL, 10);
	count = strtoull(argv[2], NULL, 10);
	skip = strcmp(argv[3], "skip") == 0;
	ret = io_uring_queue_init(entries, &ring, 0);
	if (ret < 0) {
		fprintf(stderr, "io_uring_queue_init: %s\n", strerror(-ret));
		return 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (left = count; left > 0;) {
		unsigned int batch = left < entries ? left : entries;
		unsigned int i;

		for (i = 0; i < batch; i++) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);

			io_uring_prep_nop(sqe);
			if (skip)
				sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
		}
		ret = io_uring_submit(&ring);
		if (ret != (int)batch) {
			fprintf(stderr, "io_uring_submit: %d of %u\n", ret, batch);
			return 1;
		}
		if (!skip)
			io_uring_cq_advance(&ring, batch);
		left -= batch;
	}
	clock_gettime(CLOCK_MONOTONIC, &end);
	printf("%lld\n", (long long)(end.tv_sec - start.tv_sec) * 1000000000LL +
				 (end.tv_nsec - start.tv_nsec));
	io_uring_queue_exit(&ring);
	return 0;
}
