#!/usr/bin/env bash
# --local-steps K [--local-start N]: local SGD with periodic averaging (src/comm/average.h).
# - K = 1 with momentum SGD (linear in the gradient) is data-parallel SGD up to float
#   rounding: within 1e-5 of it after 30 steps on 2 and 3 ranks;
# - K = 4 after 10 data-parallel steps, with the replica check at every average (the
#   replicas agree in full right after one: parameters and optimizer state averaged), Adam:
#   trains (validation loss within 15% of data-parallel training's), its checkpoint (taken
#   on averaged parameters) resumes, and the GAN's two networks step locally too;
# - bad values and --zero (a sharded optimizer cannot step every parameter) are refused.
source "$(dirname "$0")/common.bash"
[[ -d /usr/share/datasets/fashion-mnist ]] || { echo "SKIP: dataset-fashion-mnist not installed"; exit 0; }
run=(--model mlp --steps 30 --batch 16 --train-limit 3000 --val-limit 200 --lr 0.05 --optim momentum
     --seed 7 --quiet --threads 1)
for np in 2 3; do
  mpi -n $np --oversubscribe train "${run[@]}" --save "$TMP/ddp-$np"
  mpi -n $np --oversubscribe train "${run[@]}" --local-steps 1 --save "$TMP/k1-$np"
  check_models "--local-steps 1, $np ranks, momentum SGD vs data-parallel" "$TMP/ddp-$np" "$TMP/k1-$np" 1e-5
done
adam=(--model mlp --steps 40 --batch 16 --train-limit 3000 --val-limit 500 --lr 1e-3 --optim adam --seed 7
      --quiet --threads 1)
mpi -n 2 --oversubscribe train "${adam[@]}" --metrics "$TMP/ddp.jsonl"
mpi -n 2 --oversubscribe train "${adam[@]}" --local-steps 4 --local-start 10 --check-every 1 \
  --metrics "$TMP/k4.jsonl" --save "$TMP/k4"
/usr/bin/python3 - "$TMP/ddp.jsonl" "$TMP/k4.jsonl" <<'PY' || fail "local SGD's validation loss"
import json, sys
v = [[json.loads(l)["val_loss"] for l in open(p) if '"summary"' in l][-1] for p in sys.argv[1:]]
print(f"validation loss: data-parallel {v[0]:.4f}, --local-steps 4 --local-start 10 {v[1]:.4f}")
sys.exit(0 if v[1] <= 1.15 * v[0] else 1)
PY
mpi -n 2 --oversubscribe train "${adam[@]}" --steps 48 --local-steps 4 --local-start 10 --check-every 1 \
  --resume "$TMP/k4" || fail "a local SGD checkpoint did not resume"
mpi -n 2 --oversubscribe train --model gan --steps 6 --batch 16 --train-limit 640 --val-limit 64 --quiet \
  --threads 1 --local-steps 2 --check-every 1 || fail "gan with local SGD"

expect_fail 2 "--local-steps" -- "$LK" train --local-steps 0
expect_fail 2 "--local-start" -- "$LK" train --local-steps 2 --local-start -1
expect_fail 2 "--zero" -- mpi -n 2 --oversubscribe train --model mlp --steps 1 --train-limit 64 --val-limit 16 \
  --local-steps 2 --zero 1 --threads 1
echo PASS
