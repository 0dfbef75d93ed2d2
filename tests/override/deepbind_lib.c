/*
 * deepbind_lib.c - libxmm-test-deepbind.so, for tests/override/deepbind.c: a
 * library linked against libxmm.so (and libnuma), which a program that
 * does not use XMM loads with dlopen(RTLD_DEEPBIND). Its own calls of
 * malloc and free bind to XMM's; so do those of its dependencies
 * (libnuma's constructor frees, through XMM, a buffer glibc allocated).
 */
#include <malloc.h>
#include <numa.h>
#include <stdlib.h>
#include <string.h>

#include "xmm.h"

int deepbind_use_xmm(void);
void deepbind_free(void *ptr);
void *deepbind_realloc(void *ptr, size_t size);
size_t deepbind_usable_size(void *ptr);

/* Blocks from this library's malloc are XMM's. 0 if all went well. */
int deepbind_use_xmm(void)
{
    int errors = 0;
    for (size_t size = 1; size <= 1 << 20; size *= 3) {
        char *block = malloc(size);
        if (!block || xmm_node_of(block) < 0)
            errors++;
        else
            memset(block, 7, size);
        free(block);
    }
    return errors + (numa_available() < -1);
}

/* free, realloc and malloc_usable_size as this library binds them (XMM's),
 * for pointers the program's malloc (glibc's) handed out. */
void deepbind_free(void *ptr)
{
    free(ptr);
}

void *deepbind_realloc(void *ptr, size_t size)
{
    return realloc(ptr, size);
}

size_t deepbind_usable_size(void *ptr)
{
    return malloc_usable_size(ptr);
}
