/*
 * large_cache.c - recently freed large blocks, by page count (see the header).
 *
 * Cost of a hit: one CK stack pop (a CAS2), two relaxed counter updates and
 * a store of the span's kind; the page heap lock is not taken.
 */
#include "large_cache.h"

#include "base/base.h"
#include "ds/ds.h"
#include "metadata.h"
#include "numa.h"
#include "page_heap.h"

#define MAX_PAGES (XMM_LARGE_CACHE_MAX_BYTES >> XMM_PAGE_SHIFT)

/* The counters share the stack's cache line, which a put or take owns
 * anyway: no other line is written on a hit. */
struct cache_slot {
    struct xmm_stack spans;   /* cached spans of this many pages */
    uint32_t count;           /* spans on the stack, approximately */
    uint32_t taken;           /* a take since the last upkeep pass */
} __attribute__((aligned(64))); /* one slot per cache line */

struct cache_node {
    uint32_t maybe_holds;     /* set by puts, cleared by flushes: a hint */
    uint64_t last_maintenance_ns;
    struct cache_slot slots[MAX_PAGES + 1];
};

/* Spans of `pages` kept per slot: about XMM_LARGE_CACHE_SLOT_BYTES, at
 * least one. */
static uint32_t slot_capacity(size_t pages)
{
    size_t capacity = XMM_LARGE_CACHE_SLOT_BYTES / (pages << XMM_PAGE_SHIFT);
    return capacity ? (uint32_t)capacity : 1;
}

static struct cache_node *cache_nodes;

int xmm_large_cache_init(void)
{
    /* Fresh metadata is zero, and a zeroed stack is empty (ck_stack_init
     * writes zeros): the slots (a cache line for each of 512 page counts,
     * 32 KiB a node) are not written here, so a process touches only the
     * slots of the sizes it frees. */
    cache_nodes = xmm_metadata_alloc(sizeof(struct cache_node) * (size_t)xmm_nodes, XMM_CACHE_LINE);
    if (!cache_nodes)
        return -1;
    for (int node = 0; node < xmm_nodes; node++)
        for (size_t pages = 0; pages <= MAX_PAGES; pages++)
            xmm_assert(xmm_stack_is_empty(&cache_nodes[node].slots[pages].spans));
    return 0;
}

bool xmm_large_cache_claim(struct xmm_span *span)
{
    uint8_t in_use = XMM_SPAN_LARGE;
    return __atomic_compare_exchange_n(&span->kind, &in_use, XMM_SPAN_CACHED, false,
                                       __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

bool xmm_large_cache_keep(struct xmm_span *span)
{
    xmm_assert(__atomic_load_n(&span->kind, __ATOMIC_RELAXED) == XMM_SPAN_CACHED);
    if (span->pages > MAX_PAGES)
        return false;
    struct cache_node *cache = &cache_nodes[span->node];
    struct cache_slot *slot = &cache->slots[span->pages];
    /* Racy check: concurrent keeps can pass the bound by a span or two. */
    if (__atomic_load_n(&slot->count, __ATOMIC_RELAXED) >= slot_capacity(span->pages))
        return false;
    __atomic_fetch_add(&slot->count, 1, __ATOMIC_RELAXED);
    xmm_stack_push(&slot->spans, &span->stack_entry);
    if (!__atomic_load_n(&cache->maybe_holds, __ATOMIC_RELAXED))
        __atomic_store_n(&cache->maybe_holds, 1, __ATOMIC_RELAXED);
    return true;
}

struct xmm_span *xmm_large_cache_take(int node, size_t pages)
{
    if (pages > MAX_PAGES)
        return NULL;
    struct cache_node *cache = &cache_nodes[node];
    struct cache_slot *slot = &cache->slots[pages];
    if (xmm_stack_is_empty(&slot->spans))
        return NULL;
    ck_stack_entry_t *entry = xmm_stack_pop(&slot->spans);
    if (!entry)
        return NULL;
    struct xmm_span *span = xmm_span_of_entry(entry);
    xmm_assert(span->pages == pages && span->kind == XMM_SPAN_CACHED);
    __atomic_fetch_sub(&slot->count, 1, __ATOMIC_RELAXED);
    if (!__atomic_load_n(&slot->taken, __ATOMIC_RELAXED))
        __atomic_store_n(&slot->taken, 1, __ATOMIC_RELAXED);
    span->dirty = XMM_PAGES_DIRTY; /* the program wrote it: calloc must clear it */
    __atomic_store_n(&span->kind, XMM_SPAN_LARGE, __ATOMIC_RELEASE);
    return span;
}

bool xmm_large_cache_maybe_holds(int node)
{
    return __atomic_load_n(&cache_nodes[node].maybe_holds, __ATOMIC_RELAXED) != 0;
}

size_t xmm_large_cache_bytes(int node)
{
    size_t bytes = 0;
    for (size_t pages = 1; pages <= MAX_PAGES; pages++) {
        int32_t count = (int32_t)__atomic_load_n(&cache_nodes[node].slots[pages].count,
                                                 __ATOMIC_RELAXED);
        if (count > 0)
            bytes += (size_t)count * (pages << XMM_PAGE_SHIFT);
    }
    return bytes;
}

/* Empties one slot into the page heap, as many spans as it held when the
 * flush began (so that steady puts cannot keep a flush going). The spans
 * stay claimed (CACHED) until the page heap has them: a stale free of one
 * meanwhile is still a reported double free. Returns bytes. */
static size_t flush_slot(struct cache_slot *slot)
{
    size_t flushed = 0;
    uint32_t budget = __atomic_load_n(&slot->count, __ATOMIC_RELAXED) + 1;
    ck_stack_entry_t *entry;
    while (budget-- > 0 && (entry = xmm_stack_pop(&slot->spans))) {
        struct xmm_span *span = xmm_span_of_entry(entry);
        size_t bytes = xmm_span_bytes(span);
        __atomic_fetch_sub(&slot->count, 1, __ATOMIC_RELAXED);
        xmm_page_heap_free_claimed(span);
        flushed += bytes;
    }
    return flushed;
}

size_t xmm_large_cache_flush(int node)
{
    struct cache_node *cache = &cache_nodes[node];
    if (!__atomic_load_n(&cache->maybe_holds, __ATOMIC_RELAXED))
        return 0;
    /* Cleared first: a put that races with the scan sets it again. */
    __atomic_store_n(&cache->maybe_holds, 0, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    size_t flushed = 0;
    for (size_t pages = 1; pages <= MAX_PAGES; pages++)
        if (!xmm_stack_is_empty(&cache->slots[pages].spans))
            flushed += flush_slot(&cache->slots[pages]);
    return flushed;
}

void xmm_large_cache_maintain(int node, uint64_t now_ns)
{
    struct cache_node *cache = &cache_nodes[node];
    if (!xmm_turn_due(&cache->last_maintenance_ns, now_ns,
                      xmm_upkeep_period_ns()))
        return;
    if (!__atomic_load_n(&cache->maybe_holds, __ATOMIC_RELAXED))
        return;
    for (size_t pages = 1; pages <= MAX_PAGES; pages++) {
        struct cache_slot *slot = &cache->slots[pages];
        if (__atomic_load_n(&slot->taken, __ATOMIC_RELAXED))
            __atomic_store_n(&slot->taken, 0, __ATOMIC_RELAXED);
        else if (!xmm_stack_is_empty(&slot->spans))
            flush_slot(slot);
    }
}
