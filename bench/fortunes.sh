#!/usr/bin/env bash
# Writes one English corpus from Debian's fortunes (package `fortunes`, installed when
# missing): every fortune file concatenated, ~2.5 MB of text, for `--data text:FILE`.
#
#   bench/fortunes.sh [OUT]        default: runs/fortunes.txt; prints the path
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:-$repo_root/runs/fortunes.txt}
dir=/usr/share/games/fortunes
if [[ ! -d $dir ]]; then
  sudo_cmd=(); [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q fortunes >/dev/null ||
    { "${sudo_cmd[@]}" apt-get update -q >/dev/null && "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q fortunes >/dev/null; }
fi
mkdir -p "$(dirname "$out")"
find "$dir" -maxdepth 1 -type f ! -name '*.dat' ! -name '*.u8' | sort | xargs cat > "$out.tmp"
mv "$out.tmp" "$out"
echo "$out"
