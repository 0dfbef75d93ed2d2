# tests/build.mk - the layer tests (tests/unit), the API and program tests
# (tests/api.mk), and the ThreadSanitizer build.

UNIT_TESTS = size_class arena_map page_heap central_stress large_cache large_cache_stress lock \
             large_double_free
UNIT_CFLAGS = -O2 -g -std=gnu11 -mcx16 -pthread -Wall -Wextra -Iinclude -Iplatform -Isrc \
              -Itests/unit -D_GNU_SOURCE

$(BUILD)/tests/test_%: tests/unit/test_%.c $(LIBXMM_CORE_A) tests/unit/check.h
	@mkdir -p $(dir $@)
	$(CC) $(UNIT_CFLAGS) -o $@ $< $(LIBXMM_CORE_A) $(LIBS)

TEST_PROGRAMS += $(UNIT_TESTS:%=$(BUILD)/tests/test_%)

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

$(BUILD)/tsan/test_%: tests/unit/test_%.c $(TSAN_CORE_A)
	@mkdir -p $(dir $@)
	$(CC) $(UNIT_CFLAGS) $(TSAN_FLAGS) -o $@ $< $(TSAN_CORE_A) $(LIBS)

TSAN_PROGRAMS += $(BUILD)/tsan/test_central_stress $(BUILD)/tsan/test_large_cache_stress \
                 $(BUILD)/tsan/test_lock

-include tests/api.mk
-include tests/numa.mk

# Front-end tests run through malloc itself: linked against libxmm.so.
$(BUILD)/tests/test_front_end: tests/unit/test_front_end.c $(LIBXMM_SO) tests/unit/check.h
	@mkdir -p $(dir $@)
	$(CC) $(UNIT_CFLAGS) -o $@ $< -L$(BUILD) -lxmm -Wl,-rpath,'$$ORIGIN/..'

TEST_PROGRAMS += $(BUILD)/tests/test_front_end
TEST_SCRIPTS += tests/front_end.sh

$(BUILD)/tests/test_decay: tests/unit/test_decay.c $(LIBXMM_SO) tests/unit/check.h
	@mkdir -p $(dir $@)
	$(CC) $(UNIT_CFLAGS) -o $@ $< -L$(BUILD) -lxmm -Wl,-rpath,'$$ORIGIN/..'

TEST_PROGRAMS += $(BUILD)/tests/test_decay

$(BUILD)/tests/test_stats: tests/unit/test_stats.c $(LIBXMM_SO) tests/unit/check.h
	@mkdir -p $(dir $@)
	$(CC) $(UNIT_CFLAGS) -o $@ $< -L$(BUILD) -lxmm -Wl,-rpath,'$$ORIGIN/..'

TEST_PROGRAMS += $(BUILD)/tests/test_stats
TEST_SCRIPTS += tests/stats.sh tests/stats_file.sh

$(BUILD)/tests/test_rseq_restart: tests/unit/test_rseq_restart.c $(LIBXMM_SO) tests/unit/check.h
	@mkdir -p $(dir $@)
	$(CC) $(UNIT_CFLAGS) -o $@ $< -L$(BUILD) -lxmm -Wl,-rpath,'$$ORIGIN/..'

TEST_PROGRAMS += $(BUILD)/tests/test_rseq_restart

# The rseq sections at whatever -O and compiler built $(BUILD) (the CI
# matrix varies them): linked against that build's libxmm.so.
$(BUILD)/tests/test_rseq_opt_levels: tests/unit/test_rseq_opt_levels.c $(LIBXMM_SO) tests/unit/check.h
	@mkdir -p $(dir $@)
	$(CC) $(UNIT_CFLAGS) -o $@ $< -L$(BUILD) -lxmm -Wl,-rpath,'$$ORIGIN/..'

TEST_PROGRAMS += $(BUILD)/tests/test_rseq_opt_levels
