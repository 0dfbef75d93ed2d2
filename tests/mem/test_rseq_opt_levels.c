/* The per-CPU critical sections return real blocks at every optimisation
 * level. gcc 12.2 at -O1 miscompiled `asm goto` with output operands (the
 * old xmm_rseq_pop): xmm_malloc(1) returned an address on the caller's
 * stack. This test is built against whatever library $(BUILD) holds (the
 * CI matrix builds it at -O1, -O2, with clang...), so it checks that
 * build's sections, not its own compilation.
 *
 * Four threads allocate 1..4096 bytes, keep a window of blocks (so slabs
 * fill, drain through xmm_rseq_pop_batch and refill through
 * xmm_rseq_push_batch), and check every block before touching it: not
 * NULL, not on any thread's stack, and known to XMM (xmm_node_of >= 0,
 * or XMM_NODE_INTERLEAVED if run under XMM_NUMA=interleave).
 * Each block is then filled with a tag of its owner and checked again
 * before it is freed, so a block handed out twice shows too. Linked with
 * libxmm.so, malloc is XMM too: on the broken -O1 build the process died
 * before main (libnuma's constructor got a stray address from fopen's
 * malloc), which fails the test as well.
 * Exit 77 (skip) when rseq is unavailable: the sections never ran. */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "xmm.h"

#define THREADS 4
#define WINDOW 512    /* blocks a thread holds: more than a slab's class holds */
#define ROUNDS 400

struct stack_range {
    uintptr_t low, high;
};

static struct stack_range stacks[THREADS + 1];
static pthread_barrier_t ranges_known;
static unsigned long on_stack, foreign, overwritten, null_blocks;

static struct stack_range own_stack(void)
{
    pthread_attr_t attributes;
    void *low = NULL;
    size_t size = 0;
    if (pthread_getattr_np(pthread_self(), &attributes) == 0) {
        pthread_attr_getstack(&attributes, &low, &size);
        pthread_attr_destroy(&attributes);
    }
    return (struct stack_range){(uintptr_t)low, (uintptr_t)low + size};
}

static bool is_on_a_stack(const void *block)
{
    for (int i = 0; i <= THREADS; i++)
        if ((uintptr_t)block >= stacks[i].low && (uintptr_t)block < stacks[i].high)
            return true;
    return false;
}

/* Checks a fresh block before anything writes to it: writing through a
 * stack address would corrupt the very frame that reports the bug. */
static bool block_is_sound(const void *block)
{
    if (block == NULL) {
        __atomic_fetch_add(&null_blocks, 1, __ATOMIC_RELAXED);
        return false;
    }
    if (is_on_a_stack(block)) {
        __atomic_fetch_add(&on_stack, 1, __ATOMIC_RELAXED);
        return false;
    }
    if (xmm_node_of(block) < 0 && xmm_node_of(block) != XMM_NODE_INTERLEAVED) {
        __atomic_fetch_add(&foreign, 1, __ATOMIC_RELAXED);
        return false;
    }
    return true;
}

static bool tag_intact(const unsigned char *block, size_t size, unsigned char tag)
{
    for (size_t i = 0; i < size; i++)
        if (block[i] != tag)
            return false;
    return true;
}

static void *worker(void *argument)
{
    unsigned id = (unsigned)(uintptr_t)argument;
    stacks[id] = own_stack();
    pthread_barrier_wait(&ranges_known);
    unsigned char *blocks[WINDOW] = {0};
    size_t sizes[WINDOW] = {0};
    unsigned char tag = (unsigned char)(0x40 + id);
    uint32_t random = 2463534242u * (id + 1);
    for (unsigned round = 0; round < ROUNDS; round++) {
        for (unsigned slot = 0; slot < WINDOW; slot++) {
            if (blocks[slot]) {
                if (!tag_intact(blocks[slot], sizes[slot], tag))
                    __atomic_fetch_add(&overwritten, 1, __ATOMIC_RELAXED);
                xmm_free(blocks[slot]);
            }
            random ^= random << 13, random ^= random >> 17, random ^= random << 5;
            /* Every size from 1 up, and 1 itself often: the reported case. */
            size_t size = (slot & 7) == 0 ? 1 : 1 + random % 4096;
            unsigned char *block = xmm_malloc(size);
            if (!block_is_sound(block))
                return NULL;
            memset(block, tag, size);
            blocks[slot] = block;
            sizes[slot] = size;
        }
    }
    for (unsigned slot = 0; slot < WINDOW; slot++)
        xmm_free(blocks[slot]);
    return NULL;
}

int main(void)
{
    stacks[THREADS] = own_stack();
    pthread_barrier_init(&ranges_known, NULL, THREADS);
    pthread_t threads[THREADS];
    for (unsigned i = 0; i < THREADS; i++)
        pthread_create(&threads[i], NULL, worker, (void *)(uintptr_t)i);
    for (unsigned i = 0; i < THREADS; i++)
        pthread_join(threads[i], NULL);

    struct xmm_stats stats = {.version = XMM_STATS_VERSION};
    xmm_stats_get(&stats);
    printf("front end %s, %llu per-CPU operations\n", stats.front_end,
           (unsigned long long)stats.rseq_fast_path);
    CHECK(null_blocks == 0, "%lu allocations returned NULL", null_blocks);
    CHECK(on_stack == 0, "%lu blocks on a thread's stack", on_stack);
    CHECK(foreign == 0, "%lu blocks XMM does not know (xmm_node_of < 0)", foreign);
    CHECK(overwritten == 0, "%lu blocks changed while held (handed out twice?)", overwritten);
    int status = check_summary("rseq opt levels");
    if (status == 0 && strcmp(stats.front_end, "per-cpu") != 0) {
        printf("skipped: per-thread front end, the rseq sections never ran\n");
        return 77;
    }
    return status;
}
