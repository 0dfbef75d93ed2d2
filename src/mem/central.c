/*
 * central.c - per-node, per-class transfer batches and span sets.
 *
 * Transfer batches: a drain of exactly one batch of objects is copied into
 * a batch descriptor and pushed on the class's `batches` stack; a refill
 * pops one. That is the common path, two CK stack operations and a copy of
 * at most 32 pointers, with no per-object work. How many batches a
 * class's stack holds adapts to what the class cycles ("how many ready
 * batches a class's stack holds", below). A per-CPU cache's drain
 * pushes onto its carver's own stack of the class instead, while the
 * carver holds less than XMM_OWN_BATCH_MAX_BYTES in such batches, and its refills pop
 * that stack first ("own batches", xmm_central_drain).
 *
 * Span sets: objects that do not travel as a full batch go back to their
 * span, onto the span's own free list (a CAS push). A span's `state` word
 * holds its in-use count and where it is (span.h):
 *
 *   LISTED   on the class's `spans` stack; refills pop it from there.
 *   CLAIMED  popped by one refilling thread, which alone cuts objects from
 *            it; frees still push onto its free list concurrently. A
 *            carver's kept span (xmm_central_refill) stays CLAIMED between
 *            refills, in its slot; whoever takes it from the slot by
 *            atomic exchange is its one claimant.
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

/* What the cold checks know of a class's refills (release_cold_classes). */
enum refills_seen {
    REFILLED_NOT_SINCE_RELEASE = 0, /* none since a check let go of it */
    REFILLED_SINCE_CHECK = 1,       /* set by every refill */
    REFILLED_BEFORE_CHECK = 2,      /* before the last check, none since */
};

struct transfer_batch {
    ck_stack_entry_t stack_entry;
    uint32_t count;
    void *objects[XMM_MAX_BATCH];
};

struct central_class {
    struct xmm_stack batches;     /* full transfer batches */
    int64_t batch_count;          /* approximate number on `batches` */
    int64_t batch_limit;          /* grows while refills go without (grow_batch_limit) */
    int64_t own_batch_count;      /* approximate number on the carvers' own stacks */
    uint32_t refills_seen;        /* enum refills_seen: for the cold check */
    uint32_t batches_overflowed;  /* a drain found `batches` full since a refill looked */
    int64_t batch_low;            /* the fewest on `batches` since the last upkeep pass */
    char pad1[XMM_CACHE_LINE - sizeof(struct xmm_stack) - 4 * sizeof(int64_t) -
              2 * sizeof(uint32_t)];
    struct xmm_stack spans;       /* spans with free objects */
    int64_t empty_listed;         /* listed spans with none in use (see count_empty) */
    int64_t span_count;           /* spans of the class, wherever they are */
    uint64_t objects_out;         /* handed to front ends, ever */
    uint64_t objects_in;          /* taken back from front ends, ever */
    uint32_t batches_taken;       /* refills from `batches` since last upkeep */
    uint32_t sweeping;            /* a sweep of the class is under way */
    uint32_t refilled;            /* refills from spans since last upkeep */
    char pad2[XMM_CACHE_LINE - sizeof(struct xmm_stack) - 4 * sizeof(uint64_t) -
              3 * sizeof(uint32_t)];
} XMM_CACHE_ALIGNED;

/* What each carver keeps (xmm_central_refill): a slot per class for the
 * span it cuts objects from, and the run it cuts its new spans from. Rows
 * apart by whole lines: a carver's refills write its own. */
struct carver_row {
    struct xmm_span *kept[XMM_CLASS_COUNT];
    struct xmm_span *run;
    uint32_t refilled;             /* a refill cut from spans since the last upkeep pass */
    uint32_t cut_since_check;      /* a span cut from `run` since the last cold check */
    /* Own batches (xmm_central_drain): per class, the transfer batches
     * this carver drained, which its refills take first; how many (at
     * least what the stack holds: counted up before a push, down after a
     * pop); the fewest it held since the last upkeep pass (its low-water
     * mark: batches no refill needed, which the pass gives back); and
     * their bytes (own_charge), all classes, counted as the numbers are. */
    int64_t own_bytes;
    int32_t own_count[XMM_CLASS_COUNT];
    int32_t own_low[XMM_CLASS_COUNT];
    struct xmm_stack own_batches[XMM_CLASS_COUNT];
} XMM_CACHE_ALIGNED;

/* What the background thread's purges inside spans know of a class
 * (xmm_central_purge_inside), written by that thread only: the class's
 * frees counted at its last purge. */
struct class_purge {
    uint64_t in_at_purge;
};

struct central_node {
    struct central_class classes[XMM_CLASS_COUNT];
    struct carver_row *carvers;    /* carver_count rows */
    int carvers_used;              /* one past the highest carver with a row in use */
    int64_t run_bytes;             /* pages in carver runs, not cut yet */
    int64_t run_resident_bytes;    /* of which may be resident (dirty runs) */
    struct xmm_stack free_batches; /* spare batch descriptors */
    /* Bytes of ready batches put on the classes' stacks since the last
     * cold check, less those taken off (count_parked): written by the
     * drains and refills that just wrote `free_batches`. About: it may
     * dip below zero by a few batches when takes race. */
    int64_t parked_since_check;
    uint64_t spans_created;
    uint64_t spans_released;
    uint64_t span_bytes;
    uint64_t last_maintenance_ns;
    int64_t empty_bytes;           /* bytes of the empty listed spans, all classes */
    int64_t reclaim_floor;         /* of which a reclaim found nothing to take */
    int64_t asked_since_check;     /* bytes of spans asked for since the last cold check */
    uint32_t cold_checking;        /* a cold check is under way */
    uint32_t grown_stacks;         /* classes whose batch limit grew (release_grown_stacks) */
    uint64_t purged_inside;        /* bytes purged inside kept spans, ever (trims, background purges) */
    /* xmm_central_purge_inside's, its thread's only: the node's central
     * traffic at its last round, the rounds in a row that found none, and
     * the classes' marks. */
    uint64_t traffic_at_round;
    uint32_t idle_rounds;
    struct class_purge purges[XMM_CLASS_COUNT];
} XMM_CACHE_ALIGNED;

static struct central_node *central_nodes;

/* ---- how many ready batches a class's stack holds ----------------------------- */

/* Up to about 4 MiB of ready batches per class and node, and at least 8
 * batches, before objects go back to their spans: enough for a burst of a
 * few thousand objects to come back as whole batches. Batches nobody
 * takes are flushed to their spans by the upkeep pass, so this is not
 * memory kept. The carvers' own batches are outside this limit (at most
 * 1 MiB a carver); the upkeep pass moves here those no refill of their
 * carver needed since the pass before. */
#define XMM_BATCH_STACK_BYTES ((int64_t)4 << 20)

/* A class whose refills go to its spans while its drains find the stack
 * full cycles more objects through the central layer than the stack
 * holds: each of those objects then goes back to its span and is cut
 * from it again, a few locked CASes and a walk of the span's cold free
 * list per batch instead of one pop. Where a batch holds few objects
 * (XMM_BATCH_STACK_GROWS_UPTO or fewer: the classes from 15 KiB), that
 * is most of what each object costs; so when a refill of such a class
 * finds the stack empty after a drain found it full, its limit doubles,
 * up to this much (and at most XMM_BATCH_STACK_MOST batches, whose
 * descriptors are metadata never unmapped). It goes back to the first
 * once an upkeep pass finds no batch taken, when pages are asked for
 * (release_grown_stacks says why), or when a trim or cold check flushes
 * the class. Not the classes with batches of more objects, whose span
 * costs are spread over up to 32: sqlite's 1152-byte class grew to 8 MiB
 * of batches, and its peak RSS rose from 55 MiB to 59 in half the runs
 * (the library before did in 2 of 8).
 * TCMalloc's transfer caches grow and shrink by their misses the same
 * way (its docs/design.md, "Transfer cache"). bench/micro
 * batch1000/32768 (1000 blocks of 32 KiB, 32 MiB, a round) sent 190 of
 * each round's 250 batches through the spans. */
#define XMM_BATCH_STACK_GROWN_BYTES ((int64_t)64 << 20)
#define XMM_BATCH_STACK_MOST 512
#define XMM_BATCH_STACK_GROWS_UPTO 8u

static size_t batch_bytes(unsigned size_class)
{
    return (size_t)xmm_size_classes[size_class].batch * xmm_size_classes[size_class].size;
}

static int64_t first_batch_limit(unsigned size_class)
{
    int64_t limit = XMM_BATCH_STACK_BYTES / (int64_t)batch_bytes(size_class);
    return limit < 8 ? 8 : limit;
}

static int64_t grown_batch_limit(unsigned size_class)
{
    int64_t first = first_batch_limit(size_class);
    if (xmm_size_classes[size_class].batch > XMM_BATCH_STACK_GROWS_UPTO)
        return first;
    int64_t grown = XMM_BATCH_STACK_GROWN_BYTES / (int64_t)batch_bytes(size_class);
    if (grown > XMM_BATCH_STACK_MOST)
        grown = XMM_BATCH_STACK_MOST;
    return grown > first ? grown : first;
}

/* Whether a drain's batch fits on the class's stack; if not, notes that
 * the stack overflowed (one store per growth of the limit at most). */
static bool batch_stack_has_room(struct central_class *lists)
{
    if (__atomic_load_n(&lists->batch_count, __ATOMIC_RELAXED) <
        __atomic_load_n(&lists->batch_limit, __ATOMIC_RELAXED))
        return true;
    if (!__atomic_load_n(&lists->batches_overflowed, __ATOMIC_RELAXED))
        __atomic_store_n(&lists->batches_overflowed, 1, __ATOMIC_RELAXED);
    return false;
}

/* A refill of a full batch found no ready one: if a drain found the stack
 * full since a refill last looked, the class cycles more than the stack
 * holds, and its limit doubles. */
static void grow_batch_limit(struct central_node *central, struct central_class *lists,
                             unsigned size_class)
{
    if (!__atomic_load_n(&lists->batches_overflowed, __ATOMIC_RELAXED) ||
        !__atomic_exchange_n(&lists->batches_overflowed, 0, __ATOMIC_RELAXED))
        return;
    int64_t limit = __atomic_load_n(&lists->batch_limit, __ATOMIC_RELAXED);
    int64_t grown = grown_batch_limit(size_class);
    /* By CAS: the class counts once among the grown ones. */
    if (limit < grown &&
        __atomic_compare_exchange_n(&lists->batch_limit, &limit,
                                    limit * 2 < grown ? limit * 2 : grown, false,
                                    __ATOMIC_RELAXED, __ATOMIC_RELAXED) &&
        limit == first_batch_limit(size_class))
        __atomic_fetch_add(&central->grown_stacks, 1, __ATOMIC_RELAXED);
}

/* The class's stack was flushed, or no refill took from it for a pass:
 * back to its first limit. */
static void reset_batch_limit(struct central_node *central, struct central_class *lists,
                              unsigned size_class)
{
    int64_t first = first_batch_limit(size_class);
    if (__atomic_load_n(&lists->batch_limit, __ATOMIC_RELAXED) != first &&
        __atomic_exchange_n(&lists->batch_limit, first, __ATOMIC_RELAXED) != first) {
        __atomic_fetch_sub(&central->grown_stacks, 1, __ATOMIC_RELAXED);
        /* Its low-water mark is kept only while grown (trim_grown_stack):
         * a stale one would make the first pass after it grows again give
         * back batches its cycle uses. */
        __atomic_store_n(&lists->batch_low, 0, __ATOMIC_RELAXED);
    }
    if (__atomic_load_n(&lists->batches_overflowed, __ATOMIC_RELAXED))
        __atomic_store_n(&lists->batches_overflowed, 0, __ATOMIC_RELAXED);
}

/* Rows per node: one per index the kernel may give a CPU or an mm_cid
 * (the per-CPU slabs' count), so none when that bound is unknown. */
static int carver_count;

int xmm_central_init(void)
{
    size_t bytes = sizeof(struct central_node) * (size_t)xmm_nodes;
    int bound = xmm_topology.cpu_index_bound;
    carver_count = bound > 0 && bound <= XMM_CENTRAL_CARVERS ? bound : 0;
    central_nodes = xmm_metadata_alloc(bytes, XMM_CACHE_LINE);
    if (!central_nodes)
        return -1;
    for (int node = 0; node < xmm_nodes; node++) {
        struct central_node *central = &central_nodes[node];
        xmm_stack_init(&central->free_batches);
        if (carver_count) {
            central->carvers = xmm_metadata_alloc(sizeof(struct carver_row) *
                                                      (size_t)carver_count, XMM_CACHE_LINE);
            if (!central->carvers)
                return -1;
            /* Zeroed: every own_batches stack is empty (ck_stack_init
             * writes zeros), and the rows' pages stay untouched until used. */
        }
        for (unsigned size_class = 1; size_class < XMM_CLASS_COUNT; size_class++) {
            struct central_class *lists = &central->classes[size_class];
            xmm_stack_init(&lists->batches);
            xmm_stack_init(&lists->spans);
            lists->batch_limit = first_batch_limit(size_class);
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
    xmm_chunk_set_page_info(span, 0, 0); /* free() of its addresses: slow path */
    struct central_node *central = &central_nodes[span->node];
    struct central_class *lists = &central->classes[span->size_class];
    __atomic_fetch_add(&central->spans_released, 1, __ATOMIC_RELAXED);
    __atomic_fetch_sub(&central->span_bytes, xmm_span_bytes(span), __ATOMIC_RELAXED);
    __atomic_fetch_sub(&lists->span_count, 1, __ATOMIC_RELAXED);
    xmm_page_heap_free(span);
}

/* Empty listed spans: memory the class holds with nothing in use, which a
 * sweep can give back. A span counts from the moment its in-use count
 * reaches zero while it is LISTED (a free), or it is listed with none in
 * use (unclaim), until it is claimed again (claim: a refill or a sweep).
 * Each of these happens-before the next on the span's state word, so the
 * count is exact once the threads making them have returned; an increment
 * may land after the claim it precedes, so it can be briefly negative.
 * The node's `empty_bytes` sums the classes' counts in bytes: the one load
 * that tells an allocation about to grow the heap whether a reclaim could
 * spare it (xmm_central_alloc_pages). `span_bytes` is read by the caller
 * while it still owns or pins the span. Returns the class's new count. */
static int64_t count_empty(struct central_node *central, struct central_class *lists,
                           size_t span_bytes, int64_t delta)
{
    __atomic_fetch_add(&central->empty_bytes, delta * (int64_t)span_bytes, __ATOMIC_RELAXED);
    return __atomic_add_fetch(&lists->empty_listed, delta, __ATOMIC_RELAXED);
}

static size_t sweep_if_due(struct central_class *lists, int64_t empty, size_t span_bytes);

/* Gives `count` objects of `span`, already linked first -> ... -> last, back
 * to it: one CAS pushes the chain, one CAS takes them off the in-use
 * count. */
static void return_chain_to_span(struct xmm_span *span, void *first, void *last,
                                 unsigned count)
{
    /* Read while the objects still count as in use, which pins the span:
     * once the count drops, a sweep may release and reuse the descriptor. */
    struct central_node *central = &central_nodes[span->node];
    struct central_class *lists = &central->classes[span->size_class];
    size_t span_bytes = xmm_span_bytes(span);
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
        sweep_if_due(lists, count_empty(central, lists, span_bytes, 1), span_bytes);
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

/* A drain meets an object without the cache tag. Every object a cache or
 * a batch holds has the tag exactly (its own address as its link: the
 * word is the secret, free_object.h), and each object the drain takes
 * holds DRAINING_WORD or a link until its run is returned: so this one
 * was written after its free, or it is in the drain twice (a second free
 * after such a write, which free() took for a live block's: docs/
 * design.md, "Heap misuse"). Linked twice, it would cut its span's list
 * and count one block too few in use, and the span could be given back
 * while a block of it is live. Reported (an abort unless
 * XMM_INVALID_FREE=warn); the caller leaves it out. */
void xmm_central_report_untagged(const void *object)
{
    xmm_report_bad_free("heap corruption: a free block was overwritten (a write after free, an "
                        "overflow of the block before it) or freed twice (a second free after "
                        "such a write), not given back to its span:",
                        object);
}

/* What an object taken by a drain holds until its run is linked into its
 * span's list: not the cache tag, so that a second copy later in the same
 * group fails the check; and a word that still decodes to the object's
 * own span (bit 3 flipped), so that a racing free() of it by a program
 * that frees it again sees a free object and reports a double free,
 * rather than taking it for a live block (a review). */
#define DRAINING_WORD(secret) ((uintptr_t)(secret) ^ 8)

/* A run of objects of one span in a drain, linked first -> ... -> last. */
struct drained_run {
    struct xmm_span *span;
    void *first, *last;
    unsigned length;
};

/* Returns objects of one class to their spans, XMM_MAX_BATCH at a time.
 * Two passes: the first finds every span and prefetches its descriptor
 * and the object (independent loads, so their cache misses overlap
 * instead of queueing behind each locked CAS); the second checks each
 * object's tag and links runs of objects from the same span (the common
 * case for a batch cut from one span); then each run goes back with one
 * pair of CASes. The runs go back after the whole group is checked: a
 * run's last object then gets its span's list head as its link, which is
 * the tag again when the list is empty, and a copy of it later in the
 * group would pass. Every caller gives one group at most (a batch; a
 * release checks a whole bin first: cpu_cache.c, drain_locked). */
static void return_objects_to_spans(void *const *objects, unsigned count)
{
    struct xmm_span *spans[XMM_MAX_BATCH];
    struct drained_run runs[XMM_MAX_BATCH];
    while (count) {
        unsigned group = count < XMM_MAX_BATCH ? count : XMM_MAX_BATCH;
        for (unsigned i = 0; i < group; i++) {
            spans[i] = span_of_object(objects[i]);
            __builtin_prefetch(&spans[i]->free_list, 1);
            __builtin_prefetch(objects[i], 1);
        }
        unsigned run_count = 0;
        for (unsigned i = 0; i < group; i++) {
            void *object = objects[i];
            xmm_free_word *word = (xmm_free_word *)object;
            if (XMM_UNLIKELY(*word != (uintptr_t)xmm_free_secret)) {
                xmm_central_report_untagged(object);
                continue;
            }
            *word = DRAINING_WORD(xmm_free_secret);
            if (run_count && spans[i] == runs[run_count - 1].span) {
                struct drained_run *run = &runs[run_count - 1];
                xmm_free_object_set(run->last, object);
                run->last = object;
                run->length++;
            } else {
                runs[run_count++] = (struct drained_run){spans[i], object, object, 1};
            }
        }
        for (unsigned r = 0; r < run_count; r++)
            return_chain_to_span(runs[r].span, runs[r].first, runs[r].last, runs[r].length);
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
    if (in_use_of(state) == 0) {
        struct central_node *central = &central_nodes[span->node];
        count_empty(central, &central->classes[span->size_class], xmm_span_bytes(span), -1);
    }
}

static bool has_free_objects(struct xmm_span *span)
{
    return span->carved < xmm_size_classes[span->size_class].objects || span->purged != 0 ||
           __atomic_load_n(&span->free_list, __ATOMIC_ACQUIRE) != NULL;
}

/* The claimant lets go: back on the stack if objects remain, else NOWHERE.
 * `remains` can only turn from false to true meanwhile (frees push; only
 * the claimant takes), and such a free also changes the count, failing the
 * CAS: so NOWHERE is only ever set on a span with nothing free. */
static void unclaim(struct xmm_span *span)
{
    /* Read while the span is ours: once it is listed, another thread may
     * claim, release and reuse it. */
    struct central_node *central = &central_nodes[span->node];
    struct central_class *lists = &central->classes[span->size_class];
    size_t span_bytes = xmm_span_bytes(span);
    uint64_t state = __atomic_load_n(&span->state, __ATOMIC_ACQUIRE);
    for (;;) {
        bool remains = has_free_objects(span);
        uint64_t next = (state & ~(uint64_t)XMM_SPAN_PLACE_MASK) |
                        (remains ? XMM_SPAN_LISTED : XMM_SPAN_NOWHERE);
        if (__atomic_compare_exchange_n(&span->state, &state, next, false, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE)) {
            if (remains) {
                /* Counted before it is pushed: a claim that pops it must
                 * find the count it takes back (or briefly go below). */
                if (in_use_of(next) == 0)
                    count_empty(central, lists, span_bytes, 1);
                xmm_stack_push(&lists->spans, &span->stack_entry);
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

/* A span's free list that loops: an object linked into it twice, which
 * no correct program can cause. Its walk would never end. */
static _Noreturn void report_list_loop(const void *object, const struct xmm_size_class *info)
{
    xmm_fatal("xmm: heap corruption: the free list through %p (%z-byte blocks) loops (a block "
              "freed twice that was not caught, or a free object overwritten)\n",
              object, (size_t)info->size);
}

/* ---- objects a trim purged whole ------------------------------------------------- */

/* A trim gives back the pages of a span's free objects whole, the page of
 * each one's first word (its free tag) included, when the span can record
 * which ones it purged: one bit per object in span->purged, so spans of at
 * most 64 objects, the classes from 128 bytes up. The pages holding those
 * first words have their info cleared, so that a free() of any block
 * starting there takes the slow path, which reads span->purged (free.c):
 * a purged block's first word reads zero, as a live block's can, so the
 * page word must not send its free the fast way. */
#define XMM_PURGED_MAP_OBJECTS 64
_Static_assert(XMM_PURGED_MAP_OBJECTS <= sizeof(((struct xmm_span *)0)->purged) * 8,
               "span->purged has a bit per object");

static bool records_purged(const struct xmm_size_class *info)
{
    return info->objects <= XMM_PURGED_MAP_OBJECTS;
}

/* The objects below `count`, as span->purged bits. */
static uint64_t objects_below(uint32_t count)
{
    return count >= 64 ? UINT64_MAX : ((uint64_t)1 << count) - 1;
}

/* The allocator page of the span that holds object `index`'s first word. */
static uint32_t first_word_page(const struct xmm_size_class *info, uint32_t index)
{
    return (uint32_t)(((size_t)index * info->size) >> XMM_PAGE_SHIFT);
}

/* Whether the info of the span's page `page` stays cleared: the page holds
 * the first word of an object purged whole, or lies in a cut-back tail. */
static bool page_hides_free_objects(const struct xmm_span *span,
                                    const struct xmm_size_class *info, uint32_t page)
{
    if (span->tail_purged && page >= first_word_page(info, span->carved))
        return true;
    for (uint64_t rest = span->purged; rest; rest &= rest - 1)
        if (first_word_page(info, (uint32_t)__builtin_ctzll(rest)) == page)
            return true;
    return false;
}

/* Claimant only: after the objects of `changed` joined or left
 * span->purged, sets the info of the pages holding their first words:
 * cleared while such a page hides an object purged whole, the class's
 * again once it hides none. */
static void update_first_word_pages(const struct xmm_span *span,
                                    const struct xmm_size_class *info, uint64_t changed)
{
    for (; changed; changed &= changed - 1) {
        uint32_t page = first_word_page(info, (uint32_t)__builtin_ctzll(changed));
        unsigned size_class = page_hides_free_objects(span, info, page) ? 0 : span->size_class;
        xmm_chunk_set_page_range(span, size_class, page, page + 1);
    }
}

/* Claimant only: takes up to `wanted` of the objects a trim purged whole.
 * Each is tagged free (a cached object's mark; its first page faults in
 * again, zeroed) before it leaves span->purged, so that a free() of it
 * finds it free either way; its page's info comes back last. */
static unsigned take_purged(struct xmm_span *span, const struct xmm_size_class *info,
                            void **out, unsigned wanted)
{
    uint64_t purged = span->purged, taken_bits = 0;
    unsigned taken = 0;
    for (; purged && taken < wanted; purged &= purged - 1) {
        uint32_t index = (uint32_t)__builtin_ctzll(purged);
        char *object = span->start + (size_t)index * info->size;
        xmm_free_object_set(object, NULL);
        out[taken++] = object;
        taken_bits |= (uint64_t)1 << index;
    }
    __atomic_store_n(&span->purged, purged, __ATOMIC_RELEASE);
    update_first_word_pages(span, info, taken_bits);
    return taken;
}

/* Tags a never-used object free and returns the word it held: 0 unless
 * an overflow wrote it. The first object of a page is swapped, not read
 * and then written: a read as the page's first touch maps the zero page
 * and the write faults again; under THP the read maps the huge zero page,
 * whose write fault splits its 2 MiB into small pages for good, and the
 * span's chunk never gets huge pages at fault (in the 2-node VM of
 * tests/numa, every chunk advised at its mapping ran on small pages). */
static uintptr_t mark_never_used(char *object, bool first_in_page)
{
    if (first_in_page)
        return xmm_free_object_swap(object, NULL);
    uintptr_t word = *(const xmm_free_word *)object;
    xmm_free_object_set(object, NULL);
    return word;
}

/* Claimant only: cuts up to `wanted` objects from the span's tail (a
 * clean new span's, or a trim's cut-back one), each tagged free as it is
 * cut (it goes to a cache), then `carved`, then the info of the pages up
 * to the next uncut object's first word, so that free() finds them as any
 * object cut before. The tail is cut by whole allocator pages: every
 * object whose first word lies on a page cut is cut with it, those the
 * refill does not take onto the span's free list, so that no page with
 * the info restored holds an uncut object. A cut-back tail may start in
 * the middle of a page, after objects cut before: its info is restored
 * with the rest of that page's objects. The pages after the last one cut
 * stay untouched: a new span writes no page of them (new_span), and a
 * trim gave a cut-back tail's pages back. A clean span's uncut objects
 * were never written: a first word that does not read zero was
 * overwritten by an overflow of the object before it, as a tag changed
 * would say. */
static unsigned cut_tail(struct xmm_span *span, const struct xmm_size_class *info, void **out,
                         unsigned wanted)
{
    uint32_t first = span->carved, carved = first;
    unsigned taken = 0;
    void *spare_first = NULL, *spare_last = NULL;
    bool clean = span->tail_purged == XMM_TAIL_CLEAN;
    while (taken < wanted && carved < info->objects) {
        uint32_t page = first_word_page(info, carved);
        for (uint32_t page_first = carved;
             carved < info->objects && first_word_page(info, carved) == page; carved++) {
            char *object = span->start + (size_t)carved * info->size;
            if (!clean)
                xmm_free_object_set(object, NULL);
            else if (XMM_UNLIKELY(mark_never_used(object, carved == page_first) != 0))
                xmm_fatal("xmm: heap corruption: the never-used object at %p (%z-byte blocks) "
                          "was overwritten (an overflow of the block before it)\n",
                          object, (size_t)info->size);
            if (taken < wanted) {
                out[taken++] = object;
                continue;
            }
            if (spare_last)
                xmm_free_object_set(spare_last, object);
            else
                spare_first = object;
            spare_last = object;
        }
    }
    uint32_t end_page = first_word_page(info, carved);
    if (carved == info->objects) {
        span->tail_purged = XMM_TAIL_NONE;
        end_page = span->pages;
    }
    __atomic_store_n(&span->carved, carved, __ATOMIC_RELEASE);
    xmm_chunk_set_page_range(span, span->size_class, first_word_page(info, first), end_page);
    /* After `carved`: a link is checked against it (next_free_object). */
    if (spare_first)
        push_chain(span, spare_first, spare_last);
    return taken;
}

/* Claimant only: asks for the line of every cut object's first word, in
 * address order (marked for writing, as take_objects writes each word it
 * takes; baseline x86-64 has no write prefetch and reads it in). A
 * span's free list runs through its objects in the order they were freed,
 * so walking it waits for one cache miss after another once the objects
 * have gone cold (a heap that freed most of itself a while ago: frag in
 * bench/analysis.md). The prefetches do not depend on one another, so
 * their misses overlap, and the walk finds the links in cache. A span of a
 * class with free lists is one to a few pages: at most 128 prefetches. */
static void prefetch_cut_objects(const struct xmm_span *span, const struct xmm_size_class *info)
{
    size_t stride = info->size < XMM_CACHE_LINE ? XMM_CACHE_LINE : info->size;
    const char *end = span->start + (size_t)span->carved * info->size;
    for (const char *line = span->start; line < end; line += stride)
        __builtin_prefetch(line, 1);
}

/* Only for a span at least half free: prefetching the lines of live
 * objects pulls them away from the CPU that uses them, which then misses
 * to write them again (batch1000/4096 with two threads ran 9-13% slower
 * when every span was prefetched). */
static bool worth_prefetching(const struct xmm_span *span)
{
    uint64_t in_use = in_use_of(__atomic_load_n(&span->state, __ATOMIC_RELAXED));
    return in_use * 2 <= span->carved;
}

/* Claimant only: takes up to `wanted` objects, free ones first (warm in
 * cache, and they keep untouched pages untouched), then uncut ones. */
static unsigned take_objects(struct xmm_span *span, void **out, unsigned wanted)
{
    const struct xmm_size_class *info = &xmm_size_classes[span->size_class];
    unsigned taken = 0;
    void *list = __atomic_exchange_n(&span->free_list, NULL, __ATOMIC_ACQUIRE);
    if (list && worth_prefetching(span))
        prefetch_cut_objects(span, info);
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
            uint32_t steps = 0;
            for (void *next; (next = next_free_object(span, info, last)) != NULL;) {
                if (XMM_UNLIKELY(++steps > info->objects))
                    report_list_loop(last, info);
                last = next;
            }
            push_chain(span, list, last);
        }
    }
    /* Objects were marked free when the span was made (new_span), or when
     * a trim's cut-back tail was restored; nothing may have written them
     * since: a word that is not a free object's any more was overwritten
     * by an overflow of the object before it (and a free() of it may
     * already have put it in a cache). */
    /* Then the objects a trim purged whole, before uncut ones: cold
     * either way, and the tail stays uncut. */
    if (XMM_UNLIKELY(span->purged) && taken < wanted)
        taken += take_purged(span, info, out + taken, wanted - taken);
    if (XMM_UNLIKELY(span->tail_purged) && taken < wanted && span->carved < info->objects) {
        xmm_assert(span->purged == 0); /* its pages' info stays as the tail's cut leaves it */
        taken += cut_tail(span, info, out + taken, wanted - taken);
    }
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

/* ---- carver runs -------------------------------------------------------------- */

/* A carver's new spans (of classes whose spans it keeps) are cut one after
 * another from a run of its own, taken from the page heap as one span, of
 * up to this many pages: the blocks of two CPUs then lie in separate runs,
 * instead of alternating span by span (a few pages) as two CPUs' requests to the
 * page heap do. */
#define XMM_CARVER_RUN_BYTES ((size_t)256 << 10)
#define XMM_CARVER_RUN_PAGES (XMM_CARVER_RUN_BYTES >> XMM_PAGE_SHIFT)

/* Counts `bytes` of `run` into (or, negative, out of) its node's run
 * bytes: pages a run holds are free pages out of the page heap, resident
 * ones too if the run came from resident pages (statistics). */
static void count_run_bytes(const struct xmm_span *run, int64_t bytes)
{
    struct central_node *central = &central_nodes[run->node];
    __atomic_fetch_add(&central->run_bytes, bytes, __ATOMIC_RELAXED);
    if (run->dirty != XMM_PAGES_CLEAN)
        __atomic_fetch_add(&central->run_resident_bytes, bytes, __ATOMIC_RELAXED);
}

/* Gives a run's pages not cut yet back to the page heap, as they were:
 * nothing wrote them. */
static void release_run(struct xmm_span *run)
{
    count_run_bytes(run, -(int64_t)xmm_span_bytes(run));
    xmm_page_heap_free_unwritten(run);
}

static struct xmm_span *central_alloc_upto(int node, size_t pages, size_t max_pages,
                                           size_t alignment);

/* `pages` for a new span of a class whose spans `row`'s carver keeps: cut
 * from the front of its run (a new run when the old one is too short; its
 * rest goes back). Any thread may hold the carver: the run is taken from
 * the row by atomic exchange, and put back if the row is still empty. */
static struct xmm_span *pages_from_run(int node, struct carver_row *row, size_t pages)
{
    struct xmm_span *run = __atomic_exchange_n(&row->run, NULL, __ATOMIC_ACQUIRE);
    if (run && run->pages < pages) {
        release_run(run);
        run = NULL;
    }
    if (!run) {
        /* A resident free span first, even one shorter than a run: holes
         * that spans of other classes left are reused, not kept beside
         * fresh pages. */
        run = xmm_page_heap_alloc_resident_upto(node, pages, XMM_CARVER_RUN_PAGES);
        /* Then a free span of pages nothing wrote or purged, even one
         * shorter than a run, before fresh pages: the rests of runs
         * (release_run) are such spans, 1-15 pages long, and were left
         * beside fresh ones (41 MiB of them while peak-idle allocated 1
         * GiB, resident where huge pages back the chunk). */
        if (!run)
            run = central_alloc_upto(node, pages, XMM_CARVER_RUN_PAGES, 0);
        if (!run)
            return xmm_central_alloc_pages(node, pages, 0);
        /* From LARGE by CAS: a double free of an old large block at this
         * address may have claimed the span meanwhile; it is that free's
         * now (reported, or in the heap again). */
        uint8_t large = XMM_SPAN_LARGE;
        if (!__atomic_compare_exchange_n(&run->kind, &large, XMM_SPAN_RUN, false,
                                         __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            return xmm_central_alloc_pages(node, pages, 0);
        count_run_bytes(run, (int64_t)xmm_span_bytes(run));
    }
    struct xmm_span *span;
    if (run->pages == pages) {
        span = run;
        run = NULL;
    } else {
        span = xmm_page_heap_cut_front(run, pages);
    }
    if (span)
        count_run_bytes(span, -(int64_t)xmm_span_bytes(span));
    /* After the cut: a cold check that taking a new run set off (through
     * xmm_central_alloc_pages) must not find the row idle. */
    if (!__atomic_load_n(&row->cut_since_check, __ATOMIC_RELAXED))
        __atomic_store_n(&row->cut_since_check, 1, __ATOMIC_RELAXED);
    struct xmm_span *none = NULL;
    if (run && !__atomic_compare_exchange_n(&row->run, &none, run, false, __ATOMIC_RELEASE,
                                            __ATOMIC_RELAXED))
        release_run(run);
    return span ? span : xmm_central_alloc_pages(node, pages, 0);
}

/* A fresh span for the class from the page heap, already CLAIMED: from
 * the run of `row`'s carver if there is one. */
static struct xmm_span *new_span(int node, unsigned size_class, struct carver_row *row)
{
    const struct xmm_size_class *info = &xmm_size_classes[size_class];
    struct xmm_span *span = row ? pages_from_run(node, row, info->span_pages)
                                : xmm_central_alloc_pages(node, info->span_pages, 0);
    if (!span)
        return NULL;
    xmm_arena_place_block((struct xmm_chunk *)xmm_region_of(span->start), info->size);
    span->size_class = (uint8_t)size_class;
    span->carved = 0;
    span->tail_purged = XMM_TAIL_NONE;
    span->purged = 0;
    span->free_list = NULL;
    __atomic_store_n(&span->state, XMM_SPAN_CLAIMED, __ATOMIC_RELAXED);
    if (span->dirty == XMM_PAGES_CLEAN) {
        /* A span of pages nothing wrote: one clean tail, cut page by page
         * as refills take it (cut_tail). Its pages' info stays cleared
         * till then, so that a free() of an object never handed out takes
         * the slow path and is reported there. Writing every object's tag
         * here faulted in the whole span (8-512 KiB) when a short process
         * used one object of it. Every span has two pages at least
         * (XMM_SPAN_MIN_BYTES). */
        span->tail_purged = XMM_TAIL_CLEAN;
        __atomic_store_n(&span->kind, XMM_SPAN_SMALL, __ATOMIC_RELEASE);
        xmm_chunk_set_page_info(span, 0, 0);
    } else {
        /* Every object is marked free before any is cut: a free() of one
         * that was never handed out is then reported (free_object.h)
         * without the free path reading `carved`. */
        for (uint32_t object = 0; object < info->objects; object++)
            xmm_free_object_set(span->start + (size_t)object * info->size, NULL);
        /* Publish the class before any object of the span can reach free(). */
        __atomic_store_n(&span->kind, XMM_SPAN_SMALL, __ATOMIC_RELEASE);
        xmm_chunk_set_page_info(span, size_class, 0);
    }
    struct central_node *central = &central_nodes[node];
    __atomic_fetch_add(&central->spans_created, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&central->span_bytes, xmm_span_bytes(span), __ATOMIC_RELAXED);
    __atomic_fetch_add(&central->classes[size_class].span_count, 1, __ATOMIC_RELAXED);
    return span;
}

/* ---- refill and drain ------------------------------------------------------------ */

/* Counts `batches` of `size_class` put on (positive) or taken off
 * (negative) the class's shared stack toward the next cold check
 * (release_cold_classes). A take leaves a count at zero or below as it
 * is: what was parked before the last check is not counted twice. */
static void count_parked(struct central_node *central, unsigned size_class, int64_t batches)
{
    if (batches < 0 && __atomic_load_n(&central->parked_since_check, __ATOMIC_RELAXED) <= 0)
        return;
    __atomic_fetch_add(&central->parked_since_check, batches * (int64_t)batch_bytes(size_class),
                       __ATOMIC_RELAXED);
}

/* What an own batch counts against XMM_OWN_BATCH_MAX_BYTES: its objects'
 * bytes, and at least 4 KiB, so that a carver holds at most 256 batch
 * descriptors (272 bytes of metadata each, never unmapped) whatever the
 * class: 1 MiB of 8-byte objects would be 4096 of them. */
static int64_t own_charge(unsigned size_class)
{
    size_t bytes = batch_bytes(size_class);
    return (int64_t)(bytes > 4096 ? bytes : 4096);
}

/* Copies `batch`'s objects to `out` and keeps its descriptor. */
static unsigned take_batch(struct central_node *central, struct transfer_batch *batch,
                           void **out, unsigned wanted)
{
    unsigned count = batch->count;
    xmm_assert(count == wanted);
    for (unsigned i = 0; i < count; i++)
        out[i] = batch->objects[i];
    xmm_stack_push(&central->free_batches, &batch->stack_entry);
    return count;
}

static unsigned refill_from_batch(struct central_node *central, struct central_class *lists,
                                  void **out, unsigned wanted)
{
    ck_stack_entry_t *entry = xmm_stack_pop(&lists->batches);
    if (!entry)
        return 0;
    int64_t left = __atomic_sub_fetch(&lists->batch_count, 1, __ATOMIC_RELAXED);
    if (left < __atomic_load_n(&lists->batch_low, __ATOMIC_RELAXED))
        __atomic_store_n(&lists->batch_low, left, __ATOMIC_RELAXED);
    __atomic_store_n(&lists->batches_taken, 1, __ATOMIC_RELAXED);
    count_parked(central, (unsigned)(lists - central->classes), -1);
    return take_batch(central, (struct transfer_batch *)entry, out, wanted);
}

/* After a pop of `row`'s own stack of `size_class`: one batch fewer.
 * Returns how many are left. */
static int32_t count_own_popped(struct carver_row *row, struct central_class *lists,
                                unsigned size_class)
{
    __atomic_fetch_sub(&row->own_bytes, own_charge(size_class), __ATOMIC_RELAXED);
    __atomic_fetch_sub(&lists->own_batch_count, 1, __ATOMIC_RELAXED);
    return __atomic_sub_fetch(&row->own_count[size_class], 1, __ATOMIC_RELAXED);
}

/* A batch `row`'s carver drained, if it has one of the class. */
static unsigned refill_from_own(struct central_node *central, struct central_class *lists,
                                struct carver_row *row, unsigned size_class, void **out,
                                unsigned wanted)
{
    struct xmm_stack *own = &row->own_batches[size_class];
    if (xmm_stack_is_empty(own))
        return 0;
    ck_stack_entry_t *entry = xmm_stack_pop(own);
    if (!entry)
        return 0;
    /* A new low-water mark, maybe (not atomic with the count: threads
     * sharing the carver may leave it a batch off until the next pass). */
    int32_t left = count_own_popped(row, lists, size_class);
    if (left < __atomic_load_n(&row->own_low[size_class], __ATOMIC_RELAXED))
        __atomic_store_n(&row->own_low[size_class], left, __ATOMIC_RELAXED);
    return take_batch(central, (struct transfer_batch *)entry, out, wanted);
}

/* Spans up to this long are kept by their carver (xmm_central_refill),
 * and cut from its run: what a CPU may keep is then at most this much per
 * class, besides its run. */
#define XMM_KEPT_SPAN_MAX_BYTES ((size_t)64 << 10)
_Static_assert(XMM_KEPT_SPAN_MAX_BYTES * 2 <= XMM_CARVER_RUN_BYTES,
               "a run holds at least two of the spans cut from it");

/* Whether carvers keep spans of the class (and own batches of it). */
static bool spans_kept(unsigned size_class)
{
    return ((size_t)xmm_size_classes[size_class].span_pages << XMM_PAGE_SHIFT) <=
           XMM_KEPT_SPAN_MAX_BYTES;
}

/* `carver`'s row on `central` (counted among the rows release_carvers
 * visits), or NULL when there is no carver or the class's spans are not
 * kept. */
static struct carver_row *carver_row_of(struct central_node *central, unsigned size_class,
                                        int carver)
{
    if (carver < 0 || carver >= carver_count || !spans_kept(size_class))
        return NULL;
    int used = __atomic_load_n(&central->carvers_used, __ATOMIC_RELAXED);
    while (carver >= used &&
           !__atomic_compare_exchange_n(&central->carvers_used, &used, carver + 1, true,
                                        __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
    return &central->carvers[carver];
}

/* After a refill took what it wanted from `span`: kept in `slot` while it
 * has objects to give (and the slot is empty: another thread with the same
 * carver may have filled it meanwhile), else let go. */
static void keep_or_unclaim(struct xmm_span **slot, struct xmm_span *span)
{
    struct xmm_span *empty = NULL;
    if (slot && has_free_objects(span) &&
        __atomic_compare_exchange_n(slot, &empty, span, false, __ATOMIC_RELEASE,
                                    __ATOMIC_RELAXED))
        return;
    unclaim(span);
}

/* The next span to cut from: the carver's kept one (taken out of its slot:
 * this thread is its claimant now), a listed one, or a new one (from the
 * carver's run). NULL when the kernel refuses memory. */
static struct xmm_span *span_to_cut(struct central_class *lists, struct carver_row *row,
                                    struct xmm_span **slot, int node, unsigned size_class)
{
    if (slot) {
        struct xmm_span *kept = __atomic_exchange_n(slot, NULL, __ATOMIC_ACQUIRE);
        if (kept)
            return kept;
    }
    ck_stack_entry_t *entry = xmm_stack_pop(&lists->spans);
    if (entry) {
        struct xmm_span *span = xmm_span_of_entry(entry);
        claim(span);
        return span;
    }
    return new_span(node, size_class, row);
}

unsigned xmm_central_refill(int node, unsigned size_class, void **out, unsigned wanted,
                            int carver)
{
    struct central_node *central = &central_nodes[node];
    struct central_class *lists = &central->classes[size_class];
    struct carver_row *row = carver_row_of(central, size_class, carver);
    if (__atomic_load_n(&lists->refills_seen, __ATOMIC_RELAXED) != REFILLED_SINCE_CHECK)
        __atomic_store_n(&lists->refills_seen, REFILLED_SINCE_CHECK, __ATOMIC_RELAXED);
    if (wanted == xmm_size_classes[size_class].batch) {
        unsigned count = row ? refill_from_own(central, lists, row, size_class, out, wanted) : 0;
        if (!count)
            count = refill_from_batch(central, lists, out, wanted);
        if (count) {
            __atomic_fetch_add(&lists->objects_out, count, __ATOMIC_RELAXED);
            return count;
        }
        grow_batch_limit(central, lists, size_class);
    }
    if (!__atomic_load_n(&lists->refilled, __ATOMIC_RELAXED))
        __atomic_store_n(&lists->refilled, 1, __ATOMIC_RELAXED);
    if (row && !__atomic_load_n(&row->refilled, __ATOMIC_RELAXED))
        __atomic_store_n(&row->refilled, 1, __ATOMIC_RELAXED);
    struct xmm_span **slot = row ? &row->kept[size_class] : NULL;
    unsigned got = 0;
    while (got < wanted) {
        struct xmm_span *span = span_to_cut(lists, row, slot, node, size_class);
        if (!span)
            break;
        got += take_objects(span, out + got, wanted - got);
        keep_or_unclaim(slot, span);
    }
    __atomic_fetch_add(&lists->objects_out, got, __ATOMIC_RELAXED);
    return got;
}

/* Lets go of the span `row`'s carver keeps of the class, if any: listed
 * again where sweeps and other CPUs find it. */
static void release_kept(struct carver_row *row, unsigned size_class)
{
    if (!__atomic_load_n(&row->kept[size_class], __ATOMIC_RELAXED))
        return;
    struct xmm_span *kept = __atomic_exchange_n(&row->kept[size_class], NULL, __ATOMIC_ACQUIRE);
    if (kept)
        unclaim(kept);
}

static void release_row_run(struct carver_row *row)
{
    if (!__atomic_load_n(&row->run, __ATOMIC_RELAXED))
        return;
    struct xmm_span *run = __atomic_exchange_n(&row->run, NULL, __ATOMIC_ACQUIRE);
    if (run)
        release_run(run);
}

/* Lets go of the spans `row`'s carver keeps and gives its run back. From
 * `first_class` on: an idle pass keeps the spans of the classes under a
 * cache line (release_carvers says why). */
static void release_row(struct carver_row *row, unsigned first_class)
{
    for (unsigned size_class = first_class; size_class < XMM_CLASS_COUNT; size_class++)
        release_kept(row, size_class);
    release_row_run(row);
}

/* Which own batches give_back_own_batches moves: all (trim); as many of
 * each class as its low-water mark, then a new pass starts (the upkeep
 * pass); the same without starting one (the reclaim before growth). */
enum own_give_back { OWN_ALL, OWN_UNUSED_NEW_PASS, OWN_UNUSED };

/* Moves up to `most` of `row`'s own batches of `size_class` to the class's
 * stack, where every CPU's refills find them; returns how many. */
static int32_t give_back_own_class(struct central_node *central, struct carver_row *row,
                                   unsigned size_class, int32_t most)
{
    struct central_class *lists = &central->classes[size_class];
    int32_t moved = 0;
    ck_stack_entry_t *entry;
    while (moved < most && (entry = xmm_stack_pop(&row->own_batches[size_class]))) {
        count_own_popped(row, lists, size_class);
        __atomic_fetch_add(&lists->batch_count, 1, __ATOMIC_RELAXED);
        xmm_stack_push(&lists->batches, entry);
        moved++;
    }
    if (moved)
        count_parked(central, size_class, moved);
    return moved;
}

static void give_back_own_batches(struct central_node *central, struct carver_row *row,
                                  enum own_give_back which)
{
    if (__atomic_load_n(&row->own_bytes, __ATOMIC_RELAXED) <= 0)
        return; /* at least what the stacks hold: none */
    for (unsigned size_class = 1; size_class < XMM_CLASS_COUNT; size_class++) {
        int32_t *low = &row->own_low[size_class];
        if (__atomic_load_n(&row->own_count[size_class], __ATOMIC_RELAXED) <= 0)
            continue;
        int32_t unused = which == OWN_ALL ? INT32_MAX : __atomic_load_n(low, __ATOMIC_RELAXED);
        int32_t moved = unused > 0 ? give_back_own_class(central, row, size_class, unused) : 0;
        /* A new pass starts from what is left; the reclaim takes only what
         * this pass has not needed so far. (The mark stays at most the
         * count, give or take a racing refill's batch.) */
        if (which == OWN_UNUSED_NEW_PASS)
            __atomic_store_n(low, __atomic_load_n(&row->own_count[size_class], __ATOMIC_RELAXED),
                             __ATOMIC_RELAXED);
        else if (which == OWN_ALL)
            __atomic_store_n(low, 0, __ATOMIC_RELAXED);
        else if (moved)
            __atomic_fetch_sub(low, moved, __ATOMIC_RELAXED);
    }
}

/* Releases the rows of every carver (`idle_only`: the spans and run of
 * those that did not refill from spans since the last call, and of each
 * class as many own batches as no refill needed since then, its low-water
 * mark, so that a CPU gone quiet, or one that only frees a class, does
 * not keep them past the decay period).
 *
 * An idle pass leaves a carver the spans it keeps of the classes under a
 * cache line (1 to XMM_SUBLINE_CLASSES, one span of 8 KiB each, resident
 * once cut; neither decay nor the reclaim takes them, as they are not
 * empty listed spans): the next CPU to refill such a class would
 * pop the span and cut the objects beside those this CPU's cache holds,
 * in the same lines. Two threads that then each reuse one object write
 * one line: bench/micro malloc_free/8 with two threads ran at 7 ns a
 * pair instead of 2 whenever the one-thread cases before it lasted past
 * a decay period (tests/mem/test_own_batches.c, case kept). A trim
 * (not idle_only) lets go of them too. */
static void release_carvers(struct central_node *central, bool idle_only)
{
    unsigned first_class = idle_only ? XMM_SUBLINE_CLASSES + 1 : 1;
    int used = __atomic_load_n(&central->carvers_used, __ATOMIC_RELAXED);
    for (int carver = 0; carver < used; carver++) {
        struct carver_row *row = &central->carvers[carver];
        bool refilled = idle_only && __atomic_load_n(&row->refilled, __ATOMIC_RELAXED) &&
                        __atomic_exchange_n(&row->refilled, 0, __ATOMIC_RELAXED);
        if (!refilled)
            release_row(row, first_class);
        give_back_own_batches(central, row, idle_only ? OWN_UNUSED_NEW_PASS : OWN_ALL);
    }
}

static struct transfer_batch *batch_descriptor(struct central_node *central)
{
    ck_stack_entry_t *entry = xmm_stack_pop(&central->free_batches);
    if (entry)
        return (struct transfer_batch *)entry;
    return xmm_metadata_alloc(sizeof(struct transfer_batch), 16);
}

/* `carver`'s row when a batch of the class fits among its own batches. */
static struct carver_row *row_with_room(struct central_node *central, unsigned size_class,
                                        int carver)
{
    struct carver_row *row = carver_row_of(central, size_class, carver);
    if (!row || __atomic_load_n(&row->own_bytes, __ATOMIC_RELAXED) + own_charge(size_class) >
                    XMM_OWN_BATCH_MAX_BYTES)
        return NULL;
    return row;
}

void xmm_central_drain(int node, unsigned size_class, void *const *objects, unsigned count,
                       int carver)
{
    struct central_node *central = &central_nodes[node];
    struct central_class *lists = &central->classes[size_class];
    __atomic_fetch_add(&lists->objects_in, count, __ATOMIC_RELAXED);
    if (count == xmm_size_classes[size_class].batch) {
        struct carver_row *row = row_with_room(central, size_class, carver);
        struct transfer_batch *batch =
            row || batch_stack_has_room(lists) ? batch_descriptor(central) : NULL;
        if (batch) {
            batch->count = count;
            for (unsigned i = 0; i < count; i++)
                batch->objects[i] = objects[i];
            if (row) {
                __atomic_fetch_add(&row->own_bytes, own_charge(size_class),
                                   __ATOMIC_RELAXED);
                __atomic_fetch_add(&row->own_count[size_class], 1, __ATOMIC_RELAXED);
                __atomic_fetch_add(&lists->own_batch_count, 1, __ATOMIC_RELAXED);
                xmm_stack_push(&row->own_batches[size_class], &batch->stack_entry);
            } else {
                /* Parked, not reused yet: counts toward the next cold check
                 * until a refill takes it (release_cold_classes says why). */
                count_parked(central, size_class, 1);
                __atomic_fetch_add(&lists->batch_count, 1, __ATOMIC_RELAXED);
                xmm_stack_push(&lists->batches, &batch->stack_entry);
            }
            return;
        }
    }
    return_objects_to_spans(objects, count);
}

/* ---- upkeep -------------------------------------------------------------------------- */

/* Returns up to `most` ready batches of the class to their spans. */
static void flush_some_batches(struct central_node *central, struct central_class *lists,
                               int64_t most)
{
    ck_stack_entry_t *entry;
    int64_t flushed = 0;
    while (flushed < most && (entry = xmm_stack_pop(&lists->batches))) {
        struct transfer_batch *batch = (struct transfer_batch *)entry;
        __atomic_fetch_sub(&lists->batch_count, 1, __ATOMIC_RELAXED);
        return_objects_to_spans(batch->objects, batch->count);
        xmm_stack_push(&central->free_batches, &batch->stack_entry);
        flushed++;
    }
    if (flushed)
        count_parked(central, (unsigned)(lists - central->classes), -flushed);
}

/* Returns every ready batch of the class to its spans, and its limit to
 * the first. */
static void flush_batches(struct central_node *central, struct central_class *lists)
{
    reset_batch_limit(central, lists, (unsigned)(lists - central->classes));
    flush_some_batches(central, lists, INT64_MAX);
}

/* An upkeep pass, for a class whose limit grew: as many batches as no
 * refill took since the pass before (the fewest the stack held since)
 * go back to their spans. A burst that grew the limit, followed by a
 * trickle that takes a few batches each pass, kept the burst's last
 * frees parked for good: a loop of 1000 blocks of 32 KiB, then 256 every
 * 50 ms, stayed at 34.6 MB of RSS with 32 MiB of batches, 10.5 MB before
 * the limit could grow (found in review). The own batches' low-water
 * mark does the same (give_back_own_batches). */
static void trim_grown_stack(struct central_node *central, struct central_class *lists,
                             unsigned size_class)
{
    if (__atomic_load_n(&lists->batch_limit, __ATOMIC_RELAXED) == first_batch_limit(size_class))
        return; /* its mark is not kept: the first pass after growth takes none */
    int64_t count = __atomic_load_n(&lists->batch_count, __ATOMIC_RELAXED);
    int64_t unused = __atomic_exchange_n(&lists->batch_low, count, __ATOMIC_RELAXED);
    if (unused > 0)
        flush_some_batches(central, lists, unused);
}

/* How a sweep goes (sweep_spans). */
enum sweep_mode {
    SWEEP_ALL = 0,         /* every listed span, once */
    SWEEP_UNTIL_NONE = 1,  /* stop once the class counts no empty listed span */
    SWEEP_PURGE = 2,       /* trim: also purge inside the free objects kept */
};

/* What a sweep gave back; `stoppable`: the sweep stops popping spans
 * once a fork asks (purge_stop). */
struct sweep_totals {
    size_t released;
    size_t purged;
    bool stoppable;
};

/* The background thread's purge inside spans holds a class's listed spans,
 * claimed, until its walk ends (sweep_spans); a fork child, which has no
 * such thread, would lose them for good (a review found 14-41 children in
 * 100-200 keeping 4-16 MiB of spans after freeing everything and
 * trimming). So a fork asks the purge to stop and waits for it: the sweep
 * stops popping at its next span and lets go of those it holds, in
 * milliseconds. No lock: `purge_stop` and `purge_running` are set and read
 * in opposite orders (sequentially consistent), so that either the purge
 * sees the request or the fork sees the purge. The wait is bounded
 * (XMM_FORK_PURGE_WAIT_NS): a fork from a signal handler that interrupted
 * XMM holding the lock the sweep waits for goes on after it, and its
 * child then loses that class's listed spans. */
static uint32_t purge_stop, purge_running;
#define XMM_FORK_PURGE_WAIT_NS ((uint64_t)1000000000)

static bool purge_stopped(const struct sweep_totals *totals)
{
    return totals && totals->stoppable && __atomic_load_n(&purge_stop, __ATOMIC_SEQ_CST);
}

/* Kernel pages wholly inside a run of consecutive free objects of a span. */
struct free_run {
    char *begin, *end;
};

/* The runs of consecutive objects of `free_bits` (free objects below a
 * span's cut: on its list, or purged whole by an earlier trim) that hold
 * a whole kernel page and an object of `listed` (on the list now): their
 * pages are given back, and the listed objects whose first word lies on
 * one of them are purged whole (`newly`). Returns how many runs. */
static unsigned find_free_runs(const struct xmm_span *span, const struct xmm_size_class *info,
                               uint64_t free_bits, uint64_t listed, struct free_run *runs,
                               uint64_t *newly)
{
    uintptr_t page = xmm_os_page_size();
    unsigned count = 0;
    while (free_bits) {
        uint32_t first = (uint32_t)__builtin_ctzll(free_bits);
        uint64_t from_first = ~(free_bits >> first);
        uint32_t length = from_first ? (uint32_t)__builtin_ctzll(from_first) : 64 - first;
        uint64_t run_bits = objects_below(length) << first;
        free_bits &= ~run_bits;
        uintptr_t begin = xmm_align_up((uintptr_t)span->start + (size_t)first * info->size, page);
        uintptr_t end = ((uintptr_t)span->start + (size_t)(first + length) * info->size) &
                        ~(page - 1);
        if (end <= begin || !(listed & run_bits))
            continue;
        runs[count++] = (struct free_run){(char *)begin, (char *)end};
        for (uint64_t rest = listed & run_bits; rest; rest &= rest - 1) {
            uint32_t index = (uint32_t)__builtin_ctzll(rest);
            uintptr_t word_page = ((uintptr_t)span->start + (size_t)index * info->size) &
                                  ~(page - 1);
            if (word_page >= begin && word_page + page <= end)
                *newly |= (uint64_t)1 << index;
        }
    }
    return count;
}

/* Claimant only (a trim's sweep): gives back the pages of the span's free
 * and uncut objects. The free list is taken as take_objects takes it and
 * walked with its links checked.
 *
 * The free objects at the end of the span, from the last one cut down to
 * the first one still in use or cached, are cut back: `carved` drops below
 * them and they join the uncut tail. The tail is then purged whole, tags
 * included: the page info of its pages is cleared first, so that a free()
 * of an address there takes the slow path, which finds it past `carved`
 * and reports an invalid pointer, as for any block never handed out
 * (free.c). Refills cut the tail again page by page, re-tagging its
 * objects and restoring the page info (cut_tail).
 *
 * Below the cut, in spans that record them (records_purged), every kernel
 * page wholly inside free objects is given back. A listed object whose
 * first word lies on such a page is purged whole: it leaves the list for
 * span->purged, and its first word's page info is cleared, both before
 * the pages go, so that a free() of it takes the slow path and finds it
 * free there (free.c); a refill takes it from span->purged (take_purged).
 * The other listed objects keep the page of their first word (the free
 * tag that free() reads to tell a live block from a free one: a purged
 * page reads zero, a live block's word) and are relinked and pushed back
 * whole; frees push onto the emptied list meanwhile, and the chain goes
 * on top of them.
 *
 * One madvise per run of free objects: a trim, not a hot path. Returns
 * the bytes advised. A double free that races with the trim in another
 * thread can read the page info before it is cleared and the first word
 * after it is purged (a live block's zero): it then goes unreported (a
 * double free is undefined; the report is best effort in that one race). */
static size_t purge_free_objects(struct xmm_span *span)
{
    const struct xmm_size_class *info = &xmm_size_classes[span->size_class];
    uintptr_t page = xmm_os_page_size();
    struct xmm_chunk *chunk = (struct xmm_chunk *)xmm_region_of(span->start);
    uint32_t carved = span->carved;
    uint64_t purged = span->purged;
    /* Walking the list touches each free object: at most 64 in a span
     * that records purges; in the others (objects below 128 bytes, none
     * with a page of its own) not for less than two pages of them. */
    uint64_t on_list_count = carved - in_use_of(__atomic_load_n(&span->state, __ATOMIC_ACQUIRE)) -
                             (uint64_t)__builtin_popcountll(purged);
    if (records_purged(info) ? on_list_count == 0 : on_list_count * info->size < 2 * page)
        return 0;
    /* Which cut objects are free: on the list, or purged whole. */
    uint64_t free_map[XMM_SPAN_MAX_OBJECTS / 64] = {0};
    void *list = __atomic_exchange_n(&span->free_list, NULL, __ATOMIC_ACQUIRE);
    for (void *object = list; object; object = next_free_object(span, info, object)) {
        uint32_t index = xmm_class_object_index(span->size_class,
                                                (size_t)((char *)object - span->start));
        uint64_t bit = (uint64_t)1 << (index % 64);
        /* Met twice: the list loops (an object linked into it twice), and
         * this walk would not end. */
        if (XMM_UNLIKELY(free_map[index / 64] & bit))
            report_list_loop(object, info);
        free_map[index / 64] |= bit;
    }
    uint64_t listed = free_map[0]; /* all of them, in a span that records purges */
    free_map[0] |= purged;
    uint32_t keep = carved;
    while (keep > 0 && (free_map[(keep - 1) / 64] >> ((keep - 1) % 64) & 1))
        keep--;
    struct free_run runs[XMM_PURGED_MAP_OBJECTS / 2 + 1];
    unsigned run_count = 0;
    uint64_t newly = 0;
    if (records_purged(info))
        run_count = find_free_runs(span, info, free_map[0] & objects_below(keep), listed, runs,
                                   &newly);
    if (newly) {
        purged |= newly;
        __atomic_store_n(&span->purged, purged, __ATOMIC_RELEASE);
        update_first_word_pages(span, info, newly);
    }
    /* Relink the objects that stay listed: cut, and not purged whole. */
    void *first = NULL, *last = NULL;
    for (void *object = list, *next; object; object = next) {
        next = next_free_object(span, info, object);
        uint32_t index = xmm_class_object_index(span->size_class,
                                                (size_t)((char *)object - span->start));
        if (index >= keep || (index < 64 && (newly >> index & 1)))
            continue;
        if (last)
            xmm_free_object_set(last, object);
        else
            first = object;
        last = object;
    }
    if (first) {
        xmm_free_object_set(last, NULL);
        push_chain(span, first, last);
    }
    size_t advised = 0;
    if (keep < info->objects) {
        /* The tail from object `keep` on: page info first, then `carved`,
         * then the pages (see above). Objects purged whole there join it:
         * past `carved`, they are no block of the span's any more. */
        size_t tail = (size_t)keep * info->size;
        xmm_chunk_set_page_info(span, 0, (uint32_t)(tail >> XMM_PAGE_SHIFT));
        span->tail_purged = XMM_TAIL_CUT_BACK;
        __atomic_store_n(&span->carved, keep, __ATOMIC_RELEASE);
        if (purged & ~objects_below(keep))
            __atomic_store_n(&span->purged, purged & objects_below(keep), __ATOMIC_RELEASE);
        uintptr_t begin = xmm_align_up((uintptr_t)span->start + tail, page);
        uintptr_t end = (uintptr_t)span->start + xmm_span_bytes(span);
        if (end > begin && xmm_arena_purge(chunk, (char *)begin, end - begin) == 0)
            advised += end - begin;
    }
    for (unsigned run = 0; run < run_count; run++) {
        size_t length = (size_t)(runs[run].end - runs[run].begin);
        if (xmm_arena_purge(chunk, runs[run].begin, length) == 0)
            advised += length;
    }
    if (advised)
        __atomic_fetch_add(&central_nodes[span->node].purged_inside, advised, __ATOMIC_RELAXED);
    return advised;
}

/* Pops the class's listed spans once (SWEEP_UNTIL_NONE: until the class
 * counts no empty one); those with nothing in use go to the page heap, the
 * others back on the stack. Single pops only (see lockfree_stack.h). Each
 * span is popped at most once, so a sweep ends even while frees keep
 * listing spans. Adds to `totals` the bytes released and (SWEEP_PURGE)
 * purged inside kept spans. Returns the bytes released. */
static size_t sweep_spans(struct central_class *lists, enum sweep_mode mode,
                          struct sweep_totals *totals)
{
    struct xmm_span *keep = NULL;
    size_t released = 0;
    ck_stack_entry_t *entry;
    while (!((mode & SWEEP_UNTIL_NONE) &&
             __atomic_load_n(&lists->empty_listed, __ATOMIC_RELAXED) <= 0) &&
           (entry = xmm_stack_pop(&lists->spans))) {
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
        if (mode & SWEEP_PURGE)
            totals->purged += purge_free_objects(span);
        span->stack_entry.next = (ck_stack_entry_t *)keep;
        keep = span;
        if (purge_stopped(totals))
            break;
    }
    while (keep) {
        struct xmm_span *next = (struct xmm_span *)keep->stack_entry.next;
        unclaim(keep);
        keep = next;
    }
    if (totals)
        totals->released += released;
    return released;
}

/* A sweep of the class by one thread at a time (the others go on); 0 if
 * another holds it. Not for a trim, which sweeps whatever else runs. */
static size_t sweep_exclusive(struct central_class *lists)
{
    uint32_t idle = 0;
    if (!__atomic_compare_exchange_n(&lists->sweeping, &idle, 1, false, __ATOMIC_ACQUIRE,
                                     __ATOMIC_RELAXED))
        return 0;
    size_t released = sweep_spans(lists, SWEEP_UNTIL_NONE, NULL);
    __atomic_store_n(&lists->sweeping, 0, __ATOMIC_RELEASE);
    return released;
}

/* A free made a listed span empty, the class's `empty`-th. When nothing
 * refilled from the class since the last upkeep pass (memory the program
 * stopped asking for, as when it frees data it made long ago) and the
 * empty spans are a quarter of the class's spans and at least
 * XMM_SWEEP_MIN_BYTES, the freeing thread sweeps them back to the page
 * heap, where they coalesce and can serve any size, without waiting for
 * the next upkeep pass. The quarter bounds the cost: a sweep pops at most
 * every span of the class, and releases a quarter of them. A class in use
 * keeps its empty spans for its next refills: a program that frees and
 * allocates its working set in cycles would otherwise pay a page heap round
 * trip per span (batch1000/32768: 37 -> 52 us per 1000); another size's
 * demand takes them anyway before the heap grows (xmm_central_alloc_pages). */
#define XMM_SWEEP_MIN_BYTES ((int64_t)2 << 20)
static size_t sweep_if_due(struct central_class *lists, int64_t empty, size_t span_bytes)
{
    if (empty * (int64_t)span_bytes < XMM_SWEEP_MIN_BYTES ||
        empty * 4 < __atomic_load_n(&lists->span_count, __ATOMIC_RELAXED) ||
        __atomic_load_n(&lists->refilled, __ATOMIC_RELAXED) ||
        __atomic_load_n(&lists->batches_taken, __ATOMIC_RELAXED))
        return 0;
    return sweep_exclusive(lists);
}

void xmm_central_release_carvers(bool idle_only)
{
    for (int node = 0; node < xmm_nodes; node++)
        release_carvers(&central_nodes[node], idle_only);
}

size_t xmm_central_release_all(void)
{
    struct sweep_totals totals = {0};
    for (int node = 0; node < xmm_nodes; node++) {
        struct central_node *central = &central_nodes[node];
        release_carvers(central, false);
        for (unsigned size_class = 1; size_class < XMM_CLASS_COUNT; size_class++) {
            flush_batches(central, &central->classes[size_class]);
            sweep_spans(&central->classes[size_class], SWEEP_ALL | SWEEP_PURGE, &totals);
        }
    }
    return totals.purged;
}

/* Ready batches nobody took since the last upkeep pass are memory the
 * program no longer asks for: back to their spans, so that empty spans can
 * return to the page heap and decay. */
static void flush_idle_batches(struct central_node *central, struct central_class *lists,
                               bool new_pass)
{
    bool idle = new_pass ? !__atomic_exchange_n(&lists->batches_taken, 0, __ATOMIC_RELAXED)
                         : !__atomic_load_n(&lists->batches_taken, __ATOMIC_RELAXED);
    if (!idle)
        return;
    if (__atomic_load_n(&lists->batch_count, __ATOMIC_RELAXED) > 0)
        flush_batches(central, lists);
    else
        reset_batch_limit(central, lists, (unsigned)(lists - central->classes));
}

void xmm_central_maintain(int node, uint64_t now_ns)
{
    struct central_node *central = &central_nodes[node];
    if (!xmm_turn_due(&central->last_maintenance_ns, now_ns,
                      xmm_upkeep_period_ns()))
        return;
    release_carvers(central, true);
    for (unsigned size_class = 1; size_class < XMM_CLASS_COUNT; size_class++) {
        struct central_class *lists = &central->classes[size_class];
        flush_idle_batches(central, lists, true);
        trim_grown_stack(central, lists, size_class);
        if (__atomic_load_n(&lists->refilled, __ATOMIC_RELAXED))
            __atomic_store_n(&lists->refilled, 0, __ATOMIC_RELAXED);
        if (__atomic_load_n(&lists->empty_listed, __ATOMIC_RELAXED) > 0)
            sweep_exclusive(lists);
    }
}

/* ---- the background thread's purge inside kept spans ------------------------------------ */

/* The least free bytes in a class's spans worth a purge. */
#define XMM_PURGE_INSIDE_MIN_BYTES ((int64_t)1 << 20)

static int64_t at_least_zero(int64_t value)
{
    return value > 0 ? value : 0;
}

static int64_t class_span_bytes(const struct central_class *lists, unsigned size_class)
{
    return __atomic_load_n(&lists->span_count, __ATOMIC_RELAXED) *
           (int64_t)xmm_size_classes[size_class].span_pages * (int64_t)XMM_PAGE_SIZE;
}

/* Bytes of free objects in the class's spans, from above: the spans'
 * bytes less the objects out and those in ready batches. Counts the
 * objects already purged and the uncut tails too. */
static int64_t free_in_spans(const struct central_class *lists, unsigned size_class)
{
    const struct xmm_size_class *info = &xmm_size_classes[size_class];
    int64_t out = (int64_t)(__atomic_load_n(&lists->objects_out, __ATOMIC_RELAXED) -
                            __atomic_load_n(&lists->objects_in, __ATOMIC_RELAXED));
    int64_t batches = __atomic_load_n(&lists->batch_count, __ATOMIC_RELAXED) +
                      __atomic_load_n(&lists->own_batch_count, __ATOMIC_RELAXED);
    int64_t used = (out + at_least_zero(batches) * (int64_t)info->batch) * (int64_t)info->size;
    return class_span_bytes(lists, size_class) - used;
}

/* Whether the class is worth a purge inside its spans now (see
 * central.h): at least XMM_PURGE_INSIDE_MIN_BYTES of free objects there,
 * and frees since its last purge of a quarter of those bytes, so that the
 * walks of the free objects a purge cannot give back (those sharing a
 * page with a live one, or purged before) cost at most four object visits
 * per free. */
static bool purge_inside_wanted(struct central_node *central, unsigned size_class)
{
    struct central_class *lists = &central->classes[size_class];
    int64_t free_bytes = free_in_spans(lists, size_class);
    if (free_bytes < XMM_PURGE_INSIDE_MIN_BYTES)
        return false;
    uint64_t freed = __atomic_load_n(&lists->objects_in, __ATOMIC_RELAXED) -
                     central->purges[size_class].in_at_purge;
    return (int64_t)(freed * xmm_size_classes[size_class].size) * 4 >= free_bytes;
}

/* Rounds in a row (half a decay period each) that must find the node's
 * central layer idle before spans are purged inside: four decay periods,
 * as the page heap waits before it splits huge pages.
 *
 * Why the node, and why so long: a first version purged a class as soon
 * as two rounds found it idle or sparse, and a helper measured what that
 * costs a server whose classes are reused after the purge: a cache of
 * 1 GB under steady traffic with mass evictions (3 threads, 60,000
 * operations a second) took 12% more CPU, 17 times the page faults and
 * 3.7 times the p99.9 latency of its sets (98 us against 27), for 7%
 * less RSS; a program that freed 90% of a class and refilled it after a
 * pause of 1.2 s took 76% more CPU. A class a CPU's cache serves looks
 * idle to the central layer while the program uses it. A node whose
 * central layer saw no refill and no drain at all for four decay periods
 * is a program that stopped allocating (idle-return's sleep, a server's
 * quiet night), whose free pages nobody will fault back soon. */
#define XMM_PURGE_INSIDE_ROUNDS 8

/* The node's refills and drains at the central layer, all classes. */
static uint64_t central_traffic(const struct central_node *central)
{
    uint64_t traffic = 0;
    for (unsigned size_class = 1; size_class < XMM_CLASS_COUNT; size_class++)
        traffic += __atomic_load_n(&central->classes[size_class].objects_out,
                                   __ATOMIC_RELAXED) +
                   __atomic_load_n(&central->classes[size_class].objects_in, __ATOMIC_RELAXED);
    return traffic;
}

/* Sweeps the class with SWEEP_PURGE if no other sweep holds it (else the
 * next round tries again). Returns whether it swept. */
static bool purge_class_inside(struct central_node *central, unsigned size_class,
                               struct sweep_totals *totals)
{
    struct central_class *lists = &central->classes[size_class];
    uint32_t idle = 0;
    if (!__atomic_compare_exchange_n(&lists->sweeping, &idle, 1, false, __ATOMIC_ACQUIRE,
                                     __ATOMIC_RELAXED))
        return false;
    uint64_t *in_at_purge = &central->purges[size_class].in_at_purge;
    uint64_t before = *in_at_purge;
    *in_at_purge = __atomic_load_n(&lists->objects_in, __ATOMIC_RELAXED);
    sweep_spans(lists, SWEEP_ALL | SWEEP_PURGE, totals);
    if (purge_stopped(totals))
        *in_at_purge = before; /* cut short by a fork: the next round goes on */
    __atomic_store_n(&lists->sweeping, 0, __ATOMIC_RELEASE);
    return true;
}

size_t xmm_central_purge_inside(int node)
{
    struct central_node *central = &central_nodes[node];
    uint64_t traffic = central_traffic(central);
    if (traffic != central->traffic_at_round) {
        central->traffic_at_round = traffic;
        central->idle_rounds = 0;
        return 0;
    }
    if (++central->idle_rounds < XMM_PURGE_INSIDE_ROUNDS)
        return 0;
    struct sweep_totals totals = {.stoppable = true};
    __atomic_store_n(&purge_running, 1, __ATOMIC_SEQ_CST);
    for (unsigned size_class = 1; size_class < XMM_CLASS_COUNT && !purge_stopped(&totals);
         size_class++)
        if (records_purged(&xmm_size_classes[size_class]) &&
            purge_inside_wanted(central, size_class))
            purge_class_inside(central, size_class, &totals);
    __atomic_store_n(&purge_running, 0, __ATOMIC_SEQ_CST);
    return totals.purged;
}

void xmm_central_before_fork(void)
{
    /* A count: threads may fork at once, and each one's parent handler
     * must not let the purge go on while another is still forking. */
    __atomic_fetch_add(&purge_stop, 1, __ATOMIC_SEQ_CST);
    for (uint64_t waited = 0; __atomic_load_n(&purge_running, __ATOMIC_SEQ_CST) &&
                              waited < XMM_FORK_PURGE_WAIT_NS;
         waited += 100000)
        xmm_os_sleep_ns(100000);
}

void xmm_central_after_fork_parent(void)
{
    __atomic_fetch_sub(&purge_stop, 1, __ATOMIC_SEQ_CST);
}

/* ---- before the heap grows ------------------------------------------------------------ */

/* A reclaim runs when the node's empty spans add up to at least this much
 * (and to the request) beyond what the last reclaim could not take. */
#define XMM_RECLAIM_MIN_BYTES ((int64_t)1 << 20)

size_t xmm_central_reclaim(int node)
{
    struct central_node *central = &central_nodes[node];
    size_t released = 0;
    int used = __atomic_load_n(&central->carvers_used, __ATOMIC_RELAXED);
    for (int carver = 0; carver < used; carver++)
        give_back_own_batches(central, &central->carvers[carver], OWN_UNUSED);
    for (unsigned size_class = 1; size_class < XMM_CLASS_COUNT; size_class++) {
        struct central_class *lists = &central->classes[size_class];
        flush_idle_batches(central, lists, false);
        int64_t empty = __atomic_load_n(&lists->empty_listed, __ATOMIC_RELAXED);
        /* An eighth of the class at least, so that popping the class's
         * spans is paid for by the spans released. */
        if (empty > 0 && empty * 8 >= __atomic_load_n(&lists->span_count, __ATOMIC_RELAXED))
            released += sweep_exclusive(lists);
    }
    if (xmm_large_cache_maybe_holds(node))
        released += xmm_large_cache_flush(node);
    /* What is still counted could not be taken now (a sparse class, or one
     * another thread sweeps): the next reclaim waits for more than that. */
    __atomic_store_n(&central->reclaim_floor,
                     __atomic_load_n(&central->empty_bytes, __ATOMIC_RELAXED), __ATOMIC_RELAXED);
    return released;
}

/* The cold check runs once the node's spans asked for and batches parked
 * (less those taken) since the last one add up to this much. */
#define XMM_COLD_CHECK_BYTES ((int64_t)4 << 20)

/* A class that no refill took objects of since the last cold check has
 * gone cold: its ready batches, the carvers' own batches of it and the
 * spans they keep of it go back to their spans, whose empty ones a
 * reclaim can then give to another class; so do the runs of carvers that
 * cut no span since then.
 * The upkeep pass lets go of idle batches and carvers too, but once a
 * period: a program whose sizes drift faster than that (a sliding window
 * of buffers whose size grows by a byte each time) kept up to 4 MiB of
 * batches in each class it had passed, and mapped new memory for the next
 * ones: 124 MiB in batches and a peak of 240 MiB where glibc peaks at 39
 * (bench/workloads/size-drift.c). Then what carvers kept of the classes
 * up to 8 KiB (a span of each, and the spans their own batches held) was
 * a few hundred KiB, but scattered among the pages the classes after them
 * had freed: the page heap's free spans between them, too short for those
 * classes' spans, were 6.9 MiB of the 49 MiB committed at its peak, and
 * about 3 once the cold check let go of them.
 * Counting growth alone missed a heap that reuses what it has: on
 * size-drift's second pass the window ran through classes whose spans it
 * found listed, asked for few new ones, and parked 26 MiB of ready
 * batches in the 15 classes it passed (up to 4 MiB each) while the next
 * class grew the heap by 3 MiB. So a batch parked on a class's stack
 * counts as well, until a refill takes one back, and the next span asked
 * for runs the check once the spans asked for and the batches piled up
 * add up to 4 MiB. It runs when pages are asked for, not when batches
 * are parked: a check set off by every 4 MiB of batches parked, taken
 * back or not, ran 263-381 times a run of a steady producer/consumer heap
 * (bench/workloads/xmalloc.c) instead of 5, each giving carver runs
 * back; one set off by what piled up ran 33-47 times, mostly when the
 * producers had stopped and the consumers freed the rest, and flushed
 * thousands of batches that no class needed room for: both cost the run
 * about 3% of its time. Run only from xmm_central_alloc_pages, as now, it
 * ran 7 times a run of xmalloc.
 *
 * Runs once per XMM_COLD_CHECK_BYTES so counted, so that its pass
 * over the classes (a load each, a CAS for those refilled; two loads per
 * carver for those that went cold, each after refills; an exchange where
 * something waits) costs at most one per 4 MiB counted. The classes
 * under a cache line keep their carvers' spans, as an idle pass does
 * (release_carvers says why). */
enum class_heat {
    CLASS_WARM,      /* refilled since the last check */
    CLASS_WENT_COLD, /* refilled before the last check, not since */
    CLASS_COLD,      /* not refilled since a check let go of it */
};

/* Where the class stands at this check, and the next check's start. Only
 * a refill changes the word meanwhile (checks run one at a time:
 * release_cold_classes), and only to REFILLED_SINCE_CHECK: a CAS that
 * fails saw one. */
static enum class_heat check_heat(struct central_class *lists)
{
    uint32_t seen = __atomic_load_n(&lists->refills_seen, __ATOMIC_RELAXED);
    if (seen == REFILLED_NOT_SINCE_RELEASE)
        return CLASS_COLD;
    uint32_t next = seen == REFILLED_SINCE_CHECK ? REFILLED_BEFORE_CHECK
                                                 : REFILLED_NOT_SINCE_RELEASE;
    if (!__atomic_compare_exchange_n(&lists->refills_seen, &seen, next, false, __ATOMIC_RELAXED,
                                     __ATOMIC_RELAXED))
        return CLASS_WARM;
    return next == REFILLED_BEFORE_CHECK ? CLASS_WARM : CLASS_WENT_COLD;
}

/* What `row`'s carver holds of a class that went cold: its own batches go
 * to the class's stack (flushed to their spans next), and its kept span,
 * above a cache line, is listed again. */
static void release_cold_class(struct central_node *central, struct carver_row *row,
                               unsigned size_class)
{
    if (__atomic_load_n(&row->own_count[size_class], __ATOMIC_RELAXED) > 0) {
        give_back_own_class(central, row, size_class, INT32_MAX);
        __atomic_store_n(&row->own_low[size_class], 0, __ATOMIC_RELAXED);
    }
    if (size_class > XMM_SUBLINE_CLASSES)
        release_kept(row, size_class);
}

/* Counts `asked` bytes of spans, and runs the check once they and the
 * batches piled up add up (see above). */
static void release_cold_classes(struct central_node *central, int64_t asked)
{
    int64_t asked_sum = __atomic_add_fetch(&central->asked_since_check, asked, __ATOMIC_RELAXED);
    int64_t parked_sum = __atomic_load_n(&central->parked_since_check, __ATOMIC_RELAXED);
    if (asked_sum + at_least_zero(parked_sum) < XMM_COLD_CHECK_BYTES)
        return;
    /* One thread walks, and it takes the counts once it holds the walk:
     * two that both saw the sum past the bound would walk back to back,
     * and the second would release the classes the first had just found
     * in use (it moved them to "refilled before"). So would a check that
     * more growth (or a signal handler) set off while one walks: it gives
     * way. The second finds the counts taken and puts back what it took. */
    uint32_t idle = 0;
    if (!__atomic_compare_exchange_n(&central->cold_checking, &idle, 1, false, __ATOMIC_ACQUIRE,
                                     __ATOMIC_RELAXED))
        return;
    asked_sum = __atomic_exchange_n(&central->asked_since_check, 0, __ATOMIC_RELAXED);
    parked_sum = __atomic_exchange_n(&central->parked_since_check, 0, __ATOMIC_RELAXED);
    if (asked_sum + at_least_zero(parked_sum) < XMM_COLD_CHECK_BYTES) {
        __atomic_fetch_add(&central->asked_since_check, asked_sum, __ATOMIC_RELAXED);
        __atomic_fetch_add(&central->parked_since_check, parked_sum, __ATOMIC_RELAXED);
        __atomic_store_n(&central->cold_checking, 0, __ATOMIC_RELEASE);
        return;
    }
    int carvers = __atomic_load_n(&central->carvers_used, __ATOMIC_RELAXED);
    for (unsigned size_class = 1; size_class < XMM_CLASS_COUNT; size_class++) {
        struct central_class *lists = &central->classes[size_class];
        enum class_heat heat = check_heat(lists);
        if (heat == CLASS_WARM)
            continue;
        /* A class cold since a check let go of it may have own batches
         * again: drains (frees) do not warm it. */
        if (spans_kept(size_class) &&
            (heat == CLASS_WENT_COLD ||
             __atomic_load_n(&lists->own_batch_count, __ATOMIC_RELAXED) > 0))
            for (int carver = 0; carver < carvers; carver++)
                release_cold_class(central, &central->carvers[carver], size_class);
        if (__atomic_load_n(&lists->batch_count, __ATOMIC_RELAXED) > 0)
            flush_batches(central, lists);
    }
    for (int carver = 0; carver < carvers; carver++) {
        struct carver_row *row = &central->carvers[carver];
        if (!__atomic_load_n(&row->cut_since_check, __ATOMIC_RELAXED) ||
            !__atomic_exchange_n(&row->cut_since_check, 0, __ATOMIC_RELAXED))
            release_row_run(row);
    }
    __atomic_store_n(&central->cold_checking, 0, __ATOMIC_RELEASE);
}

void xmm_central_after_fork_child(void)
{
    /* Only this thread is here: no other fork, no purge. */
    __atomic_store_n(&purge_stop, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&purge_running, 0, __ATOMIC_SEQ_CST);
    for (int node = 0; node < xmm_nodes; node++) {
        struct central_node *central = &central_nodes[node];
        __atomic_store_n(&central->cold_checking, 0, __ATOMIC_RELAXED);
        /* A sweep that a thread the child does not have was running (the
         * background thread's, most likely) would keep its class from
         * ever being swept again. Sweeps may overlap (a trim's does): the
         * flag only spares the work, so clearing it is safe even if the
         * forking thread's own signal handler interrupted a sweep. */
        for (unsigned size_class = 1; size_class < XMM_CLASS_COUNT; size_class++)
            __atomic_store_n(&central->classes[size_class].sweeping, 0, __ATOMIC_RELAXED);
        /* A thread the fork left between a limit's change and the count's
         * would leave it off by one for good. */
        uint32_t grown = 0;
        for (unsigned size_class = 1; size_class < XMM_CLASS_COUNT; size_class++)
            grown += __atomic_load_n(&central->classes[size_class].batch_limit,
                                     __ATOMIC_RELAXED) != first_batch_limit(size_class);
        __atomic_store_n(&central->grown_stacks, grown, __ATOMIC_RELAXED);
    }
}

/* Before pages are asked for: the classes whose batch limit grew give
 * their ready batches back to their spans and start again from their
 * first limit. A grown stack holds what its class cycles, which comes
 * back within a round; but a class the program is leaving (sizes that
 * drift) fills it with its last frees, whose spans then could not go
 * back to the page heap for the next class: bench/workloads/size-drift.c
 * peaked at 46 MiB instead of 42 with stacks that kept growing in each
 * class of 16-72 KiB it passed. A class that cycles asks for no pages
 * once it has its spans, and keeps its limit. */
static void release_grown_stacks(struct central_node *central)
{
    if (!__atomic_load_n(&central->grown_stacks, __ATOMIC_RELAXED))
        return;
    for (unsigned size_class = 1; size_class < XMM_CLASS_COUNT; size_class++) {
        struct central_class *lists = &central->classes[size_class];
        if (__atomic_load_n(&lists->batch_limit, __ATOMIC_RELAXED) !=
            first_batch_limit(size_class))
            flush_batches(central, lists);
    }
}

/* central_alloc_upto's pages, after the cold check: resident free ones
 * first when enough empty spans wait to be reclaimed (reclaiming them if
 * none is free yet), then the page heap's usual path. */
static struct xmm_span *pages_for(struct central_node *central, int node, size_t pages,
                                  size_t max_pages, size_t alignment)
{
    bool run = max_pages > pages;
    int64_t empty = __atomic_load_n(&central->empty_bytes, __ATOMIC_RELAXED);
    int64_t floor = __atomic_load_n(&central->reclaim_floor, __ATOMIC_RELAXED);
    if (empty < floor) {
        floor = empty > 0 ? empty : 0;
        __atomic_store_n(&central->reclaim_floor, floor, __ATOMIC_RELAXED);
    }
    int64_t wanted = (int64_t)(pages << XMM_PAGE_SHIFT);
    if (empty - floor >= (wanted > XMM_RECLAIM_MIN_BYTES ? wanted : XMM_RECLAIM_MIN_BYTES)) {
        struct xmm_span *span = run ? xmm_page_heap_alloc_resident_upto(node, pages, max_pages)
                                    : xmm_page_heap_alloc_resident(node, pages, alignment);
        if (span)
            return span;
        xmm_central_reclaim(node);
    }
    return run ? xmm_page_heap_alloc_upto(node, pages, max_pages)
               : xmm_page_heap_alloc(node, pages, alignment);
}

/* xmm_central_alloc_pages, or (`max_pages` above `pages`, no alignment)
 * up to `max_pages` of the span that serves it: a carver run. */
static struct xmm_span *central_alloc_upto(int node, size_t pages, size_t max_pages,
                                           size_t alignment)
{
    struct central_node *central = &central_nodes[node];
    bool run = max_pages > pages;
    release_cold_classes(central, (int64_t)(pages << XMM_PAGE_SHIFT));
    release_grown_stacks(central);
    struct xmm_span *span = pages_for(central, node, pages, max_pages, alignment);
    /* The cold check counts what the heap gave, not what a run could have
     * been: a run of a rest a few pages long counts those pages. */
    if (span && run && span->pages > pages)
        __atomic_fetch_add(&central->asked_since_check,
                           (int64_t)((span->pages - pages) << XMM_PAGE_SHIFT), __ATOMIC_RELAXED);
    return span;
}

struct xmm_span *xmm_central_alloc_pages(int node, size_t pages, size_t alignment)
{
    return central_alloc_upto(node, pages, pages, alignment);
}

void xmm_central_stats(int node, struct xmm_central_stats *stats)
{
    struct central_node *central = &central_nodes[node];
    stats->spans_created = __atomic_load_n(&central->spans_created, __ATOMIC_RELAXED);
    stats->spans_released = __atomic_load_n(&central->spans_released, __ATOMIC_RELAXED);
    stats->purged_inside_bytes = __atomic_load_n(&central->purged_inside, __ATOMIC_RELAXED);
    stats->span_bytes = __atomic_load_n(&central->span_bytes, __ATOMIC_RELAXED);
    /* Never below zero: a run's pages are counted in before any is
     * counted out (a negative count is a bug, and shows as one). */
    stats->run_bytes = (uint64_t)__atomic_load_n(&central->run_bytes, __ATOMIC_RELAXED);
    stats->run_resident_bytes =
        (uint64_t)__atomic_load_n(&central->run_resident_bytes, __ATOMIC_RELAXED);
    stats->batches_cached = 0;
    stats->objects_in_batches_bytes = 0;
    stats->small_out_bytes = 0;
    for (unsigned size_class = 1; size_class < XMM_CLASS_COUNT; size_class++) {
        struct central_class *lists = &central->classes[size_class];
        uint64_t out = __atomic_load_n(&lists->objects_out, __ATOMIC_RELAXED);
        uint64_t in = __atomic_load_n(&lists->objects_in, __ATOMIC_RELAXED);
        if (out > in)
            stats->small_out_bytes += (out - in) * xmm_size_classes[size_class].size;
        int64_t batches = __atomic_load_n(&lists->batch_count, __ATOMIC_RELAXED) +
                          __atomic_load_n(&lists->own_batch_count, __ATOMIC_RELAXED);
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
