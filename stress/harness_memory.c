/*
 * harness_memory.c - mmap-backed bookkeeping memory, and ring setup.
 */
#include "harness_memory.h"
#include "ring.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static atomic_size_t mapped_bytes, peak_mapped_bytes;

static void count_mapped(size_t bytes)
{
    size_t now = atomic_fetch_add(&mapped_bytes, bytes) + bytes;
    size_t peak = atomic_load(&peak_mapped_bytes);
    while (now > peak && !atomic_compare_exchange_weak(&peak_mapped_bytes, &peak, now))
        ;
}

size_t harness_peak_bytes(void)
{
    return atomic_load(&peak_mapped_bytes);
}

void *harness_map(size_t bytes)
{
    void *memory = mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (memory == MAP_FAILED) {
        fprintf(stderr, "xmm-stress: cannot map %zu bytes for bookkeeping: %s\n", bytes,
                strerror(errno));
        exit(1);
    }
    count_mapped(bytes);
    return memory;
}

void harness_unmap(void *memory, size_t bytes)
{
    if (!memory)
        return;
    munmap(memory, bytes ? bytes : 1);
    atomic_fetch_sub(&mapped_bytes, bytes);
}

void ring_init(struct block_ring *ring, size_t capacity)
{
    size_t rounded = 1;
    while (rounded < capacity)
        rounded <<= 1;
    atomic_init(&ring->tail, 0);
    atomic_init(&ring->head, 0);
    ring->cached_head = 0;
    ring->cached_tail = 0;
    ring->mask = rounded - 1;
    ring->slots = harness_map(rounded * sizeof *ring->slots);
}

void ring_destroy(struct block_ring *ring)
{
    harness_unmap(ring->slots, (ring->mask + 1) * sizeof *ring->slots);
    ring->slots = NULL;
}
