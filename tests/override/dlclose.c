/*
 * dlclose.c - libxmm.so loaded with dlopen, used, then dlclose'd by a
 * program that neither links nor preloads it: the process must not crash.
 *
 * Not linked with XMM. The library is $XMMTEST_BUILD/libxmm.so (else the
 * libxmm.so next to this program's directory, $(BUILD)/tests/..).
 *
 * What used to go wrong once the library was unmapped, and what this test
 * provokes:
 *   - a thread's rseq area still pointing at one of XMM's critical section
 *     descriptors: the kernel reads it at the thread's next preemption or
 *     wake-up, and kills the thread with SIGSEGV;
 *   - with XMM_RSEQ=0, the pthread key destructors of XMM's thread caches,
 *     run when a thread that used XMM exits after the unload.
 * So: the main thread and 4 threads allocate and free through the handle
 * (xmm_malloc/xmm_free, malloc/free), the threads sleep at a barrier across
 * the dlclose, then everyone keeps running (busy work, sched_yield) for a
 * second and the threads exit. Run twice, each in a forked child (a crash
 * is reported as that section's failure): default settings, and
 * XMM_RSEQ=0. libxmm.so is linked with -z nodelete, so dlclose leaves it
 * mapped and all of this is harmless.
 */
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>

#include "testlib.h"

#define THREADS 4
#define BUSY_SECONDS 1.0

typedef void *(*alloc_function)(size_t);
typedef void (*free_function)(void *);

static struct {
    alloc_function xmm_malloc, malloc;
    free_function xmm_free, free;
} api;

static pthread_barrier_t before_close, after_close;
static volatile unsigned long sink;

static void library_path(char *path, size_t capacity)
{
    const char *build = getenv("XMMTEST_BUILD");
    if (build && *build) {
        snprintf(path, capacity, "%s/libxmm.so", build);
        return;
    }
    char directory[PATH_MAX];
    snprintf(directory, sizeof directory, "%s", self_path());
    *strrchr(directory, '/') = '\0';
    snprintf(path, capacity, "%s/../libxmm.so", directory);
}

/* Allocations of every kind of size through both pairs of functions; the
 * last one just before returning, so that this thread's rseq area is left
 * pointing into the library. Returns the number of bad blocks. */
static int use_library(unsigned seed)
{
    int bad = 0;
    for (unsigned round = 0; round < 2000; round++) {
        size_t size = (size_t)1 << ((round + seed) % 18);
        size += round % 7;
        char *a = api.xmm_malloc(size), *b = api.malloc(size / 2 + 1);
        if (!a || !b) {
            bad++;
            continue;
        }
        a[0] = a[size - 1] = 'a';
        b[0] = 'b';
        bad += a[0] != 'a' || a[size - 1] != 'a' || b[0] != 'b';
        api.free(b);
        api.xmm_free(a);
    }
    return bad;
}

/* Enough work and yields to be preempted and rescheduled many times. */
static void keep_running(double seconds)
{
    double end = now_seconds() + seconds;
    unsigned long value = 1;
    while (now_seconds() < end) {
        for (int i = 0; i < 100000; i++)
            value = value * 6364136223846793005ul + 1442695040888963407ul;
        sched_yield();
    }
    sink = value;
}

static void *worker(void *argument)
{
    int bad = use_library((unsigned)(uintptr_t)argument);
    pthread_barrier_wait(&before_close); /* asleep across the dlclose */
    pthread_barrier_wait(&after_close);
    keep_running(BUSY_SECONDS);
    return (void *)(uintptr_t)bad; /* exits after the unload */
}

static bool load(void **handle)
{
    char path[PATH_MAX + 32];
    library_path(path, sizeof path);
    *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    CHECK(*handle != NULL, "dlopen(%s): %s", path, *handle ? "loaded" : dlerror());
    if (!*handle)
        return false;
    api.xmm_malloc = (alloc_function)dlsym(*handle, "xmm_malloc");
    api.xmm_free = (free_function)dlsym(*handle, "xmm_free");
    api.malloc = (alloc_function)dlsym(*handle, "malloc");
    api.free = (free_function)dlsym(*handle, "free");
    CHECK(api.xmm_malloc && api.xmm_free && api.malloc && api.free,
          "xmm_malloc, xmm_free, malloc and free found in the handle");
    /* The handle's malloc is XMM's; the process's stays the system's. */
    CHECK(api.malloc != (alloc_function)malloc, "the handle's malloc is not the process's");
    return api.xmm_malloc && api.xmm_free && api.malloc && api.free;
}

static void load_use_unload(void)
{
    unsetenv("XMM_TEST_TIMEOUT"); /* the runner's, not XMM's: XMM would warn */
    void *handle;
    if (!load(&handle))
        return;
    pthread_t threads[THREADS];
    pthread_barrier_init(&before_close, NULL, THREADS + 1);
    pthread_barrier_init(&after_close, NULL, THREADS + 1);
    for (int i = 0; i < THREADS; i++)
        pthread_create(&threads[i], NULL, worker, (void *)(uintptr_t)(i + 1));
    int bad = use_library(0);
    pthread_barrier_wait(&before_close);
    (void)use_library(5); /* the main thread's last use, right before */
    int closed = dlclose(handle);
    pthread_barrier_wait(&after_close);
    keep_running(BUSY_SECONDS);
    for (int i = 0; i < THREADS; i++) {
        void *thread_bad;
        pthread_join(threads[i], &thread_bad);
        bad += (int)(uintptr_t)thread_bad;
    }
    CHECK(closed == 0, "dlclose returned %d", closed);
    CHECK(bad == 0, "main thread and %d threads: %d bad blocks before the unload", THREADS,
          bad);
    CHECK(1, "%d threads ran and exited after the dlclose, and so did the main thread",
          THREADS);
}

static void default_settings(void)
{
    unsetenv("XMM_RSEQ");
    load_use_unload();
}

static void without_rseq(void)
{
    setenv("XMM_RSEQ", "0", 1);
    load_use_unload();
}

int main(void)
{
    run_section("dlopen, use, dlclose (default settings)", default_settings);
    run_section("dlopen, use, dlclose (XMM_RSEQ=0: per-thread caches)", without_rseq);
    return check_summary("dlclose");
}
