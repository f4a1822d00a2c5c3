"""Optimization steps: one module each, a config dataclass and an `apply` function, run with a cache.

A step's output is cached under a key made of its input's content hash, its config and the data's
fingerprint, so re-running a recipe reuses every step whose inputs did not change.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from optbench.artifact import MANIFEST, ModelArtifact, content_hash
from optbench.configs import config_from_dict, config_to_dict
from optbench.data import LabelledData
from optbench.errors import OptbenchError
from optbench.steps import finetune, onnx, quantize

log = logging.getLogger(__name__)

CACHE_VERSION = 1


@dataclass(frozen=True)
class StepKind:
    """A step's config type and the function that applies it."""

    config_type: type
    apply: Callable[[Any, ModelArtifact, LabelledData, Path], ModelArtifact]


STEPS: dict[str, StepKind] = {
    finetune.FinetuneConfig.name: StepKind(finetune.FinetuneConfig, finetune.apply),
    onnx.OnnxConfig.name: StepKind(onnx.OnnxConfig, onnx.apply),
    quantize.DynamicQuantizeConfig.name: StepKind(quantize.DynamicQuantizeConfig, quantize.apply_dynamic),
    quantize.StaticQuantizeConfig.name: StepKind(quantize.StaticQuantizeConfig, quantize.apply_static),
}


def parse_step(table: dict[str, Any], where: str) -> Any:
    """A step config from a recipe table such as `{name = "finetune", epochs = 2}`."""
    table = dict(table)
    name = table.pop("name", None)
    if name not in STEPS:
        raise OptbenchError(f"unknown step {name!r} in {where}: known steps are {sorted(STEPS)}")
    return config_from_dict(STEPS[name].config_type, table, f"{where} ({name})")


def cache_key(config: Any, artifact: ModelArtifact, data: LabelledData) -> str:
    payload = {
        "version": CACHE_VERSION,
        "step": config.name,
        "config": config_to_dict(config),
        "input": artifact.sha256,
        "data": data.fingerprint,
    }
    version = getattr(config, "version", 1)  # a step bumps it when its output for one config changes
    if version != 1:  # version 1 adds nothing, so caches written before versions existed stay valid
        payload["step_version"] = version
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def run_step(config: Any, artifact: ModelArtifact, data: LabelledData, cache_dir: Path) -> ModelArtifact:
    """Apply one step, or reuse its cached output; the output folder appears whole or not at all."""
    target = cache_dir / f"{config.name}-{cache_key(config, artifact, data)}"
    if (target / MANIFEST).is_file():
        log.info("step %s: reusing %s", config.name, target)
        cached = ModelArtifact.load(target)
        if content_hash(target) != cached.sha256:
            raise OptbenchError(
                f"cached {config.name} output {target} is damaged (its model files changed after it was written): "
                "delete that folder and run again"
            )
        # the key covers the input's content, not its history: take the history from this input
        return replace(cached, origin=artifact.origin, lineage=(*artifact.lineage, cached.lineage[-1]))
    work = cache_dir / f".{target.name}.{os.getpid()}.tmp"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        result = STEPS[config.name].apply(config, artifact, data, work)
        replace(result, path=work).save_manifest()
        if target.exists():  # another process finished the same step first
            shutil.rmtree(work)
        else:
            os.replace(work, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return replace(ModelArtifact.load(target), origin=artifact.origin)
