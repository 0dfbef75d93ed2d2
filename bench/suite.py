"""The benchmark suite: what runs, with which parameters, in each mode.

A benchmark is a command line plus the way to read its result. Parameters
are sized for a 2-core, 24 GiB machine: about 1-3 s per run in the full
mode, a fraction of that in QUICK mode. Thread counts follow the core
count: `cores` threads where the point is parallel work, 2 x cores where
the point is more threads than CPUs (as on a busy server).
"""
import os
from dataclasses import dataclass

MICRO_FAMILIES = ["malloc_free", "batch1000", "calloc", "posix_memalign",
                  "realloc_growth", "producer_consumer"]


@dataclass
class Benchmark:
    name: str
    group: str        # "micro", "workload" or "program"
    kind: str         # how to run and parse: "workload", "micro", "sqlite", "memcached"
    summary: str      # one line for the report
    argv: list        # the command (paths relative to the repository)
    timeout: float    # seconds before a run is killed and counted as failed
    metric: str = "time"  # "time": fixed work, lower is better; "throughput": fixed time


def _workloads(bin_dir, quick, cores):
    many = 2 * cores
    q = quick
    w = lambda name: os.path.join(bin_dir, "workloads", name)
    return [
        Benchmark("larson", "workload", "workload",
                  "server simulation: threads replace random blocks of a shared pool; "
                  "threads re-spawned each round, objects outlive them",
                  [w("larson"), many, 10 if q else 20, 100_000 if q else 500_000, 5000, 16, 2048],
                  120),
        Benchmark("xmalloc", "workload", "workload",
                  "producers allocate batches, consumers on other threads free them",
                  [w("xmalloc"), cores, 1000 if q else 4000, 1000, 16, 512], 120),
        Benchmark("cache-scratch", "workload", "workload",
                  "passive false sharing: each thread frees a neighbour-allocated object "
                  "then writes its own objects",
                  [w("cache-scratch"), cores, 1000, 8, 20_000 if q else 100_000], 120),
        Benchmark("cache-thrash", "workload", "workload",
                  "active false sharing: threads allocate and write small objects "
                  "concurrently",
                  [w("cache-thrash"), cores, 1000, 8, 20_000 if q else 100_000], 120),
        Benchmark("churn", "workload", "workload",
                  "mixed sizes 8 B-4 KiB over a large live set, malloc/free and realloc",
                  [w("churn"), cores, 1_000_000 if q else 5_000_000, 50_000 if q else 100_000,
                   8, 4096], 120),
        Benchmark("large", "workload", "workload",
                  "large objects 64 KiB-16 MiB, every page touched",
                  [w("large"), cores, 100 if q else 400, 8, 65536, 16 << 20], 180),
        Benchmark("frag", "workload", "workload",
                  "allocate a mixed heap, free 90% at random, allocate grown objects; "
                  "RSS left",
                  [w("frag"), 250_000 if q else 1_000_000, 16, 1024, 90, 200], 120),
        Benchmark("peak-idle", "workload", "workload",
                  "allocate ~1 GiB, free it, idle with light activity; RSS over time",
                  [w("peak-idle"), 256 if q else 1024, 16, 8192, 8 if q else 20,
                   250 if q else 500, 1000], 180),
    ]


def _programs(bench_build, quick):
    rows = 50_000 if quick else 200_000
    return [
        Benchmark("memcached", "program", "memcached",
                  "memcached 1.6 on loopback (-t 2 -m 256) under memaslap load "
                  "(90% get, 10% set, 32 connections), a fixed number of operations",
                  ["memcached", "-p", "{port}", "-U", "0", "-t", "2", "-m", "256",
                   "-l", "127.0.0.1", "-u", "{user}"],
                  120, metric="throughput"),
        Benchmark("sqlite", "program", "sqlite",
                  f"sqlite3 in memory: {rows // 1000}k rows inserted, indexes, joins, "
                  "group-by, window, update, delete, vacuum",
                  ["sqlite3", "-bail", ":memory:",
                   f".read {os.path.join(bench_build, 'sqlite', f'workload-{rows}.sql')}"],
                  180),
    ]


def memcached_load(quick):
    """The load generator command (never preloaded: only the server is
    measured). `memcaslap` is Debian's name for memaslap.

    A fixed number of operations (about 3 s or 10 s here), not a fixed
    time: memcached's memory grows with every set it serves, so with a
    fixed time a faster allocator would show a larger peak RSS. The run is
    still bounded in time by the benchmark's timeout."""
    operations = 120_000 if quick else 500_000
    return ["memcaslap", "-s", "127.0.0.1:{port}", "-T", "2", "-c", "32",
            "-x", str(operations)]


def sqlite_rows(quick):
    return 50_000 if quick else 200_000


def _micro(bin_dir, quick):
    min_time = "0.02" if quick else "0.1"
    binary = os.path.join(bin_dir, "micro", "micro")
    benchmarks = []
    for family in MICRO_FAMILIES:
        argv = [binary] + (["--quick"] if quick else []) + [
            f"--benchmark_filter=^{family}/", f"--benchmark_min_time={min_time}",
            "--benchmark_format=json"]
        benchmarks.append(Benchmark(f"micro:{family}", "micro", "micro",
                                    f"google-benchmark family {family}", argv, 300,
                                    metric="throughput"))
    return benchmarks


def build_suite(bench_build, quick, cores):
    """Every benchmark in run order. Arguments are strings, ready to exec."""
    suite = _micro(bench_build, quick) + _workloads(bench_build, quick, cores) + \
        _programs(bench_build, quick)
    for benchmark in suite:
        benchmark.argv = [str(a) for a in benchmark.argv]
    return suite


def select(suite, only):
    """Benchmarks whose name (or group, or "micro") is in `only`."""
    if not only:
        return suite
    return [b for b in suite
            if b.name in only or b.group in only or b.name.split(":")[-1] in only]
