/* test_buf_config.c - XMM_BUF_POOL_MIB: the cap the pools keep to, and
 * how a malformed value is reported. XMM checks the variable when it
 * starts and the pools read it at the first xmm_buf_* call, so each case
 * runs in a fresh process: this program, executed again with the
 * variable set and the case's name as its argument. */
#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "xmm.h"
#include "xmm_buf.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

/* A put and the next get meet in one CPU pool. */
static void pin_to_current_cpu(void)
{
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(sched_getcpu(), &one);
    sched_setaffinity(0, sizeof(one), &one);
}

/* Runs the case named `body` in a fresh process of this program with
 * XMM_BUF_POOL_MIB=value (unset if NULL). Returns what it wrote to
 * stderr; its CHECKs count here through its exit status. */
static const char *run_child(const char *value, const char *body)
{
    static char output[8192];
    FILE *log = tmpfile();
    fflush(stdout);
    fflush(stderr);
    pid_t child = fork();
    if (child == 0) {
        dup2(fileno(log), 2);
        if (value)
            setenv("XMM_BUF_POOL_MIB", value, 1);
        else
            unsetenv("XMM_BUF_POOL_MIB");
        execl("/proc/self/exe", "test_buf_config", body, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    waitpid(child, &status, 0);
    fseek(log, 0, SEEK_SET);
    size_t length = fread(output, 1, sizeof(output) - 1, log);
    output[length] = '\0';
    fclose(log);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "XMM_BUF_POOL_MIB=%s: child failed (status %d), its stderr:\n%s",
          value ? value : "(unset)", status, output);
    return output;
}

static size_t count_occurrences(const char *text, const char *word)
{
    size_t count = 0;
    for (const char *at = strstr(text, word); at; at = strstr(at + 1, word))
        count++;
    return count;
}

/* ---- children ------------------------------------------------------------ */

static void expect_default(void)
{
    CHECK(xmm_buf_pool_limit() == 64 * MiB, "limit %zu", xmm_buf_pool_limit());
    struct xmm_buf *buf = xmm_buf_get(0);
    xmm_buf_put(buf);
    CHECK(xmm_buf_pool_bytes() == 4 * KiB, "one buffer pooled");
    CHECK(xmm_buf_pool_limit() == 64 * MiB, "limit %zu", xmm_buf_pool_limit());
}

/* XMM_BUF_POOL_MIB=4: twelve 1 MiB buffers put, four kept. */
static void expect_cap_of_4_mib(void)
{
    CHECK(xmm_buf_pool_limit() == 4 * MiB, "limit %zu", xmm_buf_pool_limit());
    struct xmm_buf *buffers[12];
    for (int i = 0; i < 12; i++)
        buffers[i] = xmm_buf_get(MiB);
    for (int i = 0; i < 12; i++) {
        CHECK(xmm_buf_put(buffers[i]) == 0, "put %d", i);
        size_t expected = (i < 4 ? (size_t)i + 1 : 4) * MiB;
        CHECK(xmm_buf_pool_bytes() == expected, "after put %d: %zu bytes, expected %zu", i,
              xmm_buf_pool_bytes(), expected);
    }
    /* The four kept are the first four put (LIFO: the fourth first). */
    for (int i = 3; i >= 0; i--) {
        struct xmm_buf *buf = xmm_buf_get(MiB);
        CHECK(buf == buffers[i], "get %d: the pooled buffer", i);
        buffers[i] = buf;
    }
    CHECK(xmm_buf_pool_bytes() == 0, "the pool is empty");
    struct xmm_buf *large = xmm_buf_get(8 * MiB);
    xmm_buf_put(large);
    CHECK(xmm_buf_pool_bytes() == 0, "8 MiB cannot fit under a 4 MiB cap");
    for (int i = 0; i < 4; i++)
        xmm_buf_put(buffers[i]);

    /* Small buffers fill the cap exactly: 1024 x 4 KiB. */
    struct xmm_buf **small = xmm_alloc_array(sizeof(*small), 2000);
    for (int i = 0; i < 4; i++)
        buffers[i] = xmm_buf_get(MiB); /* empty the pool again */
    for (int i = 0; i < 2000; i++)
        small[i] = xmm_buf_get(0);
    for (int i = 0; i < 2000; i++)
        xmm_buf_put(small[i]);
    CHECK(xmm_buf_pool_bytes() == 4 * MiB, "2000 x 4 KiB put, %zu pooled",
          xmm_buf_pool_bytes());
    for (int i = 0; i < 4; i++)
        xmm_buf_put(buffers[i]);
    CHECK(xmm_buf_pool_bytes() == 4 * MiB, "still at the cap");
    xmm_free(small);
}

/* XMM_BUF_POOL_MIB=0: nothing is pooled, and a put buffer is freed, so a
 * second put finds no buffer there at all. */
static void expect_no_pooling(void)
{
    CHECK(xmm_buf_pool_limit() == 0, "limit %zu", xmm_buf_pool_limit());
    struct xmm_buf *buf = xmm_buf_get(0);
    CHECK(xmm_buf_put(buf) == 0 && xmm_buf_pool_bytes() == 0, "put, nothing pooled");
    errno = 0;
    CHECK(xmm_buf_put(buf) == -1 && errno == EINVAL, "put of a freed buffer");
}

static void expect_largest(void)
{
    CHECK(xmm_buf_pool_limit() == (SIZE_MAX >> 20) << 20, "limit %zu", xmm_buf_pool_limit());
}

/* ---- cases ----------------------------------------------------------------- */

static void test_valid_values(void)
{
    const char *output = run_child(NULL, "default");
    CHECK(output[0] == '\0', "unset: no message, got '%s'", output);
    output = run_child("4", "cap-of-4-mib");
    CHECK(!strstr(output, "XMM_BUF_POOL_MIB"), "4: no complaint, got '%s'", output);
    output = run_child("0", "no-pooling");
    CHECK(strstr(output, "xmm_buf_put()") && strstr(output, "not a buffer"),
          "0: the second put is reported, got '%s'", output);
    output = run_child("17592186044415", "largest"); /* SIZE_MAX >> 20 */
    CHECK(!strstr(output, "XMM_BUF_POOL_MIB"), "largest: no complaint, got '%s'", output);
}

static void test_malformed_values(void)
{
    static const char *const malformed[] = {
        "abc", "", "12x", "-1", "1.5", " 8", "64M", "17592186044416", "99999999999999999999999",
    };
    for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++) {
        const char *output = run_child(malformed[i], "default");
        CHECK(count_occurrences(output, "\n") == 1, "'%s': one line, got '%s'", malformed[i],
              output);
        CHECK(strstr(output, "XMM_BUF_POOL_MIB='") && strstr(output, "whole number of MiB") &&
                  strstr(output, "using the default"),
              "'%s': the line names the variable and the form: '%s'", malformed[i], output);
    }
}

/* The cases a fresh process runs (run_child). */
static const struct {
    const char *name;
    void (*body)(void);
} child_cases[] = {
    {"default", expect_default},
    {"cap-of-4-mib", expect_cap_of_4_mib},
    {"no-pooling", expect_no_pooling},
    {"largest", expect_largest},
};

static int run_child_case(const char *name)
{
    for (size_t i = 0; i < sizeof(child_cases) / sizeof(child_cases[0]); i++) {
        if (!strcmp(name, child_cases[i].name)) {
            pin_to_current_cpu();
            child_cases[i].body();
            fflush(stderr);
            return check_failed_count ? 1 : 0;
        }
    }
    return 127;
}

int main(int argc, char **argv)
{
    if (argc == 2)
        return run_child_case(argv[1]);
    test_valid_values();
    test_malformed_values();
    return check_summary("test_buf_config");
}
