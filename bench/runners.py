"""Running one benchmark on one allocator and reading what it measured.

Every process runs in its own session (process group), so a timeout kills
it with all its children, and is reaped with wait4, whose rusage gives the
peak RSS (ru_maxrss, the figure /usr/bin/time -v reports) of programs that
do not print their own.
"""
import json
import os
import pwd
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field

import suite as suite_lib


@dataclass
class Context:
    bench_build: str
    quick: bool
    limiter: object = field(default=None)  # cgroup.Limiter, for memory-limited runs


@dataclass
class Outcome:
    stdout: str
    stderr: str
    wall_s: float
    max_rss_kb: int
    error: str  # "" when the process exited 0 within its time


def describe_exit(status, timed_out, timeout):
    if timed_out:
        return f"timed out after {timeout:g} s"
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        return f"killed by signal {signal.Signals(number).name} ({number})"
    code = os.WEXITSTATUS(status)
    return f"exit status {code}" if code else ""


def tail(text, lines=6, limit=600):
    """The end of stderr, enough to tell what went wrong."""
    return " | ".join(text.strip().splitlines()[-lines:])[-limit:]


def run_process(argv, env, timeout, preexec_fn=None):
    """Runs argv to completion (or kills it after `timeout` s)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.monotonic()
        try:
            process = subprocess.Popen(argv, env=env, stdout=out, stderr=err,
                                       stdin=subprocess.DEVNULL, start_new_session=True,
                                       preexec_fn=preexec_fn)
        except OSError as problem:
            return Outcome("", "", 0.0, 0, f"could not start {argv[0]}: {problem}")
        timed_out = threading.Event()

        def kill():
            timed_out.set()
            kill_group(process.pid)

        timer = threading.Timer(timeout, kill)
        timer.start()
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.monotonic() - started
        timer.cancel()
        process.returncode = status  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    error = describe_exit(status, timed_out.is_set(), timeout)
    if error and stderr.strip():
        error += ": " + tail(stderr)
    return Outcome(stdout, stderr, wall, usage.ru_maxrss, error)


def kill_group(pid):
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def parse_fields(line):
    fields = {}
    for item in line.split()[1:]:
        key, _, value = item.partition("=")
        fields[key] = value
    return fields


def parse_result_line(stdout):
    """The key=value fields of a workload's "result" line."""
    for line in stdout.splitlines():
        if line.startswith("result "):
            return parse_fields(line)
    raise ValueError("no result line in the output")


def check_library(reported, allocator):
    """"" if malloc resolved to the allocator's library, else the problem."""
    if reported != allocator.expected_malloc:
        return (f"LD_PRELOAD did not take effect: malloc resolved to {reported}, "
                f"expected {allocator.expected_malloc}")
    return ""


def failed(error):
    return {"status": "failed", "error": error}


def number(text):
    return float(text) if text not in ("", None) else None


# ---- workloads --------------------------------------------------------------

WORKLOAD_FIELDS = {"workload", "allocator", "elapsed_s", "ops", "ops_per_s", "peak_rss_kb"}


def workload_environment(benchmark, allocator):
    """The allocator's environment plus the benchmark's own variables."""
    env = allocator.environment()
    env.update(benchmark.env)
    return env


def last_progress(stdout):
    """The fields of the last "progress" line a workload printed, as text
    ("reached 52.0 MiB after 171.2 s"), or ""."""
    lines = [line for line in stdout.splitlines() if line.startswith("progress ")]
    if not lines:
        return ""
    fields = parse_fields(lines[-1])
    return f"reached {fields.get('mb', '?')} MiB after {fields.get('elapsed_s', '?')} s"


def run_limited(benchmark, env, context):
    """Runs the benchmark inside a memory cgroup of benchmark.memory_limit_mb."""
    limiter = context.limiter
    if limiter is None or not limiter.available:
        reason = limiter.reason if limiter is not None else "no limiter"
        return Outcome("", "", 0.0, 0, f"no memory cgroup can be made here: {reason}")
    argv, preexec, cleanup = limiter.prepare(benchmark.argv, benchmark.memory_limit_mb)
    try:
        outcome = run_process(argv, env, benchmark.timeout, preexec_fn=preexec)
    finally:
        cleanup()
    if outcome.error.startswith("killed by signal SIGKILL"):
        outcome.error = (f"killed by SIGKILL in the {benchmark.memory_limit_mb} MiB memory "
                         "cgroup (out of memory)" + outcome.error[len("killed by signal SIGKILL (9)"):])
    return outcome


def run_workload(benchmark, allocator, context):
    env = workload_environment(benchmark, allocator)
    if benchmark.memory_limit_mb:
        outcome = run_limited(benchmark, env, context)
    else:
        outcome = run_process(benchmark.argv, env, benchmark.timeout)
    if outcome.error:
        progress = last_progress(outcome.stdout)
        return [failed(outcome.error + (f" ({progress})" if progress else ""))], []
    try:
        result = parse_result_line(outcome.stdout)
    except ValueError as problem:
        return [failed(f"{problem}: {tail(outcome.stderr)}")], []
    problem = check_library(result.get("allocator"), allocator)
    if problem:
        return [failed(problem)], []
    extra = {k: number(v) for k, v in result.items() if k not in WORKLOAD_FIELDS}
    row = {"status": "ok", "time_s": float(result["elapsed_s"]),
           "throughput": float(result["ops_per_s"]),
           "peak_rss_kb": int(result["peak_rss_kb"]), "extra": extra}
    return [row], parse_samples(outcome.stdout)


def parse_samples(stdout):
    samples = []
    for line in stdout.splitlines():
        if line.startswith("sample "):
            fields = parse_fields(line)
            samples.append({"t_s": float(fields["t_s"]), "rss_kb": int(fields["rss_kb"]),
                            "thp_kb": int(fields["thp_kb"]) if "thp_kb" in fields else "",
                            "phase": fields.get("phase", "")})
    return samples


# ---- google-benchmark -------------------------------------------------------

def case_name(name):
    """"malloc_free/16/real_time/threads:1" -> "malloc_free/16/threads:1"."""
    return "/".join(p for p in name.split("/") if p != "real_time")


def run_micro(benchmark, allocator, context):
    outcome = run_process(benchmark.argv, allocator.environment(), benchmark.timeout)
    if outcome.error:
        return [failed(outcome.error)], []
    try:
        report = json.loads(outcome.stdout)
    except json.JSONDecodeError as problem:
        return [failed(f"bad JSON from the benchmark ({problem}): {tail(outcome.stderr)}")], []
    problem = check_library(report.get("context", {}).get("malloc_library"), allocator)
    if problem:
        return [failed(problem)], []
    rows = []
    for entry in report.get("benchmarks", []):
        if entry.get("run_type", "iteration") != "iteration":
            continue
        case = case_name(entry["name"])
        if entry.get("error_occurred"):
            rows.append(dict(failed(entry.get("error_message", "error")), case=case))
            continue
        rate = float(entry["items_per_second"])
        rows.append({"case": case, "status": "ok", "time_s": 1.0 / rate if rate else None,
                     "throughput": rate, "peak_rss_kb": None})
    return rows or [failed("the benchmark reported no results")], []


# ---- sqlite3 ----------------------------------------------------------------

def run_sqlite(benchmark, allocator, context):
    outcome = run_process(benchmark.argv, allocator.environment(), benchmark.timeout)
    if outcome.error:
        return [failed(outcome.error)], []
    rows = suite_lib.sqlite_rows(context.quick)
    return [{"status": "ok", "time_s": outcome.wall_s, "throughput": rows / outcome.wall_s,
             "peak_rss_kb": outcome.max_rss_kb, "extra": {"rows": rows}}], []


# ---- memcached --------------------------------------------------------------

def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """A server process reaped with wait4 (for its rusage), never by Popen."""

    def __init__(self, argv, env, err_file):
        self.err_file = err_file
        self.process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                                        stderr=err_file, stdin=subprocess.DEVNULL,
                                        start_new_session=True)
        self.status = None
        self.max_rss_kb = 0

    def exited(self):
        """True once the process has ended (it is then reaped)."""
        if self.status is None:
            pid, status, usage = os.wait4(self.process.pid, os.WNOHANG)
            if pid:
                self._reaped(status, usage)
        return self.status is not None

    def _reaped(self, status, usage):
        self.status = status
        self.max_rss_kb = usage.ru_maxrss
        self.process.returncode = status

    def wait_for_port(self, port, seconds=10.0):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.exited():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return True
            except OSError:
                time.sleep(0.05)
        return False

    def stop(self):
        """SIGTERM (SIGKILL after 10 s); returns "" or how it failed. A
        server that ended before being asked to has failed, whatever its
        status."""
        died_early = self.exited()
        if not died_early:
            os.kill(self.process.pid, signal.SIGTERM)
            timer = threading.Timer(10, kill_group, [self.process.pid])
            timer.start()
            _, status, usage = os.wait4(self.process.pid, 0)
            timer.cancel()
            self._reaped(status, usage)
        status = self.status
        clean = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM or (
            os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0)
        if clean and not died_early:
            return ""
        self.err_file.seek(0)
        how = describe_exit(status, False, 0) or "exited with status 0"
        stderr = tail(self.err_file.read())
        return f"{how}: {stderr}" if stderr else how


def parse_memaslap(stdout):
    """TPS and op count from memaslap's closing line "Run time: ... Ops: N TPS: N"."""
    for line in stdout.splitlines():
        if line.startswith("Run time:"):
            words = line.replace(":", " ").split()
            return float(words[words.index("TPS") + 1]), float(words[words.index("Ops") + 1])
    raise ValueError("memaslap printed no summary")


def fill(template, port):
    user = pwd.getpwuid(os.getuid()).pw_name
    return [a.replace("{port}", str(port)).replace("{user}", user) for a in template]


def run_memcached(benchmark, allocator, context):
    port = free_port()
    load = fill(suite_lib.memcached_load(context.quick), port)
    client_env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    with tempfile.TemporaryFile("w+") as err:
        server = Server(fill(benchmark.argv, port), allocator.environment(), err)
        if not server.wait_for_port(port):
            return [failed(f"memcached did not start: {server.stop() or 'port closed'}")], []
        client = run_process(load, client_env, benchmark.timeout)
        error = server.stop()
    if error:
        return [failed(f"memcached failed under load: {error}")], []
    if client.error:
        return [failed(f"memaslap: {client.error}")], []
    try:
        tps, ops = parse_memaslap(client.stdout)
    except ValueError as problem:
        return [failed(f"{problem}: {tail(client.stdout + client.stderr)}")], []
    return [{"status": "ok", "time_s": 1.0 / tps if tps else None, "throughput": tps,
             "peak_rss_kb": server.max_rss_kb, "extra": {"ops": ops}}], []


# ---- start-up footprint --------------------------------------------------------

def run_footprint(benchmark, allocator, context):
    """A short program's peak RSS and wall time, from its launcher
    (bench/workloads/startup-rss.c: the program's own, not the runner's).
    A preload the loader refused leaves the program on glibc: failed."""
    outcome = run_process(benchmark.argv, allocator.environment(), benchmark.timeout)
    if outcome.error:
        return [failed(outcome.error)], []
    if "cannot be preloaded" in outcome.stderr:
        return [failed(f"the preload did not take: {tail(outcome.stderr)}")], []
    try:
        result = parse_result_line(outcome.stdout)
    except ValueError as problem:
        return [failed(f"{problem}: {tail(outcome.stderr)}")], []
    elapsed = float(result["elapsed_s"])
    return [{"status": "ok", "time_s": elapsed, "throughput": 1.0 / elapsed,
             "peak_rss_kb": int(result["peak_rss_kb"])}], []


RUNNERS = {"workload": run_workload, "micro": run_micro, "sqlite": run_sqlite,
           "memcached": run_memcached, "footprint": run_footprint}


def run(benchmark, allocator, context):
    """(rows, rss samples) of one run; rows carry status "ok" or "failed"."""
    return RUNNERS[benchmark.kind](benchmark, allocator, context)
