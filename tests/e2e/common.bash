# common.bash - helpers for the end-to-end tests (sourced; $1 of the test is the lockstep binary).
set -euo pipefail
LK="$1"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export OMP_NUM_THREADS=1

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
