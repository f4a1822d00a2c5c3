"""PyTorch dynamic INT8 of a Hugging Face classifier's Linear layers, with torchao.

torchao's quantized weights are tensor subclasses that safetensors cannot hold, so the artifact is the
FP32 checkpoint plus a scheme file; the torch runtime quantizes it the same way every time it loads it
(as Hugging Face's TorchAoConfig does). The step records how often the quantized model's argmax agrees with
FP32's on validation rows; it sets no floor (the benchmark's accuracy pass and the gate judge the variant).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from optbench.artifact import QUANTIZATION_FILE, ModelArtifact
from optbench.atomic import write_json_atomic
from optbench.configs import config_to_dict
from optbench.data import LabelledData
from optbench.encoding import batches, load_tokenizer
from optbench.errors import require_package
from optbench.formats import check_step_input
from optbench.runtimes.torch import SCHEME, TorchRuntime

log = logging.getLogger(__name__)

AGREEMENT_ROWS = 256


def quantize_linear_layers(config: Any, artifact: ModelArtifact, data: LabelledData, out_dir: Path) -> ModelArtifact:
    """Write the checkpoint with a torchao INT8 scheme beside it and check it against FP32."""
    check_step_input(config, artifact)
    needed_for = 'quantize-dynamic with backend = "torch"'
    details = {"backend": "torch", **write_torchao_int8(artifact, data, out_dir, needed_for)}
    return artifact.derive(out_dir, step=config.name, config=config_to_dict(config), format="hf", details=details)


def write_torchao_int8(artifact: ModelArtifact, data: LabelledData, out_dir: Path, needed_for: str) -> dict[str, Any]:
    """Copy the checkpoint into `out_dir` with torchao's INT8 scheme beside it, measure its argmax agreement with
    FP32 on validation rows, and return what the artifact's details record."""
    version = require_package("torchao", needed_for=needed_for, install="pip install torchao").version
    for path in artifact.path.iterdir():
        if path.is_file() and not path.name.startswith("optbench-"):
            shutil.copy2(path, out_dir / path.name)
    write_json_atomic(out_dir / QUANTIZATION_FILE, {"library": "torchao", "version": version, "scheme": SCHEME})
    texts = data.validation.texts[:AGREEMENT_ROWS]
    agreement = _agreement(artifact, out_dir, texts, data.max_length)
    log.info("torchao INT8: argmax agreement with FP32 on %d validation rows: %.4f", len(texts), agreement)
    return {"torchao": version, "scheme": SCHEME, "validation_agreement": agreement, "validation_rows": len(texts)}


def _agreement(source: ModelArtifact, quantized_dir: Path, texts: list[str], max_length: int) -> float:
    """Argmax agreement of the INT8 model with FP32 on `texts`, at the process's thread count (a runtime built with
    another count would leave it set for every later step of `optbench run`)."""
    import torch

    threads = torch.get_num_threads()
    tokenizer = load_tokenizer(source.path)
    sample = batches(tokenizer, texts, batch_size=64, seq_len="data", max_length=max_length)
    fp32 = TorchRuntime(source, device="cpu", precision="fp32", threads=threads, options={})
    int8 = TorchRuntime(
        ModelArtifact(quantized_dir, "hf", source.label_names, ""),
        device="cpu",
        precision="fp32",
        threads=threads,
        options={},
    )
    a = np.concatenate([fp32.predict(b) for b in sample]).argmax(1)
    b = np.concatenate([int8.predict(b) for b in sample]).argmax(1)
    return float((a == b).mean())
