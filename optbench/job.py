"""One benchmark job in a fresh process: an accuracy pass or a latency pass of one model on one runtime.

A fresh process per job keeps one model's memory, threads and caches from touching another's figures,
and makes the peak RSS that of this model alone. The parent writes the job as JSON and the tokenized
batches as .npz; the job writes its result as JSON (and the logits as .npy for accuracy).
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from optbench.atomic import write_bytes_atomic, write_json_atomic, write_npy_atomic
from optbench.environment import job_thread_variables
from optbench.errors import OptbenchError
from optbench.measure import Timing


@dataclass(frozen=True)
class Job:
    kind: Literal["accuracy", "latency"]
    artifact: dict[str, Any]
    runtime: dict[str, Any]
    threads: int
    inputs: str
    output: str
    timing: Timing = field(default_factory=Timing)
    # the run's cache folder, where the job's engine caches go: given to its process as OPTBENCH_CACHE, which
    # a Ray worker does not inherit from the run (None: the job process's own, or ~/.cache/optbench)
    cache: str | None = None


def save_batches(path: Path, batches: list[dict[str, np.ndarray]]) -> None:
    """Write the batches as one .npz, whole or not at all."""
    buffer = io.BytesIO()
    np.savez(buffer, **{f"{i}:{k}": v for i, batch in enumerate(batches) for k, v in batch.items()})
    write_bytes_atomic(path, buffer.getvalue())


def load_batches(path: Path) -> list[dict[str, np.ndarray]]:
    with np.load(path) as archive:
        batches: dict[int, dict[str, np.ndarray]] = {}
        for key in archive.files:
            index, name = key.split(":", 1)
            batches.setdefault(int(index), {})[name] = archive[key]
    return [batches[i] for i in sorted(batches)]


class JobFailed(OptbenchError):
    """A job that crashed, hung past its timeout, was killed (out of memory) or refused its input."""

    exit_code = 1


JOB_COMMAND = (sys.executable, "-m", "optbench.job")
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
Batch = dict[str, np.ndarray]


def run_in_subprocess(job: Job, job_path: Path, timeout_s: float) -> dict[str, Any]:
    """Run `job` in a fresh Python process and return its result; a failure raises JobFailed with its reason.

    The job leads its own process group, and whatever it started (torch.compile's compile workers, say) is
    killed with the group when it ends or times out: nothing it leaves runs on beside the next job's timing.
    Its stderr goes to a file, read with undecodable bytes replaced, so a helper process still holding it
    cannot keep the parent waiting. On Linux the job dies with its parent, so a sweep killed with kill -9
    leaves no job measuring on."""
    write_json_atomic(job_path, {**asdict(job), "timing": asdict(job.timing)})
    env = {**os.environ, **job_thread_variables(job.threads), "TOKENIZERS_PARALLELISM": "false"}
    if job.cache is not None:
        env["OPTBENCH_CACHE"] = job.cache
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(
            [*JOB_COMMAND, str(job_path)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        try:
            returncode: int | None = process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            returncode = None
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        stderr.seek(0)
        lines = [line for line in stderr.read().decode(errors="replace").splitlines() if line.strip()]
    # optbench's own error line wins over whatever the interpreter printed while shutting down after it
    telling = [line for line in lines if line.startswith("error: ")] or lines
    last = telling[-1].strip().removeprefix("error: ") if telling else ""
    if returncode is None:
        said = f"; its last line: {last}" if last else ""
        raise JobFailed(
            f"{job.kind} job hung: no result after {timeout_s:g} s (raise [bench] job_timeout_s if it is only "
            f"slow){said}"
        )
    if returncode < 0:
        said = f" (its last line: {last})" if last else ""
        raise JobFailed(f"{job.kind} job failed: {_signal_reason(-returncode)}{said}")
    if returncode != 0:
        raise JobFailed(f"{job.kind} job failed: {last or f'exit code {returncode}'}")
    try:
        return json.loads(Path(job.output).read_text())
    except (OSError, ValueError) as exc:  # ValueError: JSONDecodeError, and UnicodeDecodeError for bad bytes
        raise JobFailed(f"{job.kind} job failed: it exited cleanly but wrote no readable result ({exc})") from exc


def _signal_reason(number: int) -> str:
    name = signal.Signals(number).name if number in signal.Signals._value2member_map_ else f"signal {number}"
    if number == signal.SIGKILL:
        return f"killed by {name}: out of memory (the kernel's OOM killer), or killed from outside"
    return f"crashed with {name}"


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (prctl PR_SET_PDEATHSIG). It runs in the forked
    child before exec, where the parent's threads (CUDA's, tqdm's) make imports and dlopen unsafe: libc was
    looked up in the parent."""
    _LIBC.prctl(1, signal.SIGKILL)


def execute(job: Job) -> dict[str, Any]:
    """Load the model into its runtime and run the pass; returns what the parent records.

    The load and the first call are timed on their own (`startup`): that is where torch.compile compiles
    and TensorRT builds its engines, a first-run cost that must neither hide in nor inflate the latency.
    Only the runtime's own libraries are imported: an onnxruntime job never loads torch, whose few hundred
    MiB would otherwise count in the model's peak RSS."""
    from optbench.artifact import ModelArtifact
    from optbench.measure import GpuMemory, peak_rss_mb, time_calls
    from optbench.runtimes import RuntimeSpec, load_runtime

    spec = RuntimeSpec.from_dict(job.runtime)
    batches = load_batches(Path(job.inputs))  # first: unreadable inputs fail before a slow model load
    artifact = ModelArtifact.from_dict(job.artifact)
    _check_is_the_model(artifact)
    started = time.perf_counter()
    runtime = load_runtime(spec, artifact, job.threads)
    loaded = time.perf_counter()
    first_logits = runtime.predict(batches[0])
    result: dict[str, Any] = {
        "startup": {"load_s": loaded - started, "first_call_s": time.perf_counter() - loaded},
    }
    if job.kind == "accuracy":
        logits = np.concatenate([first_logits, *(runtime.predict(b) for b in batches[1:])])
        logits_path = Path(job.output).with_suffix(".npy")
        write_npy_atomic(logits_path, logits)
        result["logits"] = str(logits_path)
        result["runtime_details"] = runtime.describe(batches[0])
    else:
        firsts = _first_of_each_shape(batches)
        for batch in [*firsts[1:], *firsts]:  # untimed: with the first call, each shape twice
            runtime.predict(batch)
        cursor = itertools.count(1)

        def call() -> None:
            runtime.predict(batches[next(cursor) % len(batches)])

        cycle = len(batches) if len(firsts) > 1 else 1  # batches of different cost: time whole passes over them
        clock = runtime.clock()
        result["values_ns"] = time_calls(call, job.timing, clock, cycle)
        result["resolution_ns"] = clock.resolution_ns
        if spec.device == "cuda":
            through_torch = getattr(runtime, "allocates_through_torch", False)
            result["gpu_memory"] = GpuMemory.measure(through_torch=through_torch).to_dict()
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def _check_is_the_model(artifact: Any) -> None:
    """Refuse a model folder whose files are not the artifact's (by content hash): the figures would be another
    model's under this one's name. It changed since the run hashed it, or (Ray) this node has its own copy."""
    from optbench.artifact import content_hash

    if content_hash(artifact.path) != artifact.sha256:
        raise OptbenchError(
            f"the model folder {artifact.path} is not the model this run measures (on {socket.gethostname()} its "
            f"files differ from those hashed as {artifact.sha256[:12]}): it changed during the run, or this node "
            "has its own copy; keep the cache (--cache) on one filesystem every node mounts, and run the recipe again"
        )


def _first_of_each_shape(batches: list[Batch]) -> list[Batch]:
    """The first batch of each input shape, the first batch's shape first. Each runs twice before timing, so
    no shape's first two calls are timed: the first is where torch.compile recompiles and optbench's CUDA
    graphs capture, the second where torch.compile's own CUDA graphs (modes "reduce-overhead" and
    "max-autotune") record the shape they ran eagerly on the first."""
    first: dict[tuple[int, ...], Batch] = {}
    for batch in batches:
        first.setdefault(_shape(batch), batch)
    return list(first.values())


def _shape(batch: Batch) -> tuple[int, ...]:
    return next(iter(batch.values())).shape


def _hide_torchao_unless_the_model_needs_it(artifact: dict[str, Any]) -> None:
    """transformers imports torchao whenever it is installed, and it is, with optbench (for its INT8 path and
    peer), not with the model: in a job whose model is not quantized with it, its import cost about 11 MB of peak
    RSS (results/FINDINGS.md) and start-up time. A None in sys.modules makes the package look absent to
    transformers' check. Kept for optbench's torchao scheme and for a checkpoint saved quantized
    (`quantization_config`, which transformers may need torchao to load). Only in the job's own fresh process:
    elsewhere a later step may still need torchao."""
    from optbench.artifact import QUANTIZATION_FILE

    folder = Path(artifact["path"])
    try:
        quantized = "quantization_config" in json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):  # an ONNX model has none; a damaged one is for the runtime's load to name
        quantized = False
    if not quantized and not (folder / QUANTIZATION_FILE).is_file():
        sys.modules.setdefault("torchao", None)


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    job = Job(**{**spec, "timing": Timing(**spec["timing"])})
    _hide_torchao_unless_the_model_needs_it(job.artifact)
    # transformers (4.56 to 5.9 at least) imports scikit-learn whenever it is installed, and scikit-learn imports
    # pandas: 40 MB of a classifier's peak RSS that no job uses. Hidden as torchao is.
    sys.modules.setdefault("sklearn", None)
    try:
        result = execute(job)
    except OptbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    write_json_atomic(Path(job.output), result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
