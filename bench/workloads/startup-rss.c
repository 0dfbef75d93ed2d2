/*
 * startup-rss - the peak RSS of one short program, its own.
 *
 * usage: [LD_PRELOAD=LIBRARY] startup-rss PROGRAM [ARG...]
 *
 * Runs PROGRAM (an absolute path) with the LD_PRELOAD it was given and
 * prints one line "result peak_rss_kb=N elapsed_s=S". The launcher itself
 * runs without the preload (it takes it out of its environment and
 * executes itself again): a child's ru_maxrss starts at what the parent
 * had mapped when it forked (the kernel keeps the high-water mark across
 * exec), so a launcher as large as a Python runner would hide a small
 * program's RSS under its own, and one with the allocator preloaded would
 * count the allocator twice. This one maps about 1 MB, the same under
 * every allocator measured: a floor below every program measured.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: [LD_PRELOAD=LIBRARY] startup-rss PROGRAM [ARG...]\n");
        return 2;
    }
    const char *given = getenv("LD_PRELOAD");
    if (given && !getenv("STARTUP_RSS_PRELOAD")) {
        setenv("STARTUP_RSS_PRELOAD", given, 1);
        unsetenv("LD_PRELOAD");
        execv("/proc/self/exe", argv);
        perror("startup-rss: /proc/self/exe");
        return 1;
    }
    const char *preload = getenv("STARTUP_RSS_PRELOAD");
    double started = now_s();
    pid_t child = fork();
    if (child < 0) {
        perror("startup-rss: fork");
        return 1;
    }
    if (child == 0) {
        unsetenv("STARTUP_RSS_PRELOAD");
        if (preload && *preload)
            setenv("LD_PRELOAD", preload, 1);
        execv(argv[1], argv + 1);
        fprintf(stderr, "startup-rss: %s: %s\n", argv[1], strerror(errno));
        _exit(127);
    }
    int status;
    struct rusage usage;
    if (wait4(child, &status, 0, &usage) != child) {
        perror("startup-rss: wait4");
        return 1;
    }
    double elapsed = now_s() - started;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "startup-rss: %s did not exit with 0 (status %#x)\n", argv[1], status);
        return 1;
    }
    printf("result peak_rss_kb=%ld elapsed_s=%.6f\n", usage.ru_maxrss, elapsed);
    return 0;
}
