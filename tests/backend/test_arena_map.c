/* The address map: XMM's blocks map to their region and span, with the
 * right node; other addresses (stack, globals, glibc heap, interior and
 * unaligned pointers) are not XMM's. */
#include <errno.h>
#include <string.h>

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
    xmm_free(direct);
    CHECK(xmm_region_of(direct) == NULL, "direct mapping forgotten after free");
    xmm_free(large);
    xmm_free(small);
    return check_summary("arena map");
}
