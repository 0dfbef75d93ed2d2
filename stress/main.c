/*
 * main.c - xmm-stress: a multithreaded malloc stress test and benchmark
 * that checks every block it hands out. See `xmm-stress --help`.
 */
#include "integrity.h"
#include "latency.h"
#include "options.h"
#include "phase.h"
#include "preload.h"
#include "report.h"
#include "runner.h"

#include <stdio.h>
#include <stdlib.h>

/* --corrupt must end in a detected corruption; anything else means the
 * checks failed to prove themselves. */
static void check_corrupt_mode(const struct stress_options *options)
{
    if (!options->corrupt || failure_kind() == FAILURE_CORRUPTION)
        return;
    report_failure(FAILURE_CORRUPTION, "--corrupt: %s",
                   corruption_was_injected() ? "the overwritten byte was NOT detected"
                                             : "the run ended before a block was overwritten");
}

static int exit_status(const struct run_result *result)
{
    if (failure_kind() != FAILURE_NONE)
        return 1;
    return result->interrupted ? 130 : 0;
}

int main(int argc, char **argv)
{
    static struct stress_options options;
    static struct run_result result;
    static struct allocator_choice allocator;
    options_parse(argc, argv, &options);
    allocator_select(argv, &options, &allocator);
    latency_calibrate();
    run_all(&options, &result);
    result.allocator = allocator.name;
    result.library = allocator.library;
    check_corrupt_mode(&options);
    if (options.json)
        report_json(stdout, &result);
    else
        report_text(stdout, &result);
    fflush(stdout);
    return exit_status(&result);
}
