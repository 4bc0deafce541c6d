#!/usr/bin/env bash
# Failures in a multi-rank run end every rank with a non-zero status and a message
# naming the rank, within a bounded time - never a hang: ranks that disagree at start,
# an error on one rank, replicas that diverge, a rank that is killed, bad data on one rank.
source "$(dirname "$0")/common.bash"
[[ -d /usr/share/datasets/fashion-mnist ]] || { echo "SKIP: dataset-fashion-mnist not installed"; exit 0; }
run=(train --model mlp --train-limit 2000 --val-limit 100 --quiet --threads 1)
LK_DEADLINE=60

# MPMD launch: rank 1 runs with another learning rate
expect_nonzero "rank 1 differs from rank 0 in optimizer hyperparameters" -- \
  bash -c "ASAN_OPTIONS=\${ASAN_OPTIONS:+\$ASAN_OPTIONS:}detect_leaks=0 '$HERE/launch/mpirun.sh' -n 1 --oversubscribe '$LK' ${run[*]} --steps 5 --lr 0.1 : -np 1 '$LK' ${run[*]} --steps 5 --lr 0.2"
expect_nonzero "rank 1 differs from rank 0 in --batch" -- \
  bash -c "ASAN_OPTIONS=\${ASAN_OPTIONS:+\$ASAN_OPTIONS:}detect_leaks=0 '$HERE/launch/mpirun.sh' -n 1 --oversubscribe '$LK' ${run[*]} --steps 5 --batch 32 : -np 1 '$LK' ${run[*]} --steps 5 --batch 16"
# an error on rank 1 after step 3
expect_nonzero "rank 1: error: injected fault after step 3" -- \
  env LK_INJECT_FAULT=error:1:3 bash -c "$(declare -f mpi); HERE='$HERE'; mpi -n 2 --oversubscribe '$LK' ${run[*]} --steps 50"
# rank 2 of 3 perturbs its parameters after step 4: the check at step 5 catches it
expect_nonzero "replicas diverged at step 5: the parameters of rank(s) 2 differ" -- \
  env LK_INJECT_FAULT=diverge:2:4 bash -c "$(declare -f mpi); HERE='$HERE'; mpi -n 3 --oversubscribe '$LK' ${run[*]} --steps 50 --check-every 5"
# rank 1 is killed (SIGKILL) after step 3 while rank 0 waits for it in an all-reduce
expect_nonzero "signal 9" -- \
  env LK_INJECT_FAULT=kill:1:3 bash -c "$(declare -f mpi); HERE='$HERE'; mpi -n 2 --oversubscribe '$LK' ${run[*]} --steps 100000"
# rank 1 stops without dying after step 3: rank 0's shared-memory all-reduce gives up
# after --comm-timeout and the job ends (rank 0's error aborts rank 1)
expect_nonzero "rank 0: error: on host $(hostname), local rank 0: shared-memory all-reduce: the other ranks on this host did not arrive within 3 s" -- \
  env LK_INJECT_FAULT=stall:1:3 bash -c "$(declare -f mpi); HERE='$HERE'; mpi -n 2 --oversubscribe '$LK' ${run[*]} --steps 100 --comm-timeout 3"
# ... and says who did not arrive and what each rank was doing
grep -q "local rank 0 (rank 0) waits in call [0-9]*, step 4: reducing gradients, bucket 0; local rank 1 (rank 1) did not arrive: its last was call [0-9]*, step 3: updating" "$TMP/out" ||
  fail "the timeout does not report the ranks: $(grep error "$TMP/out")"
# the same without shared memory: MPI's own all-reduce cannot time out, so the watchdog
# (mpi_watch.h) asks every rank where it is; every surviving rank prints the verdict
# (rank 1, stalled but alive, too) and the job ends with status 3 (launch/run.sh restarts)
rc=0
timeout 60 env LK_INJECT_FAULT=stall:1:3 bash -c "$(declare -f mpi); HERE='$HERE'; mpi -n 3 --oversubscribe '$LK' ${run[*]} --steps 100 --comm-timeout 3 --shm off" >"$TMP/out" 2>&1 || rc=$?
[[ $rc -eq 3 ]] || fail "a stalled rank under MPI: exit $rc, expected 3: $(tail -5 "$TMP/out")"
verdict="MPI all-reduce (call [0-9]*) did not complete within 3 s (--comm-timeout); did not arrive: rank(s) 1;"
for r in 0 2; do
  grep -q "rank $r: error: $verdict" "$TMP/out" || fail "rank $r does not report the stalled rank: $(grep error "$TMP/out")"
done
grep -q "rank 1 (host [^)]*) did not arrive: its last was call [0-9]*, step 3: updating; rank 2 (host [^)]*) waits in call [0-9]* (all-reduce) for [0-9]* s, step 4: reducing gradients, bucket 0" "$TMP/out" ||
  fail "the MPI timeout does not say what each rank was doing: $(grep error "$TMP/out")"
echo "ok: MPI's all-reduce timed out: $(grep -m1 'rank 0: error' "$TMP/out")"
# rank 1 cannot read its data
expect_nonzero "rank 1: error: dataset 'fashion-mnist:$TMP/missing'" -- \
  bash -c "ASAN_OPTIONS=\${ASAN_OPTIONS:+\$ASAN_OPTIONS:}detect_leaks=0 '$HERE/launch/mpirun.sh' -n 1 --oversubscribe '$LK' ${run[*]} --steps 5 : -np 1 '$LK' ${run[*]} --steps 5 --data fashion-mnist:$TMP/missing"
echo PASS
