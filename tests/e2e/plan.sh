#!/usr/bin/env bash
# lockstep plan: rows for 1, 2, 4 ... N ranks; 1 rank is the measured step with no
# communication; efficiency never rises with the ranks nor exceeds 1 and falls as the
# link slows; a bench-comm CSV fits the all-reduce; --shared-cores; under mpirun the ranks
# measure at once and one report is printed; the errors of its flags. (The
# formulas themselves: tests/unit/test_plan.c.)
source "$(dirname "$0")/common.bash"
[[ -d /usr/share/datasets/fashion-mnist ]] || { echo "SKIP: dataset-fashion-mnist not installed"; exit 0; }
table() { # plan output -> "ranks efficiency" lines
  grep -E '^ +[0-9]+ ' | awk '{print $1, $7}'
}
"$LK" plan --model mlp --ranks 6 --link-gbps 10 --latency-us 50 --steps 5 >"$TMP/fast"
cat "$TMP/fast"
[[ $(table <"$TMP/fast" | awk '{print $1}' | xargs) == "1 2 4 6" ]] || fail "expected rows for 1 2 4 6 ranks"
"$LK" plan --model mlp --ranks 6 --link-gbps 0.1 --latency-us 50 --steps 5 >"$TMP/slow"
/usr/bin/python3 - "$TMP/fast" "$TMP/slow" <<'PY'
import sys
def rows(p):
    return [(int(l.split()[0]), float(l.split()[6])) for l in open(p) if l[:2] == "  " and l.split()[0].isdigit()]
fast, slow = rows(sys.argv[1]), rows(sys.argv[2])
assert fast[0][1] == 1.0 and slow[0][1] == 1.0, (fast, slow)
for r in (fast, slow):
    e = [x[1] for x in r]
    assert all(0 < x <= 1.0 for x in e) and all(b <= a + 1e-9 for a, b in zip(e, e[1:])), e
assert all(s[1] < f[1] for f, s in zip(fast[1:], slow[1:])), (fast, slow)  # slower links cost more
PY
# a sweep's CSV fits alpha and beta
mpi -n 2 --oversubscribe bench comm --min-bytes 1K --max-bytes 1M --iters 3 --csv "$TMP/comm.csv" >/dev/null
"$LK" plan --model mlp --ranks 2 --comm-csv "$TMP/comm.csv" --steps 3 >"$TMP/fit"
grep -q "fitted to $TMP/comm.csv (2 ranks; sizes" "$TMP/fit" || fail "no fit: $(cat "$TMP/fit")"
# --shared-cores on one rank: the fitted time beyond the wire's slows backward beside it
"$LK" plan --model mlp --ranks 2 --comm-csv "$TMP/comm.csv" --link-gbps 1000 --shared-cores --steps 3 >"$TMP/shared"
grep -q "shared cores: [0-9]*% of each all-reduce" "$TMP/shared" || fail "no shared-cores line: $(cat "$TMP/shared")"
# under mpirun the ranks measure at once; rank 0 alone prints
mpi -n 2 --oversubscribe plan --model mlp --ranks 4 --link-gbps 10 --steps 3 >"$TMP/two"
[[ $(grep -c "^# lockstep plan" "$TMP/two") -eq 1 ]] || fail "expected one report: $(cat "$TMP/two")"
grep -q "2 ranks measuring at once" "$TMP/two" || fail "not measured at once: $(cat "$TMP/two")"
# ... and with --shared-cores they measure their all-reduces after and beside backward
mpi -n 2 --oversubscribe plan --model mlp --ranks 4 --link-gbps 10 --steps 3 --shared-cores >"$TMP/beside"
grep -Eq "shared cores: measured, the job's all-reduces took [0-9.]+ ms a step after backward, .* x [0-9.]+; .* beside backward they run at [0-9]+%" \
  "$TMP/beside" || fail "no measured all-reduce speed: $(cat "$TMP/beside")"
[[ $(grep -c "^# lockstep plan" "$TMP/beside") -eq 1 ]] || fail "expected one report: $(cat "$TMP/beside")"
# the ways to send less: on slow links 16-bit buckets and PowerSGD beat float32 ones, on
# fast links the conversions and PowerSGD's arithmetic cost more than the wire saves (the
# slow link is 100 Mbit/s: at 1 Gbit/s an instrumented build's conversions, measured at
# 5x their speed, can cost what the wire saves)
opt_step() { awk -v o="$2" '$0 ~ "^  "o {print $(NF-1)}' "$1"; }
for g in 0.1 1000; do
  "$LK" plan --model mlp --ranks 8 --link-gbps $g --steps 5 --grad-compress powersgd:4 --local-steps 8 >"$TMP/opt$g"
  grep -q "^# fastest here: " "$TMP/opt$g" || fail "no comparison of the options: $(cat "$TMP/opt$g")"
  grep -q "^  --local-steps 8 " "$TMP/opt$g" || fail "no local SGD row: $(cat "$TMP/opt$g")"
done
/usr/bin/python3 - "$(opt_step "$TMP/opt0.1" none)" "$(opt_step "$TMP/opt0.1" bf16)" "$(opt_step "$TMP/opt0.1" powersgd:4)" \
  "$(opt_step "$TMP/opt1000" none)" "$(opt_step "$TMP/opt1000" bf16)" "$(opt_step "$TMP/opt1000" powersgd:4)" <<'PY' ||
import sys
n1, h1, p1, n2, h2, p2 = map(float, sys.argv[1:])
print(f"step ms at 0.1 Gbit/s: float32 {n1}, 16-bit {h1}, powersgd:4 {p1}; at 1000: {n2}, {h2}, {p2}")
sys.exit(0 if h1 < n1 and p1 < n1 and n2 < h2 and n2 < p2 else 1)
PY
  fail "the options' order: $(cat "$TMP/opt0.1" "$TMP/opt1000")"
grep -q "^# to use here: " "$TMP/opt0.1" || fail "no option to use: $(cat "$TMP/opt0.1")"
# every projected rank on this host: the 16-bit sums are float32's pass in shared memory
mpi -n 2 --oversubscribe plan --model mlp --ranks 2 --steps 3 --comm-csv "$TMP/comm.csv" >"$TMP/host"
[[ $(opt_step "$TMP/host" "bf16, fp16 \\(in shared memory\\)") == "$(opt_step "$TMP/host" none)" ]] ||
  fail "16-bit sums in shared memory are not modelled as float32's pass: $(cat "$TMP/host")"
grep -q "^# to use here: " "$TMP/host" || fail "no option to use on one host: $(cat "$TMP/host")"
expect_fail 2 "powersgd:R" -- "$LK" plan --model mlp --grad-compress fp16
expect_fail 1 "not a \`lockstep bench comm --csv\` file" -- "$LK" plan --model mlp --comm-csv /etc/hostname
expect_fail 2 "unknown --model" -- "$LK" plan --model nosuch --steps 1
expect_fail 2 "--link-gbps" -- "$LK" plan --model mlp --link-gbps 0
expect_fail 2 "not modelled" -- "$LK" plan --model gan --steps 1
expect_fail 2 "--shared-cores on one rank needs --comm-csv" -- "$LK" plan --model mlp --shared-cores --steps 1
echo PASS
