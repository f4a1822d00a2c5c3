"""Running a step with a cache: its output is stored under a key made of its input's content hash, its config, the
data's fingerprint and the versions of the libraries that make it (a config's `libraries`), so re-running a recipe
reuses every step whose inputs did not change, and an upgraded exporter or quantizer runs anew."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from optbench.artifact import MANIFEST, QUANTIZATION_FILE, ModelArtifact, content_hash
from optbench.configs import config_to_dict
from optbench.data import LabelledData
from optbench.environment import installed_version
from optbench.errors import OptbenchError
from optbench.scratch import work_folder
from optbench.steps import STEPS

log = logging.getLogger(__name__)

CACHE_VERSION = 1


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
    if getattr(config, "reads_data_length", False):  # the step pads or truncates to the dataset's max_length
        payload["length"] = data.max_length
    libraries = getattr(config, "libraries", ())  # a new release may make other output from the same input
    if libraries:
        payload["libraries"] = {name: installed_version(name) for name in libraries}
    input_hashes = getattr(config, "input_hashes", None)  # files a config names by path: keyed by their content
    hashes = input_hashes() if input_hashes is not None else None
    if hashes:
        payload["inputs"] = hashes
    build_target = getattr(config, "build_target", None)  # a step whose output depends on the machine
    target = build_target() if build_target is not None else None
    if target is not None:
        payload["target"] = target
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def cannot_run_here(config: Any) -> str | None:
    """Why this machine cannot run a step whose output is keyed on the machine it is built on (its `build_target`:
    the TensorRT version and GPU of an engine), or None. The run refuses a recipe with such a step before its first
    step (`preflight.check_steps_run_here`); the dry run warns of it."""
    build_target = getattr(config, "build_target", None)
    if build_target is None:
        return None
    try:
        build_target()
    except OptbenchError as exc:
        return str(exc)
    return None


def run_step(
    config: Any, artifact: ModelArtifact, data: LabelledData, cache_dir: Path, label: str | None = None
) -> ModelArtifact:
    """Apply one step, or reuse its cached output; the output folder appears whole or not at all.

    The output's lineage is the input's plus this step, shown as `label` in variant names when given.
    """
    output = _cached_or_applied(config, artifact, data, cache_dir)
    step = replace(output.lineage[-1], label=label)
    return replace(output, origin=artifact.origin, lineage=(*artifact.lineage, step))


def step_folder(config: Any, artifact: ModelArtifact, data: LabelledData, cache_dir: Path) -> Path:
    """Where the step's output for this input and data is cached (whether it is there yet or not)."""
    return cache_dir / f"{config.name}-{cache_key(config, artifact, data)}"


def cached_output(folder: Path, step: str) -> ModelArtifact | None:
    """The output of the step named `step` cached in `folder` (see `step_folder`), or None when it has none yet;
    one whose model files changed after it was written is refused. The key covers the input's content, not its
    history: the artifact's origin and lineage are its maker's, which a caller replaces with the input's."""
    if not (folder / MANIFEST).is_file():
        return None
    cached = ModelArtifact.load(folder)
    if content_hash(folder) != cached.sha256:
        raise OptbenchError(
            f"cached {step} output {folder} is damaged (its model files changed after it was written): "
            "delete that folder and run again"
        )
    return cached


def check_input(config: Any, artifact: ModelArtifact) -> None:
    """Refuse, before the cache is looked up, an input every step would spoil: a model whose INT8 scheme is applied
    when the torch runtime loads it (a checkpoint a torch quantize-dynamic made; in a recipe, nothing follows it)."""
    if (artifact.path / QUANTIZATION_FILE).is_file():
        raise OptbenchError(
            f"{config.name} cannot take {artifact.variant}: torchao's INT8 scheme is applied only when the torch "
            "runtime loads it, and this step would drop it; make quantize-dynamic (backend torch) its chain's last step"
        )


def _cached_or_applied(config: Any, artifact: ModelArtifact, data: LabelledData, cache_dir: Path) -> ModelArtifact:
    check_input(config, artifact)
    target = step_folder(config, artifact, data, cache_dir)
    cached = cached_output(target, config.name)
    if cached is not None:
        log.info("step %s: reusing %s", config.name, target)
        return cached
    with work_folder(cache_dir, target.name) as work:  # gone however this ends; a killed run's, by the next
        result = STEPS[config.name].apply(config, artifact, data, work)
        replace(result, path=target).save_manifest(work)  # it names the folder it will be read from
        try:
            os.replace(work, target)
        except OSError as exc:  # a folder there: another process finished the same step first
            if not (target / MANIFEST).is_file():
                raise OptbenchError(
                    f"cannot store the {config.name} output as {target} ({exc.strerror or exc}): "
                    "delete that folder and run again"
                ) from exc
            log.info("step %s: another process stored %s first; using it", config.name, target)
    return ModelArtifact.load(target)
