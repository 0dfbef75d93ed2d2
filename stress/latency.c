/*
 * latency.c - histograms of sampled call latencies.
 */
#include "latency.h"
#include "clock.h"

static uint64_t clock_overhead_ns;

void latency_calibrate(void)
{
    uint64_t best = UINT64_MAX;
    for (int i = 0; i < 2000; i++) {
        uint64_t start = now_ns();
        uint64_t elapsed = now_ns() - start;
        if (elapsed < best)
            best = elapsed;
    }
    clock_overhead_ns = best;
}

uint64_t latency_clock_overhead_ns(void)
{
    return clock_overhead_ns;
}

static unsigned bucket_of(uint64_t ns)
{
    if (ns < (1u << SUB_BUCKET_BITS))
        return (unsigned)ns;
    unsigned top_bit = 63u - (unsigned)__builtin_clzll(ns);
    unsigned sub = (unsigned)(ns >> (top_bit - SUB_BUCKET_BITS)) & ((1u << SUB_BUCKET_BITS) - 1);
    return ((top_bit - SUB_BUCKET_BITS + 1) << SUB_BUCKET_BITS) + sub;
}

/* The largest latency that falls in `bucket`. */
static uint64_t bucket_upper_edge(unsigned bucket)
{
    if (bucket < (1u << SUB_BUCKET_BITS))
        return bucket;
    unsigned top_bit = (bucket >> SUB_BUCKET_BITS) + SUB_BUCKET_BITS - 1;
    uint64_t sub = bucket & ((1u << SUB_BUCKET_BITS) - 1);
    uint64_t low = (1ull << top_bit) | (sub << (top_bit - SUB_BUCKET_BITS));
    return low + (1ull << (top_bit - SUB_BUCKET_BITS)) - 1;
}

void histogram_record(struct histogram *histogram, uint64_t elapsed_ns)
{
    uint64_t ns = elapsed_ns > clock_overhead_ns ? elapsed_ns - clock_overhead_ns : 0;
    histogram->buckets[bucket_of(ns)]++;
    histogram->count++;
    if (ns > histogram->max_ns)
        histogram->max_ns = ns;
}

void histogram_merge(struct histogram *into, const struct histogram *from)
{
    for (unsigned i = 0; i < HISTOGRAM_BUCKETS; i++)
        into->buckets[i] += from->buckets[i];
    into->count += from->count;
    if (from->max_ns > into->max_ns)
        into->max_ns = from->max_ns;
}

uint64_t histogram_quantile(const struct histogram *histogram, double quantile)
{
    if (histogram->count == 0)
        return 0;
    uint64_t rank = (uint64_t)(quantile * (double)histogram->count);
    if (rank >= histogram->count)
        rank = histogram->count - 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HISTOGRAM_BUCKETS; i++) {
        seen += histogram->buckets[i];
        if (seen > rank) {
            uint64_t edge = bucket_upper_edge(i);
            return edge < histogram->max_ns ? edge : histogram->max_ns;
        }
    }
    return histogram->max_ns;
}
