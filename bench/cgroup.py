"""Running a benchmark inside a memory cgroup, where the machine allows it.

Two ways, tried in order:

1. `systemd-run --user --scope -p MemoryMax=... -p MemorySwapMax=0`: the
   command runs in a transient scope of the user's systemd (it stays our
   child, so wait4 still reports its peak RSS);
2. a cgroup v2 directory of our own: a child of this process's cgroup
   (or of the cgroup2 root) whose `cgroup.controllers` offers `memory`,
   with `memory.max` and `memory.swap.max` set; the benchmark process
   moves itself into it before exec;
3. the same in a cgroup v1 memory hierarchy (machines that mount the
   memory controller as v1, as this project's benchmark VM does):
   `memory.limit_in_bytes`, and `memory.memsw.limit_in_bytes` equal to it
   where swap is accounted (else `memory.swappiness` 0).

Where none works (no user systemd bus, no writable memory controller),
the limited runs are left out of the suite and the report says why; peak
RSS is then the only evidence. Nothing is changed in
cgroups that this module did not create.
"""
import os
import subprocess

SWAP_NOTE = "swap is off in the cgroup, so anonymous memory over the limit means OOM"


def _systemd_prefix(limit_mb):
    return ["systemd-run", "--user", "--scope", "--quiet", "--collect",
            "-p", f"MemoryMax={limit_mb}M", "-p", "MemorySwapMax=0", "--"]


def _probe_systemd():
    """"" if systemd-run --user --scope works here, else why not."""
    try:
        done = subprocess.run(_systemd_prefix(64) + ["true"], capture_output=True, text=True,
                              timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as problem:
        return f"systemd-run: {problem}"
    if done.returncode == 0:
        return ""
    return "systemd-run --user --scope: " + (done.stderr.strip().splitlines() or
                                             [f"exit status {done.returncode}"])[-1]


def _cgroup2_mount():
    try:
        for line in open("/proc/self/mountinfo"):
            fields = line.split()
            separator = fields.index("-")
            if fields[separator + 1] == "cgroup2":
                return fields[4]
    except (OSError, ValueError, IndexError):
        pass
    return None


def _own_cgroup2_path():
    try:
        for line in open("/proc/self/cgroup"):
            if line.startswith("0::"):
                return line[3:].strip()
    except OSError:
        pass
    return None


def _read(path):
    try:
        return open(path).read().strip()
    except OSError:
        return ""


def _probe_cgroup2():
    """(parent directory, "") where a child cgroup with the memory
    controller can be made, else (None, why not)."""
    mount = _cgroup2_mount()
    if not mount:
        return None, "no cgroup2 file system is mounted"
    own = _own_cgroup2_path()
    candidates = []
    if own is not None:
        candidates.append(os.path.normpath(os.path.join(mount, own.lstrip("/"))))
    candidates.append(mount)
    reasons = []
    for parent in dict.fromkeys(candidates):
        if "memory" not in _read(os.path.join(parent, "cgroup.subtree_control")).split():
            controllers = _read(os.path.join(parent, "cgroup.controllers")).split()
            reasons.append(f"{parent}: memory controller not delegated "
                           f"(controllers: {' '.join(controllers) or 'none'})")
            continue
        if not os.access(parent, os.W_OK):
            reasons.append(f"{parent}: not writable")
            continue
        return parent, ""
    return None, "cgroup v2: " + "; ".join(reasons)


def _probe_cgroup1():
    """(parent directory, "") of a writable cgroup v1 memory hierarchy,
    else (None, why not)."""
    try:
        for line in open("/proc/self/mountinfo"):
            fields = line.split()
            separator = fields.index("-")
            if fields[separator + 1] == "cgroup" and "memory" in fields[separator + 3].split(","):
                parent = fields[4]
                if os.access(parent, os.W_OK):
                    return parent, ""
                return None, f"cgroup v1: {parent}: not writable"
    except (OSError, ValueError, IndexError):
        pass
    return None, "cgroup v1: no memory hierarchy is mounted"


def _write(path, value):
    with open(path, "w") as f:
        f.write(value)


class Limiter:
    """How to run a command under a memory limit here, or why it cannot be."""

    def __init__(self):
        self.method = None       # "systemd-run", "cgroup2" or "cgroup1"
        self.parent = None       # cgroup2, cgroup1: where children are made
        self.reason = ""         # when method is None
        self.count = 0

    @classmethod
    def probe(cls):
        limiter = cls()
        systemd_problem = _probe_systemd()
        if not systemd_problem:
            limiter.method = "systemd-run"
            return limiter
        parent, cgroup_problem = _probe_cgroup2()
        if parent:
            limiter.method, limiter.parent = "cgroup2", parent
            return limiter
        parent, v1_problem = _probe_cgroup1()
        if parent:
            limiter.method, limiter.parent = "cgroup1", parent
            return limiter
        limiter.reason = f"{systemd_problem}; {cgroup_problem}; {v1_problem}"
        return limiter

    @property
    def available(self):
        return self.method is not None

    def describe(self):
        if self.method == "systemd-run":
            return "systemd-run --user --scope -p MemoryMax=...M -p MemorySwapMax=0"
        if self.method == "cgroup2":
            return f"a cgroup v2 child of {self.parent} (memory.max, memory.swap.max = 0)"
        if self.method == "cgroup1":
            return (f"a cgroup v1 child of {self.parent} (memory.limit_in_bytes, "
                    "memory.memsw.limit_in_bytes or swappiness 0)")
        return f"not available: {self.reason}"

    def prepare(self, argv, limit_mb):
        """(argv, preexec_fn, cleanup) that run argv under the limit."""
        if self.method == "systemd-run":
            return _systemd_prefix(limit_mb) + list(argv), None, lambda: None
        if self.method not in ("cgroup2", "cgroup1"):
            raise RuntimeError(f"no memory cgroup here: {self.reason}")
        self.count += 1
        path = os.path.join(self.parent, f"xmm-bench-{os.getpid()}-{self.count}")
        os.mkdir(path)
        if self.method == "cgroup2":
            _write(os.path.join(path, "memory.max"), str(limit_mb << 20))
            swap = os.path.join(path, "memory.swap.max")
            if os.path.exists(swap):
                _write(swap, "0")
        else:
            _write(os.path.join(path, "memory.limit_in_bytes"), str(limit_mb << 20))
            memsw = os.path.join(path, "memory.memsw.limit_in_bytes")
            if os.path.exists(memsw):
                _write(memsw, str(limit_mb << 20))
            else:
                _write(os.path.join(path, "memory.swappiness"), "0")
        procs = os.path.join(path, "cgroup.procs")

        def join():
            with open(procs, "w") as members:
                members.write(str(os.getpid()))

        def cleanup():
            try:
                os.rmdir(path)
            except OSError:
                pass

        return list(argv), join, cleanup

    def command_prefix(self, limit_mb):
        """For the report's command lines."""
        if self.method == "cgroup2":
            return f"(in a cgroup v2 with memory.max={limit_mb}M) "
        if self.method == "cgroup1":
            return f"(in a cgroup v1 with memory.limit_in_bytes={limit_mb}M) "
        return " ".join(_systemd_prefix(limit_mb)) + " "
