/*
 * check.h - the smallest test harness that does the job.
 *
 *   CHECK(cond, "what %d", x)   counts a check; prints "ok   what" when it
 *                               holds and "FAIL file:line: what [cond]"
 *                               when it does not.
 *   CHECKQ(cond, "what", ...)   the same, silent when it holds: for checks
 *                               inside loops of thousands of iterations.
 *   check_summary()             prints the totals (repeating the first
 *                               failures, so a runner that shows the tail
 *                               of the output shows them) and returns the
 *                               exit status: 0 when every check held.
 *
 * Header-only: every test is one translation unit (plus, for some, a small
 * helper library that does not use this file).
 */
#ifndef XMM_TEST_CHECK_H
#define XMM_TEST_CHECK_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK_KEEP_FAILURES 12
#define CHECK_MAX_PRINTED 200

static unsigned long check_total_count;
static unsigned long check_failed_count;
static char check_failures[CHECK_KEEP_FAILURES][240];

__attribute__((format(printf, 6, 7), unused)) static void
check_report(int ok, int quiet, const char *condition, const char *file, int line,
             const char *format, ...)
{
    char what[200];
    va_list arguments;

    check_total_count++;
    if (ok && quiet)
        return;
    va_start(arguments, format);
    vsnprintf(what, sizeof what, format, arguments);
    va_end(arguments);
    if (ok) {
        printf("ok   %s\n", what);
        fflush(stdout);
        return;
    }
    check_failed_count++;
    if (check_failed_count <= CHECK_KEEP_FAILURES)
        snprintf(check_failures[check_failed_count - 1], sizeof check_failures[0],
                 "%s:%d: %s [%s]", file, line, what, condition);
    if (check_failed_count <= CHECK_MAX_PRINTED)
        printf("FAIL %s:%d: %s [%s]\n", file, line, what, condition);
    else if (check_failed_count == CHECK_MAX_PRINTED + 1)
        printf("FAIL ... (further failures are counted, not printed)\n");
    fflush(stdout);
}

#define CHECK(condition, ...) \
    check_report(!!(condition), 0, #condition, __FILE__, __LINE__, __VA_ARGS__)

/* Evaluates `condition` once; formats the message only on failure. */
#define CHECKQ(condition, ...)                                                  \
    do {                                                                        \
        if (__builtin_expect(!!(condition), 1))                                 \
            check_total_count++;                                                \
        else                                                                    \
            check_report(0, 1, #condition, __FILE__, __LINE__, __VA_ARGS__);    \
    } while (0)

/* A note in the output that is not a check. */
#define NOTE(...)                  \
    do {                           \
        printf("note ");           \
        printf(__VA_ARGS__);       \
        printf("\n");              \
        fflush(stdout);            \
    } while (0)

__attribute__((unused)) static int check_summary(const char *test_name)
{
    unsigned long shown = check_failed_count < CHECK_KEEP_FAILURES
                              ? check_failed_count : CHECK_KEEP_FAILURES;

    if (check_failed_count > 0) {
        printf("---- first failures of %s:\n", test_name);
        for (unsigned long i = 0; i < shown; i++)
            printf("     %s\n", check_failures[i]);
    }
    printf("%s: %lu checks, %lu failed -> %s\n", test_name, check_total_count,
           check_failed_count, check_failed_count ? "FAIL" : "PASS");
    fflush(stdout);
    return check_failed_count ? 1 : 0;
}

#endif /* XMM_TEST_CHECK_H */
