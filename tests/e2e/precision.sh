#!/usr/bin/env bash
# --precision bf16 (mixed precision) end to end:
# - data parallelism stays exact in bf16: N ranks x B reach 1 rank x N*B's parameters (mlp,
#   cnn, gpt; shared memory, MPI between layers, --accum, --zero 1 and 2). Tolerance 1e-2
#   of each tensor's largest weight: the ranks add the same per-sample gradients in
#   another order (float32 ulps, as in fp32's 1e-5 test), and an ulp can move a master
#   weight across a bf16 rounding boundary, which changes that weight's working copy by
#   2^-9 of itself in the next steps' products;
# - checkpoints hold the float32 masters (F32 tensors PyTorch loads as they are): a bf16
#   run resumes in fp32 and the other way round, and a bf16 run resumed is the run
#   straight through, bit for bit, also with --stochastic-round (the working copy is
#   rounded again from the masters with the step's own draws);
# - --grad-dtype bf16 gives the same run bit for bit through every path (see below);
# - --stochastic-round on 2 ranks keeps the replicas identical (checked every step);
# - bad values are refused.
source "$(dirname "$0")/common.bash"
[[ -d /usr/share/datasets/fashion-mnist ]] || { echo "SKIP: dataset-fashion-mnist not installed"; exit 0; }
common=(--train-limit 3000 --val-limit 200 --lr 0.05 --optim momentum --seed 7 --quiet --threads 1
        --precision bf16)
check() { check_models "$@"; } # name reference candidate tolerance
for model in mlp cnn; do
  steps=$([[ $model == mlp ]] && echo 40 || echo 8)
  "$LK" train --model $model --steps $steps --batch 48 "${common[@]}" --save "$TMP/$model-1x48"
  mpi -n 2 --oversubscribe train --model $model --steps $steps --batch 24 "${common[@]}" --save "$TMP/$model-2x24"
  mpi -n 3 --oversubscribe train --model $model --steps $steps --batch 16 --comm-progress layers \
    "${common[@]}" --save "$TMP/$model-3x16"
  mpi -n 2 --oversubscribe train --model $model --steps $steps --batch 24 --zero 1 "${common[@]}" \
    --save "$TMP/$model-2x24-z1"
  mpi -n 3 --oversubscribe train --model $model --steps $steps --batch 16 --zero 2 "${common[@]}" \
    --save "$TMP/$model-3x16-z2"
  "$LK" train --model $model --steps $steps --batch 16 --accum 3 "${common[@]}" --save "$TMP/$model-1x16x3"
  check "bf16 $model 2 ranks x 24 vs 1 x 48" "$TMP/$model-1x48" "$TMP/$model-2x24" 1e-2
  check "bf16 $model 3 ranks x 16 (between layers) vs 1 x 48" "$TMP/$model-1x48" "$TMP/$model-3x16" 1e-2
  check "bf16 $model 2 ranks x 24 --zero 1 vs 1 x 48" "$TMP/$model-1x48" "$TMP/$model-2x24-z1" 1e-2
  check "bf16 $model 3 ranks x 16 --zero 2 vs 1 x 48" "$TMP/$model-1x48" "$TMP/$model-3x16-z2" 1e-2
  check "bf16 $model 1 rank x 16 x accum 3 vs 1 x 48" "$TMP/$model-1x48" "$TMP/$model-1x16x3" 1e-2
done
gpt=(--model gpt --data text:/usr/share/common-licenses/GPL-3 --layers 1 --heads 2 --dim 16 --ctx 16
     --steps 6 --seed 7 --optim momentum --lr 0.05 --quiet --threads 1 --val-limit 20 --precision bf16)
"$LK" train "${gpt[@]}" --batch 12 --save "$TMP/gpt-1x12"
mpi -n 3 --oversubscribe train "${gpt[@]}" --batch 4 --save "$TMP/gpt-3x4"
check "bf16 gpt 3 ranks x 4 vs 1 x 12" "$TMP/gpt-1x12" "$TMP/gpt-3x4" 1e-2

# checkpoints: float32 masters; resumed across precisions; bf16 resumed = straight through
run=(--model cnn --batch 32 --train-limit 640 --val-limit 100 --seed 3 --quiet --threads 1 --optim adam --lr 1e-3)
for sr in "" --stochastic-round; do
  "$LK" train "${run[@]}" --epochs 2 --precision bf16 $sr --save "$TMP/straight$sr"
  "$LK" train "${run[@]}" --epochs 1 --precision bf16 $sr --save "$TMP/half$sr"
  "$LK" train "${run[@]}" --epochs 2 --precision bf16 $sr --resume "$TMP/half$sr" --save "$TMP/resumed$sr"
  check "bf16${sr:+ $sr} resumed vs straight through" "$TMP/straight$sr" "$TMP/resumed$sr" 0
done
/usr/bin/python3 - "$TMP/half/model.safetensors" <<'PY' || fail "a bf16 run's checkpoint does not hold float32 tensors"
import json, struct, sys
raw = open(sys.argv[1], "rb").read()
h = json.loads(raw[8:8 + struct.unpack("<Q", raw[:8])[0]]); h.pop("__metadata__", None)
bad = [k for k, e in h.items() if e["dtype"] != "F32"]
print(f"bf16 checkpoint: {len(h)} tensors, all F32" if not bad else f"not F32: {bad}")
sys.exit(1 if bad else 0)
PY
"$LK" train "${run[@]}" --epochs 2 --resume "$TMP/half" --save "$TMP/to-fp32" ||
  fail "a bf16 checkpoint did not resume in fp32"
"$LK" train "${run[@]}" --epochs 1 --save "$TMP/fp32-half"
"$LK" train "${run[@]}" --epochs 2 --precision bf16 --resume "$TMP/fp32-half" --save "$TMP/to-bf16" ||
  fail "an fp32 checkpoint did not resume in bf16"

# --grad-dtype bf16: every rank's part of a bucket is summed in float32 in rank order and
# rounded once, so the sums - and the runs - are the same bit for bit whichever way the
# buckets go (between layers or on the comm thread, all-reduced or reduce-scattered by
# ZeRO 1 and 2); against float32 buckets after 30 steps, within 3e-2 (every step's
# gradient sums rounded to 2^-9 of themselves, through momentum)
wire=(--model mlp --steps 30 --batch 16 --train-limit 3000 --val-limit 200 --lr 0.05 --optim momentum
      --seed 7 --quiet --threads 1 --grad-dtype bf16)
for p in fp32 bf16; do
  mpi -n 2 --oversubscribe train "${wire[@]}" --precision $p --comm-progress layers --save "$TMP/w-$p-layers"
  mpi -n 2 --oversubscribe train "${wire[@]}" --precision $p --comm-progress thread --save "$TMP/w-$p-thread"
  mpi -n 2 --oversubscribe train "${wire[@]}" --precision $p --zero 1 --save "$TMP/w-$p-z1"
  mpi -n 2 --oversubscribe train "${wire[@]}" --precision $p --zero 2 --bucket-mb 0.05 --save "$TMP/w-$p-z2"
  check "--grad-dtype bf16 --precision $p: comm thread vs between layers" "$TMP/w-$p-layers" "$TMP/w-$p-thread" 0
  check "--grad-dtype bf16 --precision $p: --zero 1 vs 0" "$TMP/w-$p-layers" "$TMP/w-$p-z1" 0
  check "--grad-dtype bf16 --precision $p: --zero 2 (small buckets) vs 0" "$TMP/w-$p-layers" "$TMP/w-$p-z2" 0
done
mpi -n 3 --oversubscribe train "${wire[@]}" --comm-progress layers --save "$TMP/w-3-layers"
mpi -n 3 --oversubscribe train "${wire[@]}" --comm-progress thread --zero 2 --save "$TMP/w-3-z2"
check "--grad-dtype bf16, 3 ranks: comm thread and --zero 2 vs between layers" "$TMP/w-3-layers" "$TMP/w-3-z2" 0
mpi -n 2 --oversubscribe train "${wire[@]}" --grad-dtype fp32 --save "$TMP/w-fp32-wire"
check "--grad-dtype bf16 vs fp32 buckets" "$TMP/w-fp32-wire" "$TMP/w-fp32-thread" 3e-2
mpi -n 2 --oversubscribe train --model gan --steps 4 --batch 16 --train-limit 640 --val-limit 64 --quiet \
  --threads 1 --grad-dtype bf16 --precision bf16 || fail "gan with bf16 buckets"

# stochastic rounding draws the same on every rank: the replica check passes every step
mpi -n 2 --oversubscribe train --model mlp --steps 20 --batch 16 "${common[@]}" --stochastic-round \
  --check-every 1 || fail "stochastic rounding on 2 ranks"

expect_fail 2 "--precision" -- "$LK" train --precision fp16
expect_fail 2 "--precision" -- "$LK" plan --memory --model mlp --precision half
expect_fail 2 "--grad-dtype" -- "$LK" train --grad-dtype fp16
echo PASS
