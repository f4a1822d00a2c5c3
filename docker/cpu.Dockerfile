# optbench on CPU: PyTorch eager and onnxruntime's CPU provider.
# Build from the repository root:  docker build -f docker/cpu.Dockerfile -t optbench:cpu .
# Run the README's main command:    docker run --rm -v "$PWD/results:/results" -v optbench-cache:/cache optbench:cpu
# (docker/README.md says more.)
FROM python:3.11-slim-bookworm

# git: optbench records the commit and dirty flag of the checkout it runs in by running `git` in the
# working directory (optbench/environment.py), so the build context keeps .git (see .dockerignore).
# safe.directory: `docker run --user ...` runs as a uid that does not own the checkout, and git would
# otherwise refuse to read it (the reports would then say commit null).
# apt packages unpinned on purpose: Debian and Ubuntu drop superseded versions, so pins break builds.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/* \
    && git config --system --add safe.directory /opt/optbench

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    OPTBENCH_CACHE=/cache \
    PATH=/opt/optbench/.venv/bin:$PATH
WORKDIR /opt/optbench

# torch first, in its own layer (it changes least and weighs most), from PyTorch's CPU index:
# PyPI's torch==2.13.0 for Linux is the CUDA build, which pulls several GB of nvidia-* wheels.
# scripts/install.sh keeps a torch that .venv can already import, so it installs only the rest.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN python -m venv .venv \
    && .venv/bin/pip install --index-url "$TORCH_INDEX_URL" "torch==$TORCH_VERSION" \
    && .venv/bin/python -c "import torch; assert torch.version.cuda is None, torch.__version__"

COPY . .
RUN bash scripts/install.sh

# Reports go to the /results volume, the fine-tuned baseline and optimized models to the /cache volume
# ($OPTBENCH_CACHE), so the fine-tune runs once and later runs reuse it.
VOLUME ["/results", "/cache"]
CMD ["optbench", "run", "recipes/baseline.toml", "--results", "/results"]
