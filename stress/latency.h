/*
 * latency.h - log-bucket latency histograms.
 *
 * One call in SAMPLE_EVERY is timed (clock_gettime through the vDSO, about
 * 20 ns, with that overhead calibrated away), so timing costs little. A
 * histogram has 8 buckets per power of two: percentiles are exact below
 * 8 ns and within 12.5% above; the maximum is exact.
 */
#ifndef STRESS_LATENCY_H
#define STRESS_LATENCY_H

#include <stdbool.h>
#include <stdint.h>

#define SAMPLE_EVERY 64
#define SUB_BUCKET_BITS 3
#define HISTOGRAM_BUCKETS (64 << SUB_BUCKET_BITS)

struct histogram {
    uint64_t count;
    uint64_t max_ns;
    uint64_t buckets[HISTOGRAM_BUCKETS];
};

/* Measures the cost of reading the clock, subtracted from every sample. */
void latency_calibrate(void);
uint64_t latency_clock_overhead_ns(void);

void histogram_record(struct histogram *histogram, uint64_t elapsed_ns);
void histogram_merge(struct histogram *into, const struct histogram *from);
/* The latency below which `quantile` (0..1) of the samples fall: the upper
 * edge of the bucket holding that sample. 0 when empty. */
uint64_t histogram_quantile(const struct histogram *histogram, double quantile);

/* True once every SAMPLE_EVERY calls: whether to time this one. */
static inline bool sample_due(unsigned *tick)
{
    return (++*tick & (SAMPLE_EVERY - 1)) == 0;
}

#endif
