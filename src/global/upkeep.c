/*
 * upkeep.c - the layers' maintenance, run from one place (see upkeep.h).
 *
 * The background thread takes only the per-node page heap locks, never a
 * lock of a fast path. A child of fork() has no such thread: it starts its
 * own by the same rule as the parent did (xmm_upkeep_consider_background).
 */
#include "base/base.h"
#include "backend/backend.h"
#include "mem/mem.h"
#include "ds/ds.h"
#include "free.h"
#include "upkeep.h"

/* The thread's generator of tick intervals (0: not seeded yet, and the
 * countdown not started: the thread's first request starts it). */
static __thread uint64_t tick_random __attribute__((tls_model("initial-exec")));

/* Per class, on separate lines from anything of the hit paths; written once
 * per tick. */
static struct {
    uint64_t requests;
    uint64_t bytes;
} sampled[XMM_CLASS_COUNT] XMM_CACHE_ALIGNED;

/* ln(m) for m in [1, 2): 2 atanh((m - 1) / (m + 1)), four terms (error
 * below 1e-4, plenty for a sampling interval). No libm in the allocator. */
static double log_mantissa(double m)
{
    double t = (m - 1) / (m + 1), t2 = t * t;
    return 2 * t * (1 + t2 * (1.0 / 3 + t2 * (1.0 / 5 + t2 * (1.0 / 7))));
}

/* The next interval, in bytes: exponential with mean xmm_tick_mean() (a
 * Poisson process over the bytes a thread requests, as TCMalloc's sampler
 * draws them). Fixed intervals would alias with a program's periodic
 * pattern of sizes and credit one size class with everything. */
static int64_t next_interval(void)
{
    uint64_t x = tick_random;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    tick_random = x;
    uint64_t bits = x * 0x2545f4914f6cdd1dull;
    /* u = n / 2^53, uniform in (0, 1], as m * 2^(top - 53) with m in [1, 2). */
    uint64_t n = (bits >> 11) + 1;
    int top = 63 - __builtin_clzll(n);
    union {
        uint64_t bits;
        double value;
    } scale = {.bits = (uint64_t)(1023 - top) << 52}; /* 2^-top */
    double m = (double)n * scale.value;
    double minus_ln_u = -(log_mantissa(m) + (top - 53) * 0.6931471805599453);
    if (minus_ln_u > 20) /* at most 20 means (5 MiB at 256 KiB) */
        minus_ln_u = 20;
    return (int64_t)(minus_ln_u * (double)xmm_tick_mean()) + 1;
}

/* e^(-x) for x >= 0: 2^(-k) e^(-r) with r in [0, ln 2), e^(-r) by its
 * series to the 12th power, evaluated in Estrin's form (four levels of
 * independent multiply-adds, not a chain of twelve; relative error below
 * 1e-11, checked against libm over [0, 60)). */
static double exp_negative(double x)
{
    if (x > 700)
        return 0;
    int k = (int)(x * 1.4426950408889634);
    double t = -(x - k * 0.6931471805599453);
    double t2 = t * t, t4 = t2 * t2, t8 = t4 * t4;
    double a0 = 1 + t, a1 = 1.0 / 2 + t * (1.0 / 6), a2 = 1.0 / 24 + t * (1.0 / 120),
           a3 = 1.0 / 720 + t * (1.0 / 5040), a4 = 1.0 / 40320 + t * (1.0 / 362880),
           a5 = 1.0 / 3628800 + t * (1.0 / 39916800), a6 = 1.0 / 479001600;
    double b0 = a0 + t2 * a1, b1 = a2 + t2 * a3, b2 = a4 + t2 * a5;
    double sum = (b0 + t4 * b1) + t8 * (b2 + t4 * a6);
    union {
        uint64_t bits;
        double value;
    } scale = {.bits = (uint64_t)(1023 - k) << 52}; /* 2^-k, k <= 1009 */
    return sum * scale.value;
}

double xmm_sample_weight(size_t size, int64_t mean)
{
    double x = (double)(size ? size : 1) / (double)mean;
    /* Up to x = 1/2 (every small request at the default interval), the
     * Bernoulli series of x / (1 - e^(-x)), divided by x: its next term is
     * below 1e-8 of the sum. Beyond, the exponential. */
    if (x <= 0.5) {
        double x2 = x * x;
        return 1 / x + 0.5 + x * (1.0 / 12 - x2 * (1.0 / 720 - x2 * (1.0 / 30240)));
    }
    return 1 / (1 - exp_negative(x));
}

/* A request of `size` bytes met the tick: it stands for
 * xmm_sample_weight(size) requests of its size. */
static void credit_sample(size_t size)
{
    double requests = xmm_sample_weight(size, xmm_tick_mean());
    unsigned size_class = xmm_size_to_class(size);
    __atomic_fetch_add(&sampled[size_class].requests, (uint64_t)(requests + 0.5),
                       __ATOMIC_RELAXED);
    __atomic_fetch_add(&sampled[size_class].bytes, (uint64_t)(requests * (double)size + 0.5),
                       __ATOMIC_RELAXED);
}

void xmm_upkeep_node(int node)
{
    /* One clock read for the three layers: on the benchmark VM a read
     * costs 15-20 ns, and every large allocation comes here. */
    uint64_t now_ns = xmm_os_now_ns();
    xmm_central_maintain(node, now_ns);
    xmm_large_cache_maintain(node, now_ns);
    xmm_page_heap_maintain(node, now_ns);
}

/* The thread's first tick seeds its generator: false. Otherwise true. */
static bool seeded(void)
{
    if (XMM_LIKELY(tick_random != 0))
        return true;
    tick_random = (xmm_free_secret ^ (uintptr_t)&tick_random) | 1;
    return false;
}

/* The bias the thread's countdown word holds (XMM_TICK_BIAS, upkeep.h). */
static int64_t countdown_bias(void)
{
    return xmm_config.free_deferred ? XMM_TICK_BIAS : 0;
}

/* True when the thread's tick is due: its countdown crossed zero, or it
 * has not started one (its first request). */
static bool tick_due(void)
{
    return tick_random == 0 || xmm_thread.tick_countdown + countdown_bias() < 0;
}

static void restart_countdown(void)
{
    xmm_thread.tick_countdown = next_interval() - countdown_bias();
}

bool xmm_upkeep_tick(size_t size)
{
    if (!tick_due())
        return false;
    /* The thread's first request starts the countdown: no sample. */
    bool sample = seeded();
    if (sample)
        credit_sample(size);
    restart_countdown();
    xmm_upkeep_node(xmm_node_of_cpu(xmm_os_current_cpu()));
    xmm_upkeep_consider_background();
    return sample && xmm_config.profile_interval != 0;
}

bool xmm_upkeep_count_large(size_t size)
{
    /* At most 2^60 counted: a biased countdown (about -2^62) must not
     * overflow, nor an unbiased one reach the biased range
     * (xmm_upkeep_biased_not_due); no request that large is granted. */
    const int64_t most = (int64_t)1 << 60;
    xmm_thread.tick_countdown -= size < (uint64_t)most ? (int64_t)size : most;
    if (!tick_due())
        return false;
    bool sample = seeded();
    restart_countdown();
    return sample;
}

void xmm_upkeep_sampled(unsigned size_class, uint64_t *requests, uint64_t *bytes)
{
    *requests = __atomic_load_n(&sampled[size_class].requests, __ATOMIC_RELAXED);
    *bytes = __atomic_load_n(&sampled[size_class].bytes, __ATOMIC_RELAXED);
}

size_t xmm_upkeep_release_all(void)
{
    xmm_front_end_release_caches(xmm_heap_check_pending);
    size_t purged = xmm_central_release_all();
    for (int node = 0; node < xmm_nodes; node++)
        xmm_large_cache_flush(node);
    return purged + xmm_page_heap_purge(true); /* also unmaps wholly free chunks */
}

void xmm_upkeep_before_direct_map(int node, size_t size)
{
    xmm_central_reclaim(node);
    size_t purged = xmm_page_heap_purge_oldest(node, size);
    for (int other = 0; other < xmm_nodes && purged < size; other++)
        if (other != node)
            purged += xmm_page_heap_purge_oldest(other, size - purged);
}

void xmm_upkeep_release_caches(void)
{
    xmm_front_end_release_caches(xmm_heap_check_pending);
}

bool xmm_upkeep_release_address_space(void)
{
    for (int node = 0; node < xmm_nodes; node++)
        xmm_large_cache_flush(node);
    return xmm_page_heap_release_chunks(0) > 0;
}

/* The thread sleeps one upkeep period (at least 10 ms) between rounds. */
static void *background_loop(void *unused)
{
    uint64_t period_ns = xmm_upkeep_period_ns();
    if (period_ns < 10000000)
        period_ns = 10000000;
    for (;;) {
        xmm_os_sleep_ns(period_ns);
        for (int node = 0; node < xmm_nodes; node++)
            xmm_upkeep_node(node);
    }
    return NULL;
}

/* The decay thread of this process: not wanted (XMM_BACKGROUND=0, or it
 * could not be started), pending (started once the rule allows), or
 * started. */
enum { BACKGROUND_NONE, BACKGROUND_PENDING, BACKGROUND_STARTED };
static int background_state = BACKGROUND_NONE;
/* The process it belongs to: a vfork child shares this memory but is
 * another process, which must not start a thread on its parent's stack. */
static int background_process;
/* Attempts that found the caller unfit (signals blocked) retry at most
 * once per period. */
static uint64_t background_attempt_ns;

/* Only XMM_BACKGROUND=1, which asked for the thread, hears of a failure;
 * under auto the program goes on as with 0. */
static bool start_thread(void)
{
    if (xmm_os_thread_start(background_loop, NULL) == 0)
        return true;
    if (xmm_config.background == XMM_BACKGROUND_ON)
        xmm_report("xmm: XMM_BACKGROUND=1: cannot start the decay thread; "
                   "decay runs on allocation slow paths\n");
    return false;
}

void xmm_upkeep_start_background(void)
{
    background_process = xmm_os_process_id();
    if (xmm_config.background == XMM_BACKGROUND_OFF)
        return;
    if (xmm_config.background == XMM_BACKGROUND_ON) {
        __atomic_store_n(&background_state, BACKGROUND_STARTED, __ATOMIC_RELAXED);
        if (!start_thread())
            __atomic_store_n(&background_state, BACKGROUND_NONE, __ATOMIC_RELAXED);
        return;
    }
    __atomic_store_n(&background_state, BACKGROUND_PENDING, __ATOMIC_RELAXED);
}

static __thread uint32_t background_skip __attribute__((tls_model("initial-exec")));

static XMM_NOINLINE void consider_starting(void)
{
    /* XMM_BACKGROUND=1 only pends in a fork child: it starts at once. */
    if (xmm_config.background != XMM_BACKGROUND_ON &&
        xmm_arena_chunk_bytes() < XMM_BACKGROUND_HEAP_BYTES)
        return;
    /* While no caller is fit (a program whose threads block signals), a
     * thread looks again once in 64 of its calls: the others cost a TLS
     * decrement, not a clock read. */
    if (background_skip) {
        background_skip--;
        return;
    }
    background_skip = 63;
    if (!xmm_turn_due(&background_attempt_ns, xmm_os_now_ns(), xmm_upkeep_period_ns()))
        return;
    /* Not from a vfork child, nor (as far as can be told) from a signal
     * handler: pthread_create is not async-signal-safe. A thread that
     * blocks signals is taken for one in a handler: another thread, or a
     * later call, starts it. */
    if (xmm_os_process_id() != __atomic_load_n(&background_process, __ATOMIC_RELAXED) ||
        xmm_os_signals_blocked())
        return;
    int pending = BACKGROUND_PENDING;
    if (!__atomic_compare_exchange_n(&background_state, &pending, BACKGROUND_STARTED, false,
                                     __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
        return;
    if (!start_thread())
        __atomic_store_n(&background_state, BACKGROUND_NONE, __ATOMIC_RELAXED);
}

void xmm_upkeep_consider_background(void)
{
    if (XMM_UNLIKELY(__atomic_load_n(&background_state, __ATOMIC_RELAXED) ==
                     BACKGROUND_PENDING))
        consider_starting();
}

bool xmm_upkeep_background_started(void)
{
    return __atomic_load_n(&background_state, __ATOMIC_RELAXED) == BACKGROUND_STARTED;
}

void xmm_upkeep_after_fork_child(void)
{
    /* The parent's thread did not come along. */
    background_process = xmm_os_process_id();
    background_attempt_ns = 0;
    if (xmm_config.background != XMM_BACKGROUND_OFF)
        __atomic_store_n(&background_state, BACKGROUND_PENDING, __ATOMIC_RELAXED);
}
