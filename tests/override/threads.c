/*
 * threads.c - many more threads than CPUs, blocks freed by other threads.
 *
 * Three phases with 2x, 4x and 8x as many threads as online CPUs. Every
 * thread allocates blocks of random sizes (mostly small, some up to 1 MiB),
 * fills every byte with a pattern derived from the block's address and
 * size, and either keeps it (then frees or reallocs it later) or passes it
 * through a queue to another thread, which checks every byte and frees it:
 * producer/consumer frees across threads, CPUs and caches. Any byte that
 * changed, a block handed out twice, a misaligned block or a short usable
 * size is a failure.
 *
 * Built as is: malloc/free/realloc (with the override). With
 * -DTEST_XMM_API: xmm_malloc/xmm_free/xmm_realloc, for libxmm-core.a and the
 * ThreadSanitizer build. TEST_PHASE_SECONDS sets the length of a phase.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "xmm.h"
#include "testlib.h"

#ifdef TEST_XMM_API
#define T_MALLOC xmm_malloc
#define T_FREE xmm_free
#define T_REALLOC xmm_realloc
#define T_USABLE xmm_usable_size
#define T_NAME "threads (xmm_* API)"
#else
#define T_MALLOC malloc
#define T_FREE free
#define T_REALLOC realloc
#define T_USABLE malloc_usable_size
#define T_NAME "threads (malloc)"
#endif

#ifndef TEST_PHASE_SECONDS
#define TEST_PHASE_SECONDS 2.5
#endif

#define QUEUE_SIZE 512
#define LOCAL_SLOTS 48

struct block {
    void *ptr;
    size_t size;
};

struct queue {
    pthread_mutex_t lock;
    struct block items[QUEUE_SIZE];
    unsigned head, count;
} __attribute__((aligned(64)));

/* Kinds of error, counted and reported apart so that one known bug does
 * not hide another. */
enum error_kind { CORRUPTION, BAD_ALIGNMENT, SHORT_USABLE, ALLOCATION_FAILED, ERROR_KINDS };
static const char *const error_names[ERROR_KINDS] = {
    "changed bytes (corruption, or a block handed out twice)", "misaligned blocks",
    "usable size below the request", "NULL from malloc or realloc"};

struct phase {
    int threads;
    struct queue *queues;
    double deadline;
    atomic_ulong allocations, cross_frees, bytes;
    atomic_ulong errors[ERROR_KINDS];
    atomic_int ready;
    char first_error[ERROR_KINDS][200];
    pthread_mutex_t error_lock;
};

struct worker {
    struct phase *phase;
    int index;
    pthread_t thread;
};

static void report_error(struct phase *phase, enum error_kind kind, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

static void report_error(struct phase *phase, enum error_kind kind, const char *format, ...)
{
    va_list arguments;
    atomic_fetch_add(&phase->errors[kind], 1);
    pthread_mutex_lock(&phase->error_lock);
    if (!phase->first_error[kind][0]) {
        va_start(arguments, format);
        vsnprintf(phase->first_error[kind], sizeof phase->first_error[kind], format, arguments);
        va_end(arguments);
    }
    pthread_mutex_unlock(&phase->error_lock);
}

static size_t random_size(uint64_t *state)
{
    uint64_t r = random_next(state);
    unsigned bucket = (unsigned)(r % 100);
    r >>= 8;
    if (bucket < 85)
        return 1 + (size_t)(r % 512);
    if (bucket < 95)
        return 513 + (size_t)(r % (32 * KIB));
    if (bucket < 99)
        return 32 * KIB + (size_t)(r % (224 * KIB));
    return 256 * KIB + (size_t)(r % (768 * KIB));
}

static void check_and_free(struct phase *phase, struct block block, const char *how)
{
    size_t at = pattern_find(block.ptr, block.size, pattern_seed(block.ptr, block.size));
    if (at != SIZE_MAX)
        report_error(phase, CORRUPTION, "%s: block %p of %zu bytes: byte %zu changed", how, block.ptr,
                     block.size, at);
    T_FREE(block.ptr);
}

static int allocate(struct phase *phase, struct block *block, uint64_t *state)
{
    block->size = random_size(state);
    block->ptr = T_MALLOC(block->size);
    if (!block->ptr) {
        report_error(phase, ALLOCATION_FAILED, "malloc(%zu) returned NULL", block->size);
        return 0;
    }
    if (!is_aligned(block->ptr, expected_alignment(block->size)))
        report_error(phase, BAD_ALIGNMENT, "malloc(%zu) = %p not aligned to %zu", block->size, block->ptr,
                     expected_alignment(block->size));
    if (T_USABLE(block->ptr) < block->size)
        report_error(phase, SHORT_USABLE, "usable size %zu < %zu", T_USABLE(block->ptr), block->size);
    pattern_fill(block->ptr, block->size, pattern_seed(block->ptr, block->size));
    atomic_fetch_add_explicit(&phase->allocations, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&phase->bytes, block->size, memory_order_relaxed);
    return 1;
}

static int push(struct queue *queue, struct block block)
{
    int pushed = 0;
    pthread_mutex_lock(&queue->lock);
    if (queue->count < QUEUE_SIZE) {
        queue->items[(queue->head + queue->count) % QUEUE_SIZE] = block;
        queue->count++;
        pushed = 1;
    }
    pthread_mutex_unlock(&queue->lock);
    return pushed;
}

static int pop(struct queue *queue, struct block *block)
{
    int popped = 0;
    pthread_mutex_lock(&queue->lock);
    if (queue->count > 0) {
        *block = queue->items[queue->head];
        queue->head = (queue->head + 1) % QUEUE_SIZE;
        queue->count--;
        popped = 1;
    }
    pthread_mutex_unlock(&queue->lock);
    return popped;
}

static void *worker_main(void *argument)
{
    struct worker *self = argument;
    struct phase *phase = self->phase;
    struct block local[LOCAL_SLOTS];
    uint64_t state = 0x9e3779b97f4a7c15ull * (uint64_t)(self->index + 1);
    unsigned long iterations = 0;

    memset(local, 0, sizeof local);
    atomic_fetch_add(&phase->ready, 1);
    while (atomic_load(&phase->ready) < phase->threads)
        sched_yield();

    while ((iterations++ & 63) != 0 || now_seconds() < phase->deadline) {
        uint64_t choice = random_next(&state) % 16;
        struct block block;

        if (choice < 7) {
            /* Produce for another thread. */
            if (!allocate(phase, &block, &state))
                continue;
            int target = phase->threads > 1
                             ? (self->index + 1 + (int)(random_next(&state) % (uint64_t)(phase->threads - 1))) %
                                   phase->threads
                             : self->index;
            if (!push(&phase->queues[target], block))
                check_and_free(phase, block, "own free (queue full)");
        } else if (choice < 13) {
            /* Keep locally, freeing what was in the slot. */
            int slot = (int)(random_next(&state) % LOCAL_SLOTS);
            if (local[slot].ptr)
                check_and_free(phase, local[slot], "local free");
            if (!allocate(phase, &local[slot], &state))
                local[slot].ptr = NULL;
        } else {
            /* Realloc a local block: the old contents must move along. */
            int slot = (int)(random_next(&state) % LOCAL_SLOTS);
            if (!local[slot].ptr)
                continue;
            struct block old = local[slot];
            size_t at = pattern_find(old.ptr, old.size, pattern_seed(old.ptr, old.size));
            if (at != SIZE_MAX)
                report_error(phase, CORRUPTION, "before realloc: block %p of %zu bytes: byte %zu changed",
                             old.ptr, old.size, at);
            size_t new_size = random_size(&state);
            void *moved = T_REALLOC(old.ptr, new_size);
            if (!moved) {
                report_error(phase, ALLOCATION_FAILED, "realloc(%zu -> %zu) returned NULL", old.size, new_size);
                continue;
            }
            size_t keep = old.size < new_size ? old.size : new_size;
            at = pattern_find(moved, keep, pattern_seed(old.ptr, old.size));
            if (at != SIZE_MAX)
                report_error(phase, CORRUPTION, "realloc(%p, %zu -> %zu) = %p: byte %zu not kept", old.ptr,
                             old.size, new_size, moved, at);
            if (!is_aligned(moved, expected_alignment(new_size)))
                report_error(phase, BAD_ALIGNMENT, "realloc(%p of %zu bytes, %zu) = %p not aligned to %zu",
                             old.ptr, old.size, new_size, moved, expected_alignment(new_size));
            local[slot].ptr = moved;
            local[slot].size = new_size;
            pattern_fill(moved, new_size, pattern_seed(moved, new_size));
        }
        /* Consume what others sent; now and then realloc it first, a
         * block another thread allocated. */
        for (int i = 0; i < 3 && pop(&phase->queues[self->index], &block); i++) {
            if (random_next(&state) % 8 == 0) {
                size_t at = pattern_find(block.ptr, block.size, pattern_seed(block.ptr, block.size));
                if (at != SIZE_MAX)
                    report_error(phase, CORRUPTION, "received block %p of %zu bytes: byte %zu changed",
                                 block.ptr, block.size, at);
                size_t new_size = random_size(&state);
                void *moved = T_REALLOC(block.ptr, new_size);
                if (!moved) {
                    report_error(phase, ALLOCATION_FAILED, "realloc(%zu -> %zu) returned NULL",
                                 block.size, new_size);
                    T_FREE(block.ptr);
                    continue;
                }
                size_t keep = block.size < new_size ? block.size : new_size;
                at = pattern_find(moved, keep, pattern_seed(block.ptr, block.size));
                if (at != SIZE_MAX)
                    report_error(phase, CORRUPTION,
                                 "cross-thread realloc(%p, %zu -> %zu) = %p: byte %zu not kept",
                                 block.ptr, block.size, new_size, moved, at);
                block.ptr = moved;
                block.size = new_size;
                pattern_fill(moved, new_size, pattern_seed(moved, new_size));
            }
            check_and_free(phase, block, "cross-thread free");
            atomic_fetch_add_explicit(&phase->cross_frees, 1, memory_order_relaxed);
        }
    }
    for (int slot = 0; slot < LOCAL_SLOTS; slot++)
        if (local[slot].ptr)
            check_and_free(phase, local[slot], "final local free");
    return NULL;
}

static void run_phase(int threads, double seconds)
{
    struct phase *phase = calloc(1, sizeof *phase);
    struct worker *workers = calloc((size_t)threads, sizeof *workers);

    phase->threads = threads;
    phase->queues = aligned_alloc(64, sizeof(struct queue) * (size_t)threads);
    pthread_mutex_init(&phase->error_lock, NULL);
    for (int i = 0; i < threads; i++) {
        pthread_mutex_init(&phase->queues[i].lock, NULL);
        phase->queues[i].head = phase->queues[i].count = 0;
    }
    phase->deadline = now_seconds() + seconds;
    int started = 0;
    for (int i = 0; i < threads; i++) {
        workers[i].phase = phase;
        workers[i].index = i;
        if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0)
            break;
        started++;
    }
    CHECK(started == threads, "%d threads started (%d did)", threads, started);
    if (started < threads) /* release the ones waiting for the others */
        atomic_fetch_add(&phase->ready, threads - started);
    for (int i = 0; i < started; i++)
        pthread_join(workers[i].thread, NULL);
    /* What is still queued is freed here, by yet another thread. */
    unsigned long left = 0;
    for (int i = 0; i < threads; i++) {
        struct block block;
        while (pop(&phase->queues[i], &block)) {
            check_and_free(phase, block, "drain by the main thread");
            left++;
        }
    }
    NOTE("%d threads, %.1f s: %lu allocations (%lu MiB), %lu freed by another thread, %lu "
         "left in queues at the end",
         threads, seconds, atomic_load(&phase->allocations), atomic_load(&phase->bytes) >> 20,
         atomic_load(&phase->cross_frees), left);
    for (int kind = 0; kind < ERROR_KINDS; kind++)
        CHECK(atomic_load(&phase->errors[kind]) == 0, "%d threads: no %s (%lu; first: %s)",
              threads, error_names[kind], atomic_load(&phase->errors[kind]),
              phase->first_error[kind][0] ? phase->first_error[kind] : "none");
    /* Low bars: ThreadSanitizer and a loaded machine slow this down a lot. */
    CHECK(atomic_load(&phase->cross_frees) > 0 && atomic_load(&phase->allocations) >= 100,
          "%d threads: work was done, with cross-thread frees", threads);
    free(phase->queues);
    free(phase);
    free(workers);
}

/* Under ThreadSanitizer XMM runs with per-thread caches (XMM_RSEQ=0): a
 * block freed by one thread and reused by another on the same CPU passes
 * through XMM's per-CPU cache with no atomic TSan could see (rseq: the CPU
 * orders it), so TSan reports every such reuse as a race between the two
 * owners. XMM annotates the hand-offs of its per-thread mode. XMM reads the
 * variable when it starts: hence the re-execution. */
static void use_per_thread_caches_under_tsan(char **argv)
{
#if defined(__SANITIZE_THREAD__)
    if (!getenv("XMM_RSEQ")) {
        setenv("XMM_RSEQ", "0", 1);
        execv("/proc/self/exe", argv);
        perror("execv");
        exit(2);
    }
#else
    (void)argv;
#endif
}

int main(int argc, char **argv)
{
    (void)argc;
    use_per_thread_caches_under_tsan(argv);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 1)
        cpus = 1;
    double seconds = TEST_PHASE_SECONDS;
    const char *override = getenv("TEST_PHASE_SECONDS");
    if (override && atof(override) > 0)
        seconds = atof(override);
#ifndef TEST_XMM_API
    expect_malloc_is_xmm();
#endif
    NOTE("%ld online CPUs", cpus);
    for (int factor = 2; factor <= 8; factor *= 2)
        run_phase((int)cpus * factor, seconds);
    return check_summary(T_NAME);
}
