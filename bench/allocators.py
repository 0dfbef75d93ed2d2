"""The allocators under comparison and how to find them.

Each allocator is swapped in with LD_PRELOAD, so the same binaries run on
all of them. The peers come from Debian packages; their library paths are
looked up with `ldconfig -p` (falling back to `dpkg -L`) rather than
hard-coded, so a different multiarch directory still works.
"""
import os
import re
import subprocess
import time
from dataclasses import dataclass

# name -> (Debian package, shared library soname)
PEERS = {
    "jemalloc": ("libjemalloc2", "libjemalloc.so.2"),
    "tcmalloc": ("libtcmalloc-minimal4", "libtcmalloc_minimal.so.4"),
    "mimalloc": ("libmimalloc2.0", "libmimalloc.so.2"),
}
ORDER = ["glibc", "jemalloc", "tcmalloc", "mimalloc", "xmm"]


@dataclass
class Allocator:
    name: str
    library: str | None          # path for LD_PRELOAD; None for glibc
    version: str
    available: bool = True
    problem: str = ""            # why it is not available, for the report
    expected_malloc: str = ""    # file name dladdr(malloc) must report

    def environment(self):
        """The environment of a process that runs on this allocator."""
        env = dict(os.environ)
        env.pop("LD_PRELOAD", None)
        if self.library:
            env["LD_PRELOAD"] = self.library
        return env

    def command_prefix(self):
        return f"LD_PRELOAD={self.library} " if self.library else ""


def _run(argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False).stdout
    except OSError:
        return ""


def package_version(package):
    return _run(["dpkg-query", "-W", "-f=${Version}", package]).strip() or "not installed"


def find_library(soname, package):
    """The path of `soname`, from the linker cache or the package's files."""
    matches = [line.split("=>")[-1].strip() for line in _run(["ldconfig", "-p"]).splitlines()
               if line.strip().startswith(soname + " ") and "=>" in line]
    native = [m for m in matches if os.path.exists(m)]
    if native:
        return native[0]
    for path in _run(["dpkg", "-L", package]).splitlines():
        if os.path.basename(path) == soname:
            return path
    return None


def glibc():
    return Allocator("glibc", None, package_version("libc6"), expected_malloc="libc.so.6")


def peer(name):
    package, soname = PEERS[name]
    version = package_version(package)
    path = find_library(soname, package)
    if not path:
        return Allocator(name, None, version, available=False,
                         problem=f"{soname} not found (install {package})")
    return Allocator(name, path, version, expected_malloc=os.path.basename(path))


def xmm_version(repo):
    """XMM's version from include/xmm.h and the commit it was built from."""
    header = os.path.join(repo, "include", "xmm.h")
    major = minor = "?"
    try:
        text = open(header).read()
        major = re.search(r"XMM_VERSION_MAJOR\s+(\d+)", text).group(1)
        minor = re.search(r"XMM_VERSION_MINOR\s+(\d+)", text).group(1)
    except (OSError, AttributeError):
        pass
    # The last commit that changed the allocator, not HEAD (which may be a
    # commit of the benchmarks themselves).
    commit = _run(["git", "-C", repo, "log", "-1", "--format=%h", "--", "src", "platform",
                   "include"]).strip() or "no commit"
    dirty = _run(["git", "-C", repo, "status", "--porcelain", "--", "src", "platform",
                  "include"]).strip()
    return f"{major}.{minor} ({commit}{', uncommitted changes' if dirty else ''})"


def xmm(library_path, repo):
    version = xmm_version(repo)
    if not os.path.exists(library_path):
        return Allocator("xmm", None, version, available=False,
                         problem=f"{library_path} does not exist (`make lib` failed or "
                                 "was not run)")
    # The build time too: if `make lib` failed, an older library may be
    # measured, and the report must not pass it off as the current tree.
    built = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(os.path.getmtime(library_path)))
    return Allocator("xmm", os.path.abspath(library_path), f"{version}, built {built}",
                     expected_malloc=os.path.basename(library_path))


def discover(xmm_library, repo, wanted=None):
    """All allocators in report order, available or not (never silently
    dropped: an unavailable one carries the reason)."""
    found = [glibc()] + [peer(name) for name in PEERS] + [xmm(xmm_library, repo)]
    if wanted:
        found = [a for a in found if a.name in wanted]
    return found
