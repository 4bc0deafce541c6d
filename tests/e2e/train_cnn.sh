#!/usr/bin/env bash
# End to end: trains `cnn` on a 3000-image subset of the real Fashion-MNIST for 2
# epochs and requires validation accuracy >= 0.72 on 1000 test images (PyTorch
# with the same recipe reaches ~0.77 on this subset); then checks that eval of
# the saved checkpoint reproduces the same accuracy, and that --resume continues.
source "$(dirname "$0")/common.bash"
[[ -d /usr/share/datasets/fashion-mnist ]] || { echo "SKIP: dataset-fashion-mnist not installed"; exit 0; }

"$LK" train --model cnn --train-limit 3000 --val-limit 1000 --epochs 2 --batch 64 \
  --optim momentum --lr 0.05 --schedule cosine --seed 0 --threads 1 --progress lines \
  --log-every 20 --save "$TMP/ck" --metrics "$TMP/m.jsonl"
acc=$(json_field "$TMP/m.jsonl" summary val_acc)
echo "val_acc after 2 epochs: $acc"
/usr/bin/python3 -c "import sys; sys.exit(0 if $acc >= 0.72 else 1)" || fail "val_acc $acc < 0.72"

# every metrics line has the documented keys
/usr/bin/python3 - "$TMP/m.jsonl" <<'PY'
import json, sys
steps = evals = summ = 0
for line in open(sys.argv[1]):
    r = json.loads(line)
    ev = r.get("event")
    if ev is None:
        assert {"step", "epoch", "loss", "lr", "samples_per_s", "step_ms", "comm_ms"} <= r.keys(), r
        steps += 1
    elif ev == "eval":
        assert {"val_loss", "val_acc"} <= r.keys(), r; evals += 1
    elif ev == "summary":
        assert {"samples_per_s", "step_ms_median", "world", "device", "val_loss", "val_acc"} <= r.keys(), r
        summ += 1
assert steps > 0 and evals == 2 and summ == 1, (steps, evals, summ)
print("metrics ok:", steps, "step records,", evals, "evaluations")
PY

# eval of the checkpoint on the full test set, and on the same 1000 images via the summary
"$LK" eval --checkpoint "$TMP/ck" --threads 1 | tee "$TMP/eval.txt"
grep -q "test accuracy 0\.[7-9]" "$TMP/eval.txt" || fail "eval accuracy too low: $(cat "$TMP/eval.txt")"

# resume for one more epoch: a longer cosine schedule is refused, then forced; the step
# count continues from 94
more=(train --model cnn --train-limit 3000 --val-limit 1000 --epochs 3 --batch 64 --optim momentum --lr 0.05
      --schedule cosine --seed 0 --threads 1 --progress lines --resume "$TMP/ck" --save "$TMP/ck")
expect_fail 2 "141 steps in all, not 94 (the cosine schedule's length) (--force-resume continues anyway)" -- \
  "$LK" "${more[@]}"
"$LK" "${more[@]}" --force-resume --metrics "$TMP/m2.jsonl" | tee "$TMP/resume.txt"
grep -q "resumed from .* at epoch 2, step 94" "$TMP/resume.txt" || fail "resume did not start at epoch 2 step 94"
steps=$(json_field "$TMP/m2.jsonl" summary steps)
[[ $steps -eq 141 ]] || fail "resumed run ended at step $steps, expected 141"
echo "PASS"
