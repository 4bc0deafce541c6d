#!/usr/bin/env bash
# The generative families end to end: train briefly, save, evaluate and sample.
#   vae, gan, autoencoder -> PNG grids that parse (size, chunks), eval lines
#   gpt on text -> sampled text that continues the prompt, reproducible by --seed
#   gpt on llm.c token shards -> token ids out of "ids:" prompts
# and the errors of `sample` (a classifier, no --out, a bad prompt).
source "$(dirname "$0")/common.bash"
[[ -d /usr/share/datasets/fashion-mnist ]] || { echo "SKIP: dataset-fashion-mnist not installed"; exit 0; }
quick=(--steps 30 --val-limit 200 --threads 1 --quiet --optim adam --lr 1e-3)

png_size() { # FILE -> "W H", failing on anything that is not a well-formed PNG
  /usr/bin/python3 - "$1" <<'PY'
import struct, sys, zlib
raw = open(sys.argv[1], "rb").read()
assert raw[:8] == b"\x89PNG\r\n\x1a\n", "signature"
at, w, h, data = 8, 0, 0, b""
while at < len(raw):
    n, = struct.unpack(">I", raw[at:at + 4]); kind = raw[at + 4:at + 8]; body = raw[at + 8:at + 8 + n]
    assert struct.unpack(">I", raw[at + 8 + n:at + 12 + n])[0] == zlib.crc32(kind + body), kind
    if kind == b"IHDR": w, h = struct.unpack(">II", body[:8])
    if kind == b"IDAT": data += body
    at += 12 + n
assert len(zlib.decompress(data)) == h * (w + 1)
print(w, h)
PY
}

for model in vae autoencoder gan; do
  "$LK" train --model $model "${quick[@]}" --save "$TMP/$model"
  out=$("$LK" eval --checkpoint "$TMP/$model" --threads 1)
  echo "$model eval: $out"
  if [[ $model == gan ]]; then grep -q "test accuracy" <<<"$out" || fail "gan eval: $out"
  else grep -q "^test loss" <<<"$out" || fail "$model eval: $out"; fi
  "$LK" sample --checkpoint "$TMP/$model" --out "$TMP/$model.png" --count 20 --threads 1
  size=$(png_size "$TMP/$model.png")
  echo "$model sample: $size"
  # 20 images of 28x28 with 2-pixel gaps: 5 columns (vae, gan); the autoencoder: 16
  # columns, a row of inputs over a row of reconstructions, twice
  want=$([[ $model == autoencoder ]] && echo "482 122" || echo "152 122")
  [[ $size == "$want" ]] || fail "$model sample is $size, expected $want"
done

# gpt on text
text=/usr/share/common-licenses/GPL-3
g=(--model gpt --data text:$text --layers 1 --heads 2 --dim 32 --ctx 32 --batch 8)
"$LK" train "${g[@]}" --steps 40 --optim adamw --lr 3e-3 --threads 1 --quiet --val-limit 20 --save "$TMP/gpt"
a=$("$LK" sample --checkpoint "$TMP/gpt" --prompt "The GNU " --tokens 40 --seed 3 --threads 1)
b=$("$LK" sample --checkpoint "$TMP/gpt" --prompt "The GNU " --tokens 40 --seed 3 --threads 1)
c=$("$LK" sample --checkpoint "$TMP/gpt" --prompt "The GNU " --tokens 40 --seed 4 --threads 1)
echo "gpt sample: $a"
[[ $a == "The GNU "* ]] || fail "the sample does not continue the prompt: $a"
[[ $a == "$b" ]] || fail "the same --seed sampled different text"
[[ $a != "$c" ]] || fail "another --seed sampled the same text"
n=$(printf '%s' "$a" | wc -c)
(( n >= 8 + 30 )) || fail "expected the prompt and 40 bytes, got $n bytes" # newlines trimmed by $()
g0=$("$LK" sample --checkpoint "$TMP/gpt" --prompt "The GNU " --tokens 20 --temperature 0 --seed 1 --threads 1)
g1=$("$LK" sample --checkpoint "$TMP/gpt" --prompt "The GNU " --tokens 20 --temperature 0 --seed 2 --threads 1)
[[ $g0 == "$g1" ]] || fail "greedy sampling depends on the seed"

# gpt on llm.c token shards (GPT-2's vocabulary)
/usr/bin/python3 - "$TMP" <<'PY'
import struct, sys
for name, n in (("shard_train_000.bin", 3000), ("shard_val_000.bin", 600)):
    toks = [(i * 7919) % 50257 for i in range(n)]
    hdr = [20240520, 1, n] + [0] * 253
    open(f"{sys.argv[1]}/{name}", "wb").write(struct.pack("<256i", *hdr) + struct.pack(f"<{n}H", *toks))
PY
t=(--model gpt --data "tokens:$TMP/shard_*.bin" --layers 1 --heads 2 --dim 16 --ctx 16 --batch 4)
"$LK" train "${t[@]}" --steps 10 --optim adamw --lr 1e-3 --threads 1 --quiet --save "$TMP/gpt2"
ids=$("$LK" sample --checkpoint "$TMP/gpt2" --prompt "ids:50256,11,13" --tokens 5 --threads 1)
echo "gpt (tokens) sample: $ids"
[[ $ids =~ ^[0-9]+( [0-9]+){4}$ ]] || fail "expected 5 token ids, got '$ids'"

# errors
"$LK" train --model mlp --steps 2 --val-limit 10 --threads 1 --quiet --save "$TMP/mlp"
expect_fail 2 "generates nothing" -- "$LK" sample --checkpoint "$TMP/mlp"
expect_fail 2 "--out FILE.png is required" -- "$LK" sample --checkpoint "$TMP/vae"
expect_fail 2 "ids:1,2,3" -- "$LK" sample --checkpoint "$TMP/gpt2" --prompt "hello" --tokenizer "$TMP/nowhere"
expect_fail 2 "not a token id below 50257" -- "$LK" sample --checkpoint "$TMP/gpt2" --prompt "ids:1,99999"
expect_fail 2 "not an image classifier" -- "$LK" predict --checkpoint "$TMP/vae" \
  --input /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz --limit 2
expect_fail 2 "--checkpoint DIR is required" -- "$LK" sample --out x.png
expect_fail 2 "unknown flag" -- "$LK" sample --checkpoint "$TMP/vae" --bogus 1
expect_fail 1 "config.json" -- "$LK" sample --checkpoint "$TMP/nothing-here" --out x.png
expect_fail 2 "--accum" -- "$LK" train --model gan --steps 2 --accum 2 --threads 1 --quiet
echo PASS
