#!/bin/sh
# python3 with XMM preloaded (and PYTHONMALLOC=malloc): large dicts, lists
# and strings built by several threads; the checksums must equal those of the same script
# without XMM and the values computed in closed form.
. "$(dirname "$0")/preload.inc"
need python3

cat >"$work/dicts.py" <<'PY'
import sys, threading, hashlib

def build(seed, count, out, index):
    table = {}
    for i in range(count):
        key = "k%d-%d" % (seed, i)
        table[key] = [i, str(i * seed), (i, seed)]
        if i % 3 == 0:
            table.pop("k%d-%d" % (seed, i // 2), None)
    total = sum(value[0] for value in table.values())
    digest = hashlib.sha256("".join(sorted(table)).encode()).hexdigest()[:16]
    out[index] = (len(table), total, digest)

threads = []
results = [None] * 8
for n in range(8):
    thread = threading.Thread(target=build, args=(n + 1, 60000, results, n))
    threads.append(thread)
    thread.start()
for thread in threads:
    thread.join()
for n, result in enumerate(results):
    print("thread %d: %d keys, sum %d, digest %s" % (n, *result))

# One big dict of ints: sum in closed form.
big = {i: i * i for i in range(400000)}
print("big: %d %d" % (len(big), sum(big.values())))
text = "".join(str(i) for i in range(200000))
print("text: %d %s" % (len(text), hashlib.md5(text.encode()).hexdigest()))

maps = open("/proc/self/maps").read()
print("libxmm.so mapped: %s" % ("libxmm.so" in maps), file=sys.stderr)
PY

if ! "$python" "$work/dicts.py" >"$work/expected.txt" 2>"$work/plain.err"; then
    bad "python3 without XMM failed: $(cat "$work/plain.err")"
    finish
fi
# PYTHONMALLOC=malloc: every Python object through malloc, not pymalloc's
# arenas, so XMM does all the work.
xmm env PYTHONMALLOC=malloc "$python" "$work/dicts.py" >"$work/got.txt"
status=$?
[ $status -eq 0 ] && ok "python3 ran the script with XMM (exit 0)" ||
    bad "python3 with XMM exited $status: $(tail -5 "$work/xmm.err")"
grep -q "libxmm.so mapped: True" "$work/xmm.err" &&
    ok "libxmm.so is in python3's /proc/self/maps" ||
    bad "libxmm.so is not in python3's /proc/self/maps"
expect_stats python3
if cmp -s "$work/expected.txt" "$work/got.txt"; then
    ok "same output as without XMM ($(wc -l <"$work/got.txt") lines)"
else
    bad "output differs from the run without XMM:"
    diff "$work/expected.txt" "$work/got.txt" | head -20
fi
# Closed form: sum of i^2 for i < 400000 = (n-1)n(2n-1)/6.
expected_big=$(echo "n=400000; (n-1)*n*(2*n-1)/6" | bc 2>/dev/null ||
    "$python" -c "n=400000; print((n-1)*n*(2*n-1)//6)")
grep -q "^big: 400000 $expected_big\$" "$work/got.txt" &&
    ok "the big dict sums to $expected_big" ||
    bad "the big dict sum is wrong: $(grep '^big' "$work/got.txt") (expected $expected_big)"
finish
