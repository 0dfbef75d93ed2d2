#!/bin/sh
# layers.sh - tools/check-layers passes on the tree, and fails on each kind
# of include that breaks the layering, planted in a scratch copy of src/:
# an upward include, a header from inside another layer's folder, an
# internal header from buf/ (which may use only the public API), and an
# include of src/ from platform/.
cd "$(dirname "$0")/../.." || exit 1
status=0
if tools/check-layers >/dev/null; then
    echo "ok   the tree's includes all go down to interface headers"
else
    tools/check-layers; echo "FAIL the tree breaks the layering"; status=1
fi
scratch=$(mktemp -d); trap 'rm -rf "$scratch"' EXIT

plant() { # name, file, line to add
    rm -rf "$scratch/tree"; mkdir -p "$scratch/tree"
    cp -r src platform include tools "$scratch/tree/"
    printf '%s\n' "$3" >>"$scratch/tree/$2"
    if python3 "$scratch/tree/tools/check-layers" "$scratch/tree" >"$scratch/out"; then
        echo "FAIL $1: not detected"; status=1
    elif grep -q "$(basename "$2")" "$scratch/out"; then
        echo "ok   $1: detected ($(head -n 1 "$scratch/out"))"
    else
        echo "FAIL $1: failed without naming $2"; cat "$scratch/out"; status=1
    fi
}
plant "upward include" src/ds/size_class.c '#include "global/global.h"'
plant "another layer's internal header" src/mem/central.c '#include "backend/page_heap.h"'
plant "same-rank include" src/backend/arena.c '#include "backend/backend.h"'
plant "buf/ using an internal layer" src/buf/slice.c '#include "base/base.h"'
plant "platform/ including src/" platform/linux.c '#include "base/common.h"'
[ $status -eq 0 ] && echo "layers: PASS" || echo "layers: FAIL"
exit $status
