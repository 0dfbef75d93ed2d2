#!/bin/sh
# sqlite3 with XMM preloaded: create a table, insert 100000 rows through a
# recursive CTE, index it, aggregate, join and sort. The results must equal
# the closed-form values and those of the same session without XMM.
. "$(dirname "$0")/preload.inc"
need sqlite3

cat >"$work/queries.sql" <<'SQL'
CREATE TABLE t(id INTEGER PRIMARY KEY, grp INTEGER, val INTEGER, name TEXT);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000)
INSERT INTO t SELECT x, x % 100, x * 3, 'name-' || x FROM c;
CREATE INDEX t_grp ON t(grp);
CREATE INDEX t_name ON t(name);
SELECT 'count', COUNT(*), SUM(id), SUM(val) FROM t;
SELECT 'groups', COUNT(*), MIN(s), MAX(s) FROM (SELECT grp, SUM(val) AS s FROM t GROUP BY grp);
SELECT 'group7', COUNT(*), SUM(id) FROM t WHERE grp = 7;
SELECT 'names', COUNT(*) FROM t WHERE name LIKE 'name-99%';
SELECT 'join', COUNT(*), SUM(b.val) FROM t a JOIN t b ON b.id = a.grp + 1 WHERE a.grp = 3;
SELECT 'sorted', GROUP_CONCAT(name) FROM (SELECT name FROM t ORDER BY name DESC LIMIT 3);
SELECT 'length', SUM(LENGTH(name)) FROM t;
SQL

sqlite3 "$work/plain.db" <"$work/queries.sql" >"$work/expected.txt" 2>"$work/plain.err" || {
    bad "sqlite3 without XMM failed: $(cat "$work/plain.err")"
    finish
}
xmm sqlite3 "$work/xmm.db" <"$work/queries.sql" >"$work/got.txt" &&
    ok "sqlite3 ran the queries with XMM" ||
    bad "sqlite3 with XMM exited $xmm_status: $(tail -5 "$work/xmm.err")"
expect_stats sqlite3
cmp -s "$work/expected.txt" "$work/got.txt" && ok "same results as without XMM" ||
    { bad "results differ from the run without XMM"; diff "$work/expected.txt" "$work/got.txt"; }
# Closed forms: ids 1..100000, val = 3 id.
grep -q "^count|100000|5000050000|15000150000\$" "$work/got.txt" &&
    ok "100000 rows, sum(id) 5000050000, sum(val) 15000150000" ||
    bad "count line wrong: $(grep '^count' "$work/got.txt")"
# grp 7: ids 7, 107, ..., 99907: 1000 rows summing to 1000*7 + 100*(0+...+999).
grep -q "^group7|1000|$((1000 * 7 + 100 * 999 * 1000 / 2))\$" "$work/got.txt" &&
    ok "the index lookup of grp = 7 finds 1000 rows with the right sum" ||
    bad "group7 line wrong: $(grep '^group7' "$work/got.txt")"
grep -q "^sorted|name-99999,name-99998,name-99997\$" "$work/got.txt" &&
    ok "ORDER BY name DESC gives name-99999, name-99998, name-99997" ||
    bad "sorted line wrong: $(grep '^sorted' "$work/got.txt")"
grep -q "^join|1000|12000\$" "$work/got.txt" &&
    ok "the join of 1000 rows on the primary key sums to 12000" ||
    bad "join line wrong: $(grep '^join' "$work/got.txt")"
# sqlite3 itself has XMM mapped: .shell runs a shell whose parent is sqlite3.
printf '.shell cat /proc/$PPID/maps\n' | xmm sqlite3 >"$work/sqlite.maps"
grep -q libxmm.so "$work/sqlite.maps" && ok "libxmm.so is in sqlite3's /proc/PID/maps" ||
    bad "libxmm.so is not mapped in sqlite3"
finish
