# bench/build.mk - benchmarks of XMM against glibc, jemalloc, tcmalloc and
# mimalloc (included by the top-level Makefile).
#
#   make bench            install the peers, build, run everything (about
#                         an hour, 30 minutes of it the "cost" group), write
#                         docs/benchmarks.md and docs/img/
#   make bench QUICK=1    the same in about 6 minutes: fewer sizes, 1 repetition
#   make bench-costs      only the "cost" group (realloc growth, idle return,
#                         size mix; issue 16), saved to bench/results/costs/,
#                         then the doc is rewritten (about 30 minutes)
#   make bench-report     regenerate the doc and plots from bench/results/
#   make bench-micro      microbenchmarks only, glibc vs XMM, printed side by side
#   make bench-profile    microbenchmarks on XMM, XMM_PROFILE unset vs 1 (the
#                         heap profiler's cost), runs alternating (REPS=N)
#
# Knobs: REPS=N (repetitions, default 3), HEADLINE_REPS=N (repetitions of
# the workloads and programs, default 7), BENCH_ONLY=larson,micro,...
# and BENCH_ALLOCATORS=glibc,xmm,... (a partial run writes to build/bench/
# instead of bench/results/, so it never replaces the committed data).

BENCH_BUILD = $(BUILD)/bench
BENCH_PYTHON = python3
BENCH_DEB_PACKAGES = gcc g++ make python3 libjemalloc2 libtcmalloc-minimal4 \
                     libmimalloc2.0 gnuplot-nox libbenchmark-dev memcached valgrind \
                     libmemcached-tools sqlite3
BENCH_CFLAGS = -O2 -g -std=gnu11 -Wall -Wextra -pthread
BENCH_CXXFLAGS = -O2 -g -std=c++17 -Wall -Wextra -pthread

# Each workload is one C file: bench/workloads/NAME.c -> build/bench/workloads/NAME.
BENCH_WORKLOADS = larson xmalloc cache-scratch cache-thrash churn large frag peak-idle \
                  realloc-growth idle-return size-mix size-drift hit-loop startup-rss
BENCH_WORKLOAD_BINS = $(BENCH_WORKLOADS:%=$(BENCH_BUILD)/workloads/%)
BENCH_MICRO_BIN = $(BENCH_BUILD)/micro/micro
BENCH_SQL = $(BENCH_BUILD)/sqlite/workload-50000.sql $(BENCH_BUILD)/sqlite/workload-200000.sql
BENCH_WORKLOAD_HEADERS = $(wildcard bench/workloads/*.h)

BENCH_QUICK_FLAG = $(if $(filter 1 yes true,$(QUICK)),--quick)
BENCH_RUN_FLAGS = $(BENCH_QUICK_FLAG) $(if $(REPS),--reps $(REPS)) \
                  $(if $(HEADLINE_REPS),--headline-reps $(HEADLINE_REPS)) \
                  $(if $(BENCH_ONLY),--only $(BENCH_ONLY)) \
                  $(if $(BENCH_ALLOCATORS),--allocators $(BENCH_ALLOCATORS)) \
                  --bench-build $(BENCH_BUILD) --xmm $(LIBXMM_SO)

.PHONY: bench bench-deps bench-build bench-lib bench-run bench-report bench-micro bench-costs \
        bench-profile

bench: bench-deps
	@$(MAKE) --no-print-directory bench-lib bench-build
	@$(MAKE) --no-print-directory bench-run bench-report

bench-deps:
	@tools/install-deps $(BENCH_DEB_PACKAGES)

# XMM is benchmarked when it builds; when it does not, the peers still run
# and the report says that XMM is missing (it is never dropped silently).
bench-lib:
	@$(MAKE) --no-print-directory lib || \
	    echo "bench: 'make lib' failed: XMM is reported as missing unless $(LIBXMM_SO) exists"

bench-build: $(BENCH_WORKLOAD_BINS) $(BENCH_MICRO_BIN) $(BENCH_SQL)

$(BENCH_BUILD)/workloads/%: bench/workloads/%.c $(BENCH_WORKLOAD_HEADERS) bench/build.mk
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) $< -o $@ -ldl

$(BENCH_MICRO_BIN): bench/micro/micro.cc bench/build.mk
	@mkdir -p $(dir $@)
	$(CXX) $(BENCH_CXXFLAGS) $< -o $@ -lbenchmark -ldl

$(BENCH_BUILD)/sqlite/workload-%.sql: bench/sqlgen.py
	@mkdir -p $(dir $@)
	$(BENCH_PYTHON) bench/sqlgen.py $* $@

bench-run:
	$(BENCH_PYTHON) bench/run.py $(BENCH_RUN_FLAGS)

# The cost group alone, into its own committed result set: the report takes
# that section from whichever of it and the full run is newer (the group
# measured again after a change to what it covers).
bench-costs: bench-deps
	@$(MAKE) --no-print-directory bench-lib $(BENCH_WORKLOAD_BINS)
	$(BENCH_PYTHON) bench/run.py --only cost $(if $(REPS),--reps $(REPS)) \
	    $(if $(BENCH_ALLOCATORS),--allocators $(BENCH_ALLOCATORS)) \
	    --bench-build $(BENCH_BUILD) --xmm $(LIBXMM_SO) --results bench/results/costs
	@$(MAKE) --no-print-directory bench-report

bench-report:
	@tools/install-deps gnuplot-nox
	$(BENCH_PYTHON) bench/report.py --results bench/results --doc docs/benchmarks.md \
	    --img docs/img

bench-micro: bench-deps
	@$(MAKE) --no-print-directory bench-lib $(BENCH_MICRO_BIN) \
	    $(BENCH_BUILD)/workloads/larson
	$(BENCH_PYTHON) bench/run.py --quick --only micro --allocators glibc,xmm \
	    --bench-build $(BENCH_BUILD) --xmm $(LIBXMM_SO) --results $(BENCH_BUILD)/results-micro
	$(BENCH_PYTHON) bench/report.py --text $(BENCH_BUILD)/results-micro

bench-profile: bench-deps
	@$(MAKE) --no-print-directory lib $(BENCH_MICRO_BIN)
	$(BENCH_PYTHON) bench/profile_overhead.py --micro $(BENCH_MICRO_BIN) --xmm $(LIBXMM_SO) \
	    $(BENCH_QUICK_FLAG) $(if $(REPS),--reps $(REPS))
