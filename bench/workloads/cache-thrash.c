/*
 * cache-thrash - active false sharing, after Hoard's benchmark.
 *
 * Each thread, ITERATIONS times, allocates a small object, writes every
 * byte of it REPETITIONS times and frees it. An allocator that serves
 * concurrent threads from the same cache lines makes them invalidate each
 * other's caches on every write, and the run slows down by a large factor.
 *
 * usage: cache-thrash THREADS ITERATIONS OBJECT_SIZE REPETITIONS
 */
#include "common.h"
#include "false_sharing.h"

int main(int argc, char **argv)
{
    struct sharing_config config;
    if (!parse_sharing_config(argc, argv, &config))
        return 2;

    double elapsed = run_writers(&config, NULL);
    print_result("cache-thrash", elapsed, sharing_ops(&config), NULL);
    return 0;
}
