/*
 * patterns.h - the allocation patterns a worker thread runs.
 */
#ifndef STRESS_PATTERNS_H
#define STRESS_PATTERNS_H

#include "phase.h"

/* Runs the phase's pattern until the worker must stop, then frees what it
 * still holds (unless the run failed). Sets worker->loop_end_ns. */
void run_pattern(struct worker *worker);

/* Pops up to `limit` blocks from `ring`, checks and frees them. Returns
 * how many were popped. */
size_t drain_ring(struct worker *worker, struct block_ring *ring, size_t limit);

#endif
