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

/* What the ticks sampled, per class, in one shard per CPU (modulo
 * SAMPLE_SHARDS), on lines of their own: a tick adds to its CPU's shard
 * with a plain load and store. One global counter per class took two
 * locked adds a tick, about 70% of the tick's own time with one thread
 * (`perf annotate`, malloc_free/32768), and made the ticks of threads on
 * different CPUs contend for one line. Two threads that tick on the same
 * CPU at once (one preempted between its load and its store, or more than
 * SAMPLE_SHARDS CPUs) may lose one sample: an estimate either way
 * (docs/statistics.md). */
#define SAMPLE_SHARDS 64
struct sample_count {
    uint64_t requests;
    uint64_t bytes;
};
static struct sample_shard {
    struct sample_count classes[XMM_CLASS_COUNT];
} XMM_CACHE_ALIGNED sampled[SAMPLE_SHARDS];

/* The thread's last sampled size and its weight: a program that repeats a
 * size (most do) skips the weight's divisions. */
static __thread size_t weighed_size __attribute__((tls_model("initial-exec")));
static __thread double weight_of_size __attribute__((tls_model("initial-exec")));

/* ln(m) for m in [1, 2): 2 atanh((m - 1) / (m + 1)), four terms (error
 * below 1e-4, plenty for a sampling interval). No libm in the allocator. */
static double log_mantissa(double m)
{
    double t = (m - 1) / (m + 1), t2 = t * t;
    return 2 * t * (1 + t2 * (1.0 / 3 + t2 * (1.0 / 5 + t2 * (1.0 / 7))));
}

/* -ln(u) for u uniform in (0, 1] is drawn as u = m 2^(top - 53), m in
 * [1, 2): (53 - top) ln 2 - ln m. ln m comes from a table of its value at
 * the edges of LN_BUCKETS equal parts of [1, 2), in bytes of the mean
 * interval, interpolated by the next 16 bits of m: integer loads, a
 * multiply and subtracts where the series took a divide and a chain of
 * multiplies, some 80 cycles that the next request's countdown waited
 * for (bench/analysis.md, "the allocation tick"). Interpolation error:
 * below 2e-6 of the mean. Without the interpolation (one value per
 * bucket) intervals fell on steps of about 1 KiB, and a program whose
 * sizes repeat with a period near that step was estimated 5% low
 * (test_tick_interval). Filled by xmm_upkeep_init. */
#define LN_BUCKET_BITS 8
#define LN_BUCKETS (1u << LN_BUCKET_BITS)
#define LN_FRACTION_BITS 16
static int64_t ln_mantissa_bytes[LN_BUCKETS + 1];
static int64_t ln2_bytes;
#define LN2 0.6931471805599453

void xmm_upkeep_init(void)
{
    double mean = (double)xmm_tick_mean();
    for (unsigned edge = 0; edge <= LN_BUCKETS; edge++) {
        double m = 1 + (double)edge / LN_BUCKETS;
        ln_mantissa_bytes[edge] = (int64_t)(log_mantissa(m) * mean + 0.5);
    }
    ln2_bytes = (int64_t)(LN2 * mean + 0.5);
}

/* Fixed intervals would alias with a program's periodic pattern of sizes
 * and credit one size class with everything: they are drawn (upkeep.h). */
int64_t xmm_upkeep_draw_interval(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    uint64_t bits = x * 0x2545f4914f6cdd1dull;
    /* u = n / 2^53 with n in [1, 2^53]; n's bits below its top one are
     * m's: the first LN_BUCKET_BITS pick its bucket, the next ones the
     * point inside it. */
    uint64_t n = (bits >> 11) + 1;
    int top = 63 - __builtin_clzll(n);
    uint64_t below_top = n << (63 - top) << 1;
    unsigned bucket = (unsigned)(below_top >> (64 - LN_BUCKET_BITS));
    int64_t inside = (int64_t)(below_top << LN_BUCKET_BITS >> (64 - LN_FRACTION_BITS));
    int64_t low = ln_mantissa_bytes[bucket], high = ln_mantissa_bytes[bucket + 1];
    int64_t ln_m = low + (((high - low) * inside) >> LN_FRACTION_BITS);
    int64_t interval = (53 - top) * ln2_bytes - ln_m;
    int64_t most = 20 * xmm_tick_mean();
    if (interval > most)
        interval = most;
    return interval > 0 ? interval : 1;
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

/* Adds to a counter only the ticks of one CPU write (see `sampled`). */
static void add_to_shard(uint64_t *counter, uint64_t amount)
{
    __atomic_store_n(counter, __atomic_load_n(counter, __ATOMIC_RELAXED) + amount,
                     __ATOMIC_RELAXED);
}

/* A request of `size` bytes met the tick on `cpu`: it stands for
 * xmm_sample_weight(size) requests of its size. */
static void credit_sample(size_t size, int cpu)
{
    if (size != weighed_size || weight_of_size == 0) { /* 0: none yet */
        weight_of_size = xmm_sample_weight(size, xmm_tick_mean());
        weighed_size = size;
    }
    double requests = weight_of_size;
    struct sample_count *count =
        &sampled[(unsigned)cpu % SAMPLE_SHARDS].classes[xmm_size_to_class(size)];
    add_to_shard(&count->requests, (uint64_t)(requests + 0.5));
    add_to_shard(&count->bytes, (uint64_t)(requests * (double)size + 0.5));
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
    xmm_thread.tick_countdown = xmm_upkeep_draw_interval(&tick_random) - countdown_bias();
}

bool xmm_upkeep_tick(size_t size)
{
    if (!tick_due())
        return false;
    /* The thread's first request starts the countdown: no sample. */
    bool sample = seeded();
    int cpu = xmm_os_current_cpu();
    if (sample)
        credit_sample(size, cpu);
    restart_countdown();
    xmm_upkeep_node(xmm_node_of_cpu(cpu));
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
    *requests = *bytes = 0;
    for (unsigned shard = 0; shard < SAMPLE_SHARDS; shard++) {
        const struct sample_count *count = &sampled[shard].classes[size_class];
        *requests += __atomic_load_n(&count->requests, __ATOMIC_RELAXED);
        *bytes += __atomic_load_n(&count->bytes, __ATOMIC_RELAXED);
    }
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

/* XMM's threads running in this process (the decay thread, the
 * services), counted once started (start_own_thread); and whether they
 * are to end
 * (xmm_upkeep_threads_should_end), with the time of its last look. */
static int own_threads;
static int own_threads_ending;
static uint64_t ending_checked_ns;

bool xmm_upkeep_threads_should_end(void)
{
    if (__atomic_load_n(&own_threads_ending, __ATOMIC_ACQUIRE))
        return true;
    if (!xmm_turn_due(&ending_checked_ns, xmm_os_now_ns(), XMM_SERVICE_POLL_NS))
        return false;
    int others = xmm_os_threads_after_main();
    if (others < 0 || others > __atomic_load_n(&own_threads, __ATOMIC_ACQUIRE))
        return false;
    __atomic_store_n(&own_threads_ending, 1, __ATOMIC_RELEASE);
    return true;
}

void xmm_upkeep_serve(struct xmm_os_event *event, void (*serve)(void))
{
    for (;;) {
        uint32_t posted;
        if (xmm_os_event_wait(event, XMM_SERVICE_POLL_NS, &posted)) {
            serve();
            xmm_os_event_done(event, posted);
        } else if (xmm_upkeep_threads_should_end()) {
            return;
        }
    }
}

/* Counts a thread of XMM's in once it runs. Not before: a look that
 * came while pthread_create was under way would then take the program
 * thread creating it (after main's pthread_exit) for one of XMM's, and
 * end them all for good (found in review). Counted late, a look only
 * takes the new thread for the program's, and waits for the next. */
static int start_own_thread(void *(*body)(void *))
{
    int error = xmm_os_thread_start(body, NULL);
    if (!error)
        __atomic_fetch_add(&own_threads, 1, __ATOMIC_ACQ_REL);
    return error;
}

/* The thread sleeps one upkeep period (at least 10 ms) between rounds. */
static void *background_loop(void *unused)
{
    uint64_t period_ns = xmm_upkeep_period_ns();
    if (period_ns < 10000000)
        period_ns = 10000000;
    while (!xmm_upkeep_threads_should_end()) {
        xmm_os_sleep_ns(period_ns);
        for (int node = 0; node < xmm_nodes; node++) {
            xmm_upkeep_node(node);
            xmm_central_purge_inside(node);
        }
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
    if (start_own_thread(background_loop) == 0)
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

/* The service threads (the statistics printer, the profile dumper): their
 * bodies, for fork children to start again, and whether this process
 * still has to. */
#define SERVICE_MAX 2
static void *(*service_bodies[SERVICE_MAX])(void *);
static bool service_running[SERVICE_MAX];
static int service_count, services_pending;

/* Once per process: a service thread could not start (a process limit, a
 * full pids cgroup, clone refused by a seccomp filter). */
static void report_service_not_started(int error)
{
    static int reported_in;
    int process = xmm_os_process_id();
    if (__atomic_exchange_n(&reported_in, process, __ATOMIC_RELAXED) == process)
        return;
    xmm_report("xmm: cannot start the thread of XMM_STATS_SIGNAL or XMM_PROFILE_SIGNAL (%s: "
               "%s): its signal is caught, and served once a later allocation can start the "
               "thread, or at exit\n",
               xmm_os_error_name(error), xmm_os_error_text(error));
}

bool xmm_upkeep_start_service(void *(*body)(void *))
{
    if (service_count == SERVICE_MAX)
        return false;
    int service = service_count++;
    service_bodies[service] = body;
    int error = start_own_thread(body);
    service_running[service] = error == 0;
    if (error != 0) {
        /* Pending, as in a fork child: a slow path tries again once a
         * period. The caller installs the handler all the same: without
         * it, the signal an operator sends to ask for a report would end
         * the process (found in a sandbox trial, RLIMIT_NPROC). */
        report_service_not_started(error);
        __atomic_store_n(&services_pending, 1, __ATOMIC_RELEASE);
    }
    return true;
}

/* Not from a vfork child, nor (as far as can be told) from a signal
 * handler: pthread_create is not async-signal-safe. A thread that blocks
 * a signal with a handler is taken for one in that handler: another
 * thread, or a later call, starts it. Signals blocked with no handler do
 * not count: a program may block one for good (a PostgreSQL backend
 * blocks SIGURG and reads it from a signalfd; a sigwait server's workers
 * block what its signal thread waits for), and its idle memory then came
 * back only at its next allocations. */
static bool fit_to_start_threads(void)
{
    return xmm_os_process_id() == __atomic_load_n(&background_process, __ATOMIC_RELAXED) &&
           !xmm_os_handled_signal_blocked();
}

/* Whether the calling thread blocks a service's signal. A handler of
 * that signal is XMM's, which never allocates; a handler of another
 * signal that calls malloc is the program's risk already. Not "any signal
 * blocked", the decay thread's rule: a program may block one for good
 * (every PostgreSQL backend blocks SIGURG), and its services then never
 * started. */
static bool service_signal_blocked(void)
{
    return (xmm_config.stats_signal && xmm_os_signal_blocked(xmm_config.stats_signal)) ||
           (xmm_config.profile_signal && xmm_os_signal_blocked(xmm_config.profile_signal));
}

/* A fork child's services, or those that could not start, from a slow
 * path (the allocation tick, a large allocation) in their own process
 * whose thread does not block their signals; a signal that came before
 * waits for them in its event. One that still cannot start stays
 * pending. */
static void start_pending_services(void)
{
    int pending = 1;
    if (xmm_os_process_id() != __atomic_load_n(&background_process, __ATOMIC_RELAXED) ||
        service_signal_blocked() ||
        !__atomic_compare_exchange_n(&services_pending, &pending, 0, false, __ATOMIC_ACQ_REL,
                                     __ATOMIC_RELAXED))
        return;
    bool failed = false;
    for (int i = 0; i < service_count; i++) {
        if (service_running[i])
            continue;
        int error = start_own_thread(service_bodies[i]);
        service_running[i] = error == 0;
        if (error != 0) {
            report_service_not_started(error);
            failed = true;
        }
    }
    /* Once the loop is done (another thread that took the flag meanwhile
     * would run it beside this one), and with release: the next thread
     * whose CAS takes it reads service_running as this one left it. */
    if (failed)
        __atomic_store_n(&services_pending, 1, __ATOMIC_RELEASE);
}

void xmm_upkeep_session_started(void)
{
    if (__atomic_load_n(&services_pending, __ATOMIC_RELAXED) && fit_to_start_threads())
        start_pending_services();
}

static XMM_NOINLINE void consider_starting(void)
{
    bool services = __atomic_load_n(&services_pending, __ATOMIC_RELAXED);
    /* XMM_BACKGROUND=1 only pends in a fork child: it starts at once. */
    bool background = __atomic_load_n(&background_state, __ATOMIC_RELAXED) ==
                          BACKGROUND_PENDING &&
                      (xmm_config.background == XMM_BACKGROUND_ON ||
                       xmm_arena_chunk_bytes() >= XMM_BACKGROUND_HEAP_BYTES);
    if (!services && !background)
        return;
    /* While no caller is fit (a program whose threads block signals), a
     * thread looks again once in 64 of its calls: the others cost a TLS
     * decrement, not a clock read; the process at most once a period,
     * except for a fork child's first look (background_attempt_ns 0). */
    if (background_skip) {
        background_skip--;
        return;
    }
    background_skip = 63;
    if (!xmm_turn_due(&background_attempt_ns, xmm_os_now_ns(), xmm_upkeep_period_ns()))
        return;
    if (services)
        start_pending_services();
    if (!background)
        return;
    if (!fit_to_start_threads())
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
                         BACKGROUND_PENDING ||
                     __atomic_load_n(&services_pending, __ATOMIC_RELAXED)))
        consider_starting();
}

bool xmm_upkeep_background_started(void)
{
    return __atomic_load_n(&background_state, __ATOMIC_RELAXED) == BACKGROUND_STARTED;
}

void xmm_upkeep_after_fork_child(void)
{
    /* The parent's threads did not come along. */
    own_threads = 0;
    own_threads_ending = 0;
    ending_checked_ns = 0;
    background_process = xmm_os_process_id();
    background_attempt_ns = 0;
    if (xmm_config.background != XMM_BACKGROUND_OFF)
        __atomic_store_n(&background_state, BACKGROUND_PENDING, __ATOMIC_RELAXED);
    for (int i = 0; i < service_count; i++)
        service_running[i] = false;
    __atomic_store_n(&services_pending, service_count > 0, __ATOMIC_RELAXED);
    background_skip = 0; /* the forking thread's count: the child looks at once */
}
