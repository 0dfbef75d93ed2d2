/*
 * early.c - allocations before main.
 *
 * The program (linked with libxmm.so) has a constructor of priority 101
 * that mallocs, callocs, reallocs and frees; it re-executes itself with
 * LD_PRELOAD="<build>/libxmm.so <build>/tests/libxmm-test-early.so", whose
 * constructor does the same, possibly before libxmm.so's constructor ran.
 * In main, the re-executed program checks that both constructors ran
 * without a problem, that the blocks they kept are XMM blocks holding what
 * was written, and frees them.
 */
#include <dlfcn.h>
#include <libgen.h>

#include "xmm.h"
#include "testlib.h"
#include "early_common.h"

static struct early_result program_result;

__attribute__((constructor(101))) static void early_program_constructor(void)
{
    early_allocations(&program_result);
}

static void check_result(const char *who, const struct early_result *result)
{
    CHECK(result->ran, "%s: the constructor ran", who);
    CHECK(result->problems == 0, "%s: malloc/calloc/realloc/posix_memalign/strdup/free worked "
                                 "before main (%d problems; first: %s)",
          who, result->problems, result->first ? result->first : "none");
    if (!result->kept)
        return;
    size_t bad = SIZE_MAX;
    for (size_t i = 0; i < result->kept_size; i++)
        if (result->kept[i] != early_byte(i)) {
            bad = i;
            break;
        }
    CHECK(bad == SIZE_MAX, "%s: the block kept from before main is intact", who);
    CHECK(xmm_node_of(result->kept) >= 0, "%s: it is an XMM block (node %d)", who,
          xmm_node_of(result->kept));
    CHECK(malloc_usable_size(result->kept) >= result->kept_size, "%s: its usable size %zu", who,
          malloc_usable_size(result->kept));
    free(result->kept);
}

static int preloaded_main(void)
{
    expect_malloc_is_xmm();
    check_result("the program's constructor", &program_result);
    const struct early_result *preload = dlsym(RTLD_DEFAULT, "xmm_test_early_preload");
    CHECK(preload != NULL, "libxmm-test-early.so is loaded (LD_PRELOAD took effect)");
    if (preload)
        check_result("the preloaded library's constructor", preload);
    return check_summary("early (preloaded)");
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--preloaded") == 0)
        return preloaded_main();

    char directory[4096];
    snprintf(directory, sizeof directory, "%s", self_path());
    dirname(directory);
    char preload[9000];
    snprintf(preload, sizeof preload, "LD_PRELOAD=%s/../libxmm.so %s/libxmm-test-early.so",
             directory, directory);
    char early_library[4200];
    snprintf(early_library, sizeof early_library, "%s/libxmm-test-early.so", directory);
    CHECK(access(early_library, R_OK) == 0, "%s exists", early_library);

    static struct child_result result;
    char *child_argv[] = {(char *)self_path(), "--preloaded", NULL};
    const char *const unset[] = {"XMM_TEST_TIMEOUT", NULL};
    const char *const add[] = {preload, NULL};
    if (run_child(child_argv, unset, add, 60, &result) != 0) {
        CHECK(0, "could not run the preloaded child");
        return check_summary("early");
    }
    printf("%s", result.out);
    CHECK(WIFEXITED(result.status) && WEXITSTATUS(result.status) == 0,
          "the program run with %s passes its checks (%s)", preload,
          describe_status(result.status));
    CHECK(result.err_length == 0, "and writes nothing to stderr (\"%.200s\")", result.err);
    return check_summary("early");
}
