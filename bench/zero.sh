#!/usr/bin/env bash
# ZeRO's cost and saving: the same data-parallel run with --zero 0, 1 and 2, alternated in
# rounds (0, 1, 2, 0, 1, 2 ...), each round's samples/s of 1 and 2 over its own 0's, and
# each rank's peak resident memory against the memory plan's.
#
#   bench/zero.sh [--model gpt2] [--ranks 2] [--batch 4] [--ctx 256] [--steps 8]
#                 [--rounds 3] [--data DIR] [--bin PATH] [--out FILE] [-- more train flags]
#
# AdamW (two state buffers a parameter). Data: llm.c shards in DIR (default: made from
# Debian's fortunes, bench/fortune_shards.sh, in a temporary folder).
# Samples/s is each run's summary figure (steps after warm-up, evaluation excluded); the
# memory is the summary's peak_host_bytes (VmHWM) of rank 0 and its plan. Printed: a
# markdown table per --zero of the medians, the per-round ratios, and what --zero 1 and 2
# saved on rank 0 against what they should save at least: the optimizer state's share
# (1 - 1/N of it) for 1, that and the gradients' share for 2.
# Takes ~8 minutes for the defaults on the 2-core VM (a gpt2 step of 4 x 256 tokens on
# one core a rank is ~6 s).
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
model=gpt2 ranks=2 batch=4 ctx=256 steps=8 rounds=3 data="" bin=build/lockstep out="" more=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --model) model=$2; shift 2 ;;
    --ranks) ranks=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --ctx) ctx=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --) shift; more=("$@"); break ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/zero.sh: unknown flag $1" >&2; exit 2 ;;
  esac
done
[[ -x $bin ]] || { cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build -j >/dev/null; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
[[ -n $data ]] || data=$(bench/fortune_shards.sh "$tmp/data")
for r in $(seq 1 "$rounds"); do
  for z in 0 1 2; do
    LK_BIN=$bin launch/mpirun.sh -n "$ranks" --oversubscribe train --model "$model" --ctx "$ctx" --batch "$batch" \
      --optim adamw --data "tokens:$data/gpt2_*.bin" --steps "$steps" --zero $z --threads 1 --quiet \
      --val-limit 8 --metrics "$tmp/r$r-z$z.jsonl" "${more[@]}" >&2
  done
done
/usr/bin/python3 - "$tmp" "$rounds" "$model" "$ranks" "$batch" "$ctx" <<'PY' | tee ${out:+"$out"}
import json, statistics, sys
tmp, rounds, model, ranks, batch, ctx = sys.argv[1], int(sys.argv[2]), *sys.argv[3:]
def summary(r, z):
    for line in open(f"{tmp}/r{r}-z{z}.jsonl"):
        rec = json.loads(line)
        if rec.get("event") == "summary": return rec
s = {(r, z): summary(r, z) for r in range(1, rounds + 1) for z in range(3)}
print(f"# {model}, {ranks} ranks x batch {batch} x ctx {ctx}, AdamW, {rounds} rounds (medians)\n")
print("| --zero | samples/s | vs --zero 0 (per round) | peak resident rank 0, GB | plan, GB | all ranks, GB |")
print("|---|---|---|---|---|---|")
med = lambda z, k: statistics.median(s[(r, z)][k] for r in range(1, rounds + 1))
for z in range(3):
    ratios = [s[(r, z)]["samples_per_s"] / s[(r, 0)]["samples_per_s"] for r in range(1, rounds + 1)]
    print(f"| {z} | {med(z, 'samples_per_s'):.2f} | {statistics.median(ratios):.3f} "
          f"({', '.join(f'{x:.3f}' for x in ratios)}) | {med(z, 'peak_host_bytes') / 1e9:.3f} | "
          f"{med(z, 'plan_host_bytes') / 1e9:.3f} | {med(z, 'peak_host_bytes_all_ranks') / 1e9:.3f} |")
n, P = int(ranks), s[(1, 0)]["params"]
optim, grads = 8 * P * (1 - 1 / n), 4 * P * (1 - 1 / n)
ok = True
for z, want in ((1, optim), (2, optim + grads)):
    saved = med(0, "peak_host_bytes") - med(z, "peak_host_bytes")
    print(f"\n--zero {z} saved {saved / 1e9:.3f} GB on rank 0; at least {want / 1e9:.3f} GB expected "
          f"(the optimizer state's share{' and the gradients' if z == 2 else ''}): "
          f"{'ok' if saved >= want else 'SHORT'}", end="")
    ok &= saved >= want
print()
sys.exit(0 if ok else 1)
PY
