#!/bin/sh
# perl with XMM preloaded: a hash-heavy script (400k keys, deletes, nested
# hashes, string building, sort); its checksum must equal that of the run
# without XMM and the sums computed in closed form.
. "$(dirname "$0")/preload.inc"
need perl

cat >"$work/hashes.pl" <<'PL'
use strict; use warnings;
my %h;
for my $i (0 .. 399_999) { $h{"key$i"} = $i * 3; }
for my $i (0 .. 399_999) { delete $h{"key$i"} if $i % 4 == 0; }
my $sum = 0; $sum += $_ for values %h;
my %nested;
for my $i (0 .. 49_999) { push @{ $nested{ $i % 1000 }{ $i % 7 } }, "v$i" x 3; }
my $count = 0;
for my $a (keys %nested) { for my $b (keys %{ $nested{$a} }) { $count += @{ $nested{$a}{$b} }; } }
my $text = join(",", sort { $a <=> $b } map { $_ * 7 % 100_003 } 0 .. 99_999);
my $check = 0; $check = ($check * 33 + ord($_)) % 1_000_000_007 for split //, substr($text, 0, 200_000);
printf "keys %d sum %d nested %d text %d check %d\n", scalar(keys %h), $sum, $count, length($text), $check;
open(my $maps, "<", "/proc/self/maps") or die;
my $mapped = grep { /libxmm\.so/ } <$maps>;
print STDERR "libxmm.so mapped: ", ($mapped ? "yes" : "no"), "\n";
PL

if ! perl "$work/hashes.pl" >"$work/expected.txt" 2>"$work/plain.err"; then
    bad "perl without XMM failed: $(cat "$work/plain.err")"
    finish
fi
xmm perl "$work/hashes.pl" >"$work/got.txt" && ok "perl ran the script with XMM" ||
    bad "perl with XMM exited $xmm_status: $(tail -5 "$work/xmm.err")"
grep -q "libxmm.so mapped: yes" "$work/xmm.err" && ok "libxmm.so is in perl's /proc/self/maps" ||
    bad "libxmm.so is not in perl's /proc/self/maps"
expect_stats perl
cmp -s "$work/expected.txt" "$work/got.txt" && ok "same output as without XMM: $(cat "$work/got.txt")" ||
    bad "output $(cat "$work/got.txt") differs from the run without XMM: $(cat "$work/expected.txt")"
# 300000 keys left (i % 4 != 0); their values 3i sum to 3 * (sum of all i - sum of multiples of 4).
expected_sum=$(( 3 * (399999 * 400000 / 2 - 4 * (99999 * 100000 / 2)) ))
grep -q "^keys 300000 sum $expected_sum nested 50000 " "$work/got.txt" &&
    ok "300000 keys summing to $expected_sum, 50000 nested entries" ||
    bad "expected keys 300000 sum $expected_sum nested 50000, got: $(cat "$work/got.txt")"
finish
