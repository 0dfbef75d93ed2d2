# --json prints one JSON object on stdout (valid for python3 -m json.tool)
# with every documented field, and numbers that agree with each other.
. "$(dirname "$0")/lib.sh"

check_report() {
    python3 -m json.tool "$1" >/dev/null || fail "not valid JSON: $(head -c 300 "$1")"
    python3 - "$@" <<'EOF_PY' || fail "JSON report check failed"
import json, sys
report = json.load(open(sys.argv[1]))
expected_ops = int(sys.argv[2]) if len(sys.argv) > 2 else None
fields = ["allocator", "pattern", "threads", "seconds", "ops", "allocs_per_sec",
          "per_thread_allocs_per_sec", "peak_rss_kib", "integrity", "blocks_checked",
          "sizes", "seed", "frees", "failure", "phases", "xmm_stats"]
for kind in ("malloc", "free"):
    fields += [f"{kind}_p50_ns", f"{kind}_p99_ns", f"{kind}_p999_ns", f"{kind}_max_ns"]
missing = [name for name in fields if name not in report]
assert not missing, f"missing fields: {missing}"
assert report["allocator"] == "glibc" and report["xmm_stats"] is None, report["allocator"]
assert report["integrity"] == "ok" and report["failure"] is None, report["failure"]
assert report["threads"] == 3, report["threads"]
assert report["ops"] > 0 and report["seconds"] > 0
if expected_ops is not None:
    assert report["ops"] == expected_ops, (report["ops"], expected_ops)
# Every block ends in exactly one checked free or realloc.
assert report["blocks_checked"] == report["ops"], (report["blocks_checked"], report["ops"])
rate = report["ops"] / report["seconds"]
assert abs(report["allocs_per_sec"] - rate) <= 0.01 * rate + 1, (report["allocs_per_sec"], rate)
assert abs(report["per_thread_allocs_per_sec"] * 3 - report["allocs_per_sec"]) <= 3
for kind in ("malloc", "free"):
    values = [report[f"{kind}_{q}_ns"] for q in ("p50", "p99", "p999", "max")]
    assert values == sorted(values) and values[-1] > 0, (kind, values)
assert report["peak_rss_kib"] > 1024, report["peak_rss_kib"]
phases = report["phases"]
assert sum(phase["ops"] for phase in phases) == report["ops"]
assert all(phase["completed"] for phase in phases), phases
print(f"{report['pattern']}: {len(phases)} phases, {report['ops']} ops, "
      f"{report['allocs_per_sec']:.0f} allocs/s, malloc p99 {report['malloc_p99_ns']} ns, "
      f"peak RSS {report['peak_rss_kib']} KiB")
EOF_PY
}

"$STRESS" --alloc glibc --json --threads 3 --pattern all --seconds 1.2 --seed 7 \
    >"$scratch/all.json" 2>"$scratch/err" || fail "--pattern all: exit $?: $(cat "$scratch/err")"
check_report "$scratch/all.json"
python3 -c '
import json, sys
names = [phase["pattern"] for phase in json.load(open(sys.argv[1]))["phases"]]
assert names == ["pairs", "batch", "producer-consumer", "churn", "realloc", "server"], names
' "$scratch/all.json" || fail "--pattern all did not run the six patterns in order"

# A counted run does exactly the allocations asked for, even split
# unevenly over threads and over patterns.
"$STRESS" --alloc glibc --json --threads 3 --pattern producer-consumer,churn --ops 30001 \
    --sizes 16-4096 >"$scratch/ops.json" 2>"$scratch/err" || fail "--ops: exit $?: $(cat "$scratch/err")"
check_report "$scratch/ops.json" 30001
