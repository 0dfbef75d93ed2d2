/*
 * batch_rounds.c - per-thread cost of bench/micro's batch1000 round, in a
 * fresh process: each of THREADS threads mallocs COUNT blocks of SIZE
 * bytes (writing their first and last byte), then frees them, ROUNDS
 * times. Prints microseconds per round for each thread. Any malloc: run it
 * with LD_PRELOAD.
 *
 *   cc -O2 -pthread -fno-builtin -o batch_rounds batch_rounds.c
 *   LD_PRELOAD=build/libxmm.so ./batch_rounds SIZE ROUNDS THREADS
 *
 * Used in bench/analysis.md ("micro: batch1000 at 1 and 4 KiB, two
 * threads"). Not part of `make bench`.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define COUNT 1000
#define MAX_THREADS 8

static size_t block_size;
static int rounds;
static pthread_barrier_t start_line;
static double us_per_round[MAX_THREADS];

static double now_seconds(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec + now.tv_nsec * 1e-9;
}

static void *run_rounds(void *argument)
{
    int id = (int)(size_t)argument;
    char *blocks[COUNT];
    pthread_barrier_wait(&start_line);
    double start = now_seconds();
    for (int round = 0; round < rounds; round++) {
        for (int i = 0; i < COUNT; i++) {
            blocks[i] = malloc(block_size);
            if (!blocks[i])
                abort();
            blocks[i][0] = 1;
            blocks[i][block_size - 1] = 1;
        }
        for (int i = 0; i < COUNT; i++)
            free(blocks[i]);
    }
    us_per_round[id] = (now_seconds() - start) / rounds * 1e6;
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 4 || atoi(argv[3]) < 1 || atoi(argv[3]) > MAX_THREADS) {
        fprintf(stderr, "usage: %s SIZE ROUNDS THREADS(1-%d)\n", argv[0], MAX_THREADS);
        return 2;
    }
    block_size = strtoul(argv[1], NULL, 0);
    rounds = atoi(argv[2]);
    int threads = atoi(argv[3]);
    pthread_t thread[MAX_THREADS];
    pthread_barrier_init(&start_line, NULL, threads);
    for (int i = 0; i < threads; i++)
        pthread_create(&thread[i], NULL, run_rounds, (void *)(size_t)i);
    for (int i = 0; i < threads; i++)
        pthread_join(thread[i], NULL);
    for (int i = 0; i < threads; i++)
        printf("thread %d: %.2f us a round\n", i, us_per_round[i]);
    return 0;
}
