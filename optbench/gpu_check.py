"""The GPU check: run the GPU recipes end to end on this machine and say plainly which paths ran.

`scripts/gpu_check.sh` runs it. It looks at what the machine has (a CUDA GPU for torch, onnxruntime's
CUDA and TensorRT providers, TensorRT's Python API, NVML), runs `recipes/gpu.toml` with the runtimes
the machine can run and, where TensorRT imports, `recipes/gpu-tensorrt.toml`; then it writes
`gpu-check.md` (what ran, what was missing and why) into each run folder and prints a short table.
Sized for under 8 minutes on one GPU: about 7.5 on an H200 without onnxruntime-gpu or TensorRT (results/gpu). The
baseline's fine-tune comes on top where the cache lacks it, and it runs on the CPU (about 5-8 minutes on 2 cores);
a pack made by python -m optbench.gpu_pack holds the fine-tuned baseline and skips it.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from types import ModuleType

from optbench.atomic import write_text_atomic
from optbench.cli import help_text, path_argument
from optbench.command import run_command
from optbench.environment import cuda_gpu_name
from optbench.failures import FailedJob
from optbench.recipe import Recipe, load_recipe
from optbench.relative_speedup import RowChoice, add_speedup_vs
from optbench.runtimes import ENGINES, RuntimeSpec

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
GPU_REFERENCE = RowChoice.parse("baseline/torch/cuda/fp32")  # speedup_vs: the GPU paths against PyTorch on CUDA
CHECK_FILE = "gpu-check.md"
EPILOG = """examples:
  scripts/gpu_check.sh                              the GPU recipes, reports under results/
  scripts/gpu_check.sh --recipes .gpupack/recipes   from a pack made by python -m optbench.gpu_pack
  scripts/gpu_check.sh --results /results           as docker/gpu.Dockerfile runs it

exit codes: 0 every job that ran passed, 1 a job failed (its reason in gpu-check.md), 2 no CUDA GPU
            visible to torch, or bad input (the message names the fix), 130 interrupted (run it again
            to resume)"""
TABLE_COLUMNS = [
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


@dataclass(frozen=True)
class Capability:
    """One thing a GPU path needs, whether this machine has it, and what was seen (a version, or why not)."""

    name: str
    present: bool
    detail: str


def probe() -> dict[str, Capability]:
    """What this machine offers the GPU paths; never raises (a probe that fails is an absent capability)."""
    import onnxruntime
    import torch

    found: dict[str, Capability] = {}
    gpu = cuda_gpu_name()  # the driver's: what an onnxruntime job, which imports no torch, sees
    seen = gpu or "no NVIDIA driver, or no GPU visible to it"
    found["cuda-gpu"] = Capability("a GPU the NVIDIA driver sees", gpu is not None, seen)
    if torch.cuda.is_available():
        seen = f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}"
        found["torch-cuda"] = Capability("PyTorch on CUDA", True, seen)
    else:
        build = "a CPU build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}, but no GPU is visible"
        found["torch-cuda"] = Capability("PyTorch on CUDA", False, f"torch {torch.__version__} is {build}")
    providers = onnxruntime.get_available_providers()
    for key, provider in (("ort-cuda", "CUDAExecutionProvider"), ("ort-tensorrt", "TensorrtExecutionProvider")):
        detail = f"onnxruntime {onnxruntime.__version__} has {providers}"
        if provider not in providers:
            detail += ": install onnxruntime-gpu (with TensorRT's libraries for the TensorRT provider)"
        found[key] = Capability(f"onnxruntime {provider}", provider in providers, detail)
    found["tensorrt"] = _import_probe("TensorRT Python API", "tensorrt", "GPU engines need NVIDIA's TensorRT")
    found["nvml"] = _import_probe("NVML (nvidia-ml-py)", "pynvml", "GPU memory comes from torch alone")
    return found


def _import_probe(name: str, module: str, without: str) -> Capability:
    try:
        imported = __import__(module)
    except Exception as exc:  # a broken install raises more than ImportError; it is an absent capability either way
        return Capability(name, False, f"import {module} failed ({type(exc).__name__}: {exc}): {without}")
    return Capability(name, True, f"{module} {_version(imported)}")


def _version(module: ModuleType) -> str:
    """The top-level module's __version__ (`__import__` gives the top-level one), else the version of the
    distribution that installed it (nvidia-ml-py's pynvml has no __version__): "12.575.51 (nvidia-ml-py)"."""
    version = getattr(module, "__version__", None)
    if version is not None:
        return str(version)
    installers = dict.fromkeys(metadata.packages_distributions().get(module.__name__, []))  # a name may repeat
    return ", ".join(f"{metadata.version(d)} ({d})" for d in installers) or "(version unknown)"


def needs(spec: RuntimeSpec) -> list[str]:
    """The capabilities (`probe`'s keys) a job of `spec` needs, in the order it meets them: none on the CPU; for an
    onnxruntime runtime on CUDA a GPU the driver sees (its jobs import no torch) and the provider it names; PyTorch
    on CUDA for the torch and tensorrt runtimes, and TensorRT for the latter."""
    if spec.device == "cpu":
        return []
    if spec.name == "onnxruntime":
        return ["cuda-gpu", "ort-tensorrt" if spec.options.get("provider") == "tensorrt" else "ort-cuda"]
    if spec.name == "tensorrt":
        return ["torch-cuda", "tensorrt"]
    return ["torch-cuda"]


def runnable(spec: RuntimeSpec, found: dict[str, Capability]) -> str | None:
    """None when this machine can run `spec`; otherwise the first capability it lacks."""
    return next((key for key in needs(spec) if not found[key].present), None)


def plan_recipe(recipe: Recipe, found: dict[str, Capability]) -> tuple[Recipe, list[tuple[RuntimeSpec, str]]]:
    """The recipe with only the runtimes this machine can run, and the chains whose models one of them runs
    (no ONNX export where no onnxruntime provider is kept); and the runtimes left out with what they lack."""
    kept = [spec for spec in recipe.bench.runtimes if runnable(spec, found) is None]
    missing = [(spec, lacks) for spec in recipe.bench.runtimes if (lacks := runnable(spec, found)) is not None]
    formats = {fmt for spec in kept for fmt in ENGINES[spec.name].formats}
    chains = tuple(chain for chain in recipe.chains if any(s.config.output_format in formats for s in chain))
    return replace(recipe, chains=chains, bench=replace(recipe.bench, runtimes=tuple(kept))), missing


def summary(
    recipe: Recipe, found: dict[str, Capability], missing: list[tuple[RuntimeSpec, str]], failed: list[FailedJob]
) -> str:
    """gpu-check.md: what the machine had, which runtimes of the recipe ran (and whether all their jobs
    passed), which were missing and why."""
    lines = [f"# GPU check: {recipe.name}", "", "| capability | here | seen |", "| --- | --- | --- |"]
    lines += [f"| {c.name} | {'yes' if c.present else 'no'} | {c.detail} |" for c in found.values()]
    lines += ["", "## Runtimes", ""]
    lacking = {spec.label: lacks for spec, lacks in missing}  # specs hold a dict: not hashable; labels are unique
    for spec in recipe.bench.runtimes:
        lacks = lacking.get(spec.label)
        failures = sum(f.runtime == spec.label for f in failed)
        if lacks is not None:
            state = f"missing: needs {found[lacks].name}"
        else:
            state = f"ran, {failures} job(s) failed (below)" if failures else "ran"
        lines.append(f"- {spec.label}: {state}")
    if failed:
        lines += ["", "## Failed jobs", "", *[f"- {f.describe()}" for f in failed]]
    return "\n".join(lines) + "\n"


def run_check(results: Path, cache: Path, recipes: Path = RECIPES) -> int:
    """Run the GPU recipes this machine can run; 0 when every job that ran passed, 1 when one failed,
    2 when there is no CUDA GPU to check."""
    from optbench.failures import load_failures
    from optbench.pipeline import run_recipe
    from optbench.report import load_reports
    from optbench.table import markdown_table, noise_floor_note, to_frame

    found = probe()
    for capability in found.values():
        print(f"{'yes' if capability.present else 'no ':3}  {capability.name}: {capability.detail}")
    if not found["torch-cuda"].present:
        print("no CUDA GPU visible to torch: the GPU check has nothing to run here", file=sys.stderr)
        return 2
    names = ["gpu.toml"]
    if found["tensorrt"].present:
        names.append("gpu-tensorrt.toml")
    else:
        print("skipping gpu-tensorrt.toml: TensorRT is not installed (the capability table says so)")
    status, folders = 0, []
    for name in names:
        full = load_recipe(recipes / name)
        recipe, missing = plan_recipe(full, found)
        folder = run_recipe(recipe, results, cache)
        failed = load_failures(folder)
        status = status or (1 if failed else 0)
        write_text_atomic(folder / CHECK_FILE, summary(full, found, missing, failed))
        folders.append(folder)
    frame = add_speedup_vs(to_frame([report for folder in folders for report in load_reports(folder)]), GPU_REFERENCE)
    print("\n".join(markdown_table(frame, TABLE_COLUMNS)))
    for (recipe_name, _), run in frame.groupby(["recipe", "run_id"], sort=False):
        note = noise_floor_note(run)  # what a ~ before a speedup means
        if note:
            print(f"{recipe_name}: A/A noise floor: {note}")
    print("\n".join(f"written: {folder / CHECK_FILE}" for folder in folders))
    return status


def main(argv: list[str] | None = None) -> int:
    from optbench.pipeline import default_cache_dir

    parser = argparse.ArgumentParser(
        prog="scripts/gpu_check.sh",
        **help_text(
            "Run the GPU recipes (recipes/gpu.toml, and recipes/gpu-tensorrt.toml where TensorRT is installed) "
            "with the runtimes this machine has; write gpu-check.md beside each run's reports.",
            EPILOG,
        ),
    )
    parser.add_argument(
        "--results", type=path_argument, default=Path("results"), help="results folder (default: results)"
    )
    parser.add_argument(
        "--cache", type=path_argument, default=None, help="step cache (default: $OPTBENCH_CACHE or ~/.cache/optbench)"
    )
    parser.add_argument(
        "--recipes",
        type=path_argument,
        default=RECIPES,
        help="the folder holding gpu.toml and gpu-tensorrt.toml (default: this repository's recipes/; "
        "a pack made by python -m optbench.gpu_pack has its own)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    args = parser.parse_args(argv)
    cache = (args.cache or default_cache_dir()).resolve()  # as `optbench run`: its steps and jobs are given it
    return run_command(
        "gpu check",
        lambda: run_check(args.results, cache, args.recipes),
        args.verbose,
        "the same command resumes it (cached steps are kept)",
    )


if __name__ == "__main__":
    sys.exit(main())
