/*
 * trim_stress.h - for stress tests of the per-CPU caches under releases:
 *
 *   tagged_round(held, count, size, step, tag)
 *       mallocs `count` blocks of `size` into `held`, writes `tag` ^ i into
 *       every `step`-th word of block i, checks those words, frees the
 *       blocks; returns how many were missing or changed (handed out to
 *       another thread too, or written under their holder).
 *   tagged_size_rounds(rounds, count, step, tag, bad)
 *       `rounds` rounds of tagged_round over six sizes from 16 B to 20 KiB
 *       (small classes, a remote-bin class, page classes, a multi-page
 *       one), `count` blocks each (at most TRIM_STRESS_MOST_BLOCKS), the
 *       tag changing with the round; adds the failures to *bad.
 *   trim_stress_run(threads, worker)
 *       starts `threads` threads running `worker`, each with a tag of its
 *       own as argument, and trims (malloc_trim, a release of every CPU's
 *       cache) every millisecond until all have finished; returns the
 *       trims done.
 */
#ifndef XMM_TEST_TRIM_STRESS_H
#define XMM_TEST_TRIM_STRESS_H

#include <malloc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "check.h"

#define TRIM_STRESS_MOST_THREADS 16

__attribute__((unused)) static unsigned long tagged_round(void **held, int count, size_t size,
                                                          size_t step, uintptr_t tag)
{
    unsigned long bad = 0;
    for (int i = 0; i < count; i++) {
        held[i] = malloc(size);
        if (held[i])
            for (size_t word = 0; word < size / 8; word += step)
                ((uintptr_t *)held[i])[word] = tag ^ (uintptr_t)i;
    }
    for (int i = 0; i < count; i++) {
        bool intact = held[i] != NULL;
        for (size_t word = 0; intact && word < size / 8; word += step)
            intact = ((uintptr_t *)held[i])[word] == (tag ^ (uintptr_t)i);
        bad += !intact;
        free(held[i]);
    }
    return bad;
}

#define TRIM_STRESS_MOST_BLOCKS 64

__attribute__((unused)) static void tagged_size_rounds(int rounds, int count, size_t step,
                                                       uintptr_t tag, unsigned long *bad)
{
    static const size_t sizes[] = {16, 48, 128, 720, 3072, 20480};
    void *held[TRIM_STRESS_MOST_BLOCKS];
    if (count > TRIM_STRESS_MOST_BLOCKS)
        count = TRIM_STRESS_MOST_BLOCKS;
    for (int round = 0; round < rounds; round++)
        for (unsigned i = 0; i < sizeof sizes / sizeof *sizes; i++)
            __atomic_add_fetch(bad,
                               tagged_round(held, count, sizes[i], step, tag + (uintptr_t)round),
                               __ATOMIC_RELAXED);
}

__attribute__((unused)) static unsigned trim_stress_run(int threads, void *(*worker)(void *))
{
    pthread_t started[TRIM_STRESS_MOST_THREADS];
    bool joined[TRIM_STRESS_MOST_THREADS] = {false};
    if (threads > TRIM_STRESS_MOST_THREADS)
        threads = TRIM_STRESS_MOST_THREADS;
    for (int i = 0; i < threads; i++)
        CHECKQ(pthread_create(&started[i], NULL, worker,
                              (void *)(0x5a5a0000u + ((uintptr_t)i << 40))) == 0,
               "thread started");
    struct timespec millisecond = {0, 1000000};
    unsigned trims = 0;
    int finished = 0;
    while (finished < threads) {
        malloc_trim(0);
        trims++;
        nanosleep(&millisecond, NULL);
        for (int i = 0; i < threads; i++)
            if (!joined[i] && pthread_tryjoin_np(started[i], NULL) == 0) {
                joined[i] = true;
                finished++;
            }
    }
    return trims;
}

#endif
