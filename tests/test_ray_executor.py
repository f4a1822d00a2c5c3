"""The Ray executor: a small sweep on a local Ray runtime gives the same results as the local executor."""

from __future__ import annotations

import json
import signal
import socket
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from test_cli import BENCH, write_recipe

from optbench import pipeline
from optbench.cli import main
from optbench.errors import OptbenchError
from optbench.executors import make_executor
from optbench.executors import ray as ray_executor
from optbench.executors.ray import LATENCY_SLOT, check_reachable


def test_executor_names_and_address_are_checked() -> None:
    with pytest.raises(OptbenchError, match="unknown executor 'dask'"):
        make_executor("dask")
    with pytest.raises(OptbenchError, match="use it with --executor ray"):
        make_executor("local", "ray://head:10001")


def test_an_unreachable_cluster_address_fails_at_once_naming_it() -> None:
    """ray.init retries an address where no cluster answers for minutes: the run refuses it before."""
    pytest.importorskip("ray", reason="Ray is in the test extra: pip install -e '.[test]'")
    with socket.socket() as probe:  # a local port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(OptbenchError, match=f"cannot reach the Ray cluster at 127.0.0.1:{port} .*ray start --head"):
        make_executor("ray", f"127.0.0.1:{port}")
    with pytest.raises(OptbenchError, match=f"at ray://127.0.0.1:{port} "):
        make_executor("ray", f"ray://127.0.0.1:{port}")


def test_auto_is_probed_at_ray_address_when_that_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """ray.init("auto") joins RAY_ADDRESS first, and retries it for minutes when nothing answers there."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    with pytest.raises(OptbenchError, match=rf"at auto \(RAY_ADDRESS=127.0.0.1:{port}\) "):
        check_reachable("auto")


def test_without_an_address_a_local_runtime_starts_whatever_ray_address_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """RAY_ADDRESS (set on a cluster's nodes) made ray.init join that cluster and refuse the local runtime's
    resources with a ValueError."""
    pytest.importorskip("ray", reason="Ray is in the test extra: pip install -e '.[test]'")
    from optbench.executors.ray import RayExecutor

    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")  # nothing listens there
    executor = RayExecutor(num_cpus=1)
    try:
        assert len(executor.nodes) == 1
    finally:
        executor.close()


def test_optbench_keeps_its_sigterm_handler_through_ray_init() -> None:
    """ray.init installs a SIGTERM handler that exits with code 15: a docker stop during a Ray run must still go
    through the handler optbench's cli installed, which says "interrupted" and exits with 130 as Ctrl-C does."""
    pytest.importorskip("ray", reason="Ray is in the test extra: pip install -e '.[test]'")
    from optbench.executors.ray import RayExecutor

    def optbench_handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    before = signal.signal(signal.SIGTERM, optbench_handler)
    try:
        executor = RayExecutor(num_cpus=1)
        try:
            assert signal.getsignal(signal.SIGTERM) is optbench_handler
        finally:
            executor.close()
    finally:
        signal.signal(signal.SIGTERM, before)


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


def test_a_latency_job_takes_its_whole_node_and_an_accuracy_job_its_threads() -> None:
    pytest.importorskip("ray", reason="Ray is in the test extra: pip install -e '.[test]'")
    from optbench.executors.ray import LATENCY_SLOT, RayExecutor
    from optbench.job import Job
    from optbench.sweep import PlannedJob

    executor = RayExecutor.__new__(RayExecutor)  # the options alone: no Ray runtime started
    n1, n2 = "a1" * 28, "b2" * 28  # node ids are hex
    executor.nodes, executor.shape_nodes = [n1, n2], {}
    executor.node_resources = {n1: {"CPU": 16.0, LATENCY_SLOT: 1.0}, n2: {"CPU": 8.0, LATENCY_SLOT: 1.0}}
    spec = Job("latency", {}, {"device": "cpu"}, 2, "in.npz", "out.json")
    first = executor.task_options(PlannedJob("latency", 0, (1, 128)), spec)
    second = executor.task_options(PlannedJob("latency", 0, (32, 128)), spec)
    assert (first["num_cpus"], second["num_cpus"]) == (16.0, 8.0)  # each shape's node, whole
    assert first["resources"] == {LATENCY_SLOT: 1} and first["scheduling_strategy"].node_id == n1
    accuracy = executor.task_options(PlannedJob("accuracy", 0), spec)
    assert accuracy["num_cpus"] == 2 and "resources" not in accuracy


def test_a_job_no_node_can_take_is_refused_rather_than_left_waiting() -> None:
    """Ray keeps a task that asks for more than any node has pending forever, without a word: the sweep hung."""
    pytest.importorskip("ray", reason="Ray is in the test extra: pip install -e '.[test]'")
    from optbench.executors.ray import LATENCY_SLOT, RayExecutor
    from optbench.job import Job
    from optbench.sweep import PlannedJob

    executor = RayExecutor.__new__(RayExecutor)
    node = "a1" * 28
    executor.nodes, executor.shape_nodes = [node], {}
    executor.node_resources = {node: {"CPU": 4.0, LATENCY_SLOT: 1.0}}
    cpu = Job("accuracy", {}, {"device": "cpu"}, 8, "in.npz", "out.json")
    cuda = Job("latency", {}, {"device": "cuda"}, 2, "in.npz", "out.json")
    with pytest.raises(OptbenchError, match=r"accuracy-pair0 asks Ray for 8 CPUs .* largest has 4 CPUs\): lower"):
        executor.task_options(PlannedJob("accuracy", 0), cpu)
    with pytest.raises(OptbenchError, match=rf"needs a GPU .* on node {node}, which times shape \(1, 16\)"):
        executor.task_options(PlannedJob("latency", 0, (1, 16)), cuda)
    wide = Job("latency", {}, {"device": "cpu"}, 8, "in.npz", "out.json")
    with pytest.raises(OptbenchError, match=r"threads = 8 and no node .* \(the largest has 4\): lower \[bench\]"):
        executor.task_options(PlannedJob("latency", 0, (1, 32)), wide)


def test_shapes_are_timed_only_on_nodes_with_cpus_for_every_thread() -> None:
    """A latency node with fewer CPUs than [bench] threads gets no shape: its threads would share cores."""
    pytest.importorskip("ray", reason="Ray is in the test extra: pip install -e '.[test]'")
    from optbench.executors.ray import LATENCY_SLOT, RayExecutor
    from optbench.job import Job
    from optbench.sweep import PlannedJob

    executor = RayExecutor.__new__(RayExecutor)
    small, large = "a1" * 28, "b2" * 28
    executor.nodes, executor.shape_nodes = [small, large], {}
    executor.node_resources = {small: {"CPU": 2.0, LATENCY_SLOT: 1.0}, large: {"CPU": 8.0, LATENCY_SLOT: 1.0}}
    spec = Job("latency", {}, {"device": "cpu"}, 4, "in.npz", "out.json")
    for shape in [(1, 128), (32, 128), (1, 64)]:
        options = executor.task_options(PlannedJob("latency", 0, shape), spec)
        assert options["scheduling_strategy"].node_id == large and options["num_cpus"] == 8.0


def test_a_cluster_with_no_node_for_the_threads_is_refused_before_any_step_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The refusal came with the first latency job, after the steps (fine-tuning included) had run for minutes."""
    calls: list[str] = []
    fake = types.ModuleType("ray")  # a cluster of one 4-CPU latency node; no Ray needed
    fake.init = lambda **kwargs: calls.append("init")  # type: ignore[attr-defined]
    fake.shutdown = lambda: calls.append("shutdown")  # type: ignore[attr-defined]
    node = {"NodeID": "a1" * 28, "Alive": True, "Resources": {"CPU": 4.0, LATENCY_SLOT: 1.0}}
    fake.nodes = lambda: [node]  # type: ignore[attr-defined]
    fake.remote = lambda function: function  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.setattr(ray_executor, "require_package", lambda *args, **kwargs: None)

    def run_recipe(*args: Any) -> None:
        raise AssertionError("the recipe's steps ran on a cluster that cannot time them")

    monkeypatch.setattr(pipeline, "run_recipe", run_recipe)
    recipe = write_recipe(
        tmp_path, tmp_path / "model", tmp_path / "reviews.csv", bench=BENCH.replace("threads = 1", "threads = 8")
    )
    folders = ["--results", str(tmp_path / "results"), "--cache", str(tmp_path / "cache")]
    code = main(["run", str(recipe), *folders, "--executor", "ray"])
    assert code != 0 and calls == ["init", "shutdown"]  # Ray let go at once
    assert (
        "[bench] threads = 8 and no node with the optbench_latency resource has that many CPUs (the largest has 4): "
        "lower [bench] threads, or give the optbench_latency resource to a node with 8 CPUs or more"
    ) in capsys.readouterr().err
