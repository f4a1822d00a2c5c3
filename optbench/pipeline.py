"""Run a recipe: load the data, make or load the baseline, apply the steps, benchmark, write reports."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from optbench.artifact import ModelArtifact, content_hash
from optbench.bench import benchmark
from optbench.configs import config_to_dict
from optbench.data import LabelledData, align_labels, load_dataset
from optbench.environment import machine_key
from optbench.errors import OptbenchError, StepFailed
from optbench.failures import FailedJob, write_failures
from optbench.hf_config import has_classifier_head, hf_label_names
from optbench.html_report import write_html
from optbench.packaged_models import default_encoder
from optbench.preflight import check_lengths, check_step_inputs, check_steps_run_here, check_students, checked_folder
from optbench.recipe import DEFAULT_MODEL, Recipe
from optbench.report import write_report
from optbench.scratch import work_folder
from optbench.steps import RecipeStep
from optbench.steps.cache import run_step
from optbench.steps.finetune import FinetuneConfig
from optbench.sweep import Executor, SweepStore, runs_here, tidy_sweeps
from optbench.table import to_frame

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """Where step outputs are cached: $OPTBENCH_CACHE, else ~/.cache/optbench. A user with no home folder (HOME
    unset and no entry in the password file: a container run as a bare uid, `docker run --user 1234`) is asked for
    one: Path.home() raised RuntimeError, a traceback."""
    if folder := os.environ.get("OPTBENCH_CACHE"):
        return Path(folder)
    try:
        home = Path.home()
    except RuntimeError as exc:
        raise OptbenchError(
            "the default cache folder is ~/.cache/optbench, and this user has no home folder (HOME is not set, and "
            "the password file has no entry for this user): give --cache FOLDER, or set $OPTBENCH_CACHE or $HOME"
        ) from exc
    return home / ".cache" / "optbench"


def new_run_id() -> str:
    """Sortable by time, unique across machines: 20261130T031500Z-3f9a."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"


def run_recipe(recipe: Recipe, results_dir: Path, cache_dir: Path, executor: Executor | None = None) -> Path:
    """Run `recipe` end to end; its reports (and `report.html` with its plot) land whole in
    results_dir/<recipe>/<run id>/, or not at all."""
    check_steps_run_here(recipe)
    data = load_dataset(recipe.dataset)
    baseline = make_baseline(recipe, data, cache_dir)
    data = align_labels(data, list(baseline.label_names))

    def apply(step: RecipeStep, model: ModelArtifact) -> ModelArtifact:
        return run_step(step.config, model, data, cache_dir, label=step.label)

    artifacts, step_failures = apply_chains(recipe, baseline, apply)
    artifacts = distinct_variants(artifacts)
    root = results_dir / recipe.name
    identity = sweep_identity(recipe, [(a.variant, a.sha256) for a in artifacts], data, runs_here(executor))
    store = SweepStore.open(root, identity, new_run_id, recipe.bench.job_timeout_s)
    tidy_sweeps(root, store)
    reports, failed = benchmark(
        artifacts, data, recipe.bench, recipe=recipe.name, store=store, executor=executor, cache_dir=cache_dir
    )
    failed = step_failures + failed
    final = root / store.run_id
    with work_folder(root, store.run_id) as staging:  # gone however this ends; a killed run's, by the next
        for report in reports:
            write_report(report, staging)
        failed = write_failures(failed, staging, store.run_id) if failed else []  # stamped with the run id
        write_html(to_frame(reports), staging / "report.html", failed=failed)  # plotted at html_report.run_shape
        try:
            os.replace(staging, final)
        except OSError:
            if not final.is_dir():
                raise
            log.info("another sweep of this plan published %s first", final)
    store.leave()
    return final


class Variant(Protocol):
    """A model as the chains pass it on: an artifact, or (`optbench.dry_run`) the plan of one."""

    @property
    def variant(self) -> str: ...


V = TypeVar("V", bound=Variant)


def apply_chains(recipe: Recipe, baseline: V, apply: Callable[[RecipeStep, V], V]) -> tuple[list[V], list[FailedJob]]:
    """The baseline and every step's output, chain by chain (`apply` makes a step's output from its input; a run
    runs the step, a dry run plans it). Chains that share their first steps list those outputs once per chain
    (see `distinct_variants`). A step whose outside tool fails (StepFailed: a peer's pipeline or its
    environment) ends its chain and is recorded, and so is each step after it, as not run: every variant the
    recipe names has a report or a recorded reason. A chain that shares the failed step neither runs it again nor
    records it twice; the other chains go on."""
    artifacts: list[V] = [baseline]
    failures: dict[str, FailedJob] = {}  # by variant, a name only one model has (`distinct_variants`)
    for chain in recipe.chains:
        current, variant, failed_at = baseline, baseline.variant, ""
        for step in chain:
            variant = f"{variant}+{step.shown}"
            if variant in failures:  # in a chain before this one, which shares this one's first steps
                failed_at = failed_at or variant
            elif failed_at:
                reason = f"not run: {failed_at} failed before it"
                failures[variant] = FailedJob(variant, "", f"step {step.config.name}", reason)
            else:
                try:
                    current = apply(step, current)
                except StepFailed as exc:
                    log.error("%s: %s; the rest of the run goes on without it", variant, exc)
                    failures[variant] = FailedJob(variant, "", f"step {step.config.name}", str(exc))
                    failed_at = variant
                    continue
                artifacts.append(current)
    return artifacts, list(failures.values())


def sweep_identity(recipe: Recipe, models: list[tuple[str, str]], data: LabelledData, here: bool) -> dict[str, Any]:
    """What a sweep measures (`models`: each variant's name and content hash): a re-run with the same identity
    resumes it (the job timeout may change). Jobs run on this machine (`here`: the local executor's) belong to
    it: their results do not say where they ran, so another machine sharing the results folder, or the folder
    moved, starts its own sweep."""
    bench = {k: v for k, v in config_to_dict(recipe.bench).items() if k != "job_timeout_s"}
    identity = {
        "recipe": recipe.name,
        "models": models,
        "bench": bench,
        "data": data.fingerprint,
        "length": data.max_length,
    }
    if here:
        identity["machine"] = machine_key()
    return identity


def distinct_variants(artifacts: list[ModelArtifact]) -> list[ModelArtifact]:
    """Each variant once (chains that share their first steps share those outputs); two different models
    under one variant name are refused, since their reports would overwrite each other."""
    by_name: dict[str, ModelArtifact] = {}
    for artifact in artifacts:
        seen = by_name.setdefault(artifact.variant, artifact)
        if seen.sha256 != artifact.sha256:
            raise OptbenchError(
                f"two different models are both named {artifact.variant}: give the steps that differ a label, "
                'e.g. label = "student-l3"'
            )
    return list(by_name.values())


def checkpoint_of(recipe: Recipe, data: LabelledData) -> tuple[ModelArtifact, bool]:
    """The recipe's checkpoint, after every check that can refuse it before any step runs (its config.json, its
    tokenizer, the token lengths asked of it, what each step of each chain would get, a distill student's folder as
    the checkpoint's and its labels against the baseline's: the classifier's, or `data`'s that the fine-tune trains
    on), and whether it is a classifier (True: the baseline as it is) or an encoder the `finetune` step trains first
    (no label names)."""
    if recipe.checkpoint == DEFAULT_MODEL:
        path, origin = default_encoder()
    else:
        path, origin = Path(recipe.checkpoint), {"checkpoint": recipe.checkpoint}
    config = checked_folder(path, origin["checkpoint"])
    check_lengths(recipe, config, origin["checkpoint"])
    check_step_inputs(recipe, config)
    classifier = has_classifier_head(config)
    labels = hf_label_names(config) if classifier else ()
    check_students(recipe, labels if classifier else data.label_names)
    return ModelArtifact(path, "hf", labels, content_hash(path), origin=origin), classifier


def make_baseline(recipe: Recipe, data: LabelledData, cache_dir: Path) -> ModelArtifact:
    """The trained classifier every variant is measured against.

    A checkpoint with a sequence-classification head is the baseline as it is; an encoder without one
    (the built-in default is one) is fine-tuned on the train split first, once, and cached.
    """
    checkpoint, classifier = checkpoint_of(recipe, data)
    if classifier:
        if recipe.finetune != FinetuneConfig():  # as --model gives a classifier to a recipe written for an encoder
            log.info("%s is a classifier: [model.finetune] is not used", checkpoint.origin["checkpoint"])
        return checkpoint
    log.info("%s has no classification head: fine-tuning it on %s", checkpoint.origin["checkpoint"], data.source)
    tuned = run_step(recipe.finetune, checkpoint, data, cache_dir)
    trained = {"finetune": config_to_dict(recipe.finetune), "data": data.fingerprint, **tuned.details}
    return replace(tuned, origin={**checkpoint.origin, **trained}, lineage=())
