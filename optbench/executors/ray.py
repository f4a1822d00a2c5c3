"""The Ray executor: a sweep's jobs as Ray tasks, on a local Ray runtime or on an existing cluster.

Every job still runs in a fresh process: its task starts it on the node with `run_in_subprocess`.
- Accuracy jobs ask for `threads` CPUs (and a GPU for CUDA runtimes) and run wherever they fit, side by
  side: their figures do not depend on time. A job no node can fit is refused (Ray would queue it forever).
- Latency jobs ask for every CPU of their node and its one `optbench_latency` slot, so a node times one
  job at a time with no accuracy job beside it. Each shape is pinned to one node: its rounds, every
  variant and the reference its speedups are taken against are measured on the same machine, in plan
  order. Only nodes with `[bench] threads` CPUs time latency, and when the recipe has a CUDA runtime only
  those of them with a GPU (every shape times every runtime). A cluster with no such node is refused as
  the executor starts, before any step runs; such a node also fits every accuracy job.
- Each latency result carries its node's environment fingerprint, so a run's reports say where they were measured.
Model folders must be at the same path on every node (a cache on a filesystem they all mount); the
tokenized inputs travel with the tasks and the logits come back with the results.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import signal
import socket
import tempfile
import threading
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import numpy as np

from optbench.atomic import write_npy_atomic
from optbench.errors import OptbenchError, require_package
from optbench.job import Job, JobFailed, run_in_subprocess
from optbench.sweep import PlannedJob

log = logging.getLogger(__name__)

LATENCY_SLOT = "optbench_latency"
INSTALL = "pip install 'optbench[ray]'"
PROBE_TIMEOUT_S = 10.0


class RayExecutor:
    """Jobs as Ray tasks: a local Ray runtime by default, or the cluster at `address` (e.g. ray://head:10001
    or auto)."""

    runs_here = False  # each latency result carries its node's fingerprint instead

    def __init__(
        self, address: str | None = None, num_cpus: int | None = None, threads: int = 1, gpu: bool = False
    ) -> None:
        """Start (or join) Ray and refuse, before any job runs, a cluster with no latency node that has
        `threads` CPUs (the recipe's [bench] threads) and, when `gpu` (the recipe has a CUDA runtime), a GPU:
        every run times latency, and that node fits every accuracy job too."""
        check_available(address)
        import ray

        sigterm = signal.getsignal(signal.SIGTERM)  # ray.init replaces it: see _restore_sigterm
        if address:
            try:
                ray.init(address=address, log_to_driver=False)
            # ConnectionError: "auto" with no cluster on this node; ValueError: ray:// without ray[client], and others
            except (ConnectionError, ValueError) as exc:
                raise OptbenchError(f"cannot join the Ray cluster at {address}: {exc}") from exc
        else:
            # "local": a runtime of its own, even where RAY_ADDRESS or a `ray start` on this node names a cluster
            ray.init(
                address="local",
                num_cpus=num_cpus,
                resources={LATENCY_SLOT: 1},
                include_dashboard=False,
                log_to_driver=False,
            )
        _restore_sigterm(sigterm)
        self.ray = ray
        self.node_resources = {n["NodeID"]: n["Resources"] for n in ray.nodes() if n["Alive"]}
        self.nodes = sorted(node for node, resources in self.node_resources.items() if resources.get(LATENCY_SLOT))
        if not self.nodes:
            ray.shutdown()
            raise OptbenchError(
                f"no node of the Ray cluster at {address} offers the {LATENCY_SLOT} resource: start every node "
                f"with ray start ... --resources='{{\"{LATENCY_SLOT}\": 1}}' (one latency job per node at a time)"
            )
        self.gpu = gpu
        try:
            self.fitting_nodes(threads, gpu, latency=True)
        except OptbenchError:
            ray.shutdown()
            raise
        log.info("Ray executor: %d nodes time latency jobs", len(self.nodes))
        self.task = ray.remote(run_on_node)
        self.shape_nodes: dict[Any, str] = {}
        self.specs: dict[Hashable, Job] = {}
        self.inputs: dict[str, Any] = {}

    def lane(self, job: PlannedJob) -> Hashable:
        """Accuracy jobs in lanes of their own (in parallel); latency jobs one lane per shape (in order)."""
        return ("accuracy", job.pair) if job.kind == "accuracy" else ("latency", job.shape)

    def submit(self, job: PlannedJob, spec: Job, timeout_s: float) -> Hashable:
        options = self.task_options(job, spec)
        if spec.inputs not in self.inputs:
            self.inputs[spec.inputs] = self.ray.put(Path(spec.inputs).read_bytes())
        ref = self.task.options(**options).remote(spec, self.inputs[spec.inputs], timeout_s)
        self.specs[ref] = spec
        return ref

    def task_options(self, job: PlannedJob, spec: Job) -> dict[str, Any]:
        """What the job's Ray task asks for: `threads` CPUs (and a GPU for a CUDA runtime) for an accuracy job;
        for a latency job every CPU of the node its shape is pinned to, and the node's latency slot. A request
        no node can meet is refused: Ray would keep it waiting, without a word, for a node that never comes."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        gpu = spec.runtime.get("device") == "cuda"
        if gpu and not self.gpu:  # its shape's node may have been picked without a GPU
            raise OptbenchError(
                f"{job.key} runs a CUDA runtime on a Ray executor started for CPU runtimes: start it with "
                "gpu=True (make_executor(..., gpu=True)), which places the shapes on nodes with a GPU"
            )
        options: dict[str, Any] = {
            "num_cpus": spec.threads,
            "num_gpus": int(gpu),
            "max_retries": 0,  # a job that dies is recorded as failed, not silently run again
        }
        if job.kind == "latency":
            node = self._shape_node(job, spec.threads)
            options["num_cpus"] = self.node_resources[node].get("CPU", 1.0)  # nothing else runs on it while timed
            options["resources"] = {LATENCY_SLOT: 1}
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=False)
        else:
            self.fitting_nodes(spec.threads, gpu, latency=False)
        return options

    def fitting_nodes(self, threads: int, gpu: bool, latency: bool) -> list[str]:
        """The nodes with `threads` CPUs or more, and a GPU if `gpu`: among the latency nodes for a latency job
        (with fewer CPUs its threads would share cores, and the timings would measure that), else among all.
        None is an error naming what is missing."""
        nodes = self.nodes if latency else sorted(self.node_resources)
        with_gpu = [n for n in nodes if self.node_resources[n].get("GPU", 0) >= gpu]
        fitting = [n for n in with_gpu if self.node_resources[n].get("CPU", 0) >= threads]
        if fitting:
            return fitting
        where = f"with the {LATENCY_SLOT} resource" if latency else "of the Ray cluster"
        need = f"{'a GPU and ' if gpu else ''}{threads} CPU{'s' if threads > 1 else ''} or more"
        fix = f"give the {LATENCY_SLOT} resource to a node with {need}" if latency else f"add a node with {need}"
        if not with_gpu:
            raise OptbenchError(
                f"[bench] runtimes has a CUDA runtime and no node {where} has a GPU: {fix}, or drop the CUDA "
                "runtimes from [bench] runtimes"
            )
        largest = max(self.node_resources[n].get("CPU", 0) for n in with_gpu)
        raise OptbenchError(
            f"[bench] threads = {threads} and no node {where} has {'a GPU and ' if gpu else ''}that many CPUs "
            f"(the largest{' with a GPU' if gpu else ''} has {largest:g}): lower [bench] threads, or {fix}"
        )

    def _shape_node(self, job: PlannedJob, threads: int) -> str:
        """The node that times every job of `job`'s shape: the shapes go to the fitting latency nodes in turn,
        those with a GPU when the recipe has a CUDA runtime (every shape times every runtime)."""
        if job.shape not in self.shape_nodes:
            fitting = self.fitting_nodes(threads, self.gpu, latency=True)
            self.shape_nodes[job.shape] = fitting[len(self.shape_nodes) % len(fitting)]
        return self.shape_nodes[job.shape]

    def wait(self, handles: list[Hashable], timeout_s: float) -> tuple[Hashable, dict[str, Any] | JobFailed] | None:
        ready, _ = self.ray.wait(handles, num_returns=1, timeout=timeout_s)
        if not ready:  # queued behind other jobs, or still running
            return None
        (ref,) = ready
        spec = self.specs.pop(ref)
        try:
            status, payload = self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            return ref, JobFailed(f"{spec.kind} job failed: Ray lost it ({type(exc).__name__}: {first_line})")
        if status == "failed":
            return ref, JobFailed(payload)
        if "logits" in payload:
            path = Path(spec.output).with_suffix(".npy")
            write_npy_atomic(path, payload["logits"])
            payload = {**payload, "logits": str(path)}
        return ref, payload

    def close(self) -> None:
        self.ray.shutdown()


def _restore_sigterm(handler: Any) -> None:
    """Put back the SIGTERM handler ray.init replaced with its own, which exits with code 15 and says nothing:
    optbench's unwinds as Ctrl-C does, says "interrupted" and exits with 130. ray.init sets its handler on the
    main thread only, and only there can one be set."""
    if handler is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def check_available(address: str | None) -> None:
    """Refuse, before Ray starts, what it cannot start with: the package missing, or nothing answering at
    `address` (None: a local runtime, nothing to probe)."""
    require_package("ray", needed_for="--executor ray", install=INSTALL)
    if address:
        check_reachable(address)


def check_reachable(address: str) -> None:
    """Fail at once, naming the address, when nothing answers at host:port (a GCS address or ray://host:port):
    ray.init retries an unreachable cluster for minutes; and when it is no host:port (nor ray://host). "auto"
    means RAY_ADDRESS where that is set (Ray takes it first), probed the same way; else Ray looks up the cluster
    started on this node itself."""
    from_environment = os.environ.get("RAY_ADDRESS", "auto") if address == "auto" else address
    if from_environment == "auto":
        return
    shown = address if from_environment == address else f"auto (RAY_ADDRESS={from_environment})"
    host, _, port = from_environment.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        if from_environment.startswith("ray://"):  # Ray's client may take a host alone; its refusal is named on init
            return
        # Ray's GCS address is host:port: "head" passed the dry run and stopped the run in ray.init's ValueError
        raise OptbenchError(
            f"--address {shown} is no Ray cluster's address: give the head's GCS address (host:6379, as ray start "
            "prints it), ray://head:10001, or auto on a node of the cluster (leave --address out to start a local "
            "runtime)"
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        raise OptbenchError(
            f"cannot reach the Ray cluster at {shown} ({exc.strerror or exc}): start it (ray start --head) or "
            "give --address the head's GCS address (host:6379, as ray start prints it), ray://head:10001, or auto "
            "on a node of the cluster"
        ) from exc


def run_on_node(spec: Job, inputs: bytes, timeout_s: float) -> tuple[str, Any]:
    """The Ray task: run one job in a fresh process on this node; ("ok", result) or ("failed", reason)."""
    if not Path(spec.artifact["path"]).exists():
        return "failed", (
            f"{spec.kind} job failed: the model folder {spec.artifact['path']} is not on node {socket.gethostname()}: "
            "put the cache (--cache) on a filesystem every node mounts at the same path"
        )
    with tempfile.TemporaryDirectory(prefix="optbench-ray-") as tmp:
        folder = Path(tmp)
        (folder / "inputs.npz").write_bytes(inputs)
        job = dataclasses.replace(spec, inputs=str(folder / "inputs.npz"), output=str(folder / "result.json"))
        try:
            result = run_in_subprocess(job, folder / "job.json", timeout_s)
        except JobFailed as exc:
            return "failed", str(exc)
        if "logits" in result:
            result["logits"] = np.load(result["logits"])
    if spec.kind == "accuracy":  # its figures do not depend on where it ran; it shares the node with others
        return "ok", result
    return "ok", {**result, "environment": node_environment(spec.threads)}


@functools.cache
def node_environment(threads: int) -> dict[str, Any]:
    """This node's environment fingerprint, measured once per worker process, by a latency task: it holds every
    CPU of the node, so the GEMM calibration is not run beside accuracy jobs (and slowed by them) and reused."""
    from optbench.environment import fingerprint, fingerprint_key

    environment = fingerprint(threads)
    return {**environment, "machine": fingerprint_key(environment), "executor": "ray"}
