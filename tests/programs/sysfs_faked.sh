#!/bin/sh
# A sandbox's sysfs: XMM sizes its per-CPU slabs by the CPUs
# /sys/devices/system/cpu/possible lists. A file mounted over it that
# lists fewer than the process may run on ("0" on a machine with two CPUs,
# as a container runtime or a restore onto a larger host may leave it)
# made a thread on CPU 1 read and write past the slabs: SIGSEGV in 4 of 6
# runs. Such a file is now checked against the CPUs the kernel allows the
# process (platform/linux.c). Each case runs in a mount namespace of its
# own; skipped without root (unshare -m) or with one CPU.
. "$(dirname "$0")/preload.inc"
need unshare
need mount
stress=$build/xmm-stress
[ -x "$stress" ] || { echo "SKIP: $stress is not built"; exit 77; }
[ "$(nproc)" -ge 2 ] || { echo "SKIP: one CPU allowed"; exit 77; }
unshare -m --propagation private true 2>/dev/null ||
    { echo "SKIP: no mount namespace (unshare -m needs root)"; exit 77; }

# in_faked SETUP CMD...: CMD in a mount namespace where SETUP (shell) ran.
in_faked() {
    setup=$1
    shift
    unshare -m --propagation private sh -c "$setup && exec \"\$@\"" faked "$@"
}

echo 0 >"$work/possible"
fake_possible="mount --bind $work/possible /sys/devices/system/cpu/possible"
allowed=$(nproc)

# The slabs cover every CPU the process may run on (XMM_VERBOSE's count),
# not the one the file lists.
in_faked "$fake_possible" env XMM_VERBOSE=1 LD_PRELOAD="$lib" true 2>"$work/verbose.txt"
xmm_saw=$(sed -n 's/^xmm: [0-9]* node(s), \([0-9]*\) possible CPU(s).*/\1/p' "$work/verbose.txt")
[ -n "$xmm_saw" ] && [ "$xmm_saw" -ge "$allowed" ] &&
    ok "possible says 0: XMM counts $xmm_saw CPUs, at least the $allowed allowed" ||
    bad "possible says 0: XMM counts '${xmm_saw:-?}' CPUs with $allowed allowed: $(head -1 "$work/verbose.txt")"

# A thread that moves between the first two CPUs allocates on each.
for run in 1 2 3; do
    in_faked "$fake_possible" "$build/tests/api_cpu_migrate" >"$work/migrate.txt" 2>&1
    status=$?
    [ "$status" -eq 0 ] || [ "$status" -eq 77 ] || break
done
[ "$status" -eq 0 ] || [ "$status" -eq 77 ] &&
    ok "possible says 0: a thread moving between CPUs allocates (3 runs)" ||
    bad "possible says 0: cpu_migrate exit $status: $(tail -2 "$work/migrate.txt" | tr '\n' ' ')"

# xmm-stress, threads pinned to the first CPUs, and with sysfs hidden.
run_stress() {
    what=$1 setup=$2
    in_faked "$setup" "$stress" --alloc "$lib" --threads 4 --pin --seconds 2 \
        --pattern pairs,churn >"$work/out.txt" 2>&1
    status=$?
    if [ "$status" -eq 0 ] && grep -q "integrity: OK" "$work/out.txt"; then
        ok "$what: xmm-stress ran, integrity OK"
    else
        bad "$what: xmm-stress exit $status: $(tail -3 "$work/out.txt" | tr '\n' ' ')"
    fi
}
run_stress "possible says 0 on $allowed CPUs" "$fake_possible"
run_stress "sysfs hidden" "mount -t tmpfs none /sys"

# Two nodes (the kernel has one: binding to node 1 fails, which XMM
# survives), CPU 0 on node 0 and the others on node 1, XMM_NUMA=interleave:
# the calls that take the caller's node or check XMM's blocks.
fake=$work/node
mkdir -p "$fake/node0" "$fake/node1"
echo 0-1 >"$fake/has_memory"
echo 0-1 >"$fake/online"
echo 0 >"$fake/node0/cpulist"
echo "1-$((allowed - 1))" >"$fake/node1/cpulist"
fake_nodes="mount --bind $fake /sys/devices/system/node"
for policy in interleave local; do
    in_faked "$fake_nodes" env XMM_NUMA=$policy "$build/tests/api_xmm" node_calls \
        >"$work/nodes.txt" 2>&1 &&
        ok "two faked nodes, XMM_NUMA=$policy: xmm_current_node, xmm_malloc_on_node, xmm_buf_get, xmm_strcpy_into" ||
        bad "two faked nodes, XMM_NUMA=$policy: $(grep FAIL "$work/nodes.txt" | head -3 | tr '\n' ' ')"
done
finish
