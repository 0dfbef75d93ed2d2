"""What the results were measured on and with: saved in meta.json so the
report can be regenerated later, on another machine, from the raw data."""
import datetime
import os
import platform
import shlex
import subprocess

import allocators as allocator_lib
import results as results_lib
import suite as suite_lib

TOOL_PACKAGES = ["gcc-12", "libbenchmark-dev", "memcached", "libmemcached-tools", "sqlite3"]


def _first_line(argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError):
        return "unknown"


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_gib():
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def distribution():
    try:
        for line in open("/etc/os-release"):
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "unknown"


def transparent_huge_pages():
    try:
        return open("/sys/kernel/mm/transparent_hugepage/enabled").read().strip()
    except OSError:
        return "unknown"


def load_average():
    """The 1-minute load average: on a shared machine, how busy it was."""
    try:
        return float(open("/proc/loadavg").read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def machine_facts():
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": memory_gib(),
        "kernel": platform.release(),
        "os": distribution(),
        "thp": transparent_huge_pages(),
        "compiler": _first_line(["gcc", "--version"]),
    }


def command_lines(suite, context):
    """The exact command of each benchmark; LD_PRELOAD=<library> goes in
    front of it for every allocator but glibc."""
    commands = {}
    for benchmark in suite:
        prefix = "".join(f"{k}={shlex.quote(v)} " for k, v in benchmark.env.items())
        if benchmark.memory_limit_mb and context.limiter is not None:
            prefix += context.limiter.command_prefix(benchmark.memory_limit_mb)
        commands[benchmark.name] = prefix + shlex.join(benchmark.argv)
    if any(b.kind == "memcached" for b in suite):
        commands["memcached (load, not preloaded)"] = shlex.join(
            suite_lib.memcached_load(context.quick))
    return commands


def describe(allocators, suite, mode, reps, context):
    return {
        "mode": mode,
        "repetitions": reps,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_facts(),
        "allocators": [
            {"name": a.name, "library": results_lib.repository_path(a.library),
             "version": a.version, "available": a.available, "problem": a.problem}
            for a in allocators],
        "tools": {p: allocator_lib.package_version(p) for p in TOOL_PACKAGES},
        "benchmarks": [
            {"name": b.name, "group": b.group, "summary": b.summary, "metric": b.metric}
            for b in suite],
        "commands": command_lines(suite, context),
        "memory_limit": memory_limit(context),
    }


def memory_limit(context):
    """Whether memory-limited runs (size-mix-450M) could be made, and how."""
    limiter = context.limiter
    if limiter is None:
        return {"available": False, "how": "", "reason": "not probed"}
    return {"available": limiter.available, "how": limiter.describe(),
            "reason": limiter.reason}
