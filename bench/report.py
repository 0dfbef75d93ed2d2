#!/usr/bin/env python3
"""Writes docs/benchmarks.md and docs/img/* from the saved raw results.

usage: report.py [--results bench/results] [--doc docs/benchmarks.md] [--img docs/img]
       report.py --text DIR     (a side-by-side table on the terminal)

The full run (bench/results/full) is the body of the doc; a QUICK run
(bench/results/quick), when saved too, adds a short summary at the end.
With only a QUICK run, it becomes the body. Nothing here measures: every
number comes from the CSV/JSON files, so anyone can regenerate the doc.
"""
import argparse
import glob
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hit_path_table  # noqa: E402
import plots  # noqa: E402
import results as R  # noqa: E402

ANALYSIS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "analysis.md")
# The heap profiler's cost, measured by `make bench-profile` and written up
# by hand (bench/profile_overhead.py prints its table).
PROFILE_OVERHEAD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "profile_overhead.md")
# The hit path against the peers, measured by bench/micro-peers and written
# up by hand (issue 16).
HIT_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hit_path.md")
HIT_PATH_MARKER = "<!-- hit-path tables: bench/hit_path_table.py, from this run -->"
SLOW_LIMIT = 1.1   # "XMM is more than 1.1x slower than the best peer"
RSS_LIMIT = 1.1    # target: peak RSS within 1.1x of the best peer


# ---- formatting ---------------------------------------------------------------

def fmt_seconds(value):
    if value is None:
        return "–"
    for unit, scale in (("s", 1), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if value >= scale or unit == "ns":
            return f"{value / scale:.3g} {unit}"
    return "–"


def fmt_rate(value):
    if value is None:
        return "–"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3), ("", 1)):
        if value >= scale or unit == "":
            return f"{value / scale:.3g} {unit}/s".replace(" /s", "/s")
    return "–"


def fmt_mib(kb):
    return "–" if kb is None else f"{kb / 1024:.1f} MiB"


def fmt_kib(kb):
    return "–" if kb is None else f"{kb:,.0f} KiB"


def fmt_ratio(value):
    return "–" if value is None else f"{value:.2f}×"


def escape(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def spread(values, formatter):
    if not values:
        return "–"
    return f"{formatter(min(values))} – {formatter(max(values))}"


def repetitions_text(meta, group=None):
    """How many repetitions: one number (results before the headline
    group had its own), or the headline group's and the rest's; `group`
    ("headline" or "other"): that group's only."""
    reps = meta["repetitions"]
    if isinstance(reps, int):
        return f"{reps} repetition(s)"
    if group:
        return f"{reps[group]} repetition(s)"
    if reps["headline"] == reps["other"]:
        return f"{reps['other']} repetition(s)"
    return (f"{reps['headline']} repetitions of the workloads and programs, "
            f"{reps['other']} of the rest")


# ---- headline numbers -------------------------------------------------------------

class Summary:
    """The ratios the headline reports, computed once."""

    def __init__(self, results):
        self.results = results
        self.macro = R.macro_benchmarks(results)
        self.has_xmm = "xmm" in results.allocators

    def ok(self, benchmark, allocator, case=""):
        return self.results.cell(benchmark, case, allocator).ok

    def geomean_vs_best(self, allocator, ratio_function, benchmarks):
        ratios = [ratio_function(self.results, b, case, self.results.allocators)[allocator]
                  for b, case in benchmarks if self.ok(b, allocator, case)]
        return R.geomean(ratios), len(ratios)

    def xmm_vs(self, peers, metric, benchmarks=None):
        """Geometric mean over benchmarks of XMM's value / the best of `peers`
        (one peer: XMM vs that peer), where XMM and a peer both succeeded."""
        ratios = []
        for benchmark in benchmarks or self.macro:
            value = self.median(benchmark, "xmm", metric)
            reference = R.best(self.median(benchmark, p, metric) for p in peers)
            if value is not None and reference:
                ratios.append(value / reference)
        return R.geomean(ratios), len(ratios)

    def median(self, benchmark, allocator, metric):
        cell = self.results.cell(benchmark, "", allocator)
        if not cell.ok:
            return None
        return cell.median_time() if metric == "time" else cell.median_rss()

    def best_peer(self, benchmark, metric):
        values = {p: self.median(benchmark, p, metric) for p in self.results.peers}
        present = {p: v for p, v in values.items() if v is not None}
        if not present:
            return None, None
        name = min(present, key=present.get)
        return name, present[name]

    def beyond_limit(self, metric, limit):
        """[(benchmark, ratio, best peer)] where XMM / best peer > limit."""
        found = []
        for benchmark in self.macro:
            value = self.median(benchmark, "xmm", metric)
            peer, reference = self.best_peer(benchmark, metric)
            if value is not None and reference and value / reference > limit:
                found.append((benchmark, value / reference, peer))
        return found

    def failures(self):
        """[(benchmark, case, allocator, error)] over every benchmark."""
        found = []
        for (benchmark, case), cells in sorted(self.results.cells.items()):
            for allocator, cell in cells.items():
                for error in cell.errors:
                    found.append((benchmark, case, allocator, error))
        return found


# ---- sections -------------------------------------------------------------------

def header_section(results, primary_dir):
    meta = results.meta
    return (
        "# XMM benchmarks\n\n"
        f"Generated by `bench/report.py` from the raw results in `{primary_dir}/` "
        f"({meta['mode']} run, {repetitions_text(meta)}, {meta['date']}, "
        f"{meta.get('duration_s', '?')} s). Do not edit by hand: `make bench` measures "
        "again and rewrites this file, `make bench-report` rewrites it from the saved "
        "results.\n\n"
        "> **Noisy machine.** These numbers come from a shared 2-core virtual machine. "
        "Absolute times drift from run to run; what is meaningful is the ratio between "
        "allocators measured side by side in the same session, with runs alternating "
        "between allocators. Each table gives the spread (fastest to slowest "
        "repetition): when spreads overlap, the difference is noise."
        + load_note(meta) + "\n\n")


def load_note(meta):
    load = meta.get("load_average")
    if not load or load.get("start") is None:
        return ""
    return (f" The 1-minute load average was {load['start']:g} when this run started and "
            f"{load['end']:g} when it ended (2 cores: above 2, other jobs competed for "
            "the CPUs).")


def availability_note(results):
    xmm = R.allocator_info(results, "xmm")
    if not xmm.get("available"):
        return (f"> **XMM was not measured:** {xmm.get('problem', 'unknown reason')}. "
                "Only the four peers appear below.\n\n")
    if xmm.get("problem"):
        return f"> **XMM failed its smoke test:** {xmm['problem']}\n\n"
    return ""


def summary_section(summary, img_dir, analysed=frozenset()):
    results = summary.results
    out = ["## Summary\n\n", availability_note(results)]
    out.append(summary_table(summary))
    if summary.has_xmm:
        out.append(xmm_versus_peers(summary))
        out.append(targets_section(summary, analysed))
    failures = summary.failures()
    if failures:
        out.append(failures_section(results, failures))
    if img_dir:
        out.append("![time ratio per workload](img/workloads-time.svg)\n\n"
                   "![peak RSS ratio per workload](img/workloads-rss.svg)\n\n"
                   "![geometric means](img/summary.svg)\n\n")
    return "".join(out)


def summary_table(summary):
    results = summary.results
    macro_cases = [(b, "") for b in summary.macro]
    micro = R.micro_cases(results)
    rows = []
    for allocator in results.allocators:
        time_mean, time_count = summary.geomean_vs_best(allocator, R.time_ratios, macro_cases)
        rss_mean, _ = summary.geomean_vs_best(allocator, R.rss_ratios, macro_cases)
        micro_mean, _ = summary.geomean_vs_best(allocator, R.time_ratios, micro)
        failed = sum(1 for f in summary.failures() if f[2] == allocator)
        rows.append([allocator, fmt_ratio(time_mean), fmt_ratio(rss_mean),
                     fmt_ratio(micro_mean), f"{time_count}/{len(summary.macro)}",
                     str(failed)])
    return (
        "Geometric means of each allocator's ratio to the best allocator of each "
        "benchmark (1.00× = best everywhere; lower is better). *Workloads* covers the "
        f"{len(summary.macro)} workloads and real programs (time, or time per operation "
        "for memcached); *micro* covers every microbenchmark case (time per operation). "
        "A failed benchmark is left out of its allocator's mean and counted under "
        "*failed runs*.\n\n"
        + table(["allocator", "time (workloads)", "peak RSS (workloads)", "time (micro)",
                 "workloads measured", "failed runs"], rows) + "\n")


def xmm_versus_peers(summary):
    results = summary.results
    rows = []
    for peer in results.peers:
        time_mean, count = summary.xmm_vs([peer], "time")
        rss_mean, _ = summary.xmm_vs([peer], "rss")
        micro_mean, _ = micro_xmm_vs(results, [peer])
        rows.append([peer, fmt_ratio(time_mean), fmt_ratio(rss_mean), fmt_ratio(micro_mean),
                     str(count)])
    time_mean, count = summary.xmm_vs(results.peers, "time")
    rss_mean, _ = summary.xmm_vs(results.peers, "rss")
    micro_mean, _ = micro_xmm_vs(results, results.peers)
    rows.append(["**best peer of each benchmark**", fmt_ratio(time_mean), fmt_ratio(rss_mean),
                 fmt_ratio(micro_mean), str(count)])
    return ("### XMM against each peer\n\n"
            "Geometric mean over benchmarks of XMM's median / the peer's median "
            "(below 1.00× XMM is faster or smaller).\n\n"
            + table(["versus", "time (workloads)", "peak RSS (workloads)", "time (micro)",
                     "workloads compared"], rows) + "\n")


def micro_xmm_vs(results, peers):
    ratios = []
    for benchmark, case in R.micro_cases(results):
        xmm = results.cell(benchmark, case, "xmm")
        references = [results.cell(benchmark, case, p) for p in peers]
        reference = R.best(c.median_time() for c in references if c.ok)
        if xmm.ok and reference:
            ratios.append(xmm.median_time() / reference)
    return R.geomean(ratios), len(ratios)


def load_analysis(path=ANALYSIS):
    """The hand-written causes (bench/analysis.md): its text, and the names of
    the benchmarks it has a `### name` heading for."""
    if not os.path.exists(path):
        return "", set()
    with open(path) as source:
        text = source.read()
    # Every word of a heading counts: "### Peak RSS: frag, sqlite" covers both.
    names = {word for line in text.splitlines() if line.startswith("### ")
             for word in re.findall(r"[A-Za-z0-9_-]+", line[4:])}
    return text, names


def hand_written_section(path, tables=None):
    """A section written by hand beside the measurements, as it is; where
    `tables` maps a marker line (e.g. "<!-- hit-path tables -->") to text,
    the line is replaced by it, so that figures come from this run."""
    if not os.path.exists(path):
        return ""
    with open(path) as source:
        text = source.read()
    for marker, replacement in (tables or {}).items():
        text = text.replace(marker, replacement.rstrip() or "(no micro rows in this run)")
    return text.rstrip() + "\n\n"


def analysis_section(text):
    if not text:
        return ""
    return text.rstrip() + "\n\n"


def targets_section(summary, analysed=frozenset()):
    time_mean, count = summary.xmm_vs(summary.results.peers, "time")
    slow = summary.beyond_limit("time", SLOW_LIMIT)
    heavy = summary.beyond_limit("rss", RSS_LIMIT)
    out = ["### Targets (reported, not asserted)\n\n",
           f"- Geometric mean of time ratios, XMM / best peer, over {count} workloads: "
           f"**{fmt_ratio(time_mean)}**.\n",
           f"- Peak RSS within {RSS_LIMIT}× of the best peer: "
           f"**{count - len(heavy)} of {count}** workloads.\n\n"]
    out.append(f"Workloads where XMM is more than {SLOW_LIMIT}× slower than the best peer:")
    out.append(limit_list(slow, "the time of the", analysed))
    out.append(f"Workloads where XMM's peak RSS is more than {RSS_LIMIT}× the best peer's:")
    out.append(limit_list(heavy, "the peak RSS of the", analysed))
    return "".join(out)


def limit_list(entries, wording, analysed=frozenset()):
    """entries: [(benchmark, ratio, best peer)] as a markdown list; each says
    whether bench/analysis.md explains it."""
    if not entries:
        return " none.\n\n"
    lines = [f"- **{name}**: {value:.2f}× {wording} best peer ({peer})"
             + (": cause and fix below, under *Where XMM is behind*" if name in analysed
                else ": not analysed yet (bench/analysis.md)")
             for name, value, peer in entries]
    return "\n\n" + "\n".join(lines) + "\n\n"


def failures_section(results, failures):
    commands = results.meta.get("commands", {})
    rows = []
    for benchmark, case, allocator, error in failures:
        info = R.allocator_info(results, allocator)
        prefix = f"LD_PRELOAD={R.repository_path(info['library'])} " if info.get("library") else ""
        command = prefix + commands.get(benchmark, benchmark)
        rows.append([f"{benchmark} {case}".strip(), allocator, f"`{command}`", error])
    return ("### Failures\n\nEvery failed run, with the command that failed and its error "
            "(after a timeout, later repetitions of that benchmark are not run). A "
            "benchmark with a failed run is left out of the ratios and means above.\n\n"
            + table(["benchmark", "allocator", "command", "error"], rows) + "\n")


def method_section(results):
    meta = results.meta
    machine = meta["machine"]
    facts = [["CPU", machine["cpu"]], ["cores", str(machine["cores"])],
             ["memory", f"{machine['memory_gib']} GiB"], ["kernel", machine["kernel"]],
             ["OS", machine["os"]], ["transparent huge pages", machine["thp"]],
             ["compiler", machine["compiler"]]]
    facts += [[f"{name} (package)", version] for name, version in meta["tools"].items()]
    allocator_rows = [[a["name"], a["version"], f"`{R.repository_path(a['library'])}`" if a["library"]
                       else "(none: the system malloc)",
                       "yes" if a["available"] else f"no: {a['problem']}"]
                      for a in meta["allocators"]]
    commands = "\n".join(f"# {name}\n{command}" for name, command in meta["commands"].items())
    return (
        "## Machine and method\n\n" + table(["", ""], facts) + "\n"
        + table(["allocator", "version", "library (LD_PRELOAD)", "measured"], allocator_rows)
        + "\n"
        "Method:\n\n"
        "- Every benchmark is one unmodified binary; the allocator is swapped with "
        "`LD_PRELOAD`, and each run checks (with `dladdr(malloc)`) that malloc really "
        "resolved to the intended library.\n"
        f"- Runs alternate between allocators: {repetitions_text(meta)}, and in "
        "each, every benchmark runs once on every allocator, in an order rotated between "
        "benchmarks and repetitions. The tables give the median and the spread "
        "(min – max) of the repetitions.\n"
        "- *time / best* is the median time divided by the best median of that "
        "benchmark (1.00× is the best). For memcached, time is the time per operation "
        "(1 / the throughput memaslap reports).\n"
        "- *peak RSS* is the kernel's high-water mark of resident memory (`VmHWM`, or "
        "`ru_maxrss` from wait4 for sqlite3 and memcached, the figure `/usr/bin/time -v` "
        "prints), for the whole process, start-up footprint included (which dominates "
        "in the smallest workloads).\n"
        "- The workloads write into every block they allocate (first and last byte, and "
        "one byte per page), so an allocator cannot win by handing out untouched "
        "address space, and the compiler cannot remove the allocations.\n\n"
        "Commands (from the repository root; `make bench` builds and runs all of them). "
        "For every allocator but glibc, `LD_PRELOAD=<library>` goes in front:\n\n"
        f"```\nmake bench            # or: make bench QUICK=1\n{commands}\n```\n\n")


def benchmark_rows(results, name):
    rows = []
    medians_time = {a: results.cell(name, "", a).median_time() for a in results.allocators}
    medians_rss = {a: results.cell(name, "", a).median_rss() for a in results.allocators}
    best_time = R.best(v for a, v in medians_time.items() if results.cell(name, "", a).ok)
    best_rss = R.best(v for a, v in medians_rss.items() if results.cell(name, "", a).ok)
    for allocator in results.allocators:
        cell = results.cell(name, "", allocator)
        if cell.errors and not cell.times:
            rows.append([allocator, "**FAILED**", cell.errors[0], "", "", "", ""])
            continue
        if cell.errors:  # failed in some repetitions only: show both
            runs = len(cell.errors) + len(cell.times)
            rows.append([f"{allocator} (**FAILED** in {len(cell.errors)} of {runs} runs)",
                         fmt_seconds(cell.median_time()), spread(cell.times, fmt_seconds),
                         fmt_rate(cell.median_rate()), fmt_mib(cell.median_rss()), "–", "–"])
            continue
        if not cell.times:
            rows.append([allocator, "not run", "", "", "", "", ""])
            continue
        rows.append([allocator, fmt_seconds(cell.median_time()),
                     spread(cell.times, fmt_seconds), fmt_rate(cell.median_rate()),
                     fmt_mib(cell.median_rss()),
                     fmt_ratio(R.ratio(cell.median_time(), best_time)),
                     fmt_ratio(R.ratio(cell.median_rss(), best_rss))])
    return rows


def benchmark_section(results, benchmark, img_dir):
    name = benchmark["name"]
    time_label = "time per op" if benchmark["metric"] == "throughput" else "time"
    out = [f"### {name}\n\n{benchmark['summary']}.\n\n"]
    if name in NOTES:
        out.append(NOTES[name] + "\n\n")
    out.append(table(["allocator", f"median {time_label}", "spread (min – max)",
                      "throughput", "peak RSS", "time / best", "RSS / best"],
                     benchmark_rows(results, name)))
    extra = EXTRA_TABLES.get(name)
    if extra:
        out.append("\n" + extra(results))
    if img_dir:
        out.append(f"\n![{name}](img/{image_name(name)}.svg)\n")
    return "".join(out) + "\n"


def frag_table(results):
    rows = []
    for allocator in results.allocators:
        cell = results.cell("frag", "", allocator)
        if not cell.ok:
            continue
        get = cell.median_extra
        rows.append([allocator, fmt_mib(get("live_after_free_kb")),
                     fmt_mib(get("rss_after_free_kb")),
                     fmt_ratio(R.ratio(get("rss_after_free_kb"), get("live_after_free_kb"))),
                     fmt_mib(get("live_final_kb")), fmt_mib(get("rss_final_kb")),
                     fmt_ratio(R.ratio(get("rss_final_kb"), get("live_final_kb")))])
    return ("Memory after each phase (medians). RSS / live is the overhead: resident "
            "memory per byte the program still holds.\n\n"
            + table(["allocator", "live after free", "RSS after free", "RSS / live",
                     "live after realloc", "RSS after realloc", "RSS / live"], rows))


def peak_idle_table(results):
    rows = []
    for allocator in results.allocators:
        cell = results.cell("peak-idle", "", allocator)
        if not cell.ok:
            continue
        peak, after, end = (cell.median_rss(), cell.median_extra("rss_after_free_kb"),
                            cell.median_extra("rss_end_kb"))
        rows.append([allocator, fmt_mib(peak), fmt_mib(after), fmt_mib(end),
                     f"{100 * (1 - end / peak):.0f}%" if peak and end is not None else "–"])
    return ("The time above is the burst (allocate and free); what matters here is the "
            "memory kept afterwards.\n\n"
            + table(["allocator", "peak RSS", "RSS right after free", "RSS after idling",
                     "returned to the OS"], rows)
            + "\n![RSS over time](img/peak-idle-rss.svg)\n")


EXTRA_TABLES = {"frag": frag_table, "peak-idle": peak_idle_table}

# What to read in a result, where the table alone could mislead.
NOTES = {
    "cache-scratch": "A slow run here means the allocator handed a thread memory on a "
                     "cache line that another thread writes (false sharing). The processes "
                     "are tiny, so peak RSS is mostly the allocator's start-up footprint.",
    "cache-thrash": "As for cache-scratch: time shows false sharing; RSS is start-up "
                    "footprint.",
    "memcached": "memcached keeps its items in its own slab allocator (1 MiB pages taken "
                 "with malloc), so malloc is a small part of its work, and the load "
                 "generator shares the 2 cores with the server: differences within the "
                 "spread are noise. Every allocator serves the same operations, so the "
                 "peak RSS figures compare.",
    "sqlite": "Peak RSS includes the database itself (in memory) and SQLite's page cache.",
}


def micro_section(results, img_dir):
    families = results.benchmarks("micro")
    if not families:
        return ""
    out = ["## Microbenchmarks\n\n"
           "google-benchmark (`bench/micro/micro.cc`) against the plain malloc API. Cells: "
           "median time per operation (wall clock, all threads together: aggregate "
           "throughput), ± half the min–max spread, and the ratio to the best allocator "
           "of the row; **bold** is the best. `threads:N` runs N threads at once; "
           "`producer_consumer` allocates in one thread and frees in the other.\n\n"]
    for family in families:
        out.append(micro_family_section(results, family, img_dir))
    return "".join(out)


def micro_cell(cell, best_time):
    if cell.errors:
        runs = len(cell.errors) + len(cell.times)
        return f"FAILED in {len(cell.errors)} of {runs} runs: {cell.errors[0]}"
    if not cell.times:
        return "–"
    median = cell.median_time()
    plus_minus = (max(cell.times) - min(cell.times)) / 2 / median * 100
    text = f"{fmt_seconds(median)} ±{plus_minus:.0f}% ({fmt_ratio(median / best_time)})"
    return f"**{text}**" if median == best_time else text


def micro_family_section(results, family, img_dir):
    name = family["name"]
    rows = []
    # A run that crashed or hung reported no case: its error is on case "".
    whole_run = results.cells.get((name, ""), {})
    failures = "".join(
        f"**{a} FAILED** in {len(c.errors)} run(s), which reported no case"
        + (f"; {c.skipped} later repetition(s) not run" if c.skipped else "")
        + f": {escape(c.errors[0])}\n\n" for a, c in whole_run.items() if c.errors)
    for case in [c for c in results.cases(name) if c]:
        cells = [results.cell(name, case, a) for a in results.allocators]
        best_time = R.best(c.median_time() for c in cells if c.ok)
        rows.append([case] + [micro_cell(c, best_time) for c in cells])
    image = f"\n![{name}](img/{image_name(name)}.svg)\n" if img_dir else ""
    return (f"### {name.split(':', 1)[1]}\n\n" + failures
            + table(["case"] + results.allocators, rows) + image + "\n")


def image_name(benchmark):
    return benchmark.replace(":", "-")


def quick_section(quick, quick_dir):
    summary = Summary(quick)
    rows = []
    for benchmark in summary.macro:
        ratios = R.time_ratios(quick, benchmark, "", quick.allocators)
        rows.append([benchmark] + [
            "FAILED" if quick.cell(benchmark, "", a).errors else fmt_ratio(ratios[a])
            for a in quick.allocators])
    return (f"## Quick run (`make bench QUICK=1`)\n\nFrom `{quick_dir}/` "
            f"({quick.meta['date']}, {quick.meta.get('duration_s', '?')} s, one repetition, "
            "smaller sizes): time / best per workload. A first look only; the sections "
            "above are the reference.\n\n"
            + availability_note(quick)
            + table(["workload"] + quick.allocators, rows) + "\n"
            + summary_table(summary)
            + (("\nCosts that must not grow badly, QUICK parameters (smaller, shorter; see "
                "the commands in `" + quick_dir + "/meta.json`):\n\n"
                + table(["target", "XMM", "reference", "ratio", "met?"],
                        cost_target_rows(quick))) if quick.benchmarks("cost") else ""))


# ---- charts -------------------------------------------------------------------

def draw_charts(results, img_dir):
    os.makedirs(img_dir, exist_ok=True)
    for old in glob.glob(os.path.join(img_dir, "*.svg")) + glob.glob(os.path.join(img_dir, "*.png")):
        os.unlink(old)
    summary = Summary(results)
    draw_overview(results, summary, img_dir)
    for benchmark in results.benchmarks("workload") + results.benchmarks("program"):
        draw_benchmark(results, benchmark["name"], img_dir)
    for family in results.benchmarks("micro"):
        draw_micro(results, family["name"], img_dir)
    draw_timeline(results, img_dir)


def draw_overview(results, summary, img_dir):
    names = summary.macro
    allocators = results.allocators
    for metric, function, label in (("time", R.time_ratios, "time / best"),
                                    ("rss", R.rss_ratios, "peak RSS / best")):
        series = {a: [] for a in allocators}
        for name in names:
            ratios = function(results, name, "", allocators)
            for a in allocators:
                series[a].append(ratios[a] if results.cell(name, "", a).ok else None)
        plots.grouped_bars(os.path.join(img_dir, f"workloads-{metric}"),
                           f"{label} per workload (lower is better)", label, names, series,
                           log_scale=True, reference_line=1)
    macro_cases = [(b, "") for b in names]
    means = {"time (workloads)": [], "peak RSS (workloads)": [], "time (micro)": []}
    for a in allocators:
        means["time (workloads)"].append(summary.geomean_vs_best(a, R.time_ratios, macro_cases)[0])
        means["peak RSS (workloads)"].append(summary.geomean_vs_best(a, R.rss_ratios, macro_cases)[0])
        means["time (micro)"].append(
            summary.geomean_vs_best(a, R.time_ratios, R.micro_cases(results))[0])
    # Transposed: x = allocator, one bar per metric; colours then name metrics.
    plots.grouped_bars(os.path.join(img_dir, "summary"),
                       "geometric mean of ratio to best (lower is better)", "ratio",
                       allocators, {m: v for m, v in means.items()}, reference_line=1)


def draw_benchmark(results, name, img_dir):
    time_values, rss_values = {}, {}
    for a in results.allocators:
        cell = results.cell(name, "", a)
        if cell.ok:
            time_values[a] = (cell.median_time(), min(cell.times), max(cell.times))
            rss_values[a] = (cell.median_rss() / 1024, min(cell.rss) / 1024,
                             max(cell.rss) / 1024)
    metric = next(b["metric"] for b in results.meta["benchmarks"] if b["name"] == name)
    if metric == "throughput":
        time_values = {a: tuple(v * 1e6 for v in t) for a, t in time_values.items()}
        time_label = "µs per operation"
    else:
        time_label = "seconds"
    plots.allocator_panels(os.path.join(img_dir, image_name(name)), f"{name} (lower is better)",
                           results.allocators,
                           [(time_label, time_values), ("peak RSS, MiB", rss_values)])


def short_size(text):
    value = int(text)
    for unit, scale in (("M", 1 << 20), ("K", 1 << 10)):
        if value >= scale and value % scale == 0:
            return f"{value // scale}{unit}"
    return text


def short_case(case):
    """"malloc_free/1048576/threads:4" -> "1M t4": labels that fit a chart."""
    parts = []
    for part in case.split("/")[1:]:
        if part.startswith("threads:"):
            parts.append("t" + part.split(":")[1])
        elif part.isdigit():
            parts.append(short_size(part))
    if case.startswith("posix_memalign/") and parts:
        parts[0] = "a" + parts[0]  # the first argument is the alignment
    return " ".join(parts) or case


def draw_micro(results, name, img_dir):
    cases = [c for c in results.cases(name) if c]
    if not cases:
        return
    series = {a: [] for a in results.allocators}
    for case in cases:
        ratios = R.time_ratios(results, name, case, results.allocators)
        for a in results.allocators:
            series[a].append(ratios[a] if results.cell(name, case, a).ok else None)
    plots.grouped_bars(os.path.join(img_dir, image_name(name)),
                       f"{name}: time per operation / best (lower is better; "
                       "labels: aN = alignment, size, tN = N threads)", "time / best",
                       [short_case(c) for c in cases], series, log_scale=True,
                       reference_line=1)


def median_timeline(rows, allocator, benchmark="peak-idle", align="freed"):
    """The samples of all repetitions of `benchmark`, median by sample index.
    With `align`, time counts from the sample of that phase (bursts take
    different times on different allocators, and the idle phase is what
    the chart compares); without, x is the sample's number, from 1."""
    by_rep = {}
    for row in rows:
        if row["allocator"] == allocator and row.get("benchmark", "peak-idle") == benchmark:
            by_rep.setdefault(row["rep"], []).append(row)
    if not by_rep:
        return []
    series = []
    for samples in by_rep.values():
        if align:
            zero = next((float(r["t_s"]) for r in samples if r["phase"] == align), 0.0)
            series.append([(float(r["t_s"]) - zero, float(r["rss_kb"])) for r in samples])
        else:
            series.append([(index + 1, float(r["rss_kb"])) for index, r in enumerate(samples)])
    length = min(len(s) for s in series)
    points = []
    for index in range(length):
        times = sorted(s[index][0] for s in series)
        rss = sorted(s[index][1] for s in series)
        points.append((times[len(times) // 2], rss[len(rss) // 2] / 1024))
    return points


def draw_timeline(results, img_dir):
    series = {a: median_timeline(results.timeline, a) for a in results.allocators}
    series = {a: p for a, p in series.items() if p}
    if series:
        plots.lines_over_time(os.path.join(img_dir, "peak-idle-rss"),
                              "peak-idle: RSS over time (allocate, free all, then idle)",
                              "seconds since everything was freed (the burst is before 0)", "RSS, MiB",
                              series)


# ---- costs that must not grow badly (the "cost" group, issue 16) --------------

REALLOC_LIMIT = 2.0   # realloc growth: XMM within 2x glibc's time
IDLE_LIMIT = 1.1      # RSS after idling / after the release call: within 1.1x glibc's
MIX_LIMIT = 1.1       # size-mix peak RSS: within 1.1x the best peer's
FOOTPRINT_LIMIT = 1.1 # start-up footprint: peak RSS within 1.1x the best peer's
RELEASE_CALLS = {0: "none found", 1: "malloc_trim(0)", 2: "mallctl(\"arena.<all>.purge\")",
                 3: "MallocExtension_ReleaseFreeMemory()", 4: "mi_collect(true)"}


def cost_results(primary, results_dir):
    """(results, directory) of the cost group: the newer of the primary run
    (when it has the group) and bench/results/costs (`make bench-costs`,
    which measures the group again after a change to what it covers);
    (None, None) if neither has it."""
    candidates = []
    if primary is not None and primary.benchmarks("cost"):
        candidates.append((primary.meta["date"], primary, primary.directory))
    directory = os.path.join(results_dir, "costs")
    costs = R.load(directory)
    if costs is not None and costs.benchmarks("cost"):
        candidates.append((costs.meta["date"], costs, directory))
    if not candidates:
        return None, None
    _, results, chosen = max(candidates, key=lambda candidate: candidate[0])
    return results, chosen


def has_cost(results, name):
    return any(b["name"] == name for b in results.benchmarks("cost"))


def failure_text(cell):
    """"" when every run succeeded; else what failed, for a table cell."""
    if not cell.errors:
        return "" if cell.times else ("not run" if not cell.skipped else "skipped")
    runs = len(cell.errors) + len(cell.times) + cell.skipped
    skipped = f", {cell.skipped} later run(s) skipped" if cell.skipped else ""
    return f"**FAILED** in {len(cell.errors)} of {runs} runs{skipped}: {cell.errors[0]}"


def verdict(ratio, limit):
    if ratio is None:
        return "**not met**"
    return "met" if ratio <= limit else "**not met**"


def extra_kb(cell, key):
    return cell.median_extra(key) if cell.ok else None


def idle_at_10s(cell):
    value = extra_kb(cell, "rss_idle_10s_kb")
    return value if value is not None else extra_kb(cell, "rss_idle_end_kb")


def cost_target_rows(results):
    """[target, XMM, reference, ratio, met] for every target of issue 16
    whose benchmark ran."""
    rows = []
    cell = lambda name, allocator: results.cell(name, "", allocator)
    for name, size in (("realloc-growth-40M", "40 MiB"), ("realloc-growth-256M", "256 MiB")):
        if not has_cost(results, name):
            continue
        xmm, glibc = cell(name, "xmm"), cell(name, "glibc")
        reference = glibc.median_time() if glibc.ok else None
        ratio = R.ratio(xmm.median_time(), reference) if xmm.ok else None
        rows.append([f"realloc growth to {size}: time within {REALLOC_LIMIT:g}× glibc's",
                     fmt_seconds(xmm.median_time()) if xmm.ok else failure_text(xmm),
                     f"glibc {fmt_seconds(reference)}", fmt_ratio(ratio),
                     verdict(ratio, REALLOC_LIMIT)])
    if has_cost(results, "idle-return"):
        xmm, glibc = cell("idle-return", "xmm"), cell("idle-return", "glibc")
        for label, value in ((f"after {idle_label(results, 'idle-return')} idle", idle_at_10s),
                             ("after malloc_trim(0)",
                              lambda c: extra_kb(c, "rss_after_trim_kb"))):
            mine, theirs = value(xmm), value(glibc)
            ratio = R.ratio(mine, theirs)
            rows.append([f"idle-return: RSS {label} within {IDLE_LIMIT:g}× glibc's",
                         fmt_mib(mine) if xmm.ok else failure_text(xmm),
                         f"glibc {fmt_mib(theirs)}", fmt_ratio(ratio),
                         verdict(ratio, IDLE_LIMIT)])
    if has_cost(results, "idle-return-thp"):
        xmm = cell("idle-return-thp", "xmm")
        end, lowest = extra_kb(xmm, "rss_idle_end_kb"), extra_kb(xmm, "rss_idle_min_kb")
        ratio = R.ratio(end, lowest)
        rows.append([f"idle-return-thp (XMM_BACKGROUND=1): purged memory stays purged, "
                     f"RSS at the end of the idle within {IDLE_LIMIT:g}× its lowest",
                     fmt_mib(end) if xmm.ok else failure_text(xmm),
                     f"XMM's lowest {fmt_mib(lowest)}", fmt_ratio(ratio),
                     verdict(ratio, IDLE_LIMIT)])
    for name, threads in (("size-mix", "1 thread"), ("size-mix-2t", "2 threads")):
        if has_cost(results, name):
            rows.append(peak_rss_row(results, name, f"{name} ({threads})", MIX_LIMIT, fmt_mib))
    if has_cost(results, "size-drift"):
        rows.append(peak_rss_row(results, "size-drift", "size-drift (1 thread)", MIX_LIMIT,
                                 fmt_mib))
    rows += limit_rows(results)
    for benchmark in results.benchmarks("cost"):
        if benchmark["name"].startswith("footprint-"):
            rows.append(peak_rss_row(results, benchmark["name"], benchmark["name"],
                                     FOOTPRINT_LIMIT, fmt_kib))
    return rows


def peak_rss_row(results, name, label, limit, formatter):
    """The target row: XMM's median peak RSS within `limit` x the best peer's."""
    xmm = results.cell(name, "", "xmm")
    peer, reference = best_peer_rss(results, name)
    ratio = R.ratio(xmm.median_rss(), reference) if xmm.ok else None
    return [f"{label}: peak RSS within {limit:g}× the best peer's",
            formatter(xmm.median_rss()) if xmm.ok else failure_text(xmm),
            f"{peer} {formatter(reference)}", fmt_ratio(ratio), verdict(ratio, limit)]


def best_peer_rss(results, name):
    values = {p: results.cell(name, "", p).median_rss() for p in results.peers
              if results.cell(name, "", p).ok}
    if not values:
        return "–", None
    peer = min(values, key=values.get)
    return peer, values[peer]


def limit_rows(results):
    """The memory cgroup target: measured when a cgroup could be made, else
    said so, with peak RSS against the limit as the only evidence."""
    import suite as suite_lib  # the limit's size
    limit = suite_lib.SIZE_MIX_LIMIT_MB
    rows = []
    limited = [b["name"] for b in results.benchmarks("cost") if b["name"].endswith(f"-{limit}M")]
    for name in limited:
        xmm = results.cell(name, "", "xmm")
        survived = len(xmm.times)
        runs = survived + len(xmm.errors)
        rows.append([f"{name}: survives a {limit} MiB memory cgroup",
                     f"{survived} of {runs} runs survived" + (f": {xmm.errors[0]}" if xmm.errors
                                                              else ""),
                     "", "", "met" if runs and survived == runs else "**not met**"])
    if not limited:
        info = results.meta.get("memory_limit", {})
        why = info.get("reason") or "no memory cgroup was available"
        for name in ("size-mix", "size-mix-2t"):
            if not has_cost(results, name):
                continue
            xmm = results.cell(name, "", "xmm")
            peak = xmm.median_rss() if xmm.ok else None
            rows.append([f"{name}: survives a {limit} MiB memory cgroup",
                         f"not testable on this machine ({why}); peak RSS {fmt_mib(peak)}",
                         f"limit {limit} MiB", fmt_ratio(R.ratio(peak, limit * 1024)),
                         "**not met** (peak RSS above the limit)" if peak and peak > limit * 1024
                         else "not tested (peak RSS below the limit)"])
    return rows


def realloc_table(results, name):
    rows = []
    glibc = results.cell(name, "", "glibc")
    reference = glibc.median_time() if glibc.ok else None
    for allocator in results.allocators:
        cell = results.cell(name, "", allocator)
        if not cell.ok:
            rows.append([allocator, failure_text(cell), "", "", "", ""])
            continue
        rows.append([allocator, fmt_seconds(cell.median_time()), spread(cell.times, fmt_seconds),
                     f"{cell.median_extra('moves'):.0f}", fmt_mib(cell.median_rss()),
                     fmt_ratio(R.ratio(cell.median_time(), reference))])
    return table(["allocator", "median time", "spread (min – max)",
                  "calls that moved the block", "peak RSS", "time / glibc"], rows)


def idle_label(results, name):
    """How long the program idled ("10 s"), from its command line
    (idle-return ... IDLE_S SAMPLE_MS): RSS is read at 10 s, or at the end
    of a shorter idle."""
    try:
        seconds = int(results.meta["commands"][name].split()[-2])
    except (KeyError, IndexError, ValueError):
        return "10 s"
    return f"{min(seconds, 10)} s"


def idle_table(results, name):
    rows = []
    glibc = results.cell(name, "", "glibc")
    for allocator in results.allocators:
        cell = results.cell(name, "", allocator)
        if not cell.ok:
            rows.append([allocator, failure_text(cell)] + [""] * 7)
            continue
        call = cell.median_extra("trim_call")
        rows.append([allocator, fmt_mib(cell.median_rss()), fmt_mib(extra_kb(cell, "live_kb")),
                     fmt_mib(extra_kb(cell, "rss_after_free_kb")), fmt_mib(idle_at_10s(cell)),
                     fmt_mib(extra_kb(cell, "rss_after_trim_kb")),
                     RELEASE_CALLS.get(int(call) if call is not None else 0, "?"),
                     fmt_ratio(R.ratio(idle_at_10s(cell), idle_at_10s(glibc))),
                     fmt_ratio(R.ratio(extra_kb(cell, "rss_after_trim_kb"),
                                       extra_kb(glibc, "rss_after_trim_kb")))])
    return table(["allocator", "peak RSS", "still allocated", "RSS right after the frees",
                  f"RSS after {idle_label(results, name)} idle", "RSS after the release call",
                  "release call",
                  "idle / glibc", "released / glibc"], rows)


def idle_thp_table(results, name):
    rows = []
    for allocator in results.allocators:
        cell = results.cell(name, "", allocator)
        if not cell.ok:
            rows.append([allocator, failure_text(cell)] + [""] * 6)
            continue
        rows.append([allocator, fmt_mib(extra_kb(cell, "rss_after_free_kb")),
                     fmt_mib(idle_at_10s(cell)), fmt_mib(extra_kb(cell, "rss_idle_min_kb")),
                     fmt_mib(extra_kb(cell, "rss_idle_end_kb")),
                     fmt_mib(extra_kb(cell, "thp_idle_end_kb")),
                     fmt_mib(extra_kb(cell, "rss_after_trim_kb"))])
    return table(["allocator", "RSS right after the frees", f"at {idle_label(results, name)}",
                  "lowest while idle",
                  "at the end of the idle", "of which huge pages (AnonHugePages)",
                  "after the release call"], rows)


def size_mix_table(results, name):
    import suite as suite_lib
    limit = suite_lib.SIZE_MIX_LIMIT_MB
    return peak_rss_table(
        results, name,
        ["RSS at the end (all freed, threads joined)", f"peak below {limit} MiB in every run"],
        lambda cell: [fmt_mib(extra_kb(cell, "rss_end_kb")),
                      "yes" if max(cell.rss) < limit * 1024 else "**no**"])


def peak_rss_table(results, name, extra_headers=(), extra_cells=None):
    """Each allocator's median time and peak RSS against the best peer's,
    then the columns `extra_cells(cell)` gives under `extra_headers`."""
    rows = []
    _, best = best_peer_rss(results, name)
    for allocator in results.allocators:
        cell = results.cell(name, "", allocator)
        if not cell.ok:
            rows.append([allocator, failure_text(cell)] + [""] * (3 + len(extra_headers)))
            continue
        peak = cell.median_rss()
        rows.append([allocator, fmt_seconds(cell.median_time()), fmt_mib(peak),
                     spread(cell.rss, fmt_mib), fmt_ratio(R.ratio(peak, best))]
                    + (extra_cells(cell) if extra_cells else []))
    return table(["allocator", "median time", "peak RSS", "spread of peak RSS",
                  "peak RSS / best peer"] + list(extra_headers), rows)


def footprint_table(results, name):
    rows = []
    _, best = best_peer_rss(results, name)
    glibc = results.cell(name, "", "glibc")
    for allocator in results.allocators:
        cell = results.cell(name, "", allocator)
        if not cell.ok:
            rows.append([allocator, failure_text(cell)] + [""] * 4)
            continue
        peak = cell.median_rss()
        rows.append([allocator, fmt_kib(peak), spread(cell.rss, fmt_kib),
                     fmt_kib(peak - glibc.median_rss()) if glibc.ok else "–",
                     fmt_ratio(R.ratio(peak, best))])
    return table(["allocator", "peak RSS", "spread of peak RSS", "above glibc's",
                  "peak RSS / best peer"], rows)


def limited_table(results, name):
    rows = []
    for allocator in results.allocators:
        cell = results.cell(name, "", allocator)
        runs = len(cell.times) + len(cell.errors)
        rows.append([allocator, f"{len(cell.times)} of {runs}",
                     fmt_mib(cell.median_rss()) if cell.times else "–",
                     cell.errors[0] if cell.errors else ""])
    return table(["allocator", "runs that survived", "peak RSS (survivors)", "error"], rows)


COST_NOTES = {
    "realloc-growth-40M": "Growing a buffer to N bytes in fixed steps should cost O(N) "
                          "copying in total: in place, or by moving pages with `mremap`. "
                          "*Calls that moved the block* counts the reallocs that returned "
                          "a new address; a run that hits the timeout says how far it got.",
    "idle-return": "The program makes no malloc or free call at all while it idles (samples "
                   "are read with open/read and written with write(2)), so only a timer or "
                   "a thread of the allocator can give memory back then. The release call is "
                   "malloc_trim(0) where the allocator provides it, else its own purge "
                   "function.",
    "idle-return-thp": "`XMM_BACKGROUND=1` is set for every allocator (only XMM reads it); "
                       "transparent huge pages are in `madvise` mode on this machine, so only "
                       "memory advised with `MADV_HUGEPAGE` (XMM's arena chunks under the "
                       "default `XMM_THP=auto`) can be collapsed into huge pages by khugepaged.",
    "footprint": "Each run is one short process with the allocator preloaded (glibc: none); "
                 "its peak RSS is its own (`wait4`'s `ru_maxrss`), so it counts the "
                 "allocator's library and the libraries it loads as well as its heap (XMM "
                 "loads libnuma only on machines with more than one NUMA node).",
    "size-drift": "Each class is used for a few hundred buffers and then not again until the "
                  "next pass: what an allocator keeps of the classes it passed shows as peak "
                  "RSS above the live window's 34 MiB.",
    "size-mix": "Blocks are chained through their first word: the benchmark keeps no array of "
                "pointers, so the RSS is the allocator's. At most one phase of blocks (150 MiB of "
                "requested bytes; QUICK: 50 MiB) is live at any time.",
}


def cost_section(results, directory, img_dir):
    meta = results.meta
    commands = meta.get("commands", {})
    names = [b["name"] for b in results.benchmarks("cost")]
    listing = "\n".join(f"# {name}\n{commands.get(name, '?')}" for name in names)
    out = ["## Costs that must not grow badly\n\n",
           "The workloads of issue 16 whose cost must stay proportional to the work: "
           "growing one buffer by realloc, giving memory back while the program idles, and "
           "memory when the block size changes phase by phase. From "
           f"`{directory}/` ({meta['mode']} run, {repetitions_text(meta, 'other')}, "
           f"{meta['date']}, {meta.get('duration_s', '?')} s); runs alternate between "
           "allocators as in the rest of this page, and the tables give medians."
           + load_note(meta) + " Most rows are RSS, which the load does not change; for "
           "the realloc times, compare the spreads. Reproduce with `make bench-costs` (this group alone, about 30 minutes; "
           "`make bench` runs it with everything else), or one command at a time, with "
           "`LD_PRELOAD=<library>` in front for every allocator but glibc:\n\n"
           f"```\nmake bench-costs       # or: make bench-costs REPS=5\n{listing}\n```\n\n",
           "### Targets (reported, not asserted)\n\n",
           table(["target", "XMM", "reference", "ratio", "met?"], cost_target_rows(results)),
           "\n"]
    for benchmark in results.benchmarks("cost"):
        name = benchmark["name"]
        out.append(f"### {name}\n\n{benchmark['summary']}.\n\n")
        note = cost_note(results, name)
        if note:
            out.append(note + "\n\n")
        if name.startswith("realloc-growth"):
            out.append(realloc_table(results, name))
        elif name == "idle-return":
            out.append(idle_table(results, name))
        elif name == "idle-return-thp":
            out.append(idle_thp_table(results, name))
        elif results.meta.get("memory_limit", {}).get("available") and name.endswith("M"):
            out.append(limited_table(results, name))
        elif name.startswith("size-mix"):
            out.append(size_mix_table(results, name))
        elif name == "size-drift":
            out.append(peak_rss_table(results, name))
        elif name.startswith("footprint-"):
            out.append(footprint_table(results, name))
        if img_dir and name in COST_CHARTS:
            out.append(f"\n![{name}](img/{COST_CHARTS[name]}.svg)\n")
        out.append("\n")
    return "".join(out)


def cost_note(results, name):
    if name.startswith("realloc-growth"):
        return COST_NOTES["realloc-growth-40M"]
    if name.startswith("size-mix") and name.endswith("M"):
        return ("Run inside " + results.meta.get("memory_limit", {}).get("how", "a memory cgroup")
                + ": a run killed by the OOM killer failed.")
    if name.startswith("size-mix"):
        return COST_NOTES["size-mix"]
    if name.startswith("footprint-"):
        return COST_NOTES["footprint"]
    return COST_NOTES.get(name, "")


# Benchmark -> the chart shown under its table (both realloc cases share one).
COST_CHARTS = {"realloc-growth-256M": "cost-realloc-growth", "idle-return": "cost-idle-return",
               "idle-return-thp": "cost-idle-return-thp", "size-mix": "cost-size-mix",
               "size-mix-2t": "cost-size-mix-2t"}


def draw_cost_charts(results, img_dir):
    os.makedirs(img_dir, exist_ok=True)
    names = [b["name"] for b in results.benchmarks("cost") if b["name"].startswith("realloc")]
    if names:
        series = {a: [] for a in results.allocators}
        for name in names:
            ratios = R.time_ratios(results, name, "", ["glibc"])
            for a in results.allocators:
                series[a].append(ratios[a] if results.cell(name, "", a).ok else None)
        plots.grouped_bars(os.path.join(img_dir, "cost-realloc-growth"),
                           "realloc growth: time / glibc (log scale; no bar: timed out)",
                           "time / glibc", names, series, log_scale=True, reference_line=1,
                           ymin=0.1)
    for name, title, xlabel, align in (
            ("idle-return", "idle-return: RSS while the program idles (no malloc calls)",
             "seconds since the frees (the burst is before 0; last point: after the release "
             "call)", "freed"),
            ("idle-return-thp", "idle-return-thp: RSS while idling, XMM_BACKGROUND=1",
             "seconds since the frees (last point: after the release call)", "freed"),
            ("size-mix", "size-mix: RSS after each phase (all blocks freed), 1 thread",
             "phase (12 sizes, 16 B to 37.5 MiB, twice over)", None),
            ("size-mix-2t", "size-mix-2t: RSS after each phase (all blocks freed), 2 threads",
             "phase (12 sizes, 16 B to 37.5 MiB, twice over)", None)):
        series = {a: median_timeline(results.timeline, a, name, align)
                  for a in results.allocators}
        series = {a: p for a, p in series.items() if p}
        if series:
            plots.lines_over_time(os.path.join(img_dir, f"cost-{name}"), title, xlabel,
                                  "RSS, MiB", series)


# ---- entry points -------------------------------------------------------------

def write_doc(primary, primary_dir, quick, quick_dir, doc_path, img_dir, results_dir):
    summary = Summary(primary)
    charts = plots.available()
    costs, costs_dir = cost_results(primary, results_dir)
    if charts:
        draw_charts(primary, img_dir)
        if costs is not None:
            draw_cost_charts(costs, img_dir)
    else:
        print("report: gnuplot not found, charts not drawn (make bench-deps)", file=sys.stderr)
    chart_dir = img_dir if charts else None
    analysis, analysed = load_analysis()
    parts = [header_section(primary, primary_dir), summary_section(summary, chart_dir, analysed),
             analysis_section(analysis), "## Workloads\n\n"]
    parts += [benchmark_section(primary, b, chart_dir) for b in primary.benchmarks("workload")]
    parts.append("## Real programs\n\n")
    parts += [benchmark_section(primary, b, chart_dir) for b in primary.benchmarks("program")]
    if costs is not None:
        parts.append(cost_section(costs, costs_dir, chart_dir))
    parts.append(micro_section(primary, chart_dir))
    parts.append(hand_written_section(
        HIT_PATH, {HIT_PATH_MARKER: hit_path_table.tables(primary_dir)}))
    parts.append(hand_written_section(PROFILE_OVERHEAD))
    parts.append(method_section(primary))
    if quick is not None and quick is not primary:
        parts.append(quick_section(quick, quick_dir))
    with open(doc_path, "w") as output:
        output.write("".join(parts).rstrip() + "\n")
    print(f"report: wrote {doc_path}" + (f" and {img_dir}/" if charts else ""))


def print_text(results):
    """Medians side by side, and XMM / glibc when both ran."""
    allocators = results.allocators
    print(f"{'case':44}" + "".join(f"{a:>14}" for a in allocators)
          + ("   xmm/glibc" if {"xmm", "glibc"} <= set(allocators) else ""))
    for (benchmark, case) in sorted(results.cells, key=lambda k: (k[0], R.case_sort_key(k[1]))):
        cells = {a: results.cell(benchmark, case, a) for a in allocators}
        line = f"{(case or benchmark):44}"
        for a in allocators:
            line += f"{'FAILED' if cells[a].errors else fmt_seconds(cells[a].median_time()):>14}"
        if "xmm" in cells and "glibc" in cells and cells["xmm"].ok and cells["glibc"].ok:
            line += f"   {cells['xmm'].median_time() / cells['glibc'].median_time():9.2f}×"
        print(line)
    for allocator in results.meta["allocators"]:
        if not allocator["available"]:
            print(f"{allocator['name']}: not measured: {allocator['problem']}")
    for benchmark, case, allocator, error in Summary(results).failures():
        print(f"FAILED {allocator} {benchmark} {case}: {error}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", default="bench/results")
    parser.add_argument("--doc", default="docs/benchmarks.md")
    parser.add_argument("--img", default="docs/img")
    parser.add_argument("--text", metavar="DIR", help="print one result set and exit")
    args = parser.parse_args()
    if args.text:
        results = R.load(args.text)
        if results is None:
            sys.exit(f"report: no results in {args.text}")
        print_text(results)
        return
    full_dir, quick_dir = (os.path.join(args.results, m) for m in ("full", "quick"))
    full, quick = R.load(full_dir), R.load(quick_dir)
    primary, primary_dir = (full, full_dir) if full else (quick, quick_dir)
    if primary is None:
        sys.exit(f"report: no results under {args.results}/ (run `make bench` first)")
    os.makedirs(os.path.dirname(args.doc) or ".", exist_ok=True)
    write_doc(primary, primary_dir, quick, quick_dir, args.doc, args.img, args.results)


if __name__ == "__main__":
    main()
