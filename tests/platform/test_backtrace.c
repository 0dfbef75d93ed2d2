/* xmm_os_backtrace (platform/x86_64/unwind.c: cached unwind rules) gives
 * the stacks glibc's backtrace(3) gives: through plain frames, frames that
 * keep their CFA in rbp (alloca, frame pointers), deep recursion, a
 * thread's stack, a signal handler's (taken from backtrace(3) itself), a
 * shared library (libc's qsort calling back), and the same again once
 * every rule is cached, and after a library was unloaded (the cache
 * emptied); a `max` below the depth cuts it. Linked with libxmm-core.a. */
#include <alloca.h>
#include <dlfcn.h>
#include <execinfo.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "platform.h"

#define MAX 128

static void *volatile sink;

/* Both stacks from the same function: [0] differs (two call sites), the
 * rest must be equal. */
__attribute__((noinline)) static int compare(const char *what, int max)
{
    void *expected[MAX], *got[MAX];
    int expected_count = backtrace(expected, max);
    int got_count = xmm_os_backtrace(got, max);
    int same = expected_count == got_count;
    for (int i = 1; same && i < got_count; i++)
        same = expected[i] == got[i];
    CHECKQ(same, "%s (max %d): %d frames, backtrace(3) gives %d%s", what, max, got_count,
           expected_count, expected_count == got_count ? " (a frame differs)" : "");
    CHECKQ(got_count > 2, "%s: a real stack (%d frames)", what, got_count);
    return same;
}

__attribute__((noinline)) static int recurse(int depth, int max)
{
    char buffer[64 + depth % 7 * 16];
    memset(buffer, depth, sizeof(buffer));
    sink = buffer;
    int result = depth ? recurse(depth - 1, max) : compare("recursion", max);
    sink = NULL;
    return result + buffer[0] - depth % 256 + depth % 256 - buffer[0];
}

/* alloca: the CFA is in rbp. */
__attribute__((noinline)) static int with_alloca(size_t size)
{
    char *scratch = alloca(size);
    memset(scratch, 1, size);
    sink = scratch;
    int result = compare("an alloca frame", MAX);
    sink = NULL;
    return result;
}

/* (gcc only: clang has no per-function form; its frames then keep the
 * CFA in rsp, and the alloca frame above still keeps it in rbp) */
#if defined(__clang__)
#define WITH_FRAME_POINTER
#else
#define WITH_FRAME_POINTER __attribute__((optimize("no-omit-frame-pointer")))
#endif

__attribute__((noinline)) WITH_FRAME_POINTER static int with_frame_pointer(int n)
{
    volatile int local = n;
    int result = n > 0 ? with_frame_pointer(n - 1) : with_alloca(100 + (size_t)local);
    return result + local - n;
}

static int compared_in_qsort;

static int by_value(const void *a, const void *b)
{
    if (!compared_in_qsort) {
        compared_in_qsort = 1;
        compare("a callback from libc (qsort)", MAX);
    }
    return *(const int *)a - *(const int *)b;
}

static void *thread_body(void *unused)
{
    (void)unused;
    recurse(10, MAX);
    return NULL;
}

static volatile int handled;

static void on_signal(int number)
{
    (void)number;
    compare("a signal handler", MAX); /* through the signal frame: backtrace(3) */
    handled = 1;
}

static void all_cases(const char *round)
{
    NOTE("%s", round);
    CHECK(recurse(0, MAX), "a shallow stack");
    CHECK(recurse(40, MAX), "a recursion 40 deep");
    CHECK(recurse(40, 8), "a recursion cut at 8 frames");
    CHECK(with_alloca(1000), "an alloca frame");
    CHECK(with_frame_pointer(5), "frames with a frame pointer, then alloca");
    int values[] = {5, 3, 9, 1};
    compared_in_qsort = 0;
    qsort(values, 4, sizeof(int), by_value);
    CHECK(compared_in_qsort, "qsort called back");
    pthread_t thread;
    pthread_create(&thread, NULL, thread_body, NULL);
    pthread_join(thread, NULL);
    handled = 0;
    signal(SIGUSR1, on_signal);
    raise(SIGUSR1);
    CHECK(handled, "the signal handler ran");
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    all_cases("without the rule cache (backtrace(3) only)");
    xmm_os_backtrace_prepare();
    all_cases("rules computed");
    all_cases("rules cached");
    /* An object unloaded: the cache is emptied, rules computed again. */
    void *library = dlopen("libresolv.so.2", RTLD_NOW | RTLD_LOCAL);
    if (library && dlclose(library) == 0)
        all_cases("after a dlclose");
    else
        NOTE("libresolv.so.2 could not be loaded and unloaded: not checked after a dlclose");
    void *frames[4];
    CHECK(xmm_os_backtrace(frames, 0) == 0, "max 0: no frame");
    return check_summary("test_backtrace");
}
