#!/usr/bin/env bash
# Open MPI's rsh agent for the emulated cluster (cluster.sh): "ns-agent.sh HOST COMMAND..."
# runs COMMAND inside HOST's network namespace under HOST's own hostname (a new UTS
# namespace), as ssh would run it on a real host. The map (LK_EMU_MAP) lists
# "address namespace hostname" per emulated host.
set -euo pipefail
host=$1
shift
[[ $host == -* ]] && { echo "ns-agent.sh: options before the host are not supported: $host" >&2; exit 2; }
read -r _ ns name < <(awk -v h="$host" '$1 == h || $3 == h' "${LK_EMU_MAP:?not set: run through cluster.sh}")
[[ -n ${ns:-} ]] || { echo "ns-agent.sh: $host is not an emulated host (map $LK_EMU_MAP)" >&2; exit 2; }
# ssh hands the remote side one string to run through a shell: so does this
exec ip netns exec "$ns" unshare --uts sh -c 'hostname "$1"; shift; exec sh -c "$*"' sh "$name" "$@"
