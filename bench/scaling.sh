#!/usr/bin/env bash
# Weak scaling on this machine: `cnn` (or the models given), batch 64 per rank, 1 thread
# per rank, 1 rank and 2 ranks, for lockstep (MPI; same-host ranks sum their gradients
# in shared memory) and PyTorch DDP (gloo), in one run.
# Prints samples/s (all ranks together) and weak-scaling efficiency
# = samples/s(2 ranks) / (2 x samples/s(1 rank)).
#
# A shared VM's speed drifts by 10-20% over minutes, so each round runs the 1-rank and
# 2-rank jobs of one framework back to back and computes that round's efficiency from
# the pair; the table shows medians over the rounds and the range of efficiencies.
# The "no comm" row is lockstep's 2 processes each training alone (--comm local): what
# this machine itself allows (shared caches, memory bandwidth, clocks), without any
# communication.
#
#   bench/scaling.sh [MODEL...]      LK_BENCH_STEPS (default 200), LK_BENCH_REPEATS (5)
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
PY=/usr/bin/python3
steps=${LK_BENCH_STEPS:-200}
repeats=${LK_BENCH_REPEATS:-5}
if [[ $# -gt 0 ]]; then models=("$@"); else models=(cnn); fi
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
launch/install-deps.sh --with-torch >/dev/null
[[ -x build/lockstep ]] || { cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build -j >/dev/null; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

summary() { $PY -c "import json,sys; print(sum([json.loads(l) for l in open(f)][-1]['samples_per_s'] for f in sys.argv[1:]))" "$@"; }

lockstep_run() { # ranks model [comm]
  local args=(--model "$2" --batch 64 --threads 1 --steps "$steps" --val-limit 100 --quiet)
  if [[ $1 -eq 1 ]]; then
    build/lockstep train "${args[@]}" --metrics "$tmp/m.jsonl"
    summary "$tmp/m.jsonl"
  elif [[ ${3:-} == local ]]; then # every rank alone: the job's rate is the sum
    launch/mpirun.sh -n "$1" bash -c 'exec "$0" "$@" --metrics "'"$tmp"'/m$OMPI_COMM_WORLD_RANK.jsonl"' \
      build/lockstep train "${args[@]}" --comm local
    summary "$tmp"/m[0-9]*.jsonl
    rm -f "$tmp"/m[0-9]*.jsonl
  else
    launch/mpirun.sh -n "$1" train "${args[@]}" --metrics "$tmp/m.jsonl"
    summary "$tmp/m.jsonl"
  fi
}
torch_run() { # ranks model
  $PY bench/torch_ddp.py --model "$2" --world "$1" --batch 64 --threads 1 --steps "$steps" --warmup 20 |
    $PY -c "import json,sys; print(json.loads(sys.stdin.read())['samples_per_s'])"
}

echo "Weak scaling, CPU, batch 64 per rank, 1 thread per rank, $steps steps, $repeats rounds"
echo "Host: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(getconf _NPROCESSORS_ONLN) cores"
echo
echo "| model | framework | 1 rank samples/s | 2 ranks samples/s | efficiency (median) | range |"
echo "|---|---|---:|---:|---:|---:|"
for model in "${models[@]}"; do
  rows="$tmp/$model.txt"
  : >"$rows"
  for ((r = 0; r < repeats; r++)); do
    l1=$(lockstep_run 1 "$model"); l2=$(lockstep_run 2 "$model")
    echo "lockstep $l1 $l2" >>"$rows"
    n2=$(lockstep_run 2 "$model" local)
    echo "nocomm $l1 $n2" >>"$rows"
    t1=$(torch_run 1 "$model"); t2=$(torch_run 2 "$model")
    echo "torch $t1 $t2" >>"$rows"
  done
  $PY - "$model" "$rows" <<'PY'
import statistics as st, sys
model, rows = sys.argv[1], [l.split() for l in open(sys.argv[2])]
names = {"lockstep": "lockstep (shared-memory all-reduce)", "nocomm": "lockstep, 2 ranks without comm",
         "torch": "PyTorch DDP (gloo)"}
med = {}
for key in ("lockstep", "nocomm", "torch"):
    pairs = [(float(a), float(b)) for k, a, b in rows if k == key]
    effs = [b / (2 * a) for a, b in pairs]
    med[key] = st.median(b for _, b in pairs)
    print(f"| {model} | {names[key]} | {st.median(a for a, _ in pairs):.0f} | {med[key]:.0f} "
          f"| {st.median(effs):.2f} | {min(effs):.2f}-{max(effs):.2f} |")
print(f"\n{model}: lockstep 2-rank samples/s = {med['lockstep'] / med['torch']:.2f}x PyTorch DDP's; "
      f"lockstep with communication = {med['lockstep'] / med['nocomm']:.2f} of the same 2 ranks without")
PY
done
