/*
 * hit-loop - the two hit-path shapes of bench/micro as a plain loop, for
 * counting what one operation executes (instructions and simulated cache
 * misses under cachegrind: bench/hit-path-counts runs it twice with
 * different counts and takes the difference, so start-up cancels out).
 *
 * usage: hit-loop pair|batch COUNT SIZE
 *   pair   COUNT times: malloc(SIZE), write its first and last byte, free
 *   batch  COUNT times: 1000 mallocs (each written so), then 1000 frees
 */
#include "common.h"

#define BATCH 1000

static void touch_ends(char *block, size_t size)
{
    block[0] = 1;
    block[size - 1] = 1;
    escape(block);
}

int main(int argc, char **argv)
{
    if (argc != 4 || (strcmp(argv[1], "pair") != 0 && strcmp(argv[1], "batch") != 0)) {
        fprintf(stderr, "usage: hit-loop pair|batch COUNT SIZE\n");
        return 2;
    }
    long count = atol(argv[2]);
    size_t size = (size_t)atol(argv[3]);
    static char *blocks[BATCH];
    double start = now_seconds();
    for (long round = 0; round < count; round++) {
        if (argv[1][0] == 'p') {
            char *block = checked_malloc(size);
            touch_ends(block, size);
            free(block);
            continue;
        }
        for (int i = 0; i < BATCH; i++) {
            blocks[i] = checked_malloc(size);
            touch_ends(blocks[i], size);
        }
        for (int i = 0; i < BATCH; i++)
            free(blocks[i]);
    }
    print_result("hit-loop", now_seconds() - start, (double)count, NULL);
    return 0;
}
