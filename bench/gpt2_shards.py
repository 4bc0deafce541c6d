#!/usr/bin/env python3
"""Writes llm.c token shards (GPT-2's vocabulary, 50257) from an English text, for the
GPT-2 benchmark where no tokenized corpus is at hand.

    bench/gpt2_shards.py TEXT OUTDIR [--tokens N]

Not GPT-2's BPE (lockstep has no tokenizer yet): every word and every punctuation mark
becomes one id, 257 + crc32(it) mod 50000, so the ids follow the text's word frequencies
(learnable, as real tokens are) and cover the vocabulary. The last tenth goes to
OUTDIR/gpt2_val_000000.bin, the rest to OUTDIR/gpt2_train_000000.bin: a header of 256
int32 (magic 20240520, version 1, the token count), then uint16 tokens, as llm.c writes
them."""
import argparse
import os
import re
import struct
import zlib


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("text")
    ap.add_argument("outdir")
    ap.add_argument("--tokens", type=int, default=0, help="at most this many (0: all)")
    a = ap.parse_args()
    words = re.findall(r"[A-Za-z0-9']+|[^\sA-Za-z0-9']", open(a.text, encoding="utf-8", errors="replace").read())
    ids = [257 + zlib.crc32(w.encode()) % 50000 for w in words]
    if a.tokens:
        ids = ids[: a.tokens]
    if len(ids) < 2000:
        raise SystemExit(f"{a.text}: only {len(ids)} tokens")
    os.makedirs(a.outdir, exist_ok=True)
    cut = len(ids) * 9 // 10
    for name, part in (("gpt2_train_000000.bin", ids[:cut]), ("gpt2_val_000000.bin", ids[cut:])):
        with open(os.path.join(a.outdir, name), "wb") as f:
            f.write(struct.pack("<256i", 20240520, 1, len(part), *([0] * 253)))
            f.write(struct.pack("<%dH" % len(part), *part))
    print(f"{a.outdir}: {cut} training and {len(ids) - cut} validation tokens")


if __name__ == "__main__":
    main()
