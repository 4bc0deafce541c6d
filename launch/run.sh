#!/usr/bin/env bash
# A training job that survives failures: lockstep train under mpirun (launch/mpirun.sh) or
# srun, relaunched from its latest checkpoint when it ends for a cause a restart can cure.
#
#   launch/run.sh [-n RANKS | --hostfile FILE] [--max-restarts R] [--min-ranks M]
#                 [--launcher mpirun|srun] [--oversubscribe] -- train FLAGS... --save DIR
#
# FLAGS must include --save DIR (add --save-every N for checkpoints inside epochs).
# Retryable: a rank killed or lost (mpirun's or srun's status above 128, or 3: lockstep's
# communication failures, a --comm-timeout among them); not retryable: 1 (data, files,
# numerics, the device) and 2 (the command line) - the job ends with that status. Each
# attempt after the first resumes from DIR (its latest checkpoint, when one exists). The
# ranks of an attempt: -n, or the slots of --hostfile read again before each attempt (a
# host taken out of it is gone), or under srun the allocation's nodes now (scontrol show
# job: a node lost in a --no-kill allocation is gone) x the tasks per node of the start
# (SLURM_NTASKS_PER_NODE, or SLURM_NTASKS / SLURM_JOB_NUM_NODES). With fewer ranks than the
# first attempt's the global batch is kept (--batch x ranks x --accum): the smallest
# --accum whose per-rank batch divides it evenly and is no larger than the first's;
# refused, as fewer than M ranks are, with a message. Every restart is logged with its
# cause on stderr ("run.sh: ...").
set -uo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ranks="" hostfile="" max_restarts=3 min_ranks=1 launcher=mpirun over=()
while [[ $# -gt 0 ]]; do
  case $1 in
    -n|-np) ranks=$2; shift 2 ;;
    --hostfile) hostfile=$2; shift 2 ;;
    --max-restarts) max_restarts=$2; shift 2 ;;
    --min-ranks) min_ranks=$2; shift 2 ;;
    --launcher) launcher=$2; shift 2 ;;
    --oversubscribe) over=(--oversubscribe); shift ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --) shift; break ;;
    *) echo "run.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
say() { echo "run.sh: $*" >&2; }
[[ $# -gt 0 && $1 == train ]] || { say "expected '-- train FLAGS...'"; exit 2; }
for v in "$max_restarts" "$min_ranks"; do
  [[ $v =~ ^[0-9]+$ ]] || { say "--max-restarts and --min-ranks take whole numbers, got '$v'"; exit 2; }
done
[[ $launcher == mpirun || $launcher == srun ]] || { say "--launcher mpirun or srun, not '$launcher'"; exit 2; }
shift
flags=("$@")
# the flags the relaunches rewrite: --save, --batch, --accum, --resume
save="" batch=64 accum=1 rest=()
for ((i = 0; i < ${#flags[@]}; i++)); do
  case ${flags[i]} in
    --save) save=${flags[i + 1]:-}; rest+=(--save "$save"); ((i++)) ;;
    --batch) batch=${flags[i + 1]:-}; ((i++)) ;;
    --accum) accum=${flags[i + 1]:-}; ((i++)) ;;
    --resume) say "--resume is the launcher's: it resumes from --save's directory"; exit 2 ;;
    *) rest+=("${flags[i]}") ;;
  esac
done
[[ -n $save ]] || { say "train needs --save DIR: a restart resumes from there"; exit 2; }
[[ $batch =~ ^[1-9][0-9]*$ && $accum =~ ^[1-9][0-9]*$ ]] || { say "--batch and --accum take positive numbers"; exit 2; }

available() { # the ranks this attempt can have
  if [[ -n $hostfile ]]; then
    [[ -r $hostfile ]] || { say "cannot read --hostfile $hostfile"; echo 0; return; }
    awk '!/^[ \t]*(#|$)/ { n = 1; for (i = 2; i <= NF; i++) if ($i ~ /^slots=/) { split($i, s, "="); n = s[2] }
         total += n } END { print total + 0 }' "$hostfile"
  elif [[ $launcher == srun ]]; then
    local per=${SLURM_NTASKS_PER_NODE:-} nodes
    if ! [[ $per =~ ^[1-9][0-9]*$ ]] && [[ ${SLURM_NTASKS:-} =~ ^[0-9]+$ && ${SLURM_JOB_NUM_NODES:-} =~ ^[1-9][0-9]*$ ]]; then
      per=$((SLURM_NTASKS / SLURM_JOB_NUM_NODES))
    fi
    nodes=$(scontrol show job "${SLURM_JOB_ID:-}" 2>/dev/null | grep -o 'NumNodes=[0-9]*' | head -n 1 | cut -d= -f2)
    if [[ $per =~ ^[1-9][0-9]*$ && $nodes =~ ^[1-9][0-9]*$ ]]; then
      echo $((per * nodes))
    else
      echo "${SLURM_NTASKS:-${ranks:-1}}"
    fi
  else
    echo "${ranks:-$(getconf _NPROCESSORS_ONLN)}"
  fi
}

first=$(available)
[[ $first =~ ^[1-9][0-9]*$ ]] || { say "no ranks to start with ($first)"; exit 2; }
global=$((batch * first * accum))
attempt=0
while :; do
  n=$(available)
  if ! [[ $n =~ ^[0-9]+$ ]] || ((n < min_ranks || n < 1)); then
    say "only $n ranks left, fewer than --min-ranks $min_ranks: giving up"
    exit 1
  fi
  # the same global batch on n ranks: the smallest accum with an even per-rank batch no
  # larger than the first attempt's
  b=0 a=0
  for ((k = 1; k <= global; k++)); do
    if ((global % (n * k) == 0 && global / (n * k) <= batch)); then
      b=$((global / (n * k))) a=$k
      break
    fi
  done
  if ((b == 0)); then
    say "$n ranks cannot keep the global batch of $global (--batch $batch x $first ranks x --accum $accum)"
    exit 1
  fi
  cmd=(train "${rest[@]}" --batch "$b" --accum "$a")
  if ((attempt > 0)) && [[ -e $save/latest || -e $save/config.json ]]; then
    cmd+=(--resume "$save")
  fi
  if [[ $launcher == srun ]]; then
    # (a rank that dies ends the step at once; binding is lockstep's, as in one-node.sbatch)
    srun --ntasks "$n" --kill-on-bad-exit=1 --mpi="${LK_SRUN_MPI:-pmix}" --cpu-bind=none \
      "${LK_BIN:-$repo_root/build/lockstep}" "${cmd[@]}"
  elif [[ -n $hostfile ]]; then
    "$repo_root/launch/mpirun.sh" -n "$n" --hostfile "$hostfile" "${over[@]}" "${cmd[@]}"
  else
    "$repo_root/launch/mpirun.sh" -n "$n" "${over[@]}" "${cmd[@]}"
  fi
  rc=$?
  ((rc == 0)) && exit 0
  case $rc in
    1) say "attempt $((attempt + 1)) failed with status 1 (data, files, numerics or the device): not restarted"; exit 1 ;;
    2) say "attempt $((attempt + 1)) failed with status 2 (the command line): not restarted"; exit 2 ;;
    3) cause="status 3 (the communication between ranks failed, or a rank stopped answering)" ;;
    *) cause="status $rc (a rank or its host was lost$( ((rc > 128)) && echo ": signal $((rc - 128))"))" ;;
  esac
  if ((attempt >= max_restarts)); then
    say "attempt $((attempt + 1)) ended with $cause; --max-restarts $max_restarts reached: giving up"
    exit "$rc"
  fi
  attempt=$((attempt + 1))
  at=$(readlink "$save/latest" 2>/dev/null || true)
  say "restart $attempt of $max_restarts after $cause: from ${at:-the start} on $(available) ranks"
done
