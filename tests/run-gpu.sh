#!/usr/bin/env bash
# The checks that need an NVIDIA GPU, in one call on an air-gapped GPU node: no network,
# no package manager. What the node lacks (Open MPI, hwloc, cJSON, PCRE2, cmocka, oneDNN,
# pkg-config, the Fashion-MNIST files) comes from the kit of Debian packages that
# tests/gpu-kit.sh gathers on a networked machine (.gpu-kit/, carried to the node):
# every .deb is unpacked with `dpkg -x` into a prefix (/tmp/lk-kit), never into /.
# Without a kit the system's packages are used (a Debian machine with them installed).
#
#   tests/run-gpu.sh [--build-only] [--kit DIR] [--prefix DIR] [--budget SECONDS]
#
#   --build-only   (or LK_GPU_DRY=1) no GPU: the kit, the build (CUDA compiled when nvcc
#                  is there) and the same checks on the CPU: MPI collectives with 1 and
#                  2 ranks, 2 ranks = 1 rank, a short cnn run, lockstep info
#   --budget S     the whole run's time (default 480 s): each step gets its own timeout,
#                  cut to what is left; a step that no longer fits is skipped
#
# Environment:
#   OUT               where the report goes (default runs/gpu/)
#   LK_CUDA_ARCHS     default: the compute capability nvidia-smi reports, else 90
#   LK_GPU_BUILD      the build folder (default build-gpu)
#   LK_JOBS           build jobs (default: the cores);  LK_BUILD_TIMEOUT (default 300 s)
#   LK_BENCH_STEPS    bench/gpu.sh's steps (default 300)
#   LK_PYTHON         the python3 with PyTorch (default: the first that imports torch)
#   LK_GPU_KIT, LK_KIT_PREFIX, LK_GPU_BUDGET, LK_GPU_DRY: as the options
#
# Steps, in order, each timed; a failing step is recorded and the run goes on:
#  kit        unpack and check the kit: mpicc -showme, mpirun, pkg-config, ldd
#  build      configure (Release, -DLK_CUDA=ON, LK_CUDA_ARCHS) and build with the tests
#  gpu        nvidia-smi;  info: `lockstep info`
#  parity     CPU/CUDA parity of every backend entry (tests/unit/test_cuda_parity.c)
#  collectives  tests/mpi/test_collectives: a world of 1 (NCCL with one rank must run,
#             not skip) and 2 ranks under mpirun
#  mpi2       2 ranks sharing GPU 0 (--gpu-comm mpi, staged through pinned memory) reach
#             the parameters of 1 rank with twice the batch (max relative difference
#             <= 1e-4: cuDNN sums in other orders for other batch sizes)
#  zero       2 ranks sharing GPU 0 (--gpu-comm mpi) with --zero 1 and 2 reach --zero 0's
#             parameters (gpt on text, clipping and accumulation: <= 1e-5; ZeRO's
#             device paths: the staged reduce-scatter and all-gather, ZeRO-2's staging
#             and slice on the GPU), and one rank's --recompute block gives none's
#             weights bit for bit; the summaries' peak GPU memory against the plan
#  precision  --precision bf16 on the GPU (cuBLAS bf16 products, cuDNN's bf16 convolutions):
#             the small gpt's 6 losses within 1e-2 of the CPU's bf16 run, cnn for 200 steps
#             in fp32 and bf16 (samples/s of each); 2 ranks sharing GPU 0 with --grad-dtype
#             bf16 (the staged bf16 sums) give --zero 1's parameters bit for bit
#  explain    integrated gradients of a briefly trained cnn-bn on 4 images on the GPU against
#             the CPU's (max relative difference <= 1e-3; completeness gaps < 1%)
#  private    DP-SGD on the GPU against the CPU: `mlp` (per-sample norms from the CUDA
#             ghost_norm kernel) and `cnn` (a backward per sample), 8 steps, the weights within
#             1e-4 relative (cuDNN and oneDNN sum in other orders); FedAvg on 2 ranks sharing
#             GPU 0 (--gpu-comm mpi, --partition classes:5, 2 rounds) against the CPU's
#  cnn        `cnn` on the GPU with the CPU's recipe (3 epochs, momentum, lr 0.05,
#             cosine, batch 64, seed 0) reaches the README's bar: test accuracy >= 0.905
#  bench-gpu  bench/gpu.sh: lockstep against PyTorch eager and torch.compile
#  gpt2       bench/gpt2.sh --device cuda (step ms, tokens/s, FLOP/s, MFU), if it exists
#
# Everything measured goes to $OUT/gpu-report.md (a table of the steps, then the
# details: nvidia-smi, lockstep info, the benchmark tables, the end of each failed
# step's output); the whole output to $OUT/gpu-log.txt. The last line printed is
# "N passed, N failed, N skipped"; the exit status is non-zero if any step failed.
set -uo pipefail
self=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
repo_root=$(cd "$(dirname "$self")/.." && pwd)
cd "$repo_root" || exit 1

# ---------------------------------------------------------------- helpers for steps
note() { [[ -z $* ]] || printf '%s\n' "$*" >>"$LK_WORK/$LK_STEP.note"; }   # the table's "measured" cell
detail() { cat >>"$LK_WORK/$LK_STEP.md"; }                     # markdown for the details
py() { "$LK_PY" "$@"; }
lk() { "$LK_BIN" "$@"; }
json_field() {   # json_field FILE KEY: KEY of the last JSON line of FILE
  py -c "import json,sys; print(json.loads(open(sys.argv[1]).read().splitlines()[-1])[sys.argv[2]])" "$1" "$2"
}
need_build() { [[ -x $LK_BIN ]] || { note "no build"; exit 78; }; }
rel_diff() {   # max relative difference between the tensors of two safetensors files
  py - "$1" "$2" <<'PY'
import json, struct, sys
def load(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
    return {k: struct.unpack(f"<{(v['data_offsets'][1] - v['data_offsets'][0]) // 4}f",
                             b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]])
            for k, v in h.items() if k != "__metadata__"}
a, b = load(sys.argv[1]), load(sys.argv[2])
print(max(max(abs(x - y) for x, y in zip(a[k], b[k])) / max(1e-12, max(abs(x) for x in a[k])) for k in a))
PY
}
le() { py -c "import sys; sys.exit(0 if float(sys.argv[1]) <= float(sys.argv[2]) else 1)" "$1" "$2"; }

# ---------------------------------------------------------------- the steps
# Each runs as `run-gpu.sh --step NAME` under timeout; exit 0 passed, 77 skipped,
# 78 skipped because the build is missing, anything else failed.

step_build() {
  local gen=() jobs=${LK_JOBS:-$(nproc)} cuda=ON
  if command -v ninja >/dev/null; then gen=(-G Ninja); fi
  if [[ $LK_MODE == dry ]] && ! command -v nvcc >/dev/null && [[ ! -x /usr/local/cuda/bin/nvcc ]]; then
    cuda=AUTO
  fi
  echo "cmake: $(command -v cmake) ($(cmake --version | head -1)); generator: ${gen[1]:-Unix Makefiles}; jobs: $jobs"
  # the kit's headers under the multiarch folder (hwloc/autogen/config.h)
  [[ -n ${LK_KIT_CPATH:-} ]] && export CPATH=$LK_KIT_CPATH${CPATH:+:$CPATH}
  cmake -S . -B "$LK_BUILD" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DLK_CUDA=$cuda \
        -DLK_CUDA_ARCHS="$LK_CUDA_ARCHS" -DLK_TESTS=ON -DCMAKE_C_COMPILER_LAUNCHER= 2>&1 |
    tee "$LK_WORK/configure.txt" ||
    { note "configure failed"; return 1; }
  # the CUDA libraries linked (cudart, cuBLAS, cuDNN, NCCL) are found at run time
  # through the binaries' RUNPATH, not only through ld.so's cache (CMake leaves the
  # toolkit's folders out as implicit ones)
  local rp
  rp=$(sed -nE 's/^(CUDA_CUDART|CUDA_cublas_LIBRARY|LK_CUDNN_LIB|LK_NCCL_LIB):FILEPATH=(\/.*)/\2/p' \
         "$LK_BUILD/CMakeCache.txt" | xargs -r -n1 dirname | sort -u | paste -sd';')
  if [[ -n $rp ]]; then
    cmake -S . -B "$LK_BUILD" -DCMAKE_BUILD_RPATH="$rp" >/dev/null || { note "configure failed"; return 1; }
  fi
  note "$(grep -o 'CUDA backend: .*' "$LK_WORK/configure.txt" | head -1)"
  note "MPI: $(sed -n 's/^MPI_mpi_LIBRARY:FILEPATH=//p' "$LK_BUILD/CMakeCache.txt")"
  note "$jobs jobs"
  local rc=0
  build_targets "$jobs" "$LK_WORK/build.txt" || rc=$?
  [[ $rc -eq 0 ]] && return 0
  { echo "compiler errors:"; echo '```'; grep -E 'error|\*\*\*' "$LK_WORK/build.txt" | head -20; echo '```'; } | detail
  note "$([[ $rc -eq 1 ]] && echo "lockstep or a GPU test failed to build" || echo "lockstep and the GPU tests built; another target failed")"
  # another compiler than the one the project is kept clean with may warn where it did
  # not: build again with warnings not as errors, so that the GPU checks still run
  if grep -qE '\[-Werror|warnings being treated as errors' "$LK_WORK/build.txt"; then
    printf '#!/bin/sh\nexec "$@" -Wno-error\n' >"$LK_BUILD/no-werror"
    chmod +x "$LK_BUILD/no-werror"
    cmake -S . -B "$LK_BUILD" -DCMAKE_C_COMPILER_LAUNCHER="$LK_BUILD/no-werror" >/dev/null
    local rc2=0
    build_targets "$jobs" "$LK_WORK/build-no-werror.txt" || rc2=$?
    note "built again with -Wno-error: $([[ $rc2 -eq 0 ]] && echo "everything built" || echo "still failing ($rc2)")"
  fi
  return 1
}
build_targets() {   # build_targets JOBS LOG: 1 if lockstep or a GPU test failed, 2 if another
  # what the later steps run first, so that a broken target elsewhere stops none of them
  cmake --build "$LK_BUILD" -j"$1" --target lockstep test_cuda_parity test_collectives 2>&1 |
    tee "$2" || return 1
  cmake --build "$LK_BUILD" -j"$1" 2>&1 | tee -a "$2" || return 2
}

step_gpu() {
  [[ $LK_MODE == gpu ]] || { note "no GPU (--build-only)"; return 77; }
  local q
  q=$(nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version,clocks.max.sm \
        --format=csv,noheader) || { note "nvidia-smi failed"; return 1; }
  note "$q"
  { echo '```'; nvidia-smi; echo '```'; } | detail
}

step_info() {
  need_build
  local out
  out=$(lk info 2>&1); local rc=$?
  echo "$out"
  { echo '```'; echo "$out"; echo '```'; } | detail
  note "$(grep -E '^(cuda|nccl):' <<<"$out" | tr '\n' ' ')"
  return $rc
}

step_parity() {
  need_build
  local rc=0 out
  out=$("$LK_BUILD/tests/test_cuda_parity" 2>&1) || rc=$?
  echo "$out"
  local counts
  counts=$(grep -E '^\[  (PASSED|FAILED|SKIPPED) +\]' <<<"$out" | tr -s ' ' | tr '\n' ' ')
  [[ -z $counts ]] || note "$counts"
  if [[ $rc -eq 77 ]]; then
    note "skipped: $(grep -m1 -i 'skip\|no gpu\|driver' <<<"$out")"
    [[ $LK_MODE == dry ]] && return 77
    return 1   # a GPU was expected
  fi
  [[ $rc -eq 0 ]] || { grep -E '^\[  (FAILED|ERROR) |^FAIL: ' <<<"$out" | head -20 | sed 's/^/    /' | detail; return 1; }
}

step_collectives() {
  need_build
  local bin=$LK_BUILD/tests/test_collectives rc=0 out
  out=$(OMP_NUM_THREADS=1 "$bin" 2>&1) || rc=$?
  echo "$out"
  note "world of 1: exit $rc"
  if [[ $LK_MODE == gpu ]]; then
    if grep -q "OK \] test_nccl_one_rank" <<<"$out"; then note "NCCL with one rank: ran"; else
      note "NCCL with one rank: $(grep -E 'nccl|skipped|FAIL' <<<"$out" | head -2 | tr '\n' ' ')"; rc=1; fi
  fi
  local rc2=0
  OMP_NUM_THREADS=1 launch/mpirun.sh -n 2 --oversubscribe "$bin" || rc2=$?
  note "2 ranks under mpirun: exit $rc2"
  [[ $rc -eq 0 && $rc2 -eq 0 ]]
}

step_mpi2() {
  need_build
  local dev=(--device cuda:0) comm=(--gpu-comm mpi) tmp=$LK_WORK/mpi2 t0 t1 t2 d
  [[ $LK_MODE == gpu ]] || { dev=(--device cpu); comm=(); }
  rm -rf "$tmp"; mkdir -p "$tmp"
  local eq=(train "${dev[@]}" --model cnn --steps 8 --train-limit 3000 --val-limit 200 --lr 0.05
            --seed 7 --quiet --data "$LK_DATA")
  t0=$(date +%s.%N)
  lk "${eq[@]}" --batch 48 --save "$tmp/one" || { note "1 rank failed"; return 1; }
  t1=$(date +%s.%N)
  LK_BIN=$LK_BIN launch/mpirun.sh -n 2 --oversubscribe "${eq[@]}" --batch 24 "${comm[@]}" \
    --save "$tmp/two" || { note "2 ranks failed"; return 1; }
  t2=$(date +%s.%N)
  d=$(rel_diff "$tmp/one/model.safetensors" "$tmp/two/model.safetensors") || { note "compare failed"; return 1; }
  note "${dev[1]}${comm[1]:+, ${comm[*]}}: max relative difference $d (bar 1e-4)"
  note "$(py -c "import sys; print(f'1 rank {float(sys.argv[2])-float(sys.argv[1]):.1f} s, 2 ranks {float(sys.argv[3])-float(sys.argv[2]):.1f} s')" "$t0" "$t1" "$t2")"
  le "$d" 1e-4
}

step_zero() {
  need_build
  local dev=(--device cuda:0) comm=(--gpu-comm mpi) tmp=$LK_WORK/zero d worst=0 z f
  [[ $LK_MODE == gpu ]] || { dev=(--device cpu); comm=(); }
  rm -rf "$tmp"; mkdir -p "$tmp"
  local run=(train "${dev[@]}" --model gpt --data text:/usr/share/common-licenses/GPL-3 --layers 2 --heads 2
             --dim 64 --ctx 32 --steps 6 --batch 4 --accum 2 --optim momentum --lr 0.05 --clip 1.0
             --seed 7 --quiet --val-limit 16)
  for z in 0 1 2; do
    LK_BIN=$LK_BIN launch/mpirun.sh -n 2 --oversubscribe "${run[@]}" "${comm[@]}" --zero $z \
      --save "$tmp/z$z" --metrics "$tmp/z$z.jsonl" || { note "--zero $z failed"; return 1; }
  done
  for z in 1 2; do
    d=$(rel_diff "$tmp/z0/model.safetensors" "$tmp/z$z/model.safetensors") || { note "compare failed"; return 1; }
    note "${dev[1]}: 2 ranks --zero $z vs --zero 0: max relative difference $d (bar 1e-5)"
    le "$d" 1e-5 || worst=1
  done
  for f in none block; do
    lk "${run[@]}" --batch 8 --accum 1 --recompute $f --save "$tmp/r-$f" --metrics "$tmp/r-$f.jsonl" ||
      { note "--recompute $f failed"; return 1; }
  done
  cmp -s "$tmp/r-none/model.safetensors" "$tmp/r-block/model.safetensors" &&
    note "--recompute block: the weights of none, bit for bit" || { note "--recompute block differs from none"; worst=1; }
  for f in z0 z2 r-none r-block; do
    note "$f: $(py -c "import json, sys
r = [json.loads(l) for l in open(sys.argv[1]) if '\"summary\"' in l][-1]
print(f\"peak GPU {r.get('peak_device_bytes', 0) / 1e9:.3f} GB (plan {r.get('plan_device_bytes', 0) / 1e9:.3f}), \"
      f\"host {r['peak_host_bytes'] / 1e9:.3f} GB (plan {r['plan_host_bytes'] / 1e9:.3f})\")" "$tmp/$f.jsonl")"
  done
  return $worst
}

step_precision() {
  need_build
  local dev=cuda:0 comm=(--gpu-comm mpi) tmp=$LK_WORK/precision d worst=0 p
  [[ $LK_MODE == gpu ]] || { dev=cpu; comm=(); }
  rm -rf "$tmp"; mkdir -p "$tmp"
  local g=(train --model gpt --data text:/usr/share/common-licenses/GPL-3 --layers 2 --heads 2 --dim 64
           --ctx 32 --steps 6 --batch 8 --optim adamw --lr 1e-3 --seed 7 --quiet --val-limit 16
           --log-every 1 --precision bf16)
  lk "${g[@]}" --device "$dev" --metrics "$tmp/gpu.jsonl" || { note "gpt bf16 on $dev failed"; return 1; }
  lk "${g[@]}" --device cpu --metrics "$tmp/cpu.jsonl" || { note "gpt bf16 on the CPU failed"; return 1; }
  d=$(py -c "import json, sys
l = [[r['loss'] for r in map(json.loads, open(p)) if 'loss' in r and 'event' not in r] for p in sys.argv[1:]]
print(max(abs(a - b) / abs(b) for a, b in zip(*l)))" "$tmp/gpu.jsonl" "$tmp/cpu.jsonl")
  note "gpt bf16, $dev vs cpu: largest relative loss difference over 6 steps $d (bar 1e-2)"
  le "$d" 1e-2 || worst=1
  for p in fp32 bf16; do
    lk train --device "$dev" --model cnn --steps 200 --batch 64 --optim momentum --lr 0.05 --seed 0 \
      --data "$LK_DATA" --val-limit 1000 --quiet --precision $p --metrics "$tmp/cnn-$p.jsonl" ||
      { note "cnn $p failed"; return 1; }
    note "cnn --precision $p: $(json_field "$tmp/cnn-$p.jsonl" samples_per_s) samples/s, accuracy $(json_field "$tmp/cnn-$p.jsonl" val_acc)"
  done
  local w=(train --device "$dev" --model mlp --steps 20 --batch 32 --data "$LK_DATA" --train-limit 2000
           --val-limit 200 --optim momentum --lr 0.05 --seed 7 --quiet --grad-dtype bf16 --precision bf16)
  for z in 0 1; do
    LK_BIN=$LK_BIN launch/mpirun.sh -n 2 --oversubscribe "${w[@]}" "${comm[@]}" --zero $z --save "$tmp/w$z" ||
      { note "--grad-dtype bf16 --zero $z failed"; return 1; }
  done
  d=$(rel_diff "$tmp/w0/model.safetensors" "$tmp/w1/model.safetensors") || { note "compare failed"; return 1; }
  note "--grad-dtype bf16, 2 ranks: --zero 1 vs --zero 0: max relative difference $d (bar 0: bit for bit)"
  le "$d" 0 || worst=1
  return $worst
}

step_explain() {
  need_build
  local tmp=$LK_WORK/explain gdev=cuda:0 d gap dv
  [[ $LK_MODE == gpu ]] || gdev=cpu
  rm -rf "$tmp"; mkdir -p "$tmp"
  # a cnn-bn trained briefly on the CPU; its attributions on the GPU against the CPU's (the
  # input gradient, batch norm's evaluation-mode backward, the batched quadrature points)
  lk train --device cpu --model cnn-bn --steps 60 --batch 32 --lr 0.05 --train-limit 3000 --val-limit 200 \
    --quiet --data "$LK_DATA" --save "$tmp/ck" || { note "training failed"; return 1; }
  for dv in cpu "$gdev"; do
    lk explain --device "$dv" --checkpoint "$tmp/ck" --input "$LK_DATA_DIR/t10k-images-idx3-ubyte.gz" \
      --limit 4 --out "$tmp/$dv" >"$tmp/$dv.log" 2>&1 || { note "explain on $dv failed"; return 1; }
  done
  d=$(py - "$tmp/cpu" "$tmp/$gdev" <<'PY'
import glob, json, os, sys
worst = 0.0
for p in sorted(glob.glob(sys.argv[1] + "/*.json")):
    a = json.load(open(p))["attributions"]
    b = json.load(open(os.path.join(sys.argv[2], os.path.basename(p))))["attributions"]
    worst = max(worst, max(abs(x - y) for x, y in zip(a, b)) / (max(abs(x) for x in a) or 1.0))
print(worst)
PY
  ) || { note "compare failed"; return 1; }
  gap=$(grep -o 'largest [0-9.]*' "$tmp/$gdev.log" | grep -o '[0-9.]*$')
  note "cnn-bn, ig on 4 images, $gdev against cpu: max relative difference $d (bar 1e-3); completeness gap at most $gap% (bar 1%)"
  le "$d" 1e-3 && le "${gap:-100}" 1
}

step_private() {
  need_build
  local tmp=$LK_WORK/private gdev=cuda:0 d worst=0 m comm=(--gpu-comm mpi)
  [[ $LK_MODE == gpu ]] || { gdev=cpu; comm=(); }
  rm -rf "$tmp"; mkdir -p "$tmp"
  for m in mlp cnn; do
    local run=(train --model $m --steps 8 --batch 16 --train-limit 2000 --val-limit 100 --lr 0.1 --seed 3 --quiet
               --data "$LK_DATA" --dp-clip 0.5 --dp-noise 1.0)
    lk "${run[@]}" --device "$gdev" --save "$tmp/$m-gpu" || { note "DP-SGD $m on $gdev failed"; return 1; }
    lk "${run[@]}" --device cpu --save "$tmp/$m-cpu" || { note "DP-SGD $m on the CPU failed"; return 1; }
    d=$(rel_diff "$tmp/$m-cpu/model.safetensors" "$tmp/$m-gpu/model.safetensors") || { note "compare failed"; return 1; }
    note "DP-SGD $m, $gdev vs cpu after 8 steps: max relative difference $d (bar 1e-4)"
    le "$d" 1e-4 || worst=1
  done
  local f=(train --model mlp --epochs 2 --batch 16 --train-limit 2000 --val-limit 100 --lr 0.05 --seed 3 --quiet
           --data "$LK_DATA" --fedavg --partition classes:5 --local-steps 10)
  LK_BIN=$LK_BIN launch/mpirun.sh -n 2 --oversubscribe "${f[@]}" --device "$gdev" "${comm[@]}" --save "$tmp/fed-gpu" ||
    { note "FedAvg on $gdev failed"; return 1; }
  LK_BIN=$LK_BIN launch/mpirun.sh -n 2 --oversubscribe "${f[@]}" --device cpu --save "$tmp/fed-cpu" ||
    { note "FedAvg on the CPU failed"; return 1; }
  d=$(rel_diff "$tmp/fed-cpu/model.safetensors" "$tmp/fed-gpu/model.safetensors") || { note "compare failed"; return 1; }
  note "FedAvg mlp, 2 ranks, $gdev vs cpu after 2 rounds: max relative difference $d (bar 1e-4)"
  le "$d" 1e-4 || worst=1
  return $worst
}

step_cnn() {
  need_build
  local m=$LK_WORK/cnn.jsonl args
  if [[ $LK_MODE == gpu ]]; then
    args=(--device cuda --epochs 3)
  else   # a smoke run on the CPU: the data, the model, the metrics
    args=(--device cpu --steps 40 --train-limit 2560 --val-limit 1000)
  fi
  rm -f "$m"
  lk train "${args[@]}" --model cnn --batch 64 --optim momentum --lr 0.05 --schedule cosine \
    --seed 0 --data "$LK_DATA" --metrics "$m" --progress lines || { note "training failed"; return 1; }
  local acc sps wall
  acc=$(json_field "$m" val_acc) sps=$(json_field "$m" samples_per_s) wall=$(json_field "$m" wall_s)
  { echo "evaluations and summary (--metrics):"; echo '```'
    grep -E '"event": ?"(eval|summary)"' "$m"; echo '```'; } | detail
  note "${args[*]}: test accuracy $acc, $(printf '%.0f samples/s, %.1f s' "$sps" "$wall")"
  [[ $LK_MODE == gpu ]] || return 0
  py -c "import sys; sys.exit(0 if float(sys.argv[1]) >= 0.905 else 1)" "$acc" ||
    { note "below the bar 0.905"; return 1; }
  note "bar 0.905 reached"
}

step_bench_gpu() {
  [[ $LK_MODE == gpu ]] || { note "no GPU (--build-only)"; return 77; }
  need_build
  [[ -n ${LK_PYTHON:-} ]] || { note "no python3 with PyTorch"; return 1; }
  local out rc=0
  # streamed, so that a timeout still leaves the rows done in the step's output
  LK_BENCH_STEPS=${LK_BENCH_STEPS:-300} LK_FASHION_MNIST_DIR=$LK_DATA_DIR bench/gpu.sh 2>&1 |
    tee "$LK_WORK/bench-gpu.txt"
  rc=${PIPESTATUS[0]}
  out=$(cat "$LK_WORK/bench-gpu.txt")
  { echo "LK_BENCH_STEPS=${LK_BENCH_STEPS:-300}"; echo; grep -E '^\||^GPU:|^lockstep:|^PyTorch:|^\(torch' <<<"$out"; } | detail
  note "$(grep -E '^\| (mlp|cnn)' <<<"$out" | awk -F'|' '{ gsub(/ /, "", $2); gsub(/ /, "", $6); printf "%s %s vs eager; ", $2, $6 }')"
  [[ $rc -eq 0 ]] || note "exit $rc: $(tail -1 <<<"$out")"
  return $rc
}

step_gpt2() {
  [[ $LK_MODE == gpu ]] || { note "no GPU (--build-only)"; return 77; }
  [[ -x bench/gpt2.sh || -f bench/gpt2.sh ]] || { note "bench/gpt2.sh missing"; return 77; }
  need_build
  local f=$LK_WORK/gpt2.md rc=0
  bash bench/gpt2.sh --device cuda --out "$f" || rc=$?
  if [[ -s $f ]]; then
    detail <"$f"
    note "$(grep -v '^ *$' "$f" | tail -1 | cut -c1-200) (the table is in the details)"
  else
    note "no table written to --out"
    [[ $rc -ne 0 ]] || rc=1
  fi
  return $rc
}

if [[ ${1:-} == --step ]]; then
  LK_STEP=$2
  "step_${2//-/_}"
  exit $?
fi

# ---------------------------------------------------------------- options
mode=gpu
[[ ${LK_GPU_DRY:-0} == 1 ]] && mode=dry
kit=${LK_GPU_KIT:-$repo_root/.gpu-kit}
prefix=${LK_KIT_PREFIX:-/tmp/lk-kit}
budget=${LK_GPU_BUDGET:-480}
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build-only) mode=dry; shift ;;
    --kit) kit=$2; shift 2 ;;
    --prefix) prefix=$2; shift 2 ;;
    --budget) budget=$2; shift 2 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$self"; exit 0 ;;
    *) echo "run-gpu.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
case "$prefix" in /|/usr|/usr/*|/etc|/etc/*|"") echo "run-gpu.sh: refusing prefix '$prefix'" >&2; exit 2 ;; esac

out=${OUT:-$repo_root/runs/gpu}
mkdir -p "$out"
report=$out/gpu-report.md log=$out/gpu-log.txt
work=$(mktemp -d /tmp/lk-gpu.XXXXXX)
trap 'rm -rf "$work"' EXIT
: >"$log"
start=$(date +%s)
deadline=$((start + budget))
export LK_WORK=$work LK_MODE=$mode
export LK_BUILD=${LK_GPU_BUILD:-$repo_root/build-gpu}
export LK_BIN=$LK_BUILD/lockstep
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1   # tests' own mpirun calls
# Open MPI's shared memory copies between ranks with process_vm_readv, which Yama's
# ptrace scope 3 (or 1-2 without root) refuses: copy through the shared segment then
ptrace=$(cat /proc/sys/kernel/yama/ptrace_scope 2>/dev/null || echo 0)
if [[ $ptrace -ge 3 || ($ptrace -ge 1 && $(id -u) -ne 0) ]]; then
  export OMPI_MCA_btl_vader_single_copy_mechanism=none
fi
say() { printf '[%4ds] %s\n' $(($(date +%s) - start)) "$*" | tee -a "$log"; }

# ---------------------------------------------------------------- the kit
# Unpack every .deb, make the prefix usable from where it lies (absolute symlinks, the
# alternatives dpkg would have made, .pc files, Open MPI's and PMIx's install paths),
# and export what the build and the runs need.
unpack_deb() {   # unpack_deb DEB DIR: dpkg -x, or the same in Python where dpkg is missing
  if command -v dpkg >/dev/null && [[ -z ${LK_KIT_NO_DPKG:-} ]]; then dpkg -x "$1" "$2"; return; fi
  "${LK_PY:?}" - "$1" "$2" <<'PY'
import io, sys, tarfile
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"!<arch>\n", "not a .deb"
pos = 8
while pos < len(data):
    name, size = data[pos:pos + 16].decode().strip().rstrip("/"), int(data[pos + 48:pos + 58])
    if name.startswith("data.tar"):
        with tarfile.open(fileobj=io.BytesIO(data[pos + 60:pos + 60 + size])) as t:
            t.extractall(sys.argv[2], **({"filter": "fully_trusted"} if hasattr(tarfile, "data_filter") else {}))
        break
    pos += 60 + size + (size & 1)
else:
    sys.exit("no data.tar in " + sys.argv[1])
PY
}

kit_setup() {
  local P=$prefix ma=x86_64-linux-gnu
  if [[ ! -f $kit/MANIFEST ]]; then
    echo "kit: none at $kit: the system's packages" >>"$work/kit.note"
    LK_DATA_DIR=/usr/share/datasets/fashion-mnist
    return 0
  fi
  (cd "$kit" && grep -v '^#' MANIFEST | awk -F'\t' '{ print $6 "  " $4 }' | sha256sum -c --quiet -) ||
    { echo "kit: a .deb does not match MANIFEST" >>"$work/kit.note"; return 1; }
  rm -rf "$P"; mkdir -p "$P"
  local deb n=0
  for deb in "$kit"/*.deb; do unpack_deb "$deb" "$P" || return 1; n=$((n + 1)); done
  # absolute symlinks point into the node's /: point them into the prefix
  local l t
  while IFS= read -r l; do
    t=$(readlink "$l"); ln -sfn "$P$t" "$l"
  done < <(find "$P" -type l -lname '/*')
  # the alternatives dpkg's maintainer scripts would have made
  for t in mpicc mpicxx mpiCC mpic++ mpirun mpiexec; do
    [[ -e $P/usr/bin/$t.openmpi && ! -e $P/usr/bin/$t ]] && ln -s "$t.openmpi" "$P/usr/bin/$t"
  done
  [[ -e $P/usr/lib/$ma/pkgconfig/mpi.pc ]] || ln -s ompi-c.pc "$P/usr/lib/$ma/pkgconfig/mpi.pc"
  # .pc files name /usr: name the prefix instead
  find "$P" -name '*.pc' -type f -exec sed -i -E "s#(^[A-Za-z_]+=|[ =]-[IL]|[ =])/usr(/|\$| )#\1$P/usr\2#g" {} +
  # run-time libraries (LD_LIBRARY_PATH=rtlib): Open MPI's, oneDNN's and the other
  # libraries we build against always from the kit; of their dependencies (zlib, udev,
  # numa, verbs, libevent, ...) only the sonames this system lacks, unless its own
  # copies fail (checked below). The full kit folder stays for the build's link.
  # Bookworm's binaries need glibc 2.34, its libevent 2.36 (arc4random).
  echo "glibc $(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{ print $2 }')" >>"$work/kit.note"
  mkdir -p "$P/rtlib"
  local have so base
  have=$(ldconfig -p 2>/dev/null | awk '{ print $1 }' | sort -u)
  for so in "$P/usr/lib/$ma"/*.so.* "$P/lib/$ma"/*.so.* "$P/usr/lib/$ma"/pmix2/lib/*.so.*; do
    [[ -e $so ]] || continue
    base=${so##*/}
    case "$base" in
      libmpi*|libopen-*|libmca_common_*|liboshmem*|libompitrace*|libpmix*|libhwloc*|\
      libdnnl*|libcjson*|libcmocka*) ;;
      *) if grep -qxF "$base" <<<"$have"; then echo "$base" >>"$P/rtlib.system"; continue; fi ;;
    esac
    ln -sfn "$so" "$P/rtlib/$base"
  done
  local data pmix=$P/usr/lib/$ma/pmix2   # PMIx takes each folder, not a prefix
  data=$(find "$P/usr/share/datasets" -name 'train-images-idx3-ubyte*' -printf '%h\n' 2>/dev/null | head -1)
  cat >"$P/env.sh" <<EOF
# made by tests/run-gpu.sh: source it to use the kit unpacked in $P
export PATH=$P/usr/bin:\$PATH
export LD_LIBRARY_PATH=$P/rtlib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}
export PKG_CONFIG_PATH=$P/usr/lib/$ma/pkgconfig:$P/usr/share/pkgconfig\${PKG_CONFIG_PATH:+:\$PKG_CONFIG_PATH}
export CMAKE_PREFIX_PATH=$P/usr\${CMAKE_PREFIX_PATH:+:\$CMAKE_PREFIX_PATH}
export CMAKE_INCLUDE_PATH=$P/usr/include:$P/usr/include/$ma\${CMAKE_INCLUDE_PATH:+:\$CMAKE_INCLUDE_PATH}
export CMAKE_LIBRARY_PATH=$P/usr/lib/$ma\${CMAKE_LIBRARY_PATH:+:\$CMAKE_LIBRARY_PATH}
export LK_KIT_CPATH=$P/usr/include/$ma
# Open MPI and its PMIx were built for /usr: their plugins, help texts, wrapper data
# and /etc/openmpi/openmpi-mca-params.conf are found through these
export OPAL_PREFIX=$P/usr OPAL_SYSCONFDIR=$P/etc/openmpi
export PMIX_PREFIX=$pmix PMIX_LIBDIR=$pmix/lib PMIX_PKGLIBDIR=$pmix/lib/pmix
export PMIX_DATADIR=$pmix/share PMIX_PKGDATADIR=$pmix/share/pmix
export FI_PROVIDER_PATH=$P/usr/lib/$ma/libfabric UCX_MODULE_DIR=$P/usr/lib/$ma/ucx
export LK_DATA_DIR=$data
EOF
  # shellcheck disable=SC1091
  . "$P/env.sh"
  # ssh is not needed for ranks on this host, but Open MPI looks for it
  command -v ssh >/dev/null || command -v rsh >/dev/null || export OMPI_MCA_plm_rsh_agent=false
  # the system's copies of shared sonames work with the kit's libraries? else the kit's
  local elfs=("$P"/usr/bin/opal_wrapper "$P"/usr/bin/orterun "$P"/usr/bin/orted "$P"/usr/bin/pkgconf
              "$P/usr/lib/$ma"/libmpi.so.40 "$P/usr/lib/$ma"/libdnnl.so.2 "$P/usr/lib/$ma"/libhwloc.so.15
              "$P/usr/lib/$ma"/libcjson.so.1 "$P/usr/lib/$ma"/libcmocka.so.0)
  if ldd -r "${elfs[@]}" 2>&1 | grep -E 'not found|undefined symbol' >"$work/ldd.txt"; then
    echo "kit: with the system's copies: $(sort -u "$work/ldd.txt" | head -3 | tr -s ' \t' ' '): using the kit's" >>"$work/kit.note"
    export LD_LIBRARY_PATH=$P/rtlib:$P/usr/lib/$ma:$P/lib/$ma${LD_LIBRARY_PATH#"$P/rtlib"}
    sed -i "s#^export LD_LIBRARY_PATH=.*#export LD_LIBRARY_PATH=$LD_LIBRARY_PATH#" "$P/env.sh"
    ! ldd "${elfs[@]}" 2>&1 | grep -E 'not found' >"$work/ldd.txt" ||
      { echo "kit: still missing: $(sort -u "$work/ldd.txt" | tr -s ' \t' ' ' | tr '\n' ';')" >>"$work/kit.note"; return 1; }
  fi
  echo "kit: $n .debs unpacked in $P ($(du -sm "$P" | cut -f1) MiB), $(cat "$P/rtlib.system" 2>/dev/null | wc -l) of their sonames used from the system" >>"$work/kit.note"
  # the tools work from the prefix
  echo "mpicc -showme: $(mpicc -showme)"
  mpicc -showme >/dev/null || { echo "kit: mpicc -showme failed" >>"$work/kit.note"; return 1; }
  [[ $(mpicc -showme:incdirs) == "$P"/* ]] ||
    { echo "kit: mpicc -showme does not name the prefix: $(mpicc -showme:incdirs)" >>"$work/kit.note"; return 1; }
  local o
  o=$(mpirun --allow-run-as-root -np 2 --bind-to none sh -c 'echo "rank $OMPI_COMM_WORLD_RANK of $OMPI_COMM_WORLD_SIZE"' 2>&1) ||
    { echo "$o"; echo "kit: mpirun -np 2 sh failed" >>"$work/kit.note"; return 1; }
  echo "$o"
  # a help text or plugin that was not found means a path still points into /usr
  ! grep -qE "couldn't open the help file|Sorry!|unable to open|cannot open shared object" <<<"$o" ||
    { echo "kit: mpirun complains (see the log): Open MPI or PMIx not fully relocated" >>"$work/kit.note"; return 1; }
  echo "pkg-config: hwloc $(pkg-config --modversion hwloc), libcjson $(pkg-config --modversion libcjson), cmocka $(pkg-config --modversion cmocka), libpcre2-8 $(pkg-config --modversion libpcre2-8)"
  pkg-config --cflags --libs hwloc libcjson cmocka libpcre2-8 >/dev/null ||
    { echo "kit: pkg-config does not find the kit's modules" >>"$work/kit.note"; return 1; }
  [[ -n $data ]] || { echo "kit: no Fashion-MNIST files in the kit" >>"$work/kit.note"; return 1; }
  echo "kit: Open MPI $(mpirun --version | head -1 | awk '{ print $NF }') relocated (OPAL_PREFIX, PMIX_*DIR)" >>"$work/kit.note"
  { echo "packages (tests/gpu-kit.sh's MANIFEST): $(grep -v '^#' "$kit/MANIFEST" | awk -F'\t' '{ printf "%s%s %s", (NR > 1 ? ", " : ""), $1, $2 }')"
    echo; echo "used from the system: $(paste -sd' ' "$P/rtlib.system" 2>/dev/null)"; } >>"$work/kit.md"
}

# cuDNN and NCCL next to the CUDA toolkit; else the Python wheels' (nvidia-cudnn-*,
# nvidia-nccl-*), which have no unversioned .so: a folder of links for CMake
cuda_extras() {
  local cuda=${CUDA_HOME:-/usr/local/cuda} pkg hdr lib dir
  for pkg in cudnn:cudnn.h:libcudnn.so nccl:nccl.h:libnccl.so; do
    IFS=: read -r pkg hdr lib <<<"$pkg"
    if compgen -G "$cuda/include/$hdr" >/dev/null || compgen -G "$cuda/targets/*/include/$hdr" >/dev/null ||
       [[ -e /usr/include/$hdr ]]; then continue; fi
    dir=$("$LK_PY" -c "import nvidia.$pkg as m; print(list(m.__path__)[0])" 2>/dev/null) || continue
    local x=$prefix/cuda-extra so
    mkdir -p "$x/include" "$x/lib"
    ln -sfn "$dir"/include/* "$x/include/"
    ln -sfn "$dir"/lib/* "$x/lib/"
    so=$(ls "$dir/lib/$lib".* 2>/dev/null | head -1)
    [[ -n $so ]] && ln -sfn "$so" "$x/lib/$lib"
    export CMAKE_INCLUDE_PATH=$x/include${CMAKE_INCLUDE_PATH:+:$CMAKE_INCLUDE_PATH}
    export CMAKE_LIBRARY_PATH=$x/lib${CMAKE_LIBRARY_PATH:+:$CMAKE_LIBRARY_PATH}
    echo "$pkg: from $dir (the Python wheel)" >>"$work/kit.note"
  done
}

# ---------------------------------------------------------------- the run
rows=() passed=0 failed=0 skipped=0
record() {   # record NAME RESULT SECONDS
  local id=$1 res=$2 secs=$3 cell=""
  [[ -f $work/$id.note ]] && cell=$(paste -sd';' "$work/$id.note" | sed 's/;/; /g; s/|/\\|/g')
  rows+=("| $id | $res | $secs | $cell |")
  case "$res" in PASS) passed=$((passed + 1)) ;; SKIP*) skipped=$((skipped + 1)) ;; *) failed=$((failed + 1)) ;; esac
  say "$id: $res (${secs} s) ${cell:0:200}"
}
run_step() {   # run_step NAME TIMEOUT
  local id=$1 limit=$2 left rc=0 t0
  left=$((deadline - $(date +%s) - 5))
  if ((left < 15)); then echo "out of time (budget ${budget} s)" >"$work/$id.note"; record "$id" SKIP 0; return; fi
  ((limit > left)) && limit=$left
  say "$id: running (timeout ${limit} s)"
  t0=$(date +%s.%N)
  LK_STEP=$id timeout -k 10 "$limit" "$self" --step "$id" >"$work/$id.log" 2>&1 || rc=$?
  local secs; secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  { echo "==== $id (exit $rc, $secs s)"; cat "$work/$id.log"; } >>"$log"
  case $rc in
    0) record "$id" PASS "$secs" ;;
    77) record "$id" SKIP "$secs" ;;
    78) record "$id" "SKIP (no build)" "$secs" ;;
    124|137) echo "timed out after ${limit} s" >>"$work/$id.note"; record "$id" TIMEOUT "$secs"; tail_of "$id" ;;
    *) record "$id" "FAIL ($rc)" "$secs"; tail_of "$id" ;;
  esac
}
tail_of() { { echo; echo "last lines of the output:"; echo '```'; tail -n 40 "$work/$1.log"; echo '```'; } >>"$work/$1.md"; }

say "tests/run-gpu.sh: mode $mode, budget $budget s, report $report"
# a python3 for the small checks, and the one with PyTorch for the benchmarks
LK_PY=${LK_PYTHON:-}
if [[ -z $LK_PY ]]; then
  for c in python3 /usr/bin/python3; do
    if command -v "$c" >/dev/null && "$c" -c 'import torch' 2>/dev/null; then LK_PYTHON=$(command -v "$c"); break; fi
  done
  LK_PY=${LK_PYTHON:-$(command -v python3 || echo /usr/bin/python3)}
fi
export LK_PY LK_PYTHON=${LK_PYTHON:-}

t0=$(date +%s.%N)
kit_rc=0
kit_setup >"$work/kit.log" 2>&1 || kit_rc=$?
cuda_extras >>"$work/kit.log" 2>&1 || true
cat "$work/kit.log" >>"$log"
export LK_DATA_DIR=${LK_DATA_DIR:-/usr/share/datasets/fashion-mnist}
export LK_DATA=fashion-mnist:$LK_DATA_DIR
kit_secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
if [[ $kit_rc -eq 0 ]]; then record kit PASS "$kit_secs"; else record kit FAIL "$kit_secs"; tail_of kit; fi

if [[ -z ${LK_CUDA_ARCHS:-} ]]; then
  LK_CUDA_ARCHS=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '. ')
  [[ $LK_CUDA_ARCHS =~ ^[0-9]+$ ]] || LK_CUDA_ARCHS=90
fi
export LK_CUDA_ARCHS
if [[ $mode == gpu ]] && ! nvidia-smi -L >>"$log" 2>&1; then
  say "no GPU visible (nvidia-smi -L failed): the GPU steps will fail (--build-only for the CPU checks)"
fi

run_step build "${LK_BUILD_TIMEOUT:-300}"
run_step gpu 30
run_step info 30
run_step parity 120
run_step collectives 90
run_step mpi2 120
run_step zero 120
run_step precision 120
run_step explain 60
run_step private 90
run_step cnn 150
run_step bench-gpu 240
run_step gpt2 150

# ---------------------------------------------------------------- the report
{
  echo "# tests/run-gpu.sh report"
  echo
  echo "- date: $(date -u +%FT%TZ); host: $(hostname); kernel $(uname -r); $(nproc) cores"
  echo "- mode: $mode; budget: $budget s; total: $(($(date +%s) - start)) s"
  echo "- source: $(find src tests CMakeLists.txt -type f \( -name '*.c' -o -name '*.h' -o -name '*.cu' -o -name '*.txt' \) -print0 |
      sort -z | xargs -0 cat | sha256sum | cut -c1-16) (sha256 of src/, tests/, CMakeLists.txt)$(
      git rev-parse --short HEAD 2>/dev/null | sed 's/^/; git /')"
  echo "- compilers: $(cc --version 2>/dev/null | head -1); $("$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)" \
      --version 2>/dev/null | tail -2 | head -1)"
  echo "- cmake: $(cmake --version 2>/dev/null | head -1); python: ${LK_PYTHON:-none with torch} $(
      [[ -n $LK_PYTHON ]] && "$LK_PYTHON" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda)' 2>/dev/null)"
  echo "- CUDA architectures: $LK_CUDA_ARCHS; data: $LK_DATA"
  echo
  echo "| step | result | s | measured |"
  echo "|---|---|---:|---|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "$passed passed, $failed failed, $skipped skipped"
  for id in kit build gpu info parity collectives mpi2 zero precision explain private cnn bench-gpu gpt2; do
    [[ -s $work/$id.md ]] || continue
    echo
    echo "## $id"
    echo
    cat "$work/$id.md"
  done
} >"$report"
echo
cat "$report"
echo
printf '%s\n' "| step | result | s | measured |" "|---|---|---:|---|" "${rows[@]}"   # again, at the end
echo "report: $report; log: $log"
echo "$passed passed, $failed failed, $skipped skipped"
[[ $failed -eq 0 ]]
