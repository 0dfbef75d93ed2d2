/*
 * sizes.h - request size distributions (--sizes).
 *
 * A distribution is up to three weighted bands; within a band sizes are
 * log-uniform (every power-of-two octave is equally likely), because real
 * programs make many more small requests than large ones.
 */
#ifndef STRESS_SIZES_H
#define STRESS_SIZES_H

#include <stddef.h>
#include <stdint.h>

#define SIZE_BANDS_MAX 3
/* Larger requests are refused by --sizes: the harness is not a test of
 * how an allocator handles running out of memory. */
#define SIZE_LIMIT ((size_t)1 << 30)

struct size_band {
    unsigned permille;      /* share of requests drawn from this band */
    size_t min, max;        /* inclusive */
    double octaves;         /* log2((max + 1) / min) */
};

struct size_distribution {
    char name[64];          /* "small", "mixed", "100-4096" ... */
    unsigned band_count;
    struct size_band bands[SIZE_BANDS_MAX];
};

/* Parses a --sizes argument. Returns NULL on success, else a description
 * of what was expected. */
const char *sizes_parse(const char *text, struct size_distribution *out);

size_t sizes_draw(const struct size_distribution *sizes, uint64_t *rng);
size_t sizes_max(const struct size_distribution *sizes);
size_t sizes_min(const struct size_distribution *sizes);
/* The mean request size, estimated by sampling (for sizing working sets). */
double sizes_mean(const struct size_distribution *sizes);

#endif
