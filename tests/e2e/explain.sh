#!/usr/bin/env bash
# Attributions (lockstep explain). A cnn trained briefly on Fashion-MNIST: integrated
# gradients on 8 test images dealt to 2 ranks, every completeness gap below 1% (64 points, an
# image above it run again with twice the points: --max-gap; with --max-gap 0 each stays at 64
# and says so); a PNG (RGB,
# the image, the map over it and alone) and a JSON (784 attributions, their sum, the scores)
# per image; saliency and occlusion run too; a gpt's next token attributed to its prompt's
# tokens (a line each, completeness gap below 1%); bad input refused, naming it.
source "$(dirname "$0")/common.bash"
[[ -d /usr/share/datasets/fashion-mnist ]] || { echo "SKIP: dataset-fashion-mnist not installed"; exit 0; }
images=/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
"$LK" train --model cnn --steps 200 --batch 64 --lr 0.05 --threads 1 --val-limit 500 --quiet --save "$TMP/cnn" ||
  fail "training the cnn"
mpi -n 2 --oversubscribe "$LK" explain --checkpoint "$TMP/cnn" --input "$images" --limit 8 --method ig \
  --threads 1 --out "$TMP/ig" >"$TMP/ig.log" 2>&1 || fail "explain ig on 2 ranks: $(tail -5 "$TMP/ig.log")"
cat "$TMP/ig.log"
grep -q "8 images on 2 ranks: completeness gap mean" "$TMP/ig.log" || fail "no summary over the ranks"
largest=$(grep -o 'largest [0-9.]*%' "$TMP/ig.log" | grep -o '[0-9.]*')
/usr/bin/python3 -c "import sys; sys.exit(0 if $largest < 1.0 else 1)" || fail "a completeness gap of $largest%"
"$LK" explain --checkpoint "$TMP/cnn" --input "$images" --limit 8 --method ig --max-gap 0 --threads 1 \
  --out "$TMP/ig64" >"$TMP/ig64.log" 2>&1 || fail "explain --max-gap 0"
[[ $(grep -c "over 64 steps from black" "$TMP/ig64.log") == 8 ]] || fail "--max-gap 0 refined: $(cat "$TMP/ig64.log")"
/usr/bin/python3 - "$TMP/ig" <<'PY' || fail "the maps"
import glob, json, struct, sys, zlib
pngs, jsons = sorted(glob.glob(sys.argv[1] + "/*.png")), sorted(glob.glob(sys.argv[1] + "/*.json"))
assert len(pngs) == len(jsons) == 8, (len(pngs), len(jsons))
for p in pngs:
    b = open(p, "rb").read()
    assert b[:8] == b"\x89PNG\r\n\x1a\n"
    w, h, depth, ctype = struct.unpack(">IIBB", b[16:26])
    assert depth == 8 and ctype == 2 and h == 28 * 4 + 4 and w == 3 * 28 * 4 + 8, (w, h, depth, ctype)
    at, idat = 8, b""
    while at < len(b):  # the chunks, their CRCs
        n, kind = struct.unpack(">I4s", b[at:at + 8])
        assert zlib.crc32(b[at + 4:at + 8 + n]) == struct.unpack(">I", b[at + 8 + n:at + 12 + n])[0]
        idat += b[at + 8:at + 8 + n] if kind == b"IDAT" else b""
        at += 12 + n
    assert len(zlib.decompress(idat)) == h * (3 * w + 1)
for p in jsons:
    j = json.load(open(p))
    assert j["method"] == "ig" and j["steps"] in (64, 128, 256, 512, 1024) and len(j["attributions"]) == 784 and j["shape"] == [1, 28, 28]
    change = j["score"] - j["baseline_score"]
    assert abs(sum(j["attributions"]) - change) < 0.01 * abs(change), p
print("8 PNGs (RGB 344x116, CRCs and pixels) and JSONs (784 attributions summing to f(x) - f(x'))")
PY
for m in saliency occlusion; do
  "$LK" explain --checkpoint "$TMP/cnn" --input "$images" --limit 2 --method $m --baseline blur --threads 1 \
    --out "$TMP/$m" >"$TMP/$m.log" 2>&1 || fail "explain $m: $(tail -3 "$TMP/$m.log")"
  [[ -f $TMP/$m/explain-00001.png && -f $TMP/$m/explain-00001.json ]] || fail "explain $m wrote no maps"
done
expect_fail 2 "--method: expected ig, saliency or occlusion" -- "$LK" explain --checkpoint "$TMP/cnn" --input "$images" \
  --out "$TMP/x" --method lime
expect_fail 2 "--out DIR is required" -- "$LK" explain --checkpoint "$TMP/cnn" --input "$images"
expect_fail 2 "--target 10: checkpoint $TMP/cnn has 10 classes" -- "$LK" explain --checkpoint "$TMP/cnn" \
  --input "$images" --out "$TMP/x" --target 10
expect_fail 1 "$TMP/none.idx" -- "$LK" explain --checkpoint "$TMP/cnn" --input "$TMP/none.idx" --out "$TMP/x"
# a language model: the next token's logit attributed to the prompt's tokens, as text
"$LK" train --model gpt --data text:/usr/share/common-licenses/GPL-3 --layers 2 --heads 2 --dim 64 --ctx 64 \
  --steps 150 --batch 16 --lr 3e-3 --optim adamw --threads 1 --quiet --save "$TMP/gpt" || fail "a gpt checkpoint"
"$LK" explain --checkpoint "$TMP/gpt" --prompt "GNU General Public Lic" --threads 1 --out "$TMP/tok" \
  >"$TMP/tok.log" 2>&1 || fail "explain --prompt: $(tail -3 "$TMP/tok.log")"
cat "$TMP/tok.log"
[[ $(grep -c "%  '" "$TMP/tok.log") == 22 ]] || fail "not one line per prompt token (22 bytes)"
gap=$(grep -o 'completeness gap [0-9.]*' "$TMP/tok.log" | grep -o '[0-9.]*$')
/usr/bin/python3 -c "import sys; sys.exit(0 if $gap < 1.0 else 1)" || fail "the prompt's completeness gap is $gap%"
[[ -f $TMP/tok/explain-tokens.json ]] || fail "no explain-tokens.json"
expect_fail 2 "a language model explains --prompt TEXT, not --input" -- "$LK" explain --checkpoint "$TMP/gpt" \
  --input "$images" --out "$TMP/x"
expect_fail 2 "--prompt is for language models" -- "$LK" explain --checkpoint "$TMP/cnn" --prompt hi
echo PASS
