/*
 * metadata.c - a bump allocator over dedicated mappings (see metadata.h).
 */
#include "metadata.h"

/* 1 MiB: metadata grows a block at a time; a small process reserves
 * little (a tight ulimit -v counts every mapping). */
#define METADATA_BLOCK_SIZE ((size_t)1 << 20)

static struct xmm_lock metadata_lock = XMM_LOCK_INITIALIZER;
static char *block_cursor;
static char *block_end;
static size_t mapped_bytes;

void *xmm_metadata_alloc(size_t size, size_t alignment)
{
    /* A signal handler that interrupted this thread inside the lock gets
     * nothing: its allocation fails. */
    if (!xmm_lock_acquire(&metadata_lock))
        return NULL;
    char *start = (char *)xmm_align_up((uintptr_t)block_cursor, alignment);
    if (!block_cursor || start + size > block_end) {
        size_t block = size + 4096 > METADATA_BLOCK_SIZE ? xmm_align_up(size + 4096, 4096)
                                                          : METADATA_BLOCK_SIZE;
        char *fresh = xmm_os_map(block, 4096);
        if (!fresh) {
            xmm_lock_release(&metadata_lock);
            return NULL;
        }
        mapped_bytes += block;
        block_cursor = fresh;
        block_end = fresh + block;
        start = fresh;
    }
    block_cursor = start + size;
    xmm_lock_release(&metadata_lock);
    return start; /* fresh anonymous memory: already zero */
}

bool xmm_metadata_reentered(void)
{
    return xmm_lock_holder(&metadata_lock) == XMM_LOCK_HELD_BY_CALLER;
}

size_t xmm_metadata_bytes(void)
{
    return __atomic_load_n(&mapped_bytes, __ATOMIC_RELAXED);
}

/* The holder was cutting a piece from the current block: the piece and the
 * rest of the block are dropped (the next allocation maps a new block). */
void xmm_metadata_after_fork_child(void)
{
    if (xmm_lock_holder(&metadata_lock) != XMM_LOCK_HELD_BY_OTHER)
        return;
    block_cursor = NULL;
    block_end = NULL;
    xmm_lock_reset(&metadata_lock);
}
