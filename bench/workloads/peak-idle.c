/*
 * peak-idle - a burst of allocation, then a long idle: does the allocator
 * give the memory back, and how fast?
 *
 * Allocates about TOTAL_MB MiB in blocks of log-uniform sizes in MIN..MAX
 * (touched), frees them all in random order, then idles for STEPS steps of
 * STEP_MS milliseconds. Each idle step makes TICK_OPS small malloc/free
 * pairs (a mostly idle server still serves a few requests, and jemalloc,
 * mimalloc and others purge only from inside their own calls, not on a
 * timer) and prints "sample t_s=... rss_kb=..." for the RSS-over-time
 * plot; t_s counts from the start of the allocation burst.
 *
 * elapsed_s is the burst (allocate and free), without the idle time. The
 * result line adds the RSS right after the free and at the end, in kB.
 *
 * usage: peak-idle TOTAL_MB MIN_SIZE MAX_SIZE STEPS STEP_MS TICK_OPS
 */
#include "common.h"
#include <unistd.h>

static double start_time;

static void print_sample(const char *phase)
{
    printf("sample t_s=%.3f rss_kb=%ld phase=%s\n", now_seconds() - start_time,
           current_rss_kb(), phase);
}

/* Allocates blocks until `total` bytes; returns how many (at most `room`). */
static unsigned long allocate_until(void **blocks, unsigned long room, size_t total,
                                    size_t min, size_t max, uint64_t *state)
{
    size_t bytes = 0;
    unsigned long count = 0;
    while (bytes < total && count < room) {
        size_t size = random_size(state, min, max);
        blocks[count] = checked_malloc(size);
        touch(blocks[count], size);
        bytes += size;
        count++;
    }
    return count;
}

static void free_in_random_order(void **blocks, unsigned long count, uint64_t *state)
{
    for (unsigned long left = count; left > 0; left--) {
        unsigned long pick = next_random(state) % left;
        free(blocks[pick]);
        blocks[pick] = blocks[left - 1];
    }
}

/* A little work between sleeps: TICK_OPS short-lived blocks of 16..1024 B. */
static void idle_tick(unsigned long ops, uint64_t *state)
{
    for (unsigned long i = 0; i < ops; i++) {
        size_t size = random_size(state, 16, 1024);
        void *block = checked_malloc(size);
        touch(block, size);
        free(block);
    }
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: %s TOTAL_MB MIN_SIZE MAX_SIZE STEPS STEP_MS TICK_OPS\n",
                argv[0]);
        return 2;
    }
    size_t total = parse_count(argv[1], "total MB") << 20;
    size_t min = parse_count(argv[2], "min size");
    size_t max = parse_count(argv[3], "max size");
    unsigned long steps = parse_count(argv[4], "steps");
    unsigned long step_ms = parse_count(argv[5], "step ms");
    unsigned long tick_ops = parse_count(argv[6], "tick ops");
    if (!total || !min || min > max) {
        fprintf(stderr, "peak-idle: need a total and 0 < min <= max\n");
        return 2;
    }
    uint64_t state = seed_for(11);
    /* Room for the worst case (all blocks of the minimum size), allocated
     * before the clock starts so it does not count in the burst. */
    unsigned long room = total / min + 1;
    void **blocks = checked_malloc(room * sizeof *blocks);

    start_time = now_seconds();
    print_sample("start");
    unsigned long count = allocate_until(blocks, room, total, min, max, &state);
    print_sample("peak");
    free_in_random_order(blocks, count, &state);
    double burst = now_seconds() - start_time;
    long rss_after_free = current_rss_kb();
    print_sample("freed");

    for (unsigned long step = 0; step < steps; step++) {
        usleep((useconds_t)(step_ms * 1000));
        idle_tick(tick_ops, &state);
        print_sample("idle");
    }
    char extra[128];
    snprintf(extra, sizeof extra, "rss_after_free_kb=%ld rss_end_kb=%ld", rss_after_free,
             current_rss_kb());
    print_result("peak-idle", burst, (double)count * 2, extra);
    free(blocks);
    return 0;
}
