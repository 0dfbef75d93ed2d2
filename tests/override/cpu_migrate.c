/*
 * cpu_migrate.c - a thread that moves to another CPU keeps allocating
 * from the slab of the CPU it is on (src/mem/cpu_cache.c).
 *
 * The main thread allocates on the first CPU it may run on (its rseq
 * area is checked then, once), then moves to the second while a thread
 * of its own spins there, so that the kernel gives it that CPU's index
 * whether slabs go by CPU or by mm_cid, and allocates again; back and
 * forth, checking every block. tests/programs/sysfs_faked.sh runs it
 * where /sys/devices/system/cpu/possible says fewer CPUs than there are:
 * the slabs were sized by that file, and the move made the thread read
 * and write past them (SIGSEGV). Skipped (77) with one CPU allowed.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#include "xmm.h"
#include "testlib.h"

enum { BLOCKS = 2000, MOVES = 6 };

static atomic_int spinning_stop;

static bool move_to(int cpu)
{
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    return sched_setaffinity(0, sizeof one, &one) == 0;
}

static void *spin_on(void *cpu_argument)
{
    move_to((int)(intptr_t)cpu_argument);
    while (!atomic_load(&spinning_stop))
        ;
    return NULL;
}

/* BLOCKS blocks of sizes 8 B-4 KiB, each filled, then checked and freed. */
static int allocate_and_check(int round)
{
    static unsigned char *blocks[BLOCKS];
    int bad = 0;
    for (int i = 0; i < BLOCKS; i++) {
        size_t size = 8 + (size_t)(i * 37 + round) % 4096;
        blocks[i] = malloc(size);
        if (blocks[i])
            memset(blocks[i], (unsigned char)i, size);
    }
    for (int i = 0; i < BLOCKS; i++) {
        size_t size = 8 + (size_t)(i * 37 + round) % 4096;
        bad += !blocks[i] || blocks[i][0] != (unsigned char)i ||
               blocks[i][size - 1] != (unsigned char)i;
        free(blocks[i]);
    }
    return bad;
}

int main(void)
{
    expect_malloc_is_xmm();
    cpu_set_t allowed;
    int cpus[2], found = 0;
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0)
        return 77;
    for (int cpu = 0; cpu < CPU_SETSIZE && found < 2; cpu++)
        if (CPU_ISSET(cpu, &allowed))
            cpus[found++] = cpu;
    if (found < 2) {
        printf("SKIP: one CPU allowed\n");
        return 77;
    }
    CHECKQ(move_to(cpus[0]), "pinned to CPU %d", cpus[0]);
    int bad = allocate_and_check(0);
    pthread_t spinner;
    CHECKQ(pthread_create(&spinner, NULL, spin_on, (void *)(intptr_t)cpus[1]) == 0,
           "a thread spinning on CPU %d", cpus[1]);
    for (int move = 1; move <= MOVES; move++) {
        CHECKQ(move_to(cpus[move % 2]), "moved to CPU %d", cpus[move % 2]);
        bad += allocate_and_check(move);
    }
    atomic_store(&spinning_stop, 1);
    pthread_join(spinner, NULL);
    CHECK(bad == 0, "%d moves between CPUs %d and %d, %d blocks each: %d bad", MOVES, cpus[0],
          cpus[1], BLOCKS, bad);
    return check_summary("cpu_migrate");
}
