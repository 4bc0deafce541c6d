#!/usr/bin/env bash
# --precision bf16 against fp32, measured side by side: accuracy, loss curves, speed and
# memory. Parts (default: all):
#
#   bench/precision.sh [--part accuracy|gpt|gpt2] ... [--rounds 3] [--threads N]
#                      [--bin PATH] [--out FILE]
#
#   accuracy  cnn (3 epochs, momentum 0.9, lr 0.05, cosine, batch 64, seed 0) and lstm
#             (Adam lr 1e-3, batch 64, seed 0, 3 epochs) on the real Fashion-MNIST in bf16:
#             test accuracy (bars 0.905 and 0.85); ~10 minutes on 2 cores
#   gpt       the small gpt (4 layers, dim 256, ctx 128, batch 16) on Debian's fortunes,
#             AdamW lr 1e-3, 50 warm-up steps, cosine, 600 steps, validation every 100: both
#             precisions, the largest relative difference of bf16's validation loss from
#             fp32's at any evaluation (bar 1%); ~25 minutes
#   gpt2      GPT-2 124M on llm.c shards made from the fortunes (bench/fortune_shards.sh),
#             batch 4 x 256, AdamW 3e-4: the losses of 20 steps in both precisions (bar:
#             within 1% at every step); then R rounds alternating fp32 and bf16 runs of 8
#             steps: each run's median step time and peak resident memory (VmHWM, the
#             summary's peak_host_bytes), and per round bf16 over fp32 (bars: memory <= 0.75x,
#             tokens/s >= 0.9x); ~15 minutes
#   comm      (root: network namespaces) GPT-2 124M, batch 4 x 64, on 2 emulated hosts with
#             1 Gbit/s links (cluster/emulate), one rank each: R rounds alternating
#             --grad-dtype fp32 and bf16 runs of 6 steps; each run's median comm time per
#             step (the metrics' comm_ms: what the step waited for its all-reduces) and
#             bf16 over fp32 per round (bar <= 0.55x); ~10 minutes
#
# Every ratio is of runs in the same invocation, alternated, the median over the rounds.
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
parts=() rounds=3 threads=$(nproc) bin=build/lockstep out=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --part) parts+=("$2"); shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/precision.sh: unknown flag $1" >&2; exit 2 ;;
  esac
done
[[ ${#parts[@]} -gt 0 ]] || parts=(accuracy gpt gpt2 comm)
[[ -x $bin ]] || { cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build -j"$(nproc)" >/dev/null; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
report() { echo "$*"; [[ -z $out ]] || echo "$*" >>"$out"; }
[[ -z $out ]] || : >"$out"
# field FILE NAME: NAME of the summary line of a metrics file
field() { /usr/bin/python3 -c "
import json, sys
r = [json.loads(l) for l in open(sys.argv[1]) if '\"summary\"' in l][-1]
print(r[sys.argv[2]])" "$1" "$2"; }

report "# bf16 against fp32 ($(date -u +%Y-%m-%d), $(lscpu | sed -n 's/^Model name: *//p'), $threads threads)"
report "$("$bin" info | grep 'bf16 products')"

for part in "${parts[@]}"; do
  case $part in
  accuracy)
    report ""
    report "## Accuracy in bf16 (real Fashion-MNIST test set)"
    report ""
    report "| model | recipe | test accuracy | bar |"
    report "|---|---|---|---|"
    "$bin" train --model cnn --epochs 3 --optim momentum --momentum 0.9 --lr 0.05 --schedule cosine \
      --batch 64 --seed 0 --precision bf16 --threads "$threads" --quiet --metrics "$tmp/cnn.jsonl"
    report "| cnn | 3 epochs, momentum 0.9, lr 0.05, cosine, batch 64, seed 0 | $(field "$tmp/cnn.jsonl" val_acc) | 0.905 |"
    "$bin" train --model lstm --epochs 3 --optim adam --lr 1e-3 --batch 64 --seed 0 --precision bf16 \
      --threads "$threads" --quiet --metrics "$tmp/lstm.jsonl"
    report "| lstm | 3 epochs, Adam lr 1e-3, batch 64, seed 0 | $(field "$tmp/lstm.jsonl" val_acc) | 0.85 |"
    ;;
  gpt)
    corpus=$(bench/fortunes.sh "$tmp/fortunes.txt")
    for p in fp32 bf16; do
      "$bin" train --model gpt --data "text:$corpus" --batch 16 --steps 600 --optim adamw --lr 1e-3 \
        --warmup 50 --schedule cosine --eval-every 100 --seed 0 --threads "$threads" --precision $p \
        --quiet --metrics "$tmp/gpt-$p.jsonl"
    done
    report ""
    report "## gpt on the fortunes, 600 steps: validation loss"
    report ""
    /usr/bin/python3 - "$tmp/gpt-fp32.jsonl" "$tmp/gpt-bf16.jsonl" <<'PY' | while IFS= read -r l; do report "$l"; done
import json, sys
ev = [{r["step"]: r["val_loss"] for r in map(json.loads, open(p)) if r.get("event") == "eval"} for p in sys.argv[1:]]
print("| step | fp32 | bf16 | relative difference |")
print("|---|---|---|---|")
worst = 0.0
for s in sorted(ev[0]):
    d = abs(ev[1][s] - ev[0][s]) / ev[0][s]
    worst = max(worst, d)
    print(f"| {s} | {ev[0][s]:.4f} | {ev[1][s]:.4f} | {d:.4%} |")
print(f"\nlargest difference {worst:.3%} (bar 1%): {'PASS' if worst <= 0.01 else 'FAIL'}")
PY
    ;;
  gpt2)
    shards=$(bench/fortune_shards.sh "$tmp/shards")
    g2=(--model gpt2 --data "tokens:$shards/gpt2_train_*.bin" --batch 4 --ctx 256 --optim adamw --lr 3e-4
        --seed 0 --threads "$threads" --quiet --log-every 1)
    for p in fp32 bf16; do "$bin" train "${g2[@]}" --steps 20 --precision $p --metrics "$tmp/l-$p.jsonl"; done
    report ""
    report "## gpt2 124M, 4 x 256 tokens a step"
    report ""
    /usr/bin/python3 - "$tmp/l-fp32.jsonl" "$tmp/l-bf16.jsonl" <<'PY' | while IFS= read -r l; do report "$l"; done
import json, sys
ls = [{r["step"]: r["loss"] for r in map(json.loads, open(p)) if "loss" in r and "event" not in r} for p in sys.argv[1:]]
worst = max(abs(ls[1][s] - ls[0][s]) / ls[0][s] for s in ls[0])
print("Training losses, 20 steps: " + ", ".join(f"{s}: {ls[0][s]:.4f} / {ls[1][s]:.4f}" for s in sorted(ls[0]) if s in (1, 5, 10, 15, 20)) + " (fp32 / bf16)")
print(f"largest relative difference over the 20 steps {worst:.3%} (bar 1%): {'PASS' if worst <= 0.01 else 'FAIL'}")
PY
    : >"$tmp/rounds"
    for r in $(seq "$rounds"); do
      for p in fp32 bf16; do
        "$bin" train "${g2[@]}" --steps 8 --precision $p --metrics "$tmp/r$r-$p.jsonl"
        echo "$r $p $(field "$tmp/r$r-$p.jsonl" step_ms_median) $(field "$tmp/r$r-$p.jsonl" peak_host_bytes)" >>"$tmp/rounds"
      done
    done
    /usr/bin/python3 - "$tmp/rounds" <<'PY' | while IFS= read -r l; do report "$l"; done
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
by = {}
for r, p, ms, mem in rows:
    by.setdefault(r, {})[p] = (float(ms), float(mem))
print("\n| round | fp32 step ms | bf16 step ms | tokens/s bf16/fp32 | fp32 peak GB | bf16 peak GB | memory bf16/fp32 |")
print("|---|---|---|---|---|---|---|")
sp, mr = [], []
for r in sorted(by, key=int):
    f, b = by[r]["fp32"], by[r]["bf16"]
    sp.append(f[0] / b[0]); mr.append(b[1] / f[1])
    print(f"| {r} | {f[0]:.0f} | {b[0]:.0f} | {sp[-1]:.2f}x | {f[1]/1e9:.2f} | {b[1]/1e9:.2f} | {mr[-1]:.2f}x |")
print(f"\nmedian: bf16 tokens/s {statistics.median(sp):.2f}x fp32's (bar >= 0.9x), "
      f"peak memory {statistics.median(mr):.2f}x (bar <= 0.75x)")
PY
    ;;
  comm)
    shards=$(bench/fortune_shards.sh "$tmp/cshards")
    c2=(--model gpt2 --data "tokens:$shards/gpt2_train_*.bin" --batch 4 --ctx 64 --optim adamw --lr 3e-4
        --seed 0 --threads 1 --quiet --log-every 1 --steps 6)
    : >"$tmp/comm"
    for r in $(seq "$rounds"); do
      for g in fp32 bf16; do
        cluster/emulate/cluster.sh --hosts 2 --gbps 1 -- sh -c '$LK_EMU_MPIRUN "$@"' sh "$(readlink -f "$bin")" \
          train "${c2[@]}" --grad-dtype $g --metrics "$tmp/c$r-$g.jsonl"
        echo "$r $g $(/usr/bin/python3 -c "
import json, statistics, sys
ms = [r['comm_ms'] for r in map(json.loads, open(sys.argv[1])) if 'comm_ms' in r and 'event' not in r][1:]
print(statistics.median(ms))" "$tmp/c$r-$g.jsonl")" >>"$tmp/comm"
      done
    done
    report ""
    report "## --grad-dtype bf16 on 2 emulated hosts, 1 Gbit/s links (gpt2, 4 x 64, 1 rank a host)"
    /usr/bin/python3 - "$tmp/comm" <<'PY' | while IFS= read -r l; do report "$l"; done
import statistics, sys
by = {}
for r, g, ms in (l.split() for l in open(sys.argv[1])):
    by.setdefault(r, {})[g] = float(ms)
print("\n| round | fp32 comm ms/step | bf16 comm ms/step | bf16/fp32 |\n|---|---|---|---|")
rs = []
for r in sorted(by, key=int):
    rs.append(by[r]["bf16"] / by[r]["fp32"])
    print(f"| {r} | {by[r]['fp32']:.0f} | {by[r]['bf16']:.0f} | {rs[-1]:.2f}x |")
print(f"\nmedian bf16/fp32 comm time per step {statistics.median(rs):.2f}x (bar <= 0.55x)")
PY
    ;;
  *) echo "bench/precision.sh: unknown part $part" >&2; exit 2 ;;
  esac
done
