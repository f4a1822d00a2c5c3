"""INT8 quantization of ONNX classifiers with onnxruntime: dynamic, and static (QDQ) with calibration.

Defaults come from a look at the hardware (see `preflight`), and where the documentation leaves the
choice open (the weight type of dynamic quantization) from a short measurement on the real model.
Every choice and its reason is recorded in the manifest.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from optbench.artifact import ModelArtifact
from optbench.calibration import CalibrationReader
from optbench.configs import check_seed, config_to_dict
from optbench.data import LabelledData
from optbench.encoding import batches, load_tokenizer
from optbench.environment import cpu_flags, cpu_model
from optbench.errors import OptbenchError
from optbench.formats import check_step_input
from optbench.onnx_graph import ONNX_FILE, is_qdq, load_graph

log = logging.getLogger(__name__)

WEIGHT_OPS = ("MatMul", "Gemm", "Attention")  # the ops with weights, which the INT8 share counts
# quantize-dynamic's default: onnxruntime's dynamic quantizer rewrites Gemm as MatMul + Add, so "MatMul" takes it;
# a fused Attention holds the Q/K/V projection
DYNAMIC_OPS = ("MatMul", "Attention")
INT8_OPS = ("MatMulInteger", "QLinearMatMul", "DynamicQuantizeMatMul", "QGemm", "MatMulIntegerToFloat", "QAttention")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
DEFAULT_PERCENTILE = 99.999  # of the absolute activations the percentile calibration keeps in range
TIMING_ROUNDS = 5  # interleaved rounds when timing candidate weight types
TIMING_LENGTH = 128  # tokens per row when timing them (fewer when the dataset's max_length is lower)
Int8Type = Literal["auto", "int8", "uint8"]

ONNXRUNTIME_LIBRARIES = ("onnx", "onnxruntime", "onnxruntime-gpu")  # their versions key onnxruntime INT8's cache


@dataclass(frozen=True)
class DynamicQuantizeConfig:
    """Dynamic INT8: weights quantized ahead of time, activations at run time.

    `backend = "onnxruntime"` quantizes an ONNX model (put an onnx step first); `backend = "torch"`
    quantizes a Hugging Face checkpoint's Linear layers with torchao, PyTorch's current quantization
    library, a dependency of optbench).
    """

    name: ClassVar[str] = "quantize-dynamic"
    quantizes: ClassVar[bool] = True  # its output is INT8, and its input must be FP32 (recipe._check_step_order)
    version: ClassVar[int] = 2  # 2: weight types timed in interleaved rounds (the choice may differ)
    backend: Literal["onnxruntime", "torch"] = "onnxruntime"
    weight_type: Int8Type = "auto"
    per_channel: bool = True  # measured: same speed as per-tensor, a fraction of its accuracy loss (FINDINGS)
    reduce_range: bool | None = None
    op_types: tuple[str, ...] = DYNAMIC_OPS
    exclude_nodes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        """Refuse, when the recipe is read, op types onnxruntime's dynamic quantizer cannot quantize, and the
        onnxruntime backend's knobs on the torch backend, which has none, naming those given. The defaults are
        left to `apply_dynamic`: reading the quantizer's registry imports onnxruntime's quantization package, half
        a second on every command that reads a recipe."""
        if self.backend != "torch":
            check_op_types_given(self.op_types)
            if not set(self.op_types) <= set(DYNAMIC_OPS):
                _check_dynamic_op_types(self.op_types)
            return
        onnx_only = {
            "weight_type": self.weight_type not in ("auto", "int8"),
            "per_channel": not self.per_channel,
            "reduce_range": bool(self.reduce_range),
            "op_types": self.op_types != DYNAMIC_OPS,
            "exclude_nodes": bool(self.exclude_nodes),
        }
        given = [f"{key} = {json.dumps(getattr(self, key))}" for key, set_ in onnx_only.items() if set_]
        if given:
            raise OptbenchError(
                f'backend = "torch" takes none of {", ".join(given)}: torchao\'s scheme is '
                "symmetric per-channel INT8 weights on every Linear layer; leave them out, or quantize with "
                'backend = "onnxruntime" after an onnx step'
            )

    @property
    def input_format(self) -> str:
        return "onnx" if self.backend == "onnxruntime" else "hf"

    @property
    def libraries(self) -> tuple[str, ...]:
        """The distributions whose releases make this step's output: their versions key its cache."""
        return ONNXRUNTIME_LIBRARIES if self.backend == "onnxruntime" else ("torch", "torchao")

    @property
    def output_format(self) -> str:
        return self.input_format

    @property
    def ends_chain(self) -> str | None:
        """Why no step may follow this one, if none may: torchao's scheme is applied when the torch runtime
        loads the checkpoint, and a step after it would load the FP32 weights and drop it."""
        return "its INT8 scheme is applied only by the torch runtime" if self.backend == "torch" else None

    def build_target(self) -> dict[str, Any] | None:
        """What this machine decides for the settings left to it (the preflight's range reduction, the weight
        type timed here): part of the cache key, so machines sharing a cache each get their own choice."""
        if self.backend == "torch":
            return None
        target: dict[str, Any] = {}
        if self.reduce_range is None:
            target["reduce_range"] = preflight(cpu_flags()).reduce_range
        if self.weight_type == "auto":
            target["timed_on"] = cpu_model()
        return target or None


@dataclass(frozen=True)
class StaticQuantizeConfig:
    """onnxruntime static INT8 in QDQ format, calibrated on train-split samples (never the test split)."""

    name: ClassVar[str] = "quantize-static"
    quantizes: ClassVar[bool] = True  # its output is INT8, and its input must be FP32 (recipe._check_step_order)
    version: ClassVar[int] = 3  # 3: histogram methods pad calibration batches to one length
    input_format: ClassVar[str] = "onnx"
    output_format: ClassVar[str] = "onnx"
    libraries: ClassVar[tuple[str, ...]] = ONNXRUNTIME_LIBRARIES
    calibration_method: str = "minmax"
    calibration_samples: int = 128
    calibration_batch_size: int = 16
    percentile: float = DEFAULT_PERCENTILE
    activation_type: Int8Type = "auto"
    weight_type: Int8Type = "auto"
    per_channel: bool = False
    reduce_range: bool | None = None
    # zero points of 0 for activations: what TensorRT needs to build from this model (with activation_type int8)
    activation_symmetric: bool = False
    op_types: tuple[str, ...] = ("MatMul",)
    exclude_nodes: tuple[str, ...] = ()
    exclude_op_types: tuple[str, ...] = ()
    seed: int = 0
    reads_data_length: ClassVar[bool] = True  # calibration batches are cut at the dataset's max_length

    def __post_init__(self) -> None:
        if self.calibration_method not in CALIBRATION_METHODS:
            raise OptbenchError(
                f"calibration_method {self.calibration_method!r} is unknown: use one of {list(CALIBRATION_METHODS)}"
            )
        if self.calibration_samples < 1:
            raise OptbenchError(
                f"calibration_samples={self.calibration_samples}: calibration needs 1 or more "
                "train-split samples (128 is a good start)"
            )
        if self.calibration_batch_size < 1:
            raise OptbenchError(f"calibration_batch_size={self.calibration_batch_size}: use 1 or more")
        if not 90 <= self.percentile < 100:
            raise OptbenchError(f"percentile={self.percentile}: use a value in [90, 100)")
        if self.calibration_method != "percentile" and self.percentile != DEFAULT_PERCENTILE:
            raise OptbenchError(
                f"percentile={self.percentile} is the percentile calibration's, and calibration_method is "
                f'{self.calibration_method!r}: set calibration_method = "percentile", or drop percentile'
            )
        check_op_types_given(self.op_types)
        check_seed(self.seed)
        _check_int8_types(self.activation_type, self.weight_type)

    def build_target(self) -> dict[str, Any] | None:
        """The preflight's choices for the settings left to this machine: part of the cache key, so machines
        sharing a cache each get their own."""
        if "auto" not in (self.activation_type, self.weight_type) and self.reduce_range is not None:
            return None
        hardware = preflight(cpu_flags())
        return {"preflight": [hardware.activation_type, hardware.weight_type, hardware.reduce_range]}


@dataclass(frozen=True)
class Preflight:
    """INT8 defaults for this machine and why."""

    activation_type: str
    weight_type: str
    reduce_range: bool
    reason: str


def preflight(cpu_flags: list[str]) -> Preflight:
    """Defaults from onnxruntime's guidance and from measurement: U8S8 on x86, S8S8 on ARM.

    Without VNNI (or AMX) onnxruntime suggests 7-bit weights (`reduce_range`) against saturation of
    the U8S8 kernel (VPMADDUBSW); on MiniLM on an AVX2-only EPYC that cost about 1 point of accuracy
    for no speed (see FINDINGS), so it stays off unless asked for; the reason says so."""
    flags = set(cpu_flags)
    if flags & {"asimd", "sve"}:
        return Preflight("int8", "int8", False, "ARM CPU: symmetric INT8 activations and weights")
    if flags & {"avx512_vnni", "avx_vnni", "amx_int8"}:
        found = sorted(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})
        return Preflight("uint8", "int8", False, f"x86 with {', '.join(found)}: U8S8 without range reduction")
    return Preflight(
        "uint8",
        "int8",
        False,
        "x86 without VNNI/AMX: U8S8; reduce_range off (measured: 7-bit weights cost accuracy, gained no speed)",
    )


def _check_int8_types(activation_type: str, weight_type: str, chosen: str = "") -> None:
    """Refuse INT8 activations with UINT8 weights (S8U8), which onnxruntime's static quantizer does not write: its
    ValueError came after the model was exported and prepared. `chosen` says where "auto" made the activation type
    (a recipe's error names the step; one raised as the step runs says it)."""
    if (activation_type, weight_type) == ("int8", "uint8"):
        raise OptbenchError(
            f"activation_type int8{chosen} with weight_type uint8 is a format onnxruntime does not "
            'quantize to (S8U8): set weight_type = "int8" (S8S8), or activation_type = "uint8" (U8U8)'
        )


def apply_dynamic(
    config: DynamicQuantizeConfig, artifact: ModelArtifact, data: LabelledData, out_dir: Path
) -> ModelArtifact:
    """Quantize the weights of `artifact` to INT8; activations are quantized per call."""
    if config.backend == "torch":
        from optbench.steps.torch_int8 import quantize_linear_layers

        return quantize_linear_layers(config, artifact, data, out_dir)
    from onnxruntime.quantization import quantize_dynamic

    _check_dynamic_op_types(config.op_types)  # the defaults too, which the config left unchecked
    source = _source_model(config, artifact)
    graph = load_graph(source)
    _refuse_int8(graph, config.name)
    _check_selection(graph, config.op_types, config.exclude_nodes)
    hardware = preflight(cpu_flags())
    reduce_range = hardware.reduce_range if config.reduce_range is None else config.reduce_range
    choices: dict[str, Any] = {"preflight": hardware.reason, "reduce_range": reduce_range}
    candidates = ["int8", "uint8"] if config.weight_type == "auto" else [config.weight_type]
    excluded = _dynamic_exclusions(graph, config.exclude_nodes)
    for weight_type in candidates:
        path = out_dir / f"{weight_type}.onnx"
        quantize_dynamic(
            str(source),
            str(path),
            op_types_to_quantize=list(config.op_types),
            per_channel=config.per_channel,
            reduce_range=reduce_range,
            weight_type=_quant_type(weight_type),
            nodes_to_exclude=excluded,
            extra_options={"DefaultTensorType": _float_type()},
        )
        _check_written(path, config.name)  # before the timing loads it
    timings = (
        _time_models({c: out_dir / f"{c}.onnx" for c in candidates}, artifact.path, data) if len(candidates) > 1 else {}
    )
    weight_type = min(timings, key=timings.get) if timings else candidates[0]
    if timings:
        choices["weight_type_p50_ms"] = timings
        choices["weight_type_reason"] = (
            f"measured at batch 1, {TIMING_ROUNDS} interleaved rounds: {weight_type} weights were faster here"
        )
        log.info("dynamic INT8 weight types, p50 ms at batch 1: %s -> %s", timings, weight_type)
    (out_dir / f"{weight_type}.onnx").rename(out_dir / ONNX_FILE)
    for other in candidates:
        (out_dir / f"{other}.onnx").unlink(missing_ok=True)
    choices["weight_type"] = weight_type
    return _result(config, artifact, out_dir, choices)


def apply_static(
    config: StaticQuantizeConfig, artifact: ModelArtifact, data: LabelledData, out_dir: Path
) -> ModelArtifact:
    """Calibrate on train-split samples and write a QDQ model; activation x activation MatMuls
    (attention scores) stay in FP32, since QDQ quantizes them with poor accuracy. Measured peak memory
    for 512 samples of the built-in data: MinMax 1.1 GB, Entropy 7.6 GB (histograms keep every batch)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source = _source_model(config, artifact)
    graph = load_graph(source)
    _refuse_int8(graph, config.name)
    _check_selection(graph, config.op_types, config.exclude_nodes, config.exclude_op_types)
    hardware = preflight(cpu_flags())
    activation_type = hardware.activation_type if config.activation_type == "auto" else config.activation_type
    weight_type = hardware.weight_type if config.weight_type == "auto" else config.weight_type
    reduce_range = hardware.reduce_range if config.reduce_range is None else config.reduce_range
    _check_int8_types(activation_type, weight_type, f' ({config.name}: this machine\'s choice for "auto")')
    prepared = out_dir / "prepared.onnx"
    quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    _check_written(prepared, config.name)
    prepared_graph = load_graph(prepared)
    excluded = sorted(
        set(config.exclude_nodes)
        | _activation_matmuls(prepared_graph)
        | _nodes_of(prepared_graph, config.exclude_op_types)
    )
    histogram = config.calibration_method != "minmax"  # its calibrators stack the batches into one array
    reader = CalibrationReader(
        artifact.path,
        data,
        config.calibration_samples,
        config.calibration_batch_size,
        config.seed,
        one_length=histogram,
        equal_batches=histogram,
        inputs={i.name for i in prepared_graph.input},
    )
    started = time.perf_counter()
    quantize_static(
        str(prepared),
        str(out_dir / ONNX_FILE),
        reader,
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=list(config.op_types),
        per_channel=config.per_channel,
        reduce_range=reduce_range,
        activation_type=_quant_type(activation_type),
        weight_type=_quant_type(weight_type),
        nodes_to_exclude=excluded,
        calibrate_method={
            "minmax": CalibrationMethod.MinMax,
            "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile,
        }[config.calibration_method],
        extra_options={
            "OpTypesToExcludeOutputQuantization": ["MatMul"],
            "ActivationSymmetric": config.activation_symmetric,
            "CalibPercentile": config.percentile,
            # not CalibMaxIntermediateOutputs: in onnxruntime 1.32 MinMax drops the batches it "merges"
            "DefaultTensorType": _float_type(),
        },
    )
    prepared.unlink()
    _check_written(out_dir / ONNX_FILE, config.name)
    choices = {
        "preflight": hardware.reason,
        "activation_type": activation_type,
        "weight_type": weight_type,
        "reduce_range": reduce_range,
        "calibration": {
            "method": config.calibration_method,
            "samples": reader.rows,
            "seq_len": reader.seq_len,
            "split": "train",
            "batch_size": reader.batch_size,
            "seconds": round(time.perf_counter() - started, 1),
        },
        "excluded_nodes": len(excluded),
    }
    return _result(config, artifact, out_dir, choices)


def quantized_share(path: Path) -> dict[str, Any]:
    """How many MatMul/Gemm/Attention nodes run in INT8: integer ops, or float ops whose weight comes
    from a DequantizeLinear (QDQ). The total counts every such node, activation x activation ones too."""
    graph = load_graph(path)
    producers = {out: node.op_type for node in graph.node for out in node.output}
    counts = Counter(node.op_type for node in graph.node)
    int8 = sum(counts[op] for op in INT8_OPS)
    qdq = sum(
        1
        for node in graph.node
        if node.op_type in WEIGHT_OPS and any(producers.get(i) == "DequantizeLinear" for i in node.input[1:2])
    )
    total_float = sum(counts[op] for op in WEIGHT_OPS)
    quantized = int8 + qdq
    total = int8 + total_float
    return {
        "quantized": quantized,
        "total": total,
        "share": round(quantized / total, 4) if total else 0.0,
        "int8_operators": {op: counts[op] for op in INT8_OPS if counts[op]},
    }


def _check_written(path: Path, step: str) -> None:
    """Refuse a file the quantizer (or its pre-processing) just wrote that onnx or onnxruntime will not read,
    naming the quantizer: the same settings write the same file again."""
    from optbench.steps.onnx import check_onnx

    check_onnx(path, "onnxruntime's quantizer", f"try other settings of {step}, or leave it out for this model")


def _result(config: Any, artifact: ModelArtifact, out_dir: Path, choices: dict[str, Any]) -> ModelArtifact:
    from optbench.steps.onnx import copy_hf_files

    path = out_dir / ONNX_FILE
    copy_hf_files(artifact.path, out_dir)
    details = {**choices, "matmul_quantized": quantized_share(path), "precision": "fp32"}
    share = details["matmul_quantized"]
    log.info("%s: %d of %d MatMul/Gemm/Attention nodes in INT8", config.name, share["quantized"], share["total"])
    return artifact.derive(out_dir, step=config.name, config=config_to_dict(config), format="onnx", details=details)


def _source_model(config: Any, artifact: ModelArtifact) -> Path:
    """The FP32 ONNX file the quantizer reads (load_graph refuses it missing)."""
    check_step_input(config, artifact)
    if artifact.details.get("precision", "fp32") != "fp32":
        raise OptbenchError(f"{config.name} needs an FP32 ONNX model, not {artifact.details['precision']}")
    return artifact.path / ONNX_FILE


def _refuse_int8(graph: Any, step: str) -> None:
    """Refuse a model that is INT8 already (a quantize step's output): quantizing it again would label the
    earlier scheme as this one."""
    found = sorted({node.op_type for node in graph.node if node.op_type in INT8_OPS})
    if found or is_qdq(graph):
        raise OptbenchError(
            f"{step} needs an FP32 model, and this one is INT8 already ({', '.join(found) or 'Q/DQ nodes'}): "
            "quantize the FP32 export instead (one quantize step per chain)"
        )


def check_op_types_given(op_types: tuple[str, ...]) -> None:
    """Refuse `op_types = []`: onnxruntime's quantizers read an empty list as every op type they can quantize."""
    if not op_types:
        raise OptbenchError(
            "op_types = []: onnxruntime reads an empty list as every op type it can quantize; name them, "
            'e.g. ["MatMul"]'
        )


def _check_dynamic_op_types(op_types: tuple[str, ...]) -> None:
    """Refuse op types with no integer operator in onnxruntime's dynamic quantizer (its IntegerOpsRegistry, the
    table `quantize_dynamic` itself reads): it would leave those nodes FP32, silently."""
    from onnxruntime.quantization.registry import IntegerOpsRegistry

    refused = [t for t in op_types if t not in IntegerOpsRegistry]
    if refused:
        raise OptbenchError(
            f"cannot quantize op type(s) {refused}: onnxruntime's dynamic quantizer quantizes "
            f'{sorted(IntegerOpsRegistry)}. It rewrites Gemm nodes as MatMul + Add first, so "MatMul" quantizes '
            "them; for other op types use quantize-static (QDQ)"
        )


def _check_selection(
    graph: Any, op_types: tuple[str, ...], exclude_nodes: tuple[str, ...], exclude_op_types: tuple[str, ...] = ()
) -> None:
    """Refuse settings that name nothing in the graph, each error naming what the graph has: node names to
    exclude, op types to exclude, op types to quantize of which none is there, and a mis-cased op type."""
    names = {node.name for node in graph.node}
    missing = [n for n in exclude_nodes if n not in names]
    if missing:
        examples = [node.name for node in graph.node if node.op_type in WEIGHT_OPS][:3]
        raise OptbenchError(
            f"node(s) {missing} are not in the ONNX graph: exclude_nodes takes node names such as {examples}"
        )
    present = sorted({node.op_type for node in graph.node})
    by_case = {t.lower(): t for t in present}
    miscased = [t for t in (*op_types, *exclude_op_types) if t not in present and t.lower() in by_case]
    if miscased:
        spelt = [by_case[t.lower()] for t in miscased]
        raise OptbenchError(f"op type(s) {miscased} are spelt {spelt} in ONNX: op types are case-sensitive")
    absent = [t for t in exclude_op_types if t not in present]
    if absent:
        raise OptbenchError(f"exclude_op_types {absent} match no node: the graph's op types are {present}")
    if not set(op_types) & set(present):
        raise OptbenchError(
            f"op_types {list(op_types)} match no node, so nothing would be quantized: the graph's op types are "
            f"{present}"
        )


def _dynamic_exclusions(graph: Any, names: tuple[str, ...]) -> list[str]:
    """`names` as onnxruntime's dynamic quantizer sees them: it rewrites a Gemm as MatMul + Add before it reads
    them, naming the MatMul `<Gemm's name>_MatMul`, so an excluded Gemm is excluded by that name too."""
    gemms = {node.name for node in graph.node if node.op_type == "Gemm"}
    return [*names, *(f"{name}_MatMul" for name in names if name in gemms)]


def _activation_matmuls(graph: Any) -> set[str]:
    """MatMul nodes with no constant input (Q x K^T, scores x V): QDQ would quantize both sides."""
    constants = {init.name for init in graph.initializer}
    constants |= {out for node in graph.node if node.op_type == "Constant" for out in node.output}
    return {node.name for node in graph.node if node.op_type == "MatMul" and not constants & set(node.input)}


def _nodes_of(graph: Any, op_types: tuple[str, ...]) -> set[str]:
    return {node.name for node in graph.node if node.op_type in op_types}


def _time_models(paths: dict[str, Path], model_dir: Path, data: LabelledData) -> dict[str, float]:
    """p50 ms of each model at batch 1, sequence 128 (or the dataset's max_length when shorter: the model may
    take fewer positions), on a few validation texts (never the test split),
    timed in interleaved rounds (A B A B ...) so that a drift of the machine's speed ranks no candidate
    wrongly; enough to rank candidates."""
    from optbench.measure import Latency, Timing, time_calls
    from optbench.runtimes.onnxruntime import open_session

    tokenizer = load_tokenizer(model_dir)
    length = min(TIMING_LENGTH, data.max_length)
    samples = batches(tokenizer, data.validation.texts[:16], batch_size=1, seq_len=length, max_length=length)
    sessions = {
        name: open_session(path, providers=["CPUExecutionProvider"], threads=None) for name, path in paths.items()
    }
    values: dict[str, list[int]] = {name: [] for name in paths}
    for _ in range(TIMING_ROUNDS):
        for name, session in sessions.items():
            names = [i.name for i in session.get_inputs()]
            cursor = itertools.count()

            def call(session: Any = session, names: list[str] = names, cursor: Any = cursor) -> None:
                batch = samples[next(cursor) % len(samples)]
                session.run(["logits"], {n: batch[n] for n in names})

            values[name] += time_calls(call, Timing(warmup=2, min_iters=10, min_seconds=0.3, max_seconds=5))
    return {name: round(Latency.from_values(v).p50_ms, 3) for name, v in values.items()}


def _quant_type(name: str) -> Any:
    from onnxruntime.quantization import QuantType

    return {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}[name]


def _float_type() -> int:
    import onnx

    return onnx.TensorProto.FLOAT
