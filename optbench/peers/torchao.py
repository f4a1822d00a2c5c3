"""The peer-torchao step: PyTorch's own INT8 path, torchao's `Int8DynamicActivationInt8WeightConfig`.

torchao's pipeline is `quantize_` then `torch.compile`: this step writes the quantized checkpoint (the same
artifact as quantize-dynamic with backend = "torch"), and the recipe measures it on the torch runtime with
`options = {compile = true, freezing = true}` (frozen, Inductor runs its INT8 matmuls in oneDNN on CPU), whose
first call (the report's `first_call_s`) is the compile time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from optbench.artifact import ModelArtifact
from optbench.configs import config_to_dict
from optbench.data import LabelledData
from optbench.errors import StepFailed
from optbench.formats import check_step_input


@dataclass(frozen=True)
class PeerTorchaoConfig:
    """INT8 dynamic activations and INT8 weights on every Linear layer, as torchao's README applies them."""

    name: ClassVar[str] = "peer-torchao"
    input_format: ClassVar[str] = "hf"
    output_format: ClassVar[str] = "hf"
    default_label: ClassVar[str] = "torchao-int8"
    libraries: ClassVar[tuple[str, ...]] = ("torch", "torchao")  # their versions key the step's cache
    # as quantize-dynamic's torch backend: a step after it would load the FP32 weights and drop the scheme
    ends_chain: ClassVar[str] = "its INT8 scheme is applied only by the torch runtime"


def apply(config: PeerTorchaoConfig, artifact: ModelArtifact, data: LabelledData, out_dir: Path) -> ModelArtifact:
    """The checkpoint with torchao's INT8 scheme, checked against FP32 on validation rows."""
    from optbench.steps.torch_int8 import write_torchao_int8  # imports torch: not when a recipe is only read

    check_step_input(config, artifact)
    try:
        details = {"peer": "torchao", **write_torchao_int8(artifact, data, out_dir, "peer-torchao")}
    except Exception as exc:  # the peer's own tool, missing or failing on this model: recorded, the run goes on
        raise StepFailed(f"peer-torchao failed: {' '.join(str(exc).split())[:500] or type(exc).__name__}") from exc
    return artifact.derive(out_dir, step=config.name, config=config_to_dict(config), format="hf", details=details)
