#!/usr/bin/env bash
# The ways to send less per step, measured on emulated hosts (cluster/emulate: one rank a
# host, links of the given speeds) side by side with what `lockstep plan` predicts for them:
# float32 buckets, --grad-compress bf16, fp16 and powersgd:R, and --local-steps K, each
# trained for the same steps (or epochs) from the same seed; rounds alternate the options.
# The link "host" is no emulation: the ranks share this host and lockstep's shared memory
# (plan then fits its all-reduce to a `lockstep bench comm` sweep of that).
#
#   bench/compress.sh [--model mlp-wide] [--hosts 2] [--gbps "1 10"] [--batch 64]
#                     [--steps 100 | --epochs N] [--rounds 2] [--rank 4] [--local 8]
#                     [--out runs/compress]
#
# Writes DIR/compress.csv (option, link, the median over the rounds of samples/s, of the
# comm time a step waited, the final validation loss and accuracy - on the whole test set
# with --epochs, else 1000 images of it - and plan's predicted samples/s and choice),
# DIR/compress.md (the same as a table), DIR/compress_wide.csv and DIR/compress.png
# (gnuplot: samples/s by option and link) and prints the table. Needs root (network
# namespaces) and a Release build.
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
model=mlp-wide hosts=2 gbps="1 10" batch=64 steps=100 epochs=0 rounds=2 rank=4 local=8 out=runs/compress
while [[ $# -gt 0 ]]; do
  case $1 in
    --model) model=$2; shift 2 ;;
    --hosts) hosts=$2; shift 2 ;;
    --gbps) gbps=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --epochs) epochs=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --rank) rank=$2; shift 2 ;;
    --local) local=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "compress.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
bin=$(readlink -f "${LK_BIN:-build/lockstep}")
[[ -x $bin ]] || { echo "compress.sh: no lockstep binary at $bin (build it, or set LK_BIN)" >&2; exit 2; }
command -v gnuplot >/dev/null || { echo "compress.sh: needs gnuplot (apt-get install gnuplot-nox)" >&2; exit 2; }
mkdir -p "$out"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
emu() { # GBPS ARGS... : lockstep ARGS on the emulated hosts, or (host) on this one
  local g=$1
  shift
  if [[ $g == host ]]; then
    launch/mpirun.sh -n "$hosts" --oversubscribe "$bin" "$@"
    return
  fi
  # shellcheck disable=SC2016
  cluster/emulate/cluster.sh --hosts "$hosts" --gbps "$g" -- sh -c '$LK_EMU_MPIRUN "$@"' sh "$bin" "$@"
}
length=(--steps "$steps")
valset=(--val-limit 1000)
if ((epochs > 0)); then
  length=(--epochs "$epochs")
  valset=()
fi
options=("none" "bf16" "fp16" "powersgd:$rank" "local:$local")
flags() { # OPTION: its train flags
  case $1 in
    none) echo "--grad-compress none" ;;
    local:*) echo "--local-steps ${1#local:}" ;;
    *) echo "--grad-compress $1" ;;
  esac
}
raw=$out/runs.csv
echo "option,gbps,round,samples_per_s,comm_ms,val_loss,val_acc" >"$raw"
plans=$out/plans.csv
echo "gbps,option,predicted,chosen" >"$plans"
for g in $gbps; do
  link=(--link-gbps "$g")
  if [[ $g == host ]]; then # the shared memory's all-reduce, swept on this host
    emu host bench comm --min-bytes 64K --max-bytes 64M --csv "$out/comm_host.csv" >/dev/null 2>&1
    link=(--comm-csv "$out/comm_host.csv")
  fi
  plan=$(emu "$g" plan --model "$model" --batch "$batch" --threads 1 --ranks "$hosts" --steps 20 "${link[@]}" \
    --grad-compress "powersgd:$rank" --local-steps "$local" </dev/null 2>/dev/null)
  echo "$plan" >"$out/plan_$g.txt"
  awk -v g="$g" -v r="$rank" -v k="$local" '
    /^# to use here: none/ { use = "none" }
    /^# to use here: bf16/ { use = "bf16" }
    /^# to use here: powersgd/ { use = "powersgd:" r }
    /^# to use here: --local-steps/ { use = "local:" k }
    /^  none \(float32\)/ { row["none"] = $NF }
    /^  bf16, fp16/ { row["bf16"] = $NF; row["fp16"] = $NF }
    $1 == "powersgd:" r { row["powersgd:" r] = $NF }
    $1 == "--local-steps" { row["local:" k] = $NF }
    END { for (o in row) print g "," o "," row[o] "," (o == use || (use == "bf16" && o == "fp16") ? 1 : 0) }' \
    <<<"$plan" >>"$plans"
  for ((r = 1; r <= rounds; r++)); do
    for opt in "${options[@]}"; do
      metrics=$(mktemp "${TMPDIR:-/tmp}/lk-compress.XXXXXX")
      # shellcheck disable=SC2046
      emu "$g" train --model "$model" "${length[@]}" --batch "$batch" --threads 1 --bind none --seed 1 \
        "${valset[@]}" --eval-every 0 --log-every 5 --quiet --metrics "$metrics" $(flags "$opt") >/dev/null 2>&1
      /usr/bin/python3 - "$metrics" "$opt" "$g" "$r" >>"$raw" <<'PY'
import json, statistics, sys
path, opt, g, r = sys.argv[1:]
rec = [json.loads(l) for l in open(path) if l.strip()]
s = [json.loads(l) for l in open(path) if '"summary"' in l][-1]
comm = [x["comm_ms"] for x in rec if "comm_ms" in x and "event" not in x][1:]
print(f"{opt},{g},{r},{s['samples_per_s']:.1f},{statistics.median(comm) if comm else 0:.3f},{s['val_loss']:.4f},"
      f"{s['val_acc']:.4f}")
PY
      rm -f "$metrics"
      tail -1 "$raw" >&2
    done
  done
done
csv=$out/compress.csv
length="$steps steps"
((epochs > 0)) && length="$epochs epochs"
/usr/bin/python3 - "$raw" "$plans" "$csv" "$out/compress.md" "$model" "$hosts" "$length" "$batch" <<'PY'
import csv, statistics, sys
raw, plans, out, md, model, hosts, length, batch = sys.argv[1:]
rows = list(csv.DictReader(open(raw)))
pred = {(r["gbps"], r["option"]): float(r["predicted"]) for r in csv.DictReader(open(plans))}
chosen = {(r["gbps"], r["option"]): r["chosen"] == "1" for r in csv.DictReader(open(plans))}
link = lambda g: "one host (shared memory)" if g == "host" else f"{g} Gbit/s"
keys = []
for r in rows:
    if (r["gbps"], r["option"]) not in keys:
        keys.append((r["gbps"], r["option"]))
with open(out, "w") as f, open(md, "w") as m:
    f.write("option,gbps,samples_per_s,comm_ms,val_loss,val_acc,predicted,chosen\n")
    m.write(f"`{model}`, {hosts} ranks (on emulated hosts, one rank each, or on one host), batch {batch} a rank, "
            f"{length}; medians over the rounds\n\n")
    m.write("| link | option | samples/s | x float32 | comm ms/step | val loss | val acc | plan's samples/s |\n")
    m.write("|---|---|---:|---:|---:|---:|---:|---:|\n")
    base = {}
    for g, o in keys:
        sel = [r for r in rows if r["gbps"] == g and r["option"] == o]
        sps = statistics.median(float(r["samples_per_s"]) for r in sel)
        cms = statistics.median(float(r["comm_ms"]) for r in sel)
        vl = statistics.median(float(r["val_loss"]) for r in sel)
        va = statistics.median(float(r["val_acc"]) for r in sel)
        base.setdefault(g, sps if o == "none" else None)
        p = pred.get((g, o), float("nan"))
        c = chosen.get((g, o), False)
        f.write(f"{o},{g},{sps:.1f},{cms:.3f},{vl:.4f},{va:.4f},{p:.1f},{int(c)}\n")
        m.write(f"| {link(g)} | {o} | {sps:.0f} | {sps / base[g]:.2f}x | {cms:.1f} | {vl:.4f} | {va:.4f} | "
                f"{p:.0f}{' (its choice)' if c else ''} |\n")
gs = []
for g, o in keys:
    if g not in gs:
        gs.append(g)
opts = []
for g, o in keys:
    if o not in opts:
        opts.append(o)
with open(out.replace(".csv", "_wide.csv"), "w") as w:
    w.write("option," + ",".join(link(g) for g in gs) + "\n")
    for o in opts:
        vals = [statistics.median(float(r["samples_per_s"]) for r in rows if r["gbps"] == g and r["option"] == o)
                for g in gs]
        w.write(o + "," + ",".join(f"{v:.1f}" for v in vals) + "\n")
print(open(md).read())
PY
gnuplot <<GP
set terminal pngcairo size 800,500
set output '$out/compress.png'
set datafile separator ','
set style data histograms
set style histogram clustered
set style fill solid 0.8
set key left top
set ylabel 'samples/s'
set title '$model on $hosts ranks: samples/s by option and link'
set grid ytics
set key autotitle columnhead
plot for [i=2:$(( $(wc -w <<<"$gbps") + 1 ))] '$out/compress_wide.csv' using i:xtic(1)
GP
echo "wrote $csv, $out/compress.md, $out/compress.png"
