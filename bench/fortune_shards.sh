#!/usr/bin/env bash
# llm.c token shards (GPT-2's vocabulary) made from Debian's fortunes, for the GPT-2
# benchmarks where no tokenized corpus is at hand: bench/fortunes.sh, then
# bench/gpt2_shards.py (see there: one id per word, not GPT-2's BPE).
#
#   bench/fortune_shards.sh OUTDIR        writes OUTDIR/gpt2_{train,val}_000000.bin; prints OUTDIR
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:?usage: bench/fortune_shards.sh OUTDIR}
corpus=$("$repo_root/bench/fortunes.sh" "$out/fortunes.txt")
"${LK_PYTHON:-/usr/bin/python3}" "$repo_root/bench/gpt2_shards.py" "$corpus" "$out" >&2
rm -f "$corpus"
echo "$out"
