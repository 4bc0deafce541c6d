#!/usr/bin/env bash
# One GPU, one run: lockstep (--device cuda) against PyTorch eager and torch.compile on
# `mlp-wide` and `cnn` at batch 256, same data; prints samples/s and lockstep's ratio to
# each. Goal: lockstep >= PyTorch eager on both. Both sides are timed over a whole run
# of steps after warm-up (GPU work is asynchronous; a step is done when its results
# are read), lockstep from its metrics' summary.
#
#   bench/gpu.sh [MODEL...]        LK_BENCH_STEPS (default 500)
#
# LK_PYTHON: the python3 with PyTorch (default: /usr/bin/python3 if it has it, else
# python3); LK_FASHION_MNIST_DIR: the IDX files, for both sides (default Debian's).
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
PY=${LK_PYTHON:-/usr/bin/python3}
[[ -n ${LK_PYTHON:-} ]] || { [[ -x $PY ]] && $PY -c 'import torch' 2>/dev/null; } || PY=python3
data=()
[[ -z ${LK_FASHION_MNIST_DIR:-} ]] || data=(--data "fashion-mnist:$LK_FASHION_MNIST_DIR")
steps=${LK_BENCH_STEPS:-500}
if [[ $# -gt 0 ]]; then models=("$@"); else models=(mlp-wide cnn); fi
LK=${LK_BIN:-build/lockstep}
[[ -x $LK ]] || { cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build -j >/dev/null; }
if "$LK" info | grep -q '^cuda: .* 0 GPUs visible\|^cuda: not built'; then
  echo "bench/gpu.sh: needs a GPU: $("$LK" info | grep '^cuda:')" >&2
  exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
field() { $PY -c "import json,sys; print(json.loads(sys.stdin.read().splitlines()[-1])[sys.argv[1]])" "$1"; }

echo "GPU: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)"
echo "lockstep: $("$LK" info | grep '^cuda:')"
echo "PyTorch: $($PY -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)')"
echo
echo "| model | lockstep samples/s | PyTorch eager | torch.compile | vs eager | vs compile |"
echo "|---|---:|---:|---:|---:|---:|"
for model in "${models[@]}"; do
  "$LK" train --device cuda --model "$model" --batch 256 --steps "$steps" --val-limit 1000 \
    "${data[@]}" --quiet --metrics "$tmp/m.jsonl"
  l=$(field samples_per_s <"$tmp/m.jsonl")
  e=$($PY bench/torch_ref.py --mode speed --device cuda --model "$model" --batch 256 \
        --steps "$steps" --warmup 50 | field samples_per_s)
  c=$($PY bench/torch_ref.py --mode speed --device cuda --compile --model "$model" --batch 256 \
        --steps "$steps" --warmup 50 2>"$tmp/compile.err" | field samples_per_s) || c=nan
  $PY - "$model" "$l" "$e" "$c" <<'PY'
import math, sys
model, l, e, c = sys.argv[1], *map(float, sys.argv[2:])
fmt = lambda v: "failed" if math.isnan(v) else f"{v:.0f}"
ratio = lambda v: "-" if math.isnan(v) else f"{l / v:.2f}x"
print(f"| {model} | {l:.0f} | {fmt(e)} | {fmt(c)} | {ratio(e)} | {ratio(c)} |")
PY
  [[ $c != nan ]] || echo "(torch.compile failed for $model: $(tail -1 "$tmp/compile.err"))"
done
