/* The address map: XMM's blocks map to their region and span, with the
 * right node; other addresses (stack, globals, glibc heap, interior and
 * unaligned pointers) are not XMM's. */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "backend/backend.h"
#include "check.h"
#include "xmm.h"

static int global_object;

int main(void)
{
    int stack_object;
    void *small = xmm_malloc(100);
    void *large = xmm_malloc(1 << 20);
    void *direct = xmm_malloc(200 << 20);
    CHECK(small && large && direct, "allocations");
    CHECK(xmm_region_of(small) && xmm_region_of(small)->kind == XMM_REGION_CHUNK, "small chunk");
    CHECK(xmm_region_of(large) && xmm_region_of(large)->kind == XMM_REGION_CHUNK, "large chunk");
    CHECK(xmm_region_of(direct) && xmm_region_of(direct)->kind == XMM_REGION_DIRECT, "direct");
    CHECK(xmm_region_of(&stack_object) == NULL, "stack is not XMM's");
    CHECK(xmm_region_of(&global_object) == NULL, "global is not XMM's");
    CHECK(xmm_region_of((void *)~(uintptr_t)0) == NULL, "kernel address");
    CHECK(xmm_node_of(small) == 0 && xmm_node_of(large) == 0 && xmm_node_of(direct) == 0,
          "node 0 on this machine");
    errno = 0;
    CHECK(xmm_node_of(&stack_object) == -1 && errno == EINVAL, "stack pointer has no node");
    CHECK(xmm_node_of((char *)small + 8) == -1, "interior pointer of a small block");
    CHECK(xmm_node_of((char *)large + 8192) == -1, "interior pointer of a large block");
    CHECK(xmm_node_of((char *)small + 1) == -1, "unaligned pointer");
    CHECK(xmm_usable_size(direct) >= (200u << 20), "direct usable size");
    /* Page map: every page of a large block maps to its span. */
    struct xmm_chunk *chunk = (struct xmm_chunk *)xmm_region_of(large);
    struct xmm_span *span = xmm_chunk_span_of(chunk, large);
    for (size_t offset = 0; offset < (1 << 20); offset += XMM_PAGE_SIZE)
        CHECK(xmm_chunk_span_of(chunk, (char *)large + offset) == span, "page %zu", offset);
    CHECK(span->kind == XMM_SPAN_LARGE && span->pages * XMM_PAGE_SIZE >= (1 << 20), "span");
    /* The page table: at the chunk's start, on a 64 MiB boundary, in pages
     * no span holds; free's page info comes from it. */
    struct xmm_chunk *small_chunk = (struct xmm_chunk *)xmm_region_of(small);
    char *base = small_chunk->region.base;
    CHECK(((uintptr_t)base & (XMM_CHUNK_MAX_SIZE - 1)) == 0, "chunk %p on a 64 MiB boundary",
          (void *)base);
    CHECK(XMM_CHUNK_TABLE_OFFSET + small_chunk->pages * sizeof(xmm_page_info) <=
              (size_t)XMM_CHUNK_FIRST_PAGE * XMM_PAGE_SIZE,
          "the table of %u pages fits before the first span", small_chunk->pages);
    CHECK((char *)xmm_chunk_table_of((uintptr_t)small) == base + XMM_CHUNK_TABLE_OFFSET,
          "table found by mask, after the guard");
    for (uint32_t page = 0; page < XMM_CHUNK_FIRST_PAGE; page++)
        CHECK(xmm_chunk_span_of(small_chunk, base + page * XMM_PAGE_SIZE) == NULL &&
                  xmm_page_info_of(base + page * XMM_PAGE_SIZE) == 0,
              "table page %u holds no span", page);
    CHECK((char *)small >= base + XMM_CHUNK_FIRST_PAGE * XMM_PAGE_SIZE &&
              (char *)large >= (char *)chunk->region.base + XMM_CHUNK_FIRST_PAGE * XMM_PAGE_SIZE,
          "blocks after the table");
    xmm_page_info info = xmm_page_info_of(small);
    CHECK(XMM_PAGE_INFO_CLASS(info) != 0 && XMM_PAGE_INFO_NODE(info) == 0, "small block's info");
    CHECK(info == xmm_chunk_table_of((uintptr_t)small)[((char *)small - base) / XMM_PAGE_SIZE],
          "info read from the table");
    CHECK(xmm_page_info_of(large) == 0 && xmm_page_info_of(direct) == 0 &&
              xmm_page_info_of(&stack_object) == 0 && xmm_page_info_of(&global_object) == 0 &&
              xmm_page_info_of((void *)16) == 0,
          "no page info outside small-object spans");
    /* A page word without a class (a large block's, or one a trim cleared
     * under live objects) has no owner: the remote bins must not take its
     * byte 2, 0, for cache 0's index. */
    CHECK(xmm_page_owner_load(large) == XMM_PAGE_OWNER_SHARED,
          "a page without a class reads as SHARED, not owned");
    /* An address in the 64 MiB window of a chunk but past its end is not
     * the chunk's (a 4 MiB first chunk leaves 60 MiB the kernel may use). */
    if (small_chunk->pages < XMM_CHUNK_MAX_PAGES)
        CHECK(xmm_page_info_of(base + (size_t)small_chunk->pages * XMM_PAGE_SIZE) == 0,
              "past the chunk's end");
    CHECK(xmm_chunk_slot_used((uintptr_t)small) && !xmm_chunk_slot_used((uintptr_t)direct) &&
              !xmm_chunk_slot_used((uintptr_t)&stack_object) &&
              !xmm_chunk_slot_used(~(uintptr_t)0) && !xmm_chunk_slot_used((uintptr_t)1 << 47),
          "the slot bitmap: set for a chunk, clear for the rest and above user space");
    xmm_free(direct);
    CHECK(xmm_region_of(direct) == NULL, "direct mapping forgotten after free");
    xmm_free(large);
    xmm_free(small);
    /* A chunk given back to the kernel leaves its slot: a free into it is
     * then never read from its unmapped table. (A chunk of its own, made
     * and released as the page heap does; this test has one thread, so it
     * does without the page heap's lock.) */
    size_t reserved_before = xmm_arena_reserved_bytes();
    struct xmm_chunk *spare = xmm_arena_new_chunk(0, XMM_PAGES_PER_GRANULE * 2);
    CHECK(spare != NULL, "a chunk of two granules");
    if (spare) {
        char *spare_base = spare->region.base;
        /* Reserved: what was mapped, the chunk less its hole (which is
         * not mapped: mincore refuses its pages). */
        size_t mapped = 2 * XMM_GRANULE_SIZE - XMM_CHUNK_HOLE_SIZE;
        CHECK(xmm_arena_reserved_bytes() - reserved_before == mapped,
              "bytes reserved grew by the %zu bytes mapped, not the hole (%zu)", mapped,
              xmm_arena_reserved_bytes() - reserved_before);
        unsigned char resident;
        CHECK(mincore(spare_base, XMM_PAGE_SIZE, &resident) != 0 && errno == ENOMEM &&
                  mincore(spare_base + XMM_CHUNK_HOLE_SIZE, XMM_PAGE_SIZE, &resident) == 0,
              "the hole is not mapped, the guard after it is");
        CHECK(xmm_chunk_slot_used((uintptr_t)spare_base + XMM_CHUNK_MAX_SIZE - 1),
              "its whole 64 MiB slot is marked");
        xmm_arena_release_chunk(spare);
        CHECK(xmm_arena_reserved_bytes() == reserved_before, "released: bytes reserved as before");
        CHECK(!xmm_chunk_slot_used((uintptr_t)spare_base) &&
                  xmm_page_info_of(spare_base + XMM_GRANULE_SIZE) == 0,
              "released: its slot is clear and its pages have no page info");
    }
    return check_summary("arena map");
}
