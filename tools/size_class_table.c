/* Prints the size class table as markdown (docs/design.md), from the
 * allocator's own tables: `make size-class-table`. */
#include <stdio.h>

#include "ds/ds.h"
#include "xmm.h"

int main(void)
{
    xmm_free(xmm_malloc(1));
    printf("| class | size | span pages (%zu KiB) | objects per span | batch | worst waste |\n",
           (size_t)XMM_PAGE_SIZE >> 10);
    printf("|---|---|---|---|---|---|\n");
    size_t previous = 0;
    for (unsigned size_class = 1; size_class < XMM_CLASS_COUNT; size_class++) {
        const struct xmm_size_class *info = &xmm_size_classes[size_class];
        size_t smallest_request = previous + 1;
        double waste = 100.0 * (double)(info->size - smallest_request) / (double)smallest_request;
        printf("| %u | %u | %u | %u | %u | %.1f%% |\n", size_class, info->size, info->span_pages,
               info->objects, info->batch, waste);
        previous = info->size;
    }
    return 0;
}
