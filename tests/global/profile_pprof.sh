#!/bin/sh
# Debian's google-pprof (package google-perftools) reads XMM's heap
# profiles: a program whose three call sites hold 10%, 30% and 60% of its
# live bytes writes its profile at exit (XMM_PROFILE=4k); `google-pprof
# --text` must symbolize it (the program's functions, through the
# MAPPED_LIBRARIES section), agree with the file's total, and give each
# site its bytes within 20% (test_profile checks our own reading to 10%).
# Skipped (77) only when google-pprof is not installed and cannot be.
build=${XMMTEST_BUILD:-build}
test=$build/tests/test_profile
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
failed=0
fail() { echo "FAILED: $*"; failed=1; }
[ -x "$test" ] || { echo "FAILED: build $test first (make test-build)"; exit 1; }
if ! command -v google-pprof >/dev/null; then
    tools/install-deps google-perftools >/dev/null 2>&1
    command -v google-pprof >/dev/null || { echo "google-pprof is not installed and cannot be"; exit 77; }
fi
unset XMM_PROFILE XMM_PROFILE_FILE XMM_PROFILE_SIGNAL XMM_LEAKS

XMM_PROFILE=4k XMM_PROFILE_FILE="$work/exit.heap" "$test" exit >"$work/truth.txt" ||
    fail "test_profile exit failed"
[ -s "$work/exit.heap" ] || { echo "FAILED: no profile written at exit"; exit 1; }
cat "$work/truth.txt"

# --text: "Total: N B", then "flat flat% sum% cum cum% function" lines.
google-pprof --text --show_bytes "$test" "$work/exit.heap" >"$work/text.txt" 2>"$work/err.txt" ||
    fail "google-pprof --text failed: $(cat "$work/err.txt")"
head -8 "$work/text.txt"
header_bytes=$(head -1 "$work/exit.heap" | sed 's/^heap profile: *[0-9]*: *\([0-9]*\) .*/\1/')
total=$(sed -n 's/^Total: \([0-9]*\) B$/\1/p' "$work/text.txt")
[ -n "$total" ] && [ "$total" = "$header_bytes" ] ||
    fail "pprof's total ($total) is not the file's live bytes ($header_bytes)"
for site in site_small site_calloc site_mixed; do
    truth=$(sed -n "s/^$site //p" "$work/truth.txt")
    estimate=$(awk -v site=$site '$6 == site { print $1 }' "$work/text.txt")
    [ -n "$estimate" ] || { fail "pprof does not name $site"; continue; }
    awk -v e="$estimate" -v t="$truth" 'BEGIN { exit !(e > 0.8 * t && e < 1.2 * t) }' ||
        fail "$site: pprof gives $estimate bytes, the program holds $truth"
done
# The allocation columns are read too (--alloc_space), and the call graph
# from main (cumulative).
google-pprof --text --alloc_space "$test" "$work/exit.heap" >"$work/alloc.txt" 2>/dev/null &&
    grep -q " site_mixed$" "$work/alloc.txt" || fail "google-pprof --alloc_space"
awk '$6 == "main" && $5 + 0 >= 99 { found = 1 } END { exit !found }' "$work/text.txt" ||
    fail "main's cumulative share is not (nearly) 100%"

[ $failed -eq 0 ] && echo "google-pprof reads the heap profile: all checks passed"
exit $failed
