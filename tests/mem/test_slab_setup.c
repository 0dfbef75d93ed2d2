/*
 * test_slab_setup - a per-CPU slab is set up on its first use: until a
 * thread's slow path runs on it, XMM writes none of its pages
 * (src/mem/cpu_cache.c, slab_in_use; the section is
 * xmm_rseq_set_up_slab). A possible CPU no thread of the process runs on
 * then costs address space only (before: the page of its headers, 512 KiB
 * of memory on a 128-CPU machine for a program that runs on one).
 *
 *   one-cpu   a process pinned to one CPU before it starts mallocs and
 *             frees blocks of 60 sizes, trims (a release: a pass over
 *             every slab) and reads the statistics (another pass):
 *             exactly one slab has pages in memory, its own. Where the
 *             machine has one possible CPU there is nothing to tell
 *             apart: a note
 *   start     20 fresh processes, each starting 4 threads (more than this
 *             machine's cores) that cycle tagged blocks of six sizes at
 *             once while the main thread trims every millisecond, so
 *             that slabs are set up while releases lock and drain them:
 *             no block handed out twice or changed, and every slab in
 *             memory afterwards has its node word and every header set
 *             up (or still 0, after a set-up cut short), none torn
 *
 * Skipped (77) without per-CPU caches.
 */
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "stats_snapshot.h"
#include "slab_index.h"
#include "slab_map.h"
#include "trim_stress.h"
#include "xmm.h"

/* Slab `index`'s node word is a node number (below 64; which node is
 * test_numa's matter) and each header 0, locked, or begin <= current <=
 * end in the slots. */
static bool slab_consistent(int index)
{
    const uint64_t *words = slab_at(index);
    if (words[0] >= 64)
        return false;
    for (unsigned bin = 1; bin < XMM_CPU_BIN_COUNT; bin++) {
        bool open;
        if (!header_plausible(words[bin], &open))
            return false;
    }
    return true;
}

/* Slabs with a page in memory; *which is the last of them. */
static int slabs_resident(int *which)
{
    int count = 0;
    for (int index = 0; index < slab_total; index++)
        if (slab_resident(index) > 0) {
            count++;
            *which = index;
        }
    return count;
}

static void one_cpu_case(void)
{
    for (size_t size = 8; size <= 32 * 1024; size += size / 8 > 8 ? (size / 8) & ~(size_t)7 : 8)
        for (int round = 0; round < 3; round++) {
            void *block = malloc(size);
            CHECKQ(block != NULL, "malloc(%zu)", size);
            free(block);
        }
    malloc_trim(0);
    (void)snapshot();
    find_slabs();
    CHECK(slabs != NULL, "the slabs are found (%d of them)", slab_total);
    if (!slabs)
        return;
    int own = slab_index(), which = -1;
    int resident = slabs_resident(&which);
    if (slab_total < 2) {
        NOTE("one possible CPU: one slab, nothing to tell apart");
        return;
    }
    CHECK(resident == 1 && which == own && slab_consistent(own),
          "one slab of %d has pages in memory (%d; the last slab %d, this thread's %d)",
          slab_total, resident, which, own);
}

#define START_THREADS 4

static unsigned long start_bad;

static void *start_worker(void *tag)
{
    tagged_size_rounds(60, 40, 7, (uintptr_t)tag, &start_bad);
    return NULL;
}

static void start_case(void)
{
    unsigned trims = trim_stress_run(START_THREADS, start_worker);
    CHECK(start_bad == 0, "%u trims while the threads started: %lu blocks handed out twice or "
          "changed", trims, start_bad);
    find_slabs();
    CHECK(slabs != NULL, "the slabs are found (%d of them)", slab_total);
    int which = -1, resident = slabs ? slabs_resident(&which) : 0, consistent = 0;
    for (int index = 0; slabs && index < slab_total; index++)
        consistent += slab_resident(index) > 0 && slab_consistent(index);
    CHECK(resident >= 1 && consistent == resident,
          "every slab in memory is set up, none torn (%d of %d in memory, %d consistent)",
          resident, slab_total, consistent);
}

static int run_pinned(const char *mode, char *const environment[])
{
    cpu_set_t saved, one;
    if (sched_getaffinity(0, sizeof saved, &saved) != 0)
        return 127;
    int cpu = sched_getcpu();
    CPU_ZERO(&one);
    CPU_SET(cpu < 0 ? 0 : cpu, &one);
    if (sched_setaffinity(0, sizeof one, &one) != 0)
        return 127;
    int status = check_run_self(mode, environment);
    sched_setaffinity(0, sizeof saved, &saved);
    return status;
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        slab_index_init();
        if (!strcmp(argv[1], "one-cpu"))
            one_cpu_case();
        else if (!strcmp(argv[1], "start"))
            start_case();
        return check_summary(argv[1]);
    }
    if (strcmp(snapshot().front_end, "per-cpu") != 0) {
        NOTE("no per-CPU caches here (%s): skipped", snapshot().front_end);
        return 77;
    }
    char *common[] = {"XMM_DECAY_MS=600000", "XMM_BACKGROUND=0", NULL};
    CHECK(run_pinned("one-cpu", common) == 0, "one-cpu case");
    int failed = 0;
    for (int process = 0; process < 20; process++)
        failed += check_run_self("start", common) != 0;
    CHECK(failed == 0, "start case: %d of 20 processes failed", failed);
    return check_summary("slab_setup");
}
