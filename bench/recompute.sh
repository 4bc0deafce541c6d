#!/usr/bin/env bash
# Activation recomputation's cost and saving: the same run with --recompute none, act and
# block, alternated in rounds, on one rank: each round's median step time over none's, the
# plan's activation memory and the measured peak resident memory.
#
#   bench/recompute.sh [--model gpt2] [--batch 4] [--ctx 1024] [--steps 5] [--rounds 2]
#                      [--threads N] [--data DIR] [--bin PATH] [--out FILE]
#
# AdamW; data: llm.c shards in DIR (default: made from Debian's fortunes in a temporary
# folder). Step time is the summary's step_ms_median (steps after warm-up); activations
# are `lockstep plan --memory`'s, peak memory the summary's peak_host_bytes (VmHWM).
# Takes ~12 minutes for the defaults on the 2-core VM (a gpt2 step of 4 x 1024 tokens on
# two threads is ~12 s).
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
model=gpt2 batch=4 ctx=1024 steps=5 rounds=2 threads=$(nproc) data="" bin=build/lockstep out=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --model) model=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --ctx) ctx=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/recompute.sh: unknown flag $1" >&2; exit 2 ;;
  esac
done
[[ -x $bin ]] || { cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build -j >/dev/null; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
[[ -n $data ]] || data=$(bench/fortune_shards.sh "$tmp/data")
common=(--model "$model" --ctx "$ctx" --batch "$batch" --optim adamw --data "tokens:$data/gpt2_*.bin")
for r in none act block; do
  "$bin" plan --memory "${common[@]}" --recompute $r > "$tmp/plan-$r.txt"
done
for k in $(seq 1 "$rounds"); do
  for r in none act block; do
    "$bin" train "${common[@]}" --steps "$steps" --threads "$threads" --recompute $r --quiet --val-limit 2 \
      --metrics "$tmp/r$k-$r.jsonl" >&2
  done
done
/usr/bin/python3 - "$tmp" "$rounds" "$model" "$batch" "$ctx" "$threads" <<'PY' | tee ${out:+"$out"}
import json, re, statistics, sys
tmp, rounds, model, batch, ctx, threads = sys.argv[1], int(sys.argv[2]), *sys.argv[3:]
modes = ["none", "act", "block"]
def summary(k, r):
    for line in open(f"{tmp}/r{k}-{r}.jsonl"):
        rec = json.loads(line)
        if rec.get("event") == "summary": return rec
def plan_act(r):
    return float(re.search(r"activations\s+([0-9.]+)", open(f"{tmp}/plan-{r}.txt").read()).group(1))
s = {(k, r): summary(k, r) for k in range(1, rounds + 1) for r in modes}
print(f"# {model}, batch {batch} x ctx {ctx}, AdamW, 1 rank x {threads} threads, {rounds} rounds (medians)\n")
print("| --recompute | step ms | vs none (per round) | activations (plan), GB | vs none | peak resident, GB | vs none |")
print("|---|---|---|---|---|---|---|")
med = lambda r, key: statistics.median(s[(k, r)][key] for k in range(1, rounds + 1))
for r in modes:
    ratios = [s[(k, r)]["step_ms_median"] / s[(k, "none")]["step_ms_median"] for k in range(1, rounds + 1)]
    print(f"| {r} | {med(r, 'step_ms_median'):.0f} | {statistics.median(ratios):.3f} "
          f"({', '.join(f'{x:.3f}' for x in ratios)}) | {plan_act(r):.3f} | {plan_act(r) / plan_act('none'):.3f} | "
          f"{med(r, 'peak_host_bytes') / 1e9:.3f} | {med(r, 'peak_host_bytes') / med('none', 'peak_host_bytes'):.3f} |")
PY
