#!/usr/bin/env bash
# DP-SGD (--dp-clip, src/train/dpsgd.h), end to end:
# - the noise is the same on every rank: the replicas agree at every step (--check-every 1)
#   on 2 and 3 ranks, and the same run twice gives the same weights bit for bit;
# - Poisson batches do not depend on the world size: 2 ranks x B and 1 rank x 2B draw the same
#   global batches and noise, so their models agree to float rounding, for `mlp` (norms from
#   the layers) and `cnn` (a backward per sample); --zero 1 (each rank noises its slice) too;
# - epsilon is in every evaluation line and the summary, agrees within 1% with an independent
#   numerical integration of the Renyi divergence (bench/rdp_check.py), and a resumed run
#   keeps counting: a run stopped at step 10 and resumed to 20 reports the uninterrupted
#   run's epsilon, and its weights;
# - --dp-epsilon solves the noise for the planned steps (the run ends within its budget);
# - what it cannot do is refused naming why: batch norm, --zero 2, --grad-compress,
#   --local-steps, bf16, the gan, a budget with a noise, resuming a non-private checkpoint.
source "$(dirname "$0")/common.bash"
[[ -d /usr/share/datasets/fashion-mnist ]] || { echo "SKIP: dataset-fashion-mnist not installed"; exit 0; }
run=(--model mlp --steps 20 --batch 16 --train-limit 3000 --val-limit 300 --lr 0.5 --optim momentum --seed 3
     --threads 1 --dp-clip 1 --dp-noise 1.1 --eval-every 10 --progress lines)

for np in 2 3; do
  mpi -n $np --oversubscribe train "${run[@]}" --check-every 1 --save "$TMP/np$np" > "$TMP/np$np.log" 2>&1 ||
    { cat "$TMP/np$np.log"; fail "DP-SGD on $np ranks"; }
  grep -q "epsilon" "$TMP/np$np.log" || fail "no epsilon in the evaluation lines"
done
mpi -n 2 --oversubscribe train "${run[@]}" --save "$TMP/again" > /dev/null 2>&1 || fail "DP-SGD again"
cmp "$TMP/np2/model.safetensors" "$TMP/again/model.safetensors" || fail "the same DP-SGD run twice differs"
echo "ok: replicas agree at every step on 2 and 3 ranks; the same run twice is bitwise the same"

# 2 ranks x 16 against 1 rank x 32: the same Poisson batches, noise and clipping
"$LK" train "${run[@]}" --batch 32 --save "$TMP/one" > /dev/null 2>&1 || fail "DP-SGD on one rank"
check_models "DP-SGD mlp: 2 ranks x 16 vs 1 rank x 32" "$TMP/np2" "$TMP/one" 1e-5
mpi -n 2 --oversubscribe train "${run[@]}" --zero 1 --save "$TMP/zero1" > /dev/null 2>&1 || fail "DP-SGD --zero 1"
check_models "DP-SGD mlp: --zero 1 vs 0 on 2 ranks" "$TMP/np2" "$TMP/zero1" 1e-5
cnn=(--model cnn --steps 6 --batch 8 --train-limit 2000 --val-limit 100 --lr 0.1 --seed 5 --threads 1 --quiet
     --dp-clip 0.5 --dp-noise 0.8)
mpi -n 2 --oversubscribe train "${cnn[@]}" --save "$TMP/cnn2" || fail "DP-SGD cnn on 2 ranks"
"$LK" train "${cnn[@]}" --batch 16 --save "$TMP/cnn1" || fail "DP-SGD cnn on 1 rank"
check_models "DP-SGD cnn: 2 ranks x 8 vs 1 rank x 16" "$TMP/cnn2" "$TMP/cnn1" 1e-5

# epsilon against an independent computation; resume keeps counting
mpi -n 2 --oversubscribe train "${run[@]}" --metrics "$TMP/full.jsonl" > /dev/null 2>&1 || fail "DP-SGD metrics"
/usr/bin/python3 "$HERE/bench/rdp_check.py" --metrics "$TMP/full.jsonl" || fail "epsilon disagrees"
mpi -n 2 --oversubscribe train "${run[@]}" --save "$TMP/ck" --save-every 10 > /dev/null 2>&1 || fail "DP-SGD saving"
[[ -f "$TMP/ck/step-00000010/privacy.json" ]] || fail "no privacy.json in the step checkpoint"
mpi -n 2 --oversubscribe train "${run[@]}" --resume "$TMP/ck/step-00000010" --metrics "$TMP/resumed.jsonl" \
  --save "$TMP/resumed" > "$TMP/resumed.log" 2>&1 || { cat "$TMP/resumed.log"; fail "DP-SGD resume"; }
grep -q "the checkpoint's account: 10 steps" "$TMP/resumed.log" || fail "the resumed run did not say its account"
a=$(json_field "$TMP/full.jsonl" summary epsilon) b=$(json_field "$TMP/resumed.jsonl" summary epsilon)
[[ "$a" == "$b" ]] || fail "resumed epsilon $b, uninterrupted $a"
cmp "$TMP/np2/model.safetensors" "$TMP/resumed/model.safetensors" || fail "the resumed DP-SGD run's weights differ"
echo "ok: resumed at step 10: epsilon $b as the uninterrupted run's, the same weights"

# a budget: sigma solved for the planned steps, the run within it
mpi -n 2 --oversubscribe train "${run[@]/--dp-noise/--dp-epsilon}" --metrics "$TMP/budget.jsonl" > "$TMP/b.log" 2>&1 ||
  { cat "$TMP/b.log"; fail "--dp-epsilon"; }
/usr/bin/python3 - "$TMP/budget.jsonl" <<'PY' || fail "--dp-epsilon 1.1 overspent"
import json, sys
s = [json.loads(l) for l in open(sys.argv[1]) if '"summary"' in l][-1]
print(f"--dp-epsilon 1.1: sigma {s['dp_sigma']:.4f}, spent {s['epsilon']:.4f}")
sys.exit(0 if 1.05 <= s["epsilon"] <= 1.1 else 1)
PY

one=(--steps 1 --batch 8 --train-limit 64 --val-limit 16 --threads 1 --dp-clip 1 --dp-noise 1)
expect_fail 2 "layer 1 (batchnorm) mixes the samples" -- "$LK" train --model cnn-bn "${one[@]}"
expect_fail 2 "--zero 2" -- mpi -n 2 --oversubscribe train --model mlp "${one[@]}" --zero 2
expect_fail 2 "--grad-compress" -- mpi -n 2 --oversubscribe train --model mlp "${one[@]}" --grad-compress bf16
expect_fail 2 "--local-steps" -- mpi -n 2 --oversubscribe train --model mlp "${one[@]}" --local-steps 2
expect_fail 2 "--precision bf16" -- "$LK" train --model mlp "${one[@]}" --precision bf16
expect_fail 2 "the gan" -- "$LK" train --model gan "${one[@]}"
expect_fail 2 "give one" -- "$LK" train --model mlp "${one[@]}" --dp-epsilon 2
expect_fail 2 "need --dp-clip" -- "$LK" train --model mlp --steps 1 --dp-noise 1
expect_fail 2 "poisson or shuffle" -- "$LK" train --model mlp "${one[@]}" --dp-sampling random
"$LK" train --model mlp --steps 2 --batch 8 --train-limit 64 --val-limit 16 --threads 1 --quiet --save "$TMP/public"
expect_fail 1 "no privacy account" -- "$LK" train --model mlp "${one[@]}" --steps 3 --resume "$TMP/public"
"$LK" train --model mlp "${one[@]}" --dp-sampling shuffle --quiet 2> "$TMP/err" || fail "--dp-sampling shuffle"
grep -q "heuristic" "$TMP/err" || fail "--dp-sampling shuffle without its warning"
echo PASS
