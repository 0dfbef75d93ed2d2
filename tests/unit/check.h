/* check.h - minimal assertions for the layer tests: each CHECK that fails
 * prints where and what, and the test exits non-zero at the end. */
#ifndef XMM_TEST_CHECK_H
#define XMM_TEST_CHECK_H
#include <stdio.h>
#include <stdlib.h>

static int check_failures;
static long check_count;

#define CHECK(condition, ...)                                                  \
    do {                                                                       \
        check_count++;                                                         \
        if (!(condition)) {                                                    \
            if (check_failures++ < 20) {                                       \
                fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #condition); \
                fprintf(stderr, __VA_ARGS__);                                  \
                fputc('\n', stderr);                                           \
            }                                                                  \
        }                                                                      \
    } while (0)

static inline int check_summary(const char *name)
{
    printf("%s: %ld checks, %d failed\n", name, check_count, check_failures);
    return check_failures ? 1 : 0;
}
#endif
