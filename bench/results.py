"""Loading the raw results of a session and reducing them to medians,
spreads and ratios. Shared by report.py (the doc) and its --text mode."""
import csv
import json
import math
import os
import statistics
from dataclasses import dataclass, field

import allocators as allocator_lib


@dataclass
class Cell:
    """Every repetition of one benchmark case on one allocator."""
    times: list = field(default_factory=list)
    rates: list = field(default_factory=list)
    rss: list = field(default_factory=list)
    extras: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    skipped: int = 0

    @property
    def ok(self):
        return bool(self.times) and not self.errors

    def median_time(self):
        return statistics.median(self.times) if self.times else None

    def median_rate(self):
        return statistics.median(self.rates) if self.rates else None

    def median_rss(self):
        return statistics.median(self.rss) if self.rss else None

    def median_extra(self, key):
        values = [e[key] for e in self.extras if e.get(key) is not None]
        return statistics.median(values) if values else None


@dataclass
class ResultSet:
    directory: str
    meta: dict
    cells: dict       # (benchmark, case) -> {allocator: Cell}
    timeline: list    # rows of rss_timeline.csv

    @property
    def allocators(self):
        """Allocators that ran, in report order."""
        return [a["name"] for a in self.meta["allocators"] if a["available"]]

    @property
    def peers(self):
        return [a for a in self.allocators if a != "xmm"]

    def benchmarks(self, group):
        return [b for b in self.meta["benchmarks"] if b["group"] == group]

    def cases(self, benchmark):
        return sorted({case for (name, case) in self.cells if name == benchmark},
                      key=case_sort_key)

    def cell(self, benchmark, case, allocator):
        return self.cells.get((benchmark, case), {}).get(allocator, Cell())


def case_sort_key(case):
    """Orders "malloc_free/256/threads:2" by threads, then numerically."""
    parts = case.split("/")
    threads = [int(p.split(":")[1]) for p in parts if p.startswith("threads:")]
    numbers = [int(p) for p in parts if p.isdigit()]
    return (threads or [0], parts[0], numbers)


def _float(text):
    return float(text) if text not in ("", None) else None


def load(directory):
    """A ResultSet, or None when the directory holds no results."""
    meta_path = os.path.join(directory, "meta.json")
    if not os.path.exists(meta_path):
        return None
    with open(meta_path) as source:
        meta = json.load(source)
    cells = {}
    with open(os.path.join(directory, "runs.csv")) as source:
        for row in csv.DictReader(source):
            add_run(cells, row)
    timeline = []
    timeline_path = os.path.join(directory, "rss_timeline.csv")
    if os.path.exists(timeline_path):
        with open(timeline_path) as source:
            timeline = list(csv.DictReader(source))
        for row in timeline:
            # Results saved before the column existed hold peak-idle only.
            row["benchmark"] = row.get("benchmark") or "peak-idle"
    return ResultSet(directory, meta, cells, timeline)


def add_run(cells, row):
    cell = cells.setdefault((row["benchmark"], row["case"]), {}).setdefault(
        row["allocator"], Cell())
    if row["status"] == "skipped":
        cell.skipped += 1
    elif row["status"] != "ok":
        cell.errors.append(row["error"])
    elif _float(row["time_s"]) is not None:
        cell.times.append(_float(row["time_s"]))
        cell.rates.append(_float(row["throughput"]))
        if _float(row["peak_rss_kb"]) is not None:
            cell.rss.append(_float(row["peak_rss_kb"]))
        cell.extras.append(json.loads(row["extra"]) if row["extra"] else {})


def geomean(values):
    values = [v for v in values if v and v > 0]
    if not values:
        return None
    return math.exp(sum(math.log(v) for v in values) / len(values))


def best(values):
    """The smallest of the values that exist, or None."""
    present = [v for v in values if v is not None]
    return min(present) if present else None


def ratio(value, reference):
    if value is None or not reference:
        return None
    return value / reference


def _ratios(results, benchmark, case, among, median_of):
    """allocator -> its median / the best median among `among`. A cell with
    a failed run has no ratio: part of its runs would flatter it."""
    medians = {}
    for allocator in results.allocators:
        cell = results.cell(benchmark, case, allocator)
        medians[allocator] = median_of(cell) if cell.ok else None
    reference = best(medians[a] for a in among)
    return {a: ratio(m, reference) for a, m in medians.items()}


def time_ratios(results, benchmark, case, among):
    return _ratios(results, benchmark, case, among, Cell.median_time)


def rss_ratios(results, benchmark, case, among):
    return _ratios(results, benchmark, case, among, Cell.median_rss)


def macro_benchmarks(results):
    """Workloads and real programs: the ones the headline numbers cover."""
    return [b["name"] for b in results.benchmarks("workload") + results.benchmarks("program")]


def micro_cases(results):
    """(family, case) of every microbenchmark case; a family that failed
    before reporting any case only has the case "" (see family_failures)."""
    return [(b["name"], case) for b in results.benchmarks("micro")
            for case in results.cases(b["name"]) if case]


def allocator_info(results, name):
    for allocator in results.meta["allocators"]:
        if allocator["name"] == name:
            return allocator
    return {"name": name, "available": False, "problem": "not part of this run"}


def report_order(names):
    return sorted(names, key=lambda n: allocator_lib.ORDER.index(n)
                  if n in allocator_lib.ORDER else len(allocator_lib.ORDER))


def repository_path(path):
    """A path inside this repository, relative to its root: saved results and
    the report must not carry the absolute path of the machine that ran them."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if path and os.path.isabs(path) and path.startswith(root + os.sep):
        return os.path.relpath(path, root)
    return path
