#!/usr/bin/env bash
# The CPU's compute: `lockstep info` names oneDNN and the instruction set it dispatches
# to (and warns when that is below the CPU's: ONEDNN_MAX_CPU_ISA on a CPU with more);
# `lockstep bench gemm` (fp32 and bf16 rows per rank and size, the CSV, under mpirun
# every rank, its flag errors); training reports model FLOPs and mfu (progress lines,
# metrics, summary) against --peak-tflops or a measured peak; the GPT-2 presets refuse
# what would change their shape.
source "$(dirname "$0")/common.bash"

"$LK" info >"$TMP/info.txt" 2>"$TMP/info.err"
cat "$TMP/info.txt"
line=$(grep "^cpu math: oneDNN" "$TMP/info.txt") || fail "info has no 'cpu math: oneDNN' line"
cpu=$(sed -E 's/.*the CPU reports ([a-z0-9_]+).*/\1/' <<<"$line")
if [[ $cpu == avx2* || $cpu == avx512* ]]; then
  grep -Eq "dispatching to (avx2|avx512)" <<<"$line" || fail "oneDNN dispatches below AVX2 on a $cpu CPU: $line"
  # (named for the ISA, or oneDNN's JIT gemm, which picks it at run time: an AVX2-only AMD EPYC's)
  grep -Eq "float32 products: ([a-z0-9_:]*(avx2|avx512)|gemm:jit)" <<<"$line" || fail "float32 products not on AVX2/AVX-512: $line"
  [[ ! -s "$TMP/info.err" ]] || fail "info warned on a CPU whose ISA oneDNN uses: $(cat "$TMP/info.err")"
fi
if [[ $cpu == avx512* ]]; then # oneDNN limited below the CPU: info must say so
  ONEDNN_MAX_CPU_ISA=AVX2 "$LK" info >"$TMP/info2.txt" 2>"$TMP/info2.err"
  grep -q "dispatching to avx2" "$TMP/info2.txt" || fail "ONEDNN_MAX_CPU_ISA=AVX2 not seen: $(cat "$TMP/info2.txt")"
  grep -q "warning: oneDNN dispatches to avx2 but this CPU supports $cpu" "$TMP/info2.err" ||
    fail "no warning with ONEDNN_MAX_CPU_ISA=AVX2: $(cat "$TMP/info2.err")"
fi

# bench gemm: a row per size, positive rates; bf16 measured where oneDNN dispatches to it
"$LK" bench gemm --sizes 64,256 --min-time 0.05 --csv "$TMP/gemm.csv" >"$TMP/gemm.txt"
cat "$TMP/gemm.txt"
/usr/bin/python3 - "$TMP/gemm.txt" "$TMP/gemm.csv" "$line" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip() and not l.startswith("#")]
assert [int(r[1]) for r in rows] == [64, 256], rows
csv = open(sys.argv[2]).read().split()
assert csv[0] == "rank,n,fp32_gflops,bf16_gflops" and len(csv) == 3, csv
# the rates from the CSV's 3 decimals (the table's one shows 0.0 for a 64^3 product that a
# loaded machine slows below 0.05 GFLOP/s)
rates = [[float(v) for v in r.split(",")[2:]] for r in csv[1:]]
assert all(r[0] > 0 for r in rates), csv
bf16 = "avx512_core_bf16" in sys.argv[3] or "avx512_core_amx" in sys.argv[3]
assert all((r[1] > 0) == bf16 for r in rates), (bf16, csv)
PY
mpi -n 2 --oversubscribe bench gemm --sizes 64 --min-time 0.02 --threads 1 >"$TMP/gemm2.txt"
[[ $(grep -cE '^ +[01] +64 ' "$TMP/gemm2.txt") -eq 2 ]] || fail "2 ranks: expected a row each: $(cat "$TMP/gemm2.txt")"
expect_fail 2 "--sizes" -- "$LK" bench gemm --sizes 64,x
expect_fail 2 "outside 1..32768" -- "$LK" bench gemm --sizes 0
expect_fail 2 "unknown flag '--sise'" -- "$LK" bench gemm --sise 64

# training: model FLOPs against --peak-tflops (mfu = FLOP/s / peak, exactly) ...
common=(--model cnn --steps 12 --batch 32 --train-limit 800 --val-limit 100 --eval-every 0 --log-every 4
        --progress lines --threads 1)
"$LK" train "${common[@]}" --peak-tflops 0.5 --metrics "$TMP/m.jsonl" >"$TMP/train.txt"
grep -q "model FLOPs 0.02545 GFLOP per sample" "$TMP/train.txt" || fail "cnn's FLOPs per sample: $(grep FLOPs "$TMP/train.txt")"
grep -Eq "step 4/25 loss [0-9.]+ [0-9]+ samples/s [0-9.e+-]+ TFLOP/s mfu [0-9.]+" "$TMP/train.txt" ||
  fail "no TFLOP/s and mfu in the progress lines: $(cat "$TMP/train.txt")"
/usr/bin/python3 - "$TMP/m.jsonl" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
steps = [r for r in recs if "step" in r and "event" not in r]
s = [r for r in recs if r.get("event") == "summary"][-1]
assert all(r["mfu"] > 0 and abs(r["mfu"] - r["model_flops_per_s"] / 0.5e12) < 1e-5 * r["mfu"] for r in steps), steps  # (6 digits)
assert abs(s["model_flops_per_sample"] - 25446912) < 100, s  # 3 x (conv 451584 + 7225344 + linear 802816 + 2560), 6 digits
assert abs(s["model_flops_per_s"] - s["model_flops_per_sample"] * s["samples_per_s"]) < 1e-3 * s["model_flops_per_s"], s
assert s["peak_flops"] == 0.5e12 and s["peak_source"] == "--peak-tflops 0.5", s
assert abs(s["mfu"] - s["model_flops_per_s"] / s["peak_flops"]) < 1e-5 * s["mfu"], s
PY
# ... or measured at start-up on each rank's threads, summed over the ranks
mpi -n 2 --oversubscribe train "${common[@]}" --metrics "$TMP/m2.jsonl" >"$TMP/train2.txt"
grep -q "measured: 2048^3 float32 products on cpu, 1 thread), summed over the ranks" "$TMP/train2.txt" ||
  fail "2 ranks: no measured peak line: $(grep peak "$TMP/train2.txt")"
[[ $(json_field "$TMP/m2.jsonl" summary world) == 2 ]] || fail "summary world"
/usr/bin/python3 -c "import sys; p=float(sys.argv[1]); sys.exit(0 if 1e9 < p < 1e14 else 1)" \
  "$(json_field "$TMP/m2.jsonl" summary peak_flops)" || fail "implausible measured peak"
expect_fail 2 "--peak-tflops" -- "$LK" train --model cnn --peak-tflops 0

# the GPT-2 presets keep GPT-2's shape; a gpt2 step on token shards (short context)
/usr/bin/python3 - "$TMP" <<'PY'
import random, struct, sys
random.seed(1)
for name, n in (("gpt2_train_000000.bin", 4000), ("gpt2_val_000000.bin", 600)):
    with open(f"{sys.argv[1]}/{name}", "wb") as f:
        f.write(struct.pack("<256i", 20240520, 1, n, *([0] * 253)))
        f.write(struct.pack("<%dH" % n, *[random.randrange(50257) for _ in range(n)]))
PY
data="tokens:$TMP/gpt2_*.bin"
expect_fail 2 "--dim 512: model gpt2 has 768" -- "$LK" train --model gpt2 --data "$data" --dim 512
expect_fail 2 "context is at most 1024" -- "$LK" train --model gpt2 --data "$data" --ctx 2048
expect_fail 2 "--decay: expected all or matrices" -- "$LK" train --model gpt2 --data "$data" --decay some
expect_fail 2 "--gelu: expected erf or tanh" -- "$LK" train --model gpt --data "$data" --gelu fast
"$LK" train --model gpt2 --data "$data" --ctx 16 --batch 2 --steps 2 --optim adamw --val-limit 4 \
  --peak-tflops 1 --save "$TMP/g2" --metrics "$TMP/g2.jsonl" >"$TMP/g2.txt"
grep -q "total 123665664 trainable parameters" "$TMP/g2.txt" || fail "gpt2 with ctx 16: $(grep total "$TMP/g2.txt")"
grep -Eq "\"decay\":\s*\"matrices\"" "$TMP/g2/config.json" || fail "the checkpoint does not record --decay matrices"
grep -Eq "\"gelu\":\s*\"tanh\"" "$TMP/g2/config.json" || fail "the checkpoint does not record the tanh GELU"
[[ -n $(json_field "$TMP/g2.jsonl" summary tokens_per_s) ]] || fail "no tokens_per_s in the summary"
# its checkpoint holds GPT-2's [50257, 768] (not the padded 50304 rows) and evaluates
/usr/bin/python3 - "$TMP/g2/model.safetensors" <<'PY'
import json, struct, sys
f = open(sys.argv[1], "rb")
h = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
assert h["0.weight"]["shape"] == [50257, 768], h["0.weight"]
PY
"$LK" eval --checkpoint "$TMP/g2" --batch 2 >"$TMP/g2eval.txt" || fail "eval of the gpt2 checkpoint"
grep -q "loss" "$TMP/g2eval.txt" || fail "eval printed no loss: $(cat "$TMP/g2eval.txt")"
expect_fail 2 "trained with --decay matrices, not all" -- \
  "$LK" train --model gpt2 --data "$data" --ctx 16 --batch 2 --steps 3 --optim adamw --decay all --resume "$TMP/g2"
echo PASS
