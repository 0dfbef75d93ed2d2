/* Statistics match what the program did, through malloc (libxmm.so).
 *   test_stats counts         single- and multi-threaded in-use and counters, and
 *                             each report in one write(2)
 *   test_stats profiled       counters with the heap profiler on (XMM_PROFILE=64)
 *   test_stats closefrom DIR  closes fds from 3, opens 80 files in DIR, exits
 *   test_stats closestderr DIR  closes fd 2, opens DIR/data.2 (fd 2), exits
 *   test_stats malloc-info    writes malloc_info(0, stdout) (checked as XML by stats.sh)
 *   test_stats signal FILE [PWR]  raises SIGUSR2 (SIGPWR), waits for FILE to fill
 *   test_stats signal FILE fork   the same in a fork child (SIGURG blocked), which
 *                             then allocates
 *   test_stats signal FILE then-fork  raise then fork, 20 times: no child reports
 *   test_stats title          writes a process title over argv and the environment
 *   test_stats quiet          allocates a little, keeps one block, exits (XMM_STATS runs)
 *   test_stats sizes [FILE]   allocates in most size classes (a long report), and
 *                             exits once FILE exists (processes exit together) */
#include <malloc.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

extern char **environ;
#include "stats_snapshot.h"
#include "xmm.h"

#define COUNT 1000
#define FREED 300
#define SIZE 100      /* class of 112 bytes */
#define CLASS_SIZE 112

static void *allocate_and_free_some(void *blocks_argument)
{
    void **blocks = blocks_argument;
    for (int i = 0; i < COUNT; i++)
        blocks[i] = malloc(SIZE);
    for (int i = 0; i < FREED; i++)
        free(blocks[i]);
    return NULL;
}

static void check_counts_single_thread(void)
{
    static void *blocks[COUNT];
    /* stdio's buffer is allocated at the first output: before the first
     * snapshot, not between two (the checks print as they go). */
    NOTE("counters around %d allocations of %d bytes", COUNT, CLASS_SIZE);
    struct xmm_stats before = snapshot();
    allocate_and_free_some(blocks);
    struct xmm_stats after = snapshot();
    long in_use = (long)(after.bytes_in_use - before.bytes_in_use);
    CHECK(in_use == (COUNT - FREED) * CLASS_SIZE, "in use grew by %ld, expected %d", in_use,
          (COUNT - FREED) * CLASS_SIZE);
    for (int i = FREED; i < COUNT; i++)
        free(blocks[i]);
    struct xmm_stats end = snapshot();
    CHECK(end.bytes_in_use == before.bytes_in_use, "all freed: in use back to %llu, is %llu",
          (unsigned long long)before.bytes_in_use, (unsigned long long)end.bytes_in_use);
}

/* Operation counts are estimates (docs/statistics.md: byte-sampled at the
 * allocation tick, every 1 MiB requested per thread): within a few
 * percent of the truth for volumes of many ticks, per class too. */
static void check_count_estimates(void)
{
    enum { ROUNDS = 4000, BATCH = 2000, SMALL = 64, LARGE = 1024 };
    static void *blocks[BATCH];
    struct xmm_stats before = snapshot();
    for (int round = 0; round < ROUNDS; round++) {
        for (int i = 0; i < BATCH; i++)
            blocks[i] = malloc(i % 2 ? LARGE : SMALL);
        for (int i = 0; i < BATCH; i++)
            free(blocks[i]);
    }
    struct xmm_stats after = snapshot();
    double truth = (double)ROUNDS * BATCH;
    double allocations = (double)(after.allocations - before.allocations);
    double frees = (double)(after.frees - before.frees);
    /* 2000 * 4000 requests of 544 bytes on average: about 4150 ticks, of
     * which the 64-byte requests get 6%, each standing for 16,000
     * requests: the count's relative error is about 3%. */
    CHECK(allocations > 0.8 * truth && allocations < 1.2 * truth,
          "allocations estimated at %.0f for %.0f", allocations, truth);
    CHECK(frees > 0.8 * truth && frees < 1.2 * truth, "frees estimated at %.0f for %.0f", frees,
          truth);
    CHECK(after.bytes_in_use == before.bytes_in_use, "in use exact: back to %llu (is %llu)",
          (unsigned long long)before.bytes_in_use, (unsigned long long)after.bytes_in_use);
    uint64_t hits = !strcmp(after.front_end, "per-cpu")
                        ? after.rseq_fast_path - before.rseq_fast_path
                        : after.rseq_fallback - before.rseq_fallback;
    CHECK((double)hits > 0.8 * 2 * truth, "cache hits estimated at %llu of %.0f operations",
          (unsigned long long)hits, 2 * truth);
}

/* Allocations and frees are counters: no snapshot reports fewer than the
 * one before (docs/statistics.md), and their difference moves by exactly
 * the blocks allocated or freed between two. Each class's estimate is
 * raised to at least its live objects; a class with few samples then
 * read 2000 allocations with 2000 blocks live, and 0 once they were
 * freed (the floor gone, the estimate 0), before the counts were kept
 * from going down. Eight classes of 2000 blocks each, about 1.3 MB a
 * round: one or two ticks, so most classes get no sample. */
static void check_counters_monotone(void)
{
    enum { ROUNDS = 3, CLASSES = 8, BLOCKS = 2000 };
    static const size_t sizes[CLASSES] = {24, 40, 72, 88, 120, 136, 152, 168};
    static void *blocks[CLASSES][BLOCKS];
    NOTE("allocations and frees never go down (%d rounds of %d blocks)", ROUNDS,
         CLASSES * BLOCKS);
    struct xmm_stats previous = snapshot();
    for (int round = 0; round < 2 * ROUNDS; round++) {
        bool allocating = round % 2 == 0;
        for (int c = 0; c < CLASSES; c++)
            for (int i = 0; i < BLOCKS; i++) {
                if (allocating)
                    blocks[c][i] = malloc(sizes[c]);
                else
                    free(blocks[c][i]);
            }
        struct xmm_stats now = snapshot();
        CHECK(now.allocations >= previous.allocations && now.frees >= previous.frees,
              "step %d: allocations %llu -> %llu, frees %llu -> %llu", round,
              (unsigned long long)previous.allocations, (unsigned long long)now.allocations,
              (unsigned long long)previous.frees, (unsigned long long)now.frees);
        long long moved = (long long)(now.allocations - now.frees) -
                          (long long)(previous.allocations - previous.frees);
        long long expected = allocating ? CLASSES * BLOCKS : -CLASSES * BLOCKS;
        CHECK(moved == expected, "step %d: allocations - frees moved by %lld, expected %lld",
              round, moved, expected);
        previous = now;
    }
}

/* With the heap profiler on (stats.sh runs this with XMM_PROFILE=64, a
 * sample every 64 bytes requested on average), most small requests are
 * sampled and served as pages of their own: they are live blocks of their
 * class all the same. allocations - frees once counted only those the
 * caches handed out (6 of 1000). */
static int check_profiled_counts(void)
{
    enum { BLOCKS = 1000, SIZE_PROFILED = 100 };
    static void *blocks[BLOCKS];
    NOTE("allocations - frees with the heap profiler sampling most requests");
    struct xmm_stats before = snapshot();
    int sampled = 0;
    for (int i = 0; i < BLOCKS; i++) {
        blocks[i] = malloc(SIZE_PROFILED);
        sampled += malloc_usable_size(blocks[i]) > CLASS_SIZE;
    }
    struct xmm_stats after = snapshot();
    CHECK(sampled > BLOCKS / 2, "%d of %d blocks sampled (XMM_PROFILE=64 expected)", sampled,
          BLOCKS);
    long long live = (long long)(after.allocations - after.frees) -
                     (long long)(before.allocations - before.frees);
    CHECK(live == BLOCKS, "allocations - frees grew by %lld for %d blocks", live, BLOCKS);
    for (int i = 0; i < BLOCKS; i++)
        free(blocks[i]);
    struct xmm_stats end = snapshot();
    live = (long long)(end.allocations - end.frees) -
           (long long)(before.allocations - before.frees);
    CHECK(live == 0, "all freed: allocations - frees moved by %lld", live);
    CHECK(end.allocations >= after.allocations && end.frees >= after.frees,
          "counters went down: allocations %llu -> %llu, frees %llu -> %llu",
          (unsigned long long)after.allocations, (unsigned long long)end.allocations,
          (unsigned long long)after.frees, (unsigned long long)end.frees);
    return check_summary("stats profiled");
}

/* One thread's part of check_estimates_threads: `rounds` of 1000 requests
 * of 256 bytes, freed each round. */
static void *request_rounds(void *rounds_argument)
{
    long rounds = (long)(intptr_t)rounds_argument;
    static __thread void *held[1000];
    for (long round = 0; round < rounds; round++) {
        for (int i = 0; i < 1000; i++)
            held[i] = malloc(256);
        for (int i = 0; i < 1000; i++)
            free(held[i]);
    }
    return NULL;
}

/* The ticks of threads on different CPUs add to different counters
 * (upkeep.c, `sampled`): the estimate is their sum, and threads that
 * tick at once lose at most a sample each now and then. Four threads on
 * this machine's CPUs, 4 x 4000 x 1000 requests of 256 B: about 3900
 * ticks, a relative error of about 1.6%: the 10% bound is six of it. */
static void check_estimates_threads(void)
{
    enum { THREADS = 4, ROUNDS = 4000 };
    pthread_t threads[THREADS];
    struct xmm_stats before = snapshot();
    for (int t = 0; t < THREADS; t++)
        pthread_create(&threads[t], NULL, request_rounds, (void *)(intptr_t)ROUNDS);
    for (int t = 0; t < THREADS; t++)
        pthread_join(threads[t], NULL);
    struct xmm_stats after = snapshot();
    double truth = (double)THREADS * ROUNDS * 1000;
    double allocations = (double)(after.allocations - before.allocations);
    CHECK(allocations > 0.9 * truth && allocations < 1.1 * truth,
          "threads: allocations estimated at %.0f for %.0f", allocations, truth);
}

static void check_counts_threads(void)
{
    enum { THREADS = 4 };
    static void *blocks[THREADS][COUNT];
    pthread_t threads[THREADS];
    struct xmm_stats before = snapshot();
    for (int t = 0; t < THREADS; t++)
        pthread_create(&threads[t], NULL, allocate_and_free_some, blocks[t]);
    for (int t = 0; t < THREADS; t++)
        pthread_join(threads[t], NULL);
    struct xmm_stats after = snapshot();
    long expected = THREADS * (COUNT - FREED) * CLASS_SIZE;
    long in_use = (long)(after.bytes_in_use - before.bytes_in_use);
    /* glibc itself allocates a little per thread (TLS bookkeeping). */
    CHECK(in_use >= expected && in_use <= expected + 16384, "threads: in use +%ld, expected %ld",
          in_use, expected);
    for (int t = 0; t < THREADS; t++)
        for (int i = FREED; i < COUNT; i++)
            free(blocks[t][i]);
    struct mallinfo2 info = mallinfo2();
    CHECK(info.uordblks > 0 && info.arena > 0, "mallinfo2 reports real figures");
}

/* bytes_in_use after a burst like idle-return's (bench/workloads): blocks
 * of 64 B - 256 KiB, 90% freed in random order (through the caches, the
 * transfer batches and back to their spans, some of which a free-path
 * sweep or the trim releases), next to a 128 MiB table of pointers that
 * is mapped for itself and barely touched (idle-return keeps two of them).
 * In use is exact: the live blocks at their usable size (the size class),
 * plus the table's mapping. So idle-return's 365 MiB in use, for 107 MiB
 * of live blocks, was its own 256 MiB of tables and the classes' rounding,
 * not a miscount of batches or of cross-node frees. */
static void check_in_use_after_burst(void)
{
    enum { BLOCKS = 6000 };
    unsigned long long state = 0x9e3779b97f4a7c15ull;
    struct xmm_stats before = snapshot();
    void **table = malloc((size_t)128 << 20);
    table[0] = NULL;
    for (int i = 0; i < BLOCKS; i++) {
        size_t size = (size_t)64 << (next_random(&state) % 13); /* 64 B - 256 KiB */
        size += next_random(&state) % size;
        if (size > (256 << 10))
            size = 256 << 10;
        table[i] = malloc(size);
        memset(table[i], 1, size);
    }
    for (int i = BLOCKS - 1; i > 0; i--) {
        int j = (int)(next_random(&state) % (unsigned long long)(i + 1));
        void *swap = table[i];
        table[i] = table[j];
        table[j] = swap;
    }
    for (int i = 0; i < BLOCKS * 9 / 10; i++)
        free(table[i]);
    uint64_t expected = malloc_usable_size(table);
    for (int i = BLOCKS * 9 / 10; i < BLOCKS; i++)
        expected += malloc_usable_size(table[i]);
    struct xmm_stats after = snapshot();
    CHECK(after.bytes_in_use - before.bytes_in_use == expected,
          "after a burst, 90%% freed: in use +%llu, the live blocks and the table %llu",
          (unsigned long long)(after.bytes_in_use - before.bytes_in_use),
          (unsigned long long)expected);
    malloc_trim(0);
    after = snapshot();
    CHECK(after.bytes_in_use - before.bytes_in_use == expected,
          "after malloc_trim too: +%llu", (unsigned long long)(after.bytes_in_use -
                                                              before.bytes_in_use));
    for (int i = BLOCKS * 9 / 10; i < BLOCKS; i++)
        free(table[i]);
    free(table);
    after = snapshot();
    CHECK(after.bytes_in_use == before.bytes_in_use, "all freed: back to %llu (is %llu)",
          (unsigned long long)before.bytes_in_use, (unsigned long long)after.bytes_in_use);
}

/* Large blocks allocated on one CPU and freed on another: the page heap
 * counts them in shards by CPU (page_heap.c, large_tally), and a block's
 * bytes leave another shard than they entered. The sums stay exact:
 * in use back where it was, allocations and frees each up by the count. */
enum { CROSS_BLOCKS = 64, CROSS_SIZE = 300 << 10 };
static void *cross_blocks[CROSS_BLOCKS];

static void pin_to_cpu(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof set, &set);
}

static void *free_cross_blocks(void *cpu_argument)
{
    pin_to_cpu((int)(intptr_t)cpu_argument);
    for (int i = 0; i < CROSS_BLOCKS; i++)
        free(cross_blocks[i]);
    return NULL;
}

static void check_large_across_cpus(void)
{
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0 || CPU_COUNT(&allowed) < 2) {
        NOTE("large blocks across CPUs: skipped (one CPU)");
        return;
    }
    int first = -1, second = -1;
    for (int cpu = 0; cpu < CPU_SETSIZE && second < 0; cpu++)
        if (CPU_ISSET(cpu, &allowed)) {
            if (first < 0)
                first = cpu;
            else
                second = cpu;
        }
    pin_to_cpu(first);
    struct xmm_stats before = snapshot();
    for (int i = 0; i < CROSS_BLOCKS; i++)
        cross_blocks[i] = malloc(CROSS_SIZE + (size_t)i * 4096);
    struct xmm_stats held = snapshot();
    uint64_t expected = 0;
    for (int i = 0; i < CROSS_BLOCKS; i++)
        expected += malloc_usable_size(cross_blocks[i]);
    pthread_t thread;
    pthread_create(&thread, NULL, free_cross_blocks, (void *)(intptr_t)second);
    pthread_join(thread, NULL);
    struct xmm_stats after = snapshot();
    sched_setaffinity(0, sizeof allowed, &allowed);
    CHECK(held.bytes_in_use - before.bytes_in_use == expected,
          "%d large blocks allocated on CPU %d: in use +%llu, their pages %llu", CROSS_BLOCKS,
          first, (unsigned long long)(held.bytes_in_use - before.bytes_in_use),
          (unsigned long long)expected);
    CHECK(after.bytes_in_use == before.bytes_in_use,
          "freed on CPU %d: in use back to %llu (is %llu)", second,
          (unsigned long long)before.bytes_in_use, (unsigned long long)after.bytes_in_use);
    CHECK(after.large_allocations - before.large_allocations == CROSS_BLOCKS,
          "large_allocations +%llu (expected %d)",
          (unsigned long long)(after.large_allocations - before.large_allocations), CROSS_BLOCKS);
    CHECK(after.frees - before.frees >= CROSS_BLOCKS, "frees +%llu (at least %d)",
          (unsigned long long)(after.frees - before.frees), CROSS_BLOCKS);
}

static void check_versioning(void)
{
    struct xmm_stats stats;
    CHECK(xmm_stats_get(NULL) == -1, "NULL is EINVAL");
    memset(&stats, 0, sizeof(stats));
    stats.version = XMM_STATS_VERSION;
    CHECK(xmm_stats_get(&stats) == 0 && stats.version == XMM_STATS_VERSION && stats.node_count >= 1,
          "versioned snapshot");
    CHECK(xmm_stats_print(1, "yaml") == -1, "unknown format is rejected");
}

/* A live block in most size classes: a report of several KiB (the
 * report lists every class with live blocks or sampled traffic). */
void *many_sizes_blocks[128]; /* external: the compiler must keep the mallocs */

static void allocate_many_sizes(void)
{
    int count = 0;
    for (size_t size = 8; size <= 256 * 1024 && count < 128; size += size / 8 + 8)
        many_sizes_blocks[count++] = malloc(size);
}

/* A report is one write(2), so that processes appending to one
 * XMM_STATS_FILE never interleave: over a SOCK_SEQPACKET socket each write
 * arrives as one message. */
static void check_one_write(void)
{
    allocate_many_sizes();
    int sockets[2];
    CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sockets) == 0, "socketpair");
    static char report[512 * 1024];
    const char *formats[] = {"json", "text"};
    for (int i = 0; i < 2; i++) {
        CHECK(xmm_stats_print(sockets[0], formats[i]) == 0, "%s report printed", formats[i]);
        ssize_t length = recv(sockets[1], report, sizeof(report), MSG_DONTWAIT);
        CHECK(length > 2048 && report[length - 1] == '\n', "%s report: %zd bytes, whole",
              formats[i], length);
        CHECK(recv(sockets[1], report, sizeof(report), MSG_DONTWAIT) == -1 && errno == EAGAIN,
              "%s report: one write", formats[i]);
        if (i == 0) {
            CHECK(length > 4096, "json report longer than 4 KiB (%zd bytes)", length);
            CHECK(memchr(report, '\n', (size_t)length) == report + length - 1,
                  "json report: one line");
        }
    }
    close(sockets[0]);
    close(sockets[1]);
}

/* Waits up to 2 s for `path` to fill; with `allocating`, a MiB of
 * allocations every 10 ms meanwhile (a server's worker at work). */
static int wait_for_file(const char *path, bool allocating)
{
    for (int i = 0; i < 200; i++) {
        struct stat status;
        if (stat(path, &status) == 0 && status.st_size > 0)
            return 0;
        for (int block = 0; allocating && block < 256; block++) {
            static void *volatile used; /* not a pair the compiler may drop */
            used = malloc(4096);
            free(used);
        }
        struct timespec pause = {0, 10000000};
        nanosleep(&pause, NULL);
    }
    return -1;
}

/* What a server that sets its process title does (nginx, postgres,
 * redis): the environment moved to the heap, and the title written over
 * the block that held argv and the environment. */
static int set_process_title(int argc, char **argv)
{
    char *start = argv[0], *end = argv[argc - 1] + strlen(argv[argc - 1]) + 1;
    int count = 0;
    while (environ[count])
        count++;
    char **moved = malloc((count + 1) * sizeof *moved);
    if (!moved)
        return 1;
    for (int i = 0; i < count; i++) {
        if (environ[i] == end)
            end += strlen(environ[i]) + 1;
        moved[i] = strdup(environ[i]);
    }
    moved[count] = NULL;
    environ = moved;
    memset(start, 0, (size_t)(end - start));
    snprintf(start, (size_t)(end - start), "test_stats: worker process");
    return 0;
}

/* A signal the parent has not served when it forks is the parent's: 20
 * times raise then fork, each child allocating 4 MiB (its printer starts)
 * and exiting; `path` (JSON Lines, no %p) must hold no report of a child.
 * Before, 11 of 20 children wrote one. */
static int signal_then_fork(const char *path)
{
    for (int round = 0; round < 20; round++) {
        raise(SIGUSR2);
        pid_t child = fork();
        if (child == 0) {
            for (int block = 0; block < 1024; block++) {
                static void *volatile used;
                used = malloc(4096);
                free(used);
            }
            struct timespec pause = {0, 100000000};
            nanosleep(&pause, NULL);
            _exit(0);
        }
        waitpid(child, NULL, 0);
    }
    struct timespec pause = {0, 200000000};
    nanosleep(&pause, NULL);
    FILE *reports = fopen(path, "r");
    int own = 0, others = 0;
    char line[1 << 16];
    while (reports && fgets(line, sizeof line, reports)) {
        const char *pid = strstr(line, "\"pid\": ");
        if (pid && atoi(pid + 7) == (int)getpid())
            own++;
        else if (pid)
            others++;
    }
    if (reports)
        fclose(reports);
    CHECK(own >= 1 && others == 0, "20 signals, each then a fork: %d reports of the parent, "
          "%d of children (none)", own, others);
    return check_summary("stats signal then fork");
}

/* XMM_STATS_SIGNAL in a fork child (a pre-forked server's worker): the
 * signal comes before the child's first allocation, the report after it.
 * The printer thread did not come along with fork; before, the child's
 * signals did nothing. */
/* A daemon's second child: setsid, then no allocation at all (a master
 * waiting in sigsuspend). Its signal went unanswered until it exited. */
static int signal_in_daemon(const char *path)
{
    free(malloc(1000));
    pid_t child = fork();
    if (child == 0) {
        if (setsid() < 0)
            _exit(2);
        raise(SIGUSR2);
        _exit(wait_for_file(path, false) == 0 ? 0 : 1);
    }
    int status = 0;
    waitpid(child, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "a fork child that made its own session, and allocates no more: its signal wrote "
          "its statistics (child status 0x%x)", status);
    return check_summary("stats signal in a daemon");
}

static int signal_in_child(const char *path)
{
    free(malloc(1000));
    pid_t child = fork();
    if (child == 0) {
        /* As every PostgreSQL backend does: the service thread's rule was
         * "no signal blocked", and it never started there. */
        sigset_t urgent;
        sigemptyset(&urgent);
        sigaddset(&urgent, SIGURG);
        sigprocmask(SIG_BLOCK, &urgent, NULL);
        raise(SIGUSR2);
        _exit(wait_for_file(path, true) == 0 ? 0 : 1);
    }
    int status = 0;
    waitpid(child, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "a fork child's signal wrote its statistics (child status 0x%x)", status);
    return check_summary("stats signal in a fork child");
}

/* Runs this program again ("signal PATH no-thread") under a seccomp
 * filter that refuses clone and clone3 (EPERM), so that XMM starts with
 * no way to start a thread, as under a process limit or a full pids
 * cgroup. 77 when filters are not available. */
static int exec_without_threads(const char *self, const char *path)
{
    struct sock_filter program[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone, 1, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone3, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog filter = {sizeof program / sizeof program[0], program};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &filter) != 0)
        return 77;
    execl(self, self, "signal", path, "no-thread", (char *)NULL);
    return 1;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "counts";
    if (argc >= 3 && !strcmp(argv[1], "raise-exit")) {
        /* The signal, then exit at once: the report or dump it asked for
         * must still be written whole before the process ends. */
        static void *volatile kept;
        kept = malloc(8 << 20);
        raise(atoi(argv[2]));
        exit(kept ? 0 : 1);
    }
    if (!strcmp(mode, "malloc-info"))
        return malloc_info(0, stdout) == 0 ? 0 : 1;
    if (!strcmp(mode, "quiet")) {
        /* One block still live at exit: small operation counts are
         * estimates, raised to at least the live objects
         * (docs/statistics.md), so the report counts one allocation at
         * least. A process that frees all it allocated may be sampled
         * zero times. */
        static void *volatile kept;
        kept = malloc(1000);
        free(malloc(1000));
        return kept ? 0 : 1;
    }
    if (!strcmp(mode, "sizes")) {
        allocate_many_sizes();
        struct timespec pause = {0, 1000000};
        for (int i = 0; argc > 2 && access(argv[2], F_OK) != 0 && i < 20000; i++)
            nanosleep(&pause, NULL);
        return 0;
    }
    if (!strcmp(mode, "closefrom") && argc > 2) {
        /* A daemon's start: every descriptor above 2 closed, then files
         * of its own opened, kept open to the exit (stats.sh checks that
         * none of them received a report). */
        syscall(SYS_close_range, 3, ~0U, 0);
        for (int i = 0; i < 80; i++) {
            char path[PATH_MAX];
            snprintf(path, sizeof path, "%s/data.%d", argv[2], i);
            int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (fd < 0 || write(fd, "data\n", 5) != 5)
                return 1;
        }
        free(malloc(100));
        static void *volatile kept;
        kept = malloc(1000); /* a leak for XMM_LEAKS */
        return kept ? 0 : 1;
    }
    if (!strcmp(mode, "closestderr") && argc > 2) {
        /* A daemon that closes its stderr and opens a file of its own,
         * which is given fd 2. */
        close(2);
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/data.2", argv[2]);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd != 2 || write(fd, "data\n", 5) != 5)
            return 1;
        free(malloc(100));
        static void *volatile kept;
        kept = malloc(1000); /* a leak for XMM_LEAKS */
        return kept ? 0 : 1;
    }
    if (!strcmp(mode, "profiled"))
        return check_profiled_counts();
    if (!strcmp(mode, "title")) {
        static void *volatile kept;
        kept = malloc(1000);
        return set_process_title(argc, argv) == 0 && kept ? 0 : 1;
    }
    if (!strcmp(mode, "signal") && argc > 3 && !strcmp(argv[3], "fork"))
        return signal_in_child(argv[2]);
    if (!strcmp(mode, "signal") && argc > 3 && !strcmp(argv[3], "daemon"))
        return signal_in_daemon(argv[2]);
    if (!strcmp(mode, "no-threads") && argc > 2)
        return exec_without_threads(argv[0], argv[2]);
    if (!strcmp(mode, "signal") && argc > 3 && !strcmp(argv[3], "no-thread")) {
        /* The signal must not end the process; its report is written at
         * exit at the latest. */
        free(malloc(1000));
        raise(SIGUSR2);
        wait_for_file(argv[2], true);
        return 0;
    }
    if (!strcmp(mode, "signal") && argc > 3 && !strcmp(argv[3], "then-fork"))
        return signal_then_fork(argv[2]);
    if (!strcmp(mode, "signal")) {
        free(malloc(1000));
        raise(argc > 3 && !strcmp(argv[3], "PWR") ? SIGPWR : SIGUSR2);
        CHECK(wait_for_file(argv[2], false) == 0, "statistics written on SIGUSR2");
        return check_summary("stats signal");
    }
    check_counts_single_thread();
    check_counters_monotone();
    check_count_estimates();
    check_counts_threads();
    check_estimates_threads();
    check_in_use_after_burst();
    check_large_across_cpus();
    check_versioning();
    check_one_write();
    return check_summary("stats counts");
}
