#!/usr/bin/env bash
# The emulated cluster end to end: 4 hosts (network namespaces, own hostnames) with
# 10 Gbit/s links (50 us delay where the kernel has netem), Open MPI over TCP between
# them: `info` sees 4 hosts; `bench comm` moves data over the links without a wrong
# element and no faster than they allow; a 4-rank training job finishes; a failing job
# fails; nothing is left behind.
#
#   cluster/emulate/test-emulate.sh [LOCKSTEP_BINARY]   (needs root; 77 = skipped)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin=$(readlink -f "${1:-$here/../../build/lockstep}")
[[ -x $bin ]] || { echo "test-emulate.sh: no lockstep binary at $bin" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "SKIP: the emulated cluster needs root (network namespaces)"; exit 77; }
probe=lkprobe$$ # can this machine make a namespace and a veth pair at all?
if ! { ip netns add "$probe" && ip -n "$probe" link add p0 type veth peer name p1; } 2>/dev/null; then
  ip netns del "$probe" 2>/dev/null || true
  echo "SKIP: this machine does not let root create network namespaces and veth pairs"
  exit 77
fi
ip netns del "$probe"
[[ -d /usr/share/datasets/fashion-mnist ]] || { echo "SKIP: dataset-fashion-mnist not installed"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
before=$(ip netns list | wc -l)
emu=("$here/cluster.sh" --hosts 4 --gbps 10 --latency-us 50 --)
export BIN=$bin TMPD=$tmp

"${emu[@]}" sh -c '$LK_EMU_MPIRUN "$BIN" info' >"$tmp/info" 2>&1 || fail "info: $(tail "$tmp/info")"
hosts=$(grep -o "host emu-host[0-9]" "$tmp/info" | sort -u | wc -l)
[[ $hosts -eq 4 ]] || fail "info saw $hosts hosts, expected 4: $(cat "$tmp/info")"
grep -q "4 ranks" "$tmp/info" || fail "info: not 4 ranks"

"${emu[@]}" sh -c '$LK_EMU_MPIRUN "$BIN" bench comm --min-bytes 1M --max-bytes 4M --iters 3' >"$tmp/bench" 2>&1 ||
  fail "bench comm: $(tail "$tmp/bench")"
cat "$tmp/bench"
/usr/bin/python3 - "$tmp/bench" <<'PY' || fail "bench comm over the emulated links"
import sys
rows = [l.split() for l in open(sys.argv[1]) if l[:1] == " " and len(l.split()) == 7]
assert len(rows) == 3, rows
for size, count, iters, t, alg, bus, wrong in rows:
    assert int(wrong) == 0, ("wrong elements", size)
    # a 10 Gbit/s link carries at most 1.25 GB/s: the bus bandwidth cannot exceed it much
    assert 0.01 < float(bus) < 1.25 * 1.15, ("busbw", size, bus)
PY

"${emu[@]}" sh -c '$LK_EMU_MPIRUN "$BIN" train --model mlp --steps 40 --batch 32 --train-limit 4000 \
  --val-limit 400 --threads 1 --log-every 20' >"$tmp/train" 2>&1 || fail "training: $(tail "$tmp/train")"
grep -q "on 4 ranks" "$tmp/train" || fail "the job did not run on 4 ranks"
grep -q "done: 40 steps" "$tmp/train" || fail "the job did not finish"
grep "gradient all-reduce\|done:" "$tmp/train"

# rank 2 stops without dying after step 3: the others' all-reduce across the links gives
# up after --comm-timeout, and every rank prints who did not arrive (the watchdog asks each
# over TCP) and the job ends with status 3
rc=0
"${emu[@]}" sh -c 'LK_INJECT_FAULT=stall:2:3 $LK_EMU_MPIRUN -x LK_INJECT_FAULT "$BIN" train --model mlp \
  --steps 40 --batch 32 --train-limit 4000 --val-limit 400 --threads 1 --comm-timeout 3' >"$tmp/stall" 2>&1 || rc=$?
[[ $rc -eq 3 ]] || fail "a stalled rank across hosts: exit $rc, expected 3: $(tail -5 "$tmp/stall")"
told=$(grep -c "error: MPI all-reduce (call [0-9]*) did not complete within 3 s (--comm-timeout); did not arrive: rank(s) 2;" "$tmp/stall" || true)
[[ $told -ge 3 ]] || fail "$told of the 3 waiting ranks report the stalled rank: $(grep error "$tmp/stall")"
grep -q "rank 2 (host emu-host2) did not arrive: its last was call [0-9]*, step 3: updating" "$tmp/stall" ||
  fail "the report does not say where rank 2 is: $(grep -m1 error "$tmp/stall")"
grep -m1 "rank 0: error" "$tmp/stall"

if "${emu[@]}" sh -c '$LK_EMU_MPIRUN "$BIN" train --model nosuch' >"$tmp/bad" 2>&1; then
  fail "a failing job succeeded"
fi
grep -q "unknown --model 'nosuch'" "$tmp/bad" || fail "the failing job does not say why"
after=$(ip netns list | wc -l)
[[ $after -eq $before ]] || fail "namespaces left behind: $(ip netns list)"
echo PASS
