#!/usr/bin/env bash
# The checks that need an NVIDIA GPU, on a machine that has one (tests/run.sh reports
# them as skipped elsewhere). Here a missing GPU is a failure, not a skip.
#
#   tests/run-gpu.sh          LK_CUDA_ARCHS=90 (default: Hopper plus the GPU found)
#
# 1. CPU/CUDA parity of every backend entry (tests/unit/test_cuda_parity.c);
# 2. `cnn` trained on the GPU with the CPU's accuracy recipe (3 epochs, momentum,
#    lr 0.05, cosine, batch 64, seed 0) must reach the same bar: test accuracy >= 0.905.
# The last line is "N passed, N failed".
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
passed=0 failed=0
ok() { echo "PASS: $*"; passed=$((passed + 1)); }
bad() { echo "FAIL: $*"; failed=$((failed + 1)); }

if ! nvidia-smi -L; then
  echo "run-gpu.sh: no GPU visible (nvidia-smi -L failed)"
  echo "0 passed, 1 failed"
  exit 1
fi
launch/install-deps.sh >/dev/null
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DLK_CUDA=ON ${LK_CUDA_ARCHS:+-DLK_CUDA_ARCHS="$LK_CUDA_ARCHS"}
cmake --build build-gpu -j"$(nproc)"

rc=0
build-gpu/tests/test_cuda_parity || rc=$?
if [[ $rc -eq 0 ]]; then ok "CPU/CUDA parity"; else bad "CPU/CUDA parity (exit $rc; 77 = skipped: no GPU)"; fi

metrics=$(mktemp)
trap 'rm -f "$metrics"' EXIT
if build-gpu/lockstep train --device cuda --model cnn --epochs 3 --batch 64 --optim momentum \
     --lr 0.05 --schedule cosine --seed 0 --metrics "$metrics" --progress lines; then
  acc=$(/usr/bin/python3 -c "import json,sys; print([json.loads(l) for l in open(sys.argv[1])][-1]['val_acc'])" "$metrics")
  if /usr/bin/python3 -c "import sys; sys.exit(0 if $acc >= 0.905 else 1)"; then
    ok "cnn on CUDA: test accuracy $acc >= 0.905"
  else
    bad "cnn on CUDA: test accuracy $acc < 0.905"
  fi
else
  bad "cnn on CUDA: training failed"
fi
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
