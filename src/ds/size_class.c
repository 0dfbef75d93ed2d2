/*
 * size_class.c - builds the size class tables (see size_class.h).
 */
#include "size_class.h"

struct xmm_size_class xmm_size_classes[XMM_CLASS_COUNT];
struct xmm_class_starts xmm_class_starts __attribute__((aligned(64)));
uint8_t xmm_class_by_8[XMM_SMALL_LOOKUP_MAX / 8 + 1];
uint8_t xmm_class_by_128[XMM_MAX_SMALL_SIZE / 128 + 1];

static uint32_t clamp_u32(uint64_t value, uint32_t low, uint32_t high)
{
    return value < low ? low : value > high ? high : (uint32_t)value;
}

/* Objects above this have spans of a power of two of bytes where one fits. */
#define POWER_OF_TWO_SPANS_ABOVE 512u

/* Objects up to this (and above POWER_OF_TWO_SPANS_ABOVE) are content
 * with 4 objects a span. */
#define FOUR_OBJECT_SPANS_UP_TO 8192u

/* The fewest objects a span of `size` holds, so that refills and drains of
 * medium objects do not take a span from the page heap (under its lock)
 * every other time: 8, or as many as 512 KiB holds, at least 2; 4 from
 * 576 bytes to 8 KiB, so that their spans can be 8 to 64 KiB
 * (span_pages_for says why). A refill of a batch of those from fresh
 * pages then cuts up to 8 spans instead of 4 (32 objects of 1792 B to 4
 * KiB); bench/micro batch1000/4096 showed no difference. */
static uint32_t span_objects_wanted(uint32_t size)
{
    if (size > POWER_OF_TWO_SPANS_ABOVE && size <= FOUR_OBJECT_SPANS_UP_TO)
        return 4;
    return clamp_u32((512u << 10) / size, 2, 8);
}

/* Whether a span of `pages` holds span_objects_wanted(size) objects with a
 * tail waste of at most 1/8 of the span. */
static bool span_fits(uint32_t pages, uint32_t size)
{
    uint32_t wanted_objects = span_objects_wanted(size);
    size_t span_bytes = (size_t)pages << XMM_PAGE_SHIFT;
    size_t objects = span_bytes / size;
    return objects >= wanted_objects && (span_bytes - objects * size) * 8 <= span_bytes;
}

/* The span of a class, in allocator pages: above 512 bytes, a power of
 * two of bytes, the shortest that fits (8 to 64 KiB up to 8 KiB; 128,
 * 256 or 512 KiB above): a program whose sizes drift frees the spans
 * of one class while the next class asks for its own, and a freed span
 * serves the next class whole (the same length) or joined with its
 * neighbour (twice it). With the shortest run of pages that fits for each
 * class, the spans of the classes from 16 to 64 KiB grew by 32 KiB a
 * class, from 144 KiB to 512 KiB; every freed one was too short for the
 * class after it, and size-drift (bench/workloads/size-drift.c) peaked 2
 * MiB higher, at 46 MiB instead of 44, on the holes they left between
 * spans in use. The same held from 576 bytes to 8 KiB, whose spans were
 * the shortest runs of 8 objects (12, 20, 28 KiB ...): bench/workloads/
 * frag.c frees 90% of a heap of blocks up to 1 KiB, 43% of the 8 KiB
 * spans of its 1 KiB blocks whole, then allocates blocks twice as large,
 * whose 16 KiB spans of 2 KiB blocks fitted only where two freed spans
 * lay side by side: peak RSS 862 MB, 809 with spans of 4 of them in 8 KiB
 * (glibc 704, splitting and joining exact sizes). Up to 512 bytes, and
 * above where no power of two fits (88 KiB objects: 5 in 512 KiB waste
 * 14%), the shortest run of pages, 8 KiB at least. */
static uint32_t span_pages_for(uint32_t size)
{
    uint32_t first_pages = XMM_SPAN_MIN_BYTES >> XMM_PAGE_SHIFT;
    if (size > POWER_OF_TWO_SPANS_ABOVE)
        for (uint32_t pages = first_pages; pages <= XMM_SMALL_SPAN_MAX_PAGES; pages *= 2)
            if (span_fits(pages, size))
                return pages;
    for (uint32_t pages = first_pages;; pages++)
        if (span_fits(pages, size))
            return pages;
}

/* free()'s object-start test (size_class.h). Its two conditions are
 * checked here, once: they hold for every class of the table, and a class
 * for which they did not would let free() accept the tail of a span. */
static void describe_start(unsigned size_class, const struct xmm_size_class *info)
{
    uint64_t magic = UINT64_MAX / info->size + 1;
    uint64_t excess = info->size * magic; /* e, modulo 2^64 */
    size_t span_bytes = (size_t)info->span_pages << XMM_PAGE_SHIFT;
    bool has_tail = info->object_bytes < span_bytes;
    if ((excess == 0 && has_tail) || (uint64_t)info->objects * excess >= magic)
        xmm_fatal("xmm: size class %z (%z bytes): free's object-start test does not hold\n",
                  (size_t)size_class, (size_t)info->size);
    xmm_class_starts.magic[size_class] = magic;
    xmm_class_starts.limit[size_class] = excess ? info->objects * excess : magic;
    xmm_class_starts.free_limit[size_class] = xmm_class_starts.limit[size_class];
}

void xmm_class_starts_leave_free(unsigned first_class)
{
    for (unsigned size_class = first_class; size_class < XMM_CLASS_COUNT; size_class++)
        xmm_class_starts.free_limit[size_class] = 0;
}

static void describe_class(unsigned size_class, uint32_t size)
{
    struct xmm_size_class *info = &xmm_size_classes[size_class];
    info->size = size;
    info->span_pages = span_pages_for(size);
    if (info->span_pages > XMM_SMALL_SPAN_MAX_PAGES)
        xmm_fatal("xmm: size class %z (%z bytes): its span is longer than XMM_SMALL_SPAN_MAX_PAGES\n",
                  (size_t)size_class, (size_t)size);
    info->objects = (uint32_t)(((size_t)info->span_pages << XMM_PAGE_SHIFT) / size);
    if (info->objects > XMM_SPAN_MAX_OBJECTS) /* a trim's map of a span's objects */
        xmm_fatal("xmm: size class %z (%z bytes): its span holds more than XMM_SPAN_MAX_OBJECTS\n",
                  (size_t)size_class, (size_t)size);
    /* A batch is about 128 KiB of objects (at most 32): medium objects move
     * a few at a time, not one by one. */
    info->batch = clamp_u32((128u << 10) / size, 1, 32);
    info->object_bytes = info->objects * size;
    describe_start(size_class, info);
}

void xmm_size_classes_init(void)
{
    unsigned size_class = 1;
    describe_class(size_class++, 8);
    for (uint32_t size = 16; size <= 128; size += 16)
        describe_class(size_class++, size);
    for (uint32_t base = 128; base < XMM_MAX_SMALL_SIZE; base *= 2)
        for (uint32_t step = 1; step <= 8; step++)
            describe_class(size_class++, base + step * (base / 8));
    if (size_class != XMM_CLASS_COUNT)
        xmm_fatal("xmm: size class table has %z classes, expected %z\n",
                  (size_t)size_class, (size_t)XMM_CLASS_COUNT);

    for (unsigned checked = 2; checked < XMM_CLASS_COUNT; checked++)
        xmm_assert(xmm_size_classes[checked].size > xmm_size_classes[checked - 1].size &&
                   xmm_size_classes[checked].objects >= 1);

    /* Lookup tables: the smallest class whose size holds the request. */
    unsigned current = 1;
    for (size_t slot = 0; slot <= XMM_SMALL_LOOKUP_MAX / 8; slot++) {
        size_t request = slot * 8;
        while (xmm_size_classes[current].size < request)
            current++;
        xmm_class_by_8[slot] = (uint8_t)current;
    }
    current = 1;
    for (size_t slot = 0; slot <= XMM_MAX_SMALL_SIZE / 128; slot++) {
        size_t request = slot * 128;
        while (xmm_size_classes[current].size < request)
            current++;
        xmm_class_by_128[slot] = (uint8_t)current;
    }
}
