# tests/build.mk - every test `make test` runs, in folders that mirror the
# layers of src/ (src/README.md):
#
#   tests/platform, tests/ds, tests/backend, tests/mem, tests/global
#                       one module each: test_<name>.c, built as
#                       $(BUILD)/tests/test_<name>, against libxmm-core.a
#                       (the layer's functions called directly) or, for the
#                       front end and what sits above it, libxmm.so
#   tests/override      the malloc API and the C++ operators as programs
#                       see them (tests/override/build.mk)
#   tests/buf           the pooled buffers and slices (tests/buf/build.mk)
#   tests/programs      real programs under LD_PRELOAD
#   tests/numa          placement on emulated NUMA machines (tests/numa.mk)
#   tests/tools         checks of the tree itself (the layering)
#
# One harness for all: tests/check.h. `make test TESTS=page_heap,stats`
# builds and runs only those (see the Makefile).

UNIT_DIRS = tests/platform tests/ds tests/backend tests/mem tests/global
vpath test_%.c $(UNIT_DIRS)
UNIT_CFLAGS = -O2 -g -std=gnu11 -mcx16 -pthread -Wall -Wextra -Iinclude -Iplatform \
              -Iplatform/$(ARCH) -Isrc -Itests -D_GNU_SOURCE
# Against the core: a layer's own functions, no malloc override.
CORE_UNIT_TESTS = lock map_errno backtrace resident size_class free_object arena_map chunk_guard page_heap \
                  page_heap_residency large_cache large_cache_stress \
                  large_double_free central_stress own_batches batch_limit turn_due realloc_mapping tick_interval \
                  slab_setup_section
# Through malloc itself: the front end and the layers above it.
SO_UNIT_TESTS = front_end rseq_restart rseq_opt_levels decay stats profile background reclaim \
                remote_bin cpu_capacity thread_budget pending_race carver_runs starting_slots \
                slab_setup release_unfenced release_second_fence \
                fork_release numa_loading purge_inside

$(CORE_UNIT_TESTS:%=$(BUILD)/tests/test_%): $(BUILD)/tests/test_%: test_%.c $(LIBXMM_CORE_A) \
                                           tests/check.h tests/stats_snapshot.h \
                                           $(wildcard tests/mem/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(UNIT_CFLAGS) -o $@ $< $(LIBXMM_CORE_A) $(LIBS)

# The rseq sections at whatever -O and compiler built $(BUILD) (the CI
# matrix varies them): each links that build's libxmm.so.
$(SO_UNIT_TESTS:%=$(BUILD)/tests/test_%): $(BUILD)/tests/test_%: test_%.c $(LIBXMM_SO) \
                                         tests/check.h tests/stats_snapshot.h $(wildcard tests/mem/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(UNIT_CFLAGS) -o $@ $< -L$(BUILD) -lxmm -Wl,-rpath,'$$ORIGIN/..'

# The heap profile test names the functions of a dump's stacks with dladdr.
$(BUILD)/tests/test_profile: UNIT_CFLAGS += -rdynamic
# The page heap's residency test refuses it metadata on demand.
$(BUILD)/tests/test_page_heap_residency: UNIT_CFLAGS += -Wl,--wrap=xmm_metadata_alloc \
	-Wl,--wrap=xmm_metadata_reentered

TEST_PROGRAMS += $(CORE_UNIT_TESTS:%=$(BUILD)/tests/test_%) $(SO_UNIT_TESTS:%=$(BUILD)/tests/test_%)
TEST_SCRIPTS += tests/mem/front_end.sh tests/global/stats.sh tests/global/stats_file.sh \
                tests/global/profile.sh tests/global/profile_pprof.sh tests/tools/layers.sh

# ---- ThreadSanitizer: the allocator core built with -fsanitize=thread, and
# the lock-free tests linked against it (xmm_* API, no malloc override).
TSAN_FLAGS = -fsanitize=thread -O1 -g
TSAN_CORE_OBJECTS = $(CORE_SOURCES:%.c=$(BUILD)/tsan/obj/%.o)
TSAN_CORE_A = $(BUILD)/tsan/libxmm-core.a

$(BUILD)/tsan/obj/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_XMM) -std=gnu11 -fPIC -mcx16 -pthread $(WARNINGS) $(TSAN_FLAGS) -c $< -o $@

$(TSAN_CORE_A): $(TSAN_CORE_OBJECTS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/tsan/test_%: test_%.c $(TSAN_CORE_A)
	@mkdir -p $(dir $@)
	$(CC) $(UNIT_CFLAGS) $(TSAN_FLAGS) -o $@ $< $(TSAN_CORE_A) $(LIBS)

TSAN_PROGRAMS += $(BUILD)/tsan/test_central_stress $(BUILD)/tsan/test_large_cache_stress \
                 $(BUILD)/tsan/test_lock

-include tests/override/build.mk
-include tests/numa.mk
