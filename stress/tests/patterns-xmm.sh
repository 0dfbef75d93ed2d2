# Every pattern on XMM (build/libxmm.so via LD_PRELOAD), oversubscribed:
# integrity must hold and every allocation succeed.
. "$(dirname "$0")/lib.sh"
run_every_pattern xmm
