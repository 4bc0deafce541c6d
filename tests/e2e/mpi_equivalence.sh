#!/usr/bin/env bash
# Data parallelism is exact: N ranks x batch B reach the same parameters after k steps
# as 1 rank x batch N*B (and so does --accum), for mlp and cnn. Tolerance: 1e-5 of the
# largest weight of each tensor (only the order of float additions differs).
# Both ways of driving the all-reduces (comm thread, the default here, summing in place
# in shared memory; and non-blocking MPI between layers) are covered, and the comm
# thread through MPI (--shm off).
source "$(dirname "$0")/common.bash"
[[ -d /usr/share/datasets/fashion-mnist ]] || { echo "SKIP: dataset-fashion-mnist not installed"; exit 0; }
common=(--train-limit 3000 --val-limit 200 --lr 0.05 --optim momentum --seed 7 --quiet --threads 1)
loud=(); for a in "${common[@]}"; do [[ $a == --quiet ]] || loud+=("$a"); done
check() { # name reference candidate
  local d; d=$(max_rel_diff "$2/model.safetensors" "$3/model.safetensors")
  echo "$1: max relative difference $d"
  /usr/bin/python3 -c "import sys; sys.exit(0 if $d <= 1e-5 else 1)" || fail "$1: $d > 1e-5"
}
for model in mlp cnn; do
  steps=$([[ $model == mlp ]] && echo 40 || echo 8)
  "$LK" train --model $model --steps $steps --batch 48 "${common[@]}" --save "$TMP/$model-1x48"
  mpi -n 2 --oversubscribe train --model $model --steps $steps --batch 24 "${common[@]}" --save "$TMP/$model-2x24"
  mpi -n 3 --oversubscribe train --model $model --steps $steps --batch 16 --comm-progress layers \
    "${common[@]}" --save "$TMP/$model-3x16"
  mpi -n 3 --oversubscribe train --model $model --steps $steps --batch 16 "${loud[@]}" \
    --save "$TMP/$model-3x16-shm" | grep -q "shared memory between the 3 ranks of the host, gradients in place" ||
    fail "$model: 3 ranks did not all-reduce in shared memory"
  mpi -n 2 --oversubscribe train --model $model --steps $steps --batch 24 --shm off "${common[@]}" \
    --save "$TMP/$model-2x24-mpi"
  mpi -n 2 --oversubscribe train --model $model --steps $steps --batch 12 --accum 2 --bucket-mb 0.05 \
    "${common[@]}" --save "$TMP/$model-2x12x2"
  mpi -n 2 --oversubscribe train --model $model --steps $steps --batch 12 --accum 2 --bucket-mb 0.05 \
    --comm-progress layers "${common[@]}" --save "$TMP/$model-2x12x2-layers"
  "$LK" train --model $model --steps $steps --batch 16 --accum 3 "${common[@]}" --save "$TMP/$model-1x16x3"
  check "$model 2 ranks x 24 vs 1 x 48" "$TMP/$model-1x48" "$TMP/$model-2x24"
  check "$model 3 ranks x 16 (between layers) vs 1 x 48" "$TMP/$model-1x48" "$TMP/$model-3x16"
  check "$model 3 ranks x 16 (shared memory) vs 1 x 48" "$TMP/$model-1x48" "$TMP/$model-3x16-shm"
  check "$model 2 ranks x 24 (comm thread, MPI) vs 1 x 48" "$TMP/$model-1x48" "$TMP/$model-2x24-mpi"
  check "$model 2 ranks x 12 x accum 2 (small buckets) vs 1 x 48" "$TMP/$model-1x48" "$TMP/$model-2x12x2"
  check "$model the same, between layers" "$TMP/$model-1x48" "$TMP/$model-2x12x2-layers"
  check "$model 1 rank x 16 x accum 3 vs 1 x 48" "$TMP/$model-1x48" "$TMP/$model-1x16x3"
done
# a whole epoch of 1000 samples: the short last global batch (40) is split 20/20 and
# 13/13/14 across ranks, and the loss scaling keeps the step exact
tail=(--model mlp --epochs 1 --train-limit 1000 --val-limit 200 --lr 0.05 --seed 7 --quiet --threads 1)
"$LK" train "${tail[@]}" --batch 48 --save "$TMP/tail-1"
mpi -n 2 --oversubscribe train "${tail[@]}" --batch 24 --save "$TMP/tail-2"
mpi -n 3 --oversubscribe train "${tail[@]}" --batch 16 --save "$TMP/tail-3"
check "mlp epoch with a short last batch, 2 ranks" "$TMP/tail-1" "$TMP/tail-2"
check "mlp epoch with a short last batch, 3 ranks" "$TMP/tail-1" "$TMP/tail-3"
echo PASS
