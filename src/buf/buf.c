/*
 * buf.c - pooled I/O buffers (include/xmm_buf.h), on the xmm_* API.
 *
 * A buffer is two XMM blocks: a descriptor (struct xmm_buf) and its bytes,
 * a block of exactly its tier's size from the NUMA node of the CPU that
 * created it. Pools link descriptors, never the bytes, so a write through a
 * stale pointer into a pooled buffer's bytes cannot corrupt a pool.
 *
 * Pools are per CPU rather than per node: a node of a large server has
 * dozens of CPUs whose gets and puts would all meet at one lock, while a
 * CPU's pool is only ever contended when a thread is preempted or migrates
 * inside its few-instruction critical section. A pool is a LIFO list per
 * tier, so a get receives the buffer most recently touched on its CPU. Its
 * lock is only tried, never waited for: when it is busy, or the CPU number
 * fails, the thread's own small pool serves instead.
 *
 * The cap: reserved_bytes counts the part of the cap taken, and a
 * compare-and-swap refuses to take more than the cap, so the pools never
 * hold more than the cap, even for an instant. A CPU pool takes its part as
 * credit, credit_step bytes at a time, and gives back what exceeds twice
 * that: a CPU's gets and puts then write no shared cache line (a shared
 * counter written by every get and put was two thirds of their cost with
 * just two threads). The thread pools, a rare path, take exactly what they
 * hold.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "library.h"
#include "xmm_buf.h"

/* ---- tiers --------------------------------------------------------------- */

#define TIER_COUNT 7
static const size_t tier_capacity[TIER_COUNT] = {
    (size_t)4 << 10, (size_t)16 << 10, (size_t)64 << 10, (size_t)256 << 10,
    (size_t)1 << 20, (size_t)4 << 20,  XMM_BUF_MAX_CAPACITY,
};

/* The smallest tier holding `bytes`, or -1 above the top tier. */
static int tier_for(size_t bytes)
{
    for (int tier = 0; tier < TIER_COUNT; tier++)
        if (bytes <= tier_capacity[tier])
            return tier;
    return -1;
}

/* ---- descriptors --------------------------------------------------------- */

/* "XMMBUF01", xor-ed with the descriptor's own address: a copy of a
 * descriptor elsewhere, or bytes that merely resemble one, do not match. */
#define BUF_MAGIC 0x584d4d4255463031ull

enum buf_state {
    BUF_LIVE = 0x4c495645,   /* handed out by xmm_buf_get */
    BUF_POOLED = 0x504f4f4c, /* in a pool, or being moved into one */
    BUF_FREED = 0x46524545,  /* about to be given back to the allocator */
};

struct xmm_buf {
    uint64_t magic;
    uint32_t state;          /* enum buf_state; put changes it atomically */
    uint32_t tier;
    int node;                /* node of `bytes` */
    unsigned char *bytes;    /* tier_capacity[tier] bytes */
    size_t head;             /* offset of the first live byte */
    size_t length;           /* live bytes */
    struct xmm_buf *next;    /* next in a pool's list */
};

static uint64_t magic_of(const struct xmm_buf *buf)
{
    return BUF_MAGIC ^ (uintptr_t)buf;
}

static uint32_t state_of(const struct xmm_buf *buf)
{
    return __atomic_load_n(&buf->state, __ATOMIC_RELAXED);
}

static void set_state(struct xmm_buf *buf, enum buf_state state)
{
    __atomic_store_n(&buf->state, state, __ATOMIC_RELAXED);
}

static size_t capacity_of(const struct xmm_buf *buf)
{
    return tier_capacity[buf->tier];
}

static size_t tail_room(const struct xmm_buf *buf)
{
    return capacity_of(buf) - buf->head - buf->length;
}

/* A new live buffer of `tier` with its bytes on `node`. */
static struct xmm_buf *create_buffer(int tier, int node)
{
    struct xmm_buf *buf = xmm_malloc(sizeof(*buf));
    if (!buf)
        return NULL;
    unsigned char *bytes = xmm_malloc_on_node(tier_capacity[tier], node);
    if (!bytes) {
        int error = errno;
        xmm_free(buf);
        errno = error;
        return NULL;
    }
    *buf = (struct xmm_buf){.magic = magic_of(buf), .state = BUF_LIVE, .tier = (uint32_t)tier,
                            .node = node, .bytes = bytes};
    return buf;
}

/* Gives both blocks back to the allocator. The magic is wiped first, so
 * that a later put of this pointer is seen not to be a buffer. */
static void destroy_buffer(struct xmm_buf *buf)
{
    set_state(buf, BUF_FREED);
    buf->magic = 0;
    xmm_free(buf->bytes);
    xmm_free(buf);
}

/* ---- misuse -------------------------------------------------------------- */

static int misuse(const char *function, const void *buf, const char *what)
{
    fprintf(stderr, "xmm: %s(): %p %s\n", function, buf, what);
    errno = EINVAL;
    return -1;
}

/* The check of every call but put: the descriptor's magic and state. Only
 * reads the descriptor, so it is cheap enough for the data path. */
static bool is_live(const struct xmm_buf *buf, const char *function)
{
    if (XMM_LIKELY(buf && buf->magic == magic_of(buf) && state_of(buf) == BUF_LIVE))
        return true;
    if (buf)
        misuse(function, buf, "is not a live buffer (not from xmm_buf_get, or already put)");
    errno = EINVAL;
    return false;
}

/* The check of put, which must not let a wrong pointer into a pool: `ptr`
 * must be the start of an XMM block (asked with xmm_node_of, which answers
 * -1 for any other address without reading it, and XMM_NODE_INTERLEAVED,
 * below 0 too, for a block of the interleaved heap), and carry the magic. The
 * smallest XMM block holds the 8 bytes of the magic, and only a descriptor
 * has its own address's magic, so nothing else is read before the match. */
static bool is_descriptor(const struct xmm_buf *ptr)
{
    return xmm_node_of(ptr) != -1 && ptr->magic == magic_of(ptr);
}

/* ---- the cap --------------------------------------------------------------- */

#define DEFAULT_POOL_MIB 64
static size_t pool_limit = (size_t)DEFAULT_POOL_MIB << 20;
/* Credit a CPU pool takes at a time: at most an eighth of the cap per CPU
 * (a CPU keeps up to twice this unused, so at most a quarter of the cap is
 * ever taken without holding buffers), and no more than 1 MiB. */
static size_t credit_step;
/* The part of the cap taken: CPU pools' buffers and credit, thread pools'
 * buffers. Never above pool_limit. */
static size_t reserved_bytes;
/* Bytes of the buffers in all thread pools. */
static size_t thread_pool_bytes;

/* Takes `bytes` of the cap, or returns false if they do not fit under it. */
static bool reserve_pool_bytes(size_t bytes)
{
    size_t current = __atomic_load_n(&reserved_bytes, __ATOMIC_RELAXED);
    do {
        if (bytes > pool_limit || current > pool_limit - bytes)
            return false;
    } while (!__atomic_compare_exchange_n(&reserved_bytes, &current, current + bytes, true,
                                          __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    return true;
}

static void release_pool_bytes(size_t bytes)
{
    __atomic_fetch_sub(&reserved_bytes, bytes, __ATOMIC_RELAXED);
}

/* "64": a whole number of MiB, nothing else; false if malformed or if the
 * bytes would not fit in a size_t. */
static bool parse_mib(const char *text, size_t *bytes)
{
    size_t mib = 0;
    if (!*text)
        return false;
    for (; *text; text++) {
        if (*text < '0' || *text > '9' || __builtin_mul_overflow(mib, 10, &mib) ||
            __builtin_add_overflow(mib, (size_t)(*text - '0'), &mib))
            return false;
    }
    if (mib > (SIZE_MAX >> 20))
        return false;
    *bytes = mib << 20;
    return true;
}

/* XMM_BUF_POOL_MIB. A malformed value keeps the default here, silently:
 * XMM's configuration table (src/base/config.c) checks the same form when
 * the library starts, and reports it there once, fatally with
 * XMM_STRICT=1, whether or not the program ever uses a pool. (A value
 * the program itself sets with setenv() after start is read here too; a
 * malformed one keeps the default without a message.) */
static void read_pool_limit(void)
{
    const char *value = getenv("XMM_BUF_POOL_MIB");
    if (value)
        parse_mib(value, &pool_limit);
}

/* ---- pools --------------------------------------------------------------- */

struct tier_list {
    struct xmm_buf *top;
    size_t count;
};

struct cpu_pool {
    int locked;
    size_t held;    /* bytes of the buffers here (read without the lock) */
    size_t credit;  /* bytes of the cap taken and not holding buffers */
    struct tier_list tiers[TIER_COUNT];
} XMM_CACHE_ALIGNED;

/* Indexed by CPU % XMM_MAX_CPUS; untouched slots cost no memory (bss). */
static struct cpu_pool cpu_pools[XMM_MAX_CPUS];

/* A thread keeps at most this many buffers per tier in its own pool: it is
 * a fallback, not a second cache. */
#define THREAD_POOL_DEPTH 4
static __thread struct tier_list thread_pool[TIER_COUNT];
static __thread bool thread_exit_registered;
static __thread bool thread_pool_only; /* tests: the CPU pool is "busy" */

static pthread_key_t thread_exit_key;
static pthread_once_t setup_once = PTHREAD_ONCE_INIT;

static void push(struct tier_list *list, struct xmm_buf *buf)
{
    buf->next = list->top;
    list->top = buf;
    list->count++;
}

static struct xmm_buf *pop(struct tier_list *list)
{
    struct xmm_buf *buf = list->top;
    if (buf) {
        list->top = buf->next;
        list->count--;
        buf->next = NULL;
    }
    return buf;
}

static bool try_lock(struct cpu_pool *pool)
{
    return !__atomic_load_n(&pool->locked, __ATOMIC_RELAXED) &&
           !__atomic_exchange_n(&pool->locked, 1, __ATOMIC_ACQUIRE);
}

static void unlock(struct cpu_pool *pool)
{
    __atomic_store_n(&pool->locked, 0, __ATOMIC_RELEASE);
}

/* The pool of `cpu` if the thread may use it now (locked), else NULL. */
static struct cpu_pool *lock_cpu_pool(int cpu)
{
    if (cpu < 0 || thread_pool_only)
        return NULL;
    struct cpu_pool *pool = &cpu_pools[(unsigned)cpu % XMM_MAX_CPUS];
    return try_lock(pool) ? pool : NULL;
}

/* `cpu` is the calling thread's CPU of a moment ago: its node is the
 * thread's current node. */
static int node_of_cpu(int cpu)
{
    (void)cpu;
    return xmm_current_node();
}

/* Only slots of CPUs that exist can hold buffers. */
static int pool_slots(void)
{
    int cpus = xmm_cpu_count();
    return cpus > 0 && cpus < XMM_MAX_CPUS ? cpus : XMM_MAX_CPUS;
}

static void add_held(struct cpu_pool *pool, size_t bytes, bool adding)
{
    size_t held = adding ? pool->held + bytes : pool->held - bytes;
    __atomic_store_n(&pool->held, held, __ATOMIC_RELAXED);
}

/* With the pool locked: pays for `bytes` from its credit, topped up from
 * the cap with a step to spare (or, near the cap, with exactly what is
 * missing). False if the cap has no room. */
static bool spend_credit(struct cpu_pool *pool, size_t bytes)
{
    if (pool->credit < bytes) {
        size_t missing = bytes - pool->credit;
        size_t top_up = missing + credit_step;
        if (!reserve_pool_bytes(top_up)) {
            if (!reserve_pool_bytes(missing))
                return false;
            top_up = missing;
        }
        pool->credit += top_up;
    }
    pool->credit -= bytes;
    add_held(pool, bytes, true);
    return true;
}

/* With the pool locked: `bytes` left the pool; credit above two steps goes
 * back to the cap, for the other CPUs. */
static void refund_credit(struct cpu_pool *pool, size_t bytes)
{
    add_held(pool, bytes, false);
    pool->credit += bytes;
    if (pool->credit > 2 * credit_step) {
        release_pool_bytes(pool->credit - credit_step);
        pool->credit = credit_step;
    }
}

static void count_thread_pool(size_t bytes, bool adding)
{
    if (adding)
        __atomic_fetch_add(&thread_pool_bytes, bytes, __ATOMIC_RELAXED);
    else
        __atomic_fetch_sub(&thread_pool_bytes, bytes, __ATOMIC_RELAXED);
}

/* A pooled buffer of `tier` (state POOLED), or NULL. The thread's own pool
 * first: it needs no lock, and it empties back into use this way. */
static struct xmm_buf *take_pooled(int tier, int cpu)
{
    size_t bytes = tier_capacity[tier];
    struct xmm_buf *buf = pop(&thread_pool[tier]);
    if (buf) {
        count_thread_pool(bytes, false);
        release_pool_bytes(bytes);
        return buf;
    }
    struct cpu_pool *pool = lock_cpu_pool(cpu);
    if (pool) {
        buf = pop(&pool->tiers[tier]);
        if (buf)
            refund_credit(pool, bytes);
        unlock(pool);
    }
    return buf;
}

/* Frees the thread's pool when the thread exits. */
static void drain_thread_pool(void *unused)
{
    for (int tier = 0; tier < TIER_COUNT; tier++) {
        struct xmm_buf *buf;
        while ((buf = pop(&thread_pool[tier]))) {
            count_thread_pool(tier_capacity[tier], false);
            release_pool_bytes(tier_capacity[tier]);
            destroy_buffer(buf);
        }
    }
}

static bool push_thread_pool(struct xmm_buf *buf)
{
    struct tier_list *list = &thread_pool[buf->tier];
    if (list->count >= THREAD_POOL_DEPTH)
        return false;
    if (!thread_exit_registered) {
        /* Any non-NULL value makes the destructor run at thread exit. */
        if (pthread_setspecific(thread_exit_key, thread_pool) != 0)
            return false;
        thread_exit_registered = true;
    }
    push(list, buf);
    return true;
}

/* Keeps `buf` in the pool of `cpu`, else (pool busy) in the thread's; if
 * there is no room under the cap or in the thread's pool, or its memory is
 * another node's, frees it. */
static void recycle(struct xmm_buf *buf, int cpu)
{
    size_t bytes = capacity_of(buf);
    set_state(buf, BUF_POOLED);
    if (buf->node != node_of_cpu(cpu)) {
        destroy_buffer(buf);
        return;
    }
    struct cpu_pool *pool = lock_cpu_pool(cpu);
    if (pool) {
        bool kept = spend_credit(pool, bytes);
        if (kept)
            push(&pool->tiers[buf->tier], buf);
        unlock(pool);
        if (!kept)
            destroy_buffer(buf);
        return;
    }
    if (reserve_pool_bytes(bytes)) {
        if (push_thread_pool(buf)) {
            count_thread_pool(bytes, true);
            return;
        }
        release_pool_bytes(bytes);
    }
    destroy_buffer(buf);
}

/* A buffer of `tier` for `cpu`: pooled, else new. Live, and empty. */
static struct xmm_buf *obtain(int tier, int cpu)
{
    struct xmm_buf *buf = take_pooled(tier, cpu);
    if (!buf)
        buf = create_buffer(tier, node_of_cpu(cpu));
    if (buf) {
        buf->head = 0;
        buf->length = 0;
        set_state(buf, BUF_LIVE);
    }
    return buf;
}

/* ---- fork ------------------------------------------------------------------ */

/* A fork while another thread holds a pool lock would leave it locked in
 * the child: hold them all across fork (no lock is held for long, and no
 * allocation happens under one). */
static void lock_all_pools(void)
{
    for (int slot = 0; slot < pool_slots(); slot++)
        while (!try_lock(&cpu_pools[slot]))
            sched_yield();
}

static void unlock_all_pools(void)
{
    for (int slot = 0; slot < pool_slots(); slot++)
        unlock(&cpu_pools[slot]);
}

/* The child keeps the CPU pools and its own thread's pool; the other
 * threads' pools are gone with them, so the counts start over. */
static void after_fork_in_child(void)
{
    size_t own = 0, reserved = 0;
    for (int tier = 0; tier < TIER_COUNT; tier++)
        own += thread_pool[tier].count * tier_capacity[tier];
    for (int slot = 0; slot < pool_slots(); slot++)
        reserved += cpu_pools[slot].held + cpu_pools[slot].credit;
    __atomic_store_n(&thread_pool_bytes, own, __ATOMIC_RELAXED);
    __atomic_store_n(&reserved_bytes, reserved + own, __ATOMIC_RELAXED);
    unlock_all_pools();
}

/* ---- setup ----------------------------------------------------------------- */

static void setup(void)
{
    read_pool_limit();
    credit_step = pool_limit / 8 / (size_t)pool_slots();
    if (credit_step > ((size_t)1 << 20))
        credit_step = (size_t)1 << 20;
    if (pthread_key_create(&thread_exit_key, drain_thread_pool) != 0)
        fprintf(stderr, "xmm: xmm_buf: no thread-exit key; thread pools are leaked at exit\n");
    pthread_atfork(lock_all_pools, unlock_all_pools, after_fork_in_child);
}

static bool setup_done;

static void ensure_setup(void)
{
    if (XMM_UNLIKELY(!__atomic_load_n(&setup_done, __ATOMIC_ACQUIRE))) {
        pthread_once(&setup_once, setup);
        __atomic_store_n(&setup_done, true, __ATOMIC_RELEASE);
    }
}

/* For tests only (hidden, like every internal symbol): makes the calling
 * thread find every CPU pool busy, so that its own pool serves. */
void xmm_buf_test_thread_pool_only(bool enable);
void xmm_buf_test_thread_pool_only(bool enable)
{
    thread_pool_only = enable;
}

/* ---- the API --------------------------------------------------------------- */

XMM_EXPORT struct xmm_buf *xmm_buf_get(size_t min_capacity)
{
    int tier = tier_for(min_capacity);
    if (tier < 0) {
        errno = EINVAL;
        return NULL;
    }
    ensure_setup();
    return obtain(tier, xmm_os_current_cpu());
}

XMM_EXPORT int xmm_buf_put(struct xmm_buf *buf)
{
    if (!buf)
        return 0;
    ensure_setup(); /* this thread may never have called xmm_buf_get */
    if (!is_descriptor(buf))
        return misuse("xmm_buf_put", buf,
                      "is not a buffer from xmm_buf_get (foreign pointer, or put and freed)");
    /* Atomic, so that of two racing puts of one buffer exactly one wins. */
    uint32_t expected = BUF_LIVE;
    if (!__atomic_compare_exchange_n(&buf->state, &expected, BUF_POOLED, false,
                                     __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
        return misuse("xmm_buf_put", buf, "was already put (double put)");
    recycle(buf, xmm_os_current_cpu());
    return 0;
}

/* Moves `buf`'s live bytes into a buffer of `tier` and exchanges the two
 * buffers' memory, so the caller's descriptor stays the same; the old
 * memory is recycled like any put buffer. */
static int move_to_tier(struct xmm_buf *buf, int tier)
{
    int cpu = xmm_os_current_cpu();
    struct xmm_buf *larger = obtain(tier, cpu);
    if (!larger)
        return -1; /* ENOMEM; `buf` untouched */
    memcpy(larger->bytes, buf->bytes + buf->head, buf->length);
    unsigned char *old_bytes = buf->bytes;
    uint32_t old_tier = buf->tier;
    int old_node = buf->node;
    buf->bytes = larger->bytes;
    buf->tier = larger->tier;
    buf->node = larger->node;
    buf->head = 0;
    larger->bytes = old_bytes;
    larger->tier = old_tier;
    larger->node = old_node;
    recycle(larger, cpu);
    return 0;
}

static void compact(struct xmm_buf *buf)
{
    if (buf->head == 0)
        return;
    memmove(buf->bytes, buf->bytes + buf->head, buf->length);
    buf->head = 0;
}

/* Ensures `n` bytes of room after the tail: by compacting if that is
 * enough, else by moving to the smallest tier holding length + n. */
static int make_room(struct xmm_buf *buf, size_t n)
{
    if (tail_room(buf) >= n)
        return 0;
    size_t total;
    if (__builtin_add_overflow(buf->length, n, &total) || total > XMM_BUF_MAX_CAPACITY) {
        errno = EMSGSIZE;
        return -1;
    }
    if (total <= capacity_of(buf)) {
        compact(buf);
        return 0;
    }
    return move_to_tier(buf, tier_for(total));
}

XMM_EXPORT ssize_t xmm_buf_read_fd(struct xmm_buf *buf, int fd)
{
    if (!is_live(buf, "xmm_buf_read_fd") || make_room(buf, 1) != 0)
        return -1;
    ssize_t got = read(fd, buf->bytes + buf->head + buf->length, tail_room(buf));
    if (got > 0)
        buf->length += (size_t)got;
    return got;
}

XMM_EXPORT int xmm_buf_append(struct xmm_buf *buf, const void *data, size_t n)
{
    if (!is_live(buf, "xmm_buf_append"))
        return -1;
    if (n == 0)
        return 0;
    if (!data) {
        errno = EINVAL;
        return -1;
    }
    /* Bytes of the buffer itself move with it when it compacts or grows. */
    size_t live_offset = (uintptr_t)data - (uintptr_t)(buf->bytes + buf->head);
    bool from_itself = live_offset < buf->length;
    if (make_room(buf, n) != 0)
        return -1;
    const void *source = from_itself ? buf->bytes + buf->head + live_offset : data;
    memmove(buf->bytes + buf->head + buf->length, source, n);
    buf->length += n;
    return 0;
}

XMM_EXPORT void *xmm_buf_data(const struct xmm_buf *buf)
{
    return is_live(buf, "xmm_buf_data") ? buf->bytes + buf->head : NULL;
}

XMM_EXPORT size_t xmm_buf_len(const struct xmm_buf *buf)
{
    return is_live(buf, "xmm_buf_len") ? buf->length : 0;
}

XMM_EXPORT size_t xmm_buf_capacity(const struct xmm_buf *buf)
{
    return is_live(buf, "xmm_buf_capacity") ? capacity_of(buf) : 0;
}

XMM_EXPORT int xmm_buf_consume(struct xmm_buf *buf, size_t n)
{
    if (!is_live(buf, "xmm_buf_consume"))
        return -1;
    if (n > buf->length) {
        errno = EINVAL;
        return -1;
    }
    buf->length -= n;
    buf->head = buf->length ? buf->head + n : 0;
    return 0;
}

XMM_EXPORT int xmm_buf_compact(struct xmm_buf *buf)
{
    if (!is_live(buf, "xmm_buf_compact"))
        return -1;
    compact(buf);
    return 0;
}

XMM_EXPORT int xmm_buf_clear(struct xmm_buf *buf)
{
    if (!is_live(buf, "xmm_buf_clear"))
        return -1;
    buf->head = 0;
    buf->length = 0;
    return 0;
}

/* Sums without locking: a buffer moving between pools meanwhile may be
 * seen twice, so the sum is clamped to what is reserved, which covers every
 * pooled buffer at every instant. */
XMM_EXPORT size_t xmm_buf_pool_bytes(void)
{
    ensure_setup();
    size_t bytes = __atomic_load_n(&thread_pool_bytes, __ATOMIC_RELAXED);
    for (int slot = 0; slot < pool_slots(); slot++)
        bytes += __atomic_load_n(&cpu_pools[slot].held, __ATOMIC_RELAXED);
    size_t reserved = __atomic_load_n(&reserved_bytes, __ATOMIC_RELAXED);
    return bytes < reserved ? bytes : reserved;
}

XMM_EXPORT size_t xmm_buf_pool_limit(void)
{
    ensure_setup();
    return pool_limit;
}
