#!/usr/bin/env bash
# Weak and strong scaling sweeps over world sizes and gradient bucket sizes, as a CSV
# and PNG plots (gnuplot): samples/s and efficiency against ranks, and the share of the
# all-reduce hidden under backward.
#
#   bench/sweep.sh [--model M] [--ranks "1 2"] [--buckets "0.25 1 4"] [--batch B]
#                  [--global G] [--steps N] [--emulate GBPS] [--out DIR]
#
#   weak    every rank --batch B (default 32): the global batch grows with the ranks
#   strong  the global batch G (default 64) split over the ranks (G/N each)
#   --emulate GBPS  run the ranks on emulated hosts (cluster/emulate/cluster.sh: one
#                   rank per network namespace, links of GBPS Gbit/s, Open MPI over TCP;
#                   needs root) instead of same-host ranks under mpirun
#
# For each mode, world size and bucket size one `lockstep train` run, 1 thread per rank;
# efficiency(N) = samples/s(N) / (N x samples/s(1)) of the same mode and bucket size.
# Writes DIR/sweep.csv (default runs/sweep), DIR/throughput.png, DIR/efficiency.png and
# DIR/hidden.png, and prints the table.
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
model=cnn ranks="1 2" buckets="0.25 1 4" batch=32 global=64 steps=60 emulate="" out=runs/sweep
while [[ $# -gt 0 ]]; do
  case $1 in
    --model) model=$2; shift 2 ;;
    --ranks) ranks=$2; shift 2 ;;
    --buckets) buckets=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --global) global=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --emulate) emulate=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "sweep.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
bin=${LK_BIN:-build/lockstep}
[[ -x $bin ]] || { echo "sweep.sh: no lockstep binary at $bin (build it, or set LK_BIN)" >&2; exit 2; }
command -v gnuplot >/dev/null || { echo "sweep.sh: needs gnuplot (apt-get install gnuplot-nox)" >&2; exit 2; }
mkdir -p "$out"
csv=$out/sweep.csv
echo "mode,ranks,bucket_mb,batch_per_rank,global_batch,samples_per_s,step_ms_median,comm_ms,hidden" >"$csv"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

run() { # MODE RANKS BUCKET PER_RANK
  local mode=$1 n=$2 mb=$3 per=$4 metrics
  metrics=$(mktemp "${TMPDIR:-/tmp}/lk-sweep.XXXXXX")
  local args=(train --model "$model" --steps "$steps" --batch "$per" --bucket-mb "$mb" --threads 1
              --bind none --val-limit 200 --eval-every 0 --log-every 5 --quiet --metrics "$metrics")
  if [[ -n $emulate ]]; then
    # shellcheck disable=SC2016
    cluster/emulate/cluster.sh --hosts "$n" --gbps "$emulate" -- \
      sh -c '$LK_EMU_MPIRUN "$@"' sh "$(readlink -f "$bin")" "${args[@]}" >/dev/null
  elif [[ $n -eq 1 ]]; then
    "$bin" "${args[@]}"
  else
    LK_BIN=$bin launch/mpirun.sh -n "$n" --oversubscribe "${args[@]}"
  fi
  /usr/bin/python3 - "$metrics" "$mode" "$n" "$mb" "$per" >>"$csv" <<'PY'
import json, sys
path, mode, n, mb, per = sys.argv[1:]
recs = [json.loads(l) for l in open(path) if l.strip()]
steps = [r for r in recs if "comm_hidden" in r][1:]  # the first window holds the warm-up
summary = [r for r in recs if r.get("event") == "summary"][-1]
mean = lambda k: sum((r.get(k) or 0.0) for r in steps) / max(len(steps), 1)
print(f"{mode},{n},{mb},{per},{int(per) * int(n)},{summary['samples_per_s']:.2f},"
      f"{summary['step_ms_median']:.3f},{mean('comm_ms'):.3f},{mean('comm_hidden'):.4f}")
PY
  rm -f "$metrics"
}

for mb in $buckets; do
  for n in $ranks; do
    run weak "$n" "$mb" "$batch"
    (( global % n == 0 )) || { echo "sweep.sh: --global $global is not divisible by $n ranks" >&2; exit 2; }
    run strong "$n" "$mb" $(( global / n ))
    echo "done: $n rank(s), buckets of $mb MB" >&2
  done
done

# efficiency against the 1-rank run of the same mode and bucket size, into the CSV
/usr/bin/python3 - "$csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
# one series after another (gnuplot joins consecutive points of a series only)
rows.sort(key=lambda r: (r["mode"] != "weak", float(r["bucket_mb"]), int(r["ranks"])))
base = {(r["mode"], r["bucket_mb"]): float(r["samples_per_s"]) for r in rows if r["ranks"] == "1"}
for r in rows:
    b = base.get((r["mode"], r["bucket_mb"]))
    r["efficiency"] = f"{float(r['samples_per_s']) / (int(r['ranks']) * b):.4f}" if b else ""
with open(sys.argv[1], "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
    w.writeheader()
    w.writerows(rows)
print(f"{'mode':7s} {'ranks':>5s} {'bucket':>7s} {'samples/s':>10s} {'eff':>6s} {'comm ms':>8s} {'hidden':>7s}")
for r in rows:
    print(f"{r['mode']:7s} {r['ranks']:>5s} {r['bucket_mb']:>7s} {float(r['samples_per_s']):10.1f} "
          f"{r['efficiency']:>6s} {float(r['comm_ms']):8.3f} {float(r['hidden']):7.3f}")
PY

where=$([[ -n $emulate ]] && echo "emulated hosts, ${emulate} Gbit/s links" || echo "ranks on one host")
plot() { # FILE YLABEL COLUMN
  local series="" first=1
  for mode in weak strong; do
    for mb in $buckets; do
      [[ $first -eq 1 ]] || series+=", "
      first=0
      series+="'$csv' using (strcol(1) eq '$mode' && strcol(3) eq '$mb' ? \$2 : NaN):$3 with linespoints title '$mode, $mb MB buckets'"
    done
  done
  gnuplot <<GP
set terminal pngcairo size 800,500
set output '$1'
set datafile separator ','
set key left bottom
set xlabel 'ranks'
set ylabel '$2'
set title '$model: $2 ($where)'
set grid
set xtics ($(echo "$ranks" | sed 's/ /, /g'))
plot $series
GP
}
plot "$out/throughput.png" "samples/s" 6
plot "$out/efficiency.png" "efficiency" 10
plot "$out/hidden.png" "share of the all-reduce hidden under backward" 9
echo "wrote $csv, $out/throughput.png, $out/efficiency.png, $out/hidden.png"
