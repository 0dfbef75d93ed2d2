/*
 * procfs.h - the process's memory use, from /proc/self.
 *
 * Read with open/read into stack buffers: no stdio, no malloc, so sampling
 * RSS does not perturb the allocator being measured.
 */
#ifndef STRESS_PROCFS_H
#define STRESS_PROCFS_H

#include <stdint.h>

/* Resident set size now, in bytes (from /proc/self/statm); 0 if unknown. */
uint64_t current_rss_bytes(void);
/* Peak resident set size, in KiB (VmHWM in /proc/self/status). */
uint64_t peak_rss_kib(void);
/* Resets the peak to the current RSS (writes 5 to /proc/self/clear_refs),
 * so each phase reports its own peak. Returns 0, or -1 if not permitted. */
int reset_peak_rss(void);

#endif
