/*
 * config.h - XMM_* environment variables, parsed once at init without
 * allocating. The table in config.c is the single list of variables;
 * man/variables.txt documents the same names (the README's table, xmm(3),
 * xmm-run), and tests/docs.sh checks that the two agree.
 */
#ifndef XMM_CONFIG_H
#define XMM_CONFIG_H

#include "common.h"

enum xmm_numa_mode {
    XMM_NUMA_LOCAL,      /* memory from the node of the CPU that asks */
    XMM_NUMA_INTERLEAVE, /* chunks interleaved over the allowed nodes */
    XMM_NUMA_BIND,       /* only from the nodes listed */
    XMM_NUMA_OFF,        /* one node's structures, no binding */
};

enum xmm_stats_format { XMM_STATS_NONE, XMM_STATS_TEXT, XMM_STATS_JSON };
enum xmm_thp_mode { XMM_THP_AUTO, XMM_THP_NEVER, XMM_THP_ALWAYS };
/* XMM_BACKGROUND: the decay thread (global/upkeep.h). */
enum xmm_background_mode {
    XMM_BACKGROUND_AUTO,  /* started once the heap is large (default) */
    XMM_BACKGROUND_OFF,   /* never: upkeep on allocation paths only */
    XMM_BACKGROUND_ON,    /* started at init */
};
/* Which rseq area the per-CPU caches may use. The C library owns rseq
 * registration (one area per thread, in the kernel's ABI): XMM uses glibc's
 * area and registers its own only when asked, since
 * GLIBC_TUNABLES=glibc.pthread.rseq=0 exists to leave registration to
 * another component of the program. */
enum xmm_rseq_mode {
    XMM_RSEQ_OFF,       /* per-thread caches */
    XMM_RSEQ_LIBC,      /* glibc's area if registered, else per-thread caches */
    XMM_RSEQ_OWN,       /* glibc's area, else one XMM registers per thread */
};

struct xmm_config {
    enum xmm_numa_mode numa_mode;
    uint64_t bind_nodes;          /* XMM_NUMA=bind:LIST */
    size_t cpu_cache_bytes;       /* XMM_CPU_CACHE_SIZE, per CPU */
    size_t thread_cache_bytes;    /* XMM_THREAD_CACHE_SIZE, per thread */
    enum xmm_rseq_mode rseq;      /* XMM_RSEQ */
    uint64_t decay_ms;            /* XMM_DECAY_MS */
    bool purge_lazy;              /* XMM_PURGE=free (MADV_FREE) */
    enum xmm_background_mode background; /* XMM_BACKGROUND */
    enum xmm_thp_mode thp;        /* XMM_THP */
    enum xmm_stats_format stats_at_exit; /* XMM_STATS */
    const char *stats_file;       /* XMM_STATS_FILE */
    int stats_signal;             /* XMM_STATS_SIGNAL, 0 = none */
    /* The heap profiler (global/profile.h). Sampling is on when
     * profile_interval is not 0: XMM_PROFILE, or XMM_LEAKS or
     * XMM_PROFILE_SIGNAL alone (then at XMM_PROFILE_DEFAULT_INTERVAL). */
    size_t profile_interval;      /* mean bytes between samples; 0: off */
    bool profile_at_exit;         /* XMM_PROFILE: a dump at exit */
    const char *profile_file;     /* XMM_PROFILE_FILE (NULL: the default) */
    int profile_signal;           /* XMM_PROFILE_SIGNAL, 0 = none */
    bool leaks;                   /* XMM_LEAKS: the leak report at exit */
    bool invalid_free_abort;      /* XMM_INVALID_FREE */
    bool free_deferred;           /* XMM_FREE_CHECK */
    bool verbose;                 /* XMM_VERBOSE */
    bool strict;                  /* XMM_STRICT */
};

extern XMM_HIDDEN struct xmm_config xmm_config;

/* XMM_PROFILE=1: one sample per 512 KiB allocated on average, TCMalloc's
 * default (and jemalloc's lg_prof_sample of 19). */
#define XMM_PROFILE_DEFAULT_INTERVAL ((size_t)512 << 10)
/* Bounds of XMM_PROFILE=<bytes>. */
#define XMM_PROFILE_MAX_INTERVAL ((size_t)1 << 30)
/* How long exit waits for a report or dump that a signal asked for just
 * before (XMM_STATS_SIGNAL, XMM_PROFILE_SIGNAL). */
#define XMM_EXIT_REPORT_WAIT_NS ((uint64_t)1000000000)
/* Where dumps go when XMM_PROFILE_FILE is not set. */
#define XMM_PROFILE_DEFAULT_FILE "xmm.%p.heap"

/* Reads every XMM_* variable; reports malformed and unknown ones (fatal
 * with XMM_STRICT=1). Called once, early in init. */
void xmm_config_read(void);

/* Writes the effective configuration (XMM_VERBOSE=1) to stderr. */
void xmm_config_print(void);

/* The decay period (XMM_DECAY_MS) in nanoseconds: free memory unused for
 * this long is given back. Upkeep of each layer runs at most once per
 * half period (xmm_upkeep_period_ns), so nothing waits more than one and a
 * half periods. */
XMM_INLINE uint64_t xmm_decay_period_ns(void)
{
    return xmm_config.decay_ms * 1000000;
}

XMM_INLINE uint64_t xmm_upkeep_period_ns(void)
{
    return xmm_decay_period_ns() / 2;
}

#endif
