# common.bash - helpers for the end-to-end tests (sourced; $1 of the test is the lockstep binary).
set -euo pipefail
LK="$1"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export OMP_NUM_THREADS=1
export LK_BIN="$LK" # (launch/mpirun.sh and run.sh run this binary for a subcommand: the one under test)

fail() { echo "FAIL: $*" >&2; exit 1; }

# expect_fail CODE NEEDLE -- command...: the command must exit with CODE and print NEEDLE on stderr
expect_fail() {
  local code=$1 needle=$2; shift 3
  local rc=0
  "$@" >"$TMP/out" 2>"$TMP/err" || rc=$?
  [[ $rc -eq $code ]] || fail "'$*' exited $rc, expected $code; stderr: $(cat "$TMP/err")"
  grep -qF -- "$needle" "$TMP/err" || fail "'$*': stderr does not mention '$needle': $(cat "$TMP/err")"
  echo "ok: '$*' -> exit $rc: $(head -c 200 "$TMP/err")"
}

# json_field FILE EVENT FIELD: FIELD of the last JSON line whose "event" is EVENT
json_field() {
  /usr/bin/python3 - "$1" "$2" "$3" <<'PY'
import json, sys
path, event, field = sys.argv[1:]
rec = [json.loads(l) for l in open(path) if l.strip()]
rec = [r for r in rec if r.get("event") == event]
print(rec[-1][field])
PY
}

# MPI runs: Open MPI's plugins leave allocations behind at MPI_Finalize that no
# suppression can name (their modules are unloaded), so leak checking is off there.
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
mpi() { ASAN_OPTIONS=${ASAN_OPTIONS:+${ASAN_OPTIONS}:}detect_leaks=0 "$HERE/launch/mpirun.sh" "$@"; }

# max_rel_diff A.safetensors B.safetensors: largest |a-b| / max|a| over the tensors
max_rel_diff() {
  /usr/bin/python3 - "$1" "$2" <<'PY'
import json, struct, sys
def load(p):
    raw = open(p, "rb").read(); n = struct.unpack("<Q", raw[:8])[0]
    h = json.loads(raw[8:8 + n]); h.pop("__metadata__", None); data = raw[8 + n:]
    return {k: struct.unpack("<%df" % ((e["data_offsets"][1] - e["data_offsets"][0]) // 4),
                             data[e["data_offsets"][0]:e["data_offsets"][1]]) for k, e in h.items()}
a, b = load(sys.argv[1]), load(sys.argv[2])
assert a.keys() == b.keys()
print(max(max(abs(x - y) for x, y in zip(a[k], b[k])) / max(abs(x) for x in a[k]) for k in a))
PY
}

# expect_nonzero NEEDLE -- command...: the command must fail (any non-zero status) within
# LK_DEADLINE seconds (default 60) and print NEEDLE on stdout or stderr
expect_nonzero() {
  local needle=$1; shift 2
  local rc=0 t0=$SECONDS
  timeout "${LK_DEADLINE:-60}" "$@" >"$TMP/out" 2>&1 || rc=$?
  [[ $rc -ne 0 ]] || fail "'$*' succeeded; expected a failure mentioning '$needle'"
  [[ $rc -ne 124 ]] || fail "'$*' hung: still running after ${LK_DEADLINE:-60} s"
  grep -qF -- "$needle" "$TMP/out" || fail "'$*': output does not mention '$needle': $(tail -20 "$TMP/out")"
  echo "ok: exit $rc after $((SECONDS - t0)) s: $(grep -F -- "$needle" "$TMP/out" | head -1)"
}

# check_models NAME DIR_A DIR_B TOL: their model.safetensors within TOL (max_rel_diff), said
check_models() {
  local d; d=$(max_rel_diff "$2/model.safetensors" "$3/model.safetensors")
  echo "$1: max relative difference $d"
  /usr/bin/python3 -c "import sys; sys.exit(0 if $d <= $4 else 1)" || fail "$1: $d > $4"
}
