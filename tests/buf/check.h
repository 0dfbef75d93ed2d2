/* check.h - assertions for the tests of tests/buf: a CHECK that fails
 * prints where and what (the first 20), the test exits non-zero at the end.
 * Thread-safe: the counters are atomic. Also captures stderr, to check the
 * messages XMM prints on misuse. */
#ifndef XMM_BUF_TEST_CHECK_H
#define XMM_BUF_TEST_CHECK_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int check_failures;
static long check_count;

#define CHECK(condition, ...)                                                  \
    do {                                                                       \
        __atomic_fetch_add(&check_count, 1, __ATOMIC_RELAXED);                 \
        if (!(condition) &&                                                    \
            __atomic_fetch_add(&check_failures, 1, __ATOMIC_RELAXED) < 20) {   \
            fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__,   \
                    #condition);                                               \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
        }                                                                      \
    } while (0)

static inline int check_summary(const char *name)
{
    printf("%s: %ld checks, %d failed\n", name, check_count, check_failures);
    return check_failures ? 1 : 0;
}

/* Stderr capture: between begin and end, what is written to fd 2 goes to
 * a temporary file; end returns it (static storage, NUL-terminated). */
static int capture_saved_fd = -1;
static FILE *capture_file;

static inline void capture_stderr_begin(void)
{
    fflush(stderr);
    capture_file = tmpfile();
    capture_saved_fd = dup(2);
    if (!capture_file || capture_saved_fd < 0 || dup2(fileno(capture_file), 2) < 0) {
        perror("capture_stderr_begin");
        exit(2);
    }
}

static inline const char *capture_stderr_end(void)
{
    static char text[4096];
    fflush(stderr);
    dup2(capture_saved_fd, 2);
    close(capture_saved_fd);
    size_t length = 0;
    if (fseek(capture_file, 0, SEEK_SET) == 0)
        length = fread(text, 1, sizeof(text) - 1, capture_file);
    text[length] = '\0';
    fclose(capture_file);
    return text;
}

/* A small deterministic generator (xorshift64*), per thread. */
static inline unsigned long long next_random(unsigned long long *state)
{
    unsigned long long x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}
#endif
