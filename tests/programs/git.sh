#!/bin/sh
# git with XMM preloaded: init, add, commit (three commits, a branch and a
# merge), log, fsck and gc in a temporary repository. With fixed author,
# committer and dates the commit hashes are determined by the content, so
# they must equal those of the same steps run without XMM.
. "$(dirname "$0")/preload.inc"
need git

steps() { # $1: directory; runs every git command through "$run"
    dir=$1
    mkdir -p "$dir" && cd "$dir" || return 1
    $run git init -q -b main . || return 1
    awk 'BEGIN { for (i = 0; i < 300; i++) { f = "f" i ".txt"; printf "file %d\n", i > f;
                 for (j = i; j <= i + 40; j++) printf "%d ", j > f; printf "\n" > f; close(f) } }' ||
        return 1
    $run git add . || return 1
    $run git commit -q -m "first: 300 files" || return 1
    $run git checkout -q -b side || return 1
    seq 1 5000 >numbers.txt
    $run git add numbers.txt && $run git commit -q -m "side: numbers" || return 1
    $run git checkout -q main || return 1
    sed 's/file/FILE/' f7.txt >f7.new && mv f7.new f7.txt
    $run git commit -q -am "main: edit f7" || return 1
    $run git merge -q --no-edit side || return 1
    $run git log --format='%H %s' >"../$2.log" || return 1
    $run git fsck --strict >/dev/null 2>&1 || { echo "fsck failed"; return 1; }
    $run git gc -q || return 1
    $run git rev-list --all --objects | wc -l >"../$2.objects"
    $run git show --stat HEAD~1 >"../$2.show" || return 1
}

export GIT_AUTHOR_NAME=XMM GIT_AUTHOR_EMAIL=xmm@example.invalid
export GIT_COMMITTER_NAME=XMM GIT_COMMITTER_EMAIL=xmm@example.invalid
export GIT_AUTHOR_DATE="2024-01-01T00:00:00Z" GIT_COMMITTER_DATE="2024-01-01T00:00:00Z"
export GIT_CONFIG_NOSYSTEM=1 HOME="$work"

run=""
(steps "$work/plain" plain) >"$work/plain.err" 2>&1 || {
    bad "git without XMM failed: $(tail -5 "$work/plain.err")"
    finish
}
run=xmm
if (steps "$work/xmm" xmm) >"$work/xmm-steps.err" 2>&1; then
    ok "git init/add/commit/checkout/merge/log/fsck/gc ran with XMM"
else
    bad "git with XMM failed: $(tail -5 "$work/xmm-steps.err") $(tail -5 "$work/xmm.err")"
fi
expect_stats git
cmp -s "$work/plain.log" "$work/xmm.log" &&
    ok "git log: the same 4 commit hashes as without XMM" ||
    { bad "git log differs from the run without XMM"; diff "$work/plain.log" "$work/xmm.log"; }
[ "$(wc -l <"$work/xmm.log")" -eq 4 ] && grep -q " first: 300 files\$" "$work/xmm.log" &&
    grep -q "Merge branch 'side'" "$work/xmm.log" &&
    ok "the log has the 4 commits, the first and the merge" ||
    bad "the log is not the expected 4 commits: $(cat "$work/xmm.log")"
cmp -s "$work/plain.objects" "$work/xmm.objects" && cmp -s "$work/plain.show" "$work/xmm.show" &&
    ok "object count ($(cat "$work/xmm.objects")) and git show match the run without XMM" ||
    bad "object count or git show differ from the run without XMM"
# git itself has XMM mapped: an alias runs a shell whose parent is git.
cd "$work/xmm" && xmm git -c alias.maps='!cat /proc/$PPID/maps' maps >"$work/git.maps"
grep -q libxmm.so "$work/git.maps" && ok "libxmm.so is in git's /proc/PID/maps" ||
    bad "libxmm.so is not mapped in git"
finish
