/*
 * apart_rounds.c - THREADS threads (2 if not given) started together run
 * bench/micro's batch1000 round (malloc COUNT blocks of SIZE bytes,
 * writing their first and last byte, then free them) ROUNDS times, thread
 * i pinned to CPU i % 2 or not pinned. Prints microseconds per round for
 * each thread over the second half of the rounds (the thread's CPU time,
 * so that threads that share a CPU are not charged for each other's
 * turns), and how far apart threads 0 and 1's blocks lay in the last
 * round (pinned: on two CPUs): how many of thread 0's blocks have one of
 * thread 1's within 256 bytes and within 4 KiB, and how many lie in a
 * 32 KiB-aligned region that holds one of thread 1's. Any malloc: run it
 * with LD_PRELOAD.
 *
 *   cc -O2 -pthread -fno-builtin -o apart_rounds apart_rounds.c
 *   LD_PRELOAD=build/libxmm.so ./apart_rounds SIZE ROUNDS pinned|free [THREADS]
 *
 * Used in bench/analysis.md ("micro: batch1000 at 8-64 B, two threads").
 * Not part of `make bench`.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define COUNT 1000
#define MOST_THREADS 16

static size_t block_size;
static int rounds;
static int pinned;
static pthread_barrier_t start_line;
static uintptr_t last_round[MOST_THREADS][COUNT];
static double us_per_round[MOST_THREADS];

static double now_seconds(void)
{
    struct timespec now;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
    return now.tv_sec + now.tv_nsec * 1e-9;
}

static void *run_rounds(void *argument)
{
    int id = (int)(intptr_t)argument;
    if (pinned) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(id % 2, &set);
        if (sched_setaffinity(0, sizeof set, &set) != 0)
            perror("sched_setaffinity");
    }
    char *blocks[COUNT];
    pthread_barrier_wait(&start_line);
    double start = 0;
    for (int round = 0; round < rounds; round++) {
        if (round == rounds / 2)
            start = now_seconds();
        for (int i = 0; i < COUNT; i++) {
            blocks[i] = malloc(block_size);
            if (!blocks[i])
                abort();
            blocks[i][0] = 1;
            blocks[i][block_size - 1] = 1;
        }
        if (round == rounds - 1)
            for (int i = 0; i < COUNT; i++)
                last_round[id][i] = (uintptr_t)blocks[i];
        for (int i = 0; i < COUNT; i++)
            free(blocks[i]);
    }
    us_per_round[id] = (now_seconds() - start) / (rounds - rounds / 2) * 1e6;
    return NULL;
}

static int by_address(const void *a, const void *b)
{
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

/* Thread 0's blocks with one of thread 1's (sorted) closer than `limit`. */
static int close_to_other(uintptr_t limit)
{
    int close = 0;
    for (int i = 0; i < COUNT; i++) {
        uintptr_t mine = last_round[0][i];
        int low = 0, high = COUNT - 1;
        while (low < high) {
            int middle = (low + high) / 2;
            if (last_round[1][middle] < mine)
                low = middle + 1;
            else
                high = middle;
        }
        for (int k = low - 1; k <= low; k++) {
            if (k < 0 || k >= COUNT)
                continue;
            uintptr_t other = last_round[1][k];
            if ((other > mine ? other - mine : mine - other) < limit) {
                close++;
                break;
            }
        }
    }
    return close;
}

/* Thread 0's blocks in a `region`-aligned region that holds one of
 * thread 1's. */
static int same_region(uintptr_t region)
{
    int shared = 0;
    for (int i = 0; i < COUNT; i++)
        for (int k = 0; k < COUNT; k++)
            if (last_round[1][k] / region == last_round[0][i] / region) {
                shared++;
                break;
            }
    return shared;
}

int main(int argc, char **argv)
{
    int threads = argc == 5 ? atoi(argv[4]) : 2;
    if (argc < 4 || argc > 5 || atoi(argv[2]) < 2 || threads < 2 || threads > MOST_THREADS ||
        (strcmp(argv[3], "pinned") != 0 && strcmp(argv[3], "free") != 0)) {
        fprintf(stderr, "usage: %s SIZE ROUNDS(>=2) pinned|free [THREADS(2-%d)]\n", argv[0],
                MOST_THREADS);
        return 2;
    }
    block_size = strtoul(argv[1], NULL, 0);
    rounds = atoi(argv[2]);
    pinned = strcmp(argv[3], "pinned") == 0;
    pthread_barrier_init(&start_line, NULL, (unsigned)threads);
    pthread_t thread[MOST_THREADS];
    for (intptr_t i = 0; i < threads; i++)
        pthread_create(&thread[i], NULL, run_rounds, (void *)i);
    for (int i = 0; i < threads; i++)
        pthread_join(thread[i], NULL);
    qsort(last_round[1], COUNT, sizeof(uintptr_t), by_address);
    printf("us a round:");
    for (int i = 0; i < threads; i++)
        printf(" %.2f", us_per_round[i]);
    printf("; of thread 0's blocks, %d within 256 B and %d within 4 KiB of thread 1's, "
           "%d in a 32 KiB region with one\n",
           close_to_other(256), close_to_other(4096), same_region(32768));
    return 0;
}
