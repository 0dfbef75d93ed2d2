#!/usr/bin/env python3
"""The heap profiler's cost on bench/micro: XMM with XMM_PROFILE unset
against XMM with XMM_PROFILE=1 (or another setting), runs alternating.

usage: profile_overhead.py [--micro PATH] [--xmm PATH] [--reps N]
                           [--profile VALUE] [--filter REGEX] [--min-time S]
                           [--quick]

Off is XMM_PROFILE=0, which is the same as unset (see run_micro). For
each repetition the micro binary runs once per setting, the order
swapped every repetition, so that a noisy stretch of the (shared) machine
lands on both alike. Each case's time per item is the median over the
repetitions; the table gives both medians, their ratio, and the geometric
mean of the ratios. Prints markdown (docs/benchmarks.md, "Heap profiler
overhead").
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_micro(micro, xmm, profile, extra):
    env = dict(os.environ)
    for name in ("XMM_PROFILE", "XMM_PROFILE_FILE", "XMM_PROFILE_SIGNAL", "XMM_LEAKS"):
        env.pop(name, None)
    env["LD_PRELOAD"] = os.path.abspath(xmm)
    # Off is XMM_PROFILE=0 (as unset), so that both runs have environments
    # of the same size: the environment's size moves the stack, and the
    # alignment of a benchmark's stack alone moves its time by a few %.
    env["XMM_PROFILE"] = profile or "0"
    env["XMM_PROFILE_FILE"] = "/dev/null"  # the dump at exit, not kept
    output = subprocess.run([micro] + extra + ["--benchmark_format=json"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True,
                            text=True).stdout
    report = json.loads(output)
    times = {}
    for entry in report["benchmarks"]:
        if entry.get("run_type", "iteration") != "iteration" or "items_per_second" not in entry:
            continue
        times[entry["name"]] = 1e9 / entry["items_per_second"]  # ns per item
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--micro", default=os.path.join(REPO, "build/bench/micro/micro"))
    parser.add_argument("--xmm", default=os.path.join(REPO, "build/libxmm.so"))
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--profile", default="1", help="XMM_PROFILE when on (default 1)")
    parser.add_argument("--filter", default="", help="--benchmark_filter")
    parser.add_argument("--min-time", default="0.1", help="--benchmark_min_time")
    parser.add_argument("--quick", action="store_true", help="micro --quick")
    arguments = parser.parse_args()
    extra = (["--quick"] if arguments.quick else []) + [f"--benchmark_min_time={arguments.min_time}"]
    if arguments.filter:
        extra.append(f"--benchmark_filter={arguments.filter}")
    settings = ["", arguments.profile]
    samples = {setting: {} for setting in settings}
    for rep in range(arguments.reps):
        order = settings if rep % 2 == 0 else settings[::-1]
        for setting in order:
            print(f"rep {rep + 1}/{arguments.reps}: XMM_PROFILE={setting or '0'}",
                  file=sys.stderr, flush=True)
            for name, ns in run_micro(arguments.micro, arguments.xmm, setting, extra).items():
                samples[setting].setdefault(name, []).append(ns)
    off, on = samples[""], samples[arguments.profile]
    ratios = []
    print(f"| case | off (ns) | XMM_PROFILE={arguments.profile} (ns) | on / off |")
    print("|---|---|---|---|")
    for name in off:
        if name not in on:
            continue
        a, b = statistics.median(off[name]), statistics.median(on[name])
        ratios.append(b / a)
        case = name.replace("/real_time", "")
        print(f"| {case} | {a:.1f} | {b:.1f} | {b / a:.3f} |")
    if ratios:
        mean = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
        print(f"\nGeometric mean of on / off over {len(ratios)} cases: **{mean:.3f}**"
              f" ({arguments.reps} repetitions, medians).")


if __name__ == "__main__":
    main()
