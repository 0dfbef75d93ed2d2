/* test_buf.c - every function of xmm_buf.h, each misuse and each overflow.
 * The thread is pinned to one CPU, so that a put and the next get meet in
 * the same CPU pool (and LIFO reuse can be checked exactly). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "backend/backend.h"
#include "xmm.h"
#include "xmm_buf.h"

/* Internal to src/buf.c (hidden, linked from libxmm-core.a): every CPU
 * pool looks busy to the calling thread, so its own pool serves. */
void xmm_buf_test_thread_pool_only(bool enable);

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

static void pin_to_one_cpu(void)
{
    cpu_set_t allowed, one;
    CPU_ZERO(&one);
    if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0)
        return;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (CPU_ISSET(cpu, &allowed)) {
            CPU_SET(cpu, &one);
            sched_setaffinity(0, sizeof(one), &one);
            return;
        }
    }
}

static unsigned char pattern(size_t seed, size_t offset)
{
    return (unsigned char)(seed * 31 + offset * 7 + (offset >> 9));
}

static void fill(unsigned char *bytes, size_t length, size_t seed, size_t first_offset)
{
    for (size_t i = 0; i < length; i++)
        bytes[i] = pattern(seed, first_offset + i);
}

static bool matches(const unsigned char *bytes, size_t seed, size_t first_offset, size_t length)
{
    for (size_t i = 0; i < length; i++)
        if (bytes[i] != pattern(seed, first_offset + i))
            return false;
    return true;
}

/* `buf` holds exactly `length` pattern bytes from `first_offset` on. */
static bool holds(const struct xmm_buf *buf, size_t seed, size_t first_offset, size_t length)
{
    const unsigned char *bytes = xmm_buf_data(buf);
    return xmm_buf_len(buf) == length && (bytes || !length) &&
           matches(bytes, seed, first_offset, length);
}

/* Appends `length` pattern bytes (seed, from offset `first_offset`). */
static int append_pattern(struct xmm_buf *buf, size_t length, size_t seed, size_t first_offset)
{
    unsigned char *bytes = malloc(length ? length : 1);
    fill(bytes, length, seed, first_offset);
    int result = xmm_buf_append(buf, bytes, length);
    free(bytes);
    return result;
}

static void test_get_tiers(void)
{
    static const struct { size_t ask, tier; } cases[] = {
        {0, 4 * KiB},           {1, 4 * KiB},         {4 * KiB, 4 * KiB},
        {4 * KiB + 1, 16 * KiB}, {16 * KiB, 16 * KiB}, {16 * KiB + 1, 64 * KiB},
        {64 * KiB + 1, 256 * KiB}, {256 * KiB + 1, MiB}, {MiB + 1, 4 * MiB},
        {4 * MiB + 1, 8 * MiB}, {8 * MiB, 8 * MiB},
    };
    int node = xmm_node_of_cpu(sched_getcpu());
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct xmm_buf *buf = xmm_buf_get(cases[i].ask);
        CHECK(buf != NULL, "get(%zu)", cases[i].ask);
        if (!buf)
            continue;
        CHECK(xmm_buf_capacity(buf) == cases[i].tier, "get(%zu): capacity %zu, tier %zu",
              cases[i].ask, xmm_buf_capacity(buf), cases[i].tier);
        CHECK(xmm_buf_len(buf) == 0, "a new buffer is empty");
        unsigned char *bytes = xmm_buf_data(buf);
        CHECK(bytes && xmm_usable_size(bytes) >= cases[i].tier, "bytes are an XMM block");
        CHECK(xmm_node_of(bytes) == node, "bytes on node %d, CPU's node %d", xmm_node_of(bytes),
              node);
        memset(bytes, 0x5a, cases[i].tier); /* all of it is writable */
        CHECK(xmm_buf_put(buf) == 0, "put");
    }
    errno = 0;
    CHECK(xmm_buf_get(XMM_BUF_MAX_CAPACITY + 1) == NULL && errno == EINVAL, "above 8 MiB");
    errno = 0;
    CHECK(xmm_buf_get(SIZE_MAX) == NULL && errno == EINVAL, "SIZE_MAX");
}

static void test_pool_reuse(void)
{
    struct xmm_buf *buf = xmm_buf_get(100);
    void *bytes = xmm_buf_data(buf);
    append_pattern(buf, 1000, 1, 0);
    size_t before = xmm_buf_pool_bytes();
    CHECK(xmm_buf_put(buf) == 0, "put");
    CHECK(xmm_buf_pool_bytes() == before + 4 * KiB, "pool %zu, expected %zu",
          xmm_buf_pool_bytes(), before + 4 * KiB);
    struct xmm_buf *again = xmm_buf_get(50);
    CHECK(again == buf && xmm_buf_data(again) == bytes, "the same CPU gets the buffer back");
    CHECK(xmm_buf_len(again) == 0, "a reused buffer is empty");
    CHECK(xmm_buf_pool_bytes() == before, "taken out of the pool");
    CHECK(xmm_buf_put(NULL) == 0, "put(NULL) is a no-op");
    xmm_buf_put(again);
    CHECK(xmm_buf_pool_bytes() <= xmm_buf_pool_limit(), "under the cap");
    CHECK(xmm_buf_pool_limit() == 64 * MiB, "default cap %zu", xmm_buf_pool_limit());
}

/* Calls put(ptr) expecting EINVAL and a message containing `expected`. */
static void expect_bad_put(void *ptr, const char *expected, const char *what)
{
    capture_stderr_begin();
    errno = 0;
    int result = xmm_buf_put(ptr);
    int error = errno;
    const char *message = capture_stderr_end();
    CHECK(result == -1 && error == EINVAL, "%s: put returned %d, errno %d", what, result, error);
    CHECK(strstr(message, "xmm_buf_put()") && strstr(message, expected),
          "%s: message '%s'", what, message);
}

static void test_double_put(void)
{
    struct xmm_buf *buf = xmm_buf_get(0);
    CHECK(xmm_buf_put(buf) == 0, "first put");
    expect_bad_put(buf, "double put", "second put");
    /* Had the second put been accepted, the pool would hold buf twice. */
    struct xmm_buf *first = xmm_buf_get(0), *second = xmm_buf_get(0);
    CHECK(first == buf && second != buf, "the pool holds the buffer once");
    xmm_buf_put(first);
    xmm_buf_put(second);
}

static void test_foreign_pointers(void)
{
    struct xmm_buf *live = xmm_buf_get(0);
    append_pattern(live, 300, 9, 0);

    char on_stack[128] = {0};
    expect_bad_put(on_stack, "not a buffer", "stack array");
    void *from_libc = calloc(1, 128);
    expect_bad_put(from_libc, "not a buffer", "libc block");
    free(from_libc);
    void *xmm_block = xmm_calloc(1, 128);
    expect_bad_put(xmm_block, "not a buffer", "zeroed XMM block");
    xmm_free(xmm_block);
    void *tiny = xmm_malloc(8);
    expect_bad_put(tiny, "not a buffer", "8-byte XMM block");
    xmm_free(tiny);
    expect_bad_put((char *)live + 8, "not a buffer", "interior of a descriptor");
    expect_bad_put(xmm_buf_data(live), "not a buffer", "a buffer's bytes");
    expect_bad_put((void *)0x1000, "not a buffer", "unmapped address");
    expect_bad_put((void *)0xffff800000001000ull, "not a buffer", "kernel address");
    /* A byte-for-byte copy of a live descriptor: the magic is bound to the
     * address, so the copy is not a buffer. */
    size_t descriptor_size = xmm_usable_size(live);
    void *copy = xmm_malloc(descriptor_size);
    memcpy(copy, live, descriptor_size);
    expect_bad_put(copy, "not a buffer", "copied descriptor");
    xmm_free(copy);

    CHECK(holds(live, 9, 0, 300), "the live buffer is intact after all that");
    CHECK(xmm_buf_put(live) == 0, "and puts normally");
}

/* Each call on a buffer already put: EINVAL and a message. */
static void test_use_after_put(void)
{
    struct xmm_buf *buf = xmm_buf_get(0);
    xmm_buf_put(buf);
    int fds[2];
    CHECK(pipe(fds) == 0, "pipe");
    capture_stderr_begin();
    errno = 0;
    bool data_refused = xmm_buf_data(buf) == NULL && errno == EINVAL;
    errno = 0;
    bool len_refused = xmm_buf_len(buf) == 0 && errno == EINVAL;
    errno = 0;
    bool capacity_refused = xmm_buf_capacity(buf) == 0 && errno == EINVAL;
    bool append_refused = xmm_buf_append(buf, "x", 1) == -1 && errno == EINVAL;
    bool consume_refused = xmm_buf_consume(buf, 0) == -1 && errno == EINVAL;
    bool compact_refused = xmm_buf_compact(buf) == -1 && errno == EINVAL;
    bool clear_refused = xmm_buf_clear(buf) == -1 && errno == EINVAL;
    bool read_refused = xmm_buf_read_fd(buf, fds[0]) == -1 && errno == EINVAL;
    const char *message = capture_stderr_end();
    CHECK(data_refused && len_refused && capacity_refused, "accessors after put");
    CHECK(append_refused && consume_refused && compact_refused && clear_refused && read_refused,
          "modifiers after put");
    static const char *const functions[] = {"xmm_buf_data()", "xmm_buf_len()",
                                            "xmm_buf_capacity()", "xmm_buf_append()",
                                            "xmm_buf_consume()", "xmm_buf_compact()",
                                            "xmm_buf_clear()", "xmm_buf_read_fd()"};
    for (size_t i = 0; i < sizeof(functions) / sizeof(functions[0]); i++)
        CHECK(strstr(message, functions[i]) != NULL, "no message from %s in '%s'", functions[i],
              message);
    CHECK(strstr(message, "not a live buffer") != NULL, "message '%s'", message);

    capture_stderr_begin();
    errno = 0;
    bool null_refused = xmm_buf_len(NULL) == 0 && errno == EINVAL &&
                        xmm_buf_consume(NULL, 0) == -1 && errno == EINVAL;
    message = capture_stderr_end();
    CHECK(null_refused && message[0] == '\0', "NULL: EINVAL without a message ('%s')", message);
    close(fds[0]);
    close(fds[1]);
    struct xmm_buf *again = xmm_buf_get(0);
    CHECK(again == buf && xmm_buf_append(again, "ok", 2) == 0, "reusable after the misuse");
    xmm_buf_put(again);
}

static void test_consume(void)
{
    struct xmm_buf *buf = xmm_buf_get(0);
    unsigned char *start = xmm_buf_data(buf);
    xmm_buf_append(buf, "hello world", 11);
    CHECK(xmm_buf_consume(buf, 6) == 0 && xmm_buf_len(buf) == 5 &&
              !memcmp(xmm_buf_data(buf), "world", 5),
          "consume 6");
    CHECK(xmm_buf_data(buf) == start + 6, "the head advanced");
    errno = 0;
    CHECK(xmm_buf_consume(buf, 6) == -1 && errno == EINVAL, "consume past the length");
    CHECK(xmm_buf_len(buf) == 5 && xmm_buf_data(buf) == start + 6, "nothing changed");
    CHECK(xmm_buf_consume(buf, SIZE_MAX) == -1 && errno == EINVAL, "consume SIZE_MAX");
    CHECK(xmm_buf_consume(buf, 5) == 0 && xmm_buf_len(buf) == 0, "consume the rest");
    CHECK(xmm_buf_data(buf) == start, "emptying moves the head back to the front");
    CHECK(xmm_buf_consume(buf, 0) == 0, "consume 0 of nothing");
    CHECK(xmm_buf_consume(buf, 1) == -1 && errno == EINVAL, "consume 1 of nothing");
    xmm_buf_put(buf);
}

static void test_append(void)
{
    struct xmm_buf *buf = xmm_buf_get(0);
    void *small_bytes = xmm_buf_data(buf);
    CHECK(append_pattern(buf, 3000, 2, 0) == 0 && append_pattern(buf, 3000, 2, 3000) == 0,
          "two appends");
    CHECK(xmm_buf_capacity(buf) == 16 * KiB && holds(buf, 2, 0, 6000), "grew to 16 KiB");
    struct xmm_buf *small = xmm_buf_get(0);
    CHECK(xmm_buf_data(small) == small_bytes, "the old 4 KiB memory went back to the pool");
    xmm_buf_put(small);
    CHECK(append_pattern(buf, 300000, 2, 6000) == 0, "append 300000");
    CHECK(xmm_buf_capacity(buf) == MiB && holds(buf, 2, 0, 306000), "skipped to 1 MiB");
    errno = 0;
    CHECK(xmm_buf_append(buf, "x", SIZE_MAX) == -1 && errno == EMSGSIZE, "n = SIZE_MAX");
    CHECK(xmm_buf_append(buf, NULL, 5) == -1 && errno == EINVAL, "NULL data");
    CHECK(xmm_buf_append(buf, NULL, 0) == 0, "nothing to append");
    CHECK(xmm_buf_capacity(buf) == MiB && holds(buf, 2, 0, 306000), "failures changed nothing");
    xmm_buf_put(buf);

    /* Room made by compacting, not by growing. */
    buf = xmm_buf_get(0);
    unsigned char *start = xmm_buf_data(buf);
    append_pattern(buf, 4000, 3, 0);
    xmm_buf_consume(buf, 3000);
    CHECK(append_pattern(buf, 2000, 3, 4000) == 0, "append after consume");
    CHECK(xmm_buf_capacity(buf) == 4 * KiB && xmm_buf_data(buf) == start &&
              holds(buf, 3, 3000, 3000),
          "compacted in place");
    /* From itself, across a move to the next tier. */
    CHECK(xmm_buf_append(buf, xmm_buf_data(buf), 3000) == 0, "append of its own bytes");
    const unsigned char *bytes = xmm_buf_data(buf);
    CHECK(xmm_buf_capacity(buf) == 16 * KiB && xmm_buf_len(buf) == 6000 &&
              matches(bytes, 3, 3000, 3000) && matches(bytes + 3000, 3, 3000, 3000),
          "doubled");
    xmm_buf_put(buf);

    /* The top tier: exactly 8 MiB fit, one byte more does not. */
    buf = xmm_buf_get(8 * MiB - 10);
    CHECK(append_pattern(buf, 8 * MiB - 10, 4, 0) == 0, "fill 8 MiB - 10");
    CHECK(append_pattern(buf, 11, 4, 8 * MiB - 10) == -1 && errno == EMSGSIZE, "8 MiB + 1");
    CHECK(append_pattern(buf, 10, 4, 8 * MiB - 10) == 0, "exactly 8 MiB");
    CHECK(holds(buf, 4, 0, 8 * MiB), "8 MiB of pattern");
    xmm_buf_put(buf);
}

static void write_pattern(int fd, size_t length, size_t seed, size_t first_offset)
{
    unsigned char *bytes = malloc(length);
    fill(bytes, length, seed, first_offset);
    CHECK(write(fd, bytes, length) == (ssize_t)length, "write %zu to the pipe", length);
    free(bytes);
}

static void test_read_fd(void)
{
    int fds[2];
    CHECK(pipe2(fds, O_NONBLOCK) == 0, "pipe");
    struct xmm_buf *buf = xmm_buf_get(0);
    write_pattern(fds[1], 100, 5, 0);
    CHECK(xmm_buf_read_fd(buf, fds[0]) == 100 && holds(buf, 5, 0, 100), "read 100");
    errno = 0;
    CHECK(xmm_buf_read_fd(buf, fds[0]) == -1 && errno == EAGAIN, "nothing to read: EAGAIN");
    write_pattern(fds[1], 4096 - 100, 5, 100);
    CHECK(xmm_buf_read_fd(buf, fds[0]) == 3996 && xmm_buf_capacity(buf) == 4096, "filled");
    write_pattern(fds[1], 10, 5, 4096);
    CHECK(xmm_buf_read_fd(buf, fds[0]) == 10, "read into a full buffer");
    CHECK(xmm_buf_capacity(buf) == 16 * KiB && holds(buf, 5, 0, 4106), "grew to 16 KiB");
    errno = 0;
    CHECK(xmm_buf_read_fd(buf, -1) == -1 && errno == EBADF && holds(buf, 5, 0, 4106),
          "bad fd: EBADF, bytes kept");
    xmm_buf_put(buf);

    /* Full with consumed bytes in front: compacts instead of growing. */
    buf = xmm_buf_get(0);
    write_pattern(fds[1], 4096, 6, 0);
    xmm_buf_read_fd(buf, fds[0]);
    xmm_buf_consume(buf, 1000);
    write_pattern(fds[1], 500, 6, 4096);
    CHECK(xmm_buf_read_fd(buf, fds[0]) == 500 && xmm_buf_capacity(buf) == 4096 &&
              holds(buf, 6, 1000, 3596),
          "compacted to make room");
    close(fds[1]);
    CHECK(xmm_buf_read_fd(buf, fds[0]) == 0, "end of file");
    close(fds[0]);
    xmm_buf_put(buf);

    /* Full at the top tier: nowhere to grow. */
    CHECK(pipe(fds) == 0, "pipe");
    write_pattern(fds[1], 10, 7, 0);
    buf = xmm_buf_get(XMM_BUF_MAX_CAPACITY);
    append_pattern(buf, XMM_BUF_MAX_CAPACITY, 7, 0);
    errno = 0;
    CHECK(xmm_buf_read_fd(buf, fds[0]) == -1 && errno == EMSGSIZE, "full 8 MiB: EMSGSIZE");
    CHECK(holds(buf, 7, 0, XMM_BUF_MAX_CAPACITY), "bytes kept");
    xmm_buf_put(buf);
    close(fds[0]);
    close(fds[1]);
}

static void test_compact_and_clear(void)
{
    struct xmm_buf *buf = xmm_buf_get(0);
    unsigned char *start = xmm_buf_data(buf);
    append_pattern(buf, 100, 8, 0);
    xmm_buf_consume(buf, 40);
    CHECK(xmm_buf_compact(buf) == 0 && xmm_buf_data(buf) == start && holds(buf, 8, 40, 60),
          "compact");
    CHECK(xmm_buf_compact(buf) == 0 && holds(buf, 8, 40, 60), "compact twice");
    CHECK(xmm_buf_clear(buf) == 0 && xmm_buf_len(buf) == 0 && xmm_buf_capacity(buf) == 4096 &&
              xmm_buf_data(buf) == start,
          "clear");
    xmm_buf_put(buf);
}

static void *use_thread_pool_then_exit(void *arg)
{
    xmm_buf_test_thread_pool_only(true);
    struct xmm_buf *buffers[3];
    for (int i = 0; i < 3; i++)
        buffers[i] = xmm_buf_get(0);
    for (int i = 0; i < 3; i++)
        xmm_buf_put(buffers[i]);
    *(size_t *)arg = xmm_buf_pool_bytes();
    return NULL;
}

/* The fallback pool: at most 4 buffers a tier, LIFO, freed at thread exit. */
static void test_thread_pool(void)
{
    xmm_buf_test_thread_pool_only(true);
    size_t before = xmm_buf_pool_bytes();
    struct xmm_buf *buffers[5];
    for (int i = 0; i < 5; i++)
        buffers[i] = xmm_buf_get(0);
    for (int i = 0; i < 5; i++)
        CHECK(xmm_buf_put(buffers[i]) == 0, "put %d", i);
    CHECK(xmm_buf_pool_bytes() == before + 4 * 4 * KiB, "4 kept, the 5th freed (%zu, %zu)",
          xmm_buf_pool_bytes(), before);
    struct xmm_buf *again = xmm_buf_get(0);
    CHECK(again == buffers[3], "LIFO: the last one kept comes back");
    expect_bad_put(buffers[2], "double put", "double put into a thread pool");
    xmm_buf_put(again);
    xmm_buf_test_thread_pool_only(false);

    size_t during = 0, after_main = xmm_buf_pool_bytes();
    pthread_t thread;
    pthread_create(&thread, NULL, use_thread_pool_then_exit, &during);
    pthread_join(thread, NULL);
    CHECK(during == after_main + 3 * 4 * KiB, "the thread pooled 3 (%zu, %zu)", during,
          after_main);
    CHECK(xmm_buf_pool_bytes() == after_main, "and freed them at exit (%zu, %zu)",
          xmm_buf_pool_bytes(), after_main);
}

int main(void)
{
    pin_to_one_cpu();
    test_get_tiers();
    test_pool_reuse();
    test_double_put();
    test_foreign_pointers();
    test_use_after_put();
    test_consume();
    test_append();
    test_read_fd();
    test_compact_and_clear();
    test_thread_pool();
    CHECK(xmm_buf_pool_bytes() <= xmm_buf_pool_limit(), "under the cap at the end");
    return check_summary("test_buf");
}
