#!/usr/bin/env bash
# Checks `lockstep plan` against emulated clusters: for each host count H and link speed,
# a `bench comm` sweep on the emulated hosts, then per model the projection (plan
# --comm-csv that sweep --shared-cores, run on the H emulated hosts: they measure at once,
# since they share this machine's cores, and their all-reduces beside backward, since
# those cores also move the TCP traffic; median of --reps runs) and the training it
# projects (the same job on the emulated hosts, median of --reps runs), side by side.
#
#   bench/projection.sh [--models "cnn mlp-wide"] [--hosts "2 4"] [--gbps "1 10 100"]
#                       [--batch 64] [--steps 150] [--reps 3] [--out runs/projection]
#
# Writes DIR/projection.csv (model, hosts, gbps, predicted and measured samples/s, error)
# and DIR/projection.md (the same as a markdown table), the sweeps as DIR/comm_H_G.csv,
# the plans' reports as DIR/plan_MODEL_H_G_REP.txt, and prints the table. Needs root
# (cluster/emulate) and a Release build.
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
models="cnn mlp-wide" hosts="2 4" gbps="1 10 100" batch=64 steps=150 reps=3 out=runs/projection
while [[ $# -gt 0 ]]; do
  case $1 in
    --models) models=$2; shift 2 ;;
    --hosts) hosts=$2; shift 2 ;;
    --gbps) gbps=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "projection.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
bin=$(readlink -f "${LK_BIN:-build/lockstep}")
[[ -x $bin ]] || { echo "projection.sh: no lockstep binary at $bin (build it, or set LK_BIN)" >&2; exit 2; }
[[ $reps =~ ^[1-9][0-9]*$ ]] || { echo "projection.sh: --reps needs a positive number" >&2; exit 2; }
mkdir -p "$out"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
csv=$out/projection.csv
echo "model,hosts,gbps,batch,predicted,measured,error,measured_min,measured_max" >"$csv"
emu() { # HOSTS GBPS ARGS... : lockstep ARGS on the emulated hosts
  local h=$1 g=$2
  shift 2
  # shellcheck disable=SC2016
  cluster/emulate/cluster.sh --hosts "$h" --gbps "$g" -- sh -c '$LK_EMU_MPIRUN "$@"' sh "$bin" "$@"
}
for h in $hosts; do
  for g in $gbps; do
    sweep=$out/comm_${h}_${g}.csv
    emu "$h" "$g" bench comm --min-bytes 4K --max-bytes 16M --csv "$sweep" >/dev/null 2>&1
    for m in $models; do
      preds=()
      for ((r = 0; r < reps; r++)); do
        plan=$(emu "$h" "$g" plan --model "$m" --batch "$batch" --threads 1 --ranks "$h" --steps 40 \
          --comm-csv "$sweep" --link-gbps "$g" --shared-cores </dev/null 2>/dev/null)
        echo "$plan" >"$out/plan_${m}_${h}_${g}_$r.txt"
        p=$(awk -v n="$h" '$1 == n && NF >= 8 { print $6 }' <<<"$plan")
        [[ -n $p ]] || { echo "projection.sh: no $h-rank row in plan's output:"$'\n'"$plan" >&2; exit 1; }
        preds+=("$p")
      done
      predicted=$(/usr/bin/python3 -c 'import statistics, sys; print(statistics.median(map(float, sys.argv[1:])))' "${preds[@]}")
      runs=()
      for ((r = 0; r < reps; r++)); do
        metrics=$(mktemp "${TMPDIR:-/tmp}/lk-proj.XXXXXX")
        emu "$h" "$g" train --model "$m" --steps "$steps" --batch "$batch" --threads 1 --bind none \
          --val-limit 200 --eval-every 0 --log-every 10 --quiet --metrics "$metrics" >/dev/null 2>&1
        runs+=("$(/usr/bin/python3 -c 'import json,sys; print([json.loads(l) for l in open(sys.argv[1]) if "summary" in l][-1]["samples_per_s"])' "$metrics")")
        rm -f "$metrics"
      done
      /usr/bin/python3 - "$m" "$h" "$g" "$batch" "$predicted" "${runs[@]}" >>"$csv" <<'PY'
import statistics, sys
m, h, g, batch, pred, *runs = sys.argv[1:]
runs = sorted(float(x) for x in runs)
meas = statistics.median(runs)
print(f"{m},{h},{g},{batch},{float(pred):.1f},{meas:.1f},{(float(pred) - meas) / meas:+.4f},{runs[0]:.1f},{runs[-1]:.1f}")
PY
      tail -1 "$csv" >&2
    done
  done
done
/usr/bin/python3 - "$csv" "$out/projection.md" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
lines = ["| model | hosts | link | projected samples/s | measured samples/s (median; min-max) | error |",
         "|---|---:|---:|---:|---:|---:|"]
for r in rows:
    lines.append(f"| {r['model']} | {r['hosts']} | {r['gbps']} Gbit/s | {float(r['predicted']):.0f} | "
                 f"{float(r['measured']):.0f} ({float(r['measured_min']):.0f}-{float(r['measured_max']):.0f}) | "
                 f"{100 * float(r['error']):+.1f}% |")
worst = max(abs(float(r["error"])) for r in rows)
lines.append("")
lines.append(f"worst error: {100 * worst:.1f}%")
open(sys.argv[2], "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
echo "wrote $csv and $out/projection.md"
