/*
 * patterns.c - the workloads. Each is a loop of instrumented calls
 * (worker_alloc, worker_free, worker_realloc) that stops when the phase
 * stops, the worker's budget is spent, or a check fails.
 */
#include "patterns.h"
#include "clock.h"
#include "harness_memory.h"
#include "rng.h"

#include <sched.h>

#define BATCH_MIN 16
#define BATCH_MAX 512
#define REALLOC_SLOTS 16
#define REQUEST_BUFFERS_MAX 6
#define WORKING_SET_MIN_SLOTS 16
#define WORKING_SET_MAX_SLOTS ((size_t)1 << 20)
/* A consumer takes at most this many blocks from one ring in a row, so a
 * busy producer cannot starve the others. */
#define DRAIN_BURST 64

static size_t draw_size(struct worker *worker)
{
    return sizes_draw(&worker->phase->options->sizes, &worker->rng);
}

static void mark_loop_end(struct worker *worker)
{
    worker->loop_end_ns = now_ns();
}

static bool stop_requested(const struct phase *phase)
{
    return atomic_load_explicit(&phase->stop, memory_order_relaxed) || run_failed();
}

/* Frees every block still held (NULL entries are empty slots). */
static void free_blocks(struct worker *worker, struct block *blocks, size_t count)
{
    for (size_t i = 0; i < count && !run_failed(); i++)
        if (blocks[i].ptr)
            worker_free(worker, &blocks[i]);
}

size_t drain_ring(struct worker *worker, struct block_ring *ring, size_t limit)
{
    struct block block;
    size_t popped = 0;
    while (popped < limit && !run_failed() && ring_pop(ring, &block)) {
        popped++;
        worker_free(worker, &block);
    }
    return popped;
}

/* Slots for a working set of live_bytes_per_thread, at the mean size. */
static size_t working_set_slots(const struct phase *phase)
{
    double slots = (double)phase->live_bytes_per_thread / phase->mean_size;
    if (slots < WORKING_SET_MIN_SLOTS)
        return WORKING_SET_MIN_SLOTS;
    return slots > WORKING_SET_MAX_SLOTS ? WORKING_SET_MAX_SLOTS : (size_t)slots;
}

/* Allocates blocks into empty slots until all are full; returns false if
 * the worker had to stop first. */
static bool fill_slots(struct worker *worker, struct block *slots, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        if (!worker_running(worker) || !worker_alloc(worker, draw_size(worker), &slots[i]))
            return false;
    }
    return true;
}

/* ---- pairs: allocate, use, free: the fast path of every allocator ----- */

static void pattern_pairs(struct worker *worker)
{
    struct block block;
    while (worker_running(worker)) {
        if (!worker_alloc(worker, draw_size(worker), &block) || !worker_free(worker, &block))
            break;
    }
    mark_loop_end(worker);
}

/* ---- batch: many allocations, then many frees, in varying order:
 * overflows thread caches both ways. ------------------------------------- */

static void shuffle(struct worker *worker, struct block *blocks, size_t count)
{
    for (size_t i = count; i > 1; i--) {
        size_t j = rng_below(&worker->rng, i);
        struct block swap = blocks[i - 1];
        blocks[i - 1] = blocks[j];
        blocks[j] = swap;
    }
}

static void reverse(struct block *blocks, size_t count)
{
    for (size_t i = 0; i < count / 2; i++) {
        struct block swap = blocks[i];
        blocks[i] = blocks[count - 1 - i];
        blocks[count - 1 - i] = swap;
    }
}

/* Frees in allocation order, in reverse, or shuffled, by turns. */
static void free_batch(struct worker *worker, struct block *batch, size_t count, unsigned round)
{
    if (round % 3 == 1)
        reverse(batch, count);
    else if (round % 3 == 2)
        shuffle(worker, batch, count);
    free_blocks(worker, batch, count);
}

static void pattern_batch(struct worker *worker)
{
    struct block *batch = harness_map(BATCH_MAX * sizeof *batch);
    for (unsigned round = 0; worker_running(worker); round++) {
        size_t wanted = BATCH_MIN + rng_below(&worker->rng, BATCH_MAX - BATCH_MIN + 1);
        size_t made = 0;
        while (made < wanted && worker_running(worker) &&
               worker_alloc(worker, draw_size(worker), &batch[made]))
            made++;
        free_batch(worker, batch, made, round);
    }
    mark_loop_end(worker);
    harness_unmap(batch, BATCH_MAX * sizeof *batch);
}

/* ---- producer-consumer: producers only allocate, consumers only free,
 * through rings: every free is a remote free. ------------------------------ */

static void produce(struct worker *worker)
{
    struct phase *phase = worker->phase;
    struct block_ring *ring = &phase->rings[worker->id];
    struct block block;
    bool alone = phase->thread_count == 1;
    while (worker_running(worker) && worker_alloc(worker, draw_size(worker), &block)) {
        while (!ring_push(ring, &block)) {
            if (stop_requested(phase)) {
                worker_free(worker, &block);
                goto done;
            }
            /* One thread plays both parts; otherwise wait for a consumer. */
            if (alone)
                drain_ring(worker, ring, SIZE_MAX);
            else
                sched_yield();
        }
    }
done:
    mark_loop_end(worker);
    if (alone)
        drain_ring(worker, ring, SIZE_MAX);
    atomic_fetch_add_explicit(&phase->producers_done, 1, memory_order_release);
}

static void consume(struct worker *worker)
{
    struct phase *phase = worker->phase;
    unsigned producers = phase->producer_count;
    unsigned consumers = phase->thread_count - producers;
    unsigned first_ring = (unsigned)worker->id - producers;
    for (;;) {
        /* Read before draining: if every producer was done before the rings
         * were seen empty, nothing more can arrive. */
        unsigned done = atomic_load_explicit(&phase->producers_done, memory_order_acquire);
        size_t popped = 0;
        for (unsigned ring = first_ring; ring < producers; ring += consumers)
            popped += drain_ring(worker, &phase->rings[ring], DRAIN_BURST);
        if (run_failed() || (popped == 0 && done == producers))
            break;
        if (popped == 0)
            sched_yield();
    }
    mark_loop_end(worker);
}

static void pattern_producer_consumer(struct worker *worker)
{
    if ((unsigned)worker->id < worker->phase->producer_count)
        produce(worker);
    else
        consume(worker);
}

/* ---- churn: a working set of live blocks, one replaced at random at a
 * time: fragmentation and reuse under a steady footprint. ---------------- */

static void pattern_churn(struct worker *worker)
{
    size_t count = working_set_slots(worker->phase);
    struct block *slots = harness_map(count * sizeof *slots);
    if (fill_slots(worker, slots, count)) {
        while (worker_running(worker)) {
            struct block *victim = &slots[rng_below(&worker->rng, count)];
            if (!worker_free(worker, victim) || !worker_alloc(worker, draw_size(worker), victim))
                break;
        }
    }
    mark_loop_end(worker);
    free_blocks(worker, slots, count);
    harness_unmap(slots, count * sizeof *slots);
}

/* ---- realloc: buffers that grow (like a string builder) and sometimes
 * shrink; a buffer that outgrows its cap is freed and started again. ---- */

static size_t next_buffer_size(struct worker *worker, size_t size)
{
    if (rng_below(&worker->rng, 4) == 0) {
        size_t shrunk = size * (25 + rng_below(&worker->rng, 66)) / 100;
        return shrunk ? shrunk : 1;
    }
    return size + size * (10 + rng_below(&worker->rng, 91)) / 100 + 1;
}

static bool realloc_step(struct worker *worker, struct block *slot, size_t cap)
{
    if (!slot->ptr) {
        size_t size = draw_size(worker);
        return worker_alloc(worker, size < cap ? size : cap, slot);
    }
    size_t next = next_buffer_size(worker, slot->size);
    if (next > cap)
        return worker_free(worker, slot);
    return worker_realloc(worker, slot, next);
}

/* The largest a buffer may grow: the working set shared by the slots. */
static size_t realloc_cap(const struct phase *phase)
{
    const struct size_distribution *sizes = &phase->options->sizes;
    size_t cap = phase->live_bytes_per_thread / REALLOC_SLOTS;
    if (cap > sizes_max(sizes))
        cap = sizes_max(sizes);
    return cap < sizes_min(sizes) ? sizes_min(sizes) : cap;
}

static void pattern_realloc(struct worker *worker)
{
    struct block slots[REALLOC_SLOTS] = { { 0 } };
    size_t cap = realloc_cap(worker->phase);
    while (worker_running(worker)) {
        if (!realloc_step(worker, &slots[rng_below(&worker->rng, REALLOC_SLOTS)], cap))
            break;
    }
    mark_loop_end(worker);
    free_blocks(worker, slots, REALLOC_SLOTS);
}

/* ---- server: per request a few buffers of varied sizes; the response
 * goes to the next thread (as if another thread wrote it to the socket),
 * now and then a buffer is kept as session state, the rest is freed. ---- */

struct server_state {
    struct block *sessions;
    size_t session_count;
    struct block_ring *incoming, *outgoing;
};

/* Keeps `buffer` in a random session slot, freeing what was there. */
static bool keep_in_session(struct worker *worker, struct server_state *server,
                            const struct block *buffer)
{
    struct block *session = &server->sessions[rng_below(&worker->rng, server->session_count)];
    if (session->ptr && !worker_free(worker, session))
        return false;
    *session = *buffer;
    return true;
}

static bool serve_request(struct worker *worker, struct server_state *server)
{
    struct block buffers[REQUEST_BUFFERS_MAX];
    size_t count = 2 + rng_below(&worker->rng, REQUEST_BUFFERS_MAX - 1);
    size_t first_to_free = 0, end_of_free = count;
    for (size_t i = 0; i < count; i++)
        if (!worker_alloc(worker, draw_size(worker), &buffers[i]))
            return false;
    if (rng_below(&worker->rng, 8) == 0) {
        if (!keep_in_session(worker, server, &buffers[0]))
            return false;
        first_to_free = 1;
    }
    if (rng_below(&worker->rng, 2) == 0 && ring_push(server->outgoing, &buffers[count - 1]))
        end_of_free = count - 1;
    while (end_of_free > first_to_free)
        if (!worker_free(worker, &buffers[--end_of_free]))
            return false;
    return true;
}

static void pattern_server(struct worker *worker)
{
    struct phase *phase = worker->phase;
    unsigned threads = phase->thread_count;
    struct server_state server = {
        .session_count = working_set_slots(phase),
        .incoming = &phase->rings[((unsigned)worker->id + threads - 1) % threads],
        .outgoing = &phase->rings[worker->id],
    };
    server.sessions = harness_map(server.session_count * sizeof *server.sessions);
    if (fill_slots(worker, server.sessions, server.session_count)) {
        while (worker_running(worker)) {
            drain_ring(worker, server.incoming, DRAIN_BURST);
            if (!serve_request(worker, &server))
                break;
        }
    }
    mark_loop_end(worker);
    free_blocks(worker, server.sessions, server.session_count);
    harness_unmap(server.sessions, server.session_count * sizeof *server.sessions);
}

void run_pattern(struct worker *worker)
{
    static void (*const patterns[PATTERN_COUNT])(struct worker *) = {
        [PATTERN_PAIRS] = pattern_pairs,
        [PATTERN_BATCH] = pattern_batch,
        [PATTERN_PRODUCER_CONSUMER] = pattern_producer_consumer,
        [PATTERN_CHURN] = pattern_churn,
        [PATTERN_REALLOC] = pattern_realloc,
        [PATTERN_SERVER] = pattern_server,
    };
    patterns[worker->phase->pattern](worker);
}
