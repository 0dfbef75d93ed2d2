/*
 * options.c - parsing and validating xmm-stress's command line.
 *
 * Every bad argument gives one line naming the option and exit status 2,
 * so scripts can tell a usage mistake (2) from a failed run (1).
 */
#include "options.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char *const pattern_names[PATTERN_COUNT] = {
    [PATTERN_PAIRS] = "pairs",
    [PATTERN_BATCH] = "batch",
    [PATTERN_PRODUCER_CONSUMER] = "producer-consumer",
    [PATTERN_CHURN] = "churn",
    [PATTERN_REALLOC] = "realloc",
    [PATTERN_SERVER] = "server",
};

static const char usage_text[] =
"usage: xmm-stress [OPTION]...\n"
"Stress-tests the process's malloc (any allocator, XMM by default) with\n"
"threads, checking the integrity of every block, and reports throughput,\n"
"latency percentiles and peak RSS.\n"
"\n"
"  --threads N        worker threads (default: online CPUs)\n"
"  --seconds S        run for S seconds in total (default 10)\n"
"  --ops N            or stop after N allocations in total\n"
"  --sizes SIZES      small (8-256 B), medium (256 B-32 KiB),\n"
"                     large (32 KiB-4 MiB), mixed (default: mostly small,\n"
"                     a tail of medium and large) or MIN-MAX (4k, 1M...)\n"
"  --pattern P        pairs, batch, producer-consumer, churn, realloc,\n"
"                     server, all (default: each in turn, time split\n"
"                     evenly), or a comma-separated list of them\n"
"  --live-mib M       working set of churn, server, realloc (default 32)\n"
"  --pin              pin thread i to the i-th allowed CPU\n"
"  --seed N           random seed (default: from the clock; printed)\n"
"  --json             print one JSON object on stdout instead of text\n"
"  --alloc A          glibc, xmm (default: libxmm.so next to xmm-stress,\n"
"                     else the installed libxmm.so.0)\n"
"                     or PATH.so; re-executes with it in LD_PRELOAD\n"
"  --corrupt          test mode: overwrite one byte of a live block to\n"
"                     prove the integrity checks catch it (exits 1)\n"
"  --help             this text\n"
"\n"
"Exit status: 0 integrity held and every allocation succeeded; 1 a\n"
"corruption or a failed allocation; 2 a bad argument; 130 interrupted.\n";

void usage_error(const char *option, const char *format, ...)
{
    va_list args;
    fprintf(stderr, "xmm-stress: %s: ", option);
    va_start(args, format);
    vfprintf(stderr, format, args);
    va_end(args);
    fputc('\n', stderr);
    exit(2);
}

static uint64_t parse_unsigned(const char *option, const char *text, uint64_t min,
                               uint64_t max, const char *what)
{
    char *end;
    errno = 0;
    unsigned long long value = isdigit((unsigned char)text[0]) ? strtoull(text, &end, 10) : 0;
    if (!isdigit((unsigned char)text[0]) || *end || errno || value < min || value > max)
        usage_error(option, "expected %s, got '%s'", what, text);
    return value;
}

static double parse_seconds(const char *option, const char *text)
{
    char *end;
    errno = 0;
    double value = strtod(text, &end);
    if (end == text || *end || errno || !isfinite(value) || value <= 0 || value > 1e8)
        usage_error(option, "expected a positive number of seconds, got '%s'", text);
    return value;
}

static int pattern_index(const char *name, size_t length)
{
    for (int i = 0; i < PATTERN_COUNT; i++)
        if (strlen(pattern_names[i]) == length && strncmp(name, pattern_names[i], length) == 0)
            return i;
    return -1;
}

static void append_pattern(struct stress_options *options, const char *text, int pattern)
{
    if (options->pattern_count == PATTERN_LIST_MAX)
        usage_error("--pattern", "at most %d patterns, got '%s'", PATTERN_LIST_MAX, text);
    options->patterns[options->pattern_count++] = (enum pattern_id)pattern;
}

static void parse_patterns(struct stress_options *options, const char *text)
{
    if (strlen(text) >= sizeof options->pattern_text)
        usage_error("--pattern", "list too long: '%s'", text);
    snprintf(options->pattern_text, sizeof options->pattern_text, "%s", text);
    options->pattern_count = 0;
    for (const char *item = text;; item++) {
        size_t length = strcspn(item, ",");
        int pattern = pattern_index(item, length);
        if (length == 3 && strncmp(item, "all", 3) == 0) {
            for (int p = 0; p < PATTERN_COUNT; p++)
                append_pattern(options, text, p);
        } else if (pattern < 0) {
            usage_error("--pattern", "expected pairs, batch, producer-consumer, churn, "
                        "realloc, server or all, got '%s'", text);
        } else {
            append_pattern(options, text, pattern);
        }
        item += length;
        if (*item == '\0')
            break;
    }
}

static void parse_alloc(struct stress_options *options, const char *text)
{
    if (strcmp(text, "glibc") == 0 || strcmp(text, "xmm") == 0 || strchr(text, '/') ||
        strstr(text, ".so")) {
        if (strcmp(text, "glibc") && strcmp(text, "xmm") && access(text, R_OK) != 0)
            usage_error("--alloc", "cannot read '%s': %s", text, strerror(errno));
        options->alloc = text;
        return;
    }
    usage_error("--alloc", "expected glibc, xmm or a path to a shared library, got '%s'", text);
}

static void set_defaults(struct stress_options *options)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    memset(options, 0, sizeof *options);
    options->threads = cpus > 0 ? (unsigned)cpus : 1;
    options->live_bytes = (uint64_t)DEFAULT_LIVE_MIB << 20;
    options->alloc = "xmm";
    options->seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    sizes_parse("mixed", &options->sizes);
    parse_patterns(options, "all");
}

/* "--name=value" or "--name value": the value, or an error if missing. */
static const char *option_value(int argc, char **argv, int *index, const char *name,
                                const char *inline_value)
{
    if (inline_value)
        return inline_value;
    if (*index + 1 >= argc)
        usage_error(name, "missing value");
    return argv[++*index];
}

/* Handles one value-taking option; returns 0 if `name` is not one. */
static int parse_valued(struct stress_options *options, const char *name, const char *value,
                        bool *seconds_given, bool *ops_given)
{
    const char *problem;
    if (strcmp(name, "--threads") == 0) {
        uint64_t threads = parse_unsigned(name, value, 1, UINT64_MAX, "a positive integer");
        if (threads > MAX_THREADS)
            usage_error(name, "at most %d threads, got '%s'", MAX_THREADS, value);
        options->threads = (unsigned)threads;
    } else if (strcmp(name, "--seconds") == 0) {
        options->seconds = parse_seconds(name, value);
        *seconds_given = true;
    } else if (strcmp(name, "--ops") == 0) {
        options->ops = parse_unsigned(name, value, 1, UINT64_MAX / 2, "a positive integer");
        *ops_given = true;
    } else if (strcmp(name, "--sizes") == 0) {
        if ((problem = sizes_parse(value, &options->sizes)))
            usage_error(name, "%s, got '%s'", problem, value);
    } else if (strcmp(name, "--pattern") == 0) {
        parse_patterns(options, value);
    } else if (strcmp(name, "--live-mib") == 0) {
        options->live_bytes = parse_unsigned(name, value, 1, 1 << 20,
                                             "a positive number of MiB (at most 1048576)") << 20;
    } else if (strcmp(name, "--seed") == 0) {
        options->seed = parse_unsigned(name, value, 0, UINT64_MAX, "an unsigned integer");
    } else if (strcmp(name, "--alloc") == 0) {
        parse_alloc(options, value);
    } else {
        return 0;
    }
    return 1;
}

static int parse_flag(struct stress_options *options, const char *name)
{
    if (strcmp(name, "--pin") == 0)
        options->pin = true;
    else if (strcmp(name, "--json") == 0)
        options->json = true;
    else if (strcmp(name, "--corrupt") == 0)
        options->corrupt = true;
    else if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
        fputs(usage_text, stdout);
        exit(0);
    } else
        return 0;
    return 1;
}

static bool takes_value(const char *name)
{
    static const char *const valued[] = { "--threads", "--seconds", "--ops", "--sizes",
                                          "--pattern", "--live-mib", "--seed", "--alloc" };
    for (size_t i = 0; i < sizeof valued / sizeof valued[0]; i++)
        if (strcmp(name, valued[i]) == 0)
            return true;
    return false;
}

void options_parse(int argc, char **argv, struct stress_options *options)
{
    bool seconds_given = false, ops_given = false;
    set_defaults(options);
    for (int i = 1; i < argc; i++) {
        char name[32];
        const char *argument = argv[i], *equals = strchr(argument, '=');
        size_t name_length = equals ? (size_t)(equals - argument) : strlen(argument);
        if (argument[0] != '-')
            usage_error(argument, "unexpected argument (options start with --; see --help)");
        snprintf(name, sizeof name, "%.*s", (int)name_length, argument);
        if (takes_value(name)) {
            const char *value = option_value(argc, argv, &i, name, equals ? equals + 1 : NULL);
            parse_valued(options, name, value, &seconds_given, &ops_given);
        } else if (!parse_flag(options, name)) {
            usage_error(argument, "unknown option (see --help)");
        } else if (equals) {
            usage_error(name, "takes no value, got '%s'", argument);
        }
    }
    if (seconds_given && ops_given)
        usage_error("--ops", "cannot be combined with --seconds");
    if (!seconds_given && !ops_given)
        options->seconds = DEFAULT_SECONDS;
}
