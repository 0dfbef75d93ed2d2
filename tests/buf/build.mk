# tests/buf/build.mk - tests of the typed helpers (xmm.h) and the pooled
# buffers (xmm_buf.h). Included from examples/build.mk; the guard makes a
# second inclusion (from the top Makefile) harmless.
ifndef XMM_BUF_TESTS_INCLUDED
XMM_BUF_TESTS_INCLUDED := 1

BUF_TESTS = slice buf buf_config buf_threads
BUF_TEST_PROGRAMS = $(BUF_TESTS:%=$(BUILD)/tests/buf/test_%)
# -Isrc -Iplatform: test_buf checks node placement with src/numa.h.
BUF_TEST_CFLAGS = -O2 -g -std=gnu11 -D_GNU_SOURCE -mcx16 -pthread -Iinclude -Iplatform -Iplatform/$(ARCH) -Isrc \
                  -Itests -Itests/buf $(WARNINGS)
BUF_TEST_HEADERS = tests/check.h include/xmm.h include/xmm_buf.h

$(BUF_TEST_PROGRAMS): $(BUILD)/tests/buf/test_%: tests/buf/test_%.c $(BUF_TEST_HEADERS) \
                      $(LIBXMM_CORE_A)
	@mkdir -p $(dir $@)
	$(CC) $(BUF_TEST_CFLAGS) -o $@ $< $(LIBXMM_CORE_A) $(LIBS)

TEST_PROGRAMS += $(BUF_TEST_PROGRAMS)

# The multithreaded pool test under ThreadSanitizer, with a shorter run
# (TSan is 5-15x slower), on the TSan objects of the core that tests/override/build.mk
# builds (with -DCK_USE_CC_BUILTINS=0; $(TSAN_CORE_A) of tests/build.mk
# fails its own test_central_stress). The test re-executes itself with
# XMM_RSEQ=0: see the comment in its main().
ifneq ($(API_TSAN_OBJECTS),)
BUF_TSAN = $(BUILD)/tsan/buf_threads
$(BUF_TSAN): tests/buf/test_buf_threads.c $(BUF_TEST_HEADERS) $(API_TSAN_OBJECTS)
	@mkdir -p $(dir $@)
	$(CC) $(BUF_TEST_CFLAGS) -fsanitize=thread -DTEST_SECONDS=1 -o $@ $< \
	    $(API_TSAN_OBJECTS) $(LIBS)

TSAN_PROGRAMS += $(BUF_TSAN)
endif

.PHONY: test-buf
test-buf: lib $(BUF_TEST_PROGRAMS) $(EXAMPLE_PROGRAMS)
	@tools/run-tests $(BUF_TEST_PROGRAMS) $(EXAMPLE_PROGRAMS)

endif
