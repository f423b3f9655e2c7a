/* A process to restore rings into from outside (`plan exec --pid`,
 * ringplan_exec::execute_in): it holds no ring itself. Its main thread
 * waits in read() on stdin; for every line it reads it writes "alive\n"
 * to stdout (so a test sees it still runs after a restore), and it exits
 * when stdin closes.
 *
 * It first closes every fd it inherited above 2 (a test harness may leak
 * some), so the numbers a test restores onto are free. Then it opens what
 * its arguments ask for, as a restorer would have brought it back (for the
 * tests of adopting what a process already holds):
 *   eventfd FD COUNT FLAGS   an eventfd with COUNT at FD; FLAGS is "-" or
 *                            any of "s" (EFD_SEMAPHORE), "n" (EFD_NONBLOCK)
 *   open FD PATH OFFSET      PATH opened read-write at FD, at OFFSET
 *
 * Prints one JSON line first: {"pid": PID}. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Moves `fd` to `at` (keeping it not close-on-exec, as a restored
 * program's fds are unless it set the flag). */
static int place(int fd, int at) {
    if (fd < 0) return -1;
    if (fd == at) return 0;
    if (dup2(fd, at) != at) return -1;
    close(fd);
    return 0;
}

int main(int argc, char **argv) {
    char c;
    /* close_range(3, ~0U, 0): Linux 5.9. */
    if (syscall(SYS_close_range, 3U, ~0U, 0U) != 0) return 2;
    for (int i = 1; i < argc;) {
        if (strcmp(argv[i], "eventfd") == 0 && i + 3 < argc) {
            int flags = 0;
            if (strchr(argv[i + 3], 's')) flags |= EFD_SEMAPHORE;
            if (strchr(argv[i + 3], 'n')) flags |= EFD_NONBLOCK;
            int fd = eventfd((unsigned)strtoul(argv[i + 2], NULL, 10), flags);
            if (place(fd, atoi(argv[i + 1])) != 0) return 3;
            i += 4;
        } else if (strcmp(argv[i], "open") == 0 && i + 3 < argc) {
            int fd = open(argv[i + 2], O_RDWR);
            if (fd < 0 || lseek(fd, atol(argv[i + 3]), SEEK_SET) < 0) return 4;
            if (place(fd, atoi(argv[i + 1])) != 0) return 4;
            i += 4;
        } else {
            return 5;
        }
    }
    printf("{\"pid\": %d}\n", (int)getpid());
    fflush(stdout);
    for (;;) {
        ssize_t got = read(0, &c, 1);
        if (got <= 0) return 0;
        if (c == '\n') {
            if (write(1, "alive\n", 6) != 6) return 1;
        }
    }
}
