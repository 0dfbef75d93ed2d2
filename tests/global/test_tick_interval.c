/* xmm_upkeep_draw_interval (global/upkeep.h): the tick's intervals are
 * exponential with mean xmm_tick_mean(), bounded to [1, 20 means]. The
 * draw reads ln m from a table (upkeep.c) instead of a series; these
 * checks hold for any draw within the 0.2% of the mean it promises, and
 * fail for one whose exponent is off by one (every interval moves by ln 2
 * of the mean) or whose table or bounds are wrong. */
#include <math.h>
#include <stdint.h>

#include "check.h"
#include "base/base.h"
#include "global/upkeep.h"

enum { DRAWS = 4000000 };

/* The tick's estimate (upkeep.c: the request that crosses the countdown
 * stands for xmm_sample_weight of its size) of a program whose sizes
 * repeat: 64 and 1024 bytes in turn, 1088 bytes a period. Unbiased only
 * if intervals take every value: a draw that put them on a lattice of
 * about 1 KiB steps (a table without interpolation) estimated this
 * pattern 5% low, within the 20% that test_stats allows. */
static void check_periodic_sizes(void)
{
    const int64_t mean = xmm_tick_mean();
    /* 40 million requests for each 256 KiB of the mean: the 64-byte
     * half's samples, which carry most of the variance, stay at about
     * 4900 whatever the mean (at least 40 million under a shorter
     * XMM_PROFILE interval). */
    long quarters = (long)((mean + (128 << 10)) >> 18);
    const long requests = 40000000 * (quarters > 0 ? quarters : 1);
    uint64_t state = 0x2545f4914f6cdd1dull;
    int64_t countdown = xmm_upkeep_draw_interval(&state);
    double estimated = 0;
    for (long i = 0; i < requests; i++) {
        size_t size = i % 2 ? 1024 : 64;
        countdown -= (int64_t)size;
        if (countdown < 0) {
            estimated += xmm_sample_weight(size, mean);
            countdown = xmm_upkeep_draw_interval(&state);
        }
    }
    /* About 83,000 samples, 4900 of them of 64 bytes: a standard error
     * near 0.7%. The seed is fixed, so the result does not vary between
     * runs. */
    CHECK(fabs(estimated / (double)requests - 1) < 0.015,
          "64 and 1024 bytes in turn: %.0f requests estimated for %ld", estimated, requests);
}

int main(void)
{
    xmm_upkeep_init();
    const double mean = (double)xmm_tick_mean();
    uint64_t state = 0x9e3779b97f4a7c15ull;
    double sum = 0;
    long above_mean = 0, above_three = 0, below_tenth = 0, out_of_range = 0;
    for (long i = 0; i < DRAWS; i++) {
        int64_t interval = xmm_upkeep_draw_interval(&state);
        if (interval < 1 || interval > 20 * (int64_t)mean)
            out_of_range++;
        sum += (double)interval;
        above_mean += interval > mean;
        above_three += interval > 3 * mean;
        below_tenth += interval < mean / 10;
    }
    CHECK(out_of_range == 0, "every interval in [1, 20 means] (%ld outside)", out_of_range);
    /* An exponential's mean over 4M draws: within 0.3% (its standard error
     * is 0.05%). */
    double measured_mean = sum / DRAWS;
    CHECK(fabs(measured_mean / mean - 1) < 0.003, "mean %.0f bytes for %.0f", measured_mean, mean);
    /* P(X > t) = e^(-t / mean): the shape, not only the mean. */
    CHECK(fabs((double)above_mean / DRAWS - exp(-1)) < 0.002, "P(> mean) = %.4f, e^-1 = %.4f",
          (double)above_mean / DRAWS, exp(-1));
    CHECK(fabs((double)above_three / DRAWS - exp(-3)) < 0.001,
          "P(> 3 means) = %.4f, e^-3 = %.4f", (double)above_three / DRAWS, exp(-3));
    CHECK(fabs((double)below_tenth / DRAWS - (1 - exp(-0.1))) < 0.002,
          "P(< mean / 10) = %.4f, 1 - e^-0.1 = %.4f", (double)below_tenth / DRAWS,
          1 - exp(-0.1));
    check_periodic_sizes();
    return check_summary("tick_interval");
}
