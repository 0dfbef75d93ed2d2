#!/bin/sh
# The documentation cannot drift: the README's table of XMM_* variables,
# xmm(3), xmm-run and xmm-run(1) are generated from man/variables.txt, and
# this test checks that they were regenerated, that the variables the
# sources read are the ones listed, that xmm(3) names every public
# function, that xmm-stress(1) describes exactly the options of
# xmm-stress --help, that the pages format without warnings, and that
# xmm-run sets each variable and preloads XMM.
build=${XMMTEST_BUILD:-build}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
failed=0
fail() { echo "FAILED: $*"; failed=1; }
python=/usr/bin/python3
[ -x "$python" ] || python=$(command -v python3) || { echo "python3 is not installed"; exit 77; }
for file in "$build/man/xmm.3" "$build/man/xmm-run.1" "$build/man/xmm-stress.1" "$build/xmm-run" \
            "$build/xmm-stress" "$build/libxmm.so"; do
    [ -f "$file" ] || { echo "FAILED: $file is missing (make test-build)"; exit 1; }
done

# README and sources against man/variables.txt.
"$python" tools/docgen readme README.md --check || fail "README's variables table"
"$python" tools/docgen check-source src platform || fail "variables read by the sources"

# README's table against the built xmm(3): same variables, in the same
# order, with the same defaults and meanings once the markup is gone.
"$python" - README.md "$build/man/xmm.3" <<'PY' || fail "README and xmm(3) disagree"
import re, sys
readme = open(sys.argv[1]).read()
table = readme.split("<!-- variables:")[1].split("<!-- end of variables -->")[0]
rows = []
for line in table.splitlines():
    cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
    if len(cells) == 3 and cells[0].startswith("`XMM_"):
        rows.append(tuple(cell.replace("`", "") for cell in cells))
page = open(sys.argv[2]).read()
environment = page.split("\n.SH ENVIRONMENT\n")[1].split("\n.SH ")[0]
def plain(roff):
    return re.sub(r"\\f[BIR]|\\&", "", roff).replace("\\-", "-").replace("\\e", "\\")
entries = []
for block in environment.split("\n.TP\n")[1:]:
    lines = block.splitlines()
    name = re.match(r"\.BI (XMM_[A-Z0-9_]+)=", lines[0]).group(1)
    meaning, default = plain(" ".join(lines[1:-1])), plain(lines[-1])
    entries.append((name, re.sub(r"^Default: (.*)\.$", r"\1", default), meaning.rstrip(".")))
assert [r[0] for r in rows] == [e[0] for e in entries], \
    "variables: README %s, xmm(3) %s" % ([r[0] for r in rows], [e[0] for e in entries])
for row, entry in zip(rows, entries):
    assert row == entry, "README %s, xmm(3) %s" % (row, entry)
print("README and xmm(3): the same %d variables, defaults and meanings" % len(rows))
PY

# The README and the pages name no XMM_* that does not exist: each is a
# variable of man/variables.txt or a macro of the sources.
"$python" - README.md "$build"/man/* <<'PY' || fail "XMM_* names that do not exist"
import pathlib, re, sys
known = set(re.findall(r"^Variable: (XMM_\w+)", open("man/variables.txt").read(), re.M))
for directory in ("include", "src", "platform"):
    for source in pathlib.Path(directory).rglob("*.[ch]"):
        known.update(re.findall(r"#\s*define\s+(XMM_\w+)", source.read_text()))
unknown = {}
for document in sys.argv[1:]:
    text = open(document).read().replace("\\fB", " ").replace("\\fR", " ")
    for name in set(re.findall(r"\bXMM_[A-Z0-9_]+", text)) - known:
        unknown.setdefault(name, []).append(document)
for name, documents in sorted(unknown.items()):
    print("%s, in %s, is neither a variable nor a macro" % (name, ", ".join(documents)))
sys.exit(1 if unknown else 0)
PY

# Every function of the public headers is in xmm(3).
for header in include/*.h; do
    for function in $(sed -n 's/^[a-z].*[ *]\(xmm_[a-z0-9_]*\)(.*/\1/p' "$header"); do
        grep -qw "$function" "$build/man/xmm.3" || fail "$function ($header) is not in xmm(3)"
    done
done

# xmm-stress(1) describes exactly the options xmm-stress --help lists.
"$build/xmm-stress" --help | grep -o -- '^  --[a-z-]*' | sed 's/^ *//' | sort > "$work/help"
sed -n 's/^\.BI\{0,1\} \(\\-\\-[a-z\\-]*\).*/\1/p' "$build/man/xmm-stress.1" | sed 's/\\-/-/g' | sort > "$work/page"
[ -s "$work/help" ] && diff "$work/help" "$work/page" > "$work/diff" ||
    fail "xmm-stress --help (<) and xmm-stress(1) (>) list other options: $(cat "$work/diff")"

# The pages format without a warning.
if command -v groff >/dev/null; then
    for page in "$build"/man/*; do
        LC_ALL=C.UTF-8 groff -man -Tutf8 -ww -z "$page" 2>"$work/groff" || fail "groff failed on $page"
        [ ! -s "$work/groff" ] || fail "groff warns about $page: $(head -3 "$work/groff")"
    done
else
    echo "groff is not installed: pages not formatted"
fi

# xmm-run: one option per variable, each setting it; XMM preloaded.
run=$build/xmm-run
lib=$(cd "$build" && pwd)/libxmm.so
options=""
for name in $(sed -n 's/^Variable: XMM_//p' man/variables.txt); do
    options="$options --$(echo "$name" | tr 'A-Z_' 'a-z-')=v$name"
done
# (the values are not XMM's: it reports each one; only the setting counts)
"$run" --lib="$lib" $options env > "$work/env" 2>/dev/null || fail "xmm-run with every option"
for name in $(sed -n 's/^Variable: XMM_//p' man/variables.txt); do
    grep -qx "XMM_$name=v$name" "$work/env" || fail "xmm-run did not set XMM_$name"
    "$run" --help | grep -q -- "--$(echo "$name" | tr 'A-Z_' 'a-z-')=" || fail "xmm-run --help lacks XMM_$name"
done
grep -qx "LD_PRELOAD=$(readlink -f "$lib")" "$work/env" || fail "xmm-run did not preload $lib"
LD_PRELOAD=/nonexistent-but-kept.so "$run" --lib="$lib" env 2>/dev/null | grep -qx "LD_PRELOAD=$(readlink -f "$lib") /nonexistent-but-kept.so" ||
    fail "xmm-run must keep the LD_PRELOAD it was given, after XMM"
# In the build tree it finds $build/libxmm.so itself; XMM is really active.
"$run" --stats=json --stats-file="$work/stats.%p.json" /bin/true || fail "xmm-run /bin/true"
cat "$work"/stats.*.json 2>/dev/null | "$python" -c 'import json, sys; assert json.load(sys.stdin)["program"] == "true"' ||
    fail "xmm-run --stats=json: no statistics from /bin/true"
# Its own errors: status 125, a message.
# ("--stats -- true": getopt hands the option "--" as its value.)
for arguments in "--no-such-option true" "--numa=local" "--lib=/nonexistent true" \
    "--stats -- true" "--lib=$lib --decay-ms -- true" "--lib -- true" \
    "--lib=$lib --stats --decay-ms=5 true"; do
    "$run" $arguments >/dev/null 2>"$work/err"; status=$?
    [ $status -eq 125 ] && grep -q "^xmm-run: " "$work/err" ||
        fail "xmm-run $arguments: status $status, $(head -1 "$work/err")"
done
[ "$("$run" --lib="$lib" -- sh -c 'echo "$0 $1"' a b)" = "a b" ] || fail "xmm-run -- COMMAND ARGUMENTS"
"$run" --version | grep -q "^xmm-run (XMM) [0-9]" || fail "xmm-run --version"

[ $failed -eq 0 ] && echo "documentation, variables and xmm-run agree: all checks passed"
exit $failed
