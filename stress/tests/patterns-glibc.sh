# Every pattern on glibc, oversubscribed: the harness itself must pass on
# a trusted allocator (and gives the baseline XMM is compared with).
. "$(dirname "$0")/lib.sh"
run_every_pattern glibc
