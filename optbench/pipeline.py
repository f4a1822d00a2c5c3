"""Run a recipe: load the data, make or load the baseline, apply the steps, benchmark, write reports."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from optbench.artifact import ModelArtifact, content_hash
from optbench.bench import benchmark
from optbench.configs import config_to_dict
from optbench.data import LabelledData, align_labels, load_dataset, load_tokenizer
from optbench.environment import machine_key
from optbench.errors import OptbenchError, StepFailed
from optbench.failures import FailedJob, write_failures
from optbench.hf_config import has_classifier_head, hf_label_names, read_hf_config
from optbench.html_report import write_html
from optbench.packaged_models import default_encoder
from optbench.recipe import DEFAULT_MODEL, Recipe, chain_name
from optbench.report import write_report
from optbench.scratch import work_folder
from optbench.steps import RecipeStep, cannot_run_here, run_step
from optbench.steps.distill import check_student_labels
from optbench.sweep import Executor, SweepStore, runs_here, tidy_sweeps
from optbench.table import to_frame

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """Where step outputs are cached: $OPTBENCH_CACHE, else ~/.cache/optbench."""
    return Path(os.environ.get("OPTBENCH_CACHE") or Path.home() / ".cache" / "optbench")


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


# Models whose position ids start after the padding index (transformers' RobertaEmbeddings and its copies):
# they take max_position_embeddings - pad_token_id - 1 tokens.
_OFFSET_POSITIONS = (
    "roberta",
    "xlm-roberta",
    "camembert",
    "data2vec-text",
    "optbench-pruned-roberta",
    "optbench-pruned-xlm-roberta",
)


def _token_limit(config: dict[str, Any]) -> int | None:
    """The most tokens the checkpoint's position embeddings take, or None when its config does not say."""
    positions = config.get("max_position_embeddings")
    if not isinstance(positions, int):
        return None
    pad = config.get("pad_token_id")
    if config.get("model_type") in _OFFSET_POSITIONS and isinstance(pad, int):
        return positions - pad - 1
    return positions


def _check_lengths(recipe: Recipe, config: dict[str, Any], checkpoint: str) -> None:
    """Refuse token lengths beyond the model's position embeddings before any step runs (torch would fail
    mid-step with a size mismatch, TensorRT on the GPU): the dataset's max_length, [model.finetune]'s where the
    checkpoint is fine-tuned (a classifier's is unused), fixed [bench] lengths, steps' own, and the longest sequence
    of a TensorRT provider's profile."""
    asked = [("[dataset] max_length", recipe.dataset.max_length)]
    if not has_classifier_head(config):
        asked.append(("[model.finetune] max_length", recipe.finetune.max_length))
    _refuse_beyond(config, checkpoint, asked + _lengths_asked(recipe, recipe.steps()))


def _check_students(recipe: Recipe, teacher_labels: Sequence[str]) -> None:
    """Refuse a distill student from a checkpoint folder as the checkpoint is refused (`_checked_folder`: a tokenizer
    without a pad token, or of more tokens than the student embeds), a student classifier whose labels are not
    `teacher_labels` (the baseline's, which every step keeps), and the lengths it meets beyond its own position
    embeddings, as `_check_lengths` does the checkpoint's: the dataset's max_length, [bench] lengths, and the distill
    step's and later steps' of its chain. The step refused these, or its training failed with a size mismatch
    traceback, only once it ran, after the fine-tune and the steps before it."""
    for chain in recipe.chains:
        for index, step in enumerate(chain):
            folder = getattr(step.config, "student_folder", None)
            if folder is not None:
                student = f"the student {folder} of {step.where}"
                asked = [("[dataset] max_length", recipe.dataset.max_length), *_lengths_asked(recipe, chain[index:])]
                config = _checked_folder(folder, student)
                check_student_labels(config, teacher_labels, student)
                _refuse_beyond(config, student, asked)


def _lengths_asked(recipe: Recipe, steps: Sequence[RecipeStep]) -> list[tuple[str, int]]:
    """The fixed token lengths every model meets ([bench] lengths, a TensorRT provider's longest profile) and
    those of `steps`, each with where it is set."""
    asked = [("[bench] seq_len", s) for s in recipe.bench.seq_lens if isinstance(s, int)]
    asked += [(f"{s.where} max_length", s.config.max_length) for s in steps if getattr(s.config, "max_length", None)]
    asked += [(f"{s.where} seq_len", n) for s in steps for n in getattr(s.config, "seq_lens", ()) if isinstance(n, int)]
    asked += [
        (f"runtime {spec.label} trt_profile max sequence", spec.options["trt_profile"]["max"][1])
        for spec in recipe.bench.runtimes
        if "trt_profile" in spec.options
    ]
    return asked


def _refuse_beyond(config: dict[str, Any], model: str, asked: list[tuple[str, int]]) -> None:
    """Refuse the lengths of `asked` beyond the position embeddings of `model`, whose config.json is `config`."""
    limit = _token_limit(config)
    beyond = [f"{where} = {length}" for where, length in asked if limit is not None and length > limit]
    if beyond:
        raise OptbenchError(f"{', '.join(beyond)} beyond the {limit} positions of {model}: use at most {limit} tokens")


def _checked_folder(folder: Path, model: str) -> dict[str, Any]:
    """The config.json of the checkpoint folder of `model` (the recipe's checkpoint, a distill student), after the
    checks of its files that can refuse it before any step runs: `read_hf_config`'s, a tokenizer no step could pad
    with (`load_tokenizer`), and one of more tokens than the model embeds."""
    config = read_hf_config(folder)
    _check_vocabulary(len(load_tokenizer(folder)), config, model)
    return config


def _check_vocabulary(tokens: int, config: dict[str, Any], checkpoint: str) -> None:
    """Refuse a tokenizer with more tokens than the model has embeddings (`vocab_size`): a text holding one of the
    others failed the first job or step that met it with torch's bare "index out of range in self"."""
    embeddings = config.get("vocab_size")
    if isinstance(embeddings, int) and tokens > embeddings:
        raise OptbenchError(
            f"the tokenizer in {checkpoint} has {tokens} tokens and the model embeds {embeddings} (vocab_size): "
            "tokens past the model's would have no embedding; save the tokenizer the model was trained with into "
            "the folder (tokenizer.save_pretrained(folder))"
        )


def check_step_inputs(recipe: Recipe, config: dict[str, Any]) -> None:
    """Refuse, before any step runs, a step that would refuse the model its place in its chain gives it (prune
    takes BERT, RoBERTa, XLM-RoBERTa, ELECTRA and DistilBERT only; a distill student keeps the layers of
    BERT-style models and DistilBERT only, those it has, and no more than its teacher's), rather than after the
    chains before it have run. Each step with a `preflight` refuses from its input's config.json and gives its
    output's; a step without one, or one whose input is not known from the recipe (None), refuses nothing."""
    for chain in recipe.chains:
        model: dict[str, Any] | None = config
        for step in chain:
            preflight = getattr(step.config, "preflight", None)
            try:
                model = preflight(model) if preflight is not None else None
            except OptbenchError as exc:
                raise OptbenchError(f"the chain {chain_name(chain)}, step {step.shown}: {exc}") from None


def check_steps_run_here(recipe: Recipe) -> None:
    """Refuse, before any step runs, a recipe with a step this machine cannot run (`cannot_run_here`: a tensorrt
    step without TensorRT or a CUDA GPU), naming the first one the run meets: the run would stop there with that
    error anyway (exit 2), after the fine-tune and the steps before it. The dry run warns of the same steps."""
    for chain in recipe.chains:
        for step in chain:
            reason = cannot_run_here(step.config)
            if reason is not None:
                raise OptbenchError(
                    f"the chain {chain_name(chain)}, step {step.shown}, cannot run on this machine: {reason}. Or "
                    "leave that chain out of the recipe; `optbench run RECIPE --dry-run` lists every step and "
                    "runtime this machine cannot run"
                )


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
    config = _checked_folder(path, origin["checkpoint"])
    _check_lengths(recipe, config, origin["checkpoint"])
    check_step_inputs(recipe, config)
    classifier = has_classifier_head(config)
    labels = hf_label_names(config) if classifier else ()
    _check_students(recipe, labels if classifier else data.label_names)
    return ModelArtifact(path, "hf", labels, content_hash(path), origin=origin), classifier


def make_baseline(recipe: Recipe, data: LabelledData, cache_dir: Path) -> ModelArtifact:
    """The trained classifier every variant is measured against.

    A checkpoint with a sequence-classification head is the baseline as it is; an encoder without one
    (the built-in default is one) is fine-tuned on the train split first, once, and cached.
    """
    checkpoint, classifier = checkpoint_of(recipe, data)
    if classifier:
        return checkpoint
    log.info("%s has no classification head: fine-tuning it on %s", checkpoint.origin["checkpoint"], data.source)
    tuned = run_step(recipe.finetune, checkpoint, data, cache_dir)
    trained = {"finetune": config_to_dict(recipe.finetune), "data": data.fingerprint, **tuned.details}
    return replace(tuned, origin={**checkpoint.origin, **trained}, lineage=())
