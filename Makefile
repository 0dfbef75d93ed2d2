# XMM - build, test, run. GNU make only; no other build system.
#
#   make            build/libxmm.so and build/libxmm.a
#   make run        install what is missing, build, run the stress harness
#   make test       every test (ends with "N passed, N failed")
#   make tsan       the lock-free and API tests under ThreadSanitizer
#   make install PREFIX=/usr/local
#   make clean
#
# Each area adds its own rules in a fragment: tests/build.mk,
# stress/build.mk, bench/build.mk, examples/build.mk.

PREFIX ?= /usr/local
BUILD  ?= build
CC     ?= cc
CXX    ?= c++

WARNINGS = -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wno-unused-parameter
# -mcx16: CK's generation-counted stack pop needs cmpxchg16b.
ARCH_FLAGS = -mcx16
# The architecture's part of platform/ (rseq critical sections, vfork).
ARCH ?= $(shell uname -m)
CPPFLAGS_XMM = -Iinclude -Iplatform -Iplatform/$(ARCH) -Isrc -D_GNU_SOURCE
CFLAGS ?= -O2 -g
XMM_CFLAGS = $(CFLAGS) -std=gnu11 -fPIC -fvisibility=hidden $(ARCH_FLAGS) \
             -fno-plt -ftls-model=initial-exec $(WARNINGS) -pthread
LIBS = -lnuma -pthread
# C++ sources: the same options but the C-only ones; exceptions, no RTTI.
XMM_CXXFLAGS = $(filter-out -std=% -Wstrict-prototypes -Wmissing-prototypes,$(XMM_CFLAGS)) \
               -std=gnu++17 -fexceptions -fno-rtti

# The allocator core: everything except the symbols that replace malloc.
# src/ is one folder per layer (src/README.md): base, ds, backend, mem,
# global, then override (the malloc symbols) and buf (pooled buffers).
LAYERS = base ds backend mem global
CORE_SOURCES = $(wildcard platform/*.c) $(wildcard platform/$(ARCH)/*.c) \
               $(foreach layer,$(LAYERS),$(wildcard src/$(layer)/*.c)) \
               src/override/api.c $(wildcard src/buf/*.c)
CORE_ASM     = $(filter-out %/override_vfork.S,$(wildcard platform/$(ARCH)/*.S))
# vfork() replaced along with malloc (see platform/x86_64/override_vfork.S).
OVERRIDE_ASM = $(wildcard platform/$(ARCH)/override_vfork.S)
# (plus one C++ file: the nothrow operators' call of the new-handler)
OVERRIDE_SOURCES = $(filter-out src/override/api.c,$(wildcard src/override/*.c)) \
                   $(wildcard src/override/*.cc)
HEADERS = $(wildcard include/*.h platform/*.h platform/$(ARCH)/*.h src/*/*.h)

CORE_OBJECTS = $(CORE_SOURCES:%.c=$(BUILD)/obj/%.o) $(CORE_ASM:%.S=$(BUILD)/obj/%.o)
OVERRIDE_OBJECTS = $(patsubst %.cc,$(BUILD)/obj/%.o,$(OVERRIDE_SOURCES:%.c=$(BUILD)/obj/%.o)) \
                   $(OVERRIDE_ASM:%.S=$(BUILD)/obj/%.o)

LIBXMM_SO = $(BUILD)/libxmm.so
LIBXMM_A  = $(BUILD)/libxmm.a
# The xmm_* API without the malloc override: for the ThreadSanitizer build
# and for tests that compare XMM with the system allocator in one process.
LIBXMM_CORE_A = $(BUILD)/libxmm-core.a

.PHONY: all lib deps test test-build run tsan install clean check-deps
all: lib

lib: $(LIBXMM_SO) $(LIBXMM_A) $(LIBXMM_CORE_A)

$(BUILD)/obj/%.o: %.c $(HEADERS) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_XMM) $(XMM_CFLAGS) -c $< -o $@

$(BUILD)/obj/%.o: %.S Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_XMM) -fPIC -c $< -o $@

$(BUILD)/obj/%.o: %.cc $(HEADERS) Makefile
	@mkdir -p $(dir $@)
	$(CXX) $(CPPFLAGS_XMM) $(XMM_CXXFLAGS) -c $< -o $@

# -z nodelete: dlclose never unmaps libxmm.so. Once used, its code and data
# outlive any unload: threads' rseq areas point at its critical section
# descriptors (the kernel reads them at the next preemption), its pthread
# key destructors run at every later thread exit, blocks it handed out may
# still be freed. TCMalloc is never unloaded either, in practice.
$(LIBXMM_SO): $(CORE_OBJECTS) $(OVERRIDE_OBJECTS)
	$(CC) -shared -Wl,-soname,libxmm.so -Wl,-z,now -Wl,-z,nodelete -Wl,--no-undefined \
	    -Wl,--version-script=src/override/exports.map -o $@ $^ $(LIBS)

$(LIBXMM_A): $(CORE_OBJECTS) $(OVERRIDE_OBJECTS)
	@rm -f $@
	ar rcs $@ $^

$(LIBXMM_CORE_A): $(CORE_OBJECTS)
	@rm -f $@
	ar rcs $@ $^

# ---- dependencies (Debian 12) -------------------------------------------
DEB_PACKAGES = gcc g++ make libnuma-dev liburcu-dev libck-dev libbenchmark-dev \
               numactl python3 sqlite3 git perl clang
deps:
	@tools/install-deps $(DEB_PACKAGES)
	@mkdir -p $(BUILD) && touch $(DEPS_STAMP)

# `make test` checks the packages once per build tree (and again when this
# file changes), not on every run: dpkg-query and apt are slow.
DEPS_STAMP = $(BUILD)/.deps-installed
$(DEPS_STAMP): Makefile
	@tools/install-deps $(DEB_PACKAGES)
	@mkdir -p $(BUILD) && touch $@

# ---- install -------------------------------------------------------------
install: lib
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include \
	    $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 755 $(LIBXMM_SO) $(DESTDIR)$(PREFIX)/lib/
	install -m 644 $(LIBXMM_A) $(DESTDIR)$(PREFIX)/lib/
	install -m 644 include/*.h $(DESTDIR)$(PREFIX)/include/
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|0.1.0|g' tools/xmm.pc.in \
	    > $(DESTDIR)$(PREFIX)/lib/pkgconfig/xmm.pc

clean:
	rm -rf $(BUILD)

# ---- areas ---------------------------------------------------------------
# Each fragment may add to TEST_PROGRAMS (binaries run by the test runner,
# exit 0 = pass, 77 = skipped) and TEST_SCRIPTS (shell scripts, same rule),
# and to TSAN_PROGRAMS.
TEST_PROGRAMS :=
TEST_SCRIPTS :=
TSAN_PROGRAMS :=
-include tests/build.mk
-include stress/build.mk
-include bench/build.mk
-include examples/build.mk
-include tests/matrix.mk

# ---- running tests -------------------------------------------------------
#   make test                     every test
#   make test TESTS=page_heap,stats   only those: a test's name is its file
#                                 name without test_/api_, .sh and the
#                                 _static/_xmm flavour (both flavours run)
# Builds with $(JOBS) jobs, and runs $(JOBS) tests at a time, except those
# in SERIAL_TESTS, which run alone afterwards: they measure time, memory or
# preemption, or load every core themselves.
JOBS ?= $(shell nproc 2>/dev/null || echo 1)
comma := ,
test_name = $(patsubst %_xmm,%,$(patsubst %_static,%,$(patsubst test_%,%,$(patsubst api_%,%,$(basename $(notdir $(1)))))))
ALL_TESTS = $(TEST_PROGRAMS) $(TEST_SCRIPTS)
SELECTED_TESTS = $(if $(TESTS),$(foreach test,$(ALL_TESTS),$(if $(filter $(subst $(comma), ,$(TESTS)),$(call test_name,$(test)) $(basename $(notdir $(test)))),$(test))),$(ALL_TESTS))
SERIAL_TESTS = test_decay test_front_end front_end.sh stats.sh test_rseq_restart \
               test_central_stress test_large_cache_stress test_lock api_threads \
               api_threads_static api_threads_xmm api_fork_deadlock api_fork_deadlock_static \
               run-numa-tests.sh modes.sh test_buf_threads \
               $(notdir $(STRESS_TESTS))

test: $(DEPS_STAMP)
	@$(if $(SELECTED_TESTS),,echo "no test named $(TESTS)"; exit 1)
	@$(MAKE) --no-print-directory -j$(JOBS) test-build
	@RUN_TESTS_JOBS=$(JOBS) RUN_TESTS_SERIAL="$(SERIAL_TESTS)" tools/run-tests $(SELECTED_TESTS)

test-build: lib $(TEST_PROGRAMS)

tsan: $(DEPS_STAMP)
	@$(MAKE) --no-print-directory tsan-build
	@TSAN_OPTIONS="suppressions=$(CURDIR)/tests/tsan.supp halt_on_error=1 exitcode=66" \
	    tools/run-tests $(TSAN_PROGRAMS)

tsan-build: $(TSAN_PROGRAMS)

# The C++ operators must let a new-handler's exception unwind through them.
$(BUILD)/obj/src/override/override_cxx.o: XMM_CFLAGS += -fexceptions

# The size class table of docs/design.md, printed from the allocator itself.
size-class-table: $(LIBXMM_CORE_A)
	@$(CC) $(CPPFLAGS_XMM) -O1 -mcx16 -o $(BUILD)/size-class-table tools/size_class_table.c \
	    $(LIBXMM_CORE_A) $(LIBS) && $(BUILD)/size-class-table
