/*
 * preload.c - re-executing under LD_PRELOAD for --alloc.
 */
#include "preload.h"

#include <dlfcn.h>
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Set in the re-executed process: which allocator it was started for.
 * Not XMM_*: XMM warns about unknown variables in its own namespace. */
#define ENV_ALLOCATOR "XMMSTRESS_ALLOCATOR"
#define ENV_LIBRARY "XMMSTRESS_LIBRARY"

static void executable_dir(char *dir, size_t size)
{
    char path[PATH_MAX];
    ssize_t length = readlink("/proc/self/exe", path, sizeof path - 1);
    if (length <= 0)
        usage_error("--alloc", "cannot read /proc/self/exe: %s", strerror(errno));
    path[length] = '\0';
    snprintf(dir, size, "%s", dirname(path));
}

/* Where `make install` put the binary and the library (the Makefile's
 * BINDIR and LIBDIR), e.g. /usr/bin and /usr/lib/x86_64-linux-gnu. */
#ifndef XMM_BINDIR
#define XMM_BINDIR "/usr/local/bin"
#endif
#ifndef XMM_LIBDIR
#define XMM_LIBDIR "/usr/local/lib"
#endif

/* libxmm.so beside the binary (build/xmm-stress, build/libxmm.so), or in
 * ../build when the binary was copied elsewhere in the tree; installed,
 * LIBDIR/libxmm.so.0 under the root the binary is in (/ once installed, a
 * directory a package was unpacked into otherwise). */
static void find_xmm_library(char *library)
{
    char dir[PATH_MAX], candidates[3][2 * PATH_MAX + 32];
    executable_dir(dir, sizeof dir);
    snprintf(candidates[0], sizeof candidates[0], "%s/libxmm.so", dir);
    snprintf(candidates[1], sizeof candidates[1], "%s/../build/libxmm.so", dir);
    size_t root_length = strlen(dir), bindir_length = strlen(XMM_BINDIR);
    if (root_length >= bindir_length && strcmp(dir + root_length - bindir_length, XMM_BINDIR) == 0)
        root_length -= bindir_length;
    else
        root_length = 0;
    snprintf(candidates[2], sizeof candidates[2], "%.*s%s/libxmm.so.0", (int)root_length, dir,
             XMM_LIBDIR);
    for (int i = 0; i < 3; i++) {
        if (access(candidates[i], R_OK) == 0 && realpath(candidates[i], library))
            return;
    }
    usage_error("--alloc", "libxmm.so not found (looked for %s, %s and %s); build it with "
                "'make lib', install libxmm0, or pass --alloc PATH.so", candidates[0],
                candidates[1], candidates[2]);
}

static void resolve_library(const char *alloc, char *library)
{
    if (strcmp(alloc, "glibc") == 0)
        library[0] = '\0';
    else if (strcmp(alloc, "xmm") == 0)
        find_xmm_library(library);
    else if (!realpath(alloc, library))
        usage_error("--alloc", "cannot resolve '%s': %s", alloc, strerror(errno));
}

static void reexecute(char **argv, const char *alloc, const char *library)
{
    if (library[0])
        setenv("LD_PRELOAD", library, 1);
    else
        unsetenv("LD_PRELOAD");
    setenv(ENV_ALLOCATOR, alloc, 1);
    setenv(ENV_LIBRARY, library, 1);
    execv("/proc/self/exe", argv);
    usage_error("--alloc", "cannot re-execute /proc/self/exe: %s", strerror(errno));
}

/* In the re-executed process: is the library really in? ld.so only warns
 * when a preload fails, and we must not measure the wrong allocator. */
static void verify_loaded(const char *library)
{
    if (library[0] == '\0') {
        const char *preload = getenv("LD_PRELOAD");
        if (preload && preload[0])
            usage_error("--alloc", "LD_PRELOAD is still set to '%s' for glibc", preload);
        return;
    }
    void *handle = dlopen(library, RTLD_LAZY | RTLD_NOLOAD);
    if (!handle)
        usage_error("--alloc", "%s was not preloaded (see the dynamic linker's message)", library);
    dlclose(handle);
}

void allocator_select(char **argv, const struct stress_options *options,
                      struct allocator_choice *choice)
{
    const char *started_for = getenv(ENV_ALLOCATOR);
    const char *library = getenv(ENV_LIBRARY);
    choice->name = options->alloc;
    if (started_for && library && strcmp(started_for, options->alloc) == 0) {
        snprintf(choice->library, sizeof choice->library, "%s", library);
        verify_loaded(choice->library);
        return;
    }
    resolve_library(options->alloc, choice->library);
    reexecute(argv, options->alloc, choice->library);
}
