#!/usr/bin/env bash
# Gather, once, on a networked Debian 12 (bookworm) machine, the Debian packages that an
# air-gapped GPU node lacks for tests/run-gpu.sh: Open MPI, hwloc, cJSON, PCRE2, cmocka, oneDNN,
# zlib headers, pkg-config, make and the Fashion-MNIST data set, with the libraries they
# need at run time. The node has CUDA, cuDNN, NCCL, PyTorch, a C compiler, CMake and
# Python, but no network, no package manager use and none of these.
#
#   tests/gpu-kit.sh [--force] [--list]
#
#   --force   gather again even if the kit is complete
#   --list    print the package closure and exit (downloads nothing)
#
# Environment: LK_GPU_KIT (default .gpu-kit in the repository, which git ignores).
#
# The kit is the .debs fetched with `apt-get download` (Debian's own, checked by apt
# against the archive's signatures), renamed PACKAGE_ARCH.deb, and MANIFEST (package,
# version, architecture, file, bytes, sha256). The closure follows Depends and
# Pre-Depends (the first alternative, unless one is already taken) from the packages
# below, and stops at what the node certainly has (glibc, GCC and its run-time
# libraries) or does not use (Fortran, perl, ssh for remote launches, the maintainer
# scripts' tools, -dev packages only needed for static linking, hwloc's optional
# plugins that pull X11, libxml2 and ICU). zlib1g is taken although the node has it:
# zlib1g-dev's libz.so points at it. tests/run-gpu.sh unpacks every .deb with
# `dpkg -x` into /tmp/lk-kit on the node; nothing is installed. Running this again
# with the kit complete does nothing; the last lines say how to call the device tool.
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
kit=${LK_GPU_KIT:-$repo_root/.gpu-kit}

force=0 list=0
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    --list) list=1 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "gpu-kit.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

# What the build and the run need (CMakeLists.txt, tests/run-gpu.sh).
roots=(
  libopenmpi-dev libopenmpi3 openmpi-bin openmpi-common   # MPI, mpicc, mpirun
  libhwloc-dev libhwloc15                                 # topology and binding
  libcjson-dev libcjson1                                  # safetensors headers, config.json, specs
  libpcre2-dev libpcre2-8-0                               # GPT-2's pre-tokenisation regex
  libcmocka-dev libcmocka0                                # unit tests
  libdnnl-dev libdnnl2                                    # oneDNN: the CPU backend
  zlib1g-dev zlib1g                                       # gzip'd IDX, CRC-32
  pkgconf pkgconf-bin libpkgconf3                         # pkg_check_modules
  make                                                    # if the node has no ninja
  dataset-fashion-mnist                                   # cnn's data (30 MB)
)
# Not followed (glob patterns): on the node already, or not used there.
skip=(
  libc6 libc6-dev libc-dev-bin linux-libc-dev libcrypt1 libcrypt-dev
  libgcc-s1 'gcc-*-base' libstdc++6 'libstdc++-*-dev' libgomp1 libatomic1 libquadmath0
  gcc 'gcc-[0-9]*' 'g++*' 'cpp*' 'binutils*' 'gfortran*' 'flang-*' 'libgfortran*'
  perl perl-base 'perl-modules-*' 'libperl*'
  adduser debconf dpkg tar debianutils install-info
  openssh-client libjs-jquery libjs-jquery-ui
  libevent-dev libpmix-dev libibverbs-dev libnuma-dev libltdl-dev automake
  libhwloc-plugins
)

arch=$(dpkg --print-architecture)
apt_opts=()
if [[ $arch != amd64 ]]; then   # the node is x86-64: use amd64 lists of our own
  apt_opts=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64
            -oDir::State::Lists=/tmp/lk-kit-apt-lists)
  mkdir -p /tmp/lk-kit-apt-lists/partial
fi
. /etc/os-release
if [[ ${VERSION_CODENAME:-} != bookworm ]]; then
  echo "gpu-kit.sh: this is ${PRETTY_NAME:-an unknown system}; the kit is meant to be Debian 12 (bookworm)'s" >&2
  exit 1
fi

print_call() {
  local bytes
  bytes=$(du -cb "$kit"/*.deb | tail -1 | cut -f1)
  echo
  echo "kit: $kit, $(ls "$kit"/*.deb | wc -l) packages, $(awk -v b="$bytes" 'BEGIN { printf "%.1f MiB", b / 1048576 }')"
  echo "  of which dataset-fashion-mnist $(du -b "$kit"/dataset-fashion-mnist_*.deb | awk '{ printf "%.1f MiB", $1 / 1048576 }')"
  echo
  echo "device tool call (the GPU node: no network; the report comes back in \$OUT):"
  echo "  run  carry: [\"${kit#"$repo_root"/}\"]  timeout_s: 600"
  echo "       command: tests/run-gpu.sh"
  echo "then read gpu-report.md (and gpu-log.txt) among the returned files."
}

kit_complete() {
  [[ -f $kit/MANIFEST ]] || return 1
  local want
  want=$(printf '%s\n' "${roots[@]}" | sort | tr '\n' ' ')
  grep -qxF "# roots: $want" "$kit/MANIFEST" || return 1
  (cd "$kit" && grep -v '^#' MANIFEST | awk -F'\t' '{ print $6 "  " $4 }' | sha256sum -c --quiet -) \
    >/dev/null 2>&1
}

if [[ $list -eq 0 && $force -eq 0 ]] && kit_complete; then
  echo "gpu-kit.sh: the kit is complete (MANIFEST matches every .deb); --force gathers it again"
  print_call
  exit 0
fi

# Package lists: update once if a root has no candidate version.
if ! apt-cache "${apt_opts[@]}" show "${roots[@]}" >/dev/null 2>&1; then
  echo "gpu-kit.sh: apt-get update"
  apt-get "${apt_opts[@]}" update -qq
fi

# --- the closure: breadth first, one apt-cache call per level ---
declare -A chosen=()
skipped() {
  local p=$1 pat
  for pat in "${skip[@]}"; do
    # shellcheck disable=SC2053  # glob match on purpose
    [[ $p == $pat ]] && return 0
  done
  return 1
}
group=() group_done=0 next=()
resolve_group() {   # one Depends line with its alternatives (and providers of virtuals)
  local alt
  [[ ${#group[@]} -gt 0 ]] || return 0
  for alt in "${group[@]}"; do
    if [[ -n ${chosen[$alt]:-} ]] || skipped "$alt"; then group=() group_done=0; return 0; fi
  done
  next+=("${group[0]}")
  group=() group_done=0
}
queue=("${roots[@]}")
while [[ ${#queue[@]} -gt 0 ]]; do
  batch=()
  for p in "${queue[@]}"; do
    if [[ -z ${chosen[$p]:-} ]] && ! skipped "$p"; then chosen[$p]=1; batch+=("$p"); fi
  done
  queue=() next=()
  [[ ${#batch[@]} -gt 0 ]] || break
  while IFS= read -r line; do
    case "$line" in
      " |Depends: "*|" |PreDepends: "*)
        [[ $group_done -eq 1 ]] && resolve_group
        name=${line#*: }; [[ $name == \<* ]] || group+=("$name") ;;
      "  Depends: "*|"  PreDepends: "*)
        [[ $group_done -eq 1 ]] && resolve_group
        name=${line#*: }; [[ $name == \<* ]] || group+=("$name"); group_done=1 ;;
      "    "*)   # a provider of the virtual package named just above
        group+=("${line#"${line%%[! ]*}"}") ;;
      *) resolve_group ;;   # the next package's name
    esac
  done < <(apt-cache "${apt_opts[@]}" depends --no-recommends --no-suggests --no-conflicts \
             --no-breaks --no-replaces --no-enhances "${batch[@]}")
  resolve_group
  queue=("${next[@]}")
done
mapfile -t pkgs < <(printf '%s\n' "${!chosen[@]}" | sort)

if [[ $list -eq 1 ]]; then
  apt-cache "${apt_opts[@]}" show --no-all-versions "${pkgs[@]}" |
    awk '/^Package:/ { p = $2 } /^Version:/ { v = $2 }
         /^Size:/ { printf "%-28s %-30s %9d\n", p, v, $2; t += $2 }
         END { printf "%d packages, %.1f MiB\n", n, t / 1048576 }' n=${#pkgs[@]}
  exit 0
fi

# --- download into a fresh folder, then swap it in ---
tmp="$kit.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp"
chmod 777 "$tmp"   # apt's _apt user downloads there (else it warns and downloads as root)
trap 'rm -rf "$tmp"' EXIT
echo "gpu-kit.sh: downloading ${#pkgs[@]} packages: ${pkgs[*]}"
(cd "$tmp" && apt-get "${apt_opts[@]}" download -q "${pkgs[@]:?}" 2>&1 | grep -v '^Get:' || true)
[[ $(ls "$tmp"/*.deb 2>/dev/null | wc -l) -eq ${#pkgs[@]} ]] ||
  { echo "gpu-kit.sh: expected ${#pkgs[@]} .debs, got $(ls "$tmp"/*.deb 2>/dev/null | wc -l)" >&2; exit 1; }

# plain names (PACKAGE_ARCH.deb; the version is in MANIFEST): no '~' or '%3a' to carry
for deb in "$tmp"/*.deb; do
  f="$(dpkg-deb -f "$deb" Package)_$(dpkg-deb -f "$deb" Architecture).deb"
  [[ ${deb##*/} == "$f" ]] || mv "$deb" "$tmp/$f"
done
{
  echo "# lockstep GPU kit: Debian packages for tests/run-gpu.sh (dpkg -x, never installed)"
  echo "# made $(date -u +%FT%TZ) by tests/gpu-kit.sh on ${PRETTY_NAME}, architecture amd64"
  echo "# roots: $(printf '%s\n' "${roots[@]}" | sort | tr '\n' ' ')"
  echo "# package	version	architecture	file	bytes	sha256"
  for deb in "$tmp"/*.deb; do
    f=${deb##*/}
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$(dpkg-deb -f "$deb" Package)" "$(dpkg-deb -f "$deb" Version)" \
      "$(dpkg-deb -f "$deb" Architecture)" "$f" "$(stat -c %s "$deb")" "$(sha256sum "$deb" | cut -d' ' -f1)"
  done
} >"$tmp/MANIFEST"
chmod 755 "$tmp"
rm -rf "$kit"
mv "$tmp" "$kit"
trap - EXIT
echo "gpu-kit.sh: wrote $kit/MANIFEST"
print_call
