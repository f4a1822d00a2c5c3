"""onnxruntime runtime: CPU, CUDA and TensorRT execution providers, chosen by name, never a silent fallback."""

from __future__ import annotations

import json
import logging
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from optbench.artifact import ModelArtifact
from optbench.errors import OptbenchError

log = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
LEVELS = ("disable", "basic", "extended", "all")


def open_session(
    path: Path, *, providers: list[str], threads: int | None, level: str = "all", profile_dir: Path | None = None
) -> Any:
    """An InferenceSession with explicit threads and graph optimization level; a bad file is a clear error."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    options.log_severity_level = 3
    if profile_dir is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(profile_dir / "ort-profile")
    if not path.is_file():
        raise OptbenchError(f"{path} does not exist: the artifact has no ONNX model; re-run the onnx step")
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/RuntimeException types
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise OptbenchError(
            f"onnxruntime cannot load {path} ({first_line}): the file is damaged or not an ONNX model; "
            "delete it from the cache and re-run the onnx step"
        ) from exc


class OnnxRuntime:
    """An ONNX classifier in an onnxruntime session on one execution provider (CPU kept as the host)."""

    def __init__(self, artifact: ModelArtifact, *, device: str, precision: str, threads: int, options: dict) -> None:
        import onnxruntime as ort

        if artifact.format != "onnx":
            raise OptbenchError(f"runtime onnxruntime runs ONNX models, not {artifact.format}: add an onnx step")
        model_precision = artifact.details.get("precision", "fp32")
        if precision != model_precision:
            raise OptbenchError(
                f"runtime onnxruntime at {precision} cannot run this {model_precision} ONNX model: "
                f'set precision = "{model_precision}", or export with the onnx step\'s precision = "{precision}"'
            )
        provider_name = options.get("provider", device)
        if provider_name not in PROVIDERS or (provider_name == "cpu") != (device == "cpu"):
            raise OptbenchError(
                f'onnxruntime provider {provider_name!r} does not fit device {device!r}: use provider "cpu" on cpu, '
                '"cuda" or "tensorrt" on cuda'
            )
        self.level = options.get("graph_optimization_level", "all")
        if self.level not in LEVELS:
            raise OptbenchError(f"graph_optimization_level {self.level!r} is unknown: use one of {list(LEVELS)}")
        self.provider = PROVIDERS[provider_name]
        if self.provider not in ort.get_available_providers():
            raise OptbenchError(
                f"{self.provider} is not in this onnxruntime build (it has {ort.get_available_providers()}): "
                'install onnxruntime-gpu on an NVIDIA machine, or use device = "cpu"'
            )
        self.providers = [self.provider] if self.provider == PROVIDERS["cpu"] else [self.provider, PROVIDERS["cpu"]]
        self.path = artifact.path / MODEL_FILE
        self.threads = threads
        self.session = open_session(self.path, providers=self.providers, threads=threads, level=self.level)
        if self.session.get_providers()[0] != self.provider:
            raise OptbenchError(
                f"onnxruntime did not register {self.provider} (it runs {self.session.get_providers()}): "
                "check the CUDA/TensorRT libraries onnxruntime-gpu needs"
            )
        self.input_names = [i.name for i in self.session.get_inputs()]

    def predict(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        feed = {name: batch[name] for name in self.input_names}
        return np.asarray(self.session.run(["logits"], feed)[0], dtype=np.float32)

    def sync(self) -> None:
        """session.run returns when its outputs are on the host: nothing is left queued."""

    def describe(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        """Session settings, and how many graph nodes each execution provider ran on `batch`."""
        return {
            "providers": self.session.get_providers(),
            "graph_optimization_level": self.level,
            "intra_op_threads": self.threads,
            "nodes_per_provider": self.nodes_per_provider(batch),
        }

    def nodes_per_provider(self, batch: dict[str, np.ndarray]) -> dict[str, int]:
        """Run one batch in a profiling session and count the nodes each provider executed: the
        only way to see a GPU model quietly running part of its graph on the CPU."""
        with tempfile.TemporaryDirectory(prefix="optbench-ort-") as tmp:
            session = open_session(
                self.path, providers=self.providers, threads=self.threads, level=self.level, profile_dir=Path(tmp)
            )
            session.run(["logits"], {name: batch[name] for name in self.input_names})
            events = json.loads(Path(session.end_profiling()).read_text())
        nodes = {
            (event["name"], event["args"]["provider"])
            for event in events
            if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time")
        }
        return dict(Counter(provider for _, provider in nodes))
