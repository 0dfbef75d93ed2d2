/*
 * thread_cache.c - per-thread caches: the front end where rseq is not used,
 * and the slow paths behind the inline fast paths of front_end.h.
 */

#include "base/base.h"
#include "backend/backend.h"
#include "central.h"
#include "thread_cache.h"


static xmm_os_thread_key exit_key;
static bool key_made; /* init phase 2 made exit_key: threads get caches */
static struct xmm_lock registry_lock = XMM_LOCK_INITIALIZER;
static struct xmm_thread_cache *registry;       /* every cache ever made */
/* Caches of exited threads: warm ones (slot arrays resident), taken
 * first, and cold ones (purged: purge_slots); how many warm. */
static struct xmm_thread_cache *recycled_warm, *recycled_cold;
static unsigned warm_count; /* written under the lock (atomic stores: read as a hint without it) */
/* The process the caches serve (init, and each fork child): a vfork child
 * (or a clone sharing the memory) runs on its parent thread's TLS and is
 * not it; it takes no cache (take_cache). */
static int cache_process;

/* Stands in for the cache of a thread that is exiting (or of calls made
 * before init completed): no capacity, a node no object has, so both fast
 * paths miss and the slow paths talk to the central layer directly. */
static struct xmm_thread_cache cacheless = {.node = -1};

/* Operations the slow paths complete (atomic: slow paths only). */
static struct {
    uint64_t allocations[XMM_CLASS_COUNT];
    uint64_t frees[XMM_CLASS_COUNT];
} slow_counts;

static void thread_exit(void *cache);

int xmm_thread_cache_init(void)
{
    if (xmm_os_thread_key_create(&exit_key, thread_exit) != 0)
        return -1;
    cache_process = xmm_os_process_id();
    __atomic_store_n(&key_made, true, __ATOMIC_RELEASE);
    return 0;
}

/* ---- creating and recycling caches ----------------------------------------------- */

/* ---- capacity: XMM_THREAD_CACHE_SIZE bounds each cache ----------------------------
 *
 * A cache's bins hold at most its budget in objects, in all: each bin's
 * capacity is granted from it a step at a time (a batch, or less where
 * the budget is small: what a refill brings and a drain takes) when the
 * bin needs it (a refill of an empty bin, a free into a full one), up to
 * the bin's limit (a sixteenth of XMM_THREAD_CACHE_SIZE in its objects, at
 * most THREAD_BIN_MOST). When the budget is spent, bins holding more
 * capacity in bytes give steps back (their objects beyond it drain). The
 * budget is XMM_THREAD_CACHE_SIZE, or less when many threads have caches:
 * all of them share sixteen times that (32 MiB at the default), so a thousand
 * threads do not keep a thousand budgets. So a thread that goes idle
 * keeps at most its budget, however many classes it went through. (With a
 * share per class and a floor of two batches, every class it had touched
 * kept up to 256 KiB: 4.7 MiB a thread, 918 MiB for 200 idle threads of a
 * thread-per-connection server without rseq, found by trying one.) A
 * class whose single object is beyond the budget is not cached: its
 * objects go to and from the central layer one at a time. TCMalloc's
 * per-thread caches (gperftools) also give each thread a share of one
 * total, grow a list as it overflows and take back from the others. */

#define SHARED_BUDGETS 16 /* all caches together: this many XMM_THREAD_CACHE_SIZE */

static unsigned caches_in_use; /* atomic: taken and not yet given back */

static uint64_t cache_budget(void)
{
    uint64_t each = xmm_config.thread_cache_bytes;
    uint64_t in_use = __atomic_load_n(&caches_in_use, __ATOMIC_RELAXED);
    uint64_t share = SHARED_BUDGETS * each / (in_use > 1 ? in_use : 1);
    return share < each ? share : each;
}

/* Objects a refill brings, a drain takes and a grant adds: a batch, or a
 * quarter of the budget in objects if less (at least one). */
static uint32_t move_count(unsigned size_class, uint64_t budget)
{
    const struct xmm_size_class *info = &xmm_size_classes[size_class];
    uint64_t by_budget = budget / 4 / info->size;
    if (by_budget < 1)
        by_budget = 1;
    return by_budget < info->batch ? (uint32_t)by_budget : info->batch;
}

/* The most objects a bin may be granted. A program that holds a thousand
 * blocks of a class and frees them in turn (bench/micro's batch1000) cycles
 * them through the bin instead of through the central layer: with 256 its
 * refills and drains took two threads on two cores 2-7 times as long a
 * round as one thread (bench/analysis.md, "batch1000 with four threads on
 * two cores"). gperftools' lists grow to 8192. */
#define THREAD_BIN_MOST 2048

static uint32_t bin_limit(unsigned size_class)
{
    const struct xmm_size_class *info = &xmm_size_classes[size_class];
    size_t by_bytes = xmm_config.thread_cache_bytes / 16 / info->size;
    if (by_bytes > THREAD_BIN_MOST)
        by_bytes = THREAD_BIN_MOST;
    return by_bytes > info->batch ? (uint32_t)by_bytes : info->batch;
}

static void drain_bin(struct xmm_thread_cache *cache, unsigned size_class, uint32_t count);

/* Sets a bin's capacity, its objects beyond it drained, and keeps the
 * cache's sum. */
static void set_capacity(struct xmm_thread_cache *cache, unsigned size_class, uint32_t capacity)
{
    struct xmm_cache_bin *bin = &cache->bins[size_class];
    if (bin->count > capacity)
        drain_bin(cache, size_class, bin->count - capacity);
    uint64_t size = xmm_size_classes[size_class].size;
    cache->granted_bytes = cache->granted_bytes - bin->capacity * size + capacity * size;
    bin->capacity = capacity;
}

/* The bin other than `except` that holds the most capacity in bytes, if
 * it holds more than `than` bytes; 0 if none. */
static unsigned richest_bin(const struct xmm_thread_cache *cache, unsigned except, uint64_t than)
{
    unsigned richest = 0;
    for (unsigned size_class = 1; size_class < XMM_CLASS_COUNT; size_class++) {
        uint64_t bytes = (uint64_t)cache->bins[size_class].capacity * xmm_size_classes[size_class].size;
        if (size_class != except && bytes > than) {
            richest = size_class;
            than = bytes;
        }
    }
    return richest;
}

/* Takes a step of capacity back from the richest bins other than `except`
 * until the cache's grants plus `more` fit `budget`, from bins richer
 * than `floor` bytes only. false if they do not fit. */
static bool give_back(struct xmm_thread_cache *cache, unsigned except, uint64_t more,
                      uint64_t floor, uint64_t budget)
{
    while (cache->granted_bytes + more > budget) {
        unsigned richest = richest_bin(cache, except, floor);
        if (!richest)
            return false;
        uint32_t capacity = cache->bins[richest].capacity;
        uint32_t step = move_count(richest, budget);
        set_capacity(cache, richest, capacity > step ? capacity - step : 0);
    }
    return true;
}

/* Grants the bin one more step of capacity, from the budget or else from
 * the bins richer than it will then be. false if it cannot have it (at
 * its limit, or nothing left to take). Caches over a budget that shrank
 * (more threads) come back under it here too. */
static bool grow_bin(struct xmm_thread_cache *cache, unsigned size_class)
{
    uint64_t budget = cache_budget();
    if (cache->granted_bytes > budget)
        give_back(cache, 0, 0, 0, budget);
    struct xmm_cache_bin *bin = &cache->bins[size_class];
    uint64_t size = xmm_size_classes[size_class].size;
    uint32_t capacity = bin->capacity + move_count(size_class, budget);
    if (capacity > bin->limit)
        capacity = bin->limit;
    if (capacity <= bin->capacity ||
        !give_back(cache, size_class, (capacity - bin->capacity) * size, capacity * size, budget))
        return false;
    set_capacity(cache, size_class, capacity);
    return true;
}

/* A cache with no capacity yet, not yet registered: its slot arrays are
 * sized to the bins' limits (address space; only used slots are touched). */
static struct xmm_thread_cache *new_cache(void)
{
    size_t slots = 0;
    for (unsigned size_class = 1; size_class < XMM_CLASS_COUNT; size_class++)
        slots += bin_limit(size_class);
    size_t bytes = sizeof(struct xmm_thread_cache) + slots * sizeof(void *);
    struct xmm_thread_cache *cache = xmm_metadata_alloc(bytes, XMM_CACHE_LINE);
    if (!cache)
        return NULL;
    void **slot = (void **)(cache + 1);
    for (unsigned size_class = 1; size_class < XMM_CLASS_COUNT; size_class++) {
        cache->bins[size_class].slots = slot;
        cache->bins[size_class].limit = bin_limit(size_class);
        slot += cache->bins[size_class].limit;
    }
    return cache;
}

/* Caches in use when the last sweep ended, times two (at least
 * SWEEP_FIRST): the next sweep (sweep_orphans) runs once that many are in
 * use with none recycled, so that its system call per cache in use costs
 * O(1) calls a cache taken. */
#define SWEEP_FIRST 64u
static unsigned sweep_at = SWEEP_FIRST;

static void release_cache(struct xmm_thread_cache *cache);

/* Registry lock held: lists a released cache, warm or cold as
 * release_cache left it. */
static void list_recycled(struct xmm_thread_cache *cache)
{
    struct xmm_thread_cache **list = cache->slots_purged ? &recycled_cold : &recycled_warm;
    cache->next_free = *list;
    __atomic_store_n(list, cache, __ATOMIC_RELEASE);
    if (!cache->slots_purged)
        __atomic_store_n(&warm_count, warm_count + 1, __ATOMIC_RELAXED);
}

/* `count` caches no longer in use, never below none: a fork child counts
 * its thread's cache afresh, and one a signal handler's fork caught on
 * its way to its thread is not counted there. */
static void count_caches_gone(unsigned count)
{
    unsigned seen = __atomic_load_n(&caches_in_use, __ATOMIC_RELAXED);
    while (!__atomic_compare_exchange_n(&caches_in_use, &seen, seen > count ? seen - count : 0,
                                        true, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
}

/* Registry lock held, released and taken again (false if it could not
 * be: it is then not held): recycles the caches of
 * threads that are gone without their exit destructor having run. A
 * thread whose first allocation comes in the last round of pthread key
 * destructors makes its cache there, and the exit key it sets then is
 * never run: the cache, its objects and its slot arrays stayed with a
 * dead thread (60-70 KB of memory and 260 KB of metadata a thread: 876 MB
 * of RSS after 15,000 such threads; tests/override/thread_exit_late.c).
 * Found by asking the kernel whether each owner still exists: a thread
 * that exists, or still exits, keeps its cache; one that is gone runs
 * nothing more. Only the calling process's caches are looked at: a fork
 * child's of its parent's threads have no owner (after_fork_child).
 *
 * The orphans are emptied and listed as recycled with the lock held,
 * though emptying them drains their objects to the central layer. A
 * first version released the lock meanwhile: a thread that found none
 * recycled then made a new cache, and with threads exiting four at a
 * time one thread in some 300 did, 0.8 KB of metadata for every thread
 * that lived, without bound. A second listed them full, for their taker
 * to empty, and kept their objects until a new thread came. */
static void sweep_orphans(int process)
{
    unsigned count = 0;
    for (struct xmm_thread_cache *cache = registry; cache; cache = cache->next) {
        if (cache->owner_thread == 0 || cache->owner_process != process ||
            !xmm_os_thread_gone(process, cache->owner_thread))
            continue;
        cache->owner_process = cache->owner_thread = 0;
        release_cache(cache); /* its thread is gone: no one else touches it */
        list_recycled(cache);
        count++;
    }
    if (count)
        count_caches_gone(count);
    unsigned in_use = __atomic_load_n(&caches_in_use, __ATOMIC_RELAXED);
    unsigned next = in_use < UINT32_MAX / 2 ? in_use * 2 : UINT32_MAX;
    __atomic_store_n(&sweep_at, next > SWEEP_FIRST ? next : SWEEP_FIRST, __ATOMIC_RELAXED);
}

/* A recycled cache, else a new one, registered; owned by the calling
 * thread. NULL if metadata cannot be had, in a signal handler that
 * interrupted this thread inside the registry lock, or in a vfork child
 * (cache_process): the caller then allocates without a cache. A cache
 * that a vfork child made was its parent thread's too, with the child as
 * owner: once the child was gone, a sweep recycled it under the parent. */
static struct xmm_thread_cache *take_cache(void)
{
    int process = xmm_os_process_id(), thread = xmm_os_thread_id();
    if (process != __atomic_load_n(&cache_process, __ATOMIC_RELAXED) ||
        !xmm_lock_acquire(&registry_lock))
        return NULL;
    if (!recycled_warm && !recycled_cold &&
        __atomic_load_n(&caches_in_use, __ATOMIC_RELAXED) >=
            __atomic_load_n(&sweep_at, __ATOMIC_RELAXED))
        sweep_orphans(process);
    struct xmm_thread_cache *cache = recycled_warm ? recycled_warm : recycled_cold;
    if (cache == recycled_warm && cache) {
        recycled_warm = cache->next_free;
        if (warm_count > 0)
            __atomic_store_n(&warm_count, warm_count - 1, __ATOMIC_RELAXED);
    } else if (cache) {
        recycled_cold = cache->next_free;
    } else {
        cache = new_cache();
        if (cache) {
            cache->next = registry;
            /* Published after its link (see xmm_thread_cache_after_fork_child). */
            __atomic_store_n(&registry, cache, __ATOMIC_RELEASE);
        }
    }
    if (cache) {
        cache->owner_process = process;
        cache->owner_thread = thread;
    }
    xmm_lock_release(&registry_lock);
    if (cache)
        __atomic_fetch_add(&caches_in_use, 1, __ATOMIC_RELAXED);
    return cache;
}

/* The calling thread's cache, created on first use; &cacheless while XMM
 * is still initialising or the thread is exiting. */
static struct xmm_thread_cache *current_cache(void)
{
    struct xmm_thread_cache *cache = xmm_thread.thread_cache;
    if (cache)
        return cache;
    if (!__atomic_load_n(&key_made, __ATOMIC_ACQUIRE))
        return &cacheless;
    cache = take_cache();
    if (!cache)
        return &cacheless;
    cache->node = xmm_node_of_cpu(xmm_os_current_cpu());
    xmm_thread.thread_cache = cache;
    /* pthread_setspecific may allocate (keys beyond the first 32): the
     * cache is already in place, so that allocation is served from it. */
    xmm_os_thread_key_set(exit_key, cache);
    return cache;
}

/* ---- moving objects to and from the central layer ------------------------------------ */

static void drain_bin(struct xmm_thread_cache *cache, unsigned size_class, uint32_t count)
{
    struct xmm_cache_bin *bin = &cache->bins[size_class];
    while (count) {
        uint32_t batch = xmm_size_classes[size_class].batch;
        if (batch > count)
            batch = count;
        bin->count -= batch;
        xmm_central_drain(cache->node, size_class, bin->slots + bin->count, batch,
                          XMM_CENTRAL_NO_CARVER);
        count -= batch;
    }
}

static void flush_cache(struct xmm_thread_cache *cache)
{
    if (cache->node < 0)
        return;
    for (unsigned size_class = 1; size_class < XMM_CLASS_COUNT; size_class++)
        drain_bin(cache, size_class, cache->bins[size_class].count);
}

/* The whole pages of an empty cache's slot arrays go back to the kernel
 * once WARM_RECYCLED warm caches wait to be recycled: the cache is then
 * listed cold, taken after every warm one, and its taker faults in the
 * pages it uses. Kept, they stayed resident after their thread: 4,000
 * threads that each went through tens of classes, then exited, left 159
 * MB resident, nearly all of it slot arrays, where glibc kept 63 MB
 * (found by trying many threads with XMM_RSEQ=0). Not below that: a
 * purge at every thread exit took threads that come and go four at a
 * time from 1.5 s to 2.8 s for 40,000 of them (the system call, its TLB
 * shootdown, the next taker's faults); nor taken first, as on one LIFO
 * list, where after a burst of 64 threads every later exit purged (found
 * in review). */
#define WARM_RECYCLED 16

static void purge_slots(struct xmm_thread_cache *cache)
{
    cache->slots_purged = false;
    const struct xmm_cache_bin *last = &cache->bins[XMM_CLASS_COUNT - 1];
    if (!last->slots || __atomic_load_n(&warm_count, __ATOMIC_RELAXED) < WARM_RECYCLED)
        return; /* cacheless, or listed warm */
    size_t page = xmm_os_page_size();
    uintptr_t start = xmm_align_up((uintptr_t)(cache + 1), page);
    uintptr_t end = (uintptr_t)(last->slots + last->limit) & ~(uintptr_t)(page - 1);
    if (end > start)
        xmm_os_purge((void *)start, end - start, false);
    cache->slots_purged = true;
}

/* Empty, and every bin's capacity back to the budget: a recycled cache
 * starts as a new one. */
static void release_cache(struct xmm_thread_cache *cache)
{
    flush_cache(cache);
    for (unsigned size_class = 1; size_class < XMM_CLASS_COUNT; size_class++) {
        cache->bins[size_class].capacity = 0;
        cache->bins[size_class].refills_started = 0;
    }
    cache->granted_bytes = 0;
    purge_slots(cache);
}

void xmm_thread_cache_flush_current(void)
{
    struct xmm_thread_cache *cache = xmm_thread.thread_cache;
    if (cache && cache != &cacheless)
        flush_cache(cache);
}

static void thread_exit(void *argument)
{
    struct xmm_thread_cache *cache = argument;
    release_cache(cache);
    count_caches_gone(1);
    /* From here on this thread's allocations (from later destructors) go
     * straight to the central layer. */
    xmm_thread.thread_cache = &cacheless;
    if (!xmm_lock_acquire(&registry_lock))
        return; /* cannot happen in a destructor; the cache would leak */
    cache->owner_process = cache->owner_thread = 0;
    list_recycled(cache);
    xmm_lock_release(&registry_lock);
}

static void *alloc_without_cache(unsigned size_class)
{
    void *object;
    int node = xmm_node_of_cpu(xmm_os_current_cpu());
    if (!xmm_central_refill(node, size_class, &object, 1, XMM_CENTRAL_NO_CARVER))
        return NULL;
    __atomic_fetch_add(&slow_counts.allocations[size_class], 1, __ATOMIC_RELAXED);
    return object;
}

void *xmm_thread_cache_alloc_slow(unsigned size_class)
{
    struct xmm_thread_cache *cache = current_cache();
    if (cache == &cacheless)
        return alloc_without_cache(size_class);
    struct xmm_cache_bin *bin = &cache->bins[size_class];
    if (bin->count) /* the cache was only just created */
        goto pop;
    /* A thread that moved to another node's CPU keeps nothing of the old
     * node: its objects go home, and its memory comes from the new node. */
    int node = xmm_node_of_cpu(xmm_os_current_cpu());
    if (XMM_UNLIKELY(node != cache->node)) {
        flush_cache(cache);
        cache->node = node;
    }
    uint32_t wanted = move_count(size_class, cache_budget());
    if (bin->capacity < wanted && !grow_bin(cache, size_class) && !bin->capacity)
        return alloc_without_cache(size_class); /* an object is beyond the budget */
    if (wanted > bin->capacity)
        wanted = bin->capacity;
    /* Slow start, as the per-CPU caches' refills (cpu_cache.c,
     * refill_count): one object first, twice as many each time after. */
    if (bin->refills_started < 8 && (1u << bin->refills_started) < wanted)
        wanted = 1u << bin->refills_started++;
    uint32_t got = xmm_central_refill(node, size_class, bin->slots, wanted, XMM_CENTRAL_NO_CARVER);
    if (!got)
        return NULL;
    xmm_central_hand_out_order(bin->slots, got);
    bin->count = got;
    cache->refills++;
    if ((cache->refills & 63) == 0) /* upkeep reads the clock: not every time */
        xmm_central_maintain(node, xmm_os_now_ns());
pop:
    __atomic_fetch_add(&slow_counts.allocations[size_class], 1, __ATOMIC_RELAXED);
    return bin->slots[--bin->count];
}

void xmm_thread_cache_free_slow(void *object, unsigned size_class, unsigned node)
{
    struct xmm_thread_cache *cache = current_cache();
    if (cache == &cacheless || (int)node != cache->node) {
        /* Goes home: straight back to its span in its own node's central
         * layer, never into this cache. */
        if (cache != &cacheless)
            cache->cross_node_frees++;
        __atomic_fetch_add(&slow_counts.frees[size_class], 1, __ATOMIC_RELAXED);
        xmm_central_return_object(object);
        return;
    }
    struct xmm_cache_bin *bin = &cache->bins[size_class];
    if (bin->count >= bin->capacity && !grow_bin(cache, size_class)) {
        if (!bin->capacity) { /* an object is beyond the budget: not cached */
            __atomic_fetch_add(&slow_counts.frees[size_class], 1, __ATOMIC_RELAXED);
            xmm_central_drain(cache->node, size_class, &object, 1, XMM_CENTRAL_NO_CARVER);
            return;
        }
        uint32_t count = move_count(size_class, cache_budget());
        drain_bin(cache, size_class, count < bin->count ? count : bin->count);
        cache->drains++;
    }
    __atomic_fetch_add(&slow_counts.frees[size_class], 1, __ATOMIC_RELAXED);
    bin->slots[bin->count++] = object;
}

/* ---- statistics and fork ----------------------------------------------------------- */

void xmm_thread_cache_stats(struct xmm_front_stats *stats)
{
    for (unsigned size_class = 1; size_class < XMM_CLASS_COUNT; size_class++) {
        stats->slow_allocations[size_class] +=
            __atomic_load_n(&slow_counts.allocations[size_class], __ATOMIC_RELAXED);
        stats->slow_frees[size_class] +=
            __atomic_load_n(&slow_counts.frees[size_class], __ATOMIC_RELAXED);
    }
    if (!xmm_lock_acquire(&registry_lock))
        return; /* statistics from a signal handler inside the lock */
    for (struct xmm_thread_cache *cache = registry; cache; cache = cache->next) {
        stats->thread_caches++;
        stats->refills += __atomic_load_n(&cache->refills, __ATOMIC_RELAXED);
        stats->drains += __atomic_load_n(&cache->drains, __ATOMIC_RELAXED);
        stats->cross_node_frees += __atomic_load_n(&cache->cross_node_frees, __ATOMIC_RELAXED);
        for (unsigned size_class = 1; size_class < XMM_CLASS_COUNT; size_class++) {
            uint64_t objects = __atomic_load_n(&cache->bins[size_class].count, __ATOMIC_RELAXED);
            stats->cached_objects[size_class] += objects;
            stats->cached_bytes += objects * xmm_size_classes[size_class].size;
        }
    }
    xmm_lock_release(&registry_lock);
}

/* Every update of the registry and of the recycled lists is one pointer
 * store (a push links the new entry first and publishes it with a release
 * store, so the compiler cannot put the two the other way round; the
 * count of warm caches, a hint, may be left off by one), so a holder cut
 * off by fork left every list consistent: only the lock needs repair. The caches of
 * the parent's other threads stay listed; their objects leak in the child:
 * they lose their owners, so that no sweep of the child takes them (their
 * bins may be half updated, and caches_in_use no longer counts them). So
 * does a cache a signal handler's fork caught between take_cache and its
 * thread (it is the child thread's, and its exit recycles it). */
void xmm_thread_cache_after_fork_child(void)
{
    if (xmm_lock_holder(&registry_lock) == XMM_LOCK_HELD_BY_OTHER)
        xmm_lock_reset(&registry_lock);
    int process = xmm_os_process_id();
    __atomic_store_n(&cache_process, process, __ATOMIC_RELAXED);
    for (struct xmm_thread_cache *cache = registry; cache; cache = cache->next)
        cache->owner_process = cache->owner_thread = 0;
    /* The child's one thread: the others' caches leaked, and must not
     * shrink its share of the budget. Its cache is its own now. */
    struct xmm_thread_cache *own = xmm_thread.thread_cache;
    __atomic_store_n(&caches_in_use, own && own != &cacheless ? 1u : 0u, __ATOMIC_RELAXED);
    __atomic_store_n(&sweep_at, SWEEP_FIRST, __ATOMIC_RELAXED);
    if (own && own != &cacheless) {
        own->owner_process = process;
        own->owner_thread = xmm_os_thread_id();
    }
}
