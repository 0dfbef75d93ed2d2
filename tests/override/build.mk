# tests/override/build.mk - the malloc API tests (tests/override) and the real programs run
# under LD_PRELOAD (tests/programs). Included from tests/build.mk.
# `make test-api` runs only these tests (about 2 minutes on 2 cores).
#
# Flavours of the malloc API tests (tests/override/<name>.c):
#   $(BUILD)/tests/api_<name>         linked with libxmm.so: malloc IS XMM
#   $(BUILD)/tests/api_<name>_static  linked with libxmm.a: the override
#                                     inside the executable (not for the
#                                     size sweeps malloc_sizes, malloc_realloc)
# and of the xmm_* API tests, linked with libxmm-core.a (no override: the
# system malloc and XMM side by side):
#   $(BUILD)/tests/api_xmm, $(BUILD)/tests/api_threads_xmm,
#   $(BUILD)/tests/api_invalid_free_xmm
# plus $(BUILD)/tests/api_early (+ libxmm-test-early.so, preloaded),
# $(BUILD)/tests/api_cxx_new_delete, and for the scripts
# $(BUILD)/tests/cxx_new_delete (no XMM: run with LD_PRELOAD).
# Scripts: tests/programs/*.sh (real programs under LD_PRELOAD) and
# tests/override/modes.sh (the integrity tests under other XMM_* modes).
# TSan: $(BUILD)/tsan/test_api_threads (TSAN_PROGRAMS), the xmm_* threads
# test on the core built with -fsanitize=thread -DCK_USE_CC_BUILTINS=0.
#
# `make api-system` builds the malloc API tests
# against the system allocator into $(BUILD)/tests-system/, to debug the
# tests themselves; those are never run by `make test`.

API_DIR := tests/override
API_OUT = $(BUILD)/tests
# gcc's -Walloc-size-larger-than judges the tests' deliberate huge sizes;
# clang has no such option (and warns that it does not know it).
API_CC_IS_CLANG := $(shell $(CC) --version 2>/dev/null | grep -q clang && echo 1)
API_CFLAGS = -O2 -g -std=gnu11 -D_GNU_SOURCE -Iinclude -Itests -I$(API_DIR) -pthread \
             -fno-builtin -Wall -Wextra -Wno-unused-parameter \
             -Wno-deprecated-declarations \
             $(if $(API_CC_IS_CLANG),,-Wno-alloc-size-larger-than)
API_CXXFLAGS = -O2 -g -std=gnu++17 -Iinclude -Itests -pthread -fno-builtin \
               -fno-allocation-dce -Wall -Wextra -Wno-unused-parameter
API_HEADERS = $(wildcard $(API_DIR)/*.h) tests/check.h tests/stats_snapshot.h tests/node_calls.h \
              include/xmm.h
# Linking with libxmm.so from the build tree, found at run time by rpath.
API_LINK_SO = -L$(BUILD) -lxmm -Wl,-rpath,$(abspath $(BUILD))

API_MALLOC_TESTS = malloc_sizes malloc_realloc malloc_align malloc_misc calloc_fresh \
                   invalid_free oom fork fork_deadlock threads thread_exit rseq_ownership \
                   vfork limits cpu_migrate sandboxed thread_exit_late errno_kept
# The static flavour checks the override linked into the executable; the
# size sweeps would only repeat themselves there, at 10-20 s each.
API_STATIC_TESTS = $(filter-out malloc_sizes malloc_realloc,$(API_MALLOC_TESTS))
API_SO_PROGRAMS = $(API_MALLOC_TESTS:%=$(API_OUT)/api_%)
API_STATIC_PROGRAMS = $(API_STATIC_TESTS:%=$(API_OUT)/api_%_static)
API_CORE_PROGRAMS = $(API_OUT)/api_xmm $(API_OUT)/api_threads_xmm $(API_OUT)/api_invalid_free_xmm
API_EARLY = $(API_OUT)/api_early
API_EARLY_LIB = $(API_OUT)/libxmm-test-early.so
API_CXX_SO = $(API_OUT)/api_cxx_new_delete
# Not linked with XMM: tests/programs/cxx_new_delete.sh runs it preloaded.
API_CXX_PLAIN = $(API_OUT)/cxx_new_delete
API_TSAN = $(BUILD)/tsan/test_api_threads

# Linked with -static, and with -static-pie: libc inside the executable too.
API_STATIC_EXE = $(API_OUT)/api_static_exe $(API_OUT)/api_static_pie_exe

API_TEST_PROGRAMS = $(API_SO_PROGRAMS) $(API_STATIC_PROGRAMS) $(API_CORE_PROGRAMS) \
                    $(API_EARLY) $(API_CXX_SO) $(API_STATIC_EXE)
API_SCRIPTS = $(sort $(wildcard tests/programs/*.sh)) tests/override/modes.sh

TEST_PROGRAMS += $(API_TEST_PROGRAMS)
TEST_SCRIPTS += $(API_SCRIPTS)
TSAN_PROGRAMS += $(API_TSAN)

# The scripts find the build tree here (they default to ./build). Not an
# XMM_* name: libxmm warns about XMM_* variables it does not know.
export XMMTEST_BUILD := $(abspath $(BUILD))

# What the scripts run, built along with the test programs.
test-build: $(API_CXX_PLAIN) $(API_EARLY_LIB)

$(API_SO_PROGRAMS): $(API_OUT)/api_%: $(API_DIR)/%.c $(API_HEADERS) $(LIBXMM_SO)
	@mkdir -p $(dir $@)
	$(CC) $(API_CFLAGS) -o $@ $< $(API_LINK_SO)

$(API_STATIC_PROGRAMS): $(API_OUT)/api_%_static: $(API_DIR)/%.c $(API_HEADERS) $(LIBXMM_A)
	@mkdir -p $(dir $@)
	$(CC) $(API_CFLAGS) -o $@ $< $(LIBXMM_A) $(LIBS)

$(API_OUT)/api_static_exe: $(API_DIR)/static_exe.c $(API_HEADERS) $(LIBXMM_A)
	@mkdir -p $(dir $@)
	$(CC) $(API_CFLAGS) -static -o $@ $< $(LIBXMM_A) $(LIBS)

$(API_OUT)/api_static_pie_exe: $(API_DIR)/static_exe.c $(API_HEADERS) $(LIBXMM_A)
	@mkdir -p $(dir $@)
	$(CC) $(API_CFLAGS) -fPIE -static-pie -o $@ $< $(LIBXMM_A) $(LIBS)

$(API_OUT)/api_xmm: $(API_DIR)/xmm_api.c $(API_HEADERS) $(LIBXMM_CORE_A)
	@mkdir -p $(dir $@)
	$(CC) $(API_CFLAGS) -o $@ $< $(LIBXMM_CORE_A) $(LIBS)

$(API_OUT)/api_threads_xmm: $(API_DIR)/threads.c $(API_HEADERS) $(LIBXMM_CORE_A)
	@mkdir -p $(dir $@)
	$(CC) $(API_CFLAGS) -DTEST_XMM_API -o $@ $< $(LIBXMM_CORE_A) $(LIBS)

$(API_OUT)/api_invalid_free_xmm: $(API_DIR)/invalid_free.c $(API_HEADERS) $(LIBXMM_CORE_A)
	@mkdir -p $(dir $@)
	$(CC) $(API_CFLAGS) -DTEST_XMM_API -o $@ $< $(LIBXMM_CORE_A) $(LIBS)

$(API_EARLY_LIB): $(API_DIR)/early_preload.c $(API_HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(API_CFLAGS) -fPIC -shared -o $@ $<

$(API_EARLY): $(API_DIR)/early.c $(API_HEADERS) $(LIBXMM_SO) | $(API_EARLY_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(API_CFLAGS) -o $@ $< $(API_LINK_SO)

$(API_CXX_SO): $(API_DIR)/cxx_new_delete.cc $(API_HEADERS) $(LIBXMM_SO)
	@mkdir -p $(dir $@)
	$(CXX) $(API_CXXFLAGS) -o $@ $< $(API_LINK_SO)

$(API_CXX_PLAIN): $(API_DIR)/cxx_new_delete.cc $(API_HEADERS)
	@mkdir -p $(dir $@)
	$(CXX) $(API_CXXFLAGS) -o $@ $<

# ---- ThreadSanitizer: the xmm_* threads test on a TSan build of the core ----
API_TSAN_OBJECTS = $(CORE_SOURCES:%.c=$(BUILD)/tsan/api-obj/%.o) \
                   $(CORE_ASM:%.S=$(BUILD)/tsan/api-obj/%.o)

$(BUILD)/tsan/api-obj/%.o: %.c $(HEADERS) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_XMM) $(XMM_CFLAGS) -fsanitize=thread -DCK_USE_CC_BUILTINS=0 -c $< -o $@

$(BUILD)/tsan/api-obj/%.o: %.S Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_XMM) -fPIC -c $< -o $@

# Shorter phases under TSan, which is 5-15 times slower.
$(API_TSAN): $(API_DIR)/threads.c $(API_HEADERS) $(API_TSAN_OBJECTS)
	@mkdir -p $(dir $@)
	$(CC) $(API_CFLAGS) -fsanitize=thread -DTEST_XMM_API -DTEST_PHASE_SECONDS=2 \
	    -o $@ $< $(API_TSAN_OBJECTS) $(LIBS)

# ---- conveniences ---------------------------------------------------------
.PHONY: test-api api-system
test-api: lib $(API_TEST_PROGRAMS) $(API_CXX_PLAIN) $(API_EARLY_LIB)
	@tools/run-tests $(API_TEST_PROGRAMS) $(API_SCRIPTS)

API_SYSTEM_PROGRAMS = $(API_MALLOC_TESTS:%=$(BUILD)/tests-system/api_%)
api-system: $(API_SYSTEM_PROGRAMS)

$(API_SYSTEM_PROGRAMS): $(BUILD)/tests-system/api_%: $(API_DIR)/%.c $(API_DIR)/system_stub.c \
                        $(API_HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(API_CFLAGS) -o $@ $< $(API_DIR)/system_stub.c

# ---- nothrow new under a throwing new_handler; dlclose of libxmm.so --------
# tests/override/cxx_nothrow.cc is built twice: linked with libxmm.so, and plain
# ($(BUILD)/tests/cxx_nothrow), which runs itself again with
# LD_PRELOAD=libxmm.so. tests/override/dlclose.c is not linked with XMM: it loads
# libxmm.so with dlopen, uses it and unloads it.
API_CXX_NOTHROW = $(API_OUT)/api_cxx_nothrow $(API_OUT)/cxx_nothrow
API_DLCLOSE = $(API_OUT)/api_dlclose

API_TEST_PROGRAMS += $(API_CXX_NOTHROW) $(API_DLCLOSE)
TEST_PROGRAMS += $(API_CXX_NOTHROW) $(API_DLCLOSE)
test-api: $(API_CXX_NOTHROW) $(API_DLCLOSE)

$(API_OUT)/api_cxx_nothrow: $(API_DIR)/cxx_nothrow.cc $(LIBXMM_SO)
	@mkdir -p $(dir $@)
	$(CXX) $(API_CXXFLAGS) -o $@ $< $(API_LINK_SO)

$(API_OUT)/cxx_nothrow: $(API_DIR)/cxx_nothrow.cc | $(LIBXMM_SO)
	@mkdir -p $(dir $@)
	$(CXX) $(API_CXXFLAGS) -o $@ $< -ldl

$(API_DLCLOSE): $(API_DIR)/dlclose.c $(API_HEADERS) | $(LIBXMM_SO)
	@mkdir -p $(dir $@)
	$(CC) $(API_CFLAGS) -o $@ $< -ldl

# ---- a C program that dlopens a C++ plugin: new's failures --------------------
# tests/override/cxx_plugin.c (not linked with XMM) runs itself preloaded and
# dlopens libxmm-test-cxx-plugin.so (tests/override/cxx_plugin_lib.cc).
API_CXX_PLUGIN = $(API_OUT)/cxx_plugin
API_CXX_PLUGIN_LIB = $(API_OUT)/libxmm-test-cxx-plugin.so
TEST_PROGRAMS += $(API_CXX_PLUGIN)
test-build: $(API_CXX_PLUGIN_LIB)

$(API_CXX_PLUGIN_LIB): $(API_DIR)/cxx_plugin_lib.cc
	@mkdir -p $(dir $@)
	$(CXX) $(API_CXXFLAGS) -fPIC -shared -o $@ $<

$(API_CXX_PLUGIN): $(API_DIR)/cxx_plugin.c $(API_HEADERS) | $(API_CXX_PLUGIN_LIB) $(LIBXMM_SO)
	@mkdir -p $(dir $@)
	$(CC) $(API_CFLAGS) -o $@ $< -ldl

# ---- RTLD_DEEPBIND: XMM as a second allocator in a glibc process -----------
# tests/override/deepbind.c (not linked with XMM) dlopens libxmm-test-deepbind.so,
# which is linked against libxmm.so and libnuma.
API_DEEPBIND = $(API_OUT)/deepbind
API_DEEPBIND_LIB = $(API_OUT)/libxmm-test-deepbind.so
TEST_PROGRAMS += $(API_DEEPBIND)
test-build: $(API_DEEPBIND_LIB)

$(API_DEEPBIND_LIB): $(API_DIR)/deepbind_lib.c $(API_HEADERS) $(LIBXMM_SO)
	@mkdir -p $(dir $@)
	$(CC) $(API_CFLAGS) -fPIC -shared -o $@ $< -L$(BUILD) -lxmm -lnuma \
	    -Wl,-rpath,$(abspath $(BUILD))

$(API_DEEPBIND): $(API_DIR)/deepbind.c $(API_HEADERS) | $(API_DEEPBIND_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(API_CFLAGS) -o $@ $<

# ---- heap misuse: double, invalid and wrongly sized frees, overflows -------
# tests/override/heap_misuse.c (issue 15) runs each case in a child; the C++
# cases run in api_heap_misuse_cxx (tests/override/heap_misuse_cxx.cc), which it
# finds next to itself. `api_heap_misuse PATTERN...` runs some cases only;
# `api_heap_misuse --list` lists them with what each must do. The static
# flavour (libxmm.a, its own C++ helper) runs each case once, per-CPU and
# default mode only: it checks the override linked into the executable,
# the shared flavour checks everything else (about 20 s on 2 idle cores).
API_MISUSE = $(API_OUT)/api_heap_misuse
API_MISUSE_CXX = $(API_OUT)/api_heap_misuse_cxx
API_MISUSE_STATIC = $(API_OUT)/api_heap_misuse_static
API_MISUSE_CXX_STATIC = $(API_OUT)/api_heap_misuse_cxx_static

API_TEST_PROGRAMS += $(API_MISUSE) $(API_MISUSE_STATIC)
TEST_PROGRAMS += $(API_MISUSE) $(API_MISUSE_STATIC)
test-build: $(API_MISUSE_CXX) $(API_MISUSE_CXX_STATIC)
test-api: $(API_MISUSE) $(API_MISUSE_CXX) $(API_MISUSE_STATIC) $(API_MISUSE_CXX_STATIC)

$(API_MISUSE): $(API_DIR)/heap_misuse.c $(API_HEADERS) $(LIBXMM_SO) | $(API_MISUSE_CXX)
	@mkdir -p $(dir $@)
	$(CC) $(API_CFLAGS) -o $@ $< $(API_LINK_SO)

$(API_MISUSE_CXX): $(API_DIR)/heap_misuse_cxx.cc $(API_HEADERS) $(LIBXMM_SO)
	@mkdir -p $(dir $@)
	$(CXX) $(API_CXXFLAGS) -I$(API_DIR) -o $@ $< $(API_LINK_SO)

$(API_MISUSE_STATIC): $(API_DIR)/heap_misuse.c $(API_HEADERS) $(LIBXMM_A) | $(API_MISUSE_CXX_STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(API_CFLAGS) -DMISUSE_QUICK -DMISUSE_HELPER='"api_heap_misuse_cxx_static"' \
	    -o $@ $< $(LIBXMM_A) $(LIBS)

$(API_MISUSE_CXX_STATIC): $(API_DIR)/heap_misuse_cxx.cc $(API_HEADERS) $(LIBXMM_A)
	@mkdir -p $(dir $@)
	$(CXX) $(API_CXXFLAGS) -I$(API_DIR) -o $@ $< $(LIBXMM_A) $(LIBS)
