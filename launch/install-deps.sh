#!/usr/bin/env bash
# Install the Debian packages lockstep needs, and only those that are missing.
#
#   launch/install-deps.sh               build + run dependencies, Fashion-MNIST
#   launch/install-deps.sh --with-torch  also what tests and bench/ use: CPU PyTorch and
#                                        NumPy, Slurm and munge (cluster/slurm), gnuplot,
#                                        clang and its OpenMP (the libFuzzer targets)
#
# Idempotent: when everything is installed it prints "all dependencies present" and
# touches nothing (no apt-get update, no sudo).
set -euo pipefail

usage() {
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
}

with_torch=0
for arg in "$@"; do
  case "$arg" in
    --with-torch) with_torch=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install-deps.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

packages=(
  build-essential cmake pkg-config
  libopenmpi-dev openmpi-bin libhwloc-dev
  libcmocka-dev libdnnl-dev zlib1g-dev libcjson-dev
  dataset-fashion-mnist
)
if [[ $with_torch -eq 1 ]]; then
  packages+=(python3-torch python3-numpy slurm-wlm munge gnuplot-nox clang libomp-dev)
fi

missing=()
for pkg in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  if [[ "$status" != "install ok installed" ]]; then
    missing+=("$pkg")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "all dependencies present"
  exit 0
fi

echo "install-deps.sh: missing packages: ${missing[*]}"

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-deps.sh: apt-get not found; this script supports Debian/Ubuntu only." >&2
  echo "install-deps.sh: please install these packages (or their equivalents) by hand: ${missing[*]}" >&2
  exit 1
fi

sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "install-deps.sh: not root and sudo is not available; run as root:" >&2
    echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  sudo_cmd=(sudo)
fi

export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "install-deps.sh: installed ${missing[*]}"
