#!/usr/bin/env bash
# Quickstart: install dependencies, build lockstep (Release), train the reference CNN on
# Fashion-MNIST for 3 epochs and evaluate it on the test set.
#
#   launch/quickstart.sh [extra train flags...]
#
# Extra arguments are appended to `lockstep train` (e.g. --epochs 1, --threads 2).
# Output: build/ (the build tree), runs/quickstart/ (checkpoint + metrics.jsonl).
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

# Number of MPI ranks. Only 1 is supported by this script for now; the multi-rank
# launch (mpirun -np "$LK_RANKS" ...) is added by a later change.
LK_RANKS=${LK_RANKS:-1}
if [[ "$LK_RANKS" != 1 ]]; then
  echo "quickstart.sh: LK_RANKS=$LK_RANKS is not supported yet (single rank only)" >&2
  exit 2
fi

run_dir=runs/quickstart

echo "== dependencies"
launch/install-deps.sh

echo "== build (Release) into build/"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"

echo "== train cnn on fashion-mnist -> $run_dir"
mkdir -p "$run_dir"
build/lockstep train --model cnn --data fashion-mnist --epochs 3 --batch 64 \
  --optim momentum --lr 0.05 --schedule cosine --seed 0 \
  --save "$run_dir" --metrics "$run_dir/metrics.jsonl" "$@"

echo "== evaluate $run_dir on the fashion-mnist test set"
build/lockstep eval --checkpoint "$run_dir" --data fashion-mnist
