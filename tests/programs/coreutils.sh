#!/bin/sh
# Everyday programs with XMM preloaded, each compared with the same run
# without XMM: ls -R over /usr/include, sort of a generated 200000-line file
# (numeric, keyed, unique, with a small buffer so it merges temporary files,
# and with several threads), and bash -c loops building arrays and strings.
. "$(dirname "$0")/preload.inc"
need sort
need bash

# The preload works for coreutils: cat shows its own maps.
xmm cat /proc/self/maps >"$work/cat.maps"
grep -q libxmm.so "$work/cat.maps" && ok "libxmm.so is in cat's /proc/self/maps" ||
    bad "libxmm.so is not mapped in cat"
: >"$work/stats.json"

# A small program gets no thread of XMM's (XMM_BACKGROUND=auto starts the
# decay thread only once the heap passes 64 MiB): ls, and a shell, list
# their own /proc/PID/task.
tasks=$(LD_PRELOAD=$lib ls /proc/self/task | wc -l)
[ "$tasks" -eq 1 ] && ok "a preloaded ls has one thread" || bad "a preloaded ls has $tasks threads"
tasks=$(LD_PRELOAD=$lib sh -c 'ls /proc/$$/task' | wc -l)
[ "$tasks" -eq 1 ] && ok "a preloaded sh has one thread" || bad "a preloaded sh has $tasks threads"

# ls -R
ls -R /usr/include >"$work/ls.plain" 2>/dev/null
xmm ls -R /usr/include >"$work/ls.xmm"
[ "$xmm_status" -eq 0 ] && cmp -s "$work/ls.plain" "$work/ls.xmm" &&
    ok "ls -R /usr/include: same $(wc -l <"$work/ls.xmm") lines as without XMM" ||
    bad "ls -R /usr/include differs from the run without XMM (status $xmm_status)"
expect_stats "ls -R"

# sort: a generated file, sorted several ways.
awk 'BEGIN { srand(7); for (i = 0; i < 200000; i++)
             printf "%d %s%d %.3f\n", int(rand() * 1000000), "w", int(rand() * 50000), rand() * 1000 }' \
    >"$work/input.txt"
for options in "-n" "-k2,2 -k1,1n" "-u -k2,2" "-S 1M -n" "--parallel=4 -S 8M -k3,3g"; do
    # shellcheck disable=SC2086
    LC_ALL=C sort $options -T "$work" "$work/input.txt" >"$work/sort.plain"
    # shellcheck disable=SC2086
    LC_ALL=C xmm sort $options -T "$work" "$work/input.txt" >"$work/sort.xmm"
    status=$xmm_status
    if [ "$status" -eq 0 ] && cmp -s "$work/sort.plain" "$work/sort.xmm"; then
        ok "sort $options: $(wc -l <"$work/sort.xmm") lines, same as without XMM"
    else
        bad "sort $options (status $status) differs from the run without XMM"
    fi
done
expect_stats sort
# Sorted really is sorted (independently of sort itself).
LC_ALL=C xmm sort -n "$work/input.txt" | awk 'NR > 1 && $1 < previous { bad = 1 } { previous = $1 }
    END { exit bad }' && ok "sort -n output is in order" || bad "sort -n output is out of order"
: >"$work/stats.json"

# bash loops: arrays, associative arrays, string growth.
cat >"$work/loops.sh" <<'BASH'
declare -a list
declare -A table
text=""
for ((i = 0; i < 20000; i++)); do
    list[i]=$((i * i))
    table["k$i"]=$i
    (( i % 10 == 0 )) && text+="$i,"
done
sum=0
for value in "${list[@]}"; do sum=$((sum + value)); done
keys=0
for key in "${!table[@]}"; do keys=$((keys + table[$key])); done
unset 'table[k5]'
echo "${#list[@]} $sum ${#table[@]} $keys ${#text}"
BASH
loops=$(cat "$work/loops.sh")
bash -c "$loops" >"$work/bash.plain"
xmm bash -c "$loops" >"$work/bash.xmm"
# sum of i^2, i < 20000 = (n-1)n(2n-1)/6; sum of i = n(n-1)/2.
n=20000
expected="$n $(( (n - 1) * n * (2 * n - 1) / 6 )) $((n - 1)) $(( n * (n - 1) / 2 ))"
if [ "$xmm_status" -eq 0 ] && cmp -s "$work/bash.plain" "$work/bash.xmm" &&
    grep -q "^$expected " "$work/bash.xmm"; then
    ok "bash -c loops: $(cat "$work/bash.xmm"), as without XMM and as computed"
else
    bad "bash loops gave \"$(cat "$work/bash.xmm")\" (status $xmm_status); without XMM \"$(cat "$work/bash.plain")\", expected \"$expected ...\""
fi
expect_stats bash
finish
