/*
 * false_sharing.h - the writer threads shared by cache-scratch and
 * cache-thrash, which differ only in where the first objects come from.
 */
#ifndef BENCH_FALSE_SHARING_H
#define BENCH_FALSE_SHARING_H

#include "common.h"

struct sharing_config {
    unsigned threads;
    unsigned long iterations;
    size_t object_size;
    unsigned long repetitions;
};

struct writer {
    const struct sharing_config *config;
    void *initial; /* freed first (cache-scratch), or NULL */
};

static int parse_sharing_config(int argc, char **argv, struct sharing_config *config)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s THREADS ITERATIONS OBJECT_SIZE REPETITIONS\n", argv[0]);
        return 0;
    }
    *config = (struct sharing_config){
        .threads = (unsigned)parse_count(argv[1], "threads"),
        .iterations = parse_count(argv[2], "iterations"),
        .object_size = parse_count(argv[3], "object size"),
        .repetitions = parse_count(argv[4], "repetitions"),
    };
    if (!config->threads || !config->object_size) {
        fprintf(stderr, "%s: need threads and an object size\n", argv[0]);
        return 0;
    }
    return 1;
}

/* Writes every byte through a volatile pointer: each write must reach the
 * cache line, which is what exposes false sharing. */
static void write_repeatedly(volatile char *object, size_t size, unsigned long repetitions)
{
    for (unsigned long r = 0; r < repetitions; r++)
        for (size_t k = 0; k < size; k++)
            object[k]++;
}

static void *write_objects(void *argument)
{
    struct writer *writer = argument;
    const struct sharing_config *config = writer->config;

    free(writer->initial);
    for (unsigned long i = 0; i < config->iterations; i++) {
        char *object = checked_malloc(config->object_size);
        write_repeatedly(object, config->object_size, config->repetitions);
        escape(object);
        free(object);
    }
    return NULL;
}

/* Runs the writers (initial[i] goes to thread i) and returns the time. */
static double run_writers(const struct sharing_config *config, void **initial)
{
    pthread_t threads[config->threads];
    struct writer writers[config->threads];

    double start = now_seconds();
    for (unsigned i = 0; i < config->threads; i++) {
        writers[i] = (struct writer){config, initial ? initial[i] : NULL};
        start_thread(&threads[i], write_objects, &writers[i]);
    }
    for (unsigned i = 0; i < config->threads; i++)
        pthread_join(threads[i], NULL);
    return now_seconds() - start;
}

/* Operations = object writes rounds over all threads. */
static double sharing_ops(const struct sharing_config *config)
{
    return (double)config->threads * config->iterations * config->repetitions;
}

#endif /* BENCH_FALSE_SHARING_H */
