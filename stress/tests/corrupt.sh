# --corrupt overwrites one byte of a live block: every pattern must catch
# it, stop the run early, exit 1, and name the block (address, size, owner
# and the thread that found it) - the same block the injection reported.
# Runs on glibc so that it tests the harness whatever state XMM is in.
. "$(dirname "$0")/lib.sh"

# Runs xmm-stress --corrupt with the given options; checks the outcome.
expect_caught() {
    "$STRESS" --alloc glibc --corrupt --threads 2 "$@" >"$scratch/out" 2>"$scratch/err"
    status=$?
    [ $status -eq 1 ] || fail "$*: exit status $status, expected 1: $(cat "$scratch/err")"
    injected=$(sed -n 's/.*--corrupt: overwrote byte [0-9]* of block \(0x[0-9a-f]*\) (size \([0-9]*\), owner thread \([0-9]*\)).*/\1 \2 \3/p' "$scratch/err")
    [ -n "$injected" ] || fail "$*: no injection message: $(cat "$scratch/err")"
    read -r address size owner <<EOF_FIELDS
$injected
EOF_FIELDS
    grep -q "CORRUPTION: block $address (size $size, owner thread $owner) found by " "$scratch/err" ||
        fail "corruption of $address (size $size) not reported as such: $(cat "$scratch/err")"
}

for pattern in pairs batch producer-consumer churn realloc server; do
    # The byte is overwritten 20% into the run (0.6 s of 3): catching it
    # must end the run well before the 3 s are up. The run's own clock
    # (the summary's "in N s") is used, not ours: load can delay start-up.
    expect_caught --pattern "$pattern" --seconds 3
    ran=$(sed -n 's/^ops: .* in \([0-9.]*\) s$/\1/p' "$scratch/out")
    [ -n "$ran" ] || fail "$pattern: no 'ops: ... in N s' line in the summary"
    awk -v ran="$ran" 'BEGIN { exit !(ran < 2.4) }' ||
        fail "$pattern: the run went on for $ran s after the corruption"
    grep -q "^integrity: CORRUPT" "$scratch/out" || fail "$pattern: summary lacks 'integrity: CORRUPT'"
    echo "$pattern: caught the overwritten byte of block $address; the run stopped at $ran s of 3"
done

# Counted runs (--ops) corrupt a block too, and --json says "corrupt".
expect_caught --pattern churn --ops 20000 --json
python3 - "$scratch/out" "$address" <<'EOF_PY' || fail "--json report of a corruption is wrong"
import json, sys
report = json.load(open(sys.argv[1]))
assert report["integrity"] == "corrupt", report["integrity"]
assert sys.argv[2] in report["failure"], report["failure"]
EOF_PY
echo "--ops --json: integrity \"corrupt\", failure names block $address"
