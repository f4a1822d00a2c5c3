"""The `optbench` command end to end on a tiny model: run, report, and every bad input's exit code."""

from __future__ import annotations

import csv
import dataclasses
import errno
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from report_fixtures import make_report

from optbench import cli, gpu_check, gpu_pack, output_paths
from optbench.cli import build_parser, main
from optbench.command import run_command
from optbench.errors import OptbenchError, StepFailed
from optbench.failures import FailedJob, write_failures
from optbench.report import COLUMNS, EXTRA_COLUMNS, SCHEMA_VERSION, write_report

BENCH = """
[bench]
batch_sizes = [2]
seq_lens = [16, "data"]
warmup = 1
min_iters = 3
min_seconds = 0.0
max_batches = 2
threads = 1
"""


# the onnx recipe (conftest's onnx_run): a TorchScript export measured on onnxruntime beside the reference, at
# batch 2 x the data's length
ONNX_STEP = '[[steps]]\nname = "onnx"\nexporter = "torchscript"\n'
ONNX_BENCH = BENCH.replace('seq_lens = [16, "data"]', 'seq_lens = ["data"]').replace(
    "[bench]", '[bench]\nruntimes = ["torch", "onnxruntime"]'
)


def write_recipe(folder: Path, checkpoint: Path, dataset: Path, extra: str = "", bench: str = BENCH) -> Path:
    path = folder / "recipe.toml"
    path.write_text(
        f'name = "tiny"\n{extra}\n[model]\ncheckpoint = "{checkpoint}"\n[model.finetune]\nmax_train_rows = 32\n'
        f'batch_size = 16\n[dataset]\nsource = "{dataset}"\ngroup_column = "movie"\nmax_length = 32\n{bench}'
    )
    return path


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory, tiny_encoder: Path, reviews_csv: Path) -> Path:
    """One real run of a recipe: fine-tune the tiny encoder, then benchmark it in job processes."""
    folder = tmp_path_factory.mktemp("run")
    recipe = write_recipe(folder, tiny_encoder, reviews_csv)
    code = main(["run", str(recipe), "--results", str(folder / "results"), "--cache", str(folder / "cache")])
    assert code == 0
    return folder / "results"


def test_run_writes_one_report_per_variant_and_runtime(finished_run: Path) -> None:
    runs = list((finished_run / "tiny").iterdir())
    assert len(runs) == 1 and not runs[0].name.startswith(".")
    files = sorted(p.name for p in runs[0].iterdir())
    assert files == ["baseline.torch-cpu-fp32.json", "report.html", "report.png"]  # the plot at its smallest shape
    assert "batch 2 x 16" in (runs[0] / "report.html").read_text()
    report = json.loads((runs[0] / files[0]).read_text())
    assert report["schema_version"] == SCHEMA_VERSION and report["variant"] == "baseline"
    assert report["artifact"]["origin"]["finetune"]["max_train_rows"] == 32
    assert report["environment"]["threads"]["requested"] == 1
    assert [m["seq_len"] for m in report["measurements"]] == [16, "data"]
    assert all(m["latency"]["n"] == 3 for m in report["measurements"])  # one round of exactly min_iters calls
    assert all(m["noise_floor_pct"] >= 0 for m in report["measurements"])  # the A/A repeat is on by default


def test_report_csv_has_every_column_and_a_row_per_shape(finished_run: Path, capsys) -> None:
    assert main(["report", str(finished_run), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert list(rows[0]) == COLUMNS + EXTRA_COLUMNS
    assert [(r["variant"], r["runtime"], r["device"], r["batch_size"], r["seq_len"]) for r in rows] == [
        ("baseline", "torch", "cpu", "2", "16"),
        ("baseline", "torch", "cpu", "2", "data"),
    ]
    for row in rows:
        assert 0 <= float(row["accuracy"]) <= 1
        assert float(row["accuracy_drop"]) == 0.0
        assert float(row["accuracy_drop_ci_low"]) == float(row["accuracy_drop_ci_high"]) == 0.0  # itself: certain
        assert float(row["speedup_p50"]) == 1.0
        assert float(row["p50_ci_low"]) <= float(row["p50_ms"]) <= float(row["p50_ci_high"])
        assert float(row["p50_ms"]) <= float(row["p90_ms"]) <= float(row["p99_ms"])
        assert float(row["throughput_sps"]) > 0 and float(row["peak_rss_mb"]) > 0 and float(row["model_mb"]) > 0


def test_report_writes_md_and_json_files(finished_run: Path, tmp_path: Path) -> None:
    assert main(["report", str(finished_run), "--format", "md", "-o", str(tmp_path / "t.md")]) == 0
    text = (tmp_path / "t.md").read_text()
    assert "All rows: device cpu · runtime precision fp32 · batch 2\n" in text  # said once, not as columns
    assert "| baseline | torch | data |" in text
    assert main(["report", str(finished_run), "--format", "json", "-o", str(tmp_path / "t.json")]) == 0
    assert len(json.loads((tmp_path / "t.json").read_text())) == 2


def test_rerun_reuses_the_cached_baseline(finished_run: Path, tiny_encoder: Path, reviews_csv: Path, caplog) -> None:
    """The fine-tuned baseline's origin, which each report carries, names the checkpoint, the fine-tune's settings and
    data, and what the fine-tune did."""
    from optbench.configs import config_to_dict
    from optbench.data import load_dataset
    from optbench.pipeline import make_baseline
    from optbench.recipe import load_recipe

    folder = finished_run.parent
    recipe = load_recipe(write_recipe(folder, tiny_encoder, reviews_csv))
    data = load_dataset(recipe.dataset)
    with caplog.at_level("INFO", logger="optbench.steps"):
        baseline = make_baseline(recipe, data, folder / "cache")
    assert "reusing" in caplog.text
    assert baseline.variant == "baseline" and baseline.lineage == ()
    assert set(baseline.details) == {"train_rows", "train_seconds", "validation_accuracy"}
    trained = {"finetune": config_to_dict(recipe.finetune), "data": data.fingerprint, **baseline.details}
    assert baseline.origin == {"checkpoint": recipe.checkpoint, **trained}


def test_a_classifiers_recipe_says_its_finetune_settings_are_not_used(
    tiny_classifier: Path, reviews_csv: Path, tmp_path: Path, caplog
) -> None:
    """A classifier is the baseline as it is: [model.finetune] settings (baseline.toml has some) train nothing."""
    from dataclasses import replace

    from optbench.data import load_dataset
    from optbench.pipeline import make_baseline
    from optbench.recipe import load_recipe
    from optbench.steps.finetune import FinetuneConfig

    recipe = load_recipe(write_recipe(tmp_path, tiny_classifier, reviews_csv))
    for finetune, said in ((FinetuneConfig(), False), (FinetuneConfig(epochs=2), True)):
        caplog.clear()
        with caplog.at_level("INFO", logger="optbench.pipeline"):
            make_baseline(replace(recipe, finetune=finetune), load_dataset(recipe.dataset), tmp_path / "cache")
        assert ("is a classifier: [model.finetune] is not used" in caplog.text) is said


def _fails(args: list[str], capsys, message: str) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if "error" in line]
    assert len(errors) == 1 and err[-1].startswith("optbench: error: "), err  # progress bars may come before
    assert message in err[-1], err[-1]


BAD_RECIPES = {
    "malformed": ("name = [unclosed", "is not valid TOML"),
    "unknown step": ('[[steps]]\nname = "sparsify"', "unknown step 'sparsify'"),
    "unknown runtime": ('[bench]\nruntimes = ["tensorflow"]', "unknown runtime 'tensorflow'"),
    "unknown key": ("speed = 3", "unknown key(s) ['speed']"),
    "no job time": ("[bench]\njob_timeout_s = 0", "job_timeout_s=0 must be a positive number of seconds"),
}


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]], ids=["run", "dry-run"])
@pytest.mark.parametrize("case", sorted(BAD_RECIPES))
def test_bad_recipes_exit_2_with_one_line(case: str, dry_run: list[str], tmp_path: Path, capsys) -> None:
    text, message = BAD_RECIPES[case]
    recipe = tmp_path / "bad.toml"
    recipe.write_text(text + "\n")
    _fails(["run", str(recipe), "--results", str(tmp_path / "results"), *dry_run], capsys, message)
    assert not (tmp_path / "results").exists()


def test_missing_recipe_file(tmp_path: Path, capsys) -> None:
    _fails(["run", str(tmp_path / "nope.toml")], capsys, "cannot read recipe")


def test_missing_model_folder(tmp_path: Path, reviews_csv: Path, capsys) -> None:
    recipe = write_recipe(tmp_path, tmp_path / "no-such-model", reviews_csv)
    _fails(["run", str(recipe), "--results", str(tmp_path / "results")], capsys, "does not exist")
    assert not (tmp_path / "results").exists()


def test_unreadable_model_folder(tmp_path: Path, reviews_csv: Path, capsys) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{not json")
    recipe = write_recipe(tmp_path, tmp_path / "model", reviews_csv)
    _fails(["run", str(recipe), "--results", str(tmp_path / "results")], capsys, "is not valid JSON")


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]], ids=["run", "dry-run"])
def test_weights_that_are_an_html_page(
    tmp_path: Path, tiny_classifier: Path, reviews_csv: Path, dry_run: list[str], capsys
) -> None:
    """A download that got a login page in place of model.safetensors: one line before the first step (and in the
    dry run), where the first step stopped in safetensors' traceback ("header too large")."""
    model = shutil.copytree(tiny_classifier, tmp_path / "model")
    (model / "model.safetensors").write_text("<!DOCTYPE html>\n<html><head><title>Sign in</title></head></html>\n")
    recipe = write_recipe(tmp_path, model, reviews_csv)
    args = ["run", str(recipe), "--results", str(tmp_path / "results"), "--cache", str(tmp_path / "cache"), *dry_run]
    message = f"model folder {model}: model.safetensors is an HTML page, not weights (a download that got a login"
    _fails(args, capsys, message)
    assert not (tmp_path / "results").exists() and not (tmp_path / "cache").exists()


def _cut_short_torch_weights(model: Path) -> str:
    """model's weights as a pytorch_model.bin whose copy stopped half way; the start of the line that refuses it."""
    import torch
    from safetensors.torch import load_file

    torch.save(load_file(model / "model.safetensors"), model / "pytorch_model.bin")
    (model / "model.safetensors").unlink()
    whole = (model / "pytorch_model.bin").read_bytes()
    (model / "pytorch_model.bin").write_bytes(whole[: len(whole) // 2])
    cut = f"{len(whole) // 2} bytes, a zip without the directory a whole one ends with: cut short"
    return f"model folder {model}: pytorch_model.bin is {cut}"


def _missing_shard(model: Path) -> str:
    """model's weights as the first of two shards, the second not there (a download stopped part way); the start of
    the line that refuses it."""
    (model / "model.safetensors").rename(model / "model-00001-of-00002.safetensors")
    weight_map = {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}
    index = {"metadata": {}, "weight_map": weight_map}
    (model / "model.safetensors.index.json").write_text(json.dumps(index))
    return f"model folder {model} lacks model-00002-of-00002.safetensors, shards its model.safetensors.index.json names"


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]], ids=["run", "dry-run"])
@pytest.mark.parametrize("damage", [_cut_short_torch_weights, _missing_shard], ids=["bin-cut-short", "missing-shard"])
def test_weights_a_download_left_part_way(
    tmp_path: Path, tiny_classifier: Path, reviews_csv: Path, dry_run: list[str], damage, capsys
) -> None:
    """A pytorch_model.bin cut short, or a sharded checkpoint without its last shard: one line before the first step
    (and in the dry run, which passed), where the reference's benchmark jobs failed with torch's "failed finding
    central directory" or transformers' FileNotFoundError."""
    model = shutil.copytree(tiny_classifier, tmp_path / "model")
    message = damage(model)
    recipe = write_recipe(tmp_path, model, reviews_csv)
    args = ["run", str(recipe), "--results", str(tmp_path / "results"), "--cache", str(tmp_path / "cache"), *dry_run]
    _fails(args, capsys, message)
    assert not (tmp_path / "results").exists() and not (tmp_path / "cache").exists()


def test_model_folder_without_a_tokenizer(tmp_path: Path, tiny_classifier: Path, reviews_csv: Path, capsys) -> None:
    model = tmp_path / "model"
    model.mkdir()
    for name in ("config.json", "model.safetensors"):  # model.save_pretrained() alone
        (model / name).write_bytes((tiny_classifier / name).read_bytes())
    recipe = write_recipe(tmp_path, model, reviews_csv)
    _fails(["run", str(recipe), "--results", str(tmp_path / "results")], capsys, "has no tokenizer vocabulary")
    assert not (tmp_path / "results").exists()


def test_tokenizer_without_a_pad_token(tmp_path: Path, tiny_encoder: Path, reviews_csv: Path, capsys) -> None:
    """Refused when the run first loads the tokenizer, before fine-tuning: the first padded batch was a traceback
    (transformers' "Asking to pad but the tokenizer does not have a padding token")."""
    from transformers import AutoTokenizer

    model = tmp_path / "model"
    shutil.copytree(tiny_encoder, model)
    tokenizer = AutoTokenizer.from_pretrained(model)
    tokenizer.pad_token = None
    tokenizer.save_pretrained(model)
    recipe = write_recipe(tmp_path, model, reviews_csv)
    args = ["run", str(recipe), "--results", str(tmp_path / "results"), "--cache", str(tmp_path / "cache")]
    message = (
        f"the tokenizer in {model} has no pad token, which optbench pads batches with: set the one config.json's "
        f'pad_token_id = 0 names, tokenizer.pad_token = "[PAD]", then tokenizer.save_pretrained("{model}")'
    )
    _fails(args, capsys, message)
    assert not (tmp_path / "results").exists() and not (tmp_path / "cache").exists()


def test_model_type_transformers_does_not_know(
    tmp_path: Path, tiny_classifier: Path, reviews_csv: Path, capsys
) -> None:
    """Refused before any job: the reference's first job failed on transformers' "update Transformers" hint."""
    model = tmp_path / "model"
    shutil.copytree(tiny_classifier, model)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "model_type": "my-bert"}))
    recipe = write_recipe(tmp_path, model, reviews_csv)
    message = "model_type = 'my-bert' is not a model type transformers"
    _fails(["run", str(recipe), "--results", str(tmp_path / "results")], capsys, message)
    assert not (tmp_path / "results").exists()


def test_dataset_without_the_named_columns(tmp_path: Path, tiny_classifier: Path, make_csv, capsys) -> None:
    data = make_csv({"sentence": ["a", "b"], "label": ["x", "y"]})
    recipe = write_recipe(tmp_path, tiny_classifier, data)
    _fails(["run", str(recipe), "--results", str(tmp_path / "results")], capsys, "has no column(s) ['text', 'movie']")


def test_empty_split(tmp_path: Path, tiny_classifier: Path, make_csv, capsys) -> None:
    data = make_csv({"text": ["good", "bad"], "label": ["fresh", "rotten"], "movie": ["m", "m"]})
    recipe = write_recipe(tmp_path, tiny_classifier, data)
    _fails(["run", str(recipe), "--results", str(tmp_path / "results")], capsys, "empty")


def test_labels_the_model_does_not_know(tmp_path: Path, tiny_classifier: Path, make_csv, capsys) -> None:
    rows = 60
    data = make_csv(
        {
            "text": [f"review number {i}" for i in range(rows)],
            "label": ["positive" if i % 2 else "negative" for i in range(rows)],
            "movie": [f"m{i}" for i in range(rows)],
        }
    )
    recipe = write_recipe(tmp_path, tiny_classifier, data)
    _fails(["run", str(recipe), "--results", str(tmp_path / "results")], capsys, "not known to the model")
    _fails(["run", str(recipe), "--results", str(tmp_path / "results"), "--dry-run"], capsys, "not known to the model")
    assert not (tmp_path / "results").exists()


def test_a_multi_label_classifier_is_refused_before_any_step(
    tmp_path: Path, tiny_classifier: Path, reviews_csv: Path, capsys
) -> None:
    """Its argmax was measured as a classifier's accuracy, exit 0, though it scores each class on its own."""
    model = tmp_path / "multi-label"
    shutil.copytree(tiny_classifier, model)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "problem_type": "multi_label_classification"}))
    recipe = write_recipe(tmp_path, model, reviews_csv)
    args = ["run", str(recipe), "--results", str(tmp_path / "results"), "--cache", str(tmp_path / "cache")]
    message = 'config.json: problem_type = "multi_label_classification": a multi-label head'
    _fails([*args, "--dry-run"], capsys, message)
    _fails(args, capsys, message)
    assert not (tmp_path / "results").exists() and not (tmp_path / "cache").exists()


def test_a_job_that_refuses_its_runtime_is_a_failed_job(
    tmp_path: Path, tiny_classifier: Path, reviews_csv: Path, capsys
) -> None:
    bench = BENCH.replace('seq_lens = [16, "data"]', 'seq_lens = ["data"]').replace(
        "[bench]", '[bench]\naa_check = false\nruntimes = [{name = "torch", device = "cuda", precision = "fp16"}]'
    )
    recipe = write_recipe(tmp_path, tiny_classifier, reviews_csv, bench=bench)
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU, so the CUDA job would not fail")
    assert main(["run", str(recipe), "--results", str(tmp_path / "results"), "--cache", str(tmp_path / "c")]) == 1
    assert "runtime torch on cuda: no CUDA GPU is visible" in capsys.readouterr().err
    (run,) = (tmp_path / "results" / "tiny").iterdir()  # the reference's report, and why the CUDA jobs failed
    assert sorted(p.name for p in run.glob("*.json")) == ["baseline.torch-cpu-fp32.json", "failures.json"]
    assert "<li><b>failed</b>: baseline on torch-cuda-fp16" in (run / "report.html").read_text()  # on its page too


def test_report_output_that_cannot_be_written(finished_run: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "a-file").write_text("")
    _fails(["report", str(finished_run), "-o", str(tmp_path)], capsys, f"cannot write {tmp_path}: it is a folder")
    _fails(["report", str(finished_run), "-o", str(tmp_path / "a-file" / "t.md")], capsys, "cannot write")
    assert (tmp_path / "a-file").read_text() == ""


def test_report_on_an_empty_folder(tmp_path: Path, capsys) -> None:
    _fails(["report", str(tmp_path)], capsys, "no optbench reports")
    _fails(["report", str(tmp_path / "missing")], capsys, "does not exist")


def test_results_holding_only_an_unfinished_run_say_so(tmp_path: Path, capsys) -> None:
    """A CI job whose run was stopped (a timeout, a cancel) before it published: report, compare and gate said only
    that the folder held no reports, and the gate asked for a run's folder, which it was given."""
    budget = tmp_path / "b.toml"
    budget.write_text('[[budget]]\nmax_accuracy_drop = "1 points"\n')
    write_report(make_report(), tmp_path / "done" / "run-1")
    empty, results = tmp_path / "empty", tmp_path / "results"
    empty.mkdir()
    sweep = results / "ci" / ".sweep-0123456789abcdef"
    sweep.mkdir(parents=True)
    (results / "ci" / ".sweep-0123456789abcdef.removed").mkdir()  # being deleted: no run to resume
    (results / "ci" / ".sweep-notes").write_text("a file: no run\n")
    unfinished = (
        f"holds only an unfinished run ({sweep}), not published yet: let a run still going finish, or run its recipe "
        "again (optbench run RECIPE) to resume it"
    )
    for folder in (results, results / "ci"):
        gate = ["gate", str(folder), "--budget", str(budget)]
        _fails(gate, capsys, f"no optbench reports to gate under {folder}; it")
        _fails(gate, capsys, unfinished)
        _fails(["report", str(folder)], capsys, unfinished)
        _fails(["compare", str(tmp_path / "done"), str(folder)], capsys, f"B ({folder}) holds no optbench reports; it")
    _fails(["gate", str(empty), "--budget", str(budget)], capsys, f"to gate under {empty}: give a run's folder")
    _fails(["report", str(empty)], capsys, f"under {empty}: run a recipe first")
    other = results / "nightly" / ".sweep-fedcba9876543210"
    other.mkdir(parents=True)
    both = (
        f"holds only 2 unfinished runs ({sweep}, {other}), not published yet: let a run still going finish, or run "
        "their recipes again (optbench run RECIPE) to resume them"
    )
    _fails(["report", str(results)], capsys, both)
    _fails(["report", str(empty), str(results)], capsys, f"no optbench reports under {empty} {results}; it {both}")


def test_onnx_recipe_end_to_end_then_a_damaged_onnx_file(onnx_run: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    shutil.copytree(onnx_run, run)  # the damage below is this test's own
    args = ["run", str(run / "recipe.toml"), "--results", str(run / "results"), "--cache", str(run / "cache")]
    assert main(["report", str(run / "results"), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_variant = {(r["variant"], r["runtime"]): r for r in rows}
    assert set(by_variant) == {("baseline", "torch"), ("baseline+onnx", "onnxruntime")}
    assert all(r["iterations"] == 3 and r["noise_floor_pct"] is None for r in rows)  # min_iters calls, no A/A
    onnx_row = by_variant["baseline+onnx", "onnxruntime"]
    assert onnx_row["agreement"] == 1.0 and onnx_row["accuracy_drop"] == 0.0 and onnx_row["speedup_p50"] > 0
    assert onnx_row["accuracy_drop_ci_low"] < 0 < onnx_row["accuracy_drop_ci_high"]  # agreeing here is not everywhere
    (model,) = (run / "cache").glob("onnx-*/model.onnx")
    model.write_bytes(b"damaged")
    _fails([*args, "--dry-run"], capsys, "is damaged")  # the dry run checks a cached output as the run does
    _fails(args, capsys, "is damaged")
    assert len(list((run / "results" / "tiny").iterdir())) == 1  # the failed run added nothing


def test_a_runtime_with_nothing_to_run_is_refused_up_front(
    tmp_path: Path, tiny_classifier: Path, reviews_csv: Path, capsys
) -> None:
    bench = BENCH.replace("[bench]", '[bench]\nruntimes = ["onnxruntime"]')
    recipe = write_recipe(tmp_path, tiny_classifier, reviews_csv, bench=bench)
    _fails(
        ["run", str(recipe), "--results", str(tmp_path / "results")],
        capsys,
        "runtime onnxruntime runs an ONNX model and this recipe makes none: add the step that makes one",
    )


def test_a_step_this_machine_cannot_run_is_refused_before_the_first_step(
    tmp_path: Path, tiny_encoder: Path, reviews_csv: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """A tensorrt step on a machine without TensorRT (a GPU recipe on a laptop): the run would stop at it (exit 2)
    after fine-tuning the encoder and exporting it, so it refuses the recipe before those, naming the step, what is
    missing and the fix, and writes nothing."""
    lacking = "the tensorrt step and runtime need TensorRT (import tensorrt failed: No module named 'tensorrt')"

    def no_tensorrt() -> None:
        raise OptbenchError(lacking)

    def step_ran(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("a step ran before the run refused the recipe")

    monkeypatch.setattr("optbench.tensorrt_engine.import_tensorrt", no_tensorrt)
    monkeypatch.setattr("optbench.pipeline.run_step", step_ran)
    bench = ONNX_BENCH.replace('"onnxruntime"', '{name = "tensorrt", device = "cuda"}')
    recipe = write_recipe(
        tmp_path,
        tiny_encoder,
        reviews_csv,
        extra=ONNX_STEP + 'fuse = false\n[[steps]]\nname = "tensorrt"\n',
        bench=bench,
    )
    results, cache = tmp_path / "results", tmp_path / "cache"
    _fails(
        ["run", str(recipe), "--results", str(results), "--cache", str(cache)],
        capsys,
        f"optbench: error: the chain onnx -> tensorrt-fp16, step tensorrt-fp16, cannot run on this machine: {lacking}. "
        "Or leave that chain out of the recipe; `optbench run RECIPE --dry-run` lists every step and runtime this "
        "machine cannot run",
    )
    assert not results.exists() and not cache.exists()


def test_run_takes_another_model_and_dataset_from_the_command_line(
    tmp_path: Path, tiny_classifier: Path, reviews_csv: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    ran = []

    def fake_run(recipe, results, cache, executor):  # type: ignore[no-untyped-def]
        ran.append(recipe)
        (results / "x").mkdir(parents=True)
        return results / "x"

    monkeypatch.setattr("optbench.pipeline.run_recipe", fake_run)
    monkeypatch.chdir(tmp_path)
    recipe = write_recipe(tmp_path, Path("elsewhere"), Path("elsewhere.csv"))
    (tmp_path / "model").symlink_to(tiny_classifier)
    args = ["run", str(recipe), "--model", "model", "--dataset", str(reviews_csv), "--results", "r", "--cache", "c"]
    assert main(args) == 0
    (used,) = ran
    assert used.checkpoint == str((tmp_path / "model").resolve())
    assert used.dataset.source == str(reviews_csv) and used.dataset.group_column == "movie"  # the recipe's settings
    _fails([*args[:3], "missing", *args[4:]], capsys, "--model missing does not exist")
    missing_csv = "--dataset missing.csv does not exist: give a .csv, .jsonl or .json path"
    _fails([*args[:5], "missing.csv", *args[6:]], capsys, missing_csv)
    (tmp_path / "notes.txt").write_text("a file, not a folder\n")
    _fails([*args[:7], "notes.txt", *args[8:]], capsys, "--results: notes.txt is a file, so notes.txt/tiny cannot")
    _fails([*args[:7], "notes.txt/r", *args[8:]], capsys, "--results: notes.txt is a file")
    _fails([*args[:9], "notes.txt"], capsys, "notes.txt is a file, so")
    (tmp_path / "r" / "tiny").write_text("a file where the recipe's results go\n")
    _fails(args, capsys, "--results: r/tiny is a file, so r/tiny cannot be a folder")
    assert len(ran) == 1


def test_a_run_with_failed_jobs_exits_1_and_tells_them_on_stderr(
    tmp_path: Path, tiny_classifier: Path, reviews_csv: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """A release pipeline reads the exit code: a run that measured some variants and failed others must not pass
    as 0, and its failures go to stderr so stdout stays the table."""

    def fake_run(recipe, results, cache, executor):  # type: ignore[no-untyped-def]
        report = make_report()
        folder = results / recipe.name / report.run_id
        write_report(report, folder)
        failed = FailedJob("baseline+onnx", "onnxruntime-cpu-fp32", "latency 1x128", "out of memory")
        write_failures([failed], folder, report.run_id)
        return folder

    monkeypatch.setattr("optbench.pipeline.run_recipe", fake_run)
    recipe = write_recipe(tmp_path, tiny_classifier, reviews_csv)
    assert main(["run", str(recipe), "--results", str(tmp_path / "r"), "--cache", str(tmp_path / "c")]) == 1
    out, err = capsys.readouterr()
    assert "out of memory" in err and "1 failed (steps or jobs)" in err
    assert "out of memory" not in out and "| baseline" in out


def test_run_reads_a_dataset_of_other_column_names_named_on_the_command_line(
    tmp_path: Path, tiny_classifier: Path, reviews_csv: Path, capsys
) -> None:
    """README says any recipe runs on your own data without editing it; a file whose columns are not text and
    label needed a copy of the recipe with [dataset] text_column and label_column set."""
    import pandas as pd

    mine = tmp_path / "mine.csv"
    pd.read_csv(reviews_csv).rename(columns={"text": "review", "label": "verdict"}).to_csv(mine, index=False)
    recipe = write_recipe(tmp_path, tiny_classifier, Path("elsewhere.csv"))
    args = [
        "run",
        str(recipe),
        "--dataset",
        str(mine),
        "--results",
        str(tmp_path / "r"),
        "--cache",
        str(tmp_path / "c"),
    ]
    _fails(
        [*args, "--dry-run"],
        capsys,
        "set text_column / label_column in [dataset], or give --text-column / --label-column",
    )
    assert main([*args, "--text-column", "review", "--label-column", "verdict", "--dry-run"]) == 0
    capsys.readouterr()
    _fails(
        [*args, "--text-column", "review", "--label-column", "review"],
        capsys,
        "--text-column review and --label-column review both",
    )


def test_run_gives_the_cache_to_the_run_and_leaves_optbench_cache_to_the_user(
    tmp_path: Path, tiny_classifier: Path, reviews_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--cache goes to the run, whose steps and jobs carry it (to a Ray node's job too): the variable is the user's
    default, never rewritten for the run's processes."""
    seen = []

    def fake_run(recipe, results, cache, executor):  # type: ignore[no-untyped-def]
        seen.append((cache, os.environ.get("OPTBENCH_CACHE")))
        (results / "x").mkdir(parents=True)
        return results / "x"

    monkeypatch.setattr("optbench.pipeline.run_recipe", fake_run)
    monkeypatch.setenv("OPTBENCH_CACHE", str(tmp_path / "default"))
    monkeypatch.chdir(tmp_path)  # a relative --cache, made absolute: a job's process or a Ray node has its own folder
    recipe = write_recipe(tmp_path, tiny_classifier, reviews_csv)
    assert main(["run", str(recipe), "--results", str(tmp_path / "r"), "--cache", "c"]) == 0
    assert seen == [((tmp_path / "c").resolve(), str(tmp_path / "default"))]


def test_run_makes_its_executor_as_asked_prints_the_runs_table_and_closes_the_executor(
    tmp_path: Path, tiny_classifier: Path, reviews_csv: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """The executor is made from --executor and --address, the recipe's threads, and whether the recipe has a CUDA
    runtime (Ray needs a node with a GPU then); it is closed when the run ends, and when it stops with an error."""
    made, closed = [], []

    class Executor:
        def close(self) -> None:
            closed.append(True)

    def make_executor(name: str, address: str | None, threads: int, gpu: bool) -> Executor:
        made.append((name, address, threads, gpu))
        return Executor()

    def fake_run(recipe, results, cache, executor):  # type: ignore[no-untyped-def]
        report = make_report()
        write_report(report, results / recipe.name / report.run_id)
        return results / recipe.name / report.run_id

    monkeypatch.setattr("optbench.executors.make_executor", make_executor)
    monkeypatch.setattr("optbench.pipeline.run_recipe", fake_run)
    gpu_bench = BENCH.replace("[bench]", '[bench]\nruntimes = ["torch", {name = "torch", device = "cuda"}]')
    results = tmp_path / "r"
    args = ["--results", str(results), "--cache", str(tmp_path / "c")]
    ray = ["--executor", "ray", "--address", "head:6379"]
    assert main(["run", str(write_recipe(tmp_path, tiny_classifier, reviews_csv, bench=gpu_bench)), *args, *ray]) == 0
    assert (made, closed) == ([("ray", "head:6379", 1, True)], [True])
    out = capsys.readouterr().out
    run = results / "tiny" / make_report().run_id
    assert "| baseline | torch |" in out and f"reports written to {run} (report.html: the table and" in out

    def stopped(*args: object) -> None:
        raise OptbenchError("the run stopped")

    monkeypatch.setattr("optbench.pipeline.run_recipe", stopped)
    _fails(["run", str(write_recipe(tmp_path, tiny_classifier, reviews_csv)), *args], capsys, "the run stopped")
    assert (made[-1], closed) == (("local", None, 1, False), [True, True])


def test_a_cache_folder_that_cannot_be_made_is_named_where_the_user_set_it(
    tmp_path: Path, tiny_classifier: Path, reviews_csv: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """The error said --cache to a user who had set only $OPTBENCH_CACHE, or nothing at all."""
    _never_starts(monkeypatch)
    recipe = write_recipe(tmp_path, tiny_classifier, reviews_csv)
    (tmp_path / "notes.txt").write_text("a file, not a folder\n")
    args = ["run", str(recipe), "--results", str(tmp_path / "r")]
    monkeypatch.setenv("OPTBENCH_CACHE", str(tmp_path / "notes.txt" / "cache"))
    _fails(args, capsys, "error: $OPTBENCH_CACHE: ")
    _fails([*args, "--cache", str(tmp_path / "notes.txt")], capsys, "error: --cache: ")
    monkeypatch.setenv("HOME", str(tmp_path / "notes.txt"))
    monkeypatch.setenv("OPTBENCH_CACHE", "")  # set but empty: the default, as unset
    cache = tmp_path / "notes.txt" / ".cache" / "optbench"
    default = f"error: the default cache folder {cache} (--cache names another): "
    _fails(args, capsys, default)
    monkeypatch.delenv("OPTBENCH_CACHE")
    _fails(args, capsys, default)


def test_a_user_with_no_home_folder_is_asked_for_a_cache_folder(
    tmp_path: Path, tiny_classifier: Path, reviews_csv: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """HOME unset and no entry in the password file (a container run as a bare uid): the default cache has no
    folder to be under. Path.home() raised RuntimeError, a traceback."""
    import pwd

    def no_entry(uid: int) -> pwd.struct_passwd:
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    _never_starts(monkeypatch)
    monkeypatch.delenv("HOME", raising=False)
    monkeypatch.delenv("OPTBENCH_CACHE", raising=False)
    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    recipe = write_recipe(tmp_path, tiny_classifier, reviews_csv)
    _fails(
        ["run", str(recipe), "--results", str(tmp_path / "r"), "--dry-run"],
        capsys,
        "error: the default cache folder is ~/.cache/optbench, and this user has no home folder (HOME is not set, "
        "and the password file has no entry for this user): give --cache FOLDER, or set $OPTBENCH_CACHE or $HOME",
    )


def _tree(*folders: Path) -> list[tuple[str, int]]:
    """Every path under `folders` (hidden ones too) with its size: what a command that writes nothing leaves as is."""
    return sorted((str(p), p.stat().st_size if p.is_file() else 0) for f in folders for p in [f, *f.rglob("*")])


def _never_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    """A dry run that started a run, or an executor, fails the test."""

    def started(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("a dry run started the run or its executor")

    monkeypatch.setattr("optbench.pipeline.run_recipe", started)
    monkeypatch.setattr("optbench.executors.make_executor", started)


def test_dry_run_prints_the_plan_and_writes_nothing(
    tmp_path: Path, tiny_encoder: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """recipes/baseline.toml on a tiny encoder: the fine-tune is planned, not run, and no folder changes."""
    _never_starts(monkeypatch)
    results, cache = tmp_path / "results", tmp_path / "cache"
    for folder in (results, cache):
        folder.mkdir()
        (folder / "kept.txt").write_text("someone else's file\n")
    before = _tree(results, cache)
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "baseline.toml"
    args = ["run", str(recipe), "--model", str(tiny_encoder), "--results", str(results), "--cache", str(cache)]
    assert main([*args, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert _tree(results, cache) == before
    assert "recipe baseline: valid (dry run: nothing was trained, measured or written)" in out
    assert f"model: {tiny_encoder}, an encoder: fine-tuned first" in out
    assert "labels fresh, rotten; max_length 128" in out
    assert f"  1. finetune: takes the checkpoint, makes baseline: not cached, runs ({cache}/finetune-" in out
    assert "variants (1): baseline\nruntimes (1): torch-cpu-fp32\n" in out
    assert "shapes (4, batch x sequence length): 1x128, 1xdata, 32x128, 32xdata" in out
    assert "benchmark pairs (1):\n  baseline on torch-cpu-fp32 (the reference)\n" in out
    # per shape one latency job and its A/A repeat, after the accuracy pass
    assert "benchmark jobs: 9 (1 accuracy, 4 latency, 4 A/A repeats; 1 round), run by the local executor" in out
    assert f"reports: {results}/baseline/<run id>/ (a new run, or the unfinished sweep" in out  # the fine-tune runs


def test_dry_run_shows_cached_steps_and_what_waits_for_a_step(
    finished_run: Path, tmp_path: Path, tiny_encoder: Path, reviews_csv: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """The fine-tune finished_run cached is shown cached; the onnx step after it has a known key and no output
    yet; the quantize step after that is keyed by the export's content, unknown until it runs, and so is whether
    onnxruntime takes its model: the job count is an upper bound."""
    _never_starts(monkeypatch)
    cache = finished_run.parent / "cache"
    steps = '[[steps]]\nname = "onnx"\n[[steps]]\nname = "quantize-dynamic"\n'
    bench = BENCH.replace("[bench]", '[bench]\nruntimes = ["torch", "onnxruntime"]')
    recipe = write_recipe(tmp_path, tiny_encoder, reviews_csv, extra=steps, bench=bench)
    before = _tree(finished_run, cache)
    args = ["run", str(recipe), "--results", str(finished_run), "--cache", str(cache), "--dry-run"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert _tree(finished_run, cache) == before
    (tuned,) = cache.glob("finetune-*")
    assert f"  1. finetune: takes the checkpoint, makes baseline: cached ({tuned})\n" in out
    assert f"  2. onnx: takes baseline, makes baseline+onnx: not cached, runs ({cache}/onnx-" in out
    assert (
        "  3. quantize-dynamic: takes baseline+onnx, makes baseline+onnx+quantize-dynamic: cached or not: known after "
        "step 2 (onnx) runs\n" in out
    )
    undecided = "on onnxruntime-cpu-fp32 (if onnxruntime takes the model: decided once it exists)"
    assert f"  baseline+onnx {undecided}\n  baseline+onnx+quantize-dynamic {undecided}\n" in out
    # 3 pairs: 3 accuracy jobs, then per shape (2) one latency job per pair and the reference's A/A repeat
    assert "benchmark jobs: at most 11 (3 accuracy, 6 latency, 2 A/A repeats; 1 round)" in out


def test_an_interrupted_dry_run_says_it_wrote_nothing_not_that_it_resumes(
    tmp_path: Path, tiny_classifier: Path, reviews_csv: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    def interrupted(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt  # Ctrl-C while the dry run loads the model and data

    _never_starts(monkeypatch)
    monkeypatch.setattr("optbench.dry_run.plan_run", interrupted)
    recipe = write_recipe(tmp_path, tiny_classifier, reviews_csv)
    assert main(["run", str(recipe), "--results", str(tmp_path / "results"), "--dry-run"]) == 130
    err = capsys.readouterr().err
    assert err == "optbench: interrupted; a dry run writes nothing: run it again to see the whole plan\n"


@pytest.mark.parametrize(
    "command",
    [["report", "results"], ["compare", "a", "b"], ["gate", "--budget", "budgets.toml", "results"]],
)
def test_an_interrupted_reading_command_says_only_that_it_was_interrupted(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """Not "nothing was written for the unfinished run": these commands have no run to finish or resume."""

    def interrupted(folder: Path) -> list:
        raise KeyboardInterrupt  # Ctrl-C while the reports are read

    monkeypatch.chdir(tmp_path)
    for folder in ("results", "a", "b"):
        (tmp_path / folder).mkdir()
    (tmp_path / "budgets.toml").write_text('[[budget]]\nmax_size = "1 GB"\n')
    monkeypatch.setattr("optbench.report.report_files", interrupted)
    assert main(command) == 130
    assert capsys.readouterr().err == "optbench: interrupted\n"


def test_dry_run_checks_the_executor_without_starting_it(
    tmp_path: Path, tiny_classifier: Path, reviews_csv: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    _never_starts(monkeypatch)
    monkeypatch.setattr("optbench.executors.ray.require_package", lambda *args, **kwargs: None)  # ray: a test extra
    recipe = write_recipe(tmp_path, tiny_classifier, reviews_csv)
    args = ["run", str(recipe), "--results", str(tmp_path / "results"), "--dry-run"]
    assert main([*args, "--executor", "ray"]) == 0
    out = capsys.readouterr().out
    assert "run by the ray executor (a local Ray runtime)" in out
    assert f"model: {tiny_classifier}, a classifier: the baseline as it is\n" in out and "steps: none\n" in out
    _fails([*args, "--address", "head:6379"], capsys, "--address is the Ray cluster's: use it with --executor ray")

    def missing(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise cli.OptbenchError("--executor ray needs the ray package: pip install 'optbench[ray]'")

    monkeypatch.setattr("optbench.executors.ray.require_package", missing)
    _fails([*args, "--executor", "ray"], capsys, "--executor ray needs the ray package")
    assert not (tmp_path / "results").exists()


def test_run_writes_under_results_in_the_current_folder_unless_told(
    tmp_path: Path, tiny_classifier: Path, reviews_csv: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """`optbench run RECIPE` puts its reports under ./results, as --help and the README say: a CI step that then
    gates or uploads results/ would find nothing were they written anywhere else."""
    _never_starts(monkeypatch)
    monkeypatch.chdir(tmp_path)
    recipe = write_recipe(tmp_path, tiny_classifier, reviews_csv)
    assert main(["run", str(recipe), "--cache", str(tmp_path / "c"), "--dry-run"]) == 0
    assert "\nreports: results/tiny/<run id>/ " in capsys.readouterr().out


@pytest.mark.parametrize("command", ["run", "report", "compare", "gate", "env"])
def test_each_command_help_ends_with_its_examples(command: str, capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    examples = capsys.readouterr().out.split("\nexamples:\n")[1].splitlines()
    assert examples and all(line.startswith(f"  optbench {command} ") for line in examples)


@pytest.mark.parametrize(("command", "named"), [("compare", ["A", "B"]), ("gate", ["RESULTS"])])
def test_help_names_the_arguments_as_its_description_does(command: str, named: list[str], capsys) -> None:
    # the descriptions say "results A (before) with B (after)" and "the newest run under RESULTS", and the usage
    # lines ended in `a b` and `results`, which reads as a folder of that name
    with pytest.raises(SystemExit):
        main([command, "--help"])
    usage, description = capsys.readouterr().out.split("\n\n")[:2]
    assert usage.split()[-len(named) :] == named
    assert all(name in description.split() for name in named)


@pytest.mark.parametrize(
    ("argv", "command", "unknown"),
    [
        (["report", "results", "--bogus"], "report", "--bogus"),
        (["gate", "--budget", "b.toml", "results", "--strcit"], "gate", "--strcit"),
        (["compare", "a", "b", "c"], "compare", "c"),
        (["run", "r.toml", "--dryrun"], "run", "--dryrun"),
    ],
)
def test_an_unknown_argument_of_a_command_is_told_by_that_command(
    argv: list[str], command: str, unknown: str, capsys
) -> None:
    # `optbench report results --bogus` printed optbench's usage (which lists no option of report) and
    # `optbench: error: unrecognized arguments`, though a missing argument or a bad value was told by the command
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: optbench {command} "), err
    assert err.splitlines()[-1] == f"optbench {command}: error: unrecognized arguments: {unknown}"


def test_an_unknown_option_before_the_command_is_told_by_optbench(capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--bogus", "report"])
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == "optbench: error: unrecognized arguments: --bogus"


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "one"])
def test_peer_budget_must_be_a_number_of_points(value: str, capsys) -> None:
    # nan slipped past a `< 0` check, and no drop is within nan points: every speedup_vs_peer came out empty
    with pytest.raises(SystemExit) as exited:
        main(["report", "--peer-budget", value])
    assert exited.value.code == 2
    assert f"{value!r} is not an accuracy drop in points" in capsys.readouterr().err


def test_peer_budget_help_states_the_default_the_table_uses(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    # the help once wrote the default out as 1.0: a change of DEFAULT_BUDGET_POINTS would have left it wrong
    monkeypatch.setattr("optbench.peers.speedup.DEFAULT_BUDGET_POINTS", 2.5)
    with pytest.raises(SystemExit):
        main(["report", "--help"])
    assert "(default: 2.5; not with --by-machine" in " ".join(capsys.readouterr().out.split())


def test_report_help_names_every_column_a_row_is_keyed_by(capsys) -> None:
    # the help said a row per variant, runtime, device and shape (--by-machine: variant, runtime and shape), but a
    # GPU run's fp32, fp16 and bf16 rows of one runtime are rows of their own, in both tables
    from optbench.machines import ROW_KEY

    words = {"precision_mode": "precision", "batch_size": "batch size", "seq_len": "sequence length"}
    with pytest.raises(SystemExit):
        main(["report", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    table = text.split("one row per ", 1)[1].split(";", 1)[0]
    merged = text.split("merge machines: a row per ", 1)[1].split(", each machine", 1)[0]
    assert all(words.get(key, key) in table for key in ROW_KEY), table
    assert all(words.get(key, key) in merged for key in ROW_KEY[:4]) and "shape" in merged, merged


def test_report_reads_a_run_given_twice_once(tmp_path: Path, capsys) -> None:
    # `optbench report results results/demo/RUN` (or a shell glob over both) names one run twice
    report = make_report()
    run = tmp_path / "results" / "demo" / report.run_id
    write_report(report, run)
    write_failures([FailedJob("baseline+onnx", "onnxruntime-cpu-fp32", "latency-1", "crashed")], run, report.run_id)
    assert main(["report", str(tmp_path / "results"), str(run), str(run / "baseline.torch-cpu-fp32.json")]) == 0
    out, err = capsys.readouterr()
    assert out.count("| baseline | torch |") == 2  # its two shapes, once each
    assert out.count("crashed") == 1 and "crashed" not in err


def test_report_with_no_path_reads_results_in_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """`optbench report` alone reads ./results, not every report under the current folder (a copy kept beside it)."""
    write_report(make_report(), tmp_path / "results" / "demo" / "run-1")
    kept = make_report(("onnx",), run_id="20261129T031500Z-0000")
    write_report(kept, tmp_path / "old-results" / "demo" / "run-0")
    monkeypatch.chdir(tmp_path)
    assert main(["report"]) == 0
    out = capsys.readouterr().out
    assert "| baseline | torch |" in out and "baseline+onnx" not in out


def test_report_of_one_report_file_lists_its_runs_failures(tmp_path: Path, capsys) -> None:
    # `optbench report RUN/baseline.torch-cpu-fp32.json` read failures.json files under folders named only, so a
    # report file named alone listed none of its run's failures, which gate and compare find beside it
    report = make_report()
    run = tmp_path / "results" / "demo" / report.run_id
    path = write_report(report, run)
    write_failures([FailedJob("baseline+onnx", "onnxruntime-cpu-fp32", "latency-1", "crashed")], run, report.run_id)
    assert main(["report", str(path)]) == 0
    assert "- **failed**: baseline+onnx on onnxruntime-cpu-fp32, latency-1: crashed" in capsys.readouterr().out


def test_report_lists_only_the_failures_of_the_runs_it_shows(tmp_path: Path, capsys) -> None:
    # a failures.json beside a report is its run's; another run's failures beside a copied report are not listed,
    # and a run copied without its failures.json still lists those beside its other copy, once
    report = make_report()
    run = tmp_path / "results" / "demo" / report.run_id
    write_report(report, run)
    write_failures([FailedJob("baseline+onnx", "onnxruntime-cpu-fp32", "latency-1", "crashed")], run, report.run_id)
    elsewhere = tmp_path / "aaa-copy"  # sorted first: its copy is the one the table keeps
    write_report(report, elsewhere)
    write_failures([FailedJob("baseline", "torch-cpu-fp32", "accuracy-1", "killed")], elsewhere, "another-run")
    assert main(["report", str(tmp_path), "--format", "csv"]) == 0
    err = capsys.readouterr().err
    assert err.count("crashed") == 1 and "killed" not in err


def test_report_lists_failed_jobs_under_their_runs_table_and_on_stderr_for_csv(tmp_path: Path, capsys) -> None:
    # `report -o table.md` kept no word of them: they went to stderr only
    report = make_report()
    run = tmp_path / "results" / "demo" / report.run_id
    write_report(report, run)
    write_failures([FailedJob("baseline+onnx", "onnxruntime-cpu-fp32", "latency-1", "crashed")], run, report.run_id)
    assert main(["report", str(tmp_path / "results")]) == 0
    out, err = capsys.readouterr()
    assert "- **failed**: baseline+onnx on onnxruntime-cpu-fp32, latency-1: crashed" in out and "crashed" not in err
    assert main(["report", str(tmp_path / "results"), "--format", "csv"]) == 0  # no place for them in a table
    out, err = capsys.readouterr()
    assert "crashed" not in out and "failed: baseline+onnx on onnxruntime-cpu-fp32, latency-1: crashed" in err
    page = tmp_path / "page.html"  # the page lists them under the run's table, as Markdown does
    assert main(["report", str(tmp_path / "results"), "--format", "html", "-o", str(page)]) == 0
    assert "crashed" not in capsys.readouterr().err
    assert "<li><b>failed</b>: baseline+onnx on onnxruntime-cpu-fp32, latency-1: crashed" in page.read_text()


def test_report_lists_the_failures_of_every_run_it_shows(tmp_path: Path, capsys) -> None:
    for run_id, job in (("run-1", "latency-1"), ("run-2", "accuracy-1")):
        write_report(make_report(run_id=run_id), tmp_path / "results" / "demo" / run_id)
        failed = FailedJob("baseline+onnx", "onnxruntime-cpu-fp32", job, f"{run_id} crashed")
        write_failures([failed], tmp_path / "results" / "demo" / run_id, run_id)
    assert main(["report", str(tmp_path / "results")]) == 0
    out = capsys.readouterr().out
    assert "latency-1: run-1 crashed" in out and "accuracy-1: run-2 crashed" in out
    # a failures.json written before runs recorded their ids, beside the reports of two runs: one failure, listed once
    shared = tmp_path / "copied"
    for steps, run_id in (((), "run-1"), (("onnx",), "run-2")):
        write_report(make_report(steps, run_id=run_id), shared)
    write_failures([FailedJob("baseline+onnx", "onnxruntime-cpu-fp32", "latency-1", "killed")], shared, "")
    assert main(["report", str(shared), "--format", "csv"]) == 0
    assert capsys.readouterr().err.count("killed") == 1


def test_report_by_machine_refuses_an_against_even_an_empty_one(tmp_path: Path, capsys) -> None:
    """--against chooses a row of one run, which a by-machine table has not: an empty one is refused too, as a
    run's table refuses it, rather than dropped without a word."""
    write_report(make_report(), tmp_path / "results" / "run-1")
    for against in ("baseline", ""):
        assert main(["report", str(tmp_path / "results"), "--by-machine", "--against", against]) == 2
        err = capsys.readouterr().err
        assert "--by-machine compares machines, --against rows of one run: drop one of them" in err


@pytest.mark.parametrize("fmt", ["md", "csv", "json"])
def test_report_ends_its_output_with_one_newline(fmt: str, tmp_path: Path, capsys) -> None:
    write_report(make_report(), tmp_path / "results" / "run-1")
    assert main(["report", str(tmp_path / "results"), "--format", fmt]) == 0
    out = capsys.readouterr().out
    assert out.endswith("\n") and not out.endswith("\n\n")


def test_report_lists_a_run_copied_into_two_folders_once(tmp_path: Path, capsys, caplog) -> None:
    # the same run measured once counts once: a copy of it in another folder (a backup, a second machine's
    # checkout) listed every row twice; a distributed run's reports of one variant from two nodes, or another run
    # of the same variant, are other measurements and stay
    on_node = [dataclasses.replace(make_report(("onnx",)), environment={"executor": "ray", "machine": n}) for n in "pq"]
    for folder in ("a", "b"):
        for report in (make_report(), make_report(run_id="run-2"), *on_node):
            write_report(report, tmp_path / folder / report.run_id)
    with caplog.at_level("INFO", logger="optbench.report"):
        assert main(["report", str(tmp_path / "a"), str(tmp_path / "b"), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert sorted((r["run_id"], r["variant"], r["machine"]) for r in rows) == sorted(
        [("20261130T031500Z-3f9a", "baseline", "box-1"), ("run-2", "baseline", "box-1")] * 2
        + [("20261130T031500Z-3f9a", "baseline+onnx", n) for n in "pq"] * 2  # two shapes each
    )
    skipped = tmp_path / "b" / "run-2" / "baseline.torch-cpu-fp32.json"
    assert f"{skipped}: a copy of {tmp_path / 'a' / 'run-2' / 'baseline.torch-cpu-fp32.json'}" in caplog.text
    assert caplog.text.count("a copy of") == 4


@pytest.mark.parametrize(
    ("argv", "verbose"),
    [(["report"], False), (["-v", "report"], True), (["report", "-v"], True), (["run", "r.toml", "--verbose"], True)],
)
def test_verbose_goes_before_or_after_the_command(argv: list[str], verbose: bool) -> None:
    # `optbench run RECIPE -v` was "unrecognized arguments: -v", and no command's --help listed it
    assert build_parser().parse_args(argv).verbose is verbose


EMPTY_PATHS = [  # (command, argv, the argument the error names)
    (cli, ["run", ""], "recipe"),
    *((cli, ["run", "r.toml", option, ""], option) for option in ("--results", "--cache", "--model", "--dataset")),
    (cli, ["report", ""], "PATH"),
    (cli, ["report", "-o", ""], "-o/--output"),
    (cli, ["compare", "", "b"], "A"),
    (cli, ["compare", "a", ""], "B"),
    (cli, ["compare", "a", "b", "--budget", ""], "--budget"),
    (cli, ["compare", "a", "b", "-o", ""], "-o/--output"),
    (cli, ["gate", "", "--budget", "b.toml"], "RESULTS"),
    (cli, ["gate", "r", "--budget", ""], "--budget"),
    (cli, ["gate", "r", "--budget", "b.toml", "--junit", ""], "--junit"),
    *((gpu_check, [option, ""], option) for option in ("--results", "--cache", "--recipes")),
    (gpu_pack, [""], "folder"),
    (gpu_pack, ["p", "--cache", ""], "--cache"),
]
BLANK_PATHS = [  # only blanks: a folder of that name is surely a slip (`--results " "` wrote into one)
    (cli, ["run", "r.toml", "--results", " "], "--results"),
    (cli, ["report", "\t"], "PATH"),
]


@pytest.mark.parametrize(
    ("command", "argv", "argument"),
    [
        pytest.param(*case, id=" ".join([case[0].__name__.split(".")[-1], *(a.strip() or repr(a) for a in case[1])]))
        for case in EMPTY_PATHS + BLANK_PATHS
    ],
)
def test_an_empty_path_is_refused_not_taken_for_the_current_folder(
    command, argv: list[str], argument: str, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    # argparse's type=Path reads "" as Path("") == Path("."): `--results ""` wrote into the current folder,
    # `--cache ""` cached there, `report ""` read it, and `-o ""` failed naming "." instead of the empty value
    def no_work(*args: object) -> None:
        raise AssertionError(f"{argv} was taken, not refused")

    monkeypatch.setattr(command, "run_command", no_work)
    with pytest.raises(SystemExit) as exited:
        command.main(argv)
    assert exited.value.code == 2
    value = next(a for a in reversed(argv) if not a.strip())
    assert f"argument {argument}: an empty path ({value!r}) names no file or folder" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["report", "results", "-o", "-"], "-o/--output"),
        (["compare", "a", "b", "--output", "-"], "-o/--output"),
        (["gate", "--budget", "b.toml", "results", "--junit", "-"], "--junit"),
        (["gate", "--budget", "b.toml", "results", "--json", "-"], "--json"),
    ],
)
def test_an_output_named_dash_is_refused_not_written_as_a_file_named_dash(
    argv: list[str], option: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """Many tools read `-o -` as stdout: optbench wrote a file named - in the current folder, and printed nothing."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    message = f"argument {option}: '-' would be a file named - here, not stdout: give a file name (/dev/stdout for "
    assert message in capsys.readouterr().err
    assert not (tmp_path / "-").exists()


def test_a_path_the_system_refuses_is_one_line_not_a_traceback(tmp_path: Path, capsys) -> None:
    # Path.exists() answers False for a missing file but raises for a name too long (or a folder this user may
    # not search): `--results`, `report`, `gate` and `compare` on such a path ended in a traceback
    long = str(tmp_path / ("a" * 300))
    recipe = tmp_path / "r.toml"
    recipe.write_text('name = "r"\n')
    budget = tmp_path / "b.toml"
    budget.write_text('[[budget]]\nmax_accuracy_drop = "1 points"\n')
    write_report(make_report(), tmp_path / "results" / "run-1")
    for args in (
        ["run", str(recipe), "--results", long],
        ["report", long],
        ["gate", long, "--budget", str(budget)],
        ["compare", str(tmp_path / "results"), long],
    ):
        _fails(args, capsys, "File name too long: check the path")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.toml", "r.toml", "results"]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])  # the file system, or this user's quota on it
def test_a_full_file_system_met_mid_run_asks_for_space_not_access(
    code: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """A disk that fills while a step saves its model: the line said to check the path and that this user may write
    there, which it may."""

    def full(*args: object) -> int:
        raise OSError(code, os.strerror(code), str(tmp_path / "cache" / "model.safetensors"))

    recipe = tmp_path / "r.toml"
    recipe.write_text('name = "r"\n')
    monkeypatch.setattr("optbench.recipe.load_recipe", full)
    _fails(["run", str(recipe)], capsys, f"model.safetensors: {os.strerror(code)}: free some space on its file")


def _run_beside_a_faked_file_system(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, **fields: int
) -> tuple[Path, Path]:
    """A recipe whose run must not start, and a folder `name` whose file system os.statvfs reports with `fields`
    (f_bavail=..., f_flag=...) changed; every other path's as it is."""
    monkeypatch.setattr("optbench.pipeline.run_recipe", lambda *args: pytest.fail("the run started"))
    recipe = write_recipe(tmp_path, Path("model"), Path("reviews.csv"))
    folder = tmp_path / name
    folder.mkdir()
    space = os.statvfs(tmp_path)
    names = ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree", "f_favail", "f_flag")
    faked = os.statvfs_result([*(fields.get(field, getattr(space, field)) for field in names), space.f_namemax])
    monkeypatch.setattr(output_paths.os, "statvfs", lambda path: faked if Path(path) == folder else space)
    return recipe, folder


def test_a_run_on_a_full_file_system_is_refused_before_any_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """Its first write there, the sweep's, came after the steps: minutes of fine-tuning, then the error."""
    blocks = (output_paths.MIN_FREE_BYTES - 4096) // os.statvfs(tmp_path).f_frsize  # just under the floor, root or not
    recipe, full = _run_beside_a_faked_file_system(tmp_path, monkeypatch, "full", f_bfree=blocks, f_bavail=blocks)
    room = ["--results", str(tmp_path / "results"), "--cache", str(tmp_path / "cache")]
    for option in ("--results", "--cache"):
        args = ["run", str(recipe), *room, option, str(full / "x")]  # the later option wins
        _fails([*args, "--dry-run"], capsys, f"{option}: the file system of {full} is full (")
        _fails(args, capsys, "KiB free): free some space on its file system, or give a folder on another")


def test_a_run_on_a_read_only_file_system_is_refused_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """A read-only mount was told "not writable by this user: give a folder you can write", though no user can."""
    read_only = os.statvfs(tmp_path).f_flag | os.ST_RDONLY
    recipe, frozen = _run_beside_a_faked_file_system(tmp_path, monkeypatch, "frozen", f_flag=read_only)
    room = ["--results", str(tmp_path / "results"), "--cache", str(tmp_path / "cache")]
    for option in ("--results", "--cache"):
        args = ["run", str(recipe), *room, option, str(frozen / "x"), "--dry-run"]
        _fails(args, capsys, f"{option}: {frozen} is on a read-only file system: give a folder on a file system that")


def test_a_read_only_file_system_met_mid_run_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    def refused(*args: object) -> int:
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "cache" / "model.safetensors"))

    recipe = tmp_path / "r.toml"
    recipe.write_text('name = "r"\n')
    monkeypatch.setattr("optbench.recipe.load_recipe", refused)
    _fails(["run", str(recipe)], capsys, "Read-only file system: give a folder on a file system that can be written")


def test_verbose_shows_where_the_system_refused_a_path(tmp_path: Path, capsys, caplog) -> None:
    # the one line names the path; should the error be a fault of optbench's own, -v logs where it was raised
    long = str(tmp_path / ("a" * 300))
    for args, logged in ((["report", long, "-v"], True), (["report", long], False)):
        caplog.clear()
        assert main(args) == 2
        assert "File name too long" in capsys.readouterr().err
        assert any(r.exc_info and isinstance(r.exc_info[1], OSError) for r in caplog.records) == logged


def test_a_reader_that_leaves_early_ends_the_command_quietly(tmp_path: Path) -> None:
    # `optbench report | head -1`: the write to the closed pipe ended in a BrokenPipeError traceback
    write_report(make_report(), tmp_path / "results" / "run-1")
    read, write = os.pipe()
    os.close(read)  # the reader has left before the first write
    with os.fdopen(write, "wb") as closed:
        done = subprocess.run(
            [sys.executable, "-m", "optbench", "report", str(tmp_path / "results")],
            stdout=closed,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(Path(cli.__file__).parents[1])},
            check=False,
        )
    assert (done.returncode, done.stderr) == (141, "")  # 128 + SIGPIPE, as a shell reports a tool it stopped


def test_a_reader_that_leaves_before_a_short_output_is_met_at_the_command_s_end(tmp_path: Path) -> None:
    # output shorter than stdout's buffer reaches the pipe only when flushed: flushed at exit, Python said "Exception
    # ignored ... BrokenPipeError" and exited with 120. Buffered as for any user: PYTHONUNBUFFERED (set in some CI
    # and Docker images) writes each print through, and the print itself met the closed pipe
    work = (
        "import sys; from optbench.command import run_command\n"
        "sys.exit(run_command('optbench', lambda: print('one line') or 0, False))"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    read, write = os.pipe()
    os.close(read)
    with os.fdopen(write, "wb") as closed:
        done = subprocess.run(
            [sys.executable, "-c", work],
            stdout=closed,
            stderr=subprocess.PIPE,
            text=True,
            env={**env, "PYTHONPATH": str(Path(cli.__file__).parents[1])},
            check=False,
        )
    assert (done.returncode, done.stderr) == (141, "")


def test_a_reader_that_leaves_mid_write_ends_an_unbuffered_command_quietly() -> None:
    # PYTHONUNBUFFERED=1, as optbench's Docker images set it: stdout wrote straight to the pipe, and a table longer
    # than the pipe holds (64 KiB), its reader gone mid-write, was taken in part and the rest dropped without an
    # error: `optbench report results/ --format json | head -1` exited 0, not 141
    work = (
        "import sys; from optbench.command import run_command\n"
        "sys.exit(run_command('optbench', lambda: sys.stdout.write('x' * 1_000_000 + '\\n') and 0, False))"
    )
    read, write = os.pipe()
    with subprocess.Popen(
        [sys.executable, "-c", work],
        stdout=write,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(Path(cli.__file__).parents[1])},
    ) as process:
        os.close(write)
        os.read(read, 10)  # the write has begun; the pipe holds far less than it, so it cannot have ended
        os.close(read)
        stderr = process.communicate()[1]
    assert (process.returncode, stderr) == (141, "")


def test_a_path_that_is_not_utf8_is_printed_as_its_bytes(tmp_path: Path) -> None:
    """A file name that is not UTF-8 (Python holds its bytes as surrogates), printed to a strict stdout (Python's
    under a UTF-8 locale such as en_US.UTF-8), raised UnicodeEncodeError: a traceback where the gate names its budget
    file, report its page and a dry run its dataset. Printed as its bytes, as ls prints it."""
    write_report(make_report(), tmp_path / "results" / "run-1")
    budget = tmp_path / os.fsdecode(b"budgets-\xff.toml")
    budget.write_text('[[budget]]\nvariants = ["baseline"]\nmax_size = "1 GB"\n')
    done = subprocess.run(
        [sys.executable, "-m", "optbench", "gate", "--budget", str(budget), str(tmp_path / "results")],
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(Path(cli.__file__).parents[1]), "PYTHONIOENCODING": "utf-8:strict"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert b"budgets-\xff.toml" in done.stdout


def test_an_error_ends_the_command_with_its_own_exit_code_and_one_line(capsys) -> None:
    def step_failed() -> int:
        raise StepFailed("cannot build the optimum environment")

    assert run_command("optbench", step_failed, verbose=False) == 1
    assert capsys.readouterr().err == "optbench: error: cannot build the optimum environment\n"


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (  # a rename names both paths
            OSError(errno.EXDEV, os.strerror(errno.EXDEV), "/a/x", None, "/b/x"),
            f"/a/x -> /b/x: {os.strerror(errno.EXDEV)}: check the path",
        ),
        (OSError(errno.EACCES, os.strerror(errno.EACCES)), f"[Errno {errno.EACCES}] {os.strerror(errno.EACCES)}: "),
    ],
)
def test_a_system_error_names_its_paths_and_the_system_s_reason(error: OSError, line: str, capsys) -> None:
    def refused() -> int:
        raise error

    assert run_command("optbench", refused, verbose=False) == 2
    assert capsys.readouterr().err.startswith(f"optbench: error: {line}")


@pytest.mark.parametrize("verbose", [False, True])
def test_a_command_logs_optbench_s_progress_and_other_libraries_warnings(verbose: bool) -> None:
    # a fresh interpreter: pytest's own log handlers would make logging.basicConfig do nothing here
    script = (
        "import logging, sys\n"
        "from optbench.command import command_process\n"
        "with command_process(verbose=sys.argv[1] == 'True'):\n"
        "    for name in ('somelib', 'optbench.sweep'):\n"
        "        logging.getLogger(name).debug('debug')\n"
        "        logging.getLogger(name).info('info')\n"
        "        logging.getLogger(name).warning('warning')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(cli.__file__).parents[1])}
    done = subprocess.run([sys.executable, "-c", script, str(verbose)], capture_output=True, text=True, env=env)
    optbench_lines = ["DEBUG optbench.sweep: debug"] if verbose else []
    optbench_lines += ["INFO optbench.sweep: info", "WARNING optbench.sweep: warning"]
    assert done.stderr.splitlines() == ["WARNING somelib: warning", *optbench_lines]


def test_a_command_run_off_the_main_thread_leaves_sigterm_alone() -> None:
    """Only the main thread may set a signal handler: elsewhere signal.signal raises ValueError."""
    before = signal.getsignal(signal.SIGTERM)
    codes: list[int] = []
    failed: list[BaseException] = []

    def work() -> None:
        try:
            codes.append(run_command("optbench", lambda: 0, False))
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert (codes, failed) == ([0], []) and signal.getsignal(signal.SIGTERM) is before


def test_sigterm_stops_a_command_as_ctrl_c_does_and_its_handler_is_put_back(capsys) -> None:
    def handler(signum: int, frame: object) -> None:
        raise AssertionError("the handler set before the command ran while it ran")

    def terminated() -> int:
        signal.raise_signal(signal.SIGTERM)  # docker stop, a CI cancel
        return 0

    before = signal.signal(signal.SIGTERM, handler)
    try:
        assert run_command("optbench", terminated, False, after_interrupt="the same command resumes it") == 130
        assert signal.getsignal(signal.SIGTERM) is handler
    finally:
        signal.signal(signal.SIGTERM, before)
    assert capsys.readouterr().err == "optbench: interrupted; the same command resumes it\n"
