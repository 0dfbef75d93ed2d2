/*
 * mem/ - layer 4: small objects. The per-node central span sets and
 * transfer batches (central.h), and the front end in front of them
 * (front_end.h): per-CPU caches on rseq, or per-thread caches. Depends on
 * backend/, ds/ and base/.
 *
 * This header is the layer's interface: files outside mem/ include it,
 * never the headers it includes.
 */
#ifndef XMM_MEM_H
#define XMM_MEM_H

#include "central.h"
#include "front_end.h" /* with cpu_cache.h, thread_cache.h, cache_stats.h */

#endif
