"""The Ray executor: a small sweep on a local Ray runtime gives the same results as the local executor."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import re
import shutil
import signal
import socket
import sys
import threading
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_cli import BENCH, ONNX_BENCH, ONNX_STEP, write_recipe

from optbench import pipeline
from optbench.cli import main
from optbench.environment import fingerprint_key
from optbench.errors import OptbenchError
from optbench.executors import check_executor, make_executor
from optbench.executors import ray as ray_executor
from optbench.executors.ray import LATENCY_SLOT, check_reachable
from optbench.job import JobFailed


def test_executor_names_and_address_are_checked() -> None:
    with pytest.raises(OptbenchError, match=r"unknown executor 'dask': use one of \['local', 'ray'\]"):
        make_executor("dask")
    with pytest.raises(OptbenchError, match="use it with --executor ray"):
        make_executor("local", "ray://head:10001")
    for name in ("local", "ray"):  # an empty address was taken for none: ray started a local runtime
        with pytest.raises(OptbenchError, match=r"--address is empty: give the Ray cluster's .*or leave it out"):
            make_executor(name, "")


def test_an_unreachable_cluster_address_fails_at_once_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """ray.init retries an address where no cluster answers for minutes: the run refuses it before."""
    ray = pytest.importorskip("ray", reason="Ray is in the test extra: pip install -e '.[test]'")

    def init(*args: object, **kwargs: object) -> None:
        raise AssertionError("ray.init was reached: the address was not probed first (it would retry for minutes)")

    monkeypatch.setattr(ray, "init", init)
    with socket.socket() as probe:  # a local port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    refused = re.escape(f"cannot reach the Ray cluster at 127.0.0.1:{port} ({os.strerror(errno.ECONNREFUSED)})")
    with pytest.raises(OptbenchError, match=f"{refused}: start it \\(ray start --head\\)"):
        make_executor("ray", f"127.0.0.1:{port}")
    with pytest.raises(OptbenchError, match=f"at ray://127.0.0.1:{port} "):
        make_executor("ray", f"ray://127.0.0.1:{port}")


@pytest.mark.parametrize("address", ["head", "head:", "head:port", "head:99999", "local", "auto"])
def test_an_address_that_is_not_host_and_port_is_refused_before_the_run(
    address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ray takes a cluster's address as host:port: the dry run passed "head" (the port forgotten) and the run then
    stopped in ray.init with a ValueError traceback; "local" started a runtime with no node to time on."""
    monkeypatch.setenv("RAY_ADDRESS", "head")  # what auto joins where it is set
    shown = "auto (RAY_ADDRESS=head)" if address == "auto" else address
    with pytest.raises(OptbenchError) as refused:
        check_reachable(address)
    assert str(refused.value) == (
        f"--address {shown} is no Ray cluster's address: give the head's GCS address (host:6379, as ray start "
        "prints it), ray://head:10001, or auto on a node of the cluster (leave --address out to start a local runtime)"
    )


def test_ray_s_refusal_of_an_address_is_one_line_naming_it(
    fake_cluster: Callable[[list[dict[str, float]]], list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """ray:// without the ray[client] extra, an HTTP address: ray.init's ValueError was a traceback."""
    monkeypatch.setattr(ray_executor, "check_reachable", lambda address: None)

    def refuse(**kwargs: Any) -> None:
        raise ValueError("Ray Client requires pip package `ray[client]`.")

    fake_cluster([])
    monkeypatch.setattr(sys.modules["ray"], "init", refuse)
    with pytest.raises(OptbenchError) as refused:
        make_executor("ray", "ray://head:10001")
    assert str(refused.value) == "cannot join the Ray cluster at ray://head:10001: Ray Client requires pip package " + (
        "`ray[client]`."
    )


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
        (node,) = executor.nodes
        assert executor.node_resources[node]["CPU"] == 1.0  # the runtime it started, not a cluster's node
    finally:
        executor.close()


def test_optbench_keeps_its_sigterm_handler_through_ray_init() -> None:
    """ray.init installs a SIGTERM handler that exits with code 15: a docker stop during a Ray run must still go
    through the handler optbench's command.py installed, which says "interrupted" and exits with 130 as Ctrl-C does."""
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
    tmp_path: Path, tiny_classifier: Path, reviews_csv: Path, onnx_run: Path
) -> None:
    pytest.importorskip("ray", reason="Ray is in the test extra: pip install -e '.[test]'")
    # onnx_run is the local executor's run of this recipe without the A/A repeat: compared on accuracy, timed calls
    # and machine, which the repeat leaves as they are. The Ray run keeps it (its noise floor is checked) and
    # measures the same export, from a copy of onnx_run's cache
    recipe = write_recipe(tmp_path, tiny_classifier, reviews_csv, extra=ONNX_STEP, bench=ONNX_BENCH)
    shutil.copytree(onnx_run / "cache", tmp_path / "cache")
    folders = ["--cache", str(tmp_path / "cache"), "--results", str(tmp_path / "ray")]
    assert main(["run", str(recipe), *folders, "--executor", "ray"]) == 0

    local, ray = _rows(onnx_run / "results"), _rows(tmp_path / "ray")
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


def test_a_node_s_fingerprint_is_measured_by_a_latency_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker measured its node's fingerprint once, in its first task: an accuracy task's, run beside other
    accuracy jobs, gave every later latency report of that worker a GEMM calibration slowed by them."""
    from optbench.job import Job

    running: list[str] = []

    def run_in_subprocess(job: Job, job_path: Path, timeout_s: float) -> dict[str, Any]:
        running.append(job.kind)
        return {"values_ns": [1, 2]} if job.kind == "latency" else {"startup": {}}

    def fingerprint(threads: int) -> dict[str, Any]:  # the calibration tells the node's load when measured
        assert threads == 2  # the job's: its GEMM calibration runs on as many threads as the job
        return {"calibration_gflops": 100.0 if running[-1] == "latency" else 40.0}

    monkeypatch.setattr(ray_executor, "run_in_subprocess", run_in_subprocess)
    monkeypatch.setattr("optbench.environment.fingerprint", fingerprint)
    ray_executor.node_environment.cache_clear()
    accuracy = Job("accuracy", {"path": str(tmp_path)}, {"device": "cpu"}, 2, "in.npz", "out.json")
    try:
        status, result = ray_executor.run_on_node(accuracy, b"", 60.0)
        assert status == "ok" and "environment" not in result  # bench reads a latency job's alone
        status, result = ray_executor.run_on_node(dataclasses.replace(accuracy, kind="latency"), b"", 60.0)
        assert status == "ok" and result["environment"]["calibration_gflops"] == 100.0
        assert result["environment"]["executor"] == "ray"
        assert result["environment"]["machine"] == fingerprint_key({"calibration_gflops": 100.0})
    finally:
        ray_executor.node_environment.cache_clear()


def _executor(resources: dict[str, dict[str, float]], gpu: bool = False) -> Any:
    """A RayExecutor over nodes of these resources, for its placement alone: no Ray runtime started."""
    from optbench.executors.ray import RayExecutor

    executor = RayExecutor.__new__(RayExecutor)
    executor.node_resources, executor.gpu, executor.shape_nodes = resources, gpu, {}
    executor.nodes = sorted(node for node, r in resources.items() if r.get(LATENCY_SLOT))
    return executor


def test_a_latency_job_takes_its_whole_node_and_an_accuracy_job_its_threads() -> None:
    pytest.importorskip("ray", reason="Ray is in the test extra: pip install -e '.[test]'")
    from optbench.job import Job
    from optbench.sweep import PlannedJob

    n1, n2 = "a1" * 28, "b2" * 28  # node ids are hex
    executor = _executor({n1: {"CPU": 16.0, LATENCY_SLOT: 1.0}, n2: {"CPU": 8.0, LATENCY_SLOT: 1.0}})
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
    from optbench.job import Job
    from optbench.sweep import PlannedJob

    executor = _executor({"a1" * 28: {"CPU": 4.0, LATENCY_SLOT: 1.0}}, gpu=True)
    cpu = Job("accuracy", {}, {"device": "cpu"}, 8, "in.npz", "out.json")
    with pytest.raises(OptbenchError, match=r"threads = 8 and no node of the Ray cluster .* has 4\): lower .* add a"):
        executor.task_options(PlannedJob("accuracy", 0), cpu)
    cuda = Job("accuracy", {}, {"device": "cuda"}, 2, "in.npz", "out.json")
    with pytest.raises(OptbenchError, match=r"CUDA runtime and no node of the Ray cluster has a GPU: add a node"):
        executor.task_options(PlannedJob("accuracy", 0), cuda)
    with pytest.raises(OptbenchError, match=rf"CUDA runtime and no node with the {LATENCY_SLOT} resource has a GPU"):
        executor.task_options(PlannedJob("latency", 0, (1, 16)), dataclasses.replace(cuda, kind="latency"))
    wide = Job("latency", {}, {"device": "cpu"}, 8, "in.npz", "out.json")
    with pytest.raises(OptbenchError, match=r"threads = 8 and no node .* \(the largest has 4\): lower \[bench\]"):
        _executor(executor.node_resources).task_options(PlannedJob("latency", 0, (1, 32)), wide)


def test_a_cuda_job_on_an_executor_started_for_cpu_runtimes_is_refused() -> None:
    """Its shape's node is picked without a GPU in mind: Ray would keep the job waiting there forever."""
    pytest.importorskip("ray", reason="Ray is in the test extra: pip install -e '.[test]'")
    from optbench.job import Job
    from optbench.sweep import PlannedJob

    executor = _executor({"a1" * 28: {"CPU": 4.0, "GPU": 1.0, LATENCY_SLOT: 1.0}})
    cuda = Job("latency", {}, {"device": "cuda"}, 2, "in.npz", "out.json")
    with pytest.raises(OptbenchError, match=r"latency-1x16-round0-pair0 runs a CUDA runtime .* start it with gpu=True"):
        executor.task_options(PlannedJob("latency", 0, (1, 16)), cuda)


def test_shapes_are_timed_only_on_nodes_with_cpus_for_every_thread() -> None:
    """A latency node with fewer CPUs than [bench] threads gets no shape: its threads would share cores."""
    pytest.importorskip("ray", reason="Ray is in the test extra: pip install -e '.[test]'")
    from optbench.job import Job
    from optbench.sweep import PlannedJob

    small, large = "a1" * 28, "b2" * 28
    executor = _executor({small: {"CPU": 2.0, LATENCY_SLOT: 1.0}, large: {"CPU": 8.0, LATENCY_SLOT: 1.0}})
    spec = Job("latency", {}, {"device": "cpu"}, 4, "in.npz", "out.json")
    for shape in [(1, 128), (32, 128), (1, 64)]:
        options = executor.task_options(PlannedJob("latency", 0, shape), spec)
        assert options["scheduling_strategy"].node_id == large and options["num_cpus"] == 8.0


def test_shapes_of_a_recipe_with_a_cuda_runtime_are_timed_only_on_nodes_with_a_gpu() -> None:
    """Every shape times every runtime on one node: a shape pinned (by its CPU runtime's job, the first) to a node
    without a GPU stopped the run at its CUDA runtime's job, though a node with a GPU was there to time it."""
    pytest.importorskip("ray", reason="Ray is in the test extra: pip install -e '.[test]'")
    from optbench.job import Job
    from optbench.sweep import PlannedJob

    cpu_node, gpu_node = "a1" * 28, "b2" * 28
    executor = _executor(
        {cpu_node: {"CPU": 16.0, LATENCY_SLOT: 1.0}, gpu_node: {"CPU": 8.0, "GPU": 1.0, LATENCY_SLOT: 1.0}}, gpu=True
    )
    cpu = Job("latency", {}, {"device": "cpu"}, 4, "in.npz", "out.json")
    cuda = dataclasses.replace(cpu, runtime={"device": "cuda"})
    for shape in [(1, 128), (32, 128), (1, 64)]:
        first = executor.task_options(PlannedJob("latency", 0, shape), cpu)
        second = executor.task_options(PlannedJob("latency", 1, shape), cuda)
        assert first["scheduling_strategy"].node_id == second["scheduling_strategy"].node_id == gpu_node
        assert (first["num_gpus"], second["num_gpus"]) == (0, 1)


@pytest.fixture
def fake_cluster(monkeypatch: pytest.MonkeyPatch) -> Callable[[list[dict[str, float]]], list[str]]:
    """Make `ray` a fake whose cluster has nodes of the given resources (no Ray needed), and the recipe's steps
    fail the test should they run; it returns the calls made to start and stop Ray."""
    calls: list[str] = []

    def cluster(resources: list[dict[str, float]]) -> list[str]:
        fake = types.ModuleType("ray")
        fake.init = lambda **kwargs: calls.append("init")  # type: ignore[attr-defined]
        fake.shutdown = lambda: calls.append("shutdown")  # type: ignore[attr-defined]
        nodes = [{"NodeID": f"{i:02x}" * 28, "Alive": True, "Resources": r} for i, r in enumerate(resources)]
        fake.nodes = lambda: nodes  # type: ignore[attr-defined]
        fake.remote = lambda function: function  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "ray", fake)
        return calls

    def run_recipe(*args: Any) -> None:
        raise AssertionError("the recipe's steps ran on a cluster that cannot time them")

    monkeypatch.setattr(ray_executor, "require_package", lambda *args, **kwargs: None)
    monkeypatch.setattr(pipeline, "run_recipe", run_recipe)
    return cluster


def _run_on_ray(tmp_path: Path, bench: str) -> int:
    recipe = write_recipe(tmp_path, tmp_path / "model", tmp_path / "reviews.csv", bench=bench)
    folders = ["--results", str(tmp_path / "results"), "--cache", str(tmp_path / "cache")]
    return main(["run", str(recipe), *folders, "--executor", "ray"])


def test_a_cluster_with_no_node_for_the_threads_is_refused_before_any_step_runs(
    tmp_path: Path, fake_cluster: Callable[[list[dict[str, float]]], list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    """The refusal came with the first latency job, after the steps (fine-tuning included) had run for minutes."""
    calls = fake_cluster([{"CPU": 4.0, LATENCY_SLOT: 1.0}])
    code = _run_on_ray(tmp_path, BENCH.replace("threads = 1", "threads = 8"))
    assert code != 0 and calls == ["init", "shutdown"]  # Ray let go at once
    assert (
        "[bench] threads = 8 and no node with the optbench_latency resource has that many CPUs (the largest has 4): "
        "lower [bench] threads, or give the optbench_latency resource to a node with 8 CPUs or more"
    ) in capsys.readouterr().err


@pytest.mark.parametrize(
    ("resources", "threads", "missing"),
    [
        ([{"CPU": 8.0, LATENCY_SLOT: 1.0}], 1, "no node with the optbench_latency resource has a GPU: "),
        (  # a GPU, but on a node that times no latency
            [{"CPU": 8.0, LATENCY_SLOT: 1.0}, {"CPU": 8.0, "GPU": 1.0}],
            1,
            "no node with the optbench_latency resource has a GPU: ",
        ),
        (
            [{"CPU": 8.0, LATENCY_SLOT: 1.0}, {"CPU": 2.0, "GPU": 1.0, LATENCY_SLOT: 1.0}],
            4,
            "no node with the optbench_latency resource has a GPU and that many CPUs (the largest with a GPU has 2): ",
        ),
    ],
)
def test_a_cluster_with_no_gpu_node_for_a_cuda_runtime_is_refused_before_any_step_runs(
    tmp_path: Path,
    fake_cluster: Callable[[list[dict[str, float]]], list[str]],
    capsys: pytest.CaptureFixture[str],
    resources: list[dict[str, float]],
    threads: int,
    missing: str,
) -> None:
    """The refusal came with the first CUDA job, after the steps (fine-tuning included) had run for minutes."""
    calls = fake_cluster(resources)
    bench = BENCH.replace("threads = 1", f"threads = {threads}")
    code = _run_on_ray(tmp_path, f'{bench}runtimes = ["torch", {{name = "torch", device = "cuda"}}]\n')
    assert code != 0 and calls == ["init", "shutdown"]  # Ray let go at once
    err = capsys.readouterr().err
    assert missing in err
    assert (
        f"give the optbench_latency resource to a node with a GPU and {threads} CPU{'s' if threads > 1 else ''} or more"
        in err
    )


def test_check_executor_says_where_jobs_would_run_without_starting_anything(monkeypatch: pytest.MonkeyPatch) -> None:
    """The dry run's line on the executor: which one, where its jobs run, and whether all on this machine."""
    probed: list[str | None] = []
    monkeypatch.setattr(ray_executor, "check_available", probed.append)
    assert check_executor("local") == ("the local executor (this machine, one job at a time)", True)
    assert check_executor("ray") == ("the ray executor (a local Ray runtime)", False)
    assert check_executor("ray", "head:6379") == (
        "the ray executor (the Ray cluster at head:6379; its nodes are checked when the run starts)",
        False,
    )
    assert probed == [None, "head:6379"]


def test_dead_nodes_are_left_out_and_a_cluster_without_a_latency_node_is_refused(
    fake_cluster: Callable[[list[dict[str, float]]], list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node Ray reports dead runs nothing; a cluster none of whose nodes has the latency slot can time nothing."""
    from optbench.executors.ray import RayExecutor

    monkeypatch.setattr(ray_executor, "check_reachable", lambda address: None)
    calls = fake_cluster([{"CPU": 8.0, LATENCY_SLOT: 1.0}, {"CPU": 2.0, LATENCY_SLOT: 1.0}])
    sys.modules["ray"].nodes()[0]["Alive"] = False
    with pytest.raises(OptbenchError, match=r"threads = 4 and no node with the optbench_latency .*largest has 2\)"):
        RayExecutor("head:6379", threads=4)
    assert calls == ["init", "shutdown"]
    assert RayExecutor("head:6379", threads=2).nodes == ["01" * 28]

    calls = fake_cluster([{"CPU": 8.0}])
    calls.clear()
    with pytest.raises(OptbenchError) as refused:
        RayExecutor("head:6379")
    assert str(refused.value) == (
        "no node of the Ray cluster at head:6379 offers the optbench_latency resource: start every node with "
        "ray start ... --resources='{\"optbench_latency\": 1}' (one latency job per node at a time)"
    )
    assert calls == ["init", "shutdown"]  # Ray let go at once


def test_an_executor_started_for_a_cuda_runtime_places_its_cuda_jobs(
    fake_cluster: Callable[[list[dict[str, float]]], list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # task_options imports it: loaded before the fake takes ray's place, it is found loaded
    pytest.importorskip("ray.util.scheduling_strategies", reason="Ray is in the test extra: pip install -e '.[test]'")
    from optbench.executors.ray import RayExecutor
    from optbench.job import Job
    from optbench.sweep import PlannedJob

    monkeypatch.setattr(ray_executor, "check_reachable", lambda address: None)
    fake_cluster([{"CPU": 8.0, LATENCY_SLOT: 1.0}, {"CPU": 8.0, "GPU": 1.0, LATENCY_SLOT: 1.0}])
    executor = RayExecutor("head:6379", gpu=True)
    cuda = Job("latency", {}, {"device": "cuda"}, 2, "in.npz", "out.json")
    options = executor.task_options(PlannedJob("latency", 0, (1, 16)), cuda)
    assert options["num_gpus"] == 1 and options["scheduling_strategy"].node_id == "01" * 28


def test_accuracy_jobs_run_side_by_side_and_each_shape_s_latency_jobs_in_one_lane() -> None:
    """The sweep runs each lane's jobs in order: a shape's rounds and pairs on its node one after another."""
    from optbench.sweep import PlannedJob

    executor = _executor({"a1" * 28: {"CPU": 4.0, LATENCY_SLOT: 1.0}})
    lanes = {
        executor.lane(job)
        for job in [PlannedJob("accuracy", 0), PlannedJob("accuracy", 1), PlannedJob("latency", 0, (1, 16))]
    }
    assert len(lanes) == 3
    same_shape = [PlannedJob("latency", pair, (1, 16), round_index) for pair in (0, 1) for round_index in (0, 1)]
    assert len({executor.lane(job) for job in same_shape}) == 1
    assert executor.lane(PlannedJob("latency", 0, (1, 32))) != executor.lane(same_shape[0])


def test_a_job_takes_a_node_with_exactly_its_threads_and_may_not_be_retried() -> None:
    pytest.importorskip("ray", reason="Ray is in the test extra: pip install -e '.[test]'")
    from optbench.job import Job
    from optbench.sweep import PlannedJob

    node = "a1" * 28
    executor = _executor({node: {"CPU": 4.0, LATENCY_SLOT: 1.0}})
    spec = Job("latency", {}, {"device": "cpu"}, 4, "in.npz", "out.json")
    latency = executor.task_options(PlannedJob("latency", 0, (1, 16)), spec)
    assert latency["scheduling_strategy"].node_id == node and latency["scheduling_strategy"].soft is False
    accuracy = executor.task_options(PlannedJob("accuracy", 0), dataclasses.replace(spec, kind="accuracy"))
    assert latency["max_retries"] == accuracy["max_retries"] == 0  # a job that dies is failed, not run again
    # a shape keeps its node: the next latency job of it does not move to the next node
    executor.node_resources["b2" * 28] = {"CPU": 4.0, LATENCY_SLOT: 1.0}
    executor.nodes.append("b2" * 28)
    assert executor.task_options(PlannedJob("latency", 1, (1, 16)), spec)["scheduling_strategy"].node_id == node


def test_an_accuracy_job_runs_on_a_node_that_times_no_latency() -> None:
    """Only latency jobs need the latency slot: a CUDA accuracy job fits the one GPU, on a node without it."""
    pytest.importorskip("ray", reason="Ray is in the test extra: pip install -e '.[test]'")
    from optbench.job import Job
    from optbench.sweep import PlannedJob

    executor = _executor({"a1" * 28: {"CPU": 2.0, LATENCY_SLOT: 1.0}, "b2" * 28: {"CPU": 8.0, "GPU": 1.0}}, gpu=True)
    cuda = Job("accuracy", {}, {"device": "cuda"}, 4, "in.npz", "out.json")
    assert executor.task_options(PlannedJob("accuracy", 0), cuda)["num_gpus"] == 1


def test_a_refused_job_names_the_largest_node() -> None:
    executor = _executor({"a1" * 28: {"CPU": 2.0, LATENCY_SLOT: 1.0}, "b2" * 28: {"CPU": 4.0, LATENCY_SLOT: 1.0}})
    with pytest.raises(OptbenchError, match=r"\(the largest has 4\)"):
        executor.fitting_nodes(8, False, latency=True)


class _RayLost(Exception):
    """Stands in for ray.exceptions.RayError."""


class _FakeRay:
    """The calls RayExecutor makes to submit and wait on tasks: `outcomes` holds each finished task's result, or
    the error getting it raises."""

    exceptions = types.SimpleNamespace(RayError=_RayLost)

    def __init__(self) -> None:
        self.outcomes: dict[str, Any] = {}
        self.put_objects: list[bytes] = []
        self.remote_calls: list[tuple[dict[str, Any], tuple[Any, ...]]] = []
        self.wait_timeouts: list[float] = []

    def put(self, value: bytes) -> str:
        self.put_objects.append(value)
        return f"object{len(self.put_objects)}"

    def options(self, **options: Any) -> Any:
        return types.SimpleNamespace(remote=lambda *args: self._remote(options, args))

    def _remote(self, options: dict[str, Any], args: tuple[Any, ...]) -> str:
        self.remote_calls.append((options, args))
        return f"task{len(self.remote_calls)}"

    def wait(self, handles: list[str], num_returns: int, timeout: float) -> tuple[list[str], list[str]]:
        self.wait_timeouts.append(timeout)
        ready = [h for h in handles if h in self.outcomes][:num_returns]
        return ready, [h for h in handles if h not in ready]

    def get(self, ref: str) -> Any:
        if isinstance(self.outcomes[ref], Exception):
            raise self.outcomes[ref]
        return self.outcomes[ref]


def test_submitted_jobs_share_their_inputs_and_wait_gives_each_outcome(tmp_path: Path) -> None:
    """The tokenized inputs go to Ray once for every job that reads them; wait returns a finished task's result
    (its logits written beside the job's output), its failure, or Ray's losing it, and None while none has ended."""
    from optbench.job import Job
    from optbench.sweep import PlannedJob

    (tmp_path / "in.npz").write_bytes(b"inputs")
    ray = _FakeRay()
    executor = _executor({"a1" * 28: {"CPU": 4.0, LATENCY_SLOT: 1.0}})
    executor.ray, executor.task, executor.inputs, executor.specs = ray, ray, {}, {}
    specs = [
        Job("accuracy", {}, {"device": "cpu"}, 2, str(tmp_path / "in.npz"), str(tmp_path / f"out{n}.json"))
        for n in range(3)
    ]
    refs = [executor.submit(PlannedJob("accuracy", n), spec, 60.0) for n, spec in enumerate(specs)]
    assert ray.put_objects == [b"inputs"]
    assert [args for _, args in ray.remote_calls] == [(spec, "object1", 60.0) for spec in specs]

    assert executor.wait(refs, 5.0) is None and ray.wait_timeouts == [5.0]
    logits = np.array([[0.5, -1.0]], dtype=np.float32)
    ray.outcomes[refs[0]] = ("ok", {"logits": logits, "seconds": 1.0})
    ref, result = executor.wait(refs, 5.0)
    assert ref == refs[0] and result == {"logits": str(tmp_path / "out0.npy"), "seconds": 1.0}
    np.testing.assert_array_equal(np.load(result["logits"]), logits)
    # the later job ends first: its outcome is its own, not the first handle's (whose result would be stored twice)
    ray.outcomes = {refs[2]: _RayLost("the worker died\nits traceback")}
    ref, lost = executor.wait(refs[1:], 5.0)
    assert ref == refs[2] and str(lost) == "accuracy job failed: Ray lost it (_RayLost: the worker died)"
    ray.outcomes = {refs[1]: ("failed", "accuracy job failed: exit code 1")}
    ref, failed = executor.wait(refs[1:2], 5.0)
    assert ref == refs[1] and isinstance(failed, JobFailed) and str(failed) == "accuracy job failed: exit code 1"
    assert executor.specs == {}  # each spec let go with its outcome


def test_a_task_runs_its_job_on_the_inputs_it_carries_and_returns_the_logits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node writes the inputs the task carries for the job's process, and sends its logits back as an array
    (the file the process wrote is the task's own, gone when it ends); a model folder the node lacks, or the job's
    process failing, fails the job."""
    from optbench.job import Job

    def run_in_subprocess(job: Job, job_path: Path, timeout_s: float) -> dict[str, Any]:
        assert Path(job.inputs).read_bytes() == b"inputs" and timeout_s == 60.0
        if job.kind == "latency":
            raise JobFailed("latency job failed: exit code 1 (its last lines)")
        np.save(Path(job.output).with_suffix(".npy"), np.array([[1.0, 2.0]]))
        return {"logits": str(Path(job.output).with_suffix(".npy"))}

    monkeypatch.setattr(ray_executor, "run_in_subprocess", run_in_subprocess)
    accuracy = Job("accuracy", {"path": str(tmp_path)}, {"device": "cpu"}, 2, "in.npz", "out.json")
    status, result = ray_executor.run_on_node(accuracy, b"inputs", 60.0)
    assert status == "ok"
    np.testing.assert_array_equal(result["logits"], [[1.0, 2.0]])
    status, reason = ray_executor.run_on_node(
        dataclasses.replace(accuracy, artifact={"path": str(tmp_path / "gone")}), b"inputs", 60.0
    )
    assert (status, reason) == (
        "failed",
        f"accuracy job failed: the model folder {tmp_path / 'gone'} is not on node {socket.gethostname()}: put the "
        "cache (--cache) on a filesystem every node mounts at the same path",
    )
    # a job that fails on the node comes back failed, with its reason: never as a result of nothing
    latency = dataclasses.replace(accuracy, kind="latency")
    failed = "latency job failed: exit code 1 (its last lines)"
    assert ray_executor.run_on_node(latency, b"inputs", 60.0) == ("failed", failed)


def test_a_cluster_address_that_answers_passes_the_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    """host:port and ray://host:port are probed at the host and port they name; auto without RAY_ADDRESS is left to
    Ray, which looks for the cluster started on this node."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    check_reachable("auto")
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        check_reachable(f"127.0.0.1:{port}")
        check_reachable(f"ray://127.0.0.1:{port}")


def test_an_ipv6_cluster_address_is_probed_without_its_brackets() -> None:
    try:
        server = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError:
        pytest.skip("this machine has no IPv6 loopback")
    with server:
        check_reachable(f"[::1]:{server.getsockname()[1]}")


def test_a_cluster_ray_cannot_join_is_named(
    fake_cluster: Callable[[list[dict[str, float]]], list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """auto with no cluster started on this node: Ray's ConnectionError, as one line naming the address."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # auto is probed there when set

    def no_cluster(**kwargs: Any) -> None:
        raise ConnectionError("Could not find any running Ray instance.")

    fake_cluster([])
    monkeypatch.setattr(sys.modules["ray"], "init", no_cluster)
    with pytest.raises(OptbenchError) as refused:
        make_executor("ray", "auto")
    assert str(refused.value) == "cannot join the Ray cluster at auto: Could not find any running Ray instance."


def test_sigterm_s_handler_is_put_back_only_from_the_main_thread() -> None:
    """Off the main thread no handler can be set (ValueError), and ray.init set none there."""
    failed: list[BaseException] = []

    def restore() -> None:
        try:
            ray_executor._restore_sigterm(signal.getsignal(signal.SIGTERM))
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=restore)
    thread.start()
    thread.join()
    assert failed == []
