"""The benchmark matrix: every (artifact, runtime) gets an accuracy pass and a latency pass per shape.

Every job runs in a fresh process. Shapes are the outer loop, then `rounds`, then the models: each
round measures every model once (A B C A B C ...), so models are measured side by side while the
machine's speed drifts, and each model's figures pool its rounds. The baseline on PyTorch eager FP32
(CPU) is always measured, because it is the reference for every speedup and accuracy drop. With
`aa_check`, every round ends with the reference measured a second time: the p50 difference between
its two measurements (A/A) is the run's noise floor, recorded in every report.
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
    rounds: int = 1
    aa_check: bool = True

    def __post_init__(self) -> None:
        if not self.runtimes or not self.batch_sizes or not self.seq_lens:
            raise OptbenchError("[bench] needs at least one runtime, batch size and sequence length")
        bad = [b for b in self.batch_sizes if not isinstance(b, int) or isinstance(b, bool) or b < 1]
        if bad:
            raise OptbenchError(f"[bench] batch_sizes {bad} are not positive integers")
        for seq_len in self.seq_lens:
            parse_seq_len(seq_len)
        if self.threads < 1 or self.max_batches < 1 or self.rounds < 1:
            raise OptbenchError(
                f"[bench] threads={self.threads}, max_batches={self.max_batches} and rounds={self.rounds} "
                "must be 1 or more"
            )

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
        "rounds": config.rounds,
    }
    environment = fingerprint(config.threads)
    environment["machine"] = fingerprint_key(environment)
    reference = pairs.index((baseline, REFERENCE))
    logits, details, timings, repeats = _run_jobs(pairs, reference, tokenizer, data.test.texts, config, data.max_length)
    latencies = {key: Latency.from_values(result["values_ns"]) for key, result in timings.items()}
    noise = {
        shape: noise_floor_pct(latencies[(reference, *shape)], Latency.from_values(result["values_ns"]))
        for shape, result in repeats.items()
    }
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
                noise_floor_pct=noise.get((batch_size, seq_len)),
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


def noise_floor_pct(first: Latency, second: Latency) -> float:
    """The A/A noise floor: how far apart, in percent of their mean, two measurements of one model's p50
    in one run are. A change between runs smaller than this is not told apart from the machine's noise."""
    return 200 * abs(first.p50_ms - second.p50_ms) / (first.p50_ms + second.p50_ms)


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


Shape = tuple[int, SeqLen]


def _run_jobs(
    pairs: list[tuple[ModelArtifact, RuntimeSpec]],
    reference: int,
    tokenizer: Any,
    texts: list[str],
    config: BenchConfig,
    max_length: int,
) -> tuple[
    dict[int, np.ndarray],
    dict[int, dict[str, Any]],
    dict[tuple[int, int, SeqLen], dict[str, Any]],
    dict[Shape, dict[str, Any]],
]:
    """Accuracy pass of every pair, then the latency passes: shape by shape, round by round, every pair
    once per round (interleaved), then the reference again when `aa_check` is on.

    Returns per pair index the test-split logits and the runtime's own description; the latency job
    results per (pair, batch size, sequence length), rounds pooled; and per shape the reference's
    repeated (A/A) measurement, rounds pooled.
    """
    from tqdm.auto import tqdm

    shapes = config.shapes()
    per_round = len(pairs) + int(config.aa_check)
    logits: dict[int, np.ndarray] = {}
    details: dict[int, dict[str, Any]] = {}
    timings: dict[tuple[int, int, SeqLen], dict[str, Any]] = {}
    repeats: dict[Shape, dict[str, Any]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="optbench-") as tmp,
        tqdm(total=len(pairs) + len(shapes) * config.rounds * per_round, desc="benchmark", unit="job") as progress,
    ):
        work = Path(tmp)

        def run(kind: str, index: int, inputs: Path, tag: str) -> dict[str, Any]:
            artifact, spec = pairs[index]
            progress.set_description(f"{kind} {artifact.variant} on {spec.label}{tag}")
            name = f"{kind}-{index}-{inputs.stem}-{progress.n}"
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
            result = run("accuracy", index, inputs, "")
            logits[index], details[index] = np.load(result["logits"]), result["runtime_details"]
        for batch_size, seq_len in shapes:
            inputs = work / f"shape-{batch_size}-{seq_len}.npz"
            shape_texts = texts[: batch_size * config.max_batches]
            save_batches(
                inputs, batches(tokenizer, shape_texts, batch_size=batch_size, seq_len=seq_len, max_length=max_length)
            )
            for round_index in range(config.rounds):
                tag = f" (round {round_index + 1}/{config.rounds})" if config.rounds > 1 else ""
                for index in range(len(pairs)):
                    _pool(timings, (index, batch_size, seq_len), run("latency", index, inputs, tag))
                if config.aa_check:
                    _pool(repeats, (batch_size, seq_len), run("latency", reference, inputs, f"{tag}, A/A repeat"))
    return logits, details, timings, repeats


def _pool(results: dict[Any, dict[str, Any]], key: Any, result: dict[str, Any]) -> None:
    """Add one round's latency job result to `key`'s: timed calls concatenated, the highest peak memory."""
    if key not in results:
        results[key] = {"values_ns": list(result["values_ns"]), "peak_rss_mb": result["peak_rss_mb"]}
        return
    results[key]["values_ns"] += result["values_ns"]
    results[key]["peak_rss_mb"] = max(results[key]["peak_rss_mb"], result["peak_rss_mb"])


def _fingerprint(workload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(workload, sort_keys=True, default=str).encode()).hexdigest()[:12]
