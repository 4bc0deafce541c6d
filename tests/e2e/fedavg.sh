#!/usr/bin/env bash
# The ranks as federated clients (--partition, --fedavg; src/train/fedavg.h):
# - FedAvg with one client is local training: bitwise the same weights as plain training;
# - iid shards and one local step a round is data-parallel SGD over those shards (momentum
#   SGD: linear in the gradient, the momentum averaged too): within 1e-5 on 2 and 3 ranks;
# - classes:2 on 5 clients covers every class (the per-client report), and trains;
# - --client-fraction: the sampled clients only, replicas equal after every round's average;
#   the same run twice is the same; a checkpoint taken at a round's end resumes bitwise;
# - --dp-level client: clipped, noised client updates with epsilon reported;
# - bad combinations are refused, naming the option.
source "$(dirname "$0")/common.bash"
[[ -d /usr/share/datasets/fashion-mnist ]] || { echo "SKIP: dataset-fashion-mnist not installed"; exit 0; }
base=(--model mlp --batch 16 --train-limit 2400 --val-limit 300 --lr 0.05 --optim momentum --seed 4 --threads 1)

"$LK" train "${base[@]}" --quiet --steps 12 --save "$TMP/plain" || fail "plain training"
"$LK" train "${base[@]}" --quiet --steps 12 --fedavg --local-steps 4 --save "$TMP/one" || fail "FedAvg, one client"
cmp "$TMP/plain/model.safetensors" "$TMP/one/model.safetensors" || fail "FedAvg with one client differs from local training"
echo "ok: FedAvg with one client is local training, bit for bit"

for np in 2 3; do
  mpi -n $np --oversubscribe train "${base[@]}" --quiet --steps 20 --partition iid --save "$TMP/sgd-$np" ||
    fail "data-parallel over iid shards, $np ranks"
  mpi -n $np --oversubscribe train "${base[@]}" --quiet --steps 20 --fedavg --local-steps 1 --check-every 1 \
    --save "$TMP/fed-$np" || fail "FedAvg, $np clients"
  check_models "FedAvg, one local step, $np clients vs data-parallel SGD over the same shards" \
    "$TMP/sgd-$np" "$TMP/fed-$np" 1e-5
done

mpi -n 5 --oversubscribe train "${base[@]}" --epochs 2 --fedavg --partition classes:2 --local-epochs 1 \
  --progress lines > "$TMP/c2.log" 2>&1 || { cat "$TMP/c2.log"; fail "FedAvg classes:2 on 5 clients"; }
/usr/bin/python3 - "$TMP/c2.log" <<'PY' || fail "classes:2's deal"
import re, sys
lines = [l for l in open(sys.argv[1]) if l.startswith("client ")]
classes = [set(int(c) for c in re.findall(r" (\d+) \(", l.split("classes", 1)[1])) for l in lines]
assert len(lines) == 5, lines
assert all(len(c) == 2 for c in classes), classes
assert set().union(*classes) == set(range(10)), classes
print("classes:2 on 5 clients:", [sorted(c) for c in classes])
PY
grep -q "round 2 step" "$TMP/c2.log" || fail "no evaluation at the rounds' ends"

frac=("${base[@]}" --quiet --epochs 4 --fedavg --partition dirichlet:0.5 --local-steps 5 --client-fraction 0.5
      --check-every 1)
mpi -n 4 --oversubscribe train "${frac[@]}" --save "$TMP/frac" --save-every 10 || fail "--client-fraction 0.5"
mpi -n 4 --oversubscribe train "${frac[@]}" --save "$TMP/frac2" || fail "--client-fraction 0.5 again"
cmp "$TMP/frac/step-00000020/model.safetensors" "$TMP/frac2/model.safetensors" || fail "the same FedAvg run twice differs"
mpi -n 4 --oversubscribe train "${frac[@]}" --save "$TMP/frac3" --resume "$TMP/frac/step-00000010" || fail "FedAvg resume"
cmp "$TMP/frac2/model.safetensors" "$TMP/frac3/model.safetensors" || fail "the resumed FedAvg run differs"
echo "ok: --client-fraction 0.5: replicas agree after each round; reproducible; resumed at round 2 bitwise"

mpi -n 3 --oversubscribe train "${base[@]}" --quiet --epochs 3 --fedavg --local-steps 5 --dp-level client --dp-clip 0.5 \
  --dp-noise 0.8 --check-every 1 --metrics "$TMP/dpc.jsonl" || fail "--dp-level client"
e=$(json_field "$TMP/dpc.jsonl" summary epsilon) s=$(json_field "$TMP/dpc.jsonl" summary dp_steps)
[[ "$s" == "3" ]] || fail "--dp-level client accounted $s rounds, expected 3"
echo "ok: --dp-level client: epsilon $e after 3 rounds"

one=(--model mlp --steps 2 --batch 8 --train-limit 64 --val-limit 16 --threads 1)
expect_fail 2 "give --fedavg" -- "$LK" train "${one[@]}" --client-fraction 0.5
expect_fail 2 "give one" -- "$LK" train "${one[@]}" --fedavg --local-steps 2 --local-epochs 1
expect_fail 2 "--local-steps K or --local-epochs E" -- "$LK" train "${one[@]}" --fedavg
expect_fail 2 "--zero" -- mpi -n 2 --oversubscribe train "${one[@]}" --fedavg --local-steps 2 --zero 1
expect_fail 2 "whole rounds" -- "$LK" train "${one[@]}" --fedavg --local-steps 2 --eval-every 3
expect_fail 2 "--accum" -- "$LK" train "${one[@]}" --partition iid --accum 2
expect_fail 2 "holds at most 4 of the 10 classes" -- mpi -n 2 --oversubscribe train "${one[@]}" --partition classes:2
expect_fail 2 "--partition" -- "$LK" train "${one[@]}" --partition classes:x
expect_fail 2 "--dp-level client" -- "$LK" train "${one[@]}" --dp-clip 1 --dp-noise 1 --partition iid
expect_fail 2 "give --fedavg" -- "$LK" train "${one[@]}" --dp-clip 1 --dp-noise 1 --dp-level client
expect_fail 2 "the gan" -- "$LK" train "${one[@]}" --model gan --fedavg --local-steps 1
echo PASS
