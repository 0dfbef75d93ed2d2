/*
 * xmm_buf.h - pooled I/O buffers for servers, on XMM (src/buf.c).
 *
 * A buffer holds bytes between a head and a tail: data arrives at the tail
 * (xmm_buf_read_fd, xmm_buf_append) and is consumed from the head
 * (xmm_buf_consume). Its capacity is one of the tiers 4 KiB, 16 KiB,
 * 64 KiB, 256 KiB, 1 MiB, 4 MiB and 8 MiB; a buffer that must hold more
 * moves to a larger tier, keeping its bytes. Nothing above 8 MiB is served:
 * a larger block is better taken with xmm_malloc directly.
 *
 * Pools. A buffer given back with xmm_buf_put is kept, with its memory, in
 * a pool of the CPU that put it, and handed to the next xmm_buf_get of that
 * tier on that CPU: the memory is still in that CPU's caches and on its
 * NUMA node. Each CPU's pool has its own small lock, which is only ever
 * tried, never waited for: if another thread holds it (it was preempted
 * there, or migrated), or the CPU cannot be known, the calling thread's own
 * pool serves instead. All pools together hold at most XMM_BUF_POOL_MIB
 * MiB of buffer memory (default 64, 0 disables pooling); what would exceed
 * it goes back to the allocator at once. A CPU's pool takes its share of
 * the cap in steps, so that gets and puts share no counter between CPUs;
 * the steps a CPU holds without buffers are at most a quarter of the cap
 * over all CPUs, so pooling may stop that much short of the cap. A buffer whose memory lies on
 * another node than the CPU that puts it also goes back (to its home node),
 * so a pool only ever holds memory local to its CPU.
 *
 * Errors. Functions returning int give 0, or -1 with errno set; ssize_t
 * ones -1 with errno. A call that fails leaves the live bytes as they were.
 * Misuse fails with EINVAL instead of corrupting anything:
 *   - a pointer that is not a live buffer (not from xmm_buf_get, or already
 *     put) is also reported on stderr, one line naming the function and the
 *     address. The descriptor carries a magic number bound to its own
 *     address and a state. xmm_buf_put first checks, without reading
 *     through it, that the pointer is the start of an XMM block, so any
 *     pointer at all is safe to pass it; the other functions, on the data
 *     path, only compare the magic and the state (a pointer to unmapped
 *     memory faults there, as in any C API).
 *   - consuming more than the length: EINVAL only, like a bad argument.
 * A put buffer is detected as such until it is handed out again; like a
 * double free, a put of a stale pointer after that cannot be told from a
 * put by the new owner. Descriptors and the bytes are separate blocks, so
 * writing past the end of the data cannot forge a descriptor.
 *
 * Thread safety: any thread may get and put buffers; one buffer must not be
 * used by two threads at once without the caller's own synchronisation.
 */
#ifndef XMM_BUF_H
#define XMM_BUF_H

#include <stddef.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The largest capacity a buffer can have: the top tier, 8 MiB. */
#define XMM_BUF_MAX_CAPACITY ((size_t)8 << 20)

struct xmm_buf; /* opaque */

/* An empty buffer whose capacity is the smallest tier >= min_capacity (0
 * gives the 4 KiB tier), from the calling CPU's pool, or newly allocated
 * on the calling CPU's NUMA node. NULL with errno EINVAL if min_capacity
 * exceeds XMM_BUF_MAX_CAPACITY, ENOMEM if memory runs out. */
struct xmm_buf *xmm_buf_get(size_t min_capacity);

/* Gives `buf` back: to a pool, or to the allocator if the pools are full or
 * the memory belongs to another node. Its bytes are gone; `buf` must not be
 * used again. NULL is a no-op returning 0. -1 with errno EINVAL (and a
 * message) if `buf` is not a live buffer: a foreign pointer, or put twice. */
int xmm_buf_put(struct xmm_buf *buf);

/* Appends what one read(2) of `fd` gives, into the space after the tail.
 * If there is none, the live bytes are first moved to the front, or, if
 * they fill the buffer, the buffer moves to the next tier. Returns the
 * bytes read (> 0), 0 at end of file, or -1 with errno: read's own (EAGAIN,
 * EINTR, ...), EMSGSIZE if the buffer is full at the top tier, ENOMEM if a
 * larger tier could not be had, EINVAL if `buf` is not a live buffer. The
 * live bytes are kept in every case (the making of room stays done). */
ssize_t xmm_buf_read_fd(struct xmm_buf *buf, int fd);

/* Appends `n` bytes from `data` (which may be live bytes of `buf` itself).
 * Makes room like xmm_buf_read_fd: moves the live bytes to the front if
 * that is enough, else moves to the smallest tier that holds them all.
 * Returns 0, or -1 with errno EMSGSIZE (length + n exceeds
 * XMM_BUF_MAX_CAPACITY, or overflows), ENOMEM, or EINVAL (`buf` not live,
 * data NULL with n > 0); nothing changes on failure. */
int xmm_buf_append(struct xmm_buf *buf, const void *data, size_t n);

/* The first live byte. Valid until the next call that adds bytes, compacts
 * or puts the buffer. NULL with errno EINVAL if `buf` is not live. */
void *xmm_buf_data(const struct xmm_buf *buf);

/* The number of live bytes (0 with errno EINVAL if `buf` is not live). */
size_t xmm_buf_len(const struct xmm_buf *buf);

/* The capacity: the tier's size (0 with errno EINVAL if `buf` is not
 * live). Head room, live bytes and tail room add up to it. */
size_t xmm_buf_capacity(const struct xmm_buf *buf);

/* Drops the first `n` live bytes (advances the head). Consuming everything
 * also moves the head back to the front, so a buffer that is kept drained
 * never needs compacting. -1 with errno EINVAL, and nothing changes, if n
 * exceeds the length or `buf` is not live. */
int xmm_buf_consume(struct xmm_buf *buf, size_t n);

/* Moves the live bytes to the front, so that all free space is after the
 * tail. Returns 0, or -1 with errno EINVAL if `buf` is not live. */
int xmm_buf_compact(struct xmm_buf *buf);

/* Drops every live byte (the capacity stays). Returns 0, or -1 with errno
 * EINVAL if `buf` is not live. */
int xmm_buf_clear(struct xmm_buf *buf);

/* Bytes of buffer memory the pools hold now, over all CPUs and threads:
 * the sum of the capacities of pooled buffers (their small descriptors are
 * not counted). Exact when no other thread gets or puts meanwhile, and
 * never more than xmm_buf_pool_limit(). */
size_t xmm_buf_pool_bytes(void);

/* The pools' cap in bytes: XMM_BUF_POOL_MIB MiB (64 MiB by default), read
 * once, at the first call of any xmm_buf_* function. */
size_t xmm_buf_pool_limit(void);

#ifdef __cplusplus
}
#endif

#endif /* XMM_BUF_H */
