/*
 * early_common.h - the allocation work done in constructors, before main,
 * by tests/override/early.c and tests/override/early_preload.c. Uses no stdio (it
 * may run before anything else is set up) and records the first problem.
 */
#ifndef XMM_TEST_EARLY_COMMON_H
#define XMM_TEST_EARLY_COMMON_H

#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct early_result {
    int ran;                /* the constructor ran */
    int problems;           /* checks that failed */
    const char *first;      /* the first of them */
    unsigned char *kept;    /* a block left allocated for main to check */
    size_t kept_size;
};

#define EARLY_KEPT_SIZE 4242
#define EARLY_FAIL(result, text) \
    do {                         \
        if (!(result)->problems++) \
            (result)->first = (text); \
    } while (0)

static inline unsigned char early_byte(size_t i)
{
    return (unsigned char)(i * 131 + 7);
}

static void early_allocations(struct early_result *result)
{
    result->ran = 1;
    void *blocks[200];
    for (int i = 0; i < 200; i++) {
        size_t size = (size_t)i * 37 + (i % 7 == 0 ? 100000 : 0);
        blocks[i] = malloc(size);
        if (!blocks[i]) {
            EARLY_FAIL(result, "malloc returned NULL");
            continue;
        }
        memset(blocks[i], i, size);
        if (malloc_usable_size(blocks[i]) < size)
            EARLY_FAIL(result, "malloc_usable_size below the request");
    }
    for (int i = 0; i < 200; i++) {
        size_t size = (size_t)i * 37 + (i % 7 == 0 ? 100000 : 0);
        unsigned char *bytes = blocks[i];
        if (bytes && size && (bytes[0] != (unsigned char)i || bytes[size - 1] != (unsigned char)i))
            EARLY_FAIL(result, "a block changed before it was freed");
        free(blocks[i]);
    }
    unsigned char *zero = calloc(1000, 10);
    if (!zero)
        EARLY_FAIL(result, "calloc returned NULL");
    else
        for (size_t i = 0; i < 10000; i++)
            if (zero[i]) {
                EARLY_FAIL(result, "calloc memory not zero");
                break;
            }
    unsigned char *grown = realloc(zero, 300000);
    if (!grown) {
        EARLY_FAIL(result, "realloc returned NULL");
        free(zero);
    } else {
        for (size_t i = 0; i < 10000; i++)
            if (grown[i]) {
                EARLY_FAIL(result, "realloc lost the (zero) contents");
                break;
            }
        free(realloc(grown, 10));
    }
    void *aligned = NULL;
    if (posix_memalign(&aligned, 4096, 5000) != 0 || ((uintptr_t)aligned & 4095))
        EARLY_FAIL(result, "posix_memalign(4096, 5000) failed or misaligned");
    free(aligned);
    char *copy = strdup("early");
    if (!copy || strcmp(copy, "early"))
        EARLY_FAIL(result, "strdup failed");
    free(copy);
    result->kept_size = EARLY_KEPT_SIZE;
    result->kept = malloc(EARLY_KEPT_SIZE);
    if (!result->kept)
        EARLY_FAIL(result, "the kept malloc returned NULL");
    else
        for (size_t i = 0; i < EARLY_KEPT_SIZE; i++)
            result->kept[i] = early_byte(i);
}

#endif /* XMM_TEST_EARLY_COMMON_H */
