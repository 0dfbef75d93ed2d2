/*
 * large - large objects, 64 KiB to 16 MiB.
 *
 * Each thread keeps LIVE large blocks and, OPS times, replaces a random one
 * with a block of log-uniform random size in MIN..MAX, writing one byte in
 * every page. Allocators differ most here in whether they keep freed large
 * blocks mapped for reuse (fast, more memory) or hand them back to the
 * kernel (page faults and zeroing on every reuse, less memory).
 *
 * usage: large THREADS OPS_PER_THREAD LIVE_PER_THREAD MIN_SIZE MAX_SIZE
 * Throughput counts replacements.
 */
#include "common.h"

struct large_config {
    unsigned threads;
    unsigned long ops;
    unsigned long live;
    size_t min_size, max_size;
};

struct large_worker {
    const struct large_config *config;
    unsigned index;
};

static void *replace_large_blocks(void *argument)
{
    struct large_worker *worker = argument;
    const struct large_config *config = worker->config;
    uint64_t state = seed_for(worker->index);
    void *live[config->live];

    memset(live, 0, sizeof live);
    for (unsigned long op = 0; op < config->ops; op++) {
        unsigned long slot = next_random(&state) % config->live;
        size_t size = random_size(&state, config->min_size, config->max_size);
        free(live[slot]);
        live[slot] = checked_malloc(size);
        touch(live[slot], size);
    }
    for (unsigned long i = 0; i < config->live; i++)
        free(live[i]);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: %s THREADS OPS_PER_THREAD LIVE_PER_THREAD MIN_SIZE MAX_SIZE\n",
                argv[0]);
        return 2;
    }
    struct large_config config = {
        .threads = (unsigned)parse_count(argv[1], "threads"),
        .ops = parse_count(argv[2], "ops"),
        .live = parse_count(argv[3], "live"),
        .min_size = parse_count(argv[4], "min size"),
        .max_size = parse_count(argv[5], "max size"),
    };
    if (!config.threads || !config.live || config.live > 4096 || !config.min_size ||
        config.min_size > config.max_size) {
        fprintf(stderr, "large: need threads, 0 < live <= 4096 and 0 < min <= max\n");
        return 2;
    }
    pthread_t threads[config.threads];
    struct large_worker workers[config.threads];

    double start = now_seconds();
    for (unsigned i = 0; i < config.threads; i++) {
        workers[i] = (struct large_worker){&config, i};
        start_thread(&threads[i], replace_large_blocks, &workers[i]);
    }
    for (unsigned i = 0; i < config.threads; i++)
        pthread_join(threads[i], NULL);
    double elapsed = now_seconds() - start;

    print_result("large", elapsed, (double)config.threads * config.ops, NULL);
    return 0;
}
