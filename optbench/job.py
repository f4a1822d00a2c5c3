"""One benchmark job in a fresh process: an accuracy pass or a latency pass of one model on one runtime.

A fresh process per job keeps one model's memory, threads and caches from touching another's figures,
and makes the peak RSS that of this model alone. The parent writes the job as JSON and the tokenized
batches as .npz; the job writes its result as JSON (and the logits as .npy for accuracy).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

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


def save_batches(path: Path, batches: list[dict[str, np.ndarray]]) -> None:
    np.savez(path, **{f"{i}:{k}": v for i, batch in enumerate(batches) for k, v in batch.items()})


def load_batches(path: Path) -> list[dict[str, np.ndarray]]:
    with np.load(path) as archive:
        batches: dict[int, dict[str, np.ndarray]] = {}
        for key in archive.files:
            index, name = key.split(":", 1)
            batches.setdefault(int(index), {})[name] = archive[key]
    return [batches[i] for i in sorted(batches)]


def run_in_subprocess(job: Job, job_path: Path, timeout_s: float) -> dict[str, Any]:
    """Run `job` in a fresh Python process and return its result; a failure raises with its reason."""
    job_path.write_text(json.dumps({**asdict(job), "timing": asdict(job.timing)}))
    env = {**os.environ, "OMP_NUM_THREADS": str(job.threads), "TOKENIZERS_PARALLELISM": "false"}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "optbench.job", str(job_path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired as exc:
        raise OptbenchError(f"{job.kind} job timed out after {timeout_s:.0f} s: raise [bench] job_timeout_s") from exc
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit code {done.returncode}"
        raise OptbenchError(f"{job.kind} job failed: {reason.removeprefix('error: ')}")
    return json.loads(Path(job.output).read_text())


def execute(job: Job) -> dict[str, Any]:
    """Load the model into its runtime and run the pass; returns what the parent records."""
    import torch

    from optbench.artifact import ModelArtifact
    from optbench.measure import peak_rss_mb, time_calls
    from optbench.runtimes import RuntimeSpec, load_runtime

    torch.set_num_interop_threads(1)
    started = time.perf_counter()
    runtime = load_runtime(RuntimeSpec.from_dict(job.runtime), ModelArtifact.from_dict(job.artifact), job.threads)
    load_seconds = time.perf_counter() - started
    batches = load_batches(Path(job.inputs))
    result: dict[str, Any] = {"load_seconds": load_seconds}
    if job.kind == "accuracy":
        logits = np.concatenate([runtime.predict(b) for b in batches])
        logits_path = Path(job.output).with_suffix(".npy")
        np.save(logits_path, logits)
        result["logits"] = str(logits_path)
        result["runtime_details"] = runtime.describe(batches[0])
    else:
        cursor = itertools.count()

        def call() -> None:
            runtime.predict(batches[next(cursor) % len(batches)])

        result["values_ns"] = time_calls(call, job.timing, sync=runtime.sync)
    result["peak_rss_mb"] = peak_rss_mb()
    result["threads"] = torch.get_num_threads()
    return result


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    job = Job(**{**spec, "timing": Timing(**spec["timing"])})
    try:
        result = execute(job)
    except OptbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    Path(job.output).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
