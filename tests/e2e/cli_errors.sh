#!/usr/bin/env bash
# End to end: bad flags, bad files and bad checkpoints give a clear message that
# names the culprit and a non-zero exit, never a crash.
source "$(dirname "$0")/common.bash"

# (grep reads it all: grep -q would leave at the first match, and a help longer than a
# pipe write then dies of SIGPIPE, which pipefail reports)
"$LK" --version | grep "^lockstep " >/dev/null || fail "--version"
"$LK" --help | grep "train" >/dev/null || fail "--help"
"$LK" train --help | grep -- "--optim" >/dev/null || fail "train --help"
"$LK" train --help | grep -- "--zero 0|1|2" >/dev/null || fail "train --help: --zero"
"$LK" plan --help | grep -- "--memory" >/dev/null || fail "plan --help: --memory"

expect_fail 2 "unknown command 'trian'" -- "$LK" trian
expect_fail 2 "unknown flag '--bogus'" -- "$LK" train --bogus 1
expect_fail 2 "--batch: expected an integer, got 'abc'" -- "$LK" train --batch abc
expect_fail 2 "--batch: 0 is outside" -- "$LK" train --batch 0
expect_fail 2 "--lr: expected a number, got 'fast'" -- "$LK" train --lr fast
expect_fail 2 "unknown --optim 'adamm'" -- "$LK" train --optim adamm
expect_fail 2 "unknown --schedule 'linear'" -- "$LK" train --schedule linear
expect_fail 2 "unknown --model 'resnet'" -- "$LK" train --model resnet
expect_fail 2 "unknown --init 'zeros'" -- "$LK" train --init zeros
expect_fail 2 "--zero: expected 0, 1 or 2, got '3'" -- "$LK" train --zero 3
expect_fail 2 "--recompute: expected none, act or block, got 'all'" -- "$LK" train --recompute all
expect_fail 2 "--recompute: model gan loads real images" -- "$LK" train --model gan --recompute act --steps 1 --quiet
# a run that cannot fit is refused with its memory plan before anything is allocated
expect_fail 1 "the run does not fit: memory plan per rank" -- \
  "$LK" train --model gpt2 --data text:/usr/share/common-licenses/GPL-3 --batch 20000 --steps 1
expect_fail 2 "--schedule step needs --step-size" -- "$LK" train --schedule step
expect_fail 2 "--epochs needs a value" -- "$LK" train --epochs
expect_fail 2 "--comm-progress: expected auto, layers or thread, got 'poll'" -- "$LK" train --comm-progress poll
expect_fail 2 "--bind: expected cores or none, got 'numa'" -- "$LK" train --bind numa
expect_fail 2 "--bucket-mb: 0 is outside" -- "$LK" train --bucket-mb 0
expect_fail 2 "--shm: expected auto or off, got 'on'" -- "$LK" train --shm on
expect_fail 2 "--gpu-comm: expected auto, nccl or mpi, got 'gloo'" -- "$LK" train --gpu-comm gloo
expect_fail 2 "--comm-timeout: 0 is outside" -- "$LK" train --comm-timeout 0
# a GPU asked for where there is none: the reason, whatever the build
case $("$LK" info | grep '^cuda:') in
  *"not built"*) expect_fail 1 "no CUDA backend" -- "$LK" train --device cuda --steps 1 ;;
  *" 0 GPUs visible"*) expect_fail 1 "no usable GPU" -- "$LK" train --device cuda --steps 1 ;;
  *) expect_fail 1 "device cuda:999 does not exist" -- "$LK" train --device cuda:999 --steps 1 ;;
esac
expect_fail 2 "expected cuda:N with N a GPU number" -- "$LK" train --device cuda:x
expect_fail 2 "unknown device 'tpu'" -- "$LK" train --device tpu --steps 1
expect_fail 1 "$TMP/nope" -- "$LK" train --data "fashion-mnist:$TMP/nope" --steps 1
expect_fail 2 "unknown dataset" -- "$LK" train --data imagenet --steps 1
expect_fail 2 "--checkpoint DIR is required" -- "$LK" eval
expect_fail 1 "$TMP/none/config.json" -- "$LK" eval --checkpoint "$TMP/none"

# a corrupt IDX file: truncated images
mkdir -p "$TMP/fm"
src=/usr/share/datasets/fashion-mnist
if [[ -d $src ]]; then
  zcat "$src/t10k-images-idx3-ubyte.gz" >"$TMP/fm/train-images-idx3-ubyte"
  truncate -s 100000 "$TMP/fm/train-images-idx3-ubyte"
  cp "$src/t10k-labels-idx1-ubyte.gz" "$TMP/fm/train-labels-idx1-ubyte.gz"
  expect_fail 1 "train-images-idx3-ubyte: truncated" -- "$LK" train --data "fashion-mnist:$TMP/fm" --steps 1

  # a checkpoint to corrupt: 1 step of mlp
  "$LK" train --model mlp --steps 2 --val-limit 100 --threads 1 --quiet --save "$TMP/ck"
  "$LK" eval --checkpoint "$TMP/ck" --threads 1 | grep -q "test accuracy" || fail "eval of a good checkpoint"
  # predict: IDX input and a PGM image
  zcat "$src/t10k-images-idx3-ubyte.gz" >"$TMP/imgs.idx"
  "$LK" predict --checkpoint "$TMP/ck" --input "$TMP/imgs.idx" --limit 3 --top 2 >"$TMP/pred.txt"
  [[ $(wc -l <"$TMP/pred.txt") -eq 3 ]] || fail "predict should print 3 lines: $(cat "$TMP/pred.txt")"
  /usr/bin/python3 - "$TMP/img.pgm" <<'PY'
import sys
open(sys.argv[1], "wb").write(b"P5\n# a test\n28 28\n255\n" + bytes(range(256)) * 3 + bytes(784 - 768))
PY
  "$LK" predict --checkpoint "$TMP/ck" --input "$TMP/img.pgm" | grep -qE "^0	[0-9]	" || fail "predict on a PGM"
  printf 'P5\n10 10\n255\n' >"$TMP/bad.pgm"
  expect_fail 1 "bad.pgm: truncated" -- "$LK" predict --checkpoint "$TMP/ck" --input "$TMP/bad.pgm"
  expect_fail 1 "expects [1, 28, 28]" -- bash -c "printf 'P5\n10 10\n255\n%0100d' 0 >'$TMP/small.pgm'; '$LK' predict --checkpoint '$TMP/ck' --input '$TMP/small.pgm'"

  # corrupt weights: flip a byte near the end (data area) -> checksum mismatch
  cp -r "$TMP/ck" "$TMP/ck2"
  /usr/bin/python3 - "$TMP/ck2/model.safetensors" <<'PY'
import sys
p = sys.argv[1]; b = bytearray(open(p, "rb").read()); b[-5] ^= 0xFF; open(p, "wb").write(b)
PY
  expect_fail 1 "model.safetensors" -- "$LK" eval --checkpoint "$TMP/ck2"
  # truncated weights
  cp -r "$TMP/ck" "$TMP/ck3"
  truncate -s 1000 "$TMP/ck3/model.safetensors"
  expect_fail 1 "model.safetensors" -- "$LK" eval --checkpoint "$TMP/ck3"
  # weights of another model under this config: names/shapes refused
  "$LK" train --model mlp-wide --steps 1 --val-limit 10 --threads 1 --quiet --save "$TMP/ckw"
  cp "$TMP/ckw/model.safetensors" "$TMP/ck3/model.safetensors"
  expect_fail 1 "1.weight" -- "$LK" eval --checkpoint "$TMP/ck3"
  # resume with another model
  expect_fail 2 "holds model 'mlp'" -- "$LK" train --model cnn --steps 1 --resume "$TMP/ck"
  # corrupt config.json
  echo '{"format": "lockstep-checkpoint", "model": 3}' >"$TMP/ck3/config.json"
  expect_fail 1 "config.json: field \"model\"" -- "$LK" eval --checkpoint "$TMP/ck3"
fi
echo "PASS"
