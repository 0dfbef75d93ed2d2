/*
 * xmalloc - producer/consumer allocation, after the xmalloc-test benchmark.
 *
 * PAIRS producer threads allocate blocks in batches of BATCH and hand each
 * batch over a shared queue; PAIRS consumer threads take batches and free
 * every block. So every block is freed by a thread other than the one that
 * allocated it: the pattern of a pipeline or a request handed between
 * thread pools, and the slow path of allocators with thread-local caches.
 * The queue is bounded so memory stays bounded whoever is faster.
 *
 * usage: xmalloc PAIRS BATCHES_PER_PRODUCER BATCH MIN_SIZE MAX_SIZE
 * Throughput counts blocks (one malloc in a producer, one free in a consumer).
 */
#include "common.h"

#define QUEUE_LIMIT 64 /* batches in flight; the queue array is static */

struct batch_queue {
    pthread_mutex_t lock;
    pthread_cond_t not_empty;
    pthread_cond_t not_full;
    void **batches[QUEUE_LIMIT];
    unsigned head, count;
    unsigned producers_left;
};

struct xmalloc_config {
    unsigned pairs;
    unsigned long batches_per_producer;
    unsigned long batch;
    size_t min_size, max_size;
};

static struct batch_queue queue = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .not_empty = PTHREAD_COND_INITIALIZER,
    .not_full = PTHREAD_COND_INITIALIZER,
};
static struct xmalloc_config config;

static void push_batch(void **batch)
{
    pthread_mutex_lock(&queue.lock);
    while (queue.count == QUEUE_LIMIT)
        pthread_cond_wait(&queue.not_full, &queue.lock);
    queue.batches[(queue.head + queue.count) % QUEUE_LIMIT] = batch;
    queue.count++;
    pthread_cond_signal(&queue.not_empty);
    pthread_mutex_unlock(&queue.lock);
}

/* NULL once the queue is empty and every producer has finished. */
static void **pop_batch(void)
{
    void **batch = NULL;
    pthread_mutex_lock(&queue.lock);
    while (queue.count == 0 && queue.producers_left > 0)
        pthread_cond_wait(&queue.not_empty, &queue.lock);
    if (queue.count > 0) {
        batch = queue.batches[queue.head];
        queue.head = (queue.head + 1) % QUEUE_LIMIT;
        queue.count--;
        pthread_cond_signal(&queue.not_full);
    }
    pthread_mutex_unlock(&queue.lock);
    return batch;
}

static void producer_finished(void)
{
    pthread_mutex_lock(&queue.lock);
    queue.producers_left--;
    pthread_cond_broadcast(&queue.not_empty);
    pthread_mutex_unlock(&queue.lock);
}

static void *produce(void *argument)
{
    uint64_t state = seed_for((unsigned)(uintptr_t)argument);
    for (unsigned long b = 0; b < config.batches_per_producer; b++) {
        /* The batch array itself is allocated here and freed by the
         * consumer too: one more cross-thread free per batch. */
        void **batch = checked_malloc(config.batch * sizeof *batch);
        for (unsigned long i = 0; i < config.batch; i++) {
            size_t size = random_size(&state, config.min_size, config.max_size);
            batch[i] = checked_malloc(size);
            touch(batch[i], size);
        }
        push_batch(batch);
    }
    producer_finished();
    return NULL;
}

static void *consume(void *argument)
{
    void **batch;
    (void)argument;
    while ((batch = pop_batch()) != NULL) {
        for (unsigned long i = 0; i < config.batch; i++)
            free(batch[i]);
        free(batch);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: %s PAIRS BATCHES_PER_PRODUCER BATCH MIN_SIZE MAX_SIZE\n",
                argv[0]);
        return 2;
    }
    config = (struct xmalloc_config){
        .pairs = (unsigned)parse_count(argv[1], "pairs"),
        .batches_per_producer = parse_count(argv[2], "batches"),
        .batch = parse_count(argv[3], "batch"),
        .min_size = parse_count(argv[4], "min size"),
        .max_size = parse_count(argv[5], "max size"),
    };
    if (!config.pairs || !config.batch || !config.min_size || config.min_size > config.max_size) {
        fprintf(stderr, "xmalloc: need pairs, batch and 0 < min <= max\n");
        return 2;
    }
    queue.producers_left = config.pairs;
    pthread_t producers[config.pairs], consumers[config.pairs];

    double start = now_seconds();
    for (unsigned i = 0; i < config.pairs; i++) {
        start_thread(&producers[i], produce, (void *)(uintptr_t)i);
        start_thread(&consumers[i], consume, NULL);
    }
    for (unsigned i = 0; i < config.pairs; i++) {
        pthread_join(producers[i], NULL);
        pthread_join(consumers[i], NULL);
    }
    double elapsed = now_seconds() - start;

    print_result("xmalloc", elapsed,
                 (double)config.pairs * config.batches_per_producer * config.batch, NULL);
    return 0;
}
