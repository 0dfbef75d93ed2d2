#!/bin/sh
# run-numa-tests.sh - XMM's NUMA placement tests (tests/numa/test_numa.c).
#
#   1. natively, the modes that work on one node (local, on_node, and
#      thp_touch under XMM_THP=always);
#   2. every mode inside QEMU VMs, one boot per topology, through
#      ../shared/tools/numa-vm (CI clones the repository beside shared/):
#        2 nodes, 4 CPUs (2 per node)                     every case
#        4 nodes, 4 CPUs (1 per node)                     every case
#        4 nodes, 2 CPUs (nodes 2 and 3: memory, no CPU)  placement cases
#      tests/numa/vm-driver.sh runs the modes in the VM; a mode still
#      running after 100 s is taken for a hang: its threads' stacks are
#      printed and it fails by name, before the VM's own timeout.
#
# Exit: 0 all passed; 1 a failure or a VM timeout; 77 (skip) if the VM is
# unavailable (numa-vm missing, or it exits 125) and nothing failed.
# The last line says which.
#
# Environment: XMMTEST_BUILD (build tree, default ./build; the VM sees the
# current directory and the host's / read-only, not the host's /tmp),
# NUMA_VM (the numa-vm tool). Both are outside XMM_*: libxmm warns about
# XMM_* names it does not know.

cd "$(dirname "$0")/../.." || exit 1
build=${XMMTEST_BUILD:-build}
test=$build/tests/test_numa
numa_vm=${NUMA_VM:-../shared/tools/numa-vm}
vm_timeout=240
failures=""
vm_skips=""
started=$(date +%s)

for program in "$test" "$build/tests/test_numa_loading"; do
    if [ ! -x "$program" ]; then
        echo "FAIL: $program is missing (make test-build, or make test-numa)"
        exit 1
    fi
done

# ---- 1. natively ----
for mode in local on_node thp_touch; do
    if [ "$mode" = thp_touch ]; then
        XMM_THP=always "$test" "$mode"
    else
        "$test" "$mode"
    fi
    status=$?
    case $status in
    0) echo "PASS  native $mode" ;;
    77) echo "SKIP  native $mode" ;;
    *) echo "FAIL  native $mode (exit $status)"; failures="$failures native:$mode" ;;
    esac
done

# ---- 2. in the VM ----
# numa-vm's own exit codes: 125 the VM failed to run, 124 timed out.
run_vm() {
    nodes=$1 cpus=$2 cases=$3
    topology="$nodes nodes, $cpus CPUs"
    if [ -n "$vm_skips" ]; then
        # A VM that failed to boot once fails again: do not wait for it.
        echo "SKIP  numa-vm $topology: not tried, an earlier VM failed to run"
        return
    fi
    vm_start=$(date +%s)
    echo "---- numa-vm --nodes $nodes --cpus $cpus"
    "$numa_vm" --nodes "$nodes" --cpus "$cpus" --mem 2048 --timeout "$vm_timeout" -- \
        sh tests/numa/vm-driver.sh "$test" "$nodes" "$cases"
    status=$?
    elapsed=$(($(date +%s) - vm_start))
    case $status in
    0) echo "PASS  numa-vm $topology (${elapsed}s with boot)" ;;
    125) echo "SKIP  numa-vm $topology: the VM failed to run (exit 125)"
         vm_skips="$vm_skips vm-${nodes}n${cpus}c-failed" ;;
    124) echo "FAIL  numa-vm $topology: timed out after ${vm_timeout}s"
         failures="$failures vm-${nodes}n${cpus}c:timeout" ;;
    *) echo "FAIL  numa-vm $topology (exit $status, ${elapsed}s)"
       failures="$failures vm-${nodes}n${cpus}c" ;;
    esac
}

if [ -x "$numa_vm" ]; then
    run_vm 2 4 all
    run_vm 4 4 all
    run_vm 4 2 placement
else
    vm_skips=" numa-vm-not-found($numa_vm)"
fi

total=$(($(date +%s) - started))
if [ -n "$failures" ]; then
    echo "FAIL: NUMA tests failed:$failures (${total}s)"
    exit 1
fi
if [ -n "$vm_skips" ]; then
    echo "SKIP: NUMA VM unavailable:$vm_skips; only the one-node modes ran (${total}s)"
    exit 77
fi
echo "PASS: NUMA tests, natively and in 2- and 4-node VMs (${total}s)"
exit 0
