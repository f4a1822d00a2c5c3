"""PyTorch eager runtime: FP32 on CPU, FP32/FP16/BF16 on CUDA."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from optbench.artifact import QUANTIZATION_FILE, ModelArtifact
from optbench.errors import OptbenchError

log = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
SCHEME = "int8-dynamic-activation-int8-weight"


class TorchRuntime:
    """A Hugging Face sequence classifier in eval mode under `torch.inference_mode`."""

    def __init__(self, artifact: ModelArtifact, *, device: str, precision: str, threads: int) -> None:
        from optbench.pruned_bert import load_classifier

        if artifact.format != "hf":
            raise OptbenchError(f"runtime torch runs Hugging Face checkpoints, not {artifact.format} models")
        if device == "cuda" and not torch.cuda.is_available():
            raise OptbenchError('runtime torch on cuda: no CUDA GPU is visible; use device = "cpu"')
        if device == "cpu" and precision != "fp32":
            raise OptbenchError(
                f"runtime torch on cpu runs fp32 only (asked {precision}): reduced precision is a GPU option"
            )
        torch.set_num_threads(threads)
        self.device = torch.device(device)
        model = load_classifier(artifact.path, dtype=DTYPES[precision])
        self.quantization = _read_scheme(artifact.path / QUANTIZATION_FILE)
        if self.quantization:
            _quantize(model)
        self.model = model.to(self.device).eval()

    def predict(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            inputs = {k: torch.from_numpy(v).to(self.device) for k, v in batch.items()}
            logits = self.model(**inputs).logits
            return logits.float().cpu().numpy()

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def describe(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        del batch  # every module runs on the one device
        return {
            "torch_threads": torch.get_num_threads(),
            "dtype": str(self.model.dtype).removeprefix("torch."),
            "attention": self.model.config._attn_implementation,
            "gpu": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else None,
            "quantization": self.quantization,
        }


def _read_scheme(path: Path) -> dict[str, Any] | None:
    """The quantization scheme the quantize step wrote beside the weights, if any."""
    if not path.is_file():
        return None
    scheme = json.loads(path.read_text())
    if scheme.get("scheme") != SCHEME:
        raise OptbenchError(f"{path} names scheme {scheme.get('scheme')!r}; this optbench applies {SCHEME!r} only")
    return scheme


def _quantize(model: torch.nn.Module) -> None:
    """torchao INT8 dynamic activations and INT8 weights on every Linear layer, in place."""
    try:
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_
    except ImportError as exc:
        raise OptbenchError("this model is quantized with torchao: pip install 'optbench[torchao]'") from exc
    quantize_(model, Int8DynamicActivationInt8WeightConfig())
