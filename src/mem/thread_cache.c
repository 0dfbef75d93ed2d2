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
static struct xmm_thread_cache *recycled;       /* caches of exited threads */

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
    __atomic_store_n(&key_made, true, __ATOMIC_RELEASE);
    return 0;
}

/* ---- creating and recycling caches ----------------------------------------------- */

/* Objects a bin holds at most: a share of XMM_THREAD_CACHE_SIZE (1/16 per
 * class), never fewer than two batches so a refill and a drain both fit. */
static uint32_t bin_capacity(unsigned size_class)
{
    const struct xmm_size_class *info = &xmm_size_classes[size_class];
    size_t by_bytes = xmm_config.thread_cache_bytes / 16 / info->size;
    if (by_bytes > 256)
        by_bytes = 256;
    return by_bytes > 2 * info->batch ? (uint32_t)by_bytes : 2 * info->batch;
}

/* A cache of every class's capacity, not yet registered. */
static struct xmm_thread_cache *new_cache(void)
{
    size_t slots = 0;
    for (unsigned size_class = 1; size_class < XMM_CLASS_COUNT; size_class++)
        slots += bin_capacity(size_class);
    size_t bytes = sizeof(struct xmm_thread_cache) + slots * sizeof(void *);
    struct xmm_thread_cache *cache = xmm_metadata_alloc(bytes, XMM_CACHE_LINE);
    if (!cache)
        return NULL;
    void **slot = (void **)(cache + 1);
    for (unsigned size_class = 1; size_class < XMM_CLASS_COUNT; size_class++) {
        cache->bins[size_class].slots = slot;
        cache->bins[size_class].capacity = bin_capacity(size_class);
        slot += cache->bins[size_class].capacity;
    }
    return cache;
}

/* A recycled cache, else a new one, registered. NULL if metadata cannot be
 * had, or in a signal handler that interrupted this thread inside the
 * registry lock (it then allocates without a cache). */
static struct xmm_thread_cache *take_cache(void)
{
    if (!xmm_lock_acquire(&registry_lock))
        return NULL;
    struct xmm_thread_cache *cache = recycled;
    if (cache) {
        recycled = cache->next_free;
    } else {
        cache = new_cache();
        if (cache) {
            cache->next = registry;
            /* Published after its link (see xmm_thread_cache_after_fork_child). */
            __atomic_store_n(&registry, cache, __ATOMIC_RELEASE);
        }
    }
    xmm_lock_release(&registry_lock);
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
        xmm_central_drain(cache->node, size_class, bin->slots + bin->count, batch);
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

void xmm_thread_cache_flush_current(void)
{
    struct xmm_thread_cache *cache = xmm_thread.thread_cache;
    if (cache && cache != &cacheless)
        flush_cache(cache);
}

static void thread_exit(void *argument)
{
    struct xmm_thread_cache *cache = argument;
    flush_cache(cache);
    /* From here on this thread's allocations (from later destructors) go
     * straight to the central layer. */
    xmm_thread.thread_cache = &cacheless;
    if (!xmm_lock_acquire(&registry_lock))
        return; /* cannot happen in a destructor; the cache would leak */
    cache->next_free = recycled;
    __atomic_store_n(&recycled, cache, __ATOMIC_RELEASE);
    xmm_lock_release(&registry_lock);
}

static void *alloc_without_cache(unsigned size_class)
{
    void *object;
    int node = xmm_node_of_cpu(xmm_os_current_cpu());
    if (!xmm_central_refill(node, size_class, &object, 1))
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
    uint32_t wanted = xmm_size_classes[size_class].batch;
    uint32_t got = xmm_central_refill(node, size_class, bin->slots, wanted);
    if (!got)
        return NULL;
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
    if (bin->count >= bin->capacity) {
        drain_bin(cache, size_class, xmm_size_classes[size_class].batch);
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

/* Every update of the registry and of the recycled list is one pointer
 * store (a push links the new entry first and publishes it with a release
 * store, so the compiler cannot put the two the other way round), so a
 * holder cut off by fork
 * left both lists consistent: only the lock needs repair. The caches of
 * the parent's other threads stay listed; their objects leak in the child. */
void xmm_thread_cache_after_fork_child(void)
{
    if (xmm_lock_holder(&registry_lock) == XMM_LOCK_HELD_BY_OTHER)
        xmm_lock_reset(&registry_lock);
}
