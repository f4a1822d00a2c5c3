#!/usr/bin/env bash
# The GPU check: runs recipes/gpu.toml (PyTorch CUDA fp32/fp16/bf16, torch.compile, CUDA graphs,
# onnxruntime CUDA/TensorRT providers) and, where TensorRT is installed, recipes/gpu-tensorrt.toml,
# with the runtimes this machine has; prints a short table and writes gpu-check.md (what ran, what was
# missing and why) beside each run's reports. Under 8 minutes on one GPU (7.5 on an H200 with torch alone), plus
# the baseline's fine-tune where the cache lacks it: that runs on the CPU (5-8 min on 2 cores; a gpu_pack skips it).
# Usage: scripts/gpu_check.sh [--results DIR] [--cache DIR] [--recipes DIR] [-v]   (PYTHON=... to pick the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-.venv/bin/python}"
[ -x "$python" ] || python=python3
exec "$python" -m optbench.gpu_check "$@"
