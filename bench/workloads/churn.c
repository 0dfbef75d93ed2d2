/*
 * churn - mixed sizes over a large live set.
 *
 * Each thread keeps LIVE blocks of log-uniform random sizes in MIN..MAX
 * alive and, OPS times, picks one at random and replaces it: usually with
 * free + malloc, every eighth time with realloc to a new size (as strings
 * and vectors grow and shrink). The live set is much larger than any cache,
 * so this measures the allocator on a long-running process's heap, with
 * the cache misses and fragmentation that come with it, not on a hot loop.
 *
 * usage: churn THREADS OPS_PER_THREAD LIVE_PER_THREAD MIN_SIZE MAX_SIZE
 * Throughput counts replacements.
 */
#include "common.h"

struct churn_config {
    unsigned threads;
    unsigned long ops;
    unsigned long live;
    size_t min_size, max_size;
};

struct churner {
    const struct churn_config *config;
    unsigned index;
};

static void *checked_realloc(void *block, size_t size)
{
    void *moved = realloc(block, size);
    if (!moved) {
        fprintf(stderr, "realloc(%zu) failed\n", size);
        exit(3);
    }
    return moved;
}

static void *churn_blocks(void *argument)
{
    struct churner *churner = argument;
    const struct churn_config *config = churner->config;
    uint64_t state = seed_for(churner->index);
    void **live = checked_malloc(config->live * sizeof *live);

    for (unsigned long i = 0; i < config->live; i++) {
        size_t size = random_size(&state, config->min_size, config->max_size);
        live[i] = checked_malloc(size);
        touch(live[i], size);
    }
    for (unsigned long op = 0; op < config->ops; op++) {
        unsigned long slot = next_random(&state) % config->live;
        size_t size = random_size(&state, config->min_size, config->max_size);
        if (op % 8 == 7) {
            live[slot] = checked_realloc(live[slot], size);
        } else {
            free(live[slot]);
            live[slot] = checked_malloc(size);
        }
        touch(live[slot], size);
    }
    for (unsigned long i = 0; i < config->live; i++)
        free(live[i]);
    free(live);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: %s THREADS OPS_PER_THREAD LIVE_PER_THREAD MIN_SIZE MAX_SIZE\n",
                argv[0]);
        return 2;
    }
    struct churn_config config = {
        .threads = (unsigned)parse_count(argv[1], "threads"),
        .ops = parse_count(argv[2], "ops"),
        .live = parse_count(argv[3], "live"),
        .min_size = parse_count(argv[4], "min size"),
        .max_size = parse_count(argv[5], "max size"),
    };
    if (!config.threads || !config.live || !config.min_size || config.min_size > config.max_size) {
        fprintf(stderr, "churn: need threads, live and 0 < min <= max\n");
        return 2;
    }
    pthread_t threads[config.threads];
    struct churner churners[config.threads];

    /* Timed as a whole, fill and teardown included: building and
     * destroying a large heap is part of what a long-running process does. */
    double start = now_seconds();
    for (unsigned i = 0; i < config.threads; i++) {
        churners[i] = (struct churner){&config, i};
        start_thread(&threads[i], churn_blocks, &churners[i]);
    }
    for (unsigned i = 0; i < config.threads; i++)
        pthread_join(threads[i], NULL);
    double elapsed = now_seconds() - start;

    print_result("churn", elapsed, (double)config.threads * (config.ops + 2 * config.live), NULL);
    return 0;
}
