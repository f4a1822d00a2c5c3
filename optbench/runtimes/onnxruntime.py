"""onnxruntime runtime: CPU, CUDA and TensorRT execution providers, chosen by name, never a silent fallback."""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from optbench.artifact import ModelArtifact
from optbench.errors import OptbenchError
from optbench.measure import Clock, HostClock
from optbench.onnx_graph import ONNX_FILE, load_graph, remake, require_model_file
from optbench.runtimes.onnxruntime_options import PROVIDERS, OrtOptions, cannot_run, trt_provider_options
from optbench.runtimes.onnxruntime_trt_cache import trt_engine_cache_dir

# The CUDA provider runs float32 MatMul/Gemm in TF32 unless use_tf32 is off (onnxruntime's default is on), while
# PyTorch's CUDA matmuls, which the GPU paths are read against, run FP32.
CUDA_OPTIONS = {"use_tf32": False}


def open_session(
    path: Path, *, providers: list[Any], threads: int | None, level: str = "all", profile_dir: Path | None = None
) -> Any:
    """`inference_session`, where a file that does not load is a clear error, and so is a GPU provider that fails
    on a file the CPU provider loads (not the file's fault)."""
    require_model_file(path)
    try:
        return inference_session(path, providers, threads, level, profile_dir)
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/EPFail/RuntimeException types
        failure = _first_line(exc)
        cpu_failure = _cpu_failure(path, threads, level) if _names(providers) != [PROVIDERS["cpu"]] else failure
        if cpu_failure is None:
            raise OptbenchError(provider_failure(path, providers, failure)) from exc
        raise OptbenchError(
            f"onnxruntime cannot load {path} ({cpu_failure}): the file is damaged or not an ONNX model; {remake(path)}"
        ) from exc


def inference_session(
    path: Path,
    providers: list[Any],
    threads: int | None = None,
    level: str = "all",
    profile_dir: Path | None = None,
) -> Any:
    """onnxruntime's InferenceSession of `path` (errors as onnxruntime raises them), as optbench opens every one:
    explicit threads (None: onnxruntime's own) and graph optimization level, and without onnxruntime's Python
    fallback, which opens the session again on other providers (the CPU's, even from the CPU's alone) when a
    provider raises a RuntimeError or ValueError while it opens, and runs a call again on them when a provider
    fails (EPFail) in `run`, printing the error on stdout: a TensorRT run would be timed on CUDA, and a file the
    CPU provider refuses would put an "EP Error" banner in optbench's output before optbench's own error."""
    import onnxruntime as ort

    options = _session_options(threads, level, profile_dir)
    return ort.InferenceSession(str(path), options, providers=providers, enable_fallback=0)


def _session_options(threads: int | None, level: str, profile_dir: Path | None) -> Any:
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
    return options


def _cpu_failure(path: Path, threads: int | None, level: str, feed: dict[str, np.ndarray] | None = None) -> str | None:
    """The first line of onnxruntime's error when its CPU provider opens `path` (and runs `feed` on it, given one),
    or None when it does."""
    try:
        session = inference_session(path, [PROVIDERS["cpu"]], threads, level)
        if feed is not None:
            session.run(["logits"], feed)
    except Exception as exc:
        return _first_line(exc)
    return None


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _names(providers: list[Any]) -> list[str]:
    """The providers' names: onnxruntime takes a name or a (name, options) pair."""
    return [p if isinstance(p, str) else p[0] for p in providers]


def provider_failure(path: Path, providers: list[Any], failure: str, batch: str | None = None) -> str:
    """The error for a model that the CPU provider loads and the GPU providers do not open, or (`batch`, its shape,
    given) for a batch the CPU provider runs and they do not: the provider failed, not the file. The TensorRT
    provider builds its engine (or loads it from its cache) while the session opens when it has a profile, else on
    the first call, and fails with "TensorRT EP failed to create engine from network" (a layer it cannot build at
    this precision, GPU memory) or "could not deserialize engine from cache" (a cached engine or timing cache it
    cannot read, e.g. one cut short), and in a call with "TensorRT EP execution context enqueue failed"; the CUDA
    provider fails with "CUDA failure N: ..." on a GPU it cannot use."""
    import onnxruntime as ort

    name, settings = (providers[0], {}) if isinstance(providers[0], str) else providers[0]
    what = f"open {path}, which its CPU provider loads"
    if batch is not None:
        what = f"run {path} on a batch of {batch}, which its CPU provider runs"
    said = f"onnxruntime's {name} failed to {what} ({failure})"
    if name != PROVIDERS["tensorrt"]:
        return (
            f"{said}: the CUDA provider could not use the GPU. Check that it is visible and has free memory "
            f"(nvidia-smi), and that the driver, CUDA and cuDNN are those onnxruntime-gpu {ort.__version__} needs"
        )
    cache = settings.get("trt_engine_cache_path")
    retry = (
        f"If its engine cache {cache} holds a damaged engine, delete that folder and run again; if it still fails, try"
    )
    return (
        f"{said}: TensorRT could not {'build or load' if batch is None else 'build, load or run'} its engine (a layer "
        f"it cannot build at this precision, or GPU memory). {retry if cache else 'Try'} "
        'precision = "fp32", a trt_profile with a smaller max, or provider = "cuda" for this model'
    )


class OnnxRuntime:
    """An ONNX classifier in an onnxruntime session on one execution provider (CPU kept as the host).

    With the TensorRT provider (models of standard ONNX operators only: an unfused export), precision "fp16"
    lets TensorRT run an FP32 model's layers in FP16, and `trt_int8` runs a QDQ model's quantized layers in
    INT8 (which a QDQ model needs); the engine is built for the option's `trt_profile` while the session opens (the
    report's load time holds that cost; without a profile, onnxruntime would build it in the first call), and cached
    on disk for the next process."""

    def __init__(self, artifact: ModelArtifact, *, device: str, precision: str, threads: int, options: dict) -> None:
        import onnxruntime as ort

        self.options = OrtOptions.parse(device, precision, options)
        graph = load_graph(artifact.path / ONNX_FILE) if self.options.provider == "tensorrt" else None
        reason = cannot_run(self.options, precision, artifact, graph)
        if reason:
            raise OptbenchError(reason)
        inputs = [i.name for i in graph.input] if graph is not None else []  # the TensorRT profile names them
        self.level = self.options.level
        self.provider = PROVIDERS[self.options.provider]
        if self.provider not in ort.get_available_providers():
            raise OptbenchError(
                f"{self.provider} is not in this onnxruntime build (it has {ort.get_available_providers()}): "
                'install onnxruntime-gpu on an NVIDIA machine, or use device = "cpu"'
            )
        self.engine_cache = None
        cuda = (PROVIDERS["cuda"], CUDA_OPTIONS)
        self.providers: list[Any] = [self.provider]
        if self.options.provider == "cuda":
            self.providers = [cuda, PROVIDERS["cpu"]]
        if self.options.provider == "tensorrt":
            if self.options.trt_engine_cache:
                self.engine_cache = trt_engine_cache_dir(artifact, precision, self.options)
            settings = trt_provider_options(self.engine_cache, precision, self.options, inputs)
            # the TensorRT provider hands any node TensorRT does not take to CUDA, not the CPU
            self.providers = [(self.provider, settings), cuda, PROVIDERS["cpu"]]
        self.engines_before = _files_in(self.engine_cache)
        self.path = artifact.path / ONNX_FILE
        self.threads = threads
        self.session = open_session(self.path, providers=self.providers, threads=threads, level=self.level)
        if self.session.get_providers()[0] != self.provider:
            raise OptbenchError(
                f"onnxruntime did not register {self.provider} (it runs {self.session.get_providers()}): "
                "check the CUDA/TensorRT libraries onnxruntime-gpu needs"
            )
        self.input_names = [i.name for i in self.session.get_inputs()]

    def predict(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        return self._run(self.session, {name: batch[name] for name in self.input_names})

    def _run(self, session: Any, feed: dict[str, np.ndarray]) -> np.ndarray:
        """The logits of `feed` from `session`. A GPU provider that fails in a call (TensorRT's engine failing to run,
        or to build where the provider has no profile) on a batch the CPU provider runs is the provider's failure, said
        as when a session does not open; a batch the CPU provider refuses too keeps onnxruntime's own error."""
        try:
            return np.asarray(session.run(["logits"], feed)[0], dtype=np.float32)
        except Exception as exc:  # onnxruntime raises its own EPFail/Fail/RuntimeException types
            if self.provider == PROVIDERS["cpu"] or _cpu_failure(self.path, self.threads, self.level, feed) is not None:
                raise
            shape = " x ".join(str(n) for n in next(iter(feed.values())).shape)
            raise OptbenchError(provider_failure(self.path, self.providers, _first_line(exc), shape)) from exc

    def clock(self) -> Clock:
        """The host clock: session.run returns when its outputs are on the host, so nothing is left queued."""
        return HostClock()

    def describe(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        """Session settings, and how many graph nodes each execution provider ran on `batch`."""
        details = {
            "providers": self.session.get_providers(),
            "graph_optimization_level": self.level,
            "intra_op_threads": self.threads,
            "nodes_per_provider": self.nodes_per_provider(batch),
        }
        if self.engine_cache is not None:
            details["trt_engine_cache"] = {
                "path": str(self.engine_cache),
                "files_at_load": self.engines_before,
                "files_now": _files_in(self.engine_cache),
            }
        return details

    def nodes_per_provider(self, batch: dict[str, np.ndarray]) -> dict[str, int]:
        """Run one batch in a profiling session and count the nodes each provider executed: the
        only way to see a GPU model quietly running part of its graph on the CPU."""
        with tempfile.TemporaryDirectory(prefix="optbench-ort-") as tmp:
            session = open_session(
                self.path, providers=self.providers, threads=self.threads, level=self.level, profile_dir=Path(tmp)
            )
            self._run(session, {name: batch[name] for name in self.input_names})
            events = json.loads(Path(session.end_profiling()).read_text())
        nodes = {
            (event["name"], event["args"]["provider"])
            for event in events
            if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time")
        }
        return dict(Counter(provider for _, provider in nodes))


def _files_in(folder: Path | None) -> int | None:
    return None if folder is None or not folder.is_dir() else sum(1 for _ in folder.iterdir())
