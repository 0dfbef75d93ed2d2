/* The background decay thread (XMM_BACKGROUND, global/upkeep.h): who gets
 * it, and when. Each case runs in a child of its own (exec'd with its
 * XMM_* settings) and counts its threads in /proc/self/task:
 *   small     a program that allocates a few MiB keeps one thread
 *   large     one whose heap passes 64 MiB gets the thread, which blocks
 *             every signal (the program's handlers never run on it)
 *   off       XMM_BACKGROUND=0: a large heap, still one thread
 *   on        XMM_BACKGROUND=1: the thread from the start
 *   fork      a fork child of a large process has one thread, and starts
 *             its own once it allocates
 *   blocked   a thread that blocks signals does not start it (it could be
 *             a signal handler); once unblocked, it does
 *   handler, handler_resethand
 *             an allocation past the threshold inside a signal handler
 *             (one-shot too) starts no thread; the program's next
 *             allocation does
 *   blocked_unhandled, fork_blocked
 *             signals blocked with no handler (a PostgreSQL backend's
 *             SIGURG) do not keep it from starting, in a fork child too
 *   main_exits (XMM_BACKGROUND=1, auto with a large heap, and the threads
 *             of XMM_STATS_SIGNAL and XMM_PROFILE_SIGNAL)
 *             main calls pthread_exit: once its last thread returns, the
 *             process ends with status 0 and runs its atexit handlers,
 *             as without XMM; XMM's threads kept it alive for good
 * The waits are bounds, not timings: a case polls until the thread shows
 * up, for at most a few seconds. */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

#define MIB ((size_t)1 << 20)

/* Threads of this process, read without allocating (opendir would call
 * malloc, and an allocation may start the thread). */
static int task_count(void)
{
    int fd = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int count = 0;
    char buffer[4096];
    long length;
    while ((length = syscall(SYS_getdents64, fd, buffer, sizeof buffer)) > 0)
        for (long at = 0; at < length;) {
            struct dirent64 *entry = (struct dirent64 *)(buffer + at);
            if (entry->d_name[0] != '.')
                count++;
            at += entry->d_reclen;
        }
    close(fd);
    return count;
}

static void sleep_ms(long ms)
{
    struct timespec pause = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&pause, NULL);
}

/* `bytes` of 1 KiB blocks, kept (the heap grows past them), chained
 * through their first word. */
static void **grow_heap(size_t bytes)
{
    void **head = NULL;
    for (size_t done = 0; done < bytes; done += 1024) {
        void **block = malloc(1024);
        if (!block)
            break;
        memset(block, 1, 1024);
        *block = head;
        head = block;
    }
    return head;
}

/* Small allocations for up to `ms` milliseconds (each one may be the
 * allocation tick that starts the thread) until there are `wanted` threads. */
static int allocate_until_tasks(int wanted, long ms)
{
    int tasks = task_count();
    for (long waited = 0; tasks != wanted && waited < ms; waited += 20) {
        void **kept = grow_heap(512 << 10);
        while (kept) {
            void **next = *kept;
            free(kept);
            kept = next;
        }
        sleep_ms(20);
        tasks = task_count();
    }
    return tasks;
}

/* Every signal blocked in the thread other than the caller. */
static int other_thread_blocks_all(void)
{
    DIR *tasks = opendir("/proc/self/task");
    int result = -1;
    char self[32];
    snprintf(self, sizeof self, "%d", (int)getpid());
    for (struct dirent *entry; tasks && (entry = readdir(tasks));) {
        if (entry->d_name[0] == '.' || !strcmp(entry->d_name, self))
            continue;
        char path[300], line[256];
        snprintf(path, sizeof path, "/proc/self/task/%s/status", entry->d_name);
        FILE *status = fopen(path, "r");
        while (status && fgets(line, sizeof line, status))
            if (!strncmp(line, "SigBlk:", 7)) {
                unsigned long long mask = strtoull(line + 7, NULL, 16);
                /* 64 signals, but for SIGKILL and SIGSTOP (never blocked)
                 * and the two glibc reserves for itself (32, 33) */
                unsigned long long unblockable = 1ull << (SIGKILL - 1) | 1ull << (SIGSTOP - 1) |
                                                 1ull << 31 | 1ull << 32;
                result = (mask | unblockable) == ~0ull;
            }
        if (status)
            fclose(status);
    }
    if (tasks)
        closedir(tasks);
    return result;
}

static void block_one(int signal_number, sigset_t *previous)
{
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, signal_number);
    sigprocmask(SIG_BLOCK, &one, previous);
}

static volatile int tasks_in_handler = -1;

static void allocating_handler(int signal_number)
{
    (void)signal_number;
    grow_heap(96 * MIB);
    tasks_in_handler = task_count();
}

/* main_exits: the worker that outlives main. */
static void *last_worker(void *large)
{
    if (large)
        grow_heap(96 * MIB);
    allocate_until_tasks(3, 300);
    return NULL;
}

static void write_marker(void)
{
    const char *path = getenv("TEST_MARKER_FILE");
    int fd = path ? open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644) : -1;
    if (fd >= 0) {
        (void)!write(fd, "atexit\n", 7);
        close(fd);
    }
}

static int run_case(const char *mode)
{
    if (!strcmp(mode, "main_exits") || !strcmp(mode, "main_exits_large")) {
        atexit(write_marker);
        pthread_t worker;
        bool large = !strcmp(mode, "main_exits_large");
        pthread_create(&worker, NULL, last_worker, (void *)(uintptr_t)large);
        pthread_exit(NULL);
    }
    if (!strcmp(mode, "small")) {
        void **kept = grow_heap(4 * MIB);
        CHECK(kept != NULL, "4 MiB allocated");
        sleep_ms(300);
        CHECK(task_count() == 1, "a small heap: one thread (%d)", task_count());
    } else if (!strcmp(mode, "large")) {
        CHECK(task_count() == 1, "one thread before the heap grows (%d)", task_count());
        grow_heap(96 * MIB);
        int tasks = allocate_until_tasks(2, 5000);
        CHECK(tasks == 2, "a heap past 64 MiB: the background thread (%d threads)", tasks);
        CHECK(other_thread_blocks_all() == 1, "the background thread blocks every signal");
    } else if (!strcmp(mode, "off")) {
        grow_heap(96 * MIB);
        int tasks = allocate_until_tasks(2, 1000);
        CHECK(tasks == 1, "XMM_BACKGROUND=0: no thread for a large heap (%d)", tasks);
    } else if (!strcmp(mode, "on")) {
        CHECK(task_count() == 2, "XMM_BACKGROUND=1: the thread from the start (%d)",
              task_count());
    } else if (!strcmp(mode, "fork")) {
        grow_heap(96 * MIB);
        CHECK(allocate_until_tasks(2, 5000) == 2, "the parent has the thread");
        pid_t child = fork();
        if (child == 0) {
            int before = task_count();
            int after = allocate_until_tasks(2, 5000);
            _exit(before == 1 && after == 2 ? 0 : 10 + before * 3 + after);
        }
        int status = 0;
        waitpid(child, &status, 0);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "the fork child: one thread, then its own background thread (status %d)",
              WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    } else if (!strcmp(mode, "blocked")) {
        /* A signal with a handler, blocked: what a thread in that handler
         * looks like. */
        struct sigaction action;
        memset(&action, 0, sizeof action);
        action.sa_handler = allocating_handler;
        sigaction(SIGUSR2, &action, NULL);
        sigset_t previous;
        block_one(SIGUSR2, &previous);
        grow_heap(96 * MIB);
        int tasks = allocate_until_tasks(2, 1000);
        CHECK(tasks == 1, "a thread that blocks a handled signal starts no thread (%d)", tasks);
        sigprocmask(SIG_SETMASK, &previous, NULL);
        tasks = allocate_until_tasks(2, 5000);
        CHECK(tasks == 2, "unblocked, it starts the thread (%d)", tasks);
    } else if (!strcmp(mode, "blocked_unhandled")) {
        /* A signal blocked for good, with no handler: every PostgreSQL
         * backend blocks SIGURG (it reads it from a signalfd); threads of
         * sigwait servers block the signals their signal thread waits for.
         * No handler can be running: the thread starts. */
        sigset_t previous;
        block_one(SIGURG, &previous);
        block_one(SIGTERM, &previous);
        grow_heap(96 * MIB);
        int tasks = allocate_until_tasks(2, 5000);
        CHECK(tasks == 2, "blocking signals that have no handler, it starts the thread (%d)",
              tasks);
    } else if (!strcmp(mode, "fork_blocked")) {
        /* The same in a fork child, as a PostgreSQL backend: its memory
         * after a big query came back only at its next allocations. */
        grow_heap(96 * MIB);
        CHECK(allocate_until_tasks(2, 5000) == 2, "the parent has the thread");
        pid_t child = fork();
        if (child == 0) {
            sigset_t previous;
            block_one(SIGURG, &previous);
            int after = allocate_until_tasks(2, 5000);
            _exit(after == 2 ? 0 : 10 + after);
        }
        int status = 0;
        waitpid(child, &status, 0);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "a fork child blocking SIGURG starts its own thread (status %d)",
              WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    } else if (!strcmp(mode, "handler") || !strcmp(mode, "handler_resethand")) {
        /* SA_RESETHAND, as crash reporters install theirs: the handler
         * is SIG_DFL again while it runs (found in review). */
        struct sigaction action;
        memset(&action, 0, sizeof action);
        action.sa_handler = allocating_handler;
        action.sa_flags = strcmp(mode, "handler") ? SA_RESETHAND : 0;
        sigemptyset(&action.sa_mask);
        sigaction(SIGUSR1, &action, NULL);
        raise(SIGUSR1);
        CHECK(tasks_in_handler == 1,
              "96 MiB allocated in a signal handler: no thread started there (%d)",
              tasks_in_handler);
        int tasks = allocate_until_tasks(2, 5000);
        CHECK(tasks == 2, "the next allocations outside the handler start it (%d)", tasks);
    } else {
        CHECK(0, "unknown case %s", mode);
    }
    return check_summary(mode);
}

/* Runs a main_exits case: it must end by itself within 20 s (a process
 * left with only XMM's threads ignores every signal but SIGKILL), with
 * status 0, having run its atexit handler. 0 when it did. */
static int run_main_exits(const char *mode, char *const settings[])
{
    char marker[] = "/tmp/xmm-main-exits-XXXXXX";
    int fd = mkstemp(marker);
    if (fd < 0)
        return 1;
    close(fd);
    unlink(marker);
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        setenv("TEST_MARKER_FILE", marker, 1);
        for (int i = 0; settings[i]; i++)
            putenv(settings[i]);
        execl("/proc/self/exe", "/proc/self/exe", mode, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    long waited_ms = 0;
    while (waitpid(child, &status, WNOHANG) == 0) {
        if (waited_ms >= 20000) {
            kill(child, SIGKILL);
            waitpid(child, &status, 0);
            break;
        }
        sleep_ms(20);
        waited_ms += 20;
    }
    bool marked = access(marker, F_OK) == 0;
    unlink(marker);
    CHECK(waited_ms < 20000 && WIFEXITED(status) && WEXITSTATUS(status) == 0 && marked,
          "%s with %s: main's pthread_exit, then the process ends after its last thread "
          "(%ld ms, %s %d, atexit handler %s)",
          mode, settings[0], waited_ms, WIFEXITED(status) ? "exit" : "signal",
          WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), marked ? "ran" : "did not run");
    return !(waited_ms < 20000 && WIFEXITED(status) && WEXITSTATUS(status) == 0 && marked);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        return run_case(argv[1]);
    /* A short upkeep period: an attempt that found the caller unfit is
     * retried after one period. */
    char *fast[] = {"XMM_DECAY_MS=200", NULL};
    char *off[] = {"XMM_DECAY_MS=200", "XMM_BACKGROUND=0", NULL};
    char *on[] = {"XMM_BACKGROUND=1", NULL};
    char *automatic[] = {"XMM_DECAY_MS=200", "XMM_BACKGROUND=auto", NULL};
    struct {
        const char *mode;
        char **environment;
    } cases[] = {
        {"small", fast}, {"large", fast},   {"off", off},         {"on", on},
        {"fork", fast},  {"blocked", fast}, {"handler", automatic},
        {"blocked_unhandled", fast},        {"fork_blocked", fast},
        {"handler_resethand", automatic},
    };
    int failures = 0, count = (int)(sizeof cases / sizeof cases[0]);
    for (int i = 0; i < count; i++) {
        int status = check_run_self(cases[i].mode, cases[i].environment);
        if (status != 0)
            printf("FAIL case %s: exit %d\n", cases[i].mode, status);
        failures += status != 0;
    }
    char *stats[] = {"XMM_STATS_SIGNAL=SIGUSR2", "XMM_BACKGROUND=0", NULL};
    char *profile[] = {"XMM_PROFILE_SIGNAL=SIGUSR1", "XMM_PROFILE_FILE=/dev/null",
                       "XMM_BACKGROUND=0", NULL};
    failures += run_main_exits("main_exits", on);
    failures += run_main_exits("main_exits_large", automatic);
    failures += run_main_exits("main_exits", stats);
    failures += run_main_exits("main_exits", profile);
    count += 4;
    printf("%d of %d background cases failed\n", failures, count);
    return failures ? 1 : 0;
}
