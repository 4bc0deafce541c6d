#!/usr/bin/env bash
# launch/run.sh, the restart launcher:
# - 3 ranks of cnn with --save-every 20, rank 1 killed (SIGKILL) at a random step: the job
#   finishes on its own from the latest checkpoint, its final parameters bitwise the
#   uninterrupted run's;
# - the same with the host's slots cut from 3 to 2 when the rank dies: the relaunch runs
#   on 2 ranks with the same global batch (16 x 3 = 12 x 2 x --accum 2): the same batches,
#   sums in another order - whose rounding cnn's max-pools can turn into other choices, so
#   up to 1e-2 after ~40 steps (8e-6 to 3e-3 seen), where other batches (another seed) end
#   more than 10x farther;
# - not restarted: a bad flag (status 2), fewer ranks than --min-ranks; a job that keeps
#   failing stops after --max-restarts.
source "$(dirname "$0")/common.bash"
[[ -d /usr/share/datasets/fashion-mnist ]] || { echo "SKIP: dataset-fashion-mnist not installed"; exit 0; }
export LK_BIN=$LK
export ASAN_OPTIONS=${ASAN_OPTIONS:+${ASAN_OPTIONS}:}detect_leaks=0
job=(train --model cnn --train-limit 960 --val-limit 100 --batch 16 --steps 60 --optim momentum --lr 0.05
     --seed 5 --threads 1 --quiet --save-every 20)
mpi -n 3 --oversubscribe "${job[@]}" --save "$TMP/straight"

kill_at=$((21 + RANDOM % 38))
echo "rank 1 is killed after step $kill_at"
LK_INJECT_FAULT=kill:1:$kill_at LK_INJECT_FAULT_ONCE=$TMP/fired \
  "$HERE/launch/run.sh" -n 3 --oversubscribe --max-restarts 2 -- "${job[@]}" --save "$TMP/restarted" \
  2>"$TMP/restart.log" || fail "the restarted job failed: $(tail -20 "$TMP/restart.log")"
[[ -f $TMP/fired ]] || fail "the fault never fired"
grep -q "run.sh: restart 1 of 2 after status 137 (a rank or its host was lost: signal 9): from step-000000[24]0 on 3 ranks" \
  "$TMP/restart.log" || fail "no restart logged: $(grep run.sh "$TMP/restart.log")"
check_models "killed after step $kill_at and restarted vs uninterrupted" "$TMP/straight/latest" "$TMP/restarted/latest" 0

# the host loses a slot as the rank dies: the relaunch has 2 ranks
printf 'localhost slots=3\n' >"$TMP/hosts"
( for _ in $(seq 1200); do [[ -f $TMP/fired2 ]] && break; sleep 0.05; done  # (60 s at most)
  printf 'localhost slots=2\n' >"$TMP/hosts" ) &
LK_INJECT_FAULT=kill:1:$kill_at LK_INJECT_FAULT_ONCE=$TMP/fired2 \
  "$HERE/launch/run.sh" --hostfile "$TMP/hosts" --oversubscribe --max-restarts 2 -- "${job[@]}" --save "$TMP/fewer" \
  2>"$TMP/fewer.log" || fail "the job cut to 2 ranks failed: $(tail -20 "$TMP/fewer.log")"
wait
grep -q "from step-000000[24]0 on 2 ranks" "$TMP/fewer.log" || fail "not relaunched on 2 ranks: $(grep run.sh "$TMP/fewer.log")"
grep -q '"accum":	2' "$TMP/fewer/latest/config.json" && grep -q '"batch":	12' "$TMP/fewer/latest/config.json" ||
  fail "2 ranks did not keep the global batch: $(cat "$TMP/fewer/latest/config.json")"
check_models "cut from 3 ranks to 2 and restarted vs uninterrupted" "$TMP/straight/latest" "$TMP/fewer/latest" 1e-2
mpi -n 3 --oversubscribe "${job[@]}" --seed 6 --save "$TMP/other" # (the later --seed wins)
d_same=$(max_rel_diff "$TMP/straight/latest/model.safetensors" "$TMP/fewer/latest/model.safetensors")
d_other=$(max_rel_diff "$TMP/straight/latest/model.safetensors" "$TMP/other/latest/model.safetensors")
echo "other batches (--seed 6) vs uninterrupted: max relative difference $d_other"
/usr/bin/python3 -c "import sys; sys.exit(0 if $d_other > 10 * $d_same else 1)" ||
  fail "2 ranks ended no closer to the uninterrupted run ($d_same) than other batches do ($d_other)"

# not restarted
expect_fail 2 "not restarted" -- "$HERE/launch/run.sh" -n 2 --oversubscribe -- "${job[@]}" --save "$TMP/bad" --lr -1
printf 'localhost slots=1\n' >"$TMP/one"
expect_fail 1 "only 1 ranks left, fewer than --min-ranks 2" -- \
  "$HERE/launch/run.sh" --hostfile "$TMP/one" --min-ranks 2 -- "${job[@]}" --save "$TMP/few"
expect_fail 2 "train needs --save DIR" -- "$HERE/launch/run.sh" -n 2 -- "${job[@]}"
# a rank that dies on every attempt: given up after --max-restarts 1
LK_DEADLINE=120 expect_nonzero "--max-restarts 1 reached: giving up" -- \
  env LK_INJECT_FAULT=kill:1:25 "$HERE/launch/run.sh" -n 2 --oversubscribe --max-restarts 1 -- "${job[@]}" --save "$TMP/always"
echo PASS
