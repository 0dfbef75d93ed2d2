/*
 * ring.h - a bounded single-producer single-consumer queue of blocks.
 *
 * Cross-thread hand-offs go through these rings: preallocated at phase
 * start (outside the allocator under test), lock-free, and with each side
 * caching the other's index so a push or pop usually touches only its own
 * cache line plus the slot.
 */
#ifndef STRESS_RING_H
#define STRESS_RING_H

#include "integrity.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

struct block_ring {
    _Alignas(64) atomic_size_t tail;    /* next slot to write (producer) */
    size_t cached_head;                 /* producer's last view of head */
    _Alignas(64) atomic_size_t head;    /* next slot to read (consumer) */
    size_t cached_tail;                 /* consumer's last view of tail */
    _Alignas(64) size_t mask;           /* capacity - 1, a power of two */
    struct block *slots;
};

/* `capacity` is rounded up to a power of two. */
void ring_init(struct block_ring *ring, size_t capacity);
void ring_destroy(struct block_ring *ring);

static inline bool ring_push(struct block_ring *ring, const struct block *block)
{
    size_t tail = atomic_load_explicit(&ring->tail, memory_order_relaxed);
    if (tail - ring->cached_head > ring->mask) {
        ring->cached_head = atomic_load_explicit(&ring->head, memory_order_acquire);
        if (tail - ring->cached_head > ring->mask)
            return false;
    }
    ring->slots[tail & ring->mask] = *block;
    atomic_store_explicit(&ring->tail, tail + 1, memory_order_release);
    return true;
}

static inline bool ring_pop(struct block_ring *ring, struct block *block)
{
    size_t head = atomic_load_explicit(&ring->head, memory_order_relaxed);
    if (head == ring->cached_tail) {
        ring->cached_tail = atomic_load_explicit(&ring->tail, memory_order_acquire);
        if (head == ring->cached_tail)
            return false;
    }
    *block = ring->slots[head & ring->mask];
    atomic_store_explicit(&ring->head, head + 1, memory_order_release);
    return true;
}

#endif
