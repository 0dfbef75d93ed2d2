/* The guard before a chunk's page table (backend/arena.h): chunks are
 * mapped right below one another, so without it a write a few bytes past
 * the last block of one chunk would reach the next chunk's page table and
 * forge a page word (free() would then take an interior pointer of a live
 * large block for a small object, and malloc hand out memory inside it).
 * With it, such a write faults. Found in review of the page table's move
 * into the chunk. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend/backend.h"
#include "check.h"
#include "xmm.h"

/* Four of them fill a 64 MiB chunk's pages exactly, so the last block of
 * such a chunk ends where the chunk does. */
#define BLOCK_PAGES (XMM_CHUNK_SPAN_MAX_PAGES / 4)
#define BLOCK_BYTES ((size_t)BLOCK_PAGES * XMM_PAGE_SIZE)
#define COUNT 24

/* The start of the mapping that holds `address` (/proc/self/maps), or NULL. */
static char *mapping_start(const char *address)
{
    FILE *maps = fopen("/proc/self/maps", "r");
    if (!maps)
        return NULL;
    char line[512];
    char *start = NULL;
    while (!start && fgets(line, sizeof line, maps)) {
        unsigned long from, to;
        if (sscanf(line, "%lx-%lx", &from, &to) == 2 && (uintptr_t)address >= from &&
            (uintptr_t)address < to)
            start = (char *)from;
    }
    fclose(maps);
    return start;
}

/* Writes a byte at `target` in a child; true if the child died of SIGSEGV. */
static bool write_faults(char *target)
{
    pid_t child = fork();
    if (child == 0) {
        *(volatile char *)target = 0x5a;
        _exit(0);
    }
    int status = 0;
    waitpid(child, &status, 0);
    return WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV;
}

int main(void)
{
    _Static_assert(XMM_CHUNK_SPAN_MAX_PAGES % 4 == 0, "blocks fill a chunk");
    static char *blocks[COUNT];
    for (int i = 0; i < COUNT; i++) {
        blocks[i] = xmm_malloc(BLOCK_BYTES);
        CHECK(blocks[i] != NULL, "block %d", i);
    }
    struct xmm_chunk *chunk = (struct xmm_chunk *)xmm_region_of(blocks[0]);
    char *base = chunk->region.base;
    CHECK((char *)xmm_chunk_table_of((uintptr_t)blocks[0]) == base + XMM_CHUNK_TABLE_OFFSET,
          "the table is at its place");
    CHECK(xmm_page_word_of(blocks[0]) ==
              (xmm_page_info *)(base + XMM_CHUNK_TABLE_OFFSET) + (blocks[0] - base) / XMM_PAGE_SIZE,
          "the page word is found by mask");
    CHECK(write_faults(base + XMM_CHUNK_HOLE_SIZE) &&
              write_faults(base + XMM_CHUNK_TABLE_OFFSET - 1),
          "a write into the guard before a chunk's metadata faults");
    _Static_assert(XMM_CHUNK_HOLE_SIZE + XMM_CHUNK_GUARD_SIZE == XMM_CHUNK_TABLE_OFFSET,
                   "the table follows the guard");
    /* The hole before the guard is not XMM's: it costs no address space
     * (the kernel may put other small mappings there, XMM's own metadata
     * among them), so the chunk's mapping starts at the guard. */
    CHECK(mapping_start(base + XMM_CHUNK_HOLE_SIZE) == base + XMM_CHUNK_HOLE_SIZE,
          "the chunk's mapping starts at its guard, %zu KiB past its aligned start "
          "(mapping from %p)", (size_t)XMM_CHUNK_HOLE_SIZE >> 10,
          (void *)mapping_start(base + XMM_CHUNK_HOLE_SIZE));
    CHECK(!write_faults(base + XMM_CHUNK_TABLE_OFFSET), "the table right after the guard is writable");
    /* Two chunks, one right above the other: the overflow off the end of
     * the lower one's last block faults before it reaches the table. */
    int adjacent = 0;
    for (int i = 0; i < COUNT; i++) {
        struct xmm_region *next = xmm_region_of(blocks[i] + BLOCK_BYTES);
        if (next && next->kind == XMM_REGION_CHUNK && next->base == blocks[i] + BLOCK_BYTES) {
            adjacent++;
            CHECK(write_faults(blocks[i] + BLOCK_BYTES + 16),
                  "16 bytes past block %p, the last of its chunk: a fault, not the table of %p",
                  (void *)blocks[i], (void *)next->base);
        }
    }
    printf("%d chunk(s) with another right above them in this run\n", adjacent);
    for (int i = 0; i < COUNT; i++)
        xmm_free(blocks[i]);
    return check_summary("chunk guard");
}
