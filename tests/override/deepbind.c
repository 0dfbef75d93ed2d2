/*
 * deepbind.c - a program whose malloc is glibc's loads, with
 * dlopen(RTLD_DEEPBIND), a library linked against libxmm.so: XMM is then
 * a second allocator in the process, and pointers of glibc's reach XMM's
 * free, realloc and malloc_usable_size (the first ones before XMM is even
 * initialised: libnuma's constructor frees a buffer glibc allocated). They
 * go to their owner, glibc; nothing crashes, nothing is reported.
 *
 * Not linked with XMM; the library is $XMMTEST_BUILD/tests/libxmm-test-deepbind.so.
 */
#include <dlfcn.h>

#include "testlib.h"

int main(void)
{
    const char *build = getenv("XMMTEST_BUILD");
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/libxmm-test-deepbind.so", build ? build : "build");
    void *library = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    CHECK(library != NULL, "dlopen(%s, RTLD_DEEPBIND) (%s)", path, library ? "ok" : dlerror());
    if (!library)
        return check_summary("deepbind");
    int (*use_xmm)(void) = (int (*)(void))dlsym(library, "deepbind_use_xmm");
    void (*xmm_side_free)(void *) = (void (*)(void *))dlsym(library, "deepbind_free");
    void *(*xmm_side_realloc)(void *, size_t) =
        (void *(*)(void *, size_t))dlsym(library, "deepbind_realloc");
    size_t (*xmm_side_usable_size)(void *) = (size_t(*)(void *))dlsym(library, "deepbind_usable_size");
    CHECK(use_xmm && xmm_side_free && xmm_side_realloc && xmm_side_usable_size,
          "the library's functions");
    if (!use_xmm || !xmm_side_free || !xmm_side_realloc || !xmm_side_usable_size)
        return check_summary("deepbind");
    CHECK(use_xmm() == 0, "the library's malloc is XMM's and works");

    /* glibc's blocks through XMM's functions: back to glibc. */
    char *block = malloc(1000);
    memset(block, 3, 1000);
    CHECK(xmm_side_usable_size(block) >= 1000, "malloc_usable_size of a glibc block: %zu",
          xmm_side_usable_size(block));
    char *grown = xmm_side_realloc(block, 100000);
    CHECK(grown && grown[999] == 3, "realloc of a glibc block keeps its contents");
    xmm_side_free(grown);
    for (int i = 0; i < 1000; i++) /* glibc's heap is intact */
        free(malloc((size_t)(i % 50) * 64 + 1));
    CHECK(1, "glibc's malloc and free still work");
    return check_summary("deepbind");
}
