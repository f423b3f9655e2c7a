/* A process to restore rings into from outside (`plan exec --pid`,
 * ringplan_exec::execute_in): it holds no ring itself. Its main thread
 * waits in read() on stdin; for every line it reads it writes "alive\n"
 * to stdout (so a test sees it still runs after a restore), and it exits
 * when stdin closes.
 *
 * Prints one JSON line first: {"pid": PID}. */
#include <stdio.h>
#include <unistd.h>

int main(void) {
    char c;
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
