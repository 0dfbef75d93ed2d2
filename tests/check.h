/*
 * check.h - the one test harness of tests/ (C and C++).
 *
 *   CHECK(cond, "what %d", x)   counts a check; prints "ok   what" when it
 *                               holds (the first CHECK_MAX_PRINTED of them)
 *                               and "FAIL file:line: what [cond]" when it
 *                               does not.
 *   CHECKQ(cond, "what", ...)   the same, silent when it holds: for checks
 *                               inside loops of thousands of iterations.
 *   NOTE("...")                 a line of output that is not a check.
 *   check_summary("name")       prints the totals (repeating the first
 *                               failures, so a runner that shows the tail
 *                               of the output shows them) and returns the
 *                               exit status: 0 when every check held.
 *   capture_stderr_begin/end()  what XMM writes to fd 2 in between, as a
 *                               string: to check its reports.
 *   next_random(&state)         xorshift64*, deterministic, per caller.
 *   check_run_self(mode, env)   runs this test's own binary again as a
 *                               child, with argv[1] = mode and the NULL-
 *                               terminated NAME=VALUE strings `env` added
 *                               to its environment (for cases that need a
 *                               fresh process: XMM reads XMM_* at start);
 *                               returns its exit status, or 128 + signal.
 *   check_run_self_prepared(mode, env, prepare)
 *                               the same, with prepare() run in the child
 *                               before the exec (a seccomp filter, limits);
 *                               if it returns nonzero the child exits 77.
 *
 * Thread-safe: the counters are atomic, so checks may run in any thread.
 * Header-only: every test is one translation unit (plus, for some, a small
 * helper library that does not use this file). A test exits 0 when it
 * passed, 77 when it cannot run here (skipped), anything else on failure
 * (tools/run-tests).
 */
#ifndef XMM_TEST_CHECK_H
#define XMM_TEST_CHECK_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK_KEEP_FAILURES 12
#define CHECK_MAX_PRINTED 200

static unsigned long check_total_count;
static unsigned long check_passed_printed;
static unsigned long check_failed_count;
static char check_failures[CHECK_KEEP_FAILURES][240];

__attribute__((format(printf, 6, 7), unused)) static void
check_report(int ok, int quiet, const char *condition, const char *file, int line,
             const char *format, ...)
{
    char what[200];
    va_list arguments;

    __atomic_fetch_add(&check_total_count, 1, __ATOMIC_RELAXED);
    if (ok && (quiet || __atomic_fetch_add(&check_passed_printed, 1, __ATOMIC_RELAXED) >=
                            CHECK_MAX_PRINTED))
        return;
    va_start(arguments, format);
    vsnprintf(what, sizeof what, format, arguments);
    va_end(arguments);
    if (ok) {
        printf("ok   %s\n", what);
        fflush(stdout);
        return;
    }
    unsigned long failed = __atomic_add_fetch(&check_failed_count, 1, __ATOMIC_RELAXED);
    if (failed <= CHECK_KEEP_FAILURES)
        snprintf(check_failures[failed - 1], sizeof check_failures[0], "%.48s:%d: %.120s [%.48s]", file,
                 line, what, condition);
    if (failed <= CHECK_MAX_PRINTED)
        printf("FAIL %s:%d: %s [%s]\n", file, line, what, condition);
    else if (failed == CHECK_MAX_PRINTED + 1)
        printf("FAIL ... (further failures are counted, not printed)\n");
    fflush(stdout);
}

#define CHECK(condition, ...) \
    check_report(!!(condition), 0, #condition, __FILE__, __LINE__, __VA_ARGS__)

/* Evaluates `condition` once; formats the message only on failure. */
#define CHECKQ(condition, ...)                                                  \
    do {                                                                        \
        if (__builtin_expect(!!(condition), 1))                                 \
            __atomic_fetch_add(&check_total_count, 1, __ATOMIC_RELAXED);        \
        else                                                                    \
            check_report(0, 1, #condition, __FILE__, __LINE__, __VA_ARGS__);    \
    } while (0)

#define NOTE(...)                  \
    do {                           \
        printf("note ");           \
        printf(__VA_ARGS__);       \
        printf("\n");              \
        fflush(stdout);            \
    } while (0)

/* The number after `key` in a /proc file of kB figures (/proc/self/status,
 * /proc/self/smaps_rollup), in kB; 0 if the file or the key is absent. */
__attribute__((unused)) static size_t proc_kb(const char *path, const char *key)
{
    FILE *file = fopen(path, "r");
    char line[256];
    size_t value = 0;
    while (file && fgets(line, sizeof line, file))
        if (!strncmp(line, key, strlen(key)))
            value = strtoul(line + strlen(key), NULL, 10);
    if (file)
        fclose(file);
    return value;
}

__attribute__((unused)) static int check_summary(const char *test_name)
{
    unsigned long failed = __atomic_load_n(&check_failed_count, __ATOMIC_RELAXED);
    unsigned long shown = failed < CHECK_KEEP_FAILURES ? failed : CHECK_KEEP_FAILURES;

    if (failed > 0) {
        printf("---- first failures of %s:\n", test_name);
        for (unsigned long i = 0; i < shown; i++)
            printf("     %s\n", check_failures[i]);
    }
    printf("%s: %lu checks, %lu failed -> %s\n", test_name,
           __atomic_load_n(&check_total_count, __ATOMIC_RELAXED), failed,
           failed ? "FAIL" : "PASS");
    fflush(stdout);
    return failed ? 1 : 0;
}

/* ---- helpers ---------------------------------------------------------------- */

/* Stderr capture: between begin and end, what is written to fd 2 goes to
 * a temporary file; end returns it (static storage, NUL-terminated). */
static int capture_saved_fd = -1;
static FILE *capture_file;

__attribute__((unused)) static void capture_stderr_begin(void)
{
    fflush(stderr);
    capture_file = tmpfile();
    capture_saved_fd = dup(2);
    if (!capture_file || capture_saved_fd < 0 || dup2(fileno(capture_file), 2) < 0) {
        perror("capture_stderr_begin");
        exit(2);
    }
}

__attribute__((unused)) static const char *capture_stderr_end(void)
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

__attribute__((unused)) static int check_run_self_prepared(const char *mode,
                                                           char *const environment[],
                                                           int (*prepare)(void))
{
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        if (prepare && prepare() != 0)
            _exit(77);
        for (int i = 0; environment && environment[i]; i++)
            putenv(environment[i]);
        execl("/proc/self/exe", "/proc/self/exe", mode, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    if (child < 0 || waitpid(child, &status, 0) != child)
        return 127;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

__attribute__((unused)) static int check_run_self(const char *mode, char *const environment[])
{
    return check_run_self_prepared(mode, environment, NULL);
}

/* A small deterministic generator (xorshift64*). */
__attribute__((unused)) static unsigned long long next_random(unsigned long long *state)
{
    unsigned long long x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

#endif /* XMM_TEST_CHECK_H */
