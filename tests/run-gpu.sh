#!/usr/bin/env bash
# The checks that need an NVIDIA GPU, on a machine that has one (tests/run.sh reports
# them as skipped elsewhere). Here a missing GPU is a failure, not a skip.
#
#   tests/run-gpu.sh          LK_CUDA_ARCHS=90 (default: Hopper plus the GPU found)
#
# 1. CPU/CUDA parity of every backend entry (tests/unit/test_cuda_parity.c);
# 2. NCCL with one rank (tests/mpi/test_collectives.c in a world of 1);
# 3. the MPI backend with device buffers: 2 ranks sharing GPU 0 (--gpu-comm mpi, staged
#    through pinned memory) reach the parameters of 1 rank with twice the batch
#    (relative difference <= 1e-4: cuDNN sums in other orders for other batch sizes);
# 4. `cnn` trained on the GPU with the CPU's accuracy recipe (3 epochs, momentum,
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

out=$(build-gpu/tests/test_collectives 2>&1) || true
if grep -q "OK \] test_nccl_one_rank" <<<"$out"; then ok "NCCL with one rank"; else
  bad "NCCL with one rank: $(grep -E "nccl|skipped|FAIL" <<<"$out" | head -3)"; fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
metrics=$tmp/m.jsonl
eq=(train --device cuda:0 --model cnn --steps 8 --train-limit 3000 --val-limit 200 --lr 0.05
    --seed 7 --quiet)
if build-gpu/lockstep "${eq[@]}" --batch 48 --save "$tmp/one" &&
   LK_BIN=build-gpu/lockstep launch/mpirun.sh -n 2 --oversubscribe train "${eq[@]:1}" --batch 24 \
     --gpu-comm mpi --save "$tmp/two"; then
  d=$(/usr/bin/python3 - "$tmp/one/model.safetensors" "$tmp/two/model.safetensors" <<'PY'
import json, struct, sys
def load(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
    return {k: struct.unpack(f"<{(v['data_offsets'][1] - v['data_offsets'][0]) // 4}f",
                             b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]])
            for k, v in h.items() if k != "__metadata__"}
a, b = load(sys.argv[1]), load(sys.argv[2])
print(max(max(abs(x - y) for x, y in zip(a[k], b[k])) / max(1e-12, max(abs(x) for x in a[k])) for k in a))
PY
)
  if /usr/bin/python3 -c "import sys; sys.exit(0 if $d <= 1e-4 else 1)"; then
    ok "2 ranks on one GPU through MPI = 1 rank: max relative difference $d"
  else
    bad "2 ranks on one GPU through MPI: max relative difference $d > 1e-4"
  fi
else
  bad "2 ranks on one GPU through MPI: a run failed"
fi

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
