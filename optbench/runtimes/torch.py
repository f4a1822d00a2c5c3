"""PyTorch runtime: eager FP32 on CPU; FP32/FP16/BF16 on CUDA; optionally torch.compile or CUDA graphs."""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from optbench.artifact import QUANTIZATION_FILE, ModelArtifact
from optbench.errors import OptbenchError
from optbench.measure import Clock, CudaEventClock, HostClock
from optbench.model_inputs import model_input_names
from optbench.runtimes.torch_options import TorchOptions

log = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
SCHEME = "int8-dynamic-activation-int8-weight"


class TorchRuntime:
    """A Hugging Face sequence classifier in eval mode under `torch.inference_mode`."""

    allocates_through_torch = True  # torch's peak-memory counters cover the model

    def __init__(
        self, artifact: ModelArtifact, *, device: str, precision: str, threads: int, options: dict[str, Any]
    ) -> None:
        self.options = TorchOptions.parse(device, options, precision)
        if device == "cuda" and not torch.cuda.is_available():
            raise OptbenchError('runtime torch on cuda: no CUDA GPU is visible; use device = "cpu"')
        from optbench.pruned_bert import load_classifier  # after the checks: it imports transformers (seconds)

        torch.set_num_threads(threads)
        _one_interop_thread()
        self.device = torch.device(device)
        model = load_classifier(artifact.path, dtype=DTYPES[precision])
        self.quantization = _read_scheme(artifact.path / QUANTIZATION_FILE)
        if self.quantization:
            reduce_range = _quantize(model, onednn=self.options.freezing and device == "cpu")
            self.quantization = {**self.quantization, "reduce_range": reduce_range}
        self.model = model.to(self.device).eval()
        self.input_names = model_input_names(model)
        self.forward = self._plan_forward()

    def _plan_forward(self) -> Any:
        """The callable that turns device tensors into logits: eager, compiled, or replayed CUDA graphs."""
        if self.options.cuda_graphs:
            return CudaGraphs(self.model)
        if self.options.compile:
            compiled = torch.compile(self.model, mode=self.options.compile)
            if self.options.freezing:
                return FrozenOnTrace(compiled)
            return lambda inputs: compiled(**inputs).logits
        return lambda inputs: self.model(**inputs).logits

    def predict(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            inputs = {k: torch.from_numpy(batch[k]).to(self.device) for k in self.input_names}
            return self.forward(inputs).float().cpu().numpy()

    def clock(self) -> Clock:
        return CudaEventClock() if self.device.type == "cuda" else HostClock()

    def describe(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        del batch  # every module runs on the one device
        return {
            "torch_threads": torch.get_num_threads(),
            "dtype": str(self.model.dtype).removeprefix("torch."),
            "attention": self.model.config._attn_implementation,
            "gpu": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else None,
            "quantization": self.quantization,
            "compile": self.options.compile,
            "freezing": self.options.freezing,
            "cuda_graphs": self.options.cuda_graphs,
            "timer": "cuda-events" if self.device.type == "cuda" else "perf_counter",
        }


def _one_interop_thread() -> None:
    """One inter-op thread: a BERT forward is a chain of ops, and spare pool threads only add noise. torch
    allows setting it once, before any parallel work, as in a fresh job process; elsewhere it is left as is."""
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)


class FrozenOnTrace:
    """The compiled model with Inductor's freezing on while Dynamo traces it, the first call of each input shape:
    Dynamo reads the global setting then to take the weights as constants (torch.compile's `options` reach
    Inductor only, which then finds them as graph inputs and freezes nothing). Set for those calls alone, it stays
    out of every other compile in the process and out of the timed calls (patching Inductor's config costs ~50 us a
    call; a traced graph is not traced again when it is called without it)."""

    def __init__(self, compiled: Any) -> None:
        self.compiled = compiled
        self.traced: set[tuple[tuple[int, ...], ...]] = set()

    def __call__(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        shape = tuple(tuple(t.shape) for t in inputs.values())
        if shape in self.traced:
            return self.compiled(**inputs).logits
        from torch._inductor import config

        with config.patch(freezing=True):
            logits = self.compiled(**inputs).logits
        self.traced.add(shape)
        return logits


class CudaGraphs:
    """The eager model captured as one CUDA graph per input shape, then replayed: one launch per call
    instead of one per kernel, which is what bounds small batches on a fast GPU.

    Capture follows PyTorch's whole-network recipe: warm up on a side stream, capture into static input
    buffers, and at each call copy the inputs in and replay. Batches padded to their longest text (the
    accuracy pass, `seq_len = "data"`) bring one graph per length, so all graphs capture into one memory
    pool: with a pool each, the GPU memory held, and the report's peak, would grow with the count of lengths.
    Graphs replayed one at a time, in any order, may share a pool when no graph's output is read after
    another's replay, which may overwrite it: the returned logits live in the graph's static output, so
    they must be read (copied to the host) before the next call; `predict` does that.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.pool = torch.cuda.graph_pool_handle()
        self.graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, dict[str, torch.Tensor], torch.Tensor]] = {}

    def __call__(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        key = tuple(sorted((name, tuple(t.shape), t.dtype) for name, t in inputs.items()))
        if key not in self.graphs:
            self.graphs[key] = self._capture(inputs)
        graph, static_inputs, static_logits = self.graphs[key]
        for name, tensor in inputs.items():
            static_inputs[name].copy_(tensor)
        graph.replay()
        return static_logits

    def _capture(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.cuda.CUDAGraph, dict, torch.Tensor]:
        log.info("capturing a CUDA graph for input shape %s", {k: tuple(v.shape) for k, v in inputs.items()})
        static_inputs = {name: tensor.clone() for name, tensor in inputs.items()}
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):  # lets lazy initialisation (cuBLAS handles, autotuning) happen outside the capture
                self.model(**static_inputs)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            static_logits = self.model(**static_inputs).logits
        return graph, static_inputs, static_logits


def _read_scheme(path: Path) -> dict[str, Any] | None:
    """The quantization scheme the quantize step wrote beside the weights, if any."""
    if not path.is_file():
        return None
    scheme = json.loads(path.read_text())
    if scheme.get("scheme") != SCHEME:
        raise OptbenchError(f"{path} names scheme {scheme.get('scheme')!r}; this optbench applies {SCHEME!r} only")
    return scheme


def _quantize(model: torch.nn.Module, *, onednn: bool) -> bool:
    """torchao INT8 dynamic activations and INT8 weights on every Linear layer, in place; returns whether their
    ranges are cut to 7 bits, as torchao's `reduce_range` does where `onednn` (a frozen graph on CPU, whose Linear
    layers Inductor hands to oneDNN) meets a CPU without VNNI: there oneDNN's kernel sums pairs of 8-bit products
    in saturating 16 bits, which overflow at full range (on an AVX2 CPU, two Linear layers 384 -> 1536 -> 384 were
    off by 22% at full range, 3% reduced). torch._int_mm, which runs them otherwise, does not saturate (1.6% at
    full range), so elsewhere the full range is kept."""
    try:
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_
    except ImportError as exc:
        raise OptbenchError("this model is quantized with torchao: pip install torchao") from exc
    reduce_range = onednn and _cpu_lacks_vnni()
    # reduce_range came in torchao 0.18: older releases take the config without it
    config = (
        Int8DynamicActivationInt8WeightConfig(reduce_range=True)
        if reduce_range
        else Int8DynamicActivationInt8WeightConfig()
    )
    quantize_(model, config)
    return reduce_range


def _cpu_lacks_vnni() -> bool:
    """torchao's own test for when its INT8 ranges should be reduced (`should_reduce_range`, torchao 0.18)."""
    try:
        from torchao.utils import should_reduce_range
    except ImportError as exc:
        raise OptbenchError(
            "runtime torch freezing = true with a torchao model needs torchao 0.18 or later (its reduce_range keeps "
            "oneDNN's INT8 kernel from overflowing on CPUs without VNNI): pip install -U 'torchao>=0.18'"
        ) from exc
    return should_reduce_range(torch.device("cpu"))
