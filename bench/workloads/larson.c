/*
 * larson - a server simulation after Larson and Krishnan's benchmark.
 *
 * A shared pool holds THREADS * BLOCKS blocks. In each round, THREADS new
 * threads start; each owns one slice of the pool and replaces random blocks
 * in it (free the old block, allocate one of a random size) OPS times, then
 * exits. The slices rotate from round to round, so most frees hit blocks
 * that another thread allocated, often a thread that has already exited:
 * as in a server whose objects outlive the worker that made them.
 *
 * usage: larson THREADS ROUNDS OPS_PER_ROUND BLOCKS_PER_THREAD MIN_SIZE MAX_SIZE
 * Throughput counts replacements (one free plus one malloc each).
 */
#include "common.h"

struct larson_config {
    unsigned threads;
    unsigned rounds;
    unsigned long ops_per_round;
    unsigned long blocks_per_thread;
    size_t min_size;
    size_t max_size;
};

struct worker {
    const struct larson_config *config;
    void **slice;          /* the blocks this thread replaces in this round */
    uint64_t random_state;
};

static void *replace_blocks(void *argument)
{
    struct worker *worker = argument;
    const struct larson_config *config = worker->config;

    for (unsigned long op = 0; op < config->ops_per_round; op++) {
        unsigned long slot = next_random(&worker->random_state) % config->blocks_per_thread;
        size_t size = random_size(&worker->random_state, config->min_size, config->max_size);
        free(worker->slice[slot]);
        worker->slice[slot] = checked_malloc(size);
        touch(worker->slice[slot], size);
    }
    return NULL;
}

static void fill_pool(void **pool, unsigned long count, const struct larson_config *config)
{
    uint64_t state = seed_for(1000);
    for (unsigned long i = 0; i < count; i++) {
        size_t size = random_size(&state, config->min_size, config->max_size);
        pool[i] = checked_malloc(size);
        touch(pool[i], size);
    }
}

/* One round: a fresh set of threads, each on the slice `round` places
 * after its own index, so ownership moves between threads. */
static void run_round(void **pool, unsigned round, const struct larson_config *config)
{
    pthread_t threads[config->threads];
    struct worker workers[config->threads];

    for (unsigned i = 0; i < config->threads; i++) {
        unsigned slice = (i + round) % config->threads;
        workers[i] = (struct worker){
            .config = config,
            .slice = pool + slice * config->blocks_per_thread,
            .random_state = seed_for(round * config->threads + i),
        };
        start_thread(&threads[i], replace_blocks, &workers[i]);
    }
    for (unsigned i = 0; i < config->threads; i++)
        pthread_join(threads[i], NULL);
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: %s THREADS ROUNDS OPS_PER_ROUND BLOCKS_PER_THREAD "
                        "MIN_SIZE MAX_SIZE\n", argv[0]);
        return 2;
    }
    struct larson_config config = {
        .threads = (unsigned)parse_count(argv[1], "threads"),
        .rounds = (unsigned)parse_count(argv[2], "rounds"),
        .ops_per_round = parse_count(argv[3], "ops per round"),
        .blocks_per_thread = parse_count(argv[4], "blocks per thread"),
        .min_size = parse_count(argv[5], "min size"),
        .max_size = parse_count(argv[6], "max size"),
    };
    if (!config.threads || !config.blocks_per_thread || !config.min_size ||
        config.min_size > config.max_size) {
        fprintf(stderr, "larson: need threads, blocks and 0 < min <= max\n");
        return 2;
    }
    unsigned long pool_size = config.threads * config.blocks_per_thread;
    void **pool = checked_malloc(pool_size * sizeof *pool);
    fill_pool(pool, pool_size, &config);

    double start = now_seconds();
    for (unsigned round = 0; round < config.rounds; round++)
        run_round(pool, round, &config);
    double elapsed = now_seconds() - start;

    for (unsigned long i = 0; i < pool_size; i++)
        free(pool[i]);
    free(pool);
    print_result("larson", elapsed,
                 (double)config.rounds * config.threads * config.ops_per_round, NULL);
    return 0;
}
