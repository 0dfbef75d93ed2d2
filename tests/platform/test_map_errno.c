/* xmm_os_map with a large alignment: when the aligned address below the
 * kernel's choice is taken (its MAP_FIXED_NOREPLACE try fails with EEXIST)
 * and the over-map succeeds, the mapping is aligned and errno is as the
 * caller left it (found in review: it was left at EEXIST). */
#include <errno.h>
#include <stdio.h>
#include <sys/mman.h>

#include "base/base.h"
#include "check.h"

int main(void)
{
    size_t size = (size_t)4 << 20, alignment = (size_t)64 << 20;
    char *probe = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(probe, size);
    uintptr_t below = (uintptr_t)probe & ~(alignment - 1);
    void *blocker = mmap((void *)below, 8192, PROT_NONE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    CHECK(blocker == (void *)below, "blocker at %p", (void *)below);
    errno = 0;
    void *chunk = xmm_os_map(size, alignment);
    int saved = errno;
    printf("kernel's choice %p, xmm_os_map -> %p, errno %d\n", (void *)probe, chunk, saved);
    CHECK(chunk != NULL && ((uintptr_t)chunk & (alignment - 1)) == 0, "mapped, aligned");
    CHECK(saved == 0, "errno unchanged by a successful mapping (got %d)", saved);
    return check_summary("map errno");
}
