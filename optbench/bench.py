"""The benchmark matrix: every (artifact, runtime) gets an accuracy pass and a latency pass per shape; their results
become the reports (rounds pooled, throughput, speedup_p50, the A/A noise floor, the model's size).

Every job runs in a fresh process. Shapes are the outer loop, then `rounds`, then the models: each
round measures every model once, one model later than the round before (A B C, B C A, ...), so models
are measured side by side while the machine's speed drifts, and each model's figures pool its rounds.
The baseline on PyTorch eager FP32 (CPU) is always measured, because it is the reference for every
speedup and accuracy drop. With `aa_check`, every round ends with the reference measured a second time:
the p50 difference between its two measurements (A/A) is the run's noise floor, recorded in every report.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from optbench.accuracy import Drop, Metrics
from optbench.artifact import ModelArtifact, tokenizer_hash
from optbench.configs import check_no_repeats
from optbench.data import LabelledData
from optbench.encoding import SeqLen, Shape, batches, load_tokenizer, parse_seq_len, whole_batches
from optbench.environment import fingerprint, fingerprint_key, usable_cores
from optbench.errors import OptbenchError
from optbench.executors.local import LocalExecutor
from optbench.failures import FailedJob
from optbench.job import Job, load_batches, run_in_subprocess, save_batches
from optbench.measure import GpuMemory, Latency, Timing, gap_pct, throughput
from optbench.progress import Progress
from optbench.report import Measurement, Report, workload_fingerprint
from optbench.runtimes import RuntimeSpec, declines, runs
from optbench.sweep import Executor, Outcome, PlannedJob, SweepStore, failures, plan, run_sweep, runs_here

log = logging.getLogger(__name__)

REFERENCE = RuntimeSpec("torch", "cpu", "fp32")
ACCURACY_BATCH_SIZE = 64
# shapes x rounds: each a job, in a process of its own (seconds at the least), for every model and runtime
MAX_LATENCY_JOBS_PER_PAIR = 10_000
# rows a timed call runs: a latency batch repeats the test split's texts to fill it, so the data does not bound it.
# This many at 128 tokens is 8.4M tokens a call, a 384-wide model's every hidden state 12.9 GB: beyond a benchmark
MAX_BATCH_SIZE = 65_536
M = TypeVar("M")


@dataclass(frozen=True)
class BenchConfig:
    """The benchmark matrix and how long to time each cell."""

    runtimes: tuple[RuntimeSpec, ...] = (REFERENCE,)
    batch_sizes: tuple[int, ...] = (1, 32)
    seq_lens: tuple[SeqLen, ...] = (128, "data")
    threads: int = field(default_factory=usable_cores)
    timing: Timing = field(default_factory=Timing)
    max_batches: int = 64
    job_timeout_s: float = 1800.0
    rounds: int = 1
    aa_check: bool = True

    def __post_init__(self) -> None:
        if not self.runtimes or not self.batch_sizes or not self.seq_lens:
            raise OptbenchError("needs at least one runtime, batch size and sequence length")
        check_batch_sizes(self.batch_sizes)
        for seq_len in self.seq_lens:
            parse_seq_len(seq_len)
        if (per_pair := len(self.batch_sizes) * len(self.seq_lens) * self.rounds) > MAX_LATENCY_JOBS_PER_PAIR:
            raise OptbenchError(
                f"{len(self.batch_sizes)} batch_sizes x {len(self.seq_lens)} seq_lens x rounds={self.rounds} plan "
                f"{per_pair} latency jobs for each model and runtime, more than {MAX_LATENCY_JOBS_PER_PAIR} (each a "
                "process of its own, seconds at the least): give fewer batch_sizes, seq_lens or rounds"
            )
        # a repeated shape plans jobs of one key: the sweep would pool the same timed calls twice
        check_no_repeats("batch_sizes", self.batch_sizes)
        check_no_repeats("seq_lens", self.seq_lens)
        check_no_repeats("runtimes", [spec.label for spec in self.runtimes])
        below_one = [
            f"{name}={getattr(self, name)}" for name in ("threads", "max_batches", "rounds") if getattr(self, name) < 1
        ]
        if below_one:
            raise OptbenchError(f"{' and '.join(below_one)}: must be 1 or more")
        if not self.job_timeout_s > 0:
            raise OptbenchError(f"job_timeout_s={self.job_timeout_s} must be a positive number of seconds")

    def shapes(self) -> list[tuple[int, SeqLen]]:
        return [(b, s) for b in self.batch_sizes for s in self.seq_lens]


def check_batch_sizes(batch_sizes: Sequence[Any], fix: str = "") -> None:
    """Refuse batch sizes that are not positive integers, or of more than MAX_BATCH_SIZE rows a call: [bench]'s, whose
    latency batches are tokenized before the first job, and the tensorrt step's, whose engine profiles are built for
    them. `fix`: what else the user may do, added to the error."""
    bad = [b for b in batch_sizes if not isinstance(b, int) or isinstance(b, bool) or b < 1]
    if bad:
        raise OptbenchError(f"batch_sizes {bad} are not positive integers: give e.g. [1, 32]{fix}")
    if too_big := [b for b in batch_sizes if b > MAX_BATCH_SIZE]:
        raise OptbenchError(
            f"batch_sizes {too_big} are more than {MAX_BATCH_SIZE} rows a call: each batch would hold that many "
            f"texts, too many for any machine's memory in one call; give batch sizes of at most {MAX_BATCH_SIZE}{fix}"
        )


def pair_up(
    models: Sequence[M], runtimes: Sequence[RuntimeSpec], pairs: Callable[[RuntimeSpec, M], bool]
) -> tuple[list[tuple[M, RuntimeSpec]], int]:
    """The matrix's (model, runtime) pairs, in order: each model (`models[0]` is the baseline) with each runtime
    that `pairs` with it, and the reference (the baseline on PyTorch eager FP32, CPU), which is always measured,
    first when no listed runtime is it; and the reference's index among them."""
    baseline = models[0]
    matrix = [(model, spec) for model in models for spec in runtimes if pairs(spec, model)]
    if (baseline, REFERENCE) not in matrix:
        matrix.insert(0, (baseline, REFERENCE))
    return matrix, matrix.index((baseline, REFERENCE))


def _runs(spec: RuntimeSpec, artifact: ModelArtifact) -> bool:
    """Whether the matrix pairs this runtime with this model; a runtime that leaves out a model of a format it
    runs says why in the log."""
    if not runs(spec, artifact.format):
        return False
    reason = declines(spec, artifact)
    if reason:
        log.warning("%s does not run %s: %s", spec.label, artifact.variant, reason)
    return reason is None


def benchmark(
    artifacts: list[ModelArtifact],
    data: LabelledData,
    config: BenchConfig,
    *,
    recipe: str,
    store: SweepStore,
    executor: Executor | None = None,
    cache_dir: Path | None = None,
) -> tuple[list[Report], list[FailedJob]]:
    """Measure every artifact on every runtime (`artifacts[0]` is the baseline) as a sweep kept in `store`; the
    jobs keep their engine caches in `cache_dir` (default: where each job process's OPTBENCH_CACHE says).

    Returns the reports of the pairs whose jobs all succeeded, and the failed jobs with their reasons. Without
    the reference (the baseline on PyTorch eager FP32) nothing can be compared: its failure is an error."""
    warning = oversubscribed(config.threads, runs_here(executor))
    if warning:
        log.warning(warning)
    baseline = artifacts[0]
    pairs, reference = pair_up(artifacts, config.runtimes, _runs)
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
    logits, details, timings, repeats, failed = _run_jobs(
        pairs, reference, data.test.texts, config, data.max_length, store, executor, cache_dir
    )
    if reference not in logits or any((reference, *shape) not in timings for shape in config.shapes()):
        reason = next(f.reason for f in failed if f.job.pair == reference and not f.job.repeat)
        raise OptbenchError(
            f"the reference {baseline.variant} on {REFERENCE.label} failed ({reason}): nothing can be compared "
            "without it. The other finished jobs are kept: fix the cause and run the recipe again to resume"
        )
    failed_pairs = {f.job.pair for f in failed if not f.job.repeat}  # a failed A/A repeat loses only a noise floor
    failed_jobs = [
        FailedJob(pairs[f.job.pair][0].variant, pairs[f.job.pair][1].label, f.job.key, f.reason) for f in failed
    ]
    latencies = {key: _latency(result) for key, result in timings.items()}
    noise = {
        shape: noise_floor_pct(latencies[(reference, *shape)], _latency(result)) for shape, result in repeats.items()
    }
    created_at = datetime.now(UTC).isoformat(timespec="seconds")

    def measurement(index: int, batch_size: int, seq_len: SeqLen) -> Measurement:
        latency = latencies[index, batch_size, seq_len]
        return Measurement(
            batch_size=batch_size,
            seq_len=seq_len,
            latency=latency,
            throughput_sps=throughput(batch_size, latency),
            peak_rss_mb=timings[index, batch_size, seq_len]["peak_rss_mb"],
            gpu_memory=timings[index, batch_size, seq_len]["gpu_memory"],
            speedup_p50=latencies[reference, batch_size, seq_len].p50_ms / latency.p50_ms,
            workload_fingerprint=workload_fingerprint(workload, batch_size, seq_len),
            noise_floor_pct=noise.get((batch_size, seq_len)),
        )

    reports = []
    for environment, shapes in _shapes_by_machine(config.shapes(), reference, timings, config.threads):
        for index, (artifact, spec) in enumerate(pairs):
            if index in failed_pairs:
                continue
            reports.append(
                Report(
                    run_id=store.run_id,
                    recipe=recipe,
                    created_at=created_at,
                    artifact={**artifact.to_dict(), "size_mb": artifact.size_mb(), "parameters": artifact.parameters()},
                    runtime={**spec.to_dict(), "threads": config.threads, **details[index]},
                    workload=workload,
                    environment=environment,
                    metrics=Metrics.from_logits(data.test.labels, logits[index]),
                    drop=(
                        Drop.of_reference()
                        if index == reference
                        else Drop.paired(data.test.labels, logits[reference], logits[index])
                    ),
                    measurements=tuple(measurement(index, *shape) for shape in shapes),
                    warnings=tuple(_int8_slower_than_source(index, pairs, artifacts, latencies, shapes, noise)),
                )
            )
    return reports, failed_jobs


def oversubscribed(threads: int, here: bool) -> str | None:
    """The run's warning, not an error (oversubscribing may be the point of a run), when jobs run on this machine
    (`here`; elsewhere each node has its own cores) with more threads than the cores this process may use: they
    share cores, and the latency then measures their contention. None when they do not."""
    cores = usable_cores()
    if not here or threads <= cores:
        return None
    return (
        f"[bench] threads = {threads} is more than the {cores} cores this process may use: the threads will share "
        f"cores and distort every latency; set threads = {cores} or fewer, or run where more cores are free"
    )


def _shapes_by_machine(
    shapes: list[Shape], reference: int, timings: dict[tuple[int, int, SeqLen], dict[str, Any]], threads: int
) -> list[tuple[dict[str, Any], list[Shape]]]:
    """The shapes grouped by the machine that timed them, with its environment fingerprint: this machine's
    for local jobs, the node's for jobs an executor ran elsewhere (a shape stays on one node)."""
    groups: dict[str, tuple[dict[str, Any], list[Shape]]] = {}
    here: dict[str, Any] | None = None
    for shape in shapes:
        environment = timings[(reference, *shape)].get("environment")
        if environment is None:
            if here is None:
                here = fingerprint(threads)
                here["machine"] = fingerprint_key(here)
            environment = here
        groups.setdefault(environment["machine"], (environment, []))[1].append(shape)
    return list(groups.values())


def noise_floor_pct(first: Latency, second: Latency) -> float:
    """The A/A noise floor: how far apart, in percent of their mean, two measurements of one model's p50
    in one run are. A change between runs smaller than this is not told apart from the machine's noise."""
    return gap_pct(first.p50_ms, second.p50_ms)


def _int8_slower_than_source(
    index: int,
    pairs: list[tuple[ModelArtifact, RuntimeSpec]],
    artifacts: list[ModelArtifact],
    latencies: dict[tuple[int, int, SeqLen], Latency],
    shapes: list[tuple[int, SeqLen]],
    noise: Mapping[Shape, float],
) -> list[str]:
    """A sanity flag: an INT8 variant whose p50 is above its FP32 source's on the same runtime, by more than the
    run's A/A noise floor at that shape (`noise`, percent; a gap within it the run cannot tell from the machine's)."""
    artifact, spec = pairs[index]
    if not artifact.lineage or not artifact.lineage[-1].name.startswith("quantize"):
        return []
    source = next((a for a in artifacts if a.lineage == artifact.lineage[:-1]), None)
    if source is None or (source, spec) not in pairs:
        return []
    reference = pairs.index((source, spec))
    slower = []
    for b, s in shapes:
        p50, source_p50 = latencies[index, b, s].p50_ms, latencies[reference, b, s].p50_ms
        if p50 > source_p50 and gap_pct(p50, source_p50) > noise.get((b, s), 0.0):
            slower.append(f"batch {b} x {s}")
    if not slower:
        return []
    return [f"INT8 is slower than its FP32 source {source.variant} on {spec.label} at {', '.join(slower)}"]


def _run_jobs(
    pairs: list[tuple[ModelArtifact, RuntimeSpec]],
    reference: int,
    texts: list[str],
    config: BenchConfig,
    max_length: int,
    store: SweepStore,
    executor: Executor | None,
    cache_dir: Path | None,
) -> tuple[
    dict[int, np.ndarray],
    dict[int, dict[str, Any]],
    dict[tuple[int, int, SeqLen], dict[str, Any]],
    dict[Shape, dict[str, Any]],
    list[Outcome],
]:
    """Run the sweep's plan (`sweep.plan`: accuracy passes, then shape by shape and round by round every
    pair once, interleaved, then the reference again when `aa_check` is on), resuming from `store`.

    Returns per pair index the test-split logits and the runtime's own description; the latency job
    results per (pair, batch size, sequence length), rounds pooled; per shape the reference's repeated
    (A/A) measurement, rounds pooled; and the failed jobs. A pair with a failed job is left out of the rest
    (a failed A/A repeat leaves its shape without a noise floor). Only whole measurements are pooled: the
    rounds before a failed one are dropped too, so that no figure rests on fewer rounds than the others
    (the reference's would have been every speedup's, and the A/A repeat's its shape's noise floor).
    """
    shapes = config.shapes()
    jobs = plan(len(pairs), reference, shapes, config.rounds, config.aa_check)
    store.check_logits(jobs, len(texts))  # a resume's damage found now, not after the jobs it has left to run
    inputs = _tokenized(pairs, reference, texts, config, max_length, store)

    def make_job(planned: PlannedJob) -> Job:
        artifact, spec = pairs[planned.pair]
        progress.describe(_describe(planned, artifact, spec, config.rounds))
        return Job(
            kind=planned.kind,
            artifact=artifact.to_dict(),
            runtime=spec.to_dict(),
            threads=config.threads,
            inputs=str(inputs[planned.pair][planned.shape]),
            output=str(store.output(planned)),
            timing=config.timing,
            cache=None if cache_dir is None else str(cache_dir.resolve()),
        )

    if stored := store.done():  # before the bar is drawn, or the line is written onto it
        log.info("resuming run %s: %d of %d jobs done", store.run_id, stored, len(jobs))
    with Progress(len(jobs), "benchmark", "job", "jobs") as progress:
        outcomes = run_sweep(
            jobs,
            store,
            executor or LocalExecutor(run_in_subprocess),
            make_job,
            timeout_s=config.job_timeout_s,
            on_done=lambda outcome, ran: progress.advance(),
        )
    logits: dict[int, np.ndarray] = {}
    details: dict[int, dict[str, Any]] = {}
    timings: dict[tuple[int, int, SeqLen], dict[str, Any]] = {}
    repeats: dict[Shape, dict[str, Any]] = {}
    failed = failures(outcomes[j.key] for j in jobs)
    incomplete = {(f.job.pair, f.job.shape, f.job.repeat) for f in failed}
    for planned in jobs:
        result = outcomes[planned.key].result
        if result is None or (planned.pair, planned.shape, planned.repeat) in incomplete:
            continue
        if planned.kind == "accuracy":
            logits[planned.pair] = store.logits(planned, len(texts))
            details[planned.pair] = {"details": result["runtime_details"], "startup": result.get("startup")}
        elif planned.repeat:
            _pool(repeats, planned.shape, result)
        else:
            _pool(timings, (planned.pair, *planned.shape), result)
    return logits, details, timings, repeats, failed


def _tokenized(
    pairs: list[tuple[ModelArtifact, RuntimeSpec]],
    reference: int,
    texts: list[str],
    config: BenchConfig,
    max_length: int,
    store: SweepStore,
) -> list[dict[Shape | None, Path]]:
    """Per pair, its inputs' files by shape (None: the accuracy pass), tokenized by its model's own tokenizer: a
    distill student may read the texts with another vocabulary than the baseline's. Models whose tokenizer files
    are the reference's, or that hold none, share the reference's files."""
    own = tokenizer_hash(pairs[reference][0].path)
    # each model's folder hashed once, though it pairs with several runtimes
    keys = {artifact.path: tokenizer_hash(artifact.path) or own for artifact, _ in pairs}
    by_tokenizer: dict[str | None, dict[Shape | None, Path]] = {}
    for artifact, _ in [pairs[reference], *pairs]:
        key = keys[artifact.path]
        if key in by_tokenizer:
            continue
        tokenizer = load_tokenizer(artifact.path)
        suffix = f"-tokenizer-{key[:16]}" if key and key != own else ""
        files: dict[Shape | None, Path] = {
            None: _inputs(store, f"accuracy{suffix}", tokenizer, texts, ACCURACY_BATCH_SIZE, "data", max_length)
        }
        for batch_size, seq_len in config.shapes():
            shape_texts = whole_batches(texts, batch_size, config.max_batches)
            name = f"shape-{batch_size}-{seq_len}{suffix}"
            files[batch_size, seq_len] = _inputs(store, name, tokenizer, shape_texts, batch_size, seq_len, max_length)
        by_tokenizer[key] = files
    return [by_tokenizer[keys[artifact.path]] for artifact, _ in pairs]


def _inputs(
    store: SweepStore, name: str, tokenizer: Any, texts: list[str], batch_size: int, seq_len: SeqLen, max_length: int
) -> Path:
    """The tokenized batches of one shape in the store (written whole; the same on every resume). One a resume finds
    damaged or holding other batches (hand-edited, another sweep's) is written again: each job of the shape failed
    on it, on every resume."""
    path = store.inputs / f"{name}.npz"
    made = batches(tokenizer, texts, batch_size=batch_size, seq_len=seq_len, max_length=max_length)
    if not _holds(path, made):
        save_batches(path, made)
    return path


def _holds(path: Path, made: list[dict[str, np.ndarray]]) -> bool:
    """Whether the inputs file `path` holds the batches `made`; one that is damaged or holds others is logged."""
    try:
        stored = load_batches(path)
    except FileNotFoundError:
        return False
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:  # ValueError: keys not i:name too
        log.warning("%s is damaged (%s): writing it again", path, exc)
        return False
    same = len(stored) == len(made) and all(
        a.keys() == b.keys() and all(np.array_equal(a[key], b[key]) for key in a)
        for a, b in zip(stored, made, strict=True)
    )
    if not same:
        log.warning("%s holds other inputs than this sweep's: writing it again", path)
    return same


def _describe(planned: PlannedJob, artifact: ModelArtifact, spec: RuntimeSpec, rounds: int) -> str:
    tag = f" (round {planned.round + 1}/{rounds})" if rounds > 1 and planned.kind == "latency" else ""
    tag += ", A/A repeat" if planned.repeat else ""
    return f"{planned.kind} {artifact.variant} on {spec.label}{tag}"


def _pool(results: dict[Any, dict[str, Any]], key: Any, result: dict[str, Any]) -> None:
    """Add one round's latency job result to `key`'s: timed calls concatenated, the highest peak memory, GPU
    memory included (and the environment of the node that measured it, when the executor reports one), the
    coarsest clock resolution (0, unknown, in results a sweep stored before jobs recorded it)."""
    gpu = GpuMemory.from_dict(result["gpu_memory"]) if result.get("gpu_memory") else None
    resolution_ns = result.get("resolution_ns", 0)
    if key not in results:
        results[key] = {
            "values_ns": list(result["values_ns"]),
            "resolution_ns": resolution_ns,
            "peak_rss_mb": result["peak_rss_mb"],
            "gpu_memory": gpu,
            "environment": result.get("environment"),
        }
        return
    pooled = results[key]
    pooled["values_ns"] += result["values_ns"]
    pooled["resolution_ns"] = max(pooled["resolution_ns"], resolution_ns)
    pooled["peak_rss_mb"] = max(pooled["peak_rss_mb"], result["peak_rss_mb"])
    if gpu is not None:
        pooled["gpu_memory"] = gpu if pooled["gpu_memory"] is None else pooled["gpu_memory"].merged(gpu)


def _latency(pooled: dict[str, Any]) -> Latency:
    """The statistics of pooled timed calls, their intervals widened by the clock's resolution."""
    return Latency.from_values(pooled["values_ns"], pooled["resolution_ns"])
