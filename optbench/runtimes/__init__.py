"""Runtimes: load an artifact, then `predict(batch) -> logits`. One module per engine, registered in `ENGINES`.

A `RuntimeSpec` names the engine and how to run it (device, precision, options) and is what a recipe's
benchmark matrix lists; `load_runtime(spec, artifact, threads)` gives a ready `Runtime`.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from optbench.artifact import ModelArtifact
from optbench.errors import OptbenchError, did_you_mean
from optbench.formats import wrong_format
from optbench.measure import Clock

DEVICES = ("cpu", "cuda")
PRECISIONS = ("fp32", "fp16", "bf16")


class Runtime(Protocol):
    """A loaded model that turns a tokenized batch into logits. On CUDA, an `allocates_through_torch` attribute says
    whether torch's memory peaks count its memory (job.py; absent: False)."""

    def predict(self, batch: dict[str, np.ndarray]) -> np.ndarray: ...

    def clock(self) -> Clock:
        """How to time one call: the host clock, synchronized where device work is queued, or CUDA events."""

    def describe(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        """What the report should know about how the model ran (threads, providers, placement)."""


@dataclass(frozen=True)
class RuntimeSpec:
    """Which engine runs a model, on which device, at which precision."""

    name: str
    device: str = "cpu"
    precision: str = "fp32"
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or self.name not in ENGINES:  # a list is unhashable
            hint = did_you_mean([self.name], ENGINES)
            raise OptbenchError(f"unknown runtime {self.name!r}: known runtimes are {sorted(ENGINES)}{hint}")
        if self.device not in DEVICES:
            raise OptbenchError(f"unknown device {self.device!r} for runtime {self.name}: use one of {list(DEVICES)}")
        if self.precision not in PRECISIONS:
            raise OptbenchError(
                f"unknown precision {self.precision!r} for runtime {self.name}: use one of {list(PRECISIONS)}"
            )
        ENGINES[self.name].check(self)

    @property
    def tag(self) -> str:
        """The options that change how a model runs, short: "" (none), "compile", "tensorrt-trt-int8"."""
        return ENGINES[self.name].check(self)

    @property
    def engine(self) -> str:
        """The engine and its non-default options, as the report's runtime column shows them: `torch`,
        `torch-compile`, `onnxruntime-tensorrt`."""
        return "-".join(part for part in (self.name, self.tag) if part)

    @property
    def label(self) -> str:
        """A short name for logs and file names, e.g. `torch-cpu-fp32` or `torch-cpu-fp32-compile`: two specs
        that run a model differently never share one (their reports would overwrite each other)."""
        return runtime_label(self.engine, self.device, self.precision)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "device": self.device, "precision": self.precision, "options": dict(self.options)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RuntimeSpec:
        return cls(d["name"], d.get("device", "cpu"), d.get("precision", "fp32"), dict(d.get("options", {})))


def runtime_label(engine: str, device: str, precision: str) -> str:
    """The label (`RuntimeSpec.label`) of a table row's runtime: its engine (`torch-compile`), device and precision
    (an engine's name has no `-`, so what follows the first one is its options' tag)."""
    name, _, tag = engine.partition("-")
    return "-".join(part for part in (name, device, precision, tag) if part)


def names_of(label: str) -> tuple[str, str, str]:
    """The names a budget may give the runtime of `label` (`RuntimeSpec.label`) by: its engine's name (`torch`), the
    engine with its options as the report's runtime column shows it (`torch-compile`), and the label itself."""
    parts = label.split("-", 3)  # runtime, device, precision, and the options' tag
    return parts[0], "-".join(parts[:1] + parts[3:]), label


def _check_torch(spec: RuntimeSpec) -> str:
    from optbench.runtimes.torch_options import TorchOptions

    return TorchOptions.parse(spec.device, spec.options, spec.precision).tag()


def _check_onnxruntime(spec: RuntimeSpec) -> str:
    from optbench.runtimes.onnxruntime_options import OrtOptions

    return OrtOptions.parse(spec.device, spec.precision, spec.options).tag(spec.device)


def _torch_labelled() -> dict[str, tuple[Any, ...]]:
    from optbench.runtimes.torch_options import LABELLED

    return LABELLED


def _onnxruntime_labelled() -> dict[str, tuple[Any, ...]]:
    from optbench.runtimes.onnxruntime_options import LABELLED

    return LABELLED


def _check_tensorrt(spec: RuntimeSpec) -> str:
    if spec.options:
        raise OptbenchError(f"runtime tensorrt takes no options (got {sorted(spec.options)}): the engine holds them")
    if spec.device != "cuda":
        raise OptbenchError('runtime tensorrt runs on NVIDIA GPUs: set device = "cuda"')
    return ""


def _onnxruntime_declines(spec: RuntimeSpec, artifact: ModelArtifact) -> str | None:
    from optbench.runtimes.onnxruntime_options import OrtOptions, cannot_run

    return cannot_run(OrtOptions.parse(spec.device, spec.precision, spec.options), spec.precision, artifact)


def _onnxruntime_declines_precision(spec: RuntimeSpec, model_precision: str, exported: bool) -> str | None:
    from optbench.runtimes.onnxruntime_options import OrtOptions, precision_mismatch

    options = OrtOptions.parse(spec.device, spec.precision, spec.options)
    return precision_mismatch(options, spec.precision, model_precision, exported)


def _tensorrt_declines(spec: RuntimeSpec, artifact: ModelArtifact) -> str | None:
    from optbench.runtimes.tensorrt import precision_mismatch

    return precision_mismatch(spec.precision, artifact)


def _onnxruntime_for_bench(spec: RuntimeSpec, shapes: list[tuple[int, int | str]], max_length: int) -> RuntimeSpec:
    """The TensorRT provider's profile filled in from the run's shapes, or the given one checked against them."""
    from optbench.bench import ACCURACY_BATCH_SIZE
    from optbench.runtimes.onnxruntime_options import OrtOptions, TrtProfile

    options = OrtOptions.parse(spec.device, spec.precision, spec.options)
    if options.trt_profile is not None:
        options.trt_profile.check_holds(shapes, max_length, ACCURACY_BATCH_SIZE)
    if options.provider != "tensorrt" or options.trt_profile is not None:
        return spec
    profile = TrtProfile.for_bench(shapes, max_length, ACCURACY_BATCH_SIZE)
    return replace(spec, options={**spec.options, "trt_profile": profile.to_dict()})


def _load_torch(spec: RuntimeSpec, artifact: ModelArtifact, threads: int) -> Runtime:
    from optbench.runtimes.torch import TorchRuntime

    return TorchRuntime(artifact, device=spec.device, precision=spec.precision, threads=threads, options=spec.options)


def _load_onnxruntime(spec: RuntimeSpec, artifact: ModelArtifact, threads: int) -> Runtime:
    from optbench.runtimes.onnxruntime import OnnxRuntime

    return OnnxRuntime(artifact, device=spec.device, precision=spec.precision, threads=threads, options=spec.options)


def _load_tensorrt(spec: RuntimeSpec, artifact: ModelArtifact, threads: int) -> Runtime:
    from optbench.runtimes.tensorrt import TensorRTRuntime

    del threads  # the engine runs on the GPU; host threads only feed it
    return TensorRTRuntime(artifact, precision=spec.precision)


@dataclass(frozen=True)
class Engine:
    """The artifact formats an engine runs, how to check a spec's options (when the recipe is read, so a typo
    fails before any step runs; it returns the non-default ones as a short tag for labels), how to load one,
    which models of those formats it leaves out, and why (from the model, and where the precision a step names
    decides it, from that before the model exists), and how a recipe fills in (or checks) options that
    follow from its benchmark shapes and max_length (the TensorRT provider's profile); `labelled` gives each option
    that shows in its labels with the values it may take, from which `every_spec` lists them."""

    formats: tuple[str, ...]
    check: Callable[[RuntimeSpec], str]
    load: Callable[[RuntimeSpec, ModelArtifact, int], Runtime]
    declines: Callable[[RuntimeSpec, ModelArtifact], str | None] | None = None  # None: it runs every one
    declines_precision: Callable[[RuntimeSpec, str, bool], str | None] = lambda spec, precision, exported: None
    for_bench: Callable[[RuntimeSpec, list[tuple[int, int | str]], int], RuntimeSpec] = lambda spec, *_: spec
    labelled: Callable[[], dict[str, tuple[Any, ...]]] = dict  # no options: one label per device and precision


ENGINES: dict[str, Engine] = {
    "torch": Engine(("hf",), _check_torch, _load_torch, labelled=_torch_labelled),
    "onnxruntime": Engine(
        ("onnx",),
        _check_onnxruntime,
        _load_onnxruntime,
        _onnxruntime_declines,
        _onnxruntime_declines_precision,
        _onnxruntime_for_bench,
        _onnxruntime_labelled,
    ),
    "tensorrt": Engine(("trt",), _check_tensorrt, _load_tensorrt, _tensorrt_declines),
}


@functools.cache
def every_spec() -> tuple[RuntimeSpec, ...]:
    """A spec for each label a recipe can give (`RuntimeSpec.label`): each engine on each device and precision it
    runs, with each combination of the options its labels show. Budgets and table rows that name a runtime are
    checked against them, so that a misspelt one is refused rather than matching no report."""
    specs: dict[str, RuntimeSpec] = {}
    for name, engine in ENGINES.items():
        options = [[None, *((key, value) for value in values)] for key, values in engine.labelled().items()]
        for device, precision, *chosen in itertools.product(DEVICES, PRECISIONS, *options):
            try:
                spec = RuntimeSpec(name, device, precision, dict(option for option in chosen if option))
            except OptbenchError:  # options, a device or a precision the engine does not run together
                continue
            specs.setdefault(spec.label, spec)
    return tuple(specs.values())


def runs_on(engine: str) -> list[tuple[str, str]]:
    """The (device, precision) pairs the runtime `engine` runs on: an engine's name with its options' tag, as
    `RuntimeSpec.engine` gives it (`torch-cuda-graphs`: the CUDA ones); none for one optbench has not."""
    return sorted({(spec.device, spec.precision) for spec in every_spec() if spec.engine == engine})


def runs(spec: RuntimeSpec, model_format: str) -> bool:
    """Whether the engine named by `spec` can run models of this format (an artifact's `format`)."""
    return model_format in ENGINES[spec.name].formats


def may_decline(spec: RuntimeSpec) -> bool:
    """Whether the engine named by `spec` leaves out some models of the formats it runs: which, `declines` tells
    once the model exists."""
    return ENGINES[spec.name].declines is not None


def declines(spec: RuntimeSpec, artifact: ModelArtifact) -> str | None:
    """Why the engine named by `spec` leaves out this artifact of a format it runs (the TensorRT provider and
    a model with onnxruntime's fused operators, say); None when it runs it."""
    decline = ENGINES[spec.name].declines
    return None if decline is None else decline(spec, artifact)


def declines_precision(spec: RuntimeSpec, precision: str, exported: bool) -> str | None:
    """Why the engine named by `spec` leaves out every model of `precision` of a format it runs (an FP16 ONNX export
    on onnxruntime at fp32), known before the model exists; None where it may run one. `exported`: the onnx step
    makes the model (`recipe.is_export`), so its precision is the step's to change."""
    return ENGINES[spec.name].declines_precision(spec, precision, exported)


def load_runtime(spec: RuntimeSpec, artifact: ModelArtifact, threads: int) -> Runtime:
    """Load `artifact` into the engine named by `spec`, using `threads` intra-op threads; a model of a format the
    engine does not run is refused before the engine's library is imported."""
    engine = ENGINES[spec.name]
    if not runs(spec, artifact.format):
        fix = _format_fix(engine.formats, artifact.format)
        raise OptbenchError(wrong_format(f"runtime {spec.name}", engine.formats, artifact.format, fix))
    return engine.load(spec, artifact, threads)


def _format_fix(formats: tuple[str, ...], given: str) -> str:
    """How to measure a model of format `given` that an engine running `formats` refuses: with an engine that
    runs it, or, where a step turns it into one of `formats`, by ending its chain with that step."""
    if given != "trt" and "hf" not in formats:  # no step takes an engine, or turns a model back into a checkpoint
        return "end its chain with " + ("a tensorrt step" if "trt" in formats else "an onnx step")
    return "measure it with " + " or ".join(
        f"runtime {name}" for name, engine in ENGINES.items() if given in engine.formats
    )
