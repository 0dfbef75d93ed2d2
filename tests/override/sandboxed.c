/*
 * sandboxed.c - a program that sandboxes itself after start-up, as
 * browsers and sshd do, with a seccomp filter that refuses a system call
 * XMM uses: allocation keeps working.
 *
 *   mprotect refused (EPERM, then ENOSYS in a second child): new chunks
 *   need a guard of inaccessible pages before their page table
 *   (backend/arena.h). XMM made it with mprotect and made no chunk when
 *   that failed: every malloc(8 MiB) failed, and 1 KiB blocks after 1968
 *   of them, with ENOMEM and no message, where glibc, jemalloc, tcmalloc
 *   and mimalloc all went on. The guard is now mapped PROT_NONE over
 *   the range when mprotect is refused.
 *
 *   mincore killing the process: systemd's @system-service allow-list
 *   leaves mincore out, and a unit with no SystemCallErrorNumber kills a
 *   process at its first call. XMM_THP=auto asked mincore whether a chunk
 *   cut to its end was mostly resident: the child died by SIGSYS after a
 *   few MiB of small blocks (a sandbox trial), where the peers ran on.
 *
 * The filter is classic BPF (no libseccomp): the system call number, then
 * ERRNO for the one refused, ALLOW for the rest. Each case runs in a
 * child: a filter cannot be removed.
 */
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "xmm.h"
#include "testlib.h"

/* `action`: SECCOMP_RET_ERRNO | error, or SECCOMP_RET_KILL_PROCESS. */
static bool refuse_syscall(int number, unsigned action)
{
    struct sock_filter program[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)number, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, action),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog filter = {sizeof program / sizeof program[0], program};
    return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
           prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &filter) == 0;
}

/* In a child: refuses `number` by `action`, then allocates 20 blocks of
 * 8 MiB (held) and 300 MiB of 1 KiB blocks (held); exits with how many
 * failed, at most 100, or 101 if the filter could not be installed. */
static int allocate_refused(int number, unsigned action)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        free(malloc(16)); /* started before the sandbox, as a program is */
        if (!refuse_syscall(number, action))
            _exit(101);
        int failed = 0;
        for (int i = 0; i < 20; i++) {
            char *block = malloc(8 << 20);
            failed += block == NULL;
            if (block)
                block[0] = 1;
        }
        for (int i = 0; i < 300 * 1024 && failed < 100; i++) {
            char *block = malloc(1024);
            failed += block == NULL;
            if (block)
                block[0] = 1;
        }
        _exit(failed < 100 ? failed : 100);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 200 + WTERMSIG(status);
}

int main(void)
{
    expect_malloc_is_xmm();
    static const struct { int error; const char *name; } errors[] = {
        {EPERM, "EPERM"}, {ENOSYS, "ENOSYS"}};
    for (size_t i = 0; i < sizeof errors / sizeof errors[0]; i++) {
        int failed = allocate_refused(SYS_mprotect,
                                      SECCOMP_RET_ERRNO | ((unsigned)errors[i].error & SECCOMP_RET_DATA));
        if (failed == 101) {
            printf("SKIP: seccomp filters are not available\n");
            return 77;
        }
        CHECK(failed == 0, "mprotect refused with %s after start: 8 MiB and 300 MiB of 1 KiB "
              "blocks allocated (%d failed or child status %d)", errors[i].name, failed, failed);
    }
    /* A kill, as systemd's filters do. 300 MiB of held 1 KiB blocks cut
     * many chunks to their end. */
    int status = allocate_refused(SYS_mincore, SECCOMP_RET_KILL_PROCESS);
    CHECK(status == 0, "mincore killing the process (systemd's @system-service): 8 MiB and "
          "300 MiB of 1 KiB blocks allocated (%d failed, or %d = 200 + the signal)", status, status);
    return check_summary("sandboxed");
}
