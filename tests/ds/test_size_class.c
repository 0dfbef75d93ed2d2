/* Every request size from 1 byte to the largest class: the class holds it,
 * wastes at most 12.5% from 128 bytes up (18.75% from 64 to 128), and gives
 * the alignment C needs: 16 bytes for every request of 16 bytes or more
 * (C17 7.22.3: any type with fundamental alignment whose size fits, such
 * as a struct of one __m128 and a short flexible array), 8 below. */
#include "check.h"
#include "ds/ds.h"
#include "xmm.h"

static size_t largest_power_of_two_dividing(size_t n)
{
    return n & -n;
}

int main(void)
{
    xmm_free(xmm_malloc(1)); /* initialises the tables */
    for (size_t size = 1; size <= XMM_MAX_SMALL_SIZE; size++) {
        unsigned size_class = xmm_size_to_class(size);
        CHECK(size_class >= 1 && size_class < XMM_CLASS_COUNT, "size %zu -> class %u", size,
              size_class);
        size_t class_size = xmm_class_size(size_class);
        CHECK(class_size >= size, "size %zu in class of %zu", size, class_size);
        if (size >= 128)
            CHECK((class_size - size) * 8 <= size, "size %zu wastes %zu in class %zu", size,
                  class_size - size, class_size);
        else if (size >= 64)
            CHECK((class_size - size) * 16 <= class_size * 3, "size %zu wastes %zu in class %zu",
                  size, class_size - size, class_size);
        /* The smallest class that fits: the one below is too small. */
        if (size_class > 1)
            CHECK(xmm_class_size(size_class - 1) < size, "size %zu not in smallest class", size);
        size_t needed = size > 8 ? 16 : 8;
        CHECK(largest_power_of_two_dividing(class_size) >= needed,
              "size %zu needs %zu-byte alignment; class %zu gives %zu", size, needed, class_size,
              largest_power_of_two_dividing(class_size));
    }
    for (unsigned size_class = 1; size_class < XMM_CLASS_COUNT; size_class++) {
        const struct xmm_size_class *info = &xmm_size_classes[size_class];
        size_t span_bytes = (size_t)info->span_pages * XMM_PAGE_SIZE;
        CHECK(info->objects >= 1 && info->objects * info->size <= span_bytes, "class %u", size_class);
        CHECK((span_bytes - info->objects * info->size) * 8 <= span_bytes,
              "class %u span tail waste", size_class);
        CHECK(info->batch >= 1 && info->batch <= 32, "class %u batch %u", size_class, info->batch);
        /* The multiply-shift division is exact for every offset in a span. */
        for (size_t offset = 0; offset < span_bytes; offset += (offset % 7) + 1) {
            uint32_t index = xmm_class_object_index(size_class, offset);
            CHECK(index == offset / info->size, "class %u offset %zu gives %u", size_class,
                  offset, index);
        }
        /* free()'s object-start test (free.h, size_class.h): true exactly
         * at the starts of the span's objects, at every offset of the
         * span, its tail included; and the multiple test under it exact
         * beyond the span (up to the largest chunk). */
        CHECK(info->object_bytes == info->objects * info->size, "class %u object bytes",
              size_class);
        uint64_t magic = xmm_class_starts.magic[size_class];
        size_t wrong = 0, first_wrong = 0;
        for (uint64_t offset = 0; offset < XMM_CHUNK_MAX_SIZE;
             offset += offset < 2 * span_bytes ? 1 : 4093) {
            bool start = offset < span_bytes ? xmm_class_is_object_start(size_class, offset)
                                             : offset * magic < magic;
            bool expected = offset % info->size == 0 &&
                            (offset >= span_bytes || offset < info->object_bytes);
            if (start != expected && wrong++ == 0)
                first_wrong = offset;
        }
        CHECK(wrong == 0, "class %u (size %u): %zu offsets misjudged as object starts, first %zu",
              size_class, info->size, wrong, first_wrong);
    }
    /* Class 0 (large spans, free pages) refuses every offset: free()'s
     * hit path has no branch of its own for it (global/free.h). */
    size_t class0_starts = 0;
    for (uint64_t offset = 0; offset < XMM_CHUNK_MAX_SIZE; offset += offset < 65536 ? 1 : 4093)
        class0_starts += xmm_class_is_object_start(0, offset);
    CHECK(class0_starts == 0, "class 0 takes %zu offsets for object starts", class0_starts);
    /* Above 512 bytes, a span is the shortest power of two of bytes from
     * 8 KiB to 512 KiB that holds 4 objects (up to 8 KiB; above, 8, or
     * what 512 KiB holds, at least 2) within 1/8 tail waste, so that the
     * spans one class frees serve another class (size_class.c,
     * span_pages_for): whole, or two joined. Up to 8 KiB every class has
     * one, of 64 KiB at most. */
    for (unsigned size_class = 1; size_class < XMM_CLASS_COUNT; size_class++) {
        const struct xmm_size_class *info = &xmm_size_classes[size_class];
        if (info->size <= 512)
            continue;
        size_t span_bytes = (size_t)info->span_pages * XMM_PAGE_SIZE;
        size_t fitting = 0;
        for (size_t bytes = 8 << 10; bytes <= 512 << 10 && !fitting; bytes *= 2) {
            size_t objects = bytes / info->size, wanted = (512 << 10) / info->size;
            wanted = info->size <= 8192 ? 4 : wanted < 2 ? 2 : wanted > 8 ? 8 : wanted;
            if (objects >= wanted && (bytes - objects * info->size) * 8 <= bytes)
                fitting = bytes;
        }
        if (fitting)
            CHECK(span_bytes == fitting, "class %u (%u B): span of %zu KiB, not %zu KiB",
                  size_class, info->size, span_bytes >> 10, fitting >> 10);
        if (info->size <= 8192)
            CHECK(fitting && fitting <= 64 << 10,
                  "class %u (%u B): a span of 8 to 64 KiB holds 4 objects (%zu KiB)",
                  size_class, info->size, fitting >> 10);
    }
    /* The per-CPU caches' remote bins (mem/cpu_cache.h) serve exactly the
     * classes smaller than a cache line. */
    for (unsigned size_class = 1; size_class < XMM_CLASS_COUNT; size_class++)
        CHECKQ((xmm_size_classes[size_class].size < XMM_CACHE_LINE) ==
                   (size_class <= XMM_SUBLINE_CLASSES),
               "class %u (%u bytes) %s a sub-line class", size_class,
               xmm_size_classes[size_class].size,
               size_class <= XMM_SUBLINE_CLASSES ? "is counted as" : "is not counted as");
    CHECK(xmm_size_classes[XMM_SUBLINE_CLASSES].size < XMM_CACHE_LINE &&
              xmm_size_classes[XMM_SUBLINE_CLASSES + 1].size >= XMM_CACHE_LINE,
          "classes 1-%u are those below %u bytes", XMM_SUBLINE_CLASSES, XMM_CACHE_LINE);
    return check_summary("size classes");
}
