# examples/build.mk - programs on the xmm_* API, and (tests/buf/build.mk,
# included at the end) the tests of the typed helpers and pooled buffers.
#
#   make examples     builds build/examples/*
#   make test         runs them with every other test
#
# Each example is linked with libxmm-core.a (the xmm_* API without the
# malloc override), checks itself against a plain reference and exits
# non-zero on any mismatch, so it is also a test.

EXAMPLES = list hash_table avl_tree echo_server
EXAMPLE_PROGRAMS = $(EXAMPLES:%=$(BUILD)/examples/%)
EXAMPLE_CFLAGS = -O2 -g -std=gnu11 -D_GNU_SOURCE -Iinclude -pthread $(WARNINGS)
EXAMPLE_HEADERS = include/xmm.h include/xmm_buf.h $(wildcard examples/*.h)

.PHONY: examples
examples: $(EXAMPLE_PROGRAMS)

$(EXAMPLE_PROGRAMS): $(BUILD)/examples/%: examples/%.c $(EXAMPLE_HEADERS) $(LIBXMM_CORE_A)
	@mkdir -p $(dir $@)
	$(CC) $(EXAMPLE_CFLAGS) -o $@ $< $(LIBXMM_CORE_A) $(LIBS)

TEST_PROGRAMS += $(EXAMPLE_PROGRAMS)

-include tests/buf/build.mk
