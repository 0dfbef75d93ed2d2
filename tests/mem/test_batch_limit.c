/*
 * test_batch_limit - a class's stack of ready transfer batches grows while
 * the class cycles more objects through the central layer than it holds,
 * and goes back to its first limit when the cycling stops (central.c,
 * "how many ready batches a class's stack holds"; docs/design.md,
 * "Transfer batches").
 *
 * The class is 32 KiB (batches of 4 objects, 128 KiB; the first limit is
 * 4 MiB, 32 batches). No carver: every batch goes to the class's stack.
 *
 *   burst    64 batches (8 MiB) refilled from spans and drained once:
 *            32 are parked, the rest go back to their spans (a burst of
 *            frees alone does not grow the limit). After a trim, the
 *            same again: the trim set the limit back and forgot the
 *            overflow.
 *   cycle    rounds of 64 batches refilled, then the 64 drained. Round 2
 *            takes the 32 parked and then finds none, after the drains
 *            before found the stack full: the limit doubles, all 64 are
 *            parked, and every round after takes all 64 back as ready
 *            batches (none from the spans). Before, 32 were parked every round and the other
 *            32 went back to their spans and were cut from them again
 *            (bench/micro batch1000/32768).
 *   bounded  rounds of 1200 batches (150 MiB) grow the limit to 512
 *            batches at most (64 MiB), whose descriptors stay metadata.
 *   idle     an upkeep pass in which no refill took a batch flushes them
 *            and sets the first limit back: the next cycle of 64 parks 32
 *            in its first round. So does a trim (xmm_central_release_all).
 *   trickle  a grown stack holding 64 batches, then 8 batches taken and
 *            given back between two upkeep passes: the second pass
 *            returns the 56 no refill took to their spans (whose empty
 *            ones the pass then sweeps back to the page heap). Found in
 *            review: a burst followed by a trickle kept the burst's last
 *            frees parked for good (34.6 MB of RSS instead of 10.5).
 *   leaving  a grown stack holding 64 batches, then another class cut
 *            from fresh pages: the pages asked for flush the grown
 *            stack back to the spans, and its class starts from its first
 *            limit. (A program whose sizes drift left its last frees
 *            parked in each class it passed; bench/workloads/size-drift.c
 *            peaked 4 MiB higher.)
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/backend.h"
#include "mem/mem.h"
#include "check.h"
#include "quiet_central.h"
#include "xmm.h"

enum { MOST_HELD = 1200 * 4 };

static unsigned class_32k, batch;
static uint64_t batch_bytes_32k;
static void *held[MOST_HELD];

static uint64_t parked_batches(void)
{
    struct xmm_central_stats stats;
    xmm_central_stats(0, &stats);
    return stats.objects_in_batches_bytes / batch_bytes_32k;
}

/* Refills `batches` batches with no carver; returns how many of them came
 * from the class's stack (the parked count went down by one). */
static unsigned refill_batches(unsigned batches)
{
    unsigned ready = 0;
    for (unsigned i = 0; i < batches; i++) {
        uint64_t parked_before = parked_batches();
        CHECKQ(xmm_central_refill(0, class_32k, held + i * batch, batch, XMM_CENTRAL_NO_CARVER) ==
                   batch,
               "a batch of 32 KiB objects");
        ready += parked_batches() < parked_before;
    }
    return ready;
}

static void drain_batches(unsigned batches)
{
    for (unsigned i = 0; i < batches; i++)
        xmm_central_drain(0, class_32k, held + i * batch, batch, XMM_CENTRAL_NO_CARVER);
}

/* One round: `batches` refilled, then drained; returns how many of the
 * refills were ready batches, and leaves the parked count in `parked`. */
static unsigned round_of(unsigned batches, uint64_t *parked)
{
    unsigned ready = refill_batches(batches);
    drain_batches(batches);
    *parked = parked_batches();
    return ready;
}

static void burst_case(void)
{
    uint64_t parked;
    round_of(64, &parked);
    CHECK(parked == 32, "a burst of 64 batches drained once parks 32 (%llu)",
          (unsigned long long)parked);
    /* Without the trim, the next round's refills would take the 32 and
     * then find none with the overflow noted: the cycle below. */
    xmm_central_release_all();
    round_of(64, &parked);
    CHECK(parked == 32, "after a trim, a burst of 64 batches parks 32 again (%llu)",
          (unsigned long long)parked);
}

/* Two rounds of 64 batches: the limit doubles in the second; false if it
 * did not. */
static bool grow_to_64(void)
{
    uint64_t parked;
    round_of(64, &parked); /* from spans; 32 parked, the stack found full */
    CHECK(parked == 32, "a first round of 64 batches parks 32 (%llu)", (unsigned long long)parked);
    unsigned ready = round_of(64, &parked);
    CHECK(ready == 32 && parked == 64,
          "the second round took the 32 parked, found none more after the stack was found "
          "full, and the limit doubled: all 64 parked (%u taken, %llu parked)",
          ready, (unsigned long long)parked);
    return parked == 64;
}

static void cycle_case(void)
{
    if (!grow_to_64())
        return;
    for (int round = 3; round <= 5; round++) {
        uint64_t parked;
        unsigned ready = round_of(64, &parked);
        CHECK(ready == 64 && parked == 64,
              "round %d: all 64 refills were ready batches and all 64 went back as "
              "batches (%u, %llu)",
              round, ready, (unsigned long long)parked);
    }
}

static void bounded_case(void)
{
    uint64_t parked = 0, most = 0;
    for (int round = 0; round < 20; round++) {
        round_of(1200, &parked);
        if (parked > most)
            most = parked;
    }
    CHECK(most == 512, "rounds of 1200 batches park at most 512 (64 MiB; %llu)",
          (unsigned long long)most);
}

/* An upkeep pass, each time later than the one before. */
static void upkeep_pass(void)
{
    static uint64_t hours;
    xmm_central_maintain(0, xmm_os_now_ns() + ++hours * 3600 * 1000000000ull);
}

static void idle_case(void)
{
    uint64_t parked;
    if (!grow_to_64())
        return;
    /* The first pass sees the refills of the cycle; the second none. */
    upkeep_pass();
    upkeep_pass();
    CHECK(parked_batches() == 0, "an upkeep pass in which no refill took a batch flushed them (%llu)",
          (unsigned long long)parked_batches());
    round_of(64, &parked);
    CHECK(parked == 32, "the first round after it parks 32 (the first limit; %llu)",
          (unsigned long long)parked);
}

static void trickle_case(void)
{
    if (!grow_to_64())
        return;
    upkeep_pass();
    CHECK(parked_batches() == 64, "the pass after the cycle left its 64 batches (%llu)",
          (unsigned long long)parked_batches());
    refill_batches(8);
    drain_batches(8);
    upkeep_pass();
    CHECK(parked_batches() == 8,
          "a pass in which refills took 8 batches returned the 56 none took (%llu left)",
          (unsigned long long)parked_batches());
}

static void leaving_case(void)
{
    if (!grow_to_64())
        return;
    unsigned class_1k = xmm_size_to_class(1024);
    void *other[XMM_MAX_BATCH];
    unsigned got = xmm_central_refill(0, class_1k, other, xmm_size_classes[class_1k].batch,
                                      XMM_CENTRAL_NO_CARVER);
    CHECK(got > 0, "a batch of 1 KiB objects, from a fresh span");
    CHECK(parked_batches() == 0,
          "the pages asked for flushed the grown stack of 32 KiB batches (%llu left)",
          (unsigned long long)parked_batches());
    for (unsigned i = 0; i < got; i++)
        xmm_central_return_object(other[i]);
    uint64_t parked;
    round_of(64, &parked);
    CHECK(parked == 32, "the 32 KiB class parks 32 again (its first limit; %llu)",
          (unsigned long long)parked);
}

int main(int argc, char **argv)
{
    run_with_quiet_central(argc, argv);
    class_32k = xmm_size_to_class(32768);
    batch = xmm_size_classes[class_32k].batch;
    batch_bytes_32k = (uint64_t)batch * 32768;
    CHECK(xmm_size_classes[class_32k].size == 32768 && batch == 4,
          "a 32 KiB class with batches of 4 objects (%u)", batch);
    burst_case();
    xmm_central_release_all();
    cycle_case();
    xmm_central_release_all();
    bounded_case();
    xmm_central_release_all();
    idle_case();
    xmm_central_release_all();
    trickle_case();
    xmm_central_release_all();
    leaving_case();
    xmm_central_release_all();
    return check_summary("batch_limit");
}
