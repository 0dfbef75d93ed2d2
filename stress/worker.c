/*
 * worker.c - the instrumented malloc, free and realloc every pattern uses.
 */
#include "clock.h"
#include "phase.h"
#include "rng.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>

enum alloc_method { METHOD_MALLOC, METHOD_CALLOC, METHOD_MEMALIGN };

static const char *const method_names[] = { "malloc", "calloc", "posix_memalign" };

static atomic_bool corruption_injected;

/* Mostly malloc; calloc and posix_memalign in 1/16 of the calls each, so
 * their paths (zeroing, over-alignment) are exercised too. */
static enum alloc_method pick_method(struct worker *worker, size_t *alignment)
{
    uint64_t draw = rng_below(&worker->rng, 16);
    if (draw == 0)
        return METHOD_CALLOC;
    if (draw == 1) {
        /* 16, 32 or 64 usually (cache lines, SIMD); a page sometimes. */
        *alignment = rng_below(&worker->rng, 8) == 0 ? 4096 : (size_t)16 << rng_below(&worker->rng, 3);
        return METHOD_MEMALIGN;
    }
    return METHOD_MALLOC;
}

static void *call_allocator(enum alloc_method method, size_t size, size_t alignment)
{
    void *ptr = NULL;
    if (method == METHOD_CALLOC)
        return calloc(1, size);
    if (method == METHOD_MEMALIGN)
        return posix_memalign(&ptr, alignment, size) == 0 ? ptr : NULL;
    return malloc(size);
}

static void publish(struct worker *worker)
{
    atomic_store_explicit(&worker->published_allocs, worker->allocs, memory_order_relaxed);
    atomic_store_explicit(&worker->published_live_bytes, worker->live_bytes, memory_order_relaxed);
}

/* Alignment and usable size: what every allocation function promises. */
static bool check_new_block(struct worker *worker, const char *function, void *ptr,
                            size_t size, size_t alignment)
{
    size_t usable = malloc_usable_size(ptr);
    if (alignment < required_alignment(size))
        alignment = required_alignment(size);
    if ((uintptr_t)ptr & (alignment - 1)) {
        report_failure(FAILURE_CORRUPTION, "CORRUPTION: %s(%zu) in thread %d returned %p, "
                       "not aligned to %zu bytes", function, size, worker->id, ptr, alignment);
        return false;
    }
    if (usable < size) {
        report_failure(FAILURE_CORRUPTION, "CORRUPTION: %s(%zu) in thread %d returned %p with "
                       "malloc_usable_size %zu", function, size, worker->id, ptr, usable);
        return false;
    }
    return true;
}

static bool check_zeroed(struct worker *worker, const struct block *block)
{
    size_t bad_offset;
    if (block_zeroed(block->ptr, block->size, &bad_offset))
        return true;
    report_corruption(block, worker->id, bad_offset, block->ptr[bad_offset], 0,
                      "right after calloc (not zeroed)");
    return false;
}

/* --corrupt: flips one byte the checks cover, in a block that is live and
 * will be checked before it is freed (or by the final drain). */
static void maybe_inject_corruption(struct worker *worker, struct block *block)
{
    struct phase *phase = worker->phase;
    if (worker->alloc_budget != UNLIMITED_BUDGET && worker->id == 0 && worker->allocs == worker->alloc_budget / 5 + 1)
        atomic_store_explicit(&phase->corrupt_now, true, memory_order_relaxed);
    if (!atomic_load_explicit(&phase->corrupt_now, memory_order_relaxed) ||
        atomic_exchange(&corruption_injected, true))
        return;
    size_t checked_bytes = block->size < EDGE_BYTES ? block->size : EDGE_BYTES;
    size_t offset = rng_below(&worker->rng, checked_bytes);
    block->ptr[offset] ^= 0xFF;
    fprintf(stderr, "xmm-stress: --corrupt: overwrote byte %zu of block %p (size %zu, owner "
            "thread %d)\n", offset, (void *)block->ptr, block->size, worker->id);
}

bool corruption_was_injected(void)
{
    return atomic_load(&corruption_injected);
}

bool worker_alloc(struct worker *worker, size_t size, struct block *block)
{
    size_t alignment = 0;
    enum alloc_method method = pick_method(worker, &alignment);
    bool timed = sample_due(&worker->malloc_tick);
    uint64_t start = timed ? now_ns() : 0;
    void *ptr = call_allocator(method, size, alignment);
    if (timed)
        histogram_record(&worker->malloc_ns, now_ns() - start);
    if (!ptr) {
        report_failure(FAILURE_ALLOCATION, "ALLOCATION FAILED: %s(%zu) returned NULL in thread %d",
                       method_names[method], size, worker->id);
        return false;
    }
    if (!check_new_block(worker, method_names[method], ptr, size, alignment))
        return false;
    block->ptr = ptr;
    block->size = size;
    block->owner = worker->id;
    block->seed = block_seed(ptr, size, worker->id, ++worker->serial);
    if (method == METHOD_CALLOC && !check_zeroed(worker, block))
        return false;
    block_fill(block->ptr, size, block->seed);
    worker->allocs++;
    worker->live_bytes += (int64_t)size;
    publish(worker);
    if (worker->phase->corrupt_enabled)
        maybe_inject_corruption(worker, block);
    return true;
}

/* Verifies the whole pattern of a block; `during` names the check. */
static bool verify_block(struct worker *worker, const struct block *block, const char *during)
{
    size_t bad_offset;
    worker->checked++;
    if (block_matches(block->ptr, block->size, block->size, block->seed, &bad_offset))
        return true;
    report_corruption(block, worker->id, bad_offset, block->ptr[bad_offset],
                      pattern_byte(block->seed, bad_offset), during);
    return false;
}

bool worker_free(struct worker *worker, struct block *block)
{
    if (!verify_block(worker, block, "before free"))
        return false;
    bool timed = sample_due(&worker->free_tick);
    uint64_t start = timed ? now_ns() : 0;
    free(block->ptr);
    if (timed)
        histogram_record(&worker->free_ns, now_ns() - start);
    worker->frees++;
    worker->live_bytes -= (int64_t)block->size;
    publish(worker);
    block->ptr = NULL;
    return true;
}

/* realloc must keep the old contents up to the smaller size: checked on
 * the sampled bytes of the old block, with the old seed, at the new place. */
static bool check_preserved(struct worker *worker, const struct block *old, unsigned char *moved,
                            size_t new_size)
{
    size_t kept = old->size < new_size ? old->size : new_size, bad_offset;
    if (block_matches(moved, old->size, kept, old->seed, &bad_offset))
        return true;
    struct block at_new_place = *old;
    at_new_place.ptr = moved;
    report_corruption(&at_new_place, worker->id, bad_offset, moved[bad_offset],
                      pattern_byte(old->seed, bad_offset), "after realloc (contents not preserved)");
    return false;
}

bool worker_realloc(struct worker *worker, struct block *block, size_t new_size)
{
    if (!verify_block(worker, block, "before realloc"))
        return false;
    bool timed = sample_due(&worker->realloc_tick);
    uint64_t start = timed ? now_ns() : 0;
    unsigned char *moved = realloc(block->ptr, new_size);
    if (timed)
        histogram_record(&worker->realloc_ns, now_ns() - start);
    if (!moved) {
        report_failure(FAILURE_ALLOCATION, "ALLOCATION FAILED: realloc(%p, %zu) returned NULL in "
                       "thread %d", (void *)block->ptr, new_size, worker->id);
        return false;
    }
    if (!check_preserved(worker, block, moved, new_size) ||
        !check_new_block(worker, "realloc", moved, new_size, 0))
        return false;
    worker->live_bytes += (int64_t)new_size - (int64_t)block->size;
    block->ptr = moved;
    block->size = new_size;
    block->owner = worker->id;
    block->seed = block_seed(moved, new_size, worker->id, ++worker->serial);
    block_fill(moved, new_size, block->seed);
    worker->allocs++;
    publish(worker);
    if (worker->phase->corrupt_enabled)
        maybe_inject_corruption(worker, block);
    return true;
}
