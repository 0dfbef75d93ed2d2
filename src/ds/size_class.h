/*
 * size_class.h - request size -> size class, and the shape of each class.
 *
 * Classes: 8, then 16 to 128 bytes in steps of 16, then eight classes per
 * doubling up to 256 KiB. A class between 2^k and 2^(k+1) (k >= 7) is a
 * multiple of 2^(k-3), so a request in that range wastes less than
 * 2^(k-3)/2^k = 12.5%; between 64 and 128 bytes the step of 16 bounds the
 * waste at 15/80 = 18.75% of the block.
 *
 * Alignment: every class from 16 bytes up is a multiple of 16, so every
 * object of it is 16-byte aligned (spans start on page boundaries). C17
 * 7.22.3 asks for the alignment of any fundamental type whose size fits
 * the request; on x86_64 that is 16 for every request above 8 bytes
 * (long double, __m128, and a struct of one plus a short flexible array,
 * whose size need not be a multiple of 16). Classes of 24, 40, ... bytes
 * would hand such a struct an 8-byte-aligned block. Only the 8-byte class
 * is 8-aligned, which is all a request of 8 bytes or less can need.
 * (mimalloc, jemalloc and TCMalloc make the same choice.)
 */
#ifndef XMM_SIZE_CLASS_H
#define XMM_SIZE_CLASS_H

#include "base/base.h"

#define XMM_SMALL_LOOKUP_MAX 4096            /* table by 8-byte steps */
#define XMM_MAX_SMALL_SIZE ((size_t)256 << 10) /* largest class */
/* The longest span of a small-object class: two objects of the largest
 * class (size_class.c checks every class against it). A longer span holds
 * a large block. */
#define XMM_SMALL_SPAN_MAX_PAGES ((2 * XMM_MAX_SMALL_SIZE) >> XMM_PAGE_SHIFT)
/* The shortest span of a small-object class. Longer than an allocator
 * page: a span costs a descriptor, a trip to the page heap and a place on
 * the central lists, which 8 KiB spans amortise over twice the objects of
 * 4 KiB ones; what a class a program barely uses faults in is bounded by
 * the cut (one page), not by the span (central.c, cut_tail). */
#define XMM_SPAN_MIN_BYTES ((size_t)8 << 10)
/* The most objects of any span: the 8-byte class's shortest span
 * (size_class.c checks every class against it). */
#define XMM_SPAN_MAX_OBJECTS (XMM_SPAN_MIN_BYTES / 8)
#define XMM_CLASS_COUNT 98                   /* class 0 is "not a class" */
/* Classes 1 to this one hold objects smaller than a cache line (8 to 48
 * bytes): several programs' objects can share a line, which the per-CPU
 * caches keep in mind (mem/cpu_cache.h, remote bins). test_size_class
 * checks the bound against the table. */
#define XMM_SUBLINE_CLASSES 4
#define XMM_CACHE_LINE 64

struct xmm_size_class {
    uint32_t size;         /* bytes per object */
    uint32_t span_pages;   /* allocator pages per span */
    uint32_t objects;      /* objects per span */
    uint32_t batch;        /* objects moved per refill or drain */
    uint32_t object_bytes; /* objects * size: offsets of objects are below */
};

/* What free() needs to tell an object start, two 8-byte words per class.
 * `magic` is ceil(2^64 / size): an offset n < 2^32 into a span is a
 * multiple of size iff n * magic mod 2^64 < magic (Lemire, Kaser and Kurz,
 * "Faster remainder by direct computation", 2019), and the multiple
 * k * size gives exactly k * e, where e = size * magic - 2^64 < size. So
 * `limit` = objects * e also refuses the one multiple that is no object:
 * the start of the span's tail, past its last object. For sizes that are
 * powers of two e = 0, their spans have no tail (size_class.c checks),
 * and limit = magic. One multiply and one compare, where a range compare,
 * a multiply and a compare were needed.
 * Class 0 (no small object: a large span, a free page) keeps magic 0 and
 * limit 0, so the test refuses every offset of it and free() needs no
 * branch of its own for it. The two columns are one object, so that both
 * loads address it from one base register with the class scaled by 8. */
struct xmm_class_starts {
    uint64_t magic[XMM_CLASS_COUNT];
    uint64_t limit[XMM_CLASS_COUNT];
    /* free()'s own copy of `limit`, which its inline hit path tests: 0
     * for the classes whose check free defers (XMM_FREE_CHECK=deferred,
     * xmm_class_starts_leave_free), so that their free leaves the hit path
     * at this test, and the default path tests no option. */
    uint64_t free_limit[XMM_CLASS_COUNT];
};

extern XMM_HIDDEN struct xmm_size_class xmm_size_classes[XMM_CLASS_COUNT];
extern XMM_HIDDEN struct xmm_class_starts xmm_class_starts;
extern XMM_HIDDEN uint8_t xmm_class_by_8[XMM_SMALL_LOOKUP_MAX / 8 + 1];
extern XMM_HIDDEN uint8_t xmm_class_by_128[XMM_MAX_SMALL_SIZE / 128 + 1];

/* Fills the tables. Idempotent; called once from init. */
void xmm_size_classes_init(void);

/* Makes free()'s inline start test (free_limit) refuse every class from
 * `first_class` on, which then takes free's slow path. Called by init,
 * after xmm_size_classes_init, before any block is handed out. */
void xmm_class_starts_leave_free(unsigned first_class);

/* Class of a request of `size` bytes, 1 <= class < XMM_CLASS_COUNT, for
 * size <= XMM_MAX_SMALL_SIZE. Cost: one compare and one table load. */
XMM_INLINE unsigned xmm_size_to_class(size_t size)
{
    if (XMM_LIKELY(size <= XMM_SMALL_LOOKUP_MAX))
        return xmm_class_by_8[(size + 7) >> 3];
    return xmm_class_by_128[(size + 127) >> 7];
}

XMM_INLINE size_t xmm_class_size(unsigned size_class)
{
    return xmm_size_classes[size_class].size;
}

/* Index of the object containing byte `offset` (< 2^32) of a span of this
 * class: the high half of offset * start_magic (the same paper). */
XMM_INLINE uint32_t xmm_class_object_index(unsigned size_class, size_t offset)
{
    return (uint32_t)(((unsigned __int128)offset * xmm_class_starts.magic[size_class]) >> 64);
}

/* True when byte `offset` of a span of this class (offset < its span's
 * bytes) starts one of its objects; false for every offset of class 0. */
XMM_INLINE bool xmm_class_is_object_start(unsigned size_class, uint64_t offset)
{
    return offset * xmm_class_starts.magic[size_class] < xmm_class_starts.limit[size_class];
}

/* The same test against free_limit: free()'s inline hit path. */
XMM_INLINE bool xmm_class_is_free_hit(unsigned size_class, uint64_t offset)
{
    return offset * xmm_class_starts.magic[size_class] < xmm_class_starts.free_limit[size_class];
}

#endif /* XMM_SIZE_CLASS_H */
