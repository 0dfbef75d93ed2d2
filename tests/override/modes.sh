#!/bin/sh
# The malloc API tests again under XMM's other modes (the XMM_* variables of
# src/config.c), each chosen for what it could break:
#   XMM_RSEQ=0                       per-thread caches instead of per-CPU:
#                                    threads, thread exit (tests/mem/front_end.sh
#                                    covers the front end itself)
#   XMM_PURGE=free XMM_DECAY_MS=0    lazy purging (MADV_FREE keeps old
#                                    contents) at once on every free: calloc
#                                    must still zero, realloc must still copy
#   XMM_BACKGROUND=1 XMM_DECAY_MS=5  a background purging thread, across
#                                    fork and under thread churn
# XMM_STRICT=1 makes a variable XMM does not accept fatal, so a renamed
# option cannot silently turn a mode into the default.
build=${XMMTEST_BUILD:-$(cd "$(dirname "$0")/../.." && pwd)/build}
failed=0
runs=0
run() { # label, then VAR=value... and the test binary
    label=$1
    shift
    runs=$((runs + 1))
    started=$(date +%s)
    output=$(env -u XMM_TEST_TIMEOUT XMM_STRICT=1 TEST_PHASE_SECONDS=1 TEST_FORK_SECONDS=3 "$@" 2>&1)
    status=$?
    if [ $status -eq 0 ]; then
        echo "ok   $label: $(echo "$output" | tail -n 1) ($(( $(date +%s) - started )) s)"
    else
        failed=$((failed + 1))
        echo "FAIL $label (exit $status):"
        echo "$output" | grep -v "^ok " | tail -n 25 | sed 's/^/    /'
    fi
}
for test in api_threads api_thread_exit api_thread_exit_late; do
    run "per-thread caches: $test" XMM_RSEQ=0 "$build/tests/$test"
done
# The mode took effect: thread_exit names the front end in its output.
if echo "$output" | grep -q "front end per-thread"; then
    echo "ok   XMM_RSEQ=0 gives the per-thread front end"
else
    failed=$((failed + 1))
    echo "FAIL XMM_RSEQ=0 did not give the per-thread front end: $(echo "$output" | grep "front end")"
fi
run "lazy purge at once: api_malloc_sizes, calloc part" XMM_PURGE=free XMM_DECAY_MS=0 \
    TEST_ONLY=calloc "$build/tests/api_malloc_sizes"
run "lazy purge at once: api_malloc_realloc" XMM_PURGE=free XMM_DECAY_MS=0 \
    "$build/tests/api_malloc_realloc"
for test in api_fork api_threads api_thread_exit; do
    run "background purging: $test" XMM_BACKGROUND=1 XMM_DECAY_MS=5 "$build/tests/$test"
done
# The deferred double-free check (XMM_FREE_CHECK=deferred): a free's
# check waits for its CPU's next free (src/global/free.h).
for test in api_threads api_malloc_realloc api_malloc_misc api_invalid_free api_fork api_xmm; do
    run "deferred free check: $test" XMM_FREE_CHECK=deferred "$build/tests/$test"
done
echo "modes.sh: $runs runs, $failed failed"
[ $failed -eq 0 ]
