/*
 * central.c - per-node, per-class transfer batches and span sets.
 *
 * Transfer batches: a drain of exactly one batch of objects is copied into
 * a batch descriptor and pushed on the class's `batches` stack; a refill
 * pops one. That is the common path, two CK stack operations and a copy of
 * at most 32 pointers, with no per-object work.
 *
 * Span sets: objects that do not travel as a full batch go back to their
 * span, onto the span's own free list (a CAS push). A span's `state` word
 * holds its in-use count and where it is (span.h):
 *
 *   LISTED   on the class's `spans` stack; refills pop it from there.
 *   CLAIMED  popped by one refilling thread, which alone cuts objects from
 *            it; frees still push onto its free list concurrently.
 *   NOWHERE  the claimant found no free object left and let go of it.
 *   RELEASED its in-use count reached zero while NOWHERE; it went back to
 *            the page heap.
 *
 * A free pushes the object first, then decrements the count by CAS. If it
 * saw NOWHERE, it is the one thread that moves the span on: to LISTED (and
 * pushes it on the stack) or, when the count hit zero, to RELEASED. A
 * claimant lets go by CAS from the exact state it read after seeing an
 * empty free list; a free that slipped in between changed the count, so the
 * CAS fails and the claimant looks again. So no free object is ever
 * stranded on a span that is neither listed nor owned.
 */
#include "central.h"

#include "backend/backend.h"
#include "ds/ds.h"
#include "base/base.h"

#define XMM_SPAN_RELEASED 3u

struct transfer_batch {
    ck_stack_entry_t stack_entry;
    uint32_t count;
    void *objects[XMM_MAX_BATCH];
};

struct central_class {
    struct xmm_stack batches;     /* full transfer batches */
    int64_t batch_count;          /* approximate number on `batches` */
    int64_t batch_limit;
    char pad1[XMM_CACHE_LINE - sizeof(struct xmm_stack) - 2 * sizeof(int64_t)];
    struct xmm_stack spans;       /* spans with free objects */
    uint64_t empty_listed;        /* listed spans seen with none in use */
    uint64_t objects_out;         /* handed to front ends, ever */
    uint64_t objects_in;          /* taken back from front ends, ever */
    uint64_t batches_taken;       /* refills from `batches` since last upkeep */
    char pad2[XMM_CACHE_LINE - sizeof(struct xmm_stack) - 4 * sizeof(uint64_t)];
} XMM_CACHE_ALIGNED;

struct central_node {
    struct central_class classes[XMM_CLASS_COUNT];
    struct xmm_stack free_batches; /* spare batch descriptors */
    uint64_t spans_created;
    uint64_t spans_released;
    uint64_t span_bytes;
    uint64_t last_maintenance_ns;
} XMM_CACHE_ALIGNED;

static struct central_node *central_nodes;

int xmm_central_init(void)
{
    size_t bytes = sizeof(struct central_node) * (size_t)xmm_nodes;
    central_nodes = xmm_metadata_alloc(bytes, XMM_CACHE_LINE);
    if (!central_nodes)
        return -1;
    for (int node = 0; node < xmm_nodes; node++) {
        struct central_node *central = &central_nodes[node];
        xmm_stack_init(&central->free_batches);
        for (unsigned size_class = 1; size_class < XMM_CLASS_COUNT; size_class++) {
            struct central_class *lists = &central->classes[size_class];
            const struct xmm_size_class *info = &xmm_size_classes[size_class];
            xmm_stack_init(&lists->batches);
            xmm_stack_init(&lists->spans);
            /* Up to about 4 MiB of ready batches per class and node, and
             * at least 8 batches, before objects go back to their spans:
             * enough for a burst of a few thousand objects to come back
             * as whole batches. Batches nobody takes are flushed to their
             * spans by the upkeep pass, so this is not memory kept. */
            int64_t batch_bytes = (int64_t)info->batch * info->size;
            int64_t limit = ((int64_t)4 << 20) / batch_bytes;
            lists->batch_limit = limit < 8 ? 8 : limit;
        }
    }
    return 0;
}

/* ---- span state --------------------------------------------------------------- */

static inline unsigned place_of(uint64_t state)
{
    return (unsigned)(state & XMM_SPAN_PLACE_MASK);
}

static inline uint64_t in_use_of(uint64_t state)
{
    return state >> 2;
}

static void list_span(struct xmm_span *span)
{
    struct central_class *lists = &central_nodes[span->node].classes[span->size_class];
    xmm_stack_push(&lists->spans, &span->stack_entry);
}

static void release_span(struct xmm_span *span)
{
    xmm_chunk_set_page_info(span, 0); /* free() of its addresses: slow path */
    struct central_node *central = &central_nodes[span->node];
    __atomic_fetch_add(&central->spans_released, 1, __ATOMIC_RELAXED);
    __atomic_fetch_sub(&central->span_bytes, xmm_span_bytes(span), __ATOMIC_RELAXED);
    xmm_page_heap_free(span);
}

/* Gives `count` objects of `span`, already linked first -> ... -> last, back
 * to it: one CAS pushes the chain, one CAS takes them off the in-use
 * count. */
static void return_chain_to_span(struct xmm_span *span, void *first, void *last,
                                 unsigned count)
{
    /* Read while the objects still count as in use, which pins the span:
     * once the count drops, a sweep may release and reuse the descriptor. */
    struct central_class *lists = &central_nodes[span->node].classes[span->size_class];
    void *head = __atomic_load_n(&span->free_list, __ATOMIC_RELAXED);
    do {
        xmm_free_object_set(last, head);
    } while (!__atomic_compare_exchange_n(&span->free_list, &head, first, true,
                                          __ATOMIC_RELEASE, __ATOMIC_RELAXED));

    uint64_t old_state = __atomic_load_n(&span->state, __ATOMIC_RELAXED);
    uint64_t new_state;
    do {
        xmm_assert(in_use_of(old_state) >= count);
        new_state = old_state - (uint64_t)count * XMM_SPAN_IN_USE_ONE;
        if (place_of(old_state) == XMM_SPAN_NOWHERE)
            new_state |= in_use_of(new_state) == 0 ? XMM_SPAN_RELEASED : XMM_SPAN_LISTED;
    } while (!__atomic_compare_exchange_n(&span->state, &old_state, new_state, true,
                                          __ATOMIC_ACQ_REL, __ATOMIC_RELAXED));

    if (place_of(old_state) == XMM_SPAN_NOWHERE) {
        if (place_of(new_state) == XMM_SPAN_RELEASED)
            release_span(span);
        else
            list_span(span);
    } else if (in_use_of(new_state) == 0 && place_of(old_state) == XMM_SPAN_LISTED) {
        __atomic_fetch_add(&lists->empty_listed, 1, __ATOMIC_RELAXED);
    }
}

static void return_to_span(struct xmm_span *span, void *object)
{
    return_chain_to_span(span, object, object, 1);
}

static struct xmm_span *span_of_object(void *object)
{
    struct xmm_chunk *chunk = (struct xmm_chunk *)xmm_region_of(object);
    return xmm_chunk_span_of(chunk, object);
}

/* Returns objects of one class to their spans. Two passes: the first finds
 * every span and prefetches its descriptor and the object (independent
 * loads, so their cache misses overlap instead of queueing behind each
 * locked CAS); the second links runs of objects from the same span (the
 * common case for a batch cut from one span) and returns each run with one
 * pair of CASes. */
static void return_objects_to_spans(void *const *objects, unsigned count)
{
    struct xmm_span *spans[XMM_MAX_BATCH];
    while (count) {
        unsigned group = count < XMM_MAX_BATCH ? count : XMM_MAX_BATCH;
        for (unsigned i = 0; i < group; i++) {
            spans[i] = span_of_object(objects[i]);
            __builtin_prefetch(&spans[i]->free_list, 1);
            __builtin_prefetch(objects[i], 1);
        }
        unsigned run_start = 0;
        for (unsigned i = 1; i <= group; i++) {
            if (i < group && spans[i] == spans[run_start]) {
                xmm_free_object_set(objects[i - 1], objects[i]);
                continue;
            }
            return_chain_to_span(spans[run_start], objects[run_start], objects[i - 1],
                                 i - run_start);
            run_start = i;
        }
        objects += group;
        count -= group;
    }
}

void xmm_central_return_object(void *object)
{
    struct xmm_span *span = span_of_object(object);
    struct central_class *lists = &central_nodes[span->node].classes[span->size_class];
    __atomic_fetch_add(&lists->objects_in, 1, __ATOMIC_RELAXED);
    return_to_span(span, object);
}

/* Moves a popped span from LISTED to CLAIMED (frees may change its count
 * meanwhile, never its place). */
static void claim(struct xmm_span *span)
{
    uint64_t state = __atomic_load_n(&span->state, __ATOMIC_RELAXED);
    uint64_t claimed;
    do {
        xmm_assert(place_of(state) == XMM_SPAN_LISTED);
        claimed = (state & ~(uint64_t)XMM_SPAN_PLACE_MASK) | XMM_SPAN_CLAIMED;
    } while (!__atomic_compare_exchange_n(&span->state, &state, claimed, true,
                                          __ATOMIC_ACQ_REL, __ATOMIC_RELAXED));
}

static bool has_free_objects(struct xmm_span *span)
{
    return span->carved < xmm_size_classes[span->size_class].objects ||
           __atomic_load_n(&span->free_list, __ATOMIC_ACQUIRE) != NULL;
}

/* The claimant lets go: back on the stack if objects remain, else NOWHERE.
 * `remains` can only turn from false to true meanwhile (frees push; only
 * the claimant takes), and such a free also changes the count, failing the
 * CAS: so NOWHERE is only ever set on a span with nothing free. */
static void unclaim(struct xmm_span *span)
{
    uint64_t state = __atomic_load_n(&span->state, __ATOMIC_ACQUIRE);
    for (;;) {
        bool remains = has_free_objects(span);
        uint64_t next = (state & ~(uint64_t)XMM_SPAN_PLACE_MASK) |
                        (remains ? XMM_SPAN_LISTED : XMM_SPAN_NOWHERE);
        if (__atomic_compare_exchange_n(&span->state, &state, next, false, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE)) {
            if (remains) {
                if (in_use_of(next) == 0) {
                    struct central_class *lists =
                        &central_nodes[span->node].classes[span->size_class];
                    __atomic_fetch_add(&lists->empty_listed, 1, __ATOMIC_RELAXED);
                }
                list_span(span);
            }
            return;
        }
    }
}

/* Puts a chain of objects (first .. last) back on the span's free list. */
static void push_chain(struct xmm_span *span, void *first, void *last)
{
    void *head = NULL;
    xmm_free_object_set(last, NULL);
    while (!__atomic_compare_exchange_n(&span->free_list, &head, first, true, __ATOMIC_RELEASE,
                                        __ATOMIC_RELAXED))
        xmm_free_object_set(last, head);
}

/* The successor of `object` on `span`'s free list, decoded and checked: it
 * must be NULL or an object of the span that was cut from it. Anything
 * else is a link overwritten after the object was freed (a use after free
 * or an overflow from the block before it): heap corruption, which stops
 * the process before the forged address can be handed out. */
static void *next_free_object(const struct xmm_span *span, const struct xmm_size_class *info,
                              const void *object)
{
    char *next = xmm_free_object_next(object);
    if (next == NULL)
        return NULL;
    size_t offset = (size_t)(next - span->start);
    uint32_t index = xmm_class_object_index(span->size_class, offset);
    if (XMM_UNLIKELY(offset >= (size_t)span->carved * info->size ||
                     (size_t)index * info->size != offset))
        xmm_fatal("xmm: heap corruption: the free object at %p (%z-byte blocks) was "
                  "overwritten after free (use after free, or an overflow of the block "
                  "before it)\n",
                  object, (size_t)info->size);
    return next;
}

/* Claimant only: takes up to `wanted` objects, free ones first (warm in
 * cache, and they keep untouched pages untouched), then uncut ones. */
static unsigned take_objects(struct xmm_span *span, void **out, unsigned wanted)
{
    const struct xmm_size_class *info = &xmm_size_classes[span->size_class];
    unsigned taken = 0;
    void *list = __atomic_exchange_n(&span->free_list, NULL, __ATOMIC_ACQUIRE);
    while (list && taken < wanted) {
        void *next = next_free_object(span, info, list);
        xmm_free_object_set(list, NULL); /* free, in a cache from now on */
        out[taken++] = list;
        list = next;
    }
    if (list) {
        /* Usually no free came in meanwhile: put the rest back whole, its
         * tail already ends the chain. Only a lost race walks to the tail
         * (a cache miss per object). */
        void *empty = NULL;
        if (!__atomic_compare_exchange_n(&span->free_list, &empty, list, false, __ATOMIC_RELEASE,
                                         __ATOMIC_RELAXED)) {
            void *last = list;
            for (void *next; (next = next_free_object(span, info, last)) != NULL;)
                last = next;
            push_chain(span, list, last);
        }
    }
    /* Objects were marked free when the span was made (new_span), and
     * nothing may have written them since: a word that is not a free
     * object's any more was overwritten by an overflow of the object
     * before it (and a free() of it may already have put it in a cache). */
    uint32_t carved = span->carved;
    while (taken < wanted && carved < info->objects) {
        char *object = span->start + (size_t)carved++ * info->size;
        if (XMM_UNLIKELY(!xmm_free_object_is_free(object, span->start, xmm_span_bytes(span))))
            xmm_fatal("xmm: heap corruption: the never-used object at %p (%z-byte blocks) "
                      "was overwritten (an overflow of the block before it)\n",
                      object, (size_t)info->size);
        out[taken++] = object;
    }
    __atomic_store_n(&span->carved, carved, __ATOMIC_RELEASE);
    __atomic_fetch_add(&span->state, (uint64_t)taken * XMM_SPAN_IN_USE_ONE, __ATOMIC_RELAXED);
    return taken;
}

/* A fresh span for the class from the page heap, already CLAIMED. */
static struct xmm_span *new_span(int node, unsigned size_class)
{
    const struct xmm_size_class *info = &xmm_size_classes[size_class];
    struct xmm_span *span = xmm_page_heap_alloc(node, info->span_pages, 0);
    if (!span)
        return NULL;
    span->size_class = (uint8_t)size_class;
    span->carved = 0;
    span->free_list = NULL;
    __atomic_store_n(&span->state, XMM_SPAN_CLAIMED, __ATOMIC_RELAXED);
    /* Every object is marked free before any is cut: a free() of one that
     * was never handed out is then reported (free_object.h) without the
     * free path reading `carved`. */
    for (uint32_t object = 0; object < info->objects; object++)
        xmm_free_object_set(span->start + (size_t)object * info->size, NULL);
    /* Publish the class before any object of the span can reach free(). */
    __atomic_store_n(&span->kind, XMM_SPAN_SMALL, __ATOMIC_RELEASE);
    xmm_chunk_set_page_info(span, size_class);
    struct central_node *central = &central_nodes[node];
    __atomic_fetch_add(&central->spans_created, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&central->span_bytes, xmm_span_bytes(span), __ATOMIC_RELAXED);
    return span;
}

/* ---- refill and drain ------------------------------------------------------------ */

static unsigned refill_from_batch(struct central_node *central, struct central_class *lists,
                                  void **out, unsigned wanted)
{
    ck_stack_entry_t *entry = xmm_stack_pop(&lists->batches);
    if (!entry)
        return 0;
    struct transfer_batch *batch = (struct transfer_batch *)entry;
    __atomic_fetch_sub(&lists->batch_count, 1, __ATOMIC_RELAXED);
    __atomic_store_n(&lists->batches_taken, 1, __ATOMIC_RELAXED);
    unsigned count = batch->count;
    xmm_assert(count == wanted);
    for (unsigned i = 0; i < count; i++)
        out[i] = batch->objects[i];
    xmm_stack_push(&central->free_batches, &batch->stack_entry);
    return count;
}

unsigned xmm_central_refill(int node, unsigned size_class, void **out, unsigned wanted)
{
    struct central_node *central = &central_nodes[node];
    struct central_class *lists = &central->classes[size_class];
    if (wanted == xmm_size_classes[size_class].batch) {
        unsigned count = refill_from_batch(central, lists, out, wanted);
        if (count) {
            __atomic_fetch_add(&lists->objects_out, count, __ATOMIC_RELAXED);
            return count;
        }
    }
    unsigned got = 0;
    while (got < wanted) {
        ck_stack_entry_t *entry = xmm_stack_pop(&lists->spans);
        struct xmm_span *span;
        if (entry) {
            span = xmm_span_of_entry(entry);
            claim(span);
        } else {
            span = new_span(node, size_class);
            if (!span)
                break;
        }
        got += take_objects(span, out + got, wanted - got);
        unclaim(span);
    }
    __atomic_fetch_add(&lists->objects_out, got, __ATOMIC_RELAXED);
    return got;
}

static struct transfer_batch *batch_descriptor(struct central_node *central)
{
    ck_stack_entry_t *entry = xmm_stack_pop(&central->free_batches);
    if (entry)
        return (struct transfer_batch *)entry;
    return xmm_metadata_alloc(sizeof(struct transfer_batch), 16);
}

void xmm_central_drain(int node, unsigned size_class, void *const *objects, unsigned count)
{
    struct central_node *central = &central_nodes[node];
    struct central_class *lists = &central->classes[size_class];
    __atomic_fetch_add(&lists->objects_in, count, __ATOMIC_RELAXED);
    if (count == xmm_size_classes[size_class].batch &&
        __atomic_load_n(&lists->batch_count, __ATOMIC_RELAXED) < lists->batch_limit) {
        struct transfer_batch *batch = batch_descriptor(central);
        if (batch) {
            batch->count = count;
            for (unsigned i = 0; i < count; i++)
                batch->objects[i] = objects[i];
            __atomic_fetch_add(&lists->batch_count, 1, __ATOMIC_RELAXED);
            xmm_stack_push(&lists->batches, &batch->stack_entry);
            return;
        }
    }
    return_objects_to_spans(objects, count);
}

/* ---- upkeep -------------------------------------------------------------------------- */

/* Returns every ready batch of the class to its spans. */
static void flush_batches(struct central_node *central, struct central_class *lists)
{
    ck_stack_entry_t *entry;
    while ((entry = xmm_stack_pop(&lists->batches))) {
        struct transfer_batch *batch = (struct transfer_batch *)entry;
        __atomic_fetch_sub(&lists->batch_count, 1, __ATOMIC_RELAXED);
        return_objects_to_spans(batch->objects, batch->count);
        xmm_stack_push(&central->free_batches, &batch->stack_entry);
    }
}

/* Pops every listed span of the class once; those with nothing in use go
 * to the page heap, the others back on the stack. Single pops only (see
 * lockfree_stack.h). Returns the bytes released. */
static size_t sweep_spans(struct central_class *lists)
{
    struct xmm_span *keep = NULL;
    size_t released = 0;
    __atomic_store_n(&lists->empty_listed, 0, __ATOMIC_RELAXED);
    ck_stack_entry_t *entry;
    while ((entry = xmm_stack_pop(&lists->spans))) {
        struct xmm_span *span = xmm_span_of_entry(entry);
        claim(span);
        uint64_t state = __atomic_load_n(&span->state, __ATOMIC_ACQUIRE);
        /* Nothing in use: no thread can be freeing into it, the CAS below
         * cannot race and the span is ours to release. */
        if (in_use_of(state) == 0 &&
            __atomic_compare_exchange_n(&span->state, &state, XMM_SPAN_RELEASED, false,
                                        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            released += xmm_span_bytes(span);
            release_span(span);
            continue;
        }
        span->stack_entry.next = (ck_stack_entry_t *)keep;
        keep = span;
    }
    while (keep) {
        struct xmm_span *next = (struct xmm_span *)keep->stack_entry.next;
        unclaim(keep);
        keep = next;
    }
    return released;
}

size_t xmm_central_release_all(void)
{
    size_t released = 0;
    for (int node = 0; node < xmm_nodes; node++) {
        struct central_node *central = &central_nodes[node];
        for (unsigned size_class = 1; size_class < XMM_CLASS_COUNT; size_class++) {
            flush_batches(central, &central->classes[size_class]);
            released += sweep_spans(&central->classes[size_class]);
        }
    }
    return released;
}

void xmm_central_maintain(int node)
{
    struct central_node *central = &central_nodes[node];
    if (!xmm_turn_due(&central->last_maintenance_ns, xmm_os_now_ns(),
                      xmm_upkeep_period_ns()))
        return;
    for (unsigned size_class = 1; size_class < XMM_CLASS_COUNT; size_class++) {
        struct central_class *lists = &central->classes[size_class];
        /* Ready batches nobody took since the last pass are memory the
         * program no longer asks for: back to their spans, so that empty
         * spans can return to the page heap and decay. */
        bool idle = !__atomic_exchange_n(&lists->batches_taken, 0, __ATOMIC_RELAXED);
        if (idle && __atomic_load_n(&lists->batch_count, __ATOMIC_RELAXED) > 0)
            flush_batches(central, lists);
        if (__atomic_load_n(&lists->empty_listed, __ATOMIC_RELAXED))
            sweep_spans(lists);
    }
}

void xmm_central_stats(int node, struct xmm_central_stats *stats)
{
    struct central_node *central = &central_nodes[node];
    stats->spans_created = __atomic_load_n(&central->spans_created, __ATOMIC_RELAXED);
    stats->spans_released = __atomic_load_n(&central->spans_released, __ATOMIC_RELAXED);
    stats->span_bytes = __atomic_load_n(&central->span_bytes, __ATOMIC_RELAXED);
    stats->batches_cached = 0;
    stats->objects_in_batches_bytes = 0;
    stats->small_out_bytes = 0;
    for (unsigned size_class = 1; size_class < XMM_CLASS_COUNT; size_class++) {
        struct central_class *lists = &central->classes[size_class];
        uint64_t out = __atomic_load_n(&lists->objects_out, __ATOMIC_RELAXED);
        uint64_t in = __atomic_load_n(&lists->objects_in, __ATOMIC_RELAXED);
        if (out > in)
            stats->small_out_bytes += (out - in) * xmm_size_classes[size_class].size;
        int64_t batches = __atomic_load_n(&lists->batch_count, __ATOMIC_RELAXED);
        if (batches <= 0)
            continue;
        const struct xmm_size_class *info = &xmm_size_classes[size_class];
        stats->batches_cached += (uint64_t)batches;
        stats->objects_in_batches_bytes += (uint64_t)batches * info->batch * info->size;
    }
}

uint64_t xmm_central_objects_out(unsigned size_class)
{
    uint64_t out = 0, in = 0;
    for (int node = 0; node < xmm_nodes; node++) {
        struct central_class *lists = &central_nodes[node].classes[size_class];
        out += __atomic_load_n(&lists->objects_out, __ATOMIC_RELAXED);
        in += __atomic_load_n(&lists->objects_in, __ATOMIC_RELAXED);
    }
    return out > in ? out - in : 0;
}
