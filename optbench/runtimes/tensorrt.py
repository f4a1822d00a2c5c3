"""TensorRT runtime: runs an engine the tensorrt step built, on the GPU it was built for.

Buffers are torch CUDA tensors bound by address; the copies and the engine run on a stream of the
runtime's own (on the legacy default stream `execute_async_v3` adds synchronizations of its own), where
CUDA events time them. Like the other runtimes, `predict` takes host arrays and returns host logits (the
copies are part of each call).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from optbench.artifact import ModelArtifact
from optbench.errors import OptbenchError
from optbench.measure import Clock, CudaEventClock
from optbench.tensorrt_engine import ENGINE_FILE, Profile, check_target, detect_target, import_tensorrt, pick_profile

log = logging.getLogger(__name__)


class TensorRTRuntime:
    """A deserialized engine with one execution context per optimization profile, made on first use."""

    allocates_through_torch = False  # TensorRT allocates the engine's weights and activations itself

    def __init__(self, artifact: ModelArtifact, *, precision: str) -> None:
        """`precision` is the spec's; its device is CUDA (RuntimeSpec refuses any other for tensorrt)."""
        import torch

        built = artifact.details
        mismatch = precision_mismatch(precision, artifact)
        if mismatch:
            raise OptbenchError(mismatch)
        trt = import_tensorrt()
        self.target = detect_target()
        check_target(built, self.target)
        self.details = built
        self.profiles = [Profile.from_dict(p) for p in built.get("profiles", [])]
        self._torch = torch
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))  # must outlive the engine
        self.engine = self._runtime.deserialize_cuda_engine((artifact.path / ENGINE_FILE).read_bytes())
        if self.engine is None:
            raise OptbenchError(
                f"TensorRT cannot load {artifact.path / ENGINE_FILE} (its log above says why): "
                "delete that folder from the cache and run the recipe again to rebuild it"
            )
        if self.engine.num_optimization_profiles != len(self.profiles):
            raise OptbenchError(
                f"{artifact.path / ENGINE_FILE} has {self.engine.num_optimization_profiles} optimization profiles and "
                f"its manifest lists {len(self.profiles)}: the folder is damaged; delete it and run the recipe again"
            )
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(outputs) != 1:  # every output needs a bound buffer, and a classifier gives its logits alone
            raise OptbenchError(
                f"{artifact.path / ENGINE_FILE} has outputs {outputs}; this runtime runs engines with one output, "
                "the logits: export the model with the onnx step"
            )
        self.output = outputs[0]
        self.dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        self._contexts: dict[int, Any] = {}
        # each context holds the activation memory of its own profile, not of the largest one (STATIC)
        self._allocation = trt.ExecutionContextAllocationStrategy.ON_PROFILE_CHANGE
        self._stream = torch.cuda.Stream()

    def predict(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        torch = self._torch
        missing = [n for n in self.inputs if n not in batch]
        if missing:
            raise OptbenchError(f"the TensorRT engine needs input(s) {missing}; the batch has {sorted(batch)}")
        rows, length = batch[self.inputs[0]].shape
        index = pick_profile(self.profiles, (int(rows), int(length)))
        with torch.cuda.stream(self._stream):
            context = self._context(index)
            on_device = []  # kept alive until the logits are back on the host
            for name in self.inputs:
                host = np.ascontiguousarray(batch[name], dtype=self.dtypes[name])  # int64 tokens to the engine's type
                tensor = torch.from_numpy(host).to("cuda")
                _bound(context.set_input_shape(name, tuple(host.shape)), f"shape {host.shape} of input {name}")
                _bound(context.set_tensor_address(name, tensor.data_ptr()), f"the buffer of input {name}")
                on_device.append(tensor)
            shape = tuple(context.get_tensor_shape(self.output))
            logits = torch.empty(shape, dtype=_torch_dtype(self.dtypes[self.output]), device="cuda")
            _bound(context.set_tensor_address(self.output, logits.data_ptr()), f"the buffer of output {self.output}")
            if not context.execute_async_v3(self._stream.cuda_stream):
                raise OptbenchError(f"TensorRT failed to run batch {rows} x {length} (its log above says why)")
            return logits.float().cpu().numpy()  # the copy to the host waits for the stream

    def _context(self, index: int) -> Any:
        """The execution context for profile `index`: one each, so that no call pays for a profile switch."""
        context = self._contexts.get(index)
        if context is None:
            context = self.engine.create_execution_context(self._allocation)
            if context is None:
                raise OptbenchError("TensorRT could not create an execution context (its log above says why)")
            # answers False when it does not switch, which would leave the context on its first profile
            _bound(
                context.set_optimization_profile_async(index, self._stream.cuda_stream), f"optimization profile {index}"
            )
            self._contexts[index] = context
        return context

    def clock(self) -> Clock:
        """CUDA events on the runtime's stream, where the copies and the engine run."""
        return CudaEventClock(self._stream)

    def describe(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        rows, length = batch[self.inputs[0]].shape
        index = pick_profile(self.profiles, (int(rows), int(length)))
        return {
            **self.target,
            "precision": self.details.get("precision"),
            "quantization": self.details.get("quantization"),
            "profile": {"index": index, **self.profiles[index].to_dict()},
            "input_dtypes": {n: str(self.dtypes[n]) for n in self.inputs},
        }


def precision_mismatch(precision: str, artifact: ModelArtifact) -> str | None:
    """Why the runtime at `precision` does not run this engine, or None: an engine runs at the precision it was
    built at, which the runtime's default ("fp32") takes as it is. Checked when the benchmark pairs models with
    runtimes (a mismatch is left out, logged) and again at load."""
    built = artifact.details.get("precision")
    if precision in ("fp32", built):
        return None
    return (
        f"runtime tensorrt at {precision}: this engine was built at {built} and runs at that; "
        "set the precision in the tensorrt step, and leave the runtime's out"
    )


def _bound(accepted: bool, what: str) -> None:
    """TensorRT's setters answer False (and log why) instead of raising."""
    if not accepted:
        raise OptbenchError(f"TensorRT refused {what} (its log above says why)")


def _torch_dtype(dtype: np.dtype) -> Any:
    import torch

    return torch.from_numpy(np.zeros(0, dtype=dtype)).dtype
