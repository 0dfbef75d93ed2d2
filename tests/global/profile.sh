#!/bin/sh
# The heap profiler's files and reports, as a program run with XMM_* sees
# them (test_profile, linked with libxmm.so):
#   - XMM_PROFILE_FILE: %p, %e and %% expanded; the default, xmm.%p.heap in
#     the working directory; a bad pattern reported;
#   - XMM_PROFILE_SIGNAL: the signal writes the profile;
#   - XMM_LEAKS=1: the leak report names the leaking function (through
#     addr2line on the FILE+ADDRESS it prints) with plausible bytes, at the
#     default interval and at a finer one.
# The estimates themselves are test_profile's; pprof's reading of the
# files is profile_pprof.sh's.
build=${XMMTEST_BUILD:-build}
case $build in /*) ;; *) build=$(pwd)/$build ;; esac
test=$build/tests/test_profile
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
failed=0
fail() { echo "FAILED: $*"; failed=1; }
[ -x "$test" ] || { echo "FAILED: build $test first (make test-build)"; exit 1; }
unset XMM_PROFILE XMM_PROFILE_FILE XMM_PROFILE_SIGNAL XMM_LEAKS

# a heap profile file: its header and its memory map
is_profile() {
    head -1 "$1" | grep -q '^heap profile: [0-9]*: [0-9]* \[ *[0-9]*: [0-9]*\] @ heapprofile$' &&
        grep -qx 'MAPPED_LIBRARIES:' "$1"
}

# ---- XMM_PROFILE_FILE patterns ---------------------------------------------------
mkdir "$work/p"
XMM_PROFILE=64k XMM_PROFILE_FILE="$work/p/prof.%p.%e.%%.heap" "$test" exit & pid=$!
wait $pid
if [ -f "$work/p/prof.$pid.test_profile.%.heap" ]; then
    is_profile "$work/p/prof.$pid.test_profile.%.heap" || fail "prof.$pid.test_profile.%.heap is not a heap profile"
    echo "%p.%e.%%: prof.$pid.test_profile.%.heap written at exit"
else
    fail "XMM_PROFILE_FILE=prof.%p.%e.%%.heap: expected prof.$pid.test_profile.%.heap, got: $(ls "$work/p")"
fi

# The default: xmm.PID.heap in the working directory.
mkdir "$work/d"
(cd "$work/d" && XMM_PROFILE=1 exec "$test" exit) & pid=$!
wait $pid
[ -f "$work/d/xmm.$pid.heap" ] && is_profile "$work/d/xmm.$pid.heap" ||
    fail "XMM_PROFILE=1: expected xmm.$pid.heap in the working directory, got: $(ls "$work/d")"

# A bad pattern, a bad interval: one line each, no file.
(cd "$work/d" && XMM_PROFILE=1 XMM_PROFILE_FILE="$work/d/%q" "$test" exit 2>"$work/err.txt")
grep -q "XMM_PROFILE_FILE='$work/d/%q': expected a file path" "$work/err.txt" ||
    fail "XMM_PROFILE_FILE with %q must be reported: $(head -c 300 "$work/err.txt")"
[ ! -e "$work/d/%q" ] || fail "a bad XMM_PROFILE_FILE must not be created"
XMM_PROFILE=12q "$test" exit 2>"$work/err.txt"
grep -q "XMM_PROFILE='12q': expected" "$work/err.txt" || fail "XMM_PROFILE=12q must be reported: $(cat "$work/err.txt")"
# A file that cannot be written: reported with its name.
XMM_PROFILE=1 XMM_PROFILE_FILE="$work/none/x.heap" "$test" exit 2>"$work/err.txt"
grep -q "xmm: cannot write the heap profile to $work/none/x.heap (ENOENT: No such file or directory)" "$work/err.txt" ||
    fail "an unwritable XMM_PROFILE_FILE must be reported: $(cat "$work/err.txt")"

# ---- XMM_PROFILE_SIGNAL ------------------------------------------------------------
XMM_PROFILE_SIGNAL=SIGUSR1 XMM_PROFILE_FILE="$work/signal.heap" "$test" signal "$work/signal.heap" \
    >"$work/out.txt" 2>&1 || fail "XMM_PROFILE_SIGNAL: $(cat "$work/out.txt")"
is_profile "$work/signal.heap" && cat "$work/out.txt" || fail "the signal's dump is not a heap profile"
# In a fork child, whose dumper thread starts from its allocations.
XMM_PROFILE_SIGNAL=SIGUSR1 XMM_PROFILE_FILE="$work/child.heap" "$test" signal "$work/child.heap" \
    fork >"$work/out.txt" 2>&1 || fail "XMM_PROFILE_SIGNAL in a fork child: $(cat "$work/out.txt")"
is_profile "$work/child.heap" || fail "the fork child's dump is not a heap profile"

# ---- XMM_LEAKS ---------------------------------------------------------------------
# leak_check LABEL BYTES SIZE TOLERANCE [VARIABLE=VALUE...]: leaks BYTES in
# blocks of SIZE from leaky_site; the report's first (largest) stack must
# be leaky_site's, with BYTES within TOLERANCE percent.
leak_check() {
    label=$1 bytes=$2 size=$3 tolerance=$4
    shift 4
    rm -rf "$work/leak" && mkdir "$work/leak"
    (cd "$work/leak" && env XMM_LEAKS=1 "$@" "$test" leak "$bytes" "$size" 2>"$work/leaks.txt")
    status=$?
    [ $status -eq 0 ] || { fail "$label: exit status $status"; return; }
    grep -q "^xmm: leak report (XMM_LEAKS=1): about [0-9]* bytes in [0-9]* blocks" "$work/leaks.txt" ||
        { fail "$label: no leak report: $(head -c 400 "$work/leaks.txt")"; return; }
    # the first stack: its bytes, and its first frame's file and address
    first=$(grep -m1 "^xmm: [0-9]* bytes in [0-9]* blocks ([0-9]* samples) allocated from:" "$work/leaks.txt")
    reported=$(echo "$first" | sed 's/^xmm: \([0-9]*\) bytes.*/\1/')
    frame=$(grep -m1 "^xmm:     #0 " "$work/leaks.txt")
    location=${frame##* }
    file=${location%+*} address=${location##*+}
    function=$(addr2line -f -e "$file" "$address" | head -1)
    [ "$function" = leaky_site ] ||
        fail "$label: the largest leak is from $function ($frame), not leaky_site"
    low=$((bytes * (100 - tolerance) / 100)) high=$((bytes * (100 + tolerance) / 100))
    [ -n "$reported" ] && [ "$reported" -ge $low ] && [ "$reported" -le $high ] ||
        fail "$label: $reported bytes reported for $bytes leaked (+-$tolerance%)"
    echo "$label: $first; leaked $bytes; frame #0 $location is $function"
}
if command -v addr2line >/dev/null; then
    # 16 MiB in 1 KiB blocks at 32 KiB (~500 samples: 4.4% standard deviation)
    leak_check "XMM_LEAKS, XMM_PROFILE=32k" 16777216 1024 20 XMM_PROFILE=32k \
        XMM_PROFILE_FILE="$work/leaks.heap"
    # 64 MiB in 64 KiB blocks at the default 512 KiB (~120 samples: 9%)
    leak_check "XMM_LEAKS alone" 67108864 65536 40
    [ -z "$(ls "$work/leak")" ] || fail "XMM_LEAKS alone must not write a profile: $(ls "$work/leak")"
else
    echo "addr2line is not installed: leak reports not checked"
fi
# Without leaks the report says so.
XMM_LEAKS=1 "$test" leak 0 1 2>"$work/leaks.txt"
grep -q "^xmm: leak report (XMM_LEAKS=1): about 0 bytes in 0 blocks" "$work/leaks.txt" ||
    fail "no leak: $(head -c 300 "$work/leaks.txt")"

# A signal just before exit: the dump completes first, and a dump replaces
# the file whole (written beside it, then renamed): never an empty or cut
# file, and nothing left beside it.
mkdir "$work/r"
for round in 1 2 3 4 5 6; do
    echo "an older file" > "$work/r/raise.heap"
    XMM_PROFILE_SIGNAL=USR1 XMM_PROFILE_FILE="$work/r/raise.heap" "$test" raise-exit 10 ||
        fail "raise-exit: the program failed"
    is_profile "$work/r/raise.heap" ||
        fail "a signal just before exit, round $round: not a whole profile ($(wc -c <"$work/r/raise.heap") bytes)"
done
[ "$(ls "$work/r")" = raise.heap ] || fail "files left beside the profile: $(ls "$work/r")"

# Under the deferred free check every malloc leaves the inline path with
# its countdown biased (src/global/upkeep.h): the samples, their estimates
# and every mode of test_profile must be as without it.
XMM_FREE_CHECK=deferred "$test" >"$work/deferred.txt" 2>&1 ||
    fail "test_profile under XMM_FREE_CHECK=deferred: $(grep FAIL "$work/deferred.txt" | head -c 600)"

[ $failed -eq 0 ] && echo "heap profile files, signal and leak reports: all checks passed"
exit $failed
