/*
 * cpu_cache.h - per-CPU caches on restartable sequences (cpu_cache.c),
 * when the build has the architecture's critical sections
 * (XMM_PER_CPU_CACHES, platform.h). The inline fast paths are in
 * front_end.h.
 */
#ifndef XMM_CPU_CACHE_H
#define XMM_CPU_CACHE_H

#include "base/base.h"
#include "ds/ds.h"
#include "cache_stats.h"
/* A slab's bins: one per size class, whose header index (its bin) is the
 * class, and one remote bin per class smaller than a cache line, at bins
 * XMM_CLASS_COUNT to XMM_CPU_BIN_COUNT - 1. A free of such an object whose
 * page another CPU's cache took from the central layer (its owner byte,
 * backend/arena.h) goes to the remote bin, not to the top of the class's
 * bin: the next malloc on this CPU would hand it straight back, and its
 * cache line is likely written by the owner's threads (passive false
 * sharing, as in Hoard's cache-scratch). Mallocs never pop a remote bin;
 * it leaves by drains to the central layer, like a full bin. Objects
 * freed by their owner CPU (most frees) and every larger class go to the
 * class's bin as before. */
#define XMM_CPU_BIN_COUNT (XMM_CLASS_COUNT + XMM_SUBLINE_CLASSES)

XMM_INLINE unsigned xmm_cpu_remote_bin(unsigned size_class)
{
    return XMM_CLASS_COUNT - 1 + size_class;
}

XMM_INLINE unsigned xmm_cpu_bin_class(unsigned bin)
{
    return bin < XMM_CLASS_COUNT ? bin : bin - (XMM_CLASS_COUNT - 1);
}

/* The slots every bin of a slab starts in (cpu_cache.c, move_out). */
#define XMM_CPU_STARTING_SLOTS 16

#if XMM_PER_CPU_CACHES
#include "rseq_percpu.h"
/* A slab is: word 0 the node, then one header word per bin, then the
 * slots; the sections address bins as bytes (bin < 128). */
_Static_assert(XMM_CPU_BIN_COUNT <= XMM_SLAB_FIRST_SLOT, "bin headers overlap the slots");
_Static_assert(XMM_CPU_BIN_COUNT <= XMM_SLAB_PENDING_WORD &&
                   XMM_SLAB_PENDING_WORD < XMM_SLAB_FIRST_SLOT,
               "the pending slot is a header word no bin uses");
_Static_assert(XMM_CPU_BIN_COUNT <= 128, "the sections take the bin as a byte below 128");
_Static_assert(XMM_SLAB_REMOTE_OFFSET == XMM_CLASS_COUNT - 1, "remote bins follow the classes'");
_Static_assert(XMM_PAGE_OWNER_FRESH == 0xfe && XMM_PAGE_OWNER_SHARED == 0xff,
               "xmm_rseq_push_owned takes 0xfe and up for no owner");
_Static_assert(XMM_SLAB_WORDS - 1 <= 0xffff, "slot indexes are 16-bit in a header");
#endif

/* xmm_thread.rseq_area (base/common.h): the calling thread's rseq area
 * while it uses the per-CPU caches (with rseq_index set with it; the slab
 * base is the global xmm_cpu_slabs). Set when the thread must not use them (its area is not usable; a
 * vfork child, see platform/x86_64/override_vfork.S): */
extern __thread bool xmm_rseq_attach_refused __attribute__((tls_model("initial-exec")));
extern XMM_HIDDEN char *xmm_cpu_slabs;
extern XMM_HIDDEN uint32_t xmm_rseq_index_offset; /* XMM_RSEQ_CPU_ID_OFFSET or _MM_CID_ */

/* The index field of `area` (any thread's) the slabs are chosen by. */
XMM_INLINE const uint32_t *xmm_rseq_index(void *area)
{
    return (const uint32_t *)((char *)area + xmm_rseq_index_offset);
}

/* Set-up: phase 1 (false if the process uses per-thread caches), phase 2
 * (from then on threads may attach). */
bool xmm_cpu_cache_init_core(void);
void xmm_cpu_cache_init_hooks(void);

/* Gives the calling thread an rseq area if the per-CPU caches are in use;
 * false means it uses a per-thread cache. */
bool xmm_cpu_cache_attach(void);

/* Slow paths: a miss, and a push refused with `push_result`. The object's
 * node and bin are found again from its page (the hit path keeps fewer
 * values alive across its section); an object whose page word a trim
 * cleared goes back to its span. */
void *xmm_cpu_cache_alloc_slow(unsigned size_class);
void xmm_cpu_cache_free_slow(void *object, unsigned size_class, int push_result);
/* A push_result of the slow path's own: the object's node is not known
 * from its page word. */
#define XMM_RSEQ_FOREIGN_UNKNOWN (-1)

/* Fork repair, release of every CPU's cache, mode and statistics. */
void xmm_cpu_cache_after_fork_child(void);
/* The release also empties the pending slots (src/global/free.h): each
 * block taken is passed to `check_pending`, which tags it free (true) or
 * reports it (false), and goes back to its span. */
void xmm_cpu_cache_release(bool (*check_pending)(void *object, uint64_t tag));
bool xmm_cpu_cache_in_use(void);
const char *xmm_cpu_cache_detail(void);
int xmm_cpu_cache_slabs_in_use(void);
/* Bytes of free objects in the cache of CPU (or concurrency id) `slab`
 * (0 in per-thread mode: front_end.c). */
uint64_t xmm_cpu_cache_bytes(int slab);
void xmm_cpu_cache_stats(struct xmm_front_stats *stats);

#endif
