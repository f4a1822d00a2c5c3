"""The GPU check script's decisions, checked on any machine: what it probes, which runtimes it keeps, what
gpu-check.md says. Running the recipes themselves needs a GPU (scripts/gpu_check.sh on such a machine)."""

from __future__ import annotations

import os
import sys
import types
from importlib import metadata
from pathlib import Path

import pytest
import torch
from report_fixtures import make_report, with_figures

from optbench.failures import FailedJob, write_failures
from optbench.gpu_check import RECIPES, Capability, _import_probe, main, needs, plan_recipe, probe, runnable, summary
from optbench.recipe import Recipe, load_recipe
from optbench.report import write_report
from optbench.runtimes import RuntimeSpec

NAMES = {  # probe's names for its keys: what gpu-check.md shows a reader
    "cuda-gpu": "a GPU the NVIDIA driver sees",
    "torch-cuda": "PyTorch on CUDA",
    "ort-cuda": "onnxruntime CUDAExecutionProvider",
    "ort-tensorrt": "onnxruntime TensorrtExecutionProvider",
    "tensorrt": "TensorRT Python API",
    "nvml": "NVML (nvidia-ml-py)",
}


def _found(**present: bool) -> dict[str, Capability]:
    return {k: Capability(name, present.get(k.replace("-", "_"), False), f"{k} seen") for k, name in NAMES.items()}


def test_probe_names_every_capability_with_what_it_saw() -> None:
    import onnxruntime

    found = probe()
    assert set(found) == {"cuda-gpu", "torch-cuda", "ort-cuda", "ort-tensorrt", "tensorrt", "nvml"}
    assert found["torch-cuda"].present == torch.cuda.is_available()
    providers = onnxruntime.get_available_providers()
    assert found["ort-cuda"].present == ("CUDAExecutionProvider" in providers)
    assert found["ort-tensorrt"].present == ("TensorrtExecutionProvider" in providers)
    assert all(c.detail for c in found.values())
    if not found["tensorrt"].present:
        assert "import tensorrt failed" in found["tensorrt"].detail


def _fake_machine(
    monkeypatch: pytest.MonkeyPatch, gpu: str | None, providers: list[str], modules: dict[str, str | None]
) -> None:
    """A machine whose driver sees `gpu` (torch too), whose onnxruntime lists `providers`, and whose `modules`
    import at the given version (None: the import fails)."""
    import onnxruntime

    monkeypatch.setattr("optbench.gpu_check.cuda_gpu_name", lambda: gpu)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu is not None)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: gpu)
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: providers)
    for name, version in modules.items():  # None in sys.modules: its import raises ImportError
        monkeypatch.setitem(sys.modules, name, version and types.SimpleNamespace(__version__=version))


def test_a_gpu_machine_is_probed_as_having_each_thing_it_has(monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe decides which GPU paths run, and no CPU machine sees its GPU side: each capability, faked present,
    must read present (and absent where it is not), under its own key."""
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    _fake_machine(monkeypatch, "NVIDIA H200", providers, {"tensorrt": "10.9", "pynvml": None})
    found = probe()
    assert {key: c.present for key, c in found.items()} == {
        "cuda-gpu": True,
        "torch-cuda": True,
        "ort-cuda": True,
        "ort-tensorrt": False,
        "tensorrt": True,
        "nvml": False,
    }
    assert found["cuda-gpu"].detail == "NVIDIA H200" and found["torch-cuda"].detail.startswith("NVIDIA H200, torch ")
    assert found["tensorrt"].detail == "tensorrt 10.9" and "import pynvml failed" in found["nvml"].detail
    assert found["ort-tensorrt"].detail.endswith(
        "install onnxruntime-gpu (with TensorRT's libraries for the TensorRT provider)"
    )

    _fake_machine(monkeypatch, None, ["TensorrtExecutionProvider", "CPUExecutionProvider"], {"tensorrt": None})
    found = probe()
    assert [key for key, c in found.items() if c.present] == ["ort-tensorrt"]
    assert "import tensorrt failed" in found["tensorrt"].detail


def test_a_module_without_a_version_shows_its_distributions(monkeypatch: pytest.MonkeyPatch) -> None:
    """nvidia-ml-py's pynvml has no __version__: the table said "pynvml (version unknown)"."""
    monkeypatch.setitem(sys.modules, "fakenvml", types.ModuleType("fakenvml"))
    monkeypatch.setattr(metadata, "packages_distributions", lambda: {"fakenvml": ["fake-ml-py", "fake-ml-py"]})
    monkeypatch.setattr(metadata, "version", lambda name: {"fake-ml-py": "12.575.51"}[name])
    assert _import_probe("NVML", "fakenvml", "").detail == "fakenvml 12.575.51 (fake-ml-py)"
    monkeypatch.setattr(metadata, "packages_distributions", lambda: {"fakenvml": ["fake-ml-py", "fake-ml-py-cu12"]})
    monkeypatch.setattr(metadata, "version", lambda name: {"fake-ml-py": "12.575.51", "fake-ml-py-cu12": "12.4"}[name])
    assert _import_probe("NVML", "fakenvml", "").detail == "fakenvml 12.575.51 (fake-ml-py), 12.4 (fake-ml-py-cu12)"
    monkeypatch.setattr(metadata, "packages_distributions", lambda: {})
    assert _import_probe("NVML", "fakenvml", "").detail == "fakenvml (version unknown)"
    sys.modules["fakenvml"].__version__ = "1.0"  # type: ignore[attr-defined]
    assert _import_probe("NVML", "fakenvml", "").detail == "fakenvml 1.0"


def test_a_broken_install_is_an_absent_capability_that_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TensorRT's wheel imports, then fails to load its libraries: an OSError, not an ImportError. The probe never
    raises, and the table names the exception, its message and what goes without."""
    (tmp_path / "brokentrt.py").write_text('raise OSError("libnvinfer.so.10: cannot open shared object file")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    probed = _import_probe("TensorRT Python API", "brokentrt", "GPU engines need NVIDIA's TensorRT")
    assert not probed.present
    assert probed.detail == (
        "import brokentrt failed (OSError: libnvinfer.so.10: cannot open shared object file): "
        "GPU engines need NVIDIA's TensorRT"
    )


def test_torch_without_a_gpu_says_whether_it_is_a_cpu_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CPU build needs another torch; a CUDA build that sees no GPU needs a driver or a visible device."""
    _fake_machine(monkeypatch, None, ["CPUExecutionProvider"], {})
    monkeypatch.setattr(torch.version, "cuda", None)
    assert probe()["torch-cuda"].detail == f"torch {torch.__version__} is a CPU build"
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    assert probe()["torch-cuda"].detail == f"torch {torch.__version__} is CUDA 12.4, but no GPU is visible"


def test_only_the_runtimes_this_machine_has_are_kept() -> None:
    recipe = load_recipe(RECIPES / "gpu.toml")
    torch_only, missing = plan_recipe(recipe, _found(cuda_gpu=True, torch_cuda=True))
    assert [s.name for s in torch_only.bench.runtimes] == ["torch"] * 6
    assert {(s.options.get("provider"), lacks) for s, lacks in missing} == {
        ("cuda", "ort-cuda"),
        ("tensorrt", "ort-tensorrt"),
    }
    everything, missing = plan_recipe(recipe, _found(cuda_gpu=True, torch_cuda=True, ort_cuda=True, ort_tensorrt=True))
    assert everything == recipe and not missing
    assert not torch_only.chains  # nothing here runs the ONNX exports: they are not made
    onnx_only, _ = plan_recipe(recipe, _found(cuda_gpu=True, torch_cuda=True, ort_tensorrt=True))
    assert [step.label for chain in onnx_only.chains for step in chain] == [None, "onnx-unfused"]
    cpu_only, _ = plan_recipe(recipe, _found())
    assert cpu_only.bench.runtimes == (RuntimeSpec("torch"),)
    engines, _ = plan_recipe(
        load_recipe(RECIPES / "gpu-tensorrt.toml"), _found(cuda_gpu=True, torch_cuda=True, tensorrt=True)
    )
    assert len(engines.chains) == 3  # the exports feed the engines
    assert runnable(RuntimeSpec("tensorrt", "cuda"), _found(cuda_gpu=True, torch_cuda=True)) == "tensorrt"
    assert runnable(RuntimeSpec("tensorrt", "cuda"), _found(cuda_gpu=True, tensorrt=True)) == "torch-cuda"
    assert needs(RuntimeSpec("tensorrt", "cuda")) == ["torch-cuda", "tensorrt"]  # the order a job meets them
    assert runnable(RuntimeSpec("tensorrt", "cuda"), _found(cuda_gpu=True, torch_cuda=True, tensorrt=True)) is None
    # an onnxruntime job imports no torch: a CPU build of torch beside onnxruntime-gpu runs it
    assert runnable(RuntimeSpec("onnxruntime", "cuda"), _found(cuda_gpu=True, ort_cuda=True)) is None
    assert runnable(RuntimeSpec("onnxruntime", "cuda"), _found(torch_cuda=True, ort_cuda=True)) == "cuda-gpu"


def test_the_tensorrt_recipe_builds_fp16_calibrated_int8_and_qdq_int8_engines() -> None:
    recipe = load_recipe(RECIPES / "gpu-tensorrt.toml")
    last = [chain[-1].config for chain in recipe.chains]
    assert [c.precision for c in last] == ["fp16", "int8", "int8"]
    assert all(c.batch_sizes == (1, 32) and c.seq_lens == (128,) and c.max_length == 128 for c in last)
    assert recipe.chains[2][1].config.activation_symmetric


def test_summary_says_what_ran_what_was_missing_and_why() -> None:
    recipe = load_recipe(RECIPES / "gpu.toml")
    found = _found(cuda_gpu=True, torch_cuda=True)
    _, missing = plan_recipe(recipe, found)
    crash = FailedJob("baseline", "torch-cuda-bf16", "latency-2", "crashed with SIGSEGV")
    text = summary(recipe, found, missing, [crash])
    assert text.startswith("# GPU check: gpu\n")
    assert "| PyTorch on CUDA | yes | torch-cuda seen |\n" in text
    assert "| TensorRT Python API | no | tensorrt seen |\n" in text
    assert "- torch-cuda-fp16-cuda-graphs: ran\n" in text
    assert "- torch-cuda-bf16: ran, 1 job(s) failed (below)" in text
    assert "- onnxruntime-cuda-fp16-tensorrt: missing: needs onnxruntime TensorrtExecutionProvider" in text
    assert "## Failed jobs\n\n- baseline on torch-cuda-bf16, latency-2: crashed with SIGSEGV" in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU: the check would run")
def test_without_a_gpu_the_check_says_so_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--results", str(tmp_path / "results"), "--cache", str(tmp_path / "cache")]) == 2
    assert "no CUDA GPU visible to torch" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


def test_a_gpu_torch_cannot_use_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """The driver sees a GPU and onnxruntime has its CUDA provider, but torch is a CPU build: the check's reference,
    PyTorch on CUDA, cannot run, so it runs nothing (exit code 2, as its help says)."""
    monkeypatch.setattr("optbench.gpu_check.probe", lambda: _found(cuda_gpu=True, ort_cuda=True))
    monkeypatch.setattr("optbench.pipeline.run_recipe", _fake_run)
    assert main(["--results", str(tmp_path / "results"), "--cache", str(tmp_path / "cache")]) == 2
    assert "no CUDA GPU visible to torch" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


def test_help_teaches_with_examples_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    # the help gave no example and no exit code, though README says the check exits 2 without a GPU
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    examples = out.split("\nexamples:\n")[1].split("\n\n")[0].splitlines()
    assert len(examples) >= 2 and all(line.startswith("  scripts/gpu_check.sh") for line in examples)
    codes = " ".join(out.split("\nexit codes: ")[1].split())
    assert all(code in codes for code in ("0 every job", "1 a job", "2 no CUDA GPU", "130 interrupted"))


def _fake_run(recipe: Recipe, results: Path, cache: Path) -> Path:
    """A recipe run that writes made-up reports for the runtimes it was given."""
    p50 = {"cpu": 40.0, "fp32": 4.0, "fp16": 1.6, "bf16": 1.6}
    folder = results / recipe.name / "20261130T031500Z-3f9a"
    for spec in recipe.bench.runtimes:
        report = make_report(runtime=spec, recipe=recipe.name)
        figures = with_figures(
            report, p50_ms=p50["cpu" if spec.device == "cpu" else spec.precision], noise_floor_pct=3.0
        )
        write_report(figures, folder)
    return folder


def test_the_check_runs_what_the_machine_has_and_tables_it_against_torch_on_cuda(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The check's own flow, with the GPU faked: a probe that finds torch on CUDA only, and recipe runs that
    write made-up reports for the runtimes they were given."""
    monkeypatch.setattr("optbench.gpu_check.probe", lambda: _found(cuda_gpu=True, torch_cuda=True))
    monkeypatch.setattr("optbench.pipeline.run_recipe", _fake_run)
    assert main(["--results", str(tmp_path / "results"), "--cache", str(tmp_path / "cache")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("yes  a GPU the NVIDIA driver sees: cuda-gpu seen\nyes  PyTorch on CUDA: torch-cuda seen\n")
    assert "\nno   TensorRT Python API: tensorrt seen\n" in out
    assert "skipping gpu-tensorrt.toml: TensorRT is not installed" in out
    header, _, *rows = [line for line in out.splitlines() if line.startswith("| ")]
    assert header.strip("| ").split(" | ") == [  # the GPU figures: memory, load and first call beside the speedups
        "variant",
        "runtime",
        "device",
        "precision_mode",
        "batch_size",
        "p50_ms",
        "speedup_p50",
        "speedup_vs",
        "accuracy_drop",
        "gpu_peak_reserved_mb",
        "gpu_process_mb",
        "load_s",
        "first_call_s",
    ]
    speedup_vs = header.split(" | ").index("speedup_vs")
    cells = [row.split(" | ") for row in rows]  # variant, runtime, device, precision_mode, batch_size, ...
    assert not [c for c in cells if c[1].startswith("onnxruntime")]  # the paths this machine lacks were not run
    by_place = {(c[2], c[3]): c[speedup_vs] for c in cells if c[1] == "torch" and c[4] == "1"}
    assert by_place == {
        ("cpu", "fp32"): "0.10x",
        ("cuda", "fp32"): "1.00x",
        ("cuda", "fp16"): "2.50x",
        ("cuda", "bf16"): "2.50x",
    }
    assert "gpu: A/A noise floor: the reference's two p50s in this run differ by 3.0% at batch 1 x 128" in out
    written = tmp_path / "results" / "gpu" / "20261130T031500Z-3f9a" / "gpu-check.md"
    assert out.endswith(f"\nwritten: {written}\n")
    check = written.read_text()
    assert "- onnxruntime-cuda-fp32: missing: needs onnxruntime CUDAExecutionProvider" in check


def test_a_job_failed_in_the_first_recipe_fails_the_check_when_the_second_passes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exit code is the worst of the recipes', not the last one's."""

    def run(recipe: Recipe, results: Path, cache: Path) -> Path:
        folder = _fake_run(recipe, results, cache)
        if recipe.name == "gpu":
            write_failures([FailedJob("baseline", "torch-cuda-bf16", "latency-2", "crashed")], folder, folder.name)
        return folder

    monkeypatch.setattr("optbench.gpu_check.probe", lambda: _found(cuda_gpu=True, torch_cuda=True, tensorrt=True))
    monkeypatch.setattr("optbench.pipeline.run_recipe", run)
    assert main(["--results", str(tmp_path / "results"), "--cache", str(tmp_path / "cache")]) == 1
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["gpu", "gpu-tensorrt"]
    # gpu-check.md names the failed job and its reason, where the exit code 1 sends the reader
    gpu = (tmp_path / "results" / "gpu" / "20261130T031500Z-3f9a" / "gpu-check.md").read_text()
    assert "- torch-cuda-bf16: ran, 1 job(s) failed (below)\n" in gpu
    assert gpu.endswith("## Failed jobs\n\n- baseline on torch-cuda-bf16, latency-2: crashed\n")
    engines = (tmp_path / "results" / "gpu-tensorrt" / "20261130T031500Z-3f9a" / "gpu-check.md").read_text()
    assert "- tensorrt-cuda-fp32: ran\n" in engines and "Failed jobs" not in engines


def test_the_check_takes_its_recipes_from_the_folder_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mine = tmp_path / "pack" / "recipes"
    mine.mkdir(parents=True)
    (mine / "gpu.toml").write_text((RECIPES / "gpu.toml").read_text().replace('name = "gpu"', 'name = "gpu-mine"'))
    monkeypatch.setattr("optbench.gpu_check.probe", lambda: _found(cuda_gpu=True, torch_cuda=True))
    monkeypatch.setattr("optbench.pipeline.run_recipe", _fake_run)
    assert main(["--results", str(tmp_path / "results"), "--recipes", str(mine)]) == 0
    assert [p.name for p in (tmp_path / "results").iterdir()] == ["gpu-mine"]


def test_the_check_runs_its_recipes_as_optbench_run_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The runs are given --cache (their steps and jobs carry it: OPTBENCH_CACHE is the user's alone, never set for
    them), made absolute as `optbench run` makes it, and no hub is asked, as under `optbench run`; the reports go
    under results/ of the current folder unless --results names another."""
    seen: dict[str, str | None] = {}

    def run(recipe: Recipe, results: Path, cache: Path) -> Path:
        seen.update({name: os.environ.get(name) for name in ("OPTBENCH_CACHE", "HF_HUB_OFFLINE")})
        seen["cache"] = str(cache)
        return _fake_run(recipe, results, cache)

    monkeypatch.delenv("OPTBENCH_CACHE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("optbench.gpu_check.probe", lambda: _found(cuda_gpu=True, torch_cuda=True))
    monkeypatch.setattr("optbench.pipeline.run_recipe", run)
    monkeypatch.chdir(tmp_path)
    assert main(["--cache", "cache"]) == 0
    assert seen == {"OPTBENCH_CACHE": None, "HF_HUB_OFFLINE": "1", "cache": str(tmp_path.resolve() / "cache")}
    assert [p.name for p in (tmp_path / "results").iterdir()] == ["gpu"]


def test_an_interrupted_check_says_it_resumes_and_leaves_the_environment_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    def interrupted(recipe: Recipe, results: Path, cache: Path) -> Path:
        raise KeyboardInterrupt  # Ctrl-C, or SIGTERM, which optbench's command setup turns into it

    monkeypatch.delenv("OPTBENCH_CACHE", raising=False)
    monkeypatch.setattr("optbench.gpu_check.probe", lambda: _found(cuda_gpu=True, torch_cuda=True))
    monkeypatch.setattr("optbench.pipeline.run_recipe", interrupted)
    assert main(["--results", str(tmp_path / "results"), "--cache", str(tmp_path / "cache")]) == 130
    assert "gpu check: interrupted; the same command resumes it" in capsys.readouterr().err
    assert "OPTBENCH_CACHE" not in os.environ
