/* The central layer under oversubscription: 8x more threads than cores
 * refill and drain the same size classes for seconds, through full
 * transfer batches, partial drains and single returns to spans. Threads
 * refill as one of two carvers (so several hold one carver at once,
 * taking its kept span and run from each other, and drain onto its own
 * batches, which the others of that carver take) or as none, while the
 * main thread lets go of every carver's span, run and own batches every
 * millisecond
 * (as malloc_trim does, and in turn of the idle carvers', as the upkeep
 * pass does), and every 16th millisecond trims the central layer as
 * malloc_trim does, purging the free objects of spans in use. Every
 * object's ownership is tracked in a side table: an object handed to two
 * threads at once, or lost, fails the test. At the end every span must go
 * back to the page heap, and every carver's run. */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend/backend.h"
#include "mem/mem.h"
#include "check.h"
#include "xmm.h"

#define TABLE_BITS 24
static _Atomic unsigned char owned[1u << TABLE_BITS];
static atomic_long duplicates, corruptions, objects_moved;
static atomic_int stop;
static unsigned classes[3];

static size_t slot_of(void *object)
{
    return ((uintptr_t)object >> 6) & ((1u << TABLE_BITS) - 1);
}

/* The bytes of an object the owner writes and checks: its first 256,
 * and of a larger one its last 64 too (a trim must purge no page of a
 * live object, beside free ones). */
static size_t head_bytes(size_t size)
{
    return size < 256 ? size : 256;
}

static size_t tail_start(size_t size)
{
    return size > 320 ? size - 64 : size;
}

static void take_ownership(void *object, unsigned thread, size_t size)
{
    unsigned char expected = 0;
    if (!atomic_compare_exchange_strong(&owned[slot_of(object)], &expected, 1))
        atomic_fetch_add(&duplicates, 1);
    memset(object, (int)(thread & 0xff), head_bytes(size));
    memset((char *)object + tail_start(size), (int)(thread & 0xff), size - tail_start(size));
}

static void give_up(void *object, unsigned thread, size_t size)
{
    unsigned char *bytes = object;
    for (size_t i = 0; i < size; i = i + 1 == head_bytes(size) ? tail_start(size) : i + 1)
        if (bytes[i] != (unsigned char)(thread & 0xff)) {
            atomic_fetch_add(&corruptions, 1);
            break;
        }
    atomic_store(&owned[slot_of(object)], 0);
    /* Free again, as free() leaves it: the cache tag, which the central
     * layer checks on every object it takes back (central.h). */
    xmm_free_object_set(object, NULL);
}

static void *worker(void *argument)
{
    unsigned thread = (unsigned)(uintptr_t)argument;
    unsigned seed = thread * 2654435761u + 1;
    void *held[256];
    unsigned held_count = 0;
    long moved = 0;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        seed = seed * 1103515245 + 12345;
        unsigned size_class = classes[(seed >> 16) % 3];
        size_t size = xmm_size_classes[size_class].size;
        unsigned batch = xmm_size_classes[size_class].batch;
        void *objects[XMM_MAX_BATCH];
        unsigned wanted = (seed >> 8) % 4 == 0 ? 1 + (seed >> 20) % batch : batch;
        /* Two carvers (rows follow the CPU index bound: on one CPU,
         * carver 1 is none). */
        int carver = thread % 4 == 0 ? XMM_CENTRAL_NO_CARVER : (int)(thread % 2);
        unsigned got = xmm_central_refill(0, size_class, objects, wanted, carver);
        for (unsigned i = 0; i < got; i++)
            take_ownership(objects[i], thread, size);
        moved += got;
        /* Keep some for a while so spans fill up and empty out. */
        for (unsigned i = 0; i < got && held_count < 256 && (seed >> 4) % 3 == 0; i++)
            held[held_count++] = objects[--got];
        for (unsigned i = 0; i < got; i++)
            give_up(objects[i], thread, size);
        switch ((seed >> 12) % 3) {
        case 0: /* full or partial drain, as the front ends do */
            xmm_central_drain(0, size_class, objects, got, carver);
            break;
        default: /* objects going home one by one, as cross-node frees do */
            for (unsigned i = 0; i < got; i++)
                xmm_central_return_object(objects[i]);
        }
        if (held_count == 256 || (seed >> 24) % 64 == 0) {
            while (held_count) {
                void *object = held[--held_count];
                struct xmm_chunk *chunk = (struct xmm_chunk *)xmm_region_of(object);
                struct xmm_span *span = xmm_chunk_span_of(chunk, object);
                give_up(object, thread, xmm_size_classes[span->size_class].size);
                xmm_central_return_object(object);
            }
        }
    }
    while (held_count) {
        void *object = held[--held_count];
        struct xmm_chunk *chunk = (struct xmm_chunk *)xmm_region_of(object);
        struct xmm_span *span = xmm_chunk_span_of(chunk, object);
        give_up(object, thread, xmm_size_classes[span->size_class].size);
        xmm_central_return_object(object);
    }
    atomic_fetch_add(&objects_moved, moved);
    return NULL;
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 4.0;
    xmm_free(xmm_malloc(1));
    xmm_release_cpu_caches();
    classes[0] = xmm_size_to_class(64);
    classes[1] = xmm_size_to_class(3000);
    classes[2] = xmm_size_to_class(20000);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = (int)(cores > 0 ? cores : 1) * 8;
    pthread_t ids[512];
    for (int i = 0; i < threads; i++)
        pthread_create(&ids[i], NULL, worker, (void *)(uintptr_t)(i + 1));
    struct timespec millisecond = {0, 1000 * 1000};
    uint64_t deadline = xmm_os_now_ns() + (uint64_t)(seconds * 1e9);
    for (unsigned pass = 0; xmm_os_now_ns() < deadline; pass++) {
        nanosleep(&millisecond, NULL);
        /* As the upkeep pass, as trim, and every 16th a whole trim: its
         * sweep claims every listed span and purges inside those that
         * keep objects in use, while the workers refill from them and
         * return to them (3000 and 20000 bytes: blocks purged whole, taken
         * back by refills). */
        if (pass % 16 == 15)
            xmm_central_release_all();
        else
            xmm_central_release_carvers(pass & 1);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < threads; i++)
        pthread_join(ids[i], NULL);
    printf("%d threads on %ld cores moved %ld objects\n", threads, cores,
           atomic_load(&objects_moved));
    CHECK(atomic_load(&duplicates) == 0, "%ld objects handed out twice", atomic_load(&duplicates));
    CHECK(atomic_load(&corruptions) == 0, "%ld objects changed while owned",
          atomic_load(&corruptions));
    CHECK(atomic_load(&objects_moved) > 10000, "work was done");
    for (size_t i = 0; i < (1u << TABLE_BITS); i++)
        if (atomic_load(&owned[i])) {
            CHECK(0, "slot %zu still owned", i);
            break;
        }
    /* Nothing is in use: every span must return to the page heap. */
    xmm_release_cpu_caches();
    xmm_central_release_all();
    struct xmm_central_stats stats;
    xmm_central_stats(0, &stats);
    CHECK(stats.spans_created == stats.spans_released,
          "spans created %llu, released %llu (lost objects keep spans alive)",
          (unsigned long long)stats.spans_created, (unsigned long long)stats.spans_released);
    CHECK(stats.span_bytes == 0, "span bytes left: %llu", (unsigned long long)stats.span_bytes);
    CHECK(stats.run_bytes == 0, "carver run bytes left: %llu",
          (unsigned long long)stats.run_bytes);
    CHECK(stats.batches_cached == 0, "transfer batches left: %llu (own batches not given back)",
          (unsigned long long)stats.batches_cached);
    return check_summary("central stress");
}
