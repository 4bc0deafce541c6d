#!/usr/bin/env bash
# Step checkpoints (--save-every, --keep, --resume of a directory of them):
# - the layout: DIR/step-NNNNNNNN for every N steps and each epoch's end, DIR/latest the
#   newest, only the newest K kept;
# - a run whose rank 1 is killed inside an epoch, resumed from its latest checkpoint with
#   the same flags, ends with parameters bitwise equal to the uninterrupted run's (the
#   sampler continues inside the epoch; learning rates and counters from the checkpoint);
# - killed while writing a checkpoint (weights and optimizer state written, config.json
#   not): latest still names the one before, which resumes to the same bitwise end;
# - on another world size with the same global batch (1 rank x 32 for 2 x 16) it trains the
#   same batches: within float rounding of the uninterrupted run;
# - a resume that would change the batches or the learning rates is refused, naming what
#   changed, unless --force-resume; --save-every without --save is refused.
source "$(dirname "$0")/common.bash"
[[ -d /usr/share/datasets/fashion-mnist ]] || { echo "SKIP: dataset-fashion-mnist not installed"; exit 0; }
# 640 samples, a global batch of 32: 20 steps an epoch; 50 steps end inside the third
run=(train --model mlp --train-limit 640 --val-limit 100 --batch 16 --steps 50 --optim momentum --lr 0.05
     --schedule cosine --warmup 5 --seed 3 --threads 1 --quiet --save-every 8)
mpi -n 2 --oversubscribe "${run[@]}" --save "$TMP/straight" --keep 2
[[ $(readlink "$TMP/straight/latest") == step-00000050 ]] || fail "latest is not step 50: $(ls -l "$TMP/straight")"
kept=$(cd "$TMP/straight" && echo step-*)
[[ $kept == "step-00000048 step-00000050" ]] || fail "--keep 2 kept: $kept"
grep -q '"epoch_step":	10' "$TMP/straight/step-00000050/config.json" ||
  fail "step 50 is not 10 steps into its epoch: $(cat "$TMP/straight/step-00000050/config.json")"

# rank 1 killed after step 29 (inside the second epoch): the latest checkpoint is step 24's
expect_nonzero "signal 9" -- \
  env LK_INJECT_FAULT=kill:1:29 bash -c "$(declare -f mpi); HERE='$HERE'; mpi -n 2 --oversubscribe '$LK' ${run[*]} --save '$TMP/cut'"
[[ $(readlink "$TMP/cut/latest") == step-00000024 ]] || fail "after the kill latest is not step 24: $(ls -l "$TMP/cut")"
cp -r "$TMP/cut" "$TMP/cut-1rank"
mpi -n 2 --oversubscribe "${run[@]}" --resume "$TMP/cut" --save "$TMP/cut" >"$TMP/resume.log" 2>&1 ||
  fail "resume after the kill: $(cat "$TMP/resume.log")"
check_models "killed at step 29, resumed from step 24 vs uninterrupted" "$TMP/straight/latest" "$TMP/cut/latest" 0

# rank 0 dies while writing step 16's checkpoint: latest stays step 8's
expect_nonzero "signal 9" -- \
  env LK_INJECT_FAULT=savekill:0:16 bash -c "$(declare -f mpi); HERE='$HERE'; mpi -n 2 --oversubscribe '$LK' ${run[*]} --save '$TMP/torn'"
[[ $(readlink "$TMP/torn/latest") == step-00000008 ]] || fail "after the torn save latest is not step 8: $(ls -l "$TMP/torn")"
[[ -f $TMP/torn/step-00000016/model.safetensors && ! -f $TMP/torn/step-00000016/config.json ]] ||
  fail "the kill did not come inside the write: $(ls -l "$TMP/torn/step-00000016" 2>&1)"
mpi -n 2 --oversubscribe "${run[@]}" --resume "$TMP/torn" --save "$TMP/torn" || fail "resume after the torn save"
check_models "killed while saving step 16, resumed from step 8 vs uninterrupted" "$TMP/straight/latest" \
  "$TMP/torn/latest" 0

# one rank with the whole global batch: the same batches, sums in another order
"$LK" "${run[@]}" --batch 32 --resume "$TMP/cut-1rank" --save "$TMP/cut-1rank" || fail "resume on 1 rank"
check_models "resumed on 1 rank x 32 vs 2 x 16 uninterrupted" "$TMP/straight/latest" "$TMP/cut-1rank/latest" 1e-4

# what a resume must not change silently
expect_fail 2 "this run would not continue it: the learning rates" -- \
  "$LK" "${run[@]/0.05/0.1}" --batch 32 --resume "$TMP/straight" --save "$TMP/x"
expect_fail 2 "a global batch of 16 (--batch 16 x 1 ranks x --accum 1), not 32" -- \
  "$LK" "${run[@]}" --resume "$TMP/straight" --save "$TMP/x"
expect_fail 2 "100 steps in all, not 50 (the cosine schedule's length)" -- \
  "$LK" "${run[@]/--steps 50/--steps 100}" --steps 100 --batch 32 --resume "$TMP/straight" --save "$TMP/x"
"$LK" "${run[@]}" --steps 100 --batch 32 --resume "$TMP/straight" --save "$TMP/forced" --force-resume ||
  fail "--force-resume did not continue"
expect_fail 2 "--save-every and --keep need --save DIR" -- "$LK" "${run[@]}"
echo PASS
