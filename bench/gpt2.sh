#!/usr/bin/env bash
# GPT-2 124M training speed, lockstep (`train --model gpt2`) against its same-definition
# PyTorch twin (bench/gpt2_torch.py), AdamW lr 3e-4, weight decay 0.1 on the matrices
# and embeddings, in one run, printed as one markdown table per thread count: step ms,
# tokens/s, model TFLOP/s, MFU of each, and lockstep's tokens/s over PyTorch's.
#
#   bench/gpt2.sh [--threads "1 2"] [--shapes "4x64 8x256"] [--steps N] [--rounds 2]
#                 [--device cpu|cuda] [--data DIR] [--bin PATH] [--out FILE]
#
#   --threads LIST   thread counts (default "1 2"): lockstep --threads N, PyTorch
#                    torch.set_num_threads(N), and OMP_NUM_THREADS, OPENBLAS_NUM_THREADS,
#                    MKL_NUM_THREADS = N in both processes' environment (Debian's torch
#                    does its products in OpenBLAS, which only follows the environment)
#   --shapes LIST    batch x ctx (tokens per window) per step (default "4x64 8x256")
#   --steps N        steps per run, the same total for both frameworks (default: 12 for
#                    shapes of at most 512 tokens a step, 6 for larger ones; 20 on cuda)
#   --rounds R       each (threads, shape) runs lockstep, PyTorch, lockstep, PyTorch ...,
#                    R rounds (default 2); every figure is the median of the rounds
#   --device D       cpu (default) or cuda: PyTorch on the GPU (float32, TF32 off),
#                    lockstep --device cuda, default shapes "8x1024", threads "1"
#   --data DIR       llm.c shards (DIR/gpt2_train_*.bin, DIR/gpt2_val_*.bin); default:
#                    made from Debian's fortunes (bench/fortune_shards.sh)
#                    in a temporary folder
#   --bin PATH       the lockstep binary (default build/lockstep, built into build/ when
#                    missing)
#   --out FILE       also write the report (header and tables) to FILE
#
# LK_TORCH_OPENBLAS_CORETYPE=NAME sets OPENBLAS_CORETYPE for PyTorch alone: Prescott
# reproduces what Debian's OpenBLAS 0.3.21 does on a CPU model it does not know (the
# Intel Xeon model 207 of issue 14: SSE3 kernels at a fifth of the core's speed).
#
# The defaults take ~14 minutes on the 2-core Xeon VM (7 per round; a step at 8x256 on 1
# thread is ~14 s in both frameworks); on cuda they should take ~2-3 minutes, most of it
# start-up. Quick check (~40 s): bench/gpt2.sh --threads 2 --shapes 4x64 --steps 6 --rounds 1
#
# Timing: a run's step ms is the median over its steps after the warm-up (lockstep's: the
# first 10% of steps, at most 20, for both): lockstep's from its metrics' per-step lines
# (--log-every 1; each runs until the step's loss is read back, so it is the whole step on
# a GPU too; on the CPU their median is the summary's step_ms_median), the twin's from its
# clock around each step (after the same number of untimed steps); tokens/s = batch x ctx
# / step ms, so a slow step in a short run on a shared machine moves neither (lockstep's
# summary tokens_per_s is a mean, shown per run on stderr). Model FLOPs per token: 6N + 12 L C T
# (N = the weights of the matrix products, the tied embedding once; PaLM's and llm.c's
# convention, lockstep's summary model_flops_per_sample / ctx; the script checks the
# twin computes the same). MFU on the CPU: against the float32 peak that
# `lockstep bench gemm --sizes 2048` (oneDNN's sgemm, n = 2048) measures on the same
# threads, once per round before the pair of runs, the median over the rounds and
# shapes of that thread count; on cuda: against lockstep's summary peak (the GPU's
# data-sheet float32 peak). Exits non-zero if any run failed, a loss was not finite or
# did not fall from the first step to the last, or the two FLOP counts disagree.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

usage() { sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; }

threads_list="" shapes_list="" steps="" rounds=2 device=cpu data="" bin="" out=""
while [[ $# -gt 0 ]]; do
  case "$1" in -h|--help) ;; *)
    [[ $# -ge 2 ]] || { echo "bench/gpt2.sh: $1 needs a value (try --help)" >&2; exit 2; } ;;
  esac
  case "$1" in
    --threads) threads_list=$2; shift 2 ;;
    --shapes) shapes_list=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --device) device=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench/gpt2.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
case "$device" in cpu|cuda) ;; *) echo "bench/gpt2.sh: --device cpu or cuda, not '$device'" >&2; exit 2 ;; esac
if [[ $device == cuda ]]; then
  threads_list=${threads_list:-1} shapes_list=${shapes_list:-8x1024}
else
  threads_list=${threads_list:-1 2} shapes_list=${shapes_list:-4x64 8x256}
fi
read -r -a threads_arr <<<"$threads_list"
read -r -a shapes_arr <<<"$shapes_list"
for n in "${threads_arr[@]}"; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "bench/gpt2.sh: --threads: '$n' is not a positive integer" >&2; exit 2; }
done
for s in "${shapes_arr[@]}"; do
  [[ $s =~ ^[1-9][0-9]*x[1-9][0-9]*$ ]] || { echo "bench/gpt2.sh: --shapes: '$s' is not BATCHxCTX" >&2; exit 2; }
  (( ${s#*x} <= 1024 )) || { echo "bench/gpt2.sh: --shapes: $s: GPT-2's context is at most 1024" >&2; exit 2; }
done
[[ -z $steps || $steps =~ ^[1-9][0-9]*$ ]] || { echo "bench/gpt2.sh: --steps: '$steps' is not a positive integer" >&2; exit 2; }
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "bench/gpt2.sh: --rounds: '$rounds' is not a positive integer" >&2; exit 2; }
(( ${#threads_arr[@]} && ${#shapes_arr[@]} )) || { echo "bench/gpt2.sh: no threads or shapes" >&2; exit 2; }

# nproc honours OMP_NUM_THREADS, so count the cores before setting it
ncores=$(nproc)

PY=${LK_PYTHON:-/usr/bin/python3}
if [[ $device == cpu ]]; then
  launch/install-deps.sh --with-torch >/dev/null
elif [[ -z ${LK_PYTHON:-} ]] && ! "$PY" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
  PY=python3 # a GPU machine's torch may not be Debian's
fi

lockstep_bin=${bin:-build/lockstep}
if [[ -z $bin && ! -x build/lockstep ]]; then
  echo "build/lockstep missing; building Release into build/ ..." >&2
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >&2
  cmake --build build -j"$ncores" >&2
fi
[[ -x $lockstep_bin ]] || { echo "bench/gpt2.sh: $lockstep_bin is not an executable" >&2; exit 1; }
if [[ $device == cuda ]] && "$lockstep_bin" info | grep -q '^cuda: .* 0 GPUs visible\|^cuda: not built'; then
  echo "bench/gpt2.sh: --device cuda needs a GPU: $("$lockstep_bin" info | grep '^cuda:')" >&2
  exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/lk-gpt2.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

[[ -n $data ]] || data=$(LK_PYTHON=$PY bench/fortune_shards.sh "$tmp/data")
compgen -G "$data/gpt2_train_*.bin" >/dev/null ||
  { echo "bench/gpt2.sh: --data $data: no gpt2_train_*.bin shard" >&2; exit 1; }

# steps_for SHAPE -> steps per run
steps_for() {
  local b=${1%x*} t=${1#*x}
  if [[ -n $steps ]]; then echo "$steps"
  elif [[ $device == cuda ]]; then echo 20
  elif (( b * t <= 512 )); then echo 12
  else echo 6
  fi
}

results=$tmp/results.tsv # kind threads shape round fields...
: >"$results"
failures=0
fail() { echo "$*" >&2; failures=$((failures + 1)); }

# gemm_run N ROUND: the 2048^3 float32 rate on N threads -> results
gemm_run() {
  local n=$1 r=$2 csv="$tmp/gemm.csv"
  rm -f "$csv"
  if ! "$lockstep_bin" bench gemm --sizes 2048 --threads "$n" --min-time 0.5 --csv "$csv" \
      >"$tmp/gemm.log" 2>&1; then
    fail "lockstep bench gemm --threads $n failed:"; tail -n 20 "$tmp/gemm.log" >&2; return 0
  fi
  local g
  g=$(awk -F, 'NR > 1 && $2 == 2048 { print $3; exit }' "$csv")
  [[ -n $g ]] || { fail "no 2048 row in lockstep bench gemm's CSV"; return 0; }
  printf 'gemm\t%s\t-\t%s\t%s\n' "$n" "$r" "$g" >>"$results"
  echo "round $r  $n thread(s)  oneDNN 2048^3 sgemm  $g GFLOP/s" >&2
}

# lockstep_run N SHAPE ROUND -> results (step_ms flops_per_token first_loss loss peak mfu_own)
lockstep_run() {
  local n=$1 shape=$2 r=$3 b=${2%x*} t=${2#*x} metrics="$tmp/metrics.jsonl" log="$tmp/lockstep.log" line
  rm -f "$metrics"
  if ! "$lockstep_bin" train --model gpt2 --data "tokens:$data/gpt2_*.bin" --ctx "$t" --batch "$b" \
      --steps "$(steps_for "$shape")" --threads "$n" --device "$device" --optim adamw --lr 3e-4 \
      --weight-decay 0.1 --eval-every 0 --val-limit 8 --log-every 1 --quiet \
      --metrics "$metrics" >"$log" 2>&1; then
    fail "lockstep train --model gpt2 ($n threads, $shape) failed; last lines of its output:"
    tail -n 20 "$log" >&2
    return 0
  fi
  if ! line=$("$PY" - "$metrics" "$t" <<'EOF'
import json, statistics, sys
losses, ms, summary = [], [], None
for raw in open(sys.argv[1]):
    raw = raw.strip()
    if not raw:
        continue
    rec = json.loads(raw)
    if rec.get("event") == "summary":
        summary = rec
    elif "event" not in rec and "loss" in rec:
        losses.append(rec["loss"])
        ms.append(rec["step_ms"])
if summary is None or not losses:
    sys.exit("no summary or no step lines in lockstep's metrics")
# one line a step (--log-every 1): its step_ms runs from the end of the previous line to
# the loss read back, so on a GPU it holds the whole step; the summary's per-step clock
# stops when the step is queued. Same warm-up as the summary's.
warm = min(20, len(ms) // 10)
fpt = float(summary["model_flops_per_sample"]) / int(sys.argv[2])
print("\t".join(str(v) for v in (statistics.median(ms[warm:]), fpt, losses[0], losses[-1],
                                 summary["peak_flops"], summary["mfu"], summary["tokens_per_s"],
                                 summary["step_ms_median"])))
EOF
  ); then
    fail "cannot read lockstep's metrics ($n threads, $shape)"; return 0
  fi
  printf 'lockstep\t%s\t%s\t%s\t%s\n' "$n" "$shape" "$r" "$line" >>"$results"
  IFS=$'\t' read -r ms _ l0 l1 _ mfu tps sms <<<"$line"
  echo "round $r  $n thread(s)  $shape  lockstep  step $ms ms (summary: step $sms ms, $tps tokens/s," \
       "mfu $mfu against its own peak), loss $l0 -> $l1" >&2
}

# torch_run N SHAPE ROUND -> results
torch_run() {
  local n=$1 shape=$2 r=$3 b=${2%x*} t=${2#*x} out line
  if ! out=$(env ${LK_TORCH_OPENBLAS_CORETYPE:+OPENBLAS_CORETYPE=$LK_TORCH_OPENBLAS_CORETYPE} \
      "$PY" bench/gpt2_torch.py --data "$data" --batch "$b" --ctx "$t" \
      --steps "$(steps_for "$shape")" --threads "$n" --device "$device" 2>"$tmp/torch.log"); then
    fail "gpt2_torch.py ($n threads, $shape) failed:"; tail -n 20 "$tmp/torch.log" >&2; return 0
  fi
  if ! line=$("$PY" -c 'import json, sys
rec = json.loads(sys.stdin.read().strip().splitlines()[-1])
print("\t".join(str(rec[k]) for k in ("step_ms", "flops_per_token", "first_loss", "loss", "threads",
                                      "blas", "device", "torch")))' <<<"$out"); then
    fail "cannot parse gpt2_torch.py's output ($n threads, $shape): $out"; return 0
  fi
  printf 'pytorch\t%s\t%s\t%s\t%s\n' "$n" "$shape" "$r" "$line" >>"$results"
  IFS=$'\t' read -r ms _ l0 l1 th _ <<<"$line"
  echo "round $r  $n thread(s)  $shape  pytorch   step $ms ms (torch threads $th), loss $l0 -> $l1" >&2
}

for n in "${threads_arr[@]}"; do
  export OMP_NUM_THREADS=$n OPENBLAS_NUM_THREADS=$n MKL_NUM_THREADS=$n
  for shape in "${shapes_arr[@]}"; do
    for ((r = 1; r <= rounds; r++)); do
      [[ $device == cpu ]] && gemm_run "$n" "$r"
      lockstep_run "$n" "$shape" "$r"
      torch_run "$n" "$shape" "$r"
    done
  done
done
unset OMP_NUM_THREADS OPENBLAS_NUM_THREADS MKL_NUM_THREADS

# the report
cpu=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || true)
flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | tr ' ' '\n' |
        grep -xE 'avx2|avx512f|avx512_bf16|amx_tile|amx_bf16' | tr '\n' ' ' || true)
if [[ $device == cpu ]]; then
  math=$("$lockstep_bin" info | grep -m1 '^cpu math:' || echo "cpu math: ?")
else
  math=$("$lockstep_bin" info | grep -m1 '^cuda:' || echo "cuda: ?")
  gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1 || true)
fi
torch_desc=$("$PY" -c 'import torch; print(torch.__version__ + (" (CUDA %s)" % torch.version.cuda if torch.version.cuda else ""))' 2>/dev/null || echo "?")
steps_desc=""
for shape in "${shapes_arr[@]}"; do steps_desc+="$shape: $(steps_for "$shape"), "; done

report=$tmp/report.md
{
  echo "GPT-2 124M training (AdamW lr 3e-4, weight decay 0.1 on matrices and embeddings), lockstep vs PyTorch $torch_desc, $device."
  echo "Host: ${cpu:-unknown CPU}, $ncores cores${flags:+ (${flags% })}; ${gpu:+GPU: $gpu; }lockstep $math."
  echo "Steps per run (the same for both): ${steps_desc%, }; $rounds round(s) alternating lockstep, PyTorch; every figure the median of the rounds."
} >"$report"
if ! "$PY" - "$results" "$device" "$rounds" >>"$report" <<'EOF'; then
import math, statistics, sys
from collections import defaultdict

path, device, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
gemm = defaultdict(list)           # threads -> GFLOP/s
runs = defaultdict(list)           # (framework, threads, shape) -> rows
order_threads, order_shapes = [], []
for raw in open(path):
    f = raw.rstrip("\n").split("\t")
    kind, n = f[0], int(f[1])
    if n not in order_threads:
        order_threads.append(n)
    if kind == "gemm":
        gemm[n].append(float(f[4]))
        continue
    shape = f[2]
    if shape not in order_shapes:
        order_shapes.append(shape)
    runs[(kind, n, shape)].append(f[4:])

bad = 0
def med(v):
    return statistics.median(v) if v else float("nan")

print()
if device == "cpu":
    print("Threads: lockstep --threads N; PyTorch torch.set_num_threads(N) (and set_num_interop_threads(1));"
          " OMP_NUM_THREADS = OPENBLAS_NUM_THREADS = MKL_NUM_THREADS = N for both.")
for n in order_threads:
    torch_threads = {r[4] for s in order_shapes for r in runs[("pytorch", n, s)]}
    blas = {r[5] for s in order_shapes for r in runs[("pytorch", n, s)]}
    if torch_threads and torch_threads != {str(n)}:
        print(f"PyTorch ran on {sorted(torch_threads)} threads, not {n}", file=sys.stderr)
        bad += 1
    if device == "cpu":
        peak = med(gemm[n]) * 1e9
        peak_desc = (f"peak {peak * 1e-12:.3f} TFLOP/s: oneDNN 2048^3 sgemm on {n} thread(s), median of "
                     f"{len(gemm[n])} measurement(s) in this run")
    else:
        peaks = [float(r[4]) for s in order_shapes for r in runs[("lockstep", n, s)]]
        peak = med(peaks)
        peak_desc = f"peak {peak * 1e-12:.1f} TFLOP/s float32: lockstep's summary (the GPU's data sheet)"
    print()
    print(f"**{n} thread{'s' if n != 1 else ''}** ({peak_desc}; PyTorch's BLAS: {', '.join(sorted(blas)) or '?'})")
    print()
    print("| batch x ctx | lockstep ms/step | tokens/s | TFLOP/s | MFU | PyTorch ms/step | tokens/s | TFLOP/s | MFU | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for shape in order_shapes:
        b, t = (int(v) for v in shape.split("x"))
        cells, tps_of = [], {}
        fpts = {}
        for fw in ("lockstep", "pytorch"):
            rows = runs[(fw, n, shape)]
            for r in rows:  # (a run that failed was counted where it failed)
                l0, l1 = float(r[2]), float(r[3])
                if not (math.isfinite(l0) and math.isfinite(l1) and l1 < l0):
                    print(f"{fw}, {n} threads, {shape}: loss {l0} -> {l1} (not finite, or not falling)",
                          file=sys.stderr)
                    bad += 1
            if not rows:
                cells += ["failed", "", "", ""]
                continue
            ms = med([float(r[0]) for r in rows])
            fpt = float(rows[0][1])
            fpts[fw] = fpt
            tps = b * t * 1e3 / ms
            tps_of[fw] = tps
            cells += [f"{ms:,.0f}" if ms >= 100 else f"{ms:.1f}", f"{tps:,.0f}",
                      f"{tps * fpt * 1e-12:.3f}", f"{tps * fpt / peak:.2f}"]
        if len(fpts) == 2 and abs(fpts["lockstep"] - fpts["pytorch"]) > 1e-5 * fpts["pytorch"]:
            print(f"{n} threads, {shape}: model FLOPs per token disagree: lockstep {fpts['lockstep']:.6g}, "
                  f"PyTorch twin {fpts['pytorch']:.6g}", file=sys.stderr)
            bad += 1
        ratio = (f"{tps_of['lockstep'] / tps_of['pytorch']:.2f}x" if len(tps_of) == 2 else "n/a")
        print(f"| {b} x {t} | " + " | ".join(cells) + f" | {ratio} |")
flops = sorted({(s, float(r[1])) for (fw, n, s), rows in runs.items() for r in rows[:1] if fw == "pytorch"})
print()
print("ms/step: median over a run's steps after warm-up (the first 10%, at most 20); tokens/s = batch x ctx / "
      "ms/step; model FLOPs per token 6N + 12 L C T (N = 123 532 032, the tied embedding once; both frameworks "
      "compute " + ", ".join(f"{fpt / 1e6:.2f} M at {s}" for s, fpt in flops) + "); ratio = lockstep tokens/s / "
      "PyTorch tokens/s.")
sys.exit(1 if bad else 0)
EOF
  failures=$((failures + 1))
fi
echo
cat "$report"
if [[ -n $out ]]; then
  mkdir -p "$(dirname "$out")"
  cp "$report" "$out"
fi
if (( failures > 0 )); then
  echo >&2
  echo "bench/gpt2.sh: $failures failure(s); see the messages above the tables." >&2
  exit 1
fi
