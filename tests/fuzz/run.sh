#!/usr/bin/env bash
# Long fuzzing campaigns: builds the libFuzzer targets (clang, build-fuzz/) and runs each
# for SECONDS (default 600) from its seed corpus, keeping each working corpus under
# build-fuzz/campaigns/NAME (crash-*, leak-*, timeout-* inputs and the log there).
#
#   tests/fuzz/run.sh [--seconds S] [TARGET...]     targets: idx cifar shard text
#                                                    safetensors config image bpe llmc
#                                                    (default all)
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo_root"
seconds=600
targets=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --seconds) seconds=$2; shift 2 ;;
    -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "run.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
((${#targets[@]})) || targets=(idx cifar shard text safetensors config image bpe llmc)
launch/install-deps.sh --with-torch
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DLK_FUZZ=ON -DLK_TESTS=OFF -DLK_CUDA=OFF >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target fuzz_all
failed=0
for t in "${targets[@]}"; do
  [[ -x build-fuzz/tests/fuzz/fuzz_$t ]] || { echo "run.sh: no target '$t'" >&2; exit 2; }
  tests/fuzz/campaign.sh "build-fuzz/tests/fuzz/fuzz_$t" "$t" "$seconds" build-fuzz/campaigns || failed=1
done
exit $failed
