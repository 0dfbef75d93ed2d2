/* The heap profiler (XMM_PROFILE), through malloc (libxmm.so).
 *
 *   test_profile                  every mode below, each in a process of its
 *                                 own with its XMM_* settings
 *   test_profile estimate FILE    (XMM_PROFILE=4k) three call sites hold 10%,
 *                                 30% and 60% of the live bytes (small,
 *                                 calloc, small and large sizes); after half
 *                                 of each is freed, the dump's estimates per
 *                                 site are within 10% of the truth
 *   test_profile blocks FILE      (XMM_PROFILE=2: every request sampled)
 *                                 sampled blocks through the whole API:
 *                                 usable size, realloc, calloc, alignment,
 *                                 sized frees, nodes, bad frees reported, the
 *                                 profile empty again once all is freed
 *   test_profile threads FILE     (XMM_PROFILE=8k) threads allocating, others
 *                                 freeing their blocks, one dumping meanwhile
 *   test_profile fork FILE        (XMM_PROFILE=4k) a child of fork samples
 *                                 and dumps
 *   test_profile off FILE         (no XMM_PROFILE) nothing sampled; ENOTSUP
 *
 * and, for tests/global/profile.sh and profile_pprof.sh:
 *
 *   test_profile exit             10%, 30% and 60% of 32 MiB from the three
 *                                 sites, kept; prints each site's bytes
 *   test_profile leak BYTES SIZE  leaks BYTES in blocks of SIZE from
 *                                 leaky_site, frees everything else
 *   test_profile signal FILE      raises SIGUSR1 (XMM_PROFILE_SIGNAL), waits
 *                                 for FILE to be written
 *   test_profile signal FILE fork the same in a fork child
 *
 * The sites are exported (the test links with -rdynamic) so that dladdr
 * names the function of each dump's stack.
 */
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "xmm.h"

/* XMM's allocator page (XMM_PAGE_SIZE): a sampled small block has one. */
#define ALLOCATOR_PAGE ((size_t)4096)

/* run_blocks frees twice and frees an interior pointer on purpose. */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic ignored "-Wuse-after-free"
#endif
#pragma GCC diagnostic ignored "-Wfree-nonheap-object"

void free_sized(void *ptr, size_t size); /* C23; glibc 2.36 does not declare it */

/* Every block the sites hand out stays reachable from here (no tail
 * calls: the store after the call keeps the site's frame on the stack). */
void *volatile sink;

__attribute__((noinline)) void *site_small(size_t size)
{
    void *block = malloc(size);
    sink = block;
    return block;
}

__attribute__((noinline)) void *site_calloc(size_t size)
{
    void *block = calloc(1, size);
    sink = block;
    return block;
}

__attribute__((noinline)) void *site_mixed(size_t size)
{
    void *block = malloc(size);
    sink = block;
    return block;
}

__attribute__((noinline)) void *leaky_site(size_t size)
{
    void *block = malloc(size);
    sink = block;
    return block;
}

__attribute__((noinline)) void *thread_site(size_t size)
{
    void *block = malloc(size);
    sink = block;
    return block;
}

/* ---- reading a dump ---------------------------------------------------------- */

#define SITES 3
static const char *site_names[SITES] = {"site_small", "site_calloc", "site_mixed"};

struct dump {
    int ok;
    unsigned long long live_objects, live_bytes, total_objects, total_bytes; /* header */
    unsigned long long sum_live_bytes, sum_total_bytes;                      /* lines */
    int stacks, stacks_in_xmm, maps_lines, maps_name_libxmm;
    /* per name given to read_dump: live and total estimates */
    double live_bytes_of[8], live_objects_of[8], total_bytes_of[8];
};

/* Which of `names` the function holding `pc` is, or -1. */
static int function_index(uintptr_t pc, const char *const *names, int count, int *in_xmm)
{
    Dl_info info;
    if (!dladdr((void *)pc, &info))
        return -1;
    if (info.dli_fname && strstr(info.dli_fname, "libxmm"))
        *in_xmm = 1;
    for (int i = 0; info.dli_sname && i < count; i++)
        if (!strcmp(info.dli_sname, names[i]))
            return i;
    return -1;
}

static struct dump read_dump(const char *path, const char *const *names, int count)
{
    struct dump dump;
    memset(&dump, 0, sizeof dump);
    FILE *file = fopen(path, "r");
    if (!file)
        return dump;
    char *line = NULL;
    size_t capacity = 0;
    if (getline(&line, &capacity, file) <= 0 ||
        sscanf(line, "heap profile: %llu: %llu [%llu: %llu] @ heapprofile", &dump.live_objects,
               &dump.live_bytes, &dump.total_objects, &dump.total_bytes) != 4) {
        fclose(file);
        free(line);
        return dump;
    }
    int in_maps = 0;
    while (getline(&line, &capacity, file) > 0) {
        if (in_maps) {
            dump.maps_lines++;
            if (strstr(line, "libxmm"))
                dump.maps_name_libxmm = 1;
            continue;
        }
        if (!strcmp(line, "MAPPED_LIBRARIES:\n")) {
            in_maps = 1;
            continue;
        }
        unsigned long long objects, bytes, total_objects, total_bytes;
        int consumed = 0;
        if (sscanf(line, "%llu: %llu [%llu: %llu] @%n", &objects, &bytes, &total_objects,
                   &total_bytes, &consumed) != 4 || !consumed)
            continue;
        dump.stacks++;
        dump.sum_live_bytes += bytes;
        dump.sum_total_bytes += total_bytes;
        char *cursor = line + consumed;
        uintptr_t pc = (uintptr_t)strtoull(cursor, &cursor, 16);
        int in_xmm = 0;
        int index = function_index(pc, names, count, &in_xmm);
        dump.stacks_in_xmm += in_xmm;
        if (index >= 0) {
            dump.live_bytes_of[index] += (double)bytes;
            dump.live_objects_of[index] += (double)objects;
            dump.total_bytes_of[index] += (double)total_bytes;
        }
    }
    dump.ok = in_maps;
    fclose(file);
    free(line);
    return dump;
}

static double relative_error(double estimate, double truth)
{
    return truth ? (estimate - truth) / truth : estimate;
}

/* ---- estimate ---------------------------------------------------------------- */

#define LIVE_TARGET ((size_t)64 << 20)

struct site_truth {
    double live_bytes, live_objects, total_bytes;
};

/* Allocates twice the site's share of LIVE_TARGET with sizes from
 * `size_of`, then frees every other block. */
static void fill_site(int site, double share, size_t (*size_of)(unsigned long long *),
                      unsigned long long *random, void ***kept, size_t *kept_count,
                      struct site_truth *truth)
{
    size_t goal = (size_t)(share * 2 * (double)LIVE_TARGET);
    size_t capacity = 1 << 16, count = 0, allocated = 0;
    void **blocks = malloc(capacity * sizeof(void *));
    size_t *sizes = malloc(capacity * sizeof(size_t));
    while (allocated < goal) {
        if (count == capacity) {
            capacity *= 2;
            blocks = realloc(blocks, capacity * sizeof(void *));
            sizes = realloc(sizes, capacity * sizeof(size_t));
        }
        size_t size = size_of(random);
        void *block = site == 0 ? site_small(size) : site == 1 ? site_calloc(size)
                                                                : site_mixed(size);
        CHECKQ(block != NULL, "site %d: allocation of %zu bytes", site, size);
        memset(block, 0x5a, size < 64 ? size : 64);
        blocks[count] = block;
        sizes[count++] = size;
        allocated += size;
        truth->total_bytes += (double)size;
    }
    size_t live = 0;
    for (size_t i = 0; i < count; i++) {
        if (next_random(random) & 1) {
            free(blocks[i]);
        } else {
            blocks[live++] = blocks[i];
            truth->live_bytes += (double)sizes[i];
            truth->live_objects += 1;
        }
    }
    free(sizes);
    *kept = blocks;
    *kept_count = live;
}

static size_t small_size(unsigned long long *random)
{
    return 16 + next_random(random) % 241; /* 16 to 256 bytes */
}

static size_t calloc_size(unsigned long long *random)
{
    return 256 + next_random(random) % 3841; /* 256 bytes to 4 KiB */
}

static size_t mixed_size(unsigned long long *random)
{
    /* 4 to 64 KiB mostly, one in 16 large (256 KiB to 1 MiB) */
    unsigned long long r = next_random(random);
    if ((r & 15) == 0)
        return (256 << 10) + (r >> 8) % (768 << 10);
    return 4096 + (r >> 8) % (60 << 10);
}

static int run_estimate(const char *path)
{
    static const double shares[SITES] = {0.10, 0.30, 0.60};
    size_t (*sizes[SITES])(unsigned long long *) = {small_size, calloc_size, mixed_size};
    struct site_truth truth[SITES];
    memset(truth, 0, sizeof truth);
    void **kept[SITES];
    size_t kept_count[SITES];
    unsigned long long random = 0x9e3779b97f4a7c15ull;
    /* Requests no heap can grant count toward the sampling too (at most
     * 2^60 bytes each, src/global/upkeep.c): the countdown must go on
     * ticking after them, in the default mode and under the deferred
     * free check, whose countdown holds a bias of -2^62 (profile.sh runs
     * this there too; counted in full, it wrapped round and never
     * crossed again). */
    for (int i = 0; i < 4; i++) {
        /* Both volatile: no compile-time warning of the size, and clang
         * may not drop the malloc and free as a pair (it then folds the
         * result to a non-NULL pointer). */
        volatile size_t huge = SIZE_MAX / 2 + (size_t)i * 4096;
        void *volatile impossible = malloc(huge);
        CHECK(impossible == NULL, "malloc(%zu) is NULL", (size_t)huge);
        free(impossible);
    }
    for (int site = 0; site < SITES; site++)
        fill_site(site, shares[site], sizes[site], &random, &kept[site], &kept_count[site],
                  &truth[site]);
    int written = xmm_profile_dump(path);
    CHECK(written == 0, "xmm_profile_dump(%s): %s", path, written ? strerror(errno) : "written");
    struct dump dump = read_dump(path, site_names, SITES);
    CHECK(dump.ok, "the dump has a header, stack lines and MAPPED_LIBRARIES");
    CHECK(dump.maps_name_libxmm, "MAPPED_LIBRARIES lists libxmm.so");
    CHECK(dump.stacks_in_xmm == 0, "no stack starts inside libxmm.so (%d do)", dump.stacks_in_xmm);
    CHECK(dump.sum_live_bytes == dump.live_bytes, "the header's live bytes (%llu) are the lines' sum (%llu)",
          dump.live_bytes, dump.sum_live_bytes);
    double all_truth = 0;
    for (int site = 0; site < SITES; site++)
        all_truth += truth[site].live_bytes;
    for (int site = 0; site < SITES; site++) {
        double error = relative_error(dump.live_bytes_of[site], truth[site].live_bytes);
        CHECK(error > -0.10 && error < 0.10,
              "%s: %.1f%% of live bytes; estimated %.0f, true %.0f (%+.1f%%)", site_names[site],
              100 * truth[site].live_bytes / all_truth, dump.live_bytes_of[site],
              truth[site].live_bytes, 100 * error);
        /* Counts of small blocks vary more than bytes (each sample of s
         * bytes stands for about T/s blocks): 15%, over 4 standard
         * deviations at site_small. */
        error = relative_error(dump.live_objects_of[site], truth[site].live_objects);
        CHECK(error > -0.15 && error < 0.15, "%s: estimated %.0f live blocks, true %.0f (%+.1f%%)",
              site_names[site], dump.live_objects_of[site], truth[site].live_objects, 100 * error);
        error = relative_error(dump.total_bytes_of[site], truth[site].total_bytes);
        CHECK(error > -0.10 && error < 0.10,
              "%s: estimated %.0f bytes allocated since the start, true %.0f (%+.1f%%)",
              site_names[site], dump.total_bytes_of[site], truth[site].total_bytes, 100 * error);
    }
    for (int site = 0; site < SITES; site++) {
        for (size_t i = 0; i < kept_count[site]; i++)
            free(kept[site][i]);
        free(kept[site]);
    }
    CHECK(xmm_profile_dump(path) == 0, "dump after every block is freed");
    dump = read_dump(path, site_names, SITES);
    for (int site = 0; site < SITES; site++)
        CHECK(dump.live_bytes_of[site] == 0 && dump.total_bytes_of[site] > 0,
              "%s: no live bytes once freed (%.0f), its allocations still counted (%.0f)",
              site_names[site], dump.live_bytes_of[site], dump.total_bytes_of[site]);
    return check_summary("test_profile estimate");
}

/* ---- blocks: sampled blocks through the API ------------------------------------ */

static int all_bytes(const unsigned char *block, size_t size, unsigned char value)
{
    for (size_t i = 0; i < size; i++)
        if (block[i] != value)
            return 0;
    return 1;
}

/* Exported and not inlined: the dump names it as the allocating function. */
__attribute__((noinline)) int run_blocks(const char *path);
__attribute__((noinline)) int run_blocks(const char *path)
{
    free(malloc(1)); /* the thread's first request starts its countdown */
    char *block = site_small(100);
    size_t usable = malloc_usable_size(block);
    CHECK(usable == ALLOCATOR_PAGE, "a sampled 100-byte block is one allocator page (usable %zu)",
          usable);
    memset(block, 0xab, usable);
    CHECK(((uintptr_t)block & (ALLOCATOR_PAGE - 1)) == 0, "it starts on a page");

    /* realloc in place while it fits, then moved (contents kept) */
    char *same = realloc(block, 3000);
    CHECK(same == block, "realloc to 3000 bytes stays in the sampled block");
    char *moved = realloc(same, 300000);
    CHECK(moved && all_bytes((unsigned char *)moved, 3000, 0xab),
          "realloc to a large size moves it with its contents");
    char *shrunk = realloc(moved, 50);
    CHECK(shrunk && all_bytes((unsigned char *)shrunk, 50, 0xab),
          "realloc back to 50 bytes keeps the contents");
    free(shrunk);

    /* calloc on pages that were written before */
    for (int i = 0; i < 8; i++) {
        char *dirty = malloc(5000);
        memset(dirty, 0xcd, 5000);
        free(dirty);
        unsigned char *zeroed = calloc(1, 5000);
        CHECKQ(zeroed && all_bytes(zeroed, 5000, 0), "calloc of a sampled block is zeroed");
        free(zeroed);
    }

    /* calloc from 128 KiB takes pages (alloc.c, ZEROED_AS_PAGES_MIN): a
     * large allocation, sampled or not (it was counted at neither end
     * when sampled, and so the count depended on the sampling), and the
     * in-use bytes come back */
    struct xmm_stats before_calloc = {.version = XMM_STATS_VERSION};
    struct xmm_stats after_calloc = {.version = XMM_STATS_VERSION};
    xmm_stats_get(&before_calloc);
    for (int i = 0; i < 8; i++) {
        unsigned char *table = calloc(1, (size_t)(128 + 16 * i) << 10);
        CHECKQ(table && all_bytes(table, (size_t)(128 + 16 * i) << 10, 0),
               "a sampled calloc of %d KiB is zeroed", 128 + 16 * i);
        sink = table;
        free(table);
    }
    xmm_stats_get(&after_calloc);
    CHECK(after_calloc.large_allocations == before_calloc.large_allocations + 8 &&
              after_calloc.bytes_in_use == before_calloc.bytes_in_use &&
              after_calloc.allocations - after_calloc.frees ==
                  before_calloc.allocations - before_calloc.frees,
          "8 sampled callocs of 128-240 KiB, freed: large allocations %llu -> %llu (8 more), in use "
          "%llu -> %llu, allocations - frees %lld -> %lld",
          (unsigned long long)before_calloc.large_allocations,
          (unsigned long long)after_calloc.large_allocations,
          (unsigned long long)before_calloc.bytes_in_use,
          (unsigned long long)after_calloc.bytes_in_use,
          (long long)(before_calloc.allocations - before_calloc.frees),
          (long long)(after_calloc.allocations - after_calloc.frees));

    /* alignment, sized frees */
    void *aligned = NULL;
    CHECK(posix_memalign(&aligned, 4096, 100) == 0 && ((uintptr_t)aligned & 4095) == 0,
          "posix_memalign(4096) of a sampled block");
    free_sized(aligned, 100);
    void *aligned2 = aligned_alloc(8192, 200);
    CHECK(aligned2 && ((uintptr_t)aligned2 & 8191) == 0, "aligned_alloc(8192)");
    free(aligned2);
    void *sized = malloc(3000);
    free_sized(sized, 3000);
    void *on_node = xmm_malloc_on_node(100, 0);
    CHECK(on_node && xmm_node_of(on_node) == 0 && xmm_usable_size(on_node) == ALLOCATOR_PAGE,
          "xmm_malloc_on_node(100, 0) sampled, on node 0");
    xmm_free(on_node);
    char *large = malloc(1 << 20);
    sink = large; /* (else the compiler may drop the pair) */
    free(large);
    char *direct = malloc((size_t)40 << 20);
    CHECK(direct != NULL, "a direct block (40 MiB) sampled");
    direct[0] = 1;
    sink = direct; /* (clang drops a block only written to, and its free) */

    /* Misuse is still reported (XMM_INVALID_FREE=warn) */
    struct xmm_stats before = {.version = XMM_STATS_VERSION}, after = {.version = XMM_STATS_VERSION};
    xmm_stats_get(&before);
    /* (nothing allocates between the two frees: the freed span could be
     * handed out again) */
    capture_stderr_begin();
    char *twice = malloc(64);
    sink = twice;
    free(twice);
    free(twice);
    const char *report = capture_stderr_end();
    CHECK(strstr(report, "double free") != NULL, "a second free of a sampled block: %s", report);
    capture_stderr_begin();
    char *interior = malloc(64);
    sink = interior;
    free(interior + 16);
    report = capture_stderr_end();
    CHECK(strstr(report, "invalid pointer") != NULL, "an interior pointer of a sampled block: %s",
          report);
    free(interior);
    xmm_stats_get(&after);
    CHECK(after.invalid_frees == before.invalid_frees + 2, "both counted as invalid frees");

    /* The live direct block is in the profile, and leaves it when freed. */
    const char *names[] = {"run_blocks"};
    CHECK(xmm_profile_dump(path) == 0, "xmm_profile_dump");
    struct dump dump = read_dump(path, names, 1);
    CHECK(dump.ok && dump.live_bytes_of[0] >= (40 << 20),
          "the dump counts the live 40 MiB block (%.0f live bytes from run_blocks)",
          dump.live_bytes_of[0]);
    free(direct);
    CHECK(xmm_profile_dump(path) == 0, "xmm_profile_dump");
    dump = read_dump(path, names, 1);
    CHECK(dump.ok && dump.live_bytes_of[0] == 0,
          "nothing of run_blocks live once all is freed (%.0f)", dump.live_bytes_of[0]);
    CHECK(dump.total_bytes_of[0] >= (41 << 20), "its allocations counted (%.0f bytes)",
          dump.total_bytes_of[0]);
    return check_summary("test_profile blocks");
}

/* ---- threads ----------------------------------------------------------------- */

#define THREADS 4
#define RING 4096
#define ROUNDS 200000

static void *volatile rings[THREADS][RING];
static int stop_dumping;

/* Thread t allocates into ring t and frees what thread t-1 put in its own
 * ring (so most frees are of another thread's blocks). */
static void *churn(void *argument)
{
    int self = (int)(intptr_t)argument;
    unsigned long long random = 0x1234567ull * (unsigned long long)(self + 1);
    for (int round = 0; round < ROUNDS; round++) {
        size_t slot = next_random(&random) % RING;
        void *fresh = thread_site(16 + next_random(&random) % 2000);
        void *old = __atomic_exchange_n(&rings[self][slot], fresh, __ATOMIC_ACQ_REL);
        free(old);
        int other = (self + THREADS - 1) % THREADS;
        void *theirs = __atomic_exchange_n(&rings[other][next_random(&random) % RING], NULL,
                                           __ATOMIC_ACQ_REL);
        free(theirs);
    }
    return NULL;
}

static void *dumping(void *path)
{
    int dumps = 0;
    while (!__atomic_load_n(&stop_dumping, __ATOMIC_ACQUIRE)) {
        CHECKQ(xmm_profile_dump(path) == 0, "a dump while threads allocate");
        dumps++;
    }
    return (void *)(intptr_t)dumps;
}

static int run_threads(const char *path)
{
    pthread_t threads[THREADS], dumper;
    pthread_create(&dumper, NULL, dumping, (void *)path);
    for (int i = 0; i < THREADS; i++)
        pthread_create(&threads[i], NULL, churn, (void *)(intptr_t)i);
    for (int i = 0; i < THREADS; i++)
        pthread_join(threads[i], NULL);
    __atomic_store_n(&stop_dumping, 1, __ATOMIC_RELEASE);
    void *dumps;
    pthread_join(dumper, &dumps);
    NOTE("%d dumps while %d threads allocated and freed", (int)(intptr_t)dumps, THREADS);
    for (int t = 0; t < THREADS; t++)
        for (int i = 0; i < RING; i++)
            free(rings[t][i]);
    const char *names[] = {"thread_site"};
    CHECK(xmm_profile_dump(path) == 0, "the last dump");
    struct dump dump = read_dump(path, names, 1);
    CHECK(dump.ok && dump.live_bytes_of[0] == 0 && dump.total_bytes_of[0] > 0,
          "every block of the threads freed: none live (%.0f), all counted (%.0f)",
          dump.live_bytes_of[0], dump.total_bytes_of[0]);
    double truth = (double)THREADS * ROUNDS * (16 + 1999 / 2.0);
    double error = relative_error(dump.total_bytes_of[0], truth);
    CHECK(error > -0.10 && error < 0.10, "bytes allocated by the threads: %.0f estimated, about %.0f",
          dump.total_bytes_of[0], truth);
    CHECK(dump.live_bytes < ((unsigned long long)1 << 40), "no counter went below zero (%llu live)",
          dump.live_bytes);
    return check_summary("test_profile threads");
}

/* ---- fork, off ----------------------------------------------------------------- */

static int run_fork(const char *path)
{
    void *before = site_small(100);
    pid_t child = fork();
    if (child == 0) {
        for (int i = 0; i < 100000; i++)
            free(site_small(200));
        void *kept[1000];
        for (int i = 0; i < 1000; i++)
            kept[i] = site_calloc(1000);
        struct dump dump;
        int written = xmm_profile_dump(path) == 0;
        dump = read_dump(path, site_names, SITES);
        double error = relative_error(dump.live_bytes_of[1], 1000 * 1000);
        for (int i = 0; i < 1000; i++)
            free(kept[i]);
        _exit(written && dump.ok && error > -0.5 && error < 0.5 ? 0 : 1);
    }
    int status = -1;
    waitpid(child, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "a child of fork samples and dumps (status %d)", status);
    free(before);
    return check_summary("test_profile fork");
}

static int run_off(const char *path)
{
    char *block = malloc(100);
    CHECK(malloc_usable_size(block) == 112, "profiling off: a 100-byte block is of its class");
    free(block);
    errno = 0;
    CHECK(xmm_profile_dump(path) == -1 && errno == ENOTSUP, "xmm_profile_dump: ENOTSUP");
    struct stat info;
    CHECK(stat(path, &info) != 0, "and no file written");
    return check_summary("test_profile off");
}

/* ---- for the scripts ------------------------------------------------------------- */

/* 10%, 30% and 60% of LIVE_TARGET / 2, kept to the end; the truth on
 * stdout, one "site BYTES" line each. */
static int run_exit(void)
{
    static const double shares[SITES] = {0.10, 0.30, 0.60};
    size_t (*sizes[SITES])(unsigned long long *) = {small_size, calloc_size, mixed_size};
    unsigned long long random = 42;
    for (int site = 0; site < SITES; site++) {
        size_t goal = (size_t)(shares[site] * (double)(LIVE_TARGET / 2)), allocated = 0;
        while (allocated < goal) {
            size_t size = sizes[site](&random);
            void *block = site == 0 ? site_small(size) : site == 1 ? site_calloc(size)
                                                                    : site_mixed(size);
            memset(block, 1, size < 64 ? size : 64);
            allocated += size;
        }
        printf("%s %zu\n", site_names[site], allocated);
    }
    return 0;
}

static int run_leak(size_t bytes, size_t size)
{
    for (size_t leaked = 0; leaked < bytes; leaked += size)
        leaky_site(size);
    for (int i = 0; i < 100000; i++)
        free(site_small(1000));
    return 0;
}

static int run_signal(const char *path)
{
    for (int i = 0; i < 1000; i++)
        site_mixed(10000);
    raise(SIGUSR1);
    for (int waited = 0; waited < 1000; waited++) { /* 10 s */
        struct dump dump = read_dump(path, site_names, SITES);
        if (dump.ok && dump.live_bytes_of[2] > 0) {
            printf("dump written on the signal after %d ms\n", waited * 10);
            return 0;
        }
        usleep(10000);
    }
    printf("no dump in %s 10 s after the signal\n", path);
    return 1;
}

/* The same in a fork child (a pre-forked server's worker): the dumper
 * thread did not come along with fork, and before the child's signal did
 * nothing. */
static int run_signal_in_child(const char *path)
{
    free(malloc(1000));
    pid_t child = fork();
    if (child == 0)
        _exit(run_signal(path));
    int status = 0;
    waitpid(child, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

/* ---- all modes ----------------------------------------------------------------- */

static int run_mode(const char *self, const char *mode, const char *path, const char *profile,
                    const char *invalid_free)
{
    pid_t child = fork();
    if (child == 0) {
        unsetenv("XMM_PROFILE");
        unsetenv("XMM_LEAKS");
        unsetenv("XMM_PROFILE_SIGNAL");
        unsetenv("XMM_PROFILE_FILE");
        if (profile) { /* (the dump at exit replaces the mode's own) */
            setenv("XMM_PROFILE", profile, 1);
            setenv("XMM_PROFILE_FILE", path, 1);
        }
        if (invalid_free)
            setenv("XMM_INVALID_FREE", invalid_free, 1);
        execl(self, self, mode, path, (char *)NULL);
        _exit(127);
    }
    int status = -1;
    waitpid(child, &status, 0);
    unlink(path);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 3 && !strcmp(argv[1], "raise-exit")) {
        /* The signal, then exit at once: the report or dump it asked for
         * must still be written whole before the process ends. */
        static void *volatile kept;
        kept = malloc(8 << 20);
        raise(atoi(argv[2]));
        exit(kept ? 0 : 1);
    }
    if (argc >= 3 && !strcmp(argv[1], "estimate"))
        return run_estimate(argv[2]);
    if (argc >= 3 && !strcmp(argv[1], "blocks"))
        return run_blocks(argv[2]);
    if (argc >= 3 && !strcmp(argv[1], "threads"))
        return run_threads(argv[2]);
    if (argc >= 3 && !strcmp(argv[1], "fork"))
        return run_fork(argv[2]);
    if (argc >= 3 && !strcmp(argv[1], "off"))
        return run_off(argv[2]);
    if (argc >= 2 && !strcmp(argv[1], "exit"))
        return run_exit();
    if (argc >= 4 && !strcmp(argv[1], "leak"))
        return run_leak(strtoull(argv[2], NULL, 0), strtoull(argv[3], NULL, 0));
    if (argc >= 4 && !strcmp(argv[1], "signal") && !strcmp(argv[3], "fork"))
        return run_signal_in_child(argv[2]);
    if (argc >= 3 && !strcmp(argv[1], "signal"))
        return run_signal(argv[2]);
    if (argc != 1) {
        fprintf(stderr, "usage: see the comment at the top of tests/global/test_profile.c\n");
        return 2;
    }
    char directory[] = "/tmp/xmm-test-profile-XXXXXX";
    if (!mkdtemp(directory)) {
        perror("mkdtemp");
        return 1;
    }
    char path[64];
    snprintf(path, sizeof path, "%s/profile.heap", directory);
    static const struct {
        const char *mode, *profile, *invalid_free;
    } modes[] = {
        {"estimate", "4k", NULL},
        {"blocks", "2", "warn"},
        {"threads", "8k", NULL},
        {"fork", "4k", NULL},
        {"off", NULL, NULL},
    };
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        int status = run_mode("/proc/self/exe", modes[i].mode, path, modes[i].profile,
                              modes[i].invalid_free);
        CHECK(status == 0, "test_profile %s (XMM_PROFILE=%s): exit status %d", modes[i].mode,
              modes[i].profile ? modes[i].profile : "unset", status);
    }
    rmdir(directory);
    return check_summary("test_profile");
}
