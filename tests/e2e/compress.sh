#!/usr/bin/env bash
# --grad-compress bf16|fp16: gradient buckets travel in 16 bits, scaled by 1/world, each
# rank's part summed in float32 in rank order and rounded once, then scaled back.
# - the sums, and so the runs, are the same bit for bit whichever way the buckets go
#   (between layers, on the comm thread, reduce-scattered by ZeRO 1 and 2), in fp16 as in
#   bf16, on 2 and 3 ranks;
# - against float32 buckets after 30 steps: within 3e-2 (bf16: 8 bits of the sums; 1.4e-2
#   here) and 2e-2 (fp16: 11 bits, but this mlp's smallest gradients, scaled by 1/world,
#   fall below fp16's normals and lose bits: 0.9e-2 here);
# - --grad-dtype bf16 is --grad-compress bf16; the GAN's two bucket sets take fp16 too;
# - conflicting and bad values are refused.
# (The fp16 range - sums beyond 65504 whose average is not - is held by tests/mpi/test_sum16.)
source "$(dirname "$0")/common.bash"
[[ -d /usr/share/datasets/fashion-mnist ]] || { echo "SKIP: dataset-fashion-mnist not installed"; exit 0; }
check() { check_models "$@"; } # name reference candidate tolerance
run=(--model mlp --steps 30 --batch 16 --train-limit 3000 --val-limit 200 --lr 0.05 --optim momentum
     --seed 7 --quiet --threads 1)
mpi -n 2 --oversubscribe train "${run[@]}" --save "$TMP/fp32"
for w in fp16 bf16; do
  mpi -n 2 --oversubscribe train "${run[@]}" --grad-compress $w --comm-progress layers --save "$TMP/$w-layers"
  mpi -n 2 --oversubscribe train "${run[@]}" --grad-compress $w --comm-progress thread --save "$TMP/$w-thread"
  mpi -n 2 --oversubscribe train "${run[@]}" --grad-compress $w --zero 1 --save "$TMP/$w-z1"
  mpi -n 2 --oversubscribe train "${run[@]}" --grad-compress $w --zero 2 --bucket-mb 0.05 --save "$TMP/$w-z2"
  check "--grad-compress $w: comm thread vs between layers" "$TMP/$w-layers" "$TMP/$w-thread" 0
  check "--grad-compress $w: --zero 1 vs 0" "$TMP/$w-layers" "$TMP/$w-z1" 0
  check "--grad-compress $w: --zero 2 (small buckets) vs 0" "$TMP/$w-layers" "$TMP/$w-z2" 0
done
check "--grad-compress fp16 vs float32 buckets" "$TMP/fp32" "$TMP/fp16-layers" 2e-2
check "--grad-compress bf16 vs float32 buckets" "$TMP/fp32" "$TMP/bf16-layers" 3e-2
mpi -n 2 --oversubscribe train "${run[@]}" --grad-dtype bf16 --comm-progress layers --save "$TMP/dtype-bf16"
check "--grad-dtype bf16 is --grad-compress bf16" "$TMP/bf16-layers" "$TMP/dtype-bf16" 0
mpi -n 3 --oversubscribe train "${run[@]}" --grad-compress fp16 --comm-progress layers --save "$TMP/fp16-3-layers"
mpi -n 3 --oversubscribe train "${run[@]}" --grad-compress fp16 --comm-progress thread --zero 2 --save "$TMP/fp16-3-z2"
check "--grad-compress fp16, 3 ranks: comm thread and --zero 2 vs between layers" "$TMP/fp16-3-layers" \
  "$TMP/fp16-3-z2" 0
mpi -n 2 --oversubscribe train --model gan --steps 4 --batch 16 --train-limit 640 --val-limit 64 --quiet \
  --threads 1 --grad-compress fp16 || fail "gan with fp16 buckets"

expect_fail 2 "--grad-compress" -- "$LK" train --grad-compress fp8
expect_fail 2 "different gradient wires" -- "$LK" train --grad-dtype bf16 --grad-compress fp16
echo PASS
