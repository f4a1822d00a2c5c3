"""A TensorRT engine as the tensorrt step builds it and the tensorrt runtime runs it: its file, its optimization
profiles (and which one holds a shape), and the TensorRT version and GPU it runs on, since an engine runs only
where it was built. Both import TensorRT through `import_tensorrt`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from optbench.environment import cuda_gpu
from optbench.errors import OptbenchError

ENGINE_FILE = "model.engine"
INSTALL = (
    "run in NVIDIA's TensorRT container (nvcr.io/nvidia/tensorrt:26.04-py3, TensorRT 10), or pip install TensorRT 10 "
    "from NVIDIA's index (pip install --extra-index-url https://pypi.nvidia.com 'tensorrt>=10,<11') on a machine "
    "with a CUDA GPU; docker/ has an image"
)
# TensorRT 11 removed the implicitly typed precision flags and the INT8 calibrators the tensorrt step builds with.
SUPPORTED_MAJOR = 10


@dataclass(frozen=True)
class Profile:
    """One optimization profile: (batch, sequence) ranges shared by every input, tuned for `opt`."""

    min: tuple[int, int]
    opt: tuple[int, int]
    max: tuple[int, int]
    purpose: str

    def holds(self, shape: tuple[int, int]) -> bool:
        return all(low <= n <= high for low, n, high in zip(self.min, shape, self.max, strict=True))

    def volume(self) -> int:
        """How many (batch, sequence) shapes the profile admits: smaller is tighter."""
        return (self.max[0] - self.min[0] + 1) * (self.max[1] - self.min[1] + 1)

    def to_dict(self) -> dict[str, Any]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max), "purpose": self.purpose}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Profile:
        return cls(tuple(d["min"]), tuple(d["opt"]), tuple(d["max"]), d.get("purpose", ""))  # type: ignore[arg-type]


def pick_profile(candidates: list[Profile], shape: tuple[int, int]) -> int:
    """The index of the tightest profile that holds `shape` (batch, sequence); the first of equals."""
    holding = [i for i, p in enumerate(candidates) if p.holds(shape)]
    if not holding:
        ranges = "; ".join(f"{p.purpose}: {list(p.min)}..{list(p.max)}" for p in candidates)
        raise OptbenchError(
            f"no optimization profile of this TensorRT engine holds batch {shape[0]} x sequence {shape[1]} "
            f"(profiles: {ranges}): add the shape to the recipe's [bench] matrix or the tensorrt step's "
            "batch_sizes / seq_lens, and run the recipe again to rebuild the engine"
        )
    return min(holding, key=lambda i: candidates[i].volume())


def import_tensorrt() -> Any:
    """The `tensorrt` module, or an error that says how to get it."""
    try:
        import tensorrt
    except ImportError as exc:
        raise OptbenchError(
            f"the tensorrt step and runtime need TensorRT (import tensorrt failed: {exc}): {INSTALL}"
        ) from exc
    major = str(tensorrt.__version__).split(".")[0]
    if major != str(SUPPORTED_MAJOR):
        raise OptbenchError(
            f"TensorRT {tensorrt.__version__} is installed; the tensorrt step and runtime are written for TensorRT "
            f"{SUPPORTED_MAJOR} (FP16/INT8 builder flags, INT8 calibration): {INSTALL}"
        )
    return tensorrt


def detect_target() -> dict[str, str]:
    """The running TensorRT version, GPU name and compute capability; an error when either is missing."""
    trt = import_tensorrt()
    gpu = cuda_gpu()
    if gpu is None:
        import torch

        raise OptbenchError(f"TensorRT needs a CUDA GPU and torch sees none (torch {torch.__version__}): {INSTALL}")
    return {"tensorrt": str(trt.__version__), **gpu}


def check_target(built: dict[str, Any], running: dict[str, str]) -> None:
    """Refuse an engine built for another TensorRT version or GPU (TensorRT engines are not portable)."""
    differ = [
        f"{key} {built.get(key)!r} (running {running[key]!r})" for key in running if built.get(key) != running[key]
    ]
    if differ:
        raise OptbenchError(
            f"this TensorRT engine was built for another target: {', '.join(differ)}. Engines run only with the "
            "TensorRT version and GPU they were built on: run the recipe again on this machine to rebuild it"
        )
