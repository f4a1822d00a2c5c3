"""`optbench run --dry-run`: what it says the run would do, checked against what the run then does."""

from __future__ import annotations

import json
import logging
import shutil
from collections import defaultdict
from pathlib import Path

import pytest
import tqdm.auto
from test_cli import BENCH, ONNX_BENCH, ONNX_STEP, _fails, _never_starts, write_recipe

from optbench import job as job_module
from optbench.artifact import QUANTIZATION_FILE, content_hash
from optbench.cli import main
from optbench.data import align_labels, load_dataset
from optbench.errors import OptbenchError
from optbench.gpu_check import Capability
from optbench.job import JobFailed
from optbench.pipeline import make_baseline, sweep_identity
from optbench.recipe import Recipe, load_recipe
from optbench.steps.cache import run_step
from optbench.sweep import SweepStore


def _dry_run(args: list[str], monkeypatch: pytest.MonkeyPatch, capsys) -> str:
    """The dry run's output; it starts neither the run nor an executor."""
    capsys.readouterr()
    with monkeypatch.context() as patched:
        _never_starts(patched)
        assert main([*args, "--dry-run"]) == 0
    return capsys.readouterr().out


def test_the_dry_run_names_the_unfinished_sweep_the_run_resumes(
    onnx_run: Path, tmp_path: Path, jobs_in_process, monkeypatch: pytest.MonkeyPatch, capsys, caplog
) -> None:
    """Every model cached (onnx_run's): the sweep's identity is known, so the dry run says whether the run starts a
    new run or resumes one, which, and how many jobs it keeps (a failed one is tried again); the job count is exact.
    The run that follows resumes that run id with that count."""
    results = tmp_path / "results"
    args = ["run", str(onnx_run / "recipe.toml"), "--results", str(results), "--cache", str(onnx_run / "cache")]
    out = _dry_run(args, monkeypatch, capsys)
    assert "benchmark jobs: 4 (2 accuracy, 2 latency, 0 A/A repeats; 1 round)" in out  # exact: every model exists
    assert out.rstrip("\n").endswith(f"reports: {results}/tiny/<run id>/ (starts a new run)")

    _crash_then_interrupt(args, monkeypatch)
    (sweep,) = (results / "tiny").glob(".sweep-*")
    run_id = json.loads((sweep / "sweep.json").read_text())["run_id"]
    out = _dry_run(args, monkeypatch, capsys)
    # the failed accuracy job runs again: only the reference's is kept
    assert out.rstrip("\n").endswith(f"reports: {results}/tiny/{run_id}/ (resumes run {run_id}: 1 of 4 jobs done)")

    class Bar(tqdm.auto.tqdm):  # the progress bar, its first frame drawn as it is made
        def __init__(self, *args, **kwargs) -> None:
            logging.getLogger("optbench.bench").info("the progress bar")
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    with caplog.at_level("INFO", logger="optbench"):
        assert main(args) == 0
    # the dry run's words, before the bar (written after it, the line was glued onto its first frame)
    assert caplog.messages.index(f"resuming run {run_id}: 1 of 4 jobs done") < caplog.messages.index("the progress bar")
    assert [p.name for p in (results / "tiny").iterdir()] == [run_id]
    out = _dry_run(args, monkeypatch, capsys)
    assert out.rstrip("\n").endswith(f"reports: {results}/tiny/<run id>/ (starts a new run)")  # that one is published


def _crash_then_interrupt(args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Run onnx_run's recipe: its reference's accuracy job ends, the ONNX model's crashes, and Ctrl-C stops the run in
    the third job (the reference's latency)."""
    execute = job_module.execute

    def crashes_then_interrupted(job: job_module.Job) -> dict:
        if job.kind == "latency":
            raise KeyboardInterrupt
        if job.runtime["name"] == "onnxruntime":
            raise JobFailed("accuracy job failed: crashed with SIGSEGV")
        return execute(job)

    with monkeypatch.context() as patched:
        patched.setattr(job_module, "execute", crashes_then_interrupted)
        assert main(args) == 130


def test_a_sweep_whose_sweep_json_was_deleted_is_resumed_under_a_new_run_id(
    onnx_run: Path, tmp_path: Path, jobs_in_process, monkeypatch: pytest.MonkeyPatch, capsys, caplog
) -> None:
    """The run makes a new sweep.json, with a new run id, in the sweep's folder and keeps its finished jobs (the
    failed one runs again): the dry run said it starts a new run."""
    results = tmp_path / "results"
    args = ["run", str(onnx_run / "recipe.toml"), "--results", str(results), "--cache", str(onnx_run / "cache")]
    _crash_then_interrupt(args, monkeypatch)
    (sweep,) = (results / "tiny").glob(".sweep-*")
    old = json.loads((sweep / "sweep.json").read_text())["run_id"]
    (sweep / "sweep.json").unlink()
    out = _dry_run(args, monkeypatch, capsys)
    assert out.rstrip("\n").endswith(
        f"reports: {results}/tiny/<run id>/ (resumes an unfinished sweep whose sweep.json is gone, under a new run "
        "id: 1 of 4 jobs done)"
    )
    with caplog.at_level("INFO", logger="optbench"):
        assert main(args) == 0
    (run_id,) = [p.name for p in (results / "tiny").iterdir()]
    assert run_id != old and f"resuming run {run_id}: 1 of 4 jobs done" in caplog.messages


def test_while_a_model_is_not_made_whether_the_run_resumes_is_not_known(
    tmp_path: Path, tiny_classifier: Path, reviews_csv: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """The sweep's identity holds every model's content hash: an export not made yet leaves it open."""
    steps = '[[steps]]\nname = "onnx"\n'
    bench = BENCH.replace("[bench]", '[bench]\nruntimes = ["torch", "onnxruntime"]')
    recipe = write_recipe(tmp_path, tiny_classifier, reviews_csv, extra=steps, bench=bench)
    args = ["run", str(recipe), "--results", str(tmp_path / "results"), "--cache", str(tmp_path / "cache")]
    out = _dry_run(args, monkeypatch, capsys)
    assert (
        f"reports: {tmp_path}/results/tiny/<run id>/ (a new run, or the unfinished sweep of the same models that it "
        "resumes: known once the steps that are not cached have run)" in out
    )


def test_a_pair_the_precision_of_an_export_not_made_yet_decides_is_left_out(
    tmp_path: Path, tiny_classifier: Path, reviews_csv: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """The onnx step's precision says which onnxruntime runs its model: an FP32 and an FP16 export, not made yet, each
    on the runtime of its precision, and left out on the other's, as the run leaves them out. They were pairs the run
    might measure ("decided once it exists"), counted in the jobs. A quantized model runs at fp32, as the FP32
    export."""
    fp16 = (
        '[[chains]]\n[[chains.steps]]\nname = "onnx"\n[[chains]]\n[[chains.steps]]\nname = "onnx"\nprecision = "fp16"\n'
        '[[chains]]\n[[chains.steps]]\nname = "onnx"\n[[chains.steps]]\nname = "quantize-dynamic"\n'
    )
    runtimes = '"torch", "onnxruntime", {name = "onnxruntime", precision = "fp16"}'
    bench = BENCH.replace("[bench]", f"[bench]\nruntimes = [{runtimes}]\naa_check = false")
    recipe = write_recipe(tmp_path, tiny_classifier, reviews_csv, extra=fp16, bench=bench)
    args = ["run", str(recipe), "--results", str(tmp_path / "results"), "--cache", str(tmp_path / "cache")]
    lines = _dry_run(args, monkeypatch, capsys).splitlines()
    assert "runtimes (3): torch-cpu-fp32, onnxruntime-cpu-fp32, onnxruntime-cpu-fp16" in lines
    start = lines.index("benchmark pairs (4):")
    assert lines[start + 1 : start + 9] == [
        "  baseline on torch-cpu-fp32 (the reference)",
        "  baseline+onnx on onnxruntime-cpu-fp32 (if onnxruntime takes the model: decided once it exists)",
        "  baseline+onnx-fp16 on onnxruntime-cpu-fp16 (if onnxruntime takes the model: decided once it exists)",
        "  baseline+onnx+quantize-dynamic on onnxruntime-cpu-fp32 (if onnxruntime takes the model: decided once it "
        "exists)",
        "  left out: baseline+onnx on onnxruntime-cpu-fp16: runtime onnxruntime at fp16 cannot run this fp32 ONNX "
        'model: set precision = "fp32", or export with the onnx step\'s precision = "fp16"',
        "  left out: baseline+onnx-fp16 on onnxruntime-cpu-fp32: runtime onnxruntime at fp32 cannot run this fp16 ONNX "
        'model: set precision = "fp16", or export with the onnx step\'s precision = "fp32"',
        "  left out: baseline+onnx+quantize-dynamic on onnxruntime-cpu-fp16: runtime onnxruntime at fp16 cannot run "
        'this fp32 ONNX model: set precision = "fp32"',
        "benchmark jobs: at most 12 (4 accuracy, 8 latency, 0 A/A repeats; 1 round), run by the local executor (this "
        "machine, one job at a time)",
    ]


def test_the_dry_run_warns_of_more_threads_than_cores_as_the_run_does(
    tmp_path: Path, tiny_classifier: Path, reviews_csv: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """The benchmark's own warning, for jobs run on this machine; a Ray run's nodes have their own cores."""
    monkeypatch.setattr("optbench.bench.usable_cores", lambda: 1)
    monkeypatch.setattr("optbench.executors.ray.require_package", lambda *args, **kwargs: None)  # ray: a test extra
    recipe = write_recipe(tmp_path, tiny_classifier, reviews_csv, bench=BENCH.replace("threads = 1", "threads = 2"))
    args = ["run", str(recipe), "--results", str(tmp_path / "results")]
    warning = (
        "warning: [bench] threads = 2 is more than the 1 cores this process may use: the threads will share cores "
        "and distort every latency; set threads = 1 or fewer, or run where more cores are free"
    )
    assert warning in _dry_run(args, monkeypatch, capsys)
    assert "warning" not in _dry_run([*args, "--executor", "ray"], monkeypatch, capsys)
    monkeypatch.setattr("optbench.bench.usable_cores", lambda: 2)
    assert "warning" not in _dry_run(args, monkeypatch, capsys)


def test_the_dry_run_refuses_a_checkpoint_its_first_step_would_refuse(
    tmp_path: Path, tiny_classifier: Path, reviews_csv: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """A checkpoint whose INT8 scheme the torch runtime applies as it loads it (a torch quantize-dynamic output,
    given as --model): the run refuses it at its first step, so the dry run does, with the same line."""
    model = tmp_path / "int8-model"
    shutil.copytree(tiny_classifier, model)
    (model / QUANTIZATION_FILE).write_text(json.dumps({"library": "torchao", "scheme": "int8-dynamic"}))
    bench = BENCH.replace("[bench]", '[bench]\nruntimes = ["torch", "onnxruntime"]')
    recipe = write_recipe(tmp_path, model, reviews_csv, extra='[[steps]]\nname = "onnx"\n', bench=bench)
    args = ["run", str(recipe), "--results", str(tmp_path / "results"), "--cache", str(tmp_path / "cache")]
    message = "onnx cannot take baseline: torchao's INT8 scheme is applied only when the torch runtime loads it"
    _fails(args, capsys, message)
    _never_starts(monkeypatch)
    _fails([*args, "--dry-run"], capsys, message)


def test_the_dry_run_warns_of_each_runtime_this_machine_cannot_run(
    tmp_path: Path, tiny_classifier: Path, reviews_csv: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """A GPU recipe checked on a machine without CUDA is valid (exit 0), but its CUDA pairs would fail as jobs: a
    warning per runtime names what this machine lacks (the GPU check's probe, faked here) and how many pairs fail,
    then the total. The ONNX export is not made yet, so the onnxruntime pair is an upper bound. With the ray
    executor the jobs run on its nodes: one note instead."""
    found = {
        "cuda-gpu": Capability("a GPU the NVIDIA driver sees", False, "no NVIDIA driver, or no GPU visible to it"),
        "torch-cuda": Capability("PyTorch on CUDA", False, "torch 2.0+cpu is a CPU build"),
        "ort-cuda": Capability("onnxruntime CUDAExecutionProvider", False, "install onnxruntime-gpu"),
        "ort-tensorrt": Capability("onnxruntime TensorrtExecutionProvider", False, "install onnxruntime-gpu"),
        "tensorrt": Capability("TensorRT Python API", False, "import tensorrt failed"),
        "nvml": Capability("NVML (nvidia-ml-py)", False, "import pynvml failed"),
    }
    monkeypatch.setattr("optbench.dry_run.probe", lambda: found)
    monkeypatch.setattr("optbench.executors.ray.require_package", lambda *args, **kwargs: None)  # ray: a test extra
    runtimes = '"torch", {name = "torch", device = "cuda"}, {name = "onnxruntime", device = "cuda"}'
    bench = BENCH.replace("[bench]", f"[bench]\nruntimes = [{runtimes}]")
    recipe = write_recipe(tmp_path, tiny_classifier, reviews_csv, extra='[[steps]]\nname = "onnx"\n', bench=bench)
    args = ["run", str(recipe), "--results", str(tmp_path / "results"), "--cache", str(tmp_path / "cache")]
    lines = _dry_run(args, monkeypatch, capsys).splitlines()
    assert [line for line in lines if line.startswith("warning:")] == [
        "warning: torch-cuda-fp32 cannot run on this machine, which lacks PyTorch on CUDA (torch 2.0+cpu is a CPU "
        "build): 1 benchmark pair on it will fail here",
        "warning: onnxruntime-cuda-fp32 cannot run on this machine, which lacks a GPU the NVIDIA driver sees (no "
        "NVIDIA driver, or no GPU visible to it) and onnxruntime CUDAExecutionProvider (install onnxruntime-gpu): at "
        "most 1 benchmark pair on it will fail here",
        "warning: at most 2 of the 3 benchmark pairs will fail on this machine: a run records their jobs as failed "
        "(why, in failures.json), measures the other pairs and exits 1. The recipe is valid: run it on a machine "
        "that has what they need",
    ]
    lines = _dry_run([*args, "--executor", "ray"], monkeypatch, capsys).splitlines()
    assert not [line for line in lines if line.startswith("warning:")]
    assert lines[-1] == (
        "note: this machine cannot run torch-cuda-fp32, onnxruntime-cuda-fp32 (at most 2 benchmark pairs): the ray "
        "executor runs their jobs on its nodes, which need PyTorch on CUDA, a GPU the NVIDIA driver sees, "
        "onnxruntime CUDAExecutionProvider (a run checks only that a node has a GPU, as it starts)"
    )
    found["cuda-gpu"] = found["torch-cuda"] = found["ort-cuda"] = Capability("present", True, "here")
    assert "warning" not in _dry_run(args, monkeypatch, capsys)


def test_a_step_this_machine_cannot_run_is_a_warning_whether_its_input_is_cached_or_not(
    onnx_run: Path,
    tiny_classifier: Path,
    reviews_csv: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys,
) -> None:
    """A tensorrt step checked on a machine without TensorRT (a GPU recipe on a laptop): the recipe is valid (exit
    0) and the step says it cannot run here, why, and that a run here refuses the recipe up front, as the run then
    does (exit 2, nothing written). Its cache key holds the TensorRT version and GPU, which this machine cannot name:
    once its input was cached (onnx_run's export), the dry run looked that key up and failed with the run's error."""
    lacking = "the tensorrt step and runtime need TensorRT (import tensorrt failed: No module named 'tensorrt')"

    def no_tensorrt() -> None:
        raise OptbenchError(lacking)

    monkeypatch.setattr("optbench.tensorrt_engine.import_tensorrt", no_tensorrt)
    bench = ONNX_BENCH.replace('"onnxruntime"', '{name = "tensorrt", device = "cuda"}')
    steps = ONNX_STEP + 'fuse = false\n[[steps]]\nname = "tensorrt"\n'  # an unfused export, then an engine of it
    recipe = write_recipe(tmp_path, tiny_classifier, reviews_csv, extra=steps, bench=bench)
    cached = tmp_path / "cache"
    shutil.copytree(onnx_run / "cache", cached)  # its baseline
    _export_cached(load_recipe(recipe), cached)
    step = "  2. tensorrt: takes baseline+onnx, makes baseline+onnx+tensorrt-fp16: cannot run on this machine"
    warnings = [
        f"warning: step 2 (tensorrt) cannot run on this machine: {lacking}",
        "warning: a run here refuses the recipe before its first step (exit 2, nothing trained or written). The "
        "recipe is valid: run it on a machine that has what it needs, or leave those steps' chains out",
    ]

    def args(cache: Path) -> list[str]:
        return ["run", str(recipe), "--results", str(tmp_path / "results"), "--cache", str(cache)]

    for cache in (cached, tmp_path / "empty-cache"):  # the export cached, then not
        lines = _dry_run(args(cache), monkeypatch, capsys).splitlines()
        assert step in lines
        export = next(line for line in lines if line.startswith("  1. onnx: "))
        assert ": cached (" in export if cache == cached else ": not cached, runs (" in export
        assert [line for line in lines if line.startswith("warning: ") and "step" in line] == warnings  # not runtimes'
    _fails(args(cached), capsys, lacking)  # the run: this error, before any step
    assert not (tmp_path / "results").exists()


def _export_cached(recipe: Recipe, cache: Path) -> None:
    """Run `recipe`'s first step (its onnx export) into `cache`, as a run would before its next step."""
    data = load_dataset(recipe.dataset)
    baseline = make_baseline(recipe, data, cache)
    run_step(recipe.steps()[0].config, baseline, align_labels(data, list(baseline.label_names)), cache)


def test_chains_that_share_their_first_step_plan_it_once(
    tmp_path: Path, tiny_classifier: Path, reviews_csv: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """As the run makes it once: the export two chains share is one step and one variant, and the quantize step
    after it waits for that step (1, the export), not for the step planned just before it (2, the distill of another
    chain). Every round's latency jobs are counted: 4 pairs x 2 shapes x 2 rounds, and the reference's A/A repeat."""
    chains = (
        '[[chains]]\n[[chains.steps]]\nname = "onnx"\n'
        '[[chains]]\n[[chains.steps]]\nname = "distill"\n'
        '[[chains]]\n[[chains.steps]]\nname = "onnx"\n[[chains.steps]]\nname = "quantize-dynamic"\n'
    )
    bench = BENCH.replace("[bench]", '[bench]\nruntimes = ["torch", "onnxruntime"]\nrounds = 2')
    recipe = write_recipe(tmp_path, tiny_classifier, reviews_csv, extra=chains, bench=bench)
    args = ["run", str(recipe), "--results", str(tmp_path / "results"), "--cache", str(tmp_path / "cache")]
    lines = _dry_run(args, monkeypatch, capsys).splitlines()
    start = lines.index("steps, in order (3):")
    assert [line.split(": ")[0] for line in lines[start + 1 : start + 4]] == [
        "  1. onnx",
        "  2. distill",
        "  3. quantize-dynamic",
    ]
    assert lines[start + 3].endswith(": cached or not: known after step 1 (onnx) runs")
    assert lines[start + 4] == "variants (4): baseline, baseline+onnx, baseline+distill, baseline+onnx+quantize-dynamic"
    (jobs,) = [line for line in lines if line.startswith("benchmark jobs: ")]
    assert jobs.startswith("benchmark jobs: at most 24 (4 accuracy, 16 latency, 4 A/A repeats; 2 rounds)")


def test_the_reference_a_recipe_does_not_list_is_measured_all_the_same(
    tmp_path: Path, tiny_classifier: Path, reviews_csv: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """A recipe of onnxruntime alone: the baseline on PyTorch eager is measured anyway, as every speedup's base, and
    the dry run says so."""
    bench = BENCH.replace("[bench]", '[bench]\nruntimes = ["onnxruntime"]')
    recipe = write_recipe(tmp_path, tiny_classifier, reviews_csv, extra='[[steps]]\nname = "onnx"\n', bench=bench)
    args = ["run", str(recipe), "--results", str(tmp_path / "results"), "--cache", str(tmp_path / "cache")]
    lines = _dry_run(args, monkeypatch, capsys).splitlines()
    start = lines.index("benchmark pairs (2):")
    assert lines[start + 1 : start + 3] == [
        "  baseline on torch-cpu-fp32 (the reference: measured always)",
        "  baseline+onnx on onnxruntime-cpu-fp32 (if onnxruntime takes the model: decided once it exists)",
    ]


def test_a_cached_model_a_runtime_leaves_out_is_left_out_as_the_run_leaves_it_out(
    onnx_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """The model exists (onnx_run's export, an FP32 model as its step names): whether onnxruntime's TensorRT provider
    takes it is decided from the model itself (its fused operators), as the run decides it, not from the precision
    its step names alone, which let the pair through and counted its jobs in an exact total."""
    gpu_machine = defaultdict(lambda: Capability("present", True, "here"))  # the pair is left out for the model
    monkeypatch.setattr("optbench.dry_run.probe", lambda: gpu_machine)
    runtime = '{name = "onnxruntime", device = "cuda", options = {provider = "tensorrt"}}'
    recipe = tmp_path / "recipe.toml"
    recipe.write_text((onnx_run / "recipe.toml").read_text().replace('"onnxruntime"]', f"{runtime}]"))
    args = ["run", str(recipe), "--results", str(tmp_path / "results"), "--cache", str(onnx_run / "cache")]
    lines = _dry_run(args, monkeypatch, capsys).splitlines()
    start = lines.index("benchmark pairs (1):")
    assert lines[start + 1] == "  baseline on torch-cpu-fp32 (the reference)"
    assert lines[start + 2].startswith("  left out: baseline+onnx on onnxruntime-cuda-fp32-tensorrt: the TensorRT ")
    assert "this one holds onnxruntime's own operators" in lines[start + 2]
    assert lines[start + 3].startswith("benchmark jobs: 2 (1 accuracy, 1 latency, 0 A/A repeats; 1 round)")


def test_the_dry_run_of_a_ray_run_finds_the_sweep_a_ray_run_left(
    tmp_path: Path, tiny_classifier: Path, reviews_csv: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """A sweep whose jobs ran on Ray nodes names no machine (a local one names this one): the dry run with
    --executor ray says the run resumes it, and the local one, which would not, that it starts a new run."""
    monkeypatch.setattr("optbench.executors.ray.require_package", lambda *args, **kwargs: None)  # ray: a test extra
    path = write_recipe(tmp_path, tiny_classifier, reviews_csv)
    recipe = load_recipe(path)
    data = align_labels(load_dataset(recipe.dataset), ("fresh", "rotten"))
    models = [("baseline", content_hash(tiny_classifier))]
    results = tmp_path / "results"
    SweepStore.open(results / "tiny", sweep_identity(recipe, models, data, here=False), lambda: "ray-run", 60.0)
    args = ["run", str(path), "--results", str(results)]
    assert "(resumes run ray-run: 0 of " in _dry_run([*args, "--executor", "ray"], monkeypatch, capsys)
    assert "(starts a new run)" in _dry_run(args, monkeypatch, capsys)


def test_the_dry_run_counts_the_rows_of_each_split_the_run_reads(
    tmp_path: Path, tiny_classifier: Path, reviews_csv: Path, reviews, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """The data line gives each split's own row count (the run's split by movie), the labels in the model's order
    and the recipe's max_length."""
    assert len({len(reviews.train), len(reviews.validation), len(reviews.test)}) == 3  # a swap would show
    recipe = write_recipe(tmp_path, tiny_classifier, reviews_csv)
    out = _dry_run(["run", str(recipe), "--results", str(tmp_path / "results")], monkeypatch, capsys)
    counts = f"{len(reviews.train)} train, {len(reviews.validation)} validation, {len(reviews.test)} test rows"
    assert f"\ndata: {reviews_csv}: {counts}; labels fresh, rotten; max_length 32\n" in out


def test_a_runtime_this_machine_lacks_counts_every_pair_on_it_decided_or_not(
    onnx_run: Path, tiny_classifier: Path, reviews_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """Two pairs on onnxruntime's CUDA provider, on a machine without a GPU: onnx_run's export, cached (decided: its
    model exists), and its quantized model, not made yet (undecided). Both count in the runtime's warning and in the
    total, and one undecided pair makes each an upper bound."""
    gpu_less = defaultdict(lambda: Capability("present", True, "here"))
    gpu_less["cuda-gpu"] = Capability("a GPU the NVIDIA driver sees", False, "no GPU visible")
    monkeypatch.setattr("optbench.dry_run.probe", lambda: gpu_less)
    bench = ONNX_BENCH.replace('"onnxruntime"]', '{name = "onnxruntime", device = "cuda"}]')
    steps = ONNX_STEP + '[[steps]]\nname = "quantize-dynamic"\n'
    recipe = write_recipe(tmp_path, tiny_classifier, reviews_csv, extra=steps, bench=bench)
    args = ["run", str(recipe), "--results", str(tmp_path / "results"), "--cache", str(onnx_run / "cache")]
    lines = _dry_run(args, monkeypatch, capsys).splitlines()
    start = lines.index("benchmark pairs (3):")
    assert lines[start + 1 : start + 4] == [
        "  baseline on torch-cpu-fp32 (the reference)",
        "  baseline+onnx on onnxruntime-cuda-fp32",
        "  baseline+onnx+quantize-dynamic on onnxruntime-cuda-fp32 (if onnxruntime takes the model: decided once it "
        "exists)",
    ]
    assert [line for line in lines if line.startswith("warning:")] == [
        "warning: onnxruntime-cuda-fp32 cannot run on this machine, which lacks a GPU the NVIDIA driver sees (no GPU "
        "visible): at most 2 benchmark pairs on it will fail here",
        "warning: at most 2 of the 3 benchmark pairs will fail on this machine: a run records their jobs as failed "
        "(why, in failures.json), measures the other pairs and exits 1. The recipe is valid: run it on a machine "
        "that has what they need",
    ]


def test_steps_that_cannot_run_for_the_same_reason_share_one_warning(
    tiny_classifier: Path, reviews_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """Two tensorrt steps (an FP16 and an FP32 engine of one export) on a machine without TensorRT: one warning
    names both, by number and name, then the refusal."""
    lacking = "the tensorrt step and runtime need TensorRT (import tensorrt failed: No module named 'tensorrt')"

    def no_tensorrt() -> None:
        raise OptbenchError(lacking)

    monkeypatch.setattr("optbench.tensorrt_engine.import_tensorrt", no_tensorrt)
    bench = ONNX_BENCH.replace('"onnxruntime"', '{name = "tensorrt", device = "cuda"}')
    export = '[[chains.steps]]\nname = "onnx"\nexporter = "torchscript"\nfuse = false\n'
    chains = (
        f'[[chains]]\n{export}[[chains.steps]]\nname = "tensorrt"\n'
        f'[[chains]]\n{export}[[chains.steps]]\nname = "tensorrt"\nprecision = "fp32"\n'
    )
    recipe = write_recipe(tmp_path, tiny_classifier, reviews_csv, extra=chains, bench=bench)
    args = ["run", str(recipe), "--results", str(tmp_path / "results"), "--cache", str(tmp_path / "cache")]
    lines = _dry_run(args, monkeypatch, capsys).splitlines()
    assert "steps, in order (3):" in lines
    assert [line for line in lines if line.startswith("warning: ") and "step" in line] == [
        f"warning: steps 2 (tensorrt), 3 (tensorrt) cannot run on this machine: {lacking}",
        "warning: a run here refuses the recipe before its first step (exit 2, nothing trained or written). The "
        "recipe is valid: run it on a machine that has what it needs, or leave those steps' chains out",
    ]
