# stress/build.mk - the xmm-stress harness, `make run`, `make soak`, and
# the harness's tests. Included by the top-level Makefile.
#
#   make run                 xmm vs glibc, --pattern all, ~10 s each, a table
#   make soak SECONDS=3600   server and churn on XMM for that long
#
# xmm-stress uses only the standard malloc API and is not linked with XMM:
# --alloc picks the allocator at run time through LD_PRELOAD.

XMM_STRESS = $(BUILD)/xmm-stress
STRESS_SOURCES = $(wildcard stress/*.c)
STRESS_HEADERS = $(wildcard stress/*.h) include/xmm.h
STRESS_OBJECTS = $(STRESS_SOURCES:stress/%.c=$(BUILD)/stress/%.o)
STRESS_CFLAGS = $(CFLAGS) -std=gnu11 -pthread -Wall -Wextra -Wshadow \
                -Wstrict-prototypes -Wmissing-prototypes
STRESS_CPPFLAGS = -Iinclude -D_GNU_SOURCE
# Where `make install` puts xmm-stress and libxmm.so.0, from which --alloc
# xmm finds the library: a header rewritten whenever BINDIR or LIBDIR
# differ from the last build's, so that preload.c is rebuilt.
STRESS_PATHS = $(BUILD)/stress/install_paths.h

# Length of `make run` per allocator, and of `make soak`.
RUN_SECONDS ?= 10
SECONDS ?= 3600
SOAK_FLAGS ?=

STRESS_TESTS = stress/tests/corrupt.sh stress/tests/bad-arguments.sh \
               stress/tests/json.sh stress/tests/patterns-glibc.sh \
               stress/tests/patterns-xmm.sh stress/tests/patterns-xmm-profile.sh
TEST_SCRIPTS += $(STRESS_TESTS)

.PHONY: soak stress
all: $(XMM_STRESS)
stress: $(XMM_STRESS)
# The test scripts run the binary: build it with the test programs.
test-build: $(XMM_STRESS)

$(BUILD)/stress/%.o: stress/%.c $(STRESS_HEADERS) stress/build.mk
	@mkdir -p $(dir $@)
	$(CC) $(STRESS_CPPFLAGS) $(CPPFLAGS) $(STRESS_CFLAGS) -c $< -o $@

$(BUILD)/stress/preload.o: $(STRESS_PATHS)
$(BUILD)/stress/preload.o: STRESS_CPPFLAGS += -include $(STRESS_PATHS)

.PHONY: stress-paths-check
$(STRESS_PATHS): stress-paths-check
	@mkdir -p $(dir $@)
	@printf '#define XMM_BINDIR "%s"\n#define XMM_LIBDIR "%s"\n' '$(BINDIR)' '$(LIBDIR)' >$@.new
	@if cmp -s $@.new $@; then rm $@.new; else mv $@.new $@; fi

$(XMM_STRESS): $(STRESS_OBJECTS)
	$(CC) $(STRESS_CFLAGS) $(LDFLAGS) -o $@ $^ -ldl -lm

run: deps lib $(XMM_STRESS)
	python3 stress/compare.py --stress $(XMM_STRESS) --seconds $(RUN_SECONDS)

soak: deps lib $(XMM_STRESS)
	$(XMM_STRESS) --alloc xmm --pattern server,churn --seconds $(SECONDS) $(SOAK_FLAGS)
