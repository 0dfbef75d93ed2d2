/*
 * test_numa.c - where XMM's memory really lands, page by page.
 *
 * Linked against libxmm.so, so malloc IS XMM. Every check touches the
 * blocks it allocates and asks the kernel which node holds each touched
 * page (move_pages(2) with nodes == NULL), then compares with what XMM
 * promises (README "XMM_NUMA", include/xmm.h, docs/design.md "NUMA"):
 *
 *   local      threads pinned to each node allocate every size class,
 *              large and direct-mapped blocks, through every entry point:
 *              every page on their node, xmm_node_of() says that node; and
 *              again after xmm_release_memory() purged the freed pages.
 *   interleave (XMM_NUMA=interleave) small, large and direct blocks of one
 *              thread: pages spread over the allowed nodes, each within 10%
 *              of an even share.
 *   bind1      (XMM_NUMA=bind:1) every page on node 1, whatever CPU asks.
 *   bind       (XMM_NUMA=bind:LIST) a CPU of a listed node gets its node,
 *              any other CPU the first listed node; never an unlisted node.
 *   crossnode  producers on one node, consumers on others free the blocks:
 *              cross_node_frees counts every one; blocks the consumers'
 *              nodes allocate afterwards are theirs, never the freed ones;
 *              the producers' node gets the freed blocks back.
 *   migrate    a thread moves to another node: from its next cache refill
 *              on, its blocks are the new node's memory.
 *   on_node    xmm_malloc_on_node(size, n) lands on n for every node n,
 *              from a CPU of every node; invalid nodes give EINVAL; on
 *              each, xmm_current_node() is its node, and the string and
 *              buffer calls take XMM's blocks (also under interleave).
 *   membind    (under numactl --membind=LIST) pages only on allowed nodes;
 *              xmm_malloc_on_node to a forbidden node gives EINVAL.
 *   spill      a node asked for more than it has free spills to other
 *              nodes (MPOL_PREFERRED) rather than the OOM killer.
 *   thp_touch  (XMM_THP=always) small blocks lie on huge pages from their
 *              first fault; no NUMA needed, but the VM's kernel is the one
 *              where this failed.
 *
 * Usage: test_numa MODE. Prints what it measured (pages per node) and
 * exits 0 on success, 1 on failure, 77 when the machine has too few nodes
 * for the mode, 2 on a usage error.
 *
 * The test's own bookkeeping (block lists, page lists, the hand-off queue)
 * lives in mmap'd memory, so that the allocator's state is exactly what
 * the test's deliberate allocations made it.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <numa.h>
#include <numaif.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "xmm.h"

#define MAX_NODES 64
#define KERNEL_PAGE 4096UL
#define MIB ((size_t)1 << 20)
#define EXIT_SKIP 77
#define EXIT_USAGE 2

/* Large requests: page-heap blocks above the largest class (256 KiB), and
 * 40 MiB, above the direct-map threshold (half a 64 MiB chunk). */
static const size_t large_sizes[] = {300 << 10, 1 << 20, 8 << 20, 40 << 20};
#define LARGE_COUNT (sizeof(large_sizes) / sizeof(large_sizes[0]))

/* ---- failures ------------------------------------------------------------------- */

static atomic_int failures;
static const char *mode_name = "?";

static void fail(const char *format, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *format, ...)
{
    char line[512];
    va_list args;
    va_start(args, format);
    vsnprintf(line, sizeof(line), format, args);
    va_end(args);
    /* Only the first failures: one broken invariant tends to repeat. */
    if (atomic_fetch_add(&failures, 1) < 30)
        printf("FAIL: %s: %s\n", mode_name, line);
}

#define CHECK(condition, ...)                                                  \
    do {                                                                       \
        if (!(condition))                                                      \
            fail(__VA_ARGS__);                                                 \
    } while (0)

#include "node_calls.h"

static void die(const char *what)
{
    printf("ERROR: %s: %s: %s\n", mode_name, what, strerror(errno));
    exit(1);
}

/* ---- scratch memory outside XMM -------------------------------------------------- */

static void *scratch_alloc(size_t bytes)
{
    void *memory = mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (memory == MAP_FAILED)
        die("mmap for test bookkeeping");
    return memory;
}

static void scratch_free(void *memory, size_t bytes)
{
    munmap(memory, bytes ? bytes : 1);
}

/* ---- topology ------------------------------------------------------------------ */

static int node_limit;               /* numa_max_node() + 1 */
static bool node_has_memory[MAX_NODES];
static int cpu_nodes[MAX_NODES];     /* nodes with CPUs and memory, ascending */
static int cpu_node_count;
static cpu_set_t node_cpus[MAX_NODES];
static int node_of_cpu[CPU_SETSIZE];  /* -1: no such CPU */

static void read_topology(void)
{
    node_limit = numa_max_node() + 1;
    if (node_limit > MAX_NODES)
        node_limit = MAX_NODES;
    struct bitmask *cpus = numa_allocate_cpumask();
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
        node_of_cpu[cpu] = -1;
    for (int node = 0; node < node_limit; node++) {
        long long free_bytes;
        node_has_memory[node] = numa_node_size64(node, &free_bytes) > 0;
        CPU_ZERO(&node_cpus[node]);
        if (numa_node_to_cpus(node, cpus) != 0)
            continue;
        for (unsigned cpu = 0; cpu < cpus->size && cpu < CPU_SETSIZE; cpu++)
            if (numa_bitmask_isbitset(cpus, cpu)) {
                CPU_SET(cpu, &node_cpus[node]);
                node_of_cpu[cpu] = node;
            }
        if (CPU_COUNT(&node_cpus[node]) > 0 && node_has_memory[node])
            cpu_nodes[cpu_node_count++] = node;
    }
    numa_free_cpumask(cpus);
}

static int memory_node_count(void)
{
    int count = 0;
    for (int node = 0; node < node_limit; node++)
        count += node_has_memory[node];
    return count;
}

/* From the table: libnuma's numa_node_of_cpu allocates, and an
 * allocation at the wrong moment would refill (and so flush) a per-thread
 * cache that the migrate mode wants to catch stale. */
static int current_node(void)
{
    int cpu = sched_getcpu();
    return cpu < 0 || cpu >= CPU_SETSIZE ? -1 : node_of_cpu[cpu];
}

/* Moves the calling thread onto `node`'s CPUs (no allocation: a
 * per-thread cache must not be created before the thread is in place). */
static void move_to_node(int node)
{
    if (sched_setaffinity(0, sizeof(cpu_set_t), &node_cpus[node]) != 0)
        die("sched_setaffinity");
    CHECK(current_node() == node, "thread is on node %d after moving to node %d",
          current_node(), node);
}

/* Starts `body(argument)` in a thread that runs on `node`'s CPUs from its
 * first instruction: its cache, created on its first allocation, belongs
 * to that node. */
static pthread_t start_on_node(int node, void *(*body)(void *), void *argument)
{
    pthread_attr_t attributes;
    pthread_t thread;
    pthread_attr_init(&attributes);
    pthread_attr_setaffinity_np(&attributes, sizeof(cpu_set_t), &node_cpus[node]);
    errno = pthread_create(&thread, &attributes, body, argument);
    if (errno)
        die("pthread_create");
    pthread_attr_destroy(&attributes);
    return thread;
}

static void run_on_node(int node, void *(*body)(void *), void *argument)
{
    pthread_join(start_on_node(node, body, argument), NULL);
}

/* ---- page census: which node holds each touched page ------------------------------- */

struct page_list {
    uintptr_t *pages;
    size_t count, capacity;
};

struct census {
    long on_node[MAX_NODES];
    long missing; /* touched, yet not resident or not reported */
    long total;
};

static void page_list_add(struct page_list *list, const void *start, size_t bytes)
{
    uintptr_t first = (uintptr_t)start & ~(KERNEL_PAGE - 1);
    uintptr_t end = (uintptr_t)start + (bytes ? bytes : 1);
    for (uintptr_t page = first; page < end; page += KERNEL_PAGE) {
        if (list->count == list->capacity) {
            size_t capacity = list->capacity ? list->capacity * 2 : 4096;
            uintptr_t *grown = scratch_alloc(capacity * sizeof(*grown));
            if (list->count)
                memcpy(grown, list->pages, list->count * sizeof(*grown));
            scratch_free(list->pages, list->capacity * sizeof(*grown));
            list->pages = grown;
            list->capacity = capacity;
        }
        list->pages[list->count++] = page;
    }
}

static void page_list_release(struct page_list *list)
{
    scratch_free(list->pages, list->capacity * sizeof(*list->pages));
    memset(list, 0, sizeof(*list));
}

static int compare_addresses(const void *a, const void *b)
{
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

static void sift_down(uintptr_t *values, size_t root, size_t count)
{
    for (size_t child; (child = 2 * root + 1) < count; root = child) {
        if (child + 1 < count && values[child + 1] > values[child])
            child++;
        if (values[root] >= values[child])
            return;
        uintptr_t swap = values[root];
        values[root] = values[child];
        values[child] = swap;
    }
}

/* Heapsort: glibc's qsort may call malloc, which is XMM here. */
static void sort_addresses(uintptr_t *values, size_t count)
{
    for (size_t root = count / 2; root-- > 0;)
        sift_down(values, root, count);
    for (size_t end = count; end-- > 1;) {
        uintptr_t largest = values[0];
        values[0] = values[end];
        values[end] = largest;
        sift_down(values, 0, end);
    }
}

/* Small blocks share pages: each page is counted once. */
static void page_list_unique(struct page_list *list)
{
    if (list->count < 2)
        return;
    sort_addresses(list->pages, list->count);
    size_t kept = 1;
    for (size_t i = 1; i < list->count; i++)
        if (list->pages[i] != list->pages[kept - 1])
            list->pages[kept++] = list->pages[i];
    list->count = kept;
}

/* Asks the kernel for the node of every page of the list (deduplicated). */
static struct census take_census(struct page_list *list)
{
    enum { STEP = 1024 };
    struct census census;
    memset(&census, 0, sizeof(census));
    page_list_unique(list);
    for (size_t first = 0; first < list->count; first += STEP) {
        unsigned long count = list->count - first < STEP ? list->count - first : STEP;
        int status[STEP];
        if (move_pages(0, count, (void **)&list->pages[first], NULL, status, 0) != 0)
            die("move_pages");
        for (unsigned long i = 0; i < count; i++) {
            if (status[i] >= 0 && status[i] < MAX_NODES)
                census.on_node[status[i]]++;
            else
                census.missing++;
        }
    }
    census.total = (long)list->count;
    return census;
}

/* "1234 pages: node0=0 node1=1234" */
static const char *census_text(const struct census *census, char *text, size_t size)
{
    int used = snprintf(text, size, "%ld pages:", census->total);
    for (int node = 0; node < node_limit && used < (int)size; node++)
        used += snprintf(text + used, size - used, " node%d=%ld", node, census->on_node[node]);
    if (census->missing && used < (int)size)
        snprintf(text + used, size - used, " missing=%ld", census->missing);
    return text;
}

/* The census of one block (touched already). */
static struct census block_census(const void *block, size_t size)
{
    struct page_list list = {0};
    page_list_add(&list, block, size);
    struct census census = take_census(&list);
    page_list_release(&list);
    return census;
}

/* True if every page of the census is on `node` and there is at least one. */
static bool all_on(const struct census *census, int node)
{
    return census->total > 0 && census->missing == 0 && census->on_node[node] == census->total;
}

static void print_census(const char *label, const struct census *census)
{
    char text[512];
    printf("%s: %s: %s\n", mode_name, label, census_text(census, text, sizeof(text)));
}

/* ---- blocks --------------------------------------------------------------------- */

struct block {
    void *address;
    size_t size;
};

struct block_list {
    struct block *blocks;
    size_t count, capacity;
};

static void block_list_init(struct block_list *list, size_t capacity)
{
    list->blocks = scratch_alloc(capacity * sizeof(struct block));
    list->count = 0;
    list->capacity = capacity;
}

static void block_list_release(struct block_list *list)
{
    scratch_free(list->blocks, list->capacity * sizeof(struct block));
    memset(list, 0, sizeof(*list));
}

/* Allocates with malloc (XMM), touches every byte, records the block. */
static void *allocate_touched(struct block_list *list, size_t size)
{
    if (list->count == list->capacity) {
        fail("block list full (%zu)", list->capacity);
        return NULL;
    }
    void *block = malloc(size);
    if (!block) {
        fail("malloc(%zu) failed: %s", size, strerror(errno));
        return NULL;
    }
    memset(block, 0xa5, size);
    list->blocks[list->count++] = (struct block){block, size};
    return block;
}

static void free_blocks(struct block_list *list)
{
    for (size_t i = 0; i < list->count; i++)
        free(list->blocks[i].address);
    list->count = 0;
}

/* Pages of blocks [first, end) of the list. */
static struct census census_of_blocks(const struct block_list *list, size_t first, size_t end)
{
    struct page_list pages = {0};
    for (size_t i = first; i < end; i++)
        page_list_add(&pages, list->blocks[i].address, list->blocks[i].size);
    struct census census = take_census(&pages);
    page_list_release(&pages);
    return census;
}

/* Blocks whose xmm_node_of() is not `node`; reports the first one. */
static long count_node_of_mismatches(const struct block_list *list, size_t first, size_t end,
                                     int node)
{
    long wrong = 0;
    for (size_t i = first; i < end; i++) {
        int home = xmm_node_of(list->blocks[i].address);
        if (home != node && wrong++ == 0)
            fail("xmm_node_of(%p) (%zu bytes) = %d, expected %d", list->blocks[i].address,
                 list->blocks[i].size, home, node);
    }
    return wrong;
}

/* Every size class: 8..128 in steps of 8, then eight classes per doubling
 * up to 256 KiB (docs/design.md "Size classes"). */
static size_t class_sizes(size_t *sizes)
{
    size_t count = 0;
    for (size_t size = 8; size <= 128; size += 8)
        sizes[count++] = size;
    for (size_t base = 128; base < (256 << 10); base *= 2)
        for (size_t step = 1; step <= 8; step++)
            sizes[count++] = base + step * (base / 8);
    return count;
}
#define CLASS_COUNT_MAX 128

/* A few blocks of each size, fewer of the large ones: enough to need a
 * span (or several) of every class. */
static int blocks_per_size(size_t size)
{
    return size <= 4096 ? 8 : size <= (64 << 10) ? 4 : 2;
}

/* Every class size and the size just below it (same class, odd size),
 * then the large sizes. Touched. */
static void allocate_every_size(struct block_list *small, struct block_list *large)
{
    size_t sizes[CLASS_COUNT_MAX];
    size_t count = class_sizes(sizes);
    for (size_t i = 0; i < count; i++)
        for (int copy = 0; copy < blocks_per_size(sizes[i]); copy++) {
            allocate_touched(small, sizes[i] - 1);
            allocate_touched(small, sizes[i]);
        }
    for (size_t i = 0; i < LARGE_COUNT; i++)
        allocate_touched(large, large_sizes[i]);
}

/* ---- placement of one thread's memory (local, bind, membind) ------------------------ */

struct placement_job {
    int cpu_node;      /* where the thread runs */
    int expected_node; /* where its memory must be */
};

/* The other ways in, each taking the calling CPU's node: calloc (small,
 * large: zeroing may skip fresh pages), realloc growing a small block into
 * a large one, posix_memalign (64 B to 2 MiB alignments: small classes,
 * the page heap with alignment slack, and a direct map once size +
 * alignment reaches 32 MiB) and xmm_alloc_pages. The pages block, freed
 * with xmm_free_pages, is the list's last entry. */
static void allocate_other_ways(struct block_list *list)
{
    static const struct { size_t alignment, size; } aligned[] = {
        {64, 100}, {4096, 5000}, {65536, 70000}, {2 * MIB, MIB}, {MIB, 31 * MIB}};
    static const size_t calloc_sizes[] = {1000, 200 << 10, 3 * MIB};
    for (size_t i = 0; i < sizeof(calloc_sizes) / sizeof(calloc_sizes[0]); i++) {
        void *block = calloc(1, calloc_sizes[i]);
        CHECK(block != NULL, "calloc(1, %zu) failed", calloc_sizes[i]);
        if (block) {
            memset(block, 0x11, calloc_sizes[i]);
            list->blocks[list->count++] = (struct block){block, calloc_sizes[i]};
        }
    }
    void *grown = realloc(malloc(100), 500 << 10);
    CHECK(grown != NULL, "realloc(100 -> 500 KiB) failed");
    if (grown) {
        memset(grown, 0x22, 500 << 10);
        list->blocks[list->count++] = (struct block){grown, 500 << 10};
    }
    for (size_t i = 0; i < sizeof(aligned) / sizeof(aligned[0]); i++) {
        void *block = NULL;
        int error = posix_memalign(&block, aligned[i].alignment, aligned[i].size);
        CHECK(error == 0, "posix_memalign(%zu, %zu): %s", aligned[i].alignment, aligned[i].size,
              strerror(error));
        if (error == 0) {
            memset(block, 0x33, aligned[i].size);
            list->blocks[list->count++] = (struct block){block, aligned[i].size};
        }
    }
    void *pages = xmm_alloc_pages(3);
    CHECK(pages != NULL, "xmm_alloc_pages(3) failed");
    if (pages) {
        memset(pages, 0x44, 3 * xmm_page_size());
        list->blocks[list->count++] = (struct block){pages, 3 * xmm_page_size()};
    }
}

static void free_other_ways(struct block_list *list)
{
    if (list->count) {
        struct block pages = list->blocks[--list->count];
        xmm_free_pages(pages.address, pages.size / xmm_page_size());
    }
    free_blocks(list);
}

/* One kind of blocks of a placement thread: all its pages and its
 * xmm_node_of on `expected`. */
static void check_all_on(const char *label, const struct block_list *list, int expected)
{
    struct census census = census_of_blocks(list, 0, list->count);
    print_census(label, &census);
    CHECK(all_on(&census, expected), "%s: %ld of %ld pages on node %d", label,
          census.on_node[expected], census.total, expected);
    long wrong = count_node_of_mismatches(list, 0, list->count, expected);
    CHECK(wrong == 0, "%s: xmm_node_of is not %d for %ld of %zu blocks", label, expected, wrong,
          list->count);
}

/* After xmm_release_memory() has returned the freed pages to the kernel,
 * the same addresses are handed out again and fault in afresh: they must
 * come back on the node (the binding belongs to the mapping; a purge that
 * remapped would lose it). One block per class and the page-heap sizes. */
static void check_after_purge(const struct placement_job *job)
{
    size_t sizes[CLASS_COUNT_MAX];
    size_t count = class_sizes(sizes);
    struct block_list blocks;
    block_list_init(&blocks, count + LARGE_COUNT);
    size_t purged = xmm_release_memory();
    for (size_t i = 0; i < count; i++)
        allocate_touched(&blocks, sizes[i]);
    for (size_t i = 0; i < LARGE_COUNT; i++)
        if (large_sizes[i] < 32 * MIB) /* direct maps are fresh mappings anyway */
            allocate_touched(&blocks, large_sizes[i]);
    char label[96];
    snprintf(label, sizeof(label), "CPU node %d, after xmm_release_memory (%zu KiB purged)",
             job->cpu_node, purged >> 10);
    check_all_on(label, &blocks, job->expected_node);
    free_blocks(&blocks);
    block_list_release(&blocks);
}

/* Allocates every size on the calling thread's node and checks that all
 * of it (pages and xmm_node_of) is on job->expected_node. */
static void *placement_thread(void *argument)
{
    struct placement_job *job = argument;
    char label[160];
    CHECK(current_node() == job->cpu_node, "thread runs on node %d, pinned to node %d",
          current_node(), job->cpu_node);
    struct block_list small, large, other;
    block_list_init(&small, 4096);
    block_list_init(&large, LARGE_COUNT);
    block_list_init(&other, 16);
    allocate_every_size(&small, &large);
    allocate_other_ways(&other);

    snprintf(label, sizeof(label), "CPU node %d, %zu small blocks (every class)", job->cpu_node,
             small.count);
    check_all_on(label, &small, job->expected_node);
    snprintf(label, sizeof(label), "CPU node %d, large 300K 1M 8M 40M", job->cpu_node);
    check_all_on(label, &large, job->expected_node);
    /* Each large block on its own too: a direct map has its own binding. */
    for (size_t i = 0; i < large.count; i++) {
        struct census one = block_census(large.blocks[i].address, large.blocks[i].size);
        CHECK(all_on(&one, job->expected_node), "%zu-byte block %p: %ld of %ld pages on node %d",
              large.blocks[i].size, large.blocks[i].address, one.on_node[job->expected_node],
              one.total, job->expected_node);
    }
    snprintf(label, sizeof(label), "CPU node %d, calloc realloc memalign alloc_pages (%zu)",
             job->cpu_node, other.count);
    check_all_on(label, &other, job->expected_node);
    free_blocks(&small);
    free_blocks(&large);
    free_other_ways(&other);
    check_after_purge(job);
    block_list_release(&small);
    block_list_release(&large);
    block_list_release(&other);
    return NULL;
}

/* One thread per node with CPUs, one after the other. `expected_node_of`
 * gives where a CPU node's memory must go. */
static void check_placement_from_every_node(int (*expected_node_of)(int cpu_node))
{
    for (int i = 0; i < cpu_node_count; i++) {
        struct placement_job job = {cpu_nodes[i], expected_node_of(cpu_nodes[i])};
        run_on_node(job.cpu_node, placement_thread, &job);
    }
}

/* ---- node sets (bind:LIST, --membind) -------------------------------------------- */

static uint64_t allowed_set;

static bool in_set(uint64_t set, int node)
{
    return node >= 0 && node < 64 && (set >> node & 1);
}

static int lowest_in_set(uint64_t set)
{
    return set ? __builtin_ctzll(set) : -1;
}

/* A CPU node's memory under a restricted set: its own node if allowed,
 * else the first allowed one (src/numa.c). */
static int expected_in_allowed_set(int cpu_node)
{
    return in_set(allowed_set, cpu_node) ? cpu_node : lowest_in_set(allowed_set);
}

/* Parses "1", "0,2-3" into a node mask; 0 on a syntax error. */
static uint64_t parse_node_list(const char *text)
{
    uint64_t set = 0;
    while (*text) {
        char *end;
        long first = strtol(text, &end, 10), last = first;
        if (end == text || first < 0 || first > 63)
            return 0;
        if (*end == '-') {
            text = end + 1;
            last = strtol(text, &end, 10);
            if (end == text || last < first || last > 63)
                return 0;
        }
        for (long node = first; node <= last; node++)
            set |= (uint64_t)1 << node;
        if (*end == ',')
            end++;
        else if (*end)
            return 0;
        text = end;
    }
    return set;
}

static const char *set_text(uint64_t set, char *text, size_t size)
{
    int used = 0;
    text[0] = '\0';
    for (int node = 0; node < 64 && used < (int)size; node++)
        if (in_set(set, node))
            used += snprintf(text + used, size - used, "%s%d", used ? "," : "", node);
    return text;
}

/* xmm_malloc_on_node to a node outside `allowed`: must not give memory
 * there. `must_fail`: the documented EINVAL (cpuset, --membind). */
static void check_on_node_outside(uint64_t allowed, bool must_fail)
{
    for (int node = 0; node < node_limit; node++) {
        if (!node_has_memory[node] || in_set(allowed, node))
            continue;
        errno = 0;
        void *block = xmm_malloc_on_node(4096, node);
        int saved_errno = errno;
        if (!block) {
            printf("%s: xmm_malloc_on_node(4096, %d): NULL, %s\n", mode_name, node,
                   strerror(saved_errno));
            CHECK(saved_errno == EINVAL, "xmm_malloc_on_node(4096, %d): errno %d, expected EINVAL",
                  node, saved_errno);
            continue;
        }
        memset(block, 1, 4096);
        struct census census = block_census(block, 4096);
        char text[256];
        printf("%s: xmm_malloc_on_node(4096, %d) gave memory: %s\n", mode_name, node,
               census_text(&census, text, sizeof(text)));
        CHECK(!must_fail, "xmm_malloc_on_node(4096, %d) succeeded; node %d is not allowed", node,
              node);
        CHECK(census.on_node[node] == 0, "xmm_malloc_on_node(4096, %d) put pages on node %d",
              node, node);
        free(block);
    }
}

/* ---- mode: local ------------------------------------------------------------------ */

static int own_node(int cpu_node)
{
    return cpu_node;
}

static int mode_local(void)
{
    printf("%s: %d node(s) with CPUs; each allocates %s\n", mode_name, cpu_node_count,
           "every class size (and size-1), 300K, 1M, 8M, 40M, and through calloc, realloc, "
           "posix_memalign, xmm_alloc_pages");
    check_placement_from_every_node(own_node);
    return 0;
}

/* ---- mode: interleave ------------------------------------------------------------ */

#define HUGE_PAGE_PAGES 512 /* a 2 MiB transparent huge page, in 4 KiB pages */

/* Reads a file into `text` (NUL-terminated) with plain system calls: a
 * FILE would be allocated with malloc, that is, by XMM. */
static size_t read_file(const char *path, char *text, size_t size)
{
    size_t length = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t got;
        while (length < size - 1 && (got = read(fd, text + length, size - 1 - length)) > 0)
            length += (size_t)got;
        close(fd);
    }
    text[length] = '\0';
    return length;
}

static const char *next_line(const char *line)
{
    const char *end = strchr(line, '\n');
    return end && end[1] ? end + 1 : NULL;
}

/* The KiB of transparent huge pages in the mappings that overlap [low,
 * high) (/proc/self/smaps "AnonHugePages"). */
static unsigned long huge_kilobytes_in(uintptr_t low, uintptr_t high)
{
    enum { LIMIT = 16 << 20 };
    char *text = scratch_alloc(LIMIT);
    read_file("/proc/self/smaps", text, LIMIT);
    bool overlapping = false;
    unsigned long total = 0;
    for (const char *line = text; line; line = next_line(line)) {
        unsigned long start, end, kilobytes;
        if (sscanf(line, "%lx-%lx ", &start, &end) == 2)
            overlapping = start < high && end > low;
        else if (overlapping && sscanf(line, "AnonHugePages: %lu kB", &kilobytes) == 1)
            total += kilobytes;
    }
    scratch_free(text, LIMIT);
    return total;
}

/* Whether any mapping overlapping [low, high) holds transparent huge
 * pages. The kernel interleaves such ranges 2 MiB at a time, not page by
 * page. */
static bool range_has_huge_pages(uintptr_t low, uintptr_t high)
{
    return huge_kilobytes_in(low, high) > 0;
}

/* khugepaged's count of the ranges it has collapsed into huge pages, all
 * processes together (-1 if unreadable). */
static long khugepaged_collapses(void)
{
    char text[64];
    read_file("/sys/kernel/mm/transparent_hugepage/khugepaged/pages_collapsed", text,
              sizeof(text));
    return text[0] ? strtol(text, NULL, 10) : -1;
}

struct interleave_job {
    uint64_t nodes;
    struct census total;    /* every category together */
    long collapses_before;  /* khugepaged_collapses() when the job started */
};

/* The ranges khugepaged collapsed since the job started. A collapsed range
 * lies wholly on the node that held most of its small pages, the lowest on
 * a tie (mm/khugepaged.c), whatever the interleave policy: in the VM, with
 * no other process, each one is up to a huge page off the even share.
 * Under NUMA_TEST_NO_COLLAPSE=1 (the driver sets THP to madvise and wakes
 * khugepaged often) there must be none: XMM does not advise interleaved
 * chunks after their pages were faulted in (arena.c, xmm_arena_chunk_dense). */
static long collapses_since(const struct interleave_job *job, const char *label)
{
    long now = khugepaged_collapses();
    long collapsed = job->collapses_before >= 0 && now >= 0 ? now - job->collapses_before : 0;
    const char *no_collapse = getenv("NUMA_TEST_NO_COLLAPSE");
    if (no_collapse && !strcmp(no_collapse, "1"))
        CHECK(collapsed == 0, "%s: khugepaged collapsed %ld ranges of interleaved chunks", label,
              collapsed);
    return collapsed;
}

/* Each allowed node holds total/n pages within 10%, plus `huge_slack` huge
 * pages of slack (2 MiB units cannot split more evenly); no page on
 * another node. */
static void check_even(const char *label, const struct census *census, uint64_t nodes, bool huge,
                       long huge_slack)
{
    int node_total = __builtin_popcountll(nodes);
    double even = (double)census->total / node_total;
    double slack = 0.10 * even + (double)huge_slack * HUGE_PAGE_PAGES;
    char text[512];
    printf("%s: %s: %s%s\n", mode_name, label, census_text(census, text, sizeof(text)),
           huge ? " (THP-backed: interleaved 2 MiB at a time)" : "");
    if (huge_slack > (huge ? 1 : 0))
        printf("%s: %s: khugepaged collapsed %ld ranges meanwhile, one huge page of slack each\n",
               mode_name, label, huge_slack - (huge ? 1 : 0));
    CHECK(census->missing == 0, "%s: %ld touched pages not resident", label, census->missing);
    for (int node = 0; node < node_limit; node++) {
        long pages = census->on_node[node];
        if (!in_set(nodes, node)) {
            CHECK(pages == 0, "%s: %ld pages on node %d, which is not allowed", label, pages, node);
            continue;
        }
        CHECK(pages >= even - slack && pages <= even + slack,
              "%s: node %d holds %ld pages, even share %.0f (%+.1f%%), allowed +-%.0f", label,
              node, pages, even, (pages - even) * 100 / even, slack);
    }
}

static void add_census(struct census *sum, const struct census *part)
{
    for (int node = 0; node < MAX_NODES; node++)
        sum->on_node[node] += part->on_node[node];
    sum->missing += part->missing;
    sum->total += part->total;
}

/* One category of blocks: its census, checked, added to the total. */
static void check_category(struct interleave_job *job, const char *label,
                           const struct block_list *blocks)
{
    uintptr_t low = UINTPTR_MAX, high = 0;
    for (size_t i = 0; i < blocks->count; i++) {
        uintptr_t start = (uintptr_t)blocks->blocks[i].address;
        low = start < low ? start : low;
        high = start + blocks->blocks[i].size > high ? start + blocks->blocks[i].size : high;
    }
    struct census census = census_of_blocks(blocks, 0, blocks->count);
    bool huge = range_has_huge_pages(low, high);
    check_even(label, &census, job->nodes, huge, (huge ? 1 : 0) + collapses_since(job, label));
    add_census(&job->total, &census);
}

static void *interleave_thread(void *argument)
{
    struct interleave_job *job = argument;
    job->collapses_before = khugepaged_collapses();
    static const size_t small_sizes[] = {64, 256, 1024, 4096, 32768};
    struct block_list small, large, direct;
    block_list_init(&small, 65536);
    block_list_init(&large, 64);
    block_list_init(&direct, 1);
    /* 2 MiB of each small size, 64 MiB in 1 MiB blocks, one 40 MiB map. */
    for (size_t i = 0; i < sizeof(small_sizes) / sizeof(small_sizes[0]); i++)
        for (size_t bytes = 0; bytes < 2 * MIB; bytes += small_sizes[i])
            allocate_touched(&small, small_sizes[i]);
    for (int i = 0; i < 64; i++)
        allocate_touched(&large, MIB);
    allocate_touched(&direct, 40 * MIB);

    check_category(job, "small blocks, 2 MiB each of 64 B..32 KiB", &small);
    check_category(job, "64 x 1 MiB blocks", &large);
    check_category(job, "one 40 MiB direct block", &direct);
    /* Together: within 10% even at 2 MiB granularity (57 units or more). */
    check_even("all of it", &job->total, job->nodes, false, collapses_since(job, "all of it"));

    free_blocks(&small);
    free_blocks(&large);
    free_blocks(&direct);
    block_list_release(&small);
    block_list_release(&large);
    block_list_release(&direct);
    return NULL;
}

/* The nodes the process may allocate on (numactl --membind, cpusets). */
static uint64_t process_allowed_nodes(void)
{
    struct bitmask *allowed = numa_get_membind();
    uint64_t set = 0;
    for (int node = 0; node < node_limit; node++)
        if (numa_bitmask_isbitset(allowed, node) && node_has_memory[node])
            set |= (uint64_t)1 << node;
    numa_free_nodemask(allowed);
    return set;
}

static int mode_interleave(void)
{
    const char *policy = getenv("XMM_NUMA");
    if (!policy || strcmp(policy, "interleave") != 0) {
        printf("%s: run with XMM_NUMA=interleave\n", mode_name);
        return EXIT_USAGE;
    }
    struct interleave_job job = {.nodes = process_allowed_nodes()};
    char text[128];
    printf("%s: one thread on node %d; pages must spread evenly over nodes %s\n", mode_name,
           cpu_nodes[0], set_text(job.nodes, text, sizeof(text)));
    run_on_node(cpu_nodes[0], interleave_thread, &job);
    return 0;
}

/* ---- modes: bind1, bind ----------------------------------------------------------- */

static int mode_bind(bool only_node_1)
{
    const char *policy = getenv("XMM_NUMA");
    allowed_set = policy && !strncmp(policy, "bind:", 5) ? parse_node_list(policy + 5) : 0;
    if (!allowed_set || (only_node_1 && allowed_set != 2)) {
        printf("%s: run with XMM_NUMA=%s\n", mode_name, only_node_1 ? "bind:1" : "bind:LIST");
        return EXIT_USAGE;
    }
    allowed_set &= process_allowed_nodes();
    char text[128];
    printf("%s: XMM_NUMA=%s: every CPU's memory on nodes %s\n", mode_name, policy,
           set_text(allowed_set, text, sizeof(text)));
    check_placement_from_every_node(expected_in_allowed_set);
    /* bind is strict: a request for another node must not get memory there. */
    check_on_node_outside(allowed_set, false);
    return 0;
}

/* ---- mode: membind ---------------------------------------------------------------- */

static int mode_membind(void)
{
    allowed_set = process_allowed_nodes();
    uint64_t every_node = 0;
    for (int node = 0; node < node_limit; node++)
        if (node_has_memory[node])
            every_node |= (uint64_t)1 << node;
    if (allowed_set == every_node) {
        printf("%s: run under numactl --membind=LIST with fewer than all nodes\n", mode_name);
        return EXIT_USAGE;
    }
    char text[128];
    printf("%s: process memory bound to nodes %s\n", mode_name,
           set_text(allowed_set, text, sizeof(text)));
    check_placement_from_every_node(expected_in_allowed_set);
    /* xmm.h: EINVAL if the process may not use the node (numactl --membind). */
    check_on_node_outside(allowed_set, true);
    return 0;
}

/* ---- mode: on_node -------------------------------------------------------------- */

/* 0: a unique minimum block, like malloc(0). */
static const size_t on_node_sizes[] = {0, 1, 8, 100, 1024, 4096, 65536, 256 << 10, 300 << 10,
                                       1 << 20};

struct on_node_job {
    int cpu_node;
    bool with_direct; /* also one 40 MiB direct map per node (costly: once) */
};

/* From a CPU of job->cpu_node: blocks of every size on every node. */
static void *on_node_thread(void *argument)
{
    struct on_node_job *job = argument;
    check_node_calls(job->cpu_node);
    for (int node = 0; node < node_limit; node++) {
        if (!node_has_memory[node])
            continue;
        struct block_list blocks;
        block_list_init(&blocks, 64);
        for (size_t i = 0; i < sizeof(on_node_sizes) / sizeof(on_node_sizes[0]); i++)
            for (int copy = 0; copy < 3; copy++) {
                size_t size = on_node_sizes[i];
                void *block = xmm_malloc_on_node(size, node);
                CHECK(block != NULL, "xmm_malloc_on_node(%zu, %d): %s", size, node,
                      strerror(errno));
                if (!block)
                    continue;
                /* All of it, so that even a 0-byte block has a page to measure. */
                size_t usable = xmm_usable_size(block);
                CHECK(usable >= size, "xmm_usable_size = %zu for %zu bytes", usable, size);
                memset(block, 0x3c, usable);
                blocks.blocks[blocks.count++] = (struct block){block, usable};
            }
        if (job->with_direct) {
            void *block = xmm_malloc_on_node(40 * MIB, node);
            CHECK(block != NULL, "xmm_malloc_on_node(40 MiB, %d): %s", node, strerror(errno));
            if (block) {
                memset(block, 0x3c, 40 * MIB);
                blocks.blocks[blocks.count++] = (struct block){block, 40 * MIB};
            }
        }
        struct census census = census_of_blocks(&blocks, 0, blocks.count);
        char label[96];
        snprintf(label, sizeof(label), "from CPU node %d, %zu blocks on node %d%s",
                 job->cpu_node, blocks.count, node, job->with_direct ? " (with 40 MiB)" : "");
        print_census(label, &census);
        CHECK(all_on(&census, node), "%s: %ld of %ld pages on node %d", label,
              census.on_node[node], census.total, node);
        count_node_of_mismatches(&blocks, 0, blocks.count, node);
        free_blocks(&blocks);
        block_list_release(&blocks);
    }
    return NULL;
}

static void check_invalid_nodes(void)
{
    const int invalid[] = {-1, xmm_node_count(), 999, INT_MIN, INT_MAX};
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        errno = 0;
        void *block = xmm_malloc_on_node(64, invalid[i]);
        int saved_errno = errno;
        printf("%s: xmm_malloc_on_node(64, %d) = %p, errno %s\n", mode_name, invalid[i], block,
               saved_errno ? strerror(saved_errno) : "0");
        CHECK(block == NULL && saved_errno == EINVAL,
              "xmm_malloc_on_node(64, %d) = %p errno %d: expected NULL and EINVAL", invalid[i],
              block, saved_errno);
        if (block)
            free(block);
    }
}

static int mode_on_node(void)
{
    printf("%s: xmm_node_count() = %d, nodes with memory %d\n", mode_name, xmm_node_count(),
           memory_node_count());
    CHECK(xmm_node_count() == node_limit, "xmm_node_count() = %d, the machine has %d nodes",
          xmm_node_count(), node_limit);
    for (int i = 0; i < cpu_node_count; i++) {
        struct on_node_job job = {cpu_nodes[i], i == 0};
        run_on_node(job.cpu_node, on_node_thread, &job);
    }
    check_invalid_nodes();
    return 0;
}

/* ---- mode: crossnode ------------------------------------------------------------ */

/* Six size classes, and two large sizes, which go back to their node's
 * page heap rather than through a front end. */
static const struct cross_class {
    size_t size;
    int count;
} cross_classes[] = {{16, 2000},  {48, 2000},   {128, 2000},      {512, 2000},
                     {2048, 2000}, {8192, 2000}, {300 << 10, 16}, {1 << 20, 16}};
#define CROSS_CLASSES (sizeof(cross_classes) / sizeof(cross_classes[0]))
#define CROSS_ROUNDS 2000 /* the largest count */
#define LARGEST_CLASS_SIZE (256 << 10)

/* Blocks of the table, small (up to the largest class) or all. */
static int cross_count(bool small_only)
{
    int total = 0;
    for (size_t c = 0; c < CROSS_CLASSES; c++)
        if (!small_only || cross_classes[c].size <= LARGEST_CLASS_SIZE)
            total += cross_classes[c].count;
    return total;
}
#define PRODUCERS 2
#define QUEUE_SLOTS 1024
#define CONSUMERS_MAX MAX_NODES
#define FILL_BYTE 0x5a

/* Blocks travel from producers to consumers through a bounded queue. */
struct handoff_queue {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    struct block slots[QUEUE_SLOTS];
    size_t head, count;
    int producers_left;
};

static struct handoff_queue queue = {
    .lock = PTHREAD_MUTEX_INITIALIZER, .changed = PTHREAD_COND_INITIALIZER};

static void queue_put(struct block block)
{
    pthread_mutex_lock(&queue.lock);
    while (queue.count == QUEUE_SLOTS)
        pthread_cond_wait(&queue.changed, &queue.lock);
    queue.slots[(queue.head + queue.count++) % QUEUE_SLOTS] = block;
    pthread_cond_broadcast(&queue.changed);
    pthread_mutex_unlock(&queue.lock);
}

/* False when the queue is empty and every producer is done. */
static bool queue_take(struct block *block)
{
    pthread_mutex_lock(&queue.lock);
    while (queue.count == 0 && queue.producers_left > 0)
        pthread_cond_wait(&queue.changed, &queue.lock);
    bool got = queue.count > 0;
    if (got) {
        *block = queue.slots[queue.head];
        queue.head = (queue.head + 1) % QUEUE_SLOTS;
        queue.count--;
        pthread_cond_broadcast(&queue.changed);
    }
    pthread_mutex_unlock(&queue.lock);
    return got;
}

static void producer_done(void)
{
    pthread_mutex_lock(&queue.lock);
    queue.producers_left--;
    pthread_cond_broadcast(&queue.changed);
    pthread_mutex_unlock(&queue.lock);
}

struct producer_job {
    int node;
    long wrong_node; /* blocks whose xmm_node_of was not `node` */
};

static void *producer_thread(void *argument)
{
    struct producer_job *job = argument;
    /* Classes in turn, so that consumers free a mix. */
    for (int i = 0; i < CROSS_ROUNDS / PRODUCERS; i++)
        for (size_t c = 0; c < CROSS_CLASSES; c++) {
            size_t size = cross_classes[c].size;
            if (i >= cross_classes[c].count / PRODUCERS)
                continue;
            void *block = malloc(size);
            if (!block) {
                fail("producer: malloc(%zu) failed", size);
                continue;
            }
            memset(block, FILL_BYTE, size);
            if (xmm_node_of(block) != job->node)
                job->wrong_node++;
            queue_put((struct block){block, size});
        }
    producer_done();
    return NULL;
}

struct consumer_job {
    int node;
    struct block *freed; /* addresses this consumer freed */
    size_t freed_count;
    long corrupted;
};

static void *consumer_thread(void *argument)
{
    struct consumer_job *job = argument;
    struct block block;
    while (queue_take(&block)) {
        const unsigned char *bytes = block.address;
        if (bytes[0] != FILL_BYTE || bytes[block.size - 1] != FILL_BYTE)
            job->corrupted++;
        job->freed[job->freed_count++] = block;
        free(block.address);
    }
    return NULL;
}

/* Sorted addresses of every freed block, for lookups. */
struct address_set {
    uintptr_t *addresses;
    size_t count;
};

static bool address_set_has(const struct address_set *set, const void *address)
{
    uintptr_t key = (uintptr_t)address;
    return bsearch(&key, set->addresses, set->count, sizeof(key), compare_addresses) != NULL;
}

struct after_job {
    int node;
    bool home;                     /* the producers' node: every address counts */
    int times;                     /* allocates times x each class's count */
    const struct address_set *freed;
    long reused[CROSS_CLASSES];    /* allocations that returned a freed address */
};

/* The node holding the (touched) page at `address`, or -1. */
static int page_node(const void *address)
{
    void *page = (void *)((uintptr_t)address & ~(uintptr_t)(KERNEL_PAGE - 1));
    int status = -1;
    return move_pages(0, 1, &page, NULL, &status, 0) == 0 ? status : -1;
}

/* On job->node after the hand-off: allocates blocks of the classes that
 * were freed cross-node, checks they are this node's memory and counts
 * how many are addresses the consumers freed. On the consumers' nodes
 * only blocks whose page is not this node's count: a chunk of the
 * producers' node that became wholly free may go back to the kernel
 * (after four decay periods, which a loaded VM's slow run lets pass), and
 * a new chunk of this node be mapped at its address, which is a new block,
 * not a freed one (seen: 701 "reused" blocks, all on the right node). */
static void *after_thread(void *argument)
{
    struct after_job *job = argument;
    struct block_list blocks;
    block_list_init(&blocks, (size_t)cross_count(false) * job->times);
    for (size_t c = 0; c < CROSS_CLASSES; c++)
        for (int i = 0; i < job->times * cross_classes[c].count; i++) {
            void *block = allocate_touched(&blocks, cross_classes[c].size);
            if (block && address_set_has(job->freed, block) &&
                (job->home || page_node(block) != job->node))
                job->reused[c]++;
        }
    struct census census = census_of_blocks(&blocks, 0, blocks.count);
    char label[96];
    snprintf(label, sizeof(label), "node %d allocates %zu blocks afterwards", job->node,
             blocks.count);
    print_census(label, &census);
    CHECK(all_on(&census, job->node), "%s: %ld of %ld pages on node %d", label,
          census.on_node[job->node], census.total, job->node);
    count_node_of_mismatches(&blocks, 0, blocks.count, job->node);
    free_blocks(&blocks);
    block_list_release(&blocks);
    return NULL;
}

static long total_reused(const struct after_job *job)
{
    long total = 0;
    for (size_t c = 0; c < CROSS_CLASSES; c++)
        total += job->reused[c];
    return total;
}

static void print_reuse(const struct after_job *job)
{
    printf("%s: node %d got back freed addresses:", mode_name, job->node);
    for (size_t c = 0; c < CROSS_CLASSES; c++)
        printf(" %zuB=%ld/%d", cross_classes[c].size, job->reused[c],
               job->times * cross_classes[c].count);
    printf(" (total %ld)\n", total_reused(job));
}

static struct xmm_stats read_stats(void)
{
    struct xmm_stats stats;
    memset(&stats, 0, sizeof(stats));
    stats.version = XMM_STATS_VERSION;
    if (xmm_stats_get(&stats) != 0)
        die("xmm_stats_get");
    return stats;
}

/* Producers on the first node; consumers on every other node with CPUs
 * (at least two consumers). Returns the consumers' freed set. */
static struct address_set hand_off(int producer_node, struct consumer_job *consumers,
                                   int consumer_count)
{
    struct producer_job producers[PRODUCERS];
    pthread_t threads[PRODUCERS + CONSUMERS_MAX];
    queue.producers_left = PRODUCERS;
    for (int i = 0; i < consumer_count; i++)
        threads[PRODUCERS + i] = start_on_node(consumers[i].node, consumer_thread, &consumers[i]);
    for (int i = 0; i < PRODUCERS; i++) {
        producers[i] = (struct producer_job){producer_node, 0};
        threads[i] = start_on_node(producer_node, producer_thread, &producers[i]);
    }
    for (int i = 0; i < PRODUCERS + consumer_count; i++)
        pthread_join(threads[i], NULL);

    struct address_set freed = {scratch_alloc(cross_count(false) * sizeof(uintptr_t)), 0};
    for (int i = 0; i < PRODUCERS; i++)
        CHECK(producers[i].wrong_node == 0, "producer on node %d got %ld blocks of another node",
              producer_node, producers[i].wrong_node);
    for (int i = 0; i < consumer_count; i++) {
        CHECK(consumers[i].corrupted == 0, "consumer on node %d saw %ld corrupted blocks",
              consumers[i].node, consumers[i].corrupted);
        for (size_t j = 0; j < consumers[i].freed_count; j++)
            freed.addresses[freed.count++] = (uintptr_t)consumers[i].freed[j].address;
    }
    sort_addresses(freed.addresses, freed.count);
    return freed;
}

static int mode_crossnode(void)
{
    int producer_node = cpu_nodes[0];
    int consumer_count = cpu_node_count - 1 < 2 ? 2 : cpu_node_count - 1;
    struct consumer_job consumers[CONSUMERS_MAX];
    for (int i = 0; i < consumer_count; i++) {
        consumers[i] = (struct consumer_job){cpu_nodes[1 + i % (cpu_node_count - 1)], NULL, 0, 0};
        consumers[i].freed = scratch_alloc(cross_count(false) * sizeof(struct block));
    }
    int total = cross_count(false), small = cross_count(true);
    printf("%s: %d producers on node %d hand %d small and %d large blocks to %d consumers on "
           "other nodes\n", mode_name, PRODUCERS, producer_node, small, total - small,
           consumer_count);

    struct xmm_stats before = read_stats();
    struct address_set freed = hand_off(producer_node, consumers, consumer_count);
    struct xmm_stats after = read_stats();

    /* (a) A cache holds objects of its own node only (front_end.h), so no
     * cross-node free can stay in a consumer's cache: every one of them
     * must be counted. A little more may come from the C library's own
     * per-thread blocks; twice as many would be double counting. */
    uint64_t counted = after.cross_node_frees - before.cross_node_frees;
    printf("%s: front end %s; cross_node_frees %llu -> %llu: +%llu for %d small and %d large "
           "blocks freed on other nodes\n", mode_name, after.front_end,
           (unsigned long long)before.cross_node_frees, (unsigned long long)after.cross_node_frees,
           (unsigned long long)counted, small, total - small);
    CHECK(freed.count == (size_t)total, "consumers freed %zu blocks, producers made %d",
          freed.count, total);
    /* Large blocks go to their page heap without the front end: the count
     * must cover the small ones (docs/design.md, "The path of a free"). */
    CHECK(counted >= (uint64_t)small, "cross_node_frees grew by %llu, %d small blocks were "
          "freed on another node", (unsigned long long)counted, small);
    CHECK(counted <= freed.count + 64, "cross_node_frees grew by %llu for %zu cross-node frees",
          (unsigned long long)counted, freed.count);

    /* (b), (c): consumers' nodes get their own memory, never the freed
     * blocks; then the producers' node gets them back. */
    for (int i = 0; i < cpu_node_count; i++) {
        if (cpu_nodes[i] == producer_node)
            continue;
        struct after_job job = {cpu_nodes[i], false, 2, &freed, {0}};
        run_on_node(job.node, after_thread, &job);
        print_reuse(&job);
        CHECK(total_reused(&job) == 0, "node %d was given %ld blocks of node %d freed on "
              "another node", job.node, total_reused(&job), producer_node);
    }
    struct after_job home = {producer_node, true, 2, &freed, {0}};
    run_on_node(producer_node, after_thread, &home);
    print_reuse(&home);
    CHECK(total_reused(&home) > 0, "node %d never got back any of the %zu blocks freed on "
          "other nodes", producer_node, freed.count);
    return 0;
}

/* ---- mode: migrate ----------------------------------------------------------------- */

#define MIGRATE_SIZE 4096
#define MIGRATE_BLOCKS 3000
#define MIGRATE_HELD 100

/* A cache holds at most its byte budget: XMM_CPU_CACHE_SIZE (4M) per CPU,
 * XMM_THREAD_CACHE_SIZE (2M) per thread (README). */
static size_t cache_budget_bytes(void)
{
    static const char *const names[] = {"XMM_CPU_CACHE_SIZE", "XMM_THREAD_CACHE_SIZE"};
    size_t budget = 4 * MIB;
    for (int i = 0; i < 2; i++) {
        const char *value = getenv(names[i]);
        if (!value)
            continue;
        char *end;
        size_t bytes = strtoull(value, &end, 10);
        if (*end == 'k' || *end == 'K')
            bytes <<= 10;
        else if (*end == 'm' || *end == 'M')
            bytes <<= 20;
        if (bytes > budget)
            budget = bytes;
    }
    return budget;
}

struct migrate_job {
    int from, to;
};

/* Blocks of node `from` may come first (what the cache held when the
 * thread moved), then only node `to`. */
static void check_migrated_sequence(const struct migrate_job *job, const struct block_list *blocks)
{
    size_t prefix = 0;
    while (prefix < blocks->count && xmm_node_of(blocks->blocks[prefix].address) == job->from)
        prefix++;
    size_t bound = cache_budget_bytes() / MIGRATE_SIZE;
    printf("%s: after moving from node %d to node %d: %zu blocks of node %d first (cache "
           "bound %zu), then %zu\n", mode_name, job->from, job->to, prefix, job->from, bound,
           blocks->count - prefix);
    CHECK(prefix <= bound, "%zu blocks of the old node after moving; a cache holds at most %zu",
          prefix, bound);
    count_node_of_mismatches(blocks, prefix, blocks->count, job->to);
    struct census census = census_of_blocks(blocks, prefix, blocks->count);
    print_census("blocks after the refill", &census);
    CHECK(all_on(&census, job->to), "after the refill: %ld of %ld pages on node %d",
          census.on_node[job->to], census.total, job->to);
    if (prefix) {
        census = census_of_blocks(blocks, 0, prefix);
        print_census("blocks still cached from the old node", &census);
        CHECK(all_on(&census, job->from), "cached old blocks: %ld of %ld pages on node %d",
              census.on_node[job->from], census.total, job->from);
    }
}

static void *migrate_thread(void *argument)
{
    struct migrate_job *job = argument;
    struct block_list held, blocks;
    block_list_init(&held, 2 * MIGRATE_HELD);
    block_list_init(&blocks, MIGRATE_BLOCKS);
    /* Fill the cache with old-node objects: allocate, free half. */
    for (int i = 0; i < 2 * MIGRATE_HELD; i++)
        allocate_touched(&held, MIGRATE_SIZE);
    for (int i = MIGRATE_HELD; i < 2 * MIGRATE_HELD; i++)
        free(held.blocks[i].address);
    held.count = MIGRATE_HELD;
    count_node_of_mismatches(&held, 0, held.count, job->from);

    move_to_node(job->to);
    for (int i = 0; i < MIGRATE_BLOCKS; i++)
        allocate_touched(&blocks, MIGRATE_SIZE);
    check_migrated_sequence(job, &blocks);

    /* The cache is the new node's now: old blocks freed here go home. */
    struct xmm_stats before = read_stats();
    free_blocks(&held);
    struct xmm_stats after = read_stats();
    uint64_t counted = after.cross_node_frees - before.cross_node_frees;
    printf("%s: freeing %d old-node blocks on node %d: cross_node_frees +%llu\n", mode_name,
           MIGRATE_HELD, job->to, (unsigned long long)counted);
    CHECK(counted >= MIGRATE_HELD, "freeing %d blocks of node %d on node %d counted %llu "
          "cross-node frees", MIGRATE_HELD, job->from, job->to, (unsigned long long)counted);
    free_blocks(&blocks);
    block_list_release(&held);
    block_list_release(&blocks);
    return NULL;
}

static int mode_migrate(void)
{
    struct migrate_job job = {cpu_nodes[0], cpu_nodes[1]};
    printf("%s: a thread allocates on node %d, moves to node %d, allocates %d x %d B\n",
           mode_name, job.from, job.to, MIGRATE_BLOCKS, MIGRATE_SIZE);
    run_on_node(job.from, migrate_thread, &job);
    return 0;
}

/* ---- mode: spill ----------------------------------------------------------------- */

#define SPILL_BLOCK (8 * MIB) /* page-heap blocks: bound like the chunks */

struct spill_job {
    int node;
    size_t bytes;
};

/* Allocates and touches job->bytes, more than the node has free. */
static void *spill_thread(void *argument)
{
    struct spill_job *job = argument;
    struct block_list blocks;
    block_list_init(&blocks, job->bytes / SPILL_BLOCK + 1);
    for (size_t done = 0; done < job->bytes; done += SPILL_BLOCK)
        allocate_touched(&blocks, SPILL_BLOCK);
    struct census census = census_of_blocks(&blocks, 0, blocks.count);
    char label[96];
    snprintf(label, sizeof(label), "%zu MiB from a CPU of node %d", job->bytes / MIB, job->node);
    print_census(label, &census);
    long elsewhere = census.total - census.on_node[job->node] - census.missing;
    CHECK(census.missing == 0, "%ld touched pages not resident", census.missing);
    /* Most of it on the node, the overflow elsewhere: preferred, not bound. */
    CHECK(census.on_node[job->node] > census.total / 2, "only %ld of %ld pages on node %d",
          census.on_node[job->node], census.total, job->node);
    CHECK(elsewhere > 0, "no page spilled to another node although %zu MiB exceed node %d's "
          "free memory", job->bytes / MIB, job->node);
    count_node_of_mismatches(&blocks, 0, blocks.count, job->node);
    free_blocks(&blocks);
    block_list_release(&blocks);
    return NULL;
}

/* XMM_NUMA=local binds MPOL_PREFERRED (src/numa.c) so that a node short of
 * memory spills to another node instead of calling the OOM killer: ask
 * one node for 64 MiB more than it has free. */
static int mode_spill(void)
{
    int node = cpu_nodes[cpu_node_count - 1];
    long long node_free = 0, others_free = 0;
    for (int other = 0; other < node_limit; other++) {
        long long free_bytes = 0;
        if (node_has_memory[other] && numa_node_size64(other, &free_bytes) > 0 && other != node)
            others_free += free_bytes;
        if (other == node)
            node_free = free_bytes;
    }
    struct spill_job job = {node, (size_t)node_free + 64 * MIB};
    printf("%s: node %d has %lld MiB free, the other nodes %lld MiB; asking for %zu MiB\n",
           mode_name, node, node_free >> 20, others_free >> 20, job.bytes / MIB);
    if (others_free < (long long)(256 * MIB)) {
        printf("SKIP: %s: the other nodes have too little free memory to spill to\n", mode_name);
        return EXIT_SKIP;
    }
    run_on_node(node, spill_thread, &job);
    return 0;
}

/* ---- mode: thp_touch ------------------------------------------------------------- */

/* Under XMM_THP=always every chunk asks for huge pages at its mapping, so
 * small blocks written as they come must lie on huge pages from their
 * first fault. XMM's first touch of a never-used object is a write
 * (central.c, mark_never_used): a read first maps the zero page, on 6.1
 * (Debian 12's kernel, this VM's) the huge zero page, and the write that
 * follows splits the 2 MiB range into small pages for good. Before that
 * was fixed, 256 MiB of 64 B and 1 KiB blocks lay on no huge page at all
 * in this VM with THP=madvise (6.18 maps no huge zero page there: the
 * case passed natively either way). */
static void *thp_touch_thread(void *argument)
{
    (void)argument;
    static const size_t sizes[] = {64, 1024};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        struct block_list blocks;
        block_list_init(&blocks, 32 * MIB / sizes[i]);
        uintptr_t low = UINTPTR_MAX, high = 0;
        for (size_t bytes = 0; bytes < 32 * MIB; bytes += sizes[i]) {
            uintptr_t block = (uintptr_t)allocate_touched(&blocks, sizes[i]);
            low = block < low ? block : low;
            high = block + sizes[i] > high ? block + sizes[i] : high;
        }
        unsigned long huge = huge_kilobytes_in(low, high);
        printf("%s: 32 MiB of %zu B blocks: %lu KiB on huge pages\n", mode_name, sizes[i], huge);
        CHECK(huge * 1024 >= 16 * MIB, "%zu B blocks: %lu KiB of 32 MiB on huge pages, want half",
              sizes[i], huge);
        free_blocks(&blocks);
        block_list_release(&blocks);
    }
    return NULL;
}

static int mode_thp_touch(void)
{
    const char *thp = getenv("XMM_THP");
    if (!thp || strcmp(thp, "always") != 0) {
        printf("%s: run with XMM_THP=always\n", mode_name);
        return EXIT_USAGE;
    }
    char enabled[128];
    read_file("/sys/kernel/mm/transparent_hugepage/enabled", enabled, sizeof(enabled));
    if (!strstr(enabled, "[always]") && !strstr(enabled, "[madvise]")) {
        printf("SKIP: %s: transparent huge pages are off (%s)\n", mode_name, enabled);
        return EXIT_SKIP;
    }
    run_on_node(cpu_nodes[0], thp_touch_thread, NULL);
    return 0;
}

/* ---- main ------------------------------------------------------------------------- */

struct mode {
    const char *name;
    int (*run)(void);
    int nodes_needed; /* nodes with CPUs */
};

static int mode_bind1(void)
{
    return mode_bind(true);
}

static int mode_bind_list(void)
{
    return mode_bind(false);
}

static const struct mode modes[] = {
    {"local", mode_local, 1},           {"interleave", mode_interleave, 2},
    {"bind1", mode_bind1, 2},           {"bind", mode_bind_list, 2},
    {"crossnode", mode_crossnode, 2},   {"migrate", mode_migrate, 2},
    {"on_node", mode_on_node, 1},       {"membind", mode_membind, 2},
    {"spill", mode_spill, 2},           {"thp_touch", mode_thp_touch, 1},
};

static int usage(void)
{
    printf("usage: test_numa MODE (local interleave bind1 bind crossnode migrate on_node "
           "membind spill thp_touch)\n");
    return EXIT_USAGE;
}

/* move_pages must work, or nothing here can be measured. */
static bool move_pages_works(void)
{
    void *page = scratch_alloc(KERNEL_PAGE);
    memset(page, 1, KERNEL_PAGE);
    int status = -1;
    long result = move_pages(0, 1, &page, NULL, &status, 0);
    scratch_free(page, KERNEL_PAGE);
    return result == 0 && status >= 0;
}

int main(int argc, char **argv)
{
    if (argc != 2)
        return usage();
    const struct mode *mode = NULL;
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
        if (!strcmp(argv[1], modes[i].name))
            mode = &modes[i];
    if (!mode)
        return usage();
    mode_name = mode->name;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (numa_available() < 0 || !move_pages_works()) {
        printf("SKIP: %s: no NUMA system calls (numa_available, move_pages)\n", mode_name);
        return EXIT_SKIP;
    }
    read_topology();
    if (cpu_node_count < mode->nodes_needed) {
        printf("SKIP: %s needs %d NUMA nodes with CPUs; this machine has %d\n", mode_name,
               mode->nodes_needed, cpu_node_count);
        return EXIT_SKIP;
    }
    int status = mode->run();
    if (status != 0)
        return status;
    int failed = atomic_load(&failures);
    printf("%s: %s (%d nodes, %d with CPUs)\n", mode_name, failed ? "FAILED" : "passed",
           node_limit, cpu_node_count);
    return failed ? 1 : 0;
}
