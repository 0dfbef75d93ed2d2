/*
 * testlib.h - helpers shared by the tests in tests/api (header-only).
 *
 *   expected_alignment(size)    the alignment xmm.h promises for `size`
 *   pattern_fill/pattern_find   fill a block with bytes derived from a seed,
 *                               find the first byte that differs
 *   run_child(...)              fork+exec, capturing stdout and stderr
 *   expect_malloc_is_xmm()      checks that malloc in this process is XMM's
 *   mapped_pages()              pages the process maps (/proc/self/statm)
 */
#ifndef XMM_TEST_TESTLIB_H
#define XMM_TEST_TESTLIB_H

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

#define KIB ((size_t)1 << 10)
#define MIB ((size_t)1 << 20)
#define GIB ((size_t)1 << 30)

extern char **environ;

/* glibc 2.36 does not declare the C23 sized frees; XMM defines them. */
void free_sized(void *ptr, size_t size);
void free_aligned_sized(void *ptr, size_t alignment, size_t size);

__attribute__((unused)) static size_t expected_alignment(size_t size)
{
    /* C17 7.22.3: aligned for any type with fundamental alignment whose
     * size fits. On x86_64 long double and the SSE types are 16 bytes with
     * 16-byte alignment, and a struct of one of them plus a short flexible
     * array member has any size above 16: so every request above 8 bytes
     * needs 16 (XMM gives 16 from 9 bytes up, 8 below). */
    if (size == 0)
        return 1; /* xmm.h promises no particular alignment for 0 bytes */
    return size > 8 ? 16 : 8;
}

__attribute__((unused)) static int is_aligned(const void *ptr, size_t alignment)
{
    return ((uintptr_t)ptr & (alignment - 1)) == 0;
}

/* Pages the process maps (/proc/self/statm), or -1. */
__attribute__((unused)) static long mapped_pages(void)
{
    FILE *statm = fopen("/proc/self/statm", "r");
    long pages = -1;
    if (statm) {
        if (fscanf(statm, "%ld", &pages) != 1)
            pages = -1;
        fclose(statm);
    }
    return pages;
}

/* ---- patterns -------------------------------------------------------------- */

/* The tests are built with -fno-builtin (so that the compiler cannot drop or
 * merge allocations); the word accesses below ask for the builtin memcpy
 * explicitly, or every 8 bytes would be a call. */

static inline uint64_t pattern_mix(uint64_t x)
{
    x ^= x >> 31;
    x *= 0x7fb5d329728ea185ull;
    x ^= x >> 27;
    x *= 0x81dadef4bc2dd44dull;
    x ^= x >> 33;
    return x;
}

/* A seed for a block: from its address and size, so two blocks that
 * overlap, or a block handed out twice, show up as a mismatch. */
__attribute__((unused)) static uint64_t pattern_seed(const void *ptr, size_t size)
{
    return pattern_mix((uint64_t)(uintptr_t)ptr ^ ((uint64_t)size << 40) ^ size);
}

/* Byte `i` of the pattern depends on `i` only, not on the block's size:
 * the bytes kept by a shrinking realloc still match. Little-endian words
 * of seed + (i / 8) * 8 * K. */
static inline unsigned char pattern_byte(uint64_t seed, size_t i)
{
    uint64_t word = seed + (i & ~(size_t)7) * 0x9e3779b97f4a7c15ull;
    return (unsigned char)(word >> (8 * (i & 7)));
}

__attribute__((unused)) static void pattern_fill(void *ptr, size_t size, uint64_t seed)
{
    unsigned char *bytes = ptr;
    size_t i = 0;

    for (; i + 8 <= size; i += 8) {
        uint64_t value = seed + i * 0x9e3779b97f4a7c15ull;
        __builtin_memcpy(bytes + i, &value, 8);
    }
    for (; i < size; i++)
        bytes[i] = pattern_byte(seed, i);
}

/* The offset of the first byte that differs from the pattern, or SIZE_MAX. */
__attribute__((unused)) static size_t pattern_find(const void *ptr, size_t size,
                                                   uint64_t seed)
{
    const unsigned char *bytes = ptr;
    size_t i = 0;

    for (; i + 8 <= size; i += 8) {
        uint64_t value = seed + i * 0x9e3779b97f4a7c15ull, found;
        __builtin_memcpy(&found, bytes + i, 8);
        if (found != value) {
            for (size_t j = 0; j < 8; j++)
                if (((const unsigned char *)&found)[j] != ((const unsigned char *)&value)[j])
                    return i + j;
        }
    }
    for (; i < size; i++)
        if (bytes[i] != pattern_byte(seed, i))
            return i;
    return SIZE_MAX;
}

/* Every byte of [ptr, ptr+size) equals `value`? Returns the first offset
 * that does not, or SIZE_MAX. */
__attribute__((unused)) static size_t find_not_byte(const void *ptr, size_t size, int value)
{
    const unsigned char *bytes = ptr;
    uint64_t word = 0x0101010101010101ull * (unsigned char)value;
    size_t i = 0;

    for (; i + 8 <= size; i += 8) {
        uint64_t found;
        __builtin_memcpy(&found, bytes + i, 8);
        if (found != word)
            break;
    }
    for (; i < size; i++)
        if (bytes[i] != (unsigned char)value)
            return i;
    return SIZE_MAX;
}

__attribute__((unused)) static double now_seconds(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}

/* xorshift64*: per-thread random numbers without libc state. */
__attribute__((unused)) static uint64_t random_next(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545f4914f6cdd1dull;
}

/* ---- child processes --------------------------------------------------------- */

struct child_result {
    int status;          /* as from waitpid */
    char out[65536];     /* stdout, NUL-terminated (truncated if longer) */
    char err[65536];     /* stderr, likewise */
    size_t out_length, err_length;
};

static void child_append(int fd, char *buffer, size_t *length, size_t capacity, int *open)
{
    char scratch[4096];
    ssize_t got = read(fd, scratch, sizeof scratch);

    if (got <= 0) {
        if (got < 0 && (errno == EINTR || errno == EAGAIN))
            return;
        *open = 0;
        return;
    }
    size_t room = capacity - 1 - *length;
    size_t keep = (size_t)got < room ? (size_t)got : room;
    memcpy(buffer + *length, scratch, keep);
    *length += keep;
    buffer[*length] = '\0';
}

/* Runs `argv` (argv[0] is the path) with the current environment, minus
 * the variables named in `unset` (NULL-terminated, may be NULL), plus the
 * "NAME=value" strings in `add` (likewise). Captures both output streams.
 * `timeout_seconds` kills a child that hangs (then status shows SIGKILL).
 * Returns 0, or -1 if the child could not be started. */
__attribute__((unused)) static int run_child(char *const argv[], const char *const unset[],
                                             const char *const add[], int timeout_seconds,
                                             struct child_result *result)
{
    int out_pipe[2], err_pipe[2];
    static char *environment[4096];
    size_t count = 0;

    for (char **variable = environ; *variable && count < 4000; variable++) {
        int skip = 0;
        for (size_t i = 0; unset && unset[i]; i++) {
            size_t length = strlen(unset[i]);
            if (strncmp(*variable, unset[i], length) == 0 && (*variable)[length] == '=')
                skip = 1;
        }
        for (size_t i = 0; add && add[i]; i++) {
            const char *equals = strchr(add[i], '=');
            size_t length = (size_t)(equals - add[i]);
            if (strncmp(*variable, add[i], length) == 0 && (*variable)[length] == '=')
                skip = 1;
        }
        if (!skip)
            environment[count++] = *variable;
    }
    for (size_t i = 0; add && add[i] && count < 4090; i++)
        environment[count++] = (char *)add[i];
    environment[count] = NULL;

    memset(result, 0, sizeof *result);
    if (pipe(out_pipe) != 0 || pipe(err_pipe) != 0)
        return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        dup2(out_pipe[1], 1);
        dup2(err_pipe[1], 2);
        close(out_pipe[0]);
        close(out_pipe[1]);
        close(err_pipe[0]);
        close(err_pipe[1]);
        execve(argv[0], argv, environment);
        _exit(127);
    }
    close(out_pipe[1]);
    close(err_pipe[1]);
    int out_open = 1, err_open = 1;
    double deadline = now_seconds() + timeout_seconds;
    while (out_open || err_open) {
        struct pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
        int left_ms = (int)((deadline - now_seconds()) * 1000);
        if (left_ms <= 0) {
            kill(pid, SIGKILL);
            break;
        }
        if (poll(fds, 2, left_ms) < 0 && errno != EINTR)
            break;
        if (out_open && (fds[0].revents & (POLLIN | POLLHUP | POLLERR)))
            child_append(out_pipe[0], result->out, &result->out_length, sizeof result->out,
                         &out_open);
        if (err_open && (fds[1].revents & (POLLIN | POLLHUP | POLLERR)))
            child_append(err_pipe[0], result->err, &result->err_length, sizeof result->err,
                         &err_open);
    }
    close(out_pipe[0]);
    close(err_pipe[0]);
    while (waitpid(pid, &result->status, 0) < 0 && errno == EINTR) {
    }
    return 0;
}

/* "exit 0", "killed by signal 6 (Aborted)", ... for messages. */
__attribute__((unused)) static const char *describe_status(int status)
{
    static char text[96];

    if (WIFEXITED(status))
        snprintf(text, sizeof text, "exit %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(text, sizeof text, "killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(text, sizeof text, "status 0x%x", status);
    return text;
}

/* ---- sections ---------------------------------------------------------------- */

/* Runs `section` in a forked child, so that a crash in one part of a test
 * (an abort inside the allocator, a SIGSEGV) is reported as a failure of
 * that part and the other parts still run. The child's failed checks count
 * as the parent's and its first failures appear in the parent's summary. */
__attribute__((unused)) static void run_section(const char *name, void (*section)(void))
{
    int channel[2];

    printf("---- %s\n", name);
    fflush(stdout);
    if (pipe(channel) != 0) {
        section();
        return;
    }
    pid_t pid = fork();
    if (pid < 0) {
        close(channel[0]);
        close(channel[1]);
        section();
        return;
    }
    if (pid == 0) {
        close(channel[0]);
        check_failed_count = 0;
        check_total_count = 0;
        section();
        fflush(stdout);
        unsigned long kept = check_failed_count < CHECK_KEEP_FAILURES ? check_failed_count
                                                                      : CHECK_KEEP_FAILURES;
        dprintf(channel[1], "%lu %lu\n", check_total_count, check_failed_count);
        for (unsigned long i = 0; i < kept; i++)
            dprintf(channel[1], "%s\n", check_failures[i]);
        close(channel[1]);
        _exit(0);
    }
    close(channel[1]);
    FILE *from_child = fdopen(channel[0], "r");
    char line[sizeof check_failures[0] + 8];
    unsigned long total = 0, failed = 0;
    int reported = 0;
    if (from_child && fgets(line, sizeof line, from_child) &&
        sscanf(line, "%lu %lu", &total, &failed) == 2) {
        reported = 1;
        check_total_count += total;
        while (fgets(line, sizeof line, from_child)) {
            line[strcspn(line, "\n")] = '\0';
            if (check_failed_count < CHECK_KEEP_FAILURES)
                snprintf(check_failures[check_failed_count], sizeof check_failures[0], "%s",
                         line);
            check_failed_count++;
            failed--;
        }
        check_failed_count += failed; /* the ones not kept */
    }
    if (from_child)
        fclose(from_child);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    CHECK(reported && WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "section %s ran to its end (%s)", name, describe_status(status));
}

/* The process's resident memory (RSS) in bytes, from /proc/self/statm. */
__attribute__((unused)) static size_t resident_bytes(void)
{
    char text[128] = "";
    int fd = open("/proc/self/statm", O_RDONLY);
    if (fd < 0)
        return 0;
    ssize_t length = read(fd, text, sizeof text - 1);
    close(fd);
    text[length > 0 ? length : 0] = '\0';
    unsigned long size = 0, resident = 0;
    sscanf(text, "%lu %lu", &size, &resident);
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

/* The path of the running executable, for re-executing it. */
__attribute__((unused)) static const char *self_path(void)
{
    static char path[4096];

    if (path[0] == '\0') {
        ssize_t length = readlink("/proc/self/exe", path, sizeof path - 1);
        if (length <= 0)
            return "/proc/self/exe";
        path[length] = '\0';
    }
    return path;
}


/* ---- is malloc XMM? ------------------------------------------------------------ */
#ifdef XMM_H
/* Checks that malloc, and libc's own internal allocations (strdup), come
 * from XMM in this process: the override is active. */
__attribute__((unused)) static void expect_malloc_is_xmm(void)
{
    void *block = malloc(100);
    char *copy = strdup("strdup allocates inside libc");

    CHECK(block != NULL, "malloc(100) succeeds");
    CHECK(xmm_node_of(block) >= 0, "malloc is XMM: xmm_node_of(malloc(100)) = %d >= 0",
          xmm_node_of(block));
    CHECK(malloc_usable_size(block) >= 100, "malloc_usable_size(malloc(100)) = %zu >= 100",
          malloc_usable_size(block));
    CHECK(malloc_usable_size(block) == xmm_usable_size(block),
          "malloc_usable_size %zu == xmm_usable_size %zu", malloc_usable_size(block),
          xmm_usable_size(block));
    CHECK(copy != NULL && xmm_node_of(copy) >= 0,
          "libc's strdup allocates from XMM too (node %d)", copy ? xmm_node_of(copy) : -2);
    free(copy);
    free(block);
}
#endif

#endif /* XMM_TEST_TESTLIB_H */
