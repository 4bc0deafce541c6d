#!/usr/bin/env bash
# mpirun with lockstep's defaults.
#
#   launch/mpirun.sh [-n RANKS] [--oversubscribe] [--hostfile FILE] [--] COMMAND [ARGS...]
#
# COMMAND is a lockstep subcommand (train, eval, predict, sample, bench, plan, info: runs build/lockstep, or
# $LK_BIN) or any program. RANKS defaults to the number of cores. Binding is left to
# lockstep (--bind-to none); --allow-run-as-root is added only when running as root, and
# --oversubscribe only when asked for (more ranks than cores). Every rank that fails
# makes mpirun end the whole job with a non-zero status.
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

ranks=$(getconf _NPROCESSORS_ONLN)
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    -n|-np) ranks=$2; shift 2 ;;
    --oversubscribe) extra+=(--oversubscribe); shift ;;
    --hostfile) extra+=(--hostfile "$2"); shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    --) shift; break ;;
    *) break ;;
  esac
done
[[ $# -gt 0 ]] || { echo "mpirun.sh: no command given (try --help)" >&2; exit 2; }
[[ $ranks =~ ^[1-9][0-9]*$ ]] || { echo "mpirun.sh: -n needs a positive number, got '$ranks'" >&2; exit 2; }
command -v mpirun >/dev/null || { echo "mpirun.sh: mpirun not found (run launch/install-deps.sh)" >&2; exit 1; }

case "$1" in
  train|eval|predict|sample|bench|plan|info) set -- "${LK_BIN:-$repo_root/build/lockstep}" "$@" ;;
esac
[[ $(id -u) -eq 0 ]] && extra+=(--allow-run-as-root)
# one OpenMP/BLAS pool per rank sized by lockstep itself (cores / ranks on the host)
for var in LK_DEBUG OMP_NUM_THREADS ASAN_OPTIONS LSAN_OPTIONS UBSAN_OPTIONS; do
  [[ -n ${!var:-} ]] && extra+=(-x "$var")   # forwarded to remote hosts too
done
exec mpirun -np "$ranks" --bind-to none "${extra[@]}" "$@"
