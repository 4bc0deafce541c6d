#!/usr/bin/env bash
# lockstep bench comm: one row per size (doubling, both ends included), no element wrong
# in the checked all-reduce, busbw = algbw x 2(n-1)/n, the CSV; 2 ranks through shared
# memory, 3 through MPI (back to back, and each after a barrier), a world of one; the
# errors of its flags.
source "$(dirname "$0")/common.bash"
rows() { # FILE WORLD -> checks the table and prints its row count
  /usr/bin/python3 - "$1" "$2" <<'PY'
import sys
lines = [l.split() for l in open(sys.argv[1]) if l.strip() and not l.startswith("#")]
n = int(sys.argv[2])
factor = 2 * (n - 1) / n
for size, count, iters, t, alg, bus, wrong in lines:
    assert int(count) * 4 == int(size), (size, count)
    assert int(wrong) == 0, ("wrong elements", size, wrong)
    assert float(t) > 0 or n == 1, ("time", size, t)
    assert abs(float(bus) - float(alg) * factor) <= 0.002 + 1e-3 * float(alg), (size, alg, bus)
sizes = [int(l[0]) for l in lines]
assert all(b == 2 * a for a, b in zip(sizes, sizes[1:])), sizes
print(len(lines), sizes[0], sizes[-1])
PY
}
mpi -n 2 --oversubscribe bench comm --max-bytes 1M --iters 5 --csv "$TMP/two.csv" >"$TMP/two.txt"
cat "$TMP/two.txt"
grep -q "shared memory" "$TMP/two.txt" || fail "2 ranks on one host did not all-reduce in shared memory"
[[ $(rows "$TMP/two.txt" 2) == "19 4 1048576" ]] || fail "2 ranks: expected 19 rows from 4 B to 1 MiB"
[[ $(wc -l <"$TMP/two.csv") -eq 20 ]] || fail "the CSV should hold a header and 19 rows"
head -1 "$TMP/two.csv" | grep -q "^bytes,count,iters,time_us,algbw_gbs,busbw_gbs,wrong,ranks$" || fail "CSV header"
mpi -n 3 --oversubscribe bench comm --min-bytes 1K --max-bytes 64K --iters 5 --shm off >"$TMP/three.txt"
grep -q "Open MPI" "$TMP/three.txt" || fail "--shm off did not go through MPI"
[[ $(rows "$TMP/three.txt" 3) == "7 1024 65536" ]] || fail "3 ranks: expected 7 rows from 1 KiB to 64 KiB"
grep -q "back to back" "$TMP/three.txt" || fail "the default is not back to back"
# --barrier: each all-reduce alone after a barrier, the same table and the same sums
mpi -n 3 --oversubscribe bench comm --min-bytes 1K --max-bytes 64K --iters 5 --shm off --barrier >"$TMP/bar.txt"
grep -q "each all-reduce timed alone, after a barrier" "$TMP/bar.txt" || fail "--barrier: no such line: $(cat "$TMP/bar.txt")"
[[ $(rows "$TMP/bar.txt" 3) == "7 1024 65536" ]] || fail "--barrier, 3 ranks: expected 7 rows from 1 KiB to 64 KiB"
"$LK" bench comm --max-bytes 64 --iters 3 >"$TMP/one.txt"
[[ $(rows "$TMP/one.txt" 1) == "5 4 64" ]] || fail "a world of one: expected 5 rows"
expect_fail 2 "which one" -- "$LK" bench
expect_fail 2 "unknown benchmark 'step' (known: comm, gemm)" -- "$LK" bench step
expect_fail 2 "whole floats" -- "$LK" bench comm --min-bytes 6
expect_fail 2 "expected a size" -- "$LK" bench comm --max-bytes 12Q
expect_fail 2 "unknown flag" -- "$LK" bench comm --bogus
expect_fail 1 "--csv /no/such/dir/x.csv" -- "$LK" bench comm --max-bytes 64 --csv /no/such/dir/x.csv
echo PASS
