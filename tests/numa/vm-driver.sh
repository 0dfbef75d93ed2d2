#!/bin/sh
# vm-driver.sh TEST_NUMA NODES [all|placement] - runs inside the NUMA VM
# (numa-vm): the modes of test_numa with the environment each needs,
# prints each mode's output and a summary, exits 1 if any case failed. One
# VM boot serves all of them.
#
# "placement" runs only the cases where the topology changes the answer
# (where memory goes, which nodes are usable), not the front-end cases
# (per-thread caches, XMM's own rseq area, migration, THP off) nor the
# costly extras, which the other topologies cover. Paths the topology
# cannot change (--membind of one node, a cpuset) run on 2 nodes only.
#
# The VM was asked for NODES nodes: a mode that skips for lack of nodes is
# a failure here, and so is a VM with another node count.
test=$1
nodes=$2
cases=${3:-all}
passed=0
failed=0
skipped=0
failures=""

cpus=$(nproc)
online=$(cat /sys/devices/system/node/online 2>/dev/null)
echo "vm: $nodes nodes requested; online nodes: ${online:-?}; $cpus CPUs"
if [ "$(numactl --hardware | sed -n 's/^available: \([0-9]*\) nodes.*/\1/p')" != "$nodes" ]; then
    echo "FAIL: the VM does not have $nodes nodes"
    numactl --hardware
    exit 1
fi

# A case that has not ended after this many seconds is taken for a hang
# (a whole VM takes about 40 s on an idle 2-core host, the longest case 4 s):
# its threads' stacks are printed and it is killed, so that a hang names its
# case and where it waits instead of running into the VM's own timeout.
case_limit=${CASE_LIMIT:-100}
case_output=/tmp/vm-driver-case.out
test_name=$(basename "$test")   # pgrep's pattern: test_numa, test_numa_loading

# run_watched COMMAND... : COMMAND with its output in $case_output; its exit
# status, or 124 after $case_limit seconds.
run_watched() {
    "$@" >"$case_output" 2>&1 &
    pid=$!
    polls=0   # of 0.2 s
    while kill -0 "$pid" 2>/dev/null; do
        if [ "$polls" -ge $((case_limit * 5)) ]; then
            dump_hung_tests >>"$case_output" 2>&1
            pkill -KILL "^$test_name"
            kill -KILL "$pid" 2>/dev/null
            wait "$pid"
            return 124
        fi
        sleep 0.2
        polls=$((polls + 1))
    done
    wait "$pid"
}

# Every thread's stack of every running $test process (gdb, if present).
dump_hung_tests() {
    echo "HANG: still running after ${case_limit}s"
    for hung in $(pgrep "^$test_name"); do
        echo "---- process $hung: $(tr '\0' ' ' </proc/"$hung"/cmdline)"
        if command -v gdb >/dev/null; then
            gdb -p "$hung" -batch -ex "info threads" -ex "thread apply all bt" </dev/null
        else
            for task in /proc/"$hung"/task/*; do
                echo "thread ${task##*/}: $(cat "$task"/wchan) $(cut -d' ' -f3 "$task"/stat)"
            done
        fi
    done
}

# run_case LABEL COMMAND... : one mode, its output indented, one result line.
run_case() {
    label=$1
    shift
    start=$(date +%s)
    run_watched "$@"
    status=$?
    output=$(cat "$case_output")
    elapsed=$(($(date +%s) - start))
    printf '%s\n' "$output" | sed 's/^/    /'
    if [ $status -eq 0 ]; then
        passed=$((passed + 1))
        echo "PASS  $label ($nodes nodes, $cpus CPUs) ${elapsed}s"
    elif [ $status -eq 124 ]; then
        failed=$((failed + 1))
        failures="$failures
    $label (hung: killed after ${case_limit}s)"
        echo "FAIL  $label ($nodes nodes, $cpus CPUs) hung: killed after ${case_limit}s"
    elif [ $status -eq 125 ]; then
        skipped=$((skipped + 1))
        echo "SKIP  $label ($nodes nodes, $cpus CPUs): could not set up its environment"
    else
        failed=$((failed + 1))
        failures="$failures
    $label (exit $status)"
        echo "FAIL  $label ($nodes nodes, $cpus CPUs) exit $status ${elapsed}s"
    fi
}

# in_cpuset MEMS COMMAND... : COMMAND in a cgroup v2 cpuset whose memory
# nodes are MEMS (XMM reads them from /proc/self/status, Mems_allowed_list:
# a path apart from the --membind policy). 125 if cgroups are unavailable.
in_cpuset() {
    mems=$1
    shift
    root=/sys/fs/cgroup
    group=$root/xmm-numa-$(echo "$mems" | tr ',' '-')
    if [ ! -f $root/cgroup.controllers ]; then
        mount -t cgroup2 none $root || return 125
    fi
    { echo +cpuset >$root/cgroup.subtree_control && mkdir -p "$group" &&
        echo "$mems" >"$group/cpuset.mems"; } 2>/dev/null || return 125
    sh -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' sh "$group" "$@"
}

# with_thp_madvise SCAN_MS COMMAND... : COMMAND with the guest's THP set
# to madvise (huge pages only where a process asks for them) and
# khugepaged scanning every SCAN_MS ms, both restored after. 125 if
# they cannot be set.
with_thp_madvise() {
    scan_ms=$1
    shift
    thp=/sys/kernel/mm/transparent_hugepage
    old_enabled=$(sed 's/.*\[\(.*\)\].*/\1/' $thp/enabled)
    old_sleep=$(cat $thp/khugepaged/scan_sleep_millisecs)
    { echo madvise >$thp/enabled && echo "$scan_ms" >$thp/khugepaged/scan_sleep_millisecs; } \
        2>/dev/null || return 125
    "$@"
    status=$?
    echo "$old_enabled" >$thp/enabled
    echo "$old_sleep" >$thp/khugepaged/scan_sleep_millisecs
    return $status
}

# all: every case; placement: skip the front-end variants.
front_end_cases() {
    [ "$cases" = all ]
}

# ---- every topology: where memory goes ----
# XMM_VERBOSE names the placement in force and every node it uses.
all_nodes=$(seq -s, 0 $((nodes - 1)))
run_case "verbose placement" sh -c \
    'XMM_VERBOSE=1 XMM_NUMA=interleave "$1" local 2>&1 >/dev/null | grep "NUMA placement" |
        grep -qx "xmm: NUMA placement (XMM_NUMA=interleave): pages interleaved over nodes $2"' \
    sh "$test" "$all_nodes"
# A program that does not link libnuma: XMM loads it, and binds what it maps
# before the load with the mbind system call (tests/backend/test_numa_loading.c).
run_case "libnuma loaded by XMM" "$(dirname "$test")/test_numa_loading"
run_case "local" "$test" local
run_case "on_node" "$test" on_node
run_case "crossnode" "$test" crossnode
# Interleave with the kernel's THP (2 MiB units).
run_case "interleave" env XMM_NUMA=interleave "$test" interleave
# xmm.h: xmm_malloc_on_node takes memory "from NUMA node `node`", with no
# exception for the interleave policy of ordinary allocations.
run_case "on_node XMM_NUMA=interleave" env XMM_NUMA=interleave "$test" on_node
run_case "bind1" env XMM_NUMA=bind:1 "$test" bind1

# ---- the front ends: per-thread caches, XMM's own rseq area, moves ----
if front_end_cases; then
    run_case "crossnode XMM_RSEQ=0" env XMM_RSEQ=0 "$test" crossnode
    run_case "crossnode own rseq area" env GLIBC_TUNABLES=glibc.pthread.rseq=0 "$test" crossnode
    run_case "migrate" "$test" migrate
    run_case "migrate XMM_RSEQ=0" env XMM_RSEQ=0 "$test" migrate
    run_case "migrate own rseq area" env GLIBC_TUNABLES=glibc.pthread.rseq=0 "$test" migrate
    run_case "interleave XMM_THP=never" env XMM_NUMA=interleave XMM_THP=never "$test" interleave
    # khugepaged collapses a range onto one node: XMM must not ask it to.
    run_case "interleave, THP madvise, khugepaged busy" with_thp_madvise 10 \
        env XMM_NUMA=interleave NUMA_TEST_NO_COLLAPSE=1 "$test" interleave
    run_case "thp_touch, THP madvise" with_thp_madvise 10000 env XMM_THP=always "$test" thp_touch
fi

# ---- restricted node sets: one allowed node on 2 nodes, several on 4 ----
if [ "$nodes" -eq 2 ]; then
    run_case "membind --membind=1" numactl --membind=1 "$test" membind
    run_case "membind cpuset mems=1" in_cpuset 1 "$test" membind
else
    # Own node if allowed, else the first allowed.
    run_case "bind XMM_NUMA=bind:2-3" env XMM_NUMA=bind:2-3 "$test" bind
    run_case "membind --membind=1,3" numactl --membind=1,3 "$test" membind
    if front_end_cases; then
        run_case "interleave --membind=1,2" \
            env XMM_NUMA=interleave numactl --membind=1,2 "$test" interleave
        # A full node spills (MPOL_PREFERRED); 4 nodes: smaller nodes to fill.
        run_case "spill" "$test" spill
    fi
fi

echo "vm ($nodes nodes, $cpus CPUs): $passed passed, $failed failed, $skipped skipped"
if [ $failed -ne 0 ]; then
    echo "vm ($nodes nodes, $cpus CPUs) failed:$failures"
    exit 1
fi
exit 0
