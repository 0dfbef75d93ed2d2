/*
 * static_exe.c - XMM linked into a fully static executable (-static, and
 * -static-pie as api_static_pie_exe), with the heap profiler on: glibc's start-up (_dl_non_dynamic_init)
 * makes the first malloc before libc is ready, XMM initialises there, and
 * the profiler's set-up called glibc's backtrace() to load libgcc_s for
 * its fallback. In a static executable that unwinder is linked in, and
 * called that early it aborted the process before main (a sandbox trial,
 * building static binaries for an empty chroot). The program runs itself
 * again under XMM_PROFILE=1 and then XMM_LEAKS=1, allocates and frees,
 * and must exit 0 each time.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

static int run_with(const char *self, const char *variable)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        setenv(variable, "1", 1);
        setenv("XMM_PROFILE_FILE", "/dev/null", 1);
        execl(self, self, "child", (char *)NULL);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return status;
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "child")) {
        void *blocks[1000];
        for (int i = 0; i < 1000; i++)
            blocks[i] = malloc((size_t)(i % 100) * 64 + 1);
        for (int i = 0; i < 1000; i++)
            free(blocks[i]);
        return 0;
    }
    const char *variables[] = {"XMM_PROFILE", "XMM_LEAKS"};
    for (int i = 0; i < 2; i++) {
        int status = run_with("/proc/self/exe", variables[i]);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "%s=1 in a static executable: started and exited 0 (status 0x%x)", variables[i],
              status);
    }
    return check_summary("static_exe");
}
