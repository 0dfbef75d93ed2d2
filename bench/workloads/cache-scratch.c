/*
 * cache-scratch - passive false sharing, after Hoard's benchmark.
 *
 * The main thread allocates one small object per thread, back to back, so
 * they likely share cache lines, and gives one to each thread. Each thread
 * frees its object at once, then ITERATIONS times allocates an object of
 * the same size, writes every byte of it REPETITIONS times and frees it.
 * An allocator that hands the freed object (or its neighbours) back to the
 * thread makes the threads write to one cache line: the time shows it.
 *
 * usage: cache-scratch THREADS ITERATIONS OBJECT_SIZE REPETITIONS
 */
#include "common.h"
#include "false_sharing.h"

int main(int argc, char **argv)
{
    struct sharing_config config;
    if (!parse_sharing_config(argc, argv, &config))
        return 2;

    /* Allocated together by one thread: neighbours in memory. */
    void *initial[config.threads];
    for (unsigned i = 0; i < config.threads; i++) {
        initial[i] = checked_malloc(config.object_size);
        touch(initial[i], config.object_size);
    }

    double elapsed = run_writers(&config, initial);
    print_result("cache-scratch", elapsed, sharing_ops(&config), NULL);
    return 0;
}
