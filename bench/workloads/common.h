/*
 * common.h - helpers shared by the benchmark workloads.
 *
 * Every workload is one small C program: its parameters come on the command
 * line, and it prints exactly one line starting with "result" made of
 * key=value fields (elapsed_s, ops_per_s, peak_rss_kb, ...), which
 * bench/run.py parses. The allocator is whatever malloc the process gets,
 * so LD_PRELOAD chooses it; the result line names the library that malloc
 * resolved to, so a run can never silently measure the wrong allocator.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* dladdr */
#endif

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Keeps the compiler from proving an allocation dead and removing the
 * malloc/free pair: the pointer "escapes" into an opaque asm statement. */
static inline void escape(void *pointer)
{
    __asm__ volatile("" : : "g"(pointer) : "memory");
}

static inline double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A field of /proc/self/status in kB (VmHWM = peak RSS, VmRSS = current). */
static inline long proc_status_kb(const char *field)
{
    FILE *status = fopen("/proc/self/status", "r");
    char line[256];
    size_t field_length = strlen(field);
    long value = -1;

    if (!status)
        return -1;
    while (fgets(line, sizeof line, status)) {
        if (strncmp(line, field, field_length) == 0 && line[field_length] == ':') {
            value = strtol(line + field_length + 1, NULL, 10);
            break;
        }
    }
    fclose(status);
    return value;
}

static inline long peak_rss_kb(void) { return proc_status_kb("VmHWM"); }
static inline long current_rss_kb(void) { return proc_status_kb("VmRSS"); }

/* xorshift64*: fast, deterministic per thread, no shared state (rand()
 * takes a lock in glibc and would dominate the allocator's cost). */
static inline uint64_t next_random(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static inline uint64_t seed_for(unsigned index)
{
    return 0x9E3779B97F4A7C15ULL * (index + 1) | 1;
}

/* A size between min and max (inclusive) drawn log-uniformly, so small
 * sizes are as common as in real programs while large ones still occur. */
static inline size_t random_size(uint64_t *state, size_t min, size_t max)
{
    if (min >= max)
        return min;
    unsigned min_bits = 63 - (unsigned)__builtin_clzll(min);
    unsigned max_bits = 63 - (unsigned)__builtin_clzll(max);
    unsigned bits = min_bits + (unsigned)(next_random(state) % (max_bits - min_bits + 1));
    size_t low = (size_t)1 << bits;
    size_t size = low + (size_t)(next_random(state) % low);
    if (size < min)
        size = min;
    if (size > max)
        size = max;
    return size;
}

/* Writes the first and last byte (and, for big blocks, one byte per page):
 * an allocator must really provide the memory, and reuse of warm memory
 * shows up as fewer page faults, as it would in a real program. */
static inline void touch(void *block, size_t size)
{
    volatile char *bytes = block;
    for (size_t offset = 0; offset < size; offset += 4096)
        bytes[offset] = (char)offset;
    bytes[size - 1] = 1;
}

/* The file name of the library malloc resolved to (after LD_PRELOAD). */
static inline const char *malloc_library(void)
{
    Dl_info info;
    const char *name;

    if (!dladdr((void *)malloc, &info) || !info.dli_fname)
        return "unknown";
    name = strrchr(info.dli_fname, '/');
    return name ? name + 1 : info.dli_fname;
}

static inline unsigned long parse_count(const char *text, const char *what)
{
    char *end;
    errno = 0;
    unsigned long value = strtoul(text, &end, 0);
    if (errno || *end || end == text) {
        fprintf(stderr, "bad %s: '%s'\n", what, text);
        exit(2);
    }
    return value;
}

static inline void *checked_malloc(size_t size)
{
    void *block = malloc(size);
    if (!block) {
        fprintf(stderr, "malloc(%zu) failed\n", size);
        exit(3);
    }
    return block;
}

static inline void *checked_calloc(size_t size)
{
    void *block = calloc(1, size);
    if (!block) {
        fprintf(stderr, "calloc(%zu) failed\n", size);
        exit(3);
    }
    return block;
}

static inline void start_thread(pthread_t *thread, void *(*body)(void *), void *argument)
{
    int error = pthread_create(thread, NULL, body, argument);
    if (error) {
        fprintf(stderr, "pthread_create: %s\n", strerror(error));
        exit(3);
    }
}

/* The one line bench/run.py reads; `extra` holds workload-specific fields. */
static inline void print_result(const char *workload, double elapsed, double ops,
                                const char *extra)
{
    printf("result workload=%s allocator=%s elapsed_s=%.6f ops=%.0f ops_per_s=%.1f "
           "peak_rss_kb=%ld%s%s\n",
           workload, malloc_library(), elapsed, ops, elapsed > 0 ? ops / elapsed : 0.0,
           peak_rss_kb(), extra && *extra ? " " : "", extra ? extra : "");
    fflush(stdout);
}

#endif /* BENCH_COMMON_H */
