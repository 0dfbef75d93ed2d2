/*
 * sizes.c - request size distributions.
 */
#include "sizes.h"
#include "rng.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KiB ((size_t)1024)
#define MiB (1024 * KiB)

static void set_band(struct size_band *band, unsigned permille, size_t min, size_t max)
{
    band->permille = permille;
    band->min = min;
    band->max = max;
    band->octaves = log2(((double)max + 1.0) / (double)min);
}

static void set_named(struct size_distribution *out, const char *name)
{
    snprintf(out->name, sizeof out->name, "%s", name);
    out->band_count = 1;
    if (strcmp(name, "small") == 0) {
        set_band(&out->bands[0], 1000, 8, 256);
    } else if (strcmp(name, "medium") == 0) {
        set_band(&out->bands[0], 1000, 256, 32 * KiB);
    } else if (strcmp(name, "large") == 0) {
        set_band(&out->bands[0], 1000, 32 * KiB, 4 * MiB);
    } else {
        /* A server's profile: mostly small objects, some buffers, and a
         * rare large one (which costs as much as thousands of small). */
        out->band_count = 3;
        set_band(&out->bands[0], 940, 8, 256);
        set_band(&out->bands[1], 55, 256, 32 * KiB);
        set_band(&out->bands[2], 5, 32 * KiB, 4 * MiB);
    }
}

/* "4096", "4k", "4KiB", "2M": bytes with an optional binary suffix. */
static int parse_byte_count(const char *text, size_t *out)
{
    char *end;
    if (!isdigit((unsigned char)*text))
        return -1;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno)
        return -1;
    unsigned shift = 0;
    if (*end == 'k' || *end == 'K')
        shift = 10;
    else if (*end == 'm' || *end == 'M')
        shift = 20;
    else if (*end == 'g' || *end == 'G')
        shift = 30;
    if (shift) {
        end++;
        if (strcmp(end, "iB") == 0 || strcmp(end, "B") == 0)
            end += strlen(end);
    }
    if (*end || value > (SIZE_LIMIT >> shift))
        return -1;
    *out = (size_t)value << shift;
    return 0;
}

static const char *parse_range(const char *text, struct size_distribution *out)
{
    static const char expected[] =
        "expected small, medium, large, mixed or MIN-MAX in bytes (1 to 1G)";
    char min_text[32];
    const char *dash = strchr(text, '-');
    size_t min, max;
    if (!dash || (size_t)(dash - text) >= sizeof min_text)
        return expected;
    memcpy(min_text, text, (size_t)(dash - text));
    min_text[dash - text] = '\0';
    if (parse_byte_count(min_text, &min) || parse_byte_count(dash + 1, &max))
        return expected;
    if (min == 0 || max > SIZE_LIMIT)
        return expected;
    if (min > max)
        return "expected MIN-MAX with MIN <= MAX";
    snprintf(out->name, sizeof out->name, "%zu-%zu", min, max);
    out->band_count = 1;
    set_band(&out->bands[0], 1000, min, max);
    return NULL;
}

const char *sizes_parse(const char *text, struct size_distribution *out)
{
    static const char *const names[] = { "small", "medium", "large", "mixed" };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(text, names[i]) == 0) {
            set_named(out, names[i]);
            return NULL;
        }
    }
    return parse_range(text, out);
}

/* Log-uniform in the band: an octave [min * 2^k, min * 2^(k+1)) chosen
 * uniformly, then a uniform size inside it. */
static size_t size_at(const struct size_band *band, double position)
{
    unsigned octave = (unsigned)position;
    double size = (double)band->min * (double)(1ull << octave) * (1.0 + (position - octave));
    size_t bytes = (size_t)size;
    if (bytes < band->min)
        return band->min;
    return bytes > band->max ? band->max : bytes;
}

static size_t draw_in_band(const struct size_band *band, uint64_t *rng)
{
    return size_at(band, rng_unit(rng) * band->octaves);
}

size_t sizes_draw(const struct size_distribution *sizes, uint64_t *rng)
{
    if (sizes->band_count == 1)
        return draw_in_band(&sizes->bands[0], rng);
    unsigned ticket = (unsigned)rng_below(rng, 1000);
    for (unsigned i = 0; i + 1 < sizes->band_count; i++) {
        if (ticket < sizes->bands[i].permille)
            return draw_in_band(&sizes->bands[i], rng);
        ticket -= sizes->bands[i].permille;
    }
    return draw_in_band(&sizes->bands[sizes->band_count - 1], rng);
}

size_t sizes_max(const struct size_distribution *sizes)
{
    size_t max = 0;
    for (unsigned i = 0; i < sizes->band_count; i++)
        if (sizes->bands[i].max > max)
            max = sizes->bands[i].max;
    return max;
}

size_t sizes_min(const struct size_distribution *sizes)
{
    size_t min = SIZE_LIMIT;
    for (unsigned i = 0; i < sizes->band_count; i++)
        if (sizes->bands[i].min < min)
            min = sizes->bands[i].min;
    return min;
}

/* Exact up to the integration step (sampling would be too noisy: the
 * rare large blocks weigh most), by the midpoint rule over each band. */
double sizes_mean(const struct size_distribution *sizes)
{
    enum { STEPS = 1 << 16 };
    double mean = 0;
    for (unsigned i = 0; i < sizes->band_count; i++) {
        const struct size_band *band = &sizes->bands[i];
        double band_total = 0;
        for (unsigned step = 0; step < STEPS; step++)
            band_total += (double)size_at(band, (step + 0.5) * band->octaves / STEPS);
        mean += band_total / STEPS * band->permille / 1000.0;
    }
    return mean;
}
