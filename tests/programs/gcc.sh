#!/bin/sh
# gcc with XMM preloaded (the driver, cc1, as, collect2 and ld all run on
# it): compile a generated C file of 150 functions with -O2, check that the
# object file is byte for byte the one gcc makes without XMM, link it, run it
# (on XMM too) and check its output against the value computed in Python.
. "$(dirname "$0")/preload.inc"
need gcc

"$python" - "$work/big.c" <<'PY'
import sys
count = 150
with open(sys.argv[1], "w") as out:
    out.write("#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n")
    for i in range(count):
        k = (i * 2654435761) % 1000003
        c = i * 40503
        out.write("__attribute__((noinline)) unsigned long f%d(unsigned long x) {\n" % i)
        out.write("    unsigned long a[8]; for (int j = 0; j < 8; j++) a[j] = x * %dul + (unsigned long)j;\n" % k)
        out.write("    return a[x %% 8] - (x %% 8) + (x ^ %dul);\n}\n" % c)
    out.write("static unsigned long (*const table[])(unsigned long) = {")
    out.write(",".join("f%d" % i for i in range(count)))
    out.write("};\n")
    out.write("int main(void) {\n    unsigned long total = 0;\n")
    out.write("    char *text = malloc(100000); strcpy(text, \"\");\n")
    out.write("    for (unsigned long x = 0; x < 1000; x++)\n")
    out.write("        for (unsigned i = 0; i < %d; i++) total += table[i](x);\n" % count)
    out.write("    for (int i = 0; i < 1000; i++) { char n[16]; sprintf(n, \"%d\", i); strcat(text, n); }\n")
    out.write("    printf(\"%lu %zu\\n\", total, strlen(text));\n    free(text);\n    return 0;\n}\n")
mask = (1 << 64) - 1
total = 0
for x in range(1000):
    for i in range(count):
        k = (i * 2654435761) % 1000003
        c = i * 40503
        total = (total + ((x * k + (x % 8) - (x % 8)) & mask) + (x ^ c)) & mask
length = sum(len(str(i)) for i in range(1000))
with open(sys.argv[1] + ".expected", "w") as out:
    out.write("%d %d\n" % (total, length))
PY

cd "$work" || exit 1
if ! gcc -O2 -frandom-seed=xmm -c big.c -o plain.o 2>plain.err; then
    bad "gcc without XMM failed: $(head -5 plain.err)"
    finish
fi
xmm gcc -O2 -frandom-seed=xmm -c big.c -o xmm.o &&
    ok "gcc -O2 -c compiled 150 functions with XMM" ||
    bad "gcc with XMM failed ($xmm_status): $(head -5 "$work/xmm.err")"
expect_stats "gcc -c (driver, cc1, as)"
cmp -s plain.o xmm.o && ok "the object file is identical to the one made without XMM" ||
    bad "the object file differs from the one made without XMM"
xmm gcc -O2 -o big xmm.o && ok "gcc linked the program with XMM" ||
    bad "linking with XMM failed: $(head -5 "$work/xmm.err")"
expect_stats "gcc (link: collect2, ld)"
xmm ./big >big.out && ok "the program ran with XMM" || bad "the program failed with XMM"
if cmp -s big.out big.c.expected; then
    ok "its output $(cat big.out) is the value computed in Python"
else
    bad "output $(cat big.out), expected $(cat big.c.expected)"
fi
# The compiled program itself has XMM mapped.
cat >maps.c <<'C'
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
int main(void) {
    char line[4096]; int found = 0;
    FILE *maps = fopen("/proc/self/maps", "r");
    while (maps && fgets(line, sizeof line, maps)) if (strstr(line, "libxmm.so")) found = 1;
    printf("%s\n", found ? "mapped" : "absent");
    return 0;
}
C
xmm gcc -o maps maps.c && xmm ./maps >maps.out
[ "$(cat maps.out)" = mapped ] && ok "libxmm.so is in the compiled program's /proc/self/maps" ||
    bad "libxmm.so is not mapped in the compiled program"
finish
