/*
 * options.h - xmm-stress's command line.
 */
#ifndef STRESS_OPTIONS_H
#define STRESS_OPTIONS_H

#include "sizes.h"

#include <stdbool.h>
#include <stdint.h>

enum pattern_id {
    PATTERN_PAIRS,
    PATTERN_BATCH,
    PATTERN_PRODUCER_CONSUMER,
    PATTERN_CHURN,
    PATTERN_REALLOC,
    PATTERN_SERVER,
    PATTERN_COUNT
};

#define PATTERN_LIST_MAX 32
#define DEFAULT_SECONDS 10.0
#define DEFAULT_LIVE_MIB 32
#define MAX_THREADS 4096

extern const char *const pattern_names[PATTERN_COUNT];

struct stress_options {
    unsigned threads;
    double seconds;             /* run length; 0 when --ops is given */
    uint64_t ops;               /* allocations in total; 0 when timed */
    struct size_distribution sizes;
    enum pattern_id patterns[PATTERN_LIST_MAX];
    unsigned pattern_count;
    char pattern_text[128];     /* as given: "all", "server,churn" */
    uint64_t live_bytes;        /* working set of churn, server, realloc */
    bool pin;
    bool json;
    bool corrupt;
    uint64_t seed;
    const char *alloc;          /* "glibc", "xmm" or a path */
};

/* Fills `options` from the command line. Prints a one-line error and exits
 * with status 2 on a bad argument; prints the help and exits 0 on --help. */
void options_parse(int argc, char **argv, struct stress_options *options);

/* Prints "xmm-stress: OPTION: MESSAGE" on stderr and exits with status 2. */
void usage_error(const char *option, const char *format, ...)
    __attribute__((noreturn, format(printf, 2, 3)));

#endif
