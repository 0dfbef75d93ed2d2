/*
 * central.h - per node and size class: ready transfer batches and the set
 * of spans with free objects, both on lock-free CK stacks. The front ends
 * refill from here and drain to here, a batch at a time.
 */
#ifndef XMM_CENTRAL_H
#define XMM_CENTRAL_H

#include "base/base.h"
#include "ds/ds.h"

#define XMM_MAX_BATCH 32

/* Creates every node's central lists. 0 or -1. */
int xmm_central_init(void);

/* Fills `out` with up to `wanted` (<= XMM_MAX_BATCH) objects of
 * `size_class` from `node`. Returns how many; 0 only when the kernel
 * refuses memory. Lock-free except when a new span is needed. */
unsigned xmm_central_refill(int node, unsigned size_class, void **out, unsigned wanted);

/* Takes back `count` (<= XMM_MAX_BATCH) free objects of `size_class`, all
 * of home node `node`. Lock-free. */
void xmm_central_drain(int node, unsigned size_class, void *const *objects, unsigned count);

/* Gives one free object back to its span, found through the address map
 * (the object must be a live small block's, now free). */
void xmm_central_return_object(void *object);

/* Moves every transfer batch back to its spans and gives spans with no
 * object in use back to the page heap. Returns the bytes released. */
size_t xmm_central_release_all(void);

/* Periodic upkeep from slow paths: releases spans found empty. */
void xmm_central_maintain(int node);

struct xmm_central_stats {
    uint64_t spans_created;
    uint64_t spans_released;
    uint64_t batches_cached;     /* transfer batches on the stacks */
    uint64_t objects_in_batches_bytes;
    uint64_t span_bytes;         /* bytes of spans of small objects */
    uint64_t small_out_bytes;    /* objects held by front ends and the program */
};
void xmm_central_stats(int node, struct xmm_central_stats *stats);

/* Objects of `size_class` out of the central layer on every node (in a
 * front end's cache or held by the program): exact when no thread is
 * allocating. */
uint64_t xmm_central_objects_out(unsigned size_class);

#endif
