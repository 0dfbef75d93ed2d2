# tests/numa.mk - NUMA placement tests (tests/numa). Included from
# tests/build.mk.
#
#   $(BUILD)/tests/test_numa   one mode per run (tests/numa/test_numa.c),
#                              linked with libxmm.so: malloc IS XMM
#   $(BUILD)/tests/test_numa_loading
#                              a unit test (tests/build.mk) the VMs run too:
#                              XMM loads libnuma where there are nodes
#   tests/numa/run-numa-tests.sh
#                              the one-node-safe modes natively, then every
#                              mode in QEMU VMs with 2 and 4 nodes
#                              (../shared/tools/numa-vm); 77 if no VM
#   make test-numa             builds and runs just these, with all output
#
# test_numa is not in TEST_PROGRAMS: it needs a mode argument, and the
# runner passes none; the script is what `make test` runs.

NUMA_TEST = $(BUILD)/tests/test_numa
NUMA_SCRIPT = tests/numa/run-numa-tests.sh
NUMA_CFLAGS = -O2 -g -std=gnu11 -D_GNU_SOURCE -Iinclude -Itests -pthread -Wall -Wextra \
              -Wno-unused-parameter

$(NUMA_TEST): tests/numa/test_numa.c tests/node_calls.h include/xmm.h $(LIBXMM_SO)
	@mkdir -p $(dir $@)
	$(CC) $(NUMA_CFLAGS) -o $@ $< -L$(BUILD) -lxmm -Wl,-rpath,'$$ORIGIN/..' -lnuma

TEST_SCRIPTS += $(NUMA_SCRIPT)
test-build: $(NUMA_TEST)

# The script finds the build tree here (tests/override/build.mk exports the same).
export XMMTEST_BUILD := $(abspath $(BUILD))

# A skip (77: no VM on this machine) is not a make error.
.PHONY: test-numa
test-numa: lib $(NUMA_TEST) $(BUILD)/tests/test_numa_loading
	@sh $(NUMA_SCRIPT); status=$$?; [ $$status -eq 0 ] || [ $$status -eq 77 ]
