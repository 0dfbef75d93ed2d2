# A bad argument must give exit status 2 and exactly one line on stderr,
# "xmm-stress: OPTION: ...", naming the option; nothing on stdout.
. "$(dirname "$0")/lib.sh"

# Each case: the arguments | the start of the expected error line.
cases='--threads x|xmm-stress: --threads: expected a positive integer, got '"'"'x'"'"'
--threads 0|xmm-stress: --threads: expected a positive integer
--threads -4|xmm-stress: --threads: expected a positive integer
--threads 2x|xmm-stress: --threads: expected a positive integer
--threads 100000|xmm-stress: --threads: at most
--threads|xmm-stress: --threads: missing value
--seconds abc|xmm-stress: --seconds: expected a positive number of seconds
--seconds 0|xmm-stress: --seconds: expected a positive number of seconds
--seconds=-1|xmm-stress: --seconds: expected a positive number of seconds
--ops 1.5|xmm-stress: --ops: expected a positive integer
--ops 0|xmm-stress: --ops: expected a positive integer
--seconds 1 --ops 100|xmm-stress: --ops: cannot be combined with --seconds
--sizes huge|xmm-stress: --sizes: expected small, medium, large, mixed or MIN-MAX
--sizes 4096-16|xmm-stress: --sizes: expected MIN-MAX with MIN <= MAX
--sizes 0-16|xmm-stress: --sizes: expected small, medium, large, mixed or MIN-MAX
--sizes 16-2G|xmm-stress: --sizes: expected small, medium, large, mixed or MIN-MAX
--pattern bogus|xmm-stress: --pattern: expected pairs, batch, producer-consumer
--pattern pairs,,churn|xmm-stress: --pattern: expected pairs, batch, producer-consumer
--live-mib 0|xmm-stress: --live-mib: expected a positive number of MiB
--seed abc|xmm-stress: --seed: expected an unsigned integer
--alloc tcmalloc|xmm-stress: --alloc: expected glibc, xmm or a path
--alloc /nonexistent/libfoo.so|xmm-stress: --alloc: cannot read '"'"'/nonexistent/libfoo.so'"'"'
--json=yes|xmm-stress: --json: takes no value
--frobnicate|xmm-stress: --frobnicate: unknown option
stray|xmm-stress: stray: unexpected argument'

checked=0
while IFS='|' read -r arguments expected; do
    # Word splitting of $arguments is intended: each case is a short list.
    "$STRESS" $arguments >"$scratch/out" 2>"$scratch/err"
    status=$?
    [ $status -eq 2 ] || fail "'$arguments': exit status $status, expected 2"
    [ ! -s "$scratch/out" ] || fail "'$arguments': wrote to stdout: $(head -c 200 "$scratch/out")"
    lines=$(wc -l <"$scratch/err")
    [ "$lines" -eq 1 ] || fail "'$arguments': $lines lines on stderr, expected 1: $(cat "$scratch/err")"
    case $(cat "$scratch/err") in
        "$expected"*) ;;
        *) fail "'$arguments': got '$(cat "$scratch/err")', expected '$expected...'" ;;
    esac
    checked=$((checked + 1))
done <<EOF_CASES
$cases
EOF_CASES

# --help is not an error: usage on stdout, status 0.
"$STRESS" --help >"$scratch/out" 2>"$scratch/err" || fail "--help: exit status $?"
grep -q -- '--pattern' "$scratch/out" || fail "--help does not describe --pattern"
[ ! -s "$scratch/err" ] || fail "--help wrote to stderr"

echo "$checked bad argument lists rejected with status 2 and one line"
