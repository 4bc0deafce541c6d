#!/usr/bin/env bash
# Weak scaling on this machine: `cnn` (or the models given), batch 64 per rank, 1 thread
# per rank, 1 rank and 2 ranks, for lockstep (MPI) and PyTorch DDP (gloo), in one run.
# Prints samples/s (all ranks together) and weak-scaling efficiency
# = samples/s(2 ranks) / (2 x samples/s(1 rank)).
#
#   bench/scaling.sh [MODEL...]      LK_BENCH_STEPS (default 150), LK_BENCH_REPEATS (2)
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
PY=/usr/bin/python3
steps=${LK_BENCH_STEPS:-150}
repeats=${LK_BENCH_REPEATS:-2}
if [[ $# -gt 0 ]]; then models=("$@"); else models=(cnn); fi
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
launch/install-deps.sh --with-torch >/dev/null
[[ -x build/lockstep ]] || { cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build -j >/dev/null; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

summary() { $PY -c "import json,sys; print([json.loads(l) for l in open(sys.argv[1])][-1]['samples_per_s'])" "$1"; }
best() { printf '%s\n' "$@" | sort -g | tail -1; }

lockstep_run() { # ranks model
  local m="$tmp/m.jsonl"
  if [[ $1 -eq 1 ]]; then
    build/lockstep train --model "$2" --batch 64 --threads 1 --steps "$steps" --val-limit 100 --quiet --metrics "$m"
  else
    launch/mpirun.sh -n "$1" train --model "$2" --batch 64 --threads 1 --steps "$steps" --val-limit 100 --quiet --metrics "$m"
  fi
  summary "$m"
}
torch_run() { # ranks model
  $PY bench/torch_ddp.py --model "$2" --world "$1" --batch 64 --threads 1 --steps "$steps" --warmup 20 |
    $PY -c "import json,sys; print(json.loads(sys.stdin.read())['samples_per_s'])"
}

echo "Weak scaling, CPU, batch 64 per rank, 1 thread per rank, $steps steps, best of $repeats alternating runs"
echo "Host: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(getconf _NPROCESSORS_ONLN) cores"
echo
echo "| model | framework | 1 rank samples/s | 2 ranks samples/s | efficiency |"
echo "|---|---|---:|---:|---:|"
for model in "${models[@]}"; do
  l1=(); l2=(); t1=(); t2=()
  for ((r = 0; r < repeats; r++)); do
    l1+=("$(lockstep_run 1 "$model")"); t1+=("$(torch_run 1 "$model")")
    l2+=("$(lockstep_run 2 "$model")"); t2+=("$(torch_run 2 "$model")")
  done
  L1=$(best "${l1[@]}"); L2=$(best "${l2[@]}"); T1=$(best "${t1[@]}"); T2=$(best "${t2[@]}")
  $PY - "$model" "$L1" "$L2" "$T1" "$T2" <<'PY'
import sys
m, l1, l2, t1, t2 = sys.argv[1], *map(float, sys.argv[2:])
print(f"| {m} | lockstep (MPI) | {l1:.0f} | {l2:.0f} | {l2 / (2 * l1):.2f} |")
print(f"| {m} | PyTorch DDP (gloo) | {t1:.0f} | {t2:.0f} | {t2 / (2 * t1):.2f} |")
print(f"\n{m}: lockstep 2-rank samples/s = {l2 / t2:.2f}x PyTorch DDP's")
PY
done
