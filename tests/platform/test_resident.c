/* xmm_os_resident_bytes counts the resident pages of a range (from
 * /proc/self/pagemap), across the 2 MiB pieces it reads one at a time,
 * with a last piece shorter than the others; when the file cannot be read
 * (no file descriptor left here) the range counts as resident whole; and
 * errno is left as it was. */
#include <errno.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include "base/base.h"
#include "check.h"

int main(void)
{
    size_t page = xmm_os_page_size();
    size_t pages = 512 * 2 + 7; /* two whole pieces and a short one */
    size_t size = pages * page;
    char *range = xmm_os_map(size, page);
    CHECK(range != NULL, "mapped %zu KiB", size >> 10);
    if (!range)
        return check_summary("resident");
    /* Under transparent_hugepage/enabled [always] a first touch may bring
     * a whole huge page: keep this range on small pages. */
    xmm_os_advise_huge(range, size, false);
    CHECK(xmm_os_resident_bytes(range, size) == 0, "nothing touched: none resident (%zu)",
          xmm_os_resident_bytes(range, size));
    size_t touched[] = {0, 5, 511, 512, 700, pages - 1};
    for (size_t i = 0; i < sizeof touched / sizeof touched[0]; i++)
        range[touched[i] * page] = 1;
    size_t got = xmm_os_resident_bytes(range, size);
    CHECK(got == 6 * page, "6 pages touched, three of them past the first piece: %zu pages",
          got / page);
    CHECK(xmm_os_resident_bytes(range + 512 * page, 2 * page) == page,
          "a range of two pages from the 513th: one resident");
    xmm_os_purge(range + 700 * page, page, false);
    CHECK(xmm_os_resident_bytes(range, size) == 5 * page, "one purged: 5 pages (%zu)",
          xmm_os_resident_bytes(range, size) / page);
    struct rlimit files;
    CHECK(getrlimit(RLIMIT_NOFILE, &files) == 0, "getrlimit");
    struct rlimit none_left = {3, files.rlim_max}; /* 0, 1 and 2 are open */
    CHECK(setrlimit(RLIMIT_NOFILE, &none_left) == 0, "no file descriptor left");
    errno = 1234;
    got = xmm_os_resident_bytes(range, size);
    CHECK(got == size, "the file unreadable: resident whole (%zu of %zu pages)", got / page,
          pages);
    CHECK(errno == 1234, "errno as the caller left it (%d)", errno);
    CHECK(setrlimit(RLIMIT_NOFILE, &files) == 0, "file descriptors back");
    xmm_os_unmap(range, size);
    errno = 1234;
    got = xmm_os_resident_bytes(range, size);
    CHECK(got == 0, "an unmapped range: none resident (%zu pages)", got / page);
    CHECK(errno == 1234, "errno as the caller left it (%d)", errno);
    return check_summary("resident");
}
