#!/bin/sh
# XMM_STATS_FILE under a process tree (a shell script starting programs,
# all preloaded): with %p each process writes its own file; without it each
# process appends exactly one line, so the file is JSON Lines. %e is the
# program name, %% a '%'; an unknown %-sequence is a bad value.
build=${XMMTEST_BUILD:-build}
test=$build/tests/test_stats
lib=$(cd "$build" && pwd)/libxmm.so
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
failed=0
fail() { echo "FAILED: $*"; failed=1; }
# Debian's interpreter, not a version manager's shim (itself a process tree).
python=/usr/bin/python3
[ -x "$python" ] || python=$(command -v python3) || { echo "python3 is not installed"; exit 77; }
[ -x "$test" ] && [ -f "$lib" ] || { echo "FAILED: build $test and $lib first (make test-build)"; exit 1; }

# tree DIR: a shell script, preloaded with XMM_STATS=json, that starts six
# programs at once, each with traffic in most size classes (reports over
# 4 KiB), all exiting together once DIR/go exists (nothing else runs). DIR/pids lists the
# programs' pids, DIR/shell the script's own.
tree() {
    mkdir -p "$1"
    cat > "$1/tree.sh" <<SCRIPT
echo \$\$ > "$1/shell"
for i in 1 2 3 4 5 6; do
    "$test" sizes "$1/go" &
    echo \$! >> "$1/pids"
done
: > "$1/go"
wait
SCRIPT
    LD_PRELOAD="$lib" XMM_STATS=json sh "$1/tree.sh"
}

# ---- %p: one file per process, each one JSON document ----------------------
XMM_STATS_FILE="$work/p/stats.%p.json" tree "$work/p"
for pid in $(cat "$work/p/pids"); do
    [ -f "$work/p/stats.$pid.json" ] || fail "no stats.$pid.json for program $pid"
done
files=0
for file in "$work"/p/stats.*.json; do
    [ -f "$file" ] || continue
    files=$((files + 1))
    pid=${file##*/stats.}; pid=${pid%.json}
    grep -qx "$pid" "$work/p/pids" "$work/p/shell" || fail "$file: not one of the tree's processes"
    "$python" -m json.tool "$file" >/dev/null || fail "$file is not valid JSON"
    [ "$(wc -l < "$file")" -eq 1 ] || fail "$file: $(wc -l < "$file") lines, not one"
    "$python" -c 'import json, sys; d = json.load(open(sys.argv[1])); sys.exit(d["pid"] != int(sys.argv[2]))' \
        "$file" "$pid" || fail "$file: its \"pid\" is not $pid"
done
echo "%p: $files files, one per process, each valid JSON"

# ---- no %p: JSON Lines, one line per process --------------------------------
XMM_STATS_FILE="$work/l/stats.jsonl" tree "$work/l"
"$python" -m json.tool --json-lines "$work/l/stats.jsonl" >/dev/null ||
    fail "a line of stats.jsonl is not valid JSON"
"$python" - "$work/l" <<'PY' || fail "JSON Lines: not one line per process"
import json, sys
directory = sys.argv[1]
programs = [int(pid) for pid in open(directory + "/pids").read().split()]
shell = int(open(directory + "/shell").read())
records = [json.loads(line) for line in open(directory + "/stats.jsonl")]
pids = [record["pid"] for record in records]
assert len(pids) == len(set(pids)), "a process wrote twice: %s" % pids
assert set(programs) <= set(pids), "missing programs: %s" % (set(programs) - set(pids))
assert set(pids) <= set(programs) | {shell}, "lines from unknown processes: %s" % pids
longest = max(len(line) for line in open(directory + "/stats.jsonl"))
assert longest > 4096, "reports too short (%d bytes) to test one write per report" % longest
assert all(r["program"] == "test_stats" for r in records if r["pid"] in programs), \
    [r["program"] for r in records]
print("JSON Lines: %d lines, %d processes, longest %d bytes" % (len(records), len(set(pids)), longest))
PY

# ---- %e and %% ---------------------------------------------------------------
mkdir "$work/e"
XMM_STATS=json XMM_STATS_FILE="$work/e/%e.%%.%p" "$test" quiet & pid=$!
wait $pid
[ -f "$work/e/test_stats.%.$pid" ] || fail "%e.%%.%p: expected test_stats.%.$pid, got: $(ls "$work/e")"

# An unknown %-sequence: one line naming the variable; statistics go to stderr.
XMM_STATS=json XMM_STATS_FILE="$work/e/%q" "$test" quiet 2>"$work/err.txt"
grep -q "XMM_STATS_FILE='$work/e/%q': expected a file path" "$work/err.txt" ||
    fail "XMM_STATS_FILE with %q must be reported: $(head -c 300 "$work/err.txt")"
grep -q '^{"version"' "$work/err.txt" || fail "with a bad XMM_STATS_FILE, statistics go to stderr"
[ ! -e "$work/e/%q" ] || fail "a bad XMM_STATS_FILE must not be created"
# A path too long for XMM's copy of it (PATH_MAX): refused at start,
# statistics on stderr.
long=$work/e/$(printf '%04096d' 0)
XMM_STATS=json XMM_STATS_FILE="$long" "$test" quiet 2>"$work/err.txt"
grep -q "XMM_STATS_FILE='$work/e/0*\.\.\.': expected a file path shorter than 4096 bytes" \
    "$work/err.txt" &&
    grep -q '^{"version"' "$work/err.txt" || fail "too long XMM_STATS_FILE: $(head -c 200 "$work/err.txt")"
# One that fits but is too long once expanded: reported, statistics on stderr.
long=$work/e/$(printf '%04000d' 0)%e%e%e%e%e%e%e%e
XMM_STATS=json XMM_STATS_FILE="$long" "$test" quiet 2>"$work/err.txt"
grep -q "XMM_STATS_FILE: the path is too long once expanded; writing to stderr" "$work/err.txt" &&
    grep -q '^{"version"' "$work/err.txt" || fail "XMM_STATS_FILE too long once expanded: $(head -c 200 "$work/err.txt")"

# A file that cannot be opened: reported with its expanded name.
XMM_STATS=json XMM_STATS_FILE="$work/none/%p" "$test" quiet 2>"$work/err.txt" & pid=$!
wait $pid
grep -q "XMM_STATS_FILE: cannot open $work/none/$pid (ENOENT: No such file or directory); writing to stderr" "$work/err.txt" &&
    grep -q '^{"version"' "$work/err.txt" || fail "unopenable XMM_STATS_FILE: $(head -c 200 "$work/err.txt")"

[ $failed -eq 0 ] && echo "XMM_STATS_FILE patterns and JSON Lines: all checks passed"
exit $failed
