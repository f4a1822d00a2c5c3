"""A recipe's run worked out without running it (`optbench run --dry-run`).

The plan makes the checks a run makes before its first step (the data, the checkpoint, what each step of each
chain gets), then walks the chains as the run does (`pipeline.apply_chains`) with the cache lookup in place of
the step: a step whose input exists (the checkpoint, or a cached output) has a known cache folder, and its
output is cached or not; a later step's folder is known only once the steps before it have run. The benchmark's
pairs and jobs are the run's own (`bench.pair_up`, `sweep.plan`): a pair whose runtime may leave out models it
cannot run is decided only once its model exists, so the job count is then an upper bound, unless the precision
its step names decides it (`runtimes.declines_precision`: an FP16 export on onnxruntime at fp32). Once every model
exists, the sweep the run would resume is the run's own (`pipeline.sweep_identity`, `SweepStore.unfinished`); the
warning about threads is the benchmark's (`bench.oversubscribed`). A runtime this machine cannot run (no CUDA GPU,
an onnxruntime without the provider it names, no TensorRT) is found by the GPU check's probe (`gpu_check.probe`,
`gpu_check.needs`): the recipe is valid, but where the jobs run here its pairs fail as jobs. A step whose output
is keyed on hardware this machine lacks (a tensorrt step's TensorRT version and GPU, its `build_target`) cannot run
here, whether its input is cached or not (`steps.cache.cannot_run_here`): the recipe is valid, but a run here refuses it
before its first step (`preflight.check_steps_run_here`). Nothing is trained, exported, measured or written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optbench.artifact import ModelArtifact
from optbench.bench import oversubscribed, pair_up
from optbench.data import LabelledData, align_labels, load_dataset
from optbench.failures import FAILURES_FILE
from optbench.gpu_check import Capability, needs, probe
from optbench.pipeline import apply_chains, checkpoint_of, sweep_identity
from optbench.recipe import Recipe, is_export, runs_at
from optbench.runtimes import RuntimeSpec, declines, declines_precision, may_decline, runs
from optbench.steps import RecipeStep
from optbench.steps.cache import cached_output, cannot_run_here, check_input, step_folder
from optbench.sweep import PlannedJob, SweepStore, Unfinished, plan


@dataclass(frozen=True)
class PlannedModel:
    """A model the run takes or makes: its variant name and format, the number of the step that makes it in the
    plan (0: the checkpoint), its artifact where it exists already (the checkpoint, or a step's cached output), and
    its precision where the step that makes it decides it (`recipe.runs_at`), and whether that step is the export
    whose precision it chooses (`recipe.is_export`)."""

    variant: str
    format: str
    made_by: int = 0
    artifact: ModelArtifact | None = None
    precision: str | None = None
    exported: bool = False


@dataclass(frozen=True)
class PlannedStep:
    """A step as the run meets it: its name, the variant it takes and the one it makes, and its cache folder (None
    until `waits_for`, the step that makes its input, has run, or where the step `cannot` run on this machine: why)
    with whether its output is there."""

    name: str
    takes: str
    makes: str
    folder: Path | None
    cached: bool
    waits_for: int = 0
    cannot: str | None = None


@dataclass(frozen=True)
class RunPlan:
    """What `optbench run` would do with a recipe: its steps in order, the variants, the benchmark's pairs (the
    reference's index; those a runtime may still leave out once their model exists, and those it leaves out
    already, with why) and jobs, the folder its run folder would be made in, the unfinished sweep it would resume
    (None: a new run, or not known while a model is not made yet), the benchmark's warning about threads, what this
    machine lacks for each runtime of the pairs it cannot run (by label), and whether the jobs run here."""

    recipe: Recipe
    checkpoint: ModelArtifact
    data: LabelledData
    steps: list[PlannedStep]
    models: list[PlannedModel]
    pairs: list[tuple[PlannedModel, RuntimeSpec]]
    reference: int
    undecided: set[int]
    left_out: list[str]
    jobs: list[PlannedJob]
    runs_in: Path
    resumes: Unfinished | None
    threads_warning: str | None
    lacking: dict[str, list[Capability]]
    here: bool


def plan_run(recipe: Recipe, results_dir: Path, cache_dir: Path, *, here: bool) -> RunPlan:
    """Check `recipe` as a run does before its first step, and plan the run (see the module's docstring); `here`:
    the executor runs every job on this machine (its `runs_here`)."""
    data = load_dataset(recipe.dataset)
    checkpoint, classifier = checkpoint_of(recipe, data)
    steps: list[PlannedStep] = []
    made: dict[str, PlannedModel] = {}  # chains that share their first steps share those outputs

    def planned(config: Any, model: PlannedModel, variant: str) -> PlannedModel:
        if variant in made:
            return made[variant]
        if model.artifact is not None:
            check_input(config, model.artifact)
        cannot = cannot_run_here(config)
        if model.artifact is None or cannot is not None:
            steps.append(PlannedStep(config.name, model.variant, variant, None, False, model.made_by, cannot))
            output = None
        else:
            folder = step_folder(config, model.artifact, data, cache_dir)
            output = cached_output(folder, config.name)
            steps.append(PlannedStep(config.name, model.variant, variant, folder, output is not None))
        made[variant] = PlannedModel(
            variant, config.output_format, len(steps), output, runs_at(config), is_export(config)
        )
        return made[variant]

    if classifier:
        data = align_labels(data, list(checkpoint.label_names))  # the run's check of the data's labels
        baseline = PlannedModel("baseline", "hf", artifact=checkpoint)
    else:
        encoder = PlannedModel("the checkpoint", "hf", artifact=checkpoint)
        baseline = planned(recipe.finetune, encoder, "baseline")

    def apply(step: RecipeStep, model: PlannedModel) -> PlannedModel:
        return planned(step.config, model, f"{model.variant}+{step.shown}")

    models = list({m.variant: m for m in apply_chains(recipe, baseline, apply)[0]}.values())
    reasons = {
        (m.variant, spec.label): reason
        for m in models
        for spec in recipe.bench.runtimes
        if runs(spec, m.format) and (reason := _declines(spec, m))
    }
    pairs, reference = pair_up(
        models,
        recipe.bench.runtimes,
        lambda spec, m: runs(spec, m.format) and (m.variant, spec.label) not in reasons,
    )
    bench = recipe.bench
    hashes = _content_hashes(models)
    resumes = None
    if hashes is not None:
        resumes = SweepStore.unfinished(results_dir / recipe.name, sweep_identity(recipe, hashes, data, here))
    return RunPlan(
        recipe=recipe,
        checkpoint=checkpoint,
        data=data,
        steps=steps,
        models=models,
        pairs=pairs,
        reference=reference,
        undecided={i for i, (m, spec) in enumerate(pairs) if m.artifact is None and may_decline(spec)},
        left_out=[f"{variant} on {runtime}: {reason}" for (variant, runtime), reason in reasons.items()],
        jobs=plan(len(pairs), reference, bench.shapes(), bench.rounds, bench.aa_check),
        runs_in=results_dir / recipe.name,
        resumes=resumes,
        threads_warning=oversubscribed(bench.threads, here),
        lacking=_lacking(pairs),
        here=here,
    )


def _declines(spec: RuntimeSpec, model: PlannedModel) -> str | None:
    """Why the runtime `spec` leaves out `model`, a model of a format it runs: decided from the model where it exists,
    else from the precision its step names (an FP16 export on onnxruntime at fp32); None where it runs it, or where
    that is known only once the model exists (`RunPlan.undecided`)."""
    if model.artifact is not None:
        return declines(spec, model.artifact)
    if model.precision is None:
        return None
    return declines_precision(spec, model.precision, model.exported)


def _lacking(pairs: list[tuple[PlannedModel, RuntimeSpec]]) -> dict[str, list[Capability]]:
    """What this machine lacks, by runtime label, for each runtime of `pairs` it cannot run; probed only where a
    runtime needs more than the CPU."""
    specs = {spec.label: spec for _, spec in pairs}
    if not any(needs(spec) for spec in specs.values()):
        return {}
    found = probe()
    lacking = {label: [found[key] for key in needs(spec) if not found[key].present] for label, spec in specs.items()}
    return {label: missing for label, missing in lacking.items() if missing}


def _content_hashes(models: list[PlannedModel]) -> list[tuple[str, str]] | None:
    """Each model's variant and content hash, as the sweep's identity holds them; None while one is not made."""
    hashes = [(m.variant, m.artifact.sha256) for m in models if m.artifact is not None]
    return hashes if len(hashes) == len(models) else None


def describe(run: RunPlan, executor: str) -> str:
    """The plan as the lines `optbench run --dry-run` prints; `executor` says where the jobs would run."""
    recipe, data, bench = run.recipe, run.data, run.recipe.bench
    kind = "a classifier: the baseline as it is" if run.checkpoint.label_names else "an encoder: fine-tuned first"
    lines = [
        f"recipe {recipe.name}: valid (dry run: nothing was trained, measured or written)",
        f"model: {run.checkpoint.origin['checkpoint']}, {kind}",
        f"data: {data.source}: {len(data.train)} train, {len(data.validation)} validation, {len(data.test)} test "
        f"rows; labels {', '.join(data.label_names)}; max_length {data.max_length}",
        f"steps, in order ({len(run.steps)}):" if run.steps else "steps: none",
    ]
    lines += [f"  {i}. {_step_line(step, run.steps)}" for i, step in enumerate(run.steps, 1)]
    shapes = [f"{batch}x{seq_len}" for batch, seq_len in bench.shapes()]
    lines += [
        f"variants ({len(run.models)}): {', '.join(m.variant for m in run.models)}",
        f"runtimes ({len(bench.runtimes)}): {', '.join(spec.label for spec in bench.runtimes)}",
        f"shapes ({len(shapes)}, batch x sequence length): {', '.join(shapes)}",
        f"benchmark pairs ({len(run.pairs)}):",
    ]
    lines += [f"  {_pair_line(run, i)}" for i in range(len(run.pairs))]
    lines += [f"  left out: {line}" for line in run.left_out]
    lines += [_jobs_line(run, executor), _reports_line(run)]
    if run.threads_warning:
        lines.append(f"warning: {run.threads_warning}")
    lines += _cannot_run_lines(run.steps)
    lines += _lacking_lines(run)
    return "\n".join(lines)


def _step_line(step: PlannedStep, steps: list[PlannedStep]) -> str:
    where = f"{step.name}: takes {step.takes}, makes {step.makes}: "
    if step.cannot is not None:
        return where + "cannot run on this machine"
    if step.folder is None:
        return where + f"cached or not: known after step {step.waits_for} ({steps[step.waits_for - 1].name}) runs"
    return where + ("cached" if step.cached else "not cached, runs") + f" ({step.folder})"


def _pair_line(run: RunPlan, index: int) -> str:
    model, spec = run.pairs[index]
    line = f"{model.variant} on {spec.label}"
    if index == run.reference:
        line += " (the reference)" if spec in run.recipe.bench.runtimes else " (the reference: measured always)"
    if index in run.undecided:
        line += f" (if {spec.name} takes the model: decided once it exists)"
    return line


def _jobs_line(run: RunPlan, executor: str) -> str:
    accuracy = sum(job.kind == "accuracy" for job in run.jobs)
    repeats = sum(job.repeat for job in run.jobs)
    counts = f"{accuracy} accuracy, {len(run.jobs) - accuracy - repeats} latency, {repeats} A/A repeats"
    total = f"at most {len(run.jobs)}" if run.undecided else str(len(run.jobs))
    rounds = run.recipe.bench.rounds
    return f"benchmark jobs: {total} ({counts}; {rounds} round{'s' if rounds > 1 else ''}), run by {executor}"


def _cannot_run_lines(steps: list[PlannedStep]) -> list[str]:
    """A warning per reason steps cannot run on this machine, naming them, then that a run here refuses the recipe
    before its first step (exit 2), wherever the benchmark's jobs would run."""
    numbers: dict[str, list[int]] = {}
    for number, step in enumerate(steps, 1):
        if step.cannot is not None:
            numbers.setdefault(step.cannot, []).append(number)
    if not numbers:
        return []
    lines = [
        f"warning: step{'s' if len(found) > 1 else ''} {', '.join(f'{n} ({steps[n - 1].name})' for n in found)} "
        f"cannot run on this machine: {reason}"
        for reason, found in numbers.items()
    ]
    lines.append(
        "warning: a run here refuses the recipe before its first step (exit 2, nothing trained or written). The "
        "recipe is valid: run it on a machine that has what it needs, or leave those steps' chains out"
    )
    return lines


def _lacking_lines(run: RunPlan) -> list[str]:
    """Where the jobs run here, a warning per runtime this machine cannot run, naming what it lacks and how many
    pairs fail for it, then the total; where the Ray nodes run them, one note."""
    if not run.lacking:
        return []
    counts = {label: _count(run, label) for label in run.lacking}
    failing = sum(count for count, _ in counts.values())
    undecided = any(maybe for _, maybe in counts.values())
    if not run.here:
        needed = dict.fromkeys(capability.name for missing in run.lacking.values() for capability in missing)
        return [
            f"note: this machine cannot run {', '.join(run.lacking)} ({_pairs(failing, undecided)}): the ray "
            f"executor runs their jobs on its nodes, which need {', '.join(needed)} (a run checks only that a node "
            "has a GPU, as it starts)"
        ]
    lines = [
        f"warning: {label} cannot run on this machine, which lacks "
        f"{' and '.join(f'{capability.name} ({capability.detail})' for capability in missing)}: "
        f"{_pairs(*counts[label])} on it will fail here"
        for label, missing in run.lacking.items()
    ]
    lines.append(
        f"warning: {'at most ' if undecided else ''}{failing} of the {len(run.pairs)} benchmark pairs will fail on "
        f"this machine: a run records their jobs as failed (why, in {FAILURES_FILE}), measures the other pairs and "
        "exits 1. The recipe is valid: run it on a machine that has what they need"
    )
    return lines


def _count(run: RunPlan, label: str) -> tuple[int, bool]:
    """How many pairs run on the runtime `label`, and whether some are decided only once their model exists."""
    indices = [i for i, (_, spec) in enumerate(run.pairs) if spec.label == label]
    return len(indices), any(i in run.undecided for i in indices)


def _pairs(count: int, undecided: bool) -> str:
    """ "1 benchmark pair", "3 benchmark pairs", or "at most 2 benchmark pairs" where some are undecided."""
    return f"{'at most ' if undecided else ''}{count} benchmark pair{'s' if count > 1 else ''}"


def _reports_line(run: RunPlan) -> str:
    """Where the reports go: a new run's folder, or the one of the unfinished sweep the run resumes."""
    where = f"reports: {run.runs_in / '<run id>'}/"
    if run.resumes is not None:
        done = f"{run.resumes.done} of {len(run.jobs)} jobs done"
        if run.resumes.run_id is None:
            return f"{where} (resumes an unfinished sweep whose sweep.json is gone, under a new run id: {done})"
        return f"reports: {run.runs_in / run.resumes.run_id}/ (resumes run {run.resumes.run_id}: {done})"
    if _content_hashes(run.models) is not None:
        return f"{where} (starts a new run)"
    return (
        f"{where} (a new run, or the unfinished sweep of the same models that it resumes: known once the steps "
        "that are not cached have run)"
    )
