/*
 * xmm.h - XMM, a NUMA-aware memory allocator for multithreaded servers.
 *
 * Linking with -lxmm (or LD_PRELOAD=libxmm.so) replaces malloc, free and
 * the rest of the C and C++ allocation API. The functions below are XMM's
 * own interface; they work whether or not XMM also replaces malloc in the
 * process (the `xmm_*` functions never touch another allocator's memory).
 *
 * Conventions for every function here:
 *   - A function that returns memory returns NULL on failure and sets errno
 *     to ENOMEM (out of memory, or a size that overflows) or EINVAL (a bad
 *     argument). It never aborts on bad sizes.
 *   - Memory is aligned to 16 bytes for every request above 8 bytes, and
 *     to 8 bytes below (C17 7.22.3: the alignment of any fundamental type
 *     whose size fits, flexible array members included); C++ operator new
 *     gives 16 for every size. It must be freed with xmm_free or free()
 *     (if XMM replaces malloc).
 *   - Freeing a pointer XMM did not hand out, or freeing twice, is reported
 *     on stderr with the address and aborts (XMM_INVALID_FREE=warn only
 *     reports and leaks).
 *   - All functions are thread-safe.
 */
#ifndef XMM_H
#define XMM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define XMM_VERSION_MAJOR 0
#define XMM_VERSION_MINOR 1

/* ---- allocation -------------------------------------------------------- */

/* Allocates `size` bytes (size 0 gives a unique, freeable minimum block).
 * The memory comes from the NUMA node of the calling CPU. */
void *xmm_malloc(size_t size);

/* Frees a block from any xmm_* allocation function. NULL is a no-op. */
void xmm_free(void *ptr);

/* Allocates `count * size` zeroed bytes; ENOMEM if the product overflows.
 * A count or size of 0 gives a unique, freeable minimum block, as
 * xmm_malloc(0) does. */
void *xmm_calloc(size_t count, size_t size);

/* Resizes `ptr` to `size` bytes, keeping the contents up to the smaller
 * size; may move the block. ptr NULL acts as xmm_malloc (so (NULL, 0)
 * gives a minimum block). On failure returns NULL and leaves `ptr` valid
 * and unchanged. size 0 with a block frees it and returns NULL (as glibc's
 * realloc does). A pointer XMM did not hand out, or one already freed, is
 * reported like an invalid free; under XMM_INVALID_FREE=warn the call then
 * returns NULL with errno EINVAL and touches nothing. */
void *xmm_realloc(void *ptr, size_t size);

/* Allocates `size` bytes aligned to `alignment`, a power of two (any value
 * up to at least 1 GiB; below 8, 8). EINVAL if `alignment` is not a power
 * of two; ENOMEM if no mapping can honour it (2^63). size 0 gives a
 * minimum block. */
void *xmm_aligned_alloc(size_t alignment, size_t size);

/* The number of usable bytes in the block `ptr` (>= the size requested),
 * or 0 for NULL. A pointer XMM did not hand out is reported like an
 * invalid free (and aborts by default): use xmm_node_of to test ownership.
 * A block the heap profiler sampled (XMM_PROFILE) is whole pages of its
 * own, and says so: 4096 for a sampled 100-byte request. */
size_t xmm_usable_size(const void *ptr);

/* ---- the original XMM helpers ---------------------------------------------
 * XMM grew from a Go allocator whose users built lists, trees and hash
 * tables directly on it: allocate an array by element size and count, copy
 * a string into managed memory, take raw pages. */

/* An array of `count` elements of `elem_size` bytes each, uninitialised.
 * ENOMEM if `count * elem_size` overflows; a product of 0 gives a minimum
 * block, as xmm_malloc(0) does. */
void *xmm_alloc_array(size_t elem_size, size_t count);

/* Resizes an array from xmm_alloc_array to `count` elements, with the same
 * overflow check; like xmm_realloc otherwise. */
void *xmm_realloc_array(void *ptr, size_t elem_size, size_t count);

/* A copy of the NUL-terminated string `text` in XMM memory. EINVAL if
 * `text` is NULL. */
char *xmm_strdup(const char *text);

/* A copy of at most `max_length` bytes of `text`, always NUL-terminated.
 * EINVAL if `text` is NULL. */
char *xmm_strndup(const char *text, size_t max_length);

/* The size of a page for xmm_alloc_pages (the kernel's base page size). */
size_t xmm_page_size(void);

/* `count` whole pages (count * xmm_page_size() bytes), page-aligned and
 * zeroed, from the calling CPU's node. count 0 gives EINVAL. */
void *xmm_alloc_pages(size_t count);

/* Frees pages from xmm_alloc_pages; `count` must be the count passed to
 * it. NULL is a no-op. A count that would have given another usable size
 * (another size class, or another number of pages for a large block) is
 * reported like an invalid free; one of the same size class (17 and 18
 * pages: 72 KiB) cannot be told apart, and is taken. */
void xmm_free_pages(void *pages, size_t count);

/* ---- NUMA placement --------------------------------------------------- */

/* Allocates `size` bytes from NUMA node `node`, whatever CPU the caller
 * runs on (also under XMM_NUMA=interleave). EINVAL if the node does not
 * exist or the process may not use it (cpuset, numactl --membind,
 * XMM_NUMA=bind:LIST). */
void *xmm_malloc_on_node(size_t size, int node);

/* xmm_node_of's answer for a block of the interleaved heap
 * (XMM_NUMA=interleave): its pages are spread over every node. */
#define XMM_NODE_INTERLEAVED (-2)

/* The NUMA node XMM took the block `ptr` from (its home node),
 * XMM_NODE_INTERLEAVED for interleaved memory, or -1 (with errno EINVAL) if
 * XMM did not hand out `ptr`. */
int xmm_node_of(const void *ptr);

/* The number of NUMA nodes XMM manages (1 on a machine without NUMA). */
int xmm_node_count(void);

/* The NUMA node of the CPU the calling thread runs on (which may change
 * right after the call), as xmm_malloc_on_node numbers nodes: the node XMM
 * takes the thread's memory from, except under XMM_NUMA=interleave, where
 * that memory comes from every node and this is still the CPU's own (a
 * node other CPUs' memory may use under XMM_NUMA=bind: the first usable).
 * Thread-safe; a vDSO call, tens of ns. */
int xmm_current_node(void);

/* The number of CPUs the machine has (possible CPUs, online or not), as
 * XMM's per-CPU structures count them; at least 1. Thread-safe. */
int xmm_cpu_count(void);

/* ---- memory return and caches ------------------------------------------ */

/* Returns to the operating system every free page XMM holds, after moving
 * the calling thread's cached objects and every CPU's cache back to the
 * central free lists. Returns the number of bytes purged. */
size_t xmm_release_memory(void);

/* Empties the per-CPU caches (or, in per-thread mode, the calling thread's
 * cache) into the central free lists, without purging. */
void xmm_release_cpu_caches(void);

/* ---- statistics -------------------------------------------------------- */

#define XMM_STATS_VERSION 1

/* A snapshot of XMM's state. Fields are summed on demand from per-CPU and
 * per-node counters; concurrent activity makes them approximate. Pass
 * `version = XMM_STATS_VERSION` in, the rest zeroed: the library writes the
 * fields of its own version and sets `version` to it, so that a program
 * built with a later header finds the fields this library does not know
 * still zero. */
struct xmm_stats {
    uint32_t version;            /* in: XMM_STATS_VERSION */
    uint32_t node_count;
    uint64_t allocations;        /* malloc-like calls that succeeded */
    uint64_t frees;              /* free-like calls with a non-NULL pointer */
    uint64_t bytes_in_use;       /* sum of usable sizes of live blocks */
    uint64_t bytes_reserved;     /* address space mapped from the kernel */
    uint64_t bytes_committed;    /* mapped and not purged */
    uint64_t bytes_purged;       /* total returned with madvise so far */
    uint64_t bytes_cached;       /* free objects in CPU/thread caches */
    uint64_t bytes_central;      /* free objects in central lists and spans */
    uint64_t bytes_page_heap_free; /* free pages not yet purged (page heap,
                                      large cache, CPUs' carver runs) */
    uint64_t large_allocations;  /* served as whole pages: above the largest
                                    size class, alignment above 4 KiB, calloc
                                    from 128 KiB (docs/statistics.md) */
    uint64_t cross_node_frees;   /* small blocks freed on a CPU of another
                                    node, sent back to their home node */
    uint64_t invalid_frees;      /* pointers reported as not handed out or
                                    already freed: by frees, reallocs and
                                    usable-size calls; and free blocks a
                                    hand-out or a drain found overwritten
                                    (warn mode goes on) */
    uint64_t cache_refills;      /* front end misses served by central */
    uint64_t cache_drains;       /* front end overflows sent to central */
    uint64_t rseq_fast_path;     /* per-CPU operations that committed */
    uint64_t rseq_fallback;      /* operations that used a thread cache */
    uint64_t metadata_bytes;     /* allocator bookkeeping */
    char front_end[16];          /* "per-cpu" or "per-thread" */
    uint64_t rseq_restarts;      /* per-CPU critical sections restarted */
};

/* Fills `stats`. Returns 0, or -1 with errno EINVAL if stats is NULL (or
 * ENOMEM if XMM could not initialise). */
int xmm_stats_get(struct xmm_stats *stats);

/* Writes the statistics to file descriptor `fd` in `format` "text" or
 * "json" (NULL means "text"). Never allocates. Returns 0, or -1 with errno
 * EINVAL for an unknown format, or write(2)'s errno (EBADF for a bad
 * `fd`). */
int xmm_stats_print(int fd, const char *format);

/* ---- heap profile ------------------------------------------------------ */

/* Writes a heap profile of the blocks live now to the file `path`
 * (replacing it), or, if `path` is NULL, to XMM_PROFILE_FILE with %p, %e
 * and %% expanded (default "xmm.%p.heap" in the working directory).
 *
 * Needs sampling on: XMM_PROFILE=1 (one sample per 512 KiB allocated on
 * average), XMM_PROFILE=<bytes> (another mean interval, e.g. 64k),
 * XMM_LEAKS=1 or XMM_PROFILE_SIGNAL. Each sample stands for
 * 1 / (1 - e^(-size/interval)) blocks of its size, so the figures are
 * estimates of the whole heap: live objects and live bytes (the sizes
 * requested, in bytes) per call stack, and the same for every allocation
 * since the start. The format is gperftools' legacy heap profile text
 * format, with the process's /proc/self/maps (MAPPED_LIBRARIES), which
 * `google-pprof --text PROGRAM FILE` (package google-perftools) reads and
 * symbolizes, as it reads the files of gperftools' HeapProfilerDump() and
 * of jemalloc's "prof.dump" mallctl, where the idea comes from.
 *
 * Returns 0, or -1 with errno: ENOTSUP when sampling is off, ENAMETOOLONG
 * when the expanded path is too long, ENOMEM, or an error of open(2) or
 * write(2) on the file. Thread-safe: any thread, while others allocate
 * (each stack's figures are consistent; the dump as a whole is not one
 * instant). Not async-signal-safe: from a signal handler, use
 * XMM_PROFILE_SIGNAL instead. Never allocates. */
int xmm_profile_dump(const char *path);

/* ==== typed helpers ======================================================
 * Slices and strings on the xmm_* API, as the original XMM offered them
 * (implemented in src/slice.c). The conventions above hold; functions that
 * return int give 0, or -1 with errno set, and a call that fails changes
 * nothing (no partial state).
 */

/* A growable array of `elem_size`-byte elements, like a Go slice: the first
 * `length` of `capacity` elements are in use. The struct itself belongs to
 * the caller (on the stack, inside another object); `data` is an XMM block.
 * Read the fields freely; change them only through the functions below. */
struct xmm_slice {
    void *data;        /* NULL while capacity is 0 */
    size_t length;     /* elements in use */
    size_t capacity;   /* elements that fit in `data` without growing */
    size_t elem_size;  /* bytes per element, > 0 once initialised */
};

/* Sets up `slice` with `length` zeroed elements and room for at least
 * `capacity` elements (capacity >= length; capacity 0 allocates nothing).
 * Returns 0, or -1 with errno EINVAL (slice NULL, elem_size 0, length >
 * capacity) or ENOMEM (capacity * elem_size overflows, out of memory). On
 * failure *slice is not written. */
int xmm_slice_init(struct xmm_slice *slice, size_t elem_size, size_t length, size_t capacity);

/* Makes room for at least `capacity` elements in total without changing the
 * length: first within the block XMM already gave (xmm_usable_size), else
 * with xmm_realloc to exactly what is asked. Returns 0, or -1 with errno
 * EINVAL (slice NULL or not initialised) or ENOMEM (capacity * elem_size
 * overflows, out of memory); on failure the slice is unchanged. */
int xmm_slice_reserve(struct xmm_slice *slice, size_t capacity);

/* Appends `count` elements copied from `elements`, which may point into the
 * slice itself. When full, the slice first takes the slack of its block (so
 * growth is in place when the size class has room), else grows to twice its
 * capacity (or to what is needed, if more) with xmm_realloc; addresses of
 * elements are then invalidated. Returns 0, or -1 with errno EINVAL (slice
 * not initialised, elements NULL with count > 0) or ENOMEM (length + count
 * or the byte size overflows, out of memory); on failure the slice is
 * unchanged. */
int xmm_slice_append(struct xmm_slice *slice, const void *elements, size_t count);

/* The address of element `index`, valid until the slice grows or is freed.
 * NULL with errno EINVAL if index >= length or the slice is NULL. */
void *xmm_slice_at(const struct xmm_slice *slice, size_t index);

/* Frees the slice's memory and leaves it empty (data NULL, length and
 * capacity 0, elem_size kept), ready to be appended to again. NULL is a
 * no-op. */
void xmm_slice_free(struct xmm_slice *slice);

/* Copies `text` and its NUL into `block`, which must be the start of a
 * block from XMM (xmm_malloc and the like) of which the caller offers the
 * first `block_size` bytes. Returns 0, or -1 with errno EINVAL (block or
 * text NULL, block not the start of an XMM block, block_size larger than
 * xmm_usable_size(block)) or ERANGE (text and its NUL need more than
 * block_size bytes; the block is then not written). */
int xmm_strcpy_into(char *block, size_t block_size, const char *text);

/* Appends `text` to the NUL-terminated string held in `block`, with the
 * checks of xmm_strcpy_into; also EINVAL if the first block_size bytes of
 * the block hold no NUL. ERANGE (block not written) if the result and its
 * NUL need more than block_size bytes. */
int xmm_strcat_into(char *block, size_t block_size, const char *text);

/* A new string in XMM memory: `first` followed by `second`. NULL with errno
 * EINVAL if either is NULL, ENOMEM if the total length overflows or memory
 * runs out. Free it with xmm_string_free. */
char *xmm_strconcat(const char *first, const char *second);

/* Frees a string from xmm_strdup, xmm_strndup or xmm_strconcat. NULL is a
 * no-op. */
void xmm_string_free(char *string);

/* ==== end of typed helpers ================================================ */

#ifdef __cplusplus
}
#endif

#endif /* XMM_H */
