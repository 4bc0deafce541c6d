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

# Number of MPI ranks (data-parallel replicas): 2 by default; each gets its share of
# the cores. LK_RANKS=1 trains in one process without mpirun.
LK_RANKS=${LK_RANKS:-2}
if ! [[ "$LK_RANKS" =~ ^[1-9][0-9]*$ ]]; then
  echo "quickstart.sh: LK_RANKS must be a positive number, got '$LK_RANKS'" >&2
  exit 2
fi

run_dir=runs/quickstart

echo "== dependencies"
launch/install-deps.sh

echo "== build (Release) into build/"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"

echo "== train cnn on fashion-mnist with $LK_RANKS rank(s) -> $run_dir"
mkdir -p "$run_dir"
launch=()
if [[ $LK_RANKS -gt 1 ]]; then
  launch=(launch/mpirun.sh -n "$LK_RANKS")
  [[ $LK_RANKS -gt $(getconf _NPROCESSORS_ONLN) ]] && launch+=(--oversubscribe)
fi
# --batch is per rank: 64 / ranks keeps the recipe's global batch of 64
batch=$(( 64 / LK_RANKS > 0 ? 64 / LK_RANKS : 1 ))
"${launch[@]}" build/lockstep train --model cnn --data fashion-mnist --epochs 3 --batch "$batch" \
  --optim momentum --lr 0.05 --schedule cosine --seed 0 \
  --save "$run_dir" --metrics "$run_dir/metrics.jsonl" "$@"

echo "== evaluate $run_dir on the fashion-mnist test set"
build/lockstep eval --checkpoint "$run_dir" --data fashion-mnist
