# Every pattern on XMM with the heap profiler on, sampling often
# (XMM_PROFILE=16k: 32 times the default rate, so that thousands of
# blocks per second take the sampled path, are freed by other threads and
# reallocated): the integrity results must be those of patterns-xmm.sh,
# and each run must still write its profile at exit.
. "$(dirname "$0")/lib.sh"
export XMM_PROFILE=16k XMM_PROFILE_FILE="$scratch/stress.%p.heap"
run_every_pattern xmm
profiles=0
for file in "$scratch"/stress.*.heap; do
    [ -f "$file" ] || continue
    head -1 "$file" | grep -q '^heap profile: ' && grep -qx 'MAPPED_LIBRARIES:' "$file" ||
        fail "$file is not a heap profile"
    profiles=$((profiles + 1))
done
[ $profiles -ge 8 ] || fail "$profiles heap profiles written by 8 runs"
echo "integrity ok with XMM_PROFILE=16k; $profiles heap profiles written"
