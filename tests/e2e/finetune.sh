#!/usr/bin/env bash
# Fine-tuning. --init-from DIR: a checkpoint's weights, nothing else of its run -
# at learning rate 0 the weights come out bitwise as they went in, with the step count
# from 0; trained on, it starts where the checkpoint was (accuracy far above a fresh
# start's after as many steps), on 1 rank or 2; another model, --resume with it and a
# missing checkpoint are refused, naming them. --freeze keeps the matching parameters
# bitwise as they were while the rest trains, and leaves them out of the all-reduce.
# --new-head moves a 10-class checkpoint to a 3-class set: all but the head comes in.
source "$(dirname "$0")/common.bash"
[[ -d /usr/share/datasets/fashion-mnist ]] || { echo "SKIP: dataset-fashion-mnist not installed"; exit 0; }
# kept_as BASE OUT PREFIX: OUT's tensors named PREFIX* bitwise BASE's, every other one changed
kept_as() {
  /usr/bin/python3 - "$1/model.safetensors" "$2/model.safetensors" "$3" <<'PY'
import json, struct, sys
def load(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
    return {k: b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]] for k, v in h.items() if k != "__metadata__"}
a, b = load(sys.argv[1]), load(sys.argv[2])
for k in sorted(a):
    print(k, "bitwise the checkpoint's" if a[k] == b[k] else "trained")
    assert (a[k] == b[k]) == k.startswith(sys.argv[3]), k
PY
}
loud=(train --model mlp --train-limit 4000 --val-limit 500 --batch 32 --threads 1 --optim momentum)
run=("${loud[@]}" --quiet)
"$LK" "${run[@]}" --steps 150 --lr 0.05 --save "$TMP/base"
"$LK" "${run[@]}" --steps 1 --lr 0 --init-from "$TMP/base" --save "$TMP/same" >"$TMP/same.log" 2>&1 ||
  fail "--init-from: $(cat "$TMP/same.log")"
check_models "--init-from at learning rate 0 vs the checkpoint" "$TMP/base" "$TMP/same" 0
grep -qP '"step":\s*1,' "$TMP/same/config.json" || fail "the fine-tuning run does not count its steps from 0"
acc() { grep -o 'val_acc [0-9.]*' "$1" | tail -1 | cut -d' ' -f2; }
"$LK" "${loud[@]}" --steps 10 --lr 0.05 --seed 7 >"$TMP/fresh.log" 2>&1
mpi -n 2 --oversubscribe "$LK" "${loud[@]}" --steps 10 --lr 0.05 --seed 7 --init-from "$TMP/base" \
  >"$TMP/tuned.log" 2>&1 || fail "--init-from on 2 ranks: $(tail -5 "$TMP/tuned.log")"
grep -q "weights from $TMP/base" "$TMP/tuned.log" || fail "the run does not say where its weights came from"
echo "10 steps: from scratch val_acc $(acc "$TMP/fresh.log"), from the checkpoint $(acc "$TMP/tuned.log")"
/usr/bin/python3 -c "import sys; sys.exit(0 if $(acc "$TMP/tuned.log") > $(acc "$TMP/fresh.log") + 0.1 else 1)" ||
  fail "starting from the checkpoint is no better than from scratch"
# --freeze: the first linear (1.*: the end of the flat buffer) kept bitwise, the head trains,
# and only the head's gradients are all-reduced
mpi -n 2 --oversubscribe "$LK" "${loud[@]}" --steps 20 --lr 0.05 --init-from "$TMP/base" --freeze '1.*' --clip 1 \
  --save "$TMP/frozen" >"$TMP/frozen.log" 2>&1 || fail "--freeze: $(tail -5 "$TMP/frozen.log")"
grep -q -- "--freeze 1.\*: 2 tensors kept as they are, 1290 parameters train; gradients \[0, 1296) of 101776 reduced" \
  "$TMP/frozen.log" || fail "--freeze does not say what it froze: $(grep freeze "$TMP/frozen.log")"
kept_as "$TMP/base" "$TMP/frozen" "1." || fail "--freeze"
# --new-head: a 3-class set in Fashion-MNIST's format (T-shirt, trouser, bag as 0, 1, 2); the
# 10-class checkpoint's head is refused without it; with it every other tensor comes in
# bitwise (learning rate 0) and the head is [3, 128], and fine-tuned it beats a fresh start
/usr/bin/python3 - "$TMP/three" <<'PY' || fail "writing the 3-class set"
import gzip, os, struct, sys
src, out = "/usr/share/datasets/fashion-mnist", sys.argv[1]
os.makedirs(out)
keep = {0: 0, 1: 1, 8: 2}
for split in ("train", "t10k"):
    lab = gzip.open(f"{src}/{split}-labels-idx1-ubyte.gz").read()[8:]
    img = gzip.open(f"{src}/{split}-images-idx3-ubyte.gz").read()[16:]
    idx = [i for i, c in enumerate(lab) if c in keep]
    with gzip.open(f"{out}/{split}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 2049, len(idx)) + bytes(keep[lab[i]] for i in idx))
    with gzip.open(f"{out}/{split}-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", 2051, len(idx), 28, 28) + b"".join(img[i * 784:(i + 1) * 784] for i in idx))
PY
three=(train --model mlp --data "mnist:$TMP/three" --batch 32 --threads 1 --optim momentum --val-limit 600)
expect_fail 1 "--init-from $TMP/base was trained for 10 classes, mnist:$TMP/three has 3 (--new-head" -- \
  "$LK" "${three[@]}" --steps 1 --init-from "$TMP/base"
"$LK" "${three[@]}" --steps 1 --lr 0 --init-from "$TMP/base" --new-head --save "$TMP/head0" >"$TMP/head0.log" 2>&1 ||
  fail "--new-head: $(tail -3 "$TMP/head0.log")"
grep -q -- "--new-head: layer 3 (linear) starts afresh for 3 classes" "$TMP/head0.log" ||
  fail "--new-head does not say what it replaced"
/usr/bin/python3 - "$TMP/base/model.safetensors" "$TMP/head0/model.safetensors" <<'PY' || fail "--new-head's weights"
import json, struct, sys
def load(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
    return {k: (v["shape"], b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]]) for k, v in h.items()
            if k != "__metadata__"}
a, b = load(sys.argv[1]), load(sys.argv[2])
assert a["1.weight"] == b["1.weight"] and a["1.bias"] == b["1.bias"], "the backbone is not the checkpoint's"
assert b["3.weight"][0] == [3, 128] and b["3.bias"][0] == [3], b["3.weight"][0]
print("--new-head: 1.* bitwise the checkpoint's, head", b["3.weight"][0])
PY
"$LK" "${three[@]}" --steps 15 --lr 0.05 --seed 3 >"$TMP/three-fresh.log" 2>&1 || fail "3 classes from scratch"
"$LK" "${three[@]}" --steps 15 --lr 0.05 --seed 3 --init-from "$TMP/base" --new-head >"$TMP/three-tuned.log" 2>&1 ||
  fail "3 classes with a new head: $(tail -3 "$TMP/three-tuned.log")"
echo "3 classes, 15 steps: from scratch val_acc $(acc "$TMP/three-fresh.log"), new head on the checkpoint $(acc "$TMP/three-tuned.log")"
/usr/bin/python3 -c "import sys; sys.exit(0 if $(acc "$TMP/three-tuned.log") > $(acc "$TMP/three-fresh.log") else 1)" ||
  fail "a new head on the checkpoint is no better than from scratch"
expect_fail 2 "--new-head replaces the head of --init-from's model" -- "$LK" "${run[@]}" --steps 1 --new-head
"$LK" train --model gpt --data text:/usr/share/common-licenses/GPL-3 --layers 1 --heads 1 --dim 16 --ctx 8 --steps 1 \
  --threads 1 --quiet --save "$TMP/gpt" || fail "a gpt checkpoint"
expect_fail 2 "--new-head: the model's output comes from layer 12 (tied_head), tied to layer 0's weights" -- \
  "$LK" train --model gpt --data text:/usr/share/common-licenses/GPL-3 --layers 1 --heads 1 --dim 16 --ctx 8 \
  --steps 1 --threads 1 --init-from "$TMP/gpt" --new-head
# ... and with the optimizer's state sharded (--zero 1): the same run to float rounding (the
# reduce-scatter sums in another order), the frozen tensors bitwise the checkpoint's
mpi -n 3 --oversubscribe "$LK" "${run[@]}" --steps 20 --lr 0.001 --optim adamw --init-from "$TMP/base" \
  --freeze '3.*' --save "$TMP/frz0" >"$TMP/frz0.log" 2>&1 || fail "--freeze on 3 ranks: $(tail -3 "$TMP/frz0.log")"
mpi -n 3 --oversubscribe "$LK" "${run[@]}" --steps 20 --lr 0.001 --optim adamw --init-from "$TMP/base" \
  --freeze '3.*' --zero 1 --save "$TMP/frz1" >"$TMP/frz1.log" 2>&1 || fail "--freeze --zero 1: $(tail -3 "$TMP/frz1.log")"
check_models "--freeze '3.*' with --zero 1 vs without (3 ranks)" "$TMP/frz0" "$TMP/frz1" 1e-6
kept_as "$TMP/base" "$TMP/frz1" "3." || fail "--freeze --zero 1"
expect_fail 2 "'9.*' matches no parameter of the model (its names are like 1.weight" -- \
  "$LK" "${run[@]}" --steps 1 --freeze '9.*'
expect_fail 2 "every parameter is frozen" -- "$LK" "${run[@]}" --steps 1 --freeze '*'
expect_fail 2 "--freeze is not for the gan, --zero 2" -- "$LK" "${run[@]}" --steps 1 --freeze '1.*' --zero 2
expect_fail 2 "--init-from $TMP/base holds model 'mlp' but the run's is 'cnn'" -- \
  "$LK" train --model cnn --steps 1 --threads 1 --init-from "$TMP/base"
expect_fail 2 "give one of them" -- "$LK" "${run[@]}" --steps 1 --init-from "$TMP/base" --resume "$TMP/base"
expect_fail 1 "$TMP/nowhere" -- "$LK" "${run[@]}" --steps 1 --init-from "$TMP/nowhere"
echo PASS
