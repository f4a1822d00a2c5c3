"""The onnxruntime TensorRT provider's engine cache: the folder its engines and timing cache are kept in."""

from __future__ import annotations

import os
import re
from pathlib import Path

from optbench.artifact import ModelArtifact
from optbench.environment import TF32_OVERRIDE, cuda_gpu_name, tensorrt_version
from optbench.errors import OptbenchError
from optbench.runtimes.onnxruntime_options import OrtOptions


def trt_engine_cache_dir(artifact: ModelArtifact, precision: str, options: OrtOptions) -> Path:
    """Where the TensorRT provider keeps this model's engines: in optbench's cache, by model content,
    settings, GPU model and the onnxruntime and TensorRT versions (never in the artifact folder, whose content hash
    must not change). onnxruntime's docs say to clear the cache when either version changes; its engine names
    carry the precision flags and the GPU's compute capability, which two GPU models share (an L4 and an RTX 4090,
    8.9), while a TensorRT engine is tuned to, and runs only on, the GPU model it was built on: GPUs of a Ray
    cluster that share one cache volume would load each other's engines, so the GPU's name keys the folder too (an
    error, naming the fix, when the driver names no GPU). Engines built under NVIDIA_TF32_OVERRIDE=0
    (TensorRT's FP32 layers without TF32; the provider has no option for it) are kept apart, as their names would
    not tell, and so are engines of another `trt_profile`: onnxruntime names an engine by its graph, not its
    profile, so two profiles share one engine file, which it rebuilds (over the other's) whenever the profile
    differs from the `.profile` file it wrote beside it, a file written apart from the engine."""
    import onnxruntime

    from optbench.pipeline import default_cache_dir

    mode = precision
    mode += "-int8" if options.trt_int8 else ""
    mode += "-notf32" if os.environ.get(TF32_OVERRIDE) == "0" else ""
    mode += f"-{options.trt_profile.tag}" if options.trt_profile is not None else ""
    gpu = cuda_gpu_name()  # the driver's, not torch's: this runs in the job, which must not import torch
    if gpu is None:
        raise OptbenchError(
            "the TensorRT provider's engines are cached per GPU model, and the CUDA driver names no GPU: check that "
            "the NVIDIA driver is installed and a GPU visible (nvidia-smi, CUDA_VISIBLE_DEVICES), or set "
            "trt_engine_cache = false"
        )
    target = re.sub(r"[^A-Za-z0-9.]+", "-", gpu).strip("-")
    versions = f"ort{onnxruntime.__version__}-trt{tensorrt_version() or 'unknown'}"
    return default_cache_dir() / "ort-tensorrt" / f"{artifact.sha256[:16]}-{mode}-{target}-{versions}"
