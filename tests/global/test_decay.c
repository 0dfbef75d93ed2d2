/* Giving memory back: allocate 1 GiB (half in small blocks, half in large
 * ones), touch it, free 90% of it, and require resident memory (from
 * /proc/self/statm) to fall to the live data plus a bounded slack:
 *   - after the decay period, driven by ordinary allocation activity
 *     (XMM_BACKGROUND=0);
 *   - after the decay period, in an idle program, with XMM_BACKGROUND=1;
 *   - after malloc_trim(0).
 * The parent runs each case in a child with its XMM_* settings. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

#define MIB ((size_t)1 << 20)
#define SMALL_TOTAL (512 * MIB)
#define LARGE_TOTAL (512 * MIB)
#define GROUP 64 /* small blocks allocated together live or die together */

static size_t resident_bytes(void)
{
    FILE *statm = fopen("/proc/self/statm", "r");
    unsigned long size = 0, resident = 0;
    if (statm) {
        if (fscanf(statm, "%lu %lu", &size, &resident) != 2)
            resident = 0;
        fclose(statm);
    }
    return resident * (size_t)sysconf(_SC_PAGESIZE);
}

static void sleep_ms(long ms)
{
    struct timespec pause = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&pause, NULL);
}

/* Bookkeeping arrays come from mmap, so they do not disturb the heap. */
static void *raw(size_t bytes)
{
    void *memory = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return memory == MAP_FAILED ? NULL : memory;
}

static int run_case(const char *mode)
{
    unsigned seed = 12345;
    size_t baseline = resident_bytes();
    size_t max_blocks = SMALL_TOTAL / 32;
    void **small = raw(max_blocks * sizeof(void *));
    size_t *small_size = raw(max_blocks * sizeof(size_t));
    void *large[1024];
    size_t large_size[1024];
    size_t small_count = 0, large_count = 0, allocated = 0;
    size_t size = 0;
    while (allocated < SMALL_TOTAL) {
        /* Objects allocated together have one size and one lifetime (a
         * group is a request's or a table's worth): a size-segregated heap
         * can give back what a dead group occupied. */
        if (small_count % GROUP == 0) {
            seed = seed * 1103515245 + 12345;
            size = 32 + (seed >> 8) % 2017;
        }
        small[small_count] = malloc(size);
        memset(small[small_count], 0x11, size);
        small_size[small_count++] = size;
        allocated += size;
    }
    for (allocated = 0; allocated < LARGE_TOTAL && large_count < 1024;) {
        seed = seed * 1103515245 + 12345;
        size = (64 << 10) + (seed >> 4) % (4 * MIB);
        large[large_count] = malloc(size);
        memset(large[large_count], 0x22, size);
        large_size[large_count++] = size;
        allocated += size;
    }
    size_t peak = resident_bytes();
    size_t live = 0;
    for (size_t i = 0; i < small_count; i++) {
        if ((i / GROUP) % 10 == 0)
            live += small_size[i];
        else
            free(small[i]);
    }
    for (size_t i = 0; i < large_count; i++) {
        if (i % 10 == 0)
            live += large_size[i];
        else
            free(large[i]);
    }
    size_t after_free = resident_bytes();
    /* Slack: caches and central lists (a few MiB per CPU), partly used
     * spans at the edges of the live groups, metadata. */
    size_t bound = baseline + live + live / 4 + 48 * MIB;
    size_t after_decay = after_free;
    for (int step = 0; step < 60 && after_decay > bound; step++) {
        if (!strcmp(mode, "activity")) {
            for (int i = 0; i < 5; i++) {
                /* Large: a page heap round trip. Volatile, so the compiler
                 * cannot elide the malloc/free pair. */
                void *volatile block = malloc(300 << 10);
                memset(block, 1, 4096);
                free(block);
                sleep_ms(10);
            }
        } else {
            sleep_ms(50);
        }
        after_decay = resident_bytes();
    }
    malloc_trim(0);
    size_t after_trim = resident_bytes();
    printf("%s: baseline %zu MiB, peak %zu MiB, live %zu MiB, after free %zu MiB, "
           "after decay %zu MiB, after malloc_trim %zu MiB, bound %zu MiB\n",
           mode, baseline / MIB, peak / MIB, live / MIB, after_free / MIB, after_decay / MIB,
           after_trim / MIB, bound / MIB);
    CHECK(peak >= baseline + 900 * MIB, "the test really touched 1 GiB (peak %zu MiB)", peak / MIB);
    if (strcmp(mode, "trim-only"))
        CHECK(after_decay <= bound, "%s: RSS after the decay period %zu MiB > bound %zu MiB",
              mode, after_decay / MIB, bound / MIB);
    CHECK(after_trim <= bound, "RSS after malloc_trim %zu MiB > bound %zu MiB", after_trim / MIB,
          bound / MIB);
    /* The live data survived all of it. */
    for (size_t i = 0; i < small_count; i += GROUP * 10)
        CHECK(((unsigned char *)small[i])[small_size[i] - 1] == 0x11, "small block %zu intact", i);
    for (size_t i = 0; i < large_count; i += 10)
        CHECK(((unsigned char *)large[i])[large_size[i] - 1] == 0x22, "large block %zu intact", i);
    return check_summary(mode);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        return run_case(argv[1]);
    /* Upkeep driven by allocations alone: no background thread (which a
     * 1 GiB heap would otherwise start, XMM_BACKGROUND=auto). */
    char *activity[] = {"XMM_DECAY_MS=200", "XMM_BACKGROUND=0", NULL};
    char *background[] = {"XMM_DECAY_MS=200", "XMM_BACKGROUND=1", NULL};
    char *trim_only[] = {"XMM_DECAY_MS=600000", NULL};
    int failures = 0;
    failures += check_run_self("activity", activity) != 0;
    failures += check_run_self("background", background) != 0;
    failures += check_run_self("trim-only", trim_only) != 0;
    printf("%d of 3 decay cases failed\n", failures);
    return failures ? 1 : 0;
}
