/* xmm_turn_due (base/common.h), the gate of every periodic upkeep: one
 * caller per period, and a caller whose clock read is older than the last
 * turn (it read the time, then another caller took a turn) is not due and
 * does not move the turn back. Before, such a caller's difference wrapped
 * to a huge value: it took a turn and set the mark into the past, so the
 * next caller took one too (xmm_upkeep_node reads the clock once for three
 * layers, which widens that window). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "check.h"
#include "base/base.h"

#define PERIOD 1000

static uint64_t shared_mark;
static atomic_long turns;

static void *take_turns(void *argument)
{
    uint64_t start = (uint64_t)(uintptr_t)argument;
    for (uint64_t now = start; now < start + 1000 * PERIOD; now += 7)
        if (xmm_turn_due(&shared_mark, now, PERIOD))
            atomic_fetch_add(&turns, 1);
    return NULL;
}

int main(void)
{
    uint64_t mark = 5000;
    CHECK(!xmm_turn_due(&mark, 5500, PERIOD) && mark == 5000, "not due within the period");
    CHECK(xmm_turn_due(&mark, 6000, PERIOD) && mark == 6000, "due after it: the mark moves");
    CHECK(!xmm_turn_due(&mark, 6000, PERIOD), "taken once");
    CHECK(!xmm_turn_due(&mark, 3000, PERIOD), "a read older than the mark is not due");
    CHECK(mark == 6000, "and leaves the mark where it was (%llu)", (unsigned long long)mark);
    CHECK(!xmm_turn_due(&mark, 6500, PERIOD), "so the next reader waits out the period");

    /* Threads whose clocks lag one another by up to three periods: the
     * mark never moves back, so the turns stay about one per period of the
     * fastest clock, not one per lagging read. */
    enum { THREADS = 4 };
    pthread_t threads[THREADS];
    shared_mark = 0;
    for (int i = 0; i < THREADS; i++)
        pthread_create(&threads[i], NULL, take_turns, (void *)(uintptr_t)(1 + i * PERIOD));
    for (int i = 0; i < THREADS; i++)
        pthread_join(threads[i], NULL);
    long taken = atomic_load(&turns);
    CHECK(taken >= 900 && taken <= 1000 + 3 + THREADS,
          "%ld turns over about 1003 periods of the leading clock", taken);
    return check_summary("turn_due");
}
