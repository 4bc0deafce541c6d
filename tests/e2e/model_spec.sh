#!/usr/bin/env bash
# Model specs (docs/model-spec.md). A network written only as a spec file trains on
# Fashion-MNIST on 2 ranks to a stated accuracy; its checkpoint keeps the spec, so eval and
# --resume need no file, and PyTorch loads it into the nn.Sequential the spec maps to
# (strict names and shapes) with the same accuracy. A built-in model printed by `lockstep
# models` and trained as a file gives bitwise the weights --model gives. Bad specs are
# refused naming the layer.
source "$(dirname "$0")/common.bash"
[[ -d /usr/share/datasets/fashion-mnist ]] || { echo "SKIP: dataset-fashion-mnist not installed"; exit 0; }
cat >"$TMP/net.json" <<'EOF'
{
  "name": "strided-cnn",
  "summary": "not a zoo model: a strided convolution, batch norm, dropout",
  "vars": {"width": 16, "hidden": "4 * width"},
  "layers": [
    {"type": "conv2d", "out": "width", "kernel": 5, "stride": 2, "padding": 2, "bias": false},
    {"type": "batchnorm"},
    {"type": "relu"},
    {"type": "maxpool2d", "kernel": 2},
    {"type": "flatten"},
    {"type": "dropout", "p": 0.1},
    {"type": "linear", "out": "hidden"},
    {"type": "relu"},
    {"type": "linear", "out": "classes"}
  ]
}
EOF
"$LK" models "$TMP/net.json" --data fashion-mnist >"$TMP/layers.txt" || fail "models --data: $(cat "$TMP/layers.txt")"
grep -q "parameters: 51322" "$TMP/layers.txt" || fail "the spec's layers: $(cat "$TMP/layers.txt")"
mpi -n 2 --oversubscribe "$LK" train --model-file "$TMP/net.json" --epochs 1 --batch 32 --lr 0.05 --threads 1 \
  --sync-bn --save "$TMP/ck" >"$TMP/train.log" 2>&1 || fail "training a spec file: $(tail -5 "$TMP/train.log")"
acc=$(grep -o 'val_acc [0-9.]*' "$TMP/train.log" | tail -1 | cut -d' ' -f2)
echo "strided-cnn (a spec file), 1 epoch on 2 ranks: val_acc $acc"
/usr/bin/python3 -c "import sys; sys.exit(0 if $acc >= 0.85 else 1)" || fail "val_acc $acc < 0.85"
[[ -f $TMP/ck/model.json ]] || fail "the checkpoint keeps no model.json"
# eval and resume read the checkpoint's spec
eval_out=$("$LK" eval --checkpoint "$TMP/ck" --threads 1) || fail "eval: $eval_out"
echo "eval: $eval_out"
"$LK" train --resume "$TMP/ck" --steps 945 --batch 64 --lr 0.05 --threads 1 --force-resume \
  --quiet --save "$TMP/ck2" >"$TMP/resume.log" 2>&1 || fail "--resume with no model named: $(tail -3 "$TMP/resume.log")"
grep -qP '"model":\s*"strided-cnn"' "$TMP/ck2/config.json" || fail "the resumed run's checkpoint names another model"
# PyTorch: the spec's nn.Sequential, strict load, the same accuracy
torch_out=$(/usr/bin/python3 "$HERE/tests/reference/torch_eval.py" "$TMP/ck") || fail "PyTorch load: $torch_out"
echo "PyTorch: $torch_out"
tacc=$(/usr/bin/python3 -c "import json, sys; print(json.loads(sys.argv[1])[\"test_acc\"])" "$torch_out")
lacc=$(echo "$eval_out" | grep -o 'accuracy [0-9.]*' | head -1 | cut -d' ' -f2)
/usr/bin/python3 -c "import sys; sys.exit(0 if abs($tacc - $lacc) <= 0.002 else 1)" ||
  fail "PyTorch's accuracy $tacc, lockstep's $lacc"
# a built-in model as a file: bitwise the same run
"$LK" models cnn >"$TMP/cnn.json"
for how in "--model cnn" "--model-file $TMP/cnn.json"; do
  # shellcheck disable=SC2086
  "$LK" train $how --steps 5 --batch 16 --threads 1 --train-limit 200 --val-limit 100 --quiet \
    --save "$TMP/cnn-${how%% *}" || fail "cnn $how"
done
cmp -s "$TMP/cnn---model/model.safetensors" "$TMP/cnn---model-file/model.safetensors" ||
  fail "--model-file (cnn's spec) and --model cnn trained different weights"
# a spec's "init" is what --init default means for it
/usr/bin/python3 -c "import json, sys; s = json.load(open(sys.argv[1])); s['init'] = 'xavier'; json.dump(s, open(sys.argv[2], 'w'))" \
  "$TMP/cnn.json" "$TMP/cnn-xavier.json"
"$LK" train --model cnn --init xavier --steps 1 --lr 0 --batch 16 --threads 1 --train-limit 200 --val-limit 100 \
  --quiet --save "$TMP/x-flag" || fail "cnn --init xavier"
"$LK" train --model-file "$TMP/cnn-xavier.json" --steps 1 --lr 0 --batch 16 --threads 1 --train-limit 200 \
  --val-limit 100 --quiet --save "$TMP/x-spec" || fail "a spec with init xavier"
cmp -s "$TMP/x-flag/model.safetensors" "$TMP/x-spec/model.safetensors" ||
  fail "a spec's \"init\": \"xavier\" and --init xavier gave different weights"
# bad specs and flags, every one naming the culprit
echo '{"name": "x", "layers": [{"type": "flatten"}, {"type": "dense", "out": 3}]}' >"$TMP/bad1.json"
expect_fail 2 "$TMP/bad1.json: layers[1] ({\"type\":\"dense\",\"out\":3}): unknown layer type 'dense'" -- \
  "$LK" train --model-file "$TMP/bad1.json" --steps 1
echo '{"name": "x", "layers": [{"type": "flatten"}, {"type": "conv2d", "out": 4, "kernel": 3}]}' >"$TMP/bad2.json"
expect_fail 1 "conv2d takes images [C, H, W]; its input is [784]" -- \
  "$LK" train --model-file "$TMP/bad2.json" --steps 1 --threads 1
echo '{"name": "x", "blocks": {"a": [{"type": "block", "name": "a"}]}, "layers": [{"type": "block", "name": "a"}]}' \
  >"$TMP/bad3.json"
expect_fail 2 "block 'a' contains itself" -- "$LK" train --model-file "$TMP/bad3.json" --steps 1
expect_fail 2 "--model cnn and --model-file" -- "$LK" train --model cnn --model-file "$TMP/net.json" --steps 1
expect_fail 1 "--model-file $TMP/none.json: cannot open it" -- "$LK" train --model-file "$TMP/none.json" --steps 1
expect_fail 2 "--resume $TMP/ck holds model 'strided-cnn' but the run's is 'mlp'" -- \
  "$LK" train --model mlp --steps 1 --resume "$TMP/ck"
echo PASS
