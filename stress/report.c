/*
 * report.c - text and JSON summaries, and XMM's own statistics when the
 * process runs on XMM (found with dlsym, so any allocator works).
 */
#include "report.h"
#include "harness_memory.h"
#include "integrity.h"
#include "xmm.h"

#include <dlfcn.h>
#include <string.h>

typedef int (*stats_print_fn)(int fd, const char *format);
typedef int (*stats_get_fn)(struct xmm_stats *stats);

struct totals {
    double seconds;
    uint64_t allocs, frees, checked, peak_rss_kib;
    struct histogram malloc_ns, free_ns, realloc_ns;
};

static void sum_phases(const struct run_result *result, struct totals *totals)
{
    memset(totals, 0, sizeof *totals);
    for (unsigned i = 0; i < result->phase_count; i++) {
        const struct phase_result *phase = &result->phases[i];
        totals->seconds += phase->seconds;
        totals->allocs += phase->allocs;
        totals->frees += phase->frees;
        totals->checked += phase->checked;
        if (phase->peak_rss_kib > totals->peak_rss_kib)
            totals->peak_rss_kib = phase->peak_rss_kib;
        histogram_merge(&totals->malloc_ns, &phase->malloc_ns);
        histogram_merge(&totals->free_ns, &phase->free_ns);
        histogram_merge(&totals->realloc_ns, &phase->realloc_ns);
    }
}

static double per_second(uint64_t count, double seconds)
{
    return seconds > 0 ? (double)count / seconds : 0;
}

static const char *verdict(void)
{
    return failure_kind() == FAILURE_CORRUPTION ? "corrupt" : "ok";
}

/* ---- text ------------------------------------------------------------------ */

/* 12345678 -> "12.3 M": throughput at a glance. */
static const char *format_count(double value, char *text, size_t size)
{
    if (value >= 1e9)
        snprintf(text, size, "%.2f G", value / 1e9);
    else if (value >= 1e6)
        snprintf(text, size, "%.2f M", value / 1e6);
    else if (value >= 1e3)
        snprintf(text, size, "%.1f k", value / 1e3);
    else
        snprintf(text, size, "%.0f", value);
    return text;
}

static const char *format_ns(uint64_t ns, char *text, size_t size)
{
    if (ns >= 1000000)
        snprintf(text, size, "%.2f ms", (double)ns / 1e6);
    else if (ns >= 10000)
        snprintf(text, size, "%.1f us", (double)ns / 1e3);
    else
        snprintf(text, size, "%llu ns", (unsigned long long)ns);
    return text;
}

static void print_latency(FILE *out, const char *label, const struct histogram *histogram)
{
    char p50[24], p99[24], p999[24], max[24], samples[24];
    if (histogram->count == 0)
        return;
    fprintf(out, "%-12s p50 %s, p99 %s, p99.9 %s, max %s (%s samples, 1 call in %d)\n", label,
            format_ns(histogram_quantile(histogram, 0.50), p50, sizeof p50),
            format_ns(histogram_quantile(histogram, 0.99), p99, sizeof p99),
            format_ns(histogram_quantile(histogram, 0.999), p999, sizeof p999),
            format_ns(histogram->max_ns, max, sizeof max),
            format_count((double)histogram->count, samples, sizeof samples), SAMPLE_EVERY);
}

static void print_phase_table(FILE *out, const struct run_result *result)
{
    char allocs[24], rate[24], per_thread[24], malloc_p99[24], free_p99[24];
    fprintf(out, "\n%-18s %8s %10s %10s %11s %11s %11s %10s\n", "pattern", "seconds", "allocs",
            "allocs/s", "per thread", "malloc p99", "free p99", "peak RSS");
    for (unsigned i = 0; i < result->phase_count; i++) {
        const struct phase_result *phase = &result->phases[i];
        double phase_rate = per_second(phase->allocs, phase->seconds);
        fprintf(out, "%-18s %8.2f %10s %10s %11s %11s %11s %6.1f MiB%s\n",
                pattern_names[phase->pattern], phase->seconds,
                format_count((double)phase->allocs, allocs, sizeof allocs),
                format_count(phase_rate, rate, sizeof rate),
                format_count(phase_rate / phase->threads, per_thread, sizeof per_thread),
                format_ns(histogram_quantile(&phase->malloc_ns, 0.99), malloc_p99, sizeof malloc_p99),
                format_ns(histogram_quantile(&phase->free_ns, 0.99), free_p99, sizeof free_p99),
                (double)phase->peak_rss_kib / 1024.0, phase->completed ? "" : "  (stopped)");
    }
    fputc('\n', out);
}

static void print_verdict(FILE *out, const struct run_result *result, const struct totals *totals)
{
    if (failure_kind() == FAILURE_CORRUPTION)
        fprintf(out, "integrity: CORRUPT (%s)\n", failure_message());
    else
        fprintf(out, "integrity: OK (%llu blocks checked)\n", (unsigned long long)totals->checked);
    if (failure_kind() == FAILURE_ALLOCATION)
        fprintf(out, "allocation failure: %s\n", failure_message());
    if (result->interrupted)
        fprintf(out, "interrupted after %.1f s\n", totals->seconds);
}

/* XMM's own view (caches, spans, purged bytes), when the process runs on
 * XMM; any other allocator lacks the symbol. */
static void print_xmm_stats(FILE *out)
{
    stats_print_fn print_stats = (stats_print_fn)dlsym(RTLD_DEFAULT, "xmm_stats_print");
    if (!print_stats)
        return;
    fputs("\nXMM statistics:\n", out);
    fflush(out);
    if (print_stats(fileno(out), "text") != 0)
        fputs("(xmm_stats_print failed)\n", out);
}

void report_text(FILE *out, const struct run_result *result)
{
    const struct stress_options *options = result->options;
    struct totals totals;
    char allocs[24], frees[24], rate[24], per_thread[24];
    sum_phases(result, &totals);
    fprintf(out, "xmm-stress on %s%s%s%s: pattern %s, %u threads%s, sizes %s, live %llu MiB, "
            "seed %llu\n", result->allocator, result->library[0] ? " (" : "", result->library,
            result->library[0] ? ")" : "", options->pattern_text, options->threads,
            options->pin ? " (pinned)" : "", options->sizes.name,
            (unsigned long long)(options->live_bytes >> 20), (unsigned long long)result->seed);
    if (result->phase_count > 1)
        print_phase_table(out, result);
    double total_rate = per_second(totals.allocs, totals.seconds);
    fprintf(out, "%-12s %s allocations, %s frees in %.2f s\n", "ops:",
            format_count((double)totals.allocs, allocs, sizeof allocs),
            format_count((double)totals.frees, frees, sizeof frees), totals.seconds);
    fprintf(out, "%-12s %s total, %s per thread\n", "allocs/s:",
            format_count(total_rate, rate, sizeof rate),
            format_count(total_rate / options->threads, per_thread, sizeof per_thread));
    print_latency(out, "malloc:", &totals.malloc_ns);
    print_latency(out, "free:", &totals.free_ns);
    print_latency(out, "realloc:", &totals.realloc_ns);
    fprintf(out, "%-12s %.1f MiB (of which up to %.1f MiB is the harness's own bookkeeping)\n",
            "peak RSS:", (double)totals.peak_rss_kib / 1024.0,
            (double)harness_peak_bytes() / 1048576.0);
    print_verdict(out, result, &totals);
    print_xmm_stats(out);
}

/* ---- JSON ------------------------------------------------------------------- */

static void json_string(FILE *out, const char *text)
{
    fputc('"', out);
    for (const unsigned char *c = (const unsigned char *)text; *c; c++) {
        if (*c == '"' || *c == '\\')
            fprintf(out, "\\%c", *c);
        else if (*c < 0x20)
            fprintf(out, "\\u%04x", *c);
        else
            fputc(*c, out);
    }
    fputc('"', out);
}

static void json_latency(FILE *out, const char *name, const struct histogram *histogram)
{
    fprintf(out, "  \"%s_p50_ns\": %llu,\n  \"%s_p99_ns\": %llu,\n  \"%s_p999_ns\": %llu,\n"
            "  \"%s_max_ns\": %llu,\n  \"%s_samples\": %llu,\n",
            name, (unsigned long long)histogram_quantile(histogram, 0.50),
            name, (unsigned long long)histogram_quantile(histogram, 0.99),
            name, (unsigned long long)histogram_quantile(histogram, 0.999),
            name, (unsigned long long)histogram->max_ns,
            name, (unsigned long long)histogram->count);
}

static void json_phase(FILE *out, const struct phase_result *phase, bool last)
{
    double rate = per_second(phase->allocs, phase->seconds);
    fprintf(out, "    {\"pattern\": \"%s\", \"seconds\": %.6f, \"ops\": %llu, \"frees\": %llu, "
            "\"allocs_per_sec\": %.0f, \"per_thread_allocs_per_sec\": %.0f, "
            "\"malloc_p50_ns\": %llu, \"malloc_p99_ns\": %llu, \"malloc_max_ns\": %llu, "
            "\"free_p50_ns\": %llu, \"free_p99_ns\": %llu, \"free_max_ns\": %llu, "
            "\"peak_rss_kib\": %llu, \"blocks_checked\": %llu, \"completed\": %s}%s\n",
            pattern_names[phase->pattern], phase->seconds, (unsigned long long)phase->allocs,
            (unsigned long long)phase->frees, rate, rate / phase->threads,
            (unsigned long long)histogram_quantile(&phase->malloc_ns, 0.50),
            (unsigned long long)histogram_quantile(&phase->malloc_ns, 0.99),
            (unsigned long long)phase->malloc_ns.max_ns,
            (unsigned long long)histogram_quantile(&phase->free_ns, 0.50),
            (unsigned long long)histogram_quantile(&phase->free_ns, 0.99),
            (unsigned long long)phase->free_ns.max_ns,
            (unsigned long long)phase->peak_rss_kib, (unsigned long long)phase->checked,
            phase->completed ? "true" : "false", last ? "" : ",");
}

static void json_xmm_stats(FILE *out)
{
    stats_get_fn get_stats = (stats_get_fn)dlsym(RTLD_DEFAULT, "xmm_stats_get");
    struct xmm_stats stats;
    memset(&stats, 0, sizeof stats);
    stats.version = XMM_STATS_VERSION;
    if (!get_stats || get_stats(&stats) != 0) {
        fputs("  \"xmm_stats\": null,\n", out);
        return;
    }
    stats.front_end[sizeof stats.front_end - 1] = '\0';
#define STAT(field) fprintf(out, "\"" #field "\": %llu, ", (unsigned long long)stats.field)
    fputs("  \"xmm_stats\": {", out);
    STAT(node_count); STAT(allocations); STAT(frees); STAT(bytes_in_use);
    STAT(bytes_reserved); STAT(bytes_committed); STAT(bytes_purged); STAT(bytes_cached);
    STAT(bytes_central); STAT(bytes_page_heap_free); STAT(large_allocations);
    STAT(cross_node_frees); STAT(invalid_frees); STAT(cache_refills); STAT(cache_drains);
    STAT(rseq_fast_path); STAT(rseq_fallback); STAT(metadata_bytes);
#undef STAT
    fputs("\"front_end\": ", out);
    json_string(out, stats.front_end);
    fputs("},\n", out);
}

static void json_header(FILE *out, const struct run_result *result)
{
    const struct stress_options *options = result->options;
    fputs("{\n  \"allocator\": ", out);
    json_string(out, result->allocator);
    fputs(",\n  \"library\": ", out);
    json_string(out, result->library);
    fputs(",\n  \"pattern\": ", out);
    json_string(out, options->pattern_text);
    fprintf(out, ",\n  \"threads\": %u,\n  \"pinned\": %s,\n  \"sizes\": ", options->threads,
            options->pin ? "true" : "false");
    json_string(out, options->sizes.name);
    fprintf(out, ",\n  \"live_mib\": %llu,\n  \"seed\": %llu,\n",
            (unsigned long long)(options->live_bytes >> 20), (unsigned long long)result->seed);
}

static void json_verdict(FILE *out, const struct run_result *result, const struct totals *totals)
{
    fprintf(out, "  \"integrity\": \"%s\",\n  \"blocks_checked\": %llu,\n", verdict(),
            (unsigned long long)totals->checked);
    fprintf(out, "  \"allocation_failed\": %s,\n  \"interrupted\": %s,\n  \"failure\": ",
            failure_kind() == FAILURE_ALLOCATION ? "true" : "false",
            result->interrupted ? "true" : "false");
    if (failure_message())
        json_string(out, failure_message());
    else
        fputs("null", out);
    fputs(",\n", out);
}

void report_json(FILE *out, const struct run_result *result)
{
    struct totals totals;
    sum_phases(result, &totals);
    double rate = per_second(totals.allocs, totals.seconds);
    json_header(out, result);
    fprintf(out, "  \"seconds\": %.6f,\n  \"ops\": %llu,\n  \"frees\": %llu,\n"
            "  \"allocs_per_sec\": %.0f,\n  \"per_thread_allocs_per_sec\": %.0f,\n",
            totals.seconds, (unsigned long long)totals.allocs, (unsigned long long)totals.frees,
            rate, rate / result->options->threads);
    json_latency(out, "malloc", &totals.malloc_ns);
    json_latency(out, "free", &totals.free_ns);
    json_latency(out, "realloc", &totals.realloc_ns);
    fprintf(out, "  \"peak_rss_kib\": %llu,\n  \"harness_kib\": %llu,\n",
            (unsigned long long)totals.peak_rss_kib,
            (unsigned long long)(harness_peak_bytes() >> 10));
    json_verdict(out, result, &totals);
    json_xmm_stats(out);
    fputs("  \"phases\": [\n", out);
    for (unsigned i = 0; i < result->phase_count; i++)
        json_phase(out, &result->phases[i], i + 1 == result->phase_count);
    fputs("  ]\n}\n", out);
}
