#!/usr/bin/env bash
# The installable library. `cmake --install` of this build into a fresh prefix gives the
# command, liblockstep.so and .a, the public headers, a CMake package and a pkg-config file;
# examples/ then builds against that prefix only (not the build tree) - with pkg-config
# (shared) and with find_package (shared, and the static library) - and trains: the custom
# loop on 2 ranks to a stated accuracy, with a checkpoint the installed `lockstep eval`
# reads; the trainer from a program.
source "$(dirname "$0")/common.bash"
[[ -d /usr/share/datasets/fashion-mnist ]] || { echo "SKIP: dataset-fashion-mnist not installed"; exit 0; }
BUILD=$(cd "$(dirname "$LK")" && pwd)
PREFIX=$TMP/prefix
cmake --install "$BUILD" --prefix "$PREFIX" >"$TMP/install.log" 2>&1 || fail "cmake --install: $(tail -5 "$TMP/install.log")"
pc=$(find "$PREFIX" -name lockstep.pc)
for f in bin/lockstep include/lockstep/lockstep.h include/lockstep/models/spec.h; do
  [[ -e $PREFIX/$f ]] || fail "not installed: $f"
done
libdir=$(dirname "$(dirname "$pc")")
for f in "$libdir/liblockstep.so" "$libdir/liblockstep.a" "$libdir/cmake/lockstep/lockstepConfig.cmake"; do
  [[ -e $f ]] || fail "not installed: $f"
done
echo "installed: $(cd "$PREFIX" && find . -type f | wc -l) files under $PREFIX"
export PKG_CONFIG_PATH=$(dirname "$pc")
cflags=$(pkg-config --cflags lockstep) && libs=$(pkg-config --libs lockstep) || fail "pkg-config lockstep"
[[ $cflags != *"$HERE"* && $libs != *"$BUILD"* ]] || fail "pkg-config points into the source or build tree: $cflags $libs"
cc -std=c11 -Wall -Wextra -Werror -O2 "$HERE/examples/custom_loop.c" $cflags $libs -o "$TMP/custom_loop" \
  2>"$TMP/cc.log" || fail "custom_loop.c with pkg-config: $(cat "$TMP/cc.log")"
used=$(ldd "$TMP/custom_loop" | awk '/liblockstep/ {print $3}')
[[ -n $used && $(realpath "$used") == $(realpath "$libdir/liblockstep.so") ]] ||
  fail "custom_loop does not use the installed liblockstep.so: ${used:-none}"
mpi -n 2 --oversubscribe "$TMP/custom_loop" fashion-mnist 800 "$TMP/ck" >"$TMP/loop.log" 2>&1 ||
  fail "custom_loop on 2 ranks: $(tail -5 "$TMP/loop.log")"
cat "$TMP/loop.log"
acc=$(grep -o 'test accuracy [0-9.]*' "$TMP/loop.log" | cut -d' ' -f3)
/usr/bin/python3 -c "import sys; sys.exit(0 if $acc >= 0.82 else 1)" || fail "custom_loop: test accuracy $acc < 0.82"
ev=$("$PREFIX/bin/lockstep" eval --checkpoint "$TMP/ck" --threads 1) || fail "eval of custom_loop's checkpoint: $ev"
echo "installed lockstep eval: $ev"
[[ $ev == "test accuracy $acc "* ]] || fail "eval's accuracy differs from the loop's ($acc): $ev"
# find_package, against the prefix only
cmake -S "$HERE/examples" -B "$TMP/ex" -DCMAKE_PREFIX_PATH="$PREFIX" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_C_FLAGS="-Wall -Wextra -Werror" >"$TMP/ex.log" 2>&1 && cmake --build "$TMP/ex" >>"$TMP/ex.log" 2>&1 ||
  fail "examples with find_package: $(tail -15 "$TMP/ex.log")"
grep -q "$BUILD" "$TMP/ex/CMakeCache.txt" && fail "the examples' build found the build tree"
out=$(mpi -n 2 --oversubscribe "$TMP/ex/train_spec" fashion-mnist 150 2>&1) || fail "train_spec: $out"
echo "$out"
[[ $out == *"example-cnn: 150 steps on 2 ranks, validation accuracy"* ]] || fail "train_spec: $out"
cmake -S "$HERE/examples" -B "$TMP/ex-static" -DCMAKE_PREFIX_PATH="$PREFIX" -DLK_EXAMPLES_STATIC=ON \
  >"$TMP/exs.log" 2>&1 && cmake --build "$TMP/ex-static" --target custom_loop >>"$TMP/exs.log" 2>&1 ||
  fail "custom_loop against the static library: $(tail -15 "$TMP/exs.log")"
ldd "$TMP/ex-static/custom_loop" | grep -q liblockstep && fail "the static build links liblockstep.so"
out=$("$TMP/ex-static/custom_loop" fashion-mnist 100 2>&1) || fail "custom_loop (static): $out"
echo "static: $out"
echo PASS
