/*
 * idle-return - a burst of allocation, most of it freed, then a program
 * that makes no more malloc calls at all: is the freed memory given back
 * while the program idles, and by an explicit trim?
 *
 * Allocates about TOTAL_MB MiB in blocks of log-uniform sizes in MIN..MAX
 * (every page touched), frees FREE_PERCENT% of the blocks (chosen at
 * random, in random order) and keeps the rest, then sleeps IDLE_S seconds
 * without calling malloc or free, sampling the RSS every SAMPLE_MS
 * milliseconds ("sample t_s=... rss_kb=... thp_kb=... phase=..."; t_s from
 * the start of the burst, thp_kb = AnonHugePages). Then it asks the
 * allocator to give back what it can, and samples once more:
 * malloc_trim(0) where the allocator provides it (glibc, XMM), else the
 * allocator's own call (jemalloc: mallctl "arena.<all>.purge"; tcmalloc:
 * MallocExtension_ReleaseFreeMemory; mimalloc: mi_collect(true)).
 *
 * Nothing in the idle phase allocates: samples are read with open/read from
 * /proc and written with write(2), the release function is looked up
 * before the burst.
 *
 * elapsed_s is the burst (allocate, then free); ops counts mallocs and
 * frees. Extra fields, in kB: live_kb (bytes still allocated),
 * rss_after_free_kb, rss_idle_10s_kb (first sample at least 10 s after the
 * frees, when the idle lasts that long), rss_idle_min_kb, rss_idle_end_kb,
 * thp_idle_end_kb, rss_after_trim_kb; trim_call: 1 malloc_trim, 2
 * jemalloc's mallctl, 3 tcmalloc's MallocExtension, 4 mimalloc's
 * mi_collect, 0 none found.
 *
 * usage: idle-return TOTAL_MB MIN_SIZE MAX_SIZE FREE_PERCENT IDLE_S SAMPLE_MS
 */
#include "common.h"
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <unistd.h>

static double start_time;

/* The first number after `key` in a /proc file, without allocating; -1 if
 * absent. */
static long proc_number(const char *path, const char *key)
{
    char text[4096];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t length = read(fd, text, sizeof text - 1);
    close(fd);
    if (length <= 0)
        return -1;
    text[length] = 0;
    const char *at = key ? strstr(text, key) : text;
    if (!at)
        return -1;
    at += key ? strlen(key) : 0;
    return strtol(at, NULL, 10);
}

/* Resident memory from /proc/self/statm (its second field, in pages). */
static long rss_kb(void)
{
    char text[256];
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t length = read(fd, text, sizeof text - 1);
    close(fd);
    if (length <= 0)
        return -1;
    text[length] = 0;
    char *field = strchr(text, ' ');
    return field ? strtol(field + 1, NULL, 10) * (sysconf(_SC_PAGESIZE) / 1024) : -1;
}

static long thp_kb(void)
{
    return proc_number("/proc/self/smaps_rollup", "AnonHugePages:");
}

/* printf without stdio's buffer (which malloc would provide). */
static void say(const char *format, ...)
{
    char line[512];
    va_list arguments;
    va_start(arguments, format);
    int length = vsnprintf(line, sizeof line, format, arguments);
    va_end(arguments);
    if (length > 0 && write(STDOUT_FILENO, line, (size_t)length) < 0)
        exit(3);
}

static long sample(const char *phase)
{
    long rss = rss_kb();
    say("sample t_s=%.3f rss_kb=%ld thp_kb=%ld phase=%s\n", now_seconds() - start_time, rss,
        thp_kb(), phase);
    return rss;
}

/* ---- the allocator's "give memory back" call --------------------------------- */

enum trim_call { TRIM_NONE, TRIM_MALLOC_TRIM, TRIM_JEMALLOC, TRIM_TCMALLOC, TRIM_MIMALLOC };

static int (*malloc_trim_function)(size_t);
static int (*mallctl_function)(const char *, void *, size_t *, void *, size_t);
static void (*tcmalloc_release_function)(void);
static void (*mi_collect_function)(bool);

static const char *library_of(void *symbol)
{
    Dl_info info;
    if (!symbol || !dladdr(symbol, &info) || !info.dli_fname)
        return "";
    const char *name = strrchr(info.dli_fname, '/');
    return name ? name + 1 : info.dli_fname;
}

/* malloc_trim only counts when it belongs to the library malloc came from:
 * under jemalloc, tcmalloc or mimalloc, glibc's would trim glibc's unused
 * heap. */
static enum trim_call find_trim_call(void)
{
    void *trim = dlsym(RTLD_DEFAULT, "malloc_trim");
    if (trim && !strcmp(library_of(trim), malloc_library())) {
        malloc_trim_function = (int (*)(size_t))trim;
        return TRIM_MALLOC_TRIM;
    }
    if ((mallctl_function = (int (*)(const char *, void *, size_t *, void *, size_t))dlsym(
             RTLD_DEFAULT, "mallctl")))
        return TRIM_JEMALLOC;
    if ((tcmalloc_release_function =
             (void (*)(void))dlsym(RTLD_DEFAULT, "MallocExtension_ReleaseFreeMemory")))
        return TRIM_TCMALLOC;
    if ((mi_collect_function = (void (*)(bool))dlsym(RTLD_DEFAULT, "mi_collect")))
        return TRIM_MIMALLOC;
    return TRIM_NONE;
}

static void give_back(enum trim_call call)
{
    switch (call) {
    case TRIM_MALLOC_TRIM:
        malloc_trim_function(0);
        break;
    case TRIM_JEMALLOC:
        /* 4096 = MALLCTL_ARENAS_ALL */
        mallctl_function("arena.4096.purge", NULL, NULL, NULL, 0);
        break;
    case TRIM_TCMALLOC:
        tcmalloc_release_function();
        break;
    case TRIM_MIMALLOC:
        mi_collect_function(true);
        break;
    case TRIM_NONE:
        break;
    }
}

/* ---- the workload ------------------------------------------------------------ */

static void sleep_ms(unsigned long ms)
{
    struct timespec period = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&period, &period) != 0 && errno == EINTR)
        ;
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr,
                "usage: %s TOTAL_MB MIN_SIZE MAX_SIZE FREE_PERCENT IDLE_S SAMPLE_MS\n", argv[0]);
        return 2;
    }
    size_t total = parse_count(argv[1], "total MB") << 20;
    size_t min = parse_count(argv[2], "min size");
    size_t max = parse_count(argv[3], "max size");
    unsigned long free_percent = parse_count(argv[4], "free percent");
    unsigned long idle_s = parse_count(argv[5], "idle seconds");
    unsigned long sample_ms = parse_count(argv[6], "sample ms");
    if (!total || !min || min > max || free_percent > 100 || !sample_ms) {
        fprintf(stderr, "idle-return: need a total, 0 < min <= max, a percentage and a "
                        "sampling period\n");
        return 2;
    }
    enum trim_call trim = find_trim_call();
    uint64_t state = seed_for(17);
    unsigned long room = total / min + 1;
    void **blocks = checked_malloc(room * sizeof *blocks);
    size_t *sizes = checked_malloc(room * sizeof *sizes);
    /* The first sample also makes sure nothing left to set up allocates. */
    start_time = now_seconds();
    sample("start");

    size_t bytes = 0;
    unsigned long count = 0;
    while (bytes < total && count < room) {
        sizes[count] = random_size(&state, min, max);
        blocks[count] = checked_malloc(sizes[count]);
        touch(blocks[count], sizes[count]);
        bytes += sizes[count];
        count++;
    }
    sample("peak");
    /* Shuffle, then free the first FREE_PERCENT%: random blocks in random
     * order; the others stay live until the end. */
    for (unsigned long i = count; i > 1; i--) {
        unsigned long j = next_random(&state) % i;
        void *block = blocks[i - 1];
        size_t size = sizes[i - 1];
        blocks[i - 1] = blocks[j];
        sizes[i - 1] = sizes[j];
        blocks[j] = block;
        sizes[j] = size;
    }
    unsigned long freed = count * free_percent / 100;
    size_t live = 0;
    for (unsigned long i = 0; i < count; i++) {
        if (i < freed)
            free(blocks[i]);
        else
            live += sizes[i];
    }
    double freed_at = now_seconds();
    double burst = freed_at - start_time;
    long after_free = sample("freed");

    long at_10s = -1, minimum = after_free, end = after_free;
    for (unsigned long waited_ms = 0; waited_ms < idle_s * 1000;) {
        unsigned long nap = sample_ms < idle_s * 1000 - waited_ms ? sample_ms
                                                                  : idle_s * 1000 - waited_ms;
        sleep_ms(nap);
        waited_ms += nap;
        end = sample("idle");
        if (end < minimum)
            minimum = end;
        if (at_10s < 0 && now_seconds() - freed_at >= 10.0)
            at_10s = end;
    }
    long thp_end = thp_kb();
    give_back(trim);
    long after_trim = sample("trimmed");

    for (unsigned long i = freed; i < count; i++)
        free(blocks[i]);
    char at_10s_field[48] = "";
    if (at_10s >= 0)
        snprintf(at_10s_field, sizeof at_10s_field, " rss_idle_10s_kb=%ld", at_10s);
    char extra[320];
    snprintf(extra, sizeof extra,
             "live_kb=%zu rss_after_free_kb=%ld%s rss_idle_min_kb=%ld rss_idle_end_kb=%ld "
             "thp_idle_end_kb=%ld rss_after_trim_kb=%ld trim_call=%d",
             live >> 10, after_free, at_10s_field, minimum, end, thp_end, after_trim, (int)trim);
    print_result("idle-return", burst, (double)(count + freed), extra);
    free(blocks);
    free(sizes);
    return 0;
}
