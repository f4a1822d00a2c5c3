"""Artifact formats in messages, and the one refusal of a model in a format a step or runtime does not take.

Every such refusal reads `WHO takes NEEDED, not GIVEN: FIX`, whether the recipe is being read (a step's place in
its chain), a step is applied, or a runtime loads a model.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from optbench.artifact import ModelArtifact
from optbench.errors import OptbenchError

# each format in words, with its article, for messages ("a 'onnx' model" read wrong)
FORMAT_NAMES: dict[str, str] = {"hf": "a Hugging Face checkpoint", "onnx": "an ONNX model", "trt": "a TensorRT engine"}


def in_words(formats: Iterable[str]) -> str:
    """`an ONNX model or a TensorRT engine`: formats as a message names them."""
    return " or ".join(FORMAT_NAMES[f] for f in formats)


def wrong_format(who: str, needs: Iterable[str], given: str, fix: str) -> str:
    """`who` (a step, `runtime torch`) takes a model of a format in `needs` and was given one of format `given`."""
    return f"{who} takes {in_words(needs)}, not {FORMAT_NAMES[given]}: {fix}"


def step_input_refusal(config: Any, given: str, who: str | None = None) -> str | None:
    """Why the step of `config` refuses a model of format `given` (its `input_format` is another), with the fix:
    where in its chain the step goes; None when it takes it. `who` names the step (default: the config's name)."""
    needs = config.input_format
    if given == needs:
        return None
    if given == "trt":
        fix = "nothing runs on a TensorRT engine: make tensorrt the chain's last step"
    else:
        if needs == "onnx":
            fix = "put an onnx step before it"
        elif config.output_format == given:  # an exporter after another: a chain converts its checkpoint once
            fix = (
                f"a chain makes {FORMAT_NAMES[given]} once: drop one of the steps that make one, or start another chain"
            )
        else:
            fix = "put it before the onnx step"
        if config.name == "quantize-dynamic":
            fix += ', or choose its backend: "onnxruntime" quantizes ONNX models, "torch" checkpoints'
    return wrong_format(who or config.name, [needs], given, fix)


def check_step_input(config: Any, artifact: ModelArtifact) -> None:
    """Refuse, before the step of `config` does any work, a model of a format it does not take."""
    refusal = step_input_refusal(config, artifact.format)
    if refusal is not None:
        raise OptbenchError(refusal)
