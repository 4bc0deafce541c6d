#!/usr/bin/env bash
# A real Slurm on this machine, for testing the job scripts: generates a munge key and a
# slurm.conf for this host in a temporary directory, starts munged, slurmctld and slurmd
# (as root), submits cluster/slurm/one-node.sbatch for a 2-rank CPU training and
# multi-node.sbatch on the one node there is, waits for both, checks their output and
# exit status, and shuts everything down again - also when something fails.
#
#   cluster/slurm/test-slurm.sh [LOCKSTEP_BINARY]     (default build/lockstep)
#
# Needs root (the daemons) and Debian's slurm-wlm and munge (installed when missing).
# Exits 77 (skipped) when not root.
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bin=$(readlink -f "${1:-$repo_root/build/lockstep}")
[[ -x $bin ]] || { echo "test-slurm.sh: no lockstep binary at $bin" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "SKIP: test-slurm.sh starts Slurm's daemons and needs root"; exit 77; }
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends slurm-wlm munge >/dev/null ||
    { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends slurm-wlm munge >/dev/null; }
fi
[[ -d /usr/share/datasets/fashion-mnist ]] || { echo "SKIP: dataset-fashion-mnist not installed"; exit 77; }

dir=$(mktemp -d /tmp/lk-slurm.XXXXXX)
chmod 755 "$dir"
pids=()
cleanup() {
  local rc=$?
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for f in slurmd slurmctld munged; do [[ -f $dir/$f.pid ]] && kill "$(cat "$dir/$f.pid")" 2>/dev/null || true; done
  sleep 0.5
  if [[ $rc -ne 0 ]]; then
    for log in "$dir"/*.log; do [[ -f $log ]] && { echo "---- $log"; tail -n 20 "$log"; }; done >&2
  fi
  rm -rf "$dir"
  exit $rc
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

host=$(hostname -s)
cpus=$(nproc --all)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 256 ))
base=$(( 20000 + ($$ % 10000) * 2 )) # ports of this run's daemons
mkdir -p "$dir/state" "$dir/spool" "$dir/work"
head -c 1024 /dev/urandom >"$dir/munge.key"
chmod 600 "$dir/munge.key"
munged -f --socket="$dir/munge.sock" --key-file="$dir/munge.key" --log-file="$dir/munged.log" \
  --pid-file="$dir/munged.pid" --seed-file="$dir/munged.seed"
cat >"$dir/slurm.conf" <<CONF
ClusterName=lktest
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge.sock
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldPort=$base
SlurmdPort=$((base + 1))
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$dir/slurm.conf
slurmctld -i
slurmd -N "$host"
for _ in $(seq 60); do # the node registers
  state=$(sinfo -h -n "$host" -o %T 2>/dev/null || true)
  [[ $state == idle ]] && break
  sleep 0.5
done
[[ $state == idle ]] || fail "the node did not come up (state '$state')"
echo "slurm $(sinfo -V | awk '{print $2}'): node $host idle ($cpus CPUs)"

args=(--model mlp --steps 30 --batch 32 --train-limit 2000 --val-limit 500 --threads 1)
cd "$dir/work"
# one node, two ranks, srun inside the allocation
timeout 300 sbatch --wait --ntasks-per-node=2 --output="$dir/work/one-%j.out" \
  --export=ALL,LK_BIN="$bin" "$repo_root/cluster/slurm/one-node.sbatch" "${args[@]}" >"$dir/one.submit" ||
  fail "one-node.sbatch failed: $(cat "$dir"/work/one-*.out 2>/dev/null | tail -n 20)"
out=$(cat "$dir"/work/one-*.out)
echo "$out" | sed 's/^/  one-node | /'
grep -q "on 2 ranks" <<<"$out" || fail "one-node.sbatch did not train on 2 ranks"
grep -q "done: 30 steps" <<<"$out" || fail "one-node.sbatch did not finish its 30 steps"
# the same through mpirun inside the allocation
timeout 300 sbatch --wait --ntasks-per-node=2 --output="$dir/work/mpirun-%j.out" \
  --export=ALL,LK_BIN="$bin",LK_LAUNCH=mpirun "$repo_root/cluster/slurm/one-node.sbatch" "${args[@]}" \
  >"$dir/mpirun.submit" || fail "one-node.sbatch with mpirun failed: $(tail -n 20 "$dir"/work/mpirun-*.out)"
grep -q "done: 30 steps" "$dir"/work/mpirun-*.out || fail "mpirun inside the allocation did not finish"
echo "  one-node (mpirun) | $(grep "done:" "$dir"/work/mpirun-*.out)"
# the multi-node script on the one node there is: 1 node x 2 ranks
timeout 300 sbatch --wait --nodes=1 --ntasks-per-node=2 --cpus-per-task=1 --output="$dir/work/multi-%j.out" \
  --export=ALL,LK_BIN="$bin" "$repo_root/cluster/slurm/multi-node.sbatch" "${args[@]}" >"$dir/multi.submit" ||
  fail "multi-node.sbatch failed: $(tail -n 20 "$dir"/work/multi-*.out)"
grep -q "done: 30 steps" "$dir"/work/multi-*.out || fail "multi-node.sbatch did not finish"
echo "  multi-node | $(grep "done:" "$dir"/work/multi-*.out)"
# restart.sbatch: rank 1 killed after step 12 (once); launch/run.sh relaunches the step
# from the step-10 checkpoint and the job finishes
timeout 300 sbatch --wait --ntasks-per-node=2 --output="$dir/work/restart-%j.out" \
  --export=ALL,LK_BIN="$bin",LK_RUN_SH="$repo_root/launch/run.sh",LK_INJECT_FAULT=kill:1:12,LK_INJECT_FAULT_ONCE="$dir/work/fired" \
  "$repo_root/cluster/slurm/restart.sbatch" "${args[@]}" --save "$dir/work/ck" --save-every 10 >"$dir/restart.submit" ||
  fail "restart.sbatch failed: $(tail -n 30 "$dir"/work/restart-*.out)"
grep -q "run.sh: restart 1 of 3 after status" "$dir"/work/restart-*.out ||
  fail "restart.sbatch did not restart: $(tail -n 30 "$dir"/work/restart-*.out)"
grep -q "resumed from .*step-00000010 at epoch" "$dir"/work/restart-*.out ||
  fail "the restart did not resume from step 10: $(tail -n 30 "$dir"/work/restart-*.out)"
grep -q "done: 20 steps" "$dir"/work/restart-*.out || fail "the restarted job did not finish its last 20 steps"
echo "  restart | $(grep "run.sh: restart" "$dir"/work/restart-*.out) | $(grep "done:" "$dir"/work/restart-*.out)"
# a failing job reports its failure: a model that does not exist
if timeout 120 sbatch --wait --output="$dir/work/bad-%j.out" --export=ALL,LK_BIN="$bin" \
    "$repo_root/cluster/slurm/one-node.sbatch" --model nosuch >/dev/null 2>&1; then
  fail "a job with a bad flag succeeded"
fi
grep -q "unknown --model 'nosuch'" "$dir"/work/bad-*.out || fail "the failing job's output does not say why"
echo "  bad job | $(grep -m1 "error" "$dir"/work/bad-*.out)"
scontrol shutdown >/dev/null 2>&1 || true
echo PASS
