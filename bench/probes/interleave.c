/*
 * interleave.c - what two threads pay when their blocks lie in granules of
 * one mapping that alternate between them, without any allocator: each
 * thread owns COUNT slots of SIZE bytes, taken GRANULE bytes at a time in
 * turn with the other thread (granule 0: each thread its own half). Each
 * round writes the first and last byte of every slot, then reads the first
 * back, as bench/micro's batch1000 does with malloc and free. Prints
 * microseconds per round for each thread.
 *
 *   cc -O2 -pthread -o interleave interleave.c
 *   ./interleave SIZE GRANULE ROUNDS      (GRANULE a multiple of SIZE, or 0)
 *
 * Used in bench/analysis.md ("micro: batch1000 at 1 and 4 KiB, two
 * threads"). Not part of `make bench`.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

#define COUNT 1000

static size_t slot_size, granule;
static int rounds;
static char *mapping;
static pthread_barrier_t start_line;
static double us_per_round[2];

static double now_seconds(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec + now.tv_nsec * 1e-9;
}

/* Slot `i` of thread `id`. */
static char *slot_of(int id, size_t i)
{
    if (granule == 0)
        return mapping + ((size_t)id * COUNT + i) * slot_size;
    size_t per_granule = granule / slot_size;
    size_t index = (i / per_granule * 2 + (size_t)id) * per_granule + i % per_granule;
    return mapping + index * slot_size;
}

static void *run_rounds(void *argument)
{
    int id = (int)(size_t)argument;
    char *slots[COUNT];
    for (size_t i = 0; i < COUNT; i++)
        slots[i] = slot_of(id, i);
    pthread_barrier_wait(&start_line);
    double start = now_seconds();
    for (int round = 0; round < rounds; round++) {
        for (int i = 0; i < COUNT; i++) {
            slots[i][0] = 1;
            slots[i][slot_size - 1] = 1;
        }
        for (int i = 0; i < COUNT; i++)
            if (*(volatile char *)slots[i] != 1)
                abort();
    }
    us_per_round[id] = (now_seconds() - start) / rounds * 1e6;
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s SIZE GRANULE ROUNDS\n", argv[0]);
        return 2;
    }
    slot_size = strtoul(argv[1], NULL, 0);
    granule = strtoul(argv[2], NULL, 0);
    rounds = atoi(argv[3]);
    if (slot_size == 0 || (granule && granule % slot_size)) {
        fprintf(stderr, "GRANULE must be 0 or a multiple of SIZE\n");
        return 2;
    }
    size_t length = 2 * COUNT * slot_size + 2 * granule;
    mapping = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mapping == MAP_FAILED)
        return 1;
    pthread_t thread[2];
    pthread_barrier_init(&start_line, NULL, 2);
    for (int i = 0; i < 2; i++)
        pthread_create(&thread[i], NULL, run_rounds, (void *)(size_t)i);
    for (int i = 0; i < 2; i++)
        pthread_join(thread[i], NULL);
    printf("size %zu granule %zu: %.2f %.2f us a round\n", slot_size, granule, us_per_round[0],
           us_per_round[1]);
    return 0;
}
