#!/bin/sh
# The Debian packages (make deb): built from the tree, lintian reports no
# error, they install into a scratch root with dpkg (no root needed), the
# xmm-run, xmm-stress, headers, pkg-config file and pages installed there
# work from there, preloading the scratch root's libxmm.so.0, and they
# remove without leaving a file behind.
build=${XMMTEST_BUILD:-build}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
failed=0
fail() { echo "FAILED: $*"; failed=1; }
python=/usr/bin/python3
[ -x "$python" ] || python=$(command -v python3) || { echo "python3 is not installed"; exit 77; }
# make deps installs these (DEB_PACKAGES): missing is a failure, not a skip.
for tool in dpkg-buildpackage dh lintian dpkg; do
    command -v $tool >/dev/null || { echo "FAILED: $tool is not installed (make deps)"; exit 1; }
done

# ---- build and lintian ----------------------------------------------------
make --no-print-directory BUILD="$build" DEB_LINT=true deb >"$work/deb.log" 2>&1 ||
    { tail -n 30 "$work/deb.log"; echo "FAILED: make deb"; exit 1; }
version=$(sed -n 's/^XMM_VERSION *= *//p' Makefile)
changes=$build/deb/xmm_${version}_amd64.changes
debs=""
for package in libxmm0 libxmm-dev xmm-tools; do
    deb=$build/deb/${package}_${version}_amd64.deb
    [ -f "$deb" ] || { echo "FAILED: make deb did not build $deb"; exit 1; }
    debs="$debs $deb"
done
lintian "$changes" >"$work/lintian" 2>&1
grep -v "running with root privileges" "$work/lintian"
! grep -q "^E: " "$work/lintian" || fail "lintian reports errors"
echo "lintian: $(grep -c "^E: " "$work/lintian") errors, $(grep -c "^W: " "$work/lintian") warnings"
# The soname and the library's links.
dpkg-deb -c "$build/deb/libxmm0_${version}_amd64.deb" | grep -q "libxmm.so.0 -> libxmm.so.$version$" ||
    fail "libxmm0 lacks the libxmm.so.0 link"
dpkg-deb -c "$build/deb/libxmm-dev_${version}_amd64.deb" | grep -q "libxmm.so -> libxmm.so.0$" ||
    fail "libxmm-dev lacks the libxmm.so link"
# libxmm.so loads libnuma.so.1 by dlopen on NUMA machines: no shlibs
# dependency names it, the package must.
dpkg-deb -f "$build/deb/libxmm0_${version}_amd64.deb" Depends | grep -q "libnuma1" ||
    fail "libxmm0 does not depend on libnuma1, which it loads on NUMA machines"
# The host could install them: every dependency is satisfiable here.
if command -v apt-get >/dev/null; then
    apt-get -s -q install $(for deb in $debs; do printf '%s ' "$(readlink -f "$deb")"; done) \
        >"$work/apt" 2>&1 || { cat "$work/apt"; fail "apt-get -s install: dependencies not satisfiable"; }
fi

# ---- install into a scratch root ---------------------------------------------
# Its own dpkg database: the system's packages (libc6, libnuma1) are not in
# it, hence --force-depends; maintainer scripts would run without chroot.
root=$work/root
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates" "$root/var/log"
: >"$root/var/lib/dpkg/status"
scratch_dpkg() {
    HOME=$work dpkg --root="$root" --log="$root/var/log/dpkg.log" --force-not-root \
        --force-script-chrootless "$@"
}
scratch_dpkg --force-depends -i $debs >"$work/install" 2>&1 ||
    { cat "$work/install"; fail "dpkg -i into $root"; }
[ "$(scratch_dpkg -l | grep -c '^ii  \(libxmm0\|libxmm-dev\|xmm-tools\)')" -eq 3 ] ||
    fail "not all three packages are installed: $(scratch_dpkg -l | tail -n 3)"
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
lib=$root/usr/lib/$multiarch/libxmm.so.$version
[ -f "$lib" ] || fail "$lib is not installed"
lib=$(readlink -f "$lib") # as /proc/PID/maps and xmm-stress show it
readelf -d "$lib" | grep -q "SONAME.*\[libxmm.so.0\]" || fail "the soname of $lib is not libxmm.so.0"

# ---- use it from there ----------------------------------------------------------
# xmm-run preloads the scratch root's library: XMM is active in /bin/true
# (its statistics at exit) and mapped into cat.
"$root/usr/bin/xmm-run" --stats=json --stats-file="$work/stats.%e.json" /bin/true ||
    fail "xmm-run /bin/true"
"$python" -c 'import json, sys; s = json.load(open(sys.argv[1])); assert s["program"] == "true" and s["version"] >= 1' \
    "$work/stats.true.json" || fail "no XMM statistics from /bin/true under xmm-run"
"$root/usr/bin/xmm-run" cat /proc/self/maps >"$work/maps" || fail "xmm-run cat"
grep -q " $lib$" "$work/maps" || fail "xmm-run did not preload $lib into cat"
# xmm-stress finds the same library and checks its blocks.
"$root/usr/bin/xmm-stress" --pattern pairs,churn --seconds 1 --threads 2 >"$work/stress" 2>&1 ||
    { tail -n 5 "$work/stress"; fail "xmm-stress from $root"; }
head -n 1 "$work/stress" | grep -q "on xmm ($lib)" || fail "xmm-stress used $(head -n 1 "$work/stress")"
grep -q "^integrity: OK" "$work/stress" || fail "xmm-stress integrity"
# A program built with the installed header, pkg-config file and library.
cat >"$work/program.c" <<'C'
#include <stdio.h>
#include <xmm.h>
int main(void)
{
    char *text = xmm_strdup("packaged");
    int node = text ? xmm_node_of(text) : -1;
    printf("%s %d\n", text ? text : "(null)", node);
    xmm_string_free(text);
    return node < 0;
}
C
if command -v pkg-config >/dev/null; then
    flags=$(PKG_CONFIG_SYSROOT_DIR="$root" PKG_CONFIG_LIBDIR="$root/usr/lib/$multiarch/pkgconfig" \
            pkg-config --cflags --libs xmm) || fail "pkg-config xmm"
else
    flags="-I$root/usr/include -L$root/usr/lib/$multiarch -lxmm"
fi
cc -o "$work/program" "$work/program.c" $flags || fail "building with $flags"
LD_LIBRARY_PATH=$root/usr/lib/$multiarch "$work/program" >"$work/program.out" &&
    grep -q "^packaged [0-9]" "$work/program.out" || fail "the program linked with -lxmm"
LD_LIBRARY_PATH=$root/usr/lib/$multiarch ldd "$work/program" | grep -q "libxmm.so.0 => $root" ||
    fail "the program does not load libxmm.so.0 from $root"
# The manual pages are there and format.
for page in man1/xmm-run.1.gz man1/xmm-stress.1.gz man3/xmm.3.gz; do
    [ -f "$root/usr/share/man/$page" ] || { fail "$page is not installed"; continue; }
    if command -v groff >/dev/null; then
        zcat "$root/usr/share/man/$page" | groff -man -Tutf8 -z 2>&1 | grep . && fail "$page: groff warnings"
    fi
done

# ---- remove -------------------------------------------------------------------
scratch_dpkg --purge xmm-tools libxmm-dev libxmm0 >"$work/remove" 2>&1 ||
    { cat "$work/remove"; fail "dpkg --purge"; }
left=$(cd "$root" && find . -path ./var -prune -o -print | grep -v '^\.$')
[ -z "$left" ] || fail "left after dpkg --purge: $left"

[ $failed -eq 0 ] && echo "Debian packages $version: built, lintian-clean, installed, used, removed"
exit $failed
