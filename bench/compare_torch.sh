#!/usr/bin/env bash
# Training throughput of lockstep vs PyTorch (CPU, batch 64, 1 thread) on the reference
# models, printed as a markdown table.
#
#   bench/compare_torch.sh [MODEL...]        default: mlp mlp-wide cnn lstm gpt
#
# gpt is the small one (4 layers, 4 heads, dim 256, ctx 128) at batch 16 on Debian's
# fortunes (bench/fortunes.sh): its samples are windows of 128 tokens.
#
# Each model is run alternately lockstep, PyTorch, lockstep, PyTorch (LK_BENCH_REPEATS
# rounds, default 2) and the best (highest samples/s) of each is reported, to reduce the
# noise of a shared machine.
#
# Environment:
#   LK_BENCH_STEPS=N           steps per run for every model (overrides the defaults:
#                              300 for mlp and mlp-wide, 150 for cnn)
#   LK_BENCH_STEPS_<MODEL>=N   steps for one model, e.g. LK_BENCH_STEPS_MLP_WIDE=100
#   LK_BENCH_WARMUP=N          PyTorch warm-up steps, untimed (default 20); PyTorch runs
#                              N warm-up + (steps - N) timed steps, the same total as
#                              lockstep, whose summary also excludes its own warm-up
#   LK_BENCH_REPEATS=N         alternating rounds per model (default 2)
#   LK_BENCH_BATCH=B           batch size (default 64)
#   LK_BIN=PATH                the lockstep binary (default build/lockstep, built
#                              into build/ when missing)
#   LK_TORCH_OPENBLAS_CORETYPE=NAME  OPENBLAS_CORETYPE for PyTorch alone (Prescott: what
#                              Debian's OpenBLAS 0.3.21 runs on a CPU model it does not
#                              know, such as the Intel Xeon model 207 of issue 14)
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

PY=/usr/bin/python3
batch=${LK_BENCH_BATCH:-64}
threads=1
warmup=${LK_BENCH_WARMUP:-20}
repeats=${LK_BENCH_REPEATS:-2}
if [[ $# -gt 0 ]]; then models=("$@"); else models=(mlp mlp-wide cnn lstm gpt); fi

# nproc honours OMP_NUM_THREADS, so count the cores before setting it
ncores=$(nproc)
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads MKL_NUM_THREADS=$threads

lockstep_bin=${LK_BIN:-build/lockstep}

launch/install-deps.sh --with-torch >/dev/null
if [[ -z "${LK_BIN:-}" && ! -x build/lockstep ]]; then
  echo "build/lockstep missing; building Release into build/ ..." >&2
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >&2
  cmake --build build -j"$ncores" >&2
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/lk-compare.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

steps_for() {
  local model=$1 var
  var="LK_BENCH_STEPS_$(tr 'a-z-' 'A-Z_' <<<"$model")"
  if [[ -n "${!var:-}" ]]; then echo "${!var}"; return; fi
  if [[ -n "${LK_BENCH_STEPS:-}" ]]; then echo "$LK_BENCH_STEPS"; return; fi
  case "$model" in
    cnn|lstm) echo 150 ;;
    gpt) echo 40 ;;
    *) echo 300 ;;
  esac
}

corpus=""
for m in "${models[@]}"; do [[ $m == gpt ]] && corpus=$(bench/fortunes.sh "$tmp/fortunes.txt"); done
# the data and batch of a model: gpt trains on text, 16 windows a step
data_args() { if [[ $1 == gpt ]]; then echo "--data text:$corpus --batch 16"; else echo "--data fashion-mnist --batch $batch"; fi; }
torch_args() { if [[ $1 == gpt ]]; then echo "--text $corpus --batch 16"; else echo "--batch $batch"; fi; }

# lockstep_run MODEL STEPS -> prints samples/s, or nothing on failure
lockstep_run() {
  local model=$1 steps=$2 metrics="$tmp/metrics-$1.jsonl" log="$tmp/lockstep-$1.log"
  rm -f "$metrics"
  # shellcheck disable=SC2046
  if ! "$lockstep_bin" train --model "$model" $(data_args "$model") --steps "$steps" \
      --threads "$threads" --optim momentum --lr 0.05 \
      --eval-every 0 --val-limit 256 --metrics "$metrics" >"$log" 2>&1; then
    echo "lockstep train --model $model failed; last lines of its output:" >&2
    tail -n 20 "$log" >&2
    return 0
  fi
  "$PY" - "$metrics" <<'EOF' || echo "no summary line in lockstep's metrics for $model" >&2
import json, sys
summary = None
with open(sys.argv[1]) as f:
    for line in f:
        line = line.strip()
        if not line:
            continue
        rec = json.loads(line)
        if rec.get("event") == "summary":
            summary = rec
if summary is None or "samples_per_s" not in summary:
    sys.exit(1)
print(f'{float(summary["samples_per_s"]):.1f}')
EOF
}

# torch_run MODEL STEPS -> prints samples/s, or nothing on failure
torch_run() {
  local model=$1 steps=$2 w=$warmup timed out
  if (( steps <= w )); then w=$(( steps / 5 )); fi
  timed=$(( steps - w ))
  # shellcheck disable=SC2046
  if ! out=$(env ${LK_TORCH_OPENBLAS_CORETYPE:+OPENBLAS_CORETYPE=$LK_TORCH_OPENBLAS_CORETYPE} \
      "$PY" bench/torch_ref.py --mode speed --model "$model" $(torch_args "$model") \
      --threads "$threads" --steps "$timed" --warmup "$w" 2>"$tmp/torch-$model.log"); then
    echo "torch_ref.py --model $model failed:" >&2
    tail -n 20 "$tmp/torch-$model.log" >&2
    return 0
  fi
  "$PY" -c 'import json, sys
rec = json.loads(sys.stdin.read().strip().splitlines()[-1])
print("%.1f" % float(rec["samples_per_s"]))' <<<"$out" || echo "cannot parse torch_ref.py output for $model: $out" >&2
}

# best A B -> the larger number (either may be empty)
best() {
  "$PY" -c 'import sys; v=[float(x) for x in sys.argv[1:] if x]; print(f"{max(v):.1f}" if v else "")' "$@"
}

rows=()
steps_desc=()
failures=0
for model in "${models[@]}"; do
  steps=$(steps_for "$model")
  steps_desc+=("$model $steps")
  ls_best="" pt_best=""
  for ((r = 1; r <= repeats; r++)); do
    v=$(lockstep_run "$model" "$steps")
    echo "round $r  $model  lockstep  ${v:-FAILED} samples/s" >&2
    [[ -n "$v" ]] || failures=$((failures + 1))
    ls_best=$(best "$ls_best" "$v")
    v=$(torch_run "$model" "$steps")
    echo "round $r  $model  pytorch   ${v:-FAILED} samples/s" >&2
    [[ -n "$v" ]] || failures=$((failures + 1))
    pt_best=$(best "$pt_best" "$v")
  done
  ratio="n/a"
  if [[ -n "$ls_best" && -n "$pt_best" ]]; then
    ratio=$("$PY" -c 'import sys; print(f"{float(sys.argv[1]) / float(sys.argv[2]):.2f}x")' \
      "$ls_best" "$pt_best")
  fi
  label=$model; [[ $model == gpt ]] && label="gpt (batch 16 x 128 tokens)"
  rows+=("| $label | ${ls_best:-failed} | ${pt_best:-failed} | $ratio |")
done

torch_version=$("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null || echo "?")
cpu=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || true)
echo
echo "Training throughput, CPU, batch $batch, $threads thread (OMP_NUM_THREADS=1" \
     "OPENBLAS_NUM_THREADS=1), lockstep vs PyTorch $torch_version."
steps_list=$(printf '%s, ' "${steps_desc[@]}")
echo "Steps per run: ${steps_list%, };" \
     "PyTorch times the steps after $warmup warm-up steps, lockstep reports its" \
     "summary samples_per_s (steps after its warm-up)."
echo "Runs alternate lockstep, PyTorch, lockstep, PyTorch ($repeats rounds per model);" \
     "each figure is the best of $repeats runs, to reduce noise on a shared machine."
echo "Host: ${cpu:-unknown CPU}, $ncores cores. ratio = lockstep / PyTorch (higher is" \
     "better for lockstep)."
[[ -z "${LK_TORCH_OPENBLAS_CORETYPE:-}" ]] ||
  echo "PyTorch ran with OPENBLAS_CORETYPE=$LK_TORCH_OPENBLAS_CORETYPE (its BLAS forced to those kernels)."
echo
echo "| model | lockstep samples/s | PyTorch samples/s | ratio |"
echo "|---|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
if (( failures > 0 )); then
  echo
  echo "$failures run(s) failed; see the messages above the table." >&2
  exit 1
fi
