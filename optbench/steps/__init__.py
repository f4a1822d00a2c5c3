"""Optimization steps: one module each (a config dataclass and `apply`), registered in `STEPS`, and a recipe's
`[[steps]]` tables read into them (`parse_step`). `optbench.steps.cache` runs a step, or reuses its cached output."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optbench.artifact import ModelArtifact
from optbench.configs import config_from_dict, toml_value
from optbench.data import LabelledData
from optbench.errors import OptbenchError, did_you_mean
from optbench.peers import optimum as peer_optimum
from optbench.peers import torchao as peer_torchao
from optbench.steps import distill, finetune, onnx, prune, quantize, tensorrt


@dataclass(frozen=True)
class StepKind:
    """A step's config type and the function that applies it: `apply(config, artifact, data, out_dir)` writes the
    model into `out_dir` and returns `artifact.derive(out_dir, ...)` (after `formats.check_step_input`).

    The config is a frozen dataclass whose fields are the recipe table's keys. It must have `name`, `input_format`
    and `output_format` ("hf", "onnx", "trt"). Other members are optional, each read with `getattr` where named:
    `default_label` (`parse_step`) and a `label` property (`RecipeStep.shown`); `version`, `libraries`,
    `reads_data_length`, `input_hashes()` and `build_target()` (`cache.cache_key`; the last also `cannot_run_here`);
    `ends_chain`, `quantizes`, `output_precision` and `refuse_after(earlier_config)` (recipe.py's chain checks,
    dry_run.py); `resolve_paths(base)` and `for_bench(bench, max_length)` (recipe.py); `preflight(config_json)`,
    `student_folder`, `max_length` and `seq_lens` (preflight.py). A training step subclasses
    `training.TrainingConfig`."""

    config_type: type
    apply: Callable[[Any, ModelArtifact, LabelledData, Path], ModelArtifact]


STEPS: dict[str, StepKind] = {
    finetune.FinetuneConfig.name: StepKind(finetune.FinetuneConfig, finetune.apply),
    distill.DistillConfig.name: StepKind(distill.DistillConfig, distill.apply),
    prune.PruneConfig.name: StepKind(prune.PruneConfig, prune.apply),
    onnx.OnnxConfig.name: StepKind(onnx.OnnxConfig, onnx.apply),
    quantize.DynamicQuantizeConfig.name: StepKind(quantize.DynamicQuantizeConfig, quantize.apply_dynamic),
    quantize.StaticQuantizeConfig.name: StepKind(quantize.StaticQuantizeConfig, quantize.apply_static),
    tensorrt.TensorRTConfig.name: StepKind(tensorrt.TensorRTConfig, tensorrt.apply),
    peer_optimum.PeerOptimumConfig.name: StepKind(peer_optimum.PeerOptimumConfig, peer_optimum.apply),
    peer_torchao.PeerTorchaoConfig.name: StepKind(peer_torchao.PeerTorchaoConfig, peer_torchao.apply),
}


@dataclass(frozen=True)
class RecipeStep:
    """A step as a recipe lists it: its config, the label its output shows in variant names (the recipe's
    `label`, else the config's `default_label` where it has one, else the step's name), and `where`, the place
    the recipe wrote it, which errors about its settings name (`[[steps]] #2 (distill)`; empty for a step made
    in code). One step written in two places is the same step."""

    config: Any
    label: str | None = None
    where: str = field(default="", compare=False)

    @property
    def shown(self) -> str:
        """Its name in variant names: the label, else the config's own label (`tensorrt-fp16`), else its name."""
        return self.label or getattr(self.config, "label", self.config.name)


LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # a step's label, and a recipe's name: they name files and folders
LABEL_RULE = "start with a letter or digit, then use letters, digits, '.', '_' or '-'"  # LABEL in words


def parse_step(table: dict[str, Any], where: str) -> RecipeStep:
    """A step from a recipe table such as `{name = "distill", label = "student-l3", layers = [0, 2, 4]}`."""
    table = dict(table)
    name = table.pop("name", None)
    if name is None:  # `step = "onnx"`, say: "unknown step None" named neither the key missing nor the fix
        raise OptbenchError(
            f'{where} has no name (its keys: {sorted(table)}): give the step\'s name, e.g. name = "onnx"; known '
            f"steps are {sorted(STEPS)}"
        )
    if not isinstance(name, str) or name not in STEPS:  # a list is unhashable: no `in` on a dict
        raise OptbenchError(
            f"unknown step {name!r} in {where}: known steps are {sorted(STEPS)}{did_you_mean([name], STEPS)}"
        )
    label = table.pop("label", None)
    if label is not None and (not isinstance(label, str) or not LABEL.fullmatch(label)):
        raise OptbenchError(f"{where} ({name}) label = {toml_value(label)}: {LABEL_RULE} (it names report files)")
    where = f"{where} ({name})"
    config = config_from_dict(STEPS[name].config_type, table, where)
    return RecipeStep(config, label or getattr(config, "default_label", None), where)
