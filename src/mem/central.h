/*
 * central.h - per node and size class: ready transfer batches and the set
 * of spans with free objects, both on lock-free CK stacks. The front ends
 * refill from here and drain to here, a batch at a time.
 */
#ifndef XMM_CENTRAL_H
#define XMM_CENTRAL_H

#include "base/base.h"
#include "ds/ds.h"

#define XMM_MAX_BATCH 32

/* Creates every node's central lists. 0 or -1. */
int xmm_central_init(void);

/* Caches that carve spans of their own (xmm_central_refill's `carver`):
 * the per-CPU caches, one per slab index, below the platform's CPU index
 * bound and at most this many. */
#define XMM_CENTRAL_CARVERS 1024
#define XMM_CENTRAL_NO_CARVER (-1)

/* Fills `out` with up to `wanted` (<= XMM_MAX_BATCH) objects of
 * `size_class` from `node`. Returns how many; 0 only when the kernel
 * refuses memory. Lock-free except when a new span is needed.
 *
 * `carver` (0 .. XMM_CENTRAL_CARVERS-1, or XMM_CENTRAL_NO_CARVER) names
 * the calling cache. A full batch comes first from the batches this
 * carver drained (xmm_central_drain), then from the class's. Objects that
 * do not come as a ready batch then come from the span this carver last
 * cut from, which it keeps for its next refill while it has free objects
 * (classes of spans up to 64 KiB): a span's objects go to one CPU, not a
 * batch to each CPU in turn. Two CPUs whose blocks alternate within a few
 * KiB of memory slow each other down
 * (bench/analysis.md, "batch1000 at 8-64 B, two threads"). Any thread may
 * pass any carver: a kept span is taken by atomic exchange. */
unsigned xmm_central_refill(int node, unsigned size_class, void **out, unsigned wanted,
                            int carver);

/* Puts a refill's objects in the order a cache stores them: a cache hands
 * out from the end of `objects` (its stack's top) first, and
 * xmm_central_refill lists the objects it cuts from a span in ascending
 * address order, so they go in reversed. Consecutive mallocs then step
 * up through memory, as the hardware prefetcher follows, and a program
 * walking what it allocated in that order finds it ahead of it: handed
 * out from the top, they stepped down within each batch and jumped up
 * between batches, and walking 2 million 24-byte nodes of a list in
 * allocation order took 5-6 times as long as under glibc or the peers
 * (a CPython sum() over 2 million new floats 2.5-3 times). */
XMM_INLINE void xmm_central_hand_out_order(void **objects, unsigned count)
{
    for (unsigned low = 0, high = count; low + 1 < high; low++, high--) {
        void *swapped = objects[low];
        objects[low] = objects[high - 1];
        objects[high - 1] = swapped;
    }
}

/* A carver holds at most this much in own batches (xmm_central_drain),
 * all classes together, each batch counted at 4 KiB at least (at most 256
 * descriptors; a drain that finds less may add one batch; drains racing
 * on one carver, one each). 1 MiB: a CPU whose bin of 1 KiB
 * objects grows towards a round of 1000 drains up to 870 KiB a round, and
 * with 256 KiB the rest went to the class's stack, where the other CPU's
 * refills took it: two threads' blocks then lay within 4 KiB of each
 * other and their rounds took twice as long (bench/analysis.md). */
#define XMM_OWN_BATCH_MAX_BYTES ((int64_t)1 << 20)

/* Takes back `count` (<= XMM_MAX_BATCH) free objects of `size_class`, all
 * of home node `node`. Lock-free. A full batch from `carver` (or
 * XMM_CENTRAL_NO_CARVER) goes on that carver's own stack of the class while
 * the carver holds less than XMM_OWN_BATCH_MAX_BYTES in such batches, and its refills take
 * their own batches first: a CPU's drains come back to it, not to another
 * CPU whose blocks would then lie beside its own (docs/design.md, "Own
 * batches"). They go to the class's stack at malloc_trim (all), at the
 * upkeep pass (as many as no refill of the carver needed since the pass
 * before: a low-water mark) and at the reclaim before growth (as many as
 * the current pass has not needed). Every object must hold the cache tag,
 * as a free leaves it (xmm_free_object_set(object, NULL), ds/
 * free_object.h): one that does not is reported as heap corruption and
 * left out (central.c, return_objects_to_spans). */
void xmm_central_drain(int node, unsigned size_class, void *const *objects, unsigned count,
                       int carver);

/* A free object of a cache without the cache tag in its first word (the
 * secret exactly, ds/free_object.h): written after its free, or in the
 * cache twice (a second free after such a write, which free() took for a
 * live block's). Reports it as heap corruption (an abort unless
 * XMM_INVALID_FREE=warn); the caller leaves it out of what it gives back,
 * so that its span is not given the object twice. */
void xmm_central_report_untagged(const void *object);

/* Gives one free object back to its span, found through the address map
 * (the object must be a live small block's, now free). */
void xmm_central_return_object(void *object);

/* Moves every span a carver keeps (xmm_central_refill) back to the
 * class's set, every transfer batch back to its spans, gives spans with no
 * object in use back to the page heap, and purges the pages inside the
 * free objects of the spans that stay (all but the page of each object's
 * first word; classes above one kernel page). For malloc_trim and
 * xmm_release_memory. Returns the bytes purged inside spans. */
size_t xmm_central_release_all(void);

/* Lets go of every span the carvers keep and gives their runs back, on
 * every node (part of xmm_central_release_all); `idle_only`: only those of
 * carvers that did not refill since the last such call, and of those not
 * the spans of the classes under a cache line (part of the upkeep pass;
 * central.c, release_carvers). Safe beside refills. */
void xmm_central_release_carvers(bool idle_only);

/* Periodic upkeep from slow paths: moves the carvers' own batches that no
 * refill needed since the last pass to the classes' stacks, flushes the
 * ready batches nobody took since then, and releases spans found empty.
 * `now_ns`: the caller's read of xmm_os_now_ns(). */
void xmm_central_maintain(int node, uint64_t now_ns);

/* The background thread's purge inside kept spans, one round (call it
 * once per upkeep period, from that thread only: the walk can take
 * milliseconds, not for an allocation path, and the marks are its own; a
 * fork stops it: xmm_central_before_fork). Once eight rounds in a row (four
 * decay periods) found no refill and no drain at all in `node`'s central
 * layer, each class of at most 64 objects a span (128 bytes and up) whose
 * spans hold at least 1 MiB of free objects, with frees of a quarter of
 * those bytes since its last such purge, is swept as a trim sweeps it
 * (xmm_central_release_all: empty spans to the page heap, the pages
 * inside the free objects of the others purged). That is a program that
 * stopped allocating with its live blocks scattered (a cache's
 * survivors), where no span empties and only a trim reached the pages.
 * Returns the bytes purged inside spans. */
size_t xmm_central_purge_inside(int node);

/* Around fork() (pthread_atfork; no lock is taken): before, asks the
 * background thread's purge inside spans (xmm_central_purge_inside) to
 * stop and waits for it to let go of the spans it holds, one second at
 * most; after, in the parent, lets it go on (the child: below). */
void xmm_central_before_fork(void);
void xmm_central_after_fork_parent(void);

/* In the child of fork(): a cold check (which allocations that grow the
 * heap run, one at a time) that a thread the child does not have was
 * running is forgotten, so that the child's own checks run. */
void xmm_central_after_fork_child(void);

/* Gives `node`'s memory that no class uses back to the page heap: the
 * ready batches nobody took since the last upkeep pass, the empty spans of
 * every class where they are an eighth of its spans or more (a sweep pops
 * the class's spans), and the large cache. Returns the bytes released. */
size_t xmm_central_reclaim(int node);

/* Pages for a span (small or large) from `node`'s page heap, reclaiming
 * before the heap grows: when the node's empty spans add up to the request
 * and at least 1 MiB (one load tells), a free span that fits is tried
 * first, then a reclaim, and only then may the page heap cut fresh pages
 * or map a chunk. Once per 4 MiB asked for, the ready batches of
 * classes no refill took from since the last time go back to their spans
 * first, so that their empty spans count. Takes no lock of its own; never
 * called with a page heap lock held (the reclaim frees spans into the page
 * heap). */
struct xmm_span *xmm_central_alloc_pages(int node, size_t pages, size_t alignment);

struct xmm_central_stats {
    uint64_t spans_created;
    uint64_t spans_released;
    uint64_t batches_cached;     /* transfer batches on the stacks */
    uint64_t objects_in_batches_bytes;
    uint64_t span_bytes;         /* bytes of spans of small objects */
    uint64_t small_out_bytes;    /* objects held by front ends and the program */
    uint64_t run_bytes;          /* carver runs' pages not cut into spans yet */
    uint64_t run_resident_bytes; /* of which may be resident: free, unpurged */
    uint64_t purged_inside_bytes; /* purged inside kept spans, ever (trims, the background thread) */
};
void xmm_central_stats(int node, struct xmm_central_stats *stats);

/* Objects of `size_class` out of the central layer on every node (in a
 * front end's cache or held by the program): exact when no thread is
 * allocating. */
uint64_t xmm_central_objects_out(unsigned size_class);

#endif
