/*
 * span.h - a run of allocator pages, and what it holds.
 *
 * A span is either free (in its node's page heap), a small-object span
 * (objects of one size class, handed out through the central layer), or
 * one large allocation. Descriptors live in metadata, never in the pages
 * they describe, and are recycled but never unmapped.
 */
#ifndef XMM_SPAN_H
#define XMM_SPAN_H

#include <ck_stack.h>

#include "base/base.h"

enum xmm_span_kind {
    XMM_SPAN_FREE = 0,   /* in the page heap */
    XMM_SPAN_SMALL = 1,  /* objects of `size_class` */
    XMM_SPAN_LARGE = 2,  /* one block from `start` */
    XMM_SPAN_CACHED = 3, /* a freed large block, claimed by its free: in the
                            large cache or on its way to the page heap */
    XMM_SPAN_RESIZING = 4, /* a large block being resized in place */
    XMM_SPAN_RUN = 5,    /* pages a CPU cuts its next small spans from
                            (central.c, carver runs): no block */
};

/* What a span's pages hold, as far as the page heap knows (`dirty`). Any
 * value but XMM_PAGES_CLEAN means the pages may hold old bytes: calloc
 * clears them. */
enum xmm_span_pages {
    XMM_PAGES_CLEAN = 0,            /* never written, or purged with MADV_DONTNEED */
    XMM_PAGES_DIRTY = 1,            /* written: resident */
    XMM_PAGES_INTERIOR_PURGED = 2,  /* whole huge pages purged, the ends not */
    XMM_PAGES_PURGED_NOT_ZERO = 3,  /* purged with MADV_FREE: may still read old bytes */
};

/* A small-object span's uncut objects (span->tail_purged): tagged free
 * (none), or without the tag, their pages' info cleared: a trim cut them
 * back (their bytes unknown), or a new span of clean pages cuts them as
 * refills take them (their first words read zero until then). */
enum xmm_span_tail {
    XMM_TAIL_NONE = 0,
    XMM_TAIL_CUT_BACK = 1,
    XMM_TAIL_CLEAN = 2,
};

/* Where a small-object span is, as far as the central layer knows. The low
 * two bits of `state`; the rest counts objects handed out (in use or in a
 * cache). See central.c for the protocol. */
enum xmm_span_place {
    XMM_SPAN_NOWHERE = 0,   /* no known free object: in no stack, no owner */
    XMM_SPAN_LISTED = 1,    /* in its class's span stack */
    XMM_SPAN_CLAIMED = 2,   /* held by one refilling thread */
};
#define XMM_SPAN_PLACE_MASK 3u
#define XMM_SPAN_IN_USE_ONE 4u

struct xmm_span {
    /* Link in a CK stack (central span set, or the descriptor pool). */
    ck_stack_entry_t stack_entry;
    char *start;                /* first byte of the first page */
    uint32_t pages;             /* length in allocator pages */
    uint8_t kind;               /* enum xmm_span_kind */
    uint8_t node;               /* home NUMA node */
    uint8_t size_class;         /* for XMM_SPAN_SMALL */
    uint8_t dirty;              /* enum xmm_span_pages */

    /* Small-object state, shared by every thread that frees into the span. */
    void *free_list;            /* objects returned, linked through their
                                   first word; push by CAS, taken whole */
    uint64_t state;             /* in-use count << 2 | enum xmm_span_place */
    uint32_t carved;            /* objects cut from the span so far; only
                                   the claiming thread touches it */

    /* Page heap state, under the node's page heap lock. */
    uint32_t epoch;             /* free span: the heap epoch it was listed in */
    union {
        struct xmm_span *previous; /* free span: free list of its length */
        /* A large span in use: the heap profiler's record when the block
         * was sampled (global/profile.h), else NULL. Set by every large
         * allocation before the block is handed out; reset to NULL by the
         * free that claimed the span, before it goes to the large cache or
         * the page heap (whose lists want NULL here). In the first cache
         * line, which a large free reads anyway. */
        void *sample;
    };
    struct xmm_span *next;      /* free list of its length */
    uint64_t freed_at_ns;       /* when it became free (for decay) */
    struct xmm_span *older, *newer; /* free and resident: the heap's list of
                                       such spans, oldest first */
    uint8_t tail_purged;        /* small-object span, claimant only: its
                                   objects from `carved` on hold no free
                                   tag and their pages' info is cleared:
                                   enum xmm_span_tail (central.c) */
    uint64_t purged;            /* small-object span of at most 64 objects:
                                   bit i, object i is free and a trim gave
                                   back its pages whole, free tag included
                                   (central.c); written by the claimant,
                                   read by free()'s slow path */
} XMM_CACHE_ALIGNED;
/* Two descriptors per 128 bytes: the hot fields of the free path (start,
 * kind, node, size_class) share the first cache line. */
_Static_assert(sizeof(struct xmm_span) == 2 * XMM_CACHE_LINE, "span descriptor layout");
_Static_assert(offsetof(struct xmm_span, size_class) < XMM_CACHE_LINE,
               "the free path's span fields are in the first cache line");
_Static_assert(offsetof(struct xmm_span, sample) + sizeof(void *) <= XMM_CACHE_LINE,
               "a large free reads its sample field in the first cache line");

XMM_INLINE struct xmm_span *xmm_span_of_entry(ck_stack_entry_t *entry)
{
    return (struct xmm_span *)((char *)entry - offsetof(struct xmm_span, stack_entry));
}

XMM_INLINE size_t xmm_span_bytes(const struct xmm_span *span)
{
    return (size_t)span->pages << XMM_PAGE_SHIFT;
}

#endif
