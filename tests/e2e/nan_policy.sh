#!/usr/bin/env bash
# Every step, every rank (--nan-policy): a NaN injected into rank 1's gradient at step 7
# (LK_INJECT_FAULT=nan:1:7, after the reduction: only rank 1 holds it)
# - stop: every rank ends with status 1 at step 7, rank 1 naming the layer;
# - skip: step 7 is skipped on every rank alike (the replicas compared at every step and
#   at the end), counted in the metrics and the summary line; the same under --zero 2
#   (each rank's slice) and between local SGD's averages; the run then equals one whose
#   step 7 took no update... so it trains on: the final loss is finite;
# - the gan's two updates are each checked, stop and skip alike;
# - --max-skips 0 stops at the first skip; bad values are refused.
source "$(dirname "$0")/common.bash"
[[ -d /usr/share/datasets/fashion-mnist ]] || { echo "SKIP: dataset-fashion-mnist not installed"; exit 0; }
run=(train --model mlp --train-limit 640 --val-limit 100 --batch 16 --steps 20 --optim momentum --lr 0.05
     --seed 3 --threads 1)
expect_nonzero "rank 1: error: step 7: not finite: loss" -- \
  env LK_INJECT_FAULT=nan:1:7 bash -c "$(declare -f mpi); HERE='$HERE'; mpi -n 2 --oversubscribe '$LK' ${run[*]}"
grep -q "rank 1: error: step 7: .*first in backward order in layer 3 (linear)" "$TMP/out" ||
  fail "rank 1 does not name the layer: $(cat "$TMP/out")"
grep -q "rank 0: error: step 7: not finite" "$TMP/out" || true # (rank 0 may be aborted before it prints)

# (LK_GUARD_DEFER=1: the host reads the device's verdicts only where a GPU's host waits
# anyway - each log line - as on a GPU: the same run, bit for bit)
for extra in "" "--zero 2" "--local-steps 4"; do
  for defer in 0 1; do
    LK_GUARD_DEFER=$defer LK_INJECT_FAULT=nan:1:7 mpi -n 2 --oversubscribe "${run[@]}" $extra --nan-policy skip \
      --check-every 1 --log-every 5 --metrics "$TMP/skip.jsonl" --save "$TMP/skip$defer" >"$TMP/skip.log" 2>&1 ||
      fail "--nan-policy skip $extra: $(tail -5 "$TMP/skip.log")"
    grep -q "step 7 skipped: not finite" "$TMP/skip.log" || fail "no skip said ($extra): $(cat "$TMP/skip.log")"
    grep -q "(1 steps skipped)" "$TMP/skip.log" || fail "the summary line does not count it ($extra)"
    [[ $(json_field "$TMP/skip.jsonl" summary skipped) == 1 ]] || fail "the metrics do not count it ($extra)"
    echo "--nan-policy skip $extra (read $( ((defer)) && echo at the log lines || echo every step)): $(grep '^done' "$TMP/skip.log")"
  done
  check_models "skip $extra: read every step vs at the log lines" "$TMP/skip0" "$TMP/skip1" 0
done
# stop read at a log line (step 10): still step 7, the parameters frozen since
expect_nonzero "rank 1: error: step 7: not finite: loss" -- \
  env LK_GUARD_DEFER=1 LK_INJECT_FAULT=nan:1:7 bash -c "$(declare -f mpi); HERE='$HERE'; mpi -n 2 --oversubscribe '$LK' ${run[*]} --log-every 5"
grep -q "rank 1: error: step 7: .*of step 10 (read then; the parameters unchanged since)" "$TMP/out" ||
  fail "the stop read later does not say so: $(grep error "$TMP/out")"
# skipping is not updating: with the NaN at the run's only step, the parameters stay put
LK_INJECT_FAULT=nan:1:1 mpi -n 2 --oversubscribe "${run[@]/--steps 20/--steps 1}" --steps 1 --nan-policy skip \
  --save "$TMP/none" >/dev/null 2>&1 || fail "a skipped only step"
mpi -n 2 --oversubscribe "${run[@]/--steps 20/--steps 1}" --steps 1 --lr 0 --save "$TMP/lr0" >/dev/null 2>&1 ||
  fail "a step at lr 0"
check_models "a skipped step vs a step at learning rate 0" "$TMP/lr0" "$TMP/none" 0
expect_nonzero "step 7: 1 steps skipped in a row (a gradient not finite), more than --max-skips 0" -- \
  env LK_INJECT_FAULT=nan:0:7 bash -c "$(declare -f mpi); HERE='$HERE'; mpi -n 2 --oversubscribe '$LK' ${run[*]} --nan-policy skip --max-skips 0"
expect_fail 2 "--nan-policy: 'ignore' is not stop or skip" -- "$LK" "${run[@]}" --nan-policy ignore
expect_fail 2 "--skip-spikes" -- "$LK" "${run[@]}" --skip-spikes 0.1
expect_fail 2 "its error feedback would keep a skipped step's gradient" -- \
  "$LK" "${run[@]}" --nan-policy skip --grad-compress powersgd:2
# the GAN: each of its two updates checked (a NaN in rank 1's discriminator gradient at step
# 4): stop names the step and the layer; skip drops that update on both ranks alike, read at
# once or at the log lines: the same run bit for bit
gan=(train --model gan --train-limit 640 --val-limit 100 --batch 16 --steps 10 --seed 3 --threads 1)
expect_nonzero "rank 1: error: step 4: not finite: loss" -- \
  env LK_INJECT_FAULT=nan:1:4 bash -c "$(declare -f mpi); HERE='$HERE'; mpi -n 2 --oversubscribe '$LK' ${gan[*]}"
grep -q "rank 1: error: step 4: .*first in backward order in layer [0-9]* (linear)" "$TMP/out" ||
  fail "the gan's stop does not name the layer: $(grep error "$TMP/out")"
for defer in 0 1; do
  LK_GUARD_DEFER=$defer LK_INJECT_FAULT=nan:1:4 mpi -n 2 --oversubscribe "${gan[@]}" --nan-policy skip --check-every 1 \
    --log-every 5 --save "$TMP/gan$defer" >"$TMP/gan.log" 2>&1 || fail "gan, --nan-policy skip: $(tail -5 "$TMP/gan.log")"
  grep -q "step 4 skipped: not finite" "$TMP/gan.log" && grep -q "(1 steps skipped)" "$TMP/gan.log" ||
    fail "the gan's skip is not said or counted: $(cat "$TMP/gan.log")"
done
check_models "gan, skip read every step vs at the log lines" "$TMP/gan0" "$TMP/gan1" 0
LK_INJECT_FAULT=nan:1:4 mpi -n 2 --oversubscribe "${gan[@]}" --nan-policy skip --check-every 1 --zero 2 >"$TMP/gan.log" 2>&1 &&
  grep -q "(1 steps skipped)" "$TMP/gan.log" || fail "gan, --zero 2, skip: $(tail -5 "$TMP/gan.log")"
expect_fail 2 "--skip-spikes is not for the gan" -- "$LK" train --model gan --steps 1 --skip-spikes 3
echo PASS
