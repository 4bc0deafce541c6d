#!/usr/bin/env bash
# End to end against PyTorch: a checkpoint lockstep saved loads into the PyTorch
# twin of each reference model with strict names and shapes, and PyTorch's test
# loss and accuracy equal lockstep's own eval (loss within 1e-3 relative).
source "$(dirname "$0")/common.bash"
[[ -d /usr/share/datasets/fashion-mnist ]] || { echo "SKIP: dataset-fashion-mnist not installed"; exit 0; }
/usr/bin/python3 -c "import torch" 2>/dev/null || { echo "SKIP: python3-torch not installed"; exit 0; }
here=$(cd "$(dirname "$0")/../.." && pwd)
for model in mlp mlp-wide cnn lstm gru; do
  "$LK" train --model "$model" --steps 30 --val-limit 100 --threads 1 --quiet --save "$TMP/$model"
  ours=$("$LK" eval --checkpoint "$TMP/$model" --threads 1)
  theirs=$(OMP_NUM_THREADS=1 /usr/bin/python3 "$here/tests/reference/torch_eval.py" "$TMP/$model")
  echo "$model: lockstep: $ours"
  echo "$model: pytorch:  $theirs"
  /usr/bin/python3 - "$ours" "$theirs" <<'PY'
import json, re, sys
m = re.search(r"test accuracy ([0-9.]+)\s+loss ([0-9.]+)", sys.argv[1])
acc, loss = float(m.group(1)), float(m.group(2))
t = json.loads(sys.argv[2])
assert abs(acc - t["test_acc"]) <= 2e-4, (acc, t)
assert abs(loss - t["test_loss"]) <= 1e-3 * max(1.0, t["test_loss"]), (loss, t)
PY
done
echo PASS
