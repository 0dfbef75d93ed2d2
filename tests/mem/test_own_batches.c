/*
 * test_own_batches - a carver's drained batches come back to it first, and
 * go to the class's stack when it stops taking them (central.c, "own
 * batches"; docs/design.md, "Own batches").
 *
 *   back     carver 0 refills two batches of 64-byte objects and drains
 *            them back. Carver 1's next refill gets none of them; carver
 *            0's next two get exactly them. Before, the batches went on
 *            the class's stack and carver 1 took the last one: the two
 *            CPUs' blocks then lay side by side.
 *   idle     carver 0 drains a batch of 64-byte objects, then keeps
 *            refilling 3000-byte ones (it stays busy) through three upkeep
 *            passes: its 64-byte batch goes to the class's stack, where
 *            carver 1's refill finds it. A review found the first version
 *            keeping it as long as the carver refilled any class.
 *   taken    a batch carver 0 keeps taking back stays its own across the
 *            passes.
 *   burst    carver 0 drains 8 batches of 1 KiB objects (256 KiB),
 *            then takes and drains one batch in each of three passes: the
 *            7 it never needed go back (the low-water mark of its stack),
 *            and carver 1 takes them. A review found a version with a
 *            per-class flag keeping all 8, and the row full for every
 *            other class.
 *   reclaim  the reclaim before the heap grows gives back as many
 *            batches as the current pass has not needed (2: drained
 *            before it, none taken since), not the one drained after the
 *            pass began (the stack gives back its top batches: which ones
 *            does not matter, how many does).
 *   bound    carver 0 drains three times XMM_OWN_BATCH_MAX_BYTES (1 MiB)
 *            in batches of 1 KiB objects: at most 1 MiB of them (32
 *            batches, and one more) stay its own, so carver 1 can refill
 *            the rest.
 *   kept     for each class under a cache line (8-48 B), carver 0
 *            refills one object, two upkeep passes find it idle, then
 *            carver 1 refills one: it lies in another line than carver
 *            0's. The passes let go of the span carver 0 kept, and
 *            carver 1 cut the next object of it, in the same line: two
 *            threads that each reused theirs wrote one line (bench/micro
 *            malloc_free/8, two threads, 7 ns a pair instead of 2 after
 *            the one-thread cases). For 64-byte objects the passes still
 *            let go of the span: carver 1's object is the next of carver
 *            0's span. After the passes no carver run is left: the
 *            idle pass keeps the span, not the run it was cut from.
 *   cold     carver 0 drains two batches of 1 KiB objects and keeps a
 *            span of 3000-byte objects, one object out and back; then the
 *            central layer hands out 12 MiB of pages (three cold checks)
 *            while carver 0 keeps refilling and draining 64-byte objects.
 *            The classes no refill took since a check go back: carver 1
 *            takes the two batches and cuts its 3000-byte object from the
 *            span carver 0 kept, and no carver run is left. The 64-byte
 *            batch stays carver 0's. Before, the cold check flushed only
 *            the classes' shared batches: what carvers kept of classes a
 *            program had stopped using pinned their spans (size-drift's
 *            holes, central.c, release_cold_classes).
 *   parked   four batches of 5 KiB objects are drained to the class's
 *            stack. Then one batch of 1 KiB objects goes back and forth
 *            (refilled and drained, no carver) for 16 MiB, and a span is
 *            asked for: nothing piled up, no cold check runs, the 5 KiB
 *            batches stay. Then 4 MiB of 1 KiB batches and 4 MiB of 2 KiB
 *            ones are refilled from spans already cut and drained back,
 *            each followed by one 8 KiB span asked for: the checks count
 *            batches that piled up as spans asked for, and the 5 KiB and 1
 *            KiB ones go back to their spans; only 2 KiB ones may stay.
 *            Before, only spans asked for counted, and the batches stayed:
 *            size-drift's second pass parked 26 MiB of them in the classes
 *            it passed while the heap grew by 3 MiB (central.c,
 *            release_cold_classes).
 *   trim     xmm_central_release_all leaves no batch anywhere and every
 *            span back in the page heap (the kept spans of case kept
 *            too).
 *
 * Skipped (77) when the platform gives fewer than two carvers (CPU
 * indexes).
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/backend.h"
#include "mem/mem.h"
#include "check.h"
#include "quiet_central.h"
#include "xmm.h"

#define MAX_HELD 4096
/* bound_case drains three times the bound; carver 1 must be able to hold
 * the two thirds that are not carver 0's. */
_Static_assert(2 * XMM_OWN_BATCH_MAX_BYTES <= MAX_HELD * 1024, "MAX_HELD holds bound_case's");

static unsigned class_64, class_3000, class_1k, class_2k, class_5k;

/* One refill of a full batch; returns how many came. */
static unsigned refill(unsigned size_class, int carver, void **out)
{
    return xmm_central_refill(0, size_class, out, xmm_size_classes[size_class].batch, carver);
}

static bool contains(void *const *objects, unsigned count, const void *object)
{
    for (unsigned i = 0; i < count; i++)
        if (objects[i] == object)
            return true;
    return false;
}

/* How many of `got` are among `had`. */
static unsigned overlap(void *const *got, unsigned got_count, void *const *had,
                        unsigned had_count)
{
    unsigned shared = 0;
    for (unsigned i = 0; i < got_count; i++)
        shared += contains(had, had_count, got[i]);
    return shared;
}

static void back_case(void)
{
    unsigned batch = xmm_size_classes[class_64].batch;
    void *drained[2 * XMM_MAX_BATCH], *got[XMM_MAX_BATCH];
    CHECK(refill(class_64, 0, drained) == batch && refill(class_64, 0, drained + batch) == batch,
          "carver 0 refilled two batches of 64-byte objects");
    xmm_central_drain(0, class_64, drained, batch, 0);
    xmm_central_drain(0, class_64, drained + batch, batch, 0);
    unsigned other = refill(class_64, 1, got);
    CHECK(overlap(got, other, drained, 2 * batch) == 0,
          "carver 1's refill got none of carver 0's drained objects (%u of %u)",
          overlap(got, other, drained, 2 * batch), other);
    xmm_central_drain(0, class_64, got, other, XMM_CENTRAL_NO_CARVER);
    void *again[2 * XMM_MAX_BATCH];
    unsigned back = refill(class_64, 0, again);
    back += refill(class_64, 0, again + back);
    CHECK(overlap(again, back, drained, 2 * batch) == 2 * batch,
          "carver 0's next two refills got back the %u objects it drained (%u did)", 2 * batch,
          overlap(again, back, drained, 2 * batch));
    xmm_central_drain(0, class_64, again, batch, XMM_CENTRAL_NO_CARVER);
    xmm_central_drain(0, class_64, again + batch, back - batch, XMM_CENTRAL_NO_CARVER);
}

/* Carver 0 refills and drains 3000-byte objects (busy in another class),
 * then an upkeep pass. */
static void busy_pass(void)
{
    void *objects[XMM_MAX_BATCH];
    unsigned count = refill(class_3000, 0, objects);
    for (unsigned i = 0; i < count; i++)
        xmm_central_return_object(objects[i]);
    xmm_central_release_carvers(true);
}

/* Refills carver 1 with MAX_HELD objects (more than any case drained);
 * returns how many of `had` it got. */
static unsigned taken_by_carver_1(unsigned size_class, void *const *had, unsigned had_count)
{
    static void *got[MAX_HELD];
    unsigned count = 0, batch = xmm_size_classes[size_class].batch;
    while (count + batch <= MAX_HELD)
        count += refill(size_class, 1, got + count);
    unsigned shared = overlap(got, count, had, had_count);
    for (unsigned i = 0; i < count; i++)
        xmm_central_return_object(got[i]);
    return shared;
}

static void idle_case(void)
{
    unsigned batch = xmm_size_classes[class_64].batch;
    void *drained[XMM_MAX_BATCH];
    CHECK(refill(class_64, 0, drained) == batch, "carver 0 refilled a batch");
    xmm_central_drain(0, class_64, drained, batch, 0);
    for (int pass = 0; pass < 3; pass++)
        busy_pass();
    unsigned shared = taken_by_carver_1(class_64, drained, batch);
    CHECK(shared == batch,
          "after three upkeep passes in which carver 0 refilled only other classes, carver 1 "
          "took its 64-byte batch (%u of %u objects)", shared, batch);
}

static void taken_case(void)
{
    unsigned batch = xmm_size_classes[class_64].batch;
    void *drained[XMM_MAX_BATCH];
    CHECK(refill(class_64, 0, drained) == batch, "carver 0 refilled a batch");
    xmm_central_drain(0, class_64, drained, batch, 0);
    for (int pass = 0; pass < 3; pass++) {
        CHECKQ(refill(class_64, 0, drained) == batch, "carver 0 took its batch back");
        xmm_central_drain(0, class_64, drained, batch, 0);
        xmm_central_release_carvers(true);
    }
    CHECK(taken_by_carver_1(class_64, drained, batch) == 0,
          "a batch carver 0 took back in every pass stayed its own");
    CHECK(refill(class_64, 0, drained) == batch, "carver 0 refilled");
    for (unsigned i = 0; i < batch; i++)
        xmm_central_return_object(drained[i]);
}

/* Carver 0 refills `batches` batches of 1 KiB objects into `drained` and
 * drains them back, one by one; returns how many objects. */
static unsigned drain_1k_batches(void **drained, int batches)
{
    unsigned batch = xmm_size_classes[class_1k].batch, count = 0;
    for (int b = 0; b < batches; b++)
        count += refill(class_1k, 0, drained + count);
    CHECK(count == (unsigned)batches * batch, "carver 0 refilled %d batches of 1 KiB objects",
          batches);
    for (int b = 0; b < batches; b++)
        xmm_central_drain(0, class_1k, drained + b * batch, batch, 0);
    return count;
}

static void burst_case(void)
{
    enum { BATCHES = 8 };
    unsigned batch = xmm_size_classes[class_1k].batch;
    static void *drained[BATCHES * XMM_MAX_BATCH];
    void *cycled[XMM_MAX_BATCH];
    unsigned count = drain_1k_batches(drained, BATCHES);
    for (int pass = 0; pass < 3; pass++) {
        CHECKQ(refill(class_1k, 0, cycled) == batch, "carver 0 took a batch back");
        xmm_central_drain(0, class_1k, cycled, batch, 0);
        xmm_central_release_carvers(true);
    }
    unsigned shared = taken_by_carver_1(class_1k, drained, count);
    CHECK(shared >= (BATCHES - 1) * batch,
          "after three passes that needed one of carver 0's %d batches, carver 1 took %u of "
          "their %u objects (at least %u)", BATCHES, shared, count, (BATCHES - 1) * batch);
}

static void reclaim_case(void)
{
    unsigned batch = xmm_size_classes[class_64].batch;
    void *drained[3 * XMM_MAX_BATCH];
    unsigned count = 0;
    for (int b = 0; b < 3; b++)
        count += refill(class_64, 0, drained + count);
    CHECK(count == 3 * batch, "carver 0 refilled three batches");
    xmm_central_drain(0, class_64, drained, batch, 0);
    xmm_central_drain(0, class_64, drained + batch, batch, 0);
    xmm_central_release_carvers(true); /* a pass begins with 2 batches */
    xmm_central_drain(0, class_64, drained + 2 * batch, batch, 0);
    xmm_central_reclaim(0);
    unsigned shared = taken_by_carver_1(class_64, drained, count);
    CHECK(shared == 2 * batch,
          "the reclaim gave back the 2 batches' worth the pass had not needed, and kept one "
          "(carver 1 took %u of the %u objects)", shared, count);
}

static void bound_case(void)
{
    enum { BATCHES = 3 * (int)(XMM_OWN_BATCH_MAX_BYTES / (32 * 1024)) };
    unsigned batch = xmm_size_classes[class_1k].batch;
    CHECKQ(batch == 32, "a batch holds 32 objects of 1 KiB (%u)", batch);
    static void *drained[BATCHES * XMM_MAX_BATCH];
    unsigned count = drain_1k_batches(drained, BATCHES);
    unsigned own_most = (unsigned)(XMM_OWN_BATCH_MAX_BYTES / ((int64_t)batch * 1024)) + 1;
    unsigned shared = taken_by_carver_1(class_1k, drained, count);
    CHECK(shared >= (BATCHES - own_most) * batch,
          "carver 1 took %u of carver 0's %u drained objects (at most %u batches stay its own)",
          shared, count, own_most);
}

/* Carver 0 then, after two idle upkeep passes, carver 1 refill one
 * object of `size_class` each; returns the distance between them in
 * bytes. */
static uintptr_t idle_refill_distance(unsigned size_class)
{
    void *first, *second;
    CHECK(xmm_central_refill(0, size_class, &first, 1, 0) == 1, "carver 0 refilled one object");
    xmm_central_release_carvers(true); /* carver 0 refilled since the last pass */
    xmm_central_release_carvers(true); /* idle */
    struct xmm_central_stats stats;
    xmm_central_stats(0, &stats);
    CHECK(stats.run_bytes == 0, "class %u: the idle pass gave carver 0's run back (%llu bytes left)",
          size_class, (unsigned long long)stats.run_bytes);
    CHECK(xmm_central_refill(0, size_class, &second, 1, 1) == 1, "carver 1 refilled one object");
    xmm_central_return_object(first);
    xmm_central_return_object(second);
    return first > second ? (uintptr_t)first - (uintptr_t)second
                          : (uintptr_t)second - (uintptr_t)first;
}

static void kept_case(void)
{
    for (unsigned size_class = 1; size_class <= XMM_SUBLINE_CLASSES; size_class++) {
        uintptr_t distance = idle_refill_distance(size_class);
        CHECK(distance >= XMM_CACHE_LINE,
              "class %u (%u B): after carver 0 went idle, carver 1's object lies %lu bytes "
              "from carver 0's, outside its line",
              size_class, xmm_size_classes[size_class].size, (unsigned long)distance);
        xmm_central_release_all();
    }
    uintptr_t distance = idle_refill_distance(class_64);
    CHECK(distance == 64,
          "64 B: the idle passes let go of carver 0's span; carver 1 cut the next object "
          "(%lu bytes away)", (unsigned long)distance);
}

static void trim_case(void)
{
    xmm_central_release_all();
    struct xmm_central_stats stats;
    xmm_central_stats(0, &stats);
    CHECK(stats.batches_cached == 0, "after the release no batch is left (%llu)",
          (unsigned long long)stats.batches_cached);
    CHECK(stats.spans_created == stats.spans_released, "spans created %llu, released %llu",
          (unsigned long long)stats.spans_created, (unsigned long long)stats.spans_released);
}

static void cold_case(void)
{
    unsigned batch = xmm_size_classes[class_1k].batch;
    void *drained[2 * XMM_MAX_BATCH], *warm[XMM_MAX_BATCH], *kept_object, *other;
    unsigned count = drain_1k_batches(drained, 2);
    CHECK(xmm_central_refill(0, class_3000, &kept_object, 1, 0) == 1,
          "carver 0 refilled one 3000-byte object");
    xmm_central_return_object(kept_object); /* its span stays carver 0's */
    enum { SPAN_PAGES = 64, SPANS = (12 << 20) / (SPAN_PAGES << XMM_PAGE_SHIFT) };
    for (int i = 0; i < SPANS; i++) {
        CHECKQ(refill(class_64, 0, warm) == xmm_size_classes[class_64].batch,
               "carver 0 refilled 64-byte objects");
        xmm_central_drain(0, class_64, warm, xmm_size_classes[class_64].batch, 0);
        struct xmm_span *span = xmm_central_alloc_pages(0, SPAN_PAGES, 0);
        CHECKQ(span != NULL, "the central layer handed out 256 KiB of pages");
        if (span)
            xmm_page_heap_free(span);
    }
    struct xmm_central_stats stats;
    xmm_central_stats(0, &stats);
    CHECK(stats.run_bytes == 0, "no carver run is left after the cold checks (%llu bytes)",
          (unsigned long long)stats.run_bytes);
    unsigned shared = taken_by_carver_1(class_1k, drained, count);
    CHECK(shared == 2 * batch, "carver 1 took carver 0's two cold batches (%u of %u objects)",
          shared, count);
    CHECK(xmm_central_refill(0, class_3000, &other, 1, 1) == 1, "carver 1 refilled one object");
    CHECK(other == kept_object,
          "carver 1 cut its 3000-byte object from the span carver 0 had kept (%p, %p)", other,
          kept_object);
    xmm_central_return_object(other);
    CHECK(taken_by_carver_1(class_64, warm, xmm_size_classes[class_64].batch) == 0,
          "carver 0's batch of a class it kept refilling stayed its own");
}

static uint64_t parked_bytes(void)
{
    struct xmm_central_stats stats;
    xmm_central_stats(0, &stats);
    return stats.objects_in_batches_bytes;
}

/* Refills `count` batches of `size_class` (no carver) into `held`, then
 * drains them all back: `count` batches parked on the class's stack, or
 * as many as its limit takes. */
static void refill_then_drain(unsigned size_class, void **held, unsigned count)
{
    unsigned batch = xmm_size_classes[size_class].batch;
    for (unsigned i = 0; i < count; i++)
        CHECKQ(refill(size_class, XMM_CENTRAL_NO_CARVER, held + i * batch) == batch,
               "a batch of %u-byte objects", xmm_size_classes[size_class].size);
    for (unsigned i = 0; i < count; i++)
        xmm_central_drain(0, size_class, held + i * batch, batch, XMM_CENTRAL_NO_CARVER);
}

/* Objects back to their spans one by one: the spans stay listed, so that
 * the next refills of the class ask for no page. */
static void return_all(void *const *objects, unsigned count)
{
    for (unsigned i = 0; i < count; i++)
        xmm_central_return_object(objects[i]);
}

/* One span of 8 KiB asked for and given back: where cold checks run. */
static void ask_one_span(void)
{
    struct xmm_span *span = xmm_central_alloc_pages(0, 2, 0);
    CHECK(span != NULL, "the central layer handed out 8 KiB of pages");
    if (span)
        xmm_page_heap_free(span);
}

static void parked_case(void)
{
    enum { PARKED = 4, HELD = 8192 };
    uint64_t batch_5k = (uint64_t)xmm_size_classes[class_5k].batch * xmm_size_classes[class_5k].size;
    uint64_t batch_1k = (uint64_t)xmm_size_classes[class_1k].batch * 1024;
    uint64_t batch_2k = (uint64_t)xmm_size_classes[class_2k].batch * 2048;
    /* 4 MiB of batches of each: what the stacks of the two classes hold. */
    unsigned batches_1k = (unsigned)((4u << 20) / batch_1k);
    unsigned batches_2k = (unsigned)((4u << 20) / batch_2k);
    static void *held[HELD], *parked[PARKED * XMM_MAX_BATCH];
    CHECK(batches_1k * xmm_size_classes[class_1k].batch <= HELD &&
              batches_2k * xmm_size_classes[class_2k].batch <= HELD,
          "4 MiB of 1 and 2 KiB objects fit the test's array");
    /* The spans of 8 MiB of 1 and 2 KiB objects, cut now (the checks the
     * growth sets off run now) and left listed. */
    for (unsigned i = 0; i < batches_1k; i++)
        refill(class_1k, XMM_CENTRAL_NO_CARVER, held + i * xmm_size_classes[class_1k].batch);
    return_all(held, batches_1k * xmm_size_classes[class_1k].batch);
    for (unsigned i = 0; i < batches_2k; i++)
        refill(class_2k, XMM_CENTRAL_NO_CARVER, held + i * xmm_size_classes[class_2k].batch);
    return_all(held, batches_2k * xmm_size_classes[class_2k].batch);

    refill_then_drain(class_5k, parked, PARKED);
    CHECK(parked_bytes() == PARKED * batch_5k, "%d batches of 5 KiB objects parked (%llu bytes)",
          PARKED, (unsigned long long)parked_bytes());
    /* Steady: one batch of 1 KiB objects goes back and forth for 16 MiB;
     * nothing piles up, no check runs. */
    void *moving[XMM_MAX_BATCH];
    for (unsigned i = 0; i < 4 * batches_1k; i++) {
        unsigned got = refill(class_1k, XMM_CENTRAL_NO_CARVER, moving);
        CHECKQ(got == xmm_size_classes[class_1k].batch, "a batch of 1 KiB objects");
        xmm_central_drain(0, class_1k, moving, got, XMM_CENTRAL_NO_CARVER);
    }
    ask_one_span();
    CHECK(parked_bytes() == PARKED * batch_5k + batch_1k,
          "after a batch went back and forth 16 MiB, and a span asked for, the 5 KiB batches "
          "are still parked (%llu bytes parked; %llu of them, %llu of 1 KiB)",
          (unsigned long long)parked_bytes(), (unsigned long long)(PARKED * batch_5k),
          (unsigned long long)batch_1k);
    /* Piling up: 4 MiB of 1 KiB batches parked, then 4 MiB of 2 KiB ones,
     * from spans already cut, each time followed by a span asked for:
     * two checks, the 5 KiB class, not refilled since, goes cold, and so
     * does the 1 KiB one. */
    refill_then_drain(class_1k, held, batches_1k);
    ask_one_span();
    refill_then_drain(class_2k, held, batches_2k);
    ask_one_span();
    CHECK(parked_bytes() <= (uint64_t)batches_2k * batch_2k,
          "after 8 MiB of batches piled up only 2 KiB batches are parked (%llu bytes; %llu of "
          "them at most)",
          (unsigned long long)parked_bytes(), (unsigned long long)batches_2k * batch_2k);
}

int main(int argc, char **argv)
{
    run_with_quiet_central(argc, argv);
    if (xmm_topology.cpu_index_bound < 2 || xmm_topology.cpu_index_bound > XMM_CENTRAL_CARVERS) {
        NOTE("not two carvers or more (CPU index bound %d): skipped",
             xmm_topology.cpu_index_bound);
        return 77;
    }
    class_64 = xmm_size_to_class(64);
    class_3000 = xmm_size_to_class(3000);
    class_1k = xmm_size_to_class(1024);
    class_2k = xmm_size_to_class(2048);
    class_5k = xmm_size_to_class(5000);
    CHECK(xmm_size_classes[class_1k].size == 1024, "a 1 KiB class");
    /* Each case from an empty central layer: every batch back in its
     * spans, every carver's own stack empty. */
    back_case();
    xmm_central_release_all();
    idle_case();
    xmm_central_release_all();
    taken_case();
    xmm_central_release_all();
    burst_case();
    xmm_central_release_all();
    reclaim_case();
    xmm_central_release_all();
    bound_case();
    xmm_central_release_all();
    kept_case();
    xmm_central_release_all();
    cold_case();
    xmm_central_release_all();
    parked_case();
    trim_case();
    return check_summary("own batches");
}
