# XMM - build, test, run. GNU make only; no other build system.
#
#   make            build/libxmm.so and build/libxmm.a
#   make run        install what is missing, build, run the stress harness
#   make test       every test (ends with "N passed, N failed")
#   make tsan       the lock-free and API tests under ThreadSanitizer
#   make install PREFIX=/usr/local   (LIBDIR, BINDIR, MANDIR, DESTDIR too)
#   make man        the manual pages, in build/man/
#   make deb        Debian packages, in build/deb/
#   make clean
#
# Each area adds its own rules in a fragment: tests/build.mk,
# stress/build.mk, bench/build.mk, examples/build.mk, man/build.mk.

# The release (xmm.pc, debian/changelog) and the soname's number, which
# changes only when the ABI changes incompatibly.
XMM_VERSION   = 0.1.0
XMM_SOVERSION = 0

PREFIX     ?= /usr/local
LIBDIR     ?= $(PREFIX)/lib
BINDIR     ?= $(PREFIX)/bin
INCLUDEDIR ?= $(PREFIX)/include
MANDIR     ?= $(PREFIX)/share/man
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
# CPPFLAGS and LDFLAGS from the environment (dpkg-buildflags' hardening
# options when packaged) are added to the library's own.
XMM_CFLAGS = $(CFLAGS) -std=gnu11 -fPIC -fvisibility=hidden $(ARCH_FLAGS) \
             -fno-plt -ftls-model=initial-exec $(WARNINGS) -pthread
LIBS = -pthread
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

# build/libxmm.so is the library itself (what LD_PRELOAD names and tests
# load), with the soname libxmm.so.0 that programs linked with it record:
# build/libxmm.so.0 links to it. Installed, it is libxmm.so.0.1.0, with the
# links libxmm.so.0 (the soname) and libxmm.so (for -lxmm).
LIBXMM_SO = $(BUILD)/libxmm.so
LIBXMM_SONAME = libxmm.so.$(XMM_SOVERSION)
LIBXMM_A  = $(BUILD)/libxmm.a
# The xmm_* API without the malloc override: for the ThreadSanitizer build
# and for tests that compare XMM with the system allocator in one process.
LIBXMM_CORE_A = $(BUILD)/libxmm-core.a

.PHONY: all lib deps test test-build run tsan install clean check-deps
all: lib

lib: $(LIBXMM_SO) $(LIBXMM_A) $(LIBXMM_CORE_A)

$(BUILD)/obj/%.o: %.c $(HEADERS) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_XMM) $(CPPFLAGS) $(XMM_CFLAGS) -c $< -o $@

$(BUILD)/obj/%.o: %.S Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_XMM) -fPIC -c $< -o $@

$(BUILD)/obj/%.o: %.cc $(HEADERS) Makefile
	@mkdir -p $(dir $@)
	$(CXX) $(CPPFLAGS_XMM) $(CPPFLAGS) $(XMM_CXXFLAGS) -c $< -o $@

# -z nodelete: dlclose never unmaps libxmm.so. Once used, its code and data
# outlive any unload: threads' rseq areas point at its critical section
# descriptors (the kernel reads them at the next preemption), its pthread
# key destructors run at every later thread exit, blocks it handed out may
# still be freed. TCMalloc is never unloaded either, in practice.
$(LIBXMM_SO): $(CORE_OBJECTS) $(OVERRIDE_OBJECTS)
	$(CC) -shared -Wl,-soname,$(LIBXMM_SONAME) -Wl,-z,now -Wl,-z,nodelete -Wl,--no-undefined \
	    -Wl,--version-script=src/override/exports.map $(LDFLAGS) -o $@ $^ $(LIBS)
	ln -sf libxmm.so $(BUILD)/$(LIBXMM_SONAME)

$(LIBXMM_A): $(CORE_OBJECTS) $(OVERRIDE_OBJECTS)
	@rm -f $@
	ar rcs $@ $^

$(LIBXMM_CORE_A): $(CORE_OBJECTS)
	@rm -f $@
	ar rcs $@ $^

# ---- dependencies (Debian 12) -------------------------------------------
DEB_PACKAGES = gcc g++ make libnuma-dev liburcu-dev libck-dev libbenchmark-dev \
               numactl python3 sqlite3 git perl clang \
               dpkg-dev debhelper lintian groff-base google-perftools
deps:
	@tools/install-deps $(DEB_PACKAGES)
	@mkdir -p $(BUILD) && touch $(DEPS_STAMP)

# `make test` checks the packages once per build tree (and again when this
# file changes), not on every run: dpkg-query and apt are slow.
DEPS_STAMP = $(BUILD)/.deps-installed
$(DEPS_STAMP): Makefile
	@tools/install-deps $(DEB_PACKAGES)
	@mkdir -p $(BUILD) && touch $@

# (and what dpkg-buildpackage leaves in debian/ when run in the tree itself)
clean:
	rm -rf $(BUILD) debian/.debhelper debian/tmp debian/libxmm0 debian/libxmm-dev \
	    debian/xmm-tools debian/files debian/debhelper-build-stamp debian/*.substvars \
	    debian/*.debhelper.log debian/*.debhelper

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
-include man/build.mk

# ---- install -------------------------------------------------------------
# The library under its release name with the soname and -lxmm links, the
# headers, xmm.pc, xmm-stress, xmm-run and the manual pages.
install: lib $(XMM_STRESS) $(XMM_RUN) man
	install -d $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(BINDIR) \
	    $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man3
	install -m 644 $(LIBXMM_SO) $(DESTDIR)$(LIBDIR)/libxmm.so.$(XMM_VERSION)
	ln -sf libxmm.so.$(XMM_VERSION) $(DESTDIR)$(LIBDIR)/$(LIBXMM_SONAME)
	ln -sf $(LIBXMM_SONAME) $(DESTDIR)$(LIBDIR)/libxmm.so
	install -m 644 $(LIBXMM_A) $(DESTDIR)$(LIBDIR)/
	install -m 644 include/*.h $(DESTDIR)$(INCLUDEDIR)/
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(XMM_VERSION)|g' \
	    -e 's|@LIBDIR@|$(patsubst $(PREFIX)/%,$${prefix}/%,$(LIBDIR))|g' \
	    -e 's|@INCLUDEDIR@|$(patsubst $(PREFIX)/%,$${prefix}/%,$(INCLUDEDIR))|g' \
	    tools/xmm.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/xmm.pc
	install -m 755 $(XMM_STRESS) $(DESTDIR)$(BINDIR)/
	sed -e 's|@LIBDIR@|$(LIBDIR)|g' -e 's|@BINDIR@|$(BINDIR)|g' $(XMM_RUN) \
	    > $(DESTDIR)$(BINDIR)/xmm-run
	chmod 755 $(DESTDIR)$(BINDIR)/xmm-run
	install -m 644 $(MAN_PAGES_1:%=$(BUILD)/man/%) $(DESTDIR)$(MANDIR)/man1/
	install -m 644 $(MAN_PAGES_3:%=$(BUILD)/man/%) $(DESTDIR)$(MANDIR)/man3/

# ---- Debian packages -------------------------------------------------------
# libxmm0, libxmm-dev and xmm-tools (debian/), built by dpkg-buildpackage
# from a copy of the tree as it is now (tools/source-files) in
# $(DEB_DIR)/xmm-$(XMM_VERSION), so that the .debs, .changes and .buildinfo
# land in $(DEB_DIR) and the tree stays clean; then lintian, which must
# report no error. In an empty environment (but PATH, HOME and
# DEB_BUILD_OPTIONS): a BUILD=, CC= or CFLAGS= given to this make, which it
# exports, must not reach the package's own build (debian/rules), whose
# first step is `make clean`.
DEB_DIR = $(BUILD)/deb
DEB_TREE = $(DEB_DIR)/xmm-$(XMM_VERSION)
DEB_CHANGES = $(DEB_DIR)/xmm_$(XMM_VERSION)_amd64.changes
# (DEB_LINT=true: no lintian run, for tests/tools/package.sh, which runs its own)
DEB_LINT = lintian --fail-on error --info

.PHONY: deb
deb: deps
	@version=$$(dpkg-parsechangelog -S Version); [ "$$version" = $(XMM_VERSION) ] || \
	    { echo "debian/changelog is at $$version, XMM_VERSION at $(XMM_VERSION)"; exit 1; }
	rm -rf $(DEB_DIR)
	mkdir -p $(DEB_TREE)
	tools/source-files | tar --null -T - -cf - | tar -C $(DEB_TREE) -xf -
	cd $(DEB_TREE) && env -i PATH="$$PATH" HOME="$$HOME" DEB_BUILD_OPTIONS="$$DEB_BUILD_OPTIONS" \
	    dpkg-buildpackage -b -us -uc -Jauto
	$(DEB_LINT) $(DEB_CHANGES)
	@ls $(DEB_DIR)/*.deb

# Builds, lints, installs into a scratch root, uses and removes the packages.
TEST_SCRIPTS += tests/tools/package.sh

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
SERIAL_TESTS = test_decay test_purge_inside test_front_end front_end.sh stats.sh test_rseq_restart \
               test_central_stress test_large_cache_stress test_lock api_threads \
               api_threads_static api_threads_xmm api_fork_deadlock api_fork_deadlock_static \
               test_fork_release \
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
