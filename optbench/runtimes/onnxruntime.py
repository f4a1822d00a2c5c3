"""onnxruntime runtime: CPU, CUDA and TensorRT execution providers, chosen by name, never a silent fallback."""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from optbench.artifact import ModelArtifact
from optbench.configs import toml_value
from optbench.environment import TF32_OVERRIDE, cuda_gpu_name, tensorrt_version
from optbench.errors import OptbenchError
from optbench.measure import Clock, HostClock
from optbench.onnx_graph import custom_operators, is_qdq, load_graph, remake, require_model_file

log = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
# ONNX's integer operators (dynamic quantization writes the first three), which TensorRT's parser does not
# take; it takes Q/DQ pairs
INTEGER_OPS = ("MatMulInteger", "DynamicQuantizeLinear", "ConvInteger", "QLinearMatMul", "QLinearConv")
PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
LEVELS = ("disable", "basic", "extended", "all")
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


OPTIONS = ("provider", "graph_optimization_level", "trt_int8", "trt_engine_cache", "trt_profile")
# the options that show in labels, each with the values it may take (runtimes.every_spec); a default among them
# (the device's provider, level "all") adds no label of its own; trt_profile shows in none
LABELLED = {
    "provider": tuple(PROVIDERS),
    "graph_optimization_level": LEVELS,
    "trt_int8": (True,),
    "trt_engine_cache": (False,),
}
Shape2 = tuple[int, int]  # (batch, sequence)


@dataclass(frozen=True)
class TrtProfile:
    """The TensorRT provider's one optimization profile, in (batch, sequence) for every input: TensorRT tunes
    its kernels for `opt` and runs any shape from `min` to `max` on them. Without one, the provider sizes
    its engine to the shapes it has seen and rebuilds it whenever a call falls outside them. One, not one per
    [bench] shape as the tensorrt step builds: the provider parses and builds several (an input named again in
    `trt_profile_*_shapes`) but keeps its execution context on the first, so a shape outside that one fails
    (microsoft/onnxruntime#31624, open, adds the switch)."""

    min: Shape2
    opt: Shape2
    max: Shape2

    @classmethod
    def parse(cls, table: Any) -> TrtProfile:
        example = "trt_profile = {min = [1, 1], opt = [1, 128], max = [64, 128]}"
        if not isinstance(table, dict) or sorted(table) != ["max", "min", "opt"]:
            raise OptbenchError(f"trt_profile takes min, opt and max as [batch, sequence], e.g. {example}")
        shapes = {}
        for key, value in table.items():
            if not (isinstance(value, list | tuple) and len(value) == 2) or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value
            ):
                raise OptbenchError(f"trt_profile {key} = {toml_value(value)}: give [batch, sequence], e.g. {example}")
            shapes[key] = (value[0], value[1])
        profile = cls(**shapes)
        if not all(lo <= mid <= hi for lo, mid, hi in zip(profile.min, profile.opt, profile.max, strict=True)):
            raise OptbenchError(f"trt_profile needs min <= opt <= max in batch and in sequence, not {table}")
        return profile

    @classmethod
    def for_bench(cls, shapes: list[tuple[int, int | str]], max_length: int, accuracy_batch_size: int) -> TrtProfile:
        """A profile that holds every benchmark shape and the accuracy pass's batches, tuned for the first
        benchmark shape (`seq_len = "data"` counts as max_length)."""
        fixed = [(batch, max_length if seq_len == "data" else int(seq_len)) for batch, seq_len in shapes]
        widest = max([batch for batch, _ in fixed] + [accuracy_batch_size])
        return cls((1, 1), fixed[0], (widest, max(max_length, *(seq for _, seq in fixed))))

    def check_holds(self, shapes: list[tuple[int, int | str]], max_length: int, accuracy_batch_size: int) -> None:
        """Refuse a profile that leaves out a shape the run feeds it, which the TensorRT provider would refuse
        on the GPU with its own error: the accuracy pass's batches (up to `accuracy_batch_size` rows, the last
        one shorter, each padded to its longest text: 1 to max_length tokens) and every benchmark shape's
        (whole batches, at their fixed length or, for `seq_len = "data"`, padded to their longest text)."""
        fed = [
            (
                f"the accuracy pass's batches (1 to {accuracy_batch_size} rows x 1 to {max_length} tokens)",
                (1, 1),
                (accuracy_batch_size, max_length),
            )
        ]
        for batch, seq_len in shapes:
            if seq_len == "data":
                fed.append(
                    (f"[bench] shape {batch} x data (1 to {max_length} tokens)", (batch, 1), (batch, max_length))
                )
            else:
                fed.append((f"[bench] shape {batch} x {seq_len}", (batch, int(seq_len)), (batch, int(seq_len))))
        for what, low, high in fed:
            if not (self._holds(low) and self._holds(high)):
                needed = TrtProfile.for_bench(shapes, max_length, accuracy_batch_size)
                raise OptbenchError(
                    f"trt_profile min = {list(self.min)}, max = {list(self.max)} does not hold {what}, which the "
                    f"run feeds it: set min = {list(needed.min)} and max to at least {list(needed.max)} "
                    "([batch, sequence]), or leave trt_profile out to have it filled in from [bench] and max_length"
                )

    def _holds(self, shape: Shape2) -> bool:
        return all(low <= n <= high for low, n, high in zip(self.min, shape, self.max, strict=True))

    def to_dict(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    @property
    def tag(self) -> str:
        """The profile in a folder name: "p1x1-1x128-64x128" (min, opt, max as batch x sequence)."""
        return "p" + "-".join(f"{shape[0]}x{shape[1]}" for shape in (self.min, self.opt, self.max))

    def provider_options(self, input_names: list[str]) -> dict[str, str]:
        """onnxruntime's `trt_profile_*_shapes` for these inputs ("input_ids:1x128,attention_mask:1x128")."""
        return {
            f"trt_profile_{key}_shapes": ",".join(f"{name}:{shape[0]}x{shape[1]}" for name in input_names)
            for key, shape in (("min", self.min), ("opt", self.opt), ("max", self.max))
        }


@dataclass(frozen=True)
class OrtOptions:
    """The onnxruntime runtime's options: the execution provider (`cpu` on cpu; `cuda` or `tensorrt` on
    cuda), the graph optimization level, and for the TensorRT provider INT8 (QDQ models), whether its
    engines are cached on disk (default true: an engine is built once per model, GPU and settings) and its
    optimization profile (a recipe fills it in from its [bench] shapes when not given, and checks a given
    one against them)."""

    provider: str
    level: str = "all"
    trt_int8: bool = False
    trt_engine_cache: bool = True
    trt_profile: TrtProfile | None = None

    @classmethod
    def parse(cls, device: str, precision: str, options: dict[str, Any]) -> OrtOptions:
        """Check a recipe's `options` table for runtime onnxruntime; a bad value is an error naming the fix."""
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise OptbenchError(f"runtime onnxruntime has no option(s) {unknown}: its options are {list(OPTIONS)}")
        provider = options.get("provider", device)
        if not isinstance(provider, str) or provider not in PROVIDERS or (provider == "cpu") != (device == "cpu"):
            raise OptbenchError(
                f'onnxruntime provider {provider!r} does not fit device {device!r}: use provider "cpu" on cpu, '
                '"cuda" or "tensorrt" on cuda'
            )
        level = options.get("graph_optimization_level", "all")
        if level not in LEVELS:
            raise OptbenchError(f"graph_optimization_level {level!r} is unknown: use one of {list(LEVELS)}")
        profile = TrtProfile.parse(options["trt_profile"]) if "trt_profile" in options else None
        parsed = cls(provider, level, options.get("trt_int8", False), options.get("trt_engine_cache", True), profile)
        if not isinstance(parsed.trt_int8, bool) or not isinstance(parsed.trt_engine_cache, bool):
            raise OptbenchError("onnxruntime options trt_int8 and trt_engine_cache take true or false")
        if provider != "tensorrt" and (parsed.trt_int8 or "trt_engine_cache" in options or profile):
            raise OptbenchError('trt_int8, trt_engine_cache and trt_profile are options of provider = "tensorrt"')
        if provider == "tensorrt" and precision == "bf16":
            raise OptbenchError('the TensorRT provider runs fp32 or fp16 (and INT8 with trt_int8): not "bf16"')
        return parsed

    def tag(self, device: str) -> str:
        """The settings in a runtime's label that differ from the defaults, e.g. "tensorrt-trt-int8"."""
        parts = [self.provider] if self.provider != device else []
        parts += [f"opt-{self.level}"] if self.level != "all" else []
        parts += ["trt-int8"] if self.trt_int8 else []
        parts += ["no-engine-cache"] if not self.trt_engine_cache else []
        return "-".join(parts)


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
        graph = load_graph(artifact.path / MODEL_FILE) if self.options.provider == "tensorrt" else None
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


def cannot_run(options: OrtOptions, precision: str, artifact: ModelArtifact, graph: Any = None) -> str | None:
    """Why a runtime with these settings would not run this model, or None: checked when the benchmark
    pairs models with runtimes (a mismatch is left out, logged) and again when the runtime loads. The
    TensorRT provider's checks read the graph: `graph` when the caller has it loaded, else the model file."""
    mismatch = precision_mismatch(options, precision, artifact.details.get("precision", "fp32"))
    if mismatch is not None or options.provider != "tensorrt":
        return mismatch
    graph = graph if graph is not None else load_graph(artifact.path / MODEL_FILE)
    unparsable = tensorrt_cannot_parse(graph)
    if unparsable:
        return unparsable
    qdq = is_qdq(graph)
    if options.trt_int8 and not qdq:
        return (
            "trt_int8 runs the INT8 layers of a QDQ model, and this model has none: add a quantize-static step "
            '(activation_type = "int8") before it, or use the tensorrt step with precision = "int8", which calibrates'
        )
    if qdq and not options.trt_int8:
        return (
            "this QDQ model's Q/DQ layers build only with INT8 enabled (TensorRT refuses them otherwise): "
            'set trt_int8 = true in the runtime\'s options, or use provider = "cuda" for this model'
        )
    return None


def precision_mismatch(options: OrtOptions, precision: str, model_precision: str) -> str | None:
    """Why a runtime at `precision` with these settings would not run an ONNX model of `model_precision`, or None: a
    model runs at its own precision, and an FP32 one at fp16 on the TensorRT provider too. The onnx step's precision
    says it before the model exists (a dry run, a recipe read)."""
    tensorrt_fp16 = options.provider == "tensorrt" and precision == "fp16" and model_precision == "fp32"
    if precision == model_precision or tensorrt_fp16:
        return None
    return (
        f"runtime onnxruntime at {precision} cannot run this {model_precision} ONNX model: "
        f'set precision = "{model_precision}", or export with the onnx step\'s precision = "{precision}"'
    )


def tensorrt_cannot_parse(graph: Any) -> str | None:
    """Why the TensorRT provider should not run this graph, or None. TensorRT's ONNX parser reads standard
    ONNX only, and not its integer operators: onnxruntime's fused operators, or dynamic quantization's
    MatMulInteger, would run on CUDA between many small engines, none of them covered by the optimization
    profile, which names the model's inputs."""
    custom = custom_operators(graph)
    if custom:
        return (
            f"the TensorRT provider runs models TensorRT parses whole, and this one holds onnxruntime's own "
            f"operators {custom[:4]}: give it an export with the onnx step's fuse = false "
            '(and no quantize-dynamic), or use provider = "cuda" for this model'
        )
    integer = sorted({n.op_type for n in graph.node if n.op_type in INTEGER_OPS})
    if integer:
        return (
            f"the TensorRT provider runs models TensorRT parses whole, and this one holds integer operators "
            f"{integer[:4]} (quantize-dynamic's), which TensorRT's parser does not take: give it a quantize-static "
            'model with trt_int8 = true, or use provider = "cuda" for this model'
        )
    return None


def trt_provider_options(cache: Path | None, precision: str, options: OrtOptions, inputs: list[str]) -> dict[str, Any]:
    """The TensorRT provider's options (onnxruntime's documented `trt_*` keys) for these settings, its engines
    cached in `cache` (None: `trt_engine_cache = false`)."""
    settings: dict[str, Any] = {
        "trt_fp16_enable": precision == "fp16",
        "trt_int8_enable": options.trt_int8,
        "trt_engine_cache_enable": options.trt_engine_cache,
        "trt_timing_cache_enable": options.trt_engine_cache,
    }
    if options.trt_profile is not None:
        settings.update(options.trt_profile.provider_options(inputs))
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        settings["trt_engine_cache_path"] = str(cache)
        settings["trt_timing_cache_path"] = str(cache)
    return settings


def _files_in(folder: Path | None) -> int | None:
    return None if folder is None or not folder.is_dir() else sum(1 for _ in folder.iterdir())
