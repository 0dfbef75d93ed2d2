/*
 * profile.h - the sampling heap profiler: XMM_PROFILE, XMM_PROFILE_FILE,
 * XMM_PROFILE_SIGNAL, XMM_LEAKS, xmm_profile_dump.
 *
 * Samples ride on the allocation tick (upkeep.h): each thread counts down
 * the bytes it requests from an exponential interval of mean
 * XMM_PROFILE's interval, and the request that crosses zero is sampled
 * (so a request of s bytes is sampled with probability 1 - e^(-s/T), and
 * stands for 1 / (1 - e^(-s/T)) requests, as in TCMalloc's sampler). A
 * sampled request, small or large, is served as a block of whole pages of
 * its own whose descriptor (span or direct region) points to its record
 * here; its free, which takes the large-block path for that reason, hands
 * the record back. Small blocks that are not sampled never meet the
 * profiler: their free path is unchanged.
 *
 * Records and the table of distinct stacks live in allocator metadata
 * (and one mapping for the hash buckets), under one lock (init.c's lock
 * table); recording a stack never calls malloc.
 */
#ifndef XMM_PROFILE_H
#define XMM_PROFILE_H

#include "base/base.h"

/* Whether allocations are sampled (XMM_PROFILE, XMM_LEAKS or
 * XMM_PROFILE_SIGNAL). */
XMM_INLINE bool xmm_profile_on(void)
{
    return xmm_config.profile_interval != 0;
}

/* A sample's record: opaque outside profile.c; span and region
 * descriptors hold it as a void pointer. */
struct xmm_profile_sample;

/* Records a sample of a request of `size` bytes made by the calling
 * thread now (its stack, without XMM's own frames). NULL when no sample
 * can be taken: the profiler is not ready (before init phase 2), the
 * thread is already recording (an allocation from the unwinder itself, or
 * a signal handler that interrupted it), the profile lock is the calling
 * thread's own (a signal handler), or metadata is exhausted. The caller
 * then serves the request as an ordinary, unsampled one. Never calls
 * malloc. */
struct xmm_profile_sample *xmm_profile_record(size_t size);

/* The sampled block of `sample` was freed (by the free that claimed it):
 * the record leaves the profile. Returns the size it was recorded with. */
size_t xmm_profile_forget(struct xmm_profile_sample *sample);

/* Writes the heap profile (legacy gperftools text format, with
 * MAPPED_LIBRARIES) to `path`, replacing the file; NULL: XMM_PROFILE_FILE
 * with %p, %e and %% expanded (default xmm.%p.heap). 0, or -1 with errno:
 * ENOTSUP (sampling is off), ENAMETOOLONG (the expanded path), ENOMEM,
 * EDEADLK (called from a signal handler that interrupted the profiler),
 * or open(2)'s and write(2)'s errors. Any thread; not inside malloc. */
int xmm_profile_write(const char *path);

/* Init phase 2 (malloc allowed): primes the unwinder (its first call
 * allocates), finds XMM's own code, makes the stack table, then installs
 * the exit dump (XMM_PROFILE), the leak report (XMM_LEAKS) and the
 * XMM_PROFILE_SIGNAL thread. Sampling starts when it returns. */
void xmm_profile_init_hooks(void);

/* In a fork child: a table whose lock a lost thread held is set aside
 * and the profile starts empty (init.c). */
void xmm_profile_after_fork_child(void);

#endif
