#!/bin/sh
# The per-CPU front end under migration, oversubscription and a signal
# storm, on each of the rseq registration paths:
#   glibc's area (default), XMM's own area (glibc told not to register, and
#   XMM_RSEQ=own), none because glibc did not register (XMM_RSEQ=1 then
#   leaves rseq to the program: per-thread caches), and none (XMM_RSEQ=0).
# Usage: tests/mem/front_end.sh [BUILD_DIR] [SECONDS]
build=${1:-build}
seconds=${2:-2}
test=$build/tests/test_front_end
failed=0
run() {
    label=$1; expect=$2; shift 2
    for mode in migrate preempt signals; do
        if env "$@" "$test" "$mode" "$seconds" "$expect"; then
            echo "ok: $label $mode"
        else
            echo "FAILED: $label $mode"; failed=1
        fi
    done
}
run "glibc rseq area" per-cpu RSEQ_PATH=glibc
run "XMM's own rseq area" per-cpu GLIBC_TUNABLES=glibc.pthread.rseq=0 XMM_RSEQ=own
run "rseq left to the program" per-thread GLIBC_TUNABLES=glibc.pthread.rseq=0
run "no rseq (XMM_RSEQ=0)" per-thread XMM_RSEQ=0
exit $failed
