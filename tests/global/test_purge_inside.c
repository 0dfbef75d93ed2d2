/* The background thread's purge inside kept spans (xmm_central_purge_inside):
 * a heap of 1 KiB blocks of which one in eight survives keeps every span
 * (no span empties, so neither the page heap's decay nor a sweep gives
 * anything back); once the program stops allocating, the free objects'
 * whole pages must still go back to the kernel after four decay periods,
 * without malloc_trim:
 *   - idle: the program makes no malloc call after its frees;
 *   - cached: the program goes on allocating and freeing a few blocks of
 *     the class, from its CPU's cache (the central layer sees no traffic:
 *     the node counts as idle, and the spans are purged);
 *   - active: the program takes blocks of the class from the central layer
 *     every round: its free objects are in use, and nothing is purged
 *     (a purge would have them faulted back in at once);
 *   - wait: nothing goes before two decay periods have passed, on huge
 *     pages (XMM_THP=auto, the default), which the purge splits;
 *   - off: with XMM_BACKGROUND=0 nothing is purged inside spans (the walk
 *     is not for allocation paths); malloc_trim still purges.
 *   - stress: eight threads on two cores churn scattered survivors of three
 *     classes for 4 s while the thread purges every 10 ms; every block
 *     keeps its tag (none handed out twice, none purged while live);
 *   - fork: children forked at random moments while purges run free all
 *     and trim: the spans the parent's purge held are not lost to them.
 * After the purge the survivors are intact, the class serves new blocks
 * (from the purged objects) that hold what is written to them, and a
 * second free of a block purged whole is still reported and aborts.
 * Each case runs in a child with its XMM_* settings. */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <malloc.h>

#include "check.h"
#include "xmm.h"

#define MIB ((size_t)1 << 20)
#define BLOCK 1024
#define BLOCKS (128 * MIB / BLOCK)
#define KEEP_EVERY 8 /* a 1 KiB class's span holds eight */

static size_t resident_bytes(void)
{
    return proc_kb("/proc/self/status", "VmRSS:") * 1024;
}

static void sleep_ms(long ms)
{
    struct timespec pause = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&pause, NULL);
}

/* How far RSS fell from `before` to `now` (0 if it grew). */
static size_t fell(size_t before, size_t now)
{
    return before > now ? before - now : 0;
}

static uint64_t bytes_purged(void)
{
    struct xmm_stats stats;
    return xmm_stats_get(&stats) == 0 ? stats.bytes_purged : 0;
}

/* The class stays in use: `count` blocks of it allocated, written and
 * freed (16 come from the CPU's cache; 8192 reach the central layer). */
static void use_class(int count)
{
    static void *blocks[8192];
    for (int i = 0; i < count; i++) {
        blocks[i] = malloc(BLOCK);
        memset(blocks[i], 0x5a, BLOCK);
    }
    for (int i = 0; i < count; i++)
        free(blocks[i]);
}

/* A second free of a freed block, in a child: reported, and aborts. */
static void check_double_free_reported(void *freed)
{
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0)
            dup2(null, 2);
        free(freed);
        _exit(0);
    }
    int status = 0;
    CHECK(child > 0 && waitpid(child, &status, 0) == child, "double-free child ran");
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
          "a second free of a purged block aborts (status %#x)", status);
}

/* ---- stress ---------------------------------------------------------------------- */

#define STRESS_THREADS 8
#define STRESS_BLOCKS 4096
static const size_t stress_sizes[] = {1024, 3000, 20480};
static volatile int stress_stop;

/* Writes `tag` into every 256th word of the block (and its last word). */
static void tag_block(uintptr_t *block, size_t size, uintptr_t tag)
{
    size_t words = size / sizeof(uintptr_t);
    for (size_t word = 0; word < words; word += 256)
        block[word] = tag ^ word;
    block[words - 1] = ~tag;
}

static bool tag_intact(const uintptr_t *block, size_t size, uintptr_t tag)
{
    size_t words = size / sizeof(uintptr_t);
    for (size_t word = 0; word < words; word += 256)
        if (block[word] != (tag ^ word))
            return false;
    return block[words - 1] == ~tag;
}

/* The threads pause together (the central layer idle: a purge starts
 * after eight rounds of 10 ms) and start again while it may be walking. */
static void pause_with_the_others(uintptr_t seed, unsigned long rounds)
{
    if (rounds % 4 == 3)
        sleep_ms(80 + (long)((seed * 7 + rounds * 13) % 40));
}

/* Rounds: allocate and tag a class's blocks, free seven in eight, check
 * the survivors after a pause (the purges run meanwhile), free them. */
static void *stress_worker(void *argument)
{
    uintptr_t seed = (uintptr_t)argument;
    unsigned long bad = 0, rounds = 0;
    static uintptr_t *blocks[STRESS_THREADS][STRESS_BLOCKS];
    uintptr_t **mine = blocks[seed % STRESS_THREADS];
    while (!stress_stop) {
        size_t size = stress_sizes[rounds % 3];
        uintptr_t tag = (seed << 40) ^ (rounds << 8);
        for (int i = 0; i < STRESS_BLOCKS; i++) {
            mine[i] = malloc(size);
            if (mine[i])
                tag_block(mine[i], size, tag + (uintptr_t)i);
        }
        for (int i = 0; i < STRESS_BLOCKS; i++)
            if (i % KEEP_EVERY) {
                bad += mine[i] && !tag_intact(mine[i], size, tag + (uintptr_t)i);
                free(mine[i]);
            }
        sleep_ms(5);
        pause_with_the_others(seed, rounds);
        for (int i = 0; i < STRESS_BLOCKS; i += KEEP_EVERY) {
            bad += !mine[i] || !tag_intact(mine[i], size, tag + (uintptr_t)i);
            free(mine[i]);
        }
        rounds++;
    }
    return (void *)(uintptr_t)(bad << 32 | rounds);
}

static int run_stress(void)
{
    uint64_t purged_before = bytes_purged();
    pthread_t threads[STRESS_THREADS];
    for (uintptr_t i = 0; i < STRESS_THREADS; i++)
        if (pthread_create(&threads[i], NULL, stress_worker, (void *)(i + 1)) != 0)
            return 2;
    /* 4 s, and on a machine slow enough that the threads seldom pause
     * together, on until purges have run (20 s at most). */
    for (int waited = 0; waited < 20000; waited += 100) {
        if (waited >= 4000 && bytes_purged() - purged_before >= 16 * MIB)
            break;
        sleep_ms(100);
    }
    stress_stop = 1;
    unsigned long bad = 0, rounds = 0;
    for (int i = 0; i < STRESS_THREADS; i++) {
        void *result;
        pthread_join(threads[i], &result);
        bad += (uintptr_t)result >> 32;
        rounds += (uintptr_t)result & 0xffffffffu;
    }
    uint64_t purged = bytes_purged() - purged_before;
    printf("stress: %lu rounds, %lu blocks changed, %zu MiB purged\n", rounds, bad,
           (size_t)(purged / MIB));
    CHECK(rounds >= 4 * STRESS_THREADS, "stress: the threads ran (%lu rounds)", rounds);
    CHECK(bad == 0, "stress: every block kept its tag (%lu changed)", bad);
    CHECK(purged >= 16 * MIB, "stress: purges ran during the churn (%zu MiB)",
          (size_t)(purged / MIB));
    return check_summary("stress");
}

/* ---- fork ----------------------------------------------------------------------- */

#define FORKS 40

/* Bytes of small spans a child still has after freeing everything it
 * inherited and trimming: what the spans hold (bytes_central) and what is
 * in use. A span a purge held when the child was forked, if lost, keeps
 * its bytes here for good. */
static uint64_t child_left_after_freeing(char **blocks)
{
    for (size_t i = 0; i < BLOCKS; i += KEEP_EVERY)
        free(blocks[i]);
    malloc_trim(0);
    sleep_ms(100);
    malloc_trim(0);
    struct xmm_stats stats;
    if (xmm_stats_get(&stats) != 0)
        return UINT64_MAX;
    return stats.bytes_central + stats.bytes_in_use;
}

static int run_fork(char **blocks)
{
    unsigned long long seed = 12345;
    uint64_t worst = 0;
    int lossy = 0;
    uint64_t purged_before = bytes_purged();
    /* FORKS forks, and on until purges have run between them (a slow
     * machine's rounds take longer than the pauses): 3 * FORKS at most. */
    int round;
    for (round = 0; round < 3 * FORKS; round++) {
        if (round >= FORKS && bytes_purged() - purged_before >= 64 * MIB)
            break;
        /* Frees for the purge's gate, then idle rounds: a purge runs
         * after eight, about 80 ms later (XMM_DECAY_MS=20), and walks for
         * some milliseconds. */
        use_class(8192);
        sleep_ms(80 + (long)(next_random(&seed) % 30));
        int pipe_ends[2];
        if (pipe(pipe_ends) != 0)
            return 2;
        fflush(stdout);
        pid_t child = fork();
        if (child == 0) {
            uint64_t left = child_left_after_freeing(blocks);
            _exit(write(pipe_ends[1], &left, sizeof left) == sizeof left ? 0 : 2);
        }
        uint64_t left = UINT64_MAX;
        if (read(pipe_ends[0], &left, sizeof left) != sizeof left)
            left = UINT64_MAX;
        close(pipe_ends[0]);
        close(pipe_ends[1]);
        waitpid(child, NULL, 0);
        lossy += left > 4 * MIB;
        worst = left > worst ? left : worst;
    }
    uint64_t purged = bytes_purged() - purged_before;
    printf("fork: %d of %d children kept more than 4 MiB of small spans; worst %zu KiB; the "
           "parent purged %zu MiB meanwhile\n",
           lossy, round, (size_t)(worst >> 10), (size_t)(purged / MIB));
    CHECK(purged >= 64 * MIB, "fork: purges ran between the forks (%zu MiB)",
          (size_t)(purged / MIB));
    CHECK(lossy == 0, "fork: no child lost the spans a purge held (%d of %d did; worst %zu KiB)",
          lossy, round, (size_t)(worst >> 10));
    return check_summary("fork");
}

static int run_case(const char *mode)
{
    if (!strcmp(mode, "stress"))
        return run_stress();
    char **blocks = mmap(NULL, BLOCKS * sizeof(char *), PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (blocks == MAP_FAILED)
        return 2;
    size_t baseline = resident_bytes();
    for (size_t i = 0; i < BLOCKS; i++) {
        blocks[i] = malloc(BLOCK);
        memset(blocks[i], (int)(i & 0xff), BLOCK);
    }
    size_t full = resident_bytes();
    for (size_t i = 0; i < BLOCKS; i++)
        if (i % KEEP_EVERY)
            free(blocks[i]);
    size_t after_free = resident_bytes();
    if (!strcmp(mode, "fork"))
        return run_fork(blocks);
    uint64_t purged_before = bytes_purged();
    /* One survivor per span leaves the span's other page free (four 1 KiB
     * objects): about half of the 128 MiB can go back. A third of it is
     * the bound: the survivors' and their neighbours' pages stay. */
    size_t want_gone = 40 * MIB;
    size_t now = after_free;
    if (!strcmp(mode, "wait")) {
        /* XMM_DECAY_MS=400: rounds 200 ms apart at the least, and the
         * eighth idle one after the frees at 1.4 s at the earliest. */
        size_t huge = proc_kb("/proc/self/smaps_rollup", "AnonHugePages:") * 1024;
        sleep_ms(800);
        now = resident_bytes();
        printf("wait: %zu MiB on huge pages; %zu MiB gone 0.8 s after the frees\n", huge / MIB,
               fell(after_free, now) / MIB);
        CHECK(fell(after_free, now) < 8 * MIB, "wait: nothing purged within two decay periods "
              "(%zu MiB gone in 0.8 s)", fell(after_free, now) / MIB);
    }
    bool cached = !strcmp(mode, "cached"), active = !strcmp(mode, "active");
    /* 10 s; off: 1.5 s, seven decay periods; active: 3 s, fifteen */
    int steps = !strcmp(mode, "off") ? 30 : active ? 60 : 200;
    for (int step = 0; step < steps && fell(after_free, now) < want_gone; step++) {
        if (cached || active)
            use_class(cached ? 16 : 8192);
        sleep_ms(50);
        now = resident_bytes();
    }
    uint64_t purged = bytes_purged() - purged_before;
    printf("%s: baseline %zu MiB, full %zu MiB, after free %zu MiB, after the wait %zu MiB, "
           "purged %zu MiB\n",
           mode, baseline / MIB, full / MIB, after_free / MIB, now / MIB, (size_t)(purged / MIB));
    CHECK(full >= baseline + 120 * MIB, "the heap was touched (%zu MiB)", (full - baseline) / MIB);
    CHECK(after_free + 8 * MIB >= full, "the frees alone gave little back (%zu of %zu MiB)",
          after_free / MIB, full / MIB);
    if (active) {
        CHECK(fell(after_free, now) < 8 * MIB,
              "active: no purge of a class the central layer serves every round (%zu MiB "
              "went)", fell(after_free, now) / MIB);
    } else if (!strcmp(mode, "off")) {
        CHECK(fell(after_free, now) < 8 * MIB,
              "off: no purge inside spans without the thread (%zu MiB went)",
              fell(after_free, now) / MIB);
        malloc_trim(0);
        now = resident_bytes();
        CHECK(fell(after_free, now) >= want_gone, "off: malloc_trim purges inside (%zu MiB went)",
              fell(after_free, now) / MIB);
    } else {
        CHECK(fell(after_free, now) >= want_gone,
              "%s: RSS fell by %zu MiB within 10 s (want %zu: the free objects' pages)", mode,
              fell(after_free, now) / MIB, want_gone / MIB);
        CHECK(purged >= want_gone, "%s: bytes_purged grew by %zu MiB", mode,
              (size_t)(purged / MIB));
    }
    /* The survivors are intact. */
    size_t damaged = 0;
    for (size_t i = 0; i < BLOCKS; i += KEEP_EVERY)
        for (size_t byte = 0; byte < BLOCK; byte += 64)
            damaged += (unsigned char)blocks[i][byte] != (i & 0xff);
    CHECK(damaged == 0, "%s: survivors intact (%zu bytes changed)", mode, damaged);
    /* A block freed and purged whole: its second free is reported. */
    check_double_free_reported(blocks[1]);
    /* The class serves again from the purged objects, and what it hands
     * out holds what is written. */
    size_t wrong = 0;
    for (size_t i = 0; i < BLOCKS; i++)
        if (i % KEEP_EVERY) {
            blocks[i] = malloc(BLOCK);
            memset(blocks[i], (int)(~i & 0xff), BLOCK);
        }
    for (size_t i = 0; i < BLOCKS; i++) {
        unsigned char expect = i % KEEP_EVERY ? (unsigned char)~i : (unsigned char)i;
        wrong += (unsigned char)blocks[i][0] != expect ||
                 (unsigned char)blocks[i][BLOCK - 1] != expect;
    }
    CHECK(wrong == 0, "%s: blocks allocated after the purge hold their data (%zu wrong)", mode,
          wrong);
    for (size_t i = 0; i < BLOCKS; i++)
        free(blocks[i]);
    return check_summary(mode);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        return run_case(argv[1]);
    /* Small pages: the purge waits one decay period. */
    char *idle[] = {"XMM_DECAY_MS=200", "XMM_BACKGROUND=1", "XMM_THP=never", NULL};
    char *cached[] = {"XMM_DECAY_MS=200", "XMM_BACKGROUND=1", "XMM_THP=never", NULL};
    char *active[] = {"XMM_DECAY_MS=200", "XMM_BACKGROUND=1", "XMM_THP=never", NULL};
    char *forks[] = {"XMM_DECAY_MS=20", "XMM_BACKGROUND=1", "XMM_THP=never", NULL};
    char *wait[] = {"XMM_DECAY_MS=400", "XMM_BACKGROUND=1", "XMM_THP=auto", NULL};
    char *off[] = {"XMM_DECAY_MS=200", "XMM_BACKGROUND=0", NULL};
    char *stress[] = {"XMM_DECAY_MS=20", "XMM_BACKGROUND=1", "XMM_THP=never", NULL};
    int failures = 0;
    failures += check_run_self("idle", idle) != 0;
    failures += check_run_self("cached", cached) != 0;
    failures += check_run_self("active", active) != 0;
    failures += check_run_self("wait", wait) != 0;
    failures += check_run_self("off", off) != 0;
    failures += check_run_self("stress", stress) != 0;
    failures += check_run_self("fork", forks) != 0;
    printf("%d of 7 purge-inside cases failed\n", failures);
    return failures ? 1 : 0;
}
