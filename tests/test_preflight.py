"""The checks that refuse a recipe before any step runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from optbench.errors import OptbenchError
from optbench.preflight import check_steps_run_here
from optbench.recipe import Recipe, parse_recipe


def test_only_a_step_this_machine_cannot_run_refuses_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without TensorRT, a recipe is refused for its first tensorrt step, the one its run would stop at; a recipe
    without one is not, CUDA runtimes included (their jobs fail as jobs, recorded), nor are steps keyed on this
    machine that it can run (quantize-static's INT8 types chosen here)."""

    def no_tensorrt() -> None:
        raise OptbenchError("TensorRT is missing")

    monkeypatch.setattr("optbench.tensorrt_engine.import_tensorrt", no_tensorrt)
    onnx, static = {"name": "onnx", "label": "unfused", "fuse": False}, {"name": "quantize-static"}
    fp16, int8 = {"name": "tensorrt"}, {"name": "tensorrt", "precision": "int8"}
    cuda = [{"name": "torch", "device": "cuda"}, {"name": "tensorrt", "device": "cuda"}]

    def recipe(*chains: list[dict], runtimes: list) -> Recipe:
        table = {"chains": [{"steps": chain} for chain in chains], "bench": {"runtimes": ["onnxruntime", *runtimes]}}
        return parse_recipe(table, base=Path("."), default_name="r")

    check_steps_run_here(recipe([onnx, static], [onnx], runtimes=cuda[:1]))
    refused = (
        r"^the chain unfused -> tensorrt-int8, step tensorrt-int8, cannot run on this machine: TensorRT is missing\."
    )
    with pytest.raises(OptbenchError, match=refused):
        check_steps_run_here(recipe([onnx, static], [onnx, int8], [onnx, fp16], runtimes=cuda))
