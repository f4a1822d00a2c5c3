"""The benchmark matrix: every (artifact, runtime) gets an accuracy pass and a latency pass per shape.

Every job runs in a fresh process. Shapes are the outer loop and models the inner one, so models are
measured side by side while the machine's speed drifts; the baseline on PyTorch eager FP32 (CPU) is
always measured, because it is the reference for every speedup and accuracy drop.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from optbench.accuracy import Drop, Metrics
from optbench.artifact import ModelArtifact
from optbench.data import LabelledData, SeqLen, batches, parse_seq_len
from optbench.environment import fingerprint, fingerprint_key
from optbench.errors import OptbenchError
from optbench.job import Job, run_in_subprocess, save_batches
from optbench.measure import Latency, Timing, throughput
from optbench.report import Measurement, Report
from optbench.runtimes import RuntimeSpec, runs

log = logging.getLogger(__name__)

REFERENCE = RuntimeSpec("torch", "cpu", "fp32")
ACCURACY_BATCH_SIZE = 64


@dataclass(frozen=True)
class BenchConfig:
    """The benchmark matrix and how long to time each cell."""

    runtimes: tuple[RuntimeSpec, ...] = (REFERENCE,)
    batch_sizes: tuple[int, ...] = (1, 32)
    seq_lens: tuple[SeqLen, ...] = (128, "data")
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    timing: Timing = field(default_factory=Timing)
    max_batches: int = 64
    job_timeout_s: float = 1800.0

    def __post_init__(self) -> None:
        if not self.runtimes or not self.batch_sizes or not self.seq_lens:
            raise OptbenchError("[bench] needs at least one runtime, batch size and sequence length")
        bad = [b for b in self.batch_sizes if not isinstance(b, int) or isinstance(b, bool) or b < 1]
        if bad:
            raise OptbenchError(f"[bench] batch_sizes {bad} are not positive integers")
        for seq_len in self.seq_lens:
            parse_seq_len(seq_len)
        if self.threads < 1 or self.max_batches < 1:
            raise OptbenchError(f"[bench] threads={self.threads} and max_batches={self.max_batches} must be 1 or more")

    def shapes(self) -> list[tuple[int, SeqLen]]:
        return [(b, s) for b in self.batch_sizes for s in self.seq_lens]


def benchmark(
    artifacts: list[ModelArtifact],
    data: LabelledData,
    config: BenchConfig,
    *,
    recipe: str,
    run_id: str,
) -> list[Report]:
    """Measure every artifact on every runtime; `artifacts[0]` is the baseline."""
    from transformers import AutoTokenizer

    baseline = artifacts[0]
    pairs = [(a, spec) for a in artifacts for spec in config.runtimes if runs(spec, a)]
    if (baseline, REFERENCE) not in pairs:
        pairs.insert(0, (baseline, REFERENCE))
    tokenizer = AutoTokenizer.from_pretrained(baseline.path)
    workload = {
        "dataset": data.source,
        "data_fingerprint": data.fingerprint,
        "split": "test",
        "rows": len(data.test),
        "max_length": data.max_length,
        "threads": config.threads,
        "timing": asdict(config.timing),
        "max_batches": config.max_batches,
    }
    environment = fingerprint(config.threads)
    environment["machine"] = fingerprint_key(environment)
    logits, details, timings = _run_jobs(pairs, tokenizer, data.test.texts, config, data.max_length)

    reference = pairs.index((baseline, REFERENCE))
    latencies = {key: Latency.from_values(result["values_ns"]) for key, result in timings.items()}
    created_at = datetime.now(UTC).isoformat(timespec="seconds")
    reports = []
    for index, (artifact, spec) in enumerate(pairs):
        measurements = tuple(
            Measurement(
                batch_size=batch_size,
                seq_len=seq_len,
                latency=latencies[index, batch_size, seq_len],
                throughput_sps=throughput(batch_size, latencies[index, batch_size, seq_len]),
                peak_rss_mb=timings[index, batch_size, seq_len]["peak_rss_mb"],
                speedup_p50=latencies[reference, batch_size, seq_len].p50_ms
                / latencies[index, batch_size, seq_len].p50_ms,
                workload_fingerprint=_fingerprint({**workload, "batch_size": batch_size, "seq_len": seq_len}),
            )
            for batch_size, seq_len in config.shapes()
        )
        reports.append(
            Report(
                run_id=run_id,
                recipe=recipe,
                created_at=created_at,
                artifact={**artifact.to_dict(), "size_mb": artifact.size_mb(), "parameters": artifact.parameters()},
                runtime={**spec.to_dict(), "threads": config.threads, "details": details[index]},
                workload=workload,
                environment=environment,
                metrics=Metrics.from_logits(data.test.labels, logits[index]),
                drop=Drop.paired(data.test.labels, logits[reference], logits[index]),
                measurements=measurements,
                warnings=tuple(_int8_slower_than_source(index, pairs, artifacts, latencies, config.shapes())),
            )
        )
    return reports


def _int8_slower_than_source(
    index: int,
    pairs: list[tuple[ModelArtifact, RuntimeSpec]],
    artifacts: list[ModelArtifact],
    latencies: dict[tuple[int, int, SeqLen], Latency],
    shapes: list[tuple[int, SeqLen]],
) -> list[str]:
    """A sanity flag: an INT8 variant whose p50 is above its FP32 source's on the same runtime."""
    artifact, spec = pairs[index]
    if not artifact.lineage or not artifact.lineage[-1].name.startswith("quantize"):
        return []
    source = next((a for a in artifacts if a.lineage == artifact.lineage[:-1]), None)
    if source is None or (source, spec) not in pairs:
        return []
    reference = pairs.index((source, spec))
    slower = [
        f"batch {b} x {s}" for b, s in shapes if latencies[index, b, s].p50_ms > latencies[reference, b, s].p50_ms
    ]
    if not slower:
        return []
    return [f"INT8 is slower than its FP32 source {source.variant} on {spec.label} at {', '.join(slower)}"]


def _run_jobs(
    pairs: list[tuple[ModelArtifact, RuntimeSpec]],
    tokenizer: Any,
    texts: list[str],
    config: BenchConfig,
    max_length: int,
) -> tuple[dict[int, np.ndarray], dict[int, dict[str, Any]], dict[tuple[int, int, SeqLen], dict[str, Any]]]:
    """Accuracy pass of every pair, then the latency passes, shape by shape, pairs interleaved.

    Returns per pair index the test-split logits and the runtime's own description, and the latency
    job results per (pair, batch size, sequence length).
    """
    from tqdm.auto import tqdm

    shapes = config.shapes()
    logits: dict[int, np.ndarray] = {}
    details: dict[int, dict[str, Any]] = {}
    timings: dict[tuple[int, int, SeqLen], dict[str, Any]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="optbench-") as tmp,
        tqdm(total=len(pairs) * (1 + len(shapes)), desc="benchmark", unit="job") as progress,
    ):
        work = Path(tmp)

        def run(kind: str, index: int, inputs: Path) -> dict[str, Any]:
            artifact, spec = pairs[index]
            progress.set_description(f"{kind} {artifact.variant} on {spec.label}")
            name = f"{kind}-{index}-{inputs.stem}"
            job = Job(
                kind=kind,  # type: ignore[arg-type]
                artifact=artifact.to_dict(),
                runtime=spec.to_dict(),
                threads=config.threads,
                inputs=str(inputs),
                output=str(work / f"{name}.result.json"),
                timing=config.timing,
            )
            result = run_in_subprocess(job, work / f"{name}.job.json", config.job_timeout_s)
            progress.update()
            return result

        inputs = work / "accuracy.npz"
        save_batches(
            inputs, batches(tokenizer, texts, batch_size=ACCURACY_BATCH_SIZE, seq_len="data", max_length=max_length)
        )
        for index in range(len(pairs)):
            result = run("accuracy", index, inputs)
            logits[index], details[index] = np.load(result["logits"]), result["runtime_details"]
        for batch_size, seq_len in shapes:
            inputs = work / f"shape-{batch_size}-{seq_len}.npz"
            shape_texts = texts[: batch_size * config.max_batches]
            save_batches(
                inputs, batches(tokenizer, shape_texts, batch_size=batch_size, seq_len=seq_len, max_length=max_length)
            )
            for index in range(len(pairs)):
                timings[index, batch_size, seq_len] = run("latency", index, inputs)
    return logits, details, timings


def _fingerprint(workload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(workload, sort_keys=True, default=str).encode()).hexdigest()[:12]
