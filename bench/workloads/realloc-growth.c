/*
 * realloc-growth - one buffer grown by a fixed step up to a target size,
 * as a program appending to a growing array or string does.
 *
 * Starts with a block of STEP bytes and reallocs it STEP bytes larger at a
 * time until it holds TARGET_MB MiB, writing the STEP new bytes after each
 * call (an append). The total cost should be O(N) in the final size: an
 * allocator that grows the block in place or moves its pages with mremap
 * copies little; one that maps a new block and copies everything at each
 * call copies O(N^2 / STEP) bytes. At the end the buffer is checked (one
 * byte per page and per step), so a realloc that lost data fails the run.
 *
 * elapsed_s is the growth loop; ops counts realloc calls. Extra fields:
 * moves (calls that returned another address) and final_kb. A line
 * "progress mb=..." is printed (and flushed) at every MiB, so that a run
 * killed by the benchmark's timeout still says how far it got.
 *
 * usage: realloc-growth TARGET_MB STEP_BYTES
 */
#include "common.h"

/* The value of the bytes appended by step `k` (step 0: the first block):
 * pages moved out of order or lost show up as a wrong value. */
static inline unsigned char pattern(size_t k)
{
    return (unsigned char)(k * 131 + 7);
}

/* One byte per page and the last byte of every step must hold its value. */
static int check(const unsigned char *buffer, size_t size, size_t step)
{
    for (size_t k = 0; k * step < size; k++) {
        size_t first = k * step, end = first + step < size ? first + step : size;
        for (size_t i = first; i < end; i += 4096)
            if (buffer[i] != pattern(k))
                return -1;
        if (buffer[end - 1] != pattern(k))
            return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s TARGET_MB STEP_BYTES\n", argv[0]);
        return 2;
    }
    size_t target = parse_count(argv[1], "target MB") << 20;
    size_t step = parse_count(argv[2], "step bytes");
    if (!target || !step || step > target) {
        fprintf(stderr, "realloc-growth: need 0 < STEP_BYTES <= TARGET_MB MiB\n");
        return 2;
    }
    size_t size = step;
    unsigned char *buffer = checked_malloc(size);
    memset(buffer, pattern(0), size);
    unsigned long calls = 0, moves = 0;
    size_t next_progress = 1 << 20;

    double start = now_seconds();
    while (size < target) {
        size_t grown = size + step < target ? size + step : target;
        unsigned char *moved = realloc(buffer, grown);
        if (!moved) {
            fprintf(stderr, "realloc(%zu) failed\n", grown);
            return 3;
        }
        calls++;
        moves += moved != buffer;
        buffer = moved;
        memset(buffer + size, pattern(calls), grown - size);
        size = grown;
        if (size >= next_progress) {
            printf("progress mb=%.1f elapsed_s=%.3f moves=%lu\n", (double)size / (1 << 20),
                   now_seconds() - start, moves);
            fflush(stdout);
            next_progress += 1 << 20;
        }
    }
    double elapsed = now_seconds() - start;

    if (check(buffer, size, step)) {
        fprintf(stderr, "realloc-growth: the buffer lost its contents\n");
        return 4;
    }
    free(buffer);
    char extra[96];
    snprintf(extra, sizeof extra, "moves=%lu final_kb=%zu", moves, size >> 10);
    print_result("realloc-growth", elapsed, (double)calls, extra);
    return 0;
}
