/*
 * fork_deadlock.c - fork() never deadlocks, whatever the other threads (or
 * the interrupted context of the forking thread) are doing in the
 * allocator or in stdio, and the child can allocate.
 *
 * Sections (each run in its own process, with a watchdog: a hang is a
 * failure, reported as such):
 *   growth     two threads malloc(300 KiB) without freeing, so the page
 *              heap keeps mapping chunks and taking metadata, while the main
 *              thread forks;
 *   stdio      one thread runs fflush(NULL), two others getline() on a
 *              FILE whose lines grow to megabytes (realloc under the FILE
 *              lock, 200 us apart), while the main thread forks (glibc bug 19431's scenario: a
 *              fork prepare handler that holds allocator locks waits for the
 *              stdio list lock, whose holder waits for the FILE, whose
 *              holder waits for the allocator);
 *   signal     a single-threaded process forks from a SIGUSR1 handler that
 *              another process sends every millisecond, while its main loop
 *              mallocs and frees 100-300 KB blocks (glibc's tst-mallocfork2);
 *              each child returns from the handler and allocates; at most
 *              four children live at once;
 *   direct     threads allocate and free blocks of 40-100 MiB (mapped for
 *              themselves) and 1-2 MiB while the main thread forks; each
 *              child maps and frees such blocks too;
 *   trim       one thread calls malloc_trim(0) (every CPU's cache drained
 *              under the drain lock, chunks unmapped) and mallinfo2, two
 *              others start and join short-lived threads (the thread cache
 *              registry), all allocating, while the main thread forks.
 * Every child allocates small, large and very large blocks, checks them and
 * exits 0 within its own alarm.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/prctl.h>
#include <sys/time.h>

#include "xmm.h"
#include "testlib.h"

#define CHILD_ALARM_SECONDS 20
#define SECTION_SECONDS 4.0

static atomic_int stop_workers;

/* What every child does: allocate blocks of every kind, write and check
 * them, free them; exit status 0 if all went well. */
static int child_allocates(void)
{
    static const size_t sizes[] = {16, 100, 3000, 40000, 300 * 1024, 3 * 1024 * 1024,
                                   48 * 1024 * 1024};
    int errors = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char *block = malloc(sizes[i]);
        if (!block) {
            errors++;
            continue;
        }
        memset(block, 0x5a, sizes[i]);
        if (block[0] != 0x5a || block[sizes[i] - 1] != 0x5a)
            errors++;
        free(block);
    }
    return errors ? 1 : 0;
}

/* Forks for `seconds` (at least `minimum` times); each child runs
 * child_allocates() under an alarm. Returns how many children failed and
 * describes the first failure. */
static int fork_repeatedly(double seconds, int minimum, int *forks, char *failure,
                           size_t failure_size)
{
    int failed = 0;
    double start = now_seconds();
    *forks = 0;
    while (*forks < minimum || now_seconds() - start < seconds) {
        pid_t pid = fork();
        if (pid == 0) {
            alarm(CHILD_ALARM_SECONDS);
            _exit(child_allocates());
        }
        if (pid < 0) {
            if (!failed++)
                snprintf(failure, failure_size, "fork: %s", strerror(errno));
            continue;
        }
        int status = 0;
        waitpid(pid, &status, 0);
        (*forks)++;
        if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0) && !failed++)
            snprintf(failure, failure_size, "child %d: %s%s", *forks, describe_status(status),
                     WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM ? " (hung)" : "");
    }
    return failed;
}

/* `minimum_forks`: forks the section makes however long they take; each
 * waits for the locks the workers hold. */
static void run_workers(void *(*worker)(void *), int count, const char *what, int minimum_forks)
{
    pthread_t threads[8];
    int forks = 0;
    char failure[160] = "none";
    alarm(120); /* a deadlock in the parent's fork fails the section */
    atomic_store(&stop_workers, 0);
    for (int i = 0; i < count; i++)
        pthread_create(&threads[i], NULL, worker, (void *)(uintptr_t)i);
    int failed = fork_repeatedly(SECTION_SECONDS, minimum_forks, &forks, failure, sizeof failure);
    atomic_store(&stop_workers, 1);
    for (int i = 0; i < count; i++)
        pthread_join(threads[i], NULL);
    alarm(0);
    CHECK(failed == 0, "%s: %d forks, every child allocates and exits 0 (%d failed; first: %s)",
          what, forks, failed, failure);
}

/* ---- growth: the heap keeps growing while forking -------------------------- */

static void *grow_heap(void *unused)
{
    /* Up to 19 GiB of address space (one byte touched per block), then all
     * freed and again: the page heap keeps cutting new descriptors and
     * mapping new chunks, under its lock, from the metadata allocator. */
    enum { KEEP = 65536 };
    static _Thread_local void *kept[KEEP];
    while (!atomic_load_explicit(&stop_workers, memory_order_relaxed)) {
        int count = 0;
        while (count < KEEP && !atomic_load_explicit(&stop_workers, memory_order_relaxed)) {
            kept[count] = malloc(300 * 1024);
            if (!kept[count])
                break;
            ((char *)kept[count])[0] = 1;
            count++;
        }
        while (count)
            free(kept[--count]);
    }
    return NULL;
}

static void test_growth(void)
{
    run_workers(grow_heap, 2, "two threads malloc(300 KiB) without freeing", 20);
}

/* ---- stdio: fflush(NULL) and getline() on a growing line -------------------- */

static FILE *lines_file;

static void *flush_all(void *unused)
{
    while (!atomic_load_explicit(&stop_workers, memory_order_relaxed))
        fflush(NULL);
    return NULL;
}

static void *read_lines(void *unused)
{
    while (!atomic_load_explicit(&stop_workers, memory_order_relaxed)) {
        char *line = NULL;
        size_t capacity = 0;
        flockfile(lines_file);
        rewind(lines_file);
        while (getline(&line, &capacity, lines_file) > 0) {
            /* realloc of the line buffer under the FILE lock, through the
             * page heap once the line is long */
        }
        funlockfile(lines_file);
        free(line);
        /* glibc's locks are not fair: a reader that takes the FILE again
         * at once keeps it from fflush(NULL), which waits for it holding
         * the stdio list lock that fork waits for. Without this pause, 8
         * forks took 28 s (the longest 11.5 s) under glibc's own malloc,
         * 10 s under XMM, and once ran into the section's alarm on a
         * loaded machine; with it, 20 forks of children that only free a
         * malloc(100) took under a second (the longest 0.06 s: forks
         * still wait for a FILE held across getline's reallocs). */
        usleep(200);
    }
    return NULL;
}

/* A file of lines from 1 KiB to 4 MiB, doubling: getline grows its buffer
 * through every size range. */
static FILE *make_lines_file(void)
{
    FILE *file = tmpfile();
    if (!file)
        return NULL;
    for (size_t length = 1024; length <= 4 * MIB; length *= 2) {
        for (size_t i = 0; i < length; i++)
            fputc('a' + (int)(i % 26), file);
        fputc('\n', file);
    }
    fflush(file);
    return file;
}

static void test_stdio(void)
{
    lines_file = make_lines_file();
    if (!lines_file) {
        CHECK(0, "tmpfile() for the stdio section: %s", strerror(errno));
        return;
    }
    pthread_t flusher;
    pthread_create(&flusher, NULL, flush_all, NULL);
    run_workers(read_lines, 2, "fflush(NULL) and getline() on growing lines", 20);
    atomic_store(&stop_workers, 1);
    pthread_join(flusher, NULL);
    fclose(lines_file);
}

/* ---- signal: fork from a signal handler in a single-threaded process --------- */

/* At most this many children live at once: each maps and fills 48 MiB,
 * a few hundred ms of CPU. Unbounded, the handler forked one on almost
 * every signal and dozens shared the CPU with the parent (and with another
 * test on a 2-core CI machine), so that the first ones ran into their
 * alarms without being stuck anywhere (seen running, with 0.4 s of CPU
 * after 15 s). */
#define SIGNAL_LIVE_CHILDREN 4
#define SIGNAL_MAX_FORKS 4096
#define SIGNAL_MIN_FORKS 40
#define SIGNAL_MAX_SECONDS 40.0

/* Written by the handler only (it does not nest: SIGUSR1 is blocked while
 * it runs), read by the main loop once SIGUSR1 is blocked for good. */
static volatile sig_atomic_t is_child, forks_in_handler, fork_failures;
static pid_t handler_children[SIGNAL_MAX_FORKS];
static int handler_status[SIGNAL_MAX_FORKS];
static bool handler_reaped[SIGNAL_MAX_FORKS];
static int live_fork[SIGNAL_LIVE_CHILDREN]; /* index into handler_children; -1: a free slot */

/* Collects the live children that have ended (all of them, waiting, with
 * `options` 0); frees their slots. Async-signal-safe. */
static void reap_live_children(int options)
{
    for (int slot = 0; slot < SIGNAL_LIVE_CHILDREN; slot++) {
        int index = live_fork[slot];
        if (index < 0)
            continue;
        int status = 0;
        pid_t reaped;
        while ((reaped = waitpid(handler_children[index], &status, options)) < 0 &&
               errno == EINTR) {
        }
        if (reaped == 0)
            continue;
        handler_status[index] = status;
        handler_reaped[index] = reaped == handler_children[index];
        live_fork[slot] = -1;
    }
}

static int free_live_slot(void)
{
    for (int slot = 0; slot < SIGNAL_LIVE_CHILDREN; slot++)
        if (live_fork[slot] < 0)
            return slot;
    return -1;
}

static void fork_in_handler(int signal_number)
{
    if (is_child || forks_in_handler >= SIGNAL_MAX_FORKS)
        return;
    int saved_errno = errno;
    reap_live_children(WNOHANG);
    int slot = free_live_slot();
    if (slot >= 0) {
        pid_t pid = fork();
        if (pid == 0) {
            is_child = 1; /* the main loop allocates, then exits */
            alarm(CHILD_ALARM_SECONDS);
        } else if (pid > 0) {
            live_fork[slot] = forks_in_handler;
            handler_children[forks_in_handler++] = pid;
        } else {
            fork_failures++;
        }
    }
    errno = saved_errno;
}

/* Sends SIGUSR1 to `target` every millisecond, from another process (the
 * target stays single-threaded), until the target is gone. */
static pid_t start_signal_sender(pid_t target)
{
    pid_t sender = fork();
    if (sender == 0) {
        /* Dies with the section's process even if that one is killed by its
         * watchdog (it would hold the section's result pipe open). */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != target)
            _exit(0);
        for (;;) {
            usleep(1000);
            if (kill(target, SIGUSR1) != 0)
                _exit(0);
        }
    }
    return sender;
}

static void test_signal(void)
{
    for (int slot = 0; slot < SIGNAL_LIVE_CHILDREN; slot++)
        live_fork[slot] = -1;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = fork_in_handler;
    sigemptyset(&action.sa_mask);
    sigaction(SIGUSR1, &action, NULL);
    pid_t sender = start_signal_sender(getpid());
    /* The parent's own watchdog: a deadlock inside the handler. */
    alarm((unsigned)SIGNAL_MAX_SECONDS + 20);
    uint64_t state = 99;
    double start = now_seconds();
    for (;;) {
        double elapsed = now_seconds() - start;
        if (elapsed >= SIGNAL_MAX_SECONDS ||
            (elapsed >= SECTION_SECONDS && forks_in_handler >= SIGNAL_MIN_FORKS))
            break;
        size_t size = 100000 + (size_t)(random_next(&state) % 200000);
        char *block = malloc(size);
        if (block) {
            block[0] = block[size - 1] = 1;
            free(block);
        }
        if (is_child)
            _exit(child_allocates());
    }
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &usr1, NULL);
    /* A child forked after the loop's last check ends here too. */
    if (is_child)
        _exit(child_allocates());
    kill(sender, SIGKILL);
    while (waitpid(sender, NULL, 0) < 0 && errno == EINTR) {
    }
    reap_live_children(0);
    alarm(0);
    int good = 0, forks = forks_in_handler;
    char failure[160] = "none";
    for (int i = 0; i < forks; i++) {
        int status = handler_status[i];
        if (handler_reaped[i] && WIFEXITED(status) && WEXITSTATUS(status) == 0)
            good++;
        else if (good == i)
            snprintf(failure, sizeof failure, "child %d (pid %d): %s", i,
                     (int)handler_children[i],
                     handler_reaped[i] ? describe_status(status) : "not reaped");
    }
    CHECK(forks >= SIGNAL_MIN_FORKS && good == forks && fork_failures == 0,
          "fork() from a SIGUSR1 handler during malloc/free of 100-300 KB, at most %d "
          "children at a time: %d forks, %d children allocated and exited 0 (first failure: %s)",
          SIGNAL_LIVE_CHILDREN, forks, good, failure);
}

/* ---- direct: very large blocks mapped for themselves ------------------------- */

static void *map_direct_blocks(void *argument)
{
    uint64_t state = (uint64_t)(uintptr_t)argument + 7;
    while (!atomic_load_explicit(&stop_workers, memory_order_relaxed)) {
        size_t size = (random_next(&state) & 1) ? (40 + random_next(&state) % 60) * MIB
                                                : MIB + random_next(&state) % MIB;
        char *block = malloc(size);
        if (block) {
            block[0] = block[size - 1] = 1;
            free(block);
        }
    }
    return NULL;
}

static void test_direct(void)
{
    run_workers(map_direct_blocks, 3, "threads map and unmap 1-100 MiB blocks", 20);
}

/* ---- trim: every CPU's cache drained, chunks unmapped, threads come and go ---- */

static void *short_lived(void *unused)
{
    for (int i = 0; i < 64; i++)
        free(malloc((size_t)(i + 1) * 24));
    return NULL;
}

static void *trim_and_churn(void *argument)
{
    uint64_t state = (uint64_t)(uintptr_t)argument + 11;
    void *blocks[64] = {0};
    while (!atomic_load_explicit(&stop_workers, memory_order_relaxed)) {
        for (int i = 0; i < 64; i++) {
            free(blocks[i]);
            blocks[i] = malloc(1 + random_next(&state) % (random_next(&state) & 1 ? 600 : 300000));
        }
        if ((uintptr_t)argument == 0) {
            malloc_trim(0);
            struct mallinfo2 info = mallinfo2();
            (void)info;
        } else {
            pthread_t thread;
            if (pthread_create(&thread, NULL, short_lived, NULL) == 0)
                pthread_join(thread, NULL);
        }
    }
    for (int i = 0; i < 64; i++)
        free(blocks[i]);
    return NULL;
}

static void test_trim(void)
{
    run_workers(trim_and_churn, 3, "threads trim, read statistics, start and end threads", 20);
}

int main(void)
{
    expect_malloc_is_xmm();
    run_section("fork while two threads grow the heap", test_growth);
    run_section("fork while threads hold stdio locks and realloc", test_stdio);
    run_section("fork from a signal handler that interrupted malloc", test_signal);
    run_section("fork while threads map very large blocks", test_direct);
    run_section("fork while threads trim and come and go", test_trim);
    return check_summary("fork_deadlock");
}
