"""The Ray executor: a small sweep on a local Ray runtime gives the same results as the local executor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli import BENCH, write_recipe

from optbench.cli import main
from optbench.errors import OptbenchError
from optbench.executors import make_executor


def test_executor_names_and_address_are_checked() -> None:
    with pytest.raises(OptbenchError, match="unknown executor 'dask'"):
        make_executor("dask")
    with pytest.raises(OptbenchError, match="use it with --executor ray"):
        make_executor("local", "ray://head:10001")


def _rows(results: Path) -> dict[tuple, dict]:
    reports = [json.loads(p.read_text()) for p in results.rglob("*.json")]
    return {
        (r["variant"], r["runtime"]["name"], m["batch_size"], m["seq_len"]): {**r, "m": m}
        for r in reports
        for m in r["measurements"]
    }


def test_a_sweep_on_a_local_ray_runtime_matches_the_local_executor(
    tmp_path: Path, tiny_classifier: Path, reviews_csv: Path
) -> None:
    pytest.importorskip("ray", reason="Ray is in the test extra: pip install -e '.[test]'")
    steps = '[[steps]]\nname = "onnx"\nexporter = "torchscript"\n'
    bench = BENCH.replace('seq_lens = [16, "data"]', 'seq_lens = ["data"]').replace(
        "[bench]", '[bench]\nruntimes = ["torch", "onnxruntime"]'
    )
    recipe = write_recipe(tmp_path, tiny_classifier, reviews_csv, extra=steps, bench=bench)
    common = ["run", str(recipe), "--cache", str(tmp_path / "cache")]
    assert main([*common, "--results", str(tmp_path / "local")]) == 0
    assert main([*common, "--results", str(tmp_path / "ray"), "--executor", "ray"]) == 0

    local, ray = _rows(tmp_path / "local"), _rows(tmp_path / "ray")
    assert (
        set(local)
        == set(ray)
        == {
            (variant, runtime, 2, "data")
            for variant, runtime in [("baseline", "torch"), ("baseline+onnx", "onnxruntime")]
        }
    )
    for key, row in local.items():
        other = ray[key]
        assert other["accuracy"] == row["accuracy"]  # metrics and drop: the same logits
        assert other["m"]["latency"]["n"] == row["m"]["latency"]["n"] == 3
        assert other["m"]["noise_floor_pct"] is not None and other["m"]["speedup_p50"] > 0
        assert other["environment"]["executor"] == "ray"
        assert other["environment"]["machine"] == row["environment"]["machine"]  # one machine: this one
    (run,) = (tmp_path / "ray" / "tiny").iterdir()
    machine = next(iter(ray.values()))["environment"]["machine"]
    assert sorted(p.name for p in run.glob("*.json")) == [
        f"baseline+onnx.onnxruntime-cpu-fp32@{machine}.json",
        f"baseline.torch-cpu-fp32@{machine}.json",
    ]
