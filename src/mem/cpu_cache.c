/*
 * cpu_cache.c - per-CPU caches on restartable sequences (the fast front
 * end) and their slow paths. front_end.c chooses between them and the
 * per-thread caches (thread_cache.c).
 *
 * Which rseq area a thread uses:
 *   1. the one glibc registered (glibc >= 2.35 does so for every thread),
 *      if the kernel filled it in (glibc leaves cpu_id -2 in the area of a
 *      thread whose registration failed, e.g. under a seccomp filter
 *      installed after start);
 *   2. else, only with XMM_RSEQ=own, one XMM registers itself, per thread,
 *      on its first allocation. Not by default: with
 *      GLIBC_TUNABLES=glibc.pthread.rseq=0 glibc leaves the registration
 *      (one per thread) to another component of the program, whose own
 *      rseq() would then fail;
 *   3. else none: the thread uses a per-thread cache (no rseq in the
 *      kernel, seccomp, XMM_RSEQ=0, an unknown number of possible CPUs, or
 *      an architecture without the assembly).
 * A thread of a process in per-CPU mode whose area is not usable uses a
 * per-thread cache; both kinds of cache coexist.
 *
 * Slabs are indexed by the area's cpu_id, or by its mm_cid (a compact
 * per-process concurrency id, Linux 6.3+) on one-node machines. Not on
 * several nodes: a concurrency id moves between CPUs of different nodes,
 * and a slab must hold memory of one node only.
 */
#include <string.h>

#include "base/base.h"
#include "backend/backend.h"
#include "central.h"
#include "cpu_cache.h"

/* Slabs beyond this many (512 MiB of address space) are not mapped: such a
 * CPU count without sysfs means the bound is the kernel's NR_CPUS, not its
 * CPUs, and the process uses per-thread caches. */
#define XMM_MAX_SLABS 1024
_Static_assert(XMM_MAX_SLABS <= XMM_CENTRAL_CARVERS, "each slab index is a carver");

#if XMM_PER_CPU_CACHES

enum rseq_mode { RSEQ_OFF, RSEQ_LIBC, RSEQ_OWN };

/* Every hit reads xmm_cpu_slabs, on every CPU: it starts a line of its
 * own. The restart count (a locked increment at every abort) and the
 * release's table, both written while other CPUs hit, shared that line
 * before; they keep to lines of their own now. (gcc places the index
 * offset, read by the slow paths only, beside the restart count.) */
char *xmm_cpu_slabs __attribute__((aligned(64)));
uint32_t xmm_rseq_index_offset;
uint64_t xmm_rseq_restart_count __attribute__((aligned(64)));

static enum rseq_mode rseq_mode = RSEQ_OFF;
/* Init phase 2 is done: threads may attach (and register own areas). */
static bool hooks_done;
static bool index_is_mm_cid;
static bool have_membarrier;
static int slab_count;
/* A bin's slots. Every bin starts in the slab's first slots, STARTING_SLOTS
 * of them (its starting slots: starting_begin to starting_end, fewer for a
 * bin whose first capacity is smaller: never more objects than its own
 * slots would hold), and moves to slots of its own (bin_begin to
 * bin_limit) the first time it needs more (move_out).
 * Slots of a slab are memory only once written: with its own slots from
 * the start, each bin a program used faulted in a page of every slab it
 * ran on, one per class (python's start-up: 60 pages of one slab, 240
 * KiB, for 1338 objects cached at most; perl's 32). Bins that stay small
 * now share the first pages. */
#define STARTING_SLOTS XMM_CPU_STARTING_SLOTS
static uint16_t starting_begin[XMM_CPU_BIN_COUNT];
static uint16_t starting_end[XMM_CPU_BIN_COUNT];
static uint16_t bin_begin[XMM_CPU_BIN_COUNT]; /* first of its own slots */
static uint16_t bin_end[XMM_CPU_BIN_COUNT];   /* one past its last, at first */
static uint16_t bin_limit[XMM_CPU_BIN_COUNT]; /* one past the last it may grow to */
/* Each header as a slab's set-up writes it: empty in its starting slots
 * (word 0 is not a header and is not written from here). */
static uint64_t first_header[XMM_CPU_BIN_COUNT];
/* Per slab, a line of its own (drains write it): `capacity_bytes`, the
 * capacity of its bins that left their starting slots, in bytes: each
 * one's first capacity when it moves out (move_out), and what it has
 * grown by since (grow_capacity, which keeps the sum within
 * XMM_CPU_CACHE_SIZE; back to 0 when a release reopens them), a flag per
 * class bin set when it drained since it last grew (the bin went from
 * full to empty, the sign that it is too small: grow_capacity), and per
 * class the refills of its slow start (refill_count). */
static struct growth {
    uint64_t capacity_bytes;
    /* The cold-bin walk (drain_cold_bins): bytes refilled on the slab
     * since the last one, and a bit per class bin that refilled since
     * (bits, not bytes: the array is in every process's bss, and a tight
     * ulimit -v counts it). */
    uint64_t refilled_bytes;
    uint64_t refilled_since_walk[(XMM_CLASS_COUNT + 63) / 64];
    uint8_t drained_since_grown[XMM_CLASS_COUNT];
    uint8_t refills_started[XMM_CLASS_COUNT];
    /* Each header's begin when a release locked it (a locked header
     * keeps only `current`), 0 for a header it left alone (still 0 then,
     * not set up): written and read under release_lock. */
    uint16_t locked_begin[XMM_CPU_BIN_COUNT];
    /* Set-up (slab_in_use): `touched` before any header may be written,
     * `ready` once all are. Slabs not touched are all zero: every pass
     * over all slabs skips them, so that it reads none of their pages. */
    bool touched, ready;
} __attribute__((aligned(64))) slab_growth_of[XMM_MAX_SLABS];
static xmm_os_thread_key own_area_key;
static struct xmm_lock release_lock = XMM_LOCK_INITIALIZER;

/* Our own rseq area, for threads glibc did not register. */
static __thread struct xmm_rseq_area own_area __attribute__((tls_model("initial-exec")));
/* Set when the thread must not use the per-CPU caches (its area is not
 * usable; a vfork child, see platform/x86_64/override_vfork.S). */
__thread bool xmm_rseq_attach_refused __attribute__((tls_model("initial-exec")));
static __thread unsigned refills_since_upkeep __attribute__((tls_model("initial-exec")));

/* Operations the slow paths complete themselves (atomic: slow path). */
static struct {
    uint64_t allocations[XMM_CLASS_COUNT];
    uint64_t frees[XMM_CLASS_COUNT];
    uint64_t refills, drains, cross_node_frees;
} slow_counts;

static uint64_t *slab_words(int slab)
{
    return (uint64_t *)(xmm_cpu_slabs + ((size_t)slab << XMM_SLAB_SHIFT));
}

/* A header's fields (platform/x86_64/rseq_percpu.h gives the layout). */
static uint64_t header_of(unsigned begin, unsigned end, unsigned current)
{
    return (uint64_t)current | (uint64_t)end << XMM_SLAB_END_SHIFT |
           (uint64_t)begin << XMM_SLAB_BEGIN_SHIFT;
}

/* The header of a bin in its starting slots, or at the first capacity of
 * its own ones, as `begin` says. */
static uint64_t header_value(unsigned bin, unsigned begin, unsigned current)
{
    unsigned end = begin == starting_begin[bin] ? starting_end[bin] : bin_end[bin];
    return header_of(begin, end, current);
}

static unsigned header_begin(uint64_t header)
{
    return (unsigned)(header >> XMM_SLAB_BEGIN_SHIFT);
}

static bool header_locked(uint64_t header)
{
    return (header & XMM_SLAB_LOCKED_BITS) == XMM_SLAB_LOCKED_BITS;
}

static unsigned header_current(uint64_t header)
{
    return (unsigned)(header & XMM_SLAB_CURRENT_MASK);
}

static unsigned header_end(uint64_t header)
{
    return (unsigned)(header >> XMM_SLAB_END_SHIFT) & 0xffff;
}

static uint64_t header_with_end(uint64_t header, unsigned end)
{
    return (header & ~((uint64_t)0xffff << XMM_SLAB_END_SHIFT)) |
           (uint64_t)end << XMM_SLAB_END_SHIFT;
}

/* Objects in bin `bin` of `slab` now (0 while a drain holds the
 * header locked). */
static uint64_t cached_in(int slab, unsigned bin)
{
    uint64_t header = __atomic_load_n(&slab_words(slab)[bin], __ATOMIC_RELAXED);
    unsigned current = header_current(header), begin = header_begin(header);
    return !header_locked(header) && current > begin ? current - begin : 0;
}

/* ---- set-up -------------------------------------------------------------------------- */

/* Objects a class bin holds at most: at first, and after growing. */
#define FIRST_CAPACITY_MOST 1024
#define GROWN_CAPACITY_MOST 2048

/* Slots for a class bin: `budget` bytes in objects of the class (at most
 * `most`), at least two batches (a refill and a drain fit without
 * bouncing). A remote bin gets two batches: it only gathers objects for a
 * drain. */
static uint32_t class_capacity(unsigned bin, uint64_t budget, uint32_t most)
{
    const struct xmm_size_class *info = &xmm_size_classes[xmm_cpu_bin_class(bin)];
    uint64_t by_budget = bin < XMM_CLASS_COUNT ? budget / info->size : 0;
    if (by_budget > most)
        by_budget = most;
    uint32_t minimum = 2 * info->batch;
    return by_budget > minimum ? (uint32_t)by_budget : minimum;
}

/* A bin's growth limit at `level`: the level, within what the whole
 * budget allows the class, and never below its first capacity. */
static uint32_t limit_at_level(uint32_t first, uint32_t most, uint32_t level)
{
    uint32_t limit = most < level ? most : level;
    return limit > first ? limit : first;
}

static uint64_t slots_at_level(const uint32_t *first, const uint32_t *most, uint32_t level)
{
    uint64_t slots = 0;
    for (unsigned bin = 1; bin < XMM_CPU_BIN_COUNT; bin++)
        slots += limit_at_level(first[bin], most[bin], level);
    return slots;
}

/* The highest number of objects every bin may grow to with all the
 * limits in `room` slots (a binary search: the sum grows with the level).
 * One level for all classes, not room in proportion to each class's
 * growth: that gave the classes up to 64 B, whose budget allows 2048
 * objects each, most of the slab, and left a 4 KiB bin 339 slots, a
 * third of a round of bench/micro batch1000/4096 (bench/analysis.md). */
static uint32_t growth_level(const uint32_t *first, const uint32_t *most, uint64_t room)
{
    uint32_t low = 0, high = GROWN_CAPACITY_MOST;
    while (low < high) {
        uint32_t level = (low + high + 1) / 2;
        if (slots_at_level(first, most, level) <= room)
            low = level;
        else
            high = level - 1;
    }
    return low;
}

/* The largest budget the slots are laid out for. At the default (4 MiB)
 * the growth level (1079 objects; 1114 before the starting slots) already
 * fills the slab; a larger budget laid out in full gave the classes from
 * 4 KiB more slots only by taking them from every other class: at 8 MiB
 * the level fell to 930 objects, at 16 MiB to 734 (before the starting
 * slots), and a CPU cycling through 1000 blocks of 1 KiB missed on
 * every round where the default never did (bench/analysis.md). Above it
 * the budget bounds only the sum of the capacities (grow_capacity). */
#define LAYOUT_BUDGET_MOST ((uint64_t)4 << 20)

/* Lays out the bins of a slab. Each class bin starts with a thirty-second
 * of the per-CPU budget XMM_CPU_CACHE_SIZE (at most LAYOUT_BUDGET_MOST) in
 * objects of the class (at most FIRST_CAPACITY_MOST), and reserves room
 * to grow (grow_capacity) to that budget in its objects (at most
 * GROWN_CAPACITY_MOST), or to the growth level where the slab's 16-bit
 * slot indexes do not reach that far for every class. Slots a bin never
 * grows into cost address space only. */
static bool plan_capacities(void)
{
    uint64_t budget = xmm_config.cpu_cache_bytes;
    if (budget > LAYOUT_BUDGET_MOST)
        budget = LAYOUT_BUDGET_MOST;
    uint32_t first[XMM_CPU_BIN_COUNT], most[XMM_CPU_BIN_COUNT];
    uint64_t total_first = 0, remote_first = 0;
    for (unsigned bin = 1; bin < XMM_CPU_BIN_COUNT; bin++) {
        first[bin] = class_capacity(bin, budget / 32, FIRST_CAPACITY_MOST);
        most[bin] = class_capacity(bin, budget, GROWN_CAPACITY_MOST);
        if (bin < XMM_CLASS_COUNT)
            total_first += first[bin];
        else
            remote_first += first[bin];
    }
    /* The starting slots first (101 bins of 16), then each bin's own.
     * The last word stays unused: `end` (one past a bin's last slot) is
     * a 16-bit index. With the budget laid out at most 4 MiB the first
     * capacities take at most 21,053 of the 63,791 slots left: a check,
     * not a case (no per-CPU caches if it ever failed). */
    uint32_t next = XMM_SLAB_FIRST_SLOT;
    for (unsigned bin = 1; bin < XMM_CPU_BIN_COUNT; bin++) {
        starting_begin[bin] = (uint16_t)next;
        next += STARTING_SLOTS;
    }
    uint64_t room = XMM_SLAB_WORDS - 1 - next;
    if (total_first + remote_first > room)
        return false;
    uint32_t level = growth_level(first, most, room);
    for (unsigned bin = 1; bin < XMM_CPU_BIN_COUNT; bin++) {
        uint32_t capacity = first[bin];
        uint32_t limit = limit_at_level(first[bin], most[bin], level);
        bin_begin[bin] = (uint16_t)next;
        bin_end[bin] = (uint16_t)(next + capacity);
        next += limit;
        bin_limit[bin] = (uint16_t)next;
        starting_end[bin] =
            (uint16_t)(starting_begin[bin] + (capacity < STARTING_SLOTS ? capacity : STARTING_SLOTS));
        first_header[bin] = header_value(bin, starting_begin[bin], starting_begin[bin]);
    }
    return next < XMM_SLAB_WORDS;
}

/* The bytes a bin holds at its first capacity in its own slots: what
 * it takes from its slab's budget when it moves out (move_out). */
static uint64_t first_capacity_bytes(unsigned bin)
{
    return (uint64_t)(bin_end[bin] - bin_begin[bin]) *
           xmm_size_classes[xmm_cpu_bin_class(bin)].size;
}

static uint64_t node_of_slab(int slab)
{
    return index_is_mm_cid ? 0 : (uint64_t)xmm_node_of_cpu(slab);
}

/* Maps the slabs, each bound to its CPU's node (a CPU's cache metadata
 * lives there), and writes nothing: a slab is set up on its first use
 * (slab_in_use), so a possible CPU no thread of the process runs on costs
 * address space only, not the page of its headers (512 KiB of memory on a
 * 128-CPU machine, for a program that runs on one). Except under
 * XMM_FREE_CHECK=deferred: the section that swaps a pending free
 * (xmm_rseq_swap_pending) knows a release from header 1's lock, which a
 * zero header does not show, so there every slab is set up here. */
static bool map_slabs(void)
{
    size_t bytes = (size_t)slab_count << XMM_SLAB_SHIFT;
    xmm_cpu_slabs = xmm_os_map(bytes, (size_t)1 << XMM_SLAB_SHIFT);
    if (!xmm_cpu_slabs)
        return false;
    for (int slab = 0; slab < slab_count; slab++) {
        uint64_t *words = slab_words(slab);
        xmm_numa_bind(words, (size_t)1 << XMM_SLAB_SHIFT, (int)node_of_slab(slab));
        if (xmm_config.free_deferred) {
            words[0] = node_of_slab(slab);
            memcpy(&words[1], &first_header[1], (XMM_CPU_BIN_COUNT - 1) * sizeof(uint64_t));
            slab_growth_of[slab].touched = slab_growth_of[slab].ready = true;
        }
    }
    return true;
}

/* Every index the kernel writes into an rseq area (cpu_id, mm_cid) is below
 * the number of possible CPUs it was booted with, whatever the CPUs the
 * process may run on now: slabs for all of them, or no per-CPU caches when
 * that bound is unknown or too large to map (platform.h). */
static bool size_slabs(void)
{
    slab_count = xmm_topology.cpu_index_bound;
    return slab_count > 0 && slab_count <= XMM_MAX_SLABS;
}

/* Makes `area` the calling thread's: the hit paths read both. */
static void use_area(void *area)
{
    xmm_thread.rseq_index = xmm_rseq_index(area);
    __atomic_signal_fence(__ATOMIC_SEQ_CST); /* area last: a handler sees all or none */
    xmm_thread.rseq_area = area;
}

/* An area the slabs can serve: the kernel has filled it (glibc marks a
 * thread whose registration failed with cpu_id -2, and a fresh area holds
 * -1) and its indexes are in range. Checked once per thread, at attach. */
static bool area_usable(void *area)
{
    uint32_t cpu_id = __atomic_load_n(&((const struct xmm_rseq_area *)area)->cpu_id, __ATOMIC_RELAXED);
    uint32_t index = __atomic_load_n(xmm_rseq_index(area), __ATOMIC_RELAXED);
    return cpu_id < (uint32_t)slab_count && index < (uint32_t)slab_count;
}

/* glibc's area for the calling thread if it is usable; else, with
 * XMM_RSEQ=own, XMM's own area registered now; else NULL. */
static void *find_area(enum rseq_mode *mode)
{
    void *area = xmm_os_rseq_libc_area();
    if (area) {
        *mode = RSEQ_LIBC;
        return area_usable(area) ? area : NULL;
    }
    if (xmm_config.rseq == XMM_RSEQ_OWN && xmm_os_rseq_register(&own_area)) {
        *mode = RSEQ_OWN;
        if (area_usable(&own_area))
            return &own_area;
        xmm_os_rseq_unregister(&own_area);
    }
    return NULL;
}

bool xmm_cpu_cache_init_core(void)
{
    if (xmm_config.rseq == XMM_RSEQ_OFF || !size_slabs())
        return false;
    index_is_mm_cid = xmm_os_rseq_feature_size() >= 28 && xmm_topology.node_count == 1 &&
                      xmm_nodes == 1;
    xmm_rseq_index_offset = index_is_mm_cid ? XMM_RSEQ_MM_CID_OFFSET : XMM_RSEQ_CPU_ID_OFFSET;
    enum rseq_mode mode = RSEQ_OFF;
    void *area = find_area(&mode);
    if (!area)
        return false;
    if (!plan_capacities() || !map_slabs()) {
        if (mode == RSEQ_OWN)
            xmm_os_rseq_unregister(area);
        return false;
    }
    rseq_mode = mode;
    have_membarrier = xmm_os_membarrier_rseq_register() == 0;
    use_area(area);
    return true;
}

static void unregister_own_area(void *area)
{
    xmm_thread.rseq_area = NULL;
    xmm_rseq_attach_refused = true; /* later allocations of this thread: thread cache */
    xmm_os_rseq_unregister(area);
}

void xmm_cpu_cache_init_hooks(void)
{
    if (rseq_mode == RSEQ_OWN) {
        xmm_os_thread_key_create(&own_area_key, unregister_own_area);
        xmm_os_thread_key_set(own_area_key, &own_area);
    }
    __atomic_store_n(&hooks_done, true, __ATOMIC_RELEASE);
}

static void unlock_all_headers_empty(void);

/* The child keeps the forking thread's rseq registration and the slabs.
 * A drain of every CPU's cache (release_all_slabs) cut off by the fork left
 * headers locked, some of them half drained: they are reopened empty (their
 * objects leak in the child; reopened with their old contents, objects
 * already drained would be handed out twice). membarrier registration
 * belongs to the address space: it is renewed. */
void xmm_cpu_cache_after_fork_child(void)
{
    if (rseq_mode == RSEQ_OFF)
        return;
    if (xmm_lock_holder(&release_lock) == XMM_LOCK_HELD_BY_OTHER) {
        unlock_all_headers_empty();
        xmm_lock_reset(&release_lock);
    }
    have_membarrier = xmm_os_membarrier_rseq_register() == 0;
}

bool xmm_cpu_cache_in_use(void)
{
    return rseq_mode != RSEQ_OFF;
}

const char *xmm_cpu_cache_detail(void)
{
    switch (rseq_mode) {
    case RSEQ_LIBC:
        return index_is_mm_cid ? "rseq (glibc's area), slabs by mm_cid"
                               : "rseq (glibc's area), slabs by cpu_id";
    case RSEQ_OWN:
        return index_is_mm_cid ? "rseq (XMM's own area), slabs by mm_cid"
                               : "rseq (XMM's own area), slabs by cpu_id";
    default:
        return "per-thread caches (no rseq)";
    }
}

/* Gives the calling thread an rseq area for the per-CPU caches. false: it
 * uses a per-thread cache instead. */
bool xmm_cpu_cache_attach(void)
{
    if (rseq_mode == RSEQ_OFF || xmm_rseq_attach_refused)
        return false;
    if (xmm_thread.rseq_area)
        return true;
    if (!__atomic_load_n(&hooks_done, __ATOMIC_ACQUIRE))
        return false;
    enum rseq_mode mode = RSEQ_OFF;
    void *area = find_area(&mode);
    if (!area || mode != rseq_mode) {
        if (area && mode == RSEQ_OWN)
            xmm_os_rseq_unregister(area);
        xmm_rseq_attach_refused = true;
        return false;
    }
    if (mode == RSEQ_OWN)
        xmm_os_thread_key_set(own_area_key, area);
    use_area(area);
    return true;
}

/* ---- slow paths ------------------------------------------------------------------------ */

/* The calling thread's index field (its area is xmm_thread.rseq_area). */
static const uint32_t *index_of(void *area)
{
    (void)area;
    return xmm_thread.rseq_index;
}

static bool slab_ready(uint32_t slab)
{
    return __atomic_load_n(&slab_growth_of[slab].ready, __ATOMIC_ACQUIRE);
}

/* The slab the calling thread runs on, set up if it is not yet: its node
 * word and headers written by a critical section on it
 * (xmm_rseq_set_up_slab), `touched` set before (a release that sees it
 * not set reads none of the slab: its headers are all 0 then) and `ready`
 * after. A thread that moves to another slab meanwhile sets up that one
 * instead; a section aborted on the way leaves the slab touched, not
 * ready, and its next slow path completes it. *set_up_now: this call
 * set it up. */
static uint32_t slab_in_use(void *area, bool *set_up_now)
{
    *set_up_now = false;
    /* The kernel writes -1 into an area that was unregistered, and 0 into
     * its mm_cid: a component that took rseq over from glibc in this
     * thread after its first allocation. Its hit paths then ran on slab
     * 0 without the kernel's restarts, beside the thread that has that
     * index, and handed blocks out twice; this stops at its next miss. */
    if (XMM_UNLIKELY(__atomic_load_n(&((struct xmm_rseq_area *)area)->cpu_id,
                                     __ATOMIC_RELAXED) == UINT32_MAX))
        xmm_fatal("xmm: this thread's rseq area was unregistered after the thread first "
                  "allocated; per-CPU caches need it registered for the thread's life "
                  "(GLIBC_TUNABLES=glibc.pthread.rseq=0 lets another component register "
                  "its own; XMM_RSEQ=0 avoids per-CPU caches)\n");
    for (;;) {
        uint32_t slab = __atomic_load_n(index_of(area), __ATOMIC_RELAXED);
        /* Checked at each miss, not on the hit path: the bound came from
         * the CPUs sysfs listed and the process was allowed at start
         * (platform/linux.c); a CPU beyond both (a sysfs that lists too
         * few, then wider affinity) would have the hit path use memory
         * past the slabs. Stop before more of it. */
        if (XMM_UNLIKELY(slab >= (uint32_t)slab_count))
            xmm_fatal("xmm: the kernel gave this thread CPU index %u, beyond the %d per-CPU "
                      "slabs sized at start (/sys/devices/system/cpu/possible and the CPUs "
                      "allowed then); XMM_RSEQ=0 avoids per-CPU caches\n",
                      (uint64_t)slab, slab_count);
        struct growth *slab_growth = &slab_growth_of[slab];
        if (XMM_LIKELY(slab_ready(slab)))
            return slab;
        if (!__atomic_load_n(&slab_growth->touched, __ATOMIC_RELAXED))
            __atomic_store_n(&slab_growth->touched, true, __ATOMIC_SEQ_CST);
        if (xmm_rseq_set_up_slab(area, index_of(area), xmm_cpu_slabs, slab,
                                 node_of_slab((int)slab), first_header, XMM_CPU_BIN_COUNT)) {
            __atomic_store_n(&slab_growth->ready, true, __ATOMIC_RELEASE);
            *set_up_now = true;
            return slab;
        }
    }
}

/* Slabs a pass over all of them reads: the touched ones. */
static bool slab_touched(int slab)
{
    return __atomic_load_n(&slab_growth_of[slab].touched, __ATOMIC_ACQUIRE);
}

/* Claims the page of a refilled object for cache `owner`: a FRESH page
 * becomes its, another cache's becomes SHARED (arena.h, page owner). The
 * owner is a byte of the page word: the claim changes that byte alone,
 * with 32-bit atomics as every other access of the word. */
static void claim_page(xmm_page_info *word, uint8_t owner)
{
    xmm_page_info seen = __atomic_load_n(word, __ATOMIC_RELAXED);
    for (int attempt = 0; attempt < 2; attempt++) {
        unsigned now = XMM_PAGE_INFO_OWNER(seen);
        /* A word without a class (a trim cleared it) is left alone. */
        if (XMM_PAGE_INFO_CLASS(seen) == 0 || now == owner || now == XMM_PAGE_OWNER_SHARED)
            return;
        uint32_t wanted = now == XMM_PAGE_OWNER_FRESH ? owner : XMM_PAGE_OWNER_SHARED;
        if (__atomic_compare_exchange_n(word, &seen,
                                        (seen & ~XMM_PAGE_INFO_OWNER_BITS) |
                                            wanted << XMM_PAGE_INFO_OWNER_SHIFT,
                                        false, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
            return;
    }
}

/* Claims the pages of a refill's objects for this CPU's cache, for the
 * classes with remote bins. Once per page: a batch is mostly consecutive
 * objects of one span. */
static void claim_pages(void *area, unsigned size_class, void *const *objects, uint32_t count)
{
    if (size_class > XMM_SUBLINE_CLASSES)
        return;
    uint8_t owner = (uint8_t)__atomic_load_n(index_of(area), __ATOMIC_RELAXED);
    xmm_page_info *last = NULL;
    for (uint32_t i = 0; i < count; i++) {
        xmm_page_info *word = xmm_page_word_of(objects[i]);
        if (word != last)
            claim_page(word, owner);
        last = word;
    }
}

/* Takes back a reservation of grow_capacity that did not widen a bin.
 * Never below 0: a release may have set the count to 0 since. */
static void give_back_growth(struct growth *slab_growth, uint64_t bytes)
{
    uint64_t counted = __atomic_load_n(&slab_growth->capacity_bytes, __ATOMIC_RELAXED);
    while (!__atomic_compare_exchange_n(&slab_growth->capacity_bytes, &counted,
                                        counted > bytes ? counted - bytes : 0, false,
                                        __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
}

/* A miss on malloc after the bin drained since it last grew says this
 * CPU's threads cycle through more objects of the class than its bin
 * keeps (full, drained, then empty): the bin of the slab in use grows by
 * a batch (up to its limit, and while the capacities of the slab's bins
 * that moved out stay within XMM_CPU_CACHE_SIZE), so that the frees of
 * the next cycle keep more of them. A CPU that only frees (the
 * consumer of a producer/consumer pair) or only allocates (the producer)
 * does not grow its bins: the first would only hold more idle objects.
 * A release (trim, idle) sets every bin back. TCMalloc resizes its
 * per-CPU bins on misses too (its docs/design.md); XMM has no stealing
 * between bins: the budget bounds the sum of the capacities, first ones
 * included.
 *
 * Safe against the critical sections on the slab's CPU: they commit with
 * a 32-bit store of `current`, which fails this CAS (tried again), and
 * never write `end`; a section that read the old `end` sees a smaller
 * bin, which is only a miss. A locked header (a drain) is left alone. */
static void grow_capacity(void *area, unsigned bin)
{
    uint32_t slab = __atomic_load_n(index_of(area), __ATOMIC_RELAXED);
    struct growth *slab_growth = &slab_growth_of[slab];
    if (!__atomic_load_n(&slab_growth->drained_since_grown[bin], __ATOMIC_RELAXED))
        return;
    uint64_t *header = &slab_words((int)slab)[bin];
    uint64_t value = __atomic_load_n(header, __ATOMIC_RELAXED);
    unsigned end = header_end(value);
    /* A bin still in its starting slots (or locked) moves before it grows. */
    if (header_begin(value) != bin_begin[bin])
        return;
    __atomic_store_n(&slab_growth->drained_since_grown[bin], 0, __ATOMIC_RELAXED);
    if (end >= bin_limit[bin])
        return;
    unsigned size_class = xmm_cpu_bin_class(bin);
    unsigned batch = xmm_size_classes[size_class].batch;
    unsigned wider = end + batch < bin_limit[bin] ? end + batch : bin_limit[bin];
    uint64_t bytes = (uint64_t)(wider - end) * xmm_size_classes[size_class].size;
    if (__atomic_add_fetch(&slab_growth->capacity_bytes, bytes, __ATOMIC_RELAXED) >
        xmm_config.cpu_cache_bytes) {
        give_back_growth(slab_growth, bytes);
        return;
    }
    for (;;) {
        uint64_t grown = header_with_end(value, wider);
        if (__atomic_compare_exchange_n(header, &value, grown, false, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED))
            return;
        if (header_begin(value) != bin_begin[bin] || header_end(value) != end)
            break; /* locked by a drain, or grown by another thread */
    }
    give_back_growth(slab_growth, bytes);
}

/* Moves bin `bin` of the slab in use to its own slots, if it is in its
 * starting slots and `wanted` more objects would not fit there; true if
 * it moved. A move refused (the header locked by a release, or changed
 * under the section) leaves the bin where it was: the caller then drains,
 * as for a full bin. */
static bool move_out(void *area, unsigned bin, unsigned wanted)
{
    uint32_t slab = __atomic_load_n(index_of(area), __ATOMIC_RELAXED);
    uint64_t header = __atomic_load_n(&slab_words((int)slab)[bin], __ATOMIC_RELAXED);
    if (header_begin(header) != starting_begin[bin] ||
        header_current(header) + wanted <= header_end(header))
        return false;
    if (!xmm_rseq_move_bin(area, index_of(area), xmm_cpu_slabs, bin, starting_begin[bin],
                           bin_begin[bin], header_of(bin_begin[bin], bin_end[bin], 0)))
        return false;
    /* The section reads the index again: a thread that moved to another
     * CPU since counts that slab's move on this one, one first capacity
     * off on each until a release sets both counts again. A move whose
     * section committed before a release locked the header but which
     * counts after the release reset the count is counted twice (the bin
     * is counted again when it next moves out, or when it is reopened in
     * place): one first capacity too many until the next release. */
    __atomic_add_fetch(&slab_growth_of[slab].capacity_bytes, first_capacity_bytes(bin),
                       __ATOMIC_RELAXED);
    return true;
}

/* Objects a refill of `size_class` brings to slab `slab`: slow start, as
 * gperftools' thread caches grow each list's refills from one object. The
 * class's first refill on a slab (since the last release) brings one
 * object, each next one twice as many, up to the class's batch from the
 * sixth on. A class a program uses for a few objects (most classes of a
 * short process: an interpreter's start-up, a shell) then cuts one span
 * instead of a batch's worth (up to 128 KiB), which a new span's tagging
 * writes through: /usr/bin/python3 -c pass peaked at 12.3 MB with whole
 * batches, 9.7 with one-object refills, glibc 8.1 (docs/design.md, "Slow
 * start"). A class in steady use reaches whole batches after 31 objects;
 * only whole batches take transfer batches (xmm_central_refill). */
static unsigned refill_count(uint32_t slab, unsigned size_class)
{
    unsigned batch = xmm_size_classes[size_class].batch;
    uint8_t *started = &slab_growth_of[slab].refills_started[size_class];
    unsigned refills = __atomic_load_n(started, __ATOMIC_RELAXED);
    unsigned wanted = 1u << (refills < 8 ? refills : 8);
    if (wanted >= batch)
        return batch;
    __atomic_store_n(started, (uint8_t)(refills + 1), __ATOMIC_RELAXED);
    return wanted;
}

/* A walk over the slab's class bins runs once its refills since the last
 * one add up to the budget (XMM_CPU_CACHE_SIZE), at least this much. */
#define COLD_WALK_MIN_BYTES ((uint64_t)1 << 20)

/* Pops up to `most` objects of bin `bin` of the slab of the CPU the
 * thread runs on, with its own critical sections, and gives them to the
 * central layer with no carver. Stops early when the bin is empty. */
static void drain_bin_here(void *area, unsigned bin, uint64_t most)
{
    while (most) {
        void *objects[XMM_MAX_BATCH];
        uint64_t node;
        uint32_t wanted = most < XMM_MAX_BATCH ? (uint32_t)most : XMM_MAX_BATCH;
        uint32_t count = xmm_rseq_pop_batch(area, index_of(area), xmm_cpu_slabs, bin, objects,
                                            wanted, &node);
        if (!count)
            return;
        xmm_central_drain((int)node, xmm_cpu_bin_class(bin), objects, count,
                          XMM_CENTRAL_NO_CARVER);
        most -= count;
    }
}

/* Drains the class bins of the calling thread's slab that no refill
 * touched since the last walk: a CPU that refilled its whole budget's
 * worth meanwhile has turned its cache over, and a bin that took no part
 * holds blocks its threads stopped asking for. Each bin keeps up to two
 * batches however large its objects, so a program whose block sizes
 * drift (bench/workloads/size-drift.c) left two batches in every class
 * it had passed: 13 MiB in one CPU's cache, each block pinning its span
 * (docs/design.md, "Cold bins"). A bin that only hits (a cycle that fits
 * the cache) is drained too, and refills once. Its own critical sections
 * (xmm_rseq_pop_batch) on the CPU the thread runs on: a thread that moved
 * since drains another CPU's cold bins, which is as good. At most what the
 * bin held when the walk looked: threads refilling and freeing the class
 * on that CPU between the pops cannot keep the walk going. The blocks go
 * to the central layer with no carver (xmm_central_drain): a whole batch
 * becomes a transfer batch, which the central layer's own cold check
 * returns to its spans if no refill takes it, and fewer objects (the
 * classes from 4 KiB, whose batches are smaller than a pop) go straight
 * back to their spans. TCMalloc reclaims idle per-CPU
 * caches in its background thread (its docs/design.md); this is driven
 * by the refills instead, so a program with no misses pays nothing. */
static void drain_cold_bins(void *area, uint32_t slab)
{
    struct growth *slab_growth = &slab_growth_of[slab];
    uint64_t refilled[sizeof slab_growth->refilled_since_walk / sizeof(uint64_t)];
    for (unsigned word = 0; word < sizeof refilled / sizeof refilled[0]; word++)
        refilled[word] =
            __atomic_exchange_n(&slab_growth->refilled_since_walk[word], 0, __ATOMIC_RELAXED);
    for (unsigned bin = 1; bin < XMM_CLASS_COUNT; bin++) {
        if (refilled[bin / 64] >> (bin % 64) & 1)
            continue;
        drain_bin_here(area, bin, cached_in((int)slab, bin));
    }
}

/* Counts a refill of `count` objects of `size_class` toward the slab's
 * next cold-bin walk, and walks when it is due (one thread: the exchange). */
static void count_refill(void *area, uint32_t slab, unsigned size_class, uint32_t count)
{
    struct growth *slab_growth = &slab_growth_of[slab];
    uint64_t *refilled = &slab_growth->refilled_since_walk[size_class / 64];
    uint64_t bit = (uint64_t)1 << (size_class % 64);
    if (!(__atomic_load_n(refilled, __ATOMIC_RELAXED) & bit))
        __atomic_fetch_or(refilled, bit, __ATOMIC_RELAXED);
    uint64_t due = xmm_config.cpu_cache_bytes > COLD_WALK_MIN_BYTES ? xmm_config.cpu_cache_bytes
                                                                     : COLD_WALK_MIN_BYTES;
    uint64_t bytes = (uint64_t)count * xmm_size_classes[size_class].size;
    if (__atomic_add_fetch(&slab_growth->refilled_bytes, bytes, __ATOMIC_RELAXED) < due ||
        __atomic_exchange_n(&slab_growth->refilled_bytes, 0, __ATOMIC_RELAXED) < due)
        return;
    drain_cold_bins(area, slab);
}

void *xmm_cpu_cache_alloc_slow(unsigned size_class)
{
    void *area = xmm_thread.rseq_area;
    /* One read of the index: the node and the carver of one slab. */
    bool set_up_now;
    uint32_t slab = slab_in_use(area, &set_up_now);
    int node = (int)slab_words((int)slab)[0];
    int carver = (int)slab;
    void *objects[XMM_MAX_BATCH];
    uint32_t count = xmm_central_refill(node, size_class, objects, refill_count(slab, size_class),
                                        carver);
    if (!count)
        return NULL;
    xmm_central_hand_out_order(objects, count);
    claim_pages(area, size_class, objects, count);
    grow_capacity(area, size_class);
    void *object = objects[--count];
    if (count)
        move_out(area, size_class, count);
    uint32_t pushed = count ? xmm_rseq_push_batch(area, index_of(area), xmm_cpu_slabs,
                                                  size_class, objects, count, (uint64_t)node)
                            : 0;
    /* Not all taken: the thread moved to another node's CPU, or the slab
     * is full or locked for draining. The rest goes back. */
    if (pushed < count)
        xmm_central_drain(node, size_class, objects, count - pushed, carver);
    count_refill(area, slab, size_class, count + 1);
    __atomic_fetch_add(&slow_counts.allocations[size_class], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&slow_counts.refills, 1, __ATOMIC_RELAXED);
    /* Upkeep reads the clock: once per 64 refills of a thread is enough. */
    if ((++refills_since_upkeep & 63) == 0)
        xmm_central_maintain(node, xmm_os_now_ns());
    return object;
}

/* The bin xmm_rseq_push_owned picks for `object` on this CPU (again: the
 * thread may have moved since, and then this one is the right one). */
static unsigned bin_for(void *area, const void *object, unsigned size_class)
{
    if (size_class > XMM_SUBLINE_CLASSES)
        return size_class;
    uint8_t owner = xmm_page_owner_load(object);
    uint8_t self = (uint8_t)__atomic_load_n(index_of(area), __ATOMIC_RELAXED);
    return owner < XMM_PAGE_OWNER_FRESH && owner != self ? xmm_cpu_remote_bin(size_class)
                                                          : size_class;
}

/* A class bin of the slab in use drained (grow_capacity reads it). Written
 * only when it changes: drains are frequent where it matters. */
static void note_drain(void *area, unsigned bin)
{
    uint32_t slab = __atomic_load_n(index_of(area), __ATOMIC_RELAXED);
    uint8_t *drained = &slab_growth_of[slab].drained_since_grown[bin];
    if (!__atomic_load_n(drained, __ATOMIC_RELAXED))
        __atomic_store_n(drained, 1, __ATOMIC_RELAXED);
}

void xmm_cpu_cache_free_slow(void *object, unsigned size_class, int result)
{
    void *area = xmm_thread.rseq_area;
    bool set_up_now;
    (void)slab_in_use(area, &set_up_now);
    unsigned bin = bin_for(area, object, size_class);
    /* The node, from the page word again. A trim may have cleared that
     * word while the object was live (central.c, purge_free_objects): then
     * the object goes back to its span, found through the address map. */
    xmm_page_info info = xmm_page_info_of(object);
    if (XMM_PAGE_INFO_CLASS(info) != size_class) {
        result = XMM_RSEQ_FOREIGN_UNKNOWN;
    } else if (set_up_now) {
        /* The push missed on a slab not set up yet (full, or another
         * node's while its node word was still 0): again, on it now. */
        result = xmm_rseq_push(area, index_of(area), &xmm_cpu_slabs, bin, object, info);
        if (result == XMM_RSEQ_PUSHED)
            return;
    }
    /* A bin full in its starting slots moves to its own and takes the
     * object there, without a drain. */
    if (result == XMM_RSEQ_FULL && move_out(area, bin, 1)) {
        result = xmm_rseq_push(area, index_of(area), &xmm_cpu_slabs, bin, object, info);
        if (result == XMM_RSEQ_PUSHED)
            return;
    }
    if (result == XMM_RSEQ_FULL) {
        void *objects[XMM_MAX_BATCH];
        uint64_t slab_node;
        /* The carver whose refills take the batch back first: this CPU's
         * for its own bin (a thread moved since the read only makes it
         * another CPU's), none for the remote bin, whose objects lie on
         * other CPUs' pages and must not come back here. */
        int carver = bin == size_class
                         ? (int)__atomic_load_n(index_of(area), __ATOMIC_RELAXED)
                         : XMM_CENTRAL_NO_CARVER;
        uint32_t count = xmm_rseq_pop_batch(area, index_of(area), xmm_cpu_slabs, bin, objects,
                                            xmm_size_classes[size_class].batch, &slab_node);
        /* Moved to another node's CPU since the read: that carver never
         * refills from this node, so its own stack here would only wait
         * for the upkeep pass. A slab not set up yet has no node word to
         * compare (reading it would map its first page): no carver. */
        if (carver != XMM_CENTRAL_NO_CARVER &&
            (!slab_ready((uint32_t)carver) || slab_words(carver)[0] != slab_node))
            carver = XMM_CENTRAL_NO_CARVER;
        if (count) {
            if (bin == size_class)
                note_drain(area, bin);
            xmm_central_drain((int)slab_node, size_class, objects, count, carver);
            __atomic_fetch_add(&slow_counts.drains, 1, __ATOMIC_RELAXED);
        }
        result = xmm_rseq_push(area, index_of(area), &xmm_cpu_slabs, bin, object, info);
        if (result == XMM_RSEQ_PUSHED)
            return;
    }
    if (result == XMM_RSEQ_FOREIGN)
        __atomic_fetch_add(&slow_counts.cross_node_frees, 1, __ATOMIC_RELAXED);
    /* XMM_RSEQ_FOREIGN_UNKNOWN: not counted as another node's. */
    /* Another node's object goes home, never into this CPU's cache; and a
     * slab that stays full or locked sends the object straight back. */
    __atomic_fetch_add(&slow_counts.frees[size_class], 1, __ATOMIC_RELAXED);
    xmm_central_return_object(object);
}

/* ---- draining every CPU's cache ------------------------------------------------------------ */

/* Locks a header, keeping its `current`, and notes its begin (which the
 * lock hides) unless it was locked already: a header a release left
 * locked keeps the begin noted then. A header still 0 (its slab's set-up
 * cut short: slab_in_use) is left alone and noted as such (begin 0): it
 * holds nothing, and the set-up may still store over it. */
static void lock_header(int slab, unsigned bin)
{
    uint64_t *header = &slab_words(slab)[bin];
    uint64_t value = __atomic_load_n(header, __ATOMIC_RELAXED);
    uint64_t locked;
    if (value == 0) {
        slab_growth_of[slab].locked_begin[bin] = 0;
        return;
    }
    do {
        locked = header_current(value) | XMM_SLAB_LOCKED_BITS;
    } while (!__atomic_compare_exchange_n(header, &value, locked, false, __ATOMIC_ACQ_REL,
                                          __ATOMIC_RELAXED));
    if (!header_locked(value))
        slab_growth_of[slab].locked_begin[bin] = (uint16_t)header_begin(value);
}

/* Undoes lock_header, keeping the slab's contents where they are (a bin's
 * own slots or its starting slots). */
static void unlock_header(int slab, unsigned bin)
{
    uint64_t *header = &slab_words(slab)[bin];
    unsigned begin = slab_growth_of[slab].locked_begin[bin];
    if (begin == 0)
        return; /* not locked: lock_header */
    uint64_t value = __atomic_load_n(header, __ATOMIC_RELAXED);
    while (!__atomic_compare_exchange_n(header, &value,
                                        header_value(bin, begin, header_current(value)), false,
                                        __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
        ;
}

/* unlock_header for a release without the fence: a bin reopened in its
 * own slots, at its first capacity, counts that capacity again. */
static void reopen_in_place(int slab, unsigned bin)
{
    unlock_header(slab, bin);
    if (slab_growth_of[slab].locked_begin[bin] == bin_begin[bin])
        __atomic_add_fetch(&slab_growth_of[slab].capacity_bytes, first_capacity_bytes(bin),
                           __ATOMIC_RELAXED);
}

/* Keeps, of the `count` objects at `slots`, those that hold the cache
 * tag, each once, packed at the front; returns how many. Two passes over
 * the bin (its header is locked: no other thread touches it or its
 * objects): the first flips a bit of each tagged object's word, so that a
 * second copy of it, and an object that lost its tag, fails; the second
 * puts the tag back. Exact for a whole bin, where a batch's own check
 * (central.c, return_objects_to_spans) sees only copies within one
 * batch: a block's two copies, from a second free after a write after
 * free, split between a parked full batch and the rest, were linked into
 * its span twice (a review: the list then looped, and a trim hung). The
 * flipped word still decodes to the object's span, as the drain's own
 * marker does. */
static unsigned keep_tagged_once(uint64_t *slots, unsigned count)
{
    const uintptr_t tag = (uintptr_t)xmm_free_secret, flipped = tag ^ 8;
    unsigned kept = 0;
    for (unsigned i = 0; i < count; i++) {
        xmm_free_word *word = (xmm_free_word *)(uintptr_t)slots[i];
        if (XMM_UNLIKELY(*word != tag)) {
            xmm_central_report_untagged(word);
            continue;
        }
        *word = flipped;
        slots[kept++] = slots[i];
    }
    for (unsigned i = 0; i < kept; i++)
        *(xmm_free_word *)(uintptr_t)slots[i] = tag;
    return kept;
}

/* Moves the objects of one locked class header to the central layer and
 * leaves it locked and empty in its starting slots (`current` = their
 * begin): see release_all_slabs for why it cannot be unlocked yet. */
static void drain_locked(int slab, unsigned bin)
{
    uint64_t *words = slab_words(slab);
    unsigned begin = slab_growth_of[slab].locked_begin[bin];
    if (begin == 0)
        return; /* not locked: lock_header */
    unsigned current = header_current(__atomic_load_n(&words[bin], __ATOMIC_ACQUIRE));
    xmm_assert(begin == starting_begin[bin] || begin == bin_begin[bin]);
    xmm_assert(current >= begin);
    unsigned size_class = xmm_cpu_bin_class(bin);
    unsigned batch = xmm_size_classes[size_class].batch;
    current = begin + keep_tagged_once(&words[begin], current - begin);
    for (unsigned first = begin; first < current; first += batch) {
        unsigned count = current - first < batch ? current - first : batch;
        xmm_central_drain((int)words[0], size_class, (void *const *)&words[first], count,
                          XMM_CENTRAL_NO_CARVER);
    }
    slab_growth_of[slab].locked_begin[bin] = starting_begin[bin];
    __atomic_store_n(&words[bin], (uint64_t)starting_begin[bin] | XMM_SLAB_LOCKED_BITS,
                     __ATOMIC_RELEASE);
}

/* Checks a block taken from the pending slot tagged `tag` and tags it
 * free (the global layer's, passed in by the release: this layer cannot
 * tell a double free from a live block); false when it was reported
 * instead. */
typedef bool (*pending_check)(void *object, uint64_t tag);

static void release_current_slab(pending_check check);

/* The pending block of every slab, taken by a release (release_lock), and
 * the slab it was taken from. */
static struct {
    void *object;
    int slab;
} released_pending[XMM_MAX_SLABS] __attribute__((aligned(64)));

/* Empties the pending slot of every slab, whose headers are locked and
 * fenced (no swap section commits: rseq_percpu.h). */
static int take_all_pending(void)
{
    int taken = 0;
    for (int slab = 0; slab < slab_count; slab++) {
        if (!slab_touched(slab))
            continue;
        uint64_t *slot = &slab_words(slab)[XMM_SLAB_PENDING_WORD];
        void *object = (void *)__atomic_load_n(slot, __ATOMIC_ACQUIRE);
        if (object) {
            __atomic_store_n(slot, 0, __ATOMIC_RELAXED);
            released_pending[taken].object = object;
            released_pending[taken++].slab = slab;
        }
    }
    return taken;
}

static void complete_pending(void *object, uint64_t tag, pending_check check)
{
    if (object && check(object, tag))
        xmm_central_return_object(object);
}

/* The capacity count of slab `slab` from its headers: the capacity of
 * every bin in its own slots. Only where no other thread can move or
 * grow a bin (the child of a fork). */
static uint64_t counted_capacity(int slab)
{
    uint64_t bytes = 0;
    for (unsigned bin = 1; bin < XMM_CPU_BIN_COUNT; bin++) {
        uint64_t value = __atomic_load_n(&slab_words(slab)[bin], __ATOMIC_RELAXED);
        if (header_begin(value) == bin_begin[bin])
            bytes += (uint64_t)(header_end(value) - bin_begin[bin]) *
                     xmm_size_classes[xmm_cpu_bin_class(bin)].size;
    }
    return bytes;
}

static void unlock_all_headers_empty(void)
{
    for (int slab = 0; slab < slab_count; slab++) {
        if (!slab_touched(slab))
            continue;
        for (unsigned bin = 1; bin < XMM_CPU_BIN_COUNT; bin++) {
            uint64_t *header = &slab_words(slab)[bin];
            uint64_t value = __atomic_load_n(header, __ATOMIC_RELAXED);
            if (header_locked(value))
                __atomic_store_n(header,
                                 header_value(bin, starting_begin[bin], starting_begin[bin]),
                                 __ATOMIC_RELEASE);
        }
        /* The release the fork cut off may not have reset the count: the
         * bins reopened here in their starting slots would be counted
         * again when they move out. */
        __atomic_store_n(&slab_growth_of[slab].capacity_bytes, counted_capacity(slab),
                         __ATOMIC_RELAXED);
    }
}

/* Lock every header (a pop then sees an empty slab, a push a full one),
 * let membarrier restart every critical section that read a header before
 * it was locked, then drain and unlock. A commit that slipped in before the
 * membarrier only moved `current`, which the lock keeps.
 *
 * A section reads `current` and `begin`/`end` with separate loads, and an
 * interrupt that is not a preemption (a TLB shootdown, a wake-up IPI)
 * between them does not restart it. So a section that began after the
 * membarrier can read the `current` of a locked, not yet drained header,
 * then the `begin`/`end` of the same header unlocked: it would pop a
 * drained object, or push above the drained ones and commit their count
 * back (objects handed out twice). Hence two steps: drain, leaving each
 * header locked with `current` = `begin`; a second membarrier restarts
 * every section that may have read an old `current`; then unlock, which
 * no longer changes `current`. If that membarrier fails the headers stay
 * locked (and empty: every operation takes its slow path) until the next
 * drain reopens them. */
static void release_all_slabs(pending_check check)
{
    if (!xmm_lock_acquire(&release_lock))
        return; /* a signal handler that interrupted this thread's drain */
    int pending = 0;
    for (int slab = 0; slab < slab_count; slab++) {
        if (!slab_touched(slab))
            continue;
        for (unsigned bin = 1; bin < XMM_CPU_BIN_COUNT; bin++)
            lock_header(slab, bin);
    }
    /* Every bin reopens empty in its starting slots (drain_locked), or,
     * without the fence, where it was at its first capacity
     * (reopen_in_place, which counts it again): the capacity count restarts
     * while no bin can grow or move (locked headers). Without the fence a
     * bin may hold more than that for a while: its pushes miss until
     * drains bring it under. */
    for (int slab = 0; slab < slab_count; slab++) {
        if (!slab_touched(slab))
            continue;
        __atomic_store_n(&slab_growth_of[slab].capacity_bytes, 0, __ATOMIC_RELAXED);
        /* And every class starts slowly again (refill_count): after an
         * idle release the next burst cuts what it uses. */
        for (unsigned size_class = 1; size_class < XMM_CLASS_COUNT; size_class++)
            __atomic_store_n(&slab_growth_of[slab].refills_started[size_class], 0,
                             __ATOMIC_RELAXED);
    }
    bool fenced = xmm_os_membarrier_rseq() == 0;
    if (fenced)
        pending = take_all_pending();
    for (int slab = 0; slab < slab_count; slab++) {
        if (!slab_touched(slab))
            continue;
        for (unsigned bin = 1; bin < XMM_CPU_BIN_COUNT; bin++) {
            if (fenced)
                drain_locked(slab, bin);
            else
                reopen_in_place(slab, bin);
        }
    }
    if (fenced && xmm_os_membarrier_rseq() == 0)
        for (int slab = 0; slab < slab_count; slab++) {
            if (!slab_touched(slab))
                continue;
            for (unsigned bin = 1; bin < XMM_CPU_BIN_COUNT; bin++)
                unlock_header(slab, bin);
        }
    /* Completed once the headers are open again, before the lock is let
     * go (the array is the lock's). */
    for (int i = 0; i < pending; i++)
        complete_pending(released_pending[i].object,
                         (uint64_t)released_pending[i].slab << XMM_SLAB_TAG_SHIFT, check);
    xmm_lock_release(&release_lock);
    /* Without the fence a section may still commit: drain nothing remote. */
    if (!fenced)
        release_current_slab(check);
}

/* Without membarrier only the calling thread's current slab can be
 * drained safely, with ordinary critical sections. */
static void release_current_slab(pending_check check)
{
    void *area = xmm_thread.rseq_area;
    /* A slab not set up holds nothing; the pending slot's section would
     * write its page. */
    if (!area || !slab_ready(__atomic_load_n(index_of(area), __ATOMIC_RELAXED)))
        return;
    uint64_t tag;
    void *object = xmm_rseq_take_pending(area, index_of(area), &xmm_cpu_slabs, &tag);
    complete_pending(object, tag, check);
    for (unsigned bin = 1; bin < XMM_CPU_BIN_COUNT; bin++)
        drain_bin_here(area, bin, UINT64_MAX);
}

void xmm_cpu_cache_release(bool (*check_pending)(void *object, uint64_t tag))
{
    if (rseq_mode == RSEQ_OFF)
        return;
    if (have_membarrier)
        release_all_slabs(check_pending);
    else
        release_current_slab(check_pending);
}

/* ---- statistics ---------------------------------------------------------------------------- */

/* The class of the block in `slab`'s pending slot (0: none). A block
 * whose free is pending counts as cached: its program is done with it. */
static unsigned pending_class(int slab)
{
    void *object = (void *)__atomic_load_n(&slab_words(slab)[XMM_SLAB_PENDING_WORD],
                                           __ATOMIC_ACQUIRE);
    return object ? XMM_PAGE_INFO_CLASS(xmm_page_info_of(object)) : 0;
}

void xmm_cpu_cache_stats(struct xmm_front_stats *stats)
{
    stats->refills += __atomic_load_n(&slow_counts.refills, __ATOMIC_RELAXED);
    stats->drains += __atomic_load_n(&slow_counts.drains, __ATOMIC_RELAXED);
    stats->cross_node_frees += __atomic_load_n(&slow_counts.cross_node_frees, __ATOMIC_RELAXED);
    stats->rseq_restarts += __atomic_load_n(&xmm_rseq_restart_count, __ATOMIC_RELAXED);
    for (unsigned size_class = 1; size_class < XMM_CLASS_COUNT; size_class++) {
        stats->slow_allocations[size_class] +=
            __atomic_load_n(&slow_counts.allocations[size_class], __ATOMIC_RELAXED);
        stats->slow_frees[size_class] +=
            __atomic_load_n(&slow_counts.frees[size_class], __ATOMIC_RELAXED);
    }
    if (rseq_mode == RSEQ_OFF)
        return;
    for (int slab = 0; slab < slab_count; slab++) {
        if (!slab_touched(slab))
            continue;
        for (unsigned bin = 1; bin < XMM_CPU_BIN_COUNT; bin++) {
            unsigned size_class = xmm_cpu_bin_class(bin);
            uint64_t objects = cached_in(slab, bin);
            stats->cached_objects[size_class] += objects;
            stats->cached_bytes += objects * xmm_size_classes[size_class].size;
        }
    }
    for (int slab = 0; slab < slab_count; slab++) {
        if (!slab_touched(slab))
            continue;
        unsigned size_class = pending_class(slab);
        if (size_class) {
            stats->cached_objects[size_class]++;
            stats->cached_bytes += xmm_size_classes[size_class].size;
        }
    }
}

int xmm_cpu_cache_slabs_in_use(void)
{
    return rseq_mode == RSEQ_OFF ? 0 : slab_count;
}

uint64_t xmm_cpu_cache_bytes(int slab)
{
    uint64_t bytes = 0;
    if (!slab_touched(slab))
        return 0;
    for (unsigned bin = 1; bin < XMM_CPU_BIN_COUNT; bin++)
        bytes += cached_in(slab, bin) * xmm_size_classes[xmm_cpu_bin_class(bin)].size;
    unsigned size_class = pending_class(slab);
    return bytes + (size_class ? xmm_size_classes[size_class].size : 0);
}

#endif /* XMM_PER_CPU_CACHES */
