#!/usr/bin/env bash
# Which way of overlapping the gradient all-reduce with backward works better here?
# Runs 2 ranks x 1 thread (batch 64 per rank) of each model with
#   layers   non-blocking MPI_Iallreduce per bucket, progressed between layers by the
#            training thread (--comm-progress layers)
#   mpi      a comm thread running a blocking MPI_Allreduce per bucket as soon as
#            its gradients are final (--comm-progress thread --shm off)
#   shm      the comm thread summing the gradients in place in shared memory, waiting
#            on a futex instead of polling (the default: --comm-progress auto --shm auto)
#   no comm  the same 2 processes, each training alone (--comm local): the ceiling
#            that any overlap can reach on this machine
# alternating, LK_BENCH_REPEATS rounds (default 3), and prints the median samples/s,
# the exposed communication per step (time blocked in the final wait) and the share
# of the all-reduce time hidden under backward.
#
#   bench/overlap.sh [MODEL...]      default: cnn mlp-wide; LK_BENCH_STEPS (default 300)
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
PY=/usr/bin/python3
steps=${LK_BENCH_STEPS:-300}
repeats=${LK_BENCH_REPEATS:-3}
if [[ $# -gt 0 ]]; then models=("$@"); else models=(cnn mlp-wide); fi
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
launch/install-deps.sh >/dev/null
[[ -x build/lockstep ]] || { cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build -j >/dev/null; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# one run: prints "samples/s exposed_ms hidden_share" from the metrics of rank 0
run() { # model mode
  local args=(--model "$1" --batch 64 --threads 1 --steps "$steps" --val-limit 100 --quiet)
  if [[ $2 == none ]]; then
    # each rank trains alone; the job's rate is the sum of both
    launch/mpirun.sh -n 2 bash -c 'exec "$0" "$@" --metrics "'"$tmp"'/m$OMPI_COMM_WORLD_RANK.jsonl"' \
      build/lockstep train "${args[@]}" --comm local
    $PY - "$tmp/m0.jsonl" "$tmp/m1.jsonl" <<'PY'
import json, sys
print(sum([json.loads(l) for l in open(f)][-1]["samples_per_s"] for f in sys.argv[1:]), "nan nan")
PY
  else
    case $2 in
      layers) args+=(--comm-progress layers) ;;
      mpi) args+=(--comm-progress thread --shm off) ;;
      shm) args+=(--comm-progress thread --shm auto) ;;
    esac
    launch/mpirun.sh -n 2 train "${args[@]}" --metrics "$tmp/m.jsonl"
    $PY - "$tmp/m.jsonl" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
steps = [r for r in recs if "comm_ms" in r]
mean = lambda k: sum(r[k] for r in steps) / len(steps)
print(recs[-1]["samples_per_s"], mean("comm_ms"), mean("comm_hidden"))
PY
  fi
}

echo "Gradient all-reduce overlap, 2 ranks x 1 thread, batch 64 per rank, $steps steps,"
echo "median of $repeats alternating runs ($(mpirun --version 2>/dev/null | head -1))"
echo
echo "| model | progress | samples/s | vs no comm | exposed comm ms/step | hidden |"
echo "|---|---|---:|---:|---:|---:|"
for model in "${models[@]}"; do
  : >"$tmp/$model.txt"
  for ((r = 0; r < repeats; r++)); do
    for mode in layers mpi shm none; do echo "$mode $(run "$model" "$mode")" >>"$tmp/$model.txt"; done
  done
  $PY - "$model" "$tmp/$model.txt" <<'PY'
import statistics as st, sys
model, rows = sys.argv[1], [l.split() for l in open(sys.argv[2])]
med = {}
for mode in ("layers", "mpi", "shm", "none"):
    rs = [list(map(float, r[1:])) for r in rows if r[0] == mode]
    med[mode] = [st.median(c) for c in zip(*rs)]
names = {"layers": "between layers (MPI_Iallreduce)", "mpi": "comm thread (MPI_Allreduce)",
         "shm": "comm thread (shared memory, in place)", "none": "no communication (ceiling)"}
for mode in ("layers", "mpi", "shm", "none"):
    sps, ms, hid = med[mode]
    exp = "-" if mode == "none" else f"{ms:.2f}"
    hs = "-" if mode == "none" else f"{hid:.0%}"
    print(f"| {model} | {names[mode]} | {sps:.0f} | {sps / med['none'][0]:.2f} | {exp} | {hs} |")
PY
done
