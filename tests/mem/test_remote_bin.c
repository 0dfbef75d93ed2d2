/*
 * test_remote_bin - per-CPU caches and passive false sharing (remote bins,
 * src/mem/cpu_cache.h).
 *
 * An object smaller than a cache line, taken from the central layer by one
 * CPU's cache and freed on another CPU, must not be the next object that
 * CPU's malloc hands out: its line is likely written by the first CPU's
 * threads (Hoard's cache-scratch). Two threads pinned to two CPUs:
 *
 *   - the owner thread allocates 8-byte objects; the other frees one and
 *     allocates: it must get another object;
 *   - objects of a class of a cache line or more keep the plain LIFO reuse;
 *   - an owner's own free is reused at once (the hit path's locality);
 *   - thousands of remote frees fill and drain the remote bin, and no
 *     object is lost or handed out twice afterwards.
 *
 * Skipped (77) with fewer than two CPUs or without per-CPU caches.
 */
#include <pthread.h>
#include <sys/mman.h>
#include <sys/rseq.h>
#include <unistd.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "check.h"
#include "slab_index.h"
#include "xmm.h"

#define MANY 5000

static int cpus[2];
static void *handed[MANY];

static void pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    CHECKQ(sched_setaffinity(0, sizeof set, &set) == 0, "pinned to CPU %d", cpu);
}

/* An 8-byte object on a page the calling thread's CPU cache owns: after
 * more than a page of 8-byte objects, the last comes from a span made for
 * this thread's refill (a FRESH page it claimed). Taken while the other
 * thread runs: under mm_cid a new thread can take over the id (and so the
 * pages) another thread had before. */
static void *owned_object(void)
{
    void *object = NULL;
    for (int i = 0; i < 3000; i++)
        object = malloc(8);
    uint8_t owner = xmm_page_owner_load(object);
    CHECK(owner != XMM_PAGE_OWNER_FRESH && owner != XMM_PAGE_OWNER_SHARED,
          "an 8-byte object on a page one cache owns (%u)", owner);
    return object;
}

enum step { STARTING, IDLE, FREE_SMALL, FREE_LINE, FREE_MANY, DONE };
static enum step step = STARTING;
static void *given;
static void *received;

static void wait_for(enum step wanted)
{
    while (__atomic_load_n(&step, __ATOMIC_ACQUIRE) != wanted)
        sched_yield();
}

static void go(enum step next)
{
    __atomic_store_n(&step, next, __ATOMIC_RELEASE);
}

/* The other CPU's thread: frees what it is given, then allocates the same
 * size, and hands the result back. */
static int other_index;

static void *other_cpu(void *unused)
{
    (void)unused;
    pin(cpus[1]);
    go(IDLE);
    wait_for(FREE_SMALL);
    other_index = slab_index();
    free(given);
    received = malloc(8);
    go(IDLE);
    wait_for(FREE_LINE);
    free(given);
    received = malloc(64);
    go(IDLE);
    wait_for(FREE_MANY);
    for (int i = 0; i < MANY; i++)
        free(handed[i]);
    for (int i = 0; i < MANY; i++)
        handed[i] = malloc(8);
    go(DONE);
    return NULL;
}

static int compare_pointers(const void *a, const void *b)
{
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0 || CPU_COUNT(&allowed) < 2) {
        NOTE("fewer than two CPUs: skipped");
        return 77;
    }
    if (argc > 1 && !strcmp(argv[1], "front-end")) {
        /* A large budget still plans every bin (the slots are laid out
         * as for 4 MiB: cpu_cache.c, plan_capacities). */
        struct xmm_stats stats = {.version = XMM_STATS_VERSION};
        xmm_stats_get(&stats);
        return strcmp(stats.front_end, "per-cpu") == 0 ? 0 : 1;
    }
    struct xmm_stats stats = {.version = XMM_STATS_VERSION};
    xmm_stats_get(&stats);
    if (strcmp(stats.front_end, "per-cpu") != 0) {
        NOTE("front end %s: no remote bins, skipped", stats.front_end);
        return 77;
    }
    static char budget_96m[] = "XMM_CPU_CACHE_SIZE=96m", budget_1g[] = "XMM_CPU_CACHE_SIZE=1g";
    char *budgets[] = {budget_96m, budget_1g};
    for (int i = 0; i < 2; i++) {
        char *const env[] = {budgets[i], NULL};
        CHECK(check_run_self("front-end", env) == 0, "%s keeps the per-CPU caches", budgets[i]);
    }
    slab_index_init();
    /* Two CPUs of one node: a free on another node's CPU goes home, not to
     * a bin of this CPU. */
    int found = 0, first_node = -1;
    for (int cpu = 0; cpu < CPU_SETSIZE && found < 2; cpu++) {
        if (!CPU_ISSET(cpu, &allowed))
            continue;
        pin(cpu);
        if (found == 0 || xmm_current_node() == first_node) {
            first_node = xmm_current_node();
            cpus[found++] = cpu;
        }
    }
    if (found < 2) {
        NOTE("no two CPUs of one node: skipped");
        return 77;
    }
    pin(cpus[0]);
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, other_cpu, NULL) == 0, "second thread");

    wait_for(IDLE);
    void *object = owned_object();
    given = object;
    go(FREE_SMALL);
    wait_for(IDLE);
    uint8_t owner = xmm_page_owner_load(object);
    if (other_index >= 0 && owner == (uint8_t)other_index)
        NOTE("the freeing thread took over the owner's slab index (mm_cid): not checked");
    else
        CHECK(received != NULL && received != object,
              "an 8-byte object freed on another CPU is not its next malloc (%p, got %p)",
              object, received);

    void *line = malloc(64);
    given = line;
    go(FREE_LINE);
    wait_for(IDLE);
    CHECK(received == line, "a 64-byte object freed on another CPU is its next malloc (LIFO)");

    void *mine = owned_object();
    free(mine);
    /* Through a volatile: clang folds a fresh malloc compared with an
     * existing pointer to false, without calling it. */
    void *volatile again = malloc(8);
    CHECK(again == mine, "an object freed on its owner's CPU is reused at once");

    for (int i = 0; i < MANY; i++)
        handed[i] = malloc(8);
    go(FREE_MANY);
    wait_for(DONE);
    pthread_join(thread, NULL);
    static void *all[2 * MANY];
    for (int i = 0; i < MANY; i++) {
        all[i] = handed[i];
        all[MANY + i] = malloc(8);
    }
    qsort(all, 2 * MANY, sizeof all[0], compare_pointers);
    int twice = 0;
    for (int i = 1; i < 2 * MANY; i++)
        twice += all[i] == all[i - 1];
    CHECK(twice == 0 && all[0] != NULL,
          "after %d remote frees, %d mallocs on both CPUs give distinct objects (%d twice)", MANY,
          2 * MANY, twice);
    for (int i = 0; i < 2 * MANY; i++)
        free(all[i]);
    xmm_release_memory();
    xmm_stats_get(&stats);
    CHECK(stats.bytes_cached < 4096, "drained caches, remote bins included (%llu bytes left)",
          (unsigned long long)stats.bytes_cached);
    return check_summary("remote_bin");
}
