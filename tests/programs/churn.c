// A target that never stops changing its io_uring state, for the dump's
// consistency tests (tests/vanishing.rs).
//
// One ring with a sparse table of SLOTS registered files. Round after
// round: open SLOTS files and register each into its slot, then empty each
// slot and close its fd. Round r opens the file DIR/(r % NAMES) for every
// slot, and a file is opened before it is registered and unregistered
// before it is closed, so every state this process is ever in satisfies:
// all the files it holds by fd or by slot have one name, and every
// registered file is held by an fd. An image breaking either mixes two
// moments.
//
// Usage: churn DIR PAUSE_US   (sleep after every change; 0 = none)
// Creates DIR/0 .. DIR/NAMES-1, then prints "ready PID".
#include <fcntl.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SLOTS 8
#define NAMES 16

static void pause_for(unsigned us)
{
	if (us)
		usleep(us);
}

int main(int argc, char **argv)
{
	struct io_uring ring;
	int fds[SLOTS];
	int empty = -1;
	char path[4096];
	if (argc != 3) {
		fprintf(stderr, "usage: churn DIR PAUSE_US\n");
		return 2;
	}
	unsigned pause_us = (unsigned)strtoul(argv[2], NULL, 10);
	for (int name = 0; name < NAMES; name++) {
		snprintf(path, sizeof path, "%s/%d", argv[1], name);
		int fd = open(path, O_CREAT | O_WRONLY, 0600);
		if (fd < 0) {
			perror(path);
			return 1;
		}
		close(fd);
	}
	int ret = io_uring_queue_init(4, &ring, 0);
	if (ret < 0) {
		fprintf(stderr, "io_uring_queue_init: %s\n", strerror(-ret));
		return 1;
	}
	ret = io_uring_register_files_sparse(&ring, SLOTS);
	if (ret < 0) {
		fprintf(stderr, "io_uring_register_files_sparse: %s\n", strerror(-ret));
		return 1;
	}
	printf("ready %d\n", getpid());
	fflush(stdout);
	for (unsigned round = 0;; round++) {
		snprintf(path, sizeof path, "%s/%u", argv[1], round % NAMES);
		for (int slot = 0; slot < SLOTS; slot++) {
			fds[slot] = open(path, O_RDONLY);
			if (fds[slot] < 0)
				return 1;
			pause_for(pause_us);
			if (io_uring_register_files_update(&ring, slot, &fds[slot], 1) != 1)
				return 1;
			pause_for(pause_us);
		}
		for (int slot = 0; slot < SLOTS; slot++) {
			if (io_uring_register_files_update(&ring, slot, &empty, 1) != 1)
				return 1;
			pause_for(pause_us);
			close(fds[slot]);
			pause_for(pause_us);
		}
	}
}
