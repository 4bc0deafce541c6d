#!/usr/bin/env bash
# ctest entry of the PyTorch reference check: skipped (77) only where PyTorch or the
# dataset is missing (tests/run.sh installs both, so CI runs it).
set -euo pipefail
refdump=$1
[[ -d /usr/share/datasets/fashion-mnist ]] || { echo "SKIP: dataset-fashion-mnist not installed"; exit 77; }
/usr/bin/python3 -c "import torch" 2>/dev/null || { echo "SKIP: python3-torch not installed"; exit 77; }
exec /usr/bin/python3 "$(dirname "$0")/check.py" --refdump "$refdump"
