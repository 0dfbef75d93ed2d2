/*
 * heap_misuse.c - double frees, invalid frees, frees of the wrong size and
 * overflows into free objects: what XMM must report, and what it must never
 * do because of them (hand a block out twice, return an address an
 * attacker chose). The tests of issue 15.
 *
 * Each case runs in a child (this program re-executed with `--case NAME`,
 * or the C++ helper api_heap_misuse_cxx for the C++ cases; the child side
 * is tests/override/misuse_child.h), once with the default settings and once
 * under XMM_INVALID_FREE=warn, and for the cases marked so both on the
 * per-CPU caches (the default) and on per-thread caches (XMM_RSEQ=0). The
 * child pins itself to the CPU it starts on, so that every free of a
 * single-threaded case meets the same cache. One line per run:
 * "PASS|FAIL|SKIP  [item N] NAME (per-cpu|per-thread, abort|warn): why".
 *
 * What each expectation means (the promises of issue 15, README "Errors"):
 *
 *   DETECTED   default: the child dies by SIGABRT and its stderr is one
 *              line naming the address the child printed ("PTR 0x..."), as
 *              0x<hex>. The report may come at the misuse or later (a check
 *              on the refill or drain path), but before any block is handed
 *              out twice: a child whose heap checks (below) found a block
 *              handed out twice fails even if it aborts afterwards.
 *              XMM_INVALID_FREE=warn: the same one-line report (so exactly
 *              one), the child goes on and exits 0, xmm_stats invalid_frees
 *              counts it, and
 *              the heap is consistent: enough blocks of the misused size
 *              to take every free object of its class are distinct and
 *              intact ("DISTINCT ok"), then a million allocations of random
 *              small sizes, contents checked before each free, never hand
 *              out an address that is live ("CHURN ok").
 *   CORRUPTION an overflow into a free object's free-list link: it is
 *              reported as heap corruption (one line on stderr starting
 *              "xmm: " and containing "corrupt") and the child dies by
 *              SIGABRT; the forged address is never returned by malloc. A
 *              child that survives passes only if no allocation returned
 *              the forged address and the heap checks hold (the corrupted
 *              link was never followed as a pointer).
 *   ACCEPTED   a correct program (the controls: sized frees with the right
 *              size, in every form): exits 0 with an empty stderr.
 *   UNDETECTED documented as not detected (use after free, overflows that
 *              reach no free-list link, a sized free whose size is wrong
 *              but within the block's size): the child must not crash and
 *              must not hand a block out twice (exit 0, "DISTINCT ok"); a
 *              report and SIGABRT is accepted too (under
 *              XMM_INVALID_FREE=warn only a heap-corruption report, which
 *              stops the process in every mode).
 *
 * Usage: api_heap_misuse [-v] [--list] [PATTERN...]   (fnmatch patterns on
 * case names; -v prints each child's output).
 *
 * The static flavour (api_heap_misuse_static, built with -DMISUSE_QUICK,
 * linked with libxmm.a, its C++ cases in api_heap_misuse_cxx_static) runs
 * each case once: per-CPU caches, default mode.
 */
#include <ctype.h>
#include <fnmatch.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/rseq.h>

#include "xmm.h"
#include "testlib.h"
#include "misuse_child.h"

static void (*volatile misuse_free_sized)(void *, size_t) = free_sized;
static void (*volatile misuse_free_aligned_sized)(void *, size_t, size_t) = free_aligned_sized;

enum expect { DETECTED, CORRUPTION, ACCEPTED, UNDETECTED };
static const char *const expect_names[] = {"detected", "corruption", "accepted", "undetected"};

/* Case flags. */
#define BOTH_FRONTS 1u /* also with per-thread caches (XMM_RSEQ=0) */
#define CXX 2u         /* run by the C++ helper */
#define NO_PIN 4u      /* the case places its threads itself */

struct misuse_case {
    const char *name;
    int item;           /* the failing input of issue 15 it pins (1-7); 0: a
                           port of a hardened_malloc test or a control */
    enum expect expect;
    unsigned flags;
    const char *env;    /* one more "NAME=value" for the child, or NULL */
    const char *what;
    size_t (*run)(void); /* the misuse; returns the size for the checks */
};

/* ======================================================================= */
/* The cases (child side)                                                   */
/* ======================================================================= */

#define BLOCKS_MAX 20000
static void *blocks[BLOCKS_MAX];

static void scribble(void *ptr, size_t size)
{
    memset(ptr, 0x5a, size < 4096 ? size : 4096);
}

/* ---- 1: a double free of a block that is not among the last freed ---- */

enum between { NOTHING, RELEASE_CACHES, TRIM };

/* `count` blocks of `size`, all freed (but every keep_every-th, kept live),
 * then the first one freed is freed again. */
static size_t double_free_first(size_t count, size_t size, enum between between,
                                unsigned keep_every)
{
    void *first = NULL;
    for (size_t i = 0; i < count; i++) {
        blocks[i] = misuse_malloc(size);
        scribble(blocks[i], size);
    }
    for (size_t i = 0; i < count; i++) {
        if (keep_every && i % keep_every == 0) {
            misuse_hold(blocks[i], size);
            continue;
        }
        if (!first)
            first = blocks[i];
        free(blocks[i]);
    }
    if (between == RELEASE_CACHES)
        xmm_release_cpu_caches();
    else if (between == TRIM)
        malloc_trim(0);
    misuse_announce(first);
    misuse_free(first);
    return size;
}

static size_t df_first_20x20(void) { return double_free_first(20, 20, NOTHING, 0); }
static size_t df_first_200x48(void) { return double_free_first(200, 48, NOTHING, 0); }
static size_t df_first_5000x16(void) { return double_free_first(5000, 16, NOTHING, 0); }
static size_t df_first_4x100000(void) { return double_free_first(4, 100000, NOTHING, 0); }
static size_t df_first_in_batch(void) { return double_free_first(200, 64, RELEASE_CACHES, 0); }
static size_t df_first_after_trim(void) { return double_free_first(10000, 20, TRIM, 0); }
static size_t df_first_on_span_list(void) { return double_free_first(10000, 20, TRIM, 4); }

/* Blocks of 256 KiB, two per span (handed out one per refill in the order
 * they are cut: blocks 2k and 2k + 1 share a span), the first (`which` 0)
 * or the second (1) of each pair freed, malloc_trim(0), then the first
 * freed one freed again. The trim purged inside the first ones, keeping
 * the page of their first word (the free tag); it cut the second ones back
 * to their spans' uncut tails and purged them whole, tag included. */
static size_t double_free_after_inner_purge(unsigned which)
{
    enum { PAIRS = 16, SIZE = 256 << 10 };
    void *first = NULL;
    for (size_t i = 0; i < 2 * PAIRS; i++) {
        blocks[i] = misuse_malloc(SIZE);
        scribble(blocks[i], SIZE);
    }
    for (size_t i = 0; i < 2 * PAIRS; i++) {
        if (i % 2 != which) {
            misuse_hold(blocks[i], SIZE);
            continue;
        }
        if (!first)
            first = blocks[i];
        free(blocks[i]);
    }
    malloc_trim(0);
    misuse_announce(first);
    misuse_free(first);
    return SIZE;
}

static size_t df_purged_inside_after_trim(void) { return double_free_after_inner_purge(0); }
static size_t df_cut_back_after_trim(void) { return double_free_after_inner_purge(1); }

static int compare_addresses(const void *a, const void *b);

/* Blocks of `size` (4 MiB of them), in address order, runs of freed ones
 * between live ones (every keep_every-th), malloc_trim(0), then a freed
 * block B freed again. B lies right before a live block L of its span (L
 * is not on an allocator page boundary, where spans start), and B's first
 * word's page lies wholly inside freed blocks: the trim purged B whole,
 * free tag included, and its span records it (central.c); the record
 * must report the double free. `neighbour_first`: L is freed first, a
 * valid free whose page word the trim may have cleared with B's (the slow
 * path must free it, not report it). */
static size_t double_free_purged_whole(size_t size, int neighbour_first)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    /* A period that is no span's object count: the live blocks fall on
     * every place in a span. */
    size_t keep_every = size < 16384 / 7 ? 16384 / size + 1 : 7;
    size_t count = (4 * MIB) / size;
    for (size_t i = 0; i < count; i++) {
        blocks[i] = misuse_malloc(size);
        scribble(blocks[i], size);
    }
    qsort(blocks, count, sizeof blocks[0], compare_addresses);
    /* Blocks of a multiple of 8 KiB all start on page boundaries: there L
     * may be its span's first block and B its span's last, which the trim
     * cuts back instead (reported as well, as a block never handed out). */
    size_t tested = 0;
    for (size_t i = keep_every - 1; i < count && !tested; i += keep_every) {
        uintptr_t live = (uintptr_t)blocks[i], freed = (uintptr_t)blocks[i - 1];
        if ((live % 8192 == 0 && size % 8192 != 0) || freed + size != live)
            continue;
        uintptr_t low = freed; /* the freed blocks touching B from below */
        for (size_t j = i - 1; j > i - keep_every + 1 && (uintptr_t)blocks[j - 1] + size == low; j--)
            low = (uintptr_t)blocks[j - 1];
        uintptr_t word_page = freed & ~(page - 1);
        if (word_page >= low && word_page + page <= live)
            tested = i - 1;
    }
    if (!tested)
        misuse_setup_failed("no freed block with its first word's page inside freed blocks");
    size_t neighbour = tested + 1;
    for (size_t i = 0; i < count; i++) {
        if (i % keep_every != keep_every - 1)
            free(blocks[i]);
        else if (!(neighbour_first && i == neighbour))
            misuse_hold(blocks[i], size);
    }
    malloc_trim(0);
    if (neighbour_first)
        free(blocks[neighbour]);
    misuse_announce(blocks[tested]);
    misuse_free(blocks[tested]);
    return size;
}

static size_t df_purged_whole_640(void) { return double_free_purged_whole(640, 0); }
static size_t df_purged_whole_1536(void) { return double_free_purged_whole(1536, 0); }
static size_t df_purged_whole_5120(void) { return double_free_purged_whole(5120, 0); }
static size_t df_purged_whole_6144(void) { return double_free_purged_whole(6144, 1); }
static size_t df_purged_whole_20480(void) { return double_free_purged_whole(20480, 1); }
static size_t df_purged_whole_98304(void) { return double_free_purged_whole(98304, 0); }
static size_t df_purged_whole_640_neighbour(void) { return double_free_purged_whole(640, 1); }

/* ---- 2: free(p); free(p) for every range of size classes ---- */

static size_t double_free_now(size_t size)
{
    void *p = misuse_malloc(size);
    scribble(p, size);
    misuse_announce(p);
    free(p);
    misuse_free(p);
    return size;
}

static uint64_t cached_bytes(void)
{
    struct xmm_stats stats;
    memset(&stats, 0, sizeof stats);
    stats.version = XMM_STATS_VERSION;
    xmm_stats_get(&stats);
    return stats.bytes_cached;
}

/* free(p); free(p) when the first free fills the cache's bin of p's class
 * (the per-CPU push checks for a full bin before it looks for p on top,
 * and a full bin first drains its top batch, p with it). The bin is filled
 * by freeing other blocks of the size one by one until xmm_stats shows the
 * first drain (bytes_cached falls): then the bin holds capacity - batch + 1
 * objects, and batch - 2 more frees leave it one below full. */
static size_t double_free_bin_full(size_t size)
{
    size_t count = ((size_t)128 << 20) / size;
    if (count > 4200)
        count = 4200;
    if (count < 64)
        count = 64;
    void *p = misuse_malloc(size);
    scribble(p, size);
    size_t unit = malloc_usable_size(p); /* what bytes_cached counts */
    for (size_t i = 0; i < count; i++)
        blocks[i] = misuse_malloc(size);
    size_t next = 0;
    uint64_t before = cached_bytes(), batch = 0;
    while (next < count && !batch) {
        free(blocks[next++]);
        uint64_t now = cached_bytes();
        if (now < before + unit)
            batch = (before + unit - now) / unit;
        before = now;
    }
    if (!batch)
        misuse_setup_failed("no drain of the cache seen");
    for (uint64_t i = 2; i < batch && next < count; i++)
        free(blocks[next++]);
    for (size_t i = next; i < count; i++)
        misuse_hold(blocks[i], size);
    printf("NOTE batch %llu, %zu blocks freed before p\n", (unsigned long long)batch, next);
    misuse_announce(p);
    free(p);
    misuse_free(p);
    return size;
}

static size_t df_full_24(void) { return double_free_bin_full(24); }
static size_t df_full_1000(void) { return double_free_bin_full(1000); }
static size_t df_full_40000(void) { return double_free_bin_full(40000); }
static size_t df_full_100000(void) { return double_free_bin_full(100000); }
static size_t df_full_256k(void) { return double_free_bin_full(256 * KIB); }

static size_t df_now_8(void) { return double_free_now(8); }
static size_t df_now_24(void) { return double_free_now(24); }
static size_t df_now_100(void) { return double_free_now(100); }
static size_t df_now_1000(void) { return double_free_now(1000); }
static size_t df_now_5000(void) { return double_free_now(5000); }
static size_t df_now_40000(void) { return double_free_now(40000); }
static size_t df_now_70000(void) { return double_free_now(70000); }
static size_t df_now_100000(void) { return double_free_now(100000); }
static size_t df_now_200000(void) { return double_free_now(200000); }
static size_t df_now_256k(void) { return double_free_now(256 * KIB); }

/* ---- 3: thread A frees p, then thread B (on another CPU) frees p ---- */

struct cross_free {
    void *p;
    int cpu_a, cpu_b;
    int a_stays;  /* A keeps running until B has freed */
    int stage;    /* 1: A has freed; 2: B has freed */
    unsigned slab_a[2], slab_b[2]; /* cpu_id and mm_cid at the free */
};

/* The calling thread's cpu_id and mm_cid, from the rseq area glibc
 * registered (XMM indexes its per-CPU slabs by one of them). */
static void rseq_ids(unsigned ids[2])
{
    ids[0] = ids[1] = ~0u;
    if (__rseq_size == 0)
        return;
    const unsigned char *area = (const unsigned char *)__builtin_thread_pointer() + __rseq_offset;
    memcpy(&ids[0], area + 4, 4);
    memcpy(&ids[1], area + 24, 4);
}

static void spin_until(int *stage, int value)
{
    double deadline = now_seconds() + 5;
    while (__atomic_load_n(stage, __ATOMIC_ACQUIRE) < value && now_seconds() < deadline)
        __builtin_ia32_pause();
}

static void *cross_thread_a(void *argument)
{
    struct cross_free *cross = argument;
    misuse_pin(cross->cpu_a);
    free(cross->p);
    rseq_ids(cross->slab_a);
    printf("NOTE A freed p on cpu_id %u mm_cid %u\n", cross->slab_a[0], cross->slab_a[1]);
    __atomic_store_n(&cross->stage, 1, __ATOMIC_RELEASE);
    /* Both threads running at once, on two CPUs: two per-CPU caches (and,
     * where slabs are indexed by mm_cid, two concurrency ids). */
    if (cross->a_stays)
        spin_until(&cross->stage, 2);
    return NULL;
}

static void *cross_thread_b(void *argument)
{
    struct cross_free *cross = argument;
    misuse_pin(cross->cpu_b);
    spin_until(&cross->stage, 1);
    /* On a one-node machine XMM's slabs are indexed by mm_cid, which the
     * kernel may hand from A to B: wait (1 s at most) for another one, so
     * that B's free meets another cache than A's. */
    double deadline = now_seconds() + 1;
    rseq_ids(cross->slab_b);
    while (cross->slab_a[1] != ~0u && cross->slab_b[1] == cross->slab_a[1] &&
           now_seconds() < deadline) {
        sched_yield();
        rseq_ids(cross->slab_b);
    }
    printf("NOTE B frees p on cpu_id %u mm_cid %u\n", cross->slab_b[0], cross->slab_b[1]);
    if (cross->slab_a[1] != ~0u && cross->slab_b[1] == cross->slab_a[1])
        printf("SAME_SLAB\n");
    misuse_free(cross->p);
    __atomic_store_n(&cross->stage, 2, __ATOMIC_RELEASE);
    return NULL;
}

static size_t double_free_cross_thread(int a_exits_first)
{
    const size_t size = 48;
    static struct cross_free cross;
    cpu_set_t allowed;
    int cpus[2] = {0, 0}, found = 0;

    CPU_ZERO(&allowed);
    sched_getaffinity(0, sizeof allowed, &allowed);
    for (int cpu = 0; cpu < CPU_SETSIZE && found < 2; cpu++)
        if (CPU_ISSET(cpu, &allowed))
            cpus[found++] = cpu;
    if (found < 2) {
        cpus[1] = cpus[0];
        printf("NOTE one CPU only: both threads on CPU %d\n", cpus[0]);
    }
    cross.cpu_a = cpus[0];
    cross.cpu_b = cpus[1];
    cross.a_stays = !a_exits_first;
    cross.p = misuse_malloc(size);
    scribble(cross.p, size);
    misuse_announce(cross.p);

    pthread_t a, b;
    if (pthread_create(&a, NULL, cross_thread_a, &cross) != 0)
        misuse_setup_failed("pthread_create");
    if (a_exits_first) {
        /* A is gone and p is in the central layer, whichever cache B
         * meets (per-thread: A's exit flushed its cache). */
        pthread_join(a, NULL);
        xmm_release_cpu_caches();
    }
    if (pthread_create(&b, NULL, cross_thread_b, &cross) != 0)
        misuse_setup_failed("pthread_create");
    pthread_join(b, NULL);
    if (!a_exits_first)
        pthread_join(a, NULL);

    /* Still alive: every cache drained to the central layer, so that the
     * check below meets both copies of p if both frees were kept. */
    xmm_release_cpu_caches();
    return size;
}

static size_t df_cross_thread(void) { return double_free_cross_thread(0); }
static size_t df_cross_thread_exited(void) { return double_free_cross_thread(1); }

/* ---- 4: realloc and malloc_usable_size of a freed block ---- */

/* p freed, then `later` more blocks of its size freed after it. */
static void *freed_block(size_t size, unsigned later)
{
    void *p = misuse_malloc(size);
    scribble(p, size);
    for (unsigned i = 0; i < later; i++)
        blocks[i] = misuse_malloc(size);
    free(p);
    for (unsigned i = 0; i < later; i++)
        free(blocks[i]);
    return p;
}

static size_t realloc_after_free(size_t size, size_t new_size, unsigned later)
{
    void *p = freed_block(size, later);
    misuse_announce(p);
    void *q = misuse_realloc(p, new_size);
    printf("REALLOC %p\n", q);
    /* Kept live: if realloc handed p back, the check below gets p again
     * from malloc while q = p is live. */
    misuse_hold(q, new_size);
    return size;
}

static size_t usable_size_after_free(size_t size, unsigned later)
{
    void *p = freed_block(size, later);
    misuse_announce(p);
    size_t usable = misuse_usable_size(p);
    printf("USABLE %zu\n", usable);
    return size;
}

static size_t realloc_freed_same_class(void) { return realloc_after_free(48, 40, 0); }
static size_t realloc_freed_other_class(void) { return realloc_after_free(48, 200, 0); }
static size_t realloc_freed_other_class_deep(void) { return realloc_after_free(48, 200, 8); }
static size_t realloc_freed_100000(void) { return realloc_after_free(100000, 100000, 0); }
static size_t realloc_freed_large(void) { return realloc_after_free(MIB, 2 * MIB, 0); }
static size_t usable_size_freed(void) { return usable_size_after_free(48, 0); }
static size_t usable_size_freed_deep(void) { return usable_size_after_free(48, 40); }
static size_t usable_size_freed_large(void) { return usable_size_after_free(MIB, 0); }
static size_t realloc_freed_direct(void) { return realloc_after_free(40 * MIB, 41 * MIB, 0); }
static size_t usable_size_freed_direct(void) { return usable_size_after_free(40 * MIB, 0); }

/* ---- 5: free of an object boundary of a live span never handed out ---- */

static int is_one_of(uintptr_t address, void *const *list, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if ((uintptr_t)list[i] == address)
            return 1;
    return 0;
}

/* Spans start on XMM pages of 8 KiB (src/common.h XMM_PAGE_SHIFT); the
 * classes used below (64 and 896 bytes) have spans of one page
 * (size_class.c: 128 and 9 objects), so the object boundaries of a block's
 * span are its page's start + k * size. */
#define XMM_PAGE_BYTES 8192u

static uintptr_t page_of(uintptr_t address)
{
    return address & ~(uintptr_t)(XMM_PAGE_BYTES - 1);
}

static int same_window(uintptr_t a, uintptr_t b)
{
    return page_of(a) == page_of(b);
}

/* Blocks of `size` (kept live) until the object after the highest of them
 * lies in the same span and was not returned to this program: q. A refill
 * cuts a batch of consecutive objects from a span (central.c take_objects)
 * and nothing else allocates in this child, so q is either still in a
 * cache or not cut yet; either way no malloc ever returned it. */
static size_t free_never_handed_out(size_t size)
{
    size_t count = 0;
    uintptr_t q = 0, highest = 0;
    while (!q && count < 2000) {
        blocks[count] = misuse_malloc(size);
        scribble(blocks[count], size);
        misuse_hold(blocks[count], size);
        if ((uintptr_t)blocks[count] > highest)
            highest = (uintptr_t)blocks[count];
        count++;
        if (count >= 40 && same_window(highest, highest + 2 * size - 1) &&
            !is_one_of(highest + size, blocks, count))
            q = highest + size;
    }
    if (!q)
        misuse_setup_failed("no object boundary after the highest block in its span");
    printf("NOTE q after the highest of %zu blocks\n", count);
    misuse_announce((void *)q);
    misuse_free((void *)q);
    return size;
}

/* One block p of a class nobody else uses (896 bytes): the refill that
 * served it cut a batch of 32 objects over four one-page spans (9 + 9 + 9
 * + 5), p the last; q, the first object of p's page, was cut too and waits
 * in the cache, under the two objects on top (p - size, p - 2 * size),
 * never returned by malloc. */
static size_t free_cached_never_handed_out(void)
{
    const size_t size = 896;
    /* Past the refills' slow start (1, 2, 4, 8 and 16 objects): the next
     * refill is a whole batch, handed out in ascending address order
     * (central.h, xmm_central_hand_out_order), p the first of it, and the
     * object after p among those it left in the cache. */
    for (int i = 0; i < 31; i++) {
        void *earlier = misuse_malloc(size);
        misuse_hold(earlier, size);
    }
    void *p = misuse_malloc(size);
    misuse_hold(p, size);
    uintptr_t q = (uintptr_t)p + size;
    misuse_announce((void *)q);
    misuse_free((void *)q);
    return size;
}

static size_t never_handed_out_64(void) { return free_never_handed_out(64); }
static size_t never_handed_out_896(void) { return free_never_handed_out(896); }

/* ---- 6: an 8-byte overflow into a free neighbour's free-list link ---- */

static _Alignas(64) unsigned char attacker_buffer[256];

static int compare_addresses(const void *a, const void *b)
{
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

/* 2048 blocks of 16 bytes; L and its neighbour N = L + 16 both among them.
 * Every block but L is freed, then moved onto its span's free list
 * (malloc_trim, or a drain to the central batches and the upkeep that
 * flushes idle batches to the spans). L overflows by 8 bytes into N's first
 * word, writing the address of a buffer the attacker controls (its first
 * word 0, the end of a list). Then malloc(16) many times. */
static size_t overflow_into_free_link(enum between between)
{
    enum { COUNT = 2048 };
    const size_t size = 16;
    static uintptr_t sorted[COUNT];

    for (size_t i = 0; i < COUNT; i++) {
        blocks[i] = misuse_malloc(size);
        scribble(blocks[i], size);
        sorted[i] = (uintptr_t)blocks[i];
    }
    qsort(sorted, COUNT, sizeof sorted[0], compare_addresses);
    uintptr_t live = 0;
    for (size_t i = COUNT / 2; i + 1 < COUNT && !live; i++)
        if (sorted[i + 1] == sorted[i] + size && same_window(sorted[i], sorted[i] + 2 * size - 1))
            live = sorted[i];
    if (!live)
        misuse_setup_failed("no two adjacent 16-byte blocks");
    for (size_t i = 0; i < COUNT; i++)
        if ((uintptr_t)blocks[i] != live)
            free(blocks[i]);
    misuse_hold((void *)live, size);
    if (between == TRIM) {
        malloc_trim(0);
    } else {
        /* XMM_DECAY_MS=20 (the case's environment): upkeep runs every 10
         * ms of allocation traffic and flushes batches nobody took. */
        xmm_release_cpu_caches();
        usleep(40000);
        for (int i = 0; i < 20000; i++)
            free(malloc(8));
    }
    memset(attacker_buffer, 0, sizeof attacker_buffer);
    misuse_forged(attacker_buffer, sizeof attacker_buffer);
    misuse_announce((void *)(live + size));
    void *forged = attacker_buffer;
    unsigned char *volatile overflowing = (unsigned char *)live;
    memcpy(overflowing + size, &forged, sizeof forged); /* the overflow */
    for (int i = 0; i < 4096; i++) {
        void *block = misuse_malloc(size);
        if (!misuse_is_forged(block))
            misuse_hold(block, size);
    }
    return size;
}

static size_t overflow_link_after_trim(void) { return overflow_into_free_link(TRIM); }
static size_t overflow_link_after_upkeep(void) { return overflow_into_free_link(RELEASE_CACHES); }

/* ---- 7: sized frees whose size cannot be the block's ---- */

static size_t free_sized_wrong(size_t size, size_t claimed)
{
    void *p = misuse_malloc(size);
    scribble(p, size);
    misuse_announce(p);
    misuse_free_sized(p, claimed);
    return size;
}

static size_t free_aligned_sized_wrong(size_t alignment, size_t size, size_t claimed_alignment,
                                       size_t claimed_size)
{
    void *p = aligned_alloc(alignment, size);
    /* A block that happens to meet the claimed alignment (the first of a
     * fresh span) is no wrong claim: the next one is. */
    for (int tries = 0; p && tries < 8 && ((uintptr_t)p & (claimed_alignment - 1)) == 0; tries++) {
        misuse_hold(p, size);
        p = aligned_alloc(alignment, size);
    }
    if (!p)
        misuse_setup_failed("aligned_alloc failed");
    scribble(p, size);
    misuse_announce(p);
    misuse_free_aligned_sized(p, claimed_alignment, claimed_size);
    return size;
}

static size_t free_sized_too_small(void) { return free_sized_wrong(100, 20); }
static size_t free_sized_too_large(void) { return free_sized_wrong(100, 1000); }

static size_t free_sized_small_as_large(void) { return free_sized_wrong(100, MIB); }
static size_t free_sized_large_as_small(void) { return free_sized_wrong(MIB, 16); }
static size_t free_sized_same_class(void) { return free_sized_wrong(100, 110); }
static size_t free_aligned_sized_wrong_size(void)
{
    return free_aligned_sized_wrong(64, 64, 64, 1000);
}
static size_t free_aligned_sized_wrong_alignment(void)
{
    return free_aligned_sized_wrong(64, 64, 4096, 64);
}

/* The controls: every way a correct program frees with a size. C23: the
 * size given to malloc, calloc (count * size) or the last realloc; for
 * free_aligned_sized, the alignment and size given to aligned_alloc. */
static size_t free_sized_exact(void)
{
    static const size_t sizes[] = {0,      1,      8,      9,       15,       16,       17,
                                   24,     100,    128,    1000,    1024,     4096,     5000,
                                   40000,  65537,  100000, 262144,  262145,   300000,   MIB,
                                   5 * MIB, 40 * MIB};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        void *p = misuse_malloc(sizes[i]);
        scribble(p, sizes[i]);
        misuse_free_sized(p, sizes[i]);
        p = calloc(3, sizes[i] / 3 + 1);
        if (!p)
            misuse_setup_failed("calloc failed");
        misuse_free_sized(p, 3 * (sizes[i] / 3 + 1));
        p = misuse_realloc(NULL, sizes[i]);
        misuse_free_sized(p, sizes[i]);
    }
    /* realloc that keeps the block where it is (a shrink to at least half
     * of the block, src/alloc.c), and one that moves it, each freed with
     * the size given to realloc. */
    static const size_t pairs[][2] = {{100, 60},   {100, 56},    {100, 20},  {32, 16},
                                      {32, 17},    {20, 1},      {4000, 2100}, {300000, 200000},
                                      {MIB, 600000}, {MIB, 300000}, {16, 2000}, {MIB, 3 * MIB}};
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        void *p = misuse_malloc(pairs[i][0]);
        scribble(p, pairs[i][0]);
        void *q = misuse_realloc(p, pairs[i][1]);
        if (!q)
            misuse_setup_failed("realloc failed");
        misuse_free_sized(q, pairs[i][1]);
    }
    return 100;
}

static size_t free_aligned_sized_exact(void)
{
    static const size_t alignments[] = {8, 16, 32, 64, 256, 4096, 8192, 16384, 65536, MIB};
    for (size_t i = 0; i < sizeof alignments / sizeof alignments[0]; i++) {
        size_t a = alignments[i];
        const size_t sizes[] = {0, 1, 24, a, a + 1, 3 * a + 8, 100000, 300000};
        for (size_t j = 0; j < sizeof sizes / sizeof sizes[0]; j++) {
            void *p = aligned_alloc(a, sizes[j]);
            if (!p)
                misuse_setup_failed("aligned_alloc failed");
            scribble(p, sizes[j]);
            misuse_free_aligned_sized(p, a, sizes[j]);
            /* posix_memalign and memalign blocks too, as XMM serves them
             * the same way. */
            if (posix_memalign(&p, a, sizes[j]) != 0)
                misuse_setup_failed("posix_memalign failed");
            misuse_free_aligned_sized(p, a, sizes[j]);
        }
    }
    return 64;
}

/* hardened_malloc aligned_sized_delete_small_min_align, in C. */
static size_t hm_aligned_sized_min_align(void)
{
    void *p = NULL;
    if (posix_memalign(&p, 16, 0) != 0)
        misuse_setup_failed("posix_memalign failed");
    misuse_free_aligned_sized(p, 16, 0);
    p = misuse_malloc(0);
    misuse_free_sized(p, 0);
    return 16;
}

/* ---- ports of hardened_malloc's test programs (the ideas, not the code) ---- */

static size_t double_free_delayed(size_t size)
{
    void *p = misuse_malloc(size), *q = misuse_malloc(size);
    misuse_announce(p);
    free(p);
    free(q);
    misuse_free(p);
    return size;
}

static size_t hm_double_free_small(void) { return double_free_now(16); }
static size_t hm_double_free_small_delayed(void) { return double_free_delayed(16); }
static size_t hm_double_free_large(void) { return double_free_now(256 * KIB); }
static size_t hm_double_free_large_delayed(void) { return double_free_delayed(256 * KIB); }
static size_t hm_double_free_1m_delayed(void) { return double_free_delayed(MIB); }
static size_t hm_double_free_40m_delayed(void) { return double_free_delayed(40 * MIB); }

static size_t free_in_mapping(int protection)
{
    free(misuse_malloc(16));
    char *mapping = mmap(NULL, 16 * 4096, protection, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mapping == MAP_FAILED)
        misuse_setup_failed("mmap failed");
    misuse_announce(mapping + 8 * 4096);
    misuse_free(mapping + 8 * 4096);
    return 16;
}

static size_t hm_invalid_free_protected(void) { return free_in_mapping(PROT_NONE); }
static size_t hm_invalid_free_unprotected(void) { return free_in_mapping(PROT_READ | PROT_WRITE); }

static size_t free_at_offset(size_t size, size_t offset)
{
    char *p = misuse_malloc(size);
    scribble(p, size);
    misuse_hold(p, size);
    misuse_announce(p + offset);
    misuse_free(p + offset);
    return size;
}

/* p + 16 KiB from a 16-byte block: in XMM, other pages of the same chunk
 * (free pages, or other spans: the child has made almost no other
 * allocation, so nothing live is there). */
static size_t hm_invalid_free_small_region(void) { return free_at_offset(16, 16 * KIB); }
static size_t hm_invalid_free_small_region_far(void) { return free_at_offset(16, GIB); }
static size_t hm_unaligned_free_small(void) { return free_at_offset(16, 1); }
static size_t hm_unaligned_free_large(void) { return free_at_offset(256 * KIB, 1); }
static size_t hm_unaligned_free_1m(void) { return free_at_offset(MIB, 1); }

static size_t hm_uninitialized_free(void)
{
    misuse_announce((void *)1);
    misuse_free((void *)1);
    return 16;
}

static size_t hm_uninitialized_realloc(void)
{
    misuse_announce((void *)1);
    void *q = misuse_realloc((void *)1, 16);
    printf("REALLOC %p\n", q);
    misuse_hold(q, 16);
    return 16;
}

static size_t hm_uninitialized_malloc_usable_size(void)
{
    misuse_announce((void *)1);
    printf("USABLE %zu\n", misuse_usable_size((void *)1));
    return 16;
}

static size_t usable_size_at_offset(size_t offset)
{
    char *p = misuse_malloc(16);
    misuse_hold(p, 16);
    misuse_announce(p + offset);
    printf("USABLE %zu\n", misuse_usable_size(p + offset));
    return 16;
}

static size_t hm_invalid_malloc_usable_size_small(void) { return usable_size_at_offset(16 * KIB); }
static size_t hm_unaligned_malloc_usable_size_small(void) { return usable_size_at_offset(1); }
static size_t hm_invalid_malloc_usable_size_small_quarantine(void)
{
    return usable_size_after_free(16, 0);
}

/* Documented as not detected: reads and writes of freed memory. */
static size_t read_after_free(size_t size)
{
    unsigned char *p = misuse_malloc(size);
    memset(p, 'a', size < 64 ? size : 64);
    free(p);
    unsigned char *volatile stale = p;
    unsigned sum = 0;
    for (size_t i = 0; i < 16; i++)
        sum += stale[i];
    printf("READ %u\n", sum);
    return size;
}

static size_t write_after_free(size_t size, int reuse)
{
    unsigned char *p = misuse_malloc(size);
    free(p);
    if (reuse) {
        void *q = misuse_malloc(size); /* most likely p again */
        misuse_hold(q, size);
    }
    unsigned char *volatile stale = p;
    stale[65] = 'a'; /* not the first word: no free-list link is touched */
    for (int i = 0; i < 100000; i++)
        free(misuse_malloc(size));
    return size;
}

/* free(p); the program writes the freed block's first word (`offset` 0:
 * a pointer field set to NULL, `p->next = NULL` after the free; 4: a
 * 4-byte field at offset 4 set to 0); free(p) again, with `between` other
 * frees of the size before the write. The second free finds no free tag
 * and takes p for a live block, so p is in a cache twice: the check as a
 * cache hands an object out must stop the second copy (the heap checks
 * that follow allocate past it). Found by a misuse audit: p was returned
 * by two mallocs in a row. */
static size_t write_then_double_free(size_t size, size_t offset, unsigned between)
{
    unsigned char *p = misuse_malloc(size);
    scribble(p, size);
    for (unsigned i = 0; i < between && i < BLOCKS_MAX; i++)
        blocks[i] = misuse_malloc(size);
    free(p);
    for (unsigned i = 0; i < between && i < BLOCKS_MAX; i++)
        free(blocks[i]);
    if (offset == 0)
        *(void *volatile *)p = NULL;
    else
        *(volatile uint32_t *)(p + offset) = 0;
    misuse_announce(p);
    misuse_free(p);
    return size;
}

static size_t uaf_df_8(void) { return write_then_double_free(8, 0, 0); }
static size_t uaf_df_64(void) { return write_then_double_free(64, 0, 0); }
static size_t uaf_df_4096(void) { return write_then_double_free(4096, 0, 0); }
static size_t uaf_df_100000(void) { return write_then_double_free(100000, 0, 0); }
static size_t uaf_df_48_offset_4(void) { return write_then_double_free(48, 4, 0); }
static size_t uaf_df_64_deep(void) { return write_then_double_free(64, 0, 1000); }
static size_t uaf_df_64_deferred(void) { return write_then_double_free(64, 0, 1000); }

/* The same, then malloc_trim(0): the cache drains both copies to the
 * block's span before either is handed out again. */
static size_t uaf_df_then_trim(size_t size)
{
    write_then_double_free(size, 0, 0);
    malloc_trim(0);
    return size;
}

/* free(p); a write after free over bytes 0-3 of p's first word (bytes 4-5,
 * which the hand-out compares, kept); malloc_trim(0) drains p to its span.
 * The drain's check (the whole word) sees it: it must say heap
 * corruption, not double free, since nothing was freed twice (a review). */
static size_t uaf_low_write_trim(void)
{
    unsigned char *p = misuse_malloc(64);
    free(p);
    *(volatile uint32_t *)p = 0;
    misuse_announce(p);
    malloc_trim(0);
    return 64;
}

/* The same with a block of another span freed between the two frees:
 * the drain meets p, q, p. Its first version returned p's run when q's
 * span came, and p's word was the tag again (its span's list was empty):
 * the second copy passed (a review). Per-CPU caches drain a bin by
 * batches, the oldest objects first: p's first copy left in a full batch,
 * parked, and the rest (q and p's second copy) went to the spans at once;
 * a release now checks the whole bin's addresses (xmm_drain_check). */
static size_t uaf_df_split_trim(void)
{
    const size_t size = 48;
    for (size_t i = 0; i < BLOCKS_MAX; i++)
        blocks[i] = misuse_malloc(size);
    unsigned char *p = blocks[0];
    void *q = blocks[BLOCKS_MAX - 1]; /* 960 KB further: another span */
    free(p);
    *(void *volatile *)p = NULL;
    free(q);
    misuse_announce(p);
    misuse_free(p);
    malloc_trim(0);
    return size;
}

/* The copies 600 objects apart in one per-CPU bin (1000 blocks of 48 bytes,
 * the bins emptied first; 50 frees, p freed and written, 600 frees, p
 * freed again), then malloc_trim(0): a release's first check compared an
 * object with the few hundred before it only, missed these copies, linked
 * p twice into its span's list, and the trim's walk of that list never
 * ended (a review). */
static size_t uaf_df_far_trim(void)
{
    const size_t size = 48;
    for (size_t i = 0; i < 1000; i++)
        blocks[i] = misuse_malloc(size);
    xmm_release_cpu_caches();
    unsigned char *p = blocks[0];
    size_t next = 1;
    for (int i = 0; i < 50; i++)
        free(blocks[next++]);
    free(p);
    *(void *volatile *)p = NULL;
    for (int i = 0; i < 600; i++)
        free(blocks[next++]);
    misuse_announce(p);
    misuse_free(p);
    malloc_trim(0);
    return size;
}

static size_t uaf_df_64_trim(void) { return uaf_df_then_trim(64); }
static size_t uaf_df_1000_trim(void) { return uaf_df_then_trim(1000); }

static size_t hm_read_after_free_small(void) { return read_after_free(16); }
static size_t hm_read_after_free_large(void) { return read_after_free(MIB); }
static size_t hm_write_after_free_small(void) { return write_after_free(128, 0); }
static size_t hm_write_after_free_small_reuse(void) { return write_after_free(128, 1); }
static size_t hm_write_after_free_large(void) { return write_after_free(MIB, 0); }
static size_t hm_write_after_free_large_reuse(void) { return write_after_free(MIB, 1); }

/* Overflows past the usable size of a live block, then its free. XMM has
 * no canaries: only a free-list link is protected (item 6). Freshly cut
 * neighbours sit in a cache (out of band), so no link is reached here. */
static size_t overflow_past_end(size_t size, size_t offset, int flip)
{
    unsigned char *p = misuse_malloc(size);
    size_t usable = malloc_usable_size(p);
    unsigned char *volatile end = p + usable;
    if (flip)
        end[offset] ^= 1;
    else
        end[offset] = 0;
    free(p);
    return size;
}

static size_t hm_overflow_small_1_byte(void) { return overflow_past_end(8, 0, 0); }
static size_t hm_overflow_small_8_byte(void) { return overflow_past_end(8, 7, 1); }
static size_t hm_overflow_large_1_byte(void) { return overflow_past_end(256 * KIB, 0, 0); }
static size_t hm_overflow_large_8_byte(void) { return overflow_past_end(256 * KIB, 7, 1); }
static size_t hm_overflow_1m_1_byte(void) { return overflow_past_end(MIB, 0, 0); }

/* ======================================================================= */
/* The table                                                                */
/* ======================================================================= */

#define C_CASE(name, item, expect, flags, env, what) {#name, item, expect, flags, env, what, name}
#define CXX_CASE(name, item, expect, flags, what) {name, item, expect, (flags) | CXX, NULL, what, NULL}
#define CXX_CASE_ENV(name, item, expect, flags, env, what) \
    {name, item, expect, (flags) | CXX, env, what, NULL}

static const struct misuse_case cases[] = {
    /* 1 */
    C_CASE(df_first_20x20, 1, DETECTED, BOTH_FRONTS, NULL,
           "20 blocks of 20 bytes freed, then the first freed again"),
    C_CASE(df_first_200x48, 1, DETECTED, BOTH_FRONTS, NULL,
           "200 blocks of 48 bytes freed, then the first freed again"),
    C_CASE(df_first_5000x16, 1, DETECTED, BOTH_FRONTS, NULL,
           "5000 blocks of 16 bytes freed (caches overflow to central), then the first again"),
    C_CASE(df_first_4x100000, 1, DETECTED, BOTH_FRONTS, NULL,
           "4 blocks of 100000 bytes freed, then the first freed again"),
    C_CASE(df_first_in_batch, 1, DETECTED, BOTH_FRONTS, NULL,
           "200 blocks of 64 bytes freed, xmm_release_cpu_caches() (now in central transfer "
           "batches), then the first freed again"),
    C_CASE(df_first_after_trim, 1, DETECTED, BOTH_FRONTS, NULL,
           "10000 blocks of 20 bytes freed, malloc_trim(0), then the first freed again"),
    C_CASE(df_first_on_span_list, 1, DETECTED, BOTH_FRONTS, NULL,
           "10000 blocks of 20 bytes, every 4th kept live, the rest freed, malloc_trim(0) "
           "(free objects on their spans' free lists), then the first freed again"),
    C_CASE(df_purged_inside_after_trim, 1, DETECTED, BOTH_FRONTS, NULL,
           "256 KiB blocks, two per span, the first of each freed, malloc_trim(0) (pages "
           "inside them purged, the page of the free tag kept), then one freed again"),
    C_CASE(df_cut_back_after_trim, 1, DETECTED, BOTH_FRONTS, NULL,
           "256 KiB blocks, two per span, the second of each freed, malloc_trim(0) (cut back "
           "to the spans' uncut tails, purged whole), then one freed again"),
    C_CASE(df_purged_whole_640, 1, DETECTED, BOTH_FRONTS, NULL,
           "640-byte blocks, every 26th kept, the rest freed, malloc_trim(0) (first-word "
           "pages inside freed blocks purged), then one just before a live one freed again"),
    C_CASE(df_purged_whole_640_neighbour, 1, DETECTED, BOTH_FRONTS, NULL,
           "as above, and the live block after it freed first (valid)"),
    C_CASE(df_purged_whole_1536, 1, DETECTED, BOTH_FRONTS, NULL,
           "1536-byte blocks, every 11th kept, the rest freed, malloc_trim(0), then one just "
           "before a live one freed again"),
    C_CASE(df_purged_whole_5120, 1, DETECTED, BOTH_FRONTS, NULL,
           "5120-byte blocks, every 7th kept, the rest freed, malloc_trim(0), then one just "
           "before a live one freed again"),
    C_CASE(df_purged_whole_6144, 1, DETECTED, BOTH_FRONTS, NULL,
           "6144-byte blocks, every 7th kept, the rest freed, malloc_trim(0), the live block "
           "after a run freed (valid), then the one before it freed again"),
    C_CASE(df_purged_whole_20480, 1, DETECTED, BOTH_FRONTS, NULL,
           "20 KiB blocks, every 7th kept, the rest freed, malloc_trim(0), the live block "
           "after a run freed (valid), then the one before it freed again"),
    C_CASE(df_purged_whole_98304, 1, DETECTED, BOTH_FRONTS, NULL,
           "96 KiB blocks, every 7th kept, the rest freed, malloc_trim(0), then one just "
           "before a live one freed again"),
    /* 2 */
    C_CASE(df_now_8, 2, DETECTED, BOTH_FRONTS, NULL, "free(p); free(p); p of 8 bytes"),
    C_CASE(df_now_24, 2, DETECTED, BOTH_FRONTS, NULL, "free(p); free(p); p of 24 bytes"),
    C_CASE(df_now_100, 2, DETECTED, BOTH_FRONTS, NULL, "free(p); free(p); p of 100 bytes"),
    C_CASE(df_now_1000, 2, DETECTED, BOTH_FRONTS, NULL, "free(p); free(p); p of 1000 bytes"),
    C_CASE(df_now_5000, 2, DETECTED, BOTH_FRONTS, NULL, "free(p); free(p); p of 5000 bytes"),
    C_CASE(df_now_40000, 2, DETECTED, BOTH_FRONTS, NULL, "free(p); free(p); p of 40000 bytes"),
    C_CASE(df_now_70000, 2, DETECTED, BOTH_FRONTS, NULL, "free(p); free(p); p of 70000 bytes"),
    C_CASE(df_now_100000, 2, DETECTED, BOTH_FRONTS, NULL,
           "free(p); free(p); p of 100000 bytes"),
    C_CASE(df_now_200000, 2, DETECTED, BOTH_FRONTS, NULL,
           "free(p); free(p); p of 200000 bytes"),
    C_CASE(df_now_256k, 2, DETECTED, BOTH_FRONTS, NULL,
           "free(p); free(p); p of 256 KiB (the largest size class)"),
    C_CASE(df_full_24, 2, DETECTED, BOTH_FRONTS, NULL,
           "free(p); free(p), 24 bytes, the first free filling the cache's bin"),
    C_CASE(df_full_1000, 2, DETECTED, BOTH_FRONTS, NULL,
           "free(p); free(p), 1000 bytes, the first free filling the cache's bin"),
    C_CASE(df_full_40000, 2, DETECTED, BOTH_FRONTS, NULL,
           "free(p); free(p), 40000 bytes, the first free filling the cache's bin"),
    C_CASE(df_full_100000, 2, DETECTED, BOTH_FRONTS, NULL,
           "free(p); free(p), 100000 bytes, the first free filling the cache's bin"),
    C_CASE(df_full_256k, 2, DETECTED, BOTH_FRONTS, NULL,
           "free(p); free(p), 256 KiB, the first free filling the cache's bin"),
    /* 3 */
    C_CASE(df_cross_thread, 3, DETECTED, BOTH_FRONTS | NO_PIN, NULL,
           "thread A (CPU a) frees p, then thread B (CPU b), both running, frees p"),
    C_CASE(df_cross_thread_exited, 3, DETECTED, BOTH_FRONTS | NO_PIN, NULL,
           "thread A (CPU a) frees p and exits, every cache is drained "
           "(xmm_release_cpu_caches), then thread B (CPU b) frees p"),
    /* 4 */
    C_CASE(realloc_freed_same_class, 4, DETECTED, BOTH_FRONTS, NULL,
           "free(p); realloc(p, 40), p of 48 bytes (same class)"),
    C_CASE(realloc_freed_other_class, 4, DETECTED, BOTH_FRONTS, NULL,
           "free(p); realloc(p, 200), p of 48 bytes (another class)"),
    C_CASE(realloc_freed_other_class_deep, 4, DETECTED, BOTH_FRONTS, NULL,
           "free(p); 8 more frees; realloc(p, 200), p of 48 bytes"),
    C_CASE(realloc_freed_100000, 4, DETECTED, BOTH_FRONTS, NULL,
           "free(p); realloc(p, 100000), p of 100000 bytes"),
    C_CASE(realloc_freed_large, 4, DETECTED, 0, NULL,
           "free(p); realloc(p, 2 MiB), p of 1 MiB"),
    C_CASE(usable_size_freed, 4, DETECTED, BOTH_FRONTS, NULL,
           "free(p); malloc_usable_size(p), p of 48 bytes"),
    C_CASE(usable_size_freed_deep, 4, DETECTED, BOTH_FRONTS, NULL,
           "free(p); 40 more frees; malloc_usable_size(p), p of 48 bytes"),
    C_CASE(usable_size_freed_large, 4, DETECTED, 0, NULL,
           "free(p); malloc_usable_size(p), p of 1 MiB"),
    C_CASE(realloc_freed_direct, 4, DETECTED, 0, NULL,
           "free(p); realloc(p, 41 MiB), p of 40 MiB (mapped for itself, unmapped by the free)"),
    C_CASE(usable_size_freed_direct, 4, DETECTED, 0, NULL,
           "free(p); malloc_usable_size(p), p of 40 MiB"),
    /* 5 */
    C_CASE(never_handed_out_64, 5, DETECTED, BOTH_FRONTS, NULL,
           "free(q), q the object after the highest of 40+ live 64-byte blocks (same span, "
           "never returned by malloc)"),
    C_CASE(never_handed_out_896, 5, DETECTED, BOTH_FRONTS, NULL,
           "free(q), q the object after the highest of 40+ live 896-byte blocks"),
    C_CASE(free_cached_never_handed_out, 5, DETECTED, BOTH_FRONTS, NULL,
           "free(q), q the object after p, the first 896-byte block of a refill: cut by "
           "the same refill, still in the cache, never returned by malloc"),
    /* 6 */
    C_CASE(overflow_link_after_trim, 6, CORRUPTION, BOTH_FRONTS, NULL,
           "a live 16-byte block overflows 8 bytes into its free neighbour's first word after "
           "malloc_trim(0) put the neighbour on its span's free list; then 4096 malloc(16)"),
    C_CASE(overflow_link_after_upkeep, 6, CORRUPTION, BOTH_FRONTS, "XMM_DECAY_MS=20",
           "the same after xmm_release_cpu_caches() and the upkeep that flushes idle "
           "batches to the spans"),
    /* 7 */
    C_CASE(free_sized_too_small, 7, DETECTED, BOTH_FRONTS, NULL,
           "free_sized(p, 20), p = malloc(100) (usable 112)"),
    C_CASE(free_sized_too_large, 7, DETECTED, BOTH_FRONTS, NULL,
           "free_sized(p, 1000), p = malloc(100)"),
    C_CASE(free_sized_small_as_large, 7, DETECTED, 0, NULL,
           "free_sized(p, 1 MiB), p = malloc(100)"),
    C_CASE(free_sized_large_as_small, 7, DETECTED, 0, NULL,
           "free_sized(p, 16), p = malloc(1 MiB)"),
    C_CASE(free_aligned_sized_wrong_size, 7, DETECTED, 0, NULL,
           "free_aligned_sized(p, 64, 1000), p = aligned_alloc(64, 64)"),
    C_CASE(free_aligned_sized_wrong_alignment, 7, DETECTED, 0, NULL,
           "free_aligned_sized(p, 4096, 64), p = aligned_alloc(64, 64)"),
    C_CASE(free_sized_exact, 7, ACCEPTED, BOTH_FRONTS, NULL,
           "control: free_sized with the size given to malloc, calloc, realloc (in place "
           "and moved), 0 bytes to 40 MiB"),
    C_CASE(free_aligned_sized_exact, 7, ACCEPTED, 0, NULL,
           "control: free_aligned_sized with the alignment (8 to 1 MiB) and size given to "
           "aligned_alloc and posix_memalign"),
    C_CASE(free_sized_same_class, 7, UNDETECTED, 0, NULL,
           "free_sized(p, 110), p = malloc(100): wrong, but within the block (documented as "
           "not detected)"),
    CXX_CASE("cxx_sized_delete_too_small", 7, DETECTED, BOTH_FRONTS,
             "::operator delete(p, 20), p = ::operator new(100)"),
    CXX_CASE("cxx_sized_delete_too_large", 7, DETECTED, BOTH_FRONTS,
             "::operator delete(p, 100), p = ::operator new(24)"),
    /* XMM_PROFILE=2: every request sampled, its block on a page of its own */
    CXX_CASE("cxx_double_sized_delete", 0, DETECTED, BOTH_FRONTS,
             "::operator delete(p, 100) twice, then 1000 sized new/delete pairs"),
    CXX_CASE_ENV("cxx_double_sized_delete", 0, DETECTED, BOTH_FRONTS, "XMM_FREE_CHECK=deferred",
                 "the same under XMM_FREE_CHECK=deferred (the report came only at a later "
                 "plain free)"),
    CXX_CASE_ENV("cxx_sized_delete_sampled", 7, DETECTED, 0, "XMM_PROFILE=2",
                 "::operator delete(p, 1000), p = ::operator new(100) sampled by the heap "
                 "profiler"),
    CXX_CASE("cxx_array_sized_delete_too_large", 7, DETECTED, 0,
             "::operator delete[](p, 1000), p = ::operator new[](24)"),
    CXX_CASE("cxx_sized_delete_large_as_small", 7, DETECTED, 0,
             "::operator delete(p, 16), p = ::operator new(1 MiB)"),
    CXX_CASE("cxx_aligned_sized_delete_wrong_alignment", 7, DETECTED, 0,
             "::operator delete(p, 64, align_val_t(256)), p = new of an alignas(64) "
             "64-byte struct"),
    CXX_CASE("cxx_sized_delete_exact", 7, ACCEPTED, BOTH_FRONTS,
             "control: sized, array and aligned deletes with the size and alignment given to "
             "new (0 bytes to 5 MiB, alignment 8 to 1 MiB, new char, arrays with a cookie)"),
    CXX_CASE("cxx_sized_delete_same_class", 7, UNDETECTED, 0,
             "::operator delete(p, 110), p = ::operator new(100): within the block "
             "(documented as not detected)"),
    /* hardened_malloc's test programs, ported */
    C_CASE(hm_double_free_small, 0, DETECTED, 0, NULL, "double_free_small: 16 bytes"),
    C_CASE(hm_double_free_small_delayed, 0, DETECTED, 0, NULL,
           "double_free_small_delayed: free(p); free(q); free(p), 16 bytes"),
    C_CASE(hm_double_free_large, 0, DETECTED, 0, NULL,
           "double_free_large: 256 KiB (XMM's largest size class)"),
    C_CASE(hm_double_free_large_delayed, 0, DETECTED, 0, NULL,
           "double_free_large_delayed: free(p); free(q); free(p), 256 KiB"),
    C_CASE(hm_double_free_1m_delayed, 0, DETECTED, 0, NULL,
           "double_free_large_delayed with 1 MiB (a large block in XMM)"),
    C_CASE(hm_double_free_40m_delayed, 0, DETECTED, 0, NULL,
           "double_free_large_delayed with 40 MiB (a direct block in XMM)"),
    C_CASE(hm_invalid_free_protected, 0, DETECTED, 0, NULL,
           "invalid_free_protected: free inside a PROT_NONE mapping"),
    C_CASE(hm_invalid_free_unprotected, 0, DETECTED, 0, NULL,
           "invalid_free_unprotected: free inside a read-write mapping"),
    C_CASE(hm_invalid_free_small_region, 0, DETECTED, 0, NULL,
           "invalid_free_small_region: free(p + 16 KiB), p of 16 bytes"),
    C_CASE(hm_invalid_free_small_region_far, 0, DETECTED, 0, NULL,
           "invalid_free_small_region_far: free(p + 1 GiB), p of 16 bytes"),
    C_CASE(hm_unaligned_free_small, 0, DETECTED, 0, NULL, "unaligned_free_small: free(p + 1)"),
    C_CASE(hm_unaligned_free_large, 0, DETECTED, 0, NULL,
           "unaligned_free_large: free(p + 1), p of 256 KiB"),
    C_CASE(hm_unaligned_free_1m, 0, DETECTED, 0, NULL, "unaligned_free_large with 1 MiB"),
    C_CASE(hm_uninitialized_free, 0, DETECTED, 0, NULL, "uninitialized_free: free((void *)1)"),
    C_CASE(hm_uninitialized_realloc, 0, DETECTED, 0, NULL,
           "uninitialized_realloc: realloc((void *)1, 16)"),
    C_CASE(hm_uninitialized_malloc_usable_size, 0, DETECTED, 0, NULL,
           "uninitialized_malloc_usable_size: malloc_usable_size((void *)1)"),
    C_CASE(hm_invalid_malloc_usable_size_small, 0, DETECTED, 0, NULL,
           "invalid_malloc_usable_size_small: malloc_usable_size(p + 16 KiB)"),
    C_CASE(hm_invalid_malloc_usable_size_small_quarantine, 4, DETECTED, 0, NULL,
           "invalid_malloc_usable_size_small_quarantine: free(p); malloc_usable_size(p)"),
    C_CASE(hm_unaligned_malloc_usable_size_small, 0, DETECTED, 0, NULL,
           "unaligned_malloc_usable_size_small: malloc_usable_size(p + 1)"),
    C_CASE(hm_aligned_sized_min_align, 0, ACCEPTED, 0, NULL,
           "aligned_sized_delete_small_min_align: free_aligned_sized(p, 16, 0) of "
           "posix_memalign(16, 0); free_sized(malloc(0), 0)"),
    CXX_CASE("hm_delete_type_size_mismatch", 7, DETECTED, 0,
             "delete_type_size_mismatch: new char deleted as a 32-byte struct"),
    CXX_CASE("hm_invalid_aligned_sized_delete_small", 7, DETECTED, 0,
             "invalid_aligned_sized_delete_small: alignas(64) struct deleted with size + 64"),
    CXX_CASE("hm_invalid_aligned_sized_delete_large", 0, UNDETECTED, 0,
             "invalid_aligned_sized_delete_large: alignas(8192) struct of 16384 bytes deleted "
             "with size - 10 (within the block: documented as not detected)"),
    CXX_CASE("hm_aligned_sized_delete_small", 0, ACCEPTED, 0,
             "aligned_sized_delete_small: alignas(64) struct, new and delete"),
    CXX_CASE("hm_aligned_sized_delete_large", 0, ACCEPTED, 0,
             "aligned_sized_delete_large: alignas(8192) struct, new and delete"),
    C_CASE(uaf_df_8, 0, DETECTED, BOTH_FRONTS, NULL,
           "free(p); p's first word set to NULL; free(p), p of 8 bytes"),
    C_CASE(uaf_df_64, 0, DETECTED, BOTH_FRONTS, NULL,
           "free(p); p's first word set to NULL; free(p), p of 64 bytes"),
    C_CASE(uaf_df_4096, 0, DETECTED, BOTH_FRONTS, NULL,
           "free(p); p's first word set to NULL; free(p), p of 4 KiB"),
    C_CASE(uaf_df_100000, 0, DETECTED, BOTH_FRONTS, NULL,
           "free(p); p's first word set to NULL; free(p), p of 100000 bytes"),
    C_CASE(uaf_df_48_offset_4, 0, DETECTED, BOTH_FRONTS, NULL,
           "free(p); a 4-byte field at offset 4 set to 0; free(p), p of 48 bytes"),
    C_CASE(uaf_df_64_deep, 0, DETECTED, BOTH_FRONTS, NULL,
           "free(p); 1000 more frees of 64 bytes; p's first word set to NULL; free(p)"),
    C_CASE(uaf_low_write_trim, 0, CORRUPTION, BOTH_FRONTS, NULL,
           "free(p); bytes 0-3 of p's first word set to 0; malloc_trim(0), p of 64 bytes"),
    C_CASE(uaf_df_split_trim, 0, DETECTED, BOTH_FRONTS, NULL,
           "free(p); p's first word set to NULL; free(q), q of another span; free(p); "
           "malloc_trim(0), 48 bytes"),
    C_CASE(uaf_df_far_trim, 0, DETECTED, 0, NULL,
           "bins emptied; 50 frees; free(p); p's first word set to NULL; 600 frees; free(p); "
           "malloc_trim(0), 48 bytes (per-CPU: one bin holds them all)"),
    C_CASE(uaf_df_64_trim, 0, DETECTED, BOTH_FRONTS, NULL,
           "free(p); p's first word set to NULL; free(p); malloc_trim(0), p of 64 bytes"),
    C_CASE(uaf_df_1000_trim, 0, DETECTED, BOTH_FRONTS, NULL,
           "free(p); p's first word set to NULL; free(p); malloc_trim(0), p of 1000 bytes"),
    C_CASE(uaf_df_64_deferred, 0, DETECTED, BOTH_FRONTS, "XMM_FREE_CHECK=deferred",
           "the same under XMM_FREE_CHECK=deferred (the two frees not back to back)"),
    C_CASE(hm_read_after_free_small, 0, UNDETECTED, 0, NULL,
           "read_after_free_small (not detected: freed memory is not cleared)"),
    C_CASE(hm_read_after_free_large, 0, UNDETECTED, 0, NULL,
           "read_after_free_large with 1 MiB (not detected)"),
    C_CASE(hm_write_after_free_small, 0, UNDETECTED, 0, NULL,
           "write_after_free_small: p[65] of a freed 128-byte block (not detected)"),
    C_CASE(hm_write_after_free_small_reuse, 0, UNDETECTED, 0, NULL,
           "write_after_free_small_reuse (not detected)"),
    C_CASE(hm_write_after_free_large, 0, UNDETECTED, 0, NULL,
           "write_after_free_large with 1 MiB (not detected)"),
    C_CASE(hm_write_after_free_large_reuse, 0, UNDETECTED, 0, NULL,
           "write_after_free_large_reuse with 1 MiB (not detected)"),
    C_CASE(hm_overflow_small_1_byte, 0, UNDETECTED, 0, NULL,
           "overflow_small_1_byte (no canaries: not detected)"),
    C_CASE(hm_overflow_small_8_byte, 0, UNDETECTED, 0, NULL,
           "overflow_small_8_byte (no canaries: not detected)"),
    C_CASE(hm_overflow_large_1_byte, 0, UNDETECTED, 0, NULL,
           "overflow_large_1_byte with 256 KiB (not detected)"),
    C_CASE(hm_overflow_large_8_byte, 0, UNDETECTED, 0, NULL,
           "overflow_large_8_byte with 256 KiB (not detected)"),
    C_CASE(hm_overflow_1m_1_byte, 0, UNDETECTED, 0, NULL,
           "overflow_large_1_byte with 1 MiB (not detected)"),
};
#define CASE_COUNT (sizeof cases / sizeof cases[0])

static const struct misuse_case *find_case(const char *name)
{
    for (size_t i = 0; i < CASE_COUNT; i++)
        if (strcmp(cases[i].name, name) == 0)
            return &cases[i];
    return NULL;
}

/* The child. */
static int run_case(const char *name)
{
    const struct misuse_case *chosen = find_case(name);
    if (!chosen || !chosen->run) {
        fprintf(stderr, "unknown case %s\n", name);
        return 2;
    }
    misuse_child_begin(!(chosen->flags & NO_PIN));
    size_t size = chosen->run();
    return misuse_child_finish(size);
}

/* ======================================================================= */
/* The parent                                                               */
/* ======================================================================= */

static int verbose;
static unsigned long runs, passed, failed, skipped;
static char failed_names[8192];

/* Does `text` contain "0x" followed by `hex` and then a non-hex character? */
static int contains_address(const char *text, const char *hex)
{
    size_t length = strlen(hex);
    for (const char *at = text; (at = strstr(at, "0x")) != NULL; at += 2)
        if (strncasecmp(at + 2, hex, length) == 0 && !isxdigit((unsigned char)at[2 + length]))
            return 1;
    return 0;
}

static int count_lines(const char *text)
{
    int lines = 0;
    for (const char *at = text; *at; at++)
        lines += *at == '\n';
    if (*text && text[strlen(text) - 1] != '\n')
        lines++;
    return lines;
}

/* The rest of the line of `text` that starts with `key`, or NULL. */
static const char *line_value(const char *text, const char *key, char *value, size_t size)
{
    size_t length = strlen(key);
    for (const char *line = text; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL)
        if (strncmp(line, key, length) == 0) {
            snprintf(value, size, "%s", line + length);
            value[strcspn(value, "\n")] = '\0';
            return value;
        }
    return NULL;
}

#ifndef MISUSE_HELPER
#define MISUSE_HELPER "api_heap_misuse_cxx"
#endif
#ifdef MISUSE_QUICK
#define MISUSE_MODES 1
#else
#define MISUSE_MODES 2
#endif

static const char *helper_path(void)
{
    static char path[4200];
    snprintf(path, sizeof path, "%s", self_path());
    char *slash = strrchr(path, '/');
    snprintf(slash ? slash + 1 : path, sizeof path - (size_t)(slash ? slash + 1 - path : 0),
             MISUSE_HELPER);
    return path;
}

static int contains_nocase(const char *text, const char *word)
{
    size_t length = strlen(word);
    for (const char *at = text; *at; at++)
        if (strncasecmp(at, word, length) == 0)
            return 1;
    return 0;
}

/* Judges one run. Returns 1 (pass), 0 (fail) or -1 (skip); `why` says why. */
static int judge(const struct misuse_case *c, int per_thread, int warn,
                 const struct child_result *result, char *why, size_t why_size)
{
    char front[64] = "", ptr[64] = "", distinct[300] = "", churn[300] = "", setup[200] = "";
    char invalid[32] = "", at_misuse[32] = "", forged[64] = "";
    int status = result->status;
    int exited0 = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    int aborted = WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
    int lines = count_lines(result->err);
    char err_line[240];
    snprintf(err_line, sizeof err_line, "%s", result->err);
    err_line[strcspn(err_line, "\n")] = '\0';

    line_value(result->out, "FRONT ", front, sizeof front);
    line_value(result->out, "PTR 0x", ptr, sizeof ptr);
    int has_distinct = line_value(result->out, "DISTINCT ", distinct, sizeof distinct) != NULL;
    int has_churn = line_value(result->out, "CHURN ", churn, sizeof churn) != NULL;
    int continued = strstr(result->out, "CONTINUED") != NULL;
    int returned_forged = line_value(result->out, "RETURNED_FORGED ", forged, sizeof forged) != NULL;
    unsigned long long invalid_frees = line_value(result->out, "INVALID_FREES ", invalid,
                                                  sizeof invalid)
                                           ? strtoull(invalid, NULL, 10)
                                           : 0;
    unsigned long long reports_at_misuse =
        line_value(result->out, "INVALID_FREES_AT_MISUSE ", at_misuse, sizeof at_misuse)
            ? strtoull(at_misuse, NULL, 10)
            : 0;
    int distinct_ok = has_distinct && strncmp(distinct, "ok", 2) == 0;
    int churn_ok = !warn || (has_churn && strncmp(churn, "ok", 2) == 0);
    int named = ptr[0] && contains_address(result->err, ptr);
    char consequence[700];
    snprintf(consequence, sizeof consequence, "%s%s%s%s", has_distinct ? "; after it: DISTINCT " : "",
             has_distinct ? distinct : "", has_churn ? "; CHURN " : "", has_churn ? churn : "");

    if (WIFEXITED(status) && WEXITSTATUS(status) == MISUSE_SETUP_FAILED &&
        line_value(result->out, "SETUP ", setup, sizeof setup)) {
        snprintf(why, why_size, "the test's set-up failed: %s", setup);
        return 0;
    }
    if (!front[0]) {
        snprintf(why, why_size, "the child did not start (%s; stderr: \"%s\")",
                 describe_status(status), err_line);
        return 0;
    }
    if (!per_thread && strcmp(front, "per-cpu") != 0) {
        snprintf(why, why_size, "no per-CPU caches here (front end %s)", front);
        return -1;
    }
    if (per_thread && strcmp(front, "per-thread") != 0) {
        snprintf(why, why_size, "XMM_RSEQ=0 gave the front end %s", front);
        return 0;
    }

    switch (c->expect) {
    case DETECTED: {
        /* A report may come at the misuse or later, when the block next
         * moves between a cache and the central layer (checks on the
         * refill and drain paths), but before any block is handed out
         * twice: the heap checks then find nothing wrong. */
        int late = reports_at_misuse == 0 && continued;
        const char *when = late ? "reported late (in the heap checks after the misuse, before "
                                  "any block was handed out twice)"
                                : "reported at the misuse";
        int distinct_bad = has_distinct && !distinct_ok;
        /* A sized delete of the wrong size names its likely cause. */
        int sized = !strncmp(c->name, "cxx_sized_delete_", 17) ||
                    !strncmp(c->name, "cxx_array_sized_delete_", 23);
        int hinted = !sized || strstr(result->err, "without a virtual destructor") != NULL;
        if (!warn) {
            if (aborted && named && lines == 1 && !distinct_bad && !hinted) {
                snprintf(why, why_size, "reported without naming its likely cause: \"%s\"",
                         err_line);
                return 0;
            }
            if (aborted && named && lines == 1 && !distinct_bad) {
                snprintf(why, why_size, "%s and aborted: \"%s\"", when, err_line);
                return 1;
            }
            if (aborted && distinct_bad)
                snprintf(why, why_size, "reported only after a block was handed out twice "
                         "(\"%s\")%s", err_line, consequence);
            else if (aborted)
                snprintf(why, why_size, "aborted, but the report is not one line naming 0x%s "
                         "(%d lines: \"%s\")", ptr, lines, err_line);
            else if (exited0 && !result->err[0])
                snprintf(why, why_size, "NOT DETECTED: no report, the child went on%s",
                         consequence);
            else if (exited0)
                snprintf(why, why_size, "reported (\"%s\") but did not abort%s", err_line,
                         consequence);
            else if (continued)
                snprintf(why, why_size, "NOT DETECTED, and the child %s in the heap checks after "
                         "it (stderr: \"%s\")%s", describe_status(status), err_line, consequence);
            else
                snprintf(why, why_size, "the child %s (stderr: \"%s\")%s",
                         describe_status(status), err_line, consequence);
            return 0;
        }
        if (exited0 && named && lines == 1 && distinct_ok && churn_ok && invalid_frees >= 1) {
            snprintf(why, why_size, "%s, went on, heap consistent (%s)", when, err_line);
            return 1;
        }
        if (!exited0 && continued)
            snprintf(why, why_size, "%s, and the child %s in the heap checks after it "
                     "(stderr: \"%s\")%s", result->err[0] ? "reported" : "NOT DETECTED",
                     describe_status(status), err_line, consequence);
        else if (!exited0)
            snprintf(why, why_size, "the child %s (stderr: \"%s\")%s", describe_status(status),
                     err_line, consequence);
        else if (!result->err[0])
            snprintf(why, why_size, "NOT DETECTED: no report%s", consequence);
        else if (!distinct_ok || !churn_ok)
            snprintf(why, why_size, "reported (\"%s\"), but the heap is not consistent%s",
                     err_line, consequence);
        else if (!named || lines != 1)
            snprintf(why, why_size, "the report is not one line naming 0x%s (%d lines: \"%s\")%s",
                     ptr, lines, err_line, consequence);
        else
            snprintf(why, why_size, "reported, but xmm_stats invalid_frees is %llu",
                     invalid_frees);
        return 0;
    }

    case CORRUPTION:
        if (returned_forged) {
            snprintf(why, why_size, "malloc RETURNED THE FORGED ADDRESS %s (stderr: \"%s\")",
                     forged, err_line);
            return 0;
        }
        if (aborted) {
            if (lines == 1 && strncmp(result->err, "xmm: ", 5) == 0 &&
                contains_nocase(result->err, "corrupt")) {
                snprintf(why, why_size, "reported as corruption and aborted: \"%s\"", err_line);
                return 1;
            }
            snprintf(why, why_size, "aborted, but not with one \"xmm: ... corrupt...\" line "
                     "(%d lines: \"%s\")", lines, err_line);
            return 0;
        }
        if (exited0 && distinct_ok && churn_ok &&
            (!result->err[0] || contains_nocase(result->err, "corrupt"))) {
            snprintf(why, why_size, "survived, the forged address never returned%s%s",
                     result->err[0] ? ", reported: " : " (not reported)", err_line);
            return 1;
        }
        snprintf(why, why_size, "the child %s (stderr: \"%s\")%s", describe_status(status),
                 err_line, consequence);
        return 0;

    case ACCEPTED:
        if (exited0 && !result->err[0] && distinct_ok) {
            snprintf(why, why_size, "accepted silently");
            return 1;
        }
        snprintf(why, why_size, "a correct program was %s (stderr: \"%s\")%s",
                 exited0 ? "reported" : describe_status(status), err_line, consequence);
        return 0;

    case UNDETECTED:
        if (exited0 && distinct_ok) {
            snprintf(why, why_size, "%s", result->err[0] ? "went on after a report"
                                                         : "not detected, as documented; heap "
                                                           "consistent");
            return 1;
        }
        /* Heap corruption stops the process whatever XMM_INVALID_FREE says
         * (an overflow into a never-used object is seen when it is cut). */
        if (aborted && lines == 1 && strncmp(result->err, "xmm: ", 5) == 0 &&
            (!warn || strstr(result->err, "corrupt"))) {
            snprintf(why, why_size, "detected (beyond the promise): \"%s\"", err_line);
            return 1;
        }
        snprintf(why, why_size, "the child %s (stderr: \"%s\")%s", describe_status(status),
                 err_line, consequence);
        return 0;
    }
    return 0;
}

static void run_variant(const struct misuse_case *c, int per_thread, int warn)
{
    static struct child_result result;
    const char *program = (c->flags & CXX) ? helper_path() : self_path();
    int churn = warn && (c->expect == DETECTED || c->expect == CORRUPTION);
    char *argv[] = {(char *)program, "--case", (char *)c->name, churn ? "churn" : NULL, NULL};
    /* The runner's own variable would draw an "unknown variable" line. */
    const char *const unset[] = {"XMM_INVALID_FREE", "XMM_RSEQ", "XMM_TEST_TIMEOUT",
                                 "XMM_DECAY_MS", NULL};
    const char *add[5];
    int added = 0;
    if (warn)
        add[added++] = "XMM_INVALID_FREE=warn";
    if (per_thread)
        add[added++] = "XMM_RSEQ=0";
    if (c->env)
        add[added++] = c->env;
    if (c->env && !strncmp(c->env, "XMM_PROFILE=", 12))
        add[added++] = "XMM_PROFILE_FILE=/dev/null"; /* no profile left behind at exit */
    add[added] = NULL;

    char label[200], why[1400];
    snprintf(label, sizeof label, "[item %d] %s (%s, %s)", c->item, c->name,
             per_thread ? "per-thread" : "per-cpu", warn ? "warn" : "abort");
    runs++;
    double started = now_seconds();
    int verdict;
    if (access(program, X_OK) != 0) {
        snprintf(why, sizeof why, "%s is not built", program);
        verdict = 0;
    } else if (run_child(argv, unset, add, 40, &result) != 0) {
        snprintf(why, sizeof why, "could not start the child");
        verdict = 0;
    } else {
        verdict = judge(c, per_thread, warn, &result, why, sizeof why);
    }
    if (!per_thread && strstr(result.out, "SAME_SLAB"))
        snprintf(why + strlen(why), sizeof why - strlen(why),
                 " (B got A's mm_cid: both frees met the same per-CPU cache, which only "
                 "tests the single-cache check)");
    const char *word = verdict > 0 ? "PASS" : verdict < 0 ? "SKIP" : "FAIL";
    printf("%s  %s: %s [%.2f s]\n", word, label, why, now_seconds() - started);
    if (verbose || verdict == 0) {
        if (verbose || result.out_length < 2000) {
            printf("      | expected: %s; %s\n", expect_names[c->expect], c->what);
        }
        if (verbose) {
            printf("      | stdout:\n%s      | stderr:\n%s", result.out, result.err);
        }
    }
    fflush(stdout);
    if (verdict > 0) {
        passed++;
    } else if (verdict < 0) {
        skipped++;
    } else {
        failed++;
        size_t used = strlen(failed_names);
        snprintf(failed_names + used, sizeof failed_names - used, " %s(%s,%s)", c->name,
                 per_thread ? "thread" : "cpu", warn ? "warn" : "abort");
    }
}

static int selected(const char *name, int count, char **patterns)
{
    if (count == 0)
        return 1;
    for (int i = 0; i < count; i++)
        if (fnmatch(patterns[i], name, 0) == 0)
            return 1;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "--case") == 0) {
        misuse_churn_wanted = argc >= 4 && strcmp(argv[3], "churn") == 0;
        return run_case(argv[2]);
    }
    int first = 1;
    if (argc > 1 && strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; i < CASE_COUNT; i++)
            printf("%-44s item %d  %-10s %s%s\n", cases[i].name, cases[i].item,
                   expect_names[cases[i].expect], cases[i].what,
                   cases[i].flags & BOTH_FRONTS ? " [per-cpu and per-thread]" : "");
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "-v") == 0) {
        verbose = 1;
        first = 2;
    }
    expect_malloc_is_xmm();
    double start = now_seconds();
    for (size_t i = 0; i < CASE_COUNT; i++) {
        const struct misuse_case *c = &cases[i];
        if (!selected(c->name, argc - first, argv + first))
            continue;
        for (int per_thread = 0; per_thread < MISUSE_MODES; per_thread++) {
            if (per_thread && !(c->flags & BOTH_FRONTS))
                break;
            for (int warn = 0; warn < MISUSE_MODES; warn++)
                run_variant(c, per_thread, warn);
        }
    }
    printf("heap_misuse: %lu runs, %lu passed, %lu failed, %lu skipped (%.1f s)\n", runs, passed,
           failed, skipped, now_seconds() - start);
    if (failed)
        printf("failing:%s\n", failed_names);
    fflush(stdout);
    return failed || check_failed_count ? 1 : 0;
}
