"""The onnxruntime runtime's options, parsed and checked without importing onnxruntime: recipes, dry runs and the
benchmark's pairing of models with runtimes check them, and the TensorRT provider's settings are made from them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optbench.artifact import ModelArtifact
from optbench.configs import toml_value
from optbench.errors import OptbenchError
from optbench.onnx_graph import ONNX_FILE, custom_operators, is_qdq, load_graph

# ONNX's integer operators (dynamic quantization writes the first three), which TensorRT's parser does not
# take; it takes Q/DQ pairs
INTEGER_OPS = ("MatMulInteger", "DynamicQuantizeLinear", "ConvInteger", "QLinearMatMul", "QLinearConv")
PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
LEVELS = ("disable", "basic", "extended", "all")
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
            raise OptbenchError(
                f"trt_profile needs min <= opt <= max in batch and in sequence, not {toml_value(table)}"
            )
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


def cannot_run(options: OrtOptions, precision: str, artifact: ModelArtifact, graph: Any = None) -> str | None:
    """Why a runtime with these settings would not run this model, or None: checked when the benchmark
    pairs models with runtimes (a mismatch is left out, logged) and again when the runtime loads. The
    TensorRT provider's checks read the graph: `graph` when the caller has it loaded, else the model file."""
    exported = bool(artifact.lineage) and artifact.lineage[-1].name.startswith("onnx")  # onnx, onnx-fp16
    mismatch = precision_mismatch(options, precision, artifact.details.get("precision", "fp32"), exported)
    if mismatch is not None or options.provider != "tensorrt":
        return mismatch
    graph = graph if graph is not None else load_graph(artifact.path / ONNX_FILE)
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


def precision_mismatch(options: OrtOptions, precision: str, model_precision: str, exported: bool) -> str | None:
    """Why a runtime at `precision` with these settings would not run an ONNX model of `model_precision`, or None: a
    model runs at its own precision, and an FP32 one at fp16 on the TensorRT provider too. The onnx step's precision
    says it before the model exists (a dry run, a recipe read); only a model that step `exported` can be made at
    another precision (a quantized one takes and gives FP32 alone)."""
    tensorrt_fp16 = options.provider == "tensorrt" and precision == "fp16" and model_precision == "fp32"
    if precision == model_precision or tensorrt_fp16:
        return None
    fix = f'set precision = "{model_precision}"'
    if exported:
        fix += f', or export with the onnx step\'s precision = "{precision}"'
    return f"runtime onnxruntime at {precision} cannot run this {model_precision} ONNX model: {fix}"


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
