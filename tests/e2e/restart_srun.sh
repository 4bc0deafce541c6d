#!/usr/bin/env bash
# launch/run.sh under Slurm (--launcher srun) when a node of the allocation is lost: the
# relaunch counts the allocation's nodes again (scontrol show job) x the tasks per node of
# the start and keeps the global batch on fewer ranks. Slurm's srun and scontrol are
# stand-ins here (a node lost needs several machines; cluster/slurm/test-slurm.sh runs
# restart.sbatch on the real local Slurm): scontrol reports 3 nodes, then 2 after the first
# job step; srun logs its arguments, and its first step "loses a rank" (status 137).
source "$(dirname "$0")/common.bash"
mkdir -p "$TMP/bin"
cat >"$TMP/bin/scontrol" <<'SH'
#!/bin/sh
[ "$1 $2 $3" = "show job 4242" ] || { echo "scontrol: unexpected '$*'" >&2; exit 1; }
if [ -f "$STUB_DIR/steps" ]; then n=2; else n=3; fi
echo "JobId=4242 JobName=lockstep-restart"
echo "   NumNodes=$n NumCPUs=$((2 * n)) NumTasks=$((2 * n)) CPUs/Task=1"
SH
cat >"$TMP/bin/srun" <<'SH'
#!/bin/sh
echo "srun $*" >>"$STUB_DIR/steps"
[ "$(wc -l <"$STUB_DIR/steps")" -eq 1 ] && exit 137
exit 0
SH
chmod +x "$TMP/bin/scontrol" "$TMP/bin/srun"
mkdir -p "$TMP/ck"
PATH="$TMP/bin:$PATH" STUB_DIR=$TMP SLURM_JOB_ID=4242 SLURM_NTASKS=6 SLURM_JOB_NUM_NODES=3 LK_BIN=/bin/true \
  "$HERE/launch/run.sh" --launcher srun --max-restarts 2 -- train --model cnn --batch 16 --save "$TMP/ck" \
  2>"$TMP/run.log" || fail "run.sh under the stand-in Slurm: $(cat "$TMP/run.log")"
cat "$TMP/run.log" "$TMP/steps"
grep -q "run.sh: restart 1 of 2 after status 137 (a rank or its host was lost: signal 9): from the start on 4 ranks" \
  "$TMP/run.log" || fail "the restart does not count the nodes left: $(cat "$TMP/run.log")"
sed -n 1p "$TMP/steps" | grep -q -- "--ntasks 6 .* --batch 16 --accum 1$" || fail "first step: $(sed -n 1p "$TMP/steps")"
# 16 x 6 = 96 = 12 x 4 x --accum 2 (24 x 4 would be larger than the first per-rank batch)
sed -n 2p "$TMP/steps" | grep -q -- "--ntasks 4 .* --batch 12 --accum 2$" || fail "second step: $(sed -n 2p "$TMP/steps")"
echo PASS
