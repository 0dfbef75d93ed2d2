#!/bin/sh
# The C++ operator new/delete test (tests/override/cxx_new_delete.cc), built
# without XMM, run with LD_PRELOAD=libxmm.so: the program checks itself that
# every operator returns XMM blocks.
. "$(dirname "$0")/preload.inc"
program=$build/tests/cxx_new_delete
[ -x "$program" ] || { echo "FAIL: $program is not built (make test-build)"; exit 1; }
xmm "$program" >"$work/out.txt"
status=$xmm_status
cat "$work/out.txt"
[ $status -eq 0 ] && ok "cxx_new_delete passed under LD_PRELOAD" ||
    bad "cxx_new_delete exited $status under LD_PRELOAD: $(tail -5 "$work/xmm.err")"
grep -q "^ok   libxmm.so is in the process" "$work/out.txt" && ok "libxmm.so was loaded in it" ||
    bad "libxmm.so was not loaded in it"
finish
