"""The pipeline's variant list: chains that share steps share outputs; one name never means two models."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from conftest import _save_tiny

from optbench.artifact import ModelArtifact, StepRecord
from optbench.errors import OptbenchError, StepFailed
from optbench.pipeline import apply_chains, distinct_variants
from optbench.recipe import parse_recipe
from optbench.steps import RecipeStep


def _artifact(sha: str, *steps: tuple[str, str | None]) -> ModelArtifact:
    lineage = tuple(StepRecord(name, {}, label) for name, label in steps)
    return ModelArtifact(Path("/models") / sha, "hf", ("neg", "pos"), sha, lineage=lineage)


def test_a_shared_prefix_is_measured_once() -> None:
    baseline = _artifact("b")
    onnx = _artifact("o", ("onnx", None))
    dynamic = _artifact("d", ("onnx", None), ("quantize-dynamic", None))
    static = _artifact("s", ("onnx", None), ("quantize-static", None))
    variants = distinct_variants([baseline, onnx, dynamic, onnx, static])
    assert [a.variant for a in variants] == [
        "baseline",
        "baseline+onnx",
        "baseline+onnx+quantize-dynamic",
        "baseline+onnx+quantize-static",
    ]


def test_labels_tell_two_outputs_of_one_step_apart() -> None:
    three = _artifact("3", ("distill", "student-l3"))
    two = _artifact("2", ("distill", "student-l2"))
    assert [a.variant for a in distinct_variants([_artifact("b"), three, two])] == [
        "baseline",
        "baseline+student-l3",
        "baseline+student-l2",
    ]


def test_two_models_under_one_name_are_refused() -> None:
    with pytest.raises(OptbenchError, match=r"both named baseline\+distill: give the steps that differ a label"):
        distinct_variants([_artifact("b"), _artifact("3", ("distill", None)), _artifact("2", ("distill", None))])


@dataclass(frozen=True)
class _Model:
    variant: str


def test_a_failed_step_records_the_rest_of_its_chain_and_runs_once() -> None:
    """A peer step that fails ends its chain: the steps after it are recorded as not run (a budget on their variants
    says why they have no report, not that it names no variant), and a chain sharing the failed step neither runs it
    again nor records it twice."""
    optimum, quantize, onnx = {"name": "peer-optimum", "level": "O2"}, {"name": "quantize-dynamic"}, {"name": "onnx"}
    chains = [{"steps": [optimum, quantize]}, {"steps": [optimum]}, {"steps": [onnx, quantize]}]
    recipe = parse_recipe({"chains": chains, "bench": {"runtimes": ["onnxruntime"]}}, base=Path("."), default_name="r")
    ran = []

    def apply(step: RecipeStep, model: _Model) -> _Model:
        ran.append(step.shown)
        if step.config.name == "peer-optimum":
            raise StepFailed("optimum export failed")
        return _Model(f"{model.variant}+{step.shown}")

    models, failures = apply_chains(recipe, _Model("baseline"), apply)
    assert ran == ["optimum-O2", "onnx", "quantize-dynamic"]
    assert [m.variant for m in models] == ["baseline", "baseline+onnx", "baseline+onnx+quantize-dynamic"]
    assert [f.describe() for f in failures] == [
        "baseline+optimum-O2, step peer-optimum: optimum export failed",
        "baseline+optimum-O2+quantize-dynamic, step quantize-dynamic: not run: baseline+optimum-O2 failed before it",
    ]


def test_a_failure_is_named_after_the_step_that_failed_in_every_chain_sharing_it() -> None:
    """A chain that shares a failed step and the step after it (not run) names the step that failed for its own
    steps after those, as the chain it shares them with does; a step not run is named as a step, its variant by its
    label."""
    finetune, onnx, quantize = {"name": "finetune"}, {"name": "onnx"}, {"name": "quantize-dynamic", "label": "q8"}
    chains = [{"steps": [finetune, onnx]}, {"steps": [finetune, onnx, quantize]}]
    recipe = parse_recipe({"chains": chains, "bench": {"runtimes": ["onnxruntime"]}}, base=Path("."), default_name="r")

    def apply(step: RecipeStep, model: _Model) -> _Model:
        raise StepFailed("its outside tool failed")

    models, failures = apply_chains(recipe, _Model("baseline"), apply)
    assert models == [_Model("baseline")]
    assert [f.describe() for f in failures] == [
        "baseline+finetune, step finetune: its outside tool failed",
        "baseline+finetune+onnx, step onnx: not run: baseline+finetune failed before it",
        "baseline+finetune+onnx+q8, step quantize-dynamic: not run: baseline+finetune failed before it",
    ]


def test_a_run_id_is_its_start_in_utc_and_four_hex_digits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sorted by name, runs are sorted by time; the digits tell apart runs started in one second on two machines."""
    from datetime import UTC, datetime

    from optbench.pipeline import new_run_id

    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[no-untyped-def]
            return datetime(2026, 11, 30, 3, 15, 0, tzinfo=UTC)

    monkeypatch.setattr("optbench.pipeline.datetime", Frozen)
    assert re.fullmatch(r"20261130T031500Z-[0-9a-f]{4}", new_run_id())


def test_a_sweep_run_here_belongs_to_this_machine(monkeypatch: pytest.MonkeyPatch, reviews) -> None:
    """Local results do not say where they ran: another machine (sharing the folder, or after a move) must
    start its own sweep rather than pool its timings with these. Ray results carry their node's fingerprint."""
    from optbench.executors.local import LocalExecutor
    from optbench.pipeline import sweep_identity
    from optbench.recipe import parse_recipe
    from optbench.sweep import runs_here

    recipe = parse_recipe({}, base=Path("."), default_name="r")
    models = [("baseline", "ab" * 32)]
    monkeypatch.setattr("optbench.pipeline.machine_key", lambda: "box-a")
    assert runs_here(None) and runs_here(LocalExecutor(lambda *args: {}))  # the default is the local executor
    assert sweep_identity(recipe, models, reviews, here=True)["machine"] == "box-a"
    monkeypatch.setattr("optbench.pipeline.machine_key", lambda: "box-b")
    assert sweep_identity(recipe, models, reviews, here=True)["machine"] == "box-b"

    class Elsewhere(LocalExecutor):
        runs_here = False

    assert not runs_here(Elsewhere(lambda *args: {}))
    assert "machine" not in sweep_identity(recipe, models, reviews, here=False)


def test_a_sweep_is_identified_by_all_it_measures_but_the_job_timeout(reviews) -> None:
    """A re-run resumes a sweep only where it measures the same: the recipe, each model's content, the [bench]
    settings, the data and its length; one with a longer job timeout, given to let a slow job finish, resumes it."""
    from optbench.pipeline import sweep_identity

    recipe = parse_recipe({}, base=Path("."), default_name="r")
    models = [("baseline", "ab" * 32)]
    identity = sweep_identity(recipe, models, reviews, here=False)
    others = [
        sweep_identity(replace(recipe, name="other"), models, reviews, here=False),
        sweep_identity(recipe, [("baseline", "cd" * 32)], reviews, here=False),
        sweep_identity(replace(recipe, bench=replace(recipe.bench, rounds=2)), models, reviews, here=False),
        sweep_identity(recipe, models, replace(reviews, fingerprint="other"), here=False),
        sweep_identity(recipe, models, replace(reviews, max_length=reviews.max_length + 1), here=False),
    ]
    assert all(other != identity for other in others)
    longer = replace(recipe, bench=replace(recipe.bench, job_timeout_s=recipe.bench.job_timeout_s * 2))
    assert sweep_identity(longer, models, reviews, here=False) == identity


def test_the_machine_key_is_the_one_reports_carry() -> None:
    from optbench.environment import fingerprint, fingerprint_key, machine_key

    assert machine_key() == fingerprint_key(fingerprint(1))


def _tiny_recipe(tmp_path: Path, checkpoint: Path, reviews_csv: Path, batch_sizes: list[int], **tables: object):
    """A recipe of `checkpoint` on the reviews at sequence length 64, named r, with `tables` ([bench] keys beside
    batch_sizes go in tables["bench"])."""
    bench = {"batch_sizes": batch_sizes, "seq_lens": [64], **tables.pop("bench", {})}  # type: ignore[dict-item]
    table = {
        "model": {"checkpoint": str(checkpoint)},
        "dataset": {"source": str(reviews_csv), "group_column": "movie", "max_length": 64},
        **tables,
        "bench": bench,
    }
    return parse_recipe(table, base=tmp_path, default_name="r")


def _benchmark_faked(monkeypatch: pytest.MonkeyPatch, failed: tuple = (), seen: dict | None = None) -> None:
    """The run's benchmark replaced by one that times nothing: a report of its recipe and run at every shape, and
    `failed` as its failed jobs; `seen` (given) gets the variants it was given and the sweep's identity."""
    from report_fixtures import make_report

    def measured(artifacts, data, bench, *, recipe, store, executor, cache_dir):  # type: ignore[no-untyped-def]
        if seen is not None:
            seen["variants"] = [a.variant for a in artifacts]
            seen["identity"] = json.loads((store.folder / "sweep.json").read_text())["identity"]
        return [make_report(recipe=recipe, run_id=store.run_id, shapes=tuple(bench.shapes()))], list(failed)

    monkeypatch.setattr("optbench.pipeline.benchmark", measured)


def test_a_runs_page_plots_the_shape_optbench_report_plots(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_classifier: Path, reviews_csv: Path
) -> None:
    """Batch sizes listed largest first: the run's own report.html and `optbench report --format html` on its
    folder plot one shape (the smallest measured, without 1 x 128), whatever order recipe and rows come in."""
    from optbench.cli import main
    from optbench.pipeline import run_recipe

    _benchmark_faked(monkeypatch)
    run = run_recipe(
        _tiny_recipe(tmp_path, tiny_classifier, reviews_csv, [8, 1]), tmp_path / "results", tmp_path / "cache"
    )
    page = tmp_path / "page.html"
    assert main(["report", str(run), "--format", "html", "-o", str(page)]) == 0
    for html in (run / "report.html", page):
        assert "Pareto front at batch 1 x 64" in html.read_text()


def test_a_runs_failed_jobs_carry_its_run_id_in_failures_json_and_on_its_page(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_classifier: Path, reviews_csv: Path
) -> None:
    """The failures a run records are the ones its page lists: both stamped with the run's id, which tells them from
    another run's beside a copied report."""
    from optbench.failures import FailedJob, load_failures
    from optbench.pipeline import run_recipe

    crashed = FailedJob("baseline+onnx", "onnxruntime-cpu-fp32", "latency-1x64-round0-pair1", "crashed")
    _benchmark_faked(monkeypatch, (crashed,))
    run = run_recipe(
        _tiny_recipe(tmp_path, tiny_classifier, reviews_csv, [1]), tmp_path / "results", tmp_path / "cache"
    )
    assert load_failures(run) == [replace(crashed, run_id=run.name)]
    assert f"<li><b>failed</b>: {crashed.describe()}</li>" in (run / "report.html").read_text()


def test_a_run_notes_another_sweep_of_its_recipe_no_process_works_on(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_classifier: Path, reviews_csv: Path, caplog
) -> None:
    """A sweep interrupted before the recipe's [bench] changed is named when the recipe runs again, and kept: the
    user may set [bench] back and resume it."""
    from optbench.pipeline import run_recipe
    from optbench.sweep import SweepStore

    recipe = _tiny_recipe(tmp_path, tiny_classifier, reviews_csv, [1])
    interrupted = SweepStore.open(tmp_path / "results" / "r", {"bench": "before"}, lambda: "run-0", 60)
    for place in (interrupted.folder / "participants").glob("*.json"):  # its process was killed
        place.write_text(json.dumps({**json.loads(place.read_text()), "started": "0"}))
    _benchmark_faked(monkeypatch)
    with caplog.at_level("INFO", logger="optbench.sweep"):
        run_recipe(recipe, tmp_path / "results", tmp_path / "cache")
    assert f"{interrupted.folder} (" in caplog.text and "unfinished sweep of run run-0" in caplog.text
    assert interrupted.folder.is_dir()


def _recorded_run(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    checkpoint: Path,
    reviews_csv: Path,
    chains: list[dict] | None = None,
    executor: object = None,
) -> tuple[Path, dict]:
    """run_recipe of `checkpoint` on the reviews, each step made by `_made_by` (its label and config name in the
    output's lineage; StepFailed where the label says "fails"), and the benchmark replaced by one that records what it
    is given: the variants and the sweep's identity, as its sweep.json holds it."""
    from optbench.pipeline import run_recipe

    def made_by(config, artifact, data, cache_dir, label=None):  # type: ignore[no-untyped-def]
        if label == "fails":
            raise StepFailed("its outside tool failed")
        step = StepRecord(config.name, {}, label)
        sha256 = f"{artifact.sha256}+{step.shown}"
        return replace(artifact, sha256=sha256, lineage=(*artifact.lineage, step))

    seen: dict = {}
    monkeypatch.setattr("optbench.pipeline.run_step", made_by)
    _benchmark_faked(monkeypatch, seen=seen)
    runtimes = ["torch", "onnxruntime"] if chains else ["torch"]
    recipe = _tiny_recipe(tmp_path, checkpoint, reviews_csv, [1], chains=chains or [], bench={"runtimes": runtimes})
    return run_recipe(recipe, tmp_path / "results", tmp_path / "cache", executor), seen


def test_a_run_measures_each_variant_once_by_its_label_and_records_its_failed_steps(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_classifier: Path, reviews_csv: Path
) -> None:
    """Two chains sharing a labelled first step: its output is measured once, under its label; the step that fails
    in the second chain is in the run's failures with the jobs'."""
    from optbench.failures import load_failures

    exported = {"name": "onnx", "label": "exported"}
    chains = [
        {"steps": [exported, {"name": "quantize-dynamic"}]},
        {"steps": [exported, {"name": "quantize-dynamic", "label": "fails"}]},
    ]
    run, seen = _recorded_run(monkeypatch, tmp_path, tiny_classifier, reviews_csv, chains)
    assert seen["variants"] == ["baseline", "baseline+exported", "baseline+exported+quantize-dynamic"]
    assert [f.describe() for f in load_failures(run)] == [
        "baseline+exported+fails, step quantize-dynamic: its outside tool failed"
    ]


def test_a_run_whose_jobs_run_elsewhere_does_not_belong_to_this_machine(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_classifier: Path, reviews_csv: Path
) -> None:
    """Its executor's results say where they ran: another machine sharing the results folder may resume the sweep."""
    from optbench.executors.local import LocalExecutor

    class Elsewhere(LocalExecutor):
        runs_here = False

    _, seen = _recorded_run(monkeypatch, tmp_path, tiny_classifier, reviews_csv, executor=Elsewhere(lambda *a: {}))
    assert "machine" not in seen["identity"]


def test_a_run_leaves_its_published_folder_alone_in_the_recipes_results(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_classifier: Path, reviews_csv: Path
) -> None:
    """The sweep it worked in is removed as its last process leaves: a re-run starts a new sweep, not this one."""
    run, _ = _recorded_run(monkeypatch, tmp_path, tiny_classifier, reviews_csv)
    assert [path.name for path in run.parent.iterdir()] == [run.name]


def test_a_run_another_sweep_of_its_plan_published_first_returns_that_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_classifier: Path, reviews_csv: Path
) -> None:
    """Two processes of one sweep publish one run id: the second's rename fails on the first's folder, which is the
    run both made. Any other failure to publish is raised. (Files are written by renames too: only a folder's fails.)"""
    replace_path = os.replace

    def published_first(source: Path, target: Path) -> None:
        replace_path(source, target)  # as the other process did
        if Path(target).is_dir():
            raise OSError(39, "Directory not empty")

    monkeypatch.setattr("optbench.pipeline.os.replace", published_first)
    run, _ = _recorded_run(monkeypatch, tmp_path, tiny_classifier, reviews_csv)
    assert (run / "report.html").is_file()

    def failing(source: Path, target: Path) -> None:
        if Path(source).is_dir():
            raise OSError(28, "No space left on device")
        replace_path(source, target)

    monkeypatch.setattr("optbench.pipeline.os.replace", failing)
    with pytest.raises(OSError, match="No space left on device"):
        _recorded_run(monkeypatch, tmp_path / "again", tiny_classifier, reviews_csv)


def _always_predicting(folder: Path, labels: tuple[str, ...], predicted: str) -> Path:
    """A tiny classifier whose id2label lists `labels` in that order and whose head predicts `predicted` for every
    text, whatever it reads."""
    import torch
    from transformers import BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(_save_tiny(folder, head=True, labels=labels))
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([10.0 if name == predicted else -10.0 for name in labels]))
    model.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("labels", [("fresh", "rotten"), ("rotten", "fresh")])
def test_a_classifier_is_scored_by_its_label_names_in_its_own_order(
    tmp_path: Path, reviews_csv: Path, reviews, jobs_in_process: None, labels: tuple[str, ...]
) -> None:
    """A classifier whose id2label lists rotten first, where the data sorts fresh first: its output 1 is "fresh", and
    its accuracy is that of its predictions by name. Read by position (the model's labels taken in the data's order),
    every prediction counts as the other class: the accuracy of a model that always says "fresh" became the share of
    rotten reviews."""
    from optbench.pipeline import run_recipe
    from optbench.report import load_reports

    model = _always_predicting(tmp_path / "model", labels, "fresh")
    timing = {"warmup": 1, "min_iters": 3, "min_seconds": 0.0, "max_batches": 1, "threads": 1, "aa_check": False}
    recipe = _tiny_recipe(tmp_path, model, reviews_csv, [1], bench={"runtimes": ["torch"], **timing})
    [report] = load_reports(run_recipe(recipe, tmp_path / "results", tmp_path / "cache"))
    fresh = reviews.label_names.index("fresh")
    assert report.metrics.accuracy == pytest.approx(float((reviews.test.labels == fresh).mean()))
    assert report.metrics.n == len(reviews.test)


def test_a_step_this_machine_cannot_run_refuses_the_run_before_its_data_is_read(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_classifier: Path, reviews_csv: Path
) -> None:
    """The run would stop at the tensorrt step anyway (exit 2), after the fine-tune and the steps before it: it is
    refused first, and nothing is written."""
    from optbench.pipeline import run_recipe

    def no_tensorrt() -> None:
        raise OptbenchError("TensorRT is missing")

    monkeypatch.setattr("optbench.tensorrt_engine.import_tensorrt", no_tensorrt)
    monkeypatch.setattr("optbench.pipeline.load_dataset", lambda *args: pytest.fail("the data was read"))
    runtimes = ["onnxruntime", {"name": "tensorrt", "device": "cuda"}]
    chains = [{"steps": [{"name": "onnx", "fuse": False}, {"name": "tensorrt"}]}]
    recipe = _tiny_recipe(tmp_path, tiny_classifier, reviews_csv, [1], chains=chains, bench={"runtimes": runtimes})
    with pytest.raises(OptbenchError, match=r"step tensorrt-fp16, cannot run on this machine: TensorRT is missing"):
        run_recipe(recipe, tmp_path / "results", tmp_path / "cache")
    assert not (tmp_path / "results").exists()


def test_a_student_is_held_to_the_classifiers_labels_not_the_datas(tmp_path: Path, reviews_csv: Path, reviews) -> None:
    """A classifier is the baseline as it is, its labels in its own order (rotten first, where the data sorts fresh
    first): a distill student is checked against those, the ones every step keeps, before any step runs."""
    from optbench.pipeline import checkpoint_of

    teacher = _save_tiny(tmp_path / "teacher", head=True, labels=("rotten", "fresh"))
    assert reviews.label_names == ("fresh", "rotten")

    def distilled_to(labels: tuple[str, str]):
        student = _save_tiny(tmp_path / "-".join(labels), head=True, labels=labels)
        chains = [{"steps": [{"name": "distill", "student": str(student)}]}]
        return _tiny_recipe(tmp_path, teacher, reviews_csv, [1], chains=chains)

    baseline, classifier = checkpoint_of(distilled_to(("rotten", "fresh")), reviews)
    assert classifier and baseline.label_names == ("rotten", "fresh")
    with pytest.raises(OptbenchError, match="in another order; give a student with the teacher's labels in its order"):
        checkpoint_of(distilled_to(("fresh", "rotten")), reviews)
