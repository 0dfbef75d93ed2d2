/*
 * cxx_plugin.c - a C program (no libstdc++ when libxmm.so loads) that
 * dlopens a C++ plugin, tests/override/cxx_plugin_lib.cc, whose failing
 * operator new must throw std::bad_alloc and call the new-handler, as
 * libstdc++'s own does. XMM's operators found libstdc++ only through weak
 * references, bound when libxmm.so loaded: null for good in such a
 * process, where a failing `new` aborted ("no C++ runtime to throw") and
 * the nothrow forms never called the handler; and a nothrow form whose
 * handler throws must return null there too, where XMM's own catch has
 * no personality routine (it ended in std::terminate).
 *
 * Not linked with XMM: runs itself again with LD_PRELOAD=libxmm.so
 * ($XMMTEST_BUILD/libxmm.so, else the one in $(BUILD)), and loads the
 * plugin from next to itself, once with RTLD_LOCAL (libstdc++ in the
 * plugin's scope only) and once, in another process, with RTLD_GLOBAL.
 */
#include <dlfcn.h>
#include <limits.h>

#include "testlib.h"

static void library_dir(char *path, size_t size)
{
    ssize_t length = readlink("/proc/self/exe", path, size - 1);
    path[length > 0 ? length : 0] = '\0';
    char *slash = strrchr(path, '/');
    if (slash)
        *slash = '\0';
}

static int run_plugin(int scope)
{
    char path[PATH_MAX];
    library_dir(path, sizeof path - 32);
    strcat(path, "/libxmm-test-cxx-plugin.so");
    CHECK(dlsym(RTLD_DEFAULT, "xmm_node_of") != NULL, "libxmm.so is preloaded");
    CHECK(dlsym(RTLD_DEFAULT, "_ZSt15get_new_handlerv") == NULL,
          "no libstdc++ before the plugin (a C program)");
    void *plugin = dlopen(path, RTLD_NOW | scope);
    CHECK(plugin != NULL, "dlopen %s: %s", path, plugin ? "" : dlerror());
    if (!plugin)
        return check_summary("cxx_plugin");
    unsigned (*run)(unsigned *) = (unsigned (*)(unsigned *))dlsym(plugin, "plugin_run");
    unsigned checks = 0, failed = run ? run(&checks) : ~0u;
    for (unsigned bit = 0; bit < checks; bit++)
        CHECK(!(failed >> bit & 1), "%s plugin: check %u of plugin_run (cxx_plugin_lib.cc)",
              scope == RTLD_GLOBAL ? "global" : "local", bit + 1);
    CHECK(checks >= 14, "plugin_run ran its checks (%u)", checks);
    return check_summary(scope == RTLD_GLOBAL ? "cxx_plugin global" : "cxx_plugin local");
}

int main(int argc, char **argv)
{
    if (argc > 1)
        return run_plugin(strcmp(argv[1], "global") ? RTLD_LOCAL : RTLD_GLOBAL);
    char library[PATH_MAX];
    const char *build = getenv("XMMTEST_BUILD");
    if (build && *build) {
        snprintf(library, sizeof library, "%s/libxmm.so", build);
    } else {
        library_dir(library, sizeof library - 16);
        strcat(library, "/../libxmm.so");
    }
    char preload[PATH_MAX + 16];
    snprintf(preload, sizeof preload, "LD_PRELOAD=%s", library);
    char *environment[] = {preload, NULL};
    int failures = 0;
    failures += check_run_self("local", environment) != 0;
    failures += check_run_self("global", environment) != 0;
    printf("%d of 2 plugin scopes failed\n", failures);
    return failures ? 1 : 0;
}
