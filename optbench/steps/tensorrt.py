"""Build a TensorRT engine from an ONNX classifier: FP32, FP16, or INT8 (explicit Q/DQ or calibrated).

An engine holds one optimization profile per benchmark shape (TensorRT tunes its kernels for each
profile's `opt` shape) plus a wide one for the accuracy pass, and runs only on the TensorRT version
and GPU model it was built with: both are part of the step's cache key and of the manifest, and the
tensorrt runtime refuses an engine built for another.

Written against the TensorRT 10 Python API (`tensorrt` from NVIDIA's index or container). Everything
that decides what to build (profiles, calibration batches, Q/DQ checks) is plain Python and numpy.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from optbench.artifact import ModelArtifact
from optbench.bench import ACCURACY_BATCH_SIZE, BenchConfig, check_batch_sizes
from optbench.configs import check_no_repeats, check_seed, config_to_dict, toml_value
from optbench.data import LabelledData
from optbench.encoding import SeqLen, Shape, parse_seq_len
from optbench.errors import OptbenchError
from optbench.formats import check_step_input
from optbench.onnx_graph import ONNX_FILE, is_qdq, load_graph
from optbench.steps.onnx import OnnxConfig, copy_hf_files
from optbench.steps.quantize import DynamicQuantizeConfig, StaticQuantizeConfig
from optbench.tensorrt_engine import ENGINE_FILE, Profile, detect_target, import_tensorrt

log = logging.getLogger(__name__)

CALIBRATION_CACHE = "calibration.cache"
QUANTIZE_OPS = ("QuantizeLinear", "DequantizeLinear")
SYMMETRIC_FIX = (
    'Set activation_type = "int8", weight_type = "int8" and activation_symmetric = true in the quantize-static '
    'step, or build from the onnx step\'s output with precision = "int8" (TensorRT calibrates it)'
)
QDQ_PRECISION_FIX = 'set precision = "int8", or build from the onnx step\'s output instead'
INTEGER_FIX = 'build from the onnx step\'s output with precision = "int8", or from a quantize-static (Q/DQ) model'
GEMM_FIX = 'this step builds INT8 engines only; leave Gemm out of its op_types (op_types = ["MatMul"])'
ORT_INT8_OPS = ("MatMulInteger", "DynamicQuantizeMatMul", "QLinearMatMul", "QGemm", "QAttention")
# TensorRT's calibrator classes by `calibration_method`: its API reference calls MinMax "the preferred
# calibrator for NLP tasks"; entropy (IInt8EntropyCalibrator2) is its general recommendation.
CALIBRATORS = {"minmax": "IInt8MinMaxCalibrator", "entropy": "IInt8EntropyCalibrator2"}


@dataclass(frozen=True)
class TensorRTConfig:
    """What engine to build.

    `batch_sizes` and `seq_lens` are the shapes the engine is tuned for; left empty, a recipe fills them
    from its [bench] matrix (see `for_bench`), as it fills `max_length` from [dataset].
    INT8 builds an explicitly quantized engine from a Q/DQ model (a quantize-static step before this
    one), and otherwise calibrates (`calibration_method`) on `calibration_samples` train-split texts
    (never the test split).
    """

    name: ClassVar[str] = "tensorrt"
    version: ClassVar[int] = 2  # 2: fp32 engines are built without TF32
    input_format: ClassVar[str] = "onnx"
    output_format: ClassVar[str] = "trt"
    precision: Literal["fp16", "int8", "fp32"] = "fp16"
    batch_sizes: tuple[int, ...] = ()
    seq_lens: tuple[SeqLen, ...] = ()
    max_length: int | None = None
    workspace_mib: int = 4096
    calibration_samples: int = 512
    calibration_batch_size: int = 16
    calibration_method: Literal["minmax", "entropy"] = "minmax"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.precision not in ("fp16", "int8", "fp32"):
            raise OptbenchError(f'precision = {toml_value(self.precision)}: use "fp16", "int8" or "fp32"')
        check_batch_sizes(self.batch_sizes, ", or leave them out to take the recipe's [bench] batch_sizes")
        for seq_len in self.seq_lens:
            try:
                parse_seq_len(seq_len)
            except OptbenchError as exc:
                raise OptbenchError(f"seq_lens: {exc} (or leave seq_lens out for [bench]'s)") from exc
        # as in [bench]: a repeat would build the same engine as the list without it, under another cache key
        check_no_repeats("batch_sizes", self.batch_sizes)
        check_no_repeats("seq_lens", self.seq_lens)
        if self.max_length is not None and self.max_length < 1:
            raise OptbenchError(f"max_length = {self.max_length}: use 1 or more, or leave it out for the dataset's")
        if self.workspace_mib < 1:
            raise OptbenchError(
                f"workspace_mib = {self.workspace_mib}: give the builder's scratch memory in MiB (4096 is a good start)"
            )
        if self.calibration_batch_size < 1 or self.calibration_samples < self.calibration_batch_size:
            raise OptbenchError(
                f"calibration_samples = {self.calibration_samples} and calibration_batch_size = "
                f"{self.calibration_batch_size}: need 1 <= calibration_batch_size <= calibration_samples "
                "(TensorRT calibrates on whole batches)"
            )
        if self.calibration_method not in CALIBRATORS:
            raise OptbenchError(
                f"calibration_method = {toml_value(self.calibration_method)}: use "
                + " or ".join(f'"{m}"' for m in CALIBRATORS)
            )
        check_seed(self.seed)

    @property
    def label(self) -> str:
        """The name in the variant: `tensorrt-fp16`, `tensorrt-int8`, `tensorrt-fp32`."""
        return f"{self.name}-{self.precision}"

    def for_bench(self, bench: BenchConfig, max_length: int) -> TensorRTConfig:
        """This config with the shapes a recipe benchmarks filled in where it leaves them out, so that
        the config, and with it the cache key, names the concrete shapes the engine is built for; given
        shapes that leave out one the run feeds are refused here, not on the GPU after the build."""
        filled = replace(
            self,
            batch_sizes=self.batch_sizes or tuple(bench.batch_sizes),
            seq_lens=self.seq_lens or tuple(bench.seq_lens),
            max_length=self.max_length or max_length,
        )
        _check_holds(filled, bench.shapes(), max_length)
        return filled

    def refuse_after(self, config: Any) -> str | None:
        """Why this step cannot build from the model an earlier step of its chain (of `config`) makes, told when the
        recipe is read: `check_parsable` and `check_symmetric_int8` refuse that model only once the steps before have
        run, on the GPU machine. None where nothing in those settings says so ("auto" types are left to them)."""
        if isinstance(config, OnnxConfig) and config.fuse:
            return (
                "it fuses (fuse = true) into onnxruntime-only operators, which TensorRT cannot parse: give it "
                "fuse = false"
            )
        if isinstance(config, DynamicQuantizeConfig) and config.backend == "onnxruntime":
            return f"it writes onnxruntime integer operators, which TensorRT cannot build: {INTEGER_FIX}"
        if not isinstance(config, StaticQuantizeConfig):
            return None
        if self.precision != "int8":
            return f'it makes a Q/DQ (INT8) model and this step has precision = "{self.precision}": {QDQ_PRECISION_FIX}'
        if "uint8" in (config.activation_type, config.weight_type) or not config.activation_symmetric:
            return f"it makes uint8 or asymmetric Q/DQ, which TensorRT does not take. {SYMMETRIC_FIX}"
        if "Gemm" in config.op_types:
            return f"it dequantizes INT32 biases for Gemm nodes: {GEMM_FIX}"
        return None

    @property
    def reads_data_length(self) -> bool:
        """Whether the engine depends on the dataset's max_length, which then keys the step's cache: INT8
        calibration cuts its texts at it (whatever this config's max_length), and without a max_length of its
        own the engine's profiles reach it."""
        return self.precision == "int8" or self.max_length is None

    def build_target(self) -> dict[str, str]:
        """The TensorRT version and GPU the engine would be built for: part of the cache key, since an
        engine runs only where it was built."""
        return detect_target()


def profiles(
    batch_sizes: tuple[int, ...],
    seq_lens: tuple[SeqLen, ...],
    max_length: int,
    accuracy_batch_size: int = ACCURACY_BATCH_SIZE,
) -> list[Profile]:
    """One profile per benchmark shape, then one wide profile for the accuracy pass.

    A benchmark profile is tuned for its shape (`opt`); its batch range starts at 1 (a latency pass feeds
    whole batches of its size, but a smaller batch still fits). A fixed sequence length is exact (min = opt =
    max); `data` (batches padded to their longest text) ranges over 1..max_length. The accuracy pass pads each
    batch of `accuracy_batch_size` to its longest text, up to max_length.
    """
    result: list[Profile] = []
    for batch in sorted(batch_sizes):  # no repeats: TensorRTConfig refuses them
        for seq_len in seq_lens:
            if seq_len == "data":
                profile = Profile((1, 1), (batch, max_length), (batch, max_length), f"batch {batch} x data")
            else:
                profile = Profile((1, seq_len), (batch, seq_len), (batch, seq_len), f"batch {batch} x {seq_len}")
            result.append(profile)
    wide = Profile((1, 1), (accuracy_batch_size, max_length), (accuracy_batch_size, max_length), "accuracy pass")
    if not any(p.min == wide.min and p.max == wide.max for p in result):
        result.append(wide)
    return result


def _check_holds(config: TensorRTConfig, shapes: list[Shape], max_length: int) -> None:
    """Refuse an engine none of whose profiles would hold a shape the run feeds it (the tensorrt runtime would
    refuse that shape after the build): the accuracy pass's batches, each padded to its longest text of up to
    the dataset's `max_length` tokens, and every [bench] shape's whole batches, at their fixed length or, for
    `data`, padded to their longest text."""
    check_max_length(config.max_length or max_length, max_length)
    candidates = profiles(config.batch_sizes, config.seq_lens, config.max_length or max_length)
    for batch, seq_len in shapes:
        lengths = range(1, max_length + 1) if seq_len == "data" else (seq_len,)
        if not all(any(p.holds((batch, n)) for p in candidates) for n in lengths):
            shown = '"data"' if seq_len == "data" else seq_len
            raise OptbenchError(
                f"batch_sizes = {list(config.batch_sizes)} and seq_lens = {list(config.seq_lens)} build "
                f"no optimization profile that holds the [bench] shape {batch} x {seq_len}, so the tensorrt runtime "
                f"could not run it: add {batch} to batch_sizes and {shown} to seq_lens, or leave them out to take "
                "[bench]'s"
            )


def check_max_length(max_length: int, dataset_max_length: int) -> None:
    """Refuse an engine too short for the accuracy pass, whose batches run up to the dataset's max_length."""
    if max_length < dataset_max_length:
        raise OptbenchError(
            f"max_length = {max_length} is below the dataset's max_length = {dataset_max_length}: "
            "the accuracy pass would not fit the engine; raise it or leave it out"
        )


def apply(config: TensorRTConfig, artifact: ModelArtifact, data: LabelledData, out_dir: Path) -> ModelArtifact:
    """Build and serialize an engine for `artifact` (an ONNX model) into `out_dir`."""
    check_step_input(config, artifact)
    source = artifact.path / ONNX_FILE
    graph = load_graph(source)  # a missing file: an error that names it
    check_parsable(graph)
    explicit = is_qdq(graph)
    if explicit:
        check_symmetric_int8(graph)
        if config.precision != "int8":
            raise OptbenchError(
                f'the tensorrt step got a Q/DQ (INT8) model but precision = "{config.precision}": {QDQ_PRECISION_FIX}'
            )
    max_length = config.max_length or data.max_length
    check_max_length(max_length, data.max_length)
    target = detect_target()
    shapes = profiles(config.batch_sizes, config.seq_lens, max_length)  # no shapes given: the accuracy one only
    calibration = None
    if config.precision == "int8" and not explicit:
        calibration = CalibrationFeed.from_train_split(config, artifact.path, data)
    started = time.perf_counter()
    engine = build_engine(source, config, shapes, calibration, out_dir / CALIBRATION_CACHE)
    build_seconds = round(time.perf_counter() - started, 1)
    (out_dir / ENGINE_FILE).write_bytes(engine)
    copy_hf_files(artifact.path, out_dir)
    details: dict[str, Any] = {
        **target,
        "precision": config.precision,
        "quantization": "explicit (Q/DQ)" if explicit else ("calibrated" if calibration else None),
        "profiles": [p.to_dict() for p in shapes],
        "build_seconds": build_seconds,
        "workspace_mib": config.workspace_mib,
    }
    if calibration is not None:
        details["calibration"] = {**calibration.describe(), "calibrator": CALIBRATORS[config.calibration_method]}
    log.info("TensorRT %s engine built in %.1f s for %s", config.precision, build_seconds, target["gpu"])
    return artifact.derive(out_dir, step=config.label, config=config_to_dict(config), format="trt", details=details)


def check_parsable(graph: Any) -> None:
    """Refuse operators TensorRT's ONNX parser does not know: onnxruntime's fused ones (com.microsoft
    domain, from the onnx step's fusion) and its integer ones (from quantize-dynamic)."""
    fused = sorted({n.op_type for n in graph.node if n.domain == "com.microsoft"})
    if fused:
        raise OptbenchError(
            f"the ONNX model holds onnxruntime-only operators {fused}, which TensorRT cannot parse: "
            "give the onnx step before the tensorrt step fuse = false"
        )
    integer = sorted({n.op_type for n in graph.node if n.op_type in ORT_INT8_OPS})
    if integer:
        raise OptbenchError(
            f"the ONNX model holds onnxruntime integer operators {integer} (quantize-dynamic), which TensorRT "
            f"cannot build: {INTEGER_FIX}"
        )


def check_symmetric_int8(graph: Any) -> None:
    """TensorRT takes only signed INT8 Q/DQ with zero points of 0 (symmetric); refuse anything else, naming it."""
    import onnx
    from onnx import numpy_helper

    constants = {t.name: t for t in graph.initializer}
    constants |= {
        out: attr.t
        for node in graph.node
        if node.op_type == "Constant"
        for attr in node.attribute
        if attr.name == "value"
        for out in node.output
    }
    for node in graph.node:
        if node.op_type not in QUANTIZE_OPS or len(node.input) < 3 or not node.input[2]:
            continue  # no zero point: 0
        zero_point = constants.get(node.input[2])
        if zero_point is None:
            raise OptbenchError(
                f"{node.op_type} {node.name!r} takes its zero point from a computed tensor: TensorRT needs "
                "constant zero points of 0"
            )
        if zero_point.data_type == onnx.TensorProto.UINT8:
            raise OptbenchError(
                f"the Q/DQ model quantizes to uint8 ({node.op_type} {node.name!r}): TensorRT takes only signed, "
                f"symmetric INT8. {SYMMETRIC_FIX}"
            )
        if zero_point.data_type == onnx.TensorProto.INT32:
            raise OptbenchError(
                f"{node.op_type} {node.name!r} dequantizes an INT32 bias, which quantize-static writes for Gemm "
                f"nodes: {GEMM_FIX}"
            )
        if zero_point.data_type != onnx.TensorProto.INT8:
            raise OptbenchError(
                f"{node.op_type} {node.name!r} quantizes to {onnx.TensorProto.DataType.Name(zero_point.data_type)}: "
                "this step builds INT8 engines only"
            )
        if np.any(numpy_helper.to_array(zero_point) != 0):
            raise OptbenchError(
                f"{node.op_type} {node.name!r} has a non-zero INT8 zero point (asymmetric quantization), which "
                f"TensorRT does not take. {SYMMETRIC_FIX}"
            )


class CalibrationFeed:
    """Calibration batches of one shape (TensorRT calibrates at its calibration profile's shape): train-split
    texts drawn as quantize-static draws them, every batch padded to the longest sample, whole batches only."""

    def __init__(self, batches: list[dict[str, np.ndarray]], seq_len: int) -> None:
        self.batches = batches
        self.seq_len = seq_len
        self._next = 0

    @classmethod
    def from_train_split(cls, config: TensorRTConfig, model_dir: Path, data: LabelledData) -> CalibrationFeed:
        from optbench.calibration import CalibrationReader

        reader = CalibrationReader(
            model_dir, data, config.calibration_samples, config.calibration_batch_size, config.seed, one_length=True
        )
        drawn = list(iter(reader.get_next, None))
        whole = [b for b in drawn if len(b["input_ids"]) == config.calibration_batch_size]
        if not whole:
            raise OptbenchError(
                f"the train split gave fewer than calibration_batch_size = {config.calibration_batch_size} samples "
                "for TensorRT calibration: lower calibration_batch_size"
            )
        samples = sum(len(b["input_ids"]) for b in drawn)
        if left_out := samples - len(whole) * config.calibration_batch_size:
            log.warning(
                "TensorRT calibrates on whole batches of calibration_batch_size = %d: the last %d of the %d samples "
                "drawn are left out (make calibration_samples a multiple of the batch size to use them all)",
                config.calibration_batch_size,
                left_out,
                samples,
            )
        return cls(whole, int(reader.seq_len))

    @property
    def shape(self) -> Shape:
        return len(self.batches[0]["input_ids"]), self.seq_len

    def next_batch(self, names: list[str], dtypes: dict[str, Any]) -> list[np.ndarray] | None:
        """The next batch's arrays in the order TensorRT names its inputs, cast to the inputs' dtypes;
        None when all were given."""
        if self._next >= len(self.batches):
            return None
        batch = self.batches[self._next]
        self._next += 1
        return [np.ascontiguousarray(batch[name], dtype=dtypes[name]) for name in names]

    def describe(self) -> dict[str, Any]:
        batch_size, seq_len = self.shape
        return {
            "split": "train",
            "samples": batch_size * len(self.batches),
            "batch_size": batch_size,
            "seq_len": seq_len,
            "cache": CALIBRATION_CACHE,
        }


def build_engine(
    source: Path, config: TensorRTConfig, shapes: list[Profile], calibration: CalibrationFeed | None, cache: Path
) -> bytes:
    """Parse `source` and build a serialized engine with one optimization profile per entry of `shapes`.

    FP32 clears TensorRT's default TF32 flag, so that an fp32 engine computes in FP32 as PyTorch's CUDA matmuls do.
    INT8 sets FP16 too, so layers without an INT8 kernel run in FP16 rather than FP32. A Q/DQ model
    (no `calibration`) is built by explicit quantization: TensorRT takes the scales from the graph.
    """
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: every network has an explicit batch dimension
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(source)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise OptbenchError(
            f"TensorRT cannot parse {source} ({errors}): re-export it with the onnx step (fuse = false)"
        )
    builder_config = builder.create_builder_config()
    builder_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, config.workspace_mib * 2**20)
    if config.precision == "fp32":  # TF32 is on by default: FP32 matmuls would round their inputs to 10-bit mantissas
        builder_config.clear_flag(trt.BuilderFlag.TF32)
    if config.precision in ("fp16", "int8"):
        builder_config.set_flag(trt.BuilderFlag.FP16)
    if config.precision == "int8":
        builder_config.set_flag(trt.BuilderFlag.INT8)
    inputs = [network.get_input(i).name for i in range(network.num_inputs)]
    for index, shape in enumerate(shapes):
        profile = builder.create_optimization_profile()
        for name in inputs:
            profile.set_shape(name, shape.min, shape.opt, shape.max)
        if builder_config.add_optimization_profile(profile) != index:  # -1: TensorRT found the profile invalid
            raise OptbenchError(f"TensorRT refused the optimization profile {shape.to_dict()} (its log above says why)")
    calibrator = None
    if calibration is not None:
        calibration_profile = builder.create_optimization_profile()
        for name in inputs:
            calibration_profile.set_shape(name, calibration.shape, calibration.shape, calibration.shape)
        if not builder_config.set_calibration_profile(calibration_profile):
            raise OptbenchError(
                f"TensorRT refused the calibration profile {calibration.shape} (its log above says why)"
            )
        dtypes = {name: trt.nptype(network.get_input(i).dtype) for i, name in enumerate(inputs)}
        calibrator = make_calibrator(trt, config.calibration_method, calibration, dtypes, cache)
        builder_config.int8_calibrator = calibrator
    serialized = builder.build_serialized_network(network, builder_config)
    if calibrator is not None and calibrator.error is not None:  # TensorRT reads a failed get_batch as "no more"
        raise OptbenchError(f"TensorRT calibration failed on a batch: {calibrator.error!r}") from calibrator.error
    if serialized is None:
        raise OptbenchError(
            f"TensorRT could not build the {config.precision} engine from {source}: its log above says why "
            "(a larger workspace_mib can help)"
        )
    return bytes(serialized)


def make_calibrator(trt: Any, method: str, feed: CalibrationFeed, dtypes: dict[str, Any], cache: Path) -> Any:
    """A calibrator of `method` (a CALIBRATORS key) that copies `feed`'s batches to the GPU (torch CUDA tensors)
    and writes the calibration cache to `cache`, kept in the artifact with the engine. Every build calibrates:
    the step builds in a new folder, so there is never an earlier cache to read."""
    import torch

    base = getattr(trt, CALIBRATORS[method])

    class Calibrator(base):
        def __init__(self) -> None:
            base.__init__(self)
            self._on_device: list[Any] = []  # the current batch stays alive while TensorRT reads it
            self.error: Exception | None = None  # raised by build_engine: TensorRT would only print it

        def get_batch_size(self) -> int:
            return feed.shape[0]

        def get_batch(self, names: list[str]) -> list[int] | None:
            try:
                arrays = feed.next_batch(names, dtypes)
                if arrays is None:
                    return None
                self._on_device = [torch.from_numpy(a).cuda() for a in arrays]
                torch.cuda.current_stream().synchronize()  # TensorRT reads the batch on its own stream
            except Exception as exc:  # kept for build_engine: TensorRT would print it and end calibration early
                self.error = exc
                return None
            return [int(t.data_ptr()) for t in self._on_device]

        def read_calibration_cache(self) -> None:
            return None  # calibrate on the feed (see above)

        def write_calibration_cache(self, data: Any) -> None:
            cache.write_bytes(bytes(data))

    return Calibrator()
