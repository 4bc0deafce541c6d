#!/usr/bin/env bash
# One fuzz target's campaign: the seed corpus (seeds.py) copied into a fresh working
# corpus, then libFuzzer for SECONDS. A crash, leak, sanitizer report or timeout fails it
# and leaves the input under DIR/NAME/ (crash-*, leak-*, timeout-*) with the log.
# With RUNS, the walk is fixed: random seed 1, RUNS mutations (SECONDS only caps it).
#
#   tests/fuzz/campaign.sh FUZZER NAME SECONDS DIR [RUNS]
set -euo pipefail
fuzzer=$1 name=$2 seconds=$3 dir=$4 runs=${5:-}
walk=()
[[ -n $runs ]] && walk=(-seed=1 -runs="$runs")
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
work=$dir/$name
rm -rf "$work"
mkdir -p "$work/corpus" "$work/seeds"
/usr/bin/python3 "$here/seeds.py" "$dir/seeds-all" >/dev/null
cp "$dir/seeds-all/$name/"* "$work/seeds/"
# (-rss_limit_mb: a reader that believes a header's size must still not take the machine)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
set +e
"$fuzzer" "${walk[@]}" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2560 -malloc_limit_mb=2048 -max_len=65536 \
  -artifact_prefix="$work/" -print_final_stats=1 "$work/corpus" "$work/seeds" >"$work/log" 2>&1
rc=$?
set -e
done_runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/log" | grep -o '[0-9]*$' || echo 0)
echo "fuzz_$name: $done_runs executions (at most ${runs:-unbounded} runs, ${seconds} s), exit $rc"
if [[ $rc -ne 0 ]]; then
  tail -40 "$work/log"
  ls "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-* 2>/dev/null
  exit 1
fi
