/*
 * metadata.c - a bump allocator over dedicated mappings (see metadata.h).
 */
#include "metadata.h"

#include <pthread.h>

#define METADATA_BLOCK_SIZE ((size_t)4 << 20)

static pthread_mutex_t metadata_lock = PTHREAD_MUTEX_INITIALIZER;
static char *block_cursor;
static char *block_end;
static size_t mapped_bytes;

void *xmm_metadata_alloc(size_t size, size_t alignment)
{
    pthread_mutex_lock(&metadata_lock);
    char *start = (char *)xmm_align_up((uintptr_t)block_cursor, alignment);
    if (!block_cursor || start + size > block_end) {
        size_t block = size + 4096 > METADATA_BLOCK_SIZE ? xmm_align_up(size + 4096, 4096)
                                                          : METADATA_BLOCK_SIZE;
        char *fresh = xmm_os_map(block, 4096);
        if (!fresh) {
            pthread_mutex_unlock(&metadata_lock);
            return NULL;
        }
        mapped_bytes += block;
        block_cursor = fresh;
        block_end = fresh + block;
        start = fresh;
    }
    block_cursor = start + size;
    pthread_mutex_unlock(&metadata_lock);
    return start; /* fresh anonymous memory: already zero */
}

size_t xmm_metadata_bytes(void)
{
    return __atomic_load_n(&mapped_bytes, __ATOMIC_RELAXED);
}

void xmm_metadata_lock(void)
{
    pthread_mutex_lock(&metadata_lock);
}

void xmm_metadata_unlock(void)
{
    pthread_mutex_unlock(&metadata_lock);
}

void xmm_metadata_reset_lock(void)
{
    pthread_mutex_init(&metadata_lock, NULL);
}
