/*
 * preload.h - --alloc: running on the chosen allocator.
 *
 * The harness calls only the standard malloc API, so which allocator it
 * tests is decided by what the dynamic linker binds malloc to: the process
 * re-executes itself once with the library in LD_PRELOAD (or, for glibc,
 * with LD_PRELOAD removed), and the re-executed process checks that the
 * library really was loaded.
 */
#ifndef STRESS_PRELOAD_H
#define STRESS_PRELOAD_H

#include "options.h"

#include <limits.h>

struct allocator_choice {
    const char *name;           /* "glibc", "xmm" or the path given */
    char library[PATH_MAX];     /* the preloaded file; "" for glibc */
};

/* Returns in the process that runs on the chosen allocator (re-executing
 * first if needed). Exits 2 if the library cannot be found or loaded. */
void allocator_select(char **argv, const struct stress_options *options,
                      struct allocator_choice *choice);

#endif
