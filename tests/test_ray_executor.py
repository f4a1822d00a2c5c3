"""The Ray executor: a small sweep on a local Ray runtime gives the same results as the local executor."""

from __future__ import annotations

import dataclasses
import json
import shutil
import signal
import socket
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_cli import BENCH, ONNX_BENCH, ONNX_STEP, write_recipe

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
    for name in ("local", "ray"):  # an empty address was taken for none: ray started a local runtime
        with pytest.raises(OptbenchError, match=r"--address is empty: give the Ray cluster's .*or leave it out"):
            make_executor(name, "")


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
