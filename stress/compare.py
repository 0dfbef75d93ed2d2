#!/usr/bin/env python3
"""Runs xmm-stress on XMM and on glibc and prints them side by side.

Used by `make run`. Each run is `xmm-stress --json` with the same pattern,
length, threads and seed; the table shows allocations per second (per
pattern and in total), malloc and free p99 latency, peak RSS and the
integrity verdict, with the ratio xmm/glibc.

    stress/compare.py [--stress build/xmm-stress] [--seconds 10]
                      [--pattern all] [-- more xmm-stress options]

Exit status: 0 when both runs passed (exit 0), 1 otherwise.
"""
import argparse
import json
import subprocess
import sys

ALLOCATORS = ("xmm", "glibc")


def run_stress(stress, allocator, arguments):
    """One run; returns (exit status, parsed JSON or None). The progress
    line and any failure message go straight to our stderr."""
    command = [stress, "--alloc", allocator, "--json"] + arguments
    print(f"running: {' '.join(command)}", file=sys.stderr, flush=True)
    completed = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    try:
        report = json.loads(completed.stdout)
    except json.JSONDecodeError:
        report = None
    return completed.returncode, report


def format_count(value):
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= limit:
            return f"{value / limit:.2f} {suffix}"
    return f"{value:.0f}"


def format_ns(value):
    if value >= 1e6:
        return f"{value / 1e6:.2f} ms"
    if value >= 1e4:
        return f"{value / 1e3:.1f} us"
    return f"{value:.0f} ns"


def format_mib(kib):
    return f"{kib / 1024:.1f} MiB"


def ratio(xmm_value, glibc_value):
    if xmm_value is None or glibc_value is None or not glibc_value:
        return "-"
    return f"{xmm_value / glibc_value:.2f}x"


def phase_rates(report):
    """Allocations per second of each pattern; None for a phase cut short
    (its rate over a fraction of a second means nothing)."""
    if report is None:
        return {}
    return {phase["pattern"]: phase["allocs_per_sec"] if phase["completed"] else None
            for phase in report["phases"]}


def rate_text(rates, pattern):
    if pattern not in rates:
        return "-"
    return "stopped" if rates[pattern] is None else format_count(rates[pattern])


def field(report, name):
    return None if report is None else report[name]


def verdict(status, report):
    if report is None:
        return f"no report (exit {status})"
    if report["integrity"] != "ok":
        return "CORRUPT"
    if report["allocation_failed"]:
        return "ALLOC FAILED"
    return "OK" if status == 0 else f"exit {status}"


def table_rows(results):
    """(label, xmm text, glibc text, ratio text) for every row."""
    (xmm_status, xmm), (glibc_status, glibc) = results["xmm"], results["glibc"]
    rows = []
    xmm_rates, glibc_rates = phase_rates(xmm), phase_rates(glibc)
    for pattern in dict.fromkeys(list(xmm_rates) + list(glibc_rates)):
        x, g = xmm_rates.get(pattern), glibc_rates.get(pattern)
        rows.append((f"allocs/s  {pattern}", rate_text(xmm_rates, pattern),
                     rate_text(glibc_rates, pattern), ratio(x, g)))
    measures = (("allocs/s  total", "allocs_per_sec", format_count),
                ("malloc p99", "malloc_p99_ns", format_ns),
                ("free p99", "free_p99_ns", format_ns),
                ("peak RSS", "peak_rss_kib", format_mib))
    for label, name, formatter in measures:
        x, g = field(xmm, name), field(glibc, name)
        rows.append((label, "-" if x is None else formatter(x),
                     "-" if g is None else formatter(g), ratio(x, g)))
    rows.append(("integrity", verdict(xmm_status, xmm), verdict(glibc_status, glibc), ""))
    return rows


def print_table(results, description):
    print(description)
    print()
    print(f"{'':28} {'xmm':>14} {'glibc':>14} {'xmm/glibc':>10}")
    for label, xmm_text, glibc_text, ratio_text in table_rows(results):
        print(f"{label:28} {xmm_text:>14} {glibc_text:>14} {ratio_text:>10}")
    print()
    print("allocs/s: higher is better; p99 and peak RSS: lower is better.")
    for allocator, (status, report) in results.items():
        if report is not None and report["failure"]:
            print(f"{allocator} stopped in {report['phases'][-1]['pattern']}: {report['failure']}")
        elif report is None:
            print(f"{allocator}: xmm-stress exited with status {status} without a report")


def describe(report, seconds):
    if report is None:
        return f"xmm-stress, {seconds:g} s per allocator"
    return (f"xmm-stress --pattern {report['pattern']}, {seconds:g} s per allocator, "
            f"{report['threads']} threads, sizes {report['sizes']}, seed {report['seed']}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stress", default="build/xmm-stress", help="the xmm-stress binary")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each run")
    parser.add_argument("--pattern", default="all")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("extra", nargs="*", help="more xmm-stress options (after --)")
    options = parser.parse_args()
    arguments = ["--pattern", options.pattern, "--seconds", f"{options.seconds:g}",
                 "--seed", str(options.seed)] + options.extra
    results = {allocator: run_stress(options.stress, allocator, arguments)
               for allocator in ALLOCATORS}
    print()
    print_table(results, describe(results["xmm"][1] or results["glibc"][1], options.seconds))
    return 0 if all(status == 0 for status, _ in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
