/*
 * harness_memory.h - memory for the harness's own bookkeeping.
 *
 * Slot arrays, rings and per-thread state come straight from mmap, not
 * from malloc: the allocator under test then sees only the workload (its
 * statistics and latencies are about that), and a buggy allocator cannot
 * overwrite the records the harness checks blocks against.
 */
#ifndef STRESS_HARNESS_MEMORY_H
#define STRESS_HARNESS_MEMORY_H

#include <stddef.h>

/* Zeroed memory; exits with status 1 if the kernel refuses. */
void *harness_map(size_t bytes);
void harness_unmap(void *memory, size_t bytes);

/* The most bookkeeping memory mapped at once, in bytes: part of the peak
 * RSS that belongs to the harness, not to the allocator under test. */
size_t harness_peak_bytes(void);

#endif
