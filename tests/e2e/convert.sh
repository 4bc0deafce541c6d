#!/usr/bin/env bash
# lockstep convert, llm.c's GPT-2 checkpoints (version 3, float32) in and out and Hugging
# Face's in: a random
# GPT-2 written by a PyTorch script from llm.c's layout (tests/e2e/llmc_gpt2.py) converts
# into lockstep, which computes the loss the script's own GPT-2 computes on the same
# tokens, and so does the same model in Hugging Face's layout (its directory or file); a
# gpt lockstep trained (tanh GELU) goes out to llm.c's format, computes the same
# loss in the script, comes back and goes out again byte for byte; the converted model
# fine-tunes (--init-from); llm.c's bf16 files (version 5) come in as their values in
# float32; bad files and models llm.c cannot hold are refused.
source "$(dirname "$0")/common.bash"
py=/usr/bin/python3
$py -c "import torch" 2>/dev/null || { echo "SKIP: PyTorch (python3-torch) is not installed"; exit 0; }
ref=$HERE/tests/e2e/llmc_gpt2.py
# token shards (GPT-2's vocabulary) to measure on
$py - "$TMP" <<'PY'
import struct, sys
for name, n, a in (("toks_train.bin", 4000, 7919), ("toks_val.bin", 1000, 104729)):
    toks = [(i * a + (i * i) % 977) % 50257 for i in range(n)]
    open(f"{sys.argv[1]}/{name}", "wb").write(struct.pack("<256i", 20240520, 1, n, *[0] * 253) + struct.pack(f"<{n}H", *toks))
PY
close() { # close A B: |A - B| <= 1e-4 x |B|
  $py -c "import sys; a, b = $1, $2; sys.exit(0 if abs(a - b) <= 1e-4 * abs(b) else 1)"
}
evalloss() { "$LK" eval --checkpoint "$1" --data "tokens:$TMP/toks_*.bin" --threads 1 | grep -o 'loss [0-9.]*' | cut -d' ' -f2; }

# in: llm.c's layout written by PyTorch, read by lockstep
$py "$ref" write "$TMP/random.bin" 2 4 64 32 50257 3
"$LK" convert "$TMP/random.bin" "$TMP/in" || fail "convert in"
want=$($py "$ref" loss "$TMP/random.bin" "$TMP/toks_val.bin")
got=$(evalloss "$TMP/in")
echo "a random llm.c GPT-2: loss $got in lockstep, $want in PyTorch"
close "$got" "$want" || fail "the converted model's loss $got is not PyTorch's $want"
"$LK" convert "$TMP/in" "$TMP/random_back.bin" >/dev/null
cmp -s "$TMP/random.bin" "$TMP/random_back.bin" || fail "llm.c -> lockstep -> llm.c is not byte for byte"
echo "ok: llm.c -> lockstep -> llm.c byte for byte"

# Hugging Face's layout of the same weights (transformer.h.N..., Conv1D transposed): the
# same lockstep checkpoint; the heads from its config.json, from --heads, or refused
$py "$ref" hf "$TMP/random.bin" "$TMP/hf.safetensors"
"$LK" convert "$TMP/hf.safetensors" "$TMP/from_hf" --heads 4 >/dev/null || fail "convert from Hugging Face"
cmp -s "$TMP/in/model.safetensors" "$TMP/from_hf/model.safetensors" ||
  fail "Hugging Face's layout and llm.c's of the same weights give other checkpoints"
mkdir -p "$TMP/hfdir"
cp "$TMP/hf.safetensors" "$TMP/hfdir/model.safetensors"
printf '{"model_type": "gpt2", "n_head": 4, "n_layer": 2, "n_embd": 64}\n' >"$TMP/hfdir/config.json"
"$LK" convert "$TMP/hfdir" "$TMP/from_hfdir" >/dev/null || fail "convert from a Hugging Face directory"
cmp -s "$TMP/in/model.safetensors" "$TMP/from_hfdir/model.safetensors" || fail "the Hugging Face directory"
expect_fail 2 "give its heads (--heads N" -- "$LK" convert "$TMP/hf.safetensors" "$TMP/x"
echo "ok: Hugging Face's layout converts to the same checkpoint as llm.c's"
# llm.c's bf16 checkpoints (version 5): widened exactly, the checkpoint of the same values in float32
$py "$ref" bf16 "$TMP/random.bin" "$TMP/v5.bin" "$TMP/v5as3.bin"
"$LK" convert "$TMP/v5.bin" "$TMP/from5" >/dev/null || fail "convert a version-5 file"
"$LK" convert "$TMP/v5as3.bin" "$TMP/from3" >/dev/null
cmp -s "$TMP/from5/model.safetensors" "$TMP/from3/model.safetensors" || fail "a bf16 file is not widened exactly"
echo "ok: llm.c's bf16 file gives the checkpoint of its values in float32"

# out: a gpt trained here, read by the PyTorch script
"$LK" train --model gpt --data "tokens:$TMP/toks_*.bin" --layers 2 --heads 2 --dim 32 --ctx 32 --gelu tanh --batch 8 \
  --steps 30 --optim adamw --lr 3e-3 --threads 1 --quiet --save "$TMP/trained"
"$LK" convert "$TMP/trained" "$TMP/trained.bin" >/dev/null
want=$(evalloss "$TMP/trained")
got=$($py "$ref" loss "$TMP/trained.bin" "$TMP/toks_val.bin")
echo "a gpt trained here: loss $want in lockstep, $got in PyTorch from its llm.c file"
close "$got" "$want" || fail "the exported model's loss $got in PyTorch is not lockstep's $want"
"$LK" convert "$TMP/trained.bin" "$TMP/back" >/dev/null
"$LK" convert "$TMP/back" "$TMP/trained2.bin" >/dev/null
cmp -s "$TMP/trained.bin" "$TMP/trained2.bin" || fail "lockstep -> llm.c -> lockstep -> llm.c is not byte for byte"
"$LK" train --model gpt --data "tokens:$TMP/toks_*.bin" --layers 2 --heads 4 --dim 64 --ctx 32 --gelu tanh --batch 8 \
  --steps 5 --threads 1 --quiet --init-from "$TMP/in" || fail "fine-tuning a converted model"

# refused
head -c 5000 "$TMP/random.bin" >"$TMP/cut.bin"
expect_fail 1 "(truncated)" -- "$LK" convert "$TMP/cut.bin" "$TMP/x"
$py -c "import sys; b = bytearray(open(sys.argv[1], 'rb').read()); b[4] = 4; open(sys.argv[2], 'wb').write(b)" \
  "$TMP/random.bin" "$TMP/v4.bin"
expect_fail 1 "version 4; llm.c's checkpoints are version 3 (float32) or 5 (bf16)" -- "$LK" convert "$TMP/v4.bin" "$TMP/x"
expect_fail 1 "not an llm.c GPT-2 checkpoint" -- "$LK" convert "$TMP/toks_val.bin" "$TMP/x"
"$LK" train --model gpt --data "tokens:$TMP/toks_*.bin" --layers 1 --heads 2 --dim 16 --ctx 16 --batch 4 --steps 1 \
  --threads 1 --quiet --save "$TMP/erf"
expect_fail 2 "uses the exact (erf) GELU" -- "$LK" convert "$TMP/erf" "$TMP/x.bin"
"$LK" train --model mlp --steps 1 --threads 1 --quiet --val-limit 10 --save "$TMP/mlp"
expect_fail 2 "llm.c's format is GPT-2's" -- "$LK" convert "$TMP/mlp" "$TMP/x.bin"
expect_fail 2 "convert takes IN and OUT" -- "$LK" convert "$TMP/in"
echo PASS
