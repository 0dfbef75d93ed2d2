# Shared by the stress tests (sourced, not a test itself): where the
# binary is, a scratch directory, and failing with a message.
# run-tests runs each test as `sh stress/tests/NAME.sh` from the top dir;
# BUILD is in the environment when given to make on the command line.
root=$(cd "$(dirname "$0")/../.." && pwd)
case ${BUILD:-build} in
    /*) build_dir=$BUILD ;;
    *) build_dir=$root/${BUILD:-build} ;;
esac
STRESS=${XMM_STRESS_BINARY:-$build_dir/xmm-stress}
[ -x "$STRESS" ] || { echo "FAIL: $STRESS is missing: run make test (or make stress)" >&2; exit 1; }
cpus=$(nproc)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# Runs every pattern briefly on allocator $1 with 4 threads per CPU (more
# threads than CPUs: preemption in the middle of allocator operations),
# then a few size ranges; every run must exit 0 with integrity "ok". All
# runs go ahead after a failure, so one report shows every broken pattern.
run_every_pattern() {
    allocator=$1
    threads=$((4 * cpus))
    failures=0
    for pattern in pairs batch producer-consumer churn realloc server; do
        run_clean "$allocator" --pattern "$pattern" --threads "$threads" --seconds 1 ||
            failures=$((failures + 1))
    done
    run_clean "$allocator" --pattern all --threads "$threads" --seconds 1.2 --sizes large ||
        failures=$((failures + 1))
    run_clean "$allocator" --pattern server,realloc --threads "$cpus" --pin --seconds 1 \
        --sizes 1-100k || failures=$((failures + 1))
    [ $failures -eq 0 ] || fail "$failures runs on $allocator failed"
}

# One run that must pass; prints its throughput, or why it failed (and
# returns 1).
run_clean() {
    allocator=$1
    shift
    "$STRESS" --alloc "$allocator" --json "$@" >"$scratch/report.json" 2>"$scratch/err"
    status=$?
    if [ $status -ne 0 ]; then
        echo "FAILED: --alloc $allocator $*: exit status $status: $(tail -n 3 "$scratch/err")"
        return 1
    fi
    python3 - "$scratch/report.json" "$allocator" "$*" <<'EOF_PY' && return 0
import json, sys
report = json.load(open(sys.argv[1]))
allocator, arguments = sys.argv[2], sys.argv[3]
assert report["allocator"] == allocator, report["allocator"]
assert report["integrity"] == "ok" and not report["allocation_failed"], report["failure"]
assert report["ops"] > 0 and report["blocks_checked"] == report["ops"]
# On XMM the statistics come from the library itself (xmm_stats_get).
if allocator == "xmm":
    assert isinstance(report["xmm_stats"], dict), "no xmm_stats: was libxmm.so preloaded?"
    # A realloc that stays in place is an op but allocates nothing.
    if "realloc" not in arguments and "all" not in arguments:
        assert report["xmm_stats"]["allocations"] >= report["ops"] - report["frees"]
print(f"{allocator:6} {arguments:62} {report['allocs_per_sec'] / 1e6:7.2f} M allocs/s  "
      f"malloc p99 {report['malloc_p99_ns']:6} ns  peak RSS {report['peak_rss_kib'] / 1024:6.1f} MiB")
EOF_PY
    echo "FAILED: --alloc $allocator $*: bad report"
    return 1
}
