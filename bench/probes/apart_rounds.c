/*
 * apart_rounds.c - two threads started together run bench/micro's
 * batch1000 round (malloc COUNT blocks of SIZE bytes, writing their first
 * and last byte, then free them) ROUNDS times, each pinned to a CPU of its
 * own or not. Prints microseconds per round for each thread over the
 * second half of the rounds, and how far apart the two threads' blocks
 * lay in the last round: how many of thread 0's blocks have one of thread
 * 1's within 256 bytes and within 4 KiB. Any malloc: run it with
 * LD_PRELOAD.
 *
 *   cc -O2 -pthread -fno-builtin -o apart_rounds apart_rounds.c
 *   LD_PRELOAD=build/libxmm.so ./apart_rounds SIZE ROUNDS pinned|free
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

static size_t block_size;
static int rounds;
static int pinned;
static pthread_barrier_t start_line;
static uintptr_t last_round[2][COUNT];
static double us_per_round[2];

static double now_seconds(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec + now.tv_nsec * 1e-9;
}

static void *run_rounds(void *argument)
{
    int id = (int)(intptr_t)argument;
    if (pinned) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(id, &set);
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

int main(int argc, char **argv)
{
    if (argc != 4 || atoi(argv[2]) < 2 ||
        (strcmp(argv[3], "pinned") != 0 && strcmp(argv[3], "free") != 0)) {
        fprintf(stderr, "usage: %s SIZE ROUNDS(>=2) pinned|free\n", argv[0]);
        return 2;
    }
    block_size = strtoul(argv[1], NULL, 0);
    rounds = atoi(argv[2]);
    pinned = strcmp(argv[3], "pinned") == 0;
    pthread_barrier_init(&start_line, NULL, 2);
    pthread_t thread[2];
    for (intptr_t i = 0; i < 2; i++)
        pthread_create(&thread[i], NULL, run_rounds, (void *)i);
    for (int i = 0; i < 2; i++)
        pthread_join(thread[i], NULL);
    qsort(last_round[1], COUNT, sizeof(uintptr_t), by_address);
    printf("us a round: %.2f %.2f; of thread 0's blocks, %d within 256 B and %d within 4 KiB "
           "of thread 1's\n",
           us_per_round[0], us_per_round[1], close_to_other(256), close_to_other(4096));
    return 0;
}
