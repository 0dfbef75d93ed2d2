/* The free tag (ds/free_object.h): what free() reads first (bits 32-47 of
 * the block's first word) says "may be free" for every free object and for
 * no zero, small number or user-space pointer a program keeps there; the
 * whole-word check it falls back to reports only free objects; and a live
 * block whose first word happens to pass the quick check is freed, not
 * reported. */
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "check.h"
#include "ds/ds.h"
#include "global/free.h"
#include "xmm.h"

static uint64_t random_state = 0x9e3779b97f4a7c15u;

static uint64_t random_word(void)
{
    random_state ^= random_state << 13;
    random_state ^= random_state >> 7;
    random_state ^= random_state << 17;
    return random_state;
}

/* The checks on words stored where they belong: the tag is bound to its
 * object's address, so each is written into a span-sized buffer (glibc's:
 * this test links the core, not the override) at the object's place. */
static void check_encoding(void)
{
    size_t missed_free = 0, live_reported = 0, quick_hits = 0, quick_on_kept = 0;
    size_t samples = 0;
    size_t max_bytes = 64 * ((size_t)16 << 9);
    char *span = NULL;
    CHECK(posix_memalign((void **)&span, XMM_PAGE_SIZE, max_bytes) == 0, "a span-sized buffer");
    uint64_t saved = xmm_free_secret;
    for (int secret_round = 0; secret_round < 64; secret_round++) {
        xmm_free_secret_set(random_word() | (uint64_t)1 << 63 | (uint64_t)1 << 47);
        for (int span_round = 0; span_round < 256; span_round++) {
            size_t size = (size_t)16 << (random_word() % 10);
            size_t bytes = 64 * size;
            char *object = span + (random_word() % 64) * size;
            /* Free objects: in a cache (no successor) or linked to another
             * object of the span. */
            const void *links[2] = {NULL, span + (random_word() % 64) * size};
            for (int link = 0; link < 2; link++) {
                xmm_free_object_set(object, links[link]);
                missed_free += !xmm_free_object_may_be_free(object) ||
                               !xmm_free_object_is_free(object, span, bytes);
            }
            /* What programs keep in a block's first word: zero, a small
             * number, a pointer (to the heap, the stack, itself). */
            uint64_t kept[5] = {0, random_word() % 4096, (uintptr_t)span + random_word() % bytes,
                                (uintptr_t)&kept, (uintptr_t)object};
            for (int k = 0; k < 5; k++) {
                memcpy(object, &kept[k], 8);
                quick_on_kept += xmm_free_object_may_be_free(object);
                live_reported += xmm_free_object_is_free(object, span, bytes);
            }
            /* Arbitrary data: the quick check may pass (then the whole word
             * decides), the whole-word check must not. */
            for (int k = 0; k < 64; k++) {
                uint64_t data = random_word();
                memcpy(object, &data, 8);
                quick_hits += xmm_free_object_may_be_free(object);
                live_reported += xmm_free_object_is_free(object, span, bytes);
                samples++;
            }
        }
    }
    xmm_free_secret_set(saved);
    free(span);
    CHECK(missed_free == 0, "every free object's tag passes both checks (%zu missed)",
          missed_free);
    CHECK(quick_on_kept == 0, "no zero, small number or pointer passes the quick check (%zu did)",
          quick_on_kept);
    CHECK(live_reported == 0, "no live word passes the whole-word check (%zu did)", live_reported);
    /* 1 value in 65536 passes: about 16 of a million. */
    CHECK(quick_hits < samples / 1000, "arbitrary data passes the quick check rarely: %zu of %zu",
          quick_hits, samples);
}

/* The real inline check, on real blocks. */
static void check_blocks(void)
{
    CHECK(xmm_free_secret >> 63 && (xmm_free_secret >> 47 & 1), "the secret has bits 63 and 47");
    for (size_t size = 8; size <= 4096; size *= 2) {
        char *block = xmm_malloc(size);
        CHECK(block != NULL, "malloc(%zu)", size);
        xmm_page_info info = xmm_page_info_of(block);
        uintptr_t start = (((uintptr_t)block >> XMM_PAGE_SHIFT) - XMM_PAGE_INFO_PAGE(info))
                          << XMM_PAGE_SHIFT;
        CHECK(!xmm_free_object_may_be_free(block), "%zu B: a new block is live", size);
        /* Bytes 4-5 made to look free: the quick check passes, the whole
         * word says live, and free() frees it without a report. */
        uint16_t looks_free = (uint16_t)(((uintptr_t)block >> 32) ^ (xmm_free_key(block) >> 32));
        memcpy(block + 4, &looks_free, 2);
        CHECK(xmm_free_object_may_be_free(block) &&
                  !xmm_free_object_is_free(block, (const char *)start,
                                           xmm_size_classes[XMM_PAGE_INFO_CLASS(info)].object_bytes),
              "%zu B: bytes 4-5 pass the quick check, the word does not", size);
        size_t object_bytes = xmm_size_classes[XMM_PAGE_INFO_CLASS(info)].object_bytes;
        xmm_free(block); /* a report would abort the test */
        /* Its check waits in the CPU's pending slot (global/free.h), or
         * was done at once (per-thread caches). */
        bool pending = size >= 16 && xmm_free_object_is_marked(block) &&
                       !xmm_free_object_is_free(block, (const char *)start, object_bytes);
        CHECK(pending || xmm_free_object_is_free(block, (const char *)start, object_bytes),
              "%zu B: freed: its free pending, or tagged free", size);
        CHECK(xmm_live_small_block(block) == 0, "%zu B: a freed block fails the live-block check",
              size);
        xmm_release_cpu_caches(); /* completes the pending frees */
        CHECK(xmm_free_object_is_free(block, (const char *)start, object_bytes),
              "%zu B: tagged free once its free completed%s", size,
              pending ? " (it was pending)" : "");
    }
}

/* free()'s inline check accepts a block's start and refuses the start of
 * its span's tail (the multiple of the size past the last object) and an
 * interior byte, for every class below 4 KiB whose spans have a tail. */
static void check_span_tails(void)
{
    int classes = 0;
    for (unsigned size_class = 1; size_class < XMM_CLASS_COUNT; size_class++) {
        const struct xmm_size_class *row = &xmm_size_classes[size_class];
        size_t span_bytes = (size_t)row->span_pages << XMM_PAGE_SHIFT;
        if (row->size > 4096 || row->object_bytes == span_bytes ||
            span_bytes - row->object_bytes < 8)
            continue;
        char *block = xmm_malloc(row->size);
        xmm_page_info info = xmm_page_info_of(block);
        char *start = (char *)((((uintptr_t)block >> XMM_PAGE_SHIFT) - XMM_PAGE_INFO_PAGE(info))
                               << XMM_PAGE_SHIFT);
        CHECKQ(xmm_live_small_block(block) == info, "class %u: a live block passes", size_class);
        CHECKQ(xmm_live_small_block(start + row->object_bytes) == 0,
               "class %u (%u B): the tail at offset %u is refused", size_class, row->size,
               row->object_bytes);
        CHECKQ(xmm_live_small_block(block + 8) == 0, "class %u: an interior byte is refused",
               size_class);
        xmm_free(block);
        classes++;
    }
    CHECK(classes >= 10, "%d classes with a span tail checked", classes);
}

/* The classic off-by-one of a string copy: a NUL written over the low
 * byte of a free neighbour's link. With secrets as xmm_free_secret_init
 * draws them, the link then decodes to an address that is not 8-byte
 * aligned, so never an object start: the refill reports it. Before, the
 * secret's low bits were random, and one process in 16 (16-byte objects)
 * followed such a link, skipping free objects or taking one a cache held
 * (a misuse audit). */
static void check_nul_overwrite(void)
{
    uint64_t saved = xmm_free_secret, saved_pending = xmm_free_pending_secret;
    size_t aligned = 0, draws = 200;
    _Alignas(64) char objects[64 * 16];
    for (size_t draw = 0; draw < draws; draw++) {
        xmm_free_secret_init();
        char *object = objects + (random_word() % 64) * 16;
        xmm_free_object_set(object, objects + (random_word() % 64) * 16);
        object[0] = '\0';
        uintptr_t link = *(const uintptr_t *)object ^ xmm_free_key(object);
        aligned += (link & 7) == 0;
    }
    xmm_free_secret_set(saved);
    xmm_free_pending_secret = saved_pending;
    CHECK(aligned == 0, "a NUL over a link's low byte never decodes to an object start "
          "(%zu of %zu secrets let it)", aligned, draws);
}

int main(void)
{
    xmm_free(xmm_malloc(1)); /* initialises the secret */
    check_nul_overwrite();
    check_encoding();
    check_blocks();
    check_span_tails();
    return check_summary("free tag");
}
