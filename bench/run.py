#!/usr/bin/env python3
"""Runs the benchmark suite on every allocator and saves the raw results.

usage: run.py [--quick] [--reps N] [--headline-reps N] [--only NAMES]
              [--allocators NAMES] [--bench-build DIR] [--xmm PATH] [--results DIR]

Allocators alternate run by run: for each repetition, for each benchmark,
every allocator runs once, in an order rotated from one repetition to the
next. A slow or noisy stretch of the (shared, 2-core) machine then lands
on all allocators alike instead of on whichever ran during it.

The workloads and real programs, which the headline geometric mean covers,
get more repetitions than the microbenchmarks and the cost group
(--headline-reps, 7 by default in the full mode): their runs take a second
or two, and on this machine one run can be 1.5x another of the same
binary, so the median of three moved a workload's ratio by 0.2-0.4
between full runs of the same library (bench/analysis.md, "churn").

Results go to DIR/meta.json (machine, versions, commands), DIR/runs.csv
(one row per run, or per microbenchmark case per run) and
DIR/rss_timeline.csv (the RSS samples of peak-idle, idle-return and
size-mix) and, when the micro group ran, DIR/instructions.md (the hit
path's instruction counts: bench/hit-path-static on the library measured,
bench/hit-path-counts under valgrind); report.py turns them into
docs/benchmarks.md. A run that crashes, fails or times out is recorded
with its error, never dropped. A crash is cheap, so later repetitions still
run (an intermittent bug shows as "failed in N of M"); after a timeout that
allocator's later repetitions of the benchmark are skipped, as a hang would
cost the whole timeout again each time.
"""
import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import allocators as allocator_lib  # noqa: E402
import cgroup  # noqa: E402
import machine  # noqa: E402
import runners  # noqa: E402
import suite as suite_lib  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_FIELDS = ["benchmark", "case", "allocator", "rep", "slot", "status", "time_s",
              "throughput", "peak_rss_kb", "extra", "error"]
TIMELINE_FIELDS = ["benchmark", "allocator", "rep", "t_s", "rss_kb", "thp_kb", "phase"]


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 repetition")
    parser.add_argument("--reps", type=int, help="repetitions (default 3, QUICK 1)")
    parser.add_argument("--headline-reps", type=int,
                        help="repetitions of the workloads and programs (default: 7, "
                             "QUICK 1; never fewer than --reps)")
    parser.add_argument("--only", default="", help="comma-separated benchmark names")
    parser.add_argument("--allocators", default="", help="comma-separated allocator names")
    parser.add_argument("--bench-build", default="build/bench")
    parser.add_argument("--xmm", default="build/libxmm.so")
    parser.add_argument("--results", help="output directory (default bench/results/MODE)")
    return parser.parse_args()


def names(text):
    return [n.strip() for n in text.split(",") if n.strip()]


def rotated(items, shift):
    shift %= max(len(items), 1)
    return items[shift:] + items[:shift]


HEADLINE_GROUPS = ("workload", "program")


def repetitions(args, quick):
    """Repetitions by group: "headline" (workloads and programs) and
    "other" (microbenchmarks and the cost group)."""
    other = args.reps or (1 if quick else 3)
    headline = args.headline_reps or (1 if quick else 7)
    return {"headline": max(headline, other), "other": other}


def reps_of(reps, benchmark):
    return reps["headline" if benchmark.group in HEADLINE_GROUPS else "other"]


def smoke_test(allocator, bench_build):
    """A tiny multi-threaded run: does the library load, and does malloc
    really resolve to it? Returns "" or the problem."""
    larson = os.path.join(bench_build, "workloads", "larson")
    outcome = runners.run_process([larson, "2", "2", "2000", "200", "16", "256"],
                                  allocator.environment(), timeout=60)
    if outcome.error:
        return outcome.error
    try:
        result = runners.parse_result_line(outcome.stdout)
    except ValueError as problem:
        return str(problem)
    return runners.check_library(result.get("allocator", "?"), allocator)


class Session:
    """One benchmarking session: runs, failures and the files they go to."""

    def __init__(self, allocators, suite, reps, out_dir, context):
        self.allocators = allocators
        self.suite = suite
        self.reps = reps  # group -> repetitions (reps_of)
        self.out_dir = out_dir
        self.context = context
        self.timed_out = {}  # (benchmark, allocator) -> rep of the timeout
        self.runs = []
        self.timeline = []

    def run_all(self):
        runnable = [a for a in self.allocators if a.available]
        for rep in range(max(self.reps.values())):
            for index, benchmark in enumerate(self.suite):
                if rep >= reps_of(self.reps, benchmark):
                    continue
                # Rotate by repetition and benchmark so no allocator is
                # always first (cold caches) or last.
                order = rotated(runnable, rep + index)
                for slot, allocator in enumerate(order):
                    self.run_one(benchmark, allocator, rep, slot)
            self.save()

    def run_one(self, benchmark, allocator, rep, slot):
        key = (benchmark.name, allocator.name)
        base = {"benchmark": benchmark.name, "allocator": allocator.name, "rep": rep,
                "slot": slot, "case": ""}
        if key in self.timed_out:
            self.runs.append(dict(base, status="skipped", error="not run: timed out in "
                                  f"repetition {self.timed_out[key] + 1}"))
            return
        rows, samples = runners.run(benchmark, allocator, self.context)
        for row in rows:
            self.runs.append(dict(base, **row))
        for sample in samples:
            self.timeline.append(dict(sample, benchmark=benchmark.name,
                                      allocator=allocator.name, rep=rep))
        if any(row.get("error", "").startswith("timed out") for row in rows):
            self.timed_out[key] = rep
        print(progress_line(benchmark, allocator, rep, rows), flush=True)

    def save(self):
        os.makedirs(self.out_dir, exist_ok=True)
        write_csv(os.path.join(self.out_dir, "runs.csv"), RUN_FIELDS, self.runs)
        write_csv(os.path.join(self.out_dir, "rss_timeline.csv"), TIMELINE_FIELDS,
                  self.timeline)


def progress_line(benchmark, allocator, rep, rows):
    failed = [r for r in rows if r["status"] != "ok"]
    if failed:
        return f"[rep {rep + 1}] {benchmark.name:24} {allocator.name:9} FAILED: {failed[0]['error']}"
    if benchmark.group == "micro":
        return f"[rep {rep + 1}] {benchmark.name:24} {allocator.name:9} {len(rows)} cases"
    row = rows[0]
    return (f"[rep {rep + 1}] {benchmark.name:24} {allocator.name:9} "
            f"{row['time_s']:.4g} s  {row['throughput']:.4g} ops/s  "
            f"{row['peak_rss_kb'] / 1024:.1f} MiB")


def write_csv(path, fields, rows):
    with open(path, "w", newline="") as output:
        writer = csv.DictWriter(output, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: format_cell(row.get(k, "")) for k in fields})


def format_cell(value):
    """Compact cells keep the committed CSV small: 6 significant digits."""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":")) if value else ""
    return value


INSTRUCTIONS_FILE = "instructions.md"


def count_instructions(allocators, bench_build, out_dir):
    """Writes out_dir/instructions.md: the counts of the hit path of the
    library this run measured, so that the report's instruction table and
    its time tables come from the same code. A tool that cannot run (no
    valgrind, no objdump) is said in the file, not skipped silently."""
    xmm = next((a for a in allocators if a.name == "xmm" and a.available), None)
    if xmm is None:
        return
    library = os.path.relpath(xmm.library, REPO)
    # At free's `cmp $0x4` (class <= XMM_SUBLINE_CLASSES) the classes below
    # a cache line (8-48 bytes) go to the page-owner check, whose section
    # picks the bin with `cmov`s; the other classes go straight to the push.
    commands = [
        ["bench/hit-path-static", "--lib", library, "--taken", "free:cmp=$0x4:!cmov"],
        ["bench/hit-path-static", "--lib", library, "--taken", "free:cmp=$0x4:cmov", "free"],
        ["sh", "bench/hit-path-counts", "64"],
    ]
    environment = dict(os.environ, XMM_LIB=library, BENCH_BUILD=bench_build)
    parts = []
    for command in commands:
        try:
            done = subprocess.run(command, env=environment, capture_output=True, text=True,
                                  timeout=600)
            output = done.stdout if done.returncode == 0 else (
                f"(exit {done.returncode}) {done.stderr.strip()}\n")
        except (OSError, subprocess.TimeoutExpired) as error:
            output = f"({error})\n"
        parts.append(f"`{' '.join(command)}`:\n\n{output.rstrip()}\n")
    with open(os.path.join(out_dir, INSTRUCTIONS_FILE), "w") as output:
        output.write("\n".join(parts))


def main():
    args = parse_arguments()
    os.chdir(REPO)
    quick = args.quick
    reps = repetitions(args, quick)
    mode = "quick" if quick else "full"
    partial = bool(args.only or args.allocators)
    # A partial run must not overwrite the committed results of a full one.
    out_dir = args.results or (os.path.join(args.bench_build, f"results-{mode}") if partial
                               else os.path.join("bench", "results", mode))
    cores = os.cpu_count() or 2

    allocators = allocator_lib.discover(args.xmm, REPO, names(args.allocators))
    for allocator in allocators:
        if allocator.available:
            allocator.problem = smoke_test(allocator, args.bench_build)
        state = allocator.problem or "ok"
        print(f"allocator {allocator.name:9} {allocator.library or '(no preload)'}: "
              f"{'available' if allocator.available else 'MISSING'}; {state}")

    limiter = cgroup.Limiter.probe()
    print(f"memory cgroup for the limited runs: {limiter.describe()}")
    suite = suite_lib.select(suite_lib.build_suite(args.bench_build, quick, cores,
                                                   limiter.available),
                             names(args.only))
    context = runners.Context(bench_build=args.bench_build, quick=quick, limiter=limiter)
    tmp_dir = out_dir + ".partial"
    shutil.rmtree(tmp_dir, ignore_errors=True)
    session = Session(allocators, suite, reps, tmp_dir, context)

    started = time.time()
    load_at_start = machine.load_average()
    session.run_all()
    if any(benchmark.group == "micro" for benchmark in suite):
        count_instructions(allocators, args.bench_build, tmp_dir)
    meta = machine.describe(allocators, suite, mode, reps, context)
    meta["duration_s"] = round(time.time() - started, 1)
    meta["load_average"] = {"start": load_at_start, "end": machine.load_average()}
    with open(os.path.join(tmp_dir, "meta.json"), "w") as output:
        json.dump(meta, output, indent=1)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.rename(tmp_dir, out_dir)
    print(f"results: {out_dir} ({meta['duration_s']} s)")


if __name__ == "__main__":
    main()
