#!/bin/sh
# Statistics and configuration as an operator sees them.
build=${1:-build}
test=$(cd "$build/tests" && pwd)/test_stats
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
failed=0
fail() { echo "FAILED: $*"; failed=1; }

"$test" counts || fail "counters"
# Under the deferred free check every malloc takes the ticked path, its
# countdown biased (src/global/upkeep.h): the tick must still sample.
XMM_FREE_CHECK=deferred "$test" counts || fail "counters, XMM_FREE_CHECK=deferred"
XMM_PROFILE=64 XMM_PROFILE_FILE=/dev/null "$test" profiled || fail "counters, XMM_PROFILE=64"

# XMM's private copies of stderr (for the report at exit and the leak
# report) are checked before use: a daemon that closes every descriptor
# above 2 and opens files of its own was given fd 64 for one of them, and
# XMM wrote both reports into it. They go to fd 2 instead.
mkdir "$work/data"
XMM_STATS=text XMM_LEAKS=1 "$test" closefrom "$work/data" 2>"$work/closefrom.txt" ||
    fail "closefrom run"
! grep -l "xmm" "$work"/data/* >/dev/null 2>&1 ||
    fail "a report went into the program's file $(grep -l xmm "$work"/data/* | head -1)"
grep -q "^xmm statistics" "$work/closefrom.txt" || fail "closefrom: no statistics on stderr"
grep -q "leak report" "$work/closefrom.txt" || fail "closefrom: no leak report on stderr"

# A server that sets its process title writes over the environment: the
# report still goes to XMM_STATS_FILE (it went to files named after the
# bytes left there, in the server's working directory), and so does the
# heap profile to XMM_PROFILE_FILE.
mkdir "$work/title" "$work/titlecwd"
(cd "$work/titlecwd" && XMM_STATS=text XMM_STATS_FILE="$work/title/stats.%p" XMM_PROFILE=1 \
    XMM_PROFILE_FILE="$work/title/heap.%p" "$test" title one two three) ||
    fail "title run"
grep -q "^xmm statistics" "$work"/title/stats.* 2>/dev/null ||
    fail "process title: no statistics in XMM_STATS_FILE: $(ls "$work/title" "$work/titlecwd")"
ls "$work"/title/heap.* >/dev/null 2>&1 ||
    fail "process title: no heap profile in XMM_PROFILE_FILE: $(ls "$work/title")"
[ -z "$(ls -A "$work/titlecwd")" ] ||
    fail "process title: files written in the working directory: $(ls -A "$work/titlecwd" | od -c | head -3)"

# A file that cannot take the report: said on stderr (it was lost without
# a word).
XMM_STATS=text XMM_STATS_FILE=/dev/full "$test" quiet 2>"$work/full.txt" || fail "/dev/full run"
grep -q "XMM_STATS_FILE: the statistics could not be written (ENOSPC: No space left on device)" "$work/full.txt" ||
    fail "XMM_STATS_FILE=/dev/full: no message: $(cat "$work/full.txt")"

# The same with stderr itself closed and given to a file: under ulimit -n
# 60 XMM gets no copy (64 and up), and wrote into the file behind fd 2;
# with XMM_STATS_FILE failing, the fallback to stderr is checked too.
for limit in 60 1024; do
    mkdir -p "$work/data$limit"
    (ulimit -n $limit && XMM_STATS=text XMM_LEAKS=1 "$test" closestderr "$work/data$limit") ||
        fail "closestderr run (ulimit -n $limit)"
    [ "$(cat "$work/data$limit/data.2")" = "data" ] ||
        fail "ulimit -n $limit: a report went into the file behind fd 2: $(head -c 80 "$work/data$limit/data.2")"
    rm -f "$work/data$limit/data.2"
    (ulimit -n $limit && XMM_STATS=text XMM_STATS_FILE=/nonexistent/stats "$test" closestderr \
        "$work/data$limit") || fail "closestderr run with a bad XMM_STATS_FILE"
    [ "$(cat "$work/data$limit/data.2")" = "data" ] ||
        fail "ulimit -n $limit, XMM_STATS_FILE failing: written behind fd 2: $(head -c 80 "$work/data$limit/data.2")"
done

# JSON at exit, to a file: parses, and has every documented field.
XMM_STATS=json XMM_STATS_FILE="$work/stats.json" "$test" quiet || fail "json run"
python3 - "$work/stats.json" <<'PY' || fail "json schema"
import json, sys
stats = json.load(open(sys.argv[1]))
top = ["version", "pid", "program", "front_end", "front_end_detail", "node_count", "allocations", "frees",
       "bytes_in_use", "bytes_reserved", "bytes_committed", "bytes_purged", "bytes_cached",
       "bytes_central", "bytes_page_heap_free", "large_allocations", "cross_node_frees",
       "invalid_frees", "cache_refills", "cache_drains", "rseq_fast_path", "rseq_fallback",
       "rseq_restarts", "metadata_bytes", "nodes", "cpus", "size_classes"]
node = ["node", "interleaved", "spans_created", "spans_released", "small_span_bytes", "transfer_batches",
        "transfer_batch_bytes", "page_heap_free_bytes", "page_heap_unpurged_bytes",
        "purged_bytes", "large_in_use_bytes", "large_cached_bytes", "large_allocations",
        "carver_run_bytes", "reserved_bytes"]
size_class = ["class", "size", "allocations", "frees", "in_use_bytes"]
missing = [k for k in top if k not in stats]
missing += ["nodes." + k for k in node if k not in stats["nodes"][0]]
missing += ["size_classes." + k for k in size_class if stats["size_classes"] and k not in stats["size_classes"][0]]
assert not missing, "missing fields: %s" % missing
# One entry per node, plus the interleaved heap under XMM_NUMA=interleave.
# quiet keeps one block of 1000 bytes live at exit.
assert stats["allocations"] >= 1, stats["allocations"]
assert stats["bytes_in_use"] >= 1000, stats["bytes_in_use"]
assert len(stats["nodes"]) == stats["node_count"] + sum(n["interleaved"] for n in stats["nodes"])
print("json: %d fields, %d size classes in use" % (len(stats), len(stats["size_classes"])))
PY

# Text at exit goes to stderr, even if the program closes stderr itself.
XMM_STATS=text LD_PRELOAD="$PWD/$build/libxmm.so" ls / 2>"$work/ls.txt" >/dev/null
grep -q "^xmm statistics" "$work/ls.txt" || fail "text statistics at exit of ls"

# The text report has the JSON's figures under the JSON's names, in
# columns: every total and node row ends at the same column (the node
# table lacked six of its fields, and its numbers stood wherever the one
# before them ended).
XMM_STATS=text "$test" sizes 2>"$work/text.txt" || fail "text run"
python3 - "$work/text.txt" <<'PY' || fail "text statistics as tables"
import sys
lines = open(sys.argv[1]).read().splitlines()
names = {line.split()[0]: line for line in lines[1:] if line.strip()}
node = ["interleaved", "spans_created", "spans_released", "small_span_bytes", "transfer_batches",
        "transfer_batch_bytes", "page_heap_free_bytes", "page_heap_unpurged_bytes",
        "purged_bytes", "large_in_use_bytes", "large_cached_bytes", "large_allocations",
        "carver_run_bytes", "reserved_bytes"]
missing = [name for name in node + ["allocations", "bytes_in_use", "node"] if name not in names]
assert not missing, "missing rows: %s" % missing
table = lines[1:lines.index(names["reserved_bytes"]) + 1]
widths = {len(line) for line in table}
assert len(widths) == 1, "rows of %s characters: not aligned" % sorted(widths)
classes = lines[lines.index(names["class"]):]
assert len({len(line) for line in classes}) == 1, "class rows not aligned"
print("text: %d rows aligned, %d node fields" % (len(table), len(node)))
PY

# malloc_info is well-formed XML in glibc's shape.
"$test" malloc-info > "$work/info.xml" || fail "malloc_info"
python3 -c "
import sys, xml.etree.ElementTree as tree
root = tree.parse(sys.argv[1]).getroot()
assert root.tag == 'malloc' and root.find('heap') is not None and root.find('total') is not None
print('malloc_info: well-formed,', len(root.findall('heap')), 'heap(s)')" "$work/info.xml" || fail "malloc_info XML"

# A bad value and an unknown name: one line each, naming them; defaults kept.
XMM_NUMA=sideways XMM_CPU_CACHE_SIZE=12Q XMM_NO_SUCH_THING=1 "$test" quiet 2>"$work/err.txt" ||
    fail "bad variables must not stop the program"
grep -q "XMM_NUMA='sideways': expected local, interleave, off, or bind:LIST" "$work/err.txt" || fail "XMM_NUMA message"
grep -q "XMM_CPU_CACHE_SIZE='12Q': expected a size" "$work/err.txt" || fail "XMM_CPU_CACHE_SIZE message"
grep -q "unknown variable XMM_NO_SUCH_THING" "$work/err.txt" || fail "unknown variable message"
[ "$(wc -l < "$work/err.txt")" -eq 3 ] || fail "exactly one line per problem"
# Strict mode makes it fatal.
if XMM_STRICT=1 XMM_NUMA=sideways "$test" quiet 2>/dev/null; then fail "XMM_STRICT=1 must stop"; fi
# Verbose prints the configuration and topology.
XMM_VERBOSE=1 "$test" quiet 2>"$work/verbose.txt"
grep -q "node 0 CPUs:" "$work/verbose.txt" && grep -q "config XMM_NUMA=" "$work/verbose.txt" ||
    fail "XMM_VERBOSE output"
# ... and the NUMA placement in force: a policy with nothing to place (one
# node) says so rather than being silently a no-op.
XMM_VERBOSE=1 XMM_NUMA=interleave "$test" quiet 2>"$work/verbose-numa.txt"
if [ "$(ls -d /sys/devices/system/node/node[0-9]* 2>/dev/null | wc -l)" -le 1 ]; then
    grep -q "NUMA placement (XMM_NUMA=interleave): none, one node" "$work/verbose-numa.txt" ||
        fail "XMM_VERBOSE does not say interleave has one node: $(grep placement "$work/verbose-numa.txt")"
else
    grep -q "NUMA placement (XMM_NUMA=interleave): pages interleaved over nodes" "$work/verbose-numa.txt" ||
        fail "XMM_VERBOSE does not name the interleave: $(grep placement "$work/verbose-numa.txt")"
fi
# ... and a rejected value as the default in effect, not as the value given.
XMM_VERBOSE=1 XMM_BACKGROUND=2 "$test" quiet 2>"$work/verbose-bad.txt"
grep -q "config XMM_BACKGROUND=auto (default; '2' was rejected)" "$work/verbose-bad.txt" ||
    fail "XMM_VERBOSE shows a rejected value as the default in effect"
! grep -q "config XMM_BACKGROUND=2" "$work/verbose-bad.txt" ||
    fail "XMM_VERBOSE shows a rejected value as in effect"
# ... and a size as the number of bytes it was read as, whatever its spelling.
XMM_VERBOSE=1 XMM_CPU_CACHE_SIZE=3mib XMM_PROFILE=64k XMM_PROFILE_FILE="$work/v.heap" "$test" quiet 2>"$work/verbose-size.txt"
grep -q "config XMM_CPU_CACHE_SIZE=3mib (3145728 bytes)" "$work/verbose-size.txt" &&
    grep -q "config XMM_PROFILE=64k (a sample every 65536 bytes on average)" "$work/verbose-size.txt" ||
    fail "XMM_VERBOSE does not give sizes in bytes: $(grep -E 'CACHE_SIZE|PROFILE=' "$work/verbose-size.txt")"
# XMM_BUF_POOL_MIB is checked at start like every other variable, even in a
# program that never uses a buffer pool: reported once, fatal when strict.
XMM_BUF_POOL_MIB=abc "$test" quiet 2>"$work/buf-bad.txt" || fail "a bad XMM_BUF_POOL_MIB stopped the program"
grep -q "XMM_BUF_POOL_MIB='abc': expected a whole number of MiB" "$work/buf-bad.txt" ||
    fail "a bad XMM_BUF_POOL_MIB is not reported at start: $(cat "$work/buf-bad.txt")"
[ "$(wc -l < "$work/buf-bad.txt")" -eq 1 ] || fail "XMM_BUF_POOL_MIB: not one line"
if XMM_STRICT=1 XMM_BUF_POOL_MIB=abc "$test" quiet 2>/dev/null; then
    fail "XMM_STRICT=1 must stop on a bad XMM_BUF_POOL_MIB"
fi
XMM_VERBOSE=1 XMM_BUF_POOL_MIB=12x "$test" quiet 2>"$work/verbose-buf.txt"
grep -q "config XMM_BUF_POOL_MIB=64 (default; '12x' was rejected)" "$work/verbose-buf.txt" ||
    fail "XMM_VERBOSE shows a rejected XMM_BUF_POOL_MIB as in effect"
# Every switch takes the spellings its message names, strictness included
# (for every variable: buf/ once checked its own with only "1").
for spelling in 1 on yes true; do
    if XMM_STRICT=$spelling XMM_BUF_POOL_MIB=abc "$test" quiet 2>/dev/null; then
        fail "XMM_STRICT=$spelling must stop on a bad XMM_BUF_POOL_MIB"
    fi
done
XMM_STRICT=maybe "$test" quiet 2>"$work/bool.txt"
grep -q "XMM_STRICT='maybe': expected 1 or 0 (or on/off, yes/no, true/false)" "$work/bool.txt" ||
    fail "a switch's message names every spelling it takes: $(cat "$work/bool.txt")"
# Milliseconds are a whole number: no unit, not even a byte suffix.
for value in 10B 10iB 1s 10K; do
    XMM_DECAY_MS=$value "$test" quiet 2>"$work/decay.txt"
    grep -q "XMM_DECAY_MS='$value': expected milliseconds" "$work/decay.txt" ||
        fail "XMM_DECAY_MS=$value was accepted"
done
# A misspelt name is pointed at the variable it is closest to.
XMM_DECAY=10 XMM_CPU_CACHE_SIZ=1M XMM_NUMAA=off XMM_SOMETHING_ELSE=1 "$test" quiet 2>"$work/typo.txt"
grep -q "unknown variable XMM_DECAY; ignored (did you mean XMM_DECAY_MS?)" "$work/typo.txt" ||
    fail "XMM_DECAY: no suggestion: $(cat "$work/typo.txt")"
grep -q "unknown variable XMM_CPU_CACHE_SIZ; ignored (did you mean XMM_CPU_CACHE_SIZE?)" "$work/typo.txt" ||
    fail "XMM_CPU_CACHE_SIZ: no suggestion"
grep -q "unknown variable XMM_NUMAA; ignored (did you mean XMM_NUMA?)" "$work/typo.txt" ||
    fail "XMM_NUMAA: no suggestion"
grep -q "unknown variable XMM_SOMETHING_ELSE; ignored (XMM_VERBOSE=1 lists the variables)" "$work/typo.txt" ||
    fail "XMM_SOMETHING_ELSE: no pointer to the list"

# XMM_STATS_SIGNAL prints on the signal, to XMM_STATS_FILE.
XMM_STATS_SIGNAL=SIGUSR2 XMM_STATS_FILE="$work/signal.txt" "$test" signal "$work/signal.txt" ||
    fail "statistics on SIGUSR2"
grep -q "^xmm statistics" "$work/signal.txt" || fail "signal output content"
# A signal a report cannot be written on, by number as by name, is refused
# like any bad value: a handler for SIGSEGV that returns runs the faulting
# instruction again forever (the report written each time); SIGKILL and
# SIGSTOP cannot be caught; 32 and 33 are glibc's own.
for signal in 11 SIGSEGV 7 4 8 5 31 6 9 19 32 33 0 65 SEGV KILL SIGSTOP ABRT RTMIN+31 RTMAX-31 \
    RTMIN-1 RTMAX+1 SIGBOGUS; do
    XMM_STATS_SIGNAL=$signal XMM_PROFILE_SIGNAL=$signal "$test" quiet 2>"$work/sig.txt" ||
        fail "a bad signal $signal must not stop the program"
    grep -q "XMM_STATS_SIGNAL='$signal': expected a signal" "$work/sig.txt" ||
        fail "XMM_STATS_SIGNAL=$signal accepted: $(cat "$work/sig.txt")"
    grep -q "XMM_PROFILE_SIGNAL='$signal': expected a signal" "$work/sig.txt" ||
        fail "XMM_PROFILE_SIGNAL=$signal accepted: $(cat "$work/sig.txt")"
done
# Every name kill -l gives is accepted when its number is (SIGTERM was
# refused by name and accepted as 15).
for signal in 10 12 1 34 64 SIGUSR1 USR2 SIGTERM TERM INT QUIT PWR SIGCHLD SIGRTMIN RTMIN+2 \
    SIGRTMAX RTMAX-1; do
    XMM_STATS_SIGNAL=$signal "$test" quiet 2>"$work/sig.txt" || fail "XMM_STATS_SIGNAL=$signal"
    [ ! -s "$work/sig.txt" ] || fail "XMM_STATS_SIGNAL=$signal refused: $(cat "$work/sig.txt")"
done
# ... and in a fork child (a pre-forked server's worker), whose printer
# thread starts from its allocations: before, its signals did nothing.
XMM_STATS_SIGNAL=SIGUSR2 XMM_STATS_FILE="$work/child.txt" "$test" signal "$work/child.txt" fork ||
    fail "signal in a fork child: no statistics"
grep -q "^xmm statistics" "$work/child.txt" || fail "signal in a fork child: content"
# ... and in a daemon's child that made its own session and allocates no more
# (nginx's master): it answered only at exit.
XMM_STATS_SIGNAL=SIGUSR2 XMM_STATS_FILE="$work/daemon.txt" "$test" signal "$work/daemon.txt" daemon ||
    fail "signal in a daemon (setsid, no allocation): no statistics before exit"
# Where no thread can start (clone refused by a seccomp filter, as under a
# process limit or a full pids cgroup): a line says so, the signal is still
# caught, and its report is written at exit at the latest. Before, no
# handler was installed and the operator's SIGUSR2 ended the process.
status=0
XMM_STATS_SIGNAL=SIGUSR2 XMM_STATS_FILE="$work/nothread.txt" "$test" no-threads \
    "$work/nothread.txt" 2>"$work/nothread.err" || status=$?
if [ "$status" -ne 77 ]; then
    [ "$status" -eq 0 ] || fail "no thread: the signal ended the process (status $status): $(cat "$work/nothread.err")"
    grep -q "cannot start the thread of XMM_STATS_SIGNAL" "$work/nothread.err" ||
        fail "no thread: no line says why: $(cat "$work/nothread.err")"
    grep -q "^xmm statistics" "$work/nothread.txt" || fail "no thread: no report by the exit"
fi
# A signal the parent has not served when it forks stays the parent's.
XMM_STATS=json XMM_STATS_SIGNAL=SIGUSR2 XMM_STATS_FILE="$work/then-fork.jsonl" "$test" signal \
    "$work/then-fork.jsonl" then-fork || fail "signal then fork: a child wrote a report"
# A name prints on its signal: SIGPWR, by name.
XMM_STATS_SIGNAL=SIGPWR XMM_STATS_FILE="$work/pwr.txt" "$test" signal "$work/pwr.txt" PWR ||
    fail "statistics on SIGPWR"
grep -q "^xmm statistics" "$work/pwr.txt" || fail "SIGPWR: no statistics"
# One signal for both: the profile's is refused, with a line that says so
# (its handler replaced the statistics' without a word).
XMM_STATS_SIGNAL=USR2 XMM_PROFILE_SIGNAL=SIGUSR2 "$test" quiet 2>"$work/sig.txt" ||
    fail "one signal for both must not stop the program"
grep -q "XMM_PROFILE_SIGNAL is XMM_STATS_SIGNAL's signal (12); ignored" "$work/sig.txt" ||
    fail "one signal for both: no message: $(cat "$work/sig.txt")"

# A signal just before exit: its report is written before the process ends
# (the printer is a thread; exit waits for it).
for round in 1 2 3 4 5 6; do
    XMM_STATS_SIGNAL=USR2 XMM_STATS_FILE="$work/raise.$round.txt" "$test" raise-exit 12 ||
        fail "raise-exit: the program failed"
    grep -q "^xmm statistics" "$work/raise.$round.txt" 2>/dev/null ||
        fail "a signal just before exit: no report in round $round"
done
[ $failed -eq 0 ] && echo "statistics and configuration: all checks passed"
exit $failed
