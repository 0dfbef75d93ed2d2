/*
 * frag - fragmentation: how much memory stays resident after most of a
 * heap is freed, and whether the holes serve the next allocations.
 *
 * 1. allocate BLOCKS blocks of log-uniform sizes in MIN..MAX (touched);
 * 2. free FREE_PERCENT of them, chosen at random, and wait SETTLE_MS (so
 *    allocators that return memory on a timer get the chance), then read
 *    the RSS that remains;
 * 3. allocate as many blocks again, twice as large (2*MIN..2*MAX): objects
 *    that grew no longer fit the holes left by the old ones, the classic
 *    way a long-running server's heap fragments; read the RSS again.
 *
 * The result line adds, in kB: live and RSS after each phase. The RSS/live
 * ratio after phase 3 is the fragmentation overhead.
 *
 * usage: frag BLOCKS MIN_SIZE MAX_SIZE FREE_PERCENT SETTLE_MS
 */
#include "common.h"
#include <unistd.h>

struct block {
    void *pointer;
    size_t size;
};

static size_t allocate_blocks(struct block *blocks, unsigned long count, size_t min,
                              size_t max, uint64_t *state)
{
    size_t bytes = 0;
    for (unsigned long i = 0; i < count; i++) {
        size_t size = random_size(state, min, max);
        blocks[i] = (struct block){checked_malloc(size), size};
        touch(blocks[i].pointer, size);
        bytes += size;
    }
    return bytes;
}

/* Frees `count` random blocks (a partial Fisher-Yates shuffle moves them to
 * the end) and returns the bytes freed; the survivors stay at the front. */
static size_t free_random_blocks(struct block *blocks, unsigned long total,
                                 unsigned long count, uint64_t *state)
{
    size_t bytes = 0;
    for (unsigned long i = 0; i < count; i++) {
        unsigned long last = total - 1 - i;
        unsigned long pick = next_random(state) % (last + 1);
        struct block chosen = blocks[pick];
        blocks[pick] = blocks[last];
        blocks[last] = chosen;
        bytes += chosen.size;
        free(chosen.pointer);
    }
    return bytes;
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: %s BLOCKS MIN_SIZE MAX_SIZE FREE_PERCENT SETTLE_MS\n", argv[0]);
        return 2;
    }
    unsigned long count = parse_count(argv[1], "blocks");
    size_t min = parse_count(argv[2], "min size");
    size_t max = parse_count(argv[3], "max size");
    unsigned long free_percent = parse_count(argv[4], "free percent");
    unsigned long settle_ms = parse_count(argv[5], "settle ms");
    if (!count || !min || min > max || free_percent > 100) {
        fprintf(stderr, "frag: need blocks, 0 < min <= max, percent <= 100\n");
        return 2;
    }
    uint64_t state = seed_for(7);
    struct block *blocks = checked_malloc(count * sizeof *blocks);
    unsigned long freed_count = count * free_percent / 100;

    double start = now_seconds();
    size_t live = allocate_blocks(blocks, count, min, max, &state);
    long rss_full = current_rss_kb();

    live -= free_random_blocks(blocks, count, freed_count, &state);
    double settle_start = now_seconds();
    usleep((useconds_t)(settle_ms * 1000));
    double settle_time = now_seconds() - settle_start;
    long rss_after_free = current_rss_kb();
    size_t live_after_free = live;

    live += allocate_blocks(blocks + count - freed_count, freed_count, 2 * min, 2 * max, &state);
    long rss_final = current_rss_kb();
    double elapsed = now_seconds() - start - settle_time;

    char extra[256];
    snprintf(extra, sizeof extra,
             "rss_full_kb=%ld live_after_free_kb=%zu rss_after_free_kb=%ld "
             "live_final_kb=%zu rss_final_kb=%ld",
             rss_full, live_after_free / 1024, rss_after_free, live / 1024, rss_final);
    print_result("frag", elapsed, (double)(count + 2 * freed_count), extra);

    for (unsigned long i = 0; i < count; i++)
        free(blocks[i].pointer);
    free(blocks);
    return 0;
}
