/* A process to restore rings into from outside (`plan exec --pid`,
 * ringplan_exec::execute_in): it holds no ring itself. Its main thread
 * waits in read() on stdin; for every line it reads it writes "alive\n"
 * to stdout (so a test sees it still runs after a restore), and it exits
 * when stdin closes.
 *
 * It first closes every fd it inherited above 2 (a test harness may leak
 * some), so the numbers a test restores onto are free.
 *
 * Prints one JSON line first: {"pid": PID}. */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void) {
    char c;
    /* close_range(3, ~0U, 0): Linux 5.9. */
    if (syscall(SYS_close_range, 3U, ~0U, 0U) != 0) return 2;
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
