"""The benchmark suite: what runs, with which parameters, in each mode.

A benchmark is a command line plus the way to read its result. Parameters
are sized for a 2-core, 24 GiB machine: about 1-3 s per run in the full
mode, a fraction of that in QUICK mode. Thread counts follow the core
count: `cores` threads where the point is parallel work, 2 x cores where
the point is more threads than CPUs (as on a busy server).

The "cost" group (issue 16: costs that must not grow badly) is longer:
realloc growth that is quadratic runs into its timeout, and the idle
benchmarks sleep by design (10 s, and 120 s for the THP variant), about
30 minutes in all on five allocators with 3 repetitions (`make
bench-costs` runs this group alone). Its start-up footprint rows (a
short program's peak RSS with the allocator preloaded) take seconds.
"""
import os
from dataclasses import dataclass, field

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
    env: dict = field(default_factory=dict)  # extra environment, for every allocator
    memory_limit_mb: int = 0  # run inside a memory cgroup of this size (bench/cgroup.py)


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


# size-mix: 12 block sizes from the smallest classes to blocks mapped for
# themselves: small classes (16 B - 224 KiB), large blocks kept in caches
# (768 KiB), large blocks from the page heap (3 and 12.5 MiB) and blocks
# above every allocator's mmap threshold (37.5 MiB). 150 MiB (and 75 MiB, a
# thread's share with 2 threads) is a whole number of blocks of each large
# size, so every phase holds the same bytes.
SIZE_MIX_SIZES = [16, 64, 256, 1024, 4096, 16384, 65536, 229376, 786432, 3145728,
                  13107200, 39321600]
SIZE_MIX_LIMIT_MB = 450


# Start-up footprint: short programs that allocate a little in many size
# classes, as the helpers a server host runs by the thousand (an
# interpreter's start-up, a shell, a script); what an allocator preloaded
# into every process costs each of them.
FOOTPRINT_PROGRAMS = [
    ("footprint-python", ["/usr/bin/python3", "-c", "pass"], "Python's start-up"),
    ("footprint-perl", ["/usr/bin/perl", "-e", "1"], "Perl's start-up"),
    ("footprint-bash", ["/bin/bash", "-c", "true"], "a shell that runs one builtin"),
]


def _size_text(size):
    return f"{size >> 20} MiB" if size >= 1 << 20 else f"{size >> 10} KiB"


def _costs(bin_dir, quick, limiter_available):
    """Costs that must not grow badly with the work (issue 16): realloc
    growth, memory returned while idle, memory when the size mix changes."""
    q = quick
    w = lambda name: os.path.join(bin_dir, "workloads", name)
    sizes = ",".join(str(s) for s in SIZE_MIX_SIZES)
    phase_mb = 50 if q else 150
    # QUICK grows by larger steps: the same O(N^2 / step) copying shows, in
    # seconds instead of minutes.
    step_40, step_256 = (64 << 10, 4 << 20) if q else (4096, 4096)
    costs = [
        Benchmark("realloc-growth-40M", "cost", "workload",
                  f"one buffer grown {_size_text(step_40)} at a time to 40 MiB by realloc "
                  "(each step written)",
                  [w("realloc-growth"), 40, step_40], 60 if q else 180),
        Benchmark("realloc-growth-256M", "cost", "workload",
                  f"one buffer grown {_size_text(step_256)} at a time to 256 MiB by realloc "
                  "(each step written)",
                  [w("realloc-growth"), 256, step_256], 60 if q else 180),
        Benchmark("idle-return", "cost", "workload",
                  f"allocate {256 if q else 1024} MiB in blocks of 64 B - 256 KiB, free 90% at "
                  f"random, then no malloc call for {3 if q else 10} s; then malloc_trim(0) "
                  "(or the allocator's own purge call)",
                  [w("idle-return"), 256 if q else 1024, 64, 256 << 10, 90, 3 if q else 10,
                   500 if q else 1000], 120),
        Benchmark("idle-return-thp", "cost", "workload",
                  f"XMM_BACKGROUND=1, default XMM_THP: allocate 259 MiB in blocks of 64 B - "
                  f"256 KiB, free 90%, idle {20 if q else 120} s with no malloc call, RSS "
                  "sampled (khugepaged may collapse purged ranges back)",
                  [w("idle-return"), 259, 64, 256 << 10, 90, 20 if q else 120,
                   1000 if q else 2000], 90 if q else 240,
                  env={"XMM_BACKGROUND": "1"}),
        Benchmark("size-mix", "cost", "workload",
                  f"in turn for 12 block sizes (16 B - 37.5 MiB), twice over: allocate "
                  f"{phase_mb} MiB of one size, touch it, free it all; 1 thread",
                  [w("size-mix"), 1, phase_mb, 2, sizes], 120),
        Benchmark("size-mix-2t", "cost", "workload",
                  "as size-mix, with 2 threads each holding half of every phase",
                  [w("size-mix"), 2, phase_mb, 2, sizes], 120),
        Benchmark("size-drift", "cost", "workload",
                  "a sliding window of 500 zeroed buffers whose size grows by a byte with "
                  "each, 1 B - 70,000 B, three passes; 1 thread (at most 34 MiB live)",
                  [w("size-drift"), 1, 1 if q else 3, 70000, 500], 120),
    ]
    for name, argv, what in FOOTPRINT_PROGRAMS:
        costs.append(Benchmark(name, "cost", "footprint",
                               f"{what}: `{' '.join(argv)}`, peak RSS of the process",
                               [w("startup-rss")] + argv, 60))
    if limiter_available and not q:
        for name, threads in (("size-mix-450M", 1), ("size-mix-2t-450M", 2)):
            costs.append(Benchmark(
                name, "cost", "workload",
                f"size-mix with {threads} thread(s) inside a {SIZE_MIX_LIMIT_MB} MiB memory "
                "cgroup: does it survive?",
                [w("size-mix"), threads, phase_mb, 2, sizes], 120,
                memory_limit_mb=SIZE_MIX_LIMIT_MB))
    return costs


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


def build_suite(bench_build, quick, cores, limiter_available=False):
    """Every benchmark in run order. Arguments are strings, ready to exec.
    The memory-limited runs are left out where no memory cgroup can be made
    (bench/cgroup.py says why; the report says so)."""
    suite = _micro(bench_build, quick) + _workloads(bench_build, quick, cores) + \
        _programs(bench_build, quick) + _costs(bench_build, quick, limiter_available)
    for benchmark in suite:
        benchmark.argv = [str(a) for a in benchmark.argv]
    return suite


def select(suite, only):
    """Benchmarks whose name (or group: "micro", "cost", ...) is in `only`."""
    if not only:
        return suite
    return [b for b in suite
            if b.name in only or b.group in only or b.name.split(":")[-1] in only]
