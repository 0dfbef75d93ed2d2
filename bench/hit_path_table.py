#!/usr/bin/env python3
"""hit_path_table.py RESULTS_DIR: issue 16's hit-path targets, row by row,
from a `make bench` result set (runs.csv): the bench/micro malloc_free and
batch1000 rows from 8 B to 4 KiB, 1 and 2 threads, as ns per malloc+free
pair (medians over the repetitions; with 2 threads, wall time per pair of
all threads together), each allocator's spread ((max - min) / median),
XMM's ratio to the fastest peer, and XMM's 2-thread scaling (1-thread time
over 2-thread time: 2.0 is perfect), then the instruction counts the run
took of the same library (instructions.md, bench/run.py)."""
import collections
import csv
import os
import statistics
import sys

NAMES = ["glibc", "jemalloc", "tcmalloc", "mimalloc", "xmm"]
SIZES = [8, 16, 64, 256, 1024, 4096]


def load(results):
    times = collections.defaultdict(list)
    with open(os.path.join(results, "runs.csv")) as f:
        for row in csv.DictReader(f):
            if row["status"] == "ok" and row["benchmark"] in ("micro:malloc_free", "micro:batch1000"):
                times[(row["case"], row["allocator"])].append(float(row["time_s"]) * 1e9)
    return times


def tables(results):
    """Both tables as Markdown, from the result set in directory `results`;
    "" when it has no micro rows."""
    if not os.path.exists(os.path.join(results, "runs.csv")):
        return ""
    times = load(results)
    if not times:
        return ""
    med = {k: statistics.median(v) for k, v in times.items()}
    spread = {k: (max(v) - min(v)) / statistics.median(v) for k, v in times.items()}
    lines = ["| row (ns per pair; spread) | " + " | ".join(NAMES) + " | XMM / fastest peer | met |",
             "|---|" + "---|" * (len(NAMES) + 2)]
    for family in ("malloc_free", "batch1000"):
        for threads in (1, 2):
            for size in SIZES:
                case = f"{family}/{size}/threads:{threads}"
                if (case, "xmm") not in med:
                    continue
                cells = [f"{med[(case, n)]:.2f} ±{spread[(case, n)] * 50:.0f}%"
                         if (case, n) in med else "–" for n in NAMES]
                peers = [med[(case, n)] for n in NAMES[:-1] if (case, n) in med]
                if not peers:
                    continue
                ratio = med[(case, "xmm")] / min(peers)
                lines.append(f"| {case} | " + " | ".join(cells) +
                             f" | {ratio:.2f} | {'met' if ratio <= 1.0 else 'not met'} |")
    lines += ["", "| row | XMM 1 thread | XMM 2 threads | scaling (target 1.9x) | met |",
              "|---|---|---|---|---|"]
    for family in ("malloc_free", "batch1000"):
        for size in SIZES:
            one, two = (f"{family}/{size}/threads:{t}" for t in (1, 2))
            if (one, "xmm") in med and (two, "xmm") in med:
                scaling = med[(one, "xmm")] / med[(two, "xmm")]
                lines.append(f"| {family}/{size} | {med[(one, 'xmm')]:.2f} | {med[(two, 'xmm')]:.2f} | "
                             f"{scaling:.2f}x | {'met' if scaling >= 1.9 else 'not met'} |")
    return "\n".join(lines) + "\n" + instruction_counts(results)


def instruction_counts(results):
    """The run's instructions.md, or a line saying the run has none."""
    path = os.path.join(results, "instructions.md")
    if not os.path.exists(path):
        return ("\n*Instruction counts: this result set has none (a run from before "
                "bench/run.py took them); run bench/hit-path-static and "
                "bench/hit-path-counts 64.*\n")
    with open(path) as f:
        return ("\n**Instruction counts of the library this result set measured** "
                "(bench/run.py takes them after the timed runs):\n\n" + f.read())


def main():
    print(tables(sys.argv[1]), end="")


if __name__ == "__main__":
    main()
