#!/usr/bin/env bash
# An emulated cluster on this machine: N "hosts", each a network namespace with its own
# hostname, joined by veth pairs to one bridge, every link shaped by tc (netem: rate and
# delay), and Open MPI launching its daemons inside them over real TCP (its rsh agent is
# ns-agent.sh, which enters the host's namespace). Shared memory between hosts is off
# (btl tcp,self), so every byte between hosts crosses the shaped links.
#
#   cluster/emulate/cluster.sh [--hosts N] [--ranks-per-host R] [--gbps B] [--latency-us A]
#                              -- COMMAND...
#
# COMMAND runs once, in the root namespace, with these set:
#   LK_EMU_MPIRUN   an mpirun command line (array-safe: use it unquoted) for N*R ranks
#                   on the emulated hosts, e.g.  $LK_EMU_MPIRUN build/lockstep train ...
#   LK_EMU_HOSTS, LK_EMU_RANKS, LK_EMU_GBPS, LK_EMU_LATENCY_US
# e.g.  cluster/emulate/cluster.sh --hosts 4 --gbps 10 --latency-us 50 -- \
#         sh -c '$LK_EMU_MPIRUN build/lockstep train --model cnn --steps 50'
#
# Everything it made (namespaces, links, bridge, the hostfile) is removed on exit, also
# when COMMAND fails or the script is interrupted; its exit status is COMMAND's. The link
# speed is per direction per host, the latency one way (a round trip crosses two links
# each way: 4 x the delay). Needs root (ip netns) and iproute2.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
hosts=4 ranks=1 gbps=10 lat=50
while [[ $# -gt 0 ]]; do
  case $1 in
    --hosts) hosts=$2; shift 2 ;;
    --ranks-per-host) ranks=$2; shift 2 ;;
    --gbps) gbps=$2; shift 2 ;;
    --latency-us) lat=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "cluster.sh: unknown argument '$1' (see the comment at the top)" >&2; exit 2 ;;
  esac
done
[[ $# -gt 0 ]] || { echo "cluster.sh: no command after --" >&2; exit 2; }
[[ $hosts =~ ^[0-9]+$ && $hosts -ge 1 && $hosts -le 32 ]] || { echo "cluster.sh: --hosts 1..32" >&2; exit 2; }
[[ $ranks =~ ^[0-9]+$ && $ranks -ge 1 ]] || { echo "cluster.sh: --ranks-per-host >= 1" >&2; exit 2; }
[[ $gbps =~ ^[0-9.]+$ && $lat =~ ^[0-9.]+$ ]] || { echo "cluster.sh: --gbps and --latency-us are numbers" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "cluster.sh: network namespaces need root" >&2; exit 77; }
command -v ip >/dev/null && command -v tc >/dev/null || { echo "cluster.sh: needs iproute2 (ip, tc)" >&2; exit 2; }

tag=lk$$                       # names of this run's objects (several runs can coexist)
subnet=10.$(( 100 + $$ % 100 )).$(( ($$ / 100) % 250 ))
bridge=${tag}br
work=$(mktemp -d /tmp/lk-emu.XXXXXX)
cleanup() {
  local rc=$?
  for ((h = 0; h < hosts; h++)); do ip netns del "${tag}h$h" 2>/dev/null || true; done
  ip link del "$bridge" 2>/dev/null || true
  ip link del "${tag}t0" 2>/dev/null || true
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# netem shapes rate and delay; kernels without sch_netem (like some VMs') still have tbf,
# which shapes the rate only: then the latency is the machine's own, and we say so
shape() { # DEV [NS]
  local ns=()
  [[ -n ${2:-} ]] && ns=(ip netns exec "$2")
  if [[ $netem -eq 1 ]]; then
    "${ns[@]}" tc qdisc add dev "$1" root netem rate "${gbps}gbit" delay "${lat}us" limit 100000
  else
    "${ns[@]}" tc qdisc add dev "$1" root tbf rate "${gbps}gbit" burst "$burst" latency 20ms
  fi
}
ip link add "${tag}t0" type veth peer name "${tag}t1"
netem=1
tc qdisc add dev "${tag}t0" root netem delay 1us 2>/dev/null || netem=0
ip link del "${tag}t0"
# tbf's bucket: at least one 10 ms tick of the rate (and 64 KiB). (1 ms of it halves what
# TCP gets through at 1 Gbit/s. The 10 ms are credit a real link does not have: an
# all-reduce after a pause of compute gets up to 1.25 MB through at once at 1 Gbit/s.)
burst=$(awk -v g="$gbps" 'BEGIN { b = g * 1e9 / 8 / 100; if (b < 65536) b = 65536; printf "%d", b }')
if [[ $netem -eq 0 && $lat != 0 ]]; then
  echo "cluster.sh: this kernel has no sch_netem: the links are shaped to ${gbps} Gbit/s (tbf) but get no" \
       "added delay; their latency is this machine's own (--latency-us $lat ignored)" >&2
  lat=0
fi

ip link add "$bridge" type bridge
ip addr add "$subnet.254/24" dev "$bridge"
ip link set "$bridge" up
: >"$work/hostfile"
: >"$work/hosts.map"
for ((h = 0; h < hosts; h++)); do
  ns=${tag}h$h addr=$subnet.$((h + 1))
  ip netns add "$ns"
  ip link add "${tag}v$h" type veth peer name "${tag}p$h"
  ip link set "${tag}v$h" netns "$ns"
  ip link set "${tag}p$h" master "$bridge" up
  ip -n "$ns" link set lo up
  ip -n "$ns" link set "${tag}v$h" name eth0
  ip -n "$ns" addr add "$addr/24" dev eth0
  ip -n "$ns" link set eth0 up
  shape eth0 "$ns"      # each host's egress: its link's rate (and the one-way delay)
  shape "${tag}p$h"     # the bridge side, towards the host: the other direction
  echo "$addr slots=$ranks" >>"$work/hostfile"
  echo "$addr $ns emu-host$h" >>"$work/hosts.map"
done
root=(); [[ $(id -u) -eq 0 ]] && root=(--allow-run-as-root)
export LK_EMU_MAP=$work/hosts.map
# the emulated hosts share this machine's cores: one thread a rank unless told otherwise
# (and MPI yields the core while it waits, as on an oversubscribed node: a rank spinning in
# an all-reduce would otherwise take cycles from the other hosts, which real hosts never do)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
export LK_EMU_HOSTS=$hosts LK_EMU_RANKS=$ranks LK_EMU_GBPS=$gbps LK_EMU_LATENCY_US=$lat
export LK_EMU_MPIRUN="mpirun ${root[*]} --hostfile $work/hostfile -n $((hosts * ranks)) --map-by ppr:$ranks:node \
--bind-to none --mca plm_rsh_agent $here/ns-agent.sh --mca plm_rsh_no_tree_spawn 1 \
--mca mpi_yield_when_idle 1 --mca btl tcp,self --mca btl_tcp_if_include $subnet.0/24 --mca oob_tcp_if_include $subnet.0/24 \
-x LK_EMU_MAP -x OMP_NUM_THREADS -x OPENBLAS_NUM_THREADS"
echo "emulated cluster: $hosts hosts x $ranks ranks on $subnet.0/24, links ${gbps} Gbit/s," \
     "$( [[ $netem -eq 1 ]] && echo "${lat} us added one way (netem)" || echo "rate only (tbf, no netem)")"
set +e
"$@"
rc=$?
set -e
exit $rc
