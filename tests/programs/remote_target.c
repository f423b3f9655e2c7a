/* A target for running syscalls in another process (ringplan-exec's
 * remote module, tests/remote.rs): a main thread blocked in read() on
 * stdin (a pipe), a thread in nanosleep(), a busy thread spinning inside an
 * rseq critical section (a plain loop when glibc registered no rseq), and
 * a SIGUSR1 handler (SA_RESTART; only the main thread takes SIGUSR1).
 *
 * Usage: remote_target [plain|filter|strict] [sleep_ms]
 *   filter: an allow-all seccomp filter on every thread (mode 2);
 *   strict: the main thread enters seccomp strict mode before its read.
 *
 * Prints one JSON line with its thread ids, then one per event: the sleep's
 * end, the read's result, and at the end the busy thread's progress and
 * whether the handler ran. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/rseq.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t handler_ran;
static volatile pid_t sleeper_tid, busy_tid;
static volatile unsigned long spins, aborts;
static volatile int busy_in_rseq;
static long sleep_ms = 2000;

static void on_usr1(int sig) {
    (void)sig;
    handler_ran = 1;
}

static void block_usr1(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
}

static long elapsed_ms(const struct timespec *start) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - start->tv_sec) * 1000 + (now.tv_nsec - start->tv_nsec) / 1000000;
}

static void *sleeper(void *arg) {
    (void)arg;
    block_usr1();
    struct timespec start, request = {sleep_ms / 1000, (sleep_ms % 1000) * 1000000L};
    clock_gettime(CLOCK_MONOTONIC, &start);
    sleeper_tid = gettid();
    int result = nanosleep(&request, NULL);
    int error = result ? errno : 0;
    printf("{\"event\":\"slept\",\"result\":%d,\"errno\":%d,\"ms\":%ld}\n", result, error,
           elapsed_ms(&start));
    fflush(stdout);
    return NULL;
}

/* One pass of 2^20 increments inside an rseq critical section; an abort
 * (preemption, migration, signal, or a tracer moving the thread) counts
 * in `aborts` and the pass ends. */
static void rseq_pass(struct rseq *area) {
    __asm__ __volatile__(
        ".pushsection __rseq_cs, \"aw\"\n\t"
        ".balign 32\n"
        "3:\n\t"
        ".long 0, 0\n\t"
        ".quad 1f, (2f - 1f), 4f\n\t"
        ".popsection\n\t"
        "leaq 3b(%%rip), %%rax\n\t"
        "movq %%rax, %[cs]\n\t"
        "movq $0x100000, %%rcx\n"
        "1:\n\t"
        "addq $1, %[spins]\n\t"
        "subq $1, %%rcx\n\t"
        "jnz 1b\n"
        "2:\n\t"
        "jmp 5f\n\t"
        ".pushsection __rseq_failure, \"ax\"\n\t"
        ".byte 0x0f, 0xb9, 0x3d\n\t"
        ".long 0x53053053\n"
        "4:\n\t"
        "addq $1, %[aborts]\n\t"
        "jmp 5f\n\t"
        ".popsection\n"
        "5:\n\t"
        : [cs] "=m"(area->rseq_cs), [spins] "+m"(spins), [aborts] "+m"(aborts)
        :
        : "rax", "rcx", "memory", "cc");
}

static void *busy(void *arg) {
    (void)arg;
    block_usr1();
    busy_tid = gettid();
    if (__rseq_size > 0) {
        busy_in_rseq = 1;
        struct rseq *area = (struct rseq *)((char *)__builtin_thread_pointer() + __rseq_offset);
        for (;;) rseq_pass(area);
    }
    for (;;) spins++;
    return NULL;
}

static void allow_all_seccomp_filter(void) {
    struct sock_filter allow[] = {BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
    struct sock_fprog program = {.len = 1, .filter = allow};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program)) {
        perror("seccomp filter");
        exit(1);
    }
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "plain";
    if (argc > 2) sleep_ms = atol(argv[2]);
    if (strcmp(mode, "filter") == 0) allow_all_seccomp_filter();

    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_usr1;
    action.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &action, NULL);

    pthread_t sleeping, spinning;
    pthread_create(&sleeping, NULL, sleeper, NULL);
    pthread_create(&spinning, NULL, busy, NULL);
    while (!sleeper_tid || !busy_tid) usleep(1000);
    printf("{\"pid\":%d,\"main\":%d,\"sleeper\":%d,\"busy\":%d,\"rseq\":%s}\n", getpid(), gettid(),
           sleeper_tid, busy_tid, busy_in_rseq ? "true" : "false");
    fflush(stdout);

    if (strcmp(mode, "strict") == 0) prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT);
    char buffer[64];
    ssize_t got = read(0, buffer, sizeof buffer - 1);
    int error = got < 0 ? errno : 0;
    buffer[got > 0 ? got : 0] = 0;
    buffer[strcspn(buffer, "\n\"\\")] = 0;
    printf("{\"event\":\"read\",\"result\":%zd,\"errno\":%d,\"data\":\"%s\"}\n", got, error, buffer);
    fflush(stdout);

    pthread_join(sleeping, NULL);
    unsigned long before = spins;
    usleep(50000);
    printf("{\"event\":\"end\",\"spins_before\":%lu,\"spins_after\":%lu,\"aborts\":%lu,\"handler_ran\":%d}\n",
           before, spins, aborts, (int)handler_ran);
    fflush(stdout);
    return 0;
}
